//! `expiry-time="YYYYMMDD[HHMM[SS]][Z]"`: sshd refuses the key once the time has passed
//! (`auth-options.c`: `valid_before < now` → "key expired"), so the grant ends even if the tool
//! never runs again. The option exists since OpenSSH 7.7; `misc.c: parse_absolute_time` accepts the
//! `Z` (UTC) suffix only since 9.1 — before that the time is sshd's local time, and an older
//! sshd would reject a line carrying `Z` altogether.
use crate::civil::{civil_from_unix, days_from_civil};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

/// How to write the time for the installed sshd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ExpiryStyle {
    /// `20261125033000Z`: sshd ≥ 9.1.
    Utc,
    /// `20261125043000` in sshd's local time zone: sshd 7.7 … 9.0.
    Local,
}

/// When the tool's line stops working, and how to write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub at: SystemTime,
    pub style: ExpiryStyle,
}

/// The style the installed sshd understands; `None` before 7.7, which has no `expiry-time`
/// (there the firewall timeout alone ends the grant). An unknown version (`sshd -V` failed, or a
/// sandbox root) gets `Local`: every sshd from 7.7 on reads it, whereas `Z` would make 7.7 … 9.0
/// reject the whole line.
pub fn expiry_style_for(sshd_version: Option<(u32, u32)>) -> Option<ExpiryStyle> {
    match sshd_version {
        None => Some(ExpiryStyle::Local),
        Some(v) if v >= (9, 1) => Some(ExpiryStyle::Utc),
        Some(v) if v >= (7, 7) => Some(ExpiryStyle::Local),
        Some(_) => None,
    }
}

/// The option value. Sub-second parts are dropped: sshd compares whole seconds and accepts the
/// key through the written second, so the grant never outlives the requested time by a second.
pub fn format_expiry(e: &Expiry) -> Result<String> {
    let secs = e
        .at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("the expiry time is before 1970; give a positive duration"))?
        .as_secs();
    let secs = i64::try_from(secs)
        .map_err(|_| anyhow::anyhow!("the expiry time is out of range; give a shorter duration"))?;
    Ok(match e.style {
        ExpiryStyle::Utc => {
            let (y, mo, d, h, mi, s) = civil_from_unix(secs);
            format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z")
        }
        ExpiryStyle::Local => {
            let (y, mo, d, h, mi, s) = local_from_unix(secs)?;
            format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
        }
    })
}

/// Read an `expiry-time` value back (for status): the instant it ends, as sshd would read it
/// (`parse_absolute_time`: 8, 12 or 14 digits, optional `Z`; without `Z`, local time).
pub fn parse_expiry_time(raw: &str) -> Option<SystemTime> {
    let (digits, utc) = match raw.strip_suffix('Z') {
        Some(d) => (d, true),
        None => (raw, false),
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits.get(r).map_or(Some(0), |s| s.parse::<i64>().ok());
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, s) = (n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = if utc {
        days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    } else {
        unix_from_local(y, mo, d, h, mi, s)?
    };
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Local time as sshd computes it: libc's localtime_r with the process's zone (TZ, else
/// /etc/localtime). The tool runs on the server, next to sshd, so both use the same zone.
fn local_from_unix(secs: i64) -> Result<(i64, i64, i64, i64, i64, i64)> {
    let t: libc::time_t = secs;
    // SAFETY: localtime_r writes only into the tm we own; a null return is handled.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        bail!("cannot convert the expiry time to local time; set TZ or /etc/localtime");
    }
    Ok((
        i64::from(tm.tm_year) + 1900,
        i64::from(tm.tm_mon) + 1,
        i64::from(tm.tm_mday),
        i64::from(tm.tm_hour),
        i64::from(tm.tm_min),
        i64::from(tm.tm_sec),
    ))
}

/// mktime, as `parse_absolute_time` does for a time without `Z`.
fn unix_from_local(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    // SAFETY: mktime reads and normalises the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = i32::try_from(y - 1900).ok()?;
    tm.tm_mon = i32::try_from(mo - 1).ok()?;
    tm.tm_mday = i32::try_from(d).ok()?;
    tm.tm_hour = i32::try_from(h).ok()?;
    tm.tm_min = i32::try_from(mi).ok()?;
    tm.tm_sec = i32::try_from(s).ok()?;
    tm.tm_isdst = -1;
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(expiry_style_for(Some((9, 2))), Some(ExpiryStyle::Utc));
        assert_eq!(expiry_style_for(Some((9, 1))), Some(ExpiryStyle::Utc));
        assert_eq!(expiry_style_for(Some((9, 0))), Some(ExpiryStyle::Local));
        assert_eq!(expiry_style_for(Some((7, 7))), Some(ExpiryStyle::Local));
        assert_eq!(expiry_style_for(Some((7, 6))), None);
        assert_eq!(expiry_style_for(Some((6, 9))), None);
        assert_eq!(expiry_style_for(None), Some(ExpiryStyle::Local));
    }

    #[test]
    fn utc_format_and_round_trip() {
        // 2026-11-25 03:30:00 UTC = 1795577400 (date -u -d @1795577400).
        let at = UNIX_EPOCH + Duration::from_millis(1_795_577_400_900);
        let e = Expiry {
            at,
            style: ExpiryStyle::Utc,
        };
        let s = format_expiry(&e).unwrap();
        assert_eq!(s, "20261125033000Z");
        assert_eq!(
            parse_expiry_time(&s),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_577_400))
        );
        // Leap day and the end of a year.
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_from_unix(1_767_225_599), (2025, 12, 31, 23, 59, 59));
    }

    #[test]
    fn local_format_round_trips_through_mktime() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_577_400);
        let s = format_expiry(&Expiry {
            at,
            style: ExpiryStyle::Local,
        })
        .unwrap();
        assert_eq!(s.len(), 14);
        assert_eq!(parse_expiry_time(&s), Some(at));
    }

    #[test]
    fn short_forms_and_garbage() {
        assert_eq!(
            parse_expiry_time("20261125Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_564_800))
        );
        for bad in [
            "",
            "2026",
            "2026112503300",
            "20261325Z",
            "abcdefgh",
            "20261125ZZ",
        ] {
            assert_eq!(parse_expiry_time(bad), None, "{bad}");
        }
    }
}
