//! Which file sshd reads: AuthorizedKeysFile expanded for root, as `auth.c:
//! expand_authorized_keys` does it (`%h` home, `%u` user name, `%U` uid, `%%` a percent sign;
//! a path that is not absolute is relative to the home directory).
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::keyfile::root_home;
use crate::root::Root;

/// The keys file the tool manages until sshd's AuthorizedKeysFile is known: the one OVH's guide
/// names, `<root's home>/.ssh/authorized_keys2`.
pub fn default_keys_path(root: &Root) -> Result<PathBuf> {
    Ok(root_home(root)?.join(".ssh/authorized_keys2"))
}

/// Expand one AuthorizedKeysFile entry for the user `user` (uid `uid`, home `home`).
pub fn expand_authorized_keys_file(
    pattern: &str,
    home: &Path,
    user: &str,
    uid: u32,
) -> Result<PathBuf> {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h') => out.push_str(&home.to_string_lossy()),
            Some('u') => out.push_str(user),
            Some('U') => out.push_str(&uid.to_string()),
            // sshd's percent_expand() treats an unknown token as fatal.
            Some(t) => bail!(
                "AuthorizedKeysFile '{pattern}' has the unknown token %{t}; sshd only knows %h, %u, %U and %%"
            ),
            None => bail!("AuthorizedKeysFile '{pattern}' ends with a lone %; write %% for a percent sign"),
        }
    }
    let p = PathBuf::from(out);
    Ok(if p.is_absolute() { p } else { home.join(p) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_relative_paths() {
        let h = Path::new("/root");
        let e = |p: &str| expand_authorized_keys_file(p, h, "root", 0).unwrap();
        assert_eq!(
            e(".ssh/authorized_keys2"),
            PathBuf::from("/root/.ssh/authorized_keys2")
        );
        assert_eq!(e("%h/.ssh/k"), PathBuf::from("/root/.ssh/k"));
        assert_eq!(e("/etc/ssh/keys/%u"), PathBuf::from("/etc/ssh/keys/root"));
        assert_eq!(e("/etc/ssh/keys/%U%%"), PathBuf::from("/etc/ssh/keys/0%"));
        assert!(expand_authorized_keys_file("%x", h, "root", 0).is_err());
        assert!(expand_authorized_keys_file("a%", h, "root", 0).is_err());
    }
}
