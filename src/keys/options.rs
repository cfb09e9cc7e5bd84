//! Key options as OpenSSH's `auth-options.c: sshauthopt_parse` reads them: comma-separated,
//! names case-insensitive (`opt_flag`/`opt_match` use strncasecmp), values always in double
//! quotes where `\"` is the only escape (`opt_dequote`), and an unknown option rejects the line.

/// One option: its name as written and, for `name="value"` options, the unescaped value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOption {
    pub name: String,
    pub value: Option<String>,
}

/// Flags sshd knows; `true` when a `no-` prefix is allowed (`opt_flag(name, allow_negate)`).
const FLAGS: &[(&str, bool)] = &[
    ("restrict", false),
    ("cert-authority", false),
    ("port-forwarding", true),
    ("agent-forwarding", true),
    ("x11-forwarding", true),
    ("touch-required", true),
    ("verify-required", true),
    ("pty", true),
    ("user-rc", true),
];

/// Options that take a quoted value (`opt_match(&opts, name)` then `opt_dequote`).
const VALUED: &[&str] = &[
    "command",
    "principals",
    "from",
    "expiry-time",
    "environment",
    "permitopen",
    "permitlisten",
    "tunnel",
];

/// Parse an option string (everything before the key type). `Err` carries sshd's reason.
pub fn parse_options(s: &[u8]) -> Result<Vec<KeyOption>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() && s[i] != b' ' && s[i] != b'\t' {
        let name_end = s[i..]
            .iter()
            .position(|&b| matches!(b, b'=' | b',' | b' ' | b'\t'))
            .map_or(s.len(), |p| i + p);
        let name = String::from_utf8_lossy(&s[i..name_end]).into_owned();
        let lower = name.to_ascii_lowercase();
        if s.get(name_end) == Some(&b'=') {
            if !VALUED.contains(&lower.as_str()) {
                return Err(format!("unsupported option \"{name}\""));
            }
            let (value, next) = dequote(s, name_end + 1)?;
            out.push(KeyOption {
                name,
                value: Some(value),
            });
            i = next;
        } else {
            let plain = lower.strip_prefix("no-");
            let known = FLAGS
                .iter()
                .any(|&(f, negatable)| f == lower || (negatable && plain == Some(f)));
            if !known {
                return Err(format!("unsupported option \"{name}\""));
            }
            out.push(KeyOption { name, value: None });
            i = name_end;
        }
        match s.get(i) {
            None | Some(b' ') | Some(b'\t') => break,
            Some(b',') => {
                i += 1;
                if i >= s.len() {
                    return Err("unexpected end-of-options".into());
                }
            }
            Some(_) => return Err("unknown key option".into()),
        }
    }
    Ok(out)
}

/// `opt_dequote`: a value must start with `"` and end at the next unescaped `"`.
fn dequote(s: &[u8], start: usize) -> Result<(String, usize), String> {
    if s.get(start) != Some(&b'"') {
        return Err("missing start quote".into());
    }
    let mut value = Vec::new();
    let mut i = start + 1;
    while i < s.len() && s[i] != b'"' {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'"') {
            i += 1;
        }
        value.push(s[i]);
        i += 1;
    }
    if i >= s.len() {
        return Err("missing end quote".into());
    }
    Ok((String::from_utf8_lossy(&value).into_owned(), i + 1))
}

/// Quote a value the way `opt_dequote` reads it back.
pub fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_values_and_case() {
        let o = parse_options(br#"No-Pty,FROM="192.0.2.1,2001:db8::1",restrict"#).unwrap();
        assert_eq!(o.len(), 3);
        assert_eq!(o[1].value.as_deref(), Some("192.0.2.1,2001:db8::1"));
    }

    #[test]
    fn rejections_match_sshd() {
        for bad in [
            &b"frob"[..],
            b"no-restrict",
            b"from=192.0.2.1",
            b"from=\"x",
            b"pty,",
            b"pty=\"x\"",
            b"from=\"x\"y",
        ] {
            assert!(
                parse_options(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn quote_round_trips() {
        let v = r#"echo "hi""#;
        let s = format!("command={}", quote(v));
        assert_eq!(
            parse_options(s.as_bytes()).unwrap()[0].value.as_deref(),
            Some(v)
        );
    }
}
