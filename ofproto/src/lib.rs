//! OpenFlow 1.3 for the switch.
//!
//! This crate will own the OpenFlow wire codec for every message, flow keys
//! and their extraction from `wire` views, matches and masks, the tuple-space
//! classifier, flow tables, groups, meters, controller connections and roles,
//! and the translation of a packet's walk through the tables into datapath
//! actions plus a megaflow mask.
//!
//! It must not know about DPDK, mbufs, ports or threads: it sees packets only
//! as bytes through `wire`, so that it is testable and fuzzable without an
//! EAL.
//!
//! So far: the wire codec ([`ofp`]) for every OpenFlow 1.3 message, flow
//! keys ([`flow`]), the tuple-space classifier with staged lookup, prefix
//! tracking and wildcard reporting ([`classifier`]), whose rules live in
//! copy-on-write containers that snapshots share (`persist`), flow tables with the spec's
//! semantics that look up through it ([`table`]) and the switch side of
//! controller sessions, free of I/O ([`agent`]); the translation of a
//! key's walk through the tables into replayable steps plus the mask of
//! the bits it examined ([`xlate`]), and the per-PMD megaflow cache that
//! keeps them ([`megaflow`]).

pub mod agent;
pub mod classifier;
pub mod flow;
pub mod megaflow;
pub mod ofp;
mod persist;
pub mod table;
pub mod trace;
pub mod xlate;
