//! Property tests for the keys-file editor. The oracle never uses the editor's own parser: a
//! "support line" is any line containing the support blob or the marker, found by plain byte
//! search; every other line must come out byte-identical and in the same order, whatever the
//! file and whatever sequence of install, disable (revoke), re-install and remove.
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use ovh_access::error::exit_code;
use ovh_access::keys::{self, Expiry, ExpiryStyle, MARKER};
use ovh_access::support::SupportKey;
use proptest::prelude::*;

fn eu() -> SupportKey {
    let text = include_bytes!("data/keys/ovh-eu.pub");
    keys::parse_key_file(text, "ovh-eu.pub").unwrap().remove(0)
}

const OTHER: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn lines(b: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
    if b.ends_with(b"\n") || b.is_empty() {
        v.pop();
    }
    v
}

/// The oracle's view: a line is a support line when it carries the blob or the marker.
fn is_support(line: &[u8], blob: &str) -> bool {
    contains(line, blob.as_bytes()) || contains(line, MARKER.as_bytes())
}

fn others<'a>(b: &'a [u8], blob: &str) -> Vec<&'a [u8]> {
    lines(b)
        .into_iter()
        .filter(|l| !is_support(l, blob))
        .collect()
}

/// Not commented out, as sshd decides it (after spaces and tabs, no `#`).
fn active(line: &[u8]) -> bool {
    let t: Vec<u8> = line
        .iter()
        .copied()
        .skip_while(|b| *b == b' ' || *b == b'\t')
        .collect();
    !t.is_empty() && t[0] != b'#'
}

fn support_line(blob: String) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["", "#", "# ", "  ", "\t#", "##  "]),
        prop::sample::select(vec![
            "",
            "from=\"198.51.100.9\" ",
            "no-pty,FROM=\"198.51.100.0/24\" ",
            "from=\"*\" ",
            "command=\"echo \\\"a b\\\"\" ",
            "restrict ",
        ]),
        prop::sample::select(vec!["ssh-rsa", "rsa-sha2-512"]),
        prop::sample::select(vec![
            "",
            " support@cache-ng",
            " support@cache-ng ovh-access",
            " ovh-access",
            "  x y",
        ]),
    )
        .prop_map(move |(pre, opts, ty, comment)| {
            format!("{pre}{opts}{ty} {blob}{comment}").into_bytes()
        })
}

fn any_line(blob: String) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..60),
        1 => "[ \t]{0,3}".prop_map(String::into_bytes),
        2 => "[ \t]{0,2}#[ -~]{0,40}".prop_map(String::into_bytes),
        2 => (prop::sample::select(vec!["", "no-pty ", "from=\"192.0.2.0/24\" ", "#"]), "[ -~]{0,20}")
            .prop_map(|(o, c)| format!("{o}ssh-ed25519 {OTHER} {c}").into_bytes()),
        3 => support_line(blob),
    ]
}

/// A file: lines, each with LF or CRLF, and maybe no final newline.
fn file(blob: String) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((any_line(blob), any::<bool>()), 0..10),
        any::<bool>(),
    )
        .prop_map(|(ls, final_nl)| {
            let mut out = Vec::new();
            let n = ls.len();
            for (i, (mut l, crlf)) in ls.into_iter().enumerate() {
                if crlf {
                    l.push(b'\r');
                }
                out.extend_from_slice(&l);
                if i + 1 < n || final_nl {
                    out.push(b'\n');
                }
            }
            out
        })
}

#[derive(Debug, Clone)]
enum Op {
    Install {
        addr: usize,
        expiry: bool,
        replace_foreign: bool,
    },
    Disable,
    Remove,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, any::<bool>(), any::<bool>())
            .prop_map(|(addr, expiry, replace_foreign)| Op::Install { addr, expiry, replace_foreign }),
        2 => Just(Op::Disable),
        1 => Just(Op::Remove),
    ]
}

fn address_sets() -> Vec<Vec<IpAddr>> {
    vec![
        vec!["192.0.2.10".parse().unwrap()],
        vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ],
        vec![
            "203.0.113.5".parse().unwrap(),
            "203.0.113.6".parse().unwrap(),
        ],
    ]
}

fn expiry() -> Expiry {
    Expiry {
        at: UNIX_EPOCH + Duration::from_secs(1_795_577_400),
        style: ExpiryStyle::Utc,
    }
}

fn apply(content: &[u8], op: &Op, key: &SupportKey) -> anyhow::Result<keys::EditOutcome> {
    let blob = key.blob.as_str();
    match op {
        Op::Install {
            addr,
            expiry: e,
            replace_foreign,
        } => {
            let ex = expiry();
            keys::install(
                content,
                std::slice::from_ref(key),
                &address_sets()[*addr],
                e.then_some(&ex),
                *replace_foreign,
            )
        }
        Op::Disable => Ok(keys::disable(content, &[blob])),
        Op::Remove => Ok(keys::remove(content, &[blob])),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn only_support_lines_ever_change(
        content in file(eu().blob),
        ops in prop::collection::vec(op(), 1..6),
    ) {
        let key = eu();
        let blob = key.blob.as_str();
        let original = others(&content, blob).into_iter().map(<[u8]>::to_vec).collect::<Vec<_>>();
        let mut cur = content.clone();
        for op in &ops {
            let out = match apply(&cur, op, &key) {
                Ok(out) => out,
                Err(e) => {
                    // Only install refuses, only as bad input, and only for an unrestricted
                    // active foreign line.
                    let refusable = matches!(op, Op::Install { replace_foreign: false, .. });
                    prop_assert!(refusable, "{:?} failed: {:#}", op, e);
                    prop_assert_eq!(exit_code(&e), 2);
                    prop_assert!(keys::support_lines(&cur, &[blob]).iter().any(|l| l.active && !l.tool && l.unrestricted));
                    continue;
                }
            };
            prop_assert_eq!(out.changed, out.bytes != cur);
            let now: Vec<Vec<u8>> = others(&out.bytes, blob).into_iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(&now, &original, "a non-support line changed after {:?}", op);
            // Idempotent: the same edit again changes nothing.
            let again = apply(&out.bytes, op, &key).unwrap();
            prop_assert!(!again.changed, "not idempotent: {:?}", op);

            let ls = lines(&out.bytes);
            match op {
                Op::Install { addr, expiry: e, .. } => {
                    let ex = expiry();
                    let want = keys::render_line(&key, &address_sets()[*addr], e.then_some(&ex)).unwrap();
                    let mine: Vec<&&[u8]> = ls.iter().filter(|l| active(l) && contains(l, blob.as_bytes()) && contains(l, MARKER.as_bytes())).collect();
                    prop_assert_eq!(mine.len(), 1);
                    let mine = String::from_utf8_lossy(mine[0].strip_suffix(b"\r").unwrap_or(mine[0])).into_owned();
                    // The tool's options first, then any an administrator added to its line.
                    let (opts, rest) = want.split_once(' ').unwrap();
                    prop_assert!(mine.starts_with(opts) && mine.ends_with(rest), "{} vs {}", mine, want);
                    // Any other active line with the key is restricted by a real from= list.
                    for l in ls.iter().filter(|l| active(l) && contains(l, blob.as_bytes()) && !contains(l, MARKER.as_bytes())) {
                        let lower = String::from_utf8_lossy(l).to_ascii_lowercase();
                        prop_assert!(lower.contains("from=\"") && !lower.contains("from=\"*\""), "{}", lower);
                    }
                }
                Op::Disable => {
                    prop_assert!(!ls.iter().any(|l| active(l) && (contains(l, blob.as_bytes()))));
                    prop_assert!(keys::tool_lines(&out.bytes, &[blob]).iter().all(|t| !t.active));
                }
                Op::Remove => {
                    prop_assert!(!ls.iter().any(|l| active(l) && contains(l, blob.as_bytes())));
                    prop_assert!(keys::tool_lines(&out.bytes, &[blob]).is_empty());
                }
            }
            cur = out.bytes;
        }
    }

    #[test]
    fn regrant_after_revoke_reuses_the_same_line(content in file(eu().blob), addr in 0..3usize) {
        let key = eu();
        let blob = key.blob.as_str();
        let Ok(first) = keys::install(&content, std::slice::from_ref(&key), &address_sets()[addr], None, true) else {
            return Err(TestCaseError::fail("install with replace_foreign must not refuse"));
        };
        let off = keys::disable(&first.bytes, &[blob]);
        let second = keys::install(&off.bytes, std::slice::from_ref(&key), &address_sets()[addr], None, false).unwrap();
        let (a, b) = (keys::tool_lines(&first.bytes, &[blob]), keys::tool_lines(&second.bytes, &[blob]));
        prop_assert_eq!(a.len(), b.len());
        let active_a: Vec<usize> = a.iter().filter(|t| t.active).map(|t| t.line).collect();
        let active_b: Vec<usize> = b.iter().filter(|t| t.active).map(|t| t.line).collect();
        prop_assert_eq!(active_a, active_b);
        prop_assert_eq!(lines(&first.bytes).len(), lines(&second.bytes).len());
    }

    #[test]
    fn diff_of_an_edit_names_exactly_the_changed_lines(content in file(eu().blob)) {
        let key = eu();
        let out = keys::disable(&content, &[key.blob.as_str()]);
        let d = keys::diff(&content, &out.bytes);
        prop_assert_eq!(d.is_empty(), !out.changed);
        let minus = d.lines().filter(|l| l.starts_with('-')).count();
        let plus = d.lines().filter(|l| l.starts_with('+')).count();
        // disable only rewrites lines in place.
        prop_assert_eq!(minus, plus);
        prop_assert_eq!(minus, out.notes.len());
    }
}
