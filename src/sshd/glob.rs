//! `glob(3)` as sshd's `Include` uses it (flags 0): `*`, `?` and `[...]` per path component,
//! a leading `.` matched only explicitly, results sorted bytewise (sshd never calls
//! `setlocale()`, so the C locale's collation applies). Patterns name paths on the real system;
//! directories are listed through the `--root` prefix.
use std::path::{Path, PathBuf};

use crate::root::Root;

/// `fnmatch()` of one path component (no `FNM_PERIOD` handling here: see [`glob`]).
pub fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    // Backtracking point for the last `*`: (pattern index after it, name index it matched to).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, len)) = bracket(&pattern[p..], name[n]) {
                        if matched {
                            p += len;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == b'[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == name[n] => {
                    p += 2;
                    n += 1;
                    continue;
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `pat`: Some((matches, length of the class)), None when the
/// bracket is not closed (then it is a literal `[`).
fn bracket(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = pat[i];
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            let hi = pat[i + 2];
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

fn has_magic(s: &[u8]) -> bool {
    s.iter().any(|c| matches!(c, b'*' | b'?' | b'['))
}

/// Expand an absolute pattern (as on the real system) against the files under `root`; returns
/// real-system paths, sorted. No match is an empty list, as `GLOB_NOMATCH` is for sshd.
pub fn glob(root: &Root, pattern: &Path) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let comps: Vec<&[u8]> = pattern
        .as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let mut current: Vec<PathBuf> = vec![PathBuf::from("/")];
    for (idx, comp) in comps.iter().enumerate() {
        let last = idx + 1 == comps.len();
        let mut next = Vec::new();
        for dir in &current {
            if !has_magic(comp) {
                let cand = dir.join(std::ffi::OsStr::from_bytes(comp));
                let on_disk = root.path(&cand);
                let ok = if last {
                    on_disk.symlink_metadata().is_ok()
                } else {
                    on_disk.is_dir()
                };
                if ok {
                    next.push(cand);
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(root.path(dir)) else {
                continue;
            };
            let mut names: Vec<Vec<u8>> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().as_bytes().to_vec())
                .filter(|n| (!n.starts_with(b".") || comp.starts_with(b".")) && fnmatch(comp, n))
                .collect();
            names.sort();
            for n in names {
                let cand = dir.join(std::ffi::OsStr::from_bytes(&n));
                if last || root.path(&cand).is_dir() {
                    next.push(cand);
                }
            }
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    current.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_patterns() {
        assert!(fnmatch(b"*.conf", b"50-cloud-init.conf"));
        assert!(!fnmatch(b"*.conf", b"x.conf.bak"));
        assert!(fnmatch(b"a?c", b"abc"));
        assert!(fnmatch(b"[0-9]*", b"10-x"));
        assert!(!fnmatch(b"[!0-9]*", b"10-x"));
        assert!(fnmatch(b"*", b""));
        assert!(fnmatch(b"a*b*c", b"aXXbYYc"));
        assert!(!fnmatch(b"a*b*c", b"aXXbYY"));
        assert!(fnmatch(b"[", b"["));
    }

    #[test]
    fn globbing_under_a_root_sorted_bytewise() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/ssh/sshd_config.d");
        std::fs::create_dir_all(&d).unwrap();
        for n in [
            "b.conf",
            "A.conf",
            "a.conf",
            ".hidden.conf",
            "10.conf",
            "x.txt",
        ] {
            std::fs::write(d.join(n), "").unwrap();
        }
        let root = Root::new(dir.path()).unwrap();
        let got = glob(&root, Path::new("/etc/ssh/sshd_config.d/*.conf"));
        let names: Vec<_> = got.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "/etc/ssh/sshd_config.d/10.conf",
                "/etc/ssh/sshd_config.d/A.conf",
                "/etc/ssh/sshd_config.d/a.conf",
                "/etc/ssh/sshd_config.d/b.conf"
            ]
        );
        assert!(glob(&root, Path::new("/etc/ssh/nothing/*.conf")).is_empty());
        assert_eq!(
            glob(&root, Path::new("/etc/ssh/sshd_config.d/x.txt")).len(),
            1
        );
        assert!(glob(&root, Path::new("/etc/ssh/sshd_config.d/y.txt")).is_empty());
    }
}
