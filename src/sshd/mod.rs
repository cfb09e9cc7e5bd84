//! What sshd will do with the support connection: every port it listens on, and every setting
//! that decides whether the support key works — for user root, from each support address.
//!
//! Facts come from sshd_config (read through `--root`, with OpenSSH's own rules: `config`,
//! `eval`, `matching`), from systemd socket units (`socket`), and, on the real system only,
//! from the installed sshd (`sshd -T`, `test_mode`) and the sockets it really holds (`live`).
//! [`reconcile`] turns the port evidence into the ports to open and the warnings, as a pure
//! function.
//!
//! Use: [`probe`] once per command; `ports` go into the firewall request, `warnings` into the
//! grant/status/doctor output; for each `(addr, effective)` of `per_address`, [`blockers`] says
//! why sshd would refuse the support key and [`keys_file`] where the key must go (a path as on
//! the real system: join it with `Root::path`).
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::root::Root;

pub mod algorithms;
pub mod config;
pub mod eval;
pub mod glob;
pub mod keywords;
pub mod lex;
pub mod live;
pub mod matching;
mod release;
pub mod socket;
pub mod test_mode;
pub mod verdict;

pub use config::Config;
pub use matching::Connection;
pub use release::{parse_version, version, version_in_binary};
pub use verdict::{account_blockers, blocker_details, blockers, read_account, Account, Blocker};

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Absolute, as on the real system (`/etc/ssh/sshd_config.d/50-cloud-init.conf`).
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A value and the line that set it; `source: None` = OpenSSH's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Option<Source>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermitRootLogin {
    Yes,
    /// Also spelled `without-password` (the older name of the same setting).
    ProhibitPassword,
    ForcedCommandsOnly,
    No,
}

impl PermitRootLogin {
    /// servconf.c multistate_permitrootlogin (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "yes" => Some(Self::Yes),
            "prohibit-password" | "without-password" => Some(Self::ProhibitPassword),
            "forced-commands-only" => Some(Self::ForcedCommandsOnly),
            "no" => Some(Self::No),
            _ => None,
        }
    }

    /// Whether root may log in with a public key that has no forced command.
    pub fn allows_key(self) -> bool {
        matches!(self, Self::Yes | Self::ProhibitPassword)
    }
}

/// The settings in force for one connection (user root, from one address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub permit_root_login: Setting<PermitRootLogin>,
    pub pubkey_authentication: Setting<bool>,
    /// The signature algorithms accepted for user keys, assembled as sshd does: the support
    /// keys are RSA, and a hardened list without rsa-sha2-* refuses them.
    pub pubkey_accepted_algorithms: Setting<Vec<String>>,
    /// Raw tokens (`%h/.ssh/authorized_keys`, `.ssh/authorized_keys2`, `none`).
    pub authorized_keys_files: Setting<Vec<String>>,
    pub authorized_keys_command: Setting<Option<String>>,
    pub allow_users: Setting<Vec<String>>,
    pub deny_users: Setting<Vec<String>>,
    pub allow_groups: Setting<Vec<String>>,
    pub deny_groups: Setting<Vec<String>>,
    /// Empty = `any`.
    pub authentication_methods: Setting<Vec<String>>,
    pub strict_modes: Setting<bool>,
    pub use_pam: Setting<bool>,
}

/// One socket sshd listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listen {
    /// `None` = every address of every family.
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub source: Option<Source>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshdFacts {
    /// Sorted, deduplicated: configured ∪ socket units ∪ live listeners ∪ `sshd -T`.
    pub ports: Vec<u16>,
    /// The sockets sshd_config asks for.
    pub listen: Vec<Listen>,
    /// One per support address (Match evaluated for it).
    pub per_address: Vec<(IpAddr, Effective)>,
    /// The installed sshd's release ([`version`]), None when absent.
    pub version: Option<(u32, u32)>,
    /// The settings outside any Match block (which keys files sshd reads for everyone).
    #[serde(skip)]
    pub global: Effective,
    /// root's groups, as Match Group and AllowGroups/DenyGroups see them.
    #[serde(skip)]
    pub root_groups: Vec<String>,
    /// Mismatches (config vs live vs socket unit), no port → 22, unknown keywords, ...
    pub warnings: Vec<String>,
}

/// The port evidence [`reconcile`] weighs. `None` = not consulted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortEvidence {
    /// From sshd_config (22 when it names none).
    pub configured: Vec<u16>,
    /// Enabled socket units and their ListenStream ports.
    pub sockets: Vec<(String, Vec<u16>)>,
    /// Ports sshd processes hold in LISTEN state.
    pub live: Option<Vec<u16>>,
    /// Ports systemd itself holds in LISTEN state (socket activation before the first
    /// connection); only compared with the socket units' ports.
    pub systemd_live: Option<Vec<u16>>,
    /// Ports of `sshd -T`'s listenaddress lines.
    pub sshd_t: Option<Vec<u16>>,
}

fn sorted(mut v: Vec<u16>) -> Vec<u16> {
    v.sort_unstable();
    v.dedup();
    v
}

fn minus(a: &[u16], b: &[u16]) -> Vec<u16> {
    a.iter().copied().filter(|p| !b.contains(p)).collect()
}

/// The ports to open (the union of every source: opening a port sshd does not use costs
/// nothing, missing one locks the support out) and a warning for each disagreement.
pub fn reconcile(ev: &PortEvidence) -> (Vec<u16>, Vec<String>) {
    let mut warnings = Vec::new();
    let configured = sorted(ev.configured.clone());
    let mut all = configured.clone();
    for (unit, ports) in &ev.sockets {
        let ports = sorted(ports.clone());
        if ports != configured {
            warnings.push(format!(
                "{unit} (systemd socket activation) listens on port(s) {} while sshd_config says \
                 {}: systemd's ListenStream= decides; after editing sshd_config run `systemctl \
                 daemon-reload && systemctl restart {unit}`",
                crate::text::join(&ports),
                crate::text::join(&configured)
            ));
        }
        all.extend(ports);
    }
    if let (Some(sd), Some(live)) = (&ev.systemd_live, &ev.live) {
        for (unit, ports) in &ev.sockets {
            let idle = minus(
                &sorted(ports.clone()),
                &sorted([sd.clone(), live.clone()].concat()),
            );
            if !idle.is_empty() {
                warnings.push(format!(
                    "{unit} names port(s) {} but neither systemd nor sshd listens there: the unit \
                     changed without a reload; run `systemctl daemon-reload && systemctl restart \
                     {unit}`",
                    crate::text::join(&idle)
                ));
            }
        }
    }
    if let Some(t) = &ev.sshd_t {
        let t = sorted(t.clone());
        if t != configured {
            warnings.push(format!(
                "sshd -T reports listening port(s) {} but sshd_config was read as {}; both are \
                 opened — check the configuration with `sshd -T`",
                crate::text::join(&t),
                crate::text::join(&configured)
            ));
        }
        all.extend(t);
    }
    if let Some(live) = &ev.live {
        let live = sorted(live.clone());
        let expected = sorted(all.clone());
        if live.is_empty() {
            if ev.sockets.is_empty() {
                warnings.push(
                    "no sshd process listens on a TCP port: is sshd running? (`systemctl status \
                     ssh`)"
                        .into(),
                );
            }
        } else {
            let extra = minus(&live, &expected);
            if !extra.is_empty() {
                warnings.push(format!(
                    "sshd listens on port(s) {} that sshd_config does not name: the config \
                     changed but sshd was not restarted? (`systemctl restart ssh`)",
                    crate::text::join(&extra)
                ));
            }
            let missing = minus(&configured, &live);
            if !missing.is_empty() && ev.sockets.is_empty() {
                warnings.push(format!(
                    "sshd_config names port(s) {} but sshd does not listen there: restart sshd \
                     (`systemctl restart ssh`) to apply the config",
                    crate::text::join(&missing)
                ));
            }
        }
        all.extend(live);
    }
    (sorted(all), warnings)
}

/// Root's groups and home, read through the root (`/etc/passwd`, `/etc/group`); OpenSSH
/// evaluates `Match Group` with the groups getgrouplist() returns.
pub fn user_info(root: &Root, user: &str) -> (u32, u32, PathBuf, Vec<String>) {
    let (uid, gid, home) = passwd_entry(root, |f| f[0] == user)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?, PathBuf::from(&f[5]))))
        .unwrap_or((0, 0, PathBuf::from("/root")));
    let group = crate::bounded::read_to_string(root.path("/etc/group"), crate::bounded::CONFIG)
        .unwrap_or_default();
    let mut groups = Vec::new();
    let mut primary = None;
    for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
        if f.len() < 4 {
            continue;
        }
        if f[2].parse::<u32>().ok() == Some(gid) && primary.is_none() {
            primary = Some(f[0].to_string());
        } else if f[3].split(',').any(|m| m == user) {
            groups.push(f[0].to_string());
        }
    }
    let primary = primary.unwrap_or_else(|| {
        if gid == 0 {
            "root".into()
        } else {
            gid.to_string()
        }
    });
    groups.insert(0, primary);
    (uid, gid, home, groups)
}

/// The first entry of `<root>/etc/passwd` (7 fields or more) that `pick` accepts; `None` when
/// there is none or the file cannot be read.
pub(crate) fn passwd_entry(root: &Root, pick: impl Fn(&[&str]) -> bool) -> Option<Vec<String>> {
    let passwd =
        crate::bounded::read_to_string(root.path("/etc/passwd"), crate::bounded::CONFIG).ok()?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && pick(f))
        .map(|f| f.into_iter().map(String::from).collect())
}

/// sshd's UseDNS: whether `Match Host` and `user@host` patterns see the client's reverse-DNS
/// name or its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseDns {
    No,
    Yes,
}

/// The connection sshd evaluates Match for: user root from `addr` to `laddr`:`lport`.
/// `Match Host` sees the reverse-DNS name only with `UseDNS yes`, else the address
/// (auth.c `auth_get_canonical_hostname()`).
pub fn support_connection(
    groups: &[String],
    addr: IpAddr,
    host: &str,
    use_dns: UseDns,
    laddr: Option<IpAddr>,
    lport: Option<u16>,
) -> Connection {
    Connection {
        user: "root".into(),
        groups: groups.to_vec(),
        host: Some(match use_dns {
            UseDns::Yes => host.to_string(),
            UseDns::No => addr.to_string(),
        }),
        addr: Some(addr),
        laddr,
        lport,
    }
}

/// The server address a connection from `addr` arrives at, as far as the config tells: the
/// first specific ListenAddress of the same family, else the unspecified address of that
/// family (sshd listens on the wildcard, and which local address the support reaches is not
/// known here). `sshd -T -C` insists on an laddr when a `Match LocalAddress` exists.
pub fn local_address_for(listen: &[Listen], addr: IpAddr) -> IpAddr {
    listen
        .iter()
        .filter_map(|l| l.addr)
        .find(|a| a.is_ipv4() == addr.is_ipv4() && !a.is_unspecified())
        .unwrap_or(if addr.is_ipv4() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        })
}

/// Everything sshd decides for the support connection. Reads `<root>/etc/ssh/sshd_config` and
/// the socket units under the root; the live listeners and `sshd -T` only when `root` is the
/// real system.
pub fn probe(root: &Root, support_addrs: &[IpAddr], host: &str) -> Result<SshdFacts> {
    let cfg = Config::load(root)?;
    let mut warnings = cfg.warnings.clone();
    let release = version();
    if let Some(r) = release {
        warnings.extend(refused_keywords(&cfg, r));
    }
    let global = eval::global(&cfg)?;
    let (listen, configured, w) = eval::listen(&global);
    warnings.extend(w);
    let mut ev = PortEvidence {
        configured: configured.clone(),
        ..Default::default()
    };
    warnings.extend(listener_evidence(root, &mut ev));

    let use_dns = match global.use_dns {
        Some((true, _)) => UseDns::Yes,
        _ => UseDns::No,
    };
    warnings.extend(approximations(&cfg, use_dns, host));
    let (_, _, _, groups) = user_info(root, "root");
    let judge = Judge {
        cfg: &cfg,
        global: &global,
        listen: &listen,
        groups: &groups,
        host,
        use_dns,
        release,
    };
    let first_port = configured.first().copied();
    let per_address = support_addrs
        .iter()
        .map(|addr| Ok((*addr, judge.effective(*addr, first_port)?)))
        .collect::<Result<Vec<_>>>()?;
    if root.is_system() {
        let (sshd_t, w) = cross_check(&judge, &per_address, first_port);
        ev.sshd_t = sshd_t;
        warnings.extend(w);
    }
    let (ports, w) = reconcile(&ev);
    warnings.extend(w);
    warnings.extend(local_port_differences(
        &judge,
        &per_address,
        &ports,
        first_port,
    )?);
    Ok(SshdFacts {
        ports,
        listen,
        per_address,
        version: release,
        global: eval::effective(&global),
        root_groups: groups,
        warnings,
    })
}

/// The enabled socket units' ports into `ev`, and on the real system the ports sshd (and
/// systemd, for socket activation) hold; the warnings met on the way.
fn listener_evidence(root: &Root, ev: &mut PortEvidence) -> Vec<String> {
    let mut warnings = Vec::new();
    for unit in socket::UNITS {
        if let Some(u) = socket::read_unit(root, unit) {
            warnings.extend(u.warnings.iter().cloned());
            if u.enabled {
                ev.sockets
                    .push((u.unit.clone(), u.listen.iter().map(|l| l.port).collect()));
            }
        }
    }
    if root.is_system() {
        match live::sshd_listeners(&root.path("/proc")) {
            Ok(s) => ev.live = Some(s.iter().map(|s| s.port).collect()),
            Err(e) => warnings.push(format!("{e:#}")),
        }
        if !ev.sockets.is_empty() {
            if let Ok(s) = live::listeners_of(&root.path("/proc"), "systemd") {
                ev.systemd_live = Some(s.iter().map(|s| s.port).collect());
            }
        }
    }
    warnings
}

/// What the evaluation can only guess: the name reverse DNS gives the support address, and
/// which server address it connects to.
fn approximations(cfg: &Config, use_dns: UseDns, host: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    if use_dns == UseDns::Yes {
        warnings.push(format!(
            "UseDNS yes: Match Host is evaluated with {host}, but sshd will use the reverse-DNS \
             name of the support address"
        ));
    }
    for s in cfg.match_sources(|c| matches!(c, matching::Criterion::LocalAddress(_))) {
        warnings.push(format!(
            "{s}: Match LocalAddress depends on which server address the support connects to; \
             it was evaluated for the first ListenAddress of each family (or none)"
        ));
    }
    warnings
}

/// The configuration and the facts about the support connection that Match is evaluated with.
struct Judge<'a> {
    cfg: &'a Config,
    global: &'a eval::Options,
    listen: &'a [Listen],
    groups: &'a [String],
    host: &'a str,
    use_dns: UseDns,
    release: Option<(u32, u32)>,
}

impl Judge<'_> {
    fn connection(&self, addr: IpAddr, lport: Option<u16>) -> Connection {
        let laddr = local_address_for(self.listen, addr);
        support_connection(
            self.groups,
            addr,
            self.host,
            self.use_dns,
            Some(laddr),
            lport,
        )
    }

    fn effective(&self, addr: IpAddr, lport: Option<u16>) -> Result<Effective> {
        let conn = self.connection(addr, lport);
        let options = eval::for_connection(self.cfg, self.global, &conn)?;
        Ok(eval::effective_for(&options, self.release))
    }
}

/// `sshd -T` for each support address (the real system only): the ports it listens on (`None`
/// when it could not run), and a warning for each setting it sees otherwise.
fn cross_check(
    judge: &Judge,
    per_address: &[(IpAddr, Effective)],
    first_port: Option<u16>,
) -> (Option<Vec<u16>>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut t_ports = Vec::new();
    for (addr, ours) in per_address {
        let conn = judge.connection(*addr, first_port);
        match test_mode::run(Path::new(test_mode::SSHD), &conn, &[]) {
            Ok(d) => {
                t_ports.extend(d.listen.iter().map(|(_, p)| *p));
                for m in test_mode::disagreements(ours, &d) {
                    warnings.push(format!("for {addr}: {m}; sshd -T is right"));
                }
            }
            Err(e) => {
                warnings.push(format!("{e:#}; the sshd -T cross-check was skipped"));
                return (None, warnings);
            }
        }
    }
    ((!t_ports.is_empty()).then_some(t_ports), warnings)
}

/// With a `Match LocalPort`, the settings of every other port to open compared with those of
/// the first: a warning for each port where they differ.
fn local_port_differences(
    judge: &Judge,
    per_address: &[(IpAddr, Effective)],
    ports: &[u16],
    first_port: Option<u16>,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let by_port = |c: &matching::Criterion| matches!(c, matching::Criterion::LocalPort(_));
    if judge.cfg.match_sources(by_port).is_empty() {
        return Ok(warnings);
    }
    for (addr, eff) in per_address {
        for p in ports.iter().filter(|p| Some(**p) != first_port) {
            let diff = differences(eff, &judge.effective(*addr, Some(*p))?);
            if !diff.is_empty() {
                warnings.push(format!(
                    "for {addr}, Match LocalPort makes port {p} differ from port {}: {}",
                    first_port.unwrap_or(22),
                    diff.join("; ")
                ));
            }
        }
    }
    Ok(warnings)
}

/// Keywords of sshd_config that the installed release does not know: it refuses the whole file
/// ("Bad configuration option"), so a restart would leave the server without sshd.
fn refused_keywords(cfg: &Config, release: (u32, u32)) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(main) = &cfg.main {
        main.walk(&mut |file, item| {
            let kw = item.keyword.to_ascii_lowercase();
            if let Some((since, old)) = keywords::refused_by(&kw, release) {
                let instead = old.map_or(String::new(), |o| format!("; this release calls it {o}"));
                out.push(format!(
                    "{} line {}: {} is new in OpenSSH {}.{} and this sshd ({}.{}) refuses the \
                     file{instead}",
                    file.path.display(),
                    item.line,
                    item.keyword,
                    since.0,
                    since.1,
                    release.0,
                    release.1
                ));
            }
        });
    }
    out
}

/// Settings whose values differ between two evaluations, described for a warning.
pub fn differences(a: &Effective, b: &Effective) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! cmp {
        ($f:ident, $name:literal) => {
            if a.$f.value != b.$f.value {
                out.push(format!(
                    "{} {:?} instead of {:?}",
                    $name, b.$f.value, a.$f.value
                ));
            }
        };
    }
    cmp!(permit_root_login, "PermitRootLogin");
    cmp!(pubkey_authentication, "PubkeyAuthentication");
    cmp!(pubkey_accepted_algorithms, "PubkeyAcceptedAlgorithms");
    cmp!(authorized_keys_files, "AuthorizedKeysFile");
    cmp!(authorized_keys_command, "AuthorizedKeysCommand");
    cmp!(allow_users, "AllowUsers");
    cmp!(deny_users, "DenyUsers");
    cmp!(allow_groups, "AllowGroups");
    cmp!(deny_groups, "DenyGroups");
    cmp!(authentication_methods, "AuthenticationMethods");
    out
}

/// auth.c `expand_authorized_keys()`: %h, %u, %U and %% expanded; a relative result is taken
/// under the home directory.
pub fn expand_keys_path(token: &str, user: &str, uid: u32, home: &Path) -> PathBuf {
    let mut s = String::new();
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            s.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => s.push_str(&home.to_string_lossy()),
            Some('u') => s.push_str(user),
            Some('U') => s.push_str(&uid.to_string()),
            Some('%') => s.push('%'),
            Some(o) => {
                s.push('%');
                s.push(o);
            }
            None => s.push('%'),
        }
    }
    // tilde_expand_filename() at parse time turns `~/` into the sshd user's (root's) home.
    if let Some(rest) = s.strip_prefix("~/") {
        return home.join(rest);
    }
    let p = PathBuf::from(&s);
    if p.is_absolute() {
        p
    } else {
        home.join(p)
    }
}

/// Every keys file sshd reads for `user`, in the order it reads them (auth2-pubkey.c tries each
/// AuthorizedKeysFile entry in turn and skips those that are "none").
pub fn keys_files(effective: &Effective, user: &str, uid: u32, home: &Path) -> Vec<PathBuf> {
    effective
        .authorized_keys_files
        .value
        .iter()
        .filter(|t| !t.eq_ignore_ascii_case("none"))
        .map(|t| expand_keys_path(t, user, uid, home))
        .collect()
}

/// The keys file sshd reads for `user` with `home`, following AuthorizedKeysFile: the one named
/// authorized_keys2 if listed, else the first listed file, with a note saying so.
pub fn keys_file(
    effective: &Effective,
    user: &str,
    uid: u32,
    home: &Path,
) -> (PathBuf, Option<String>) {
    let setting = &effective.authorized_keys_files;
    let listed = keys_files(effective, user, uid, home);
    let origin = match &setting.source {
        Some(s) => format!("AuthorizedKeysFile ({s})"),
        None => "AuthorizedKeysFile (default)".to_string(),
    };
    if let Some(p) = listed
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "authorized_keys2"))
    {
        return (p.clone(), None);
    }
    match listed.first() {
        Some(p) => (
            p.clone(),
            Some(format!(
                "{origin} does not list authorized_keys2: the key goes to {}, the first file \
                 sshd reads",
                p.display()
            )),
        ),
        None => (
            home.join(".ssh/authorized_keys2"),
            Some(format!(
                "{origin} is none: sshd reads no keys file, so the support key cannot work \
                 unless AuthorizedKeysFile lists one"
            )),
        ),
    }
}

/// sshd's settings outside any Match block, for when no support address is known (a revoke with
/// nothing recorded).
pub fn global_effective(root: &Root) -> Result<Effective> {
    let cfg = Config::load(root)?;
    Ok(eval::effective(&eval::global(&cfg)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eff_with_files(files: &[&str]) -> Effective {
        let mut e = eval::effective(&eval::Options::default());
        e.authorized_keys_files = Setting {
            value: files.iter().map(|s| s.to_string()).collect(),
            source: Some(Source {
                file: "/etc/ssh/sshd_config".into(),
                line: 3,
            }),
        };
        e
    }

    #[test]
    fn keys_file_prefers_authorized_keys2() {
        let home = Path::new("/root");
        let d = eval::effective(&eval::Options::default());
        assert_eq!(
            keys_file(&d, "root", 0, home),
            (PathBuf::from("/root/.ssh/authorized_keys2"), None)
        );
        let (p, note) = keys_file(&eff_with_files(&[".ssh/authorized_keys"]), "root", 0, home);
        assert_eq!(p, Path::new("/root/.ssh/authorized_keys"));
        let note = note.unwrap();
        assert!(
            note.contains("/etc/ssh/sshd_config:3") && note.contains("authorized_keys2"),
            "{note}"
        );
        let (p, _) = keys_file(
            &eff_with_files(&["/etc/ssh/keys/%u", "%h/.ssh/authorized_keys2"]),
            "root",
            0,
            home,
        );
        assert_eq!(p, Path::new("/root/.ssh/authorized_keys2"));
        let (p, n) = keys_file(&eff_with_files(&["/etc/ssh/keys/%u.%U%%"]), "root", 0, home);
        assert_eq!(p, Path::new("/etc/ssh/keys/root.0%"));
        assert!(n.is_some());
        let (_, n) = keys_file(&eff_with_files(&["none"]), "root", 0, home);
        assert!(n.unwrap().contains("none"));
    }

    #[test]
    fn reconcile_ports_and_warnings() {
        let (p, w) = reconcile(&PortEvidence {
            configured: vec![22],
            ..Default::default()
        });
        assert_eq!((p, w.len()), (vec![22], 0));
        // Config changed to 2222, sshd still on 22.
        let (p, w) = reconcile(&PortEvidence {
            configured: vec![2222],
            live: Some(vec![22]),
            ..Default::default()
        });
        assert_eq!(p, [22, 2222]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|m| m.contains("not restarted")));
        // Socket activation overriding the config; sshd not running yet is normal then.
        let (p, w) = reconcile(&PortEvidence {
            configured: vec![22],
            sockets: vec![("ssh.socket".into(), vec![2200, 2200])],
            live: Some(vec![]),
            ..Default::default()
        });
        assert_eq!(p, [22, 2200]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("ssh.socket"));
        let (_, w) = reconcile(&PortEvidence {
            configured: vec![22],
            live: Some(vec![]),
            ..Default::default()
        });
        assert!(w[0].contains("is sshd running"));
        // A socket unit edited without a reload: systemd still holds the old port.
        let ev = PortEvidence {
            configured: vec![2222],
            sockets: vec![("ssh.socket".into(), vec![2222])],
            live: Some(vec![]),
            systemd_live: Some(vec![22, 631]),
            ..Default::default()
        };
        let (p, w) = reconcile(&ev);
        assert_eq!(p, [2222]);
        assert!(w.len() == 1 && w[0].contains("without a reload"), "{w:?}");
        let (_, w) = reconcile(&PortEvidence {
            systemd_live: Some(vec![2222]),
            ..ev
        });
        assert!(w.is_empty(), "{w:?}");
        let (p, w) = reconcile(&PortEvidence {
            configured: vec![22, 2222],
            live: Some(vec![2222, 22]),
            sshd_t: Some(vec![22, 2222, 22]),
            ..Default::default()
        });
        assert_eq!((p, w.len()), (vec![22, 2222], 0));
    }

    fn sandbox(sshd_config: &str) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/ssh")).unwrap();
        std::fs::write(dir.path().join("etc/ssh/sshd_config"), sshd_config).unwrap();
        let root = Root::new(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn match_is_judged_with_usedns_and_the_local_port() {
        let (_dir, root) = sandbox(
            "Port 22\nPort 2222\nUseDNS yes\nMatch Host support.example\n  AllowUsers root\n\
             Match LocalPort 2222\n  PermitRootLogin no\n",
        );
        let cfg = Config::load(&root).unwrap();
        let global = eval::global(&cfg).unwrap();
        let groups = ["root".to_string()];
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let judge = |use_dns| Judge {
            cfg: &cfg,
            global: &global,
            listen: &[],
            groups: &groups,
            host: "support.example",
            use_dns,
            release: None,
        };
        let by_name = judge(UseDns::Yes);
        assert_eq!(
            by_name.connection(a, None).host.as_deref(),
            Some("support.example")
        );
        assert_eq!(
            by_name.effective(a, Some(22)).unwrap().allow_users.value,
            ["root"]
        );
        let by_addr = judge(UseDns::No);
        assert_eq!(
            by_addr.connection(a, None).host.as_deref(),
            Some("192.0.2.7")
        );
        assert!(by_addr
            .effective(a, Some(22))
            .unwrap()
            .allow_users
            .value
            .is_empty());

        let per_address = [(a, by_name.effective(a, Some(22)).unwrap())];
        let w = local_port_differences(&by_name, &per_address, &[22, 2222], Some(22)).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("for 192.0.2.7, Match LocalPort makes port 2222 differ from port 22")
                && w[0].contains("PermitRootLogin No instead of ProhibitPassword"),
            "{w:?}"
        );
        let same = local_port_differences(&by_name, &per_address, &[22], Some(22)).unwrap();
        assert!(same.is_empty(), "{same:?}");

        let w = approximations(&cfg, UseDns::Yes, "support.example");
        assert!(w.len() == 1 && w[0].contains("UseDNS yes"), "{w:?}");
        assert!(approximations(&cfg, UseDns::No, "support.example").is_empty());
    }

    #[test]
    fn probe_in_a_sandbox_warns_what_it_can_only_guess() {
        let (_dir, root) = sandbox(
            "Port 22\nPort 2222\nUseDNS yes\nMatch LocalAddress 192.0.2.1\n  PasswordAuthentication no\n\
             Match LocalPort 2222\n  PubkeyAuthentication no\n",
        );
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let f = probe(&root, &[a], "support.example").unwrap();
        assert_eq!(f.ports, [22, 2222]);
        assert_eq!(f.per_address.len(), 1);
        assert!(f.per_address[0].1.pubkey_authentication.value);
        let at = |needle: &str| f.warnings.iter().position(|w| w.contains(needle));
        let (dns, laddr, lport) = (
            at("UseDNS yes").unwrap(),
            at("Match LocalAddress depends").unwrap(),
            at("Match LocalPort makes port 2222 differ").unwrap(),
        );
        assert!(dns < laddr && laddr < lport, "{:?}", f.warnings);
    }

    #[test]
    fn root_groups_from_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/srv/roothome:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:alice,root\nadm:x:4:alice\n",
        )
        .unwrap();
        let root = Root::new(dir.path()).unwrap();
        let (uid, gid, home, groups) = user_info(&root, "root");
        assert_eq!((uid, gid), (0, 0));
        assert_eq!(home, Path::new("/srv/roothome"));
        assert_eq!(groups, ["root", "wheel"]);
        let empty = tempfile::tempdir().unwrap();
        let (_, _, home, groups) = user_info(&Root::new(empty.path()).unwrap(), "root");
        assert_eq!(
            (home, groups),
            (PathBuf::from("/root"), vec!["root".to_string()])
        );
    }
}
