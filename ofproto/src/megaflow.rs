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

use crate::classifier::{FlowMask, IdBuild};
use crate::flow::FlowKey;
use crate::table::Tables;
pub use crate::xlate::Step;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

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

/// A packet's key under one mask: presence of the mask's fields, and their
/// masked values (zero for an absent field).
#[derive(Clone, PartialEq, Eq, Debug)]
struct MaskedKey {
    present: u64,
    values: Box<[[u64; 2]]>,
}

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31)
}

struct Subtable {
    mask: Arc<FlowMask>,
    /// (field id, bits) of the mask.
    fields: Box<[(usize, [u64; 2])]>,
    flows: HashMap<u64, Vec<(MaskedKey, Arc<Megaflow>)>, IdBuild>,
    hits: u64,
}

impl Subtable {
    #[inline]
    fn hash(&self, key: &FlowKey) -> (u64, u64) {
        let present = key.present_bits() & self.mask.present;
        let mut h = present;
        for &(i, bits) in self.fields.iter() {
            if present & (1 << i) != 0 {
                let v = key.words(i);
                h = mix(mix(h, v[0] & bits[0]), v[1] & bits[1]);
            } else {
                h = mix(h, 0x5bd1_e995);
            }
        }
        (present, h)
    }

    fn masked(&self, key: &FlowKey) -> MaskedKey {
        let present = key.present_bits() & self.mask.present;
        let values = self
            .fields
            .iter()
            .map(|&(i, bits)| {
                if present & (1 << i) != 0 {
                    let v = key.words(i);
                    [v[0] & bits[0], v[1] & bits[1]]
                } else {
                    [0, 0]
                }
            })
            .collect();
        MaskedKey { present, values }
    }

    #[inline]
    fn equal(&self, key: &FlowKey, present: u64, mk: &MaskedKey) -> bool {
        mk.present == present
            && self.fields.iter().zip(mk.values.iter()).all(|(&(i, bits), want)| {
                if present & (1 << i) == 0 {
                    return true;
                }
                let v = key.words(i);
                v[0] & bits[0] == want[0] && v[1] & bits[1] == want[1]
            })
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

    /// The megaflow covering `key`, if any.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey) -> Option<Arc<Megaflow>> {
        self.lookups_since_rank += 1;
        if self.lookups_since_rank >= 1024 {
            self.rerank();
        }
        for st in &mut self.subtables {
            self.counts.subtable_lookups += 1;
            let (present, h) = st.hash(key);
            let Some(list) = st.flows.get(&h) else { continue };
            if let Some((_, mf)) = list.iter().find(|(mk, _)| st.equal(key, present, mk)) {
                st.hits += 1;
                self.counts.hits += 1;
                return Some(mf.clone());
            }
        }
        None
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

    /// Installs the decision `steps` for `key` under `mask` (InPort is
    /// always part of it); returns it. A full cache returns it without
    /// keeping it.
    pub fn install(&mut self, key: &FlowKey, mask: FlowMask, steps: Vec<Step>) -> Arc<Megaflow> {
        let mask = Arc::new(mask);
        let si = match self.by_mask.get(&mask) {
            Some(&i) => i,
            None => {
                let fields = mask.fields().map(|f| (f as usize, mask.bits[f as usize])).collect();
                self.subtables.push(Subtable { mask: mask.clone(), fields, flows: HashMap::default(), hits: 0 });
                self.by_mask.insert(mask.clone(), self.subtables.len() - 1);
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[si];
        let last_table = steps.iter().rposition(|s| matches!(s, Step::Table { .. })).unwrap_or(0);
        let mf = Arc::new(Megaflow {
            last_table,
            steps: steps.into_boxed_slice(),
            mask: st.mask.clone(),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            used_ms: AtomicU64::new(0),
            folded: [AtomicU64::new(0), AtomicU64::new(0)],
            dirty: AtomicBool::new(false),
        });
        if self.len >= MAX_MEGAFLOWS {
            return mf;
        }
        let (_, h) = st.hash(key);
        let mk = st.masked(key);
        let list = st.flows.entry(h).or_default();
        if !list.iter().any(|(k, _)| *k == mk) {
            list.push((mk, mf.clone()));
            self.len += 1;
            self.counts.installs += 1;
        }
        mf
    }

    /// Counts a hit of `mf` (found by [`MegaflowCache::lookup`]).
    #[inline]
    pub fn hit(&mut self, mf: &Arc<Megaflow>, len: u64, now_ms: u64) {
        if mf.hit(len, now_ms) {
            self.dirty.push(mf.clone());
        }
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
        self.subtables.iter().flat_map(|s| s.flows.values().flatten().map(|(_, m)| m))
    }
}
