//! PubkeyAcceptedAlgorithms: which signature algorithms sshd accepts for a user key, assembled
//! as kex.c `kex_assemble_names()` does from the configured value (`+` appends to the default,
//! `-` removes patterns from it, `^` puts names first, otherwise a list whose patterns expand
//! against every supported name). The support keys are RSA: a hardened list without
//! rsa-sha2-* locks them out.

use super::keywords::Release;

/// KEX_DEFAULT_PK_ALG of OpenSSH 8.8 to 10.x (`sshd -T` of 9.2 and 10.0 with an empty config):
/// 8.8 dropped `ssh-rsa` (SHA-1 signatures).
pub const DEFAULT: &[&str] = &[
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

/// 8.5 to 8.7: ed25519 first, and still `ssh-rsa`.
const DEFAULT_8_5: &[&str] = &[
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

/// 8.2 to 8.4 (`sshd -T` of Debian 11's 8.4p1): the security-key types added.
const DEFAULT_8_2: &[&str] = &[
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

/// 7.8 to 8.1: RSA SHA-2 certificates added.
const DEFAULT_7_8: &[&str] = &[
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-ed25519",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

/// 7.7.
const DEFAULT_7_7: &[&str] = &[
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-ed25519",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

/// The default list of a release; the newest when the release is unknown.
pub fn default_for(release: Option<Release>) -> &'static [&'static str] {
    match release {
        None => DEFAULT,
        Some(r) if r >= (8, 8) => DEFAULT,
        Some(r) if r >= (8, 5) => DEFAULT_8_5,
        Some(r) if r >= (8, 2) => DEFAULT_8_2,
        Some(r) if r >= (7, 8) => DEFAULT_7_8,
        Some(_) => DEFAULT_7_7,
    }
}

/// The names a release knows: security keys (`sk-`, `webauthn-`) since 8.2, DSA gone in 10.0.
fn known_in(name: &str, release: Option<Release>) -> bool {
    let Some(r) = release else { return true };
    let sk = name.starts_with("sk-") || name.starts_with("webauthn-");
    let too_new = sk && r < (8, 2);
    let removed = name.starts_with("ssh-dss") && r >= (10, 0);
    !too_new && !removed
}

/// Every signature algorithm OpenSSH 9.2 knows, in sshkey.c's table order (`ssh -Q key-sig`):
/// the order patterns expand in.
pub const ALL: &[&str] = &[
    "ssh-ed25519",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
    "ssh-dss-cert-v01@openssh.com",
    "ssh-rsa",
    "ssh-rsa-cert-v01@openssh.com",
    "rsa-sha2-256",
    "rsa-sha2-256-cert-v01@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-512-cert-v01@openssh.com",
];

use super::matching::match_pattern;

/// servconf.c checks the names when it reads the line (sshkey.c `sshkey_names_valid2()` with
/// wildcards allowed); a `-` list is only patterns to remove and is not checked.
pub fn validate(value: &str) -> Result<(), String> {
    validate_for(value, None)
}

/// [`validate`] for a release's own list of names.
pub fn validate_for(value: &str, release: Option<Release>) -> Result<(), String> {
    if value.starts_with('-') {
        return Ok(());
    }
    let list = value.trim_start_matches(['+', '^']);
    for name in list.split(',') {
        if name.is_empty() {
            break;
        }
        if !ALL
            .iter()
            .any(|a| known_in(a, release) && match_pattern(a, name))
        {
            return Err(format!("bad key types '{value}' (unknown '{name}')"));
        }
    }
    Ok(())
}

fn cat(out: &mut Vec<String>, name: &str) {
    if !out.iter().any(|n| n == name) {
        out.push(name.to_string());
    }
}

/// kex.c `kex_assemble_names(value, DEFAULT, ALL)` of the newest release.
pub fn assemble(value: Option<&str>) -> Vec<String> {
    assemble_for(value, None)
}

/// kex.c `kex_assemble_names()` with the default and the names of `release`.
pub fn assemble_for(value: Option<&str>, release: Option<Release>) -> Vec<String> {
    let default = default_for(release);
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return default.iter().map(|s| s.to_string()).collect();
    };
    if let Some(deny) = value.strip_prefix('-') {
        // match_filter_denylist(): default names matching none of the patterns.
        return default
            .iter()
            .filter(|d| !deny.split(',').any(|p| match_pattern(d, p)))
            .map(|s| s.to_string())
            .collect();
    }
    let def = default.join(",");
    let list = if let Some(add) = value.strip_prefix('+') {
        format!("{def},{add}")
    } else if let Some(first) = value.strip_prefix('^') {
        format!("{first},{def}")
    } else {
        value.to_string()
    };
    let mut out = Vec::new();
    for pat in list.split(',').filter(|p| !p.is_empty()) {
        for name in ALL
            .iter()
            .filter(|a| known_in(a, release) && match_pattern(a, pat))
        {
            cat(&mut out, name);
        }
    }
    out
}

/// The signature algorithms a key of this type can authenticate with (an RSA key signs with
/// rsa-sha2-512/256, or the legacy ssh-rsa).
pub fn signatures_for(key_type: &str) -> Vec<&'static str> {
    match key_type {
        "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        other => ALL.iter().copied().filter(|a| *a == other).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are what OpenSSH 9.2's `sshd -T` prints for these settings.
    #[test]
    fn assembled_like_sshd() {
        assert_eq!(assemble(None).len(), DEFAULT.len());
        assert_eq!(
            assemble(Some("ssh-ed25519*,rsa-sha2-512")),
            [
                "ssh-ed25519",
                "ssh-ed25519-cert-v01@openssh.com",
                "rsa-sha2-512"
            ]
        );
        let minus = assemble(Some("-rsa*,ssh-ed25519"));
        assert_eq!(minus.len(), 11);
        assert!(!minus
            .iter()
            .any(|n| n.starts_with("rsa") || n == "ssh-ed25519"));
        let head = assemble(Some("^ssh-rsa"));
        assert_eq!(head[0], "ssh-rsa");
        assert_eq!(head.len(), DEFAULT.len() + 1);
        let plus = assemble(Some("+ssh-rsa,rsa-sha2-512"));
        assert_eq!(plus.last().unwrap(), "ssh-rsa");
        assert_eq!(plus.len(), DEFAULT.len() + 1);
    }

    // `sshd -T` of Debian 11's 8.4p1 with an empty config accepts ssh-rsa; 9.2 and 10.0 do not.
    #[test]
    fn defaults_by_release() {
        let d84 = assemble_for(None, Some((8, 4)));
        assert_eq!(d84.len(), 18);
        assert!(d84.iter().any(|n| n == "ssh-rsa"));
        assert!(!assemble_for(None, Some((10, 0)))
            .iter()
            .any(|n| n == "ssh-rsa"));
        assert!(assemble_for(None, Some((8, 7)))
            .iter()
            .any(|n| n == "ssh-rsa"));
        assert!(!assemble_for(None, Some((8, 8)))
            .iter()
            .any(|n| n == "ssh-rsa"));
        assert_eq!(assemble_for(Some("+ssh-rsa"), Some((8, 4))).len(), 18);
        assert_eq!(assemble_for(Some("-ssh-rsa*"), Some((8, 0))).len(), 12);
        assert!(validate_for("ssh-dss", Some((9, 2))).is_ok());
        assert!(validate_for("ssh-dss", Some((10, 0))).is_err());
        assert!(validate_for("sk-ssh-ed25519@openssh.com", Some((8, 1))).is_err());
        assert_eq!(default_for(Some((7, 7))).len(), 12);
    }

    #[test]
    fn names_checked() {
        assert!(validate("ssh-ed25519,rsa-sha2-*").is_ok());
        assert!(validate("+ssh-rsa").is_ok());
        assert!(validate("-whatever*").is_ok());
        assert!(validate("ssh-ed25519,bogus").is_err());
    }
}
