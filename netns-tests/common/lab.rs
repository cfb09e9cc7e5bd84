//! The world of the firewall-backend tests (nft.rs, iptables.rs): a server with plain TCP
//! listeners (no sshd, no DNS), a support host and a stranger, each peer on its own link.
use std::net::TcpListener;

use super::{in_netns, Netns};

/// Server, support host and stranger; the server listens on every one of `ports` (IPv4 and
/// IPv6). Dropping it closes the listeners and deletes the namespaces.
pub struct ListenerLab {
    pub srv: Netns,
    pub sup: Netns,
    pub stranger: Netns,
    _listeners: Vec<TcpListener>,
}

impl ListenerLab {
    /// `names` are the namespaces' prefixes (server, support, stranger); the address lists are
    /// CIDRs, the server's side and the peer's side of the support link, then of the stranger's.
    pub fn new(
        names: [&str; 3],
        srv_sup: &[&str],
        sup: &[&str],
        srv_str: &[&str],
        stranger_addrs: &[&str],
        ports: &[u16],
    ) -> ListenerLab {
        let srv = Netns::new(names[0]);
        let sup_ns = Netns::new(names[1]);
        let stranger = Netns::new(names[2]);
        srv.link("vsup", &sup_ns, "vsrv", srv_sup, sup);
        srv.link("vstr", &stranger, "vsrv", srv_str, stranger_addrs);
        // A dual-stack listener per port, bound by a thread inside the server namespace: the
        // kernel completes the handshakes into their backlog, which is all `tcp_connects` needs.
        let listeners = in_netns(&srv, || {
            ports
                .iter()
                .map(|p| {
                    TcpListener::bind(("::", *p))
                        .expect("bind the SSH port in the server namespace")
                })
                .collect()
        });
        ListenerLab {
            srv,
            sup: sup_ns,
            stranger,
            _listeners: listeners,
        }
    }
}
