//! The nftables backend against the real kernel, in throwaway namespaces: for each ruleset in
//! rulesets/, a grant lets the support host (and only it) reach every SSH port over IPv4 and
//! IPv6, and a revoke shuts it out again and leaves `nft list ruleset` exactly as it was.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ovh_access::firewall::nft::{self, NftBackend};
use ovh_access::firewall::{Backend, LayerChange, Mode, OpenRequest};

use crate::common::*;

const PORTS: [u16; 2] = [22, 2222];
const SRV4: &str = "192.0.2.1";
const SRV6: &str = "2001:db8::1";
const SUP4: &str = "192.0.2.2";
const SUP6: &str = "2001:db8::2";
const STR4: &str = "198.51.100.1";
const STR6: &str = "2001:db8:1::1";

type Lab = ListenerLab;

impl ListenerLab {
    /// A server with SSH listeners on 22 and 2222, a support host and a stranger, each on its own
    /// link, all in documentation ranges.
    fn nft() -> Lab {
        ListenerLab::new(
            ["oa-nsrv", "oa-nsup", "oa-nstr"],
            &[&format!("{SRV4}/24"), &format!("{SRV6}/64")],
            &[&format!("{SUP4}/24"), &format!("{SUP6}/64")],
            &[&format!("{STR4}/24"), &format!("{STR6}/64")],
            &["198.51.100.2/24", "2001:db8:1::2/64"],
            &PORTS,
        )
    }

    fn grant(&self, timeout: Option<Duration>) -> LayerChange {
        let req = OpenRequest {
            addresses: vec![SUP4.parse().unwrap(), SUP6.parse().unwrap()],
            ports: PORTS.to_vec(),
            timeout,
        };
        in_netns(&self.srv, move || {
            NftBackend::new()
                .unwrap()
                .open(&req, &[], Mode::Apply)
                .unwrap()
        })
    }

    fn revoke(&self) -> LayerChange {
        in_netns(&self.srv, || {
            NftBackend::new().unwrap().close(&[], Mode::Apply).unwrap()
        })
    }

    fn support_reaches(&self, port: u16) -> (bool, bool) {
        (
            tcp_connects(&self.sup, SRV4, port),
            tcp_connects(&self.sup, SRV6, port),
        )
    }

    fn stranger_reaches(&self, port: u16) -> (bool, bool) {
        (
            tcp_connects(&self.stranger, STR4, port),
            tcp_connects(&self.stranger, STR6, port),
        )
    }
}

/// The whole cycle on one ruleset: closed → grant → support only → revoke → closed, unchanged.
fn grant_and_revoke(load: impl FnOnce(&Netns)) {
    let lab = Lab::nft();
    load(&lab.srv);
    let before = lab.srv.ruleset();
    assert_eq!(
        lab.support_reaches(22),
        (false, false),
        "the ruleset must be closed before the grant:\n{before}"
    );

    let change = lab.grant(None);
    assert!(change.changed && !change.chains.is_empty(), "{change:?}");
    let during = lab.srv.ruleset();
    // nft prints the tool's rules as the rules they are (the private userdata is skipped).
    assert!(
        during.contains(" saddr @ovh_access_v") && during.contains("tcp dport { 22, 2222 } accept"),
        "{during}"
    );
    assert!(
        during.contains("jump ovh_access comment \"ovh-access\""),
        "{during}"
    );
    for port in PORTS {
        assert_eq!(
            lab.support_reaches(port),
            (true, true),
            "support → port {port} after grant:\n{during}"
        );
    }
    assert_eq!(
        lab.stranger_reaches(22),
        (false, false),
        "stranger after grant:\n{during}"
    );
    assert_eq!(
        lab.stranger_reaches(2222),
        (false, false),
        "stranger after grant:\n{during}"
    );

    let change = lab.revoke();
    assert!(change.changed, "{change:?}");
    assert!(
        change.notes.is_empty(),
        "nothing was missing: {:?}",
        change.notes
    );
    assert_eq!(
        lab.support_reaches(22),
        (false, false),
        "support after revoke"
    );
    assert!(
        !tcp_connects(&lab.sup, SRV4, 2222),
        "support → 2222 after revoke"
    );
    assert_eq!(
        lab.srv.ruleset(),
        before,
        "revoke must restore the ruleset exactly"
    );
}

fn load(name: &'static str) -> impl FnOnce(&Netns) {
    move |ns: &Netns| ns.load_nft(&ruleset_path(name))
}

#[test]
fn nft_inet_filter_policy_drop() {
    if !can_run("nft_inet_filter_policy_drop") {
        return;
    }
    grant_and_revoke(load("inet-drop.nft"));
}

#[test]
fn nft_separate_ip_and_ip6_tables() {
    if !can_run("nft_separate_ip_and_ip6_tables") {
        return;
    }
    grant_and_revoke(load("ip-ip6-drop.nft"));
}

#[test]
fn nft_policy_accept_with_final_drop_rule() {
    if !can_run("nft_policy_accept_with_final_drop_rule") {
        return;
    }
    grant_and_revoke(load("accept-final-drop.nft"));
}

#[test]
fn nft_two_tables_at_different_priorities() {
    if !can_run("nft_two_tables_at_different_priorities") {
        return;
    }
    grant_and_revoke(load("two-tables.nft"));
}

#[test]
fn nft_output_policy_drop() {
    if !can_run("nft_output_policy_drop") {
        return;
    }
    grant_and_revoke(load("output-drop.nft"));
}

#[test]
fn nft_fail2ban_style_table() {
    if !can_run("nft_fail2ban_style_table") {
        return;
    }
    grant_and_revoke(load("fail2ban.nft"));
}

/// `n` rules in an inet input chain with policy drop (none of them for SSH), in `nft -f` syntax.
pub fn big_ruleset(n: usize) -> String {
    let mut s = String::from(
        "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\
         \t\tct state established,related accept\n\t\tiif \"lo\" accept\n\t\tmeta l4proto ipv6-icmp accept\n",
    );
    for i in 0..n.saturating_sub(3) {
        s.push_str(&format!(
            "\t\tip saddr 203.0.{}.{} tcp dport {} drop\n",
            (i / 250) % 250,
            i % 250 + 1,
            10000 + i % 50000
        ));
    }
    s.push_str("\t}\n}\n");
    s
}

#[test]
fn nft_table_of_10000_rules() {
    if !can_run("nft_table_of_10000_rules") {
        return;
    }
    grant_and_revoke(|ns| {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big.nft");
        std::fs::write(&f, big_ruleset(10_000)).unwrap();
        ns.load_nft(&f);
    });
}

#[test]
fn nft_timeout_closes_by_itself() {
    if !can_run("nft_timeout_closes_by_itself") {
        return;
    }
    let lab = Lab::nft();
    lab.srv.load_nft(&ruleset_path("inet-drop.nft"));
    let start = Instant::now();
    lab.grant(Some(Duration::from_secs(5)));
    assert_eq!(lab.support_reaches(22), (true, true));
    // No process of ours runs from here on: only the kernel's element timeout can close it.
    let closed = wait_until(Duration::from_secs(15), || {
        !tcp_connects(&lab.sup, SRV4, 22) && !tcp_connects(&lab.sup, SRV6, 2222)
    });
    let took = start.elapsed();
    assert!(closed, "still open after {took:?}:\n{}", lab.srv.ruleset());
    assert!(took >= Duration::from_secs(5), "closed too early: {took:?}");
    // The expired elements are gone from the sets; status sees none.
    let state = in_netns(&lab.srv, || nft::tool_state().unwrap());
    let elements: usize = state
        .tables
        .iter()
        .flat_map(|t| &t.sets)
        .map(|s| s.elements.len())
        .sum();
    assert_eq!(elements, 0, "{state:?}");
}

#[test]
fn nft_two_grants_leave_one_jump_and_status_shows_it() {
    if !can_run("nft_two_grants_leave_one_jump_and_status_shows_it") {
        return;
    }
    let lab = Lab::nft();
    lab.srv.load_nft(&ruleset_path("two-tables.nft"));
    let before = lab.srv.ruleset();
    lab.grant(Some(Duration::from_secs(3600)));
    let second = lab.grant(Some(Duration::from_secs(7200)));
    assert!(!second.script.contains("insert rule"), "{}", second.script);
    let listing = lab.srv.ruleset();
    assert_eq!(
        listing
            .matches("jump ovh_access comment \"ovh-access\"")
            .count(),
        2,
        "{listing}"
    );
    let state = in_netns(&lab.srv, || nft::tool_state().unwrap());
    assert_eq!(state.tables.len(), 2, "{state:?}");
    for t in &state.tables {
        assert!(
            t.hooks.iter().all(|h| h.jump_present && h.jump_at_head),
            "{t:?}"
        );
        let v4 = t.sets.iter().find(|s| s.name == nft::SET_V4).unwrap();
        assert_eq!(v4.elements.len(), 1);
        let e = &v4.elements[0];
        assert_eq!(e.address, SUP4.parse::<IpAddr>().unwrap());
        // The second grant refreshed the timeout (re-adding is no EEXIST).
        assert_eq!(e.timeout_ms, Some(7_200_000));
        assert!(e.expires_ms.unwrap() > 3_600_000, "{e:?}");
    }
    let tables = in_netns(&lab.srv, || nft::read_ruleset().unwrap()).tables;
    assert!(
        tables.iter().all(|t| t.has_tool_objects()
            && t.chains
                .iter()
                .filter(|c| c.is_filter_on(nft::Hook::Input))
                .map(|c| c.name.as_str())
                .eq(["input"])),
        "{tables:?}"
    );
    lab.revoke();
    assert_eq!(lab.srv.ruleset(), before);
}

#[test]
fn nft_revoke_with_nothing_granted_changes_nothing() {
    if !can_run("nft_revoke_with_nothing_granted_changes_nothing") {
        return;
    }
    let lab = Lab::nft();
    lab.srv.load_nft(&ruleset_path("fail2ban.nft"));
    let before = lab.srv.ruleset();
    let change = lab.revoke();
    assert!(!change.changed && change.script.is_empty(), "{change:?}");
    assert!(
        change
            .notes
            .iter()
            .any(|n| n.contains("nothing of ovh-access")),
        "{:?}",
        change.notes
    );
    assert_eq!(lab.srv.ruleset(), before);
}

#[test]
fn nft_flush_ruleset_between_grant_and_revoke() {
    if !can_run("nft_flush_ruleset_between_grant_and_revoke") {
        return;
    }
    let lab = Lab::nft();
    lab.srv.load_nft(&ruleset_path("inet-drop.nft"));
    lab.grant(None);
    lab.srv.sh("nft flush ruleset");
    let change = lab.revoke();
    assert!(!change.changed, "{change:?}");
    assert!(
        change.notes.iter().any(|n| n.contains("flushed")),
        "{:?}",
        change.notes
    );

    // A partial loss (the jump deleted by hand) is named too, and the rest is removed.
    lab.srv.load_nft(&ruleset_path("inet-drop.nft"));
    let before = lab.srv.ruleset();
    lab.grant(None);
    let handle = jump_handle(&lab.srv, "inet filter input");
    lab.srv.sh(&format!(
        "nft delete rule inet filter input handle {handle}"
    ));
    let change = lab.revoke();
    assert!(
        change.notes.iter().any(|n| n.contains("no jump")),
        "{:?}",
        change.notes
    );
    assert_eq!(lab.srv.ruleset(), before);
}

fn jump_handle(ns: &Netns, chain: &str) -> u64 {
    let out = ns.sh(&format!("nft -a list chain {chain}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("jump ovh_access"))
        .expect("jump present");
    line.rsplit("handle ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn nft_no_input_chain_nothing_to_open() {
    if !can_run("nft_no_input_chain_nothing_to_open") {
        return;
    }
    let lab = Lab::nft();
    lab.srv.load_nft(&ruleset_path("no-input-chain.nft"));
    let before = lab.srv.ruleset();
    let change = lab.grant(None);
    assert!(!change.changed && change.chains.is_empty(), "{change:?}");
    assert!(
        change.notes.iter().any(|n| n.contains("nothing to open")),
        "{:?}",
        change.notes
    );
    assert_eq!(lab.srv.ruleset(), before);
}

#[test]
fn nft_iptables_nft_table_is_left_alone() {
    if !can_run("nft_iptables_nft_table_is_left_alone") {
        return;
    }
    let lab = Lab::nft();
    lab.srv
        .sh("iptables-nft -P INPUT DROP && iptables-nft -A INPUT -i lo -j ACCEPT");
    let before = lab.srv.ruleset();
    let change = lab.grant(None);
    assert!(!change.changed, "{change:?}");
    assert!(
        change.notes.iter().any(|n| n.contains("iptables-nft")),
        "{:?}",
        change.notes
    );
    assert_eq!(lab.srv.ruleset(), before);
    let tables = in_netns(&lab.srv, || nft::read_ruleset().unwrap()).tables;
    assert!(
        tables
            .iter()
            .any(|t| t.id.name == "filter" && t.made_by_iptables_nft()),
        "{tables:?}"
    );
}

#[test]
fn nft_dry_run_changes_nothing_and_prints_nft_syntax() {
    if !can_run("nft_dry_run_changes_nothing_and_prints_nft_syntax") {
        return;
    }
    let lab = Lab::nft();
    lab.srv.load_nft(&ruleset_path("output-drop.nft"));
    let before = lab.srv.ruleset();
    let req = OpenRequest {
        addresses: vec![SUP4.parse().unwrap()],
        ports: vec![22],
        timeout: None,
    };
    let change = in_netns(&lab.srv, move || {
        NftBackend::new()
            .unwrap()
            .open(&req, &[], Mode::DryRun)
            .unwrap()
    });
    assert_eq!(lab.srv.ruleset(), before);
    // The printed script is valid `nft -f` input and does what the batch does.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dry.nft");
    std::fs::write(&f, &change.script).unwrap();
    lab.srv.load_nft(&f);
    assert!(lab.support_reaches(22).0, "{}", change.script);
    let revoke = lab.revoke();
    assert!(revoke.changed);
    assert_eq!(lab.srv.ruleset(), before);
}

#[test]
fn nft_grant_while_another_process_rewrites_the_ruleset() {
    if !can_run("nft_grant_while_another_process_rewrites_the_ruleset") {
        return;
    }
    let lab = Lab::nft();
    lab.srv.load_nft(&ruleset_path("inet-drop.nft"));
    // Another writer: adds and deletes a table as fast as it can, for the whole grant.
    let mut churn = Some(
        lab.srv
        .cmd("sh")
        .args(["-c", "i=0; while [ $i -lt 3000 ]; do nft add table ip churn; nft delete table ip churn; i=$((i+1)); done"])
        .spawn()
        .unwrap(),
    );
    let mut retried = 0;
    for _ in 0..5 {
        let change = lab.grant(None);
        retried += change
            .notes
            .iter()
            .filter(|n| n.contains("planned again"))
            .count();
    }
    eprintln!("grants that had to plan again because of the other writer: {retried} of 5");
    stop(&mut churn);
    let listing = lab.srv.ruleset();
    assert_eq!(listing.matches("jump ovh_access").count(), 1, "{listing}");
    assert_eq!(lab.support_reaches(22), (true, true));
    lab.revoke();
    assert!(!lab.srv.ruleset().contains("ovh"));
}

#[test]
fn nft_without_cap_net_admin_says_so() {
    if !can_run("nft_without_cap_net_admin_says_so") {
        return;
    }
    let ns = Netns::new("oa-ncap");
    let err = in_netns(&ns, || {
        // Capabilities are per thread: drop them all on this one only (capset(2), version 3).
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut hdr = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) };
        assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
        NftBackend::new().err().map(|e| format!("{e:#}"))
    });
    let err = err.expect("nf_tables must refuse a thread without CAP_NET_ADMIN");
    assert!(
        err.contains("permission denied") && err.contains("CAP_NET_ADMIN"),
        "{err}"
    );
}

#[test]
fn nft_batch_planned_on_an_old_generation_is_refused_whole() {
    if !can_run("nft_batch_planned_on_an_old_generation_is_refused_whole") {
        return;
    }
    let lab = Lab::nft();
    lab.srv.load_nft(&ruleset_path("inet-drop.nft"));
    let req = OpenRequest {
        addresses: vec![SUP4.parse().unwrap()],
        ports: vec![22],
        timeout: None,
    };
    let (tx_go, rx_go) = std::sync::mpsc::channel::<()>();
    let (tx_planned, rx_planned) = std::sync::mpsc::channel::<()>();
    let name = lab.srv.name.clone();
    let worker = std::thread::spawn(move || {
        in_named_netns(&name, move || {
            let mut be = NftBackend::new().unwrap();
            let (facts, plan) = be.plan_open(&req).unwrap();
            assert!(!plan.ops.is_empty());
            tx_planned.send(()).unwrap();
            rx_go.recv().unwrap();
            let stale = be.apply(&facts, &plan).map_err(|e| format!("{e:#}"));
            // `open` reads again and succeeds.
            let change = be.open(&req, &[], Mode::Apply).unwrap();
            (stale, change)
        })
    });
    rx_planned.recv().unwrap();
    // Someone else changes the ruleset between the read and the batch.
    lab.srv.sh("nft add table ip someone_else");
    let after_other = lab.srv.ruleset();
    tx_go.send(()).unwrap();
    let (stale, change) = worker.join().unwrap();
    let err = stale.expect_err("a batch planned before the change must be refused");
    assert!(err.contains("changed after it was read"), "{err}");
    assert!(change.changed);
    let listing = lab.srv.ruleset();
    assert_eq!(listing.matches("jump ovh_access").count(), 1, "{listing}");
    assert!(listing.contains("table ip someone_else"));
    lab.revoke();
    assert_eq!(lab.srv.ruleset(), after_other);
}

#[test]
fn nft_table_owned_by_another_process_that_drops_nothing_is_left_alone() {
    if !can_run("nft_table_owned_by_another_process_that_drops_nothing_is_left_alone") {
        return;
    }
    let lab = Lab::nft();
    lab.srv.load_nft(&ruleset_path("inet-drop.nft"));
    // A daemon's table (flags owner) lives as long as its netlink socket: an interactive nft
    // kept alive by the open pipe (killed with the namespace).
    let mut owner = Some(
        lab.srv
        .cmd("sh")
        .args([
            "-c",
            "(echo 'add table inet daemon { flags owner; }'; \
              echo 'add chain inet daemon input { type filter hook input priority 5; policy accept; }'; \
              sleep 60) | nft -i >/dev/null",
        ])
        .spawn()
        .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(10), || lab
        .srv
        .ruleset()
        .contains("table inet daemon")));
    let change = lab.grant(None);
    assert!(
        change.changed && change.chains == vec!["inet filter input".to_string()],
        "{change:?}"
    );
    let tables = in_netns(&lab.srv, || nft::read_ruleset().unwrap()).tables;
    assert!(
        tables.iter().any(|t| t.id.name == "daemon" && t.owned),
        "{tables:?}"
    );
    lab.revoke();
    assert!(!lab.srv.ruleset().contains("ovh"));
    stop(&mut owner);
}
