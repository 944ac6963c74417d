//! The megaflow cache of one PMD thread for one OpenFlow bridge (free of
//! DPDK: the datapath replays what it finds, see `vswitch::datapath::ofdp`): what the
//! walk through the tables decided for one packet, kept under the mask of
//! every bit that walk examined ([`FlowMask`], reported by the
//! classifier), so that every later packet equal on those bits takes the
//! same decision without walking the tables.
//!
//! - Megaflows are grouped into subtables by mask, as in the classifier;
//!   a lookup probes them for the whole batch in order of their hits
//!   (re-ranked every 64 batches, never inside one), and the first hit is
//!   the answer: any megaflow that covers a packet is correct for it by
//!   construction. A packet equal to the previous one on a subtable's bits
//!   takes its answer there without a hash or a probe (runs of a flow's
//!   packets cost one lookup), checked while such runs are common.
//! - An exact-match cache (EMC) of whole keys sits in front, consulted
//!   when it pays ([`EmcMode`]), filled with a configurable probability;
//!   its entries name megaflows and miss once those are removed.
//! - A decision ([`Step`]s) is replayed by the same code that runs the
//!   tables (the actions' own per-packet behaviour stays: meters, TTL
//!   checks, select-group hashing and fast-failover liveness are evaluated
//!   per packet, so one megaflow serves all buckets of a select group);
//!   decisions of the common shape are compiled into [`FastOp`]s.
//! - Revalidation: a new snapshot of the tables that differs only by flow
//!   changes keeps the megaflows none of the changes may affect
//!   ([`MegaflowCache::revalidate`], [`Change`]); any other change (groups,
//!   meters, ports, links, too many flow changes) starts an empty cache.
//!   Either way no packet uses a decision older than the tables the
//!   barrier reply vouches for.
//! - Idle megaflows (`max_idle_ms`) are removed by an incremental sweep
//!   between batches; a cache that fills up starts over.
//! - Counters: a hit adds to its megaflow's own counters (plain stores by
//!   the one PMD thread that owns it: no atomic read-modify-write, no
//!   reference count written per packet); the datapath may count a group
//!   of one megaflow's packets at once ([`MegaflowCache::grouping`]). A
//!   [`Folder`], on a thread of its own, adds what the megaflows gained
//!   to the counters and idle clocks of the OpenFlow tables and entries
//!   their decisions went through, in passes, and frees the megaflows
//!   their caches let go of: the PMD thread never touches a flow entry's
//!   counters (in a big table, a DRAM miss per packet). The caches hand
//!   their new megaflows over every few milliseconds
//!   ([`MegaflowCache::hand_over`]).
//! - Memory: a subtable's index positions carry their megaflow's address,
//!   so that a probe loads the stored key and the megaflow together and a
//!   hit reads the megaflow through it, not through its slot's reference
//!   ([`MegaflowCache::megaflow_at`]); stored keys are compact (a word
//!   per field, two for IPv6 addresses) and line-aligned (a 5-tuple key
//!   is one line); what a hit touches is the megaflow's first line.
//!   At a million flows each packet's lookup is three DRAM lines or four
//!   (index, stored key, megaflow), overlapped across the batch.
//! - Misses run the tables (an *upcall*, on the PMD thread) within a
//!   per-thread budget, so a flood of new flows cannot starve the hits;
//!   beyond it a miss is dropped and counted.

use crate::classifier::FlowMask;
use crate::flow::FlowKey;
use crate::table::TableCounters;
pub use crate::xlate::Step;
use std::collections::HashMap;
use std::sync::Arc;

mod compiled;
mod dump;
mod emc;
mod entry;
mod expiry;
mod folder;
mod prefetch;
mod subtable;
#[cfg(test)]
mod tests;

pub use compiled::{FastOp, FastPlan, FAST_OPS};
pub use dump::{match_string, steps_string, DpFlow};
pub use emc::emc_hash;
use emc::{Emc, EMC_CODE};
pub use entry::{count_steps, Megaflow};
pub use expiry::Change;
pub use folder::{Folder, FolderStats, PASS_MS};
pub use prefetch::{prefetch, prefetch_span, prefetch_write};
pub use subtable::start_reaper;
use subtable::{reap, Subtable, PREFETCH_SLOTS};

/// A lookup's "no megaflow".
pub const NONE: u32 = u32::MAX;

/// Bits of a code that name the slot in its subtable.
const SLOT_BITS: u32 = 22;

/// The code of slot `slot` of subtable `si` (slots below 2^22 with
/// [`MAX_MEGAFLOWS`], subtables below 2^9: bit 31 stays clear).
fn code(si: usize, slot: usize) -> u32 {
    u32::try_from((si << SLOT_BITS) | slot).unwrap_or(NONE)
}

/// The (subtable, slot) of a code.
#[inline]
fn decode(code: u32) -> (usize, usize) {
    (usize::try_from(code >> SLOT_BITS).unwrap_or(0), usize::try_from(code & ((1 << SLOT_BITS) - 1)).unwrap_or(0))
}

/// Megaflows one cache holds by default (`[pmd] megaflow_limit`); a full
/// cache starts over at the end of the batch that filled it.
pub const DEFAULT_MEGAFLOWS: usize = 262_144;
/// Megaflows one cache may be configured to hold at most.
pub const MAX_MEGAFLOWS: usize = 1 << SLOT_BITS;

impl Drop for MegaflowCache {
    fn drop(&mut self) {
        self.hand_over_now();
        reap(std::mem::take(&mut self.subtables));
    }
}

/// Stages of the OpenFlow fast path whose cycles are counted
/// ([`CacheCounts::cycles`]): flow key extraction, exact-match cache,
/// megaflow lookup, upcalls (the table walk and the install), replay of
/// the actions (output into the tx batches included).
pub const STAGES: [&str; 5] = ["extract", "emc", "megaflow", "upcall", "actions"];
/// Index of a stage in [`STAGES`].
pub const STAGE_EXTRACT: usize = 0;
/// See [`STAGE_EXTRACT`].
pub const STAGE_EMC: usize = 1;
/// See [`STAGE_EXTRACT`].
pub const STAGE_MEGAFLOW: usize = 2;
/// See [`STAGE_EXTRACT`].
pub const STAGE_UPCALL: usize = 3;
/// See [`STAGE_EXTRACT`].
pub const STAGE_ACTIONS: usize = 4;

/// Counters of a cache, folded into the bridge's atomics per batch.
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheCounts {
    /// Packets a megaflow answered (the exact-match cache's not included).
    pub hits: u64,
    /// Packets the exact-match cache answered.
    pub emc_hits: u64,
    /// Keys put into the exact-match cache.
    pub emc_inserts: u64,
    /// Packets a megaflow answered because their key equals the previous
    /// packet's on its subtable's bits (no hash, no probe; in `hits` too).
    pub repeats: u64,
    /// Groups of packets of one megaflow in one batch replayed together
    /// (compiled decisions).
    pub groups: u64,
    /// Packets replayed in such groups.
    pub grouped: u64,
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
    /// Times a full cache doubled its limit instead.
    pub grown: u64,
    /// Megaflows removed after `max_idle_ms` without a packet.
    pub expired: u64,
    /// Megaflows removed because a flow table change may affect them
    /// (the others were kept for the new tables).
    pub revalidated: u64,
    /// Bytes of megaflows installed, and of megaflows dropped (see
    /// [`Megaflow::bytes`]).
    pub bytes_added: u64,
    /// See `bytes_added`.
    pub bytes_dropped: u64,
    /// TSC cycles per stage ([`STAGES`]), counted by the datapath.
    pub cycles: [u64; 5],
}

/// When a PMD thread consults its exact-match cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmcMode {
    /// When it pays: while megaflow lookups probe two subtables or more
    /// per packet on average (with one subtable, hashing the whole key
    /// for the exact-match cache costs as much as the megaflow probe it
    /// would save).
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// Settings of the caches of one PMD thread (`[pmd]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Exact-match cache use.
    pub emc: EmcMode,
    /// Exact-match cache entries (a power of two; 0: none).
    pub emc_entries: usize,
    /// One key in this many that hit a megaflow goes into the exact-match
    /// cache (1: all; 0: none), so that a flood of short flows does not
    /// churn it (OVS's `emc-insert-inv-prob`).
    pub emc_insert_inv_prob: u32,
    /// A megaflow without a packet for this long is removed.
    pub max_idle_ms: u64,
    /// Megaflows at most now (at most [`MAX_MEGAFLOWS`]).
    pub max_megaflows: usize,
    /// A full cache doubles `max_megaflows` up to this many (no more than
    /// [`MAX_MEGAFLOWS`]) instead of starting over; equal to it: fixed.
    pub grow_to: usize,
    /// ... while its megaflows take less than half of this many bytes.
    pub grow_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            emc: EmcMode::Auto,
            emc_entries: 8192,
            emc_insert_inv_prob: 100,
            max_idle_ms: 10_000,
            max_megaflows: DEFAULT_MEGAFLOWS,
            grow_to: DEFAULT_MEGAFLOWS,
            grow_bytes: 0,
        }
    }
}
/// One PMD thread's megaflows for one bridge snapshot.
pub struct MegaflowCache {
    subtables: Vec<Subtable>,
    by_mask: HashMap<Arc<FlowMask>, usize, crate::classifier::WordBuild>,
    len: usize,
    batches: u32,
    /// Megaflow lookups (packets) and subtable probes since the last
    /// ranking: whether the exact-match cache pays (`EmcMode::Auto`).
    window: (u64, u64),
    /// Packets that took the previous packet's answer in a subtable, and
    /// packets checked, since the last ranking: whether checking pays.
    runs: (u64, u64),
    /// Whether batch lookups check for repeated keys.
    runs_on: bool,
    /// Groups of one megaflow's packets the datapath made, and their
    /// packets, since the last ranking: whether grouping pays.
    group_window: (u64, u64),
    /// Whether the datapath groups packets per megaflow (while groups
    /// average 1.25 packets or more; tried again every 16 rankings).
    pub grouping: bool,
    /// Upcall budget: tokens, refilled with time.
    tokens: f64,
    last_refill_ns: u64,
    /// Counts not yet folded into the bridge's atomics.
    pub counts: CacheCounts,
    /// Megaflows installed (or replayed without being kept) since the
    /// last hand-over to the folder ([`MegaflowCache::hand_over`]).
    fresh: Vec<Arc<Megaflow>>,
    /// The folder they go to and the tables' counters they count into,
    /// as last named.
    sink: Option<(Arc<Folder>, Arc<[TableCounters]>)>,
    /// Flow keys the datapath reuses batch after batch (never zeroed).
    pub keys: Vec<FlowKey>,
    /// An install found it full: emptied at the end of the batch.
    full: bool,
    /// Its settings.
    cfg: CacheConfig,
    /// Bytes its megaflows take (see [`Megaflow::bytes`]).
    bytes: u64,
    /// Exact-match cache (allocated when first used).
    emc: Option<Emc>,
    /// Whether the exact-match cache is consulted now.
    emc_active: bool,
    /// Where the idle sweep goes on: (subtable, slot).
    sweep: (usize, usize),
    /// When the next sweep may run, PMD milliseconds.
    next_sweep_ms: u64,
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

/// Megaflow subtables one cache holds at most (codes name 2^9).
const MAX_SUBTABLES: usize = 511;

/// Slots the idle sweep looks at per call.
const SWEEP_SLOTS: usize = 4096;

impl Default for MegaflowCache {
    fn default() -> MegaflowCache {
        MegaflowCache::new(CacheConfig::default())
    }
}

impl MegaflowCache {
    /// An empty cache with settings `cfg`.
    pub fn new(cfg: CacheConfig) -> MegaflowCache {
        MegaflowCache {
            subtables: Vec::new(),
            by_mask: HashMap::default(),
            len: 0,
            batches: 0,
            window: (0, 0),
            runs: (0, 0),
            runs_on: true,
            group_window: (0, 0),
            grouping: true,
            tokens: UPCALL_BURST,
            last_refill_ns: 0,
            counts: CacheCounts::default(),
            fresh: Vec::new(),
            sink: None,
            keys: Vec::new(),
            full: false,
            cfg: CacheConfig {
                max_megaflows: cfg.max_megaflows.min(MAX_MEGAFLOWS),
                grow_to: cfg.grow_to.max(cfg.max_megaflows).min(MAX_MEGAFLOWS),
                ..cfg
            },
            bytes: 0,
            emc: None,
            emc_active: cfg.emc == EmcMode::On && cfg.emc_entries > 0,
            sweep: (0, 0),
            next_sweep_ms: 0,
        }
    }

    /// An empty cache of at most `max` megaflows (at most
    /// [`MAX_MEGAFLOWS`]), other settings as default.
    pub fn with_capacity(max: usize) -> MegaflowCache {
        MegaflowCache::new(CacheConfig { max_megaflows: max, grow_to: max, ..CacheConfig::default() })
    }

    /// The empty cache that follows `old` for a new table snapshot: it
    /// takes over `old`'s exact-match cache, whose entries a new
    /// generation invalidates all at once (no clearing, no allocation on
    /// the PMD thread).
    pub fn succeeding(old: &mut MegaflowCache) -> MegaflowCache {
        let mut c = MegaflowCache::new(old.cfg);
        c.sink.clone_from(&old.sink);
        c.emc = old.emc.take();
        if let Some(e) = c.emc.as_mut() {
            e.generation = e.generation.wrapping_add(1);
        }
        c.emc_active = old.emc_active;
        c.tokens = old.tokens;
        c.last_refill_ns = old.last_refill_ns;
        c
    }

    /// Its settings.
    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    /// Bytes its megaflows take: each [`Megaflow::bytes`], its stored key
    /// and its share of the index (two positions at most half full).
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

    /// Whether the datapath should look the batch up in the exact-match
    /// cache first ([`MegaflowCache::emc_lookup_batch`]).
    #[inline]
    pub fn emc_active(&self) -> bool {
        self.emc_active
    }

    /// The megaflows covering `keys`, as codes for [`MegaflowCache::get`]
    /// in `out`, for the keys whose code is [`NONE`] (a miss stays
    /// [`NONE`]; the caller fills `out` with it first). Each subtable is
    /// probed for the whole batch at once: hashes first, with the index
    /// words they need prefetched, then the probes.
    pub fn lookup_batch(&mut self, keys: &[FlowKey], out: &mut [u32]) {
        self.lookup_batch_at(keys, out, &mut [0; 64]);
    }

    /// [`MegaflowCache::lookup_batch`], with the address of each hit's
    /// megaflow in `at` (left as it was where it did not hit here: the
    /// caller fills it with 0 first), for [`MegaflowCache::megaflow_at`].
    pub fn lookup_batch_at(&mut self, keys: &[FlowKey], out: &mut [u32], at: &mut [usize]) {
        let n = keys.len().min(out.len()).min(at.len()).min(64);
        let mut left = out[..n].iter().filter(|c| **c == NONE).count();
        self.window.0 += left as u64;
        let mut hashes = [0u64; 64];
        // Packets equal to the previous one on a subtable's bits take its
        // answer there without a hash or a probe (one lookup per run of a
        // flow's packets), checked while runs are common (see `rerank`).
        let runs = self.runs_on;
        let mut follow = [false; 64];
        for (si, st) in self.subtables.iter_mut().enumerate() {
            if left == 0 {
                break;
            }
            for i in 0..n {
                if out[i] != NONE {
                    continue;
                }
                follow[i] = runs && i > 0 && out[i - 1] == NONE && st.same_masked(&keys[i], &keys[i - 1]);
                if follow[i] {
                    self.runs.0 += 1;
                } else {
                    hashes[i] = st.hash(&keys[i]);
                    st.prefetch(hashes[i]);
                }
            }
            if runs {
                self.runs.1 += n as u64;
            }
            // The index words are on their way; start loading the stored
            // keys and megaflows their first probes name (where they may
            // not be in the core's caches).
            if st.flows.len() >= PREFETCH_SLOTS {
                for (i, h) in hashes[..n].iter().enumerate() {
                    if out[i] == NONE && !follow[i] {
                        st.prefetch_slot(*h);
                    }
                }
            }
            for i in 0..n {
                if out[i] != NONE {
                    continue;
                }
                let found = if follow[i] {
                    // The previous packet was open here too: its answer.
                    let c = out[i - 1];
                    (c != NONE && decode(c).0 == si).then(|| (decode(c).1, at[i - 1]))
                } else {
                    self.counts.subtable_lookups += 1;
                    self.window.1 += 1;
                    st.find(hashes[i], &keys[i])
                };
                if let Some((slot, a)) = found {
                    out[i] = code(si, slot);
                    at[i] = a;
                    st.hits += 1;
                    self.counts.hits += 1;
                    self.counts.repeats += u64::from(follow[i]);
                    left -= 1;
                }
            }
        }
    }

    /// Counts `groups` groups of `packets` packets the datapath made in a
    /// batch (see [`MegaflowCache::grouping`]).
    pub fn note_groups(&mut self, groups: u64, packets: u64) {
        self.group_window.0 += groups;
        self.group_window.1 += packets;
        self.counts.groups += groups;
        self.counts.grouped += packets;
    }

    /// The megaflow covering `key`, as a code.
    pub fn lookup(&mut self, key: &FlowKey) -> Option<u32> {
        let mut out = [NONE];
        self.lookup_batch(std::slice::from_ref(key), &mut out);
        (out[0] != NONE).then_some(out[0])
    }

    /// The megaflow a code names, by its address `at` as a batch lookup
    /// gave it ([`MegaflowCache::lookup_batch_at`]) or as exposed from the
    /// megaflow itself within the batch (0: by its code, see
    /// [`MegaflowCache::get`]): no read of the slot's reference, a miss
    /// in a big cache. Valid until the end of the batch.
    #[inline]
    pub fn megaflow_at(&self, code: u32, at: usize) -> &Megaflow {
        if at == 0 || code & EMC_CODE != 0 {
            return self.get(code);
        }
        debug_assert_eq!(Arc::as_ptr(self.get(code)).addr(), at, "code {code:#x}");
        // SAFETY: `at` is the exposed address of the megaflow `code`'s
        // slot holds: read by this batch's lookup from the index position
        // naming the slot (positions keep it through every move, see
        // `Pos`; exposed when placed), or exposed from that megaflow
        // earlier in the batch (the debug assertion checks). The cache holds that
        // megaflow's `Arc` until the end of the batch at least (slots move
        // and megaflows go only between batches), and no one writes it
        // through a unique reference (shared, its counters atomics).
        unsafe { &*std::ptr::with_exposed_provenance::<Megaflow>(at) }
    }

    /// The megaflow a code names (valid until the end of the batch).
    #[inline]
    pub fn get(&self, code: u32) -> &Arc<Megaflow> {
        if code & EMC_CODE != 0 {
            let e = self.emc.as_ref().and_then(|e| e.entries.get(usize::try_from(code & !EMC_CODE).unwrap_or(0)));
            if let Some(mf) = e.and_then(|e| e.mf.as_ref()) {
                return mf;
            }
        }
        let (si, slot) = decode(code);
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
        if self.len >= self.cfg.max_megaflows && !self.grow() {
            self.full = true;
            return None;
        }
        let si = match self.by_mask.get(&mf.mask) {
            Some(&i) => i,
            None if self.subtables.len() >= MAX_SUBTABLES => {
                self.full = true;
                return None;
            }
            None => {
                self.subtables.push(Subtable::new(mf.mask.clone()));
                self.by_mask.insert(mf.mask.clone(), self.subtables.len() - 1);
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[si];
        let before = st.flows.len();
        let bytes = st.cost(&mf);
        let slot = st.insert(key, &mf);
        if st.flows.len() > before {
            self.fresh.push(mf);
            self.len += 1;
            self.counts.installs += 1;
            self.counts.bytes_added += bytes;
            self.bytes += bytes;
        }
        Some(code(si, slot))
    }

    /// Doubles the limit of a full cache, when its settings let it grow
    /// (`grow_to`, `grow_bytes`): its megaflows stay, no packet walks the
    /// tables again for a flush. Only the limit changes: the subtables'
    /// index and stored keys grow as they fill.
    fn grow(&mut self) -> bool {
        let c = &mut self.cfg;
        if c.max_megaflows >= c.grow_to || self.bytes.saturating_mul(2) > c.grow_bytes {
            return false;
        }
        c.max_megaflows = (c.max_megaflows * 2).min(c.grow_to);
        self.counts.grown += 1;
        true
    }

    /// Keeps a megaflow the cache did not keep (full) but replayed, for
    /// its counters to reach the tables.
    pub fn keep_unkept(&mut self, mf: Arc<Megaflow>) {
        self.fresh.push(mf);
    }

    /// Ends a batch (codes from it are dead after this): every 64 batches
    /// the subtables are re-ranked by hits and the exact-match cache
    /// switched on or off (`EmcMode::Auto`); a cache that filled up is
    /// emptied (its megaflows' last counts reach the tables through its
    /// folder), so that new flows get megaflows again (within the upcall
    /// budget).
    pub fn end_batch(&mut self) {
        self.emc_commit();
        self.batches = self.batches.wrapping_add(1);
        if self.batches.is_multiple_of(64) {
            self.rerank();
        }
        if !self.full {
            return;
        }
        self.counts.flushed += self.len as u64;
        self.counts.bytes_dropped += self.bytes;
        self.bytes = 0;
        reap(std::mem::take(&mut self.subtables));
        // Its megaflows are freed by the folder's next pass: now.
        if let Some((f, c)) = &self.sink {
            if !self.fresh.is_empty() {
                f.offer(c, &mut self.fresh);
            }
            f.wake();
        }
        self.by_mask.clear();
        self.len = 0;
        self.full = false;
        // Its exact-match entries go with them (all at once).
        if let Some(e) = self.emc.as_mut() {
            e.generation = e.generation.wrapping_add(1);
        }
        self.sweep = (0, 0);
    }

    /// Rebuilds the mask -> subtable index after subtables moved or went.
    fn reindex(&mut self) {
        self.by_mask = self.subtables.iter().enumerate().map(|(i, s)| (s.mask.clone(), i)).collect();
    }

    /// Orders subtables by hits since the last ranking (most first), and
    /// decides whether the exact-match cache pays.
    fn rerank(&mut self) {
        if self.subtables.windows(2).any(|w| w[0].hits < w[1].hits) {
            self.subtables.sort_by_key(|s| std::cmp::Reverse(s.hits));
            self.reindex();
        }
        for s in &mut self.subtables {
            s.hits /= 2;
        }
        // Runs: worth checking while one packet in 16 follows its
        // predecessor; when not, checked again every 16 rankings.
        let (found, tried) = std::mem::take(&mut self.runs);
        self.runs_on = if tried > 0 { found * 16 >= tried } else { self.runs_on || self.batches.is_multiple_of(1024) };
        let (groups, grouped) = std::mem::take(&mut self.group_window);
        self.grouping =
            if groups > 0 { grouped * 4 >= groups * 5 } else { self.grouping || self.batches.is_multiple_of(1024) };
        let (lookups, probes) = std::mem::take(&mut self.window);
        if self.cfg.emc == EmcMode::Auto && self.cfg.emc_entries > 0 && lookups >= 64 {
            // On at two probes per packet, off below 1.5: no flapping.
            self.emc_active = if self.emc_active { probes * 2 >= lookups * 3 } else { probes >= lookups * 2 };
        }
    }
}
