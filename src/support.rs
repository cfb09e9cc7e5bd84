//! Who the support is: region → host, the key(s) and their fingerprints.
//!
//! The built-in profiles (OVH's regions) are in `profiles`; the whole "who and from where"
//! decision for a command line is `target::resolve_target`.
use anyhow::{Context, Result};

mod profiles;
mod target;

pub use profiles::{expand, profile, profile_by_host, profile_by_name, profiles, Profile, Region};
pub use target::{
    choose_addresses, resolve_target, AddressSource, DnsLookup, KeyFileParser, Target,
    TargetRequest,
};

/// One support public key, as it will be written into the keys file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SupportKey {
    /// Key type as written in the file: `ssh-rsa`, `ssh-ed25519`, `ecdsa-sha2-nistp256`, ...
    pub algorithm: String,
    /// The base64 blob exactly as written in the file; lines are matched on it.
    pub blob: String,
    /// The key's own comment (may be empty).
    pub comment: String,
    /// `SHA256:...` as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

impl SupportKey {
    /// Build a key from the three fields of a public-key line, checking that the blob really is a
    /// key of that type (`ssh-key` decodes it; it is used for nothing else) and computing its
    /// SHA256 fingerprint.
    pub fn from_parts(algorithm: &str, blob: &str, comment: &str) -> Result<SupportKey> {
        let line = format!("{algorithm} {blob}");
        let key = ssh_key::PublicKey::from_openssh(&line)
            .with_context(|| format!("'{algorithm} {}…' is not a valid public key", short(blob)))?;
        if key.algorithm().as_str() != algorithm {
            anyhow::bail!(
                "the key blob is of type {} but the line says {algorithm}",
                key.algorithm().as_str()
            );
        }
        Ok(SupportKey {
            algorithm: algorithm.to_string(),
            blob: blob.to_string(),
            comment: comment.to_string(),
            fingerprint: key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
        })
    }
}

fn short(s: &str) -> &str {
    s.get(..20).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA";

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        let k = SupportKey::from_parts("ssh-ed25519", ED, "me@host").unwrap();
        assert_eq!(
            k.fingerprint,
            "SHA256:OaChtsHD8J9245JvxQUWUJmckCcbkkROE8ybQ/116Ak"
        );
        assert!(SupportKey::from_parts("ssh-rsa", ED, "").is_err());
        assert!(SupportKey::from_parts("ssh-ed25519", "AAAA", "").is_err());
    }
}
