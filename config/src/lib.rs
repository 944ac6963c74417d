//! Configuration schema and control-socket protocol (content arrives with the
//! vswitchd issue).
//!
//! This crate will own the TOML configuration file's schema and its
//! validation (errors naming file:line:column, the field and why) and the
//! JSON-RPC types shared by `vswitchd`, `vswitchctl` and `container-hostd`.
//! It sits at the bottom of the dependency graph with `wire`: it must not know
//! about DPDK or the datapath.
