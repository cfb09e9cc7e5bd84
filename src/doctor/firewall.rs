//! Check 5: for each support address and SSH port, every firewall chain that decides the packet
//! — the chains the tool hooks: each nftables input base chain and each prerouting, netdev
//! ingress or output chain that can drop (netlink dump: hooks, priorities, policies, the tool's
//! jumps); each iptables filter INPUT, and raw, mangle and filter chain on PREROUTING, INPUT or
//! OUTPUT that can drop (legacy and nft, `*-save`) — and what it does with the first packet, or
//! for an output chain with sshd's replies. A chain that drops and that the tool cannot open
//! (a table another process owns, an inet ingress chain) fails. Only reads: netlink dumps,
//! `nft -j list ruleset`, `*-save`, `ipset test`.
use std::net::IpAddr;
use std::process::{Command, Stdio};

use super::rules::{self, ChainOutcome, NftTable, Packet, Verdict};
use super::Findings;
use crate::firewall::iptables::{self, IptablesBackend};
use crate::firewall::nft::{self, Hook};
use crate::firewall::{detect, Backend};

/// One input chain that decides the packet (or output chain that decides the reply).
struct Layer {
    /// `nftables inet filter input` or `iptables-legacy filter INPUT`.
    label: String,
    /// Hook priority (nft); iptables' filter table sits at 0.
    priority: i32,
    policy_drop: bool,
    v4: bool,
    v6: bool,
    /// The tool's tagged jump: present, and first.
    jump_present: bool,
    jump_at_head: bool,
    /// The command that deletes the tool's jump (so that the next run inserts it at the head).
    delete_jump: Option<String>,
    /// An output chain: judged on sshd's replies.
    reply: bool,
    kind: Kind,
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
    let mut layers = Vec::new();
    let mut base = detect::gather_facts_except_nft();
    match nft::NftBackend::new().and_then(|mut b| b.facts()) {
        Ok(facts) => {
            base.nft_tables = nft::detector_tables(&facts);
            for blocked in nft::refusals_not_left_to_firewalld(&facts) {
                f.fail(
                    "firewall",
                    format!("nftables: {blocked}"),
                    "see the sentence: the tool cannot open that chain itself",
                );
            }
            for t in facts.tables.iter().filter(|t| t.id.family.carries_ip()) {
                // firewalld's table is judged by its rules; another owner's was refused above.
                if t.made_by_iptables_nft() || (t.owned && !t.left_to_firewalld()) {
                    continue;
                }
                let hooked = t.chains.iter().filter_map(|c| {
                    c.tool_target(t.id.family)
                        .map(|_| (c, c.is_filter_on(Hook::Output)))
                });
                for (c, reply) in hooked {
                    let rules = c.rules.as_deref().unwrap_or_default();
                    layers.push(Layer {
                        label: format!("nftables {} {}", t.id, c.name),
                        priority: c.base.as_ref().map_or(0, |b| b.priority),
                        policy_drop: c.base.as_ref().is_some_and(|b| b.policy_drop),
                        v4: t.id.family.has_v4(),
                        v6: t.id.family.has_v6(),
                        jump_present: rules.iter().any(|r| r.is_tool_jump()),
                        jump_at_head: rules.first().is_some_and(|r| r.is_tool_jump()),
                        delete_jump: rules.iter().find(|r| r.is_tool_jump()).map(|r| {
                            format!(
                                "nft delete rule {} {} {} handle {}",
                                t.id.family.name(),
                                t.id.name,
                                c.name,
                                r.handle
                            )
                        }),
                        reply,
                        kind: Kind::Nft {
                            family: t.id.family.name().into(),
                            table: t.id.name.clone(),
                            chain: c.name.clone(),
                        },
                    });
                }
            }
        }
        Err(e) => f.warn(
            "firewall",
            format!("nftables could not be read ({e:#}), so its input chains were not checked"),
            if rustix::process::geteuid().is_root() {
                "run `nft list ruleset` to see why the ruleset cannot be read"
            } else {
                "run `ovh-access doctor` as root (it needs CAP_NET_ADMIN to read the ruleset)"
            },
        ),
    }
    if super::firewalld::check(&mut base, addresses, ports, remedy, f) {
        return;
    }
    // Every iptables layer that exists, as the detector finds them for removal.
    let ipt = detect::layers_for_removal(&base)
        .into_iter()
        .filter_map(|k| match k {
            detect::LayerKind::Iptables(v, fam) => Some(IptablesBackend::new(v, fam)),
            detect::LayerKind::Nft | detect::LayerKind::Firewalld => None,
        });
    for b in ipt {
        match b.tables() {
            Ok(tables) => {
                for table in &tables {
                    for (chain, reply) in iptables::plan::hooked_chains(table) {
                        if let Some(l) = ipt_layer(&b, table, chain, reply) {
                            layers.push(l);
                        }
                    }
                }
            }
            Err(e) => f.warn(
                "firewall",
                format!("{} could not be read: {e:#}", b.program("save")),
                format!("run `{}` by hand to see why", b.program("save")),
            ),
        }
    }
    if base.ufw_present {
        f.warn(
            "firewall",
            "ufw is enabled: its chains decide in the iptables layer (see the iptables findings), and `ufw reload` removes the tool's rules",
            "after each `ufw reload` or `ufw enable` run `ovh-access restore`",
        );
    }
    if layers.is_empty() {
        f.pass(
            "firewall",
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

    for l in &layers {
        judge(l, json.as_deref(), addresses, ports, remedy, f);
    }
}

/// One built-in chain of an iptables table that the tool hooks, as a layer.
fn ipt_layer(
    b: &IptablesBackend,
    table: &iptables::SavedTable,
    chain: &'static str,
    reply: bool,
) -> Option<Layer> {
    let c = table.chain(chain)?;
    let policy_drop = c.policy.as_deref() == Some("DROP");
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
        policy_drop,
        v4: b.family() == iptables::Family::V4,
        v6: b.family() == iptables::Family::V6,
        jump_present: !jumps.is_empty(),
        jump_at_head: jumps.iter().any(|j| j.at_head),
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

/// `nft -j list ruleset`: the rules with their expressions, which the netlink dump does not
/// decode. None (with a WARN) when nft is missing or fails.
fn nft_json(f: &mut Findings) -> Option<Vec<NftTable>> {
    let out = Command::new("nft")
        .args(["-j", "list", "ruleset"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => match serde_json::from_slice(&o.stdout) {
            Ok(v) => Some(rules::parse_nft_json(&v)),
            Err(e) => {
                f.warn("firewall", format!("`nft -j list ruleset` printed no JSON ({e}), so the rules before the tool's jump were not checked"), "install an nft built with JSON support (Debian's nftables package is)");
                None
            }
        },
        Ok(o) => {
            f.warn(
                "firewall",
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
                "firewall",
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

fn judge(
    l: &Layer,
    json: Option<&[NftTable]>,
    addresses: &[IpAddr],
    ports: &[u16],
    remedy: &Remedy,
    f: &mut Findings,
) {
    let head = format!(
        "{} (priority {}, policy {}{})",
        l.label,
        l.priority,
        if l.policy_drop { "drop" } else { "accept" },
        if l.jump_at_head {
            ", ovh-access jump at the head"
        } else if l.jump_present {
            ", ovh-access jump NOT at the head"
        } else {
            ", no ovh-access jump"
        }
    );
    let mut fails = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    let mut maybes = Vec::new();
    let mut ok = Vec::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
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
            let outcome: Option<ChainOutcome> = match &l.kind {
                Kind::Nft {
                    family,
                    table,
                    chain,
                } => json
                    .and_then(|ts| ts.iter().find(|t| &t.family == family && &t.name == table))
                    .map(|t| rules::nft_chain(t, chain, l.policy_drop, p)),
                Kind::Ipt { table, chain } => Some(rules::ipt_chain(table, chain, p, &ipset_has)),
            };
            let Some(o) = outcome else {
                // Rules unreadable: judge by the jump alone.
                if !l.jump_at_head && l.policy_drop {
                    fails.push(format!(
                        "{flow}: no ovh-access jump at the head of a chain whose policy drops"
                    ));
                    push_unique(&mut fixes, remedy.reopen.clone());
                } else if l.jump_at_head {
                    maybes.push(format!(
                        "{flow}: the ovh-access jump is at the head, but the rules were not read, so whether the tool's set holds the address is unknown"
                    ));
                } else {
                    maybes.push(format!(
                        "{flow}: the rules were not read, so an earlier drop cannot be ruled out"
                    ));
                }
                continue;
            };
            for m in &o.maybe {
                maybes.push(format!(
                    "{flow}: {} may drop it (conditions not decidable here)",
                    m.rule
                ));
            }
            match &o.verdict {
                Verdict::Accept { rule } => ok.push(format!("{flow} accepted by {rule}")),
                Verdict::Policy { drop: false } => {
                    ok.push(format!("{flow} passes (policy accept)"))
                }
                Verdict::Policy { drop: true } => {
                    fails.push(format!(
                        "{flow}: no rule accepts it and the policy drops it"
                    ));
                    push_unique(&mut fixes, remedy.reopen.clone());
                }
                Verdict::Drop { rule, set } => {
                    let what = match set {
                        Some(s) => format!("the drop set {s} holds {addr} ({rule})"),
                        None => format!("{rule} drops it"),
                    };
                    fails.push(format!("{flow}: {what}"));
                    if let Some(s) = set {
                        let cmd = match &l.kind {
                            Kind::Nft { family, table, .. } => {
                                format!("nft delete element {family} {table} {s} {{ {addr} }}")
                            }
                            Kind::Ipt { .. } => format!("ipset del {s} {addr}"),
                        };
                        push_unique(&mut fixes, cmd);
                    } else if let Some(cmd) = &l.delete_jump {
                        // The jump sits behind the drop: remove it so that the next run inserts
                        // it again at the head.
                        push_unique(&mut fixes, cmd.clone());
                    }
                    push_unique(&mut fixes, remedy.reopen.clone());
                }
            }
        }
    }
    if !fails.is_empty() {
        f.fail(
            "firewall",
            format!("{head}: {}", fails.join("; ")),
            fixes.join(", then "),
        );
    } else if !maybes.is_empty() {
        f.warn(
            "firewall",
            format!("{head}: {}", maybes.join("; ")),
            if l.jump_at_head {
                "ovh-access status (it says whether the tool's sets hold every support address)"
                    .to_string()
            } else {
                remedy.reopen.clone()
            },
        );
    } else if ok.is_empty() {
        f.pass(
            "firewall",
            format!("{head}: no support address of this family"),
        );
    } else {
        f.pass("firewall", format!("{head}: {}", ok.join("; ")));
    }
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}
