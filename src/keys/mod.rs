//! The keys file: a byte-preserving authorized_keys editor and a symlink-safe atomic writer.
//!
//! - [`line`] and [`options`]: the line model, after OpenSSH's `auth_check_authkey_line` and
//!   `sshauthopt_parse`; unparsed lines stay opaque bytes.
//! - [`edit`]: install / disable / remove as pure functions of the bytes, plus the views status
//!   and doctor need. Only support lines change.
//! - [`expiry`]: `expiry-time` in the form the installed sshd reads.
//! - [`writer`]: the `openat(O_NOFOLLOW)` walk, StrictModes checks and the atomic replace.
//! - [`keyfile`]: `--key-file` and root's home. AuthorizedKeysFile is expanded by
//!   [`crate::sshd::keys_file`].
//!
//! The tool's line reads like OVH's published one, with the marker appended to the key's own
//! comment: `from="a,::ffff:a,b6"[,expiry-time="…"] ssh-rsa AAAA… support@cache-ng ovh-access`.
//! A line is the tool's when its key is a support key (recorded by the grant, or built in) and a
//! whitespace-separated token of its comment is [`MARKER`].
pub mod diff;
pub mod edit;
pub mod expiry;
pub mod from;
pub mod keyfile;
pub mod line;
pub mod options;
pub mod writer;

/// The token in the comment that marks the tool's own line.
pub const MARKER: &str = "ovh-access";

pub use diff::diff;
pub use edit::{
    disable, install, remove, render_line, retire, support_lines, tool_lines, EditOutcome,
    KeyLineInfo, ToolLine,
};
pub use expiry::{
    expiry_for, format_expiry, sshd_has_expiry, sshd_reads, Expiry, ExpiryStyle, ServerZone,
};
pub use keyfile::{parse_key_file, root_home};
pub use writer::{read, update, WriteOutcome};
