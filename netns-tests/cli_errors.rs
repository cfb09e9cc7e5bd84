//! The command-line contract against a real kernel firewall and a real DNS server (issue 3):
//! bad input that needs a network to show — a DNS timeout, an NXDOMAIN, a changing command run
//! without root, nf_tables refusing the tool — is one line on stderr with the right exit code,
//! and nothing changes (the ruleset and the tool's files byte-identical); `--json` prints one
//! object for every command with `changed` true only when something changed; and
//! `grant --dry-run` prints the nft rules and the keys-file diff and changes nothing.
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::topology::*;

/// Nobody answers on this address of the DNS link: queries to it time out.
const DEAD_RESOLVER: &str = "192.0.2.99";
/// A second dnsmasq on the DNS host, authoritative for `example.`: `support.example` is the
/// support host of no built-in region (so refresh re-resolves it without a published list to
/// compare with), other names there are NXDOMAIN (the topology's dnsmasq has no zone of its own
/// and answers those with REFUSED).
const ZONE_PORT: u16 = 5353;
const ZONE_HOST: &str = "support.example";

/// What "nothing changed" compares: the server's ruleset, and every file the tool may write —
/// root's home (the keys file), its state directory and its lock — with type, mode and content.
#[derive(Debug, PartialEq, Eq)]
struct World {
    ruleset: String,
    files: BTreeMap<PathBuf, (u32, Vec<u8>)>,
}

fn world(t: &Topology, extra_roots: &[&Path]) -> World {
    use std::os::unix::fs::MetadataExt;
    let sb = t.sandbox();
    let mut todo: Vec<PathBuf> = ["root", "var/lib/ovh-access", "run/ovh-access.lock", "etc"]
        .iter()
        .map(|p| sb.join(p))
        .chain(extra_roots.iter().map(|p| p.to_path_buf()))
        .collect();
    let mut files = BTreeMap::new();
    while let Some(p) = todo.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
        // The lock holds the pid of its last holder: its existence counts, not its content.
        let content = if m.is_file() && !p.ends_with("ovh-access.lock") {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        files.insert(p, (m.mode(), content));
    }
    World {
        ruleset: t.srv.ruleset(),
        files,
    }
}

/// Panics naming what differs: the ruleset (both listings) or each file that changed.
fn assert_same(after: &World, before: &World, what: &str) {
    assert!(
        after.ruleset == before.ruleset,
        "{what} changed the ruleset:\n--- before\n{}\n--- after\n{}",
        before.ruleset,
        after.ruleset
    );
    let mut diffs = Vec::new();
    for (p, v) in &after.files {
        match before.files.get(p) {
            None => diffs.push(format!("created {}", p.display())),
            Some(b) if b != v => diffs.push(format!(
                "changed {}:\n{}\n=>\n{}",
                p.display(),
                String::from_utf8_lossy(&b.1),
                String::from_utf8_lossy(&v.1)
            )),
            Some(_) => {}
        }
    }
    for p in before
        .files
        .keys()
        .filter(|p| !after.files.contains_key(*p))
    {
        diffs.push(format!("removed {}", p.display()));
    }
    assert!(
        diffs.is_empty(),
        "{what} changed files:\n{}",
        diffs.join("\n")
    );
}

/// stdout is exactly one JSON object, with the booleans `changed` and `dry_run`.
fn one_json_object(out: &Output) -> Value {
    let v = one_json_value(out);
    assert!(
        v["changed"].is_boolean() && v["dry_run"].is_boolean(),
        "{v}"
    );
    v
}

/// Runs the tool in the server namespace behind `wrapper` (setpriv ...), with `--root <sandbox>`
/// unless `with_root` is false; bounded by `timeout` like [`Topology::tool`].
fn tool_via(t: &Topology, wrapper: &[&str], with_root: bool, args: &[OsString]) -> Output {
    let mut cmd = t.srv.cmd("timeout");
    cmd.arg(TOOL_LIMIT.as_secs().to_string())
        .args(wrapper)
        .arg(bin());
    if with_root {
        cmd.arg("--root").arg(t.sandbox());
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ovh-access")
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `grant` with the topology's support key and `extra` (the host/addresses).
fn grant(t: &Topology, extra: &[&str]) -> Vec<OsString> {
    let mut a = os(&["grant"]);
    a.extend(os(extra));
    a.push("--key-file".into());
    a.push(t.support_pub().into());
    a
}

/// The support host of no region, by DNS through the [`ZoneServer`]: `--resolver` and
/// `--allow-private`, valid for both grant and refresh.
fn by_zone() -> Vec<String> {
    vec![
        "--resolver".into(),
        format!("{DNS_V4}:{ZONE_PORT}"),
        "--allow-private".into(),
    ]
}

/// The refusal contract: `code`, one error line naming each of `must_name`, empty stdout,
/// nothing changed; then with `--json`: one object, `changed: false`, `error` = that line.
fn assert_refused(
    t: &Topology,
    wrapper: &[&str],
    with_root: bool,
    args: &[OsString],
    code: i32,
    must_name: &[&str],
    outside: &[&Path],
) -> String {
    let before = world(t, outside);
    let out = tool_via(t, wrapper, with_root, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}:\n{}",
        describe(&out)
    );
    let msg = refusal_message(&out, must_name);
    assert_same(&world(t, outside), &before, &format!("{args:?}"));

    let mut json = os(&["--json"]);
    json.extend(args.iter().cloned());
    let out = tool_via(t, wrapper, with_root, &json);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{json:?}:\n{}",
        describe(&out)
    );
    let json_msg = one_error_line(&out);
    let v = one_json_object(&out);
    assert_eq!(v["changed"], Value::Bool(false), "{v}");
    assert_eq!(v["error"], Value::String(json_msg.clone()), "{v}");
    assert_eq!(json_msg, msg);
    assert_same(&world(t, outside), &before, &format!("{json:?}"));
    msg
}

#[test]
fn cli_dns_timeout_is_bad_input_and_changes_nothing() {
    if !can_run("cli_dns_timeout_is_bad_input_and_changes_nothing") {
        return;
    }
    let t = Topology::new(Opts::default());
    // A host of no built-in region: there is no published list to fall back on.
    let args = grant(
        &t,
        &[
            "--host",
            "support.example",
            "--resolver",
            DEAD_RESOLVER,
            "--allow-private",
        ],
    );
    let msg = assert_refused(
        &t,
        &[],
        true,
        &args,
        2,
        &["support.example", DEAD_RESOLVER, "--address", "--resolver"],
        &[],
    );
    assert!(msg.contains("no answer within"), "{msg}");
}

/// The `example.` zone: dnsmasq in the DNS namespace on [`ZONE_PORT`], killed on drop (and with
/// the namespace anyway).
struct ZoneServer(Child);

impl ZoneServer {
    fn start(t: &Topology) -> ZoneServer {
        let log = t.sandbox().join("dnsmasq-nx.log");
        let child = t
            .dns
            .cmd("dnsmasq")
            .args(dnsmasq_args(
                &[DNS_V4],
                &t.sandbox().join("run/dnsmasq-nx.pid"),
            ))
            .args([
                &format!("--port={ZONE_PORT}"),
                "--local=/example/",
                &format!("--host-record={ZONE_HOST},{SUP_V4},{SUP_V6}"),
            ])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start dnsmasq");
        let server = ZoneServer(child);
        let up = wait_until(Duration::from_secs(10), || {
            tcp_connects(&t.srv, DNS_V4, ZONE_PORT)
        });
        assert!(
            up,
            "dnsmasq on port {ZONE_PORT} did not start: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        server
    }
}

impl Drop for ZoneServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cli_nxdomain_is_bad_input_and_changes_nothing() {
    if !can_run("cli_nxdomain_is_bad_input_and_changes_nothing") {
        return;
    }
    let t = Topology::new(Opts::default());
    let _zone = ZoneServer::start(&t);
    let resolver = format!("{DNS_V4}:{ZONE_PORT}");
    // The server answers: a known name resolves (so the refusal below is the NXDOMAIN's).
    let ok = tool_via(
        &t,
        &[],
        true,
        &grant(
            &t,
            &[
                "--host",
                ZONE_HOST,
                "--resolver",
                &resolver,
                "--allow-private",
                "--dry-run",
            ],
        ),
    );
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    let args = grant(
        &t,
        &[
            "--host",
            "nosuch.example",
            "--resolver",
            &resolver,
            "--allow-private",
        ],
    );
    let msg = assert_refused(
        &t,
        &[],
        true,
        &args,
        2,
        &["nosuch.example", &resolver, "--address"],
        &[],
    );
    assert!(msg.contains("NXDOMAIN"), "{msg}");
}

#[test]
fn cli_changing_commands_without_root_are_refused() {
    if !can_run("cli_changing_commands_without_root_are_refused") {
        return;
    }
    let t = Topology::new(Opts::default());
    // Without --root the tool works on this machine's own files: as nobody it cannot write any
    // of them even if the check were gone, and it runs in the server's namespace, so the
    // firewall it could reach is the test's. The host's files are only read, to prove it.
    let host_files: [&Path; 3] = [
        Path::new("/var/lib/ovh-access"),
        Path::new("/run/ovh-access.lock"),
        Path::new("/root/.ssh/authorized_keys2"),
    ];
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let commands: Vec<(Vec<OsString>, &str)> = vec![
        (grant(&t, &["--address", SUP_V4]), "grant"),
        (os(&["revoke"]), "revoke"),
        (os(&["refresh"]), "refresh"),
        (os(&["restore"]), "restore"),
    ];
    for (args, name) in commands {
        let msg = assert_refused(
            &t,
            &nobody,
            false,
            &args,
            2,
            &[name, "root", "sudo"],
            &host_files,
        );
        // A fix that exists: restore has no --dry-run to suggest.
        if name == "restore" {
            assert!(!msg.contains("--dry-run"), "{msg}");
        }
    }
}

#[test]
fn cli_nftables_unavailable_is_a_failure_and_changes_nothing() {
    if !can_run("cli_nftables_unavailable_is_a_failure_and_changes_nothing") {
        return;
    }
    let t = Topology::new(Opts::default());
    // Stands for "nf_tables unavailable" (a container without CAP_NET_ADMIN, a kernel without
    // the module): root, but without CAP_NET_ADMIN, so every nf_tables request is refused with
    // EPERM. The command itself is right, the system refuses it: exit 1, not 2 (see error.rs).
    let no_net_admin = ["setpriv", "--inh-caps=-all", "--bounding-set=-net_admin"];
    let msg = assert_refused(
        &t,
        &no_net_admin,
        true,
        &grant(&t, &["--address", SUP_V4, "--address", SUP_V6]),
        1,
        &["nftables", "CAP_NET_ADMIN"],
        &[],
    );
    assert!(
        !msg.contains("rolled back"),
        "nothing was started, nothing to roll back: {msg}"
    );
    // No journal intent was left behind: the same grant with the capability just works.
    let out = t.tool(grant(&t, &["--address", SUP_V4, "--address", SUP_V6]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .all(|l| !l.contains("interrupted")),
        "{}",
        describe(&out)
    );
    t.tool_ok(["revoke"]);
}

/// `refresh` with nothing granted: nothing to resolve.
fn refresh_nothing() -> [&'static str; 1] {
    ["refresh"]
}

/// Runs `args` with `--json` and checks the object: `command`, `changed`, `dry_run`, exit code.
fn json_run(t: &Topology, args: &[OsString], changed: bool, dry_run: bool, code: i32) -> Value {
    let mut json = os(&["--json"]);
    json.extend(args.iter().cloned());
    let out = t.tool(&json);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{json:?}:\n{}",
        describe(&out)
    );
    let v = one_json_object(&out);
    let name = args[0].to_str().unwrap();
    assert_eq!(v["command"], name, "{v}");
    assert_eq!(
        v["changed"],
        Value::Bool(changed),
        "{json:?}: changed\n{v}\n{}",
        describe(&out)
    );
    assert_eq!(v["dry_run"], Value::Bool(dry_run), "{json:?}: dry_run\n{v}");
    // Human lines never go to stdout with --json; warnings go to stderr.
    for l in String::from_utf8_lossy(&out.stderr).lines() {
        assert!(
            l.starts_with("ovh-access: warning: "),
            "{json:?}: unexpected stderr line {l:?}"
        );
    }
    v
}

#[test]
fn cli_json_for_every_command_with_changed_only_when_something_changed() {
    if !can_run("cli_json_for_every_command_with_changed_only_when_something_changed") {
        return;
    }
    let t = Topology::new(Opts::default());
    let _zone = ZoneServer::start(&t);
    let zone = by_zone();
    let zone: Vec<&str> = zone.iter().map(String::as_str).collect();
    let g = grant(&t, &[&["--host", ZONE_HOST][..], &zone].concat());
    let mut g_dry = g.clone();
    g_dry.push("--dry-run".into());
    let before = world(&t, &[]);

    // Nothing granted yet: nothing to do for revoke, refresh, restore.
    json_run(&t, &os(&["revoke"]), false, false, 0);
    json_run(&t, &os(&refresh_nothing()), false, false, 0);
    json_run(&t, &os(&["restore"]), false, false, 0);
    json_run(&t, &os(&["status"]), false, false, 0);
    json_run(&t, &os(&["profiles"]), false, false, 0);
    json_run(&t, &g_dry, false, true, 0);
    assert_eq!(
        world(&t, &[]).ruleset,
        before.ruleset,
        "nothing-to-do commands changed the ruleset"
    );

    let v = json_run(&t, &g, true, false, 0);
    assert_eq!(v["ports"], serde_json::json!([t.port]), "{v}");
    assert_eq!(v["addresses"], serde_json::json!([SUP_V4, SUP_V6]), "{v}");
    let granted = world(&t, &[]);
    // The same grant again: already in place, nothing changed (Ansible's "ok", not "changed").
    json_run(&t, &g, false, false, 0);
    json_run(&t, &g_dry, false, true, 0);
    // Re-resolved: the same answer, nothing to change.
    let refresh = [&["refresh"][..], &zone].concat();
    let v = json_run(&t, &os(&refresh), false, false, 0);
    assert_eq!(v["addresses"], serde_json::json!([SUP_V4, SUP_V6]), "{v}");
    json_run(
        &t,
        &os(&[&refresh[..], &["--dry-run"]].concat()),
        false,
        true,
        0,
    );
    json_run(&t, &os(&["restore"]), false, false, 0);
    let v = json_run(&t, &os(&["status"]), false, false, 0);
    assert_eq!(v["consistent"], Value::Bool(true), "{v}");
    let mut doctor = os(&["doctor"]);
    doctor.extend(os(&["--host", ZONE_HOST]));
    doctor.extend(os(&zone));
    doctor.push("--key-file".into());
    doctor.push(t.support_pub().into());
    // Exit 0 or 1 as its checks decide; `changed` is false either way and the exit code agrees
    // with the findings.
    let mut djson = os(&["--json"]);
    djson.extend(doctor.iter().cloned());
    let out = t.tool(&djson);
    let v = one_json_object(&out);
    assert_eq!(v["changed"], Value::Bool(false), "{v}");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        describe(&out)
    );
    json_run(&t, &os(&["revoke", "--dry-run"]), false, true, 0);
    assert_same(&world(&t, &[]), &granted, "the no-op runs");

    json_run(&t, &os(&["revoke"]), true, false, 0);
    json_run(&t, &os(&["revoke"]), false, false, 0);
    json_run(&t, &os(&["status"]), false, false, 0);
    assert_eq!(
        world(&t, &[]).ruleset,
        before.ruleset,
        "revoke restores the ruleset"
    );
}

#[test]
fn cli_drift_exits_1_and_repairs_report_changed() {
    if !can_run("cli_drift_exits_1_and_repairs_report_changed") {
        return;
    }
    let t = Topology::new(Opts::default());
    t.tool_ok(grant(&t, &["--address", SUP_V4]));
    // Drift: the firewall lost the tool's objects (as after `flush ruleset` and a reload).
    t.srv.sh("nft flush ruleset");
    t.srv.load_nft(&ruleset_path("default-deny.nft"));
    let v = json_run(&t, &os(&["status"]), false, false, 1);
    assert_eq!(v["consistent"], Value::Bool(false), "{v}");
    // The repair changes something, and says so: restore, or the same grant again (its key
    // line is already in place, the firewall is not).
    json_run(&t, &os(&["restore"]), true, false, 0);
    json_run(&t, &os(&["status"]), false, false, 0);
    t.srv.sh("nft flush ruleset");
    t.srv.load_nft(&ruleset_path("default-deny.nft"));
    let v = json_run(&t, &grant(&t, &["--address", SUP_V4]), true, false, 0);
    assert_eq!(v["keys_file_changed"], Value::Bool(false), "{v}");
    json_run(&t, &os(&["status"]), false, false, 0);
    assert!(
        tcp_connects(&t.sup, SRV_SUP_V4, t.port),
        "the grant repaired the firewall"
    );
    t.tool_ok(["revoke"]);
}

#[test]
fn cli_grant_dry_run_prints_rules_and_diff_and_changes_nothing() {
    if !can_run("cli_grant_dry_run_prints_rules_and_diff_and_changes_nothing") {
        return;
    }
    let t = Topology::new(Opts::default());
    // An administrator's own line, which the diff must leave as context.
    t.write_keys("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmlq1b2qrtKD0Lg6E8Zz3nM0qH0Kb1yXbYl8o6UXLhd admin@laptop\n");
    let before = world(&t, &[]);
    let mut args = grant(&t, &BY_DNS);
    args.push("--dry-run".into());
    let out = t.tool(&args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The nft rules, in `nft -f` syntax, for the user's own table and the port sshd listens on.
    let port = t.port;
    for rule in [
        format!(
            "add rule inet filter ovh_access ip saddr @ovh_access_v4 tcp dport {{ {port} }} accept"
        ),
        format!("add element inet filter ovh_access_v4 {{ {SUP_V4} }}"),
        format!("add element inet filter ovh_access_v6 {{ {SUP_V6} }}"),
    ] {
        assert!(stdout.contains(&rule), "dry run lacks `{rule}`:\n{stdout}");
    }
    assert!(
        stdout.contains("inet filter input"),
        "the jump's chain:\n{stdout}"
    );
    // The keys-file diff: the new line added, restricted to the support's addresses.
    let blob = t.support_blob();
    let added: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('+') && l.contains(&blob))
        .collect();
    assert_eq!(added.len(), 1, "one added key line:\n{stdout}");
    assert!(
        added[0].contains(&format!("from=\"{SUP_V4}")),
        "{}",
        added[0]
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with('-')),
        "a dry grant removes nothing:\n{stdout}"
    );
    assert_eq!(
        world(&t, &[]),
        before,
        "grant --dry-run changed the ruleset or a file"
    );
    // Nobody can get in: the dry run really opened nothing.
    assert!(
        !tcp_connects(&t.sup, SRV_SUP_V4, port),
        "the port is open after a dry run"
    );

    // And a revoke --dry-run after a real grant: the rules that would go, the line that would be
    // commented out, nothing changed.
    t.tool_ok(grant(&t, &BY_DNS));
    let granted = world(&t, &[]);
    let out = t.tool(["revoke", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("delete chain inet filter ovh_access"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with('+') && l.contains(": #") && l.contains(&blob)),
        "the commented-out line in the diff:\n{stdout}"
    );
    assert_eq!(
        world(&t, &[]),
        granted,
        "revoke --dry-run changed something"
    );
    t.tool_ok(["revoke"]);
}
