//! Resolve the support host (A and AAAA) and validate the answer before any address reaches the
//! firewall or a `from=` list.
//!
//! The lookup is deliberately narrower than the C library's: no hosts file (a stale
//! `/etc/hosts` line must not decide who reaches root's SSH port), no search list (the name is
//! queried as an FQDN, so a local `search` domain cannot answer for it), and one hard deadline
//! for the whole lookup, with every listed server asked at once, instead of resolv.conf's
//! per-server timeouts and retries.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::DnsError as HickoryDnsError;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::Resolver;

use crate::bad_input;
use crate::root::Root;

/// The whole lookup (both queries, every server) ends after this long unless the caller says
/// otherwise: long enough for a slow recursive resolver, short enough for a timer-driven refresh.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The hard limit on one whole lookup (A and AAAA) for every command.
pub const DNS_TIMEOUT: Duration = DEFAULT_TIMEOUT;

/// How DNS is asked and which answers are taken (`--resolver`, `--allow-private`,
/// `--trust-dns`); a grant records them so that refresh and status ask the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsOptions {
    /// The server to ask instead of resolv.conf's.
    pub resolver: Option<std::net::SocketAddr>,
    /// Private and documentation addresses are accepted in the answer.
    pub allow_private: bool,
    /// Answers outside a region's published addresses are used (with a warning).
    pub trust_dns: bool,
}

/// More addresses than this is not a support host: it is a wildcard, a CDN or a hijacked answer,
/// and each address becomes a firewall element and a `from=` entry.
pub const MAX_ADDRESSES: usize = 32;

/// Why a lookup gave no usable answer. Each message names the host, the resolver asked and a fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error(
        "DNS lookup of {host} through {resolver} got no answer within {}s; check that the resolver \
         answers (dig @SERVER {host}), or give another one with --resolver, or the addresses with --address",
        after.as_secs_f32()
    )]
    Timeout {
        host: String,
        resolver: String,
        after: Duration,
    },
    #[error(
        "{host} does not exist according to {resolver} (NXDOMAIN); check the host name, or give the \
         addresses with --address"
    )]
    NxDomain { host: String, resolver: String },
    #[error(
        "{host} has no A or AAAA record according to {resolver}; check the host name, or give the \
         addresses with --address"
    )]
    NoAddress { host: String, resolver: String },
    #[error(
        "DNS lookup of {host} through {resolver} failed: {reason}; fix the resolver configuration, \
         give another resolver with --resolver, or the addresses with --address"
    )]
    Other {
        host: String,
        resolver: String,
        reason: String,
    },
}

impl DnsError {
    /// The host that was looked up.
    pub fn host(&self) -> &str {
        match self {
            DnsError::Timeout { host, .. }
            | DnsError::NxDomain { host, .. }
            | DnsError::NoAddress { host, .. }
            | DnsError::Other { host, .. } => host,
        }
    }

    /// The same error as operator-facing bad input (exit code 2, nothing changed).
    pub fn into_bad_input(self) -> anyhow::Error {
        bad_input!("{self}")
    }
}

/// Resolve `host` to its IPv4 and IPv6 addresses.
///
/// Asks `resolver` when given, else the `nameserver` lines of `root`'s `/etc/resolv.conf` (its
/// `search`, `domain` and `options` are ignored: the name is absolute and the deadline is ours).
/// The hosts file is never read. Both the A and the AAAA query must complete: an answer where
/// one of them timed out or failed is an error, not a smaller address set that would silently
/// lock out half of the support's addresses. `host` given as an IP address is returned as is.
/// The result is sorted and deduplicated but not validated: see [`validate`].
pub fn resolve(
    root: &Root,
    host: &str,
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Vec<IpAddr>, DnsError> {
    if let Ok(ip) = IpAddr::from_str(host) {
        return Ok(vec![ip]);
    }
    let (servers, described) = name_servers(root, host, resolver)?;
    let err_other = |reason: String| DnsError::Other {
        host: host.to_string(),
        resolver: described.clone(),
        reason,
    };
    let mut name = Name::from_str(host.trim_end_matches('.'))
        .map_err(|e| err_other(format!("'{host}' is not a valid host name ({e})")))?;
    // Absolute: resolv.conf's `search` list and `ndots` never apply (res_search(3) would
    // otherwise try `host.<search domain>` too, which a local zone could answer).
    name.set_fqdn(true);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err_other(format!("cannot start the DNS runtime ({e})")))?;

    let server_count = servers.len();
    let lookup = async {
        let mut opts = ResolverOpts::default();
        // `attempts` counts retries after the first try (hickory's RetryDnsHandle): 0 means one
        // try per server; the deadline below bounds the whole lookup anyway.
        opts.attempts = 0;
        // hickory 0.26 uses `timeout` both per request and as the pool's end-to-end deadline
        // (NameServerPool::try_send), so dead servers listed first would use up the whole
        // deadline before a live one is asked: ask every listed server (at most three) at once
        // instead, and take the first answer.
        opts.timeout = timeout;
        opts.num_concurrent_reqs = server_count.max(1);
        opts.use_hosts_file = ResolveHosts::Never;
        opts.cache_size = 0;
        let config = ResolverConfig::from_parts(None, vec![], servers);
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()?;
        // Both queries in flight at once, so each gets the whole deadline.
        let v4 = {
            let (resolver, name) = (resolver.clone(), name.clone());
            tokio::spawn(async move { resolver.lookup(name, RecordType::A).await })
        };
        let v6 = resolver.lookup(name, RecordType::AAAA).await;
        let v4 = v4
            .await
            .map_err(|e| NetError::Msg(format!("the A query task failed: {e}")))?;
        Ok::<_, NetError>((v4, v6))
    };
    let outcome = runtime.block_on(async { tokio::time::timeout(timeout, lookup).await });
    drop(runtime);
    let (v4, v6) = match outcome {
        Err(_elapsed) => {
            return Err(DnsError::Timeout {
                host: host.to_string(),
                resolver: described,
                after: timeout,
            })
        }
        Ok(Err(e)) => return Err(err_other(e.to_string())),
        Ok(Ok(pair)) => pair,
    };

    let mut addrs = Vec::new();
    for answer in [v4, v6] {
        match answer {
            Ok(lookup) => addrs.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Err(e) => match classify(&e) {
                Failure::NoData => {}
                Failure::NxDomain => {
                    return Err(DnsError::NxDomain {
                        host: host.to_string(),
                        resolver: described,
                    })
                }
                Failure::Timeout => {
                    return Err(DnsError::Timeout {
                        host: host.to_string(),
                        resolver: described,
                        after: timeout,
                    })
                }
                Failure::Other(reason) => return Err(err_other(reason)),
            },
        }
    }
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(DnsError::NoAddress {
            host: host.to_string(),
            resolver: described,
        });
    }
    Ok(addrs)
}

enum Failure {
    /// The name exists but has no record of this type (NOERROR with an empty answer).
    NoData,
    NxDomain,
    Timeout,
    Other(String),
}

fn classify(e: &NetError) -> Failure {
    match e {
        NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => Failure::NxDomain,
            ResponseCode::NoError => Failure::NoData,
            code => Failure::Other(format!("the server answered {code}")),
        },
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => {
            Failure::Other(format!("the server answered {code}"))
        }
        NetError::Timeout => Failure::Timeout,
        NetError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Failure::Timeout,
        other => Failure::Other(other.to_string()),
    }
}

/// The servers to ask and how to name them in messages.
fn name_servers(
    root: &Root,
    host: &str,
    resolver: Option<SocketAddr>,
) -> Result<(Vec<NameServerConfig>, String), DnsError> {
    if let Some(sa) = resolver {
        return Ok((vec![server(sa)], sa.to_string()));
    }
    let path = root.path("/etc/resolv.conf");
    let other = |reason: String| DnsError::Other {
        host: host.to_string(),
        resolver: path.display().to_string(),
        reason,
    };
    let data = crate::bounded::read(&path, crate::bounded::CONFIG)
        .map_err(|e| other(format!("cannot read it ({e})")))?;
    let ips = resolv_conf_nameservers(&String::from_utf8_lossy(&data));
    if ips.is_empty() {
        return Err(other("it has no nameserver line".to_string()));
    }
    let described = format!(
        "{} ({})",
        ips.iter()
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        path.display()
    );
    Ok((
        ips.into_iter()
            .map(|ip| server(SocketAddr::new(ip, 53)))
            .collect(),
        described,
    ))
}

/// The `nameserver` addresses of a resolv.conf, in order, as glibc's res_init reads them: the
/// keyword at the start of a line, `#` or `;` comments, a `%scope` suffix dropped, at most 3
/// servers (MAXNS). Unparsable entries are skipped like glibc skips them.
pub fn resolv_conf_nameservers(text: &str) -> Vec<IpAddr> {
    const MAXNS: usize = 3;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let addr = addr.split('%').next().unwrap_or(addr);
        if let Ok(ip) = IpAddr::from_str(addr) {
            if out.len() < MAXNS {
                out.push(ip);
            }
        }
    }
    out
}

fn server(sa: SocketAddr) -> NameServerConfig {
    // UDP first, TCP for truncated answers, both on the given port.
    let conns = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
        .into_iter()
        .map(|mut c| {
            c.port = sa.port();
            c
        })
        .collect();
    NameServerConfig::new(sa.ip(), true, conns)
}

/// Why an address can never be a support host's source address (whatever the flags).
fn never_usable(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() || v4.octets()[0] == 0 {
                Some("unspecified")
            } else if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_broadcast() || v4.octets()[0] >= 240 {
                Some("broadcast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.to_ipv4_mapped().is_some() {
                // The kernel and sshd see an IPv4 peer as IPv4: a mapped form in a v6 set or a
                // from= list would match nothing.
                Some("IPv4-mapped")
            } else {
                None
            }
        }
    }
}

/// Private, shared or documentation ranges: legitimate in a lab (the netns tests), suspicious
/// in a public support host's answer.
fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_private() {
                Some("private")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared address space")
            } else if in_v4(v4, [192, 0, 2, 0], 24)
                || in_v4(v4, [198, 51, 100, 0], 24)
                || in_v4(v4, [203, 0, 113, 0], 24)
            {
                Some("documentation")
            } else if in_v4(v4, [198, 18, 0, 0], 15) {
                Some("benchmarking")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if (s[0] & 0xfe00) == 0xfc00 {
                Some("unique local")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX << (32 - prefix);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

/// Check a set of addresses before it reaches the firewall and `from=`: sorted and
/// deduplicated; unspecified, loopback, multicast, link-local, broadcast/reserved and
/// IPv4-mapped addresses refused always; private and documentation ranges refused unless
/// `allow_private` (the caller passes true for the operator's own `--address` list); more than
/// [`MAX_ADDRESSES`] refused. `origin` names where they came from in the message
/// ("the DNS answer for cache-ng.ovh.net", "--address"). Refusals are bad input (exit 2).
pub fn validate(addrs: Vec<IpAddr>, allow_private: bool, origin: &str) -> Result<Vec<IpAddr>> {
    let mut addrs = addrs;
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(bad_input!(
            "{origin} holds no address; give the support host's addresses"
        ));
    }
    let never: Vec<String> = addrs
        .iter()
        .filter_map(|&ip| never_usable(ip).map(|why| format!("{ip} ({why})")))
        .collect();
    if !never.is_empty() {
        return Err(bad_input!(
            "{origin} contains {}, which cannot be a support host's source address; fix the DNS \
             record or give the real addresses with --address",
            never.join(", ")
        ));
    }
    if !allow_private {
        let private: Vec<String> = addrs
            .iter()
            .filter_map(|&ip| private_kind(ip).map(|why| format!("{ip} ({why})")))
            .collect();
        if !private.is_empty() {
            return Err(bad_input!(
                "{origin} contains {}, not a public address; if this is really the support host \
                 (a lab, a private network), give --allow-private",
                private.join(", ")
            ));
        }
    }
    if addrs.len() > MAX_ADDRESSES {
        return Err(bad_input!(
            "{origin} holds {} addresses, more than the {MAX_ADDRESSES} a support host can have \
             (a wildcard or hijacked answer?); check the host name or give the addresses with --address",
            addrs.len()
        ));
    }
    Ok(addrs)
}

/// A `dns` function for `support::resolve_target`: [`resolve`] through `resolver` (or
/// `root`'s resolv.conf) with `timeout`.
pub fn lookup_with(
    root: &Root,
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> impl Fn(&str) -> Result<Vec<IpAddr>, DnsError> + '_ {
    move |host| resolve(root, host, resolver, timeout)
}
