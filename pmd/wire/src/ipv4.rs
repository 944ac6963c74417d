//! IPv4 (RFC 791), options included.

use crate::checksum::{self, Caps};
use crate::{be, Error, Result};

mod field {
    use crate::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Length of the header with the most options (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

/// An IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ipv4Address(pub [u8; 4]);

impl Ipv4Address {
    /// 0.0.0.0.
    pub const UNSPECIFIED: Ipv4Address = Ipv4Address([0; 4]);
    /// 255.255.255.255.
    pub const BROADCAST: Ipv4Address = Ipv4Address([255; 4]);

    /// From a slice of exactly four bytes.
    ///
    /// # Panics
    /// If `b` is not four bytes long.
    pub fn from_bytes(b: &[u8]) -> Ipv4Address {
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ipv4Address(a)
    }
    /// As a host-order integer.
    pub const fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }
    /// From a host-order integer.
    pub const fn from_u32(v: u32) -> Ipv4Address {
        Ipv4Address(v.to_be_bytes())
    }
    /// 224.0.0.0/4.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0xf0 == 0xe0
    }
}

impl From<std::net::Ipv4Addr> for Ipv4Address {
    fn from(a: std::net::Ipv4Addr) -> Ipv4Address {
        Ipv4Address(a.octets())
    }
}

impl core::fmt::Display for Ipv4Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        std::net::Ipv4Addr::from(self.0).fmt(f)
    }
}

/// An IP protocol number (IPv4 protocol, IPv6 next header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 hop-by-hop options.
    pub const HOPOPT: IpProtocol = IpProtocol(0);
    /// ICMP.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// TCP.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP.
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 routing header.
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    /// IPv6 fragment header.
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    /// GRE.
    pub const GRE: IpProtocol = IpProtocol(47);
    /// IPsec ESP.
    pub const ESP: IpProtocol = IpProtocol(50);
    /// IPsec authentication header.
    pub const AH: IpProtocol = IpProtocol(51);
    /// ICMPv6.
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 no next header.
    pub const IPV6_NONXT: IpProtocol = IpProtocol(59);
    /// IPv6 destination options.
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
}

/// A view of an IPv4 header and what follows.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }
    /// Wraps, refusing a buffer shorter than the header, the header length
    /// or the total length claimed, and a header length below 20 bytes or a
    /// total length below the header length.
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// The length checks of [`Ipv4Packet::new_checked`].
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        let tl = usize::from(self.total_len());
        if tl < hl {
            return Err(Error::Malformed);
        }
        if len < hl || len < tl {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// Version field (4 for IPv4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// DSCP (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }
    /// ECN (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }
    /// Total length (header and payload).
    #[inline]
    pub fn total_len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }
    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::IDENT.start)
    }
    /// Don't fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        be::u16_at(self.buffer.as_ref(), field::FLG_OFF.start) & 0x4000 != 0
    }
    /// More fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        be::u16_at(self.buffer.as_ref(), field::FLG_OFF.start) & 0x2000 != 0
    }
    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (be::u16_at(self.buffer.as_ref(), field::FLG_OFF.start) & 0x1fff) << 3
    }
    /// Whether this is a fragment (first or later).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }
    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Address {
        Ipv4Address::from_bytes(&self.buffer.as_ref()[field::SRC_ADDR])
    }
    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Address {
        Ipv4Address::from_bytes(&self.buffer.as_ref()[field::DST_ADDR])
    }
    /// The options bytes (between the fixed header and the payload).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(0, &self.buffer.as_ref()[..self.header_len()])) == 0xffff
    }
    /// The payload, up to the total length (Ethernet padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version and header length (bytes, a multiple of 4).
    #[inline]
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ((header_len / 4) as u8 & 0x0f);
    }
    /// Sets DSCP and ECN.
    #[inline]
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = (dscp << 2) | (ecn & 3);
    }
    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::LENGTH.start, v);
    }
    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::IDENT.start, v);
    }
    /// Sets flags (DF, MF) and the fragment offset in bytes.
    #[inline]
    pub fn set_flags_frag(&mut self, df: bool, mf: bool, offset: u16) {
        let v = (u16::from(df) << 14) | (u16::from(mf) << 13) | ((offset >> 3) & 0x1fff);
        be::set_u16(self.buffer.as_mut(), field::FLG_OFF.start, v);
    }
    /// Sets the TTL.
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }
    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = p.0;
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Address) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.0);
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Address) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.0);
    }
    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }
    /// Decrements the TTL, updating the checksum incrementally (RFC 1624).
    pub fn decrement_ttl(&mut self) {
        let b = self.buffer.as_ref();
        let old = be::u16_at(b, field::TTL);
        let ttl = self.ttl().wrapping_sub(1);
        self.set_ttl(ttl);
        let new = be::u16_at(self.buffer.as_ref(), field::TTL);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
    }
    /// Mutable options bytes.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }
    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[hl..tl]
    }
}

/// The fields of an IPv4 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Address,
    /// Destination address.
    pub dst_addr: Ipv4Address,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP.
    pub dscp: u8,
    /// ECN.
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't fragment.
    pub dont_frag: bool,
    /// More fragments.
    pub more_frags: bool,
    /// Fragment offset in bytes.
    pub frag_offset: u16,
    /// Options, padded to a multiple of 4 bytes, at most 40.
    pub options: Vec<u8>,
}

impl Ipv4Repr {
    /// Reads the header; version other than 4 is malformed; the checksum is
    /// verified unless `caps` says the NIC did it.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>, caps: &Caps) -> Result<Ipv4Repr> {
        p.check_len()?;
        if p.version() != 4 {
            return Err(Error::Malformed);
        }
        if caps.check_ipv4 && !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            dscp: p.dscp(),
            ecn: p.ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
            options: p.options().to_vec(),
        })
    }
    /// Header length, options included.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }
    /// Writes the header (the payload is the caller's); fills the checksum
    /// unless `caps` leaves it to the NIC.
    ///
    /// # Panics
    /// If the options are longer than 40 bytes or not a multiple of 4.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv4Packet<T>, caps: &Caps) {
        assert!(self.options.len() <= MAX_HEADER_LEN - HEADER_LEN && self.options.len().is_multiple_of(4));
        let hl = self.buffer_len();
        p.set_version_and_header_len(4, hl);
        p.set_dscp_ecn(self.dscp, self.ecn);
        p.set_total_len((hl + self.payload_len) as u16);
        p.set_ident(self.ident);
        p.set_flags_frag(self.dont_frag, self.more_frags, self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.buffer.as_mut()[HEADER_LEN..hl].copy_from_slice(&self.options);
        if caps.fill_ipv4 {
            p.fill_checksum();
        } else {
            p.set_checksum(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ICMP echo request 10.0.0.1 -> 10.0.0.2, header checksum valid.
    static PACKET: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x0a, 0x9e, 10, 0, 0, 1, 10, 0, 0, 2, 0xaa, 0xbb,
        0xcc, 0xdd,
    ];

    fn fixed() -> [u8; 24] {
        let mut p = PACKET;
        let mut v = Ipv4Packet::new_unchecked(&mut p[..]);
        v.fill_checksum();
        p
    }

    #[test]
    fn deconstruct() {
        let bytes = fixed();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::ICMP);
        assert_eq!(p.src_addr(), Ipv4Address([10, 0, 0, 1]));
        assert_eq!(p.dst_addr(), Ipv4Address([10, 0, 0, 2]));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn emit_every_byte() {
        let bytes = fixed();
        let repr = Ipv4Repr::parse(&Ipv4Packet::new_checked(&bytes[..]).unwrap(), &Caps::check_all()).unwrap();
        let mut out = [0xa5u8; 24];
        let mut p = Ipv4Packet::new_unchecked(&mut out[..]);
        repr.emit(&mut p, &Caps::check_all());
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(out, bytes);
    }

    #[test]
    fn options_round_trip() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Address([1, 2, 3, 4]),
            dst_addr: Ipv4Address([5, 6, 7, 8]),
            protocol: IpProtocol::UDP,
            payload_len: 0,
            ttl: 3,
            dscp: 46,
            ecn: 1,
            ident: 7,
            dont_frag: false,
            more_frags: true,
            frag_offset: 1480,
            options: vec![0x94, 0x04, 0x00, 0x00], // router alert
        };
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), &Caps::check_all());
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert!(p.is_fragment());
        assert_eq!(Ipv4Repr::parse(&p, &Caps::check_all()).unwrap(), repr);
    }

    #[test]
    fn truncated_malformed_checksum() {
        let bytes = fixed();
        assert_eq!(Ipv4Packet::new_checked(&bytes[..19]).unwrap_err(), Error::Truncated);
        // Total length beyond the buffer.
        assert_eq!(Ipv4Packet::new_checked(&bytes[..23]).unwrap_err(), Error::Truncated);
        // IHL 4 (16 bytes) is below the minimum.
        let mut bad = bytes;
        bad[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        // IHL 15 (60 bytes) claims options the buffer does not have.
        let mut bad = bytes;
        bad[0] = 0x4f;
        bad[3] = 60;
        assert_eq!(Ipv4Packet::new_checked(&bad[..]).unwrap_err(), Error::Truncated);
        // Total length below the header length.
        let mut bad = bytes;
        bad[3] = 10;
        assert_eq!(Ipv4Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        // Version 6 in an IPv4 header.
        let mut bad = bytes;
        bad[0] = 0x65;
        let p = Ipv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p, &Caps::offloaded()).unwrap_err(), Error::Malformed);
        // A flipped bit fails the checksum, unless the NIC checked it.
        let mut bad = bytes;
        bad[15] ^= 1;
        let p = Ipv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p, &Caps::check_all()).unwrap_err(), Error::Checksum);
        assert!(Ipv4Repr::parse(&p, &Caps::offloaded()).is_ok());
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut bytes = fixed();
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
    }
}
