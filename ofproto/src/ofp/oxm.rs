//! OXM match fields (OpenFlow 1.3 section 7.2.3): every basic field, with
//! masks where the spec allows them, the Nicira tunnel fields
//! (`NXM_NX_TUN_*`, class 0x0001) that `ovs-ofctl -O OpenFlow13` puts in
//! the same TLV lists, and the match structure that carries them. Decoding
//! checks lengths, masks, duplicates and prerequisites and answers with the
//! OFPET_BAD_MATCH code the spec names.

use super::bytes::{Reader, Writer};
use super::error::{BadMatch, OfpError};

/// OFPXMC_OPENFLOW_BASIC.
pub const CLASS_BASIC: u16 = 0x8000;
/// OFPXMC_NXM_1: Nicira's extension fields.
pub const CLASS_NXM1: u16 = 0x0001;
/// How many `tun_metadata<n>` fields the switch holds (Geneve options
/// mapped with NXT_TLV_TABLE_MOD; OVS has 64).
pub const TUN_METADATA_FIELDS: usize = 8;
/// The longest Geneve option a `tun_metadata<n>` field holds, in bytes
/// (OVS: 124).
pub const TUN_METADATA_MAX: usize = 16;
/// The longest value a variable-length NXM field may carry on the wire.
const NXM_VAR_MAX: usize = 124;
/// OFPVID_PRESENT: set in VLAN_VID when a tag is present.
pub const VID_PRESENT: u16 = 0x1000;

macro_rules! fields {
    ($($v:ident = $n:expr, $len:expr, $mask:expr, $name:expr;)*) => {
        /// An OXM basic field.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Field {
            $(
                #[doc = $name]
                $v = $n,
            )*
        }
        impl Field {
            /// Every field, in id order.
            pub const ALL: &'static [Field] = &[$(Field::$v),*];
            /// The field with OXM id `n`.
            pub fn from_id(n: u8) -> Option<Field> {
                match n { $($n => Some(Field::$v),)* _ => None }
            }
            /// Its value's length in bytes.
            pub fn width(self) -> usize {
                match self { $(Field::$v => $len,)* }
            }
            /// Whether the spec allows a mask on it.
            pub fn maskable(self) -> bool {
                match self { $(Field::$v => $mask,)* }
            }
            /// Its name as `ovs-ofctl` and the spec write it (OXM_OF_...).
            pub fn name(self) -> &'static str {
                match self { $(Field::$v => $name,)* }
            }
        }
    };
}

fields! {
    InPort = 0, 4, false, "in_port";
    InPhyPort = 1, 4, false, "in_phy_port";
    Metadata = 2, 8, true, "metadata";
    EthDst = 3, 6, true, "eth_dst";
    EthSrc = 4, 6, true, "eth_src";
    EthType = 5, 2, false, "eth_type";
    VlanVid = 6, 2, true, "vlan_vid";
    VlanPcp = 7, 1, false, "vlan_pcp";
    IpDscp = 8, 1, false, "ip_dscp";
    IpEcn = 9, 1, false, "ip_ecn";
    IpProto = 10, 1, false, "ip_proto";
    Ipv4Src = 11, 4, true, "ipv4_src";
    Ipv4Dst = 12, 4, true, "ipv4_dst";
    TcpSrc = 13, 2, false, "tcp_src";
    TcpDst = 14, 2, false, "tcp_dst";
    UdpSrc = 15, 2, false, "udp_src";
    UdpDst = 16, 2, false, "udp_dst";
    SctpSrc = 17, 2, false, "sctp_src";
    SctpDst = 18, 2, false, "sctp_dst";
    Icmpv4Type = 19, 1, false, "icmpv4_type";
    Icmpv4Code = 20, 1, false, "icmpv4_code";
    ArpOp = 21, 2, false, "arp_op";
    ArpSpa = 22, 4, true, "arp_spa";
    ArpTpa = 23, 4, true, "arp_tpa";
    ArpSha = 24, 6, true, "arp_sha";
    ArpTha = 25, 6, true, "arp_tha";
    Ipv6Src = 26, 16, true, "ipv6_src";
    Ipv6Dst = 27, 16, true, "ipv6_dst";
    Ipv6Flabel = 28, 4, true, "ipv6_flabel";
    Icmpv6Type = 29, 1, false, "icmpv6_type";
    Icmpv6Code = 30, 1, false, "icmpv6_code";
    Ipv6NdTarget = 31, 16, false, "ipv6_nd_target";
    Ipv6NdSll = 32, 6, false, "ipv6_nd_sll";
    Ipv6NdTll = 33, 6, false, "ipv6_nd_tll";
    MplsLabel = 34, 4, false, "mpls_label";
    MplsTc = 35, 1, false, "mpls_tc";
    MplsBos = 36, 1, false, "mpls_bos";
    PbbIsid = 37, 3, true, "pbb_isid";
    TunnelId = 38, 8, true, "tunnel_id";
    Ipv6Exthdr = 39, 2, true, "ipv6_exthdr";
    TunSrc = 40, 4, true, "tun_src";
    TunDst = 41, 4, true, "tun_dst";
    TunIpv6Src = 42, 16, true, "tun_ipv6_src";
    TunIpv6Dst = 43, 16, true, "tun_ipv6_dst";
    TunFlags = 44, 2, true, "tun_flags";
    TunMetadata0 = 45, 16, true, "tun_metadata0";
    TunMetadata1 = 46, 16, true, "tun_metadata1";
    TunMetadata2 = 47, 16, true, "tun_metadata2";
    TunMetadata3 = 48, 16, true, "tun_metadata3";
    TunMetadata4 = 49, 16, true, "tun_metadata4";
    TunMetadata5 = 50, 16, true, "tun_metadata5";
    TunMetadata6 = 51, 16, true, "tun_metadata6";
    TunMetadata7 = 52, 16, true, "tun_metadata7";
}

/// The number of fields (the key's slots).
pub const N_FIELDS: usize = 53;

/// `tun_flags`' OAM bit (Geneve's O flag), the one OVS shows.
pub const TUN_FLAG_OAM: u16 = 1;

impl Field {
    /// Its OXM class and field number on the wire: OpenFlow basic, or
    /// Nicira's for the tunnel fields (NXM_NX_TUN_IPV4_SRC 31, _DST 32,
    /// TUN_METADATA0.. 40.., TUN_FLAGS 104, TUN_IPV6_SRC 109, _DST 110).
    pub fn oxm_class_id(self) -> (u16, u8) {
        let i = self as u8;
        match self {
            Field::TunSrc => (CLASS_NXM1, 31),
            Field::TunDst => (CLASS_NXM1, 32),
            Field::TunIpv6Src => (CLASS_NXM1, 109),
            Field::TunIpv6Dst => (CLASS_NXM1, 110),
            Field::TunFlags => (CLASS_NXM1, 104),
            _ if i >= Field::TunMetadata0 as u8 => (CLASS_NXM1, 40 + (i - Field::TunMetadata0 as u8)),
            _ => (CLASS_BASIC, i),
        }
    }
    /// The field a wire class and number name.
    pub fn from_oxm(class: u16, id: u8) -> Option<Field> {
        match class {
            CLASS_BASIC if id < Field::TunSrc as u8 => Field::from_id(id),
            CLASS_NXM1 => Some(match id {
                31 => Field::TunSrc,
                32 => Field::TunDst,
                109 => Field::TunIpv6Src,
                110 => Field::TunIpv6Dst,
                104 => Field::TunFlags,
                40..=103 => return Field::tun_metadata(usize::from(id - 40)),
                _ => return None,
            }),
            _ => None,
        }
    }
    /// `tun_metadata<n>`, if the switch holds that many.
    pub fn tun_metadata(n: usize) -> Option<Field> {
        u8::try_from(n)
            .ok()
            .filter(|_| n < TUN_METADATA_FIELDS)
            .and_then(|n| Field::from_id(Field::TunMetadata0 as u8 + n))
    }
    /// Which `tun_metadata<n>` it is.
    pub fn tun_metadata_index(self) -> Option<usize> {
        (self as u8).checked_sub(Field::TunMetadata0 as u8).map(usize::from)
    }
    /// Whether its length on the wire varies (`tun_metadata<n>`: the
    /// value right-aligned in the field's bytes, as OVS reads it).
    pub fn variable(self) -> bool {
        self.tun_metadata_index().is_some()
    }
    /// Whether it is a tunnel field (set by decapsulation, read by
    /// encapsulation: no header of the frame holds it).
    pub fn is_tunnel(self) -> bool {
        self as u8 >= Field::TunSrc as u8 || self == Field::TunnelId
    }
    /// The OXM header of the field (`masked`: with its mask), `len` value
    /// bytes.
    pub fn oxm_header(self, masked: bool, len: usize) -> u32 {
        let (class, id) = self.oxm_class_id();
        let n = if masked { 2 * len } else { len };
        (u32::from(class) << 16) | (u32::from(id) << 9) | (u32::from(masked) << 8) | u32::try_from(n).unwrap_or(0)
    }
}

impl Field {
    /// The largest value the field may take (fields narrower than their
    /// bytes: VLAN VID 13 bits with OFPVID_PRESENT, PCP 3, DSCP 6, ECN 2,
    /// flow label 20, MPLS label 20, TC 3, BOS 1, IPv6 exthdr 9 bits).
    fn max(self) -> Option<u64> {
        Some(match self {
            Field::VlanVid => 0x1fff,
            Field::VlanPcp | Field::MplsTc => 7,
            Field::IpDscp => 63,
            Field::IpEcn => 3,
            Field::Ipv6Flabel | Field::MplsLabel => 0xf_ffff,
            Field::MplsBos => 1,
            Field::Ipv6Exthdr => 0x1ff,
            _ => return None,
        })
    }
}

/// One OXM TLV: a field, its value and, if masked, its mask (the first
/// `field.width()` bytes of each are used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Oxm {
    /// The field.
    pub field: Field,
    value: [u8; 16],
    mask: Option<[u8; 16]>,
}

impl Oxm {
    /// An exact match on `value` (its length must be the field's).
    pub fn exact(field: Field, value: &[u8]) -> Oxm {
        let mut v = [0u8; 16];
        v[..field.width()].copy_from_slice(&value[..field.width()]);
        Oxm { field, value: v, mask: None }
    }
    /// A masked match.
    pub fn masked(field: Field, value: &[u8], mask: &[u8]) -> Oxm {
        let mut m = [0u8; 16];
        m[..field.width()].copy_from_slice(&mask[..field.width()]);
        Oxm { mask: Some(m), ..Oxm::exact(field, value) }
    }
    /// An exact match on a number, written big-endian in the field's width.
    pub fn exact_u64(field: Field, v: u64) -> Oxm {
        let b = v.to_be_bytes();
        let mut full = [0u8; 16];
        let n = field.width();
        if n <= 8 {
            full[..n].copy_from_slice(&b[8 - n..]);
        }
        Oxm { field, value: full, mask: None }
    }
    /// The value's bytes.
    pub fn value(&self) -> &[u8] {
        &self.value[..self.field.width()]
    }
    /// The mask's bytes (None: exact).
    pub fn mask(&self) -> Option<&[u8]> {
        self.mask.as_ref().map(|m| &m[..self.field.width()])
    }
    /// The value as a number (fields of up to 8 bytes).
    pub fn value_u64(&self) -> u64 {
        self.value().iter().take(8).fold(0u64, |a, b| (a << 8) | u64::from(*b))
    }
    /// Bytes on the wire.
    pub fn wire_len(&self) -> usize {
        4 + self.wire_width() * if self.mask.is_some() { 2 } else { 1 }
    }
    /// The value's (and mask's) bytes on the wire: the field's width, but
    /// for a variable one only from its first non-zero byte (as
    /// `ovs-ofctl` writes `tun_metadata0=0x1234` in two).
    fn wire_width(&self) -> usize {
        let w = self.field.width();
        if !self.field.variable() {
            return w;
        }
        let lead = |b: &[u8]| b.iter().take_while(|x| **x == 0).count();
        let skip = lead(self.value()).min(self.mask().map_or(w, lead));
        (w - skip).max(1)
    }

    /// Reads one TLV; `set_field` selects the BAD_ACTION codes a set-field
    /// action answers with instead of BAD_MATCH ones.
    pub fn decode(r: &mut Reader<'_>, set_field: bool) -> Result<Oxm, OfpError> {
        use super::error::BadAction;
        let err = |m: BadMatch| {
            if set_field {
                OfpError::BadAction(match m {
                    BadMatch::BadLen => BadAction::BadSetLen,
                    BadMatch::BadValue | BadMatch::BadMask | BadMatch::BadWildcards => BadAction::BadSetArgument,
                    _ => BadAction::BadSetType,
                })
            } else {
                OfpError::BadMatch(m)
            }
        };
        let h = r.u32().map_err(|_| err(BadMatch::BadLen))?;
        let class = (h >> 16) as u16;
        let id = ((h >> 9) & 0x7f) as u8;
        let has_mask = (h >> 8) & 1 == 1;
        let len = (h & 0xff) as usize;
        let field = Field::from_oxm(class, id).ok_or(err(BadMatch::BadField))?;
        let halves = if has_mask { 2 } else { 1 };
        let n = if field.variable() { len / halves } else { field.width() };
        let len_ok = if field.variable() { n > 0 && len.is_multiple_of(halves) && n <= NXM_VAR_MAX } else { true };
        if !len_ok || len != n * halves {
            return Err(err(BadMatch::BadLen));
        }
        let body = r.take(len).map_err(|_| err(BadMatch::BadLen))?;
        if has_mask && (!field.maskable() || set_field) {
            return Err(err(BadMatch::BadMask));
        }
        let oxm = if field.variable() {
            // Right-aligned in the field; what is past its bytes must be
            // zero (an option longer than the switch holds).
            let w = field.width();
            let fit = |b: &[u8]| -> Option<[u8; 16]> {
                let cut = b.len().saturating_sub(w);
                if b[..cut].iter().any(|x| *x != 0) {
                    return None;
                }
                let mut v = [0u8; 16];
                v[w - (b.len() - cut)..w].copy_from_slice(&b[cut..]);
                Some(v)
            };
            let v = fit(&body[..n]).ok_or(err(BadMatch::BadValue))?;
            match has_mask {
                true => Oxm::masked(field, &v, &fit(&body[n..]).ok_or(err(BadMatch::BadMask))?),
                false => Oxm::exact(field, &v),
            }
        } else if has_mask {
            Oxm::masked(field, &body[..n], &body[n..])
        } else {
            Oxm::exact(field, body)
        };
        if let Some(max) = field.max() {
            if oxm.value_u64() > max {
                return Err(err(BadMatch::BadValue));
            }
        }
        if let Some(m) = oxm.mask() {
            // A 1-bit in the value where the mask has a 0-bit.
            if oxm.value().iter().zip(m).any(|(v, m)| v & !m != 0) {
                return Err(err(BadMatch::BadWildcards));
            }
        }
        Ok(oxm)
    }

    /// Appends the TLV.
    pub fn encode(&self, w: &mut Writer) {
        let n = self.wire_width();
        let skip = self.field.width() - n;
        w.u32(self.field.oxm_header(self.mask.is_some(), n)).bytes(&self.value()[skip..]);
        if let Some(m) = self.mask() {
            w.bytes(&m[skip..]);
        }
    }
}

/// A flow match: OXM TLVs in wire order, at most one per field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Match {
    /// The fields.
    pub fields: Vec<Oxm>,
}

/// OFPMT_OXM.
const MATCH_OXM: u16 = 1;

impl Match {
    /// The match on everything (no fields).
    pub fn any() -> Match {
        Match::default()
    }
    /// This match with `oxm` added.
    pub fn with(mut self, oxm: Oxm) -> Match {
        self.fields.push(oxm);
        self
    }
    /// The entry for `f`, if matched.
    pub fn get(&self, f: Field) -> Option<&Oxm> {
        self.fields.iter().find(|o| o.field == f)
    }
    /// Whether `f` is matched exactly on `v`.
    fn exact_is(&self, f: Field, ok: &[u64]) -> bool {
        self.get(f).is_some_and(|o| o.mask().is_none() && ok.contains(&o.value_u64()))
    }

    /// The prerequisite a field needs (spec table 11), checked against
    /// this match: false when it is missing.
    pub(crate) fn prereq_met(&self, f: Field) -> bool {
        const IP: &[u64] = &[0x0800, 0x86dd];
        let ip_proto = |p: u64| self.exact_is(Field::IpProto, &[p]) && self.exact_is(Field::EthType, IP);
        match f {
            Field::InPhyPort => self.get(Field::InPort).is_some(),
            Field::VlanPcp => self.get(Field::VlanVid).is_some_and(|o| o.value_u64() & u64::from(VID_PRESENT) != 0),
            Field::IpDscp | Field::IpEcn | Field::IpProto => self.exact_is(Field::EthType, IP),
            Field::Ipv4Src | Field::Ipv4Dst => self.exact_is(Field::EthType, &[0x0800]),
            Field::TcpSrc | Field::TcpDst => ip_proto(6),
            Field::UdpSrc | Field::UdpDst => ip_proto(17),
            Field::SctpSrc | Field::SctpDst => ip_proto(132),
            Field::Icmpv4Type | Field::Icmpv4Code => {
                self.exact_is(Field::IpProto, &[1]) && self.exact_is(Field::EthType, &[0x0800])
            }
            Field::ArpOp | Field::ArpSpa | Field::ArpTpa | Field::ArpSha | Field::ArpTha => {
                self.exact_is(Field::EthType, &[0x0806])
            }
            Field::Ipv6Src | Field::Ipv6Dst | Field::Ipv6Flabel | Field::Ipv6Exthdr => {
                self.exact_is(Field::EthType, &[0x86dd])
            }
            Field::Icmpv6Type | Field::Icmpv6Code => {
                self.exact_is(Field::IpProto, &[58]) && self.exact_is(Field::EthType, &[0x86dd])
            }
            Field::Ipv6NdTarget => self.exact_is(Field::Icmpv6Type, &[135, 136]) && self.prereq_met(Field::Icmpv6Type),
            Field::Ipv6NdSll => self.exact_is(Field::Icmpv6Type, &[135]) && self.prereq_met(Field::Icmpv6Type),
            Field::Ipv6NdTll => self.exact_is(Field::Icmpv6Type, &[136]) && self.prereq_met(Field::Icmpv6Type),
            Field::MplsLabel | Field::MplsTc | Field::MplsBos => self.exact_is(Field::EthType, &[0x8847, 0x8848]),
            Field::PbbIsid => self.exact_is(Field::EthType, &[0x88e7]),
            _ => true,
        }
    }

    /// Checks every field's prerequisites: OFPBMC_BAD_PREREQ when one is
    /// missing.
    pub fn check_prereqs(&self) -> Result<(), OfpError> {
        match self.fields.iter().all(|o| self.prereq_met(o.field)) {
            true => Ok(()),
            false => Err(OfpError::BadMatch(BadMatch::BadPrereq)),
        }
    }

    /// Reads an `ofp_match` (with its padding).
    pub fn decode(r: &mut Reader<'_>) -> Result<Match, OfpError> {
        let bad_len = OfpError::BadMatch(BadMatch::BadLen);
        let ty = r.u16().map_err(|_| bad_len)?;
        let len = usize::from(r.u16().map_err(|_| bad_len)?);
        if ty != MATCH_OXM {
            return Err(OfpError::BadMatch(BadMatch::BadType));
        }
        if len < 4 {
            return Err(bad_len);
        }
        let mut body = r.sub(len - 4, bad_len)?;
        r.skip(len.next_multiple_of(8) - len).map_err(|_| bad_len)?;
        let mut m = Match::default();
        while !body.is_empty() {
            let o = Oxm::decode(&mut body, false)?;
            if m.get(o.field).is_some() {
                return Err(OfpError::BadMatch(BadMatch::DupField));
            }
            m.fields.push(o);
        }
        m.check_prereqs()?;
        Ok(m)
    }

    /// Appends an `ofp_match` with its padding.
    pub fn encode(&self, w: &mut Writer) {
        let start = w.len();
        w.u16(MATCH_OXM).u16(0);
        for o in &self.fields {
            o.encode(w);
        }
        w.patch_len16(start + 2, start);
        w.align8();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofp::error::BAD_LEN;

    fn decode(b: &[u8]) -> Result<Match, OfpError> {
        Match::decode(&mut Reader::new(b, BAD_LEN))
    }

    #[test]
    fn a_match_round_trips_with_padding() {
        let m = Match::any()
            .with(Oxm::exact_u64(Field::InPort, 3))
            .with(Oxm::exact_u64(Field::EthType, 0x0800))
            .with(Oxm::masked(Field::Ipv4Dst, &[10, 1, 0, 0], &[255, 255, 0, 0]));
        let mut w = Writer::new();
        m.encode(&mut w);
        // 4 + (4+4) + (4+2) + (4+8) = 30, padded to 32.
        assert_eq!(w.len(), 32);
        assert_eq!(&w.buf[..4], &[0, 1, 0, 30]);
        assert_eq!(&w.buf[4..8], &[0x80, 0x00, 0x00, 0x04], "in_port header");
        assert_eq!(decode(&w.buf), Ok(m));
    }

    #[test]
    fn bad_matches_get_the_codes_the_spec_names() {
        let enc = |m: &Match| {
            let mut w = Writer::new();
            m.encode(&mut w);
            w.buf
        };
        let ip = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800));
        // ipv4_src without eth_type=0x0800.
        let no_prereq = Match::any().with(Oxm::exact(Field::Ipv4Src, &[1, 2, 3, 4]));
        assert_eq!(decode(&enc(&no_prereq)), Err(OfpError::BadMatch(BadMatch::BadPrereq)));
        // tcp_src needs ip_proto=6 too.
        let tcp = ip.clone().with(Oxm::exact_u64(Field::TcpSrc, 80));
        assert_eq!(decode(&enc(&tcp)), Err(OfpError::BadMatch(BadMatch::BadPrereq)));
        let tcp = ip.clone().with(Oxm::exact_u64(Field::IpProto, 6)).with(Oxm::exact_u64(Field::TcpSrc, 80));
        assert!(decode(&enc(&tcp)).is_ok());
        // Duplicate field.
        let dup = ip.clone().with(Oxm::exact_u64(Field::EthType, 0x0800));
        assert_eq!(decode(&enc(&dup)), Err(OfpError::BadMatch(BadMatch::DupField)));
        // A mask on an unmaskable field (eth_type with hasmask): hand-made.
        let mut b = vec![0, 1, 0, 12, 0x80, 0x00, 0x0b, 0x04, 0x08, 0x00, 0xff, 0xff];
        b.resize(16, 0);
        assert_eq!(decode(&b), Err(OfpError::BadMatch(BadMatch::BadMask)));
        // A value bit outside its mask.
        let bad = ip.clone().with(Oxm::masked(Field::Ipv4Src, &[10, 0, 0, 1], &[255, 0, 0, 0]));
        assert_eq!(decode(&enc(&bad)), Err(OfpError::BadMatch(BadMatch::BadWildcards)));
        // Unknown field 50, wrong length, wrong match type, VLAN PCP 9.
        let mut b = vec![0, 1, 0, 8, 0x80, 0x00, 50 << 1, 0];
        assert_eq!(decode(&b), Err(OfpError::BadMatch(BadMatch::BadField)));
        b[6] = 0;
        b[7] = 3;
        assert_eq!(decode(&b), Err(OfpError::BadMatch(BadMatch::BadLen)));
        assert_eq!(decode(&[0, 0, 0, 4, 0, 0, 0, 0]), Err(OfpError::BadMatch(BadMatch::BadType)));
        let pcp = Match::any().with(Oxm::exact_u64(Field::VlanVid, 0x1005)).with(Oxm::exact_u64(Field::VlanPcp, 9));
        assert_eq!(decode(&enc(&pcp)), Err(OfpError::BadMatch(BadMatch::BadValue)));
        // A length past the buffer.
        assert_eq!(decode(&[0, 1, 0, 40, 0, 0, 0, 0]), Err(OfpError::BadMatch(BadMatch::BadLen)));
    }

    #[test]
    fn every_field_round_trips_exact_and_masked_where_allowed() {
        for &f in Field::ALL {
            let v: Vec<u8> = (0..f.width()).map(|i| u8::from(i + 1 == f.width())).collect();
            let o = Oxm::exact(f, &v);
            let mut w = Writer::new();
            o.encode(&mut w);
            assert_eq!(w.len(), o.wire_len());
            assert_eq!(Oxm::decode(&mut Reader::new(&w.buf, BAD_LEN), false), Ok(o), "{f:?}");
            if f.maskable() {
                let o = Oxm::masked(f, &v, &vec![0xff; f.width()]);
                let mut w = Writer::new();
                o.encode(&mut w);
                assert_eq!(Oxm::decode(&mut Reader::new(&w.buf, BAD_LEN), false), Ok(o), "{f:?} masked");
            }
        }
    }

    #[test]
    fn ovs_ofctl_tunnel_fields_decode_as_ovs_reads_them() {
        // The match ovs-ofctl 3.1 -O OpenFlow13 sends for
        // tun_metadata0=0x1234,tun_src=1.2.3.4,tun_dst=10.0.0.0/8,
        // tun_flags=+oam,tun_ipv6_src=::1 (captured).
        let hex = concat!(
            "0001003a0001d10400010001",
            "00013e0401020304",
            "000141080a000000ff000000",
            "0001da1000000000000000000000000000000001",
            "000150021234000000000000"
        );
        let b: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        let m = decode(&b).unwrap();
        assert_eq!(m.get(Field::TunFlags), Some(&Oxm::masked(Field::TunFlags, &[0, 1], &[0, 1])));
        assert_eq!(m.get(Field::TunSrc), Some(&Oxm::exact(Field::TunSrc, &[1, 2, 3, 4])));
        assert_eq!(m.get(Field::TunDst), Some(&Oxm::masked(Field::TunDst, &[10, 0, 0, 0], &[255, 0, 0, 0])));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(m.get(Field::TunIpv6Src), Some(&Oxm::exact(Field::TunIpv6Src, &v6)));
        let mut md = [0u8; 16];
        md[14..].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(m.get(Field::TunMetadata0), Some(&Oxm::exact(Field::TunMetadata0, &md)));
        // Encoded again byte for byte (tun_metadata0 in its two bytes).
        let mut w = Writer::new();
        m.encode(&mut w);
        assert_eq!(w.buf, b);
        // A tun_metadata value wider than the switch holds, and one past
        // the fields it has (tun_metadata8), are refused.
        let mut long = vec![0, 1, 0, 4 + 4 + 20, 0, 1, 0x50, 20, 1];
        long.extend([0u8; 19]);
        long.resize(32, 0);
        assert_eq!(decode(&long), Err(OfpError::BadMatch(BadMatch::BadValue)));
        assert_eq!(
            decode(&[0, 1, 0, 9, 0, 1, 0x60, 1, 5, 0, 0, 0, 0, 0, 0, 0]),
            Err(OfpError::BadMatch(BadMatch::BadField))
        );
    }
}
