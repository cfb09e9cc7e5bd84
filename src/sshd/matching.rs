//! `Match` lines: parsing the criteria (servconf.c `match_cfg_line()`) and evaluating them for
//! one connection with OpenSSH's pattern rules (match.c `match_pattern_list()`, addrmatch.c
//! `addr_match_list()`).
use std::net::IpAddr;

use ipnet::IpNet;

use super::lex::strdelim;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// `Match all`: must stand alone; matches every connection, and also applies at load time.
    All,
    User(String),
    Group(String),
    Host(String),
    Address(String),
    LocalAddress(String),
    LocalPort(u16),
    RDomain(String),
}

/// The connection the settings are evaluated for (`sshd -T -C user=,host=,addr=,laddr=,lport=`).
/// `None` fields are unknown: a criterion on them does not match, as in sshd's test mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub user: String,
    /// The user's group names (primary first), for `Match Group`.
    pub groups: Vec<String>,
    /// What sshd compares `Match Host` with: the reverse-DNS name with `UseDNS yes`, otherwise
    /// the address itself (auth.c `auth_get_canonical_hostname()`).
    pub host: Option<String>,
    pub addr: Option<IpAddr>,
    pub laddr: Option<IpAddr>,
    pub lport: Option<u16>,
}

/// Parse the criteria of a `Match` line (the raw text after the keyword, tokenised with
/// `strdelim()` as `match_cfg_line()` does). Errors are sshd's "Bad Match condition" causes.
pub fn parse_criteria(mut rest: &str) -> Result<Vec<Criterion>, String> {
    let mut out = Vec::new();
    while let Some((attr, r)) = strdelim(rest) {
        rest = r;
        if attr.is_empty() {
            break;
        }
        if attr.starts_with('#') {
            break;
        }
        if attr.eq_ignore_ascii_case("all") {
            let extra = strdelim(rest).map(|(a, _)| a).unwrap_or_default();
            if !out.is_empty() || (!extra.is_empty() && !extra.starts_with('#')) {
                return Err("'all' cannot be combined with other Match attributes".into());
            }
            out.push(Criterion::All);
            return Ok(out);
        }
        let arg = match strdelim(rest) {
            Some((a, r)) if !a.is_empty() && !a.starts_with('#') => {
                rest = r;
                a
            }
            _ => return Err(format!("missing Match criteria for {attr}")),
        };
        let c = match attr.to_ascii_lowercase().as_str() {
            "user" => Criterion::User(arg),
            "group" => Criterion::Group(arg),
            "host" => Criterion::Host(arg),
            "address" => {
                validate_addr_list(&arg)?;
                Criterion::Address(arg)
            }
            "localaddress" => {
                validate_addr_list(&arg)?;
                Criterion::LocalAddress(arg)
            }
            "localport" => match arg.parse::<u32>() {
                Ok(p) if (1..=65535).contains(&p) => Criterion::LocalPort(p as u16),
                _ => return Err(format!("invalid LocalPort '{arg}' on Match line")),
            },
            "rdomain" => Criterion::RDomain(arg),
            _ => return Err(format!("unsupported Match attribute {attr}")),
        };
        out.push(c);
    }
    if out.is_empty() {
        return Err("one or more attributes required for Match".into());
    }
    Ok(out)
}

/// sshd refuses an address list with an empty entry or a network with host bits set
/// (`addr_match_list()` returning -2, "inconsistent mask length").
pub fn validate_addr_list(list: &str) -> Result<(), String> {
    for entry in list.split(',') {
        let e = entry.strip_prefix('!').unwrap_or(entry);
        if e.is_empty() {
            return Err(format!("empty entry in address list '{list}'"));
        }
        if let Some(err) = cidr(e).err() {
            return Err(err);
        }
    }
    Ok(())
}

/// `addr_pton_cidr()`: Ok(Some(net)) for an address or network, Ok(None) when the entry is not
/// one (a wildcard pattern), Err when the mask is inconsistent.
pub(crate) fn cidr(e: &str) -> Result<Option<IpNet>, String> {
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Ok(Some(IpNet::from(ip)));
    }
    let Some((a, m)) = e.split_once('/') else {
        return Ok(None);
    };
    // The mask must be digits only and at most 128, or the entry is a wildcard pattern.
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let len = m.parse::<u32>().unwrap_or(u32::MAX);
    let Ok(ip) = a.parse::<IpAddr>() else {
        return Ok(None);
    };
    if len > 128 {
        return Ok(None);
    }
    // An address with a mask too long for its family (`masklen_valid()`) is an error, not a
    // pattern: sshd refuses `192.0.2.0/33`.
    let Ok(net) = IpNet::new(ip, len as u8) else {
        return Err(format!("invalid mask length for match network '{e}'"));
    };
    if net.trunc() != net {
        return Err(format!("inconsistent mask length for match network '{e}'"));
    }
    Ok(Some(net))
}

/// `match_pattern()`: `*` and `?` wildcards.
pub fn match_pattern(s: &str, pat: &str) -> bool {
    let (s, p) = (s.as_bytes(), pat.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && p[j] == b'*' {
            star = Some((j + 1, i));
            j += 1;
        } else if j < p.len() && (p[j] == b'?' || p[j] == s[i]) {
            i += 1;
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(|&c| c == b'*')
}

/// The case `match_pattern_list()` gives the patterns (its `dolower` argument): host names are
/// compared in lower case, user and group names as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternCase {
    AsWritten,
    Lower,
}

/// `match_pattern_list()`: comma-separated patterns, `!` negates; 1 positive, 0 none, -1 a
/// negated pattern matched (which always wins).
pub fn match_pattern_list(s: &str, list: &str, case: PatternCase) -> i32 {
    let mut positive = 0;
    for sub in list.split(',') {
        let (neg, pat) = match sub.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, sub),
        };
        let pat = match case {
            PatternCase::Lower => pat.to_ascii_lowercase(),
            PatternCase::AsWritten => pat.to_string(),
        };
        if match_pattern(s, &pat) {
            if neg {
                return -1;
            }
            positive = 1;
        }
    }
    positive
}

/// `addr_match_list()`: CIDR entries compared as networks, others as wildcard patterns on the
/// printed address; a negated entry that matches ends the search with no match.
pub fn addr_match_list(addr: IpAddr, list: &str) -> bool {
    let text = addr.to_string();
    let mut ret = false;
    for entry in list.split(',') {
        let (neg, e) = match entry.strip_prefix('!') {
            Some(x) => (true, x),
            None => (false, entry),
        };
        let hit = match cidr(e) {
            Ok(Some(net)) => net.contains(&addr),
            Ok(None) => match_pattern(&text, e),
            Err(_) => false,
        };
        if hit {
            if neg {
                return false;
            }
            ret = true;
        }
    }
    ret
}

/// Evaluate the criteria of one `Match` line. `conn == None` is sshd's load-time pass, where
/// only `Match all` is active (`match_cfg_line()` with a NULL connection_info).
pub fn evaluate(criteria: &[Criterion], conn: Option<&Connection>) -> bool {
    let Some(ci) = conn else {
        return criteria == [Criterion::All];
    };
    let mut result = true;
    for c in criteria {
        let ok = match c {
            Criterion::All => true,
            // match_usergroup_pattern_list(): user names are compared case-sensitively.
            Criterion::User(l) => match_pattern_list(&ci.user, l, PatternCase::AsWritten) == 1,
            // groupaccess.c ga_match_pattern_list(): any group matching, unless one is negated.
            Criterion::Group(l) => {
                let mut found = false;
                let mut negated = false;
                for g in &ci.groups {
                    match match_pattern_list(g, l, PatternCase::AsWritten) {
                        -1 => negated = true,
                        1 => found = true,
                        _ => {}
                    }
                }
                found && !negated
            }
            // match_hostname(): patterns lowercased.
            Criterion::Host(l) => ci.host.as_ref().is_some_and(|h| {
                match_pattern_list(&h.to_ascii_lowercase(), l, PatternCase::Lower) == 1
            }),
            Criterion::Address(l) => ci.addr.is_some_and(|a| addr_match_list(a, l)),
            Criterion::LocalAddress(l) => ci.laddr.is_some_and(|a| addr_match_list(a, l)),
            Criterion::LocalPort(p) => ci.lport == Some(*p),
            // Routing domains are an OpenBSD feature; on Linux a connection has none.
            Criterion::RDomain(_) => false,
        };
        if !ok {
            result = false;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(addr: &str) -> Connection {
        Connection {
            user: "root".into(),
            groups: vec!["root".into()],
            host: Some(addr.into()),
            addr: Some(addr.parse().unwrap()),
            laddr: None,
            lport: Some(22),
        }
    }

    #[test]
    fn criteria_parse() {
        assert_eq!(parse_criteria("all").unwrap(), [Criterion::All]);
        assert_eq!(parse_criteria("All # x").unwrap(), [Criterion::All]);
        assert!(parse_criteria("all User root").is_err());
        assert!(parse_criteria("User root all").is_err());
        assert!(parse_criteria("User").is_err());
        assert!(parse_criteria("Foo bar").is_err());
        assert!(parse_criteria("").is_err());
        assert!(parse_criteria("Address 192.0.2.1/24").is_err());
        assert!(parse_criteria("Address 192.0.2.0/33").is_err());
        assert!(parse_criteria("Address 2001:db8::/129").is_ok());
        assert!(parse_criteria("LocalPort 0").is_err());
        assert_eq!(
            parse_criteria("user=root Address 192.0.2.0/24,!192.0.2.9").unwrap(),
            [
                Criterion::User("root".into()),
                Criterion::Address("192.0.2.0/24,!192.0.2.9".into())
            ]
        );
    }

    #[test]
    fn negation_and_wildcards() {
        assert_eq!(
            match_pattern_list("root", "!root", PatternCase::AsWritten),
            -1
        );
        // A list of only negations matches nobody (match_pattern_list needs a positive).
        assert_eq!(
            match_pattern_list("alice", "!root", PatternCase::AsWritten),
            0
        );
        assert_eq!(
            match_pattern_list("alice", "*,!root", PatternCase::AsWritten),
            1
        );
        assert_eq!(
            match_pattern_list("Root", "root", PatternCase::AsWritten),
            0
        );
        let c = conn("192.0.2.7");
        let ev = |s: &str| evaluate(&parse_criteria(s).unwrap(), Some(&c));
        assert!(ev("Address 192.0.2.0/24"));
        assert!(!ev("Address 192.0.2.0/24,!192.0.2.7"));
        assert!(!ev("Address !192.0.2.7,192.0.2.0/24"));
        assert!(ev("Address 192.0.2.*"));
        assert!(!ev("Address 198.51.100.0/24"));
        assert!(ev("User root Address 192.0.2.7"));
        assert!(!ev("User admin Address 192.0.2.7"));
        assert!(ev("Group wheel,root"));
        assert!(!ev("Group *,!root"));
        assert!(ev("LocalPort 22"));
        assert!(!ev("LocalAddress 192.0.2.1"));
        assert!(ev("Host 192.0.2.*"));
        assert!(!evaluate(&parse_criteria("User root").unwrap(), None));
        assert!(evaluate(&parse_criteria("all").unwrap(), None));
        let v6 = conn("2001:db8::5");
        assert!(evaluate(
            &parse_criteria("Address 2001:db8::/32").unwrap(),
            Some(&v6)
        ));
    }
}
