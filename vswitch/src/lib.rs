//! The switch: bridges, ports and the packets' way through them.
//!
//! The crate has two halves. The [`datapath`] is what the PMD threads run
//! on every batch: the dispatch of a port's packets to its bridge, L2
//! switching, the OpenFlow fast path with its caches, header rewrites,
//! tunnel encapsulation and the uplinks' underlay stack, one folder per
//! feature. The [`daemon`] is what the control thread runs: the running
//! switch built from a configuration and changed at run time, the control
//! socket's methods, the OpenFlow connections, the underlay's routes and
//! neighbours, and the event loop, with the binaries `vswitchd` and
//! `vswitchctl`. [`alloc`] is vswitchd's
//! global allocator.
//!
//! It builds on `pmd` for packets, ports and PMD threads, on `ofproto` for
//! OpenFlow (codec, tables, megaflow caches, translation) and on `config`
//! for the configuration schema and the control socket's protocol. It
//! knows DPDK only through `pmd`.

pub mod alloc;
pub mod daemon;
pub mod datapath;
