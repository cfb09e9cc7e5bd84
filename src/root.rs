//! The `--root DIR` prefix. Every file the tool reads or writes is named by its absolute path on a
//! real system (`/etc/ssh/sshd_config`) and resolved here, so a test's sandbox can never leak onto
//! the host's own files.
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// The real system root.
    pub fn system() -> Self {
        Root {
            dir: PathBuf::from("/"),
        }
    }

    /// A root given with `--root`: it must exist and be a directory.
    pub fn new(dir: &Path) -> Result<Self> {
        let meta = std::fs::metadata(dir).with_context(|| {
            format!(
                "--root {}: cannot use it as the root directory; give an existing directory",
                dir.display()
            )
        })?;
        if !meta.is_dir() {
            bail!(
                "--root {}: not a directory; give the directory that stands for /",
                dir.display()
            );
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("--root {}: cannot resolve the path", dir.display()))?;
        Ok(Root { dir })
    }

    /// True when this is the machine's own `/`: only then may the tool consult live processes,
    /// `sshd -T` and /proc, which describe the real system and not a sandbox.
    pub fn is_system(&self) -> bool {
        self.dir == Path::new("/")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `/etc/ssh/sshd_config` → `<root>/etc/ssh/sshd_config`. Relative paths are taken as relative
    /// to `/`. `..` components are dropped rather than followed, so no input can name a file
    /// outside the root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let mut out = self.dir.clone();
        for c in abs.as_ref().components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let r = Root {
            dir: PathBuf::from("/sandbox"),
        };
        assert_eq!(
            r.path("/etc/ssh/sshd_config"),
            Path::new("/sandbox/etc/ssh/sshd_config")
        );
        assert_eq!(
            r.path("/../../etc/passwd"),
            Path::new("/sandbox/etc/passwd")
        );
        assert_eq!(r.path("root/.ssh"), Path::new("/sandbox/root/.ssh"));
        assert!(Root::system().is_system());
    }
}
