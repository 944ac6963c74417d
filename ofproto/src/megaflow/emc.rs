//! The exact-match cache in front of the megaflows.

use super::entry::Megaflow;
use super::prefetch::prefetch;
use super::subtable::Acc;
use super::{MegaflowCache, NONE};
use crate::flow::FlowKey;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Key words an exact-match entry holds (two per present field: keys of
/// more than 16 fields are not cached there).
const EMC_WORDS: usize = 32;

/// The bit of a code that names an exact-match entry instead of a
/// megaflow slot.
pub(super) const EMC_CODE: u32 = 1 << 31;

/// One exact-match entry: a whole flow key and the megaflow it hit.
#[derive(Clone)]
pub(super) struct EmcEntry {
    hash: u64,
    /// Valid only when equal to the cache's generation.
    generation: u32,
    present: u64,
    words: [u64; EMC_WORDS],
    pub(super) mf: Option<Arc<Megaflow>>,
}

impl EmcEntry {
    #[inline]
    fn matches(&self, hash: u64, generation: u32, key: &FlowKey) -> bool {
        if self.hash != hash || self.generation != generation || self.present != key.present_bits() {
            return false;
        }
        if self.mf.as_ref().is_none_or(|m| m.dead.load(Ordering::Relaxed)) {
            return false;
        }
        let mut p = self.present;
        let mut n = 0;
        while p != 0 {
            let i = p.trailing_zeros() as usize;
            p &= p - 1;
            let w = key.words(i);
            if self.words.get(n..n + 2) != Some(&w[..]) {
                return false;
            }
            n += 2;
        }
        true
    }
}

/// A key the exact-match cache will take at the end of the batch.
pub(super) struct Pending {
    hash: u64,
    present: u64,
    words: [u64; EMC_WORDS],
    code: u32,
}

/// The exact-match cache: whole flow keys, two candidate entries per key
/// hash. Its entries are invalidated all at once by a new generation (a
/// new table snapshot), so it survives snapshots without being cleared.
pub(super) struct Emc {
    pub(super) entries: Vec<EmcEntry>,
    pub(super) generation: u32,
    /// Insert when the random draw is below it (`u32::MAX`: always).
    pub(super) threshold: u32,
    pub(super) rng: u64,
    /// Offers kept by the draw in this batch (never grows past a batch).
    pub(super) pending: Vec<Pending>,
}

/// The exact-match hash of a whole key: one multiply per word, none
/// depending on another, then a finaliser.
#[inline]
pub fn emc_hash(key: &FlowKey) -> u64 {
    let mut p = key.present_bits();
    let mut acc = Acc::new(p);
    while p != 0 {
        let i = p.trailing_zeros() as usize;
        p &= p - 1;
        let w = key.words(i);
        acc.add(i, w[0], w[1]);
    }
    acc.finish()
}

impl Emc {
    pub(super) fn new(entries: usize, inv_prob: u32) -> Emc {
        let n = entries.next_power_of_two().max(2);
        let empty = EmcEntry { hash: 0, generation: u32::MAX, present: 0, words: [0; EMC_WORDS], mf: None };
        let threshold = match inv_prob {
            0 => 0,
            1 => u32::MAX,
            k => u32::MAX / k,
        };
        Emc {
            entries: vec![empty; n],
            generation: 0,
            threshold,
            rng: 0x2545_f491_4f6c_dd1d,
            pending: Vec::with_capacity(64),
        }
    }

    #[inline]
    pub(super) fn slots(&self, hash: u64) -> [usize; 2] {
        let m = self.entries.len() - 1;
        [usize::try_from(hash).unwrap_or(0) & m, usize::try_from(hash >> 32).unwrap_or(0) & m]
    }

    #[inline]
    pub(super) fn find(&self, hash: u64, key: &FlowKey) -> Option<usize> {
        self.slots(hash).into_iter().find(|&i| self.entries[i].matches(hash, self.generation, key))
    }

    /// The configured probability's draw for `key`: what to insert, or
    /// None.
    #[inline]
    pub(super) fn draw(&mut self, hash: u64, key: &FlowKey, code: u32) -> Option<Pending> {
        if self.threshold == 0 {
            return None;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let draw = u32::try_from(self.rng >> 32).unwrap_or(0);
        if self.threshold != u32::MAX && draw >= self.threshold {
            return None;
        }
        let present = key.present_bits();
        if present.count_ones() as usize * 2 > EMC_WORDS {
            return None;
        }
        let mut words = [0u64; EMC_WORDS];
        let mut p = present;
        let mut n = 0;
        while p != 0 {
            let f = p.trailing_zeros() as usize;
            p &= p - 1;
            let w = key.words(f);
            words[n] = w[0];
            words[n + 1] = w[1];
            n += 2;
        }
        Some(Pending { hash, present, words, code })
    }

    /// Puts `p` with `mf` into one of its two entries: the one holding
    /// the same key, else a free one, else either.
    pub(super) fn insert(&mut self, p: &Pending, mf: Arc<Megaflow>) {
        let [a, b] = self.slots(p.hash);
        let g = self.generation;
        let same = |e: &EmcEntry| e.generation == g && e.hash == p.hash && e.present == p.present && e.words == p.words;
        let free = |e: &EmcEntry| e.generation != g || e.mf.as_ref().is_none_or(|m| m.dead.load(Ordering::Relaxed));
        let i = if same(&self.entries[a]) || (!same(&self.entries[b]) && free(&self.entries[a])) {
            a
        } else if same(&self.entries[b]) || free(&self.entries[b]) || self.rng & 1 == 0 {
            b
        } else {
            a
        };
        let e = &mut self.entries[i];
        e.hash = p.hash;
        e.generation = g;
        e.present = p.present;
        e.words = p.words;
        e.mf = Some(mf);
    }
}
impl MegaflowCache {
    /// Looks `keys` up in the exact-match cache: their hashes into
    /// `hashes` (for [`MegaflowCache::emc_offer`]), a code for each hit
    /// into `out` (left as it is for a miss).
    pub fn emc_lookup_batch(&mut self, keys: &[FlowKey], hashes: &mut [u64], out: &mut [u32]) {
        if self.emc.is_none() {
            self.emc = Some(Emc::new(self.cfg.emc_entries, self.cfg.emc_insert_inv_prob));
        }
        let Some(emc) = self.emc.as_ref() else { return };
        let n = keys.len().min(hashes.len()).min(out.len());
        for i in 0..n {
            hashes[i] = emc_hash(&keys[i]);
            for j in emc.slots(hashes[i]) {
                prefetch(std::ptr::from_ref(&emc.entries[j]).cast());
            }
        }
        for i in 0..n {
            if let Some(e) = emc.find(hashes[i], &keys[i]) {
                out[i] = EMC_CODE | u32::try_from(e).unwrap_or(0);
                self.counts.emc_hits += 1;
            }
        }
    }

    /// Offers `key` (exact-match hash `hash`, from
    /// [`MegaflowCache::emc_lookup_batch`]) and the megaflow `code` names
    /// to the exact-match cache, which takes it with the configured
    /// probability at the end of the batch (entries the batch's codes
    /// name stay as they are until then).
    #[inline]
    pub fn emc_offer(&mut self, hash: u64, key: &FlowKey, code: u32) {
        if code == NONE || code & EMC_CODE != 0 {
            return;
        }
        let Some(emc) = self.emc.as_mut() else { return };
        if let Some(p) = emc.draw(hash, key, code) {
            if emc.pending.len() < emc.pending.capacity() {
                emc.pending.push(p);
            }
        }
    }

    /// Puts the offers the draw kept into the exact-match cache.
    pub(super) fn emc_commit(&mut self) {
        let Some(mut emc) = self.emc.take() else { return };
        let mut pending = std::mem::take(&mut emc.pending);
        for p in &pending {
            emc.insert(p, self.get(p.code).clone());
            self.counts.emc_inserts += 1;
        }
        pending.clear();
        emc.pending = pending;
        self.emc = Some(emc);
    }
}
