//! `sshd -T -C ...`: the installed sshd's own view of its effective settings for one connection,
//! used as a cross-check of the parser. Its `port` lines are the Port values, not the listening
//! set: the `listenaddress` lines are (servconf.c `dump_config()`).
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::matching::Connection;
use super::{Effective, PermitRootLogin};

pub const SSHD: &str = "/usr/sbin/sshd";

/// The settings `sshd -T` prints that this module cross-checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    pub listen: Vec<(IpAddr, u16)>,
    pub permit_root_login: Option<PermitRootLogin>,
    pub pubkey_authentication: Option<bool>,
    pub pubkey_accepted_algorithms: Vec<String>,
    pub authorized_keys_files: Vec<String>,
    pub authorized_keys_command: Option<String>,
    pub allow_users: Vec<String>,
    pub deny_users: Vec<String>,
    pub allow_groups: Vec<String>,
    pub deny_groups: Vec<String>,
    pub authentication_methods: Vec<String>,
    pub strict_modes: Option<bool>,
    pub use_pam: Option<bool>,
}

/// Parse `sshd -T` output (one `keyword value` per line, keywords lowercase).
pub fn parse_dump(text: &str) -> Dump {
    let mut d = Dump::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        let words = || v.split(' ').map(String::from).collect::<Vec<_>>();
        let flag = || match v {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        };
        match k {
            "listenaddress" => {
                if let Some((a, p)) = v.rsplit_once(':') {
                    let a = a.trim_start_matches('[').trim_end_matches(']');
                    if let (Ok(a), Ok(p)) = (a.parse(), p.parse()) {
                        d.listen.push((a, p));
                    }
                }
            }
            "permitrootlogin" => d.permit_root_login = PermitRootLogin::parse(v),
            "pubkeyauthentication" => d.pubkey_authentication = flag(),
            // Its name before 8.5.
            "pubkeyacceptedalgorithms" | "pubkeyacceptedkeytypes" => {
                d.pubkey_accepted_algorithms = v.split(',').map(String::from).collect()
            }
            "authorizedkeysfile" => d.authorized_keys_files = words(),
            "authorizedkeyscommand" if v != "none" => {
                d.authorized_keys_command = Some(v.to_string())
            }
            "allowusers" => d.allow_users.extend(words()),
            "denyusers" => d.deny_users.extend(words()),
            "allowgroups" => d.allow_groups.extend(words()),
            "denygroups" => d.deny_groups.extend(words()),
            "authenticationmethods" if v != "any" => d.authentication_methods = words(),
            "strictmodes" => d.strict_modes = flag(),
            "usepam" => d.use_pam = flag(),
            _ => {}
        }
    }
    d
}

/// The `-C` argument for a connection (user, host, addr, laddr, lport as known).
pub fn connection_spec(c: &Connection) -> String {
    let mut parts = vec![format!("user={}", c.user)];
    if let Some(h) = &c.host {
        parts.push(format!("host={h}"));
    }
    if let Some(a) = c.addr {
        parts.push(format!("addr={a}"));
    }
    if let Some(a) = c.laddr {
        parts.push(format!("laddr={a}"));
    }
    if let Some(p) = c.lport {
        parts.push(format!("lport={p}"));
    }
    parts.join(",")
}

/// Run `sshd -T -C spec` with extra arguments (`-f FILE`, `-o HostKey=...` in tests).
pub fn run(sshd: &Path, conn: &Connection, extra: &[&std::ffi::OsStr]) -> Result<Dump> {
    let out = Command::new(sshd)
        .arg("-T")
        .arg("-C")
        .arg(connection_spec(conn))
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} -T", sshd.display()))?;
    if !out.status.success() {
        bail!(
            "{} -T failed ({}): {}",
            sshd.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_dump(&String::from_utf8_lossy(&out.stdout)))
}

/// The settings where the parser and `sshd -T` disagree, as "name: parser X, sshd -T Y".
pub fn disagreements(e: &Effective, d: &Dump) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, ours: String, theirs: String| {
        if ours != theirs {
            out.push(format!("{name}: parser {ours}, sshd -T {theirs}"));
        }
    };
    cmp(
        "PermitRootLogin",
        format!("{:?}", Some(e.permit_root_login.value)),
        format!("{:?}", d.permit_root_login),
    );
    cmp(
        "PubkeyAuthentication",
        format!("{:?}", Some(e.pubkey_authentication.value)),
        format!("{:?}", d.pubkey_authentication),
    );
    cmp(
        "PubkeyAcceptedAlgorithms",
        e.pubkey_accepted_algorithms.value.join(","),
        d.pubkey_accepted_algorithms.join(","),
    );
    cmp(
        "AuthorizedKeysFile",
        e.authorized_keys_files.value.join(" "),
        d.authorized_keys_files.join(" "),
    );
    cmp(
        "AuthorizedKeysCommand",
        format!("{:?}", e.authorized_keys_command.value),
        format!("{:?}", d.authorized_keys_command),
    );
    cmp(
        "AllowUsers",
        e.allow_users.value.join(" "),
        d.allow_users.join(" "),
    );
    cmp(
        "DenyUsers",
        e.deny_users.value.join(" "),
        d.deny_users.join(" "),
    );
    cmp(
        "AllowGroups",
        e.allow_groups.value.join(" "),
        d.allow_groups.join(" "),
    );
    cmp(
        "DenyGroups",
        e.deny_groups.value.join(" "),
        d.deny_groups.join(" "),
    );
    cmp(
        "AuthenticationMethods",
        e.authentication_methods.value.join(" "),
        d.authentication_methods.join(" "),
    );
    cmp(
        "StrictModes",
        format!("{:?}", Some(e.strict_modes.value)),
        format!("{:?}", d.strict_modes),
    );
    cmp(
        "UsePAM",
        format!("{:?}", Some(e.use_pam.value)),
        format!("{:?}", d.use_pam),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lines() {
        let d = parse_dump(
            "port 2222\nlistenaddress [2001:db8::1]:2201\nlistenaddress 0.0.0.0:2222\n\
             permitrootlogin without-password\nusepam yes\nallowusers a\nallowusers b\n\
             authorizedkeyscommand none\nauthenticationmethods any\n\
             authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2\n",
        );
        assert_eq!(
            d.listen,
            [
                ("2001:db8::1".parse().unwrap(), 2201),
                ("0.0.0.0".parse().unwrap(), 2222)
            ]
        );
        assert_eq!(d.permit_root_login, Some(PermitRootLogin::ProhibitPassword));
        assert_eq!(d.use_pam, Some(true));
        assert_eq!(d.allow_users, ["a", "b"]);
        assert_eq!(d.authorized_keys_command, None);
        assert!(d.authentication_methods.is_empty());
        assert_eq!(d.authorized_keys_files.len(), 2);
    }

    #[test]
    fn dump_names_of_older_releases() {
        // OpenSSH 8.4's `sshd -T` (Debian 11).
        let d = parse_dump("pubkeyacceptedkeytypes ssh-ed25519,rsa-sha2-512,ssh-rsa\n");
        assert_eq!(
            d.pubkey_accepted_algorithms,
            ["ssh-ed25519", "rsa-sha2-512", "ssh-rsa"]
        );
    }
}
