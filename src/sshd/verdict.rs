//! Will sshd accept the support key for root from this address? The checks sshd makes before
//! and during public-key authentication, as pure functions of the effective settings:
//! auth.c `allowed_user()` (DenyUsers, AllowUsers, DenyGroups, AllowGroups, with match.c
//! `match_user()` for `user@host` patterns), auth2-pubkey.c / auth.c `auth_root_allowed()`
//! (PermitRootLogin), and auth2.c's AuthenticationMethods lists.
use std::net::IpAddr;

use super::matching::{addr_match_list, match_pattern, match_pattern_list, PatternCase};
use super::{Effective, PermitRootLogin, Setting};

fn at<T>(s: &Setting<T>) -> String {
    match &s.source {
        Some(src) => format!(" ({src})"),
        None => " (OpenSSH default)".to_string(),
    }
}

/// match.c `match_host_and_ip()`: the host part of a `user@host` pattern, compared with the
/// address (as a list of CIDRs/wildcards) and with the host name.
fn match_host_and_ip(host: &str, addr: IpAddr, patterns: &str) -> bool {
    let ip = addr_match_list_signed(addr, patterns);
    if ip == -1 {
        return false;
    }
    let h = match_pattern_list(&host.to_ascii_lowercase(), patterns, PatternCase::Lower);
    if h == -1 {
        return false;
    }
    ip == 1 || h == 1
}

/// addr_match_list() distinguishing "a negated entry matched" (-1) from "no entry" (0).
fn addr_match_list_signed(addr: IpAddr, list: &str) -> i32 {
    let negated = list
        .split(',')
        .filter_map(|e| e.strip_prefix('!'))
        .any(|e| addr_match_list(addr, e));
    if negated {
        -1
    } else {
        i32::from(addr_match_list(addr, list))
    }
}

/// match.c `match_user()`: `user` or `user@host` (split at the last `@`).
pub fn match_user(user: &str, host: &str, addr: IpAddr, pattern: &str) -> bool {
    match pattern.rsplit_once('@') {
        None => match_pattern(user, pattern),
        Some((u, h)) => match_pattern(user, u) && match_host_and_ip(host, addr, h),
    }
}

/// One reason sshd would refuse the key: the sshd_config keyword responsible (so that a caller
/// such as `doctor` can point at its `Setting::source` and name the line to write) and the
/// sentence explaining it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// `PermitRootLogin`, `PubkeyAuthentication`, `DenyUsers`, `AllowUsers`, `DenyGroups`,
    /// `AllowGroups`, `AuthenticationMethods`, `AuthorizedKeysFile`.
    pub keyword: &'static str,
    /// The offending pattern, for DenyUsers/DenyGroups.
    pub pattern: Option<String>,
    pub message: String,
}

/// Why sshd would refuse the support key (of type `key_type`, e.g. `ssh-rsa`) for `user` with
/// `groups`, connecting from `addr`
/// (`host` is what sshd compares host patterns with: the address unless UseDNS). Empty = sshd
/// accepts a plain, unrestricted-by-command key line in a keys file it reads.
pub fn blockers(
    key_type: &str,
    e: &Effective,
    user: &str,
    groups: &[String],
    addr: IpAddr,
    host: &str,
) -> Vec<String> {
    blocker_details(key_type, e, user, groups, addr, host)
        .into_iter()
        .map(|b| b.message)
        .collect()
}

/// [`blockers`], each with the keyword responsible.
pub fn blocker_details(
    key_type: &str,
    e: &Effective,
    user: &str,
    groups: &[String],
    addr: IpAddr,
    host: &str,
) -> Vec<Blocker> {
    let client = Client {
        user,
        groups,
        addr,
        host,
    };
    [
        root_login(e, &client),
        pubkey_authentication(e),
        deny_users(e, &client),
        allow_users(e, &client),
        deny_groups(e, &client),
        allow_groups(e, &client),
        accepted_algorithms(e, key_type),
        authentication_methods(e),
        authorized_keys_files(e),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Who connects: the account and where from.
struct Client<'a> {
    user: &'a str,
    groups: &'a [String],
    addr: IpAddr,
    /// What sshd compares host patterns with: the address unless UseDNS.
    host: &'a str,
}

impl Blocker {
    fn new(keyword: &'static str, message: String) -> Blocker {
        Blocker {
            keyword,
            pattern: None,
            message,
        }
    }
}

/// auth.c `auth_root_allowed()`: only `yes` and `prohibit-password` let root in with a key
/// that has no forced command.
fn root_login(e: &Effective, c: &Client) -> Option<Blocker> {
    let prl = &e.permit_root_login;
    if c.user != "root" || prl.value.allows_key() {
        return None;
    }
    let v = match prl.value {
        PermitRootLogin::No => "no",
        _ => "forced-commands-only",
    };
    let addr = c.addr;
    Some(Blocker::new(
        "PermitRootLogin",
        format!(
            "PermitRootLogin {v}{} refuses root's key from {addr}; set it to prohibit-password \
             for the support address (e.g. in a `Match Address {addr}` block)",
            at(prl)
        ),
    ))
}

/// auth2-pubkey.c: the publickey method exists only with PubkeyAuthentication yes.
fn pubkey_authentication(e: &Effective) -> Option<Blocker> {
    (!e.pubkey_authentication.value).then(|| {
        Blocker::new(
            "PubkeyAuthentication",
            format!(
                "PubkeyAuthentication no{} disables key logins; set PubkeyAuthentication yes",
                at(&e.pubkey_authentication)
            ),
        )
    })
}

/// auth.c `allowed_user()`: a DenyUsers pattern matching the user refuses it.
fn deny_users(e: &Effective, c: &Client) -> Option<Blocker> {
    let p = e
        .deny_users
        .value
        .iter()
        .find(|p| match_user(c.user, c.host, c.addr, p))?;
    Some(Blocker {
        pattern: Some(p.clone()),
        ..Blocker::new(
            "DenyUsers",
            format!(
                "DenyUsers {p}{} denies {} from {}; remove that pattern",
                at(&e.deny_users),
                c.user,
                c.addr
            ),
        )
    })
}

/// auth.c `allowed_user()`: a non-empty AllowUsers must have a pattern matching the user.
fn allow_users(e: &Effective, c: &Client) -> Option<Blocker> {
    let pats = &e.allow_users.value;
    if pats.is_empty() || pats.iter().any(|p| match_user(c.user, c.host, c.addr, p)) {
        return None;
    }
    let (user, addr) = (c.user, c.addr);
    Some(Blocker::new(
        "AllowUsers",
        format!(
            "AllowUsers{} does not list {user} from {addr}; add {user}@{addr}",
            at(&e.allow_users)
        ),
    ))
}

/// The first of the user's groups that one of `pats` matches.
fn group_hit(groups: &[String], pats: &[String]) -> Option<String> {
    groups
        .iter()
        .find(|g| pats.iter().any(|p| match_pattern(g, p)))
        .cloned()
}

/// auth.c `allowed_user()`: a DenyGroups pattern matching one of the user's groups refuses it.
/// The blocker's `pattern` is the group that matched.
fn deny_groups(e: &Effective, c: &Client) -> Option<Blocker> {
    let g = group_hit(c.groups, &e.deny_groups.value)?;
    let message = format!(
        "DenyGroups{} denies {}'s group {g}; remove that pattern",
        at(&e.deny_groups),
        c.user
    );
    Some(Blocker {
        pattern: Some(g),
        ..Blocker::new("DenyGroups", message)
    })
}

/// auth.c `allowed_user()`: a non-empty AllowGroups must match one of the user's groups.
fn allow_groups(e: &Effective, c: &Client) -> Option<Blocker> {
    let pats = &e.allow_groups.value;
    if pats.is_empty() || group_hit(c.groups, pats).is_some() {
        return None;
    }
    Some(Blocker::new(
        "AllowGroups",
        format!(
            "AllowGroups{} lists none of {}'s groups ({}); add one of them",
            at(&e.allow_groups),
            c.user,
            c.groups.join(", ")
        ),
    ))
}

/// auth2-pubkey.c: the key's signature algorithm must be one PubkeyAcceptedAlgorithms lists.
fn accepted_algorithms(e: &Effective, key_type: &str) -> Option<Blocker> {
    let sigs = super::algorithms::signatures_for(key_type);
    let accepted = &e.pubkey_accepted_algorithms;
    if accepted.value.iter().any(|a| sigs.contains(&a.as_str())) {
        return None;
    }
    Some(Blocker::new(
        "PubkeyAcceptedAlgorithms",
        format!(
            "PubkeyAcceptedAlgorithms{} accepts none of {} for the {key_type} support key; \
             add {} to it",
            at(accepted),
            sigs.join(", "),
            sigs.first().copied().unwrap_or(key_type)
        ),
    ))
}

/// auth2.c: with AuthenticationMethods, one of the lists must be satisfied by the key alone.
fn authentication_methods(e: &Effective) -> Option<Blocker> {
    let methods = &e.authentication_methods.value;
    if methods.is_empty() || methods.iter().any(|l| l == "publickey") {
        return None;
    }
    Some(Blocker::new(
        "AuthenticationMethods",
        format!(
            "AuthenticationMethods {}{} asks for more than a key, and the support has only its \
             key; add a list that is just `publickey` for the support address",
            methods.join(" "),
            at(&e.authentication_methods)
        ),
    ))
}

/// auth2-pubkey.c skips every AuthorizedKeysFile entry that is `none`.
fn authorized_keys_files(e: &Effective) -> Option<Blocker> {
    let files = &e.authorized_keys_files;
    if !files.value.iter().all(|f| f.eq_ignore_ascii_case("none")) {
        return None;
    }
    Some(Blocker::new(
        "AuthorizedKeysFile",
        format!(
            "AuthorizedKeysFile none{}: sshd reads no keys file; list one (e.g. \
             .ssh/authorized_keys2)",
            at(files)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sshd::eval;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set<T>(v: T) -> Setting<T> {
        Setting {
            value: v,
            source: None,
        }
    }

    #[test]
    fn user_host_patterns() {
        let a = ip("192.0.2.7");
        assert!(match_user("root", "192.0.2.7", a, "root"));
        assert!(match_user("root", "192.0.2.7", a, "root@192.0.2.0/24"));
        assert!(match_user("root", "192.0.2.7", a, "r*@192.0.2.*"));
        assert!(!match_user("root", "192.0.2.7", a, "root@198.51.100.0/24"));
        assert!(!match_user("root", "192.0.2.7", a, "root@*,!192.0.2.7"));
        assert!(!match_user("admin", "192.0.2.7", a, "root"));
    }

    #[test]
    fn each_blocker_names_its_keyword_and_what_matched() {
        let groups = ["root".to_string(), "wheel".to_string()];
        let c = Client {
            user: "root",
            groups: &groups,
            addr: ip("192.0.2.7"),
            host: "192.0.2.7",
        };
        let mut e = eval::effective(&eval::Options::default());
        e.deny_users = set(vec!["admin".into(), "*@192.0.2.*".into()]);
        let b = deny_users(&e, &c).unwrap();
        assert_eq!(
            (b.keyword, b.pattern.as_deref()),
            ("DenyUsers", Some("*@192.0.2.*"))
        );
        // DenyGroups names the group that matched, not the pattern.
        e.deny_groups = set(vec!["wh*".into()]);
        let b = deny_groups(&e, &c).unwrap();
        assert_eq!(
            (b.keyword, b.pattern.as_deref()),
            ("DenyGroups", Some("wheel"))
        );
        assert_eq!(
            group_hit(&groups, &["x".into(), "r?ot".into()]),
            Some("root".into())
        );
        assert_eq!(group_hit(&groups, &["admin".into()]), None);
        e.permit_root_login = set(PermitRootLogin::No);
        assert_eq!(root_login(&e, &c).unwrap().keyword, "PermitRootLogin");
        // PermitRootLogin is about root only.
        let bob = Client { user: "bob", ..c };
        assert!(root_login(&e, &bob).is_none());
        let all = blocker_details("ssh-rsa", &e, "root", &groups, c.addr, c.host);
        let kws: Vec<_> = all.iter().map(|b| b.keyword).collect();
        assert_eq!(kws, ["PermitRootLogin", "DenyUsers", "DenyGroups"]);
    }

    #[test]
    fn defaults_accept_the_key() {
        let e = eval::effective(&eval::Options::default());
        let a = ip("192.0.2.7");
        assert!(blockers("ssh-rsa", &e, "root", &["root".into()], a, "192.0.2.7").is_empty());
    }

    #[test]
    fn each_setting_that_blocks() {
        let a = ip("192.0.2.7");
        let g = ["root".to_string()];
        let base = eval::effective(&eval::Options::default());
        let one = |f: &dyn Fn(&mut Effective)| {
            let mut e = base.clone();
            f(&mut e);
            blockers("ssh-rsa", &e, "root", &g, a, "192.0.2.7")
        };
        type Change = Box<dyn Fn(&mut Effective)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "PermitRootLogin no",
                Box::new(|e| e.permit_root_login = set(PermitRootLogin::No)),
            ),
            (
                "forced-commands-only",
                Box::new(|e| e.permit_root_login = set(PermitRootLogin::ForcedCommandsOnly)),
            ),
            (
                "PubkeyAuthentication",
                Box::new(|e| e.pubkey_authentication = set(false)),
            ),
            (
                "DenyUsers",
                Box::new(|e| e.deny_users = set(vec!["*@192.0.2.*".into()])),
            ),
            (
                "AllowUsers",
                Box::new(|e| e.allow_users = set(vec!["admin".into()])),
            ),
            (
                "DenyGroups",
                Box::new(|e| e.deny_groups = set(vec!["ro*".into()])),
            ),
            (
                "AllowGroups",
                Box::new(|e| e.allow_groups = set(vec!["sshusers".into()])),
            ),
            (
                "AuthenticationMethods",
                Box::new(|e| e.authentication_methods = set(vec!["publickey,password".into()])),
            ),
            (
                "AuthorizedKeysFile none",
                Box::new(|e| e.authorized_keys_files = set(vec!["none".into()])),
            ),
        ];
        for (what, f) in cases {
            let b = one(&*f);
            assert_eq!(b.len(), 1, "{what}: {b:?}");
            assert!(b[0].contains(what), "{what}: {b:?}");
        }
        assert!(
            one(&|e| e.allow_users = set(vec!["admin".into(), "root@192.0.2.0/24".into()]))
                .is_empty()
        );
        assert!(one(&|e| e.authentication_methods =
            set(vec!["publickey,password".into(), "publickey".into()]))
        .is_empty());
        assert!(one(&|e| e.permit_root_login = set(PermitRootLogin::Yes)).is_empty());
        let b = one(&|e| e.pubkey_accepted_algorithms = set(vec!["ssh-ed25519".into()]));
        assert!(b.len() == 1 && b[0].contains("rsa-sha2-512"), "{b:?}");
        let only_legacy = one(&|e| e.pubkey_accepted_algorithms = set(vec!["ssh-rsa".into()]));
        assert!(only_legacy.is_empty());
    }
}

/// What the account itself contributes (auth.c `allowed_user()`): the shell must exist and be
/// executable (an empty one means /bin/sh); without PAM a password field starting with `!`
/// (platform.c `platform_locked_account()`, Linux's LOCKED_PASSWD_PREFIX) locks the account
/// even for keys; an expired account (shadow's 8th field) is refused by sshd without PAM and by
/// pam_unix's account check with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub shell: String,
    /// `None`: the shell does not exist; else (is a regular file, has an execute bit).
    pub shell_file: Option<(bool, bool)>,
    /// The shadow password field, when /etc/shadow has the user.
    pub shadow_password: Option<String>,
    /// Shadow's expiry, in days since 1970-01-01.
    pub expires_day: Option<u64>,
}

/// Read the account through the root (`/etc/passwd`, `/etc/shadow`, the shell file).
pub fn read_account(root: &crate::root::Root, user: &str) -> Option<Account> {
    let f = super::passwd_entry(root, |f| f[0] == user)?;
    let shell = if f[6].is_empty() {
        "/bin/sh".to_string()
    } else {
        f[6].clone()
    };
    let shell_file = std::fs::metadata(root.path(&shell)).ok().map(|m| {
        use std::os::unix::fs::PermissionsExt;
        (m.is_file(), m.permissions().mode() & 0o111 != 0)
    });
    let shadow = crate::bounded::read_to_string(root.path("/etc/shadow"), crate::bounded::CONFIG)
        .unwrap_or_default();
    let s: Option<Vec<String>> = shadow
        .lines()
        .map(|l| l.split(':').map(String::from).collect::<Vec<_>>())
        .find(|s| s.len() >= 2 && s[0] == user);
    Some(Account {
        user: user.to_string(),
        shell,
        shell_file,
        shadow_password: s.as_ref().map(|s| s[1].clone()),
        expires_day: s
            .as_ref()
            .and_then(|s| s.get(7))
            .and_then(|d| d.parse().ok()),
    })
}

/// Why the account would be refused, whatever the key (`today`: days since 1970-01-01).
pub fn account_blockers(a: &Account, use_pam: &Setting<bool>, today: u64) -> Vec<String> {
    let mut out = Vec::new();
    let user = &a.user;
    match a.shell_file {
        None => out.push(format!(
            "{user}'s shell {} does not exist: sshd refuses the login; set an existing shell \
             with `chsh -s /bin/bash {user}`",
            a.shell
        )),
        Some((true, true)) => {
            let name = a.shell.rsplit('/').next().unwrap_or("");
            if name == "nologin" || name == "false" {
                out.push(format!(
                    "{user}'s shell is {}: the key is accepted but the session ends at once; set \
                     a login shell with `chsh -s /bin/bash {user}`",
                    a.shell
                ));
            }
        }
        Some(_) => out.push(format!(
            "{user}'s shell {} is not an executable file: sshd refuses the login; set a working \
             shell with `chsh -s /bin/bash {user}`",
            a.shell
        )),
    }
    if !use_pam.value
        && a.shadow_password
            .as_deref()
            .is_some_and(|p| p.starts_with('!'))
    {
        out.push(format!(
            "{user}'s password is locked (`!` in /etc/shadow) and UsePAM is no{}: sshd then \
             refuses even key logins; unlock with `usermod -p '*' {user}` (no password, keys \
             only) or set UsePAM yes",
            at(use_pam)
        ));
    }
    if let Some(day) = a.expires_day {
        if day <= today {
            out.push(format!(
                "{user}'s account expired (day {day} in /etc/shadow): sshd and PAM refuse it; \
                 clear the expiry with `chage -E -1 {user}`"
            ));
        }
    }
    out
}

#[cfg(test)]
mod account_tests {
    use super::*;

    fn acct(shell: &str, file: Option<(bool, bool)>, pw: &str, exp: Option<u64>) -> Account {
        Account {
            user: "root".into(),
            shell: shell.into(),
            shell_file: file,
            shadow_password: Some(pw.into()),
            expires_day: exp,
        }
    }

    fn pam(v: bool) -> Setting<bool> {
        Setting {
            value: v,
            source: None,
        }
    }

    #[test]
    fn account_rules() {
        let ok = Some((true, true));
        assert!(account_blockers(&acct("/bin/bash", ok, "*", None), &pam(false), 20000).is_empty());
        // A locked password blocks keys only without PAM.
        assert!(
            account_blockers(&acct("/bin/bash", ok, "!$6$x", None), &pam(true), 20000).is_empty()
        );
        let b = account_blockers(&acct("/bin/bash", ok, "!$6$x", None), &pam(false), 20000);
        assert!(b.len() == 1 && b[0].contains("locked"), "{b:?}");
        let b = account_blockers(&acct("/bin/zsh", None, "*", None), &pam(true), 20000);
        assert!(b.len() == 1 && b[0].contains("does not exist"), "{b:?}");
        let b = account_blockers(
            &acct("/bin/x", Some((true, false)), "*", None),
            &pam(true),
            20000,
        );
        assert!(b.len() == 1 && b[0].contains("not an executable"), "{b:?}");
        let b = account_blockers(&acct("/usr/sbin/nologin", ok, "*", None), &pam(true), 20000);
        assert!(b.len() == 1 && b[0].contains("nologin"), "{b:?}");
        let b = account_blockers(&acct("/bin/bash", ok, "*", Some(19000)), &pam(true), 20000);
        assert!(b.len() == 1 && b[0].contains("expired"), "{b:?}");
        assert!(
            account_blockers(&acct("/bin/bash", ok, "*", Some(21000)), &pam(true), 20000)
                .is_empty()
        );
    }

    #[test]
    fn reading_the_account_through_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("etc")).unwrap();
        std::fs::create_dir_all(p.join("bin")).unwrap();
        std::fs::write(
            p.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nbob:x:1:1::/home/bob:\n",
        )
        .unwrap();
        std::fs::write(p.join("etc/shadow"), "root:!:19000:0:99999:7:::\n").unwrap();
        std::fs::write(p.join("bin/bash"), "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.join("bin/bash"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let root = crate::root::Root::new(p).unwrap();
        let a = read_account(&root, "root").unwrap();
        assert_eq!(a.shell_file, Some((true, true)));
        assert_eq!(a.shadow_password.as_deref(), Some("!"));
        assert_eq!(a.expires_day, None);
        let b = read_account(&root, "bob").unwrap();
        assert_eq!(b.shell, "/bin/sh");
        assert_eq!(b.shell_file, None);
        assert!(read_account(&root, "carol").is_none());
    }
}
