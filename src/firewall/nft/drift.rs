//! The read side of the nftables layer: does it hold exactly what a grant wrote? Every hooked
//! chain jumps to the tool's chain at its head (below the head, a rule the user inserted since
//! can drop the support first), the tool's chains hold the rules the tool writes for the grant's
//! ports, and each set holds exactly the grant's addresses of its family, with the grant's
//! timeout (an element deleted by hand, or a set flushed, shuts the support out while the key
//! stays active; an element without its timeout outlives the grant).
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;

use super::{plan, state_of, Facts, NftTableState};
use crate::firewall::{Drift, LayerState, OpenRequest};
use crate::text::join;

const RESTORE: &str = "ovh-access restore";

/// How far an element's time left may be from the grant's: the grant dates its timeout to the
/// sub-second from its own clock read, so only the time between that read and the kernel's,
/// and between the kernel's dump and this process's clock, separates them.
const TIMEOUT_SLACK: Duration = Duration::from_secs(2);

/// The layer's state against `want`, from one dump.
pub(super) fn layer_state(facts: &Facts, want: Option<&OpenRequest>) -> Result<LayerState> {
    let close = plan::plan_close(facts)?;
    let present = !close.ops.is_empty();
    let Some(req) = want else {
        return Ok(if present {
            LayerState::Drift(vec![Drift::new(
                "nftables still has the tool's objects",
                "ovh-access revoke",
            )])
        } else {
            LayerState::Absent
        });
    };
    // A chain that drops the support and that the tool cannot open (an owned table, an inet
    // ingress chain): the grant's key stands behind a closed door whatever the tool's objects.
    let blocked: Vec<Drift> = plan::refusals_not_left_to_firewalld(facts)
        .into_iter()
        .map(|b| Drift::new(format!("nftables: {b}"), "ovh-access doctor"))
        .collect();
    if !blocked.is_empty() {
        let mut drift = blocked;
        drift.extend(compare(&state_of(facts).tables, req));
        return Ok(LayerState::Drift(drift));
    }
    if !present {
        // A layer left with no chain that filters input (a bare `flush ruleset`) blocks nobody:
        // nothing is missing there.
        let untimed = OpenRequest {
            timeout: None,
            ..req.clone()
        };
        // firewalld's own table is the firewalld layer's to judge, not a refusal here.
        let mut ours = facts.clone();
        ours.tables.retain(|t| !t.left_to_firewalld());
        let needed = !plan::plan_open(&ours, &untimed)?.ops.is_empty();
        return Ok(if needed {
            LayerState::Missing
        } else {
            LayerState::Absent
        });
    }
    let mut drift = compare(&state_of(facts).tables, req);
    if drift.is_empty() {
        // What a close found missing (a set, the chain): half a grant is not the grant.
        drift = close
            .notes
            .into_iter()
            .map(|n| Drift::new(format!("nftables: {n}"), RESTORE))
            .collect();
    }
    Ok(if drift.is_empty() {
        LayerState::Exact
    } else {
        LayerState::Drift(drift)
    })
}

/// The tool's objects of each table against the request (pure).
pub(super) fn compare(tables: &[NftTableState], req: &OpenRequest) -> Vec<Drift> {
    let mut drift = Vec::new();
    for t in tables
        .iter()
        .filter(|t| !t.chains.is_empty() || !t.sets.is_empty())
    {
        for h in &t.hooks {
            let what = match (h.jump_present, h.jump_at_head) {
                (false, _) => "no longer jumps to the tool's chain",
                (true, false) => "jumps to the tool's chain only after other rules, which may drop the support first",
                (true, true) => continue,
            };
            drift.push(Drift::new(
                format!("nftables: chain {} {} {} {what}", t.family, t.name, h.chain),
                RESTORE,
            ));
        }
        for (chain, have) in t.chains.iter().zip(&t.chain_rules) {
            let want = t.rules_wanted(chain, &req.ports);
            if *have != want {
                drift.push(Drift::new(
                    format!(
                        "nftables: chain {} {} {chain} holds [{}], the grant [{}]",
                        t.family,
                        t.name,
                        have.join("; "),
                        want.join("; ")
                    ),
                    RESTORE,
                ));
            }
        }
        compare_sets(t, req, &mut drift);
    }
    // A table loaded since the grant, with nothing of the tool's, whose chain can drop.
    for t in tables
        .iter()
        .filter(|t| t.chains.is_empty() && t.sets.is_empty())
    {
        for h in t.hooks.iter().filter(|h| h.can_drop && !h.jump_at_head) {
            drift.push(Drift::new(
                format!(
                    "nftables: chain {} {} {} ({}) can drop the support's packets and does not jump to the tool's chain",
                    t.family, t.name, h.chain, h.hook
                ),
                RESTORE,
            ));
        }
    }
    drift
}

/// Each of the tool's sets in `t` against the request's addresses and expiry.
fn compare_sets(t: &NftTableState, req: &OpenRequest, drift: &mut Vec<Drift>) {
    {
        for set in &t.sets {
            let v6 = set.name.ends_with("v6");
            let mut have: Vec<IpAddr> = set.elements.iter().map(|e| e.address).collect();
            have.sort();
            have.dedup();
            let mut want: Vec<IpAddr> = req
                .addresses
                .iter()
                .filter(|a| a.is_ipv6() == v6)
                .copied()
                .collect();
            want.sort();
            want.dedup();
            let label = format!("nftables: set {} {} {}", t.family, t.name, set.name);
            if have != want {
                drift.push(Drift::new(
                    format!(
                        "{label} holds [{}], the grant [{}]",
                        join(&have),
                        join(&want)
                    ),
                    RESTORE,
                ));
                continue;
            }
            let off: Vec<IpAddr> = set
                .elements
                .iter()
                .filter(|e| !timeout_fits(e.expires_ms, req.timeout))
                .map(|e| e.address)
                .collect();
            if !off.is_empty() {
                drift.push(Drift::new(
                    format!(
                        "{label}: {} {} not the grant's expiry",
                        join(&off),
                        if req.timeout.is_some() {
                            "expire at"
                        } else {
                            "have a timeout though the grant has"
                        }
                    ),
                    RESTORE,
                ));
            }
        }
    }
}

/// An element's time left against the grant's: both none, or both set and within the slack.
fn timeout_fits(expires_ms: Option<u64>, want: Option<Duration>) -> bool {
    match (expires_ms, want) {
        (None, None) => true,
        (Some(left), Some(want)) => Duration::from_millis(left).abs_diff(want) <= TIMEOUT_SLACK,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::nft::{Element, NftHookState, NftSetState, CHAIN_IN, SET_V4};

    fn table(elements: Vec<Element>) -> NftTableState {
        let mut t = NftTableState {
            family: "ip".into(),
            name: "filter".into(),
            hooks: vec![NftHookState {
                chain: "input".into(),
                hook: "input".into(),
                can_drop: true,
                jump_present: true,
                jump_at_head: true,
            }],
            chains: vec![CHAIN_IN.into()],
            chain_rules: vec![],
            sets: vec![NftSetState {
                name: SET_V4.into(),
                elements,
            }],
        };
        t.chain_rules = vec![t.rules_wanted(CHAIN_IN, &[22])];
        t
    }

    fn el(expires_ms: Option<u64>) -> Element {
        Element {
            address: "192.0.2.9".parse().unwrap(),
            timeout_ms: expires_ms,
            expires_ms,
        }
    }

    fn req(timeout: Option<Duration>) -> OpenRequest {
        OpenRequest {
            addresses: vec!["192.0.2.9".parse().unwrap()],
            ports: vec![22],
            timeout,
        }
    }

    #[test]
    fn the_grant_as_written_has_no_drift() {
        assert!(compare(&[table(vec![el(None)])], &req(None)).is_empty());
        let hour = Duration::from_secs(3600);
        assert!(compare(&[table(vec![el(Some(3_599_500))])], &req(Some(hour))).is_empty());
    }

    #[test]
    fn a_timeout_off_the_expiry_is_drift() {
        let hour = Duration::from_secs(3600);
        let d = compare(&[table(vec![el(Some(600_000))])], &req(Some(hour)));
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].what.contains("expire at"), "{d:?}");
        let d = compare(&[table(vec![el(Some(600_000))])], &req(None));
        assert!(d[0].what.contains("have a timeout"), "{d:?}");
    }

    #[test]
    fn a_lost_element_a_moved_jump_and_a_changed_rule_are_drift() {
        let d = compare(&[table(vec![])], &req(None));
        assert!(
            d[0].what.contains("holds [], the grant [192.0.2.9]"),
            "{d:?}"
        );
        let mut t = table(vec![el(None)]);
        t.hooks[0].jump_at_head = false;
        t.chain_rules[0].clear();
        let d = compare(&[t], &req(None));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].what.contains("only after other rules"), "{d:?}");
        assert!(d.iter().all(|x| x.repair == RESTORE));
    }
}
