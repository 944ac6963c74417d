//! ICMP for IPv4 (RFC 792): the common 8-byte header; echo and error
//! messages share it.

use crate::checksum;
use crate::{be, Error, Result};

mod field {
    use crate::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const DATA: usize = 8;
}

/// Length of the ICMP header.
pub const HEADER_LEN: usize = field::DATA;
/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const DST_UNREACHABLE: u8 = 3;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;

/// A view of an ICMP message (header and data).
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }
    /// Wraps, refusing a buffer shorter than the header.
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Icmpv4Packet { buffer })
    }
    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// Message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Echo identifier (echo messages).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }
    /// Echo sequence number (echo messages).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }
    /// The bytes after the header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
    /// Whether the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(0, self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets type and code.
    pub fn set_type_code(&mut self, t: u8, c: u8) {
        let b = self.buffer.as_mut();
        b[field::TYPE] = t;
        b[field::CODE] = c;
    }
    /// Sets the 4 bytes after the checksum (echo id and sequence, or the
    /// error message's unused/MTU word).
    pub fn set_rest(&mut self, rest: u32) {
        be::set_u32(self.buffer.as_mut(), field::ECHO_IDENT.start, rest);
    }
    /// Computes and writes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, 0);
        let c = checksum::checksum(self.buffer.as_ref());
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, c);
    }
    /// Mutable data.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }
}

/// An ICMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Repr {
    /// Type.
    pub msg_type: u8,
    /// Code.
    pub msg_code: u8,
    /// The 4 bytes after the checksum.
    pub rest: u32,
    /// The data after the header.
    pub data: Vec<u8>,
}

impl Icmpv4Repr {
    /// Reads the message, verifying its checksum when `check` is set.
    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv4Packet<T>, check: bool) -> Result<Icmpv4Repr> {
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if check && !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Icmpv4Repr {
            msg_type: p.msg_type(),
            msg_code: p.msg_code(),
            rest: be::u32_at(p.buffer.as_ref(), field::ECHO_IDENT.start),
            data: p.data().to_vec(),
        })
    }
    /// Message length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }
    /// Writes the message and its checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Icmpv4Packet<T>) {
        p.set_type_code(self.msg_type, self.msg_code);
        p.set_rest(self.rest);
        p.data_mut()[..self.data.len()].copy_from_slice(&self.data);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ECHO: [u8; 12] = [0x08, 0x00, 0x8e, 0xfe, 0x12, 0x34, 0xab, 0xcd, 0xaa, 0x00, 0x00, 0xff];

    #[test]
    fn echo_round_trip() {
        let p = Icmpv4Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 0xabcd);
        assert!(p.verify_checksum());
        let r = Icmpv4Repr::parse(&p, true).unwrap();
        let mut out = [0xa5u8; 12];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, ECHO);
    }

    #[test]
    fn truncated_and_checksum() {
        assert_eq!(Icmpv4Packet::new_checked(&ECHO[..7]).unwrap_err(), Error::Truncated);
        let mut bad = ECHO;
        bad[9] = 1;
        let p = Icmpv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p, true).unwrap_err(), Error::Checksum);
        assert!(Icmpv4Repr::parse(&p, false).is_ok());
    }
}
