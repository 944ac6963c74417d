//! The megaflow cache of one PMD thread for one OpenFlow bridge (free of
//! DPDK: the datapath replays what it finds, see `vswitch::ofdp`): what the
//! walk through the tables decided for one packet, kept under the mask of
//! every bit that walk examined ([`FlowMask`], reported by the
//! classifier), so that every later packet equal on those bits takes the
//! same decision without walking the tables.
//!
//! - Megaflows are grouped into subtables by mask, as in the classifier;
//!   a lookup probes them in order of their hits (re-ranked every 1024
//!   lookups), and the first hit is the answer: any megaflow that covers a
//!   packet is correct for it by construction.
//! - A decision ([`Step`]s) is replayed by the same code that runs the
//!   tables (the actions' own per-packet behaviour stays: meters, TTL
//!   checks, select-group hashing and fast-failover liveness are evaluated
//!   per packet, so one megaflow serves all buckets of a select group).
//! - A cache belongs to one snapshot of the tables: a new snapshot (any
//!   OpenFlow change, port or link change) starts an empty cache, so no
//!   packet uses a decision older than the tables the barrier reply
//!   vouches for.
//! - Counters: a hit adds to its megaflow's own counters (plain stores by
//!   the one PMD thread that owns it); every few milliseconds the thread
//!   folds what the megaflows it hit since then gained into the counters
//!   and idle clocks of the OpenFlow tables and entries their decisions
//!   went through, so flow statistics and idle timeouts follow the
//!   traffic without atomic read-modify-writes per packet.
//! - Misses run the tables (an *upcall*, on the PMD thread) within a
//!   per-thread budget, so a flood of new flows cannot starve the hits;
//!   beyond it a miss is dropped and counted.

use crate::classifier::FlowMask;
use crate::flow::FlowKey;
use crate::table::Tables;
pub use crate::xlate::Step;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A lookup's "no megaflow".
pub const NONE: u32 = u32::MAX;

/// The code of slot `slot` of subtable `si` (slots below 2^20, subtables
/// below 2^12 with [`MAX_MEGAFLOWS`]).
fn code(si: usize, slot: usize) -> u32 {
    u32::try_from((si << 20) | slot).unwrap_or(NONE)
}

/// Megaflows one cache holds at most; a full cache installs nothing more
/// until the next snapshot (its misses still run the tables).
pub const MAX_MEGAFLOWS: usize = 65_536;

/// A cached decision.
#[derive(Debug)]
pub struct Megaflow {
    /// What to do, in order.
    pub steps: Box<[Step]>,
    /// The mask it was made under.
    pub mask: Arc<FlowMask>,
    /// Index of its last table lookup in `steps` (0 when none): a packet
    /// whose replay stopped earlier (TTL expired, metered away) counts
    /// only the tables it reached.
    pub last_table: usize,
    /// Packets that took it (the upcall's own packet not included: it was
    /// counted by the tables it walked).
    pub packets: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// When it was last used, PMD milliseconds.
    pub used_ms: AtomicU64,
    folded: [AtomicU64; 2],
    dirty: AtomicBool,
}

/// Adds `packets` of `bytes` to the counters of the tables and entries
/// decision `steps` went through (`now_ms`: their last use).
pub fn count_steps(tables: &Tables, steps: &[Step], packets: u64, bytes: u64, now_ms: u64) {
    for s in steps {
        if let Step::Table { table, entry } = s {
            if let Some(t) = tables.tables.get(usize::from(*table)) {
                t.lookups.fetch_add(packets, Ordering::Relaxed);
                if entry.is_some() {
                    t.matches.fetch_add(packets, Ordering::Relaxed);
                }
            }
            if let Some(e) = entry {
                e.hit(packets, bytes, now_ms);
            }
        }
    }
}

impl Megaflow {
    /// A decision `steps` made under `mask` (from
    /// [`MegaflowCache::intern`], so that megaflows of one mask share it).
    pub fn new(steps: Vec<Step>, mask: Arc<FlowMask>) -> Megaflow {
        let last_table = steps.iter().rposition(|s| matches!(s, Step::Table { .. })).unwrap_or(0);
        Megaflow {
            last_table,
            steps: steps.into_boxed_slice(),
            mask,
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            used_ms: AtomicU64::new(0),
            folded: [AtomicU64::new(0), AtomicU64::new(0)],
            dirty: AtomicBool::new(false),
        }
    }

    /// Counts a packet of `len` bytes at `now_ms`; true when it is the
    /// first since the last fold (the caller lists it for the next one).
    /// Only the owning PMD thread calls it.
    #[inline]
    pub fn hit(&self, len: u64, now_ms: u64) -> bool {
        self.packets.store(self.packets.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.bytes.store(self.bytes.load(Ordering::Relaxed) + len, Ordering::Relaxed);
        self.used_ms.store(now_ms, Ordering::Relaxed);
        // Load and store, not a locked swap: only this thread writes it.
        if self.dirty.load(Ordering::Relaxed) {
            return false;
        }
        self.dirty.store(true, Ordering::Relaxed);
        true
    }

    /// Adds what it gained since the last fold to its tables and entries.
    fn fold(&self, tables: &Tables) {
        self.dirty.store(false, Ordering::Relaxed);
        let (p, b) = (self.packets.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed));
        let dp = p - self.folded[0].load(Ordering::Relaxed);
        let db = b - self.folded[1].load(Ordering::Relaxed);
        if dp > 0 {
            count_steps(tables, &self.steps, dp, db, self.used_ms.load(Ordering::Relaxed));
            self.folded[0].store(p, Ordering::Relaxed);
            self.folded[1].store(b, Ordering::Relaxed);
        }
    }
}

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31)
}

/// What an absent field hashes as.
const ABSENT: u64 = 0x5bd1_e995;

/// Megaflows of one mask: an open-addressing index of (high hash bits,
/// slot) words over a flat arena of masked keys (presence word, then the
/// masked value words of each field), so a probe reads one index word
/// and one run of key words.
struct Subtable {
    mask: Arc<FlowMask>,
    /// (field id, bits) of the mask.
    fields: Box<[(usize, [u64; 2])]>,
    /// Words per key in `keys`.
    stride: usize,
    /// `(hash >> 32) << 32 | (slot + 1)`; 0: empty. A power of two long.
    index: Vec<u64>,
    keys: Vec<u64>,
    flows: Vec<Arc<Megaflow>>,
    hits: u64,
}

impl Subtable {
    fn new(mask: Arc<FlowMask>) -> Subtable {
        let fields: Box<[(usize, [u64; 2])]> = mask.fields().map(|f| (f as usize, mask.bits[f as usize])).collect();
        let stride = 1 + 2 * fields.len();
        Subtable { mask, fields, stride, index: vec![0; 16], keys: Vec::new(), flows: Vec::new(), hits: 0 }
    }

    /// The hash of `key`'s bits under the mask.
    #[inline]
    fn hash(&self, key: &FlowKey) -> u64 {
        let present = key.present_bits() & self.mask.present;
        let mut h = present;
        for &(i, bits) in self.fields.iter() {
            if present & (1 << i) != 0 {
                let v = key.words(i);
                h = mix(mix(h, v[0] & bits[0]), v[1] & bits[1]);
            } else {
                h = mix(h, ABSENT);
            }
        }
        h
    }

    /// The hash of a stored key (the same as [`Subtable::hash`] of any
    /// key it covers).
    fn stored_hash(&self, k: &[u64]) -> u64 {
        let present = k[0];
        let mut h = present;
        for (n, &(i, _)) in self.fields.iter().enumerate() {
            if present & (1 << i) != 0 {
                h = mix(mix(h, k[1 + 2 * n]), k[2 + 2 * n]);
            } else {
                h = mix(h, ABSENT);
            }
        }
        h
    }

    /// Whether stored key `slot` covers `key`.
    #[inline]
    fn covers(&self, slot: usize, key: &FlowKey) -> bool {
        let k = &self.keys[slot * self.stride..(slot + 1) * self.stride];
        let present = key.present_bits() & self.mask.present;
        if k[0] != present {
            return false;
        }
        self.fields.iter().enumerate().all(|(n, &(i, bits))| {
            if present & (1 << i) == 0 {
                return true;
            }
            let v = key.words(i);
            v[0] & bits[0] == k[1 + 2 * n] && v[1] & bits[1] == k[2 + 2 * n]
        })
    }

    /// Starts loading the index word `hash` probes first.
    #[inline]
    fn prefetch(&self, hash: u64) {
        let i = usize::try_from(hash).unwrap_or(0) & (self.index.len() - 1);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint that never faults; the address is
        // an element of `index`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                self.index.as_ptr().add(i).cast::<i8>(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    /// The slot covering `key` (whose hash is `hash`).
    #[inline]
    fn find(&self, hash: u64, key: &FlowKey) -> Option<usize> {
        let m = self.index.len() - 1;
        let mut i = usize::try_from(hash).unwrap_or(0) & m;
        let tag = hash >> 32;
        loop {
            let w = self.index[i];
            if w == 0 {
                return None;
            }
            if w >> 32 == tag {
                let slot = usize::try_from(w & 0xffff_ffff).unwrap_or(0) - 1;
                if self.covers(slot, key) {
                    return Some(slot);
                }
            }
            i = (i + 1) & m;
        }
    }

    fn place(index: &mut [u64], hash: u64, slot: usize) {
        let m = index.len() - 1;
        let mut i = usize::try_from(hash).unwrap_or(0) & m;
        while index[i] != 0 {
            i = (i + 1) & m;
        }
        index[i] = (hash >> 32) << 32 | (slot as u64 + 1);
    }

    /// Adds `mf` for `key`; its slot (an existing one when a stored key
    /// covers `key` already).
    fn insert(&mut self, key: &FlowKey, mf: Arc<Megaflow>) -> usize {
        let h = self.hash(key);
        if let Some(slot) = self.find(h, key) {
            return slot;
        }
        if (self.flows.len() + 1) * 2 > self.index.len() {
            let mut index = vec![0u64; self.index.len() * 2];
            for slot in 0..self.flows.len() {
                let sh = self.stored_hash(&self.keys[slot * self.stride..(slot + 1) * self.stride]);
                Self::place(&mut index, sh, slot);
            }
            self.index = index;
        }
        let present = key.present_bits() & self.mask.present;
        self.keys.push(present);
        for &(i, bits) in self.fields.iter() {
            let v = if present & (1 << i) != 0 { key.words(i) } else { [0, 0] };
            self.keys.push(v[0] & bits[0]);
            self.keys.push(v[1] & bits[1]);
        }
        let slot = self.flows.len();
        self.flows.push(mf);
        Self::place(&mut self.index, h, slot);
        slot
    }
}

/// Counters of a cache, folded into the bridge's atomics per batch.
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheCounts {
    /// Packets a megaflow answered.
    pub hits: u64,
    /// Packets that ran the tables.
    pub upcalls: u64,
    /// Megaflows installed.
    pub installs: u64,
    /// Subtables probed by lookups (hits and misses).
    pub subtable_lookups: u64,
    /// Misses dropped because the upcall budget was spent.
    pub upcall_drops: u64,
    /// Decisions that cannot be cached (a header pushed or popped before a
    /// later table looked at the packet): they run the tables every time.
    pub uncacheable: u64,
}

/// One PMD thread's megaflows for one bridge snapshot.
pub struct MegaflowCache {
    subtables: Vec<Subtable>,
    by_mask: HashMap<Arc<FlowMask>, usize>,
    len: usize,
    lookups_since_rank: u32,
    /// Upcall budget: tokens, refilled with time.
    tokens: f64,
    last_refill_ns: u64,
    /// Counts not yet folded into the bridge's atomics.
    pub counts: CacheCounts,
    /// Megaflows hit since the last fold.
    dirty: Vec<Arc<Megaflow>>,
    /// Flow keys the datapath reuses batch after batch (never zeroed).
    pub keys: Vec<FlowKey>,
}

impl std::fmt::Debug for MegaflowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MegaflowCache").field("len", &self.len).field("subtables", &self.subtables.len()).finish()
    }
}

/// Upcalls per second one PMD thread runs at most for one bridge.
pub const UPCALLS_PER_S: f64 = 2_000_000.0;
/// Upcalls it may run in a burst.
const UPCALL_BURST: f64 = 4096.0;

impl Default for MegaflowCache {
    fn default() -> MegaflowCache {
        MegaflowCache {
            subtables: Vec::new(),
            by_mask: HashMap::new(),
            len: 0,
            lookups_since_rank: 0,
            tokens: UPCALL_BURST,
            last_refill_ns: 0,
            counts: CacheCounts::default(),
            dirty: Vec::new(),
            keys: Vec::new(),
        }
    }
}

impl MegaflowCache {
    /// Megaflows in it.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Distinct masks in it.
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    /// The megaflows covering `keys`, as codes for [`MegaflowCache::get`]
    /// in `out` ([`NONE`] for a miss). Each subtable is probed for the
    /// whole batch at once: hashes first, with the index words they need
    /// prefetched, then the probes.
    pub fn lookup_batch(&mut self, keys: &[FlowKey], out: &mut [u32]) {
        self.lookups_since_rank += 1;
        if self.lookups_since_rank >= 64 {
            self.rerank();
        }
        let n = keys.len().min(out.len()).min(64);
        out[..n].fill(NONE);
        let mut left = n;
        let mut hashes = [0u64; 64];
        for (si, st) in self.subtables.iter_mut().enumerate() {
            if left == 0 {
                break;
            }
            for i in 0..n {
                if out[i] == NONE {
                    hashes[i] = st.hash(&keys[i]);
                    st.prefetch(hashes[i]);
                }
            }
            for i in 0..n {
                if out[i] != NONE {
                    continue;
                }
                self.counts.subtable_lookups += 1;
                if let Some(slot) = st.find(hashes[i], &keys[i]) {
                    out[i] = code(si, slot);
                    st.hits += 1;
                    self.counts.hits += 1;
                    left -= 1;
                }
            }
        }
    }

    /// The megaflow covering `key`, as a code.
    pub fn lookup(&mut self, key: &FlowKey) -> Option<u32> {
        let mut out = [NONE];
        self.lookup_batch(std::slice::from_ref(key), &mut out);
        (out[0] != NONE).then_some(out[0])
    }

    /// The megaflow a code names (valid until the next lookup reorders the
    /// subtables).
    #[inline]
    pub fn get(&self, code: u32) -> &Arc<Megaflow> {
        let (si, slot) = (usize::try_from(code >> 20).unwrap_or(0), usize::try_from(code & 0xf_ffff).unwrap_or(0));
        &self.subtables[si].flows[slot]
    }

    /// Whether an upcall may run now (`now_ns` on the PMD's clock); takes
    /// a token when it may.
    #[inline]
    pub fn may_upcall(&mut self, now_ns: u64) -> bool {
        if now_ns > self.last_refill_ns {
            #[allow(clippy::cast_precision_loss)] // nanoseconds between refills: far below 2^52
            let dt = (now_ns - self.last_refill_ns) as f64;
            self.tokens = (self.tokens + dt * UPCALLS_PER_S / 1e9).min(UPCALL_BURST);
            self.last_refill_ns = now_ns;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.counts.upcall_drops += 1;
            false
        }
    }

    /// `mask` as the cache holds it (shared by its megaflows).
    pub fn intern(&self, mask: FlowMask) -> Arc<FlowMask> {
        match self.by_mask.get(&mask) {
            Some(&i) => self.subtables[i].mask.clone(),
            None => Arc::new(mask),
        }
    }

    /// Installs megaflow `mf` for `key`; its code, or None when the
    /// cache is full (the caller replays `mf` once and forgets it).
    pub fn install(&mut self, key: &FlowKey, mf: Arc<Megaflow>) -> Option<u32> {
        if self.len >= MAX_MEGAFLOWS {
            return None;
        }
        let si = match self.by_mask.get(&mf.mask) {
            Some(&i) => i,
            None => {
                self.subtables.push(Subtable::new(mf.mask.clone()));
                self.by_mask.insert(mf.mask.clone(), self.subtables.len() - 1);
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[si];
        let before = st.flows.len();
        let slot = st.insert(key, mf);
        if st.flows.len() > before {
            self.len += 1;
            self.counts.installs += 1;
        }
        Some(code(si, slot))
    }

    /// Lists megaflow `code` for the next fold (after its first hit
    /// since the last one: [`Megaflow::hit`] said so).
    pub fn mark_dirty(&mut self, code: u32) {
        let mf = self.get(code).clone();
        self.dirty.push(mf);
    }

    /// Lists a megaflow the cache does not keep for the next fold.
    pub fn mark_dirty_unkept(&mut self, mf: Arc<Megaflow>) {
        self.dirty.push(mf);
    }

    /// Folds the megaflows hit since last time into `tables`' counters
    /// (the snapshot this cache belongs to).
    pub fn fold(&mut self, tables: &Tables) {
        for mf in self.dirty.drain(..) {
            mf.fold(tables);
        }
    }

    /// Orders subtables by hits since the last ranking (most first).
    fn rerank(&mut self) {
        self.lookups_since_rank = 0;
        if self.subtables.windows(2).any(|w| w[0].hits < w[1].hits) {
            self.subtables.sort_by_key(|s| std::cmp::Reverse(s.hits));
            self.by_mask = self.subtables.iter().enumerate().map(|(i, s)| (s.mask.clone(), i)).collect();
        }
        for s in &mut self.subtables {
            s.hits /= 2;
        }
    }

    /// Every megaflow with its mask, for dumps and tests.
    pub fn megaflows(&self) -> impl Iterator<Item = &Arc<Megaflow>> {
        self.subtables.iter().flat_map(|s| s.flows.iter())
    }
}
