//! grant / revoke / status / refresh / restore as journaled, paired transactions.
//!
//! Every changing command runs through one transaction type (`txn::Txn`): begin (lock, load
//! the state, settle an unfinished intent), journal the new intent, converge, commit — or abort,
//! which converges back to what was granted before. Converging is "bring the system to a desired
//! state" in the safe order (grant opens the firewall before it enables the key, revoke disables
//! the key before it closes the firewall), and both steps are idempotent, which is what makes
//! converging again a correct recovery after a crash at any point.
//!
//! `grant.rs`, `revoke.rs`, `refresh.rs`, `restore.rs` and `status.rs` each hold one command: a
//! pure function from facts to a plan (for status, to a list of drifts), and a short function
//! that reads the facts and runs the plan. `converge.rs` (open, then install) and `close.rs`
//! (disable, then close) hold the two effects. `Ctx` carries what a command has read of the
//! firewall, so that its rehearsal, its journal and its change start from one reading.
use std::cell::RefCell;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::dns::DnsOptions;
use crate::firewall::{self, Backend, FirewallChoice, Mode, OpenRequest, Purpose};
use crate::root::Root;
use crate::state::{Grant, Lock, StoredKey};
use crate::support::{self, TargetRequest};
use crate::{dns, keys, sshd};

mod close;
mod converge;
mod grant;
mod refresh;
mod restore;
mod revoke;
mod status;
mod txn;

/// How long a second run waits for the lock before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// The user the support logs in as.
const USER: &str = "root";

/// `grant`: open the firewall for the support and install its key.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    pub target: TargetRequest,
    /// The SSH ports to open; empty: the ports sshd listens on.
    pub ports: Vec<u16>,
    /// How long the grant lasts; none: until revoked.
    pub duration: Option<Duration>,
    pub firewall: FirewallChoice,
    /// Comment out an unrestricted line carrying the support key rather than refuse.
    pub replace_foreign: bool,
    pub mode: Mode,
}

/// What revoke does with the tool's key lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLines {
    /// Commented out (the default: the operator sees what was there).
    Disable,
    /// Deleted.
    Remove,
}

/// What revoke does with the support's established SSH sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    End,
    Keep,
}

/// `revoke`: disable the key, close the firewall, end the sessions.
#[derive(Debug, Clone)]
pub struct RevokeRequest {
    pub lines: KeyLines,
    pub sessions: Sessions,
    pub mode: Mode,
}

/// `refresh`: re-resolve the host and move the grant to its new addresses.
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    /// Added to what the grant recorded.
    pub dns: DnsOptions,
    pub mode: Mode,
}

pub use grant::grant;
pub use refresh::refresh;
pub use restore::restore;
pub use revoke::revoke;
pub use status::status;

/// The system the commands work on, and what a command has read of its firewall.
pub(crate) struct Ctx {
    pub root: Root,
    firewall: RefCell<Option<firewall::Snapshot>>,
    /// Backends that changed the firewall, kept open until the command ends (see
    /// [`Ctx::keep_until_exit`]).
    spent: RefCell<Vec<Box<dyn Backend>>>,
}

impl Ctx {
    fn new(root: &Root) -> Ctx {
        Ctx {
            root: root.clone(),
            firewall: RefCell::new(None),
            spent: RefCell::new(Vec::new()),
        }
    }

    /// Backends whose work is done, closed only when the command ends. The kernel makes whoever
    /// closes an nf_tables socket after a batch that deleted objects wait out an RCU grace
    /// period (~10 ms: `nft_rcv_nl_event` flushes the deferred destruction), which `nft -f` pays
    /// too; closed at the end, the journal's fsyncs and the sessions' scan run during it.
    fn keep_until_exit(&self, backends: Vec<Box<dyn Backend>>) {
        self.spent.borrow_mut().extend(backends);
    }

    /// The backends of the layers this system has ([`firewall::select`]), from the firewall as
    /// this command first read it while that is still what the system has.
    fn select(
        &self,
        choice: FirewallChoice,
        purpose: Purpose,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Box<dyn Backend>>> {
        let ask = firewall::asks_firewalld(choice, purpose);
        let mut cached = self.firewall.borrow_mut();
        let snap = match cached.take() {
            Some(s) if s.serves(ask) => s,
            _ => firewall::Snapshot::read(ask),
        };
        let snap = cached.insert(snap);
        firewall::select(snap, choice, purpose, warnings)
    }

    /// The audit trail (syslog authpriv). A sandbox run (`--root`) says so, so that its lines
    /// are never mistaken for a change of the real system.
    fn audit(&self, action: &str, details: &str) {
        if self.root.is_system() {
            crate::audit::log(action, details);
        } else {
            let root = self.root.dir().display();
            crate::audit::log(action, &format!("{details} (sandbox --root {root})"));
        }
    }

    fn lock(&self) -> Result<Lock> {
        Lock::acquire(&self.root, LOCK_WAIT)
    }

    fn resolve_target(&self, t: &TargetRequest) -> Result<support::Target> {
        let root = self.root.clone();
        let resolver = t.dns.resolver;
        let lookup = move |host: &str| dns::resolve(&root, host, resolver, dns::DNS_TIMEOUT);
        support::resolve_target(&self.root, t, &keys::parse_key_file, &lookup)
    }

    /// The keys file sshd reads for root, from AuthorizedKeysFile (first support address's
    /// effective settings) and root's home in the passwd file.
    fn keys_file(&self, facts: &sshd::SshdFacts, warnings: &mut Vec<String>) -> Result<PathBuf> {
        let home = keys::root_home(&self.root)?;
        let eff = match facts.per_address.first() {
            Some((_, e)) => e.clone(),
            None => facts.global.clone(),
        };
        let (path, note) = sshd::keys_file(&eff, USER, 0, &home);
        if let Some(n) = note {
            warnings.push(n);
        }
        // Match blocks can give another AuthorizedKeysFile to another support address: the key
        // would then work from some addresses only.
        for (addr, e) in facts.per_address.iter().skip(1) {
            let (p, _) = sshd::keys_file(e, USER, 0, &home);
            if p != path {
                warnings.push(format!(
                    "sshd reads {} for connections from {addr} but {} for the others (a Match \
                     block sets AuthorizedKeysFile); the key is installed only in the latter",
                    p.display(),
                    path.display()
                ));
            }
        }
        Ok(path)
    }

    /// The other files sshd reads for root besides `main`: AuthorizedKeysFile may list several,
    /// and its default lists authorized_keys before authorized_keys2. sshd takes the first line
    /// that passes in any of them, so a support line there lets the support in as surely as one
    /// in the file the tool writes. (The settings outside Match blocks; a Match block that
    /// lists other files for a support address is reported by `grant` as a warning.)
    fn other_keys_files(&self, main: &Path, global: &sshd::Effective) -> Vec<PathBuf> {
        let Ok(home) = keys::root_home(&self.root) else {
            return Vec::new();
        };
        sshd::keys_files(global, USER, 0, &home)
            .into_iter()
            .filter(|p| p != main)
            .collect()
    }

    /// Active lines without `from=` carrying one of `keys`, in the other files sshd reads:
    /// (file, line numbers). A file that cannot be read safely is a warning, not a refusal: the
    /// tool never writes there without `--replace-foreign`.
    fn foreign_elsewhere(
        &self,
        main: &Path,
        keys: &[StoredKey],
        global: &sshd::Effective,
        warnings: &mut Vec<String>,
    ) -> Vec<(PathBuf, Vec<usize>)> {
        let blobs: Vec<&str> = keys.iter().map(|k| k.blob.as_str()).collect();
        let mut out = Vec::new();
        for f in self.other_keys_files(main, global) {
            match keys::read(&self.root, &f) {
                Ok(Some(content)) => {
                    let lines: Vec<usize> = keys::support_lines(&content, &blobs)
                        .into_iter()
                        .filter(|l| l.active && l.unrestricted)
                        .map(|l| l.line)
                        .collect();
                    if !lines.is_empty() {
                        out.push((f, lines));
                    }
                }
                Ok(None) => {}
                Err(e) => warnings.push(format!(
                    "cannot check {} for support lines: {e:#}",
                    f.display()
                )),
            }
        }
        out
    }
}

/// The request `grant` made for `g`, as it would make it now: the same addresses and ports, and
/// the time left to the same instant, to the sub-second, so that iptables' `--datestop` (dated
/// from the clock when the plan is made) comes out as written at the grant.
fn grant_request(g: &Grant) -> OpenRequest {
    let timeout = g.expires_at.map(|t| {
        (std::time::UNIX_EPOCH + Duration::from_secs(t))
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    });
    OpenRequest {
        addresses: g.addresses.clone(),
        ports: g.ports.clone(),
        timeout,
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`): sshd's `from=` lists both forms.
fn is_mapped(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}
