//! Configuration file schema and control-socket protocol.
//!
//! This crate owns the TOML configuration of `vswitchd` ([`Config`]): its
//! schema, with unknown keys refused, and its validation. Every error is a
//! [`ConfigError`] naming `file:line:column`, the field's path
//! (`bridge[0].port[1].tag`) and what is wrong, so a user can fix the file
//! without reading code. It also owns the JSON-RPC 2.0 types of the control
//! socket ([`rpc`]), shared by `vswitchd`, `vswitchctl` and
//! `container-hostd`.
//!
//! It sits at the bottom of the dependency graph with `wire`: it must not
//! know about DPDK or the datapath. Turning a validated [`Config`] into
//! EAL arguments, ports and PMD threads is `vswitch`'s job.

mod error;
pub mod qos;
pub mod rpc;
mod schema;
pub(crate) mod validate;

pub use error::ConfigError;
pub use validate::{in_subnet, is_unicast, network, parse_ip_net, parse_mac, prefix_mask};

/// IANA's UDP port for VXLAN, a VXLAN tunnel's default `dst_port`.
pub const VXLAN_PORT: u16 = 4789;
/// The transmit offloads a port's `tx_offload` list may name.
pub const TX_OFFLOADS: [&str; 8] =
    ["outer_ipv4_cksum", "outer_udp_cksum", "tso", "vxlan_tso", "geneve_tso", "gre_tso", "ipv4_cksum", "l4_cksum"];

/// IANA's UDP port for Geneve, a Geneve tunnel's default `dst_port`.
pub const GENEVE_PORT: u16 = 6081;
pub use schema::{
    Aqm, ArpEntry, Bridge, ControlSection, Controller, EalSection, EmcMode, FailMode, Marker, MegaflowLimit,
    MemoryMode, PmdSection, Policer, Port, PortType, RateUnit, Route, RxqAssignment, Shaper, ShaperClass, ShaperQueue,
    TunnelKey, TunnelTos, TxOffload, VlanMode,
};

use std::path::Path;

/// A whole, validated configuration file.
pub use schema::Config;

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Validates a configuration built in memory (a run-time change from
    /// the control socket); the error names the field path and why, as
    /// `` `bridge[0].port[2].tag`: why ``.
    pub fn check(&self) -> Result<(), String> {
        validate::validate(self).map_err(|(path, why)| format!("`{}`: {why}", error::display_path(&path)))
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| error::from_toml(text, file, &e))?;
        validate::validate(&cfg).map_err(|(path, why)| error::at_path(text, file, &path, why))?;
        Ok(cfg)
    }
}
