//! UDP (RFC 768).

use crate::checksum;
use crate::{be, Error, Ipv4Address, Ipv6Address, Result};

mod field {
    use crate::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }
    /// Wraps, refusing a buffer shorter than the header or than the length
    /// field, and a length field below 8.
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let claimed = usize::from(p.len());
        if claimed < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < claimed {
            return Err(Error::Truncated);
        }
        Ok(p)
    }
    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::SRC_PORT.start)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::DST_PORT.start)
    }
    /// Length field (header and payload).
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a datagram is never empty: 8 bytes at least
    pub fn len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }
    /// Checksum field (0: none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// The payload, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
    /// Whether the checksum verifies given the pseudo-header sum (see
    /// [`checksum::pseudo_v4`]); a zero checksum means "none" over IPv4.
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::fold(checksum::sum(pseudo, data)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::SRC_PORT.start, v);
    }
    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::DST_PORT.start, v);
    }
    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::LENGTH.start, v);
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }
    /// Computes the checksum with the pseudo-header sum; a result of zero is
    /// sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        let c = !checksum::fold(checksum::sum(pseudo, data));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fields of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Reads the header; the checksum is verified against `pseudo` when
    /// given (None: the NIC checked it).
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>, pseudo: Option<u32>) -> Result<UdpRepr> {
        if let Some(ph) = pseudo {
            if !p.verify_checksum(ph) {
                return Err(Error::Checksum);
            }
        }
        Ok(UdpRepr { src_port: p.src_port(), dst_port: p.dst_port(), payload_len: usize::from(p.len()) - HEADER_LEN })
    }
    /// Header length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// The IPv4 pseudo-header sum for this datagram.
    pub fn pseudo_v4(&self, src: Ipv4Address, dst: Ipv4Address) -> u32 {
        checksum::pseudo_v4(src, dst, 17, (HEADER_LEN + self.payload_len) as u16)
    }
    /// The IPv6 pseudo-header sum for this datagram.
    pub fn pseudo_v6(&self, src: &Ipv6Address, dst: &Ipv6Address) -> u32 {
        checksum::pseudo_v6(src, dst, 17, (HEADER_LEN + self.payload_len) as u32)
    }
    /// Writes the header; the checksum is filled over header and payload
    /// (which the caller wrote first) when `pseudo` is given, else zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut UdpPacket<T>, pseudo: Option<u32>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len((HEADER_LEN + self.payload_len) as u16);
        match pseudo {
            Some(ph) => p.fill_checksum(ph),
            None => p.set_checksum(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_checksum() {
        let (s, d) = (Ipv4Address([10, 0, 0, 1]), Ipv4Address([10, 0, 0, 2]));
        let r = UdpRepr { src_port: 4789, dst_port: 53, payload_len: 3 };
        let mut buf = [0xa5u8; 11];
        buf[8..].copy_from_slice(b"abc");
        r.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), Some(r.pseudo_v4(s, d)));
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(&buf[..6], &[0x12, 0xb5, 0x00, 0x35, 0x00, 0x0b]);
        assert_eq!(p.payload(), b"abc");
        assert_eq!(UdpRepr::parse(&p, Some(r.pseudo_v4(s, d))).unwrap(), r);
        let other = r.pseudo_v4(s, Ipv4Address([10, 0, 0, 3]));
        assert_eq!(UdpRepr::parse(&p, Some(other)).unwrap_err(), Error::Checksum);
    }

    #[test]
    fn truncated_malformed() {
        let buf = [0, 1, 0, 2, 0, 12, 0, 0, 1, 2];
        assert_eq!(UdpPacket::new_checked(&buf[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(UdpPacket::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
        let short = [0, 1, 0, 2, 0, 4, 0, 0];
        assert_eq!(UdpPacket::new_checked(&short[..]).unwrap_err(), Error::Malformed);
    }
}
