//! Tuple-space search classifier (Srinivasan et al., as OVS uses it):
//! the rules of one flow table grouped into *subtables*, one per mask (the
//! set of fields a match uses and the bits of each); a lookup hashes the
//! key's masked bits once per subtable and probes its hash table, so it
//! costs one probe per distinct mask, whatever the number of rules.
//!
//! - Subtables are visited by descending maximum priority, and the walk
//!   stops at the first subtable whose rules cannot beat the best match so
//!   far: a table of many flows of one shape costs one probe.
//! - **Staged lookup**: a subtable's fields are hashed in four stages
//!   (metadata, L2, L3, L4) and every stage but the last has a set of the
//!   partial hashes its rules produce; a key whose partial hash is not in
//!   the set misses there, without reading the later stages' fields.
//! - **Prefix tracking**: for IPv4 and IPv6 addresses matched by prefix
//!   (`ipv4_src`, `ipv4_dst`, `ipv6_src`, `ipv6_dst`), a subtable keeps
//!   its rules' prefixes sorted; when a lookup misses the subtable from the
//!   L3 stage on, it finds how many leading bits the key's address shares
//!   with the closest of them. When none has all of the subtable's prefix,
//!   the miss is reported with only the earlier stages' bits and those
//!   shared bits and one more (a /24 that no packet to `10.200.0.0/9` can
//!   match costs a megaflow 9 bits, not 24), as OVS's prefix tries do. A
//!   hit costs no prefix search.
//! - **Wildcards**: a lookup can report every bit it examined (presence of
//!   fields included) into a [`FlowMask`]. Any key equal to this one on
//!   those bits gets the same answer from the same rules: the megaflow a
//!   datapath may cache for it.
//!
//! Subtables, and the shards of each subtable's maps, are shared
//! (`Arc`) between the control side's classifier and the snapshots the
//! datapath holds; a change copies only the shard it touches, and only
//! when a snapshot still shares it.

use crate::flow::FlowKey;
use crate::ofp::oxm::{Field, Match};
use crate::persist::{Shards, SortedSet};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

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
pub const N_FIELDS: usize = 40;

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
        InPort | InPhyPort | Metadata | TunnelId => 0,
        EthDst | EthSrc | EthType | VlanVid | VlanPcp | MplsLabel | MplsTc | MplsBos | PbbIsid => 1,
        IpDscp | IpEcn | IpProto | Ipv4Src | Ipv4Dst | ArpOp | ArpSpa | ArpTpa | ArpSha | ArpTha | Ipv6Src
        | Ipv6Dst | Ipv6Flabel | Ipv6Exthdr => 2,
        TcpSrc | TcpDst | UdpSrc | UdpDst | SctpSrc | SctpDst | Icmpv4Type | Icmpv4Code | Icmpv6Type | Icmpv6Code
        | Ipv6NdTarget | Ipv6NdSll | Ipv6NdTll => 3,
    }
}

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31)
}

/// A rule's place among equal ones: higher priority first, then the
/// older (lower sequence number) first, as the table's own order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Rank(u16, std::cmp::Reverse<u64>);

#[derive(Clone, Debug)]
struct Rule<T> {
    rank: Rank,
    /// The masked value words of each of the subtable's fields (shared by
    /// the copies of the rule's leaf).
    values: Arc<[[u64; 2]]>,
    item: T,
}

/// Rules of a subtable by the hash of their masked values, best first.
type RuleMap<T> = HashMap<u64, Vec<Rule<T>>, IdBuild>;
type IdSet = HashSet<u64, IdBuild>;

/// Fields whose prefixes a subtable tracks (all of the L3 stage).
const PREFIX_STAGE: usize = 2;
/// Fields whose prefixes a subtable tracks.
const PREFIX_FIELDS: [Field; 4] = [Field::Ipv4Src, Field::Ipv4Dst, Field::Ipv6Src, Field::Ipv6Dst];

/// A field's value words as one number, its first byte the most
/// significant (an address's leading bits are the number's).
#[inline]
fn as_prefix(w: [u64; 2]) -> u128 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w[0].to_ne_bytes());
    b[8..].copy_from_slice(&w[1].to_ne_bytes());
    u128::from_be_bytes(b)
}

/// The value words of the first `n` bits (`n` >= 1).
#[inline]
fn prefix_words(n: u32) -> [u64; 2] {
    words(&(u128::MAX << (128 - n.min(128))).to_be_bytes())
}

/// The prefixes (of one length) a subtable's rules match on one field,
/// sorted (shared with snapshots, see [`SortedSet`]).
#[derive(Clone, Debug)]
struct PrefixSet {
    /// The prefix length (bits).
    len: u32,
    set: SortedSet,
}

impl PrefixSet {
    /// How many leading bits `a` (masked to the prefix length) shares with
    /// the closest member, at most the prefix length: the length itself
    /// when a member is `a`'s prefix. The closest members are `a`'s
    /// neighbours in order.
    fn common(&self, a: u128) -> u32 {
        let (below, above) = self.set.around(a);
        [below, above].into_iter().flatten().map(|x| (a ^ x).leading_zeros()).max().unwrap_or(0).min(self.len)
    }
}

#[derive(Clone, Debug)]
struct Subtable<T> {
    mask: FlowMask,
    /// (field id, bits) in stage order.
    fields: Box<[(usize, [u64; 2])]>,
    /// How many of `fields` the stages up to s cover.
    stage_end: [usize; 4],
    /// Partial hashes of the rules through stage s, for the stages before
    /// the subtable's last one.
    stage_hashes: [Shards<IdSet>; 3],
    /// Rules by the hash of their masked values, best first.
    rules: Shards<RuleMap<T>>,
    /// The address fields the mask matches by a prefix: (index in
    /// `fields`, the rules' prefixes).
    prefixes: Box<[(usize, PrefixSet)]>,
    /// Rules per priority (for the maximum after removals).
    priorities: BTreeMap<u16, usize>,
    len: usize,
}

impl<T: Clone> Subtable<T> {
    fn new(mask: FlowMask) -> Subtable<T> {
        let mut fields: Vec<(usize, [u64; 2])> = mask.fields().map(|f| (f as usize, mask.bits[f as usize])).collect();
        fields.sort_by_key(|(i, _)| (Field::from_id(u8::try_from(*i).unwrap_or(0)).map_or(3, stage), *i));
        let mut stage_end = [0; 4];
        for (s, end) in stage_end.iter_mut().enumerate() {
            *end = fields
                .iter()
                .filter(|(i, _)| Field::from_id(u8::try_from(*i).unwrap_or(0)).map_or(3, stage) <= s)
                .count();
        }
        let prefixes = fields
            .iter()
            .enumerate()
            .filter(|(_, (i, _))| PREFIX_FIELDS.iter().any(|f| *f as usize == *i))
            .filter_map(|(at, (_, bits))| {
                let m = as_prefix(*bits);
                let len = m.leading_ones();
                (len > 0 && m.count_ones() == len).then(|| (at, PrefixSet { len, set: SortedSet::default() }))
            })
            .collect();
        Subtable {
            mask,
            prefixes,
            fields: fields.into_boxed_slice(),
            stage_end,
            stage_hashes: Default::default(),
            rules: Shards::default(),
            priorities: BTreeMap::new(),
            len: 0,
        }
    }

    fn max_priority(&self) -> Option<u16> {
        self.priorities.keys().next_back().copied()
    }

    /// Stages whose partial hash is worth a set: those that end before the
    /// last field and after at least one.
    fn staged(&self, s: usize) -> bool {
        self.stage_end[s] > 0
            && self.stage_end[s] < self.fields.len()
            && (s == 0 || self.stage_end[s] > self.stage_end[s - 1])
    }

    /// The hashes of a rule's masked values: partial ones per stage, then
    /// the whole.
    fn hashes(&self, values: &[[u64; 2]]) -> ([u64; 3], u64) {
        let mut partial = [0u64; 3];
        let mut h = 0u64;
        let mut at = 0;
        for (s, p) in partial.iter_mut().enumerate() {
            while at < self.stage_end[s] {
                h = mix(mix(h, values[at][0]), values[at][1]);
                at += 1;
            }
            *p = h;
        }
        while at < self.fields.len() {
            h = mix(mix(h, values[at][0]), values[at][1]);
            at += 1;
        }
        (partial, h)
    }

    /// Looks `key` (whose present fields are `present`) up here: the best
    /// rule it matches here, how many of `fields` the lookup read, and the
    /// field whose absence ended it.
    #[inline]
    fn probe(&self, key: &FlowKey, present: u64) -> (Option<&Rule<T>>, usize, Option<usize>) {
        let mut h = 0u64;
        let mut at = 0;
        for s in 0..4 {
            while at < self.stage_end[s] {
                let (i, bits) = self.fields[at];
                if present & (1 << i) == 0 {
                    return (None, at, Some(i));
                }
                let v = key.words(i);
                h = mix(mix(h, v[0] & bits[0]), v[1] & bits[1]);
                at += 1;
            }
            if s < 3 && self.staged(s) && !self.stage_hashes[s].get(h).contains(&h) {
                return (None, at, None);
            }
        }
        let hit = self.rules.get(h).get(&h).and_then(|bucket| {
            bucket.iter().find(|r| {
                r.values.iter().zip(self.fields.iter()).all(|(want, (i, bits))| {
                    let v = key.words(*i);
                    v[0] & bits[0] == want[0] && v[1] & bits[1] == want[1]
                })
            })
        });
        (hit, at, None)
    }

    /// Prefix tracking: when none of this subtable's prefixes of a tracked
    /// address is the key's (all present), that address's field and the
    /// bits that show it: those it shares with the closest prefix, and one
    /// more. A miss here costs a megaflow those bits, not the whole mask.
    fn prefix_miss(&self, key: &FlowKey) -> Option<(usize, [u64; 2])> {
        self.prefixes.iter().find_map(|(at, set)| {
            let i = self.fields[*at].0;
            let a = as_prefix(key.words(i)) & (u128::MAX << (128 - set.len));
            let shared = set.common(a);
            (shared < set.len).then(|| (i, prefix_words(shared + 1)))
        })
    }
}

/// The classifier of one flow table; `T` is what a rule yields (an entry).
#[derive(Clone, Debug)]
pub struct Classifier<T> {
    /// Subtables by descending maximum priority.
    subtables: Vec<Arc<Subtable<T>>>,
    by_mask: HashMap<FlowMask, usize>,
    len: usize,
}

impl<T> Default for Classifier<T> {
    fn default() -> Classifier<T> {
        Classifier { subtables: Vec::new(), by_mask: HashMap::new(), len: 0 }
    }
}

/// The masked value words of `m` in `st`'s field order.
fn match_values(m: &Match, fields: &[(usize, [u64; 2])]) -> Arc<[[u64; 2]]> {
    fields
        .iter()
        .map(|(i, bits)| {
            let o = m.fields.iter().find(|o| o.field as usize == *i);
            let mut b = [0u8; 16];
            if let Some(o) = o {
                b[..o.field.width()].copy_from_slice(o.value());
            }
            let w = words(&b);
            [w[0] & bits[0], w[1] & bits[1]]
        })
        .collect()
}

impl<T: Clone> Classifier<T> {
    /// Rules in it.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no rule.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Subtables (distinct masks) in it.
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    /// Adds a rule of `priority` matching `m`, yielding `item`; `seq`
    /// (unique in the classifier) orders it among rules of equal priority,
    /// lower first, and names it for [`Classifier::remove`] and
    /// [`Classifier::update`].
    pub fn insert(&mut self, priority: u16, m: &Match, seq: u64, item: T) {
        let mask = FlowMask::of_match(m);
        let si = match self.by_mask.get(&mask) {
            Some(&i) => i,
            None => {
                self.subtables.push(Arc::new(Subtable::new(mask.clone())));
                self.by_mask.insert(mask, self.subtables.len() - 1);
                self.subtables.len() - 1
            }
        };
        let st = Arc::make_mut(&mut self.subtables[si]);
        let values = match_values(m, &st.fields);
        let (partial, h) = st.hashes(&values);
        for (at, set) in st.prefixes.iter_mut() {
            set.set.insert(as_prefix(values[*at]));
        }
        let rule = Rule { rank: Rank(priority, std::cmp::Reverse(seq)), values, item };
        st.rules.update(h, |m| {
            let bucket = m.entry(h).or_default();
            let at = bucket.partition_point(|r| r.rank > rule.rank);
            bucket.insert(at, rule);
        });
        for (s, p) in partial.iter().enumerate() {
            if st.staged(s) && !st.stage_hashes[s].get(*p).contains(p) {
                st.stage_hashes[s].update(*p, |set| set.insert(*p));
            }
        }
        *st.priorities.entry(priority).or_default() += 1;
        st.len += 1;
        self.len += 1;
        self.resort();
    }

    /// The subtable and bucket of rule (`priority`, `m`, `seq`).
    fn locate(&mut self, priority: u16, m: &Match, seq: u64) -> Option<(usize, u64, usize)> {
        let si = *self.by_mask.get(&FlowMask::of_match(m))?;
        let st = &self.subtables[si];
        let (_, h) = st.hashes(&match_values(m, &st.fields));
        let rank = Rank(priority, std::cmp::Reverse(seq));
        let i = st.rules.get(h).get(&h)?.iter().position(|r| r.rank == rank)?;
        Some((si, h, i))
    }

    /// The sequence number and item of the rule of `priority` whose match
    /// has `m`'s mask and values and whose item passes `same` (a hash
    /// probe, not a scan).
    pub fn find_exact(&self, priority: u16, m: &Match, same: impl Fn(&T) -> bool) -> Option<(u64, &T)> {
        let st = &self.subtables[*self.by_mask.get(&FlowMask::of_match(m))?];
        let values = match_values(m, &st.fields);
        let (_, h) = st.hashes(&values);
        st.rules
            .get(h)
            .get(&h)?
            .iter()
            .find(|r| r.rank.0 == priority && r.values == values && same(&r.item))
            .map(|r| (r.rank.1 .0, &r.item))
    }

    /// Gives rule (`priority`, `m`, `seq`) a new item (its place kept);
    /// whether it was there.
    pub fn update(&mut self, priority: u16, m: &Match, seq: u64, item: T) -> bool {
        let Some((si, h, i)) = self.locate(priority, m, seq) else { return false };
        let st = Arc::make_mut(&mut self.subtables[si]);
        st.rules.update(h, |m| {
            if let Some(r) = m.get_mut(&h).and_then(|b| b.get_mut(i)) {
                r.item = item;
            }
        });
        true
    }

    /// Removes rule (`priority`, `m`, `seq`); whether it was there.
    pub fn remove(&mut self, priority: u16, m: &Match, seq: u64) -> bool {
        let Some((si, h, i)) = self.locate(priority, m, seq) else { return false };
        let st = Arc::make_mut(&mut self.subtables[si]);
        let gone = st.rules.update(h, |map| {
            let bucket = map.get_mut(&h)?;
            let r = bucket.remove(i);
            if bucket.is_empty() {
                map.remove(&h);
            }
            Some(r)
        });
        if let Some(r) = gone {
            for (at, set) in st.prefixes.iter_mut() {
                set.set.remove(as_prefix(r.values[*at]));
            }
        }
        if let Some(n) = st.priorities.get_mut(&priority) {
            *n -= 1;
            if *n == 0 {
                st.priorities.remove(&priority);
            }
        }
        st.len -= 1;
        self.len -= 1;
        if st.len == 0 {
            self.subtables.remove(si);
            self.reindex();
            return true;
        }
        // Partial-hash sets only grow between rebuilds: a stale hash costs
        // a probe, never a wrong answer. Rebuilt once mostly stale.
        if st.stage_hashes.iter().any(|s| s.len() > 2 * st.len + 16) {
            Self::rebuild_stages(st);
        }
        self.resort();
        true
    }

    fn rebuild_stages(st: &mut Subtable<T>) {
        let mut sets: [Shards<IdSet>; 3] = Default::default();
        for r in st.rules.leaves().flat_map(|m| m.values()).flatten() {
            let (partial, _) = st.hashes(&r.values);
            for (s, p) in partial.iter().enumerate() {
                if st.staged(s) && !sets[s].get(*p).contains(p) {
                    sets[s].update(*p, |set| set.insert(*p));
                }
            }
        }
        st.stage_hashes = sets;
    }

    /// Puts the subtables back in order after a maximum priority changed.
    fn resort(&mut self) {
        let key = |s: &Arc<Subtable<T>>| std::cmp::Reverse(s.max_priority());
        if self.subtables.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
            return;
        }
        self.subtables.sort_by_key(key);
        self.reindex();
    }

    fn reindex(&mut self) {
        self.by_mask = self.subtables.iter().enumerate().map(|(i, s)| (s.mask.clone(), i)).collect();
    }

    /// The best rule `key` matches: highest priority, then oldest.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<&T> {
        self.find(key, None)
    }

    /// As [`Classifier::lookup`], adding to `wc` every bit of `key` the
    /// answer depends on.
    pub fn lookup_wc(&self, key: &FlowKey, wc: &mut FlowMask) -> Option<&T> {
        self.find(key, Some(wc))
    }

    fn find(&self, key: &FlowKey, mut wc: Option<&mut FlowMask>) -> Option<&T> {
        let present = key.present_bits();
        let mut best: Option<&Rule<T>> = None;
        for st in &self.subtables {
            let Some(max) = st.max_priority() else { continue };
            if best.is_some_and(|b| b.rank.0 > max) {
                break;
            }
            let (hit, read, absent) = st.probe(key, present);
            if let Some(wc) = wc.as_deref_mut() {
                // A miss from the L3 stage on: prefix tracking may show it
                // with fewer bits than the probe read (the earlier stages',
                // which most megaflows hold anyway, and those of one
                // address).
                let before = st.stage_end[PREFIX_STAGE - 1];
                let shown = (hit.is_none() && absent.is_none() && read > before).then(|| st.prefix_miss(key)).flatten();
                match shown {
                    Some((i, bits)) => {
                        note_fields(wc, &st.fields[..before]);
                        wc.set_bits(i, bits);
                    }
                    None => {
                        note_fields(wc, &st.fields[..read]);
                        if let Some(i) = absent {
                            wc.present |= 1 << i;
                        }
                    }
                }
            }
            if let Some(r) = hit {
                if best.is_none_or(|b| r.rank > b.rank) {
                    best = Some(r);
                }
            }
        }
        best.map(|r| &r.item)
    }
}

/// Adds the presence and bits of `fields` to `wc`.
fn note_fields(wc: &mut FlowMask, fields: &[(usize, [u64; 2])]) {
    for &(i, bits) in fields {
        wc.set_bits(i, bits);
    }
}

#[cfg(test)]
mod tests {
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
}
