//! The edits, as pure functions of the file's bytes: install, disable, remove, and the views
//! status and doctor need. Only the support lines change; every other line keeps its bytes.
//!
//! sshd uses the first line that passes (`auth_process_authorized_keys_file` stops at the first
//! match), so a second line with the support key and no `from=` would let the support in from
//! anywhere: install refuses while such a line is active, unless told to comment it out.
//!
//! A line is the tool's only when its own key (the parsed blob, never text elsewhere in the line)
//! is a support key — one the caller names (what a grant recorded) or a built-in one — and the
//! marker is a token of its comment. An administrator may call any line `ovh-access`, or quote the
//! support key inside a `command="..."`: neither makes the line the tool's.
use std::collections::HashSet;
use std::net::IpAddr;

use anyhow::{bail, Result};
use serde::Serialize;

use super::expiry::{format_expiry, Expiry};
use super::from;
use super::line::{classify, split_lines, KeyLine, Kind};
use super::options::{quote, KeyOption};
use super::MARKER;
use crate::support::SupportKey;

/// The result of an edit: the new bytes, whether they differ, and what is worth telling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditOutcome {
    pub bytes: Vec<u8>,
    pub changed: bool,
    pub notes: Vec<String>,
}

/// One of the tool's lines (its comment carries [`MARKER`]), active or commented out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolLine {
    /// 1-based line number.
    pub line: usize,
    pub algorithm: String,
    pub blob: String,
    pub active: bool,
    /// The `from=` patterns as written.
    pub from: Vec<String>,
    /// The addresses among them, IPv4-mapped IPv6 folded to IPv4, without duplicates.
    pub addresses: Vec<IpAddr>,
    /// The `expiry-time` value as written (see [`super::sshd_reads`]).
    pub expiry_time: Option<String>,
}

/// A line carrying one of the support blobs, the tool's or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyLineInfo {
    /// 1-based line number.
    pub line: usize,
    pub blob: String,
    /// Not commented out.
    pub active: bool,
    /// The tool's own line (its comment carries [`MARKER`]).
    pub tool: bool,
    pub has_from: bool,
    /// Active, admitting the plain key (valid options, no `cert-authority`), and nothing limits
    /// where it may be used from: no `from=`, or a `from=` covering every address of a family.
    /// sshd lets the key in from anywhere through it.
    pub unrestricted: bool,
    /// The options as written (`name` or `name=value`, values unquoted).
    pub options: Vec<String>,
    /// sshd's reason for rejecting the options, when it would (then the line grants nothing).
    pub options_error: Option<String>,
}

/// A line in an edit: its text and terminator, and the line it came from.
struct Entry {
    text: Vec<u8>,
    newline: bool,
}

struct Doc {
    entries: Vec<Entry>,
    /// New lines follow the file's own convention: CRLF when its first line ends so.
    crlf: bool,
}

impl Doc {
    fn parse(content: &[u8]) -> Doc {
        let lines = split_lines(content);
        let crlf = lines.first().is_some_and(|l| l.newline && l.has_cr());
        let entries = lines
            .iter()
            .map(|l| Entry {
                text: l.text.to_vec(),
                newline: l.newline,
            })
            .collect();
        Doc { entries, crlf }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            out.extend_from_slice(&e.text);
            if e.newline {
                out.push(b'\n');
            }
        }
        out
    }

    fn append(&mut self, mut text: Vec<u8>) {
        // The file may lack a final newline: give the last line one before appending.
        if let Some(last) = self.entries.last_mut() {
            last.newline = true;
        }
        if self.crlf {
            text.push(b'\r');
        }
        self.entries.push(Entry {
            text,
            newline: true,
        });
    }
}

/// What one line is, for the edits.
struct Seen {
    active: bool,
    key: KeyLine,
}

fn seen(text: &[u8]) -> Option<Seen> {
    match classify(text) {
        Kind::Key(key) => Some(Seen { active: true, key }),
        Kind::Comment { inner: Some(key) } => Some(Seen { active: false, key }),
        _ => None,
    }
}

/// The keys whose marked lines are the tool's: those given and the built-in ones.
struct Owner {
    blobs: HashSet<String>,
}

impl Owner {
    fn new(given: &[&str]) -> Owner {
        let mut blobs: HashSet<String> = crate::support::profiles()
            .into_iter()
            .map(|p| p.key.blob)
            .collect();
        blobs.extend(given.iter().map(|b| b.to_string()));
        Owner { blobs }
    }

    fn owns(&self, k: &KeyLine) -> bool {
        k.comment_has_token(MARKER) && self.blobs.contains(&k.blob)
    }
}

/// Whether sshd could admit the plain key through the line (`auth_check_authkey_line`): its
/// options parse, and it is no `cert-authority` line, which only vouches for certificates.
fn admits_plain_key(k: &KeyLine) -> bool {
    k.options.as_ref().is_ok_and(|o| {
        !o.iter()
            .any(|o| o.value.is_none() && o.name.eq_ignore_ascii_case("cert-authority"))
    })
}

fn unrestricted(k: &KeyLine) -> bool {
    admits_plain_key(k) && from::unrestricted(k.option("from"))
}

/// The options an administrator added to the tool's line, kept when the tool rewrites it: all
/// but `from=` and `expiry-time=`, which are the tool's (sshd refuses a second of either).
fn added_options(k: &KeyLine) -> Vec<KeyOption> {
    let Ok(opts) = &k.options else {
        return Vec::new();
    };
    opts.iter()
        .filter(|o| {
            !(o.name.eq_ignore_ascii_case("from") || o.name.eq_ignore_ascii_case("expiry-time"))
        })
        .cloned()
        .collect()
}

/// The tool's rendered line with the added options after its own.
fn with_options(line: &str, added: &[KeyOption]) -> String {
    if added.is_empty() {
        return line.to_string();
    }
    let (opts, rest) = line.split_once(' ').expect("a rendered line has options");
    let extra: Vec<String> = added
        .iter()
        .map(|o| match &o.value {
            Some(v) => format!("{}={}", o.name, quote(v)),
            None => o.name.clone(),
        })
        .collect();
    format!("{opts},{} {rest}", extra.join(","))
}

/// `#` in front of the line's own bytes: sshd skips it, and the original stays readable.
fn commented(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1);
    out.push(b'#');
    out.extend_from_slice(text);
    out
}

/// The `from=` value: each IPv4 address also in its IPv4-mapped form, for an sshd that sees
/// IPv4 clients through a dual-stack socket without normalising them.
fn from_list(from: &[IpAddr]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for ip in from {
        match ip {
            IpAddr::V4(v4) => {
                push(v4.to_string());
                push(format!("::ffff:{v4}"));
            }
            IpAddr::V6(v6) => push(v6.to_string()),
        }
    }
    out
}

/// The tool's line for a key: `from="…"[,expiry-time="…"] TYPE BLOB [key comment] ovh-access`.
/// The key's own comment comes first so the line reads like OVH's published one.
pub fn render_line(key: &SupportKey, from: &[IpAddr], expiry: Option<&Expiry>) -> Result<String> {
    if from.is_empty() {
        // A line without from= would admit the support key from anywhere.
        bail!("no support address to put in from=; resolve the support host or give --address");
    }
    let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad(&key.algorithm) || bad(&key.blob) || key.comment.chars().any(|c| c.is_control()) {
        bail!(
            "the support key {} has a malformed type, blob or comment; give a clean public key file",
            key.fingerprint
        );
    }
    let mut opts = format!("from={}", quote(&from_list(from).join(",")));
    if let Some(e) = expiry {
        opts.push_str(&format!(",expiry-time={}", quote(&format_expiry(e)?)));
    }
    let mut comment: Vec<&str> = key.comment.split_whitespace().collect();
    if !comment.contains(&MARKER) {
        comment.push(MARKER);
    }
    Ok(format!(
        "{opts} {} {} {}",
        key.algorithm,
        key.blob,
        comment.join(" ")
    ))
}

/// Install each support key as the tool's line, restricted to `from`, replacing the tool's
/// earlier line for the same key (active or commented out) in place.
pub fn install(
    content: &[u8],
    keys: &[SupportKey],
    from: &[IpAddr],
    expiry: Option<&Expiry>,
    replace_foreign: bool,
) -> Result<EditOutcome> {
    let mut doc = Doc::parse(content);
    let blobs: HashSet<&str> = keys.iter().map(|k| k.blob.as_str()).collect();
    let owner = Owner::new(&blobs.iter().copied().collect::<Vec<_>>());
    let fp = |blob: &str| {
        keys.iter()
            .find(|k| k.blob == blob)
            .map_or_else(String::new, |k| k.fingerprint.clone())
    };
    let mut notes = Vec::new();

    // Foreign active lines with a support key, checked before anything changes.
    let mut open_foreign = Vec::new();
    for (i, e) in doc.entries.iter().enumerate() {
        let Some(s) = seen(&e.text) else { continue };
        if !s.active || owner.owns(&s.key) || !blobs.contains(s.key.blob.as_str()) {
            continue;
        }
        if !admits_plain_key(&s.key) {
            continue; // sshd never lets the plain key in through it.
        }
        if unrestricted(&s.key) {
            open_foreign.push((i, s.key.blob.clone()));
        } else if s
            .key
            .option("from")
            .is_some_and(|f| from::refusal(f).is_none())
        {
            notes.push(format!(
                "line {}: another line carries the support key {} with from=\"{}\"; sshd uses \
                 whichever line comes first, and revoke comments it out too",
                i + 1,
                fp(&s.key.blob),
                s.key.option("from").unwrap_or_default()
            ));
        }
    }
    if !open_foreign.is_empty() && !replace_foreign {
        let lines: Vec<String> = open_foreign
            .iter()
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        return Err(crate::bad_input!(
            "line {} of the keys file already carries the support key {} without a from= \
             restriction, so sshd would let the support in from anywhere; comment it out or \
             rerun with --replace-foreign",
            lines.join(", "),
            fp(&open_foreign[0].1)
        ));
    }
    for (i, blob) in &open_foreign {
        let e = &mut doc.entries[*i];
        e.text = commented(&e.text);
        notes.push(format!(
            "line {}: commented out a line that carried the support key {} without from= \
             (--replace-foreign)",
            i + 1,
            fp(blob)
        ));
    }

    for key in keys {
        let line = render_line(key, from, expiry)?;
        let mut placed = false;
        for e in doc.entries.iter_mut() {
            let Some(s) = seen(&e.text) else { continue };
            if !owner.owns(&s.key) || s.key.blob != key.blob {
                continue;
            }
            if !placed {
                // Replace in place, keeping the line's own CR so a CRLF file stays CRLF, and
                // the options an administrator added to it.
                let mut text = with_options(&line, &added_options(&s.key)).into_bytes();
                if e.text.last() == Some(&b'\r') {
                    text.push(b'\r');
                }
                e.text = text;
                placed = true;
            } else if s.active {
                // A duplicate of the tool's line: only one may grant.
                e.text = commented(&e.text);
            }
        }
        if !placed {
            doc.append(line.into_bytes());
        }
    }
    // One grant at a time: an active line of the tool's for another built-in key belongs to the
    // grant this one replaces (another region). Left active, it would keep granting behind a
    // firewall that now opens for other addresses, or for no one. (The lines of a recorded
    // --key-file grant are retired by the caller, which knows that grant.)
    for (i, e) in doc.entries.iter_mut().enumerate() {
        let Some(s) = seen(&e.text) else { continue };
        if s.active && owner.owns(&s.key) && !blobs.contains(s.key.blob.as_str()) {
            e.text = commented(&e.text);
            notes.push(format!(
                "line {}: commented out the tool's line of an earlier grant for another key",
                i + 1
            ));
        }
    }
    Ok(outcome(content, doc.bytes(), notes))
}

/// Comment out every active line whose key is one of the blobs, the tool's or not: after a
/// revoke nothing may let the support in. A line for another key stays as it is, whatever its
/// comment or its `command=` says.
pub fn disable(content: &[u8], blobs: &[&str]) -> EditOutcome {
    let mut doc = Doc::parse(content);
    let mut notes = Vec::new();
    for (i, e) in doc.entries.iter_mut().enumerate() {
        let hit = seen(&e.text).is_some_and(|s| s.active && blobs.contains(&s.key.blob.as_str()));
        if hit {
            e.text = commented(&e.text);
            notes.push(format!("line {}: commented out", i + 1));
        }
    }
    outcome(content, doc.bytes(), notes)
}

/// Comment out the tool's own active lines for these keys (a re-grant retiring an earlier
/// grant's key): the administrator's lines stay, unlike at revoke.
pub fn retire(content: &[u8], blobs: &[&str]) -> EditOutcome {
    let mut doc = Doc::parse(content);
    let owner = Owner::new(blobs);
    let mut notes = Vec::new();
    for (i, e) in doc.entries.iter_mut().enumerate() {
        let hit = seen(&e.text).is_some_and(|s| {
            s.active && owner.owns(&s.key) && blobs.contains(&s.key.blob.as_str())
        });
        if hit {
            e.text = commented(&e.text);
            notes.push(format!("line {}: commented out", i + 1));
        }
    }
    outcome(content, doc.bytes(), notes)
}

/// `revoke --remove`: delete the tool's lines for these keys (active or not), comment out the
/// other active lines whose key is one of them.
pub fn remove(content: &[u8], blobs: &[&str]) -> EditOutcome {
    let mut doc = Doc::parse(content);
    let owner = Owner::new(blobs);
    let mut notes = Vec::new();
    let mut kept = Vec::with_capacity(doc.entries.len());
    for (i, mut e) in std::mem::take(&mut doc.entries).into_iter().enumerate() {
        let s = seen(&e.text);
        let ours = |s: &Seen| owner.owns(&s.key) && blobs.contains(&s.key.blob.as_str());
        if s.as_ref().is_some_and(ours) {
            notes.push(format!("line {}: removed the tool's line", i + 1));
            continue;
        }
        let hit = s
            .as_ref()
            .is_some_and(|s| s.active && blobs.contains(&s.key.blob.as_str()));
        if hit {
            e.text = commented(&e.text);
            notes.push(format!(
                "line {}: commented out (not the tool's line)",
                i + 1
            ));
        }
        kept.push(e);
    }
    doc.entries = kept;
    outcome(content, doc.bytes(), notes)
}

/// The tool's lines for these keys or the built-in ones, for status and doctor.
pub fn tool_lines(content: &[u8], blobs: &[&str]) -> Vec<ToolLine> {
    let owner = Owner::new(blobs);
    let mut out = Vec::new();
    for (i, l) in split_lines(content).iter().enumerate() {
        let Some(s) = seen(l.text) else { continue };
        if !owner.owns(&s.key) {
            continue;
        }
        let from: Vec<String> = s
            .key
            .option("from")
            .map(|f| f.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let mut addresses: Vec<IpAddr> = Vec::new();
        for p in &from {
            if let Ok(ip) = p.parse::<IpAddr>() {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
        }
        out.push(ToolLine {
            line: i + 1,
            algorithm: s.key.algorithm.clone(),
            blob: s.key.blob.clone(),
            active: s.active,
            from,
            addresses,
            expiry_time: s.key.option("expiry-time").map(str::to_string),
        });
    }
    out
}

/// Every line carrying one of the blobs, the tool's or not, for status and doctor.
pub fn support_lines(content: &[u8], blobs: &[&str]) -> Vec<KeyLineInfo> {
    let mut out = Vec::new();
    for (i, l) in split_lines(content).iter().enumerate() {
        let Some(s) = seen(l.text) else { continue };
        if !blobs.contains(&s.key.blob.as_str()) {
            continue;
        }
        let (options, options_error) = match &s.key.options {
            Ok(o) => (
                o.iter()
                    .map(|o| match &o.value {
                        Some(v) => format!("{}={v}", o.name),
                        None => o.name.clone(),
                    })
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e.clone())),
        };
        out.push(KeyLineInfo {
            line: i + 1,
            blob: s.key.blob.clone(),
            active: s.active,
            tool: s.key.comment_has_token(MARKER),
            has_from: s.key.option("from").is_some(),
            unrestricted: s.active && unrestricted(&s.key),
            options,
            options_error,
        });
    }
    out
}

fn outcome(before: &[u8], bytes: Vec<u8>, notes: Vec<String>) -> EditOutcome {
    let changed = bytes != before;
    EditOutcome {
        bytes,
        changed,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA";

    fn key() -> SupportKey {
        SupportKey::from_parts("ssh-ed25519", ED, "support@cache-ng").unwrap()
    }

    fn addrs() -> Vec<IpAddr> {
        vec![
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            "2001:db8::10".parse().unwrap(),
        ]
    }

    #[test]
    fn install_writes_one_restricted_line() {
        let out = install(b"", &[key()], &addrs(), None, false).unwrap();
        let text = String::from_utf8(out.bytes).unwrap();
        assert_eq!(
            text,
            format!(
                "from=\"192.0.2.10,::ffff:192.0.2.10,2001:db8::10\" ssh-ed25519 {ED} \
                 support@cache-ng ovh-access\n"
            )
        );
        let t = tool_lines(text.as_bytes(), &[ED]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].addresses, addrs());
        assert!(t[0].active);
    }

    #[test]
    fn install_refuses_an_unrestricted_foreign_line_and_replaces_it_when_told() {
        let file = format!("ssh-ed25519 {ED} old\n");
        let err = install(file.as_bytes(), &[key()], &addrs(), None, false).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("line 1"), "{err}");
        let out = install(file.as_bytes(), &[key()], &addrs(), None, true).unwrap();
        let s = support_lines(&out.bytes, &[ED]);
        assert_eq!(s.len(), 2);
        assert!(!s[0].active && !s[0].tool);
        assert!(s[1].active && s[1].tool && s[1].has_from && !s[1].unrestricted);
    }

    #[test]
    fn from_star_counts_as_unrestricted() {
        let file = format!("from=\"*\" ssh-ed25519 {ED}\n");
        assert!(install(file.as_bytes(), &[key()], &addrs(), None, false).is_err());
        let file = format!("from=\"192.0.2.99\" ssh-ed25519 {ED}\n");
        let out = install(file.as_bytes(), &[key()], &addrs(), None, false).unwrap();
        assert_eq!(out.notes.len(), 1);
    }

    #[test]
    fn regrant_updates_in_place_and_disable_then_enable_round_trips() {
        let first = install(b"# top\n", &[key()], &addrs(), None, false).unwrap();
        let off = disable(&first.bytes, &[ED]);
        assert!(off.changed);
        assert!(tool_lines(&off.bytes, &[ED]).iter().all(|t| !t.active));
        let on = install(&off.bytes, &[key()], &addrs(), None, false).unwrap();
        assert_eq!(on.bytes, first.bytes);
        let again = install(&on.bytes, &[key()], &addrs(), None, false).unwrap();
        assert!(!again.changed);
        let other = vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))];
        let moved = install(&on.bytes, &[key()], &other, None, false).unwrap();
        assert_eq!(tool_lines(&moved.bytes, &[ED]).len(), 1);
        assert_eq!(tool_lines(&moved.bytes, &[ED])[0].addresses, other);
    }

    #[test]
    fn a_grant_for_another_key_leaves_the_earlier_line_to_retire() {
        const ED2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKa0YISaa75BrL4udhn7reoUNIHSlG1BH24c9IDwUXlM";
        let other = SupportKey::from_parts("ssh-ed25519", ED2, "support@cache-ng-ca").unwrap();
        let first = install(b"", &[key()], &addrs(), None, false).unwrap();
        let second = install(&first.bytes, &[other], &addrs(), None, false).unwrap();
        let retired = retire(&second.bytes, &[ED]);
        let lines = tool_lines(&retired.bytes, &[ED, ED2]);
        assert_eq!(lines.len(), 2);
        assert!(!lines.iter().find(|l| l.blob == ED).unwrap().active);
        assert!(lines.iter().find(|l| l.blob == ED2).unwrap().active);
    }

    #[test]
    fn a_grant_for_another_region_disables_the_other_built_in_line() {
        let eu = crate::support::profile_by_name("eu").unwrap().key;
        let ca = crate::support::profile_by_name("ca").unwrap().key;
        let first = install(b"", std::slice::from_ref(&eu), &addrs(), None, false).unwrap();
        let second = install(
            &first.bytes,
            std::slice::from_ref(&ca),
            &addrs(),
            None,
            false,
        )
        .unwrap();
        let lines = tool_lines(&second.bytes, &[]);
        assert!(!lines.iter().find(|l| l.blob == eu.blob).unwrap().active);
        assert!(lines.iter().find(|l| l.blob == ca.blob).unwrap().active);
        assert_eq!(second.notes.len(), 1, "{:?}", second.notes);
    }

    #[test]
    fn remove_deletes_only_the_tools_lines() {
        let file = format!("a\nssh-ed25519 {ED} foreign\n");
        let on = install(file.as_bytes(), &[key()], &addrs(), None, true).unwrap();
        let out = remove(&on.bytes, &[ED]);
        assert_eq!(
            out.bytes,
            format!("a\n#ssh-ed25519 {ED} foreign\n").into_bytes()
        );
    }

    #[test]
    fn empty_from_is_refused() {
        assert!(install(b"", &[key()], &[], None, false).is_err());
    }
}
