//! The container host service (its content arrives with its own issue).
//!
//! This crate will own `container-hostd` and the CNI plugin: network
//! namespaces, veths and SR-IOV VFs, addresses and routes over netlink, IPAM
//! with crash-safe leases, cgroups (keeping containers' cpusets off the PMD
//! cores), and per-container QoS and policy compiled into flows.
//!
//! It talks to `vswitchd` only through the control socket, using the protocol
//! types of `config`; it must not link the datapath.
