//! The release matrix: the tool against the sshd of other Debian releases — 11 (OpenSSH 8.4,
//! `expiry-time` in sshd's local time, pre-8.5 keyword names, `ssh-rsa` in the defaults) and 13
//! (OpenSSH 10.0, `sshd-session`) — besides the host's 12 (9.2). Each release's userland is a
//! minbase chroot cached under /var/tmp by scripts/debian-chroot; its sshd runs inside the test's
//! namespaces (topology.rs `Opts::chroot`), and the tool runs that same sshd for `-V`/`-T`/`-t`:
//! in the tool's own private mount namespace /usr/sbin/sshd is a wrapper that chroots into it.
//!
//! Slow (each timed case waits for its grant to expire, a first run builds the chroots), hence
//! its own test target: `cargo test --test releases`.
mod common;
mod topology;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use topology::*;

/// What a release chroot holds: sshd, ssh-keygen for its host key, and ps for a human debugging.
const PACKAGES: [&str; 3] = ["openssh-server", "openssh-client", "procps"];

/// A cached chroot of `suite` (built on first use; a few minutes, then instant).
fn chroot(suite: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/debian-chroot");
    let out = Command::new(script)
        .arg(suite)
        .args(PACKAGES)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/debian-chroot");
    assert!(
        out.status.success(),
        "cannot make the {suite} chroot:\n{}",
        describe(&out)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The tool in the server namespace with `--root <sandbox>`, the caller's `TZ`, and — for a
/// chroot — that release's sshd as /usr/sbin/sshd in its own private mount namespace.
fn tool(t: &Topology, tz: &str, args: &[std::ffi::OsString]) -> Output {
    let mut cmd = match &t.chroot {
        None => t.tool_cmd(args),
        Some(ch) => {
            let wrapper = t.sandbox().join("sshd-of-release");
            fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nexec chroot '{}' /usr/sbin/sshd \"$@\"\n",
                    ch.display()
                ),
            )
            .unwrap();
            fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
            let mut c = t.srv.cmd("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$0\" /usr/sbin/sshd && exec \"$@\"")
                .arg(&wrapper)
                .arg("timeout")
                .arg(TOOL_LIMIT.as_secs().to_string())
                .arg(bin())
                .arg("--root")
                .arg(t.sandbox())
                .args(args)
                .stdin(Stdio::null());
            c
        }
    };
    cmd.env("TZ", tz).output().expect("run ovh-access")
}

fn tool_ok(t: &Topology, tz: &str, args: &[std::ffi::OsString]) -> Output {
    let out = tool(t, tz, args);
    assert!(out.status.success(), "{args:?} failed:\n{}", describe(&out));
    out
}

fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(Into::into).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `expiry-time` of the support key's active line.
fn line_expiry(t: &Topology) -> Option<String> {
    let blob = t.support_blob();
    let text = t.keys_text();
    let line = text
        .lines()
        .find(|l| l.contains(&blob) && !l.trim_start().starts_with('#'))
        .unwrap_or_else(|| panic!("no active support line in:\n{text}"));
    let at = line.find("expiry-time=\"")? + "expiry-time=\"".len();
    Some(line[at..].split('"').next().unwrap().to_string())
}

/// `date` in `zone` (glibc's localtime_r): the wall clock sshd's mktime turns back into `t`
/// outside summer time, which the zones here do not have in any season used.
fn local_digits(zone: &str, t: u64) -> String {
    let out = run(Command::new("date")
        .env("TZ", zone)
        .arg("-d")
        .arg(format!("@{t}"))
        .arg("+%Y%m%d%H%M%S"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A timed grant on `suite` with the operator's `TZ` and the server's zone: the line carries the
/// expiry as that sshd reads it, the key works now, status and doctor find nothing wrong with
/// it (nor with the release's sshd settings), and sshd refuses the key once the grant expired.
fn timed_grant(name: &str, suite: &str, caller_tz: &str, server_zone: Option<&'static str>) {
    if !can_run(name) {
        return;
    }
    let t = Topology::new(Opts {
        chroot: Some(chroot(suite)),
        zone: server_zone,
        // No firewall: after the expiry the connection reaches sshd, so that the refusal seen is
        // sshd's own reading of expiry-time and not the firewall's timeout.
        ruleset: None,
        ..Opts::default()
    });
    let out = tool_ok(&t, caller_tz, &t.grant_args(&["--for", "20s"]));
    let state = fs::read_to_string(t.sandbox().join("var/lib/ovh-access/state.json")).unwrap();
    let expires_at = serde_json::from_str::<serde_json::Value>(&state).unwrap()["granted"]
        ["expires_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expires_at in the state:\n{state}\n{}", describe(&out)));
    let written = line_expiry(&t).expect("a timed grant writes expiry-time");
    let release = version_of(&t);
    if release < (9, 1) {
        let zone = server_zone.unwrap_or("UTC");
        assert_eq!(
            written,
            local_digits(zone, expires_at),
            "OpenSSH {release:?} reads expiry-time in the server's zone {zone}, whatever the \
             caller's TZ ({caller_tz})"
        );
    } else {
        assert_eq!(written, format!("{}Z", local_digits("UTC", expires_at)));
    }

    t.assert_login_with(&t.sup, &[], SRV_SUP_V4, t.port);
    let status = tool(&t, caller_tz, &os(&["--json", "status"]));
    let j = json_of(&status);
    assert_eq!(
        j["consistent"],
        true,
        "status after the grant:\n{}",
        describe(&status)
    );
    // The release's sshd (run for -V) and the parser agree: no warning about its settings.
    let doctor = tool(&t, caller_tz, &t.support_args("doctor", &[]));
    let text = String::from_utf8_lossy(&doctor.stdout);
    for bad in [
        "PubkeyAcceptedAlgorithms",
        "expiry-time \"",
        "refuses the file",
        "sshd -T",
    ] {
        assert!(
            !text
                .lines()
                .any(|l| l.contains(bad) && !l.starts_with("PASS")),
            "doctor on {suite} warns about {bad}:\n{}",
            describe(&doctor)
        );
    }

    let wait = expires_at.saturating_sub(now()) + 2;
    assert!(wait <= 25, "the grant ends in {wait} s");
    std::thread::sleep(Duration::from_secs(wait));
    t.assert_sshd_refuses(&t.sup, &[], SRV_SUP_V4, t.port);
}

/// The release as the tool learns it (its own `sshd -V`, through the wrapper).
fn version_of(t: &Topology) -> (u32, u32) {
    let out = match &t.chroot {
        Some(ch) => Command::new("chroot")
            .arg(ch)
            .args(["/usr/sbin/sshd", "-V"])
            .output()
            .unwrap(),
        None => Command::new("/usr/sbin/sshd").arg("-V").output().unwrap(),
    };
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let v = text
        .split("OpenSSH_")
        .nth(1)
        .unwrap_or_else(|| panic!("sshd -V: {text}"));
    let (major, rest) = v.split_once('.').unwrap();
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (major.parse().unwrap(), minor.parse().unwrap())
}

#[test]
fn deb11_caller_west_of_utc() {
    timed_grant(
        "deb11_caller_west_of_utc",
        "bullseye",
        "America/New_York",
        None,
    );
}

#[test]
fn deb11_caller_east_of_utc() {
    timed_grant("deb11_caller_east_of_utc", "bullseye", "Asia/Tokyo", None);
}

#[test]
fn deb11_server_east_of_utc() {
    timed_grant(
        "deb11_server_east_of_utc",
        "bullseye",
        "America/Los_Angeles",
        Some("Asia/Tokyo"),
    );
}

#[test]
fn deb13_caller_west_server_east() {
    timed_grant(
        "deb13_caller_west_server_east",
        "trixie",
        "America/New_York",
        Some("Asia/Kolkata"),
    );
}

#[test]
fn deb13_caller_east_of_utc() {
    timed_grant("deb13_caller_east_of_utc", "trixie", "Asia/Tokyo", None);
}

// ------------------------------------------------------------------------ revoke ends it all

/// Processes whose command line is exactly `sleep SECS`.
fn sleeps(secs: u64) -> Vec<u32> {
    let want = format!("sleep\0{secs}\0");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes()))
        .collect()
}

struct Client(Child);
impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ssh_spawn(t: &Topology, port: u16, cmd: &str) -> Client {
    let key = t.support_pub().with_extension("");
    Client(
        ssh_command(&t.sup, 120, &key, port)
            .arg(format!("root@{SRV_SUP_V4}"))
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ssh"),
    )
}

/// The support runs a command without a tty, leaves `nohup` and `setsid` jobs behind and
/// disconnects, and logs in on a port sshd listens on outside the grant (`from=` restricts the
/// source, not the port; the server has no firewall on it). Revoke ends every one of them and
/// names them; a second topology proves `--keep-sessions` keeps them.
fn revoke_ends_everything(name: &str, suite: Option<&str>, json: bool) {
    if !can_run(name) {
        return;
    }
    let t = Topology::new(Opts {
        chroot: suite.map(chroot),
        ruleset: None,
        extra_sshd_config: "Port 2200\n".into(),
        ..Opts::default()
    });
    tool_ok(&t, "UTC", &t.grant_args(&["--port", "2222"]));
    let base = 7_000_000 + u64::from(std::process::id() % 10_000) * 100 + u64::from(json) * 10;
    let [live, nohup, setsid, other_port] = [base + 1, base + 2, base + 3, base + 4];
    // With PAM (the chroots), pam_loginuid gives each login its own audit session: a job of
    // the same login that cleared its environment and left the process tree is found by it.
    let cleared = base + 5;
    let cleared_job = if suite.is_some() {
        format!("env -i setsid sleep {cleared} >/dev/null 2>&1 </dev/null & ")
    } else {
        String::new()
    };
    let _live = ssh_spawn(&t, 2222, &format!("sleep {live}"));
    let out = t.ssh(
        &t.sup,
        SRV_SUP_V4,
        2222,
        &format!(
            "nohup sleep {nohup} >/dev/null 2>&1 & setsid sleep {setsid} >/dev/null 2>&1 \
             </dev/null & {cleared_job}echo started"
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "started",
        "{}",
        describe(&out)
    );
    let _other = ssh_spawn(&t, 2200, &format!("sleep {other_port}"));
    let mut all = vec![live, nohup, setsid, other_port];
    if suite.is_some() {
        all.push(cleared);
    }
    let each = |all: &[u64]| all.iter().map(|s| (*s, sleeps(*s))).collect::<Vec<_>>();
    let running = wait_until(Duration::from_secs(15), || {
        all.iter().all(|s| !sleeps(*s).is_empty())
    });
    assert!(
        running,
        "the support's processes did not start: {:?}",
        each(&all)
    );

    let args = if json {
        os(&["--json", "revoke"])
    } else {
        os(&["revoke"])
    };
    let out = tool_ok(&t, "UTC", &args);
    let gone = wait_until(Duration::from_secs(10), || {
        all.iter().all(|s| sleeps(*s).is_empty())
    });
    assert!(
        gone,
        "revoke left the support's processes running: {:?}\n{}",
        each(&all),
        describe(&out)
    );
    // What was ended is named: each job's command line.
    let named = if json {
        let j = json_of(&out);
        let list = j["sessions_ended"].as_array().unwrap().clone();
        let commands: Vec<String> = list
            .iter()
            .map(|e| e["command"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(list
            .iter()
            .all(|e| e["pid"].as_u64().is_some() && e["kind"].is_string()));
        if suite.is_some() {
            let by_session = list.iter().any(|e| {
                e["kind"] == "audit_session"
                    && e["command"].as_str() == Some(format!("sleep {cleared}").as_str())
            });
            assert!(
                by_session,
                "the cleared job was not found by its audit session:\n{}",
                describe(&out)
            );
        }
        commands.join("\n")
    } else {
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for s in &all {
        assert!(
            named.contains(&format!("sleep {s}")),
            "revoke does not name `sleep {s}`:\n{}",
            describe(&out)
        );
    }
    assert!(!out.stdout.is_empty());
}

#[test]
fn deb12_revoke_ends_everything_the_support_started() {
    revoke_ends_everything(
        "deb12_revoke_ends_everything_the_support_started",
        None,
        false,
    );
}

#[test]
fn deb13_revoke_ends_everything_the_support_started() {
    revoke_ends_everything(
        "deb13_revoke_ends_everything_the_support_started",
        Some("trixie"),
        true,
    );
}

#[test]
fn deb11_keep_sessions_keeps_them() {
    if !can_run("deb11_keep_sessions_keeps_them") {
        return;
    }
    let t = Topology::new(Opts {
        chroot: Some(chroot("bullseye")),
        ruleset: None,
        ..Opts::default()
    });
    tool_ok(&t, "UTC", &t.grant_args(&[]));
    let job = 7_900_000 + u64::from(std::process::id() % 10_000);
    let out = t.ssh(
        &t.sup,
        SRV_SUP_V4,
        t.port,
        &format!("setsid sleep {job} >/dev/null 2>&1 </dev/null & echo started"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "started",
        "{}",
        describe(&out)
    );
    assert!(wait_until(Duration::from_secs(10), || !sleeps(job).is_empty()));
    let out = tool_ok(&t, "UTC", &os(&["--json", "revoke", "--keep-sessions"]));
    assert_eq!(json_of(&out)["sessions_ended"], serde_json::json!([]));
    assert!(
        !sleeps(job).is_empty(),
        "--keep-sessions ended the support's job"
    );
    // Dropping the topology ends it with everything else in the server's namespace.
}

// ------------------------------------------------------------- sshd -T of each release agrees

/// The release's `sshd -T` against the parser with that release's defaults, on configurations
/// that use the old and the new keyword names: no disagreement, so no warning on the real system
/// (where the tool runs this cross-check itself). sshd runs chrooted, in a private mount namespace
/// where the test's /etc/ssh is bound over the chroot's.
fn sshd_t_agrees(name: &str, suite: &str) {
    use ovh_access::root::Root;
    use ovh_access::sshd::{eval, matching::Connection, parse_version, test_mode, Config};
    if !can_run(name) {
        return;
    }
    let ch = chroot(suite);
    let dir = Path::new("/var/tmp/ovh-access-tests").join(format!("release-t-{}", unique_suffix()));
    struct Gone(PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(dir.clone());
    fs::create_dir_all(dir.join("etc/ssh")).unwrap();
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("etc/ssh/k")));
    let wrapper = dir.join("sshd");
    let (sb, ch) = (dir.display(), ch.display());
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare --mount --propagation private sh -c \"mount --bind '{sb}/etc/ssh' \
             '{ch}/etc/ssh' && mount -t tmpfs oa-run '{ch}/run' && mkdir '{ch}/run/sshd' && \
             mount --bind /dev '{ch}/dev' && exec chroot '{ch}' /usr/sbin/sshd \\\"\\$@\\\"\" sh \"$@\"\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let v = Command::new(&wrapper).arg("-V").output().unwrap();
    let release = parse_version(&String::from_utf8_lossy(&v.stderr))
        .unwrap_or_else(|| panic!("sshd -V of {suite}:\n{}", describe(&v)));
    let conn = Connection {
        user: "root".into(),
        groups: vec!["root".into()],
        host: Some(SUP_V4.into()),
        addr: Some(SUP_V4.parse().unwrap()),
        laddr: Some(SRV_SUP_V4.parse().unwrap()),
        lport: Some(22),
    };
    for extra in [
        "",
        "PubkeyAcceptedKeyTypes -ssh-rsa*,ecdsa*\n",
        "KbdInteractiveAuthentication no\nChallengeResponseAuthentication no\n",
        "Match Address 198.51.100.0/24\n  PermitRootLogin no\n  PubkeyAcceptedKeyTypes rsa-sha2-512\n",
    ] {
        fs::write(
            dir.join("etc/ssh/sshd_config"),
            format!("HostKey /etc/ssh/k\n{extra}"),
        )
        .unwrap();
        let dump = test_mode::run(&wrapper, &conn, &[])
            .unwrap_or_else(|e| panic!("{suite} sshd -T with {extra:?}: {e:#}"));
        assert!(!dump.pubkey_accepted_algorithms.is_empty(), "{suite}: {extra:?}");
        let root = Root::new(&dir).unwrap();
        let cfg = Config::load(&root).unwrap();
        let global = eval::global(&cfg).unwrap();
        let ours = eval::effective_for(
            &eval::for_connection(&cfg, &global, &conn).unwrap(),
            Some(release),
        );
        let diff = test_mode::disagreements(&ours, &dump);
        assert!(diff.is_empty(), "OpenSSH {release:?} with {extra:?}: {diff:?}");
    }
}

#[test]
fn deb11_sshd_t_agrees_with_the_parser() {
    sshd_t_agrees("deb11_sshd_t_agrees_with_the_parser", "bullseye");
}

#[test]
fn deb13_sshd_t_agrees_with_the_parser() {
    sshd_t_agrees("deb13_sshd_t_agrees_with_the_parser", "trixie");
}

// ----------------------------------------------------- status and doctor read the line as sshd

/// The key line's expiry as the release's sshd reads it, against the grant: a line written in
/// the operator's zone (what the tool did before) and a line that lost its expiry-time are drift
/// that status and doctor name, and restore repairs.
#[test]
fn deb11_status_reads_the_expiry_as_sshd_does() {
    if !can_run("deb11_status_reads_the_expiry_as_sshd_does") {
        return;
    }
    let t = Topology::new(Opts {
        chroot: Some(chroot("bullseye")),
        zone: Some("Asia/Tokyo"),
        ruleset: None,
        ..Opts::default()
    });
    let tz = "America/New_York";
    tool_ok(&t, tz, &t.grant_args(&["--for", "1h"]));
    let good = line_expiry(&t).unwrap();
    let consistent = |what: &str| {
        let out = tool(&t, tz, &os(&["--json", "status"]));
        let j = json_of(&out);
        (
            j["consistent"] == true,
            format!("{what}:\n{}", describe(&out)),
        )
    };
    let (ok, why) = consistent("after the grant");
    assert!(ok, "{why}");

    let state = fs::read_to_string(t.sandbox().join("var/lib/ovh-access/state.json")).unwrap();
    let expires_at = serde_json::from_str::<serde_json::Value>(&state).unwrap()["granted"]
        ["expires_at"]
        .as_u64()
        .unwrap();
    let in_callers_zone = local_digits(tz, expires_at);
    let text = t.keys_text();
    t.write_keys(&text.replace(&good, &in_callers_zone));
    let (ok, why) = consistent("with the expiry in the caller's zone");
    assert!(!ok && why.contains("expiry-time"), "{why}");
    let doctor = tool(&t, tz, &t.support_args("doctor", &[]));
    assert!(
        String::from_utf8_lossy(&doctor.stdout).contains(&format!("\"{in_callers_zone}\" is read")),
        "doctor should name the line's expiry:\n{}",
        describe(&doctor)
    );

    tool_ok(&t, tz, &os(&["restore"]));
    assert_eq!(line_expiry(&t).as_deref(), Some(good.as_str()));
    let (ok, why) = consistent("after restore");
    assert!(ok, "{why}");

    t.write_keys(
        &t.keys_text()
            .replace(&format!(",expiry-time=\"{good}\""), ""),
    );
    assert_eq!(line_expiry(&t), None);
    let (ok, why) = consistent("without expiry-time");
    assert!(!ok && why.contains("lost its expiry-time"), "{why}");
}

/// A keyword newer than the installed sshd makes it refuse its whole file at the next restart:
/// on Debian 11 (8.4), doctor names the line and the name that release knows.
#[test]
fn deb11_doctor_names_a_keyword_too_new_for_its_sshd() {
    if !can_run("deb11_doctor_names_a_keyword_too_new_for_its_sshd") {
        return;
    }
    let t = Topology::new(Opts {
        chroot: Some(chroot("bullseye")),
        ruleset: None,
        ..Opts::default()
    });
    // Added once sshd runs: a restart would now fail.
    let config = t.sandbox().join("etc/ssh/sshd_config");
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("PubkeyAcceptedAlgorithms +ssh-rsa\n");
    fs::write(&config, text).unwrap();
    let out = tool(&t, "UTC", &t.support_args("doctor", &[]));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("PubkeyAcceptedAlgorithms is new in OpenSSH 8.5")
            && all.contains("pubkeyacceptedkeytypes"),
        "doctor on 8.4 should name the keyword it refuses:\n{}",
        describe(&out)
    );
}
