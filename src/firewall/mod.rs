//! One interface over the firewall backends. A backend inspects its layer, plans the change as a
//! pure function of what it found, and applies it atomically; `access` drives them in the safe
//! order (open before the key is enabled, close after it is disabled).
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

/// The tag carried by everything the tool creates in a firewall: nft rule userdata/comments,
/// iptables `-m comment`, so that removal finds its own objects by tag, never by position.
pub const TAG: &str = "ovh-access";

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
}

/// A firewall layer the tool can program.
pub trait Backend {
    /// Short name of the layer, as in [`LayerChange::layer`].
    fn name(&self) -> String;
    /// Open the ports for the addresses (idempotent: a second call updates in place).
    fn open(&mut self, req: &OpenRequest, dry_run: bool) -> Result<LayerChange>;
    /// Remove everything the tool added to this layer (idempotent: nothing found, nothing changed).
    fn close(&mut self, dry_run: bool) -> Result<LayerChange>;
}

pub mod detect;
pub mod firewalld;
pub mod iptables;
pub mod nft;

/// The backends for the layers this system really has. For a grant (`for_open`), `choice`
/// decides and firewalld refuses `auto`; for revoke, status and restore every layer that exists
/// is returned, since removing the tool's objects is always safe.
pub fn select(
    choice: crate::cli::FirewallChoice,
    for_open: bool,
    report: &mut crate::report::Report,
) -> Result<Vec<Box<dyn Backend>>> {
    use crate::cli::FirewallChoice;
    use detect::LayerKind;
    if for_open && choice == FirewallChoice::None {
        return Ok(Vec::new());
    }
    let mut facts = detect::gather_facts_except_nft();
    let nft_error = match nft::list_tables() {
        Ok(tables) => {
            facts.nft_tables = tables
                .into_iter()
                .map(|t| detect::NftTable {
                    family: t.family,
                    name: t.name,
                    made_by_iptables_nft: t.made_by_iptables_nft,
                    has_input_base_chain: !t.input_base_chains.is_empty(),
                })
                .collect();
            None
        }
        Err(e) => Some(e),
    };
    // Without nf_tables only iptables-legacy can filter; when it has no tables either, the error
    // about nf_tables is the one that explains why nothing can be programmed.
    if let Some(e) = nft_error {
        let forced_nft = for_open && choice == FirewallChoice::Nft;
        let legacy = !facts.legacy_v4_tables.is_empty() || !facts.legacy_v6_tables.is_empty();
        if forced_nft || !legacy {
            return Err(e);
        }
        report.warn(format!(
            "nftables is not usable ({e:#}); only iptables-legacy is programmed"
        ));
    }
    detect::ask_firewalld(&mut facts, for_open && choice == FirewallChoice::Firewalld);
    if !for_open && !facts.firewalld.tables.is_empty() && !facts.firewalld.on_bus {
        report.warn(format!(
            "firewalld's ruleset is loaded ({}) but firewalld does not answer on the system bus: its rich rules were not looked at",
            facts.firewalld.tables.join(", ")
        ));
    }
    let kinds = if for_open {
        for n in detect::notes(&facts) {
            report.warn(n);
        }
        detect::layers(choice, &facts)?
    } else {
        detect::layers_for_removal(&facts)
    };
    let mut out: Vec<Box<dyn Backend>> = Vec::new();
    for k in kinds {
        match k {
            LayerKind::Nft => out.push(Box::new(nft::NftBackend::new()?)),
            LayerKind::Iptables(v, f) => out.push(Box::new(iptables::IptablesBackend::new(v, f))),
            LayerKind::Firewalld => out.push(Box::new(firewalld::FirewalldBackend::new()?)),
        }
    }
    Ok(out)
}
