//! The effects: running the explicit `*-save` and `*-restore` binaries of one layer. Never the
//! `iptables` alternative, which names one layer of the system and hides the other.
use std::io::{ErrorKind, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::Family;

/// How long `*-restore --wait` waits for the xtables lock (/run/xtables.lock, shared by every
/// iptables-legacy process on the machine) before giving up.
const LOCK_WAIT_SECS: u32 = 10;

/// Run `<program>` (an `*-save`) and return its output. Without `-t` it dumps only the tables
/// that exist: `iptables-legacy-save -t X` would create table X by loading its module.
pub fn save(program: &str) -> Result<String> {
    let out = Command::new(program)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(program, e))?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}; check that the kernel has the iptables modules and that you are root",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| {
        format!("{program} printed something that is not UTF-8; cannot read the ruleset")
    })
}

/// Feed `script` to `<program> --noflush --wait`: one table, one commit, all or nothing (legacy
/// replaces the table with one IPT_SO_SET_REPLACE; the nft variant sends one netlink batch).
pub fn restore(program: &str, family: Family, script: &str) -> Result<()> {
    let mut child = Command::new(program)
        .arg("--noflush")
        .arg(format!("--wait={LOCK_WAIT_SECS}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(program, e))?;
    let write = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes());
    let out = child.wait_with_output().with_context(|| {
        format!("cannot wait for {program}; the firewall may or may not have changed, run status")
    })?;
    write.with_context(|| format!("cannot write the rules to {program}'s input"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if script.contains("--datestop") && !kernel_has_match(family, "time") {
        bail!(
            "{program} refused the rules ({stderr}) and the kernel lists no xt_time match: it cannot end a grant by itself; load it (modprobe xt_time) or grant without --for, then revoke when done"
        );
    }
    bail!("{program} refused the change ({stderr}); the filter table was left as it was, since a restore is all or nothing")
}

/// Whether the kernel has registered the x_tables match `name` for the family. The list lives in
/// the network namespace's proc directory (see [`super::legacy_tables`] for why thread-self).
fn kernel_has_match(family: Family, name: &str) -> bool {
    super::x_tables_list(family, "matches")
        .iter()
        .any(|m| m == name)
}

fn spawn_error(program: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == ErrorKind::NotFound {
        anyhow::anyhow!(
            "{program} is not installed; install the iptables package (it provides the -legacy and -nft binaries) or choose another --firewall"
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot run {program}; check that it is executable"))
    }
}
