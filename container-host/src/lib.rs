//! The container host service: `container-hostd` and the CNI plugin
//! (not built yet: its issue is open). It is to own network
//! namespaces, veths and SR-IOV VFs, addresses and routes over netlink, IPAM
//! with crash-safe leases, cgroups (keeping containers' cpusets off the PMD
//! cores), and per-container QoS and policy compiled into flows.
//!
//! It talks to `vswitchd` only through the control socket, using the protocol
//! types of `config`; it must not link the datapath.
