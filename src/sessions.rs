//! Ending the support's live sessions on revoke. An established connection survives both the
//! removal of its firewall rule and the disabling of its key (DESIGN.md), so revoke finds the sshd
//! processes serving a connection from a support address to an SSH port and terminates them.
//!
//! The sockets come from /proc/net/tcp and tcp6 of the caller's network namespace (the one whose
//! firewall the tool changes); their inodes are matched against /proc/PID/fd of processes named
//! sshd, so only sshd processes holding exactly those connections are touched.
use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::IpAddr;

use serde::Serialize;

use crate::report::Report;
use crate::sshd::live;

/// One established TCP connection from /proc/net/tcp{,6}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub inode: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ended {
    pub pid: u32,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub local_port: u16,
}

/// The established connections of the text of /proc/net/tcp or tcp6 (parsed by
/// `sshd::live`, which reads the same files for the listeners).
pub fn parse_proc_net_tcp(text: &str) -> Vec<Conn> {
    live::parse_tcp_table(text)
        .into_iter()
        .filter(|e| e.state == live::TCP_ESTABLISHED)
        .map(|e| Conn {
            local_port: e.local.1,
            remote: unmapped(e.remote.0),
            remote_port: e.remote.1,
            inode: e.inode,
        })
        .collect()
}

/// A v4 client on a dual-stack socket appears in tcp6 as ::ffff:a.b.c.d; the grant names it
/// a.b.c.d.
fn unmapped(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// The connections from `addresses` to `ports`.
pub fn support_connections(conns: &[Conn], addresses: &[IpAddr], ports: &[u16]) -> Vec<Conn> {
    conns
        .iter()
        .filter(|c| addresses.contains(&c.remote) && ports.contains(&c.local_port))
        .cloned()
        .collect()
}

/// Terminate the sshd processes serving support connections; returns what was ended. Failures
/// are warnings: the key and firewall are already closed, which is what protects the server.
pub fn end(addresses: &[IpAddr], ports: &[u16], report: &mut Report) -> Vec<Ended> {
    let mut conns = Vec::new();
    for f in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        if let Ok(t) = fs::read_to_string(f) {
            conns.extend(parse_proc_net_tcp(&t));
        }
    }
    let wanted = support_connections(&conns, addresses, ports);
    if wanted.is_empty() {
        return vec![];
    }
    let by_inode: HashMap<u64, &Conn> = wanted.iter().map(|c| (c.inode, c)).collect();
    let mut ended = Vec::new();
    let mut seen = HashSet::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return vec![];
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.trim().starts_with("sshd") {
            continue;
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            if let Some(c) = by_inode.get(&inode) {
                if seen.insert(pid) {
                    match rustix::process::Pid::from_raw(pid as i32)
                        .map(|p| rustix::process::kill_process(p, rustix::process::Signal::TERM))
                    {
                        Some(Ok(())) => ended.push(Ended {
                            pid,
                            remote: c.remote,
                            remote_port: c.remote_port,
                            local_port: c.local_port,
                        }),
                        _ => report.warn(format!(
                            "could not end sshd process {pid} serving {}",
                            c.remote
                        )),
                    }
                }
            }
        }
    }
    forget_conntrack(&wanted, report);
    ended
}

/// Delete the conntrack entries of the ended connections, so that no "established" state lets a
/// retransmission through. Best effort: conntrack(8) may be absent.
fn forget_conntrack(conns: &[Conn], report: &mut Report) {
    for c in conns {
        let fam = if c.remote.is_ipv4() { "ipv4" } else { "ipv6" };
        let out = std::process::Command::new("conntrack")
            .args(["-D", "-f", fam, "-p", "tcp", "-s", &c.remote.to_string()])
            .args([
                "--sport",
                &c.remote_port.to_string(),
                "--dport",
                &c.local_port.to_string(),
            ])
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.warn("conntrack(8) is not installed: conntrack entries of ended sessions were left to expire");
                return;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn a_v4_client_of_a_dual_stack_socket_is_named_by_its_v4_address() {
        // ::ffff:198.51.100.10 → 198.51.100.10; the listener (0A) is not a session.
        let t = "header\n   0: 0000000000000000FFFF00000A6433C6:08AE 0000000000000000FFFF00000A6433C6:D431 01 0:0 0:0 0 0 0 4444 1\n   1: 00000000000000000000000000000000:08AE 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 5555 1\n";
        let c = parse_proc_net_tcp(t);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].remote, "198.51.100.10".parse::<IpAddr>().unwrap());
        assert_eq!((c[0].local_port, c[0].inode), (2222, 4444));
    }

    #[test]
    fn parses_v4_and_v6_established() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0\n\
   1: 010011AC:08AE 0A6433C6:D431 01 00000000:00000000 02:0009F4D5 00000000     0        0 2222 2 0 20 4 30 10 -1\n";
        let c = parse_proc_net_tcp(v4);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].local_port, 2222);
        assert_eq!(c[0].remote, "198.51.100.10".parse::<IpAddr>().unwrap());
        assert_eq!(c[0].remote_port, 0xD431);
        assert_eq!(c[0].inode, 2222);
        // 2001:db8:1::10 as the kernel prints it: four words, each the host-order u32 in hex.
        let v6 = "header\n   0: 00000000000000000000000000000000:08AE B80D0120000001000000000010000000:C350 01 0:0 0:0 0 0 0 3333 1\n";
        let c = parse_proc_net_tcp(v6);
        if cfg!(target_endian = "little") {
            assert_eq!(c[0].remote, "2001:db8:1::10".parse::<IpAddr>().unwrap());
            let picked = support_connections(&c, &["2001:db8:1::10".parse().unwrap()], &[2222]);
            assert_eq!(picked.len(), 1);
            assert!(
                support_connections(&c, &["2001:db8:1::11".parse().unwrap()], &[2222]).is_empty()
            );
            assert!(
                support_connections(&c, &["2001:db8:1::10".parse().unwrap()], &[22]).is_empty()
            );
        }
    }
}
