//! VXLAN (RFC 7348): 8 bytes after a UDP header to port 4789.

use crate::{be, Error, Result};

mod field {
    use crate::Field;
    pub const FLAGS: usize = 0;
    pub const VNI: Field = 4..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// IANA's UDP port for VXLAN.
pub const UDP_PORT: u16 = 4789;
const FLAG_I: u8 = 0x08;

/// A view of a VXLAN header and the inner frame.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> VxlanPacket<T> {
        VxlanPacket { buffer }
    }
    /// Wraps, refusing a buffer shorter than the header.
    pub fn new_checked(buffer: T) -> Result<VxlanPacket<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(VxlanPacket { buffer })
    }
    /// Flags byte (the I flag says the VNI is valid).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// The 24-bit VNI.
    #[inline]
    pub fn vni(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::VNI.start) >> 8
    }
    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Writes the I flag, the VNI and zeros in every reserved field.
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        let b = self.buffer.as_mut();
        b[..4].copy_from_slice(&[FLAG_I, 0, 0, 0]);
        be::set_u32(b, field::VNI.start, (vni & 0x00ff_ffff) << 8);
    }
}

/// A VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    /// The 24-bit network identifier.
    pub vni: u32,
}

impl VxlanRepr {
    /// Reads the header; without the I flag the VNI is not valid and the
    /// packet is malformed for this switch (RFC 7348 section 5).
    pub fn parse<T: AsRef<[u8]>>(p: &VxlanPacket<T>) -> Result<VxlanRepr> {
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if p.flags() & FLAG_I == 0 {
            return Err(Error::Malformed);
        }
        Ok(VxlanRepr { vni: p.vni() })
    }
    /// Header length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut VxlanPacket<T>) {
        p.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0x00];
        let r = VxlanRepr::parse(&VxlanPacket::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(r.vni, 0x123456);
        let mut out = [0xa5u8; 8];
        r.emit(&mut VxlanPacket::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    #[test]
    fn truncated_and_no_i_flag() {
        assert_eq!(VxlanPacket::new_checked(&[0x08u8; 7][..]).unwrap_err(), Error::Truncated);
        let p = VxlanPacket::new_checked(&[0u8; 8][..]).unwrap();
        assert_eq!(VxlanRepr::parse(&p).unwrap_err(), Error::Malformed);
    }
}
