//! In which zones the support's packets can land. firewalld classifies an incoming packet by its
//! source first (a zone bound to a source address or network that contains it), and only when no
//! source binding matches by the zone of the interface it arrives on; an interface bound to no zone
//! belongs to the default zone. The support may arrive on any interface, so every interface zone
//! counts — the rule accepts only the support's source, so a zone it never reaches opens nothing.
use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::bus::ActiveZone;

/// What firewalld and this network namespace say about zones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneFacts {
    pub default_zone: String,
    pub active: Vec<ActiveZone>,
    /// The interfaces of this network namespace, loopback left out (firewalld accepts it itself).
    pub interfaces: Vec<String>,
}

/// Why a zone receives the support's packets (for doctor and the notes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// Bound to a source that contains the address.
    Source { zone: String, source: String },
    /// Bound to an interface.
    Interface { zone: String, interface: String },
    /// The default zone, for the interfaces bound to none.
    Default { zone: String },
}

impl Landing {
    pub fn zone(&self) -> &str {
        match self {
            Landing::Source { zone, .. }
            | Landing::Interface { zone, .. }
            | Landing::Default { zone } => zone,
        }
    }
}

/// The zones packets from `addr` can land in, each once, with why.
pub fn landings(facts: &ZoneFacts, addr: IpAddr) -> Vec<Landing> {
    let by_source: Vec<Landing> = facts
        .active
        .iter()
        .flat_map(|z| {
            z.sources
                .iter()
                .filter(|s| source_contains(s, addr))
                .map(|s| Landing::Source {
                    zone: z.name.clone(),
                    source: s.clone(),
                })
        })
        .collect();
    if !by_source.is_empty() {
        return dedup_zones(by_source);
    }
    let mut out = Vec::new();
    let mut bound = BTreeSet::new();
    for z in &facts.active {
        for i in &z.interfaces {
            bound.insert(i.as_str());
            out.push(Landing::Interface {
                zone: z.name.clone(),
                interface: i.clone(),
            });
        }
    }
    if facts.interfaces.iter().any(|i| !bound.contains(i.as_str())) || out.is_empty() {
        out.push(Landing::Default {
            zone: facts.default_zone.clone(),
        });
    }
    dedup_zones(out)
}

/// The zones of [`landings`], sorted.
pub fn zones_for(facts: &ZoneFacts, addr: IpAddr) -> Vec<String> {
    let set: BTreeSet<String> = landings(facts, addr)
        .iter()
        .map(|l| l.zone().to_string())
        .collect();
    set.into_iter().collect()
}

fn dedup_zones(v: Vec<Landing>) -> Vec<Landing> {
    let mut seen = BTreeSet::new();
    v.into_iter()
        .filter(|l| seen.insert(l.zone().to_string()))
        .collect()
}

/// A source binding is an address, a network, a MAC address or `ipset:NAME`; only the first two
/// can be decided from the address alone.
pub fn source_contains(source: &str, addr: IpAddr) -> bool {
    if let Ok(net) = source.parse::<IpNet>() {
        return net.contains(&addr);
    }
    source.parse::<IpAddr>().is_ok_and(|a| a == addr)
}

/// The network interfaces of the calling thread's network namespace (`if_nameindex`, which asks
/// the kernel, unlike /sys that shows the namespace sysfs was mounted in), loopback left out.
pub fn namespace_interfaces() -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns a heap array ended by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return out;
        }
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*p).if_name)
                .to_string_lossy()
                .into_owned();
            if name != "lo" {
                out.push(name);
            }
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str, interfaces: &[&str], sources: &[&str]) -> ActiveZone {
        ActiveZone {
            name: name.into(),
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn facts(active: Vec<ActiveZone>, interfaces: &[&str]) -> ZoneFacts {
        ZoneFacts {
            default_zone: "public".into(),
            active,
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn nothing_bound_is_the_default_zone() {
        let f = facts(vec![], &["eth0", "eth1"]);
        assert_eq!(zones_for(&f, "198.51.100.2".parse().unwrap()), ["public"]);
        let f = facts(vec![], &[]);
        assert_eq!(zones_for(&f, "2001:db8::2".parse().unwrap()), ["public"]);
    }

    #[test]
    fn a_source_binding_wins_over_interfaces() {
        let f = facts(
            vec![
                zone(
                    "drop",
                    &[],
                    &["198.51.100.0/24", "aa:bb:cc:dd:ee:ff", "ipset:x"],
                ),
                zone("internal", &["eth1"], &[]),
            ],
            &["eth0", "eth1"],
        );
        let l = landings(&f, "198.51.100.2".parse().unwrap());
        assert_eq!(
            l,
            [Landing::Source {
                zone: "drop".into(),
                source: "198.51.100.0/24".into()
            }]
        );
        // Another family or network: the interfaces' zones, and the default one for eth0.
        assert_eq!(
            zones_for(&f, "2001:db8:1::2".parse().unwrap()),
            ["internal", "public"]
        );
        assert!(source_contains(
            "2001:db8:1::2",
            "2001:db8:1::2".parse().unwrap()
        ));
        assert!(!source_contains("ipset:x", "198.51.100.2".parse().unwrap()));
    }

    #[test]
    fn every_interface_bound_leaves_the_default_zone_out() {
        let f = facts(
            vec![
                zone("external", &["eth0"], &[]),
                zone("work", &["eth1"], &[]),
            ],
            &["eth0", "eth1"],
        );
        assert_eq!(
            zones_for(&f, "203.0.113.9".parse().unwrap()),
            ["external", "work"]
        );
    }
}
