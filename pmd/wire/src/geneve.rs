//! Geneve (RFC 8926): a header with variable-length options after a UDP
//! header to port 6081.

use crate::{be, Error, EtherType, Result};

mod field {
    use crate::Field;
    pub const VER_OPTLEN: usize = 0;
    pub const FLAGS: usize = 1;
    pub const PROTOCOL: Field = 2..4;
    pub const VNI: Field = 4..8;
    pub const OPTIONS: usize = 8;
}

/// Length of the header without options.
pub const MIN_HEADER_LEN: usize = field::OPTIONS;
/// IANA's UDP port for Geneve.
pub const UDP_PORT: u16 = 6081;
const FLAG_O: u8 = 0x80;
const FLAG_C: u8 = 0x40;

/// A view of a Geneve header and its payload.
#[derive(Debug, Clone)]
pub struct GenevePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GenevePacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> GenevePacket<T> {
        GenevePacket { buffer }
    }
    /// Wraps, refusing a buffer shorter than the header with its options.
    pub fn new_checked(buffer: T) -> Result<GenevePacket<T>> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < MIN_HEADER_LEN || len < p.header_len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }
    /// Version (0).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPTLEN] >> 6
    }
    /// Options length in bytes.
    #[inline]
    pub fn options_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_OPTLEN] & 0x3f) * 4
    }
    /// Header length with options.
    #[inline]
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options_len()
    }
    /// OAM packet.
    #[inline]
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_O != 0
    }
    /// Critical options present.
    #[inline]
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_C != 0
    }
    /// Payload protocol.
    #[inline]
    pub fn protocol(&self) -> EtherType {
        EtherType(be::u16_at(self.buffer.as_ref(), field::PROTOCOL.start))
    }
    /// The 24-bit VNI.
    #[inline]
    pub fn vni(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::VNI.start) >> 8
    }
    /// Option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }
    /// The payload after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// One Geneve option TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneveOption {
    /// Option class.
    pub class: u16,
    /// Type (the high bit marks it critical).
    pub kind: u8,
    /// Data, a multiple of 4 bytes, at most 124.
    pub data: Vec<u8>,
}

/// A Geneve header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneveRepr {
    /// OAM flag.
    pub oam: bool,
    /// Critical-options flag.
    pub critical: bool,
    /// Payload protocol (0x6558 for Ethernet).
    pub protocol: EtherType,
    /// Virtual network identifier.
    pub vni: u32,
    /// Options in order.
    pub options: Vec<GeneveOption>,
}

impl GeneveRepr {
    /// Reads the header and its options; version other than 0, and options
    /// that overrun the options length, are malformed.
    pub fn parse<T: AsRef<[u8]>>(p: &GenevePacket<T>) -> Result<GeneveRepr> {
        let len = p.buffer.as_ref().len();
        if len < MIN_HEADER_LEN || len < p.header_len() {
            return Err(Error::Truncated);
        }
        if p.version() != 0 {
            return Err(Error::Malformed);
        }
        let mut opts = p.options();
        let mut options = Vec::new();
        while !opts.is_empty() {
            if opts.len() < 4 {
                return Err(Error::Malformed);
            }
            let dlen = usize::from(opts[3] & 0x1f) * 4;
            if opts.len() < 4 + dlen {
                return Err(Error::Malformed);
            }
            options.push(GeneveOption { class: be::u16_at(opts, 0), kind: opts[2], data: opts[4..4 + dlen].to_vec() });
            opts = &opts[4 + dlen..];
        }
        Ok(GeneveRepr { oam: p.oam(), critical: p.critical(), protocol: p.protocol(), vni: p.vni(), options })
    }
    /// Header length with options.
    pub fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.iter().map(|o| 4 + o.data.len()).sum::<usize>()
    }
    /// Writes the header and options.
    ///
    /// # Panics
    /// If an option's data is not a multiple of 4 bytes or over 124, or the
    /// options total over 252 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut GenevePacket<T>) {
        let opt_len = self.buffer_len() - MIN_HEADER_LEN;
        assert!(opt_len <= 252);
        let b = p.buffer.as_mut();
        b[field::VER_OPTLEN] = (opt_len / 4) as u8;
        b[field::FLAGS] = if self.oam { FLAG_O } else { 0 } | if self.critical { FLAG_C } else { 0 };
        be::set_u16(b, field::PROTOCOL.start, self.protocol.0);
        be::set_u32(b, field::VNI.start, (self.vni & 0x00ff_ffff) << 8);
        let mut off = MIN_HEADER_LEN;
        for o in &self.options {
            assert!(o.data.len() % 4 == 0 && o.data.len() <= 124);
            be::set_u16(b, off, o.class);
            b[off + 2] = o.kind;
            b[off + 3] = (o.data.len() / 4) as u8;
            b[off + 4..off + 4 + o.data.len()].copy_from_slice(&o.data);
            off += 4 + o.data.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_options() {
        let r = GeneveRepr {
            oam: false,
            critical: true,
            protocol: EtherType::TEB,
            vni: 0xabcdef,
            options: vec![GeneveOption { class: 0x0102, kind: 0x80, data: vec![1, 2, 3, 4] }],
        };
        let mut buf = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut GenevePacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..8], &[0x02, 0x40, 0x65, 0x58, 0xab, 0xcd, 0xef, 0x00]);
        let p = GenevePacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 16);
        assert_eq!(GeneveRepr::parse(&p).unwrap(), r);
    }

    #[test]
    fn truncated_and_malformed() {
        assert_eq!(GenevePacket::new_checked(&[0u8; 7][..]).unwrap_err(), Error::Truncated);
        // Options length 8 bytes claimed, 4 present.
        assert_eq!(
            GenevePacket::new_checked(&[2u8, 0, 0x65, 0x58, 0, 0, 1, 0, 0, 0, 0, 0][..]).unwrap_err(),
            Error::Truncated
        );
        // Version 1.
        let p = GenevePacket::new_checked(&[0x40u8, 0, 0x65, 0x58, 0, 0, 1, 0][..]).unwrap();
        assert_eq!(GeneveRepr::parse(&p).unwrap_err(), Error::Malformed);
        // An option whose length overruns the options area.
        let bad = [1u8, 0, 0x65, 0x58, 0, 0, 1, 0, 0, 1, 2, 3];
        let p = GenevePacket::new_checked(&bad[..]).unwrap();
        assert_eq!(GeneveRepr::parse(&p).unwrap_err(), Error::Malformed);
    }
}
