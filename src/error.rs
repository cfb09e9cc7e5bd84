//! Exit codes and the one-line rendering of errors. Everything is an `anyhow::Error`; the few
//! errors that mean "the operator gave bad input" are wrapped in [`BadInput`] so that `main` can
//! exit with 2 instead of 1.
//!
//! The line between 1 and 2: 2 when the command as typed cannot succeed on any system (a missing
//! key file, a wrong fingerprint, an unknown region, a name that does not resolve, a bad port, a
//! `--root` that is not a directory, a changing command without root); 1 when the command was
//! right but this system refused it (nf_tables unusable, a write that failed) or found a problem
//! (doctor: a check failed; status: drift). Either way nothing was changed, or it was rolled back.
use thiserror::Error;

pub const EXIT_OK: i32 = 0;
/// The command failed (doctor: a check failed; status: drift found; the system refused).
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

/// The error as the one line printed after `ovh-access: error: `: the context chain joined with
/// `: ` (outermost first, as anyhow's `{:#}`), with any line break a message or a wrapped
/// command's output carries folded into a space, so that a log line or `--json`'s `error` field is
/// the whole message. Never the `Debug` form (`Caused by:` over several lines).
pub fn render(err: &anyhow::Error) -> String {
    one_line(&format!("{err:#}"))
}

/// Whitespace runs, line breaks included, become one space.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An I/O error's reason without the `(os error N)` suffix Rust appends, for messages that
/// already name the file.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn chains_render_on_one_line_and_keep_the_exit_code() {
        let inner: anyhow::Result<()> =
            Err(crate::bad_input!("--port 0 is outside 1-65535;\n give 22"));
        let err = inner
            .context("grant failed; nothing was changed")
            .unwrap_err();
        assert_eq!(
            render(&err),
            "grant failed; nothing was changed: --port 0 is outside 1-65535; give 22"
        );
        assert_eq!(exit_code(&err), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("netlink refused")), EXIT_FAILURE);
    }

    #[test]
    fn io_reasons_drop_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_reason(&e), "No such file or directory");
    }
}
