//! `grant`: open the firewall for exactly the support addresses on the SSH ports, then install
//! the key with `from=` (and `expiry-time=` for a grant with a duration).
//!
//! Everything the operator gave (key file, fingerprint, DNS, sshd_config) is checked before the
//! lock, and a read-only rehearsal runs before the journal: a typo or a refusal leaves nothing
//! behind. [`plan`] is the pure part: from the target, sshd's facts and the request to the grant
//! to reach.
use anyhow::Result;

use super::converge::{Applied, ApplyOpts};
use super::txn::Txn;
use super::{sorted, Ctx, GrantRequest, USER};
use crate::bad_input;
use crate::firewall::Mode;
use crate::report::{self, fmt_utc, join, Report};
use crate::root::Root;
use crate::state::{self, Grant, Intent, Op, StoredKey};
use crate::{keys, sshd, support};

/// The grant `req` asks for, given who the support is, what sshd listens on and which keys file
/// it reads (pure).
pub(super) fn plan(
    req: &GrantRequest,
    target: &support::Target,
    sshd_ports: &[u16],
    keys_file: std::path::PathBuf,
    now: u64,
) -> Grant {
    let ports = if req.ports.is_empty() {
        sshd_ports.to_vec()
    } else {
        sorted(req.ports.clone())
    };
    Grant {
        host: target.host.clone(),
        profile: target.profile.map(str::to_string),
        addresses: target.addresses.clone(),
        address_source: target.source,
        ports,
        sshd_ports: sorted(sshd_ports.to_vec()),
        keys: target.keys.iter().map(StoredKey::from).collect(),
        keys_file,
        layers: vec![],
        firewall: req.firewall,
        granted_at: now,
        expires_at: req.duration.map(|d| now + d.as_secs()),
        resolver: req.target.dns.resolver,
        allow_private: req.target.dns.allow_private,
        trust_dns: req.target.dns.trust_dns,
        recorded: Default::default(),
    }
}

/// The same grant apart from when it was made and the layers it found: a repeated command keeps
/// its start time.
pub(super) fn same_grant(a: &Grant, b: &Grant) -> bool {
    let mut a = a.clone();
    a.granted_at = b.granted_at;
    a.layers = b.layers.clone();
    a.recorded = b.recorded.clone();
    a == *b
}

/// The grant as committed: only the layers that hold the tool's objects now (a layer with
/// nothing to open, an ip6tables layer for IPv4-only addresses or a table with no input chain,
/// is not part of the grant, and status must not call its emptiness a drift), with what each
/// recorded.
pub(super) fn committed(desired: &Grant, applied: &Applied) -> Grant {
    let mut g = desired.clone();
    let held = applied.layers.iter().filter(|l| !l.chains.is_empty());
    g.layers = held.clone().map(|l| l.layer.clone()).collect();
    g.recorded = held
        .filter(|l| !l.recorded.is_empty())
        .map(|l| (l.layer.clone(), l.recorded.clone()))
        .collect();
    g
}

pub fn grant(root: &Root, req: &GrantRequest) -> Result<Report> {
    let ctx = Ctx::new(root);
    let mut report = Report::new("grant");
    report.dry_run = req.mode.is_dry_run();
    let target = ctx.resolve_target(&req.target)?;
    for w in &target.warnings {
        report.warn(w.clone());
    }
    let facts = sshd::probe(&ctx.root, &target.addresses, &target.host)?;
    for w in &facts.warnings {
        report.warn(w.clone());
    }
    warn_blockers(&facts, &target, &mut report);
    let keys_file = ctx.keys_file(&facts, &mut report.warnings)?;
    let mut desired = plan(req, &target, &facts.ports, keys_file, state::now());
    let opts = ApplyOpts {
        firewall: req.firewall,
        replace_foreign: req.replace_foreign,
    };
    let elsewhere = ctx.foreign_elsewhere(
        &desired.keys_file,
        &desired.keys,
        &facts.global,
        &mut report.warnings,
    );
    if let (Some((file, lines)), false) = (elsewhere.first(), req.replace_foreign) {
        return Err(bad_input!(
            "line {} of {} carries the support key without a from= restriction, and sshd \
             reads that file too (AuthorizedKeysFile), so it would let the support in from \
             anywhere; comment it out or rerun with --replace-foreign",
            join(lines),
            file.display()
        ));
    }
    // The layers of the rehearsal (or the dry run); the grant selects them again under the lock,
    // since another run may have changed them while this one waited.
    let mut backends = ctx.select_open(req.firewall, &mut report)?;
    if req.mode == Mode::Apply {
        // A read-only rehearsal before the lock and the journal: what the firewall or the keys
        // file refuses (nf_tables unusable without CAP_NET_ADMIN, a set name taken by the user,
        // a foreign line carrying the support key) fails here, with nothing written and no
        // intent left to recover.
        // Its warnings are the grant's own (the report keeps each once).
        ctx.open_and_install_with(&desired, &opts, &mut backends, Mode::DryRun, &mut report)?;
    }
    let mut txn = Txn::begin(&ctx, req.mode, &mut report)?;
    // The same grant again (a configuration-management run repeated) keeps its start time; the
    // backends leave what already is as asked alone, so `changed` means a repair.
    if let Some(p) = txn.granted().filter(|p| same_grant(p, &desired)) {
        desired.granted_at = p.granted_at;
    }
    if req.mode == Mode::DryRun {
        let applied =
            ctx.open_and_install_with(&desired, &opts, &mut backends, Mode::DryRun, &mut report)?;
        report.changed = applied.keys.changed || applied.layers.iter().any(|l| l.changed);
        report::grant_lines(
            &desired,
            &applied.layers,
            &applied.keys,
            &target,
            &mut report,
        );
        report::grant_dry_run(&desired, &applied.layers, &applied.keys, &mut report);
        return Ok(report);
    }
    let previous = txn.granted().cloned();
    // A layer that cannot tag its objects (firewalld) knows its own only from the strings
    // recorded: the previous grant's are handed to it, and what it is about to add is journaled
    // with the intent, so that a crash half-way is rolled back by removing exactly those.
    desired.recorded = planned_records(&ctx, &desired, previous.as_ref(), &opts, &mut report)?;
    txn.journal(Intent::begin(
        Op::Grant,
        Some(desired.clone()),
        previous.clone(),
    ))?;
    // --replace-foreign: the unrestricted support lines of the other keys files go first (taking
    // access away is the safe side, and is not undone by a rollback). The previous grant's keys
    // that this one drops must not stay active behind a firewall that no longer opens for them:
    // retired first too.
    let converged = replace_foreign(&ctx, &desired, &elsewhere, &mut report)
        .and_then(|()| {
            previous
                .as_ref()
                .map_or(Ok(()), |p| ctx.retire(p, &desired))
        })
        .and_then(|()| ctx.open_and_install(&desired, &opts, Mode::Apply, &mut report));
    let applied = match converged {
        Ok(a) => a,
        Err(e) => {
            return Err(txn.abort(e, "what was granted before is in place again", &mut report))
        }
    };
    let committed = committed(&desired, &applied);
    txn.commit(Some(committed.clone()))?;
    report.changed = applied.keys.changed || applied.layers.iter().any(|l| l.changed);
    report::grant_lines(
        &committed,
        &applied.layers,
        &applied.keys,
        &target,
        &mut report,
    );
    ctx.audit(
        "grant",
        &format!(
            "host={} addresses={} ports={} expires={}",
            committed.host,
            join(&committed.addresses),
            join(&committed.ports),
            committed
                .expires_at
                .map(fmt_utc)
                .unwrap_or_else(|| "never".into())
        ),
    );
    Ok(report)
}

/// The previous grant's records, with what each layer would record once `desired` is applied.
pub(super) fn planned_records(
    ctx: &Ctx,
    desired: &Grant,
    previous: Option<&Grant>,
    opts: &ApplyOpts,
    report: &mut Report,
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut with_previous = desired.clone();
    with_previous.recorded = previous.map(|p| p.recorded.clone()).unwrap_or_default();
    // Its warnings are those of the rehearsal (the report keeps each once).
    let planned = ctx.open_firewall(&with_previous, opts, Mode::DryRun, report)?;
    let mut all = with_previous.recorded;
    for l in planned.iter().filter(|l| !l.recorded.is_empty()) {
        let v = all.entry(l.layer.clone()).or_default();
        v.extend(l.recorded.iter().cloned());
        v.sort();
        v.dedup();
    }
    Ok(all)
}

/// Known before anything opens: would sshd accept the key at all? A warning rather than a
/// refusal, so that the operator can fix sshd while the grant stands (doctor names the line to
/// change).
fn warn_blockers(facts: &sshd::SshdFacts, target: &support::Target, report: &mut Report) {
    for (addr, e) in &facts.per_address {
        for k in &target.keys {
            let groups = &facts.root_groups;
            for b in sshd::blockers(&k.algorithm, e, USER, groups, *addr, &addr.to_string()) {
                report.warn(format!("sshd will refuse the support key from {addr}: {b}"));
            }
        }
    }
}

fn replace_foreign(
    ctx: &Ctx,
    desired: &Grant,
    elsewhere: &[(std::path::PathBuf, Vec<usize>)],
    report: &mut Report,
) -> Result<()> {
    let blobs: Vec<&str> = desired.keys.iter().map(|k| k.blob.as_str()).collect();
    for (file, lines) in elsewhere {
        keys::update(&ctx.root, file, false, &mut |c: &[u8]| {
            Ok(keys::disable(c, &blobs))
        })?;
        report.warn(format!(
            "commented out line {} of {}: it carried the support key without from= \
             (--replace-foreign)",
            join(lines),
            file.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::DnsOptions;
    use crate::firewall::FirewallChoice;
    use crate::support::{AddressSource, TargetRequest};
    use std::time::Duration;

    fn target() -> support::Target {
        support::Target {
            host: "support.example".into(),
            profile: None,
            keys: vec![],
            key_is_builtin: false,
            addresses: vec!["192.0.2.1".parse().unwrap()],
            source: AddressSource::Dns,
            warnings: vec![],
        }
    }

    fn request(ports: Vec<u16>) -> GrantRequest {
        GrantRequest {
            target: TargetRequest {
                dns: DnsOptions {
                    trust_dns: true,
                    ..Default::default()
                },
                ..Default::default()
            },
            ports,
            duration: Some(Duration::from_secs(3600)),
            firewall: FirewallChoice::Nft,
            replace_foreign: false,
            mode: Mode::Apply,
        }
    }

    #[test]
    fn the_plan_takes_sshd_ports_unless_given_and_dates_the_expiry() {
        let g = plan(&request(vec![]), &target(), &[22, 2222], "/k".into(), 100);
        assert_eq!(g.ports, vec![22, 2222]);
        assert_eq!(g.expires_at, Some(3700));
        assert_eq!(g.firewall, FirewallChoice::Nft);
        assert!(g.trust_dns && g.layers.is_empty());
        let g = plan(
            &request(vec![2222, 22, 2222]),
            &target(),
            &[22],
            "/k".into(),
            100,
        );
        assert_eq!(g.ports, vec![22, 2222]);
    }

    #[test]
    fn a_repeated_grant_is_the_same_grant() {
        let a = plan(&request(vec![]), &target(), &[22], "/k".into(), 100);
        let mut b = plan(&request(vec![]), &target(), &[22], "/k".into(), 200);
        b.layers = vec!["nftables".into()];
        assert!(!same_grant(&a, &b), "another expiry is another grant");
        b.expires_at = a.expires_at;
        assert!(same_grant(&a, &b));
        b.ports = vec![2222];
        assert!(!same_grant(&a, &b));
    }
}
