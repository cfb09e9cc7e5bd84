//! Effects: a plan becomes one netlink batch (all-or-nothing in the kernel), sent with the
//! generation id its facts were read at; a ruleset changed in between makes the kernel refuse it
//! with ERESTART, and the facts are read and the plan made again, a bounded number of times.
use std::net::IpAddr;

use super::inspect::{self, Facts, Family, RuleDepth, TableFacts};
use super::netlink::{self, Conn, NlError};
use super::plan::{self, Direction, Op, Plan, TableRef};
use super::sys::{self, ChainSpec, ElemSpec, Expr, MsgBuf, RuleSpec, SetSpec};
use crate::firewall::TAG;

/// How many times a batch planned on a ruleset that changed meanwhile is planned again.
pub const MAX_ATTEMPTS: usize = 8;

const REQ: u16 = libc::NLM_F_REQUEST as u16;
const ACK: u16 = libc::NLM_F_ACK as u16;
const CREATE: u16 = libc::NLM_F_CREATE as u16;
const APPEND: u16 = libc::NLM_F_APPEND as u16;
/// nft's BYTEORDER_BIG_ENDIAN, stored in a set's userdata (NFTNL_UDATA_SET_KEYBYTEORDER) so that
/// `nft list` prints the keys exactly as for a set it made itself.
const BYTEORDER_BIG_ENDIAN: u32 = 2;
const UDATA_SET_KEYBYTEORDER: u8 = 0;

/// A batch and the description of each message, to name the one the kernel refused.
pub struct Batch {
    pub buf: MsgBuf,
    pub acks: Vec<u32>,
    pub what: Vec<(u32, String)>,
}

impl Batch {
    pub fn describe(&self, seq: u32) -> Option<&str> {
        self.what
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, w)| w.as_str())
    }
}

fn set_udata(comment: Option<&str>) -> Vec<u8> {
    let mut ud = vec![UDATA_SET_KEYBYTEORDER, 4];
    ud.extend_from_slice(&BYTEORDER_BIG_ENDIAN.to_ne_bytes());
    if let Some(c) = comment {
        inspect::udata_put_comment(&mut ud, inspect::UDATA_SET_COMMENT, c);
    }
    ud
}

/// The elements of one address in an interval set: the address, and the next one flagged
/// INTERVAL_END (none after the last address: the interval then runs to the end of the space,
/// as nft writes it).
fn address_elems(a: IpAddr, timeout_ms: Option<u64>) -> Vec<ElemSpec> {
    let (key, next) = match a {
        IpAddr::V4(v4) => (
            v4.octets().to_vec(),
            u32::from(v4)
                .checked_add(1)
                .map(|n| n.to_be_bytes().to_vec()),
        ),
        IpAddr::V6(v6) => (
            v6.octets().to_vec(),
            u128::from(v6)
                .checked_add(1)
                .map(|n| n.to_be_bytes().to_vec()),
        ),
    };
    let mut out = vec![ElemSpec {
        key,
        interval_end: false,
        timeout_ms,
    }];
    if let Some(end) = next {
        out.push(ElemSpec {
            key: end,
            interval_end: true,
            timeout_ms: None,
        });
    }
    out
}

/// The expressions of an access rule, as nft 1.0.6 generates them for the same text (so that
/// `nft list` prints `ip saddr @ovh_access_v4 tcp dport { 22 } accept`).
fn access_exprs(
    family: Family,
    v6: bool,
    dir: Direction,
    set: &str,
    ports_set_id: u32,
) -> Vec<Expr> {
    let mut e = Vec::new();
    if dir == Direction::Pre {
        // Before routing, the accept is for this host's own addresses only: a packet routed
        // through still meets every drop on its way (nft prints `fib daddr type local`).
        e.push(Expr::FibDaddrType);
        e.push(Expr::CmpEq {
            data: sys::RTN_LOCAL.to_ne_bytes().to_vec(),
        });
    }
    if family == Family::Netdev {
        // A device's packets are of any protocol: the ethertype first, as nft adds it.
        let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
        e.push(Expr::Meta {
            key: sys::NFT_META_PROTOCOL,
        });
        e.push(Expr::CmpEq {
            data: ethertype.to_be_bytes().to_vec(),
        });
    }
    if family == Family::Inet {
        // In the inet family the network header may be either; nft adds this dependency itself.
        let proto = if v6 {
            libc::NFPROTO_IPV6
        } else {
            libc::NFPROTO_IPV4
        } as u8;
        e.push(Expr::Meta {
            key: sys::NFT_META_NFPROTO,
        });
        e.push(Expr::CmpEq { data: vec![proto] });
    }
    let (offset, len) = match (v6, dir) {
        (false, Direction::In | Direction::Pre) => (12, 4),
        (false, Direction::Out) => (16, 4),
        (true, Direction::In | Direction::Pre) => (8, 16),
        (true, Direction::Out) => (24, 16),
    };
    e.push(Expr::Payload {
        base: sys::NFT_PAYLOAD_NETWORK_HEADER,
        offset,
        len,
    });
    e.push(Expr::Lookup {
        set: set.into(),
        set_id: None,
    });
    e.push(Expr::Meta {
        key: sys::NFT_META_L4PROTO,
    });
    e.push(Expr::CmpEq {
        data: vec![libc::IPPROTO_TCP as u8],
    });
    let port_offset = if dir == Direction::Out { 0 } else { 2 };
    e.push(Expr::Payload {
        base: sys::NFT_PAYLOAD_TRANSPORT_HEADER,
        offset: port_offset,
        len: 2,
    });
    e.push(Expr::Lookup {
        set: ANON_SET.into(),
        set_id: Some(ports_set_id),
    });
    e.push(Expr::Accept);
    e
}

/// Elements per NEWSETELEM message. libnftnl writes a message without bounds checks into the
/// nft_nlmsg_maxsize() bytes reserved for it (a little over 64 KiB, the limit of one netlink
/// attribute): 256 elements of at most ~100 bytes each stay far inside it.
const ELEMS_PER_MSG: usize = 256;

/// The name template of an anonymous set: the kernel picks the number (nf_tables_set_alloc_name).
const ANON_SET: &str = "__set%d";

/// Build the batch of a plan. Every message asks for an ACK; BATCH_END does too where the kernel
/// answers it (≥ 6.10), so success is the commit itself and not only the last message.
pub fn build(ops: &[Op], genid: u32, ack_end: bool) -> Batch {
    let mut b = Batch {
        buf: MsgBuf::new(),
        acks: Vec::new(),
        what: Vec::new(),
    };
    // Sequence numbers of one batch: any unique values; the socket is ours alone.
    let mut seq = 1u32;
    netlink::batch_begin(&mut b.buf, seq, Some(genid));
    let mut next_set_id = 1u32;
    let comment_ud = |ty: u8| {
        let mut ud = Vec::new();
        inspect::udata_put_comment(&mut ud, ty, TAG);
        ud
    };
    for op in ops {
        let t: &TableRef = match op {
            Op::AddSet { table, .. }
            | Op::FlushSet { table, .. }
            | Op::AddElements { table, .. }
            | Op::AddChain { table, .. }
            | Op::FlushChain { table, .. }
            | Op::AddAccess { table, .. }
            | Op::InsertJump { table, .. }
            | Op::DeleteRule { table, .. }
            | Op::DeleteChain { table, .. }
            | Op::DeleteSet { table, .. } => table,
        };
        let fam = t.family.nfproto();
        let push = |b: &mut Batch, seq: &mut u32, what: String| {
            b.acks.push(*seq);
            b.what.push((*seq, what));
        };
        match op {
            Op::AddSet { set, v6, .. } => {
                seq += 1;
                let ud = set_udata(Some(TAG));
                let spec = SetSpec {
                    family: fam,
                    table: &t.name,
                    name: set,
                    flags: sys::NFT_SET_INTERVAL | sys::NFT_SET_TIMEOUT,
                    key_type: if *v6 {
                        sys::TYPE_IP6ADDR
                    } else {
                        sys::TYPE_IPADDR
                    },
                    key_len: if *v6 { 16 } else { 4 },
                    id: Some(next_set_id),
                    userdata: &ud,
                };
                next_set_id += 1;
                sys::put_set(
                    &mut b.buf,
                    sys::NFT_MSG_NEWSET,
                    REQ | ACK | CREATE,
                    seq,
                    &spec,
                );
                push(&mut b, &mut seq, format!("add set {t} {set}"));
            }
            Op::FlushSet { set, .. } => {
                seq += 1;
                let spec = SetSpec::named(fam, &t.name, set);
                sys::put_elems(
                    &mut b.buf,
                    sys::NFT_MSG_DELSETELEM,
                    REQ | ACK,
                    seq,
                    &spec,
                    &[],
                );
                push(&mut b, &mut seq, format!("flush set {t} {set}"));
            }
            Op::AddElements {
                set,
                addresses,
                timeout,
                ..
            } => {
                let ms = timeout.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64);
                let spec = SetSpec::named(fam, &t.name, set);
                for chunk in addresses.chunks(ELEMS_PER_MSG) {
                    seq += 1;
                    let elems: Vec<ElemSpec> =
                        chunk.iter().flat_map(|a| address_elems(*a, ms)).collect();
                    // No NLM_F_EXCL: an element already there gets its timeout refreshed.
                    sys::put_elems(
                        &mut b.buf,
                        sys::NFT_MSG_NEWSETELEM,
                        REQ | ACK | CREATE,
                        seq,
                        &spec,
                        &elems,
                    );
                    push(&mut b, &mut seq, format!("add elements to {t} {set}"));
                }
            }
            Op::AddChain { chain, .. } => {
                seq += 1;
                let ud = comment_ud(inspect::UDATA_CHAIN_COMMENT);
                let spec = ChainSpec {
                    family: fam,
                    table: &t.name,
                    name: chain,
                    userdata: &ud,
                };
                sys::put_chain(
                    &mut b.buf,
                    sys::NFT_MSG_NEWCHAIN,
                    REQ | ACK | CREATE,
                    seq,
                    &spec,
                );
                push(&mut b, &mut seq, format!("add chain {t} {chain}"));
            }
            Op::FlushChain { chain, .. } => {
                seq += 1;
                let spec = RuleSpec {
                    family: fam,
                    table: &t.name,
                    chain,
                    handle: None,
                    exprs: &[],
                    userdata: &[],
                };
                sys::put_rule(&mut b.buf, sys::NFT_MSG_DELRULE, REQ | ACK, seq, &spec);
                push(&mut b, &mut seq, format!("flush chain {t} {chain}"));
            }
            Op::AddAccess {
                chain,
                set,
                v6,
                dir,
                ports,
                ..
            } => {
                // The port list is an anonymous constant set, created in the batch and bound to
                // the rule by its id, as nft does for `tcp dport { 22, 2222 }`.
                let id = next_set_id;
                next_set_id += 1;
                seq += 1;
                let ud = set_udata(None);
                let spec = SetSpec {
                    family: fam,
                    table: &t.name,
                    name: ANON_SET,
                    flags: sys::NFT_SET_ANONYMOUS | sys::NFT_SET_CONSTANT,
                    key_type: sys::TYPE_INET_SERVICE,
                    key_len: 2,
                    id: Some(id),
                    userdata: &ud,
                };
                sys::put_set(
                    &mut b.buf,
                    sys::NFT_MSG_NEWSET,
                    REQ | ACK | CREATE,
                    seq,
                    &spec,
                );
                push(
                    &mut b,
                    &mut seq,
                    format!("add the port set of a rule in {t} {chain}"),
                );
                for chunk in ports.chunks(ELEMS_PER_MSG) {
                    seq += 1;
                    let elems: Vec<ElemSpec> = chunk
                        .iter()
                        .map(|p| ElemSpec {
                            key: p.to_be_bytes().to_vec(),
                            interval_end: false,
                            timeout_ms: None,
                        })
                        .collect();
                    sys::put_elems(
                        &mut b.buf,
                        sys::NFT_MSG_NEWSETELEM,
                        REQ | ACK | CREATE,
                        seq,
                        &spec,
                        &elems,
                    );
                    push(
                        &mut b,
                        &mut seq,
                        format!("add the ports of a rule in {t} {chain}"),
                    );
                }
                seq += 1;
                let exprs = access_exprs(t.family, *v6, *dir, set, id);
                // The tag, as on every object of the tool's: a rule `nft -f` made from the
                // dry-run script is then the tool's too.
                let mut ud = Vec::new();
                inspect::udata_put_comment(&mut ud, inspect::UDATA_RULE_COMMENT, TAG);
                inspect::udata_put_comment(
                    &mut ud,
                    inspect::UDATA_RULE_SIGNATURE,
                    &plan::access_rule_text(*v6, *dir, set, ports),
                );
                let rule = RuleSpec {
                    family: fam,
                    table: &t.name,
                    chain,
                    handle: None,
                    exprs: &exprs,
                    userdata: &ud,
                };
                sys::put_rule(
                    &mut b.buf,
                    sys::NFT_MSG_NEWRULE,
                    REQ | ACK | CREATE | APPEND,
                    seq,
                    &rule,
                );
                push(&mut b, &mut seq, format!("add rule {t} {chain}"));
            }
            Op::InsertJump { chain, target, .. } => {
                seq += 1;
                let exprs = [Expr::Jump(target.clone())];
                let ud = comment_ud(inspect::UDATA_RULE_COMMENT);
                let rule = RuleSpec {
                    family: fam,
                    table: &t.name,
                    chain,
                    handle: None,
                    exprs: &exprs,
                    userdata: &ud,
                };
                // Without NLM_F_APPEND and without a position, nf_tables_newrule links the rule at
                // the head of the chain: before the user's final drop and anything else.
                sys::put_rule(
                    &mut b.buf,
                    sys::NFT_MSG_NEWRULE,
                    REQ | ACK | CREATE,
                    seq,
                    &rule,
                );
                push(
                    &mut b,
                    &mut seq,
                    format!("insert the jump into {t} {chain}"),
                );
            }
            Op::DeleteRule { chain, handle, .. } => {
                seq += 1;
                let rule = RuleSpec {
                    family: fam,
                    table: &t.name,
                    chain,
                    handle: Some(*handle),
                    exprs: &[],
                    userdata: &[],
                };
                sys::put_rule(&mut b.buf, sys::NFT_MSG_DELRULE, REQ | ACK, seq, &rule);
                push(
                    &mut b,
                    &mut seq,
                    format!("delete the jump (handle {handle}) from {t} {chain}"),
                );
            }
            Op::DeleteChain { chain, .. } => {
                seq += 1;
                let spec = ChainSpec {
                    family: fam,
                    table: &t.name,
                    name: chain,
                    userdata: &[],
                };
                sys::put_chain(&mut b.buf, sys::NFT_MSG_DELCHAIN, REQ | ACK, seq, &spec);
                push(&mut b, &mut seq, format!("delete chain {t} {chain}"));
            }
            Op::DeleteSet { set, .. } => {
                seq += 1;
                let spec = SetSpec::named(fam, &t.name, set);
                sys::put_set(&mut b.buf, sys::NFT_MSG_DELSET, REQ | ACK, seq, &spec);
                push(&mut b, &mut seq, format!("delete set {t} {set}"));
            }
        }
    }
    seq += 1;
    netlink::batch_end(&mut b.buf, seq, ack_end);
    if ack_end {
        b.acks.push(seq);
        b.what.push((seq, "commit the batch".into()));
    }
    b
}

/// Why a batch failed, with the message the kernel refused.
#[derive(Debug)]
pub struct BatchFailure {
    pub error: NlError,
    pub what: Option<String>,
}

/// Send the batch of `ops`, valid only at generation `genid`.
pub fn send(conn: &mut Conn, ops: &[Op], genid: u32, ack_end: bool) -> Result<(), BatchFailure> {
    let batch = build(ops, genid, ack_end);
    conn.send_batch(&batch.buf, &batch.acks).map_err(|e| {
        let what = match &e {
            NlError::Kernel { seq, .. } => batch.describe(*seq).map(str::to_string),
            _ => None,
        };
        BatchFailure { error: e, what }
    })
}

/// Read (unless `known`), plan, apply; again on ERESTART (the ruleset changed after it was read) or on an
/// interrupted dump, at most [`MAX_ATTEMPTS`] times. Returns the facts and plan that were applied
/// (or that a dry run would apply).
pub fn run(
    conn: &mut Conn,
    mut known: Option<Facts>,
    depth: impl Fn(&TableFacts) -> RuleDepth,
    with_elements: bool,
    mut make_plan: impl FnMut(&Facts) -> anyhow::Result<Plan>,
    dry_run: bool,
) -> anyhow::Result<Result<(Facts, Plan), BatchFailure>> {
    let ack_end = netlink::kernel_acks_batch_end();
    let mut last = None;
    for attempt in 0..MAX_ATTEMPTS {
        // Facts already read (still current, or the kernel refuses the batch and this reads
        // again) save the first dump.
        let read = match known.take() {
            Some(f) => Ok(f),
            None => inspect::read_facts(conn, &depth, with_elements),
        };
        let facts = match read {
            Ok(f) => f,
            Err(NlError::Interrupted) => {
                last = Some(BatchFailure {
                    error: NlError::Interrupted,
                    what: None,
                });
                continue;
            }
            Err(e) => {
                return Ok(Err(BatchFailure {
                    error: e,
                    what: Some("read the ruleset".into()),
                }))
            }
        };
        let mut plan = make_plan(&facts)?;
        if attempt > 0 {
            plan.notes.push(format!(
                "the ruleset changed while ovh-access was working: read and planned again {attempt} time(s)"
            ));
        }
        if dry_run || plan.ops.is_empty() {
            return Ok(Ok((facts, plan)));
        }
        match send(conn, &plan.ops, facts.genid, ack_end) {
            Ok(()) => return Ok(Ok((facts, plan))),
            Err(failure) => {
                if failure.error.errno() != Some(netlink::ERESTART) {
                    return Ok(Err(failure));
                }
                last = Some(failure);
            }
        }
    }
    Ok(Err(last.expect("at least one attempt")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_a_one_address_interval() {
        let e = address_elems("192.0.2.255".parse().unwrap(), Some(5000));
        assert_eq!(e[0].key, vec![192, 0, 2, 255]);
        assert_eq!(e[1].key, vec![192, 0, 3, 0]);
        assert!(e[1].interval_end && !e[0].interval_end);
        assert_eq!(e[0].timeout_ms, Some(5000));
        assert_eq!(
            address_elems("255.255.255.255".parse().unwrap(), None).len(),
            1
        );
        let v6 = address_elems("2001:db8::ffff".parse().unwrap(), None);
        assert_eq!(v6[1].key[12..], [0, 1, 0, 0]);
    }

    #[test]
    fn many_elements_are_split_over_messages_that_fit() {
        let t = TableRef {
            family: Family::Inet,
            name: "filter".into(),
        };
        let addresses: Vec<IpAddr> = (0..1000u32)
            .map(|i| {
                IpAddr::from(std::net::Ipv6Addr::from(
                    (0x2001_0db8u128 << 96) | u128::from(i),
                ))
            })
            .collect();
        let ops = vec![Op::AddElements {
            table: t,
            set: "ovh_access_v6".into(),
            addresses,
            timeout: Some(std::time::Duration::from_secs(60)),
        }];
        let b = build(&ops, 1, false);
        assert_eq!(b.acks.len(), 4, "1000 addresses in chunks of 256");
        let mut at = 0;
        let bytes = b.buf.bytes();
        while at < bytes.len() {
            let len = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            assert!(len < 65_536, "message of {len} bytes");
            at += sys::align4(len);
        }
        assert_eq!(at, bytes.len());
    }

    #[test]
    fn a_batch_acks_every_message_and_names_it() {
        let t = TableRef {
            family: Family::Inet,
            name: "filter".into(),
        };
        let ops = vec![
            Op::InsertJump {
                table: t.clone(),
                chain: "input".into(),
                target: "ovh_access".into(),
            },
            Op::DeleteSet {
                table: t,
                set: "ovh_access_v4".into(),
            },
        ];
        let b = build(&ops, 42, true);
        assert_eq!(b.acks, vec![2, 3, 4]);
        assert_eq!(
            b.describe(2),
            Some("insert the jump into inet filter input")
        );
        // Begin carries the generation id, big-endian, after the nfgenmsg.
        assert_eq!(&b.buf.bytes()[24..28], &42u32.to_be_bytes());
        // The jump's header has no NLM_F_APPEND: the kernel inserts it at the head.
        let second = &b.buf.bytes()[28..];
        let flags = u16::from_ne_bytes([second[6], second[7]]);
        assert_eq!(flags & APPEND, 0);
        assert_ne!(flags & CREATE, 0);
    }
}
