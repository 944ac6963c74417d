//! Flow masks (the bits a lookup examined, per field) and the hashers the
//! classifier and the megaflow cache key their maps with.

use crate::ofp::oxm::{Field, Match};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for keys that are hashes already (the classifier's and the
/// megaflow cache's): it passes them through instead of hashing again.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = mix(self.0, u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Maps and sets keyed by a hash.
pub type IdBuild = BuildHasherDefault<IdHasher>;

/// A fast hasher for keys made of words ([`FlowMask`]): a multiply and a
/// rotate per word, instead of SipHash's rounds (the keys are ours, not an
/// attacker's).
#[derive(Default, Clone, Copy)]
pub struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = mix(self.0, u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = mix(self.0, n);
    }
}

/// Maps keyed by words.
pub type WordBuild = BuildHasherDefault<WordHasher>;

/// Fields of a flow key.
pub use crate::ofp::oxm::N_FIELDS;

/// Bits of a flow key: which fields' presence, and which bits of each
/// value (as the two native-endian words of its 16 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct FlowMask {
    /// Fields whose presence (or absence) matters, one bit per field id.
    pub present: u64,
    /// Bits of each field's value that matter.
    pub bits: [[u64; 2]; N_FIELDS],
}

impl Default for FlowMask {
    fn default() -> FlowMask {
        FlowMask { present: 0, bits: [[0; 2]; N_FIELDS] }
    }
}

/// Hashes the presence word and the bits of the fields it names only
/// (a mask of a few fields hashes a few words, not 640 bytes).
impl std::hash::Hash for FlowMask {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.present);
        let mut p = self.present;
        while p != 0 {
            let i = p.trailing_zeros() as usize;
            p &= p - 1;
            if let Some(b) = self.bits.get(i) {
                state.write_u64(b[0]);
                state.write_u64(b[1]);
            }
        }
    }
}

impl std::fmt::Debug for FlowMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for &fl in Field::ALL {
            let i = fl as usize;
            if self.present & (1 << i) != 0 {
                let b = self.bits[i];
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&b[0].to_ne_bytes());
                bytes[8..].copy_from_slice(&b[1].to_ne_bytes());
                m.entry(&fl.name(), &format_args!("{:02x?}", &bytes[..fl.width()]));
            }
        }
        m.finish()
    }
}

impl FlowMask {
    /// The mask of a match: its fields' presence and their masks.
    pub fn of_match(m: &Match) -> FlowMask {
        let mut mask = FlowMask::default();
        for o in &m.fields {
            let mut bytes = [0u8; 16];
            let w = o.field.width();
            match o.mask() {
                Some(b) => bytes[..w].copy_from_slice(b),
                None => bytes[..w].fill(0xff),
            }
            mask.set(o.field, words(&bytes));
        }
        mask
    }

    /// Adds a field's presence and `bits` of its value.
    #[inline]
    pub fn set(&mut self, f: Field, bits: [u64; 2]) {
        self.set_bits(f as usize, bits);
    }

    /// Adds field `i`'s presence and `bits` of its value.
    #[inline]
    pub fn set_bits(&mut self, i: usize, bits: [u64; 2]) {
        self.present |= 1 << i;
        self.bits[i][0] |= bits[0];
        self.bits[i][1] |= bits[1];
    }

    /// Adds every bit of `other`.
    pub fn union(&mut self, other: &FlowMask) {
        self.present |= other.present;
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            a[0] |= b[0];
            a[1] |= b[1];
        }
    }

    /// Whether `self` has every bit of `other`.
    pub fn covers(&self, other: &FlowMask) -> bool {
        other.present & !self.present == 0
            && self.bits.iter().zip(&other.bits).all(|(a, b)| b[0] & !a[0] == 0 && b[1] & !a[1] == 0)
    }

    /// The fields it names, in id order.
    pub fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        Field::ALL.iter().copied().filter(|f| self.present & (1 << (*f as usize)) != 0)
    }
}

/// A field's 16 value bytes as two native-endian words.
#[inline]
pub(crate) fn words(b: &[u8; 16]) -> [u64; 2] {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&b[..8]);
    hi.copy_from_slice(&b[8..]);
    [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
}

/// The lookup stage a field belongs to: 0 metadata, 1 L2, 2 L3, 3 L4.
pub fn stage(f: Field) -> usize {
    use Field::*;
    match f {
        InPort | InPhyPort | Metadata | TunnelId | TunSrc | TunDst | TunIpv6Src | TunIpv6Dst | TunFlags
        | TunMetadata0 | TunMetadata1 | TunMetadata2 | TunMetadata3 | TunMetadata4 | TunMetadata5 | TunMetadata6
        | TunMetadata7 => 0,
        EthDst | EthSrc | EthType | VlanVid | VlanPcp | MplsLabel | MplsTc | MplsBos | PbbIsid => 1,
        IpDscp | IpEcn | IpProto | Ipv4Src | Ipv4Dst | ArpOp | ArpSpa | ArpTpa | ArpSha | ArpTha | Ipv6Src
        | Ipv6Dst | Ipv6Flabel | Ipv6Exthdr => 2,
        TcpSrc | TcpDst | UdpSrc | UdpDst | SctpSrc | SctpDst | Icmpv4Type | Icmpv4Code | Icmpv6Type | Icmpv6Code
        | Ipv6NdTarget | Ipv6NdSll | Ipv6NdTll => 3,
    }
}

#[inline]
pub(super) fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31)
}
