//! The built-in profiles, issue 10's decision table and `resolve_target`, without root and
//! without a network: DNS is a closure here (the real resolver is tested in dns_netns.rs).
use std::cell::Cell;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;
use ovh_access::cli::{Cli, Command as Cmd};
use ovh_access::dns::DnsError;
use ovh_access::error::{exit_code, EXIT_USAGE};
use ovh_access::root::Root;
use ovh_access::support::{
    choose_addresses, profile, profiles, resolve_target, AddressSource, SupportKey,
};
use ovh_access::support::{Region, TargetRequest};

/// A test key (not OVH's): `ssh-keygen -lf` gives SHA256:OaChtsHD8J9245JvxQUWUJmckCcbkkROE8ybQ/116Ak.
const TEST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA tester@lab";
const TEST_FP: &str = "SHA256:OaChtsHD8J9245JvxQUWUJmckCcbkkROE8ybQ/116Ak";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|s| ip(s)).collect()
}

/// Stands in for src/keys' parser: `type blob [comment]` lines, `#` comments skipped.
fn parse(bytes: &[u8], label: &str) -> anyhow::Result<Vec<SupportKey>> {
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{label}: not text"))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut w = l.split_whitespace();
            let (alg, blob) = (w.next().unwrap(), w.next().unwrap_or(""));
            SupportKey::from_parts(alg, blob, &w.collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// The target request the command line `grant ARGV` turns into.
fn args(argv: &[&str]) -> TargetRequest {
    let mut full = vec!["ovh-access", "grant"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full)
        .expect("valid command line")
        .command
    {
        Cmd::Grant(g) => g.target.request(),
        other => panic!("not grant: {other:?}"),
    }
}

fn timeout(host: &str) -> DnsError {
    DnsError::Timeout {
        host: host.into(),
        resolver: "192.0.2.53:53".into(),
        after: Duration::from_secs(2),
    }
}

fn key_file(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_string()
}

fn eu_published() -> Vec<IpNet> {
    profile(Region::Eu).published
}

#[test]
fn key_files_match_ssh_keygen() {
    // Cross-check the compiled-in keys with OpenSSH itself, on the repository's data files.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for p in profiles() {
        let file = root.join(format!("data/ovh-{}.pub", p.region));
        let out = match Command::new("ssh-keygen").arg("-lf").arg(&file).output() {
            Ok(o) => o,
            Err(e) => {
                eprintln!("SKIP key_files_match_ssh_keygen: no ssh-keygen ({e})");
                return;
            }
        };
        assert!(out.status.success(), "ssh-keygen -lf {}", file.display());
        let line = String::from_utf8(out.stdout).unwrap();
        // "4096 SHA256:... support@cache-ng (RSA)"
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], "4096", "{line}");
        assert_eq!(fields[1], p.key.fingerprint, "{}", p.region);
        assert_eq!(fields[2], p.key.comment, "{}", p.region);
    }
}

#[test]
fn profiles_name_their_hosts() {
    let all = profiles();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].region, all[0].host), ("eu", "cache-ng.ovh.net"));
    assert_eq!((all[1].region, all[1].host), ("ca", "cache-ng.ovh.ca"));
    assert_eq!(all[0].published_addresses().len(), 9);
    assert_eq!(all[1].published_addresses().len(), 2);
}

// ---- the decision table (issue 10, item 2) ----

#[test]
fn inside_the_published_list_is_used() {
    let p = eu_published();
    let (a, src, w) = choose_addresses(
        Some(&p),
        Ok(ips(&[
            "217.182.145.220",
            "178.33.222.162",
            "217.182.145.220",
        ])),
        false,
        false,
    )
    .unwrap();
    assert_eq!(a, ips(&["178.33.222.162", "217.182.145.220"]));
    assert_eq!(src, AddressSource::DnsWithinPublished);
    assert!(w.is_empty());
}

#[test]
fn outside_the_published_list_is_refused_naming_it() {
    let p = eu_published();
    let err = choose_addresses(
        Some(&p),
        Ok(ips(&["178.33.222.162", "203.0.113.7"])),
        false,
        false,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("203.0.113.7"), "{msg}");
    assert!(
        !msg.contains("178.33.222.162,"),
        "only the outside answers are named: {msg}"
    );
    assert!(msg.contains("--trust-dns"), "{msg}");
    assert_eq!(exit_code(&err), EXIT_USAGE);
}

#[test]
fn outside_with_trust_dns_is_used_with_a_warning() {
    let p = eu_published();
    let (a, src, w) = choose_addresses(
        Some(&p),
        Ok(ips(&["2001:db8::7", "178.33.222.162", "203.0.113.7"])),
        true,
        false,
    )
    .unwrap();
    assert_eq!(a, ips(&["178.33.222.162", "203.0.113.7", "2001:db8::7"]));
    assert_eq!(src, AddressSource::Dns);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("203.0.113.7, 2001:db8::7"), "{}", w[0]);
}

#[test]
fn dns_failure_falls_back_to_the_published_list() {
    let p = profile(Region::Ca).published;
    for trust in [false, true] {
        let (a, src, w) =
            choose_addresses(Some(&p), Err(timeout("cache-ng.ovh.ca")), trust, false).unwrap();
        assert_eq!(a, ips(&["8.33.137.120", "149.56.85.250"]));
        assert_eq!(src, AddressSource::Published);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("cache-ng.ovh.ca") && w[0].contains("192.0.2.53"),
            "{}",
            w[0]
        );
    }
}

#[test]
fn no_dns_uses_the_published_list_silently() {
    let p = eu_published();
    // Whatever DNS would have said is not looked at.
    let (a, src, w) = choose_addresses(Some(&p), Ok(ips(&["203.0.113.7"])), false, true).unwrap();
    assert_eq!(a, profile(Region::Eu).published_addresses());
    assert_eq!(src, AddressSource::Published);
    assert!(w.is_empty());
}

#[test]
fn without_a_profile_dns_decides_alone() {
    let (a, src, _) =
        choose_addresses(None, Ok(ips(&["203.0.113.9", "192.0.2.1"])), false, false).unwrap();
    assert_eq!(
        (a, src),
        (ips(&["192.0.2.1", "203.0.113.9"]), AddressSource::Dns)
    );
    let err = choose_addresses(None, Err(timeout("support.example")), false, false).unwrap_err();
    assert!(err.to_string().contains("support.example"));
    assert_eq!(exit_code(&err), EXIT_USAGE);
    let err = choose_addresses(None, Ok(ips(&["192.0.2.1"])), false, true).unwrap_err();
    assert!(err.to_string().contains("--no-dns"));
}

#[test]
fn sources_serialize_for_json() {
    assert_eq!(
        serde_json::to_string(&AddressSource::DnsWithinPublished).unwrap(),
        "\"dns_within_published\""
    );
}

// ---- resolve_target ----

fn no_dns_expected(host: &str) -> Result<Vec<IpAddr>, DnsError> {
    panic!("DNS must not be asked here (asked for {host})")
}

#[test]
fn default_is_eu_with_the_builtin_key() {
    let asked = Cell::new(0);
    let dns = |h: &str| {
        asked.set(asked.get() + 1);
        assert_eq!(h, "cache-ng.ovh.net");
        Ok(ips(&["217.182.145.216", "178.33.222.162"]))
    };
    let t = resolve_target(&Root::system(), &args(&[]), &parse, &dns).unwrap();
    assert_eq!(asked.get(), 1);
    assert_eq!(t.profile, Some("eu"));
    assert_eq!(t.host, "cache-ng.ovh.net");
    assert!(t.key_is_builtin);
    assert_eq!(t.keys, vec![profile(Region::Eu).key]);
    assert_eq!(t.keys[0].comment, "support@cache-ng");
    assert_eq!(t.addresses, ips(&["178.33.222.162", "217.182.145.216"]));
    assert_eq!(t.source, AddressSource::DnsWithinPublished);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn region_ca_no_dns_never_asks() {
    let t = resolve_target(
        &Root::system(),
        &args(&["--region", "ca", "--no-dns"]),
        &parse,
        &no_dns_expected,
    )
    .unwrap();
    assert_eq!(t.profile, Some("ca"));
    assert_eq!(t.addresses, ips(&["8.33.137.120", "149.56.85.250"]));
    assert_eq!(t.source, AddressSource::Published);
    assert_eq!(t.keys[0].comment, "support@cache-ng-ca");
}

#[test]
fn dead_resolver_uses_published_with_a_warning() {
    let t = resolve_target(
        &Root::system(),
        &args(&["--region", "eu"]),
        &parse,
        &|h: &str| Err(timeout(h)),
    )
    .unwrap();
    assert_eq!(t.source, AddressSource::Published);
    assert_eq!(t.addresses.len(), 9);
    assert!(
        t.warnings.iter().any(|w| w.contains("no answer")),
        "{:?}",
        t.warnings
    );
}

#[test]
fn lab_dns_needs_trust_dns_and_allow_private() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(dir.path(), "k.pub", TEST_KEY);
    let lab = |_: &str| Ok(ips(&["192.0.2.10", "2001:db8::10"]));
    let err = resolve_target(
        &Root::system(),
        &args(&["--region", "eu", "--key-file", &kf]),
        &parse,
        &lab,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("192.0.2.10, 2001:db8::10"),
        "{err}"
    );
    assert_eq!(exit_code(&err), EXIT_USAGE);
    let err = resolve_target(
        &Root::system(),
        &args(&["--region", "eu", "--key-file", &kf, "--trust-dns"]),
        &parse,
        &lab,
    )
    .unwrap_err();
    assert!(err.to_string().contains("--allow-private"), "{err}");
    let t = resolve_target(
        &Root::system(),
        &args(&[
            "--region",
            "eu",
            "--key-file",
            &kf,
            "--trust-dns",
            "--allow-private",
        ]),
        &parse,
        &lab,
    )
    .unwrap();
    assert_eq!(t.addresses, ips(&["192.0.2.10", "2001:db8::10"]));
    assert_eq!(t.source, AddressSource::Dns);
    assert!(!t.key_is_builtin);
    assert_eq!(t.keys[0].fingerprint, TEST_FP);
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("replaces region eu's built-in key")),
        "{:?}",
        t.warnings
    );
}

#[test]
fn key_file_with_the_builtin_key_stays_builtin() {
    let kf = concat!(env!("CARGO_MANIFEST_DIR"), "/data/ovh-ca.pub");
    let t = resolve_target(
        &Root::system(),
        &args(&["--region", "ca", "--no-dns", "--key-file", kf]),
        &parse,
        &no_dns_expected,
    )
    .unwrap();
    assert!(t.key_is_builtin);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn other_host_requires_a_key_file() {
    let err = resolve_target(
        &Root::system(),
        &args(&["--host", "support.example.net"]),
        &parse,
        &no_dns_expected,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("--key-file is required with --host"),
        "{err}"
    );
    assert_eq!(exit_code(&err), EXIT_USAGE);

    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(dir.path(), "k.pub", TEST_KEY);
    let t = resolve_target(
        &Root::system(),
        &args(&["--host", "support.example.net", "--key-file", &kf]),
        &parse,
        &|h: &str| {
            assert_eq!(h, "support.example.net");
            Ok(ips(&["198.51.100.4"]))
        },
    );
    // A documentation answer from DNS is refused without --allow-private...
    assert!(t
        .unwrap_err()
        .to_string()
        .contains("198.51.100.4 (documentation)"));
    let t = resolve_target(
        &Root::system(),
        &args(&[
            "--host",
            "support.example.net",
            "--key-file",
            &kf,
            "--allow-private",
        ]),
        &parse,
        &|_: &str| Ok(ips(&["198.51.100.4"])),
    )
    .unwrap();
    assert_eq!((t.profile, t.source), (None, AddressSource::Dns));
    assert!(!t.key_is_builtin);
}

#[test]
fn operator_addresses_are_used_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(dir.path(), "k.pub", TEST_KEY);
    let t = resolve_target(
        &Root::system(),
        &args(&[
            "--key-file",
            &kf,
            "--address",
            "203.0.113.5",
            "--address",
            "2001:db8::5",
        ]),
        &parse,
        &no_dns_expected,
    )
    .unwrap();
    assert_eq!(t.addresses, ips(&["203.0.113.5", "2001:db8::5"]));
    assert_eq!(t.source, AddressSource::Operator);
    assert!(t
        .warnings
        .iter()
        .any(|w| w.contains("outside the addresses published")));
    // ... but never a loopback address.
    let err = resolve_target(
        &Root::system(),
        &args(&["--key-file", &kf, "--address", "127.0.0.1"]),
        &parse,
        &no_dns_expected,
    )
    .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1 (loopback)"), "{err}");
}

#[test]
fn fingerprint_mismatch_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(dir.path(), "k.pub", TEST_KEY);
    let want = "SHA256:JAFN+LjSd5rMut8LHygxPjyVQ9XhOv+IR6qEVA5+okU";
    let err = resolve_target(
        &Root::system(),
        &args(&["--no-dns", "--key-file", &kf, "--fingerprint", want]),
        &parse,
        &no_dns_expected,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(TEST_FP) && msg.contains(want), "{msg}");
    assert_eq!(exit_code(&err), EXIT_USAGE);
    // The right one, written without the prefix, passes; so does the built-in key's own.
    let fp = TEST_FP.trim_start_matches("SHA256:");
    resolve_target(
        &Root::system(),
        &args(&["--no-dns", "--key-file", &kf, "--fingerprint", fp]),
        &parse,
        &no_dns_expected,
    )
    .unwrap();
    resolve_target(
        &Root::system(),
        &args(&["--no-dns", "--fingerprint", want]),
        &parse,
        &no_dns_expected,
    )
    .unwrap();
}

#[test]
fn missing_key_file_names_the_path() {
    let err = resolve_target(
        &Root::system(),
        &args(&["--no-dns", "--key-file", "/nonexistent/ovh.pub"]),
        &parse,
        &no_dns_expected,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ovh.pub"), "{err}");
    assert_eq!(exit_code(&err), EXIT_USAGE);
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(dir.path(), "empty.pub", "# nothing\n");
    let err = resolve_target(
        &Root::system(),
        &args(&["--no-dns", "--key-file", &kf]),
        &parse,
        &no_dns_expected,
    )
    .unwrap_err();
    assert!(err.to_string().contains("holds no public key"), "{err}");
}

#[test]
fn host_of_a_profile_is_that_profile() {
    let t = resolve_target(
        &Root::system(),
        &args(&["--host", "CACHE-NG.ovh.ca.", "--no-dns"]),
        &parse,
        &no_dns_expected,
    )
    .unwrap();
    assert_eq!(
        (t.profile, t.host.as_str()),
        (Some("ca"), "cache-ng.ovh.ca")
    );
    assert!(t.key_is_builtin);
    let err = resolve_target(
        &Root::system(),
        &args(&["--host", "cache-ng.ovh.ca", "--region", "eu"]),
        &parse,
        &no_dns_expected,
    )
    .unwrap_err();
    assert!(err.to_string().contains("drop one"), "{err}");
    assert_eq!(exit_code(&err), EXIT_USAGE);
}

#[test]
fn other_host_with_region_says_the_region_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(dir.path(), "k.pub", TEST_KEY);
    let t = resolve_target(
        &Root::system(),
        &args(&[
            "--region",
            "ca",
            "--host",
            "support.example.net",
            "--key-file",
            &kf,
            "--address",
            "198.51.100.9",
        ]),
        &parse,
        &no_dns_expected,
    )
    .unwrap();
    assert_eq!(t.profile, None);
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("not region ca's host")),
        "{:?}",
        t.warnings
    );
}
