//! Human and JSON rendering. Every command builds one [`Report`]; `--json` prints it as a single
//! object on stdout (with `changed` and `dry_run` always present, for configuration management),
//! otherwise the human lines go to stdout. Warnings always go to stderr as well.
use serde_json::{Map, Value};

mod commands;
pub use commands::{grant as grant_lines, grant_dry_run};

#[derive(Debug, Default)]
pub struct Report {
    /// The command's details, merged into the JSON object.
    pub fields: Map<String, Value>,
    /// Lines for people.
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    pub changed: bool,
    pub dry_run: bool,
    /// Exit code when the command itself succeeded (status: 1 on drift; doctor: 1 on a failed check).
    pub exit: i32,
}

impl Report {
    pub fn new(command: &str) -> Report {
        let mut r = Report::default();
        r.set("command", command);
        r
    }

    pub fn set(&mut self, key: &str, value: impl serde::Serialize) {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        self.fields.insert(key.to_string(), v);
    }

    pub fn line(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }

    pub fn warn(&mut self, s: impl Into<String>) {
        let s = s.into();
        if !self.warnings.contains(&s) {
            self.warnings.push(s);
        }
    }

    pub fn to_json(&self) -> Value {
        let mut m = self.fields.clone();
        m.insert("changed".into(), Value::Bool(self.changed && !self.dry_run));
        m.insert("dry_run".into(), Value::Bool(self.dry_run));
        // What check mode wants: a dry run's `changed` is false (nothing changed), this says
        // whether the same command for real would change something.
        m.insert("would_change".into(), Value::Bool(self.changed));
        m.insert(
            "warnings".into(),
            Value::Array(
                self.unique_warnings()
                    .into_iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        );
        Value::Object(m)
    }

    /// Each warning once, in the order first given: domain code pushes its warnings as values
    /// into [`Report::warnings`], and a rehearsal may find the same one twice.
    pub fn unique_warnings(&self) -> Vec<&String> {
        let mut seen = Vec::new();
        for w in &self.warnings {
            if !seen.contains(&w) {
                seen.push(w);
            }
        }
        seen
    }

    pub fn print(&self, json: bool) {
        for w in self.unique_warnings() {
            eprintln!("ovh-access: warning: {w}");
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&self.to_json()).unwrap());
        } else {
            for l in &self.lines {
                println!("{l}");
            }
        }
    }
}

/// What diff-minded callers (Ansible's `--diff`, a reviewer) need beside `changed`: the keys
/// file's whole content before and after (also in a dry run, where "after" is what would be
/// written), and the firewall change as the text each layer takes (`nft -f`, `iptables-restore`
/// input), for the layers that change. Bytes that are not UTF-8 show as U+FFFD: this is for
/// reading, the file itself is never rewritten from it.
pub fn set_changes(
    report: &mut Report,
    keys: &crate::keys::WriteOutcome,
    layers: &[crate::firewall::LayerChange],
) {
    report.set("keys_file_before", String::from_utf8_lossy(&keys.before));
    report.set("keys_file_after", String::from_utf8_lossy(&keys.after));
    report.set("firewall_script", firewall_text(layers));
}

/// `# layer` then its script, for each layer that changes; empty when none does.
pub fn firewall_text(layers: &[crate::firewall::LayerChange]) -> String {
    let mut text = String::new();
    for l in layers.iter().filter(|l| l.changed) {
        text.push_str(&format!("# {}\n{}\n", l.layer, l.script.trim_end()));
    }
    text
}

/// The JSON printed for a failed command, so that scripts always get one object.
pub fn error_json(command: &str, message: &str) -> Value {
    serde_json::json!({
        "command": command,
        "changed": false,
        "dry_run": false,
        "error": message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_is_never_changed() {
        let mut r = Report::new("grant");
        r.changed = true;
        r.dry_run = true;
        let j = r.to_json();
        assert_eq!(j["changed"], Value::Bool(false));
        assert_eq!(j["dry_run"], Value::Bool(true));
        assert_eq!(j["would_change"], Value::Bool(true));
        assert_eq!(j["command"], "grant");
    }
}

/// `2026-11-25 06:00:00 UTC` from Unix seconds (no time-zone database needed).
pub fn fmt_utc(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::civil::civil_from_unix(secs.min(i64::MAX as u64) as i64);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
}

pub use crate::text::join;

/// `2h 5m`, `40s`: the time left until an expiry.
pub fn fmt_left(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(fmt_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(fmt_left(3700), "1h 1m");
        assert_eq!(fmt_left(42), "42s");
    }
}
