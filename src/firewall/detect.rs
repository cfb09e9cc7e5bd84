//! Which firewall layers can drop the support traffic, from what the system really has — not from
//! where the `iptables` alternative points. A packet crosses every layer's hooks and each one's
//! drop is final, so `--firewall auto` programs all of them.
//!
//! [`layers`] is a pure function of [`FirewallFacts`]; [`gather_facts_except_nft`] reads them
//! (the nft tables come from the nftables backend's netlink dump, or from
//! [`nft_tables_from_ruleset`] in tests).
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::iptables::{legacy_tables, Family, IptablesBackend, Variant};
use super::FirewallChoice;
use crate::bad_input;
use crate::root::Root;

/// One nftables table as the detector needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftTable {
    /// ip, ip6, inet, arp, bridge, netdev.
    pub family: String,
    pub name: String,
    /// Written by iptables-nft: only iptables-nft may change it (a native rule there is printed
    /// wrongly by iptables-nft-save, and a save/restore turns it into something else).
    pub made_by_iptables_nft: bool,
    pub has_input_base_chain: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FirewallFacts {
    /// Contents of ip_tables_names: the legacy IPv4 tables that exist.
    pub legacy_v4_tables: Vec<String>,
    pub legacy_v6_tables: Vec<String>,
    pub nft_tables: Vec<NftTable>,
    pub firewalld_running: bool,
    pub ufw_present: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum LayerKind {
    /// Native nftables tables (the nft backend hooks into each input base chain).
    Nft,
    Iptables(Variant, Family),
}

/// The layers to program for `choice`.
pub fn layers(choice: FirewallChoice, facts: &FirewallFacts) -> Result<Vec<LayerKind>> {
    if choice == FirewallChoice::None {
        return Ok(Vec::new());
    }
    if choice == FirewallChoice::Auto && facts.firewalld_running {
        return Err(bad_input!(
            "firewalld is running and owns the ruleset: its next reload would remove the tool's rules and leave the support key without its firewall opening; pass --firewall nft or --firewall iptables to program the firewall anyway (and run `ovh-access restore` after each firewalld reload)"
        ));
    }
    let ipt = iptables_layers(facts);
    let native_input = facts.nft_tables.iter().any(|t| {
        !t.made_by_iptables_nft
            && t.has_input_base_chain
            && matches!(t.family.as_str(), "ip" | "ip6" | "inet")
    });
    match choice {
        FirewallChoice::Nft => Ok(vec![LayerKind::Nft]),
        FirewallChoice::Iptables => {
            if ipt.is_empty() && native_input {
                return Err(bad_input!(
                    "--firewall iptables: this system has no iptables table (legacy or iptables-nft) but nftables tables with an input chain, so opening iptables would not let the support in; use --firewall auto or --firewall nft"
                ));
            }
            Ok(ipt)
        }
        FirewallChoice::Auto => {
            let mut all = ipt;
            if native_input {
                all.push(LayerKind::Nft);
            }
            Ok(all)
        }
        FirewallChoice::None => unreachable!("returned above"),
    }
}

/// The layers `revoke`, `status` and `restore` must look at: every layer that exists, whatever
/// `--firewall` the grant used and even under firewalld — removing the tool's objects is always
/// safe, and refusing it would leave the support's door open.
pub fn layers_for_removal(facts: &FirewallFacts) -> Vec<LayerKind> {
    let mut all = iptables_layers(facts);
    if facts.nft_tables.iter().any(|t| !t.made_by_iptables_nft) {
        all.push(LayerKind::Nft);
    }
    all
}

/// The iptables layers that have a table: legacy by family, then iptables-nft by family.
fn iptables_layers(facts: &FirewallFacts) -> Vec<LayerKind> {
    let mut ipt = Vec::new();
    if !facts.legacy_v4_tables.is_empty() {
        ipt.push(LayerKind::Iptables(Variant::Legacy, Family::V4));
    }
    if !facts.legacy_v6_tables.is_empty() {
        ipt.push(LayerKind::Iptables(Variant::Legacy, Family::V6));
    }
    // Every iptables-nft table counts, not only those with an INPUT chain: iptables-nft creates
    // built-in chains when first used, so a table may hold only a dropping OUTPUT.
    for (fam, family) in [("ip", Family::V4), ("ip6", Family::V6)] {
        if facts
            .nft_tables
            .iter()
            .any(|t| t.made_by_iptables_nft && t.family == fam)
        {
            ipt.push(LayerKind::Iptables(Variant::Nft, family));
        }
    }
    ipt
}

/// What an operator should know about the layers found (one sentence each).
pub fn notes(facts: &FirewallFacts) -> Vec<String> {
    let mut n = Vec::new();
    if facts.ufw_present {
        n.push(
            "ufw is active: its chains are left untouched and the tool's jump sits before them at the head of INPUT".to_string(),
        );
    }
    if facts.firewalld_running {
        n.push("firewalld is running: a firewalld reload removes the tool's rules; run `ovh-access restore` after it".to_string());
    }
    n
}

/// The facts the iptables side can read itself, in the calling thread's network namespace; the
/// caller fills `nft_tables` from the nftables backend's dump.
pub fn gather_facts_except_nft() -> FirewallFacts {
    gather_facts_except_nft_in(&Root::system())
}

/// As [`gather_facts_except_nft`], reading configuration files (ufw.conf) under `root`. The
/// firewall and the processes are always the live ones.
pub fn gather_facts_except_nft_in(root: &Root) -> FirewallFacts {
    let legacy_v4_tables = legacy_tables(Family::V4);
    let legacy_v6_tables = legacy_tables(Family::V6);
    let ufw_conf = std::fs::read_to_string(root.path("/etc/ufw/ufw.conf")).unwrap_or_default();
    let ufw_present = ufw_enabled(&ufw_conf) || ufw_chains_loaded(&legacy_v4_tables);
    FirewallFacts {
        legacy_v4_tables,
        legacy_v6_tables,
        nft_tables: Vec::new(),
        firewalld_running: process_running(Path::new("/proc"), "firewalld"),
        ufw_present,
    }
}

/// `ENABLED=yes` in ufw.conf (the file ufw's `enable` writes; quotes allowed as in a shell file).
pub fn ufw_enabled(conf: &str) -> bool {
    conf.lines().any(|l| {
        let l = l.trim();
        l.strip_prefix("ENABLED=")
            .map(|v| {
                v.trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .eq_ignore_ascii_case("yes")
            })
            .unwrap_or(false)
    })
}

/// ufw's chains in the save output of the IPv4 layers that exist (legacy only when it has
/// tables, so that nothing is created by looking).
fn ufw_chains_loaded(legacy_v4: &[String]) -> bool {
    ufw_chains_in(&[
        (Variant::Nft, true),
        (Variant::Legacy, !legacy_v4.is_empty()),
    ])
}

/// ufw's chains in the save output of each IPv4 layer marked as having tables: no save runs for
/// a layer without any (nothing to find there, and the cost of a program run).
fn ufw_chains_in(layers: &[(Variant, bool)]) -> bool {
    layers
        .iter()
        .filter(|(_, has_tables)| *has_tables)
        .filter_map(|(v, _)| {
            IptablesBackend::new(*v, Family::V4)
                .save_text()
                .ok()
                .flatten()
        })
        .any(|text| save_has_ufw_chains(&text))
}

/// Every fact of the detector, with the nft tables already read (the nftables backend's dump):
/// iptables-nft's layer is looked at only when the dump shows one of its `ip` tables, legacy's
/// only when ip_tables_names lists a table, so a host with only nftables runs no program.
pub fn gather_facts(root: &Root, nft_tables: Vec<NftTable>) -> FirewallFacts {
    let legacy_v4_tables = legacy_tables(Family::V4);
    let legacy_v6_tables = legacy_tables(Family::V6);
    let xt_v4 = nft_tables
        .iter()
        .any(|t| t.made_by_iptables_nft && t.family == "ip");
    let ufw_conf = std::fs::read_to_string(root.path("/etc/ufw/ufw.conf")).unwrap_or_default();
    let ufw_present = ufw_enabled(&ufw_conf)
        || ufw_chains_in(&[
            (Variant::Nft, xt_v4),
            (Variant::Legacy, !legacy_v4_tables.is_empty()),
        ]);
    // firewalld keeps its rules in its own nftables table (`inet firewalld`) or, with its
    // iptables backend, in iptables tables: with neither there, it is not programming this
    // namespace, and the walk over every process is skipped.
    let firewalld_possible = xt_v4
        || !legacy_v4_tables.is_empty()
        || !legacy_v6_tables.is_empty()
        || nft_tables
            .iter()
            .any(|t| t.name == "firewalld" || t.made_by_iptables_nft);
    FirewallFacts {
        legacy_v4_tables,
        legacy_v6_tables,
        firewalld_running: firewalld_possible && process_running(Path::new("/proc"), "firewalld"),
        nft_tables,
        ufw_present,
    }
}

pub fn save_has_ufw_chains(save_text: &str) -> bool {
    save_text
        .lines()
        .any(|l| l.starts_with(":ufw-") || l.starts_with(":ufw6-"))
}

/// A process whose `comm` is `name`, found by scanning `<proc>/*/comm` (bounded by the number of
/// processes; vanished ones are skipped).
pub fn process_running(proc_dir: &Path, name: &str) -> bool {
    let Ok(dir) = std::fs::read_dir(proc_dir) else {
        return false;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        })
        .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == name))
}

/// The tables of an `nft list ruleset` text. A table is taken as iptables-nft's when nft warns
/// so (`# Warning: table ip filter is managed by iptables-nft, do not touch!`, printed by nft
/// ≥ 1.0.1 for tables flagged by iptables-nft) or when it is an ip/ip6 table of xtables' names
/// (filter, nat, mangle, raw, security) whose chains are upper-case built-ins.
pub fn nft_tables_from_ruleset(text: &str) -> Vec<NftTable> {
    let mut tables: Vec<NftTable> = Vec::new();
    let mut managed: Vec<(String, String)> = Vec::new();
    let mut upper: Vec<bool> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("# Warning: table ") {
            let mut p = rest.split_whitespace();
            if let (Some(f), Some(n)) = (p.next(), p.next()) {
                if rest.contains("managed by iptables-nft") {
                    managed.push((f.to_string(), n.to_string()));
                }
            }
        } else if let Some(rest) = l.strip_prefix("table ") {
            let mut p = rest.trim_end_matches('{').split_whitespace();
            let (Some(family), Some(name)) = (p.next(), p.next()) else {
                continue;
            };
            tables.push(NftTable {
                family: family.to_string(),
                name: name.to_string(),
                made_by_iptables_nft: false,
                has_input_base_chain: false,
            });
            upper.push(false);
        } else if let Some(rest) = l.strip_prefix("chain ") {
            let name = rest.trim_end_matches('{').trim();
            if let Some(i) = upper.len().checked_sub(1) {
                if matches!(
                    name,
                    "INPUT" | "OUTPUT" | "FORWARD" | "PREROUTING" | "POSTROUTING"
                ) {
                    upper[i] = true;
                }
            }
        } else if l.starts_with("type ") && l.contains(" hook input ") {
            if let Some(t) = tables.last_mut() {
                t.has_input_base_chain = true;
            }
        }
    }
    for (t, up) in tables.iter_mut().zip(upper) {
        let xt_name = matches!(
            t.name.as_str(),
            "filter" | "nat" | "mangle" | "raw" | "security"
        );
        t.made_by_iptables_nft = managed.iter().any(|(f, n)| *f == t.family && *n == t.name)
            || (up && xt_name && matches!(t.family.as_str(), "ip" | "ip6"));
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    fn table(family: &str, name: &str, xt: bool, input: bool) -> NftTable {
        NftTable {
            family: family.into(),
            name: name.into(),
            made_by_iptables_nft: xt,
            has_input_base_chain: input,
        }
    }

    const LEGACY_V4: LayerKind = LayerKind::Iptables(Variant::Legacy, Family::V4);
    const LEGACY_V6: LayerKind = LayerKind::Iptables(Variant::Legacy, Family::V6);
    const XT_V4: LayerKind = LayerKind::Iptables(Variant::Nft, Family::V4);
    const XT_V6: LayerKind = LayerKind::Iptables(Variant::Nft, Family::V6);

    #[test]
    fn auto_finds_every_layer_that_can_drop() {
        let facts = FirewallFacts {
            legacy_v4_tables: vec!["filter".into()],
            nft_tables: vec![table("inet", "filter", false, true)],
            ..Default::default()
        };
        assert_eq!(
            layers(FirewallChoice::Auto, &facts).unwrap(),
            vec![LEGACY_V4, LayerKind::Nft]
        );

        // iptables-nft's tables go to the iptables backend, never to native nft rules.
        let facts = FirewallFacts {
            nft_tables: vec![
                table("ip", "filter", true, true),
                table("ip6", "filter", true, true),
            ],
            ..Default::default()
        };
        assert_eq!(
            layers(FirewallChoice::Auto, &facts).unwrap(),
            vec![XT_V4, XT_V6]
        );

        // Legacy tables that let everything through still count, beside the nft table that drops.
        let facts = FirewallFacts {
            legacy_v4_tables: vec!["nat".into(), "filter".into()],
            legacy_v6_tables: vec!["filter".into()],
            nft_tables: vec![
                table("ip", "fail2ban", false, true),
                table("netdev", "ingress", false, false),
            ],
            ..Default::default()
        };
        assert_eq!(
            layers(FirewallChoice::Auto, &facts).unwrap(),
            vec![LEGACY_V4, LEGACY_V6, LayerKind::Nft]
        );

        // A native table without an input base chain cannot drop incoming traffic.
        let facts = FirewallFacts {
            nft_tables: vec![table("inet", "sets", false, false)],
            ..Default::default()
        };
        assert!(layers(FirewallChoice::Auto, &facts).unwrap().is_empty());
        assert!(layers(FirewallChoice::Auto, &FirewallFacts::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn forced_choices() {
        let facts = FirewallFacts {
            legacy_v4_tables: vec!["filter".into()],
            nft_tables: vec![table("inet", "filter", false, true)],
            ..Default::default()
        };
        assert_eq!(
            layers(FirewallChoice::Nft, &facts).unwrap(),
            vec![LayerKind::Nft]
        );
        assert_eq!(
            layers(FirewallChoice::Iptables, &facts).unwrap(),
            vec![LEGACY_V4]
        );
        assert!(layers(FirewallChoice::None, &facts).unwrap().is_empty());
        let only_nft = FirewallFacts {
            nft_tables: vec![table("inet", "filter", false, true)],
            ..Default::default()
        };
        let err = layers(FirewallChoice::Iptables, &only_nft).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err
            .to_string()
            .contains("--firewall auto or --firewall nft"));
    }

    #[test]
    fn firewalld_refuses_auto_only() {
        let facts = FirewallFacts {
            nft_tables: vec![table("inet", "firewalld", false, true)],
            firewalld_running: true,
            ..Default::default()
        };
        let err = layers(FirewallChoice::Auto, &facts).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        let msg = err.to_string();
        assert!(
            msg.contains("firewalld")
                && msg.contains("reload")
                && msg.contains("--firewall nft or --firewall iptables")
        );
        assert_eq!(
            layers(FirewallChoice::Nft, &facts).unwrap(),
            vec![LayerKind::Nft]
        );
        assert!(layers(FirewallChoice::None, &facts).unwrap().is_empty());
        assert!(notes(&facts).iter().any(|n| n.contains("firewalld")));
    }

    #[test]
    fn removal_looks_everywhere() {
        let facts = FirewallFacts {
            legacy_v6_tables: vec!["filter".into()],
            nft_tables: vec![
                table("ip", "filter", true, true),
                table("inet", "firewalld", false, true),
            ],
            firewalld_running: true,
            ..Default::default()
        };
        assert_eq!(
            layers_for_removal(&facts),
            vec![LEGACY_V6, XT_V4, LayerKind::Nft]
        );
        assert!(layers_for_removal(&FirewallFacts::default()).is_empty());
    }

    #[test]
    fn reads_nft_list_ruleset() {
        let text = "# Warning: table ip filter is managed by iptables-nft, do not touch!
table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy drop;
		iifname \"lo\" counter packets 0 bytes 0 accept
	}
}
table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
	}
	chain output {
		type filter hook output priority filter; policy accept;
	}
}
table ip6 nat {
	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
	}
}
table inet sets {
	set blocklist {
		type ipv4_addr
	}
}
";
        let t = nft_tables_from_ruleset(text);
        assert_eq!(
            t,
            vec![
                table("ip", "filter", true, true),
                table("inet", "filter", false, true),
                // No warning (an older nft), but xtables' name and upper-case built-ins.
                table("ip6", "nat", true, false),
                table("inet", "sets", false, false),
            ]
        );
    }

    #[test]
    fn ufw_and_firewalld_probes() {
        assert!(ufw_enabled("# comment\nENABLED=yes\nLOGLEVEL=low\n"));
        assert!(ufw_enabled("ENABLED=\"yes\"\n"));
        assert!(!ufw_enabled("ENABLED=no\n"));
        assert!(!ufw_enabled(""));
        assert!(save_has_ufw_chains(include_str!(
            "../../rulesets/ufw.v4.rules"
        )));
        assert!(save_has_ufw_chains(include_str!(
            "../../rulesets/ufw.v6.rules"
        )));
        assert!(!save_has_ufw_chains(include_str!(
            "../../rulesets/legacy-input-drop.v4.rules"
        )));

        let proc_dir = tempfile::tempdir().unwrap();
        for (pid, comm) in [
            ("1", "systemd\n"),
            ("42", "sshd\n"),
            ("self", "firewalld\n"),
        ] {
            std::fs::create_dir(proc_dir.path().join(pid)).unwrap();
            std::fs::write(proc_dir.path().join(pid).join("comm"), comm).unwrap();
        }
        // Only numeric directories are processes.
        assert!(!process_running(proc_dir.path(), "firewalld"));
        std::fs::create_dir(proc_dir.path().join("977")).unwrap();
        std::fs::write(proc_dir.path().join("977/comm"), "firewalld\n").unwrap();
        assert!(process_running(proc_dir.path(), "firewalld"));
    }
}
