//! The read side of an iptables layer: does its filter table hold exactly what a grant wrote?
//! Compared rule by rule with what the planner writes for the same request (the tool's chains'
//! ACCEPTs in order, one tagged jump at the head of each hooked built-in chain), from the one
//! `*-save` already read: nothing is run to answer.
use std::time::{Duration, SystemTime};

use anyhow::Result;

use super::plan;
use super::save::SavedTable;
use super::Family;
use crate::firewall::{Drift, LayerState, OpenRequest};

/// The layer's state against `want` (pure: `tables` are the layer's tables as read).
pub fn layer_state(
    tables: &[SavedTable],
    family: Family,
    layer: &str,
    want: Option<&OpenRequest>,
    now: SystemTime,
) -> Result<LayerState> {
    let present = plan::close_layer(tables)?.changed;
    let Some(req) = want else {
        return Ok(if present {
            LayerState::Drift(vec![Drift::new(
                format!("{layer} still has the tool's objects"),
                "ovh-access revoke",
            )])
        } else {
            LayerState::Absent
        });
    };
    if !present {
        // A layer whose table lost its INPUT chain (or has no filter table) blocks nobody.
        let untimed = OpenRequest {
            timeout: None,
            ..req.clone()
        };
        let needed = plan::open_layer(tables, family, &untimed, now)?.changed;
        return Ok(if needed {
            LayerState::Missing
        } else {
            LayerState::Absent
        });
    }
    if exact(tables, family, req, now)? {
        return Ok(LayerState::Exact);
    }
    Ok(LayerState::Drift(vec![Drift::new(
        format!(
            "the firewall layer {layer} no longer holds the grant's rules as the tool wrote them (a jump or an ACCEPT deleted or moved by hand?)"
        ),
        "ovh-access restore",
    )]))
}

/// Planning `req` again changes nothing. A rule dated one second after the request's end is
/// still the grant's own: `--datestop` is written to the second from a clock read during the
/// grant, and a grant that crossed a second boundary there (or was re-applied by `restore` with
/// whole seconds) ends one second later.
fn exact(
    tables: &[SavedTable],
    family: Family,
    req: &OpenRequest,
    now: SystemTime,
) -> Result<bool> {
    if !plan::open_layer(tables, family, req, now)?.changed {
        return Ok(true);
    }
    let Some(t) = req.timeout else {
        return Ok(false);
    };
    let one_late = OpenRequest {
        timeout: Some(t + Duration::from_secs(1)),
        ..req.clone()
    };
    Ok(!plan::open_layer(tables, family, &one_late, now)?.changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::iptables::save;

    const EMPTY: &str =
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

    fn req(timeout: Option<Duration>) -> OpenRequest {
        OpenRequest {
            addresses: vec!["192.0.2.9".parse().unwrap()],
            ports: vec![22],
            timeout,
        }
    }

    /// The filter table as the planner would leave it after opening `r`: its script applied by
    /// rewriting the save text (the rules of a `--noflush` restore land where it says).
    fn granted(r: &OpenRequest, now: SystemTime) -> SavedTable {
        let filter = save::parse(EMPTY).unwrap().remove(0);
        let p = plan::open(Some(&filter), Family::V4, r, now).unwrap();
        let mut text =
            String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        for l in p.script.lines() {
            if let Some(decl) = l.strip_prefix(':') {
                text.push_str(&format!(":{decl}\n"));
            }
        }
        for l in p.script.lines() {
            if let Some(rest) = l.strip_prefix("-I INPUT 1 ") {
                text.push_str(&format!("-A INPUT {rest}\n"));
            } else if l.starts_with("-A ") {
                text.push_str(&format!("{l}\n"));
            }
        }
        text.push_str("COMMIT\n");
        save::parse(&text).unwrap().remove(0)
    }

    #[test]
    fn absent_missing_exact_and_drift() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let empty = save::parse(EMPTY).unwrap().remove(0);
        let st = |f: &SavedTable, w: Option<&OpenRequest>| {
            layer_state(
                std::slice::from_ref(f),
                Family::V4,
                "iptables-legacy",
                w,
                now,
            )
            .unwrap()
        };
        assert_eq!(st(&empty, None), LayerState::Absent);
        assert_eq!(st(&empty, Some(&req(None))), LayerState::Missing);
        assert_eq!(
            layer_state(&[], Family::V4, "iptables-legacy", Some(&req(None)), now).unwrap(),
            LayerState::Absent
        );
        let hour = Some(Duration::from_secs(3600));
        let table = granted(&req(hour), now);
        assert_eq!(st(&table, Some(&req(hour))), LayerState::Exact);
        // One second late is the grant's own; an hour off is not.
        let late = now - Duration::from_secs(1);
        assert_eq!(
            layer_state(
                std::slice::from_ref(&table),
                Family::V4,
                "x",
                Some(&req(hour)),
                late
            )
            .unwrap(),
            LayerState::Exact
        );
        assert!(matches!(st(&table, Some(&req(None))), LayerState::Drift(_)));
        assert!(matches!(st(&table, None), LayerState::Drift(_)));
    }
}
