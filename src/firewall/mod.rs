//! One interface over the firewall backends, with a read side and a change side. A backend
//! inspects its layer, plans the change as a pure function of what it found, and applies it
//! atomically; `access` drives them in the safe order (open before the key is enabled, close after
//! it is disabled) and asks [`Backend::inspect`] whether a layer still holds what a grant wrote.
//! Each backend owns its own drift rules: nothing above this module branches on a backend's name.
//! A command reads the firewall once ([`Snapshot`]) and selects its backends from that reading
//! again for as long as it is current.
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The tag carried by everything the tool creates in a firewall: nft rule userdata/comments,
/// iptables `-m comment`, so that removal finds its own objects by tag, never by position.
pub const TAG: &str = "ovh-access";

/// Which firewall to program (`--firewall`), as the state file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirewallChoice {
    /// Every firewall layer found (nftables tables, iptables-legacy, iptables-nft).
    #[default]
    Auto,
    /// Only native nftables.
    Nft,
    /// Only iptables (legacy and/or nft variant, whichever has tables).
    Iptables,
    /// Only firewalld, through its D-Bus API (runtime rich rules).
    Firewalld,
    /// Leave the firewall alone (the operator manages it).
    None,
}

impl FirewallChoice {
    pub const ALL: [FirewallChoice; 5] = [
        FirewallChoice::Auto,
        FirewallChoice::Nft,
        FirewallChoice::Iptables,
        FirewallChoice::Firewalld,
        FirewallChoice::None,
    ];

    /// The name `--firewall` takes and the state file records.
    pub fn name(self) -> &'static str {
        match self {
            FirewallChoice::Auto => "auto",
            FirewallChoice::Nft => "nft",
            FirewallChoice::Iptables => "iptables",
            FirewallChoice::Firewalld => "firewalld",
            FirewallChoice::None => "none",
        }
    }

    /// A recorded choice; an unknown name (a state file edited by hand) is `auto`, which
    /// programs every layer there is.
    pub fn from_name(s: &str) -> FirewallChoice {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .unwrap_or(FirewallChoice::Auto)
    }
}

impl Serialize for FirewallChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for FirewallChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(FirewallChoice::from_name(&String::deserialize(d)?))
    }
}

/// Whether a change is made or only described (`--dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    DryRun,
}

impl Mode {
    pub fn is_dry_run(self) -> bool {
        self == Mode::DryRun
    }
}

/// What to open: exactly these source addresses, to these TCP ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<u16>,
    /// When set, the kernel itself closes the door after this long (nft set element timeout,
    /// iptables `-m time --datestop`).
    pub timeout: Option<Duration>,
}

/// What one backend did (or, in a dry run, would do) in its layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LayerChange {
    /// The layer: `nftables`, `iptables-legacy`, `ip6tables-nft`, ...
    pub layer: String,
    /// False when the layer already was in the requested state.
    pub changed: bool,
    /// The change in the layer's own syntax (`nft -f` input, `iptables-restore` input), shown by
    /// `--dry-run`.
    pub script: String,
    /// The base chains the tool hooked into (`inet filter input`, ...).
    pub chains: Vec<String>,
    /// Things worth telling the operator (nothing to open, objects found missing, ...).
    pub notes: Vec<String>,
    /// What the layer now holds of the tool's, for a backend that cannot find its objects by a
    /// tag (firewalld's rich rules): recorded per layer in the grant and handed back to the next
    /// `open`, `close` and `inspect`. Backends that tag their objects leave it empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recorded: Vec<String>,
}

/// One way a layer differs from what the grant wrote, with the command that repairs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub what: String,
    pub repair: String,
}

impl Drift {
    pub fn new(what: impl Into<String>, repair: impl Into<String>) -> Drift {
        Drift {
            what: what.into(),
            repair: repair.into(),
        }
    }
}

/// What of the tool's is in a layer, compared with what a grant needs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerState {
    /// Nothing of the tool's, and nothing needed: no grant asked, or the layer filters nothing
    /// the grant must open (a `flush ruleset` left no input chain).
    Absent,
    /// Nothing of the tool's, though the grant needs it here (a `flush ruleset` or a firewall
    /// reload removed it while the layer still filters input).
    Missing,
    /// Exactly what the grant needs.
    Exact,
    /// The tool's objects are here but differ from what the grant needs (or, with no grant
    /// asked, they are here at all).
    Drift(Vec<Drift>),
}

impl LayerState {
    /// The layer holds objects of the tool's.
    pub fn present(&self) -> bool {
        matches!(self, LayerState::Exact | LayerState::Drift(_))
    }
}

/// A firewall layer the tool can program.
pub trait Backend {
    /// Short name of the layer, as in [`LayerChange::layer`].
    fn name(&self) -> String;
    /// Read only: what of the tool's is in this layer, and whether it is exactly what `want`
    /// needs (`None`: no grant, so anything of the tool's is a leftover). `recorded` is what the
    /// grant recorded for this layer ([`LayerChange::recorded`]).
    fn inspect(&mut self, want: Option<&OpenRequest>, recorded: &[String]) -> Result<LayerState>;
    /// Open the ports for the addresses (idempotent: a second call updates in place).
    fn open(&mut self, req: &OpenRequest, recorded: &[String], mode: Mode) -> Result<LayerChange>;
    /// Remove everything the tool added to this layer (idempotent: nothing found, nothing changed).
    fn close(&mut self, recorded: &[String], mode: Mode) -> Result<LayerChange>;
}

pub mod detect;
pub mod firewalld;
pub mod iptables;
pub mod nft;

/// What the backends are selected for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A grant: `choice` decides, and firewalld refuses `auto`.
    Open,
    /// Revoke, status, restore: every layer that exists, whatever `--firewall` the grant used,
    /// since removing the tool's objects is always safe.
    Remove,
}

/// What a command knows of the firewall, read once: the nftables ruleset and the detector's
/// facts. A later selection in the same command starts from it again while it is current (the
/// same nftables generation, the same legacy tables), so that a rehearsal, the journal's records
/// and the change itself do not each read the ruleset.
pub struct Snapshot {
    nft: Result<nft::Facts>,
    facts: detect::FirewallFacts,
    /// firewalld was asked on the bus even without its tables (`--firewall firewalld`).
    firewalld_asked: bool,
}

impl Snapshot {
    pub fn read(ask: detect::AskFirewalld) -> Snapshot {
        let nft = nft::read_ruleset();
        let tables = nft.as_ref().map(nft::detector_tables).unwrap_or_default();
        let mut facts = detect::gather_facts(&crate::root::Root::system(), tables);
        detect::ask_firewalld(&mut facts, ask);
        Snapshot {
            nft,
            facts,
            firewalld_asked: ask == detect::AskFirewalld::Always,
        }
    }

    /// Still what the system has, and enough for a selection that asks firewalld or not. A
    /// snapshot whose nftables read failed is never reused: the error is given once.
    pub fn serves(&self, ask: detect::AskFirewalld) -> bool {
        let Ok(f) = &self.nft else { return false };
        (self.firewalld_asked || ask == detect::AskFirewalld::IfLoaded)
            && nft::current_genid().ok() == Some(f.genid)
            && iptables::legacy_tables(iptables::Family::V4) == self.facts.legacy_v4_tables
            && iptables::legacy_tables(iptables::Family::V6) == self.facts.legacy_v6_tables
    }
}

/// When a selection asks firewalld on the bus.
pub fn asks_firewalld(choice: FirewallChoice, purpose: Purpose) -> detect::AskFirewalld {
    if purpose == Purpose::Open && choice == FirewallChoice::Firewalld {
        detect::AskFirewalld::Always
    } else {
        detect::AskFirewalld::IfLoaded
    }
}

/// The backends for the layers this system really has, from a snapshot of it, and what the
/// operator should be told about them. A failed nftables read is handed over to the caller (and
/// the snapshot no longer serves).
pub fn select(
    snap: &mut Snapshot,
    choice: FirewallChoice,
    purpose: Purpose,
    warnings: &mut Vec<String>,
) -> Result<Vec<Box<dyn Backend>>> {
    use detect::LayerKind;
    let for_open = purpose == Purpose::Open;
    if for_open && choice == FirewallChoice::None {
        return Ok(Vec::new());
    }
    let facts = &snap.facts;
    // Without nf_tables only iptables-legacy can filter; when it has no tables either, the error
    // about nf_tables is the one that explains why nothing can be programmed.
    if let Err(e) = &snap.nft {
        let why = format!("{e:#}");
        let forced_nft = for_open && choice == FirewallChoice::Nft;
        let legacy = !facts.legacy_v4_tables.is_empty() || !facts.legacy_v6_tables.is_empty();
        if forced_nft || !legacy {
            // The error itself (its kind decides the exit code); the snapshot keeps its text.
            let taken = std::mem::replace(&mut snap.nft, Err(anyhow::anyhow!(why)));
            return Err(taken.expect_err("matched above"));
        }
        warnings.push(format!(
            "nftables is not usable ({why}); only iptables-legacy is programmed"
        ));
    }
    if !for_open && !facts.firewalld.tables.is_empty() && !facts.firewalld.on_bus {
        warnings.push(format!(
            "firewalld's ruleset is loaded ({}) but firewalld does not answer on the system bus: its rich rules were not looked at",
            facts.firewalld.tables.join(", ")
        ));
    }
    let kinds = if for_open {
        warnings.extend(detect::notes(facts));
        detect::layers(choice, facts)?
    } else {
        detect::layers_for_removal(facts)
    };
    let mut out: Vec<Box<dyn Backend>> = Vec::new();
    for k in kinds {
        match k {
            LayerKind::Nft => out.push(Box::new(nft::NftBackend::seeded(snap.nft.as_ref().ok())?)),
            LayerKind::Iptables(v, f) => out.push(Box::new(iptables::IptablesBackend::new(v, f))),
            LayerKind::Firewalld => out.push(Box::new(firewalld::FirewalldBackend::new()?)),
        }
    }
    Ok(out)
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
            (FirewallChoice::Firewalld, "firewalld"),
            (FirewallChoice::None, "none"),
        ] {
            assert_eq!(c.name(), name);
            assert_eq!(FirewallChoice::from_name(name), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<FirewallChoice>(&json).unwrap(), c);
        }
        assert_eq!(FirewallChoice::from_name("bogus"), FirewallChoice::Auto);
    }
}
