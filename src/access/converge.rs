//! The two effects every transaction is made of, each converging to a desired state in the safe
//! order: [`Ctx::open_and_install`] (firewall first, then the key) and `close.rs`'s
//! `close_everything` (key first, then the firewall). Both are idempotent, so running one again
//! after a crash is a correct recovery.
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::{grant_request, Ctx, KeyLines};
use crate::firewall::{Backend, FirewallChoice, LayerChange, Mode, Purpose};
use crate::report::Report;
use crate::state::Grant;
use crate::support::SupportKey;
use crate::{keys, sshd};

/// How a grant is applied.
pub(super) struct ApplyOpts {
    pub firewall: FirewallChoice,
    pub replace_foreign: bool,
}

impl ApplyOpts {
    /// How a recorded grant is applied again (rollback, refresh, restore): its own firewall
    /// choice, and never --replace-foreign (that is the operator's decision at grant time).
    pub fn recorded(g: &Grant) -> ApplyOpts {
        ApplyOpts {
            firewall: g.firewall,
            replace_foreign: false,
        }
    }
}

/// What converging to a grant did.
pub(super) struct Applied {
    pub layers: Vec<LayerChange>,
    pub keys: keys::WriteOutcome,
}

impl Ctx {
    /// The backends a grant with `choice` programs; what the operator should know about the
    /// layers goes to the report's warnings.
    pub(super) fn select_open(
        &self,
        choice: FirewallChoice,
        report: &mut Report,
    ) -> Result<Vec<Box<dyn Backend>>> {
        self.select(choice, Purpose::Open, &mut report.warnings)
    }

    /// [`Ctx::open_and_install_with`] the layers of the grant's own firewall choice.
    pub(super) fn open_and_install(
        &self,
        g: &Grant,
        opts: &ApplyOpts,
        mode: Mode,
        report: &mut Report,
    ) -> Result<Applied> {
        let mut backends = self.select_open(opts.firewall, report)?;
        self.open_and_install_with(g, opts, &mut backends, mode, report)
    }

    /// The firewall half of [`Ctx::open_and_install`] alone, for what it would record.
    pub(super) fn open_firewall(
        &self,
        g: &Grant,
        opts: &ApplyOpts,
        mode: Mode,
        report: &mut Report,
    ) -> Result<Vec<LayerChange>> {
        let mut backends = self.select_open(opts.firewall, report)?;
        open_layers(g, &mut backends, mode)
    }

    /// Firewall first, then the key. When the key step fails, the firewall change is undone by
    /// the caller (it knows what was granted before).
    pub(super) fn open_and_install_with(
        &self,
        g: &Grant,
        opts: &ApplyOpts,
        backends: &mut [Box<dyn Backend>],
        mode: Mode,
        report: &mut Report,
    ) -> Result<Applied> {
        let layers = open_layers(g, backends, mode)?;
        if mode == Mode::Apply {
            crate::failpoint!("after-firewall");
        }
        let keys: Vec<SupportKey> = g.keys.iter().map(SupportKey::from).collect();
        let expiry = match g.expires_at {
            Some(t) => {
                let at = std::time::UNIX_EPOCH + Duration::from_secs(t);
                let (zone, warning) = keys::ServerZone::load(&self.root);
                if let Some(w) = warning {
                    report.warn(w);
                }
                // Only a grant with an expiry needs sshd's release (the form of expiry-time).
                let e = keys::expiry_for(at, sshd::version(), &zone);
                if e.is_none() {
                    report.warn(
                        "this sshd is older than OpenSSH 7.7 and has no expiry-time: only the \
                         firewall's timeout ends the grant on time",
                    );
                }
                e
            }
            None => None,
        };
        let replace_foreign = opts.replace_foreign;
        let outcome = keys::update(
            &self.root,
            &g.keys_file,
            mode.is_dry_run(),
            &mut |content: &[u8]| {
                keys::install(
                    content,
                    &keys,
                    &g.addresses,
                    expiry.as_ref(),
                    replace_foreign,
                )
            },
        )?;
        if mode == Mode::Apply {
            crate::failpoint!("after-key");
        }
        Ok(Applied {
            layers,
            keys: outcome,
        })
    }

    /// The support lines of the keys file sshd reads now and of every other file sshd reads,
    /// as a dry run sees them (status: leftovers of a grant the state does not know).
    pub(super) fn support_lines_left(&self, report: &mut Report) -> Vec<keys::WriteOutcome> {
        let mut c = super::close::Closing::default();
        let scope = super::close::Scope::default();
        self.close_keys(&scope, KeyLines::Disable, Mode::DryRun, report, &mut c);
        c.keys
    }

    /// Disable `old`'s key lines that `new` does not carry in the same keys file (a re-grant
    /// with another key, or sshd now reading another file). `new`'s own lines are enabled again
    /// by its install, which follows.
    pub(super) fn retire(&self, old: &Grant, new: &Grant) -> Result<()> {
        let dropped: Vec<&str> = old
            .keys
            .iter()
            .filter(|k| {
                old.keys_file != new.keys_file || !new.keys.iter().any(|n| n.blob == k.blob)
            })
            .map(|k| k.blob.as_str())
            .collect();
        if !dropped.is_empty() {
            // Only the tool's own lines: a re-grant leaves the administrator's lines alone,
            // unlike revoke.
            keys::update(
                &self.root,
                &old.keys_file,
                false,
                &mut |content: &[u8]| Ok(keys::retire(content, &dropped)),
            )?;
        }
        Ok(())
    }

    /// Disable (or remove) the lines of `keys_file` carrying one of the keys.
    pub(super) fn disable_keys(
        &self,
        keys_file: &Path,
        blobs: &[&str],
        lines: KeyLines,
        mode: Mode,
    ) -> Result<keys::WriteOutcome> {
        keys::update(
            &self.root,
            keys_file,
            mode.is_dry_run(),
            &mut |content: &[u8]| {
                Ok(match lines {
                    KeyLines::Remove => keys::remove(content, blobs),
                    KeyLines::Disable => keys::disable(content, blobs),
                })
            },
        )
    }
}

/// Every layer opened for `g`.
fn open_layers(
    g: &Grant,
    backends: &mut [Box<dyn Backend>],
    mode: Mode,
) -> Result<Vec<LayerChange>> {
    // The time left to the grant's instant, to the sub-second: iptables dates --datestop from
    // its own clock read, which then lands on `expires_at` itself (whole seconds would be off
    // by one whenever a second boundary passes between the two reads). A timeout of zero means
    // "none" to nftables, so a grant about to end keeps a second.
    let mut req = grant_request(g);
    if let Some(t) = req.timeout.as_mut() {
        *t = (*t).max(Duration::from_secs(1));
    }
    let mut layers = Vec::new();
    for b in backends.iter_mut() {
        let recorded = g.recorded_for(&b.name());
        layers.push(b.open(&req, recorded, mode)?);
    }
    Ok(layers)
}
