//! The command-line contract. Names and flags here are what scripts, docs and tests rely on: add,
//! never rename.
//!
//! Exit codes ([`crate::error`]): 0 success, 1 failure (doctor: a check failed; status: drift; the
//! system refused, e.g. nf_tables without CAP_NET_ADMIN), 2 usage or bad input; `--help` and
//! `--version` exit 0. Every error is one line on stderr, and with `--json` stdout still carries
//! one JSON object (`changed: false`, `error`), also for errors clap finds in the arguments.
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use clap::builder::PossibleValue;
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::access::{self, GrantRequest, KeyLines, RefreshRequest, RevokeRequest, Sessions};
use crate::bad_input;
use crate::dns::DnsOptions;
use crate::error::{render, EXIT_OK, EXIT_USAGE};
use crate::firewall::{FirewallChoice, Mode};
use crate::report::{error_json, join, Report};
use crate::root::Root;
use crate::support::{self, Region, TargetRequest};

#[derive(Debug, Parser)]
#[command(
    name = "ovh-access",
    version = crate::VERSION,
    about = "Let OVH support (or another provider's) into this server safely, and shut them out again",
    long_about = "Opens the SSH port(s) for exactly the support host's addresses and installs the \
support key with a from= restriction, as one paired, reversible operation; revoke undoes both."
)]
pub struct Cli {
    /// Treat DIR as / for every file the tool reads or writes (sshd_config, passwd, the keys file,
    /// its state). The firewall is always the one of the current network namespace.
    #[arg(long, global = true, value_name = "DIR", value_parser = parse_root)]
    pub root: Option<PathBuf>,

    /// Print one JSON object on stdout instead of human output.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the firewall for the support host and install the support key.
    Grant(GrantArgs),
    /// Disable the support key, close the firewall and end the support's live sessions.
    Revoke(RevokeArgs),
    /// Show what is granted and whether key, firewall and DNS still agree.
    Status,
    /// Check everything that decides whether the support team can log in, with the fix for each.
    Doctor(DoctorArgs),
    /// Re-resolve the support host and update the addresses in place.
    Refresh(RefreshArgs),
    /// After a reboot or a `flush ruleset`: re-apply what is still granted, clean up what expired.
    Restore,
    /// List the built-in support profiles (regions): host, key fingerprint, published addresses.
    Profiles,
}

/// `--region`: the domain's regions, with the help clap prints for each.
impl ValueEnum for Region {
    fn value_variants<'a>() -> &'a [Self] {
        &Region::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            Region::Eu => "cache-ng.ovh.net",
            Region::Ca => "cache-ng.ovh.ca",
        };
        Some(PossibleValue::new(self.name()).help(help))
    }
}

/// `--firewall`: the domain's choices, with the help clap prints for each.
impl ValueEnum for FirewallChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &FirewallChoice::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            FirewallChoice::Auto => {
                "Program every firewall layer found (nftables tables, iptables-legacy, iptables-nft)"
            }
            FirewallChoice::Nft => "Only native nftables",
            FirewallChoice::Iptables => {
                "Only iptables (legacy and/or nft variant, whichever has tables)"
            }
            FirewallChoice::Firewalld => "Only firewalld, through its D-Bus API (runtime rich rules)",
            FirewallChoice::None => "Leave the firewall alone (you manage it yourself)",
        };
        Some(PossibleValue::new(self.name()).help(help))
    }
}

/// Who the support is and where they connect from; shared by grant and doctor.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Support region: eu → cache-ng.ovh.net, ca → cache-ng.ovh.ca.
    #[arg(long, value_enum)]
    pub region: Option<Region>,

    /// Support host name to resolve (overrides --region's host).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,

    /// Use this address instead of DNS (repeatable).
    #[arg(long = "address", value_name = "IP")]
    pub addresses: Vec<IpAddr>,

    #[command(flatten)]
    pub dns: DnsArgs,

    /// Do not ask DNS: use the region's published addresses.
    #[arg(long, conflicts_with = "trust_dns")]
    pub no_dns: bool,

    /// The support public key(s): an OpenSSH public key file or authorized_keys lines; `-` reads stdin.
    #[arg(long, value_name = "FILE|-")]
    pub key_file: Option<String>,

    /// Refuse unless the key has this SHA256 fingerprint.
    #[arg(long, value_name = "SHA256:...")]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// SSH port to open (repeatable); replaces the ports detected from sshd.
    #[arg(long = "port", value_name = "N", value_parser = parse_port)]
    pub ports: Vec<u16>,

    /// Grant for this long (30m, 4h, 2d); the kernel and sshd end it even if the tool never runs again.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Which firewall to program.
    #[arg(long, value_enum, default_value = "auto")]
    pub firewall: FirewallChoice,

    /// Comment out an unrestricted line that already carries the support key (sshd would let the
    /// support in from anywhere through it) instead of refusing.
    #[arg(long)]
    pub replace_foreign: bool,

    /// Print what would change (firewall rules, keys-file diff) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// Delete the tool's key lines instead of commenting them out.
    #[arg(long)]
    pub remove: bool,

    /// Do not end the support's established SSH sessions.
    #[arg(long)]
    pub keep_sessions: bool,

    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

/// How DNS is asked and which answers are taken; shared by grant, doctor and refresh (a grant
/// records them so that refresh and status ask the same way).
#[derive(Debug, Clone, Default, Args)]
pub struct DnsArgs {
    /// DNS server to ask instead of resolv.conf's.
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_resolver)]
    pub resolver: Option<SocketAddr>,

    /// Accept private and documentation addresses in the DNS answer.
    #[arg(long)]
    pub allow_private: bool,

    /// Use DNS answers even when they are outside the region's published addresses.
    #[arg(long)]
    pub trust_dns: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub dns: DnsArgs,

    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Parse the command line, run the command, print its report; returns the exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    let json = wants_json(&args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => return usage_error(&e, json, command_in_args(&args)),
    };
    let json = cli.json;
    let name = cli.command.name();
    match run(cli) {
        Ok(report) => {
            report.print(json);
            report.exit
        }
        Err(e) => {
            let msg = render(&e);
            fail(name, &msg, json);
            crate::error::exit_code(&e)
        }
    }
}

/// The command boundary: arguments become domain requests here, and nothing below this module
/// knows the command line.
pub fn run(cli: Cli) -> Result<Report> {
    let root = match &cli.root {
        Some(dir) => Root::new(dir).map_err(|e| bad_input!("{e:#}"))?,
        None => Root::system(),
    };
    match cli.command {
        Command::Grant(a) => {
            let req = a.request();
            require_privileges(&root, "grant", req.mode)?;
            access::grant(&root, &req)
        }
        Command::Revoke(a) => {
            let req = a.request();
            require_privileges(&root, "revoke", req.mode)?;
            access::revoke(&root, &req)
        }
        Command::Status => access::status(&root),
        Command::Doctor(a) => crate::doctor::run(&root, &a.target.request()),
        Command::Refresh(a) => {
            let req = a.request();
            require_privileges(&root, "refresh", req.mode)?;
            access::refresh(&root, &req)
        }
        Command::Restore => {
            require_privileges(&root, "restore", Mode::Apply)?;
            access::restore(&root)
        }
        Command::Profiles => Ok(profiles_report()),
    }
}

/// A changing command needs root: it edits root's keys file and the firewall. Refused up front
/// (rather than failing half-way) unless it only prints (`--dry-run`) or works on a sandbox
/// (`--root`, where the files are the operator's own).
fn require_privileges(root: &Root, cmd: &str, mode: Mode) -> Result<()> {
    if mode == Mode::DryRun || !root.is_system() || rustix::process::geteuid().is_root() {
        return Ok(());
    }
    // No --dry-run suggestion: even a dry run reads root's keys file and the firewall (netlink
    // dumps need CAP_NET_ADMIN), so without root it fails further on.
    Err(bad_input!(
        "`ovh-access {cmd}` changes root's keys file and the firewall and must run as root; \
         run it with sudo"
    ))
}

/// `ovh-access profiles`: the built-in regions, so an operator can compare with OVH's guide.
fn profiles_report() -> Report {
    let mut report = Report::new("profiles");
    let profiles = support::profiles();
    for p in &profiles {
        report.line(format!("{}  {}", p.region, p.host));
        report.line(format!(
            "    key:       {} {} {}",
            p.key.fingerprint, p.key.algorithm, p.key.comment
        ));
        report.line(format!("    addresses: {}", join(&p.published_addresses())));
    }
    report.set("profiles", &profiles);
    report
}

fn mode(dry_run: bool) -> Mode {
    if dry_run {
        Mode::DryRun
    } else {
        Mode::Apply
    }
}

impl TargetArgs {
    pub fn request(&self) -> TargetRequest {
        TargetRequest {
            region: self.region,
            host: self.host.clone(),
            addresses: self.addresses.clone(),
            dns: self.dns.options(),
            no_dns: self.no_dns,
            key_file: self.key_file.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

impl DnsArgs {
    pub fn options(&self) -> DnsOptions {
        DnsOptions {
            resolver: self.resolver,
            allow_private: self.allow_private,
            trust_dns: self.trust_dns,
        }
    }
}

impl GrantArgs {
    pub fn request(&self) -> GrantRequest {
        GrantRequest {
            target: self.target.request(),
            ports: self.ports.clone(),
            duration: self.duration,
            firewall: self.firewall,
            replace_foreign: self.replace_foreign,
            mode: mode(self.dry_run),
        }
    }
}

impl RevokeArgs {
    pub fn request(&self) -> RevokeRequest {
        RevokeRequest {
            lines: if self.remove {
                KeyLines::Remove
            } else {
                KeyLines::Disable
            },
            sessions: if self.keep_sessions {
                Sessions::Keep
            } else {
                Sessions::End
            },
            mode: mode(self.dry_run),
        }
    }
}

impl RefreshArgs {
    pub fn request(&self) -> RefreshRequest {
        RefreshRequest {
            dns: self.dns.options(),
            mode: mode(self.dry_run),
        }
    }
}

impl Command {
    /// The subcommand's name as typed, for the JSON `command` field.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Grant(_) => "grant",
            Command::Revoke(_) => "revoke",
            Command::Status => "status",
            Command::Doctor(_) => "doctor",
            Command::Refresh(_) => "refresh",
            Command::Restore => "restore",
            Command::Profiles => "profiles",
        }
    }
}

/// The one line on stderr, and with `--json` the one object on stdout that scripts parse.
fn fail(command: &str, msg: &str, json: bool) {
    eprintln!("ovh-access: error: {msg}");
    if json {
        println!("{}", error_json(command, msg));
    }
}

/// `--help` and `--version` go to stdout with exit 0, as clap prints them. A usage error becomes
/// one line (clap's own rendering spreads it over a paragraph, a usage block and a tip, which a
/// script capturing stderr cannot show as one message) and, with `--json`, one object too.
fn usage_error(e: &clap::Error, json: bool, command: &str) -> i32 {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return EXIT_OK;
    }
    let msg = usage_sentence(e, command);
    fail(command, &msg, json);
    EXIT_USAGE
}

/// clap's message on one line, without the usage block, with where to read the usage.
pub fn usage_sentence(e: &clap::Error, command: &str) -> String {
    let help = if command.is_empty() {
        "`ovh-access --help`".to_string()
    } else {
        format!("`ovh-access {command} --help`")
    };
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return format!("no command given; run {help} for the commands (grant, revoke, status, doctor, refresh, restore, profiles)");
    }
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    let body = parts.join(" ");
    let body = body.trim_end_matches('.');
    format!("{body}; see {help}")
}

/// `--json` anywhere before a `--` (clap has not parsed yet when its own error is reported).
fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// The first argument that names a subcommand, for the error's JSON `command` field.
fn command_in_args(args: &[OsString]) -> &'static str {
    const NAMES: [&str; 7] = [
        "grant", "revoke", "status", "doctor", "refresh", "restore", "profiles",
    ];
    args.iter()
        .skip(1)
        .find_map(|a| NAMES.iter().find(|n| a == *n).copied())
        .unwrap_or("")
}

/// `--root DIR`: an existing directory, checked while parsing so that a typo is a usage error
/// before anything is read, locked or written.
pub fn parse_root(s: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(s);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        Ok(_) => Err(format!(
            "{s} is not a directory; give the directory that stands for / (omit --root for this system)"
        )),
        Err(e) => Err(format!(
            "{s} cannot be used ({}); give an existing directory that stands for / (omit --root for this system)",
            crate::error::io_reason(&e)
        )),
    }
}

/// `1`‥`65535`; 0 and larger values are refused by clap with this message (exit 2).
pub fn parse_port(s: &str) -> Result<u16, String> {
    match u32::from_str(s.trim()) {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(format!(
            "port {n} is outside 1-65535; give the port sshd listens on"
        )),
        Err(_) => Err(format!(
            "'{s}' is not a port number; give a number from 1 to 65535"
        )),
    }
}

/// `30s`, `30m`, `4h`, `2d`. A bare number is refused rather than guessed at.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let hint = "write it as a number with a unit, e.g. 30m, 4h or 2d";
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration; {hint}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => return Err(format!("'{s}' has no known unit (s, m, h, d); {hint}")),
    };
    if secs == 0 {
        return Err(format!(
            "'{s}' is zero; a grant needs a positive duration ({hint})"
        ));
    }
    // A year is far beyond any support intervention, and keeps nft timeouts (ms, u64) and
    // iptables --datestop (up to 2038) in range.
    if secs > 366 * 86400 {
        return Err(format!("'{s}' is longer than a year; {hint}"));
    }
    Ok(Duration::from_secs(secs))
}

/// `IP` or `IP:PORT` or `[IPv6]:PORT`; port 53 by default.
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = SocketAddr::from_str(s) {
        // Port 0 reaches no server: every query would time out with a misleading message.
        if sa.port() == 0 {
            return Err(format!(
                "'{s}' has port 0; a resolver's port is 1-65535 (53 when left out)"
            ));
        }
        return Ok(sa);
    }
    if let Ok(ip) = IpAddr::from_str(s) {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "'{s}' is not a resolver address; give IP, IP:PORT or [IPv6]:PORT"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("4h").unwrap(), Duration::from_secs(4 * 3600));
        assert_eq!(
            parse_duration("2d").unwrap(),
            Duration::from_secs(2 * 86400)
        );
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        for bad in ["", "m", "30", "30x", "-1h", "0m", "400d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("2222").unwrap(), 2222);
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("ssh").is_err());
    }

    #[test]
    fn resolvers() {
        assert_eq!(parse_resolver("192.0.2.53").unwrap().port(), 53);
        assert_eq!(parse_resolver("192.0.2.53:5353").unwrap().port(), 5353);
        assert_eq!(parse_resolver("[2001:db8::53]:53").unwrap().port(), 53);
        assert!(parse_resolver("2001:db8::53").is_ok());
        assert!(parse_resolver("dns.example").is_err());
        assert!(parse_resolver("192.0.2.53:0").is_err());
        assert!(parse_resolver("[2001:db8::53]:0").is_err());
        assert!(parse_resolver("192.0.2.53:65536").is_err());
    }

    #[test]
    fn usage_errors_render_as_one_line_with_where_to_read_the_usage() {
        let args = ["ovh-access", "grant", "--port", "0", "--key-file", "k"];
        let e = Cli::try_parse_from(args).unwrap_err();
        let msg = usage_sentence(&e, "grant");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("--port") && msg.contains("1-65535"), "{msg}");
        assert!(msg.ends_with("; see `ovh-access grant --help`"), "{msg}");
        assert!(
            !msg.contains("Usage:") && !msg.starts_with("error:"),
            "{msg}"
        );
    }

    #[test]
    fn json_and_command_are_found_before_parsing() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_json(&os(&["ovh-access", "grant", "--json"])));
        assert!(!wants_json(&os(&["ovh-access", "grant", "--", "--json"])));
        assert!(!wants_json(&os(&["--json"])), "argv[0] is the program");
        assert_eq!(
            command_in_args(&os(&["x", "--root", "/", "revoke"])),
            "revoke"
        );
        assert_eq!(command_in_args(&os(&["x", "--bogus"])), "");
    }

    #[test]
    fn roots_must_be_existing_directories() {
        assert!(parse_root("/").is_ok());
        let e = parse_root("/nonexistent/ovh-access").unwrap_err();
        assert!(
            e.contains("No such file or directory") && !e.contains("os error"),
            "{e}"
        );
        assert!(parse_root("/proc/self/status")
            .unwrap_err()
            .contains("not a directory"));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
