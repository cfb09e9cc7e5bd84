//! Planning: the `iptables-restore --noflush` input that brings one layer's tables from what
//! `iptables-save` showed to what the request asks, as a pure function of the two.
//!
//! Shape of what the tool owns in a table (Tailscale's linuxfw does the same): its own chain,
//! one tagged jump at the head of each built-in chain that needs it, and in the chain one ACCEPT
//! per address. A packet crosses raw, mangle and filter, and each one's DROP is final: filter
//! INPUT is always hooked; filter OUTPUT, mangle PREROUTING/INPUT/OUTPUT and raw
//! PREROUTING/OUTPUT when they can drop. Everything is found again by name and tag, never by
//! position, and a chain of the tool's names is the tool's only when every rule in it is tagged.
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

use super::save::{SavedChain, SavedRule, SavedTable};
use super::Family;
use crate::firewall::{OpenRequest, TAG};

/// The tool's chain for incoming SSH (jumped to from INPUT).
pub const CHAIN_IN: &str = "OVH-ACCESS";
/// The tool's chain for the SSH replies (jumped to from OUTPUT, when OUTPUT can drop).
pub const CHAIN_OUT: &str = "OVH-ACCESS-OUT";
/// The tool's chain for incoming SSH before routing (raw and mangle PREROUTING): its ACCEPTs
/// match only packets for this host (`-m addrtype --dst-type LOCAL`), so nothing routed through
/// is let by.
pub const CHAIN_PRE: &str = "OVH-ACCESS-PRE";
/// `-m multiport` takes at most 15 ports per rule (XT_MULTI_PORTS in xt_multiport.h).
const MULTIPORT_MAX: usize = 15;

/// One hook the tool attaches to: the built-in chain, its own chain and the match direction.
struct Hook {
    builtin: &'static str,
    chain: &'static str,
    /// `-s` on INPUT (the support host is the source); `-d` on OUTPUT (it is the destination).
    addr_flag: &'static str,
    /// `--dports` on INPUT; `--sports` on OUTPUT: the server answers *from* its SSH port. The
    /// guide's `-A OUTPUT -d IP -p tcp --dport 22` has the direction wrong.
    port_flag: &'static str,
    /// Only packets addressed to this host (before routing).
    local_only: bool,
}

const PREROUTING: Hook = Hook {
    builtin: "PREROUTING",
    chain: CHAIN_PRE,
    addr_flag: "-s",
    port_flag: "--dports",
    local_only: true,
};
const INPUT: Hook = Hook {
    builtin: "INPUT",
    chain: CHAIN_IN,
    addr_flag: "-s",
    port_flag: "--dports",
    local_only: false,
};
const OUTPUT: Hook = Hook {
    builtin: "OUTPUT",
    chain: CHAIN_OUT,
    addr_flag: "-d",
    port_flag: "--sports",
    local_only: false,
};
const HOOKS: [&Hook; 3] = [&PREROUTING, &INPUT, &OUTPUT];

/// The tables the tool programs, in the order a packet meets them on each hook.
pub const TABLES: [&str; 3] = ["raw", "mangle", "filter"];

pub fn is_tool_chain_name(name: &str) -> bool {
    HOOKS.iter().any(|h| h.chain == name)
}

/// What to feed `*-restore --noflush`, and what to tell the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// True when the script must run; false when the layer already is as requested.
    pub changed: bool,
    /// The complete restore input (`*filter` … `COMMIT`, per table); empty when nothing changes.
    pub script: String,
    /// The built-in chains that hold (or held) the tool's jump: `filter INPUT`, `raw OUTPUT`.
    pub chains: Vec<String>,
    pub notes: Vec<String>,
}

impl Plan {
    /// One table's plan added to the layer's.
    fn absorb(&mut self, other: Plan) {
        self.changed |= other.changed;
        if other.changed {
            self.script.push_str(&other.script);
        }
        self.chains.extend(other.chains);
        self.notes.extend(other.notes);
    }
}

/// True when `chain` of `table` can end a packet: its policy drops, or a rule drops or rejects,
/// in it or in a chain of the user's it leads to (ufw's chains, followed). The tool's own jumps
/// do not count. Chains are followed to a bounded depth; deeper counts as dropping.
fn can_drop(table: &SavedTable, chain: &SavedChain) -> bool {
    fn walk(table: &SavedTable, chain: &SavedChain, depth: usize) -> bool {
        if depth > 16 {
            return true;
        }
        chain.policy.as_deref() == Some("DROP")
            || chain.rules.iter().any(|r| match r.target() {
                Some(t) if t == "DROP" || t == "REJECT" => true,
                Some(t) if is_tool_chain_name(&t) => false,
                Some(t) => table.chain(&t).is_some_and(|c| walk(table, c, depth + 1)),
                None => false,
            })
    }
    walk(table, chain, 0)
}

/// The hooks of `table` the tool attaches to: filter INPUT always (drops can be added at any
/// moment); every other one when it can drop, or when it already jumps to the tool (a grant stays
/// where it was put).
fn hooks_of(table: &SavedTable) -> Vec<&'static Hook> {
    let candidates: &[&'static Hook] = match table.name.as_str() {
        "filter" => &[&INPUT, &OUTPUT],
        "mangle" => &[&PREROUTING, &INPUT, &OUTPUT],
        "raw" => &[&PREROUTING, &OUTPUT],
        _ => &[],
    };
    candidates
        .iter()
        .copied()
        .filter(|h| {
            table.chain(h.builtin).is_some_and(|c| {
                (table.name == "filter" && h.builtin == "INPUT")
                    || can_drop(table, c)
                    || !tool_jumps(table, h.builtin).is_empty()
            })
        })
        .collect()
}

/// The built-in chains of `table` the tool hooks (see `hooks_of`), each with whether it sees the
/// replies (OUTPUT): what `doctor` walks.
pub fn hooked_chains(table: &SavedTable) -> Vec<(&'static str, bool)> {
    hooks_of(table)
        .into_iter()
        .map(|h| (h.builtin, h.chain == CHAIN_OUT))
        .collect()
}

/// Chains of the tool's names holding rules the tool did not write: an administrator's, never
/// the tool's to flush or delete.
fn foreign_chains(table: &SavedTable) -> Vec<(&'static str, usize)> {
    HOOKS
        .iter()
        .filter_map(|h| {
            let c = table.chain(h.chain)?;
            let n = c.rules.iter().filter(|r| !r.has_comment(TAG)).count();
            (n > 0).then_some((h.chain, n))
        })
        .collect()
}

/// Plan the opening of `req` in a layer whose tables `*-save` printed as `tables`. `now` dates
/// `--datestop`.
pub fn open_layer(
    tables: &[SavedTable],
    family: Family,
    req: &OpenRequest,
    now: SystemTime,
) -> Result<Plan> {
    let mut plan = Plan::default();
    for name in TABLES {
        let table = tables.iter().find(|t| t.name == name);
        if name != "filter" && table.is_none() {
            continue;
        }
        plan.absorb(open_table(table, name, family, req, now)?);
    }
    Ok(plan)
}

/// Plan the removal of everything the tool added to a layer.
pub fn close_layer(tables: &[SavedTable]) -> Result<Plan> {
    let mut plan = Plan::default();
    for name in TABLES {
        let table = tables.iter().find(|t| t.name == name);
        if name != "filter" && table.is_none() {
            continue;
        }
        plan.absorb(close_table(table, name)?);
    }
    if !plan.changed {
        plan.notes
            .retain(|n| !n.starts_with("nothing of the tool's"));
        if plan.notes.is_empty() {
            plan.notes
                .push("nothing of the tool's found in the layer's tables".into());
        }
    }
    Ok(plan)
}

/// Plan the opening of `req` in one layer whose filter table is `filter` (None: the layer has no
/// filter table, so nothing there can drop and nothing is created). `now` dates `--datestop`.
pub fn open(
    filter: Option<&SavedTable>,
    family: Family,
    req: &OpenRequest,
    now: SystemTime,
) -> Result<Plan> {
    open_table(filter, "filter", family, req, now)
}

/// Plan the opening of `req` in the table `name` of one layer, as `*-save` printed it (None:
/// the layer has no such table, so nothing there can drop and nothing is created).
fn open_table(
    table: Option<&SavedTable>,
    name: &str,
    family: Family,
    req: &OpenRequest,
    now: SystemTime,
) -> Result<Plan> {
    let Some(table) = table else {
        return Ok(Plan {
            notes: vec![format!("no {name} table in this layer: nothing there drops the support traffic, nothing to open")],
            ..Plan::default()
        });
    };
    let ports = requested_ports(req)?;
    if let Some((chain, n)) = foreign_chains(table).first() {
        bail!(
            "the {name} table already has a chain {chain} with {n} rule(s) ovh-access did not write (no comment \"{TAG}\"): it is not the tool's; rename it (iptables -t {name} -E {chain} NEWNAME, and the jumps to it) and grant again; nothing was changed"
        );
    }
    let addrs = family_addresses(req, family);
    if addrs.is_empty() {
        return close_absent_family(table, name, family);
    }
    let datestop = req.timeout.map(|d| datestop(now, d)).transpose()?;

    let mut notes = Vec::new();
    if name == "filter" && table.chain("INPUT").is_none() {
        // iptables-nft creates built-in chains only when first used.
        notes.push(
            "the filter table has no INPUT chain: nothing here drops incoming SSH".to_string(),
        );
    }
    let hooks = hooks_of(table);
    let mut edit = TableEdit::default();
    for hook in &hooks {
        edit.hook(
            table,
            hook,
            &accepts(hook, &addrs, &ports, datestop.as_deref()),
        );
    }
    // A hook no longer wanted (OUTPUT's policy went back to ACCEPT): take its objects away.
    for hook in HOOKS
        .iter()
        .filter(|h| !hooks.iter().any(|w| w.chain == h.chain))
    {
        edit.unhook(table, hook);
    }
    let chains = hooks
        .iter()
        .map(|h| format!("{name} {}", h.builtin))
        .collect();
    if !edit.changed {
        if name == "filter" {
            notes.push("already open for these addresses and ports".into());
        }
        return Ok(Plan {
            changed: false,
            script: String::new(),
            chains,
            notes,
        });
    }
    if let Some(stop) = datestop.as_ref().filter(|_| name == "filter") {
        notes.push(format!(
            "the kernel stops matching at {stop} UTC (-m time --datestop)"
        ));
    }
    Ok(Plan {
        changed: true,
        script: script(name, &edit.decls, &edit.lines),
        chains,
        notes,
    })
}

/// The opening of a request without an address of the layer's family: an update that leaves
/// no address of this family must not leave the old ones open, so it closes the table.
fn close_absent_family(table: &SavedTable, name: &str, family: Family) -> Result<Plan> {
    let mut plan = close_table(Some(table), name)?;
    plan.notes
        .retain(|n| !n.starts_with("nothing of the tool's"));
    if name == "filter" {
        plan.notes.push(format!(
            "no {} support address: nothing to open in this layer",
            family.label()
        ));
    }
    Ok(plan)
}

/// The request's ports, sorted and without duplicates; at least one.
fn requested_ports(req: &OpenRequest) -> Result<Vec<u16>> {
    let mut ports = req.ports.clone();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        bail!("no SSH port to open in the firewall; give --port or let the tool find sshd's ports");
    }
    Ok(ports)
}

/// The request's addresses of the layer's family, sorted and without duplicates.
fn family_addresses(req: &OpenRequest, family: Family) -> Vec<IpAddr> {
    let mut a: Vec<IpAddr> = req
        .addresses
        .iter()
        .copied()
        .filter(|a| family.holds(a))
        .collect();
    a.sort();
    a.dedup();
    a
}

/// The ACCEPTs the tool's chain of `hook` must hold: one per address and group of at most
/// [`MULTIPORT_MAX`] ports.
fn accepts(hook: &Hook, addrs: &[IpAddr], ports: &[u16], datestop: Option<&str>) -> Vec<String> {
    addrs
        .iter()
        .flat_map(|a| {
            ports
                .chunks(MULTIPORT_MAX)
                .map(move |chunk| accept_spec(hook, a, chunk, datestop))
        })
        .collect()
}

/// The restore input of one table, and whether it changes anything.
#[derive(Debug, Default)]
struct TableEdit {
    /// Chain declarations (`:CHAIN - [0:0]`).
    decls: Vec<String>,
    lines: Vec<String>,
    changed: bool,
}

impl TableEdit {
    /// Make the tool's chain of `hook` hold exactly `wanted`, with the tool's one jump to it at
    /// the head of the built-in chain.
    fn hook(&mut self, table: &SavedTable, hook: &Hook, wanted: &[String]) {
        let current: Option<Vec<&str>> = table
            .chain(hook.chain)
            .map(|c| c.rules.iter().map(|r| r.spec.as_str()).collect());
        if current.as_deref() != Some(&wanted.iter().map(String::as_str).collect::<Vec<_>>()[..]) {
            self.changed = true;
        }
        // Declaring an existing user chain in --noflush mode flushes it (iptables-restore's
        // chain handling), so the chain's new content replaces the old in the same commit.
        self.decls.push(format!(":{} - [0:0]", hook.chain));
        let jumps = tool_jumps(table, hook.builtin);
        let at_head = jumps.len() == 1 && jumps[0].0 == 0;
        if !at_head {
            self.changed = true;
            for (_, rule) in &jumps {
                self.lines
                    .push(format!("-D {} {}", hook.builtin, rule.spec));
            }
            // At the head: an ACCEPT in our chain must be seen before the user's (or ufw's)
            // DROP rules and chains.
            self.lines
                .push(format!("-I {} 1 {}", hook.builtin, jump_spec(hook.chain)));
        }
        for spec in wanted {
            self.lines.push(format!("-A {} {}", hook.chain, spec));
        }
    }

    /// Take away the tool's jumps to and chain of a hook it no longer needs.
    fn unhook(&mut self, table: &SavedTable, hook: &Hook) {
        let (removal, _) = removal_lines(table, hook.chain);
        if !removal.is_empty() {
            self.changed = true;
            self.lines.extend(removal);
        }
    }
}

/// Plan the removal of everything the tool added to this filter table: its tagged jumps (by
/// structure and tag) and its chains.
pub fn close(filter: Option<&SavedTable>) -> Result<Plan> {
    close_table(filter, "filter")
}

fn close_table(table: Option<&SavedTable>, name: &str) -> Result<Plan> {
    let Some(table) = table else {
        return Ok(Plan {
            notes: vec![format!(
                "no {name} table in this layer: nothing of the tool's to remove"
            )],
            ..Plan::default()
        });
    };
    let mut lines = Vec::new();
    let mut chains = Vec::new();
    let mut notes = Vec::new();
    for hook in HOOKS {
        if !tool_jumps(table, hook.builtin).is_empty() {
            chains.push(format!("{name} {}", hook.builtin));
        }
        let (removal, kept) = removal_lines(table, hook.chain);
        lines.extend(removal);
        notes.extend(kept.map(|why| format!("{name} {}: {why}", hook.chain)));
    }
    if lines.is_empty() {
        notes.push(format!("nothing of the tool's found in the {name} table"));
        return Ok(Plan {
            notes,
            ..Plan::default()
        });
    }
    Ok(Plan {
        changed: true,
        script: script(name, &[], &lines),
        chains,
        notes,
    })
}

/// `-D` every tagged jump to `chain` wherever it is, then flush and delete the chain, and the
/// reason when the chain must stay: an untagged jump still leads to it (`-X` would fail the whole
/// restore: the chain is emptied, so it accepts nothing, and kept), or it holds rules the tool
/// did not write (only the tool's are deleted).
fn removal_lines(table: &SavedTable, chain: &str) -> (Vec<String>, Option<String>) {
    let mut lines = Vec::new();
    let mut untagged = Vec::new();
    for c in &table.chains {
        if is_tool_chain_name(&c.name) {
            continue;
        }
        for rule in c.rules.iter().filter(|r| r.targets(chain)) {
            if rule.has_comment(TAG) {
                lines.push(format!("-D {} {}", c.name, rule.spec));
            } else {
                untagged.push(format!("-A {} {}", c.name, rule.spec));
            }
        }
    }
    let Some(ours) = table.chain(chain) else {
        return (lines, None);
    };
    let foreign = ours.rules.iter().filter(|r| !r.has_comment(TAG)).count();
    if foreign > 0 {
        for r in ours.rules.iter().filter(|r| r.has_comment(TAG)) {
            lines.push(format!("-D {chain} {}", r.spec));
        }
        return (
            lines,
            Some(format!(
                "kept with the {foreign} rule(s) ovh-access did not write; only its own were deleted"
            )),
        );
    }
    // A chain kept empty before is not flushed again: nothing would change.
    if !ours.rules.is_empty() || untagged.is_empty() {
        lines.push(format!("-F {chain}"));
    }
    if !untagged.is_empty() {
        return (
            lines,
            Some(format!(
                "emptied (it accepts nothing now) and kept, since rules without the \"{TAG}\" comment still jump to it ({}); delete them and the chain by hand",
                untagged.join("; ")
            )),
        );
    }
    lines.push(format!("-X {chain}"));
    (lines, None)
}

/// The tool's jumps in `builtin` with their positions (0 = head).
fn tool_jumps<'a>(table: &'a SavedTable, builtin: &str) -> Vec<(usize, &'a SavedRule)> {
    let Some(c) = table.chain(builtin) else {
        return Vec::new();
    };
    c.rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.has_comment(TAG) && HOOKS.iter().any(|h| r.targets(h.chain)))
        .collect()
}

fn jump_spec(chain: &str) -> String {
    format!("-m comment --comment {TAG} -j {chain}")
}

/// One ACCEPT, written in the order `iptables-save` prints the same rule, so that an unchanged
/// grant compares equal to the saved rule and needs no restore.
fn accept_spec(hook: &Hook, addr: &IpAddr, ports: &[u16], datestop: Option<&str>) -> String {
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut s = format!(
        "{} {addr}/{prefix} -p tcp -m multiport {} {}",
        hook.addr_flag,
        hook.port_flag,
        ports.join(",")
    );
    if hook.local_only {
        s.push_str(" -m addrtype --dst-type LOCAL");
    }
    if let Some(stop) = datestop {
        // libxt_time reads the date as UTC and xt_time compares it, in seconds since the epoch,
        // with the packet's wall-clock time (--kerneltz only shifts daytime and weekday
        // matches): the kernel itself ends the grant, even if the tool never runs again.
        s.push_str(&format!(" -m time --datestop {stop}"));
    }
    s.push_str(&format!(" -m comment --comment {TAG} -j ACCEPT"));
    s
}

fn script(table: &str, decls: &[String], lines: &[String]) -> String {
    let mut s = format!("*{table}\n");
    for l in decls.iter().chain(lines) {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

/// `now + d` as xt_time's `--datestop` wants it: `YYYY-MM-DDThh:mm:ss`, UTC. Truncated to the
/// second: xt_time matches while the packet's second is ≤ the stop, so the grant lasts at most
/// `d` and at least `d - 1 s`.
pub fn datestop(now: SystemTime, d: Duration) -> Result<String> {
    let stop = now
        .checked_add(d)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|t| t.as_secs())
        .unwrap_or(u64::MAX);
    // libxt_time parses dates into a 32-bit signed time (its man page: up to 2038-01-19T04:17:07).
    if stop > i32::MAX as u64 {
        bail!("the grant would end after 2038-01-19T03:14:07 UTC, beyond what iptables' -m time --datestop accepts; give a shorter --for");
    }
    Ok(format_utc(stop))
}

/// Seconds since the epoch → `YYYY-MM-DDThh:mm:ss` (proleptic Gregorian, UTC).
pub fn format_utc(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = crate::civil::civil_from_unix(secs.min(i64::MAX as u64) as i64);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::iptables::save::{parse, SavedChain};

    const LEGACY_V4: &str = include_str!("../../../rulesets/legacy-input-drop.v4.rules");
    const LEGACY_V6: &str = include_str!("../../../rulesets/legacy-input-drop.v6.rules");
    const OUTPUT_DROP: &str = include_str!("../../../rulesets/output-drop.v4.rules");
    const UFW_V4: &str = include_str!("../../../rulesets/ufw.v4.rules");
    const LEGACY_ACCEPT: &str = include_str!("../../../rulesets/legacy-accept.v4.rules");

    fn filter(text: &str) -> SavedTable {
        parse(text)
            .unwrap()
            .into_iter()
            .find(|t| t.name == "filter")
            .unwrap()
    }

    fn req(addrs: &[&str], ports: &[u16], secs: Option<u64>) -> OpenRequest {
        OpenRequest {
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ports: ports.to_vec(),
            timeout: secs.map(Duration::from_secs),
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// What `iptables-restore --noflush` does with the script, on the parsed table: enough of
    /// its semantics (declare = create or flush, -I N, -A, -D by spec, -F, -X) to check that a
    /// plan, applied, gives the state the next plan expects. The netns tests check the kernel.
    fn apply(t: &SavedTable, script: &str) -> SavedTable {
        let mut t = t.clone();
        let body: Vec<&str> = script.lines().collect();
        assert_eq!(body.first(), Some(&"*filter"));
        assert_eq!(body.last(), Some(&"COMMIT"));
        for line in &body[1..body.len() - 1] {
            if let Some(name) = line.strip_prefix(':') {
                let name = name.split_whitespace().next().unwrap();
                match t.chains.iter_mut().find(|c| c.name == name) {
                    Some(c) => c.rules.clear(),
                    None => t.chains.push(SavedChain {
                        name: name.into(),
                        policy: None,
                        rules: vec![],
                    }),
                }
                continue;
            }
            let (op, rest) = line.split_at(2);
            let rest = rest.trim();
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            let pos = t
                .chains
                .iter()
                .position(|c| c.name == chain)
                .unwrap_or_else(|| panic!("no chain {chain}"));
            match op {
                "-A" => t.chains[pos].rules.push(rule(spec)),
                "-I" => {
                    let (n, spec) = spec.split_once(' ').unwrap();
                    let n: usize = n.parse().unwrap();
                    t.chains[pos].rules.insert(n - 1, rule(spec));
                }
                "-D" => {
                    let i = t.chains[pos]
                        .rules
                        .iter()
                        .position(|r| r.spec == spec)
                        .expect("-D of a missing rule");
                    t.chains[pos].rules.remove(i);
                }
                "-F" => t.chains[pos].rules.clear(),
                "-X" => {
                    assert!(t.chains[pos].rules.is_empty());
                    t.chains.remove(pos);
                }
                _ => panic!("unexpected line {line}"),
            }
        }
        t
    }

    fn rule(spec: &str) -> SavedRule {
        SavedRule::new(spec)
    }

    #[test]
    fn opens_input_at_head_for_own_family_only() {
        let t = filter(LEGACY_V4);
        let p = open(
            Some(&t),
            Family::V4,
            &req(
                &["192.0.2.2", "2001:db8::2", "192.0.2.1"],
                &[22, 2222, 22],
                None,
            ),
            at(0),
        )
        .unwrap();
        assert!(p.changed);
        assert_eq!(
            p.script,
            "*filter\n\
             :OVH-ACCESS - [0:0]\n\
             -I INPUT 1 -m comment --comment ovh-access -j OVH-ACCESS\n\
             -A OVH-ACCESS -s 192.0.2.1/32 -p tcp -m multiport --dports 22,2222 -m comment --comment ovh-access -j ACCEPT\n\
             -A OVH-ACCESS -s 192.0.2.2/32 -p tcp -m multiport --dports 22,2222 -m comment --comment ovh-access -j ACCEPT\n\
             COMMIT\n"
        );
        assert_eq!(p.chains, vec!["filter INPUT"]);
        let after = apply(&t, &p.script);
        assert_eq!(
            after.chain("INPUT").unwrap().rules[0].target().as_deref(),
            Some(CHAIN_IN)
        );
        // The user's rules are all still there, in order, behind the jump.
        assert_eq!(
            after.chain("INPUT").unwrap().rules[1..],
            t.chain("INPUT").unwrap().rules[..]
        );
    }

    #[test]
    fn ipv6_layer_uses_128_bit_prefixes() {
        let t = filter(LEGACY_V6);
        let p = open(
            Some(&t),
            Family::V6,
            &req(&["192.0.2.2", "2001:db8:1::2"], &[22], None),
            at(0),
        )
        .unwrap();
        assert!(p
            .script
            .contains("-A OVH-ACCESS -s 2001:db8:1::2/128 -p tcp -m multiport --dports 22 "));
        assert!(!p.script.contains("192.0.2.2"));
    }

    #[test]
    fn second_open_changes_nothing_and_close_restores_the_table() {
        let t = filter(UFW_V4);
        let r = req(&["192.0.2.2"], &[22], None);
        let p = open(Some(&t), Family::V4, &r, at(0)).unwrap();
        let after = apply(&t, &p.script);
        // ufw's own chains and jumps are untouched, the tool's jump comes before them.
        let input = &after.chain("INPUT").unwrap().rules;
        assert_eq!(input[0].target().as_deref(), Some(CHAIN_IN));
        assert_eq!(
            input[1].target().as_deref(),
            Some("ufw-before-logging-input")
        );
        let again = open(Some(&after), Family::V4, &r, at(100)).unwrap();
        assert!(!again.changed, "{again:?}");
        assert!(again.script.is_empty());
        let c = close(Some(&after)).unwrap();
        assert!(c.changed);
        assert_eq!(c.chains, vec!["filter INPUT"]);
        assert_eq!(apply(&after, &c.script), t);
        let nothing = close(Some(&t)).unwrap();
        assert!(!nothing.changed && nothing.script.is_empty());
    }

    #[test]
    fn update_in_place_replaces_addresses() {
        let t = filter(LEGACY_V4);
        let first = apply(
            &t,
            &open(
                Some(&t),
                Family::V4,
                &req(&["192.0.2.2"], &[22], None),
                at(0),
            )
            .unwrap()
            .script,
        );
        let p = open(
            Some(&first),
            Family::V4,
            &req(&["192.0.2.3"], &[22], None),
            at(0),
        )
        .unwrap();
        assert!(p.changed);
        // The jump stays; the chain is re-declared (flushed) and refilled in the same commit.
        assert!(!p.script.contains("-I INPUT"));
        let second = apply(&first, &p.script);
        let rules = &second.chain(CHAIN_IN).unwrap().rules;
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].option("-s").as_deref(), Some("192.0.2.3/32"));
        // No address of the family left: the objects go away, the table is as before.
        let none = open(
            Some(&second),
            Family::V4,
            &req(&["2001:db8::2"], &[22], None),
            at(0),
        )
        .unwrap();
        assert!(none
            .notes
            .iter()
            .any(|n| n.contains("no IPv4 support address")));
        assert_eq!(apply(&second, &none.script), t);
    }

    #[test]
    fn jump_no_longer_at_head_is_moved_back() {
        let t = filter(LEGACY_V4);
        let mut opened = apply(
            &t,
            &open(
                Some(&t),
                Family::V4,
                &req(&["192.0.2.2"], &[22], None),
                at(0),
            )
            .unwrap()
            .script,
        );
        // Someone inserted a DROP before the tool's jump.
        opened
            .chains
            .iter_mut()
            .find(|c| c.name == "INPUT")
            .unwrap()
            .rules
            .insert(0, rule("-s 192.0.2.0/24 -j DROP"));
        let p = open(
            Some(&opened),
            Family::V4,
            &req(&["192.0.2.2"], &[22], None),
            at(0),
        )
        .unwrap();
        assert!(p.changed);
        assert!(p
            .script
            .contains("-D INPUT -m comment --comment ovh-access -j OVH-ACCESS\n-I INPUT 1 "));
        let fixed = apply(&opened, &p.script);
        assert_eq!(
            fixed.chain("INPUT").unwrap().rules[0].target().as_deref(),
            Some(CHAIN_IN)
        );
        assert_eq!(
            fixed.chain("INPUT").unwrap().rules[1].spec,
            "-s 192.0.2.0/24 -j DROP"
        );
    }

    #[test]
    fn output_policy_drop_gets_the_reply_direction() {
        let t = filter(OUTPUT_DROP);
        let p = open(
            Some(&t),
            Family::V4,
            &req(&["192.0.2.2"], &[22, 2222], None),
            at(0),
        )
        .unwrap();
        assert_eq!(p.chains, vec!["filter INPUT", "filter OUTPUT"]);
        assert!(p
            .script
            .contains("-I OUTPUT 1 -m comment --comment ovh-access -j OVH-ACCESS-OUT\n"));
        assert!(p.script.contains(
            "-A OVH-ACCESS-OUT -d 192.0.2.2/32 -p tcp -m multiport --sports 22,2222 -m comment --comment ovh-access -j ACCEPT\n"
        ));
        // OUTPUT with policy ACCEPT is left alone.
        let q = open(
            Some(&filter(LEGACY_V4)),
            Family::V4,
            &req(&["192.0.2.2"], &[22], None),
            at(0),
        )
        .unwrap();
        assert!(!q.script.contains("OUTPUT"));
        let opened = apply(&t, &p.script);
        assert_eq!(apply(&opened, &close(Some(&opened)).unwrap().script), t);
    }

    #[test]
    fn duration_becomes_a_utc_datestop() {
        let t = filter(LEGACY_V4);
        let p = open(
            Some(&t),
            Family::V4,
            &req(&["192.0.2.2"], &[22], Some(300)),
            at(1_764_037_441),
        )
        .unwrap();
        assert!(
            p.script
                .contains("--dports 22 -m time --datestop 2025-11-25T02:29:01 -m comment"),
            "{}",
            p.script
        );
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("2025-11-25T02:29:01 UTC")));
        assert!(datestop(at(2_147_000_000), Duration::from_secs(10_000_000)).is_err());
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(format_utc(1_764_037_441), "2025-11-25T02:24:01");
        assert_eq!(format_utc(4_102_444_799), "2099-12-31T23:59:59");
    }

    #[test]
    fn more_than_fifteen_ports_are_split() {
        let ports: Vec<u16> = (2200..2220).collect();
        let t = filter(LEGACY_V4);
        let p = open(
            Some(&t),
            Family::V4,
            &req(&["192.0.2.2"], &ports, None),
            at(0),
        )
        .unwrap();
        assert_eq!(p.script.matches("-A OVH-ACCESS ").count(), 2);
        assert!(p.script.contains("--dports 2215,2216,2217,2218,2219 "));
        assert!(open(Some(&t), Family::V4, &req(&["192.0.2.2"], &[], None), at(0)).is_err());
    }

    #[test]
    fn requested_ports_and_addresses_are_normalised() {
        let r = req(
            &["2001:db8::2", "192.0.2.9", "192.0.2.1", "192.0.2.9"],
            &[2222, 22, 2222],
            None,
        );
        assert_eq!(requested_ports(&r).unwrap(), [22, 2222]);
        let v4: Vec<IpAddr> = ["192.0.2.1", "192.0.2.9"]
            .map(|a| a.parse().unwrap())
            .into();
        assert_eq!(family_addresses(&r, Family::V4), v4);
        assert_eq!(
            family_addresses(&r, Family::V6),
            ["2001:db8::2".parse::<IpAddr>().unwrap()]
        );
        let e = requested_ports(&req(&["192.0.2.1"], &[], None)).unwrap_err();
        assert!(e.to_string().starts_with("no SSH port to open"), "{e}");
    }

    #[test]
    fn accepts_one_rule_per_address_and_fifteen_ports() {
        let addrs: Vec<IpAddr> = ["192.0.2.1", "192.0.2.2"]
            .map(|a| a.parse().unwrap())
            .into();
        let ports: Vec<u16> = (1..=16).collect();
        let a = accepts(&OUTPUT, &addrs, &ports, Some("2030-01-01T00:00:00"));
        assert_eq!(a.len(), 4);
        assert!(
            a[0].starts_with("-d 192.0.2.1/32 -p tcp -m multiport --sports 1,2,"),
            "{a:?}"
        );
        assert!(
            a[1].starts_with("-d 192.0.2.1/32 -p tcp -m multiport --sports 16 "),
            "{a:?}"
        );
        assert!(a[2].starts_with("-d 192.0.2.2/32 "), "{a:?}");
        assert!(a
            .iter()
            .all(|r| r.contains("--datestop 2030-01-01T00:00:00")));
        let pre = accepts(&PREROUTING, &addrs[..1], &[22], None);
        assert_eq!(
            pre,
            [
                "-s 192.0.2.1/32 -p tcp -m multiport --dports 22 -m addrtype --dst-type LOCAL \
              -m comment --comment ovh-access -j ACCEPT"
            ]
        );
    }

    #[test]
    fn table_edit_of_one_hook() {
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        let wanted = accepts(&INPUT, &[addr], &[22], None);
        let jump = format!("-A INPUT {}", jump_spec(CHAIN_IN));
        let saved = |input: &[&str], ours: &[String]| {
            let mut text =
                "*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:OVH-ACCESS - [0:0]\n"
                    .to_string();
            for l in input {
                text.push_str(&format!("{l}\n"));
            }
            for r in ours {
                text.push_str(&format!("-A OVH-ACCESS {r}\n"));
            }
            filter(&format!("{text}COMMIT\n"))
        };
        // Already as wanted: the chain is declared and refilled, but nothing changes.
        let t = saved(&[&jump, "-A INPUT -j DROP"], &wanted);
        let mut e = TableEdit::default();
        e.hook(&t, &INPUT, &wanted);
        assert!(!e.changed);
        assert_eq!(e.decls, [":OVH-ACCESS - [0:0]"]);
        assert_eq!(e.lines, [format!("-A OVH-ACCESS {}", wanted[0])]);
        // Another address in the chain: a change, the jump left where it is.
        let other = accepts(&INPUT, &["192.0.2.2".parse().unwrap()], &[22], None);
        let mut e = TableEdit::default();
        e.hook(&saved(&[&jump], &other), &INPUT, &wanted);
        assert!(e.changed);
        assert_eq!(e.lines, [format!("-A OVH-ACCESS {}", wanted[0])]);
        // The jump behind a DROP: deleted and inserted again at the head.
        let mut e = TableEdit::default();
        e.hook(
            &saved(&["-A INPUT -j DROP", &jump], &wanted),
            &INPUT,
            &wanted,
        );
        assert!(e.changed);
        assert_eq!(
            e.lines[0],
            "-D INPUT -m comment --comment ovh-access -j OVH-ACCESS"
        );
        assert_eq!(
            e.lines[1],
            "-I INPUT 1 -m comment --comment ovh-access -j OVH-ACCESS"
        );
        // Unhooking what is not there changes nothing; unhooking INPUT removes jump and chain.
        let mut e = TableEdit::default();
        e.unhook(&t, &OUTPUT);
        assert!(!e.changed && e.lines.is_empty());
        e.unhook(&t, &INPUT);
        assert!(e.changed);
        assert_eq!(
            e.lines,
            [
                "-D INPUT -m comment --comment ovh-access -j OVH-ACCESS",
                "-F OVH-ACCESS",
                "-X OVH-ACCESS"
            ]
        );
    }

    #[test]
    fn missing_filter_table_or_input_creates_nothing() {
        let r = req(&["192.0.2.2"], &[22], None);
        let p = open(None, Family::V4, &r, at(0)).unwrap();
        assert!(!p.changed && p.script.is_empty());
        // iptables-nft made only the OUTPUT chain (policy accept): nothing to hook into.
        let t = filter("*filter\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n");
        let p = open(Some(&t), Family::V4, &r, at(0)).unwrap();
        assert!(!p.script.contains("INPUT"));
        assert!(p.notes.iter().any(|n| n.contains("no INPUT chain")));
        // A permissive legacy table still gets the (harmless) accept: chains that drop with a
        // final rule rather than a policy are common.
        let p = open(Some(&filter(LEGACY_ACCEPT)), Family::V4, &r, at(0)).unwrap();
        assert!(p.script.contains("-I INPUT 1 "));
    }

    #[test]
    fn a_hand_made_jump_to_the_tools_chain_does_not_stop_removal() {
        let t = filter(LEGACY_V4);
        let mut opened = apply(
            &t,
            &open(
                Some(&t),
                Family::V4,
                &req(&["192.0.2.2"], &[22], None),
                at(0),
            )
            .unwrap()
            .script,
        );
        opened
            .chains
            .iter_mut()
            .find(|c| c.name == "FORWARD")
            .unwrap()
            .rules
            .push(rule("-j OVH-ACCESS"));
        // The revoke still closes: the chain is emptied (it accepts nothing) and kept, since
        // deleting it would fail the whole restore; the note names the jump to delete.
        let c = close(Some(&opened)).unwrap();
        assert!(c.changed);
        assert!(c.script.contains("-F OVH-ACCESS") && !c.script.contains("-X OVH-ACCESS"));
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("-A FORWARD -j OVH-ACCESS") && n.contains("by hand")),
            "{:?}",
            c.notes
        );
        let after = apply(&opened, &c.script);
        assert!(after.chain("OVH-ACCESS").unwrap().rules.is_empty());
        assert!(
            !close(Some(&after)).unwrap().changed,
            "a second revoke has nothing to do"
        );
    }

    #[test]
    fn raw_and_mangle_hooks_that_drop_are_opened_and_foreign_chains_refused() {
        let tables = parse(
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A PREROUTING -p tcp -m tcp --dport 22 -j DROP\nCOMMIT\n\
             *mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n\
             *filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j DROP\nCOMMIT\n",
        )
        .unwrap();
        let p = open_layer(
            &tables,
            Family::V4,
            &req(&["192.0.2.2"], &[22], None),
            at(0),
        )
        .unwrap();
        // raw PREROUTING (it drops), filter INPUT (always) and OUTPUT (it ends in a drop);
        // nothing in mangle, where nothing drops.
        assert_eq!(
            p.chains,
            vec!["raw PREROUTING", "filter INPUT", "filter OUTPUT"],
            "{p:?}"
        );
        assert!(p.script.starts_with("*raw\n") && !p.script.contains("*mangle"));
        assert!(p.script.contains(
            "-A OVH-ACCESS-PRE -s 192.0.2.2/32 -p tcp -m multiport --dports 22 -m addrtype --dst-type LOCAL -m comment --comment ovh-access -j ACCEPT"
        ));

        let foreign = parse(
            "*filter\n:INPUT DROP [0:0]\n:OVH-ACCESS - [0:0]\n-A INPUT -j OVH-ACCESS\n\
             -A OVH-ACCESS -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n",
        )
        .unwrap();
        let err = open_layer(
            &foreign,
            Family::V4,
            &req(&["192.0.2.2"], &[22], None),
            at(0),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("iptables -t filter -E OVH-ACCESS NEWNAME"),
            "{err}"
        );
        assert!(!close_layer(&foreign).unwrap().changed);
    }

    #[test]
    fn state_reads_back_what_open_wrote() {
        use crate::firewall::iptables::state::tool_state;
        let t = filter(OUTPUT_DROP);
        let now = at(1_764_037_441);
        let opened = apply(
            &t,
            &open(
                Some(&t),
                Family::V4,
                &req(&["192.0.2.2", "192.0.2.3"], &[22], Some(60)),
                now,
            )
            .unwrap()
            .script,
        );
        let st = tool_state(Some(&opened));
        assert_eq!(st.jumps.len(), 2);
        assert!(st.jumps.iter().all(|j| j.at_head));
        assert_eq!(st.rules.len(), 4);
        assert_eq!(st.rules[0].ports, vec![22]);
        assert_eq!(st.open_addresses(now).len(), 2);
        assert!(st.open_addresses(now + Duration::from_secs(61)).is_empty());
        assert!(tool_state(Some(&t)).is_empty());
        assert!(!tool_state(None).filter_table);
    }
}
