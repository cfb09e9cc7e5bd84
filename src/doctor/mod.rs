//! doctor: the troubleshooting list of OVH's guide, checked by the program. Each check gives a
//! finding — PASS, WARN or FAIL, what was found, and for anything but PASS the exact fix (a
//! command, or the sshd_config line to write at its file:line).
//!
//! The checks only read: files under `--root`, sshd's effective settings (`sshd` module), the
//! keys file (`keys` module), DNS, and the firewall through dumps (`firewall`, `rules`).
mod firewall;
mod firewalld;
mod keyfile;
pub mod rules;
mod sshd_checks;

use std::net::IpAddr;

use anyhow::Result;
use serde::Serialize;

use crate::error::{EXIT_FAILURE, EXIT_OK};
use crate::report::join;
use crate::report::Report;
use crate::root::Root;
use crate::state::State;
use crate::support::TargetRequest;
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
}

pub fn run(root: &Root, t: &TargetRequest) -> Result<Report> {
    let mut f = Findings::default();
    let state = State::load(root).unwrap_or_default();

    // Who the support is. Without a usable target the other checks still run, on what is known.
    let lookup = {
        let root = root.clone();
        let resolver = t.dns.resolver;
        move |host: &str| dns::resolve(&root, host, resolver, dns::DNS_TIMEOUT)
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
                "run `ovh-access doctor` with --region eu|ca, or with --host NAME and --key-file FILE",
            );
            None
        }
    };
    // Which profile the recorded grant used, and whether its key is still the one OVH
    // publishes for it (a --key-file may have replaced it).
    if let Some(g) = &state.granted {
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
    let facts = match sshd::probe(root, &addresses, &host) {
        Ok(facts) => Some(facts),
        Err(e) => {
            f.fail(
                "sshd_config",
                format!("{e:#}"),
                "fix the line named above, then check with `sshd -t`",
            );
            None
        }
    };
    let svc = sshd_checks::service_name(root);
    if let Some(facts) = &facts {
        let key_types: Vec<String> = target
            .as_ref()
            .map(|t| t.keys.iter().map(|k| k.algorithm.clone()).collect())
            .unwrap_or_default();
        sshd_checks::settings(root, facts, &key_types, &svc, &mut f);
        sshd_checks::ports(root, facts, &svc, &mut f);
        if root.is_system() {
            sshd_checks::sshd_t(&mut f);
        }
    }

    // 3 and 1. Root's home and the keys file sshd reads for root.
    let home = match keys::root_home(root) {
        Ok(h) => Some(h),
        Err(e) => {
            f.fail(
                "root home",
                format!("{e:#}"),
                "add the line `root:x:0:0:root:/root:/bin/bash` to /etc/passwd with `vipw`",
            );
            None
        }
    };
    if let (Some(facts), Some(home)) = (&facts, &home) {
        let eff = match facts.per_address.first() {
            Some((_, e)) => Some(e.clone()),
            None => match sshd::global_effective(root) {
                Ok(e) => Some(e),
                Err(e) => {
                    f.fail(
                        "sshd_config",
                        format!("{e:#}"),
                        "fix the line named above, then check with `sshd -t`",
                    );
                    None
                }
            },
        };
        if let Some(eff) = eff {
            let (path, _) = sshd::keys_file(&eff, "root", 0, home);
            keyfile::check_home(home, &path, &eff, &mut f);
            if let Some(g) = &state.granted {
                if g.keys_file != path {
                    f.fail(
                        "keys file",
                        format!(
                            "the grant wrote {} but sshd reads {} for root",
                            g.keys_file.display(),
                            path.display()
                        ),
                        format!("ovh-access revoke, then {grant}"),
                    );
                }
            }
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
            keyfile::check_authorized_keys_file(&ctx, &path, &mut f);
            keyfile::check(&ctx, &path, &mut f);
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
    let first = dns::resolve(root, host, t.dns.resolver, dns::DNS_TIMEOUT);
    let second = dns::resolve(root, host, t.dns.resolver, dns::DNS_TIMEOUT);
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
            e.to_string(),
            "check /etc/resolv.conf and the network (`getent ahosts HOST`), or pass --resolver IP or --address IP",
        ),
    }
}
