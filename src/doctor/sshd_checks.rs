//! Checks 2 and 4: sshd's effective settings for root from each support address (Match
//! applied), judged by `sshd::verdict` — the one place that states sshd's refusal rules — and the
//! ports sshd listens on.
use std::net::IpAddr;
use std::path::Path;

use super::Findings;
use crate::root::Root;
use crate::sshd::{self, Effective, Setting, SshdFacts};

/// The systemd unit name of sshd: `ssh` on Debian and Ubuntu, `sshd` elsewhere.
pub fn service_name(root: &Root) -> String {
    let debian = [
        "/lib/systemd/system/ssh.service",
        "/usr/lib/systemd/system/ssh.service",
    ]
    .iter()
    .any(|p| root.path(p).exists());
    if debian { "ssh" } else { "sshd" }.to_string()
}

/// The line that cures one blocker, given the setting in force.
fn cure(b: &sshd::Blocker, e: &Effective, addr: IpAddr) -> (String, Option<sshd::Source>) {
    let without = |s: &Setting<Vec<String>>, kw: &str, pat: &Option<String>| {
        let rest: Vec<&str> = s
            .value
            .iter()
            .map(String::as_str)
            .filter(|p| Some(*p) != pat.as_deref())
            .collect();
        if rest.is_empty() {
            String::new()
        } else {
            format!("{kw} {}", rest.join(" "))
        }
    };
    let with = |s: &Setting<Vec<String>>, kw: &str, extra: &str| {
        format!("{kw} {} {extra}", s.value.join(" "))
    };
    match b.keyword {
        "PermitRootLogin" => (
            "PermitRootLogin prohibit-password".into(),
            e.permit_root_login.source.clone(),
        ),
        "PubkeyAuthentication" => (
            "PubkeyAuthentication yes".into(),
            e.pubkey_authentication.source.clone(),
        ),
        // The list is comma-separated; `+…` would append to the default list, not to the
        // operator's, so the cure spells the whole list out.
        "PubkeyAcceptedAlgorithms" => (
            format!(
                "PubkeyAcceptedAlgorithms {},rsa-sha2-512,rsa-sha2-256",
                e.pubkey_accepted_algorithms.value.join(",")
            ),
            e.pubkey_accepted_algorithms.source.clone(),
        ),
        "DenyUsers" => (
            without(&e.deny_users, "DenyUsers", &b.pattern),
            e.deny_users.source.clone(),
        ),
        "AllowUsers" => (
            with(&e.allow_users, "AllowUsers", &format!("root@{addr}")),
            e.allow_users.source.clone(),
        ),
        "DenyGroups" => (
            without(&e.deny_groups, "DenyGroups", &b.pattern),
            e.deny_groups.source.clone(),
        ),
        "AllowGroups" => (
            with(&e.allow_groups, "AllowGroups", "root"),
            e.allow_groups.source.clone(),
        ),
        "AuthenticationMethods" => (
            with(
                &e.authentication_methods,
                "AuthenticationMethods",
                "publickey",
            ),
            e.authentication_methods.source.clone(),
        ),
        _ => (
            "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2".into(),
            e.authorized_keys_files.source.clone(),
        ),
    }
}

/// "edit FILE:LINE to read `X`" (or delete it, or add it), then reload.
pub fn edit_fix(line: &str, source: Option<&sshd::Source>, svc: &str) -> String {
    let edit = match (source, line.is_empty()) {
        (Some(s), false) => format!("edit {s} to read `{line}`"),
        (Some(s), true) => format!("delete line {s}"),
        (None, _) => format!("add `{line}` to /etc/ssh/sshd_config before its first Match block"),
    };
    format!("{edit}, then `systemctl reload {svc}`")
}

/// `key_types`: the support keys' types (`ssh-rsa` for OVH's); sshd's PubkeyAcceptedAlgorithms
/// is judged for each.
pub fn settings(root: &Root, facts: &SshdFacts, key_types: &[String], svc: &str, f: &mut Findings) {
    let (_, _, _, groups) = sshd::user_info(root, "root");
    let key_types: Vec<&str> = if key_types.is_empty() {
        // No key known (a bad --key-file): judge the type of OVH's published keys.
        vec!["ssh-rsa"]
    } else {
        key_types.iter().map(String::as_str).collect()
    };
    let mut accepted = Vec::new();
    for (addr, e) in &facts.per_address {
        // sshd compares host patterns with the address unless UseDNS (then the warning from
        // `probe` says so).
        let mut blockers: Vec<sshd::Blocker> = Vec::new();
        for t in &key_types {
            for b in sshd::blocker_details(t, e, "root", &groups, *addr, &addr.to_string()) {
                if !blockers.contains(&b) {
                    blockers.push(b);
                }
            }
        }
        if blockers.is_empty() {
            accepted.push(*addr);
        }
        for b in blockers {
            let (line, source) = cure(&b, e, *addr);
            f.fail(
                b.keyword,
                format!("root from {addr}: {}", b.message),
                edit_fix(&line, source.as_ref(), svc),
            );
        }
        if let Some(cmd) = &e.authorized_keys_command.value {
            f.warn(
                "AuthorizedKeysCommand",
                format!("root from {addr}: AuthorizedKeysCommand {cmd}{} is consulted too", at(&e.authorized_keys_command)),
                format!("run `{cmd} root` and check that it does not refuse or override the support key"),
            );
        }
    }
    if !accepted.is_empty() {
        f.pass(
            "sshd",
            format!(
                "root from {}: sshd accepts a key (PermitRootLogin, PubkeyAuthentication, Allow/Deny, AuthenticationMethods)",
                super::join(&accepted)
            ),
        );
    }
    if let Some((_, e)) = facts.per_address.first() {
        f.pass(
            "UsePAM",
            format!(
                "UsePAM {}{} (the guide asks about it; a key works either way, as long as PAM's account stack accepts root)",
                if e.use_pam.value { "yes" } else { "no" },
                at(&e.use_pam)
            ),
        );
    }
    for w in &facts.warnings {
        f.warn("sshd", w.clone(), "");
    }
}

/// " (file:line)" where the setting comes from, or nothing for a default.
pub fn at<T>(s: &Setting<T>) -> String {
    s.source
        .as_ref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default()
}

pub fn ports(root: &Root, facts: &SshdFacts, svc: &str, f: &mut Findings) {
    if facts.ports.is_empty() {
        f.fail(
            "ports",
            "no SSH port found",
            format!("add `Port 22` to /etc/ssh/sshd_config, then `systemctl restart {svc}`"),
        );
        return;
    }
    // Live listeners only on the real system: a sandbox root has no sshd of its own.
    let live = if root.is_system() {
        match sshd::live::sshd_listeners(Path::new("/proc")) {
            Ok(l) => Some(l),
            Err(e) => {
                f.warn(
                    "listening",
                    format!("{e:#}"),
                    "mount /proc (`mount -t proc proc /proc`)",
                );
                None
            }
        }
    } else {
        None
    };
    if let Some(l) = &live {
        if l.is_empty() {
            f.fail(
                "sshd running",
                "no sshd process listens on a TCP port",
                format!("systemctl start {svc}"),
            );
        }
    }
    for p in &facts.ports {
        if let Some(l) = &live {
            if l.iter().any(|s| s.port == *p) {
                f.pass("listening", format!("sshd listens on port {p}"));
            } else if !l.is_empty() {
                f.fail(
                    "listening",
                    format!("sshd does not listen on port {p}"),
                    format!("systemctl restart {svc}"),
                );
            }
        }
        if *p != 22 {
            f.warn(
                "custom port",
                format!("SSH port {p} is not 22"),
                format!("tell the support team: port {p}"),
            );
        }
    }
}

pub fn sshd_t(f: &mut Findings) {
    match std::process::Command::new(sshd::test_mode::SSHD)
        .arg("-t")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => f.pass("sshd -t", "sshd accepts its configuration"),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            // sshd.c refuses to start without its privilege-separation directory, which a
            // tmpfs /run loses at each boot unless the unit's RuntimeDirectory recreates it.
            let fix = match err.split_once("Missing privilege separation directory: ") {
                Some((_, dir)) => {
                    format!("mkdir -m 0755 {}", dir.lines().next().unwrap_or(dir).trim())
                }
                None => {
                    "fix the line sshd -t names, then run `sshd -t` again until it prints nothing"
                        .into()
                }
            };
            f.fail("sshd -t", err, fix)
        }
        Err(e) => f.warn(
            "sshd -t",
            format!("cannot run {}: {e}", sshd::test_mode::SSHD),
            "apt install openssh-server",
        ),
    }
}
