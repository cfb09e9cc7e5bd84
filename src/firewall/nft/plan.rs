//! Planning: pure functions from [`Facts`] (and the request) to the list of changes, which
//! `apply` turns into one netlink batch and `--dry-run` prints in `nft -f` syntax.
//!
//! Why inside the user's tables: an `accept` ends only its own base chain; every other base chain
//! on the hook still sees the packet and its drop is final. So each filter base chain on the input
//! hook gets a jump, at its head, to a chain of ours in the same table (a jump or a set lookup can
//! only reach objects of the rule's own table), and so does each output base chain whose policy
//! drops (the replies leave from the SSH port: `daddr` + `sport`).
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Result};

use super::inspect::{self, Facts, IpVersion, SetFacts, TableFacts, TableId};
use super::{CHAIN_IN, CHAIN_OUT, CHAIN_PRE, SET_V4, SET_V6};
use crate::firewall::{OpenRequest, TAG};

/// Which way an access rule matches: traffic to our SSH ports, or replies from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    /// Incoming, before routing (prerouting, netdev ingress): only packets for this host.
    Pre,
}

/// One change. The order of a plan's ops is the order of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddSet {
        table: TableId,
        set: String,
        ip: IpVersion,
    },
    FlushSet {
        table: TableId,
        set: String,
    },
    AddElements {
        table: TableId,
        set: String,
        addresses: Vec<IpAddr>,
        timeout: Option<Duration>,
    },
    AddChain {
        table: TableId,
        chain: String,
    },
    FlushChain {
        table: TableId,
        chain: String,
    },
    /// `ip saddr @set tcp dport { ports } accept` (In) or `ip daddr @set tcp sport { ports } accept` (Out).
    AddAccess {
        table: TableId,
        chain: String,
        set: String,
        ip: IpVersion,
        dir: Direction,
        ports: Vec<u16>,
    },
    /// A tagged jump inserted at the head of a base chain.
    InsertJump {
        table: TableId,
        chain: String,
        target: String,
    },
    DeleteRule {
        table: TableId,
        chain: String,
        handle: u64,
    },
    DeleteChain {
        table: TableId,
        chain: String,
    },
    DeleteSet {
        table: TableId,
        set: String,
    },
}

/// What to do, and what to tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// The base chains hooked (`inet filter input`).
    pub chains: Vec<String>,
    pub notes: Vec<String>,
}

/// The tool's address set of one IP version.
pub fn set_name(ip: IpVersion) -> &'static str {
    match ip {
        IpVersion::V4 => SET_V4,
        IpVersion::V6 => SET_V6,
    }
}

/// Tables the tool may program, and the notes about those it leaves alone.
fn candidate_tables<'a>(facts: &'a Facts, notes: &mut Vec<String>) -> Vec<&'a TableFacts> {
    let mut out = Vec::new();
    for t in facts.tables.iter().filter(|t| t.id.family.carries_ip()) {
        if !t
            .chains
            .iter()
            .any(|c| c.tool_target(t.id.family).is_some())
        {
            continue;
        }
        // An owned table that can drop the support was refused by `refusals`; one that cannot
        // is simply left to its owner.
        if t.owned {
            continue;
        }
        if t.made_by_iptables_nft() {
            notes.push(format!(
                "table {} was made by iptables-nft: left to the iptables backend (a native rule there \
                 becomes an unconditional ACCEPT after iptables-nft-save | iptables-nft-restore)",
                t.id
            ));
            continue;
        }
        out.push(t);
    }
    out
}

/// Base chains that can drop the support's packets and that the tool cannot open: those of a
/// table another process owns (the kernel refuses everyone else), and inet ingress chains.
pub fn refusals(facts: &Facts) -> Vec<String> {
    refusals_where(facts, |_| true)
}

/// [`refusals`] but for firewalld's own table: the firewalld layer opens that one with rules
/// firewalld holds, and judges it itself (`status`, `doctor` read those rules).
pub fn refusals_not_left_to_firewalld(facts: &Facts) -> Vec<String> {
    refusals_where(facts, |t| !t.left_to_firewalld())
}

fn refusals_where(facts: &Facts, keep: impl Fn(&TableFacts) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for t in facts
        .tables
        .iter()
        .filter(|t| t.id.family.carries_ip() && keep(t))
    {
        for c in &t.chains {
            let hook = c.base.as_ref().map_or("", |b| b.hook.name());
            if t.owned && c.tool_target(t.id.family).is_some() && c.can_drop() {
                let owner = t.owner.as_deref().unwrap_or("another process");
                out.push(format!(
                    "table {} belongs to {owner} (flags owner: the kernel lets no other program change it) and its chain {} on the {hook} hook can drop the support's packets; let the support's addresses reach the SSH ports through that program (firewalld: `firewall-cmd --add-rich-rule`), or pass --firewall none if it already lets them through",
                    t.id,
                    c.name
                ));
            } else if c.is_unopenable_ingress(t.id.family) {
                out.push(format!(
                    "chain {} {} on the inet ingress hook can drop the support's packets, and the kernel cannot limit an accept there to packets for this host (no fib on inet ingress); move that chain to a netdev table or accept the support's addresses in it yourself, then grant again",
                    t.id,
                    c.name
                ));
            }
        }
    }
    out
}

/// True when the set already is what a grant would write: exactly `addresses`, permanent. A
/// grant with a timeout always rewrites its elements: re-adding is what restarts the kernel's
/// countdown (an element's timeout cannot be changed in place), and the operator asked for it.
/// Elements that were not read count as different.
fn set_holds_exactly(set: &SetFacts, addresses: &[IpAddr], timeout: Option<Duration>) -> bool {
    let Some(elements) = &set.elements else {
        return false;
    };
    if timeout.is_some() || elements.iter().any(|e| e.timeout_ms.is_some()) {
        return false;
    }
    let mut have: Vec<IpAddr> = elements.iter().map(|e| e.address).collect();
    have.sort_unstable();
    let mut want = addresses.to_vec();
    want.sort_unstable();
    want.dedup();
    have == want
}

/// The direction of the rules in each of the tool's chains.
pub fn direction_of(chain: &str) -> Direction {
    match chain {
        CHAIN_OUT => Direction::Out,
        CHAIN_PRE => Direction::Pre,
        _ => Direction::In,
    }
}

/// The plan of a grant: open `req.ports` to `req.addresses` in every table that can drop them,
/// replacing whatever an earlier grant put there (same objects, updated in place). Refused,
/// with nothing changed, when a chain that can drop cannot be opened or when an object bearing
/// one of the tool's names is not the tool's.
pub fn plan_open(facts: &Facts, req: &OpenRequest) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut ports = req.ports.clone();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        bail!("no SSH port to open in nftables; give --port or let the tool detect sshd's ports");
    }
    let refused = refusals(facts);
    if !refused.is_empty() {
        bail!("nftables: {}", refused.join("; "));
    }
    for t in candidate_tables(facts, &mut plan.notes) {
        open_table(t, req, &ports, &mut plan)?;
    }
    // A chain in a table left alone (iptables-nft's, an owned one) still drops: that is not
    // "nothing to open", and its own note says where to open it.
    let hooked_anywhere = facts.tables.iter().any(|t| {
        t.chains
            .iter()
            .any(|c| c.tool_target(t.id.family).is_some())
    });
    if !hooked_anywhere {
        plan.notes.push(
            "no input base chain, and no prerouting, ingress or output chain that can drop: nftables drops nothing here, nothing to open".into(),
        );
    }
    Ok(plan)
}

/// The ops of one table: its sets, its chains and their rules, one jump at the head of each base
/// chain that needs one.
fn open_table(t: &TableFacts, req: &OpenRequest, ports: &[u16], plan: &mut Plan) -> Result<()> {
    let table = &t.id;
    // Names are ours only with the tag, on the chain and on each of its rules.
    let foreign = t.foreign_named();
    if !foreign.is_empty() {
        bail!(
            "nftables: {} bear(s) a name ovh-access uses but ovh-access did not create (no comment \"{TAG}\" on it or on each of its rules); rename the chain (nft rename chain {table} NAME NEWNAME) or recreate the set under another name, then grant again; nothing was changed",
            foreign.join(", ")
        );
    }
    let versions: Vec<IpVersion> = IpVersion::ALL
        .into_iter()
        .filter(|&ip| t.id.family.has(ip))
        .collect();
    for &ip in &versions {
        open_set(t, ip, req, plan);
    }
    for chain in [CHAIN_PRE, CHAIN_IN, CHAIN_OUT] {
        open_chain(t, chain, &versions, ports, plan);
    }
    Ok(())
}

/// The tool's set of one IP version holding exactly the request's addresses of that version: a
/// set already right is left alone (see [`set_holds_exactly`]), any other is emptied and filled
/// again.
fn open_set(t: &TableFacts, ip: IpVersion, req: &OpenRequest, plan: &mut Plan) {
    let table = &t.id;
    let set = set_name(ip);
    let addresses: Vec<IpAddr> = req
        .addresses
        .iter()
        .copied()
        .filter(|&a| IpVersion::of(a) == ip)
        .collect();
    match t.set(set) {
        Some(s) if set_holds_exactly(s, &addresses, req.timeout) => return,
        Some(_) => plan.ops.push(Op::FlushSet {
            table: table.clone(),
            set: set.into(),
        }),
        None => plan.ops.push(Op::AddSet {
            table: table.clone(),
            set: set.into(),
            ip,
        }),
    }
    if !addresses.is_empty() {
        plan.ops.push(Op::AddElements {
            table: table.clone(),
            set: set.into(),
            addresses,
            timeout: req.timeout,
        });
    }
}

/// The tool's chain `chain`, when a base chain of the table needs it: its access rules (written
/// again only when they differ from the request's), and the jump at the head of each such base
/// chain.
fn open_chain(
    t: &TableFacts,
    chain: &'static str,
    versions: &[IpVersion],
    ports: &[u16],
    plan: &mut Plan,
) {
    let table = &t.id;
    let bases: Vec<_> = t
        .chains
        .iter()
        .filter(|c| c.tool_target(table.family) == Some(chain))
        .collect();
    if bases.is_empty() {
        return;
    }
    let dir = direction_of(chain);
    let wanted: Vec<String> = versions
        .iter()
        .map(|&ip| access_rule_text(ip, dir, set_name(ip), ports))
        .collect();
    let rewrite = match t.chain(chain) {
        Some(c) => {
            let same = c.signatures() == wanted && c.rules_complete;
            if !same {
                plan.ops.push(Op::FlushChain {
                    table: table.clone(),
                    chain: chain.into(),
                });
            }
            !same
        }
        None => {
            plan.ops.push(Op::AddChain {
                table: table.clone(),
                chain: chain.into(),
            });
            true
        }
    };
    if rewrite {
        for &ip in versions {
            plan.ops.push(Op::AddAccess {
                table: table.clone(),
                chain: chain.into(),
                set: set_name(ip).into(),
                ip,
                dir,
                ports: ports.to_vec(),
            });
        }
    }
    for base in bases {
        plan.chains.push(format!("{table} {}", base.name));
        plan.ops.extend(jump_to_head(table, base, chain));
    }
}

/// The jump counts only at the head: a rule the user inserted above it since may drop the
/// support first. A jump found lower is moved (deleted, inserted again).
fn jump_to_head(table: &TableId, base: &inspect::ChainFacts, chain: &str) -> Vec<Op> {
    let rules = base.rules.as_deref().unwrap_or_default();
    let jumps: Vec<u64> = rules
        .iter()
        .filter(|r| r.is_tool_jump() && r.jump_to.as_deref() == Some(chain))
        .map(|r| r.handle)
        .collect();
    let at_head = jumps.len() == 1 && rules.first().map(|r| r.handle) == Some(jumps[0]);
    if at_head {
        return Vec::new();
    }
    let mut ops: Vec<Op> = jumps
        .into_iter()
        .map(|handle| Op::DeleteRule {
            table: table.clone(),
            chain: base.name.clone(),
            handle,
        })
        .collect();
    ops.push(Op::InsertJump {
        table: table.clone(),
        chain: base.name.clone(),
        target: chain.into(),
    });
    ops
}

/// The plan of a revoke: every tagged jump to a chain of the tool's, by the handle just read,
/// then the tool's chains and sets. What is not the tool's is never touched: a chain of one of
/// its names without the tag, a rule an administrator added to the tool's chain (only the
/// tool's rules go, the chain stays), and a chain an untagged jump still leads to (emptied, so
/// it accepts nothing, and kept: deleting it would fail the whole batch). Notes name what a
/// complete grant would have had and was found missing, and what was kept.
pub fn plan_close(facts: &Facts) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut found_any = false;
    for t in facts
        .tables
        .iter()
        .filter(|t| t.id.family.carries_ip() && !t.owned)
    {
        found_any |= close_table(t, &mut plan);
    }
    if !found_any {
        plan.notes.push(
            "nothing of ovh-access found in nftables (no tagged jump, chain or set): already revoked, or the ruleset was flushed or reloaded since the grant".into(),
        );
    }
    Ok(plan)
}

/// The ops removing the tool's objects from one table; true when any was found.
fn close_table(t: &TableFacts, plan: &mut Plan) -> bool {
    let table = &t.id;
    let mut tagged_jumps: Vec<(&str, u32)> = Vec::new();
    for c in &t.chains {
        for r in c.rules.iter().flatten().filter(|r| r.is_tool_jump()) {
            let target = r.jump_to.as_deref().unwrap_or_default();
            if t.tool_chain(target).is_none() {
                continue;
            }
            plan.ops.push(Op::DeleteRule {
                table: table.clone(),
                chain: c.name.clone(),
                handle: r.handle,
            });
            plan.chains.push(format!("{table} {}", c.name));
            match tagged_jumps.iter_mut().find(|(n, _)| *n == target) {
                Some((_, k)) => *k += 1,
                None => tagged_jumps.push((target, 1)),
            }
        }
    }
    let ours: Vec<_> = t.chains.iter().filter(|c| c.is_tool_chain()).collect();
    for c in &ours {
        let rules = c.rules.as_deref().unwrap_or_default();
        let tagged = tagged_jumps
            .iter()
            .find(|(n, _)| *n == c.name)
            .map_or(0, |(_, k)| *k);
        let untagged_jumps = c.use_count.saturating_sub(rules.len() as u32 + tagged);
        let foreign = c.foreign_rules();
        if foreign == 0 {
            plan.ops.push(Op::FlushChain {
                table: table.clone(),
                chain: c.name.clone(),
            });
        } else {
            for r in rules.iter().filter(|r| r.signature.is_some()) {
                plan.ops.push(Op::DeleteRule {
                    table: table.clone(),
                    chain: c.name.clone(),
                    handle: r.handle,
                });
            }
            plan.notes.push(format!(
                "table {table}: the chain {} was kept with the {foreign} rule(s) ovh-access did not write; only its own rules were deleted",
                c.name
            ));
        }
        if untagged_jumps > 0 {
            plan.notes.push(format!(
                "table {table}: {untagged_jumps} rule(s) without the \"{TAG}\" comment jump to the chain {}: it was emptied (it accepts nothing now) and kept; delete those rules (nft -a list table {table}) and the chain (nft delete chain {table} {})",
                c.name, c.name
            ));
        } else if foreign == 0 {
            plan.ops.push(Op::DeleteChain {
                table: table.clone(),
                chain: c.name.clone(),
            });
        }
    }
    let sets: Vec<_> = t.sets.iter().filter(|s| s.is_tool_set()).collect();
    for s in &sets {
        plan.ops.push(Op::DeleteSet {
            table: table.clone(),
            set: s.name.clone(),
        });
    }
    let jumps_found: u32 = tagged_jumps.iter().map(|(_, k)| k).sum();
    let any_here = jumps_found > 0 || !ours.is_empty() || !sets.is_empty();
    if any_here {
        if ours.is_empty() {
            plan.notes
                .push(format!("table {table}: the chain {CHAIN_IN} was missing"));
        }
        if jumps_found == 0 {
            plan.notes.push(format!(
                "table {table}: no jump to the ovh-access chains was left in any base chain"
            ));
        }
        for ip in IpVersion::ALL {
            if t.id.family.has(ip) && t.set(set_name(ip)).is_none() {
                plan.notes.push(format!(
                    "table {table}: the set {} was missing",
                    set_name(ip)
                ));
            }
        }
    }
    any_here
}

fn ports_expr(ports: &[u16]) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!("{{ {} }}", list.join(", "))
}

/// Milliseconds as nft writes durations (`1h30m`, `5s`).
fn nft_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut s = (ms / 1000) as u64;
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            let _ = write!(out, "{}{unit}", s / len);
            s %= len;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// The access rule as `nft` prints it (and as `nft -f` accepts it).
pub fn access_rule_text(ip: IpVersion, dir: Direction, set: &str, ports: &[u16]) -> String {
    let proto = match ip {
        IpVersion::V4 => "ip",
        IpVersion::V6 => "ip6",
    };
    let (addr, port) = match dir {
        Direction::In | Direction::Pre => ("saddr", "dport"),
        Direction::Out => ("daddr", "sport"),
    };
    let local = if dir == Direction::Pre {
        "fib daddr type local "
    } else {
        ""
    };
    format!(
        "{local}{proto} {addr} @{set} tcp {port} {} accept",
        ports_expr(ports)
    )
}

/// The plan in `nft -f` syntax: what `--dry-run` prints, and what the benchmark feeds to `nft -f`
/// to compare.
pub fn render(ops: &[Op]) -> String {
    let mut s = String::new();
    for op in ops {
        let _ = match op {
            Op::AddSet { table, set, ip } => writeln!(
                s,
                "add set {table} {set} {{ type {}; flags interval,timeout; comment \"{TAG}\"; }}",
                match ip {
                    IpVersion::V4 => "ipv4_addr",
                    IpVersion::V6 => "ipv6_addr",
                }
            ),
            Op::FlushSet { table, set } => writeln!(s, "flush set {table} {set}"),
            Op::AddElements {
                table,
                set,
                addresses,
                timeout,
            } => {
                let t = timeout
                    .map(|d| format!(" timeout {}", nft_duration(d)))
                    .unwrap_or_default();
                let list: Vec<String> = addresses.iter().map(|a| format!("{a}{t}")).collect();
                writeln!(s, "add element {table} {set} {{ {} }}", list.join(", "))
            }
            Op::AddChain { table, chain } => {
                writeln!(s, "add chain {table} {chain} {{ comment \"{TAG}\"; }}")
            }
            Op::FlushChain { table, chain } => writeln!(s, "flush chain {table} {chain}"),
            Op::AddAccess {
                table,
                chain,
                set,
                ip,
                dir,
                ports,
            } => {
                writeln!(
                    s,
                    "add rule {table} {chain} {} comment \"{TAG}\"",
                    access_rule_text(*ip, *dir, set, ports)
                )
            }
            Op::InsertJump {
                table,
                chain,
                target,
            } => {
                writeln!(
                    s,
                    "insert rule {table} {chain} jump {target} comment \"{TAG}\""
                )
            }
            Op::DeleteRule {
                table,
                chain,
                handle,
            } => writeln!(s, "delete rule {table} {chain} handle {handle}"),
            Op::DeleteChain { table, chain } => writeln!(s, "delete chain {table} {chain}"),
            Op::DeleteSet { table, set } => writeln!(s, "delete set {table} {set}"),
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::nft::inspect::{
        BaseChain, ChainFacts, Element, Family, Hook, RuleFacts, SetFacts,
    };

    fn base(name: &str, hook: Hook, prio: i32, drop: bool) -> ChainFacts {
        ChainFacts {
            name: name.into(),
            handle: 1,
            base: Some(BaseChain {
                hook,
                priority: prio,
                chain_type: "filter".into(),
                policy_drop: drop,
            }),
            use_count: 0,
            comment: None,
            rules: Some(vec![]),
            rules_complete: true,
        }
    }

    fn table(family: Family, name: &str, chains: Vec<ChainFacts>) -> TableFacts {
        TableFacts {
            id: TableId {
                family,
                name: name.into(),
            },
            handle: 1,
            chains,
            sets: vec![],
            owned: false,
            owner: None,
        }
    }

    fn req(timeout: Option<Duration>) -> OpenRequest {
        OpenRequest {
            addresses: vec![
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
            ports: vec![2222, 22, 22],
            timeout,
        }
    }

    #[test]
    fn inet_drop_table_gets_sets_chain_rules_and_one_jump() {
        let facts = Facts {
            genid: 1,
            tables: vec![table(
                Family::Inet,
                "filter",
                vec![base("input", Hook::Input, 0, true)],
            )],
        };
        let plan = plan_open(&facts, &req(Some(Duration::from_secs(5400)))).unwrap();
        assert_eq!(plan.chains, vec!["inet filter input"]);
        let text = render(&plan.ops);
        assert_eq!(
            text,
            "add set inet filter ovh_access_v4 { type ipv4_addr; flags interval,timeout; comment \"ovh-access\"; }\n\
             add element inet filter ovh_access_v4 { 192.0.2.10 timeout 1h30m }\n\
             add set inet filter ovh_access_v6 { type ipv6_addr; flags interval,timeout; comment \"ovh-access\"; }\n\
             add element inet filter ovh_access_v6 { 2001:db8::10 timeout 1h30m }\n\
             add chain inet filter ovh_access { comment \"ovh-access\"; }\n\
             add rule inet filter ovh_access ip saddr @ovh_access_v4 tcp dport { 22, 2222 } accept comment \"ovh-access\"\n\
             add rule inet filter ovh_access ip6 saddr @ovh_access_v6 tcp dport { 22, 2222 } accept comment \"ovh-access\"\n\
             insert rule inet filter input jump ovh_access comment \"ovh-access\"\n"
        );
    }

    #[test]
    fn separate_ip_and_ip6_tables_get_only_their_family() {
        let facts = Facts {
            genid: 1,
            tables: vec![
                table(Family::Ip, "fw4", vec![base("in", Hook::Input, 0, true)]),
                table(Family::Ip6, "fw6", vec![base("in", Hook::Input, 0, true)]),
            ],
        };
        let text = render(&plan_open(&facts, &req(None)).unwrap().ops);
        assert!(text.contains("add rule ip fw4 ovh_access ip saddr @ovh_access_v4"));
        assert!(
            !text.contains("ip fw4 ovh_access_v6") && !text.contains("ip6 fw6 ovh_access_v4"),
            "{text}"
        );
        assert!(text.contains("add element ip6 fw6 ovh_access_v6 { 2001:db8::10 }"));
    }

    #[test]
    fn output_hook_only_when_its_policy_drops_and_with_reply_direction() {
        let mut t = table(
            Family::Inet,
            "filter",
            vec![
                base("input", Hook::Input, 0, false),
                base("output", Hook::Output, 0, true),
            ],
        );
        let text = render(
            &plan_open(
                &Facts {
                    genid: 1,
                    tables: vec![t.clone()],
                },
                &req(None),
            )
            .unwrap()
            .ops,
        );
        assert!(text.contains("add rule inet filter ovh_access_out ip daddr @ovh_access_v4 tcp sport { 22, 2222 } accept"), "{text}");
        assert!(text.contains("insert rule inet filter output jump ovh_access_out"));
        assert!(
            text.contains("insert rule inet filter input jump ovh_access "),
            "a permissive input chain still gets its jump"
        );
        t.chains[1].base.as_mut().unwrap().policy_drop = false;
        let text = render(
            &plan_open(
                &Facts {
                    genid: 1,
                    tables: vec![t],
                },
                &req(None),
            )
            .unwrap()
            .ops,
        );
        assert!(!text.contains("ovh_access_out"), "{text}");
    }

    #[test]
    fn second_grant_updates_in_place_without_a_second_jump() {
        let mut t = table(
            Family::Inet,
            "filter",
            vec![base("input", Hook::Input, 0, true)],
        );
        let mut ours = base(CHAIN_IN, Hook::Other(99), 0, false);
        ours.base = None;
        ours.comment = Some(TAG.into());
        ours.use_count = 3; // two rules of its own and the jump
        ours.rules = Some(vec![
            RuleFacts {
                handle: 5,
                jump_to: None,
                comment: None,
                xt: false,
                drops: false,
                iptables_readable: true,
                signature: Some("an older rule".into())
            };
            2
        ]);
        t.chains.push(ours);
        t.chains[0].rules = Some(vec![RuleFacts {
            handle: 9,
            jump_to: Some(CHAIN_IN.into()),
            comment: Some(TAG.into()),
            xt: false,
            drops: false,
            iptables_readable: true,
            signature: None,
        }]);
        for s in [SET_V4, SET_V6] {
            t.sets.push(SetFacts {
                name: s.into(),
                handle: 3,
                comment: Some(TAG.into()),
                elements: None,
            });
        }
        let facts = Facts {
            genid: 1,
            tables: vec![t],
        };
        let ops = plan_open(&facts, &req(None)).unwrap().ops;
        assert!(
            !ops.iter().any(|o| matches!(
                o,
                Op::InsertJump { .. } | Op::AddSet { .. } | Op::AddChain { .. }
            )),
            "{ops:?}"
        );
        assert!(ops.contains(&Op::FlushSet {
            table: TableId {
                family: Family::Inet,
                name: "filter".into()
            },
            set: SET_V4.into()
        }));
        let close = plan_close(&facts).unwrap();
        assert_eq!(
            render(&close.ops),
            "delete rule inet filter input handle 9\nflush chain inet filter ovh_access\ndelete chain inet filter ovh_access\n\
             delete set inet filter ovh_access_v4\ndelete set inet filter ovh_access_v6\n"
        );
        assert!(close.notes.is_empty(), "{:?}", close.notes);
    }

    #[test]
    fn a_regrant_with_the_same_ports_leaves_the_rules_alone() {
        let mut t = table(
            Family::Ip,
            "filter4",
            vec![base("input", Hook::Input, 0, true)],
        );
        let mut ours = base(CHAIN_IN, Hook::Input, 0, false);
        ours.base = None;
        ours.comment = Some(TAG.into());
        let sig = access_rule_text(IpVersion::V4, Direction::In, SET_V4, &[22, 2222]);
        ours.rules = Some(vec![RuleFacts {
            handle: 5,
            jump_to: None,
            comment: None,
            xt: false,
            drops: false,
            iptables_readable: true,
            signature: Some(sig),
        }]);
        t.chains.push(ours);
        let facts = Facts {
            genid: 1,
            tables: vec![t],
        };
        let same = plan_open(&facts, &req(None)).unwrap();
        assert!(
            !same
                .ops
                .iter()
                .any(|o| matches!(o, Op::FlushChain { .. } | Op::AddAccess { .. })),
            "{:?}",
            same.ops
        );
        let other = OpenRequest {
            ports: vec![22],
            ..req(None)
        };
        let changed = plan_open(&facts, &other).unwrap();
        assert!(changed
            .ops
            .iter()
            .any(|o| matches!(o, Op::FlushChain { .. })));
        assert!(render(&changed.ops).contains(
            "add rule ip filter4 ovh_access ip saddr @ovh_access_v4 tcp dport { 22 } accept"
        ));
    }

    /// A table holding exactly what `req(None)` asks: sets, chain, rules and jump.
    fn granted_table(elements: Vec<Element>) -> TableFacts {
        let mut t = table(
            Family::Inet,
            "filter",
            vec![base("input", Hook::Input, 0, true)],
        );
        let mut ours = base(CHAIN_IN, Hook::Input, 0, false);
        ours.base = None;
        ours.comment = Some(TAG.into());
        ours.rules = Some(
            IpVersion::ALL
                .iter()
                .map(|&ip| RuleFacts {
                    handle: 5,
                    jump_to: None,
                    comment: None,
                    xt: false,
                    drops: false,
                    iptables_readable: true,
                    signature: Some(access_rule_text(
                        ip,
                        Direction::In,
                        set_name(ip),
                        &[22, 2222],
                    )),
                })
                .collect(),
        );
        t.chains.push(ours);
        t.chains[0].rules = Some(vec![RuleFacts {
            handle: 9,
            jump_to: Some(CHAIN_IN.into()),
            comment: Some(TAG.into()),
            xt: false,
            drops: false,
            iptables_readable: true,
            signature: None,
        }]);
        for ip in IpVersion::ALL {
            t.sets.push(SetFacts {
                name: set_name(ip).into(),
                handle: 3,
                comment: Some(TAG.into()),
                elements: Some(
                    elements
                        .iter()
                        .filter(|e| IpVersion::of(e.address) == ip)
                        .cloned()
                        .collect(),
                ),
            });
        }
        t
    }

    fn element(a: &str, timeout_ms: Option<u64>) -> Element {
        Element {
            address: a.parse().unwrap(),
            timeout_ms,
            expires_ms: timeout_ms,
        }
    }

    #[test]
    fn an_identical_regrant_plans_nothing_and_a_timed_one_refreshes_the_elements() {
        let exact = vec![element("192.0.2.10", None), element("2001:db8::10", None)];
        let facts = |els: Vec<Element>| Facts {
            genid: 1,
            tables: vec![granted_table(els)],
        };
        let same = plan_open(&facts(exact.clone()), &req(None)).unwrap();
        assert!(same.ops.is_empty(), "{:?}", same.ops);
        assert_eq!(same.chains, vec!["inet filter input"]);

        let timed = plan_open(&facts(exact.clone()), &req(Some(Duration::from_secs(60)))).unwrap();
        assert_eq!(
            render(&timed.ops),
            "flush set inet filter ovh_access_v4\nadd element inet filter ovh_access_v4 { 192.0.2.10 timeout 1m }\n\
             flush set inet filter ovh_access_v6\nadd element inet filter ovh_access_v6 { 2001:db8::10 timeout 1m }\n"
        );

        // Elements left with a timeout by an earlier `--for`: a permanent grant rewrites them.
        let expiring = vec![
            element("192.0.2.10", Some(60_000)),
            element("2001:db8::10", None),
        ];
        let ops = plan_open(&facts(expiring), &req(None)).unwrap().ops;
        assert_eq!(
            render(&ops),
            "flush set inet filter ovh_access_v4\nadd element inet filter ovh_access_v4 { 192.0.2.10 }\n"
        );
        // An address missing, or one too many, is rewritten; elements not read are too.
        for els in [
            vec![element("2001:db8::10", None)],
            vec![
                element("192.0.2.10", None),
                element("192.0.2.11", None),
                element("2001:db8::10", None),
            ],
        ] {
            let ops = plan_open(&facts(els), &req(None)).unwrap().ops;
            assert!(
                render(&ops).contains("flush set inet filter ovh_access_v4\n"),
                "{ops:?}"
            );
        }
        let mut unread = granted_table(exact);
        unread.sets[0].elements = None;
        let ops = plan_open(
            &Facts {
                genid: 1,
                tables: vec![unread],
            },
            &req(None),
        )
        .unwrap()
        .ops;
        assert_eq!(ops.len(), 2, "{ops:?}");
    }

    #[test]
    fn a_jump_below_the_head_is_moved_back_to_it() {
        let exact = vec![element("192.0.2.10", None), element("2001:db8::10", None)];
        let mut t = granted_table(exact);
        let user_drop = RuleFacts {
            handle: 12,
            jump_to: None,
            comment: None,
            xt: false,
            drops: false,
            iptables_readable: true,
            signature: None,
        };
        t.chains[0].rules.as_mut().unwrap().insert(0, user_drop);
        let ops = plan_open(
            &Facts {
                genid: 1,
                tables: vec![t],
            },
            &req(None),
        )
        .unwrap()
        .ops;
        assert_eq!(
            render(&ops),
            "delete rule inet filter input handle 9\n\
             insert rule inet filter input jump ovh_access comment \"ovh-access\"\n"
        );
    }

    #[test]
    fn iptables_nft_tables_and_foreign_names_are_left_alone() {
        // iptables' names, a rule iptables-nft cannot read (`ct state`, as
        // iptables-restore-translate writes): nftables' own.
        let rule = |xt: bool, iptables_readable: bool| RuleFacts {
            handle: 2,
            jump_to: None,
            comment: None,
            xt,
            drops: false,
            iptables_readable,
            signature: None,
        };
        let mut native = table(
            Family::Ip,
            "filter",
            vec![base("INPUT", Hook::Input, 0, true)],
        );
        native.chains[0].rules = Some(vec![rule(false, false)]);
        native.chains[0].rules_complete = true;
        let open = |t: &TableFacts| {
            plan_open(
                &Facts {
                    genid: 1,
                    tables: vec![t.clone()],
                },
                &req(None),
            )
            .unwrap()
        };
        assert_eq!(open(&native).chains, vec!["ip filter INPUT".to_string()]);
        // Every rule one iptables-nft reads back (it writes `-i lo -j ACCEPT` natively): its own.
        let mut readable = native.clone();
        readable.chains[0].rules = Some(vec![rule(false, true)]);
        assert!(open(&readable).ops.is_empty());
        // Only partly read: whose it is cannot be told, so it is not taken for iptables-nft's.
        readable.chains[0].rules_complete = false;
        assert!(!open(&readable).ops.is_empty());
        let mut xt = native;
        xt.chains[0].rules = Some(vec![RuleFacts {
            handle: 2,
            jump_to: None,
            comment: None,
            xt: true,
            drops: false,
            iptables_readable: true,
            signature: None,
        }]);
        let plan = plan_open(
            &Facts {
                genid: 1,
                tables: vec![xt],
            },
            &req(None),
        )
        .unwrap();
        assert!(plan.ops.is_empty());
        assert!(
            plan.notes.iter().any(|n| n.contains("iptables-nft")),
            "{:?}",
            plan.notes
        );
        assert!(
            !plan.notes.iter().any(|n| n.contains("nothing to open")),
            "its INPUT drops: {:?}",
            plan.notes
        );

        let mut t = table(
            Family::Inet,
            "filter",
            vec![base("input", Hook::Input, 0, true)],
        );
        t.chains[0].rules = Some(vec![RuleFacts {
            handle: 2,
            jump_to: None,
            comment: None,
            xt: true,
            drops: false,
            iptables_readable: true,
            signature: None,
        }]);
        assert!(plan_open(
            &Facts {
                genid: 1,
                tables: vec![t.clone()]
            },
            &req(None)
        )
        .unwrap()
        .ops
        .is_empty());

        t.chains[0].rules = Some(vec![]);
        let mut foreign = base(CHAIN_IN, Hook::Input, 0, false);
        foreign.base = None;
        t.chains.push(foreign);
        let err = plan_open(
            &Facts {
                genid: 1,
                tables: vec![t],
            },
            &req(None),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("did not create"), "{err}");
    }

    #[test]
    fn an_owned_table_that_drops_refuses_the_grant_and_names_its_owner() {
        let mut t = table(
            Family::Inet,
            "firewalld",
            vec![base("filter_INPUT", Hook::Input, 10, false)],
        );
        t.owned = true;
        t.owner = Some("process firewalld (pid 812)".into());
        let facts = |t: &TableFacts| Facts {
            genid: 1,
            tables: vec![t.clone()],
        };
        // Nothing there drops: left to its owner, nothing to say.
        let plan = plan_open(&facts(&t), &req(None)).unwrap();
        assert!(plan.ops.is_empty(), "{plan:?}");
        t.chains[0].base.as_mut().unwrap().policy_drop = true;
        let err = plan_open(&facts(&t), &req(None)).unwrap_err().to_string();
        assert!(
            err.contains("inet firewalld belongs to process firewalld (pid 812)")
                && err.contains("filter_INPUT")
                && err.contains("--firewall"),
            "{err}"
        );
        // Revoke has nothing to do there and does not fail on it.
        assert!(plan_close(&facts(&t)).unwrap().ops.is_empty());
    }

    #[test]
    fn no_input_chain_means_nothing_to_open_and_close_finds_nothing() {
        let facts = Facts {
            genid: 1,
            tables: vec![table(
                Family::Inet,
                "nat",
                vec![base("pre", Hook::Prerouting, -100, false)],
            )],
        };
        let plan = plan_open(&facts, &req(None)).unwrap();
        assert!(plan.ops.is_empty() && plan.chains.is_empty());
        assert!(plan.notes[0].contains("nothing to open"));
        let close = plan_close(&Facts::default()).unwrap();
        assert!(close.ops.is_empty());
        assert!(close.notes[0].contains("flushed"), "{:?}", close.notes);
    }

    #[test]
    fn every_input_base_chain_of_every_table_is_hooked() {
        let facts = Facts {
            genid: 1,
            tables: vec![
                table(
                    Family::Inet,
                    "a",
                    vec![
                        base("in1", Hook::Input, -10, true),
                        base("in2", Hook::Input, 10, false),
                    ],
                ),
                table(
                    Family::Ip,
                    "b",
                    vec![
                        base("input", Hook::Input, 0, true),
                        base("fwd", Hook::Forward, 0, true),
                    ],
                ),
            ],
        };
        let plan = plan_open(&facts, &req(None)).unwrap();
        assert_eq!(plan.chains, vec!["inet a in1", "inet a in2", "ip b input"]);
        let jumps = plan
            .ops
            .iter()
            .filter(|o| matches!(o, Op::InsertJump { .. }))
            .count();
        assert_eq!(jumps, 3);
    }

    #[test]
    fn durations_print_as_nft_does() {
        assert_eq!(nft_duration(Duration::from_secs(5)), "5s");
        assert_eq!(nft_duration(Duration::from_secs(2 * 86400 + 60)), "2d1m");
        assert_eq!(nft_duration(Duration::from_millis(1500)), "1500ms");
    }
}
