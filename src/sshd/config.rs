//! Reading sshd_config into a tree of typed directives: files, `Include` (servconf.c
//! `process_server_config_line_depth()` case sInclude), and every value checked as sshd checks
//! it, whether or not the line applies to the support connection, so a config sshd would refuse
//! is refused here too, with its file and line.
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::lex::{argv_split, strdelim, trim_line};
use super::matching::{parse_criteria, Criterion};
use super::{PermitRootLogin, Source};
use crate::bad_input;
use crate::root::Root;

/// servconf.c SERVCONF_MAX_DEPTH.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// `SSHDIR`: where sshd resolves a relative `Include`.
pub const SSHDIR: &str = "/etc/ssh";
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    Inet,
    Inet6,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    Port(u16),
    /// `host`, `host:port`, `[v6]:port`, bare v6; `port: None` means "every Port".
    ListenAddress {
        host: String,
        port: Option<u16>,
    },
    AddressFamily(Family),
    PermitRootLogin(PermitRootLogin),
    PubkeyAuthentication(bool),
    /// The raw value (`+`, `-`, `^` prefixes and patterns kept); see `algorithms::assemble`.
    PubkeyAcceptedAlgorithms(String),
    AuthorizedKeysFile(Vec<String>),
    /// `None` for `none`.
    AuthorizedKeysCommand(Option<String>),
    AllowUsers(Vec<String>),
    DenyUsers(Vec<String>),
    AllowGroups(Vec<String>),
    DenyGroups(Vec<String>),
    /// `["any"]` for any.
    AuthenticationMethods(Vec<String>),
    StrictModes(bool),
    UsePam(bool),
    UseDns(bool),
    Match(Vec<Criterion>),
    /// The files the glob matched, in glob order.
    Include(Vec<File>),
    /// A keyword this tool does not interpret; `in_match` tells whether sshd allows it inside
    /// a `Match` block (SSHCFG_ALL) or only globally (SSHCFG_GLOBAL).
    Other {
        in_match: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub line: usize,
    pub keyword: String,
    pub directive: Directive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// As on the real system.
    pub path: PathBuf,
    pub items: Vec<Item>,
}

impl File {
    pub fn source(&self, line: usize) -> Source {
        Source {
            file: self.path.clone(),
            line,
        }
    }

    /// Every item of this file and the files it includes, depth first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a File, &'a Item)) {
        for it in &self.items {
            f(self, it);
            if let Directive::Include(files) = &it.directive {
                for sub in files {
                    sub.walk(f);
                }
            }
        }
    }
}

/// sshd_config as read from one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `None` when the main file does not exist: OpenSSH's defaults apply.
    pub main: Option<File>,
    /// Things sshd accepts or ignores but the operator should know (unknown keywords, an
    /// Include matching nothing, ...).
    pub warnings: Vec<String>,
}

impl Config {
    /// Read `<root>/etc/ssh/sshd_config` and everything it includes.
    pub fn load(root: &Root) -> Result<Config> {
        Self::load_file(root, Path::new(SSHD_CONFIG))
    }

    /// Read `path` (as on the real system) under `root`, and everything it includes.
    pub fn load_file(root: &Root, path: &Path) -> Result<Config> {
        let mut warnings = Vec::new();
        let on_disk = root.path(path);
        if !on_disk.exists() {
            warnings.push(format!(
                "{} does not exist: assuming OpenSSH's defaults (port 22); check that sshd really \
                 reads this file (`sshd -T`)",
                path.display()
            ));
            return Ok(Config {
                main: None,
                warnings,
            });
        }
        let data = crate::bounded::read(&on_disk, crate::bounded::CONFIG).map_err(|e| {
            bad_input!(
                "{}: cannot read the sshd configuration ({e}); make it a readable file",
                path.display()
            )
        })?;
        let mut loader = Loader {
            root,
            stack: vec![path.to_path_buf()],
            warnings: &mut warnings,
        };
        let main = loader.parse_file(path, &data, 0)?;
        Ok(Config {
            main: Some(main),
            warnings,
        })
    }

    /// The `Match` lines using a criterion that `pred` selects (used to warn that a setting
    /// depends on the local address or port).
    pub fn match_sources(&self, pred: impl Fn(&Criterion) -> bool) -> Vec<Source> {
        let mut out = Vec::new();
        if let Some(main) = &self.main {
            main.walk(&mut |f, it| {
                if let Directive::Match(c) = &it.directive {
                    if c.iter().any(&pred) {
                        out.push(f.source(it.line));
                    }
                }
            });
        }
        out
    }
}

struct Loader<'a> {
    root: &'a Root,
    /// The chain of files being read, to name an Include cycle.
    stack: Vec<PathBuf>,
    warnings: &'a mut Vec<String>,
}

fn err_at(path: &Path, line: usize, what: String) -> anyhow::Error {
    bad_input!(
        "{} line {line}: {what}; correct or remove the line (sshd refuses it too)",
        path.display()
    )
}

impl Loader<'_> {
    fn parse_file(&mut self, path: &Path, data: &[u8], depth: usize) -> Result<File> {
        let text = String::from_utf8_lossy(data);
        let mut items = Vec::new();
        // load_server_config() keeps the newlines so that line numbers count from 1.
        for (idx, raw) in text.split('\n').enumerate() {
            let line = idx + 1;
            if let Some(item) = self.parse_line(path, line, raw, depth)? {
                items.push(item);
            }
        }
        Ok(File {
            path: path.to_path_buf(),
            items,
        })
    }

    /// servconf.c `process_server_config_line_depth()` for one line: `None` for a blank or
    /// comment line, else the keyword and its value, checked as sshd checks it.
    fn parse_line(
        &mut self,
        path: &Path,
        line: usize,
        raw: &str,
        depth: usize,
    ) -> Result<Option<Item>> {
        let Some((keyword, rest)) = keyword_and_rest(raw) else {
            return Ok(None);
        };
        if rest.is_empty() {
            return Err(err_at(
                path,
                line,
                format!("no argument after keyword \"{keyword}\""),
            ));
        }
        let args = argv_split(rest)
            .map_err(|_| err_at(path, line, "invalid quotes (a quote is not closed)".into()))?;
        let l = Line {
            path,
            number: line,
            keyword: &keyword,
            rest,
            args,
        };
        let directive = match keyword.to_ascii_lowercase().as_str() {
            "include" => Directive::Include(self.include(path, line, &l.args, depth)?),
            kw => directive(self.root, kw, &l)?,
        };
        Ok(Some(Item {
            line,
            keyword,
            directive,
        }))
    }

    /// servconf.c case sInclude: each argument is a glob, relative ones under /etc/ssh; a glob
    /// that matches nothing is skipped silently by sshd.
    fn include(
        &mut self,
        path: &Path,
        line: usize,
        args: &[String],
        depth: usize,
    ) -> Result<Vec<File>> {
        if args.is_empty() {
            return Err(err_at(path, line, "Include is missing a file name".into()));
        }
        let mut files = Vec::new();
        for arg in args {
            if arg.is_empty() {
                return Err(err_at(path, line, "Include has an empty argument".into()));
            }
            let pattern = if arg.starts_with('/') || arg.starts_with('~') {
                PathBuf::from(arg)
            } else {
                Path::new(SSHDIR).join(arg)
            };
            let matched = super::glob::glob(self.root, &pattern);
            if matched.is_empty() {
                self.warnings.push(format!(
                    "{} line {line}: Include {} matches no file; sshd skips it",
                    path.display(),
                    pattern.display()
                ));
            }
            for file in matched {
                if let Some(pos) = self.stack.iter().position(|p| p == &file) {
                    let mut cycle: Vec<String> = self.stack[pos..]
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    cycle.push(file.display().to_string());
                    return Err(bad_input!(
                        "{} line {line}: Include cycle {}; remove one of these Include lines",
                        path.display(),
                        cycle.join(" -> ")
                    ));
                }
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(bad_input!(
                        "{} line {line}: Includes nested deeper than {MAX_INCLUDE_DEPTH} levels \
                         (sshd's limit); flatten the chain of Include files",
                        path.display()
                    ));
                }
                let data = crate::bounded::read(self.root.path(&file), crate::bounded::CONFIG)
                    .map_err(|err| {
                        bad_input!(
                            "{} line {line}: cannot read the included file {} ({err}); make it a \
                         readable file or remove the Include",
                            path.display(),
                            file.display()
                        )
                    })?;
                self.stack.push(file.clone());
                let parsed = self.parse_file(&file, &data, depth + 1);
                self.stack.pop();
                files.push(parsed?);
            }
        }
        Ok(files)
    }
}

/// The keyword of a configuration line and the rest of it after the keyword, as
/// `process_server_config_line_depth()` takes them with `strdelim()`; `None` for a blank line,
/// a comment, or a keyword whose quote is not closed (sshd ignores those too).
fn keyword_and_rest(raw: &str) -> Option<(String, &str)> {
    let s = trim_line(raw);
    if s.is_empty() {
        return None;
    }
    let (mut keyword, mut rest) = strdelim(s)?;
    // A line starting with '=' yields an empty first token: sshd takes the next one.
    if keyword.is_empty() {
        (keyword, rest) = strdelim(rest)?;
    }
    if keyword.is_empty() || keyword.starts_with('#') {
        return None;
    }
    Some((keyword, rest))
}

/// One directive line, split, with what an error about it must name.
struct Line<'a> {
    path: &'a Path,
    number: usize,
    /// As written (errors quote the operator's spelling).
    keyword: &'a str,
    /// The line after the keyword, unsplit: a few keywords take it whole.
    rest: &'a str,
    /// `argv_split()` of `rest`.
    args: Vec<String>,
}

impl Line<'_> {
    fn err(&self, what: String) -> anyhow::Error {
        err_at(self.path, self.number, what)
    }

    /// The single, non-empty argument of a keyword that takes one value.
    fn one(&self) -> Result<&str> {
        let keyword = self.keyword;
        match &self.args[..] {
            [a] if !a.is_empty() => Ok(a),
            [] => Err(self.err(format!("{keyword} is missing its value"))),
            [_] => Err(self.err(format!("{keyword} has an empty value"))),
            [a, ..] => Err(self.err(format!("garbage at end of line after {keyword} {a}"))),
        }
    }

    /// servconf.c `parse_flag`: yes or no, in any case.
    fn flag(&self) -> Result<bool> {
        let v = self.one()?;
        match v.to_ascii_lowercase().as_str() {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(self.err(format!("{} must be yes or no, not '{v}'", self.keyword))),
        }
    }

    /// A list keyword's arguments: at least one, none empty.
    fn list(&self) -> Result<Vec<String>> {
        if self.args.is_empty() || self.args.iter().any(|a| a.is_empty()) {
            return Err(self.err(format!("{} has an empty argument", self.keyword)));
        }
        Ok(self.args.clone())
    }

    /// AllowUsers / DenyUsers: a list whose `user@host` patterns are checked.
    fn users(&self) -> Result<Vec<String>> {
        user_patterns(self.keyword, self.list()?).map_err(|m| self.err(m))
    }
}

/// The flag keywords the verdict reads, each read with servconf.c `parse_flag`.
fn flag_keyword(kw: &str) -> Option<fn(bool) -> Directive> {
    match kw {
        "pubkeyauthentication" => Some(Directive::PubkeyAuthentication),
        "strictmodes" => Some(Directive::StrictModes),
        "usepam" => Some(Directive::UsePam),
        "usedns" => Some(Directive::UseDns),
        _ => None,
    }
}

/// The directive of line `l`, whose keyword lower-cased is `kw` (anything but Include).
fn directive(root: &Root, kw: &str, l: &Line) -> Result<Directive> {
    if let Some(make) = flag_keyword(kw) {
        return Ok(make(l.flag()?));
    }
    Ok(match kw {
        "port" => Directive::Port(port_value(root, l.one()?).ok_or_else(|| {
            l.err(format!(
                "Port '{}' is not a port number from 1 to 65535",
                l.args[0]
            ))
        })?),
        "listenaddress" => listen_address(root, &l.args).map_err(|m| l.err(m))?,
        "addressfamily" => Directive::AddressFamily(address_family(l)?),
        "permitrootlogin" => {
            let v = l.one()?;
            Directive::PermitRootLogin(PermitRootLogin::parse(v).ok_or_else(|| {
                l.err(format!(
                    "PermitRootLogin must be yes, prohibit-password, without-password, \
                     forced-commands-only or no, not '{v}'"
                ))
            })?)
        }
        "pubkeyacceptedalgorithms" | "pubkeyacceptedkeytypes" => {
            let v = l.one()?;
            super::algorithms::validate(v).map_err(|m| l.err(m))?;
            Directive::PubkeyAcceptedAlgorithms(v.to_string())
        }
        "authorizedkeysfile" => Directive::AuthorizedKeysFile(
            l.list()?
                .iter()
                .map(|a| tilde_expand(root, a))
                .collect::<Result<_, _>>()
                .map_err(|m| l.err(m))?,
        ),
        "authorizedkeyscommand" => Directive::AuthorizedKeysCommand(keys_command(l)?),
        "allowusers" => Directive::AllowUsers(l.users()?),
        "denyusers" => Directive::DenyUsers(l.users()?),
        "allowgroups" => Directive::AllowGroups(l.list()?),
        "denygroups" => Directive::DenyGroups(l.list()?),
        "authenticationmethods" => {
            Directive::AuthenticationMethods(auth_methods(&l.args).map_err(|m| l.err(m))?)
        }
        "match" => Directive::Match(
            parse_criteria(l.rest).map_err(|m| l.err(format!("bad Match condition: {m}")))?,
        ),
        _ => Directive::Other {
            in_match: scope(kw, l)?,
        },
    })
}

/// servconf.c case sAddressFamily (multistate_addressfamily).
fn address_family(l: &Line) -> Result<Family> {
    let v = l.one()?;
    match v.to_ascii_lowercase().as_str() {
        "any" => Ok(Family::Any),
        "inet" => Ok(Family::Inet),
        "inet6" => Ok(Family::Inet6),
        _ => Err(l.err(format!(
            "AddressFamily must be any, inet or inet6, not '{v}'"
        ))),
    }
}

/// servconf.c case sAuthorizedKeysCommand takes the raw rest of the line, not the split
/// arguments, and insists on an absolute path; `None` for `none`.
fn keys_command(l: &Line) -> Result<Option<String>> {
    if l.rest.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    if !l.rest.starts_with('/') {
        return Err(l.err(format!(
            "AuthorizedKeysCommand must be an absolute path, not '{}'",
            l.rest
        )));
    }
    Ok(Some(l.rest.to_string()))
}

/// Whether a keyword this tool does not interpret is allowed inside a `Match` block.
fn scope(kw: &str, l: &Line) -> Result<bool> {
    // sshd refuses an unknown keyword ("Bad configuration option") and will not start: a grant
    // judged against such a file would be judged against nothing sshd runs. The table holds
    // every keyword of OpenSSH up to 10.0 and the distributions' patches.
    super::keywords::scope(kw).ok_or_else(|| {
        l.err(format!(
            "unknown keyword '{}' (sshd: \"Bad configuration option\"; `sshd -t` shows what \
             the installed sshd accepts)",
            l.keyword
        ))
    })
}

/// The home directory of `user` (None: uid 0, the user sshd runs as) in `<root>/etc/passwd`;
/// root's defaults to /root when the sandbox has no passwd.
fn home_of(root: &Root, user: Option<&str>) -> Option<String> {
    let found = super::passwd_entry(root, |f| match user {
        Some(u) => f[0] == u,
        None => f[2] == "0",
    })
    .map(|mut f| f.swap_remove(5));
    match (found, user) {
        (Some(h), _) => Some(h),
        (None, None) => Some("/root".into()),
        (None, Some(_)) => None,
    }
}

/// misc.c `tilde_expand_filename(arg, getuid())`, applied by servconf.c to AuthorizedKeysFile
/// at parse time: `~/x` → sshd's (root's) home, `~user/x` → that user's home.
fn tilde_expand(root: &Root, arg: &str) -> Result<String, String> {
    let Some(rest) = arg.strip_prefix('~') else {
        return Ok(arg.to_string());
    };
    let (home, path) = match rest.find('/') {
        Some(i) if i > 0 => {
            let user = &rest[..i];
            let home = home_of(root, Some(user)).ok_or_else(|| {
                format!("AuthorizedKeysFile {arg}: no such user {user} in /etc/passwd")
            })?;
            (home, &rest[i + 1..])
        }
        Some(i) => (home_of(root, None).unwrap_or_default(), &rest[i + 1..]),
        None => (home_of(root, None).unwrap_or_default(), rest),
    };
    let sep = if home.ends_with('/') { "" } else { "/" };
    Ok(format!("{home}{sep}{path}"))
}

/// servconf.c checks each AllowUsers/DenyUsers pattern with `match_user(NULL, NULL, NULL, p)`:
/// the host part of `user@host` must be a valid address list (no host bits past the mask).
fn user_patterns(keyword: &str, pats: Vec<String>) -> Result<Vec<String>, String> {
    for p in &pats {
        if let Some((_, host)) = p.rsplit_once('@') {
            super::matching::validate_addr_list(host)
                .map_err(|m| format!("invalid {keyword} pattern \"{p}\": {m}"))?;
        }
    }
    Ok(pats)
}

/// misc.c `a2port()`: a number from 1 to 65535, or a TCP service name as getservbyname()
/// finds it in `<root>/etc/services` (`Port ssh` is valid for sshd).
pub fn port_value(root: &Root, s: &str) -> Option<u16> {
    if let Ok(n) = s.parse::<u32>() {
        return u16::try_from(n).ok().filter(|p| *p != 0);
    }
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') {
        return None;
    }
    let services =
        crate::bounded::read_to_string(root.path("/etc/services"), crate::bounded::CONFIG)
            .unwrap_or_default();
    for line in services.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut f = line.split_whitespace();
        let (Some(name), Some(pp)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((port, "tcp")) = pp.split_once('/') else {
            continue;
        };
        if name == s || f.any(|alias| alias == s) {
            return port.parse().ok().filter(|p| *p != 0);
        }
    }
    None
}

/// servconf.c case sListenAddress: a bare IPv6 address (no `[`, two or more `:`) has no port;
/// otherwise `hpdelim()` splits `host:port` / `[v6]:port`; an optional `rdomain NAME` follows.
fn listen_address(root: &Root, args: &[String]) -> Result<Directive, String> {
    let Some(arg) = args.first().filter(|a| !a.is_empty()) else {
        return Err("ListenAddress is missing its address".into());
    };
    match &args[1..] {
        [] => {}
        [r, _] if r == "rdomain" => {}
        _ => return Err("bad ListenAddress syntax (only 'rdomain NAME' may follow)".into()),
    }
    let colons = arg.matches(':').count();
    if !arg.contains('[') && colons >= 2 {
        return Ok(Directive::ListenAddress {
            host: arg.clone(),
            port: None,
        });
    }
    let (host, port) = if let Some(inner) = arg.strip_prefix('[') {
        let Some((h, after)) = inner.split_once(']') else {
            return Err(format!("bad address:port usage in '{arg}'"));
        };
        match after {
            "" => (h.to_string(), None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h.to_string(), Some(p.to_string())),
                None => return Err(format!("bad address:port usage in '{arg}'")),
            },
        }
    } else {
        match arg.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (arg.clone(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(port_value(root, &p).ok_or_else(|| {
            format!("bad port number '{p}' in ListenAddress {arg} (give 1 to 65535)")
        })?),
    };
    Ok(Directive::ListenAddress { host, port })
}

/// servconf.c case sAuthenticationMethods with auth2.c `auth2_methods_valid()`: `any` alone,
/// or comma-separated lists of known methods.
fn auth_methods(args: &[String]) -> Result<Vec<String>, String> {
    const METHODS: &[&str] = &[
        "publickey",
        "password",
        "keyboard-interactive",
        "hostbased",
        "gssapi-with-mic",
    ];
    if args.is_empty() {
        return Err("no AuthenticationMethods specified".into());
    }
    if args.iter().any(|a| a == "any") {
        if args.len() > 1 {
            return Err("\"any\" must appear alone in AuthenticationMethods".into());
        }
        return Ok(vec!["any".to_string()]);
    }
    for list in args {
        for m in list.split(',') {
            let name = m.split(':').next().unwrap_or("");
            if !METHODS.contains(&name) || (m.contains(':') && name != "keyboard-interactive") {
                return Err(format!(
                    "invalid AuthenticationMethods method list '{list}'"
                ));
            }
        }
    }
    Ok(args.to_vec())
}

/// Whether a typed directive may appear inside an inactive `Match` block.
pub fn allowed_in_match(d: &Directive) -> bool {
    match d {
        Directive::Port(_)
        | Directive::ListenAddress { .. }
        | Directive::AddressFamily(_)
        | Directive::StrictModes(_)
        | Directive::UsePam(_)
        | Directive::UseDns(_) => false,
        Directive::Other { in_match } => *in_match,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(File, Vec<String>)> {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let mut w = Vec::new();
        let mut l = Loader {
            root: &root,
            stack: vec![],
            warnings: &mut w,
        };
        let f = l.parse_file(Path::new("/etc/ssh/sshd_config"), text.as_bytes(), 0)?;
        Ok((f, w))
    }

    fn dirs(text: &str) -> Vec<Directive> {
        parse(text)
            .unwrap()
            .0
            .items
            .into_iter()
            .map(|i| i.directive)
            .collect()
    }

    #[test]
    fn listen_address_forms() {
        let d = dirs(
            "ListenAddress 192.0.2.1\nListenAddress 192.0.2.1:2222\nListenAddress [2001:db8::1]:2200\n\
             ListenAddress 2001:db8::2\nListenAddress [2001:db8::3]\nListenAddress host.example:22 rdomain x\n",
        );
        let la = |h: &str, p: Option<u16>| Directive::ListenAddress {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            d,
            [
                la("192.0.2.1", None),
                la("192.0.2.1", Some(2222)),
                la("2001:db8::1", Some(2200)),
                la("2001:db8::2", None),
                la("2001:db8::3", None),
                la("host.example", Some(22)),
            ]
        );
        for bad in [
            "ListenAddress 192.0.2.1:0",
            "ListenAddress 192.0.2.1:99999",
            "ListenAddress [2001:db8::1]x",
            "ListenAddress 192.0.2.1 extra",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_checked_with_line_numbers() {
        let err = parse("# c\n\nPort 22\nPort 70000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/ssh/sshd_config line 4") && err.contains("70000"),
            "{err}"
        );
        let err = parse("PermitRootLogin\n").unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("no argument"),
            "{err}"
        );
        assert!(parse("PermitRootLogin maybe").is_err());
        assert!(parse("PubkeyAuthentication yes no").is_err());
        assert!(parse("Match Foo bar").is_err());
        assert!(parse("AuthorizedKeysCommand relative/cmd").is_err());
        assert!(parse("AuthenticationMethods any publickey").is_err());
        assert!(parse("AuthenticationMethods publickey,bogus").is_err());
        assert!(parse("AllowUsers root@192.0.2.1/24").is_err());
        assert!(parse("DenyUsers root@192.0.2.0/24 admin@*.example").is_ok());
        assert!(parse("Banner \"/etc/unclosed").is_err());
        assert!(parse("Port=22\nport = 2222\nPORT\t\"2200\"  # c").is_ok());
    }

    #[test]
    fn keywords_case_insensitive_comments_and_unknowns() {
        let (f, w) = parse("  pErMiTrOoTlOgIn=No # why\n#Port 1\nX11Forwarding no\n").unwrap();
        assert_eq!(
            f.items[0].directive,
            Directive::PermitRootLogin(PermitRootLogin::No)
        );
        assert_eq!(f.items.len(), 2);
        assert!(w.is_empty());
        // sshd refuses an unknown keyword: so does the tool, naming the line.
        let e = format!("{:#}", parse("Port 22\nFrobnicate yes\n").unwrap_err());
        assert!(e.contains("line 2") && e.contains("Frobnicate"), "{e}");
    }

    #[test]
    fn service_names_from_the_roots_services() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/services"),
            "# comment\nssh\t\t22/tcp\t\t\t# SSH Remote Login Protocol\nalt 2222/udp\nalt2 2223/tcp other\n",
        )
        .unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert_eq!(port_value(&root, "ssh"), Some(22));
        assert_eq!(port_value(&root, "other"), Some(2223));
        assert_eq!(port_value(&root, "alt"), None);
        assert_eq!(port_value(&root, "0"), None);
        assert_eq!(port_value(&root, "65536"), None);
        assert_eq!(port_value(&root, "022"), Some(22));
    }

    #[test]
    fn keyword_and_rest_as_strdelim_splits_them() {
        let k = |raw| keyword_and_rest(raw).map(|(k, r)| (k, r.to_string()));
        let some = |k: &str, r: &str| Some((k.to_string(), r.to_string()));
        assert_eq!(k("  Port=22\r"), some("Port", "22"));
        assert_eq!(k("Port = 22 # c"), some("Port", "22 # c"));
        assert_eq!(k("= Port 22"), some("Port", "22"));
        assert_eq!(k("Po\"rt\" 22"), some("Port", "22"));
        assert_eq!(k("Port"), some("Port", ""));
        for none in ["", " \t ", "#Port 22", "# Port 22", "=", "\"Port 22"] {
            assert_eq!(k(none), None, "{none:?}");
        }
    }

    fn line<'a>(keyword: &'a str, rest: &'a str) -> Line<'a> {
        Line {
            path: Path::new("/etc/ssh/x.conf"),
            number: 7,
            keyword,
            rest,
            args: argv_split(rest).unwrap(),
        }
    }

    #[test]
    fn one_value_flag_and_list_arguments() {
        let msg = |r: Result<String>| format!("{:#}", r.unwrap_err());
        assert_eq!(line("Port", "22").one().unwrap(), "22");
        let e = msg(line("Port", "22 23").one().map(String::from));
        assert!(
            e.contains("/etc/ssh/x.conf line 7")
                && e.contains("garbage at end of line after Port 22"),
            "{e}"
        );
        assert!(msg(line("Port", "\"\"").one().map(String::from)).contains("empty value"));
        assert!(msg(line("Port", "# c").one().map(String::from)).contains("missing its value"));
        assert!(line("UsePAM", "YES").flag().unwrap());
        assert!(!line("UsePAM", "no").flag().unwrap());
        let e = msg(line("UsePAM", "1").flag().map(|b| b.to_string()));
        assert!(e.contains("UsePAM must be yes or no, not '1'"), "{e}");
        assert_eq!(line("AllowGroups", "a b").list().unwrap(), ["a", "b"]);
        assert!(line("AllowGroups", "a \"\"").list().is_err());
    }

    #[test]
    fn flag_keywords_and_raw_rest_keywords() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let d = |kw: &str, rest: &str| directive(&root, &kw.to_ascii_lowercase(), &line(kw, rest));
        assert_eq!(d("UseDNS", "yes").unwrap(), Directive::UseDns(true));
        assert_eq!(
            d("StrictModes", "no").unwrap(),
            Directive::StrictModes(false)
        );
        assert_eq!(d("UsePAM", "yes").unwrap(), Directive::UsePam(true));
        assert_eq!(
            d("PubkeyAuthentication", "no").unwrap(),
            Directive::PubkeyAuthentication(false)
        );
        // The whole rest, quotes and spaces kept, as servconf.c takes it.
        assert_eq!(
            d("AuthorizedKeysCommand", "/bin/keys \"%u\" x").unwrap(),
            Directive::AuthorizedKeysCommand(Some("/bin/keys \"%u\" x".into()))
        );
        assert_eq!(
            d("AuthorizedKeysCommand", "NONE").unwrap(),
            Directive::AuthorizedKeysCommand(None)
        );
        assert!(d("AuthorizedKeysCommand", "keys").is_err());
        assert_eq!(
            d("X11Forwarding", "no").unwrap(),
            Directive::Other { in_match: true }
        );
        assert_eq!(
            d("Protocol", "2").unwrap(),
            Directive::Other { in_match: false }
        );
        let e = format!("{:#}", d("Frobnicate", "yes").unwrap_err());
        assert!(e.contains("unknown keyword 'Frobnicate'"), "{e}");
    }

    #[test]
    fn permit_root_login_synonyms() {
        assert_eq!(
            dirs("PermitRootLogin without-password"),
            [Directive::PermitRootLogin(
                PermitRootLogin::ProhibitPassword
            )]
        );
        assert_eq!(
            dirs("PermitRootLogin forced-commands-only"),
            [Directive::PermitRootLogin(
                PermitRootLogin::ForcedCommandsOnly
            )]
        );
    }
}
