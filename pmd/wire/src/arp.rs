//! ARP for IPv4 over Ethernet (RFC 826).

use crate::{be, Error, EthernetAddress, Ipv4Address, Result};

mod field {
    use crate::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpOperation(pub u16);

impl ArpOperation {
    /// Request.
    pub const REQUEST: ArpOperation = ArpOperation(1);
    /// Reply.
    pub const REPLY: ArpOperation = ArpOperation(2);
}

/// A view of an ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }
    /// Wraps, refusing a buffer shorter than the fixed header or than the
    /// address lengths it claims.
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < field::OPER.end {
            return Err(Error::Truncated);
        }
        let need = field::OPER.end + 2 * (usize::from(p.hlen()) + usize::from(p.plen()));
        if b.len() < need {
            return Err(Error::Truncated);
        }
        Ok(p)
    }
    /// Hardware type (1: Ethernet).
    pub fn htype(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::HTYPE.start)
    }
    /// Protocol type (0x0800: IPv4).
    pub fn ptype(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::PTYPE.start)
    }
    /// Hardware address length.
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }
    /// Protocol address length.
    pub fn plen(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }
    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation(be::u16_at(self.buffer.as_ref(), field::OPER.start))
    }
    /// Sender hardware address.
    pub fn sha(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SHA])
    }
    /// Sender protocol address.
    pub fn spa(&self) -> Ipv4Address {
        Ipv4Address::from_bytes(&self.buffer.as_ref()[field::SPA])
    }
    /// Target hardware address.
    pub fn tha(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::THA])
    }
    /// Target protocol address.
    pub fn tpa(&self) -> Ipv4Address {
        Ipv4Address::from_bytes(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    fn set_fixed(&mut self, oper: ArpOperation) {
        let b = self.buffer.as_mut();
        be::set_u16(b, field::HTYPE.start, 1);
        be::set_u16(b, field::PTYPE.start, 0x0800);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        be::set_u16(b, field::OPER.start, oper.0);
    }
    /// Sets the sender hardware address.
    pub fn set_sha(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a.0);
    }
    /// Sets the sender protocol address.
    pub fn set_spa(&mut self, a: Ipv4Address) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a.0);
    }
    /// Sets the target hardware address.
    pub fn set_tha(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a.0);
    }
    /// Sets the target protocol address.
    pub fn set_tpa(&mut self, a: Ipv4Address) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a.0);
    }
}

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply (other values are kept as they are).
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub sha: EthernetAddress,
    /// Sender protocol address.
    pub spa: Ipv4Address,
    /// Target hardware address.
    pub tha: EthernetAddress,
    /// Target protocol address.
    pub tpa: Ipv4Address,
}

impl ArpRepr {
    /// Reads an Ethernet/IPv4 ARP packet; other hardware or protocol types
    /// are malformed for this switch.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<ArpRepr> {
        if p.buffer.as_ref().len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if p.htype() != 1 || p.ptype() != 0x0800 || p.hlen() != 6 || p.plen() != 4 {
            return Err(Error::Malformed);
        }
        Ok(ArpRepr { operation: p.operation(), sha: p.sha(), spa: p.spa(), tha: p.tha(), tpa: p.tpa() })
    }
    /// Packet length.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }
    /// Writes the packet.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ArpPacket<T>) {
        p.set_fixed(self.operation);
        p.set_sha(self.sha);
        p.set_spa(self.spa);
        p.set_tha(self.tha);
        p.set_tpa(self.tpa);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0, 0, 0, 0, 0,
        0, 10, 0, 0, 2,
    ];

    #[test]
    fn parse_and_emit() {
        let r = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(r.operation, ArpOperation::REQUEST);
        assert_eq!(r.sha, EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(r.spa, Ipv4Address([10, 0, 0, 1]));
        assert_eq!(r.tpa, Ipv4Address([10, 0, 0, 2]));
        let mut out = [0xa5u8; 28];
        r.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn truncated_and_malformed() {
        assert_eq!(ArpPacket::new_checked(&REQUEST[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(ArpPacket::new_checked(&REQUEST[..27]).unwrap_err(), Error::Truncated);
        let mut bad = REQUEST;
        bad[3] = 0xdd; // protocol type 0x08dd
        assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&bad[..]).unwrap()).unwrap_err(), Error::Malformed);
        let mut bad = REQUEST;
        bad[4] = 8; // hardware length 8 claims more bytes than there are
        assert_eq!(ArpPacket::new_checked(&bad[..]).unwrap_err(), Error::Truncated);
    }
}
