//! The Internet checksum (RFC 1071) as partial sums that combine, the
//! pseudo-headers of IPv4 and IPv6, and incremental update (RFC 1624).
//!
//! A partial sum is a `u32` accumulator of 16-bit big-endian words; fold it
//! with [`fold`] and complement it to get the field value.

use crate::ipv4::Ipv4Address;
use crate::ipv6::Ipv6Address;

/// Adds `data` to a running sum as 16-bit big-endian words (an odd last byte
/// is padded with zero, as RFC 1071 says).
#[inline]
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early enough that the accumulator cannot overflow on jumbo
        // frames (every 32k words).
        if acc & 0x8000_0000 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a partial sum to 16 bits (not complemented).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Combines partial sums.
#[inline]
pub fn combine(sums: &[u32]) -> u32 {
    sums.iter().fold(0u32, |a, s| u32::from(fold(a.wrapping_add(u32::from(fold(*s))))))
}

/// The checksum field value over `data`: the complement of the folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// Partial sum of the IPv4 pseudo-header for an upper-layer protocol.
#[inline]
pub fn pseudo_v4(src: Ipv4Address, dst: Ipv4Address, protocol: u8, len: u16) -> u32 {
    let mut acc = sum(0, &src.0);
    acc = sum(acc, &dst.0);
    acc + u32::from(protocol) + u32::from(len)
}

/// Partial sum of the IPv6 pseudo-header for an upper-layer protocol.
#[inline]
pub fn pseudo_v6(src: &Ipv6Address, dst: &Ipv6Address, next_header: u8, len: u32) -> u32 {
    let mut acc = sum(0, &src.0);
    acc = sum(acc, &dst.0);
    acc + (len >> 16) + (len & 0xffff) + u32::from(next_header)
}

/// RFC 1624 eqn. 3: the new checksum field after a 16-bit word of the
/// covered data changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// Incremental update for a 32-bit word (an IPv4 address, say).
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// What the NIC does with checksums, so software skips the work it does.
/// `check_*` says whether the parser verifies; `fill_*` whether emitters
/// compute (false when the NIC computes on transmit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Verify the IPv4 header checksum when parsing.
    pub check_ipv4: bool,
    /// Verify TCP/UDP/ICMP checksums when parsing.
    pub check_l4: bool,
    /// Fill the IPv4 header checksum when emitting.
    pub fill_ipv4: bool,
    /// Fill TCP/UDP/ICMP checksums when emitting.
    pub fill_l4: bool,
}

impl Caps {
    /// Software does every checksum.
    pub const fn check_all() -> Caps {
        Caps { check_ipv4: true, check_l4: true, fill_ipv4: true, fill_l4: true }
    }
    /// The NIC did (or will do) every checksum.
    pub const fn offloaded() -> Caps {
        Caps { check_ipv4: false, check_l4: false, fill_ipv4: false, fill_l4: false }
    }
}

impl Default for Caps {
    fn default() -> Caps {
        Caps::check_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0xab])), 0xab00);
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0xab])), 0x1234 + 0xab00);
    }

    #[test]
    fn partial_sums_combine() {
        let a = [1u8, 2, 3, 4, 5, 6];
        let b = [7u8, 8, 9, 10];
        let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(fold(combine(&[sum(0, &a), sum(0, &b)])), fold(sum(0, &whole)));
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut data = [0x45u8, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 0x40, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c = checksum(&data);
        // Rewrite the TTL/protocol word (decrement TTL).
        let old = u16::from_be_bytes([data[8], data[9]]);
        data[8] -= 1;
        let new = u16::from_be_bytes([data[8], data[9]]);
        assert_eq!(update16(c, old, new), checksum(&data));
        // Rewrite the destination address.
        let old = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
        data[16..20].copy_from_slice(&[192, 168, 7, 9]);
        let new = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
        let c2 = update32(
            checksum(&{
                let mut d = data;
                d[16..20].copy_from_slice(&old.to_be_bytes());
                d
            }),
            old,
            new,
        );
        assert_eq!(c2, checksum(&data));
    }

    #[test]
    fn large_buffer_does_not_overflow() {
        let data = vec![0xffu8; 70000];
        assert_eq!(fold(sum(0, &data)), 0xffff);
    }
}
