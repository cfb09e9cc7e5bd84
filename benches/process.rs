//! The whole `ovh-access grant` and `revoke` processes — start, sshd_config, the keys file, the
//! journal and its fsyncs, the netlink batch, exit — against `nft -f` making the same nftables
//! change, on rulesets of 10 to 100 000 rules, each in a throwaway network namespace with a
//! sandbox root (root only):
//!
//!     sudo cargo bench --bench process            # all sizes
//!     sudo cargo bench --bench process -- 10 1000 # some sizes
//!     sudo OA_BENCH_TMPFS=1 cargo bench --bench process # the sandbox on tmpfs (fsync is free)
//!
//! For each size: the median and the best of RUNS grant/revoke pairs of the release binary (`--root SANDBOX
//! grant --region eu --address … --port 22 --for 1h`, then `revoke`), and of `nft -f` applying
//! the grant's change (the script `--dry-run` prints) and deleting it again; the ratio is tool
//! over nft, of the medians and of the best runs (on a shared machine the best run is the cost
//! without waiting for a core). Both are spawned the same way from a thread inside the namespace, so process start
//! is on both sides. The rules sit in the input base chain itself (policy drop), the case where
//! the kernel rebuilds the chain's rule blob at every commit.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ovh_access::firewall::nft::NftBackend;
use ovh_access::firewall::{Backend, Mode, OpenRequest};

#[path = "../netns-tests/common/mod.rs"]
mod netns;
use netns::{in_netns, Netns};

const RUNS: usize = 15;
const TOOL: &str = env!("CARGO_BIN_EXE_ovh-access");

/// A hardened input chain with `n` rules, none of them for SSH, then policy drop.
fn ruleset(n: usize) -> String {
    let mut s = String::from(
        "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "\t\tip saddr 203.0.{}.{} tcp dport {} accept\n",
            (i / 250) % 250,
            i % 250 + 1,
            10000 + i % 50000
        ));
    }
    s.push_str("\t}\n}\n");
    s
}

/// The sandbox `--root`: sshd_config, passwd, root's home; the state and the lock are made by
/// the tool itself.
fn sandbox(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("root-fs");
    for (sub, mode) in [("etc/ssh", 0o755), ("root", 0o700), ("run", 0o755)] {
        let p = root.join(sub);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(
        root.join("etc/ssh/sshd_config"),
        "Port 22\nPermitRootLogin prohibit-password\nUsePAM no\n",
    )
    .unwrap();
    root
}

/// Run a program to completion; its wall time.
fn timed(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn tool(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(TOOL);
    c.arg("--root").arg(root).args(args);
    c
}

const GRANT: [&str; 10] = [
    "grant",
    "--region",
    "eu",
    "--address",
    "192.0.2.2",
    "--address",
    "2001:db8::2",
    "--port",
    "22",
    "--for=1h",
];

/// Each timed change starts on a quiet kernel: the previous commit's deferred release (an RCU
/// grace period) would otherwise be charged to whichever change comes next.
fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn best(v: &[Duration]) -> Duration {
    v.iter().copied().min().expect("at least one run")
}

/// `median / best` in ms.
fn cell(v: &[Duration]) -> String {
    format!("{} / {} ms", ms(median(v)), ms(best(v)))
}

/// Tool over nft, of the medians and of the best runs.
fn ratio(tool: &[Duration], nft: &[Duration]) -> String {
    let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    format!(
        "{:.2} / {:.2}",
        r(median(tool), median(nft)),
        r(best(tool), best(nft))
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("SKIP: the process benchmark runs as root with `cargo bench --bench process`");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP: the process benchmark needs root (it creates a network namespace)");
        return;
    }
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10, 100, 1_000, 10_000, 20_000, 100_000];
    }
    println!("| rules | grant (tool) | grant (nft -f) | ratio | revoke (tool) | revoke (nft -f) | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!("(each cell: median / best of {RUNS}; ratio: of the medians / of the best)");
    for n in sizes {
        println!("{}", bench_one(n));
    }
}

fn bench_one(n: usize) -> String {
    let ns = Netns::new("oa-bench-proc");
    // The sandbox on a disk (as /var/lib and /root are), or with OA_BENCH_TMPFS=1 on tmpfs, where
    // fsync costs nothing: the difference is what durability costs.
    let parent = if std::env::var_os("OA_BENCH_TMPFS").is_some() {
        "/dev/shm"
    } else {
        "/var/tmp"
    };
    let dir = tempfile::tempdir_in(parent).unwrap();
    let base = dir.path().join("base.nft");
    std::fs::write(&base, ruleset(n)).unwrap();
    ns.load_nft(&base);
    let root = sandbox(dir.path());
    in_netns(&ns, || {
        // The grant's change in nft syntax, as --dry-run prints it.
        let req = OpenRequest {
            addresses: vec!["192.0.2.2".parse().unwrap(), "2001:db8::2".parse().unwrap()],
            ports: vec![22],
            timeout: Some(Duration::from_secs(3600)),
        };
        let mut be = NftBackend::new().expect("nftables backend");
        let grant_script = dir.path().join("grant.nft");
        let script = be.open(&req, &[], Mode::DryRun).unwrap().script;
        std::fs::write(&grant_script, script).unwrap();

        let (mut g, mut r, mut ng, mut nr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            settle();
            g.push(timed(&mut tool(&root, &GRANT)));
            settle();
            r.push(timed(&mut tool(&root, &["revoke"])));
        }
        for _ in 0..RUNS {
            settle();
            ng.push(timed(Command::new("nft").arg("-f").arg(&grant_script)));
            // Its revoke: the tool's revoke plan for this state (deletion by the handles just
            // made), applied by nft.
            let revoke_script = dir.path().join("revoke.nft");
            let script = be.close(&[], Mode::DryRun).unwrap().script;
            std::fs::write(&revoke_script, script).unwrap();
            settle();
            nr.push(timed(Command::new("nft").arg("-f").arg(&revoke_script)));
        }
        format!(
            "| {n} | {} | {} | {} | {} | {} | {} |",
            cell(&g),
            cell(&ng),
            ratio(&g, &ng),
            cell(&r),
            cell(&nr),
            ratio(&r, &nr)
        )
    })
}
