//! Multipart requests and replies (spec section 7.3.5): every 1.3 type.

use super::action::{decode_instructions, encode_instructions, Instruction};
use super::bytes::{Reader, Writer};
use super::error::{BadRequest, OfpError, BAD_LEN};
use super::msg::{decode_bands, decode_buckets, encode_bands, encode_buckets, Bucket, MeterBand};
use super::oxm::Match;
use super::port::{PortDesc, PortStats};

/// OFPMPF_REQ_MORE / OFPMPF_REPLY_MORE: more parts follow.
pub const MORE: u16 = 1;

/// Multipart types (`ofp_multipart_type`).
#[allow(missing_docs)]
pub mod mp {
    pub const DESC: u16 = 0;
    pub const FLOW: u16 = 1;
    pub const AGGREGATE: u16 = 2;
    pub const TABLE: u16 = 3;
    pub const PORT_STATS: u16 = 4;
    pub const QUEUE: u16 = 5;
    pub const GROUP: u16 = 6;
    pub const GROUP_DESC: u16 = 7;
    pub const GROUP_FEATURES: u16 = 8;
    pub const METER: u16 = 9;
    pub const METER_CONFIG: u16 = 10;
    pub const METER_FEATURES: u16 = 11;
    pub const TABLE_FEATURES: u16 = 12;
    pub const PORT_DESC: u16 = 13;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// The selection of a flow or aggregate statistics request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatsRequest {
    /// Table (OFPTT_ALL 0xff: all).
    pub table_id: u8,
    /// Only flows that output to this port (ANY: any).
    pub out_port: u32,
    /// Only flows that output to this group (ANY: any).
    pub out_group: u32,
    /// Cookie.
    pub cookie: u64,
    /// Cookie mask.
    pub cookie_mask: u64,
    /// Match (non-strict: flows at least this specific).
    pub match_: Match,
}

impl FlowStatsRequest {
    fn decode(r: &mut Reader<'_>) -> Result<FlowStatsRequest, OfpError> {
        let table_id = r.u8()?;
        r.skip(3)?;
        let out_port = r.u32()?;
        let out_group = r.u32()?;
        r.skip(4)?;
        Ok(FlowStatsRequest {
            table_id,
            out_port,
            out_group,
            cookie: r.u64()?,
            cookie_mask: r.u64()?,
            match_: Match::decode(r)?,
        })
    }
    fn encode(&self, w: &mut Writer) {
        w.u8(self.table_id).pad(3).u32(self.out_port).u32(self.out_group).pad(4).u64(self.cookie).u64(self.cookie_mask);
        self.match_.encode(w);
    }
}

/// A table-features property, as its type and body (the body's layout
/// depends on the type: instruction ids, table ids, action ids, OXM ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFeatureProp {
    /// OFPTFPT_* type.
    pub prop_type: u16,
    /// Body (without the 4-byte header and padding).
    pub body: Vec<u8>,
}

impl TableFeatureProp {
    /// OFPTFPT_INSTRUCTIONS (and _MISS: +1) from instruction types.
    pub fn instructions(miss: bool, types: &[u16]) -> TableFeatureProp {
        let mut w = Writer::new();
        for t in types {
            w.u16(*t).u16(4);
        }
        TableFeatureProp { prop_type: u16::from(miss), body: w.buf }
    }
    /// OFPTFPT_NEXT_TABLES (2, _MISS 3).
    pub fn next_tables(miss: bool, tables: &[u8]) -> TableFeatureProp {
        TableFeatureProp { prop_type: 2 + u16::from(miss), body: tables.to_vec() }
    }
    /// An action-id list: OFPTFPT_WRITE_ACTIONS 4, APPLY_ACTIONS 6 (_MISS:
    /// +1).
    pub fn actions(prop_type: u16, types: &[u16]) -> TableFeatureProp {
        let mut w = Writer::new();
        for t in types {
            w.u16(*t).u16(4);
        }
        TableFeatureProp { prop_type, body: w.buf }
    }
    /// An OXM-id list: OFPTFPT_MATCH 8, WILDCARDS 10, WRITE_SETFIELD 12,
    /// APPLY_SETFIELD 14 (_MISS: +1 for the last two).
    pub fn oxms(prop_type: u16, fields: &[(super::oxm::Field, bool)]) -> TableFeatureProp {
        let mut w = Writer::new();
        for (f, masked) in fields {
            w.u32(f.oxm_header(*masked, f.width()));
        }
        TableFeatureProp { prop_type, body: w.buf }
    }
}

/// One table's features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFeatures {
    /// Table.
    pub table_id: u8,
    /// Name.
    pub name: String,
    /// Metadata bits it can match.
    pub metadata_match: u64,
    /// Metadata bits it can write.
    pub metadata_write: u64,
    /// Config bits.
    pub config: u32,
    /// Flow entries it holds at most.
    pub max_entries: u32,
    /// Properties.
    pub properties: Vec<TableFeatureProp>,
}

impl TableFeatures {
    fn decode(r: &mut Reader<'_>) -> Result<TableFeatures, OfpError> {
        let len = usize::from(r.u16()?);
        let mut b = r.sub(len.checked_sub(2).ok_or(BAD_LEN)?, BAD_LEN)?;
        let table_id = b.u8()?;
        b.skip(5)?;
        let name = b.string(32)?;
        let (metadata_match, metadata_write, config, max_entries) = (b.u64()?, b.u64()?, b.u32()?, b.u32()?);
        let mut properties = Vec::new();
        while !b.is_empty() {
            let prop_type = b.u16()?;
            let plen = usize::from(b.u16()?);
            let body = b.take(plen.checked_sub(4).ok_or(BAD_LEN)?)?.to_vec();
            b.skip(plen.next_multiple_of(8) - plen)?;
            properties.push(TableFeatureProp { prop_type, body });
        }
        Ok(TableFeatures { table_id, name, metadata_match, metadata_write, config, max_entries, properties })
    }
    fn encode(&self, w: &mut Writer) {
        let start = w.len();
        w.u16(0).u8(self.table_id).pad(5).string(&self.name, 32);
        w.u64(self.metadata_match).u64(self.metadata_write).u32(self.config).u32(self.max_entries);
        for p in &self.properties {
            let ps = w.len();
            w.u16(p.prop_type).u16(0).bytes(&p.body);
            w.patch_len16(ps + 2, ps);
            w.align8();
        }
        w.patch_len16(start, start);
    }
}

/// The body of a multipart request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpRequest {
    /// Switch description.
    Desc,
    /// Flow statistics.
    Flow(FlowStatsRequest),
    /// Aggregate flow statistics.
    Aggregate(FlowStatsRequest),
    /// Table statistics.
    Table,
    /// Port statistics (ANY: all ports).
    PortStats(u32),
    /// Queue statistics (port, queue; ANY / OFPQ_ALL for all).
    Queue(u32, u32),
    /// Group statistics (OFPG_ALL: all).
    Group(u32),
    /// Group descriptions.
    GroupDesc,
    /// Group features.
    GroupFeatures,
    /// Meter statistics (OFPM_ALL: all).
    Meter(u32),
    /// Meter configuration.
    MeterConfig(u32),
    /// Meter features.
    MeterFeatures,
    /// Table features (empty: get; otherwise set).
    TableFeatures(Vec<TableFeatures>),
    /// Port descriptions.
    PortDesc,
}

/// MULTIPART_REQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartRequest {
    /// OFPMPF_REQ_MORE.
    pub flags: u16,
    /// What is asked.
    pub body: MpRequest,
}

fn done(r: &Reader<'_>) -> Result<(), OfpError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(BAD_LEN)
    }
}

fn id_pad(r: &mut Reader<'_>) -> Result<u32, OfpError> {
    let v = r.u32()?;
    r.skip(4)?;
    done(r)?;
    Ok(v)
}

impl MultipartRequest {
    /// Reads the body after the header.
    pub fn decode(r: &mut Reader<'_>) -> Result<MultipartRequest, OfpError> {
        let t = r.u16()?;
        let flags = r.u16()?;
        r.skip(4)?;
        let body = match t {
            mp::DESC => done(r).map(|()| MpRequest::Desc)?,
            mp::FLOW => MpRequest::Flow(FlowStatsRequest::decode(r)?),
            mp::AGGREGATE => MpRequest::Aggregate(FlowStatsRequest::decode(r)?),
            mp::TABLE => done(r).map(|()| MpRequest::Table)?,
            mp::PORT_STATS => MpRequest::PortStats(id_pad(r)?),
            mp::QUEUE => {
                let q = MpRequest::Queue(r.u32()?, r.u32()?);
                done(r)?;
                q
            }
            mp::GROUP => MpRequest::Group(id_pad(r)?),
            mp::GROUP_DESC => done(r).map(|()| MpRequest::GroupDesc)?,
            mp::GROUP_FEATURES => done(r).map(|()| MpRequest::GroupFeatures)?,
            mp::METER => MpRequest::Meter(id_pad(r)?),
            mp::METER_CONFIG => MpRequest::MeterConfig(id_pad(r)?),
            mp::METER_FEATURES => done(r).map(|()| MpRequest::MeterFeatures)?,
            mp::TABLE_FEATURES => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(TableFeatures::decode(r)?);
                }
                MpRequest::TableFeatures(v)
            }
            mp::PORT_DESC => done(r).map(|()| MpRequest::PortDesc)?,
            mp::EXPERIMENTER => return Err(OfpError::BadRequest(BadRequest::BadExperimenter)),
            _ => return Err(OfpError::BadRequest(BadRequest::BadMultipart)),
        };
        Ok(MultipartRequest { flags, body })
    }

    /// The OFPMP_* type.
    pub fn type_id(&self) -> u16 {
        match &self.body {
            MpRequest::Desc => mp::DESC,
            MpRequest::Flow(_) => mp::FLOW,
            MpRequest::Aggregate(_) => mp::AGGREGATE,
            MpRequest::Table => mp::TABLE,
            MpRequest::PortStats(_) => mp::PORT_STATS,
            MpRequest::Queue(..) => mp::QUEUE,
            MpRequest::Group(_) => mp::GROUP,
            MpRequest::GroupDesc => mp::GROUP_DESC,
            MpRequest::GroupFeatures => mp::GROUP_FEATURES,
            MpRequest::Meter(_) => mp::METER,
            MpRequest::MeterConfig(_) => mp::METER_CONFIG,
            MpRequest::MeterFeatures => mp::METER_FEATURES,
            MpRequest::TableFeatures(_) => mp::TABLE_FEATURES,
            MpRequest::PortDesc => mp::PORT_DESC,
        }
    }

    /// Appends the body after the header.
    pub fn encode(&self, w: &mut Writer) {
        w.u16(self.type_id()).u16(self.flags).pad(4);
        match &self.body {
            MpRequest::Flow(f) | MpRequest::Aggregate(f) => f.encode(w),
            MpRequest::PortStats(id) | MpRequest::Group(id) | MpRequest::Meter(id) | MpRequest::MeterConfig(id) => {
                w.u32(*id).pad(4);
            }
            MpRequest::Queue(p, q) => {
                w.u32(*p).u32(*q);
            }
            MpRequest::TableFeatures(v) => {
                for t in v {
                    t.encode(w);
                }
            }
            _ => {}
        }
    }
}

/// OFPMP_DESC reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desc {
    /// Manufacturer.
    pub mfr_desc: String,
    /// Hardware.
    pub hw_desc: String,
    /// Software.
    pub sw_desc: String,
    /// Serial number.
    pub serial_num: String,
    /// Datapath description.
    pub dp_desc: String,
}

/// One flow in a flow statistics reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    /// Table.
    pub table_id: u8,
    /// Seconds alive.
    pub duration_sec: u32,
    /// Nanoseconds beyond.
    pub duration_nsec: u32,
    /// Priority.
    pub priority: u16,
    /// Idle timeout.
    pub idle_timeout: u16,
    /// Hard timeout.
    pub hard_timeout: u16,
    /// OFPFF_* flags.
    pub flags: u16,
    /// Cookie.
    pub cookie: u64,
    /// Packets.
    pub packet_count: u64,
    /// Bytes.
    pub byte_count: u64,
    /// Match.
    pub match_: Match,
    /// Instructions.
    pub instructions: Vec<Instruction>,
}

/// One table in a table statistics reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    /// Table.
    pub table_id: u8,
    /// Flows in it.
    pub active_count: u32,
    /// Packets looked up.
    pub lookup_count: u64,
    /// Packets that hit.
    pub matched_count: u64,
}

/// One queue's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Port.
    pub port_no: u32,
    /// Queue.
    pub queue_id: u32,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Errors.
    pub tx_errors: u64,
    /// Seconds alive.
    pub duration_sec: u32,
    /// Nanoseconds beyond.
    pub duration_nsec: u32,
}

/// One group's statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    /// Group.
    pub group_id: u32,
    /// Flows and groups pointing at it.
    pub ref_count: u32,
    /// Packets.
    pub packet_count: u64,
    /// Bytes.
    pub byte_count: u64,
    /// Seconds alive.
    pub duration_sec: u32,
    /// Nanoseconds beyond.
    pub duration_nsec: u32,
    /// (packets, bytes) per bucket.
    pub buckets: Vec<(u64, u64)>,
}

/// One group's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDesc {
    /// Type.
    pub group_type: u8,
    /// Group.
    pub group_id: u32,
    /// Buckets.
    pub buckets: Vec<Bucket>,
}

/// Group features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupFeatures {
    /// Bitmap of supported group types.
    pub types: u32,
    /// OFPGFC_* bits.
    pub capabilities: u32,
    /// Groups per type at most.
    pub max_groups: [u32; 4],
    /// Bitmap of actions per type.
    pub actions: [u32; 4],
}

/// One meter's statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterStats {
    /// Meter.
    pub meter_id: u32,
    /// Flows using it.
    pub flow_count: u32,
    /// Packets in.
    pub packet_in_count: u64,
    /// Bytes in.
    pub byte_in_count: u64,
    /// Seconds alive.
    pub duration_sec: u32,
    /// Nanoseconds beyond.
    pub duration_nsec: u32,
    /// (packets, bytes) per band.
    pub bands: Vec<(u64, u64)>,
}

/// One meter's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterConfig {
    /// OFPMF_* flags.
    pub flags: u16,
    /// Meter.
    pub meter_id: u32,
    /// Bands.
    pub bands: Vec<MeterBand>,
}

/// Meter features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeterFeatures {
    /// Meters at most.
    pub max_meter: u32,
    /// Bitmap of band types.
    pub band_types: u32,
    /// OFPMF_* bits supported.
    pub capabilities: u32,
    /// Bands per meter at most.
    pub max_bands: u8,
    /// Colours at most.
    pub max_color: u8,
}

/// The body of a multipart reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpReply {
    /// Switch description.
    Desc(Desc),
    /// Flows.
    Flow(Vec<FlowStats>),
    /// Aggregate: packets, bytes, flows.
    Aggregate {
        /// Packets.
        packet_count: u64,
        /// Bytes.
        byte_count: u64,
        /// Flows.
        flow_count: u32,
    },
    /// Tables.
    Table(Vec<TableStats>),
    /// Ports.
    PortStats(Vec<PortStats>),
    /// Queues.
    Queue(Vec<QueueStats>),
    /// Groups.
    Group(Vec<GroupStats>),
    /// Group descriptions.
    GroupDesc(Vec<GroupDesc>),
    /// Group features.
    GroupFeatures(GroupFeatures),
    /// Meters.
    Meter(Vec<MeterStats>),
    /// Meter configurations.
    MeterConfig(Vec<MeterConfig>),
    /// Meter features.
    MeterFeatures(MeterFeatures),
    /// Table features.
    TableFeatures(Vec<TableFeatures>),
    /// Port descriptions.
    PortDesc(Vec<PortDesc>),
}

/// MULTIPART_REPLY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartReply {
    /// OFPMPF_REPLY_MORE.
    pub flags: u16,
    /// The answer.
    pub body: MpReply,
}

fn many<T>(
    r: &mut Reader<'_>,
    mut one: impl FnMut(&mut Reader<'_>) -> Result<T, OfpError>,
) -> Result<Vec<T>, OfpError> {
    let mut v = Vec::new();
    while !r.is_empty() {
        v.push(one(r)?);
    }
    Ok(v)
}

/// Reads a u16 length and gives a reader over the rest of the entry.
fn entry<'a>(r: &mut Reader<'a>, header: usize) -> Result<Reader<'a>, OfpError> {
    let len = usize::from(r.u16()?);
    r.sub(len.checked_sub(header).ok_or(BAD_LEN)?, BAD_LEN)
}

impl MultipartReply {
    /// The OFPMP_* type.
    pub fn type_id(&self) -> u16 {
        match &self.body {
            MpReply::Desc(_) => mp::DESC,
            MpReply::Flow(_) => mp::FLOW,
            MpReply::Aggregate { .. } => mp::AGGREGATE,
            MpReply::Table(_) => mp::TABLE,
            MpReply::PortStats(_) => mp::PORT_STATS,
            MpReply::Queue(_) => mp::QUEUE,
            MpReply::Group(_) => mp::GROUP,
            MpReply::GroupDesc(_) => mp::GROUP_DESC,
            MpReply::GroupFeatures(_) => mp::GROUP_FEATURES,
            MpReply::Meter(_) => mp::METER,
            MpReply::MeterConfig(_) => mp::METER_CONFIG,
            MpReply::MeterFeatures(_) => mp::METER_FEATURES,
            MpReply::TableFeatures(_) => mp::TABLE_FEATURES,
            MpReply::PortDesc(_) => mp::PORT_DESC,
        }
    }

    /// Reads the body after the header.
    pub fn decode(r: &mut Reader<'_>) -> Result<MultipartReply, OfpError> {
        let t = r.u16()?;
        let flags = r.u16()?;
        r.skip(4)?;
        let body = match t {
            mp::DESC => {
                let d = Desc {
                    mfr_desc: r.string(256)?,
                    hw_desc: r.string(256)?,
                    sw_desc: r.string(256)?,
                    serial_num: r.string(32)?,
                    dp_desc: r.string(256)?,
                };
                done(r)?;
                MpReply::Desc(d)
            }
            mp::FLOW => MpReply::Flow(many(r, |r| {
                let mut b = entry(r, 2)?;
                let table_id = b.u8()?;
                b.skip(1)?;
                let (duration_sec, duration_nsec) = (b.u32()?, b.u32()?);
                let (priority, idle_timeout, hard_timeout, flags) = (b.u16()?, b.u16()?, b.u16()?, b.u16()?);
                b.skip(4)?;
                let (cookie, packet_count, byte_count) = (b.u64()?, b.u64()?, b.u64()?);
                let match_ = Match::decode(&mut b)?;
                Ok(FlowStats {
                    table_id,
                    duration_sec,
                    duration_nsec,
                    priority,
                    idle_timeout,
                    hard_timeout,
                    flags,
                    cookie,
                    packet_count,
                    byte_count,
                    match_,
                    instructions: decode_instructions(&mut b)?,
                })
            })?),
            mp::AGGREGATE => {
                let a = MpReply::Aggregate { packet_count: r.u64()?, byte_count: r.u64()?, flow_count: r.u32()? };
                r.skip(4)?;
                done(r)?;
                a
            }
            mp::TABLE => MpReply::Table(many(r, |r| {
                let table_id = r.u8()?;
                r.skip(3)?;
                Ok(TableStats { table_id, active_count: r.u32()?, lookup_count: r.u64()?, matched_count: r.u64()? })
            })?),
            mp::PORT_STATS => MpReply::PortStats(many(r, PortStats::decode)?),
            mp::QUEUE => MpReply::Queue(many(r, |r| {
                Ok(QueueStats {
                    port_no: r.u32()?,
                    queue_id: r.u32()?,
                    tx_bytes: r.u64()?,
                    tx_packets: r.u64()?,
                    tx_errors: r.u64()?,
                    duration_sec: r.u32()?,
                    duration_nsec: r.u32()?,
                })
            })?),
            mp::GROUP => MpReply::Group(many(r, |r| {
                let mut b = entry(r, 2)?;
                b.skip(2)?;
                let (group_id, ref_count) = (b.u32()?, b.u32()?);
                b.skip(4)?;
                let (packet_count, byte_count, duration_sec, duration_nsec) = (b.u64()?, b.u64()?, b.u32()?, b.u32()?);
                let buckets = many(&mut b, |b| Ok((b.u64()?, b.u64()?)))?;
                Ok(GroupStats { group_id, ref_count, packet_count, byte_count, duration_sec, duration_nsec, buckets })
            })?),
            mp::GROUP_DESC => MpReply::GroupDesc(many(r, |r| {
                let mut b = entry(r, 2)?;
                let group_type = b.u8()?;
                b.skip(1)?;
                let group_id = b.u32()?;
                Ok(GroupDesc { group_type, group_id, buckets: decode_buckets(&mut b)? })
            })?),
            mp::GROUP_FEATURES => {
                let mut g = GroupFeatures { types: r.u32()?, capabilities: r.u32()?, ..GroupFeatures::default() };
                for m in &mut g.max_groups {
                    *m = r.u32()?;
                }
                for a in &mut g.actions {
                    *a = r.u32()?;
                }
                done(r)?;
                MpReply::GroupFeatures(g)
            }
            mp::METER => MpReply::Meter(many(r, |r| {
                let meter_id = r.u32()?;
                let len = usize::from(r.u16()?);
                let mut b = r.sub(len.checked_sub(6).ok_or(BAD_LEN)?, BAD_LEN)?;
                b.skip(6)?;
                let (flow_count, packet_in_count, byte_in_count) = (b.u32()?, b.u64()?, b.u64()?);
                let (duration_sec, duration_nsec) = (b.u32()?, b.u32()?);
                let bands = many(&mut b, |b| Ok((b.u64()?, b.u64()?)))?;
                Ok(MeterStats {
                    meter_id,
                    flow_count,
                    packet_in_count,
                    byte_in_count,
                    duration_sec,
                    duration_nsec,
                    bands,
                })
            })?),
            mp::METER_CONFIG => MpReply::MeterConfig(many(r, |r| {
                let mut b = entry(r, 2)?;
                let flags = b.u16()?;
                let meter_id = b.u32()?;
                Ok(MeterConfig { flags, meter_id, bands: decode_bands(&mut b)? })
            })?),
            mp::METER_FEATURES => {
                let m = MeterFeatures {
                    max_meter: r.u32()?,
                    band_types: r.u32()?,
                    capabilities: r.u32()?,
                    max_bands: r.u8()?,
                    max_color: r.u8()?,
                };
                r.skip(2)?;
                done(r)?;
                MpReply::MeterFeatures(m)
            }
            mp::TABLE_FEATURES => MpReply::TableFeatures(many(r, TableFeatures::decode)?),
            mp::PORT_DESC => MpReply::PortDesc(many(r, PortDesc::decode)?),
            _ => return Err(OfpError::BadRequest(BadRequest::BadMultipart)),
        };
        Ok(MultipartReply { flags, body })
    }

    /// Appends the body after the header.
    pub fn encode(&self, w: &mut Writer) {
        w.u16(self.type_id()).u16(self.flags).pad(4);
        match &self.body {
            MpReply::Desc(d) => {
                w.string(&d.mfr_desc, 256).string(&d.hw_desc, 256).string(&d.sw_desc, 256);
                w.string(&d.serial_num, 32).string(&d.dp_desc, 256);
            }
            MpReply::Flow(v) => {
                for f in v {
                    let s = w.len();
                    w.u16(0).u8(f.table_id).pad(1).u32(f.duration_sec).u32(f.duration_nsec);
                    w.u16(f.priority).u16(f.idle_timeout).u16(f.hard_timeout).u16(f.flags).pad(4);
                    w.u64(f.cookie).u64(f.packet_count).u64(f.byte_count);
                    f.match_.encode(w);
                    encode_instructions(&f.instructions, w);
                    w.patch_len16(s, s);
                }
            }
            MpReply::Aggregate { packet_count, byte_count, flow_count } => {
                w.u64(*packet_count).u64(*byte_count).u32(*flow_count).pad(4);
            }
            MpReply::Table(v) => {
                for t in v {
                    w.u8(t.table_id).pad(3).u32(t.active_count).u64(t.lookup_count).u64(t.matched_count);
                }
            }
            MpReply::PortStats(v) => {
                for p in v {
                    p.encode(w);
                }
            }
            MpReply::Queue(v) => {
                for q in v {
                    w.u32(q.port_no).u32(q.queue_id).u64(q.tx_bytes).u64(q.tx_packets).u64(q.tx_errors);
                    w.u32(q.duration_sec).u32(q.duration_nsec);
                }
            }
            MpReply::Group(v) => {
                for g in v {
                    let s = w.len();
                    w.u16(0).pad(2).u32(g.group_id).u32(g.ref_count).pad(4).u64(g.packet_count).u64(g.byte_count);
                    w.u32(g.duration_sec).u32(g.duration_nsec);
                    for (p, b) in &g.buckets {
                        w.u64(*p).u64(*b);
                    }
                    w.patch_len16(s, s);
                }
            }
            MpReply::GroupDesc(v) => {
                for g in v {
                    let s = w.len();
                    w.u16(0).u8(g.group_type).pad(1).u32(g.group_id);
                    encode_buckets(&g.buckets, w);
                    w.patch_len16(s, s);
                }
            }
            MpReply::GroupFeatures(g) => {
                w.u32(g.types).u32(g.capabilities);
                for m in g.max_groups {
                    w.u32(m);
                }
                for a in g.actions {
                    w.u32(a);
                }
            }
            MpReply::Meter(v) => {
                for m in v {
                    let s = w.len();
                    w.u32(m.meter_id).u16(0).pad(6).u32(m.flow_count).u64(m.packet_in_count).u64(m.byte_in_count);
                    w.u32(m.duration_sec).u32(m.duration_nsec);
                    for (p, b) in &m.bands {
                        w.u64(*p).u64(*b);
                    }
                    w.patch_len16(s + 4, s);
                }
            }
            MpReply::MeterConfig(v) => {
                for m in v {
                    let s = w.len();
                    w.u16(0).u16(m.flags).u32(m.meter_id);
                    encode_bands(&m.bands, w);
                    w.patch_len16(s, s);
                }
            }
            MpReply::MeterFeatures(m) => {
                w.u32(m.max_meter).u32(m.band_types).u32(m.capabilities).u8(m.max_bands).u8(m.max_color).pad(2);
            }
            MpReply::TableFeatures(v) => {
                for t in v {
                    t.encode(w);
                }
            }
            MpReply::PortDesc(v) => {
                for p in v {
                    p.encode(w);
                }
            }
        }
    }
}
