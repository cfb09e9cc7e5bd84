//! The fleet's world (fleet.rs drives it): network namespaces, sandboxes, daemons, Ansible's
//! files, and the PLAY RECAP parser. The layout, driven by `ansible-playbook` from a control host:
//!
//! ```text
//!   control  198.51.100.10 ─┐                 ┌─ srv1 198.51.100.11  sshd :22 (management)
//!   support  198.51.100.2  ─┼── hub (bridge) ─┼─ srv2 198.51.100.12       :2222 (support)
//!   stranger 198.51.100.3  ─┤                 └─ srv3 198.51.100.13
//!   dns      198.51.100.53 ─┘   (dnsmasq: cache-ng.ovh.net → the support host)
//! ```
//!
//! Every server has its own sandbox root, a default-deny nftables ruleset open only to the control
//! host on port 22, and one sshd on 22 and 2222 in a private mount namespace over its sandbox
//! (/root is the sandbox's, so the keys file the tool writes is the one sshd reads). A grant
//! without `ports` opens both to the support: `from=` limits where the key works from, not the
//! port. The control host logs in with its own key (authorized_keys); the module runs the tool
//! there with `root: <sandbox>`. The bridge lives in a namespace of its own, and no namespace has
//! a route beyond its link (198.51.100.0/24, and 2001:db8:1::/64 for the support's AAAA): neither
//! Ansible nor ssh can reach anything outside.
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, describe, run, tcp_connects, unique_suffix, wait_until, Netns};

pub const CONTROL: &str = "198.51.100.10";
pub const SUPPORT: &str = "198.51.100.2";
/// The support host's IPv6 address: DNS answers AAAA with it, as a dual-stack support host's
/// would (the logins of the test go over IPv4).
pub const SUPPORT_V6: &str = "2001:db8:1::2";
pub const STRANGER: &str = "198.51.100.3";
pub const DNS: &str = "198.51.100.53";
pub const SERVERS: [(&str, &str); 3] = [
    ("srv1", "198.51.100.11"),
    ("srv2", "198.51.100.12"),
    ("srv3", "198.51.100.13"),
];
pub const SUPPORT_HOST: &str = "cache-ng.ovh.net";
pub const SUPPORT_PORT: u16 = 2222;
/// Root-owned, checked before use, as the other root-only tests' sandboxes (topology.rs).
pub const BASE: &str = "/var/tmp/ovh-access-tests";
/// The longest one playbook may take: three hosts, a few tasks each, over ssh.
pub const PLAY_LIMIT: Duration = Duration::from_secs(300);

/// Default-deny, open only to the control host on the management port.
pub const RULESET: &str = "table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		iif \"lo\" accept
		ct state established,related accept
		ct state invalid drop
		meta l4proto icmp accept
		ip saddr 198.51.100.10 tcp dport 22 accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
	}
}
";

pub struct Server {
    pub name: &'static str,
    pub addr: &'static str,
    pub ns: Netns,
    /// The directory that stands for `/` on this server (`root:` of the module).
    pub root: PathBuf,
}

pub struct Fleet {
    pub dir: PathBuf,
    hub: Netns,
    pub control: Netns,
    pub support: Netns,
    pub stranger: Netns,
    pub dns: Netns,
    pub servers: Vec<Server>,
    daemons: Vec<(String, Child)>,
}

impl Fleet {
    pub fn new() -> Fleet {
        let dir = private_dir();
        let hub = Netns::new("oa-hub");
        hub.sh("ip link add br0 type bridge && ip link set br0 up");
        let node = |prefix: &str, port: &str, addr: &str| {
            let ns = Netns::new(prefix);
            hub.link(port, &ns, "eth0", &[], &[&format!("{addr}/24")]);
            hub.sh(&format!("ip link set {port} master br0"));
            ns
        };
        let control = node("oa-ctl", "p-ctl", CONTROL);
        let support = node("oa-fsup", "p-sup", SUPPORT);
        support.sh(&format!("ip addr add {SUPPORT_V6}/64 dev eth0 nodad"));
        let stranger = node("oa-fstr", "p-str", STRANGER);
        let dns = node("oa-fdns", "p-dns", DNS);
        let servers = SERVERS
            .iter()
            .map(|&(name, addr)| Server {
                name,
                addr,
                ns: node("oa-fsrv", &format!("p-{name}"), addr),
                root: dir.join(name),
            })
            .collect();
        let mut fleet = Fleet {
            dir,
            hub,
            control,
            support,
            stranger,
            dns,
            servers,
            daemons: Vec::new(),
        };
        keygen(&fleet.dir.join("control/id_ed25519"), "ansible@control");
        keygen(&fleet.dir.join("support/id_ed25519"), "support@fleet");
        fleet.start_dnsmasq();
        for i in 0..fleet.servers.len() {
            fleet.start_server(i);
        }
        fleet.write_ansible_files();
        fleet
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) {
        let log = fs::File::create(self.log(name)).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.daemons.push((name.to_string(), child));
    }

    fn start_dnsmasq(&mut self) {
        let pid = self.dir.join("dnsmasq.pid");
        let args = [
            "--no-daemon".to_string(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--bind-interfaces".into(),
            "--user=root".into(),
            format!("--listen-address={DNS}"),
            format!("--pid-file={}", pid.display()),
            format!("--address=/{SUPPORT_HOST}/{SUPPORT}"),
            format!("--address=/{SUPPORT_HOST}/{SUPPORT_V6}"),
            "--log-queries".into(),
            "--log-facility=-".into(),
        ];
        let mut cmd = self.dns.cmd("dnsmasq");
        cmd.args(&args);
        self.spawn("dnsmasq", &mut cmd);
        let up = wait_until(Duration::from_secs(15), || {
            let o = self.dns.sh_status(&format!("ss -lun | grep -q '{DNS}:53'"));
            o.status.success()
        });
        assert!(up, "dnsmasq does not listen:\n{}", self.logs());
    }

    /// The sandbox, the firewall, then sshd on 22 and 2222 (waited for, bounded).
    fn start_server(&mut self, i: usize) {
        let s = &self.servers[i];
        let r = &s.root;
        for (sub, mode) in [("etc/ssh", 0o755), ("root/.ssh", 0o700), ("run", 0o755)] {
            fs::create_dir_all(r.join(sub)).unwrap();
            fs::set_permissions(r.join(sub), fs::Permissions::from_mode(mode)).unwrap();
        }
        for d in ["etc", "root"] {
            let mode = if d == "root" { 0o700 } else { 0o755 };
            fs::set_permissions(r.join(d), fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        // "*": no password, yet not locked (sshd without PAM refuses a locked root, auth.c).
        fs::write(r.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
        fs::set_permissions(r.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
        // Management: the control host's key, in the file the tool never writes.
        let control_pub = fs::read_to_string(self.dir.join("control/id_ed25519.pub")).unwrap();
        let ak = r.join("root/.ssh/authorized_keys");
        fs::write(&ak, control_pub).unwrap();
        fs::set_permissions(&ak, fs::Permissions::from_mode(0o600)).unwrap();
        let host_key = r.join("etc/ssh/ssh_host_ed25519_key");
        keygen(&host_key, s.name);
        fs::write(
            r.join("etc/ssh/sshd_config"),
            format!(
                "Port 22\nPort {SUPPORT_PORT}\nHostKey {}\nPidFile {}\n\
                 PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes yes\nUseDNS no\nLogLevel VERBOSE\n",
                host_key.display(),
                r.join("run/sshd.pid").display()
            ),
        )
        .unwrap();
        let ruleset = r.join("ruleset.nft");
        fs::write(&ruleset, RULESET).unwrap();
        run(s.ns.cmd("nft").arg("-f").arg(&ruleset));

        // As topology.rs's sshd: a private mount and UTS namespace, /root and /etc/shadow from the
        // sandbox, /run and /var/log on tmpfs (sshd's privsep directory, login records).
        let sb = r.display();
        let script = format!(
            "set -e\n\
             hostname {name}\n\
             mount --bind '{sb}/root' /root\n\
             mount --bind '{sb}/etc/shadow' /etc/shadow\n\
             mount -t tmpfs -o mode=0755,size=1m oa-run /run\n\
             mount -t tmpfs -o mode=0755,size=1m oa-log /var/log\n\
             mkdir -m 0755 /run/sshd\n\
             exec /usr/sbin/sshd -D -e -f '{sb}/etc/ssh/sshd_config'\n",
            name = s.name
        );
        let mut cmd = s.ns.cmd("unshare");
        cmd.args([
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]);
        let name = format!("sshd-{}", s.name);
        self.spawn(&name, &mut cmd);
        let s = &self.servers[i];
        let up = wait_until(Duration::from_secs(15), || {
            tcp_connects(&s.ns, "127.0.0.1", 22) && tcp_connects(&s.ns, "127.0.0.1", SUPPORT_PORT)
        });
        assert!(up, "sshd on {} does not listen:\n{}", s.name, self.logs());
    }

    /// Inventory, ansible.cfg and the control host's home; everything Ansible uses is in `dir`.
    fn write_ansible_files(&self) {
        let d = &self.dir;
        fs::create_dir_all(d.join("home/tmp")).unwrap();
        fs::create_dir_all(d.join("cp")).unwrap();
        let mut inv = String::from("[fleet]\n");
        for s in &self.servers {
            inv.push_str(&format!(
                "{} ansible_host={} ovh_root={}\n",
                s.name,
                s.addr,
                s.root.display()
            ));
        }
        inv.push_str(&format!(
            "\n[fleet:vars]\nansible_user=root\nansible_ssh_private_key_file={key}\n\
             ansible_python_interpreter=/usr/bin/python3\novh_access_bin={bin}\n\
             support_key={sup}\nresolver={DNS}\n",
            key = d.join("control/id_ed25519").display(),
            bin = bin().display(),
            sup = d.join("support/id_ed25519.pub").display(),
        ));
        fs::write(d.join("inventory.ini"), inv).unwrap();
        fs::write(
            d.join("ansible.cfg"),
            format!(
                "[defaults]\ninventory = {inv}\nhost_key_checking = False\ngathering = explicit\n\
                 retry_files_enabled = False\nforks = 3\ntimeout = 10\n\
                 [ssh_connection]\npipelining = True\ncontrol_path_dir = {cp}\n\
                 ssh_args = -F /dev/null -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null \
                 -o StrictHostKeyChecking=no -o ControlMaster=auto -o ControlPersist=60s\n",
                inv = d.join("inventory.ini").display(),
                cp = d.join("cp").display(),
            ),
        )
        .unwrap();
    }

    /// `ansible-playbook` in the control namespace on `play` (YAML), with `extra` arguments.
    pub fn playbook(&self, name: &str, play: &str, extra: &[&str]) -> Play {
        let file = self.dir.join(format!("{name}.yml"));
        fs::write(&file, play).unwrap();
        let venv = crate::venv();
        let home = self.dir.join("home");
        let mut cmd = self.control.cmd("timeout");
        cmd.arg(PLAY_LIMIT.as_secs().to_string())
            .arg(venv.join("bin/ansible-playbook"))
            .arg(&file)
            .args(extra)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    venv.join("bin").display()
                ),
            )
            .env("HOME", &home)
            .env("LC_ALL", "C.UTF-8")
            .env("ANSIBLE_CONFIG", self.dir.join("ansible.cfg"))
            .env("ANSIBLE_COLLECTIONS_PATH", crate::collections_path())
            .env("ANSIBLE_COLLECTIONS_SCAN_SYS_PATH", "false")
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .stdin(Stdio::null());
        let started = Instant::now();
        let out = cmd.output().expect("run ansible-playbook");
        eprintln!(
            "play {name} {extra:?}: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Play {
            recap: recap(&out),
            text: String::from_utf8_lossy(&out.stdout).into_owned(),
            out,
        }
    }

    /// ssh as root with the support key from `from` to `addr:port`; true when it logged in and
    /// ran `hostname` (which prints the server's name).
    pub fn login(&self, from: &Netns, server: &Server, port: u16) -> bool {
        let out = from
            .cmd("timeout")
            .arg("20")
            .arg("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(self.dir.join("support/id_ed25519"))
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
            .arg(port.to_string())
            .arg(format!("root@{}", server.addr))
            .arg("hostname")
            .stdin(Stdio::null())
            .output()
            .expect("run ssh");
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == server.name
    }

    pub fn keys_text(&self, s: &Server) -> String {
        fs::read_to_string(s.root.join("root/.ssh/authorized_keys2")).unwrap_or_default()
    }

    pub fn support_blob(&self) -> String {
        let line = fs::read_to_string(self.dir.join("support/id_ed25519.pub")).unwrap();
        line.split_whitespace().nth(1).unwrap().to_string()
    }

    /// Nobody, neither the support nor the stranger, reaches any server's SSH ports. Checked in
    /// parallel: each silently dropped connection costs the whole connect timeout.
    pub fn assert_nobody_reaches(&self, what: &str) {
        let reached: Vec<String> = std::thread::scope(|scope| {
            let mut checks = Vec::new();
            for s in &self.servers {
                for port in [22, SUPPORT_PORT] {
                    for from in [&self.support, &self.stranger] {
                        checks.push(scope.spawn(move || {
                            tcp_connects(from, s.addr, port)
                                .then(|| format!("{}:{port} from {}", s.name, from.name))
                        }));
                    }
                }
            }
            checks
                .into_iter()
                .filter_map(|c| c.join().unwrap())
                .collect()
        });
        assert!(reached.is_empty(), "{what}: reachable: {reached:?}");
    }

    /// Each server's `nft list ruleset`, in order.
    pub fn rulesets(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.ns.ruleset()).collect()
    }

    /// Each server's keys file, in order.
    pub fn keys_texts(&self) -> Vec<String> {
        self.servers.iter().map(|s| self.keys_text(s)).collect()
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for (name, _) in &self.daemons {
            let text = fs::read_to_string(self.log(name)).unwrap_or_default();
            all.push_str(&format!("--- {name} log ---\n{text}"));
        }
        all
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("fleet {}:\n{}", self.dir.display(), self.logs());
        }
        for (_, child) in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The namespace guards (fields) then kill what is left (ssh masters of ControlPersist)
        // and delete the namespaces; the directory goes last.
        for ns in [
            &self.control,
            &self.support,
            &self.stranger,
            &self.dns,
            &self.hub,
        ] {
            ns.kill_all();
        }
        for s in &self.servers {
            s.ns.kill_all();
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("warning: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// One run of ansible-playbook: its output and the PLAY RECAP per host.
pub struct Play {
    pub out: Output,
    pub text: String,
    pub recap: BTreeMap<String, Counts>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub ok: u32,
    pub changed: u32,
    pub unreachable: u32,
    pub failed: u32,
}

impl Play {
    pub fn counts(&self, host: &str) -> Counts {
        *self
            .recap
            .get(host)
            .unwrap_or_else(|| panic!("{host} is not in the recap:\n{}", describe(&self.out)))
    }

    /// Every server ran without failure, with `changed` tasks each.
    pub fn assert_all(&self, what: &str, changed: u32) {
        for (name, _) in SERVERS {
            let c = self.counts(name);
            assert!(
                c.failed == 0 && c.unreachable == 0 && c.changed == changed,
                "{what}: {name} should have changed={changed} failed=0, has {c:?}:\n{}",
                describe(&self.out)
            );
        }
        assert!(
            self.out.status.success(),
            "{what}:\n{}",
            describe(&self.out)
        );
    }
}

/// `srv1 : ok=2 changed=1 unreachable=0 failed=0 ...` lines after `PLAY RECAP`.
fn recap(out: &Output) -> BTreeMap<String, Counts> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = BTreeMap::new();
    let Some((_, tail)) = text.split_once("PLAY RECAP") else {
        return map;
    };
    for line in tail.lines() {
        let Some((host, rest)) = line.split_once(" : ") else {
            continue;
        };
        let mut c = Counts::default();
        for kv in rest.split_whitespace() {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = v.parse().unwrap_or(u32::MAX);
            match k {
                "ok" => c.ok = v,
                "changed" => c.changed = v,
                "unreachable" => c.unreachable = v,
                "failed" => c.failed = v,
                _ => {}
            }
        }
        map.insert(host.trim().to_string(), c);
    }
    map
}

/// `<BASE>/fleet-<suffix>`, root's alone.
fn private_dir() -> PathBuf {
    let base = Path::new(BASE);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(base)
        .unwrap();
    let meta = fs::symlink_metadata(base).unwrap();
    assert!(
        meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o022 == 0,
        "{BASE} must be a root-owned directory writable only by root; remove it and run again"
    );
    let dir = base.join(format!("fleet-{}", unique_suffix()));
    fs::DirBuilder::new().mode(0o755).create(&dir).unwrap();
    dir
}

fn keygen(path: &Path, comment: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::set_permissions(path.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path));
}
