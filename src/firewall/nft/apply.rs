//! Effects: a plan becomes one netlink batch (all-or-nothing in the kernel), sent with the
//! generation id its facts were read at; a ruleset changed in between makes the kernel refuse it
//! with ERESTART, and the facts are read and the plan made again, a bounded number of times.
use std::net::IpAddr;
use std::time::Duration;

use super::inspect::{self, Facts, Family, IpVersion, RuleDepth, SetElements, TableFacts, TableId};
use super::netlink::{self, BatchEnd, Conn, NlError};
use super::plan::{self, Direction, Op, Plan};
use super::sys::{self, ChainSpec, ElemSpec, Expr, MsgBuf, RuleSpec, SetSpec};
use crate::firewall::{Mode, TAG};

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
    ip: IpVersion,
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
        let ethertype: u16 = match ip {
            IpVersion::V4 => 0x0800,
            IpVersion::V6 => 0x86dd,
        };
        e.push(Expr::Meta {
            key: sys::NFT_META_PROTOCOL,
        });
        e.push(Expr::CmpEq {
            data: ethertype.to_be_bytes().to_vec(),
        });
    }
    if family == Family::Inet {
        // In the inet family the network header may be either; nft adds this dependency itself.
        let proto = match ip {
            IpVersion::V4 => libc::NFPROTO_IPV4,
            IpVersion::V6 => libc::NFPROTO_IPV6,
        } as u8;
        e.push(Expr::Meta {
            key: sys::NFT_META_NFPROTO,
        });
        e.push(Expr::CmpEq { data: vec![proto] });
    }
    // Where saddr and daddr sit in the IPv4 header (RFC 791) and the IPv6 header (RFC 8200).
    let (offset, len) = match (ip, dir) {
        (IpVersion::V4, Direction::In | Direction::Pre) => (12, 4),
        (IpVersion::V4, Direction::Out) => (16, 4),
        (IpVersion::V6, Direction::In | Direction::Pre) => (8, 16),
        (IpVersion::V6, Direction::Out) => (24, 16),
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

/// A rule of `chain` in `table`: no handle, no expressions, no userdata until given.
fn rule_in<'a>(table: &'a TableId, chain: &'a str) -> RuleSpec<'a> {
    RuleSpec {
        family: table.family.nfproto(),
        table: &table.name,
        chain,
        handle: None,
        exprs: &[],
        userdata: &[],
    }
}

/// Userdata holding only the tag, as the comment of type `ty`.
fn tag_udata(ty: u8) -> Vec<u8> {
    let mut ud = Vec::new();
    inspect::udata_put_comment(&mut ud, ty, TAG);
    ud
}

/// Build the batch of a plan. Every message asks for an ACK; BATCH_END does too where the kernel
/// answers it (≥ 6.10), so success is the commit itself and not only the last message.
pub fn build(ops: &[Op], genid: u32, end: BatchEnd) -> Batch {
    let mut w = BatchWriter::begin(genid);
    for op in ops {
        w.op(op);
    }
    w.end(end)
}

/// A batch being written: the messages so far, the last sequence number used, and the id the
/// next set created in the batch gets (a rule in the same batch refers to a new set by it).
struct BatchWriter {
    batch: Batch,
    seq: u32,
    next_set_id: u32,
}

impl BatchWriter {
    fn begin(genid: u32) -> BatchWriter {
        let mut w = BatchWriter {
            batch: Batch {
                buf: MsgBuf::new(),
                acks: Vec::new(),
                what: Vec::new(),
            },
            // Sequence numbers of one batch: any unique values; the socket is ours alone.
            seq: 1,
            next_set_id: 1,
        };
        netlink::batch_begin(&mut w.batch.buf, w.seq, Some(genid));
        w
    }

    fn end(mut self, end: BatchEnd) -> Batch {
        self.seq += 1;
        netlink::batch_end(&mut self.batch.buf, self.seq, end);
        if end == BatchEnd::Acked {
            self.batch.acks.push(self.seq);
            self.batch.what.push((self.seq, "commit the batch".into()));
        }
        self.batch
    }

    /// The sequence number of the next message, whose ACK is awaited and which a refusal names
    /// by `what`.
    fn next(&mut self, what: String) -> u32 {
        self.seq += 1;
        self.batch.acks.push(self.seq);
        self.batch.what.push((self.seq, what));
        self.seq
    }

    fn set_id(&mut self) -> u32 {
        let id = self.next_set_id;
        self.next_set_id += 1;
        id
    }

    fn op(&mut self, op: &Op) {
        match op {
            Op::AddSet { table, set, ip } => self.add_set(table, set, *ip),
            Op::FlushSet { table, set } => self.flush_set(table, set),
            Op::AddElements {
                table,
                set,
                addresses,
                timeout,
            } => self.add_elements(table, set, addresses, *timeout),
            Op::DeleteSet { table, set } => self.delete_set(table, set),
            Op::AddChain { table, chain } => self.add_chain(table, chain),
            Op::FlushChain { table, chain } => self.flush_chain(table, chain),
            Op::DeleteChain { table, chain } => self.delete_chain(table, chain),
            Op::AddAccess {
                table,
                chain,
                set,
                ip,
                dir,
                ports,
            } => self.add_access(table, chain, set, *ip, *dir, ports),
            Op::InsertJump {
                table,
                chain,
                target,
            } => self.insert_jump(table, chain, target),
            Op::DeleteRule {
                table,
                chain,
                handle,
            } => self.delete_rule(table, chain, *handle),
        }
    }

    // ---- sets

    /// One of the tool's address sets: an interval set (a range of addresses is one element
    /// pair) whose elements may time out, tagged.
    fn add_set(&mut self, table: &TableId, set: &str, ip: IpVersion) {
        let seq = self.next(format!("add set {table} {set}"));
        let ud = set_udata(Some(TAG));
        let spec = SetSpec {
            family: table.family.nfproto(),
            table: &table.name,
            name: set,
            flags: sys::NFT_SET_INTERVAL | sys::NFT_SET_TIMEOUT,
            key_type: match ip {
                IpVersion::V4 => sys::TYPE_IPADDR,
                IpVersion::V6 => sys::TYPE_IP6ADDR,
            },
            key_len: match ip {
                IpVersion::V4 => 4,
                IpVersion::V6 => 16,
            },
            id: Some(self.set_id()),
            userdata: &ud,
        };
        let flags = REQ | ACK | CREATE;
        sys::put_set(&mut self.batch.buf, sys::NFT_MSG_NEWSET, flags, seq, &spec);
    }

    fn add_elements(
        &mut self,
        table: &TableId,
        set: &str,
        addresses: &[IpAddr],
        timeout: Option<Duration>,
    ) {
        let ms = timeout.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64);
        let spec = SetSpec::named(table.family.nfproto(), &table.name, set);
        for chunk in addresses.chunks(ELEMS_PER_MSG) {
            let seq = self.next(format!("add elements to {table} {set}"));
            let elems: Vec<ElemSpec> = chunk.iter().flat_map(|a| address_elems(*a, ms)).collect();
            // No NLM_F_EXCL: an element already there gets its timeout refreshed.
            let flags = REQ | ACK | CREATE;
            sys::put_elems(
                &mut self.batch.buf,
                sys::NFT_MSG_NEWSETELEM,
                flags,
                seq,
                &spec,
                &elems,
            );
        }
    }

    fn flush_set(&mut self, table: &TableId, set: &str) {
        let seq = self.next(format!("flush set {table} {set}"));
        let spec = SetSpec::named(table.family.nfproto(), &table.name, set);
        // DELSETELEM without elements: the kernel flushes the set.
        let msg = sys::NFT_MSG_DELSETELEM;
        sys::put_elems(&mut self.batch.buf, msg, REQ | ACK, seq, &spec, &[]);
    }

    fn delete_set(&mut self, table: &TableId, set: &str) {
        let seq = self.next(format!("delete set {table} {set}"));
        let spec = SetSpec::named(table.family.nfproto(), &table.name, set);
        sys::put_set(
            &mut self.batch.buf,
            sys::NFT_MSG_DELSET,
            REQ | ACK,
            seq,
            &spec,
        );
    }

    // ---- chains

    fn add_chain(&mut self, table: &TableId, chain: &str) {
        let seq = self.next(format!("add chain {table} {chain}"));
        let ud = tag_udata(inspect::UDATA_CHAIN_COMMENT);
        let spec = ChainSpec {
            family: table.family.nfproto(),
            table: &table.name,
            name: chain,
            userdata: &ud,
        };
        let flags = REQ | ACK | CREATE;
        sys::put_chain(
            &mut self.batch.buf,
            sys::NFT_MSG_NEWCHAIN,
            flags,
            seq,
            &spec,
        );
    }

    fn flush_chain(&mut self, table: &TableId, chain: &str) {
        let seq = self.next(format!("flush chain {table} {chain}"));
        // DELRULE without a handle: the kernel deletes every rule of the chain.
        let spec = rule_in(table, chain);
        sys::put_rule(
            &mut self.batch.buf,
            sys::NFT_MSG_DELRULE,
            REQ | ACK,
            seq,
            &spec,
        );
    }

    fn delete_chain(&mut self, table: &TableId, chain: &str) {
        let seq = self.next(format!("delete chain {table} {chain}"));
        let spec = ChainSpec {
            family: table.family.nfproto(),
            table: &table.name,
            name: chain,
            userdata: &[],
        };
        sys::put_chain(
            &mut self.batch.buf,
            sys::NFT_MSG_DELCHAIN,
            REQ | ACK,
            seq,
            &spec,
        );
    }

    // ---- rules

    /// An access rule and its port set. The port list is an anonymous constant set, created in
    /// the batch and bound to the rule by its id, as nft does for `tcp dport { 22, 2222 }`.
    fn add_access(
        &mut self,
        table: &TableId,
        chain: &str,
        set: &str,
        ip: IpVersion,
        dir: Direction,
        ports: &[u16],
    ) {
        let ports_set = self.add_port_set(table, chain, ports);
        let seq = self.next(format!("add rule {table} {chain}"));
        let exprs = access_exprs(table.family, ip, dir, set, ports_set);
        // The tag, as on every object of the tool's: a rule `nft -f` made from the dry-run
        // script is then the tool's too.
        let mut ud = tag_udata(inspect::UDATA_RULE_COMMENT);
        let text = plan::access_rule_text(ip, dir, set, ports);
        inspect::udata_put_comment(&mut ud, inspect::UDATA_RULE_SIGNATURE, &text);
        let spec = RuleSpec {
            exprs: &exprs,
            userdata: &ud,
            ..rule_in(table, chain)
        };
        let flags = REQ | ACK | CREATE | APPEND;
        sys::put_rule(&mut self.batch.buf, sys::NFT_MSG_NEWRULE, flags, seq, &spec);
    }

    /// The anonymous set of a rule's ports, and its elements; returns the set's id.
    fn add_port_set(&mut self, table: &TableId, chain: &str, ports: &[u16]) -> u32 {
        let id = self.set_id();
        let seq = self.next(format!("add the port set of a rule in {table} {chain}"));
        let ud = set_udata(None);
        let spec = SetSpec {
            family: table.family.nfproto(),
            table: &table.name,
            name: ANON_SET,
            flags: sys::NFT_SET_ANONYMOUS | sys::NFT_SET_CONSTANT,
            key_type: sys::TYPE_INET_SERVICE,
            key_len: 2,
            id: Some(id),
            userdata: &ud,
        };
        let flags = REQ | ACK | CREATE;
        sys::put_set(&mut self.batch.buf, sys::NFT_MSG_NEWSET, flags, seq, &spec);
        for chunk in ports.chunks(ELEMS_PER_MSG) {
            let seq = self.next(format!("add the ports of a rule in {table} {chain}"));
            let elems: Vec<ElemSpec> = chunk
                .iter()
                .map(|p| ElemSpec {
                    key: p.to_be_bytes().to_vec(),
                    interval_end: false,
                    timeout_ms: None,
                })
                .collect();
            sys::put_elems(
                &mut self.batch.buf,
                sys::NFT_MSG_NEWSETELEM,
                flags,
                seq,
                &spec,
                &elems,
            );
        }
        id
    }

    /// The tool's jump, tagged, at the head of a base chain.
    fn insert_jump(&mut self, table: &TableId, chain: &str, target: &str) {
        let seq = self.next(format!("insert the jump into {table} {chain}"));
        let exprs = [Expr::Jump(target.into())];
        let ud = tag_udata(inspect::UDATA_RULE_COMMENT);
        let spec = RuleSpec {
            exprs: &exprs,
            userdata: &ud,
            ..rule_in(table, chain)
        };
        // Without NLM_F_APPEND and without a position, nf_tables_newrule links the rule at the
        // head of the chain: before the user's final drop and anything else.
        let flags = REQ | ACK | CREATE;
        sys::put_rule(&mut self.batch.buf, sys::NFT_MSG_NEWRULE, flags, seq, &spec);
    }

    fn delete_rule(&mut self, table: &TableId, chain: &str, handle: u64) {
        let seq = self.next(format!(
            "delete the jump (handle {handle}) from {table} {chain}"
        ));
        let spec = RuleSpec {
            handle: Some(handle),
            ..rule_in(table, chain)
        };
        sys::put_rule(
            &mut self.batch.buf,
            sys::NFT_MSG_DELRULE,
            REQ | ACK,
            seq,
            &spec,
        );
    }
}

/// Why a batch failed, with the message the kernel refused.
#[derive(Debug)]
pub struct BatchFailure {
    pub error: NlError,
    pub what: Option<String>,
}

/// Send the batch of `ops`, valid only at generation `genid`.
pub fn send(conn: &mut Conn, ops: &[Op], genid: u32, end: BatchEnd) -> Result<(), BatchFailure> {
    let batch = build(ops, genid, end);
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
    elements: SetElements,
    mut make_plan: impl FnMut(&Facts) -> anyhow::Result<Plan>,
    mode: Mode,
) -> anyhow::Result<Result<(Facts, Plan), BatchFailure>> {
    let end = BatchEnd::of_this_kernel();
    let mut last = None;
    for attempt in 0..MAX_ATTEMPTS {
        // Facts already read (still current, or the kernel refuses the batch and this reads
        // again) save the first dump.
        let read = match known.take() {
            Some(f) => Ok(f),
            None => inspect::read_facts(conn, &depth, elements),
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
        if mode == Mode::DryRun || plan.ops.is_empty() {
            return Ok(Ok((facts, plan)));
        }
        match send(conn, &plan.ops, facts.genid, end) {
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
        let t = TableId {
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
        let b = build(&ops, 1, BatchEnd::Unacked);
        assert_eq!(b.acks.len(), 4, "1000 addresses in chunks of 256");
        let bytes = b.buf.bytes();
        let mut read = 0;
        for m in crate::nlmsg::messages(bytes) {
            assert!(m.bytes.len() < 65_536, "message of {} bytes", m.bytes.len());
            read += (m.bytes.len() + 3) & !3;
        }
        assert_eq!(read, bytes.len());
    }

    #[test]
    fn a_batch_acks_every_message_and_names_it() {
        let t = TableId {
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
        let b = build(&ops, 42, BatchEnd::Acked);
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

    #[test]
    fn an_access_rule_comes_after_its_port_set_and_ports() {
        let t = TableId {
            family: Family::Ip,
            name: "fw".into(),
        };
        let ops = vec![Op::AddAccess {
            table: t,
            chain: "ovh_access".into(),
            set: "ovh_access_v4".into(),
            ip: IpVersion::V4,
            dir: Direction::In,
            ports: (1..=300).collect(),
        }];
        let b = build(&ops, 1, BatchEnd::Unacked);
        let what: Vec<&str> = b.what.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            what,
            [
                "add the port set of a rule in ip fw ovh_access",
                "add the ports of a rule in ip fw ovh_access",
                "add the ports of a rule in ip fw ovh_access",
                "add rule ip fw ovh_access",
            ]
        );
        assert_eq!(b.acks, vec![2, 3, 4, 5]);
    }
}
