//! The only unsafe code of the nftables backend: libnftnl (through `nftnl-sys`) builds and parses
//! the nf_tables netlink messages, and one `setsockopt` sets the socket's timeouts and buffer.
//! Everything here takes and returns plain Rust values; no raw pointer leaves this module.
//!
//! The safe `nftnl` crate cannot express what this backend needs (rule userdata, set element
//! timeouts, anonymous sets bound by id, delete-by-handle, parsing dumps), hence the raw calls.
//!
//! `buf` is the aligned message buffer; `encode` writes requests (objects to add or delete,
//! dumps to ask for); `decode` reads the kernel's answers; `sockopt` tunes the socket.
mod buf;
mod decode;
mod encode;
mod sockopt;

pub use buf::{words_as_bytes, MsgBuf};
pub use decode::{
    parse_chain, parse_elems, parse_gen, parse_rule, parse_set, parse_table, ChainMsg, TableMsg,
};
pub use encode::{
    put_chain, put_elem_dump, put_elems, put_request, put_rule, put_rule_dump, put_set, ChainSpec,
    ElemSpec, Expr, RuleSpec, SetSpec,
};
pub use sockopt::{set_recv_buffer, set_recv_timeout, set_send_buffer};

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

/// `RTN_LOCAL` (linux/rtnetlink.h): an address of this host.
pub const RTN_LOCAL: u32 = 2;
