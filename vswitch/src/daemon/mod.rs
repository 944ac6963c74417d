//! What the control thread runs: the running switch and its run-time
//! changes ([`switch`]), the control socket's methods ([`control`]), the
//! OpenFlow controller connections ([`openflow`]) and the event loop that
//! serves them all ([`server`]); and the operator's tools: Prometheus
//! metrics ([`metrics`]), packet capture ([`capture`]) and packet traces
//! through the tables ([`trace`]); the underlay's routes, neighbours and
//! tunnel paths ([`underlay`]).
//!
//! The daemon never touches a packet on the fast path: it builds
//! configuration and flow tables, publishes them for the PMD threads, and
//! reads the counters those threads keep.

pub mod capture;
pub mod control;
pub mod metrics;
pub mod openflow;
pub mod qos;
pub mod server;
pub mod switch;
pub mod trace;
pub mod underlay;

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
