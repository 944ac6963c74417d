//! A tunnel's encapsulation on real mbufs, per capability set of its
//! uplink's NIC: what the NIC is asked to compute is left to it (flags and
//! lengths in the mbuf, the field zero or the pseudo-header sum), the rest
//! is computed in software. No NIC here computes anything: these are the
//! mbufs a driver would be handed.

mod common;

use pmd::pmd::VirtualPort;
use pmd::port::{tunnel_tx_flags, TX_OUTER_IPV4_CKSUM, TX_OUTER_UDP_CKSUM};
use pmd::{Batch, Eal, Mempool, Packet};
use std::net::Ipv4Addr;
use vswitch::datapath::tunnel::{new_counters, TunnelKind, TunnelPath, TunnelSpec, TunnelVport};

fn eal() -> &'static Eal {
    common::eal("vsoffload", 128)
}

/// `frames` through a tunnel whose uplink enabled `enabled`; what leaves.
fn encap(pool: &Mempool, kind: TunnelKind, csum: bool, enabled: u64) -> Vec<Packet> {
    let dst_port = if kind == TunnelKind::Geneve { 6081 } else { 4789 };
    let spec = TunnelSpec { kind, dst_port, csum, ..TunnelSpec::vxlan(Ipv4Addr::new(10, 0, 0, 2).into(), 42) };
    let path =
        TunnelPath::new(&spec, 1, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], Ipv4Addr::new(10, 0, 0, 1).into(), 1500)
            .with_offloads(&spec, enabled);
    let v = TunnelVport::new(5, spec, Some(path), new_counters());
    let mut b = Batch::new();
    let inner: Vec<u8> = (0..100u8).collect();
    for _ in 0..4 {
        let _ = b.push(Packet::from_bytes(pool, &inner).unwrap());
    }
    let mut out = Vec::new();
    v.transmit(0, &mut b, &mut |slot, p| {
        assert_eq!(slot, 1, "to the uplink");
        out.push(p);
    });
    assert_eq!(out.len(), 4);
    out
}

fn ip_checksum_ok(d: &[u8]) -> bool {
    wire::Ipv4Packet::new_checked(&d[14..]).unwrap().verify_checksum()
}

#[test]
fn offloads_follow_the_capabilities_and_software_does_the_rest() {
    let eal = eal();
    let pool = Mempool::new(eal, "offload", 1023, 32, pmd::mempool::DEFAULT_DATA_ROOM, None).unwrap();
    let f = tunnel_tx_flags();
    let outer = f.outer_ipv4 | f.outer_ip_cksum | f.outer_udp_cksum | f.vxlan | f.geneve | f.gre;

    // No offload: everything in software, no flag asks the NIC for anything.
    for p in encap(&pool, TunnelKind::Vxlan, true, 0) {
        assert!(ip_checksum_ok(p.data()));
        assert_eq!(p.ol_flags() & outer, 0);
        let d = p.data();
        let s = wire::checksum::sum(
            wire::checksum::pseudo_v4(
                wire::Ipv4Address([10, 0, 0, 1]),
                wire::Ipv4Address([10, 0, 0, 2]),
                17,
                u16::from_be_bytes([d[38], d[39]]),
            ),
            &d[34..],
        );
        assert_eq!(wire::checksum::fold(s), 0xffff, "software UDP checksum");
    }

    // Outer IPv4 checksum offloaded: the field is zero, the flags and the
    // lengths (outer 14 + 20; UDP, VXLAN and inner Ethernet 30) ask for it.
    for p in encap(&pool, TunnelKind::Vxlan, false, TX_OUTER_IPV4_CKSUM) {
        assert_eq!(&p.data()[24..26], &[0, 0]);
        assert_eq!(p.ol_flags() & outer, f.outer_ipv4 | f.outer_ip_cksum | f.vxlan);
        assert_eq!(p.tx_offload(), 30 | (20 << 40) | (14 << 49));
    }

    // Both, Geneve with csum: the UDP field holds the pseudo-header sum
    // the NIC finishes.
    for p in encap(&pool, TunnelKind::Geneve, true, TX_OUTER_IPV4_CKSUM | TX_OUTER_UDP_CKSUM) {
        let d = p.data();
        assert_eq!(p.ol_flags() & outer, f.outer_ipv4 | f.outer_ip_cksum | f.outer_udp_cksum | f.geneve);
        let ph = wire::checksum::fold(wire::checksum::pseudo_v4(
            wire::Ipv4Address([10, 0, 0, 1]),
            wire::Ipv4Address([10, 0, 0, 2]),
            17,
            u16::from_be_bytes([d[38], d[39]]),
        ));
        assert_eq!(u16::from_be_bytes([d[40], d[41]]), ph);
    }

    // Only the UDP checksum offloaded: the IP checksum stays in software.
    for p in encap(&pool, TunnelKind::Vxlan, true, TX_OUTER_UDP_CKSUM) {
        assert!(ip_checksum_ok(p.data()));
        assert_eq!(p.ol_flags() & (f.outer_ip_cksum | f.outer_udp_cksum), f.outer_udp_cksum);
    }

    // GRE: no UDP; the outer IPv4 checksum offloaded, GRE's in software.
    for p in encap(&pool, TunnelKind::Gre, true, TX_OUTER_IPV4_CKSUM | TX_OUTER_UDP_CKSUM) {
        let d = p.data();
        assert_eq!(p.ol_flags() & outer, f.outer_ipv4 | f.outer_ip_cksum | f.gre);
        assert_eq!(wire::checksum::checksum(&d[34..]), 0, "GRE checksum in software");
    }
}
