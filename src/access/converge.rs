//! The two effects every transaction is made of, each converging to a desired state in the safe
//! order: [`Ctx::open_and_install`] (firewall first, then the key) and
//! [`Ctx::disable_and_close`] (key first, then the firewall). Both are idempotent, so running
//! one again after a crash is a correct recovery.
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::{grant_request, sorted, Ctx, KeyLines};
use crate::firewall::{self, Backend, FirewallChoice, LayerChange, Mode, Purpose};
use crate::state::{Grant, StoredKey};
use crate::support::{self, SupportKey};
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
    /// layers goes to `warnings`.
    pub(super) fn select_open(
        &self,
        choice: FirewallChoice,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Box<dyn Backend>>> {
        firewall::select(choice, Purpose::Open, warnings)
    }

    /// [`Ctx::open_and_install_with`] the layers of the grant's own firewall choice.
    pub(super) fn open_and_install(
        &self,
        g: &Grant,
        opts: &ApplyOpts,
        mode: Mode,
        warnings: &mut Vec<String>,
    ) -> Result<Applied> {
        let mut backends = self.select_open(opts.firewall, warnings)?;
        self.open_and_install_with(g, opts, &mut backends, mode, warnings)
    }

    /// Firewall first, then the key. When the key step fails, the firewall change is undone by
    /// the caller (it knows what was granted before).
    pub(super) fn open_and_install_with(
        &self,
        g: &Grant,
        opts: &ApplyOpts,
        backends: &mut [Box<dyn Backend>],
        mode: Mode,
        warnings: &mut Vec<String>,
    ) -> Result<Applied> {
        // The time left to the grant's instant, to the sub-second: iptables dates --datestop
        // from its own clock read, which then lands on `expires_at` itself (whole seconds
        // would be off by one whenever a second boundary passes between the two reads). A
        // timeout of zero means "none" to nftables, so a grant about to end keeps a second.
        let mut req = grant_request(g);
        if let Some(t) = req.timeout.as_mut() {
            *t = (*t).max(Duration::from_secs(1));
        }
        let mut layers = Vec::new();
        for b in backends.iter_mut() {
            let recorded = g.recorded_for(&b.name());
            layers.push(b.open(&req, recorded, mode)?);
        }
        if mode == Mode::Apply {
            crate::failpoint!("after-firewall");
        }
        let keys: Vec<SupportKey> = g.keys.iter().map(SupportKey::from).collect();
        let expiry = match g.expires_at {
            Some(t) => {
                let at = std::time::UNIX_EPOCH + Duration::from_secs(t);
                let (zone, warning) = keys::ServerZone::load(&self.root);
                if let Some(w) = warning {
                    warnings.push(w);
                }
                // Only a grant with an expiry needs sshd's version (the format of expiry-time).
                let e = keys::expiry_for(at, sshd::version(), &zone);
                if e.is_none() {
                    warnings.push(
                        "this sshd is older than OpenSSH 7.7 and has no expiry-time: only the \
                         firewall's timeout ends the grant on time"
                            .into(),
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

    /// Key first (disabled), then the firewall (closed).
    pub(super) fn disable_and_close(
        &self,
        previous: Option<&Grant>,
        lines: KeyLines,
        mode: Mode,
        warnings: &mut Vec<String>,
    ) -> Result<(keys::WriteOutcome, Vec<LayerChange>)> {
        let outcome = self.disable_key_lines(previous, lines, mode, warnings)?;
        if mode == Mode::Apply {
            crate::failpoint!("after-key");
        }
        // Close every layer that has the tool's objects, whatever --firewall said at grant time.
        let selected = firewall::select(FirewallChoice::Auto, Purpose::Remove, warnings);
        let mut layers = Vec::new();
        for mut b in selected? {
            let recorded = previous.map_or(&[][..], |g| g.recorded_for(&b.name()));
            layers.push(b.close(recorded, mode)?);
        }
        if mode == Mode::Apply {
            crate::failpoint!("after-firewall");
        }
        Ok((outcome, layers))
    }

    /// The support lines of the keys file of `previous` (none: the file sshd reads now) and of
    /// every other file sshd reads, disabled; the outcome is the main file's.
    pub(super) fn disable_key_lines(
        &self,
        previous: Option<&Grant>,
        lines: KeyLines,
        mode: Mode,
        warnings: &mut Vec<String>,
    ) -> Result<keys::WriteOutcome> {
        let (keys_file, granted) = match previous {
            Some(g) => (g.keys_file.clone(), g.keys.clone()),
            None => {
                let facts = sshd::probe(&self.root, &[], "")?;
                (self.keys_file(&facts, warnings)?, Vec::new())
            }
        };
        let outcome = self.disable_keys(&keys_file, &granted, lines, mode)?;
        // The other files sshd reads: a support line there would outlive the revoke.
        for f in self.other_keys_files(&keys_file) {
            match keys::read(&self.root, &f) {
                Ok(Some(_)) => {
                    let other = self.disable_keys(&f, &granted, lines, mode)?;
                    if other.changed {
                        warnings.push(format!(
                            "{} the support lines of {} too, which sshd also reads",
                            if mode.is_dry_run() {
                                "would comment out"
                            } else {
                                "commented out"
                            },
                            f.display()
                        ));
                    }
                }
                Ok(None) => {}
                Err(e) => warnings.push(format!(
                    "cannot check {} for support lines: {e:#}; check it by hand",
                    f.display()
                )),
            }
        }
        Ok(outcome)
    }

    /// Disable `old`'s key lines when `new` does not carry them all in the same keys file (a
    /// re-grant with another key, or sshd now reading another file). `new`'s own lines are
    /// enabled again by its install, which follows.
    pub(super) fn retire(&self, old: &Grant, new: &Grant) -> Result<()> {
        let dropped = old.keys_file != new.keys_file
            || old
                .keys
                .iter()
                .any(|k| !new.keys.iter().any(|n| n.blob == k.blob));
        if dropped {
            // Only the tool's own lines (no blob given): a re-grant leaves the administrator's
            // lines alone, unlike revoke.
            keys::update(
                &self.root,
                &old.keys_file,
                false,
                &mut |content: &[u8]| Ok(keys::disable(content, &[])),
            )?;
        }
        Ok(())
    }

    /// Disable (or remove) the support lines of `keys_file`: those of the grant's keys, of every
    /// built-in profile's key, and every line the tool marked as its own.
    pub(super) fn disable_keys(
        &self,
        keys_file: &Path,
        granted: &[StoredKey],
        lines: KeyLines,
        mode: Mode,
    ) -> Result<keys::WriteOutcome> {
        let mut blobs: Vec<String> = support::profiles()
            .iter()
            .map(|p| p.key.blob.clone())
            .collect();
        blobs.extend(granted.iter().map(|k| k.blob.clone()));
        if let Some(content) = keys::read(&self.root, keys_file)? {
            blobs.extend(keys::tool_lines(&content).into_iter().map(|l| l.blob));
        }
        let blobs = sorted(blobs);
        let refs: Vec<&str> = blobs.iter().map(String::as_str).collect();
        keys::update(
            &self.root,
            keys_file,
            mode.is_dry_run(),
            &mut |content: &[u8]| {
                Ok(match lines {
                    KeyLines::Remove => keys::remove(content, &refs),
                    KeyLines::Disable => keys::disable(content, &refs),
                })
            },
        )
    }
}
