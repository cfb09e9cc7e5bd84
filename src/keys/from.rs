//! What a key line's `from=` admits, decided as sshd decides it: `auth-options.c:
//! auth_authorise_keyopts` hands the list to `match.c: match_host_and_ip`, which asks
//! `addrmatch.c: addr_match_list` about the client's address and `match_hostname` about its host
//! name — the address itself with `UseDNS no`, sshd's default.
use std::net::IpAddr;

use ipnet::IpNet;

use crate::sshd::matching::{cidr, match_pattern, match_pattern_list, PatternCase};

/// One entry of the list: negated or not, a network or a wildcard pattern.
struct Entry<'a> {
    neg: bool,
    net: Option<IpNet>,
    text: &'a str,
}

/// The entries, or sshd's reason for refusing the whole list (`addr_match_list` returning -2:
/// an empty entry, a mask too long or with host bits set). Such a list admits nobody.
fn entries(list: &str) -> Result<Vec<Entry<'_>>, String> {
    list.split(',')
        .map(|raw| {
            let (neg, text) = match raw.strip_prefix('!') {
                Some(t) => (true, t),
                None => (false, raw),
            };
            if text.is_empty() {
                return Err(format!("empty entry in from=\"{list}\""));
            }
            Ok(Entry {
                neg,
                net: cidr(text)?,
                text,
            })
        })
        .collect()
}

/// sshd compares a client that reaches an IPv6 socket through IPv4 as the IPv4 address
/// (`ipv64_normalise_mapped`).
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// sshd's reason for refusing the list, if it does (then the line admits nobody).
pub fn refusal(list: &str) -> Option<String> {
    entries(list).err()
}

/// `match_host_and_ip(ip-as-text, ip, list) == 1`: whether sshd lets the key in from `ip`.
pub fn admits(list: &str, ip: IpAddr) -> bool {
    let Ok(entries) = entries(list) else {
        return false;
    };
    let ip = normalise(ip);
    let text = ip.to_string();
    // addr_match_list: a matching negation ends it with -1, whatever comes after.
    let mut by_addr = false;
    for e in &entries {
        let hit = match e.net {
            Some(net) => net.contains(&ip),
            None => match_pattern(&text, e.text),
        };
        if hit && e.neg {
            return false;
        }
        by_addr |= hit;
    }
    match match_pattern_list(&text, list, PatternCase::Lower) {
        -1 => false,
        by_host => by_addr || by_host == 1,
    }
}

/// Textual addresses of every shape sshd prints, to tell whether a wildcard pattern matches
/// every address of a family (`*`, `*.*.*.*`, `*:*`) or only some.
const V4_SHAPES: &[&str] = &[
    "0.0.0.0",
    "1.2.3.4",
    "10.20.30.40",
    "100.200.250.9",
    "9.99.199.255",
    "255.255.255.255",
];
const V6_SHAPES: &[&str] = &[
    "::",
    "::1",
    "1::",
    "2001:db8::1",
    "fe80::1:2:3:4",
    "2001:db8:0:1:2:3:4:5",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
];

/// True when the line admits every address of a whole family: no `from=` at all, or a list whose
/// positive entries cover all of IPv4 or all of IPv6 — `*`, a `/0`, or networks that add up to
/// it (`0.0.0.0/1,128.0.0.0/1`) — and whose negations do not take all of it back. A negated
/// hole leaves the rest of the Internet admitted, which is still "from anywhere".
pub fn unrestricted(from: Option<&str>) -> bool {
    let Some(list) = from else {
        return true;
    };
    let Ok(entries) = entries(list) else {
        return false;
    };
    [false, true].into_iter().any(|v6| {
        let covered = |neg: bool| {
            let shapes = if v6 { V6_SHAPES } else { V4_SHAPES };
            let mut nets = Vec::new();
            for e in entries.iter().filter(|e| e.neg == neg) {
                match e.net {
                    Some(n) if matches!(n, IpNet::V6(_)) == v6 => nets.push(n),
                    Some(_) => {}
                    None if shapes
                        .iter()
                        .all(|s| match_pattern(s, &e.text.to_ascii_lowercase())) =>
                    {
                        return true
                    }
                    None => {}
                }
            }
            nets_cover_family(&nets, v6)
        };
        covered(false) && !covered(true)
    })
}

/// Whether the networks, merged, span the whole address family.
fn nets_cover_family(nets: &[IpNet], v6: bool) -> bool {
    let mut spans: Vec<(u128, u128)> = nets
        .iter()
        .map(|n| match n {
            IpNet::V4(n) => (
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.broadcast())),
            ),
            IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
        })
        .collect();
    spans.sort();
    let last = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    // The first address not yet covered; None once the family's last address is.
    let mut next = Some(0u128);
    for (lo, hi) in spans {
        match next {
            Some(n) if lo <= n => {
                next = if hi >= last {
                    None
                } else {
                    Some(n.max(hi + 1))
                }
            }
            _ => {}
        }
    }
    next.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn admits_like_match_host_and_ip() {
        assert!(admits("192.0.2.7", ip("192.0.2.7")));
        assert!(admits("192.0.2.7", ip("::ffff:192.0.2.7")));
        assert!(admits("192.0.2.0/24", ip("192.0.2.9")));
        assert!(admits("192.0.2.*", ip("192.0.2.9")));
        assert!(!admits("198.51.100.1", ip("192.0.2.7")));
        // A matching negation wins wherever it stands, also over a wildcard.
        assert!(!admits("!192.0.2.0/24,*", ip("192.0.2.9")));
        assert!(!admits("*,!192.0.2.9", ip("192.0.2.9")));
        assert!(admits("*,!192.0.2.9", ip("192.0.2.10")));
        // Lists sshd refuses admit nobody.
        for bad in [
            "",
            "192.0.2.7,",
            ",192.0.2.7",
            "192.0.2.7/24",
            "192.0.2.0/33",
            "!",
        ] {
            assert!(!admits(bad, ip("192.0.2.7")), "{bad:?}");
        }
        // Only negations: nothing positive matched.
        assert!(!admits("!198.51.100.1", ip("192.0.2.7")));
    }

    #[test]
    fn unrestricted_is_every_address_of_a_family() {
        for open in [
            None,
            Some("*"),
            Some("0.0.0.0/0"),
            Some("::/0"),
            Some("*.*.*.*"),
            Some("*:*"),
            Some("0.0.0.0/1,128.0.0.0/1,::/1,8000::/1"),
            Some("0.0.0.0/2,64.0.0.0/2,128.0.0.0/1"),
            Some("*,!198.51.100.0/24"),
        ] {
            assert!(unrestricted(open), "{open:?}");
        }
        for closed in [
            "",
            "192.0.2.7",
            "0.0.0.0/1",
            "0.0.0.0/1,192.0.0.0/2",
            "?",
            "1*",
            "*,!*",
            "0.0.0.0/0,!0.0.0.0/1,!128.0.0.0/1",
            "*,",
        ] {
            assert!(!unrestricted(Some(closed)), "{closed:?}");
        }
    }
}
