//! doctor: the troubleshooting list of OVH's guide, checked by the program. Each check gives a
//! finding — PASS, WARN or FAIL, what was found, and for anything but PASS the exact fix.
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::cli::TargetArgs;
use crate::error::{EXIT_FAILURE, EXIT_OK};
use crate::report::Report;
use crate::root::Root;
use crate::sshd::{self, PermitRootLogin, Setting};
use crate::state::State;
use crate::{dns, keys, support};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// The fix: a command, or the config line to change with its file:line. Empty for PASS.
    pub fix: String,
}

#[derive(Default)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    fn push(
        &mut self,
        check: &str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            check: check.into(),
            status,
            detail: detail.into(),
            fix: fix.into(),
        });
    }
    fn pass(&mut self, check: &str, detail: impl Into<String>) {
        self.push(check, Status::Pass, detail, "");
    }
    fn warn(&mut self, check: &str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Status::Warn, detail, fix);
    }
    fn fail(&mut self, check: &str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Status::Fail, detail, fix);
    }
}

pub fn run(root: &Root, t: &TargetArgs) -> Result<Report> {
    let mut f = Findings::default();
    let state = State::load(root).unwrap_or_default();

    // Who the support is. Without a usable target the other checks still run, on what is known.
    let lookup = {
        let root = root.clone();
        let resolver = t.resolver;
        move |host: &str| dns::resolve(&root, host, resolver, crate::access::DNS_TIMEOUT)
    };
    let target = match support::resolve_target(root, t, &keys::parse_key_file, &lookup) {
        Ok(target) => {
            f.pass(
                "support",
                format!(
                    "{}{}: {} key(s), addresses {} ({:?})",
                    target.host,
                    target
                        .profile
                        .map(|p| format!(" (profile {p})"))
                        .unwrap_or_default(),
                    target.keys.len(),
                    join(&target.addresses),
                    target.source
                ),
            );
            Some(target)
        }
        Err(e) => {
            f.fail(
                "support",
                format!("{e:#}"),
                "fix the arguments as the message says (see `ovh-access doctor --help`)",
            );
            None
        }
    };
    let addresses: Vec<IpAddr> = target
        .as_ref()
        .map(|t| t.addresses.clone())
        .unwrap_or_default();
    let host = target.as_ref().map(|t| t.host.clone()).unwrap_or_default();

    // DNS: resolves, and gives the same answer twice (round-robin or a flapping record would
    // make the from= and the firewall miss an address).
    if !host.is_empty() && t.addresses.is_empty() && !t.no_dns {
        check_dns(root, t, &host, &mut f);
    }

    // sshd.
    let facts = match sshd::probe(root, &addresses, &host) {
        Ok(facts) => Some(facts),
        Err(e) => {
            f.fail(
                "sshd_config",
                format!("{e:#}"),
                "fix the line named above, then run `sshd -t`",
            );
            None
        }
    };
    let home = match keys::root_home(root) {
        Ok(h) => Some(h),
        Err(e) => {
            f.fail(
                "root home",
                format!("{e:#}"),
                "add a root line to /etc/passwd (vipw)",
            );
            None
        }
    };
    if let Some(facts) = &facts {
        for w in &facts.warnings {
            f.warn("sshd ports", w.clone(), "restart sshd (systemctl restart ssh) so that it listens where its configuration says, or fix the socket unit");
        }
        check_sshd_settings(facts, &mut f);
        check_ports(root, facts, &mut f);
        if root.is_system() {
            check_sshd_t(&mut f);
        }
    }
    // The keys file: the one sshd reads for root, compared with the one the tool wrote.
    if let (Some(facts), Some(home)) = (&facts, &home) {
        let eff = match facts.per_address.first() {
            Some((_, e)) => e.clone(),
            None => match crate::access::global_effective(root) {
                Ok(e) => e,
                Err(e) => {
                    f.fail("sshd_config", format!("{e:#}"), "fix the line named above, then run `sshd -t`");
                    return Ok(finish(f));
                }
            },
        };
        let (path, note) = sshd::keys_file(&eff, "root", 0, home);
        let listed = eff.authorized_keys_files.value.clone();
        if !listed.iter().any(|p| p.ends_with("authorized_keys2")) {
            f.warn(
                "AuthorizedKeysFile",
                format!(
                    "sshd does not read authorized_keys2 (AuthorizedKeysFile {}){}; OVH's guide writes the key there, ovh-access writes {}",
                    listed.join(" "),
                    at(&eff.authorized_keys_files),
                    path.display()
                ),
                format!(
                    "add .ssh/authorized_keys2 to the AuthorizedKeysFile line{} (e.g. `AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2`), or let ovh-access use {}",
                    at(&eff.authorized_keys_files),
                    path.display()
                ),
            );
        } else {
            f.pass(
                "AuthorizedKeysFile",
                format!("sshd reads {}", listed.join(" ")),
            );
        }
        if let Some(n) = note {
            f.warn("keys file", n, "");
        }
        if let Some(g) = &state.granted {
            if g.keys_file != path {
                f.fail(
                    "keys file",
                    format!("the grant wrote {} but sshd reads {} for root", g.keys_file.display(), path.display()),
                    "run `ovh-access revoke`, then `ovh-access grant ...` again so that the key goes where sshd looks",
                );
            }
        }
        check_home(home, &path, &mut f);
        check_keys_file(root, &path, target.as_ref(), &addresses, &mut f);
    }

    Ok(finish(f))
}

fn finish(f: Findings) -> Report {
    let mut report = Report::new("doctor");
    let mut failed = false;
    for x in &f.0 {
        let tag = match x.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => {
                failed = true;
                "FAIL"
            }
        };
        report.line(format!("{tag}  {}: {}", x.check, x.detail));
        if x.status != Status::Pass && !x.fix.is_empty() {
            report.line(format!("      fix: {}", x.fix));
        }
    }
    report.set("checks", &f.0);
    report.set("ok", !failed);
    report.exit = if failed { EXIT_FAILURE } else { EXIT_OK };
    report
}

fn at<T>(s: &Setting<T>) -> String {
    match &s.source {
        Some(src) => format!(" at {}:{}", src.file.display(), src.line),
        None => String::new(),
    }
}

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_dns(root: &Root, t: &TargetArgs, host: &str, f: &mut Findings) {
    let first = dns::resolve(root, host, t.resolver, crate::access::DNS_TIMEOUT);
    let second = dns::resolve(root, host, t.resolver, crate::access::DNS_TIMEOUT);
    match (first, second) {
        (Ok(mut a), Ok(mut b)) => {
            a.sort();
            b.sort();
            if a == b {
                f.pass(
                    "dns",
                    format!(
                        "{host} resolves to {} (stable across two lookups)",
                        join(&a)
                    ),
                );
            } else {
                f.warn("dns", format!("{host} gave two different answers: {} then {}", join(&a), join(&b)), "grant with --address for each address the support uses, or ask the support which address they connect from");
            }
        }
        (Err(e), _) | (_, Err(e)) => f.fail(
            "dns",
            e.to_string(),
            "check /etc/resolv.conf and the network, or pass --resolver IP, or --address IP",
        ),
    }
}

/// PermitRootLogin, PubkeyAuthentication, Allow/Deny, AuthenticationMethods, UsePAM — for each
/// support address, Match applied.
fn check_sshd_settings(facts: &sshd::SshdFacts, f: &mut Findings) {
    if facts.per_address.is_empty() {
        return;
    }
    let groups = ["root".to_string()];
    for (addr, e) in &facts.per_address {
        let who = format!("root from {addr}");
        match e.permit_root_login.value {
            PermitRootLogin::Yes | PermitRootLogin::ProhibitPassword => {
                f.pass("PermitRootLogin", format!("{who}: allows keys"))
            }
            PermitRootLogin::ForcedCommandsOnly => f.warn(
                "PermitRootLogin",
                format!("{who}: forced-commands-only{}: the support gets no shell", at(&e.permit_root_login)),
                format!("set `PermitRootLogin prohibit-password`{}", at(&e.permit_root_login)),
            ),
            PermitRootLogin::No => f.fail(
                "PermitRootLogin",
                format!("{who}: PermitRootLogin no{}", at(&e.permit_root_login)),
                format!("set `PermitRootLogin prohibit-password`{} and reload sshd (systemctl reload ssh)", at(&e.permit_root_login)),
            ),
        }
        if e.pubkey_authentication.value {
            f.pass("PubkeyAuthentication", format!("{who}: yes"));
        } else {
            f.fail(
                "PubkeyAuthentication",
                format!("{who}: no{}", at(&e.pubkey_authentication)),
                format!(
                    "set `PubkeyAuthentication yes`{} and reload sshd",
                    at(&e.pubkey_authentication)
                ),
            );
        }
        let a = &e.allow_users;
        if !a.value.is_empty()
            && !a
                .value
                .iter()
                .any(|p| user_pattern_matches(p, "root", *addr))
        {
            f.fail(
                "AllowUsers",
                format!(
                    "{who}: root is not in AllowUsers {}{}",
                    a.value.join(" "),
                    at(a)
                ),
                format!("add root to the AllowUsers line{}", at(a)),
            );
        }
        let d = &e.deny_users;
        if let Some(p) = d
            .value
            .iter()
            .find(|p| user_pattern_matches(p, "root", *addr))
        {
            f.fail(
                "DenyUsers",
                format!("{who}: DenyUsers {p} shuts root out{}", at(d)),
                format!("remove {p} from the DenyUsers line{}", at(d)),
            );
        }
        let ag = &e.allow_groups;
        if !ag.value.is_empty() && !ag.value.iter().any(|p| groups.iter().any(|g| glob(p, g))) {
            f.fail(
                "AllowGroups",
                format!(
                    "{who}: root's group is not in AllowGroups {}{}",
                    ag.value.join(" "),
                    at(ag)
                ),
                format!("add root to the AllowGroups line{}", at(ag)),
            );
        }
        let dg = &e.deny_groups;
        if let Some(p) = dg.value.iter().find(|p| groups.iter().any(|g| glob(p, g))) {
            f.fail(
                "DenyGroups",
                format!("{who}: DenyGroups {p} shuts root out{}", at(dg)),
                format!("remove {p} from the DenyGroups line{}", at(dg)),
            );
        }
        let m = &e.authentication_methods;
        // sshd accepts the login when one comma-list is fully satisfied; a list made of
        // publickey alone (or `any`) lets a key in without a second factor.
        let key_alone = m.value.is_empty()
            || m.value
                .iter()
                .any(|l| l == "any" || l.split(',').all(|x| x.starts_with("publickey")));
        if key_alone {
            f.pass(
                "AuthenticationMethods",
                format!("{who}: a key alone is enough"),
            );
        } else {
            f.fail("AuthenticationMethods", format!("{who}: AuthenticationMethods {} asks for a second factor{}", m.value.join(" "), at(m)), format!("add `publickey` as its own list to the AuthenticationMethods line{}, or set it in a `Match Address` block for the support addresses", at(m)));
        }
        if let Some(cmd) = &e.authorized_keys_command.value {
            f.warn(
                "AuthorizedKeysCommand",
                format!(
                    "{who}: AuthorizedKeysCommand {cmd}{} is consulted too",
                    at(&e.authorized_keys_command)
                ),
                "check that it does not refuse or override the support key",
            );
        }
    }
    if let Some((_, e)) = facts.per_address.first() {
        f.pass(
            "UsePAM",
            format!(
                "UsePAM {} (the guide asks about it; keys work either way)",
                if e.use_pam.value { "yes" } else { "no" }
            ),
        );
        if !e.strict_modes.value {
            f.warn(
                "StrictModes",
                format!(
                    "StrictModes no{}: sshd accepts keys files anyone can write",
                    at(&e.strict_modes)
                ),
                format!("set `StrictModes yes`{}", at(&e.strict_modes)),
            );
        }
    }
}

fn check_ports(root: &Root, facts: &sshd::SshdFacts, f: &mut Findings) {
    if facts.ports.is_empty() {
        f.fail(
            "ports",
            "no SSH port found",
            "check sshd_config's Port and ListenAddress lines",
        );
        return;
    }
    let listening = if root.is_system() { live_ports() } else { None };
    for p in &facts.ports {
        match &listening {
            Some(l) if !l.contains(p) => f.fail(
                "listening",
                format!("sshd does not listen on port {p}"),
                "start or restart sshd: systemctl restart ssh",
            ),
            Some(_) => f.pass("listening", format!("sshd listens on port {p}")),
            None => {}
        }
        if *p != 22 {
            f.warn(
                "custom port",
                format!("SSH port {p} is not 22: tell the support team: port {p}"),
                format!("tell the support team: port {p}"),
            );
        }
    }
}

/// Ports of the TCP sockets in LISTEN state held by a process named sshd (None when /proc is
/// unreadable).
fn live_ports() -> Option<Vec<u16>> {
    let mut ports = Vec::new();
    let mut inodes = std::collections::HashMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).ok()?;
        for line in text.lines().skip(1) {
            let v: Vec<&str> = line.split_whitespace().collect();
            if v.len() > 9 && v[3] == "0A" {
                if let Some(port) = v[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    inodes.insert(v[9].to_string(), port);
                }
            }
        }
    }
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with("sshd") {
            continue;
        }
        for fd in std::fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(t) = std::fs::read_link(fd.path()) {
                let t = t.to_string_lossy();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    if let Some(port) = inodes.get(i) {
                        ports.push(*port);
                    }
                }
            }
        }
    }
    ports.sort();
    ports.dedup();
    Some(ports)
}

fn check_sshd_t(f: &mut Findings) {
    match std::process::Command::new("/usr/sbin/sshd")
        .arg("-t")
        .output()
    {
        Ok(o) if o.status.success() => f.pass("sshd -t", "sshd accepts its configuration"),
        Ok(o) => f.fail(
            "sshd -t",
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
            "fix the configuration as sshd -t says, then reload sshd",
        ),
        Err(e) => f.warn(
            "sshd -t",
            format!("cannot run /usr/sbin/sshd: {e}"),
            "install openssh-server",
        ),
    }
}

/// The guide insists on /root; what matters is that the keys file is under root's home as the
/// passwd file says, since sshd expands %h from it.
fn check_home(home: &Path, keys_file: &Path, f: &mut Findings) {
    if keys_file.starts_with(home) {
        f.pass(
            "root home",
            format!("root's home is {} and holds the keys file", home.display()),
        );
    } else {
        f.warn(
            "root home",
            format!(
                "root's home is {} but the keys file is {}",
                home.display(),
                keys_file.display()
            ),
            "check AuthorizedKeysFile and root's line in /etc/passwd",
        );
    }
    if home != Path::new("/root") {
        f.warn(
            "root home",
            format!(
                "root's home is {} (the guide expects /root); the key must go to {}",
                home.display(),
                keys_file.display()
            ),
            format!(
                "nothing to do if the support uses this server's own sshd: ovh-access writes {}",
                keys_file.display()
            ),
        );
    }
}

/// StrictModes' view: the file and every directory up to / root-owned, not group- or
/// world-writable, not a symlink; then the support lines in it.
fn check_keys_file(
    root: &Root,
    path: &Path,
    target: Option<&support::Target>,
    addresses: &[IpAddr],
    f: &mut Findings,
) {
    let mut bad = false;
    let mut p = PathBuf::from("/");
    let mut comps: Vec<PathBuf> = vec![p.clone()];
    for c in path.components().skip(1) {
        p.push(c);
        comps.push(p.clone());
    }
    for (i, c) in comps.iter().enumerate() {
        let real = root.path(c);
        let meta = match std::fs::symlink_metadata(&real) {
            Ok(m) => m,
            Err(_) if i == comps.len() - 1 => {
                f.fail(
                    "keys file",
                    format!("{} does not exist", c.display()),
                    "run `ovh-access grant ...` to create it with the support key",
                );
                return;
            }
            Err(_) => {
                f.fail(
                    "keys file",
                    format!("{} does not exist", c.display()),
                    format!("mkdir -m 700 {}", c.display()),
                );
                return;
            }
        };
        if meta.file_type().is_symlink() {
            bad = true;
            f.fail("keys file", format!("{} is a symlink", c.display()), format!("replace the symlink {} by the real file or directory (sshd's StrictModes and ovh-access refuse symlinks)", c.display()));
            continue;
        }
        if meta.uid() != 0 {
            bad = true;
            f.fail(
                "keys file",
                format!("{} is owned by uid {}, not root", c.display(), meta.uid()),
                format!("chown root {}", c.display()),
            );
        }
        if meta.mode() & 0o022 != 0
            && !(meta.is_dir() && meta.mode() & 0o1000 != 0 && i + 1 < comps.len() - 1)
        {
            bad = true;
            let fix = if i == comps.len() - 1 {
                format!("chmod 600 {}", c.display())
            } else {
                format!("chmod go-w {}", c.display())
            };
            f.fail("keys file", format!("{} is group- or world-writable (mode {:o}): sshd's StrictModes refuses the key", c.display(), meta.mode() & 0o7777), fix);
        }
    }
    if bad {
        return;
    }
    let content = match keys::read(root, path) {
        Ok(Some(c)) => c,
        Ok(None) => {
            f.fail(
                "keys file",
                format!("{} does not exist", path.display()),
                "run `ovh-access grant ...`",
            );
            return;
        }
        Err(e) => {
            f.fail("keys file", format!("{e:#}"), "fix it as the message says");
            return;
        }
    };
    f.pass(
        "keys file",
        format!("{} is safe for StrictModes", path.display()),
    );
    let Some(target) = target else { return };
    let blobs: Vec<&str> = target.keys.iter().map(|k| k.blob.as_str()).collect();
    let lines = keys::support_lines(&content, &blobs);
    let active: Vec<_> = lines.iter().filter(|l| l.active).collect();
    if active.is_empty() {
        f.fail(
            "support key",
            format!("no active line with the support key in {}", path.display()),
            "run `ovh-access grant ...`",
        );
        return;
    }
    for l in &active {
        if !l.has_from {
            f.fail("support key", format!("line {} of {} carries the support key without from=: sshd accepts it from anywhere", l.line, path.display()), format!("run `ovh-access grant --replace-foreign ...`, or comment out line {} by hand", l.line));
        }
    }
    for tl in keys::tool_lines(&content)
        .iter()
        .filter(|l| l.active && blobs.contains(&l.blob.as_str()))
    {
        let missing: Vec<&IpAddr> = addresses
            .iter()
            .filter(|a| !tl.addresses.contains(a))
            .collect();
        if missing.is_empty() {
            f.pass(
                "from=",
                format!("line {}: from= covers {}", tl.line, join(addresses)),
            );
        } else {
            f.fail(
                "from=",
                format!(
                    "line {}: from= lacks {} (what the support connects from now)",
                    tl.line,
                    missing
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "ovh-access refresh",
            );
        }
        if let Some(exp) = &tl.expiry_time {
            let expired =
                keys::parse_expiry_time(exp).is_none_or(|t| t <= std::time::SystemTime::now());
            if expired {
                f.fail(
                    "expiry-time",
                    format!("line {}: expiry-time {exp} has passed", tl.line),
                    "ovh-access grant --for 4h ...",
                );
            } else {
                f.pass(
                    "expiry-time",
                    format!("line {}: expiry-time {exp} is in the future", tl.line),
                );
            }
        }
    }
}

/// AllowUsers/DenyUsers entries are `USER` or `USER@HOST` patterns (`servconf.c`, match.c's
/// `match_user`): wildcards `*` and `?`; the host part may be an address, a pattern or a CIDR.
fn user_pattern_matches(pattern: &str, user: &str, addr: IpAddr) -> bool {
    match pattern.split_once('@') {
        None => glob(pattern, user),
        Some((u, h)) => {
            glob(u, user)
                && (glob(h, &addr.to_string())
                    || h.parse::<ipnet::IpNet>()
                        .map(|n| n.contains(&addr))
                        .unwrap_or(false))
        }
    }
}

/// OpenSSH's `match_pattern`: `*` any run, `?` one character.
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(glob("r*t", "root"));
        assert!(glob("ro?t", "root"));
        assert!(!glob("admin", "root"));
        let a: IpAddr = "198.51.100.10".parse().unwrap();
        assert!(user_pattern_matches("root@198.51.100.0/24", "root", a));
        assert!(user_pattern_matches("root@198.51.100.*", "root", a));
        assert!(!user_pattern_matches("root@203.0.113.1", "root", a));
        assert!(user_pattern_matches("*", "root", a));
    }
}
