//! The lines and JSON fields of grant, revoke and status, from what the commands return: the
//! commands decide, this renders.
use super::{fmt_left, fmt_utc, join, set_changes, Report};
use crate::access::KeyLines;
use crate::error::{EXIT_FAILURE, EXIT_OK};
use crate::firewall::{Drift, LayerChange};
use crate::keys::{self, WriteOutcome};
use crate::sessions;
use crate::state::Grant;
use crate::support::{self, Target};

/// What a grant did (or would do): lines for people and the JSON fields.
pub fn grant(
    g: &Grant,
    layers: &[LayerChange],
    keys_out: &WriteOutcome,
    target: &Target,
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
        g.address_source.name()
    ));
    report.line(format!("  ports:     {}", join(&g.ports)));
    for k in &g.keys {
        report.line(format!(
            "  key:       {} {} {}",
            k.fingerprint, k.algorithm, k.comment
        ));
    }
    report.line(format!("  keys file: {}", g.keys_file.display()));
    for l in layers {
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
    if layers.is_empty() {
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
    report.set("keys_file_changed", keys_out.changed);
    report.set("firewall", layers);
    set_changes(report, keys_out, layers);
    report.set("expires_at", g.expires_at);
    report.set("expires_at_utc", g.expires_at.map(fmt_utc));
}

/// The changes a `grant --dry-run` would make, in each layer's syntax and as a diff.
pub fn grant_dry_run(
    g: &Grant,
    layers: &[LayerChange],
    keys_out: &WriteOutcome,
    report: &mut Report,
) {
    report.line("");
    report.line("Dry run: nothing was changed. The firewall change would be:");
    for l in layers {
        report.line(format!("# {}", l.layer));
        report.line(l.script.trim_end().to_string());
    }
    report.line(format!(
        "The keys file {} would change:",
        g.keys_file.display()
    ));
    report.line(keys::diff(&keys_out.before, &keys_out.after));
}

/// What a revoke did (or would do): lines for people and the JSON fields.
pub fn revoke(
    previous: Option<&Grant>,
    lines: KeyLines,
    keys_out: &WriteOutcome,
    layers: &[LayerChange],
    ended: &[sessions::Ended],
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
    let action = match lines {
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
    if !ended.is_empty() {
        report.line(format!(
            "  sessions:  ended {} process(es) the support started",
            ended.len()
        ));
        for e in ended {
            report.line(format!("    {}", e.describe()));
        }
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
    set_changes(report, keys_out, layers);
    report.set("previous", previous);
}

/// The recorded grant for `status`: since when, until when, to whom.
pub fn status_grant(g: &Grant, now: u64, report: &mut Report) {
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

/// The end of `status`: the drifts beside their repairs (a table), the JSON fields and the
/// exit code (1 on any drift).
pub fn status_finish(mut report: Report, g: Option<Grant>, drift: Vec<Drift>) -> Report {
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
