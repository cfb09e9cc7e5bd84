//! `revoke`: disable the key first, then close the firewall, then end the support's live
//! sessions. Finishing a revoke only ever takes access away, so an interrupted one is finished,
//! never undone. Every layer that holds the tool's objects is closed, whatever `--firewall` the
//! grant used, and the support lines of every keys file sshd reads are disabled.
//!
//! A revoke never gives up half-way (`close.rs`): what it cannot close it reports with the
//! command that finishes, exits 1, and keeps its intent in the journal. A revoke with nothing
//! recorded writes no journal: run again, it does the same.
use anyhow::Result;

use super::close::{describe_revoke, Scope};
use super::txn::Txn;
use super::{Ctx, KeyLines, RevokeRequest, Sessions};
use crate::firewall::Mode;
use crate::report::{fmt_utc, join, Report};
use crate::root::Root;
use crate::sessions;
use crate::state::{Grant, Intent, Op};

/// The intent a revoke journals (pure): nothing granted at the end, how to finish it, and both
/// ends of what may be open (`ends[0]` the grant, `ends[1]` the other end of an interrupted
/// transaction).
pub(super) fn intent(ends: &[Grant], req: &RevokeRequest) -> Intent {
    Intent {
        keep_sessions: req.sessions.keep(),
        remove: req.lines == KeyLines::Remove,
        ..Intent::begin(Op::Revoke, ends.get(1).cloned(), ends.first().cloned())
    }
}

/// Everything that may be open (pure): the grant, and both ends of an interrupted transaction.
pub(super) fn ends(granted: Option<&Grant>, interrupted: Option<&Intent>) -> Vec<Grant> {
    let mut out: Vec<Grant> = Vec::new();
    let candidates = [
        granted.cloned(),
        interrupted.and_then(|i| i.target.clone()),
        interrupted.and_then(|i| i.previous.clone()),
    ];
    for g in candidates.into_iter().flatten() {
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

pub fn revoke(root: &Root, req: &RevokeRequest) -> Result<Report> {
    let ctx = Ctx::new(root);
    let mut report = Report::new("revoke");
    report.dry_run = req.mode.is_dry_run();
    let (mut txn, salvaged) = Txn::begin_revoke(&ctx, req.mode, &mut report)?;
    let previous = txn.granted().cloned();
    let interrupted = txn.interrupted().cloned();
    let ends = ends(previous.as_ref(), interrupted.as_ref());
    let mut req = req.clone();
    if interrupted.as_ref().is_some_and(|i| i.remove) {
        req.lines = KeyLines::Remove;
    }
    if let Some(i) = &interrupted {
        report.warn(format!(
            "an interrupted {} (pid {}, started {}) is finished by this revoke",
            i.op,
            i.pid,
            fmt_utc(i.started_at)
        ));
    }
    if req.mode == Mode::Apply && !ends.is_empty() {
        txn.journal(intent(&ends, &req))?;
    }
    let scope = Scope::of(&ends.iter().collect::<Vec<_>>()).with_salvaged(salvaged.as_ref());
    let closing = ctx.close_everything(&scope, req.lines, req.mode, &mut report);
    let mut ended = Vec::new();
    if req.mode == Mode::Apply && req.sessions == Sessions::End {
        for g in &ends {
            ended.extend(sessions::end(&g.addresses, &mut report.warnings));
        }
    }
    // Anything left open keeps the intent in the journal: status reports it, and the next run
    // (or `ovh-access revoke`, once the cause is fixed) finishes it.
    let recorded = !ends.is_empty() || interrupted.is_some();
    if req.mode == Mode::Apply && closing.failures.is_empty() && recorded {
        txn.commit(None)?;
    }
    report.changed = closing.changed() || !ended.is_empty() || salvaged.is_some();
    describe_revoke(&closing, previous.as_ref(), req.lines, &ended, &mut report);
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
    use std::path::PathBuf;

    #[test]
    fn the_journal_remembers_how_to_finish_the_revoke() {
        let req = RevokeRequest {
            lines: KeyLines::Remove,
            sessions: Sessions::Keep,
            mode: Mode::Apply,
        };
        let i = intent(&[], &req);
        assert_eq!(i.op, Op::Revoke);
        assert!(i.remove && i.keep_sessions && i.target.is_none());
    }

    fn grant(file: &str, blob: &str) -> Grant {
        let mut g: Grant = serde_json::from_value(serde_json::json!({
            "host": "support.example", "profile": null, "addresses": ["192.0.2.1"],
            "address_source": "operator", "ports": [22], "keys": [{"algorithm": "ssh-ed25519",
            "blob": blob, "comment": "", "fingerprint": "SHA256:x"}], "keys_file": file,
            "layers": [], "firewall": "auto", "granted_at": 1, "expires_at": null,
        }))
        .unwrap();
        g.recorded
            .insert("firewalld".into(), vec![format!("rule for {blob}")]);
        g
    }

    #[test]
    fn a_revoke_closes_both_ends_of_an_interrupted_grant_once_each() {
        assert!(ends(None, None).is_empty());
        let (old, new) = (grant("/a", "AAAA1111"), grant("/b", "BBBB2222"));
        let interrupted = Intent::begin(Op::Grant, Some(new.clone()), Some(old.clone()));
        let e = ends(Some(&old), Some(&interrupted));
        assert_eq!(e, [old.clone(), new.clone()]);
        let scope = Scope::of(&e.iter().collect::<Vec<_>>());
        assert_eq!(scope.files, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(scope.blobs, ["AAAA1111", "BBBB2222"]);
        assert_eq!(scope.recorded["firewalld"].len(), 2);
        let salvaged = crate::state::Salvaged {
            blobs: vec!["CCCC3333".into(), "AAAA1111".into()],
            keys_files: vec!["/a".into()],
        };
        let scope = scope.with_salvaged(Some(&salvaged));
        assert_eq!(scope.blobs, ["AAAA1111", "BBBB2222", "CCCC3333"]);
        assert_eq!(scope.files.len(), 2);
        // The journal names both ends, so that a crash of this revoke is finished on both.
        let req = RevokeRequest {
            lines: KeyLines::Disable,
            sessions: Sessions::End,
            mode: Mode::Apply,
        };
        let i = intent(&e, &req);
        assert_eq!((i.previous, i.target), (Some(old), Some(new)));
    }
}
