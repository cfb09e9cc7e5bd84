//! Would this rule chain let a new TCP connection from one support address to one SSH port
//! through? Pure evaluators over what the firewall prints: the JSON of `nft -j list ruleset`
//! (libnftables' schema, `doc/libnftables-json.adoc`) and the rules of `iptables-save`.
//!
//! Each match is judged three-valued: a condition the evaluator cannot decide from the packet
//! alone (a rate limit, an interface other than `lo`, an unknown expression) is `Maybe`, so a
//! drop behind it is reported as possible, never as certain, and an accept behind it is not
//! counted on.
use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use crate::firewall::iptables::plan::format_utc;
use crate::firewall::iptables::SavedTable;

/// The packet the support sends first: TCP SYN from `addr` to `port`, conntrack state new,
/// arriving on an interface other than `lo` — or, with `reply`, sshd's answer to it: from
/// `port` to `addr`, conntrack state established, leaving on an interface other than `lo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub addr: IpAddr,
    pub port: u16,
    /// Now, in seconds since the epoch, for `-m time --datestop` (the tool's timed rules).
    pub now: u64,
    pub reply: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    Yes,
    No,
    Maybe,
}

impl Tri {
    fn and(self, o: Tri) -> Tri {
        match (self, o) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
            _ => Tri::Maybe,
        }
    }
    fn not(self) -> Tri {
        match self {
            Tri::Yes => Tri::No,
            Tri::No => Tri::Yes,
            Tri::Maybe => Tri::Maybe,
        }
    }
    fn from(b: bool) -> Tri {
        if b {
            Tri::Yes
        } else {
            Tri::No
        }
    }
}

/// A base chain's policy: what becomes of a packet no rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

/// What one base chain does with the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted by `rule` (this base chain is done; the others still see the packet).
    Accept { rule: String },
    /// Dropped or rejected by `rule`; `set` names the drop set that holds the address.
    Drop { rule: String, set: Option<String> },
    /// No rule decided: the chain's policy does.
    Policy(Policy),
}

/// A possible drop: the rule's conditions could not all be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MayDrop {
    pub rule: String,
}

/// The outcome of one base chain: the verdict and the uncertain drops met on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOutcome {
    pub verdict: Verdict,
    pub maybe: Vec<MayDrop>,
}

/// Jumps followed at most this deep (the kernel allows 16; rulesets use two or three).
const MAX_DEPTH: usize = 16;

// ---------------------------------------------------------------------------------------------
// nftables

/// One table of `nft -j list ruleset`: its chains' rules and its named sets' elements, as the
/// JSON the judge evaluates (the netlink dump of `firewall::nft` decodes only what the tool's own
/// objects need).
#[derive(Debug, Default, Clone)]
pub struct JsonTable {
    pub family: String,
    pub name: String,
    /// Chain name → its rules (each the `expr` array and the handle), in order.
    pub chains: HashMap<String, Vec<(u64, Vec<Value>)>>,
    /// Set name → its elements as printed.
    pub sets: HashMap<String, Vec<Value>>,
}

/// `nft -j list ruleset` → the tables (family, name) with their rules and sets.
pub fn parse_nft_json(v: &Value) -> Vec<JsonTable> {
    let mut tables: Vec<JsonTable> = Vec::new();
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let key = |o: &Value| {
        (
            o.get("family")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            o.get("table")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    };
    for item in &items {
        if let Some(t) = item.get("table") {
            tables.push(JsonTable {
                family: t.get("family").and_then(Value::as_str).unwrap_or("").into(),
                name: t.get("name").and_then(Value::as_str).unwrap_or("").into(),
                ..Default::default()
            });
        }
    }
    for item in &items {
        let (kind, o) = match item.as_object().and_then(|m| m.iter().next()) {
            Some((k, o)) => (k.as_str(), o),
            None => continue,
        };
        let (family, table) = key(o);
        let Some(t) = tables
            .iter_mut()
            .find(|t| t.family == family && t.name == table)
        else {
            continue;
        };
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match kind {
            "chain" => {
                t.chains.entry(name).or_default();
            }
            "set" => {
                let elems = o
                    .get("elem")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                t.sets.insert(name, elems);
            }
            "rule" => {
                let chain = o
                    .get("chain")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let handle = o.get("handle").and_then(Value::as_u64).unwrap_or(0);
                let expr = o
                    .get("expr")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                t.chains.entry(chain).or_default().push((handle, expr));
            }
            _ => {}
        }
    }
    tables
}

/// What `chain` of `table` (a base chain with `policy`) does with the packet.
pub fn nft_chain(table: &JsonTable, chain: &str, policy: Policy, p: Packet) -> ChainOutcome {
    let mut maybe = Vec::new();
    let verdict = nft_walk(table, chain, p, 0, &mut maybe).unwrap_or(Verdict::Policy(policy));
    ChainOutcome { verdict, maybe }
}

/// `None` = fell off the end (or returned): the caller continues.
fn nft_walk(
    t: &JsonTable,
    chain: &str,
    p: Packet,
    depth: usize,
    maybe: &mut Vec<MayDrop>,
) -> Option<Verdict> {
    if depth > MAX_DEPTH {
        return None;
    }
    for (handle, exprs) in t.chains.get(chain).map(Vec::as_slice).unwrap_or_default() {
        let label = format!("{} {} {} handle {handle}", t.family, t.name, chain);
        let mut m = Tri::Yes;
        let mut set_hit = None;
        for e in exprs {
            let Some((kind, body)) = e.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            match kind.as_str() {
                "match" => {
                    let (r, set) = nft_match(t, body, p);
                    if r != Tri::No && set.is_some() {
                        set_hit = set;
                    }
                    m = m.and(r);
                }
                // A rate limit or quota matches only some packets.
                "limit" | "quota" => m = m.and(Tri::Maybe),
                "accept" | "drop" | "reject" | "jump" | "goto" | "return" => {
                    if m == Tri::No {
                        break;
                    }
                    match kind.as_str() {
                        "accept" if m == Tri::Yes => return Some(Verdict::Accept { rule: label }),
                        "drop" | "reject" if m == Tri::Yes => {
                            return Some(Verdict::Drop {
                                rule: label,
                                set: set_hit,
                            })
                        }
                        "drop" | "reject" => maybe.push(MayDrop {
                            rule: label.clone(),
                        }),
                        "return" if m == Tri::Yes => return None,
                        "jump" | "goto" => {
                            let target = body.get("target").and_then(Value::as_str).unwrap_or("");
                            let mut inner = Vec::new();
                            let sub = nft_walk(t, target, p, depth + 1, &mut inner);
                            maybe.extend(inner);
                            match (m, sub) {
                                (Tri::Yes, Some(v)) => return Some(v),
                                (Tri::Maybe, Some(Verdict::Drop { rule, .. })) => {
                                    maybe.push(MayDrop { rule })
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                    break;
                }
                // An xtables match inside a native rule: not decoded here.
                "xt" => m = m.and(Tri::Maybe),
                // A map lookup or another expression the evaluator does not model.
                "vmap" => {
                    if m != Tri::No {
                        maybe.push(MayDrop {
                            rule: label.clone(),
                        });
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    None
}

/// One `match` expression; also returns the named set consulted for the source address.
fn nft_match(t: &JsonTable, body: &Value, p: Packet) -> (Tri, Option<String>) {
    let op = body.get("op").and_then(Value::as_str).unwrap_or("==");
    let left = body.get("left").unwrap_or(&Value::Null);
    let right = body.get("right").unwrap_or(&Value::Null);
    let r = if let Some(pl) = left.get("payload") {
        match nft_payload(t, pl, right, p) {
            Some(r) => r,
            None => return (Tri::No, None),
        }
    } else if let Some(meta) = left.get("meta") {
        nft_meta(t, meta, right, p)
    } else if let Some(fib) = left.get("fib") {
        // `fib daddr type local` (the tool's prerouting accepts): the support's packets are
        // addressed to this host.
        let daddr_type = fib.get("result").and_then(Value::as_str) == Some("type")
            && fib
                .get("flags")
                .and_then(Value::as_array)
                .is_some_and(|f| f.len() == 1 && f[0] == "daddr");
        if daddr_type && !p.reply {
            contains(t, right, &Val::Str("local"))
        } else {
            Tri::Maybe
        }
    } else if let Some(ct) = left.get("ct") {
        match ct.get("key").and_then(Value::as_str).unwrap_or("") {
            // A right side that is a flag list matches when it shares a flag (`op: in`).
            "state" => contains(
                t,
                right,
                &Val::Str(if p.reply { "established" } else { "new" }),
            ),
            _ => Tri::Maybe,
        }
    } else {
        Tri::Maybe
    };
    let addr_field = if p.reply { "daddr" } else { "saddr" };
    let set = if left
        .get("payload")
        .and_then(|pl| pl.get("field"))
        .and_then(Value::as_str)
        == Some(addr_field)
    {
        right
            .as_str()
            .and_then(|s| s.strip_prefix('@'))
            .map(str::to_string)
    } else {
        None
    };
    (if op == "!=" { r.not() } else { r }, set)
}

/// A header field compared with `right`. None when the field belongs to another protocol than
/// the packet's: the expression carries that protocol as an implicit dependency, so it never
/// matches, whatever the operator (`ip saddr != 192.0.2.1` does not see IPv6).
fn nft_payload(t: &JsonTable, pl: &Value, right: &Value, p: Packet) -> Option<Tri> {
    let proto = pl.get("protocol").and_then(Value::as_str).unwrap_or("");
    let field = pl.get("field").and_then(Value::as_str).unwrap_or("");
    Some(match (proto, field) {
        ("ip", _) if p.addr.is_ipv6() => return None,
        ("ip6", _) if p.addr.is_ipv4() => return None,
        ("ip", "saddr") | ("ip6", "saddr") if !p.reply => contains(t, right, &Val::Addr(p.addr)),
        ("ip", "daddr") | ("ip6", "daddr") if p.reply => contains(t, right, &Val::Addr(p.addr)),
        // The server's own address: which one the support reaches is not known here.
        ("ip", "saddr") | ("ip6", "saddr") | ("ip", "daddr") | ("ip6", "daddr") => Tri::Maybe,
        ("ip", "protocol") | ("ip6", "nexthdr") => contains(t, right, &Val::Proto),
        ("tcp", "dport") | ("th", "dport") if !p.reply => contains(t, right, &Val::Port(p.port)),
        ("tcp", "sport") | ("th", "sport") if p.reply => contains(t, right, &Val::Port(p.port)),
        ("tcp", _) | ("th", _) => Tri::Maybe,
        // Any other transport header implies that protocol: not TCP.
        ("udp", _) | ("icmp", _) | ("icmpv6", _) | ("sctp", _) | ("udplite", _) | ("dccp", _) => {
            return None
        }
        _ => Tri::Maybe,
    })
}

/// A `meta` key compared with `right`.
fn nft_meta(t: &JsonTable, meta: &Value, right: &Value, p: Packet) -> Tri {
    match meta.get("key").and_then(Value::as_str).unwrap_or("") {
        "l4proto" => contains(t, right, &Val::Proto),
        "nfproto" => contains(
            t,
            right,
            &Val::Str(if p.addr.is_ipv4() { "ipv4" } else { "ipv6" }),
        ),
        // The support's packets come in, and the replies go out, on a real interface.
        "iif" | "iifname" if !p.reply => match right.as_str() {
            Some("lo") => Tri::No,
            _ => Tri::Maybe,
        },
        "oif" | "oifname" if p.reply => match right.as_str() {
            Some("lo") => Tri::No,
            _ => Tri::Maybe,
        },
        _ => Tri::Maybe,
    }
}

enum Val<'a> {
    Addr(IpAddr),
    Port(u16),
    /// TCP, as a protocol name or number.
    Proto,
    Str(&'a str),
}

/// Whether the right-hand side (a literal, a prefix, a range, an anonymous set, a flag list or
/// `@named` set) holds the value.
fn contains(t: &JsonTable, right: &Value, v: &Val) -> Tri {
    match right {
        Value::String(s) if s.starts_with('@') => match t.sets.get(&s[1..]) {
            Some(elems) => any(elems.iter().map(|e| contains(t, e, v))),
            None => Tri::Maybe,
        },
        Value::Array(items) => any(items.iter().map(|e| contains(t, e, v))),
        Value::Object(o) => {
            if let Some(items) = o.get("set").and_then(Value::as_array) {
                any(items.iter().map(|e| contains(t, e, v)))
            } else if let Some(elem) = o.get("elem") {
                contains(t, elem.get("val").unwrap_or(&Value::Null), v)
            } else if let Some(pfx) = o.get("prefix") {
                let (Some(a), Some(len)) = (
                    pfx.get("addr")
                        .and_then(Value::as_str)
                        .and_then(|a| a.parse::<IpAddr>().ok()),
                    pfx.get("len").and_then(Value::as_u64),
                ) else {
                    return Tri::Maybe;
                };
                match v {
                    Val::Addr(x) => {
                        Tri::from(ipnet::IpNet::new(a, len as u8).is_ok_and(|n| n.contains(x)))
                    }
                    _ => Tri::Maybe,
                }
            } else if let Some(r) = o.get("range").and_then(Value::as_array) {
                match (v, r.first(), r.get(1)) {
                    (Val::Port(p), Some(a), Some(b)) => match (a.as_u64(), b.as_u64()) {
                        (Some(a), Some(b)) => Tri::from(a <= u64::from(*p) && u64::from(*p) <= b),
                        _ => Tri::Maybe,
                    },
                    (Val::Addr(x), Some(a), Some(b)) => {
                        match (
                            a.as_str().and_then(|s| s.parse::<IpAddr>().ok()),
                            b.as_str().and_then(|s| s.parse::<IpAddr>().ok()),
                        ) {
                            (Some(a), Some(b)) => Tri::from(a <= *x && *x <= b),
                            _ => Tri::Maybe,
                        }
                    }
                    _ => Tri::Maybe,
                }
            } else {
                Tri::Maybe
            }
        }
        Value::Number(n) => match v {
            Val::Port(p) => Tri::from(n.as_u64() == Some(u64::from(*p))),
            Val::Proto => Tri::from(n.as_u64() == Some(6)),
            _ => Tri::Maybe,
        },
        Value::String(s) => match v {
            Val::Addr(x) => match s.parse::<IpAddr>() {
                Ok(a) => Tri::from(a == *x),
                Err(_) => Tri::Maybe,
            },
            Val::Port(p) => match s.as_str() {
                "ssh" => Tri::from(*p == 22),
                _ => Tri::from(s.parse::<u16>().ok() == Some(*p)),
            },
            Val::Proto => Tri::from(s == "tcp" || s == "6"),
            Val::Str(x) => Tri::from(s == x),
        },
        _ => Tri::Maybe,
    }
}

fn any(it: impl Iterator<Item = Tri>) -> Tri {
    let mut out = Tri::No;
    for t in it {
        match t {
            Tri::Yes => return Tri::Yes,
            Tri::Maybe => out = Tri::Maybe,
            Tri::No => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// iptables

/// What the `INPUT` chain of one iptables filter table does with the packet. `in_ipset` answers
/// `-m set --match-set NAME src` (None: unknown).
pub fn ipt_input(
    table: &SavedTable,
    p: Packet,
    in_ipset: &dyn Fn(&str, IpAddr) -> Option<bool>,
) -> ChainOutcome {
    ipt_chain(table, if p.reply { "OUTPUT" } else { "INPUT" }, p, in_ipset)
}

/// What the built-in `chain` of one iptables filter table does with the packet.
pub fn ipt_chain(
    table: &SavedTable,
    chain: &str,
    p: Packet,
    in_ipset: &dyn Fn(&str, IpAddr) -> Option<bool>,
) -> ChainOutcome {
    let policy = match table.chain(chain).and_then(|c| c.policy.as_deref()) {
        Some("DROP") => Policy::Drop,
        _ => Policy::Accept,
    };
    let mut maybe = Vec::new();
    let verdict =
        ipt_walk(table, chain, p, in_ipset, 0, &mut maybe).unwrap_or(Verdict::Policy(policy));
    ChainOutcome { verdict, maybe }
}

fn ipt_walk(
    table: &SavedTable,
    chain: &str,
    p: Packet,
    in_ipset: &dyn Fn(&str, IpAddr) -> Option<bool>,
    depth: usize,
    maybe: &mut Vec<MayDrop>,
) -> Option<Verdict> {
    let c = table.chain(chain)?;
    if depth > MAX_DEPTH {
        return None;
    }
    for (i, rule) in c.rules.iter().enumerate() {
        let label = format!("filter {chain} rule {}: -A {chain} {}", i + 1, rule.spec);
        let args = rule.args();
        let (m, set) = ipt_match(&args, p, in_ipset);
        if m == Tri::No {
            continue;
        }
        let Some(target) = rule.target() else {
            continue;
        };
        match target.as_str() {
            "ACCEPT" if m == Tri::Yes => return Some(Verdict::Accept { rule: label }),
            "DROP" | "REJECT" if m == Tri::Yes => return Some(Verdict::Drop { rule: label, set }),
            "DROP" | "REJECT" => maybe.push(MayDrop { rule: label }),
            "RETURN" if m == Tri::Yes => return None,
            "LOG" | "ACCEPT" | "RETURN" | "NFLOG" => {}
            other if table.chain(other).is_some() => {
                let mut inner = Vec::new();
                let sub = ipt_walk(table, other, p, in_ipset, depth + 1, &mut inner);
                maybe.extend(inner);
                match (m, sub) {
                    (Tri::Yes, Some(v)) => return Some(v),
                    (Tri::Maybe, Some(Verdict::Drop { rule, .. })) => maybe.push(MayDrop { rule }),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    None
}

/// The conditions of one iptables rule, from its arguments: each option's condition, turned
/// over by a `!` before it, all of them and-ed.
fn ipt_match(
    args: &[String],
    p: Packet,
    in_ipset: &dyn Fn(&str, IpAddr) -> Option<bool>,
) -> (Tri, Option<String>) {
    let mut m = Tri::Yes;
    let mut set = None;
    let mut i = 0;
    let mut neg = false;
    while i < args.len() {
        let a = args[i].as_str();
        let val = args.get(i + 1).map(String::as_str).unwrap_or("");
        let r = match a {
            "!" => {
                neg = true;
                i += 1;
                continue;
            }
            "--match-set" => {
                let dir = args.get(i + 2).map(String::as_str).unwrap_or("");
                // Step over the set's name: a set may be named like an option.
                i += 1;
                // Only a set looked up by the support's address decides here.
                if dir.starts_with(if p.reply { "dst" } else { "src" }) {
                    let hit = in_ipset(val, p.addr).map_or(Tri::Maybe, Tri::from);
                    if hit != Tri::No {
                        set = Some(val.to_string());
                    }
                    Some(hit)
                } else {
                    Some(Tri::Maybe)
                }
            }
            _ => ipt_condition(a, val, p),
        };
        if let Some(r) = r {
            m = m.and(if neg { r.not() } else { r });
            if neg && set.is_some() && r == Tri::Yes {
                set = None;
            }
        }
        neg = false;
        i += 1;
    }
    (m, set)
}

/// Options that constrain the packet in a way the evaluator cannot decide: a rate, TCP flags,
/// an owner, a recent list — or, when the direction does not make them the support's side, an
/// address, port or interface (the server's own, not known here).
const IPT_UNDECIDED: &[&str] = &[
    "-s",
    "--source",
    "-d",
    "--destination",
    "--dport",
    "--dports",
    "--sport",
    "--sports",
    "--source-ports",
    "--destination-ports",
    "-i",
    "-o",
    "--limit",
    "--tcp-flags",
    "--syn",
    "--icmp-type",
    "--icmpv6-type",
    "--uid-owner",
    "--mac-source",
    "--hashlimit",
    "--hashlimit-above",
    "--connlimit-above",
    "--seconds",
    "--hitcount",
    "--rcheck",
    "--update",
    "--datestart",
];

/// One option of an iptables rule and its value, judged on the packet. None: the option does
/// not constrain it (a module name, a target option, an option's value met as a word).
fn ipt_condition(a: &str, val: &str, p: Packet) -> Option<Tri> {
    Some(match a {
        "-s" | "--source" | "-d" | "--destination"
            if (a.starts_with("-s") || a == "--source") != p.reply =>
        {
            ipt_addresses(val, p.addr)
        }
        "-p" | "--protocol" => Tri::from(val == "tcp" || val == "6"),
        // The support's packets come in, and the replies go out, on a real interface.
        "-i" | "--in-interface" if !p.reply => real_interface(val),
        "-o" | "--out-interface" if p.reply => real_interface(val),
        "--dport"
        | "--destination-port"
        | "--dports"
        | "--destination-ports"
        | "--sport"
        | "--source-port"
        | "--sports"
        | "--source-ports"
            if a.starts_with("--d") != p.reply =>
        {
            ipt_ports(val, p.port)
        }
        "--ctstate" | "--state" => {
            let want = if p.reply { "ESTABLISHED" } else { "NEW" };
            Tri::from(val.split(',').any(|s| s == want))
        }
        // The support's packets are addressed to this host (the tool's prerouting ACCEPTs).
        "--dst-type" if !p.reply => Tri::from(val == "LOCAL"),
        // xt_time compares the packet's second with the stop, both UTC (ToolRule::expired).
        "--datestop" => Tri::from(format_utc(p.now).as_str() <= val),
        _ if IPT_UNDECIDED.contains(&a) => Tri::Maybe,
        _ => return None,
    })
}

/// `-s`/`-d`: a comma-separated list of addresses and networks.
fn ipt_addresses(list: &str, addr: IpAddr) -> Tri {
    any(list.split(',').map(|s| match s.parse::<ipnet::IpNet>() {
        Ok(n) => Tri::from(n.contains(&addr)),
        Err(_) => match s.parse::<IpAddr>() {
            Ok(x) => Tri::from(x == addr),
            Err(_) => Tri::Maybe,
        },
    }))
}

/// `--dport`/`--dports`: ports and `first:last` ranges (an open end is 0 or 65535), comma
/// separated; `ssh` is the one service name iptables-save leaves unresolved in practice.
fn ipt_ports(list: &str, port: u16) -> Tri {
    any(list.split(',').map(|s| match s.split_once(':') {
        Some((a, b)) => {
            let a = a.parse().unwrap_or(0u16);
            let b = b.parse().unwrap_or(u16::MAX);
            Tri::from(a <= port && port <= b)
        }
        None => Tri::from(s.parse::<u16>().ok() == Some(port) || (s == "ssh" && port == 22)),
    }))
}

fn real_interface(name: &str) -> Tri {
    if name == "lo" {
        Tri::No
    } else {
        Tri::Maybe
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::iptables::save;

    fn pkt(a: &str, port: u16) -> Packet {
        Packet {
            addr: a.parse().unwrap(),
            port,
            now: 0,
            reply: false,
        }
    }

    /// The JSON `nft -j list ruleset` prints for rulesets/fail2ban.nft (trimmed to what is read).
    const F2B: &str = r#"{"nftables":[{"metainfo":{}},
      {"table":{"family":"inet","name":"f2b-table","handle":1}},
      {"set":{"family":"inet","name":"addr-set-sshd","table":"f2b-table","type":"ipv4_addr","handle":2,"elem":["203.0.113.66",{"prefix":{"addr":"198.51.100.0","len":28}}]}},
      {"chain":{"family":"inet","table":"f2b-table","name":"f2b-chain","handle":1,"type":"filter","hook":"input","prio":-1,"policy":"accept"}},
      {"rule":{"family":"inet","table":"f2b-table","chain":"f2b-chain","handle":4,"expr":[
        {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"set":[22,2222]}}},
        {"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"@addr-set-sshd"}},
        {"drop":null}]}},
      {"table":{"family":"inet","name":"filter","handle":2}},
      {"chain":{"family":"inet","table":"filter","name":"input","handle":1,"type":"filter","hook":"input","prio":0,"policy":"drop"}},
      {"rule":{"family":"inet","table":"filter","chain":"input","handle":2,"expr":[
        {"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]}},
      {"rule":{"family":"inet","table":"filter","chain":"input","handle":3,"expr":[
        {"match":{"op":"==","left":{"meta":{"key":"iif"}},"right":"lo"}},{"accept":null}]}},
      {"rule":{"family":"inet","table":"filter","chain":"input","handle":5,"expr":[
        {"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"eth1"}},{"drop":null}]}},
      {"rule":{"family":"inet","table":"filter","chain":"input","handle":6,"expr":[
        {"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"192.0.2.0","len":24}}}},
        {"jump":{"target":"ssh_in"}}]}},
      {"chain":{"family":"inet","table":"filter","name":"ssh_in","handle":7}},
      {"rule":{"family":"inet","table":"filter","chain":"ssh_in","handle":8,"expr":[
        {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"range":[2000,2999]}}},{"accept":null}]}}
    ]}"#;

    fn tables() -> Vec<JsonTable> {
        parse_nft_json(&serde_json::from_str(F2B).unwrap())
    }

    #[test]
    fn a_drop_set_holding_the_address_drops_it() {
        let t = tables();
        let f2b = t.iter().find(|t| t.name == "f2b-table").unwrap();
        let out = nft_chain(f2b, "f2b-chain", Policy::Accept, pkt("198.51.100.2", 2222));
        assert_eq!(
            out.verdict,
            Verdict::Drop {
                rule: "inet f2b-table f2b-chain handle 4".into(),
                set: Some("addr-set-sshd".into())
            }
        );
        // Not in the set, another port, or IPv6 (the `ip saddr` match never sees IPv6).
        for p in [
            pkt("198.51.100.20", 2222),
            pkt("198.51.100.2", 2200),
            pkt("2001:db8:1::2", 2222),
        ] {
            assert_eq!(
                nft_chain(f2b, "f2b-chain", Policy::Accept, p).verdict,
                Verdict::Policy(Policy::Accept),
                "{p:?}"
            );
        }
    }

    #[test]
    fn conntrack_loopback_jumps_and_uncertain_drops() {
        let t = tables();
        let filter = t.iter().find(|t| t.name == "filter").unwrap();
        let out = nft_chain(filter, "input", Policy::Drop, pkt("198.51.100.2", 2222));
        assert_eq!(out.verdict, Verdict::Policy(Policy::Drop));
        assert_eq!(
            out.maybe,
            vec![MayDrop {
                rule: "inet filter input handle 5".into()
            }]
        );
        let out = nft_chain(filter, "input", Policy::Drop, pkt("192.0.2.9", 2222));
        assert_eq!(
            out.verdict,
            Verdict::Accept {
                rule: "inet filter ssh_in handle 8".into()
            }
        );
        assert_eq!(
            nft_chain(filter, "input", Policy::Drop, pkt("192.0.2.9", 22)).verdict,
            Verdict::Policy(Policy::Drop)
        );
    }

    #[test]
    fn iptables_input_rules() {
        let text = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:f2b-sshd - [0:0]\n\
            -A INPUT -i lo -j ACCEPT\n\
            -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
            -A INPUT -p tcp -m multiport --dports 22,2222 -j f2b-sshd\n\
            -A INPUT -s 192.0.2.0/24 -p tcp --dport 2222 -j ACCEPT\n\
            -A f2b-sshd -m set --match-set f2b-sshd src -j REJECT --reject-with icmp-port-unreachable\n\
            -A f2b-sshd -s 203.0.113.66/32 -j DROP\n\
            -A f2b-sshd -j RETURN\nCOMMIT\n";
        let table = save::parse(text).unwrap().remove(0);
        let banned = |set: &str, a: IpAddr| {
            Some(set == "f2b-sshd" && a == "198.51.100.2".parse::<IpAddr>().unwrap())
        };
        let out = ipt_input(&table, pkt("198.51.100.2", 2222), &banned);
        match out.verdict {
            Verdict::Drop { rule, set } => {
                assert!(rule.starts_with("filter f2b-sshd rule 1"), "{rule}");
                assert_eq!(set.as_deref(), Some("f2b-sshd"));
            }
            v => panic!("{v:?}"),
        }
        let out = ipt_input(&table, pkt("203.0.113.66", 22), &banned);
        assert!(
            matches!(out.verdict, Verdict::Drop { set: None, .. }),
            "{out:?}"
        );
        let out = ipt_input(&table, pkt("192.0.2.7", 2222), &banned);
        assert!(matches!(out.verdict, Verdict::Accept { .. }), "{out:?}");
        assert_eq!(
            ipt_input(&table, pkt("198.51.100.3", 2222), &banned).verdict,
            Verdict::Policy(Policy::Drop)
        );
        // An ipset that cannot be read makes the REJECT only possible.
        let out = ipt_input(&table, pkt("198.51.100.3", 2222), &|_, _| None);
        assert_eq!(out.maybe.len(), 1, "{out:?}");
    }

    #[test]
    fn replies_through_output_chains() {
        let json = r#"{"nftables":[
          {"table":{"family":"inet","name":"filter","handle":1}},
          {"chain":{"family":"inet","table":"filter","name":"output","handle":1,"type":"filter","hook":"output","prio":0,"policy":"drop"}},
          {"rule":{"family":"inet","table":"filter","chain":"output","handle":2,"expr":[
            {"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"lo"}},{"accept":null}]}},
          {"rule":{"family":"inet","table":"filter","chain":"output","handle":3,"expr":[
            {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"sport"}},"right":2222}},
            {"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"198.51.100.2"}},
            {"accept":null}]}}
        ]}"#;
        let t = parse_nft_json(&serde_json::from_str(json).unwrap()).remove(0);
        let reply = |a: &str, port| Packet {
            reply: true,
            ..pkt(a, port)
        };
        assert!(matches!(
            nft_chain(&t, "output", Policy::Drop, reply("198.51.100.2", 2222)).verdict,
            Verdict::Accept { .. }
        ));
        for p in [reply("198.51.100.3", 2222), reply("198.51.100.2", 22)] {
            assert_eq!(
                nft_chain(&t, "output", Policy::Drop, p).verdict,
                Verdict::Policy(Policy::Drop)
            );
        }
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n\
            -A OUTPUT -o lo -j ACCEPT\n\
            -A OUTPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n";
        let table = save::parse(text).unwrap().remove(0);
        let out = ipt_chain(&table, "OUTPUT", reply("198.51.100.2", 2222), &|_, _| None);
        assert!(matches!(out.verdict, Verdict::Accept { .. }), "{out:?}");
        // The same chain would not let a new outgoing connection through.
        let out = ipt_chain(&table, "OUTPUT", pkt("198.51.100.2", 2222), &|_, _| None);
        assert_eq!(out.verdict, Verdict::Policy(Policy::Drop));
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn iptables_options_one_by_one() {
        let p = pkt("198.51.100.2", 2222);
        let r = Packet { reply: true, ..p };
        let c = ipt_condition;
        // Ports: lists, ranges with an open end, and the name iptables-save may leave.
        assert_eq!(c("--dports", "22,2000:2999", p), Some(Tri::Yes));
        assert_eq!(c("--dport", ":2221", p), Some(Tri::No));
        assert_eq!(c("--dport", "2222:", p), Some(Tri::Yes));
        assert_eq!(c("--dport", "ssh", pkt("198.51.100.2", 22)), Some(Tri::Yes));
        assert_eq!(c("--dport", "ssh", p), Some(Tri::No));
        // A reply leaves from sshd's port; its destination port is the client's, unknown.
        assert_eq!(c("--sport", "2222", r), Some(Tri::Yes));
        assert_eq!(c("--dport", "2222", r), Some(Tri::Maybe));
        assert_eq!(c("--sport", "2222", p), Some(Tri::Maybe));
        // Addresses: the support's side decides; the server's own is unknown.
        assert_eq!(c("-s", "192.0.2.1,198.51.100.0/24", p), Some(Tri::Yes));
        assert_eq!(c("--source", "192.0.2.1", p), Some(Tri::No));
        assert_eq!(c("-d", "198.51.100.2/32", p), Some(Tri::Maybe));
        assert_eq!(c("-d", "198.51.100.2", r), Some(Tri::Yes));
        assert_eq!(c("-s", "198.51.100.2", r), Some(Tri::Maybe));
        // Interfaces: never lo, any other perhaps.
        assert_eq!(c("-i", "lo", p), Some(Tri::No));
        assert_eq!(c("-i", "eth0", p), Some(Tri::Maybe));
        assert_eq!(c("-o", "lo", r), Some(Tri::No));
        assert_eq!(c("-p", "udp", p), Some(Tri::No));
        // conntrack: the first packet is new, the reply established.
        assert_eq!(c("--ctstate", "RELATED,ESTABLISHED", p), Some(Tri::No));
        assert_eq!(c("--ctstate", "RELATED,ESTABLISHED", r), Some(Tri::Yes));
        assert_eq!(c("--dst-type", "LOCAL", p), Some(Tri::Yes));
        // -m time: before the stop the rule matches, after it not.
        assert_eq!(c("--datestop", "2026-12-07T01:59:01", p), Some(Tri::Yes));
        let late = Packet {
            now: 4_000_000_000,
            ..p
        };
        assert_eq!(c("--datestop", "2026-12-07T01:59:01", late), Some(Tri::No));
        assert_eq!(c("--limit", "3/min", p), Some(Tri::Maybe));
        // Module names and target options do not constrain the packet.
        assert_eq!(c("-m", "tcp", p), None);
        assert_eq!(c("--reject-with", "tcp-reset", p), None);
    }

    #[test]
    fn iptables_negation_and_sets() {
        let p = pkt("198.51.100.2", 2222);
        let held = |_: &str, _: IpAddr| Some(true);
        let m = |args: &str, in_set: &dyn Fn(&str, IpAddr) -> Option<bool>| {
            ipt_match(&words(args), p, in_set)
        };
        assert_eq!(m("! -s 198.51.100.0/24 -j DROP", &held), (Tri::No, None));
        assert_eq!(
            m("! -s 192.0.2.0/24 -p tcp -j DROP", &held),
            (Tri::Yes, None)
        );
        assert_eq!(
            m("-m set --match-set bans src -j DROP", &held),
            (Tri::Yes, Some("bans".into()))
        );
        // A set looked up by destination holds the server's address, not the support's.
        assert_eq!(
            m("-m set --match-set bans dst -j DROP", &held),
            (Tri::Maybe, None)
        );
        assert_eq!(
            m("-m set --match-set bans src", &|_, _| Some(false)),
            (Tri::No, None)
        );
        // An unreadable set, or a rate limit, makes the match only possible.
        assert_eq!(
            m("-m set --match-set bans src", &|_, _| None),
            (Tri::Maybe, Some("bans".into()))
        );
        assert_eq!(
            m("-p tcp --dport 2222 -m limit --limit 3/min -j DROP", &held).0,
            Tri::Maybe
        );
        // The set's name is not read as an option.
        assert_eq!(
            m("-m set --match-set -i src", &held),
            (Tri::Yes, Some("-i".into()))
        );
    }

    #[test]
    fn nft_matches_one_by_one() {
        let t = JsonTable::default();
        let m = |json: &str, p: Packet| nft_match(&t, &serde_json::from_str(json).unwrap(), p).0;
        let v4 = pkt("198.51.100.2", 22);
        let v6 = pkt("2001:db8::2", 22);
        let reply = Packet { reply: true, ..v4 };
        let outside_doc = r#"{"op":"!=","left":{"payload":{"protocol":"ip","field":"saddr"}},
            "right":{"prefix":{"addr":"192.0.2.0","len":24}}}"#;
        assert_eq!(m(outside_doc, v4), Tri::Yes);
        // An `ip` match never sees IPv6, negated or not; a UDP header is never TCP's.
        assert_eq!(m(outside_doc, v6), Tri::No);
        let not_dns =
            r#"{"op":"!=","left":{"payload":{"protocol":"udp","field":"dport"}},"right":53}"#;
        assert_eq!(m(not_dns, v4), Tri::No);
        // A reply's destination port is the client's: unknown.
        let ssh = r#"{"op":"==","left":{"payload":{"protocol":"th","field":"dport"}},"right":22}"#;
        assert_eq!(m(ssh, v4), Tri::Yes);
        assert_eq!(m(ssh, reply), Tri::Maybe);
        let lo = r#"{"op":"==","left":{"meta":{"key":"iifname"}},"right":"lo"}"#;
        let eth = r#"{"op":"==","left":{"meta":{"key":"iifname"}},"right":"eth0"}"#;
        assert_eq!((m(lo, v4), m(eth, v4)), (Tri::No, Tri::Maybe));
        let v6_only = r#"{"op":"==","left":{"meta":{"key":"nfproto"}},"right":"ipv6"}"#;
        assert_eq!((m(v6_only, v4), m(v6_only, v6)), (Tri::No, Tri::Yes));
        let est = r#"{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}"#;
        assert_eq!((m(est, v4), m(est, reply)), (Tri::No, Tri::Yes));
        let local =
            r#"{"op":"==","left":{"fib":{"result":"type","flags":["daddr"]}},"right":"local"}"#;
        assert_eq!(m(local, v4), Tri::Yes);
        // The set is named only when it is looked up by the support's address.
        let bans =
            r#"{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"@bans"}"#;
        let body = serde_json::from_str(bans).unwrap();
        assert_eq!(nft_match(&t, &body, v4), (Tri::Maybe, Some("bans".into())));
        assert_eq!(nft_match(&t, &body, reply), (Tri::Maybe, None));
    }
}
