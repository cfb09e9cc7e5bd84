//! Hostile servers, iptables side (legacy and nft variants), against the real kernel in
//! throwaway namespaces: drops in the raw and mangle tables and at the end of filter OUTPUT, a
//! chain of the administrator's named like the tool's, a hand-made jump to the tool's chain.
use anyhow::Result;
use ovh_access::firewall::iptables::save::strip_volatile;
use ovh_access::firewall::iptables::{Family, IptablesBackend, Variant};
use ovh_access::firewall::{Backend, LayerChange, Mode, OpenRequest};

use crate::common::*;

const SRV: &str = "192.0.2.1";
const SUP: &str = "192.0.2.2";
const STR_SIDE: &str = "198.51.100.1";

fn lab() -> ListenerLab {
    ListenerLab::new(
        ["oa-hipt-srv", "oa-hipt-sup", "oa-hipt-str"],
        &[&format!("{SRV}/24")],
        &[&format!("{SUP}/24")],
        &[&format!("{STR_SIDE}/24")],
        &["198.51.100.2/24"],
        &[22],
    )
}

const VARIANTS: [Variant; 2] = [Variant::Legacy, Variant::Nft];

fn backend(v: Variant) -> IptablesBackend {
    IptablesBackend::new(v, Family::V4)
}

fn load(lab: &ListenerLab, v: Variant, rules: &str) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), rules).unwrap();
    run(lab.srv.cmd(backend(v).program("restore")).arg(f.path()));
}

fn save(lab: &ListenerLab, v: Variant) -> String {
    let out = run(&mut lab.srv.cmd(backend(v).program("save")));
    strip_volatile(&String::from_utf8_lossy(&out.stdout))
}

fn grant(lab: &ListenerLab, v: Variant) -> Result<LayerChange> {
    let req = OpenRequest {
        addresses: vec![SUP.parse().unwrap()],
        ports: vec![22],
        timeout: None,
    };
    in_netns(&lab.srv, move || backend(v).open(&req, &[], Mode::Apply))
}

fn revoke(lab: &ListenerLab, v: Variant) -> Result<LayerChange> {
    in_netns(&lab.srv, move || backend(v).close(&[], Mode::Apply))
}

/// Closed → grant → the support (only) reaches sshd → revoke → closed, `*-save` as before.
fn opens_and_restores(rules: &str) {
    for v in VARIANTS {
        let lab = lab();
        load(&lab, v, rules);
        let before = save(&lab, v);
        assert!(!tcp_connects(&lab.sup, SRV, 22), "{v:?}: closed first");
        let change = grant(&lab, v).unwrap();
        let during = save(&lab, v);
        assert!(
            tcp_connects(&lab.sup, SRV, 22),
            "{v:?}: the support after the grant ({change:?}):\n{during}"
        );
        assert!(
            !tcp_connects(&lab.stranger, STR_SIDE, 22),
            "{v:?}:\n{during}"
        );
        // A second grant finds it exactly as written.
        assert!(!grant(&lab, v).unwrap().changed, "{v:?}:\n{during}");
        revoke(&lab, v).unwrap();
        assert!(!tcp_connects(&lab.sup, SRV, 22), "{v:?}: after revoke");
        assert_eq!(save(&lab, v), before, "{v:?}: revoke restores every table");
    }
}

#[test]
fn hostile_iptables_raw_prerouting_drop_is_opened() {
    if !can_run("hostile_iptables_raw_prerouting_drop_is_opened") {
        return;
    }
    opens_and_restores(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A PREROUTING -p tcp -m tcp --dport 22 -j DROP\nCOMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    );
}

#[test]
fn hostile_iptables_raw_output_and_mangle_prerouting_drops_are_opened() {
    if !can_run("hostile_iptables_raw_output_and_mangle_prerouting_drops_are_opened") {
        return;
    }
    opens_and_restores(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A OUTPUT -p tcp -m tcp --sport 22 -j DROP\nCOMMIT\n\
         *mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -p tcp -m tcp --dport 22 -j DROP\nCOMMIT\n",
    );
}

#[test]
fn hostile_iptables_output_ending_in_drop_is_opened() {
    if !can_run("hostile_iptables_output_ending_in_drop_is_opened") {
        return;
    }
    opens_and_restores(
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A INPUT -i lo -j ACCEPT\n\
         -A OUTPUT -o lo -j ACCEPT\n\
         -A OUTPUT -p udp -m udp --dport 53 -j ACCEPT\n\
         -A OUTPUT -j DROP\nCOMMIT\n",
    );
}

#[test]
fn hostile_iptables_admin_chain_named_ovh_access_is_never_touched() {
    if !can_run("hostile_iptables_admin_chain_named_ovh_access_is_never_touched") {
        return;
    }
    for v in VARIANTS {
        let lab = lab();
        load(
            &lab,
            v,
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:OVH-ACCESS - [0:0]\n\
             -A INPUT -i lo -j ACCEPT\n-A INPUT -j OVH-ACCESS\n\
             -A OVH-ACCESS -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n",
        );
        let before = save(&lab, v);
        let err = format!("{:#}", grant(&lab, v).unwrap_err());
        assert!(
            err.contains("chain OVH-ACCESS") && err.contains("-E OVH-ACCESS"),
            "{v:?}: the refusal names the chain and how to rename it: {err}"
        );
        assert_eq!(
            save(&lab, v),
            before,
            "{v:?}: a refused grant changes nothing"
        );
        let change = revoke(&lab, v).unwrap();
        assert!(!change.changed, "{v:?}: {change:?}");
        assert_eq!(save(&lab, v), before, "{v:?}: revoke must not touch it");
    }
}

#[test]
fn hostile_iptables_untagged_jump_to_the_tools_chain_does_not_stop_revoke() {
    if !can_run("hostile_iptables_untagged_jump_to_the_tools_chain_does_not_stop_revoke") {
        return;
    }
    for v in VARIANTS {
        let lab = lab();
        load(
            &lab,
            v,
            "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A INPUT -i lo -j ACCEPT\nCOMMIT\n",
        );
        grant(&lab, v).unwrap();
        assert!(tcp_connects(&lab.sup, SRV, 22), "{v:?}");
        lab.srv
            .sh(&format!("{} -A FORWARD -j OVH-ACCESS", backend(v).name()));
        let change = revoke(&lab, v).unwrap();
        let after = save(&lab, v);
        assert!(
            !tcp_connects(&lab.sup, SRV, 22),
            "{v:?}: revoke must close the door: {change:?}\n{after}"
        );
        assert!(
            !after.contains("--comment ovh-access"),
            "{v:?}: the tool's jump and ACCEPTs are gone:\n{after}"
        );
        assert!(
            after.contains("-A FORWARD -j OVH-ACCESS"),
            "{v:?}: the administrator's jump stays:\n{after}"
        );
        assert!(
            change.notes.iter().any(|n| n.contains("by hand")),
            "{v:?}: {:?}",
            change.notes
        );
    }
}
