//! The Geneve option map: which option (class, type, length) each
//! `tun_metadata<n>` field holds, set with Nicira's NXT_TLV_TABLE_MOD
//! (`ovs-ofctl add-tlv-map`, `del-tlv-map`) and read with
//! NXT_TLV_TABLE_REQUEST (`dump-tlv-map`), with OVS's error codes.

use crate::ofp::action::Action;
use crate::ofp::error::{NxError, OfpError, NX_VENDOR_ID};
use crate::ofp::msg::FlowMod;
use crate::ofp::oxm::{Field, TUN_METADATA_FIELDS, TUN_METADATA_MAX};
use crate::ofp::{Instruction, Message};
use crate::table::Tables;

/// NXT_TLV_TABLE_MOD.
pub const NXT_TLV_TABLE_MOD: u32 = 24;
/// NXT_TLV_TABLE_REQUEST.
pub const NXT_TLV_TABLE_REQUEST: u32 = 25;
/// NXT_TLV_TABLE_REPLY.
pub const NXT_TLV_TABLE_REPLY: u32 = 26;

/// One option a `tun_metadata<n>` field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlvOption {
    /// Geneve option class.
    pub class: u16,
    /// Option type (its top bit: critical).
    pub opt_type: u8,
    /// Option data length in bytes (a multiple of 4).
    pub len: u8,
}

/// The map, by field index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlvTable {
    /// `tun_metadata<n>`'s option, if mapped.
    pub entries: [Option<TlvOption>; TUN_METADATA_FIELDS],
}

impl TlvTable {
    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(Option::is_none)
    }

    /// The field index and length an option is mapped to.
    #[inline]
    pub fn find(&self, class: u16, opt_type: u8) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .position(|e| e.is_some_and(|e| e.class == class && e.opt_type == opt_type))
            .and_then(|i| self.entries[i].map(|e| (i, usize::from(e.len))))
    }

    /// The table after an NXT_TLV_TABLE_MOD body (`command`, pad, maps),
    /// all or nothing; `in_use(n)`: a flow uses `tun_metadata<n>`.
    pub fn modify(&self, body: &[u8], in_use: impl Fn(usize) -> bool) -> Result<TlvTable, OfpError> {
        let bad_len = OfpError::BadRequest(crate::ofp::error::BadRequest::BadLen);
        if body.len() < 8 || !(body.len() - 8).is_multiple_of(8) {
            return Err(bad_len);
        }
        let command = u16::from_be_bytes([body[0], body[1]]);
        let maps = body[8..].chunks_exact(8).map(|m| {
            let opt = TlvOption { class: u16::from_be_bytes([m[0], m[1]]), opt_type: m[2], len: m[3] };
            (usize::from(u16::from_be_bytes([m[4], m[5]])), opt)
        });
        let mut t = self.clone();
        match command {
            // NXTTMC_ADD.
            0 => {
                for (i, opt) in maps {
                    if i >= 64 {
                        return Err(OfpError::Nx(NxError::TlvBadFieldIdx));
                    }
                    if opt.len == 0 || !opt.len.is_multiple_of(4) || opt.len > 124 {
                        return Err(OfpError::Nx(NxError::TlvBadOptLen));
                    }
                    // Valid in OVS, beyond what this switch holds.
                    if i >= TUN_METADATA_FIELDS || usize::from(opt.len) > TUN_METADATA_MAX {
                        return Err(OfpError::Nx(NxError::TlvTableFull));
                    }
                    if t.entries[i].is_some() {
                        return Err(OfpError::Nx(NxError::TlvAlreadyMapped));
                    }
                    if t.find(opt.class, opt.opt_type).is_some() {
                        return Err(OfpError::Nx(NxError::TlvDupEntry));
                    }
                    t.entries[i] = Some(opt);
                }
            }
            // NXTTMC_DELETE: unmapped indexes are ignored.
            1 => {
                for (i, _) in maps {
                    if i >= 64 {
                        return Err(OfpError::Nx(NxError::TlvBadFieldIdx));
                    }
                    if i < TUN_METADATA_FIELDS && t.entries[i].is_some() {
                        if in_use(i) {
                            return Err(OfpError::Nx(NxError::TlvInvalidDel));
                        }
                        t.entries[i] = None;
                    }
                }
            }
            // NXTTMC_CLEAR.
            2 => {
                if (0..TUN_METADATA_FIELDS).any(|i| t.entries[i].is_some() && in_use(i)) {
                    return Err(OfpError::Nx(NxError::TlvInvalidDel));
                }
                t = TlvTable::default();
            }
            _ => return Err(OfpError::Nx(NxError::TlvBadCommand)),
        }
        Ok(t)
    }

    /// The NXT_TLV_TABLE_REPLY message.
    pub fn reply(&self) -> Message {
        let mut data = Vec::new();
        let space = u32::try_from(TUN_METADATA_FIELDS * TUN_METADATA_MAX).unwrap_or(0);
        data.extend(space.to_be_bytes());
        data.extend(u16::try_from(TUN_METADATA_FIELDS).unwrap_or(0).to_be_bytes());
        data.extend([0u8; 10]);
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(e) = e {
                data.extend(e.class.to_be_bytes());
                data.extend([e.opt_type, e.len]);
                data.extend(u16::try_from(i).unwrap_or(0).to_be_bytes());
                data.extend([0, 0]);
            }
        }
        Message::Experimenter { experimenter: NX_VENDOR_ID, exp_type: NXT_TLV_TABLE_REPLY, data }
    }
}

/// The `tun_metadata<n>` fields a flow's match and set-fields name.
fn metadata_fields<'a>(m: &'a crate::ofp::Match, ins: &'a [Instruction]) -> impl Iterator<Item = usize> + 'a {
    let acts = ins.iter().flat_map(|i| match i {
        Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a.as_slice(),
        _ => &[],
    });
    m.fields
        .iter()
        .map(|o| o.field)
        .chain(acts.filter_map(|a| match a {
            Action::SetField(o) => Some(o.field),
            _ => None,
        }))
        .filter_map(Field::tun_metadata_index)
}

/// NXFMFC_INVALID_TLV_FIELD when a flow-mod names a `tun_metadata<n>`
/// the table does not map.
pub fn check_flow_mod(t: &TlvTable, fm: &FlowMod) -> Result<(), OfpError> {
    match metadata_fields(&fm.match_, &fm.instructions).all(|i| t.entries[i].is_some()) {
        true => Ok(()),
        false => Err(OfpError::Nx(NxError::InvalidTlvField)),
    }
}

/// Whether a flow of `tables` uses `tun_metadata<n>`.
pub fn used_by_flows(tables: &Tables, n: usize) -> bool {
    tables
        .select(
            crate::table::ALL_TABLES,
            &crate::ofp::Match::any(),
            crate::ofp::action::port::ANY,
            crate::ofp::action::port::ANY,
            0,
            0,
        )
        .any(|e| metadata_fields(&e.match_, &e.instructions).any(|i| i == n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(maps: &[(u16, u8, u8, u16)], cmd: u16) -> Vec<u8> {
        let mut b = cmd.to_be_bytes().to_vec();
        b.extend([0u8; 6]);
        for (c, t, l, i) in maps {
            b.extend(c.to_be_bytes());
            b.extend([*t, *l]);
            b.extend(i.to_be_bytes());
            b.extend([0, 0]);
        }
        b
    }

    #[test]
    fn mappings_are_added_found_refused_and_deleted_as_ovs_does() {
        let t = TlvTable::default().modify(&add(&[(0x0102, 0x80, 4, 0), (0xffff, 1, 8, 3)], 0), |_| false).unwrap();
        assert_eq!(t.find(0x0102, 0x80), Some((0, 4)));
        assert_eq!(t.find(0xffff, 1), Some((3, 8)));
        assert_eq!(t.find(0xffff, 2), None);
        let err = |b: Vec<u8>| t.modify(&b, |_| false).unwrap_err();
        assert_eq!(err(add(&[(1, 1, 4, 0)], 0)), OfpError::Nx(NxError::TlvAlreadyMapped));
        assert_eq!(err(add(&[(0x0102, 0x80, 4, 1)], 0)), OfpError::Nx(NxError::TlvDupEntry));
        assert_eq!(err(add(&[(1, 1, 5, 1)], 0)), OfpError::Nx(NxError::TlvBadOptLen));
        assert_eq!(err(add(&[(1, 1, 4, 64)], 0)), OfpError::Nx(NxError::TlvBadFieldIdx));
        assert_eq!(err(add(&[(1, 1, 4, 9)], 0)), OfpError::Nx(NxError::TlvTableFull));
        assert_eq!(err(add(&[(1, 1, 20, 1)], 0)), OfpError::Nx(NxError::TlvTableFull));
        assert_eq!(err(add(&[], 7)), OfpError::Nx(NxError::TlvBadCommand));
        // All or nothing: the good first map of a refused message is not kept.
        assert!(t.modify(&add(&[(2, 2, 4, 1), (3, 3, 4, 1)], 0), |_| false).is_err());
        assert_eq!(t.find(2, 2), None);
        // A mapping a flow uses is not deleted.
        assert_eq!(t.modify(&add(&[(0, 0, 0, 0)], 1), |i| i == 0), Err(OfpError::Nx(NxError::TlvInvalidDel)));
        let t2 = t.modify(&add(&[(0, 0, 0, 0)], 1), |_| false).unwrap();
        assert_eq!(t2.find(0x0102, 0x80), None);
        assert_eq!(t2.find(0xffff, 1), Some((3, 8)));
        assert!(t.modify(&add(&[], 2), |_| false).unwrap().is_empty());
    }

    #[test]
    fn the_reply_lists_the_mappings() {
        let t = TlvTable::default().modify(&add(&[(0x0102, 0x80, 4, 2)], 0), |_| false).unwrap();
        let Message::Experimenter { experimenter, exp_type, data } = t.reply() else { panic!() };
        assert_eq!((experimenter, exp_type), (0x2320, 26));
        assert_eq!(&data[..6], &[0, 0, 0, 128, 0, 8]);
        assert_eq!(&data[16..], &[0x01, 0x02, 0x80, 4, 0, 2, 0, 0]);
    }
}
