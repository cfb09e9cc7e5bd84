//! doctor on a server the support cannot reach for three reasons of different kinds at once:
//! sshd (PermitRootLogin no in a `Match Address` block for the support), the keys file (0666,
//! which StrictModes refuses) and the firewall (a fail2ban-style drop set holding the support
//! address, at priority -1, loaded after the grant so that it has no ovh-access jump). doctor
//! must name all three with their fixes; the test then applies the fixes as an operator would —
//! editing the file at the file:line given, running the commands given — and the support host
//! logs in.
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::topology::*;

/// `doctor --json`: its exit status and its checks.
fn doctor(t: &Topology) -> (Option<i32>, Vec<Value>, String) {
    doctor_args(t, t.support_args("doctor", &[]))
}

/// `doctor --json` with the support's addresses given (for a server that cannot ask DNS).
fn doctor_pinned(t: &Topology) -> (Option<i32>, Vec<Value>, String) {
    let mut args: Vec<OsString> = vec!["doctor".into(), "--host".into(), "cache-ng.ovh.net".into()];
    for a in [SUP_V4, SUP_V6] {
        args.push("--address".into());
        args.push(a.into());
    }
    args.push("--key-file".into());
    args.push(t.support_pub().into());
    doctor_args(t, args)
}

fn doctor_args(t: &Topology, target: Vec<OsString>) -> (Option<i32>, Vec<Value>, String) {
    let mut args: Vec<OsString> = vec!["--json".into()];
    args.extend(target);
    let out = t.tool(args);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}", describe(&out)));
    (
        out.status.code(),
        v["checks"].as_array().cloned().unwrap_or_default(),
        describe(&out),
    )
}

/// The failed checks whose `check` is `name`.
fn fails<'a>(checks: &'a [Value], name: &str) -> Vec<&'a Value> {
    checks
        .iter()
        .filter(|c| c["status"] == "FAIL" && c["check"] == name)
        .collect()
}

/// A drop set as fail2ban's nftables action makes it, holding the support's IPv4 address.
const F2B: &str = "table inet f2b-table {
    set addr-set-sshd { type ipv4_addr; elements = { 198.51.100.2 } }
    chain f2b-chain {
        type filter hook input priority filter - 1; policy accept;
        tcp dport { 22, 2222 } ip saddr @addr-set-sshd drop
    }
}";

/// Carry out one fix the way an operator would on the server: the sandbox stands for `/`, and
/// `systemctl reload` is what SIGHUP does to sshd.
fn apply(t: &Topology, fix: &str) {
    for step in fix.split(", then ") {
        let step = step.trim().trim_matches('`');
        if let Some(rest) = step.strip_prefix("edit ") {
            let (place, line) = rest
                .split_once(" to read `")
                .unwrap_or_else(|| panic!("{fix}"));
            let line = line.trim_end_matches('`');
            let (file, n) = place.rsplit_once(':').unwrap();
            let n: usize = n.parse().unwrap();
            let path = t.sandbox().join(file.trim_start_matches('/'));
            let old = fs::read_to_string(&path).unwrap();
            let mut lines: Vec<&str> = old.lines().collect();
            lines[n - 1] = line;
            fs::write(&path, lines.join("\n") + "\n").unwrap();
        } else if step.starts_with("systemctl reload") {
            reload_sshd(t);
        } else if let Some(rest) = step.strip_prefix("chmod ") {
            let (mode, file) = rest.split_once(' ').unwrap();
            let mode = u32::from_str_radix(mode, 8).unwrap_or_else(|_| panic!("{fix}"));
            let path = t.sandbox().join(file.trim_start_matches('/'));
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        } else if step.starts_with("nft ") {
            t.srv.sh(step);
        } else if let Some(rest) = step.strip_prefix("ovh-access ") {
            t.tool_ok(rest.split_whitespace());
        } else {
            panic!("the test does not know how to apply {step:?} (from {fix:?})");
        }
    }
}

/// SIGHUP: sshd re-executes itself and reads its configuration again.
fn reload_sshd(t: &Topology) {
    let pid_file = t.sandbox().join("run/sshd.pid");
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: plain kill(2) on the sandbox sshd's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    // Until it listens again (the re-exec closes and reopens the socket).
    std::thread::sleep(Duration::from_millis(200));
    assert!(wait_until(Duration::from_secs(10), || tcp_connects(
        &t.srv,
        "127.0.0.1",
        t.port
    )));
}

#[test]
fn doctor_names_three_blockers_and_their_fixes_let_the_support_in() {
    if !can_run("doctor_names_three_blockers_and_their_fixes_let_the_support_in") {
        return;
    }
    let t = Topology::new(Opts {
        extra_sshd_config: format!("Match Address {SUP_V4}\n    PermitRootLogin no\n"),
        ..Opts::default()
    });
    t.tool_ok(t.grant_args(&[]));
    t.srv.sh(&format!("nft -f - <<'EOF'\n{F2B}\nEOF"));
    fs::set_permissions(t.keys_file(), fs::Permissions::from_mode(0o666)).unwrap();
    let out = t.ssh(&t.sup, SRV_SUP_V4, t.port, "echo ok");
    assert!(
        !out.status.success(),
        "the support should be locked out:\n{}",
        describe(&out)
    );

    let before = t.srv.ruleset();
    let (code, checks, all) = doctor(&t);
    assert_eq!(code, Some(1), "{all}");
    assert_eq!(t.srv.ruleset(), before, "doctor changed the ruleset");
    let prl = fails(&checks, "PermitRootLogin");
    assert_eq!(prl.len(), 1, "{all}");
    let cfg_line = t.sandbox().join("etc/ssh/sshd_config");
    let n = fs::read_to_string(&cfg_line)
        .unwrap()
        .lines()
        .position(|l| l.trim() == "PermitRootLogin no")
        .unwrap()
        + 1;
    assert_eq!(
        prl[0]["fix"],
        format!("edit /etc/ssh/sshd_config:{n} to read `PermitRootLogin prohibit-password`, then `systemctl reload sshd`"),
        "{all}"
    );
    assert!(prl[0]["detail"].as_str().unwrap().contains(SUP_V4), "{all}");
    let keys = fails(&checks, "keys file");
    assert_eq!(keys.len(), 1, "{all}");
    assert!(
        keys[0]["detail"].as_str().unwrap().contains("mode 666"),
        "{all}"
    );
    assert_eq!(
        keys[0]["fix"], "chmod 600 /root/.ssh/authorized_keys2",
        "{all}"
    );
    let fw = fails(&checks, "firewall");
    assert_eq!(fw.len(), 1, "{all}");
    let detail = fw[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("inet f2b-table f2b-chain")
            && detail.contains("drop set addr-set-sshd holds 198.51.100.2"),
        "{all}"
    );
    assert_eq!(
        fw[0]["fix"],
        format!("nft delete element inet f2b-table addr-set-sshd {{ {SUP_V4} }}, then ovh-access restore"),
        "{all}"
    );
    // Nothing else fails: the IPv6 path has none of the three problems.
    let failed: Vec<&Value> = checks.iter().filter(|c| c["status"] == "FAIL").collect();
    assert_eq!(failed.len(), 3, "{all}");

    for c in failed {
        apply(&t, c["fix"].as_str().unwrap());
    }
    let (code, _, all) = doctor(&t);
    assert_eq!(code, Some(0), "after the fixes doctor should pass:\n{all}");
    let out = t.ssh(&t.sup, SRV_SUP_V4, t.port, "echo ok; hostname");
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout) == format!("ok\n{SERVER_HOSTNAME}\n"),
        "the support should log in once the fixes are applied:\n{}\n{}",
        describe(&out),
        t.logs()
    );
    assert!(Path::new(&t.keys_file()).exists());
}

/// A drop placed before the tool's jump (nftables) and a drop in a layer that appeared after
/// the grant (iptables-legacy): doctor names each layer and what drops there; deleting the
/// misplaced jump and `ovh-access restore` (which puts jumps back at the head of every input
/// chain, the new layer included) let the support in.
#[test]
fn doctor_sees_drops_before_the_jump_in_each_layer() {
    if !can_run("doctor_sees_drops_before_the_jump_in_each_layer") {
        return;
    }
    let t = Topology::new(Opts::default());
    t.tool_ok(t.grant_args(&[]));
    let port = t.port;
    t.srv.sh(&format!(
        "nft insert rule inet filter input ip saddr {SUP_V4} tcp dport {port} drop"
    ));
    t.srv.sh(&format!(
        "iptables-legacy -A INPUT -s {SUP_V4} -p tcp --dport {port} -j DROP"
    ));
    assert!(!t.ssh(&t.sup, SRV_SUP_V4, port, "echo ok").status.success());
    let before = t.srv.ruleset();

    let (code, checks, all) = doctor(&t);
    assert_eq!(code, Some(1), "{all}");
    // doctor only reads.
    assert_eq!(t.srv.ruleset(), before, "doctor changed the ruleset");
    let fw = fails(&checks, "firewall");
    assert_eq!(fw.len(), 2, "{all}");
    let nft = fw
        .iter()
        .find(|c| {
            c["detail"]
                .as_str()
                .unwrap()
                .starts_with("nftables inet filter input")
        })
        .unwrap_or_else(|| panic!("{all}"));
    let d = nft["detail"].as_str().unwrap();
    assert!(
        d.contains("ovh-access jump NOT at the head")
            && d.contains(&format!("{SUP_V4} → port {port}: inet filter input handle")),
        "{all}"
    );
    let fix = nft["fix"].as_str().unwrap();
    assert!(
        fix.starts_with("nft delete rule inet filter input handle ")
            && fix.ends_with(", then ovh-access restore"),
        "{all}"
    );
    let legacy = fw
        .iter()
        .find(|c| {
            c["detail"]
                .as_str()
                .unwrap()
                .starts_with("iptables-legacy filter INPUT")
        })
        .unwrap_or_else(|| panic!("{all}"));
    let d = legacy["detail"].as_str().unwrap();
    assert!(
        d.contains("no ovh-access jump") && d.contains(&format!("-s {SUP_V4}/32")),
        "{all}"
    );
    assert_eq!(legacy["fix"], "ovh-access restore", "{all}");
    // IPv6 goes through: only IPv4 rules were added.
    assert!(!d.contains(SUP_V6));

    for c in fw {
        apply(&t, c["fix"].as_str().unwrap());
    }
    let (code, _, all) = doctor(&t);
    assert_eq!(code, Some(0), "after the fixes doctor should pass:\n{all}");
    let out = t.ssh(&t.sup, SRV_SUP_V4, port, "echo ok");
    assert!(out.status.success(), "{}\n{}", describe(&out), t.logs());
}

/// A server whose output chain drops too (DNS included, hence the pinned addresses): before
/// the grant doctor sees that neither the support's packets nor sshd's replies would pass, and
/// names the grant as the fix; after it, both directions pass and the support logs in.
#[test]
fn doctor_judges_the_replies_where_output_drops() {
    if !can_run("doctor_judges_the_replies_where_output_drops") {
        return;
    }
    let t = Topology::new(Opts {
        ruleset: Some(ruleset_path("output-drop.nft")),
        ..Opts::default()
    });
    let (code, checks, all) = doctor_pinned(&t);
    assert_eq!(code, Some(1), "{all}");
    let fw = fails(&checks, "firewall");
    assert_eq!(fw.len(), 2, "{all}");
    let port = t.port;
    let out = fw
        .iter()
        .find(|c| {
            c["detail"]
                .as_str()
                .unwrap()
                .starts_with("nftables inet filter output")
        })
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        out["detail"].as_str().unwrap().contains(&format!(
            "reply from port {port} to {SUP_V4}: no rule accepts it and the policy drops it"
        )),
        "{all}"
    );
    let fix = out["fix"].as_str().unwrap();
    assert!(
        fix.starts_with("ovh-access grant --host cache-ng.ovh.net"),
        "{all}"
    );
    assert!(fw.iter().all(|c| c["fix"] == fix), "{all}");
    apply(&t, fix);
    let (code, checks, all) = doctor_pinned(&t);
    assert_eq!(code, Some(0), "{all}");
    let passed = checks
        .iter()
        .filter(|c| c["check"] == "firewall" && c["status"] == "PASS")
        .count();
    assert_eq!(passed, 2, "{all}");
    let out = t.ssh(&t.sup, SRV_SUP_V4, port, "echo ok");
    assert!(out.status.success(), "{}\n{}", describe(&out), t.logs());
}
