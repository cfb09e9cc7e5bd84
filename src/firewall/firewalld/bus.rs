//! firewalld's D-Bus interface (`org.fedoraproject.FirewallD1`, its `.zone` interface), the only
//! way to change a firewalld ≥ 2.0 ruleset (its table is flagged `owner`) and ~25× cheaper per call
//! than `firewall-cmd`. Runtime calls only: nothing here touches the permanent configuration.
use std::collections::HashMap;
use std::time::Duration;

use zbus::blocking::{connection, Connection, Proxy};
use zbus::zvariant::{OwnedValue, Value};

const SERVICE: &str = "org.fedoraproject.FirewallD1";
const PATH: &str = "/org/fedoraproject/FirewallD1";
const MAIN: &str = "org.fedoraproject.FirewallD1";
const ZONE: &str = "org.fedoraproject.FirewallD1.zone";
/// A call firewalld does not answer within this (a hung daemon) is an error, not a hang; its
/// slowest runtime call, a rule change under a large ruleset, takes well under a second.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No system bus, or nobody owns firewalld's name on it.
    #[error("firewalld does not answer on the system bus ({address}): {detail}")]
    Unreachable { address: String, detail: String },
    /// firewalld refused the call with its own error (`INVALID_RULE: ...`, `INVALID_ZONE: ...`).
    #[error("firewalld refused {call}: {message}")]
    Refused { call: String, message: String },
    /// The bus or the daemon went away, or answered with something unexpected.
    #[error("D-Bus call {call} to firewalld failed: {detail}")]
    Failed { call: String, detail: String },
}

impl BusError {
    /// firewalld's own error code (`ALREADY_ENABLED`, `NOT_ENABLED`, `INVALID_RULE`, ...): the
    /// message of its `org.fedoraproject.FirewallD1.Exception` starts with it.
    pub fn code(&self) -> Option<&str> {
        match self {
            BusError::Refused { message, .. } => message.split(':').next().map(str::trim),
            _ => None,
        }
    }
}

/// The system bus address the tool uses, as libdbus and zbus pick it.
pub fn system_bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .unwrap_or_else(|_| "unix:path=/var/run/dbus/system_bus_socket".to_string())
}

/// One active zone as `getActiveZones` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveZone {
    pub name: String,
    pub interfaces: Vec<String>,
    pub sources: Vec<String>,
}

/// The runtime settings of a zone that decide whether the support gets in (`getZoneSettings2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneSettings {
    /// `default`, `ACCEPT`, `DROP`, `%%REJECT%%`.
    pub target: String,
    pub services: Vec<String>,
    /// (port or range, protocol).
    pub ports: Vec<(String, String)>,
    pub sources: Vec<String>,
    pub interfaces: Vec<String>,
    pub rich_rules: Vec<String>,
}

pub struct Client {
    conn: Connection,
}

impl Client {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` honoured) and checks that firewalld
    /// owns its name there and says it is running.
    pub fn connect() -> Result<Client, BusError> {
        Client::connect_at(&system_bus_address())
    }

    /// As [`Client::connect`], on the bus at `address` (`unix:abstract=...`, `unix:path=...`).
    pub fn connect_at(address: &str) -> Result<Client, BusError> {
        let address = address.to_string();
        let unreachable = |e: zbus::Error| BusError::Unreachable {
            address: address.clone(),
            detail: one_line(&e.to_string()),
        };
        let builder = match unix_socket(&address) {
            Some(socket) => socket
                .map(connection::Builder::unix_stream)
                .map_err(|e| zbus::Error::Address(format!("cannot connect: {e}"))),
            None => connection::Builder::address(address.as_str()),
        };
        let conn = builder
            .and_then(|b| b.method_timeout(CALL_LIMIT).build())
            .map_err(unreachable)?;
        let client = Client { conn };
        let state: String = client
            .proxy(MAIN)
            .and_then(|p| p.get_property("state"))
            .map_err(unreachable)?;
        if state != "RUNNING" {
            return Err(BusError::Unreachable {
                address,
                detail: format!("its state is {state}, not RUNNING"),
            });
        }
        Ok(client)
    }

    fn proxy(&self, interface: &'static str) -> zbus::Result<Proxy<'_>> {
        Proxy::new(&self.conn, SERVICE, PATH, interface)
    }

    fn call<B, R>(
        &self,
        interface: &'static str,
        method: &str,
        what: String,
        body: &B,
    ) -> Result<R, BusError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        self.proxy(interface)
            .and_then(|p| p.call(method, body))
            .map_err(|e| classify(what, e))
    }

    pub fn default_zone(&self) -> Result<String, BusError> {
        self.call(MAIN, "getDefaultZone", "getDefaultZone".into(), &())
    }

    pub fn active_zones(&self) -> Result<Vec<ActiveZone>, BusError> {
        let map: HashMap<String, HashMap<String, Vec<String>>> =
            self.call(ZONE, "getActiveZones", "getActiveZones".into(), &())?;
        let mut zones: Vec<ActiveZone> = map
            .into_iter()
            .map(|(name, mut m)| ActiveZone {
                name,
                interfaces: m.remove("interfaces").unwrap_or_default(),
                sources: m.remove("sources").unwrap_or_default(),
            })
            .collect();
        zones.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(zones)
    }

    pub fn rich_rules(&self, zone: &str) -> Result<Vec<String>, BusError> {
        self.call(
            ZONE,
            "getRichRules",
            format!("getRichRules({zone})"),
            &(zone,),
        )
    }

    pub fn zone_settings(&self, zone: &str) -> Result<ZoneSettings, BusError> {
        let map: HashMap<String, OwnedValue> = self.call(
            ZONE,
            "getZoneSettings2",
            format!("getZoneSettings2({zone})"),
            &(zone,),
        )?;
        Ok(settings_from(&map))
    }

    /// `addRichRule(zone, rule, timeout)`; a timeout of 0 means none.
    pub fn add_rich_rule(&self, zone: &str, rule: &str, timeout_secs: u32) -> Result<(), BusError> {
        let timeout = i32::try_from(timeout_secs).unwrap_or(i32::MAX);
        let _: String = self.call(
            ZONE,
            "addRichRule",
            format!("addRichRule({zone}, '{rule}')"),
            &(zone, rule, timeout),
        )?;
        Ok(())
    }

    pub fn remove_rich_rule(&self, zone: &str, rule: &str) -> Result<(), BusError> {
        let _: String = self.call(
            ZONE,
            "removeRichRule",
            format!("removeRichRule({zone}, '{rule}')"),
            &(zone, rule),
        )?;
        Ok(())
    }
}

/// Connects a `unix:` bus address (each of a `;`-separated list in turn) in the calling thread —
/// in its network namespace, which owns abstract sockets — rather than on zbus's helper threads,
/// which may sit in another one. `None` for an address that has no `unix:` entry.
fn unix_socket(address: &str) -> Option<std::io::Result<std::os::unix::net::UnixStream>> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let mut last = None;
    for entry in address.split(';') {
        let Some(params) = entry.strip_prefix("unix:") else {
            continue;
        };
        for kv in params.split(',') {
            let target = match kv.split_once('=') {
                Some(("abstract", v)) => SocketAddr::from_abstract_name(unescape(v).as_bytes()),
                Some(("path", v)) => SocketAddr::from_pathname(unescape(v)),
                _ => continue,
            };
            let result = target.and_then(|t| UnixStream::connect_addr(&t));
            if result.is_ok() {
                return Some(result);
            }
            last = Some(result);
        }
    }
    last
}

/// D-Bus address values escape bytes as `%XX`.
fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// firewalld's own refusals keep their message (`INVALID_RULE: ...`); anything else (the bus
/// gone, a timeout) is a failure of the call.
fn classify(call: String, e: zbus::Error) -> BusError {
    match e {
        zbus::Error::MethodError(name, Some(message), _)
            if name.as_str().starts_with("org.fedoraproject.FirewallD1") =>
        {
            BusError::Refused {
                call,
                message: one_line(&message),
            }
        }
        other => BusError::Failed {
            call,
            detail: one_line(&other.to_string()),
        },
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn settings_from(map: &HashMap<String, OwnedValue>) -> ZoneSettings {
    let strings = |key: &str| map.get(key).map(|v| strings_of(v)).unwrap_or_default();
    let target = match map.get("target").map(|v| &**v) {
        Some(Value::Str(s)) => s.to_string(),
        _ => "default".to_string(),
    };
    let ports = match map.get("ports").map(|v| &**v) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|p| match p {
                Value::Structure(s) => match s.fields() {
                    [Value::Str(port), Value::Str(proto)] => {
                        Some((port.to_string(), proto.to_string()))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    ZoneSettings {
        target,
        services: strings("services"),
        ports,
        sources: strings("sources"),
        interfaces: strings("interfaces"),
        rich_rules: strings("rules_str"),
    }
}

fn strings_of(v: &Value<'_>) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| match x {
                Value::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        Value::Value(inner) => strings_of(inner),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_address_values() {
        assert_eq!(unescape("oa%2dfwd%3d1"), "oa-fwd=1");
        assert_eq!(unescape("/run/dbus/x%"), "/run/dbus/x%");
        assert!(unix_socket("tcp:host=localhost,port=1").is_none());
        let missing = unix_socket("unix:path=/nonexistent/oa-bus;unix:abstract=oa-none-here");
        assert!(missing.is_some_and(|r| r.is_err()));
    }
}
