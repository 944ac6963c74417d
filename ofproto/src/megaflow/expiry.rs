//! Megaflows leaving a cache: idle expiry, swept a few thousand at a time
//! between batches, and revalidation against flow table changes.

use super::entry::Megaflow;
use super::subtable::word;
use super::{MegaflowCache, SWEEP_SLOTS};
use crate::ofp::Match;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A field of a changed rule's match: id, mask bits, value bits.
type ChangeField = (usize, [u64; 2], [u64; 2]);

/// A flow table change as the megaflow caches test it: the table and
/// the region of keys the added, changed or removed rule matches.
#[derive(Debug, Clone)]
pub struct Change {
    table: u8,
    /// (field id, mask bits, value bits) of the rule's match.
    fields: Box<[ChangeField]>,
}

impl Change {
    /// The change of a rule matching `m` in table `table`.
    pub fn new(table: u8, m: &Match) -> Change {
        let fields = m
            .fields
            .iter()
            .map(|o| {
                let w = o.field.width();
                let (mut v, mut k) = ([0u8; 16], [0u8; 16]);
                v[..w].copy_from_slice(o.value());
                match o.mask() {
                    Some(b) => k[..w].copy_from_slice(b),
                    None => k[..w].fill(0xff),
                }
                let (v, k) = (crate::classifier::words(&v), crate::classifier::words(&k));
                (o.field as usize, k, [v[0] & k[0], v[1] & k[1]])
            })
            .collect();
        Change { table, fields }
    }
}
impl MegaflowCache {
    /// Removes megaflows unused for `max_idle_ms` at `now_ms`, looking
    /// at a few thousand per call so that a big cache never stalls its
    /// PMD thread; the sweep goes on where it stopped. Only between
    /// batches (codes change).
    pub fn expire(&mut self, now_ms: u64) {
        let idle = self.cfg.max_idle_ms;
        // A call every 1/256 of the idle time at most: a round of 64
        // calls over a full cache takes a quarter of it.
        if now_ms < self.next_sweep_ms {
            return;
        }
        self.next_sweep_ms = now_ms + (idle / 256).max(1);
        let mut budget = SWEEP_SLOTS;
        while budget > 0 {
            let (si, slot) = self.sweep;
            let Some(st) = self.subtables.get_mut(si) else {
                // A round ends: subtables left empty go (their index
                // numbers change, as after a ranking).
                self.sweep = (0, 0);
                if self.subtables.iter().any(|s| s.flows.is_empty()) {
                    self.subtables.retain(|s| !s.flows.is_empty());
                    self.reindex();
                }
                return;
            };
            if slot >= st.flows.len() {
                self.sweep = (si + 1, 0);
                continue;
            }
            budget -= 1;
            // In a big cache each megaflow is a miss: start loading the
            // ones a few slots on (a sweep of 4,096 cold megaflows one
            // miss after the other would stall the thread a millisecond).
            if let Some(f) = st.flows.get(slot + 16) {
                Megaflow::prefetch_hit_at(Arc::as_ptr(f).addr());
            }
            let used = st.flows[slot].used_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(used) < idle {
                self.sweep.1 += 1;
                continue;
            }
            let bytes = st.retire(slot);
            self.len -= 1;
            self.bytes -= bytes;
            self.counts.expired += 1;
            self.counts.bytes_dropped += bytes;
        }
    }

    /// Keeps this cache for the next table snapshot when the tables
    /// changed only by `changes` (flow adds, changes and removals): every
    /// megaflow a change may affect is removed (its exact-match entries
    /// then miss), the others stay,
    /// their decisions the same under the new tables. False (nothing
    /// done) when testing every megaflow against every change would cost
    /// more than a few milliseconds: the caller starts an empty cache.
    pub fn revalidate(&mut self, changes: &[Change]) -> bool {
        // Changes grouped by table and shape (fields and their mask
        // bits): each megaflow subtable meets each group once, through a
        // set of the group's values projected on the bits both look at.
        // A change affects a megaflow when its decision looked at the
        // change's table and the two agree on every bit both examine (or
        // it looked at that table with a key it had changed: always).
        type Shape = Vec<(usize, [u64; 2])>;
        let mut groups: Vec<(u8, Shape, Vec<&Change>)> = Vec::new();
        let mut by_shape: HashMap<(u8, Shape), usize, crate::classifier::WordBuild> = HashMap::default();
        for c in changes {
            let shape: Shape = c.fields.iter().map(|&(i, b, _)| (i, b)).collect();
            let gi = *by_shape.entry((c.table, shape.clone())).or_insert_with(|| {
                groups.push((c.table, shape, Vec::new()));
                groups.len() - 1
            });
            groups[gi].2.push(c);
        }
        // The work: every change once per subtable, every megaflow once
        // per group.
        let work = self.subtables.len().saturating_mul(changes.len()) + groups.len().saturating_mul(self.len);
        if work > 1 << 20 {
            return false;
        }
        let mut v: Vec<u64> = Vec::new();
        for st in &mut self.subtables {
            let mut affected = vec![false; st.flows.len()];
            for (table, shape, members) in &groups {
                // Per field of the shape: its place among the subtable's
                // fields and the bits both examine.
                let proj: Vec<(usize, Option<usize>, [u64; 2])> = shape
                    .iter()
                    .map(|&(i, rbits)| match st.fields.iter().position(|(f, _)| *f == i) {
                        Some(n) => (i, Some(n), [rbits[0] & st.fields[n].1[0], rbits[1] & st.fields[n].1[1]]),
                        None => (i, None, [0, 0]),
                    })
                    .collect();
                let set: HashSet<Vec<u64>, crate::classifier::WordBuild> = members
                    .iter()
                    .map(|c| {
                        proj.iter()
                            .zip(c.fields.iter())
                            .flat_map(|(&(_, _, common), &(_, _, rv))| [rv[0] & common[0], rv[1] & common[1]])
                            .collect()
                    })
                    .collect();
                for (slot, hit) in affected.iter_mut().enumerate() {
                    let mf = &st.flows[slot];
                    if *hit || !mf.visited(*table) {
                        continue;
                    }
                    if mf.rewritten_for(*table) {
                        *hit = true;
                        continue;
                    }
                    let k = st.key(slot);
                    // The megaflow covers only keys without a field the
                    // rules need: no overlap.
                    if proj.iter().any(|&(i, n, _)| n.is_some() && word(k, 0) & (1 << i) == 0) {
                        continue;
                    }
                    v.clear();
                    for &(_, n, common) in &proj {
                        let kv = n.map_or([0, 0], |n| st.stored(k, n));
                        v.extend([kv[0] & common[0], kv[1] & common[1]]);
                    }
                    *hit = set.contains(&v[..]);
                }
            }
            // Highest slot first: the last slot moved into a removed one
            // is then always one already looked at and kept.
            for slot in (0..affected.len()).rev().filter(|s| affected[*s]) {
                let bytes = st.retire(slot);
                self.len -= 1;
                self.bytes -= bytes;
                self.counts.revalidated += 1;
                self.counts.bytes_dropped += bytes;
            }
        }
        self.subtables.retain(|s| !s.flows.is_empty());
        self.reindex();
        self.sweep = (0, 0);
        true
    }
}
