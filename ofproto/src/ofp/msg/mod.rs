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

mod codec;

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
