//! The only unsafe code of the nftables backend: libnftnl (through `nftnl-sys`) builds and parses
//! the nf_tables netlink messages, and one `setsockopt` sets the socket's timeouts and buffer.
//! Everything here takes and returns plain Rust values; no raw pointer leaves this module.
//!
//! The safe `nftnl` crate cannot express what this backend needs (rule userdata, set element
//! timeouts, anonymous sets bound by id, delete-by-handle, parsing dumps), hence the raw calls.
use std::ffi::{c_void, CStr, CString};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nftnl::nftnl_sys as sys;

/// nf_tables message types (linux/netfilter/nf_tables.h, `enum nf_tables_msg_types`).
pub const NFT_MSG_GETTABLE: u16 = 1;
pub const NFT_MSG_NEWCHAIN: u16 = 3;
pub const NFT_MSG_GETCHAIN: u16 = 4;
pub const NFT_MSG_DELCHAIN: u16 = 5;
pub const NFT_MSG_NEWRULE: u16 = 6;
pub const NFT_MSG_GETRULE: u16 = 7;
pub const NFT_MSG_DELRULE: u16 = 8;
pub const NFT_MSG_NEWSET: u16 = 9;
pub const NFT_MSG_GETSET: u16 = 10;
pub const NFT_MSG_DELSET: u16 = 11;
pub const NFT_MSG_NEWSETELEM: u16 = 12;
pub const NFT_MSG_GETSETELEM: u16 = 13;
pub const NFT_MSG_DELSETELEM: u16 = 14;
pub const NFT_MSG_GETGEN: u16 = 16;

/// `enum nft_set_flags`.
pub const NFT_SET_ANONYMOUS: u32 = 0x1;
pub const NFT_SET_CONSTANT: u32 = 0x2;
pub const NFT_SET_INTERVAL: u32 = 0x4;
pub const NFT_SET_TIMEOUT: u32 = 0x10;
/// `NFT_SET_ELEM_INTERVAL_END`: the element closes the interval opened by the previous one.
pub const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;

/// nft's datatype ids (nftables src/datatype.h), which `nft list` uses to print set keys.
pub const TYPE_IPADDR: u32 = 7;
pub const TYPE_IP6ADDR: u32 = 8;
pub const TYPE_INET_SERVICE: u32 = 13;

/// `enum nft_meta_keys` and `enum nft_payload_bases`.
pub const NFT_META_NFPROTO: u32 = 15;
pub const NFT_META_L4PROTO: u32 = 16;
/// `meta protocol`: the link layer's ethertype, the dependency of an IP match in a netdev table.
pub const NFT_META_PROTOCOL: u32 = 1;
pub const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

/// Verdict codes (`NF_DROP`, `NF_ACCEPT`, `NFT_JUMP`, `NFT_GOTO`) as carried in an immediate
/// expression.
pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;
pub const NFT_JUMP: i32 = -3;
pub const NFT_GOTO: i32 = -4;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_CMP_EQ: u32 = 0;

/// One expression of a rule we write. Every one works on register 1, as nft's own do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: u32,
    },
    CmpEq {
        data: Vec<u8>,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    /// A named set, or an anonymous set created in the same batch (`set_id`).
    Lookup {
        set: String,
        set_id: Option<u32>,
    },
    Accept,
    Jump(String),
    /// `fib daddr type`: the route type of the destination address (RTN_LOCAL for this host).
    FibDaddrType,
}

/// `NFTA_FIB_F_DADDR` (`enum nft_fib_flags`) and `NFT_FIB_RESULT_ADDRTYPE`
/// (linux/netfilter/nf_tables.h).
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
/// `RTN_LOCAL` (linux/rtnetlink.h): an address of this host.
pub const RTN_LOCAL: u32 = 2;

/// A rule to add or delete.
#[derive(Debug, Clone)]
pub struct RuleSpec<'a> {
    pub family: u16,
    pub table: &'a str,
    pub chain: &'a str,
    pub handle: Option<u64>,
    pub exprs: &'a [Expr],
    pub userdata: &'a [u8],
}

/// A set to add or delete (or whose elements a message names).
#[derive(Debug, Clone)]
pub struct SetSpec<'a> {
    pub family: u16,
    pub table: &'a str,
    pub name: &'a str,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub id: Option<u32>,
    pub userdata: &'a [u8],
}

impl<'a> SetSpec<'a> {
    /// A set named only, as a message about an existing set (its elements, a get, a delete) says it.
    pub fn named(family: u16, table: &'a str, name: &'a str) -> SetSpec<'a> {
        SetSpec {
            family,
            table,
            name,
            flags: 0,
            key_type: 0,
            key_len: 0,
            id: None,
            userdata: &[],
        }
    }
}

/// One set element: a key, whether it closes an interval, its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElemSpec {
    pub key: Vec<u8>,
    pub interval_end: bool,
    pub timeout_ms: Option<u64>,
}

/// A growable buffer of netlink messages, 8-byte aligned as `nlmsghdr` requires.
#[derive(Default)]
pub struct MsgBuf {
    words: Vec<u64>,
    len: usize,
}

impl MsgBuf {
    pub fn new() -> MsgBuf {
        MsgBuf::default()
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// Append raw bytes (the hand-written batch begin/end messages).
    pub fn push_bytes(&mut self, data: &[u8]) {
        let at = self.reserve(data.len());
        self.tail_mut(at, data.len()).copy_from_slice(data);
        self.len = at + align4(data.len());
    }

    fn reserve(&mut self, extra: usize) -> usize {
        let need = self.len + extra + 8;
        if self.words.len() * 8 < need {
            self.words.resize(need.div_ceil(8), 0);
        }
        self.len
    }

    fn tail_mut(&mut self, at: usize, n: usize) -> &mut [u8] {
        // SAFETY: `reserve` made room for `n` bytes from `at`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>().add(at), n) }
    }

    /// Let `build` write one message at the end of the buffer, then keep `nlmsg_len` bytes.
    fn write_with(&mut self, build: impl FnOnce(*mut libc::c_char)) {
        let max = nftnl::nft_nlmsg_maxsize() as usize;
        let at = self.reserve(max);
        self.tail_mut(at, max).fill(0);
        // SAFETY: the buffer has `max` zeroed bytes at `at`, the most libnftnl writes per
        // message; `at` is a multiple of 4 and the storage is 8-aligned.
        let ptr = unsafe { self.words.as_mut_ptr().cast::<u8>().add(at) };
        build(ptr.cast());
        let len = u32::from_ne_bytes(self.tail_mut(at, 4).try_into().unwrap()) as usize;
        // The callers keep every message far below the reservation (apply::ELEMS_PER_MSG);
        // past it, memory was already overwritten and nothing can be trusted.
        assert!(
            len <= max,
            "netlink message of {len} bytes overran its {max}-byte buffer"
        );
        self.len = at + align4(len);
    }
}

/// An aligned receive buffer seen as bytes, as `mnl::Socket::recv_raw` wants it.
pub fn words_as_bytes(words: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(words);
    // SAFETY: same allocation and lifetime; u8 has no invalid bit patterns.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}

pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn cstring(s: &str) -> CString {
    // Names come from the kernel or from our constants; a NUL cannot occur in either.
    CString::new(s.replace('\0', "")).unwrap()
}

/// A header for `msg_type` (an `NFT_MSG_*`), then the payload of `obj`.
unsafe fn header(
    buf: *mut libc::c_char,
    msg_type: u16,
    family: u16,
    flags: u16,
    seq: u32,
) -> *mut libc::nlmsghdr {
    unsafe { sys::nftnl_nlmsg_build_hdr(buf, msg_type, family, flags, seq) }
}

/// Build one rule message (add or delete) at the end of `out`.
pub fn put_rule(out: &mut MsgBuf, msg_type: u16, flags: u16, seq: u32, spec: &RuleSpec<'_>) {
    out.write_with(|buf| unsafe {
        let r = sys::nftnl_rule_alloc();
        assert!(!r.is_null(), "out of memory");
        let table = cstring(spec.table);
        let chain = cstring(spec.chain);
        sys::nftnl_rule_set_u32(r, sys::NFTNL_RULE_FAMILY as u16, u32::from(spec.family));
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
        if let Some(h) = spec.handle {
            sys::nftnl_rule_set_u64(r, sys::NFTNL_RULE_HANDLE as u16, h);
        }
        if !spec.userdata.is_empty() {
            sys::nftnl_rule_set_data(
                r,
                sys::NFTNL_RULE_USERDATA as u16,
                spec.userdata.as_ptr().cast(),
                spec.userdata.len() as u32,
            );
        }
        for e in spec.exprs {
            sys::nftnl_rule_add_expr(r, build_expr(e));
        }
        let nlh = header(buf, msg_type, spec.family, flags, seq);
        sys::nftnl_rule_nlmsg_build_payload(nlh, r);
        sys::nftnl_rule_free(r);
    });
}

unsafe fn build_expr(e: &Expr) -> *mut sys::nftnl_expr {
    unsafe {
        let new = |name: &CStr| {
            let x = sys::nftnl_expr_alloc(name.as_ptr());
            assert!(!x.is_null(), "libnftnl has no {name:?} expression");
            x
        };
        match e {
            Expr::Meta { key } => {
                let x = new(c"meta");
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_META_KEY as u16, *key);
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_META_DREG as u16, NFT_REG_1);
                x
            }
            Expr::CmpEq { data } => {
                let x = new(c"cmp");
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_CMP_SREG as u16, NFT_REG_1);
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_CMP_OP as u16, NFT_CMP_EQ);
                sys::nftnl_expr_set(
                    x,
                    sys::NFTNL_EXPR_CMP_DATA as u16,
                    data.as_ptr().cast(),
                    data.len() as u32,
                );
                x
            }
            Expr::Payload { base, offset, len } => {
                let x = new(c"payload");
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_PAYLOAD_DREG as u16, NFT_REG_1);
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_PAYLOAD_BASE as u16, *base);
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_PAYLOAD_OFFSET as u16, *offset);
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_PAYLOAD_LEN as u16, *len);
                x
            }
            Expr::Lookup { set, set_id } => {
                let x = new(c"lookup");
                let name = cstring(set);
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_LOOKUP_SREG as u16, NFT_REG_1);
                sys::nftnl_expr_set_str(x, sys::NFTNL_EXPR_LOOKUP_SET as u16, name.as_ptr());
                if let Some(id) = set_id {
                    sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_LOOKUP_SET_ID as u16, *id);
                }
                x
            }
            Expr::Accept | Expr::Jump(_) => {
                let x = new(c"immediate");
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_IMM_DREG as u16, NFT_REG_VERDICT);
                if let Expr::Jump(chain) = e {
                    let chain = cstring(chain);
                    sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_IMM_VERDICT as u16, NFT_JUMP as u32);
                    sys::nftnl_expr_set_str(x, sys::NFTNL_EXPR_IMM_CHAIN as u16, chain.as_ptr());
                } else {
                    sys::nftnl_expr_set_u32(
                        x,
                        sys::NFTNL_EXPR_IMM_VERDICT as u16,
                        NF_ACCEPT as u32,
                    );
                }
                x
            }
            Expr::FibDaddrType => {
                let x = new(c"fib");
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_FIB_DREG as u16, NFT_REG_1);
                sys::nftnl_expr_set_u32(
                    x,
                    sys::NFTNL_EXPR_FIB_RESULT as u16,
                    NFT_FIB_RESULT_ADDRTYPE,
                );
                sys::nftnl_expr_set_u32(x, sys::NFTNL_EXPR_FIB_FLAGS as u16, NFTA_FIB_F_DADDR);
                x
            }
        }
    }
}

/// Build one chain message (a regular chain: no hook) at the end of `out`.
/// A regular chain to add or delete.
#[derive(Debug, Clone)]
pub struct ChainSpec<'a> {
    pub family: u16,
    pub table: &'a str,
    pub name: &'a str,
    pub userdata: &'a [u8],
}

pub fn put_chain(out: &mut MsgBuf, msg_type: u16, flags: u16, seq: u32, spec: &ChainSpec<'_>) {
    let ChainSpec {
        family,
        table,
        name,
        userdata,
    } = *spec;
    out.write_with(|buf| unsafe {
        let c = sys::nftnl_chain_alloc();
        assert!(!c.is_null(), "out of memory");
        let (t, n) = (cstring(table), cstring(name));
        sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_FAMILY as u16, u32::from(family));
        sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, t.as_ptr());
        sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_NAME as u16, n.as_ptr());
        if !userdata.is_empty() {
            sys::nftnl_chain_set_data(
                c,
                sys::NFTNL_CHAIN_USERDATA as u16,
                userdata.as_ptr().cast(),
                userdata.len() as u32,
            );
        }
        let nlh = header(buf, msg_type, family, flags, seq);
        sys::nftnl_chain_nlmsg_build_payload(nlh, c);
        sys::nftnl_chain_free(c);
    });
}

unsafe fn new_set(spec: &SetSpec<'_>) -> *mut sys::nftnl_set {
    unsafe {
        let s = sys::nftnl_set_alloc();
        assert!(!s.is_null(), "out of memory");
        let (t, n) = (cstring(spec.table), cstring(spec.name));
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, u32::from(spec.family));
        sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, t.as_ptr());
        sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, n.as_ptr());
        if let Some(id) = spec.id {
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_ID as u16, id);
        }
        s
    }
}

/// Build one set message (add or delete) at the end of `out`.
pub fn put_set(out: &mut MsgBuf, msg_type: u16, flags: u16, seq: u32, spec: &SetSpec<'_>) {
    out.write_with(|buf| unsafe {
        let s = new_set(spec);
        if msg_type == NFT_MSG_NEWSET {
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FLAGS as u16, spec.flags);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_TYPE as u16, spec.key_type);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_LEN as u16, spec.key_len);
            if !spec.userdata.is_empty() {
                sys::nftnl_set_set_data(
                    s,
                    sys::NFTNL_SET_USERDATA as u16,
                    spec.userdata.as_ptr().cast(),
                    spec.userdata.len() as u32,
                );
            }
        }
        let nlh = header(buf, msg_type, spec.family, flags, seq);
        sys::nftnl_set_nlmsg_build_payload(nlh, s);
        sys::nftnl_set_free(s);
    });
}

/// Build one element message at the end of `out`: NEWSETELEM with `elems`, or DELSETELEM with
/// no elements, which the kernel takes as "flush the set" (nf_tables_delsetelem).
pub fn put_elems(
    out: &mut MsgBuf,
    msg_type: u16,
    flags: u16,
    seq: u32,
    set: &SetSpec<'_>,
    elems: &[ElemSpec],
) {
    out.write_with(|buf| unsafe {
        let s = new_set(set);
        for e in elems {
            let x = sys::nftnl_set_elem_alloc();
            assert!(!x.is_null(), "out of memory");
            sys::nftnl_set_elem_set(
                x,
                sys::NFTNL_SET_ELEM_KEY as u16,
                e.key.as_ptr().cast(),
                e.key.len() as u32,
            );
            if e.interval_end {
                sys::nftnl_set_elem_set_u32(
                    x,
                    sys::NFTNL_SET_ELEM_FLAGS as u16,
                    NFT_SET_ELEM_INTERVAL_END,
                );
            }
            if let Some(ms) = e.timeout_ms {
                sys::nftnl_set_elem_set_u64(x, sys::NFTNL_SET_ELEM_TIMEOUT as u16, ms);
            }
            sys::nftnl_set_elem_add(s, x);
        }
        let nlh = header(buf, msg_type, set.family, flags, seq);
        sys::nftnl_set_elems_nlmsg_build_payload(nlh, s);
        sys::nftnl_set_free(s);
    });
}

/// A dump request (`NLM_F_DUMP`) for tables, chains, sets or the generation; rules are asked
/// with [`put_rule_dump`], elements with [`put_elem_dump`].
pub fn put_request(out: &mut MsgBuf, msg_type: u16, flags: u16, seq: u32) {
    out.write_with(|buf| unsafe {
        header(buf, msg_type, libc::NFPROTO_UNSPEC as u16, flags, seq);
    });
}

/// A rule dump limited to one chain: nf_tables_dump_rules_start filters on the table and chain
/// attributes, so only that chain's rules cross the socket.
pub fn put_rule_dump(out: &mut MsgBuf, seq: u32, family: u16, table: &str, chain: &str) {
    out.write_with(|buf| unsafe {
        let r = sys::nftnl_rule_alloc();
        assert!(!r.is_null(), "out of memory");
        let (t, c) = (cstring(table), cstring(chain));
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, t.as_ptr());
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, c.as_ptr());
        let nlh = header(
            buf,
            NFT_MSG_GETRULE,
            family,
            (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
            seq,
        );
        sys::nftnl_rule_nlmsg_build_payload(nlh, r);
        sys::nftnl_rule_free(r);
    });
}

/// A dump of one set's elements.
pub fn put_elem_dump(out: &mut MsgBuf, seq: u32, family: u16, table: &str, set: &str) {
    out.write_with(|buf| unsafe {
        let spec = SetSpec::named(family, table, set);
        let s = new_set(&spec);
        let nlh = header(
            buf,
            NFT_MSG_GETSETELEM,
            family,
            (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
            seq,
        );
        sys::nftnl_set_elems_nlmsg_build_payload(nlh, s);
        sys::nftnl_set_free(s);
    });
}

// ---- parsing ----------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMsg {
    pub family: u16,
    pub name: String,
    pub handle: u64,
    /// `NFT_TABLE_F_*`
    pub flags: u32,
    /// The netlink port id of the process that owns the table (NFTA_TABLE_OWNER).
    pub owner: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainMsg {
    pub family: u16,
    pub table: String,
    pub name: String,
    pub handle: u64,
    pub hook: Option<u32>,
    pub priority: i32,
    pub chain_type: String,
    pub policy: Option<u32>,
    pub use_count: u32,
    pub userdata: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMsg {
    pub family: u16,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    /// Expression names in order (`immediate`, `match`, `target`, ...).
    pub exprs: Vec<String>,
    /// The chain of a jump or goto verdict, when the rule has one.
    pub jump_to: Option<String>,
    /// The rule can end the packet: a drop verdict or a reject.
    pub drops: bool,
    pub userdata: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMsg {
    pub family: u16,
    pub table: String,
    pub name: String,
    pub handle: u64,
    pub flags: u32,
    pub key_type: u32,
    pub userdata: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElemMsg {
    pub key: Vec<u8>,
    pub interval_end: bool,
    pub timeout_ms: Option<u64>,
    pub expires_ms: Option<u64>,
}

fn check_msg(msg: &[u8]) -> *const libc::nlmsghdr {
    assert!(
        msg.len() >= 16 && (msg.as_ptr() as usize) % 4 == 0,
        "misaligned netlink message"
    );
    msg.as_ptr().cast()
}

unsafe fn opt_str(p: *const libc::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

unsafe fn data(p: *const c_void, len: u32) -> Vec<u8> {
    if p.is_null() {
        Vec::new()
    } else {
        unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) }.to_vec()
    }
}

pub fn parse_table(msg: &[u8]) -> Option<TableMsg> {
    let nlh = check_msg(msg);
    unsafe {
        let t = sys::nftnl_table_alloc();
        assert!(!t.is_null(), "out of memory");
        let out = (sys::nftnl_table_nlmsg_parse(nlh, t) >= 0).then(|| TableMsg {
            family: sys::nftnl_table_get_u32(t, sys::NFTNL_TABLE_FAMILY as u16) as u16,
            name: opt_str(sys::nftnl_table_get_str(t, sys::NFTNL_TABLE_NAME as u16)),
            handle: sys::nftnl_table_get_u64(t, sys::NFTNL_TABLE_HANDLE as u16),
            flags: sys::nftnl_table_get_u32(t, sys::NFTNL_TABLE_FLAGS as u16),
            owner: table_owner(msg),
        });
        sys::nftnl_table_free(t);
        out
    }
}

/// NFTA_TABLE_OWNER, read from the attributes directly: libnftnl before 1.2 does not parse it.
/// Layout: nlmsghdr (16 bytes), nfgenmsg (4), then attributes of (len u16, type u16, value)
/// aligned to 4; the owner is a big-endian u32 (nf_tables_fill_table_info).
fn table_owner(msg: &[u8]) -> Option<u32> {
    const NFTA_TABLE_OWNER: u16 = 7;
    let total = (u32::from_ne_bytes(msg.get(..4)?.try_into().ok()?) as usize).min(msg.len());
    let mut at = 20;
    while at + 4 <= total {
        let len = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
        let ty = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) & 0x3fff;
        if len < 4 || at + len > total {
            return None;
        }
        if ty == NFTA_TABLE_OWNER && len == 8 {
            return Some(u32::from_be_bytes(msg[at + 4..at + 8].try_into().ok()?));
        }
        at += (len + 3) & !3;
    }
    None
}

pub fn parse_chain(msg: &[u8]) -> Option<ChainMsg> {
    let nlh = check_msg(msg);
    unsafe {
        let c = sys::nftnl_chain_alloc();
        assert!(!c.is_null(), "out of memory");
        let is = |a: u32| sys::nftnl_chain_is_set(c, a as u16);
        let out = (sys::nftnl_chain_nlmsg_parse(nlh, c) >= 0).then(|| {
            let mut len = 0u32;
            let ud = sys::nftnl_chain_get_data(c, sys::NFTNL_CHAIN_USERDATA as u16, &mut len);
            ChainMsg {
                family: sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_FAMILY as u16) as u16,
                table: opt_str(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TABLE as u16)),
                name: opt_str(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_NAME as u16)),
                handle: sys::nftnl_chain_get_u64(c, sys::NFTNL_CHAIN_HANDLE as u16),
                hook: is(sys::NFTNL_CHAIN_HOOKNUM)
                    .then(|| sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16)),
                priority: sys::nftnl_chain_get_s32(c, sys::NFTNL_CHAIN_PRIO as u16),
                chain_type: opt_str(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TYPE as u16)),
                policy: is(sys::NFTNL_CHAIN_POLICY)
                    .then(|| sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_POLICY as u16)),
                use_count: sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_USE as u16),
                userdata: data(ud, len),
            }
        });
        sys::nftnl_chain_free(c);
        out
    }
}

pub fn parse_rule(msg: &[u8]) -> Option<RuleMsg> {
    let nlh = check_msg(msg);
    unsafe {
        let r = sys::nftnl_rule_alloc();
        assert!(!r.is_null(), "out of memory");
        let out = (sys::nftnl_rule_nlmsg_parse(nlh, r) >= 0).then(|| {
            let mut exprs = Vec::new();
            let mut jump_to = None;
            let mut drops = false;
            let it = sys::nftnl_expr_iter_create(r);
            if !it.is_null() {
                loop {
                    let e = sys::nftnl_expr_iter_next(it);
                    if e.is_null() {
                        break;
                    }
                    let name = opt_str(sys::nftnl_expr_get_str(e, sys::NFTNL_EXPR_NAME as u16));
                    let verdict = name == "immediate"
                        && sys::nftnl_expr_is_set(e, sys::NFTNL_EXPR_IMM_VERDICT as u16);
                    if verdict
                        && sys::nftnl_expr_get_u32(e, sys::NFTNL_EXPR_IMM_VERDICT as u16) as i32
                            == NF_DROP
                    {
                        drops = true;
                    }
                    drops |= name == "reject";
                    if name == "immediate"
                        && sys::nftnl_expr_is_set(e, sys::NFTNL_EXPR_IMM_CHAIN as u16)
                    {
                        let v =
                            sys::nftnl_expr_get_u32(e, sys::NFTNL_EXPR_IMM_VERDICT as u16) as i32;
                        if v == NFT_JUMP || v == NFT_GOTO {
                            jump_to = Some(opt_str(sys::nftnl_expr_get_str(
                                e,
                                sys::NFTNL_EXPR_IMM_CHAIN as u16,
                            )));
                        }
                    }
                    exprs.push(name);
                }
                sys::nftnl_expr_iter_destroy(it);
            }
            let mut len = 0u32;
            let ud = sys::nftnl_rule_get_data(r, sys::NFTNL_RULE_USERDATA as u16, &mut len);
            RuleMsg {
                family: sys::nftnl_rule_get_u32(r, sys::NFTNL_RULE_FAMILY as u16) as u16,
                table: opt_str(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_TABLE as u16)),
                chain: opt_str(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_CHAIN as u16)),
                handle: sys::nftnl_rule_get_u64(r, sys::NFTNL_RULE_HANDLE as u16),
                exprs,
                jump_to,
                drops,
                userdata: data(ud, len),
            }
        });
        sys::nftnl_rule_free(r);
        out
    }
}

pub fn parse_set(msg: &[u8]) -> Option<SetMsg> {
    let nlh = check_msg(msg);
    unsafe {
        let s = sys::nftnl_set_alloc();
        assert!(!s.is_null(), "out of memory");
        let out = (sys::nftnl_set_nlmsg_parse(nlh, s) >= 0).then(|| {
            let mut len = 0u32;
            let ud = sys::nftnl_set_get_data(s, sys::NFTNL_SET_USERDATA as u16, &mut len);
            SetMsg {
                family: sys::nftnl_set_get_u32(s, sys::NFTNL_SET_FAMILY as u16) as u16,
                table: opt_str(sys::nftnl_set_get_str(s, sys::NFTNL_SET_TABLE as u16)),
                name: opt_str(sys::nftnl_set_get_str(s, sys::NFTNL_SET_NAME as u16)),
                handle: sys::nftnl_set_get_u64(s, sys::NFTNL_SET_HANDLE as u16),
                flags: sys::nftnl_set_get_u32(s, sys::NFTNL_SET_FLAGS as u16),
                key_type: sys::nftnl_set_get_u32(s, sys::NFTNL_SET_KEY_TYPE as u16),
                userdata: data(ud, len),
            }
        });
        sys::nftnl_set_free(s);
        out
    }
}

pub fn parse_elems(msg: &[u8]) -> Vec<ElemMsg> {
    let nlh = check_msg(msg);
    let mut out = Vec::new();
    unsafe {
        let s = sys::nftnl_set_alloc();
        assert!(!s.is_null(), "out of memory");
        if sys::nftnl_set_elems_nlmsg_parse(nlh, s) >= 0 {
            let it = sys::nftnl_set_elems_iter_create(s);
            if !it.is_null() {
                loop {
                    let e = sys::nftnl_set_elems_iter_next(it);
                    if e.is_null() {
                        break;
                    }
                    let is = |a: u32| sys::nftnl_set_elem_is_set(e, a as u16);
                    let mut len = 0u32;
                    let key = sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_KEY as u16, &mut len);
                    let flags = if is(sys::NFTNL_SET_ELEM_FLAGS) {
                        sys::nftnl_set_elem_get_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16)
                    } else {
                        0
                    };
                    out.push(ElemMsg {
                        key: data(key, len),
                        interval_end: flags & NFT_SET_ELEM_INTERVAL_END != 0,
                        timeout_ms: is(sys::NFTNL_SET_ELEM_TIMEOUT).then(|| {
                            sys::nftnl_set_elem_get_u64(e, sys::NFTNL_SET_ELEM_TIMEOUT as u16)
                        }),
                        expires_ms: is(sys::NFTNL_SET_ELEM_EXPIRATION).then(|| {
                            sys::nftnl_set_elem_get_u64(e, sys::NFTNL_SET_ELEM_EXPIRATION as u16)
                        }),
                    });
                }
                sys::nftnl_set_elems_iter_destroy(it);
            }
        }
        sys::nftnl_set_free(s);
    }
    out
}

/// NFTA_GEN_ID of a NEWGEN reply.
pub fn parse_gen(msg: &[u8]) -> Option<u32> {
    let nlh = check_msg(msg);
    unsafe {
        let g = sys::nftnl_gen_alloc();
        assert!(!g.is_null(), "out of memory");
        let out = (sys::nftnl_gen_nlmsg_parse(nlh, g) >= 0)
            .then(|| sys::nftnl_gen_get_u32(g, sys::NFTNL_GEN_ID as u16));
        sys::nftnl_gen_free(g);
        out
    }
}

// ---- socket options ---------------------------------------------------------------------------

/// Receive timeout: a reply that never comes (an aborted batch on kernels ≥ 6.10 sends no ACK
/// for BATCH_END) must not hang the tool.
pub fn set_recv_timeout(sock: &mnl::Socket, t: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    setsockopt(sock, libc::SO_RCVTIMEO, &tv)
}

/// A batch is one sendmsg: netlink_sendmsg refuses anything above the socket's send buffer, so
/// it is raised to the batch's size (SO_SNDBUFFORCE needs CAP_NET_ADMIN, which we have anyway;
/// nft does the same in mnl_set_sndbuffer).
pub fn set_send_buffer(sock: &mnl::Socket, bytes: usize) -> io::Result<()> {
    let n: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
    setsockopt(sock, libc::SO_SNDBUFFORCE, &n)
}

/// A large receive buffer so a dump of a big chain arrives without ENOBUFS.
pub fn set_recv_buffer(sock: &mnl::Socket, bytes: usize) -> io::Result<()> {
    let n: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
    setsockopt(sock, libc::SO_RCVBUFFORCE, &n)
}

fn setsockopt<T>(sock: &mnl::Socket, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_message_round_trips_through_libnftnl() {
        let mut b = MsgBuf::new();
        let exprs = [Expr::Jump("ovh_access".into())];
        let ud = [0u8, 3, b'a', b'b', 0];
        put_rule(
            &mut b,
            NFT_MSG_NEWRULE,
            libc::NLM_F_REQUEST as u16,
            7,
            &RuleSpec {
                family: libc::NFPROTO_INET as u16,
                table: "filter",
                chain: "input",
                handle: None,
                exprs: &exprs,
                userdata: &ud,
            },
        );
        let r = parse_rule(b.bytes()).expect("parse");
        assert_eq!((r.table.as_str(), r.chain.as_str()), ("filter", "input"));
        assert_eq!(r.exprs, vec!["immediate".to_string()]);
        assert_eq!(r.jump_to.as_deref(), Some("ovh_access"));
        assert_eq!(r.userdata, ud);
        assert_eq!(b.bytes().len() % 4, 0);
    }
}
