//! A guest's large TCP segments (vhost-user with `tso=1`: `tso_segsz`
//! and `RTE_MBUF_F_RX_LRO`, the TCP checksum a partial one) through a
//! tunnel, on real mbufs: cut into segments that fit the tunnel's MTU,
//! every header right, every checksum valid, the payload in order; a
//! small frame's partial checksum completed.

mod common;

use pmd::pmd::VirtualPort;
use pmd::port::seg_flags;
use pmd::{Batch, Eal, Mempool, Packet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch::datapath::tunnel::{new_counters, tunnel_stats, TunnelPath, TunnelSpec, TunnelVport};
use wire::checksum::{fold, pseudo_v4, pseudo_v6, sum};

fn eal() -> &'static Eal {
    common::eal("vsgso", 256)
}

/// A VXLAN vport to 10.0.0.2 through an uplink of MTU 1500.
fn vport(pool: &Arc<Mempool>) -> TunnelVport {
    vport_with(pool, 0, false)
}

/// [`vport`] through an uplink whose NIC enabled `enabled`
/// (`pmd::port::TX_*`), over IPv6 (fd00::1 to fd00::2) when `v6`.
fn vport_with(pool: &Arc<Mempool>, enabled: u64, v6: bool) -> TunnelVport {
    let (local, remote): (std::net::IpAddr, std::net::IpAddr) = match v6 {
        true => ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()),
        false => (Ipv4Addr::new(10, 0, 0, 1).into(), Ipv4Addr::new(10, 0, 0, 2).into()),
    };
    let spec = TunnelSpec::vxlan(remote, 42);
    let path =
        TunnelPath::new(&spec, 1, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], local, 1500).with_offloads(&spec, enabled);
    TunnelVport { pool: Some(pool.clone()), ..TunnelVport::new(5, spec, Some(path), new_counters()) }
}

/// A TCP frame over IPv4 or IPv6 with `payload` bytes (byte i = i % 251),
/// sequence number 1000, flags PSH|ACK|FIN, the checksum a partial one
/// (the pseudo-header's sum only, as a guest leaves it).
fn tcp_frame(v6: bool, payload: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xbb, 2, 0, 0, 0, 0, 0xaa];
    let l3 = if v6 { 40 } else { 20 };
    let l4_len = 20 + payload;
    if v6 {
        f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend(u16::try_from(l4_len).unwrap().to_be_bytes());
        f.extend([6, 64]);
        f.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        f.extend([0x08, 0x00, 0x45, 0]);
        f.extend(u16::try_from(l3 + l4_len).unwrap().to_be_bytes());
        f.extend([0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 99, 0, 1, 10, 99, 0, 2]);
        let c = !fold(sum(0, &f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    f.extend([0x30, 0x39, 0x13, 0x89]);
    f.extend(1000u32.to_be_bytes());
    f.extend([0, 0, 0, 1, 0x50, 0x19, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..payload).map(byte));
    let partial = fold(pseudo(&f, v6, u32::try_from(l4_len).unwrap()));
    f[14 + l3 + 16..14 + l3 + 18].copy_from_slice(&partial.to_be_bytes());
    f
}

/// Payload byte `i`.
fn byte(i: usize) -> u8 {
    u8::try_from(i % 251).unwrap()
}

fn pseudo(f: &[u8], v6: bool, len: u32) -> u32 {
    if v6 {
        pseudo_v6(&wire::Ipv6Address::from_bytes(&f[22..38]), &wire::Ipv6Address::from_bytes(&f[38..54]), 6, len)
    } else {
        pseudo_v4(
            wire::Ipv4Address([f[26], f[27], f[28], f[29]]),
            wire::Ipv4Address([f[30], f[31], f[32], f[33]]),
            6,
            u16::try_from(len).unwrap(),
        )
    }
}

/// `frame` through the vport as a guest's GSO request of `mss` (0: no
/// request, only the partial checksum); the inner frames that leave.
fn through(v: &TunnelVport, pool: &Mempool, frame: &[u8], mss: u64) -> Vec<Vec<u8>> {
    through_mbufs(v, pool, frame, mss).iter().map(|p| p.data()[50..].to_vec()).collect()
}

/// [`through`], the encapsulated mbufs themselves.
fn through_mbufs(v: &TunnelVport, pool: &Mempool, frame: &[u8], mss: u64) -> Vec<Packet> {
    let mut p = Packet::from_bytes(pool, frame).unwrap();
    let f = seg_flags();
    let lro = if mss > 0 { f.rx_lro } else { 0 };
    p.set_tx_offload(lro | f.rx_l4_cksum_none, pmd::packet::tx_offload_word(14, 20, 20, mss, 0, 0));
    let mut b = Batch::new();
    let _ = b.push(p);
    let mut out = Vec::new();
    v.transmit(0, &mut b, &mut |slot, p| {
        assert_eq!(slot, 1, "to the uplink");
        assert_eq!(p.ol_flags() & f.rx_lro, 0, "what it came with is not passed on");
        if p.ol_flags() & f.tx_tcp_seg == 0 {
            assert!(p.len() <= 1514, "{} bytes on an MTU of 1500", p.len());
        }
        out.push(p);
    });
    out
}

/// Checks the segments of a `payload`-byte frame: sizes, sequence numbers,
/// flags, lengths, checksums, and the payload in order.
fn check(segs: &[Vec<u8>], v6: bool, payload: usize) {
    let l4 = 14 + if v6 { 40 } else { 20 };
    let mut got = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let seq = u32::from_be_bytes([s[l4 + 4], s[l4 + 5], s[l4 + 6], s[l4 + 7]]);
        assert_eq!(seq, 1000 + u32::try_from(got.len()).unwrap(), "segment {i}'s sequence number");
        let flags = s[l4 + 13];
        assert_eq!(flags & 0x09 != 0, last, "PSH and FIN on the last segment only: {flags:#x}");
        assert_eq!(flags & 0x10, 0x10, "ACK on all");
        let l4_len = s.len() - l4;
        if v6 {
            assert_eq!(usize::from(u16::from_be_bytes([s[18], s[19]])), l4_len);
        } else {
            assert_eq!(usize::from(u16::from_be_bytes([s[16], s[17]])), s.len() - 14);
            assert_eq!(u16::from_be_bytes([s[18], s[19]]), 0x1234 + u16::try_from(i).unwrap(), "IPv4 ID");
            assert!(wire::Ipv4Packet::new_checked(&s[14..]).unwrap().verify_checksum(), "segment {i}'s IPv4 checksum");
        }
        let c = fold(sum(pseudo(s, v6, u32::try_from(l4_len).unwrap()), &s[l4..]));
        assert_eq!(c, 0xffff, "segment {i}'s TCP checksum");
        got.extend_from_slice(&s[l4 + 20..]);
    }
    let want: Vec<u8> = (0..payload).map(byte).collect();
    assert_eq!(got, want, "the payload, in order");
}

#[test]
fn large_segments_are_cut_to_fit_the_tunnel_with_every_header_right() {
    let eal = eal();
    let pool = Arc::new(Mempool::new(eal, "gso", 2047, 32, 10_240, None).unwrap());
    let v = vport(&pool);
    // 9,000 bytes with an MSS of 1,400 (the tunnel's 1,464-byte inner
    // frames would hold 1,410): 7 segments.
    let segs = through(&v, &pool, &tcp_frame(false, 9000), 1400);
    assert_eq!(segs.len(), 7);
    assert!(
        segs[..6].iter().all(|s| s.len() == 14 + 20 + 20 + 1400),
        "{:?}",
        segs.iter().map(Vec::len).collect::<Vec<_>>()
    );
    check(&segs, false, 9000);
    // An MSS larger than the tunnel holds is cut down to fit: 1,410.
    let segs = through(&v, &pool, &tcp_frame(false, 3000), 8960);
    assert_eq!(segs.len(), 3);
    assert_eq!(segs[0].len(), 1464);
    check(&segs, false, 3000);
    // IPv6 inside.
    let segs = through(&v, &pool, &tcp_frame(true, 5000), 1440);
    assert_eq!(segs.len(), 4, "1,390 bytes a segment under an IPv6 header");
    check(&segs, true, 5000);
    assert_eq!(tunnel_stats(&v.counters).gso_segments, 14);
    // A frame that fits: sent whole, its partial checksum completed.
    let segs = through(&v, &pool, &tcp_frame(false, 600), 0);
    assert_eq!(segs.len(), 1);
    check(&segs, false, 600);
    // Too big without a GSO request: dropped, never cut.
    let before = tunnel_stats(&v.counters).drop_too_big;
    assert!(through(&v, &pool, &tcp_frame(false, 3000), 0).is_empty());
    assert_eq!(tunnel_stats(&v.counters).drop_too_big, before + 1);
}

#[test]
fn a_nic_that_segments_inside_the_tunnel_is_asked_to() {
    use pmd::port::{
        tunnel_tx_flags, TX_IPV4_CKSUM, TX_L4_CKSUM, TX_OUTER_IPV4_CKSUM, TX_OUTER_UDP_CKSUM, TX_VXLAN_TSO,
    };
    let eal = eal();
    let pool = Arc::new(Mempool::new(eal, "gsonic", 2047, 32, 10_240, None).unwrap());
    let (f, t) = (seg_flags(), tunnel_tx_flags());
    // VXLAN TSO, the inner IPv4 and the outer IPv4 checksums: one mbuf
    // leaves, the NIC asked to cut it in 1,400-byte segments.
    let v = vport_with(&pool, TX_OUTER_IPV4_CKSUM | TX_VXLAN_TSO | TX_IPV4_CKSUM, false);
    let out = through_mbufs(&v, &pool, &tcp_frame(false, 9000), 1400);
    assert_eq!(out.len(), 1);
    let p = &out[0];
    assert_eq!(p.len(), 50 + 54 + 9000);
    let want = f.tx_tcp_seg | f.tx_ipv4 | f.tx_ip_cksum | t.outer_ipv4 | t.outer_ip_cksum | t.vxlan;
    assert_eq!(p.ol_flags(), want);
    assert_eq!(p.tx_offload(), pmd::packet::tx_offload_word(8 + 8 + 14, 20, 20, 1400, 20, 14));
    let d = p.data();
    assert_eq!(&d[24..26], &[0, 0], "the outer IPv4 checksum is the NIC's");
    assert_eq!(&d[50 + 24..50 + 26], &[0, 0], "so is the inner one");
    let ph = fold(pseudo_v4(wire::Ipv4Address([10, 99, 0, 1]), wire::Ipv4Address([10, 99, 0, 2]), 6, 0));
    assert_eq!(u16::from_be_bytes([d[50 + 50], d[50 + 51]]), ph, "TCP: the pseudo-header's sum without the length");
    assert_eq!(tunnel_stats(&v.counters).gso_segments, 0, "nothing cut in software");
    // Without the inner IPv4 checksum the NIC cannot: software cuts.
    let v = vport_with(&pool, TX_OUTER_IPV4_CKSUM | TX_VXLAN_TSO, false);
    let segs = through(&v, &pool, &tcp_frame(false, 9000), 1400);
    assert_eq!(segs.len(), 7);
    check(&segs, false, 9000);
    // A partial checksum the NIC completes inside the tunnel: the data
    // keeps the guest's partial sum, the flags and lengths ask for it.
    let v = vport_with(&pool, TX_L4_CKSUM, false);
    let frame = tcp_frame(false, 600);
    let out = through_mbufs(&v, &pool, &frame, 0);
    assert_eq!(out[0].ol_flags(), f.tx_tcp_cksum | f.tx_ipv4 | t.outer_ipv4 | t.vxlan);
    assert_eq!(out[0].tx_offload(), pmd::packet::tx_offload_word(30, 20, 20, 0, 20, 14));
    assert_eq!(&out[0].data()[50..], &frame[..], "the frame as the guest sent it");
    // Over IPv6 the outer UDP checksum is the NIC's: its field holds the
    // pseudo-header's sum.
    let v = vport_with(&pool, TX_OUTER_UDP_CKSUM, true);
    let out = through_mbufs(&v, &pool, &tcp_frame(false, 100), 0);
    let (p, d) = (&out[0], out[0].data());
    assert_eq!(p.ol_flags(), t.outer_ipv6 | t.outer_udp_cksum | t.vxlan);
    assert_eq!(p.tx_offload(), pmd::packet::tx_offload_word(30, 0, 0, 0, 40, 14));
    let ph = fold(pseudo_v6(
        &wire::Ipv6Address::from_bytes(&d[22..38]),
        &wire::Ipv6Address::from_bytes(&d[38..54]),
        17,
        u32::from(u16::from_be_bytes([d[58], d[59]])),
    ));
    assert_eq!(u16::from_be_bytes([d[60], d[61]]), ph);
}
