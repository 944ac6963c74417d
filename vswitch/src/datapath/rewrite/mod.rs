//! Header rewrites on frame bytes for OpenFlow actions: set-field of every
//! field the fast path rewrites, IP and MPLS TTLs, TTL copies, MPLS label
//! stack push and pop, DSCP remark. Checksums are updated incrementally
//! (RFC 1624), never recomputed. Pure functions over `&mut [u8]`, so they
//! are tested without DPDK; the fast path calls them on mbuf data.

use ofproto::ofp::{Field, Oxm};

mod headers;
#[cfg(test)]
mod tests;

pub use headers::{
    copy_ttl_in, copy_ttl_out, dec_mpls_ttl, dec_nw_ttl, pbb_header_len, pop_mpls_before_adj, push_mpls_after_prepend,
    push_pbb_after_prepend, remark_dscp, set_mpls_ttl, set_nw_ttl, TtlExpired, PBB,
};

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
