//! ovh-access: let a hosting provider's support team into a server, and shut them out again,
//! with the support key and the firewall changed as one paired, reversible operation.
//!
//! Data flows one way: `cli` → facts (read-only probes) → plan (pure) → `access` (the paired
//! transaction) → `report`. See DESIGN.md for the invariant every command keeps.
pub mod access;
pub mod cli;
pub mod dns;
pub mod error;
pub mod firewall;
pub mod keys;
pub mod report;
pub mod root;
pub mod sshd;
pub mod state;
pub mod support;

/// Parse the command line, run the command, print the result; returns the exit code.
pub fn cli_main() -> i32 {
    access::main_with_args(std::env::args_os())
}
