//! The keywords of sshd_config this tool does not interpret, with the scope servconf.c's
//! keyword table gives each: allowed inside `Match` (SSHCFG_ALL) or only globally
//! (SSHCFG_GLOBAL). A global keyword inside an inactive Match block makes sshd refuse the file.
//!
//! Keywords also differ by release (OpenSSH's release notes, checked against `sshd -T` of 8.4,
//! 9.2 and 10.0): a keyword newer than the installed sshd makes it refuse the whole file ("Bad
//! configuration option"), and renamed ones keep their old name as an alias in servconf.c but
//! `sshd -T` prints the name of its own release.

/// Known keywords sshd allows inside `Match` (SSHCFG_ALL in servconf.c's keyword table).
pub const MATCH_KEYWORDS: &[&str] = &[
    "acceptenv",
    "allowagentforwarding",
    "allowgroups",
    "allowstreamlocalforwarding",
    "allowtcpforwarding",
    "allowusers",
    "authenticationmethods",
    "authorizedkeyscommand",
    "authorizedkeyscommanduser",
    "authorizedkeysfile",
    "authorizedprincipalscommand",
    "authorizedprincipalscommanduser",
    "authorizedprincipalsfile",
    "banner",
    "casignaturealgorithms",
    "challengeresponseauthentication",
    "channeltimeout",
    "chrootdirectory",
    "clientalivecountmax",
    "clientaliveinterval",
    "denygroups",
    "denyusers",
    "disableforwarding",
    "exposeauthinfo",
    "forcecommand",
    "gatewayports",
    "gssapiauthentication",
    "hostbasedacceptedalgorithms",
    "hostbasedacceptedkeytypes",
    "hostbasedauthentication",
    "hostbasedusesnamefrompacketonly",
    "ignorerhosts",
    "include",
    "ipqos",
    "kbdinteractiveauthentication",
    "kerberosauthentication",
    "loglevel",
    "logverbose",
    "maxauthtries",
    "maxsessions",
    "passwordauthentication",
    "permitemptypasswords",
    "permitlisten",
    "permitopen",
    "permitrootlogin",
    "permittty",
    "permittunnel",
    "permituserrc",
    "pamservicename",
    "refuseconnection",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "pubkeyauthoptions",
    "rdomain",
    "rekeylimit",
    "revokedkeys",
    "setenv",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "trustedusercakeys",
    "unusedconnectiontimeout",
    "x11displayoffset",
    "x11forwarding",
    "x11uselocalhost",
    // Not in sshd_config(5)'s Match list, yet SSHCFG_ALL (checked against sshd 9.2).
    "requiredrsasize",
    "rhostsrsaauthentication",
    "rsaauthentication",
    // OpenSSH 10.0, and Red Hat's Kerberos patch.
    "refuseconnection",
    "kerberosusekuserok",
];

/// Known keywords sshd allows only outside `Match` (SSHCFG_GLOBAL), including deprecated and
/// distribution ones (Debian's DebianBanner and GSSAPI key exchange, Fedora's GSSAPI options).
pub const GLOBAL_KEYWORDS: &[&str] = &[
    "addressfamily",
    "ciphers",
    "compression",
    "debianbanner",
    "fingerprinthash",
    "gssapicleanupcredentials",
    "gssapienablek5users",
    "gssapikeyexchange",
    "gssapikexalgorithms",
    "gssapistorecredentialsonrekey",
    "gssapistrictacceptorcheck",
    "hostcertificate",
    "hostkey",
    "hostkeyagent",
    "hostkeyalgorithms",
    "ignoreuserknownhosts",
    "keepalive",
    "kerberosgetafstoken",
    "kerberosorlocalpasswd",
    "kerberosticketcleanup",
    "kexalgorithms",
    "keyregenerationinterval",
    "listenaddress",
    "logingracetime",
    "macs",
    "maxstartups",
    "modulifile",
    "persourcemaxstartups",
    "persourcepenalties",
    "persourcepenaltyexemptlist",
    "persourcenetblocksize",
    // OpenSSH 9.8 and 10.0.
    "persourcepenalties",
    "persourcepenaltyexemptlist",
    "sshdauthpath",
    "sshdsessionpath",
    "permituserenvironment",
    "pidfile",
    "port",
    "printlastlog",
    "printmotd",
    "protocol",
    "securitykeyprovider",
    "serverkeybits",
    "sshdauthpath",
    "sshdsessionpath",
    "strictmodes",
    "subsystem",
    "syslogfacility",
    "tcpkeepalive",
    "usedns",
    "uselogin",
    "usepam",
    "useprivilegeseparation",
    "versionaddendum",
    "xauthlocation",
];

/// Some(true) allowed in Match, Some(false) global only, None unknown.
pub fn scope(kw: &str) -> Option<bool> {
    if MATCH_KEYWORDS.contains(&kw) {
        Some(true)
    } else if GLOBAL_KEYWORDS.contains(&kw) {
        Some(false)
    } else {
        None
    }
}

/// An OpenSSH release, (major, minor).
pub type Release = (u32, u32);

/// Keywords by the release that introduced them; an older sshd refuses them. Only those whose
/// release is certain are listed.
const SINCE: &[(&str, Release)] = &[
    ("casignaturealgorithms", (7, 8)),
    ("permitlisten", (7, 8)),
    ("include", (8, 2)),
    ("pubkeyauthoptions", (8, 2)),
    ("securitykeyprovider", (8, 2)),
    ("pubkeyacceptedalgorithms", (8, 5)),
    ("hostbasedacceptedalgorithms", (8, 5)),
    ("persourcemaxstartups", (8, 5)),
    ("persourcenetblocksize", (8, 5)),
    ("requiredrsasize", (9, 1)),
    ("channeltimeout", (9, 2)),
    ("unusedconnectiontimeout", (9, 2)),
    ("persourcepenalties", (9, 8)),
    ("persourcepenaltyexemptlist", (9, 8)),
    ("sshdsessionpath", (9, 8)),
    ("refuseconnection", (10, 0)),
    ("sshdauthpath", (10, 0)),
];

/// Renamed keywords: (old, new, release of the rename). The old name stays an alias.
const RENAMED: &[(&str, &str, Release)] = &[
    ("pubkeyacceptedkeytypes", "pubkeyacceptedalgorithms", (8, 5)),
    (
        "hostbasedacceptedkeytypes",
        "hostbasedacceptedalgorithms",
        (8, 5),
    ),
    // 8.7 made ChallengeResponseAuthentication an alias; before, both existed.
    (
        "challengeresponseauthentication",
        "kbdinteractiveauthentication",
        (8, 7),
    ),
];

/// When `release` refuses `kw` (lowercase): the release that introduced it, and the older name
/// that release knows, if any.
pub fn refused_by(kw: &str, release: Release) -> Option<(Release, Option<&'static str>)> {
    let (_, since) = SINCE.iter().find(|(k, _)| *k == kw)?;
    if release >= *since {
        return None;
    }
    let old = RENAMED
        .iter()
        .find(|(_, new, _)| *new == kw)
        .map(|(old, ..)| *old);
    Some((*since, old))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_by_release() {
        assert_eq!(
            refused_by("pubkeyacceptedalgorithms", (8, 4)),
            Some(((8, 5), Some("pubkeyacceptedkeytypes")))
        );
        assert_eq!(refused_by("pubkeyacceptedalgorithms", (8, 5)), None);
        assert_eq!(refused_by("include", (8, 0)), Some(((8, 2), None)));
        assert_eq!(refused_by("permitrootlogin", (7, 7)), None);
        // Every listed keyword is one the parser knows.
        for (k, _) in SINCE {
            assert!(
                scope(k).is_some() || ["include", "permitlisten"].contains(k),
                "{k}"
            );
        }
    }
}
