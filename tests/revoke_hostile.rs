//! Revoke never gives up half-way, and every input is bounded and judged as sshd judges it, on
//! sandbox roots through the binary: a corrupt state file is kept aside and the revoke closes by
//! key and marker; a revoke with nothing recorded writes no journal; an unwritable keys file
//! (immutable, read-only) is reported with the command that finishes the job; the temp files of
//! a killed run are removed; `--key-file /dev/zero`, `--resolver IP:0`, an MD5 fingerprint and an sshd_config that `sshd -t`
//! refuses are clear errors. Root only: each run gets an empty firewall of its own (`unshare
//! --net`).
use std::fs;
use std::os::unix::fs::PermissionsExt;

use std::process::{Command, Output, Stdio};

mod common;
use common::{can_unshare_net, describe, refusal_message, Tree};

const KEYS: &str = "root/.ssh/authorized_keys2";
const STATE: &str = "var/lib/ovh-access/state.json";
const GRANT: &[&str] = &["grant", "--region", "eu", "--no-dns", "--firewall", "none"];
/// A key of no built-in profile, for `--key-file` grants.
const OTHER: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKa0YISaa75BrL4udhn7reoUNIHSlG1BH24c9IDwUXlM";

fn sandbox() -> Tree {
    let s = Tree::empty();
    s.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644);
    s.write("etc/ssh/sshd_config", "Port 2222\n", 0o644);
    fs::create_dir_all(s.p("root/.ssh")).unwrap();
    fs::set_permissions(s.p("root"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(s.p("root/.ssh"), fs::Permissions::from_mode(0o700)).unwrap();
    s
}

/// The binary on the sandbox, in an empty network namespace, with its address space bounded so
/// that a runaway read fails inside the test instead of filling the machine's memory.
fn tool(s: &Tree, args: &[&str]) -> Output {
    s.tool_behind(&["prlimit", "--as=4294967296"], args)
}

fn ok(s: &Tree, args: &[&str]) -> Output {
    let out = tool(s, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
    out
}

fn can_run(name: &str) -> bool {
    let ok = can_unshare_net();
    if !ok {
        eprintln!("SKIP {name}: needs root (run `cargo test --test revoke_hostile` as root)");
    }
    ok
}

fn active_lines(s: &Tree) -> Vec<String> {
    s.read(KEYS)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn names(s: &Tree, rel: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(s.p(rel))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A pid that no process has: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn a_corrupt_state_file_is_kept_aside_and_revoke_closes_by_key_and_marker() {
    if !can_run("a_corrupt_state_file_is_kept_aside_and_revoke_closes_by_key_and_marker") {
        return;
    }
    // A --key-file grant: its key is no built-in one, so only the salvaged state names it.
    let s = sandbox();
    s.write("k.pub", &format!("{OTHER} support@example\n"), 0o644);
    let k = s.p("k.pub");
    let args = [
        "grant",
        "--key-file",
        k.to_str().unwrap(),
        "--host",
        "support.example",
        "--address",
        "192.0.2.10",
        "--firewall",
        "none",
    ];
    ok(&s, &args);
    assert_eq!(active_lines(&s).len(), 1);
    let full = fs::read(s.p(STATE)).unwrap();
    // Truncated as by a full disk, after the keys and before the end.
    let cut = &full[..full.len() * 3 / 4];
    fs::write(s.p(STATE), cut).unwrap();

    let st = tool(&s, &["status"]);
    assert_ne!(st.status.code(), Some(0), "{}", describe(&st));
    assert!(
        describe(&st).contains("ovh-access revoke"),
        "{}",
        describe(&st)
    );
    let out = ok(&s, &["revoke"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let aside: Vec<String> = names(&s, "var/lib/ovh-access")
        .into_iter()
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{}", describe(&out));
    assert!(
        err.contains(&aside[0]),
        "the message names the kept file: {err}"
    );
    assert_eq!(
        fs::read(s.p("var/lib/ovh-access").join(&aside[0])).unwrap(),
        cut,
        "kept byte for byte"
    );
    assert!(active_lines(&s).is_empty(), "{}", s.read(KEYS));
    ok(&s, &["status"]);

    // Garbage that names nothing: the built-in key's line is still found by key and marker.
    ok(&s, GRANT);
    fs::write(s.p(STATE), b"\x00\x00\x00").unwrap();
    ok(&s, &["revoke"]);
    assert!(active_lines(&s).is_empty(), "{}", s.read(KEYS));
}

#[test]
fn a_revoke_with_nothing_to_do_writes_no_journal() {
    if !can_run("a_revoke_with_nothing_to_do_writes_no_journal") {
        return;
    }
    let s = sandbox();
    // sshd refuses this file (host bits set in a Match network): the keys file it names is
    // unknown, so the revoke looks in sshd's default files, and records nothing.
    s.write(
        "etc/ssh/sshd_config",
        "Port 2222\nMatch Address 192.0.2.1/24\n  PasswordAuthentication no\n",
        0o644,
    );
    let out = tool(&s, &["revoke"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        !s.p(STATE).exists(),
        "no state, no journal: {}",
        s.read(STATE)
    );
}

#[test]
fn an_immutable_keys_file_is_reported_with_the_command_that_finishes() {
    if !can_run("an_immutable_keys_file_is_reported_with_the_command_that_finishes") {
        return;
    }
    use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
    let s = sandbox();
    ok(&s, GRANT);
    let f = fs::File::open(s.p(KEYS)).unwrap();
    let Ok(flags) = ioctl_getflags(&f) else {
        eprintln!("SKIP: this file system has no inode flags; run on ext4/xfs/btrfs/tmpfs");
        return;
    };
    if ioctl_setflags(&f, flags | IFlags::IMMUTABLE).is_err() {
        eprintln!("SKIP: this file system cannot mark a file immutable");
        return;
    }
    struct Unlock<'a>(&'a fs::File, IFlags);
    impl Drop for Unlock<'_> {
        fn drop(&mut self) {
            let _ = ioctl_setflags(self.0, self.1);
        }
    }
    let unlock = Unlock(&f, flags);
    let out = tool(&s, &["revoke"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = describe(&out);
    assert!(
        all.contains("chattr -i") && all.contains("ovh-access revoke"),
        "{all}"
    );
    // The journal keeps the unfinished revoke: status says so and names the repair.
    let st = tool(&s, &["status"]);
    assert_eq!(st.status.code(), Some(1), "{}", describe(&st));
    assert!(
        describe(&st).contains("interrupted revoke"),
        "{}",
        describe(&st)
    );
    drop(unlock);
    ok(&s, &["revoke"]);
    assert!(active_lines(&s).is_empty());
    ok(&s, &["status"]);
}

#[test]
fn a_read_only_keys_directory_is_reported_with_the_command_that_finishes() {
    if !can_run("a_read_only_keys_directory_is_reported_with_the_command_that_finishes") {
        return;
    }
    let s = sandbox();
    ok(&s, GRANT);
    // root/.ssh read-only in a mount namespace of the run's own (unshare's default propagation
    // is private: nothing reaches the host's mounts).
    let ssh = s.p("root/.ssh");
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec \"$@\"",
        d = ssh.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--net", "sh", "-c", &script, "sh"])
        .arg(env!("CARGO_BIN_EXE_ovh-access"))
        .arg("--root")
        .arg(s.dir.path())
        .arg("revoke")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = describe(&out);
    assert!(
        all.contains("read-only") && all.contains("`ovh-access revoke` again"),
        "{all}"
    );
    assert_eq!(active_lines(&s).len(), 1, "the line could not change");
    ok(&s, &["revoke"]);
    assert!(active_lines(&s).is_empty());
    ok(&s, &["status"]);
}

#[test]
fn the_temp_files_of_a_killed_run_are_removed_by_the_next_one() {
    if !can_run("the_temp_files_of_a_killed_run_are_removed_by_the_next_one") {
        return;
    }
    let s = sandbox();
    ok(&s, GRANT);
    let dead = dead_pid();
    let live = std::process::id();
    let planted = [
        format!("root/.ssh/.authorized_keys2.ovh-access.{dead}.0"),
        format!("root/.ssh/.authorized_keys.ovh-access.{dead}.3"),
        format!("var/lib/ovh-access/.state.json.{dead}.tmp"),
    ];
    let kept = [
        format!("root/.ssh/.authorized_keys2.ovh-access.{live}.0"),
        "root/.ssh/.authorized_keys2.ovh-access.x.0".to_string(),
        format!("var/lib/ovh-access/.state.json.{live}.tmp"),
    ];
    for p in planted.iter().chain(&kept) {
        s.write(p, "half-written\n", 0o600);
    }
    ok(&s, &["revoke"]);
    for p in &planted {
        assert!(!s.p(p).exists(), "{p} should be gone");
    }
    for p in &kept {
        assert!(s.p(p).exists(), "{p} is not a dead run's: it stays");
    }
}

#[test]
fn endless_or_malformed_inputs_are_clear_errors() {
    if !can_run("endless_or_malformed_inputs_are_clear_errors") {
        return;
    }
    let s = sandbox();
    let base = [
        "grant",
        "--host",
        "support.example",
        "--address",
        "192.0.2.10",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| tool(&s, &args.iter().map(String::as_str).collect::<Vec<_>>());

    let out = run(with(&["--key-file", "/dev/zero", "--firewall", "none"]));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    refusal_message(&out, &["/dev/zero", "larger than"]);

    s.write("k.pub", &format!("{OTHER} support@example\n"), 0o644);
    let k = s.p("k.pub");
    let k = k.to_str().unwrap();
    let md5 = "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48";
    let out = run(with(&["--key-file", k, "--fingerprint", md5]));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let msg = refusal_message(&out, &[md5, "SHA256"]);
    assert!(!msg.contains("SHA256:MD5"), "{msg}");

    let out = run(with(&["--key-file", k, "--resolver", "192.0.2.53:0"]));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1-65535"),
        "{}",
        describe(&out)
    );
    assert!(!s.p(KEYS).exists() && !s.p(STATE).exists());
}

#[test]
fn an_sshd_config_that_sshd_refuses_is_refused_with_its_line() {
    if !can_run("an_sshd_config_that_sshd_refuses_is_refused_with_its_line") {
        return;
    }
    for (config, line) in [
        (
            "Port 2222\nMatch Address 192.0.2.0/33\n  PasswordAuthentication no\n",
            2,
        ),
        ("Port 2222\nPermitRootLogin yes\nFrobnicate yes\n", 3),
    ] {
        let s = sandbox();
        s.write("etc/ssh/sshd_config", config, 0o644);
        let out = tool(&s, GRANT);
        assert_eq!(out.status.code(), Some(2), "{config}: {}", describe(&out));
        refusal_message(&out, &[&format!("/etc/ssh/sshd_config line {line}")]);
        assert!(!s.p(KEYS).exists() && !s.p(STATE).exists());
    }
}
