//! `status`: what is granted, until when, and whether key, firewall, DNS and sshd's ports still
//! agree with it. Read only: it takes no lock and changes nothing. Each disagreement is a drift
//! named with the command that repairs it; any drift makes the exit code 1.
//!
//! The key side is a pure comparison of the keys file's content with the grant
//! ([`key_drift`]); the firewall side asks each backend's read side
//! ([`crate::firewall::Backend::inspect`]), which owns its layer's drift rules.
use std::net::IpAddr;
use std::path::Path;

use anyhow::Result;

use super::{grant_request, is_mapped, sorted, Ctx};
use crate::error::{EXIT_FAILURE, EXIT_OK};
use crate::firewall::{Drift, FirewallChoice, LayerState, Purpose};
use crate::report::{fmt_left, fmt_utc, join, Report};
use crate::root::Root;
use crate::state::{self, Grant, Lock, State};
use crate::{dns, keys, sshd, support};

const RESTORE: &str = "ovh-access restore";

pub fn status(root: &Root) -> Result<Report> {
    let ctx = Ctx::new(root);
    let mut report = Report::new("status");
    let st = State::load(&ctx.root)?;
    let mut drift = Vec::new();
    report.set("intent", &st.intent);
    if let Some(i) = &st.intent {
        // The journal holds the intent of a run in progress too: only a free lock means the run
        // is gone.
        drift.push(match Lock::holder(&ctx.root) {
            Some(pid) => Drift::new(
                format!("a {} is in progress (pid {pid})", i.op),
                "wait for it to finish, then run `ovh-access status` again",
            ),
            None => Drift::new(
                format!("an interrupted {} (pid {}) is in the journal", i.op, i.pid),
                RESTORE,
            ),
        });
    }
    let Some(g) = st.granted.clone() else {
        report.line("Nothing is granted.");
        drift.extend(leftovers(&ctx, &mut report));
        return Ok(finish(report, None, drift));
    };
    let now = state::now();
    describe(&g, now, &mut report);
    if g.expired(now) {
        drift.push(Drift::new(
            "the grant has expired but is still recorded",
            RESTORE,
        ));
    }
    match keys::read(&ctx.root, &g.keys_file) {
        Ok(Some(content)) => {
            let reader = ExpiryReader {
                sshd: crate::sshd::version(),
                zone: keys::ServerZone::load(&ctx.root).0,
            };
            let (lines, d) = key_drift(&g, &content, &reader);
            for l in lines {
                report.line(l);
            }
            drift.extend(d);
        }
        Ok(None) => drift.push(Drift::new(
            format!("the keys file {} is missing", g.keys_file.display()),
            RESTORE,
        )),
        Err(e) => drift.push(Drift::new(
            format!("{e:#}"),
            "fix the keys file as the message says",
        )),
    }
    let sshd_facts = sshd::probe(&ctx.root, &g.addresses, &g.host);
    let global = match &sshd_facts {
        Ok(f) => Some(f.global.clone()),
        Err(_) => sshd::global_effective(&ctx.root).ok(),
    };
    for (file, lines) in global.iter().flat_map(|global| {
        ctx.foreign_elsewhere(&g.keys_file, &g.keys, global, &mut report.warnings)
    }) {
        drift.push(foreign_drift(&file, &lines));
    }
    if g.firewall != FirewallChoice::None {
        drift.extend(firewall_drift(&ctx, &g, now, &mut report)?);
    }
    drift.extend(dns_drift(&ctx, &g, &mut report));
    if let Ok(facts) = &sshd_facts {
        drift.extend(port_drift(&g, &facts.ports));
    }
    Ok(finish(report, Some(g), drift))
}

/// The grant's own lines: since when, until when, to whom.
fn describe(g: &Grant, now: u64, report: &mut Report) {
    report.line(format!(
        "Granted to {} since {}.",
        g.host,
        fmt_utc(g.granted_at)
    ));
    match g.expires_at {
        Some(t) if t <= now => report.line(format!(
            "  expired:   {} (key and firewall closed by sshd and the kernel)",
            fmt_utc(t)
        )),
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
        g.address_source.name()
    ));
    report.line(format!("  ports:     {}", join(&g.ports)));
    // Which profile, and whether the key is still the one OVH publishes for it.
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
}

/// With nothing granted, the leftovers of a grant the state file does not know about are drift
/// too: an active support line, or the tool's objects in a firewall layer.
fn leftovers(ctx: &Ctx, report: &mut Report) -> Vec<Drift> {
    let mut drift = Vec::new();
    for k in ctx.support_lines_left(report) {
        if k.changed {
            drift.push(Drift::new(
                format!("an active support key line is in {}", k.path.display()),
                "ovh-access revoke",
            ));
        }
    }
    let Ok(backends) = ctx.select(FirewallChoice::Auto, Purpose::Remove, &mut report.warnings)
    else {
        return drift;
    };
    for mut b in backends {
        if let Ok(st) = b.inspect(None, &[]) {
            if st.present() {
                drift.push(Drift::new(
                    format!("{} still has the tool's objects", b.name()),
                    "ovh-access revoke",
                ));
            }
        }
    }
    drift
}

/// How the sshd in place reads a line's `expiry-time`: its release decides UTC or local time,
/// and local time is the server's zone.
pub(super) struct ExpiryReader {
    pub sshd: Option<(u32, u32)>,
    pub zone: keys::ServerZone,
}

/// The keys file's content against the grant (pure): the lines to show, and the drifts.
pub(super) fn key_drift(
    g: &Grant,
    content: &[u8],
    reader: &ExpiryReader,
) -> (Vec<String>, Vec<Drift>) {
    let mut lines = Vec::new();
    let mut drift = Vec::new();
    let file = g.keys_file.display();
    let blobs: Vec<&str> = g.keys.iter().map(|k| k.blob.as_str()).collect();
    let tool = keys::tool_lines(content, &blobs);
    for k in &g.keys {
        match tool.iter().find(|l| l.blob == k.blob) {
            Some(l) if l.active => {
                lines.push(format!(
                    "  key:       {} active in {file} line {}",
                    k.fingerprint, l.line
                ));
                let from: Vec<IpAddr> = sorted(
                    l.addresses
                        .iter()
                        .filter(|a| !is_mapped(a))
                        .copied()
                        .collect(),
                );
                let want = sorted(g.addresses.clone());
                if from != want {
                    drift.push(Drift::new(
                        format!(
                            "the key line's from= ({}) differs from the grant ({})",
                            join(&from),
                            join(&want)
                        ),
                        RESTORE,
                    ));
                }
                if let Some(d) = keys::expiry::drift(
                    l.expiry_time.as_deref(),
                    g.expires_at,
                    reader.sshd,
                    &reader.zone,
                ) {
                    drift.push(Drift::new(d, RESTORE));
                }
            }
            Some(l) => drift.push(Drift::new(
                format!("the key line {} in {file} is commented out", l.line),
                RESTORE,
            )),
            None => drift.push(Drift::new(
                format!("the key {} is missing from {file}", k.fingerprint),
                RESTORE,
            )),
        }
    }
    let blobs: Vec<&str> = g.keys.iter().map(|k| k.blob.as_str()).collect();
    for l in keys::support_lines(content, &blobs)
        .into_iter()
        .filter(|l| l.active && !l.tool && l.unrestricted)
    {
        drift.push(Drift::new(
            format!(
                "line {} of {file} carries the support key without from=: sshd accepts it from anywhere",
                l.line
            ),
            "ovh-access grant --replace-foreign ...",
        ));
    }
    (lines, drift)
}

fn foreign_drift(file: &Path, lines: &[usize]) -> Drift {
    Drift::new(
        format!(
            "line {} of {} carries the support key without from=, and sshd reads that file \
             too: it accepts the support from anywhere",
            join(lines),
            file.display()
        ),
        "ovh-access grant --replace-foreign ... (or comment the line out)",
    )
}

/// Each firewall layer against the grant, as its backend sees it. An expired grant's objects
/// are inert (sshd and the kernel closed the door), so only their presence is shown; the
/// expiry itself is the drift.
fn firewall_drift(ctx: &Ctx, g: &Grant, now: u64, report: &mut Report) -> Result<Vec<Drift>> {
    let mut drift = Vec::new();
    let mut present = Vec::new();
    let req = grant_request(g);
    for mut b in ctx.select(FirewallChoice::Auto, Purpose::Remove, &mut report.warnings)? {
        let name = b.name();
        let in_grant = g.layers.contains(&name);
        match b.inspect(Some(&req), g.recorded_for(&name)) {
            Ok(LayerState::Exact) => present.push(name),
            Ok(LayerState::Drift(d)) => {
                if !g.expired(now) {
                    drift.extend(d);
                }
                present.push(name);
            }
            Ok(LayerState::Missing) if in_grant => drift.push(Drift::new(
                format!("the firewall layer {name} has lost the tool's rules (flush ruleset? firewall reload?)"),
                RESTORE,
            )),
            // Lost, but a layer left with no chain that filters input (a bare `flush ruleset`)
            // blocks nobody: the invariant holds and restore has nothing to add.
            Ok(LayerState::Absent) if in_grant => report.line(format!(
                "  firewall:  {name} now filters nothing on input; nothing to open"
            )),
            Ok(_) => {}
            Err(e) => drift.push(Drift::new(format!("{name}: {e:#}"), "ovh-access doctor")),
        }
    }
    report.line(format!(
        "  firewall:  {}",
        if present.is_empty() {
            "-".to_string()
        } else {
            present.join(", ")
        }
    ));
    report.set("present_layers", &present);
    Ok(drift)
}

/// What DNS answers now, for addresses that came from it.
fn dns_drift(ctx: &Ctx, g: &Grant, report: &mut Report) -> Vec<Drift> {
    if !g.address_source.from_dns() {
        return Vec::new();
    }
    match dns::resolve(&ctx.root, &g.host, g.resolver, dns::DNS_TIMEOUT) {
        Ok(now) => {
            let now = sorted(now);
            if now == sorted(g.addresses.clone()) {
                return Vec::new();
            }
            vec![Drift::new(
                format!("{} now resolves to {}", g.host, join(&now)),
                "ovh-access refresh",
            )]
        }
        Err(e) => {
            report.warn(format!("cannot check DNS now: {e}"));
            Vec::new()
        }
    }
}

/// The ports sshd took up since the grant that the grant does not open (pure). A port sshd
/// already listened on when `--port` left it out was the operator's choice, not drift.
pub(super) fn port_drift(g: &Grant, listening: &[u16]) -> Vec<Drift> {
    let missing: Vec<u16> = listening
        .iter()
        .filter(|p| !g.ports.contains(p) && !g.sshd_ports.contains(p))
        .copied()
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    vec![Drift::new(
        format!(
            "sshd now also listens on port(s) {} which the grant does not open",
            join(&missing)
        ),
        "ovh-access grant ... (again)",
    )]
}

fn finish(mut report: Report, g: Option<Grant>, drift: Vec<Drift>) -> Report {
    if !drift.is_empty() {
        // A table: each drift beside the command that repairs it.
        let width = drift
            .iter()
            .map(|d| d.what.chars().count())
            .chain(["DRIFT".len()])
            .max()
            .unwrap_or(0);
        report.line("");
        report.line(format!("{:<width$}  REPAIR", "DRIFT"));
        for d in &drift {
            report.line(format!("{:<width$}  {}", d.what, d.repair));
        }
    } else {
        report.line("Consistent: key, firewall and DNS agree.");
    }
    report.set("expires_at", g.as_ref().and_then(|g| g.expires_at));
    report.set("granted", &g);
    report.set("drift", &drift);
    report.set("consistent", drift.is_empty());
    report.exit = if drift.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    };
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::AddressSource;

    const BLOB: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA";

    fn utc() -> ExpiryReader {
        ExpiryReader {
            sshd: Some((9, 2)),
            zone: keys::ServerZone::utc(),
        }
    }

    fn grant() -> Grant {
        Grant {
            host: "support.example".into(),
            profile: None,
            addresses: vec!["192.0.2.1".parse().unwrap()],
            address_source: AddressSource::Operator,
            ports: vec![22],
            sshd_ports: vec![],
            keys: vec![crate::state::StoredKey {
                algorithm: "ssh-ed25519".into(),
                blob: BLOB.into(),
                comment: "lab".into(),
                fingerprint: "SHA256:x".into(),
            }],
            keys_file: "/root/.ssh/authorized_keys2".into(),
            layers: vec![],
            firewall: FirewallChoice::Auto,
            granted_at: 1,
            expires_at: None,
            resolver: None,
            allow_private: false,
            trust_dns: false,
            recorded: Default::default(),
        }
    }

    fn tool_line(from: &str) -> String {
        format!("from=\"{from}\" ssh-ed25519 {BLOB} lab ovh-access\n")
    }

    #[test]
    fn the_key_line_as_granted_has_no_drift() {
        let g = grant();
        let (lines, drift) = key_drift(&g, tool_line("192.0.2.1").as_bytes(), &utc());
        assert!(drift.is_empty(), "{drift:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
    }

    #[test]
    fn a_missing_a_disabled_or_a_widened_key_line_is_drift() {
        let g = grant();
        let (_, d) = key_drift(&g, b"", &utc());
        assert!(d[0].what.contains("is missing from"), "{d:?}");
        let (_, d) = key_drift(&g, tool_line("192.0.2.7").as_bytes(), &utc());
        assert!(d[0].what.contains("differs from the grant"), "{d:?}");
        let foreign = format!("ssh-ed25519 {BLOB} admin\n");
        let (_, d) = key_drift(&g, foreign.as_bytes(), &utc());
        assert!(d.iter().any(|x| x.what.contains("without from=")), "{d:?}");
    }

    #[test]
    fn a_port_sshd_listens_on_beyond_the_grant_is_drift() {
        assert!(port_drift(&grant(), &[22]).is_empty());
        let d = port_drift(&grant(), &[22, 2222]);
        assert!(d[0].what.contains("port(s) 2222"), "{d:?}");
        // `--port 2222` while sshd listened on 22 and 2222: 22 was left out on purpose; a port
        // sshd took up later is still drift.
        let mut chosen = grant();
        chosen.ports = vec![2222];
        chosen.sshd_ports = vec![22, 2222];
        assert!(port_drift(&chosen, &[22, 2222]).is_empty());
        let d = port_drift(&chosen, &[22, 2200, 2222]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].what.contains("port(s) 2200"), "{d:?}");
    }
}
