//! Rewrites against checksums recomputed from scratch, and round trips.

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
    let mut d: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
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
    assert!(set_field(&mut v6, &Oxm::exact(Field::Ipv6Dst, &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9])));
    assert!(pseudo_ok(&v6), "UDP checksum after the IPv6 rewrite");
    assert!(set_field(&mut v6, &Oxm::exact_u64(Field::Ipv6Flabel, 0x12345)));
    assert!(set_field(&mut v6, &Oxm::exact_u64(Field::IpDscp, 10)));
    let k = ofproto::flow::FlowKey::extract(&v6, 1);
    assert_eq!((k.get_u64(Field::Ipv6Flabel), k.get_u64(Field::IpDscp)), (Some(0x12345), Some(10)));
    assert_eq!(dec_nw_ttl(&mut v6), Ok(true));
    assert_eq!(v6[21], 63);
}
