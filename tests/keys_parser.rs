//! The line parser under fire: no panic on any input (a fuzz-like proptest; raise the case count
//! with PROPTEST_CASES in CI), the same bytes back, and agreement with OpenSSH's own reader
//! (`ssh-keygen -l -f` uses the same `sshkey_read` + `sshkey_advance_past_options` as sshd).
use std::process::Command;

use ovh_access::keys::{self, line, options};
use ovh_access::support::SupportKey;
use proptest::prelude::*;

const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGrOcjbsyWP8zw3uMdf3vWxxCgyKw/yDuvUlp8FT2tpA";

fn eu() -> SupportKey {
    keys::parse_key_file(include_bytes!("data/keys/ovh-eu.pub"), "ovh-eu.pub")
        .unwrap()
        .remove(0)
}

/// Near-valid lines: pieces of options, quotes, escapes, key types and blobs glued together,
/// which reach far deeper into the parser than random bytes.
fn tricky_line(with_support_blob: bool) -> impl Strategy<Value = Vec<u8>> {
    let rsa: &'static str = if with_support_blob {
        Box::leak(eu().blob.into_boxed_str())
    } else {
        "AAAAB3NzaC1yc2E="
    };
    let piece = prop::sample::select(vec![
        rsa,
        "rsa-sha2-512 ",
        "from=",
        "\"",
        "\\\"",
        "\\",
        ",",
        " ",
        "\t",
        "#",
        "no-pty",
        "NO-PTY",
        "restrict",
        "command=\"a b\"",
        "expiry-time=\"20300101\"",
        "ssh-ed25519",
        "ssh-rsa",
        "RSA",
        "rsa",
        ED,
        "AAAA",
        "====",
        "=",
        "ovh-access",
        "\r",
        "\0",
        "\u{e9}",
        "x",
        "principals=\"a,b\"",
        "from=\"192.0.2.1,::ffff:192.0.2.1\"",
        "cert-authority",
        "ssh-ed25519 ",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat().into_bytes())
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(tricky_line(true), 0..8).prop_map(|ls| ls.join(&b'\n')),
    ]
}

/// Cases compared with ssh-keygen (one process each): KEYS_KEYGEN_CASES, 200 by default.
fn keygen_cases() -> u32 {
    std::env::var("KEYS_KEYGEN_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn nothing_panics_and_bytes_round_trip(c in content()) {
        let key = eu();
        let blobs = [key.blob.as_str(), ED];
        let ls = line::split_lines(&c);
        let joined: Vec<u8> = ls.iter().flat_map(|l| l.bytes()).collect();
        prop_assert_eq!(&joined, &c);
        for l in &ls {
            let _ = line::classify(l.text);
            let _ = options::parse_options(l.text);
            let _ = line::advance_past_options(l.text);
        }
        let _ = keys::tool_lines(&c, &blobs);
        let _ = keys::support_lines(&c, &blobs);
        let _ = keys::parse_key_file(&c, "fuzz");
        let addr = ["192.0.2.1".parse().unwrap()];
        if let Ok(out) = keys::install(&c, std::slice::from_ref(&key), &addr, None, true) {
            let _ = keys::diff(&c, &out.bytes);
        }
        let d = keys::disable(&c, &blobs);
        let r = keys::remove(&c, &blobs);
        prop_assert!(keys::diff(&c, &c).is_empty());
        // Nothing disabled or removed lines that carry neither a blob nor the marker.
        prop_assert!(d.notes.len() <= ls.len() && r.notes.len() <= ls.len());
        let untouchable = |bytes: &[u8]| -> Vec<Vec<u8>> {
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| {
                    let bare: Vec<u8> =
                        l.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
                    ![blobs[0], blobs[1], keys::MARKER]
                        .iter()
                        .any(|n| bare.windows(n.len()).any(|w| w == n.as_bytes()))
                })
                .map(<[u8]>::to_vec)
                .collect()
        };
        prop_assert_eq!(untouchable(&d.bytes), untouchable(&c));
        prop_assert_eq!(untouchable(&r.bytes), untouchable(&c));
    }

    #[test]
    fn a_line_without_any_blob_or_marker_is_never_touched(l in tricky_line(false)) {
        // Lines with the marker are the tool's by definition; leave them out (cheaply, without
        // rejecting cases).
        let l = String::from_utf8_lossy(&l).replace(keys::MARKER, "ovh").into_bytes();
        let mut c = l.clone();
        c.push(b'\n');
        let out = keys::disable(&c, &[eu().blob.as_str()]);
        prop_assert!(!out.changed);
        let out = keys::remove(&c, &[eu().blob.as_str()]);
        prop_assert!(!out.changed);
    }
}

/// The fingerprints of the keys OpenSSH finds in a file, in order; `None` without ssh-keygen.
fn ssh_keygen_fingerprints(content: &[u8]) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("keys");
    std::fs::write(&f, content).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&f)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect(),
    )
}

/// The fingerprints of the keys our parser finds (any options accepted, like ssh-keygen).
fn our_fingerprints(content: &[u8]) -> Vec<String> {
    line::split_lines(content)
        .iter()
        .filter_map(|l| match line::classify(l.text) {
            line::Kind::Key(k) => SupportKey::from_parts(canonical(&k.algorithm), &k.blob, "").ok(),
            _ => None,
        })
        .map(|k| k.fingerprint)
        .collect()
}

/// The key type sshd reads an RSA signature-algorithm name as; the blob must be of that type.
fn canonical(token: &str) -> &str {
    match token {
        "rsa-sha2-256" | "rsa-sha2-512" => "ssh-rsa",
        _ => token,
    }
}

#[test]
fn agrees_with_openssh_on_tricky_lines() {
    let eu = eu();
    let rsa = &eu.blob;
    let cases = [
        format!("ssh-ed25519 {ED} plain"),
        format!("  \tssh-ed25519\t{ED}"),
        format!("from=\"192.0.2.1\" ssh-ed25519 {ED} opts"),
        format!("command=\"echo \\\"a b\\\"\",no-pty ssh-ed25519 {ED} quoted space"),
        format!("from=\"unterminated ssh-ed25519 {ED}"),
        format!("RSA {ED} shortname of the wrong type"),
        format!("RSA {rsa} shortname"),
        format!("ED25519 {ED} shortname"),
        format!("ssh-ed25519-cert-v01@openssh.com {ED} a key where a certificate is named"),
        format!("rsa-sha2-256 {ED} sigalg name with the wrong key"),
        format!("rsa-sha2-512 {rsa} sigalg name"),
        format!("ssh-rsa AAAA ssh-ed25519 {ED} bad blob first"),
        format!("ssh-rsa ssh-ed25519 {ED} type then type"),
        format!("ssh-ed25519 {ED}\r"),
        format!("#ssh-ed25519 {ED} commented"),
        format!("ssh-ed25519{ED} no space"),
        format!("ssh-ed25519 {}", &ED[..ED.len() - 4]),
        "ssh-ed25519".to_string(),
        "junk line".to_string(),
        String::new(),
    ];
    for case in &cases {
        let content = format!("{case}\n");
        let Some(theirs) = ssh_keygen_fingerprints(content.as_bytes()) else {
            eprintln!("SKIP: ssh-keygen is not installed (apt install openssh-client)");
            return;
        };
        assert_eq!(our_fingerprints(content.as_bytes()), theirs, "line: {case}");
    }
}

proptest! {
    // Each case runs ssh-keygen: few cases, but every one compared with OpenSSH itself.
    #![proptest_config(ProptestConfig { cases: keygen_cases(), ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_openssh_on_generated_lines(ls in prop::collection::vec(tricky_line(true), 1..6)) {
        // ssh-keygen treats NUL as end of line and reads private keys on some inputs: leave
        // those out of the comparison.
        let ls: Vec<Vec<u8>> = ls.into_iter().filter(|l| !l.contains(&0)).collect();
        let content = ls.join(&b'\n');
        let Some(theirs) = ssh_keygen_fingerprints(&content) else { return Ok(()) };
        prop_assert_eq!(our_fingerprints(&content), theirs, "{}", String::from_utf8_lossy(&content));
    }
}
