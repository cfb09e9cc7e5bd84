//! Answer validation and the resolver's configuration handling, without root: no packet leaves
//! the machine (the only server used is a silent UDP socket on the loopback).
use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use ovh_access::dns::{resolv_conf_nameservers, resolve, validate, DnsError, MAX_ADDRESSES};
use ovh_access::error::{exit_code, EXIT_USAGE};
use ovh_access::root::Root;

fn ips(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn sorted_and_deduplicated() {
    let got = validate(
        ips(&[
            "2a01:4f8::1",
            "8.33.137.120",
            "149.56.85.250",
            "8.33.137.120",
        ]),
        false,
        "test",
    )
    .unwrap();
    assert_eq!(got, ips(&["8.33.137.120", "149.56.85.250", "2a01:4f8::1"]));
}

#[test]
fn never_usable_addresses_are_refused_even_when_private_is_allowed() {
    for (bad, why) in [
        ("0.0.0.0", "unspecified"),
        ("127.0.0.53", "loopback"),
        ("224.0.0.1", "multicast"),
        ("169.254.1.1", "link-local"),
        ("255.255.255.255", "broadcast"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("ff02::1", "multicast"),
        ("fe80::1", "link-local"),
        ("::ffff:192.0.2.1", "IPv4-mapped"),
    ] {
        let err =
            validate(ips(&["178.33.222.162", bad]), true, "the DNS answer for x").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(bad) && msg.contains(why), "{bad}: {msg}");
        assert!(msg.starts_with("the DNS answer for x"), "{msg}");
        assert!(
            !msg.contains("178.33.222.162"),
            "only the refused ones are named: {msg}"
        );
        assert_eq!(exit_code(&err), EXIT_USAGE);
    }
}

#[test]
fn private_and_documentation_need_allow_private() {
    for bad in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "198.18.0.1",
        "fd00::1",
        "2001:db8::1",
    ] {
        let err = validate(ips(&[bad]), false, "o").unwrap_err();
        assert!(err.to_string().contains("--allow-private"), "{bad}: {err}");
        assert_eq!(validate(ips(&[bad]), true, "o").unwrap(), ips(&[bad]));
    }
    // Neighbours of the ranges are public.
    for ok in [
        "172.32.0.1",
        "100.128.0.1",
        "192.0.3.1",
        "198.20.0.1",
        "2001:db9::1",
    ] {
        assert_eq!(
            validate(ips(&[ok]), false, "o").unwrap(),
            ips(&[ok]),
            "{ok}"
        );
    }
}

#[test]
fn too_many_or_none_are_refused() {
    let many: Vec<IpAddr> = (1..=(MAX_ADDRESSES as u8 + 1))
        .map(|n| IpAddr::from([203, 0, 113, n]))
        .collect();
    let err = validate(many.clone(), true, "o").unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{} addresses", MAX_ADDRESSES + 1)),
        "{err}"
    );
    assert_eq!(
        validate(many[..MAX_ADDRESSES].to_vec(), true, "o")
            .unwrap()
            .len(),
        MAX_ADDRESSES
    );
    // Duplicates do not count twice.
    let mut dup = many[..MAX_ADDRESSES].to_vec();
    dup.extend_from_slice(&many[..4]);
    assert_eq!(validate(dup, true, "o").unwrap().len(), MAX_ADDRESSES);
    assert!(validate(vec![], true, "o").is_err());
}

#[test]
fn resolv_conf_like_glibc() {
    let text = "# generated\nsearch example.lan\nnameserver 192.0.2.1 # first\n\
                ;nameserver 192.0.2.99\nnameserver fe80::1%eth0\n  nameserver   2001:db8::53\n\
                nameserver bogus\nnameserver 192.0.2.4\noptions timeout:30 attempts:5\n";
    assert_eq!(
        resolv_conf_nameservers(text),
        ips(&["192.0.2.1", "fe80::1", "2001:db8::53"]),
        "comments skipped, scope dropped, at most 3 (MAXNS)"
    );
    assert!(resolv_conf_nameservers("domain example.lan\n").is_empty());
}

#[test]
fn resolv_conf_is_read_under_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path()).unwrap();
    let err = resolve(&root, "cache-ng.ovh.net", None, Duration::from_secs(1)).unwrap_err();
    match &err {
        DnsError::Other { resolver, .. } => {
            assert!(resolver.starts_with(dir.path().to_str().unwrap()), "{err}")
        }
        other => panic!("{other:?}"),
    }
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/resolv.conf"), "search lan\n").unwrap();
    let err = resolve(&root, "cache-ng.ovh.net", None, Duration::from_secs(1)).unwrap_err();
    assert!(err.to_string().contains("no nameserver line"), "{err}");
    assert!(err.to_string().contains("cache-ng.ovh.net"), "{err}");
}

#[test]
fn a_silent_resolver_times_out_within_the_deadline() {
    // Bound but never read: the query is queued and never answered (no ICMP error either).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sa = silent.local_addr().unwrap();
    let start = Instant::now();
    let err = resolve(
        &Root::system(),
        "cache-ng.ovh.net",
        Some(sa),
        Duration::from_millis(800),
    )
    .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, DnsError::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("cache-ng.ovh.net") && msg.contains(&sa.to_string()),
        "{msg}"
    );
    assert_eq!(exit_code(&err.into_bad_input()), EXIT_USAGE);
}

#[test]
fn an_address_is_not_looked_up() {
    let got = resolve(
        &Root::system(),
        "198.51.100.7",
        None,
        Duration::from_millis(10),
    )
    .unwrap();
    assert_eq!(got, ips(&["198.51.100.7"]));
}

#[test]
fn an_invalid_name_is_refused_before_any_query() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sa = silent.local_addr().unwrap();
    let long = "a".repeat(64) + ".example";
    let err = resolve(&Root::system(), &long, Some(sa), Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, DnsError::Other { .. }), "{err:?}");
    assert!(err.to_string().contains("not a valid host name"), "{err}");
}

proptest::proptest! {
    /// Whatever the input, an accepted set is the input's distinct addresses in order, and a
    /// refusal names at least one address of the input.
    #[test]
    fn accepted_sets_are_the_sorted_distinct_input(raw in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..40), private in proptest::bool::ANY) {
        let input: Vec<IpAddr> = raw.iter().map(|&n| IpAddr::from(std::net::Ipv4Addr::from(n))).collect();
        match validate(input.clone(), private, "o") {
            Ok(got) => {
                let mut want = input.clone();
                want.sort();
                want.dedup();
                proptest::prop_assert_eq!(got, want);
            }
            Err(e) => {
                let msg = e.to_string();
                proptest::prop_assert!(
                    input.iter().any(|a| msg.contains(&a.to_string())) || msg.contains("addresses"),
                    "{}", msg
                );
            }
        }
    }
}
