//! The OpenFlow datapath's counters: drops by reason, megaflow cache
//! counts and stage cycles per bridge (shared atomics the PMD threads add
//! to once per batch), and the per-batch tally of entry and table hits.

use ofproto::megaflow::MegaflowCache;
use ofproto::table::Tables;
use std::sync::atomic::{AtomicU64, Ordering};

/// Drops of the OpenFlow pipeline, by reason.
#[derive(Debug, Default)]
pub struct OfCounters {
    /// No flow matched and no table-miss entry: dropped (1.3's default).
    pub miss_drops: AtomicU64,
    /// Output to a port that does not exist (any more), or to the input
    /// port by its number (only IN_PORT sends a packet back).
    pub bad_port: AtomicU64,
    /// Packet-ins dropped because the queue to the controller was full.
    pub controller_queue_full: AtomicU64,
    /// TTL decremented to zero.
    pub ttl_expired: AtomicU64,
    /// Dropped by a meter's drop band.
    pub meter_drops: AtomicU64,
    /// No mbuf for a copy or a tag.
    pub nombuf: AtomicU64,
    /// Set-field of a field this datapath cannot rewrite yet: not applied.
    pub unsupported_set_field: AtomicU64,
    /// Packets a megaflow answered.
    pub mf_hits: AtomicU64,
    /// Packets that walked the tables (megaflow misses).
    pub mf_upcalls: AtomicU64,
    /// Megaflows installed.
    pub mf_installs: AtomicU64,
    /// Megaflow subtables probed.
    pub mf_subtable_lookups: AtomicU64,
    /// Misses dropped over the upcall budget.
    pub mf_upcall_drops: AtomicU64,
    /// Upcalls whose decision could not be cached.
    pub mf_uncacheable: AtomicU64,
    /// Megaflows held by all PMD threads' caches now.
    pub megaflows: AtomicU64,
    /// Megaflows dropped because a cache filled up.
    pub mf_flushed: AtomicU64,
    /// Times a full cache doubled its limit (`megaflow_limit = "auto"`).
    pub mf_grown: AtomicU64,
    /// The largest limit a PMD thread's cache grew to (0: none grew).
    pub mf_limit: AtomicU64,
    /// Bytes the megaflows of all PMD threads' caches take now.
    pub mf_bytes: AtomicU64,
    /// Packets the exact-match caches answered.
    pub mf_emc_hits: AtomicU64,
    /// Keys put into the exact-match caches.
    pub mf_emc_inserts: AtomicU64,
    /// Packets answered because their key repeated the previous packet's.
    pub mf_repeats: AtomicU64,
    /// Groups of one megaflow's packets in one batch replayed together.
    pub mf_groups: AtomicU64,
    /// Packets replayed in such groups.
    pub mf_grouped: AtomicU64,
    /// Megaflows removed for being idle.
    pub mf_expired: AtomicU64,
    /// Megaflows removed because a flow change may affect them.
    pub mf_revalidated: AtomicU64,
    /// New table snapshots that kept a PMD thread's megaflows (flow
    /// changes only, none or few of them affected).
    pub mf_caches_kept: AtomicU64,
    /// TSC cycles per stage of the OpenFlow fast path
    /// (`ofproto::megaflow::STAGES`).
    pub stage_cycles: [AtomicU64; 5],
    /// Megaflow dumps (`vswitchctl dp-flows`).
    pub dumps: DumpBoard,
}

/// Where the control thread asks the PMD threads for their megaflows and
/// they answer (between batches, on the request's first poll).
#[derive(Debug, Default)]
pub struct DumpBoard {
    /// The latest request's number (0: none yet).
    pub request: AtomicU64,
    /// Answers: (PMD thread, request number, its clock in milliseconds,
    /// its megaflows).
    #[allow(clippy::type_complexity)]
    pub answers: std::sync::Mutex<Vec<(usize, u64, u64, Vec<ofproto::megaflow::DpFlow>)>>,
}

impl OfCounters {
    /// Folds a cache's counts in (and zeroes them).
    pub(crate) fn fold(&self, cache: &mut MegaflowCache) {
        let c = std::mem::take(&mut cache.counts);
        for (a, v) in [
            (&self.mf_hits, c.hits),
            (&self.mf_upcalls, c.upcalls),
            (&self.mf_installs, c.installs),
            (&self.mf_subtable_lookups, c.subtable_lookups),
            (&self.mf_upcall_drops, c.upcall_drops),
            (&self.mf_uncacheable, c.uncacheable),
            (&self.megaflows, c.installs),
            (&self.mf_flushed, c.flushed),
            (&self.mf_grown, c.grown),
            (&self.mf_bytes, c.bytes_added),
            (&self.mf_emc_hits, c.emc_hits),
            (&self.mf_emc_inserts, c.emc_inserts),
            (&self.mf_repeats, c.repeats),
            (&self.mf_groups, c.groups),
            (&self.mf_grouped, c.grouped),
            (&self.mf_expired, c.expired),
            (&self.mf_revalidated, c.revalidated),
        ] {
            if v != 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        }
        if c.grown != 0 {
            self.mf_limit.fetch_max(cache.config().max_megaflows as u64, Ordering::Relaxed);
        }
        let gone = c.flushed + c.expired + c.revalidated;
        if gone != 0 {
            self.megaflows.fetch_sub(gone, Ordering::Relaxed);
        }
        for (a, v) in self.stage_cycles.iter().zip(c.cycles) {
            if v != 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        }
        if c.bytes_dropped != 0 {
            self.mf_bytes.fetch_sub(c.bytes_dropped, Ordering::Relaxed);
        }
    }

    /// A cache was dropped (a new snapshot).
    pub fn cache_dropped(&self, cache: &MegaflowCache) {
        self.megaflows.fetch_sub(cache.len() as u64, Ordering::Relaxed);
        self.mf_bytes.fetch_sub(cache.bytes(), Ordering::Relaxed);
    }
}

/// Counter updates of one batch, folded into the shared atomics once at
/// its end: a run of packets hitting the same flows costs a few atomic
/// adds per batch instead of several per packet.
#[derive(Default)]
pub(super) struct BatchCounts<'a> {
    /// (entry counters, packets, bytes).
    entries: [Option<(&'a ofproto::table::EntryStats, u64, u64)>; 16],
    /// (table, lookups, matches).
    tables: [(u8, u32, u32); 8],
    n_tables: usize,
}

impl<'a> BatchCounts<'a> {
    #[inline]
    pub(super) fn entry(&mut self, st: &'a ofproto::table::EntryStats, bytes: u64, now_ms: u64) {
        for slot in &mut self.entries {
            match slot {
                Some((s, p, b)) if std::ptr::eq(*s, st) => {
                    *p += 1;
                    *b += bytes;
                    return;
                }
                None => {
                    *slot = Some((st, 1, bytes));
                    return;
                }
                _ => {}
            }
        }
        // More distinct flows in one batch than slots: straight to the
        // atomics.
        st.hit(1, bytes, now_ms);
    }
    #[inline]
    pub(super) fn table(&mut self, tables: &Tables, id: u8, matched: bool) {
        let m = u32::from(matched);
        if let Some(t) = self.tables[..self.n_tables].iter_mut().find(|t| t.0 == id) {
            t.1 += 1;
            t.2 += m;
        } else if self.n_tables < self.tables.len() {
            self.tables[self.n_tables] = (id, 1, m);
            self.n_tables += 1;
        } else if let Some(t) = tables.counters.get(usize::from(id)) {
            t.lookups.fetch_add(1, Ordering::Relaxed);
            t.matches.fetch_add(u64::from(m), Ordering::Relaxed);
        }
    }
    pub(super) fn flush(&mut self, tables: &Tables, now_ms: u64) {
        for (st, p, b) in self.entries.iter_mut().filter_map(Option::take) {
            st.hit(p, b, now_ms);
        }

        for &(id, l, m) in &self.tables[..self.n_tables] {
            if let Some(t) = tables.counters.get(usize::from(id)) {
                t.lookups.fetch_add(u64::from(l), Ordering::Relaxed);
                t.matches.fetch_add(u64::from(m), Ordering::Relaxed);
            }
        }
        self.n_tables = 0;
    }
}
