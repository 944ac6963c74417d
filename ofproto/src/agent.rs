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

use crate::megaflow::Folder;
use crate::ofp::action::{port, Action};
use crate::ofp::error::{BadRequest, GroupModFailed, MeterModFailed, OfpError};
use crate::ofp::msg::{
    AsyncConfig, Bucket, Features, FlowRemoved, GroupMod, Message, MeterBand, MeterMod, PacketIn, Role, SwitchConfig,
    FF_SEND_FLOW_REM, VERSION,
};
use crate::ofp::multipart::{
    Desc, FlowStats, GroupDesc, GroupFeatures, GroupStats, MeterConfig, MeterFeatures, MeterStats, MpReply, MpRequest,
    MultipartReply, TableFeatureProp, TableFeatures, TableStats, MORE,
};
use crate::ofp::oxm::Field;
use crate::ofp::port::{PortDesc, PortStats};
use crate::table::{Refs, Removed, Tables};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// What the agent needs from the switch around it.
pub trait Datapath {
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

/// A group.
#[derive(Debug, Clone)]
pub struct Group {
    /// OFPGT_*.
    pub group_type: u8,
    /// Buckets.
    pub buckets: Vec<Bucket>,
    /// Packets and bytes through it, and per bucket.
    pub stats: Arc<GroupCounters>,
    /// Added at, caller's milliseconds.
    pub created_ms: u64,
}

/// Counters of a group (shared with the datapath).
#[derive(Debug, Default)]
pub struct GroupCounters {
    /// Packets.
    pub packets: AtomicU64,
    /// Bytes.
    pub bytes: AtomicU64,
    /// (packets, bytes) per bucket.
    pub buckets: Vec<(AtomicU64, AtomicU64)>,
}

/// A meter.
#[derive(Debug, Clone)]
pub struct Meter {
    /// OFPMF_*.
    pub flags: u16,
    /// Bands.
    pub bands: Vec<MeterBand>,
    /// Packets and bytes in, and per band.
    pub stats: Arc<MeterCounters>,
    /// Added at, caller's milliseconds.
    pub created_ms: u64,
}

/// Counters of a meter and its bands' token buckets (shared with the
/// datapath; atomics, no lock).
#[derive(Debug, Default)]
pub struct MeterCounters {
    /// Packets in.
    pub packets: AtomicU64,
    /// Bytes in.
    pub bytes: AtomicU64,
    /// (packets, bytes) per band: packets the band was applied to.
    pub bands: Vec<(AtomicU64, AtomicU64)>,
    /// Per band: tokens in nano-units (bits for kbps meters, packets for
    /// pktps ones, times 1e9).
    pub tokens: Vec<AtomicU64>,
    /// When the buckets were last refilled, in the caller's nanoseconds.
    pub last_ns: AtomicU64,
}

impl Meter {
    /// Bucket size of band `b` in nano-units: its burst when the meter has
    /// OFPMF_BURST, else 100 ms of its rate; at least one full-size frame.
    fn capacity(&self, b: &MeterBand) -> u64 {
        let kbps = self.flags & 1 != 0;
        let unit: u64 = if kbps { 1000 } else { 1 };
        let units =
            if self.flags & 4 != 0 { u64::from(b.burst_size) * unit } else { (u64::from(b.rate) * unit / 10).max(1) };
        let floor = if kbps { 1518 * 8 } else { 1 };
        units.max(floor).saturating_mul(1_000_000_000)
    }

    /// Meters a packet of `bytes` at `now_ns`: the band it exceeds (the one
    /// of highest rate among those whose bucket is short, spec 5.7.1), or
    /// None when it conforms. Counts the meter's and the band's counters.
    pub fn apply(&self, bytes: u64, now_ns: u64) -> Option<&MeterBand> {
        let st = &self.stats;
        st.packets.fetch_add(1, Ordering::Relaxed);
        st.bytes.fetch_add(bytes, Ordering::Relaxed);
        let kbps = self.flags & 1 != 0;
        let unit: u64 = if kbps { 1000 } else { 1 };
        let cost = if kbps { bytes * 8 } else { 1 }.saturating_mul(1_000_000_000);
        let last = st.last_ns.swap(now_ns, Ordering::Relaxed);
        // One second of refill at most: the buckets are full by then.
        let elapsed = now_ns.saturating_sub(last).min(1_000_000_000);
        let mut exceeded: Option<usize> = None;
        for (i, b) in self.bands.iter().enumerate() {
            let Some(t) = st.tokens.get(i) else { continue };
            let cap = self.capacity(b);
            let add = elapsed.saturating_mul(u64::from(b.rate) * unit);
            let _ = t.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(x.saturating_add(add).min(cap)));
            if t.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| x.checked_sub(cost)).is_err()
                && exceeded.is_none_or(|e| self.bands[e].rate < b.rate)
            {
                exceeded = Some(i);
            }
        }
        let i = exceeded?;
        if let Some((p, by)) = st.bands.get(i) {
            p.fetch_add(1, Ordering::Relaxed);
            by.fetch_add(bytes, Ordering::Relaxed);
        }
        self.bands.get(i)
    }
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

fn mp(body: MpReply) -> Message {
    Message::MultipartReply(MultipartReply { flags: 0, body })
}

/// Instructions, actions and match fields the tables support, for
/// table-features replies.
fn table_features(tables: &Tables, id: u8) -> TableFeatures {
    let n = tables.n_tables();
    let next: Vec<u8> = (id.saturating_add(1)..n).collect();
    let ins: Vec<u16> = if id + 1 < n { vec![1, 2, 3, 4, 5, 6] } else { vec![2, 3, 4, 5, 6] };
    let acts = [0u16, 11, 12, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27];
    // OXM ids without the hasmask bit: OVS's ovs-ofctl refuses a
    // table-features reply whose match property has it (BAD_MASK).
    let fields: Vec<(Field, bool)> = Field::ALL.iter().map(|f| (*f, false)).collect();
    let set: Vec<(Field, bool)> = Field::ALL
        .iter()
        .filter(|f| !matches!(f, Field::InPort | Field::InPhyPort | Field::Metadata))
        .map(|f| (*f, false))
        .collect();
    let mut props = Vec::new();
    for miss in [false, true] {
        props.push(TableFeatureProp::instructions(miss, &ins));
        props.push(TableFeatureProp::next_tables(miss, &next));
        props.push(TableFeatureProp::actions(4 + u16::from(miss), &acts));
        props.push(TableFeatureProp::actions(6 + u16::from(miss), &acts));
        props.push(TableFeatureProp::oxms(12 + u16::from(miss), &set));
        props.push(TableFeatureProp::oxms(14 + u16::from(miss), &set));
    }
    props.push(TableFeatureProp::oxms(8, &fields));
    props.push(TableFeatureProp::oxms(10, &fields));
    TableFeatures {
        table_id: id,
        name: format!("table{id}"),
        metadata_match: u64::MAX,
        metadata_write: u64::MAX,
        config: 0,
        max_entries: u32::try_from(tables.max_entries).unwrap_or(u32::MAX),
        properties: props,
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
        );
        if is_slave && modifies {
            out.push(reply(Message::error(OfpError::BadRequest(BadRequest::IsSlave), frame)));
            return (out, false);
        }
        let result: Result<Vec<Message>, OfpError> = match msg {
            Message::EchoRequest(d) => Ok(vec![Message::EchoReply(d)]),
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
                match self.tables.flow_mod(&fm, now_ms, &refs) {
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
            Message::QueueGetConfigRequest { port } => {
                Ok(vec![Message::QueueGetConfigReply { port, queues: Vec::new() }])
            }
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

    fn group_mod(&mut self, g: &GroupMod, now_ms: u64) -> Result<Vec<Removed>, OfpError> {
        let err = |c| Err(OfpError::GroupModFailed(c));
        match g.command {
            0 | 1 => {
                if g.group_id > OFPG_MAX {
                    return err(GroupModFailed::InvalidGroup);
                }
                if g.group_type > 3 {
                    return err(GroupModFailed::BadType);
                }
                if g.group_type == 2 && g.buckets.len() != 1 {
                    return err(GroupModFailed::InvalidGroup);
                }
                for b in &g.buckets {
                    if g.group_type == 3 && b.watch_port == port::ANY && b.watch_group == port::ANY {
                        return err(GroupModFailed::BadWatch);
                    }
                    if g.group_type != 1 && b.weight != 0 && g.group_type != 3 {
                        return err(GroupModFailed::WeightUnsupported);
                    }
                    for a in &b.actions {
                        if let Action::Group(x) = a {
                            if *x == g.group_id {
                                return err(GroupModFailed::Loop);
                            }
                            if !self.groups.contains_key(x) {
                                return err(GroupModFailed::ChainedGroup);
                            }
                        }
                    }
                }
                let exists = self.groups.contains_key(&g.group_id);
                if g.command == 0 && exists {
                    return err(GroupModFailed::GroupExists);
                }
                if g.command == 1 && !exists {
                    return err(GroupModFailed::UnknownGroup);
                }
                let counters = GroupCounters {
                    buckets: g.buckets.iter().map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
                    ..GroupCounters::default()
                };
                self.groups.insert(
                    g.group_id,
                    Group {
                        group_type: g.group_type,
                        buckets: g.buckets.clone(),
                        stats: Arc::new(counters),
                        created_ms: now_ms,
                    },
                );
                self.generation += 1;
                self.group_meter_generation += 1;
                Ok(Vec::new())
            }
            2 => {
                let ids: Vec<u32> = if g.group_id == OFPG_ALL {
                    self.groups.keys().copied().collect()
                } else {
                    self.groups.contains_key(&g.group_id).then_some(g.group_id).into_iter().collect()
                };
                let mut removed = Vec::new();
                for id in ids {
                    self.groups.remove(&id);
                    removed.extend(self.tables.remove_group_users(id));
                }
                self.generation += 1;
                self.group_meter_generation += 1;
                Ok(removed)
            }
            _ => err(GroupModFailed::BadCommand),
        }
    }

    fn meter_mod(&mut self, m: &MeterMod, now_ms: u64) -> Result<(), OfpError> {
        let err = |c| Err(OfpError::MeterModFailed(c));
        match m.command {
            0 | 1 => {
                if m.meter_id == 0 || m.meter_id > OFPM_MAX {
                    return err(MeterModFailed::InvalidMeter);
                }
                let kbps = m.flags & 1 != 0;
                let pktps = m.flags & 2 != 0;
                if kbps == pktps || m.flags & !0xf != 0 {
                    return err(MeterModFailed::BadFlags);
                }
                if m.bands.is_empty() {
                    return err(MeterModFailed::BadBand);
                }
                if m.bands.iter().any(|b| b.rate == 0) {
                    return err(MeterModFailed::BadRate);
                }
                let exists = self.meters.contains_key(&m.meter_id);
                if m.command == 0 && exists {
                    return err(MeterModFailed::MeterExists);
                }
                if m.command == 1 && !exists {
                    return err(MeterModFailed::UnknownMeter);
                }
                let counters = MeterCounters {
                    bands: m.bands.iter().map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
                    tokens: m.bands.iter().map(|_| AtomicU64::new(0)).collect(),
                    ..MeterCounters::default()
                };
                let meter =
                    Meter { flags: m.flags, bands: m.bands.clone(), stats: Arc::new(counters), created_ms: now_ms };
                // Buckets start full.
                for (t, b) in meter.stats.tokens.iter().zip(&meter.bands) {
                    t.store(meter.capacity(b), Ordering::Relaxed);
                }
                self.meters.insert(m.meter_id, meter);
                self.generation += 1;
                self.group_meter_generation += 1;
                Ok(())
            }
            2 => {
                if m.meter_id == OFPM_ALL {
                    self.meters.clear();
                } else {
                    self.meters.remove(&m.meter_id);
                }
                self.generation += 1;
                self.group_meter_generation += 1;
                Ok(())
            }
            _ => err(MeterModFailed::BadCommand),
        }
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

    fn multipart(&self, req: &MpRequest, dp: &dyn Datapath, now_ms: u64) -> Result<Vec<Message>, OfpError> {
        let dur = |created: u64| {
            let age = now_ms.saturating_sub(created);
            (u32::try_from(age / 1000).unwrap_or(u32::MAX), u32::try_from((age % 1000) * 1_000_000).unwrap_or(0))
        };
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        if matches!(req, MpRequest::Flow(_) | MpRequest::Aggregate(_) | MpRequest::Table) {
            self.folder.fold_for_stats();
        }
        Ok(match req {
            MpRequest::Desc => vec![mp(MpReply::Desc(Desc {
                mfr_desc: "vswitch project".into(),
                hw_desc: "userspace switch on DPDK".into(),
                sw_desc: format!("vswitchd {}", env!("CARGO_PKG_VERSION")),
                serial_num: "none".into(),
                dp_desc: self.dp_desc.clone(),
            }))],
            MpRequest::Flow(f) => {
                let stats: Vec<FlowStats> = self
                    .tables
                    .select(f.table_id, &f.match_, f.out_port, f.out_group, f.cookie, f.cookie_mask)
                    .map(|e| {
                        let (s, ns) = dur(e.created_ms);
                        FlowStats {
                            table_id: e.table_id,
                            duration_sec: s,
                            duration_nsec: ns,
                            priority: e.priority,
                            idle_timeout: e.idle_timeout,
                            hard_timeout: e.hard_timeout,
                            flags: e.flags,
                            cookie: e.cookie,
                            packet_count: ld(&e.stats.packets),
                            byte_count: ld(&e.stats.bytes),
                            match_: e.match_.clone(),
                            instructions: e.instructions.clone(),
                        }
                    })
                    .collect();
                // Split under 64 KB per message, REPLY_MORE on all but the
                // last.
                let mut parts: Vec<Vec<FlowStats>> = vec![Vec::new()];
                let mut size = 0;
                for s in stats {
                    let n = 56 + s.match_.fields.len() * 20 + s.instructions.len() * 64;
                    if size + n > MP_BUDGET && !parts.last().is_some_and(Vec::is_empty) {
                        parts.push(Vec::new());
                        size = 0;
                    }
                    size += n;
                    if let Some(p) = parts.last_mut() {
                        p.push(s);
                    }
                }
                let last = parts.len() - 1;
                parts
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        Message::MultipartReply(MultipartReply {
                            flags: if i < last { MORE } else { 0 },
                            body: MpReply::Flow(p),
                        })
                    })
                    .collect()
            }
            MpRequest::Aggregate(f) => {
                let (mut packet_count, mut byte_count, mut flow_count) = (0, 0, 0);
                for e in self.tables.select(f.table_id, &f.match_, f.out_port, f.out_group, f.cookie, f.cookie_mask) {
                    packet_count += ld(&e.stats.packets);
                    byte_count += ld(&e.stats.bytes);
                    flow_count += 1;
                }
                vec![mp(MpReply::Aggregate { packet_count, byte_count, flow_count })]
            }
            MpRequest::Table => vec![mp(MpReply::Table(
                self.tables
                    .tables
                    .iter()
                    .enumerate()
                    .zip(self.tables.counters.iter())
                    .map(|((i, t), c)| TableStats {
                        table_id: u8::try_from(i).unwrap_or(u8::MAX),
                        active_count: u32::try_from(t.entries.len()).unwrap_or(u32::MAX),
                        lookup_count: ld(&c.lookups),
                        matched_count: ld(&c.matches),
                    })
                    .collect(),
            ))],
            MpRequest::PortStats(p) => {
                let ports = dp.ports();
                if *p != port::ANY && !ports.iter().any(|x| x.port_no == *p) {
                    return Err(OfpError::BadRequest(BadRequest::BadPort));
                }
                vec![mp(MpReply::PortStats(
                    ports
                        .iter()
                        .filter(|x| *p == port::ANY || x.port_no == *p)
                        .map(|x| PortStats {
                            port_no: x.port_no,
                            counters: x.counters,
                            duration_sec: x.duration_sec,
                            duration_nsec: 0,
                        })
                        .collect(),
                ))]
            }
            MpRequest::PortDesc => vec![mp(MpReply::PortDesc(
                dp.ports()
                    .iter()
                    .map(|x| PortDesc {
                        port_no: x.port_no,
                        hw_addr: x.hw_addr,
                        name: x.name.clone(),
                        config: x.config,
                        state: if x.link_up { crate::ofp::port::STATE_LIVE } else { crate::ofp::port::STATE_LINK_DOWN },
                        curr_speed: x.speed_kbps,
                        max_speed: x.speed_kbps,
                        ..PortDesc::default()
                    })
                    .collect(),
            ))],
            MpRequest::Queue(..) => vec![mp(MpReply::Queue(Vec::new()))],
            MpRequest::Group(g) => vec![mp(MpReply::Group(
                self.groups
                    .iter()
                    .filter(|(id, _)| *g == OFPG_ALL || **id == *g)
                    .map(|(id, x)| {
                        let (s, ns) = dur(x.created_ms);
                        GroupStats {
                            group_id: *id,
                            ref_count: self
                                .tables
                                .select(0xff, &crate::ofp::Match::any(), port::ANY, *id, 0, 0)
                                .count()
                                .try_into()
                                .unwrap_or(u32::MAX),
                            packet_count: ld(&x.stats.packets),
                            byte_count: ld(&x.stats.bytes),
                            duration_sec: s,
                            duration_nsec: ns,
                            buckets: x.stats.buckets.iter().map(|(p, b)| (ld(p), ld(b))).collect(),
                        }
                    })
                    .collect(),
            ))],
            MpRequest::GroupDesc => vec![mp(MpReply::GroupDesc(
                self.groups
                    .iter()
                    .map(|(id, g)| GroupDesc { group_type: g.group_type, group_id: *id, buckets: g.buckets.clone() })
                    .collect(),
            ))],
            MpRequest::GroupFeatures => {
                let acts = (1 << 0)
                    | (1 << 11)
                    | (1 << 12)
                    | (1 << 15)
                    | (1 << 16)
                    | (1 << 17)
                    | (1 << 18)
                    | (1 << 19)
                    | (1 << 20)
                    | (1 << 21)
                    | (1 << 22)
                    | (1 << 23)
                    | (1 << 24)
                    | (1 << 25)
                    | (1 << 26)
                    | (1 << 27);
                vec![mp(MpReply::GroupFeatures(GroupFeatures {
                    types: 0b1111,
                    // SELECT_WEIGHT, SELECT_LIVENESS, CHAINING.
                    capabilities: 1 | 2 | 4,
                    max_groups: [65536; 4],
                    actions: [acts; 4],
                }))]
            }
            MpRequest::Meter(m) => vec![mp(MpReply::Meter(
                self.meters
                    .iter()
                    .filter(|(id, _)| *m == OFPM_ALL || **id == *m)
                    .map(|(id, x)| {
                        let (s, ns) = dur(x.created_ms);
                        MeterStats {
                            meter_id: *id,
                            flow_count: u32::try_from(
                                self.tables
                                    .tables
                                    .iter()
                                    .flat_map(|t| &t.entries)
                                    .filter(|e| e.uses_meter(*id))
                                    .count(),
                            )
                            .unwrap_or(u32::MAX),
                            packet_in_count: ld(&x.stats.packets),
                            byte_in_count: ld(&x.stats.bytes),
                            duration_sec: s,
                            duration_nsec: ns,
                            bands: x.stats.bands.iter().map(|(p, b)| (ld(p), ld(b))).collect(),
                        }
                    })
                    .collect(),
            ))],
            MpRequest::MeterConfig(m) => vec![mp(MpReply::MeterConfig(
                self.meters
                    .iter()
                    .filter(|(id, _)| *m == OFPM_ALL || **id == *m)
                    .map(|(id, x)| MeterConfig { flags: x.flags, meter_id: *id, bands: x.bands.clone() })
                    .collect(),
            ))],
            MpRequest::MeterFeatures => vec![mp(MpReply::MeterFeatures(MeterFeatures {
                max_meter: 65536,
                band_types: (1 << 1) | (1 << 2),
                capabilities: 0xf,
                max_bands: 8,
                max_color: 0,
            }))],
            MpRequest::TableFeatures(set) => {
                if !set.is_empty() {
                    // Changing the pipeline's features is not offered.
                    return Err(OfpError::TableFeaturesFailed(5));
                }
                // One table per message keeps each under 64 KB.
                let n = self.tables.n_tables();
                (0..n)
                    .map(|i| {
                        Message::MultipartReply(MultipartReply {
                            flags: if i + 1 < n { MORE } else { 0 },
                            body: MpReply::TableFeatures(vec![table_features(&self.tables, i)]),
                        })
                    })
                    .collect()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofp::msg::FlowModCommand;
    use crate::ofp::multipart::{FlowStatsRequest, MultipartRequest};
    use crate::ofp::{Instruction, Match};

    struct Dp(Vec<PortInfo>, Vec<(u32, Vec<Action>)>);
    impl Datapath for Dp {
        fn ports(&self) -> Vec<PortInfo> {
            self.0.clone()
        }
        fn packet_out(&mut self, in_port: u32, actions: &[Action], _data: &[u8]) -> Result<(), OfpError> {
            self.1.push((in_port, actions.to_vec()));
            Ok(())
        }
        fn port_mod(&mut self, _p: u32, _c: u32, _m: u32) -> bool {
            true
        }
    }

    fn dp() -> Dp {
        Dp(
            (1..=2)
                .map(|i| PortInfo { port_no: i, name: format!("p{i}"), link_up: true, ..PortInfo::default() })
                .collect(),
            vec![],
        )
    }

    fn replies(a: &mut Agent, id: ConnId, m: Message, d: &mut Dp) -> Vec<Message> {
        let (out, close) = a.receive(id, &m.encode(7), d, 1000);
        assert!(!close);
        out.into_iter().map(|(_, b)| Message::decode(&b).unwrap().1).collect()
    }

    fn add(priority: u16, out: u32) -> Message {
        let mut f = crate::ofp::msg::FlowMod::new(
            FlowModCommand::Add,
            0,
            priority,
            Match::any(),
            vec![Instruction::ApplyActions(vec![Action::Output { port: out, max_len: 0 }])],
        );
        f.cookie = 1;
        f.flags = FF_SEND_FLOW_REM;
        Message::FlowMod(f)
    }

    /// A flow statistics request for every flow of every table.
    fn all_flows() -> FlowStatsRequest {
        FlowStatsRequest {
            table_id: 0xff,
            out_port: port::ANY,
            out_group: port::ANY,
            cookie: 0,
            cookie_mask: 0,
            match_: Match::any(),
        }
    }

    #[test]
    fn a_session_negotiates_answers_and_changes_tables() {
        let mut a = Agent::new(1, 4, 100);
        let mut d = dp();
        let hello = a.connected(1);
        assert_eq!(Message::decode(&hello).unwrap().1, Message::Hello { versions: vec![4] });
        assert!(replies(&mut a, 1, Message::Hello { versions: vec![1, 4] }, &mut d).is_empty());
        let f = replies(&mut a, 1, Message::FeaturesRequest, &mut d);
        assert!(matches!(&f[0], Message::FeaturesReply(x) if x.n_tables == 4 && x.datapath_id == 1));
        assert!(replies(&mut a, 1, add(5, 2), &mut d).is_empty());
        // An output to a port that does not exist: BAD_ACTION/BAD_OUT_PORT.
        let e = replies(&mut a, 1, add(6, 9), &mut d);
        assert!(matches!(&e[0], Message::Error { err_type: 2, code: 4, .. }), "{e:?}");
        let req = Message::MultipartRequest(MultipartRequest { flags: 0, body: MpRequest::Flow(all_flows()) });
        let r = replies(&mut a, 1, req, &mut d);
        assert!(
            matches!(&r[0], Message::MultipartReply(MultipartReply { body: MpReply::Flow(v), .. }) if v.len() == 1 && v[0].priority == 5)
        );
        assert_eq!(replies(&mut a, 1, Message::BarrierRequest, &mut d), vec![Message::BarrierReply]);
        // A message cut short: an error, and the session goes on.
        let (out, close) = a.receive(1, &[4, 14, 0, 9, 0, 0, 0, 1, 0], &mut d, 0);
        assert!(!close);
        assert!(matches!(Message::decode(&out[0].1).unwrap().1, Message::Error { err_type: 1, code: 6, .. }));
        let tf = replies(
            &mut a,
            1,
            Message::MultipartRequest(MultipartRequest { flags: 0, body: MpRequest::TableFeatures(vec![]) }),
            &mut d,
        );
        assert_eq!(tf.len(), 4, "one table per part");
    }

    /// What the datapath counted on its megaflows reaches the flow
    /// statistics a controller asks for and keeps a flow with an idle
    /// timeout alive, before any pass of the folder's own thread: the
    /// agent folds first.
    #[test]
    fn datapath_counts_reach_statistics_and_idle_timeouts() {
        use crate::megaflow::{Megaflow, MegaflowCache};
        let mut a = Agent::new(1, 1, 100);
        let mut d = dp();
        a.connected(1);
        replies(&mut a, 1, Message::Hello { versions: vec![4] }, &mut d);
        let Message::FlowMod(mut f) = add(5, 2) else { unreachable!() };
        f.idle_timeout = 1;
        assert!(replies(&mut a, 1, Message::FlowMod(f), &mut d).is_empty());
        // A PMD thread's cache: one megaflow, hit 3 times at 1,500 ms.
        let key = crate::flow::FlowKey::extract(&[0u8; 60], 1);
        let t = crate::xlate::translate(&a.tables, &key);
        let mut cache = MegaflowCache::default();
        let c = cache.install(&key, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 1000))).unwrap();
        cache.get(c).hit(3, 180, 1500);
        cache.hand_over(&a.folder, &a.tables);
        let req = Message::MultipartRequest(MultipartRequest { flags: 0, body: MpRequest::Aggregate(all_flows()) });
        let r = replies(&mut a, 1, req, &mut d);
        assert!(
            matches!(
                &r[0],
                Message::MultipartReply(MultipartReply {
                    body: MpReply::Aggregate { packet_count: 3, byte_count: 180, .. },
                    ..
                })
            ),
            "{r:?}"
        );
        // Hit again at 2,200 (not folded yet): at 2,600 the flow is not
        // idle for a second.
        cache.get(c).hit(1, 60, 2200);
        assert!(a.tick(2600).is_empty());
        assert_eq!(a.tables.tables[0].entries.len(), 1, "kept alive by the datapath's hit");
        // No hit since 2,200: gone at 3,200, its flow-removed counting all 4.
        let removed = a.tick(3200);
        assert_eq!(a.tables.tables[0].entries.len(), 0);
        let Message::FlowRemoved(fr) = Message::decode(&removed[0].1).unwrap().1 else { panic!("{removed:?}") };
        assert_eq!((fr.packet_count, fr.byte_count), (4, 240));
    }

    #[test]
    fn roles_master_slave_and_generation_ids() {
        let mut a = Agent::new(1, 4, 100);
        let mut d = dp();
        for id in [1, 2] {
            a.connected(id);
            replies(&mut a, id, Message::Hello { versions: vec![4] }, &mut d);
        }
        let r = replies(&mut a, 1, Message::RoleRequest(Role { role: role::MASTER, generation_id: 10 }), &mut d);
        assert_eq!(r, vec![Message::RoleReply(Role { role: role::MASTER, generation_id: 10 })]);
        replies(&mut a, 2, Message::RoleRequest(Role { role: role::SLAVE, generation_id: 10 }), &mut d);
        let e = replies(&mut a, 2, add(1, 1), &mut d);
        assert!(matches!(&e[0], Message::Error { err_type: 1, code: 10, .. }), "a slave may not modify: {e:?}");
        let stale = replies(&mut a, 2, Message::RoleRequest(Role { role: role::MASTER, generation_id: 9 }), &mut d);
        assert!(matches!(&stale[0], Message::Error { err_type: 11, code: 0, .. }), "{stale:?}");
        replies(&mut a, 2, Message::RoleRequest(Role { role: role::MASTER, generation_id: 11 }), &mut d);
        assert_eq!((a.role_of(1), a.role_of(2)), (Some(role::SLAVE), Some(role::MASTER)), "the old master steps down");
    }

    #[test]
    fn a_meter_drops_what_exceeds_its_rate() {
        let mut a = Agent::new(1, 1, 10);
        let mut d = dp();
        a.connected(1);
        replies(&mut a, 1, Message::Hello { versions: vec![4] }, &mut d);
        // 100 packets per second, burst 10 packets.
        let mm = MeterMod {
            command: 0,
            flags: 2 | 4,
            meter_id: 1,
            bands: vec![MeterBand { band_type: 1, rate: 100, burst_size: 10, prec_level: 0 }],
        };
        assert!(replies(&mut a, 1, Message::MeterMod(mm), &mut d).is_empty());
        let m = &a.meters[&1];
        // 1000 packets offered over one second: ~10 (burst) + ~100 (rate) pass.
        let passed = (0..1000u64).filter(|i| m.apply(64, i * 1_000_000).is_none()).count();
        assert!((105..=115).contains(&passed), "{passed} passed");
        assert_eq!(m.stats.packets.load(Ordering::Relaxed), 1000);
        assert_eq!(m.stats.bands[0].0.load(Ordering::Relaxed), 1000 - passed as u64);
        // Bad meter mods.
        let bad = |flags, rate| MeterMod {
            command: 0,
            flags,
            meter_id: 2,
            bands: vec![MeterBand { band_type: 1, rate, burst_size: 0, prec_level: 0 }],
        };
        let e = replies(&mut a, 1, Message::MeterMod(bad(3, 10)), &mut d);
        assert!(matches!(&e[0], Message::Error { err_type: 12, code: 5, .. }), "kbps and pktps: {e:?}");
        let e = replies(&mut a, 1, Message::MeterMod(bad(1, 0)), &mut d);
        assert!(matches!(&e[0], Message::Error { err_type: 12, code: 6, .. }), "rate 0: {e:?}");
    }

    #[test]
    fn a_wrong_version_is_refused_and_closed() {
        let mut a = Agent::new(1, 4, 100);
        let mut d = dp();
        a.connected(1);
        let (out, close) = a.receive(1, &Message::Hello { versions: vec![1] }.encode(3), &mut d, 0);
        assert!(close);
        assert!(matches!(Message::decode(&out[0].1).unwrap().1, Message::Error { err_type: 0, code: 0, .. }));
    }
}
