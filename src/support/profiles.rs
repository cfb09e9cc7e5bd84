//! The built-in OVH profiles: for each region, the host, the support key OVH publishes and the
//! source addresses its `from=` allows, as given by OVH's guide "Install an OVHcloud SSH key"
//! (repository ovh/docs, pages/bare_metal_cloud/dedicated_servers/ovh_ssh_key/guide.en-gb.md).
//! The key files are kept verbatim in data/ and compiled in; the tests check their fingerprints
//! against OVH's and against `ssh-keygen -lf`.
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4AddrRange, Ipv4Net};
use serde::ser::SerializeStruct;

use super::SupportKey;

/// A built-in support region (`--region`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// cache-ng.ovh.net
    Eu,
    /// cache-ng.ovh.ca
    Ca,
}

impl Region {
    pub const ALL: [Region; 2] = [Region::Eu, Region::Ca];

    /// The name `--region` takes.
    pub fn name(self) -> &'static str {
        match self {
            Region::Eu => "eu",
            Region::Ca => "ca",
        }
    }
}

const EU_KEY: &str = include_str!("../../data/ovh-eu.pub");
const CA_KEY: &str = include_str!("../../data/ovh-ca.pub");

/// EU: 178.33.222.162 and 217.182.145.216 … 217.182.145.223 (the guide lists each address; the
/// eight consecutive ones are exactly one /29).
const EU_PUBLISHED: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(178, 33, 222, 162), 32),
    (Ipv4Addr::new(217, 182, 145, 216), 29),
];
/// CA: 8.33.137.120 and 149.56.85.250.
const CA_PUBLISHED: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(8, 33, 137, 120), 32),
    (Ipv4Addr::new(149, 56, 85, 250), 32),
];

/// One region's support: who they are (the key) and where they connect from (the host, and the
/// addresses OVH publishes for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `eu`, `ca`: the `--region` value.
    pub region: &'static str,
    pub host: &'static str,
    pub key: SupportKey,
    /// The published `from=` addresses, as networks.
    pub published: Vec<IpNet>,
}

impl Profile {
    /// Every published address, one by one (network and broadcast included: these are single
    /// hosts listed by OVH, not subnets to route; `IpNet::hosts()` would drop the ends of the /29).
    pub fn published_addresses(&self) -> Vec<IpAddr> {
        expand(&self.published)
    }

    /// True when `blob` (a key's base64 as written in the keys file) is this profile's key.
    pub fn is_builtin_key(&self, blob: &str) -> bool {
        self.key.blob == blob
    }
}

/// JSON for `profiles` and status: region, host, key fingerprint and comment, published networks.
impl serde::Serialize for Profile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Profile", 6)?;
        st.serialize_field("region", self.region)?;
        st.serialize_field("host", self.host)?;
        st.serialize_field("fingerprint", &self.key.fingerprint)?;
        st.serialize_field("key_comment", &self.key.comment)?;
        let nets: Vec<String> = self.published.iter().map(|n| n.to_string()).collect();
        st.serialize_field("published", &nets)?;
        st.serialize_field("published_addresses", &self.published_addresses())?;
        st.end()
    }
}

/// Every address of a list of networks, in order.
pub fn expand(nets: &[IpNet]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for net in nets {
        match net {
            IpNet::V4(n) => {
                out.extend(Ipv4AddrRange::new(n.network(), n.broadcast()).map(IpAddr::V4));
            }
            IpNet::V6(n) => {
                out.extend(ipnet::Ipv6AddrRange::new(n.network(), n.broadcast()).map(IpAddr::V6));
            }
        }
    }
    out
}

/// The profile of a region.
pub fn profile(region: Region) -> Profile {
    match region {
        Region::Eu => build("eu", "cache-ng.ovh.net", EU_KEY, EU_PUBLISHED),
        Region::Ca => build("ca", "cache-ng.ovh.ca", CA_KEY, CA_PUBLISHED),
    }
}

/// Every built-in profile, in `--region` order.
pub fn profiles() -> Vec<Profile> {
    vec![profile(Region::Eu), profile(Region::Ca)]
}

/// The profile named `eu`/`ca` (as recorded in a grant's state), if any.
pub fn profile_by_name(name: &str) -> Option<Profile> {
    profiles().into_iter().find(|p| p.region == name)
}

/// The profile whose host is `host` (case-insensitive, trailing dot ignored: DNS names compare
/// that way).
pub fn profile_by_host(host: &str) -> Option<Profile> {
    let host = host.trim_end_matches('.');
    profiles()
        .into_iter()
        .find(|p| p.host.eq_ignore_ascii_case(host))
}

fn build(region: &'static str, host: &'static str, line: &str, nets: &[(Ipv4Addr, u8)]) -> Profile {
    Profile {
        region,
        host,
        key: parse_builtin(line),
        published: nets
            .iter()
            .map(|&(a, p)| IpNet::V4(Ipv4Net::new(a, p).expect("prefix length <= 32")))
            .collect(),
    }
}

/// The compiled-in key files are one `type blob comment` line each; they are checked by the
/// tests (fingerprint against OVH's), so a failure here is a build defect, not input.
fn parse_builtin(line: &str) -> SupportKey {
    let mut parts = line.split_whitespace();
    let (Some(alg), Some(blob)) = (parts.next(), parts.next()) else {
        panic!("built-in key file is not a public key line");
    };
    let comment = parts.collect::<Vec<_>>().join(" ");
    SupportKey::from_parts(alg, blob, &comment).expect("built-in key file holds a valid key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_ovhs() {
        // The fingerprints OVH's data README gives (ssh-keygen -lf).
        let eu = profile(Region::Eu);
        assert_eq!(
            eu.key.fingerprint,
            "SHA256:JAFN+LjSd5rMut8LHygxPjyVQ9XhOv+IR6qEVA5+okU"
        );
        assert_eq!(eu.key.comment, "support@cache-ng");
        assert_eq!(eu.key.algorithm, "ssh-rsa");
        let ca = profile(Region::Ca);
        assert_eq!(
            ca.key.fingerprint,
            "SHA256:53L3gE3W8ErGs0ngusB680Uro8KB5tDGNe7lhnvJVdw"
        );
        assert_eq!(ca.key.comment, "support@cache-ng-ca");
        assert_ne!(eu.key.blob, ca.key.blob);
    }

    #[test]
    fn published_lists() {
        let eu: Vec<String> = profile(Region::Eu)
            .published_addresses()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let mut want = vec!["178.33.222.162".to_string()];
        want.extend((216..=223).map(|n| format!("217.182.145.{n}")));
        assert_eq!(eu, want);
        let ca: Vec<String> = profile(Region::Ca)
            .published_addresses()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(ca, ["8.33.137.120", "149.56.85.250"]);
    }

    #[test]
    fn lookups_by_name_and_host() {
        assert_eq!(profile_by_name("ca").unwrap().host, "cache-ng.ovh.ca");
        assert!(profile_by_name("us").is_none());
        assert_eq!(profile_by_host("Cache-NG.ovh.net.").unwrap().region, "eu");
        assert!(profile_by_host("ovh.net").is_none());
        let json = serde_json::to_value(profile(Region::Ca)).unwrap();
        assert_eq!(json["published"][1], "149.56.85.250/32");
        assert_eq!(json["published_addresses"].as_array().unwrap().len(), 2);
    }
}
