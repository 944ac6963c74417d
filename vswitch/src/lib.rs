//! The switch.
//!
//! This crate owns bridges and ports, the fast path (flow extraction,
//! exact-match cache, megaflow cache, action execution), tunnels, QoS,
//! connection tracking and NAT, the ARP responder, upcalls and revalidation,
//! and the control socket, with the binaries `vswitchd` and `vswitchctl`.
//! It builds on `pmd` for packets, ports and PMD threads, on `ofproto` for
//! OpenFlow and on `config` for the configuration schema.
//!
//! So far it holds the MAC learning table of L2 switching ([`mac_table`]);
//! the rest arrives with the vswitchd issue.

pub mod mac_table;
