//! The container host service: what attaches containers to the switch.
//!
//! Owns today [`ipam`] (address pools of container networks with leases on
//! disk that are never handed out twice, whatever kills the process),
//! [`cni`] (the CNI protocol as a plugin sees it; the `vswitch-ipam` plugin
//! is built on both) and [`netlink`] (veth pairs set up inside containers'
//! namespaces). To come with the host service `vswitch-hostd` and the main
//! CNI plugin: attaching these to the switch, SR-IOV VFs and DPDK sockets,
//! cgroups (containers' cpusets kept off the PMD cores), and per-container
//! QoS and policy.
//!
//! It talks to `vswitchd` only through the control socket, using the protocol
//! types of `config`; it must not link the datapath.

pub mod cni;
pub mod control;
pub mod ipam;
pub mod ipam_plugin;
pub mod netlink;
