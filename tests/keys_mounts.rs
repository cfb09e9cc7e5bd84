//! The writer on a read-only, a full, and a bind-mounted keys file: a clear error, nothing
//! changed, no temp file left. Each case runs in a thread that first moves into its own private
//! mount namespace (unshare(CLONE_NEWNS) only affects the calling thread), so the mounts exist
//! for that thread alone and vanish with it; the host's mounts are never touched.
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ovh_access::keys;
use ovh_access::root::Root;

const KEYS: &str = "/root/.ssh/authorized_keys2";
const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA";

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) {
    let src = src.map(c);
    let target = c(target);
    let fstype = fstype.map(|s| CString::new(s).unwrap());
    let data = data.map(|s| CString::new(s).unwrap());
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    assert_eq!(
        r,
        0,
        "mount {target:?}: {}",
        std::io::Error::last_os_error()
    );
}

/// Run `f` in a thread with its own private mount namespace; `None` when not permitted.
fn in_private_mounts<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            eprintln!(
                "SKIP: cannot create a mount namespace ({}); run the tests as root",
                std::io::Error::last_os_error()
            );
            return None;
        }
        // Make every mount private first, so nothing done here propagates to the host.
        mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        );
        Some(f())
    })
    .join()
    .unwrap()
}

/// A sandbox root with /root/.ssh and a keys file.
fn sandbox() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ssh = dir.path().join("root/.ssh");
    fs::create_dir_all(&ssh).unwrap();
    for d in [dir.path().join("root"), ssh.clone()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let file = ssh.join("authorized_keys2");
    fs::write(&file, format!("ssh-ed25519 {ED} user\n")).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    (dir, file)
}

fn disable_all(root: &Root) -> anyhow::Result<keys::WriteOutcome> {
    keys::update(root, Path::new(KEYS), false, &mut |c: &[u8]| {
        Ok(keys::disable(c, &[ED]))
    })
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

#[test]
fn read_only_file_system() {
    let (dir, file) = sandbox();
    let base = dir.path().to_path_buf();
    let r = in_private_mounts(move || {
        let home = base.join("root");
        mount(Some(&home), &home, None, libc::MS_BIND, None);
        mount(
            None,
            &home,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        );
        let root = Root::new(&base).unwrap();
        let e = disable_all(&root).unwrap_err();
        (format!("{e:#}"), entries(&home.join(".ssh")))
    });
    let Some((msg, n)) = r else { return };
    assert!(
        msg.contains("read-only") && msg.contains("remount"),
        "{msg}"
    );
    assert_eq!(n, 1);
    assert_eq!(
        fs::read(&file).unwrap(),
        format!("ssh-ed25519 {ED} user\n").into_bytes()
    );
}

#[test]
fn full_file_system() {
    let (dir, _) = sandbox();
    let base = dir.path().to_path_buf();
    let r = in_private_mounts(move || {
        let ssh = base.join("root/.ssh");
        mount(None, &ssh, Some("tmpfs"), 0, Some("size=64k,mode=0700"));
        let file = ssh.join("authorized_keys2");
        let original = format!("ssh-ed25519 {ED} user\n");
        fs::write(&file, &original).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let root = Root::new(&base).unwrap();
        let e = keys::update(&root, Path::new(KEYS), false, &mut |c: &[u8]| {
            let mut bytes = c.to_vec();
            bytes.extend(std::iter::repeat_n(b'#', 1 << 20));
            Ok(keys::EditOutcome {
                bytes,
                changed: true,
                notes: vec![],
            })
        })
        .unwrap_err();
        (
            format!("{e:#}"),
            entries(&ssh),
            fs::read(&file).unwrap() == original.as_bytes(),
        )
    });
    let Some((msg, n, same)) = r else { return };
    assert!(
        msg.contains("full") && msg.contains("free some space"),
        "{msg}"
    );
    assert_eq!(n, 1, "the temp file was removed");
    assert!(same);
}

#[test]
fn bind_mounted_keys_file() {
    let (dir, file) = sandbox();
    let base = dir.path().to_path_buf();
    let source = base.join("managed-elsewhere");
    fs::write(&source, format!("ssh-ed25519 {ED} managed\n")).unwrap();
    fs::set_permissions(&source, fs::Permissions::from_mode(0o600)).unwrap();
    let r = in_private_mounts(move || {
        let file = base.join("root/.ssh/authorized_keys2");
        mount(Some(&source), &file, None, libc::MS_BIND, None);
        let root = Root::new(&base).unwrap();
        let e = disable_all(&root).unwrap_err();
        (
            format!("{e:#}"),
            entries(&base.join("root/.ssh")),
            fs::read(&source).unwrap(),
        )
    });
    let Some((msg, n, src)) = r else { return };
    assert!(
        msg.contains("mount point") && msg.contains("umount"),
        "{msg}"
    );
    assert_eq!(n, 1);
    assert_eq!(src, format!("ssh-ed25519 {ED} managed\n").into_bytes());
    assert_eq!(
        fs::read(&file).unwrap(),
        format!("ssh-ed25519 {ED} user\n").into_bytes()
    );
}
