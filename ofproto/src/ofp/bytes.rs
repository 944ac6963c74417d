//! A bounds-checked reader and a writer for OpenFlow's big-endian fields.
//! Every read that would pass the end is an error, never a panic.

use super::error::OfpError;

/// Reads fields in order from a slice.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    /// The error raised when the slice ends early.
    short: OfpError,
}

impl<'a> Reader<'a> {
    /// A reader over `buf` raising `short` when it ends early.
    pub fn new(buf: &'a [u8], short: OfpError) -> Reader<'a> {
        Reader { buf, at: 0, short }
    }
    /// Bytes left.
    pub fn left(&self) -> usize {
        self.buf.len() - self.at
    }
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.left() == 0
    }
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], OfpError> {
        if self.left() < n {
            return Err(self.short);
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.at..];
        self.at = self.buf.len();
        s
    }
    /// Skips `n` bytes (padding).
    pub fn skip(&mut self, n: usize) -> Result<(), OfpError> {
        self.take(n).map(|_| ())
    }
    /// A sub-reader over the next `n` bytes (a length field said so),
    /// raising `short` itself, and when fewer than `n` bytes are left.
    pub fn sub(&mut self, n: usize, short: OfpError) -> Result<Reader<'a>, OfpError> {
        if self.left() < n {
            return Err(short);
        }
        Ok(Reader::new(self.take(n)?, short))
    }
    /// An array of `N` bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], OfpError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, OfpError> {
        Ok(self.take(1)?[0])
    }
    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, OfpError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, OfpError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, OfpError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A NUL-terminated string in a field of `n` bytes: at most n-1
    /// bytes are text; bytes that are not printable ASCII read as `?`, so
    /// what decodes re-encodes to the same text.
    pub fn string(&mut self, n: usize) -> Result<String, OfpError> {
        let s = self.take(n)?;
        let end = s.iter().position(|b| *b == 0).unwrap_or(n).min(n.saturating_sub(1));
        Ok(s[..end].iter().map(|b| if b.is_ascii_graphic() || *b == b' ' { char::from(*b) } else { '?' }).collect())
    }
}

/// Appends fields to a buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    /// The bytes written.
    pub buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }
    /// Current length.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Writer {
        self.buf.push(v);
        self
    }
    /// A big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Writer {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Writer {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Writer {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Writer {
        self.buf.extend_from_slice(b);
        self
    }
    /// `n` zero bytes.
    pub fn pad(&mut self, n: usize) -> &mut Writer {
        self.buf.resize(self.buf.len() + n, 0);
        self
    }
    /// Zeroes up to the next multiple of 8 (OpenFlow's alignment).
    pub fn align8(&mut self) -> &mut Writer {
        let n = self.buf.len().next_multiple_of(8) - self.buf.len();
        self.pad(n)
    }
    /// A string in a NUL-padded field of `n` bytes (cut to n-1 bytes).
    pub fn string(&mut self, s: &str, n: usize) -> &mut Writer {
        let b = s.as_bytes();
        let k = b.len().min(n.saturating_sub(1));
        self.bytes(&b[..k]).pad(n - k)
    }
    /// Writes a u16 length field at `at`, the bytes from `from` to the end.
    pub fn patch_len16(&mut self, at: usize, from: usize) {
        let n = u16::try_from(self.buf.len() - from).unwrap_or(u16::MAX);
        self.buf[at..at + 2].copy_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofp::error::BAD_LEN;

    #[test]
    fn reads_what_was_written_and_refuses_to_overrun() {
        let mut w = Writer::new();
        w.u8(1).u16(0x0203).u32(0x0405_0607).u64(8).string("eth0", 16).align8();
        assert_eq!(w.len(), 32);
        let mut r = Reader::new(&w.buf, BAD_LEN);
        assert_eq!((r.u8(), r.u16(), r.u32(), r.u64()), (Ok(1), Ok(0x0203), Ok(0x0405_0607), Ok(8)));
        assert_eq!(r.string(16).as_deref(), Ok("eth0"));
        assert_eq!(r.left(), 1);
        assert_eq!(r.u16(), Err(BAD_LEN));
        assert_eq!(r.u8(), Ok(0), "a failed read consumes nothing");
    }
}
