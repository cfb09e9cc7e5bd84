//! The TCP sockets of the calling thread's network namespace, asked from the kernel over
//! NETLINK_SOCK_DIAG (net/ipv4/inet_diag.c), with /proc/net/tcp{,6} as the fallback (and the
//! source a test's fake /proc tree gives): the listeners sshd holds (`sshd::live`), the support's
//! connections (`sessions`).
//!
//! Why not just the /proc files: their seq_file walks the kernel's whole established hash
//! (262 144 buckets on a 24 GiB machine, ~1.7 ms) for every read that crosses a page and again
//! for the read that finds the end, so a namespace with no connection at all costs four walks
//! for the two files. One sock_diag dump walks it once for both families, and a dump of
//! listening sockets only never walks it (`inet_diag_dump_icsk` skips the established hash when
//! the state mask has nothing but LISTEN). Dump messages come in buffers of at most 32 KiB
//! (netlink_dump), which the 64 KiB receive buffer holds whole.
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use rustix::net::{
    bind, netlink, recv, sendto, socket_with, sockopt, AddressFamily, RecvFlags, SendFlags,
    SocketFlags, SocketType,
};

use crate::nlmsg::{messages, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN};

/// One TCP socket, from sock_diag or from a line of /proc/net/tcp or tcp6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEntry {
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// The `st` column: include/net/tcp_states.h (`01` established, `0A` listen).
    pub state: u8,
    pub inode: u64,
}

/// TCP_ESTABLISHED in include/net/tcp_states.h.
pub const TCP_ESTABLISHED: u8 = 0x01;
/// TCP_LISTEN in include/net/tcp_states.h.
pub const TCP_LISTEN: u8 = 0x0A;

/// Parse the text of /proc/net/tcp or /proc/net/tcp6 (net/ipv4/tcp_ipv4.c `get_tcp4_sock()`,
/// net/ipv6/tcp_ipv6.c `get_tcp6_sock()`: addresses are the raw `__be32` words printed with
/// `%08X`, i.e. in host byte order; ports and the state in hex). Lines that do not parse are
/// skipped: the header, and whatever a future kernel may add.
pub fn parse_tcp_table(text: &str) -> Vec<TcpEntry> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Some(local), Some(remote), Ok(state), Ok(inode)) = (
            endpoint(f[1]),
            endpoint(f[2]),
            u8::from_str_radix(f[3], 16),
            f[9].parse::<u64>(),
        ) else {
            continue;
        };
        out.push(TcpEntry {
            local,
            remote,
            state,
            inode,
        });
    }
    out
}

/// `0100007F:0016`: an address (8 or 32 hex digits) and a port.
fn endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = s.split_once(':')?;
    Some((hex_addr(a)?, u16::from_str_radix(p, 16).ok()?))
}

fn hex_addr(s: &str) -> Option<IpAddr> {
    let word = |w: &str| u32::from_str_radix(w, 16).ok().map(|v| v.to_ne_bytes());
    match s.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(s)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(&s[i * 8..i * 8 + 8])?);
            }
            let v6 = Ipv6Addr::from(b);
            Some(IpAddr::V6(v6))
        }
        _ => None,
    }
}

/// Which TCP states a dump returns (bit `1 << state`, as `idiag_states`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct States(u32);

impl States {
    pub const LISTEN: States = States(1 << TCP_LISTEN);
    pub const ESTABLISHED: States = States(1 << TCP_ESTABLISHED);

    pub const fn and(self, other: States) -> States {
        States(self.0 | other.0)
    }

    fn has(self, state: u8) -> bool {
        state < 32 && self.0 & (1 << state) != 0
    }
}

/// How long the kernel may take to answer one recv of the dump.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h) and `TCPDIAG_GETSOCK` (linux/inet_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCPDIAG_GETSOCK: u16 = 18;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `struct inet_diag_msg` (linux/inet_diag.h): family, state, timer, retrans, the 48-byte
/// `inet_diag_sockid`, then expires, rqueue, wqueue, uid and inode.
const INET_DIAG_MSG_LEN: usize = 72;
const IPPROTO_TCP: u8 = 6;

/// The TCP sockets in `states` of `proc_dir`'s view: for the live `/proc`, the kernel's answer
/// (the text tables when sock_diag is not there: a kernel without inet_diag, a seccomp profile
/// that refuses netlink); for any other tree (a test's), its text tables.
pub fn tcp_sockets(proc_dir: &Path, states: States) -> io::Result<Vec<TcpEntry>> {
    if proc_dir == Path::new("/proc") {
        if let Ok(v) = dump(states) {
            return Ok(v);
        }
    }
    from_text(proc_dir, states)
}

/// Both text tables of `proc_dir/thread-self/net`, filtered to `states`. A missing tcp6 is a
/// kernel without IPv6, not an error.
fn from_text(proc_dir: &Path, states: States) -> io::Result<Vec<TcpEntry>> {
    let mut out = Vec::new();
    for (file, optional) in [("tcp", false), ("tcp6", true)] {
        let path = proc_dir.join("thread-self/net").join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => out.extend(
                parse_tcp_table(&text)
                    .into_iter()
                    .filter(|e| states.has(e.state)),
            ),
            Err(e) if optional && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
        }
    }
    Ok(out)
}

/// A dump of every family in one walk, the older `TCPDIAG_GETSOCK` request (its handler asks
/// for `AF_UNSPEC`, inet_diag_dump_compat()); a kernel that refuses it gets one request per
/// family.
fn dump(states: States) -> io::Result<Vec<TcpEntry>> {
    let sock = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    bind(&sock, &netlink::SocketAddrNetlink::new(0, 0))?;
    sockopt::set_socket_timeout(&sock, sockopt::Timeout::Recv, Some(RECV_TIMEOUT))?;
    let mut buf = vec![0u8; 64 * 1024];
    if let Ok(v) = exchange(&sock, &request(Query::EveryFamily, states, 1), &mut buf) {
        return Ok(v);
    }
    let mut out = exchange(&sock, &request(Query::Family(AF_INET), states, 2), &mut buf)?;
    out.extend(exchange(
        &sock,
        &request(Query::Family(AF_INET6), states, 3),
        &mut buf,
    )?);
    Ok(out)
}

/// Send one dump request and read its answer to NLMSG_DONE.
fn exchange(sock: &OwnedFd, req: &Request, buf: &mut [u8]) -> io::Result<Vec<TcpEntry>> {
    sendto(
        sock,
        &req.bytes,
        SendFlags::empty(),
        &netlink::SocketAddrNetlink::new(0, 0),
    )?;
    let mut out = Vec::new();
    loop {
        let (n, _) = recv(sock, &mut buf[..], RecvFlags::empty())?;
        if n == 0 {
            return Err(io::Error::other("sock_diag dump ended without NLMSG_DONE"));
        }
        for m in messages(&buf[..n]).filter(|m| m.seq == req.seq) {
            match m.ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => return Err(io::Error::from_raw_os_error(m.error_code())),
                ty if ty == req.ty => out.extend(parse_diag_msg(m.payload())),
                _ => {}
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Query {
    /// `TCPDIAG_GETSOCK` with `struct inet_diag_req`.
    EveryFamily,
    /// `SOCK_DIAG_BY_FAMILY` with `struct inet_diag_req_v2`.
    Family(u8),
}

struct Request {
    bytes: Vec<u8>,
    ty: u16,
    seq: u32,
}

/// A dump request with an all-zero socket id (every socket); the answers carry its type.
fn request(q: Query, states: States, seq: u32) -> Request {
    // inet_diag_req: family, src_len, dst_len, ext, the 48-byte id, states, dbs.
    // inet_diag_req_v2: family, protocol, ext, pad, states, the 48-byte id.
    let (ty, body_len, head) = match q {
        Query::EveryFamily => (TCPDIAG_GETSOCK, 60, [0u8, 0, 0, 0]),
        Query::Family(f) => (SOCK_DIAG_BY_FAMILY, 56, [f, IPPROTO_TCP, 0, 0]),
    };
    let len = NLMSG_HDRLEN + body_len;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&head);
    m.resize(len, 0);
    let states_at = match q {
        Query::EveryFamily => NLMSG_HDRLEN + 52,
        Query::Family(_) => NLMSG_HDRLEN + 4,
    };
    m[states_at..states_at + 4].copy_from_slice(&states.0.to_ne_bytes());
    Request { bytes: m, ty, seq }
}

/// One `inet_diag_msg`: ports are big-endian, addresses in network order, the inode native.
fn parse_diag_msg(p: &[u8]) -> Option<TcpEntry> {
    if p.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let addr = |at: usize| -> Option<IpAddr> {
        match p[0] as i32 {
            libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&p[at..at + 4]).ok()?,
            ))),
            libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&p[at..at + 16]).ok()?,
            ))),
            _ => None,
        }
    };
    let port = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
    Some(TcpEntry {
        local: (addr(8)?, port(4)),
        remote: (addr(24)?, port(6)),
        state: p[1],
        inode: u64::from(u32::from_ne_bytes(p[68..72].try_into().ok()?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `inet_diag_msg` as the kernel lays it out.
    fn diag_msg(
        family: u8,
        state: u8,
        local: &[u8],
        lport: u16,
        remote: &[u8],
        rport: u16,
        inode: u32,
    ) -> Vec<u8> {
        let mut p = vec![family, state, 0, 0];
        p.extend_from_slice(&lport.to_be_bytes());
        p.extend_from_slice(&rport.to_be_bytes());
        let mut src = [0u8; 16];
        src[..local.len()].copy_from_slice(local);
        let mut dst = [0u8; 16];
        dst[..remote.len()].copy_from_slice(remote);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0u8; 12]); // interface, cookie
        p.extend_from_slice(&[0u8; 16]); // expires, rqueue, wqueue, uid
        p.extend_from_slice(&inode.to_ne_bytes());
        p
    }

    #[test]
    fn decodes_v4_and_v6_messages() {
        let v4 = diag_msg(
            libc::AF_INET as u8,
            1,
            &[192, 0, 2, 1],
            22,
            &[192, 0, 2, 2],
            50000,
            1003,
        );
        let e = parse_diag_msg(&v4).unwrap();
        assert_eq!(e.local, ("192.0.2.1".parse().unwrap(), 22));
        assert_eq!(e.remote, ("192.0.2.2".parse().unwrap(), 50000));
        assert_eq!((e.state, e.inode), (TCP_ESTABLISHED, 1003));
        let six: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let v6 = diag_msg(
            libc::AF_INET6 as u8,
            10,
            &six.octets(),
            2222,
            &[0; 16],
            0,
            2002,
        );
        let e = parse_diag_msg(&v6).unwrap();
        assert_eq!(e.local, (IpAddr::V6(six), 2222));
        assert_eq!((e.state, e.inode), (TCP_LISTEN, 2002));
        assert!(parse_diag_msg(&v6[..70]).is_none());
        let mut bad = v6.clone();
        bad[0] = 99;
        assert!(parse_diag_msg(&bad).is_none());
    }

    #[test]
    fn requests_are_dumps_of_tcp_in_the_states_asked() {
        let states = States::LISTEN.and(States::ESTABLISHED);
        let field = |r: &[u8], at: usize| u32::from_ne_bytes(r[at..at + 4].try_into().unwrap());
        let r = request(Query::Family(AF_INET6), states, 7);
        let b = &r.bytes;
        assert_eq!((b.len(), field(b, 0)), (72, 72));
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(b[6..8].try_into().unwrap()), 0x301);
        assert_eq!((field(b, 8), r.seq, r.ty), (7, 7, 20));
        assert_eq!(&b[16..20], &[AF_INET6, 6, 0, 0]);
        assert_eq!(field(b, 20), (1 << 10) | (1 << 1));
        assert!(b[24..].iter().all(|b| *b == 0));
        let r = request(Query::EveryFamily, states, 1);
        let b = &r.bytes;
        assert_eq!((b.len(), field(b, 0), r.ty), (76, 76, 18));
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 18);
        // family, lengths, ext and the whole socket id zero: every socket of every family.
        assert!(b[16..68].iter().all(|b| *b == 0));
        assert_eq!(field(b, 68), (1 << 10) | (1 << 1));
        assert_eq!(field(b, 72), 0);
    }

    #[test]
    fn states_select_by_bit() {
        let s = States::LISTEN;
        assert!(s.has(TCP_LISTEN) && !s.has(TCP_ESTABLISHED) && !s.has(200));
    }
}
