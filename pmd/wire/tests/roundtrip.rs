//! Property tests: for every header, emit then parse gives back the same
//! representation, and no input of arbitrary bytes makes a parser panic.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // test data is small and known

use proptest::prelude::*;
use wire::checksum::Caps;
use wire::geneve::GeneveOption;
use wire::*;

fn mac() -> impl Strategy<Value = EthernetAddress> {
    any::<[u8; 6]>().prop_map(EthernetAddress)
}
fn ip4() -> impl Strategy<Value = Ipv4Address> {
    any::<[u8; 4]>().prop_map(Ipv4Address)
}
fn ip6() -> impl Strategy<Value = Ipv6Address> {
    any::<[u8; 16]>().prop_map(Ipv6Address)
}

proptest! {
    #[test]
    fn ethernet(src in mac(), dst in mac(), et in any::<u16>()) {
        let r = EthernetRepr { src_addr: src, dst_addr: dst, ethertype: EtherType(et) };
        let mut b = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut EthernetFrame::new_unchecked(&mut b[..]));
        prop_assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn vlan(pcp in 0u8..8, dei in any::<bool>(), vid in 0u16..4095, et in any::<u16>()) {
        let r = VlanRepr { pcp, dei, vid, inner_ethertype: EtherType(et) };
        let mut b = [0xa5u8; 4];
        r.emit(&mut VlanTag::new_unchecked(&mut b[..]));
        prop_assert_eq!(VlanRepr::parse(&VlanTag::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn arp(op in 1u16..3, sha in mac(), spa in ip4(), tha in mac(), tpa in ip4()) {
        let r = ArpRepr { operation: ArpOperation(op), sha, spa, tha, tpa };
        let mut b = [0xa5u8; 28];
        r.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn ipv4(src in ip4(), dst in ip4(), proto in any::<u8>(), plen in 0usize..64, ttl in any::<u8>(),
            dscp in 0u8..64, ecn in 0u8..4, ident in any::<u16>(), df in any::<bool>(), mf in any::<bool>(),
            frag in 0u16..8192, optw in 0usize..11) {
        let r = Ipv4Repr { src_addr: src, dst_addr: dst, protocol: IpProtocol(proto), payload_len: plen, ttl, dscp, ecn,
            ident, dont_frag: df, more_frags: mf, frag_offset: frag << 3, options: vec![1u8; optw * 4] };
        let mut b = vec![0xa5u8; r.buffer_len() + plen];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut b[..]), &Caps::check_all());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&p, &Caps::check_all()).unwrap(), r);
    }

    #[test]
    fn ipv6(src in ip6(), dst in ip6(), nh in prop::sample::select(vec![6u8, 17, 58, 59]), plen in 0usize..64,
            hl in any::<u8>(), tc in any::<u8>(), fl in 0u32..(1 << 20)) {
        let r = Ipv6Repr { src_addr: src, dst_addr: dst, next_header: IpProtocol(nh), payload_len: plen, hop_limit: hl,
            traffic_class: tc, flow_label: fl };
        let mut b = vec![0xa5u8; 40 + plen];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
        prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn udp(sp in any::<u16>(), dp in any::<u16>(), payload in prop::collection::vec(any::<u8>(), 0..64),
           src in ip4(), dst in ip4()) {
        let r = UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() };
        let mut b = vec![0xa5u8; 8 + payload.len()];
        b[8..].copy_from_slice(&payload);
        let ph = r.pseudo_v4(src, dst);
        r.emit(&mut UdpPacket::new_unchecked(&mut b[..]), Some(ph));
        prop_assert_eq!(UdpRepr::parse(&UdpPacket::new_checked(&b[..]).unwrap(), Some(ph)).unwrap(), r);
    }

    #[test]
    fn tcp(sp in any::<u16>(), dp in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(), flags in 0u16..512,
           win in any::<u16>(), urg in any::<u16>(), optw in 0usize..11, payload in prop::collection::vec(any::<u8>(), 0..32)) {
        let r = TcpRepr { src_port: sp, dst_port: dp, seq_number: seq, ack_number: ack, flags, window_len: win,
            urgent_at: urg, options: vec![1u8; optw * 4] };
        let mut b = vec![0xa5u8; r.buffer_len() + payload.len()];
        let hl = r.buffer_len();
        b[hl..].copy_from_slice(&payload);
        let ph = wire::checksum::pseudo_v4(Ipv4Address([1, 2, 3, 4]), Ipv4Address([4, 3, 2, 1]), 6, b.len() as u16);
        r.emit(&mut TcpPacket::new_unchecked(&mut b[..]), Some(ph));
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert_eq!(TcpRepr::parse(&p, Some(ph)).unwrap(), r);
    }

    #[test]
    fn icmpv4(t in any::<u8>(), c in any::<u8>(), rest in any::<u32>(), data in prop::collection::vec(any::<u8>(), 0..32)) {
        let r = Icmpv4Repr { msg_type: t, msg_code: c, rest, data };
        let mut b = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut b[..]));
        prop_assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&b[..]).unwrap(), true).unwrap(), r);
    }

    #[test]
    fn ndisc(target in ip6(), ll in prop::option::of(mac()), flags in prop::sample::select(vec![0u8, 0x20, 0x40, 0x60, 0xe0]),
             src in ip6(), dst in ip6(), which in 0u8..4, hl in any::<u8>(), life in any::<u16>()) {
        let r = match which {
            0 => NdiscRepr::NeighborSolicit { target, lladdr: ll },
            1 => NdiscRepr::NeighborAdvert { flags, target, lladdr: ll },
            2 => NdiscRepr::RouterSolicit { lladdr: ll },
            _ => NdiscRepr::RouterAdvert { hop_limit: hl, router_lifetime: life, lladdr: ll },
        };
        let mut b = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut Icmpv6Packet::new_unchecked(&mut b[..]), &src, &dst);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        prop_assert!(p.verify_checksum(&src, &dst));
        prop_assert_eq!(NdiscRepr::parse(&p).unwrap(), r);
    }

    #[test]
    fn vxlan(vni in 0u32..(1 << 24)) {
        let r = VxlanRepr { vni };
        let mut b = [0xa5u8; 8];
        r.emit(&mut VxlanPacket::new_unchecked(&mut b[..]));
        prop_assert_eq!(VxlanRepr::parse(&VxlanPacket::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn gre(proto in any::<u16>(), csum in any::<bool>(), key in prop::option::of(any::<u32>()), seq in prop::option::of(any::<u32>()),
           payload in prop::collection::vec(any::<u8>(), 0..32)) {
        let r = GreRepr { protocol: EtherType(proto), checksum: csum, key, seq };
        let hl = r.buffer_len();
        let mut b = vec![0xa5u8; hl + payload.len()];
        b[hl..].copy_from_slice(&payload);
        r.emit(&mut GrePacket::new_unchecked(&mut b[..]));
        prop_assert_eq!(GreRepr::parse(&GrePacket::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn geneve(oam in any::<bool>(), crit in any::<bool>(), proto in any::<u16>(), vni in 0u32..(1 << 24),
              opts in prop::collection::vec((any::<u16>(), any::<u8>(), prop::collection::vec(any::<u8>(), 0..4)), 0..4)) {
        let options: Vec<GeneveOption> = opts.into_iter()
            .map(|(class, kind, words)| GeneveOption { class, kind, data: words.iter().flat_map(|w| [*w; 4]).collect() })
            .collect();
        let r = GeneveRepr { oam, critical: crit, protocol: EtherType(proto), vni, options };
        let mut b = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut GenevePacket::new_unchecked(&mut b[..]));
        prop_assert_eq!(GeneveRepr::parse(&GenevePacket::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    /// Arbitrary bytes never make the frame parser panic.
    #[test]
    fn parse_frame_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_frame(&bytes);
    }

    /// Valid headers followed by arbitrary bytes: the deeper parsers are
    /// reached and must not panic either.
    #[test]
    fn parse_frame_deep_never_panics(et in prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x8100, 0x88a8]),
                                     proto in prop::sample::select(vec![6u8, 17, 1, 58, 47, 0, 43, 44, 60]),
                                     tail in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&et.to_be_bytes());
        if et == 0x0800 {
            let total = (20 + tail.len()) as u16;
            f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, proto, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
            let c = wire::checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        } else if et == 0x86dd {
            let plen = tail.len() as u16;
            f.extend_from_slice(&[0x60, 0, 0, 0, (plen >> 8) as u8, plen as u8, proto, 64]);
            f.extend_from_slice(&[0u8; 32]);
        }
        f.extend_from_slice(&tail);
        let _ = parse_frame(&f);
    }
}
