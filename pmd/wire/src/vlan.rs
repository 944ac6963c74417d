//! 802.1Q and 802.1ad VLAN tags: the 4 bytes after the outer EtherType
//! (TPID 0x8100 or 0x88a8), seen from the TCI on: TCI then the inner
//! EtherType.

use crate::{be, Error, EtherType, Result};

mod field {
    use crate::Field;
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: usize = 4;
}

/// Length of the part of a tag after its TPID.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of a VLAN tag's TCI and inner EtherType.
#[derive(Debug, Clone)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> VlanTag<T> {
        VlanTag { buffer }
    }
    /// Wraps, refusing a buffer shorter than the tag.
    pub fn new_checked(buffer: T) -> Result<VlanTag<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(VlanTag { buffer })
    }
    /// Tag control information (PCP, DEI, VID).
    #[inline]
    pub fn tci(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::TCI.start)
    }
    /// Priority code point.
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }
    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }
    /// VLAN id (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }
    /// The EtherType after the tag.
    #[inline]
    pub fn inner_ethertype(&self) -> EtherType {
        EtherType(be::u16_at(self.buffer.as_ref(), field::ETHERTYPE.start))
    }
    /// Everything after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the whole TCI.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        be::set_u16(self.buffer.as_mut(), field::TCI.start, tci);
    }
    /// Sets the inner EtherType.
    #[inline]
    pub fn set_inner_ethertype(&mut self, t: EtherType) {
        be::set_u16(self.buffer.as_mut(), field::ETHERTYPE.start, t.0);
    }
}

/// The fields of a VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRepr {
    /// Priority code point (0-7).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id (0-4095).
    pub vid: u16,
    /// The EtherType after the tag.
    pub inner_ethertype: EtherType,
}

impl VlanRepr {
    /// Reads the tag. VID 4095 is reserved and refused as malformed.
    pub fn parse<T: AsRef<[u8]>>(t: &VlanTag<T>) -> Result<VlanRepr> {
        if t.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if t.vid() == 0x0fff {
            return Err(Error::Malformed);
        }
        Ok(VlanRepr { pcp: t.pcp(), dei: t.dei(), vid: t.vid(), inner_ethertype: t.inner_ethertype() })
    }
    /// The TCI this tag encodes.
    pub fn tci(&self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }
    /// Tag length after the TPID.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the tag.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, t: &mut VlanTag<T>) {
        t.set_tci(self.tci());
        t.set_inner_ethertype(self.inner_ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_emit() {
        let bytes = [0xb0, 0x64, 0x08, 0x00];
        let t = VlanTag::new_checked(&bytes[..]).unwrap();
        assert_eq!(t.pcp(), 5);
        assert!(t.dei());
        assert_eq!(t.vid(), 100);
        let r = VlanRepr::parse(&t).unwrap();
        assert_eq!(r.inner_ethertype, EtherType::IPV4);
        let mut out = [0xa5u8; 4];
        r.emit(&mut VlanTag::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    #[test]
    fn truncated_and_reserved_vid() {
        assert_eq!(VlanTag::new_checked(&[0u8; 3][..]).unwrap_err(), Error::Truncated);
        let t = VlanTag::new_checked(&[0x0f, 0xff, 0x08, 0x00][..]).unwrap();
        assert_eq!(VlanRepr::parse(&t).unwrap_err(), Error::Malformed);
    }
}
