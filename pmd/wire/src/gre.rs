//! GRE (RFC 2784 with the key and sequence extensions of RFC 2890).

use crate::checksum;
use crate::{be, Error, EtherType, Result};

mod field {
    use crate::Field;
    pub const FLAGS_VER: Field = 0..2;
    pub const PROTOCOL: Field = 2..4;
    pub const OPTIONAL: usize = 4;
}

/// Length of the GRE header without optional fields.
pub const MIN_HEADER_LEN: usize = field::OPTIONAL;
const FLAG_C: u16 = 0x8000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;
// Routing present (RFC 1701), strict source route, recursion control and
// the reserved flags: deprecated by RFC 2784, which says to discard.
const FLAGS_RESERVED: u16 = 0x4000 | 0x0800 | 0x0700 | 0x00f8;

/// A view of a GRE header and its payload.
#[derive(Debug, Clone)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> GrePacket<T> {
        GrePacket { buffer }
    }
    /// Wraps, refusing a buffer shorter than the header its flags describe.
    pub fn new_checked(buffer: T) -> Result<GrePacket<T>> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < MIN_HEADER_LEN || p.buffer.as_ref().len() < p.header_len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }
    fn flags_ver(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::FLAGS_VER.start)
    }
    /// Checksum present.
    #[inline]
    pub fn has_checksum(&self) -> bool {
        self.flags_ver() & FLAG_C != 0
    }
    /// Key present.
    #[inline]
    pub fn has_key(&self) -> bool {
        self.flags_ver() & FLAG_K != 0
    }
    /// Sequence number present.
    #[inline]
    pub fn has_seq(&self) -> bool {
        self.flags_ver() & FLAG_S != 0
    }
    /// Version (must be 0).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.flags_ver() & 0x7) as u8
    }
    /// Protocol of the payload (an EtherType).
    #[inline]
    pub fn protocol(&self) -> EtherType {
        EtherType(be::u16_at(self.buffer.as_ref(), field::PROTOCOL.start))
    }
    /// Header length with the optional fields the flags announce.
    #[inline]
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN
            + 4 * (usize::from(self.has_checksum()) + usize::from(self.has_key()) + usize::from(self.has_seq()))
    }
    fn key_offset(&self) -> usize {
        MIN_HEADER_LEN + if self.has_checksum() { 4 } else { 0 }
    }
    /// Checksum field, if present.
    pub fn checksum_field(&self) -> Option<u16> {
        self.has_checksum().then(|| be::u16_at(self.buffer.as_ref(), MIN_HEADER_LEN))
    }
    /// Key, if present.
    pub fn key(&self) -> Option<u32> {
        self.has_key().then(|| be::u32_at(self.buffer.as_ref(), self.key_offset()))
    }
    /// Sequence number, if present.
    pub fn seq(&self) -> Option<u32> {
        let off = self.key_offset() + if self.has_key() { 4 } else { 0 };
        self.has_seq().then(|| be::u32_at(self.buffer.as_ref(), off))
    }
    /// The payload after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// A GRE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreRepr {
    /// Payload protocol (IPv4, IPv6, or 0x6558 for Ethernet).
    pub protocol: EtherType,
    /// Send a checksum over header and payload.
    pub checksum: bool,
    /// The key (tunnel id), if any.
    pub key: Option<u32>,
    /// The sequence number, if any.
    pub seq: Option<u32>,
}

impl GreRepr {
    /// Reads the header: version must be 0 and the deprecated flags clear;
    /// a present checksum must verify.
    pub fn parse<T: AsRef<[u8]>>(p: &GrePacket<T>) -> Result<GreRepr> {
        if p.buffer.as_ref().len() < MIN_HEADER_LEN || p.buffer.as_ref().len() < p.header_len() {
            return Err(Error::Truncated);
        }
        if p.version() != 0 || p.flags_ver() & FLAGS_RESERVED != 0 {
            return Err(Error::Malformed);
        }
        if p.has_checksum() && checksum::fold(checksum::sum(0, p.buffer.as_ref())) != 0xffff {
            return Err(Error::Checksum);
        }
        Ok(GreRepr { protocol: p.protocol(), checksum: p.has_checksum(), key: p.key(), seq: p.seq() })
    }
    /// Header length.
    pub fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
            + 4 * (usize::from(self.checksum) + usize::from(self.key.is_some()) + usize::from(self.seq.is_some()))
    }
    /// Writes the header; with a checksum, write the payload first: the sum
    /// covers the whole buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut GrePacket<T>) {
        let mut flags = 0u16;
        if self.checksum {
            flags |= FLAG_C;
        }
        if self.key.is_some() {
            flags |= FLAG_K;
        }
        if self.seq.is_some() {
            flags |= FLAG_S;
        }
        let b = p.buffer.as_mut();
        be::set_u16(b, field::FLAGS_VER.start, flags);
        be::set_u16(b, field::PROTOCOL.start, self.protocol.0);
        let mut off = MIN_HEADER_LEN;
        if self.checksum {
            be::set_u32(b, off, 0);
            off += 4;
        }
        if let Some(k) = self.key {
            be::set_u32(b, off, k);
            off += 4;
        }
        if let Some(s) = self.seq {
            be::set_u32(b, off, s);
        }
        if self.checksum {
            let c = checksum::checksum(b);
            be::set_u16(b, MIN_HEADER_LEN, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_keyed_round_trip() {
        let plain = [0x00, 0x00, 0x08, 0x00];
        let r = GreRepr::parse(&GrePacket::new_checked(&plain[..]).unwrap()).unwrap();
        assert_eq!(r, GreRepr { protocol: EtherType::IPV4, checksum: false, key: None, seq: None });
        let full = GreRepr { protocol: EtherType::TEB, checksum: true, key: Some(0xdeadbeef), seq: Some(7) };
        let mut buf = vec![0xa5u8; full.buffer_len() + 3];
        buf[16..].copy_from_slice(&[1, 2, 3]);
        full.emit(&mut GrePacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..4], &[0xb0, 0x00, 0x65, 0x58]);
        let p = GrePacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 16);
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(GreRepr::parse(&p).unwrap(), full);
        buf[18] ^= 0xff;
        assert_eq!(GreRepr::parse(&GrePacket::new_checked(&buf[..]).unwrap()).unwrap_err(), Error::Checksum);
    }

    #[test]
    fn truncated_and_malformed() {
        assert_eq!(GrePacket::new_checked(&[0u8, 0, 8][..]).unwrap_err(), Error::Truncated);
        // K flag set but no key bytes.
        assert_eq!(GrePacket::new_checked(&[0x20u8, 0, 8, 0][..]).unwrap_err(), Error::Truncated);
        // Version 1 (PPTP's enhanced GRE) is not ours.
        let p = GrePacket::new_checked(&[0x00u8, 0x01, 8, 0][..]).unwrap();
        assert_eq!(GreRepr::parse(&p).unwrap_err(), Error::Malformed);
        // Routing-present flag (deprecated).
        let p = GrePacket::new_checked(&[0x40u8, 0x00, 8, 0][..]).unwrap();
        assert_eq!(GreRepr::parse(&p).unwrap_err(), Error::Malformed);
    }
}
