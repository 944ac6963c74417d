//! The megaflow cache of one PMD thread for one OpenFlow bridge (free of
//! DPDK: the datapath replays what it finds, see `vswitch::ofdp`): what the
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
use crate::ofp::{Action, Match};
use crate::table::{TableCounters, Tables};
pub use crate::xlate::Step;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

mod folder;
pub use folder::{Folder, FolderStats, PASS_MS};

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

/// A decision of the common shape (Ethernet rewrites, TTL decrement,
/// one output to a port) compiled at install time into the datapath's
/// own operations, with the output port resolved, so that its replay
/// neither interprets OpenFlow actions nor looks a port number up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastOp {
    /// Overwrite the 6 bytes at `at` (an Ethernet address).
    SetMac {
        /// 0: destination, 6: source.
        at: u8,
        /// The address.
        mac: [u8; 6],
    },
    /// Decrement the IP TTL or hop limit; at expiry the packet is dropped
    /// and the replay counts `done` steps.
    DecTtl {
        /// Steps the replay reached.
        done: u32,
    },
    /// Send to the datapath's port `slot` (the last operation).
    Output {
        /// The port's slot.
        slot: u32,
    },
}

/// Compiled operations a megaflow holds at most (inline: its replay
/// reads no other memory; four keep everything a hit touches in one line,
/// see [`Megaflow::HIT`]).
pub const FAST_OPS: usize = 4;

/// A compiled decision: up to [`FAST_OPS`] operations, stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPlan {
    ops: [FastOp; FAST_OPS],
    len: u8,
}

impl FastPlan {
    /// The plan of `ops`; None when they are too many.
    pub fn new(ops: &[FastOp]) -> Option<FastPlan> {
        let mut p = FastPlan { ops: [FastOp::DecTtl { done: 0 }; FAST_OPS], len: u8::try_from(ops.len()).ok()? };
        p.ops.get_mut(..ops.len())?.copy_from_slice(ops);
        Some(p)
    }

    /// Its operations.
    #[inline]
    pub fn ops(&self) -> &[FastOp] {
        &self.ops[..usize::from(self.len).min(FAST_OPS)]
    }
}

/// A cached decision. What a hit touches (the counters it writes, its
/// group and the flag an exact-match hit reads, the compiled plan) fills
/// its first cache line, [`Megaflow::HIT`] bytes (`repr(C)` keeps the
/// order, and the alignment keeps the `Arc`'s counts out of it: vswitchd
/// allocates such blocks without glibc's slow aligned path, see
/// `vswitch::alloc`); then what a fold reads (the lookups it counts, the
/// steps), within [`Megaflow::HOT`] bytes: a lookup prefetches the hit's
/// line with the stored key, a fold all of them a few megaflows ahead.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Megaflow {
    /// Packets that took it (the upcall's own packet included: it is
    /// replayed from the megaflow it installed).
    pub packets: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// When it was last used, PMD milliseconds.
    pub used_ms: AtomicU64,
    /// Its group in the batch being processed, where the owning PMD
    /// thread groups packets per megaflow (valid only while that batch's
    /// group of this index names it).
    pub group: std::sync::atomic::AtomicU16,
    /// Removed from its cache (expired): exact-match entries that still
    /// name it miss.
    dead: AtomicBool,
    /// The decision compiled, when it has the common shape (see
    /// [`FastOp`]).
    pub fast: Option<FastPlan>,
    /// The tables its steps looked up and the entries they matched, what
    /// a fold counts, inline (a compiled replay never reads the steps).
    counted: Counted,
    /// What to do, in order.
    pub steps: Box<[Step]>,
    /// The mask it was made under.
    pub mask: Arc<FlowMask>,
    /// Index of its last table lookup in `steps` (0 when none): a packet
    /// whose replay stopped earlier (TTL expired, metered away) counts
    /// only the tables it reached.
    pub last_table: usize,
    /// When it was installed, PMD milliseconds.
    pub created_ms: u64,
    /// The tables its decision looked at, one bit per table id.
    visited: [u64; 4],
    /// The tables its decision looked at after it changed the key
    /// (set-field, push_vlan, write-metadata): there the key looked up is
    /// not the megaflow's, so any change to such a table may affect it.
    rewritten: [u64; 4],
}

/// Table lookups a megaflow's steps hold that a fold counts inline.
const COUNTED: usize = 4;

/// A megaflow's table lookups (table id, entry matched), inline when
/// there are at most [`COUNTED`]; `n == u8::MAX`: more, walk the steps.
#[derive(Debug)]
struct Counted {
    n: u8,
    tables: [u8; COUNTED],
    entries: [Option<Arc<crate::table::EntryStats>>; COUNTED],
}

impl Counted {
    fn new(steps: &[Step]) -> Counted {
        let mut c = Counted { n: 0, tables: [0; COUNTED], entries: Default::default() };
        for s in steps {
            let Step::Table { table, entry } = s else { continue };
            let i = usize::from(c.n);
            if i == COUNTED {
                return Counted { n: u8::MAX, tables: [0; COUNTED], entries: Default::default() };
            }
            c.tables[i] = *table;
            c.entries[i].clone_from(entry);
            c.n += 1;
        }
        c
    }

    /// The lookups, when inline.
    fn inline(&self) -> Option<impl Iterator<Item = (u8, Option<&crate::table::EntryStats>)>> {
        let n = usize::from(self.n);
        (n <= COUNTED).then(|| self.tables[..n].iter().zip(&self.entries[..n]).map(|(t, e)| (*t, e.as_deref())))
    }
}

/// Counts gathered over many megaflows and added to the shared atomics
/// once per table and per entry, not once per megaflow (a fold of
/// thousands of new megaflows that all went through table 0's one entry
/// adds to it once). Direct-mapped: an entry or table that collides sends
/// its predecessor's counts on.
struct Tally<'a> {
    tables: [(u8, u64, u64); 8],
    entries: [Option<(&'a crate::table::EntryStats, u64, u64, u64)>; 64],
}

impl<'a> Tally<'a> {
    fn new() -> Tally<'a> {
        Tally { tables: [(u8::MAX, 0, 0); 8], entries: [None; 64] }
    }

    /// Adds `packets` of `bytes` through `steps` at `now_ms`.
    fn add(&mut self, counters: &[TableCounters], steps: &'a [Step], packets: u64, bytes: u64, now_ms: u64) {
        for s in steps {
            if let Step::Table { table, entry } = s {
                self.add_one(counters, *table, entry.as_deref(), packets, bytes, now_ms);
            }
        }
    }

    /// Adds `packets` of `bytes` looked up in `table` (matching `entry`)
    /// at `now_ms`.
    fn add_one(
        &mut self,
        counters: &[TableCounters],
        table: u8,
        entry: Option<&'a crate::table::EntryStats>,
        packets: u64,
        bytes: u64,
        now_ms: u64,
    ) {
        let matched = if entry.is_some() { packets } else { 0 };
        let t = &mut self.tables[usize::from(table) % 8];
        if t.0 != table {
            Self::send_table(counters, *t);
            *t = (table, 0, 0);
        }
        t.1 += packets;
        t.2 += matched;
        if let Some(e) = entry {
            let slot = &mut self.entries[(std::ptr::from_ref(e) as usize >> 6) % 64];
            match slot {
                Some(x) if std::ptr::eq(x.0, e) => {
                    x.1 += packets;
                    x.2 += bytes;
                    x.3 = x.3.max(now_ms);
                }
                _ => {
                    if let Some((e, p, b, t)) = slot.replace((e, packets, bytes, now_ms)) {
                        e.hit(p, b, t);
                    }
                }
            }
        }
    }

    fn send_table(counters: &[TableCounters], (table, lookups, matches): (u8, u64, u64)) {
        if let Some(t) = counters.get(usize::from(table)).filter(|_| lookups > 0) {
            t.lookups.fetch_add(lookups, Ordering::Relaxed);
            if matches > 0 {
                t.matches.fetch_add(matches, Ordering::Relaxed);
            }
        }
    }

    /// Adds everything gathered to the shared counters.
    fn send(self, counters: &[TableCounters]) {
        for t in self.tables {
            Self::send_table(counters, t);
        }
        for (e, p, b, t) in self.entries.into_iter().flatten() {
            e.hit(p, b, t);
        }
    }
}

/// Megaflows a subtable holds at least before its lookups prefetch the
/// stored keys and megaflows their probes name: below (about 200 bytes
/// each), they stay in the core's caches and the prefetches only cost.
const PREFETCH_SLOTS: usize = 4096;

/// Adds `packets` of `bytes` to the counters of the tables and entries
/// decision `steps` went through (`now_ms`: their last use).
pub fn count_steps(tables: &Tables, steps: &[Step], packets: u64, bytes: u64, now_ms: u64) {
    for s in steps {
        if let Step::Table { table, entry } = s {
            if let Some(t) = tables.counters.get(usize::from(*table)) {
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
    /// [`MegaflowCache::intern`], so that megaflows of one mask share it)
    /// at `now_ms`.
    pub fn new(steps: Vec<Step>, mask: Arc<FlowMask>, now_ms: u64) -> Megaflow {
        let last_table = steps.iter().rposition(|s| matches!(s, Step::Table { .. })).unwrap_or(0);
        let (mut visited, mut rewritten) = ([0u64; 4], [0u64; 4]);
        let mut changed = false;
        for s in &steps {
            match s {
                Step::Table { table, .. } => {
                    let (w, b) = (usize::from(*table / 64), 1 << (table % 64));
                    visited[w] |= b;
                    if changed {
                        rewritten[w] |= b;
                    }
                }
                Step::Metadata(_) => changed = true,
                Step::Apply { acts, .. } => {
                    changed |= acts
                        .iter()
                        .any(|a| matches!(a, Action::SetField(_) | Action::PushVlan(_)) || crate::xlate::reextracts(a));
                }
                Step::Meter(_) => {}
            }
        }
        let counted = Counted::new(&steps);
        Megaflow {
            visited,
            rewritten,
            last_table,
            fast: None,
            steps: steps.into_boxed_slice(),
            mask,
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            used_ms: AtomicU64::new(now_ms),
            group: std::sync::atomic::AtomicU16::new(u16::MAX),
            created_ms: now_ms,
            counted,
            dead: AtomicBool::new(false),
        }
    }

    /// The heap it takes: the struct and its `Arc` header (a line: the
    /// struct is line-aligned), the line more vswitchd's allocator takes
    /// for a line-aligned block (`vswitch::alloc`), its steps and their
    /// actions (the mask is shared by its subtable).
    pub fn bytes(&self) -> u64 {
        let acts: usize = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Apply { acts, .. } => acts.len() * std::mem::size_of::<Action>(),
                _ => 0,
            })
            .sum();
        let header = 16usize.next_multiple_of(std::mem::align_of::<Megaflow>());
        let over = std::mem::align_of::<Megaflow>();
        (std::mem::size_of::<Megaflow>() + header + over + self.steps.len() * std::mem::size_of::<Step>() + acts) as u64
    }

    /// Counts `packets` of `bytes` at `now_ms` (a [`Folder`] adds them
    /// to its tables and entries later). Only the owning PMD thread calls
    /// it: loads and stores, no locked read-modify-write.
    #[inline]
    pub fn hit(&self, packets: u64, bytes: u64, now_ms: u64) {
        self.packets.store(self.packets.load(Ordering::Relaxed) + packets, Ordering::Relaxed);
        self.bytes.store(self.bytes.load(Ordering::Relaxed) + bytes, Ordering::Relaxed);
        self.used_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Adds `packets` of `bytes` (what it gained since its last fold) to
    /// the tables and entries its decision went through, into `tally`.
    fn count_into<'a>(&'a self, counters: &[TableCounters], tally: &mut Tally<'a>, packets: u64, bytes: u64) {
        let now_ms = self.used_ms.load(Ordering::Relaxed);
        match self.counted.inline() {
            Some(lookups) => {
                for (t, e) in lookups {
                    tally.add_one(counters, t, e, packets, bytes, now_ms);
                }
            }
            None => tally.add(counters, &self.steps, packets, bytes, now_ms),
        }
    }
}

// What a hit touches is one line (a second would be a second miss per
// packet in a big table).
const _: () = assert!(Megaflow::HIT <= 64);

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

impl Megaflow {
    /// Bytes from its start that a hit reads or writes: one line.
    pub const HIT: usize = std::mem::offset_of!(Megaflow, counted);

    /// Bytes from its start that a hit or a fold reads or writes.
    pub const HOT: usize = std::mem::offset_of!(Megaflow, steps);

    /// Starts loading the lines a hit touches, for the megaflow at address
    /// `at` (a hint: any address is safe), to be written (a hit writes its
    /// counters; the folder's thread reads them, so that a plain prefetch
    /// would bring them shared and the store would go for them again). No
    /// more: in a big cache the lines a batch's lookups prefetch fill the
    /// queue of misses.
    #[inline]
    fn prefetch_hit_at(at: usize) {
        let p = std::ptr::without_provenance::<u8>(at);
        let first = at & !63;
        let last = (at + Megaflow::HIT - 1) & !63;
        for line in (first..=last).step_by(64) {
            prefetch_write(p.wrapping_add(line.wrapping_sub(at)));
        }
    }

    /// Starts loading the lines a fold touches (see
    /// [`Megaflow::prefetch_hit_at`]).
    #[inline]
    fn prefetch_fold_at(at: usize) {
        prefetch_span(std::ptr::without_provenance::<u8>(at), Megaflow::HOT);
    }

    /// Starts loading the counters of the entries it matched (its hot
    /// lines loaded); walking the steps when they are not inline.
    #[inline]
    fn prefetch_entries(&self) {
        match self.counted.inline() {
            Some(lookups) => {
                for e in lookups.filter_map(|(_, e)| e) {
                    prefetch(std::ptr::from_ref(e).cast());
                }
            }
            None => {
                for s in self.steps.iter() {
                    if let Step::Table { entry: Some(e), .. } = s {
                        prefetch(Arc::as_ptr(e).cast());
                    }
                }
            }
        }
    }

    /// Whether its decision looked at table `t`.
    #[inline]
    fn visited(&self, t: u8) -> bool {
        self.visited[usize::from(t / 64)] & (1 << (t % 64)) != 0
    }

    /// Whether its decision looked at table `t` with a key it had changed.
    #[inline]
    fn rewritten_for(&self, t: u8) -> bool {
        self.rewritten[usize::from(t / 64)] & (1 << (t % 64)) != 0
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

/// Whether the CPU has PREFETCHW (CPUID 0x8000_0001, ECX bit 8): on
/// others the instruction is not safe to run.
fn has_prefetchw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID is on every x86-64 CPU; the leaf is checked against
            // the highest one it has.
            let max = std::arch::x86_64::__cpuid(0x8000_0000).eax;
            max >= 0x8000_0001 && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Starts loading the cache line at `p` to write it (PREFETCHW: the line
/// comes exclusive, taken from any other core that holds it, so that the
/// store that follows waits for nothing); a plain prefetch where the CPU
/// lacks the instruction. A hint: never faults.
#[inline]
pub fn prefetch_write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    if has_prefetchw() {
        // SAFETY: PREFETCHW (checked present) only hints the cache; it
        // never faults, whatever the address, and touches no register or
        // flag.
        unsafe {
            std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly));
        }
        return;
    }
    prefetch(p);
}

/// Starts loading every cache line of the `len` bytes at `p` (`len` > 0).
#[inline]
pub fn prefetch_span(p: *const u8, len: usize) {
    // One prefetch per line the span touches.
    let first = p.addr() & !63;
    let last = (p.addr() + len.max(1) - 1) & !63;
    for line in (first..=last).step_by(64) {
        prefetch(p.wrapping_add(line.wrapping_sub(p.addr())));
    }
}

/// A hash over pairs of words whose multiplies do not wait for each
/// other: each word is multiplied on its own (xored with its position, so
/// that equal words in different fields differ) and the products summed;
/// a finaliser mixes the sums.
struct Acc(u64, u64);

impl Acc {
    #[inline]
    fn new(seed: u64) -> Acc {
        Acc(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 0)
    }

    #[inline]
    fn add(&mut self, n: usize, w0: u64, w1: u64) {
        let n = n as u64;
        self.0 = self.0.wrapping_add((w0 ^ n).wrapping_mul(0xff51_afd7_ed55_8ccd));
        self.1 = self.1.wrapping_add((w1 ^ n).wrapping_mul(0xc4ce_b9fe_1a85_ec53));
    }

    #[inline]
    fn finish(self) -> u64 {
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
struct Pos {
    word: u64,
    at: usize,
}

/// A cache line of stored key words.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u64; 8]);

/// Stored keys in the first segment of a subtable's arena; segment
/// `j >= 1` holds `SEG0 << (j - 1)`, so the arena doubles as a vector
/// does but never moves a key (a vector of over-aligned lines would be
/// copied whole at each doubling: a stall of milliseconds on the PMD
/// thread at a million megaflows).
const SEG0: usize = 16;

/// The (segment, index in it) of stored key `slot`.
#[inline]
fn seg(slot: usize) -> (usize, usize) {
    if slot < SEG0 {
        return (0, slot);
    }
    let k = usize::try_from(usize::BITS - 1 - (slot / SEG0).leading_zeros()).unwrap_or(0);
    (k + 1, slot - (SEG0 << k))
}

/// Stored keys segment `j` holds.
fn seg_len(j: usize) -> usize {
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
fn word(row: &[Line], w: usize) -> u64 {
    row[w / 8].0[w % 8]
}

/// Megaflows of one mask: an open-addressing index of [`Pos`]itions over
/// a flat arena of masked keys, so a probe reads one index position and
/// one stored key. A stored key is compact: the presence word, then each
/// field's masked value in one word, or two where the mask has bits in
/// the second (an IPv6 address); padded to whole cache lines and aligned
/// to them (a 5-tuple key with ports and addresses takes one line).
struct Subtable {
    mask: Arc<FlowMask>,
    /// (field id, bits) of the mask.
    fields: Box<[(usize, [u64; 2])]>,
    /// Each field's first word in a stored key, and whether it has two.
    at: Box<[(usize, bool)]>,
    /// Words per stored key in `keys` (a multiple of 8: whole lines).
    stride: usize,
    /// A power of two long, at most half full.
    index: Vec<Pos>,
    /// The stored keys, in segments (see [`SEG0`]).
    keys: Vec<Box<[Line]>>,
    flows: Vec<Arc<Megaflow>>,
    hits: u64,
}

impl Subtable {
    fn new(mask: Arc<FlowMask>) -> Subtable {
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
    fn stored(&self, k: &[Line], n: usize) -> [u64; 2] {
        let (o, wide) = self.at[n];
        [word(k, o), if wide { word(k, o + 1) } else { 0 }]
    }

    /// The hash of `key`'s bits under the mask: one multiply per word,
    /// none waiting for another (a chain of dependent mixes costs a
    /// multiply's latency per word).
    #[inline]
    fn hash(&self, key: &FlowKey) -> u64 {
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
    fn stored_hash(&self, k: &[Line]) -> u64 {
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
    fn covers(&self, slot: usize, key: &FlowKey) -> bool {
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
    fn same_masked(&self, a: &FlowKey, b: &FlowKey) -> bool {
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
    fn prefetch(&self, hash: u64) {
        let i = usize::try_from(hash).unwrap_or(0) & (self.index.len() - 1);
        prefetch(std::ptr::from_ref(&self.index[i]).cast());
    }

    /// Starts loading the stored key and the megaflow of the slot a probe
    /// for `hash` looks at first (both named by its index position).
    #[inline]
    fn prefetch_slot(&self, hash: u64) {
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
    fn find(&self, hash: u64, key: &FlowKey) -> Option<(usize, usize)> {
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
    fn place(index: &mut [Pos], hash: u64, slot: usize, mf: &Arc<Megaflow>) {
        let m = index.len() - 1;
        let mut i = usize::try_from(hash).unwrap_or(0) & m;
        while index[i].word != 0 {
            i = (i + 1) & m;
        }
        index[i] = Pos { word: (hash >> 32) << 32 | (slot as u64 + 1), at: Arc::as_ptr(mf).expose_provenance() };
    }

    /// Stored key `slot`'s words.
    fn key(&self, slot: usize) -> &[Line] {
        let lines = self.stride / 8;
        let (j, r) = seg(slot);
        &self.keys[j][r * lines..(r + 1) * lines]
    }

    /// The index position that names `slot` (whose stored key hashes to
    /// `hash`).
    fn index_pos(&self, hash: u64, slot: usize) -> Option<usize> {
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
    fn unplace(&mut self, pos: usize) {
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
    fn remove(&mut self, slot: usize) -> Arc<Megaflow> {
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
    fn cost(&self, mf: &Megaflow) -> u64 {
        mf.bytes() + 8 * self.stride as u64 + 2 * std::mem::size_of::<Pos>() as u64 + 24
    }

    /// Removes megaflow `slot` for good (expired, or affected by a
    /// change): its exact-match entries then miss (its folder folds its
    /// counters once more and frees it); the bytes it took.
    fn retire(&mut self, slot: usize) -> u64 {
        let mf = self.remove(slot);
        mf.dead.store(true, Ordering::Relaxed);
        self.cost(&mf)
    }

    /// Adds `mf` for `key`; its slot (an existing one when a stored key
    /// covers `key` already).
    fn insert(&mut self, key: &FlowKey, mf: &Arc<Megaflow>) -> usize {
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
    /// Megaflows at most (at most [`MAX_MEGAFLOWS`]).
    pub max_megaflows: usize,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            emc: EmcMode::Auto,
            emc_entries: 8192,
            emc_insert_inv_prob: 100,
            max_idle_ms: 10_000,
            max_megaflows: DEFAULT_MEGAFLOWS,
        }
    }
}

/// Key words an exact-match entry holds (two per present field: keys of
/// more than 16 fields are not cached there).
const EMC_WORDS: usize = 32;

/// The bit of a code that names an exact-match entry instead of a
/// megaflow slot.
const EMC_CODE: u32 = 1 << 31;

/// One exact-match entry: a whole flow key and the megaflow it hit.
#[derive(Clone)]
struct EmcEntry {
    hash: u64,
    /// Valid only when equal to the cache's generation.
    generation: u32,
    present: u64,
    words: [u64; EMC_WORDS],
    mf: Option<Arc<Megaflow>>,
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
struct Pending {
    hash: u64,
    present: u64,
    words: [u64; EMC_WORDS],
    code: u32,
}

/// The exact-match cache: whole flow keys, two candidate entries per key
/// hash. Its entries are invalidated all at once by a new generation (a
/// new table snapshot), so it survives snapshots without being cleared.
struct Emc {
    entries: Vec<EmcEntry>,
    generation: u32,
    /// Insert when the random draw is below it (`u32::MAX`: always).
    threshold: u32,
    rng: u64,
    /// Offers kept by the draw in this batch (never grows past a batch).
    pending: Vec<Pending>,
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
    fn new(entries: usize, inv_prob: u32) -> Emc {
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
    fn slots(&self, hash: u64) -> [usize; 2] {
        let m = self.entries.len() - 1;
        [usize::try_from(hash).unwrap_or(0) & m, usize::try_from(hash >> 32).unwrap_or(0) & m]
    }

    #[inline]
    fn find(&self, hash: u64, key: &FlowKey) -> Option<usize> {
        self.slots(hash).into_iter().find(|&i| self.entries[i].matches(hash, self.generation, key))
    }

    /// The configured probability's draw for `key`: what to insert, or
    /// None.
    #[inline]
    fn draw(&mut self, hash: u64, key: &FlowKey, code: u32) -> Option<Pending> {
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
    fn insert(&mut self, p: &Pending, mf: Arc<Megaflow>) {
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

/// A megaflow as `dp-flows` shows it.
#[derive(Debug)]
pub struct DpFlow {
    /// Its key: the bits of `mask`, the others zero.
    pub key: FlowKey,
    /// Its mask.
    pub mask: Arc<FlowMask>,
    /// The megaflow.
    pub mf: Arc<Megaflow>,
}

impl DpFlow {
    /// The key under the mask, close to `ovs-appctl dpctl/dump-flows`:
    /// `field=value` for all bits, `field=value/mask` for some,
    /// `field=*` where only the field's presence matters, `!field` where
    /// its absence does.
    pub fn match_string(&self) -> String {
        let mut parts = Vec::new();
        for f in self.mask.fields() {
            let i = f as usize;
            let w = f.width();
            let mut m = [0u8; 16];
            m[..8].copy_from_slice(&self.mask.bits[i][0].to_ne_bytes());
            m[8..].copy_from_slice(&self.mask.bits[i][1].to_ne_bytes());
            let m = &m[..w];
            match self.key.get(f) {
                None => parts.push(format!("!{}", f.name())),
                Some(_) if m.iter().all(|b| *b == 0) => parts.push(format!("{}=*", f.name())),
                Some(v) if m.iter().all(|b| *b == 0xff) => parts.push(crate::ofp::oxm::Oxm::exact(f, v).to_string()),
                Some(v) => parts.push(crate::ofp::oxm::Oxm::masked(f, v, m).to_string()),
            }
        }
        parts.join(",")
    }

    /// The tables its decision went through.
    pub fn tables(&self) -> Vec<u8> {
        self.mf
            .steps
            .iter()
            .filter_map(|s| if let Step::Table { table, .. } = s { Some(*table) } else { None })
            .collect()
    }

    /// Its decision as an action list (`drop` when it sends nothing).
    pub fn actions_string(&self) -> String {
        let mut parts = Vec::new();
        for s in self.mf.steps.iter() {
            match s {
                Step::Table { entry: None, table } => parts.push(format!("drop(miss in table {table})")),
                Step::Table { .. } => {}
                Step::Apply { acts, .. } => parts.extend(acts.iter().map(ToString::to_string)),
                Step::Metadata(m) => parts.push(format!("metadata=0x{m:x}")),
                Step::Meter(m) => parts.push(format!("meter:{m}")),
            }
        }
        if parts.is_empty() {
            "drop".into()
        } else {
            parts.join(",")
        }
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
            cfg: CacheConfig { max_megaflows: cfg.max_megaflows.min(MAX_MEGAFLOWS), ..cfg },
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
        MegaflowCache::new(CacheConfig { max_megaflows: max, ..CacheConfig::default() })
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
    fn emc_commit(&mut self) {
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
        if self.len >= self.cfg.max_megaflows {
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

    /// Every megaflow with its key and mask, for `dp-flows` and tests
    /// (allocates: on request only).
    pub fn dump(&self) -> Vec<DpFlow> {
        let mut v = Vec::with_capacity(self.len);
        for st in &self.subtables {
            for (slot, mf) in st.flows.iter().enumerate() {
                let k = st.key(slot);
                let mut key = FlowKey::default();
                for (n, &(i, _)) in st.fields.iter().enumerate() {
                    if word(k, 0) & (1 << i) != 0 {
                        key.set_words(i, st.stored(k, n));
                    }
                }
                v.push(DpFlow { key, mask: st.mask.clone(), mf: mf.clone() });
            }
        }
        v
    }

    /// Every megaflow, for tests.
    pub fn megaflows(&self) -> impl Iterator<Item = &Arc<Megaflow>> {
        self.subtables.iter().flat_map(|s| s.flows.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored key slots fill the arena's segments in order, each to its
    /// length, up to the largest cache.
    #[test]
    fn key_segments_follow_each_other() {
        let mut want = (0, 0);
        for slot in 0..=MAX_MEGAFLOWS {
            assert_eq!(seg(slot), want, "slot {slot}");
            want = if want.1 + 1 == seg_len(want.0) { (want.0 + 1, 0) } else { (want.0, want.1 + 1) };
        }
    }

    /// Codes name every slot of the largest cache in every subtable, and
    /// never look like an exact-match cache entry's code or like NONE.
    #[test]
    fn codes_name_every_slot() {
        for (si, slot) in [(0, 0), (1, 1 << 20), (MAX_SUBTABLES - 1, MAX_MEGAFLOWS - 1), (7, 1_048_577)] {
            let c = code(si, slot);
            assert_eq!(decode(c), (si, slot));
            assert!(c & EMC_CODE == 0 && c != NONE, "{c:#x}");
        }
    }
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

        /// Batch lookups with repeated keys (runs of one flow's packets,
        /// answered without a probe) give every packet the answer a lookup
        /// of its own key gives, misses included.
        #[test]
        fn repeated_keys_get_their_own_answers(
            batches in prop::collection::vec(prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, 8, 9, 12]), 1..40), 1..20),
            installed in prop::collection::vec(any::<bool>(), 6),
        ) {
            let mut tables = Tables::new(1, 100);
            let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(Field::Ipv4Dst, &[0, 0, 0, 0], &[127, 255, 255, 255]));
            let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
            tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, 5, m, out), 0, &Ports).unwrap();
            // Keys 8 apart differ only where the megaflows do not look
            // (the top bit of ipv4_dst): one megaflow, different keys.
            let key_of = |i: u8| {
                let mut k = key((0, 0, true, 0, false));
                k.set(Field::Ipv4Dst, &[(i / 8) << 7, 0, 0, i % 8]);
                k
            };
            let mut cache = MegaflowCache::new(CacheConfig::default());
            for (i, _) in installed.iter().enumerate().filter(|(_, yes)| **yes) {
                let k = key_of(u8::try_from(i).unwrap());
                let t = translate(&tables, &k);
                cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0))).unwrap();
            }
            for b in &batches {
                let keys: Vec<FlowKey> = b.iter().map(|&i| key_of(i)).collect();
                let mut codes = vec![NONE; keys.len()];
                cache.lookup_batch(&keys, &mut codes);
                for (k, c) in keys.iter().zip(&codes) {
                    prop_assert_eq!(cache.lookup(k).unwrap_or(NONE), *c, "{:?}", b);
                }
                cache.end_batch();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random three-table pipelines (goto, set-field of a field a later
        /// table matches, metadata written and matched, VLAN push and pop,
        /// outputs in apply-actions and in the action set) changed by random
        /// adds and deletes between random packets, with idle megaflows
        /// expiring as the clock moves on: every packet the exact-match
        /// cache or a megaflow answers gets exactly the decision the tables
        /// give it, and decisions the tables mark uncacheable are never
        /// cached. As in the datapath, each change starts an empty cache
        /// that inherits the exact-match cache under a new generation (a
        /// small one, so that entries are replaced).
        #[test]
        fn megaflow_decisions_equal_the_tables(
            flows in prop::collection::vec(spec(), 1..25),
            ops in prop::collection::vec(prop_oneof![
                4 => any::<(u8, u8, bool, u8, bool)>().prop_map(Op::Key),
                1 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, d)| Op::Mod(i, d)),
                1 => (0u64..3).prop_map(Op::Tick),
            ], 1..150),
        ) {
            let mut tables = Tables::new(3, 1000);
            for f in &flows {
                let _ = tables.flow_mod(&flow_mod(f, false), 0, &Ports);
            }
            let cfg = CacheConfig { emc: EmcMode::On, emc_entries: 16, emc_insert_inv_prob: 1, max_idle_ms: 100, ..CacheConfig::default() };
            let mut cache = MegaflowCache::new(cfg);
            let mut now = 0;
            tables.take_changes();
            for op in &ops {
                match op {
                    Op::Key(k) => {
                        let k = key(*k);
                        let t = translate(&tables, &k);
                        let (mut code, mut hash) = ([NONE], [0]);
                        cache.emc_lookup_batch(std::slice::from_ref(&k), &mut hash, &mut code);
                        cache.lookup_batch(std::slice::from_ref(&k), &mut code);
                        if code[0] != NONE {
                            prop_assert!(t.cacheable, "an uncacheable decision was cached");
                            prop_assert_eq!(&cache.get(code[0]).steps[..], &t.steps[..], "key {:?}", k);
                            prop_assert!(cache.megaflows().any(|m| Arc::ptr_eq(m, cache.get(code[0]))), "the EMC named a megaflow the cache dropped");
                            cache.get(code[0]).hit(1, 1, now);
                            cache.emc_offer(hash[0], &k, code[0]);
                        } else if t.cacheable {
                            let mf = Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), now));
                            let c = cache.install(&k, mf).unwrap();
                            prop_assert_eq!(cache.lookup(&k), Some(c), "an installed megaflow covers its key");
                            cache.emc_offer(hash[0], &k, c);
                        }
                        cache.end_batch();
                    }
                    Op::Mod(ix, delete) => {
                        // As the datapath does: the megaflows the change
                        // may affect go, the others stay (every later
                        // answer is checked against the new tables).
                        let f = &flows[ix.index(flows.len())];
                        let _ = tables.flow_mod(&flow_mod(f, *delete), 0, &Ports);
                        let kept = match tables.take_changes() {
                            Some(changes) => cache.revalidate(&changes),
                            None => false,
                        };
                        if !kept {
                            cache = MegaflowCache::succeeding(&mut cache);
                        }
                    }
                    Op::Tick(dt) => {
                        now += dt * 60;
                        cache.expire(now);
                        prop_assert_eq!(cache.megaflows().count(), cache.len());
                        for mf in cache.megaflows() {
                            prop_assert!(now - mf.used_ms.load(Ordering::Relaxed) < 100, "an idle megaflow was kept");
                        }
                    }
                }
            }
        }

        /// Revalidation against an exhaustive key space: random tables,
        /// a megaflow for every key, random flow-mods (a new flow added,
        /// an existing one deleted) each followed by revalidation; every
        /// megaflow kept answers every key it covers as the new tables do.
        #[test]
        fn revalidated_megaflows_equal_the_new_tables(
            flows in prop::collection::vec(spec(), 1..20),
            mods in prop::collection::vec((spec(), any::<bool>()), 1..6),
        ) {
            let mut tables = Tables::new(3, 1000);
            for f in &flows {
                let _ = tables.flow_mod(&flow_mod(f, false), 0, &Ports);
            }
            tables.take_changes();
            let keys: Vec<FlowKey> = (0..3u8)
                .flat_map(|p| (0..3u8).map(move |kind| (p, kind)))
                .flat_map(|(p, kind)| [false, true].into_iter().map(move |tcp| (p, kind, tcp)))
                .flat_map(|(p, kind, tcp)| (0..9u8).map(move |d| (p, kind, tcp, d)))
                .flat_map(|(p, kind, tcp, d)| [false, true].into_iter().map(move |tag| key((p, kind, tcp, d, tag))))
                .collect();
            let mut cache = MegaflowCache::default();
            for (m, delete) in &mods {
                for k in &keys {
                    let t = translate(&tables, k);
                    if t.cacheable && cache.lookup(k).is_none() {
                        cache.install(k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0))).unwrap();
                    }
                }
                let fm = if *delete { flow_mod(&flows[usize::from(m.0.1) % flows.len()], true) } else { flow_mod(m, false) };
                let _ = tables.flow_mod(&fm, 0, &Ports);
                let changes = tables.take_changes().unwrap();
                prop_assert!(cache.revalidate(&changes));
                for k in &keys {
                    if let Some(c) = cache.lookup(k) {
                        prop_assert_eq!(&cache.get(c).steps[..], &translate(&tables, k).steps[..], "key {:?} after {:?}", k, fm);
                    }
                }
            }
        }

        /// Megaflows removed from the middle of one subtable's index
        /// (expired) are gone, and every other stays found, through
        /// rounds of installs and expiries.
        #[test]
        fn expiry_keeps_the_index_whole(rounds in prop::collection::vec((1usize..600, any::<u64>()), 1..6)) {
            let mut tables = Tables::new(1, 100);
            // A mask that is not a prefix (no prefix tracking): every key
            // its own megaflow of one subtable.
            let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(Field::Ipv4Dst, &[0, 0, 0, 0], &[127, 255, 255, 255]));
            let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
            tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, 5, m, out), 0, &Ports).unwrap();
            let cfg = CacheConfig { max_idle_ms: 10, ..CacheConfig::default() };
            let mut cache = MegaflowCache::new(cfg);
            let mut live = std::collections::BTreeSet::new();
            let mut gone = std::collections::BTreeSet::new();
            let mut next = 0u32;
            let key_of = |i: u32| {
                let mut k = key((0, 0, true, 0, false));
                k.set(Field::Ipv4Dst, &i.to_be_bytes());
                k
            };
            for (r, &(n, seed)) in rounds.iter().enumerate() {
                let now = 100 * (r as u64 + 1);
                for _ in 0..n {
                    let k = key_of(next);
                    let t = translate(&tables, &k);
                    cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), now))).unwrap();
                    live.insert(next);
                    next += 1;
                }
                // About half of all live megaflows stay in use.
                for &i in &live {
                    if (u64::from(i) ^ seed).count_ones() % 2 == 0 {
                        let c = cache.lookup(&key_of(i)).unwrap();
                        cache.get(c).hit(1, 1, now + 50);
                    }
                }
                cache.expire(now + 55);
                let kept: Vec<u32> = live.iter().copied().filter(|&i| cache.lookup(&key_of(i)).is_some()).collect();
                for &i in &live {
                    if !kept.contains(&i) {
                        gone.insert(i);
                    }
                }
                live = kept.into_iter().collect();
                prop_assert_eq!(cache.len(), live.len());
                for &i in &gone {
                    prop_assert!(cache.lookup(&key_of(i)).is_none(), "expired {} still found", i);
                }
                for mf in cache.megaflows() {
                    prop_assert_eq!(mf.used_ms.load(Ordering::Relaxed), now + 50, "only the megaflows in use are kept");
                }
                // The addresses batch lookups give are their slots'
                // megaflows', through index growth and slots moved by
                // removals.
                let keys: Vec<FlowKey> = live.iter().map(|&i| key_of(i)).collect();
                for chunk in keys.chunks(64) {
                    let (mut codes, mut at) = ([NONE; 64], [0usize; 64]);
                    cache.lookup_batch_at(chunk, &mut codes[..chunk.len()], &mut at[..chunk.len()]);
                    for (&c, &a) in codes.iter().zip(&at).take(chunk.len()) {
                        prop_assert!(c != NONE);
                        prop_assert_eq!(Arc::as_ptr(cache.get(c)).addr(), a);
                        prop_assert!(std::ptr::eq(cache.megaflow_at(c, a), &**cache.get(c)));
                    }
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Key((u8, u8, bool, u8, bool)),
        Mod(prop::sample::Index, bool),
        Tick(u64),
    }

    /// A chain of `depth` tables: each goes to the next on any packet,
    /// the last has a rule per `ipv4_dst` 10.0.0.d (d < `keys`) that
    /// outputs; and the key of destination d.
    fn chain(depth: u8, keys: u8) -> (Tables, impl Fn(u8) -> FlowKey) {
        let mut tables = Tables::new(depth, 1000);
        let last = depth - 1;
        for t in 0..last {
            let goto = vec![Instruction::GotoTable(t + 1)];
            tables.flow_mod(&FlowMod::new(FlowModCommand::Add, t, 1, Match::any(), goto), 0, &Ports).unwrap();
        }
        for d in 0..keys {
            let m = Match::any()
                .with(Oxm::exact_u64(Field::EthType, 0x0800))
                .with(Oxm::exact(Field::Ipv4Dst, &[10, 0, 0, d]));
            let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
            tables.flow_mod(&FlowMod::new(FlowModCommand::Add, last, 5, m, out), 0, &Ports).unwrap();
        }
        let key = |d: u8| {
            let mut k = key((0, 0, true, 0, false));
            k.set(Field::Ipv4Dst, &[10, 0, 0, d]);
            k
        };
        (tables, key)
    }

    /// Packets and bytes counted by the entry of the last table that
    /// matches destination `d`.
    fn entry_counts(tables: &Tables, d: u8) -> (u64, u64) {
        let last = tables.tables.last().unwrap();
        let e = last
            .entries
            .iter()
            .find(|e| e.match_.get(Field::Ipv4Dst).map(Oxm::value) == Some(&[10, 0, 0, d][..]))
            .unwrap();
        (e.stats.packets.load(Ordering::Relaxed), e.stats.bytes.load(Ordering::Relaxed))
    }

    /// Hits `k`'s megaflow (through the exact-match cache when on;
    /// installing it first) with `n` packets of 64 bytes, as the datapath
    /// does.
    fn hit(cache: &mut MegaflowCache, tables: &Tables, k: &FlowKey, n: u64) {
        let (mut code, mut hash) = ([NONE], [0]);
        cache.emc_lookup_batch(std::slice::from_ref(k), &mut hash, &mut code);
        cache.lookup_batch(std::slice::from_ref(k), &mut code);
        let c = if code[0] == NONE {
            let t = translate(tables, k);
            let mf = Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0));
            let Some(c) = cache.install(k, mf.clone()) else {
                // Full: replayed once, not kept.
                mf.hit(n, 64 * n, 1);
                cache.keep_unkept(mf);
                return;
            };
            c
        } else {
            code[0]
        };
        cache.get(c).hit(n, 64 * n, 1);
        cache.emc_offer(hash[0], k, c);
    }

    proptest! {
        /// The folder counts every packet a megaflow answered exactly
        /// once, in its entries' and tables' counters, whenever its passes
        /// run (between batches, or on a thread of their own all along),
        /// whether the megaflow is still in its cache or was let go of
        /// (expired, or flushed with a full cache) before a pass saw its
        /// last packets, whether the packet was answered by a megaflow or
        /// an exact-match entry, and whether the megaflow holds its
        /// lookups inline (up to COUNTED tables) or walks its steps
        /// (more).
        #[test]
        fn folds_count_every_packet_once(
            depth in 1u8..7,
            hits in prop::collection::vec((0u8..200, 1u64..4, prop::bool::weighted(0.2)), 1..3000),
            batch in 1usize..40,
            period in 1usize..20,
            expire_every in 1usize..100,
            with_emc in any::<bool>(),
            limit in prop::sample::select(vec![30usize, 1000]),
            concurrent in any::<bool>(),
        ) {
            // IPv6 packets match no rule of the last table: another
            // megaflow mask, so two subtables that rankings reorder.
            let v6 = key((0, 1, true, 0, false));
            let (tables, key) = chain(depth, 200);
            let emc = if with_emc { EmcMode::On } else { EmcMode::Off };
            let cfg = CacheConfig {
                max_idle_ms: 2, max_megaflows: limit, emc, emc_entries: 16, emc_insert_inv_prob: 1
            };
            let folder = Folder::new();
            let stop = AtomicBool::new(false);
            let (want, misses) = std::thread::scope(|s| {
                if concurrent {
                    s.spawn(|| {
                        while !stop.load(Ordering::Relaxed) {
                            folder.fold_all();
                        }
                    });
                }
                let mut cache = MegaflowCache::new(cfg);
                cache.hand_over(&folder, &tables);
                let (mut want, mut misses) = ([0u64; 200], 0);
                for (b, chunk) in hits.chunks(batch).enumerate() {
                    for &(d, n, ip6) in chunk {
                        if ip6 {
                            hit(&mut cache, &tables, &v6, n);
                            misses += n;
                        } else {
                            hit(&mut cache, &tables, &key(d), n);
                            want[usize::from(d)] += n;
                        }
                    }
                    cache.end_batch();
                    if b % period == period - 1 {
                        cache.hand_over(&folder, &tables);
                        if !concurrent {
                            folder.fold_all();
                        }
                    }
                    if b % expire_every == expire_every - 1 {
                        // Idle ones go: every megaflow idle at 10 ms, as
                        // hit at 1.
                        cache.expire(10);
                    }
                }
                stop.store(true, Ordering::Relaxed);
                // What the cache still holds, handed over when it goes.
                drop(cache);
                (want, misses)
            });
            folder.fold_all();
            for (d, &w) in (0..=u8::MAX).zip(&want) {
                prop_assert_eq!(entry_counts(&tables, d), (w, 64 * w), "destination {}", d);
            }
            let total: u64 = want.iter().sum();
            for (t, c) in tables.counters.iter().enumerate() {
                let matched = if t + 1 == tables.counters.len() { total } else { total + misses };
                prop_assert_eq!(c.lookups.load(Ordering::Relaxed), total + misses, "table {} lookups", t);
                prop_assert_eq!(c.matches.load(Ordering::Relaxed), matched, "table {} matches", t);
            }
            // Every megaflow was let go of, folded a last time and freed.
            prop_assert_eq!(folder.stats.held.load(Ordering::Relaxed), 0);
        }
    }

    proptest! {
        /// Stored keys with two-word fields (IPv6 addresses) over more
        /// than one cache line: every answer equals the tables', keys
        /// differing only in unexamined bits share a megaflow, and after
        /// expiry moves slots (a row copied over another) every dumped
        /// megaflow is found again by its own key.
        #[test]
        fn wide_keys_are_stored_whole(
            rules in prop::collection::vec((0u8..4, 0u8..8, 0u8..3, any::<bool>()), 1..12),
            keys in prop::collection::vec((any::<prop::sample::Index>(), any::<u64>(), any::<bool>()), 1..200),
            idle in prop::collection::vec(any::<bool>(), 201),
        ) {
            let addr = |hi: u8, lo: u64| {
                let mut a = [0u8; 16];
                a[..8].copy_from_slice(&(0x2001_0db8_0000_0000 | u64::from(hi)).to_be_bytes());
                a[8..].copy_from_slice(&lo.to_be_bytes());
                a
            };
            let mut tables = Tables::new(1, 100);
            for &(src, dst, port, with_in_port) in &rules {
                let mut m = Match::any()
                    .with(Oxm::exact_u64(Field::EthType, 0x86dd))
                    .with(Oxm::exact_u64(Field::IpProto, 6))
                    // A /96: its mask has bits in both words.
                    .with(Oxm::masked(Field::Ipv6Src, &addr(src, 0), &addr(0xff, 0xffff_ffff_0000_0000).map(|b| if b == 0 { 0 } else { 0xff })))
                    .with(Oxm::exact(Field::Ipv6Dst, &addr(9, u64::from(dst))))
                    .with(Oxm::exact_u64(Field::TcpDst, 80 + u64::from(port)));
                if with_in_port {
                    m = m.with(Oxm::exact_u64(Field::InPort, 1));
                }
                let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
                let _ = tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, u16::from(dst), m, out), 0, &Ports);
            }
            let key = |&(src, lo, dst, port, in_port): &(u8, u64, u8, u8, u8)| {
                let mut k = FlowKey::default();
                k.set_u64(Field::InPort, u64::from(in_port % 2 + 1));
                k.set_u64(Field::Metadata, 0);
                k.set_u64(Field::EthType, 0x86dd);
                k.set_u64(Field::IpProto, 6);
                k.set(Field::Ipv6Src, &addr(src, lo));
                k.set(Field::Ipv6Dst, &addr(9, u64::from(dst)));
                k.set_u64(Field::TcpDst, 80 + u64::from(port));
                k.set_u64(Field::TcpSrc, lo & 0xffff);
                k
            };
            let cfg = CacheConfig { max_idle_ms: 100, ..CacheConfig::default() };
            let mut cache = MegaflowCache::new(cfg);
            // The first key matches the first rule (every field
            // examined); the others a rule's fields or random ones.
            let (src, dst, port, _) = rules[0];
            let keys: Vec<_> = std::iter::once((src, 7, dst, port, 0))
                .chain(keys.iter().map(|&(ix, lo, ruled)| {
                    let (src, dst, port, _) = rules[ix.index(rules.len())];
                    let b = lo.to_be_bytes();
                    if ruled {
                        (src, lo & 0xffff_ffff, dst, port, b[0])
                    } else {
                        (b[1] % 4, lo, b[2] % 10, b[3] % 4, b[0])
                    }
                }))
                .collect();
            // Keys used at 0 first, then at 100 (time never goes back).
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by_key(|&j| !idle[j]);
            for j in order {
                let kk = &keys[j];
                let k = key(kk);
                let t = translate(&tables, &k);
                let now = if idle[j] { 0 } else { 100 };
                match cache.lookup(&k) {
                    Some(c) => {
                        prop_assert_eq!(&cache.get(c).steps[..], &t.steps[..], "key {:?}", kk);
                        cache.get(c).hit(1, 64, now);
                    }
                    None => {
                        let c = cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), now))).unwrap();
                        prop_assert_eq!(cache.lookup(&k), Some(c));
                    }
                }
            }
            prop_assert!(cache.subtables.iter().any(|st| st.stride > 8), "a key over two lines");
            for _ in 0..64 {
                cache.expire(150);
            }
            for (j, kk) in keys.iter().enumerate() {
                let k = key(kk);
                match cache.lookup(&k) {
                    Some(c) => {
                        prop_assert_eq!(&cache.get(c).steps[..], &translate(&tables, &k).steps[..], "key {:?}", kk);
                        prop_assert!(cache.get(c).used_ms.load(Ordering::Relaxed) == 100, "an idle megaflow stayed");
                    }
                    None => prop_assert!(idle[j], "key {:?} used at 100 lost its megaflow", kk),
                }
            }
            let dumped = cache.dump();
            prop_assert_eq!(dumped.len(), cache.len());
            for d in &dumped {
                let c = cache.lookup(&d.key);
                prop_assert!(c.is_some_and(|c| Arc::ptr_eq(cache.get(c), &d.mf)), "a dumped key finds its megaflow");
            }
        }
    }

    /// A megaflow its cache lets go of is folded once more by the next
    /// pass (what it gained since the last) and freed there; the others
    /// stay held. New megaflows wait in the cache until it hands them
    /// over.
    #[test]
    fn megaflows_let_go_are_folded_once_more_and_freed() {
        let (tables, key) = chain(3, 200);
        let folder = Folder::new();
        let cfg = CacheConfig { max_idle_ms: 10, ..CacheConfig::default() };
        let mut cache = MegaflowCache::new(cfg);
        for d in 0..100 {
            hit(&mut cache, &tables, &key(d), 1);
        }
        folder.fold_all();
        assert_eq!(entry_counts(&tables, 5), (0, 0), "not handed over yet");
        cache.hand_over(&folder, &tables);
        folder.fold_all();
        assert_eq!(entry_counts(&tables, 5), (1, 64));
        assert_eq!(folder.stats.held.load(Ordering::Relaxed), 100);
        // Half are hit again at 50, then all hit once more; those not hit
        // at 50 expire at 55 (the hit at 1 was their last use) before a
        // pass sees their last packet.
        let weak: Vec<_> = cache.megaflows().map(Arc::downgrade).collect();
        for d in 0..100 {
            if d % 2 == 0 {
                let c = cache.lookup(&key(d)).unwrap();
                cache.get(c).hit(1, 64, 50);
            }
            let c = cache.lookup(&key(d)).unwrap();
            let mf = cache.get(c);
            mf.hit(1, 64, mf.used_ms.load(Ordering::Relaxed));
        }
        for _ in 0..64 {
            cache.expire(55);
        }
        assert_eq!(cache.len(), 50);
        assert_eq!(weak.iter().filter(|w| w.upgrade().is_some()).count(), 100, "the folder holds the expired");
        folder.fold_all();
        assert_eq!(entry_counts(&tables, 4), (3, 192), "hit at 1, 50 and again");
        assert_eq!(entry_counts(&tables, 5), (2, 128), "the last hit of an expired megaflow is counted");
        assert_eq!(folder.stats.held.load(Ordering::Relaxed), 50);
        assert_eq!(folder.stats.released.load(Ordering::Relaxed), 50);
        assert_eq!(weak.iter().filter(|w| w.upgrade().is_some()).count(), 50, "freed after their last fold");
        // A pass with nothing new folds nothing twice.
        assert_eq!(folder.fold_all(), 0);
        assert_eq!(entry_counts(&tables, 4), (3, 192));
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
            let mf = Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0));
            codes.push(cache.install(&k, mf));
        }
        assert!(codes[..3].iter().all(Option::is_some) && codes[3].is_none(), "{codes:?}");
        let c = codes[0].unwrap();
        cache.get(c).hit(1, 100, 1);
        let folder = Folder::new();
        cache.hand_over(&folder, &tables);
        cache.end_batch();
        assert_eq!((cache.len(), cache.counts.flushed), (0, 3));
        folder.fold_all();
        let e = &tables.tables[0].entries[0];
        assert_eq!(e.stats.packets.load(Ordering::Relaxed), 1, "the hit before the flush reached the entry");
        assert_eq!(folder.stats.held.load(Ordering::Relaxed), 0, "the flushed megaflows were freed");
    }

    /// A flow table change keeps the megaflows it cannot affect (another
    /// table, or a rule whose match the megaflow's region does not
    /// overlap) and removes those it may.
    #[test]
    fn revalidation_keeps_what_a_change_cannot_affect() {
        let mut tables = Tables::new(2, 100);
        let ip = |src: [u8; 4], plen: u32| {
            let mask = (!0u32).checked_shl(32 - plen).unwrap_or(0).to_be_bytes();
            Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(Field::Ipv4Src, &src, &mask))
        };
        let out = |p: u32| vec![Instruction::ApplyActions(vec![Action::Output { port: p, max_len: 0 }])];
        let add = |t: &mut Tables, prio: u16, m: Match, p: u32| {
            t.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, prio, m, out(p)), 0, &Ports).unwrap();
        };
        add(&mut tables, 10, ip([10, 0, 0, 1], 32), 2);
        tables.take_changes();
        let mut cache = MegaflowCache::default();
        let mut k = key((0, 0, true, 0, false));
        k.set(Field::Ipv4Src, &[10, 0, 0, 1]);
        let t = translate(&tables, &k);
        cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0))).unwrap();
        // Another source, another table: kept.
        add(&mut tables, 20, ip([11, 0, 0, 1], 32), 3);
        tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 1, 5, Match::any(), out(3)), 0, &Ports).unwrap();
        let changes = tables.take_changes().unwrap();
        assert!(cache.revalidate(&changes));
        assert_eq!((cache.len(), cache.counts.revalidated), (1, 0), "nothing overlapped");
        let c = cache.lookup(&k).unwrap();
        assert_eq!(cache.get(c).steps[..], translate(&tables, &k).steps[..]);
        // 10/8 at a higher priority covers it: removed.
        add(&mut tables, 30, ip([10, 0, 0, 0], 8), 4);
        let changes = tables.take_changes().unwrap();
        assert!(cache.revalidate(&changes));
        assert_eq!((cache.len(), cache.counts.revalidated), (0, 1));
        assert!(cache.lookup(&k).is_none());
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
                cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0))).unwrap();
            }
        }
        assert_eq!((cache.len(), cache.n_subtables()), (1, 1), "256 addresses in 10/8, one megaflow");
        k.set(Field::Ipv4Dst, &[11, 0, 0, 1]);
        assert!(cache.lookup(&k).is_none(), "11.0.0.1 is outside it");
    }
}
