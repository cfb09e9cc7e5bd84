//! The tool's rich rules, and the change that brings a zone set to a request — pure functions of
//! what firewalld reported and what the grant recorded.
//!
//! Rich rules carry no comment, so the tool knows its own rules only by the exact strings it
//! recorded: `ZONE: RULE`, with RULE in the canonical form firewalld itself prints (its
//! `Rich_Rule.__str__`), since firewalld keys rule timers by that exact string.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use super::zones::{zones_for, ZoneFacts};
use crate::firewall::OpenRequest;

/// The lowest rich-rule priority firewalld accepts: the rule goes to the zone's `_pre` chain,
/// ahead of the zone's own deny/reject rich rules, as the nft backend inserts at the head.
pub const PRIORITY: i32 = -32768;

/// One rich rule in one zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ZoneRule {
    pub zone: String,
    pub rule: String,
}

impl ZoneRule {
    /// The string recorded in the state: `ZONE: RULE` (zone names never hold `: `).
    pub fn recorded(&self) -> String {
        format!("{}: {}", self.zone, self.rule)
    }

    /// A recorded string back; `None` for anything else (a state file edited by hand).
    pub fn parse(s: &str) -> Option<ZoneRule> {
        let (zone, rule) = s.split_once(": ")?;
        (!zone.is_empty() && rule.starts_with("rule ")).then(|| ZoneRule {
            zone: zone.to_string(),
            rule: rule.to_string(),
        })
    }
}

/// The rule accepting `addr` on TCP `port`, as firewalld prints it.
pub fn rule_for(addr: IpAddr, port: u16) -> String {
    let family = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
    format!(
        "rule priority=\"{PRIORITY}\" family=\"{family}\" source address=\"{addr}\" port port=\"{port}\" protocol=\"tcp\" accept"
    )
}

/// Every (zone, rule) the request needs, sorted.
pub fn wanted(req: &OpenRequest, facts: &ZoneFacts) -> Vec<ZoneRule> {
    let mut out = BTreeSet::new();
    for &addr in &req.addresses {
        for zone in zones_for(facts, addr) {
            for &port in &req.ports {
                out.insert(ZoneRule {
                    zone: zone.clone(),
                    rule: rule_for(addr, port),
                });
            }
        }
    }
    out.into_iter().collect()
}

/// Parses recorded strings, ignoring any that are not the tool's form.
pub fn parse_recorded(recorded: &[String]) -> Vec<ZoneRule> {
    recorded.iter().filter_map(|s| ZoneRule::parse(s)).collect()
}

/// The rich rules present in each zone looked at (runtime).
pub type Present = BTreeMap<String, Vec<String>>;

fn is_present(present: &Present, r: &ZoneRule) -> bool {
    present
        .get(&r.zone)
        .is_some_and(|rules| rules.contains(&r.rule))
}

/// The change, in the order it is applied: removals first, so that a rule re-armed with a new
/// timeout (firewalld does not extend the timer of a rule added twice) is removed, then added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub remove: Vec<ZoneRule>,
    pub add: Vec<ZoneRule>,
    /// What the layer holds of the tool's once the plan is applied.
    pub recorded: Vec<ZoneRule>,
    /// firewalld's timeout for the added rules, in seconds (0: none).
    pub timeout_secs: u32,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Seconds for firewalld's timer, rounded up so the door never closes before the key expires;
/// at least 1 (0 means "no timeout" to firewalld).
pub fn timeout_secs(t: Option<Duration>) -> u32 {
    match t {
        None => 0,
        Some(d) => {
            let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            u32::try_from(s.max(1)).unwrap_or(u32::MAX)
        }
    }
}

/// Brings the layer from `recorded` to `want`.
/// - A wanted rule that is absent is added.
/// - A wanted rule present but not recorded is the operator's own, identical rule: left alone and
///   not recorded, so that revoke does not remove it.
/// - A wanted rule recorded and present is kept; with a timeout it is removed and added again,
///   since firewalld cannot tell when its running timer ends, and re-adding does not re-arm it.
/// - A recorded rule no longer wanted (an address gone, a zone changed) is removed when present.
pub fn plan_open(
    want: &[ZoneRule],
    recorded: &[ZoneRule],
    present: &Present,
    timeout: Option<Duration>,
) -> Plan {
    let timeout_secs = timeout_secs(timeout);
    let mut plan = Plan {
        timeout_secs,
        ..Default::default()
    };
    for w in want {
        let mine = recorded.contains(w);
        match (is_present(present, w), mine) {
            (false, _) => {
                plan.add.push(w.clone());
                plan.recorded.push(w.clone());
            }
            (true, false) => plan.notes.push(format!(
                "firewalld zone {} already has the rule `{}`, not added by this tool: it is left as it is, and revoke will not remove it",
                w.zone, w.rule
            )),
            (true, true) => {
                if timeout_secs > 0 {
                    plan.remove.push(w.clone());
                    plan.add.push(w.clone());
                }
                plan.recorded.push(w.clone());
            }
        }
    }
    for r in recorded {
        if !want.contains(r) && is_present(present, r) {
            plan.remove.push(r.clone());
        }
    }
    plan
}

/// Removes every recorded rule still present.
pub fn plan_close(recorded: &[ZoneRule], present: &Present) -> Plan {
    Plan {
        remove: recorded
            .iter()
            .filter(|r| is_present(present, r))
            .cloned()
            .collect(),
        ..Default::default()
    }
}

/// How the layer differs from what `want` needs (`None`: no grant); empty when it is exact.
/// Each entry is one sentence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// How many rules the request needs.
    pub wanted: usize,
    /// Recorded rules present (the tool's objects are in the layer).
    pub ours_present: usize,
    pub missing: Vec<ZoneRule>,
    /// Recorded rules present that the request no longer needs.
    pub extra: Vec<ZoneRule>,
}

pub fn inspect(want: Option<&[ZoneRule]>, recorded: &[ZoneRule], present: &Present) -> Inspection {
    let want = want.unwrap_or(&[]);
    let ours_present = recorded.iter().filter(|r| is_present(present, r)).count();
    Inspection {
        wanted: want.len(),
        ours_present,
        missing: want
            .iter()
            .filter(|w| !is_present(present, w))
            .cloned()
            .collect(),
        extra: recorded
            .iter()
            .filter(|r| !want.contains(r) && is_present(present, r))
            .cloned()
            .collect(),
    }
}

/// The plan as the equivalent `firewall-cmd` commands (runtime only, as the tool does it).
pub fn script(plan: &Plan) -> String {
    let mut s = String::new();
    for r in &plan.remove {
        s.push_str(&format!(
            "firewall-cmd --zone={} --remove-rich-rule='{}'\n",
            r.zone, r.rule
        ));
    }
    for r in &plan.add {
        let timeout = if plan.timeout_secs > 0 {
            format!(" --timeout={}s", plan.timeout_secs)
        } else {
            String::new()
        };
        s.push_str(&format!(
            "firewall-cmd --zone={} --add-rich-rule='{}'{timeout}\n",
            r.zone, r.rule
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::firewalld::bus::ActiveZone;

    fn zr(zone: &str, rule: &str) -> ZoneRule {
        ZoneRule {
            zone: zone.into(),
            rule: rule.into(),
        }
    }

    fn req(addrs: &[&str], ports: &[u16], timeout: Option<u64>) -> OpenRequest {
        OpenRequest {
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ports: ports.to_vec(),
            timeout: timeout.map(Duration::from_secs),
        }
    }

    fn facts() -> ZoneFacts {
        ZoneFacts {
            default_zone: "public".into(),
            active: vec![ActiveZone {
                name: "drop".into(),
                interfaces: vec![],
                sources: vec!["198.51.100.0/24".into()],
            }],
            interfaces: vec!["eth0".into()],
        }
    }

    #[test]
    fn canonical_rule_and_recorded_form() {
        // As firewalld 1.3 prints it back (`firewall-cmd --list-rich-rules`).
        assert_eq!(
            rule_for("2001:db8:1::2".parse().unwrap(), 2222),
            r#"rule priority="-32768" family="ipv6" source address="2001:db8:1::2" port port="2222" protocol="tcp" accept"#
        );
        let r = zr("public", &rule_for("198.51.100.2".parse().unwrap(), 22));
        assert_eq!(ZoneRule::parse(&r.recorded()), Some(r));
        assert_eq!(ZoneRule::parse("public rule x"), None);
        assert_eq!(ZoneRule::parse(": rule x"), None);
    }

    #[test]
    fn wanted_rules_per_zone_address_and_port() {
        let w = wanted(
            &req(&["198.51.100.2", "2001:db8:1::2"], &[22, 2222], None),
            &facts(),
        );
        let zones: Vec<&str> = w.iter().map(|r| r.zone.as_str()).collect();
        assert_eq!(zones, ["drop", "drop", "public", "public"]);
        assert!(w[3].rule.contains("2001:db8:1::2") && w[3].rule.contains("port=\"2222\""));
    }

    #[test]
    fn open_adds_what_is_missing_and_leaves_the_operators_rule() {
        let a = zr("public", &rule_for("198.51.100.2".parse().unwrap(), 22));
        let b = zr("public", &rule_for("198.51.100.3".parse().unwrap(), 22));
        let present: Present = [("public".to_string(), vec![b.rule.clone()])].into();
        let p = plan_open(&[a.clone(), b.clone()], &[], &present, None);
        assert_eq!(p.add, vec![a.clone()]);
        assert_eq!(p.recorded, vec![a.clone()]);
        assert!(p.remove.is_empty());
        assert!(p.notes[0].contains("not added by this tool"));
        // Again, recorded and present: nothing to do without a timeout.
        let present: Present =
            [("public".to_string(), vec![a.rule.clone(), b.rule.clone()])].into();
        let p = plan_open(
            std::slice::from_ref(&a),
            std::slice::from_ref(&a),
            &present,
            None,
        );
        assert!(p.is_empty());
        assert_eq!(p.recorded, vec![a.clone()]);
        // With a timeout: removed, then added again, so firewalld's timer starts anew.
        let p = plan_open(
            std::slice::from_ref(&a),
            std::slice::from_ref(&a),
            &present,
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(
            (p.remove.clone(), p.add.clone()),
            (vec![a.clone()], vec![a.clone()])
        );
        assert_eq!(p.timeout_secs, 2);
        assert_eq!(
            script(&p),
            format!(
                "firewall-cmd --zone=public --remove-rich-rule='{r}'\nfirewall-cmd --zone=public --add-rich-rule='{r}' --timeout=2s\n",
                r = a.rule
            )
        );
        // A recorded rule no longer wanted goes; one already gone is not removed twice.
        let c = zr("drop", &rule_for("198.51.100.9".parse().unwrap(), 22));
        let p = plan_open(
            std::slice::from_ref(&a),
            &[a.clone(), c.clone(), b.clone()],
            &present,
            None,
        );
        assert_eq!(p.remove, vec![b.clone()]);
        assert!(p.add.is_empty());
    }

    #[test]
    fn close_and_inspect() {
        let a = zr("public", &rule_for("198.51.100.2".parse().unwrap(), 22));
        let b = zr("public", &rule_for("198.51.100.3".parse().unwrap(), 22));
        let present: Present = [("public".to_string(), vec![a.rule.clone()])].into();
        assert_eq!(
            plan_close(&[a.clone(), b.clone()], &present).remove,
            vec![a.clone()]
        );
        let i = inspect(
            Some(&[a.clone(), b.clone()]),
            &[a.clone(), b.clone()],
            &present,
        );
        assert_eq!((i.ours_present, i.missing.clone()), (1, vec![b.clone()]));
        let i = inspect(None, std::slice::from_ref(&a), &present);
        assert_eq!(i.extra, vec![a.clone()]);
        let i = inspect(
            Some(std::slice::from_ref(&a)),
            std::slice::from_ref(&a),
            &present,
        );
        assert!(i.missing.is_empty() && i.extra.is_empty());
        assert_eq!(timeout_secs(Some(Duration::from_millis(1))), 1);
        assert_eq!(timeout_secs(Some(Duration::from_secs(5))), 5);
        assert_eq!(timeout_secs(None), 0);
    }
}
