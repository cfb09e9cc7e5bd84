//! Checks 1 and 3: root's home against the keys file sshd reads, the file's and its
//! directories' ownership and modes as StrictModes judges them (misc.c `safe_path()`), and the
//! support lines in it (read with `keys`, never re-parsed here).
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::sshd_checks::{at, edit_fix};
use super::{join, Findings, Status};
use crate::keys;
use crate::root::Root;
use crate::sshd::Effective;
use crate::support::Target;

pub struct Ctx<'a> {
    pub root: &'a Root,
    pub home: &'a Path,
    pub eff: &'a Effective,
    pub target: Option<&'a Target>,
    pub addresses: &'a [IpAddr],
    pub grant: &'a str,
    pub svc: &'a str,
    /// The installed sshd's release, which decides how it reads `expiry-time`.
    pub sshd_version: Option<(u32, u32)>,
    /// The recorded grant's `expires_at`, when a grant is recorded.
    pub expires_at: Option<Option<u64>>,
}

/// sshd expands `%h` and relative AuthorizedKeysFile entries from the passwd file's home; the
/// guide insists on /root, but what matters is that the keys file lies where sshd looks.
pub fn check_home(home: &Path, keys_file: &Path, eff: &Effective, f: &mut Findings) {
    if keys_file.starts_with(home) {
        let note = if home == Path::new("/root") {
            String::new()
        } else {
            " (not /root as the guide assumes: write the key there, not in /root)".into()
        };
        if note.is_empty() {
            f.pass(
                "root home",
                format!("root's home is {} and holds the keys file", home.display()),
            );
        } else {
            f.warn(
                "root home",
                format!("root's home in /etc/passwd is {}{note}; sshd reads {}", home.display(), keys_file.display()),
                format!("install the key with ovh-access, which writes {}; or set root's home to /root with `usermod -d /root root`", keys_file.display()),
            );
        }
    } else {
        let src = at(&eff.authorized_keys_files);
        f.warn(
            "root home",
            format!(
                "root's home is {} but AuthorizedKeysFile{src} makes sshd read {} outside it",
                home.display(),
                keys_file.display()
            ),
            format!(
                "nothing to do if that is intended: ovh-access writes {}",
                keys_file.display()
            ),
        );
    }
}

/// OVH's guide (and its script) put the key in authorized_keys2: say so when sshd does not
/// read that file, and fail when the support key sits there unread.
pub fn check_authorized_keys_file(c: &Ctx, sshd_reads: &Path, f: &mut Findings) {
    let s = &c.eff.authorized_keys_files;
    let listed = s.value.join(" ");
    if s.value.iter().any(|p| p.ends_with("authorized_keys2")) {
        f.pass("AuthorizedKeysFile", format!("sshd reads {listed}"));
        return;
    }
    let fix = edit_fix(
        "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2",
        s.source.as_ref(),
        c.svc,
    );
    let guide_file = c.home.join(".ssh/authorized_keys2");
    let unread = c.target.and_then(|t| {
        let bytes = keys::read(c.root, &guide_file).ok()??;
        let blobs: Vec<&str> = t.keys.iter().map(|k| k.blob.as_str()).collect();
        keys::support_lines(&bytes, &blobs)
            .into_iter()
            .find(|l| l.active)
    });
    let src = at(s);
    match unread {
        Some(l) if guide_file != sshd_reads => f.fail(
            "AuthorizedKeysFile",
            format!(
                "the support key is on line {} of {}, which sshd does not read: AuthorizedKeysFile {listed}{src} has no authorized_keys2",
                l.line,
                guide_file.display()
            ),
            fix,
        ),
        _ => f.warn(
            "AuthorizedKeysFile",
            format!(
                "AuthorizedKeysFile {listed}{src} has no authorized_keys2 (where OVH's guide puts the key); ovh-access writes {} instead",
                sshd_reads.display()
            ),
            fix,
        ),
    }
}

/// One path component's metadata, as the walk needs it.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub symlink: bool,
    pub dir: bool,
    pub regular: bool,
    pub uid: u32,
    pub mode: u32,
}

/// The path from / to the keys file, each component with its metadata (None: missing).
fn walk(root: &Root, path: &Path) -> Vec<(PathBuf, Option<Meta>)> {
    let mut p = PathBuf::from("/");
    let mut out = Vec::new();
    let mut comps = vec![p.clone()];
    for c in path.components().skip(1) {
        p.push(c);
        comps.push(p.clone());
    }
    for c in comps {
        let m = std::fs::symlink_metadata(root.path(&c)).ok().map(|m| Meta {
            symlink: m.file_type().is_symlink(),
            dir: m.is_dir(),
            regular: m.is_file(),
            uid: m.uid(),
            mode: m.mode() & 0o7777,
        });
        let stop = m.is_none();
        out.push((c, m));
        if stop {
            break;
        }
    }
    out
}

/// StrictModes' verdict on the walk, as findings: (status, detail, fix) per problem. Pure.
/// sshd (misc.c `safe_path`) checks the file and each directory from it up to the home; the
/// directories above the home are reported as warnings, since whoever can write them can swap
/// the home itself.
pub fn judge_walk(
    walk: &[(PathBuf, Option<Meta>)],
    target: &Path,
    home: &Path,
    strict: bool,
    grant: &str,
) -> Vec<(Status, String, String)> {
    let mut out = Vec::new();
    // Outside the home, safe_path walks up to / and every directory counts.
    let under_home = target.starts_with(home);
    let bad = if strict { Status::Fail } else { Status::Warn };
    let why = if strict {
        "sshd's StrictModes refuses the key"
    } else {
        "StrictModes is off, so sshd accepts it, but anyone who can write there can add keys"
    };
    for (p, m) in walk {
        let d = p.display();
        let Some(m) = m else {
            let fix = if p == target {
                grant.to_string()
            } else {
                format!("mkdir -m 700 {d}, then {grant}")
            };
            out.push((Status::Fail, format!("{d} does not exist"), fix));
            return out;
        };
        let file = p == target;
        let above_home = under_home && !file && p != home && home.starts_with(p);
        let status = if above_home { Status::Warn } else { bad };
        if m.symlink {
            // sshd follows it (realpath), ovh-access refuses to write through it.
            out.push((
                Status::Fail,
                format!("{d} is a symlink: ovh-access refuses to write through it and sshd judges its target instead"),
                format!("cp --remove-destination \"$(readlink -f {d})\" {d}"),
            ));
            continue;
        }
        if file && !m.regular {
            out.push((
                Status::Fail,
                format!("{d} is not a regular file: sshd refuses it"),
                format!("rm -r {d}, then {grant}"),
            ));
            continue;
        }
        if m.uid != 0 {
            out.push((
                status,
                format!("{d} is owned by uid {}, not root: {why}", m.uid),
                format!("chown root {d}"),
            ));
        }
        if m.mode & 0o022 != 0 {
            let fix = if file {
                format!("chmod 600 {d}")
            } else if m.dir && p.ends_with(".ssh") {
                format!("chmod 700 {d}")
            } else {
                format!("chmod go-w {d}")
            };
            out.push((
                status,
                format!("{d} is group- or world-writable (mode {:o}): {why}", m.mode),
                fix,
            ));
        }
    }
    out
}

pub fn check(c: &Ctx, path: &Path, f: &mut Findings) {
    let w = walk(c.root, path);
    let problems = judge_walk(&w, path, c.home, c.eff.strict_modes.value, c.grant);
    let failed = problems.iter().any(|(s, _, _)| *s == Status::Fail);
    for (s, d, fix) in problems {
        f.push("keys file", s, d, fix);
    }
    if failed {
        return;
    }
    let content = match keys::read(c.root, path) {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(e) => {
            f.fail(
                "keys file",
                format!("{e:#}"),
                format!("fix {} as the message says", path.display()),
            );
            return;
        }
    };
    f.pass(
        "keys file",
        format!(
            "{} is root's, not writable by others, not a symlink",
            path.display()
        ),
    );
    let Some(target) = c.target else { return };
    let blobs: Vec<&str> = target.keys.iter().map(|k| k.blob.as_str()).collect();
    let lines = keys::support_lines(&content, &blobs);
    let d = path.display();
    if !lines.iter().any(|l| l.active && l.options_error.is_none()) {
        f.fail(
            "support key",
            format!("no active line of {d} carries the support key"),
            c.grant.to_string(),
        );
        return;
    }
    for l in lines.iter().filter(|l| l.active) {
        if let Some(e) = &l.options_error {
            f.warn(
                "support key",
                format!("line {} of {d}: sshd ignores it ({e})", l.line),
                format!("sed -i '{}s/^/# /' {d}", l.line),
            );
        } else if l.unrestricted {
            f.fail(
                "support key",
                format!("line {} of {d} carries the support key without a from= restriction: sshd lets it in from anywhere", l.line),
                format!("sed -i '{}s/^/# /' {d}", l.line),
            );
        }
    }
    // Lines written by hand or by OVH's script: their from= must cover today's addresses too.
    for l in lines
        .iter()
        .filter(|l| l.active && !l.tool && l.options_error.is_none())
    {
        let Some(from) = l.options.iter().find_map(|o| o.strip_prefix("from=")) else {
            continue;
        };
        let missing: Vec<IpAddr> = c
            .addresses
            .iter()
            .copied()
            .filter(|a| !from_covers(from, *a))
            .collect();
        if missing.is_empty() {
            f.pass(
                "from=",
                format!(
                    "line {}: from=\"{from}\" covers {}",
                    l.line,
                    join(c.addresses)
                ),
            );
        } else {
            f.fail(
                "from=",
                format!(
                    "line {} of {d}: from=\"{from}\" lacks {} (what the support connects from now)",
                    l.line,
                    join(&missing)
                ),
                format!("sed -i '{}s/^/# /' {d}, then {}", l.line, c.grant),
            );
        }
    }
    let now = std::time::SystemTime::now();
    let (zone, zone_warning) = keys::ServerZone::load(c.root);
    if let Some(w) = zone_warning {
        f.warn(
            "time zone",
            w,
            "ln -sf /usr/share/zoneinfo/UTC /etc/localtime",
        );
    }
    for tl in keys::tool_lines(&content, &blobs)
        .iter()
        .filter(|l| l.active && blobs.contains(&l.blob.as_str()))
    {
        let missing: Vec<IpAddr> = c
            .addresses
            .iter()
            .copied()
            .filter(|a| !tl.addresses.contains(a))
            .collect();
        let stale: Vec<IpAddr> = tl
            .addresses
            .iter()
            .copied()
            .filter(|a| !c.addresses.contains(a))
            .collect();
        if !missing.is_empty() {
            f.fail(
                "from=",
                format!(
                    "line {} of {d}: from= lacks {} (what the support connects from now)",
                    tl.line,
                    join(&missing)
                ),
                "ovh-access refresh",
            );
        } else if !stale.is_empty() && !c.addresses.is_empty() {
            f.warn(
                "from=",
                format!(
                    "line {} of {d}: from= still allows {}, which DNS no longer returns",
                    tl.line,
                    join(&stale)
                ),
                "ovh-access refresh",
            );
        } else {
            f.pass(
                "from=",
                format!("line {}: from= is {}", tl.line, tl.from.join(",")),
            );
        }
        if let Some(exp) = &tl.expiry_time {
            match keys::sshd_reads(exp, c.sshd_version, &zone) {
                Err(why) => f.fail(
                    "expiry-time",
                    format!("line {} of {d}: {why}", tl.line),
                    format!("ovh-access revoke, then {} --for 4h", c.grant),
                ),
                Ok(t) if t <= now => f.fail(
                    "expiry-time",
                    format!("line {} of {d}: expiry-time {exp} has passed", tl.line),
                    format!("ovh-access revoke, then {} --for 4h", c.grant),
                ),
                Ok(_) => f.pass(
                    "expiry-time",
                    format!("line {}: expiry-time {exp} is in the future", tl.line),
                ),
            }
        }
        if let Some(expires_at) = c.expires_at {
            let line = tl.expiry_time.as_deref();
            if let Some(why) = keys::expiry::drift(line, expires_at, c.sshd_version, &zone) {
                f.fail(
                    "expiry-time",
                    format!("line {} of {d}: {why}", tl.line),
                    "ovh-access restore",
                );
            }
        }
    }
}

/// Whether sshd lets the key in from `addr` through this `from=` (auth-options.c hands the list
/// to match.c's match_host_and_ip()).
fn from_covers(list: &str, addr: IpAddr) -> bool {
    keys::from::admits(list, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(dir: bool, uid: u32, mode: u32) -> Option<Meta> {
        Some(Meta {
            symlink: false,
            dir,
            regular: !dir,
            uid,
            mode,
        })
    }

    #[test]
    fn from_lists() {
        let a: IpAddr = "198.51.100.10".parse().unwrap();
        assert!(from_covers("198.51.100.10", a));
        assert!(from_covers("192.0.2.1,198.51.100.0/24", a));
        assert!(!from_covers("192.0.2.1", a));
        assert!(!from_covers("198.51.100.0/24,!198.51.100.10", a));
        // A list sshd refuses lets nobody in, wildcards or not.
        assert!(!from_covers("*,", a));
        assert!(!from_covers("198.51.100.0/33", a));
    }

    #[test]
    fn strict_modes_walk() {
        let walk = vec![
            (PathBuf::from("/"), m(true, 0, 0o1777)),
            (PathBuf::from("/root"), m(true, 0, 0o700)),
            (PathBuf::from("/root/.ssh"), m(true, 0, 0o777)),
            (
                PathBuf::from("/root/.ssh/authorized_keys2"),
                m(false, 1000, 0o600),
            ),
        ];
        let k = Path::new("/root/.ssh/authorized_keys2");
        let out = judge_walk(&walk, k, Path::new("/root"), true, "G");
        let st: Vec<(Status, &str)> = out.iter().map(|(s, _, f)| (*s, f.as_str())).collect();
        assert_eq!(
            st,
            [
                (Status::Warn, "chmod go-w /"),
                (Status::Fail, "chmod 700 /root/.ssh"),
                (Status::Fail, "chown root /root/.ssh/authorized_keys2"),
            ]
        );
        // StrictModes no: sshd would accept, so the problems are warnings.
        assert!(judge_walk(&walk, k, Path::new("/root"), false, "G")
            .iter()
            .all(|(s, _, _)| *s == Status::Warn));
        let missing = vec![
            (PathBuf::from("/"), m(true, 0, 0o755)),
            (PathBuf::from("/root"), None),
        ];
        let out = judge_walk(&missing, k, Path::new("/root"), true, "G");
        assert_eq!(out[0].2, "mkdir -m 700 /root, then G");
    }
}
