//! The `iptables-save` format, read back: tables, chains with their policies, rules as argument
//! lists. Only what planning needs is modelled; a rule keeps its exact text so that a `-D` can
//! name it as `iptables-restore` will parse it (restore tokenises `-D` lines exactly as `-A`).
use anyhow::{bail, Result};

/// One `*table` … `COMMIT` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTable {
    pub name: String,
    /// In the order `iptables-save` prints them: built-in chains first, then user chains.
    pub chains: Vec<SavedChain>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedChain {
    pub name: String,
    /// `ACCEPT`/`DROP` for a built-in chain; `None` for a user chain (printed as `-`).
    pub policy: Option<String>,
    pub rules: Vec<SavedRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRule {
    /// The rule as printed after `-A CHAIN `, e.g. `-s 192.0.2.1/32 -j ACCEPT`.
    pub spec: String,
}

impl SavedRule {
    pub fn new(spec: &str) -> SavedRule {
        SavedRule {
            spec: spec.to_string(),
        }
    }

    /// `spec` split the way iptables-restore splits it (double quotes group, `\"` escapes).
    /// Split on demand: a table of 100 000 rules is read for the few that concern the tool.
    pub fn args(&self) -> Vec<String> {
        split_args(&self.spec)
    }

    /// The value of `-j`/`-g` (`--jump`/`--goto`), if any.
    pub fn target(&self) -> Option<String> {
        self.args()
            .windows(2)
            .find(|w| matches!(w[0].as_str(), "-j" | "--jump" | "-g" | "--goto"))
            .map(|w| w[1].clone())
    }

    /// True when the rule jumps (or goes) to `chain`; a substring test first, so that rules
    /// that cannot be such a jump are not split.
    pub fn targets(&self, chain: &str) -> bool {
        self.spec.contains(chain) && self.target().as_deref() == Some(chain)
    }

    /// The value following `option` (e.g. `--comment`, `--datestop`).
    pub fn option(&self, option: &str) -> Option<String> {
        if !self.spec.contains(option) {
            return None;
        }
        self.args()
            .windows(2)
            .find(|w| w[0] == option)
            .map(|w| w[1].clone())
    }

    /// True when the rule carries `-m comment --comment <tag>`.
    pub fn has_comment(&self, tag: &str) -> bool {
        self.spec.contains(tag) && self.option("--comment").as_deref() == Some(tag)
    }
}

impl SavedTable {
    pub fn chain(&self, name: &str) -> Option<&SavedChain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// Parse the whole output of `iptables-save` (any number of tables, with or without `-c`).
pub fn parse(text: &str) -> Result<Vec<SavedTable>> {
    let mut tables: Vec<SavedTable> = Vec::new();
    let mut current: Option<SavedTable> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let lineno = n + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if current.is_some() {
                bail!("iptables-save output line {lineno}: table *{name} starts before the previous one's COMMIT; the save output is truncated or corrupt");
            }
            current = Some(SavedTable {
                name: name.to_string(),
                chains: Vec::new(),
            });
            continue;
        }
        let Some(table) = current.as_mut() else {
            bail!("iptables-save output line {lineno}: '{line}' appears outside a *table section; the save output is corrupt");
        };
        if line == "COMMIT" {
            tables.push(current.take().expect("checked above"));
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let name = parts.next().unwrap_or_default().to_string();
            let policy = match parts.next() {
                Some("-") | None => None,
                Some(p) => Some(p.to_string()),
            };
            table.chains.push(SavedChain {
                name,
                policy,
                rules: Vec::new(),
            });
            continue;
        }
        // With `-c` every rule is prefixed by its counters `[pkts:bytes]`.
        let rule = if line.starts_with('[') {
            line.split_once(' ')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("")
        } else {
            line
        };
        let Some(rest) = rule.strip_prefix("-A ") else {
            bail!("iptables-save output line {lineno}: cannot read '{line}'; expected a chain, a rule or COMMIT");
        };
        let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
        let Some(c) = table.chains.iter_mut().find(|c| c.name == chain) else {
            bail!("iptables-save output line {lineno}: rule for chain {chain} which was not declared; the save output is corrupt");
        };
        c.rules.push(SavedRule::new(spec));
    }
    if let Some(t) = current {
        bail!(
            "iptables-save output: table *{} has no COMMIT; the save output is truncated",
            t.name
        );
    }
    Ok(tables)
}

/// Split a rule as iptables-restore's `tokenize_rule_counters`/`add_param_to_argv` do: blanks
/// separate, double quotes group, a backslash escapes the next character inside quotes.
pub fn split_args(spec: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut have = false;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quotes => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                have = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if have || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => cur.push(c),
        }
    }
    if have || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The save output with what changes by itself removed: `#` lines (they carry the date) and the
/// `[pkts:bytes]` counters (traffic moves them). Two firewalls equal in rules compare equal.
pub fn strip_volatile(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let line = if line.starts_with(':') {
            match line.rfind(" [") {
                Some(i) if line.ends_with(']') => &line[..i],
                _ => line,
            }
        } else if line.starts_with('[') {
            line.split_once(' ').map(|(_, r)| r).unwrap_or(line)
        } else {
            line
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Generated by iptables-save v1.8.9 on Wed Nov 25 02:24:01 2026
*nat
:PREROUTING ACCEPT [3:180]
COMMIT
*filter
:INPUT DROP [10:600]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [5:300]
:OVH-ACCESS - [0:0]
[4:240] -A INPUT -m comment --comment ovh-access -j OVH-ACCESS
-A INPUT -i lo -m comment --comment \"loop back \\\"ok\\\"\" -j ACCEPT
-A OVH-ACCESS -s 192.0.2.1/32 -p tcp -m multiport --dports 22,2222 -j ACCEPT
COMMIT
# Completed
";

    #[test]
    fn parses_tables_chains_rules() {
        let t = parse(SAMPLE).unwrap();
        assert_eq!(t.len(), 2);
        let f = &t[1];
        assert_eq!(f.name, "filter");
        assert_eq!(f.chain("INPUT").unwrap().policy.as_deref(), Some("DROP"));
        assert_eq!(f.chain("OVH-ACCESS").unwrap().policy, None);
        let input = &f.chain("INPUT").unwrap().rules;
        assert_eq!(input.len(), 2);
        assert_eq!(
            input[0].spec,
            "-m comment --comment ovh-access -j OVH-ACCESS"
        );
        assert!(input[0].has_comment("ovh-access"));
        assert_eq!(input[0].target().as_deref(), Some("OVH-ACCESS"));
        assert!(input[0].targets("OVH-ACCESS") && !input[1].targets("OVH-ACCESS"));
        assert_eq!(
            input[1].option("--comment").as_deref(),
            Some("loop back \"ok\"")
        );
        assert!(!input[1].has_comment("ovh-access"));
    }

    #[test]
    fn refuses_corrupt_output() {
        assert!(parse("*filter\n:INPUT DROP [0:0]\n").is_err());
        assert!(parse("-A INPUT -j ACCEPT\n").is_err());
        assert!(parse("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n").is_err());
        assert!(parse("*filter\n*nat\nCOMMIT\n").is_err());
    }

    #[test]
    fn strips_counters_and_dates() {
        let s = strip_volatile(SAMPLE);
        assert!(!s.contains('#'));
        assert!(s.contains(":INPUT DROP\n"));
        assert!(s.contains("\n-A INPUT -m comment --comment ovh-access -j OVH-ACCESS\n"));
        assert!(!s.contains("[10:600]"));
    }
}
