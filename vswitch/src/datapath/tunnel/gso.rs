//! What a tunnel does in software for a virtio guest that left work to
//! the switch (vhost-user with `tso=1`): a large TCP segment (a GSO
//! request: `tso_segsz` set) is cut into segments that fit the tunnel,
//! and a partial TCP or UDP checksum (`RTE_MBUF_F_RX_L4_CKSUM_NONE`) is
//! completed, before encapsulation.
//!
//! DPDK's GSO library segments only VXLAN and GRE (not Geneve), IPv4 inner
//! headers, and leaves checksums to the caller, so segmentation is done
//! here: each segment a new contiguous mbuf (headers copied, payload read
//! across the guest's chain), which the encapsulation then treats as any
//! frame.

use pmd::{Mempool, Packet};
use wire::checksum::{fold, pseudo_v4, pseudo_v6, sum};
use wire::{Ipv4Address, Ipv6Address};

/// The longest headers segmentation copies (Ethernet with a VLAN tag,
/// IPv6 without extension headers or IPv4 with options, TCP with options).
const MAX_HEADERS: usize = 18 + 60 + 60;

/// Where an Ethernet frame's (untagged or one 802.1Q tag) IPv4 or IPv6
/// header and transport header start, and its protocol.
pub(super) fn l3_l4(h: &[u8]) -> Option<(usize, bool, usize, u8)> {
    let mut l3 = 14;
    let mut et = u16::from_be_bytes([*h.get(12)?, *h.get(13)?]);
    if et == 0x8100 {
        et = u16::from_be_bytes([*h.get(16)?, *h.get(17)?]);
        l3 = 18;
    }
    match et {
        0x0800 => {
            let ihl = usize::from(h.get(l3)? & 0x0f) * 4;
            // Fragments are never segments.
            let frag = u16::from_be_bytes([*h.get(l3 + 6)?, *h.get(l3 + 7)?]) & 0x3fff;
            (ihl >= 20 && frag == 0).then_some((l3, false, l3 + ihl, *h.get(l3 + 9)?))
        }
        0x86dd => Some((l3, true, l3 + 40, *h.get(l3 + 6)?)),
        _ => None,
    }
}

/// The transport checksum of `l4` (header and payload, its checksum field
/// zero or not: `skip` says where it is, left out) for the frame's
/// addresses.
fn l4_sum(h: &[u8], l3: usize, v6: bool, proto: u8, l4: &[u8], skip: usize) -> u16 {
    let len = l4.len();
    let pseudo = if v6 {
        pseudo_v6(
            &Ipv6Address::from_bytes(&h[l3 + 8..l3 + 24]),
            &Ipv6Address::from_bytes(&h[l3 + 24..l3 + 40]),
            proto,
            u32::try_from(len).unwrap_or(0),
        )
    } else {
        pseudo_v4(
            Ipv4Address([h[l3 + 12], h[l3 + 13], h[l3 + 14], h[l3 + 15]]),
            Ipv4Address([h[l3 + 16], h[l3 + 17], h[l3 + 18], h[l3 + 19]]),
            proto,
            u16::try_from(len).unwrap_or(0),
        )
    };
    let s = sum(sum(pseudo, &l4[..skip]), &l4[skip + 2..]);
    match !fold(s) {
        // UDP sends an all-ones checksum for a computed zero.
        0 if proto == 17 => 0xffff,
        c => c,
    }
}

/// Completes the partial TCP or UDP checksum of a contiguous frame (a
/// guest's pseudo-header sum); false when it is neither over IPv4 or IPv6.
pub fn complete_l4_checksum(d: &mut [u8]) -> bool {
    let Some((l3, v6, l4, proto)) = l3_l4(d) else { return false };
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    let end = if v6 {
        l3 + 40 + usize::from(u16::from_be_bytes([d[l3 + 4], d[l3 + 5]]))
    } else {
        l3 + usize::from(u16::from_be_bytes([d[l3 + 2], d[l3 + 3]]))
    };
    if end > d.len() || l4 + at + 2 > end {
        return false;
    }
    let c = l4_sum(d, l3, v6, proto, &d[l4..end], at);
    d[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Cuts a large TCP segment (any chain of mbufs) into segments of at
/// most `mss` payload bytes and `max` bytes in all, new contiguous mbufs
/// of `pool`, to `out`: headers copied; IPv4 total length, ID (the
/// first's plus the segment's number) and header checksum, or IPv6
/// payload length; the sequence number advanced; FIN and PSH on the last
/// only, CWR on the first only; the TCP checksum computed. None when the
/// frame is not TCP over IPv4 or IPv6 or an mbuf ran out (what was sent
/// stays sent); else the segments sent.
pub fn segment(p: &Packet, mss: usize, max: usize, pool: &Mempool, out: &mut dyn FnMut(Packet)) -> Option<usize> {
    let mut h = [0u8; MAX_HEADERS];
    let hn = p.len().min(MAX_HEADERS);
    if !p.read_at(0, &mut h[..hn]) {
        return None;
    }
    let (l3, v6, l4, proto) = l3_l4(&h[..hn])?;
    if proto != 6 || l4 + 20 > hn {
        return None;
    }
    let hdr = l4 + usize::from(h[l4 + 12] >> 4) * 4;
    if hdr > hn || hdr >= max {
        return None;
    }
    let mss = mss.min(max - hdr);
    let total = p.len() - hdr;
    let seq = u32::from_be_bytes([h[l4 + 4], h[l4 + 5], h[l4 + 6], h[l4 + 7]]);
    let id = u16::from_be_bytes([h[l3 + 4], h[l3 + 5]]);
    let flags = h[l4 + 13];
    let mut n = 0;
    let mut at = 0;
    while at < total {
        let len = mss.min(total - at);
        let mut s = Packet::alloc(pool)?;
        let d = s.append(hdr + len)?;
        d[..hdr].copy_from_slice(&h[..hdr]);
        if !p.read_at(hdr + at, &mut d[hdr..]) {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)] // sequence numbers wrap at 32 bits
        d[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add(at as u32).to_be_bytes());
        let last = at + len == total;
        // FIN 0x01 and PSH 0x08 on the last segment, CWR 0x80 on the first.
        d[l4 + 13] = flags & if last { 0xff } else { !0x09 } & if n == 0 { 0xff } else { !0x80 };
        let l3_len = u16::try_from(hdr + len - l3).ok()?;
        if v6 {
            d[l3 + 4..l3 + 6].copy_from_slice(&(l3_len - 40).to_be_bytes());
        } else {
            d[l3 + 2..l3 + 4].copy_from_slice(&l3_len.to_be_bytes());
            #[allow(clippy::cast_possible_truncation)] // the IPv4 ID wraps at 16 bits
            d[l3 + 4..l3 + 6].copy_from_slice(&id.wrapping_add(n as u16).to_be_bytes());
            d[l3 + 10..l3 + 12].fill(0);
            let c = !fold(sum(0, &d[l3..l4]));
            d[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        let c = l4_sum(d, l3, v6, 6, &d[l4..], 16);
        d[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        s.meta_mut().clone_from(p.meta());
        out(s);
        n += 1;
        at += len;
    }
    Some(n)
}
