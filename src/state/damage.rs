//! What a crash or a full disk leaves in the state directory, and how the next run copes: a
//! corrupt state file is kept under another name (never deleted: it may be the only record of a
//! grant) and what it still tells is salvaged; the temp files of a run killed between write and
//! rename are removed once their writer is gone.
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::root::Root;

use super::STATE_FILE;

/// What a corrupt state file still names: the keys and keys files of the grants it recorded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Salvaged {
    pub blobs: Vec<String>,
    pub keys_files: Vec<PathBuf>,
}

/// The string values of `"blob"` and `"keys_file"` members, read as text: a truncated or
/// damaged JSON document still holds them whole up to the damage.
pub fn salvage(bytes: &[u8]) -> Salvaged {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Salvaged::default();
    for (name, value) in string_members(&text) {
        match name {
            "blob" if is_base64(value) && !out.blobs.iter().any(|b| b == value) => {
                out.blobs.push(value.to_string())
            }
            "keys_file" if value.starts_with('/') => {
                let p = PathBuf::from(value);
                if !out.keys_files.contains(&p) {
                    out.keys_files.push(p);
                }
            }
            _ => {}
        }
    }
    out
}

/// `"name": "value"` pairs whose value has no escape (paths and base64 never need one).
fn string_members(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('"') {
        let after = &rest[i + 1..];
        let Some(j) = after.find('"') else { break };
        let name = &after[..j];
        let tail = after[j + 1..].trim_start();
        rest = &after[j + 1..];
        let Some(tail) = tail.strip_prefix(':') else {
            continue;
        };
        let tail = tail.trim_start();
        let Some(v) = tail.strip_prefix('"') else {
            continue;
        };
        if let Some(k) = v.find(['"', '\\']) {
            if v.as_bytes()[k] == b'"' {
                out.push((name, &v[..k]));
            }
        }
    }
    out
}

fn is_base64(s: &str) -> bool {
    s.len() >= 16
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
}

/// Move the corrupt state file aside, beside itself: `state.json.corrupt-<unix time>[.N]`.
/// Returns the new path (as on the real system, for the message).
pub fn set_aside(root: &Root) -> Result<PathBuf> {
    let from = root.path(STATE_FILE);
    let stamp = super::now();
    for n in 0..100 {
        let name = match n {
            0 => format!("{STATE_FILE}.corrupt-{stamp}"),
            n => format!("{STATE_FILE}.corrupt-{stamp}.{n}"),
        };
        let to = root.path(&name);
        if to.symlink_metadata().is_ok() {
            continue;
        }
        fs::rename(&from, &to).with_context(|| {
            format!(
                "cannot move the corrupt state file {} aside to {}",
                from.display(),
                to.display()
            )
        })?;
        return Ok(PathBuf::from(name));
    }
    anyhow::bail!(
        "cannot move the corrupt state file {} aside: 100 names are taken; clean up {}.corrupt-*",
        from.display(),
        from.display()
    )
}

/// Remove the state file's temp copies (`.state.json.<pid>.tmp`) whose writer is no longer
/// running. Called with the lock held, so no live run of the tool can be writing one; the pid
/// test still spares a copy of a writer that somehow runs without it.
pub fn sweep_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(".state.json."))
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !pid_running(pid) && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Whether a process with this pid exists on this machine (its /proc entry, never under
/// `--root`: pids are the running system's).
pub fn pid_running(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_state_still_names_its_keys_and_files() {
        let full = br#"{"version":1,"granted":{"host":"h","keys":[{"algorithm":"ssh-ed25519",
            "blob": "AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA",
            "comment":"x"}],"keys_file":"/root/.ssh/authorized_keys2","layers":["nft"#;
        let s = salvage(&full[..full.len() - 5]);
        assert_eq!(
            s.blobs,
            ["AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA"]
        );
        assert_eq!(s.keys_files, [PathBuf::from("/root/.ssh/authorized_keys2")]);
        assert_eq!(salvage(b"\x00\xff{"), Salvaged::default());
        // Cut inside the blob: a partial value is no key.
        let cut = &full[..full.iter().position(|&c| c == b'/').unwrap()];
        assert!(salvage(cut).blobs.is_empty());
    }

    #[test]
    fn stale_temp_files_of_dead_writers_go_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let dead = {
            let mut c = std::process::Command::new("true").spawn().unwrap();
            let pid = c.id();
            c.wait().unwrap();
            pid
        };
        let me = std::process::id();
        for n in [
            format!(".state.json.{dead}.tmp"),
            format!(".state.json.{me}.tmp"),
            "state.json".into(),
            "state.json.corrupt-1".into(),
            ".state.json.x.tmp".into(),
        ] {
            fs::write(dir.path().join(n), b"{}").unwrap();
        }
        sweep_stale(dir.path());
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            format!(".state.json.{me}.tmp"),
            ".state.json.x.tmp".into(),
            "state.json".to_string(),
            "state.json.corrupt-1".into(),
        ];
        want.sort();
        assert_eq!(left, want);
    }
}
