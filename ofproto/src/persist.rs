//! Containers the control thread changes while datapath snapshots share
//! them: a change copies only the small part it touches when a snapshot
//! still holds that part (copy on write, two levels deep), so that
//! publishing the tables after every flow-mod costs about as much with two
//! million rules as with ten.

use std::sync::Arc;

/// A collection [`Shards`] can split by key hash.
pub(crate) trait Shard: Default + Clone {
    /// Keys in it.
    fn size(&self) -> usize;
    /// Copies its entries into `out`, each to its shard.
    fn spread(&self, out: &mut Shards<Self>);
}

/// Keys per leaf, on average, before the leaves multiply (by 4).
const LEAF: usize = 32;
/// Leaves at most (256 arrays of 256).
const MAX_LEAVES: usize = 1 << 16;

/// A map or set split by key hash into leaves, grouped in middle arrays
/// under one top array; the leaves multiply as it grows. A change copies
/// the top array, one middle array and one leaf (about [`LEAF`] keys) when
/// a snapshot shares them: at most 256 + 256 pointers and a leaf.
#[derive(Clone, Debug)]
pub(crate) struct Shards<M> {
    /// log2 of the leaves per middle array.
    mid_bits: u32,
    /// Leaves - 1.
    leaf_mask: u64,
    top: Box<[Arc<[Arc<M>]>]>,
    len: usize,
}

impl<M: Shard> Default for Shards<M> {
    fn default() -> Shards<M> {
        Shards::with_leaves(1)
    }
}

impl<M: Shard> Shards<M> {
    fn with_leaves(leaves: usize) -> Shards<M> {
        let mid_bits = leaves.trailing_zeros().div_ceil(2);
        let mids = leaves >> mid_bits;
        let top = (0..mids).map(|_| (0..1usize << mid_bits).map(|_| Arc::new(M::default())).collect()).collect();
        Shards { mid_bits, leaf_mask: leaves as u64 - 1, top, len: 0 }
    }

    /// The (middle array, leaf) of hash `h`: bits the leaves' own hash
    /// tables do not use for buckets.
    #[inline]
    fn at(&self, h: u64) -> (usize, usize) {
        let leaf = usize::try_from((h >> 32) & self.leaf_mask).unwrap_or(0);
        (leaf >> self.mid_bits, leaf & ((1 << self.mid_bits) - 1))
    }

    /// The leaf of hash `h`.
    #[inline]
    pub(crate) fn get(&self, h: u64) -> &M {
        let (i, j) = self.at(h);
        &self.top[i][j]
    }

    /// Changes the leaf of hash `h` with `f` (copied first when a snapshot
    /// shares it); the leaves multiply when they hold more than [`LEAF`]
    /// keys each on average.
    pub(crate) fn update<R>(&mut self, h: u64, f: impl FnOnce(&mut M) -> R) -> R {
        let (i, j) = self.at(h);
        let leaf = Arc::make_mut(&mut Arc::make_mut(&mut self.top[i])[j]);
        let before = leaf.size();
        let r = f(leaf);
        self.len = (self.len + leaf.size()).saturating_sub(before);
        let leaves = self.top.len() << self.mid_bits;
        if self.len > LEAF * leaves && leaves < MAX_LEAVES {
            let mut out = Shards::with_leaves(leaves * 4);
            for m in self.leaves() {
                m.spread(&mut out);
            }
            *self = out;
        }
        r
    }

    /// Every leaf.
    pub(crate) fn leaves(&self) -> impl Iterator<Item = &M> {
        self.top.iter().flat_map(|m| m.iter()).map(|a| &**a)
    }

    /// Keys in all leaves.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl<V: Clone, S: std::hash::BuildHasher + Default + Clone> Shard for std::collections::HashMap<u64, V, S> {
    fn size(&self) -> usize {
        self.len()
    }
    fn spread(&self, out: &mut Shards<Self>) {
        for (k, v) in self {
            out.update(*k, |m| m.insert(*k, v.clone()));
        }
    }
}

impl<S: std::hash::BuildHasher + Default + Clone> Shard for std::collections::HashSet<u64, S> {
    fn size(&self) -> usize {
        self.len()
    }
    fn spread(&self, out: &mut Shards<Self>) {
        for k in self {
            out.update(*k, |m| m.insert(*k));
        }
    }
}

/// Values per chunk before it splits in two (few in tests, so that
/// splits happen).
const CHUNK: usize = if cfg!(test) { 8 } else { 256 };
/// Chunks per group before it splits in two.
const GROUP: usize = if cfg!(test) { 4 } else { 64 };

type Chunk = Arc<Vec<u128>>;

/// A sorted multiset of numbers in chunks of at most [`CHUNK`], grouped by
/// at most [`GROUP`]: a change copies the list of groups, one group's
/// chunk list and one chunk when a snapshot shares them. Neither chunks
/// nor groups are ever empty.
#[derive(Clone, Debug, Default)]
pub(crate) struct SortedSet {
    groups: Vec<Arc<Vec<Chunk>>>,
}

fn last_of(g: &[Chunk]) -> u128 {
    g.last().and_then(|c| c.last()).copied().unwrap_or(0)
}

impl SortedSet {
    /// The (group, chunk) of the first value at or above `v`, if any.
    fn seek(&self, v: u128) -> Option<(usize, usize)> {
        let gi = self.groups.partition_point(|g| last_of(g) < v);
        let g = self.groups.get(gi)?;
        Some((gi, g.partition_point(|c| c.last().is_some_and(|l| *l < v))))
    }

    /// Adds one `v`.
    pub(crate) fn insert(&mut self, v: u128) {
        let Some(last) = self.groups.len().checked_sub(1) else {
            self.groups.push(Arc::new(vec![Arc::new(vec![v])]));
            return;
        };
        // Above every value: into the last chunk.
        let (gi, ci) = self.seek(v).unwrap_or((last, self.groups[last].len() - 1));
        let g = Arc::make_mut(&mut self.groups[gi]);
        let c = Arc::make_mut(&mut g[ci]);
        let at = c.partition_point(|x| *x < v);
        c.insert(at, v);
        if c.len() > CHUNK {
            let tail = c.split_off(c.len() / 2);
            g.insert(ci + 1, Arc::new(tail));
            if g.len() > GROUP {
                let tail = g.split_off(g.len() / 2);
                self.groups.insert(gi + 1, Arc::new(tail));
            }
        }
    }

    /// Removes one `v`; whether there was one.
    pub(crate) fn remove(&mut self, v: u128) -> bool {
        // The first chunk whose last value is at or above `v` holds `v`
        // if any chunk does.
        let Some((gi, ci)) = self.seek(v) else { return false };
        let Ok(at) = self.groups[gi][ci].binary_search(&v) else { return false };
        let g = Arc::make_mut(&mut self.groups[gi]);
        let c = Arc::make_mut(&mut g[ci]);
        c.remove(at);
        if c.is_empty() {
            g.remove(ci);
            if g.is_empty() {
                self.groups.remove(gi);
            }
        }
        true
    }

    /// The greatest value below `v` and the least at or above it.
    pub(crate) fn around(&self, v: u128) -> (Option<u128>, Option<u128>) {
        let Some((gi, ci)) = self.seek(v) else { return (self.groups.last().map(|g| last_of(g)), None) };
        let g = &self.groups[gi];
        let c = &g[ci];
        let p = c.partition_point(|x| *x < v);
        let below = match p.checked_sub(1) {
            Some(q) => c.get(q).copied(),
            None if ci > 0 => g[ci - 1].last().copied(),
            None => gi.checked_sub(1).map(|q| last_of(&self.groups[q])),
        };
        (below, c.get(p).copied())
    }

    /// Every value, in order.
    #[cfg(test)]
    fn values(&self) -> Vec<u128> {
        self.groups.iter().flat_map(|g| g.iter()).flat_map(|c| c.iter()).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Random inserts and removals (enough to split chunks and groups,
        /// duplicates included), with a snapshot kept at each step: the set
        /// holds what a sorted vector holds, its neighbours of any value
        /// are the vector's, and the snapshots never change.
        #[test]
        fn sorted_set_is_a_sorted_multiset(ops in prop::collection::vec((prop::bool::weighted(0.7), 0u32..300, any::<u128>()), 1..3000)) {
            let mut s = SortedSet::default();
            let mut model: Vec<u128> = Vec::new();
            let mut snaps: Vec<(SortedSet, Vec<u128>)> = Vec::new();
            for (n, &(add, v, probe)) in ops.iter().enumerate() {
                let v = u128::from(v) << 100;
                if add || model.is_empty() {
                    s.insert(v);
                    let at = model.partition_point(|x| *x < v);
                    model.insert(at, v);
                } else {
                    let had = model.binary_search(&v).is_ok();
                    prop_assert_eq!(s.remove(v), had);
                    if let Ok(at) = model.binary_search(&v) {
                        model.remove(at);
                    }
                }
                if n % 256 == 0 {
                    snaps.push((s.clone(), model.clone()));
                }
                if n % 7 == 0 {
                    for q in [probe, v, v + 1, v.saturating_sub(1)] {
                        let p = model.partition_point(|x| *x < q);
                        let want = (p.checked_sub(1).map(|i| model[i]), model.get(p).copied());
                        prop_assert_eq!(s.around(q), want);
                    }
                }
            }
            prop_assert_eq!(s.values(), model);
            for (snap, then) in &snaps {
                prop_assert_eq!(&snap.values(), then);
            }
        }
    }

    /// A map grown from one leaf to thousands keeps every key, and a
    /// snapshot taken before the growth and the changes still has its own.
    #[test]
    fn shards_multiply_and_snapshots_keep_theirs() {
        let mut s: Shards<HashMap<u64, u64>> = Shards::default();
        let hash = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in 0..1000 {
            s.update(hash(i), |m| m.insert(hash(i), i));
        }
        let snap = s.clone();
        for i in 1000..200_000 {
            s.update(hash(i), |m| m.insert(hash(i), i));
        }
        for i in 0..500 {
            s.update(hash(i), |m| m.remove(&hash(i)));
        }
        assert_eq!(s.len(), 199_500);
        assert!(s.leaves().count() >= 4096, "{} leaves", s.leaves().count());
        assert!((0..200_000).all(|i| s.get(hash(i)).get(&hash(i)) == if i < 500 { None } else { Some(&i) }));
        assert_eq!(snap.len(), 1000);
        assert!((0..1000).all(|i| snap.get(hash(i)).get(&hash(i)) == Some(&i)));
        assert!(snap.get(hash(5000)).get(&hash(5000)).is_none());
    }
}
