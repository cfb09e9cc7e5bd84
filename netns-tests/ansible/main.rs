//! The Ansible collection `ovh.access` (ansible/ansible_collections/ovh/access): `ansible-doc`
//! renders its modules, `ansible-galaxy collection build` packs it, `ansible-test sanity` passes,
//! and a fleet of three servers in network namespaces is granted, checked and revoked by
//! `ansible-playbook` (fleet.rs); mapping.rs checks the modules against a stand-in for the
//! command. A test target of its own: the virtualenv (ansible-core from
//! PyPI, kept under /var/tmp by scripts/ansible-venv) and the plays take minutes, not seconds.
//!
//! Root only: the virtualenv and ansible-test's caches are root's directories under /var/tmp,
//! and the fleet needs network namespaces.
#[path = "../common/mod.rs"]
mod common;
mod fleet;
mod mapping;
mod world;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::{describe, run};

/// The repository's directory.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `<repo>/ansible`: what ANSIBLE_COLLECTIONS_PATH names to use the collection in place.
fn collections_path() -> PathBuf {
    repo().join("ansible")
}

fn collection_dir() -> PathBuf {
    collections_path().join("ansible_collections/ovh/access")
}

/// True when the Ansible tests can run here; otherwise says why they skip.
fn can_run(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "SKIP {test}: the Ansible tests need root (the virtualenv under /var/tmp is root's, \
             the fleet needs network namespaces); run `sudo cargo test --test ansible` or the \
             README's test command"
        );
        return false;
    }
    true
}

/// The virtualenv with ansible-core, created on first use (once per test process: the tests
/// of this target run in parallel and must not build it twice) and reused between runs.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let started = std::time::Instant::now();
        let out = run(&mut Command::new(repo().join("scripts/ansible-venv")));
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        eprintln!(
            "ansible venv {} ready in {:.1} s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
        dir
    })
}

/// A program of the virtualenv, with an environment that keeps Ansible inside `home` (its
/// caches, temp files and config) and on this repository's collection only: nothing of root's
/// ~/.ansible or the system's collections is read, and nothing is fetched.
fn ansible_cmd(program: &str, home: &Path) -> Command {
    let mut c = Command::new(venv().join("bin").join(program));
    c.env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                venv().join("bin").display()
            ),
        )
        .env("HOME", home)
        .env("LC_ALL", "C.UTF-8")
        .env("ANSIBLE_COLLECTIONS_PATH", collections_path())
        .env("ANSIBLE_COLLECTIONS_SCAN_SYS_PATH", "false")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        // A module run on localhost would otherwise put its files under the user's home as
        // the password database has it (/root/.ansible), whatever HOME says.
        .env("ANSIBLE_REMOTE_TEMP", home.join("remote-tmp"))
        .stdin(Stdio::null());
    c
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}:\n{}", describe(&out));
    out
}

#[test]
fn ansible_doc_renders_both_modules_with_the_clis_option_names() {
    if !can_run("ansible_doc_renders_both_modules_with_the_clis_option_names") {
        return;
    }
    let home = scratch();
    for module in [
        "ovh.access.support_access",
        "ovh.access.support_access_info",
    ] {
        let out = ok(ansible_cmd("ansible-doc", home.path()).arg(module));
        let text = String::from_utf8_lossy(&out.stdout);
        for part in ["OPTIONS", "EXAMPLES", "RETURN VALUES", "executable", "root"] {
            assert!(
                text.contains(part),
                "ansible-doc {module} lacks {part}:\n{text}"
            );
        }
    }
    // Every option but `state`, `executable` and `root` is a flag of grant or revoke, spelled
    // with `-` for `_` (duration is `--for`).
    let out = ok(ansible_cmd("ansible-doc", home.path()).args(["-j", "ovh.access.support_access"]));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let options = doc["ovh.access.support_access"]["doc"]["options"]
        .as_object()
        .unwrap_or_else(|| panic!("no options in {doc}"));
    let help = |cmd: &str| {
        let out = run(Command::new(common::bin()).args([cmd, "--help"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let flags = help("grant") + &help("revoke");
    for name in options.keys() {
        let flag = match name.as_str() {
            "state" | "executable" | "root" => continue,
            "duration" => "--for".to_string(),
            "addresses" => "--address".to_string(),
            "ports" => "--port".to_string(),
            other => format!("--{}", other.replace('_', "-")),
        };
        assert!(
            flags.contains(&format!("{flag} ")) || flags.contains(&format!("{flag}\n")),
            "option {name}: no {flag} in `ovh-access grant/revoke --help`"
        );
    }
    assert_eq!(
        options.len(),
        18,
        "{:?}",
        options.keys().collect::<Vec<_>>()
    );
}

#[test]
fn ansible_galaxy_builds_the_collection() {
    if !can_run("ansible_galaxy_builds_the_collection") {
        return;
    }
    let home = scratch();
    let outdir = home.path().join("out");
    ok(ansible_cmd("ansible-galaxy", home.path())
        .args(["collection", "build", "--output-path"])
        .arg(&outdir)
        .arg(collection_dir()));
    let tarball = outdir.join("ovh-access-0.1.0.tar.gz");
    let out = ok(Command::new("tar").arg("-tzf").arg(&tarball));
    let list = String::from_utf8_lossy(&out.stdout);
    for f in [
        "MANIFEST.json",
        "FILES.json",
        "README.md",
        "meta/runtime.yml",
        "plugins/modules/support_access.py",
        "plugins/modules/support_access_info.py",
        "plugins/module_utils/ovh_access.py",
    ] {
        assert!(
            list.lines().any(|l| l == f),
            "{f} missing from the tarball:\n{list}"
        );
    }
    // Installed from the tarball (no server is asked: no dependencies), it documents itself.
    let installed = home.path().join("installed");
    // (Not beside the repository's copy: ansible-galaxy would find it installed already.)
    ok(ansible_cmd("ansible-galaxy", home.path())
        .env("ANSIBLE_COLLECTIONS_PATH", &installed)
        .args(["collection", "install", "--offline", "-p"])
        .arg(&installed)
        .arg(&tarball));
    let out = ok(ansible_cmd("ansible-doc", home.path())
        .env("ANSIBLE_COLLECTIONS_PATH", &installed)
        .arg("ovh.access.support_access_info"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("consistent"),
        "{}",
        describe(&out)
    );
}

#[test]
fn ansible_test_sanity_passes() {
    if !can_run("ansible_test_sanity_passes") {
        return;
    }
    venv();
    let out = Command::new(repo().join("scripts/ansible-sanity"))
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/ansible-sanity");
    assert!(
        out.status.success(),
        "ansible-test sanity:\n{}",
        describe(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for t in ["validate-modules", "compile", "pep8", "yamllint"] {
        assert!(
            text.contains(&format!("Running sanity test \"{t}\"")),
            "{t} did not run:\n{text}"
        );
    }
}

/// A temporary directory whose name does not start with a dot (Ansible skips collections found
/// under hidden directories, and tempfile's default names are `.tmpXXXX`).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ovh-access-ansible-")
        .tempdir()
        .unwrap()
}
