//! Root only: a real sshd in a throwaway network namespace, listening on ports from both Port
//! and ListenAddress; the live-listener probe (read from a thread moved into that namespace)
//! must find exactly the sockets the parser predicts from the same config, and a config changed
//! without restarting sshd must be reported. Without root it skips and says why.
use std::collections::BTreeSet;
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The namespace guard of the root-only suite, one copy for both.
#[path = "../netns-tests/common/mod.rs"]
mod netns;
use netns::{in_netns, stop, Netns};

use ovh_access::root::Root;
use ovh_access::sockets;
use ovh_access::sshd::{eval, live, reconcile, Config, PortEvidence};

fn can_run(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root (network namespaces, sshd); run `sudo cargo test --test sshd_live`");
        return false;
    }
    for tool in ["/usr/sbin/sshd", "/usr/bin/ssh-keygen"] {
        if !Path::new(tool).exists() {
            eprintln!("SKIP {test}: {tool} is missing");
            return false;
        }
    }
    if Command::new("ip").arg("-V").output().is_err()
        || Command::new("unshare").arg("-V").output().is_err()
    {
        eprintln!("SKIP {test}: `ip` (iproute2) or `unshare` (util-linux) is missing");
        return false;
    }
    true
}

fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A uniquely named namespace; on drop, the sshd this test started is killed (by its pid) and
/// reaped, then the namespace guard deletes the namespace.
struct Ns {
    net: Netns,
    sshd: Option<Child>,
}

impl Ns {
    fn new() -> Ns {
        let ns = Ns {
            net: Netns::new("oa-sshd"),
            sshd: None,
        };
        ns.sh(
            "ip link set lo up && ip link add d0 type veth peer name d1 && ip link set d0 up && ip link set d1 up && \
             ip addr add 192.0.2.1/24 dev d0 && ip -6 addr add 2001:db8::1/64 dev d0 nodad",
        );
        ns
    }

    fn sh(&self, script: &str) {
        self.net.sh(script);
    }

    /// sshd -D in the namespace, with a private /run so that its privilege separation
    /// directory never appears on the machine. `ip netns exec`, `unshare` and `sh -c exec`
    /// all exec in place: the child's pid is sshd's.
    fn start_sshd(&mut self, config: &Path) {
        self.start_sshd_with(config, None);
    }

    /// As `start_sshd`; `shadow` is bind-mounted over /etc/shadow inside sshd's private mount
    /// namespace only (the machine's own file is neither read nor changed).
    fn start_sshd_with(&mut self, config: &Path, shadow: Option<&Path>) {
        stop(&mut self.sshd);
        let mut script = String::from("mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd");
        if let Some(s) = shadow {
            script.push_str(&format!(" && mount --bind {} /etc/shadow", s.display()));
        }
        script.push_str(" && exec \"$@\"");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.net.name,
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script, "sh"])
            .args(["/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.sshd = Some(child);
    }

    /// `ssh root@addr -p port true` from inside the namespace with only `key`; never reads or
    /// writes ~/.ssh (no config, no known_hosts, no agent).
    fn ssh_ok(&self, key: &Path, addr: &str, port: u16) -> bool {
        self.ssh_from(key, None, addr, port)
    }

    /// As `ssh_ok`, from the local source address `from` (`ssh -b`).
    fn ssh_from(&self, key: &Path, from: Option<&str>, addr: &str, port: u16) -> bool {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.net.name, "ssh", "-F", "/dev/null"]);
        if let Some(f) = from {
            c.args(["-b", f]);
        }
        c.arg("-i")
            .arg(key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=5",
                "-p",
                &port.to_string(),
                &format!("root@{addr}"),
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        stop(&mut self.sshd);
    }
}

/// The kernel's answer over sock_diag is the same set of sockets as the text tables, with the
/// same addresses, ports, states and inodes: listeners of both families, a v4 connection and a v4
/// client of a dual-stack socket (which both show as `::ffff:` in tcp6).
#[test]
fn sock_diag_agrees_with_proc_net_tcp() {
    if !can_run("sock_diag_agrees_with_proc_net_tcp") {
        return;
    }
    let ns = Ns::new();
    let (diag, text) = in_netns(&ns.net, || {
        let v4 = TcpListener::bind("192.0.2.1:2999").unwrap();
        let dual = TcpListener::bind("[::]:2998").unwrap();
        let _v6 = TcpListener::bind("[2001:db8::1]:2997").unwrap();
        let _c1 = std::net::TcpStream::connect("192.0.2.1:2999").unwrap();
        let _c2 = std::net::TcpStream::connect("192.0.2.1:2998").unwrap();
        let _a1 = v4.accept().unwrap();
        let _a2 = dual.accept().unwrap();
        let states = sockets::States::LISTEN.and(sockets::States::ESTABLISHED);
        let diag = sockets::tcp_sockets(Path::new("/proc"), states).unwrap();
        let mut text = Vec::new();
        for f in ["tcp", "tcp6"] {
            let t = std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).unwrap();
            text.extend(sockets::parse_tcp_table(&t));
        }
        (diag, text)
    });
    let set = |v: &[sockets::TcpEntry]| -> BTreeSet<String> {
        v.iter()
            .filter(|e| matches!(e.state, sockets::TCP_LISTEN | sockets::TCP_ESTABLISHED))
            .map(|e| format!("{:?} {:?} {} {}", e.local, e.remote, e.state, e.inode))
            .collect()
    };
    assert_eq!(set(&diag), set(&text));
    // Three listeners and four ends of two connections.
    assert_eq!(set(&diag).len(), 7, "{diag:?}");
}

fn sockets(s: &[live::Socket]) -> BTreeSet<(IpAddr, u16)> {
    s.iter().map(|s| (s.addr, s.port)).collect()
}

#[test]
fn live_listeners_match_the_parsed_config() {
    if !can_run("live_listeners_match_the_parsed_config") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hostkey = dir.path().join("hostkey");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&hostkey));
    let etc = dir.path().join("etc/ssh");
    std::fs::create_dir_all(&etc).unwrap();
    let config = etc.join("sshd_config");
    let text = format!(
        "Port 2222\nPort 2223\nListenAddress 192.0.2.1\nListenAddress [2001:db8::1]:2200\n\
         HostKey {}\nPidFile none\nUsePAM no\n",
        hostkey.display()
    );
    std::fs::write(&config, &text).unwrap();
    let root = Root::new(dir.path()).unwrap();
    let cfg = Config::load(&root).unwrap();
    let (listen, configured, _) = eval::listen(&eval::global(&cfg).unwrap());
    let expected: BTreeSet<(IpAddr, u16)> =
        listen.iter().map(|l| (l.addr.unwrap(), l.port)).collect();
    assert_eq!(expected.len(), 3);

    let mut ns = Ns::new();
    ns.start_sshd(&config);
    let want = expected.clone();
    let (found, elapsed) = in_netns(&ns.net, move || {
        // A listener of another program in the same namespace must not count.
        let other = TcpListener::bind("192.0.2.1:2999").unwrap();
        let t = Instant::now();
        let mut found = Vec::new();
        for _ in 0..100 {
            found = live::sshd_listeners(Path::new("/proc")).unwrap();
            if sockets(&found) == want {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(other);
        (found, t.elapsed())
    });
    eprintln!(
        "live sshd sockets found in {elapsed:?}: {:?}",
        sockets(&found)
    );
    assert_eq!(sockets(&found), expected, "live sockets vs parsed config");

    let live_ports: Vec<u16> = found.iter().map(|s| s.port).collect();
    let (ports, warnings) = reconcile(&PortEvidence {
        configured: configured.clone(),
        live: Some(live_ports.clone()),
        ..Default::default()
    });
    assert_eq!(ports, [2200, 2222, 2223]);
    assert!(warnings.is_empty(), "{warnings:?}");

    // The operator edits the config and forgets to restart sshd.
    std::fs::write(&config, text.replace("Port 2223", "Port 2300")).unwrap();
    let cfg = Config::load(&root).unwrap();
    let (_, configured, _) = eval::listen(&eval::global(&cfg).unwrap());
    let (ports, warnings) = reconcile(&PortEvidence {
        configured,
        live: Some(live_ports),
        ..Default::default()
    });
    assert_eq!(ports, [2200, 2222, 2223, 2300]);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("2223") && w.contains("not restarted")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("2300") && w.contains("restart sshd")),
        "{warnings:?}"
    );
}

/// Wait (bounded: 100 × 50 ms) until sshd in `ns` listens on addr:port.
fn wait_listening(ns: &Ns, addr: IpAddr, port: u16) -> bool {
    in_netns(&ns.net, move || {
        for _ in 0..100 {
            let found = live::sshd_listeners(Path::new("/proc")).unwrap_or_default();
            if found.iter().any(|s| s.addr == addr && s.port == port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    })
}

/// The account rule `account_blockers` states (a `!` password locks key logins when UsePAM is
/// no, not when it is yes), checked against the real sshd and ssh.
#[test]
fn locked_root_password_blocks_keys_only_without_pam() {
    use ovh_access::sshd::{account_blockers, read_account, Setting};
    if !can_run("locked_root_password_blocks_keys_only_without_pam") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["hostkey", "client"] {
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join(k)));
    }
    let ak = d.join("authorized_keys");
    std::fs::copy(d.join("client.pub"), &ak).unwrap();
    let config = d.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port 2222\nListenAddress 192.0.2.1\nHostKey {}\nPidFile none\nUsePAM no\n\
             StrictModes no\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n",
            d.join("hostkey").display(),
            ak.display()
        ),
    )
    .unwrap();
    // A sandbox root describing the same account, for the library's prediction.
    let sandbox = d.join("root");
    std::fs::create_dir_all(sandbox.join("etc")).unwrap();
    std::fs::create_dir_all(sandbox.join("bin")).unwrap();
    std::fs::write(
        sandbox.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    std::fs::copy("/bin/sh", sandbox.join("bin/sh")).unwrap();
    let no_pam = Setting {
        value: false,
        source: None,
    };
    let addr: IpAddr = "192.0.2.1".parse().unwrap();
    let mut ns = Ns::new();
    let mut results = Vec::new();
    for (label, field) in [("locked", "!"), ("unlocked", "*")] {
        let shadow = d.join(format!("shadow-{label}"));
        let line = format!("root:{field}:19000:0:99999:7:::\n");
        std::fs::write(&shadow, &line).unwrap();
        std::fs::write(sandbox.join("etc/shadow"), &line).unwrap();
        let account = read_account(&Root::new(&sandbox).unwrap(), "root").unwrap();
        let predicted_ok = account_blockers(&account, &no_pam, 20000).is_empty();
        ns.start_sshd_with(&config, Some(&shadow));
        assert!(
            wait_listening(&ns, addr, 2222),
            "sshd did not start ({label})"
        );
        let ok = ns.ssh_ok(&d.join("client"), "192.0.2.1", 2222);
        results.push((label, predicted_ok, ok));
    }
    eprintln!("(shadow, predicted login, real login): {results:?}");
    assert_eq!(
        results,
        [("locked", false, false), ("unlocked", true, true)]
    );
}

/// The whole "will the support key work" prediction (probe → per-address effective settings →
/// blockers) against real logins with an RSA key (the support keys' type), from each support
/// address in turn (all local to the namespace, chosen with `ssh -b`).
#[test]
fn blockers_predict_real_logins() {
    use ovh_access::sshd::{blockers, probe};
    if !can_run("blockers_predict_real_logins") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(d.join("hostkey")));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(d.join("client")));
    let ak = d.join("authorized_keys");
    std::fs::copy(d.join("client.pub"), &ak).unwrap();
    let shadow = d.join("shadow");
    std::fs::write(&shadow, "root:*:19000:0:99999:7:::\n").unwrap();
    let prefix = format!(
        "Port 2222\nHostKey {}\nPidFile none\nUsePAM no\nStrictModes no\nAuthorizedKeysFile {}\n",
        d.join("hostkey").display(),
        ak.display()
    );
    let cases = [
        "PermitRootLogin prohibit-password\n",
        "Match Address 192.0.2.0/24\n\tPermitRootLogin no\n",
        "AllowUsers admin root@198.51.100.7\n",
        "DenyUsers root@192.0.2.*,2001:db8::*\n",
        "PubkeyAcceptedAlgorithms -rsa*\nMatch Address 203.0.113.0/24\n\tPubkeyAcceptedAlgorithms +ssh-rsa\n",
        "AuthenticationMethods publickey,password\nMatch Address 2001:db8::/32\n\tAuthenticationMethods publickey\n",
        "AllowGroups wheel\n",
        "PermitRootLogin forced-commands-only\n",
        "PubkeyAuthentication no\nMatch Address 198.51.100.7\n\tPubkeyAuthentication yes\n",
        "Match User root Address *,!203.0.113.5\n\tAuthorizedKeysFile none\n",
    ];
    let sources = ["192.0.2.10", "198.51.100.7", "203.0.113.5", "2001:db8::10"];
    let addrs: Vec<IpAddr> = sources.iter().map(|a| a.parse().unwrap()).collect();
    let mut ns = Ns::new();
    ns.sh(
        "ip addr add 192.0.2.10/24 dev d0 && ip addr add 198.51.100.7/24 dev d0 && \
         ip addr add 203.0.113.5/24 dev d0 && ip -6 addr add 2001:db8::10/64 dev d0 nodad",
    );
    let sandbox = d.join("root");
    std::fs::create_dir_all(sandbox.join("etc/ssh")).unwrap();
    let mut mismatches = Vec::new();
    let (mut logins, mut accepted) = (0, 0);
    for case in cases {
        let text = format!("{prefix}{case}");
        std::fs::write(d.join("sshd_config"), &text).unwrap();
        std::fs::write(sandbox.join("etc/ssh/sshd_config"), &text).unwrap();
        let facts = probe(&Root::new(&sandbox).unwrap(), &addrs, "x").unwrap();
        ns.start_sshd_with(&d.join("sshd_config"), Some(&shadow));
        assert!(
            wait_listening(&ns, "0.0.0.0".parse().unwrap(), 2222),
            "sshd did not start:\n{text}"
        );
        for (src, (addr, eff)) in sources.iter().zip(&facts.per_address) {
            let g = ["root".to_string()];
            let b = blockers("ssh-rsa", eff, "root", &g, *addr, src);
            let target = if addr.is_ipv4() {
                "192.0.2.1"
            } else {
                "2001:db8::1"
            };
            let real = ns.ssh_from(&d.join("client"), Some(src), target, 2222);
            logins += 1;
            accepted += usize::from(real);
            if real != b.is_empty() {
                mismatches.push(format!(
                    "{case:?} from {src}: real login {real}, blockers {b:?}"
                ));
            }
        }
    }
    eprintln!("{logins} real logins ({accepted} accepted) compared with the prediction");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // Both outcomes occur, so agreement is not vacuous.
    assert!(
        accepted >= 10 && logins - accepted >= 10,
        "{accepted} of {logins}"
    );
}
