//! Exit codes. Everything is an `anyhow::Error`; the few errors that mean "the operator gave bad
//! input" are wrapped in [`BadInput`] so that `main` can exit with 2 instead of 1.
use thiserror::Error;

pub const EXIT_OK: i32 = 0;
/// The command failed (doctor: a check failed; status: drift found).
pub const EXIT_FAILURE: i32 = 1;
/// Usage error or bad input: nothing was changed.
pub const EXIT_USAGE: i32 = 2;

/// Bad input from the operator: a key file, an address, a port, a region, a root. The message is
/// one sentence: what, where, how to fix.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Shorthand: `return Err(bad_input!("..."))`.
#[macro_export]
macro_rules! bad_input {
    ($($arg:tt)*) => { anyhow::Error::new($crate::error::BadInput(format!($($arg)*))) };
}

/// The exit code for an error: 2 when any error in the chain is bad input, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.downcast_ref::<BadInput>().is_some()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}
