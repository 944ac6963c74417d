//! `ofp_port` (port description) and port statistics.

use super::bytes::{Reader, Writer};
use super::error::OfpError;

/// `struct ofp_port`: a port's description (port-desc, port-status).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortDesc {
    /// OpenFlow port number.
    pub port_no: u32,
    /// MAC address.
    pub hw_addr: [u8; 6],
    /// Name (up to 15 bytes).
    pub name: String,
    /// OFPPC_* bits.
    pub config: u32,
    /// OFPPS_* bits (LINK_DOWN 1, BLOCKED 2, LIVE 4).
    pub state: u32,
    /// OFPPF_* current features.
    pub curr: u32,
    /// Advertised features.
    pub advertised: u32,
    /// Supported features.
    pub supported: u32,
    /// Peer's advertised features.
    pub peer: u32,
    /// Current speed, kbps.
    pub curr_speed: u32,
    /// Maximum speed, kbps.
    pub max_speed: u32,
}

/// OFPPS_LINK_DOWN.
pub const STATE_LINK_DOWN: u32 = 1;
/// OFPPS_LIVE.
pub const STATE_LIVE: u32 = 4;
/// OFPPC_PORT_DOWN.
pub const CONFIG_PORT_DOWN: u32 = 1;
/// OFPPC_NO_RECV.
pub const CONFIG_NO_RECV: u32 = 4;
/// OFPPC_NO_FWD.
pub const CONFIG_NO_FWD: u32 = 32;
/// OFPPC_NO_PACKET_IN.
pub const CONFIG_NO_PACKET_IN: u32 = 64;

impl PortDesc {
    /// Wire size.
    pub const LEN: usize = 64;
    /// Reads one.
    pub fn decode(r: &mut Reader<'_>) -> Result<PortDesc, OfpError> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let hw_addr = r.array()?;
        r.skip(2)?;
        Ok(PortDesc {
            port_no,
            hw_addr,
            name: r.string(16)?,
            config: r.u32()?,
            state: r.u32()?,
            curr: r.u32()?,
            advertised: r.u32()?,
            supported: r.u32()?,
            peer: r.u32()?,
            curr_speed: r.u32()?,
            max_speed: r.u32()?,
        })
    }
    /// Appends it.
    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.port_no).pad(4).bytes(&self.hw_addr).pad(2).string(&self.name, 16);
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            w.u32(v);
        }
    }
}

/// `struct ofp_port_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortStats {
    /// Port.
    pub port_no: u32,
    /// rx packets, tx packets, rx bytes, tx bytes, rx dropped, tx dropped,
    /// rx errors, tx errors, rx frame errors, rx overruns, rx CRC errors,
    /// collisions: in the spec's order.
    pub counters: [u64; 12],
    /// Seconds alive.
    pub duration_sec: u32,
    /// Nanoseconds beyond.
    pub duration_nsec: u32,
}

impl PortStats {
    /// Reads one.
    pub fn decode(r: &mut Reader<'_>) -> Result<PortStats, OfpError> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let mut counters = [0u64; 12];
        for c in &mut counters {
            *c = r.u64()?;
        }
        Ok(PortStats { port_no, counters, duration_sec: r.u32()?, duration_nsec: r.u32()? })
    }
    /// Appends it.
    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.port_no).pad(4);
        for c in self.counters {
            w.u64(c);
        }
        w.u32(self.duration_sec).u32(self.duration_nsec);
    }
}
