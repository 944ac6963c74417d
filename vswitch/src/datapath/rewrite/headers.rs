//! TTLs (IP and MPLS, decrement, set, copy in and out), MPLS label stack
//! and PBB push and pop, DSCP remark.

use super::{ipv4, ipv6, l3_offset, replace, word, MPLS};

/// The IP TTL / hop limit offset of an IPv4 or IPv6 packet at `l3`.
fn ip_ttl_at(d: &[u8], l3: usize) -> Option<usize> {
    match d.get(l3).map(|b| b >> 4) {
        Some(4) if d.len() >= l3 + 20 => Some(l3 + 8),
        Some(6) if d.len() >= l3 + 40 => Some(l3 + 7),
        _ => None,
    }
}

/// Sets the IP TTL (IPv4 checksum updated); false without an IP header.
pub fn set_nw_ttl(d: &mut [u8], ttl: u8) -> bool {
    match l3_offset(d) {
        Some((l3, 0x0800)) if d.len() >= l3 + 20 => {
            replace(d, l3 + 8, &[ttl, d[l3 + 9]], &[(l3 + 10, false)]);
            true
        }
        Some((l3, 0x86dd)) if d.len() >= l3 + 40 => {
            d[l3 + 7] = ttl;
            true
        }
        _ => false,
    }
}

/// A TTL would reach 0: the packet is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlExpired;

/// Decrements the IP TTL; TtlExpired when it would reach 0 (drop),
/// Ok(false) without an IP header.
pub fn dec_nw_ttl(d: &mut [u8]) -> Result<bool, TtlExpired> {
    let at = match l3_offset(d) {
        Some((l3, 0x0800 | 0x86dd)) => ip_ttl_at(d, l3),
        _ => None,
    };
    match at {
        None => Ok(false),
        Some(t) if d[t] <= 1 => Err(TtlExpired),
        Some(t) => Ok(set_nw_ttl(d, d[t] - 1)),
    }
}

/// The outermost label stack entry's offset.
fn lse_at(d: &[u8]) -> Option<usize> {
    match l3_offset(d)? {
        (at, et) if MPLS.contains(&et) && d.len() >= at + 4 => Some(at),
        _ => None,
    }
}

/// Sets the outermost MPLS TTL; false without MPLS.
pub fn set_mpls_ttl(d: &mut [u8], ttl: u8) -> bool {
    lse_at(d).map(|at| d[at + 3] = ttl).is_some()
}

/// Decrements the outermost MPLS TTL; TtlExpired at expiry, Ok(false)
/// without MPLS.
pub fn dec_mpls_ttl(d: &mut [u8]) -> Result<bool, TtlExpired> {
    match lse_at(d) {
        None => Ok(false),
        Some(at) if d[at + 3] <= 1 => Err(TtlExpired),
        Some(at) => {
            d[at + 3] -= 1;
            Ok(true)
        }
    }
}

/// TTL of what follows the outermost entry: the next entry, or the IP
/// header under the bottom of the stack.
fn inner_ttl_at(d: &[u8], at: usize) -> Option<usize> {
    if d[at + 2] & 1 == 0 {
        (d.len() >= at + 8).then_some(at + 7)
    } else {
        ip_ttl_at(d, at + 4)
    }
}

/// OFPAT_COPY_TTL_OUT: the next-inner TTL to the outermost MPLS one.
pub fn copy_ttl_out(d: &mut [u8]) -> bool {
    let Some(at) = lse_at(d) else { return false };
    let Some(inner) = inner_ttl_at(d, at) else { return false };
    d[at + 3] = d[inner];
    true
}

/// OFPAT_COPY_TTL_IN: the outermost MPLS TTL to the next-inner one.
pub fn copy_ttl_in(d: &mut [u8]) -> bool {
    let Some(at) = lse_at(d) else { return false };
    let Some(inner) = inner_ttl_at(d, at) else { return false };
    let ttl = d[at + 3];
    if d[at + 2] & 1 == 1 && d[at + 4] >> 4 == 4 {
        // An IPv4 TTL: through its checksum.
        let l3 = at + 4;
        replace(d, l3 + 8, &[ttl, d[l3 + 9]], &[(l3 + 10, false)]);
    } else {
        d[inner] = ttl;
    }
    true
}

/// OFPAT_PUSH_MPLS, after the caller prepended 4 bytes to the frame: moves
/// the L2 header (MACs and tags) into them and writes a new outermost
/// entry with `ethertype`. On an MPLS frame the entry copies label, TC and
/// TTL of the one below and is not the bottom of the stack (OpenFlow 1.3,
/// 5.12.1); otherwise label 0, TC 0, bottom of stack, TTL from the IP
/// header (else 0: nothing to copy, as the spec's push table has it).
pub fn push_mpls_after_prepend(d: &mut [u8], ethertype: u16) -> bool {
    let Some((l2end, was)) = l3_offset(&d[4..]) else { return false };
    d.copy_within(4..4 + l2end, 0);
    let below = l2end + 4;
    let lse = match d.get(below..below + 4) {
        Some(b) if MPLS.contains(&was) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & !(1 << 8),
        _ => (1 << 8) | u32::from(ip_ttl_at(d, below).map_or(0, |t| d[t])),
    };
    d[l2end - 2..l2end].copy_from_slice(&ethertype.to_be_bytes());
    d[l2end..l2end + 4].copy_from_slice(&lse.to_be_bytes());
    true
}

/// OFPAT_POP_MPLS, before the caller drops the frame's first 4 bytes:
/// removes the outermost entry by moving the L2 header over it and sets
/// the EtherType to `ethertype`. False without MPLS.
pub fn pop_mpls_before_adj(d: &mut [u8], ethertype: u16) -> bool {
    let Some(at) = lse_at(d) else { return false };
    d[at - 2..at].copy_from_slice(&ethertype.to_be_bytes());
    d.copy_within(0..at, 4);
    true
}

/// EtherType of the 802.1ah I-TAG (PBB service instance tag).
pub const PBB: u16 = 0x88e7;

/// OFPAT_PUSH_PBB, after the caller prepended 18 bytes to the frame: writes
/// a backbone header in front of the whole customer frame, as OpenFlow
/// 1.3 (5.12.1) lays it out: B-DA and B-SA copied from the customer
/// addresses, `ethertype`, and an I-TAG whose I-SID copies the I-SID of a
/// PBB header already there (else 0) and whose I-PCP copies the outer VLAN
/// PCP (else 0).
pub fn push_pbb_after_prepend(d: &mut [u8], ethertype: u16) -> bool {
    if d.len() < 18 + 14 {
        return false;
    }
    let inner = &d[18..];
    let isid = match l3_offset(inner) {
        Some((at, PBB)) if inner.len() >= at + 4 => {
            u32::from_be_bytes([0, inner[at + 1], inner[at + 2], inner[at + 3]])
        }
        _ => 0,
    };
    let pcp = match u16::from_be_bytes([inner[12], inner[13]]) {
        0x8100 | 0x88a8 => inner[14] >> 5,
        _ => 0,
    };
    d.copy_within(18..30, 0);
    d[12..14].copy_from_slice(&ethertype.to_be_bytes());
    let itag = (u32::from(pcp) << 29) | isid;
    d[14..18].copy_from_slice(&itag.to_be_bytes());
    true
}

/// OFPAT_POP_PBB: the number of leading bytes (backbone addresses, any
/// B-tag and the I-TAG) the caller removes to leave the customer frame;
/// None without a PBB header.
pub fn pbb_header_len(d: &[u8]) -> Option<usize> {
    match l3_offset(d) {
        Some((at, PBB)) if d.len() >= at + 4 + 14 => Some(at + 4),
        _ => None,
    }
}

/// Raises an IPv4 or IPv6 packet's AF drop precedence (RFC 2597 AFxy: y in DSCP
/// bits 1-2) by `prec`, capped at 3.
pub fn remark_dscp(d: &mut [u8], prec: u8) {
    let raise = |dscp: u8| {
        let dp = ((dscp >> 1) & 3).saturating_add(prec).min(3);
        (dscp & !0b110) | (dp << 1)
    };
    if let Some((l3, ..)) = ipv4(d) {
        let tos = (raise(d[l3 + 1] >> 2) << 2) | (d[l3 + 1] & 3);
        replace(d, l3, &[d[l3], tos], &[(l3 + 10, false)]);
    } else if let Some((l3, _)) = ipv6(d) {
        // The traffic class straddles the first two bytes; no checksum.
        let tc = u8::try_from((word(d, l3) >> 4) & 0xff).unwrap_or(0);
        let tc = (raise(tc >> 2) << 2) | (tc & 3);
        let w = (word(d, l3) & 0xf00f) | (u16::from(tc) << 4);
        d[l3..l3 + 2].copy_from_slice(&w.to_be_bytes());
    }
}
