//! Checks 1 and 3: root's home against the keys file sshd reads, the file's and its
//! directories' ownership and modes as StrictModes judges them (misc.c `safe_path()`), and the
//! support lines in it (read with `keys`, never re-parsed here). `check` reads; the `judge_*`
//! functions decide from what it read.
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::sshd_checks::{at, edit_fix};
use super::{join, Findings, Status};
use crate::keys::{self, KeyLineInfo, ToolLine};
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

/// sshd_config's `StrictModes`: whether sshd refuses a keys file that others can write, or
/// only trusts it less than it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictModes {
    Yes,
    No,
}

/// StrictModes' verdict on the walk, as findings: (status, detail, fix) per problem. Pure.
/// sshd (misc.c `safe_path`) checks the file and each directory from it up to the home; the
/// directories above the home are reported as warnings, since whoever can write them can swap
/// the home itself.
pub fn judge_walk(
    walk: &[(PathBuf, Option<Meta>)],
    target: &Path,
    home: &Path,
    strict: StrictModes,
    grant: &str,
) -> Vec<(Status, String, String)> {
    let mut out = Vec::new();
    // Outside the home, safe_path walks up to / and every directory counts.
    let under_home = target.starts_with(home);
    let (bad, why) = match strict {
        StrictModes::Yes => (Status::Fail, "sshd's StrictModes refuses the key"),
        StrictModes::No => (
            Status::Warn,
            "StrictModes is off, so sshd accepts it, but anyone who can write there can add keys",
        ),
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
    let strict = if c.eff.strict_modes.value {
        StrictModes::Yes
    } else {
        StrictModes::No
    };
    let problems = judge_walk(&w, path, c.home, strict, c.grant);
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
    let d = path.display().to_string();
    let lines = keys::support_lines(&content, &blobs);
    if !judge_support_lines(&lines, &d, c.grant, f) {
        return;
    }
    judge_hand_written_from(&lines, c.addresses, &d, c.grant, f);
    let now = std::time::SystemTime::now();
    let (zone, zone_warning) = keys::ServerZone::load(c.root);
    if let Some(w) = zone_warning {
        f.warn(
            "time zone",
            w,
            "ln -sf /usr/share/zoneinfo/UTC /etc/localtime",
        );
    }
    let clock = Clock {
        now,
        sshd_version: c.sshd_version,
        zone: &zone,
    };
    for tl in keys::tool_lines(&content, &blobs)
        .iter()
        .filter(|l| l.active && blobs.contains(&l.blob.as_str()))
    {
        judge_tool_from(tl, c.addresses, &d, f);
        judge_expiry(tl, &clock, c.expires_at, &d, c.grant, f);
    }
}

/// The support's active lines, whoever wrote them: at least one that sshd accepts, none that
/// sshd ignores for bad options, none without a `from=`. False when no line lets the support
/// in (then nothing more is judged of the file).
fn judge_support_lines(lines: &[KeyLineInfo], d: &str, grant: &str, f: &mut Findings) -> bool {
    if !lines.iter().any(|l| l.active && l.options_error.is_none()) {
        f.fail(
            "support key",
            format!("no active line of {d} carries the support key"),
            grant.to_string(),
        );
        return false;
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
    true
}

/// Lines written by hand or by OVH's script: their from= must cover today's addresses too.
fn judge_hand_written_from(
    lines: &[KeyLineInfo],
    addresses: &[IpAddr],
    d: &str,
    grant: &str,
    f: &mut Findings,
) {
    for l in lines
        .iter()
        .filter(|l| l.active && !l.tool && l.options_error.is_none())
    {
        let Some(from) = l.options.iter().find_map(|o| o.strip_prefix("from=")) else {
            continue;
        };
        let missing: Vec<IpAddr> = addresses
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
                    join(addresses)
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
                format!("sed -i '{}s/^/# /' {d}, then {grant}", l.line),
            );
        }
    }
}

/// The tool's line against today's addresses: one missing keeps the support out, one that DNS
/// no longer returns lets a stranger in; `refresh` rewrites the line either way.
fn judge_tool_from(tl: &ToolLine, addresses: &[IpAddr], d: &str, f: &mut Findings) {
    let missing: Vec<IpAddr> = addresses
        .iter()
        .copied()
        .filter(|a| !tl.addresses.contains(a))
        .collect();
    let stale: Vec<IpAddr> = tl
        .addresses
        .iter()
        .copied()
        .filter(|a| !addresses.contains(a))
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
    } else if !stale.is_empty() && !addresses.is_empty() {
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
}

/// What an `expiry-time` means depends on when it is read, by which sshd, in which zone.
struct Clock<'a> {
    now: std::time::SystemTime,
    sshd_version: Option<(u32, u32)>,
    zone: &'a keys::ServerZone,
}

/// The tool's line's `expiry-time` as this sshd reads it: still ahead, and the end the
/// recorded grant (`expires_at`, when a grant is recorded) wrote.
fn judge_expiry(
    tl: &ToolLine,
    clock: &Clock,
    expires_at: Option<Option<u64>>,
    d: &str,
    grant: &str,
    f: &mut Findings,
) {
    if let Some(exp) = &tl.expiry_time {
        match keys::sshd_reads(exp, clock.sshd_version, clock.zone) {
            Err(why) => f.fail(
                "expiry-time",
                format!("line {} of {d}: {why}", tl.line),
                format!("ovh-access revoke, then {grant} --for 4h"),
            ),
            Ok(t) if t <= clock.now => f.fail(
                "expiry-time",
                format!("line {} of {d}: expiry-time {exp} has passed", tl.line),
                format!("ovh-access revoke, then {grant} --for 4h"),
            ),
            Ok(_) => f.pass(
                "expiry-time",
                format!("line {}: expiry-time {exp} is in the future", tl.line),
            ),
        }
    }
    if let Some(expires_at) = expires_at {
        let line = tl.expiry_time.as_deref();
        if let Some(why) = keys::expiry::drift(line, expires_at, clock.sshd_version, clock.zone) {
            f.fail(
                "expiry-time",
                format!("line {} of {d}: {why}", tl.line),
                "ovh-access restore",
            );
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

    fn dir(uid: u32, mode: u32) -> Option<Meta> {
        Some(Meta {
            symlink: false,
            dir: true,
            regular: false,
            uid,
            mode,
        })
    }

    fn file(uid: u32, mode: u32) -> Option<Meta> {
        Some(Meta {
            dir: false,
            regular: true,
            ..dir(uid, mode)?
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
            (PathBuf::from("/"), dir(0, 0o1777)),
            (PathBuf::from("/root"), dir(0, 0o700)),
            (PathBuf::from("/root/.ssh"), dir(0, 0o777)),
            (
                PathBuf::from("/root/.ssh/authorized_keys2"),
                file(1000, 0o600),
            ),
        ];
        let k = Path::new("/root/.ssh/authorized_keys2");
        let out = judge_walk(&walk, k, Path::new("/root"), StrictModes::Yes, "G");
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
        assert!(
            judge_walk(&walk, k, Path::new("/root"), StrictModes::No, "G")
                .iter()
                .all(|(s, _, _)| *s == Status::Warn)
        );
        let missing = vec![
            (PathBuf::from("/"), dir(0, 0o755)),
            (PathBuf::from("/root"), None),
        ];
        let out = judge_walk(&missing, k, Path::new("/root"), StrictModes::Yes, "G");
        assert_eq!(out[0].2, "mkdir -m 700 /root, then G");
    }

    const D: &str = "/root/.ssh/authorized_keys2";

    fn addrs(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn hand(line: usize, options: &[&str]) -> KeyLineInfo {
        KeyLineInfo {
            line,
            blob: "B".into(),
            active: true,
            tool: false,
            has_from: options.iter().any(|o| o.starts_with("from=")),
            unrestricted: !options.iter().any(|o| o.starts_with("from=")),
            options: options.iter().map(|o| o.to_string()).collect(),
            options_error: None,
        }
    }

    fn tool(from: &[&str], expiry_time: Option<&str>) -> ToolLine {
        ToolLine {
            line: 3,
            algorithm: "ssh-ed25519".into(),
            blob: "B".into(),
            active: true,
            from: from.iter().map(|a| a.to_string()).collect(),
            addresses: addrs(from),
            expiry_time: expiry_time.map(str::to_string),
        }
    }

    /// (status, check, fix) of each finding.
    fn seen(f: &Findings) -> Vec<(Status, &str, &str)> {
        f.0.iter()
            .map(|x| (x.status, x.check.as_str(), x.fix.as_str()))
            .collect()
    }

    #[test]
    fn support_lines_need_one_that_sshd_accepts_and_none_open_to_all() {
        let mut f = Findings::default();
        let mut bad = hand(2, &["from=198.51.100.10", "bogus"]);
        bad.options_error = Some("bad option".into());
        let commented = KeyLineInfo {
            active: false,
            ..hand(1, &[])
        };
        assert!(!judge_support_lines(
            &[commented, bad.clone()],
            D,
            "G",
            &mut f
        ));
        assert_eq!(seen(&f), [(Status::Fail, "support key", "G")]);

        let mut f = Findings::default();
        let lines = [bad, hand(4, &["from=198.51.100.10"]), hand(5, &["no-pty"])];
        assert!(judge_support_lines(&lines, D, "G", &mut f));
        assert_eq!(
            seen(&f),
            [
                (
                    Status::Warn,
                    "support key",
                    "sed -i '2s/^/# /' /root/.ssh/authorized_keys2"
                ),
                (
                    Status::Fail,
                    "support key",
                    "sed -i '5s/^/# /' /root/.ssh/authorized_keys2"
                ),
            ]
        );
    }

    #[test]
    fn hand_written_from_must_cover_every_support_address() {
        let now = addrs(&["198.51.100.10", "2001:db8::10"]);
        let mut f = Findings::default();
        let tool_line = KeyLineInfo {
            tool: true,
            ..hand(1, &["from=192.0.2.1"])
        };
        let lines = [
            tool_line,
            hand(2, &["from=198.51.100.0/24,2001:db8::/64"]),
            hand(3, &["from=198.51.100.10"]),
            hand(4, &["no-pty"]),
        ];
        judge_hand_written_from(&lines, &now, D, "G", &mut f);
        assert_eq!(
            seen(&f),
            [
                (Status::Pass, "from=", ""),
                (
                    Status::Fail,
                    "from=",
                    "sed -i '3s/^/# /' /root/.ssh/authorized_keys2, then G"
                ),
            ]
        );
        assert!(
            f.0[1].detail.contains("lacks 2001:db8::10"),
            "{}",
            f.0[1].detail
        );
    }

    #[test]
    fn the_tool_line_follows_todays_addresses() {
        let judge = |from: &[&str], now: &[&str]| {
            let mut f = Findings::default();
            judge_tool_from(&tool(from, None), &addrs(now), D, &mut f);
            (f.0[0].status, f.0[0].detail.clone())
        };
        let (st, detail) = judge(&["198.51.100.10"], &["198.51.100.10", "198.51.100.11"]);
        assert_eq!(st, Status::Fail);
        assert!(detail.contains("from= lacks 198.51.100.11"), "{detail}");
        let (st, detail) = judge(&["198.51.100.10", "198.51.100.9"], &["198.51.100.10"]);
        assert_eq!(st, Status::Warn);
        assert!(detail.contains("still allows 198.51.100.9"), "{detail}");
        assert_eq!(
            judge(&["198.51.100.10"], &["198.51.100.10"]).0,
            Status::Pass
        );
        // Without addresses to compare (no target resolved), nothing is stale.
        assert_eq!(judge(&["198.51.100.10"], &[]).0, Status::Pass);
    }

    #[test]
    fn expiry_time_as_this_sshd_reads_it() {
        let zone = keys::ServerZone::utc();
        let clock = Clock {
            now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
            sshd_version: Some((9, 6)),
            zone: &zone,
        };
        let judge = |exp: Option<&str>, expires_at: Option<Option<u64>>| {
            let mut f = Findings::default();
            judge_expiry(&tool(&[], exp), &clock, expires_at, D, "G", &mut f);
            f.0.into_iter()
                .map(|x| (x.status, x.fix))
                .collect::<Vec<_>>()
        };
        let revoke = "ovh-access revoke, then G --for 4h".to_string();
        assert_eq!(
            judge(Some("20200101"), None),
            [(Status::Fail, revoke.clone())]
        );
        assert_eq!(judge(Some("2020"), None), [(Status::Fail, revoke.clone())]);
        // sshd refuses the key from the expiry-time's second on.
        assert_eq!(
            judge(Some("20270115080000Z"), None),
            [(Status::Fail, revoke)]
        );
        assert_eq!(
            judge(Some("20270115080001Z"), None),
            [(Status::Pass, String::new())]
        );
        assert_eq!(
            judge(Some("20991231Z"), None),
            [(Status::Pass, String::new())]
        );
        // The line and the recorded grant agree on 2099-12-31 00:00:00 UTC, or they do not.
        assert_eq!(
            judge(Some("20991231Z"), Some(Some(4_102_358_400))),
            [(Status::Pass, String::new())]
        );
        assert_eq!(
            judge(Some("20991231Z"), Some(Some(4_102_358_400 + 3600))),
            [
                (Status::Pass, String::new()),
                (Status::Fail, "ovh-access restore".to_string())
            ]
        );
        assert_eq!(
            judge(None, Some(Some(4_102_358_400))),
            [(Status::Fail, "ovh-access restore".to_string())]
        );
        assert_eq!(judge(None, Some(None)), []);
    }
}
