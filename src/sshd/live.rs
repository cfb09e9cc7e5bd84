//! The sockets sshd really listens on: the listening TCP sockets of the calling thread's network
//! namespace (`sockets`: sock_diag, or the text tables of a test's fake /proc) whose inode is held
//! open by a process named `sshd`. A thread's namespace, not the process's: a test can `setns()`
//! one thread into a namespace.
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};

use crate::sockets::{self, TcpEntry, TCP_LISTEN};

/// One LISTEN socket of /proc/net/tcp{,6}.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// The LISTEN sockets among `entries`.
fn listening(entries: Vec<TcpEntry>) -> Vec<Socket> {
    entries
        .into_iter()
        .filter(|e| e.state == TCP_LISTEN)
        .map(|e| Socket {
            addr: e.local.0,
            port: e.local.1,
            inode: e.inode,
        })
        .collect()
}

/// Inodes of the sockets held open by processes whose `comm` is `comm`.
fn socket_inodes(proc_dir: &Path, comm_name: &str) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let Ok(rd) = std::fs::read_dir(proc_dir) else {
        return inodes;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let pdir = proc_dir.join(pid);
        let comm = std::fs::read_to_string(pdir.join("comm")).unwrap_or_default();
        if comm.trim_end() != comm_name {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(pdir.join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(|e| e.ok()) {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                if let Ok(n) = n.parse() {
                    inodes.insert(n);
                }
            }
        }
    }
    inodes
}

/// The LISTEN sockets of sshd processes in the calling thread's network namespace.
/// `proc_dir` is `/proc` of the system (a test may give a fake tree).
pub fn sshd_listeners(proc_dir: &Path) -> Result<Vec<Socket>> {
    listeners_of(proc_dir, "sshd")
}

/// The LISTEN sockets held by processes named `comm` (`systemd` holds socket-activated ones).
pub fn listeners_of(proc_dir: &Path, comm: &str) -> Result<Vec<Socket>> {
    let mut all = listening(listen_entries(proc_dir)?);
    let inodes = socket_inodes(proc_dir, comm);
    all.retain(|s| inodes.contains(&s.inode));
    all.sort_by_key(|s| (s.port, s.addr));
    all.dedup_by_key(|s| (s.port, s.addr));
    Ok(all)
}

/// The listening sockets (see `sockets`: for the live /proc, no walk of the established hash).
fn listen_entries(proc_dir: &Path) -> Result<Vec<TcpEntry>> {
    sockets::tcp_sockets(proc_dir, sockets::States::LISTEN)
        .context("the live check of sshd's ports needs /proc mounted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockets::{parse_tcp_table, TCP_ESTABLISHED};

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 010200C0:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 010200C0:0016 020200C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000001000000:0898 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
";

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_listen_entries_only() {
        let v4 = listening(parse_tcp_table(TCP));
        assert_eq!(v4.len(), 2);
        assert_eq!(
            (v4[0].addr, v4[0].port, v4[0].inode),
            ("0.0.0.0".parse().unwrap(), 22, 1001)
        );
        assert_eq!(
            (v4[1].addr, v4[1].port),
            ("192.0.2.1".parse().unwrap(), 2222)
        );
        let v6 = listening(parse_tcp_table(TCP6));
        assert_eq!((v6[0].addr, v6[0].port), ("::".parse().unwrap(), 22));
        assert_eq!(
            (v6[1].addr, v6[1].port),
            ("2001:db8::1".parse().unwrap(), 2200)
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn every_line_with_both_endpoints_and_its_state() {
        let all = parse_tcp_table(TCP);
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].state, TCP_ESTABLISHED);
        assert_eq!(all[2].local, ("192.0.2.1".parse().unwrap(), 22));
        assert_eq!(all[2].remote, ("192.0.2.2".parse().unwrap(), 50000));
        assert_eq!(all[2].inode, 1003);
        assert!(
            parse_tcp_table("header\n   0: 0100007F:zz 00000000:0000 0A 0 0 0 0 0 7 1\n")
                .is_empty()
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn only_sockets_of_sshd_processes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("thread-self/net")).unwrap();
        std::fs::write(p.join("thread-self/net/tcp"), TCP).unwrap();
        std::fs::write(p.join("thread-self/net/tcp6"), TCP6).unwrap();
        for (pid, comm, inode) in [
            ("10", "sshd", 1002),
            ("11", "nginx", 1001),
            ("12", "sshd", 2001),
        ] {
            std::fs::create_dir_all(p.join(pid).join("fd")).unwrap();
            std::fs::write(p.join(pid).join("comm"), format!("{comm}\n")).unwrap();
            std::os::unix::fs::symlink(format!("socket:[{inode}]"), p.join(pid).join("fd/3"))
                .unwrap();
        }
        let got = sshd_listeners(p).unwrap();
        let ports: Vec<u16> = got.iter().map(|s| s.port).collect();
        assert_eq!(ports, [22, 2222]);
        assert_eq!(got[0].addr, "::".parse::<IpAddr>().unwrap());
        let other: Vec<u16> = listeners_of(p, "nginx")
            .unwrap()
            .iter()
            .map(|s| s.port)
            .collect();
        assert_eq!(other, [22]);
    }
}
