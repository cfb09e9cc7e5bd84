//! Answers: the kernel's messages about tables, chains, rules, sets, elements and the
//! generation, read by libnftnl into plain values with only what the read side uses.
use std::ffi::{c_void, CStr};

use nftnl::nftnl_sys as sys;

use super::{NFT_GOTO, NFT_JUMP, NFT_SET_ELEM_INTERVAL_END, NF_DROP};

/// A table message as the kernel sent it, not a table as the planner sees it (that is
/// `inspect::TableFacts`, which this becomes): the family is still the raw `NFPROTO_*` number,
/// which may be one the tool has no [`Family`](super::super::family::Family) for and skips; the
/// flags are the raw `NFT_TABLE_F_*` bits; the owner is a netlink port id, not yet a process.
/// Like the other `*Msg` types it is the decoding of one message, kept apart so that nothing
/// outside `sys` sees libnftnl's attributes and nothing inside it interprets them.
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

/// A chain message as the kernel sent it (raw family, hook number and policy).
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

/// A rule message, its expressions reduced to their names and the verdicts the planner needs.
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

/// A set message as the kernel sent it (no elements: those come in their own messages).
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

/// One set element of an element message.
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

#[cfg(test)]
mod tests {
    use super::super::encode::{put_chain, put_elems, put_rule, put_set, ChainSpec, ElemSpec};
    use super::super::encode::{Expr, RuleSpec, SetSpec};
    use super::super::{MsgBuf, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE, NFT_MSG_NEWSET};
    use super::super::{NFT_MSG_NEWSETELEM, NFT_SET_INTERVAL, TYPE_IPADDR};
    use super::*;

    const NFT_MSG_NEWTABLE: u16 = 0;
    const NFNL_SUBSYS_NFTABLES: u16 = 10;

    /// A NEWTABLE message as nf_tables_fill_table_info writes it: the name, the flags and,
    /// when `owner` is given, NFTA_TABLE_OWNER.
    fn table_message(name: &str, flags: u32, owner: Option<u32>) -> MsgBuf {
        fn attr(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
            out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
            out.extend_from_slice(&ty.to_ne_bytes());
            out.extend_from_slice(value);
            out.resize(align4(out.len()), 0);
        }
        let mut m = vec![0u8; 16];
        m.extend_from_slice(&[libc::NFPROTO_INET as u8, 0, 0, 0]);
        let mut cname = name.as_bytes().to_vec();
        cname.push(0);
        attr(&mut m, 1, &cname);
        attr(&mut m, 2, &flags.to_be_bytes());
        if let Some(o) = owner {
            attr(&mut m, 7, &o.to_be_bytes());
        }
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE;
        m[4..6].copy_from_slice(&ty.to_ne_bytes());
        let mut b = MsgBuf::new();
        b.push_bytes(&m);
        b
    }

    fn align4(n: usize) -> usize {
        super::super::buf::align4(n)
    }

    #[test]
    fn a_table_message_gives_its_owner_port_id() {
        let owned = table_message("firewalld", 0x2, Some(812));
        let t = parse_table(owned.bytes()).expect("parse");
        assert_eq!(t.family, libc::NFPROTO_INET as u16);
        assert_eq!(
            (t.name.as_str(), t.flags, t.owner),
            ("firewalld", 0x2, Some(812))
        );
        let plain = table_message("filter", 0, None);
        assert_eq!(parse_table(plain.bytes()).expect("parse").owner, None);
        // An attribute whose length runs past the message ends the walk with no owner.
        let mut cut = owned.bytes().to_vec();
        let at = cut.len() - 8;
        cut[at..at + 2].copy_from_slice(&64u16.to_ne_bytes());
        assert_eq!(table_owner(&cut), None);
    }

    #[test]
    fn a_chain_message_round_trips_through_libnftnl() {
        let mut b = MsgBuf::new();
        let ud = [0u8, 3, b'a', b'b', 0];
        let spec = ChainSpec {
            family: libc::NFPROTO_IPV4 as u16,
            table: "filter",
            name: "ovh_access",
            userdata: &ud,
        };
        put_chain(
            &mut b,
            NFT_MSG_NEWCHAIN,
            libc::NLM_F_REQUEST as u16,
            3,
            &spec,
        );
        let c = parse_chain(b.bytes()).expect("parse");
        assert_eq!(c.family, libc::NFPROTO_IPV4 as u16);
        assert_eq!(
            (c.table.as_str(), c.name.as_str()),
            ("filter", "ovh_access")
        );
        assert_eq!(
            (c.hook, c.policy),
            (None, None),
            "a regular chain has no hook"
        );
        assert_eq!(c.userdata, ud);
    }

    #[test]
    fn set_and_element_messages_round_trip_through_libnftnl() {
        let mut b = MsgBuf::new();
        let ud = [7u8, 2, b'x', 0];
        let spec = SetSpec {
            flags: NFT_SET_INTERVAL,
            key_type: TYPE_IPADDR,
            key_len: 4,
            id: Some(1),
            userdata: &ud,
            ..SetSpec::named(libc::NFPROTO_INET as u16, "filter", "ovh_access_v4")
        };
        put_set(&mut b, NFT_MSG_NEWSET, libc::NLM_F_REQUEST as u16, 4, &spec);
        let s = parse_set(b.bytes()).expect("parse");
        assert_eq!(
            (s.table.as_str(), s.name.as_str()),
            ("filter", "ovh_access_v4")
        );
        assert_eq!((s.flags, s.key_type), (NFT_SET_INTERVAL, TYPE_IPADDR));
        assert_eq!(s.userdata, ud);

        // One element per message: libnftnl numbers the nested elements it writes 1, 2, ...
        // but reads back only NFTA_LIST_ELEM (1), the type the kernel's dumps use.
        for e in [
            ElemSpec {
                key: vec![192, 0, 2, 1],
                interval_end: false,
                timeout_ms: Some(60_000),
            },
            ElemSpec {
                key: vec![192, 0, 2, 2],
                interval_end: true,
                timeout_ms: None,
            },
        ] {
            let mut b = MsgBuf::new();
            put_elems(
                &mut b,
                NFT_MSG_NEWSETELEM,
                0,
                5,
                &spec,
                std::slice::from_ref(&e),
            );
            let want = ElemMsg {
                key: e.key.clone(),
                interval_end: e.interval_end,
                timeout_ms: e.timeout_ms,
                expires_ms: None,
            };
            assert_eq!(parse_elems(b.bytes()), vec![want]);
        }
    }

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
