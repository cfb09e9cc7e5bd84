//! The foundation scenario: grant → ssh login from the support host → revoke; and the harness it
//! runs on (topology.rs), checked on its own with the firewall and keys file changed by hand.
use std::net::IpAddr;
use std::process::Output;

use crate::common::*;
use crate::topology::*;

/// ssh from `from` logs in as root and runs a command.
fn assert_login(t: &Topology, from: &Netns, addr: &str) {
    let out = t.ssh(from, addr, t.port, "echo ok; id -u; hostname");
    let expected = format!("ok\n0\n{SERVER_HOSTNAME}\n");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout) == expected,
        "ssh root@{addr} from {} should log in:\n{}",
        from.name,
        describe(&out)
    );
}

/// ssh from `from` is refused (firewall or sshd); its output is returned for finer checks.
fn assert_no_login(t: &Topology, from: &Netns, addr: &str) -> Output {
    let out = t.ssh(from, addr, t.port, "echo ok");
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "ssh root@{addr} from {} should fail:\n{}",
        from.name,
        describe(&out)
    );
    out
}

/// None of `addrs` accepts a TCP connection from `from` on `port`.
fn assert_unreachable(from: &Netns, addrs: &[&str], port: u16, what: &str) {
    let open = reachable(from, addrs, port);
    assert!(
        open.is_empty(),
        "{what} {open:?} (port {port}, from {})",
        from.name
    );
}

/// Every address of the server the stranger and the support host could aim at.
fn server_addrs() -> [&'static str; 4] {
    [SRV_SUP_V4, SRV_SUP_V6, SRV_STR_V4, SRV_STR_V6]
}

#[test]
fn namespaces_are_unique_and_cleaned_up() {
    if !can_run("namespaces_are_unique_and_cleaned_up") {
        return;
    }
    let (na, nb, mut sleeper);
    {
        let a = Netns::new("oa-t");
        let b = Netns::new("oa-t");
        assert_ne!(a.name, b.name);
        a.link("va", &b, "vb", &["192.0.2.1/24"], &["192.0.2.2/24"]);
        // A process left running must not keep the namespace alive.
        sleeper = a.cmd("sleep").arg("30").spawn().unwrap();
        na = a.name.clone();
        nb = b.name.clone();
    }
    let list = run(std::process::Command::new("ip").args(["netns", "list"]));
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.contains(&na) && !list.contains(&nb),
        "left behind: {list}"
    );
    use std::os::unix::process::ExitStatusExt;
    let status = sleeper.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the guard killed it");
}

#[test]
fn harness_dnsmasq_answers_both_support_hosts() {
    if !can_run("harness_dnsmasq_answers_both_support_hosts") {
        return;
    }
    let t = Topology::new(Opts::default());
    let sup4: IpAddr = SUP_V4.parse().unwrap();
    let sup6: IpAddr = SUP_V6.parse().unwrap();
    for server in [DNS_V4, DNS_V6] {
        let server: IpAddr = server.parse().unwrap();
        for host in SUPPORT_HOSTS {
            assert_eq!(
                t.query(server, host, false).unwrap(),
                vec![sup4],
                "{host} A via {server}"
            );
            assert_eq!(
                t.query(server, host, true).unwrap(),
                vec![sup6],
                "{host} AAAA via {server}"
            );
        }
        // Only the support names: anything else is not answered with an address.
        let other = t.query(server, "stranger.example", false);
        assert!(
            other.map(|a| a.is_empty()).unwrap_or(true),
            "{server} answered a foreign name"
        );
    }
}

#[test]
fn harness_hand_grant_lets_only_the_support_in() {
    if !can_run("harness_hand_grant_lets_only_the_support_in") {
        return;
    }
    let t = Topology::new(Opts::default());
    let port = t.port;
    let key = t.support_pub_line();

    // Default deny: nobody reaches sshd's port, not even with the key in place.
    t.write_keys(&format!("from=\"{SUP_V4},{SUP_V6}\" {key}\n"));
    assert_unreachable(
        &t.sup,
        &[SRV_SUP_V4, SRV_SUP_V6],
        port,
        "support reached before the grant",
    );

    // Opened by hand, exactly as the tool must: the support's addresses, sshd's port, inside the
    // user's own input chain (an accept elsewhere would not survive this chain's policy drop).
    t.srv.sh(&format!(
        "nft insert rule inet filter input ip saddr {SUP_V4} tcp dport {port} accept && \
         nft insert rule inet filter input ip6 saddr {SUP_V6} tcp dport {port} accept"
    ));
    let both = [SRV_SUP_V4, SRV_SUP_V6];
    assert_eq!(reachable(&t.sup, &both, port), both, "support link open");
    assert_login(&t, &t.sup, SRV_SUP_V4);
    assert_login(&t, &t.sup, SRV_SUP_V6);
    assert_unreachable(&t.stranger, &server_addrs(), port, "the stranger reached");

    // The same key restricted to another address: sshd refuses it (auth_authorise_keyopts).
    t.write_keys(&format!("from=\"{STR_V4},{STR_V6}\" {key}\n"));
    assert!(
        tcp_connects(&t.sup, SRV_SUP_V4, port),
        "the firewall is still open"
    );
    for addr in [SRV_SUP_V4, SRV_SUP_V6] {
        let out = assert_no_login(&t, &t.sup, addr);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "sshd, not the network, must refuse:\n{}",
            describe(&out)
        );
    }
    let logs = t.logs();
    assert!(
        logs.contains("not from a permitted host"),
        "sshd must cite from=:\n{logs}"
    );
    // And commented out, as revoke leaves it: refused too.
    t.write_keys(&format!("# from=\"{SUP_V4},{SUP_V6}\" {key}\n"));
    assert_no_login(&t, &t.sup, SRV_SUP_V4);
}

#[test]
fn harness_teardown_leaves_nothing_also_on_panic() {
    if !can_run("harness_teardown_leaves_nothing_also_on_panic") {
        return;
    }
    let assert_gone = |names: &[String], pids: &[u32], sandbox: &std::path::Path| {
        let list = run(std::process::Command::new("ip").args(["netns", "list"]));
        let list = String::from_utf8_lossy(&list.stdout).to_string();
        for n in names {
            assert!(
                !list.contains(n.as_str()),
                "namespace {n} left behind: {list}"
            );
        }
        for pid in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "process {pid} left behind"
            );
        }
        assert!(
            !sandbox.exists(),
            "sandbox {} left behind",
            sandbox.display()
        );
    };

    let t = Topology::new(Opts::default());
    let (names, pids, sandbox) = (t.netns_names(), t.daemon_pids(), t.sandbox().to_path_buf());
    assert_eq!(pids.len(), 2, "sshd and dnsmasq");
    for pid in &pids {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    drop(t);
    assert_gone(&names, &pids, &sandbox);

    // A test that fails half-way must clean up just the same (Drop runs while unwinding).
    let seen = std::sync::Mutex::new(None);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = Topology::new(Opts::default());
        *seen.lock().unwrap() = Some((t.netns_names(), t.daemon_pids(), t.sandbox().to_path_buf()));
        panic!("deliberate failure inside a test");
    }));
    assert!(caught.is_err());
    let (names, pids, sandbox) = seen.into_inner().unwrap().expect("topology was built");
    assert_gone(&names, &pids, &sandbox);
}

// ---------------------------------------------------------------------------------------------
// THE FOUNDATION SCENARIO (issue 3), against the CLI contract of src/cli.rs. It needs the
// binary's grant and revoke; until they are wired in, it fails at the first login after grant.
// ---------------------------------------------------------------------------------------------
#[test]
fn scenario_grant_ssh_login_revoke() {
    if !can_run("scenario_grant_ssh_login_revoke") {
        return;
    }
    let t = Topology::new(Opts::default());
    let port = t.port;
    let before = t.srv.ruleset();

    // Before grant: the support host cannot even connect.
    assert_unreachable(
        &t.sup,
        &[SRV_SUP_V4, SRV_SUP_V6],
        port,
        "support reached before grant",
    );

    let out = t.tool_ok(t.grant_args(&[]));
    eprintln!("grant:\n{}", describe(&out));

    // After grant: root login over IPv4 and IPv6 from the support host, nothing for the stranger.
    assert_login(&t, &t.sup, SRV_SUP_V4);
    assert_login(&t, &t.sup, SRV_SUP_V6);
    assert_unreachable(&t.stranger, &server_addrs(), port, "the stranger reached");

    let out = t.tool_ok(["revoke"]);
    eprintln!("revoke:\n{}", describe(&out));

    // After revoke: closed again, the key line commented out, the ruleset as it was.
    assert_unreachable(
        &t.sup,
        &[SRV_SUP_V4, SRV_SUP_V6],
        port,
        "support still reaches",
    );
    for addr in [SRV_SUP_V4, SRV_SUP_V6] {
        assert_no_login(&t, &t.sup, addr);
    }
    let keys = t.keys_text();
    let blob = t.support_blob();
    let lines: Vec<&str> = keys.lines().filter(|l| l.contains(&blob)).collect();
    assert!(
        !lines.is_empty(),
        "the key line is gone, expected it commented out:\n{keys}"
    );
    for line in lines {
        assert!(
            line.trim_start().starts_with('#'),
            "key still active: {line}"
        );
    }
    assert_eq!(
        t.srv.ruleset(),
        before,
        "revoke must leave the ruleset as it was before grant"
    );
}

#[test]
fn scenario_grant_dry_run_changes_nothing() {
    if !can_run("scenario_grant_dry_run_changes_nothing") {
        return;
    }
    let t = Topology::new(Opts::default());
    let before = t.srv.ruleset();
    let keys_before = std::fs::read(t.keys_file()).ok();

    let out = t.tool_ok(t.grant_args(&["--dry-run"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.trim().is_empty(),
        "dry run printed no plan:\n{}",
        describe(&out)
    );
    assert!(
        stdout.contains(&t.port.to_string()),
        "plan lacks port {}:\n{stdout}",
        t.port
    );
    assert!(
        stdout.contains(SUP_V4),
        "plan lacks the support address {SUP_V4}:\n{stdout}"
    );
    let fp = t.support_fingerprint();
    assert!(
        stdout.contains(&fp),
        "plan lacks the key fingerprint {fp}:\n{stdout}"
    );

    assert_eq!(t.srv.ruleset(), before, "a dry run changed the firewall");
    assert_eq!(
        std::fs::read(t.keys_file()).ok(),
        keys_before,
        "a dry run changed the keys file"
    );
    assert!(
        !tcp_connects(&t.sup, SRV_SUP_V4, t.port),
        "a dry run opened the port"
    );
}
