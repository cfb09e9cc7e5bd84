//! The modules' side of the contract, against a stand-in for the command that records its
//! arguments and answers as the command would (an object, a drift, a refusal, garbage): every
//! option becomes its flag, check mode adds `--dry-run` and reports `would_change`, a refusal is
//! `msg` and `rc`, a drift is not a failure. The real command is exercised by fleet.rs; the
//! stand-in never touches anything.
use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::common::describe;

/// The stand-in: each call appends its arguments (one line, separated by `|`) to `calls`, then
/// answers by what it was asked.
const STAND_IN: &str = r##"#!/bin/sh
d=$(dirname "$0")
(IFS='|'; printf '%s\n' "$*") >> "$d/calls"
case "$*" in
  *garbage*) echo 'not json'; exit 0 ;;
  *70000*) printf '%s\n' '{"command":"grant","changed":false,"dry_run":false,"error":"port 70000 is outside 1-65535"}'
           printf '%s\n' 'ovh-access: error: port 70000 is outside 1-65535' >&2; exit 2 ;;
  *status*) printf '%s\n' '{"command":"status","changed":false,"dry_run":false,"would_change":false,"consistent":false,"drift":[{"what":"w","repair":"r"}],"granted":null,"expires_at":null,"warnings":[]}'; exit 1 ;;
  *--dry-run*) printf '%s\n' '{"command":"x","changed":false,"dry_run":true,"would_change":true,"keys_file":"/root/.ssh/authorized_keys2","keys_file_before":"a\n","keys_file_after":"a\nb\n","firewall_script":"# nftables\nadd rule\n","warnings":[]}' ;;
  *) printf '%s\n' '{"command":"x","changed":true,"dry_run":false,"would_change":true,"ports":[2222],"warnings":["w1"]}' ;;
esac
"##;

const PLAY: &str = r#"- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    m: &m
      executable: "{{ dir }}/ovh-access"
      root: "{{ dir }}"
  tasks:
    - name: every grant option
      ovh.access.support_access:
        <<: *m
        region: eu
        host: support.example.net
        addresses: [192.0.2.10, "2001:db8::10"]
        key_file: /k.pub
        fingerprint: "SHA256:abc"
        ports: [22, 2222]
        duration: 4h
        firewall: nft
        replace_foreign: true
        resolver: 192.0.2.53
        allow_private: true
        trust_dns: true
        no_dns: true
      register: grant
    - name: every revoke option
      ovh.access.support_access: {<<: *m, state: revoked, remove: true, keep_sessions: true}
      register: revoke
    - name: check and diff mode
      ovh.access.support_access: {<<: *m, state: revoked}
      check_mode: true
      diff: true
      register: check
    - name: refused
      ovh.access.support_access: {<<: *m, ports: [70000]}
      register: refused
      ignore_errors: true
    - name: garbage
      ovh.access.support_access: {<<: *m, host: garbage}
      register: garbage
      ignore_errors: true
    - name: drift
      ovh.access.support_access_info: *m
      register: drift
    - name: results
      ansible.builtin.copy:
        dest: "{{ dir }}/results.json"
        content: "{{ {'grant': grant, 'revoke': revoke, 'check': check, 'refused': refused, 'garbage': garbage, 'drift': drift} | to_json }}"
"#;

#[test]
fn modules_map_options_to_flags_and_results_to_ansible() {
    if !crate::can_run("modules_map_options_to_flags_and_results_to_ansible") {
        return;
    }
    let home = crate::scratch();
    let dir = home.path();
    let stand_in = dir.join("ovh-access");
    fs::write(&stand_in, STAND_IN).unwrap();
    fs::set_permissions(&stand_in, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("play.yml"), PLAY).unwrap();
    let out = crate::ansible_cmd("ansible-playbook", dir)
        .args(["-i", "localhost,", "-e"])
        .arg(format!("dir={}", dir.display()))
        .arg(dir.join("play.yml"))
        .output()
        .expect("run ansible-playbook");
    assert!(out.status.success(), "{}", describe(&out));

    let root = format!("--root|{}|--json", dir.display());
    let calls = fs::read_to_string(dir.join("calls")).unwrap();
    let calls: Vec<String> = calls
        .lines()
        .map(|l| {
            let l = l.strip_prefix(&root).unwrap_or_else(|| panic!("{l}"));
            l.trim_start_matches('|').to_string()
        })
        .collect();
    assert_eq!(
        calls,
        [
            "grant|--region|eu|--host|support.example.net|--key-file|/k.pub|--fingerprint|\
             SHA256:abc|--for|4h|--firewall|nft|--resolver|192.0.2.53|--address|192.0.2.10|\
             --address|2001:db8::10|--port|22|--port|2222|--replace-foreign|--allow-private|\
             --trust-dns|--no-dns",
            "revoke|--keep-sessions|--remove",
            "revoke|--dry-run",
            "grant|--port|70000",
            "grant|--host|garbage",
            "status",
        ]
    );

    let r: Value = serde_json::from_slice(&fs::read(dir.join("results.json")).unwrap()).unwrap();
    let g = &r["grant"];
    assert_eq!(g["changed"], true, "{g}");
    assert_eq!(g["ports"], serde_json::json!([2222]), "{g}");
    assert_eq!(
        g["warnings"],
        serde_json::json!(["w1"]),
        "the tool's warnings: {g}"
    );
    assert!(g.get("rc").is_none(), "{g}");
    // Check mode: nothing changed, but the real run would change: `changed` is true, with the
    // keys file as a diff and the firewall change as prepared text.
    let c = &r["check"];
    assert_eq!(c["changed"], true, "{c}");
    assert_eq!(c["dry_run"], true, "{c}");
    assert_eq!(
        c["diff"],
        serde_json::json!([
            {"before_header": "/root/.ssh/authorized_keys2", "after_header": "/root/.ssh/authorized_keys2",
             "before": "a\n", "after": "a\nb\n"},
            {"prepared": "# nftables\nadd rule\n"}
        ]),
        "{c}"
    );
    let f = &r["refused"];
    assert_eq!(f["failed"], true, "{f}");
    assert_eq!(f["msg"], "port 70000 is outside 1-65535", "{f}");
    assert_eq!(f["rc"], 2, "{f}");
    let g = &r["garbage"];
    assert_eq!(g["failed"], true, "{g}");
    assert!(
        g["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("printed no JSON object"),
        "{g}"
    );
    let d = &r["drift"];
    assert!(d.get("failed").is_none() || d["failed"] == false, "{d}");
    assert_eq!(d["consistent"], false, "{d}");
    assert_eq!(d["changed"], false, "{d}");
    assert_eq!(d["drift"][0]["repair"], "r", "{d}");
}
