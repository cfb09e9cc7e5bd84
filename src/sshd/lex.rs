//! Tokenising one sshd_config line exactly as OpenSSH 9.x does: the keyword with `strdelim()`
//! (misc.c: whitespace, one optional `=`, double quotes), the arguments with `argv_split()`
//! (misc.c: single and double quotes, backslash escapes, `#` at the start of a word ends the line).

/// `WHITESPACE` of misc.h.
const WS: &[char] = &[' ', '\t', '\r', '\n'];

/// One line as `process_server_config_line_depth()` (servconf.c) sees it after
/// `load_server_config()` stripped the leading " \t\r" and it stripped the trailing whitespace.
pub fn trim_line(line: &str) -> &str {
    line.trim_start_matches([' ', '\t', '\r'])
        .trim_end_matches([' ', '\t', '\r', '\n', '\x0c'])
}

/// `strdelim()`: the next token and the rest of the string. `None` when a double quote is not
/// closed (sshd then ignores the token, as it returns NULL). Splits on whitespace, and on at
/// most one `=` between two tokens, so `Port=22`, `Port = 22` and `Port 22` are the same.
pub fn strdelim(s: &str) -> Option<(String, &str)> {
    let stop = s.find(|c: char| WS.contains(&c) || c == '"' || c == '=');
    let Some(i) = stop else {
        return Some((s.to_string(), ""));
    };
    let bytes = s.as_bytes();
    if bytes[i] == b'"' {
        // Quoted: the token is what precedes the quote glued to the quoted text.
        let after = &s[i + 1..];
        let close = after.find('"')?;
        let token = format!("{}{}", &s[..i], &after[..close]);
        let rest = after[close + 1..].trim_start_matches(WS);
        return Some((token, rest));
    }
    let token = s[..i].to_string();
    let split_on_equals = bytes[i] == b'=';
    let mut rest = s[i + 1..].trim_start_matches(WS);
    if !split_on_equals {
        if let Some(r) = rest.strip_prefix('=') {
            rest = r.trim_start_matches(WS);
        }
    }
    Some((token, rest))
}

/// An unclosed quote in a directive's arguments (sshd: "invalid quotes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnclosedQuote;

/// `argv_split(s, &ac, &av, 1)`: the arguments of a directive.
pub fn argv_split(s: &str) -> Result<Vec<String>, UnclosedQuote> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' || chars[i] == '\t' {
            i += 1;
            continue;
        }
        if chars[i] == '#' {
            break;
        }
        let mut quote: Option<char> = None;
        let mut arg = String::new();
        while i < chars.len() {
            let c = chars[i];
            if c == '\\' {
                let next = chars.get(i + 1).copied();
                match next {
                    Some('\'') | Some('"') | Some('\\') => {
                        i += 1;
                        arg.push(chars[i]);
                    }
                    Some(' ') if quote.is_none() => {
                        i += 1;
                        arg.push(' ');
                    }
                    _ => arg.push(c),
                }
            } else if quote.is_none() && (c == ' ' || c == '\t') {
                break;
            } else if quote.is_none() && (c == '"' || c == '\'') {
                quote = Some(c);
            } else if quote == Some(c) {
                quote = None;
            } else {
                arg.push(c);
            }
            i += 1;
        }
        if quote.is_some() {
            return Err(UnclosedQuote);
        }
        out.push(arg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_separators() {
        assert_eq!(strdelim("Port 22").unwrap(), ("Port".into(), "22"));
        assert_eq!(strdelim("Port=22").unwrap(), ("Port".into(), "22"));
        assert_eq!(strdelim("Port = 22").unwrap(), ("Port".into(), "22"));
        assert_eq!(
            strdelim("Port\t =  22 23").unwrap(),
            ("Port".into(), "22 23")
        );
        // Only one '=' is a separator.
        assert_eq!(strdelim("Port == 22").unwrap(), ("Port".into(), "= 22"));
        assert_eq!(strdelim("Port").unwrap(), ("Port".into(), ""));
        assert_eq!(strdelim("\"Port\" 22").unwrap(), ("Port".into(), "22"));
        assert!(strdelim("\"Port 22").is_none());
    }

    #[test]
    fn arguments() {
        assert_eq!(argv_split("a b\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(argv_split("\"a b\" 'c d'").unwrap(), ["a b", "c d"]);
        assert_eq!(argv_split("a\\ b c # comment").unwrap(), ["a b", "c"]);
        assert_eq!(argv_split("a#b").unwrap(), ["a#b"]);
        assert_eq!(argv_split("x\\qy").unwrap(), ["x\\qy"]);
        assert!(argv_split("\"open").is_err());
        assert!(argv_split("# all comment").unwrap().is_empty());
    }

    #[test]
    fn trimming() {
        assert_eq!(trim_line("  \tPort 22 \r\n"), "Port 22");
        assert_eq!(trim_line("\x0c"), "");
    }
}
