//! Who the support is and where they connect from, decided once for grant, doctor and refresh:
//! the region or host, the key(s), the `--fingerprint` check, and the addresses (operator's
//! `--address`, DNS, the region's published list) by one decision table.
use std::net::IpAddr;

use anyhow::Result;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::profiles::{expand, profile, profile_by_host, Profile, Region};
use super::SupportKey;
use crate::bad_input;
use crate::dns::{self, DnsError, DnsOptions};
use crate::text::join;

/// Parses a `--key-file`'s bytes (src/keys owns the parser); the `&str` names the file in
/// messages.
pub type KeyFileParser<'a> = dyn Fn(&[u8], &str) -> Result<Vec<SupportKey>> + 'a;

/// Looks a host up (in production [`crate::dns::lookup_with`], in tests a closure).
pub type DnsLookup<'a> = dyn Fn(&str) -> Result<Vec<IpAddr>, DnsError> + 'a;

/// Where the addresses of a [`Target`] came from (shown in the output and the JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressSource {
    /// DNS alone: a host without a profile, or a profile's host with `--trust-dns` and an
    /// answer outside the published list.
    Dns,
    /// The region's published list: `--no-dns`, or DNS failed.
    Published,
    /// DNS, every answer inside the region's published list.
    DnsWithinPublished,
    /// `--address`, used as given.
    Operator,
}

impl AddressSource {
    /// The name the JSON output and the state file use (`dns_within_published`).
    pub fn name(self) -> &'static str {
        match self {
            AddressSource::Dns => "dns",
            AddressSource::Published => "published",
            AddressSource::DnsWithinPublished => "dns_within_published",
            AddressSource::Operator => "operator",
        }
    }

    /// Addresses from a DNS answer, which `refresh` asks again and `status` checks.
    pub fn from_dns(self) -> bool {
        matches!(self, AddressSource::Dns | AddressSource::DnsWithinPublished)
    }
}

impl std::fmt::Display for AddressSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AddressSource::Dns => "DNS",
            AddressSource::Published => "the published list",
            AddressSource::DnsWithinPublished => "DNS, within the published list",
            AddressSource::Operator => "--address",
        })
    }
}

/// Who the support is and where they connect from, as the operator asked (grant, doctor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetRequest {
    pub region: Option<Region>,
    /// A host name to resolve instead of the region's.
    pub host: Option<String>,
    /// Addresses given by the operator: DNS is not asked.
    pub addresses: Vec<IpAddr>,
    pub dns: DnsOptions,
    /// The region's published addresses, without asking DNS.
    pub no_dns: bool,
    /// The operator's key file (`-`: standard input), not under `--root`.
    pub key_file: Option<String>,
    /// Every key must have this SHA256 fingerprint.
    pub fingerprint: Option<String>,
}

/// The resolved "who and from where".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The host the support connects from (a profile's host, or `--host`).
    pub host: String,
    /// The built-in profile used (`eu`, `ca`), none with `--host` of another provider.
    pub profile: Option<&'static str>,
    /// The key(s) to install, in file order; never empty.
    pub keys: Vec<SupportKey>,
    /// True when `keys` is exactly the profile's built-in key.
    pub key_is_builtin: bool,
    /// Sorted, deduplicated, validated.
    pub addresses: Vec<IpAddr>,
    pub source: AddressSource,
    /// Things the operator must be told (a replaced built-in key, a DNS failure, ...).
    pub warnings: Vec<String>,
}

/// The decision table of the addresses, a pure function of the published list (`None`: no profile) and
/// the DNS outcome:
///
/// | published | DNS                   | flags        | result                                 |
/// |-----------|-----------------------|--------------|----------------------------------------|
/// | some      | any (not asked)       | `no_dns`     | published, `Published`                 |
/// | some      | error                 |              | published, `Published`, warning        |
/// | some      | all inside            |              | the answers, `DnsWithinPublished`      |
/// | some      | some outside          |              | refused, naming the outside answers    |
/// | some      | some outside          | `trust_dns`  | every answer, `Dns`, warning           |
/// | none      | answers               |              | the answers, `Dns`                     |
/// | none      | error                 |              | the DNS error, as bad input            |
/// | none      | —                     | `no_dns`     | refused: nothing to fall back on       |
///
/// A DNS failure falls back to the published list because that list is OVH's own statement of
/// where the support connects from; DNS may only narrow it, never widen it unasked. The answers
/// are not validated here (see [`crate::dns::validate`]).
pub fn choose_addresses(
    published: Option<&[IpNet]>,
    dns: Result<Vec<IpAddr>, DnsError>,
    trust_dns: bool,
    no_dns: bool,
) -> Result<(Vec<IpAddr>, AddressSource, Vec<String>)> {
    choose(published, "the region", dns, trust_dns, no_dns)
}

/// [`choose_addresses`] with `what` naming the profile in messages ("region eu (cache-ng.ovh.net)").
fn choose(
    published: Option<&[IpNet]>,
    what: &str,
    dns: Result<Vec<IpAddr>, DnsError>,
    trust_dns: bool,
    no_dns: bool,
) -> Result<(Vec<IpAddr>, AddressSource, Vec<String>)> {
    let Some(published) = published else {
        if no_dns {
            return Err(bad_input!(
                "--no-dns needs a region's published addresses, and --host names no built-in \
                 region; give the support's addresses with --address"
            ));
        }
        return match dns {
            Ok(addrs) => Ok((sorted(addrs), AddressSource::Dns, vec![])),
            Err(e) => Err(e.into_bad_input()),
        };
    };
    let listed = expand(published);
    if no_dns {
        return Ok((sorted(listed), AddressSource::Published, vec![]));
    }
    let answers = match dns {
        Ok(a) => sorted(a),
        Err(e) => {
            let warning = format!(
                "{e} — using the {} addresses published for {what} instead",
                listed.len()
            );
            return Ok((sorted(listed), AddressSource::Published, vec![warning]));
        }
    };
    let outside: Vec<IpAddr> = answers
        .iter()
        .copied()
        .filter(|a| !published.iter().any(|n| n.contains(a)))
        .collect();
    if outside.is_empty() {
        return Ok((answers, AddressSource::DnsWithinPublished, vec![]));
    }
    let outside_list = join(&outside);
    let published_list = join(published);
    if !trust_dns {
        return Err(bad_input!(
            "DNS answered {outside_list} for {what}, outside the addresses it publishes \
             ({published_list}), and a spoofed or hijacked DNS answer must not open root's SSH port \
             to whoever controls it; check DNS, use the published list with --no-dns, or give --trust-dns if the \
             new addresses are genuine"
        ));
    }
    let warning = format!(
        "using DNS answers outside the addresses published for {what} ({published_list}): \
         {outside_list} (--trust-dns)"
    );
    Ok((answers, AddressSource::Dns, vec![warning]))
}

/// Decide the whole target from the command line.
///
/// - `--host` naming a built-in profile's host is that profile (so `--key-file` stays optional);
///   with a `--region` of another profile it is refused. Any other `--host` has no profile and
///   needs `--key-file`. The default region is `eu`.
/// - `--key-file PATH` (the operator's own path, not under `--root`; `-` is stdin) is parsed by
///   `parse_key_file(bytes, label)`; with a profile it replaces the built-in key, with a warning
///   unless it holds exactly the built-in key.
/// - `--fingerprint`: every key must have it.
/// - `--address`: used as given (validated without the private-range rule); DNS is not asked.
///   Otherwise `dns(host)`, then [`choose_addresses`], then [`crate::dns::validate`] with
///   `--allow-private`.
///
/// `root` is not read: key files are the operator's paths and the resolver configuration is
/// the `dns` function's business (see [`crate::dns::lookup_with`]); it is part of the signature
/// the commands share.
pub fn resolve_target(
    _root: &crate::root::Root,
    args: &TargetRequest,
    parse_key_file: &KeyFileParser<'_>,
    dns: &DnsLookup<'_>,
) -> Result<Target> {
    let mut warnings = Vec::new();
    let (host, prof) = host_and_profile(args, &mut warnings)?;
    let what = prof
        .as_ref()
        .map(|p| format!("region {} ({})", p.region, p.host))
        .unwrap_or_else(|| host.clone());

    let (keys, key_is_builtin) = match (&args.key_file, &prof) {
        (Some(path), _) => {
            let keys = read_keys(path, parse_key_file)?;
            let builtin = prof
                .as_ref()
                .is_some_and(|p| keys.len() == 1 && p.is_builtin_key(&keys[0].blob));
            if let (Some(p), false) = (&prof, builtin) {
                warnings.push(format!(
                    "--key-file {path} replaces region {}'s built-in key {}",
                    p.region, p.key.fingerprint
                ));
            }
            (keys, builtin)
        }
        (None, Some(p)) => (vec![p.key.clone()], true),
        (None, None) => {
            return Err(bad_input!(
                "--key-file is required with --host {host}: only the built-in regions (--region \
                 eu, ca) carry a key; give the support's public key file"
            ))
        }
    };

    if let Some(want) = &args.fingerprint {
        check_fingerprint(want, &keys)?;
    }

    let (addresses, source) = if !args.addresses.is_empty() {
        // The operator's explicit choice: the private-range rule is for DNS answers only.
        let addrs = dns::validate(args.addresses.clone(), true, "--address")?;
        if let Some(p) = &prof {
            let outside: Vec<IpAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !p.published.iter().any(|n| n.contains(a)))
                .collect();
            if !outside.is_empty() {
                warnings.push(format!(
                    "--address {} is outside the addresses published for {what}; using it as given",
                    join(&outside)
                ));
            }
        }
        (addrs, AddressSource::Operator)
    } else {
        let published = prof.as_ref().map(|p| p.published.as_slice());
        let answer = if args.no_dns && published.is_some() {
            Err(DnsError::Other {
                host: host.clone(),
                resolver: "none".into(),
                reason: "not asked (--no-dns)".into(),
            })
        } else {
            dns(&host)
        };
        let (addrs, source, more) =
            choose(published, &what, answer, args.dns.trust_dns, args.no_dns)?;
        warnings.extend(more);
        let origin = match source {
            AddressSource::Published => format!("the published list of {what}"),
            _ => format!("the DNS answer for {host}"),
        };
        (
            dns::validate(addrs, args.dns.allow_private, &origin)?,
            source,
        )
    };

    Ok(Target {
        host,
        profile: prof.map(|p| p.region),
        keys,
        key_is_builtin,
        addresses,
        source,
        warnings,
    })
}

fn host_and_profile(
    args: &TargetRequest,
    warnings: &mut Vec<String>,
) -> Result<(String, Option<Profile>)> {
    let Some(host) = &args.host else {
        let p = profile(args.region.unwrap_or(Region::Eu));
        return Ok((p.host.to_string(), Some(p)));
    };
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(bad_input!("--host is empty; give the support host's name"));
    }
    match (profile_by_host(&host), args.region) {
        (Some(p), Some(r)) if profile(r).region != p.region => Err(bad_input!(
            "--host {host} is region {}'s host but --region {} was given; drop one of them",
            p.region,
            profile(r).region
        )),
        (Some(p), _) => Ok((host, Some(p))),
        (None, Some(r)) => {
            warnings.push(format!(
                "--host {host} is not region {}'s host: the region's key and published addresses \
                 are not used",
                profile(r).region
            ));
            Ok((host, None))
        }
        (None, None) => Ok((host, None)),
    }
}

fn read_keys(path: &str, parse_key_file: &KeyFileParser) -> Result<Vec<SupportKey>> {
    let (bytes, label) = if path == "-" {
        let buf = crate::bounded::read_from(std::io::stdin(), crate::bounded::KEY_FILE).map_err(|e| {
            bad_input!("--key-file -: cannot read the key from standard input ({e}); pipe the public key in or give a file")
        })?;
        (buf, "standard input".to_string())
    } else {
        let bytes = crate::bounded::read(path, crate::bounded::KEY_FILE).map_err(|e| {
            bad_input!("--key-file {path}: cannot read it ({e}); give the path of the support's public key file")
        })?;
        (bytes, path.to_string())
    };
    let keys = parse_key_file(&bytes, &label)?;
    if keys.is_empty() {
        return Err(bad_input!(
            "--key-file {label} holds no public key; give a file with the support's public key line"
        ));
    }
    Ok(keys)
}

/// `SHA256:` prefix optional, base64 padding ignored: `ssh-keygen -lf` prints neither variation
/// the same way across versions and people paste both. Any other form (`MD5:aa:bb:...`, a hex
/// digest) is refused as such, rather than compared as if it were SHA256 and found "different".
fn check_fingerprint(want: &str, keys: &[SupportKey]) -> Result<()> {
    let norm = |s: &str| {
        let s = s.trim();
        s.strip_prefix("SHA256:")
            .unwrap_or(s)
            .trim_end_matches('=')
            .to_string()
    };
    let wanted = norm(want);
    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if wanted.len() != 43 || !wanted.chars().all(base64) {
        return Err(bad_input!(
            "--fingerprint {}: not a SHA256 fingerprint; give it as `ssh-keygen -lf FILE` prints \
             it by default (SHA256: and 43 base64 characters)",
            want.trim()
        ));
    }
    let wrong: Vec<&str> = keys
        .iter()
        .filter(|k| norm(&k.fingerprint) != wanted)
        .map(|k| k.fingerprint.as_str())
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    Err(bad_input!(
        "the key file's key has fingerprint {} but --fingerprint asks for {}; check that you \
         downloaded the right key (ssh-keygen -lf FILE)",
        wrong.join(", "),
        want.trim()
    ))
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v.dedup();
    v
}
