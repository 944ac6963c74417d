//! Subtables: the megaflows of one mask, an open-addressing index over
//! compact, line-aligned stored keys.

use super::entry::Megaflow;
use super::prefetch::{prefetch, prefetch_span};
use crate::classifier::FlowMask;
use crate::flow::FlowKey;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Megaflows a subtable holds at least before its lookups prefetch the
/// stored keys and megaflows their probes name: below (about 200 bytes
/// each), they stay in the core's caches and the prefetches only cost.
pub(super) const PREFETCH_SLOTS: usize = 4096;

/// A hash over pairs of words whose multiplies do not wait for each
/// other: each word is multiplied on its own (xored with its position, so
/// that equal words in different fields differ) and the products summed;
/// a finaliser mixes the sums.
pub(super) struct Acc(u64, u64);

impl Acc {
    #[inline]
    pub(super) fn new(seed: u64) -> Acc {
        Acc(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 0)
    }

    #[inline]
    pub(super) fn add(&mut self, n: usize, w0: u64, w1: u64) {
        let n = n as u64;
        self.0 = self.0.wrapping_add((w0 ^ n).wrapping_mul(0xff51_afd7_ed55_8ccd));
        self.1 = self.1.wrapping_add((w1 ^ n).wrapping_mul(0xc4ce_b9fe_1a85_ec53));
    }

    #[inline]
    pub(super) fn finish(self) -> u64 {
        let mut h = self.0 ^ self.1.rotate_left(29);
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// What an absent field hashes as.
const ABSENT: u64 = 0x5bd1_e995;

/// A position of a subtable's index: `(hash >> 32) << 32 | (slot + 1)`
/// (0: empty), and the address of the slot's megaflow (exposed: a hit
/// reads the megaflow through it, see [`MegaflowCache::megaflow_at`]). A
/// position keeps its megaflow's address through every move (index
/// growth, removals, the last slot moved into a removed one), so a probe
/// starts loading the stored key and the megaflow together as soon as
/// the index is loaded, and a hit never reads the slot's reference (two
/// dependent misses per lookup in a big cache, not three or four).
#[derive(Clone, Copy, Default)]
pub(super) struct Pos {
    word: u64,
    at: usize,
}

/// A cache line of stored key words.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub(super) struct Line([u64; 8]);

/// Stored keys in the first segment of a subtable's arena; segment
/// `j >= 1` holds `SEG0 << (j - 1)`, so the arena doubles as a vector
/// does but never moves a key (a vector of over-aligned lines would be
/// copied whole at each doubling: a stall of milliseconds on the PMD
/// thread at a million megaflows).
const SEG0: usize = 16;

/// The (segment, index in it) of stored key `slot`.
#[inline]
pub(super) fn seg(slot: usize) -> (usize, usize) {
    if slot < SEG0 {
        return (0, slot);
    }
    let k = usize::try_from(usize::BITS - 1 - (slot / SEG0).leading_zeros()).unwrap_or(0);
    (k + 1, slot - (SEG0 << k))
}

/// Stored keys segment `j` holds.
pub(super) fn seg_len(j: usize) -> usize {
    if j == 0 {
        SEG0
    } else {
        SEG0 << (j - 1)
    }
}

/// Words a field whose mask words are `bits` takes in a stored key: one,
/// two where the mask has bits in the second.
#[inline]
fn field_words(bits: [u64; 2]) -> usize {
    1 + usize::from(bits[1] != 0)
}

/// Word `w` of the stored key in `row`.
#[inline]
pub(super) fn word(row: &[Line], w: usize) -> u64 {
    row[w / 8].0[w % 8]
}

/// Megaflows of one mask: an open-addressing index of [`Pos`]itions over
/// a flat arena of masked keys, so a probe reads one index position and
/// one stored key. A stored key is compact: the presence word, then each
/// field's masked value in one word, or two where the mask has bits in
/// the second (an IPv6 address); padded to whole cache lines and aligned
/// to them (a 5-tuple key with ports and addresses takes one line).
pub(super) struct Subtable {
    pub(super) mask: Arc<FlowMask>,
    /// (field id, bits) of the mask.
    pub(super) fields: Box<[(usize, [u64; 2])]>,
    /// Each field's first word in a stored key, and whether it has two.
    pub(super) at: Box<[(usize, bool)]>,
    /// Words per stored key in `keys` (a multiple of 8: whole lines).
    pub(super) stride: usize,
    /// A power of two long, at most half full.
    pub(super) index: Vec<Pos>,
    /// The stored keys, in segments (see [`SEG0`]).
    pub(super) keys: Vec<Box<[Line]>>,
    pub(super) flows: Vec<Arc<Megaflow>>,
    pub(super) hits: u64,
}

impl Subtable {
    pub(super) fn new(mask: Arc<FlowMask>) -> Subtable {
        let fields: Box<[(usize, [u64; 2])]> = mask.fields().map(|f| (f as usize, mask.bits[f as usize])).collect();
        let mut next = 1;
        let at: Box<[(usize, bool)]> = fields
            .iter()
            .map(|&(_, bits)| {
                let o = next;
                next += field_words(bits);
                (o, field_words(bits) == 2)
            })
            .collect();
        let stride = next.next_multiple_of(8);
        Subtable {
            mask,
            fields,
            at,
            stride,
            index: vec![Pos::default(); 16],
            keys: Vec::new(),
            flows: Vec::new(),
            hits: 0,
        }
    }

    /// Field `n`'s masked value words in stored key `k`.
    #[inline]
    pub(super) fn stored(&self, k: &[Line], n: usize) -> [u64; 2] {
        let (o, wide) = self.at[n];
        [word(k, o), if wide { word(k, o + 1) } else { 0 }]
    }

    /// The hash of `key`'s bits under the mask: one multiply per word,
    /// none waiting for another (a chain of dependent mixes costs a
    /// multiply's latency per word).
    #[inline]
    pub(super) fn hash(&self, key: &FlowKey) -> u64 {
        let present = key.present_bits() & self.mask.present;
        let mut acc = Acc::new(present);
        for (n, &(i, bits)) in self.fields.iter().enumerate() {
            if present & (1 << i) != 0 {
                let v = key.words(i);
                acc.add(n, v[0] & bits[0], v[1] & bits[1]);
            } else {
                acc.add(n, ABSENT, ABSENT);
            }
        }
        acc.finish()
    }

    /// The hash of a stored key (the same as [`Subtable::hash`] of any
    /// key it covers).
    pub(super) fn stored_hash(&self, k: &[Line]) -> u64 {
        let present = word(k, 0);
        let mut acc = Acc::new(present);
        for (n, &(i, _)) in self.fields.iter().enumerate() {
            if present & (1 << i) != 0 {
                let v = self.stored(k, n);
                acc.add(n, v[0], v[1]);
            } else {
                acc.add(n, ABSENT, ABSENT);
            }
        }
        acc.finish()
    }

    /// Whether stored key `slot` covers `key`.
    #[inline]
    pub(super) fn covers(&self, slot: usize, key: &FlowKey) -> bool {
        let k = self.key(slot);
        let present = key.present_bits() & self.mask.present;
        if word(k, 0) != present {
            return false;
        }
        // Each field's words follow the previous one's (see `at`).
        let mut o = 1;
        for &(i, bits) in self.fields.iter() {
            let n = field_words(bits);
            if present & (1 << i) != 0 {
                let v = key.words(i);
                if v[0] & bits[0] != word(k, o) || (n == 2 && v[1] & bits[1] != word(k, o + 1)) {
                    return false;
                }
            }
            o += n;
        }
        true
    }

    /// Whether keys `a` and `b` agree on every bit of this subtable's mask
    /// (presence included): the same answer here.
    #[inline]
    pub(super) fn same_masked(&self, a: &FlowKey, b: &FlowKey) -> bool {
        let present = a.present_bits() & self.mask.present;
        if present != b.present_bits() & self.mask.present {
            return false;
        }
        self.fields.iter().all(|&(i, bits)| {
            let (x, y) = (a.words(i), b.words(i));
            present & (1 << i) == 0 || ((x[0] ^ y[0]) & bits[0] == 0 && (x[1] ^ y[1]) & bits[1] == 0)
        })
    }

    /// Starts loading the index word `hash` probes first.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        let i = usize::try_from(hash).unwrap_or(0) & (self.index.len() - 1);
        prefetch(std::ptr::from_ref(&self.index[i]).cast());
    }

    /// Starts loading the stored key and the megaflow of the slot a probe
    /// for `hash` looks at first (both named by its index position).
    #[inline]
    pub(super) fn prefetch_slot(&self, hash: u64) {
        let i = usize::try_from(hash).unwrap_or(0) & (self.index.len() - 1);
        let p = self.index[i];
        if p.word >> 32 != hash >> 32 {
            return;
        }
        let slot = usize::try_from(p.word & 0xffff_ffff).unwrap_or(1) - 1;
        let (j, r) = seg(slot);
        let lines = self.stride / 8;
        if let Some(k) = self.keys.get(j).and_then(|s| s.get(r * lines)) {
            prefetch_span(std::ptr::from_ref(k).cast(), self.stride * 8);
            Megaflow::prefetch_hit_at(p.at);
        }
    }

    /// The slot covering `key` (whose hash is `hash`) and its megaflow's
    /// address.
    #[inline]
    pub(super) fn find(&self, hash: u64, key: &FlowKey) -> Option<(usize, usize)> {
        let m = self.index.len() - 1;
        let mut i = usize::try_from(hash).unwrap_or(0) & m;
        let tag = hash >> 32;
        loop {
            let Pos { word: w, at } = self.index[i];
            if w == 0 {
                return None;
            }
            if w >> 32 == tag {
                let slot = usize::try_from(w & 0xffff_ffff).unwrap_or(0) - 1;
                if self.covers(slot, key) {
                    return Some((slot, at));
                }
            }
            i = (i + 1) & m;
        }
    }

    /// Names `slot`, whose stored key hashes to `hash` and whose
    /// megaflow is `mf`, in `index`.
    pub(super) fn place(index: &mut [Pos], hash: u64, slot: usize, mf: &Arc<Megaflow>) {
        let m = index.len() - 1;
        let mut i = usize::try_from(hash).unwrap_or(0) & m;
        while index[i].word != 0 {
            i = (i + 1) & m;
        }
        index[i] = Pos { word: (hash >> 32) << 32 | (slot as u64 + 1), at: Arc::as_ptr(mf).expose_provenance() };
    }

    /// Stored key `slot`'s words.
    pub(super) fn key(&self, slot: usize) -> &[Line] {
        let lines = self.stride / 8;
        let (j, r) = seg(slot);
        &self.keys[j][r * lines..(r + 1) * lines]
    }

    /// The index position that names `slot` (whose stored key hashes to
    /// `hash`).
    pub(super) fn index_pos(&self, hash: u64, slot: usize) -> Option<usize> {
        let m = self.index.len() - 1;
        let mut i = usize::try_from(hash).unwrap_or(0) & m;
        let want = (hash >> 32) << 32 | (slot as u64 + 1);
        loop {
            match self.index[i].word {
                0 => return None,
                w if w == want => return Some(i),
                _ => i = (i + 1) & m,
            }
        }
    }

    /// Empties index position `pos` the way linear probing deletes without
    /// tombstones: each later word of its run whose home is not between
    /// the hole and itself moves back into the hole.
    pub(super) fn unplace(&mut self, pos: usize) {
        let m = self.index.len() - 1;
        let mut hole = pos;
        let mut i = (pos + 1) & m;
        loop {
            let p = self.index[i];
            if p.word == 0 {
                break;
            }
            let slot = usize::try_from(p.word & 0xffff_ffff).unwrap_or(1) - 1;
            let home = usize::try_from(self.stored_hash(self.key(slot))).unwrap_or(0) & m;
            if (i.wrapping_sub(home) & m) >= (i.wrapping_sub(hole) & m) {
                self.index[hole] = p;
                hole = i;
            }
            i = (i + 1) & m;
        }
        self.index[hole] = Pos::default();
    }

    /// Removes megaflow `slot` and returns it; the last slot takes its
    /// place (its codes change: only between batches).
    pub(super) fn remove(&mut self, slot: usize) -> Arc<Megaflow> {
        let h = self.stored_hash(self.key(slot));
        if let Some(pos) = self.index_pos(h, slot) {
            self.unplace(pos);
        }
        let last = self.flows.len() - 1;
        if slot != last {
            let lh = self.stored_hash(self.key(last));
            if let Some(pos) = self.index_pos(lh, last) {
                // The same megaflow: its address stays.
                self.index[pos].word = (lh >> 32) << 32 | (slot as u64 + 1);
            }
            let lines = self.stride / 8;
            let ((lj, lr), (j, r)) = (seg(last), seg(slot));
            for l in 0..lines {
                self.keys[j][r * lines + l] = self.keys[lj][lr * lines + l];
            }
        }
        // A segment left empty goes.
        if seg(last).1 == 0 {
            self.keys.truncate(seg(last).0);
        }
        self.flows.swap_remove(slot)
    }

    /// The bytes megaflow `mf` takes in this subtable: its own
    /// ([`Megaflow::bytes`]), its stored key, its share of the index (two
    /// positions at most half full) and its place in its folder (a
    /// reference and the counts folded).
    pub(super) fn cost(&self, mf: &Megaflow) -> u64 {
        mf.bytes() + 8 * self.stride as u64 + 2 * std::mem::size_of::<Pos>() as u64 + 24
    }

    /// Removes megaflow `slot` for good (expired, or affected by a
    /// change): its exact-match entries then miss (its folder folds its
    /// counters once more and frees it); the bytes it took.
    pub(super) fn retire(&mut self, slot: usize) -> u64 {
        let mf = self.remove(slot);
        mf.dead.store(true, Ordering::Relaxed);
        self.cost(&mf)
    }

    /// Adds `mf` for `key`; its slot (an existing one when a stored key
    /// covers `key` already).
    pub(super) fn insert(&mut self, key: &FlowKey, mf: &Arc<Megaflow>) -> usize {
        let h = self.hash(key);
        if let Some((slot, _)) = self.find(h, key) {
            return slot;
        }
        if (self.flows.len() + 1) * 2 > self.index.len() {
            let mut index = vec![Pos::default(); self.index.len() * 2];
            for (slot, f) in self.flows.iter().enumerate() {
                let sh = self.stored_hash(self.key(slot));
                Self::place(&mut index, sh, slot, f);
            }
            self.index = index;
        }
        let present = key.present_bits() & self.mask.present;
        let slot = self.flows.len();
        let lines = self.stride / 8;
        let (j, r) = seg(slot);
        if j == self.keys.len() {
            self.keys.push(vec![Line::default(); seg_len(j) * lines].into_boxed_slice());
        }
        let k = &mut self.keys[j][r * lines..(r + 1) * lines];
        let mut set = |w: usize, v: u64| k[w / 8].0[w % 8] = v;
        set(0, present);
        for (&(i, bits), &(o, wide)) in self.fields.iter().zip(self.at.iter()) {
            let v = if present & (1 << i) != 0 { key.words(i) } else { [0, 0] };
            set(o, v[0] & bits[0]);
            if wide {
                set(o + 1, v[1] & bits[1]);
            }
        }
        Self::place(&mut self.index, h, slot, mf);
        self.flows.push(mf.clone());
        slot
    }
}

/// The thread that frees megaflows away from the PMD threads.
type Reaper = std::sync::Mutex<std::sync::mpsc::Sender<Vec<Subtable>>>;
static REAPER: std::sync::OnceLock<Option<Reaper>> = std::sync::OnceLock::new();

fn reaper() -> Option<&'static Reaper> {
    REAPER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<Subtable>>();
            std::thread::Builder::new()
                .name("megaflow-reaper".into())
                .spawn(move || {
                    for v in rx {
                        drop(v);
                    }
                })
                .ok()
                .map(|_| std::sync::Mutex::new(tx))
        })
        .as_ref()
}

/// Starts the thread that frees megaflows (see [`reap`]) from the
/// calling thread, whose CPU affinity it inherits: call it before any
/// PMD thread runs a cache, or the first to free many megaflows starts it
/// on its own, dedicated core.
pub fn start_reaper() {
    let _ = reaper();
}

/// Frees megaflows away from the PMD thread: hundreds of thousands of
/// them take tens of milliseconds to free, a pause no PMD thread may take
/// (a cache that fills up, or one a new table snapshot replaces). A few
/// are freed in place.
pub(super) fn reap(subtables: Vec<Subtable>) {
    if subtables.iter().map(|s| s.flows.len()).sum::<usize>() < 1024 {
        return;
    }
    if let Some(tx) = reaper().and_then(|m| m.lock().ok()) {
        // A failed send hands them back: freed here, as without a reaper.
        let _ = tx.send(subtables);
    }
}
