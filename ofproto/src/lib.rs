//! OpenFlow 1.3 for the switch, free of DPDK and of I/O.
//!
//! This crate owns the wire codec for every OpenFlow 1.3 message, decoded
//! into version-neutral types with the spec's error replies ([`ofp`]);
//! flow keys extracted from frames in one pass ([`flow`]); the tuple-space
//! classifier with staged lookup, prefix tracking and the report of every
//! bit a lookup examined ([`classifier`]), whose rules live in
//! copy-on-write containers that snapshots share; flow tables with the
//! spec's semantics ([`table`]); the switch side of controller sessions:
//! roles, groups, meters, statistics ([`agent`]); the translation of a
//! key's walk through the tables into replayable steps and the mask of the
//! bits it examined ([`xlate`]), and traces of that walk ([`trace`]); and
//! the per-PMD megaflow caches that keep the translations, with the
//! folders that add their counters to the tables ([`megaflow`]).
//!
//! It must not know about DPDK, mbufs, ports or sockets: it sees packets
//! only as bytes through `wire`, and controller connections only as whole
//! messages in and out, so that it is tested and fuzzed without an EAL.
//! It starts two kinds of threads of its own: a megaflow folder per bridge
//! and the reaper that frees megaflows away from the PMD threads.

pub mod agent;
pub mod classifier;
pub mod flow;
pub mod megaflow;
pub mod ofp;
mod persist;
pub mod table;
#[cfg(test)]
mod testing;
pub mod trace;
pub mod xlate;
