//! `ovh-access doctor` on sandbox roots, one test per failing condition of OVH's checklist: each
//! asserts its FAIL or WARN line and the exact fix. The binary runs in a fresh network namespace
//! of its own when it can (`unshare -n`, as root), so the firewall it reads is empty and this
//! machine's own ruleset neither leaks into the findings nor could ever be touched.
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{can_unshare_net, Tree};

const ADDR: &str = "198.51.100.10";

type Sandbox = Tree;

impl Tree {
    /// A server where the support gets in: root's home /root, the support key on a from= line of
    /// /root/.ssh/authorized_keys2 (0700 / 0600), an sshd_config of `extra` lines.
    fn new(sshd_config: &str) -> Sandbox {
        let s = Tree::empty();
        s.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644);
        s.write("etc/group", "root:x:0:\n", 0o644);
        s.write("etc/ssh/sshd_config", sshd_config, 0o644);
        s.write("support.pub", &support_pub(), 0o644);
        s.mkdir("root", 0o700);
        s.mkdir("root/.ssh", 0o700);
        s.write(
            "root/.ssh/authorized_keys2",
            &format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKey0 admin\nfrom=\"{ADDR}\" {}\n", support_pub().trim()),
            0o600,
        );
        s
    }

    /// `ovh-access --root SANDBOX doctor --address ADDR --key-file K [--json]`.
    fn doctor(&self, json: bool) -> Output {
        let bin = env!("CARGO_BIN_EXE_ovh-access");
        let mut args: Vec<String> = Vec::new();
        if json {
            args.push("--json".into());
        }
        args.extend([
            "--root".into(),
            self.dir.path().display().to_string(),
            "doctor".into(),
        ]);
        args.extend([
            "--host".into(),
            "cache-ng.ovh.net".into(),
            "--address".into(),
            ADDR.into(),
        ]);
        args.extend([
            "--key-file".into(),
            self.p("support.pub").display().to_string(),
        ]);
        let mut cmd = if can_unshare_net() {
            let mut c = Command::new("unshare");
            c.arg("--net").arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(&args).stdin(Stdio::null()).output().unwrap()
    }

    /// The human output, with the exit status checked against `fails`.
    fn run(&self, fails: bool) -> String {
        let out = self.doctor(false);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(if fails { 1 } else { 0 }), "{text}");
        text
    }
}

fn support_pub() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keys/ovh-eu.pub"))
        .unwrap()
}

const BASE: &str = "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nAuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2\n";

/// The finding line starting with `head` and the fix line right after it.
fn finding<'a>(text: &'a str, head: &str) -> (&'a str, &'a str) {
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(head))
        .unwrap_or_else(|| panic!("no line starting with {head:?} in:\n{text}"));
    let fix = lines
        .get(i + 1)
        .and_then(|l| l.trim().strip_prefix("fix: "))
        .unwrap_or("");
    (lines[i], fix)
}

#[test]
fn a_healthy_sandbox_passes() {
    let s = Sandbox::new(BASE);
    let text = s.run(false);
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains("PASS  keys file"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&s.doctor(true).stdout).unwrap();
    let checks = json["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["status"] != "FAIL"), "{json}");
    assert!(
        checks
            .iter()
            .any(|c| c["check"] == "sshd" && c["status"] == "PASS"),
        "{json}"
    );
}

#[test]
fn permit_root_login_no_in_a_match_address_block() {
    let s = Sandbox::new(&format!(
        "{BASE}Match Address 198.51.100.0/24\n    PermitRootLogin no\n"
    ));
    let text = s.run(true);
    let (line, fix) = finding(&text, "FAIL  PermitRootLogin");
    assert!(
        line.contains(ADDR) && line.contains("/etc/ssh/sshd_config:5"),
        "{line}"
    );
    assert_eq!(fix, "edit /etc/ssh/sshd_config:5 to read `PermitRootLogin prohibit-password`, then `systemctl reload sshd`");
    // The same block for another address changes nothing for the support.
    let s = Sandbox::new(&format!(
        "{BASE}Match Address 203.0.113.0/24\n    PermitRootLogin no\n"
    ));
    assert!(!s.run(false).contains("FAIL"));
}

#[test]
fn authorized_keys_file_without_authorized_keys2() {
    let s = Sandbox::new(
        "PermitRootLogin prohibit-password\nAuthorizedKeysFile .ssh/authorized_keys\n",
    );
    let text = s.run(true);
    let (line, fix) = finding(&text, "FAIL  AuthorizedKeysFile");
    assert!(
        line.contains("line 2 of /root/.ssh/authorized_keys2")
            && line.contains("/etc/ssh/sshd_config:2"),
        "{line}"
    );
    assert_eq!(
        fix,
        "edit /etc/ssh/sshd_config:2 to read `AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2`, then `systemctl reload sshd`"
    );
    // And the file sshd does read has no support line.
    let (line, _) = finding(
        &text,
        "FAIL  keys file: /root/.ssh/authorized_keys does not exist",
    );
    assert!(!line.is_empty());
}

#[test]
fn root_home_is_not_root() {
    let s = Sandbox::new(BASE);
    s.write(
        "etc/passwd",
        "root:x:0:0:root:/home/root:/bin/bash\n",
        0o644,
    );
    s.mkdir("home/root/.ssh", 0o700);
    fs::set_permissions(s.p("home/root"), fs::Permissions::from_mode(0o700)).unwrap();
    let text = s.run(true);
    let (line, fix) = finding(&text, "WARN  root home");
    assert!(
        line.contains("/home/root") && line.contains("/home/root/.ssh/authorized_keys2"),
        "{line}"
    );
    assert_eq!(
        fix,
        "install the key with ovh-access, which writes /home/root/.ssh/authorized_keys2; or set root's home to /root with `usermod -d /root root`"
    );
    // The key sits in /root, where sshd does not look for this root.
    let (_, fix) = finding(
        &text,
        "FAIL  keys file: /home/root/.ssh/authorized_keys2 does not exist",
    );
    assert_eq!(
        fix,
        format!(
            "ovh-access grant --host cache-ng.ovh.net --address {ADDR} --key-file {}",
            s.p("support.pub").display()
        )
    );
}

#[test]
fn a_world_writable_ssh_directory() {
    let s = Sandbox::new(BASE);
    fs::set_permissions(s.p("root/.ssh"), fs::Permissions::from_mode(0o777)).unwrap();
    let text = s.run(true);
    let (line, fix) = finding(
        &text,
        "FAIL  keys file: /root/.ssh is group- or world-writable (mode 777)",
    );
    assert!(line.contains("StrictModes"), "{line}");
    assert_eq!(fix, "chmod 700 /root/.ssh");
}

#[test]
fn a_symlinked_keys_file() {
    let s = Sandbox::new(BASE);
    fs::rename(
        s.p("root/.ssh/authorized_keys2"),
        s.p("root/.ssh/real_keys"),
    )
    .unwrap();
    std::os::unix::fs::symlink("real_keys", s.p("root/.ssh/authorized_keys2")).unwrap();
    let text = s.run(true);
    let (line, fix) = finding(
        &text,
        "FAIL  keys file: /root/.ssh/authorized_keys2 is a symlink",
    );
    assert!(!line.is_empty());
    assert_eq!(fix, "cp --remove-destination \"$(readlink -f /root/.ssh/authorized_keys2)\" /root/.ssh/authorized_keys2");
}

#[test]
fn an_unrestricted_duplicate_of_the_support_key() {
    let s = Sandbox::new(BASE);
    let mut text = fs::read_to_string(s.p("root/.ssh/authorized_keys2")).unwrap();
    text.push_str(&support_pub());
    s.write("root/.ssh/authorized_keys2", &text, 0o600);
    let out = s.run(true);
    let (line, fix) = finding(
        &out,
        "FAIL  support key: line 3 of /root/.ssh/authorized_keys2",
    );
    assert!(line.contains("without a from= restriction"), "{line}");
    assert_eq!(fix, "sed -i '3s/^/# /' /root/.ssh/authorized_keys2");
    // The fix, applied, clears it.
    let path = s.p("root/.ssh/authorized_keys2");
    let st = Command::new("sed")
        .arg("-i")
        .arg("3s/^/# /")
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(!s.run(false).contains("FAIL"));
}

/// The tool's own line, as `grant` writes it: from= and expiry-time, the marker in the comment.
fn tool_line(from: &str, expiry: &str) -> String {
    let key = support_pub();
    let mut f = key.split_whitespace();
    let (alg, blob) = (f.next().unwrap(), f.next().unwrap());
    format!("from=\"{from}\",expiry-time=\"{expiry}\" {alg} {blob} support ovh-access\n")
}

#[test]
fn an_expired_grant() {
    let s = Sandbox::new(BASE);
    s.write(
        "root/.ssh/authorized_keys2",
        &tool_line(ADDR, "20200101"),
        0o600,
    );
    let text = s.run(true);
    let (line, fix) = finding(
        &text,
        "FAIL  expiry-time: line 1 of /root/.ssh/authorized_keys2",
    );
    assert!(line.contains("expiry-time 20200101 has passed"), "{line}");
    assert!(
        fix.starts_with("ovh-access revoke, then ovh-access grant --host cache-ng.ovh.net"),
        "{fix}"
    );
    s.write(
        "root/.ssh/authorized_keys2",
        &tool_line(ADDR, "29991231"),
        0o600,
    );
    let text = s.run(false);
    assert!(
        text.contains("PASS  expiry-time: line 1: expiry-time 29991231 is in the future"),
        "{text}"
    );
}

#[test]
fn from_lacks_the_address_the_support_uses_now() {
    let s = Sandbox::new(BASE);
    s.write(
        "root/.ssh/authorized_keys2",
        &tool_line("198.51.100.99", "29991231"),
        0o600,
    );
    let text = s.run(true);
    let (line, fix) = finding(&text, "FAIL  from=: line 1 of /root/.ssh/authorized_keys2");
    assert!(line.contains(&format!("from= lacks {ADDR}")), "{line}");
    assert_eq!(fix, "ovh-access refresh");
}

/// doctor reads and never writes: the sandbox is byte-for-byte and mode-for-mode the same
/// afterwards (no state file, no lock, no keys file rewritten), however many checks fail.
#[test]
fn doctor_changes_nothing_in_the_root() {
    fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let bytes = if m.is_file() {
                    fs::read(&p).unwrap()
                } else {
                    Vec::new()
                };
                if m.is_dir() {
                    todo.push(p.clone());
                }
                out.push((p, m.permissions().mode(), bytes));
            }
        }
        out.sort();
        out
    }
    let s = Sandbox::new(&format!(
        "{BASE}Match Address {ADDR}\n    PermitRootLogin no\n"
    ));
    fs::set_permissions(s.p("root/.ssh"), fs::Permissions::from_mode(0o777)).unwrap();
    let before = snapshot(s.dir.path());
    s.run(true);
    s.doctor(true);
    assert_eq!(snapshot(s.dir.path()), before);
}
