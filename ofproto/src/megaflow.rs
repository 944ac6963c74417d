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
pub const MAX_MEGAFLOWS: usize = 262_144;

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

    /// The heap it takes: the struct and its `Arc` header, its steps and
    /// their actions (the mask is shared by its subtable).
    pub fn bytes(&self) -> u64 {
        let acts: usize = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Apply { acts, .. } => acts.len() * std::mem::size_of::<crate::ofp::Action>(),
                _ => 0,
            })
            .sum();
        (std::mem::size_of::<Megaflow>() + 16 + self.steps.len() * std::mem::size_of::<Step>() + acts) as u64
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

/// Starts loading the cache line at `p` (a hint: never faults).
#[inline]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: _mm_prefetch only hints the cache; it never dereferences in
    // a way that can fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
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
        prefetch(std::ptr::from_ref(&self.index[i]).cast());
    }

    /// Starts loading the stored key and the megaflow of the slot a probe
    /// for `hash` looks at first.
    #[inline]
    fn prefetch_slot(&self, hash: u64) {
        let i = usize::try_from(hash).unwrap_or(0) & (self.index.len() - 1);
        let w = self.index[i];
        if w >> 32 != hash >> 32 {
            return;
        }
        let slot = usize::try_from(w & 0xffff_ffff).unwrap_or(1) - 1;
        if let (Some(k), Some(mf)) = (self.keys.get(slot * self.stride), self.flows.get(slot)) {
            prefetch(std::ptr::from_ref(k).cast());
            prefetch(Arc::as_ptr(mf).cast());
            if let Some(s) = mf.steps.first() {
                prefetch(std::ptr::from_ref(s).cast());
            }
        }
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

/// Frees megaflows away from the PMD thread: hundreds of thousands of
/// them take tens of milliseconds to free, a pause no PMD thread may take
/// (a cache that fills up, or one a new table snapshot replaces). A few
/// are freed in place.
fn reap(subtables: Vec<Subtable>) {
    type Reaper = std::sync::Mutex<std::sync::mpsc::Sender<Vec<Subtable>>>;
    static REAPER: std::sync::OnceLock<Option<Reaper>> = std::sync::OnceLock::new();
    if subtables.iter().map(|s| s.flows.len()).sum::<usize>() < 1024 {
        return;
    }
    let reaper = REAPER.get_or_init(|| {
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
    });
    if let Some(tx) = reaper.as_ref().and_then(|m| m.lock().ok()) {
        // A failed send hands them back: freed here, as without a reaper.
        let _ = tx.send(subtables);
    }
}

impl Drop for MegaflowCache {
    fn drop(&mut self) {
        reap(std::mem::take(&mut self.subtables));
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
    /// Megaflows dropped because the cache filled up.
    pub flushed: u64,
    /// Bytes of megaflows installed, and of megaflows dropped (see
    /// [`Megaflow::bytes`]).
    pub bytes_added: u64,
    /// See `bytes_added`.
    pub bytes_dropped: u64,
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
    /// An install found it full: emptied at the end of the batch.
    full: bool,
    /// Megaflows it holds at most.
    max: usize,
    /// Bytes its megaflows take (see [`Megaflow::bytes`]).
    bytes: u64,
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
            full: false,
            max: MAX_MEGAFLOWS,
            bytes: 0,
        }
    }
}

impl MegaflowCache {
    /// An empty cache of at most `max` megaflows (at most
    /// [`MAX_MEGAFLOWS`]).
    pub fn with_capacity(max: usize) -> MegaflowCache {
        let mut c = MegaflowCache::default();
        c.max = max.min(MAX_MEGAFLOWS);
        c
    }

    /// Bytes its megaflows take: each [`Megaflow::bytes`], its stored key
    /// and its share of the index (two words at most half full).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

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
            // The index words are on their way; start loading the stored
            // keys and megaflows their first probes name.
            for i in 0..n {
                if out[i] == NONE {
                    st.prefetch_slot(hashes[i]);
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
        if self.len >= self.max {
            self.full = true;
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
        let bytes = mf.bytes() + 8 * st.stride as u64 + 16;
        let slot = st.insert(key, mf);
        if st.flows.len() > before {
            self.len += 1;
            self.counts.installs += 1;
            self.counts.bytes_added += bytes;
            self.bytes += bytes;
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

    /// Ends a batch (codes from it are dead after this): a cache that
    /// filled up is emptied, its counters folded into `tables` first, so
    /// that new flows get megaflows again (idle megaflows are not expired
    /// one by one yet; a full cache starts over, within the upcall
    /// budget).
    pub fn end_batch(&mut self, tables: &Tables) {
        if !self.full {
            return;
        }
        self.fold(tables);
        self.counts.flushed += self.len as u64;
        self.counts.bytes_dropped += self.bytes;
        self.bytes = 0;
        reap(std::mem::take(&mut self.subtables));
        self.by_mask.clear();
        self.len = 0;
        self.full = false;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofp::action::Instruction;
    use crate::ofp::msg::{FlowMod, FlowModCommand};
    use crate::ofp::oxm::{Field, Match, Oxm};
    use crate::ofp::Action;
    use crate::table::{Refs, Tables};
    use crate::xlate::translate;
    use proptest::prelude::*;

    struct Ports;
    impl Refs for Ports {
        fn port_exists(&self, p: u32) -> bool {
            p < 8
        }
        fn group_exists(&self, _: u32) -> bool {
            false
        }
        fn meter_exists(&self, _: u32) -> bool {
            false
        }
    }

    /// A random flow: (table, priority, in_port, eth_type, ip_proto,
    /// ipv4_dst and prefix, vlan, metadata and mask, set ipv4_dst, vlan
    /// action, write-metadata, goto, output).
    type Spec = (u8, u16, Option<u8>, Option<bool>, Option<bool>, Option<(u8, u8)>, Option<bool>, Option<(u8, u8)>);
    type Acts = (Option<u8>, u8, Option<u8>, bool, Option<u8>);

    fn flow_mod((spec, acts): &(Spec, Acts), delete: bool) -> FlowMod {
        let &(table, priority, in_port, ipv4, proto, dst, vlan, meta) = spec;
        let &(set_dst, vlan_act, write_meta, goto, output) = acts;
        let table = table % 3;
        let mut m = Match::any();
        if let Some(p) = in_port {
            m = m.with(Oxm::exact_u64(Field::InPort, u64::from(p % 3 + 1)));
        }
        let ip4 = ipv4 == Some(true) || dst.is_some() || set_dst.is_some();
        if ip4 || ipv4.is_some() {
            m = m.with(Oxm::exact_u64(Field::EthType, if ip4 { 0x0800 } else { 0x86dd }));
            if let Some(tcp) = proto {
                m = m.with(Oxm::exact_u64(Field::IpProto, if tcp { 6 } else { 17 }));
            }
        }
        if let Some((d, plen)) = dst {
            let plen = [0u32, 8, 16, 24, 32][usize::from(plen % 5)];
            let mask = (!0u32).checked_shl(32 - plen).unwrap_or(0);
            let v = u32::from_be_bytes([d % 3, d / 3 % 3, 0, 1]) & mask;
            m = m.with(Oxm::masked(Field::Ipv4Dst, &v.to_be_bytes(), &mask.to_be_bytes()));
        }
        if let Some(tagged) = vlan {
            m = m.with(Oxm::exact_u64(Field::VlanVid, if tagged { 0x1005 } else { 0 }));
        }
        if let Some((v, mk)) = meta {
            let mk = u64::from(mk % 4);
            m = m.with(Oxm::masked(Field::Metadata, &(u64::from(v) & mk).to_be_bytes(), &mk.to_be_bytes()));
        }
        let mut apply = Vec::new();
        if let Some(d) = set_dst.filter(|_| ip4) {
            apply.push(Action::SetField(Oxm::exact(Field::Ipv4Dst, &[d % 3, 0, 0, 1])));
        }
        match vlan_act % 4 {
            1 => apply.push(Action::PushVlan(0x8100)),
            2 => apply.push(Action::PopVlan),
            _ => {}
        }
        let mut ins = Vec::new();
        if let Some(o) = output.filter(|o| o % 2 == 0) {
            // An output before the end: the packet goes on (a copy leaves).
            apply.push(Action::Output { port: u32::from(o % 4 + 1), max_len: 0 });
            apply.push(Action::DecNwTtl);
        }
        if !apply.is_empty() {
            ins.push(Instruction::ApplyActions(apply));
        }
        if let Some(o) = output.filter(|o| o % 2 == 1) {
            ins.push(Instruction::WriteActions(vec![Action::Output { port: u32::from(o % 4 + 1), max_len: 0 }]));
        }
        if let Some(w) = write_meta {
            ins.push(Instruction::WriteMetadata { metadata: u64::from(w % 4), mask: 3 });
        }
        if goto && table < 2 {
            ins.push(Instruction::GotoTable(table + 1));
        }
        let command = if delete { FlowModCommand::DeleteStrict } else { FlowModCommand::Add };
        FlowMod::new(command, table, priority % 4, m, ins)
    }

    /// A key: (in_port, kind 0 IPv4 / 1 IPv6 / 2 ARP, tcp, dst, tagged).
    fn key((in_port, kind, tcp, dst, tagged): (u8, u8, bool, u8, bool)) -> FlowKey {
        let mut k = FlowKey::default();
        k.set_u64(Field::InPort, u64::from(in_port % 3 + 1));
        k.set_u64(Field::Metadata, 0);
        k.set_u64(Field::VlanVid, if tagged { 0x1005 } else { 0 });
        if tagged {
            k.set_u64(Field::VlanPcp, 3);
        }
        k.set(Field::EthDst, &[2, 0, 0, 0, 0, 1]);
        match kind % 3 {
            0 => {
                k.set_u64(Field::EthType, 0x0800);
                k.set_u64(Field::IpProto, if tcp { 6 } else { 17 });
                k.set(Field::Ipv4Dst, &[dst % 3, dst / 3 % 3, 0, 1]);
                k.set(Field::Ipv4Src, &[10, 0, 0, dst]);
            }
            1 => {
                k.set_u64(Field::EthType, 0x86dd);
                k.set_u64(Field::IpProto, if tcp { 6 } else { 17 });
            }
            _ => k.set_u64(Field::EthType, 0x0806),
        }
        k
    }

    fn spec() -> impl Strategy<Value = (Spec, Acts)> {
        let s = (
            any::<u8>(),
            any::<u16>(),
            any::<Option<u8>>(),
            any::<Option<bool>>(),
            any::<Option<bool>>(),
            any::<Option<(u8, u8)>>(),
            any::<Option<bool>>(),
            any::<Option<(u8, u8)>>(),
        );
        let a = (any::<Option<u8>>(), any::<u8>(), any::<Option<u8>>(), any::<bool>(), any::<Option<u8>>());
        (s, a)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random three-table pipelines (goto, set-field of a field a later
        /// table matches, metadata written and matched, VLAN push and pop,
        /// outputs in apply-actions and in the action set) changed by random
        /// adds and deletes between random packets: every packet a megaflow
        /// answers gets exactly the decision the tables give it, and
        /// decisions the tables mark uncacheable are never cached. As in the
        /// datapath, each change starts an empty cache.
        #[test]
        fn megaflow_decisions_equal_the_tables(
            flows in prop::collection::vec(spec(), 1..25),
            ops in prop::collection::vec(prop_oneof![
                3 => any::<(u8, u8, bool, u8, bool)>().prop_map(Ok),
                1 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(Err),
            ], 1..120),
        ) {
            let mut tables = Tables::new(3, 1000);
            for f in &flows {
                let _ = tables.flow_mod(&flow_mod(f, false), 0, &Ports);
            }
            let mut cache = MegaflowCache::default();
            let mut hits = 0;
            for op in &ops {
                match op {
                    Ok(k) => {
                        let k = key(*k);
                        let t = translate(&tables, &k);
                        match cache.lookup(&k) {
                            Some(c) => {
                                hits += 1;
                                prop_assert!(t.cacheable, "an uncacheable decision was cached");
                                prop_assert_eq!(&cache.get(c).steps[..], &t.steps[..], "key {:?}", k);
                            }
                            None if t.cacheable => {
                                let mf = Arc::new(Megaflow::new(t.steps, cache.intern(t.mask)));
                                let c = cache.install(&k, mf).unwrap();
                                prop_assert_eq!(cache.lookup(&k), Some(c), "an installed megaflow covers its key");
                            }
                            None => {}
                        }
                    }
                    Err((ix, delete)) => {
                        let f = &flows[ix.index(flows.len())];
                        let _ = tables.flow_mod(&flow_mod(f, *delete), 0, &Ports);
                        cache = MegaflowCache::default();
                    }
                }
            }
            let _ = hits;
        }
    }

    /// A full cache installs nothing more within the batch, then starts
    /// over at its end, its counters folded into the tables first.
    #[test]
    fn a_full_cache_starts_over_at_the_end_of_the_batch() {
        let mut tables = Tables::new(1, 100);
        let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800));
        let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
        tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, 5, m, out), 0, &Ports).unwrap();
        let mut cache = MegaflowCache::with_capacity(3);
        let mut codes = Vec::new();
        for port in 1..=4u64 {
            let mut k = key((0, 0, true, 0, false));
            k.set_u64(Field::InPort, port);
            let t = translate(&tables, &k);
            let mf = Arc::new(Megaflow::new(t.steps, cache.intern(t.mask)));
            codes.push(cache.install(&k, mf));
        }
        assert!(codes[..3].iter().all(Option::is_some) && codes[3].is_none(), "{codes:?}");
        let c = codes[0].unwrap();
        assert!(cache.get(c).hit(100, 1));
        cache.mark_dirty(c);
        cache.end_batch(&tables);
        assert_eq!((cache.len(), cache.counts.flushed), (0, 3));
        let e = &tables.tables[0].entries[0];
        assert_eq!(e.stats.packets.load(Ordering::Relaxed), 1, "the hit reached the entry before the flush");
    }

    /// One megaflow per distinct decision under one mask: keys that differ
    /// only in bits no table looked at share it.
    #[test]
    fn keys_differing_in_unexamined_bits_share_a_megaflow() {
        let mut tables = Tables::new(1, 100);
        let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(
            Field::Ipv4Dst,
            &[10, 0, 0, 0],
            &[255, 0, 0, 0],
        ));
        let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
        tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, 5, m, out), 0, &Ports).unwrap();
        let mut cache = MegaflowCache::default();
        let mut k = key((0, 0, true, 0, false));
        for i in 0..=255u8 {
            k.set(Field::Ipv4Dst, &[10, i, 255 - i, i]);
            k.set(Field::Ipv4Src, &[192, 168, i, 1]);
            if cache.lookup(&k).is_none() {
                let t = translate(&tables, &k);
                cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask)))).unwrap();
            }
        }
        assert_eq!((cache.len(), cache.n_subtables()), (1, 1), "256 addresses in 10/8, one megaflow");
        k.set(Field::Ipv4Dst, &[11, 0, 0, 1]);
        assert!(cache.lookup(&k).is_none(), "11.0.0.1 is outside it");
    }
}
