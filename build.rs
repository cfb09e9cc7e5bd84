//! Build-time facts for `ovh-access --version` and the man page: the git commit the binary is built
//! from and that commit's date.
//!
//! Where they come from, first found wins:
//! 1. `OVH_ACCESS_COMMIT` (and `OVH_ACCESS_DATE`) in the environment: a packager building from a
//!    plain tarball says which commit it is;
//! 2. git, when this directory is the top of its own work tree (a tarball unpacked inside some other
//!    repository must not report that repository's commit);
//! 3. `pkg/commit`, which `git archive` fills in (`export-subst` in .gitattributes);
//! 4. otherwise "unknown": a build never fails for want of git.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=OVH_ACCESS_COMMIT");
    println!("cargo:rerun-if-env-changed=OVH_ACCESS_DATE");
    println!("cargo:rerun-if-changed=pkg/commit");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let (commit, date) = from_env()
        .or_else(|| from_git(&dir))
        .or_else(|| from_archive(&dir))
        .unwrap_or_else(|| ("unknown".to_owned(), String::new()));
    println!("cargo:rustc-env=OVH_ACCESS_COMMIT={commit}");
    println!("cargo:rustc-env=OVH_ACCESS_DATE={date}");
}

fn from_env() -> Option<(String, String)> {
    let commit = std::env::var("OVH_ACCESS_COMMIT").ok()?;
    let commit = commit.trim();
    if commit.is_empty() {
        return None;
    }
    let date = std::env::var("OVH_ACCESS_DATE").unwrap_or_default();
    Some((commit.to_owned(), date.trim().to_owned()))
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    // safe.directory: a root build of a checkout owned by another user is still this checkout.
    let safe = format!("safe.directory={}", dir.display());
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", &safe])
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(s.trim().to_owned())
}

fn from_git(dir: &Path) -> Option<(String, String)> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let date = git(dir, &["log", "-1", "--format=%cs"]).unwrap_or_default();
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it points to (a commit), and
    // packed-refs (where a branch lives after `git gc`). A path that does not exist would make
    // cargo rerun this script on every build, so only existing ones are named.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        // Relative to `dir` unless absolute (git prints either, depending on its version).
        if let Some(p) = git(dir, &["rev-parse", "--git-path", &name]) {
            let p = dir.join(p);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    Some((commit, date))
}

fn from_archive(dir: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.join("pkg/commit")).ok()?;
    let mut words = text.split_whitespace();
    let commit = words.next()?;
    // Not substituted: this tree is a checkout or a copy of one, not a `git archive`.
    if commit.starts_with("$Format") {
        return None;
    }
    let commit = commit.get(..12).unwrap_or(commit).to_owned();
    Some((commit, words.next().unwrap_or_default().to_owned()))
}
