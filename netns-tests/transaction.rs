//! Issue 8, the paired transaction, checked against the real kernel firewall, sshd and dnsmasq of
//! the topology: the crash matrix (a SIGKILL at every step boundary of grant, revoke and refresh,
//! then the next command), concurrent runs under the lock, live sessions ended by revoke, drift
//! after a `flush ruleset`, expiry cleaned up by restore, and refresh following DNS.
//!
//! The invariant is checked the way the support would meet it — TCP connects and ssh logins from
//! the support host and from the stranger (which DNS can be made to name as the support) — and
//! not only by reading the tool's files.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::topology::*;

/// The step boundaries `failpoint!` marks in src/access.rs, in the order a transaction meets them.
const FAILPOINTS: [&str; 4] = [
    "after-intent",
    "after-firewall",
    "after-key",
    "before-commit",
];
/// A rule and a set element of the administrator's, in the table the tool hooks into and in a
/// table of its own: neither may change across any transaction or recovery.
const FOREIGN_NFT: &str =
    "nft add rule inet filter input tcp dport 80 accept comment \\\"web\\\" && \
    nft add table inet admin && \
    nft add set inet admin blocklist '{ type ipv4_addr; elements = { 203.0.113.99 }; }' && \
    nft add chain inet admin input '{ type filter hook input priority 10; policy accept; }' && \
    nft add rule inet admin input ip saddr @blocklist drop";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The crash matrix needs the binary built with the `failpoints` feature (scripts/test does).
fn failpoints_built(test: &str) -> bool {
    if !cfg!(feature = "failpoints") {
        eprintln!(
            "SKIP {test}: the crash matrix needs the failpoints compiled in; run \
             `cargo test --test netns --features failpoints` (scripts/test does)"
        );
        return false;
    }
    true
}

/// One side the firewall and the key line may let in: its network namespace, its own addresses
/// and the server's addresses on its link.
struct Peer<'a> {
    name: &'static str,
    ns: &'a Netns,
    own: [&'static str; 2],
    server: [&'static str; 2],
}

fn support(t: &Topology) -> Peer<'_> {
    Peer {
        name: "support",
        ns: &t.sup,
        own: [SUP_V4, SUP_V6],
        server: [SRV_SUP_V4, SRV_SUP_V6],
    }
}

/// The stranger: refresh tests make DNS name it as the support host.
fn stranger(t: &Topology) -> Peer<'_> {
    Peer {
        name: "stranger",
        ns: &t.stranger,
        own: [STR_V4, STR_V6],
        server: [SRV_STR_V4, SRV_STR_V6],
    }
}

fn refresh_args() -> [&'static str; 5] {
    [
        "refresh",
        "--resolver",
        DNS_V4,
        "--allow-private",
        "--trust-dns",
    ]
}

/// Runs the tool with `FAILPOINTS=<fp>=return` and checks that it really was killed there: a run
/// that finishes would make the case prove nothing.
fn crash<S: AsRef<std::ffi::OsStr>>(t: &Topology, fp: &str, args: &[S]) {
    let out = t
        .tool_cmd(args)
        .env("FAILPOINTS", format!("{fp}={}", "return"))
        .output()
        .expect("run ovh-access");
    // timeout(1) passes its child's death by a signal on by killing itself with that signal.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "the run should have been killed at {fp}:\n{}",
        describe(&out)
    );
}

/// The addresses of the active lines carrying `blob` in the keys file: what sshd would accept the
/// key from. `None` in the list: a line without from= (accepted from anywhere).
fn key_allows(keys: &str, blob: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for line in keys.lines() {
        let l = line.trim_start();
        if l.starts_with('#') || !l.split_whitespace().any(|w| w == blob) {
            continue;
        }
        match l.find("from=\"") {
            Some(i) => {
                let rest = &l[i + 6..];
                let list = &rest[..rest.find('"').unwrap_or(rest.len())];
                out.extend(
                    list.split(',')
                        .map(|a| Some(a.trim_start_matches("::ffff:").to_string())),
                );
            }
            None => out.push(None),
        }
    }
    out
}

/// The invariant, from the outside: for each address of each peer, the firewall lets it reach
/// sshd exactly when an active key line allows it, and then ssh logs in as root. `expect_in` names
/// the peer that should be let in (None: nobody), so that "nothing works" cannot pass for
/// "granted".
fn assert_invariant(t: &Topology, expect_in: Option<&str>, when: &str) {
    let keys = t.keys_text();
    let allows = key_allows(&keys, &t.support_blob());
    assert!(
        !allows.contains(&None),
        "{when}: an active support line without from=:\n{keys}"
    );
    for p in [support(t), stranger(t)] {
        let open = reachable(p.ns, &p.server, t.port);
        for (own, srv) in p.own.iter().zip(p.server) {
            let allowed = allows.contains(&Some(own.to_string()));
            let reaches = open.contains(&srv);
            assert_eq!(
                allowed,
                reaches,
                "{when}: invariant broken for the {} at {own}: key allows it: {allowed}, \
                 firewall lets it reach {srv} port {}: {reaches}\nkeys:\n{keys}\nruleset:\n{}",
                p.name,
                t.port,
                t.srv.ruleset()
            );
            let should = expect_in == Some(p.name);
            assert_eq!(
                allowed,
                should,
                "{when}: the {} at {own} should {}be let in\nkeys:\n{keys}",
                p.name,
                if should { "" } else { "not " }
            );
            if reaches {
                let out = t.ssh(p.ns, srv, t.port, "echo ok");
                assert_eq!(
                    out.status.success(),
                    allowed,
                    "{when}: ssh root@{srv} from the {}:\n{}",
                    p.name,
                    describe(&out)
                );
            }
        }
    }
}

/// The files of a directory, sorted (empty when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// No temporary file is left in the keys directory or the state directory.
fn assert_no_temp(t: &Topology, when: &str) {
    let keys_dir = t.keys_file().parent().unwrap().to_path_buf();
    assert_eq!(
        names(&keys_dir),
        ["authorized_keys2"],
        "{when}: {}",
        keys_dir.display()
    );
    let state_dir = t.sandbox().join("var/lib/ovh-access");
    let state = names(&state_dir);
    assert!(
        state.is_empty() || state == ["state.json"],
        "{when}: {}: {state:?}",
        state_dir.display()
    );
}

/// The lines of the keys file that are neither the support key's nor marked as the tool's.
fn foreign_lines(t: &Topology) -> Vec<String> {
    let blob = t.support_blob();
    t.keys_text()
        .lines()
        .filter(|l| !l.contains(&blob) && !l.trim_end().ends_with(" ovh-access"))
        .map(str::to_string)
        .collect()
}

/// Keys-file lines and firewall objects of the administrator's, in place before any grant.
struct Baseline {
    ruleset: String,
    foreign: Vec<String>,
}

fn with_foreign_things(t: &Topology) -> Baseline {
    let admin_key =
        std::fs::read_to_string(t.sandbox().join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    t.write_keys(&format!(
        "# the administrator's keys\nfrom=\"192.0.2.99\" {}\n",
        admin_key.trim()
    ));
    t.srv.sh(FOREIGN_NFT);
    Baseline {
        ruleset: t.srv.ruleset(),
        foreign: foreign_lines(t),
    }
}

/// A full revoke brings the ruleset back byte for byte and never touched a foreign line.
fn assert_back_to_baseline(t: &Topology, b: &Baseline, when: &str) {
    let out = t.tool_ok(["revoke"]);
    assert_eq!(
        foreign_lines(t),
        b.foreign,
        "{when}: foreign key lines changed"
    );
    assert_eq!(
        t.srv.ruleset(),
        b.ruleset,
        "{when}: the ruleset after revoke differs from before grant\n{}",
        describe(&out)
    );
    assert_no_temp(t, when);
}

/// After a crash and its recovery: the invariant holds with `who` let in (or nobody), no temporary
/// file is left and the administrator's key lines are the baseline's.
fn assert_recovered(t: &Topology, base: &Baseline, who: Option<&str>, when: &str) {
    assert_invariant(t, who, when);
    assert_no_temp(t, when);
    assert_eq!(foreign_lines(t), base.foreign, "{when}: foreign key lines");
}

/// After a crash, `status` shows the unfinished intent and names the repair; `restore` then
/// finishes or rolls it back and says which.
fn status_then_restore(t: &Topology, op: &str, outcome: &str, when: &str) {
    let out = t.tool(["status"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{when}: status:\n{}",
        describe(&out)
    );
    let s = stdout(&out);
    assert!(
        s.contains(&format!("interrupted {op}")) && s.contains("ovh-access restore"),
        "{when}: status should name the interrupted {op} and its repair:\n{}",
        describe(&out)
    );
    let out = t.tool_ok(["restore"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("interrupted {op}")) && err.contains(outcome),
        "{when}: restore should say the {op} was {outcome}:\n{}",
        describe(&out)
    );
}

/// Replaces the topology's dnsmasq by one answering the support names with `peer`'s addresses.
/// The old one is found as the processes of the test's own DNS namespace.
struct Dnsmasq {
    child: Option<Child>,
}

impl Dnsmasq {
    fn answer_with(t: &Topology, current: &mut Dnsmasq, peer: &Peer<'_>) {
        stop(&mut current.child);
        t.dns.kill_all();
        let gone = wait_until(Duration::from_secs(10), || {
            let out = run(Command::new("ip").args(["netns", "pids", &t.dns.name]));
            out.stdout.iter().all(u8::is_ascii_whitespace)
        });
        assert!(gone, "the old dnsmasq did not exit");
        let mut args = dnsmasq_args(
            &[DNS_V4, DNS_V6],
            &t.sandbox().join("run/dnsmasq-moved.pid"),
        );
        for host in SUPPORT_HOSTS {
            args.push(format!("--address=/{host}/{}", peer.own[0]));
            args.push(format!("--address=/{host}/{}", peer.own[1]));
        }
        current.child = Some(
            t.dns
                .cmd("dnsmasq")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start dnsmasq"),
        );
        let want: std::net::IpAddr = peer.own[0].parse().unwrap();
        let server: std::net::IpAddr = DNS_V4.parse().unwrap();
        let answers = wait_until(Duration::from_secs(15), || {
            t.query(server, SUPPORT_HOSTS[0], false)
                .map(|a| a == vec![want])
                .unwrap_or(false)
        });
        assert!(answers, "the restarted dnsmasq does not answer {want}");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

// ------------------------------------------------------------------------------ crash matrix

#[test]
fn crash_matrix_grant() {
    if !can_run("crash_matrix_grant") || !failpoints_built("crash_matrix_grant") {
        return;
    }
    let t = Topology::new(Opts::default());
    let base = with_foreign_things(&t);
    for fp in FAILPOINTS {
        let when = format!("grant killed at {fp}");
        crash(&t, fp, &t.grant_args(&[]));
        status_then_restore(&t, "grant", "rolled back", &when);
        assert_recovered(&t, &base, None, &when);
        assert_eq!(
            t.srv.ruleset(),
            base.ruleset,
            "{when}: ruleset after rollback"
        );
        // The grant works after the recovery.
        t.tool_ok(t.grant_args(&[]));
        assert_invariant(&t, Some("support"), &format!("{when}, then granted"));
        assert_back_to_baseline(&t, &base, &when);
    }
    // A crashed grant over an existing grant rolls back to that grant, not to nothing; the
    // recovery is done by the next grant itself.
    t.tool_ok(t.grant_args(&["--for", "2h"]));
    crash(&t, "after-key", &t.grant_args(&["--for", "4h"]));
    let out = t.tool_ok(t.grant_args(&[]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted grant"),
        "the next grant should say it recovered:\n{}",
        describe(&out)
    );
    assert_invariant(&t, Some("support"), "grant after a crashed re-grant");
    assert_back_to_baseline(&t, &base, "re-grant");
}

#[test]
fn crash_matrix_revoke() {
    if !can_run("crash_matrix_revoke") || !failpoints_built("crash_matrix_revoke") {
        return;
    }
    let t = Topology::new(Opts::default());
    let base = with_foreign_things(&t);
    for fp in FAILPOINTS {
        let when = format!("revoke killed at {fp}");
        t.tool_ok(t.grant_args(&[]));
        assert_invariant(&t, Some("support"), &format!("{when}: granted first"));
        crash(&t, fp, &["revoke"]);
        status_then_restore(&t, "revoke", "finished", &when);
        assert_recovered(&t, &base, None, &when);
        assert_eq!(
            t.srv.ruleset(),
            base.ruleset,
            "{when}: ruleset after recovery"
        );
    }
    // The next grant finishes a crashed revoke before it grants anew.
    t.tool_ok(t.grant_args(&[]));
    crash(&t, "after-key", &["revoke"]);
    let out = t.tool_ok(t.grant_args(&[]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted revoke"),
        "{}",
        describe(&out)
    );
    assert_invariant(&t, Some("support"), "grant after a crashed revoke");
    // Finishing a crashed `revoke --remove` removes, as the run would have.
    crash(&t, "after-intent", &["revoke", "--remove"]);
    status_then_restore(&t, "revoke", "finished", "revoke --remove killed");
    assert_invariant(&t, None, "revoke --remove finished");
    assert!(
        !t.keys_text().contains(&t.support_blob()),
        "the tool's line should be gone:\n{}",
        t.keys_text()
    );
    assert_back_to_baseline(&t, &base, "grant after a crashed revoke");
}

#[test]
fn crash_matrix_refresh() {
    if !can_run("crash_matrix_refresh") || !failpoints_built("crash_matrix_refresh") {
        return;
    }
    let t = Topology::new(Opts::default());
    let base = with_foreign_things(&t);
    let mut dns = Dnsmasq { child: None };
    // DNS alternates between the support host and the stranger: each case grants to where it
    // points, moves it to the other, and crashes the refresh that follows.
    let (mut from, mut to) = (support(&t), stranger(&t));
    for fp in FAILPOINTS {
        let when = format!(
            "refresh from the {} to the {} killed at {fp}",
            from.name, to.name
        );
        t.tool_ok(t.grant_args(&[]));
        assert_invariant(&t, Some(from.name), &format!("{when}: granted first"));
        Dnsmasq::answer_with(&t, &mut dns, &to);
        crash(&t, fp, &refresh_args());
        status_then_restore(&t, "refresh", "rolled back", &when);
        assert_recovered(&t, &base, Some(from.name), &when);
        // A refresh after the recovery moves the grant.
        t.tool_ok(refresh_args());
        assert_invariant(&t, Some(to.name), &format!("{when}, then refreshed"));
        assert_back_to_baseline(&t, &base, &when);
        std::mem::swap(&mut from, &mut to);
    }
}

// ------------------------------------------------------------------------------ refresh

#[test]
fn refresh_follows_dns_with_from_and_set_elements() {
    if !can_run("refresh_follows_dns_with_from_and_set_elements") {
        return;
    }
    let t = Topology::new(Opts::default());
    let base = with_foreign_things(&t);
    t.tool_ok(t.grant_args(&["--for", "2h"]));
    assert_invariant(&t, Some("support"), "granted");
    let before = t.keys_text();

    // DNS moves: status names the drift and its repair, refresh (with the options grant
    // recorded, as the timer runs it) moves both from= and the set elements.
    let mut dns = Dnsmasq { child: None };
    Dnsmasq::answer_with(&t, &mut dns, &stranger(&t));
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stdout(&out).contains(&format!("now resolves to {STR_V4}, {STR_V6}"))
            && stdout(&out).contains("ovh-access refresh"),
        "status should name the DNS drift and `refresh`:\n{}",
        describe(&out)
    );
    let out = t.tool_ok(["refresh"]);
    assert!(stdout(&out).contains(STR_V4), "{}", describe(&out));
    assert_invariant(&t, Some("stranger"), "refreshed");
    let ruleset = t.srv.ruleset();
    assert!(
        ruleset.contains(STR_V4) && !ruleset.contains(SUP_V4),
        "the set elements should have moved:\n{ruleset}"
    );
    assert_ne!(t.keys_text(), before);
    let out = t.tool(["status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "consistent again:\n{}",
        describe(&out)
    );

    // Unchanged DNS: nothing to do.
    let out = t.tool_ok(refresh_args());
    assert!(
        stdout(&out).contains("nothing to change"),
        "{}",
        describe(&out)
    );
    assert_back_to_baseline(&t, &base, "refresh");
    // Nothing granted: refresh does nothing.
    let out = t.tool_ok(refresh_args());
    assert!(
        stdout(&out).contains("Nothing is granted"),
        "{}",
        describe(&out)
    );
}

// ------------------------------------------------------------------------------ drift, expiry

#[test]
fn flush_ruleset_is_drift_that_restore_repairs() {
    if !can_run("flush_ruleset_is_drift_that_restore_repairs") {
        return;
    }
    let t = Topology::new(Opts::default());
    t.tool_ok(t.grant_args(&[]));
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // A bare flush leaves no firewall at all: the door is open to all, which the invariant
    // allows; restore must not fail on a server without a ruleset.
    t.srv.sh("nft flush ruleset");
    let out = t.tool(["restore"]);
    eprintln!("restore without a ruleset:\n{}", describe(&out));
    assert!(out.status.success(), "{}", describe(&out));
    let out = t.ssh(&t.sup, SRV_SUP_V4, t.port, "echo ok");
    assert!(out.status.success(), "{}", describe(&out));
    let out = t.tool(["status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "no firewall, no drift:\n{}",
        describe(&out)
    );

    // What Debian's nftables.service does on a reload: flush, then load the admin's file.
    t.srv.sh("nft flush ruleset");
    t.srv.load_nft(&ruleset_path("default-deny.nft"));
    assert!(
        reachable(&t.sup, &[SRV_SUP_V4, SRV_SUP_V6], t.port).is_empty(),
        "the reload should have closed the door"
    );
    let out = t.tool(["status"]);
    eprintln!("status after the flush:\n{}", describe(&out));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let s = stdout(&out);
    assert!(
        s.contains("nftables") && s.contains("ovh-access restore"),
        "status should name the lost layer and `restore`:\n{}",
        describe(&out)
    );
    let out = t.tool(["--json", "status"]);
    assert_eq!(out.status.code(), Some(1));
    let j = json_of(&out);
    assert_eq!(j["consistent"], false, "{j}");
    assert_eq!(j["granted"]["host"], "cache-ng.ovh.net", "{j}");
    let drift = j["drift"].as_array().expect("drift array");
    assert!(
        drift
            .iter()
            .any(|d| d["repair"] == "ovh-access restore" && d["what"].is_string()),
        "{j}"
    );

    t.tool_ok(["restore"]);
    assert_invariant(&t, Some("support"), "restored after the flush");
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // Subtler: the objects are there but a set was emptied by hand.
    t.srv.sh("nft flush set inet filter ovh_access_v4");
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stdout(&out).contains("ovh_access_v4 holds []"),
        "status should name the emptied set:\n{}",
        describe(&out)
    );
    t.tool_ok(["restore"]);
    assert_invariant(&t, Some("support"), "restored after the set flush");
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn expired_grant_is_cleaned_up_by_restore() {
    if !can_run("expired_grant_is_cleaned_up_by_restore") {
        return;
    }
    let t = Topology::new(Opts::default());
    let base = with_foreign_things(&t);
    t.tool_ok(t.grant_args(&["--for", "5s"]));
    let out = t.tool_ok(["--json", "status"]);
    let j = json_of(&out);
    let expires = j["granted"]["expires_at"].as_u64().expect("expires_at");
    // Wait for the expiry by the clock the tool uses (bounded), then once more for a second edge.
    let passed = wait_until(Duration::from_secs(30), || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            > expires
    });
    assert!(passed);
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stdout(&out).contains("expired"), "{}", describe(&out));

    // refresh leaves it to restore rather than re-open the firewall for it.
    let ruleset = t.srv.ruleset();
    let out = t.tool_ok(refresh_args());
    assert!(stdout(&out).contains("expired"), "{}", describe(&out));
    assert_eq!(t.srv.ruleset(), ruleset, "refresh touched an expired grant");

    let out = t.tool_ok(["restore"]);
    assert!(stdout(&out).contains("expired"), "{}", describe(&out));
    assert_invariant(&t, None, "expired and restored");
    assert_eq!(
        t.srv.ruleset(),
        base.ruleset,
        "the tool's objects should be gone"
    );
    assert_eq!(foreign_lines(&t), base.foreign);
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("Nothing is granted"),
        "{}",
        describe(&out)
    );
}

// ------------------------------------------------------------------------------ sessions

/// An interactive ssh session from the support host: every line written to it is echoed back by
/// the remote shell, so the test can tell a live session from a dead one.
struct Session {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Session {
    fn open(t: &Topology, addr: &str) -> Session {
        let key: PathBuf = t.support_pub().with_extension("");
        let mut child = ssh_command(&t.sup, 120, &key, t.port)
            .arg(format!("root@{addr}"))
            .arg("echo up; while read l; do echo \"got $l\"; done")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut s = Session { child, lines };
        assert_eq!(
            s.next_line().as_deref(),
            Some("up"),
            "the session did not open"
        );
        s
    }

    /// The next line from the remote side; None once the session is closed (or after a bound).
    fn next_line(&mut self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(20)).ok()
    }

    fn alive(&mut self, word: &str) -> bool {
        let stdin = self.child.stdin.as_mut().unwrap();
        if writeln!(stdin, "{word}")
            .and_then(|_| stdin.flush())
            .is_err()
        {
            return false;
        }
        self.next_line().as_deref() == Some(format!("got {word}").as_str())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn revoke_ends_live_sessions_unless_kept() {
    if !can_run("revoke_ends_live_sessions_unless_kept") {
        return;
    }
    let t = Topology::new(Opts::default());

    // --keep-sessions: the door closes, the session already inside stays.
    t.tool_ok(t.grant_args(&[]));
    let mut s = Session::open(&t, SRV_SUP_V4);
    assert!(s.alive("one"));
    let out = t.tool_ok(["revoke", "--keep-sessions"]);
    assert_invariant(&t, None, "revoked, sessions kept");
    assert!(
        s.alive("two"),
        "--keep-sessions ended the session:\n{}",
        describe(&out)
    );
    drop(s);

    // A plain revoke ends them, over IPv4 and IPv6.
    t.tool_ok(t.grant_args(&[]));
    let mut sessions = [Session::open(&t, SRV_SUP_V4), Session::open(&t, SRV_SUP_V6)];
    for s in &mut sessions {
        assert!(s.alive("three"));
    }
    let out = t.tool_ok(["--json", "revoke"]);
    let j = json_of(&out);
    // Each session's sshd processes are named with the connection they hold, the shell below
    // them as their descendant.
    let remotes: std::collections::BTreeSet<&str> = j["sessions_ended"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "connection")
        .filter_map(|e| e["remote"].as_str())
        .collect();
    assert_eq!(
        remotes,
        [SUP_V4, SUP_V6].into(),
        "revoke should report both sessions ended:\n{}",
        describe(&out)
    );
    for s in &mut sessions {
        assert!(!s.alive("four"), "a session survived revoke");
        let closed = wait_until(Duration::from_secs(20), || {
            s.child.try_wait().ok().flatten().is_some()
        });
        assert!(closed, "an ssh client is still connected after revoke");
    }
    assert_invariant(&t, None, "revoked");
}

// ------------------------------------------------------------------------------ the lock

/// A tiny xorshift: the order of the runs is random, and printed so a failure can be replayed.
fn shuffle_ops(seed: u64, n: usize) -> Vec<bool> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x & 1 == 1
        })
        .collect()
}

#[test]
fn concurrent_grants_and_revokes_end_as_the_last_one() {
    if !can_run("concurrent_grants_and_revokes_end_as_the_last_one") {
        return;
    }
    let t = Topology::new(Opts::default());
    let base = with_foreign_things(&t);
    let seed = std::env::var("OA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let ops = shuffle_ops(seed, 20);
    eprintln!("seed {seed} (OA_SEED={seed} replays it): grants {ops:?}");
    let start = Instant::now();
    // Each run waits for the lock while the others work: no per-run 60 s limit here, only one
    // generous bound on the whole (they serialise on the lock).
    let mut children: Vec<(bool, Child)> = ops
        .iter()
        .map(|&grant| {
            let args = if grant {
                t.grant_args(&[])
            } else {
                vec!["revoke".into()]
            };
            let child = t
                .srv
                .cmd("timeout")
                .arg("600")
                .arg(bin())
                .arg("--root")
                .arg(t.sandbox())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start ovh-access");
            (grant, child)
        })
        .collect();
    // Reap in completion order: the last to exit is the last to have held the lock.
    let mut finished: Vec<(bool, Output)> = Vec::new();
    let done = wait_until(Duration::from_secs(600), || {
        let mut i = 0;
        while i < children.len() {
            if children[i].1.try_wait().unwrap().is_some() {
                let (grant, c) = children.remove(i);
                finished.push((grant, c.wait_with_output().unwrap()));
            } else {
                i += 1;
            }
        }
        children.is_empty()
    });
    assert!(done, "20 runs did not finish within 600 s");
    eprintln!("20 runs took {:?}", start.elapsed());
    for (grant, out) in &finished {
        assert!(
            out.status.success(),
            "a {} failed:\n{}",
            if *grant { "grant" } else { "revoke" },
            describe(out)
        );
    }
    let last_is_grant = finished.last().unwrap().0;
    eprintln!(
        "the last to finish: {}",
        if last_is_grant { "grant" } else { "revoke" }
    );
    assert_invariant(
        &t,
        last_is_grant.then_some("support"),
        "after 20 concurrent runs",
    );
    // No duplicate: one line for the key, one jump per hooked chain, one set per family.
    let keys = t.keys_text();
    let blob = t.support_blob();
    assert_eq!(
        keys.lines().filter(|l| l.contains(&blob)).count(),
        usize::from(ops.contains(&true)),
        "support lines:\n{keys}"
    );
    // The ruleset is exactly what one run of the last command makes, from scratch: the tool's
    // objects once in each table and chain it hooks into (a duplicate jump or set would show).
    let ruleset = t.srv.ruleset();
    let expected = if last_is_grant {
        t.tool_ok(["revoke"]);
        t.tool_ok(t.grant_args(&[]));
        t.srv.ruleset()
    } else {
        base.ruleset.clone()
    };
    assert_eq!(ruleset, expected, "after 20 concurrent runs");
    assert_eq!(foreign_lines(&t), base.foreign);
    let out = t.tool(["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_back_to_baseline(&t, &base, "after the concurrent runs");
}

// ------------------------------------------------------------------------------ re-grant

/// `ssh root@addr` from the support host with the private key `key`.
fn ssh_with(t: &Topology, key: &Path, addr: &str) -> Output {
    ssh_command(&t.sup, 20, key, t.port)
        .arg(format!("root@{addr}"))
        .arg("echo ok")
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

#[test]
fn regrant_with_another_key_retires_the_old_one() {
    if !can_run("regrant_with_another_key_retires_the_old_one") {
        return;
    }
    let t = Topology::new(Opts::default());
    let base = with_foreign_things(&t);
    let other = t.sandbox().join("support/other");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "other@oa-test", "-f"])
        .arg(&other));
    let other_pub = other.with_extension("pub");
    let other_grant = || {
        let mut args = t.grant_args(&[]);
        let n = args.len();
        args[n - 1] = other_pub.clone().into_os_string();
        args
    };
    let logs_in = |key: &Path| ssh_with(&t, key, SRV_SUP_V4).status.success();
    let support_key = t.support_pub().with_extension("");

    t.tool_ok(other_grant());
    assert!(logs_in(&other), "the other key should log in");
    assert!(!logs_in(&support_key));

    // The same host, another key: the first key's line must not stay active.
    t.tool_ok(t.grant_args(&[]));
    assert_invariant(&t, Some("support"), "re-granted with the support key");
    assert!(
        !logs_in(&other),
        "the replaced key still logs in:\n{}",
        t.keys_text()
    );

    // A crashed re-grant rolls back to the other key, with the new key's line disabled.
    if cfg!(feature = "failpoints") {
        t.tool_ok(other_grant());
        crash(&t, "after-key", &t.grant_args(&[]));
        t.tool_ok(["restore"]);
        assert!(
            logs_in(&other),
            "the rolled-back grant should let the other key in"
        );
        assert!(
            !logs_in(&support_key),
            "the rolled-back key still logs in:\n{}",
            t.keys_text()
        );
    }
    assert_back_to_baseline(&t, &base, "re-grant with another key");
}

// ------------------------------------------------------------------------------ hostile servers

/// An immutable keys file (`chattr +i`) cannot be edited: revoke still closes the firewall — the
/// key then stands behind a closed door — says what stays open with the command that finishes,
/// exits 1, and keeps the unfinished revoke in the journal until it is finished.
#[test]
fn revoke_closes_the_firewall_when_the_keys_file_cannot_be_written() {
    use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
    if !can_run("revoke_closes_the_firewall_when_the_keys_file_cannot_be_written") {
        return;
    }
    let t = Topology::new(Opts::default());
    let base = with_foreign_things(&t);
    t.tool_ok(t.grant_args(&[]));
    assert_invariant(&t, Some("support"), "granted");
    let f = std::fs::File::open(t.keys_file()).unwrap();
    let flags = ioctl_getflags(&f).expect("inode flags on the sandbox's file system");
    ioctl_setflags(&f, flags | IFlags::IMMUTABLE).expect("chattr +i");
    struct Unlock<'a>(&'a std::fs::File, IFlags);
    impl Drop for Unlock<'_> {
        fn drop(&mut self) {
            let _ = ioctl_setflags(self.0, self.1);
        }
    }
    let unlock = Unlock(&f, flags);

    let out = t.tool(["revoke"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = describe(&out);
    assert!(
        all.contains("chattr -i") && all.contains("`ovh-access revoke` again"),
        "the failure and the command that finishes: {all}"
    );
    for p in [support(&t), stranger(&t)] {
        assert!(
            reachable(p.ns, &p.server, t.port).is_empty(),
            "the firewall must be closed for the {} although the key line stays:\n{}",
            p.name,
            t.srv.ruleset()
        );
    }
    let st = t.tool(["status"]);
    assert_eq!(st.status.code(), Some(1), "{}", describe(&st));
    assert!(
        stdout(&st).contains("interrupted revoke"),
        "{}",
        describe(&st)
    );
    drop(unlock);
    t.tool_ok(["revoke"]);
    assert_recovered(&t, &base, None, "revoke finished once the file is writable");
    assert_eq!(t.srv.ruleset(), base.ruleset);
}

/// A small deterministic generator for the crash instants (xorshift), seeded from the clock or
/// from `OVH_ACCESS_CRASH_SEED`, and printed so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("OVH_ACCESS_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("crash instants: OVH_ACCESS_CRASH_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The ovh-access process under `timeout` (the spawned child's own child), once it exists.
fn tool_pid(timeout_pid: u32) -> Option<u32> {
    let path = format!("/proc/{timeout_pid}/task/{timeout_pid}/children");
    for _ in 0..200 {
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Starts the tool and SIGKILLs it `after` its start; true when the kill landed while it ran.
fn kill_after(t: &Topology, args: &[std::ffi::OsString], after: Duration) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let mut child = t
        .tool_cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ovh-access");
    std::thread::sleep(after);
    if let Some(pid) = tool_pid(child.id()) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    let status = child.wait().expect("wait for ovh-access");
    status.signal() == Some(libc::SIGKILL)
}

/// How long a run takes here, to aim the kills inside it.
fn duration_of(t: &Topology, args: &[std::ffi::OsString]) -> Duration {
    let start = Instant::now();
    t.tool_ok(args);
    start.elapsed()
}

/// Whether a temp file of the tool's is in the keys or the state directory.
fn has_temp(t: &Topology) -> bool {
    let keys_dir = t.keys_file().parent().unwrap().to_path_buf();
    names(&keys_dir)
        .iter()
        .chain(&names(&t.sandbox().join("var/lib/ovh-access")))
        .any(|n| n.starts_with('.'))
}

/// Whether a grant is recorded, as `status --json` reports it.
fn granted(t: &Topology) -> bool {
    let out = t.tool(["status", "--json"]);
    !json_of(&out)["granted"].is_null()
}

/// grant, revoke and refresh killed at random instants — not only at the failpoints: between
/// any two system calls, in the middle of a netlink batch or a temp file's write — then the next
/// command (`restore`) settles: no temp file is left, the administrator's lines and rules are
/// untouched, and the invariant holds, checked from the support's and the stranger's side.
#[test]
fn crashes_at_random_instants_leave_no_residue() {
    if !can_run("crashes_at_random_instants_leave_no_residue") {
        return;
    }
    let t = Topology::new(Opts::default());
    let base = with_foreign_things(&t);
    let mut rng = Rng::new();
    let grant: Vec<std::ffi::OsString> = t.grant_args(&["--for", "2h"]);
    let regrant: Vec<std::ffi::OsString> = t.grant_args(&["--for", "3h"]);
    let revoke: Vec<std::ffi::OsString> = vec!["revoke".into()];
    let refresh: Vec<std::ffi::OsString> = refresh_args().iter().map(Into::into).collect();
    let took = [
        duration_of(&t, &grant),
        duration_of(&t, &refresh),
        duration_of(&t, &revoke),
    ];
    eprintln!(
        "undisturbed runs: grant {:?}, refresh {:?}, revoke {:?}",
        took[0], took[1], took[2]
    );
    let (mut killed, mut residue, rounds) = (0, 0, 24);
    for round in 0..rounds {
        let is_granted = granted(&t);
        let (name, args, took) = match (is_granted, rng.below(3)) {
            (false, _) => ("grant", &grant, took[0]),
            (true, 0) => ("regrant", &regrant, took[0]),
            (true, 1) => ("refresh", &refresh, took[1]),
            (true, _) => ("revoke", &revoke, took[2]),
        };
        let after = Duration::from_micros(rng.below(took.as_micros() as u64 + 1));
        let when = format!("round {round}: {name} killed {after:?} after its start");
        if kill_after(&t, args, after) {
            killed += 1;
        }
        if has_temp(&t) {
            residue += 1;
        }
        let out = t.tool(["restore"]);
        assert_eq!(out.status.code(), Some(0), "{when}: {}", describe(&out));
        let who = granted(&t).then_some("support");
        assert_recovered(&t, &base, who, &when);
        if who.is_none() {
            assert_eq!(t.srv.ruleset(), base.ruleset, "{when}: ruleset");
        }
    }
    assert!(
        killed >= rounds / 3,
        "only {killed} of {rounds} kills landed while the tool ran: the instants prove little"
    );
    eprintln!("{killed} of {rounds} runs killed mid-way, {residue} leaving a temp file behind");
    assert_back_to_baseline(&t, &base, "after the random crashes");
}
