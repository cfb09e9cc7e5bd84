//! Ending what the support started, on revoke. An established connection survives both the
//! removal of its firewall rule and the disabling of its key, and what the support runs without a
//! tty, in the background or under `setsid`/`nohup` survives the end of its sshd (DESIGN.md). So
//! revoke ends, from one snapshot of /proc:
//!
//! - every sshd process holding an established TCP connection from a support address, whatever
//!   local address and port it came in on (`from=` restricts the source, not the port);
//! - every process whose environment says sshd started its session for a support address
//!   (`SSH_CONNECTION`, which session.c sets for the session's shell and the tree below it, also
//!   after the connection is gone);
//! - the descendants of all of these;
//! - every process of the same login session where the system tracks sessions: the audit session
//!   id pam_loginuid gives each login (`/proc/PID/sessionid`, inherited across `setsid` and
//!   daemonising) and systemd-logind's `session-N.scope` cgroup.
//!
//! Only processes of the tool's network namespace are considered. A session id or cgroup is
//! taken only when it is the support's own: never the tool's, its
//! ancestors', pid 1's, or that of any sshd process not serving the support (without pam_loginuid,
//! every session inherits the listening sshd's id, which may be the administrator's).
//!
//! The sockets are those of the caller's network namespace (the one whose firewall the tool
//! changes), from `sockets`.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use serde::Serialize;

use crate::sockets::{self, TcpEntry, TCP_ESTABLISHED, TCP_LISTEN};

/// The audit session id of a process outside any login (`AUDIT_SID_UNSET`).
const SESSION_UNSET: u32 = u32::MAX;
/// How long processes get to exit on SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);

/// One established TCP connection of the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub inode: u64,
}

/// One process as /proc shows it, with what tells whether the support started it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// Field 22 of /proc/PID/stat: with the pid, the process's identity.
    pub start_time: u64,
    pub comm: String,
    pub cmdline: String,
    /// The audit session id; `None` without audit support.
    pub session: Option<u32>,
    /// The unified (or systemd v1) cgroup path.
    pub cgroup: String,
    /// The client address of `SSH_CONNECTION` in its environment.
    pub ssh_client: Option<IpAddr>,
    /// Inodes of its sockets (sshd processes only).
    pub sockets: Vec<u64>,
    /// It holds a listening socket: the daemon itself, which also holds a new connection for
    /// the moment between accept() and fork(), and is never ended.
    pub listening: bool,
}

/// Why a process was ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Why {
    /// An sshd process holding a connection from a support address.
    Connection {
        remote: IpAddr,
        remote_port: u16,
        local_port: u16,
    },
    /// Its environment's SSH_CONNECTION names a support address.
    Environment { remote: IpAddr },
    /// A descendant of a process ended for one of the other reasons.
    Descendant { of: u32 },
    /// In the audit session of a support login.
    AuditSession { id: u32 },
    /// In the systemd-logind scope of a support login.
    LoginScope { cgroup: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Ended {
    pub pid: u32,
    pub command: String,
    #[serde(flatten)]
    pub why: Why,
    /// TERM, or KILL when it outlived TERM_GRACE.
    pub signal: &'static str,
}

impl Ended {
    /// `1234 (sleep 1000): child of 1200` for the human report.
    pub fn describe(&self) -> String {
        let why = match &self.why {
            Why::Connection {
                remote,
                remote_port,
                local_port,
            } => format!("connection from {remote} port {remote_port} to port {local_port}"),
            Why::Environment { remote } => format!("started by sshd for {remote}"),
            Why::Descendant { of } => format!("child of {of}"),
            Why::AuditSession { id } => format!("audit session {id}"),
            Why::LoginScope { cgroup } => format!("login scope {cgroup}"),
        };
        format!("{} ({}): {why}", self.pid, self.command)
    }
}

/// The established connections among the sockets of a snapshot.
pub fn connections(sockets: &[TcpEntry]) -> Vec<Conn> {
    sockets
        .iter()
        .filter(|e| e.state == TCP_ESTABLISHED)
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

/// The connections from `addresses`, on any local address and port.
pub fn support_connections(conns: &[Conn], addresses: &[IpAddr]) -> Vec<Conn> {
    conns
        .iter()
        .filter(|c| addresses.contains(&c.remote))
        .cloned()
        .collect()
}

/// `SSH_CONNECTION=client cport server sport` (session.c `do_setup_env()`) → client.
pub fn ssh_client_of_environ(environ: &[u8]) -> Option<IpAddr> {
    environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"SSH_CONNECTION="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split(' ').next())
        .and_then(|a| a.parse().ok())
        .map(unmapped)
}

/// (ppid, start time) from /proc/PID/stat; the command name may hold spaces and `)`.
pub fn parse_stat(text: &str) -> Option<(u32, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// The cgroup v2 path (`0::/...`), else systemd's v1 hierarchy.
pub fn parse_cgroup(text: &str) -> String {
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
    };
    line("0::")
        .or_else(|| {
            text.lines()
                .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p.to_string()))
        })
        .unwrap_or_default()
}

/// A logind session scope (`/user.slice/user-0.slice/session-4.scope`).
fn is_login_scope(cgroup: &str) -> bool {
    cgroup
        .rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("session-") && n.ends_with(".scope"))
}

fn is_sshd(p: &Proc) -> bool {
    // sshd, and OpenSSH ≥ 9.8's sshd-session and sshd-auth.
    p.comm.starts_with("sshd")
}

/// The pure part: which processes of the snapshot revoke ends, and why. `me` is the tool's pid.
pub fn select(procs: &[Proc], support: &[Conn], addresses: &[IpAddr], me: u32) -> Vec<(u32, Why)> {
    let by_pid: HashMap<u32, &Proc> = procs.iter().map(|p| (p.pid, p)).collect();
    let by_inode: HashMap<u64, &Conn> = support.iter().map(|c| (c.inode, c)).collect();
    // Never the tool, its ancestors or init, whatever the snapshot says.
    let mut protected: HashSet<u32> = HashSet::from([0, 1, 2]);
    let mut cur = me;
    while protected.insert(cur) {
        cur = by_pid.get(&cur).map_or(0, |p| p.ppid);
    }
    let mut chosen: BTreeMap<u32, Why> = BTreeMap::new();
    for p in procs.iter().filter(|p| is_sshd(p) && !p.listening) {
        if let Some(c) = p.sockets.iter().find_map(|i| by_inode.get(i)) {
            chosen.insert(
                p.pid,
                Why::Connection {
                    remote: c.remote,
                    remote_port: c.remote_port,
                    local_port: c.local_port,
                },
            );
        }
    }
    for p in procs {
        if let Some(a) = p.ssh_client.filter(|a| addresses.contains(a)) {
            chosen
                .entry(p.pid)
                .or_insert(Why::Environment { remote: a });
        }
    }
    add_descendants(procs, &mut chosen);
    // Sessions and scopes of the support's processes, minus any shared with the rest.
    let outside =
        |p: &&Proc| protected.contains(&p.pid) || (is_sshd(p) && !chosen.contains_key(&p.pid));
    let foreign_sessions: HashSet<u32> = procs
        .iter()
        .filter(outside)
        .filter_map(|p| p.session)
        .collect();
    let foreign_scopes: HashSet<&str> = procs
        .iter()
        .filter(outside)
        .map(|p| p.cgroup.as_str())
        .collect();
    let sessions: HashSet<u32> = chosen
        .keys()
        .filter_map(|pid| by_pid.get(pid)?.session)
        .filter(|s| *s != SESSION_UNSET && !foreign_sessions.contains(s))
        .collect();
    let scopes: HashSet<String> = chosen
        .keys()
        .filter_map(|pid| by_pid.get(pid).map(|p| p.cgroup.clone()))
        .filter(|c| is_login_scope(c) && !foreign_scopes.contains(c.as_str()))
        .collect();
    for p in procs {
        if chosen.contains_key(&p.pid) {
            continue;
        }
        if let Some(id) = p.session.filter(|s| sessions.contains(s)) {
            chosen.insert(p.pid, Why::AuditSession { id });
        } else if scopes.contains(&p.cgroup) {
            chosen.insert(
                p.pid,
                Why::LoginScope {
                    cgroup: p.cgroup.clone(),
                },
            );
        }
    }
    add_descendants(procs, &mut chosen);
    chosen
        .into_iter()
        .filter(|(pid, _)| !protected.contains(pid))
        .collect()
}

fn add_descendants(procs: &[Proc], chosen: &mut BTreeMap<u32, Why>) {
    // Bounded: each round adds at least one process or stops.
    for _ in 0..procs.len() {
        let more: Vec<(u32, u32)> = procs
            .iter()
            .filter(|p| !chosen.contains_key(&p.pid) && chosen.contains_key(&p.ppid))
            .map(|p| (p.pid, p.ppid))
            .collect();
        if more.is_empty() {
            return;
        }
        for (pid, of) in more {
            chosen.insert(pid, Why::Descendant { of });
        }
    }
}

/// One snapshot of /proc: the processes of the tool's own network namespace (the server whose
/// firewall it changes; a container's processes with the same client address are another
/// server's). Processes that vanish while it is read are left out.
fn scan() -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return vec![];
    };
    let Ok(my_net) = fs::read_link("/proc/thread-self/ns/net") else {
        return vec![];
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = format!("/proc/{pid}");
        if fs::read_link(format!("{base}/ns/net")).ok().as_ref() != Some(&my_net) {
            continue;
        }
        let Some((ppid, start_time)) = fs::read_to_string(format!("{base}/stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        else {
            continue;
        };
        let comm = fs::read_to_string(format!("{base}/comm"))
            .unwrap_or_default()
            .trim_end()
            .to_string();
        let raw = fs::read(format!("{base}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&raw)
            .split('\0')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let mut p = Proc {
            pid,
            ppid,
            start_time,
            cmdline: if cmdline.is_empty() {
                format!("[{comm}]")
            } else {
                cmdline
            },
            session: fs::read_to_string(format!("{base}/sessionid"))
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            cgroup: parse_cgroup(&fs::read_to_string(format!("{base}/cgroup")).unwrap_or_default()),
            ssh_client: fs::read(format!("{base}/environ"))
                .ok()
                .and_then(|e| ssh_client_of_environ(&e)),
            comm,
            sockets: vec![],
            listening: false,
        };
        if is_sshd(&p) {
            p.sockets = socket_inodes(pid);
        }
        out.push(p);
    }
    out
}

fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|t| {
            t.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// A pidfd for `p`, if it is still the process of the snapshot (same start time): signals sent
/// through it can never reach a process that reused the pid.
fn open_same(p: &Proc) -> Option<OwnedFd> {
    let fd = pidfd_open(Pid::from_raw(p.pid as i32)?, PidfdFlags::empty()).ok()?;
    let (_, start) = parse_stat(&fs::read_to_string(format!("/proc/{}/stat", p.pid)).ok()?)?;
    (start == p.start_time).then_some(fd)
}

/// A pidfd polls readable once its process has exited.
fn alive(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    poll(&mut fds, Some(&Timespec::default())).is_ok_and(|n| n == 0)
}

/// End what the support started (see the module comment); returns what was ended. Failures
/// are warnings: the key and firewall are already closed, which is what protects the server.
pub fn end(addresses: &[IpAddr], warnings: &mut Vec<String>) -> Vec<Ended> {
    // One snapshot of the sockets, taken before the processes are: a connection accepted
    // after it has no process of the support's yet, and the firewall is already closed.
    let sockets = sockets::tcp_sockets(
        Path::new("/proc"),
        sockets::States::ESTABLISHED.and(sockets::States::LISTEN),
    )
    .unwrap_or_else(|e| {
        warnings.push(format!(
            "cannot list this namespace's TCP connections ({e}): only processes whose environment names a support address were looked for"
        ));
        Vec::new()
    });
    let support = support_connections(&connections(&sockets), addresses);
    let mut procs = scan();
    let listeners: HashSet<u64> = sockets
        .iter()
        .filter(|e| e.state == TCP_LISTEN)
        .map(|e| e.inode)
        .collect();
    for p in &mut procs {
        p.listening = p.sockets.iter().any(|i| listeners.contains(i));
    }
    let by_pid: HashMap<u32, &Proc> = procs.iter().map(|p| (p.pid, p)).collect();
    let chosen = select(&procs, &support, addresses, std::process::id());
    let mut signalled = Vec::new();
    for (pid, why) in chosen {
        let Some(p) = by_pid.get(&pid) else { continue };
        let Some(fd) = open_same(p) else { continue };
        match pidfd_send_signal(&fd, Signal::TERM) {
            Ok(()) => signalled.push((fd, p, why)),
            Err(rustix::io::Errno::SRCH) => {}
            Err(e) => warnings.push(format!("could not end process {pid} ({}): {e}", p.cmdline)),
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    while signalled.iter().any(|(fd, ..)| alive(fd)) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    let ended = signalled
        .into_iter()
        .map(|(fd, p, why)| {
            let signal = if alive(&fd) && pidfd_send_signal(&fd, Signal::KILL).is_ok() {
                "KILL"
            } else {
                "TERM"
            };
            Ended {
                pid: p.pid,
                command: p.cmdline.clone(),
                why,
                signal,
            }
        })
        .collect();
    forget_conntrack(&support, warnings);
    ended
}

/// Delete the conntrack entries of the ended connections, so that no "established" state lets a
/// retransmission through. Best effort: conntrack(8) may be absent.
fn forget_conntrack(conns: &[Conn], warnings: &mut Vec<String>) {
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
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Err(e) = out {
            if e.kind() == std::io::ErrorKind::NotFound {
                warnings.push("conntrack(8) is not installed: conntrack entries of ended sessions were left to expire".into());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
