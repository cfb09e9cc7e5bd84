//! ovh-access: let a hosting provider's support team into a server, and shut them out again,
//! with the support key and the firewall changed as one paired, reversible operation.
//!
//! Data flows one way: `cli` (the command boundary: arguments become requests) → facts
//! (read-only probes: `sshd`, `keys`, `firewall`'s read side, `dns`) → plan (pure, one per
//! command in `access`) → `access::txn` (the paired, journaled transaction) → `report` (human
//! and JSON rendering). Nothing below `cli` imports it. See DESIGN.md for the invariant every
//! command keeps.
pub mod access;
pub mod audit;
pub mod bounded;
pub mod civil;
pub mod cli;
pub mod dns;
pub mod doctor;
pub mod error;
pub mod firewall;
pub mod keys;
pub mod nlmsg;
pub mod report;
pub mod root;
pub mod sessions;
pub mod sockets;
pub mod sshd;
pub mod state;
pub mod support;
pub mod text;

/// What `--version` prints after the name: the release and the git commit it was built from
/// (build.rs; "unknown" when built from a tree that has neither git nor `git archive`'s stamp).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OVH_ACCESS_COMMIT"),
    ")"
);

/// Parse the command line, run the command, print the result; returns the exit code.
pub fn cli_main() -> i32 {
    #[cfg(feature = "failpoints")]
    let _scenario = fail::FailScenario::setup();
    cli::main_with_args(std::env::args_os())
}

/// A failpoint at a step boundary of a transaction. Compiled in only with the `failpoints` cargo
/// feature: `FAILPOINTS=after-key=return` then kills the process right there with SIGKILL — a
/// crash, not a clean error — so the crash-matrix tests can check what the next run does.
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        {
            fail::eval($name, |_| {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
            });
        }
    };
}
