//! Messages from and to the wire: the header, then each type's body.

use super::*;

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
        let mut data = Vec::new();
        if err_type == super::super::error::ET_EXPERIMENTER {
            data.extend(super::super::error::NX_VENDOR_ID.to_be_bytes());
        }
        data.extend(&offending[..offending.len().min(usize::from(u16::MAX) - 16)]);
        Message::Error { err_type, code, data }
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
                use crate::ofp::error::FlowModFailed;
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
