//! The OpenFlow 1.3 switch side of a bridge, free of I/O: it takes whole
//! messages from controller connections and returns the messages to send
//! back, keeping the bridge's flow tables, groups, meters, switch config
//! and controller roles. The daemon owns the sockets and the clock; the
//! [`Datapath`] trait is how the agent sees ports and sends packets.
//!
//! Per connection: version negotiation by HELLO (1.3 only: anything else
//! gets HELLO_FAILED/INCOMPATIBLE), echo, features, switch config,
//! barrier, roles with generation ids (slaves may not change state:
//! BAD_REQUEST/IS_SLAVE), asynchronous configuration, every multipart
//! request (replies split with OFPMPF_REPLY_MORE under 64 KB). A message
//! that does not decode gets the error reply the spec names, and the
//! connection goes on.

mod groups;
mod multipart;
#[cfg(test)]
mod tests;
pub mod tlv;

pub use groups::{Group, GroupCounters, Meter, MeterCounters};

use crate::megaflow::Folder;
use crate::ofp::action::Action;
use crate::ofp::error::{BadRequest, OfpError, NX_VENDOR_ID};
use crate::ofp::msg::{
    AsyncConfig, Features, FlowRemoved, Message, PacketIn, Role, SwitchConfig, FF_SEND_FLOW_REM, VERSION,
};
use crate::ofp::port::PortDesc;
use crate::table::{Refs, Removed, Tables};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A controller connection, as the daemon numbers them.
pub type ConnId = u64;

/// A port as the agent sees it.
#[derive(Debug, Clone, Default)]
pub struct PortInfo {
    /// OpenFlow port number.
    pub port_no: u32,
    /// Name.
    pub name: String,
    /// MAC address.
    pub hw_addr: [u8; 6],
    /// Link up.
    pub link_up: bool,
    /// OFPPC_* bits as configured by PORT_MOD.
    pub config: u32,
    /// Counters in `ofp_port_stats` order.
    pub counters: [u64; 12],
    /// Seconds since the port was added.
    pub duration_sec: u32,
    /// Speed, kbps.
    pub speed_kbps: u32,
}

/// A queue of a port (a class of its scheduler) as the agent sees it.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// Its counters as QUEUE statistics carry them (drops as errors).
    pub stats: crate::ofp::multipart::QueueStats,
    /// Guaranteed rate, tenths of a percent of the port's rate.
    pub min_rate: u16,
    /// Ceiling, tenths of a percent of the port's rate.
    pub max_rate: u16,
}

/// OFPQ_ALL: every queue.
pub const OFPQ_ALL: u32 = 0xffff_ffff;

/// What the agent needs from the switch around it.
pub trait Datapath {
    /// The bridge's ports' queues (none: no port is shaped).
    fn queues(&self) -> Vec<QueueInfo> {
        Vec::new()
    }
    /// The bridge's ports.
    fn ports(&self) -> Vec<PortInfo>;
    /// The bridge's OpenFlow port numbers (what a flow-mod's validation
    /// needs, without reading counters).
    fn port_nos(&self) -> Vec<u32> {
        self.ports().iter().map(|p| p.port_no).collect()
    }
    /// Runs `actions` on `data` as if it arrived on `in_port`
    /// (PACKET_OUT); an error is sent back to the controller.
    fn packet_out(&mut self, in_port: u32, actions: &[Action], data: &[u8]) -> Result<(), OfpError>;
    /// Sets a port's OFPPC_* bits (PORT_MOD); false for an unknown port.
    fn port_mod(&mut self, port_no: u32, config: u32, mask: u32) -> bool;
}

/// OFPCR_ROLE_* values.
pub mod role {
    /// No change (in requests).
    pub const NOCHANGE: u32 = 0;
    /// Equal (the default).
    pub const EQUAL: u32 = 1;
    /// Master.
    pub const MASTER: u32 = 2;
    /// Slave.
    pub const SLAVE: u32 = 3;
}

#[derive(Debug, Clone)]
struct Conn {
    hello_done: bool,
    role: u32,
    async_cfg: AsyncConfig,
}

/// The async defaults of the spec (7.3.10): masters/equals get packet-ins
/// for no-match and action, every port status and flow removal; slaves
/// get port status only.
const DEFAULT_ASYNC: AsyncConfig =
    AsyncConfig { packet_in_mask: [0b11, 0], port_status_mask: [0b111, 0b111], flow_removed_mask: [0b1111, 0] };

/// One bridge's OpenFlow state.
pub struct Agent {
    /// Datapath id.
    pub datapath_id: u64,
    /// Flow tables.
    pub tables: Tables,
    /// Groups by id.
    pub groups: BTreeMap<u32, Group>,
    /// Meters by id.
    pub meters: BTreeMap<u32, Meter>,
    /// Switch config (SET_CONFIG).
    pub config: SwitchConfig,
    /// The datapath description in DESC replies.
    pub dp_desc: String,
    conns: HashMap<ConnId, Conn>,
    generation_id: Option<u64>,
    /// Bumped on every change the datapath must see (tables, groups,
    /// meters): the daemon republishes its snapshot when it changes.
    pub generation: u64,
    /// Folds the datapath's megaflow counters into the tables' (the
    /// datapath hands its megaflows to it): a pass runs before flows
    /// expire and before flow and table statistics are answered (unless,
    /// in a big table, a long pass just ended: see
    /// `Folder::fold_for_stats`), so that both see every packet the
    /// datapath counted (a flow deleted by a controller reports what the
    /// last pass folded).
    pub folder: Arc<Folder>,
    /// Bumped on group and meter changes only (the datapath's megaflows
    /// outlive flow changes they cannot be affected by, not these).
    pub group_meter_generation: u64,
    /// The Geneve option map of the `tun_metadata<n>` fields.
    pub tlv: tlv::TlvTable,
}

/// OFPG_MAX / OFPG_ALL / OFPG_ANY.
const OFPG_MAX: u32 = 0xffff_ff00;
const OFPG_ALL: u32 = 0xffff_fffc;
/// OFPM_MAX / OFPM_ALL.
const OFPM_MAX: u32 = 0xffff_0000;
const OFPM_ALL: u32 = 0xffff_ffff;
/// Largest multipart reply body per message.
const MP_BUDGET: usize = 60_000;

struct AgentRefs<'a> {
    ports: Vec<u32>,
    groups: &'a BTreeMap<u32, Group>,
    meters: &'a BTreeMap<u32, Meter>,
}

impl Refs for AgentRefs<'_> {
    fn port_exists(&self, p: u32) -> bool {
        self.ports.contains(&p)
    }
    fn group_exists(&self, g: u32) -> bool {
        self.groups.contains_key(&g)
    }
    fn meter_exists(&self, m: u32) -> bool {
        self.meters.contains_key(&m)
    }
}

impl Agent {
    /// A bridge with `n_tables` tables of `max_entries` each.
    pub fn new(datapath_id: u64, n_tables: u8, max_entries: usize) -> Agent {
        Agent {
            datapath_id,
            tables: Tables::new(n_tables, max_entries),
            groups: BTreeMap::new(),
            meters: BTreeMap::new(),
            config: SwitchConfig { flags: 0, miss_send_len: 128 },
            dp_desc: String::new(),
            conns: HashMap::new(),
            generation_id: None,
            generation: 0,
            group_meter_generation: 0,
            folder: Folder::new(),
            tlv: tlv::TlvTable::default(),
        }
    }

    /// A connection opened: the HELLO to send first.
    pub fn connected(&mut self, id: ConnId) -> Vec<u8> {
        self.conns.insert(id, Conn { hello_done: false, role: role::EQUAL, async_cfg: DEFAULT_ASYNC });
        Message::Hello { versions: vec![VERSION] }.encode(0)
    }

    /// A connection closed.
    pub fn disconnected(&mut self, id: ConnId) {
        self.conns.remove(&id);
    }

    /// The role of a connection (None: not connected).
    pub fn role_of(&self, id: ConnId) -> Option<u32> {
        self.conns.get(&id).map(|c| c.role)
    }

    /// Connections that completed HELLO.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, u32)> + '_ {
        self.conns.iter().filter(|(_, c)| c.hello_done).map(|(id, c)| (*id, c.role))
    }

    /// Handles one whole message from connection `id` at `now_ms`; returns
    /// (connection, bytes) to send, and whether the connection must be
    /// closed (failed version negotiation).
    pub fn receive(
        &mut self,
        id: ConnId,
        frame: &[u8],
        dp: &mut dyn Datapath,
        now_ms: u64,
    ) -> (Vec<(ConnId, Vec<u8>)>, bool) {
        let mut out = Vec::new();
        let (xid, msg) = match Message::decode(frame) {
            Ok(x) => x,
            Err(e) => {
                out.push((id, Message::error(e.error, frame).encode(e.xid)));
                return (out, false);
            }
        };
        let Some(conn) = self.conns.get_mut(&id) else { return (out, true) };
        if let Message::Hello { versions } = &msg {
            // No bitmap: the header's version is the peer's highest.
            let ok = if versions.is_empty() { frame[0] >= VERSION } else { versions.contains(&VERSION) };
            if !ok {
                let e =
                    Message::Error { err_type: 0, code: 0, data: b"vswitchd speaks OpenFlow 1.3 (0x04) only".to_vec() };
                out.push((id, e.encode(xid)));
                return (out, true);
            }
            conn.hello_done = true;
            return (out, false);
        }
        let reply = |m: Message| (id, m.encode(xid));
        let is_slave = conn.role == role::SLAVE;
        let modifies = matches!(
            msg,
            Message::FlowMod(_)
                | Message::GroupMod(_)
                | Message::MeterMod(_)
                | Message::PortMod(_)
                | Message::PacketOut(_)
                | Message::TableMod(_)
        ) || matches!(
            msg,
            Message::Experimenter { experimenter: NX_VENDOR_ID, exp_type: tlv::NXT_TLV_TABLE_MOD, .. }
        );
        if is_slave && modifies {
            out.push(reply(Message::error(OfpError::BadRequest(BadRequest::IsSlave), frame)));
            return (out, false);
        }
        let result: Result<Vec<Message>, OfpError> = match msg {
            Message::EchoRequest(d) => Ok(vec![Message::EchoReply(d)]),
            Message::Experimenter { experimenter: NX_VENDOR_ID, exp_type: tlv::NXT_TLV_TABLE_MOD, data } => {
                let tables = &self.tables;
                self.tlv.modify(&data, |n| tlv::used_by_flows(tables, n)).map(|t| {
                    if t != self.tlv {
                        self.tlv = t;
                        self.generation += 1;
                        self.group_meter_generation += 1;
                    }
                    vec![]
                })
            }
            Message::Experimenter { experimenter: NX_VENDOR_ID, exp_type: tlv::NXT_TLV_TABLE_REQUEST, .. } => {
                Ok(vec![self.tlv.reply()])
            }
            Message::EchoReply(_) | Message::Error { .. } | Message::Experimenter { .. } => Ok(vec![]),
            Message::FeaturesRequest => Ok(vec![Message::FeaturesReply(Features {
                datapath_id: self.datapath_id,
                n_buffers: 0,
                n_tables: self.tables.n_tables(),
                auxiliary_id: 0,
                // FLOW_STATS, TABLE_STATS, PORT_STATS, GROUP_STATS.
                capabilities: 0x1 | 0x2 | 0x4 | 0x8,
            })]),
            Message::GetConfigRequest => Ok(vec![Message::GetConfigReply(self.config)]),
            Message::SetConfig(c) => {
                self.config = c;
                Ok(vec![])
            }
            Message::BarrierRequest => Ok(vec![Message::BarrierReply]),
            Message::RoleRequest(r) => self.role_request(id, r).map(|r| vec![Message::RoleReply(r)]),
            Message::GetAsyncRequest => Ok(vec![Message::GetAsyncReply(conn.async_cfg)]),
            Message::SetAsync(a) => {
                conn.async_cfg = a;
                Ok(vec![])
            }
            Message::FlowMod(fm) => {
                let refs = AgentRefs { ports: dp.port_nos(), groups: &self.groups, meters: &self.meters };
                match tlv::check_flow_mod(&self.tlv, &fm).and_then(|()| self.tables.flow_mod(&fm, now_ms, &refs)) {
                    Ok(removed) => {
                        self.generation += 1;
                        out.extend(self.flow_removed(&removed, now_ms));
                        Ok(vec![])
                    }
                    Err(e) => Err(e),
                }
            }
            Message::GroupMod(g) => self.group_mod(&g, now_ms).map(|removed| {
                out.extend(self.flow_removed(&removed, now_ms));
                vec![]
            }),
            Message::MeterMod(m) => self.meter_mod(&m, now_ms).map(|()| vec![]),
            Message::PortMod(p) => {
                if dp.port_mod(p.port_no, p.config, p.mask) {
                    Ok(vec![])
                } else {
                    Err(OfpError::PortModFailed(0))
                }
            }
            Message::TableMod(t) => {
                if t.table_id == 0xff || t.table_id < self.tables.n_tables() {
                    Ok(vec![])
                } else {
                    Err(OfpError::TableModFailed(0))
                }
            }
            Message::PacketOut(p) => {
                if p.buffer_id != crate::ofp::msg::NO_BUFFER {
                    Err(OfpError::BadRequest(BadRequest::BufferUnknown))
                } else {
                    dp.packet_out(p.in_port, &p.actions, &p.data).map(|()| vec![])
                }
            }
            Message::QueueGetConfigRequest { port } => self.queue_config(port, dp),
            Message::MultipartRequest(r) => self.multipart(&r.body, dp, now_ms),
            // Messages only a switch sends.
            _ => Err(OfpError::BadRequest(BadRequest::BadType)),
        };
        match result {
            Ok(msgs) => out.extend(msgs.into_iter().map(reply)),
            Err(e) => out.push(reply(Message::error(e, frame))),
        }
        (out, false)
    }

    fn role_request(&mut self, id: ConnId, r: Role) -> Result<Role, OfpError> {
        if r.role > role::SLAVE {
            return Err(OfpError::RoleRequestFailed(2));
        }
        if r.role == role::MASTER || r.role == role::SLAVE {
            // A stale generation id (older, in wrap-around order) is refused.
            if let Some(g) = self.generation_id {
                if (r.generation_id.wrapping_sub(g) as i64) < 0 {
                    return Err(OfpError::RoleRequestFailed(0));
                }
            }
            self.generation_id = Some(r.generation_id);
        }
        if r.role == role::MASTER {
            // The old master becomes a slave.
            for (cid, c) in &mut self.conns {
                if *cid != id && c.role == role::MASTER {
                    c.role = role::SLAVE;
                }
            }
        }
        let c = self.conns.get_mut(&id).ok_or(OfpError::RoleRequestFailed(1))?;
        if r.role != role::NOCHANGE {
            c.role = r.role;
        }
        Ok(Role { role: c.role, generation_id: self.generation_id.unwrap_or(0) })
    }

    /// Expires flows at `now_ms`; the flow-removed messages to send.
    pub fn tick(&mut self, now_ms: u64) -> Vec<(ConnId, Vec<u8>)> {
        if self.tables.expiry_due(now_ms) {
            // Whether they are really idle, and the counts flow-removed
            // messages report: the datapath's latest hits.
            self.folder.fold_all();
        }
        let removed = self.tables.expire(now_ms);
        if !removed.is_empty() {
            self.generation += 1;
        }
        self.flow_removed(&removed, now_ms)
    }

    fn flow_removed(&self, removed: &[Removed], now_ms: u64) -> Vec<(ConnId, Vec<u8>)> {
        let mut out = Vec::new();
        for r in removed.iter().filter(|r| r.entry.flags & FF_SEND_FLOW_REM != 0) {
            let e = &r.entry;
            let age = now_ms.saturating_sub(e.created_ms);
            let m = Message::FlowRemoved(FlowRemoved {
                cookie: e.cookie,
                priority: e.priority,
                reason: r.reason,
                table_id: e.table_id,
                duration_sec: u32::try_from(age / 1000).unwrap_or(u32::MAX),
                duration_nsec: u32::try_from((age % 1000) * 1_000_000).unwrap_or(0),
                idle_timeout: e.idle_timeout,
                hard_timeout: e.hard_timeout,
                packet_count: e.stats.packets.load(Ordering::Relaxed),
                byte_count: e.stats.bytes.load(Ordering::Relaxed),
                match_: e.match_.clone(),
            });
            for (id, c) in &self.conns {
                let slot = usize::from(c.role == role::SLAVE);
                if c.hello_done && c.async_cfg.flow_removed_mask[slot] & (1 << r.reason) != 0 {
                    out.push((*id, m.encode(0)));
                }
            }
        }
        out
    }

    /// A PORT_STATUS (reason OFPPR_ADD 0, DELETE 1, MODIFY 2) for every
    /// connection whose async config wants it.
    pub fn port_status(&self, reason: u8, port: &PortInfo) -> Vec<(ConnId, Vec<u8>)> {
        let desc = PortDesc {
            port_no: port.port_no,
            hw_addr: port.hw_addr,
            name: port.name.clone(),
            config: port.config,
            state: if port.link_up { crate::ofp::port::STATE_LIVE } else { crate::ofp::port::STATE_LINK_DOWN },
            curr_speed: port.speed_kbps,
            max_speed: port.speed_kbps,
            ..PortDesc::default()
        };
        let bytes = Message::PortStatus(crate::ofp::msg::PortStatus { reason, desc }).encode(0);
        self.conns
            .iter()
            .filter(|(_, c)| {
                let slot = usize::from(c.role == role::SLAVE);
                c.hello_done && c.async_cfg.port_status_mask[slot] & (1 << reason) != 0
            })
            .map(|(id, _)| (*id, bytes.clone()))
            .collect()
    }

    /// A PACKET_IN for every connection whose role and async config want
    /// it (reason OFPR_NO_MATCH 0 or OFPR_ACTION 1).
    pub fn packet_in(&self, pi: &PacketIn) -> Vec<(ConnId, Vec<u8>)> {
        let bytes = Message::PacketIn(pi.clone()).encode(0);
        self.conns
            .iter()
            .filter(|(_, c)| {
                let slot = usize::from(c.role == role::SLAVE);
                c.hello_done && c.async_cfg.packet_in_mask[slot] & (1 << pi.reason) != 0
            })
            .map(|(id, _)| (*id, bytes.clone()))
            .collect()
    }
}
