//! Which firewall layers can drop the support traffic, from what the system really has — not from
//! where the `iptables` alternative points. A packet crosses every layer's hooks and each one's
//! drop is final, so `--firewall auto` programs all of them.
//!
//! [`layers`] is a pure function of [`FirewallFacts`]; [`gather_facts_except_nft`] reads them
//! (the nft tables come from the nftables backend's netlink dump, or from
//! [`nft_tables_from_ruleset`] in tests).

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
    /// A base chain the tool hooks: a filter chain on input, or one on prerouting, netdev
    /// ingress or output that can drop the support's packets.
    pub has_input_base_chain: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FirewallFacts {
    /// Contents of ip_tables_names: the legacy IPv4 tables that exist.
    pub legacy_v4_tables: Vec<String>,
    pub legacy_v6_tables: Vec<String>,
    pub nft_tables: Vec<NftTable>,
    pub firewalld: FirewalldFacts,
    pub ufw_present: bool,
}

/// firewalld as seen from this network namespace: its ruleset here, and its answer on the bus.
/// A firewalld process elsewhere (another namespace, a container) has no table here and counts
/// for nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FirewalldFacts {
    /// firewalld's own tables or chains in this namespace (`inet firewalld`, or the iptables
    /// chain `INPUT_ZONES` its iptables backend creates).
    pub tables: Vec<String>,
    /// firewalld answered on the system bus (asked only when its tables exist or
    /// `--firewall firewalld` asks for it).
    pub on_bus: bool,
    /// Why it did not answer, when it was asked.
    pub bus_error: Option<String>,
}

impl FirewalldFacts {
    /// firewalld owns this namespace's firewall and can be programmed.
    pub fn in_charge(&self) -> bool {
        self.on_bus && !self.tables.is_empty()
    }

    /// The error for tables without a daemon answering: both facts, and what to do.
    fn unreachable_error(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "firewalld's ruleset is loaded here ({}) but firewalld does not answer on the system bus ({}); start firewalld (`systemctl start firewalld`) or remove its leftover tables, then run this again",
            self.tables.join(", "),
            self.bus_error.as_deref().unwrap_or("no answer")
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum LayerKind {
    /// Native nftables tables (the nft backend hooks into each input base chain).
    Nft,
    /// firewalld's runtime rich rules, over D-Bus.
    Firewalld,
    Iptables(Variant, Family),
}

/// The layers to program for `choice`.
pub fn layers(choice: FirewallChoice, facts: &FirewallFacts) -> Result<Vec<LayerKind>> {
    if choice == FirewallChoice::None {
        return Ok(Vec::new());
    }
    let fwd = &facts.firewalld;
    if choice == FirewallChoice::Firewalld {
        if fwd.on_bus {
            return Ok(vec![LayerKind::Firewalld]);
        }
        return Err(anyhow::anyhow!(
            "--firewall firewalld: firewalld does not answer on the system bus ({}); start it, or choose another --firewall",
            fwd.bus_error.as_deref().unwrap_or("no answer")
        ));
    }
    if choice == FirewallChoice::Auto && !fwd.tables.is_empty() {
        // firewalld's chains reject inside its own table: while it is loaded, only a rule it
        // holds itself opens anything, whatever else the ruleset has.
        if !fwd.on_bus {
            return Err(fwd.unreachable_error());
        }
        return Ok(vec![LayerKind::Firewalld]);
    }
    let ipt = iptables_layers(facts);
    let native_input = facts.nft_tables.iter().any(|t| {
        !t.made_by_iptables_nft
            && t.has_input_base_chain
            && matches!(t.family.as_str(), "ip" | "ip6" | "inet" | "netdev")
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
        FirewallChoice::None | FirewallChoice::Firewalld => unreachable!("returned above"),
    }
}

/// The layers `revoke`, `status` and `restore` must look at: every layer that exists, whatever
/// `--firewall` the grant used and even under firewalld — removing the tool's objects is always
/// safe, and refusing it would leave the support's door open.
pub fn layers_for_removal(facts: &FirewallFacts) -> Vec<LayerKind> {
    let mut all = iptables_layers(facts);
    // firewalld's own table is its layer's business (only its D-Bus API may change it).
    let firewalld_table = |t: &NftTable| {
        facts.firewalld.on_bus && firewalld_nft_tables(std::slice::from_ref(t)).len() == 1
    };
    if facts
        .nft_tables
        .iter()
        .any(|t| !t.made_by_iptables_nft && !firewalld_table(t))
    {
        all.push(LayerKind::Nft);
    }
    if facts.firewalld.on_bus {
        all.push(LayerKind::Firewalld);
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
    let fwd = &facts.firewalld;
    if fwd.in_charge() {
        n.push("firewalld owns the firewall: the tool's rules are runtime rich rules, which `firewall-cmd --reload` removes; status then reports them missing, and restore (or the refresh timer) adds them again".to_string());
    } else if fwd.on_bus {
        n.push("firewalld answers on the system bus but has no ruleset in this network namespace: it is ignored here".to_string());
    }
    n
}

/// The facts the iptables side can read itself, in the calling thread's network namespace; the
/// caller fills `nft_tables` from the nftables backend's dump, then calls [`ask_firewalld`].
pub fn gather_facts_except_nft() -> FirewallFacts {
    gather_facts_except_nft_in(&Root::system())
}

/// firewalld's nft tables (its nftables backend: `inet firewalld`, and `ip`/`ip6 firewalld` for
/// NAT in 0.x) among the tables found.
pub fn firewalld_nft_tables(tables: &[NftTable]) -> Vec<String> {
    tables
        .iter()
        .filter(|t| t.name == "firewalld" && matches!(t.family.as_str(), "inet" | "ip" | "ip6"))
        .map(|t| format!("table {} {}", t.family, t.name))
        .collect()
}

/// When firewalld is asked on the system bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskFirewalld {
    /// Only when its ruleset is loaded here: a host without firewalld is never asked.
    IfLoaded,
    /// Also without its ruleset (`--firewall firewalld`), to say why it cannot be programmed.
    Always,
}

/// Completes `facts.firewalld` once the nft tables are known: its tables, and — only when they
/// exist or `when` says always — whether it answers on the bus.
pub fn ask_firewalld(facts: &mut FirewallFacts, when: AskFirewalld) {
    facts
        .firewalld
        .tables
        .splice(0..0, firewalld_nft_tables(&facts.nft_tables));
    if facts.firewalld.tables.is_empty() && when == AskFirewalld::IfLoaded {
        return;
    }
    match super::firewalld::bus::Client::connect() {
        Ok(_) => facts.firewalld.on_bus = true,
        Err(e) => facts.firewalld.bus_error = Some(e.to_string()),
    }
}

/// As [`gather_facts_except_nft`], reading configuration files (ufw.conf) under `root`. The
/// firewall and the processes are always the live ones. Without the nft dump, iptables-nft's
/// layer is saved whatever it holds.
pub fn gather_facts_except_nft_in(root: &Root) -> FirewallFacts {
    facts_with(root, Vec::new(), true)
}

/// Every fact of the detector but firewalld's answer on the bus, with the nft tables already
/// read (the nftables backend's dump): iptables-nft's layer is saved only when the dump shows one
/// of its `ip` tables, legacy's only when ip_tables_names lists a table, so a host with only
/// nftables runs no program.
pub fn gather_facts(root: &Root, nft_tables: Vec<NftTable>) -> FirewallFacts {
    let xt_v4 = nft_tables
        .iter()
        .any(|t| t.made_by_iptables_nft && t.family == "ip");
    facts_with(root, nft_tables, xt_v4)
}

/// The facts, saving iptables-nft's IPv4 layer only when `save_nft_v4` and legacy's only when it
/// has tables, so that nothing is created by looking (ufw's and firewalld's iptables chains show
/// in the saves).
fn facts_with(root: &Root, nft_tables: Vec<NftTable>, save_nft_v4: bool) -> FirewallFacts {
    let legacy_v4_tables = legacy_tables(Family::V4);
    let legacy_v6_tables = legacy_tables(Family::V6);
    let ufw_conf =
        crate::bounded::read_to_string(root.path("/etc/ufw/ufw.conf"), crate::bounded::CONFIG)
            .unwrap_or_default();
    let mut layers = Vec::new();
    if save_nft_v4 {
        layers.push(IptablesBackend::new(Variant::Nft, Family::V4));
    }
    if !legacy_v4_tables.is_empty() {
        layers.push(IptablesBackend::new(Variant::Legacy, Family::V4));
    }
    let saves: Vec<String> = layers
        .iter()
        .filter_map(|b| b.save_text().ok().flatten())
        .collect();
    let ufw_present = ufw_enabled(&ufw_conf) || saves.iter().any(|t| save_has_ufw_chains(t));
    let firewalld = FirewalldFacts {
        tables: saves
            .iter()
            .filter(|t| save_has_firewalld_chains(t))
            .map(|_| "iptables chain INPUT_ZONES".to_string())
            .take(1)
            .collect(),
        ..Default::default()
    };
    FirewallFacts {
        legacy_v4_tables,
        legacy_v6_tables,
        nft_tables,
        firewalld,
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

/// firewalld's iptables backend sends INPUT through its `INPUT_ZONES` chain.
pub fn save_has_firewalld_chains(save_text: &str) -> bool {
    save_text.lines().any(|l| l.starts_with(":INPUT_ZONES "))
}

pub fn save_has_ufw_chains(save_text: &str) -> bool {
    save_text
        .lines()
        .any(|l| l.starts_with(":ufw-") || l.starts_with(":ufw6-"))
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

    fn firewalld(tables: &[&str], on_bus: bool) -> FirewalldFacts {
        FirewalldFacts {
            tables: tables.iter().map(|s| s.to_string()).collect(),
            on_bus,
            bus_error: (!on_bus).then(|| "org.freedesktop.DBus.Error.ServiceUnknown".to_string()),
        }
    }

    #[test]
    fn firewalld_in_charge_takes_auto() {
        let facts = FirewallFacts {
            nft_tables: vec![
                table("inet", "firewalld", false, true),
                table("inet", "filter", false, true),
            ],
            firewalld: firewalld(&["table inet firewalld"], true),
            ..Default::default()
        };
        assert_eq!(
            layers(FirewallChoice::Auto, &facts).unwrap(),
            vec![LayerKind::Firewalld]
        );
        assert_eq!(
            layers(FirewallChoice::Firewalld, &facts).unwrap(),
            vec![LayerKind::Firewalld]
        );
        // Asked for explicitly, the other backends still do as told.
        assert_eq!(
            layers(FirewallChoice::Nft, &facts).unwrap(),
            vec![LayerKind::Nft]
        );
        assert!(notes(&facts).iter().any(|n| n.contains("--reload")));
    }

    #[test]
    fn firewalld_tables_without_the_daemon_name_both_facts() {
        let facts = FirewallFacts {
            nft_tables: vec![table("inet", "firewalld", false, true)],
            firewalld: firewalld(&["table inet firewalld"], false),
            ..Default::default()
        };
        let msg = layers(FirewallChoice::Auto, &facts)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("table inet firewalld")
                && msg.contains("does not answer on the system bus")
                && msg.contains("ServiceUnknown"),
            "{msg}"
        );
        let msg = layers(FirewallChoice::Firewalld, &facts)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("--firewall firewalld: firewalld does not answer"));
        // A firewalld answering on the bus without a ruleset here (another namespace) is ignored.
        let elsewhere = FirewallFacts {
            nft_tables: vec![table("inet", "filter", false, true)],
            firewalld: firewalld(&[], true),
            ..Default::default()
        };
        assert_eq!(
            layers(FirewallChoice::Auto, &elsewhere).unwrap(),
            vec![LayerKind::Nft]
        );
        assert!(notes(&elsewhere).iter().any(|n| n.contains("ignored here")));
        assert_eq!(
            firewalld_nft_tables(&facts.nft_tables),
            ["table inet firewalld"]
        );
        assert!(save_has_firewalld_chains(
            "*filter\n:INPUT ACCEPT [0:0]\n:INPUT_ZONES - [0:0]\n"
        ));
    }

    #[test]
    fn removal_looks_everywhere() {
        let facts = FirewallFacts {
            legacy_v6_tables: vec!["filter".into()],
            nft_tables: vec![
                table("ip", "filter", true, true),
                table("inet", "firewalld", false, true),
            ],
            firewalld: firewalld(&["table inet firewalld"], true),
            ..Default::default()
        };
        assert_eq!(
            layers_for_removal(&facts),
            vec![LEGACY_V6, XT_V4, LayerKind::Firewalld]
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
    fn ufw_probes() {
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
    }
}
