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

mod mask;
#[cfg(test)]
mod tests;

use mask::mix;
pub(crate) use mask::words;
pub use mask::{stage, FlowMask, IdBuild, IdHasher, WordBuild, WordHasher, N_FIELDS};

use crate::flow::FlowKey;
use crate::ofp::oxm::{Field, Match};
use crate::persist::{Shards, SortedSet};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

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
