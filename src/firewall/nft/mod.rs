//! The nftables backend, over netlink (libnftnl through `nftnl-sys`, libmnl through `mnl`).
//!
//! On a default-deny server an accept opens nothing unless it sits inside every base chain that
//! can drop the packet (DESIGN.md): so the tool puts, in each table with a filter base chain on
//! the input hook (and on the output hook when its policy drops), a chain `ovh_access` and the
//! sets `ovh_access_v4`/`ovh_access_v6` (tagged with the comment `ovh-access`), and inserts one
//! tagged jump at the head of each such base chain. Everything goes in one batch checked against
//! the generation id the ruleset was read at; removal finds the jumps by tag, never by a handle
//! remembered from an earlier run (handles are reused once a table is recreated).
//!
//! `sys` holds the only unsafe code; `netlink` the socket conversation; `inspect` reads the facts;
//! `plan` is pure; `apply` builds and sends the batch.
mod apply;
mod inspect;
mod netlink;
mod plan;
mod sys;

use anyhow::Result;
use serde::Serialize;

pub use inspect::{Element, Family, Hook};
pub use plan::{render as render_ops, Op, Plan};

use crate::firewall::{Backend, LayerChange, OpenRequest};
use inspect::RuleDepth;
use netlink::{Conn, NlError};

/// The chain holding the accept rules for the input hook.
pub const CHAIN_IN: &str = "ovh_access";
/// The chain holding the accept rules for the replies on the output hook.
pub const CHAIN_OUT: &str = "ovh_access_out";
pub const SET_V4: &str = "ovh_access_v4";
pub const SET_V6: &str = "ovh_access_v6";

/// The nftables layer of the current network namespace.
pub struct NftBackend {
    conn: Conn,
}

impl NftBackend {
    /// Open the netlink socket and check that nf_tables answers (so that a missing module or a
    /// missing CAP_NET_ADMIN is reported here, as one sentence).
    pub fn new() -> Result<NftBackend> {
        let mut conn = Conn::open().map_err(|e| explain(e, "open a netlink socket to nf_tables"))?;
        inspect::read_genid(&mut conn).map_err(|e| explain(e, "read the nftables generation"))?;
        Ok(NftBackend { conn })
    }

    /// The facts as the planner would see them (for tests and `doctor`).
    pub fn facts(&mut self) -> Result<Facts> {
        inspect::read_facts(&mut self.conn, |_| RuleDepth::All, true).map_err(|e| explain(e, "read the nftables ruleset"))
    }

    fn change(&mut self, dry_run: bool, plan_fn: impl FnMut(&Facts) -> Result<Plan>, depth: impl Fn(&inspect::TableFacts) -> RuleDepth) -> Result<LayerChange> {
        let outcome = apply::run(&mut self.conn, depth, plan_fn, dry_run)?;
        let (_, plan) = outcome.map_err(|f| {
            let what = f.what.unwrap_or_else(|| "apply the batch".into());
            explain(f.error, &what)
        })?;
        Ok(LayerChange {
            layer: "nftables".into(),
            changed: !plan.ops.is_empty(),
            script: plan::render(&plan.ops),
            chains: plan.chains,
            notes: plan.notes,
        })
    }
}

pub use inspect::Facts;

impl Backend for NftBackend {
    fn name(&self) -> String {
        "nftables".into()
    }

    fn open(&mut self, req: &OpenRequest, dry_run: bool) -> Result<LayerChange> {
        // Grant reads only the head of the big chains: the jump it looks for is inserted there,
        // and a missing one is simply inserted again.
        let depth = |t: &inspect::TableFacts| {
            RuleDepth::UntilJumps(inspect::jumps_to_tool_chains(t))
        };
        self.change(dry_run, |f| plan::plan_open(f, req), depth)
    }

    fn close(&mut self, dry_run: bool) -> Result<LayerChange> {
        // Revoke reads until it has seen as many tagged jumps as the kernel counts references to
        // the tool's chains: usually the head of each chain only.
        let depth = |t: &inspect::TableFacts| {
            RuleDepth::UntilJumps(inspect::jumps_to_tool_chains(t))
        };
        self.change(dry_run, plan::plan_close, depth)
    }
}

/// One table as `list_tables` reports it (for the detector and `status`/`doctor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftTableInfo {
    /// ip, ip6, inet, arp, bridge, netdev
    pub family: String,
    pub name: String,
    pub made_by_iptables_nft: bool,
    /// Names of the filter base chains on the input hook.
    pub input_base_chains: Vec<String>,
    pub has_tool_objects: bool,
}

/// Every nftables table of the current network namespace.
pub fn list_tables() -> Result<Vec<NftTableInfo>> {
    let mut conn = Conn::open().map_err(|e| explain(e, "open a netlink socket to nf_tables"))?;
    let facts = inspect::read_facts(&mut conn, |_| RuleDepth::UntilJumps(0), false)
        .map_err(|e| explain(e, "read the nftables ruleset"))?;
    Ok(facts
        .tables
        .iter()
        .map(|t| NftTableInfo {
            family: t.family.name().into(),
            name: t.name.clone(),
            made_by_iptables_nft: t.made_by_iptables_nft(),
            input_base_chains: t.chains.iter().filter(|c| c.is_filter_on(Hook::Input)).map(|c| c.name.clone()).collect(),
            has_tool_objects: t.has_tool_objects(),
        })
        .collect())
}

/// What of the tool is present in nftables, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftToolState {
    /// Tables that have the tool's objects or a base chain it would hook.
    pub tables: Vec<NftTableState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftTableState {
    pub family: String,
    pub name: String,
    /// Each filter base chain on input (and output with policy drop), and its jump.
    pub hooks: Vec<NftHookState>,
    /// The tool's chains present (`ovh_access`, `ovh_access_out`).
    pub chains: Vec<String>,
    /// The tool's sets present, with their elements.
    pub sets: Vec<NftSetState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftHookState {
    /// `input`
    pub chain: String,
    /// `input` or `output`
    pub hook: String,
    /// A tagged jump to the tool's chain is present somewhere in the chain.
    pub jump_present: bool,
    /// ... and it is the first rule, where nothing the user wrote can drop before it.
    pub jump_at_head: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftSetState {
    pub name: String,
    /// Addresses with their timeout and the time left (ms), as the kernel reports them.
    pub elements: Vec<Element>,
}

impl NftToolState {
    /// True when nothing of the tool is present.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(|t| t.chains.is_empty() && t.sets.is_empty() && !t.hooks.iter().any(|h| h.jump_present))
    }
}

/// The tool's objects in the current network namespace, read in full.
pub fn tool_state() -> Result<NftToolState> {
    let mut conn = Conn::open().map_err(|e| explain(e, "open a netlink socket to nf_tables"))?;
    let facts = inspect::read_facts(&mut conn, |_| RuleDepth::All, true).map_err(|e| explain(e, "read the nftables ruleset"))?;
    Ok(state_of(&facts))
}

fn state_of(facts: &Facts) -> NftToolState {
    let mut tables = Vec::new();
    for t in facts.tables.iter().filter(|t| t.family.is_ip() && !t.made_by_iptables_nft()) {
        let hooks: Vec<NftHookState> = t
            .chains
            .iter()
            .filter(|c| c.is_filter_on(Hook::Input) || (c.is_filter_on(Hook::Output) && c.base.as_ref().is_some_and(|b| b.policy_drop)))
            .map(|c| {
                let rules = c.rules.as_deref().unwrap_or_default();
                NftHookState {
                    chain: c.name.clone(),
                    hook: if c.is_filter_on(Hook::Input) { "input" } else { "output" }.into(),
                    jump_present: rules.iter().any(|r| r.is_tool_jump()),
                    jump_at_head: rules.first().is_some_and(|r| r.is_tool_jump()),
                }
            })
            .collect();
        let chains: Vec<String> = t.chains.iter().filter(|c| c.is_tool_chain()).map(|c| c.name.clone()).collect();
        let sets: Vec<NftSetState> = t
            .sets
            .iter()
            .filter(|s| s.is_tool_set())
            .map(|s| NftSetState { name: s.name.clone(), elements: s.elements.clone().unwrap_or_default() })
            .collect();
        if hooks.is_empty() && chains.is_empty() && sets.is_empty() {
            continue;
        }
        tables.push(NftTableState { family: t.family.name().into(), name: t.name.clone(), hooks, chains, sets });
    }
    NftToolState { tables }
}

/// One sentence per failure: what, where, how to fix.
fn explain(e: NlError, doing: &str) -> anyhow::Error {
    let errno = e.errno();
    let msg = match errno {
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "nftables: permission denied while trying to {doing}; run ovh-access as root (it needs CAP_NET_ADMIN)"
        ),
        Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) | Some(libc::EOPNOTSUPP) => format!(
            "nftables: the kernel has no nf_tables (could not {doing}); load it with `modprobe nf_tables` or use --firewall iptables"
        ),
        Some(libc::EMSGSIZE) | Some(libc::ENOBUFS) => format!(
            "nftables: the batch is too large for one netlink message (could not {doing}); grant fewer addresses or ports at once"
        ),
        Some(libc::ENOENT) => format!(
            "nftables: a table, chain or set disappeared while the tool was working (could not {doing}); another program is changing the ruleset: run the command again"
        ),
        Some(netlink::ERESTART) | None if matches!(e, NlError::Interrupted | NlError::Kernel { .. }) => format!(
            "nftables: the ruleset kept changing while the tool tried to {doing} ({} attempts); stop the program that rewrites it and run the command again",
            apply::MAX_ATTEMPTS
        ),
        Some(libc::EAGAIN) => format!(
            "nftables: the kernel did not answer in time while the tool tried to {doing}; run the command again"
        ),
        _ => format!("nftables: could not {doing}: {e}; check `nft list ruleset` and run the command again"),
    };
    anyhow::Error::new(e).context(msg)
}
