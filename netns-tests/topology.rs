//! The end-to-end world, reusable by every root-only test: a server running a real sshd behind a
//! default-deny nftables ruleset, the support host, a stranger and a DNS host running dnsmasq that
//! answers `cache-ng.ovh.net` and `cache-ng.ovh.ca` with the support host's addresses.
//!
//! ```text
//!   support  198.51.100.2  2001:db8:1::2  ──┐
//!   stranger 203.0.113.2   2001:db8:2::2  ──┼── server (.1 / ::1 on each link, sshd on `port`)
//!   dns      192.0.2.53    2001:db8:53::53 ─┘
//! ```
//!
//! Each leaf is linked to the server only, and the server does not forward (a fresh namespace has
//! forwarding off), so nothing routes beyond these links. Files live in a sandbox directory that
//! stands for `/` (`--root`), and sshd sees the sandbox's `root/` as `/root` through a private mount
//! namespace, so the keys file the tool writes is the one sshd reads — and the host's own /root,
//! /etc/ssh and /etc/passwd are never touched. Dropping a [`Topology`] (also while a test panics)
//! kills its processes, deletes its namespaces and removes the sandbox.
#![allow(dead_code)]

mod dns_wire;

use std::ffi::OsStr;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::*;

/// The server's addresses on the support link, and the support host's own.
pub const SRV_SUP_V4: &str = "198.51.100.1";
pub const SRV_SUP_V6: &str = "2001:db8:1::1";
pub const SUP_V4: &str = "198.51.100.2";
pub const SUP_V6: &str = "2001:db8:1::2";
/// The server's addresses on the stranger link, and the stranger's own.
pub const SRV_STR_V4: &str = "203.0.113.1";
pub const SRV_STR_V6: &str = "2001:db8:2::1";
pub const STR_V4: &str = "203.0.113.2";
pub const STR_V6: &str = "2001:db8:2::2";
/// The server's addresses on the DNS link, and dnsmasq's.
pub const SRV_DNS_V4: &str = "192.0.2.1";
pub const SRV_DNS_V6: &str = "2001:db8:53::1";
pub const DNS_V4: &str = "192.0.2.53";
pub const DNS_V6: &str = "2001:db8:53::53";
/// The names dnsmasq answers with the support host's addresses.
pub const SUPPORT_HOSTS: [&str; 2] = ["cache-ng.ovh.net", "cache-ng.ovh.ca"];

/// sshd's host name (its own UTS namespace): a login that prints it reached this sshd.
pub const SERVER_HOSTNAME: &str = "oa-server";
/// Root-owned and 0755, under the world-writable /var/tmp but checked before use (nobody else may
/// plant it): the sandbox's files must be root's alone, as sshd's StrictModes (`auth_secure_path`
/// in misc.c) refuses keys whose file or directories up to the home are writable by others.
const SANDBOX_BASE: &str = "/var/tmp/ovh-access-tests";
/// The longest one run of the tool may take (it resolves, programs the firewall, writes a file).
pub const TOOL_LIMIT: Duration = Duration::from_secs(60);
/// Bounds on waiting for the daemons; both start in well under a second on an idle machine.
const START_LIMIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Opts {
    /// The `Port` of the sandbox sshd_config (sshd listens on it, on every address).
    pub port: u16,
    /// nft ruleset loaded into the server before sshd starts; `None` leaves the server open.
    pub ruleset: Option<PathBuf>,
    /// Lines appended to the sandbox sshd_config (`Match` blocks, `ListenAddress`, ...).
    pub extra_sshd_config: String,
    /// Another release's userland (a `scripts/debian-chroot` directory) whose sshd runs instead
    /// of the host's, with PAM (and so pam_loginuid's audit sessions) as its package sets it up.
    pub chroot: Option<PathBuf>,
    /// The server's zone (`/usr/share/zoneinfo/NAME`), as `<sandbox>/etc/localtime` and, for a
    /// chroot's sshd, its /etc/localtime; `None` leaves UTC.
    pub zone: Option<&'static str>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            port: 2222,
            ruleset: Some(ruleset_path("default-deny.nft")),
            extra_sshd_config: String::new(),
            chroot: None,
            zone: None,
        }
    }
}

pub struct Topology {
    pub srv: Netns,
    pub sup: Netns,
    pub stranger: Netns,
    pub dns: Netns,
    pub port: u16,
    /// The release chroot sshd runs from, if not the host's.
    pub chroot: Option<PathBuf>,
    /// sshd and dnsmasq (each is the `ip netns exec` child, which execs into the daemon).
    daemons: Vec<(&'static str, Child)>,
    /// Declared last: fields drop in order, so the sandbox goes once nothing runs in it.
    sandbox: Sandbox,
}

impl Topology {
    /// Builds the namespaces, the sandbox, dnsmasq, the firewall and sshd, waiting (bounded) until
    /// dnsmasq answers and sshd listens. Panics with the daemons' logs when something fails; what was
    /// built so far is torn down by the guards' Drop.
    pub fn new(opts: Opts) -> Topology {
        let sandbox = Sandbox::create();
        let srv = Netns::new("oa-srv");
        let sup = Netns::new("oa-sup");
        let stranger = Netns::new("oa-str");
        let dns = Netns::new("oa-dns");
        let links = [
            ("to-sup", &sup, [SRV_SUP_V4, SRV_SUP_V6], [SUP_V4, SUP_V6]),
            (
                "to-str",
                &stranger,
                [SRV_STR_V4, SRV_STR_V6],
                [STR_V4, STR_V6],
            ),
            ("to-dns", &dns, [SRV_DNS_V4, SRV_DNS_V6], [DNS_V4, DNS_V6]),
        ];
        for (ifname, peer, [mine4, mine6], [theirs4, theirs6]) in links {
            let mine = [format!("{mine4}/24"), format!("{mine6}/64")];
            let theirs = [format!("{theirs4}/24"), format!("{theirs6}/64")];
            srv.link(
                ifname,
                peer,
                "eth0",
                &[&mine[0], &mine[1]],
                &[&theirs[0], &theirs[1]],
            );
        }
        let mut topo = Topology {
            srv,
            sup,
            stranger,
            dns,
            port: opts.port,
            chroot: opts.chroot.clone(),
            daemons: Vec::new(),
            sandbox,
        };
        topo.sandbox.populate(&opts);
        topo.start_dnsmasq();
        if let Some(ruleset) = &opts.ruleset {
            topo.srv.load_nft(ruleset);
        }
        topo.start_sshd();
        topo
    }

    /// The directory that stands for `/` (`--root`).
    pub fn sandbox(&self) -> &Path {
        &self.sandbox.dir
    }

    /// `<sandbox>/root/.ssh/authorized_keys2`: the file the tool writes and sshd reads as
    /// /root/.ssh/authorized_keys2.
    pub fn keys_file(&self) -> PathBuf {
        self.sandbox.dir.join("root/.ssh/authorized_keys2")
    }

    /// The keys file's content, empty when it does not exist yet.
    pub fn keys_text(&self) -> String {
        fs::read_to_string(self.keys_file()).unwrap_or_default()
    }

    /// Writes the keys file as an administrator would by hand (directory 0700, file 0600).
    pub fn write_keys(&self, text: &str) {
        let file = self.keys_file();
        let dir = file.parent().unwrap();
        fs::create_dir_all(dir).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(&file, text).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The support key pair's public half (an OpenSSH public key file; its private half sits
    /// beside it without the `.pub`).
    pub fn support_pub(&self) -> PathBuf {
        self.sandbox.support_key().with_extension("pub")
    }

    /// The support public key line: `ssh-ed25519 AAAA... comment`.
    pub fn support_pub_line(&self) -> String {
        fs::read_to_string(self.support_pub())
            .unwrap()
            .trim()
            .to_string()
    }

    /// The support key's base64 blob, by which its lines in the keys file are found.
    pub fn support_blob(&self) -> String {
        let line = self.support_pub_line();
        line.split_whitespace().nth(1).unwrap().to_string()
    }

    /// `SHA256:...` as `ssh-keygen -lf` prints it.
    pub fn support_fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.support_pub()));
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace().nth(1).unwrap().to_string()
    }

    /// `ssh root@addr cmd` from `from` with the support key, non-interactive, bounded in time.
    pub fn ssh(&self, from: &Netns, addr: &str, port: u16, cmd: &str) -> Output {
        self.ssh_with(from, &[], addr, port, cmd)
    }

    /// [`Topology::ssh`] with extra ssh options before the destination (e.g. `["-b", ADDR]` to
    /// connect from a second address of `from`).
    pub fn ssh_with(
        &self,
        from: &Netns,
        extra: &[&str],
        addr: &str,
        port: u16,
        cmd: &str,
    ) -> Output {
        ssh_command(from, 20, &self.sandbox.support_key(), port)
            .args(extra)
            .arg(format!("root@{addr}"))
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// The ovh-access binary, run inside the server namespace with `--root <sandbox>` first.
    /// Killed after [`TOOL_LIMIT`] (exit status 124), so a hung netlink read fails the test
    /// instead of stalling CI.
    pub fn tool_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.srv.cmd("timeout");
        cmd.arg(TOOL_LIMIT.as_secs().to_string())
            .arg(bin())
            .arg("--root")
            .arg(self.sandbox())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the tool (see [`Topology::tool_cmd`]) and returns its output whatever the status.
    pub fn tool<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.tool_cmd(args).output().expect("run ovh-access")
    }

    /// Runs the tool, panicking with its output unless it exits 0 (the daemons' logs follow,
    /// printed by Drop while unwinding).
    pub fn tool_ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.tool_cmd(args))
    }

    /// Asks `server` (dnsmasq) from inside the server namespace, the way the tool will, for the A
    /// (`v6 = false`) or AAAA records of `name`.
    pub fn query(&self, server: IpAddr, name: &str, v6: bool) -> std::io::Result<Vec<IpAddr>> {
        let server = SocketAddr::new(server, 53);
        in_netns(&self.srv, || dns_wire::query(server, name, v6))
    }

    /// Process ids of the daemons (for teardown checks).
    pub fn daemon_pids(&self) -> Vec<u32> {
        self.daemons.iter().map(|(_, c)| c.id()).collect()
    }

    /// The names of the four namespaces.
    pub fn netns_names(&self) -> Vec<String> {
        [&self.srv, &self.sup, &self.stranger, &self.dns]
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// The daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for (name, _) in &self.daemons {
            let text = fs::read_to_string(self.sandbox.log(name)).unwrap_or_default();
            all.push_str(&format!("--- {name} log ---\n{text}"));
        }
        all
    }

    fn start_dnsmasq(&mut self) {
        let run_dir = self.sandbox.dir.join("run");
        let mut args = dnsmasq_args(&[DNS_V4, DNS_V6], &run_dir.join("dnsmasq.pid"));
        args.extend([
            "--log-queries".into(),
            "--log-facility=-".into(),
            format!(
                "--dhcp-leasefile={}",
                run_dir.join("dnsmasq.leases").display()
            ),
        ]);
        for host in SUPPORT_HOSTS {
            args.push(format!("--address=/{host}/{SUP_V4}"));
            args.push(format!("--address=/{host}/{SUP_V6}"));
        }
        let child = self.spawn_logged("dnsmasq", self.dns.cmd("dnsmasq").args(&args));
        self.daemons.push(("dnsmasq", child));
        let server: IpAddr = DNS_V4.parse().unwrap();
        let answers = wait_until(START_LIMIT, || {
            self.check_running();
            self.query(server, SUPPORT_HOSTS[0], false)
                .map(|a| !a.is_empty())
                .unwrap_or(false)
        });
        if !answers {
            panic!(
                "dnsmasq does not answer within {START_LIMIT:?}\n{}",
                self.logs()
            );
        }
    }

    fn start_sshd(&mut self) {
        let sb = self.sandbox.dir.display().to_string();
        let script = match &self.chroot {
            Some(ch) => chroot_sshd_script(&sb, &ch.display().to_string()),
            None => host_sshd_script(&sb),
        };
        let mut cmd = self.srv.cmd("unshare");
        cmd.args([
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]);
        let child = self.spawn_logged("sshd", &mut cmd);
        self.daemons.push(("sshd", child));
        let port = self.port;
        let listening = wait_until(START_LIMIT, || {
            self.check_running();
            tcp_connects(&self.srv, "127.0.0.1", port)
        });
        if !listening {
            panic!(
                "sshd does not listen on port {port} within {START_LIMIT:?}\n{}",
                self.logs()
            );
        }
    }

    fn spawn_logged(&self, name: &str, cmd: &mut Command) -> Child {
        let log = fs::File::create(self.sandbox.log(name)).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    /// Panics with the logs when a daemon has exited: waiting longer would only hide why.
    fn check_running(&mut self) {
        let mut dead = None;
        for (name, child) in &mut self.daemons {
            if let Ok(Some(status)) = child.try_wait() {
                dead = Some(format!("{name} exited ({status})"));
            }
        }
        if let Some(what) = dead {
            panic!("{what}\n{}", self.logs());
        }
    }
}

/// The host's sshd. A private mount (and UTS) namespace inside the server's network namespace,
/// so that sshd
/// - reads /root/.ssh/authorized_keys2 from the sandbox;
/// - gets the privilege-separation directory /run/sshd it insists on (sshd.c: "Missing
///   privilege separation directory"), 0755 as the package makes it since the pre-auth
///   child is chrooted there, on a tmpfs that hides the host's /run from sshd alone;
/// - judges root by the sandbox's shadow entry: with UsePAM no, allowed_user() (auth.c)
///   refuses a locked account ("!" password), which root is on many hosts;
/// - records logins (loginrec.c: wtmp, lastlog) on a tmpfs, never in the host's /var/log.
fn host_sshd_script(sb: &str) -> String {
    format!(
        "set -e\n\
         hostname {SERVER_HOSTNAME}\n\
         mount --bind '{sb}/root' /root\n\
         mount --bind '{sb}/etc/shadow' /etc/shadow\n\
         mount -t tmpfs -o mode=0755,size=1m oa-run /run\n\
         mount -t tmpfs -o mode=0755,size=1m oa-log /var/log\n\
         mkdir -m 0755 /run/sshd\n\
         exec /usr/sbin/sshd -D -e -f '{sb}/etc/ssh/sshd_config'\n"
    )
}

/// A release chroot's sshd, in its own private mount namespace where the sandbox's /etc/ssh,
/// /root and shadow entry are bound over the chroot's (the cached chroot itself is never
/// written), /run and /var/log are fresh tmpfs, /dev and /proc are the host's, and the zone
/// file the chroot's /etc/localtime points to is the sandbox's.
fn chroot_sshd_script(sb: &str, ch: &str) -> String {
    let zone = if Path::new(sb).join("etc/localtime").exists() {
        format!("mount --bind '{sb}/etc/localtime' '{ch}/usr/share/zoneinfo/Etc/UTC'\n")
    } else {
        String::new()
    };
    format!(
        "set -e\n\
         hostname {SERVER_HOSTNAME}\n\
         mount --bind '{sb}/root' '{ch}/root'\n\
         mount --bind '{sb}/etc/ssh' '{ch}/etc/ssh'\n\
         mount --bind '{sb}/etc/shadow' '{ch}/etc/shadow'\n\
         mount -t tmpfs -o mode=0755,size=1m oa-run '{ch}/run'\n\
         mount -t tmpfs -o mode=0755,size=4m oa-log '{ch}/var/log'\n\
         mount --bind /dev '{ch}/dev'\n\
         mount -t proc proc '{ch}/proc'\n\
         {zone}\
         mkdir -m 0755 '{ch}/run/sshd'\n\
         exec chroot '{ch}' /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config\n"
    )
}

impl Drop for Topology {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "topology {} (sandbox {}):\n{}",
                self.srv.name,
                self.sandbox.dir.display(),
                self.logs()
            );
        }
        for (_, child) in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Then the namespaces (each guard kills what is left in it), then the sandbox.
    }
}

/// The directory standing for `/`, removed on drop.
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn create() -> Sandbox {
        let base = Path::new(SANDBOX_BASE);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(base)
            .unwrap_or_else(|e| panic!("cannot create {SANDBOX_BASE}: {e}"));
        // /var/tmp is world-writable: refuse a base someone else planted (a symlink, another owner).
        let meta = fs::symlink_metadata(base).unwrap();
        assert!(
            meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o022 == 0,
            "{SANDBOX_BASE} must be a root-owned directory writable only by root; remove it and run again"
        );
        let dir = base.join(unique_suffix());
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .unwrap_or_else(|e| panic!("cannot create sandbox {}: {e}", dir.display()));
        Sandbox { dir }
    }

    fn support_key(&self) -> PathBuf {
        self.dir.join("support/id_ed25519")
    }

    fn log(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.log"))
    }

    /// passwd, sshd_config, host key, root's home and the support key pair.
    fn populate(&self, opts: &Opts) {
        let d = &self.dir;
        for (sub, mode) in [
            ("etc/ssh", 0o755),
            ("root", 0o700),
            ("run", 0o755),
            ("support", 0o700),
        ] {
            let p = d.join(sub);
            fs::create_dir_all(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::set_permissions(d.join("etc"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            d.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        )
        .unwrap();
        // "*": no password, yet not locked (a "!" prefix would lock root out of key logins too).
        fs::write(d.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
        fs::set_permissions(d.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
        let host_key = d.join("etc/ssh/ssh_host_ed25519_key");
        keygen(&host_key, "oa-test-host");
        keygen(&self.support_key(), "support@oa-test");
        if let Some(zone) = opts.zone {
            fs::copy(
                format!("/usr/share/zoneinfo/{zone}"),
                d.join("etc/localtime"),
            )
            .unwrap_or_else(|e| panic!("zone {zone}: {e} (install tzdata)"));
        }
        // Inside a chroot sshd sees the sandbox's /etc/ssh as its own, and runs PAM as Debian's
        // package configures it.
        let (host_key_path, pid_path, use_pam) = match opts.chroot {
            Some(_) => (
                "/etc/ssh/ssh_host_ed25519_key".to_string(),
                "/run/sshd.pid".to_string(),
                "yes",
            ),
            None => (
                host_key.display().to_string(),
                d.join("run/sshd.pid").display().to_string(),
                "no",
            ),
        };
        let config = format!(
            "# Sandbox sshd for the ovh-access end-to-end tests.\n\
             Port {port}\n\
             HostKey {host_key}\n\
             PidFile {pid}\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM {use_pam}\n\
             StrictModes yes\n\
             UseDNS no\n\
             LogLevel VERBOSE\n\
             {extra}\n",
            port = opts.port,
            host_key = host_key_path,
            pid = pid_path,
            extra = opts.extra_sshd_config,
        );
        fs::write(d.join("etc/ssh/sshd_config"), config).unwrap();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "warning: could not remove sandbox {}: {e}",
                self.dir.display()
            );
        }
    }
}

fn keygen(path: &Path, comment: &str) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path));
}

/// dnsmasq on the DNS host: in the foreground, with no configuration, upstream or hosts file,
/// bound to the `listen` addresses only, staying root (its log and pid files are in the
/// root-owned sandbox), its pid in `pid_file`.
pub fn dnsmasq_args(listen: &[&str], pid_file: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--user=root",
    ]
    .map(String::from)
    .into();
    args.extend(listen.iter().map(|a| format!("--listen-address={a}")));
    args.push(format!("--pid-file={}", pid_file.display()));
    args
}

/// `timeout SECS ssh -i KEY ... -p PORT` from `from`: non-interactive (batch mode, no config or
/// known-hosts file, one identity); the caller adds options, `root@ADDR`, the command and stdio.
pub fn ssh_command(from: &Netns, secs: u32, key: &Path, port: u16) -> Command {
    let mut c = from.cmd("timeout");
    c.arg(secs.to_string())
        .arg("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
        .arg(port.to_string());
    c
}

/// The addresses among `addrs` that `from` opens a TCP connection to on `port`. Checked in
/// parallel: each silently dropped one costs the whole connect timeout.
pub fn reachable<'a>(from: &Netns, addrs: &[&'a str], port: u16) -> Vec<&'a str> {
    std::thread::scope(|s| {
        let checks: Vec<_> = addrs
            .iter()
            .map(|&a| s.spawn(move || tcp_connects(from, a, port).then_some(a)))
            .collect();
        checks
            .into_iter()
            .filter_map(|c| c.join().unwrap())
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers of the CLI tests (cli_*.rs): the tool's output, the grant command line, logins.
// ---------------------------------------------------------------------------------------------

/// The one JSON object a `--json` run prints on stdout.
pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", describe(out)))
}

/// The support host by DNS as the topology's dnsmasq answers it: documentation addresses, outside
/// OVH's published list, hence `--allow-private --trust-dns`.
pub const BY_DNS: [&str; 6] = [
    "--host",
    "cache-ng.ovh.net",
    "--resolver",
    DNS_V4,
    "--allow-private",
    "--trust-dns",
];

/// The command that prints the login proof, and what it prints when the login reached this
/// sshd as root.
pub const LOGIN_CMD: &str = "echo ok; id -u; hostname";
pub fn login_proof() -> String {
    format!("ok\n0\n{SERVER_HOSTNAME}\n")
}

impl Topology {
    /// `grant` for cache-ng.ovh.net as the topology's dnsmasq answers it, with the topology's own
    /// support key so that a real login is possible; `extra` comes right after `grant`.
    pub fn grant_args(&self, extra: &[&str]) -> Vec<std::ffi::OsString> {
        self.support_args("grant", extra)
    }

    /// `cmd` (grant, doctor) aimed at the support host [`BY_DNS`] and the topology's own support
    /// key; `extra` comes right after `cmd`.
    pub fn support_args(&self, cmd: &str, extra: &[&str]) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = [cmd]
            .iter()
            .chain(extra)
            .chain(&BY_DNS)
            .map(std::ffi::OsString::from)
            .collect();
        args.push("--key-file".into());
        args.push(self.support_pub().into());
        args
    }

    /// ssh (with `extra` options) from `from` to `addr:port` logs in as root on this server.
    pub fn assert_login_with(&self, from: &Netns, extra: &[&str], addr: &str, port: u16) {
        let out = self.ssh_with(from, extra, addr, port, LOGIN_CMD);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout) == login_proof(),
            "ssh {extra:?} root@{addr} -p {port} from {} should log in:\n{}",
            from.name,
            describe(&out)
        );
    }

    /// ssh (with `extra` options) from `from` reaches sshd on `addr:port` and sshd itself refuses
    /// the key ("Permission denied": the firewall let the connection through).
    pub fn assert_sshd_refuses(&self, from: &Netns, extra: &[&str], addr: &str, port: u16) {
        let out = self.ssh_with(from, extra, addr, port, LOGIN_CMD);
        assert!(
            !out.status.success()
                && out.stdout.is_empty()
                && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "sshd on {addr}:{port} should refuse the key from {} {extra:?} (not the network):\n{}",
            from.name,
            describe(&out)
        );
    }

    /// sshd's log lines that contain every one of `needles`.
    pub fn sshd_log_lines(&self, needles: &[&str]) -> Vec<String> {
        fs::read_to_string(self.sandbox.log("sshd"))
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }
}
