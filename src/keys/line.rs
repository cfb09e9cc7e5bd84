//! The authorized_keys line model, following OpenSSH's reader byte for byte where it matters.
//!
//! sshd (`auth2-pubkeyfile.c: auth_process_authorized_keys_file`) reads the file with getline(),
//! skips leading spaces and tabs, ignores empty lines and lines starting with `#`, and hands the
//! rest to `auth_check_authkey_line`: first `sshkey_read` at the start of the line (no options);
//! when that fails, `sshkey_advance_past_options` skips the options, then `sshkey_read` again.
//! Everything this module does not recognise is kept as opaque bytes; nothing is ever re-encoded,
//! so writing back an unchanged file gives the same bytes (CRLF, non-UTF-8, no final newline).
use super::options::{parse_options, KeyOption};

/// One physical line: its bytes without the `\n`, and whether a `\n` followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLine<'a> {
    pub text: &'a [u8],
    pub newline: bool,
}

impl RawLine<'_> {
    /// The line written back: its text and its own terminator.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.text.to_vec();
        if self.newline {
            out.push(b'\n');
        }
        out
    }

    /// True when the text ends in `\r` (a CRLF file). sshd keeps the `\r`: it ends up in the
    /// comment, or inside the base64 blob where `b64_pton` skips it as whitespace.
    pub fn has_cr(&self) -> bool {
        self.text.last() == Some(&b'\r')
    }
}

/// Split into physical lines exactly as getline() does; a final line without `\n` is kept.
pub fn split_lines(content: &[u8]) -> Vec<RawLine<'_>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                out.push(RawLine {
                    text: &rest[..i],
                    newline: true,
                });
                rest = &rest[i + 1..];
            }
            None => {
                out.push(RawLine {
                    text: rest,
                    newline: false,
                });
                rest = &[];
            }
        }
    }
    out
}

/// What sshd makes of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Empty or only spaces/tabs: skipped by sshd.
    Blank,
    /// Starts with `#` after spaces/tabs: skipped by sshd. `inner` is the key line found after
    /// the `#`s, when the comment is a commented-out key line.
    Comment { inner: Option<KeyLine> },
    /// A key line sshd would try to use.
    Key(KeyLine),
    /// Anything else: sshd skips it ("advance to next line"); we keep it untouched.
    Opaque,
}

/// The fields of a key line. Byte offsets are into the text the line was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// The options as `sshauthopt_parse` reads them; `Err` holds its reason when sshd would
    /// reject the line ("bad key options").
    pub options: Result<Vec<KeyOption>, String>,
    /// The key type as written (`ssh-rsa`, `rsa-sha2-512`, `RSA`, ...).
    pub algorithm: String,
    /// The base64 blob, with any whitespace inside it removed (a `\r` at the end of a CRLF line
    /// without comment). OpenSSH's base64 is canonical, so equal keys have equal blobs.
    pub blob: String,
    /// The comment after the blob, trailing `\r` and whitespace trimmed (lossy UTF-8).
    pub comment: String,
}

impl KeyLine {
    /// The value of the first option with this name (names are case-insensitive in sshd).
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .as_ref()
            .ok()?
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
            .and_then(|o| o.value.as_deref())
    }

    /// The key's own type, as its blob names it (`ssh-rsa` for a line written `rsa-sha2-512`).
    pub fn key_type(&self) -> String {
        embedded_type(&self.blob)
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_else(|| self.algorithm.clone())
    }

    /// True when the comment carries this token (the tool's marker).
    pub fn comment_has_token(&self, token: &str) -> bool {
        self.comment.split_ascii_whitespace().any(|t| t == token)
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_blanks(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_blank(b)).count();
    &s[n..]
}

/// The token up to the next space or tab, and the rest.
fn token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|&&b| !is_blank(b)).count();
    (&s[..n], &s[n..])
}

/// Classify a line's text (without its `\n`).
pub fn classify(text: &[u8]) -> Kind {
    // sshd's skip_space() skips only spaces and tabs.
    let body = skip_blanks(text);
    if body.is_empty() {
        return Kind::Blank;
    }
    if body[0] == b'#' {
        let after = body.iter().take_while(|&&b| b == b'#').count();
        let inner = parse_key_line(skip_blanks(&body[after..]));
        return Kind::Comment { inner };
    }
    match parse_key_line(body) {
        Some(k) => Kind::Key(k),
        None => Kind::Opaque,
    }
}

/// `auth_check_authkey_line`: a key at the start, or options, blanks, then a key.
pub fn parse_key_line(s: &[u8]) -> Option<KeyLine> {
    if let Some((algorithm, blob, comment)) = read_key(s) {
        return Some(KeyLine {
            options: Ok(Vec::new()),
            algorithm,
            blob,
            comment,
        });
    }
    let end = advance_past_options(s)?;
    let (opts, rest) = s.split_at(end);
    let (algorithm, blob, comment) = read_key(skip_blanks(rest))?;
    Some(KeyLine {
        options: parse_options(opts),
        algorithm,
        blob,
        comment,
    })
}

/// `sshkey_advance_past_options`: up to the first space or tab outside double quotes, where
/// `\"` does not end a quote. `None` for an unterminated quote (sshd: "invalid key option
/// string").
pub fn advance_past_options(s: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut i = 0;
    while i < s.len() && (quoted || !is_blank(s[i])) {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'"') {
            i += 1;
        } else if s[i] == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    if quoted && i >= s.len() {
        return None;
    }
    Some(i.min(s.len()))
}

/// `sshkey_read`: a known type name, blanks, a base64 blob, then an optional comment.
fn read_key(s: &[u8]) -> Option<(String, String, String)> {
    let (ty, rest) = token(s);
    // sshkey_read needs a blank after the type ("space == strlen(cp)" → invalid format).
    if rest.is_empty() || !is_key_type(ty) {
        return None;
    }
    let (blob, rest) = token(skip_blanks(rest));
    let blob = normalize_blob(blob)?;
    // sshkey_read decodes the blob and refuses a key of another type than the line names
    // (SSH_ERR_KEY_TYPE_MISMATCH), then falls back to reading options.
    if embedded_type(&blob)? != blob_type_for(ty) {
        return None;
    }
    let comment = String::from_utf8_lossy(skip_blanks(rest))
        .trim_end()
        .to_string();
    Some((String::from_utf8_lossy(ty).into_owned(), blob, comment))
}

/// The blob without the whitespace `b64_pton` would skip; `None` unless it is plausible base64
/// (alphabet, padding, length), which is what makes `sshkey_read` succeed or fall back to options.
fn normalize_blob(raw: &[u8]) -> Option<String> {
    let b: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if b.is_empty() || b.len() % 4 != 0 {
        return None;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    let body = &b[..b.len() - pad];
    if pad > 2
        || !body
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
    {
        return None;
    }
    String::from_utf8(b).ok()
}

/// The type string a blob must start with for a line naming `ty`: RSA signature names name
/// RSA keys, the webauthn signature name a security-key ECDSA key.
fn blob_type_for(ty: &[u8]) -> &[u8] {
    match ty {
        b"rsa-sha2-256" | b"rsa-sha2-512" => b"ssh-rsa",
        b"webauthn-sk-ecdsa-sha2-nistp256@openssh.com" => b"sk-ecdsa-sha2-nistp256@openssh.com",
        other => other,
    }
}

/// The key type inside a blob: a uint32 length and that many bytes (RFC 4253 §6.6).
fn embedded_type(blob: &str) -> Option<Vec<u8>> {
    // Enough base64 for the length and the longest type name.
    let head = &blob.as_bytes()[..blob.len().min(96)];
    let bytes = base64_prefix(head);
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    bytes.get(4..4 + len).map(<[u8]>::to_vec)
}

/// Decode whole base64 quanta (the input is known to be in the alphabet).
fn base64_prefix(s: &[u8]) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for q in s.chunks_exact(4) {
        let v: Vec<u8> = q.iter().map_while(|&c| val(c)).collect();
        let n = (u32::from(v.first().copied().unwrap_or(0)) << 18)
            | (u32::from(v.get(1).copied().unwrap_or(0)) << 12)
            | (u32::from(v.get(2).copied().unwrap_or(0)) << 6)
            | u32::from(v.get(3).copied().unwrap_or(0));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..v.len().max(1)]);
        if v.len() < 4 {
            break;
        }
    }
    out
}

/// The type names `sshkey_read` accepts: exact, case-sensitive key and certificate names, plus
/// the RSA signature-algorithm names (`rsa-sha2-256`/`-512`), which it maps to RSA keys. Short
/// names such as `RSA` or `ED25519` are refused (checked against `ssh-keygen -l`, OpenSSH 9.2).
pub fn is_key_type(t: &[u8]) -> bool {
    const NAMES: &[&str] = &[
        "ssh-ed25519",
        "ssh-ed25519-cert-v01@openssh.com",
        "sk-ssh-ed25519@openssh.com",
        "sk-ssh-ed25519-cert-v01@openssh.com",
        "ssh-xmss@openssh.com",
        "ssh-xmss-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-rsa",
        "rsa-sha2-256",
        "rsa-sha2-512",
        "ssh-rsa-cert-v01@openssh.com",
        "rsa-sha2-256-cert-v01@openssh.com",
        "rsa-sha2-512-cert-v01@openssh.com",
        "ssh-dss",
        "ssh-dss-cert-v01@openssh.com",
    ];
    std::str::from_utf8(t).is_ok_and(|t| NAMES.contains(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA";

    fn key(s: &str) -> KeyLine {
        match classify(s.as_bytes()) {
            Kind::Key(k) => k,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn splits_like_getline() {
        let l = split_lines(b"a\r\n\nb");
        assert_eq!(l.len(), 3);
        assert!(l[0].has_cr() && l[0].newline && !l[2].newline);
        let joined: Vec<u8> = l.iter().flat_map(|l| l.bytes()).collect();
        assert_eq!(joined, b"a\r\n\nb");
        assert!(split_lines(b"").is_empty());
    }

    #[test]
    fn plain_key_with_comment() {
        let k = key(&format!("  ssh-ed25519\t{B}  me@host  "));
        assert_eq!((k.algorithm.as_str(), k.blob.as_str()), ("ssh-ed25519", B));
        assert_eq!(k.comment, "me@host");
        assert_eq!(k.options, Ok(Vec::new()));
    }

    #[test]
    fn options_with_quoted_spaces_and_escapes() {
        let k = key(&format!(
            r#"from="192.0.2.1",Command="echo \"a b\"",no-pty ssh-ed25519 {B} c"#
        ));
        assert_eq!(k.option("from"), Some("192.0.2.1"));
        assert_eq!(k.option("command"), Some(r#"echo "a b""#));
        assert_eq!(k.comment, "c");
    }

    #[test]
    fn crlf_blob_without_comment() {
        let k = key(&format!("ssh-ed25519 {B}\r"));
        assert_eq!(k.blob, B);
    }

    #[test]
    fn comments_blanks_and_junk() {
        assert_eq!(classify(b" \t"), Kind::Blank);
        let Kind::Comment { inner: Some(k) } = classify(format!("## ssh-ed25519 {B} x").as_bytes())
        else {
            panic!()
        };
        assert_eq!(k.blob, B);
        assert_eq!(classify(b"# hello"), Kind::Comment { inner: None });
        assert_eq!(classify(b"ssh-ed25519"), Kind::Opaque);
        assert_eq!(classify(b"from=\"x ssh-ed25519 AAAA"), Kind::Opaque);
        assert_eq!(classify(b"ssh-foo AAAA"), Kind::Opaque);
        // The type named must be the blob's own (sshkey_read: SSH_ERR_KEY_TYPE_MISMATCH).
        assert_eq!(classify(format!("ssh-rsa {B} x").as_bytes()), Kind::Opaque);
        assert_eq!(
            classify(format!("rsa-sha2-512 {B} x").as_bytes()),
            Kind::Opaque
        );
        assert_eq!(classify(&[0xff, 0x00, b' ', b'x']), Kind::Opaque);
    }

    #[test]
    fn unknown_option_is_kept_but_marked_invalid() {
        let k = key(&format!("frobnicate ssh-ed25519 {B}"));
        assert!(k.options.is_err());
        // Short type names are not key types for sshd.
        assert_eq!(classify(format!("RSA {B}").as_bytes()), Kind::Opaque);
        assert_eq!(classify(format!("ED25519 {B}").as_bytes()), Kind::Opaque);
    }
}
