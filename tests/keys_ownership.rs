//! Hostile keys files, through the binary: a line is the tool's only when its own key is a
//! support key and the marker is in its comment; lines are judged as sshd judges them
//! (auth2-pubkeyfile.c, auth-options.c, match.c); options an administrator added to the tool's
//! line survive a re-grant. Root only: each run gets an empty firewall of its own (`unshare
//! --net`) and the grant leaves the firewall alone (`--firewall none`).
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

mod common;
use common::{can_unshare_net, describe, Tree};

const ADMIN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA";
const KEYS: &str = "root/.ssh/authorized_keys2";
const GRANT: &[&str] = &["grant", "--region", "eu", "--no-dns", "--firewall", "none"];

fn sandbox(keys: &str) -> Tree {
    let s = Tree::empty();
    s.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644);
    s.write("etc/ssh/sshd_config", "Port 2222\n", 0o644);
    fs::create_dir_all(s.p("root/.ssh")).unwrap();
    fs::set_permissions(s.p("root"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(s.p("root/.ssh"), fs::Permissions::from_mode(0o700)).unwrap();
    s.write(KEYS, keys, 0o600);
    s
}

fn tool(s: &Tree, args: &[&str]) -> Output {
    s.tool(args)
}

fn ok(s: &Tree, args: &[&str]) -> Output {
    let out = tool(s, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
    out
}

/// The built-in EU support key: `ssh-rsa BLOB`.
fn eu_key() -> String {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ovh-eu.pub")).unwrap();
    let mut it = text.split_whitespace();
    format!("{} {}", it.next().unwrap(), it.next().unwrap())
}

fn eu_blob() -> String {
    eu_key().split_whitespace().nth(1).unwrap().to_string()
}

fn can_run(name: &str) -> bool {
    let ok = can_unshare_net();
    if !ok {
        eprintln!("SKIP {name}: needs root (run `cargo test --test keys_ownership` as root)");
    }
    ok
}

/// The active lines carrying the support key.
fn active_support_lines(s: &Tree) -> Vec<String> {
    s.read(KEYS)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains(&eu_blob()))
        .map(str::to_string)
        .collect()
}

#[test]
fn an_administrators_line_called_ovh_access_is_never_touched() {
    if !can_run("an_administrators_line_called_ovh_access_is_never_touched") {
        return;
    }
    let admin = format!("{ADMIN} admin@laptop ovh-access");
    let s = sandbox(&format!("{admin}\n"));
    ok(&s, GRANT);
    assert_eq!(s.read(KEYS).lines().next(), Some(admin.as_str()), "grant");
    assert_eq!(active_support_lines(&s).len(), 1);
    ok(&s, &["revoke"]);
    assert_eq!(s.read(KEYS).lines().next(), Some(admin.as_str()), "revoke");
    ok(&s, GRANT);
    ok(&s, &["revoke", "--remove"]);
    assert_eq!(s.read(KEYS), format!("{admin}\n"), "revoke --remove");
}

#[test]
fn a_command_quoting_the_support_key_does_not_make_the_line_the_supports() {
    if !can_run("a_command_quoting_the_support_key_does_not_make_the_line_the_supports") {
        return;
    }
    let admin = format!(
        "command=\"grep -q '{}' /etc/trusted && exec $SHELL\" {ADMIN} admin@laptop",
        eu_blob()
    );
    let s = sandbox(&format!("{admin}\n"));
    ok(&s, GRANT);
    ok(&s, &["revoke"]);
    assert_eq!(s.read(KEYS).lines().next(), Some(admin.as_str()));
    ok(&s, GRANT);
    ok(&s, &["revoke", "--remove"]);
    assert_eq!(s.read(KEYS), format!("{admin}\n"));
}

#[test]
fn cert_authority_and_empty_from_lines_do_not_admit_the_plain_key() {
    if !can_run("cert_authority_and_empty_from_lines_do_not_admit_the_plain_key") {
        return;
    }
    // sshd skips a cert-authority line for a plain key, and refuses from="" (an empty entry:
    // addr_match_list returns -2) for every address: neither lets the support in.
    let lines = format!(
        "cert-authority {} ca@example\nfrom=\"\" {} nowhere\nfrom=\"192.0.2.1,\" {} broken\n",
        eu_key(),
        eu_key(),
        eu_key()
    );
    let s = sandbox(&lines);
    let out = ok(&s, GRANT);
    let text = s.read(KEYS);
    assert!(text.starts_with(&lines), "{}\n{text}", describe(&out));
    assert_eq!(
        active_support_lines(&s).len(),
        4,
        "the three lines stay, the tool's is added:\n{text}"
    );
}

#[test]
fn a_from_covering_every_address_without_a_wildcard_is_unrestricted() {
    if !can_run("a_from_covering_every_address_without_a_wildcard_is_unrestricted") {
        return;
    }
    for from in [
        "0.0.0.0/1,128.0.0.0/1,::/1,8000::/1",
        "0.0.0.0/1,128.0.0.0/1",
        "*.*.*.*",
    ] {
        let line = format!("from=\"{from}\" {} pasted\n", eu_key());
        let s = sandbox(&line);
        let out = tool(&s, GRANT);
        assert_eq!(out.status.code(), Some(2), "{from}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("line 1"),
            "{from}: {}",
            describe(&out)
        );
        assert_eq!(s.read(KEYS), line, "{from}: the file must not change");
    }
}

#[test]
fn options_an_administrator_added_to_the_tools_line_survive_a_regrant() {
    if !can_run("options_an_administrator_added_to_the_tools_line_survive_a_regrant") {
        return;
    }
    let s = sandbox("");
    ok(&s, GRANT);
    let line = active_support_lines(&s).remove(0);
    let (opts, rest) = line.split_once(' ').unwrap();
    let edited = format!("no-port-forwarding,{opts},command=\"/usr/bin/true \\\"x\\\"\" {rest}");
    fs::write(s.p(KEYS), format!("{edited}\n")).unwrap();
    ok(
        &s,
        &[
            "grant",
            "--region",
            "eu",
            "--no-dns",
            "--firewall",
            "none",
            "--for",
            "2h",
        ],
    );
    let now = active_support_lines(&s);
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(
        now[0].contains("no-port-forwarding")
            && now[0].contains("command=\"/usr/bin/true \\\"x\\\"\"")
            && now[0].contains("expiry-time="),
        "{}",
        now[0]
    );
    // A revoke and a re-grant keep them too.
    ok(&s, &["revoke"]);
    ok(&s, GRANT);
    assert!(active_support_lines(&s)[0].contains("no-port-forwarding"));
}
