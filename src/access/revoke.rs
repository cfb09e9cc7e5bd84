//! `revoke`: disable the key first, then close the firewall, then end the support's live
//! sessions. Finishing a revoke only ever takes access away, so an interrupted one is finished,
//! never undone. Every layer that holds the tool's objects is closed, whatever `--firewall` the
//! grant used, and the support lines of every keys file sshd reads are disabled.
use anyhow::Result;

use super::txn::Txn;
use super::{Ctx, KeyLines, RevokeRequest, Sessions};
use crate::firewall::Mode;
use crate::report::{self, join, Report};
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
        ctx.disable_and_close(previous.as_ref(), req.lines, req.mode, &mut report.warnings)?;
    let mut ended = Vec::new();
    if req.mode == Mode::Apply && req.sessions == Sessions::End {
        if let Some(g) = &previous {
            ended = sessions::end(&g.addresses, &mut report);
        }
    }
    if req.mode == Mode::Apply {
        txn.commit(None)?;
    }
    report.changed = keys_out.changed || layers.iter().any(|l| l.changed) || !ended.is_empty();
    report::revoke_lines(
        previous.as_ref(),
        req.lines,
        &keys_out,
        &layers,
        &ended,
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
