//! Issue 7 through the CLI: servers whose firewall is iptables (legacy or nft variant), alone or
//! beside a native nft table that drops too. `grant` with automatic detection opens every layer
//! that drops, a real login from the support host works, the stranger stays out, and `revoke`
//! leaves each layer exactly as it was (`*-save` with counters stripped, `nft list ruleset`).
use std::collections::BTreeSet;

use ovh_access::firewall::iptables::save::strip_volatile;

use crate::common::*;
use crate::topology::*;

/// One iptables layer of the server, loaded from a rulesets/ file.
struct Layer {
    /// The layer's name as the tool reports it, and its programs' prefix.
    name: &'static str,
    file: &'static str,
}

const LEGACY: [Layer; 2] = [
    Layer {
        name: "iptables-legacy",
        file: "legacy-input-drop.v4.rules",
    },
    Layer {
        name: "ip6tables-legacy",
        file: "legacy-input-drop.v6.rules",
    },
];
const IPT_NFT: [Layer; 2] = [
    Layer {
        name: "iptables-nft",
        file: "nft-input-drop.v4.rules",
    },
    Layer {
        name: "ip6tables-nft",
        file: "nft-input-drop.v6.rules",
    },
];

/// ufw as Debian 12 runs it (`ufw default deny incoming && ufw allow 80/tcp`), on iptables-nft.
const UFW: [Layer; 2] = [
    Layer {
        name: "iptables-nft",
        file: "ufw.v4.rules",
    },
    Layer {
        name: "ip6tables-nft",
        file: "ufw.v6.rules",
    },
];

fn save(t: &Topology, layer: &Layer) -> String {
    let out = run(&mut t.srv.cmd(format!("{}-save", layer.name)));
    strip_volatile(&String::from_utf8_lossy(&out.stdout))
}

/// `nft list ruleset` without counters' values (iptables-nft puts a counter in every rule):
/// `counter packets 2 bytes 133` becomes `counter`.
fn strip_nft_counters(ruleset: &str) -> String {
    let mut out = Vec::new();
    for line in ruleset.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let mut kept = Vec::new();
        let mut i = 0;
        while i < words.len() {
            kept.push(words[i]);
            if words[i].ends_with("counter") && words.get(i + 1) == Some(&"packets") {
                i += 5; // counter packets N bytes M
            } else {
                i += 1;
            }
        }
        out.push(kept.join(" "));
    }
    out.join("\n")
}

/// Everything the firewall holds: each layer's `*-save` and the nft ruleset.
fn firewall_state(t: &Topology, layers: &[Layer]) -> Vec<String> {
    let mut all: Vec<String> = layers.iter().map(|l| save(t, l)).collect();
    all.push(strip_nft_counters(&t.srv.ruleset()));
    all
}

/// The topology with `layers` loaded into the server (after sshd started: it listens whatever
/// the firewall says), and with `nft_layer`, the default-deny nft table as well.
fn server(layers: &[Layer], nft_layer: bool) -> Topology {
    let t = Topology::new(Opts {
        ruleset: nft_layer.then(|| ruleset_path("default-deny.nft")),
        ..Opts::default()
    });
    for l in layers {
        run(t
            .srv
            .cmd(format!("{}-restore", l.name))
            .arg(ruleset_path(l.file)));
    }
    t
}

/// `status` finds key and firewall in agreement (exit 0, no drift).
fn assert_consistent(test: &str, t: &Topology, when: &str) {
    let out = t.tool(["--json", "status"]);
    let j = json_of(&out);
    assert!(
        out.status.success() && j["consistent"] == true,
        "{test}: status {when} must find no drift:\n{}",
        describe(&out)
    );
}

/// The scenario of every iptables server: before, grant, logins, stranger, revoke, after.
/// `nft_layer`: the server also has a native nft table that drops (loaded by the topology).
fn grant_login_revoke(test: &str, layers: &[Layer], nft_layer: bool) {
    let t = server(layers, nft_layer);
    let before = firewall_state(&t, layers);
    let sup = [SRV_SUP_V4, SRV_SUP_V6];
    assert!(
        reachable(&t.sup, &sup, t.port).is_empty(),
        "{test}: the support host reached sshd before the grant"
    );

    let out = t.tool_ok(t.grant_args(&["--json"]));
    let j = json_of(&out);
    let opened: BTreeSet<&str> = j["firewall"]
        .as_array()
        .unwrap_or_else(|| panic!("{test}: no firewall array:\n{}", describe(&out)))
        .iter()
        .filter(|c| c["changed"] == true)
        .map(|c| c["layer"].as_str().unwrap())
        .collect();
    let mut expected: BTreeSet<&str> = layers.iter().map(|l| l.name).collect();
    if nft_layer {
        expected.insert("nftables");
    }

    // What counts is what the kernel lets through; then that the report names the same layers.
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V6, t.port);
    assert_eq!(
        reachable(&t.stranger, &[SRV_STR_V4, SRV_STR_V6], t.port),
        Vec::<&str>::new(),
        "{test}: the stranger reached sshd"
    );
    assert_eq!(
        opened,
        expected,
        "{test}: the layers grant opened:\n{}",
        describe(&out)
    );

    assert_consistent(test, &t, "after grant");

    t.tool_ok(["revoke"]);
    assert!(
        reachable(&t.sup, &sup, t.port).is_empty(),
        "{test}: the support host still reaches sshd after revoke"
    );
    assert_consistent(test, &t, "after revoke");
    let after = firewall_state(&t, layers);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let what = layers.get(i).map(|l| l.name).unwrap_or("nft list ruleset");
        assert_eq!(a, b, "{test}: revoke left {what} changed");
    }
}

#[test]
fn iptables_legacy_drop_grant_login_revoke() {
    if !can_run("iptables_legacy_drop_grant_login_revoke") {
        return;
    }
    grant_login_revoke("legacy DROP", &LEGACY, false);
}

#[test]
fn iptables_legacy_drop_and_nft_drop_both_opened() {
    if !can_run("iptables_legacy_drop_and_nft_drop_both_opened") {
        return;
    }
    grant_login_revoke("legacy DROP + nft inet drop", &LEGACY, true);
}

#[test]
fn iptables_nft_variant_drop_grant_login_revoke() {
    if !can_run("iptables_nft_variant_drop_grant_login_revoke") {
        return;
    }
    grant_login_revoke("iptables-nft DROP", &IPT_NFT, false);
}

#[test]
fn iptables_ufw_grant_login_revoke() {
    if !can_run("iptables_ufw_grant_login_revoke") {
        return;
    }
    grant_login_revoke("ufw on iptables-nft", &UFW, false);
}

#[test]
fn iptables_legacy_grant_for_closes_by_itself() {
    if !can_run("iptables_legacy_grant_for_closes_by_itself") {
        return;
    }
    // iptables-legacy alone: an nft layer closing on time would hide a legacy rule that does not.
    let t = server(&LEGACY, false);
    let before = firewall_state(&t, &LEGACY);
    let sup = [SRV_SUP_V4, SRV_SUP_V6];
    let out = t.tool_ok(t.grant_args(&["--for", "15s", "--json"]));
    let expires_at = json_of(&out)["expires_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("grant --json has no expires_at:\n{}", describe(&out)));
    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    t.assert_login_with(&t.sup, &[], SRV_SUP_V6, t.port);

    // Nothing runs the tool again: the kernel ends the opening on its own (xt_time --datestop).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let limit = std::time::Duration::from_secs(expires_at.saturating_sub(now) + 15);
    let closed = wait_until(limit, || reachable(&t.sup, &sup, t.port).is_empty());
    assert!(
        closed,
        "the firewall is still open {limit:?} after the grant"
    );

    // `restore` then cleans up what expired: the key line and every layer as they were.
    let out = t.tool_ok(["restore"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("expired"),
        "restore must say the grant expired:\n{}",
        describe(&out)
    );
    assert_eq!(
        firewall_state(&t, &LEGACY),
        before,
        "restore left the firewall changed"
    );
    let blob = t.support_blob();
    assert!(
        t.keys_text()
            .lines()
            .filter(|l| l.contains(&blob))
            .all(|l| l.trim_start().starts_with('#')),
        "restore left the expired key line active:\n{}",
        t.keys_text()
    );
    let status = json_of(&t.tool(["--json", "status"]));
    assert_eq!(status["granted"], serde_json::Value::Null, "{status}");
}
