use super::*;

#[test]
#[cfg(target_endian = "little")]
fn a_v4_client_of_a_dual_stack_socket_is_named_by_its_v4_address() {
    // ::ffff:198.51.100.10 → 198.51.100.10; the listener (0A) is not a session.
    let t = "header\n   0: 0000000000000000FFFF00000A6433C6:08AE 0000000000000000FFFF00000A6433C6:D431 01 0:0 0:0 0 0 0 4444 1\n   1: 00000000000000000000000000000000:08AE 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 5555 1\n";
    let c = conns_of(t);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].remote, "198.51.100.10".parse::<IpAddr>().unwrap());
    assert_eq!((c[0].local_port, c[0].inode), (2222, 4444));
}

#[test]
fn parses_v4_and_v6_established_on_any_port() {
    let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0\n\
   1: 010011AC:08AE 0A6433C6:D431 01 00000000:00000000 02:0009F4D5 00000000     0        0 2222 2 0 20 4 30 10 -1\n";
    let c = conns_of(v4);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].local_port, 2222);
    assert_eq!(c[0].remote, "198.51.100.10".parse::<IpAddr>().unwrap());
    assert_eq!(c[0].remote_port, 0xD431);
    assert_eq!(c[0].inode, 2222);
    if cfg!(target_endian = "little") {
        // 2001:db8:1::10 as the kernel prints it: four words, each the host-order u32 in hex.
        let v6 = "header\n   0: 00000000000000000000000000000000:0016 B80D0120000001000000000010000000:C350 01 0:0 0:0 0 0 0 3333 1\n";
        let c = conns_of(v6);
        assert_eq!(c[0].remote, "2001:db8:1::10".parse::<IpAddr>().unwrap());
        assert_eq!(c[0].local_port, 22);
        assert_eq!(
            support_connections(&c, &["2001:db8:1::10".parse().unwrap()]).len(),
            1
        );
        assert!(support_connections(&c, &["2001:db8:1::11".parse().unwrap()]).is_empty());
    }
}

#[test]
fn proc_files() {
    assert_eq!(
        parse_stat("77 (a) b) S 12 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 998877 0 0"),
        Some((12, 998877))
    );
    assert_eq!(
        parse_cgroup("0::/user.slice/user-0.slice/session-4.scope\n"),
        "/user.slice/user-0.slice/session-4.scope"
    );
    assert_eq!(
        parse_cgroup("12:pids:/\n1:name=systemd:/system.slice/ssh.service\n"),
        "/system.slice/ssh.service"
    );
    let env = b"PATH=/bin\0SSH_CONNECTION=198.51.100.2 50000 198.51.100.1 2222\0HOME=/root\0";
    assert_eq!(
        ssh_client_of_environ(env),
        Some("198.51.100.2".parse().unwrap())
    );
    assert_eq!(
        ssh_client_of_environ(b"SSH_CONNECTION=::ffff:198.51.100.2 1 ::1 22\0"),
        Some("198.51.100.2".parse().unwrap())
    );
    assert_eq!(ssh_client_of_environ(b"PATH=/bin\0"), None);
}

const SUP: &str = "198.51.100.2";

fn p(pid: u32, ppid: u32, comm: &str, session: u32, cgroup: &str) -> Proc {
    Proc {
        pid,
        ppid,
        comm: comm.into(),
        cmdline: comm.into(),
        session: Some(session),
        cgroup: cgroup.into(),
        ..Proc::default()
    }
}

/// init, the listening sshd (started from the administrator's session 3), the tool (also in
/// session 3), the administrator's own login (session 5), and the support's login (session 9)
/// with a live no-tty command, a setsid'd daemon reparented to init, and a process that cleared
/// its environment.
fn world() -> (Vec<Proc>, Vec<Conn>) {
    let sup: IpAddr = SUP.parse().unwrap();
    let admin_scope = "/user.slice/user-0.slice/session-5.scope";
    let sup_scope = "/user.slice/user-0.slice/session-9.scope";
    let mut procs = vec![
        p(1, 0, "systemd", SESSION_UNSET, "/init.scope"),
        p(100, 1, "sshd", 3, "/system.slice/ssh.service"),
        p(
            300,
            1,
            "bash",
            3,
            "/user.slice/user-0.slice/session-3.scope",
        ),
        p(
            301,
            300,
            "ovh-access",
            3,
            "/user.slice/user-0.slice/session-3.scope",
        ),
        p(500, 100, "sshd", 5, admin_scope),
        p(501, 500, "bash", 5, admin_scope),
        p(900, 100, "sshd-session", 9, sup_scope),
        p(901, 900, "sshd-session", 9, sup_scope),
        p(902, 901, "sh", 9, sup_scope),
        p(903, 902, "sleep", 9, sup_scope),
        p(950, 1, "sleep", 9, sup_scope),
        p(951, 1, "env-cleared", 9, "/system.slice/other.scope"),
    ];
    procs[6].sockets = vec![4444];
    // The listener, between accept() and fork(), holds the support's connection too.
    procs[1].sockets = vec![22, 4444];
    procs[1].listening = true;
    procs[8].ssh_client = Some(sup);
    procs[9].ssh_client = Some(sup);
    procs[10].ssh_client = Some(sup);
    let conns = vec![Conn {
        local_port: 22,
        remote: sup,
        remote_port: 50000,
        inode: 4444,
    }];
    (procs, conns)
}

fn pids(sel: &[(u32, Why)]) -> Vec<u32> {
    sel.iter().map(|(p, _)| *p).collect()
}

#[test]
fn the_support_login_whole_and_nothing_else() {
    let (procs, conns) = world();
    let sup: IpAddr = SUP.parse().unwrap();
    let sel = select(&procs, &conns, &[sup], 301);
    assert_eq!(pids(&sel), [900, 901, 902, 903, 950, 951]);
    assert!(matches!(sel[0].1, Why::Connection { local_port: 22, .. }));
    assert_eq!(sel[1].1, Why::Descendant { of: 900 });
    assert_eq!(sel[5].1, Why::AuditSession { id: 9 });
}

#[test]
fn the_connection_gone_the_environment_still_names_the_support() {
    let (mut procs, _) = world();
    procs.retain(|p| ![900, 901, 902].contains(&p.pid));
    let sup: IpAddr = SUP.parse().unwrap();
    let sel = select(&procs, &[], &[sup], 301);
    assert_eq!(pids(&sel), [903, 950, 951]);
}

#[test]
fn a_session_shared_with_the_listener_or_the_tool_is_not_followed() {
    // Without pam_loginuid every login keeps the listening sshd's session (3, the
    // administrator's, which the tool runs in too): only the process tree may be ended.
    let (mut procs, conns) = world();
    for p in procs
        .iter_mut()
        .filter(|p| p.session == Some(9) || p.session == Some(5))
    {
        p.session = Some(3);
        p.cgroup = "/system.slice/ssh.service".into();
    }
    let sup: IpAddr = SUP.parse().unwrap();
    let sel = select(&procs, &conns, &[sup], 301);
    assert_eq!(pids(&sel), [900, 901, 902, 903, 950]);
    // A support process can never be the tool or its ancestors.
    procs[3].ssh_client = Some(sup);
    procs[2].ssh_client = Some(sup);
    let sel = select(&procs, &conns, &[sup], 301);
    assert!(!pids(&sel).contains(&301) && !pids(&sel).contains(&300));
}

#[test]
fn logind_scopes_without_audit() {
    let (mut procs, conns) = world();
    for p in procs.iter_mut() {
        p.session = None;
    }
    let sup: IpAddr = SUP.parse().unwrap();
    let sel = select(&procs, &conns, &[sup], 301);
    // 951 left the scope and cleared its environment: nothing ties it to the support.
    assert_eq!(pids(&sel), [900, 901, 902, 903, 950]);
    procs.push(p(
        960,
        1,
        "nohup",
        0,
        "/user.slice/user-0.slice/session-9.scope",
    ));
    procs.last_mut().unwrap().session = None;
    let sel = select(&procs, &conns, &[sup], 301);
    assert!(sel.contains(&(
        960,
        Why::LoginScope {
            cgroup: "/user.slice/user-0.slice/session-9.scope".into()
        }
    )));
}

#[test]
fn nobody_else_when_no_support_address_is_seen() {
    let (procs, conns) = world();
    let other: IpAddr = "203.0.113.2".parse().unwrap();
    let conns = support_connections(&conns, &[other]);
    assert!(select(&procs, &conns, &[other], 301).is_empty());
}

/// The established connections of the text of /proc/net/tcp or tcp6.
fn conns_of(text: &str) -> Vec<Conn> {
    connections(&crate::sockets::parse_tcp_table(text))
}
