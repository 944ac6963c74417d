//! What the crate's tests share: a port table for flow-mods and a
//! sample frame.

use crate::table::Refs;
use wire::build::Udp4Frame;
use wire::{EthernetAddress, Ipv4Address};

/// Ports 0-7 exist; no group or meter does.
pub(crate) struct Ports;

impl Refs for Ports {
    fn port_exists(&self, p: u32) -> bool {
        p < 8
    }
    fn group_exists(&self, _: u32) -> bool {
        false
    }
    fn meter_exists(&self, _: u32) -> bool {
        false
    }
}

/// An 80-byte UDP frame from 02:00:00:00:00:01, 10.0.0.1:1000 to
/// 02:00:00:00:00:02, 10.0.0.2:53, tagged with `vlan` when given.
pub(crate) fn udp4(vlan: Option<u16>) -> Vec<u8> {
    let f = Udp4Frame {
        src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
        vlan,
        src_ip: Ipv4Address([10, 0, 0, 1]),
        dst_ip: Ipv4Address([10, 0, 0, 2]),
        src_port: 1000,
        dst_port: 53,
        ttl: 64,
    };
    // The headers fill the front; the rest is UDP payload.
    let mut b = vec![0u8; 80];
    f.emit(&mut b, true);
    b
}
