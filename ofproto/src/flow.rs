//! Flow keys: the OpenFlow fields of one packet, extracted in one pass over
//! its headers through `wire`'s checked views, and matching an OXM
//! [`Match`] against them.
//!
//! A field is *present* only when the packet has the header it lives in
//! (OpenFlow's prerequisites), so a match on `tcp_dst` never matches a UDP
//! packet. VLAN_VID is always present: OFPVID_NONE (0) for an untagged
//! frame, OFPVID_PRESENT | VID for a tagged one, as the spec encodes it.

use crate::ofp::oxm::{Field, Match, Oxm, N_FIELDS, VID_PRESENT};
use wire::{EtherType, IpProtocol};

/// The fields of one packet (and of its pipeline: in_port, metadata,
/// tunnel id).
#[derive(Clone)]
pub struct FlowKey {
    present: u64,
    values: [[u8; 16]; N_FIELDS],
}

/// Keys are equal when the same fields are present with the same values
/// (an absent field's old bytes, left by [`FlowKey::extract_into`] or
/// [`FlowKey::clear`], do not count).
impl PartialEq for FlowKey {
    fn eq(&self, other: &FlowKey) -> bool {
        self.present == other.present
            && (0..self.values.len()).all(|i| self.present & (1 << i) == 0 || self.values[i] == other.values[i])
    }
}

impl Eq for FlowKey {}

impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.present);
        for (i, v) in self.values.iter().enumerate() {
            if self.present & (1 << i) != 0 {
                state.write(v);
            }
        }
    }
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for &fl in Field::ALL {
            if let Some(v) = self.get(fl) {
                m.entry(&fl.name(), &format_args!("{v:02x?}"));
            }
        }
        m.finish()
    }
}

impl Default for FlowKey {
    fn default() -> FlowKey {
        FlowKey { present: 0, values: [[0; 16]; N_FIELDS] }
    }
}

impl FlowKey {
    /// The field's value, if the packet has it.
    #[inline]
    pub fn get(&self, f: Field) -> Option<&[u8]> {
        let i = f as usize;
        (self.present & (1 << i) != 0).then(|| &self.values[i][..f.width()])
    }
    /// The field's value as a number (fields of up to 8 bytes).
    pub fn get_u64(&self, f: Field) -> Option<u64> {
        self.get(f).map(|v| v.iter().take(8).fold(0u64, |a, b| (a << 8) | u64::from(*b)))
    }
    /// Sets a field (its width of `v`).
    #[inline]
    pub fn set(&mut self, f: Field, v: &[u8]) {
        let i = f as usize;
        self.values[i] = [0; 16];
        self.values[i][..f.width()].copy_from_slice(&v[..f.width()]);
        self.present |= 1 << i;
    }
    /// Sets a field from a number, big-endian in its width.
    pub fn set_u64(&mut self, f: Field, v: u64) {
        let b = v.to_be_bytes();
        let w = f.width().min(8);
        let mut full = [0u8; 16];
        full[..w].copy_from_slice(&b[8 - w..]);
        self.set(f, &full);
    }
    /// Which fields are present, one bit per field id.
    #[inline]
    pub fn present_bits(&self) -> u64 {
        self.present
    }
    /// Field `i`'s 16 value bytes as two native-endian words (zero past
    /// its width; meaningless when absent).
    #[inline]
    pub fn words(&self, i: usize) -> [u64; 2] {
        let v = &self.values[i];
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&v[..8]);
        hi.copy_from_slice(&v[8..]);
        [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
    }
    /// Sets field `i` (a field id) from its two words, as
    /// [`FlowKey::words`] gives them.
    pub fn set_words(&mut self, i: usize, w: [u64; 2]) {
        self.values[i][..8].copy_from_slice(&w[0].to_ne_bytes());
        self.values[i][8..].copy_from_slice(&w[1].to_ne_bytes());
        self.present |= 1 << i;
    }

    /// Removes a field (a header popped).
    pub fn clear(&mut self, f: Field) {
        self.present &= !(1 << (f as usize));
    }

    /// This (freshly extracted) key with the pipeline fields of `old`
    /// (in_port, metadata, the tunnel fields): after an action changed the
    /// frame's headers.
    pub fn with_pipeline_of(mut self, old: &FlowKey) -> FlowKey {
        for &f in Field::ALL
            .iter()
            .filter(|f| matches!(f, Field::InPort | Field::InPhyPort | Field::Metadata) || f.is_tunnel())
        {
            if let Some(v) = old.get(f) {
                self.set(f, v);
            }
        }
        self
    }

    /// Extracts the key of `frame` received on `in_port`; metadata and
    /// tunnel id start at 0. Headers cut short end the walk: the fields
    /// read so far stay.
    pub fn extract(frame: &[u8], in_port: u32) -> FlowKey {
        let mut k = FlowKey::default();
        k.extract_into(frame, in_port);
        k
    }

    /// As [`FlowKey::extract`], into this key (its old fields dropped
    /// without clearing its 640 bytes: the fast path reuses one key).
    pub fn extract_into(&mut self, frame: &[u8], in_port: u32) {
        self.present = 0;
        let k = self;
        k.set_u64(Field::InPort, u64::from(in_port));
        k.set_u64(Field::InPhyPort, u64::from(in_port));
        k.set_u64(Field::Metadata, 0);
        k.set_u64(Field::TunnelId, 0);
        k.set_u64(Field::VlanVid, 0);
        let Ok(eth) = wire::EthernetFrame::new_checked(frame) else { return };
        k.set(Field::EthDst, &eth.dst_addr().0);
        k.set(Field::EthSrc, &eth.src_addr().0);
        let mut et = eth.ethertype();
        let mut off = wire::ethernet::HEADER_LEN;
        let mut first_tag = true;
        while et == EtherType::VLAN || et == EtherType::QINQ {
            let Ok(tag) = wire::VlanTag::new_checked(&frame[off..]) else { return };
            if first_tag {
                k.set_u64(Field::VlanVid, u64::from(VID_PRESENT | tag.vid()));
                k.set_u64(Field::VlanPcp, u64::from(tag.pcp()));
                first_tag = false;
            }
            et = tag.inner_ethertype();
            off += wire::vlan::HEADER_LEN;
        }
        k.set_u64(Field::EthType, u64::from(et.0));
        let rest = &frame[off..];
        match et.0 {
            0x0806 => {
                if let Ok(a) = wire::ArpPacket::new_checked(rest) {
                    if a.htype() == 1 && a.ptype() == 0x0800 && a.hlen() == 6 && a.plen() == 4 {
                        k.set_u64(Field::ArpOp, u64::from(a.operation().0));
                        k.set(Field::ArpSpa, &a.spa().0);
                        k.set(Field::ArpTpa, &a.tpa().0);
                        k.set(Field::ArpSha, &a.sha().0);
                        k.set(Field::ArpTha, &a.tha().0);
                    }
                }
            }
            0x0800 => {
                let Ok(ip) = wire::Ipv4Packet::new_checked(rest) else { return };
                k.set_u64(Field::IpDscp, u64::from(ip.dscp()));
                k.set_u64(Field::IpEcn, u64::from(ip.ecn()));
                k.set_u64(Field::IpProto, u64::from(ip.protocol().0));
                k.set(Field::Ipv4Src, &ip.src_addr().0);
                k.set(Field::Ipv4Dst, &ip.dst_addr().0);
                if ip.frag_offset() == 0 {
                    let hl = ip.header_len();
                    let end = usize::from(ip.total_len()).min(rest.len());
                    if hl <= end {
                        k.l4(ip.protocol(), &rest[hl..end], false);
                    }
                }
            }
            0x86dd => {
                let Ok(ip) = wire::Ipv6Packet::new_checked(rest) else { return };
                k.set_u64(Field::IpDscp, u64::from(ip.traffic_class() >> 2));
                k.set_u64(Field::IpEcn, u64::from(ip.traffic_class() & 3));
                k.set(Field::Ipv6Src, &ip.src_addr().0);
                k.set(Field::Ipv6Dst, &ip.dst_addr().0);
                k.set_u64(Field::Ipv6Flabel, u64::from(ip.flow_label()));
                k.set_u64(
                    Field::Ipv6Exthdr,
                    u64::from(exthdr_flags(ip.next_header().0, &rest[wire::ipv6::HEADER_LEN..])),
                );
                if let Ok((proto, l4off)) = ip.upper_layer() {
                    k.set_u64(Field::IpProto, u64::from(proto.0));
                    let end = (wire::ipv6::HEADER_LEN + usize::from(ip.payload_len())).min(rest.len());
                    if l4off <= end {
                        k.l4(proto, &rest[l4off..end], true);
                    }
                }
            }
            0x8847 | 0x8848 if rest.len() >= 4 => {
                let lse = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                k.set_u64(Field::MplsLabel, u64::from(lse >> 12));
                k.set_u64(Field::MplsTc, u64::from((lse >> 9) & 7));
                k.set_u64(Field::MplsBos, u64::from((lse >> 8) & 1));
            }
            // 802.1ah I-TAG: the I-SID; the customer frame behind it is
            // not parsed (OpenFlow 1.3 matches the backbone header only).
            0x88e7 if rest.len() >= 4 => {
                k.set_u64(Field::PbbIsid, u64::from(u32::from_be_bytes([0, rest[1], rest[2], rest[3]])));
            }
            _ => {}
        }
    }

    fn l4(&mut self, proto: IpProtocol, l4: &[u8], v6: bool) {
        let ports = |k: &mut FlowKey, s: Field, d: Field| {
            if l4.len() >= 4 {
                k.set(s, &l4[0..2]);
                k.set(d, &l4[2..4]);
            }
        };
        match proto.0 {
            6 => ports(self, Field::TcpSrc, Field::TcpDst),
            17 => ports(self, Field::UdpSrc, Field::UdpDst),
            132 => ports(self, Field::SctpSrc, Field::SctpDst),
            1 if !v6 && l4.len() >= 2 => {
                self.set_u64(Field::Icmpv4Type, u64::from(l4[0]));
                self.set_u64(Field::Icmpv4Code, u64::from(l4[1]));
            }
            58 if v6 && l4.len() >= 2 => {
                self.set_u64(Field::Icmpv6Type, u64::from(l4[0]));
                self.set_u64(Field::Icmpv6Code, u64::from(l4[1]));
                // Neighbour solicitation / advertisement: target, then
                // options (type 1 source / 2 target link-layer address).
                if (l4[0] == 135 || l4[0] == 136) && l4.len() >= 24 {
                    self.set(Field::Ipv6NdTarget, &l4[8..24]);
                    let mut at = 24;
                    while at + 8 <= l4.len() {
                        let (t, n) = (l4[at], usize::from(l4[at + 1]) * 8);
                        if n == 0 || at + n > l4.len() {
                            break;
                        }
                        match (l4[0], t) {
                            (135, 1) => self.set(Field::Ipv6NdSll, &l4[at + 2..at + 8]),
                            (136, 2) => self.set(Field::Ipv6NdTll, &l4[at + 2..at + 8]),
                            _ => {}
                        }
                        at += n;
                    }
                    // Absent options match as all-zero addresses (as OVS does).
                    if l4[0] == 135 && self.get(Field::Ipv6NdSll).is_none() {
                        self.set(Field::Ipv6NdSll, &[0; 6]);
                    }
                    if l4[0] == 136 && self.get(Field::Ipv6NdTll).is_none() {
                        self.set(Field::Ipv6NdTll, &[0; 6]);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Oxm {
    /// Whether the key has this field with a value this entry accepts.
    #[inline]
    pub fn matches(&self, key: &FlowKey) -> bool {
        let Some(v) = key.get(self.field) else { return false };
        match self.mask() {
            None => v == self.value(),
            Some(m) => v.iter().zip(m).zip(self.value()).all(|((v, m), want)| v & m == *want),
        }
    }
}

impl Match {
    /// Whether `key` matches every field of this match.
    #[inline]
    pub fn matches(&self, key: &FlowKey) -> bool {
        self.fields.iter().all(|o| o.matches(key))
    }
}

/// OpenFlow's IPV6_EXTHDR pseudo-field (`ofp_ipv6exthdr_flags`): which
/// extension headers follow the IPv6 header (`first` is its next header,
/// `after` the bytes behind it), and whether one repeats unexpectedly
/// (UNREP) or they stray from RFC 8200's order (UNSEQ: hop-by-hop,
/// destination, routing, fragment, authentication, ESP, destination).
pub fn exthdr_flags(first: u8, after: &[u8]) -> u16 {
    const NONEXT: u16 = 1;
    const ESP: u16 = 1 << 1;
    const AUTH: u16 = 1 << 2;
    const DEST: u16 = 1 << 3;
    const FRAG: u16 = 1 << 4;
    const ROUTER: u16 = 1 << 5;
    const HOP: u16 = 1 << 6;
    const UNREP: u16 = 1 << 7;
    const UNSEQ: u16 = 1 << 8;
    let (mut flags, mut nh, mut at, mut last_rank, mut dests) = (0u16, first, 0usize, 0u8, 0u8);
    loop {
        let (bit, rank) = match nh {
            0 => (HOP, 1),
            60 => {
                dests += 1;
                (DEST, if flags & (ROUTER | FRAG | AUTH | ESP) != 0 || dests > 1 { 7 } else { 2 })
            }
            43 => (ROUTER, 3),
            44 => (FRAG, 4),
            51 => (AUTH, 5),
            50 => (ESP, 6),
            59 => return flags | NONEXT,
            _ => return flags,
        };
        let repeated = if bit == DEST { dests > 2 } else { flags & bit != 0 };
        if repeated || (bit == HOP && at != 0) {
            flags |= if repeated { UNREP } else { UNSEQ };
        }
        if rank < last_rank {
            flags |= UNSEQ;
        }
        last_rank = last_rank.max(rank);
        flags |= bit;
        // ESP hides what follows; the others say where the next one is.
        if bit == ESP || after.len() < at + 8 {
            return flags;
        }
        let len = match bit {
            FRAG => 8,
            AUTH => (usize::from(after[at + 1]) + 2) * 4,
            _ => (usize::from(after[at + 1]) + 1) * 8,
        };
        nh = after[at];
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::udp4 as udp;

    #[test]
    fn udp_fields_are_extracted_and_matched() {
        let k = FlowKey::extract(&udp(None), 3);
        assert_eq!(k.get_u64(Field::InPort), Some(3));
        assert_eq!(k.get_u64(Field::EthType), Some(0x0800));
        assert_eq!(k.get_u64(Field::VlanVid), Some(0), "untagged: OFPVID_NONE");
        assert_eq!(k.get(Field::Ipv4Dst), Some(&[10, 0, 0, 2][..]));
        assert_eq!((k.get_u64(Field::UdpSrc), k.get_u64(Field::UdpDst)), (Some(1000), Some(53)));
        assert_eq!(k.get(Field::TcpDst), None, "no TCP fields in a UDP packet");
        let m = Match::any()
            .with(Oxm::exact_u64(Field::EthType, 0x0800))
            .with(Oxm::masked(Field::Ipv4Dst, &[10, 0, 0, 0], &[255, 0, 0, 0]))
            .with(Oxm::exact_u64(Field::IpProto, 17))
            .with(Oxm::exact_u64(Field::UdpDst, 53));
        assert!(m.matches(&k));
        assert!(!m.clone().with(Oxm::exact_u64(Field::InPort, 4)).matches(&k));
        let tcp = Match::any().with(Oxm::exact_u64(Field::TcpDst, 53));
        assert!(!tcp.matches(&k), "a field the packet lacks never matches");
        assert!(Match::any().matches(&k));
    }

    #[test]
    fn vlan_tags_set_vid_with_the_present_bit() {
        let k = FlowKey::extract(&udp(Some(10)), 1);
        assert_eq!(k.get_u64(Field::VlanVid), Some(u64::from(VID_PRESENT | 10)));
        assert_eq!(k.get_u64(Field::EthType), Some(0x0800), "the inner EtherType");
        let any_tagged = Match::any().with(Oxm::masked(Field::VlanVid, &[0x10, 0], &[0x10, 0]));
        assert!(any_tagged.matches(&k));
        assert!(!any_tagged.matches(&FlowKey::extract(&udp(None), 1)));
        let untagged = Match::any().with(Oxm::exact_u64(Field::VlanVid, 0));
        assert!(untagged.matches(&FlowKey::extract(&udp(None), 1)) && !untagged.matches(&k));
    }

    #[test]
    fn cut_frames_keep_what_was_read() {
        let f = udp(None);
        for cut in 0..f.len() {
            let k = FlowKey::extract(&f[..cut], 1);
            assert_eq!(k.get_u64(Field::InPort), Some(1));
            if cut >= 14 {
                assert_eq!(k.get_u64(Field::EthType), Some(0x0800));
            }
        }
    }

    #[test]
    fn ipv6_extension_header_flags() {
        // hop-by-hop, then authentication (RFC 4302 length in 4-byte
        // units minus 2), then TCP: HOP | AUTH = 68, as OpenFlow encodes it.
        let mut after = vec![51, 0, 0, 0, 0, 0, 0, 0];
        after.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(exthdr_flags(0, &after), 68);
        assert_eq!(exthdr_flags(6, &[]), 0, "no extension header");
        assert_eq!(exthdr_flags(59, &[]), 1, "no next header");
        // fragment before routing: out of order; two routing headers: a repeat.
        assert_eq!(exthdr_flags(44, &[43, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]), 0x10 | 0x20 | 0x100);
        assert_eq!(exthdr_flags(43, &[43, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]), 0x20 | 0x80);
        // hop-by-hop anywhere but first is out of order; ESP ends the walk.
        assert_eq!(exthdr_flags(60, &[0, 0, 0, 0, 0, 0, 0, 0, 50, 0, 0, 0, 0, 0, 0, 0]), 0x8 | 0x40 | 0x100 | 0x2);
        assert_eq!(exthdr_flags(50, &[0; 16]), 2);
        // destination options before and after routing are both in order.
        assert_eq!(
            exthdr_flags(60, &[43, 0, 0, 0, 0, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]),
            0x8 | 0x20
        );
        // extracted for every IPv6 packet.
        let mut f = vec![0u8; 14 + 40 + 8 + 12 + 20];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&40u16.to_be_bytes());
        f[20] = 0;
        f[54..62].copy_from_slice(&[51, 0, 0, 0, 0, 0, 0, 0]);
        f[62] = 6;
        f[63] = 1;
        let k = FlowKey::extract(&f, 1);
        assert_eq!(k.get_u64(Field::Ipv6Exthdr), Some(68));
        assert_eq!(k.get_u64(Field::IpProto), Some(6));
    }
}
