//! Hostile servers, nftables side, against the real kernel in throwaway namespaces: objects that
//! bear the tool's names without being its own, drops on hooks other than input (prerouting at
//! raw priority, netdev ingress, a final drop in output), tables the tool cannot change, and
//! native tables named like iptables'. Each test is one way a server broke a promise: the support
//! let in while the key is active, and nothing of the administrator's changed.
use std::time::Duration;

use anyhow::Result;
use ovh_access::firewall::nft::NftBackend;
use ovh_access::firewall::{Backend, LayerChange, Mode, OpenRequest};

use crate::common::*;

const PORTS: [u16; 1] = [22];
const SRV4: &str = "192.0.2.1";
const SRV6: &str = "2001:db8::1";
const SUP4: &str = "192.0.2.2";
const SUP6: &str = "2001:db8::2";
const STR4: &str = "198.51.100.1";
const STR6: &str = "2001:db8:1::1";

fn lab() -> ListenerLab {
    ListenerLab::new(
        ["oa-hsrv", "oa-hsup", "oa-hstr"],
        &[&format!("{SRV4}/24"), &format!("{SRV6}/64")],
        &[&format!("{SUP4}/24"), &format!("{SUP6}/64")],
        &[&format!("{STR4}/24"), &format!("{STR6}/64")],
        &["198.51.100.2/24", "2001:db8:1::2/64"],
        &PORTS,
    )
}

/// `nft list ruleset` without the counters' values (the handshakes tried move them).
fn listing(ns: &Netns) -> String {
    let text = ns.ruleset();
    let mut out = String::new();
    let mut words = text.split(' ').peekable();
    while let Some(w) = words.next() {
        out.push_str(w);
        if w.ends_with("counter") && words.peek() == Some(&"packets") {
            let _ = words.nth(3);
        }
        out.push(' ');
    }
    out
}

fn load(ns: &Netns, ruleset: &str) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), ruleset).unwrap();
    ns.load_nft(f.path());
}

fn grant(lab: &ListenerLab) -> Result<LayerChange> {
    let req = OpenRequest {
        addresses: vec![SUP4.parse().unwrap(), SUP6.parse().unwrap()],
        ports: PORTS.to_vec(),
        timeout: None,
    };
    in_netns(&lab.srv, move || {
        NftBackend::new()?.open(&req, &[], Mode::Apply)
    })
}

fn revoke(lab: &ListenerLab) -> Result<LayerChange> {
    in_netns(&lab.srv, || NftBackend::new()?.close(&[], Mode::Apply))
}

fn support_reaches(lab: &ListenerLab) -> (bool, bool) {
    (
        tcp_connects(&lab.sup, SRV4, 22),
        tcp_connects(&lab.sup, SRV6, 22),
    )
}

fn stranger_reaches(lab: &ListenerLab) -> (bool, bool) {
    (
        tcp_connects(&lab.stranger, STR4, 22),
        tcp_connects(&lab.stranger, STR6, 22),
    )
}

/// Closed → grant → the support (only) reaches sshd over both families → revoke → closed, and
/// `nft list ruleset` exactly as before.
fn opens_and_restores(lab: &ListenerLab) {
    let before = listing(&lab.srv);
    assert_eq!(
        support_reaches(lab),
        (false, false),
        "closed first:\n{before}"
    );
    let change = grant(lab).unwrap();
    let during = lab.srv.ruleset();
    assert_eq!(
        support_reaches(lab),
        (true, true),
        "the support after the grant ({change:?}):\n{during}"
    );
    assert_eq!(stranger_reaches(lab), (false, false), "{during}");
    revoke(lab).unwrap();
    assert_eq!(support_reaches(lab), (false, false), "after revoke");
    assert_eq!(listing(&lab.srv), before, "revoke must restore the ruleset");
}

const INET_DROP: &str = include_str!("../rulesets/inet-drop.nft");

#[test]
fn hostile_nft_prerouting_raw_drop_is_opened() {
    if !can_run("hostile_nft_prerouting_raw_drop_is_opened") {
        return;
    }
    let lab = lab();
    load(
        &lab.srv,
        include_str!("../rulesets/prerouting-raw-drop.nft"),
    );
    opens_and_restores(&lab);
    // The accept there is for this host's own addresses only.
    grant(&lab).unwrap();
    let listing = lab.srv.ruleset();
    assert!(
        listing.contains("fib daddr type local ip saddr @ovh_access_v4 tcp dport { 22 } accept"),
        "{listing}"
    );
    revoke(&lab).unwrap();
}

#[test]
fn hostile_nft_netdev_ingress_drop_is_opened() {
    if !can_run("hostile_nft_netdev_ingress_drop_is_opened") {
        return;
    }
    let lab = lab();
    load(
        &lab.srv,
        &include_str!("../rulesets/netdev-ingress-drop.nft")
            .replace("UPLINK2", "vstr")
            .replace("UPLINK", "vsup"),
    );
    opens_and_restores(&lab);
}

#[test]
fn hostile_nft_output_final_drop_is_opened() {
    if !can_run("hostile_nft_output_final_drop_is_opened") {
        return;
    }
    let lab = lab();
    load(&lab.srv, include_str!("../rulesets/output-final-drop.nft"));
    opens_and_restores(&lab);
}

#[test]
fn hostile_nft_native_ip_filter_named_like_iptables_is_opened() {
    if !can_run("hostile_nft_native_ip_filter_named_like_iptables_is_opened") {
        return;
    }
    let lab = lab();
    load(
        &lab.srv,
        include_str!("../rulesets/translated-ip-filter.nft"),
    );
    // A revoke with nothing granted finds nothing and fails on nothing.
    let before = lab.srv.ruleset();
    let change = revoke(&lab).unwrap();
    assert!(!change.changed, "{change:?}");
    assert_eq!(lab.srv.ruleset(), before);
    opens_and_restores(&lab);
}

#[test]
fn hostile_nft_inet_ingress_drop_refuses_the_grant() {
    if !can_run("hostile_nft_inet_ingress_drop_refuses_the_grant") {
        return;
    }
    let lab = lab();
    load(
        &lab.srv,
        &format!(
            "{INET_DROP}\ntable inet edge {{\n\tchain ing {{\n\t\ttype filter hook ingress device \"vsup\" priority 0; policy accept;\n\t\tip saddr {SUP4} drop\n\t}}\n}}\n"
        ),
    );
    let before = lab.srv.ruleset();
    let err = format!("{:#}", grant(&lab).unwrap_err());
    assert!(
        err.contains("inet edge ing") && err.contains("ingress"),
        "{err}"
    );
    assert_eq!(lab.srv.ruleset(), before, "a refused grant changes nothing");
}

#[test]
fn hostile_nft_owned_table_that_drops_refuses_the_grant() {
    if !can_run("hostile_nft_owned_table_that_drops_refuses_the_grant") {
        return;
    }
    let lab = lab();
    load(&lab.srv, INET_DROP);
    // A daemon's table (flags owner, as firewalld ≥ 2.0 makes its own) lives as long as its
    // netlink socket: an interactive nft kept alive by the open pipe.
    let mut owner = Some(
        lab.srv
            .cmd("sh")
            .args([
                "-c",
                "(echo 'add table inet daemon { flags owner; }'; \
                  echo 'add chain inet daemon input { type filter hook input priority 5; policy drop; }'; \
                  sleep 60) | nft -i >/dev/null",
            ])
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(10), || lab
        .srv
        .ruleset()
        .contains("table inet daemon")));
    let before = lab.srv.ruleset();
    let err = format!("{:#}", grant(&lab).unwrap_err());
    assert!(
        err.contains("inet daemon belongs to process nft (pid") && err.contains("input"),
        "the message names the table, its owner and the chain: {err}"
    );
    assert_eq!(lab.srv.ruleset(), before, "a refused grant changes nothing");
    // Revoke is not bothered by it.
    assert!(!revoke(&lab).unwrap().changed);
    stop(&mut owner);
}

/// A table of the administrator's holding a chain `ovh_access` that a base chain jumps to.
const ADMIN_CHAIN: &str = "table ip admin {
	chain ovh_access {
		tcp dport 80 counter
	}
	chain admin_forward {
		type filter hook forward priority 0; policy accept;
		jump ovh_access
	}
}
";

#[test]
fn hostile_nft_admin_chain_named_ovh_access_survives_grant_and_revoke() {
    if !can_run("hostile_nft_admin_chain_named_ovh_access_survives_grant_and_revoke") {
        return;
    }
    let lab = lab();
    load(&lab.srv, &format!("{INET_DROP}\n{ADMIN_CHAIN}"));
    opens_and_restores(&lab);
}

#[test]
fn hostile_nft_admin_chain_named_ovh_access_in_a_hooked_table_is_refused() {
    if !can_run("hostile_nft_admin_chain_named_ovh_access_in_a_hooked_table_is_refused") {
        return;
    }
    let lab = lab();
    // Even with the tag on the chain: its rule is not the tool's, so neither is the chain.
    load(
        &lab.srv,
        &format!(
            "{INET_DROP}\ntable inet filter {{\n\tchain ovh_access {{\n\t\tcomment \"ovh-access\"\n\t\ttcp dport 80 accept\n\t}}\n}}\n"
        ),
    );
    let before = lab.srv.ruleset();
    let err = format!("{:#}", grant(&lab).unwrap_err());
    assert!(
        err.contains("chain inet filter ovh_access") && err.contains("rename"),
        "{err}"
    );
    assert_eq!(lab.srv.ruleset(), before, "a refused grant changes nothing");
    revoke(&lab).unwrap();
    assert_eq!(
        lab.srv.ruleset(),
        before,
        "revoke must not delete the administrator's chain or its rule"
    );
}

#[test]
fn hostile_nft_untagged_jump_to_the_tools_chain_does_not_stop_revoke() {
    if !can_run("hostile_nft_untagged_jump_to_the_tools_chain_does_not_stop_revoke") {
        return;
    }
    let lab = lab();
    load(&lab.srv, INET_DROP);
    grant(&lab).unwrap();
    assert_eq!(support_reaches(&lab), (true, true));
    lab.srv
        .sh("nft add rule inet filter forward jump ovh_access");
    let change = revoke(&lab).unwrap();
    assert_eq!(
        support_reaches(&lab),
        (false, false),
        "revoke must close the door: {change:?}\n{}",
        lab.srv.ruleset()
    );
    let listing = lab.srv.ruleset();
    assert!(
        !listing.contains("jump ovh_access comment") && !listing.contains("@ovh_access_v"),
        "the tool's jump, rules and sets are gone:\n{listing}"
    );
    assert!(
        listing.contains("jump ovh_access"),
        "the administrator's jump stays:\n{listing}"
    );
    assert!(
        change
            .notes
            .iter()
            .any(|n| n.contains("without the \"ovh-access\" comment")),
        "{:?}",
        change.notes
    );
}
