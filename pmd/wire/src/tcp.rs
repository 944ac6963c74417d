//! TCP (RFC 9293) headers with options.

use crate::checksum;
use crate::{be, Error, Result};

mod field {
    use crate::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const FLAGS: Field = 12..14;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// TCP flag bits (the low 9 bits of the flags word).
pub mod flags {
    /// FIN.
    pub const FIN: u16 = 0x001;
    /// SYN.
    pub const SYN: u16 = 0x002;
    /// RST.
    pub const RST: u16 = 0x004;
    /// PSH.
    pub const PSH: u16 = 0x008;
    /// ACK.
    pub const ACK: u16 = 0x010;
    /// URG.
    pub const URG: u16 = 0x020;
    /// ECE.
    pub const ECE: u16 = 0x040;
    /// CWR.
    pub const CWR: u16 = 0x080;
    /// NS (historic).
    pub const NS: u16 = 0x100;
}

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }
    /// Wraps, refusing a buffer shorter than the header or its data offset,
    /// and a data offset below 5 words.
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = p.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < hl {
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
    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::SEQ_NUM.start)
    }
    /// Acknowledgement number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::ACK_NUM.start)
    }
    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }
    /// Flag bits (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::FLAGS.start) & 0x01ff
    }
    /// Window size.
    #[inline]
    pub fn window_len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::WIN_SIZE.start)
    }
    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::URGENT.start)
    }
    /// Option bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// Segment data.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// Whether the checksum over the whole buffer verifies with the
    /// pseudo-header sum.
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        checksum::fold(checksum::sum(pseudo, self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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
    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        be::set_u32(self.buffer.as_mut(), field::SEQ_NUM.start, v);
    }
    /// Sets the acknowledgement number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        be::set_u32(self.buffer.as_mut(), field::ACK_NUM.start, v);
    }
    /// Sets data offset (header length in bytes) and flags.
    #[inline]
    pub fn set_header_len_flags(&mut self, header_len: usize, flags: u16) {
        let v = (((header_len / 4) as u16) << 12) | (flags & 0x01ff);
        be::set_u16(self.buffer.as_mut(), field::FLAGS.start, v);
    }
    /// Sets the window.
    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::WIN_SIZE.start, v);
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }
    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        be::set_u16(self.buffer.as_mut(), field::URGENT.start, v);
    }
    /// Computes the checksum over the whole buffer with the pseudo-header.
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let c = !checksum::fold(checksum::sum(pseudo, self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

/// The fields of a TCP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgement number.
    pub ack_number: u32,
    /// Flag bits.
    pub flags: u16,
    /// Window.
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// Options, a multiple of 4 bytes, at most 40.
    pub options: Vec<u8>,
}

impl TcpRepr {
    /// Reads the header; verifies the checksum when `pseudo` is given.
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>, pseudo: Option<u32>) -> Result<TcpRepr> {
        if let Some(ph) = pseudo {
            if !p.verify_checksum(ph) {
                return Err(Error::Checksum);
            }
        }
        Ok(TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_at: p.urgent_at(),
            options: p.options().to_vec(),
        })
    }
    /// Header length with options.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }
    /// Writes the header; with `pseudo`, fills the checksum over the whole
    /// buffer (write the payload first).
    ///
    /// # Panics
    /// If the options are over 40 bytes or not a multiple of 4.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut TcpPacket<T>, pseudo: Option<u32>) {
        assert!(self.options.len() <= 40 && self.options.len().is_multiple_of(4));
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len_flags(self.buffer_len(), self.flags);
        p.set_window_len(self.window_len);
        p.set_urgent_at(self.urgent_at);
        p.buffer.as_mut()[HEADER_LEN..self.buffer_len()].copy_from_slice(&self.options);
        match pseudo {
            Some(ph) => p.fill_checksum(ph),
            None => p.set_checksum(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ipv4Address;

    #[test]
    fn syn_with_mss_round_trip() {
        let r = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 0x01020304,
            ack_number: 0,
            flags: flags::SYN,
            window_len: 64240,
            urgent_at: 0,
            options: vec![2, 4, 0x05, 0xb4],
        };
        let ph = checksum::pseudo_v4(Ipv4Address([1, 1, 1, 1]), Ipv4Address([2, 2, 2, 2]), 6, 24);
        let mut buf = [0xa5u8; 24];
        r.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), Some(ph));
        assert_eq!(buf[12], 0x60);
        assert_eq!(buf[13], 0x02);
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[2, 4, 0x05, 0xb4]);
        assert_eq!(TcpRepr::parse(&p, Some(ph)).unwrap(), r);
        assert_eq!(TcpRepr::parse(&p, Some(ph + 1)).unwrap_err(), Error::Checksum);
    }

    #[test]
    fn truncated_malformed() {
        let mut buf = [0u8; 20];
        buf[12] = 0x50;
        assert!(TcpPacket::new_checked(&buf[..]).is_ok());
        assert_eq!(TcpPacket::new_checked(&buf[..19]).unwrap_err(), Error::Truncated);
        buf[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&buf[..]).unwrap_err(), Error::Malformed);
        buf[12] = 0xf0;
        assert_eq!(TcpPacket::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
    }
}
