//! The switch.
//!
//! This crate owns bridges and ports, the fast path (flow extraction,
//! exact-match cache, megaflow cache, action execution), tunnels, QoS,
//! connection tracking and NAT, the ARP responder, upcalls and revalidation,
//! and the control socket, with the binaries `vswitchd` and `vswitchctl`.
//! It builds on `pmd` for packets, ports and PMD threads, on `ofproto` for
//! OpenFlow and on `config` for the configuration schema.
//!
//! So far it holds L2 switching: the MAC learning table ([`mac_table`]) and
//! the PMD pipeline that learns, floods and applies access/trunk VLAN
//! semantics, plus cross-connected port pairs ([`l2`]); the running switch
//! with its run-time changes and reload ([`switch`]); and the control
//! socket's methods ([`control`]) behind the `vswitchd` and `vswitchctl`
//! binaries; OpenFlow bridges ([`openflow`] for controllers, [`ofdp`] for
//! the tables in the fast path) with a per-PMD megaflow cache
//! (`ofproto::megaflow`) and packets grouped per megaflow.

pub mod alloc;
pub mod control;
pub mod l2;
pub mod mac_table;
pub mod ofdp;
pub mod openflow;
pub mod rewrite;
pub mod switch;

/// Reads everything a non-blocking stream has into `buf`; true when the
/// peer closed (or the stream failed). Shared by the control socket and
/// the OpenFlow connections of the daemon's event loop.
pub fn read_available(stream: &mut impl std::io::Read, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16384];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}
