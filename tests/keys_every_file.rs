//! sshd reads every file AuthorizedKeysFile lists (the default: authorized_keys, then
//! authorized_keys2) and takes the first line that passes in any of them. A support line without
//! from= in authorized_keys would let the support in from anywhere however carefully the tool
//! writes authorized_keys2: grant refuses it, `--replace-foreign` and revoke comment it out, status
//! reports it. Root only (each run gets an empty firewall of its own with `unshare --net`).
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

mod common;
use common::{can_unshare_net, describe, Tree};

const ADMIN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA admin@laptop";

type Sandbox = Tree;

impl Tree {
    fn new() -> Sandbox {
        let s = Tree::empty();
        s.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644);
        s.write("etc/ssh/sshd_config", "Port 2222\n", 0o644);
        fs::create_dir_all(s.p("root/.ssh")).unwrap();
        fs::set_permissions(s.p("root"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(s.p("root/.ssh"), fs::Permissions::from_mode(0o700)).unwrap();
        // The administrator's file, with OVH's key pasted in without from= long ago.
        s.write(
            "root/.ssh/authorized_keys",
            &format!("{ADMIN}\n{}", support_pub()),
            0o600,
        );
        s
    }
}

fn support_pub() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ovh-eu.pub")).unwrap()
}

fn can_run(name: &str) -> bool {
    let ok = can_unshare_net();
    if !ok {
        eprintln!("SKIP {name}: needs root (run `cargo test --test keys_every_file` as root)");
    }
    ok
}

const GRANT: &[&str] = &["grant", "--region", "eu", "--no-dns", "--firewall", "none"];

#[test]
fn grant_refuses_an_unrestricted_support_line_in_another_keys_file() {
    if !can_run("grant_refuses_an_unrestricted_support_line_in_another_keys_file") {
        return;
    }
    let s = Sandbox::new();
    let before = s.read("root/.ssh/authorized_keys");
    let out = s.tool(GRANT);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("line 2 of /root/.ssh/authorized_keys ") && msg.contains("--replace-foreign"),
        "{msg}"
    );
    assert_eq!(s.read("root/.ssh/authorized_keys"), before);
    assert!(!s.p("root/.ssh/authorized_keys2").exists());
    assert!(!s.p("var/lib/ovh-access/state.json").exists());
}

#[test]
fn replace_foreign_and_revoke_disable_it_and_status_reports_it() {
    if !can_run("replace_foreign_and_revoke_disable_it_and_status_reports_it") {
        return;
    }
    let s = Sandbox::new();
    let mut args = GRANT.to_vec();
    args.push("--replace-foreign");
    let out = s.tool(&args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let other = s.read("root/.ssh/authorized_keys");
    let lines: Vec<&str> = other.lines().collect();
    assert_eq!(lines[0], ADMIN, "the administrator's own key is untouched");
    assert!(lines[1].starts_with("#ssh-rsa "), "{other}");
    assert!(s
        .read("root/.ssh/authorized_keys2")
        .starts_with("from=\"178.33.222.162,"));

    // Someone pastes it back: status sees it, revoke takes it away again.
    fs::write(
        s.p("root/.ssh/authorized_keys"),
        format!("{ADMIN}\n{}", support_pub()),
    )
    .unwrap();
    let st = s.tool(&["status"]);
    assert_eq!(st.status.code(), Some(1), "{}", describe(&st));
    assert!(
        describe(&st).contains("line 2 of /root/.ssh/authorized_keys carries the support key"),
        "{}",
        describe(&st)
    );
    let out = s.tool(&["revoke"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let other = s.read("root/.ssh/authorized_keys");
    assert!(other.lines().nth(1).unwrap().starts_with('#'), "{other}");
    assert_eq!(other.lines().next().unwrap(), ADMIN);
    assert!(s.read("root/.ssh/authorized_keys2").starts_with('#'));
}
