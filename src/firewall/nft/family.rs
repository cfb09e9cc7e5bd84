//! The nftables address families and hooks, as the kernel numbers them and `nft` names them, and
//! the IP versions the tool keeps its objects apart by.
use std::net::IpAddr;

/// An nftables address family, as `nft` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Arp,
    Bridge,
    Netdev,
}

impl Family {
    pub fn from_nfproto(n: u16) -> Option<Family> {
        Some(match i32::from(n) {
            libc::NFPROTO_IPV4 => Family::Ip,
            libc::NFPROTO_IPV6 => Family::Ip6,
            libc::NFPROTO_INET => Family::Inet,
            libc::NFPROTO_ARP => Family::Arp,
            libc::NFPROTO_BRIDGE => Family::Bridge,
            libc::NFPROTO_NETDEV => Family::Netdev,
            _ => return None,
        })
    }

    pub fn nfproto(self) -> u16 {
        (match self {
            Family::Ip => libc::NFPROTO_IPV4,
            Family::Ip6 => libc::NFPROTO_IPV6,
            Family::Inet => libc::NFPROTO_INET,
            Family::Arp => libc::NFPROTO_ARP,
            Family::Bridge => libc::NFPROTO_BRIDGE,
            Family::Netdev => libc::NFPROTO_NETDEV,
        }) as u16
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }

    /// The families whose input and output hooks see IP packets addressed to this host.
    pub fn is_ip(self) -> bool {
        matches!(self, Family::Ip | Family::Ip6 | Family::Inet)
    }

    /// The families whose base chains can see the support's packets: the IP ones, and netdev,
    /// whose ingress hook sees every packet a device receives, before any IP hook.
    pub fn carries_ip(self) -> bool {
        self.is_ip() || self == Family::Netdev
    }

    pub fn has_v4(self) -> bool {
        matches!(self, Family::Ip | Family::Inet | Family::Netdev)
    }

    pub fn has_v6(self) -> bool {
        matches!(self, Family::Ip6 | Family::Inet | Family::Netdev)
    }

    /// Whether the family sees packets of this IP version, as the tool's per-version objects
    /// (a set, an access rule) ask.
    pub fn has(self, ip: IpVersion) -> bool {
        match ip {
            IpVersion::V4 => self.has_v4(),
            IpVersion::V6 => self.has_v6(),
        }
    }
}

/// IPv4 or IPv6: the tool keeps one address set and one access rule per version, since a set's
/// key and a rule's header offsets are of one version only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub const ALL: [IpVersion; 2] = [IpVersion::V4, IpVersion::V6];

    pub fn of(address: IpAddr) -> IpVersion {
        match address {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }
}

/// The netfilter hooks of the ip, ip6 and inet families (`enum nf_inet_hooks`), and the
/// netdev family's ingress (`enum nf_dev_hooks`, where it is number 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
    Ingress,
    Other(u32),
}

impl Hook {
    pub(super) fn from_num(family: Family, n: u32) -> Hook {
        match (family, n) {
            (Family::Netdev, 0) => Hook::Ingress,
            (Family::Netdev, n) => Hook::Other(n),
            (_, 0) => Hook::Prerouting,
            (_, 1) => Hook::Input,
            (_, 2) => Hook::Forward,
            (_, 3) => Hook::Output,
            (_, 4) => Hook::Postrouting,
            (Family::Inet, 5) => Hook::Ingress,
            (_, n) => Hook::Other(n),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
            Hook::Ingress => "ingress",
            Hook::Other(_) => "other",
        }
    }

    /// The hooks the support's packets cross on their way to sshd and back.
    pub fn on_support_path(self) -> bool {
        matches!(
            self,
            Hook::Prerouting | Hook::Input | Hook::Output | Hook::Ingress
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_sees_the_versions_it_carries() {
        let sees = |f: Family| IpVersion::ALL.map(|ip| f.has(ip));
        assert_eq!(sees(Family::Ip), [true, false]);
        assert_eq!(sees(Family::Ip6), [false, true]);
        assert_eq!(sees(Family::Inet), [true, true]);
        assert_eq!(sees(Family::Netdev), [true, true]);
        assert_eq!(sees(Family::Arp), [false, false]);
        assert_eq!(IpVersion::of("2001:db8::1".parse().unwrap()), IpVersion::V6);
        assert_eq!(IpVersion::of("192.0.2.1".parse().unwrap()), IpVersion::V4);
    }
}
