//! Read-only probes: the generation id, the tables and chains with their hooks and policies, the
//! tool's own sets, and the rules of only the chains that matter. The result, [`Facts`], is all
//! the planner sees.
use std::net::IpAddr;
use std::ops::ControlFlow;

use super::netlink::{Conn, NlError};
use super::sys::{self, MsgBuf};
use super::{CHAIN_IN, CHAIN_OUT, CHAIN_PRE, SET_V4, SET_V6};
use crate::firewall::TAG;

pub use super::family::{Family, Hook, IpVersion};

/// A base chain's hook registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    pub priority: i32,
    /// `filter`, `nat`, `route`.
    pub chain_type: String,
    /// True when the policy is drop.
    pub policy_drop: bool,
}

/// One rule, reduced to what the planner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFacts {
    pub handle: u64,
    /// The chain a jump/goto verdict leads to.
    pub jump_to: Option<String>,
    /// The rule's comment (NFTNL_UDATA_RULE_COMMENT).
    pub comment: Option<String>,
    /// The rule uses xtables `match`/`target` expressions: it was written by iptables-nft.
    pub xt: bool,
    /// A drop verdict or a reject.
    pub drops: bool,
    /// Every expression is one iptables-nft can read back (see [`IPTABLES_NFT_EXPRS`]).
    pub iptables_readable: bool,
    /// The tool's access rules carry their own text in a private userdata TLV, so that a second
    /// grant with the same ports leaves them alone (see `UDATA_RULE_SIGNATURE`).
    pub signature: Option<String>,
}

impl RuleFacts {
    /// One of ours: a jump to a chain of ours, carrying the tag.
    pub fn is_tool_jump(&self) -> bool {
        self.comment.as_deref() == Some(TAG)
            && self.jump_to.as_deref().is_some_and(is_tool_chain_name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainFacts {
    pub name: String,
    pub handle: u64,
    pub base: Option<BaseChain>,
    /// How many rules (or map elements) jump to this chain: the kernel's `use` counter.
    pub use_count: u32,
    pub comment: Option<String>,
    /// The rules read from this chain, in order; `None` when the chain was not read.
    pub rules: Option<Vec<RuleFacts>>,
    /// False when only the head of a long chain was read (see `read_rules`).
    pub rules_complete: bool,
}

impl ChainFacts {
    pub fn is_tool_chain(&self) -> bool {
        is_tool_chain_name(&self.name) && self.comment.as_deref() == Some(TAG)
    }

    /// Rules read from this chain that the tool did not write (no signature, no tag): an
    /// administrator's additions to a chain the tool created, which it must not delete.
    pub fn foreign_rules(&self) -> usize {
        self.rules
            .iter()
            .flatten()
            .filter(|r| r.signature.is_none() && r.comment.as_deref() != Some(TAG))
            .count()
    }

    /// A filter base chain on `hook`.
    pub fn is_filter_on(&self, hook: Hook) -> bool {
        self.base
            .as_ref()
            .is_some_and(|b| b.hook == hook && b.chain_type == "filter")
    }

    /// The chain can end a packet: its policy drops, or a rule read drops, rejects or jumps
    /// elsewhere (a chain it leads to may drop). The tool's own jump does not count.
    pub fn can_drop(&self) -> bool {
        self.base.as_ref().is_some_and(|b| b.policy_drop)
            || self
                .rules
                .iter()
                .flatten()
                .any(|r| r.drops || (r.jump_to.is_some() && !r.is_tool_jump()))
    }

    fn has_tool_jump(&self) -> bool {
        self.rules.iter().flatten().any(|r| r.is_tool_jump())
    }

    /// The tool's chain this base chain must jump to, at its head, for the support to pass:
    /// every filter chain on input (drops can be added at any moment); on prerouting (any
    /// priority, raw included) and netdev ingress, to the chain that accepts only packets for
    /// this host; on output, to the chain of the replies — these when they can drop (or already
    /// jump to the tool, so a grant stays where it was). An inet ingress chain gets none: see
    /// [`ChainFacts::is_unopenable_ingress`].
    pub fn tool_target(&self, family: Family) -> Option<&'static str> {
        let base = self.base.as_ref().filter(|b| b.chain_type == "filter")?;
        let dropping = self.can_drop() || self.has_tool_jump();
        match base.hook {
            Hook::Input if family.is_ip() => Some(CHAIN_IN),
            Hook::Prerouting if family.is_ip() && dropping => Some(CHAIN_PRE),
            Hook::Ingress if family == Family::Netdev && dropping => Some(CHAIN_PRE),
            Hook::Output if family.is_ip() && dropping => Some(CHAIN_OUT),
            _ => None,
        }
    }

    /// An inet ingress chain that can drop: the kernel refuses `fib` there (nft_fib_validate
    /// allows no ingress hook of the inet family), so an accept could not be limited to packets
    /// for this host, and the tool does not open it.
    pub fn is_unopenable_ingress(&self, family: Family) -> bool {
        family == Family::Inet && self.is_filter_on(Hook::Ingress) && self.can_drop()
    }

    /// The signature of each rule read, in order (empty for a rule the tool did not write).
    pub fn signatures(&self) -> Vec<String> {
        self.rules
            .iter()
            .flatten()
            .map(|r| r.signature.clone().unwrap_or_default())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetFacts {
    pub name: String,
    pub handle: u64,
    pub comment: Option<String>,
    /// Elements, when they were read (for `status`).
    pub elements: Option<Vec<Element>>,
}

impl SetFacts {
    pub fn is_tool_set(&self) -> bool {
        is_tool_set_name(&self.name) && self.comment.as_deref() == Some(TAG)
    }
}

/// One address in one of the tool's sets, with its timeout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Element {
    pub address: IpAddr,
    /// The timeout it was added with, in ms (`None`: permanent).
    pub timeout_ms: Option<u64>,
    /// Time left before the kernel removes it, in ms.
    pub expires_ms: Option<u64>,
}

/// A table by what names it, in every message about its objects and in every text the tool
/// prints (`inet filter`): its family and its name. The handle does not: a table deleted and
/// made again under the same name gets another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableId {
    pub family: Family,
    pub name: String,
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family.name(), self.name)
    }
}

/// One table: who it is, its chains (with their rules where read) and the tool's sets in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFacts {
    pub id: TableId,
    pub handle: u64,
    pub chains: Vec<ChainFacts>,
    /// Only the tool's sets (`ovh_access_v4`, `ovh_access_v6`), whoever made them.
    pub sets: Vec<SetFacts>,
    /// NFT_TABLE_F_OWNER: only the process that created the table may change it (firewalld and
    /// other daemons claim theirs); the kernel refuses anyone else with EPERM.
    pub owned: bool,
    /// Who owns it, for messages: `process firewalld (pid 812)`.
    pub owner: Option<String>,
}

/// `NFT_TABLE_F_OWNER` (linux/netfilter/nf_tables.h).
const NFT_TABLE_F_OWNER: u32 = 0x2;

impl TableFacts {
    /// iptables-nft's tables: its rules use xtables expressions. A native rule there would be
    /// printed as an unconditional ACCEPT by `iptables-nft-save` (the set match is dropped), so
    /// such tables are left to the iptables backend. The names prove nothing:
    /// `iptables-restore-translate` writes native tables called `ip filter` with chains `INPUT`,
    /// and those are nftables' own.
    ///
    /// Between the two, a table of iptables' names and built-in chains whose every rule
    /// iptables-nft can read back is iptables-nft's (it writes native expressions where it can,
    /// `-i lo -j ACCEPT` has no xt expression): it can manage it, and its save/restore would
    /// break a native rule of ours. Anything it cannot read (`ct state`, sets, a chain of another
    /// name) makes it refuse the table ("incompatible, use 'nft' tool"): nftables' own.
    pub fn made_by_iptables_nft(&self) -> bool {
        let rules = || self.chains.iter().flat_map(|c| c.rules.iter().flatten());
        if rules().any(|r| r.xt) {
            return true;
        }
        self.named_like_iptables()
            && self
                .chains
                .iter()
                .all(|c| c.base.is_none() || XT_CHAINS.contains(&c.name.as_str()))
            && self
                .chains
                .iter()
                .all(|c| c.rules.is_some() && c.rules_complete)
            && rules().all(|r| r.iptables_readable)
    }

    /// An ip or ip6 table with the name of an iptables table: all its rules are read, to tell
    /// whose it is (see [`TableFacts::made_by_iptables_nft`]).
    pub fn named_like_iptables(&self) -> bool {
        const XT_TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];
        matches!(self.id.family, Family::Ip | Family::Ip6)
            && XT_TABLES.contains(&self.id.name.as_str())
    }

    /// The tool's chain `name` in this table: present, tagged. See [`TableFacts::foreign_named`]
    /// for a chain of that name the tool cannot call its own.
    pub fn tool_chain(&self, name: &str) -> Option<&ChainFacts> {
        self.chain(name).filter(|c| c.is_tool_chain())
    }

    /// A chain or set of one of the tool's names that is not the tool's: untagged, or a chain
    /// holding a rule the tool did not write. Named, for a refusal.
    pub fn foreign_named(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .chains
            .iter()
            .filter(|c| is_tool_chain_name(&c.name))
            .filter(|c| !c.is_tool_chain() || c.foreign_rules() > 0)
            .map(|c| {
                if c.is_tool_chain() {
                    format!(
                        "chain {} {} (tagged, but {} rule(s) in it were not written by ovh-access)",
                        self.id,
                        c.name,
                        c.foreign_rules()
                    )
                } else {
                    format!("chain {} {}", self.id, c.name)
                }
            })
            .collect();
        out.extend(
            self.sets
                .iter()
                .filter(|s| !s.is_tool_set())
                .map(|s| format!("set {} {}", self.id, s.name)),
        );
        out
    }

    /// firewalld's own table (flagged owner since firewalld 2.0): only firewalld changes it, and
    /// the firewalld layer, not this one, answers for what it lets through.
    pub fn left_to_firewalld(&self) -> bool {
        self.owned && self.id.name.starts_with("firewalld")
    }

    pub fn chain(&self, name: &str) -> Option<&ChainFacts> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn set(&self, name: &str) -> Option<&SetFacts> {
        self.sets.iter().find(|s| s.name == name)
    }

    pub fn has_tool_objects(&self) -> bool {
        self.chains
            .iter()
            .any(|c| c.is_tool_chain() || c.rules.iter().flatten().any(|r| r.is_tool_jump()))
            || self.sets.iter().any(|s| s.is_tool_set())
    }
}

/// iptables' built-in chains.
const XT_CHAINS: [&str; 5] = ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"];

/// The expressions iptables-nft (1.8) reads back into iptables rules (`nft_is_expr_compatible`
/// in iptables/nft.c); a rule with any other makes it call the whole table incompatible.
const IPTABLES_NFT_EXPRS: [&str; 12] = [
    "match",
    "target",
    "payload",
    "meta",
    "cmp",
    "bitwise",
    "counter",
    "immediate",
    "lookup",
    "range",
    "limit",
    "log",
];

/// Everything the planner sees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// The ruleset generation the facts were read at; the batch is refused if it moved on.
    pub genid: u32,
    pub tables: Vec<TableFacts>,
}

/// How many rules jump to the tool's chains in this table. The kernel's `use` counter of a chain
/// counts its own rules and every jump or goto to it (nf_tables_newrule, nft_data_hold), so the
/// jumps are what is left once the chain's rules are taken away.
pub fn jumps_to_tool_chains(t: &TableFacts) -> u32 {
    t.chains
        .iter()
        .filter(|c| c.is_tool_chain())
        .map(|c| {
            c.use_count
                .saturating_sub(c.rules.as_ref().map_or(0, |r| r.len() as u32))
        })
        .sum()
}

pub fn is_tool_chain_name(name: &str) -> bool {
    name == CHAIN_IN || name == CHAIN_OUT || name == CHAIN_PRE
}

pub fn is_tool_set_name(name: &str) -> bool {
    name == SET_V4 || name == SET_V6
}

/// The comment of an nftnl userdata blob: TLVs of (type u8, len u8, value), the comment being
/// type 0 for rules and chains (NFTNL_UDATA_{RULE,CHAIN}_COMMENT) and 7 for sets, NUL-terminated.
pub fn udata_comment(ud: &[u8], comment_type: u8) -> Option<String> {
    let mut at = 0;
    while at + 2 <= ud.len() {
        let (ty, len) = (ud[at], ud[at + 1] as usize);
        let val = ud.get(at + 2..at + 2 + len)?;
        if ty == comment_type {
            let end = val.iter().position(|&b| b == 0).unwrap_or(val.len());
            return Some(String::from_utf8_lossy(&val[..end]).into_owned());
        }
        at += 2 + len;
    }
    None
}

/// A userdata TLV holding `comment`, NUL-terminated as nftnl_udata_put_strz writes it.
/// A text too long for one TLV (its length is one byte) is left out.
pub fn udata_put_comment(out: &mut Vec<u8>, comment_type: u8, comment: &str) {
    if comment.len() >= u8::MAX as usize {
        return;
    }
    out.push(comment_type);
    out.push((comment.len() + 1) as u8);
    out.extend_from_slice(comment.as_bytes());
    out.push(0);
}

pub const UDATA_RULE_COMMENT: u8 = 0;
pub const UDATA_CHAIN_COMMENT: u8 = 0;
pub const UDATA_SET_COMMENT: u8 = 7;
/// A userdata type of our own, past nft's (`NFTNL_UDATA_RULE_MAX`): nft skips types it does not
/// know when it prints a rule, and the kernel keeps userdata opaque. Rewriting a rule that is
/// already right is not free: any new rule makes the kernel validate every chain of the table
/// on commit (nf_tables_newrule → NFT_VALIDATE_NEED), O(rules) on a big ruleset.
pub const UDATA_RULE_SIGNATURE: u8 = 0x4f;

/// How much of a chain's rules to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleDepth {
    /// Everything (status, doctor).
    All,
    /// Until `n` tool jumps were seen, and at least the first dump chunk: the head, where the
    /// tool inserts its jump and where iptables-nft's xt expressions show. Keeps a grant on a
    /// 100 000-rule chain as fast as on a 10-rule one.
    UntilJumps(u32),
}

/// Whether to read the elements of the tool's sets: a grant compares them with the request (a
/// set already right is left alone) and status shows them; a revoke deletes the sets whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetElements {
    Read,
    Skip,
}

/// Read the facts: the generation first, so that any change after it fails the batch.
pub fn read_facts(
    conn: &mut Conn,
    depth: impl Fn(&TableFacts) -> RuleDepth,
    elements: SetElements,
) -> Result<Facts, NlError> {
    let genid = read_genid(conn)?;
    let mut tables: Vec<TableFacts> = Vec::new();
    dump(conn, sys::NFT_MSG_GETTABLE, |m| {
        tables.extend(sys::parse_table(m).and_then(table_facts))
    })?;
    let mut chains = Vec::new();
    dump(conn, sys::NFT_MSG_GETCHAIN, |m| {
        chains.extend(sys::parse_chain(m))
    })?;
    for c in chains {
        let Some((id, chain)) = chain_facts(c) else {
            continue;
        };
        if let Some(t) = tables.iter_mut().find(|t| t.id == id) {
            t.chains.push(chain);
        }
    }
    for t in tables.iter_mut().filter(|t| t.id.family.carries_ip()) {
        for name in [SET_V4, SET_V6] {
            if let Some(mut s) = get_set(conn, t.id.family, &t.id.name, name)? {
                if elements == SetElements::Read {
                    s.elements = Some(read_elements(conn, t.id.family, &t.id.name, name)?);
                }
                t.sets.push(s);
            }
        }
        read_chain_rules(conn, t, &depth)?;
    }
    Ok(Facts { genid, tables })
}

/// A table as the kernel described it, without its chains and sets yet; none for a family the
/// tool has no use for.
fn table_facts(t: sys::TableMsg) -> Option<TableFacts> {
    Some(TableFacts {
        id: TableId {
            family: Family::from_nfproto(t.family)?,
            name: t.name,
        },
        handle: t.handle,
        chains: Vec::new(),
        sets: Vec::new(),
        owned: t.flags & NFT_TABLE_F_OWNER != 0,
        owner: t.owner.map(describe_owner),
    })
}

/// A chain as the kernel described it, with the table it belongs to; its rules are not read yet.
fn chain_facts(c: sys::ChainMsg) -> Option<(TableId, ChainFacts)> {
    let family = Family::from_nfproto(c.family)?;
    let chain = ChainFacts {
        base: c.hook.map(|h| BaseChain {
            hook: Hook::from_num(family, h),
            priority: c.priority,
            chain_type: c.chain_type,
            // NF_DROP: the verdict a base chain's policy takes when no rule decided.
            policy_drop: c.policy == Some(sys::NF_DROP as u32),
        }),
        name: c.name,
        handle: c.handle,
        use_count: c.use_count,
        comment: udata_comment(&c.userdata, UDATA_CHAIN_COMMENT),
        rules: None,
        rules_complete: false,
    };
    let id = TableId {
        family,
        name: c.table,
    };
    Some((id, chain))
}

/// The rules of the chains that matter in one table: the tool's own chains whole, then the base
/// chains on the support's path as far as `depth` says, asked only once the tool's chains are
/// read (how many jumps to expect depends on their rules).
fn read_chain_rules(
    conn: &mut Conn,
    t: &mut TableFacts,
    depth: impl Fn(&TableFacts) -> RuleDepth,
) -> Result<(), NlError> {
    let (family, table) = (t.id.family, t.id.name.clone());
    // The tool's own chains are short; their rule count is needed to know how many jumps
    // lead to them (see `jumps_to_tool_chains`).
    for c in t.chains.iter_mut().filter(|c| is_tool_chain_name(&c.name)) {
        let (rules, complete) = read_rules(conn, family, &table, &c.name, None)?;
        c.rules = Some(rules);
        c.rules_complete = complete;
    }
    let want = match depth(t) {
        RuleDepth::All => None,
        RuleDepth::UntilJumps(n) => Some(n),
    };
    let mut found = 0u32;
    let whole = t.named_like_iptables();
    for c in t.chains.iter_mut().filter(|c| c.rules.is_none()) {
        let hook = c.base.as_ref().map(|b| b.hook);
        if !whole && !hook.is_some_and(Hook::on_support_path) {
            continue;
        }
        // Input chains are always hooked: their head is enough. The others are hooked only
        // when they can drop, which takes every rule (they are short on real servers), and
        // a table named like iptables' is read whole to tell whose it is.
        let limit = match hook {
            Some(Hook::Input) if !whole => want.map(|w| w.saturating_sub(found)),
            _ => None,
        };
        let (rules, complete) = read_rules(conn, family, &table, &c.name, limit)?;
        found += rules.iter().filter(|r| r.is_tool_jump()).count() as u32;
        c.rules = Some(rules);
        c.rules_complete = complete;
    }
    Ok(())
}

/// A table owner's netlink port id as a process: the kernel gives a process's first netlink
/// socket its process id as port id, which is how nft and firewalld open theirs.
fn describe_owner(portid: u32) -> String {
    match std::fs::read_to_string(format!("/proc/{portid}/comm")) {
        Ok(comm) => format!("process {} (pid {portid})", comm.trim_end()),
        Err(_) => format!("the process with netlink port id {portid}"),
    }
}

/// NFT_MSG_GETGEN: the ruleset's generation id.
pub fn read_genid(conn: &mut Conn) -> Result<u32, NlError> {
    let seq = conn.next_seq();
    let mut req = MsgBuf::new();
    sys::put_request(
        &mut req,
        sys::NFT_MSG_GETGEN,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
        seq,
    );
    let mut genid = None;
    conn.request(&req, seq, |m| {
        genid = genid.or(sys::parse_gen(m));
        ControlFlow::Continue(())
    })?;
    genid.ok_or(NlError::Kernel {
        seq,
        errno: libc::EPROTO,
    })
}

fn dump(conn: &mut Conn, msg_type: u16, mut f: impl FnMut(&[u8])) -> Result<(), NlError> {
    let seq = conn.next_seq();
    let mut req = MsgBuf::new();
    sys::put_request(
        &mut req,
        msg_type,
        (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
        seq,
    );
    conn.request(&req, seq, |m| {
        f(m);
        ControlFlow::Continue(())
    })?;
    Ok(())
}

/// One set by name (a get, not a dump: the table may hold thousands of anonymous sets).
fn get_set(
    conn: &mut Conn,
    family: Family,
    table: &str,
    name: &str,
) -> Result<Option<SetFacts>, NlError> {
    let seq = conn.next_seq();
    let mut req = MsgBuf::new();
    let spec = sys::SetSpec::named(family.nfproto(), table, name);
    sys::put_set(
        &mut req,
        sys::NFT_MSG_GETSET,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
        seq,
        &spec,
    );
    let mut out = None;
    match conn.request(&req, seq, |m| {
        if let Some(s) = sys::parse_set(m) {
            out = Some(SetFacts {
                name: s.name,
                handle: s.handle,
                comment: udata_comment(&s.userdata, UDATA_SET_COMMENT),
                elements: None,
            });
        }
        ControlFlow::Continue(())
    }) {
        Ok(_) => Ok(out),
        Err(NlError::Kernel {
            errno: libc::ENOENT,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The addresses of one of the tool's sets. Interval sets hold each address as a start element
/// and an end element (the next address, flagged INTERVAL_END); only the starts are addresses.
pub fn read_elements(
    conn: &mut Conn,
    family: Family,
    table: &str,
    set: &str,
) -> Result<Vec<Element>, NlError> {
    let seq = conn.next_seq();
    let mut req = MsgBuf::new();
    sys::put_elem_dump(&mut req, seq, family.nfproto(), table, set);
    let mut out = Vec::new();
    conn.request(&req, seq, |m| {
        for e in sys::parse_elems(m) {
            if e.interval_end {
                continue;
            }
            let address = match e.key.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(e.key.as_slice()).unwrap()),
                16 => IpAddr::from(<[u8; 16]>::try_from(e.key.as_slice()).unwrap()),
                _ => continue,
            };
            out.push(Element {
                address,
                timeout_ms: e.timeout_ms,
                expires_ms: e.expires_ms,
            });
        }
        ControlFlow::Continue(())
    })?;
    out.sort_by_key(|e| e.address);
    Ok(out)
}

/// The rules of one chain, in order. With `stop_after_jumps = Some(n)`, reading stops once `n`
/// tool jumps were seen and the first chunk is in (the rest of the dump is abandoned); the flag
/// returned says whether the chain was read to its end.
pub fn read_rules(
    conn: &mut Conn,
    family: Family,
    table: &str,
    chain: &str,
    stop_after_jumps: Option<u32>,
) -> Result<(Vec<RuleFacts>, bool), NlError> {
    let seq = conn.next_seq();
    let mut req = MsgBuf::new();
    sys::put_rule_dump(&mut req, seq, family.nfproto(), table, chain);
    let mut rules = Vec::new();
    let mut jumps = 0u32;
    // Rules come about 150 to a chunk; 64 is well inside the first one, whatever the rule size.
    const HEAD: usize = 64;
    let complete = conn.request(&req, seq, |m| {
        if let Some(r) = sys::parse_rule(m) {
            let xt = r.exprs.iter().any(|e| e == "match" || e == "target");
            let iptables_readable = r
                .exprs
                .iter()
                .all(|e| IPTABLES_NFT_EXPRS.contains(&e.as_str()));
            let rf = RuleFacts {
                handle: r.handle,
                jump_to: r.jump_to,
                comment: udata_comment(&r.userdata, UDATA_RULE_COMMENT),
                xt,
                drops: r.drops,
                iptables_readable,
                signature: udata_comment(&r.userdata, UDATA_RULE_SIGNATURE),
            };
            jumps += u32::from(rf.is_tool_jump());
            rules.push(rf);
        }
        match stop_after_jumps {
            Some(n) if jumps >= n && rules.len() >= HEAD => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    })?;
    Ok((rules, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_round_trip_through_userdata() {
        let mut ud = vec![0u8, 4, 0, 0, 0, 2]; // a KEYBYTEORDER-like TLV before the comment
        ud[1] = 4;
        udata_put_comment(&mut ud, UDATA_SET_COMMENT, TAG);
        assert_eq!(udata_comment(&ud, UDATA_SET_COMMENT).as_deref(), Some(TAG));
        assert_eq!(udata_comment(&ud, 3), None);
        assert_eq!(
            udata_comment(&[0, 200, 1], 0),
            None,
            "a truncated TLV is no comment"
        );
    }

    fn table_msg(family: i32, flags: u32) -> sys::TableMsg {
        sys::TableMsg {
            family: family as u16,
            name: "filter".into(),
            handle: 4,
            flags,
            owner: None,
        }
    }

    #[test]
    fn a_table_is_owned_only_with_the_owner_flag() {
        let t = table_facts(table_msg(libc::NFPROTO_INET, 0x2)).expect("inet");
        assert_eq!(t.id.to_string(), "inet filter");
        assert!(t.owned);
        assert_eq!(t.handle, 4);
        // NFT_TABLE_F_DORMANT alone: a table anyone may change.
        assert!(
            !table_facts(table_msg(libc::NFPROTO_IPV4, 0x1))
                .unwrap()
                .owned
        );
        assert_eq!(
            table_facts(table_msg(99, 0)),
            None,
            "a family the tool does not know"
        );
    }

    fn chain_msg(hook: Option<u32>, policy: Option<u32>) -> sys::ChainMsg {
        let mut userdata = Vec::new();
        udata_put_comment(&mut userdata, UDATA_CHAIN_COMMENT, TAG);
        sys::ChainMsg {
            family: libc::NFPROTO_IPV6 as u16,
            table: "fw6".into(),
            name: "in".into(),
            handle: 7,
            hook,
            priority: -10,
            chain_type: "filter".into(),
            policy,
            use_count: 3,
            userdata,
        }
    }

    #[test]
    fn a_chain_knows_its_table_hook_and_policy() {
        let (id, c) = chain_facts(chain_msg(Some(1), Some(0))).unwrap();
        assert_eq!(id.to_string(), "ip6 fw6");
        let base = c.base.expect("a base chain");
        assert_eq!((base.hook, base.priority), (Hook::Input, -10));
        assert!(base.policy_drop);
        assert_eq!(c.comment.as_deref(), Some(TAG));
        assert_eq!((c.use_count, c.rules.is_none()), (3, true));
        let (_, accept) = chain_facts(chain_msg(Some(3), Some(1))).unwrap();
        let base = accept.base.unwrap();
        assert_eq!(base.hook, Hook::Output);
        assert!(!base.policy_drop, "policy accept");
        let (_, regular) = chain_facts(chain_msg(None, None)).unwrap();
        assert_eq!(regular.base, None);
    }
}
