//! Builders for whole frames, used by the traffic generator and by tests:
//! every length and checksum is filled last, from the headers' emitters.

use crate::checksum::Caps;
use crate::{
    ethernet, ipv4, udp, vlan, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr, VlanRepr, VlanTag,
};

/// An Ethernet/[802.1Q]/IPv4/UDP frame to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp4Frame {
    /// Source MAC.
    pub src_mac: EthernetAddress,
    /// Destination MAC.
    pub dst_mac: EthernetAddress,
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Source IP.
    pub src_ip: Ipv4Address,
    /// Destination IP.
    pub dst_ip: Ipv4Address,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// IP TTL.
    pub ttl: u8,
}

impl Udp4Frame {
    /// Bytes before the UDP payload.
    pub fn header_len(&self) -> usize {
        ethernet::HEADER_LEN + if self.vlan.is_some() { 4 } else { 0 } + ipv4::HEADER_LEN + udp::HEADER_LEN
    }

    /// Writes the headers into `buf`, whose length is the frame length
    /// (without FCS); the UDP payload (after [`Udp4Frame::header_len`]) is
    /// the caller's and must be written before when `udp_checksum` is set.
    /// Returns the offset of the UDP payload.
    ///
    /// # Panics
    /// If `buf` is shorter than the headers.
    pub fn emit(&self, buf: &mut [u8], udp_checksum: bool) -> usize {
        let frame_len = buf.len();
        assert!(frame_len >= self.header_len());
        let ethertype = if self.vlan.is_some() { EtherType::VLAN } else { EtherType::IPV4 };
        EthernetRepr { src_addr: self.src_mac, dst_addr: self.dst_mac, ethertype }
            .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        let mut off = ethernet::HEADER_LEN;
        if let Some(vid) = self.vlan {
            VlanRepr { pcp: 0, dei: false, vid, inner_ethertype: EtherType::IPV4 }
                .emit(&mut VlanTag::new_unchecked(&mut buf[off..]));
            off += vlan::HEADER_LEN;
        }
        let ip_len = frame_len - off;
        let udp_payload = ip_len - ipv4::HEADER_LEN - udp::HEADER_LEN;
        let udp_repr = UdpRepr { src_port: self.src_port, dst_port: self.dst_port, payload_len: udp_payload };
        let l4 = off + ipv4::HEADER_LEN;
        let pseudo = udp_checksum.then(|| udp_repr.pseudo_v4(self.src_ip, self.dst_ip));
        udp_repr.emit(&mut UdpPacket::new_unchecked(&mut buf[l4..]), pseudo);
        Ipv4Repr {
            src_addr: self.src_ip,
            dst_addr: self.dst_ip,
            protocol: IpProtocol::UDP,
            payload_len: udp::HEADER_LEN + udp_payload,
            ttl: self.ttl,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: Vec::new(),
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[off..]), &Caps::check_all());
        l4 + udp::HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_frame_that_parses() {
        let f = Udp4Frame {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            vlan: Some(10),
            src_ip: Ipv4Address([10, 0, 0, 1]),
            dst_ip: Ipv4Address([10, 0, 0, 2]),
            src_port: 1000,
            dst_port: 2000,
            ttl: 64,
        };
        let mut buf = vec![0xa5u8; 64];
        let payload_at = f.emit(&mut buf, false);
        assert_eq!(payload_at, 46);
        assert_eq!(crate::parse_frame(&buf).unwrap(), 4);
        let ip = Ipv4Packet::new_checked(&buf[18..]).unwrap();
        assert_eq!(ip.total_len(), 46);
        assert!(ip.verify_checksum());
    }
}
