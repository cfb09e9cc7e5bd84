//! Issue 10 through the CLI: the built-in regions. A DNS answer outside OVH's published list opens
//! nothing unless `--trust-dns` says so; a dead resolver falls back to the published list; without
//! `--key-file` the built-in key is the one planned; `profiles` lists both regions.
use std::process::Command;

use crate::common::*;
use crate::topology::*;

/// OVH's published data (shared/data/README.md): fingerprint as `ssh-keygen -lf` prints it, the
/// key's own comment, the `from=` addresses.
const EU_FP: &str = "SHA256:JAFN+LjSd5rMut8LHygxPjyVQ9XhOv+IR6qEVA5+okU";
const CA_FP: &str = "SHA256:53L3gE3W8ErGs0ngusB680Uro8KB5tDGNe7lhnvJVdw";
const EU_ADDRS: [&str; 9] = [
    "178.33.222.162",
    "217.182.145.216",
    "217.182.145.217",
    "217.182.145.218",
    "217.182.145.219",
    "217.182.145.220",
    "217.182.145.221",
    "217.182.145.222",
    "217.182.145.223",
];
const CA_ADDRS: [&str; 2] = ["8.33.137.120", "149.56.85.250"];

/// An address on the DNS link where nothing answers (no neighbour: the query times out), and
/// dnsmasq's address on a port where nothing listens (the query is refused at once).
const SILENT_RESOLVER: &str = "192.0.2.54";
const CLOSED_RESOLVER: &str = "192.0.2.53:5353";

/// Everything a refused grant must leave as it was: the keys file's bytes, the ruleset, and the
/// recorded grant (none).
fn snapshot(t: &Topology) -> (Option<Vec<u8>>, String, serde_json::Value) {
    let status = json_of(&t.tool(["--json", "status"]));
    (
        std::fs::read(t.keys_file()).ok(),
        t.srv.ruleset(),
        status["granted"].clone(),
    )
}

#[test]
fn profiles_region_refuses_dns_outside_published_unless_trusted() {
    if !can_run("profiles_region_refuses_dns_outside_published_unless_trusted") {
        return;
    }
    let t = Topology::new(Opts::default());
    let key = t.support_pub();
    let key = key.to_str().unwrap();
    // dnsmasq answers cache-ng.ovh.net with the support host's documentation addresses, which
    // OVH does not publish: a spoofed answer, as far as the profile can tell.
    let base = [
        "grant",
        "--region",
        "eu",
        "--key-file",
        key,
        "--resolver",
        DNS_V4,
        "--allow-private",
    ];
    let before = snapshot(&t);
    assert_eq!(before.2, serde_json::Value::Null, "nothing granted yet");

    let out = t.tool(base);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "grant must refuse DNS answers outside the published list:\n{}",
        describe(&out)
    );
    assert!(
        stderr.contains(SUP_V4) && stderr.contains(SUP_V6) && stderr.contains("outside"),
        "the refusal must name the answers outside the list:\n{}",
        describe(&out)
    );
    assert_eq!(snapshot(&t), before, "a refused grant changed something");
    assert!(
        reachable(&t.sup, &[SRV_SUP_V4, SRV_SUP_V6], t.port).is_empty(),
        "a refused grant opened the firewall"
    );

    // The operator vouches for the answer: the same grant with --trust-dns goes through.
    let mut trusted = base.to_vec();
    trusted.extend(["--trust-dns", "--json"]);
    let out = t.tool_ok(trusted);
    let j = json_of(&out);
    assert_eq!(j["profile"], "eu", "{}", describe(&out));
    assert_eq!(j["address_source"], "dns", "{}", describe(&out));
    assert_eq!(
        j["key_is_builtin"], false,
        "--key-file replaced the built-in key"
    );
    assert_eq!(
        j["addresses"],
        serde_json::json!([SUP_V4, SUP_V6]),
        "{}",
        describe(&out)
    );
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains("--trust-dns") && warned.contains("replaces region eu's built-in key"),
        "grant must say it trusted DNS and replaced the built-in key:\n{warned}"
    );
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V6, t.port);
    assert!(
        reachable(&t.stranger, &[SRV_STR_V4, SRV_STR_V6], t.port).is_empty(),
        "the stranger reached sshd"
    );
}

/// `grant --region R --dry-run` without `--key-file`, through a resolver that cannot answer.
fn dry_run_dead_dns(
    t: &Topology,
    region: &str,
    resolver: &str,
    json: bool,
) -> std::process::Output {
    let mut args = vec![
        "grant",
        "--region",
        region,
        "--resolver",
        resolver,
        "--dry-run",
    ];
    if json {
        args.push("--json");
    }
    t.tool_ok(args)
}

#[test]
fn profiles_dead_resolver_dry_run_plans_published_list_and_builtin_key() {
    if !can_run("profiles_dead_resolver_dry_run_plans_published_list_and_builtin_key") {
        return;
    }
    let t = Topology::new(Opts::default());
    let before = snapshot(&t);
    let cases = [
        (
            "eu",
            SILENT_RESOLVER,
            EU_FP,
            &EU_ADDRS[..],
            "support@cache-ng ",
        ),
        (
            "ca",
            CLOSED_RESOLVER,
            CA_FP,
            &CA_ADDRS[..],
            "support@cache-ng-ca ",
        ),
    ];
    for (region, resolver, fp, addrs, comment) in cases {
        let out = dry_run_dead_dns(&t, region, resolver, false);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("using the {} addresses published", addrs.len())),
            "{region}: the fallback must be a warning:\n{}",
            describe(&out)
        );
        assert!(
            stdout.contains(fp),
            "{region}: the plan lacks the built-in key {fp}:\n{stdout}"
        );
        for a in addrs {
            assert!(
                stdout.contains(a),
                "{region}: the plan lacks the published address {a}:\n{stdout}"
            );
        }
        // The key line keeps the key's own comment, as OVH's guide writes it.
        let planned: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with('+') && l.contains("from=\""))
            .collect();
        assert_eq!(
            planned.len(),
            1,
            "{region}: one planned key line:\n{stdout}"
        );
        assert!(
            planned[0].contains(comment),
            "{region}: the line must keep the comment {comment:?}: {}",
            planned[0]
        );
        for a in addrs {
            assert!(
                planned[0].contains(a),
                "{region}: from= lacks {a}: {}",
                planned[0]
            );
        }
        assert!(
            !planned[0].contains(SUP_V4),
            "{region}: the plan used the topology's address: {}",
            planned[0]
        );
    }

    // The JSON says where the addresses came from.
    let out = dry_run_dead_dns(&t, "eu", CLOSED_RESOLVER, true);
    let j = json_of(&out);
    assert_eq!(j["address_source"], "published", "{}", describe(&out));
    assert_eq!(j["key_is_builtin"], true, "{}", describe(&out));
    assert_eq!(j["dry_run"], true);
    assert_eq!(
        j["addresses"],
        serde_json::json!(EU_ADDRS),
        "{}",
        describe(&out)
    );

    assert_eq!(snapshot(&t), before, "a dry run changed something");
}

#[test]
fn profiles_lists_both_regions() {
    if !can_run("profiles_lists_both_regions") {
        return;
    }
    let human = run(Command::new(bin()).arg("profiles"));
    let text = String::from_utf8_lossy(&human.stdout);
    for (region, host, fp, addrs) in [
        ("eu", "cache-ng.ovh.net", EU_FP, &EU_ADDRS[..]),
        ("ca", "cache-ng.ovh.ca", CA_FP, &CA_ADDRS[..]),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(region) && l.contains(host)),
            "profiles lacks {region} {host}:\n{text}"
        );
        assert!(text.contains(fp), "profiles lacks {fp}:\n{text}");
        for a in addrs {
            assert!(text.contains(a), "profiles lacks {a}:\n{text}");
        }
    }
    let j = json_of(&run(Command::new(bin()).args(["profiles", "--json"])));
    let regions: Vec<(&str, &str, usize)> = j["profiles"]
        .as_array()
        .expect("a profiles array")
        .iter()
        .map(|p| {
            (
                p["region"].as_str().unwrap(),
                p["fingerprint"].as_str().unwrap(),
                p["published_addresses"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(regions, vec![("eu", EU_FP, 9), ("ca", CA_FP, 2)]);
}
