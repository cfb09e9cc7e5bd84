//! Issue 5 against a real sshd: ports from both `Port` and `ListenAddress host:port`, found by
//! `grant` without `--port`, all opened, each reached by a real login from the support host, and
//! told to the operator.
use std::collections::BTreeSet;

use crate::common::*;
use crate::topology::*;

/// `Port` lines accumulate (2222 from the harness, 2200 here) and apply to the bare
/// `ListenAddress` lines; a `ListenAddress host:port` listens on that port only, on that address.
const EXTRA: &str = "Port 2200\n\
                     ListenAddress 0.0.0.0\n\
                     ListenAddress ::\n\
                     ListenAddress 198.51.100.1:2022\n\
                     ListenAddress [2001:db8:1::1]:2023\n";

/// Where this sshd listens, as seen from the support link.
const SUPPORT_SIDE: [(&str, u16); 6] = [
    (SRV_SUP_V4, 2222),
    (SRV_SUP_V4, 2200),
    (SRV_SUP_V4, 2022),
    (SRV_SUP_V6, 2222),
    (SRV_SUP_V6, 2200),
    (SRV_SUP_V6, 2023),
];
/// Where the stranger could reach it (the host:port listeners are on the support link only).
const STRANGER_SIDE: [(&str, u16); 4] = [
    (SRV_STR_V4, 2222),
    (SRV_STR_V4, 2200),
    (SRV_STR_V6, 2222),
    (SRV_STR_V6, 2200),
];
const ALL_PORTS: [u16; 4] = [2022, 2023, 2200, 2222];

/// The (address, port) pairs `from` opens a TCP connection to, checked in parallel.
fn open_pairs<'a>(from: &Netns, pairs: &[(&'a str, u16)]) -> Vec<(&'a str, u16)> {
    std::thread::scope(|s| {
        let checks: Vec<_> = pairs
            .iter()
            .map(|&(a, p)| s.spawn(move || tcp_connects(from, a, p).then_some((a, p))))
            .collect();
        checks
            .into_iter()
            .filter_map(|c| c.join().unwrap())
            .collect()
    })
}

#[test]
fn ports_from_port_and_listenaddress_all_opened() {
    if !can_run("ports_from_port_and_listenaddress_all_opened") {
        return;
    }
    let t = Topology::new(Opts {
        extra_sshd_config: EXTRA.into(),
        ..Opts::default()
    });
    // The harness waits for the first listener only; sshd binds the others in the same loop.
    let listening = wait_until(std::time::Duration::from_secs(10), || {
        open_pairs(&t.srv, &SUPPORT_SIDE).len() == SUPPORT_SIDE.len()
    });
    assert!(listening, "sshd does not listen everywhere:\n{}", t.logs());
    let before = t.srv.ruleset();
    assert_eq!(
        open_pairs(&t.sup, &SUPPORT_SIDE),
        vec![],
        "the support host reached sshd before the grant"
    );

    // No --port: the tool finds every port in sshd_config and says which to tell the support.
    let out = t.tool_ok(t.grant_args(&[]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for p in ALL_PORTS {
        assert!(
            stdout.contains(&format!("Tell the support team your SSH port: {p}\n")),
            "grant does not tell port {p}:\n{}",
            describe(&out)
        );
    }
    assert!(
        !stdout.contains("your SSH port: 22\n"),
        "port 22 is not sshd's here:\n{stdout}"
    );

    // A real login from the support host on every address and port sshd listens on.
    for (addr, port) in SUPPORT_SIDE {
        t.assert_login_with(&t.sup, &[], addr, port);
    }
    assert_eq!(
        open_pairs(&t.stranger, &STRANGER_SIDE),
        vec![],
        "the stranger reached sshd"
    );

    // The JSON of the same grant, run again (idempotent), lists the ports.
    let out = t.tool_ok(t.grant_args(&["--json"]));
    let j = json_of(&out);
    let ports: BTreeSet<u64> = j["ports"]
        .as_array()
        .unwrap_or_else(|| panic!("no ports array:\n{}", describe(&out)))
        .iter()
        .map(|p| p.as_u64().expect("a port number"))
        .collect();
    assert_eq!(
        ports,
        ALL_PORTS.iter().map(|p| u64::from(*p)).collect(),
        "{}",
        describe(&out)
    );
    assert_eq!(
        j["keys_file_changed"], false,
        "a second identical grant rewrote the keys file"
    );

    t.tool_ok(["revoke"]);
    assert_eq!(
        open_pairs(&t.sup, &SUPPORT_SIDE),
        vec![],
        "the support host still reaches sshd after revoke"
    );
    assert_eq!(t.srv.ruleset(), before, "revoke left the ruleset changed");
}
