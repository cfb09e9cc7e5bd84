//! grant / revoke / status / refresh / restore as journaled, paired transactions.
//!
//! Every transaction is "converge to a desired state" in the safe order — grant opens the firewall
//! before it enables the key, revoke disables the key before it closes the firewall — with the
//! intent journaled first (`state`), so that a crash at any point is finished or undone by the
//! next run. Both steps are idempotent, which is what makes converging again a correct recovery.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::ValueEnum;

use crate::cli::{Cli, Command, FirewallChoice, GrantArgs, RefreshArgs, RevokeArgs, TargetArgs};
use crate::error::{EXIT_FAILURE, EXIT_OK};
use crate::firewall::{self, LayerChange, OpenRequest};
use crate::report::{fmt_left, fmt_utc, join, Report};
use crate::root::Root;
use crate::state::{self, Grant, Intent, Lock, State, StoredKey};
use crate::support::{self, SupportKey};
use crate::{bad_input, dns, keys, sessions, sshd};

/// How long a second run waits for the lock before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// The hard limit on one whole DNS lookup (A and AAAA): dns.rs's own default.
pub const DNS_TIMEOUT: Duration = dns::DEFAULT_TIMEOUT;
/// The user the support logs in as.
const USER: &str = "root";

pub fn run(cli: Cli) -> Result<Report> {
    let root = match &cli.root {
        Some(dir) => Root::new(dir).map_err(|e| bad_input!("{e:#}"))?,
        None => Root::system(),
    };
    let ctx = Ctx { root };
    match cli.command {
        Command::Grant(a) => {
            ctx.require_privileges("grant", a.dry_run)?;
            ctx.grant(&a)
        }
        Command::Revoke(a) => {
            ctx.require_privileges("revoke", a.dry_run)?;
            ctx.revoke(&a)
        }
        Command::Status => ctx.status(),
        Command::Doctor(a) => crate::doctor::run(&ctx.root, &a.target),
        Command::Refresh(a) => {
            ctx.require_privileges("refresh", a.dry_run)?;
            ctx.refresh(&a)
        }
        Command::Restore => {
            ctx.require_privileges("restore", false)?;
            ctx.restore()
        }
        Command::Profiles => Ok(profiles_report()),
    }
}

struct Ctx {
    root: Root,
}

/// What the safe order needs to know to bring the system to a grant.
struct Applied {
    layers: Vec<LayerChange>,
    keys: keys::WriteOutcome,
}

impl Ctx {
    /// A changing command needs root: it edits root's keys file and the firewall. Refused up
    /// front (rather than failing half-way) unless it only prints (`--dry-run`) or works on a
    /// sandbox (`--root`, where the files are the operator's own).
    fn require_privileges(&self, cmd: &str, dry_run: bool) -> Result<()> {
        if dry_run || !self.root.is_system() || rustix::process::geteuid().is_root() {
            return Ok(());
        }
        // No --dry-run suggestion: even a dry run reads root's keys file and the firewall
        // (netlink dumps need CAP_NET_ADMIN), so without root it fails further on.
        Err(bad_input!(
            "`ovh-access {cmd}` changes root's keys file and the firewall and must run as root; \
             run it with sudo"
        ))
    }

    /// Every firewall layer `g` was applied to still holds all of the tool's objects (read
    /// only: a dry-run close finds them, and names nothing missing), and holds them as the grant
    /// wrote them (the same exact checks as `status`).
    fn layers_intact(&self, g: &Grant) -> bool {
        let mut probe = Report::default();
        let Ok(backends) = firewall::select(FirewallChoice::Auto, false, &mut probe) else {
            return false;
        };
        let mut whole = Vec::new();
        for mut b in backends {
            let name = b.name();
            if let Ok(c) = b.close(true) {
                let exact = match name.as_str() {
                    "nftables" => {
                        let mut drift = Vec::new();
                        nft_drift(g, &mut drift);
                        drift.is_empty()
                    }
                    _ => iptables_exact(b.as_mut(), g).unwrap_or(false),
                };
                if c.changed && c.notes.is_empty() && exact {
                    whole.push(name);
                }
            }
        }
        g.layers.iter().all(|l| whole.contains(l))
    }

    /// The audit trail (syslog authpriv). A sandbox run (`--root`) says so, so that its lines
    /// are never mistaken for a change of the real system.
    fn audit(&self, action: &str, details: &str) {
        if self.root.is_system() {
            crate::audit::log(action, details);
        } else {
            let root = self.root.dir().display();
            crate::audit::log(action, &format!("{details} (sandbox --root {root})"));
        }
    }

    fn lock(&self) -> Result<Lock> {
        Lock::acquire(&self.root, LOCK_WAIT)
    }

    fn resolve_target(&self, t: &TargetArgs) -> Result<support::Target> {
        let root = self.root.clone();
        let resolver = t.dns.resolver;
        let lookup = move |host: &str| dns::resolve(&root, host, resolver, DNS_TIMEOUT);
        support::resolve_target(&self.root, t, &keys::parse_key_file, &lookup)
    }

    /// The keys file sshd reads for root, from AuthorizedKeysFile (first support address's
    /// effective settings) and root's home in the passwd file.
    fn keys_file(&self, facts: &sshd::SshdFacts, report: &mut Report) -> Result<PathBuf> {
        let home = keys::root_home(&self.root)?;
        let eff = match facts.per_address.first() {
            Some((_, e)) => e.clone(),
            None => global_effective(&self.root)?,
        };
        let (path, note) = sshd::keys_file(&eff, USER, 0, &home);
        if let Some(n) = note {
            report.warn(n);
        }
        // Match blocks can give another AuthorizedKeysFile to another support address: the key
        // would then work from some addresses only.
        for (addr, e) in facts.per_address.iter().skip(1) {
            let (p, _) = sshd::keys_file(e, USER, 0, &home);
            if p != path {
                report.warn(format!(
                    "sshd reads {} for connections from {addr} but {} for the others (a Match \
                     block sets AuthorizedKeysFile); the key is installed only in the latter",
                    p.display(),
                    path.display()
                ));
            }
        }
        Ok(path)
    }

    // ---------------------------------------------------------------- grant

    fn grant(&self, a: &GrantArgs) -> Result<Report> {
        let mut report = Report::new("grant");
        report.dry_run = a.dry_run;
        // The input (key file, fingerprint, DNS, sshd_config) is checked before the lock: a typo
        // is reported at once, neither waiting for another run nor leaving a lock file behind.
        let target = self.resolve_target(&a.target)?;
        for w in &target.warnings {
            report.warn(w.clone());
        }
        let facts = sshd::probe(&self.root, &target.addresses, &target.host)?;
        for w in &facts.warnings {
            report.warn(w.clone());
        }
        // Known before anything opens: would sshd accept the key at all? A warning rather than a
        // refusal, so that the operator can fix sshd while the grant stands (doctor names the
        // line to change).
        let (_, _, _, groups) = sshd::user_info(&self.root, USER);
        for (addr, e) in &facts.per_address {
            for k in &target.keys {
                for b in sshd::blockers(&k.algorithm, e, USER, &groups, *addr, &addr.to_string()) {
                    report.warn(format!("sshd will refuse the support key from {addr}: {b}"));
                }
            }
        }
        let ports = if a.ports.is_empty() {
            facts.ports.clone()
        } else {
            dedup(a.ports.clone())
        };
        let keys_file = self.keys_file(&facts, &mut report)?;
        let now = state::now();
        let desired = Grant {
            host: target.host.clone(),
            profile: target.profile.map(str::to_string),
            addresses: target.addresses.clone(),
            address_source: source_name(target.source),
            ports,
            keys: target.keys.iter().map(StoredKey::from).collect(),
            keys_file,
            layers: vec![],
            firewall: choice_name(a.firewall),
            granted_at: now,
            expires_at: a.duration.map(|d| now + d.as_secs()),
            resolver: a.target.dns.resolver,
            allow_private: a.target.dns.allow_private,
            trust_dns: a.target.dns.trust_dns,
        };
        let opts = ApplyOpts {
            firewall: a.firewall,
            replace_foreign: a.replace_foreign,
            sshd_version: facts.version,
        };

        let elsewhere = self.foreign_elsewhere(&desired.keys_file, &desired.keys, &mut report);
        if let (Some((file, lines)), false) = (elsewhere.first(), a.replace_foreign) {
            return Err(bad_input!(
                "line {} of {} carries the support key without a from= restriction, and sshd \
                 reads that file too (AuthorizedKeysFile), so it would let the support in from \
                 anywhere; comment it out or rerun with --replace-foreign",
                join(lines),
                file.display()
            ));
        }
        if !a.dry_run {
            // A read-only rehearsal before the lock and the journal: what the firewall or the
            // keys file refuses (nf_tables unusable without CAP_NET_ADMIN, a set name taken by
            // the user, a foreign line carrying the support key) fails here, with nothing
            // written and no intent left to recover.
            self.open_and_install(&desired, &opts, true, &mut Report::default())?;
        }
        let _lock = if a.dry_run { None } else { Some(self.lock()?) };
        let mut st = State::load(&self.root)?;
        if !a.dry_run {
            self.recover(&mut st, &mut report)?;
        }
        // The same grant again (a configuration-management run repeated) keeps its start time;
        // the backends leave what already is as asked alone, so `changed` means a repair.
        let same = st.granted.clone().filter(|p| same_grant(p, &desired));
        let mut desired = desired;
        if let Some(p) = &same {
            desired.granted_at = p.granted_at;
        }

        if a.dry_run {
            let applied = self.open_and_install(&desired, &opts, true, &mut report)?;
            report.changed = applied.keys.changed || applied.layers.iter().any(|l| l.changed);
            self.describe_grant(&desired, &applied, &target, &mut report);
            report.line("");
            report.line("Dry run: nothing was changed. The firewall change would be:");
            for l in &applied.layers {
                report.line(format!("# {}", l.layer));
                report.line(l.script.trim_end().to_string());
            }
            report.line(format!(
                "The keys file {} would change:",
                desired.keys_file.display()
            ));
            report.line(keys::diff(&applied.keys.before, &applied.keys.after));
            return Ok(report);
        }

        st.intent = Some(Intent::begin(
            "grant",
            Some(desired.clone()),
            st.granted.clone(),
        ));
        st.save(&self.root)?;
        crate::failpoint!("after-intent");

        // --replace-foreign: the unrestricted support lines of the other keys files go first
        // (taking access away is the safe side, and is not undone by a rollback).
        for (file, lines) in &elsewhere {
            let blobs: Vec<&str> = desired.keys.iter().map(|k| k.blob.as_str()).collect();
            keys::update(&self.root, file, false, &mut |c: &[u8]| {
                Ok(keys::disable(c, &blobs))
            })?;
            report.warn(format!(
                "commented out line {} of {}: it carried the support key without from= \
                 (--replace-foreign)",
                join(lines),
                file.display()
            ));
        }
        // The previous grant's keys that this one drops must not stay active behind a firewall
        // that no longer opens for them: retired first (taking access away is the safe side).
        let applied = match st
            .granted
            .as_ref()
            .map_or(Ok(()), |prev| self.retire(prev, &desired))
            .and_then(|()| self.open_and_install(&desired, &opts, false, &mut report))
        {
            Ok(x) => x,
            Err(e) => {
                // Undo: back to what was granted before (or nothing). The intent stays in the
                // journal when the undo fails too, so that the next run retries it.
                return Err(match self.settle(&mut st, &mut report) {
                    Ok(_) => e.context("grant failed; what was granted before is in place again"),
                    Err(re) => e.context(format!(
                        "grant failed and rolling it back failed too ({re:#}); run `ovh-access restore`"
                    )),
                });
            }
        };
        let mut committed = desired.clone();
        // Only the layers that hold the tool's objects now: a layer with nothing to open (an
        // ip6tables layer for IPv4-only addresses, a table with no input chain) is not part of
        // the grant, and status must not call its emptiness a drift.
        committed.layers = applied
            .layers
            .iter()
            .filter(|l| !l.chains.is_empty())
            .map(|l| l.layer.clone())
            .collect();
        crate::failpoint!("before-commit");
        st.granted = Some(committed.clone());
        st.intent = None;
        st.save(&self.root)?;

        let firewall_changed = applied.layers.iter().any(|l| l.changed);
        report.changed = applied.keys.changed || firewall_changed;
        self.describe_grant(&committed, &applied, &target, &mut report);
        self.audit(
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

    fn describe_grant(
        &self,
        g: &Grant,
        applied: &Applied,
        target: &support::Target,
        report: &mut Report,
    ) {
        let until = match g.expires_at {
            Some(t) => format!(" until {}", fmt_utc(t)),
            None => " with no expiry (run `ovh-access revoke` when the support is done)".into(),
        };
        let profile = g
            .profile
            .as_deref()
            .map(|p| format!(" (profile {p})"))
            .unwrap_or_default();
        let verb = if report.dry_run {
            "Would grant"
        } else {
            "Granted"
        };
        report.line(format!(
            "{verb} SSH access to root for {}{profile}{until}.",
            g.host
        ));
        report.line(format!(
            "  addresses: {} ({})",
            join(&g.addresses),
            g.address_source
        ));
        report.line(format!("  ports:     {}", join(&g.ports)));
        for k in &g.keys {
            report.line(format!(
                "  key:       {} {} {}",
                k.fingerprint, k.algorithm, k.comment
            ));
        }
        report.line(format!("  keys file: {}", g.keys_file.display()));
        for l in &applied.layers {
            let chains = if l.chains.is_empty() {
                "-".to_string()
            } else {
                l.chains.join(", ")
            };
            report.line(format!("  firewall:  {}: {chains}", l.layer));
            for n in &l.notes {
                report.line(format!("             {n}"));
            }
        }
        if applied.layers.is_empty() {
            report.line("  firewall:  not changed (--firewall none, or no firewall layer found)");
        }
        for p in g.ports.iter().filter(|p| **p != 22) {
            report.line(format!("Tell the support team your SSH port: {p}"));
        }
        report.set("host", &g.host);
        report.set("profile", &g.profile);
        report.set("key_is_builtin", target.key_is_builtin);
        report.set("address_source", target.source);
        report.set("addresses", &g.addresses);
        report.set("ports", &g.ports);
        report.set("keys", &g.keys);
        report.set("keys_file", &g.keys_file);
        report.set("keys_file_changed", applied.keys.changed);
        report.set("firewall", &applied.layers);
        crate::report::set_changes(report, &applied.keys, &applied.layers);
        report.set("expires_at", g.expires_at);
        report.set("expires_at_utc", g.expires_at.map(fmt_utc));
    }

    /// Firewall first, then the key. When the key step fails, the firewall change is undone by
    /// the caller (it knows what was granted before).
    fn open_and_install(
        &self,
        g: &Grant,
        opts: &ApplyOpts,
        dry_run: bool,
        report: &mut Report,
    ) -> Result<Applied> {
        // The time left to the grant's instant, to the sub-second: iptables dates --datestop
        // from its own clock read, which then lands on `expires_at` itself (whole seconds
        // would be off by one whenever a second boundary passes between the two reads). A
        // timeout of zero means "none" to nftables, so a grant about to end keeps a second.
        let mut req = grant_request(g, Duration::ZERO);
        if let Some(t) = req.timeout.as_mut() {
            *t = (*t).max(Duration::from_secs(1));
        }
        let mut backends = firewall::select(opts.firewall, true, report)?;
        let mut layers = Vec::new();
        for b in backends.iter_mut() {
            layers.push(b.open(&req, dry_run)?);
        }
        if !dry_run {
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
                let e = keys::expiry_for(at, opts.sshd_version, &zone);
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
            dry_run,
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
        if !dry_run {
            crate::failpoint!("after-key");
        }
        Ok(Applied {
            layers,
            keys: outcome,
        })
    }

    /// Key first (disabled), then the firewall (closed).
    fn disable_and_close(
        &self,
        previous: Option<&Grant>,
        remove: bool,
        dry_run: bool,
        report: &mut Report,
    ) -> Result<(keys::WriteOutcome, Vec<LayerChange>)> {
        let (keys_file, granted) = match previous {
            Some(g) => (g.keys_file.clone(), g.keys.clone()),
            None => {
                let facts = sshd::probe(&self.root, &[], "")?;
                (self.keys_file(&facts, report)?, Vec::new())
            }
        };
        let outcome = self.disable_keys(&keys_file, &granted, remove, dry_run)?;
        // The other files sshd reads: a support line there would outlive the revoke.
        for f in self.other_keys_files(&keys_file) {
            match keys::read(&self.root, &f) {
                Ok(Some(_)) => {
                    let other = self.disable_keys(&f, &granted, remove, dry_run)?;
                    if other.changed {
                        report.warn(format!(
                            "{} the support lines of {} too, which sshd also reads",
                            if dry_run {
                                "would comment out"
                            } else {
                                "commented out"
                            },
                            f.display()
                        ));
                    }
                }
                Ok(None) => {}
                Err(e) => report.warn(format!(
                    "cannot check {} for support lines: {e:#}; check it by hand",
                    f.display()
                )),
            }
        }
        if !dry_run {
            crate::failpoint!("after-key");
        }
        // Close every layer that has the tool's objects, whatever --firewall said at grant time.
        let mut layers = Vec::new();
        for mut b in firewall::select(FirewallChoice::Auto, false, report)? {
            layers.push(b.close(dry_run)?);
        }
        if !dry_run {
            crate::failpoint!("after-firewall");
        }
        Ok((outcome, layers))
    }

    /// Settle the journal's intent: a revoke is finished (it only ever takes access away, so
    /// finishing it is always safe), anything else is rolled back to the state it started from.
    /// Converging again is a correct recovery because both steps are idempotent. On success the
    /// state records the outcome and the intent is cleared; on failure the intent stays for the
    /// next run. Returns "finished" or "rolled back".
    fn settle(&self, st: &mut State, report: &mut Report) -> Result<&'static str> {
        let Some(intent) = st.intent.clone() else {
            return Ok("settled");
        };
        let (goal, what) = if intent.op == "revoke" {
            (None, "finished")
        } else {
            (intent.previous.clone(), "rolled back")
        };
        match &goal {
            Some(g) => {
                let opts = ApplyOpts::recorded(g);
                // What the interrupted grant enabled beyond `g` (another key, another keys
                // file) is disabled before `g` is put back.
                if let Some(t) = &intent.target {
                    self.retire(t, g)?;
                }
                self.open_and_install(g, &opts, false, report)?;
            }
            None => {
                // Both ends of the interrupted transaction: their keys, keys files and sessions.
                let ends: Vec<&Grant> = [intent.target.as_ref(), intent.previous.as_ref()]
                    .into_iter()
                    .flatten()
                    .collect();
                // The first end's keys file is disabled by `disable_and_close` itself.
                for g in ends.iter().skip(1) {
                    self.disable_keys(&g.keys_file, &g.keys, intent.remove, false)?;
                }
                self.disable_and_close(ends.first().copied(), intent.remove, false, report)?;
                if !intent.keep_sessions {
                    for g in &ends {
                        sessions::end(&g.addresses, &g.ports, report);
                    }
                }
            }
        }
        st.granted = goal;
        st.intent = None;
        st.save(&self.root)?;
        Ok(what)
    }

    /// Disable `old`'s key lines when `new` does not carry them all in the same keys file (a
    /// re-grant with another key, or sshd now reading another file). `new`'s own lines are
    /// enabled again by its install, which follows.
    fn retire(&self, old: &Grant, new: &Grant) -> Result<()> {
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
    fn disable_keys(
        &self,
        keys_file: &Path,
        granted: &[StoredKey],
        remove: bool,
        dry_run: bool,
    ) -> Result<keys::WriteOutcome> {
        let mut blobs: Vec<String> = support::profiles()
            .iter()
            .map(|p| p.key.blob.clone())
            .collect();
        blobs.extend(granted.iter().map(|k| k.blob.clone()));
        if let Some(content) = keys::read(&self.root, keys_file)? {
            blobs.extend(keys::tool_lines(&content).into_iter().map(|l| l.blob));
        }
        blobs.sort();
        blobs.dedup();
        let refs: Vec<&str> = blobs.iter().map(String::as_str).collect();
        keys::update(&self.root, keys_file, dry_run, &mut |content: &[u8]| {
            Ok(if remove {
                keys::remove(content, &refs)
            } else {
                keys::disable(content, &refs)
            })
        })
    }

    /// The other files sshd reads for root besides `main`: AuthorizedKeysFile may list several,
    /// and its default lists authorized_keys before authorized_keys2. sshd takes the first line
    /// that passes in any of them, so a support line there lets the support in as surely as one
    /// in the file the tool writes. (The settings outside Match blocks; a Match block that
    /// lists other files for a support address is reported by `grant` as a warning.)
    fn other_keys_files(&self, main: &Path) -> Vec<PathBuf> {
        let (Ok(home), Ok(eff)) = (keys::root_home(&self.root), global_effective(&self.root))
        else {
            return Vec::new();
        };
        sshd::keys_files(&eff, USER, 0, &home)
            .into_iter()
            .filter(|p| p != main)
            .collect()
    }

    /// Active lines without `from=` carrying one of `keys`, in the other files sshd reads:
    /// (file, line numbers). A file that cannot be read safely is a warning, not a refusal: the
    /// tool never writes there without `--replace-foreign`.
    fn foreign_elsewhere(
        &self,
        main: &Path,
        keys: &[StoredKey],
        report: &mut Report,
    ) -> Vec<(PathBuf, Vec<usize>)> {
        let blobs: Vec<&str> = keys.iter().map(|k| k.blob.as_str()).collect();
        let mut out = Vec::new();
        for f in self.other_keys_files(main) {
            match keys::read(&self.root, &f) {
                Ok(Some(content)) => {
                    let lines: Vec<usize> = keys::support_lines(&content, &blobs)
                        .into_iter()
                        .filter(|l| l.active && l.unrestricted)
                        .map(|l| l.line)
                        .collect();
                    if !lines.is_empty() {
                        out.push((f, lines));
                    }
                }
                Ok(None) => {}
                Err(e) => report.warn(format!(
                    "cannot check {} for support lines: {e:#}",
                    f.display()
                )),
            }
        }
        out
    }

    /// A transaction interrupted by a crash is settled before anything else, and the command
    /// says how.
    fn recover(&self, st: &mut State, report: &mut Report) -> Result<()> {
        let Some(intent) = st.intent.clone() else {
            return Ok(());
        };
        let what = self.settle(st, report)?;
        report.warn(format!(
            "an interrupted {} (pid {}, started {}) was {what}",
            intent.op,
            intent.pid,
            fmt_utc(intent.started_at)
        ));
        self.audit("recover", &format!("interrupted {} {what}", intent.op));
        report.set(
            "recovered",
            serde_json::json!({"op": intent.op, "pid": intent.pid, "outcome": what}),
        );
        Ok(())
    }

    // ---------------------------------------------------------------- revoke

    fn revoke(&self, a: &RevokeArgs) -> Result<Report> {
        let mut report = Report::new("revoke");
        report.dry_run = a.dry_run;
        let _lock = if a.dry_run { None } else { Some(self.lock()?) };
        let mut st = State::load(&self.root)?;
        if !a.dry_run {
            self.recover(&mut st, &mut report)?;
        }
        let previous = st.granted.clone();
        if !a.dry_run {
            st.intent = Some(Intent {
                keep_sessions: a.keep_sessions,
                remove: a.remove,
                ..Intent::begin("revoke", None, previous.clone())
            });
            st.save(&self.root)?;
            crate::failpoint!("after-intent");
        }
        let (keys_out, layers) =
            self.disable_and_close(previous.as_ref(), a.remove, a.dry_run, &mut report)?;
        let mut ended = Vec::new();
        if !a.dry_run && !a.keep_sessions {
            if let Some(g) = &previous {
                ended = sessions::end(&g.addresses, &g.ports, &mut report);
            }
        }
        if !a.dry_run {
            crate::failpoint!("before-commit");
            st.granted = None;
            st.intent = None;
            st.save(&self.root)?;
        }
        report.changed = keys_out.changed || layers.iter().any(|l| l.changed) || !ended.is_empty();
        let verb = if a.dry_run { "Would revoke" } else { "Revoked" };
        match &previous {
            Some(g) => report.line(format!("{verb} the support access granted to {}.", g.host)),
            None if report.changed => {
                report.line(format!("{verb}: no grant was recorded, but support lines or firewall objects were found and removed."))
            }
            None => report.line("Nothing was granted; nothing to revoke."),
        }
        let action = if a.remove { "removed" } else { "commented out" };
        report.line(format!(
            "  keys file: {} ({})",
            keys_out.path.display(),
            if keys_out.changed {
                format!("support lines {action}")
            } else {
                "unchanged".into()
            }
        ));
        for l in &layers {
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
        if !ended.is_empty() {
            report.line(format!(
                "  sessions:  ended {} live support session(s)",
                ended.len()
            ));
        }
        if a.dry_run {
            for l in &layers {
                if l.changed {
                    report.line(format!("# {}", l.layer));
                    report.line(l.script.trim_end().to_string());
                }
            }
            report.line(keys::diff(&keys_out.before, &keys_out.after));
        }
        report.set("keys_file", &keys_out.path);
        report.set("keys_file_changed", keys_out.changed);
        report.set("firewall", &layers);
        crate::report::set_changes(&mut report, &keys_out, &layers);
        report.set("sessions_ended", &ended);
        report.set("previous", &previous);
        if !a.dry_run && report.changed {
            self.audit(
                "revoke",
                &previous
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
                    .unwrap_or_else(|| "no recorded grant".into()),
            );
        }
        Ok(report)
    }

    // ---------------------------------------------------------------- status

    fn status(&self) -> Result<Report> {
        let mut report = Report::new("status");
        let st = State::load(&self.root)?;
        let now = state::now();
        let mut drift: Vec<(String, String)> = Vec::new();
        report.set("intent", &st.intent);
        if let Some(i) = &st.intent {
            // The journal holds the intent of a run in progress too: only a free lock means the
            // run is gone.
            match Lock::holder(&self.root) {
                Some(pid) => drift.push((
                    format!("a {} is in progress (pid {pid})", i.op),
                    "wait for it to finish, then run `ovh-access status` again".into(),
                )),
                None => drift.push((
                    format!("an interrupted {} (pid {}) is in the journal", i.op, i.pid),
                    "ovh-access restore".into(),
                )),
            }
        }
        let Some(g) = st.granted.clone() else {
            report.line("Nothing is granted.");
            // Leftovers of a grant the state file does not know about are drift too.
            let mut probe = Report::default();
            if let Ok((k, layers)) = self.disable_and_close(None, false, true, &mut probe) {
                if k.changed {
                    drift.push((
                        format!("an active support key line is in {}", k.path.display()),
                        "ovh-access revoke".into(),
                    ));
                }
                for l in layers.iter().filter(|l| l.changed) {
                    drift.push((
                        format!("{} still has the tool's objects", l.layer),
                        "ovh-access revoke".into(),
                    ));
                }
            }
            return Ok(finish_status(report, None, drift));
        };
        report.line(format!(
            "Granted to {} since {}.",
            g.host,
            fmt_utc(g.granted_at)
        ));
        match g.expires_at {
            Some(t) if t <= now => {
                report.line(format!(
                    "  expired:   {} (key and firewall closed by sshd and the kernel)",
                    fmt_utc(t)
                ));
                drift.push((
                    "the grant has expired but is still recorded".into(),
                    "ovh-access restore".into(),
                ));
            }
            Some(t) => report.line(format!(
                "  expires:   {} ({} left)",
                fmt_utc(t),
                fmt_left(t - now)
            )),
            None => report.line("  expires:   never (revoke by hand)"),
        }
        report.line(format!(
            "  addresses: {} ({})",
            join(&g.addresses),
            g.address_source
        ));
        report.line(format!("  ports:     {}", join(&g.ports)));
        // Issue 10: which profile, and whether the key is still the one OVH publishes for it.
        if let Some(p) = g.profile.as_deref().and_then(support::profile_by_name) {
            let builtin = g.keys.iter().all(|k| p.is_builtin_key(&k.blob));
            report.line(format!(
                "  profile:   {} ({}; {})",
                p.region,
                p.host,
                if builtin {
                    "the built-in key"
                } else {
                    "a key given with --key-file, not the built-in one"
                }
            ));
            report.set("key_is_builtin", builtin);
        }
        // The key line.
        let blobs: Vec<String> = g.keys.iter().map(|k| k.blob.clone()).collect();
        match keys::read(&self.root, &g.keys_file) {
            Ok(Some(content)) => {
                let lines = keys::tool_lines(&content);
                for k in &g.keys {
                    match lines.iter().find(|l| l.blob == k.blob) {
                        Some(l) if l.active => {
                            report.line(format!(
                                "  key:       {} active in {} line {}",
                                k.fingerprint,
                                g.keys_file.display(),
                                l.line
                            ));
                            let mut from: Vec<IpAddr> = l
                                .addresses
                                .iter()
                                .filter(|a| !is_mapped(a))
                                .copied()
                                .collect();
                            from.sort();
                            let mut want = g.addresses.clone();
                            want.sort();
                            if from != want {
                                drift.push((
                                    format!(
                                        "the key line's from= ({}) differs from the grant ({})",
                                        join(&from),
                                        join(&want)
                                    ),
                                    "ovh-access restore".into(),
                                ));
                            }
                            if let Some(d) = keys::expiry::drift_on_system(
                                &self.root,
                                l.expiry_time.as_deref(),
                                g.expires_at,
                            ) {
                                drift.push((d, "ovh-access restore".into()));
                            }
                        }
                        Some(l) => drift.push((
                            format!(
                                "the key line {} in {} is commented out",
                                l.line,
                                g.keys_file.display()
                            ),
                            "ovh-access restore".into(),
                        )),
                        None => drift.push((
                            format!(
                                "the key {} is missing from {}",
                                k.fingerprint,
                                g.keys_file.display()
                            ),
                            "ovh-access restore".into(),
                        )),
                    }
                }
                let foreign: Vec<_> = keys::support_lines(
                    &content,
                    &blobs.iter().map(String::as_str).collect::<Vec<_>>(),
                )
                .into_iter()
                .filter(|l| l.active && !l.tool && !l.has_from)
                .collect();
                for l in foreign {
                    drift.push((format!("line {} of {} carries the support key without from=: sshd accepts it from anywhere", l.line, g.keys_file.display()), "ovh-access grant --replace-foreign ...".into()));
                }
            }
            Ok(None) => drift.push((
                format!("the keys file {} is missing", g.keys_file.display()),
                "ovh-access restore".into(),
            )),
            Err(e) => drift.push((
                format!("{e:#}"),
                "fix the keys file as the message says".into(),
            )),
        }
        let mut warnings = Report::default();
        for (file, lines) in self.foreign_elsewhere(&g.keys_file, &g.keys, &mut warnings) {
            drift.push((
                format!(
                    "line {} of {} carries the support key without from=, and sshd reads that \
                     file too: it accepts the support from anywhere",
                    join(&lines),
                    file.display()
                ),
                "ovh-access grant --replace-foreign ... (or comment the line out)".into(),
            ));
        }
        for w in warnings.warnings {
            report.warn(w);
        }
        // The firewall layers.
        let mut probe = Report::default();
        let mut present = Vec::new();
        if g.firewall != "none" {
            for mut b in firewall::select(FirewallChoice::Auto, false, &mut probe)? {
                let name = b.name();
                match b.close(true) {
                    Ok(c) if c.changed => {
                        // Present is not enough for iptables: a jump or an ACCEPT deleted by hand
                        // shuts the support out while the chain stays. A dry-run open of the
                        // grant's own request compares rule by rule (nft: `nft_drift`).
                        if name != "nftables" && g.layers.contains(&name) && !g.expired(now) {
                            match iptables_exact(b.as_mut(), &g) {
                                Ok(false) => drift.push((
                                    format!(
                                        "the firewall layer {name} no longer holds the grant's rules as the tool wrote them (a jump or an ACCEPT deleted or moved by hand?)"
                                    ),
                                    "ovh-access restore".into(),
                                )),
                                Ok(_) => {}
                                Err(e) => drift.push((format!("{name}: {e:#}"), "ovh-access doctor".into())),
                            }
                        }
                        present.push(name)
                    }
                    Ok(_) if g.layers.contains(&name) => {
                        // Lost, but a layer left with no chain that filters input (a bare `flush
                        // ruleset`) blocks nobody: the invariant holds and restore has nothing to add.
                        let req = OpenRequest {
                            addresses: g.addresses.clone(),
                            ports: g.ports.clone(),
                            timeout: None,
                        };
                        match b.open(&req, true) {
                            Ok(c) if !c.changed => report.line(format!(
                                "  firewall:  {name} now filters nothing on input; nothing to open"
                            )),
                            _ => drift.push((
                                format!("the firewall layer {name} has lost the tool's rules (flush ruleset? firewall reload?)"),
                                "ovh-access restore".into(),
                            )),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => drift.push((format!("{name}: {e:#}"), "ovh-access doctor".into())),
                }
            }
            if present.iter().any(|l| l == "nftables") {
                nft_drift(&g, &mut drift);
            }
            report.line(format!(
                "  firewall:  {}",
                if present.is_empty() {
                    "-".to_string()
                } else {
                    present.join(", ")
                }
            ));
        }
        // DNS now.
        if g.address_source == "dns" || g.address_source == "dns_within_published" {
            match dns::resolve(&self.root, &g.host, g.resolver, DNS_TIMEOUT) {
                Ok(mut now_addrs) => {
                    now_addrs.sort();
                    let mut want = g.addresses.clone();
                    want.sort();
                    if now_addrs != want {
                        drift.push((
                            format!("{} now resolves to {}", g.host, join(&now_addrs)),
                            "ovh-access refresh".into(),
                        ));
                    }
                }
                Err(e) => report.warn(format!("cannot check DNS now: {e}")),
            }
        }
        // The ports sshd listens on now.
        if let Ok(facts) = sshd::probe(&self.root, &g.addresses, &g.host) {
            let missing: Vec<u16> = facts
                .ports
                .iter()
                .filter(|p| !g.ports.contains(p))
                .copied()
                .collect();
            if !missing.is_empty() {
                drift.push((
                    format!(
                        "sshd now also listens on port(s) {} which the grant does not open",
                        join(&missing)
                    ),
                    "ovh-access grant ... (again)".into(),
                ));
            }
        }
        report.set("present_layers", &present);
        Ok(finish_status(report, Some(g), drift))
    }

    // ---------------------------------------------------------------- refresh / restore

    fn refresh(&self, a: &RefreshArgs) -> Result<Report> {
        let mut report = Report::new("refresh");
        report.dry_run = a.dry_run;
        let _lock = if a.dry_run { None } else { Some(self.lock()?) };
        let mut st = State::load(&self.root)?;
        if !a.dry_run {
            self.recover(&mut st, &mut report)?;
        }
        let Some(g) = st.granted.clone() else {
            report.line("Nothing is granted; nothing to refresh.");
            return Ok(report);
        };
        if g.expired(state::now()) {
            // Re-opening the firewall for a grant sshd already refuses would only widen the door.
            report.line(format!(
                "The grant to {} expired at {}; run `ovh-access restore` to clean it up.",
                g.host,
                fmt_utc(g.expires_at.unwrap_or(0))
            ));
            return Ok(report);
        }
        if g.address_source == "operator" || g.address_source == "published" {
            report.line(format!(
                "The addresses of this grant came from {} and are not re-resolved.",
                g.address_source
            ));
            report.set("addresses", &g.addresses);
            return Ok(report);
        }
        // Asked as grant asked (recorded in the grant); options given now add to that. A failed
        // lookup is an error, never a move to the published list: the timer retries.
        let resolver = a.dns.resolver.or(g.resolver);
        let answer = dns::resolve(&self.root, &g.host, resolver, DNS_TIMEOUT)?;
        let profile = g.profile.as_deref().and_then(support::profile_by_name);
        let (fresh, source, warnings) = support::choose_addresses(
            profile.as_ref().map(|p| p.published.as_slice()),
            Ok(answer),
            a.dns.trust_dns || g.trust_dns,
            false,
        )?;
        for w in warnings {
            report.warn(w);
        }
        let mut fresh = dns::validate(fresh, a.dns.allow_private || g.allow_private, &g.host)?;
        let mut old = g.addresses.clone();
        old.sort();
        fresh.sort();
        report.set("host", &g.host);
        report.set("addresses", &fresh);
        report.set("previous_addresses", &old);
        if fresh == old {
            report.line(format!(
                "{} still resolves to {}; nothing to change.",
                g.host,
                join(&fresh)
            ));
            return Ok(report);
        }
        report.line(format!(
            "{} moved: {} → {}",
            g.host,
            join(&old),
            join(&fresh)
        ));
        if a.dry_run {
            return Ok(report);
        }
        let mut desired = g.clone();
        desired.addresses = fresh.clone();
        desired.address_source = source_name(source);
        let opts = ApplyOpts::recorded(&g);
        st.intent = Some(Intent::begin(
            "refresh",
            Some(desired.clone()),
            Some(g.clone()),
        ));
        st.save(&self.root)?;
        crate::failpoint!("after-intent");
        // Open the new addresses before the key allows them; the sets are replaced, so the
        // old addresses lose the firewall at the same moment.
        if let Err(e) = self.open_and_install(&desired, &opts, false, &mut report) {
            return Err(match self.settle(&mut st, &mut report) {
                Ok(_) => e.context("refresh failed; the previous addresses are kept"),
                Err(re) => e.context(format!(
                    "refresh failed and rolling it back failed too ({re:#}); run `ovh-access restore`"
                )),
            });
        }
        crate::failpoint!("before-commit");
        st.granted = Some(desired);
        st.intent = None;
        st.save(&self.root)?;
        report.changed = true;
        self.audit(
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

    fn restore(&self) -> Result<Report> {
        let mut report = Report::new("restore");
        let _lock = self.lock()?;
        let mut st = State::load(&self.root)?;
        let had_intent = st.intent.is_some();
        self.recover(&mut st, &mut report)?;
        report.changed = had_intent;
        let Some(g) = st.granted.clone() else {
            report.line("Nothing is granted; nothing to restore.");
            return Ok(report);
        };
        if g.expired(state::now()) {
            let (k, layers) = self.disable_and_close(Some(&g), false, false, &mut report)?;
            // sshd and the kernel closed the door at the expiry; a session opened before it
            // would live on.
            sessions::end(&g.addresses, &g.ports, &mut report);
            st.granted = None;
            st.save(&self.root)?;
            report.changed = true;
            report.line(format!(
                "The grant to {} expired at {}: its key line was disabled ({}) and the firewall closed ({}).",
                g.host,
                fmt_utc(g.expires_at.unwrap_or(0)),
                if k.changed { "changed" } else { "already" },
                layers.iter().filter(|l| l.changed).map(|l| l.layer.clone()).collect::<Vec<_>>().join(", ")
            ));
            self.audit(
                "restore",
                &format!("expired grant to {} cleaned up", g.host),
            );
            return Ok(report);
        }
        let opts = ApplyOpts::recorded(&g);
        // An intact grant is rewritten in place by the nft backend: that is no change.
        let intact = self.layers_intact(&g);
        let applied = self.open_and_install(&g, &opts, false, &mut report)?;
        let changed: Vec<String> = applied
            .layers
            .iter()
            .filter(|l| l.changed && !intact)
            .map(|l| l.layer.clone())
            .collect();
        report.changed |= applied.keys.changed || !changed.is_empty();
        if report.changed {
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
            self.audit("restore", &format!("grant to {} re-applied", g.host));
        } else {
            report.line(format!(
                "The grant to {} is intact; nothing to restore.",
                g.host
            ));
        }
        Ok(report)
    }
}

/// The same grant apart from when it was made and the layers it found: a repeated command.
fn same_grant(a: &Grant, b: &Grant) -> bool {
    let mut a = a.clone();
    a.granted_at = b.granted_at;
    a.layers = b.layers.clone();
    a == *b
}

/// sshd's settings outside any Match block, for when no support address is known (a revoke with
/// nothing recorded).
pub(crate) fn global_effective(root: &Root) -> Result<sshd::Effective> {
    let cfg = sshd::Config::load(root)?;
    Ok(sshd::eval::effective(&sshd::eval::global(&cfg)?))
}

/// `ovh-access profiles`: the built-in regions, so an operator can compare with OVH's guide.
fn profiles_report() -> Report {
    let mut report = Report::new("profiles");
    let profiles = support::profiles();
    for p in &profiles {
        report.line(format!("{}  {}", p.region, p.host));
        report.line(format!(
            "    key:       {} {} {}",
            p.key.fingerprint, p.key.algorithm, p.key.comment
        ));
        report.line(format!("    addresses: {}", join(&p.published_addresses())));
    }
    report.set("profiles", &profiles);
    report
}

struct ApplyOpts {
    firewall: FirewallChoice,
    replace_foreign: bool,
    sshd_version: Option<(u32, u32)>,
}

impl ApplyOpts {
    /// How a recorded grant is applied again (rollback, refresh, restore): its own firewall
    /// choice, never --replace-foreign (that is the operator's decision at grant time), and the
    /// sshd installed now.
    fn recorded(g: &Grant) -> ApplyOpts {
        ApplyOpts {
            firewall: parse_choice(&g.firewall),
            replace_foreign: false,
            sshd_version: sshd::version(),
        }
    }
}

/// The tool's nftables objects against the grant: every hooked chain still jumps to the tool's
/// chain, and each set holds exactly the grant's addresses of its family (an element deleted by
/// hand, or a set flushed, shuts the support out while the key stays active).
fn nft_drift(g: &Grant, drift: &mut Vec<(String, String)>) {
    let state = match firewall::nft::tool_state() {
        Ok(s) => s,
        Err(e) => {
            drift.push((format!("nftables: {e:#}"), "ovh-access doctor".into()));
            return;
        }
    };
    let restore = || "ovh-access restore".to_string();
    for t in state
        .tables
        .iter()
        .filter(|t| !t.chains.is_empty() || !t.sets.is_empty())
    {
        for h in &t.hooks {
            // Below the head, a rule the user inserted since can drop the support first.
            let what = match (h.jump_present, h.jump_at_head) {
                (false, _) => "no longer jumps to the tool's chain",
                (true, false) => "jumps to the tool's chain only after other rules, which may drop the support first",
                (true, true) => continue,
            };
            drift.push((
                format!("nftables: chain {} {} {} {what}", t.family, t.name, h.chain),
                restore(),
            ));
        }
        for (chain, have) in t.chains.iter().zip(&t.chain_rules) {
            let want = t.rules_wanted(chain, &g.ports);
            if *have != want {
                drift.push((
                    format!(
                        "nftables: chain {} {} {chain} holds [{}], the grant [{}]",
                        t.family,
                        t.name,
                        have.join("; "),
                        want.join("; ")
                    ),
                    restore(),
                ));
            }
        }
        for set in &t.sets {
            let v6 = set.name.ends_with("v6");
            let mut have: Vec<IpAddr> = set.elements.iter().map(|e| e.address).collect();
            have.sort();
            have.dedup();
            let mut want: Vec<IpAddr> = g
                .addresses
                .iter()
                .filter(|a| a.is_ipv6() == v6)
                .copied()
                .collect();
            want.sort();
            if have != want {
                drift.push((
                    format!(
                        "nftables: set {} {} {} holds [{}], the grant [{}]",
                        t.family,
                        t.name,
                        set.name,
                        join(&have),
                        join(&want)
                    ),
                    restore(),
                ));
            }
        }
    }
}

/// The request `grant` made for `g`, as it would make it now: the same addresses and ports, and
/// the time left to the same instant plus `late`, to the sub-second, so that iptables'
/// `--datestop` (dated from the clock when the plan is made) comes out as written at the grant.
fn grant_request(g: &Grant, late: Duration) -> OpenRequest {
    let timeout = g.expires_at.map(|t| {
        (std::time::UNIX_EPOCH + Duration::from_secs(t) + late)
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    });
    OpenRequest {
        addresses: g.addresses.clone(),
        ports: g.ports.clone(),
        timeout,
    }
}

/// An iptables layer holds `g` exactly: a dry-run open of its request changes nothing. A rule
/// dated one second after `expires_at` is still the grant's own: `--datestop` is written to the
/// second from a clock read during the grant, and a grant that crossed a second boundary there
/// (or was re-applied by `restore` with whole seconds) ends one second later.
fn iptables_exact(b: &mut dyn firewall::Backend, g: &Grant) -> Result<bool> {
    if !b.open(&grant_request(g, Duration::ZERO), true)?.changed {
        return Ok(true);
    }
    let one_late = grant_request(g, Duration::from_secs(1));
    Ok(g.expires_at.is_some() && !b.open(&one_late, true)?.changed)
}

fn finish_status(mut report: Report, g: Option<Grant>, drift: Vec<(String, String)>) -> Report {
    if !drift.is_empty() {
        // A table: each drift beside the command that repairs it.
        let width = drift
            .iter()
            .map(|(w, _)| w.chars().count())
            .chain(["DRIFT".len()])
            .max()
            .unwrap_or(0);
        report.line("");
        report.line(format!("{:<width$}  REPAIR", "DRIFT"));
        for (what, fix) in &drift {
            report.line(format!("{what:<width$}  {fix}"));
        }
    }
    if drift.is_empty() {
        report.line("Consistent: key, firewall and DNS agree.");
    }
    report.set("expires_at", g.as_ref().and_then(|g| g.expires_at));
    report.set("granted", &g);
    report.set(
        "drift",
        drift
            .iter()
            .map(|(w, f)| serde_json::json!({"what": w, "repair": f}))
            .collect::<Vec<_>>(),
    );
    report.set("consistent", drift.is_empty());
    report.exit = if drift.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    };
    report
}

fn is_mapped(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

/// The JSON name of an address source (`dns_within_published`), as the state file records it.
fn source_name(s: support::AddressSource) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The name clap parses `--firewall` from, as the state file records it.
fn choice_name(c: FirewallChoice) -> String {
    c.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// A recorded `--firewall`; an unknown name (a state file edited by hand) is `auto`.
fn parse_choice(s: &str) -> FirewallChoice {
    FirewallChoice::from_str(s, false).unwrap_or(FirewallChoice::Auto)
}

fn dedup<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firewall_choice_round_trips_through_the_state_file_name() {
        for (c, name) in [
            (FirewallChoice::Auto, "auto"),
            (FirewallChoice::Nft, "nft"),
            (FirewallChoice::Iptables, "iptables"),
            (FirewallChoice::None, "none"),
        ] {
            assert_eq!(choice_name(c), name);
            assert_eq!(parse_choice(name), c);
        }
        assert_eq!(parse_choice("bogus"), FirewallChoice::Auto);
    }
}
