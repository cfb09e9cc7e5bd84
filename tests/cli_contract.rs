//! The command-line contract, through the binary: bad input is one sentence on stderr (what,
//! where, how to fix), exit code 2, an empty stdout (or with `--json` one object with
//! `changed: false` and `error`), and nothing changed in the sandbox root. Also `--help`,
//! `--version` and usage errors.
//!
//! Every run has `--root SANDBOX`, and every grant `--firewall none`, so that even a regression
//! that let bad input through could write only into the sandbox and never reach this machine's
//! firewall. The cases that need a network namespace (DNS, no root, no CAP_NET_ADMIN, the JSON of
//! every command against a real ruleset) are in netns-tests/cli_errors.rs.
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;
use common::{describe, one_error_line, one_json_value, refusal_message};

/// A throwaway ed25519 key (not the support's): its line and its fingerprint as
/// `ssh-keygen -lf` prints it.
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILxPnS4PzM9SFvG/QBPYknc72fgTsSMPtA8ZWg4mOTvS sup@test";
const KEY_FP: &str = "SHA256:hvVdrBbYqZJYwmIizASV/3BwCRmDBMcZFpIoKIqQ4WI";
/// The support's address in these tests (documentation range; given with --address, no DNS).
const ADDR: &str = "198.51.100.2";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ovh-access")
}

/// A root standing for `/`: passwd, sshd_config (Port 2222), root's home, and the key file.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Traversable by others: one case runs the tool as nobody to make a file unreadable.
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(d.join("etc/ssh")).unwrap();
        fs::write(d.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        fs::write(
            d.join("etc/ssh/sshd_config"),
            "Port 2222\nPermitRootLogin prohibit-password\n",
        )
        .unwrap();
        fs::create_dir_all(d.join("root/.ssh")).unwrap();
        fs::set_permissions(d.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(d.join("root/.ssh"), fs::Permissions::from_mode(0o700)).unwrap();
        // A keys file with a line of the administrator's own, which must survive byte for byte.
        fs::write(
            d.join("root/.ssh/authorized_keys2"),
            "# admin\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmlq1b2qrtKD0Lg6E8Zz3nM0qH0Kb1yXbYl8o6UXLhd admin@laptop\n",
        )
        .unwrap();
        fs::write(d.join("key.pub"), format!("{KEY}\n")).unwrap();
        Sandbox { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn key(&self) -> PathBuf {
        self.root().join("key.pub")
    }

    /// Every path under the root with its type, mode, owner and content: "nothing changed" is
    /// this, equal before and after.
    fn snapshot(&self) -> BTreeMap<PathBuf, (u32, u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut todo = vec![self.root().to_path_buf()];
        while let Some(p) = todo.pop() {
            let m = fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() && m.mode() & 0o444 != 0 {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                for e in fs::read_dir(&p).unwrap() {
                    todo.push(e.unwrap().path());
                }
            }
            out.insert(p, (m.mode(), m.uid(), content));
        }
        out
    }

    /// `ovh-access --root SANDBOX ARGS...` (ARGS' own `--root` instead, when they have one).
    fn run(&self, args: &[&str]) -> Output {
        self.run_via(&[], args)
    }

    /// The same, behind a wrapper (`setpriv ...`) when one is given.
    fn run_via(&self, wrapper: &[&str], args: &[&str]) -> Output {
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        if !args.contains(&"--root") {
            cmd.arg("--root").arg(self.root());
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ovh-access")
    }
}

/// The bad-input contract for `args`: exit 2, one error line naming every `must_name`, stdout
/// empty, the sandbox unchanged; then the same with `--json`: one object, `changed: false`,
/// `dry_run: false`, `error` equal to the stderr message.
fn assert_refused(sb: &Sandbox, wrapper: &[&str], args: &[&str], must_name: &[&str]) -> String {
    let before = sb.snapshot();
    let out = sb.run_via(wrapper, args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} must exit 2:\n{}",
        describe(&out)
    );
    let msg = refusal_message(&out, must_name);
    assert_eq!(sb.snapshot(), before, "{args:?} changed the sandbox");

    let mut json_args = vec!["--json"];
    json_args.extend_from_slice(args);
    let out = sb.run_via(wrapper, &json_args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{json_args:?}:\n{}",
        describe(&out)
    );
    let json_msg = one_error_line(&out);
    let v = one_json_object(&out);
    assert_eq!(v["changed"], Value::Bool(false), "{v}");
    assert_eq!(v["dry_run"], Value::Bool(false), "{v}");
    assert_eq!(v["error"], Value::String(json_msg.clone()), "{v}");
    assert_eq!(json_msg, msg, "--json must not change the message");
    assert_eq!(sb.snapshot(), before, "{json_args:?} changed the sandbox");
    msg
}

/// stdout is exactly one JSON object.
fn one_json_object(out: &Output) -> Value {
    let v = one_json_value(out);
    assert!(v.is_object(), "not an object: {v}");
    v
}

/// A grant that gets past the input checks needs a root-owned home in the sandbox (the keys
/// writer refuses what sshd's StrictModes would refuse), which only root can create.
fn owner_is_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!(
        "SKIP {test}: the sandbox's root home must be owned by root; run as root to include it"
    );
    false
}

fn grant<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["grant", "--firewall", "none", "--address", ADDR];
    a.extend_from_slice(extra);
    a
}

#[test]
fn missing_key_file() {
    let sb = Sandbox::new();
    let missing = sb.root().join("no-such.pub");
    let m = missing.to_str().unwrap();
    let msg = assert_refused(&sb, &[], &grant(&["--key-file", m]), &["--key-file", m]);
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn key_file_that_is_a_directory() {
    let sb = Sandbox::new();
    let dir = sb.root().join("etc");
    let d = dir.to_str().unwrap();
    assert_refused(&sb, &[], &grant(&["--key-file", d]), &["--key-file", d]);
}

#[test]
fn unreadable_key_file() {
    let sb = Sandbox::new();
    let key = sb.key();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads any file: the tool then runs as nobody (on the sandbox, which is allowed).
    let wrapper: &[&str] = if rustix::process::geteuid().is_root() {
        if Command::new("setpriv").arg("--version").output().is_err() {
            eprintln!("SKIP unreadable_key_file: needs setpriv (util-linux) when run as root");
            return;
        }
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        &[]
    };
    let k = key.to_str().unwrap();
    let msg = assert_refused(&sb, wrapper, &grant(&["--key-file", k]), &["--key-file", k]);
    assert!(msg.contains("Permission denied"), "{msg}");
}

#[test]
fn key_file_without_a_public_key() {
    let sb = Sandbox::new();
    let bad = sb.root().join("bad.pub");
    let b = bad.to_str().unwrap();
    // A private key pasted by mistake, then prose: neither is a public key line.
    fs::write(
        &bad,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
    )
    .unwrap();
    assert_refused(&sb, &[], &grant(&["--key-file", b]), &[b]);
    fs::write(&bad, "").unwrap();
    assert_refused(&sb, &[], &grant(&["--key-file", b]), &[b]);
    fs::write(&bad, "ssh-ed25519 not-base64!! x\n").unwrap();
    assert_refused(&sb, &[], &grant(&["--key-file", b]), &[b]);
}

#[test]
fn fingerprint_mismatch() {
    let sb = Sandbox::new();
    let k = sb.key();
    let wrong = "SHA256:JAFN+LjSd5rMut8LHygxPjyVQ9XhOv+IR6qEVA5+okU";
    let args = grant(&["--key-file", k.to_str().unwrap(), "--fingerprint", wrong]);
    let msg = assert_refused(
        &sb,
        &[],
        &args,
        &[KEY_FP, "--fingerprint", "ssh-keygen -lf"],
    );
    assert!(
        msg.contains("JAFN+LjSd5rMut8LHygxPjyVQ9XhOv+IR6qEVA5+okU"),
        "{msg}"
    );
    // The right fingerprint passes that check (the grant itself is a dry run: nothing changes).
    if !owner_is_root("fingerprint_mismatch (the matching half)") {
        return;
    }
    let before = sb.snapshot();
    let mut ok = grant(&["--key-file", k.to_str().unwrap(), "--fingerprint", KEY_FP]);
    ok.push("--dry-run");
    let out = sb.run(&ok);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn unknown_region() {
    let sb = Sandbox::new();
    let k = sb.key();
    let args = grant(&["--region", "us", "--key-file", k.to_str().unwrap()]);
    assert_refused(&sb, &[], &args, &["--region", "'us'", "eu", "ca", "--help"]);
}

#[test]
fn port_zero_and_above_65535() {
    let sb = Sandbox::new();
    let k = sb.key();
    for port in ["0", "65536", "99999", "ssh"] {
        let args = grant(&["--port", port, "--key-file", k.to_str().unwrap()]);
        assert_refused(&sb, &[], &args, &["--port", port, "65535"]);
    }
}

#[test]
fn root_pointing_nowhere() {
    let sb = Sandbox::new();
    let k = sb.key();
    let nowhere = sb.root().join("no/such/dir");
    let file = sb.root().join("etc/passwd");
    for (root, why) in [(&nowhere, "No such file"), (&file, "not a directory")] {
        let r = root.to_str().unwrap();
        let args = [
            "--root",
            r,
            "grant",
            "--firewall",
            "none",
            "--address",
            ADDR,
            "--key-file",
        ];
        let mut args = args.to_vec();
        args.push(k.to_str().unwrap());
        let msg = assert_refused(&sb, &[], &args, &["--root", r, why]);
        assert!(!root.join("var").exists() && !root.join("run").exists());
        assert!(
            msg.contains("existing directory") || msg.contains("give the directory"),
            "{msg}"
        );
    }
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    let sb = Sandbox::new();
    for (args, name) in [
        (vec!["grant", "--bogus"], "--bogus"),
        (vec!["frobnicate"], "frobnicate"),
        (vec!["grant", "--for", "10"], "--for"),
        (vec!["revoke", "--key-file", "x"], "--key-file"),
        (vec![], "command"),
    ] {
        assert_refused(&sb, &[], &args, &[name]);
    }
    // `--json` given after the subcommand counts too (it is a global flag).
    let out = sb.run(&["grant", "--json", "--port", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let v = one_json_object(&out);
    assert_eq!(v["command"], "grant", "{v}");
}

#[test]
fn help_and_version_exit_0_on_stdout() {
    let sb = Sandbox::new();
    for args in [
        vec!["--help"],
        vec!["grant", "--help"],
        vec!["revoke", "-h"],
        vec!["help", "doctor"],
        vec!["--version"],
    ] {
        let out = sb.run(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}:\n{}", describe(&out));
        assert!(
            !out.stdout.is_empty() && out.stderr.is_empty(),
            "{args:?}:\n{}",
            describe(&out)
        );
    }
    let out = sb.run(&["grant", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--region",
        "--host",
        "--address",
        "--resolver",
        "--allow-private",
        "--key-file",
        "--fingerprint",
        "--port",
        "--for",
        "--firewall",
        "--dry-run",
        "--root",
        "--json",
    ] {
        assert!(help.contains(flag), "grant --help lacks {flag}:\n{help}");
    }
}

#[test]
fn profiles_json_is_one_object_and_changes_nothing() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let out = sb.run(&["--json", "profiles"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let v = one_json_object(&out);
    assert_eq!(v["changed"], Value::Bool(false), "{v}");
    assert_eq!(v["dry_run"], Value::Bool(false), "{v}");
    assert_eq!(v["command"], "profiles");
    assert_eq!(v["profiles"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn grant_dry_run_on_a_sandbox_prints_the_diff_and_changes_nothing() {
    if !owner_is_root("grant_dry_run_on_a_sandbox_prints_the_diff_and_changes_nothing") {
        return;
    }
    let sb = Sandbox::new();
    let k = sb.key();
    let before = sb.snapshot();
    let out = sb.run(&grant(&["--key-file", k.to_str().unwrap(), "--dry-run"]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The added line, in diff form, restricted to the address.
    let added = stdout
        .lines()
        .find(|l| l.starts_with('+') && l.contains(KEY.split(' ').nth(1).unwrap()))
        .unwrap_or_else(|| panic!("no added key line in the diff:\n{stdout}"));
    assert!(added.contains(&format!("from=\"{ADDR}")), "{added}");
    assert_eq!(sb.snapshot(), before, "a dry run changed the sandbox");

    let out = sb.run(&grant(&[
        "--json",
        "--key-file",
        k.to_str().unwrap(),
        "--dry-run",
    ]));
    let v = one_json_object(&out);
    assert_eq!(v["changed"], Value::Bool(false), "{v}");
    assert_eq!(v["dry_run"], Value::Bool(true), "{v}");
    // What `--diff` callers show: the file as it is and as it would be, whole; no firewall text
    // with `--firewall none`.
    let file = fs::read_to_string(sb.root().join("root/.ssh/authorized_keys2")).unwrap();
    assert_eq!(v["keys_file_before"], Value::String(file.clone()), "{v}");
    let after = v["keys_file_after"].as_str().unwrap_or_default();
    assert!(
        after.starts_with(&file),
        "the admin's lines stay first:\n{after}"
    );
    let added = &after[file.len()..];
    assert!(
        added.starts_with(&format!("from=\"{ADDR}"))
            && added.contains(KEY.split(' ').nth(1).unwrap()),
        "{added}"
    );
    assert_eq!(v["firewall_script"], Value::String(String::new()), "{v}");
    assert_eq!(sb.snapshot(), before, "a dry run changed the sandbox");
}
