//! Check 5: for each support address and SSH port, every firewall chain that decides the packet
//! — the chains the tool hooks: each nftables input base chain and each prerouting, netdev
//! ingress or output chain that can drop (netlink dump: hooks, priorities, policies, the tool's
//! jumps); each iptables filter INPUT, and raw, mangle and filter chain on PREROUTING, INPUT or
//! OUTPUT that can drop (legacy and nft, `*-save`) — and what it does with the first packet, or
//! for an output chain with sshd's replies. A chain that drops and that the tool cannot open
//! (a table another process owns, an inet ingress chain) fails. Only reads: netlink dumps,
//! `nft -j list ruleset`, `*-save`, `ipset test`.
//!
//! Each such chain becomes a [`Layer`]; `judge` then turns what the chain does with every
//! support packet (the evaluators of `rules`) into one finding per layer, without reading
//! anything itself.
use std::net::IpAddr;
use std::process::{Command, Stdio};

use super::rules::{self, ChainOutcome, JsonTable, Packet, Policy, Verdict};
use super::{Finding, Findings, Status};
use crate::firewall::detect::{self, FirewallFacts};
use crate::firewall::iptables::{self, IptablesBackend};
use crate::firewall::nft::{self, ChainFacts, Hook, TableFacts};
use crate::firewall::Backend;

const CHECK: &str = "firewall";

/// One input chain that decides the packet (or output chain that decides the reply).
struct Layer {
    /// `nftables inet filter input` or `iptables-legacy filter INPUT`.
    label: String,
    /// Hook priority (nft); iptables' filter table sits at 0.
    priority: i32,
    policy: Policy,
    v4: bool,
    v6: bool,
    jump: Jump,
    /// The command that deletes the tool's jump (so that the next run inserts it at the head).
    delete_jump: Option<String>,
    /// An output chain: judged on sshd's replies.
    reply: bool,
    kind: Kind,
}

/// Where the tool's tagged jump sits in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jump {
    Absent,
    /// Present, behind other rules that see the packet first.
    Behind,
    AtHead,
}

enum Kind {
    Nft {
        family: String,
        table: String,
        chain: String,
    },
    Ipt {
        table: iptables::SavedTable,
        chain: &'static str,
    },
}

/// How to open a closed door: `ovh-access restore` puts the tool's jumps back at the head of
/// every input chain for a recorded grant; without one, a grant is needed.
pub struct Remedy {
    pub reopen: String,
}

pub fn check(addresses: &[IpAddr], ports: &[u16], remedy: &Remedy, f: &mut Findings) {
    let mut base = detect::gather_facts_except_nft();
    let mut layers = nft_layers(&mut base, f);
    if super::firewalld::check(&mut base, addresses, ports, remedy, f) {
        return;
    }
    layers.extend(ipt_layers(&base, f));
    if base.ufw_present {
        f.warn(
            CHECK,
            "ufw is enabled: its chains decide in the iptables layer (see the iptables findings), and `ufw reload` removes the tool's rules",
            "after each `ufw reload` or `ufw enable` run `ovh-access restore`",
        );
    }
    if layers.is_empty() {
        f.pass(
            CHECK,
            "no nftables or iptables input chain filters this server: nothing blocks the support",
        );
        return;
    }
    layers.sort_by_key(|l| l.priority);
    let json = if layers.iter().any(|l| matches!(l.kind, Kind::Nft { .. })) {
        nft_json(f)
    } else {
        None
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for l in &layers {
        let outcome = |p: Packet| evaluate(l, json.as_deref(), p);
        f.0.push(judge(l, addresses, ports, now, remedy, &outcome));
    }
}

/// The nftables chains that decide, read over netlink; the nft tables are also recorded in
/// `base`, which firewalld's check and the iptables layers' detection read.
fn nft_layers(base: &mut FirewallFacts, f: &mut Findings) -> Vec<Layer> {
    let facts = match nft::NftBackend::new().and_then(|mut b| b.facts()) {
        Ok(facts) => facts,
        Err(e) => {
            f.warn(
                CHECK,
                format!("nftables could not be read ({e:#}), so its input chains were not checked"),
                if rustix::process::geteuid().is_root() {
                    "run `nft list ruleset` to see why the ruleset cannot be read"
                } else {
                    "run `ovh-access doctor` as root (it needs CAP_NET_ADMIN to read the ruleset)"
                },
            );
            return Vec::new();
        }
    };
    base.nft_tables = nft::detector_tables(&facts);
    for blocked in nft::refusals_not_left_to_firewalld(&facts) {
        f.fail(
            CHECK,
            format!("nftables: {blocked}"),
            "see the sentence: the tool cannot open that chain itself",
        );
    }
    facts
        .tables
        .iter()
        .filter(|t| t.id.family.carries_ip())
        .filter(|t| !t.made_by_iptables_nft())
        // firewalld's table is judged by its rules; another owner's was refused above.
        .filter(|t| !t.owned || t.left_to_firewalld())
        .flat_map(|t| t.chains.iter().filter_map(move |c| nft_layer(t, c)))
        .collect()
}

/// One chain of an nftables table, as a layer when the tool hooks it.
fn nft_layer(t: &TableFacts, c: &ChainFacts) -> Option<Layer> {
    c.tool_target(t.id.family)?;
    let rules = c.rules.as_deref().unwrap_or_default();
    let jump = rules.iter().position(|r| r.is_tool_jump());
    Some(Layer {
        label: format!("nftables {} {}", t.id, c.name),
        priority: c.base.as_ref().map_or(0, |b| b.priority),
        policy: if c.base.as_ref().is_some_and(|b| b.policy_drop) {
            Policy::Drop
        } else {
            Policy::Accept
        },
        v4: t.id.family.has_v4(),
        v6: t.id.family.has_v6(),
        jump: match jump {
            None => Jump::Absent,
            Some(0) => Jump::AtHead,
            Some(_) => Jump::Behind,
        },
        delete_jump: jump.map(|i| {
            format!(
                "nft delete rule {} {} {} handle {}",
                t.id.family.name(),
                t.id.name,
                c.name,
                rules[i].handle
            )
        }),
        reply: c.is_filter_on(Hook::Output),
        kind: Kind::Nft {
            family: t.id.family.name().into(),
            table: t.id.name.clone(),
            chain: c.name.clone(),
        },
    })
}

/// Every iptables layer that exists, as the detector finds them for removal: the built-in
/// chains the tool hooks in each of its tables.
fn ipt_layers(base: &FirewallFacts, f: &mut Findings) -> Vec<Layer> {
    let mut layers = Vec::new();
    let backends = detect::layers_for_removal(base)
        .into_iter()
        .filter_map(|k| match k {
            detect::LayerKind::Iptables(v, fam) => Some(IptablesBackend::new(v, fam)),
            detect::LayerKind::Nft | detect::LayerKind::Firewalld => None,
        });
    for b in backends {
        match b.tables() {
            Ok(tables) => {
                for table in &tables {
                    for (chain, reply) in iptables::plan::hooked_chains(table) {
                        layers.extend(ipt_layer(&b, table, chain, reply));
                    }
                }
            }
            Err(e) => f.warn(
                CHECK,
                format!("{} could not be read: {e:#}", b.program("save")),
                format!("run `{}` by hand to see why", b.program("save")),
            ),
        }
    }
    layers
}

/// One built-in chain of an iptables table that the tool hooks, as a layer.
fn ipt_layer(
    b: &IptablesBackend,
    table: &iptables::SavedTable,
    chain: &'static str,
    reply: bool,
) -> Option<Layer> {
    let c = table.chain(chain)?;
    let st = iptables::state::tool_state(Some(table));
    let jumps: Vec<_> = st.jumps.iter().filter(|j| j.chain == chain).collect();
    let program = b.name();
    // The order a packet meets them on a hook: raw (-300), mangle (-150), filter (0).
    let priority = match table.name.as_str() {
        "raw" => -300,
        "mangle" => -150,
        _ => 0,
    };
    Some(Layer {
        label: format!("{program} {} {chain}", table.name),
        priority,
        policy: if c.policy.as_deref() == Some("DROP") {
            Policy::Drop
        } else {
            Policy::Accept
        },
        v4: b.family() == iptables::Family::V4,
        v6: b.family() == iptables::Family::V6,
        jump: if jumps.iter().any(|j| j.at_head) {
            Jump::AtHead
        } else if jumps.is_empty() {
            Jump::Absent
        } else {
            Jump::Behind
        },
        delete_jump: c
            .rules
            .iter()
            .find(|r| {
                r.has_comment(crate::firewall::TAG)
                    && r.target()
                        .is_some_and(|t| jumps.iter().any(|j| j.target == t))
            })
            .map(|r| format!("{program} -t {} -D {chain} {}", table.name, r.spec)),
        reply,
        kind: Kind::Ipt {
            table: table.clone(),
            chain,
        },
    })
}

/// What the layer's chain does with the packet, by its rules; None when its rules could not be
/// read (nft without JSON). Asks `ipset` about iptables set matches.
fn evaluate(l: &Layer, json: Option<&[JsonTable]>, p: Packet) -> Option<ChainOutcome> {
    match &l.kind {
        Kind::Nft {
            family,
            table,
            chain,
        } => json
            .and_then(|ts| ts.iter().find(|t| &t.family == family && &t.name == table))
            .map(|t| rules::nft_chain(t, chain, l.policy, p)),
        Kind::Ipt { table, chain } => Some(rules::ipt_chain(table, chain, p, &ipset_has)),
    }
}

/// `nft -j list ruleset`: the rules with their expressions, which the netlink dump does not
/// decode. None (with a WARN) when nft is missing or fails.
fn nft_json(f: &mut Findings) -> Option<Vec<JsonTable>> {
    let out = Command::new("nft")
        .args(["-j", "list", "ruleset"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => match serde_json::from_slice(&o.stdout) {
            Ok(v) => Some(rules::parse_nft_json(&v)),
            Err(e) => {
                f.warn(CHECK, format!("`nft -j list ruleset` printed no JSON ({e}), so the rules before the tool's jump were not checked"), "install an nft built with JSON support (Debian's nftables package is)");
                None
            }
        },
        Ok(o) => {
            f.warn(
                CHECK,
                format!(
                    "`nft -j list ruleset` failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                "run `nft list ruleset` by hand to see why",
            );
            None
        }
        Err(e) => {
            f.warn(
                CHECK,
                format!(
                    "cannot run nft ({e}), so the rules before the tool's jump were not checked"
                ),
                "install nftables (`apt install nftables`)",
            );
            None
        }
    }
}

/// `ipset test NAME ADDR`: exit 0 = member, 1 = not; anything else = unknown.
fn ipset_has(set: &str, addr: IpAddr) -> Option<bool> {
    let st = Command::new("ipset")
        .args(["test", set, &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    match st.code() {
        Some(0) => Some(true),
        Some(1) => Some(false),
        _ => None,
    }
}

/// The layer's finding for every support address of its family on every port (pure: what the
/// chain does with each packet comes from `outcome`, None when its rules were not read).
fn judge(
    l: &Layer,
    addresses: &[IpAddr],
    ports: &[u16],
    now: u64,
    remedy: &Remedy,
    outcome: &dyn Fn(Packet) -> Option<ChainOutcome>,
) -> Finding {
    let mut t = Tally::default();
    for addr in addresses
        .iter()
        .filter(|a| if a.is_ipv4() { l.v4 } else { l.v6 })
    {
        for port in ports {
            let p = Packet {
                addr: *addr,
                port: *port,
                now,
                reply: l.reply,
            };
            let flow = if l.reply {
                format!("reply from port {port} to {addr}")
            } else {
                format!("{addr} → port {port}")
            };
            match outcome(p) {
                Some(o) => t.outcome(l, &flow, *addr, &o, remedy),
                None => t.unread(l, &flow, remedy),
            }
        }
    }
    t.finding(l, remedy)
}

/// What the packets of one layer met, sorted by severity, and the fixes in the order to run them.
#[derive(Default)]
struct Tally {
    fails: Vec<String>,
    fixes: Vec<String>,
    maybes: Vec<String>,
    ok: Vec<String>,
}

impl Tally {
    /// The chain's rules could not be read: judge by the jump alone.
    fn unread(&mut self, l: &Layer, flow: &str, remedy: &Remedy) {
        match (l.jump, l.policy) {
            (Jump::AtHead, _) => self.maybes.push(format!(
                "{flow}: the ovh-access jump is at the head, but the rules were not read, so whether the tool's set holds the address is unknown"
            )),
            (_, Policy::Drop) => {
                self.fails.push(format!(
                    "{flow}: no ovh-access jump at the head of a chain whose policy drops"
                ));
                self.fix(&remedy.reopen);
            }
            (_, Policy::Accept) => self.maybes.push(format!(
                "{flow}: the rules were not read, so an earlier drop cannot be ruled out"
            )),
        }
    }

    fn outcome(&mut self, l: &Layer, flow: &str, addr: IpAddr, o: &ChainOutcome, remedy: &Remedy) {
        for m in &o.maybe {
            self.maybes.push(format!(
                "{flow}: {} may drop it (conditions not decidable here)",
                m.rule
            ));
        }
        match &o.verdict {
            Verdict::Accept { rule } => self.ok.push(format!("{flow} accepted by {rule}")),
            Verdict::Policy(Policy::Accept) => {
                self.ok.push(format!("{flow} passes (policy accept)"))
            }
            Verdict::Policy(Policy::Drop) => {
                self.fails.push(format!(
                    "{flow}: no rule accepts it and the policy drops it"
                ));
                self.fix(&remedy.reopen);
            }
            Verdict::Drop { rule, set } => {
                let what = match set {
                    Some(s) => format!("the drop set {s} holds {addr} ({rule})"),
                    None => format!("{rule} drops it"),
                };
                self.fails.push(format!("{flow}: {what}"));
                if let Some(s) = set {
                    self.fix(&match &l.kind {
                        Kind::Nft { family, table, .. } => {
                            format!("nft delete element {family} {table} {s} {{ {addr} }}")
                        }
                        Kind::Ipt { .. } => format!("ipset del {s} {addr}"),
                    });
                } else if let Some(cmd) = &l.delete_jump {
                    // The jump sits behind the drop: remove it so that the next run inserts
                    // it again at the head.
                    self.fix(cmd);
                }
                self.fix(&remedy.reopen);
            }
        }
    }

    fn fix(&mut self, cmd: &str) {
        if !self.fixes.iter().any(|f| f == cmd) {
            self.fixes.push(cmd.to_string());
        }
    }

    /// One finding for the layer: FAIL when a packet is dropped, WARN when one may be, else PASS.
    fn finding(self, l: &Layer, remedy: &Remedy) -> Finding {
        let head = format!(
            "{} (priority {}, policy {}{})",
            l.label,
            l.priority,
            match l.policy {
                Policy::Drop => "drop",
                Policy::Accept => "accept",
            },
            match l.jump {
                Jump::AtHead => ", ovh-access jump at the head",
                Jump::Behind => ", ovh-access jump NOT at the head",
                Jump::Absent => ", no ovh-access jump",
            }
        );
        let (status, detail, fix) = if !self.fails.is_empty() {
            (
                Status::Fail,
                self.fails.join("; "),
                self.fixes.join(", then "),
            )
        } else if !self.maybes.is_empty() {
            let fix = if l.jump == Jump::AtHead {
                "ovh-access status (it says whether the tool's sets hold every support address)"
                    .to_string()
            } else {
                remedy.reopen.clone()
            };
            (Status::Warn, self.maybes.join("; "), fix)
        } else if self.ok.is_empty() {
            let detail = "no support address of this family".to_string();
            (Status::Pass, detail, String::new())
        } else {
            (Status::Pass, self.ok.join("; "), String::new())
        };
        Finding {
            check: CHECK.into(),
            status,
            detail: format!("{head}: {detail}"),
            fix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::rules::MayDrop;

    const HEAD: &str = "nftables inet filter input (priority 0, policy";

    fn layer(policy: Policy, jump: Jump) -> Layer {
        Layer {
            label: "nftables inet filter input".into(),
            priority: 0,
            policy,
            v4: true,
            v6: true,
            jump,
            delete_jump: (jump != Jump::Absent)
                .then(|| "nft delete rule inet filter input handle 7".into()),
            reply: false,
            kind: Kind::Nft {
                family: "inet".into(),
                table: "filter".into(),
                chain: "input".into(),
            },
        }
    }

    fn run(
        l: &Layer,
        addresses: &[&str],
        ports: &[u16],
        outcome: impl Fn(Packet) -> Option<ChainOutcome>,
    ) -> Finding {
        let addresses: Vec<IpAddr> = addresses.iter().map(|a| a.parse().unwrap()).collect();
        let remedy = Remedy {
            reopen: "ovh-access restore".into(),
        };
        judge(l, &addresses, ports, 0, &remedy, &outcome)
    }

    fn verdict(verdict: Verdict) -> Option<ChainOutcome> {
        Some(ChainOutcome {
            verdict,
            maybe: Vec::new(),
        })
    }

    fn drop(rule: &str, set: Option<&str>) -> Option<ChainOutcome> {
        verdict(Verdict::Drop {
            rule: rule.into(),
            set: set.map(str::to_string),
        })
    }

    #[test]
    fn unread_rules_are_judged_by_the_jump() {
        let a = "198.51.100.2";
        let out = run(
            &layer(Policy::Drop, Jump::Absent),
            &[a],
            &[22, 2222],
            |_| None,
        );
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.detail,
            format!(
                "{HEAD} drop, no ovh-access jump): {a} → port 22: no ovh-access jump at the head \
                 of a chain whose policy drops; {a} → port 2222: no ovh-access jump at the head \
                 of a chain whose policy drops"
            )
        );
        // One fix, however many packets need it.
        assert_eq!(out.fix, "ovh-access restore");
        let out = run(&layer(Policy::Drop, Jump::AtHead), &[a], &[22], |_| None);
        assert_eq!(out.status, Status::Warn);
        assert!(out.fix.starts_with("ovh-access status"), "{}", out.fix);
        let out = run(&layer(Policy::Accept, Jump::Behind), &[a], &[22], |_| None);
        assert_eq!(out.status, Status::Warn);
        assert!(
            out.detail.ends_with("an earlier drop cannot be ruled out"),
            "{}",
            out.detail
        );
        assert_eq!(out.fix, "ovh-access restore");
    }

    #[test]
    fn each_drop_names_what_removes_it() {
        let a = "198.51.100.2";
        let l = layer(Policy::Accept, Jump::Behind);
        let out = run(&l, &[a], &[22], |_| {
            drop("inet filter input handle 3", Some("bans"))
        });
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.detail,
            format!(
                "{HEAD} accept, ovh-access jump NOT at the head): {a} → port 22: the drop set \
                 bans holds {a} (inet filter input handle 3)"
            )
        );
        assert_eq!(
            out.fix,
            format!("nft delete element inet filter bans {{ {a} }}, then ovh-access restore")
        );
        // A drop ahead of the tool's jump: the jump goes, the next run puts it at the head.
        let out = run(&l, &[a], &[22], |_| {
            drop("inet filter input handle 3", None)
        });
        assert_eq!(
            out.fix,
            "nft delete rule inet filter input handle 7, then ovh-access restore"
        );
        let out = run(&layer(Policy::Accept, Jump::Absent), &[a], &[22], |_| {
            drop("inet filter input handle 3", None)
        });
        assert_eq!(out.fix, "ovh-access restore");
        // An iptables set is emptied with ipset.
        let text =
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        let table = iptables::save::parse(text).unwrap().remove(0);
        let ipt = Layer {
            kind: Kind::Ipt {
                table,
                chain: "INPUT",
            },
            ..layer(Policy::Drop, Jump::Absent)
        };
        let out = run(&ipt, &[a], &[22], |_| {
            drop("filter INPUT rule 1", Some("f2b"))
        });
        assert_eq!(
            out.fix,
            format!("ipset del f2b {a}, then ovh-access restore")
        );
        // A drop anywhere fails the layer, whatever the other packets met.
        let out = run(&l, &[a], &[22, 2222], |p| match p.port {
            22 => drop("inet filter input handle 3", None),
            _ => verdict(Verdict::Accept { rule: "R".into() }),
        });
        assert_eq!(out.status, Status::Fail);
    }

    #[test]
    fn accepts_pass_and_uncertain_drops_warn() {
        let a = "198.51.100.2";
        let l = layer(Policy::Drop, Jump::AtHead);
        let out = run(&l, &[a], &[22], |_| {
            verdict(Verdict::Accept {
                rule: "inet filter ovh_access handle 9".into(),
            })
        });
        assert_eq!(out.status, Status::Pass);
        assert_eq!(
            out.detail,
            format!(
                "{HEAD} drop, ovh-access jump at the head): {a} → port 22 accepted by inet \
                 filter ovh_access handle 9"
            )
        );
        assert_eq!(out.fix, "");
        let out = run(&l, &[a], &[22], |_| {
            Some(ChainOutcome {
                verdict: Verdict::Policy(Policy::Accept),
                maybe: vec![MayDrop {
                    rule: "inet filter input handle 5".into(),
                }],
            })
        });
        assert_eq!(out.status, Status::Warn);
        assert!(out.detail.ends_with(
            "port 22: inet filter input handle 5 may drop it (conditions not decidable here)"
        ));
        let out = run(&l, &[a], &[22], |_| {
            verdict(Verdict::Policy(Policy::Accept))
        });
        assert!(out.detail.ends_with("port 22 passes (policy accept)"));
        // An IPv4-only chain never sees the support's IPv6 packets.
        let v4 = Layer {
            v6: false,
            ..layer(Policy::Drop, Jump::Absent)
        };
        let out = run(&v4, &["2001:db8::2"], &[22], |_| unreachable!());
        assert_eq!(out.status, Status::Pass);
        assert!(out.detail.ends_with(": no support address of this family"));
        // An output chain is asked about sshd's replies.
        let output = Layer {
            reply: true,
            ..layer(Policy::Drop, Jump::Absent)
        };
        let out = run(&output, &[a], &[22], |p| {
            assert!(p.reply);
            verdict(Verdict::Policy(Policy::Drop))
        });
        assert!(out.detail.ends_with(&format!(
            "reply from port 22 to {a}: no rule accepts it and the policy drops it"
        )));
    }
}
