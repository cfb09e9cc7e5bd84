//! Check 5 under firewalld: its zones decide, not the kernel chains around them (its own chains
//! reject inside its table). For each support address, the zones its packets land in — a source
//! binding first, else the interfaces' zones, else the default zone — and, in each, whether the
//! SSH ports are accepted for that address: by a rich rule (the tool's or an identical one), the
//! zone's target, its ports or its `ssh` service. Only reads, over D-Bus.
use std::net::IpAddr;

use super::firewall::Remedy;
use super::Findings;
use crate::firewall::detect::{self, FirewallFacts};
use crate::firewall::firewalld::bus::ZoneSettings;
use crate::firewall::firewalld::plan::rule_for;
use crate::firewall::firewalld::zones::{landings, Landing};
use crate::firewall::firewalld::FirewalldBackend;

const CHECK: &str = "firewall";

/// Judges firewalld when its ruleset is loaded here; returns true when firewalld decides (the
/// generic chain checks would only see its reject and say nothing useful).
pub fn check(
    facts: &mut FirewallFacts,
    addresses: &[IpAddr],
    ports: &[u16],
    remedy: &Remedy,
    f: &mut Findings,
) -> bool {
    detect::ask_firewalld(facts, detect::AskFirewalld::IfLoaded);
    let fwd = &facts.firewalld;
    if fwd.tables.is_empty() {
        return false;
    }
    if !fwd.on_bus {
        f.fail(
            CHECK,
            format!(
                "firewalld's ruleset is loaded ({}) but firewalld does not answer on the system bus ({}): its chains reject what its zones do not accept, and nothing can be added to them",
                fwd.tables.join(", "),
                fwd.bus_error.as_deref().unwrap_or("no answer")
            ),
            "start firewalld (`systemctl start firewalld`), or remove its leftover table (`nft delete table inet firewalld`), then run `ovh-access restore`",
        );
        return false;
    }
    let backend = match FirewalldBackend::new() {
        Ok(b) => b,
        Err(e) => {
            f.fail(
                CHECK,
                format!("firewalld: {e:#}"),
                "run `firewall-cmd --state` to see why",
            );
            return true;
        }
    };
    let zone_facts = match backend.zone_facts() {
        Ok(z) => z,
        Err(e) => {
            f.fail(
                CHECK,
                format!("firewalld's zones could not be read: {e:#}"),
                "run `firewall-cmd --get-active-zones` to see why",
            );
            return true;
        }
    };
    for &addr in addresses {
        for landing in landings(&zone_facts, addr) {
            let zone = landing.zone();
            match backend.client().zone_settings(zone) {
                Ok(settings) => judge(addr, ports, &landing, &settings, remedy, f),
                Err(e) => f.fail(
                    CHECK,
                    format!("firewalld zone {zone} could not be read: {e}"),
                    format!("run `firewall-cmd --zone={zone} --list-all` to see why"),
                ),
            }
        }
    }
    true
}

fn why(l: &Landing) -> String {
    match l {
        Landing::Source { source, .. } => format!("bound to the source {source}"),
        Landing::Interface { interface, .. } => format!("the zone of interface {interface}"),
        Landing::Default { .. } => "the default zone".to_string(),
    }
}

/// How the zone treats `addr` on each port (pure).
fn judge(
    addr: IpAddr,
    ports: &[u16],
    landing: &Landing,
    s: &ZoneSettings,
    remedy: &Remedy,
    f: &mut Findings,
) {
    let zone = landing.zone();
    let why = why(landing);
    for &port in ports {
        let place = format!("firewalld zone {zone} ({why}), {addr} to tcp/{port}");
        match accepted_by(addr, port, s) {
            Some(by) => f.pass(CHECK, format!("{place}: accepted by {by}")),
            None => f.fail(
                CHECK,
                format!(
                    "{place}: rejected — no rich rule for it, target {}, services [{}], ports [{}]",
                    s.target,
                    s.services.join(" "),
                    s.ports
                        .iter()
                        .map(|(p, proto)| format!("{p}/{proto}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                remedy.reopen.clone(),
            ),
        }
    }
}

/// What in the zone accepts the connection, if anything.
fn accepted_by(addr: IpAddr, port: u16, s: &ZoneSettings) -> Option<String> {
    let ours = rule_for(addr, port);
    if s.rich_rules.contains(&ours) {
        return Some(format!("the rich rule `{ours}`"));
    }
    if s.target == "ACCEPT" {
        return Some("the zone's target ACCEPT".into());
    }
    let in_range = |spec: &str| match spec.split_once('-') {
        Some((a, b)) => {
            a.parse::<u16>().is_ok_and(|a| a <= port) && b.parse::<u16>().is_ok_and(|b| port <= b)
        }
        None => spec.parse::<u16>() == Ok(port),
    };
    if let Some((p, _)) = s
        .ports
        .iter()
        .find(|(p, proto)| proto == "tcp" && in_range(p))
    {
        return Some(format!("the zone's port {p}/tcp (open to everyone)"));
    }
    // firewalld's stock `ssh` service is 22/tcp.
    if port == 22 && s.services.iter().any(|x| x == "ssh") {
        return Some("the zone's ssh service (open to everyone)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        target: &str,
        services: &[&str],
        ports: &[(&str, &str)],
        rules: &[String],
    ) -> ZoneSettings {
        ZoneSettings {
            target: target.into(),
            services: services.iter().map(|s| s.to_string()).collect(),
            ports: ports
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            rich_rules: rules.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn what_accepts_the_support() {
        let a: IpAddr = "198.51.100.2".parse().unwrap();
        let public = settings("default", &["ssh", "dhcpv6-client"], &[], &[]);
        assert!(accepted_by(a, 22, &public).unwrap().contains("ssh service"));
        assert_eq!(accepted_by(a, 2222, &public), None);
        let with_rule = settings("default", &[], &[], &[rule_for(a, 2222)]);
        assert!(accepted_by(a, 2222, &with_rule)
            .unwrap()
            .contains("rich rule"));
        let ranged = settings(
            "%%REJECT%%",
            &[],
            &[("2000-3000", "tcp"), ("2222", "udp")],
            &[],
        );
        assert!(accepted_by(a, 2222, &ranged)
            .unwrap()
            .contains("2000-3000/tcp"));
        assert!(accepted_by(a, 2222, &settings("ACCEPT", &[], &[], &[])).is_some());
        assert_eq!(
            accepted_by(a, 2222, &settings("DROP", &["ssh"], &[], &[])),
            None
        );

        let mut f = Findings::default();
        let remedy = Remedy {
            reopen: "ovh-access restore".into(),
        };
        let landing = Landing::Source {
            zone: "drop".into(),
            source: "198.51.100.0/24".into(),
        };
        judge(
            a,
            &[2222],
            &landing,
            &settings("DROP", &[], &[], &[]),
            &remedy,
            &mut f,
        );
        let finding = &f.0[0];
        assert_eq!(finding.status, super::super::Status::Fail);
        assert!(finding
            .detail
            .contains("zone drop (bound to the source 198.51.100.0/24)"));
        assert!(finding.detail.contains("target DROP"));
        assert_eq!(finding.fix, "ovh-access restore");
    }
}
