//! The packages scripts/package made, tried as an operator would: the .deb installed by apt on
//! fresh Debian 12 and 13 minbase systems and purged again, the static binary on Debian 11
//! (glibc 2.31), the units through `systemd-analyze verify`, the RPM's file list against the
//! .deb's, and lintian.
//!
//! Slow (debootstrap chroots, cached under /var/tmp/ovh-access-chroots by scripts/debian-chroot;
//! apt downloads) and root only: its own test target. The chroots are only copied (`cp -a`) or
//! read; every mount lives in a private mount namespace, and the tool itself runs in a fresh,
//! empty network namespace (`unshare --net`). Nothing is started: no systemd runs in a chroot,
//! and the chroots carry a policy-rc.d that refuses.
//!
//! Without root, or before `./scripts/package`, each test skips and says why;
//! `OVH_ACCESS_PACKAGES_REQUIRED=1` (set by scripts/test) turns a missing package into a failure.
#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{describe, run, unique_suffix};

/// Packages the install tests need besides the minbase system: man-db to ask `man -w`, the
/// shells to ask where they look for completions, systemd for `systemd-analyze verify`.
const CHROOT_PKGS: &[&str] = &["bash-completion", "fish", "man-db", "systemd", "zsh"];

const UNITS: &[&str] = &[
    "ovh-access-restore.service",
    "ovh-access-refresh.service",
    "ovh-access-refresh.timer",
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What scripts/package made.
struct Artifacts {
    deb: PathBuf,
    rpm: PathBuf,
    dist: PathBuf,
}

/// The artifacts, or None (after saying why) when this test cannot run here.
fn artifacts(test: &str) -> Option<Artifacts> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP {test}: the package tests need root (chroots, dpkg); run `./scripts/test` as root");
        return None;
    }
    if std::env::var_os("OVH_ACCESS_SKIP_PACKAGES").is_some() {
        eprintln!("SKIP {test}: OVH_ACCESS_SKIP_PACKAGES is set (scripts/test built no packages)");
        return None;
    }
    let version = env!("CARGO_PKG_VERSION");
    let find = |dir: &str, prefix: &str, suffix: &str| -> Option<PathBuf> {
        let dir = manifest_dir().join(dir);
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(prefix) && n.ends_with(suffix)
            })
            .collect();
        found.sort();
        found.pop()
    };
    let deb = find(
        "target/debian",
        &format!("ovh-access_{version}-"),
        "_amd64.deb",
    );
    let rpm = find(
        "target/generate-rpm",
        &format!("ovh-access-{version}-"),
        ".x86_64.rpm",
    );
    let dist = manifest_dir().join("target/dist/ovh-access-x86_64-linux");
    match (deb, rpm, dist.exists()) {
        (Some(deb), Some(rpm), true) => Some(Artifacts { deb, rpm, dist }),
        _ => {
            let msg = format!(
                "{test}: no packages of version {version} in target/ (debian, generate-rpm, dist); run ./scripts/package first"
            );
            if std::env::var_os("OVH_ACCESS_PACKAGES_REQUIRED").is_some() {
                panic!("{msg}");
            }
            eprintln!("SKIP {msg}");
            None
        }
    }
}

/// What `ovh-access --version` must print: this checkout's version and commit.
fn expected_version() -> String {
    format!(
        "ovh-access {} (commit {})",
        env!("CARGO_PKG_VERSION"),
        env!("OVH_ACCESS_COMMIT")
    )
}

/// A cached minbase chroot of `suite` with `pkgs` (scripts/debian-chroot builds it once).
fn chroot(suite: &str, pkgs: &[&str]) -> PathBuf {
    let out = run(Command::new(manifest_dir().join("scripts/debian-chroot"))
        .arg(suite)
        .args(pkgs));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A private copy of a chroot, deleted when dropped.
struct RootCopy {
    dir: PathBuf,
}

impl RootCopy {
    fn of(base: &Path, name: &str) -> RootCopy {
        let parent = Path::new("/var/tmp/ovh-access-tests");
        std::fs::create_dir_all(parent).unwrap();
        let dir = parent.join(format!("{name}-{}", unique_suffix()));
        run(Command::new("cp").arg("-a").arg(base).arg(&dir));
        RootCopy { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }
}

impl Drop for RootCopy {
    fn drop(&mut self) {
        // Mounts exist only in the private namespaces of the commands: none can be under here.
        let _ = Command::new("rm")
            .arg("-rf")
            .arg("--one-file-system")
            .arg(&self.dir)
            .status();
    }
}

/// Whether a command in the chroot may use the network (apt) or gets a fresh, empty network
/// namespace (everything that runs the tool or its maintainer scripts' helpers).
#[derive(Clone, Copy, PartialEq)]
enum Net {
    Host,
    Isolated,
}

/// Runs `args` chrooted into `root`, with /proc mounted, inside a private mount namespace.
fn in_chroot(root: &Path, net: Net, args: &[&str]) -> Output {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private"]);
    if net == Net::Isolated {
        c.arg("--net");
    }
    c.args([
        "sh",
        "-c",
        r#"mount -t proc proc "$0/proc" && exec chroot "$0" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@""#,
    ]);
    c.arg(root).args(args);
    c.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare: {e}"))
}

fn ok_in(root: &Path, net: Net, args: &[&str]) -> String {
    let out = in_chroot(root, net, args);
    assert!(
        out.status.success(),
        "{args:?} in {}:\n{}",
        root.display(),
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path under `root`, except what changes without any package doing it (kernel file
/// systems, temporary files, logs, caches) and dpkg's and apt's own bookkeeping.
fn tree(root: &Path) -> BTreeSet<String> {
    const SKIP: &[&str] = &[
        "/proc",
        "/sys",
        "/dev",
        "/run",
        "/tmp",
        "/var/tmp",
        "/var/log",
        "/var/cache",
        "/var/lib/dpkg",
        "/var/lib/apt",
    ];
    fn walk(root: &Path, rel: &str, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(root.join(rel.trim_start_matches('/'))) else {
            return;
        };
        for e in entries.flatten() {
            let p = format!("{rel}/{}", e.file_name().to_string_lossy());
            if SKIP.contains(&p.as_str()) {
                continue;
            }
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            out.insert(p.clone());
            if is_dir {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, "", &mut out);
    out
}

fn installed_packages(root: &Path) -> BTreeSet<String> {
    ok_in(
        root,
        Net::Isolated,
        &["dpkg-query", "-W", "-f", "${Package}\\n"],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The .deb's maintainer script `name`, as dpkg will run it.
fn control_script(deb: &Path, name: &str) -> String {
    let out = run(Command::new("dpkg-deb").arg("-I").arg(deb).arg(name));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Install the .deb with apt on a fresh minbase `suite`, use it, purge it; nothing may remain.
fn deb_lifecycle(test: &str, suite: &str) {
    let Some(art) = artifacts(test) else { return };
    let base = chroot(suite, CHROOT_PKGS);
    let root = RootCopy::of(&base, &format!("pkg-{suite}"));
    let before = tree(&root.dir);
    let packages_before = installed_packages(&root.dir);

    let deb_name = art.deb.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::copy(&art.deb, root.path("/tmp").join(&deb_name)).unwrap();
    ok_in(&root.dir, Net::Host, &["apt-get", "update", "-qq"]);
    let deb_in_root = format!("/tmp/{deb_name}");
    ok_in(
        &root.dir,
        Net::Host,
        &[
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            &deb_in_root,
        ],
    );
    let new_packages: Vec<String> = installed_packages(&root.dir)
        .difference(&packages_before)
        .cloned()
        .collect();
    assert!(
        new_packages.iter().any(|p| p.starts_with("libnftnl")),
        "apt must have installed libnftnl for the package's Depends; it installed {new_packages:?}"
    );

    let version = ok_in(&root.dir, Net::Isolated, &["ovh-access", "--version"]);
    assert_eq!(version.trim(), expected_version(), "on {suite}");
    let profiles = ok_in(&root.dir, Net::Isolated, &["ovh-access", "profiles"]);
    assert!(
        profiles.contains("cache-ng.ovh.net"),
        "profiles on {suite}:\n{profiles}"
    );

    check_docs(&root, suite);
    check_units_enabled_not_started(&root, &art.deb, suite);
    check_units_verify(&root, suite);

    ok_in(&root.dir, Net::Isolated, &["dpkg", "-P", "ovh-access"]);
    let mut left: BTreeSet<String> = tree(&root.dir).difference(&before).cloned().collect();
    // What the dependencies apt pulled in installed is theirs, not ours.
    for p in &new_packages {
        if p == "ovh-access" {
            continue;
        }
        for f in ok_in(&root.dir, Net::Isolated, &["dpkg", "-L", p]).lines() {
            left.remove(f);
        }
    }
    assert!(
        left.is_empty(),
        "dpkg -P ovh-access left these behind on {suite}: {left:#?}"
    );
}

/// The man pages where man-db finds them, and each shell finding its completion where that
/// distribution's shell looks.
fn check_docs(root: &RootCopy, suite: &str) {
    for page in ["ovh-access", "ovh-access-grant", "ovh-access-revoke"] {
        let path = ok_in(&root.dir, Net::Isolated, &["man", "-w", page]);
        assert_eq!(
            path.trim(),
            format!("/usr/share/man/man8/{page}.8.gz"),
            "on {suite}"
        );
    }
    let page = ok_in(
        &root.dir,
        Net::Isolated,
        &["man", "-P", "cat", "8", "ovh-access"],
    );
    assert!(
        page.contains("EXIT STATUS") && page.contains("ovh-access-grant(8)"),
        "the rendered page on {suite}:\n{page}"
    );
    // bash-completion loads /usr/share/bash-completion/completions/<command> on demand.
    let bash = ok_in(
        &root.dir,
        Net::Isolated,
        &[
            "bash",
            "-c",
            ". /usr/share/bash-completion/bash_completion && __load_completion ovh-access && complete -p ovh-access",
        ],
    );
    assert!(bash.contains("ovh-access"), "bash on {suite}: {bash}");
    // compinit reads every #compdef file on zsh's own $fpath.
    let zsh = ok_in(
        &root.dir,
        Net::Isolated,
        &[
            "zsh",
            "-fc",
            "autoload -Uz compinit && compinit -u -d /tmp/zcompdump && print -r -- ${_comps[ovh-access]}",
        ],
    );
    assert_eq!(zsh.trim(), "_ovh-access", "zsh on {suite}");
    // fish finds vendor completions by itself; asking it to complete proves it loaded ours.
    let fish = ok_in(
        &root.dir,
        Net::Isolated,
        &["fish", "-c", "complete -C 'ovh-access gr'"],
    );
    assert!(
        fish.lines().any(|l| l.starts_with("grant")),
        "fish on {suite}: {fish}"
    );
}

/// deb-systemd-helper enabled the restore service and the refresh timer (the symlinks systemd
/// follows at boot), and the maintainer scripts start nothing.
fn check_units_enabled_not_started(root: &RootCopy, deb: &Path, suite: &str) {
    for (wants, unit) in [
        ("multi-user.target.wants", "ovh-access-restore.service"),
        ("timers.target.wants", "ovh-access-refresh.timer"),
    ] {
        let link = root.path(&format!("/etc/systemd/system/{wants}/{unit}"));
        let target = std::fs::read_link(&link)
            .unwrap_or_else(|e| panic!("{unit} not enabled on {suite} ({}): {e}", link.display()));
        // Debian 12's deb-systemd-helper links through /lib (the same directory on a merged /usr).
        assert!(
            [
                Path::new("/usr/lib/systemd/system"),
                Path::new("/lib/systemd/system")
            ]
            .iter()
            .any(|d| target == d.join(unit)),
            "{} points to {} on {suite}",
            link.display(),
            target.display()
        );
        assert!(
            root.path(&target.to_string_lossy()).exists(),
            "{} is dangling on {suite}",
            link.display()
        );
    }
    let postinst = control_script(deb, "postinst");
    assert!(
        postinst.contains("deb-systemd-helper enable"),
        "postinst:\n{postinst}"
    );
    for starts in [
        "deb-systemd-invoke start",
        "deb-systemd-invoke restart",
        "systemctl start",
    ] {
        assert!(
            !postinst.contains(starts),
            "postinst must start nothing:\n{postinst}"
        );
    }
}

/// `systemd-analyze verify` of the installed units, in the chroot (its systemd, its binary at
/// /usr/sbin), after checking on a broken copy that the verification really rejects something.
fn check_units_verify(root: &RootCopy, suite: &str) {
    let verify = |units: &[String]| {
        // --man (the default) also checks that Documentation=man:ovh-access(8) resolves.
        let mut args = vec!["systemd-analyze", "verify"];
        args.extend(units.iter().map(String::as_str));
        in_chroot(&root.dir, Net::Isolated, &args)
    };
    let broken_dir = root.path("/tmp/broken");
    std::fs::create_dir_all(&broken_dir).unwrap();
    let unit =
        std::fs::read_to_string(root.path("/usr/lib/systemd/system/ovh-access-restore.service"))
            .unwrap();
    std::fs::write(
        broken_dir.join("ovh-access-broken.service"),
        unit.replace("/usr/sbin/ovh-access", "/usr/sbin/ovh-access-missing"),
    )
    .unwrap();
    let out = verify(&["/tmp/broken/ovh-access-broken.service".to_owned()]);
    assert!(
        !out.status.success(),
        "systemd-analyze verify accepted a unit whose ExecStart does not exist on {suite}: it checks nothing\n{}",
        describe(&out)
    );
    let units: Vec<String> = UNITS
        .iter()
        .map(|u| format!("/usr/lib/systemd/system/{u}"))
        .collect();
    let out = verify(&units);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("ovh-access"),
        "systemd-analyze verify on {suite}:\n{}",
        describe(&out)
    );
}

#[test]
fn deb_installs_runs_and_purges_on_debian_12() {
    deb_lifecycle("deb_installs_runs_and_purges_on_debian_12", "bookworm");
}

#[test]
fn deb_installs_runs_and_purges_on_debian_13() {
    deb_lifecycle("deb_installs_runs_and_purges_on_debian_13", "trixie");
}

/// The static binary on Debian 11's userland (glibc 2.31, older than the 2.34 the dynamic build
/// needs), copied onto a tmpfs over the chroot's /tmp in a private mount namespace: it runs,
/// and it grants and revokes through the kernel's nftables.
#[test]
fn static_binary_runs_on_debian_11() {
    let test = "static_binary_runs_on_debian_11";
    let Some(art) = artifacts(test) else { return };
    let root = chroot("bullseye", &[]);
    assert!(
        root.join("lib/x86_64-linux-gnu/libc-2.31.so").exists(),
        "the Debian 11 chroot should have glibc 2.31"
    );
    let readelf = run(Command::new("readelf").args(["-d", "-l"]).arg(&art.dist));
    let text = String::from_utf8_lossy(&readelf.stdout);
    assert!(
        !text.contains("NEEDED") && !text.contains("INTERP"),
        "target/dist/ovh-access-x86_64-linux is not static:\n{text}"
    );
    // In a fresh network namespace with a default-deny nftables chain (the machine's nft, outside
    // the chroot): a grant and a revoke for real, through the static libnftnl and libmnl, on a
    // sandbox root inside the tmpfs; the host's nft shows what the kernel got.
    let script = r#"set -e
        mount -t tmpfs tmpfs "$0/tmp"; cp "$1" "$0/tmp/ovh-access"; mount -t proc proc "$0/proc"
        nft add table inet filter
        nft add chain inet filter input '{ type filter hook input priority 0; policy drop; }'
        mkdir -p "$0/tmp/sb/etc" "$0/tmp/sb/root/.ssh"; chmod 700 "$0/tmp/sb/root/.ssh"
        echo 'root:x:0:0:root:/root:/bin/sh' >"$0/tmp/sb/etc/passwd"
        tool() { chroot "$0" /tmp/ovh-access "$@"; }
        tool --version; tool profiles
        tool --root /tmp/sb grant --region eu --no-dns --port 22 --for 1h >/dev/null 2>&1
        echo "== granted"; nft list chain inet filter ovh_access; cat "$0/tmp/sb/root/.ssh/authorized_keys2"
        tool --root /tmp/sb revoke >/dev/null 2>&1
        echo "== revoked"; nft list ruleset"#;
    let out = run(Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--net",
            "sh",
            "-c",
            script,
        ])
        .arg(&root)
        .arg(&art.dist));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().next(), Some(expected_version().as_str()));
    let (before, rest) = stdout.split_once("== granted").expect("the grant ran");
    let (granted, revoked) = rest.split_once("== revoked").expect("the revoke ran");
    assert!(
        before.contains("cache-ng.ovh.net"),
        "profiles on Debian 11:\n{before}"
    );
    assert!(
        granted.contains("ip saddr @ovh_access_v4 tcp dport { 22 } accept")
            && granted.contains("from=\"178.33.222.162,"),
        "the grant on Debian 11:\n{granted}"
    );
    assert!(
        !revoked.contains("ovh_access") && revoked.contains("policy drop"),
        "the revoke on Debian 11 left:\n{revoked}"
    );
}

/// The files of the RPM are the .deb's, at the RHEL paths where the distributions differ, and the
/// RPM's binary is the static one.
#[test]
fn rpm_lists_the_files_of_the_deb() {
    let test = "rpm_lists_the_files_of_the_deb";
    let Some(art) = artifacts(test) else { return };
    let deb_files: BTreeSet<String> =
        String::from_utf8(run(Command::new("dpkg-deb").arg("-c").arg(&art.deb)).stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('d'))
            .filter_map(|l| l.split_whitespace().nth(5))
            .map(|p| p.trim_start_matches('.').to_owned())
            .collect();
    let rpm_files: BTreeSet<String> = String::from_utf8(
        run(Command::new("rpm")
            .args(["-qpl", "--nosignature"])
            .arg(&art.rpm))
        .stdout,
    )
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect();
    // Debian's path → the RHEL family's, only where the distributions disagree.
    let rhel = |p: &str| -> String {
        match p {
            "/usr/share/zsh/vendor-completions/_ovh-access" => {
                "/usr/share/zsh/site-functions/_ovh-access".into()
            }
            "/usr/share/doc/ovh-access/copyright" => {
                "/usr/share/licenses/ovh-access/copyright".into()
            }
            "/usr/share/doc/ovh-access/changelog.Debian.gz" => {
                "/usr/share/doc/ovh-access/changelog.gz".into()
            }
            _ => p.into(),
        }
    };
    let mapped: BTreeSet<String> = deb_files.iter().map(|p| rhel(p)).collect();
    assert_eq!(
        mapped, rpm_files,
        "deb files (mapped to RHEL paths) vs rpm -qpl"
    );
    assert!(
        deb_files.contains("/usr/sbin/ovh-access")
            && deb_files.contains("/usr/share/man/man8/ovh-access.8.gz")
    );

    let binary = run(Command::new("sh")
        .args([
            "-c",
            r#"rpm2cpio "$0" | cpio -i --quiet --to-stdout ./usr/sbin/ovh-access"#,
        ])
        .arg(&art.rpm));
    assert!(
        binary.stdout == std::fs::read(&art.dist).unwrap(),
        "the RPM's /usr/sbin/ovh-access is not target/dist/ovh-access-x86_64-linux"
    );
    let scripts = String::from_utf8(
        run(Command::new("rpm")
            .args(["-qp", "--scripts", "--nosignature"])
            .arg(&art.rpm))
        .stdout,
    )
    .unwrap();
    assert!(
        scripts.contains(
            "systemctl --no-reload preset ovh-access-restore.service ovh-access-refresh.timer"
        ),
        "{scripts}"
    );
    assert!(scripts.contains("revoke --keep-sessions"), "{scripts}");
}

/// lintian finds no error in the .deb; its warnings are printed for the record.
#[test]
fn lintian_finds_no_error() {
    let test = "lintian_finds_no_error";
    let Some(art) = artifacts(test) else { return };
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--display-info"])
        .arg(&art.deb)
        .stdin(Stdio::null())
        .output()
        .expect("lintian (scripts/package --with-test-deps installs it)");
    eprintln!("lintian:\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "lintian:\n{}", describe(&out));
}

/// Debian 11 builds from source against its own libnftnl 1.1.9 and libmnl (the crate's nftnl
/// feature asks for no newer API), and the result runs there (scripts/build-in-chroot).
#[test]
fn debian_11_builds_against_its_own_libnftnl() {
    let test = "debian_11_builds_against_its_own_libnftnl";
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root (chroot, mounts); run `./scripts/test` as root");
        return;
    }
    let out = run(Command::new(manifest_dir().join("scripts/build-in-chroot")).arg("bullseye"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("libnftnl 1.1.9"), "{stdout}");
    assert_eq!(lines.next(), Some(expected_version().as_str()), "{stdout}");
    assert!(stdout.contains("cache-ng.ovh.net"), "{stdout}");
}
