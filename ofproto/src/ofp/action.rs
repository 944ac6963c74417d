//! OpenFlow 1.3 actions (section 7.2.5) and instructions (7.2.4).

use super::bytes::{Reader, Writer};
use super::error::{BadAction, BadInstruction, OfpError};
use super::oxm::Oxm;

/// Reserved port numbers (`ofp_port_no`).
pub mod port {
    /// The largest physical port number.
    pub const MAX: u32 = 0xffff_ff00;
    /// Send back out of the input port.
    pub const IN_PORT: u32 = 0xffff_fff8;
    /// Submit to the first flow table (packet-out only).
    pub const TABLE: u32 = 0xffff_fff9;
    /// The L2 switching of the bridge.
    pub const NORMAL: u32 = 0xffff_fffa;
    /// Every port but the input one (and those with NO_FLOOD).
    pub const FLOOD: u32 = 0xffff_fffb;
    /// Every port but the input one.
    pub const ALL: u32 = 0xffff_fffc;
    /// To the controller, as a packet-in.
    pub const CONTROLLER: u32 = 0xffff_fffd;
    /// The switch's local port.
    pub const LOCAL: u32 = 0xffff_fffe;
    /// Any port (wildcard in requests).
    pub const ANY: u32 = 0xffff_ffff;
}

/// An action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// OFPAT_OUTPUT: to `port`; `max_len` bytes of the packet go to the
    /// controller when the port is CONTROLLER.
    Output {
        /// Port number or a reserved port.
        port: u32,
        /// Bytes to send to the controller (0xffff: the whole packet).
        max_len: u16,
    },
    /// OFPAT_COPY_TTL_OUT.
    CopyTtlOut,
    /// OFPAT_COPY_TTL_IN.
    CopyTtlIn,
    /// OFPAT_SET_MPLS_TTL.
    SetMplsTtl(u8),
    /// OFPAT_DEC_MPLS_TTL.
    DecMplsTtl,
    /// OFPAT_PUSH_VLAN with its EtherType (0x8100 or 0x88a8).
    PushVlan(u16),
    /// OFPAT_POP_VLAN.
    PopVlan,
    /// OFPAT_PUSH_MPLS with its EtherType (0x8847 or 0x8848).
    PushMpls(u16),
    /// OFPAT_POP_MPLS with the EtherType of what follows.
    PopMpls(u16),
    /// OFPAT_SET_QUEUE.
    SetQueue(u32),
    /// OFPAT_GROUP.
    Group(u32),
    /// OFPAT_SET_NW_TTL.
    SetNwTtl(u8),
    /// OFPAT_DEC_NW_TTL.
    DecNwTtl,
    /// OFPAT_SET_FIELD (one exact OXM).
    SetField(Oxm),
    /// OFPAT_PUSH_PBB with its EtherType (0x88e7).
    PushPbb(u16),
    /// OFPAT_POP_PBB.
    PopPbb,
}

/// OFPAT_* numbers.
mod at {
    pub const OUTPUT: u16 = 0;
    pub const COPY_TTL_OUT: u16 = 11;
    pub const COPY_TTL_IN: u16 = 12;
    pub const SET_MPLS_TTL: u16 = 15;
    pub const DEC_MPLS_TTL: u16 = 16;
    pub const PUSH_VLAN: u16 = 17;
    pub const POP_VLAN: u16 = 18;
    pub const PUSH_MPLS: u16 = 19;
    pub const POP_MPLS: u16 = 20;
    pub const SET_QUEUE: u16 = 21;
    pub const GROUP: u16 = 22;
    pub const SET_NW_TTL: u16 = 23;
    pub const DEC_NW_TTL: u16 = 24;
    pub const SET_FIELD: u16 = 25;
    pub const PUSH_PBB: u16 = 26;
    pub const POP_PBB: u16 = 27;
    pub const EXPERIMENTER: u16 = 0xffff;
}

const BAD_ACTION_LEN: OfpError = OfpError::BadAction(BadAction::BadLen);

impl Action {
    /// Reads one action.
    pub fn decode(r: &mut Reader<'_>) -> Result<Action, OfpError> {
        let ty = r.u16().map_err(|_| BAD_ACTION_LEN)?;
        let len = usize::from(r.u16().map_err(|_| BAD_ACTION_LEN)?);
        if len < 8 || len % 8 != 0 {
            return Err(BAD_ACTION_LEN);
        }
        let mut b = r.sub(len - 4, BAD_ACTION_LEN)?;
        let fixed = |want: usize| if len == want { Ok(()) } else { Err(BAD_ACTION_LEN) };
        let bad_arg = OfpError::BadAction(BadAction::BadArgument);
        let ethertype = |b: &mut Reader<'_>, ok: &[u16]| -> Result<u16, OfpError> {
            let e = b.u16()?;
            if ok.contains(&e) {
                Ok(e)
            } else {
                Err(bad_arg)
            }
        };
        Ok(match ty {
            at::OUTPUT => {
                fixed(16)?;
                let port = b.u32()?;
                let max_len = b.u16()?;
                if port == 0 || port == port::ANY || (port > port::MAX && port < port::IN_PORT) {
                    return Err(OfpError::BadAction(BadAction::BadOutPort));
                }
                Action::Output { port, max_len }
            }
            at::COPY_TTL_OUT => fixed(8).map(|()| Action::CopyTtlOut)?,
            at::COPY_TTL_IN => fixed(8).map(|()| Action::CopyTtlIn)?,
            at::SET_MPLS_TTL => fixed(8).and_then(|()| Ok(Action::SetMplsTtl(b.u8()?)))?,
            at::DEC_MPLS_TTL => fixed(8).map(|()| Action::DecMplsTtl)?,
            at::PUSH_VLAN => fixed(8).and_then(|()| Ok(Action::PushVlan(ethertype(&mut b, &[0x8100, 0x88a8])?)))?,
            at::POP_VLAN => fixed(8).map(|()| Action::PopVlan)?,
            at::PUSH_MPLS => fixed(8).and_then(|()| Ok(Action::PushMpls(ethertype(&mut b, &[0x8847, 0x8848])?)))?,
            at::POP_MPLS => fixed(8).and_then(|()| Ok(Action::PopMpls(b.u16()?)))?,
            at::SET_QUEUE => fixed(8).and_then(|()| Ok(Action::SetQueue(b.u32()?)))?,
            at::GROUP => {
                fixed(8)?;
                let g = b.u32()?;
                if g > 0xffff_ff00 {
                    return Err(OfpError::BadAction(BadAction::BadOutGroup));
                }
                Action::Group(g)
            }
            at::SET_NW_TTL => fixed(8).and_then(|()| Ok(Action::SetNwTtl(b.u8()?)))?,
            at::DEC_NW_TTL => fixed(8).map(|()| Action::DecNwTtl)?,
            at::SET_FIELD => {
                let o = Oxm::decode(&mut b, true)?;
                // The TLV plus header, padded to 8: nothing else may follow.
                if (o.wire_len() + 4).next_multiple_of(8) != len {
                    return Err(OfpError::BadAction(BadAction::BadSetLen));
                }
                Action::SetField(o)
            }
            at::PUSH_PBB => fixed(8).and_then(|()| Ok(Action::PushPbb(ethertype(&mut b, &[0x88e7])?)))?,
            at::POP_PBB => fixed(8).map(|()| Action::PopPbb)?,
            at::EXPERIMENTER => return Err(OfpError::BadAction(BadAction::BadExperimenter)),
            _ => return Err(OfpError::BadAction(BadAction::BadType)),
        })
    }

    /// Appends the action.
    pub fn encode(&self, w: &mut Writer) {
        let short = |w: &mut Writer, ty: u16| {
            w.u16(ty).u16(8).pad(4);
        };
        let et = |w: &mut Writer, ty: u16, e: u16| {
            w.u16(ty).u16(8).u16(e).pad(2);
        };
        match self {
            Action::Output { port, max_len } => {
                w.u16(at::OUTPUT).u16(16).u32(*port).u16(*max_len).pad(6);
            }
            Action::CopyTtlOut => short(w, at::COPY_TTL_OUT),
            Action::CopyTtlIn => short(w, at::COPY_TTL_IN),
            Action::SetMplsTtl(t) => {
                w.u16(at::SET_MPLS_TTL).u16(8).u8(*t).pad(3);
            }
            Action::DecMplsTtl => short(w, at::DEC_MPLS_TTL),
            Action::PushVlan(e) => et(w, at::PUSH_VLAN, *e),
            Action::PopVlan => short(w, at::POP_VLAN),
            Action::PushMpls(e) => et(w, at::PUSH_MPLS, *e),
            Action::PopMpls(e) => et(w, at::POP_MPLS, *e),
            Action::SetQueue(q) => {
                w.u16(at::SET_QUEUE).u16(8).u32(*q);
            }
            Action::Group(g) => {
                w.u16(at::GROUP).u16(8).u32(*g);
            }
            Action::SetNwTtl(t) => {
                w.u16(at::SET_NW_TTL).u16(8).u8(*t).pad(3);
            }
            Action::DecNwTtl => short(w, at::DEC_NW_TTL),
            Action::SetField(o) => {
                let start = w.len();
                w.u16(at::SET_FIELD).u16(0);
                o.encode(w);
                w.align8();
                w.patch_len16(start + 2, start);
            }
            Action::PushPbb(e) => et(w, at::PUSH_PBB, *e),
            Action::PopPbb => short(w, at::POP_PBB),
        }
    }
}

/// Reads actions until `r` ends.
pub fn decode_actions(r: &mut Reader<'_>) -> Result<Vec<Action>, OfpError> {
    let mut v = Vec::new();
    while !r.is_empty() {
        v.push(Action::decode(r)?);
    }
    Ok(v)
}

/// Appends actions.
pub fn encode_actions(actions: &[Action], w: &mut Writer) {
    for a in actions {
        a.encode(w);
    }
}

/// An instruction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instruction {
    /// OFPIT_GOTO_TABLE.
    GotoTable(u8),
    /// OFPIT_WRITE_METADATA.
    WriteMetadata {
        /// Value.
        metadata: u64,
        /// Which bits it writes.
        mask: u64,
    },
    /// OFPIT_WRITE_ACTIONS: merged into the action set.
    WriteActions(Vec<Action>),
    /// OFPIT_APPLY_ACTIONS: run now, in order.
    ApplyActions(Vec<Action>),
    /// OFPIT_CLEAR_ACTIONS: the action set emptied.
    ClearActions,
    /// OFPIT_METER.
    Meter(u32),
}

mod it {
    pub const GOTO_TABLE: u16 = 1;
    pub const WRITE_METADATA: u16 = 2;
    pub const WRITE_ACTIONS: u16 = 3;
    pub const APPLY_ACTIONS: u16 = 4;
    pub const CLEAR_ACTIONS: u16 = 5;
    pub const METER: u16 = 6;
    pub const EXPERIMENTER: u16 = 0xffff;
}

impl Instruction {
    /// Where it runs in a flow's instruction list (spec 5.9): meter,
    /// apply-actions, clear-actions, write-actions, write-metadata,
    /// goto-table.
    pub fn exec_rank(&self) -> u8 {
        match self {
            Instruction::Meter(_) => 0,
            Instruction::ApplyActions(_) => 1,
            Instruction::ClearActions => 2,
            Instruction::WriteActions(_) => 3,
            Instruction::WriteMetadata { .. } => 4,
            Instruction::GotoTable(_) => 5,
        }
    }

    /// The OFPIT_* type number.
    pub fn type_id(&self) -> u16 {
        match self {
            Instruction::GotoTable(_) => it::GOTO_TABLE,
            Instruction::WriteMetadata { .. } => it::WRITE_METADATA,
            Instruction::WriteActions(_) => it::WRITE_ACTIONS,
            Instruction::ApplyActions(_) => it::APPLY_ACTIONS,
            Instruction::ClearActions => it::CLEAR_ACTIONS,
            Instruction::Meter(_) => it::METER,
        }
    }

    /// Reads one instruction.
    pub fn decode(r: &mut Reader<'_>) -> Result<Instruction, OfpError> {
        let bad_len = OfpError::BadInstruction(BadInstruction::BadLen);
        let ty = r.u16().map_err(|_| bad_len)?;
        let len = usize::from(r.u16().map_err(|_| bad_len)?);
        if len < 8 || len % 8 != 0 {
            return Err(bad_len);
        }
        let mut b = r.sub(len - 4, bad_len)?;
        let fixed = |want: usize| if len == want { Ok(()) } else { Err(bad_len) };
        Ok(match ty {
            it::GOTO_TABLE => {
                fixed(8)?;
                Instruction::GotoTable(b.u8()?)
            }
            it::WRITE_METADATA => {
                fixed(24)?;
                b.skip(4)?;
                Instruction::WriteMetadata { metadata: b.u64()?, mask: b.u64()? }
            }
            it::WRITE_ACTIONS | it::APPLY_ACTIONS => {
                b.skip(4)?;
                let acts = decode_actions(&mut b)?;
                if ty == it::WRITE_ACTIONS {
                    Instruction::WriteActions(acts)
                } else {
                    Instruction::ApplyActions(acts)
                }
            }
            it::CLEAR_ACTIONS => {
                fixed(8)?;
                Instruction::ClearActions
            }
            it::METER => {
                fixed(8)?;
                Instruction::Meter(b.u32()?)
            }
            it::EXPERIMENTER => return Err(OfpError::BadInstruction(BadInstruction::BadExperimenter)),
            _ => return Err(OfpError::BadInstruction(BadInstruction::UnknownInst)),
        })
    }

    /// Appends the instruction.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Instruction::GotoTable(t) => {
                w.u16(it::GOTO_TABLE).u16(8).u8(*t).pad(3);
            }
            Instruction::WriteMetadata { metadata, mask } => {
                w.u16(it::WRITE_METADATA).u16(24).pad(4).u64(*metadata).u64(*mask);
            }
            Instruction::WriteActions(a) | Instruction::ApplyActions(a) => {
                let start = w.len();
                w.u16(self.type_id()).u16(0).pad(4);
                encode_actions(a, w);
                w.patch_len16(start + 2, start);
            }
            Instruction::ClearActions => {
                w.u16(it::CLEAR_ACTIONS).u16(8).pad(4);
            }
            Instruction::Meter(m) => {
                w.u16(it::METER).u16(8).u32(*m);
            }
        }
    }
}

/// Reads instructions until `r` ends; one of each type at most
/// (OFPBIC_UNSUP_INST for a repeated one, as 1.3 has no DUP_INST code).
pub fn decode_instructions(r: &mut Reader<'_>) -> Result<Vec<Instruction>, OfpError> {
    let mut v: Vec<Instruction> = Vec::new();
    while !r.is_empty() {
        let i = Instruction::decode(r)?;
        if v.iter().any(|x| x.type_id() == i.type_id()) {
            return Err(OfpError::BadInstruction(BadInstruction::UnsupInst));
        }
        v.push(i);
    }
    Ok(v)
}

/// Appends instructions.
pub fn encode_instructions(ins: &[Instruction], w: &mut Writer) {
    for i in ins {
        i.encode(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofp::error::BAD_LEN;
    use crate::ofp::oxm::Field;

    fn all_actions() -> Vec<Action> {
        vec![
            Action::Output { port: 3, max_len: 0 },
            Action::Output { port: port::CONTROLLER, max_len: 0xffff },
            Action::CopyTtlOut,
            Action::CopyTtlIn,
            Action::SetMplsTtl(9),
            Action::DecMplsTtl,
            Action::PushVlan(0x8100),
            Action::PopVlan,
            Action::PushMpls(0x8847),
            Action::PopMpls(0x0800),
            Action::SetQueue(2),
            Action::Group(7),
            Action::SetNwTtl(3),
            Action::DecNwTtl,
            Action::SetField(Oxm::exact(Field::EthDst, &[2, 0, 0, 0, 0, 9])),
            Action::SetField(Oxm::exact(Field::Ipv6Src, &[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
            Action::PushPbb(0x88e7),
            Action::PopPbb,
        ]
    }

    #[test]
    fn actions_and_instructions_round_trip() {
        let ins = vec![
            Instruction::Meter(4),
            Instruction::ApplyActions(all_actions()),
            Instruction::ClearActions,
            Instruction::WriteActions(vec![Action::Group(1), Action::Output { port: 2, max_len: 0 }]),
            Instruction::WriteMetadata { metadata: 0xab, mask: 0xff },
            Instruction::GotoTable(5),
        ];
        let mut w = Writer::new();
        encode_instructions(&ins, &mut w);
        assert_eq!(w.len() % 8, 0);
        assert_eq!(decode_instructions(&mut Reader::new(&w.buf, BAD_LEN)), Ok(ins));
    }

    #[test]
    fn bad_actions_get_their_codes() {
        let dec = |b: &[u8]| Action::decode(&mut Reader::new(b, BAD_LEN));
        assert_eq!(dec(&[0, 99, 0, 8, 0, 0, 0, 0]), Err(OfpError::BadAction(BadAction::BadType)));
        assert_eq!(dec(&[0, 0, 0, 8, 0, 0, 0, 0]), Err(OfpError::BadAction(BadAction::BadLen)), "output is 16");
        assert_eq!(dec(&[0, 0, 0, 12, 0, 0, 0, 0]), Err(OfpError::BadAction(BadAction::BadLen)));
        assert_eq!(dec(&[0, 0, 0, 16, 0, 0, 0, 0]), Err(OfpError::BadAction(BadAction::BadLen)), "cut short");
        let out0 = [0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(dec(&out0), Err(OfpError::BadAction(BadAction::BadOutPort)), "port 0");
        assert_eq!(dec(&[0, 17, 0, 8, 0x08, 0x00, 0, 0]), Err(OfpError::BadAction(BadAction::BadArgument)));
        // set_field with an unknown OXM field, and with a mask.
        assert_eq!(
            dec(&[0, 25, 0, 8, 0x80, 0, 100, 0]),
            Err(OfpError::BadAction(BadAction::BadSetType)),
            "unknown set_field"
        );
        let masked = [0, 25, 0, 16, 0x80, 0, 0x0b << 1 | 1, 8, 10, 0, 0, 1, 255, 0, 0, 0];
        assert_eq!(dec(&masked), Err(OfpError::BadAction(BadAction::BadSetArgument)));
        let dec_i = |b: &[u8]| Instruction::decode(&mut Reader::new(b, BAD_LEN));
        assert_eq!(dec_i(&[0, 9, 0, 8, 0, 0, 0, 0]), Err(OfpError::BadInstruction(BadInstruction::UnknownInst)));
        assert_eq!(dec_i(&[0, 1, 0, 16, 0, 0, 0, 0]), Err(OfpError::BadInstruction(BadInstruction::BadLen)));
    }
}
