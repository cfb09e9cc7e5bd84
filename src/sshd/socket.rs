//! systemd socket activation: when `ssh.socket` (Debian/Ubuntu) or `sshd.socket` (Fedora,
//! Arch) is enabled, systemd owns the listening socket and its `ListenStream=` lines, not
//! sshd_config, decide the ports (Ubuntu ≥ 22.10 regenerates them from sshd_config only at
//! `daemon-reload`, through sshd-socket-generator).
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{Listen, Source};
use crate::root::Root;

pub const UNITS: &[&str] = &["ssh.socket", "sshd.socket"];

/// Unit search path in precedence order (systemd.unit(5)); generator output included.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// What one socket unit declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketUnit {
    pub unit: String,
    /// The unit file and its drop-ins, in the order applied.
    pub files: Vec<PathBuf>,
    pub enabled: bool,
    pub listen: Vec<Listen>,
    pub warnings: Vec<String>,
}

/// Apply the `ListenStream=` lines of one unit file's text to `acc`: an empty assignment
/// resets the list (systemd's rule for list settings), so a drop-in can replace the port.
pub fn apply_listen_streams(
    text: &str,
    file: &Path,
    acc: &mut Vec<Listen>,
    warnings: &mut Vec<String>,
) {
    let mut section = String::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].to_string();
            continue;
        }
        if section != "Socket" || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != "ListenStream" {
            continue;
        }
        let v = v.trim();
        let source = Some(Source {
            file: file.to_path_buf(),
            line: idx + 1,
        });
        if v.is_empty() {
            acc.clear();
            continue;
        }
        match parse_listen_stream(v) {
            Some((addr, port)) => acc.push(Listen { addr, port, source }),
            // Unix sockets, vsock and specifiers carry no TCP port.
            None if v.starts_with('/') || v.starts_with('@') || v.starts_with("vsock:") => {}
            None => warnings.push(format!(
                "{} line {}: ListenStream={v} is not understood; its port is not counted",
                file.display(),
                idx + 1
            )),
        }
    }
}

/// `22`, `0.0.0.0:22`, `[::]:22`, `192.0.2.1:2222` (systemd.socket(5)); a bare port means
/// every address.
pub fn parse_listen_stream(v: &str) -> Option<(Option<IpAddr>, u16)> {
    let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p != 0);
    if let Some(p) = port(v) {
        return Some((None, p));
    }
    if let Some(inner) = v.strip_prefix('[') {
        let (a, p) = inner.split_once("]:")?;
        let a = a.split('%').next()?;
        return Some((Some(a.parse().ok()?), port(p)?));
    }
    let (a, p) = v.rsplit_once(':')?;
    Some((Some(a.parse().ok()?), port(p)?))
}

/// Read one socket unit through the root: the first unit file on the search path, then the
/// drop-ins of every directory (`<unit>.d/*.conf`, same name: the earlier directory wins),
/// applied in file-name order. `None` when no unit file exists or it is masked.
pub fn read_unit(root: &Root, unit: &str) -> Option<SocketUnit> {
    let mut warnings = Vec::new();
    let main = UNIT_DIRS
        .iter()
        .map(|d| Path::new(d).join(unit))
        .find(|p| root.path(p).symlink_metadata().is_ok())?;
    if let Ok(target) = std::fs::read_link(root.path(&main)) {
        if target == Path::new("/dev/null") {
            return None;
        }
    }
    let mut dropins: Vec<(String, PathBuf)> = Vec::new();
    for d in UNIT_DIRS {
        let dir = Path::new(d).join(format!("{unit}.d"));
        let Ok(rd) = std::fs::read_dir(root.path(&dir)) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| n.ends_with(".conf"))
            .collect();
        names.sort();
        for n in names {
            if !dropins.iter().any(|(m, _)| *m == n) {
                dropins.push((n.clone(), dir.join(&n)));
            }
        }
    }
    dropins.sort();
    let mut files = vec![main];
    files.extend(dropins.into_iter().map(|(_, p)| p));
    let mut listen = Vec::new();
    for f in &files {
        match crate::bounded::read_to_string(root.path(f), crate::bounded::CONFIG) {
            Ok(text) => apply_listen_streams(&text, f, &mut listen, &mut warnings),
            Err(e) => warnings.push(format!("{}: cannot read ({e})", f.display())),
        }
    }
    let enabled = ["sockets.target.wants", "multi-user.target.wants"]
        .iter()
        .any(|w| {
            root.path(Path::new("/etc/systemd/system").join(w).join(unit))
                .symlink_metadata()
                .is_ok()
        });
    Some(SocketUnit {
        unit: unit.to_string(),
        files,
        enabled,
        listen,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_stream_values() {
        assert_eq!(parse_listen_stream("22"), Some((None, 22)));
        assert_eq!(
            parse_listen_stream("0.0.0.0:2222"),
            Some((Some("0.0.0.0".parse().unwrap()), 2222))
        );
        assert_eq!(
            parse_listen_stream("[::]:22"),
            Some((Some("::".parse().unwrap()), 22))
        );
        assert_eq!(parse_listen_stream("/run/ssh.sock"), None);
        assert_eq!(parse_listen_stream("0"), None);
    }

    #[test]
    fn empty_assignment_resets() {
        let mut acc = Vec::new();
        let mut w = Vec::new();
        let f = Path::new("/lib/systemd/system/ssh.socket");
        apply_listen_streams(
            "[Unit]\nListenStream=1\n[Socket]\nListenStream=0.0.0.0:22\nListenStream=[::]:22\n",
            f,
            &mut acc,
            &mut w,
        );
        assert_eq!(acc.len(), 2);
        apply_listen_streams(
            "[Socket]\nListenStream=\nListenStream=2222\n",
            f,
            &mut acc,
            &mut w,
        );
        assert_eq!(acc.len(), 1);
        assert_eq!((acc[0].addr, acc[0].port), (None, 2222));
        assert!(w.is_empty());
    }
}
