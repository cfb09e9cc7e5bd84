//! Exactness of the firewall layers: a repeated identical grant sends nothing and says so (and a
//! repeated grant with `--for` does refresh the kernel's timeouts, and says so); `status` notices
//! a layer that is still there but no longer lets the support in (an iptables-legacy jump or
//! ACCEPT deleted by hand, an nft jump no longer at the head, an access rule gone), and `restore`
//! repairs it.
use std::time::Duration;

use ovh_access::firewall::nft::NftBackend;

use crate::common::*;
use crate::topology::*;

/// The nftables generation id of the server: it moves with every batch the kernel commits, even
/// one that leaves `nft list ruleset` as it was (a flushed and re-added set).
fn genid(t: &Topology) -> u32 {
    in_netns(&t.srv, || {
        NftBackend::new()
            .and_then(|mut b| b.facts())
            .expect("read the server's nftables facts")
            .genid
    })
}

/// The `changed` of one layer in a grant's `--json` report.
fn layer_changed(out: &std::process::Output, layer: &str) -> serde_json::Value {
    let j = json_of(out);
    j["firewall"]
        .as_array()
        .unwrap_or_else(|| panic!("no firewall array:\n{}", describe(out)))
        .iter()
        .find(|l| l["layer"] == layer)
        .unwrap_or_else(|| panic!("no layer {layer} in the report:\n{}", describe(out)))["changed"]
        .clone()
}

/// The `expires` of every set element in `nft list ruleset` (`... timeout 1h expires 59m58s120ms`),
/// in ms.
fn expires_ms(ruleset: &str) -> Vec<u64> {
    let words: Vec<&str> = ruleset
        .split(|c: char| c.is_whitespace() || c == ',' || c == '}')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|w| w[0] == "expires")
        .map(|w| nft_duration_ms(w[1]))
        .collect()
}

/// `1h2m3s400ms` → ms.
fn nft_duration_ms(s: &str) -> u64 {
    let mut total = 0u64;
    let mut num = 0u64;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(d) = c.to_digit(10) {
            num = num * 10 + u64::from(d);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                1
            }
            ('d', _) => 86_400_000,
            ('h', _) => 3_600_000,
            ('m', _) => 60_000,
            ('s', _) => 1000,
            _ => panic!("not an nft duration: {s}"),
        };
        total += num * unit;
        num = 0;
    }
    total
}

fn status(t: &Topology) -> (std::process::Output, serde_json::Value) {
    let out = t.tool(["--json", "status"]);
    let j = json_of(&out);
    (out, j)
}

fn assert_consistent(t: &Topology, when: &str) {
    let (out, j) = status(t);
    assert!(
        out.status.success() && j["consistent"] == true,
        "status {when} must find no drift:\n{}",
        describe(&out)
    );
}

/// status exits 1 with a drift whose text contains `needle` and whose repair is restore.
fn assert_drift(t: &Topology, needle: &str, when: &str) {
    let (out, j) = status(t);
    let drifts = j["drift"].as_array().cloned().unwrap_or_default();
    assert!(
        out.status.code() == Some(1)
            && drifts.iter().any(|d| {
                d["what"].as_str().is_some_and(|w| w.contains(needle))
                    && d["repair"] == "ovh-access restore"
            }),
        "status {when} must exit 1 naming {needle:?} with the repair restore:\n{}",
        describe(&out)
    );
}

#[test]
fn repeated_identical_grant_sends_nothing_and_a_timed_one_refreshes() {
    if !can_run("repeated_identical_grant_sends_nothing_and_a_timed_one_refreshes") {
        return;
    }
    let t = Topology::new(Opts::default());
    let first = t.tool_ok(t.grant_args(&["--json"]));
    assert_eq!(
        layer_changed(&first, "nftables"),
        true,
        "{}",
        describe(&first)
    );
    let ruleset = t.srv.ruleset();
    let gen = genid(&t);

    let again = t.tool_ok(t.grant_args(&["--json"]));
    assert_eq!(
        json_of(&again)["changed"],
        false,
        "an identical grant changed something:\n{}",
        describe(&again)
    );
    assert_eq!(
        layer_changed(&again, "nftables"),
        false,
        "{}",
        describe(&again)
    );
    assert_eq!(
        t.srv.ruleset(),
        ruleset,
        "an identical grant rewrote nftables"
    );
    assert_eq!(genid(&t), gen, "an identical grant sent a batch");
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    assert_consistent(&t, "after the identical grant");

    // With a duration every repetition restarts the kernel's countdown: a change, and said so.
    t.tool_ok(t.grant_args(&["--for", "1h"]));
    let before = expires_ms(&t.srv.ruleset());
    assert_eq!(
        before.len(),
        2,
        "one v4 and one v6 element:\n{}",
        t.srv.ruleset()
    );
    // Until the countdown visibly ran (bounded), so that a refresh shows as a larger `expires`.
    let mut ran = before.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            ran = expires_ms(&t.srv.ruleset());
            // Both elements still there: an empty list would pass the comparison vacuously.
            ran.len() == before.len()
                && ran
                    .iter()
                    .zip(&before)
                    .all(|(now, then)| now + 1000 < *then)
        }),
        "the elements' expires did not move: {before:?} then {ran:?}"
    );
    let timed = t.tool_ok(t.grant_args(&["--json", "--for", "1h"]));
    assert_eq!(json_of(&timed)["changed"], true, "{}", describe(&timed));
    assert_eq!(
        layer_changed(&timed, "nftables"),
        true,
        "{}",
        describe(&timed)
    );
    let after = expires_ms(&t.srv.ruleset());
    assert!(
        after.len() == 2 && after.iter().zip(&ran).all(|(a, r)| a > r),
        "a repeated --for grant must refresh the timeouts: {ran:?} then {after:?}"
    );
    assert_consistent(&t, "after the timed grant");
}

/// Legacy iptables DROP on INPUT (IPv4 and IPv6), no nft table.
fn legacy_server() -> Topology {
    let t = Topology::new(Opts {
        ruleset: None,
        ..Opts::default()
    });
    for (prog, file) in [
        ("iptables-legacy-restore", "legacy-input-drop.v4.rules"),
        ("ip6tables-legacy-restore", "legacy-input-drop.v6.rules"),
    ] {
        run(t.srv.cmd(prog).arg(ruleset_path(file)));
    }
    t
}

#[test]
fn status_sees_a_hand_deleted_legacy_jump_or_accept_and_restore_repairs() {
    if !can_run("status_sees_a_hand_deleted_legacy_jump_or_accept_and_restore_repairs") {
        return;
    }
    let t = legacy_server();
    t.tool_ok(t.grant_args(&["--for", "2h"]));
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    assert_consistent(&t, "after grant");

    // The grant dates --datestop from a clock read just after the one that fixed the expiry:
    // across a second boundary it writes one second more, which is still the grant's rule; two
    // seconds more is not what the grant wrote. Set by hand, relative to the recorded expiry.
    let expires = status(&t).1["granted"]["expires_at"]
        .as_u64()
        .expect("a grant --for records expires_at");
    let set_datestop = |later: u64| {
        run(t.srv.cmd("sh").arg("-ec").arg(format!(
            "s=$(iptables-legacy-save -t filter | grep -o -- '--datestop [0-9T:-]*' | head -1 | cut -d' ' -f2); \
             n=$(date -u -d @{} +%Y-%m-%dT%H:%M:%S); \
             iptables-legacy-save -t filter | sed \"s/--datestop $s/--datestop $n/\" | iptables-legacy-restore",
            expires + later
        )));
    };
    set_datestop(1);
    assert_consistent(&t, "with --datestop one second later");
    set_datestop(2);
    assert_drift(&t, "iptables-legacy", "with --datestop two seconds later");
    t.tool_ok(["restore"]);
    assert_consistent(&t, "after restore (datestop)");

    for (what, cmd) in [
        (
            "the jump deleted",
            "iptables-legacy -D INPUT -m comment --comment ovh-access -j OVH-ACCESS",
        ),
        ("the ACCEPT deleted", "iptables-legacy -D OVH-ACCESS 1"),
    ] {
        run(t.srv.cmd("sh").arg("-c").arg(cmd));
        assert!(
            reachable(&t.sup, &[SRV_SUP_V4], t.port).is_empty(),
            "{what}: the support still reaches sshd, the test breaks nothing"
        );
        assert_drift(&t, "iptables-legacy", what);
        let out = t.tool_ok(["--json", "restore"]);
        assert_eq!(json_of(&out)["changed"], true, "{what}: {}", describe(&out));
        t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
        assert_consistent(&t, &format!("after restore ({what})"));
    }
    // IPv6 untouched all along: the drift named only the IPv4 layer.
    t.assert_login_with(&t.sup, &[], SRV_SUP_V6, t.port);
}

#[test]
fn status_sees_an_nft_jump_below_the_head_or_an_access_rule_gone() {
    if !can_run("status_sees_an_nft_jump_below_the_head_or_an_access_rule_gone") {
        return;
    }
    let t = Topology::new(Opts::default());
    t.tool_ok(t.grant_args(&[]));
    assert_consistent(&t, "after grant");

    // A drop inserted above the tool's jump (as a later `nft insert` would) shuts the support out.
    run(t
        .srv
        .cmd("nft")
        .args(["insert", "rule", "inet", "filter", "input"])
        .args(["ip", "saddr", SUP_V4, "tcp", "dport"])
        .arg(t.port.to_string())
        .arg("drop"));
    assert!(reachable(&t.sup, &[SRV_SUP_V4], t.port).is_empty());
    assert_drift(&t, "only after other rules", "with a drop above the jump");
    // restore puts a jump back at the head; the user's drop stays (it is theirs), below it.
    t.tool_ok(["restore"]);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    assert_consistent(&t, "after restore (jump below the head)");

    // The IPv6 access rule deleted by its handle.
    let listing = String::from_utf8_lossy(
        &run(t
            .srv
            .cmd("nft")
            .args(["-a", "list", "chain", "inet", "filter", "ovh_access"]))
        .stdout,
    )
    .into_owned();
    let handle = listing
        .lines()
        .find(|l| l.contains("ip6 saddr @ovh_access_v6"))
        .and_then(|l| l.split_once("# handle ").map(|(_, h)| h))
        .unwrap_or_else(|| panic!("no IPv6 access rule:\n{listing}"))
        .trim()
        .to_string();
    run(t.srv.cmd("nft").args([
        "delete",
        "rule",
        "inet",
        "filter",
        "ovh_access",
        "handle",
        &handle,
    ]));
    assert!(reachable(&t.sup, &[SRV_SUP_V6], t.port).is_empty());
    assert_drift(
        &t,
        "chain inet filter ovh_access holds",
        "with an access rule deleted",
    );
    t.tool_ok(["restore"]);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V6, t.port);
    assert_consistent(&t, "after restore (access rule deleted)");
}
