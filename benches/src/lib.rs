//! Packet-rate and latency benchmarks.
//!
//! [`gen`] is the traffic generator and sink: one DPDK thread on its own
//! core that sends frames (64-1518 bytes, configurable flows) on two ports
//! and counts what comes back, with a TSC timestamp in each payload for
//! latency. [`forwarders`] starts, pins and stops each forwarder under test:
//! ours (`vswitchd`: two cross-connected ports for p2p, a learning bridge
//! for l2), `dpdk-testpmd` io-forward and
//! OVS-DPDK; [`rig`] is one of them with the generator connected. The
//! `vswitch-bench` binary runs them in turn ([`compare`]) and prints a
//! side-by-side table with ratios, JSON and SVG charts ([`plot`]), finds
//! each one's RFC 2544 zero-loss rate ([`rfc2544`]) and soaks vswitchd
//! under churn for minutes ([`soak`]). See `benches/README.md`.

// Rates, latencies and cycle counts move between f64 and integers here;
// every value is positive and far below 2^52.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

pub mod attach;
pub mod compare;
pub mod flows;
pub mod forwarders;
pub mod gen;
pub mod plot;
pub mod qos;
pub mod rfc2544;
pub mod rig;
pub mod soak;
