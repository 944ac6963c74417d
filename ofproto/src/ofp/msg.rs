//! OpenFlow 1.3 messages (spec section 7): the header, every message type
//! decoded into plain types and encoded back. Decoding never panics: a
//! message too short, too long, of an unknown type or with a bad field is
//! an [`OfpError`] naming the error reply the spec asks for.

use super::action::{decode_actions, decode_instructions, encode_actions, encode_instructions, Action, Instruction};
use super::bytes::{Reader, Writer};
use super::error::{BadRequest, OfpError, BAD_LEN};
use super::multipart::{MultipartReply, MultipartRequest};
use super::oxm::Match;
use super::port::PortDesc;

/// OpenFlow 1.3's version number.
pub const VERSION: u8 = 4;
/// The header's size.
pub const HEADER_LEN: usize = 8;
/// OFP_NO_BUFFER.
pub const NO_BUFFER: u32 = 0xffff_ffff;

/// Message types (`ofp_type`).
#[allow(missing_docs)]
pub mod ty {
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const EXPERIMENTER: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const SET_CONFIG: u8 = 9;
    pub const PACKET_IN: u8 = 10;
    pub const FLOW_REMOVED: u8 = 11;
    pub const PORT_STATUS: u8 = 12;
    pub const PACKET_OUT: u8 = 13;
    pub const FLOW_MOD: u8 = 14;
    pub const GROUP_MOD: u8 = 15;
    pub const PORT_MOD: u8 = 16;
    pub const TABLE_MOD: u8 = 17;
    pub const MULTIPART_REQUEST: u8 = 18;
    pub const MULTIPART_REPLY: u8 = 19;
    pub const BARRIER_REQUEST: u8 = 20;
    pub const BARRIER_REPLY: u8 = 21;
    pub const QUEUE_GET_CONFIG_REQUEST: u8 = 22;
    pub const QUEUE_GET_CONFIG_REPLY: u8 = 23;
    pub const ROLE_REQUEST: u8 = 24;
    pub const ROLE_REPLY: u8 = 25;
    pub const GET_ASYNC_REQUEST: u8 = 26;
    pub const GET_ASYNC_REPLY: u8 = 27;
    pub const SET_ASYNC: u8 = 28;
    pub const METER_MOD: u8 = 29;
}

/// The length of the first message in `buf` once its header arrived
/// (for framing a TCP stream); None while fewer than 8 bytes are there.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= HEADER_LEN).then(|| usize::from(u16::from_be_bytes([buf[2], buf[3]])))
}

/// FEATURES_REPLY.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Features {
    /// Datapath id.
    pub datapath_id: u64,
    /// Packets the switch can buffer for packet-in.
    pub n_buffers: u32,
    /// Flow tables.
    pub n_tables: u8,
    /// Auxiliary connection id (0: main).
    pub auxiliary_id: u8,
    /// OFPC_* bits.
    pub capabilities: u32,
}

/// GET_CONFIG_REPLY / SET_CONFIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// OFPC_FRAG_* bits.
    pub flags: u16,
    /// Bytes of a table-miss packet sent to the controller.
    pub miss_send_len: u16,
}

/// PACKET_IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    /// Buffer id, or NO_BUFFER.
    pub buffer_id: u32,
    /// Length of the whole frame.
    pub total_len: u16,
    /// OFPR_NO_MATCH 0, OFPR_ACTION 1, OFPR_INVALID_TTL 2.
    pub reason: u8,
    /// Table the packet was looked up in.
    pub table_id: u8,
    /// Cookie of the flow that sent it.
    pub cookie: u64,
    /// Pipeline fields (in_port, metadata, tunnel_id ...).
    pub match_: Match,
    /// The frame, or its first bytes.
    pub data: Vec<u8>,
}

/// FLOW_REMOVED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRemoved {
    /// Cookie.
    pub cookie: u64,
    /// Priority.
    pub priority: u16,
    /// OFPRR_IDLE_TIMEOUT 0, HARD_TIMEOUT 1, DELETE 2, GROUP_DELETE 3.
    pub reason: u8,
    /// Table.
    pub table_id: u8,
    /// Seconds alive.
    pub duration_sec: u32,
    /// Nanoseconds beyond.
    pub duration_nsec: u32,
    /// Idle timeout.
    pub idle_timeout: u16,
    /// Hard timeout.
    pub hard_timeout: u16,
    /// Packets.
    pub packet_count: u64,
    /// Bytes.
    pub byte_count: u64,
    /// Its match.
    pub match_: Match,
}

/// PORT_STATUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    /// OFPPR_ADD 0, DELETE 1, MODIFY 2.
    pub reason: u8,
    /// The port.
    pub desc: PortDesc,
}

/// PACKET_OUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    /// Buffer id, or NO_BUFFER (then `data` is the frame).
    pub buffer_id: u32,
    /// Input port for the actions (CONTROLLER, or a port).
    pub in_port: u32,
    /// Actions.
    pub actions: Vec<Action>,
    /// The frame.
    pub data: Vec<u8>,
}

/// FLOW_MOD commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowModCommand {
    /// OFPFC_ADD.
    Add = 0,
    /// OFPFC_MODIFY.
    Modify = 1,
    /// OFPFC_MODIFY_STRICT.
    ModifyStrict = 2,
    /// OFPFC_DELETE.
    Delete = 3,
    /// OFPFC_DELETE_STRICT.
    DeleteStrict = 4,
}

/// FLOW_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    /// Cookie.
    pub cookie: u64,
    /// Cookie mask (modify/delete select by cookie & mask).
    pub cookie_mask: u64,
    /// Table (OFPTT_ALL 0xff for delete).
    pub table_id: u8,
    /// Command.
    pub command: FlowModCommand,
    /// Idle timeout, seconds.
    pub idle_timeout: u16,
    /// Hard timeout, seconds.
    pub hard_timeout: u16,
    /// Priority.
    pub priority: u16,
    /// Buffered packet to apply the flow to, or NO_BUFFER.
    pub buffer_id: u32,
    /// Delete: only flows that output to this port (ANY: any).
    pub out_port: u32,
    /// Delete: only flows that output to this group (ANY: any).
    pub out_group: u32,
    /// OFPFF_* flags.
    pub flags: u16,
    /// Match.
    pub match_: Match,
    /// Instructions.
    pub instructions: Vec<Instruction>,
}

impl FlowMod {
    /// A flow-mod with the fields most take as they are: no cookie, no
    /// timeouts, no buffer, out_port/out_group ANY, no flags.
    pub fn new(
        command: FlowModCommand,
        table_id: u8,
        priority: u16,
        match_: Match,
        instructions: Vec<Instruction>,
    ) -> FlowMod {
        FlowMod {
            cookie: 0,
            cookie_mask: 0,
            table_id,
            command,
            idle_timeout: 0,
            hard_timeout: 0,
            priority,
            buffer_id: NO_BUFFER,
            out_port: super::action::port::ANY,
            out_group: super::action::port::ANY,
            flags: 0,
            match_,
            instructions,
        }
    }
}

/// OFPFF_SEND_FLOW_REM.
pub const FF_SEND_FLOW_REM: u16 = 1;
/// OFPFF_CHECK_OVERLAP.
pub const FF_CHECK_OVERLAP: u16 = 2;
/// OFPFF_RESET_COUNTS.
pub const FF_RESET_COUNTS: u16 = 4;
/// OFPFF_NO_PKT_COUNTS.
pub const FF_NO_PKT_COUNTS: u16 = 8;
/// OFPFF_NO_BYT_COUNTS.
pub const FF_NO_BYT_COUNTS: u16 = 16;

/// A group bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Weight (select groups).
    pub weight: u16,
    /// Port whose liveness decides (fast failover), or ANY.
    pub watch_port: u32,
    /// Group whose liveness decides, or ANY.
    pub watch_group: u32,
    /// Actions.
    pub actions: Vec<Action>,
}

impl Bucket {
    fn decode(r: &mut Reader<'_>) -> Result<Bucket, OfpError> {
        use super::error::GroupModFailed;
        let bad = OfpError::GroupModFailed(GroupModFailed::BadBucket);
        let len = usize::from(r.u16().map_err(|_| bad)?);
        if len < 16 || len % 8 != 0 {
            return Err(bad);
        }
        let mut b = r.sub(len - 2, bad)?;
        let weight = b.u16()?;
        let watch_port = b.u32()?;
        let watch_group = b.u32()?;
        b.skip(4)?;
        Ok(Bucket { weight, watch_port, watch_group, actions: decode_actions(&mut b)? })
    }
    fn encode(&self, w: &mut Writer) {
        let start = w.len();
        w.u16(0).u16(self.weight).u32(self.watch_port).u32(self.watch_group).pad(4);
        encode_actions(&self.actions, w);
        w.patch_len16(start, start);
    }
}

/// Reads buckets until `r` ends.
pub fn decode_buckets(r: &mut Reader<'_>) -> Result<Vec<Bucket>, OfpError> {
    let mut v = Vec::new();
    while !r.is_empty() {
        v.push(Bucket::decode(r)?);
    }
    Ok(v)
}

/// Appends buckets.
pub fn encode_buckets(b: &[Bucket], w: &mut Writer) {
    for x in b {
        x.encode(w);
    }
}

/// GROUP_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    /// OFPGC_ADD 0, MODIFY 1, DELETE 2.
    pub command: u16,
    /// OFPGT_ALL 0, SELECT 1, INDIRECT 2, FF 3.
    pub group_type: u8,
    /// Group id (OFPG_ALL 0xfffffffc for delete all).
    pub group_id: u32,
    /// Buckets.
    pub buckets: Vec<Bucket>,
}

/// PORT_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMod {
    /// Port.
    pub port_no: u32,
    /// Its MAC (must match the port's).
    pub hw_addr: [u8; 6],
    /// OFPPC_* bits.
    pub config: u32,
    /// Which of them to change.
    pub mask: u32,
    /// Features to advertise (0: unchanged).
    pub advertise: u32,
}

/// TABLE_MOD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMod {
    /// Table (OFPTT_ALL: all).
    pub table_id: u8,
    /// Config bits.
    pub config: u32,
}

/// A meter band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterBand {
    /// OFPMBT_DROP 1, DSCP_REMARK 2.
    pub band_type: u16,
    /// Rate, in kbps or pktps as the meter's flags say.
    pub rate: u32,
    /// Burst size.
    pub burst_size: u32,
    /// DSCP remark: drop precedence added.
    pub prec_level: u8,
}

impl MeterBand {
    fn decode(r: &mut Reader<'_>) -> Result<MeterBand, OfpError> {
        use super::error::MeterModFailed;
        let bad = OfpError::MeterModFailed(MeterModFailed::BadBand);
        let band_type = r.u16().map_err(|_| bad)?;
        let len = r.u16().map_err(|_| bad)?;
        if len != 16 {
            return Err(bad);
        }
        let mut b = r.sub(12, bad)?;
        let rate = b.u32()?;
        let burst_size = b.u32()?;
        let prec_level = b.u8()?;
        match band_type {
            1 | 2 => {
                Ok(MeterBand { band_type, rate, burst_size, prec_level: if band_type == 2 { prec_level } else { 0 } })
            }
            _ => Err(bad),
        }
    }
    fn encode(&self, w: &mut Writer) {
        w.u16(self.band_type).u16(16).u32(self.rate).u32(self.burst_size).u8(self.prec_level).pad(3);
    }
}

/// Reads bands until `r` ends.
pub fn decode_bands(r: &mut Reader<'_>) -> Result<Vec<MeterBand>, OfpError> {
    let mut v = Vec::new();
    while !r.is_empty() {
        v.push(MeterBand::decode(r)?);
    }
    Ok(v)
}

/// Appends bands.
pub fn encode_bands(b: &[MeterBand], w: &mut Writer) {
    for x in b {
        x.encode(w);
    }
}

/// METER_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterMod {
    /// OFPMC_ADD 0, MODIFY 1, DELETE 2.
    pub command: u16,
    /// OFPMF_KBPS 1, PKTPS 2, BURST 4, STATS 8.
    pub flags: u16,
    /// Meter id.
    pub meter_id: u32,
    /// Bands.
    pub bands: Vec<MeterBand>,
}

/// ROLE_REQUEST / ROLE_REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// OFPCR_ROLE_NOCHANGE 0, EQUAL 1, MASTER 2, SLAVE 3.
    pub role: u32,
    /// Master election generation id.
    pub generation_id: u64,
}

/// GET_ASYNC_REPLY / SET_ASYNC: which async messages each role gets
/// (index 0: master/equal, 1: slave).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncConfig {
    /// Packet-in reasons, as bits.
    pub packet_in_mask: [u32; 2],
    /// Port-status reasons.
    pub port_status_mask: [u32; 2],
    /// Flow-removed reasons.
    pub flow_removed_mask: [u32; 2],
}

/// A queue in a QUEUE_GET_CONFIG_REPLY, with its raw properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketQueue {
    /// Queue id.
    pub queue_id: u32,
    /// Port.
    pub port: u32,
    /// Properties (`ofp_queue_prop_header` and body), as bytes.
    pub properties: Vec<u8>,
}

/// An OpenFlow 1.3 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// HELLO with the versions of its bitmap element (empty: none sent).
    Hello {
        /// Versions the peer speaks.
        versions: Vec<u8>,
    },
    /// ERROR: type, code and the start of the offending message.
    Error {
        /// `ofp_error_type`.
        err_type: u16,
        /// Code.
        code: u16,
        /// Data (at least 64 bytes of the request, where there was one).
        data: Vec<u8>,
    },
    /// ECHO_REQUEST.
    EchoRequest(Vec<u8>),
    /// ECHO_REPLY.
    EchoReply(Vec<u8>),
    /// EXPERIMENTER.
    Experimenter {
        /// Experimenter id.
        experimenter: u32,
        /// Its type.
        exp_type: u32,
        /// Body.
        data: Vec<u8>,
    },
    /// FEATURES_REQUEST.
    FeaturesRequest,
    /// FEATURES_REPLY.
    FeaturesReply(Features),
    /// GET_CONFIG_REQUEST.
    GetConfigRequest,
    /// GET_CONFIG_REPLY.
    GetConfigReply(SwitchConfig),
    /// SET_CONFIG.
    SetConfig(SwitchConfig),
    /// PACKET_IN.
    PacketIn(PacketIn),
    /// FLOW_REMOVED.
    FlowRemoved(FlowRemoved),
    /// PORT_STATUS.
    PortStatus(PortStatus),
    /// PACKET_OUT.
    PacketOut(PacketOut),
    /// FLOW_MOD.
    FlowMod(FlowMod),
    /// GROUP_MOD.
    GroupMod(GroupMod),
    /// PORT_MOD.
    PortMod(PortMod),
    /// TABLE_MOD.
    TableMod(TableMod),
    /// MULTIPART_REQUEST.
    MultipartRequest(MultipartRequest),
    /// MULTIPART_REPLY.
    MultipartReply(MultipartReply),
    /// BARRIER_REQUEST.
    BarrierRequest,
    /// BARRIER_REPLY.
    BarrierReply,
    /// QUEUE_GET_CONFIG_REQUEST.
    QueueGetConfigRequest {
        /// Port (ANY: all).
        port: u32,
    },
    /// QUEUE_GET_CONFIG_REPLY.
    QueueGetConfigReply {
        /// Port.
        port: u32,
        /// Its queues.
        queues: Vec<PacketQueue>,
    },
    /// ROLE_REQUEST.
    RoleRequest(Role),
    /// ROLE_REPLY.
    RoleReply(Role),
    /// GET_ASYNC_REQUEST.
    GetAsyncRequest,
    /// GET_ASYNC_REPLY.
    GetAsyncReply(AsyncConfig),
    /// SET_ASYNC.
    SetAsync(AsyncConfig),
    /// METER_MOD.
    MeterMod(MeterMod),
}

/// A decode failure: the xid of the message (0 when its header was
/// unreadable) and the error the spec says to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// The offending message's xid.
    pub xid: u32,
    /// The error reply it gets.
    pub error: OfpError,
}

fn empty(r: &Reader<'_>) -> Result<(), OfpError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(BAD_LEN)
    }
}

fn read_async(r: &mut Reader<'_>) -> Result<AsyncConfig, OfpError> {
    let mut a = AsyncConfig::default();
    for m in [&mut a.packet_in_mask, &mut a.port_status_mask, &mut a.flow_removed_mask] {
        m[0] = r.u32()?;
        m[1] = r.u32()?;
    }
    empty(r)?;
    Ok(a)
}

impl Message {
    /// The `ofp_type` of this message.
    pub fn type_id(&self) -> u8 {
        match self {
            Message::Hello { .. } => ty::HELLO,
            Message::Error { .. } => ty::ERROR,
            Message::EchoRequest(_) => ty::ECHO_REQUEST,
            Message::EchoReply(_) => ty::ECHO_REPLY,
            Message::Experimenter { .. } => ty::EXPERIMENTER,
            Message::FeaturesRequest => ty::FEATURES_REQUEST,
            Message::FeaturesReply(_) => ty::FEATURES_REPLY,
            Message::GetConfigRequest => ty::GET_CONFIG_REQUEST,
            Message::GetConfigReply(_) => ty::GET_CONFIG_REPLY,
            Message::SetConfig(_) => ty::SET_CONFIG,
            Message::PacketIn(_) => ty::PACKET_IN,
            Message::FlowRemoved(_) => ty::FLOW_REMOVED,
            Message::PortStatus(_) => ty::PORT_STATUS,
            Message::PacketOut(_) => ty::PACKET_OUT,
            Message::FlowMod(_) => ty::FLOW_MOD,
            Message::GroupMod(_) => ty::GROUP_MOD,
            Message::PortMod(_) => ty::PORT_MOD,
            Message::TableMod(_) => ty::TABLE_MOD,
            Message::MultipartRequest(_) => ty::MULTIPART_REQUEST,
            Message::MultipartReply(_) => ty::MULTIPART_REPLY,
            Message::BarrierRequest => ty::BARRIER_REQUEST,
            Message::BarrierReply => ty::BARRIER_REPLY,
            Message::QueueGetConfigRequest { .. } => ty::QUEUE_GET_CONFIG_REQUEST,
            Message::QueueGetConfigReply { .. } => ty::QUEUE_GET_CONFIG_REPLY,
            Message::RoleRequest(_) => ty::ROLE_REQUEST,
            Message::RoleReply(_) => ty::ROLE_REPLY,
            Message::GetAsyncRequest => ty::GET_ASYNC_REQUEST,
            Message::GetAsyncReply(_) => ty::GET_ASYNC_REPLY,
            Message::SetAsync(_) => ty::SET_ASYNC,
            Message::MeterMod(_) => ty::METER_MOD,
        }
    }

    /// An ERROR message for `e`, carrying the offending message (the spec
    /// asks for at least 64 bytes of it; as OVS, we send all of it that
    /// fits).
    pub fn error(e: OfpError, offending: &[u8]) -> Message {
        let (err_type, code) = e.type_code();
        Message::Error { err_type, code, data: offending[..offending.len().min(usize::from(u16::MAX) - 12)].to_vec() }
    }

    /// Decodes one whole message (`buf` is exactly its length). A HELLO of
    /// any version is accepted (version negotiation); any other message
    /// must be OpenFlow 1.3.
    pub fn decode(buf: &[u8]) -> Result<(u32, Message), DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError { xid: 0, error: BAD_LEN });
        }
        let xid = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let fail = |error| DecodeError { xid, error };
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if len != buf.len() {
            return Err(fail(BAD_LEN));
        }
        let (version, t) = (buf[0], buf[1]);
        if version != VERSION && t != ty::HELLO {
            return Err(fail(OfpError::BadRequest(BadRequest::BadVersion)));
        }
        let mut r = Reader::new(&buf[HEADER_LEN..], BAD_LEN);
        Self::decode_body(t, &mut r).map(|m| (xid, m)).map_err(fail)
    }

    fn decode_body(t: u8, r: &mut Reader<'_>) -> Result<Message, OfpError> {
        Ok(match t {
            ty::HELLO => {
                // Elements: OFPHET_VERSIONBITMAP (1) carries 32-bit bitmaps.
                let mut versions = Vec::new();
                while r.left() >= 4 {
                    let et = r.u16()?;
                    let el = usize::from(r.u16()?);
                    if el < 4 {
                        return Err(BAD_LEN);
                    }
                    let mut e = r.sub(el - 4, BAD_LEN)?;
                    r.skip(el.next_multiple_of(8) - el).ok();
                    if et == 1 {
                        let mut word = 0u32;
                        while !e.is_empty() {
                            let bits = e.u32()?;
                            for b in 0..32 {
                                if bits & (1 << b) != 0 {
                                    versions.push(u8::try_from(word * 32 + b).unwrap_or(u8::MAX));
                                }
                            }
                            word += 1;
                        }
                    }
                }
                Message::Hello { versions }
            }
            ty::ERROR => {
                let err_type = r.u16()?;
                let code = r.u16()?;
                Message::Error { err_type, code, data: r.rest().to_vec() }
            }
            ty::ECHO_REQUEST => Message::EchoRequest(r.rest().to_vec()),
            ty::ECHO_REPLY => Message::EchoReply(r.rest().to_vec()),
            ty::EXPERIMENTER => {
                Message::Experimenter { experimenter: r.u32()?, exp_type: r.u32()?, data: r.rest().to_vec() }
            }
            ty::FEATURES_REQUEST => empty(r).map(|()| Message::FeaturesRequest)?,
            ty::FEATURES_REPLY => {
                let f = Features {
                    datapath_id: r.u64()?,
                    n_buffers: r.u32()?,
                    n_tables: r.u8()?,
                    auxiliary_id: r.u8()?,
                    capabilities: {
                        r.skip(2)?;
                        r.u32()?
                    },
                };
                r.skip(4)?;
                empty(r)?;
                Message::FeaturesReply(f)
            }
            ty::GET_CONFIG_REQUEST => empty(r).map(|()| Message::GetConfigRequest)?,
            ty::GET_CONFIG_REPLY | ty::SET_CONFIG => {
                let c = SwitchConfig { flags: r.u16()?, miss_send_len: r.u16()? };
                empty(r)?;
                if t == ty::SET_CONFIG {
                    Message::SetConfig(c)
                } else {
                    Message::GetConfigReply(c)
                }
            }
            ty::PACKET_IN => {
                let buffer_id = r.u32()?;
                let total_len = r.u16()?;
                let reason = r.u8()?;
                let table_id = r.u8()?;
                let cookie = r.u64()?;
                let match_ = Match::decode(r)?;
                r.skip(2)?;
                Message::PacketIn(PacketIn {
                    buffer_id,
                    total_len,
                    reason,
                    table_id,
                    cookie,
                    match_,
                    data: r.rest().to_vec(),
                })
            }
            ty::FLOW_REMOVED => {
                let cookie = r.u64()?;
                let priority = r.u16()?;
                let reason = r.u8()?;
                let table_id = r.u8()?;
                let fr = FlowRemoved {
                    cookie,
                    priority,
                    reason,
                    table_id,
                    duration_sec: r.u32()?,
                    duration_nsec: r.u32()?,
                    idle_timeout: r.u16()?,
                    hard_timeout: r.u16()?,
                    packet_count: r.u64()?,
                    byte_count: r.u64()?,
                    match_: Match::decode(r)?,
                };
                empty(r)?;
                Message::FlowRemoved(fr)
            }
            ty::PORT_STATUS => {
                let reason = r.u8()?;
                r.skip(7)?;
                let desc = PortDesc::decode(r)?;
                empty(r)?;
                Message::PortStatus(PortStatus { reason, desc })
            }
            ty::PACKET_OUT => {
                let buffer_id = r.u32()?;
                let in_port = r.u32()?;
                let alen = usize::from(r.u16()?);
                r.skip(6)?;
                let mut a = r.sub(alen, BAD_LEN)?;
                let actions = decode_actions(&mut a)?;
                Message::PacketOut(PacketOut { buffer_id, in_port, actions, data: r.rest().to_vec() })
            }
            ty::FLOW_MOD => {
                use super::error::FlowModFailed;
                let cookie = r.u64()?;
                let cookie_mask = r.u64()?;
                let table_id = r.u8()?;
                let command = match r.u8()? {
                    0 => FlowModCommand::Add,
                    1 => FlowModCommand::Modify,
                    2 => FlowModCommand::ModifyStrict,
                    3 => FlowModCommand::Delete,
                    4 => FlowModCommand::DeleteStrict,
                    _ => return Err(OfpError::FlowModFailed(FlowModFailed::BadCommand)),
                };
                let idle_timeout = r.u16()?;
                let hard_timeout = r.u16()?;
                let priority = r.u16()?;
                let buffer_id = r.u32()?;
                let out_port = r.u32()?;
                let out_group = r.u32()?;
                let flags = r.u16()?;
                r.skip(2)?;
                if flags & !0x1f != 0 {
                    return Err(OfpError::FlowModFailed(FlowModFailed::BadFlags));
                }
                let match_ = Match::decode(r)?;
                let instructions = decode_instructions(r)?;
                Message::FlowMod(FlowMod {
                    cookie,
                    cookie_mask,
                    table_id,
                    command,
                    idle_timeout,
                    hard_timeout,
                    priority,
                    buffer_id,
                    out_port,
                    out_group,
                    flags,
                    match_,
                    instructions,
                })
            }
            ty::GROUP_MOD => {
                let command = r.u16()?;
                let group_type = r.u8()?;
                r.skip(1)?;
                let group_id = r.u32()?;
                Message::GroupMod(GroupMod { command, group_type, group_id, buckets: decode_buckets(r)? })
            }
            ty::PORT_MOD => {
                let port_no = r.u32()?;
                r.skip(4)?;
                let hw_addr = r.array()?;
                r.skip(2)?;
                let pm = PortMod { port_no, hw_addr, config: r.u32()?, mask: r.u32()?, advertise: r.u32()? };
                r.skip(4)?;
                empty(r)?;
                Message::PortMod(pm)
            }
            ty::TABLE_MOD => {
                let table_id = r.u8()?;
                r.skip(3)?;
                let config = r.u32()?;
                empty(r)?;
                Message::TableMod(TableMod { table_id, config })
            }
            ty::MULTIPART_REQUEST => Message::MultipartRequest(MultipartRequest::decode(r)?),
            ty::MULTIPART_REPLY => Message::MultipartReply(MultipartReply::decode(r)?),
            ty::BARRIER_REQUEST => empty(r).map(|()| Message::BarrierRequest)?,
            ty::BARRIER_REPLY => empty(r).map(|()| Message::BarrierReply)?,
            ty::QUEUE_GET_CONFIG_REQUEST => {
                let port = r.u32()?;
                r.skip(4)?;
                empty(r)?;
                Message::QueueGetConfigRequest { port }
            }
            ty::QUEUE_GET_CONFIG_REPLY => {
                let port = r.u32()?;
                r.skip(4)?;
                let mut queues = Vec::new();
                while !r.is_empty() {
                    let queue_id = r.u32()?;
                    let qport = r.u32()?;
                    let len = usize::from(r.u16()?);
                    r.skip(6)?;
                    let props = r.take(len.checked_sub(16).ok_or(BAD_LEN)?)?;
                    queues.push(PacketQueue { queue_id, port: qport, properties: props.to_vec() });
                }
                Message::QueueGetConfigReply { port, queues }
            }
            ty::ROLE_REQUEST | ty::ROLE_REPLY => {
                let role = r.u32()?;
                r.skip(4)?;
                let ro = Role { role, generation_id: r.u64()? };
                empty(r)?;
                if t == ty::ROLE_REQUEST {
                    Message::RoleRequest(ro)
                } else {
                    Message::RoleReply(ro)
                }
            }
            ty::GET_ASYNC_REQUEST => empty(r).map(|()| Message::GetAsyncRequest)?,
            ty::GET_ASYNC_REPLY => Message::GetAsyncReply(read_async(r)?),
            ty::SET_ASYNC => Message::SetAsync(read_async(r)?),
            ty::METER_MOD => {
                let command = r.u16()?;
                let flags = r.u16()?;
                let meter_id = r.u32()?;
                Message::MeterMod(MeterMod { command, flags, meter_id, bands: decode_bands(r)? })
            }
            _ => return Err(OfpError::BadRequest(BadRequest::BadType)),
        })
    }

    /// Encodes the message with `xid`.
    pub fn encode(&self, xid: u32) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION).u8(self.type_id()).u16(0).u32(xid);
        self.encode_body(&mut w);
        w.patch_len16(2, 0);
        w.buf
    }

    fn encode_body(&self, w: &mut Writer) {
        match self {
            Message::Hello { versions } => {
                if !versions.is_empty() {
                    let words = usize::from(*versions.iter().max().unwrap_or(&0)) / 32 + 1;
                    let mut bits = vec![0u32; words];
                    for v in versions {
                        bits[usize::from(*v) / 32] |= 1 << (v % 32);
                    }
                    let start = w.len();
                    w.u16(1).u16(0);
                    for b in bits {
                        w.u32(b);
                    }
                    w.patch_len16(start + 2, start);
                    w.align8();
                }
            }
            Message::Error { err_type, code, data } => {
                w.u16(*err_type).u16(*code).bytes(data);
            }
            Message::EchoRequest(d) | Message::EchoReply(d) => {
                w.bytes(d);
            }
            Message::Experimenter { experimenter, exp_type, data } => {
                w.u32(*experimenter).u32(*exp_type).bytes(data);
            }
            Message::FeaturesRequest
            | Message::GetConfigRequest
            | Message::BarrierRequest
            | Message::BarrierReply
            | Message::GetAsyncRequest => {}
            Message::FeaturesReply(f) => {
                w.u64(f.datapath_id)
                    .u32(f.n_buffers)
                    .u8(f.n_tables)
                    .u8(f.auxiliary_id)
                    .pad(2)
                    .u32(f.capabilities)
                    .pad(4);
            }
            Message::GetConfigReply(c) | Message::SetConfig(c) => {
                w.u16(c.flags).u16(c.miss_send_len);
            }
            Message::PacketIn(p) => {
                w.u32(p.buffer_id).u16(p.total_len).u8(p.reason).u8(p.table_id).u64(p.cookie);
                p.match_.encode(w);
                w.pad(2).bytes(&p.data);
            }
            Message::FlowRemoved(f) => {
                w.u64(f.cookie).u16(f.priority).u8(f.reason).u8(f.table_id).u32(f.duration_sec).u32(f.duration_nsec);
                w.u16(f.idle_timeout).u16(f.hard_timeout).u64(f.packet_count).u64(f.byte_count);
                f.match_.encode(w);
            }
            Message::PortStatus(p) => {
                w.u8(p.reason).pad(7);
                p.desc.encode(w);
            }
            Message::PacketOut(p) => {
                w.u32(p.buffer_id).u32(p.in_port);
                let at = w.len();
                w.u16(0).pad(6);
                let start = w.len();
                encode_actions(&p.actions, w);
                w.patch_len16(at, start);
                w.bytes(&p.data);
            }
            Message::FlowMod(f) => {
                w.u64(f.cookie).u64(f.cookie_mask).u8(f.table_id).u8(f.command as u8);
                w.u16(f.idle_timeout).u16(f.hard_timeout).u16(f.priority).u32(f.buffer_id);
                w.u32(f.out_port).u32(f.out_group).u16(f.flags).pad(2);
                f.match_.encode(w);
                encode_instructions(&f.instructions, w);
            }
            Message::GroupMod(g) => {
                w.u16(g.command).u8(g.group_type).pad(1).u32(g.group_id);
                encode_buckets(&g.buckets, w);
            }
            Message::PortMod(p) => {
                w.u32(p.port_no).pad(4).bytes(&p.hw_addr).pad(2).u32(p.config).u32(p.mask).u32(p.advertise).pad(4);
            }
            Message::TableMod(t) => {
                w.u8(t.table_id).pad(3).u32(t.config);
            }
            Message::MultipartRequest(m) => m.encode(w),
            Message::MultipartReply(m) => m.encode(w),
            Message::QueueGetConfigRequest { port } => {
                w.u32(*port).pad(4);
            }
            Message::QueueGetConfigReply { port, queues } => {
                w.u32(*port).pad(4);
                for q in queues {
                    let len = u16::try_from(16 + q.properties.len()).unwrap_or(u16::MAX);
                    w.u32(q.queue_id).u32(q.port).u16(len).pad(6).bytes(&q.properties);
                }
            }
            Message::RoleRequest(r) | Message::RoleReply(r) => {
                w.u32(r.role).pad(4).u64(r.generation_id);
            }
            Message::GetAsyncReply(a) | Message::SetAsync(a) => {
                for m in [a.packet_in_mask, a.port_status_mask, a.flow_removed_mask] {
                    w.u32(m[0]).u32(m[1]);
                }
            }
            Message::MeterMod(m) => {
                w.u16(m.command).u16(m.flags).u32(m.meter_id);
                encode_bands(&m.bands, w);
            }
        }
    }
}
