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
//! `sys/` holds the only unsafe code (message encoding and decoding, socket options); `netlink`
//! the socket conversation; `inspect` reads the facts (each table named by one `TableId`);
//! `family` names families, hooks and IP versions; `plan` is pure; `apply` writes the batch, one
//! method per kind of change, and sends it; `drift` tells whether the layer holds exactly what a
//! grant wrote.
mod apply;
mod drift;
mod family;
mod inspect;
mod netlink;
mod plan;
mod sys;

use anyhow::Result;
use serde::Serialize;

pub use inspect::{
    BaseChain, ChainFacts, Element, Facts, Family, Hook, RuleFacts, SetFacts, TableFacts, TableId,
};
pub use plan::{refusals, refusals_not_left_to_firewalld, render as render_ops, Op, Plan};

use crate::firewall::{Backend, LayerChange, LayerState, Mode, OpenRequest};
use inspect::{IpVersion, RuleDepth, SetElements};
use netlink::{Conn, NlError};

/// The chain holding the accept rules for the input hook.
pub const CHAIN_IN: &str = "ovh_access";
/// The chain holding the accept rules for the replies on the output hook.
pub const CHAIN_OUT: &str = "ovh_access_out";
/// The chain jumped to from prerouting and netdev ingress chains: its accepts are limited to
/// packets for this host (`fib daddr type local`), so that nothing routed through is let by.
pub const CHAIN_PRE: &str = "ovh_access_pre";
pub const SET_V4: &str = "ovh_access_v4";
pub const SET_V6: &str = "ovh_access_v6";

const NO_NF_TABLES: &str = "nftables: the kernel has no nf_tables (nfnetlink knows no such subsystem); load it with `modprobe nf_tables` or choose --firewall iptables";

/// The nftables layer of the current network namespace.
pub struct NftBackend {
    conn: Conn,
    /// The ruleset as last read, while the kernel's generation id says it is still the one in
    /// place: a command reads it once however many times it plans (a rehearsal, the journal's
    /// records, the change itself). A batch planned from it is checked against its generation
    /// id by the kernel anyway.
    known: Option<Facts>,
}

impl NftBackend {
    /// Open the netlink socket and check that nf_tables answers (so that a missing module or a
    /// missing CAP_NET_ADMIN is reported here, as one sentence).
    pub fn new() -> Result<NftBackend> {
        let mut conn = open_conn()?;
        read_genid(&mut conn)?;
        Ok(NftBackend { conn, known: None })
    }

    /// [`NftBackend::new`], starting from `facts` (used only while the generation id says
    /// they are current). nf_tables answered when they were read: no check again.
    pub fn seeded(facts: Option<&Facts>) -> Result<NftBackend> {
        match facts {
            Some(f) => Ok(NftBackend {
                conn: open_conn()?,
                known: Some(f.clone()),
            }),
            None => NftBackend::new(),
        }
    }

    /// The facts known, if the ruleset is still the one they describe (they are given up).
    fn take_current(&mut self) -> Result<Option<Facts>> {
        match self.known.take() {
            Some(f) if read_genid(&mut self.conn)? == f.genid => Ok(Some(f)),
            _ => Ok(None),
        }
    }

    /// The facts: those known while still current, else a dump; kept for the next plan.
    fn read(&mut self) -> Result<Facts> {
        let facts = match self.take_current()? {
            Some(f) => f,
            None => read_consistent(&mut self.conn, grant_depth, SetElements::Read)?,
        };
        self.known = Some(facts.clone());
        Ok(facts)
    }

    /// Read the ruleset and plan a grant, changing nothing. With [`NftBackend::apply`] this is
    /// `open` in two steps, for a caller that records the plan (a journal) before applying it.
    pub fn plan_open(&mut self, req: &OpenRequest) -> Result<(Facts, Plan)> {
        // The elements too: an unchanged set is left alone (see `plan::plan_open`).
        let facts = self.read()?;
        let plan = plan::plan_open(&facts, req)?;
        Ok((facts, plan))
    }

    /// Read the ruleset and plan a revoke, changing nothing.
    pub fn plan_close(&mut self) -> Result<(Facts, Plan)> {
        let facts = read_consistent(&mut self.conn, grant_depth, SetElements::Skip)?;
        let plan = plan::plan_close(&facts)?;
        Ok((facts, plan))
    }

    /// Apply a plan made from `facts`, as one batch. The kernel refuses the whole batch if the
    /// ruleset changed since `facts` were read (generation id); then read and plan again.
    pub fn apply(&mut self, facts: &Facts, plan: &Plan) -> Result<()> {
        if plan.ops.is_empty() {
            return Ok(());
        }
        apply::send(&mut self.conn, &plan.ops, facts.genid, netlink::BatchEnd::of_this_kernel()).map_err(|f| {
            if f.error.errno() == Some(netlink::ERESTART) {
                return anyhow::Error::new(f.error).context(
                    "nftables: the ruleset changed after it was read, so the kernel refused the whole batch; read it and plan again",
                );
            }
            explain_failure(f)
        })
    }

    /// The facts as the planner would see them (for tests and `doctor`).
    pub fn facts(&mut self) -> Result<Facts> {
        read_consistent(&mut self.conn, |_| RuleDepth::All, SetElements::Read)
    }

    fn change(
        &mut self,
        mode: Mode,
        elements: SetElements,
        plan_fn: impl FnMut(&Facts) -> Result<Plan>,
        depth: impl Fn(&inspect::TableFacts) -> RuleDepth,
    ) -> Result<LayerChange> {
        let known = self.take_current()?;
        let outcome = apply::run(&mut self.conn, known, depth, elements, plan_fn, mode)?;
        let (facts, plan) = outcome.map_err(explain_failure)?;
        // What was sent changed the generation: the next plan reads again.
        if mode.is_dry_run() || plan.ops.is_empty() {
            self.known = Some(facts);
        }
        Ok(LayerChange {
            layer: "nftables".into(),
            changed: !plan.ops.is_empty(),
            script: plan::render(&plan.ops),
            chains: plan.chains,
            notes: plan.notes,
            recorded: Vec::new(),
        })
    }
}

impl Backend for NftBackend {
    fn name(&self) -> String {
        "nftables".into()
    }

    /// One dump (elements included, each hooked chain read to its jumps): presence is what a
    /// close would remove, need is what an open would add, and the drift rules are
    /// [`drift::compare`]'s.
    fn inspect(&mut self, want: Option<&OpenRequest>, _recorded: &[String]) -> Result<LayerState> {
        let facts = self.read()?;
        drift::layer_state(&facts, want)
    }

    fn open(&mut self, req: &OpenRequest, _recorded: &[String], mode: Mode) -> Result<LayerChange> {
        // The sets' elements are read so that a set already holding exactly the grant's
        // addresses is left alone: a repeated grant then sends no batch at all.
        self.change(
            mode,
            SetElements::Read,
            |f| plan::plan_open(f, req),
            grant_depth,
        )
    }

    /// Removal reads each hooked chain until it has seen as many tagged jumps as the kernel
    /// counts references to the tool's chains: usually the head only.
    fn close(&mut self, _recorded: &[String], mode: Mode) -> Result<LayerChange> {
        self.change(mode, SetElements::Skip, plan::plan_close, grant_depth)
    }
}

/// The facts, read again when a dump was interrupted by a concurrent change (NLM_F_DUMP_INTR).
fn read_consistent(
    conn: &mut Conn,
    depth: impl Fn(&inspect::TableFacts) -> RuleDepth,
    elements: SetElements,
) -> Result<Facts> {
    let mut last = None;
    for _ in 0..apply::MAX_ATTEMPTS {
        match inspect::read_facts(conn, &depth, elements) {
            Ok(f) => return Ok(f),
            Err(NlError::Interrupted) => last = Some(NlError::Interrupted),
            // A table or chain listed a moment ago was deleted before its rules were dumped:
            // the ruleset changed under the read, as with an interrupted dump.
            Err(e) if e.errno() == Some(libc::ENOENT) => last = Some(e),
            Err(e) => return Err(explain(e, "read the nftables ruleset")),
        }
    }
    Err(explain(
        last.expect("at least one attempt"),
        "read the nftables ruleset",
    ))
}

/// How far to read the big chains: until as many tagged jumps were seen as the kernel counts
/// references to the tool's chains, and at least their head, where the tool inserts its jump
/// (and where iptables-nft's expressions show). A missing jump is simply inserted again, so a
/// grant on a 100 000-rule chain reads about as much as on a 10-rule one.
fn grant_depth(t: &inspect::TableFacts) -> RuleDepth {
    RuleDepth::UntilJumps(inspect::jumps_to_tool_chains(t))
}

/// The ruleset as every command first reads it: the tables for the detector, and the facts each
/// plan starts from (elements included, each hooked chain read to its jumps).
pub fn read_ruleset() -> Result<Facts> {
    let mut conn = open_conn()?;
    read_genid(&mut conn)?;
    read_consistent(&mut conn, grant_depth, SetElements::Read)
}

/// The generation id of the ruleset in place.
pub fn current_genid() -> Result<u32> {
    read_genid(&mut open_conn()?)
}

/// The detector's view of each table of the dump.
pub fn detector_tables(facts: &Facts) -> Vec<crate::firewall::detect::NftTable> {
    facts
        .tables
        .iter()
        .map(|t| crate::firewall::detect::NftTable {
            family: t.id.family.name().into(),
            name: t.id.name.clone(),
            made_by_iptables_nft: t.made_by_iptables_nft(),
            has_input_base_chain: t
                .chains
                .iter()
                .any(|c| c.tool_target(t.id.family).is_some()),
        })
        .collect()
}

/// The generation id, as the one sentence a missing module or capability deserves.
fn read_genid(conn: &mut Conn) -> Result<u32> {
    inspect::read_genid(conn).map_err(|e| match e.errno() {
        // nfnetlink_rcv_msg answers EINVAL for a subsystem that is neither loaded nor
        // loadable: the kernel has no nf_tables.
        Some(libc::EINVAL) => anyhow::Error::new(e).context(NO_NF_TABLES),
        _ => explain(e, "read the nftables generation"),
    })
}

/// What of the tool is present in nftables, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftToolState {
    /// Tables that have the tool's objects or a base chain it would hook.
    pub tables: Vec<NftTableState>,
    /// Base chains that can drop the support and that the tool cannot open (a table another
    /// process owns, an inet ingress chain), one sentence each.
    pub blocked: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftTableState {
    pub family: String,
    pub name: String,
    /// Each base chain the tool hooks (every filter chain on input; those on prerouting,
    /// ingress and output that can drop), and its jump.
    pub hooks: Vec<NftHookState>,
    /// The tool's chains present (`ovh_access`, `ovh_access_out`).
    pub chains: Vec<String>,
    /// For each of them, its rules as the tool wrote them (their signature; empty for a rule
    /// the tool did not write), to compare with [`NftTableState::rules_wanted`].
    pub chain_rules: Vec<Vec<String>>,
    /// The tool's sets present, with their elements.
    pub sets: Vec<NftSetState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftHookState {
    /// `input`
    pub chain: String,
    /// `input`, `output`, `prerouting` or `ingress`
    pub hook: String,
    /// Its policy or a rule read can drop the support's packets.
    pub can_drop: bool,
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

impl NftTableState {
    /// The rules the tool writes into its chain `chain` of this table for `ports`, in order.
    pub fn rules_wanted(&self, chain: &str, ports: &[u16]) -> Vec<String> {
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        let dir = plan::direction_of(chain);
        let versions: &[IpVersion] = match self.family.as_str() {
            "ip" => &[IpVersion::V4],
            "ip6" => &[IpVersion::V6],
            _ => &IpVersion::ALL,
        };
        versions
            .iter()
            .map(|&ip| plan::access_rule_text(ip, dir, plan::set_name(ip), &ports))
            .collect()
    }
}

impl NftToolState {
    /// True when nothing of the tool is present.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(|t| {
            t.chains.is_empty() && t.sets.is_empty() && !t.hooks.iter().any(|h| h.jump_present)
        })
    }
}

/// The tool's objects in the current network namespace, read in full.
pub fn tool_state() -> Result<NftToolState> {
    let mut conn = open_conn()?;
    // Read until every jump the kernel counts was seen: the jumps sit at the head, so a status on
    // a 100 000-rule chain does not dump it all.
    let facts = read_consistent(&mut conn, grant_depth, SetElements::Read)?;
    Ok(state_of(&facts))
}

fn state_of(facts: &Facts) -> NftToolState {
    let mut tables = Vec::new();
    for t in facts
        .tables
        .iter()
        .filter(|t| t.id.family.carries_ip() && !t.made_by_iptables_nft() && !t.owned)
    {
        let hooks: Vec<NftHookState> = t
            .chains
            .iter()
            .filter(|c| c.tool_target(t.id.family).is_some())
            .map(|c| {
                let rules = c.rules.as_deref().unwrap_or_default();
                NftHookState {
                    chain: c.name.clone(),
                    hook: c.base.as_ref().map_or("", |b| b.hook.name()).into(),
                    can_drop: c.can_drop(),
                    jump_present: rules.iter().any(|r| r.is_tool_jump()),
                    jump_at_head: rules.first().is_some_and(|r| r.is_tool_jump()),
                }
            })
            .collect();
        let ours: Vec<&ChainFacts> = t.chains.iter().filter(|c| c.is_tool_chain()).collect();
        let chains: Vec<String> = ours.iter().map(|c| c.name.clone()).collect();
        let chain_rules: Vec<Vec<String>> = ours.iter().map(|c| c.signatures()).collect();
        let sets: Vec<NftSetState> = t
            .sets
            .iter()
            .filter(|s| s.is_tool_set())
            .map(|s| NftSetState {
                name: s.name.clone(),
                elements: s.elements.clone().unwrap_or_default(),
            })
            .collect();
        if hooks.is_empty() && chains.is_empty() && sets.is_empty() {
            continue;
        }
        tables.push(NftTableState {
            family: t.id.family.name().into(),
            name: t.id.name.clone(),
            hooks,
            chains,
            chain_rules,
            sets,
        });
    }
    NftToolState {
        tables,
        blocked: plan::refusals(facts),
    }
}

fn open_conn() -> Result<Conn> {
    Conn::open().map_err(|e| explain(e, "open a netlink socket to nf_tables"))
}

/// A failed batch, named by the message the kernel refused.
fn explain_failure(f: apply::BatchFailure) -> anyhow::Error {
    let what = f.what.unwrap_or_else(|| "apply the batch".into());
    explain(f.error, &what)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(errno: i32) -> String {
        format!(
            "{:#}",
            explain(
                NlError::Kernel { seq: 3, errno },
                "insert the jump into inet filter input"
            )
        )
    }

    #[test]
    fn errors_are_one_sentence_with_the_fix() {
        assert!(kernel(libc::EPERM)
            .starts_with("nftables: permission denied while trying to insert the jump"));
        assert!(kernel(libc::EPERM).contains("run ovh-access as root"));
        assert!(kernel(libc::EMSGSIZE).contains("too large for one netlink message"));
        assert!(kernel(libc::ENOENT).contains("disappeared while the tool was working"));
        assert!(kernel(netlink::ERESTART).contains("kept changing"));
        assert!(kernel(libc::EOPNOTSUPP).contains("modprobe nf_tables"));
        let open = NlError::Open(std::io::Error::from_raw_os_error(libc::EPROTONOSUPPORT));
        assert!(
            format!("{:#}", explain(open, "open a netlink socket to nf_tables"))
                .contains("has no nf_tables")
        );
        assert!(kernel(libc::EINVAL).contains("could not insert the jump into inet filter input"));
    }

    #[test]
    fn state_reports_jumps_sets_and_their_elements() {
        let mut input = ChainFacts {
            name: "input".into(),
            handle: 1,
            base: Some(BaseChain {
                hook: Hook::Input,
                priority: 0,
                chain_type: "filter".into(),
                policy_drop: true,
            }),
            use_count: 2,
            comment: None,
            rules: Some(vec![
                RuleFacts {
                    handle: 4,
                    jump_to: None,
                    comment: None,
                    xt: false,
                    drops: false,
                    iptables_readable: true,
                    signature: None,
                },
                RuleFacts {
                    handle: 9,
                    jump_to: Some(CHAIN_IN.into()),
                    comment: Some(crate::firewall::TAG.into()),
                    xt: false,
                    drops: false,
                    iptables_readable: true,
                    signature: None,
                },
            ]),
            rules_complete: true,
        };
        let el = Element {
            address: "192.0.2.9".parse().unwrap(),
            timeout_ms: Some(60_000),
            expires_ms: Some(30_000),
        };
        let table = TableFacts {
            id: TableId {
                family: Family::Inet,
                name: "filter".into(),
            },
            handle: 1,
            chains: vec![input.clone()],
            sets: vec![SetFacts {
                name: SET_V4.into(),
                handle: 2,
                comment: Some(crate::firewall::TAG.into()),
                elements: Some(vec![el.clone()]),
            }],
            owned: false,
            owner: None,
        };
        let st = state_of(&Facts {
            genid: 1,
            tables: vec![table.clone()],
        });
        assert_eq!(
            st.tables[0].hooks,
            vec![NftHookState {
                chain: "input".into(),
                hook: "input".into(),
                jump_present: true,
                can_drop: true,
                jump_at_head: false
            }]
        );
        assert_eq!(st.tables[0].sets[0].elements, vec![el]);
        assert!(!st.is_empty());
        input.rules = Some(vec![]);
        let bare = TableFacts {
            chains: vec![input],
            sets: vec![],
            ..table
        };
        assert!(state_of(&Facts {
            genid: 1,
            tables: vec![bare]
        })
        .is_empty());
    }
}
