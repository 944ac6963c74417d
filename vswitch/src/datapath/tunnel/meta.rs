//! Tunnel metadata between the wire and OpenFlow: the outer addresses,
//! flags and Geneve options of a decapsulated frame as the `tun_*` fields
//! of its flow key, and the options a flow set (`tun_metadata<n>`) as the
//! Geneve options its encapsulation carries; which critical Geneve options
//! the switch understands (those a bridge's TLV map names).

use ofproto::agent::tlv::TlvTable;
use ofproto::flow::FlowKey;
use ofproto::ofp::oxm::{TUN_FLAG_OAM, TUN_METADATA_FIELDS};
use ofproto::ofp::Field;
use pmd::Packet;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

/// The most Geneve option bytes the switch sends (every `tun_metadata`
/// field at its longest, with its option header).
pub const MAX_OPTS: usize = TUN_METADATA_FIELDS * (4 + ofproto::ofp::oxm::TUN_METADATA_MAX);

/// A remote as the PMD threads key it: IPv4 as IPv4-mapped IPv6.
pub fn remote_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The remote of a key (None: unspecified).
pub fn remote_of(k: [u8; 16]) -> Option<IpAddr> {
    let a = Ipv6Addr::from(k);
    match a.to_ipv4_mapped() {
        Some(v4) if !v4.is_unspecified() => Some(IpAddr::V4(v4)),
        Some(_) => None,
        None if a.is_unspecified() => None,
        None => Some(IpAddr::V6(a)),
    }
}

/// Critical Geneve options the switch understands (the union of the
/// bridges' TLV maps), read by the PMD threads without a lock: each slot
/// holds `class << 8 | type`, plus 1 (0: empty).
#[derive(Debug)]
pub struct GeneveKnown([AtomicU32; 32]);

impl Default for GeneveKnown {
    fn default() -> GeneveKnown {
        GeneveKnown(std::array::from_fn(|_| AtomicU32::new(0)))
    }
}

impl GeneveKnown {
    /// Replaces the set with `opts` (class, type); those past the 32nd
    /// stay unknown.
    pub fn set(&self, opts: &[(u16, u8)]) {
        for (i, slot) in self.0.iter().enumerate() {
            let v = opts.get(i).map_or(0, |(c, t)| ((u32::from(*c) << 8) | u32::from(*t)) + 1);
            slot.store(v, Ordering::Relaxed);
        }
    }
    /// Whether option (class, type) is known.
    #[inline]
    pub fn knows(&self, class: u16, opt_type: u8) -> bool {
        let want = ((u32::from(class) << 8) | u32::from(opt_type)) + 1;
        self.0.iter().any(|s| s.load(Ordering::Relaxed) == want)
    }
}

/// The options of a Geneve header, as (class, type, data); None when
/// their lengths do not add up to `opts`' length.
fn options(opts: &[u8]) -> impl Iterator<Item = Option<(u16, u8, &[u8])>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at == opts.len() {
            return None;
        }
        let Some(h) = opts.get(at..at + 4) else {
            at = opts.len();
            return Some(None);
        };
        let n = usize::from(h[3] & 0x1f) * 4;
        let Some(data) = opts.get(at + 4..at + 4 + n) else {
            at = opts.len();
            return Some(None);
        };
        at += 4 + n;
        Some(Some((u16::from_be_bytes([h[0], h[1]]), h[2], data)))
    })
}

/// Whether every critical option (type's top bit) of a header whose C
/// flag is set is one the switch understands.
pub fn critical_known(opts: &[u8], known: &GeneveKnown) -> bool {
    options(opts).all(|o| o.is_some_and(|(c, t, _)| t & 0x80 == 0 || known.knows(c, t)))
}

/// Whether `opts` is a well-formed run of options.
pub fn well_formed(opts: &[u8]) -> bool {
    opts.len().is_multiple_of(4) && options(opts).all(|o| o.is_some())
}

/// Sets the tunnel fields of a frame decapsulated in this pass (its
/// outer headers still in the headroom): `tun_src`/`tun_dst` or their
/// IPv6 forms, `tun_flags`, and the `tun_metadata` fields `tlv` maps (an
/// option of another length than its mapping is not one of them).
#[inline]
pub fn fields_into_key(p: &Packet, tlv: &TlvTable, key: &mut FlowKey) {
    let m = p.meta();
    key.set_u64(Field::TunFlags, u64::from(m.tun_flags & TUN_FLAG_OAM));
    let Some(outer) = p.before(usize::from(m.tun_hdr)) else { return };
    match outer.first().map(|v| v >> 4) {
        Some(4) if outer.len() >= 20 => {
            key.set(Field::TunSrc, &outer[12..16]);
            key.set(Field::TunDst, &outer[16..20]);
        }
        Some(6) if outer.len() >= 40 => {
            key.set(Field::TunIpv6Src, &outer[8..24]);
            key.set(Field::TunIpv6Dst, &outer[24..40]);
        }
        _ => {}
    }
    let n = usize::from(m.tun_opts);
    if n == 0 || tlv.is_empty() || n > outer.len() {
        return;
    }
    for (class, t, data) in options(&outer[outer.len() - n..]).map_while(|o| o) {
        let Some((i, len)) = tlv.find(class, t) else { continue };
        if data.len() != len {
            continue;
        }
        let mut v = [0u8; 16];
        v[16 - len..].copy_from_slice(data);
        if let Some(f) = Field::tun_metadata(i) {
            key.set(f, &v);
        }
    }
}

/// Writes the Geneve options for the `tun_metadata` fields `key` has
/// (each at its mapping's length, in field order) into `out`; their
/// length.
pub fn options_from_key(key: &FlowKey, tlv: &TlvTable, out: &mut [u8; MAX_OPTS]) -> usize {
    let mut at = 0;
    for (i, e) in tlv.entries.iter().enumerate() {
        let (Some(e), Some(v)) = (e, Field::tun_metadata(i).and_then(|f| key.get(f))) else { continue };
        let len = usize::from(e.len);
        out[at..at + 2].copy_from_slice(&e.class.to_be_bytes());
        out[at + 2] = e.opt_type;
        out[at + 3] = e.len / 4;
        out[at + 4..at + 4 + len].copy_from_slice(&v[16 - len..]);
        at += 4 + len;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use ofproto::agent::tlv::TlvOption;

    #[test]
    fn options_go_to_the_fields_their_map_names_and_back() {
        let mut tlv = TlvTable::default();
        tlv.entries[0] = Some(TlvOption { class: 0x0102, opt_type: 0x80, len: 4 });
        tlv.entries[2] = Some(TlvOption { class: 0xffff, opt_type: 1, len: 8 });
        let mut key = FlowKey::default();
        let mut v = [0u8; 16];
        v[12..].copy_from_slice(&[0, 1, 0, 2]);
        key.set(Field::TunMetadata0, &v);
        let mut out = [0u8; MAX_OPTS];
        let n = options_from_key(&key, &tlv, &mut out);
        assert_eq!(&out[..n], &[0x01, 0x02, 0x80, 1, 0, 1, 0, 2]);
        assert!(well_formed(&out[..n]));
        let known = GeneveKnown::default();
        assert!(!critical_known(&out[..n], &known));
        known.set(&[(0xffff, 1), (0x0102, 0x80)]);
        assert!(critical_known(&out[..n], &known));
        // Lengths that do not add up.
        assert!(!well_formed(&[0x01, 0x02, 0x80, 2, 0, 0, 0, 0]));
        assert!(!critical_known(&[0x01, 0x02, 0x80, 2, 0, 0, 0, 0], &known));
        // Non-critical options need no knowing.
        assert!(critical_known(&[0x01, 0x02, 0x01, 0], &GeneveKnown::default()));
    }
}
