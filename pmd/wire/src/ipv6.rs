//! IPv6 (RFC 8200) and its extension headers.

use crate::{be, Error, IpProtocol, Result};

mod field {
    use crate::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The most extension headers [`Ipv6Packet::upper_layer`] walks before it
/// calls the chain malformed (a bound against crafted chains).
pub const MAX_EXT_HEADERS: usize = 8;

/// An IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ipv6Address(pub [u8; 16]);

impl Ipv6Address {
    /// ::.
    pub const UNSPECIFIED: Ipv6Address = Ipv6Address([0; 16]);

    /// From a slice of exactly 16 bytes.
    ///
    /// # Panics
    /// If `b` is not 16 bytes long.
    pub fn from_bytes(b: &[u8]) -> Ipv6Address {
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ipv6Address(a)
    }
    /// ff00::/8.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] == 0xff
    }
    /// The solicited-node multicast address of this address (RFC 4291).
    pub fn solicited_node(&self) -> Ipv6Address {
        let mut a = [0u8; 16];
        a[..2].copy_from_slice(&[0xff, 0x02]);
        a[11..13].copy_from_slice(&[0x01, 0xff]);
        a[13..].copy_from_slice(&self.0[13..]);
        Ipv6Address(a)
    }
}

impl From<std::net::Ipv6Addr> for Ipv6Address {
    fn from(a: std::net::Ipv6Addr) -> Ipv6Address {
        Ipv6Address(a.octets())
    }
}

impl core::fmt::Display for Ipv6Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        std::net::Ipv6Addr::from(self.0).fmt(f)
    }
}

/// One extension header met on the way to the upper layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6ExtHeader {
    /// Which header this is (hop-by-hop, routing, fragment, ...).
    pub kind: IpProtocol,
    /// Offset from the start of the IPv6 header.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

/// A view of an IPv6 header and what follows.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Whether a next-header value is an extension header this parser walks.
pub const fn is_ext_header(p: IpProtocol) -> bool {
    matches!(p.0, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140)
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }
    /// Wraps, refusing a buffer shorter than the fixed header or than the
    /// payload length claimed, and a version other than 6.
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if p.version() != 6 {
            return Err(Error::Malformed);
        }
        if len < HEADER_LEN + usize::from(p.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(p)
    }
    /// Version (6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be::u16_at(self.buffer.as_ref(), 0) >> 4) as u8
    }
    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW.start) & 0x000f_ffff
    }
    /// Payload length (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }
    /// Next header of the fixed header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NXT_HDR])
    }
    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Address {
        Ipv6Address::from_bytes(&self.buffer.as_ref()[field::SRC_ADDR])
    }
    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Address {
        Ipv6Address::from_bytes(&self.buffer.as_ref()[field::DST_ADDR])
    }
    /// The payload (extension headers and upper layer), up to the payload
    /// length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension headers, calling `each` for every one, and
    /// returns the upper-layer protocol and its offset from the start of
    /// the IPv6 header. A fragment that is not the first stops the walk at
    /// the fragment header (its upper layer is in another packet).
    pub fn walk_ext_headers(&self, mut each: impl FnMut(Ipv6ExtHeader)) -> Result<(IpProtocol, usize)> {
        let end = HEADER_LEN + usize::from(self.payload_len());
        let b = &self.buffer.as_ref()[..end];
        let mut next = self.next_header();
        let mut off = HEADER_LEN;
        for _ in 0..=MAX_EXT_HEADERS {
            if !is_ext_header(next) {
                return Ok((next, off));
            }
            if b.len() < off + 8 {
                return Err(Error::Truncated);
            }
            let len = match next {
                IpProtocol::IPV6_FRAG => 8,
                // AH counts its length in 4-byte units, minus 2.
                IpProtocol::AH => (usize::from(b[off + 1]) + 2) * 4,
                _ => (usize::from(b[off + 1]) + 1) * 8,
            };
            if b.len() < off + len {
                return Err(Error::Truncated);
            }
            each(Ipv6ExtHeader { kind: next, offset: off, len });
            if next == IpProtocol::IPV6_FRAG && be::u16_at(b, off + 2) & 0xfff8 != 0 {
                return Ok((IpProtocol::IPV6_FRAG, off));
            }
            next = IpProtocol(b[off]);
            off += len;
        }
        Err(Error::Malformed)
    }

    /// The upper-layer protocol and its offset, past every extension header.
    pub fn upper_layer(&self) -> Result<(IpProtocol, usize)> {
        self.walk_ext_headers(|_| {})
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, traffic class and flow label.
    #[inline]
    pub fn set_ver_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        be::set_u32(self.buffer.as_mut(), field::VER_TC_FLOW.start, v);
    }
    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::LENGTH.start, v);
    }
    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = p.0;
    }
    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: &Ipv6Address) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.0);
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: &Ipv6Address) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.0);
    }
    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fields of the fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Address,
    /// Destination address.
    pub dst_addr: Ipv6Address,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label.
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Reads the fixed header; also walks the extension-header chain so a
    /// truncated or endless chain is refused here.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        p.upper_layer()?;
        Ok(Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }
    /// Fixed header length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the fixed header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv6Packet<T>) {
        p.set_ver_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(self.payload_len as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(&self.src_addr);
        p.set_dst_addr(&self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_with_ext() -> Vec<u8> {
        let repr = Ipv6Repr {
            src_addr: Ipv6Address([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            dst_addr: Ipv6Address([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
            next_header: IpProtocol::HOPOPT,
            payload_len: 8 + 16 + 8 + 4,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        };
        let mut buf = vec![0xa5u8; HEADER_LEN + repr.payload_len];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        let p = &mut buf[HEADER_LEN..];
        // Hop-by-hop, 8 bytes, next: destination options.
        p[..8].copy_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        // Destination options, 16 bytes, next: fragment.
        p[8..24].copy_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Fragment header, first fragment, next: UDP.
        p[24..32].copy_from_slice(&[17, 0, 0x00, 0x01, 0, 0, 0, 42]);
        p[32..36].copy_from_slice(&[1, 2, 3, 4]);
        buf
    }

    #[test]
    fn walks_extension_headers() {
        let buf = packet_with_ext();
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        let mut seen = vec![];
        let (proto, off) = p.walk_ext_headers(|h| seen.push((h.kind, h.offset, h.len))).unwrap();
        assert_eq!(proto, IpProtocol::UDP);
        assert_eq!(off, HEADER_LEN + 32);
        assert_eq!(
            seen,
            vec![(IpProtocol::HOPOPT, 40, 8), (IpProtocol::IPV6_OPTS, 48, 16), (IpProtocol::IPV6_FRAG, 64, 8)]
        );
        let repr = Ipv6Repr::parse(&p).unwrap();
        let mut out = vec![0xa5u8; buf.len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..HEADER_LEN], buf[..HEADER_LEN]);
    }

    #[test]
    fn later_fragment_stops_at_fragment_header() {
        let mut buf = packet_with_ext();
        buf[HEADER_LEN + 24 + 2] = 0x05; // offset 0x05 << 8 >> 3, not first
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap(), (IpProtocol::IPV6_FRAG, HEADER_LEN + 24));
    }

    #[test]
    fn truncated_and_malformed() {
        let buf = packet_with_ext();
        assert_eq!(Ipv6Packet::new_checked(&buf[..39]).unwrap_err(), Error::Truncated);
        assert_eq!(Ipv6Packet::new_checked(&buf[..buf.len() - 1]).unwrap_err(), Error::Truncated);
        let mut bad = buf.clone();
        bad[0] = 0x45;
        assert_eq!(Ipv6Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        // Destination options claiming 10*8 bytes, more than the payload.
        let mut bad = buf.clone();
        bad[HEADER_LEN + 9] = 10;
        let p = Ipv6Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap_err(), Error::Truncated);
        // A chain of hop-by-hop headers pointing at each other forever.
        let mut chain = [0u8; HEADER_LEN + 8 * 12];
        Ipv6Repr {
            payload_len: 8 * 12,
            next_header: IpProtocol::HOPOPT,
            ..Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()).unwrap()
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut chain[..]));
        let p = Ipv6Packet::new_checked(&chain[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), Error::Malformed);
    }

    #[test]
    fn solicited_node() {
        let a = Ipv6Address([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0xef]);
        assert_eq!(a.solicited_node().to_string(), "ff02::1:ffab:cdef");
    }
}
