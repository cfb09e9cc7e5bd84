//! The keys file on disk: a symlink-safe walk and an atomic, verified replace.
//!
//! The tool runs as root, but root's home (or whatever AuthorizedKeysFile names) may be reachable
//! by others. So the path is walked from the root prefix one component at a time with
//! `openat(O_NOFOLLOW)`: no symbolic link is ever followed, and every check is made on the object
//! actually opened. The checks are sshd's own (`auth.c: safe_path`, StrictModes): a regular file,
//! owned by root, not writable by group or others, in directories with the same properties —
//! sshd would ignore a file failing them, and anyone able to write there could swap it.
//!
//! The new content goes to a fresh temp file beside the target (`O_CREAT|O_EXCL|O_NOFOLLOW`, so a
//! planted name is never written through), gets the original's owner, mode and SELinux label, is
//! fsynced, and replaces the target with renameat() only if the target is still the file that was
//! read; the directory is then fsynced so the rename survives a crash. Every error path removes
//! the temp file: a failure leaves the keys file as it was.
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::{
    AtFlags, FileType, IFlags, Mode, OFlags, RenameFlags, Stat, StatxFlags, XattrFlags,
};
use rustix::io::Errno;

use super::edit::EditOutcome;
use super::MARKER;
use crate::root::Root;

/// What `update` did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The file's path on the real system (`/root/.ssh/authorized_keys2`), not the sandbox path.
    pub path: PathBuf,
    pub before: Vec<u8>,
    pub after: Vec<u8>,
    pub changed: bool,
    /// The file did not exist (and, unless a dry run, was created).
    pub created: bool,
}

/// A keys file larger than this is not a keys file; refuse rather than load it.
const MAX_SIZE: u64 = 64 << 20;
/// Attempts when another program changes the file between our read and our rename.
const RETRIES: usize = 5;
/// Temp-file names tried before giving up (each may be planted by someone else).
const TEMP_NAMES: usize = 16;
const SELINUX_XATTR: &str = "security.selinux";

/// Read the keys file through the same safety walk; `None` when it (or a directory on the way)
/// does not exist.
pub fn read(root: &Root, path: &Path) -> Result<Option<Vec<u8>>> {
    let target = Target::new(root, path)?;
    let Some(dir) = target.open_parent(Walk::Read)? else {
        return Ok(None);
    };
    Ok(target.read_current(&dir)?.map(|c| c.bytes))
}

/// Apply `edit` to the keys file and write the result atomically. No change writes nothing; a dry
/// run checks everything and computes `after` but creates and writes nothing.
pub fn update(
    root: &Root,
    path: &Path,
    dry_run: bool,
    edit: &mut dyn FnMut(&[u8]) -> Result<EditOutcome>,
) -> Result<WriteOutcome> {
    let target = Target::new(root, path)?;
    for attempt in 0..RETRIES {
        let dir = target.open_parent(Walk::Read)?;
        if let (Some(d), false, 0) = (&dir, dry_run, attempt) {
            sweep_stale(d);
        }
        let current = match &dir {
            Some(d) => target.read_current(d)?,
            None => None,
        };
        let before = current
            .as_ref()
            .map(|c| c.bytes.clone())
            .unwrap_or_default();
        let out = edit(&before)?;
        let done = WriteOutcome {
            path: target.abs.clone(),
            before,
            after: out.bytes.clone(),
            changed: out.changed,
            created: current.is_none(),
        };
        if !out.changed {
            return Ok(done);
        }
        if dry_run {
            // Say now what the real run would refuse: a missing home is not created.
            if dir.is_none() {
                target.open_parent(Walk::Plan)?;
            }
            return Ok(done);
        }
        // Only now, with a real change to write, may a missing `.ssh` be created.
        let dir = match dir {
            Some(d) => d,
            None => target
                .open_parent(Walk::Create)?
                .ok_or_else(|| anyhow!("{}: the directory vanished", target.shown_parent()))?,
        };
        if target.replace(&dir, current.as_ref(), &out.bytes)? {
            return Ok(done);
        }
        // The file changed under us: read it again and redo the edit on the new content.
    }
    bail!(
        "{} kept changing while it was being edited ({RETRIES} attempts); stop the other program \
         writing it and retry",
        target.shown()
    )
}

/// The file as read, with the identity it had when read.
struct Current {
    bytes: Vec<u8>,
    stat: Stat,
    file: File,
}

/// The identity compared before the rename: the same inode, untouched since it was read.
fn same_file(a: &Stat, b: &Stat) -> bool {
    (a.st_dev, a.st_ino, a.st_size, a.st_nlink) == (b.st_dev, b.st_ino, b.st_size, b.st_nlink)
        && (a.st_mtime, a.st_mtime_nsec) == (b.st_mtime, b.st_mtime_nsec)
        && (a.st_ctime, a.st_ctime_nsec) == (b.st_ctime, b.st_ctime_nsec)
}

struct Target<'a> {
    root: &'a Root,
    /// The path on the real system, as given.
    abs: PathBuf,
    /// Directory components below the root, then the file name.
    dirs: Vec<OsString>,
    name: OsString,
}

impl<'a> Target<'a> {
    fn new(root: &'a Root, path: &Path) -> Result<Target<'a>> {
        let mut parts: Vec<OsString> = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_os_string()),
                Component::RootDir | Component::CurDir => {}
                // Root::path drops `..` silently; for the file we are about to write, say so.
                Component::ParentDir | Component::Prefix(_) => bail!(
                    "{}: the keys file path must not contain '..'; give an absolute path",
                    path.display()
                ),
            }
        }
        let name = parts.pop().ok_or_else(|| {
            anyhow!(
                "'{}' names no file; give the keys file's absolute path",
                path.display()
            )
        })?;
        Ok(Target {
            root,
            abs: path.to_path_buf(),
            dirs: parts,
            name,
        })
    }

    /// Where a component is on disk (the sandbox path under `--root`), for messages.
    fn shown_at(&self, depth: usize) -> String {
        let mut p = self.root.dir().to_path_buf();
        for d in &self.dirs[..depth] {
            p.push(d);
        }
        p.display().to_string()
    }

    fn shown_parent(&self) -> String {
        self.shown_at(self.dirs.len())
    }

    fn shown(&self) -> String {
        let mut p = PathBuf::from(self.shown_parent());
        p.push(&self.name);
        p.display().to_string()
    }

    /// Walk to the file's directory. `None` when a directory is missing (`Read`), or only the
    /// last one (`Plan`); `Create` creates a missing last directory (`.ssh`) 0700, root-owned.
    /// Nothing above it is ever created: a missing home means a wrong path.
    fn open_parent(&self, walk: Walk) -> Result<Option<OwnedFd>> {
        let create = walk == Walk::Create;
        let top = self.root.dir();
        let mut fd = rustix::fs::open(top, dir_flags(), Mode::empty())
            .map_err(|e| fs_error(e, "open the root directory", &top.display().to_string()))?;
        for (i, comp) in self.dirs.iter().enumerate() {
            let shown = self.shown_at(i + 1);
            let next = match rustix::fs::openat(&fd, comp.as_os_str(), dir_flags(), Mode::empty()) {
                Ok(next) => next,
                Err(Errno::NOENT) if create && i + 1 == self.dirs.len() => {
                    make_dir(&fd, comp, &shown)?
                }
                Err(Errno::NOENT) if walk == Walk::Plan && i + 1 == self.dirs.len() => {
                    return Ok(None)
                }
                Err(Errno::NOENT) if walk != Walk::Read => bail!(
                    "{shown} does not exist; create root's home directory (or fix the keys file \
                     path) and retry"
                ),
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(explain_open_failure(&fd, comp, &shown, e)),
            };
            check_dir(&next, &shown)?;
            fd = next;
        }
        Ok(Some(fd))
    }

    /// Open and read the file if it exists, after checking what it is.
    fn read_current(&self, dir: &OwnedFd) -> Result<Option<Current>> {
        let shown = self.shown();
        // lstat first: opening a FIFO or a device could block or have side effects.
        let st = match rustix::fs::statat(dir, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(fs_error(e, "inspect", &shown)),
        };
        check_file(&st, &shown)?;
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(dir, self.name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(explain_open_failure(dir, &self.name, &shown, e)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| fs_error(e, "inspect", &shown))?;
        // Checked again on what was opened: the name may have been swapped since the lstat.
        check_file(&stat, &shown)?;
        let mut file = File::from(fd);
        let mut bytes = Vec::new();
        (&mut file)
            .take(MAX_SIZE + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {shown}; check the file system"))?;
        if bytes.len() as u64 > MAX_SIZE {
            bail!(
                "{shown} is larger than {} MiB, which is no keys file; inspect it and trim it",
                MAX_SIZE >> 20
            );
        }
        Ok(Some(Current { bytes, stat, file }))
    }

    /// Write `content` beside the target and rename it over the target. `Ok(false)` when the
    /// target changed since it was read (nothing was changed; the caller retries).
    fn replace(&self, dir: &OwnedFd, current: Option<&Current>, content: &[u8]) -> Result<bool> {
        let shown = self.shown();
        if let Some(cur) = current {
            refuse_locked(cur.file.as_fd(), &shown)?;
            refuse_mount_point(dir, &self.name, &shown)?;
        }
        refuse_locked(dir.as_fd(), &self.shown_parent())?;

        let tmp = TempFile::create(dir, &self.name, &self.shown_parent())?;
        let (uid, gid, mode) = match current {
            Some(c) => (c.stat.st_uid, c.stat.st_gid, c.stat.st_mode & 0o7777),
            None => (0, 0, 0o600),
        };
        tmp.fill(uid, gid, mode, current.map(|c| c.file.as_fd()), content)?;

        // The other writer's change must not be lost: compare with what was read.
        let now = rustix::fs::statat(dir, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW);
        let unchanged = match (current, &now) {
            (Some(c), Ok(st)) => same_file(&c.stat, st),
            (None, Err(Errno::NOENT)) => true,
            _ => false,
        };
        if !unchanged {
            return Ok(false);
        }
        let renamed = match current {
            Some(_) => rustix::fs::renameat(dir, tmp.name.as_os_str(), dir, self.name.as_os_str()),
            // A file that appeared meanwhile must not be clobbered.
            None => rustix::fs::renameat_with(
                dir,
                tmp.name.as_os_str(),
                dir,
                self.name.as_os_str(),
                RenameFlags::NOREPLACE,
            ),
        };
        match renamed {
            Ok(()) => {}
            Err(Errno::EXIST) => return Ok(false),
            Err(e) => return Err(fs_error(e, "replace", &shown)),
        }
        tmp.renamed();
        // The rename is durable only once the directory entry is on disk. It is already visible
        // to sshd, though: a failed fsync must not make the caller believe nothing changed (it
        // would roll the firewall back while the key is live), so it only costs crash safety.
        let _ = rustix::fs::fsync(dir);
        Ok(true)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    Read,
    Plan,
    Create,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn make_dir(parent: &OwnedFd, comp: &OsStr, shown: &str) -> Result<OwnedFd> {
    match rustix::fs::mkdirat(parent, comp, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(fs_error(e, "create", shown)),
    }
    let fd = rustix::fs::openat(parent, comp, dir_flags(), Mode::empty())
        .map_err(|e| explain_open_failure(parent, comp, shown, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| fs_error(e, "inspect", shown))?;
    // The umask may have narrowed the mode, a setgid parent may have set the group.
    if st.st_uid != 0 || st.st_gid != 0 {
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::ROOT),
            Some(rustix::fs::Gid::ROOT),
        )
        .map_err(|e| fs_error(e, "give root ownership of", shown))?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))
        .map_err(|e| fs_error(e, "set the mode of", shown))?;
    Ok(fd)
}

/// Why `openat(O_NOFOLLOW)` failed, in the operator's terms.
fn explain_open_failure(parent: &OwnedFd, comp: &OsStr, shown: &str, e: Errno) -> anyhow::Error {
    if let Ok(st) = rustix::fs::statat(parent, comp, AtFlags::SYMLINK_NOFOLLOW) {
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Symlink {
            let to = rustix::fs::readlinkat(parent, comp, Vec::new())
                .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
                .unwrap_or_default();
            return anyhow!(
                "{shown} is a symbolic link (to '{to}'); the tool never follows links on the way \
                 to the keys file, which sshd's StrictModes also distrusts: replace the link with \
                 the real directory or file (owned by root, not group/world-writable)"
            );
        }
        if e == Errno::NOTDIR {
            return anyhow!(
                "{shown} is not a directory ({}); fix the path",
                describe(ft)
            );
        }
    }
    fs_error(e, "open", shown)
}

fn describe(ft: FileType) -> &'static str {
    match ft {
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Directory => "a directory",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symbolic link",
        FileType::RegularFile => "a regular file",
        FileType::Unknown => "of unknown type",
    }
}

/// sshd's `safe_path` rules for a directory on the way: owned by root, no group/other write.
fn check_dir(fd: &OwnedFd, shown: &str) -> Result<()> {
    let st = rustix::fs::fstat(fd).map_err(|e| fs_error(e, "inspect", shown))?;
    check_owner_and_mode(&st, shown, "directory")
}

fn check_owner_and_mode(st: &Stat, shown: &str, what: &str) -> Result<()> {
    if st.st_uid != 0 {
        bail!(
            "{what} {shown} is owned by uid {}, not root, so its owner could swap the keys file \
             and sshd's StrictModes refuses it; run: chown root {shown}",
            st.st_uid
        );
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        bail!(
            "{what} {shown} is writable by group or others (mode {mode:04o}), so they could \
             change the keys file and sshd's StrictModes refuses it; run: chmod go-w {shown}"
        );
    }
    Ok(())
}

/// The keys file itself: a regular file with a single name, and the directory rules.
fn check_file(st: &Stat, shown: &str) -> Result<()> {
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft == FileType::Symlink {
        bail!(
            "{shown} is a symbolic link; the tool never writes through links and sshd's \
             StrictModes distrusts them: replace it with a regular file owned by root (mode 0600)"
        );
    }
    if ft != FileType::RegularFile {
        bail!(
            "{shown} is {}, not a regular file, and sshd ignores it; move it away and retry (the \
             tool then creates a regular file)",
            describe(ft)
        );
    }
    if st.st_nlink > 1 {
        bail!(
            "{shown} has {} hard links, so the same keys would also live under another name \
             the tool does not manage; find it with `find / -xdev -samefile {shown}` and remove \
             the other link",
            st.st_nlink
        );
    }
    check_owner_and_mode(st, shown, "file")
}

/// An immutable or append-only file or directory (`chattr +i`/`+a`) cannot be replaced: say so
/// before anything is written.
fn refuse_locked(fd: std::os::fd::BorrowedFd<'_>, shown: &str) -> Result<()> {
    // Not every file system has inode flags (ENOTTY, EOPNOTSUPP): then there is nothing to refuse.
    let Ok(flags) = rustix::fs::ioctl_getflags(fd) else {
        return Ok(());
    };
    if flags.intersects(IFlags::IMMUTABLE | IFlags::APPEND) {
        bail!(
            "{shown} is marked immutable or append-only (lsattr shows 'i' or 'a'), so it cannot \
             be changed; run: chattr -i -a {shown}, and set it again afterwards if you must"
        );
    }
    Ok(())
}

/// A file bind-mounted over the keys file cannot be renamed over (EBUSY): detect it first.
fn refuse_mount_point(dir: &OwnedFd, name: &OsStr, shown: &str) -> Result<()> {
    let mnt = |fd: &OwnedFd, p: &OsStr| {
        rustix::fs::statx(fd, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID)
            .ok()
            .filter(|s| StatxFlags::from_bits_retain(s.stx_mask).contains(StatxFlags::MNT_ID))
            .map(|s| s.stx_mnt_id)
    };
    if let (Some(d), Some(f)) = (mnt(dir, OsStr::new(".")), mnt(dir, name)) {
        if d != f {
            bail!(
                "{shown} is a mount point (a bind-mounted file), which cannot be replaced \
                 atomically; edit the file it is mounted from, or unmount it (umount {shown})"
            );
        }
    }
    Ok(())
}

/// The temp file beside the target; removed on drop unless it was renamed into place.
struct TempFile<'d> {
    dir: &'d OwnedFd,
    name: OsString,
    file: File,
    shown: String,
    keep: std::cell::Cell<bool>,
}

impl<'d> TempFile<'d> {
    fn create(dir: &'d OwnedFd, target: &OsStr, shown_dir: &str) -> Result<TempFile<'d>> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for n in 0..TEMP_NAMES {
            let name = temp_name(target, n);
            let shown = format!("{shown_dir}/{}", name.to_string_lossy());
            match rustix::fs::openat(dir, name.as_os_str(), flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    return Ok(TempFile {
                        dir,
                        name,
                        file: File::from(fd),
                        shown,
                        keep: std::cell::Cell::new(false),
                    })
                }
                // Someone else's file (or link) by that name: never touch it, try the next.
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(fs_error(e, "create the temporary file", &shown)),
            }
        }
        bail!(
            "every temporary name for the keys file in {shown_dir} is taken ({TEMP_NAMES} tried); \
             remove the stale .*.{MARKER}.* files there and retry"
        )
    }

    /// Owner, mode, SELinux label, content, fsync.
    fn fill(
        &self,
        uid: u32,
        gid: u32,
        mode: u32,
        like: Option<std::os::fd::BorrowedFd<'_>>,
        content: &[u8],
    ) -> Result<()> {
        let fd = self.file.as_fd();
        let shown = &self.shown;
        let st = rustix::fs::fstat(fd).map_err(|e| fs_error(e, "inspect", shown))?;
        if st.st_uid != uid || st.st_gid != gid {
            let (u, g) = (
                rustix::fs::Uid::from_raw(uid),
                rustix::fs::Gid::from_raw(gid),
            );
            rustix::fs::fchown(fd, Some(u), Some(g))
                .map_err(|e| fs_error(e, "set the owner of", shown))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
            .map_err(|e| fs_error(e, "set the mode of", shown))?;
        if let Some(orig) = like {
            copy_selinux_label(orig, fd, shown)?;
        }
        (&self.file)
            .write_all(content)
            .map_err(|e| io_error(e, "write", shown))?;
        rustix::fs::fsync(fd).map_err(|e| fs_error(e, "sync", shown))?;
        Ok(())
    }

    fn renamed(&self) {
        self.keep.set(true);
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.keep.get() {
            let _ = rustix::fs::unlinkat(self.dir, self.name.as_os_str(), AtFlags::empty());
        }
    }
}

/// Remove the temp files a killed run left in the keys file's directory: regular files named as
/// [`temp_name`] makes them, whose writer is no longer running. A changing run holds the lock,
/// so no other run of the tool can be writing one.
fn sweep_stale(dir: &OwnedFd) {
    let Ok(mut entries) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    while let Some(Ok(e)) = entries.next() {
        let name = e.file_name().to_bytes();
        let Some(pid) = stale_writer(name) else {
            continue;
        };
        let regular = rustix::fs::statat(dir, e.file_name(), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
        if regular && !crate::state::pid_running(pid) {
            let _ = rustix::fs::unlinkat(dir, e.file_name(), AtFlags::empty());
        }
    }
}

/// The writer's pid in a name `.<file>.ovh-access.<pid>.<n>`.
fn stale_writer(name: &[u8]) -> Option<u32> {
    let name = std::str::from_utf8(name).ok()?.strip_prefix('.')?;
    let (head, n) = name.rsplit_once('.')?;
    let (head, pid) = head.rsplit_once('.')?;
    let file = head.strip_suffix(&format!(".{MARKER}"))?;
    if file.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// `.authorized_keys2.ovh-access.<pid>.<n>`: hidden, tagged, per process; predictable names are
/// harmless because creation never opens an existing name.
fn temp_name(target: &OsStr, n: usize) -> OsString {
    let mut s = OsString::from(".");
    s.push(target);
    s.push(format!(".{MARKER}.{}.{n}", std::process::id()));
    s
}

/// Keep the original's SELinux context: a file labelled `user_tmp_t` instead of `ssh_home_t`
/// is unreadable to sshd under an enforcing policy.
fn copy_selinux_label(
    from: std::os::fd::BorrowedFd<'_>,
    to: std::os::fd::BorrowedFd<'_>,
    shown: &str,
) -> Result<()> {
    let mut buf = vec![0u8; 4096];
    let n = match rustix::fs::fgetxattr(from, SELINUX_XATTR, &mut buf[..]) {
        Ok(n) => n,
        // No label, or no xattr support: nothing to copy.
        Err(Errno::NODATA | Errno::NOTSUP | Errno::RANGE) => return Ok(()),
        Err(e) => return Err(fs_error(e, "read the SELinux label for", shown)),
    };
    rustix::fs::fsetxattr(to, SELINUX_XATTR, &buf[..n], XattrFlags::empty())
        .map_err(|e| fs_error(e, "set the SELinux label of", shown))
}

fn io_error(e: std::io::Error, what: &str, shown: &str) -> anyhow::Error {
    match e.raw_os_error() {
        Some(n) => fs_error(Errno::from_raw_os_error(n), what, shown),
        None => anyhow!("cannot {what} {shown}: {e}; check the file system"),
    }
}

/// One sentence per failure: what, where, how to fix.
fn fs_error(e: Errno, what: &str, shown: &str) -> anyhow::Error {
    let fix = match e {
        Errno::ROFS => "the file system is mounted read-only; remount it read-write \
                        (mount -o remount,rw) and retry"
            .to_string(),
        Errno::NOSPC | Errno::DQUOT => {
            "the file system is full (or over quota); free some space and retry".to_string()
        }
        Errno::PERM => "the operation is not permitted, usually because the file or its \
                        directory is immutable or append-only (lsattr); run chattr -i -a on it"
            .to_string(),
        Errno::BUSY => "it is busy, usually a bind-mounted file; edit the file it is mounted \
                        from, or unmount it"
            .to_string(),
        Errno::ACCESS => "permission denied; run the tool as root".to_string(),
        Errno::LOOP => "a symbolic link is in the way; replace it with the real file".to_string(),
        other => format!(
            "{}; check the path and the file system",
            std::io::Error::from(other)
        ),
    };
    anyhow!("cannot {what} {shown}: {fix}")
}
