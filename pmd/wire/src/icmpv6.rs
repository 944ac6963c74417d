//! ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861): router and
//! neighbor solicitations and advertisements with their link-layer address
//! options.

use crate::checksum;
use crate::{be, Error, EthernetAddress, Ipv6Address, Result};

mod field {
    use crate::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST: Field = 4..8;
    pub const DATA: usize = 8;
    // Neighbor solicitation/advertisement: target address after the flags.
    pub const ND_TARGET: Field = 8..24;
    pub const ND_OPTIONS: usize = 24;
    // Router advertisement: hop limit, flags, lifetime, reachable, retrans.
    pub const RA_OPTIONS: usize = 16;
    // Router solicitation: reserved word only.
    pub const RS_OPTIONS: usize = 8;
}

/// Length of the ICMPv6 header.
pub const HEADER_LEN: usize = field::DATA;
/// Echo request.
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const ECHO_REPLY: u8 = 129;
/// Router solicitation.
pub const ROUTER_SOLICIT: u8 = 133;
/// Router advertisement.
pub const ROUTER_ADVERT: u8 = 134;
/// Neighbor solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;

/// A view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }
    /// Wraps, refusing a buffer shorter than the header.
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Icmpv6Packet { buffer })
    }
    /// Type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// Code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// The 4 bytes after the checksum (flags of an advertisement).
    #[inline]
    pub fn rest(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::REST.start)
    }
    /// Whether this is a neighbor-discovery message.
    #[inline]
    pub fn is_ndisc(&self) -> bool {
        (ROUTER_SOLICIT..=NEIGHBOR_ADVERT).contains(&self.msg_type())
    }
    /// Whether the checksum verifies with the given pseudo-header.
    pub fn verify_checksum(&self, src: &Ipv6Address, dst: &Ipv6Address) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_v6(src, dst, 58, b.len() as u32);
        checksum::fold(checksum::sum(ph, b)) == 0xffff
    }
    /// The bytes after the header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets type and code.
    pub fn set_type_code(&mut self, t: u8, c: u8) {
        let b = self.buffer.as_mut();
        b[field::TYPE] = t;
        b[field::CODE] = c;
    }
    /// Sets the 4 bytes after the checksum.
    pub fn set_rest(&mut self, v: u32) {
        be::set_u32(self.buffer.as_mut(), field::REST.start, v);
    }
    /// Computes and writes the checksum with the given pseudo-header.
    pub fn fill_checksum(&mut self, src: &Ipv6Address, dst: &Ipv6Address) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, 0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_v6(src, dst, 58, b.len() as u32);
        let c = !checksum::fold(checksum::sum(ph, b));
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, c);
    }
}

/// An ND option this switch understands; others are skipped (RFC 4861
/// says receivers ignore unknown options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdiscOption {
    /// Type 1.
    SourceLinkLayerAddr(EthernetAddress),
    /// Type 2.
    TargetLinkLayerAddr(EthernetAddress),
}

/// A neighbor-discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdiscRepr {
    /// Router solicitation.
    RouterSolicit {
        /// The sender's link-layer address, if given.
        lladdr: Option<EthernetAddress>,
    },
    /// Router advertisement (only the fixed part this switch reads).
    RouterAdvert {
        /// Current hop limit.
        hop_limit: u8,
        /// Router lifetime in seconds.
        router_lifetime: u16,
        /// The router's link-layer address, if given.
        lladdr: Option<EthernetAddress>,
    },
    /// Neighbor solicitation.
    NeighborSolicit {
        /// The address being resolved.
        target: Ipv6Address,
        /// The sender's link-layer address, if given.
        lladdr: Option<EthernetAddress>,
    },
    /// Neighbor advertisement.
    NeighborAdvert {
        /// Router, solicited and override flags (top 3 bits).
        flags: u8,
        /// The address advertised.
        target: Ipv6Address,
        /// The target's link-layer address, if given.
        lladdr: Option<EthernetAddress>,
    },
}

fn parse_options(mut opts: &[u8]) -> Result<Option<EthernetAddress>> {
    let mut lladdr = None;
    while !opts.is_empty() {
        if opts.len() < 2 {
            return Err(Error::Truncated);
        }
        let len = usize::from(opts[1]) * 8;
        if len == 0 {
            // RFC 4861 4.6: a zero length option is invalid; drop the packet.
            return Err(Error::Malformed);
        }
        if opts.len() < len {
            return Err(Error::Truncated);
        }
        if (opts[0] == 1 || opts[0] == 2) && len >= 8 {
            lladdr = Some(EthernetAddress::from_bytes(&opts[2..8]));
        }
        opts = &opts[len..];
    }
    Ok(lladdr)
}

fn emit_option(buf: &mut [u8], kind: u8, a: EthernetAddress) {
    buf[0] = kind;
    buf[1] = 1;
    buf[2..8].copy_from_slice(&a.0);
}

impl NdiscRepr {
    /// Reads a neighbor-discovery message (types 133-136).
    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv6Packet<T>) -> Result<NdiscRepr> {
        let b = p.buffer.as_ref();
        let need = |n: usize| if b.len() < n { Err(Error::Truncated) } else { Ok(()) };
        if p.msg_code() != 0 {
            return Err(Error::Malformed);
        }
        Ok(match p.msg_type() {
            ROUTER_SOLICIT => {
                need(field::RS_OPTIONS)?;
                NdiscRepr::RouterSolicit { lladdr: parse_options(&b[field::RS_OPTIONS..])? }
            }
            ROUTER_ADVERT => {
                need(field::RA_OPTIONS)?;
                NdiscRepr::RouterAdvert {
                    hop_limit: b[4],
                    router_lifetime: be::u16_at(b, 6),
                    lladdr: parse_options(&b[field::RA_OPTIONS..])?,
                }
            }
            NEIGHBOR_SOLICIT => {
                need(field::ND_OPTIONS)?;
                NdiscRepr::NeighborSolicit {
                    target: Ipv6Address::from_bytes(&b[field::ND_TARGET]),
                    lladdr: parse_options(&b[field::ND_OPTIONS..])?,
                }
            }
            NEIGHBOR_ADVERT => {
                need(field::ND_OPTIONS)?;
                NdiscRepr::NeighborAdvert {
                    flags: b[4] & 0xe0,
                    target: Ipv6Address::from_bytes(&b[field::ND_TARGET]),
                    lladdr: parse_options(&b[field::ND_OPTIONS..])?,
                }
            }
            _ => return Err(Error::Malformed),
        })
    }

    fn fixed_len(&self) -> usize {
        match self {
            NdiscRepr::RouterSolicit { .. } => field::RS_OPTIONS,
            NdiscRepr::RouterAdvert { .. } => field::RA_OPTIONS,
            _ => field::ND_OPTIONS,
        }
    }

    fn lladdr(&self) -> Option<EthernetAddress> {
        match *self {
            NdiscRepr::RouterSolicit { lladdr }
            | NdiscRepr::RouterAdvert { lladdr, .. }
            | NdiscRepr::NeighborSolicit { lladdr, .. }
            | NdiscRepr::NeighborAdvert { lladdr, .. } => lladdr,
        }
    }

    /// Message length.
    pub fn buffer_len(&self) -> usize {
        self.fixed_len() + if self.lladdr().is_some() { 8 } else { 0 }
    }

    /// Writes the message and its checksum (which needs the IPv6 addresses).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Icmpv6Packet<T>, src: &Ipv6Address, dst: &Ipv6Address) {
        let fixed = self.fixed_len();
        {
            let b = p.buffer.as_mut();
            b[4..fixed].fill(0);
        }
        let opt_kind = match *self {
            NdiscRepr::RouterSolicit { .. } => {
                p.set_type_code(ROUTER_SOLICIT, 0);
                1
            }
            NdiscRepr::RouterAdvert { hop_limit, router_lifetime, .. } => {
                p.set_type_code(ROUTER_ADVERT, 0);
                let b = p.buffer.as_mut();
                b[4] = hop_limit;
                be::set_u16(b, 6, router_lifetime);
                1
            }
            NdiscRepr::NeighborSolicit { target, .. } => {
                p.set_type_code(NEIGHBOR_SOLICIT, 0);
                p.buffer.as_mut()[field::ND_TARGET].copy_from_slice(&target.0);
                1
            }
            NdiscRepr::NeighborAdvert { flags, target, .. } => {
                p.set_type_code(NEIGHBOR_ADVERT, 0);
                let b = p.buffer.as_mut();
                b[4] = flags & 0xe0;
                b[field::ND_TARGET].copy_from_slice(&target.0);
                2
            }
        };
        if let Some(a) = self.lladdr() {
            emit_option(&mut p.buffer.as_mut()[fixed..fixed + 8], opt_kind, a);
        }
        p.fill_checksum(src, dst);
    }
}

/// A non-ND ICMPv6 message (echo, errors), kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Repr {
    /// Type.
    pub msg_type: u8,
    /// Code.
    pub msg_code: u8,
    /// The 4 bytes after the checksum.
    pub rest: u32,
    /// The data after the header.
    pub data: Vec<u8>,
}

impl Icmpv6Repr {
    /// Reads the message, verifying the checksum with the pseudo-header.
    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv6Packet<T>, src: &Ipv6Address, dst: &Ipv6Address) -> Result<Icmpv6Repr> {
        if !p.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        Ok(Icmpv6Repr { msg_type: p.msg_type(), msg_code: p.msg_code(), rest: p.rest(), data: p.data().to_vec() })
    }
    /// Message length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }
    /// Writes the message and its checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Icmpv6Packet<T>, src: &Ipv6Address, dst: &Ipv6Address) {
        p.set_type_code(self.msg_type, self.msg_code);
        p.set_rest(self.rest);
        p.buffer.as_mut()[HEADER_LEN..HEADER_LEN + self.data.len()].copy_from_slice(&self.data);
        p.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (Ipv6Address, Ipv6Address) {
        let mut s = [0u8; 16];
        s[0] = 0xfe;
        s[1] = 0x80;
        s[15] = 1;
        let t = Ipv6Address([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        (Ipv6Address(s), t.solicited_node())
    }

    #[test]
    fn neighbor_solicit_round_trip() {
        let (src, dst) = addrs();
        let repr = NdiscRepr::NeighborSolicit {
            target: Ipv6Address([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
            lladdr: Some(EthernetAddress([2, 0, 0, 0, 0, 1])),
        };
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        assert_eq!(buf.len(), 32);
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &src, &dst);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert!(p.is_ndisc());
        assert!(p.verify_checksum(&src, &dst));
        assert_eq!(NdiscRepr::parse(&p).unwrap(), repr);
        // Known layout: type, code, checksum, reserved, target, option 1 len 1.
        assert_eq!(buf[0], 135);
        assert_eq!(&buf[4..8], &[0, 0, 0, 0]);
        assert_eq!(&buf[24..26], &[1, 1]);
    }

    #[test]
    fn advert_and_router_messages_round_trip() {
        let (src, dst) = addrs();
        for repr in [
            NdiscRepr::NeighborAdvert { flags: 0x60, target: src, lladdr: Some(EthernetAddress([2, 0, 0, 0, 0, 9])) },
            NdiscRepr::RouterSolicit { lladdr: None },
            NdiscRepr::RouterAdvert {
                hop_limit: 64,
                router_lifetime: 1800,
                lladdr: Some(EthernetAddress([2, 1, 2, 3, 4, 5])),
            },
        ] {
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &src, &dst);
            let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
            assert!(p.verify_checksum(&src, &dst));
            assert_eq!(NdiscRepr::parse(&p).unwrap(), repr);
        }
    }

    #[test]
    fn malformed_options() {
        let (src, dst) = addrs();
        let repr = NdiscRepr::NeighborSolicit { target: src, lladdr: Some(EthernetAddress([2, 0, 0, 0, 0, 1])) };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &src, &dst);
        let mut zero_len = buf.clone();
        zero_len[25] = 0;
        assert_eq!(NdiscRepr::parse(&Icmpv6Packet::new_checked(&zero_len[..]).unwrap()).unwrap_err(), Error::Malformed);
        let mut long = buf.clone();
        long[25] = 2;
        assert_eq!(NdiscRepr::parse(&Icmpv6Packet::new_checked(&long[..]).unwrap()).unwrap_err(), Error::Truncated);
        assert_eq!(NdiscRepr::parse(&Icmpv6Packet::new_checked(&buf[..20]).unwrap()).unwrap_err(), Error::Truncated);
        assert_eq!(Icmpv6Packet::new_checked(&buf[..7]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn echo_checksum() {
        let (src, dst) = addrs();
        let r = Icmpv6Repr { msg_type: ECHO_REQUEST, msg_code: 0, rest: 0x0001_0002, data: vec![1, 2, 3] };
        let mut buf = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &src, &dst);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&p, &src, &dst).unwrap(), r);
        assert_eq!(Icmpv6Repr::parse(&p, &src, &src).unwrap_err(), Error::Checksum);
    }
}
