//! The classifier against a linear reference: lookups, wildcards and
//! prefix tracking.

use super::*;
use crate::ofp::oxm::Oxm;
use proptest::prelude::*;

/// Fields the random rules and keys use: all four stages, maskable
/// and not, narrow and 16 bytes wide.
const FIELDS: [Field; 9] = [
    Field::InPort,
    Field::Metadata,
    Field::EthType,
    Field::VlanVid,
    Field::IpProto,
    Field::Ipv4Src,
    Field::Ipv4Dst,
    Field::Ipv6Src,
    Field::TcpDst,
];

/// A value of the field's width from a small domain (so that rules and
/// keys meet often).
fn value(f: Field, v: u8) -> Vec<u8> {
    let mut b = vec![0u8; f.width()];
    let last = b.len() - 1;
    b[last] = v % 4;
    b[0] |= v & 0x80;
    b
}

#[derive(Debug, Clone)]
struct RuleSpec {
    priority: u16,
    fields: Vec<(usize, u8, Option<u8>)>,
}

fn to_match(r: &RuleSpec) -> Match {
    let mut m = Match::any();
    let mut seen = 0u32;
    for &(fi, v, mask) in &r.fields {
        let f = FIELDS[fi % FIELDS.len()];
        if seen & (1 << (fi % FIELDS.len())) != 0 {
            continue;
        }
        seen |= 1 << (fi % FIELDS.len());
        let val = value(f, v);
        m = m.with(match mask {
            Some(mk) if f.maskable() => {
                let mut mb = vec![0xffu8; f.width()];
                let last = mb.len() - 1;
                mb[last] = mk;
                mb[0] = if mk & 1 != 0 { 0x80 } else { 0 };
                let vb: Vec<u8> = val.iter().zip(&mb).map(|(a, b)| a & b).collect();
                Oxm::masked(f, &vb, &mb)
            }
            _ => Oxm::exact(f, &val),
        });
    }
    m
}

fn to_key(spec: &[(bool, u8)]) -> FlowKey {
    let mut k = FlowKey::default();
    for (f, &(present, v)) in FIELDS.iter().zip(spec) {
        if present {
            k.set(*f, &value(*f, v));
        }
    }
    k
}

fn rule() -> impl Strategy<Value = RuleSpec> {
    (0u16..4, prop::collection::vec((0usize..9, any::<u8>(), prop::option::of(any::<u8>())), 0..4))
        .prop_map(|(priority, fields)| RuleSpec { priority, fields })
}

fn key() -> impl Strategy<Value = Vec<(bool, u8)>> {
    prop::collection::vec((prop::bool::weighted(0.8), any::<u8>()), FIELDS.len())
}

/// The reference: highest priority, then lowest seq, among the rules
/// whose match accepts the key.
fn scan(rules: &[(RuleSpec, Match, u64)], k: &FlowKey) -> Option<u64> {
    rules
        .iter()
        .filter(|(_, m, _)| m.matches(k))
        .max_by_key(|(r, _, seq)| (r.priority, std::cmp::Reverse(*seq)))
        .map(|(_, _, s)| *s)
}

/// A key equal to `k` on every bit of `wc`, anything elsewhere.
fn agreeing(k: &FlowKey, wc: &FlowMask, other: &FlowKey) -> FlowKey {
    let mut out = FlowKey::default();
    for &f in &FIELDS {
        let i = f as usize;
        let bit = 1u64 << i;
        let (from, keep_bits) = if wc.present & bit != 0 { (k, true) } else { (other, false) };
        let Some(_) = from.get(f) else { continue };
        let mut w = other.get(f).map_or([0; 2], |_| other.words(i));
        if keep_bits {
            let kw = k.words(i);
            let m = wc.bits[i];
            w = [(w[0] & !m[0]) | (kw[0] & m[0]), (w[1] & !m[1]) | (kw[1] & m[1])];
        }
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&w[0].to_ne_bytes());
        bytes[8..].copy_from_slice(&w[1].to_ne_bytes());
        out.set(f, &bytes[..f.width()]);
    }
    out
}

/// A classifier of `rules` (sequence numbers in order) less the
/// `removals`, and the rules left (the scan's reference).
fn loaded(
    rules: Vec<(RuleSpec, Match)>,
    removals: &[prop::sample::Index],
) -> (Classifier<u64>, Vec<(RuleSpec, Match, u64)>) {
    let mut cls = Classifier::default();
    let mut live = Vec::new();
    for (seq, (r, m)) in rules.into_iter().enumerate() {
        let seq = seq as u64;
        cls.insert(r.priority, &m, seq, seq);
        live.push((r, m, seq));
    }
    for ix in removals {
        if live.is_empty() {
            break;
        }
        let (r, m, seq) = live.remove(ix.index(live.len()));
        assert!(cls.remove(r.priority, &m, seq));
        assert!(!cls.remove(r.priority, &m, seq), "removed twice");
    }
    assert_eq!(cls.len(), live.len());
    (cls, live)
}

/// Each key (the first of a pair) gets the scan's answer, and a key
/// equal to it on the bits the lookup reported (anything else from the
/// second) gets the same answer.
fn check_keys(
    cls: &Classifier<u64>,
    live: &[(RuleSpec, Match, u64)],
    keys: impl Iterator<Item = (FlowKey, FlowKey)>,
) -> Result<(), TestCaseError> {
    for (k, other) in keys {
        let mut wc = FlowMask::default();
        let got = cls.lookup_wc(&k, &mut wc).copied();
        prop_assert_eq!(got, scan(live, &k), "key {:?}", k);
        prop_assert_eq!(cls.lookup(&k).copied(), got);
        let k2 = agreeing(&k, &wc, &other);
        prop_assert_eq!(scan(live, &k2), got, "key {:?} agrees with {:?} on {:?}", k2, k, wc);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// For random tables, changed by random inserts and removals, the
    /// classifier answers every key as the priority scan does, and
    /// every key equal on the bits it reported gets the same answer.
    #[test]
    fn classifier_equals_the_priority_scan(
        rules in prop::collection::vec(rule(), 1..40),
        removals in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        keys in prop::collection::vec((key(), key()), 1..40),
    ) {
        let rules = rules.iter().map(|r| (r.clone(), to_match(r))).collect();
        let (cls, live) = loaded(rules, &removals);
        check_keys(&cls, &live, keys.iter().map(|(a, b)| (to_key(a), to_key(b))))?;
    }
}

/// An LPM-style rule: a prefix of one of a few base addresses (some
/// bits flipped) on `ipv4_dst` or `ipv6_src`, maybe with an `in_port`.
#[derive(Debug, Clone)]
struct PrefixRule {
    priority: u16,
    v6: bool,
    len: u32,
    addr: Addr,
    in_port: Option<u8>,
}

/// An address: which base, and which bit to flip.
type Addr = (usize, Option<u8>);
/// A key: in_port, ipv4_dst, ipv6_src.
type KeySpec = (u8, Addr, Addr);

fn address(bases: &[u128], (pick, flip): Addr) -> u128 {
    bases[pick % bases.len()] ^ flip.map_or(0, |b| 1u128 << (127 - u32::from(b) % 128))
}

fn ipv4(a: u128) -> [u8; 4] {
    u32::try_from(a >> 96).unwrap_or(0).to_be_bytes()
}

fn prefix_match(r: &PrefixRule, bases: &[u128]) -> Match {
    let a = address(bases, r.addr);
    let mut m = Match::any();
    if let Some(p) = r.in_port {
        m = m.with(Oxm::exact_u64(Field::InPort, u64::from(p % 2)));
    }
    if r.v6 {
        let mask = u128::MAX << (128 - r.len.clamp(1, 128));
        m.with(Oxm::masked(Field::Ipv6Src, &(a & mask).to_be_bytes(), &mask.to_be_bytes()))
    } else {
        let len = r.len.clamp(1, 32);
        let mask = u32::MAX << (32 - len);
        let v = u32::from_be_bytes(ipv4(a)) & mask;
        m.with(Oxm::masked(Field::Ipv4Dst, &v.to_be_bytes(), &mask.to_be_bytes()))
    }
}

fn prefix_key(bases: &[u128], (port, v4, v6): KeySpec) -> FlowKey {
    let mut k = FlowKey::default();
    k.set_u64(Field::InPort, u64::from(port % 2));
    k.set(Field::Ipv4Dst, &ipv4(address(bases, v4)));
    k.set(Field::Ipv6Src, &address(bases, v6).to_be_bytes());
    k
}

fn prefix_rule() -> impl Strategy<Value = PrefixRule> {
    let lens = prop::sample::select(vec![1u32, 3, 8, 9, 16, 23, 24, 31, 32, 48, 64, 65, 127, 128]);
    let addr = (0usize..3, prop::option::of(any::<u8>()));
    (0u16..40, any::<bool>(), lens, addr, prop::option::weighted(0.3, any::<u8>()))
        .prop_map(|(priority, v6, len, addr, in_port)| PrefixRule { priority, v6, len, addr, in_port })
}

fn prefix_key_spec() -> impl Strategy<Value = KeySpec> {
    let addr = || (0usize..3, prop::option::of(any::<u8>()));
    (any::<u8>(), addr(), addr())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Prefix tracking: for random LPM-style tables (prefixes of a few
    /// base addresses, changed by random removals), the classifier
    /// answers as the scan does, and every key equal on the (fewer)
    /// bits it reported gets the same answer.
    #[test]
    fn prefix_tracking_reports_enough_bits(
        bases in prop::collection::vec(any::<u128>(), 3),
        rules in prop::collection::vec(prefix_rule(), 1..40),
        removals in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        keys in prop::collection::vec((prefix_key_spec(), prefix_key_spec()), 1..40),
    ) {
        let rules =
            rules.iter().map(|r| (RuleSpec { priority: r.priority, fields: Vec::new() }, prefix_match(r, &bases))).collect();
        let (cls, live) = loaded(rules, &removals);
        check_keys(&cls, &live, keys.iter().map(|(a, b)| (prefix_key(&bases, *a), prefix_key(&bases, *b))))?;
    }
}

/// A /24 route the packet's address cannot have costs only the bits
/// that show it (shared with the closest /24, and one more), not 24.
#[test]
fn prefix_tracking_unwildcards_only_what_tells_routes_apart() {
    let route = |a: [u8; 4], len: u32| {
        let mask = u32::MAX << (32 - len);
        Match::any().with(Oxm::masked(
            Field::Ipv4Dst,
            &(u32::from_be_bytes(a) & mask).to_be_bytes(),
            &mask.to_be_bytes(),
        ))
    };
    let mut cls = Classifier::default();
    cls.insert(8, &route([10, 0, 0, 0], 8), 1, 8);
    cls.insert(24, &route([10, 1, 2, 0], 24), 2, 24);
    cls.insert(24, &route([10, 1, 3, 0], 24), 3, 25);
    let bits = |cls: &Classifier<u64>, k: [u8; 4]| {
        let mut key = FlowKey::default();
        key.set(Field::Ipv4Dst, &k);
        let mut wc = FlowMask::default();
        let got = cls.lookup_wc(&key, &mut wc).copied();
        (got, wc.bits[Field::Ipv4Dst as usize][0].to_ne_bytes()[..4].to_vec())
    };
    // 10.200/9 shares 8 bits with 10.1.2.0 and 10.1.3.0: 9 bits tell.
    assert_eq!(bits(&cls, [10, 200, 0, 1]), (Some(8), vec![255, 128, 0, 0]));
    // 10.1.7.1 shares 21 bits with 10.1.3.0 (00000111 vs 00000011):
    // 22 tell.
    assert_eq!(bits(&cls, [10, 1, 7, 1]), (Some(8), vec![255, 255, 252, 0]));
    // A /24 it has is probed: all 24 bits.
    assert_eq!(bits(&cls, [10, 1, 3, 9]), (Some(25), vec![255, 255, 255, 0]));
    // Outside every route: the /8 probed (8 bits).
    assert_eq!(bits(&cls, [11, 1, 3, 9]), (None, vec![255, 0, 0, 0]));
    // Without the /8: the /24s alone, skipped with 8 bits (11 =
    // 00001011 and 10 = 00001010 share 7), or with 1 (200 =
    // 11001000 shares none).
    cls.remove(8, &route([10, 0, 0, 0], 8), 1);
    assert_eq!(bits(&cls, [11, 1, 3, 9]), (None, vec![255, 0, 0, 0]));
    assert_eq!(bits(&cls, [200, 1, 3, 9]), (None, vec![128, 0, 0, 0]));
    assert_eq!(bits(&cls, [10, 1, 7, 1]), (None, vec![255, 255, 252, 0]));
}

/// Many rules of one shape are one subtable: a lookup probes it once
/// and reports only that shape's bits.
#[test]
fn one_shape_is_one_subtable_and_its_bits() {
    let mut cls = Classifier::default();
    for i in 0..1000u64 {
        let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(
            Field::Ipv4Dst,
            &u32::try_from(i << 8).unwrap().to_be_bytes(),
            &[0xff, 0xff, 0xff, 0],
        ));
        cls.insert(10, &m, i, i);
    }
    cls.insert(0, &Match::any(), 5000, 5000);
    assert_eq!((cls.len(), cls.n_subtables()), (1001, 2));
    let mut k = FlowKey::default();
    k.set_u64(Field::InPort, 7);
    k.set_u64(Field::EthType, 0x0800);
    k.set(Field::Ipv4Dst, &[0, 3, 7, 9]);
    k.set(Field::Ipv4Src, &[10, 0, 0, 1]);
    let mut wc = FlowMask::default();
    assert_eq!(cls.lookup_wc(&k, &mut wc), Some(&0x307));
    let fields: Vec<Field> = wc.fields().collect();
    assert_eq!(fields, [Field::EthType, Field::Ipv4Dst], "in_port and ipv4_src were never read");
    assert_eq!(wc.bits[Field::Ipv4Dst as usize][0].to_ne_bytes()[..4], [0xff, 0xff, 0xff, 0]);
    // A miss in the subtable: the catch-all, same bits.
    k.set(Field::Ipv4Dst, &[9, 9, 9, 9]);
    assert_eq!(cls.lookup(&k), Some(&5000));
}

/// A key without a field the subtable needs misses it on presence and
/// reports only that presence (plus earlier stages), not values it
/// never read.
#[test]
fn staged_lookup_stops_at_the_first_stage_that_misses() {
    let mut cls = Classifier::default();
    let m = Match::any()
        .with(Oxm::exact_u64(Field::InPort, 1))
        .with(Oxm::exact_u64(Field::EthType, 0x0800))
        .with(Oxm::exact_u64(Field::IpProto, 6))
        .with(Oxm::exact_u64(Field::TcpDst, 80));
    cls.insert(5, &m, 1, 1);
    let mut k = FlowKey::default();
    k.set_u64(Field::InPort, 2);
    k.set_u64(Field::EthType, 0x0800);
    k.set_u64(Field::IpProto, 6);
    k.set_u64(Field::TcpDst, 80);
    let mut wc = FlowMask::default();
    assert_eq!(cls.lookup_wc(&k, &mut wc), None);
    assert_eq!(wc.fields().collect::<Vec<_>>(), [Field::InPort], "stage 0 missed: L2-L4 never read");
    k.set_u64(Field::InPort, 1);
    let mut wc = FlowMask::default();
    assert_eq!(cls.lookup_wc(&k, &mut wc), Some(&1));
    assert_eq!(wc.fields().count(), 4);
}
