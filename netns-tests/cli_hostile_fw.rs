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
