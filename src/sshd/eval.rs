//! Applying a parsed config the way sshd does (servconf.c): a load-time pass over the whole
//! config where only global lines (and `Match all`) are active, then, per connection, a pass
//! where only lines inside matching `Match` blocks are active, into a fresh set of options
//! (`parse_server_match_config()`), whose values then replace the global ones
//! (`copy_set_server_options()`). In both passes the first value obtained wins, except for the
//! keywords that accumulate (Port, ListenAddress, Allow/Deny Users/Groups).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use super::config::{allowed_in_match, Config, Directive, Family, File};
use super::matching::{evaluate, Connection};
use super::{Effective, Listen, PermitRootLogin, Setting, Source};
use crate::bad_input;

type Val<T> = Option<(T, Source)>;

/// One `ServerOptions` as the passes fill it; `None` = not set.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub ports: Vec<(u16, Source)>,
    pub listen: Vec<(String, Option<u16>, Source)>,
    pub address_family: Val<Family>,
    pub permit_root_login: Val<PermitRootLogin>,
    pub pubkey_authentication: Val<bool>,
    pub pubkey_accepted_algorithms: Val<String>,
    pub authorized_keys_files: Val<Vec<String>>,
    pub authorized_keys_command: Val<Option<String>>,
    pub allow_users: Val<Vec<String>>,
    pub deny_users: Val<Vec<String>>,
    pub allow_groups: Val<Vec<String>>,
    pub deny_groups: Val<Vec<String>>,
    pub authentication_methods: Val<Vec<String>>,
    pub strict_modes: Val<bool>,
    pub use_pam: Val<bool>,
    pub use_dns: Val<bool>,
}

fn first<T>(slot: &mut Val<T>, v: T, src: &Source) {
    if slot.is_none() {
        *slot = Some((v, src.clone()));
    }
}

/// opt_array_append(): every active line adds; the source kept is the first line's.
fn accumulate(slot: &mut Val<Vec<String>>, v: &[String], src: &Source) {
    match slot {
        Some((list, _)) => list.extend_from_slice(v),
        None => *slot = Some((v.to_vec(), src.clone())),
    }
}

impl Options {
    fn apply(&mut self, d: &Directive, src: &Source) {
        match d {
            Directive::Port(p) => self.ports.push((*p, src.clone())),
            Directive::ListenAddress { host, port } => {
                self.listen.push((host.clone(), *port, src.clone()))
            }
            Directive::AddressFamily(f) => first(&mut self.address_family, *f, src),
            Directive::PermitRootLogin(v) => first(&mut self.permit_root_login, *v, src),
            Directive::PubkeyAuthentication(v) => first(&mut self.pubkey_authentication, *v, src),
            Directive::PubkeyAcceptedAlgorithms(v) => {
                first(&mut self.pubkey_accepted_algorithms, v.clone(), src)
            }
            Directive::AuthorizedKeysFile(v) => {
                first(&mut self.authorized_keys_files, v.clone(), src)
            }
            Directive::AuthorizedKeysCommand(v) => {
                first(&mut self.authorized_keys_command, v.clone(), src)
            }
            Directive::AllowUsers(v) => accumulate(&mut self.allow_users, v, src),
            Directive::DenyUsers(v) => accumulate(&mut self.deny_users, v, src),
            Directive::AllowGroups(v) => accumulate(&mut self.allow_groups, v, src),
            Directive::DenyGroups(v) => accumulate(&mut self.deny_groups, v, src),
            // `any` is stored like a method list (so it wins as a first value, and a Match
            // block's `any` replaces a global list); fill_default_server_options() clears it.
            Directive::AuthenticationMethods(v) => {
                first(&mut self.authentication_methods, v.clone(), src)
            }
            Directive::StrictModes(v) => first(&mut self.strict_modes, *v, src),
            Directive::UsePam(v) => first(&mut self.use_pam, *v, src),
            Directive::UseDns(v) => first(&mut self.use_dns, *v, src),
            Directive::Match(_) | Directive::Include(_) | Directive::Other { .. } => {}
        }
    }

    /// copy_set_server_options(): what a matching block set replaces the global value (only
    /// the keywords allowed in Match; an empty list never replaces).
    fn overlay(&mut self, m: &Options) {
        fn over<T: Clone>(dst: &mut Val<T>, src: &Val<T>) {
            if src.is_some() {
                *dst = src.clone();
            }
        }
        over(&mut self.permit_root_login, &m.permit_root_login);
        over(&mut self.pubkey_authentication, &m.pubkey_authentication);
        over(
            &mut self.pubkey_accepted_algorithms,
            &m.pubkey_accepted_algorithms,
        );
        over(&mut self.authorized_keys_files, &m.authorized_keys_files);
        // M_CP_STROPT copies only a non-NULL string: `none` in a Match still replaces, since
        // servconf.c stores the word "none".
        over(
            &mut self.authorized_keys_command,
            &m.authorized_keys_command,
        );
        over(&mut self.allow_users, &m.allow_users);
        over(&mut self.deny_users, &m.deny_users);
        over(&mut self.allow_groups, &m.allow_groups);
        over(&mut self.deny_groups, &m.deny_groups);
        over(&mut self.authentication_methods, &m.authentication_methods);
    }
}

struct Walk<'a> {
    conn: Option<&'a Connection>,
    opts: Options,
}

impl Walk<'_> {
    /// parse_server_config_depth() over one file. `match_only`: SSHCFG_MATCH_ONLY (the
    /// connection pass before the file's first Match line); `never_match`: SSHCFG_NEVERMATCH
    /// (a file included from an inactive Match block: its own Match lines never activate).
    fn file(
        &mut self,
        f: &File,
        active: &mut bool,
        mut match_only: bool,
        never_match: bool,
    ) -> Result<()> {
        for it in &f.items {
            match &it.directive {
                Directive::Match(criteria) => {
                    let v = !never_match && evaluate(criteria, self.conn);
                    *active = v;
                    match_only = false;
                }
                Directive::Include(files) => {
                    // "Don't let included files clobber the containing file's Match state."
                    let outer = *active;
                    for sub in files {
                        let (mo, nm) = if match_only {
                            (true, false)
                        } else {
                            (false, !outer)
                        };
                        self.file(sub, active, mo, nm)?;
                        *active = outer;
                    }
                }
                d => {
                    // servconf.c refuses `AuthenticationMethods any` once any list (even
                    // `any`) was stored, active line or not: a config with a global list and
                    // `any` in a Match block does not load.
                    if let Directive::AuthenticationMethods(m) = d {
                        if m == &["any"] && self.opts.authentication_methods.is_some() {
                            return Err(bad_input!(
                                "{} line {}: \"any\" must appear alone in AuthenticationMethods \
                                 (an earlier line already set a list); remove one of the lines",
                                f.path.display(),
                                it.line
                            ));
                        }
                    }
                    if *active {
                        self.opts.apply(d, &f.source(it.line));
                    } else if self.conn.is_none() && !allowed_in_match(d) {
                        return Err(bad_input!(
                            "{} line {}: {} is not allowed within a Match block; move it above \
                             the first Match line",
                            f.path.display(),
                            it.line,
                            it.keyword
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The load-time pass: global options (what `sshd -T` without `-C` shows).
pub fn global(cfg: &Config) -> Result<Options> {
    let mut w = Walk {
        conn: None,
        opts: Options::default(),
    };
    if let Some(main) = &cfg.main {
        let mut active = true;
        w.file(main, &mut active, false, false)?;
    }
    Ok(w.opts)
}

/// The options in force for one connection: the global ones overlaid with those of every
/// matching Match block.
pub fn for_connection(cfg: &Config, global: &Options, conn: &Connection) -> Result<Options> {
    let mut w = Walk {
        conn: Some(conn),
        opts: Options::default(),
    };
    if let Some(main) = &cfg.main {
        let mut active = false;
        w.file(main, &mut active, true, false)?;
    }
    let mut merged = global.clone();
    merged.overlay(&w.opts);
    Ok(merged)
}

fn setting<T: Clone>(v: &Val<T>, default: T) -> Setting<T> {
    match v {
        Some((value, src)) => Setting {
            value: value.clone(),
            source: Some(src.clone()),
        },
        None => Setting {
            value: default,
            source: None,
        },
    }
}

/// fill_default_server_options(): OpenSSH's defaults for what nothing set, of the newest release.
pub fn effective(o: &Options) -> Effective {
    effective_for(o, None)
}

/// [`effective`] with the defaults of the installed sshd's release (`sshd -V`).
pub fn effective_for(o: &Options, release: Option<(u32, u32)>) -> Effective {
    Effective {
        permit_root_login: setting(&o.permit_root_login, PermitRootLogin::ProhibitPassword),
        pubkey_authentication: setting(&o.pubkey_authentication, true),
        pubkey_accepted_algorithms: Setting {
            value: super::algorithms::assemble_for(
                o.pubkey_accepted_algorithms
                    .as_ref()
                    .map(|(v, _)| v.as_str()),
                release,
            ),
            source: o
                .pubkey_accepted_algorithms
                .as_ref()
                .map(|(_, s)| s.clone()),
        },
        authorized_keys_files: setting(
            &o.authorized_keys_files,
            vec![
                ".ssh/authorized_keys".to_string(),
                ".ssh/authorized_keys2".to_string(),
            ],
        ),
        authorized_keys_command: setting(&o.authorized_keys_command, None),
        allow_users: setting(&o.allow_users, Vec::new()),
        deny_users: setting(&o.deny_users, Vec::new()),
        allow_groups: setting(&o.allow_groups, Vec::new()),
        deny_groups: setting(&o.deny_groups, Vec::new()),
        authentication_methods: {
            let mut s = setting(&o.authentication_methods, Vec::new());
            if s.value == ["any"] {
                s.value.clear();
            }
            s
        },
        strict_modes: setting(&o.strict_modes, true),
        use_pam: setting(&o.use_pam, false),
    }
}

/// process_queued_listen_addrs(): no Port → 22; a ListenAddress without a port listens on every
/// Port, one with a port only on that one; no ListenAddress → the wildcard on every Port.
/// Returns the sockets, the ports (host names included), and warnings.
pub fn listen(o: &Options) -> (Vec<Listen>, Vec<u16>, Vec<String>) {
    let mut warnings = Vec::new();
    let ports: Vec<(u16, Option<Source>)> = if o.ports.is_empty() {
        vec![(22, None)]
    } else {
        o.ports.iter().map(|(p, s)| (*p, Some(s.clone()))).collect()
    };
    let family = o.address_family.as_ref().map_or(Family::Any, |(f, _)| *f);
    let mut out = Vec::new();
    let mut all_ports = Vec::new();
    if o.listen.is_empty() {
        if o.ports.is_empty() {
            warnings.push(
                "sshd_config sets no Port and no ListenAddress: sshd listens on port 22".into(),
            );
        }
        for (port, src) in &ports {
            let addr = match family {
                Family::Any => None,
                Family::Inet => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                Family::Inet6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            };
            out.push(Listen {
                addr,
                port: *port,
                source: src.clone(),
            });
            all_ports.push(*port);
        }
    } else {
        for (host, port, src) in &o.listen {
            let these: Vec<u16> = match port {
                Some(p) => vec![*p],
                None => ports.iter().map(|(p, _)| *p).collect(),
            };
            all_ports.extend(&these);
            match host.parse::<IpAddr>() {
                Ok(ip) if !family_allows(family, ip) => warnings.push(format!(
                    "{} line {}: ListenAddress {ip} does not fit AddressFamily {family:?}: sshd \
                     refuses to start with this configuration (\"bad addr or host\")",
                    src.file.display(),
                    src.line
                )),
                Ok(ip) => {
                    for p in these {
                        out.push(Listen {
                            addr: Some(ip),
                            port: p,
                            source: Some(src.clone()),
                        });
                    }
                }
                Err(_) => warnings.push(format!(
                    "{} line {}: ListenAddress {host} is a host name; its port(s) {} are \
                     counted, but which addresses it means depends on name resolution",
                    src.file.display(),
                    src.line,
                    crate::text::join(&these)
                )),
            }
        }
    }
    all_ports.sort_unstable();
    all_ports.dedup();
    // A repeated Port or ListenAddress makes sshd bind the same socket twice; the second bind
    // fails and is only logged, so the socket is listed once.
    let mut seen = std::collections::HashSet::new();
    out.retain(|l| seen.insert((l.addr, l.port)));
    (out, all_ports, warnings)
}

fn family_allows(f: Family, ip: IpAddr) -> bool {
    match f {
        Family::Any => true,
        Family::Inet => ip.is_ipv4(),
        Family::Inet6 => ip.is_ipv6(),
    }
}
