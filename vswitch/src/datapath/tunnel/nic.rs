//! What a tunnel asks of its uplink's NIC for one frame: the outer
//! checksums (IPv4 header, UDP over IPv4 and IPv6), and for a guest's
//! frames the inner work the NIC can do instead of software: TCP
//! segmentation inside the tunnel (VXLAN, Geneve, GRE TSO) and inner TCP
//! and UDP checksums. The mbuf's flags and lengths are set as DPDK wants
//! them (`l2_len` counts the outer L4, tunnel and inner Ethernet headers;
//! for TSO the inner IPv4 checksum is zero and the TCP checksum holds the
//! pseudo-header's sum without the length).

use super::gso::l3_l4;
use super::{tunnel_flags, TunnelKind, TunnelPath, TxOffload};
use pmd::port::{seg_flags, tunnel_tx_flags, TX_GENEVE_TSO, TX_GRE_TSO, TX_IPV4_CKSUM, TX_L4_CKSUM, TX_VXLAN_TSO};
use pmd::Packet;
use wire::checksum::{fold, pseudo_v4, pseudo_v6};

/// The inner work asked of the NIC for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner {
    /// `RTE_MBUF_F_TX_*` flags of the inner headers.
    flags: u64,
    /// Inner Ethernet header bytes.
    l2: u64,
    /// Inner network header bytes.
    l3: u64,
    /// Inner transport header bytes.
    l4: u64,
    /// Segment size (0: no segmentation).
    pub tso: u64,
}

/// The inner headers of a frame (after `opts` bytes of Geneve options):
/// where its network and transport headers start, IPv6 or not, and its
/// protocol.
fn headers(p: &Packet, opts: usize) -> Option<(usize, bool, usize, u8)> {
    p.data().get(opts..).and_then(l3_l4)
}

/// Asks the NIC to cut a guest's large TCP segment into segments of
/// `mss` (at most what the tunnel holds) inside the tunnel, when the
/// uplink's NIC segments this kind of tunnel and computes what each
/// segment needs (the outer IPv4 checksum, the outer UDP checksum where
/// there is one, the inner IPv4 checksum); prepares the inner checksums as
/// DPDK wants them. None: software segments.
pub fn tso(path: &TunnelPath, p: &mut Packet, opts: usize, mss: usize, csum: bool) -> Option<Inner> {
    let tso_bit = match path.kind {
        TunnelKind::Vxlan => TX_VXLAN_TSO,
        TunnelKind::Geneve => TX_GENEVE_TSO,
        TunnelKind::Gre => TX_GRE_TSO,
    };
    let o = path.offload?;
    let udp_needed = (csum || path.v6) && path.kind != TunnelKind::Gre;
    if path.nic & tso_bit == 0 || (!path.v6 && !o.outer_ip) || (udp_needed && !o.outer_udp) {
        return None;
    }
    let (l3, v6, l4, proto) = headers(p, opts)?;
    if proto != 6 || (!v6 && path.nic & TX_IPV4_CKSUM == 0) {
        return None;
    }
    let d = p.data_mut().get_mut(opts..)?;
    let thl = usize::from(*d.get(l4 + 12)? >> 4) * 4;
    if d.len() < l4 + thl {
        return None;
    }
    let ph = if v6 {
        pseudo_v6(
            &wire::Ipv6Address::from_bytes(&d[l3 + 8..l3 + 24]),
            &wire::Ipv6Address::from_bytes(&d[l3 + 24..l3 + 40]),
            6,
            0,
        )
    } else {
        d[l3 + 10..l3 + 12].fill(0);
        pseudo_v4(
            wire::Ipv4Address([d[l3 + 12], d[l3 + 13], d[l3 + 14], d[l3 + 15]]),
            wire::Ipv4Address([d[l3 + 16], d[l3 + 17], d[l3 + 18], d[l3 + 19]]),
            6,
            0,
        )
    };
    d[l4 + 16..l4 + 18].copy_from_slice(&fold(ph).to_be_bytes());
    let f = seg_flags();
    let ip = if v6 { f.tx_ipv6 } else { f.tx_ipv4 | f.tx_ip_cksum };
    let room = (path.max_inner - opts).saturating_sub(l4 + thl);
    Some(Inner {
        flags: f.tx_tcp_seg | ip,
        l2: l3 as u64,
        l3: (l4 - l3) as u64,
        l4: thl as u64,
        tso: mss.min(room).max(1) as u64,
    })
}

/// Asks the NIC to complete a guest's partial TCP or UDP checksum inside
/// the tunnel, when the uplink's NIC computes inner ones (the partial sum
/// the guest left is what DPDK wants in the field). None: software
/// completes it.
pub fn l4_checksum(path: &TunnelPath, p: &Packet, opts: usize) -> Option<Inner> {
    if path.nic & TX_L4_CKSUM == 0 {
        return None;
    }
    let (l3, v6, l4, proto) = headers(p, opts)?;
    let f = seg_flags();
    let (l4_flag, l4_len) = match proto {
        6 => (f.tx_tcp_cksum, usize::from(*p.data().get(opts + l4 + 12)? >> 4) * 4),
        17 => (f.tx_udp_cksum, 8),
        _ => return None,
    };
    let ip = if v6 { f.tx_ipv6 } else { f.tx_ipv4 };
    Some(Inner { flags: l4_flag | ip, l2: l3 as u64, l3: (l4 - l3) as u64, l4: l4_len as u64, tso: 0 })
}

/// What the NIC is asked for one frame through `path` (`opts` bytes of
/// Geneve options, `inner` work): the path's outer checksums alone when
/// there is no inner work and no option (its lengths are an option-less
/// header's), else flags and lengths for this frame.
pub fn offload_for(path: &TunnelPath, opts: usize, inner: Option<&Inner>) -> Option<TxOffload> {
    let Some(i) = inner else { return path.offload.filter(|_| opts == 0) };
    let t = tunnel_tx_flags();
    let (outer_ip, outer_udp) = path.offload.map_or((false, false), |o| (o.outer_ip, o.outer_udp));
    let mut flags = tunnel_flags(path.kind, path.v6) | i.flags;
    if outer_ip {
        flags |= t.outer_ip_cksum;
    }
    if outer_udp {
        flags |= t.outer_udp_cksum;
    }
    // DPDK's "L2" of a tunnel: the outer L4 and tunnel headers (options
    // included) and the inner Ethernet header.
    let l2 = (path.len - path.l4 + opts) as u64 + i.l2;
    let lengths = pmd::packet::tx_offload_word(l2, i.l3, i.l4, i.tso, (path.l4 - 14) as u64, 14);
    Some(TxOffload { flags, lengths, outer_ip, outer_udp })
}

/// Sets `o` on an encapsulated frame: the flags and lengths, the outer
/// IPv4 checksum field zero when the NIC computes it, the outer UDP
/// checksum field the pseudo-header's sum when the NIC finishes it.
pub fn apply(p: &mut Packet, path: &TunnelPath, o: &TxOffload) {
    p.set_tx_offload(o.flags, o.lengths);
    let d = p.data_mut();
    if o.outer_ip {
        d[24..26].fill(0);
    }
    if o.outer_udp {
        let u = path.l4;
        let len = u16::from_be_bytes([d[u + 4], d[u + 5]]);
        let ph = if path.v6 {
            pseudo_v6(
                &wire::Ipv6Address::from_bytes(&d[22..38]),
                &wire::Ipv6Address::from_bytes(&d[38..54]),
                17,
                u32::from(len),
            )
        } else {
            pseudo_v4(
                wire::Ipv4Address([d[26], d[27], d[28], d[29]]),
                wire::Ipv4Address([d[30], d[31], d[32], d[33]]),
                17,
                len,
            )
        };
        d[u + 6..u + 8].copy_from_slice(&fold(ph).to_be_bytes());
    }
}
