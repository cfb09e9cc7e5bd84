//! `revoke`: disable the key first, then close the firewall, then end the support's live
//! sessions. Finishing a revoke only ever takes access away, so an interrupted one is finished,
//! never undone. Every layer that holds the tool's objects is closed, whatever `--firewall` the
//! grant used, and the support lines of every keys file sshd reads are disabled.
use anyhow::Result;

use super::txn::Txn;
use super::{Ctx, KeyLines, RevokeRequest, Sessions};
use crate::firewall::{LayerChange, Mode};
use crate::keys;
use crate::report::{join, Report};
use crate::root::Root;
use crate::sessions;
use crate::state::{Grant, Intent, Op};

/// The intent a revoke journals (pure): nothing granted at the end, and how to finish it.
pub(super) fn intent(previous: Option<Grant>, req: &RevokeRequest) -> Intent {
    Intent {
        keep_sessions: req.sessions.keep(),
        remove: req.lines == KeyLines::Remove,
        ..Intent::begin(Op::Revoke, None, previous)
    }
}

pub fn revoke(root: &Root, req: &RevokeRequest) -> Result<Report> {
    let ctx = Ctx { root: root.clone() };
    let mut report = Report::new("revoke");
    report.dry_run = req.mode.is_dry_run();
    let mut txn = Txn::begin(&ctx, req.mode, &mut report)?;
    let previous = txn.granted().cloned();
    if req.mode == Mode::Apply {
        txn.journal(intent(previous.clone(), req))?;
    }
    let (keys_out, layers) =
        ctx.disable_and_close(previous.as_ref(), req.lines, req.mode, &mut report)?;
    let mut ended = Vec::new();
    if req.mode == Mode::Apply && req.sessions == Sessions::End {
        if let Some(g) = &previous {
            ended = sessions::end(&g.addresses, &g.ports, &mut report);
        }
    }
    if req.mode == Mode::Apply {
        txn.commit(None)?;
    }
    report.changed = keys_out.changed || layers.iter().any(|l| l.changed) || !ended.is_empty();
    describe(
        previous.as_ref(),
        req,
        &keys_out,
        &layers,
        ended.len(),
        &mut report,
    );
    report.set("sessions_ended", &ended);
    if req.mode == Mode::Apply && report.changed {
        let details = previous
            .as_ref()
            .map(|g| {
                format!(
                    "host={} addresses={} ports={} sessions_ended={}",
                    g.host,
                    join(&g.addresses),
                    join(&g.ports),
                    ended.len()
                )
            })
            .unwrap_or_else(|| "no recorded grant".into());
        ctx.audit("revoke", &details);
    }
    Ok(report)
}

fn describe(
    previous: Option<&Grant>,
    req: &RevokeRequest,
    keys_out: &keys::WriteOutcome,
    layers: &[LayerChange],
    ended: usize,
    report: &mut Report,
) {
    let verb = if report.dry_run {
        "Would revoke"
    } else {
        "Revoked"
    };
    match previous {
        Some(g) => report.line(format!(
            "{verb} the support access granted to {}.",
            g.host
        )),
        None if report.changed => report.line(format!(
            "{verb}: no grant was recorded, but support lines or firewall objects were found and removed."
        )),
        None => report.line("Nothing was granted; nothing to revoke."),
    }
    let action = match req.lines {
        KeyLines::Remove => "removed",
        KeyLines::Disable => "commented out",
    };
    report.line(format!(
        "  keys file: {} ({})",
        keys_out.path.display(),
        if keys_out.changed {
            format!("support lines {action}")
        } else {
            "unchanged".into()
        }
    ));
    for l in layers {
        report.line(format!(
            "  firewall:  {}: {}",
            l.layer,
            if l.changed {
                "closed"
            } else {
                "nothing of ours found"
            }
        ));
        for n in &l.notes {
            report.line(format!("             {n}"));
        }
    }
    if ended > 0 {
        report.line(format!(
            "  sessions:  ended {ended} live support session(s)"
        ));
    }
    if report.dry_run {
        for l in layers.iter().filter(|l| l.changed) {
            report.line(format!("# {}", l.layer));
            report.line(l.script.trim_end().to_string());
        }
        report.line(keys::diff(&keys_out.before, &keys_out.after));
    }
    report.set("keys_file", &keys_out.path);
    report.set("keys_file_changed", keys_out.changed);
    report.set("firewall", layers);
    crate::report::set_changes(report, keys_out, layers);
    report.set("previous", previous);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_remembers_how_to_finish_the_revoke() {
        let req = RevokeRequest {
            lines: KeyLines::Remove,
            sessions: Sessions::Keep,
            mode: Mode::Apply,
        };
        let i = intent(None, &req);
        assert_eq!(i.op, Op::Revoke);
        assert!(i.remove && i.keep_sessions && i.target.is_none());
    }
}
