//! Hostile firewalls through the CLI, with a real sshd and a real login: a layer the tool cannot
//! change makes the grant fail with no key left active, and a drop added after the grant on a
//! hook other than input makes `status` exit 1 until `restore` opens it.
use std::time::Duration;

use crate::common::*;
use crate::topology::*;

fn active_support_lines(t: &Topology) -> Vec<String> {
    let blob = t.support_blob();
    t.keys_text()
        .lines()
        .filter(|l| l.contains(&blob) && !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn cli_owned_table_that_drops_fails_the_grant_without_a_key() {
    if !can_run("cli_owned_table_that_drops_fails_the_grant_without_a_key") {
        return;
    }
    let t = Topology::new(Opts::default());
    // A table flagged owner, as firewalld ≥ 2.0 makes its own, kept by an interactive nft.
    let mut owner = Some(
        t.srv
            .cmd("sh")
            .args([
                "-c",
                "(echo 'add table inet daemon { flags owner; }'; \
                  echo 'add chain inet daemon input { type filter hook input priority 5; policy drop; }'; \
                  sleep 120) | nft -i >/dev/null",
            ])
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(10), || t
        .srv
        .ruleset()
        .contains("table inet daemon")));
    let before = t.srv.ruleset();
    let out = t.tool(t.grant_args(&[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr.contains("inet daemon belongs to process nft (pid") && stderr.contains("--firewall"),
        "the error names the table, its owner and the way through:\n{stderr}"
    );
    assert!(
        active_support_lines(&t).is_empty(),
        "no key may stay active:\n{}",
        t.keys_text()
    );
    assert_eq!(t.srv.ruleset(), before, "nothing of the firewall changed");
    let status = t.tool(["--json", "status"]);
    assert_eq!(
        json_of(&status)["granted"],
        serde_json::Value::Null,
        "{}",
        describe(&status)
    );
    stop(&mut owner);
}

#[test]
fn cli_status_fails_while_a_prerouting_drop_blocks_the_support() {
    if !can_run("cli_status_fails_while_a_prerouting_drop_blocks_the_support") {
        return;
    }
    let t = Topology::new(Opts::default());
    t.tool_ok(t.grant_args(&[]));
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // Added after the grant: a raw-priority prerouting drop of the SSH port.
    t.srv.sh(&format!(
        "nft add table inet raw && \
         nft add chain inet raw pre '{{ type filter hook prerouting priority raw; policy accept; }}' && \
         nft add rule inet raw pre tcp dport {} drop",
        t.port
    ));
    assert!(reachable(&t.sup, &[SRV_SUP_V4, SRV_SUP_V6], t.port).is_empty());
    let out = t.tool(["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the key is active but the support is dropped:\n{}",
        describe(&out)
    );
    assert!(text.contains("inet raw pre"), "{}", describe(&out));

    // restore opens it, and only for packets to this host.
    t.tool_ok(["restore"]);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V6, t.port);
    assert!(
        t.srv.ruleset().contains("fib daddr type local"),
        "{}",
        t.srv.ruleset()
    );
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    t.tool_ok(["revoke"]);
    assert!(
        !t.srv.ruleset().contains("ovh_access"),
        "{}",
        t.srv.ruleset()
    );
}

/// `doctor --json`'s firewall checks that failed, as (detail, fix).
fn doctor_firewall_fails(t: &Topology) -> (Vec<(String, String)>, String) {
    let mut args = vec![std::ffi::OsString::from("--json")];
    args.extend(t.support_args("doctor", &[]));
    let out = t.tool(args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}", describe(&out)));
    let fails = v["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|c| c["status"] == "FAIL" && c["check"] == "firewall")
        .map(|c| {
            (
                c["detail"].as_str().unwrap_or_default().to_string(),
                c["fix"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (fails, describe(&out))
}

#[test]
fn cli_doctor_walks_prerouting_in_nft_and_iptables_raw() {
    if !can_run("cli_doctor_walks_prerouting_in_nft_and_iptables_raw") {
        return;
    }
    let t = Topology::new(Opts::default());
    t.tool_ok(t.grant_args(&[]));
    let (fails, all) = doctor_firewall_fails(&t);
    assert!(fails.is_empty(), "{all}");
    // Drops added after the grant, before routing: one in nftables, one in iptables-legacy raw.
    t.srv.sh(&format!(
        "nft add table inet raw && \
         nft add chain inet raw pre '{{ type filter hook prerouting priority raw; policy accept; }}' && \
         nft add rule inet raw pre ip6 nexthdr tcp tcp dport {port} drop && \
         iptables-legacy -t raw -A PREROUTING -p tcp --dport {port} -j DROP",
        port = t.port
    ));
    let (fails, all) = doctor_firewall_fails(&t);
    for label in ["nftables inet raw pre", "iptables-legacy raw PREROUTING"] {
        let hit = fails
            .iter()
            .find(|(d, _)| d.starts_with(label))
            .unwrap_or_else(|| panic!("doctor must name {label}:\n{all}"));
        assert!(hit.1.contains("ovh-access restore"), "{all}");
    }
    t.tool_ok(["restore"]);
    let (fails, all) = doctor_firewall_fails(&t);
    assert!(fails.is_empty(), "after restore:\n{all}");
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V6, t.port);
    t.tool_ok(["revoke"]);
}
