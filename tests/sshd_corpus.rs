//! The sshd_config corpus (tests/sshd-corpus/<case>/ is a sandbox root per case): what the
//! parser finds in real-world shapes, and its agreement with the real `sshd -T` on every case
//! the real sshd accepts.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ovh_access::root::Root;
use ovh_access::sshd::{
    self, eval, keys_file, probe, support_connection, test_mode, Config, Effective,
    PermitRootLogin, SshdFacts, UseDns,
};

const ADDRS: &[&str] = &[
    "192.0.2.10",
    "192.0.2.99",
    "198.51.100.7",
    "203.0.113.5",
    "2001:db8::10",
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sshd-corpus")
}

fn root(case: &str) -> Root {
    Root::new(&corpus().join(case)).unwrap()
}

fn addrs() -> Vec<IpAddr> {
    ADDRS.iter().map(|a| a.parse().unwrap()).collect()
}

fn facts(case: &str) -> SshdFacts {
    probe(&root(case), &addrs(), "cache-ng.ovh.net").unwrap_or_else(|e| panic!("{case}: {e:#}"))
}

fn eff<'a>(f: &'a SshdFacts, addr: &str) -> &'a Effective {
    let a: IpAddr = addr.parse().unwrap();
    &f.per_address.iter().find(|(x, _)| *x == a).unwrap().1
}

fn src(e: &Option<sshd::Source>) -> String {
    e.as_ref().map(|s| s.to_string()).unwrap_or_default()
}

#[test]
fn debian12_default_with_its_include() {
    let f = facts("debian12");
    assert_eq!(f.ports, [22]);
    let e = eff(&f, "192.0.2.10");
    assert_eq!(e.permit_root_login.value, PermitRootLogin::ProhibitPassword);
    assert!(e.permit_root_login.source.is_none());
    assert!(e.use_pam.value);
    assert_eq!(src(&e.use_pam.source), "/etc/ssh/sshd_config:85");
    // The shipped but disabled ssh.socket does not count.
    assert!(
        !f.warnings.iter().any(|w| w.contains("ssh.socket")),
        "{:?}",
        f.warnings
    );
    let (p, note) = keys_file(e, "root", 0, Path::new("/root"));
    assert_eq!(
        (p, note),
        (PathBuf::from("/root/.ssh/authorized_keys2"), None)
    );
    let cfg = Config::load(&root("debian12")).unwrap();
    let mut files = Vec::new();
    cfg.main
        .as_ref()
        .unwrap()
        .walk(&mut |file, _| files.push(file.path.clone()));
    assert!(files.contains(&PathBuf::from("/etc/ssh/sshd_config.d/50-cloud-init.conf")));
}

#[test]
fn ubuntu2404_socket_unit_overrides_the_config() {
    let f = facts("ubuntu2404");
    assert_eq!(f.ports, [22, 2222]);
    assert!(
        f.warnings
            .iter()
            .any(|w| w.contains("ssh.socket") && w.contains("2222")),
        "{:?}",
        f.warnings
    );
    let unit = sshd::socket::read_unit(&root("ubuntu2404"), "ssh.socket").unwrap();
    assert!(unit.enabled);
    assert_eq!(unit.listen.len(), 1);
    assert_eq!(
        src(&unit.listen[0].source),
        "/etc/systemd/system/ssh.socket.d/listen.conf:4"
    );
}

#[test]
fn rhel9_crypto_policy_include_and_keys_file() {
    let f = facts("rhel9");
    assert_eq!(f.ports, [22]);
    let e = eff(&f, "203.0.113.5");
    assert_eq!(e.permit_root_login.value, PermitRootLogin::Yes);
    assert_eq!(
        src(&e.permit_root_login.source),
        "/etc/ssh/sshd_config.d/01-permitrootlogin.conf:2"
    );
    assert_eq!(
        src(&e.use_pam.source),
        "/etc/ssh/sshd_config.d/50-redhat.conf:15"
    );
    let (p, note) = keys_file(e, "root", 0, Path::new("/root"));
    assert_eq!(p, Path::new("/root/.ssh/authorized_keys"));
    assert!(note.unwrap().contains("/etc/ssh/sshd_config:49"));
    let cfg = Config::load(&root("rhel9")).unwrap();
    let mut n = 0;
    cfg.main.as_ref().unwrap().walk(&mut |file, _| {
        if file.path == Path::new("/etc/crypto-policies/back-ends/opensshserver.config") {
            n += 1;
        }
    });
    assert_eq!(n, 6);
}

#[test]
fn upstream_sample_has_no_authorized_keys2_and_no_port() {
    let f = facts("upstream");
    assert_eq!(f.ports, [22]);
    assert!(
        f.warnings.iter().any(|w| w.contains("no Port")),
        "{:?}",
        f.warnings
    );
    let (p, note) = keys_file(eff(&f, "192.0.2.10"), "root", 0, Path::new("/root"));
    assert_eq!(p, Path::new("/root/.ssh/authorized_keys"));
    assert!(note.unwrap().contains("does not list authorized_keys2"));
}

#[test]
fn cis_hardened() {
    let f = facts("cis");
    assert_eq!(f.ports, [2222]);
    let e = eff(&f, "192.0.2.10");
    assert_eq!(e.permit_root_login.value, PermitRootLogin::No);
    assert_eq!(e.allow_groups.value, ["sshusers", "admins"]);
    assert_eq!(e.deny_users.value, ["nobody", "guest"]);
    assert_eq!(e.deny_groups.value, ["nogroup"]);
    assert_eq!(e.authentication_methods.value, ["publickey"]);
    // The Include of an empty sshd_config.d is reported, not fatal.
    assert!(f.warnings.iter().any(|w| w.contains("matches no file")));
}

#[test]
fn several_port_lines_accumulate() {
    let f = facts("multiport");
    assert_eq!(f.ports, [22, 2222, 40022]);
    // AddressFamily inet: the wildcard is IPv4 only.
    assert!(f
        .listen
        .iter()
        .all(|l| l.addr == Some("0.0.0.0".parse().unwrap())));
    // `Port 2222` twice: one socket.
    assert_eq!(f.listen.len(), 3);
}

#[test]
fn listen_address_ports_replace_port() {
    let f = facts("listen-ports");
    assert_eq!(f.ports, [2200, 2201, 2222, 2223]);
    let mut got: Vec<String> = f
        .listen
        .iter()
        .map(|l| format!("{}/{}", l.addr.unwrap(), l.port))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "192.0.2.10/2222",
            "192.0.2.10/2223",
            "192.0.2.11/2200",
            "2001:db8::10/2201",
            "2001:db8::11/2222",
            "2001:db8::11/2223",
            "2001:db8::12/2222",
            "2001:db8::12/2223"
        ]
    );
}

#[test]
fn match_address_overrides_for_the_support_address() {
    let f = facts("match-address");
    let e = eff(&f, "192.0.2.10");
    assert_eq!(e.permit_root_login.value, PermitRootLogin::No);
    assert_eq!(src(&e.permit_root_login.source), "/etc/ssh/sshd_config:8");
    assert_eq!(e.allow_users.value, ["root"]);
    // Negated in the Match list: the global value stays.
    let e = eff(&f, "192.0.2.99");
    assert_eq!(e.permit_root_login.value, PermitRootLogin::ProhibitPassword);
    assert_eq!(e.allow_users.value.len(), 3);
    let e = eff(&f, "198.51.100.7");
    assert_eq!(
        e.permit_root_login.value,
        PermitRootLogin::ForcedCommandsOnly
    );
    let (p, note) = keys_file(e, "root", 0, Path::new("/root"));
    assert_eq!(p, Path::new("/etc/ssh/keys/root"));
    assert!(note.unwrap().contains("/etc/ssh/sshd_config:13"));
    assert_eq!(
        eff(&f, "203.0.113.5").authentication_methods.value,
        ["publickey,keyboard-interactive", "publickey,password"]
    );
    assert!(eff(&f, "2001:db8::10")
        .authentication_methods
        .value
        .is_empty());
}

#[test]
fn include_inside_match() {
    let f = facts("include-in-match");
    let e = eff(&f, "192.0.2.10");
    assert_eq!(
        e.permit_root_login.value,
        PermitRootLogin::ForcedCommandsOnly
    );
    assert_eq!(
        src(&e.permit_root_login.source),
        "/etc/ssh/match.d/10-support.conf:2"
    );
    assert_eq!(e.deny_users.value, ["guest"]);
    // The inner `Match User admin` ends at the end of its file: the next file and the lines
    // after the Include apply to the outer block again.
    assert_eq!(
        e.authorized_keys_files.value,
        ["/etc/ssh/authorized_keys/%u"]
    );
    assert_eq!(e.allow_users.value, ["root", "admin"]);
    let e = eff(&f, "198.51.100.7");
    assert_eq!(e.permit_root_login.value, PermitRootLogin::Yes);
    assert!(e.deny_users.value.is_empty());
    assert_eq!(e.allow_groups.value, ["root", "wheel"]);
}

#[test]
fn include_cycle_is_named() {
    let err = Config::load(&root("include-cycle"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cycle"), "{err}");
    assert!(
        err.contains("/etc/ssh/conf.d/a.conf -> /etc/ssh/conf.d/b.conf -> /etc/ssh/conf.d/a.conf"),
        "{err}"
    );
    assert!(err.contains("/etc/ssh/conf.d/b.conf line 2"), "{err}");
    let e = Config::load(&root("include-cycle")).unwrap_err();
    assert_eq!(ovh_access::error::exit_code(&e), 2);
}

#[test]
fn missing_include_is_a_warning() {
    let f = facts("missing-include");
    assert_eq!(f.ports, [22]);
    let n = f
        .warnings
        .iter()
        .filter(|w| w.contains("matches no file"))
        .count();
    assert_eq!(n, 2, "{:?}", f.warnings);
    assert!(f
        .warnings
        .iter()
        .any(|w| w.contains("Include /etc/ssh/missing.conf")));
}

#[test]
fn garbage_lines_are_refused_with_their_line_as_sshd_does() {
    // sshd -t: "Bad configuration option: this" (the agreement test checks sshd refuses it).
    let err = probe(&root("garbage"), &addrs(), "x").unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("/etc/ssh/sshd_config line 2") && msg.contains("'this'"),
        "{msg}"
    );
    assert_eq!(ovh_access::error::exit_code(&err), 2);
}

#[test]
fn malformed_port_is_an_error_with_file_and_line() {
    let err = probe(&root("malformed-port"), &addrs(), "x").unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("/etc/ssh/sshd_config line 3") && msg.contains("220022"),
        "{msg}"
    );
    assert_eq!(ovh_access::error::exit_code(&err), 2);
}

#[test]
fn syntax_variants() {
    let f = facts("syntax");
    assert_eq!(f.ports, [2022]);
    let e = eff(&f, "192.0.2.10");
    assert_eq!(e.permit_root_login.value, PermitRootLogin::ProhibitPassword);
    assert_eq!(
        e.authorized_keys_files.value,
        [".ssh/authorized_keys", "/etc/ssh/keys/%u"]
    );
    assert_eq!(e.allow_users.value, ["root", "admin", "deploy"]);
    assert_eq!(src(&e.allow_users.source), "/etc/ssh/sshd_config:5");
    assert!(e.pubkey_authentication.value);
    assert!(!e.use_pam.value && !e.strict_modes.value);
}

#[test]
fn match_local_port_is_reported() {
    let f = facts("match-localport");
    assert_eq!(f.ports, [22, 2222]);
    assert_eq!(
        eff(&f, "192.0.2.10").permit_root_login.value,
        PermitRootLogin::ProhibitPassword
    );
    assert!(
        f.warnings
            .iter()
            .any(|w| w.contains("port 2222") && w.contains("PermitRootLogin No")),
        "{:?}",
        f.warnings
    );
}

#[test]
fn authorized_keys_command_and_none() {
    let f = facts("akc");
    let e = eff(&f, "192.0.2.10");
    assert_eq!(
        e.authorized_keys_command.value.as_deref(),
        Some("/usr/local/bin/fetch-keys %u %f")
    );
    let (_, note) = keys_file(e, "root", 0, Path::new("/root"));
    assert!(note.unwrap().contains("none"));
    let e = eff(&f, "203.0.113.5");
    assert_eq!(e.authorized_keys_command.value, None);
    assert_eq!(
        keys_file(e, "root", 0, Path::new("/root")),
        (PathBuf::from("/root/.ssh/authorized_keys2"), None)
    );
}

#[test]
fn missing_config_means_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let f = probe(&Root::new(dir.path()).unwrap(), &addrs(), "x").unwrap();
    assert_eq!(f.ports, [22]);
    assert!(f.warnings.iter().any(|w| w.contains("does not exist")));
    assert_eq!(f.per_address.len(), ADDRS.len());
}

fn sandbox(files: &[(&str, &str)]) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    for (p, text) in files {
        let full = dir.path().join(p.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    let root = Root::new(dir.path()).unwrap();
    (dir, root)
}

#[test]
fn include_depth_limit() {
    let mut files: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("/etc/ssh/d/{i}.conf"),
                format!("Include d/{}.conf\n", i + 1),
            )
        })
        .collect();
    files.push(("/etc/ssh/d/20.conf".into(), "Port 22\n".into()));
    files.push(("/etc/ssh/sshd_config".into(), "Include d/0.conf\n".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (_d, root) = sandbox(&refs);
    let err = Config::load(&root).unwrap_err().to_string();
    assert!(err.contains("deeper than 16"), "{err}");
}

#[test]
fn unreadable_include_and_global_keyword_in_match() {
    let (_d, root) = sandbox(&[
        ("/etc/ssh/sshd_config", "Port 22\nInclude conf.d\n"),
        ("/etc/ssh/conf.d/x.conf", "Port 23\n"),
    ]);
    let err = Config::load(&root).unwrap_err().to_string();
    assert!(
        err.contains("sshd_config line 2") && err.contains("/etc/ssh/conf.d"),
        "{err}"
    );
    let (_d, root) = sandbox(&[(
        "/etc/ssh/sshd_config",
        "Match User bob\n  PermitRootLogin no\n  Port 2222\n",
    )]);
    let err = format!("{:#}", probe(&root, &addrs(), "x").unwrap_err());
    assert!(
        err.contains("line 3") && err.contains("not allowed within a Match"),
        "{err}"
    );
}

/// A 10 MB config: a realistic one with its comments repeated, a Port line at the very end.
fn ten_mb_config() -> String {
    let base = std::fs::read_to_string(corpus().join("debian12/etc/ssh/sshd_config")).unwrap();
    // A Subsystem may be defined once only: sshd refuses a second definition.
    let block = base
        .replace(
            "Include /etc/ssh/sshd_config.d/*.conf",
            "# (include removed)",
        )
        .replace("Subsystem\tsftp", "#Subsystem\tsftp");
    let mut s = String::with_capacity(10 << 20);
    while s.len() < 10 << 20 {
        s.push_str(&block);
    }
    s.push_str("Port 2345\nMatch Address 192.0.2.0/24\n\tPermitRootLogin no\n");
    s
}

#[test]
fn ten_megabyte_file() {
    let text = ten_mb_config();
    let (_d, root) = sandbox(&[("/etc/ssh/sshd_config", &text)]);
    let t = Instant::now();
    let f = probe(&root, &addrs(), "x").unwrap();
    let elapsed = t.elapsed();
    eprintln!(
        "probe of a {} byte sshd_config ({} support addresses): {elapsed:?}",
        text.len(),
        ADDRS.len()
    );
    assert_eq!(f.ports, [2345]);
    assert_eq!(
        eff(&f, "192.0.2.10").permit_root_login.value,
        PermitRootLogin::No
    );
    // A figure, not an assertion: timings belong to benchmarks.
    eprintln!("10 MB config probed in {elapsed:?}");
}

// ---- agreement with the real sshd -T ----

/// Copy a case into `dst`, with every Include made absolute under `dst`, because the real sshd
/// resolves Include paths against the real /etc/ssh (never read in tests).
fn copy_rewritten(src: &Path, dst: &Path, base: &Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            copy_rewritten(&e.path(), &to, base);
        } else if ft.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            let out: Vec<String> = text
                .split('\n')
                .map(|line| {
                    let t = line.trim_start();
                    let mut words = t.split_whitespace();
                    match words.next() {
                        Some(k) if k.eq_ignore_ascii_case("include") => {
                            let args: Vec<String> = words
                                .map(|a| {
                                    if a.starts_with('/') {
                                        format!("{}{a}", base.display())
                                    } else {
                                        format!("{}/etc/ssh/{a}", base.display())
                                    }
                                })
                                .collect();
                            format!("Include {}", args.join(" "))
                        }
                        _ => line.to_string(),
                    }
                })
                .collect();
            std::fs::write(&to, out.join("\n")).unwrap();
        }
    }
}

fn can_run_sshd_t() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP sshd -T agreement: needs root (sshd -T refuses otherwise); run as root");
        return false;
    }
    for tool in [test_mode::SSHD, "/usr/bin/unshare", "/usr/bin/ssh-keygen"] {
        if !Path::new(tool).exists() {
            eprintln!("SKIP sshd -T agreement: {tool} is missing");
            return false;
        }
    }
    true
}

/// A wrapper that runs the real sshd in a private mount namespace with its own empty /run, so
/// the privilege separation directory it insists on (/run/sshd) is never created on the
/// machine. The library's own `test_mode::run` calls it as it would call /usr/sbin/sshd.
fn sshd_wrapper(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let w = dir.join("sshd-wrapper");
    std::fs::write(
        &w,
        format!(
            "#!/bin/sh\nexec unshare --mount --propagation private sh -c \
             'mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && exec \"$@\"' sh {} \"$@\"\n",
            test_mode::SSHD
        ),
    )
    .unwrap();
    std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
    w
}

struct RealSshd {
    wrapper: PathBuf,
    hostkey: PathBuf,
}

impl RealSshd {
    /// The sshd wrapper and a fresh ed25519 host key (sshd -t/-T want one), both in `dir`.
    fn in_dir(dir: &Path) -> RealSshd {
        let hostkey = dir.join("hostkey");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&hostkey)
            .status()
            .unwrap();
        assert!(st.success());
        RealSshd {
            wrapper: sshd_wrapper(dir),
            hostkey,
        }
    }

    fn dump(&self, config: &Path, conn: &sshd::Connection) -> anyhow::Result<test_mode::Dump> {
        let hk = format!("HostKey={}", self.hostkey.display());
        let extra: [&std::ffi::OsStr; 4] = [
            "-f".as_ref(),
            config.as_os_str(),
            "-o".as_ref(),
            hk.as_ref(),
        ];
        test_mode::run(&self.wrapper, conn, &extra)
    }
}

fn expand_listen(f: &[ovh_access::sshd::Listen]) -> Vec<(IpAddr, u16)> {
    let mut v: Vec<(IpAddr, u16)> = f
        .iter()
        .flat_map(|l| match l.addr {
            Some(a) => vec![(a, l.port)],
            None => vec![
                ("0.0.0.0".parse().unwrap(), l.port),
                ("::".parse().unwrap(), l.port),
            ],
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn agree_on(
    case: &str,
    src: &Path,
    dir: &Path,
    real: &RealSshd,
    rejected: &mut Vec<String>,
) -> usize {
    let work = dir.join("rewritten").join(case);
    std::fs::create_dir_all(&work).unwrap();
    copy_rewritten(src, &work, &work);
    let config = work.join("etc/ssh/sshd_config");
    let ours = Config::load(&Root::new(src).unwrap());
    let mut checked = 0;
    for addr in addrs() {
        let (cfg, global) = match &ours {
            Ok(c) => (c, eval::global(c)),
            Err(_) => {
                // Ours refuses: sshd must refuse too.
                let conn =
                    support_connection(&["root".into()], addr, "x", UseDns::No, None, Some(22));
                let r = real.dump(&config, &conn);
                assert!(
                    r.is_err(),
                    "{case}: the parser refuses a config sshd -T accepts"
                );
                rejected.push(case.to_string());
                return checked;
            }
        };
        let (listen, ports, _) = eval::listen(global.as_ref().unwrap_or(&eval::Options::default()));
        let laddr = sshd::local_address_for(&listen, addr);
        let conn = support_connection(
            &["root".into()],
            addr,
            "x",
            UseDns::No,
            Some(laddr),
            ports.first().copied(),
        );
        let dump = match real.dump(&config, &conn) {
            Ok(d) => d,
            Err(stderr) => {
                // sshd refuses: the parser must refuse or at least warn.
                assert!(
                    global.is_err() || !cfg.warnings.is_empty(),
                    "{case}: sshd -T refuses ({stderr}) but the parser found nothing wrong"
                );
                rejected.push(case.to_string());
                return checked;
            }
        };
        let global = global.unwrap_or_else(|e| panic!("{case}: sshd accepts but parser: {e:#}"));
        let e = eval::effective(&eval::for_connection(cfg, &global, &conn).unwrap());
        let diff = test_mode::disagreements(&e, &dump);
        assert!(diff.is_empty(), "{case} for {addr}: {diff:?}");
        let mut theirs = dump.listen.clone();
        theirs.sort();
        theirs.dedup();
        assert_eq!(expand_listen(&listen), theirs, "{case}: listening sockets");
        checked += 1;
    }
    checked
}

#[test]
fn parser_agrees_with_real_sshd_t_on_the_corpus() {
    if !can_run_sshd_t() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let real = RealSshd::in_dir(dir.path());
    let mut cases: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    let mut rejected = Vec::new();
    let mut checked = 0;
    for case in &cases {
        checked += agree_on(case, &corpus().join(case), dir.path(), &real, &mut rejected);
    }
    // The 10 MB file too.
    let big = dir.path().join("big");
    std::fs::create_dir_all(big.join("etc/ssh")).unwrap();
    std::fs::write(big.join("etc/ssh/sshd_config"), ten_mb_config()).unwrap();
    checked += agree_on("10MB", &big, dir.path(), &real, &mut rejected);
    eprintln!(
        "sshd -T agreement: {checked} (case, address) pairs agree; sshd rejects {rejected:?}"
    );
    assert_eq!(
        rejected,
        ["garbage", "include-cycle", "malformed-port"],
        "the cases sshd refuses"
    );
    assert_eq!(checked, (cases.len() + 1 - rejected.len()) * ADDRS.len());
}

#[test]
fn blockers_for_the_support_key() {
    let g = ["root".to_string()];
    let b = |f: &SshdFacts, a: &str| {
        sshd::blockers("ssh-rsa", eff(f, a), "root", &g, a.parse().unwrap(), a)
    };
    let f = facts("match-address");
    // `Match Address *,!2001:db8::/32` asks every IPv4 client for two factors.
    let two = |m: &String| m.contains("AuthenticationMethods") && m.contains(":18)");
    let x = b(&f, "192.0.2.10");
    assert!(
        x[0].contains("PermitRootLogin no (/etc/ssh/sshd_config:8)"),
        "{x:?}"
    );
    assert!(x.len() == 2 && two(&x[1]), "{x:?}");
    let x = b(&f, "192.0.2.99");
    assert!(x.len() == 1 && two(&x[0]), "{x:?}");
    let x = b(&f, "198.51.100.7");
    assert!(
        x.len() == 2 && x[0].contains("forced-commands-only"),
        "{x:?}"
    );
    let x = b(&f, "203.0.113.5");
    assert!(
        x.len() == 2 && x[0].contains("AllowUsers (/etc/ssh/sshd_config:3)"),
        "{x:?}"
    );
    let x = b(&f, "2001:db8::10");
    assert!(x.len() == 1 && x[0].contains("AllowUsers"), "{x:?}");
    let f = facts("cis");
    let x = b(&f, "192.0.2.10");
    assert!(
        x.iter().any(|m| m.starts_with("PermitRootLogin no")),
        "{x:?}"
    );
    assert!(x.iter().any(|m| m.starts_with("AllowGroups")), "{x:?}");
    assert_eq!(x.len(), 2, "{x:?}");
    assert!(b(&facts("debian12"), "192.0.2.10").is_empty());
}

#[test]
fn match_local_address_port_and_host() {
    let f = facts("match-local");
    assert_eq!(f.ports, [22, 2201, 2222]);
    let e = eff(&f, "192.0.2.10");
    // Evaluated on port 22, the first one: the LocalPort 2222 block does not apply...
    assert_eq!(e.permit_root_login.value, PermitRootLogin::ProhibitPassword);
    // ...and the difference on 2222 is reported.
    assert!(
        f.warnings
            .iter()
            .any(|w| w.contains("192.0.2.10") && w.contains("port 2222") && w.contains("No")),
        "{:?}",
        f.warnings
    );
    // `~/` is expanded when the line is read, as sshd does.
    assert_eq!(
        e.authorized_keys_files.value,
        ["/root/.ssh/authorized_keys", "%h/.ssh/authorized_keys2"]
    );
    assert_eq!(
        eff(&f, "2001:db8::10").allow_users.value,
        ["root@2001:db8::/32"]
    );
    assert!(!eff(&f, "203.0.113.5").pubkey_authentication.value);
    assert!(eff(&f, "198.51.100.7").pubkey_authentication.value);
}

#[test]
fn match_in_a_drop_in_ends_with_its_file() {
    let f = facts("dropin-match");
    assert_eq!(f.ports, [2222]);
    let e = eff(&f, "192.0.2.10");
    assert_eq!(e.permit_root_login.value, PermitRootLogin::No);
    assert_eq!(
        src(&e.permit_root_login.source),
        "/etc/ssh/sshd_config.d/10-support.conf:3"
    );
    let (p, note) = keys_file(e, "root", 0, Path::new("/root"));
    assert_eq!(p, Path::new("/root/.ssh/authorized_keys"));
    assert!(note.is_some());
    let e = eff(&f, "198.51.100.7");
    assert_eq!(e.permit_root_login.value, PermitRootLogin::Yes);
    assert_eq!(
        src(&e.permit_root_login.source),
        "/etc/ssh/sshd_config.d/20-root.conf:1"
    );
    // UsePAM in the main file after the Include is global, not inside the drop-in's Match.
    assert!(e.use_pam.value);
}

#[test]
fn rsa_support_key_and_pubkey_accepted_algorithms() {
    let f = facts("algorithms");
    let g = ["root".to_string()];
    let b = |a: &str| sshd::blockers("ssh-rsa", eff(&f, a), "root", &g, a.parse().unwrap(), a);
    let x = b("203.0.113.5");
    assert!(
        x.len() == 1 && x[0].contains("PubkeyAcceptedAlgorithms (/etc/ssh/sshd_config:2)"),
        "{x:?}"
    );
    assert!(b("192.0.2.10").is_empty());
    assert_eq!(
        eff(&f, "192.0.2.10").pubkey_accepted_algorithms.value,
        [
            "ssh-ed25519",
            "ssh-ed25519-cert-v01@openssh.com",
            "rsa-sha2-512"
        ]
    );
    assert!(b("198.51.100.7").is_empty());
    // An ed25519 key would pass where the RSA one does not.
    let e = eff(&f, "203.0.113.5");
    assert!(!e
        .pubkey_accepted_algorithms
        .value
        .contains(&"ssh-ed25519".to_string()));
    assert!(e
        .pubkey_accepted_algorithms
        .value
        .contains(&"ecdsa-sha2-nistp256".to_string()));
}

// ---- generated configs: the same agreement, on shapes nobody wrote by hand ----

const GLOBAL_LINES: &[&str] = &[
    "Port 22",
    "Port 2222",
    "Port 40022",
    "ListenAddress 192.0.2.1",
    "ListenAddress [2001:db8::1]:2201",
    "AddressFamily inet",
    "UseDNS no",
    "StrictModes no",
    "UsePAM yes",
    "UsePAM no",
];

const MATCH_HEADERS: &[&str] = &[
    "Match Address 192.0.2.0/24",
    "Match Address *,!192.0.2.10",
    "Match User root",
    "Match User admin,!root",
    "Match all",
    "Match Address 2001:db8::/32 User root",
    "Match LocalPort 2222",
    "Match LocalAddress 192.0.2.1",
    "Match Host 198.51.100.*",
    "Match Group root",
    "Match Group *,!root",
];

const ANYWHERE_LINES: &[&str] = &[
    "PermitRootLogin yes",
    "PermitRootLogin no",
    "PermitRootLogin without-password",
    "PermitRootLogin forced-commands-only",
    "PubkeyAuthentication no",
    "PubkeyAuthentication yes",
    "AuthorizedKeysFile .ssh/authorized_keys",
    "AuthorizedKeysFile /etc/ssh/keys/%u %h/.ssh/authorized_keys2",
    "AuthorizedKeysFile none",
    "AllowUsers root admin",
    "AllowUsers root@192.0.2.* *@198.51.100.0/24",
    "DenyUsers root@203.0.113.0/24",
    "AllowGroups root wheel",
    "DenyGroups wheel",
    "AuthenticationMethods publickey",
    "AuthenticationMethods publickey,password publickey",
    "AuthenticationMethods any",
    "PubkeyAcceptedAlgorithms -rsa*",
    "PubkeyAcceptedAlgorithms ssh-ed25519,rsa-sha2-512",
    "PubkeyAcceptedAlgorithms +ssh-rsa",
    "AuthorizedKeysCommand none",
    "AuthorizedKeysCommand /usr/local/bin/keys %u",
    "X11Forwarding no",
];

/// One line in one of sshd's accepted spellings: as is, `key=value`, `KEY = value`, or a
/// one-word value in double quotes.
fn styled(line: &str, k: u64) -> String {
    let Some((key, value)) = line.split_once(' ') else {
        return line.to_string();
    };
    if key == "Match" || key == "Include" {
        return line.to_string();
    }
    match k % 4 {
        1 => format!("{key}={value}"),
        2 => format!("{} = {value}", key.to_ascii_uppercase()),
        3 if !value.contains(' ') && !value.contains('"') => format!("{key} \"{value}\""),
        _ => line.to_string(),
    }
}

type Block<'a> = (&'a str, Vec<&'a str>);

/// A config file: global lines, then Match blocks; `include_at` puts
/// `Include sshd_config.d/*.conf` at the top (0), after the global lines (1), or at the end of
/// block n (n + 2), or nowhere.
fn render(globals: &[&str], blocks: &[Block], include_at: Option<usize>, seed: u64) -> String {
    let mut n = seed;
    let mut next = |l: &str| {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        styled(l, n >> 33)
    };
    let inc = "Include sshd_config.d/*.conf\n";
    let mut s = String::from("AuthorizedKeysCommandUser nobody\n");
    if include_at == Some(0) {
        s.push_str(inc);
    }
    for l in globals {
        s.push_str(&next(l));
        s.push('\n');
    }
    if include_at == Some(1) {
        s.push_str(inc);
    }
    for (i, (header, lines)) in blocks.iter().enumerate() {
        s.push_str(header);
        s.push('\n');
        for l in lines {
            s.push('\t');
            s.push_str(&next(l));
            s.push('\n');
        }
        if include_at == Some(i + 2) {
            s.push('\t');
            s.push_str(inc);
        }
    }
    s
}

#[test]
fn parser_agrees_with_real_sshd_t_on_generated_configs() {
    use proptest::prelude::*;
    use proptest::sample::select;
    if !can_run_sshd_t() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let real = RealSshd::in_dir(dir.path());
    let globals = || {
        proptest::collection::vec(
            prop_oneof![select(GLOBAL_LINES), select(ANYWHERE_LINES)],
            0..6,
        )
    };
    let blocks = || {
        proptest::collection::vec(
            (
                select(MATCH_HEADERS),
                proptest::collection::vec(select(ANYWHERE_LINES), 1..4),
            ),
            0..4,
        )
    };
    let strategy = (
        globals(),
        blocks(),
        proptest::option::of(0usize..6),
        proptest::collection::vec((globals(), blocks()), 0..3),
        any::<u64>(),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let counts = std::cell::RefCell::new((0usize, 0usize, 0usize));
    let case_dir = dir.path().join("gen");
    let rewritten = dir.path().join("gen-rewritten");
    runner
        .run(&strategy, |(globals, blocks, include_at, dropins, seed)| {
            let mut text = render(&globals, &blocks, include_at, seed);
            let _ = std::fs::remove_dir_all(&case_dir);
            let _ = std::fs::remove_dir_all(&rewritten);
            std::fs::create_dir_all(case_dir.join("etc/ssh/sshd_config.d")).unwrap();
            std::fs::write(case_dir.join("etc/ssh/sshd_config"), &text).unwrap();
            for (i, (g, b)) in dropins.iter().enumerate() {
                let t = render(g, b, None, seed ^ i as u64)
                    .replace("AuthorizedKeysCommandUser nobody\n", "");
                text.push_str(&format!("# --- sshd_config.d/{i}0.conf\n{t}"));
                std::fs::write(case_dir.join(format!("etc/ssh/sshd_config.d/{i}0.conf")), t)
                    .unwrap();
            }
            std::fs::create_dir_all(&rewritten).unwrap();
            copy_rewritten(&case_dir, &rewritten, &rewritten);
            let root = Root::new(&case_dir).unwrap();
            let config = rewritten.join("etc/ssh/sshd_config");
            // The parser's verdict: the config with its global options, or an error.
            let parsed = Config::load(&root).and_then(|c| {
                let g = eval::global(&c)?;
                Ok((c, g))
            });
            let opts = parsed.as_ref().map(|(_, g)| g.clone()).unwrap_or_default();
            let (listen, ports, _) = eval::listen(&opts);
            for addr in addrs() {
                let laddr = sshd::local_address_for(&listen, addr);
                let conn = support_connection(
                    &["root".into()],
                    addr,
                    "x",
                    UseDns::No,
                    Some(laddr),
                    ports.first().copied(),
                );
                let Ok(dump) = real.dump(&config, &conn) else {
                    // sshd also refuses combinations the parser does not judge (e.g.
                    // AuthenticationMethods no enabled method can satisfy).
                    counts.borrow_mut().1 += 1;
                    let accepted = parsed
                        .as_ref()
                        .is_ok_and(|(c, g)| eval::for_connection(c, g, &conn).is_ok());
                    if accepted {
                        counts.borrow_mut().2 += 1;
                    }
                    return Ok(());
                };
                let (cfg, global) = parsed.as_ref().map_err(|e| {
                    TestCaseError::fail(format!("sshd accepts, parser: {e:#}\n{text}"))
                })?;
                let e = eval::for_connection(cfg, global, &conn)
                    .map(|o| eval::effective(&o))
                    .map_err(|e| {
                        TestCaseError::fail(format!("sshd accepts, parser: {e:#}\n{text}"))
                    })?;
                let diff = test_mode::disagreements(&e, &dump);
                prop_assert!(diff.is_empty(), "for {}: {:?}\n{}", addr, diff, text);
                let mut theirs = dump.listen.clone();
                theirs.sort();
                theirs.dedup();
                prop_assert_eq!(expand_listen(&listen), theirs, "{}", text);
            }
            counts.borrow_mut().0 += 1;
            Ok(())
        })
        .unwrap();
    let (agreed, refused, parser_accepted) = *counts.borrow();
    eprintln!("generated configs: {agreed} agree with sshd -T on every address, {refused} refused by sshd ({parser_accepted} of them accepted by the parser)");
    assert!(
        agreed >= 32,
        "too few generated configs were accepted by sshd: {agreed}"
    );
}

#[test]
fn authentication_methods_any_after_a_list_is_refused() {
    // Both forms are refused by OpenSSH 9.2 (found by the generated-config agreement test).
    for text in [
        "AuthenticationMethods publickey\nMatch User nobody\n\tAuthenticationMethods any\n",
        "Match all\n\tAuthenticationMethods publickey\nMatch Address 192.0.2.0/24\n\tAuthenticationMethods any\n",
    ] {
        let (_d, root) = sandbox(&[("/etc/ssh/sshd_config", text)]);
        let err = format!("{:#}", probe(&root, &addrs(), "x").unwrap_err());
        assert!(err.contains("\"any\" must appear alone"), "{err}");
    }
    // `any` in a matching block replaces a global list.
    let (_d, root) = sandbox(&[(
        "/etc/ssh/sshd_config",
        "Match Address 192.0.2.0/24\n\tAuthenticationMethods any\nMatch all\n\tAuthenticationMethods publickey,password\n",
    )]);
    let f = probe(&root, &addrs(), "x").unwrap();
    assert!(eff(&f, "192.0.2.10")
        .authentication_methods
        .value
        .is_empty());
    assert_eq!(
        eff(&f, "198.51.100.7").authentication_methods.value,
        ["publickey,password"]
    );
}

#[test]
fn installed_sshd_version() {
    match sshd::version() {
        Some((major, minor)) => {
            assert!(Path::new(test_mode::SSHD).exists());
            eprintln!("installed sshd: OpenSSH {major}.{minor}");
            assert!(major >= 7, "{major}.{minor}");
        }
        None => assert!(!Path::new(test_mode::SSHD).exists()),
    }
}

/// The keyword scope table against the installed sshd: inside a Match block that never
/// matches, sshd -t says "not allowed within a Match block" exactly for global keywords.
#[test]
fn keyword_scopes_agree_with_the_installed_sshd() {
    use ovh_access::sshd::keywords::{GLOBAL_KEYWORDS, MATCH_KEYWORDS};
    if !can_run_sshd_t() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let RealSshd { wrapper, hostkey } = RealSshd::in_dir(dir.path());
    let mut wrong = Vec::new();
    let mut unknown_here = Vec::new();
    for (kw, in_match) in MATCH_KEYWORDS
        .iter()
        .map(|k| (k, true))
        .chain(GLOBAL_KEYWORDS.iter().map(|k| (k, false)))
    {
        let cfg = dir.path().join("kw.conf");
        std::fs::write(&cfg, format!("Match User nomatch_zz\n\t{kw} x\n")).unwrap();
        let out = Command::new(&wrapper)
            .arg("-t")
            .arg("-f")
            .arg(&cfg)
            .arg("-o")
            .arg(format!("HostKey={}", hostkey.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Bad configuration option") || err.contains("Unsupported option") {
            // Distribution keywords (GSSAPI key exchange, DebianBanner) this build may lack.
            unknown_here.push(*kw);
            continue;
        }
        let refused_in_match = err.contains("not allowed within a Match block");
        if refused_in_match == in_match {
            wrong.push(format!(
                "{kw}: table says in_match={in_match}, sshd: {}",
                err.trim()
            ));
        }
    }
    eprintln!("keywords this sshd does not know: {unknown_here:?}");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn global_keywords_after_match_all() {
    let f = facts("match-all-global");
    assert_eq!(f.ports, [2222]);
    let e = eff(&f, "192.0.2.10");
    assert!(e.use_pam.value);
    // The Match pass overrides the first global value.
    assert_eq!(e.permit_root_login.value, PermitRootLogin::Yes);
}
