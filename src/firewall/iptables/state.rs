//! What the tool has in one layer's filter table, read back by name and tag: for `status`
//! (do key and firewall agree?) and `restore` (what expired, what is missing).
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::plan::{format_utc, CHAIN_IN, CHAIN_OUT, CHAIN_PRE};
use super::save::SavedTable;
use crate::firewall::TAG;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ToolState {
    /// False when the layer has no filter table at all.
    pub filter_table: bool,
    pub jumps: Vec<Jump>,
    pub rules: Vec<ToolRule>,
}

/// A tagged jump from a built-in chain to one of the tool's chains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jump {
    pub chain: String,
    pub target: String,
    /// First rule of its chain: nothing the user added can drop the traffic before it.
    pub at_head: bool,
}

/// One ACCEPT in the tool's chains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolRule {
    pub chain: String,
    pub address: IpAddr,
    pub ports: Vec<u16>,
    /// `YYYY-MM-DDThh:mm:ss` UTC, when the grant had a duration.
    pub datestop: Option<String>,
}

impl ToolRule {
    /// True once xt_time no longer matches (the packet's second is past the stop).
    pub fn expired(&self, now: SystemTime) -> bool {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Same fixed-width format on both sides: string order is time order.
        self.datestop
            .as_deref()
            .is_some_and(|stop| format_utc(secs).as_str() > stop)
    }
}

impl ToolState {
    pub fn is_empty(&self) -> bool {
        self.jumps.is_empty() && self.rules.is_empty()
    }

    /// The support addresses still let in (incoming chain, not expired).
    pub fn open_addresses(&self, now: SystemTime) -> Vec<IpAddr> {
        let mut a: Vec<IpAddr> = self
            .rules
            .iter()
            .filter(|r| r.chain == CHAIN_IN && !r.expired(now))
            .map(|r| r.address)
            .collect();
        a.sort();
        a.dedup();
        a
    }
}

/// Read the tool's objects out of a parsed filter table.
pub fn tool_state(filter: Option<&SavedTable>) -> ToolState {
    let Some(filter) = filter else {
        return ToolState::default();
    };
    let mut st = ToolState {
        filter_table: true,
        ..ToolState::default()
    };
    for chain in &filter.chains {
        if chain.name == CHAIN_IN || chain.name == CHAIN_OUT || chain.name == CHAIN_PRE {
            for rule in chain.rules.iter().filter(|r| r.has_comment(TAG)) {
                let addr = rule.option("-s").or_else(|| rule.option("-d"));
                let address = addr.and_then(|a| a.split('/').next().and_then(|a| a.parse().ok()));
                let ports = rule.option("--dports").or_else(|| rule.option("--sports"));
                let (Some(address), Some(ports)) = (address, ports) else {
                    continue;
                };
                st.rules.push(ToolRule {
                    chain: chain.name.clone(),
                    address,
                    ports: ports.split(',').filter_map(|p| p.parse().ok()).collect(),
                    datestop: rule.option("--datestop"),
                });
            }
            continue;
        }
        for (i, rule) in chain.rules.iter().enumerate() {
            for target in [CHAIN_IN, CHAIN_OUT, CHAIN_PRE] {
                if rule.targets(target) && rule.has_comment(TAG) {
                    st.jumps.push(Jump {
                        chain: chain.name.clone(),
                        target: target.to_string(),
                        at_head: i == 0,
                    });
                }
            }
        }
    }
    st
}
