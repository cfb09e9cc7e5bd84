//! The fleet test: `ansible-playbook` grants the support access to three servers, checks it,
//! fails one host alone on bad input, and revokes it everywhere (the world is in world.rs).
//! Plays, in order: grant in `--check --diff`; grant (changed on each: the support logs in to
//! each server, the stranger to none); the same grant again (changed=0); revoke in
//! `--check --diff` (would change, prints the keys-file diff and the firewall change, changes
//! nothing); the info module (consistent everywhere, also in check mode); a grant where one host
//! has bad input (port 70000: that host alone fails, with the tool's message and exit code); and
//! revoke on all, which closes every door.
use std::process::Command;
use std::time::Instant;

use crate::common::{bin, describe, tcp_connects};
use crate::world::*;

/// The module's options every play shares: the tool, the server's sandbox, and the support as
/// the fleet's dnsmasq answers it (a documentation address, hence allow_private and trust_dns).
const TARGET: &str = "executable: \"{{ ovh_access_bin }}\"
        root: \"{{ ovh_root }}\"";

fn grant_play(ports: &str, extra: &str) -> String {
    format!(
        "- name: Let the support in
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Grant
      ovh.access.support_access:
        {TARGET}
        host: {SUPPORT_HOST}
        resolver: \"{{{{ resolver }}}}\"
        allow_private: true
        trust_dns: true
        key_file: \"{{{{ support_key }}}}\"
        ports: {ports}
{extra}      register: support
    - name: The SSH port to give to the support
      ansible.builtin.debug:
        msg: \"SUPPORT-PORT {{{{ inventory_hostname }}}} {{{{ support.ports | join(',') }}}}\"
"
    )
}

fn revoke_play() -> String {
    format!(
        "- name: Shut the support out
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Revoke
      ovh.access.support_access:
        {TARGET}
        state: revoked
"
    )
}

fn info_play() -> String {
    format!(
        "- name: Support access status
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Status
      ovh.access.support_access_info:
        {TARGET}
      register: access
    - name: Consistent, and granted as asked
      ansible.builtin.assert:
        that:
          - access.consistent
          - access.drift == []
          - not access.changed
          - access.granted.host == '{SUPPORT_HOST}'
          - access.granted.ports == [22, {SUPPORT_PORT}]
          - access.granted.addresses == ['{SUPPORT}', '{SUPPORT_V6}']
          - access.granted.address_source == 'dns'
          - access.expires_at is none
"
    )
}

#[test]
fn fleet_grant_check_diff_info_partial_failure_and_revoke() {
    if !crate::can_run("fleet_grant_check_diff_info_partial_failure_and_revoke") {
        return;
    }
    crate::venv();
    let started = Instant::now();
    let f = Fleet::new();
    let rulesets = f.rulesets();
    f.assert_nobody_reaches("before the grant");
    // No `ports`: the tool opens every port sshd listens on (22 and 2222), since `from=`
    // restricts where the key works from, not the port.
    let grant = grant_play("\"{{ omit }}\"", "");
    grant_in_check_mode(&f, &grant, &rulesets);
    grant_on_all(&f, &grant);
    f.playbook("grant", &grant, &[])
        .assert_all("grant again", 0);
    let granted = revoke_in_check_mode(&f);
    f.playbook("info", &info_play(), &[]).assert_all("info", 0);
    f.playbook("info", &info_play(), &["--check"])
        .assert_all("info --check", 0);
    one_host_with_bad_input(&f, &granted);
    revoke_on_all(&f, &rulesets);
    eprintln!("fleet test: {:.1} s", started.elapsed().as_secs_f64());
}

/// The lines of `text` that start with `prefix` and carry the support key.
fn key_lines(f: &Fleet, text: &str, prefix: &str) -> usize {
    let blob = f.support_blob();
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&blob))
        .count()
}

/// Would change each host, shows the key line to be added and the firewall rules, changes
/// nothing.
fn grant_in_check_mode(f: &Fleet, grant: &str, rulesets: &[String]) {
    let p = f.playbook("grant", grant, &["--check", "--diff"]);
    p.assert_all("grant --check --diff", 1);
    let added = key_lines(f, &p.text, &format!("+from=\"{SUPPORT}"));
    assert_eq!(added, 3, "one added key line per host:\n{}", p.text);
    let element = format!("add element inet filter ovh_access_v4 {{ {SUPPORT} }}");
    assert!(
        p.text.contains(&element),
        "the firewall change:\n{}",
        p.text
    );
    for (s, before) in f.servers.iter().zip(rulesets) {
        assert_eq!(f.keys_text(s), "", "--check wrote {}'s keys file", s.name);
        assert_eq!(
            &s.ns.ruleset(),
            before,
            "--check changed {}'s ruleset",
            s.name
        );
    }
    f.assert_nobody_reaches("after grant --check");
}

/// Changed on each host; the play prints the ports per host; the support logs in to each server
/// on both ports, the stranger reaches none.
fn grant_on_all(f: &Fleet, grant: &str) {
    let p = f.playbook("grant", grant, &[]);
    p.assert_all("grant", 1);
    for s in &f.servers {
        let line = format!("SUPPORT-PORT {} 22,{SUPPORT_PORT}", s.name);
        assert!(p.text.contains(&line), "no `{line}`:\n{}", p.text);
        for port in [22, SUPPORT_PORT] {
            assert!(
                f.login(&f.support, s, port),
                "the support cannot log in to {}:{port}:\n{}",
                s.name,
                s.ns.ruleset()
            );
            assert!(
                !tcp_connects(&f.stranger, s.addr, port),
                "the stranger reaches {}:{port}",
                s.name
            );
        }
    }
}

/// Would change each host, prints the keys-file diff (the line commented out) and the firewall
/// change, changes nothing. Returns the keys files as granted.
fn revoke_in_check_mode(f: &Fleet) -> Vec<String> {
    let granted = f.keys_texts();
    let p = f.playbook("revoke", &revoke_play(), &["--check", "--diff"]);
    p.assert_all("revoke --check --diff", 1);
    let removed = key_lines(f, &p.text, &format!("-from=\"{SUPPORT}"));
    let commented = key_lines(f, &p.text, "+#");
    assert!(
        removed == 3 && commented == 3,
        "one keys-file diff per host (-line, +#line):\n{}",
        p.text
    );
    assert!(
        p.text.contains("--- before: /root/.ssh/authorized_keys2"),
        "the diff names the keys file:\n{}",
        p.text
    );
    assert!(
        p.text.contains("# nftables\n") && p.text.contains("delete chain inet filter ovh_access"),
        "the firewall change:\n{}",
        p.text
    );
    assert_eq!(f.keys_texts(), granted, "--check changed a keys file");
    for s in &f.servers {
        assert!(
            f.login(&f.support, s, SUPPORT_PORT),
            "--check shut the support out of {}",
            s.name
        );
    }
    granted
}

/// srv2 gets port 70000 and fails alone, with the tool's one-line error and exit code 2, and
/// keeps what it had; srv1 and srv3 are granted (for 4 h now, a change).
fn one_host_with_bad_input(f: &Fleet, granted: &[String]) {
    let bad = grant_play(
        "\"{{ [70000] if inventory_hostname == 'srv2' else omit }}\"",
        "        duration: 4h\n",
    );
    let p = f.playbook("bad", &bad, &[]);
    assert!(
        !p.out.status.success(),
        "a failed host fails the run:\n{}",
        p.text
    );
    for name in ["srv1", "srv3"] {
        let c = p.counts(name);
        assert!(c.failed == 0 && c.changed == 1, "{name}: {c:?}\n{}", p.text);
    }
    assert_eq!(p.counts("srv2").failed, 1, "{}", p.text);
    // The tool's own one-line error for that input (it fails while parsing, before --root is
    // read or anything is touched).
    let out = Command::new(bin())
        .arg("--root")
        .arg(&f.servers[1].root)
        .args(["--json", "grant", "--port", "70000"])
        .output()
        .expect("run ovh-access");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let msg = serde_json::to_string(&msg["error"]).unwrap();
    let fatal: Vec<&str> = p
        .text
        .lines()
        .filter(|l| l.starts_with("fatal: "))
        .collect();
    assert!(
        fatal.len() == 1
            && fatal[0].starts_with("fatal: [srv2]")
            && msg.contains("port 70000 is outside 1-65535")
            && fatal[0].contains(&format!("\"msg\": {msg}"))
            && fatal[0].contains("\"rc\": 2"),
        "srv2 alone fails, with the tool's error and exit code:\n{}",
        p.text
    );
    assert_eq!(
        f.keys_text(&f.servers[1]),
        granted[1],
        "the failed host's keys file changed"
    );
    for s in &f.servers {
        assert!(
            f.login(&f.support, s, SUPPORT_PORT),
            "the support lost {}",
            s.name
        );
    }
}

/// Changed on each host; nobody reaches any SSH port, the support key is commented out
/// everywhere, every ruleset is as before the grant; the control host still manages the fleet.
fn revoke_on_all(f: &Fleet, rulesets: &[String]) {
    f.playbook("revoke", &revoke_play(), &[])
        .assert_all("revoke", 1);
    f.assert_nobody_reaches("after the revoke");
    assert_eq!(
        f.rulesets(),
        rulesets,
        "revoke leaves the rulesets as they were"
    );
    let blob = f.support_blob();
    for s in &f.servers {
        let keys = f.keys_text(s);
        assert!(
            keys.lines()
                .filter(|l| l.contains(&blob))
                .all(|l| l.starts_with('#')),
            "{}: {keys}",
            s.name
        );
    }
    let after = format!(
        "- hosts: fleet
  gather_facts: false
  tasks:
    - ovh.access.support_access_info:
        {TARGET}
      register: access
    - ansible.builtin.assert:
        that: [access.granted is none, access.consistent]
"
    );
    f.playbook("info", &after, &[])
        .assert_all("info after revoke", 0);
}
