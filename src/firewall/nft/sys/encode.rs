//! Requests: one nf_tables message per object to add or delete (rules with their expressions,
//! regular chains, sets, set elements) and the dump and get requests of the read side, each
//! written by libnftnl at the end of a [`MsgBuf`].
use std::ffi::{CStr, CString};

use nftnl::nftnl_sys as sys;

use super::buf::MsgBuf;
use super::{
    NFT_JUMP, NFT_MSG_GETRULE, NFT_MSG_GETSETELEM, NFT_MSG_NEWSET, NFT_SET_ELEM_INTERVAL_END,
    NF_ACCEPT,
};

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

/// A regular chain (no hook) to add or delete.
#[derive(Debug, Clone)]
pub struct ChainSpec<'a> {
    pub family: u16,
    pub table: &'a str,
    pub name: &'a str,
    pub userdata: &'a [u8],
}

/// Build one chain message at the end of `out`.
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
