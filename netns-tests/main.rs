//! Root-only end-to-end tests: a real kernel firewall, a real sshd, a real DNS server and a real
//! ssh client, in throwaway network namespaces. Without root they skip and say how to run them.
mod cli_errors;
mod cli_hostile_fw;
mod cli_iptables;
mod cli_json_changes;
mod cli_keys;
mod cli_ports;
mod cli_profiles;
mod common;
mod doctor;
mod e2e;
mod exact;
mod firewalld;
mod hostile_iptables;
mod hostile_nft;
mod iptables;
mod nft;
mod topology;
mod transaction;
