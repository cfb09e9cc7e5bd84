//! One interface over the firewall backends. A backend inspects its layer, plans the change as a
//! pure function of what it found, and applies it atomically; `access` drives them in the safe
//! order (open before the key is enabled, close after it is disabled).
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

/// The tag carried by everything the tool creates in a firewall: nft rule userdata/comments,
/// iptables `-m comment`, so that removal finds its own objects by tag, never by position.
pub const TAG: &str = "ovh-access";

/// What to open: exactly these source addresses, to these TCP ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<u16>,
    /// When set, the kernel itself closes the door after this long (nft set element timeout,
    /// iptables `-m time --datestop`).
    pub timeout: Option<Duration>,
}

/// What one backend did (or, in a dry run, would do) in its layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LayerChange {
    /// The layer: `nftables`, `iptables-legacy`, `ip6tables-nft`, ...
    pub layer: String,
    /// False when the layer already was in the requested state.
    pub changed: bool,
    /// The change in the layer's own syntax (`nft -f` input, `iptables-restore` input), shown by
    /// `--dry-run`.
    pub script: String,
    /// The base chains the tool hooked into (`inet filter input`, ...).
    pub chains: Vec<String>,
    /// Things worth telling the operator (nothing to open, objects found missing, ...).
    pub notes: Vec<String>,
}

/// A firewall layer the tool can program.
pub trait Backend {
    /// Short name of the layer, as in [`LayerChange::layer`].
    fn name(&self) -> String;
    /// Open the ports for the addresses (idempotent: a second call updates in place).
    fn open(&mut self, req: &OpenRequest, dry_run: bool) -> Result<LayerChange>;
    /// Remove everything the tool added to this layer (idempotent: nothing found, nothing changed).
    fn close(&mut self, dry_run: bool) -> Result<LayerChange>;
}

pub mod detect;
pub mod iptables;
pub mod nft;
