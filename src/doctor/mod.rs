//! doctor: the troubleshooting list of OVH's guide, checked by the program. Each check gives a
//! finding — PASS, WARN or FAIL, what was found, and for anything but PASS the exact fix (a
//! command, or the sshd_config line to write at its file:line).
//!
//! The checks only read: files under `--root`, sshd's effective settings (`sshd` module), the
//! keys file (`keys` module), DNS, and the firewall through dumps (`firewall`, `rules`). Each
//! check reads its facts first and hands them to a pure judgement that appends findings, so the
//! verdicts have unit tests without root; `finish` alone renders them (human and JSON) and
//! sets the exit code.
mod firewall;
mod firewalld;
mod keyfile;
pub mod rules;
mod sshd_checks;

use std::net::IpAddr;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::error::{EXIT_FAILURE, EXIT_OK};
use crate::report::join;
use crate::report::Report;
use crate::root::Root;
use crate::state::{Grant, State};
use crate::support::{Target, TargetRequest};
use crate::{dns, keys, sshd, support};

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
    /// The value, or a FAIL with the error's whole chain and the fix: the checks that need the
    /// value are skipped, the others still run.
    fn ok_or_fail<T>(&mut self, r: Result<T>, check: &str, fix: &str) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(check, format!("{e:#}"), fix);
                None
            }
        }
    }
}

const SSHD_CONFIG_FIX: &str = "fix the line named above, then check with `sshd -t`";

pub fn run(root: &Root, t: &TargetRequest) -> Result<Report> {
    let mut f = Findings::default();
    let state = State::load(root).unwrap_or_default();

    // Who the support is. Without a usable target the other checks still run, on what is known.
    let target = support(root, t, &mut f);
    if let Some(g) = &state.granted {
        judge_grant(g, &mut f);
    }
    let addresses: Vec<IpAddr> = target
        .as_ref()
        .map(|t| t.addresses.clone())
        .unwrap_or_default();
    let host = target.as_ref().map(|t| t.host.clone()).unwrap_or_default();
    let grant = grant_command(t);

    // 6. DNS: resolves, and gives the same answer twice (round-robin or a flapping record would
    // make the from= and the firewall miss an address).
    if !host.is_empty() && t.addresses.is_empty() && !t.no_dns {
        check_dns(root, t, &host, &mut f);
    }

    // 2 and 4. sshd.
    let probe = sshd::probe(root, &addresses, &host);
    let facts = f.ok_or_fail(probe, "sshd_config", SSHD_CONFIG_FIX);
    let svc = sshd_checks::service_name(root);
    if let Some(facts) = &facts {
        check_sshd(root, facts, target.as_ref(), &svc, &mut f);
    }

    // 3 and 1. Root's home and the keys file sshd reads for root.
    let home = f.ok_or_fail(
        keys::root_home(root),
        "root home",
        "add the line `root:x:0:0:root:/root:/bin/bash` to /etc/passwd with `vipw`",
    );
    if let (Some(facts), Some(home)) = (&facts, &home) {
        let eff = match facts.per_address.first() {
            Some((_, e)) => Some(e.clone()),
            None => f.ok_or_fail(sshd::global_effective(root), "sshd_config", SSHD_CONFIG_FIX),
        };
        if let Some(eff) = eff {
            let ctx = keyfile::Ctx {
                root,
                home,
                eff: &eff,
                target: target.as_ref(),
                addresses: &addresses,
                grant: &grant,
                svc: &svc,
                sshd_version: sshd::version(),
                expires_at: state.granted.as_ref().map(|g| g.expires_at),
            };
            check_keys(&ctx, state.granted.as_ref(), &mut f);
        }
    }

    // 5. The firewall, for every port sshd may use.
    let ports = facts
        .as_ref()
        .map(|x| x.ports.clone())
        .unwrap_or_else(|| vec![22]);
    if !addresses.is_empty() {
        let reopen = if state.granted.is_some() {
            "ovh-access restore".to_string()
        } else {
            grant.clone()
        };
        firewall::check(&addresses, &ports, &firewall::Remedy { reopen }, &mut f);
    }

    Ok(finish(f))
}

/// The support's host, keys and addresses, as a grant with the same arguments would find them.
fn support(root: &Root, t: &TargetRequest, f: &mut Findings) -> Option<Target> {
    let lookup = {
        let root = root.clone();
        let resolver = t.dns.resolver;
        move |host: &str| dns::resolve(&root, host, resolver, dns::DNS_TIMEOUT)
    };
    match support::resolve_target(root, t, &keys::parse_key_file, &lookup) {
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
                "run `ovh-access doctor` with --region eu|ca, or with --host NAME and --key-file FILE",
            );
            None
        }
    }
}

/// sshd's settings for root from the support's addresses, and the ports it listens on.
fn check_sshd(
    root: &Root,
    facts: &sshd::SshdFacts,
    target: Option<&Target>,
    svc: &str,
    f: &mut Findings,
) {
    let key_types: Vec<String> = target
        .map(|t| t.keys.iter().map(|k| k.algorithm.clone()).collect())
        .unwrap_or_default();
    sshd_checks::settings(root, facts, &key_types, svc, f);
    sshd_checks::ports(root, facts, svc, f);
    if root.is_system() {
        sshd_checks::sshd_t(f);
    }
}

/// Which profile the recorded grant used, and whether its key is still the one OVH publishes
/// for it (a --key-file may have replaced it).
fn judge_grant(g: &Grant, f: &mut Findings) {
    match g.profile.as_deref().and_then(support::profile_by_name) {
        Some(p) if g.keys.iter().all(|k| p.is_builtin_key(&k.blob)) => f.pass(
            "grant",
            format!(
                "granted to {} with region {}'s built-in key",
                g.host, p.region
            ),
        ),
        Some(p) => f.warn(
            "grant",
            format!(
                "granted to {} (region {}) with a key given by --key-file, not the built-in \
                 {}",
                g.host, p.region, p.key.fingerprint
            ),
            format!(
                "nothing to do if the support asked for that key; otherwise `ovh-access grant \
                 --region {}` installs the built-in one",
                p.region
            ),
        ),
        None => f.pass(
            "grant",
            format!("granted to {} (no built-in profile)", g.host),
        ),
    }
}

/// The keys file sshd reads for root: where it lies, whether it is the one the recorded grant
/// wrote, and what it holds.
fn check_keys(c: &keyfile::Ctx, granted: Option<&Grant>, f: &mut Findings) {
    let (path, _) = sshd::keys_file(c.eff, "root", 0, c.home);
    keyfile::check_home(c.home, &path, c.eff, f);
    if let Some(g) = granted {
        judge_keys_file_moved(g, &path, c.grant, f);
    }
    keyfile::check_authorized_keys_file(c, &path, f);
    keyfile::check(c, &path, f);
}

/// sshd_config changed since the grant: the key sits in a file sshd no longer reads.
fn judge_keys_file_moved(g: &Grant, sshd_reads: &Path, grant: &str, f: &mut Findings) {
    if g.keys_file != sshd_reads {
        f.fail(
            "keys file",
            format!(
                "the grant wrote {} but sshd reads {} for root",
                g.keys_file.display(),
                sshd_reads.display()
            ),
            format!("ovh-access revoke, then {grant}"),
        );
    }
}

/// The grant command matching the doctor's own target arguments, for fixes.
fn grant_command(t: &TargetRequest) -> String {
    let mut s = String::from("ovh-access grant");
    if let Some(r) = &t.region {
        s.push_str(&format!(" --region {}", format!("{r:?}").to_lowercase()));
    }
    if let Some(h) = &t.host {
        s.push_str(&format!(" --host {h}"));
    }
    for a in &t.addresses {
        s.push_str(&format!(" --address {a}"));
    }
    if let Some(r) = &t.dns.resolver {
        s.push_str(&format!(" --resolver {r}"));
    }
    for (on, flag) in [
        (t.dns.allow_private, " --allow-private"),
        (t.dns.trust_dns, " --trust-dns"),
        (t.no_dns, " --no-dns"),
    ] {
        if on {
            s.push_str(flag);
        }
    }
    if let Some(k) = &t.key_file {
        s.push_str(&format!(" --key-file {k}"));
    }
    if let Some(fp) = &t.fingerprint {
        s.push_str(&format!(" --fingerprint {fp}"));
    }
    s
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

/// Both families are asked (dns::resolve returns A and AAAA); the answer must not move between
/// two lookups.
fn check_dns(root: &Root, t: &TargetRequest, host: &str, f: &mut Findings) {
    let ask =
        || dns::resolve(root, host, t.dns.resolver, dns::DNS_TIMEOUT).map_err(|e| e.to_string());
    let first = ask();
    let second = ask();
    judge_dns(host, first, second, f);
}

/// Two lookups of the support's host: both answered, alike, and over both families.
fn judge_dns(
    host: &str,
    first: Result<Vec<IpAddr>, String>,
    second: Result<Vec<IpAddr>, String>,
    f: &mut Findings,
) {
    match (first, second) {
        (Ok(mut a), Ok(mut b)) => {
            a.sort();
            b.sort();
            let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = a.iter().partition(|x| x.is_ipv4());
            let fams = format!(
                "A: {}; AAAA: {}",
                if v4.is_empty() { "none".into() } else { join(&v4) },
                if v6.is_empty() { "none".into() } else { join(&v6) }
            );
            if a != b {
                f.warn(
                    "dns",
                    format!("{host} gave two different answers: {} then {}", join(&a), join(&b)),
                    "ask the support which addresses they connect from, then grant them with `ovh-access grant --address IP` (one --address per address)",
                );
            } else if v4.is_empty() || v6.is_empty() {
                f.warn(
                    "dns",
                    format!("{host} resolves ({fams}), stable across two lookups; the support connects over one family only"),
                    "nothing to do unless the support says it connects over the other family",
                );
            } else {
                f.pass("dns", format!("{host} resolves ({fams}), stable across two lookups"));
            }
        }
        (Err(e), _) | (_, Err(e)) => f.fail(
            "dns",
            e,
            "check /etc/resolv.conf and the network (`getent ahosts HOST`), or pass --resolver IP or --address IP",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded grant as state.json holds it (the file's format, which stays readable).
    fn grant(profile: Option<&str>, blob: &str) -> Grant {
        serde_json::from_value(serde_json::json!({
            "host": "cache-ng.ovh.net",
            "profile": profile,
            "addresses": ["198.51.100.10"],
            "address_source": "operator",
            "ports": [22],
            "keys": [{"algorithm": "ssh-rsa", "blob": blob, "comment": "", "fingerprint": ""}],
            "keys_file": "/root/.ssh/authorized_keys2",
            "layers": [],
            "firewall": "auto",
            "granted_at": 1,
            "expires_at": null,
        }))
        .unwrap()
    }

    fn statuses(f: &Findings) -> Vec<(Status, &str, &str)> {
        f.0.iter()
            .map(|x| (x.status, x.check.as_str(), x.fix.as_str()))
            .collect()
    }

    #[test]
    fn the_recorded_grant_and_its_key() {
        let eu = support::profile_by_name("eu").unwrap();
        let mut f = Findings::default();
        judge_grant(&grant(Some("eu"), &eu.key.blob), &mut f);
        judge_grant(&grant(None, "AAAAother"), &mut f);
        assert_eq!(
            statuses(&f),
            [(Status::Pass, "grant", ""), (Status::Pass, "grant", "")]
        );
        assert!(f.0[0].detail.contains("region eu's built-in key"));
        assert!(f.0[1].detail.contains("no built-in profile"));
        let mut f = Findings::default();
        judge_grant(&grant(Some("eu"), "AAAAother"), &mut f);
        assert_eq!(f.0[0].status, Status::Warn);
        assert!(
            f.0[0].detail.contains(&eu.key.fingerprint),
            "{}",
            f.0[0].detail
        );
        assert!(f.0[0].fix.contains("ovh-access grant --region eu"));
    }

    #[test]
    fn a_keys_file_sshd_no_longer_reads() {
        let g = grant(None, "AAAA");
        let mut f = Findings::default();
        judge_keys_file_moved(&g, Path::new("/root/.ssh/authorized_keys2"), "G", &mut f);
        assert!(f.0.is_empty());
        judge_keys_file_moved(&g, Path::new("/root/.ssh/authorized_keys"), "G", &mut f);
        assert_eq!(
            statuses(&f),
            [(Status::Fail, "keys file", "ovh-access revoke, then G")]
        );
    }

    #[test]
    fn dns_answers_twice_alike_over_both_families() {
        let a = |list: &[&str]| -> Result<Vec<IpAddr>, String> {
            Ok(list.iter().map(|x| x.parse().unwrap()).collect())
        };
        let judge = |first, second| {
            let mut f = Findings::default();
            judge_dns("h", first, second, &mut f);
            f.0.remove(0)
        };
        let both = ["2001:db8::1", "198.51.100.1"];
        let x = judge(a(&both), a(&["198.51.100.1", "2001:db8::1"]));
        assert_eq!(x.status, Status::Pass);
        assert_eq!(
            x.detail,
            "h resolves (A: 198.51.100.1; AAAA: 2001:db8::1), stable across two lookups"
        );
        let x = judge(a(&both), a(&["198.51.100.1"]));
        assert_eq!(x.status, Status::Warn);
        assert!(x.detail.contains("two different answers"), "{}", x.detail);
        let x = judge(a(&["198.51.100.1"]), a(&["198.51.100.1"]));
        assert_eq!(x.status, Status::Warn);
        assert!(x.detail.contains("AAAA: none"), "{}", x.detail);
        let x = judge(a(&both), Err("timed out".into()));
        assert_eq!((x.status, x.detail.as_str()), (Status::Fail, "timed out"));
    }
}
