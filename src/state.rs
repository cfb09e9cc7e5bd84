//! What is granted, and the intent journal that makes a crash at any instant recoverable.
//!
//! `<root>/var/lib/ovh-access/state.json` holds the committed grant (or none) and, while a
//! transaction runs, its intent: the state it wants to reach and the one it started from. Every
//! transaction is "converge to a desired state" (both steps are idempotent), so a later run that
//! finds an intent can finish or undo it by converging again. The lock
//! (`<root>/run/ovh-access.lock`, flock) keeps two runs from interleaving.
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::firewall::FirewallChoice;
use crate::root::Root;
use crate::support::{AddressSource, SupportKey};

mod damage;
pub use damage::{pid_running, salvage, set_aside, Salvaged};

pub const STATE_FILE: &str = "/var/lib/ovh-access/state.json";
pub const LOCK_FILE: &str = "/run/ovh-access.lock";
const STATE_VERSION: u32 = 1;

/// A key as remembered in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub algorithm: String,
    pub blob: String,
    pub comment: String,
    pub fingerprint: String,
}

impl From<&SupportKey> for StoredKey {
    fn from(k: &SupportKey) -> Self {
        StoredKey {
            algorithm: k.algorithm.clone(),
            blob: k.blob.clone(),
            comment: k.comment.clone(),
            fingerprint: k.fingerprint.clone(),
        }
    }
}

impl From<&StoredKey> for SupportKey {
    fn from(k: &StoredKey) -> Self {
        SupportKey {
            algorithm: k.algorithm.clone(),
            blob: k.blob.clone(),
            comment: k.comment.clone(),
            fingerprint: k.fingerprint.clone(),
        }
    }
}

/// One grant: everything needed to re-apply it (restore) or to undo it (revoke), without asking
/// DNS or sshd again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub host: String,
    pub profile: Option<String>,
    pub addresses: Vec<IpAddr>,
    /// Where the addresses came from (dns, published, operator...).
    pub address_source: AddressSource,
    pub ports: Vec<u16>,
    /// The ports sshd listened on at grant time. `--port` may open fewer on purpose; only a port
    /// sshd took up since then is drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sshd_ports: Vec<u16>,
    pub keys: Vec<StoredKey>,
    /// The keys file, as an absolute path on the real system (resolved through `--root`).
    pub keys_file: PathBuf,
    /// The firewall layers programmed (`nftables`, `iptables-legacy`, ...).
    pub layers: Vec<String>,
    /// The `--firewall` choice, so that restore programs the same layers.
    pub firewall: FirewallChoice,
    pub granted_at: u64,
    pub expires_at: Option<u64>,
    /// How DNS was asked at grant time (`--resolver`, `--allow-private`, `--trust-dns`), so that
    /// `refresh` run by the timer, with no options, and `status` ask the same way.
    #[serde(default)]
    pub resolver: Option<SocketAddr>,
    #[serde(default)]
    pub allow_private: bool,
    #[serde(default)]
    pub trust_dns: bool,
    /// What each layer holds of the tool's, for a backend that cannot tag its objects
    /// ([`crate::firewall::LayerChange::recorded`]), by layer name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recorded: BTreeMap<String, Vec<String>>,
}

impl Grant {
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// What the layer `layer` recorded at the grant (empty for a layer that tags its objects).
    pub fn recorded_for(&self, layer: &str) -> &[String] {
        self.recorded.get(layer).map_or(&[], Vec::as_slice)
    }
}

/// The transaction an intent belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Grant,
    Revoke,
    Refresh,
    Restore,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Grant => "grant",
            Op::Revoke => "revoke",
            Op::Refresh => "refresh",
            Op::Restore => "restore",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub op: Op,
    /// The state the transaction wants to reach (None: nothing granted).
    pub target: Option<Grant>,
    /// The state it started from.
    pub previous: Option<Grant>,
    pub started_at: u64,
    pub pid: u32,
    /// A revoke's `--keep-sessions`: finishing an interrupted revoke ends the support's live
    /// sessions unless it was asked not to.
    #[serde(default)]
    pub keep_sessions: bool,
    /// A revoke's `--remove`: finishing it deletes the lines rather than commenting them out.
    #[serde(default)]
    pub remove: bool,
}

impl Intent {
    /// A transaction of this process, starting now (a revoke sets its own options after).
    pub fn begin(op: Op, target: Option<Grant>, previous: Option<Grant>) -> Intent {
        Intent {
            op,
            target,
            previous,
            started_at: now(),
            pid: std::process::id(),
            keep_sessions: false,
            remove: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub granted: Option<Grant>,
    pub intent: Option<Intent>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The state file as read: its state, or its bytes when they are not a state (truncated by a
/// full disk, edited by hand). Reading it fails only when it cannot be read at all.
pub enum Loaded {
    Valid(Box<State>),
    Corrupt { bytes: Vec<u8>, reason: String },
}

impl State {
    /// Read the state file; a missing file is "nothing granted".
    pub fn load(root: &Root) -> Result<State> {
        let path = root.path(STATE_FILE);
        match Self::read(root)? {
            Loaded::Valid(st) => Ok(*st),
            Loaded::Corrupt { reason, .. } => bail!(
                "the state file {} is corrupt ({reason}); run `ovh-access revoke`, which keeps it \
                 under another name and closes everything the tool opened",
                path.display()
            ),
        }
    }

    /// Read the state file without judging it: a corrupt one is returned as bytes.
    pub fn read(root: &Root) -> Result<Loaded> {
        let path = root.path(STATE_FILE);
        let text = match crate::bounded::read(&path, crate::bounded::CONFIG) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Loaded::Valid(Box::default()))
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the state file {}", path.display()))
            }
        };
        let st: State = match serde_json::from_slice(&text) {
            Ok(st) => st,
            Err(e) => {
                return Ok(Loaded::Corrupt {
                    bytes: text,
                    reason: e.to_string(),
                })
            }
        };
        if st.version > STATE_VERSION {
            bail!(
                "the state file {} was written by a newer ovh-access (format {}); use that version",
                path.display(),
                st.version
            );
        }
        Ok(Loaded::Valid(Box::new(st)))
    }

    /// Write the state file atomically: temp file, fsync, rename, fsync the directory.
    pub fn save(&self, root: &Root) -> Result<()> {
        let path = root.path(STATE_FILE);
        let dir = path.parent().expect("state file has a parent");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        let mut st = self.clone();
        st.version = STATE_VERSION;
        let bytes = serde_json::to_vec_pretty(&st).expect("state serialises");
        let tmp = dir.join(format!(".state.json.{}.tmp", std::process::id()));
        let res = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e)
                .with_context(|| format!("cannot write the state file {}", path.display()));
        }
        Ok(())
    }
}

/// The exclusive lock held for the whole of every changing command.
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

impl Lock {
    /// Wait up to `timeout` for the lock, then fail naming the holder's pid.
    pub fn acquire(root: &Root, timeout: Duration) -> Result<Lock> {
        let path = root.path(LOCK_FILE);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {} for the lock file", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        let start = Instant::now();
        // Bounded: at most timeout / 50 ms tries.
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {
                    if start.elapsed() >= timeout {
                        let holder = lock_holder(&mut file);
                        let holder = holder.trim();
                        bail!(
                            "another ovh-access is running (pid {}); wait for it to finish, \
                             or check that process",
                            if holder.is_empty() { "unknown" } else { holder }
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("cannot lock {}", path.display()))
                }
            }
        }
        // What a run killed mid-write left behind is ours to remove, now that no other run can
        // be writing.
        if let Some(dir) = root.path(STATE_FILE).parent() {
            damage::sweep_stale(dir);
        }
        // Record our pid for the message a waiting run prints.
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        // Not synced: the pid only names the holder to a waiting run, and the lock file lives in
        // /run, which a reboot empties anyway.
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Lock { _file: file, path })
    }

    /// The pid of the run holding the lock now, without waiting or creating anything (for the
    /// read-only `status`, which must tell a transaction in progress from an interrupted one).
    pub fn holder(root: &Root) -> Option<String> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(root.path(LOCK_FILE))
            .ok()?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => None,
            Err(_) => {
                let pid = lock_holder(&mut file);
                let pid = pid.trim();
                Some(if pid.is_empty() { "unknown" } else { pid }.to_string())
            }
        }
    }
}

/// The pid the lock file names: a few bytes, whatever else was written there.
fn lock_holder(file: &mut File) -> String {
    let bytes = crate::bounded::read_from(&mut *file, 64).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            host: "cache-ng.ovh.net".into(),
            profile: Some("eu".into()),
            addresses: vec!["198.51.100.10".parse().unwrap()],
            address_source: AddressSource::Dns,
            ports: vec![22, 2222],
            sshd_ports: vec![],
            keys: vec![],
            keys_file: "/root/.ssh/authorized_keys2".into(),
            layers: vec!["nftables".into()],
            firewall: FirewallChoice::Auto,
            granted_at: 1,
            expires_at: Some(100),
            resolver: None,
            allow_private: false,
            trust_dns: false,
            recorded: BTreeMap::new(),
        }
    }

    #[test]
    fn state_round_trips_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert_eq!(State::load(&root).unwrap(), State::default());
        let st = State {
            version: 1,
            granted: Some(grant()),
            intent: None,
        };
        st.save(&root).unwrap();
        assert_eq!(State::load(&root).unwrap(), st);
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(root.path("/var/lib/ovh-access"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn corrupt_state_is_an_error_with_a_fix() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        fs::create_dir_all(root.path("/var/lib/ovh-access")).unwrap();
        fs::write(root.path(STATE_FILE), b"{nope").unwrap();
        let e = format!("{:#}", State::load(&root).unwrap_err());
        assert!(e.contains("corrupt") && e.contains("revoke"), "{e}");
    }

    #[test]
    fn expiry() {
        assert!(grant().expired(100));
        assert!(!grant().expired(99));
    }

    #[test]
    fn second_lock_waits_then_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let _held = Lock::acquire(&root, Duration::from_secs(1)).unwrap();
        // flock locks belong to the open file description: a second open in the same process
        // conflicts like another process would.
        let e = Lock::acquire(&root, Duration::from_millis(200))
            .err()
            .unwrap();
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert_eq!(Lock::holder(&root), Some(std::process::id().to_string()));
        drop(_held);
        assert_eq!(Lock::holder(&root), None);
    }

    #[test]
    fn a_state_file_without_the_dns_options_still_loads() {
        // Written before the grant recorded how DNS was asked, and before intents had
        // keep_sessions and remove: all default.
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let mut v = serde_json::to_value(State {
            version: 1,
            granted: Some(grant()),
            intent: Some(Intent {
                op: Op::Revoke,
                target: None,
                previous: Some(grant()),
                started_at: 1,
                pid: 2,
                keep_sessions: false,
                remove: false,
            }),
        })
        .unwrap();
        for ptr in ["/granted", "/intent/previous"] {
            let g = v.pointer_mut(ptr).unwrap().as_object_mut().unwrap();
            for k in ["resolver", "allow_private", "trust_dns"] {
                assert!(g.remove(k).is_some());
            }
        }
        for k in ["keep_sessions", "remove"] {
            let intent = v["intent"].as_object_mut().unwrap();
            assert!(intent.remove(k).is_some());
        }
        fs::create_dir_all(root.path("/var/lib/ovh-access")).unwrap();
        fs::write(root.path(STATE_FILE), v.to_string()).unwrap();
        let st = State::load(&root).unwrap();
        assert_eq!(st.granted, Some(grant()));
        assert!(!st.intent.unwrap().keep_sessions);
    }

    #[test]
    fn a_state_file_of_the_previous_release_loads_typed() {
        // Written with plain strings for the source, the firewall choice and the intent's op.
        let text = r#"{"version":1,"granted":{"host":"h","profile":null,
            "addresses":["192.0.2.1"],"address_source":"dns_within_published","ports":[22],
            "keys":[],"keys_file":"/root/.ssh/authorized_keys2","layers":["nftables"],
            "firewall":"iptables","granted_at":1,"expires_at":null},
            "intent":{"op":"refresh","target":null,"previous":null,"started_at":1,"pid":2}}"#;
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        fs::create_dir_all(root.path("/var/lib/ovh-access")).unwrap();
        fs::write(root.path(STATE_FILE), text).unwrap();
        let st = State::load(&root).unwrap();
        let g = st.granted.unwrap();
        assert_eq!(g.address_source, AddressSource::DnsWithinPublished);
        assert_eq!(g.firewall, FirewallChoice::Iptables);
        assert!(g.recorded.is_empty());
        assert_eq!(st.intent.unwrap().op, Op::Refresh);
        // A hand-edited firewall choice programs every layer there is.
        let edited = text.replace("\"iptables\"", "\"bogus\"");
        fs::write(root.path(STATE_FILE), edited).unwrap();
        let g = State::load(&root).unwrap().granted.unwrap();
        assert_eq!(g.firewall, FirewallChoice::Auto);
        // What a layer recorded survives a round trip; nothing recorded writes nothing.
        let mut g = grant();
        let plain = serde_json::to_string(&g).unwrap();
        assert!(!plain.contains("recorded"), "{plain}");
        g.recorded
            .insert("firewalld".into(), vec!["rule family=ipv4".into()]);
        let back: Grant = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(
            back.recorded_for("firewalld"),
            ["rule family=ipv4".to_string()]
        );
    }
}
