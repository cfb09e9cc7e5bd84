//! iptables, both variants: the legacy x_tables and iptables-nft (xtables rules in nf_tables
//! tables). Each (variant, family) pair is one layer with its own filter table; a packet must be
//! accepted by every layer whose hooks it crosses, so `detect` picks all that exist.
//!
//! Each change reads the layer with `*-save`, plans it as a pure function of what it read
//! ([`plan`]) and applies it with one `*-restore --noflush` per table, so it is atomic.
use std::net::IpAddr;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Backend, LayerChange, LayerState, Mode, OpenRequest};

pub mod drift;
pub mod exec;
pub mod plan;
pub mod save;
pub mod state;

pub use save::{SavedChain, SavedRule, SavedTable};
pub use state::ToolState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Variant {
    /// x_tables through setsockopt (`iptables-legacy`).
    Legacy,
    /// xtables rules kept in nf_tables tables (`iptables-nft`).
    Nft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn holds(self, addr: &IpAddr) -> bool {
        match self {
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The legacy tables that exist in the calling thread's network namespace.
///
/// Read from `/proc/thread-self/net/…`, not `/proc/net/…`: `/proc/net` is a link to `self/net`,
/// and `/proc/self` names the thread-group leader, whose namespace is the one shown
/// (proc_tgid_net_lookup → get_proc_task_net takes the task of the pid directory). A thread that
/// setns'ed elsewhere (as the tests do) would read the main thread's namespace through it.
/// Reading this file creates nothing, unlike `iptables-legacy-save -t X`, which loads X.
pub fn legacy_tables(family: Family) -> Vec<String> {
    x_tables_list(family, "names")
}

/// The lines of `/proc/thread-self/net/ip{,6}_tables_<what>` (`names`, `matches`, `targets`).
/// Absent when ip_tables/ip6_tables is not loaded: then the list is empty.
fn x_tables_list(family: Family, what: &str) -> Vec<String> {
    let prefix = match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    };
    std::fs::read_to_string(format!("/proc/thread-self/net/{prefix}_tables_{what}"))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// One iptables layer: a variant and a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IptablesBackend {
    variant: Variant,
    family: Family,
}

impl IptablesBackend {
    pub fn new(variant: Variant, family: Family) -> IptablesBackend {
        IptablesBackend { variant, family }
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// `iptables-legacy-save`, `ip6tables-nft-restore`, …: always the explicit binary.
    pub fn program(&self, action: &str) -> String {
        let variant = match self.variant {
            Variant::Legacy => "legacy",
            Variant::Nft => "nft",
        };
        format!("{}-{variant}-{action}", self.command())
    }

    fn command(&self) -> &'static str {
        match self.family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// This layer's `*-save` output (all its tables), or None for a legacy layer without tables,
    /// where running the save command is pointless.
    pub fn save_text(&self) -> Result<Option<String>> {
        if self.variant == Variant::Legacy && legacy_tables(self.family).is_empty() {
            return Ok(None);
        }
        let program = self.program("save");
        let text = exec::save(&program)?;
        // For a native nft table named like an xtables one (`table ip filter` written with nft),
        // iptables-nft-save prints "# Table `filter' contains incompatible base-chains" (or "is
        // incompatible") and then an empty *filter with ACCEPT policies that does not exist:
        // restoring into it would mix xtables rules into the user's native table.
        if text
            .lines()
            .any(|l| l.starts_with("# Table `filter'") && l.contains("incompatible"))
        {
            anyhow::bail!(
                "{program}: the {} filter table was written with nft, not iptables-nft; it belongs to the nftables layer, use --firewall auto or nft",
                self.family.label()
            );
        }
        Ok(Some(text))
    }

    /// The layer's tables as `*-save` shows them.
    pub fn tables(&self) -> Result<Vec<SavedTable>> {
        let Some(text) = self.save_text()? else {
            return Ok(Vec::new());
        };
        save::parse(&text).with_context(|| format!("cannot read {}'s output", self.program("save")))
    }

    /// The layer's filter table as `*-save` shows it; None when it has none.
    pub fn filter_table(&self) -> Result<Option<SavedTable>> {
        Ok(self.tables()?.into_iter().find(|t| t.name == "filter"))
    }

    /// What the tool has in this layer (for `status` and `restore`).
    pub fn state(&self) -> Result<ToolState> {
        Ok(state::tool_state(self.filter_table()?.as_ref()))
    }

    /// Plan against a fresh save and apply; a restore that fails because the table changed in
    /// between (a `-D` naming a rule that is gone) is planned again, a bounded number of times.
    fn change(
        &self,
        mode: Mode,
        planner: impl Fn(&[SavedTable]) -> Result<plan::Plan>,
    ) -> Result<LayerChange> {
        const ATTEMPTS: usize = 3;
        let mut last_err = None;
        for _ in 0..ATTEMPTS {
            let tables = self.tables()?;
            let plan = planner(&tables)?;
            if mode.is_dry_run() || !plan.changed {
                return Ok(self.layer_change(plan));
            }
            match exec::restore(&self.program("restore"), self.family, &plan.script) {
                Ok(()) => return Ok(self.layer_change(plan)),
                Err(e) => {
                    let after = self.tables()?;
                    if after == tables {
                        // Nothing moved under us: the refusal is about the rules themselves.
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one attempt").context(format!(
            "{}: its tables kept changing while the tool changed them; run the command again when the other firewall tool is done",
            self.name()
        )))
    }

    fn layer_change(&self, plan: plan::Plan) -> LayerChange {
        LayerChange {
            layer: self.name(),
            changed: plan.changed,
            script: plan.script,
            chains: plan.chains,
            notes: plan.notes,
            recorded: Vec::new(),
        }
    }
}

impl Backend for IptablesBackend {
    fn name(&self) -> String {
        self.program("").trim_end_matches('-').to_string()
    }

    /// One `*-save`, compared by [`drift::layer_state`].
    fn inspect(&mut self, want: Option<&OpenRequest>, _recorded: &[String]) -> Result<LayerState> {
        let tables = self.tables()?;
        drift::layer_state(&tables, self.family, &self.name(), want, SystemTime::now())
    }

    fn open(&mut self, req: &OpenRequest, _recorded: &[String], mode: Mode) -> Result<LayerChange> {
        let family = self.family;
        self.change(mode, |tables| {
            plan::open_layer(tables, family, req, SystemTime::now())
        })
    }

    fn close(&mut self, _recorded: &[String], mode: Mode) -> Result<LayerChange> {
        self.change(mode, plan::close_layer)
    }
}
