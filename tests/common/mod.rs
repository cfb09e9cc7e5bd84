//! Shared pieces of the tests that need no root: a temporary directory standing for `/` (the
//! tool's `--root`), and whether `unshare --net` can give the binary an empty firewall of its own.
//! Each tests/*.rs is its own crate and uses only some of these.
#![allow(dead_code)]

mod output;
#[allow(unused_imports)]
pub use output::*;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A sandbox root: files and directories are created under it by their path relative to `/`,
/// with the mode given (the tool judges modes as sshd's StrictModes does). Removed on drop.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn empty() -> Tree {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `rel` (relative to `/`) inside the sandbox.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn mkdir(&self, rel: &str, mode: u32) {
        fs::create_dir_all(self.p(rel)).unwrap();
        fs::set_permissions(self.p(rel), fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Writes `text` to `rel`, creating its parent directories.
    pub fn write(&self, rel: &str, text: &str, mode: u32) {
        fs::create_dir_all(self.p(rel).parent().unwrap()).unwrap();
        fs::write(self.p(rel), text).unwrap();
        fs::set_permissions(self.p(rel), fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The binary on this sandbox (`--root`), in an empty network namespace of its own.
    pub fn tool(&self, args: &[&str]) -> Output {
        self.tool_behind(&[], args)
    }

    /// As [`Tree::tool`], run through `wrapper`, a command that execs the rest (such as
    /// `prlimit --as=...`).
    pub fn tool_behind(&self, wrapper: &[&str], args: &[&str]) -> Output {
        let mut argv: Vec<OsString> = wrapper.iter().map(OsString::from).collect();
        argv.extend(
            [
                "unshare",
                "--net",
                env!("CARGO_BIN_EXE_ovh-access"),
                "--root",
            ]
            .map(OsString::from),
        );
        argv.push(self.dir.path().into());
        argv.extend(args.iter().map(OsString::from));
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The content of `rel`, empty when it does not exist.
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.p(rel)).unwrap_or_default()
    }
}

/// As root, `unshare --net` runs the binary in an empty network namespace of its own, so the
/// firewall it reads or changes is never this machine's.
pub fn can_unshare_net() -> bool {
    rustix::process::geteuid().is_root()
        && Command::new("unshare")
            .args(["--net", "true"])
            .status()
            .is_ok_and(|s| s.success())
}
