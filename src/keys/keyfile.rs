//! Reading the support key from `--key-file`, and root's home from the passwd file.
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::line::{classify, Kind};
use super::MARKER;
use crate::root::Root;
use crate::support::SupportKey;

/// The keys in an OpenSSH public key file, or in authorized_keys lines (their options are
/// ignored). Blank lines and comments are skipped; any other line must be a valid public key, so
/// a truncated paste is caught rather than half-used. Duplicates are dropped.
pub fn parse_key_file(bytes: &[u8], origin: &str) -> Result<Vec<SupportKey>> {
    let mut keys: Vec<SupportKey> = Vec::new();
    for (i, l) in super::line::split_lines(bytes).iter().enumerate() {
        let key = match classify(l.text) {
            Kind::Blank | Kind::Comment { .. } => continue,
            Kind::Opaque => {
                return Err(crate::bad_input!(
                    "line {} of {origin} is not a public key line; give an OpenSSH public key \
                     file (TYPE BASE64 [COMMENT])",
                    i + 1
                ))
            }
            Kind::Key(k) => k,
        };
        // A line written by this tool carries the marker; the key's own comment is the rest.
        let comment: Vec<&str> = key
            .comment
            .split_whitespace()
            .filter(|t| *t != MARKER)
            .collect();
        let parsed = SupportKey::from_parts(&key.key_type(), &key.blob, &comment.join(" "))
            .map_err(|e| {
                crate::bad_input!(
                    "line {} of {origin} holds no valid public key ({e:#}); give an OpenSSH \
                     public key file",
                    i + 1
                )
            })?;
        if !keys.iter().any(|k| k.blob == parsed.blob) {
            keys.push(parsed);
        }
    }
    if keys.is_empty() {
        return Err(crate::bad_input!(
            "no valid public key in {origin}; give an OpenSSH public key file (TYPE BASE64 [COMMENT])"
        ));
    }
    Ok(keys)
}

/// Root's home directory as the passwd file under the root prefix names it (e.g. `/root`): the
/// first entry named `root`, field 6, which must be an absolute path.
pub fn root_home(root: &Root) -> Result<PathBuf> {
    let path = root.path("/etc/passwd");
    let bytes = crate::bounded::read(&path, crate::bounded::CONFIG).with_context(|| {
        format!(
            "cannot read {}; root's home (and so the keys file) is found there, check that it exists",
            path.display()
        )
    })?;
    for line in bytes.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if fields.len() < 7 || fields[0] != b"root" {
            continue;
        }
        let home = String::from_utf8_lossy(fields[5])
            .trim_end_matches('\r')
            .to_string();
        if !home.starts_with('/') {
            anyhow::bail!(
                "root's home in {} is '{home}', not an absolute path; fix the root entry there",
                path.display()
            );
        }
        return Ok(PathBuf::from(home));
    }
    anyhow::bail!(
        "{} has no entry for root; add the line root:x:0:0:root:/root:/bin/sh or give the right --root",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA";

    #[test]
    fn public_key_file_and_authorized_keys_lines() {
        let k = parse_key_file(format!("ssh-ed25519 {ED} me@host\n").as_bytes(), "x").unwrap();
        assert_eq!(k[0].comment, "me@host");
        let file = format!(
            "# c\n\nfrom=\"192.0.2.1\" ssh-ed25519 {ED} support@cache-ng ovh-access\nssh-ed25519 {ED}\n"
        );
        let k = parse_key_file(file.as_bytes(), "x").unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].comment, "support@cache-ng");
        // A signature-algorithm name on the line still gives the key's own type.
        let rsa =
            include_str!("../../tests/data/keys/ovh-eu.pub").replace("ssh-rsa", "rsa-sha2-512");
        let k = parse_key_file(rsa.as_bytes(), "x").unwrap();
        assert_eq!(k[0].algorithm, "ssh-rsa");
        assert_eq!(
            k[0].fingerprint,
            "SHA256:JAFN+LjSd5rMut8LHygxPjyVQ9XhOv+IR6qEVA5+okU"
        );
    }

    #[test]
    fn bad_files_are_bad_input() {
        for bad in [
            "".to_string(),
            "# only a comment\n".into(),
            "hello\n".into(),
            "ssh-rsa AAAA\n".into(),
            format!("ssh-ed25519 {ED}\nssh-ed25519 AAAAC3Nz\n"),
        ] {
            let e = parse_key_file(bad.as_bytes(), "k.pub").unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{bad}: {e}");
            assert!(e.to_string().contains("k.pub"));
        }
    }

    #[test]
    fn home_from_passwd() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert!(root_home(&root).is_err());
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "rootx:x:0:0::/nope:/bin/sh\nroot:x:0:0:root:/var/root:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(root_home(&root).unwrap(), PathBuf::from("/var/root"));
    }
}
