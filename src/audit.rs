//! The audit trail: every change is logged to syslog (facility authpriv, where sshd logs too)
//! with who ran the tool.
use std::ffi::CString;

/// The operator: the user who ran sudo, else the login name, else the effective uid.
pub fn operator() -> String {
    if let Ok(u) = std::env::var("SUDO_USER") {
        if !u.is_empty() {
            return u;
        }
    }
    for var in ["LOGNAME", "USER"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    format!("uid {}", rustix::process::getuid().as_raw())
}

/// Log one line: `ovh-access[pid]: <action> by <operator>: <details>`. Best effort: without a
/// syslog socket the message is dropped by libc, which is right for a sandboxed test.
pub fn log(action: &str, details: &str) {
    let msg = format!("{action} by {}: {details}", operator());
    let Ok(msg) = CString::new(msg.replace('\0', " ")) else {
        return;
    };
    static IDENT: &[u8] = b"ovh-access\0";
    // SAFETY: IDENT is a static NUL-terminated string that outlives the process's use of it;
    // the format string is a constant "%s" so the message cannot be read as a format.
    unsafe {
        libc::openlog(IDENT.as_ptr().cast(), libc::LOG_PID, libc::LOG_AUTHPRIV);
        libc::syslog(
            libc::LOG_NOTICE | libc::LOG_AUTHPRIV,
            c"%s".as_ptr(),
            msg.as_ptr(),
        );
        libc::closelog();
    }
}
