//! firewalld, programmed through its D-Bus API. While firewalld runs its chains reject inside its
//! own table (≥ 2.0 flags it `owner`, so nothing else may even add to it) and a reload rebuilds
//! everything, so the only opening that works is one firewalld itself holds: a runtime rich rule
//! per support address and SSH port, in every zone the support's packets can land in. The
//! permanent configuration is never touched, so a restart or `--reload` forgets the rules: status
//! reports that as drift and restore or the refresh timer adds them again.
//!
//! Facts (zones, rules present) → pure plan ([`plan`]) → one sequence of calls, rolled back when
//! a call fails half-way.
pub mod bus;
pub mod plan;
pub mod zones;

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use self::bus::{BusError, Client};
use self::plan::{Inspection, Plan, Present, ZoneRule};
use self::zones::ZoneFacts;
use super::{Drift, LayerChange, LayerState, Mode, OpenRequest};

/// The layer's name in reports and the state file.
pub const LAYER: &str = "firewalld";
/// The command that puts back what a reload removed.
pub const REPAIR: &str = "ovh-access restore";

pub struct FirewalldBackend {
    client: Client,
}

impl FirewalldBackend {
    /// Connects to firewalld on the system bus; an error says why it cannot be reached.
    pub fn new() -> Result<FirewalldBackend> {
        Ok(FirewalldBackend {
            client: Client::connect()?,
        })
    }

    /// As [`FirewalldBackend::new`], on the bus at `address`.
    pub fn at(address: &str) -> Result<FirewalldBackend> {
        Ok(FirewalldBackend {
            client: Client::connect_at(address)?,
        })
    }

    /// The zones, as firewalld and this network namespace report them.
    pub fn zone_facts(&self) -> Result<ZoneFacts> {
        Ok(ZoneFacts {
            default_zone: self.client.default_zone()?,
            active: self.client.active_zones()?,
            interfaces: zones::namespace_interfaces(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The rich rules of each zone named (a zone that no longer exists has none).
    fn present<'a>(&self, zones: impl IntoIterator<Item = &'a str>) -> Result<Present> {
        let mut out = Present::new();
        for zone in zones.into_iter().collect::<BTreeSet<_>>() {
            let rules = match self.client.rich_rules(zone) {
                Ok(r) => r,
                Err(e) if e.code() == Some("INVALID_ZONE") => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            out.insert(zone.to_string(), rules);
        }
        Ok(out)
    }

    /// What the request needs, what the grant recorded, and what is there.
    fn read(
        &self,
        want: Option<&OpenRequest>,
        recorded: &[String],
    ) -> Result<(Vec<ZoneRule>, Vec<ZoneRule>, Present)> {
        let wanted = match want {
            Some(req) => plan::wanted(req, &self.zone_facts()?),
            None => Vec::new(),
        };
        let recorded = plan::parse_recorded(recorded);
        let zones = wanted.iter().chain(&recorded).map(|r| r.zone.as_str());
        let present = self.present(zones)?;
        Ok((wanted, recorded, present))
    }

    /// Read only: how the layer compares with `want` (`None`: no grant).
    pub fn inspect_rules(
        &self,
        want: Option<&OpenRequest>,
        recorded: &[String],
    ) -> Result<Inspection> {
        let (wanted, recorded, present) = self.read(want, recorded)?;
        Ok(plan::inspect(
            want.map(|_| wanted.as_slice()),
            &recorded,
            &present,
        ))
    }

    /// Opens the request's rules; the change's `recorded` is what to keep in the state.
    pub fn open_rules(
        &self,
        req: &OpenRequest,
        recorded: &[String],
        dry_run: bool,
    ) -> Result<(LayerChange, Vec<String>)> {
        let (wanted, recorded, present) = self.read(Some(req), recorded)?;
        let plan = plan::plan_open(&wanted, &recorded, &present, req.timeout);
        let change = self.run(&plan, dry_run)?;
        let kept = plan.recorded.iter().map(ZoneRule::recorded).collect();
        Ok((change, kept))
    }

    /// Removes the recorded rules still present.
    pub fn close_rules(&self, recorded: &[String], dry_run: bool) -> Result<LayerChange> {
        let (_, recorded, present) = self.read(None, recorded)?;
        self.run(&plan::plan_close(&recorded, &present), dry_run)
    }

    fn run(&self, plan: &Plan, dry_run: bool) -> Result<LayerChange> {
        let zones: BTreeSet<&str> = plan
            .recorded
            .iter()
            .chain(&plan.add)
            .chain(&plan.remove)
            .map(|r| r.zone.as_str())
            .collect();
        let change = LayerChange {
            layer: LAYER.to_string(),
            changed: !plan.is_empty(),
            script: plan::script(plan),
            chains: zones.iter().map(|z| format!("zone {z}")).collect(),
            notes: plan.notes.clone(),
            recorded: Vec::new(),
        };
        if !dry_run && !plan.is_empty() {
            apply(&self.client, plan)?;
        }
        Ok(change)
    }
}

/// One call of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Remove,
    Add,
}

/// Runs the plan's calls in order (removals, then additions). When one fails — firewalld refuses
/// it, or the bus goes away — the calls already made are undone in reverse order, so that the
/// layer is left as it was found; what could not be undone is named in the error.
fn apply(client: &Client, plan: &Plan) -> Result<()> {
    let steps = plan
        .remove
        .iter()
        .map(|r| (Step::Remove, r))
        .chain(plan.add.iter().map(|r| (Step::Add, r)));
    let mut done: Vec<(Step, &ZoneRule)> = Vec::new();
    for (step, r) in steps {
        let result =
            mid_change_fault(done.len()).and_then(|()| call(client, step, r, plan.timeout_secs));
        match result {
            Ok(()) => done.push((step, r)),
            Err(e) => {
                let left = undo(client, &done, plan.timeout_secs);
                let what = if left.is_empty() {
                    "the calls already made were undone".to_string()
                } else {
                    format!(
                        "these could not be undone (runtime only: `firewall-cmd --reload` clears them): {}",
                        left.join("; ")
                    )
                };
                return Err(anyhow::Error::new(e)).context(format!(
                    "firewalld: changing zone {} failed; {what}",
                    r.zone
                ));
            }
        }
    }
    Ok(())
}

fn call(client: &Client, step: Step, r: &ZoneRule, timeout_secs: u32) -> Result<(), BusError> {
    match step {
        Step::Remove => client.remove_rich_rule(&r.zone, &r.rule),
        Step::Add => client.add_rich_rule(&r.zone, &r.rule, timeout_secs),
    }
}

/// Undoes `done` in reverse; returns what stays changed.
fn undo(client: &Client, done: &[(Step, &ZoneRule)], timeout_secs: u32) -> Vec<String> {
    let mut left = Vec::new();
    for &(step, r) in done.iter().rev() {
        let inverse = match step {
            Step::Add => Step::Remove,
            Step::Remove => Step::Add,
        };
        if let Err(e) = call(client, inverse, r, timeout_secs) {
            left.push(format!("{} ({e})", r.recorded()));
        }
    }
    left
}

/// A failpoint between two calls (`FAILPOINTS=firewalld-mid-change=1*off->return` fails the
/// second call as a vanished bus would), so the rollback above is tested against a real firewalld.
fn mid_change_fault(_calls_done: usize) -> Result<(), BusError> {
    #[cfg(feature = "failpoints")]
    {
        if fail::eval("firewalld-mid-change", |_| ()).is_some() {
            return Err(BusError::Failed {
                call: "(failpoint firewalld-mid-change)".into(),
                detail: "the connection was closed".into(),
            });
        }
    }
    Ok(())
}

/// The layer's state from an inspection: the request's rules all there (the tool's or the
/// operator's identical ones) is exact; none of the tool's left where some are needed is missing
/// (a reload); anything in between, or leftovers, is drift.
pub fn layer_state(want: Option<&OpenRequest>, i: &Inspection) -> LayerState {
    let mut drift: Vec<Drift> = i
        .missing
        .iter()
        .map(|r| {
            Drift::new(
                format!(
                    "firewalld zone {} lacks the rule `{}` (removed by `firewall-cmd --reload` or a restart?)",
                    r.zone, r.rule
                ),
                REPAIR,
            )
        })
        .collect();
    let repair_extra = if want.is_some() {
        REPAIR
    } else {
        "ovh-access revoke"
    };
    drift.extend(i.extra.iter().map(|r| {
        Drift::new(
            format!(
                "firewalld zone {} still has the tool's rule `{}`, which the grant does not need",
                r.zone, r.rule
            ),
            repair_extra,
        )
    }));
    if drift.is_empty() {
        return if i.ours_present > 0 || (want.is_some() && i.wanted > 0) {
            LayerState::Exact
        } else {
            LayerState::Absent
        };
    }
    if i.ours_present == 0 && i.extra.is_empty() && i.missing.len() == i.wanted {
        return LayerState::Missing;
    }
    LayerState::Drift(drift)
}

impl super::Backend for FirewalldBackend {
    fn name(&self) -> String {
        LAYER.to_string()
    }

    fn inspect(&mut self, want: Option<&OpenRequest>, recorded: &[String]) -> Result<LayerState> {
        let i = self.inspect_rules(want, recorded)?;
        Ok(layer_state(want, &i))
    }

    fn open(&mut self, req: &OpenRequest, recorded: &[String], mode: Mode) -> Result<LayerChange> {
        let (mut change, kept) = self.open_rules(req, recorded, mode.is_dry_run())?;
        change.recorded = kept;
        Ok(change)
    }

    fn close(&mut self, recorded: &[String], mode: Mode) -> Result<LayerChange> {
        self.close_rules(recorded, mode.is_dry_run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zr(n: u8) -> ZoneRule {
        ZoneRule {
            zone: "public".into(),
            rule: plan::rule_for(std::net::IpAddr::from([198, 51, 100, n]), 22),
        }
    }

    #[test]
    fn states() {
        let req = OpenRequest {
            addresses: vec![],
            ports: vec![22],
            timeout: None,
        };
        let exact = Inspection {
            wanted: 2,
            ours_present: 2,
            ..Default::default()
        };
        assert_eq!(layer_state(Some(&req), &exact), LayerState::Exact);
        // A reload: every rule gone.
        let reloaded = Inspection {
            wanted: 2,
            missing: vec![zr(1), zr(2)],
            ..Default::default()
        };
        assert_eq!(layer_state(Some(&req), &reloaded), LayerState::Missing);
        // One of two gone (removed by hand): drift naming it, repaired by restore.
        let half = Inspection {
            wanted: 2,
            ours_present: 1,
            missing: vec![zr(2)],
            ..Default::default()
        };
        match layer_state(Some(&req), &half) {
            LayerState::Drift(d) => {
                assert_eq!(d.len(), 1);
                assert!(d[0].what.contains("lacks the rule") && d[0].repair == REPAIR);
            }
            other => panic!("{other:?}"),
        }
        // No grant: the tool's rules left over are drift for revoke; nothing is absent.
        let left = Inspection {
            ours_present: 1,
            extra: vec![zr(1)],
            ..Default::default()
        };
        match layer_state(None, &left) {
            LayerState::Drift(d) => assert_eq!(d[0].repair, "ovh-access revoke"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            layer_state(None, &Inspection::default()),
            LayerState::Absent
        );
    }
}
