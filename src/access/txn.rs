//! The transaction: the one way a changing command touches the system, so that none can skip or
//! reorder a step.
//!
//! [`Txn::begin`] takes the lock, loads the state and settles an intent a crashed run left;
//! [`Txn::journal`] records the new intent before the first effect; the command then converges
//! (`converge.rs`); [`Txn::commit`] records the outcome and clears the intent, or [`Txn::abort`]
//! converges back to what was granted before. An abort that fails too leaves the intent in the
//! journal, for the next run to settle.
use anyhow::Result;

use super::close::Scope;
use super::converge::ApplyOpts;
use super::{Ctx, KeyLines, Sessions};
use crate::firewall::Mode;
use crate::report::{fmt_utc, Report};
use crate::sessions;
use crate::state::{
    salvage, set_aside, Grant, Intent, Loaded, Lock, Op, Salvaged, State, STATE_FILE,
};

pub(super) struct Txn<'a> {
    ctx: &'a Ctx,
    /// Held until the transaction is dropped; none for a dry run, which changes nothing.
    _lock: Option<Lock>,
    st: State,
    /// An interrupted transaction was settled by `begin`.
    recovered: bool,
}

impl<'a> Txn<'a> {
    /// Lock, load the state and settle an unfinished intent. A dry run takes no lock and settles
    /// nothing: it only reads.
    pub fn begin(ctx: &'a Ctx, mode: Mode, report: &mut Report) -> Result<Txn<'a>> {
        let lock = match mode {
            Mode::Apply => Some(ctx.lock()?),
            Mode::DryRun => None,
        };
        let st = State::load(&ctx.root)?;
        let mut txn = Txn {
            ctx,
            _lock: lock,
            st,
            recovered: false,
        };
        if mode == Mode::Apply {
            txn.recover(report)?;
        }
        Ok(txn)
    }

    /// A revoke's start: the lock, and the state as it is. An interrupted transaction is not
    /// settled first — the revoke finishes it, whatever it was, where a rollback would reopen
    /// what is about to be closed — and a corrupt state file does not stop it: the file is kept
    /// under another name (a dry run only says it would be) and what it still names is
    /// returned, so that the revoke finds the tool's key lines by their key and marker.
    pub fn begin_revoke(
        ctx: &'a Ctx,
        mode: Mode,
        report: &mut Report,
    ) -> Result<(Txn<'a>, Option<Salvaged>)> {
        let lock = match mode {
            Mode::Apply => Some(ctx.lock()?),
            Mode::DryRun => None,
        };
        let (st, salvaged) = match State::read(&ctx.root)? {
            Loaded::Valid(st) => (*st, None),
            Loaded::Corrupt { bytes, reason } => {
                let shown = ctx.root.path(STATE_FILE);
                if mode.is_dry_run() {
                    report.warn(format!(
                        "the state file {} is corrupt ({reason}); the revoke would keep it under \
                         another name and close what it finds of the tool's",
                        shown.display()
                    ));
                } else {
                    let aside = set_aside(&ctx.root)?;
                    report.warn(format!(
                        "the state file {} is corrupt ({reason}); it is kept as {}, and this \
                         revoke closes what it finds of the tool's",
                        shown.display(),
                        ctx.root.path(&aside).display()
                    ));
                    report.set("state_set_aside", &aside);
                }
                (State::default(), Some(salvage(&bytes)))
            }
        };
        let txn = Txn {
            ctx,
            _lock: lock,
            st,
            recovered: false,
        };
        Ok((txn, salvaged))
    }

    /// The intent of a transaction that was interrupted (only after `begin_revoke`, which does
    /// not settle it).
    pub fn interrupted(&self) -> Option<&Intent> {
        self.st.intent.as_ref()
    }

    /// `begin` settled an interrupted transaction (which changed the system).
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// What is granted (after settling).
    pub fn granted(&self) -> Option<&Grant> {
        self.st.granted.as_ref()
    }

    /// Journal the intent: from here on a crash is finished or undone by the next run.
    pub fn journal(&mut self, intent: Intent) -> Result<()> {
        self.st.intent = Some(intent);
        self.st.save(&self.ctx.root)?;
        crate::failpoint!("after-intent");
        Ok(())
    }

    /// Record the outcome and clear the intent.
    pub fn commit(mut self, granted: Option<Grant>) -> Result<()> {
        crate::failpoint!("before-commit");
        self.st.granted = granted;
        self.st.intent = None;
        self.st.save(&self.ctx.root)
    }

    /// The converging failed with `e`: back to what was granted before. `undone` says what the
    /// operator has then ("what was granted before is in place again").
    pub fn abort(mut self, e: anyhow::Error, undone: &str, report: &mut Report) -> anyhow::Error {
        let op = self
            .st
            .intent
            .as_ref()
            .map_or_else(|| "the change".into(), |i| i.op.to_string());
        match self.settle(report) {
            Ok(_) => e.context(format!("{op} failed; {undone}")),
            Err(re) => e.context(format!(
                "{op} failed and rolling it back failed too ({re:#}); run `ovh-access restore`"
            )),
        }
    }

    /// A transaction interrupted by a crash is settled before anything else, and the command
    /// says how.
    fn recover(&mut self, report: &mut Report) -> Result<()> {
        let Some(intent) = self.st.intent.clone() else {
            return Ok(());
        };
        let what = self.settle(report)?;
        self.recovered = true;
        report.warn(format!(
            "an interrupted {} (pid {}, started {}) was {what}",
            intent.op,
            intent.pid,
            fmt_utc(intent.started_at)
        ));
        self.ctx
            .audit("recover", &format!("interrupted {} {what}", intent.op));
        report.set(
            "recovered",
            serde_json::json!({"op": intent.op, "pid": intent.pid, "outcome": what}),
        );
        Ok(())
    }

    /// Settle the journal's intent: a revoke is finished (it only ever takes access away, so
    /// finishing it is always safe), anything else is rolled back to the state it started from.
    /// On success the state records the outcome and the intent is cleared; on failure the intent
    /// stays for the next run. Returns "finished" or "rolled back".
    fn settle(&mut self, report: &mut Report) -> Result<&'static str> {
        let Some(intent) = self.st.intent.clone() else {
            return Ok("settled");
        };
        let (goal, what) = if intent.op == Op::Revoke {
            (None, "finished")
        } else {
            (intent.previous.clone(), "rolled back")
        };
        let ctx = self.ctx;
        match &goal {
            Some(g) => {
                // What the interrupted grant enabled beyond `g` (another key, another keys
                // file) is disabled before `g` is put back.
                if let Some(t) = &intent.target {
                    ctx.retire(t, g)?;
                }
                // The interrupted grant's journaled records too: what it may have added beyond
                // `g` in a layer that knows its objects only by them (firewalld) is removed.
                let mut back = g.clone();
                for (layer, rules) in intent.target.iter().flat_map(|t| &t.recorded) {
                    let v = back.recorded.entry(layer.clone()).or_default();
                    v.extend(rules.iter().cloned());
                    v.sort();
                    v.dedup();
                }
                ctx.open_and_install(&back, &ApplyOpts::recorded(g), Mode::Apply, report)?;
            }
            None => {
                // Both ends of the interrupted transaction: their keys, keys files and sessions.
                let ends: Vec<&Grant> = [intent.target.as_ref(), intent.previous.as_ref()]
                    .into_iter()
                    .flatten()
                    .collect();
                let lines = if intent.remove {
                    KeyLines::Remove
                } else {
                    KeyLines::Disable
                };
                ctx.close_everything(&Scope::of(&ends), lines, Mode::Apply, report)
                    .into_result()?;
                if !intent.keep_sessions {
                    for g in &ends {
                        sessions::end(&g.addresses, &mut report.warnings);
                    }
                }
            }
        }
        self.st.granted = goal;
        self.st.intent = None;
        self.st.save(&ctx.root)?;
        Ok(what)
    }
}

impl Sessions {
    /// As the journal records it (`keep_sessions`).
    pub(super) fn keep(self) -> bool {
        self == Sessions::Keep
    }
}
