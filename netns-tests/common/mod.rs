//! Shared pieces of the root-only tests: network namespaces that clean up after themselves.
//!
//! Safety rules (the machine is shared): every namespace has a unique name (a prefix plus a random
//! suffix) and is deleted, with every process left in it, when its guard drops — also when a test
//! fails or panics. Addresses come only from the documentation ranges.
#![allow(dead_code)]

mod lab;
#[allow(unused_imports)]
pub use lab::ListenerLab;
// The output contract is the same with and without root: one copy, shared with tests/.
#[path = "../../tests/common/output.rs"]
mod output;
#[allow(unused_imports)]
pub use output::*;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// True when these tests can run (root, `ip` present). Otherwise prints how to run them.
pub fn can_run(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "SKIP {test}: network-namespace tests need root; run them as root with `cargo test --test netns` \
             (or the README's test command)"
        );
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("SKIP {test}: `ip` (iproute2) is missing; install iproute2");
        return false;
    }
    true
}

/// A ruleset file of this repository's rulesets/ directory.
pub fn ruleset_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rulesets")
        .join(name)
}

/// The built binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ovh-access"))
}

/// A unique, short suffix: pid, a per-process counter and the clock's nanoseconds.
pub fn unique_suffix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{:x}{:x}{:x}",
        std::process::id() & 0xffff,
        n,
        nanos & 0xfff
    )
}

/// Run a command, panic with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A network namespace, deleted with every process in it when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `prefix` names the role (`oa-srv`, `oa-sup`, ...); a random suffix makes it unique.
    pub fn new(prefix: &str) -> Netns {
        let name = format!("{prefix}-{}", unique_suffix());
        assert!(name.len() <= 32, "namespace name too long: {name}");
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// A command to run inside the namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Run a shell snippet inside the namespace; panics on failure.
    pub fn sh(&self, script: &str) -> Output {
        run(self.cmd("sh").args(["-c", script]))
    }

    /// Run a shell snippet inside the namespace; returns the output whatever the status.
    pub fn sh_status(&self, script: &str) -> Output {
        self.cmd("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }

    /// `nft list ruleset` in this namespace.
    pub fn ruleset(&self) -> String {
        String::from_utf8(self.sh("nft list ruleset").stdout).unwrap()
    }

    /// Load an nft ruleset file into this namespace.
    pub fn load_nft(&self, file: &Path) {
        run(self.cmd("nft").arg("-f").arg(file));
    }

    /// Connect a veth pair between `self` and `peer`, with the given addresses (CIDR) on each side.
    /// Interface names are derived from the namespace names' suffixes and stay under 15 bytes.
    pub fn link(
        &self,
        ifname: &str,
        peer: &Netns,
        peer_ifname: &str,
        mine: &[&str],
        theirs: &[&str],
    ) {
        // Created in self, then one end moved: names must be unique only inside each namespace.
        self.sh(&format!(
            "ip link add {ifname} type veth peer name {peer_ifname} && ip link set {peer_ifname} netns {}",
            peer.name
        ));
        for a in mine {
            let nodad = if a.contains(':') { " nodad" } else { "" };
            self.sh(&format!("ip addr add {a} dev {ifname}{nodad}"));
        }
        for a in theirs {
            let nodad = if a.contains(':') { " nodad" } else { "" };
            peer.sh(&format!("ip addr add {a} dev {peer_ifname}{nodad}"));
        }
        self.sh(&format!("ip link set {ifname} up"));
        peer.sh(&format!("ip link set {peer_ifname} up"));
    }

    /// Kill every process left in the namespace.
    pub fn kill_all(&self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
        // A killed process may take a moment to release the namespace; bounded retries.
        for _ in 0..20 {
            let ok = Command::new("ip")
                .args(["netns", "del", &self.name])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
            self.kill_all();
        }
        eprintln!("warning: could not delete network namespace {}", self.name);
    }
}

/// Kills and reaps the process a test started, if any: no zombie is left behind, and the
/// namespace guard then finds only what that process may have left.
pub fn stop(child: &mut Option<std::process::Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Poll `f` every 50 ms until it returns true or `limit` passes (bounded in count and time).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    for _ in 0..10_000 {
        if f() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Can `from` open a TCP connection to `addr:port`? (bash's /dev/tcp, with a 2 s limit.)
pub fn tcp_connects(from: &Netns, addr: &str, port: u16) -> bool {
    let host = addr.trim_start_matches('[').trim_end_matches(']');
    from.sh_status(&format!(
        "timeout 2 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null"
    ))
    .status
    .success()
}

/// Runs `f` on a thread moved into `ns`'s network namespace (setns(2) changes only the calling
/// thread), so library code can act inside the namespace without touching the test process; the
/// processes that thread spawns (`*-save`, `*-restore`) inherit its namespace.
pub fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    in_named_netns(&ns.name, f)
}

/// [`in_netns`] by the namespace's name, for a thread that cannot borrow the [`Netns`] guard.
pub fn in_named_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: a valid namespace fd, and CLONE_NEWNET affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        });
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
