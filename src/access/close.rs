//! Closing everything the tool may have opened: revoke, an expired grant, and the finishing of an
//! interrupted revoke. Each half that can be closed is closed whatever happened to the other. A
//! keys file that cannot be written (immutable, read-only file system) still leaves the firewall
//! closed — a key behind a closed door lets no one in, the safe side of the invariant — and a
//! firewall layer that refuses does not keep the others open. Every failure is kept with the
//! command that finishes the job once its cause is fixed.
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use serde::Serialize;

use super::{Ctx, KeyLines};
use crate::firewall::{FirewallChoice, LayerChange, Mode, Purpose};
use crate::report::Report;
use crate::state::{Grant, Salvaged};
use crate::{keys, support};

/// Where to look for the support's key lines and the tool's firewall objects.
#[derive(Debug, Default, Clone)]
pub(super) struct Scope {
    /// The keys files grants recorded; none: the one sshd reads for root, found now.
    pub files: Vec<PathBuf>,
    /// The keys grants recorded (the built-in ones are always looked for).
    pub blobs: Vec<String>,
    /// What each firewall layer recorded of the tool's, by layer name.
    pub recorded: BTreeMap<String, Vec<String>>,
}

impl Scope {
    pub fn of(ends: &[&Grant]) -> Scope {
        let mut s = Scope::default();
        for g in ends {
            s.add(
                std::slice::from_ref(&g.keys_file),
                g.keys.iter().map(|k| k.blob.as_str()),
            );
            for (layer, objects) in &g.recorded {
                let mine = s.recorded.entry(layer.clone()).or_default();
                for o in objects {
                    if !mine.contains(o) {
                        mine.push(o.clone());
                    }
                }
            }
        }
        s
    }

    /// And what a corrupt state file still names.
    pub fn with_salvaged(mut self, s: Option<&Salvaged>) -> Scope {
        if let Some(s) = s {
            self.add(&s.keys_files, s.blobs.iter().map(String::as_str));
        }
        self
    }

    fn add<'a>(&mut self, files: &[PathBuf], blobs: impl Iterator<Item = &'a str>) {
        for f in files {
            if !self.files.contains(f) {
                self.files.push(f.clone());
            }
        }
        for b in blobs {
            if !self.blobs.iter().any(|x| x == b) {
                self.blobs.push(b.to_string());
            }
        }
    }
}

/// One thing left open, and how to finish.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Failure {
    pub what: String,
    pub finish: String,
}

#[derive(Debug, Default)]
pub(super) struct Closing {
    /// The keys files edited (or checked), the main one first.
    pub keys: Vec<keys::WriteOutcome>,
    pub layers: Vec<LayerChange>,
    pub failures: Vec<Failure>,
}

impl Closing {
    pub fn changed(&self) -> bool {
        self.keys.iter().any(|k| k.changed) || self.layers.iter().any(|l| l.changed)
    }

    /// For the callers that cannot go on with anything left open: one error naming every
    /// failure and how to finish.
    pub fn into_result(self) -> Result<Closing> {
        if self.failures.is_empty() {
            return Ok(self);
        }
        Err(anyhow!(
            "{}",
            self.failures
                .iter()
                .map(|f| format!("{}; {}", f.what, f.finish))
                .collect::<Vec<_>>()
                .join("; and ")
        ))
    }
}

/// sshd's AuthorizedKeysFile when sshd_config sets none, the tool's own file first.
const SSHD_DEFAULT_KEYS_FILES: [&str; 2] = [".ssh/authorized_keys2", ".ssh/authorized_keys"];

const AGAIN: &str = "fix that, then run `ovh-access revoke` again to finish";

impl Ctx {
    /// Comment out (or remove) every support line in the scope's keys files and in the other
    /// files sshd reads, then close every firewall layer that holds the tool's objects.
    pub(super) fn close_everything(
        &self,
        scope: &Scope,
        lines: KeyLines,
        mode: Mode,
        report: &mut Report,
    ) -> Closing {
        let mut c = Closing::default();
        self.close_keys(scope, lines, mode, report, &mut c);
        if mode == Mode::Apply {
            crate::failpoint!("after-key");
        }
        self.close_firewall(scope, mode, report, &mut c);
        if mode == Mode::Apply {
            crate::failpoint!("after-firewall");
        }
        c
    }

    /// The keys half: every file, whatever happened to the one before.
    pub(super) fn close_keys(
        &self,
        scope: &Scope,
        lines: KeyLines,
        mode: Mode,
        report: &mut Report,
        c: &mut Closing,
    ) {
        let mut blobs: Vec<String> = support::profiles()
            .into_iter()
            .map(|p| p.key.blob)
            .collect();
        blobs.extend(scope.blobs.iter().cloned());
        blobs.sort();
        blobs.dedup();
        let refs: Vec<&str> = blobs.iter().map(String::as_str).collect();
        let mut files = scope.files.clone();
        if files.is_empty() {
            match self.keys_files_now(report) {
                Ok(found) => files = found,
                Err(e) => c.failures.push(Failure {
                    what: format!("cannot tell which keys file sshd reads: {e:#}"),
                    finish: AGAIN.into(),
                }),
            }
        }
        // Revoke reads sshd_config only here, and a revoke never gives up for an unreadable one.
        let global = crate::sshd::global_effective(&self.root);
        if let (Some(main), Ok(global)) = (files.first().cloned(), &global) {
            for f in self.other_keys_files(&main, global) {
                if !files.contains(&f) {
                    files.push(f);
                }
            }
        }
        for (i, f) in files.iter().enumerate() {
            match self.disable_keys(f, &refs, lines, mode) {
                Ok(o) => {
                    if i > 0 && o.changed {
                        report.warn(format!(
                            "{} the support lines of {} too, which sshd also reads",
                            if mode.is_dry_run() {
                                "would comment out"
                            } else {
                                "commented out"
                            },
                            f.display()
                        ));
                    }
                    c.keys.push(o);
                }
                Err(e) => c.failures.push(Failure {
                    what: format!("the support lines of {} stay: {e:#}", f.display()),
                    finish: AGAIN.into(),
                }),
            }
        }
    }

    /// The firewall half: every layer that holds the tool's objects, whatever `--firewall` said
    /// at grant time, whatever happened to the layer before.
    fn close_firewall(&self, scope: &Scope, mode: Mode, report: &mut Report, c: &mut Closing) {
        let mut warnings = Vec::new();
        let selected = self.select(FirewallChoice::Auto, Purpose::Remove, &mut warnings);
        for w in warnings {
            report.warn(w);
        }
        match selected {
            Ok(mut backends) => {
                for b in backends.iter_mut() {
                    let name = b.name();
                    let recorded = scope.recorded.get(&name).map_or(&[][..], Vec::as_slice);
                    match b.close(recorded, mode) {
                        Ok(l) => c.layers.push(l),
                        Err(e) => c.failures.push(Failure {
                            what: format!("the firewall layer {name} stays open: {e:#}"),
                            finish: AGAIN.into(),
                        }),
                    }
                }
                self.keep_until_exit(backends);
            }
            Err(e) => c.failures.push(Failure {
                what: format!("cannot reach the firewall: {e:#}"),
                finish: AGAIN.into(),
            }),
        }
    }

    /// With no grant recorded: the keys file sshd reads for root. When sshd_config cannot be
    /// read, sshd's default list (`.ssh/authorized_keys .ssh/authorized_keys2`): a revoke looks
    /// wherever a support line may be, it does not give up.
    fn keys_files_now(&self, report: &mut Report) -> Result<Vec<PathBuf>> {
        match crate::sshd::probe(&self.root, &[], "") {
            Ok(facts) => Ok(vec![self.keys_file(&facts, &mut report.warnings)?]),
            Err(e) => {
                report.warn(format!(
                    "{e:#}; looking for support lines in sshd's default keys files instead"
                ));
                let home = keys::root_home(&self.root)?;
                Ok(SSHD_DEFAULT_KEYS_FILES
                    .iter()
                    .map(|f| home.join(f))
                    .collect())
            }
        }
    }
}

/// The revoke's report: what was closed, what stays open and how to finish it (exit 1 then).
pub(super) fn describe_revoke(
    c: &Closing,
    previous: Option<&Grant>,
    lines: KeyLines,
    ended: &[crate::sessions::Ended],
    report: &mut Report,
) {
    let dry_run = report.dry_run;
    let verb = if dry_run { "Would revoke" } else { "Revoked" };
    let head = match previous {
        _ if !c.failures.is_empty() => {
            "Revoke incomplete: what is listed as left open below still is.".to_string()
        }
        Some(g) => format!("{verb} the support access granted to {}.", g.host),
        None if c.changed() => format!(
            "{verb}: no grant was recorded, but support lines or firewall objects were found and \
             removed."
        ),
        None => "Nothing was granted; nothing to revoke.".to_string(),
    };
    report.line(head);
    let action = match lines {
        KeyLines::Remove => "removed",
        KeyLines::Disable => "commented out",
    };
    for k in &c.keys {
        report.line(format!(
            "  keys file: {} ({})",
            k.path.display(),
            if k.changed {
                format!("support lines {action}")
            } else {
                "unchanged".into()
            }
        ));
    }
    for l in &c.layers {
        let state = if l.changed {
            "closed"
        } else {
            "nothing of ours found"
        };
        report.line(format!("  firewall:  {}: {state}", l.layer));
        for n in &l.notes {
            report.line(format!("             {n}"));
        }
    }
    if !ended.is_empty() {
        report.line(format!(
            "  sessions:  ended {} process(es) the support started",
            ended.len()
        ));
        for e in ended {
            report.line(format!("    {}", e.describe()));
        }
    }
    for f in &c.failures {
        report.line(format!("  left open: {}", f.what));
        report.line(format!("             {}", f.finish));
        report.warn(format!("{}; {}", f.what, f.finish));
    }
    if !c.failures.is_empty() {
        report.exit = crate::error::EXIT_FAILURE;
    }
    if dry_run {
        for l in c.layers.iter().filter(|l| l.changed) {
            report.line(format!("# {}", l.layer));
            report.line(l.script.trim_end().to_string());
        }
        for k in &c.keys {
            report.line(keys::diff(&k.before, &k.after));
        }
    }
    report.set("keys_file", c.keys.first().map(|k| &k.path));
    report.set("keys_file_changed", c.keys.iter().any(|k| k.changed));
    report.set("firewall", &c.layers);
    match c.keys.first() {
        Some(k) => crate::report::set_changes(report, k, &c.layers),
        None => report.set("firewall_script", crate::report::firewall_text(&c.layers)),
    }
    report.set("left_open", &c.failures);
    report.set("sessions_ended", ended);
    report.set("previous", previous);
}
