//! The tool's output as the tests judge it: the error contract (one line on stderr, with its fix)
//! and the one JSON value of `--json`. Shared by tests/ and, through a `#[path]` module, by
//! netns-tests/.
use std::process::Output;

use serde_json::Value;

/// A command's status and both streams, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The error's message: stderr must be exactly one line `ovh-access: error: MESSAGE` (warnings
/// aside), with no Rust debug output, and the fix after a `; `.
pub fn one_error_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.contains(": warning: ")).collect();
    assert_eq!(
        lines.len(),
        1,
        "stderr must be one error line:\n{}",
        describe(out)
    );
    let msg = lines[0]
        .strip_prefix("ovh-access: error: ")
        .unwrap_or_else(|| panic!("no `ovh-access: error: ` prefix:\n{}", describe(out)));
    for debug in [
        "Caused by",
        "Error {",
        "Os {",
        "kind:",
        "panicked",
        "RUST_BACKTRACE",
    ] {
        assert!(
            !msg.contains(debug),
            "Rust debug output in the message:\n{}",
            describe(out)
        );
    }
    // One sentence: what and where, then how to fix after a `;`.
    assert!(msg.contains("; "), "no fix after the problem: {msg}");
    msg.to_string()
}

/// A refusal's message: one error line (as [`one_error_line`]) that names every one of
/// `must_name`, and nothing on stdout.
pub fn refusal_message(out: &Output, must_name: &[&str]) -> String {
    let msg = one_error_line(out);
    for m in must_name {
        assert!(msg.contains(m), "the message must name {m:?}: {msg}");
    }
    assert!(
        out.stdout.is_empty(),
        "stdout must be empty:\n{}",
        describe(out)
    );
    msg
}

/// stdout is exactly one JSON value.
pub fn one_json_value(out: &Output) -> Value {
    let s = String::from_utf8_lossy(&out.stdout);
    let mut stream = serde_json::Deserializer::from_str(&s).into_iter::<Value>();
    let v = match stream.next() {
        Some(Ok(v)) => v,
        other => panic!("stdout is not JSON ({other:?}):\n{}", describe(out)),
    };
    assert!(
        stream.next().is_none(),
        "more than one JSON value:\n{}",
        describe(out)
    );
    v
}
