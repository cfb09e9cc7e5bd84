//! The keys-file writer against a hostile or unusual home, each case on its own sandbox root.
//! These run as root (as the tool does): ownership checks compare with uid 0, and a foreign owner
//! is simulated with chown to an unused uid on a sandbox file.
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ovh_access::error::exit_code;
use ovh_access::keys::{self, EditOutcome, WriteOutcome};
use ovh_access::root::Root;
use ovh_access::support::SupportKey;

const KEYS: &str = "/root/.ssh/authorized_keys2";

struct Sandbox {
    dir: tempfile::TempDir,
    root: Root,
}

impl Sandbox {
    /// A root with /etc/passwd and /root (0700), and `.ssh` (0700) when asked.
    fn new(with_ssh: bool) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        mkdir(&dir.path().join("root"), 0o700);
        if with_ssh {
            mkdir(&dir.path().join("root/.ssh"), 0o700);
        }
        let root = Root::new(dir.path()).unwrap();
        Sandbox { dir, root }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }

    fn keys_path(&self) -> PathBuf {
        self.p(KEYS)
    }

    fn write_keys(&self, content: &[u8]) {
        let p = self.keys_path();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn grant(&self) -> anyhow::Result<WriteOutcome> {
        self.grant_with(false)
    }

    fn grant_with(&self, replace_foreign: bool) -> anyhow::Result<WriteOutcome> {
        let key = eu();
        keys::update(&self.root, Path::new(KEYS), false, &mut |c: &[u8]| {
            keys::install(
                c,
                std::slice::from_ref(&key),
                &addrs(),
                None,
                replace_foreign,
            )
        })
    }

    /// Every file name in a directory (to see that no temp file was left behind).
    fn names(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.p(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn mkdir(p: &Path, mode: u32) {
    fs::create_dir(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn eu() -> SupportKey {
    let text = fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/keys/ovh-eu.pub"
    ))
    .unwrap();
    keys::parse_key_file(&text, "ovh-eu.pub").unwrap().remove(0)
}

fn addrs() -> Vec<std::net::IpAddr> {
    vec![
        "192.0.2.10".parse().unwrap(),
        "2001:db8::10".parse().unwrap(),
    ]
}

fn fixture() -> Vec<u8> {
    fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/keys/existing.authorized_keys"
    ))
    .unwrap()
}

fn msg(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

#[test]
fn creates_ssh_dir_and_file_root_owned_with_strict_modes() {
    let s = Sandbox::new(false);
    let out = s.grant().unwrap();
    assert!(out.created && out.changed);
    assert_eq!(out.path, PathBuf::from(KEYS));
    let d = fs::metadata(s.p("/root/.ssh")).unwrap();
    assert_eq!((d.mode() & 0o7777, d.uid()), (0o700, 0));
    let f = fs::symlink_metadata(s.keys_path()).unwrap();
    assert_eq!((f.mode() & 0o7777, f.uid(), f.nlink()), (0o600, 0, 1));
    assert_eq!(fs::read(s.keys_path()).unwrap(), out.after);
    assert_eq!(s.names("/root/.ssh"), vec!["authorized_keys2"]);
}

#[test]
fn dry_run_creates_and_writes_nothing() {
    let s = Sandbox::new(false);
    let key = eu();
    let out = keys::update(&s.root, Path::new(KEYS), true, &mut |c: &[u8]| {
        keys::install(c, std::slice::from_ref(&key), &addrs(), None, false)
    })
    .unwrap();
    assert!(out.changed && out.created && !out.after.is_empty());
    assert!(!s.p("/root/.ssh").exists());
    assert_eq!(keys::read(&s.root, Path::new(KEYS)).unwrap(), None);
}

#[test]
fn missing_home_is_never_created_not_even_in_a_dry_run() {
    let s = Sandbox::new(false);
    fs::remove_dir(s.p("/root")).unwrap();
    let key = eu();
    for dry_run in [true, false] {
        let e = keys::update(&s.root, Path::new(KEYS), dry_run, &mut |c: &[u8]| {
            keys::install(c, std::slice::from_ref(&key), &addrs(), None, false)
        })
        .unwrap_err();
        assert!(msg(&e).contains("does not exist"), "{e:#}");
    }
    assert!(!s.p("/root").exists());
}

#[test]
fn no_change_writes_nothing() {
    let s = Sandbox::new(true);
    s.grant().unwrap();
    let before = fs::metadata(s.keys_path()).unwrap();
    let out = s.grant().unwrap();
    assert!(!out.changed);
    let after = fs::metadata(s.keys_path()).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
    // Disabling on a home without a keys file creates nothing either.
    let s2 = Sandbox::new(false);
    let out = keys::update(&s2.root, Path::new(KEYS), false, &mut |c: &[u8]| {
        Ok(keys::disable(c, &["AAAA"]))
    })
    .unwrap();
    assert!(!out.changed && !s2.p("/root/.ssh").exists());
}

#[test]
fn owner_group_and_mode_are_kept_on_replace() {
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    std::os::unix::fs::chown(s.keys_path(), Some(0), Some(12345)).unwrap();
    fs::set_permissions(s.keys_path(), fs::Permissions::from_mode(0o640)).unwrap();
    let ino = fs::metadata(s.keys_path()).unwrap().ino();
    s.grant().unwrap();
    let m = fs::metadata(s.keys_path()).unwrap();
    assert_ne!(m.ino(), ino, "replaced by rename, not rewritten in place");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 12345));
}

#[test]
fn symlinked_keys_file_is_refused() {
    let s = Sandbox::new(true);
    fs::write(s.p("/outside"), b"precious\n").unwrap();
    std::os::unix::fs::symlink("../../outside", s.keys_path()).unwrap();
    let e = s.grant().unwrap_err();
    assert!(msg(&e).contains("symbolic link"), "{e:#}");
    assert_eq!(exit_code(&e), 1);
    assert_eq!(fs::read(s.p("/outside")).unwrap(), b"precious\n");
    assert!(fs::symlink_metadata(s.keys_path())
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(keys::read(&s.root, Path::new(KEYS)).is_err());
    assert_eq!(s.names("/root/.ssh"), vec!["authorized_keys2"]);
}

#[test]
fn symlinked_ssh_dir_is_refused() {
    let s = Sandbox::new(false);
    mkdir(&s.p("/elsewhere"), 0o700);
    std::os::unix::fs::symlink("../elsewhere", s.p("/root/.ssh")).unwrap();
    let e = s.grant().unwrap_err();
    assert!(msg(&e).contains(".ssh is a symbolic link"), "{e:#}");
    assert!(fs::read_dir(s.p("/elsewhere")).unwrap().next().is_none());
}

#[test]
fn symlinked_home_is_refused() {
    let s = Sandbox::new(false);
    fs::remove_dir(s.p("/root")).unwrap();
    fs::create_dir_all(s.p("/home/evil/.ssh")).unwrap();
    std::os::unix::fs::symlink("home/evil", s.p("/root")).unwrap();
    let e = s.grant().unwrap_err();
    assert!(msg(&e).contains("/root is a symbolic link"), "{e:#}");
    assert!(!s.p("/home/evil/.ssh/authorized_keys2").exists());
}

#[test]
fn planted_temp_names_are_skipped_and_left_alone() {
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    fs::write(s.p("/outside"), b"precious\n").unwrap();
    let pid = std::process::id();
    let t0 = format!(".authorized_keys2.ovh-access.{pid}.0");
    let t1 = format!(".authorized_keys2.ovh-access.{pid}.1");
    std::os::unix::fs::symlink("../../outside", s.p(&format!("/root/.ssh/{t0}"))).unwrap();
    fs::write(s.p(&format!("/root/.ssh/{t1}")), b"planted\n").unwrap();
    let out = s.grant().unwrap();
    assert!(out.changed);
    assert_eq!(fs::read(s.p("/outside")).unwrap(), b"precious\n");
    assert_eq!(
        fs::read(s.p(&format!("/root/.ssh/{t1}"))).unwrap(),
        b"planted\n"
    );
    let mut want = vec!["authorized_keys2".to_string(), t0, t1];
    want.sort();
    assert_eq!(s.names("/root/.ssh"), want);
    assert_eq!(fs::read(s.keys_path()).unwrap(), out.after);
}

#[test]
fn hard_linked_file_is_refused() {
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    fs::hard_link(s.keys_path(), s.p("/other-name")).unwrap();
    let e = s.grant().unwrap_err();
    assert!(msg(&e).contains("2 hard links"), "{e:#}");
    assert_eq!(fs::read(s.keys_path()).unwrap(), fixture());
}

#[test]
fn fifo_is_refused_without_blocking() {
    let s = Sandbox::new(true);
    let c = std::ffi::CString::new(s.keys_path().as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let root = s.root.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = keys::update(&root, Path::new(KEYS), false, &mut |c: &[u8]| {
            Ok(keys::disable(c, &[]))
        });
        let _ = tx.send(r.map(|_| ()).map_err(|e| format!("{e:#}")));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("update blocked on the FIFO");
    let e = r.unwrap_err();
    assert!(e.contains("a FIFO, not a regular file"), "{e}");
}

#[test]
fn directory_in_place_of_the_file_is_refused() {
    let s = Sandbox::new(true);
    fs::create_dir(s.keys_path()).unwrap();
    let e = s.grant().unwrap_err();
    assert!(msg(&e).contains("a directory, not a regular file"), "{e:#}");
}

#[test]
fn world_writable_file_is_refused_with_the_chmod() {
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    fs::set_permissions(s.keys_path(), fs::Permissions::from_mode(0o666)).unwrap();
    let e = s.grant().unwrap_err();
    let m = msg(&e);
    assert!(m.contains("mode 0666") && m.contains("chmod go-w"), "{m}");
    assert!(m.contains(&s.keys_path().display().to_string()), "{m}");
    assert_eq!(fs::read(s.keys_path()).unwrap(), fixture());
}

#[test]
fn world_writable_ssh_dir_is_refused() {
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    fs::set_permissions(s.p("/root/.ssh"), fs::Permissions::from_mode(0o777)).unwrap();
    let e = s.grant().unwrap_err();
    let m = msg(&e);
    assert!(
        m.contains("directory") && m.contains("/root/.ssh") && m.contains("chmod go-w"),
        "{m}"
    );
    assert_eq!(s.names("/root/.ssh"), vec!["authorized_keys2"]);
}

#[test]
fn foreign_owner_is_refused_with_the_chown() {
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    std::os::unix::fs::chown(s.keys_path(), Some(12345), None).unwrap();
    let e = s.grant().unwrap_err();
    assert!(
        msg(&e).contains("owned by uid 12345") && msg(&e).contains("chown root"),
        "{e:#}"
    );
    let s = Sandbox::new(true);
    std::os::unix::fs::chown(s.p("/root"), Some(12345), None).unwrap();
    let e = s.grant().unwrap_err();
    assert!(
        msg(&e).contains("directory") && msg(&e).contains("uid 12345"),
        "{e:#}"
    );
}

#[test]
fn crlf_file_keeps_its_bytes_and_convention() {
    let s = Sandbox::new(true);
    let original: Vec<u8> = String::from_utf8(fixture())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    s.write_keys(&original);
    let out = s.grant().unwrap();
    assert!(out.after.starts_with(&original));
    let added = &out.after[original.len()..];
    assert!(added.starts_with(b"from=\"192.0.2.10,") && added.ends_with(b" ovh-access\r\n"));
    // sshd's parser sees the CR as whitespace: the line is still the tool's line for this key.
    let t = keys::tool_lines(&out.after, &[]);
    assert_eq!((t.len(), t[0].blob.as_str()), (1, eu().blob.as_str()));
    let back = keys::update(&s.root, Path::new(KEYS), false, &mut |c: &[u8]| {
        Ok(keys::remove(c, &[eu().blob.as_str()]))
    })
    .unwrap();
    assert_eq!(back.after, original);
    assert_eq!(fs::read(s.keys_path()).unwrap(), original);
}

#[test]
fn missing_final_newline_gets_one_before_the_new_line() {
    let s = Sandbox::new(true);
    let original =
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA me";
    s.write_keys(original);
    let out = s.grant().unwrap();
    assert_eq!(&out.after[..original.len()], original);
    assert_eq!(out.after[original.len()], b'\n');
    assert_eq!(keys::tool_lines(&out.after, &[])[0].line, 2);
    assert!(out.after.ends_with(b"\n"));
}

#[test]
fn nul_and_non_utf8_bytes_survive() {
    let s = Sandbox::new(true);
    let mut original = b"# caf\xe9 \x00 binary\n\xff\xfe\x00\x01\n".to_vec();
    original.extend_from_slice(&fixture());
    original.extend_from_slice(b"\x00ssh-rsa \x00\n");
    s.write_keys(&original);
    let out = s.grant().unwrap();
    assert!(out.after.starts_with(&original));
    let off = keys::update(&s.root, Path::new(KEYS), false, &mut |c: &[u8]| {
        Ok(keys::remove(c, &[eu().blob.as_str()]))
    })
    .unwrap();
    // The old commented support line in the fixture stays as it was: it is not active.
    assert_eq!(off.after, original);
}

#[test]
fn one_megabyte_line_is_kept_and_edits_stay_fast() {
    let s = Sandbox::new(true);
    let mut original = b"# ".to_vec();
    original.extend(std::iter::repeat_n(b'x', 1 << 20));
    original.push(b'\n');
    original.extend_from_slice(&fixture());
    s.write_keys(&original);
    let t = Instant::now();
    let out = s.grant().unwrap();
    let off = keys::update(&s.root, Path::new(KEYS), false, &mut |c: &[u8]| {
        Ok(keys::disable(c, &[eu().blob.as_str()]))
    })
    .unwrap();
    let elapsed = t.elapsed();
    assert!(out.after.starts_with(&original) && off.changed);
    // A figure, not an assertion: timings belong to benchmarks.
    eprintln!("grant + disable with a 1 MiB line: {elapsed:?}");
}

#[test]
fn foreign_unrestricted_support_line_blocks_grant_until_replaced() {
    let s = Sandbox::new(true);
    let key = eu();
    let mut original = fixture();
    original.extend_from_slice(format!("ssh-rsa {} support@cache-ng\n", key.blob).as_bytes());
    s.write_keys(&original);
    let e = s.grant().unwrap_err();
    assert_eq!(exit_code(&e), 2, "{e:#}");
    assert!(
        msg(&e).contains("line 8") && msg(&e).contains("--replace-foreign"),
        "{e:#}"
    );
    assert_eq!(fs::read(s.keys_path()).unwrap(), original);
    let out = s.grant_with(true).unwrap();
    let lines = keys::support_lines(&out.after, &[key.blob.as_str()]);
    let active: Vec<_> = lines.iter().filter(|l| l.active).collect();
    assert_eq!(active.len(), 1);
    assert!(active[0].tool && active[0].has_from && !active[0].unrestricted);
    assert!(out.after.starts_with(&fixture()));
}

#[test]
fn concurrent_edit_between_read_and_rename_is_not_lost() {
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    let key = eu();
    let path = s.keys_path();
    let mut calls = 0;
    let out = keys::update(&s.root, Path::new(KEYS), false, &mut |c: &[u8]| {
        calls += 1;
        if calls == 1 {
            // Another administrator appends a key while we are editing.
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(b"# added concurrently\n").unwrap();
        }
        keys::install(c, std::slice::from_ref(&key), &addrs(), None, false)
    })
    .unwrap();
    assert_eq!(calls, 2);
    let now = fs::read(s.keys_path()).unwrap();
    assert_eq!(now, out.after);
    let mut expect = fixture();
    expect.extend_from_slice(b"# added concurrently\n");
    assert!(now.starts_with(&expect));
    assert_eq!(keys::tool_lines(&now, &[]).len(), 1);
    assert_eq!(s.names("/root/.ssh"), vec!["authorized_keys2"]);
}

#[test]
fn endless_concurrent_edits_give_up_cleanly() {
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    let path = s.keys_path();
    let mut n = 0;
    let e = keys::update(&s.root, Path::new(KEYS), false, &mut |c: &[u8]| {
        n += 1;
        fs::write(&path, format!("# writer {n}\n")).unwrap();
        Ok(EditOutcome {
            bytes: [c, b"x\n"].concat(),
            changed: true,
            notes: vec![],
        })
    })
    .unwrap_err();
    assert!(msg(&e).contains("kept changing"), "{e:#}");
    assert_eq!(s.names("/root/.ssh"), vec!["authorized_keys2"]);
}

#[test]
fn edit_error_changes_nothing() {
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    let e = keys::update(&s.root, Path::new(KEYS), false, &mut |_c: &[u8]| {
        Err(anyhow::anyhow!("refused by the edit"))
    })
    .unwrap_err();
    assert!(msg(&e).contains("refused by the edit"));
    assert_eq!(fs::read(s.keys_path()).unwrap(), fixture());
}

#[test]
fn immutable_file_is_refused_before_anything_is_written() {
    use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
    let s = Sandbox::new(true);
    s.write_keys(&fixture());
    let f = fs::File::open(s.keys_path()).unwrap();
    let flags = match ioctl_getflags(&f) {
        Ok(fl) => fl,
        Err(e) => {
            eprintln!("SKIP: this file system has no inode flags ({e}); run on ext4/xfs/btrfs");
            return;
        }
    };
    ioctl_setflags(&f, flags | IFlags::IMMUTABLE).unwrap();
    // Whatever happens below, the sandbox must stay removable.
    struct Unlock<'a>(&'a fs::File, IFlags);
    impl Drop for Unlock<'_> {
        fn drop(&mut self) {
            let _ = ioctl_setflags(self.0, self.1);
        }
    }
    let _unlock = Unlock(&f, flags);
    let e = s.grant().unwrap_err();
    assert!(
        msg(&e).contains("immutable") && msg(&e).contains("chattr -i"),
        "{e:#}"
    );
    assert_eq!(fs::read(s.keys_path()).unwrap(), fixture());
    assert_eq!(s.names("/root/.ssh"), vec!["authorized_keys2"]);
}

#[test]
fn read_walks_the_same_way() {
    let s = Sandbox::new(false);
    assert_eq!(keys::read(&s.root, Path::new(KEYS)).unwrap(), None);
    mkdir(&s.p("/root/.ssh"), 0o700);
    assert_eq!(keys::read(&s.root, Path::new(KEYS)).unwrap(), None);
    s.write_keys(&fixture());
    assert_eq!(
        keys::read(&s.root, Path::new(KEYS)).unwrap(),
        Some(fixture())
    );
    assert!(keys::read(&s.root, Path::new("/root/../etc/passwd")).is_err());
}

#[test]
fn home_from_passwd_leads_to_the_file() {
    let s = Sandbox::new(true);
    let home = keys::root_home(&s.root).unwrap();
    assert_eq!(home, PathBuf::from("/root"));
    let path = home.join(".ssh/authorized_keys2");
    assert_eq!(path, PathBuf::from(KEYS));
}
