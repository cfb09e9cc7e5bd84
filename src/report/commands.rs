//! The lines and JSON fields of grant, from what the command returns: the command decides, this
//! renders.
use super::{fmt_utc, join, set_changes, Report};
use crate::firewall::LayerChange;
use crate::keys::{self, WriteOutcome};
use crate::state::Grant;
use crate::support::Target;

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
