//! One megaflow: its decision, its counters (written by the owning PMD
//! thread only), and what a fold reads to add them to the tables.

use super::prefetch::{prefetch, prefetch_span, prefetch_write};
use super::FastPlan;
use crate::classifier::FlowMask;
use crate::ofp::Action;
use crate::table::{TableCounters, Tables};
use crate::xlate::Step;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

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
    pub(super) dead: AtomicBool,
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
pub(super) struct Tally<'a> {
    tables: [(u8, u64, u64); 8],
    entries: [Option<(&'a crate::table::EntryStats, u64, u64, u64)>; 64],
}

impl<'a> Tally<'a> {
    pub(super) fn new() -> Tally<'a> {
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
    pub(super) fn send(self, counters: &[TableCounters]) {
        for t in self.tables {
            Self::send_table(counters, t);
        }
        for (e, p, b, t) in self.entries.into_iter().flatten() {
            e.hit(p, b, t);
        }
    }
}

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
    pub(super) fn count_into<'a>(
        &'a self,
        counters: &[TableCounters],
        tally: &mut Tally<'a>,
        packets: u64,
        bytes: u64,
    ) {
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
    pub(super) fn prefetch_hit_at(at: usize) {
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
    pub(super) fn prefetch_fold_at(at: usize) {
        prefetch_span(std::ptr::without_provenance::<u8>(at), Megaflow::HOT);
    }

    /// Starts loading the counters of the entries it matched (its hot
    /// lines loaded); walking the steps when they are not inline.
    #[inline]
    pub(super) fn prefetch_entries(&self) {
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
    pub(super) fn visited(&self, t: u8) -> bool {
        self.visited[usize::from(t / 64)] & (1 << (t % 64)) != 0
    }

    /// Whether its decision looked at table `t` with a key it had changed.
    #[inline]
    pub(super) fn rewritten_for(&self, t: u8) -> bool {
        self.rewritten[usize::from(t / 64)] & (1 << (t % 64)) != 0
    }
}
