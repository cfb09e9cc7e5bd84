//! `restore` (after a reboot, a `flush ruleset` or a firewall reload): re-apply what is still
//! granted, clean up what expired. An intact grant is left as it is and said to be intact: the
//! backends' read side ([`crate::firewall::Backend::inspect`]) tells.
use anyhow::Result;

use super::close::{Closing, Scope};
use super::converge::ApplyOpts;
use super::txn::Txn;
use super::{grant_request, Ctx, KeyLines};
use crate::firewall::{FirewallChoice, LayerState, Mode, Purpose};
use crate::report::{fmt_utc, Report};
use crate::root::Root;
use crate::sessions;
use crate::state::{self, Grant};

/// What restore does with what is granted (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Nothing,
    /// sshd and the kernel closed the door at the expiry; the tool's lines and objects go.
    CleanUpExpired(Grant),
    Reapply(Grant),
}

pub(super) fn step(granted: Option<&Grant>, now: u64) -> Step {
    match granted {
        None => Step::Nothing,
        Some(g) if g.expired(now) => Step::CleanUpExpired(g.clone()),
        Some(g) => Step::Reapply(g.clone()),
    }
}

/// Every layer of the grant holds exactly what the grant wrote (read only).
pub(super) fn layers_intact(ctx: &Ctx, g: &Grant, warnings: &mut Vec<String>) -> bool {
    let req = grant_request(g);
    let Ok(backends) = ctx.select(FirewallChoice::Auto, Purpose::Remove, warnings) else {
        return false;
    };
    let mut whole = Vec::new();
    for mut b in backends {
        let name = b.name();
        if matches!(
            b.inspect(Some(&req), g.recorded_for(&name)),
            Ok(LayerState::Exact)
        ) {
            whole.push(name);
        }
    }
    g.layers.iter().all(|l| whole.contains(l))
}

pub fn restore(root: &Root) -> Result<Report> {
    let ctx = Ctx::new(root);
    let mut report = Report::new("restore");
    let txn = Txn::begin(&ctx, Mode::Apply, &mut report)?;
    report.changed = txn.recovered();
    match step(txn.granted(), state::now()) {
        Step::Nothing => {
            report.line("Nothing is granted; nothing to restore.");
            Ok(report)
        }
        Step::CleanUpExpired(g) => clean_up(&ctx, txn, &g, report),
        Step::Reapply(g) => reapply(&ctx, &g, report),
    }
}

fn clean_up(ctx: &Ctx, txn: Txn<'_>, g: &Grant, mut report: Report) -> Result<Report> {
    let Closing {
        keys: k, layers, ..
    } = ctx
        .close_everything(
            &Scope::of(&[g]),
            KeyLines::Disable,
            Mode::Apply,
            &mut report,
        )
        .into_result()?;
    // sshd and the kernel closed the door at the expiry; a session opened before it would live
    // on.
    sessions::end(&g.addresses, &mut report.warnings);
    txn.commit(None)?;
    report.changed = true;
    let closed: Vec<String> = layers
        .iter()
        .filter(|l| l.changed)
        .map(|l| l.layer.clone())
        .collect();
    report.line(format!(
        "The grant to {} expired at {}: its key line was disabled ({}) and the firewall closed ({}).",
        g.host,
        fmt_utc(g.expires_at.unwrap_or(0)),
        if k.iter().any(|k| k.changed) {
            "changed"
        } else {
            "already"
        },
        closed.join(", ")
    ));
    ctx.audit(
        "restore",
        &format!("expired grant to {} cleaned up", g.host),
    );
    Ok(report)
}

fn reapply(ctx: &Ctx, g: &Grant, mut report: Report) -> Result<Report> {
    // An intact grant is rewritten in place by the nft backend: that is no change.
    let intact = layers_intact(ctx, g, &mut report.warnings);
    let applied = ctx.open_and_install(g, &ApplyOpts::recorded(g), Mode::Apply, &mut report)?;
    let changed: Vec<String> = applied
        .layers
        .iter()
        .filter(|l| l.changed && !intact)
        .map(|l| l.layer.clone())
        .collect();
    report.changed |= applied.keys.changed || !changed.is_empty();
    if !report.changed {
        report.line(format!(
            "The grant to {} is intact; nothing to restore.",
            g.host
        ));
        return Ok(report);
    }
    report.line(format!(
        "Re-applied the grant to {}: firewall {}; keys file {}.",
        g.host,
        if changed.is_empty() {
            "unchanged".into()
        } else {
            changed.join(", ")
        },
        if applied.keys.changed {
            "repaired"
        } else {
            "unchanged"
        }
    ));
    ctx.audit("restore", &format!("grant to {} re-applied", g.host));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_grant_is_cleaned_up_a_live_one_reapplied() {
        let g: Grant = serde_json::from_value(serde_json::json!({
            "host": "h", "profile": null, "addresses": ["192.0.2.1"],
            "address_source": "operator", "ports": [22], "keys": [],
            "keys_file": "/root/.ssh/authorized_keys2", "layers": [], "firewall": "auto",
            "granted_at": 1, "expires_at": 10
        }))
        .unwrap();
        assert_eq!(step(None, 5), Step::Nothing);
        assert_eq!(step(Some(&g), 5), Step::Reapply(g.clone()));
        assert_eq!(step(Some(&g), 10), Step::CleanUpExpired(g));
    }
}
