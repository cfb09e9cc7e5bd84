//! `expiry-time="YYYYMMDD[HHMM[SS]][Z]"`: sshd refuses the key once the time has passed
//! (`auth-options.c`: `valid_before < now` → "key expired"), so the grant ends even if the tool
//! never runs again. The option exists since OpenSSH 7.7; `misc.c: parse_absolute_time` accepts the
//! `Z` (or `UTC`) suffix only since 9.1 — before that the time is sshd's local time, and an older
//! sshd rejects a line carrying `Z` altogether (the length is neither 8, 12 nor 14).
//!
//! "sshd's local time" is the server's zone, `/etc/localtime`, never the zone of whoever runs the
//! tool (`TZ` passes through sudo). And parse_absolute_time() zeroes its `struct tm` before
//! strptime(), so mktime() gets `tm_isdst = 0`: glibc then reads the time as *standard* time
//! even in summer (12:00 in Paris in July is read as 11:00 UTC, not 10:00). The line is written
//! so that this reading gives the grant's instant.
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::civil::{civil_from_unix, days_from_civil};
use crate::root::Root;

/// How to write the time for the installed sshd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ExpiryStyle {
    /// `20261125033000Z`: sshd ≥ 9.1.
    Utc,
    /// `20261125043000` in sshd's local standard time, `offset` seconds east of UTC at the
    /// instant written: sshd 7.7 … 9.0.
    Local { offset: i32 },
}

/// When the tool's line stops working, and how to write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub at: SystemTime,
    pub style: ExpiryStyle,
}

/// sshd's time zone: the server's `/etc/localtime` (TZif), read under `--root`.
#[derive(Debug, Clone)]
pub struct ServerZone {
    tz: TimeZone,
    /// Where it came from, for messages: a file, or "UTC (no /etc/localtime)".
    pub source: String,
}

/// The zone file glibc reads when `TZ` is unset, as sshd started by init is.
const LOCALTIME: &str = "/etc/localtime";

impl ServerZone {
    pub fn utc() -> ServerZone {
        ServerZone {
            tz: TimeZone::UTC,
            source: "UTC".into(),
        }
    }

    /// A zone from TZif bytes (RFC 8536, as /usr/share/zoneinfo holds them).
    pub fn from_tzif(source: &str, bytes: &[u8]) -> Result<ServerZone> {
        let tz = TimeZone::tzif(source, bytes)
            .map_err(|e| anyhow::anyhow!("{source} is not a TZif time zone file: {e}"))?;
        Ok(ServerZone {
            tz,
            source: source.to_string(),
        })
    }

    /// `<root>/etc/localtime`, its symlinks followed inside the root. glibc falls back to UTC when
    /// the file is missing or unreadable, and so does sshd; the second case is also a warning.
    pub fn load(root: &Root) -> (ServerZone, Option<String>) {
        let Some(path) = resolve_in_root(root, LOCALTIME) else {
            let mut z = ServerZone::utc();
            z.source = format!("UTC (no {LOCALTIME})");
            return (z, None);
        };
        let shown = path.display().to_string();
        match std::fs::read(root.path(&path)).map_err(anyhow::Error::from) {
            Ok(bytes) => match ServerZone::from_tzif(&shown, &bytes) {
                Ok(z) => (z, None),
                Err(e) => (
                    ServerZone::utc(),
                    Some(format!(
                        "{e:#}; sshd reads local times as UTC (reinstall tzdata or \
                         `ln -sf /usr/share/zoneinfo/UTC /etc/localtime`)"
                    )),
                ),
            },
            Err(e) => (
                ServerZone::utc(),
                Some(format!(
                    "cannot read {shown}: {e:#}; sshd reads local times as UTC"
                )),
            ),
        }
    }

    /// The offset (seconds east of UTC) in effect at `secs`.
    fn offset_at(&self, secs: i64) -> i64 {
        match Timestamp::from_second(secs) {
            Ok(ts) => i64::from(self.tz.to_offset(ts).seconds()),
            Err(_) => 0,
        }
    }

    /// The standard-time offset near `secs`: the one in effect when it is not summer time,
    /// else that of the last transition back to standard time (the one glibc's mktime applies
    /// to a time given with `tm_isdst = 0`).
    pub fn standard_offset_at(&self, secs: i64) -> i64 {
        let Ok(ts) = Timestamp::from_second(secs) else {
            return 0;
        };
        let info = self.tz.to_offset_info(ts);
        if !info.dst().is_dst() {
            return i64::from(info.offset().seconds());
        }
        self.tz
            .preceding(ts)
            .find(|t| !t.dst().is_dst())
            .or_else(|| self.tz.following(ts).find(|t| !t.dst().is_dst()))
            .map_or(i64::from(info.offset().seconds()), |t| {
                i64::from(t.offset().seconds())
            })
    }
}

/// `/etc/localtime` is a symlink into /usr/share/zoneinfo on most systems: follow it (bounded)
/// with absolute targets taken inside the root. The path returned is as seen from inside.
fn resolve_in_root(root: &Root, abs: &str) -> Option<PathBuf> {
    let mut logical = PathBuf::from(abs);
    for _ in 0..16 {
        let meta = std::fs::symlink_metadata(root.path(&logical)).ok()?;
        if !meta.file_type().is_symlink() {
            return Some(logical);
        }
        let target = std::fs::read_link(root.path(&logical)).ok()?;
        let joined = if target.is_absolute() {
            target
        } else {
            logical.parent().unwrap_or(Path::new("/")).join(target)
        };
        logical = normalize(&joined);
    }
    None
}

/// `..` taken lexically (the targets in /etc/localtime are plain relative paths).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The style the installed sshd understands; `None` before 7.7, which has no `expiry-time`
/// (there the firewall timeout alone ends the grant). An unknown version (`sshd -V` failed, or a
/// sandbox root) gets local time: every sshd from 7.7 on reads it, whereas `Z` would make 7.7 …
/// 9.0 reject the whole line.
pub fn expiry_for(at: SystemTime, sshd: Option<(u32, u32)>, zone: &ServerZone) -> Option<Expiry> {
    let local = || ExpiryStyle::Local {
        offset: i32::try_from(zone.standard_offset_at(unix(at))).unwrap_or(0),
    };
    let style = match sshd {
        None => local(),
        Some(v) if v >= (9, 1) => ExpiryStyle::Utc,
        Some(v) if v >= (7, 7) => local(),
        Some(_) => return None,
    };
    Some(Expiry { at, style })
}

/// Whether this sshd knows `expiry-time` at all (OpenSSH ≥ 7.7, or a version the tool could not
/// learn).
pub fn sshd_has_expiry(sshd: Option<(u32, u32)>) -> bool {
    sshd.is_none_or(|v| v >= (7, 7))
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The option value. Sub-second parts are dropped: sshd compares whole seconds and accepts the
/// key through the written second, so the grant never outlives the requested time by a second.
pub fn format_expiry(e: &Expiry) -> Result<String> {
    let secs = unix(e.at);
    if secs < 0 {
        anyhow::bail!("the expiry time is before 1970; give a positive duration");
    }
    let (local, suffix) = match e.style {
        ExpiryStyle::Utc => (secs, "Z"),
        ExpiryStyle::Local { offset } => (secs + i64::from(offset), ""),
    };
    let (y, mo, d, h, mi, s) = civil_from_unix(local);
    if y > 9999 {
        anyhow::bail!("the expiry time is after the year 9999; give a shorter duration");
    }
    Ok(format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}{suffix}"))
}

/// An `expiry-time` value as the given sshd reads it (`misc.c: parse_absolute_time`): the
/// instant the key stops working, or why that sshd rejects the value (and with it the line).
pub fn sshd_reads(
    raw: &str,
    sshd: Option<(u32, u32)>,
    zone: &ServerZone,
) -> Result<SystemTime, String> {
    let knows_utc = sshd.is_none_or(|v| v >= (9, 1));
    let lower = raw.to_ascii_lowercase();
    let (digits, utc) = if let Some(d) = lower.strip_suffix('z').filter(|_| knows_utc) {
        (d, true)
    } else if let Some(d) = lower.strip_suffix("utc").filter(|_| knows_utc) {
        (d, true)
    } else {
        (lower.as_str(), false)
    };
    let bad = || {
        let why = if !knows_utc && lower.ends_with('z') {
            "OpenSSH before 9.1 has no Z suffix"
        } else {
            "not YYYYMMDD[HHMM[SS]]"
        };
        format!("expiry-time \"{raw}\" is refused by this sshd ({why}), and with it the line")
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| digits.get(r).map_or(0, |s| s.parse::<i64>().unwrap_or(0));
    let (y, mo, d) = (n(0..4), n(4..6), n(6..8));
    let (h, mi, s) = (n(8..10), n(10..12), n(12..14));
    // strptime's ranges; mktime and timegm then normalise a day past the month's end.
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 61 {
        return Err(bad());
    }
    let civil = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    let secs = if utc {
        civil
    } else {
        let guess = civil - zone.offset_at(civil);
        civil - zone.standard_offset_at(guess)
    };
    // Both mktime and timegm fail below 0, which parse_absolute_time() refuses.
    u64::try_from(secs)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| bad())
}

/// How the key line's `expiry-time`, as this sshd reads it, differs from the grant's
/// `expires_at` (Unix seconds): `None` when they agree within a second.
pub fn drift(
    line: Option<&str>,
    expires_at: Option<u64>,
    sshd: Option<(u32, u32)>,
    zone: &ServerZone,
) -> Option<String> {
    let show = |t: u64| {
        let (y, mo, d, h, mi, s) = civil_from_unix(i64::try_from(t).unwrap_or(i64::MAX));
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
    };
    match (line, expires_at) {
        (None, None) => None,
        (None, Some(_)) if !sshd_has_expiry(sshd) => None,
        (None, Some(t)) => Some(format!(
            "the key line has lost its expiry-time: sshd accepts the key after the grant ends ({})",
            show(t)
        )),
        (Some(raw), want) => {
            let read = match sshd_reads(raw, sshd, zone) {
                Ok(t) => unix(t).max(0).unsigned_abs(),
                Err(e) => return Some(e),
            };
            match want {
                None => Some(format!(
                    "the key line expires at {} (expiry-time \"{raw}\" in {}), the grant never",
                    show(read),
                    zone.source
                )),
                Some(t) if read.abs_diff(t) > 1 => Some(format!(
                    "the key line's expiry-time \"{raw}\" is read by this sshd as {} ({}), \
                     the grant ends at {}",
                    show(read),
                    zone.source,
                    show(t)
                )),
                Some(_) => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> ServerZone {
        let path = format!("/usr/share/zoneinfo/{name}");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (install tzdata)"));
        ServerZone::from_tzif(&path, &bytes).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn versions() {
        let z = ServerZone::utc();
        let t = at(1_795_577_400);
        let style = |v| expiry_for(t, v, &z).map(|e| e.style);
        assert_eq!(style(Some((9, 2))), Some(ExpiryStyle::Utc));
        assert_eq!(style(Some((9, 1))), Some(ExpiryStyle::Utc));
        assert_eq!(style(Some((9, 0))), Some(ExpiryStyle::Local { offset: 0 }));
        assert_eq!(style(Some((7, 7))), Some(ExpiryStyle::Local { offset: 0 }));
        assert_eq!(style(Some((7, 6))), None);
        assert_eq!(style(None), Some(ExpiryStyle::Local { offset: 0 }));
    }

    #[test]
    fn utc_format_and_round_trip() {
        // 2026-11-25 03:30:00 UTC = 1795577400 (date -u -d @1795577400).
        let e = Expiry {
            at: UNIX_EPOCH + Duration::from_millis(1_795_577_400_900),
            style: ExpiryStyle::Utc,
        };
        let s = format_expiry(&e).unwrap();
        assert_eq!(s, "20261125033000Z");
        let z = ServerZone::utc();
        assert_eq!(sshd_reads(&s, Some((9, 2)), &z), Ok(at(1_795_577_400)));
        assert_eq!(
            sshd_reads("20261125033000UTC", Some((10, 0)), &z),
            Ok(at(1_795_577_400))
        );
        // An 8.x sshd refuses the Z form: the whole line stops working.
        assert!(sshd_reads(&s, Some((8, 4)), &z)
            .unwrap_err()
            .contains("before 9.1"));
    }

    // Expected instants computed with glibc: `TZ=Asia/Tokyo python3 -c 'import time;
    // print(time.mktime((2026,11,25,12,30,0,0,0,0)))'` (tm_isdst = 0, as sshd passes it).
    #[test]
    fn local_time_in_the_servers_zone() {
        let tokyo = zone("Asia/Tokyo");
        let e = expiry_for(at(1_795_577_400), Some((8, 4)), &tokyo).unwrap();
        assert_eq!(format_expiry(&e).unwrap(), "20261125123000");
        assert_eq!(
            sshd_reads("20261125123000", Some((8, 4)), &tokyo),
            Ok(at(1_795_577_400))
        );
        let ny = zone("America/New_York");
        let e = expiry_for(at(1_795_577_400), Some((8, 0)), &ny).unwrap();
        assert_eq!(format_expiry(&e).unwrap(), "20261124223000");
    }

    // Summer: glibc's mktime with tm_isdst = 0 reads the time as standard time.
    // `TZ=Europe/Paris python3 -c 'import time; print(time.mktime((2026,7,1,12,0,0,0,0,0)))'`
    // prints 1782903600 (11:00 UTC), not 1782900000 (10:00 UTC, the wall clock's reading).
    #[test]
    fn summer_time_is_read_as_standard_time_like_glibc() {
        let paris = zone("Europe/Paris");
        assert_eq!(
            sshd_reads("20260701120000", Some((8, 7)), &paris),
            Ok(at(1_782_903_600))
        );
        let e = expiry_for(at(1_782_903_600), Some((8, 7)), &paris).unwrap();
        assert_eq!(e.style, ExpiryStyle::Local { offset: 3600 });
        assert_eq!(format_expiry(&e).unwrap(), "20260701120000");
        // New York in July, and in the hour that does not exist in March (glibc: 1772955000).
        let ny = zone("America/New_York");
        assert_eq!(
            sshd_reads("20260701120000", Some((9, 0)), &ny),
            Ok(at(1_782_925_200))
        );
        assert_eq!(
            sshd_reads("20260308023000", Some((9, 0)), &ny),
            Ok(at(1_772_955_000))
        );
        for t in [
            1_782_903_600u64,
            1_772_955_000,
            1_795_577_400,
            1_792_000_000,
        ] {
            for z in [&paris, &ny] {
                let e = expiry_for(at(t), Some((8, 4)), z).unwrap();
                let s = format_expiry(&e).unwrap();
                assert_eq!(
                    sshd_reads(&s, Some((8, 4)), z),
                    Ok(at(t)),
                    "{s} in {}",
                    z.source
                );
            }
        }
    }

    #[test]
    fn short_forms_and_garbage() {
        let z = ServerZone::utc();
        assert_eq!(sshd_reads("20261125Z", None, &z), Ok(at(1_795_564_800)));
        assert_eq!(
            sshd_reads("20261125", Some((8, 4)), &z),
            Ok(at(1_795_564_800))
        );
        for bad in [
            "",
            "2026",
            "2026112503300",
            "20261325Z",
            "abcdefgh",
            "20261125ZZ",
            "19691231",
        ] {
            assert!(sshd_reads(bad, Some((9, 2)), &z).is_err(), "{bad}");
        }
    }

    #[test]
    fn drift_between_the_line_and_the_grant() {
        let tokyo = zone("Asia/Tokyo");
        let v = Some((8, 4));
        assert_eq!(
            drift(Some("20261125123000"), Some(1_795_577_400), v, &tokyo),
            None
        );
        assert_eq!(
            drift(Some("20261125123001"), Some(1_795_577_400), v, &tokyo),
            None
        );
        // Written in the operator's New York time instead of the server's Tokyo time.
        let d = drift(Some("20261124223000"), Some(1_795_577_400), v, &tokyo).unwrap();
        assert!(d.contains("2026-11-24 13:30:00 UTC"), "{d}");
        let d = drift(None, Some(1_795_577_400), v, &tokyo).unwrap();
        assert!(d.contains("lost its expiry-time"), "{d}");
        assert!(drift(Some("20261125033000Z"), Some(1_795_577_400), v, &tokyo).is_some());
        assert!(drift(Some("20261125033000"), None, v, &tokyo).is_some());
        assert_eq!(drift(None, None, v, &tokyo), None);
        assert_eq!(drift(None, Some(1), Some((7, 4)), &tokyo), None);
    }

    #[test]
    fn localtime_symlinks_are_followed_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("oa-zone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("usr/share/zoneinfo/Asia")).unwrap();
        std::fs::copy(
            "/usr/share/zoneinfo/Asia/Tokyo",
            dir.join("usr/share/zoneinfo/Asia/Tokyo"),
        )
        .unwrap();
        let root = Root::new(&dir).unwrap();
        let (z, w) = ServerZone::load(&root);
        assert!(
            z.source.contains("no /etc/localtime") && w.is_none(),
            "{}",
            z.source
        );
        std::os::unix::fs::symlink(
            "../usr/share/zoneinfo/Asia/Tokyo",
            dir.join("etc/localtime"),
        )
        .unwrap();
        let (z, w) = ServerZone::load(&root);
        assert_eq!(
            (z.source.as_str(), w),
            ("/usr/share/zoneinfo/Asia/Tokyo", None)
        );
        assert_eq!(z.offset_at(1_795_577_400), 9 * 3600);
        std::fs::remove_file(dir.join("etc/localtime")).unwrap();
        std::fs::write(dir.join("etc/localtime"), b"not a zone").unwrap();
        let (z, w) = ServerZone::load(&root);
        assert_eq!(z.offset_at(0), 0);
        assert!(w.unwrap().contains("not a TZif"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
