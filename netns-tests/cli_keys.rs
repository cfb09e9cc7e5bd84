//! Issue 4 against a real sshd: the key line `grant` writes is the one sshd accepts from the
//! support address, and sshd itself — not the firewall — refuses it from any other address and
//! once its `expiry-time` has passed.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use crate::topology::*;

/// A second address of the support host, on the same link as its own: the firewall is opened for
/// it by hand, so only the key line's `from=` stands between it and root.
const SUP2_V4: &str = "198.51.100.3";
const SUP2_V6: &str = "2001:db8:1::3";

/// Lets `saddr` reach sshd's port through the user's own input chain, as an administrator would;
/// inserted at the head, before anything the tool adds, so the tool cannot be what lets it in.
fn open_by_hand(t: &Topology, saddr: &str) {
    let fam = if saddr.contains(':') { "ip6" } else { "ip" };
    t.srv.sh(&format!(
        "nft insert rule inet filter input {fam} saddr {saddr} tcp dport {} accept",
        t.port
    ));
}

/// The active lines of the keys file that carry the support key.
fn active_support_lines(t: &Topology) -> Vec<String> {
    let blob = t.support_blob();
    t.keys_text()
        .lines()
        .filter(|l| l.contains(&blob) && !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn keys_tool_line_accepted_from_support_refused_elsewhere() {
    if !can_run("keys_tool_line_accepted_from_support_refused_elsewhere") {
        return;
    }
    let t = Topology::new(Opts::default());
    let port = t.port;
    assert!(t.keys_text().is_empty(), "the sandbox starts without keys");
    t.tool_ok(t.grant_args(&[]));

    // Exactly one line, the tool's, restricted to the support host's addresses.
    let lines = active_support_lines(&t);
    assert_eq!(
        lines.len(),
        1,
        "one active support line:\n{}",
        t.keys_text()
    );
    let line = &lines[0];
    assert!(
        line.starts_with("from=\"") && line.contains(SUP_V4) && line.contains(SUP_V6),
        "the line must carry from= with the support addresses: {line}"
    );
    assert!(
        !line.contains(STR_V4) && !line.contains(SUP2_V4),
        "from= names other hosts: {line}"
    );

    // sshd accepts that line from the support address, over IPv4 and IPv6.
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, port);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V6, port);
    for ip in [SUP_V4, SUP_V6] {
        let accepted = t.sshd_log_lines(&["Accepted publickey for root", &format!("from {ip} ")]);
        assert!(
            !accepted.is_empty(),
            "sshd must log the login from {ip}:\n{}",
            t.logs()
        );
    }

    // A second address on the support host's own link, let through the firewall by hand.
    t.sup.sh(&format!(
        "ip addr add {SUP2_V4}/24 dev eth0 && ip addr add {SUP2_V6}/64 dev eth0 nodad"
    ));
    open_by_hand(&t, SUP2_V4);
    open_by_hand(&t, SUP2_V6);
    t.assert_sshd_refuses(&t.sup, &["-b", SUP2_V4], SRV_SUP_V4, port);
    t.assert_sshd_refuses(&t.sup, &["-b", SUP2_V6], SRV_SUP_V6, port);
    // The same host, from its granted address, still gets in: only the address differs.
    t.assert_login_with(&t.sup, &["-b", SUP_V4], SRV_SUP_V4, port);

    // The stranger holding the support's private key (t.ssh uses it from any namespace).
    open_by_hand(&t, STR_V4);
    open_by_hand(&t, STR_V6);
    t.assert_sshd_refuses(&t.stranger, &[], SRV_STR_V4, port);
    t.assert_sshd_refuses(&t.stranger, &[], SRV_STR_V6, port);

    // Each refusal is sshd's from= check (auth_authorise_keyopts), naming the address it refused.
    for ip in [SUP2_V4, SUP2_V6, STR_V4, STR_V6] {
        let refused = t.sshd_log_lines(&["not from a permitted host", &format!("ip={ip},")]);
        assert!(
            !refused.is_empty(),
            "sshd must refuse {ip} by from=:\n{}",
            t.logs()
        );
    }
}

/// sshd's clock is this machine's: the seconds since the epoch now.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn keys_expiry_time_refuses_after_it_passes() {
    if !can_run("keys_expiry_time_refuses_after_it_passes") {
        return;
    }
    // No firewall at all and `--firewall none`: the kernel's timeout cannot be what ends the
    // grant, so a refusal after the expiry is sshd's expiry-time alone. sshd says "entry expired"
    // only at debug level: a Match block's LogLevel overrides the global one (servconf.c).
    let t = Topology::new(Opts {
        ruleset: None,
        extra_sshd_config: "Match All\n\tLogLevel DEBUG1\n".into(),
        ..Opts::default()
    });
    let port = t.port;
    let out = t.tool_ok(t.grant_args(&["--for", "20s", "--firewall", "none", "--json"]));
    let report = json_of(&out);
    let expires_at = report["expires_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("grant --json has no expires_at:\n{}", describe(&out)));
    assert_eq!(
        report["firewall"],
        serde_json::json!([]),
        "--firewall none touched the firewall"
    );
    let lines = active_support_lines(&t);
    assert_eq!(lines.len(), 1, "{}", t.keys_text());
    assert!(
        lines[0].contains("expiry-time=\""),
        "a grant --for must carry expiry-time: {}",
        lines[0]
    );

    // Before the expiry the line works.
    assert!(
        now_secs() < expires_at,
        "the grant expired before the first login"
    );
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, port);

    // After it (one second of margin for sshd's comparison), sshd refuses that same line.
    let wait = Duration::from_secs(expires_at.saturating_sub(now_secs()) + 2);
    assert!(wait <= Duration::from_secs(30), "expiry {wait:?} away");
    std::thread::sleep(wait);
    assert_eq!(
        active_support_lines(&t),
        lines,
        "the keys file changed by itself"
    );
    t.assert_sshd_refuses(&t.sup, &[], SRV_SUP_V4, port);
    t.assert_sshd_refuses(&t.sup, &[], SRV_SUP_V6, port);
    let expired = t.sshd_log_lines(&["entry expired"]);
    assert!(
        !expired.is_empty(),
        "sshd must refuse the line for its expiry-time:\n{}",
        t.logs()
    );
}

#[test]
fn keys_foreign_unrestricted_line_refused_then_replaced() {
    if !can_run("keys_foreign_unrestricted_line_refused_then_replaced") {
        return;
    }
    let t = Topology::new(Opts::default());
    let port = t.port;
    // An administrator's own key (any other line must stay byte-identical) and the support key
    // pasted once by hand without from=, as OVH's old script or a hurried admin would leave it.
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@laptop";
    let foreign = t.support_pub_line();
    t.write_keys(&format!("{other}\n{foreign}\n"));
    let keys_before = std::fs::read(t.keys_file()).unwrap();
    // What that line means to sshd: the stranger holding the key gets in once the network lets it.
    open_by_hand(&t, STR_V4);
    t.assert_login_with(&t.stranger, &[], SRV_STR_V4, port);
    let ruleset_before = t.srv.ruleset();

    // grant refuses while the unrestricted line is active, and changes nothing.
    let out = t.tool(t.grant_args(&[]));
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--replace-foreign"),
        "grant must refuse over an unrestricted support line and name --replace-foreign:\n{}",
        describe(&out)
    );
    assert_eq!(
        std::fs::read(t.keys_file()).unwrap(),
        keys_before,
        "a refused grant changed the keys file"
    );
    assert_eq!(
        t.srv.ruleset(),
        ruleset_before,
        "a refused grant changed the firewall"
    );

    // With --replace-foreign the old line is commented out: sshd now refuses the stranger.
    t.tool_ok(t.grant_args(&["--replace-foreign"]));
    t.assert_sshd_refuses(&t.stranger, &[], SRV_STR_V4, port);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, port);
    let keys = t.keys_text();
    assert_eq!(
        keys.lines().next(),
        Some(other),
        "the administrator's line moved or changed:\n{keys}"
    );
    assert!(
        keys.lines()
            .any(|l| l.trim_start().starts_with('#') && l.contains(&foreign)),
        "the unrestricted line must be kept, commented out:\n{keys}"
    );
    assert_eq!(active_support_lines(&t).len(), 1, "{keys}");

    // revoke, then grant again: the tool's own line is re-enabled, not appended a second time.
    t.tool_ok(["revoke"]);
    t.assert_sshd_refuses(&t.stranger, &[], SRV_STR_V4, port);
    let lines_after_revoke = t.keys_text().lines().count();
    t.tool_ok(t.grant_args(&[]));
    assert_eq!(
        t.keys_text().lines().count(),
        lines_after_revoke,
        "a second grant added a line:\n{}",
        t.keys_text()
    );
    assert_eq!(active_support_lines(&t).len(), 1, "{}", t.keys_text());
    t.assert_login_with(&t.sup, &[], SRV_SUP_V6, port);
    t.assert_sshd_refuses(&t.stranger, &[], SRV_STR_V4, port);
}
