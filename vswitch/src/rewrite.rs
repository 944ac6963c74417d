//! Header rewrites on frame bytes for OpenFlow actions: set-field of every
//! field the fast path rewrites, IP and MPLS TTLs, TTL copies, MPLS label
//! stack push and pop, DSCP remark. Checksums are updated incrementally
//! (RFC 1624), never recomputed. Pure functions over `&mut [u8]`, so they
//! are tested without DPDK; the fast path calls them on mbuf data.

use ofproto::ofp::{Field, Oxm};

const MPLS: [u16; 2] = [0x8847, 0x8848];

/// Offset of the L3 header (after VLAN tags) and its EtherType; for MPLS
/// frames the offset of the outermost label stack entry.
pub fn l3_offset(d: &[u8]) -> Option<(usize, u16)> {
    let mut off = 12;
    loop {
        if d.len() < off + 2 {
            return None;
        }
        let et = u16::from_be_bytes([d[off], d[off + 1]]);
        if et == 0x8100 || et == 0x88a8 {
            off += 4;
            continue;
        }
        return Some((off + 2, et));
    }
}

/// RFC 1624 incremental checksum update for a 16-bit word change.
pub fn csum_update(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = u32::from(!sum) + u32::from(!old) + u32::from(new);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !u16::try_from(s).unwrap_or(0)
}

fn word(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// Replaces bytes at `at` with `new` (even length) and folds the change
/// into the checksums at `sums` (offsets; a UDP checksum of 0 stays 0).
fn replace(d: &mut [u8], at: usize, new: &[u8], sums: &[(usize, bool)]) {
    for i in (0..new.len()).step_by(2) {
        let old = word(d, at + i);
        let nw = u16::from_be_bytes([new[i], new.get(i + 1).copied().unwrap_or(0)]);
        for &(ck, udp) in sums {
            let c = word(d, ck);
            if !(udp && c == 0) {
                d[ck..ck + 2].copy_from_slice(&csum_update(c, old, nw).to_be_bytes());
            }
        }
        d[at + i..at + i + 2].copy_from_slice(&nw.to_be_bytes());
    }
}

/// The L4 checksum of an IPv4 or IPv6 packet whose L4 header is at `l4`
/// with protocol `proto`: (offset, is UDP). None when absent or cut.
fn l4_sum(d: &[u8], l4: usize, proto: u8) -> Option<(usize, bool)> {
    let (at, udp) = match proto {
        6 => (l4 + 16, false),
        17 => (l4 + 6, true),
        58 => (l4 + 2, false),
        _ => return None,
    };
    (d.len() >= at + 2).then_some((at, udp))
}

/// IPv4: (l3, header length, protocol, first fragment).
fn ipv4(d: &[u8]) -> Option<(usize, usize, u8, bool)> {
    match l3_offset(d)? {
        (l3, 0x0800) if d.len() >= l3 + 20 => {
            let ihl = usize::from(d[l3] & 0xf) * 4;
            let first = word(d, l3 + 6) & 0x1fff == 0;
            Some((l3, ihl, d[l3 + 9], first))
        }
        _ => None,
    }
}

/// IPv6 with its upper layer right after the fixed header: (l3, next
/// header).
fn ipv6(d: &[u8]) -> Option<(usize, u8)> {
    match l3_offset(d)? {
        (l3, 0x86dd) if d.len() >= l3 + 40 => Some((l3, d[l3 + 6])),
        _ => None,
    }
}

/// Applies a set-field to the frame; false when the frame lacks the
/// header or the field is not rewritten here (the caller counts it).
pub fn set_field(d: &mut [u8], o: &Oxm) -> bool {
    let v = o.value();
    match o.field {
        Field::EthDst if d.len() >= 6 => d[0..6].copy_from_slice(v),
        Field::EthSrc if d.len() >= 12 => d[6..12].copy_from_slice(v),
        Field::VlanVid | Field::VlanPcp if d.len() >= 16 && matches!(word(d, 12), 0x8100 | 0x88a8) => {
            let tci = word(d, 14);
            let val = if v.len() == 2 { word(v, 0) } else { u16::from(v[0]) };
            let tci = if o.field == Field::VlanVid {
                (tci & 0xf000) | (val & 0xfff)
            } else {
                (tci & 0x1fff) | ((val & 7) << 13)
            };
            d[14..16].copy_from_slice(&tci.to_be_bytes());
        }
        // The pipeline's own fields: only the key changes.
        Field::Metadata | Field::TunnelId => {}
        // The innermost EtherType (after any VLAN tags).
        Field::EthType => {
            let Some((l3, _)) = l3_offset(d) else { return false };
            d[l3 - 2..l3].copy_from_slice(&v[..2]);
        }
        // The protocol number: in the IPv4 header (and its checksum) or the
        // IPv6 next header, and in the L4 checksum's pseudo-header.
        Field::IpProto => {
            let (l3, at, l4, old) = match (ipv4(d), ipv6(d)) {
                (Some((l3, ihl, p, first)), _) => (l3, l3 + 9, first.then_some(l3 + ihl), p),
                (None, Some((l3, nh))) => (l3, l3 + 6, Some(l3 + 40), nh),
                _ => return false,
            };
            if let Some((ck, udp)) = l4.and_then(|l4| l4_sum(d, l4, old)) {
                let c = word(d, ck);
                if !(udp && c == 0) {
                    d[ck..ck + 2].copy_from_slice(&csum_update(c, u16::from(old), u16::from(v[0])).to_be_bytes());
                }
            }
            if at == l3 + 9 {
                replace(d, l3 + 8, &[d[l3 + 8], v[0]], &[(l3 + 10, false)]);
            } else {
                d[at] = v[0];
            }
        }
        Field::Ipv4Src | Field::Ipv4Dst => {
            let Some((l3, ihl, proto, first)) = ipv4(d) else { return false };
            let at = l3 + if o.field == Field::Ipv4Src { 12 } else { 16 };
            match l4_sum(d, l3 + ihl, proto).filter(|_| first && proto != 58) {
                Some(l4) => replace(d, at, v, &[(l3 + 10, false), l4]),
                None => replace(d, at, v, &[(l3 + 10, false)]),
            }
        }
        Field::IpDscp | Field::IpEcn => match (ipv4(d), ipv6(d)) {
            (Some((l3, ..)), _) => {
                let tos = d[l3 + 1];
                let tos = if o.field == Field::IpDscp { (v[0] << 2) | (tos & 3) } else { (tos & !3) | (v[0] & 3) };
                replace(d, l3, &[d[l3], tos], &[(l3 + 10, false)]);
            }
            (None, Some((l3, _))) => {
                let tc = u8::try_from((word(d, l3) >> 4) & 0xff).unwrap_or(0);
                let tc = if o.field == Field::IpDscp { (v[0] << 2) | (tc & 3) } else { (tc & !3) | (v[0] & 3) };
                let w = (word(d, l3) & 0xf00f) | (u16::from(tc) << 4);
                d[l3..l3 + 2].copy_from_slice(&w.to_be_bytes());
            }
            _ => return false,
        },
        Field::Ipv6Src | Field::Ipv6Dst => {
            let Some((l3, nh)) = ipv6(d) else { return false };
            let at = l3 + if o.field == Field::Ipv6Src { 8 } else { 24 };
            match l4_sum(d, l3 + 40, nh) {
                Some(l4) => replace(d, at, v, &[l4]),
                None => replace(d, at, v, &[]),
            }
        }
        Field::Ipv6Flabel => {
            let Some((l3, _)) = ipv6(d) else { return false };
            let fl = u32::from_be_bytes([0, v[1], v[2], v[3]]) & 0xf_ffff;
            let w = (u32::from_be_bytes([d[l3], d[l3 + 1], d[l3 + 2], d[l3 + 3]]) & 0xfff0_0000) | fl;
            d[l3..l3 + 4].copy_from_slice(&w.to_be_bytes());
        }
        Field::TcpSrc | Field::TcpDst | Field::UdpSrc | Field::UdpDst => {
            let (l4, proto) = match (ipv4(d), ipv6(d)) {
                (Some((l3, ihl, p, true)), _) => (l3 + ihl, p),
                (None, Some((l3, nh))) => (l3 + 40, nh),
                _ => return false,
            };
            let tcp = matches!(o.field, Field::TcpSrc | Field::TcpDst);
            if proto != if tcp { 6 } else { 17 } {
                return false;
            }
            let Some(sum) = l4_sum(d, l4, proto) else { return false };
            let at = l4 + if matches!(o.field, Field::TcpSrc | Field::UdpSrc) { 0 } else { 2 };
            replace(d, at, v, &[sum]);
        }
        Field::SctpSrc | Field::SctpDst => {
            let l4 = match (ipv4(d), ipv6(d)) {
                (Some((l3, ihl, 132, true)), _) => l3 + ihl,
                (None, Some((l3, 132))) => l3 + 40,
                _ => return false,
            };
            if d.len() < l4 + 12 {
                return false;
            }
            let at = l4 + if o.field == Field::SctpSrc { 0 } else { 2 };
            d[at..at + 2].copy_from_slice(v);
            // SCTP's CRC32c cannot be updated incrementally: recomputed
            // over the whole SCTP packet (this action only).
            let end = ip_payload_end(d, l4);
            d[l4 + 8..l4 + 12].fill(0);
            let crc = !crc32c(!0, &d[l4..end]);
            d[l4 + 8..l4 + 12].copy_from_slice(&crc.to_le_bytes());
        }
        Field::Ipv6NdTarget | Field::Ipv6NdSll | Field::Ipv6NdTll => {
            let Some((l3, 58)) = ipv6(d) else { return false };
            let l4 = l3 + 40;
            let ty = match o.field {
                Field::Ipv6NdTarget => None,
                Field::Ipv6NdSll => Some(1),
                _ => Some(2),
            };
            if d.len() < l4 + 24 || !matches!((d[l4], ty), (135 | 136, None) | (135, Some(1)) | (136, Some(2))) {
                return false;
            }
            let at = match ty {
                None => l4 + 8,
                Some(t) => {
                    // The link-layer address option of that type.
                    let end = ip_payload_end(d, l4);
                    let mut at = l4 + 24;
                    loop {
                        let n = usize::from(*d.get(at + 1).unwrap_or(&0)) * 8;
                        if n == 0 || at + n > end {
                            return false;
                        }
                        if d[at] == t && n >= 8 {
                            break at + 2;
                        }
                        at += n;
                    }
                }
            };
            replace(d, at, v, &[(l4 + 2, false)]);
        }
        Field::PbbIsid => {
            let Some((at, PBB)) = l3_offset(d) else { return false };
            if d.len() < at + 4 {
                return false;
            }
            d[at + 1..at + 4].copy_from_slice(&v[..3]);
        }
        Field::Icmpv4Type | Field::Icmpv4Code => {
            let Some((l3, ihl, 1, true)) = ipv4(d) else { return false };
            let l4 = l3 + ihl;
            if d.len() < l4 + 4 {
                return false;
            }
            let (t, c) = if o.field == Field::Icmpv4Type { (v[0], d[l4 + 1]) } else { (d[l4], v[0]) };
            replace(d, l4, &[t, c], &[(l4 + 2, false)]);
        }
        Field::Icmpv6Type | Field::Icmpv6Code => {
            let Some((l3, 58)) = ipv6(d) else { return false };
            let l4 = l3 + 40;
            if d.len() < l4 + 4 {
                return false;
            }
            let (t, c) = if o.field == Field::Icmpv6Type { (v[0], d[l4 + 1]) } else { (d[l4], v[0]) };
            replace(d, l4, &[t, c], &[(l4 + 2, false)]);
        }
        Field::ArpOp | Field::ArpSha | Field::ArpSpa | Field::ArpTha | Field::ArpTpa => {
            let Some((l3, 0x0806)) = l3_offset(d) else { return false };
            if d.len() < l3 + 28 {
                return false;
            }
            let at = l3
                + match o.field {
                    Field::ArpOp => 6,
                    Field::ArpSha => 8,
                    Field::ArpSpa => 14,
                    Field::ArpTha => 18,
                    _ => 24,
                };
            d[at..at + v.len()].copy_from_slice(v);
        }
        Field::MplsLabel | Field::MplsTc | Field::MplsBos => {
            let Some((at, et)) = l3_offset(d) else { return false };
            if !MPLS.contains(&et) || d.len() < at + 4 {
                return false;
            }
            let lse = u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
            let val = u32::try_from(o.value_u64()).unwrap_or(0);
            let lse = match o.field {
                Field::MplsLabel => (lse & 0xfff) | ((val & 0xf_ffff) << 12),
                Field::MplsTc => (lse & !(7 << 9)) | ((val & 7) << 9),
                _ => (lse & !(1 << 8)) | ((val & 1) << 8),
            };
            d[at..at + 4].copy_from_slice(&lse.to_be_bytes());
        }
        _ => return false,
    }
    true
}

/// Where the IP payload that starts at `l4` ends: the IP header's length
/// field, bounded by the frame (Ethernet padding excluded).
fn ip_payload_end(d: &[u8], l4: usize) -> usize {
    let end = match (ipv4(d), ipv6(d)) {
        (Some((l3, ..)), _) => l3 + usize::from(word(d, l3 + 2)),
        (None, Some((l3, _))) => l3 + 40 + usize::from(word(d, l3 + 4)),
        _ => d.len(),
    };
    end.clamp(l4, d.len())
}

/// CRC32c (Castagnoli, reflected) table, built at compile time.
const CRC32C: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        #[allow(clippy::cast_possible_truncation)] // i < 256
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Continues a CRC32c over `b` (start with `!0`, finish with `!`).
fn crc32c(mut crc: u32, b: &[u8]) -> u32 {
    for &x in b {
        crc = CRC32C[usize::from(u8::try_from(crc & 0xff).unwrap_or(0) ^ x)] ^ (crc >> 8);
    }
    crc
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use wire::build::Udp4Frame;
    use wire::{EthernetAddress, Ipv4Address};

    fn udp4() -> Vec<u8> {
        let f = Udp4Frame {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            vlan: None,
            src_ip: Ipv4Address([10, 0, 0, 1]),
            dst_ip: Ipv4Address([10, 0, 0, 2]),
            src_port: 1000,
            dst_port: 53,
            ttl: 64,
        };
        let mut b = vec![0u8; 80];
        f.emit(&mut b, true);
        b
    }

    /// An Ethernet + IPv6 frame with next header `next` and `payload` zero
    /// bytes after the fixed header.
    fn ipv6_frame(next: u8, payload: u16) -> Vec<u8> {
        let mut d = vec![0u8; 14 + 40 + usize::from(payload)];
        d[12..14].copy_from_slice(&[0x86, 0xdd]);
        d[14] = 0x60;
        d[18..20].copy_from_slice(&payload.to_be_bytes());
        d[20] = next;
        d
    }

    /// Whether the frame's IPv4 header and UDP checksums verify, as a
    /// receiver would check them.
    fn checksums_ok(d: &[u8]) -> bool {
        let ip = wire::Ipv4Packet::new_checked(&d[14..]).unwrap();
        let repr = wire::Ipv4Repr::parse(&ip, &wire::checksum::Caps::check_all());
        repr.is_ok() && wire::parse_frame(d).is_ok()
    }

    fn sum_ok(b: &[u8]) -> bool {
        let mut s = 0u32;
        for c in b.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s == 0xffff
    }

    #[test]
    fn ipv4_rewrites_keep_every_checksum_valid() {
        let mut d = udp4();
        assert!(checksums_ok(&d));
        for o in [
            Oxm::exact(Field::Ipv4Src, &[192, 168, 7, 9]),
            Oxm::exact(Field::Ipv4Dst, &[172, 16, 0, 1]),
            Oxm::exact_u64(Field::UdpDst, 5353),
            Oxm::exact_u64(Field::UdpSrc, 7),
            Oxm::exact_u64(Field::IpDscp, 46),
            Oxm::exact_u64(Field::IpEcn, 1),
        ] {
            assert!(set_field(&mut d, &o), "{o:?}");
            assert!(sum_ok(&d[14..34]), "IPv4 header checksum after {o:?}");
        }
        let k = ofproto::flow::FlowKey::extract(&d, 1);
        assert_eq!(k.get(Field::Ipv4Src), Some(&[192, 168, 7, 9][..]));
        assert_eq!(
            (k.get_u64(Field::UdpDst), k.get_u64(Field::IpDscp), k.get_u64(Field::IpEcn)),
            (Some(5353), Some(46), Some(1))
        );
        // The UDP checksum over the pseudo-header still verifies.
        let udp = &d[34..];
        let len = u16::from_be_bytes([udp[4], udp[5]]);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&d[26..34]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&len.to_be_bytes());
        pseudo.extend_from_slice(&udp[..usize::from(len)]);
        assert!(sum_ok(&pseudo), "UDP checksum after the rewrites");
        assert_eq!(dec_nw_ttl(&mut d), Ok(true));
        assert!(set_nw_ttl(&mut d, 1) && sum_ok(&d[14..34]));
        assert_eq!(dec_nw_ttl(&mut d), Err(TtlExpired), "TTL 1 expires");
        assert!(!set_field(&mut d, &Oxm::exact_u64(Field::TcpDst, 80)), "no TCP header to rewrite");
        remark_dscp(&mut d, 1);
        assert!(sum_ok(&d[14..34]));
    }

    #[test]
    fn mpls_push_set_copy_pop_round_trip() {
        let orig = udp4();
        // push_mpls: the caller prepends 4 bytes.
        let mut d = vec![0u8; 4];
        d.extend_from_slice(&orig);
        assert!(push_mpls_after_prepend(&mut d, 0x8847));
        assert_eq!(&d[12..14], &[0x88, 0x47]);
        let k = ofproto::flow::FlowKey::extract(&d, 1);
        assert_eq!((k.get_u64(Field::MplsLabel), k.get_u64(Field::MplsBos)), (Some(0), Some(1)));
        assert_eq!(d[17], 64, "TTL copied from IPv4");
        assert!(set_field(&mut d, &Oxm::exact_u64(Field::MplsLabel, 1234)));
        assert!(set_field(&mut d, &Oxm::exact_u64(Field::MplsTc, 5)));
        let k = ofproto::flow::FlowKey::extract(&d, 1);
        assert_eq!((k.get_u64(Field::MplsLabel), k.get_u64(Field::MplsTc)), (Some(1234), Some(5)));
        assert_eq!(dec_mpls_ttl(&mut d), Ok(true));
        assert_eq!(d[17], 63);
        assert!(copy_ttl_in(&mut d), "MPLS TTL into the IPv4 header");
        assert_eq!(d[18 + 8], 63);
        assert!(sum_ok(&d[18..38]), "IPv4 checksum after copy_ttl_in");
        assert!(set_mpls_ttl(&mut d, 9) && copy_ttl_out(&mut d) && d[17] == 63, "copy_ttl_out takes IP's 63");
        // A second entry on top: not the bottom of the stack.
        let mut d2 = vec![0u8; 4];
        d2.extend_from_slice(&d);
        assert!(push_mpls_after_prepend(&mut d2, 0x8847));
        assert_eq!((d2[16] & 1, d2[17]), (0, 63), "BOS clear, TTL from the entry below");
        assert_eq!(&d2[14..16], &d2[18..20], "label and TC copied from the entry below");
        // pop twice: back to the original frame (but its new TTL).
        assert!(pop_mpls_before_adj(&mut d2, 0x8847));
        let mut d = d2[4..].to_vec();
        assert!(pop_mpls_before_adj(&mut d, 0x0800));
        let back = d[4..].to_vec();
        assert_eq!(&back[..22], &orig[..22]);
        assert_eq!(back[22], 63, "the TTL copied in stays");
        assert!(!pop_mpls_before_adj(&mut back.clone(), 0x0800), "no MPLS left");
    }

    #[test]
    fn sctp_ports_nd_fields_and_isid() {
        assert_eq!(!crc32c(!0, b"123456789"), 0xe306_9283, "RFC 3720's CRC32c check value");
        // An SCTP DATA packet (10.0.0.1:1111 -> 10.0.0.2:2222) whose
        // CRC32c was computed independently (RFC 3309 bitwise, in Python).
        // (os-ken's own packet library gets SCTP checksums wrong on
        // Python 3: it sums the characters of `str(bytearray)`.)
        let hex = "ffffffffffff00000000000008004500003c00000000ff84a73b0a0000010a000002045708ae0102030479175d6e0000001c00000000000000000000000068656c6c6f20776f726c6421";
        let mut d: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let orig = d.clone();
        assert!(set_field(&mut d, &Oxm::exact_u64(Field::SctpSrc, 1111)));
        assert_eq!(d, orig, "same port: the recomputed CRC32c is the packet's own");
        assert!(set_field(&mut d, &Oxm::exact_u64(Field::SctpDst, 3333)));
        let k = ofproto::flow::FlowKey::extract(&d, 1);
        assert_eq!(k.get_u64(Field::SctpDst), Some(3333));
        let mut c = d.clone();
        c[34 + 8..34 + 12].fill(0);
        assert_eq!(&d[42..46], &(!crc32c(!0, &c[34..])).to_le_bytes());
        assert_ne!(&d[42..46], &orig[42..46]);
        // Neighbour solicitation with a source link-layer option.
        let mut ns = ipv6_frame(58, 32);
        ns[54] = 135;
        ns[78..80].copy_from_slice(&[1, 1]);
        ns[80..86].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let sum = |d: &[u8]| {
            let mut p = d[22..54].to_vec(); // addresses
            p.extend_from_slice(&[0, 0, 0, 32, 0, 0, 0, 58]);
            p.extend_from_slice(&d[54..]);
            sum_ok(&p)
        };
        let s = wire::checksum::checksum(&{
            let mut p = ns[22..54].to_vec();
            p.extend_from_slice(&[0, 0, 0, 32, 0, 0, 0, 58]);
            p.extend_from_slice(&ns[54..]);
            p
        });
        ns[56..58].copy_from_slice(&s.to_be_bytes());
        assert!(sum(&ns));
        assert!(set_field(
            &mut ns,
            &Oxm::exact(Field::Ipv6NdTarget, &[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9])
        ));
        assert!(set_field(&mut ns, &Oxm::exact(Field::Ipv6NdSll, &[2, 0, 0, 0, 0, 0x42])));
        assert!(!set_field(&mut ns, &Oxm::exact(Field::Ipv6NdTll, &[2, 0, 0, 0, 0, 0x43])), "no TLL in a solicitation");
        let k = ofproto::flow::FlowKey::extract(&ns, 1);
        assert_eq!(k.get(Field::Ipv6NdSll), Some(&[2, 0, 0, 0, 0, 0x42][..]));
        assert_eq!(k.get(Field::Ipv6NdTarget).unwrap()[15], 9);
        assert!(sum(&ns), "ICMPv6 checksum follows");
        // I-SID.
        let mut pbb = vec![0u8; 18];
        pbb.extend_from_slice(&udp4());
        assert!(push_pbb_after_prepend(&mut pbb, PBB));
        assert!(set_field(&mut pbb, &Oxm::exact_u64(Field::PbbIsid, 0xabcdef)));
        assert_eq!(ofproto::flow::FlowKey::extract(&pbb, 1).get_u64(Field::PbbIsid), Some(0xabcdef));
        assert!(!set_field(&mut udp4(), &Oxm::exact_u64(Field::PbbIsid, 1)));
    }

    #[test]
    fn dscp_remark_raises_the_drop_precedence_of_ipv4_and_ipv6() {
        let mut d = udp4();
        assert!(set_field(&mut d, &Oxm::exact_u64(Field::IpDscp, 18)));
        remark_dscp(&mut d, 1);
        assert_eq!(d[15] >> 2, 20, "AF21 -> AF22");
        assert!(sum_ok(&d[14..34]));
        remark_dscp(&mut d, 2);
        assert_eq!(d[15] >> 2, 22, "capped at AF23");
        let mut v6 = ipv6_frame(6, 20);
        assert!(set_field(&mut v6, &Oxm::exact_u64(Field::IpDscp, 18)));
        assert!(set_field(&mut v6, &Oxm::exact_u64(Field::IpEcn, 1)));
        remark_dscp(&mut v6, 1);
        let k = ofproto::flow::FlowKey::extract(&v6, 1);
        assert_eq!((k.get_u64(Field::IpDscp), k.get_u64(Field::IpEcn)), (Some(20), Some(1)));
    }

    #[test]
    fn eth_type_and_ip_proto() {
        let mut d = udp4();
        assert!(set_field(&mut d, &Oxm::exact_u64(Field::IpProto, 6)));
        assert_eq!(d[23], 6);
        assert!(sum_ok(&d[14..34]), "IPv4 header checksum follows");
        // The UDP checksum now covers a pseudo-header with protocol 6.
        let mut p = d[26..34].to_vec();
        p.extend_from_slice(&[0, 6]);
        p.extend_from_slice(&d[38..40]);
        p.extend_from_slice(&d[34..]);
        assert!(sum_ok(&p), "L4 checksum with the new pseudo-header");
        assert!(set_field(&mut d, &Oxm::exact_u64(Field::EthType, 0x8848)));
        assert_eq!(&d[12..14], &[0x88, 0x48]);
    }

    #[test]
    fn pbb_push_twice_set_isid_and_pop_twice() {
        let orig = udp4();
        let push = |d: &[u8]| {
            let mut n = vec![0u8; 18];
            n.extend_from_slice(d);
            assert!(push_pbb_after_prepend(&mut n, PBB));
            n
        };
        let mut d = push(&orig);
        assert_eq!(&d[..12], &orig[..12], "B-DA/B-SA copied from the customer addresses");
        assert_eq!(&d[12..18], &[0x88, 0xe7, 0, 0, 0, 0], "I-TAG with I-SID 0");
        assert_eq!(&d[18..], &orig[..], "the whole customer frame behind it");
        let k = ofproto::flow::FlowKey::extract(&d, 1);
        assert_eq!((k.get_u64(Field::EthType), k.get_u64(Field::PbbIsid)), (Some(0x88e7), Some(0)));
        assert!(k.get(Field::Ipv4Src).is_none(), "the customer frame is not parsed");
        d[16] = 0x01; // I-SID 0x100, as set-field would write it
        let d2 = push(&d);
        assert_eq!(&d2[14..18], &[0, 0, 0x01, 0], "a second push copies the I-SID below");
        assert_eq!(ofproto::flow::FlowKey::extract(&d2, 1).get_u64(Field::PbbIsid), Some(0x100));
        let n = pbb_header_len(&d2).unwrap();
        assert_eq!(n, 18);
        let n2 = pbb_header_len(&d2[n..]).unwrap();
        assert_eq!(&d2[n + n2..], &orig[..], "two pops give the customer frame back");
        assert_eq!(pbb_header_len(&orig), None, "no PBB to pop");
        // A B-tagged backbone header: the B-tag goes with the I-TAG; a
        // C-tag's PCP is copied into the I-PCP on push.
        let mut btag = d[..12].to_vec();
        btag.extend_from_slice(&[0x88, 0xa8, 0, 10]);
        btag.extend_from_slice(&d[12..]);
        assert_eq!(pbb_header_len(&btag), Some(22));
        let mut ctag = orig[..12].to_vec();
        ctag.extend_from_slice(&[0x81, 0x00, 0x60, 100]);
        ctag.extend_from_slice(&orig[12..]);
        assert_eq!(push(&ctag)[14] >> 5, 3, "I-PCP from the VLAN PCP");
    }

    #[test]
    fn arp_icmp_and_ipv6_fields() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        assert!(set_field(&mut arp, &Oxm::exact_u64(Field::ArpOp, 2)));
        assert!(set_field(&mut arp, &Oxm::exact(Field::ArpTpa, &[10, 0, 0, 9])));
        assert!(set_field(&mut arp, &Oxm::exact(Field::ArpSha, &[2, 0, 0, 0, 0, 7])));
        let k = ofproto::flow::FlowKey::extract(&arp, 1);
        assert_eq!((k.get_u64(Field::ArpOp), k.get(Field::ArpTpa)), (Some(2), Some(&[10, 0, 0, 9][..])));
        assert_eq!(k.get(Field::ArpSha), Some(&[2, 0, 0, 0, 0, 7][..]));
        // IPv6 + UDP: addresses rewritten through the UDP checksum.
        let mut v6 = ipv6_frame(17, 8);
        v6[21] = 64;
        v6[22..38].copy_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v6[38..54].copy_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v6[54..62].copy_from_slice(&[0x04, 0x00, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
        let pseudo_ok = |d: &[u8]| {
            let mut p = Vec::new();
            p.extend_from_slice(&d[22..54]);
            p.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 17]);
            p.extend_from_slice(&d[54..62]);
            sum_ok(&p)
        };
        // Fill in a valid UDP checksum first.
        let mut p = Vec::new();
        p.extend_from_slice(&v6[22..54]);
        p.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 17]);
        p.extend_from_slice(&v6[54..62]);
        let mut s = 0u32;
        for c in p.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        v6[60..62].copy_from_slice(&(!u16::try_from(s).unwrap()).to_be_bytes());
        assert!(pseudo_ok(&v6));
        assert!(set_field(
            &mut v6,
            &Oxm::exact(Field::Ipv6Dst, &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9])
        ));
        assert!(pseudo_ok(&v6), "UDP checksum after the IPv6 rewrite");
        assert!(set_field(&mut v6, &Oxm::exact_u64(Field::Ipv6Flabel, 0x12345)));
        assert!(set_field(&mut v6, &Oxm::exact_u64(Field::IpDscp, 10)));
        let k = ofproto::flow::FlowKey::extract(&v6, 1);
        assert_eq!((k.get_u64(Field::Ipv6Flabel), k.get_u64(Field::IpDscp)), (Some(0x12345), Some(10)));
        assert_eq!(dec_nw_ttl(&mut v6), Ok(true));
        assert_eq!(v6[21], 63);
    }
}
