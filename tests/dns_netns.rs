//! The real resolver against a real DNS server: dnsmasq in a throwaway network namespace,
//! answered for the support host with documentation addresses. Root only; without root (or
//! without `ip`/`dnsmasq`) each test says so and skips.
//!
//! Safety: a uniquely named namespace, deleted with every process in it when the guard drops
//! (also on panic); addresses only from 192.0.2.0/24 and 2001:db8::/32; dnsmasq reads no
//! configuration, no resolv.conf and no hosts file of this machine. Only the test's resolver
//! thread enters the namespace (setns on that thread alone).
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ovh_access::cli::{Cli, Command as Cmd, TargetArgs};
use ovh_access::dns::{self, resolve, validate, DnsError};
use ovh_access::error::{exit_code, EXIT_USAGE};
use ovh_access::root::Root;
use ovh_access::support::{resolve_target, AddressSource, SupportKey};

// The namespace guard and helpers of the root-only suite, one copy for both.
#[path = "../netns-tests/common/mod.rs"]
mod netns;
use netns::{in_netns, stop, wait_until, Netns};

const SERVER: &str = "192.0.2.53";
/// On the namespace's interface, with nothing listening: queries to it are never answered.
const DEAD: &str = "192.0.2.54";
const DEAD2: &str = "192.0.2.55";

fn can_run(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "SKIP {test}: needs root (network namespaces); run `cargo test --test dns_netns` as root"
        );
        return false;
    }
    for (tool, probe, pkg) in [
        ("ip", "-V", "iproute2"),
        ("dnsmasq", "--version", "dnsmasq"),
    ] {
        if Command::new(tool).arg(probe).output().is_err() {
            eprintln!("SKIP {test}: `{tool}` is missing; install {pkg}");
            return false;
        }
    }
    true
}

/// A namespace with one veth pair (both ends inside; no dummy module needed), one end carrying the server's addresses, and dnsmasq on it.
struct DnsLab {
    ns: Netns,
    dnsmasq: Option<Child>,
    _dir: tempfile::TempDir,
}

impl DnsLab {
    fn new() -> DnsLab {
        let mut lab = DnsLab {
            ns: Netns::new("oa-dns"),
            dnsmasq: None,
            _dir: tempfile::tempdir().unwrap(),
        };
        lab.ns.sh(&format!(
            "ip link set lo up && ip link add d0 type veth peer name d1 && ip link set d1 up && \
                 ip addr add {SERVER}/24 dev d0 && ip addr add {DEAD}/24 dev d0 && \
                 ip addr add {DEAD2}/24 dev d0 && \
                 ip addr add 2001:db8::53/64 dev d0 nodad && ip link set d0 up"
        ));
        let pid = lab._dir.path().join("dnsmasq.pid");
        let child = lab
            .ns
            .cmd("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={SERVER}"),
                "--port=53",
                "--user=root",
                &format!("--pid-file={}", pid.display()),
                // The support host, as a lab sees it: documentation addresses.
                "--host-record=cache-ng.ovh.net,192.0.2.10,2001:db8::10",
                "--host-record=v4only.ovh.net,192.0.2.11",
                "--host-record=private.ovh.net,10.20.30.40",
                // Authoritative for ovh.net: any other name there is NXDOMAIN.
                "--local=/ovh.net/",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dnsmasq");
        lab.dnsmasq = Some(child);
        // Ready when it listens; bounded in count and time.
        let ready = wait_until(Duration::from_secs(5), || {
            let out = lab
                .ns
                .cmd("ss")
                .args(["-Hlun", "sport = :53"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains(SERVER)
        });
        assert!(ready, "dnsmasq did not start listening in {}", lab.ns.name);
        lab
    }
}

// dnsmasq is reaped here; the namespace guard then kills what is left and deletes it.
impl Drop for DnsLab {
    fn drop(&mut self) {
        stop(&mut self.dnsmasq);
    }
}

fn server() -> Option<SocketAddr> {
    Some(SocketAddr::new(SERVER.parse().unwrap(), 53))
}

fn ips(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn a_and_aaaa_through_resolver_and_resolv_conf() {
    if !can_run("a_and_aaaa_through_resolver_and_resolv_conf") {
        return;
    }
    let lab = DnsLab::new();
    let got = in_netns(&lab.ns, || {
        resolve(
            &Root::system(),
            "cache-ng.ovh.net",
            server(),
            Duration::from_secs(3),
        )
    });
    assert_eq!(got.unwrap(), ips(&["192.0.2.10", "2001:db8::10"]));

    // The same through a sandbox root's resolv.conf; its search list is not applied.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/resolv.conf"),
        format!("search ovh.net\noptions ndots:5 attempts:5 timeout:30\nnameserver {SERVER}\n"),
    )
    .unwrap();
    let root = Root::new(dir.path()).unwrap();
    let (full, short) = in_netns(&lab.ns, move || {
        (
            resolve(&root, "cache-ng.ovh.net.", None, Duration::from_secs(3)),
            resolve(&root, "cache-ng", None, Duration::from_secs(3)),
        )
    });
    assert_eq!(full.unwrap(), ips(&["192.0.2.10", "2001:db8::10"]));
    let short = short.unwrap_err();
    assert!(!matches!(short, DnsError::Timeout { .. }), "{short:?}");
    assert!(short.to_string().contains(SERVER), "{short}");

    // A name with only an A record: the AAAA query's empty answer is not a failure.
    let v4 = in_netns(&lab.ns, || {
        resolve(
            &Root::system(),
            "v4only.ovh.net",
            server(),
            Duration::from_secs(3),
        )
    });
    assert_eq!(v4.unwrap(), ips(&["192.0.2.11"]));
}

#[test]
fn dead_servers_listed_first_leave_time_for_a_live_one() {
    if !can_run("dead_servers_listed_first_leave_time_for_a_live_one") {
        return;
    }
    let lab = DnsLab::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/resolv.conf"),
        format!("nameserver {DEAD}\nnameserver {DEAD2}\nnameserver {SERVER}\n"),
    )
    .unwrap();
    let root = Root::new(dir.path()).unwrap();
    let (got, took) = in_netns(&lab.ns, move || {
        let start = Instant::now();
        let r = resolve(&root, "cache-ng.ovh.net", None, Duration::from_secs(3));
        (r, start.elapsed())
    });
    assert_eq!(got.unwrap(), ips(&["192.0.2.10", "2001:db8::10"]));
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn nxdomain_names_host_and_resolver() {
    if !can_run("nxdomain_names_host_and_resolver") {
        return;
    }
    let lab = DnsLab::new();
    let err = in_netns(&lab.ns, || {
        resolve(
            &Root::system(),
            "nx.ovh.net",
            server(),
            Duration::from_secs(3),
        )
    })
    .unwrap_err();
    assert!(matches!(err, DnsError::NxDomain { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("nx.ovh.net") && msg.contains(SERVER) && msg.contains("NXDOMAIN"),
        "{msg}"
    );
}

#[test]
fn dead_resolver_times_out_on_time() {
    if !can_run("dead_resolver_times_out_on_time") {
        return;
    }
    let lab = DnsLab::new();
    let dead = SocketAddr::new(DEAD.parse().unwrap(), 53);
    let (err, took) = in_netns(&lab.ns, move || {
        let start = Instant::now();
        let r = resolve(
            &Root::system(),
            "cache-ng.ovh.net",
            Some(dead),
            Duration::from_millis(1500),
        );
        (r, start.elapsed())
    });
    let err = err.unwrap_err();
    assert!(matches!(err, DnsError::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(err.to_string().contains(DEAD), "{err}");
}

#[test]
fn private_answer_refused_without_allow_private() {
    if !can_run("private_answer_refused_without_allow_private") {
        return;
    }
    let lab = DnsLab::new();
    let got = in_netns(&lab.ns, || {
        resolve(
            &Root::system(),
            "private.ovh.net",
            server(),
            Duration::from_secs(3),
        )
    })
    .unwrap();
    assert_eq!(got, ips(&["10.20.30.40"]));
    let err = validate(got.clone(), false, "the DNS answer for private.ovh.net").unwrap_err();
    assert!(err.to_string().contains("10.20.30.40 (private)"), "{err}");
    assert!(err.to_string().contains("--allow-private"), "{err}");
    assert_eq!(validate(got, true, "x").unwrap(), ips(&["10.20.30.40"]));
}

/// Stands in for src/keys' parser.
fn parse(bytes: &[u8], _label: &str) -> anyhow::Result<Vec<SupportKey>> {
    let text = String::from_utf8_lossy(bytes);
    let mut w = text.split_whitespace();
    Ok(vec![SupportKey::from_parts(
        w.next().unwrap(),
        w.next().unwrap(),
        "lab",
    )?])
}

fn target_args(argv: &[&str]) -> TargetArgs {
    let mut full = vec!["ovh-access", "grant"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full).unwrap().command {
        Cmd::Grant(g) => g.target,
        _ => unreachable!(),
    }
}

#[test]
fn region_decision_against_a_real_resolver() {
    if !can_run("region_decision_against_a_real_resolver") {
        return;
    }
    let lab = DnsLab::new();
    let dir = tempfile::tempdir().unwrap();
    let kf = dir.path().join("k.pub");
    std::fs::write(
        &kf,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA lab\n",
    )
    .unwrap();
    let kf = kf.to_str().unwrap().to_string();
    let run = |extra: &[&str], resolver: &str| {
        let mut argv = vec!["--region", "eu", "--key-file", &kf, "--resolver", resolver];
        argv.extend_from_slice(extra);
        let args = target_args(&argv).request();
        in_netns(&lab.ns, move || {
            let root = Root::system();
            let dns = dns::lookup_with(&root, args.dns.resolver, Duration::from_millis(1500));
            resolve_target(&root, &args, &parse, &dns).map_err(|e| (e.to_string(), exit_code(&e)))
        })
    };
    // The lab's answer is outside OVH's published list: refused, naming it.
    let (msg, code) = run(&[], SERVER).unwrap_err();
    assert!(msg.contains("192.0.2.10, 2001:db8::10"), "{msg}");
    assert_eq!(code, EXIT_USAGE);
    // Trusted, and allowed although documentation addresses.
    let t = run(&["--trust-dns", "--allow-private"], SERVER).unwrap();
    assert_eq!(t.addresses, ips(&["192.0.2.10", "2001:db8::10"]));
    assert_eq!(t.source, AddressSource::Dns);
    // A dead resolver: the published list, with a warning.
    let t = run(&[], DEAD).unwrap();
    assert_eq!(t.source, AddressSource::Published);
    assert_eq!(t.addresses.len(), 9);
    assert!(
        t.warnings[1..].iter().any(|w| w.contains(DEAD)),
        "{:?}",
        t.warnings
    );
}
