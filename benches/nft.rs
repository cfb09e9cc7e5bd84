//! Grant and revoke timing of the nftables backend against `nft -f` applying the same change, on
//! rulesets of 10 to 100 000 rules plus a 100 000-element blocklist set, each in a throwaway
//! network namespace (root only):
//!
//!     cargo bench --bench nft            # all sizes
//!     cargo bench --bench nft -- 10 1000 # some sizes
//!
//! For each size: the median of RUNS grants and revokes through the library, then the same
//! change in `nft -f` syntax (the scripts `--dry-run` prints) applied by `nft -f`, and the peak
//! resident memory of each (the bench process's VmHWM, reset before the runs; nft's from wait4).
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ovh_access::firewall::nft::NftBackend;
use ovh_access::firewall::{Backend, Mode, OpenRequest};

// The namespace guard of the root-only tests, one copy for both.
#[path = "../netns-tests/common/mod.rs"]
mod netns;
use netns::{in_netns, Netns};

const RUNS: usize = 9;
const BLOCKLIST: usize = 100_000;

/// Where the rules live.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// All `n` rules in the input base chain itself (the worst case: the kernel rebuilds a base
    /// chain's rule blob on every change to it, nf_tables_commit_chain_prepare).
    BaseChain,
    /// The input base chain jumps to a regular chain holding the `n` rules.
    UserChain,
}

/// A hardened input chain with `n` rules, none of them for SSH, then policy drop; and a
/// 100 000-address blocklist set that one of them uses.
fn ruleset(n: usize, layout: Layout) -> String {
    let mut s = String::from(
        "table inet filter {\n\tset blocklist {\n\t\ttype ipv4_addr\n\t\telements = { ",
    );
    for i in 0..BLOCKLIST {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!(
            "10.{}.{}.{}",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        ));
    }
    s.push_str(" }\n\t}\n");
    let mut rules = String::new();
    for i in 0..n.saturating_sub(1) {
        rules.push_str(&format!(
            "\t\tip saddr 203.0.{}.{} tcp dport {} accept\n",
            (i / 250) % 250,
            i % 250 + 1,
            10000 + i % 50000
        ));
    }
    s.push_str("\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n");
    s.push_str("\t\tip saddr @blocklist drop\n");
    match layout {
        Layout::BaseChain => s.push_str(&rules),
        Layout::UserChain => {
            s.push_str("\t\tjump services\n\t}\n\tchain services {\n");
            s.push_str(&rules);
        }
    }
    s.push_str("\t}\n}\n");
    s
}

/// `nft -f FILE`: its wall time and peak RSS (KiB, from wait4's rusage).
// The child is reaped by wait4 (not Child::wait), which also returns its own rusage.
#[allow(clippy::zombie_processes)]
fn nft_f(file: &std::path::Path) -> (Duration, i64) {
    let start = Instant::now();
    let child = Command::new("nft")
        .arg("-f")
        .arg(file)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn nft");
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 on our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let took = start.elapsed();
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "nft -f {} failed",
        file.display()
    );
    (took, ru.ru_maxrss)
}

fn vm_hwm_kib() -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

fn reset_hwm() {
    // "5" resets the peak resident set size (Documentation/filesystems/proc.rst, clear_refs).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Each timed change starts on a quiet kernel: the previous commit's deferred release
/// (nf_tables_trans_destroy_work, an RCU grace period) would otherwise be charged to whichever
/// change comes next, tool or nft alike. Real grants and revokes are seconds apart.
fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`: the measurement
    // is for `cargo bench` only (it takes minutes and prints figures, it asserts nothing).
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("SKIP: the nft benchmark runs as root with `cargo bench --bench nft`");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP: the nft benchmark needs root (it creates a network namespace)");
        return;
    }
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10, 1_000, 10_000, 100_000];
    }
    let req = OpenRequest {
        addresses: vec!["192.0.2.2".parse().unwrap(), "2001:db8::2".parse().unwrap()],
        ports: vec![22, 2222],
        timeout: Some(Duration::from_secs(3600)),
    };
    for layout in [Layout::BaseChain, Layout::UserChain] {
        match layout {
            Layout::BaseChain => println!("\nAll rules in the input base chain:\n"),
            Layout::UserChain => {
                println!("\nThe rules in a regular chain the input base chain jumps to:\n")
            }
        }
        println!("| rules | grant (tool) | of which inspect+plan | grant (nft -f) | regrant (tool) | revoke (tool) | revoke (nft -f) | peak RSS tool | peak RSS nft -f |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &n in &sizes {
            bench_one(n, layout, &req);
        }
    }
}

fn bench_one(n: usize, layout: Layout, req: &OpenRequest) {
    let ns = Netns::new("oa-bench-nft");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.nft");
    std::fs::write(&base, ruleset(n, layout)).unwrap();
    let row = in_netns(&ns, || {
        nft_f(&base);
        let mut be = NftBackend::new().expect("nftables backend");
        // The same change in nft syntax, as --dry-run prints it.
        let grant_script = dir.path().join("grant.nft");
        std::fs::write(
            &grant_script,
            be.open(req, &[], Mode::DryRun).unwrap().script,
        )
        .unwrap();

        reset_hwm();
        let (mut g, mut r, mut dry, mut re) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            settle();
            let t = Instant::now();
            be.open(req, &[], Mode::DryRun).expect("dry run");
            dry.push(t.elapsed());
            settle();
            let t = Instant::now();
            let c = be.open(req, &[], Mode::Apply).expect("grant");
            g.push(t.elapsed());
            assert!(c.changed);
            // A second grant on a granted server (what `refresh` does): no jump is inserted.
            settle();
            let t = Instant::now();
            be.open(req, &[], Mode::Apply).expect("regrant");
            re.push(t.elapsed());
            settle();
            let t = Instant::now();
            be.close(&[], Mode::Apply).expect("revoke");
            r.push(t.elapsed());
        }
        let tool_rss = vm_hwm_kib();

        let (mut ng, mut nr, mut nft_rss) = (Vec::new(), Vec::new(), 0);
        for _ in 0..RUNS {
            settle();
            let (t, rss) = nft_f(&grant_script);
            ng.push(t);
            nft_rss = nft_rss.max(rss);
            // Its revoke: the tool's revoke plan for this state (delete by the handles just
            // made), applied by nft.
            let revoke_script = dir.path().join("revoke.nft");
            std::fs::write(&revoke_script, be.close(&[], Mode::DryRun).unwrap().script).unwrap();
            settle();
            let (t, rss) = nft_f(&revoke_script);
            nr.push(t);
            nft_rss = nft_rss.max(rss);
        }
        format!(
            "| {n} | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | {} MiB | {} MiB |",
            ms(median(g)),
            ms(median(dry)),
            ms(median(ng)),
            ms(median(re)),
            ms(median(r)),
            ms(median(nr)),
            tool_rss / 1024,
            nft_rss / 1024
        )
    });
    println!("{row}");
}
