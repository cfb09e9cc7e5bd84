//! Who the support is: region → host, the key(s) and their fingerprints.
//!
//! (Foundation: the key type and its loading from `--key-file`. The built-in profiles of issue 10
//! are added here.)

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
