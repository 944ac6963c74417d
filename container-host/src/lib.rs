//! The container host service: what attaches containers to the switch.
//!
//! Owns today [`ipam`]: address pools of container networks with leases on
//! disk that are never handed out twice, whatever kills the process. To
//! come with the host service `vswitch-hostd` and the CNI plugin: network
//! namespaces, veths and SR-IOV VFs, addresses and routes over netlink,
//! cgroups (containers' cpusets kept off the PMD cores), and per-container
//! QoS and policy.
//!
//! It talks to `vswitchd` only through the control socket, using the protocol
//! types of `config`; it must not link the datapath.

pub mod cni;
pub mod ipam;
