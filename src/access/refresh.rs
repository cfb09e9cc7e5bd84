//! `refresh` (run by a timer): re-resolve the support host and move the grant to its new
//! addresses in place. The new addresses are opened before the key allows them; the sets are
//! replaced, so the old addresses lose the firewall at the same moment.
use std::net::IpAddr;

use anyhow::Result;

use super::converge::ApplyOpts;
use super::txn::Txn;
use super::{sorted, Ctx, RefreshRequest};
use crate::dns::{self, DnsOptions};
use crate::firewall::Mode;
use crate::report::{fmt_utc, join, Report};
use crate::root::Root;
use crate::state::{self, Grant, Intent, Op};
use crate::support;

/// What refresh does with a grant (pure, before DNS is asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Nothing,
    /// Re-opening the firewall for a grant sshd already refuses would only widen the door.
    Expired,
    /// The addresses came from the operator or the published list: not DNS's to change.
    NotFromDns,
    Resolve,
}

pub(super) fn step(granted: Option<&Grant>, now: u64) -> Step {
    match granted {
        None => Step::Nothing,
        Some(g) if g.expired(now) => Step::Expired,
        Some(g) if !g.address_source.from_dns() => Step::NotFromDns,
        Some(_) => Step::Resolve,
    }
}

/// How DNS is asked: as grant asked (recorded in the grant); options given now add to that.
pub(super) fn dns_options(g: &Grant, now: &DnsOptions) -> DnsOptions {
    DnsOptions {
        resolver: now.resolver.or(g.resolver),
        allow_private: now.allow_private || g.allow_private,
        trust_dns: now.trust_dns || g.trust_dns,
    }
}

/// The grant moved to `fresh`, or None when the addresses did not move (pure).
pub(super) fn moved(g: &Grant, fresh: &[IpAddr], source: support::AddressSource) -> Option<Grant> {
    if sorted(fresh.to_vec()) == sorted(g.addresses.clone()) {
        return None;
    }
    let mut desired = g.clone();
    desired.addresses = fresh.to_vec();
    desired.address_source = source;
    Some(desired)
}

pub fn refresh(root: &Root, req: &RefreshRequest) -> Result<Report> {
    let ctx = Ctx::new(root);
    let mut report = Report::new("refresh");
    report.dry_run = req.mode.is_dry_run();
    let mut txn = Txn::begin(&ctx, req.mode, &mut report)?;
    let g = match step(txn.granted(), state::now()) {
        Step::Nothing => {
            report.line("Nothing is granted; nothing to refresh.");
            return Ok(report);
        }
        Step::Expired => {
            let g = txn.granted().expect("a grant");
            report.line(format!(
                "The grant to {} expired at {}; run `ovh-access restore` to clean it up.",
                g.host,
                fmt_utc(g.expires_at.unwrap_or(0))
            ));
            return Ok(report);
        }
        Step::NotFromDns => {
            let g = txn.granted().expect("a grant");
            report.line(format!(
                "The addresses of this grant came from {} and are not re-resolved.",
                g.address_source.name()
            ));
            report.set("addresses", &g.addresses);
            return Ok(report);
        }
        Step::Resolve => txn.granted().cloned().expect("a grant"),
    };
    // A failed lookup is an error, never a move to the published list: the timer retries.
    let opts = dns_options(&g, &req.dns);
    let answer = dns::resolve(&ctx.root, &g.host, opts.resolver, dns::DNS_TIMEOUT)?;
    let profile = g.profile.as_deref().and_then(support::profile_by_name);
    let (fresh, source, warnings) = support::choose_addresses(
        profile.as_ref().map(|p| p.published.as_slice()),
        Ok(answer),
        opts.trust_dns,
        false,
    )?;
    for w in warnings {
        report.warn(w);
    }
    let fresh = sorted(dns::validate(fresh, opts.allow_private, &g.host)?);
    let old = sorted(g.addresses.clone());
    report.set("host", &g.host);
    report.set("addresses", &fresh);
    report.set("previous_addresses", &old);
    // Refresh converges, it does not only re-resolve: a firewall reload (firewalld's
    // `--reload`, a `flush ruleset`) between two runs is repaired by the next one.
    let desired = match moved(&g, &fresh, source) {
        Some(d) => {
            report.line(format!(
                "{} moved: {} → {}",
                g.host,
                join(&old),
                join(&fresh)
            ));
            d
        }
        None if super::restore::layers_intact(&ctx, &g, &mut report.warnings) => {
            report.line(format!(
                "{} still resolves to {}; nothing to change.",
                g.host,
                join(&fresh)
            ));
            return Ok(report);
        }
        None => {
            report.line(format!(
                "{} still resolves to {}, but the firewall lost the grant's rules: putting them back.",
                g.host,
                join(&fresh)
            ));
            g.clone()
        }
    };
    if req.mode == Mode::DryRun {
        return Ok(report);
    }
    let opts = ApplyOpts::recorded(&g);
    let mut desired = desired;
    desired.recorded = super::grant::planned_records(&ctx, &desired, Some(&g), &opts, &mut report)?;
    txn.journal(Intent::begin(
        Op::Refresh,
        Some(desired.clone()),
        Some(g.clone()),
    ))?;
    if let Err(e) = ctx.open_and_install(&desired, &opts, Mode::Apply, &mut report) {
        return Err(txn.abort(e, "the previous addresses are kept", &mut report));
    }
    txn.commit(Some(desired))?;
    report.changed = true;
    ctx.audit(
        "refresh",
        &format!(
            "host={} addresses={} (were {}) ports={}",
            g.host,
            join(&fresh),
            join(&old),
            join(&g.ports)
        ),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::AddressSource;

    fn grant(source: AddressSource, expires_at: Option<u64>) -> Grant {
        Grant {
            host: "support.example".into(),
            profile: None,
            addresses: vec!["192.0.2.1".parse().unwrap()],
            address_source: source,
            ports: vec![22],
            sshd_ports: vec![],
            keys: vec![],
            keys_file: "/root/.ssh/authorized_keys2".into(),
            layers: vec![],
            firewall: Default::default(),
            granted_at: 1,
            expires_at,
            resolver: None,
            allow_private: true,
            trust_dns: false,
            recorded: Default::default(),
        }
    }

    #[test]
    fn only_a_live_grant_from_dns_is_resolved_again() {
        assert_eq!(step(None, 10), Step::Nothing);
        let g = grant(AddressSource::Dns, Some(10));
        assert_eq!(step(Some(&g), 10), Step::Expired);
        assert_eq!(step(Some(&g), 9), Step::Resolve);
        let g = grant(AddressSource::Operator, None);
        assert_eq!(step(Some(&g), 9), Step::NotFromDns);
        let g = grant(AddressSource::DnsWithinPublished, None);
        assert_eq!(step(Some(&g), 9), Step::Resolve);
    }

    #[test]
    fn a_move_keeps_everything_but_the_addresses_and_their_source() {
        let g = grant(AddressSource::Dns, None);
        let same: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap()];
        assert_eq!(moved(&g, &same, AddressSource::Dns), None);
        let fresh: Vec<IpAddr> = vec!["192.0.2.2".parse().unwrap()];
        let m = moved(&g, &fresh, AddressSource::DnsWithinPublished).unwrap();
        assert_eq!(m.addresses, fresh);
        assert_eq!(m.address_source, AddressSource::DnsWithinPublished);
        assert_eq!((m.ports, m.granted_at), (g.ports.clone(), g.granted_at));
        // The recorded DNS options stay; those given now add to them.
        let o = dns_options(&g, &DnsOptions::default());
        assert!(o.allow_private && !o.trust_dns);
    }
}
