//! The OpenFlow pipeline in the fast path: each packet of a bridge that
//! has OpenFlow flows walks the tables (apply-actions run in order, the
//! action set runs at the end in the spec's order, goto-table only forward,
//! metadata written with its mask), with groups (all, select by a hash of
//! the flow, indirect, fast failover), output to ports, IN_PORT, ALL,
//! FLOOD, NORMAL (the bridge's L2 switching) and CONTROLLER (packet-in,
//! through a bounded queue to the control thread: a full queue drops and
//! counts, never blocks).
//!
//! A packet walks the tables only on a miss in its PMD thread's caches
//! (`ofproto::megaflow`: exact-match cache, then megaflows): the walk (the
//! *upcall*) records its decision as `Step`s ([`ofproto::xlate`]) and the
//! bits it examined, and every later packet equal on those bits replays
//! the steps, or the `FastOp`s they compile to; while a batch holds
//! several packets per megaflow, the packets of one megaflow with a
//! compiled decision are replayed together, one operation over the group
//! at a time, and counted at once. The tables are a snapshot
//! the control thread publishes after each change (see [`crate::switch`]
//! for the hand-off); a snapshot that differs only by flow changes keeps
//! the megaflows those changes cannot affect, any other starts an empty
//! cache. Each batch counts the TSC cycles of its stages (extract, EMC,
//! megaflow, upcall, actions). Entry, table and group counters are shared
//! atomics, folded per batch.

use crate::l2::L2Pipeline;
use crate::rewrite;
use ofproto::agent::{Group, Meter};
use ofproto::flow::FlowKey;
use ofproto::megaflow::{
    count_steps, FastOp, FastPlan, Megaflow, MegaflowCache, NONE, STAGE_ACTIONS, STAGE_EMC, STAGE_EXTRACT,
    STAGE_MEGAFLOW, STAGE_UPCALL,
};
use ofproto::ofp::action::port;
use ofproto::ofp::{Action, Field};
use ofproto::table::Tables;
use ofproto::xlate::{self, Origin, Step, Walker};
use pmd::packet::{Batch, BATCH_SIZE};
use pmd::pmd::{Pipeline, RxqRef, TxBatches};
use pmd::{Mempool, Packet};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// A packet for the controller.
#[derive(Debug)]
pub struct ToController {
    /// Bridge index.
    pub bridge: usize,
    /// OFPR_NO_MATCH 0, OFPR_ACTION 1, OFPR_INVALID_TTL 2.
    pub reason: u8,
    /// Table it was in.
    pub table_id: u8,
    /// Cookie of the flow (all ones for a miss).
    pub cookie: u64,
    /// Input port (OpenFlow number).
    pub in_port: u32,
    /// Metadata at that point.
    pub metadata: u64,
    /// Frame length.
    pub total_len: u16,
    /// The frame's first bytes (max_len or miss_send_len).
    pub data: Vec<u8>,
}

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

/// A PACKET_OUT for the PMD thread that runs them.
#[derive(Debug)]
pub struct PacketOutReq {
    /// Bridge index.
    pub bridge: usize,
    /// Input port (OpenFlow number, or CONTROLLER).
    pub in_port: u32,
    /// Actions.
    pub actions: Vec<Action>,
    /// The frame.
    pub data: Vec<u8>,
}

/// One bridge's OpenFlow state as the PMD threads see it.
pub struct OfBridgeDp {
    /// Bridge index.
    pub bridge: usize,
    /// Flow tables.
    pub tables: Tables,
    /// Groups.
    pub groups: BTreeMap<u32, Group>,
    /// Meters (their token buckets are shared atomics).
    pub meters: BTreeMap<u32, Meter>,
    /// OpenFlow port number per PMD slot (0: not a port of this bridge).
    pub slot_ofport: Vec<u32>,
    /// PMD slot per OpenFlow port number, with link state.
    pub ofport_slot: BTreeMap<u32, (usize, bool)>,
    /// Bytes of a table-miss packet sent to the controller.
    pub miss_send_len: u16,
    /// Packet-ins to the control thread.
    pub to_controller: SyncSender<ToController>,
    /// Drop counters.
    pub counters: Arc<OfCounters>,
    /// Mbufs for copies.
    pub pool: Arc<Mempool>,
    /// Milliseconds at publication; entry hits are stamped with it plus
    /// the TSC time since (cheap clock on the PMD).
    pub epoch_ms: u64,
    /// Its number among the bridge's publications.
    pub seq: u64,
    /// When only flows changed since publication `.0`: the rules they
    /// touched (a PMD thread that used publication `.0` keeps the
    /// megaflows none of them may affect).
    pub delta: Option<(u64, Arc<[ofproto::megaflow::Change]>)>,
    /// The bridge's megaflow folder: PMD threads hand it their new
    /// megaflows, its thread folds their counters into the tables'.
    pub folder: Arc<ofproto::megaflow::Folder>,
}

impl std::fmt::Debug for OfBridgeDp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfBridgeDp").field("bridge", &self.bridge).finish_non_exhaustive()
    }
}

/// Counter updates of one batch, folded into the shared atomics once at
/// its end: a run of packets hitting the same flows costs a few atomic
/// adds per batch instead of several per packet.
#[derive(Default)]
struct BatchCounts<'a> {
    /// (entry counters, packets, bytes).
    entries: [Option<(&'a ofproto::table::EntryStats, u64, u64)>; 16],
    /// (table, lookups, matches).
    tables: [(u8, u32, u32); 8],
    n_tables: usize,
}

impl<'a> BatchCounts<'a> {
    #[inline]
    fn entry(&mut self, st: &'a ofproto::table::EntryStats, bytes: u64, now_ms: u64) {
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
    fn table(&mut self, tables: &Tables, id: u8, matched: bool) {
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
    fn flush(&mut self, tables: &Tables, now_ms: u64) {
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

/// The slow path's walker: the packet itself goes through the tables.
struct PacketWalk<'a, 's> {
    dp: &'s OfBridgeDp,
    p: Option<Packet>,
    key: FlowKey,
    len: u64,
    out: &'a mut Out,
    tx: &'a mut TxBatches,
    counts: &'a mut BatchCounts<'s>,
}

impl<'s> Walker<'s> for PacketWalk<'_, 's> {
    fn lookup(&mut self, table: u8, t: &'s ofproto::table::FlowTable) -> Option<&'s ofproto::table::FlowEntry> {
        let found = t.lookup(&self.key);
        self.counts.table(&self.dp.tables, table, found.is_some());
        match found {
            Some(e) => self.counts.entry(&e.stats, self.len, self.out.now_ms),
            None => {
                // No table-miss entry: dropped (OpenFlow 1.3, 5.4).
                self.dp.counters.miss_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        found
    }
    fn apply(&mut self, acts: &[Action], origin: Origin) -> bool {
        let Some(p) = self.p.take() else { return false };
        self.p = self.dp.apply(p, &mut self.key, acts, self.out, self.tx, origin);
        self.p.is_some()
    }
    fn write_metadata(&mut self, metadata: u64, mask: u64) {
        xlate::write_metadata(&mut self.key, metadata, mask);
    }
    fn meter(&mut self, meter: u32) -> bool {
        match self.p.as_mut() {
            Some(p) => self.dp.meter(meter, p, self.len, self.out.now_ns),
            None => false,
        }
    }
}

/// The packets of one batch whose megaflows have compiled decisions,
/// grouped per megaflow (OVS's per-flow batches): each group's decision is
/// read once and replayed one operation at a time over its packets, and
/// its megaflow counts them at once. A megaflow remembers its group's index
/// for the batch, so grouping costs a load and a compare per packet; a
/// flow's packets join only its latest group, so they leave in order.
struct Groups {
    n: usize,
    /// Each group's megaflow code.
    code: [u32; BATCH_SIZE],
    /// And its megaflow's address (for `MegaflowCache::megaflow_at`).
    at: [usize; BATCH_SIZE],
    /// Packets per group.
    count: [u8; BATCH_SIZE],
    /// Each held packet's group.
    of: [u8; BATCH_SIZE],
    /// The packets, by their index in the batch.
    held: [Option<Packet>; BATCH_SIZE],
    /// Indices of `held` by group (after [`Groups::sort`]).
    order: [u8; BATCH_SIZE],
}

impl Groups {
    fn new() -> Groups {
        Groups {
            n: 0,
            code: [NONE; BATCH_SIZE],
            at: [0; BATCH_SIZE],
            count: [0; BATCH_SIZE],
            of: [0; BATCH_SIZE],
            held: std::array::from_fn(|_| None),
            order: [0; BATCH_SIZE],
        }
    }

    /// Holds packet `i` of the batch in the group of megaflow `code`.
    #[inline]
    fn hold(&mut self, i: usize, p: Packet, code: u32, mf: &Megaflow) {
        let g = mf.group.load(Ordering::Relaxed) as usize;
        let g = if g < self.n && self.code[g] == code {
            g
        } else {
            let g = self.n;
            self.n += 1;
            self.code[g] = code;
            self.at[g] = std::ptr::from_ref(mf).expose_provenance();
            self.count[g] = 0;
            mf.group.store(u16::try_from(g).unwrap_or(u16::MAX), Ordering::Relaxed);
            g
        };
        self.count[g] += 1;
        self.of[i] = u8::try_from(g).unwrap_or(0);
        self.held[i] = Some(p);
    }

    /// Orders the held packets by group (arrival order within each);
    /// group g's are `order[start[g]..start[g + 1]]`.
    fn sort(&mut self) -> [u8; BATCH_SIZE + 1] {
        let mut start = [0u8; BATCH_SIZE + 1];
        for g in 0..self.n {
            start[g + 1] = start[g] + self.count[g];
        }
        let mut fill = start;
        for (i, p) in self.held.iter().enumerate() {
            if p.is_some() {
                let g = usize::from(self.of[i]);
                self.order[usize::from(fill[g])] = u8::try_from(i).unwrap_or(0);
                fill[g] += 1;
            }
        }
        start
    }
}

struct Out {
    in_slot: usize,
    in_port: u32,
    /// Packets for the bridge's L2 switching (NORMAL).
    normal: Batch,
    now_ms: u64,
    now_ns: u64,
}

impl OfBridgeDp {
    /// Runs a batch received on `rxq` through `cache` (the PMD thread's
    /// megaflows for this snapshot) and, on a miss, the tables; NORMAL
    /// packets go to `l2`.
    pub fn process(
        &self,
        rxq: &RxqRef,
        batch: &mut Batch,
        tx: &mut TxBatches,
        l2: &mut L2Pipeline,
        cache: &mut MegaflowCache,
        now_ns: u64,
    ) {
        let in_port = self.slot_ofport.get(rxq.port).copied().unwrap_or(0);
        let mut out = Out { in_slot: rxq.port, in_port, normal: Batch::new(), now_ms: now_ns / 1_000_000, now_ns };
        let mut counts = BatchCounts::default();
        // The cache's reused keys, taken out while it is looked up.
        let mut keys = std::mem::take(&mut cache.keys);
        if keys.len() < BATCH_SIZE {
            keys.resize(BATCH_SIZE, FlowKey::default());
        }
        let n = batch.len();
        let t0 = pmd::rdtsc();
        for (k, p) in keys.iter_mut().zip(batch.as_slice()) {
            k.extract_into(p.data(), in_port);
        }
        let t1 = pmd::rdtsc();
        let mut codes = [NONE; BATCH_SIZE];
        let mut hashes = [0u64; BATCH_SIZE];
        let emc = cache.emc_active();
        if emc {
            cache.emc_lookup_batch(&keys[..n], &mut hashes[..n], &mut codes[..n]);
        }
        let t2 = pmd::rdtsc();
        // The megaflows' addresses: a hit reads its megaflow without its
        // slot's reference.
        let mut ats = [0usize; BATCH_SIZE];
        cache.lookup_batch_at(&keys[..n], &mut codes[..n], &mut ats[..n]);
        // The megaflows' steps were prefetched by the lookup; start
        // loading the action lists they point to before the replays.
        for (&c, &at) in codes[..n].iter().zip(&ats).filter(|(c, _)| **c != NONE) {
            let mf = cache.megaflow_at(c, at);
            if mf.fast.is_some() {
                continue;
            }
            for s in mf.steps.iter() {
                if let Step::Apply { acts, .. } = s {
                    ofproto::megaflow::prefetch(acts.as_ptr().cast());
                }
            }
        }
        let t3 = pmd::rdtsc();
        let mut upcall_cycles = 0;
        let mut installed = false;
        let mut groups = Groups::new();
        let grouping = cache.grouping;
        for (i, p) in batch.drain().enumerate() {
            let key = &mut keys[i];
            let len = p.len() as u64;
            let mut code = codes[i];
            if code == NONE && installed {
                // An earlier packet of this batch may have installed it.
                code = cache.lookup(key).unwrap_or(NONE);
            }
            let mut unkept = None;
            let mf = if code != NONE {
                if emc {
                    cache.emc_offer(hashes[i], key, code);
                }
                cache.megaflow_at(code, ats[i])
            } else {
                // An upcall, within the budget (over it the packet is
                // dropped and counted).
                if !cache.may_upcall(now_ns) {
                    continue;
                }
                let u0 = pmd::rdtsc();
                cache.counts.upcalls += 1;
                let t = xlate::translate(&self.tables, key);
                if !t.cacheable {
                    cache.counts.uncacheable += 1;
                    self.run(p, key.clone(), &mut out, tx, &mut counts);
                    upcall_cycles += pmd::rdtsc() - u0;
                    continue;
                }
                let mut mf = Megaflow::new(t.steps, cache.intern(t.mask), out.now_ms);
                mf.fast = self.compile(&mf.steps, in_port);
                let mf = Arc::new(mf);
                let mf = match cache.install(key, mf.clone()) {
                    Some(c) => {
                        installed = true;
                        code = c;
                        if emc {
                            cache.emc_offer(hashes[i], key, c);
                        }
                        cache.megaflow_at(c, 0)
                    }
                    None => &**unkept.insert(mf),
                };
                upcall_cycles += pmd::rdtsc() - u0;
                mf
            };
            if let (true, Some(plan)) = (code != NONE, &mf.fast) {
                if grouping {
                    // Replayed with its megaflow's other packets after the
                    // loop.
                    groups.hold(i, p, code, mf);
                } else {
                    self.replay_counted(plan.ops(), mf, &[0], &mut [Some(p)], tx, out.now_ms);
                }
                continue;
            }
            let done = self.replay(p, key, mf, &mut out, tx);
            if done > mf.last_table {
                mf.hit(1, len, out.now_ms);
                if let Some(m) = unkept {
                    // Not kept (a full cache): its count still reaches
                    // the tables.
                    cache.keep_unkept(m);
                }
            } else {
                count_steps(&self.tables, &mf.steps[..done], 1, len, out.now_ms);
            }
        }
        let start = if groups.n > 0 { groups.sort() } else { [0; BATCH_SIZE + 1] };
        if grouping {
            cache.note_groups(groups.n as u64, u64::from(start[groups.n]));
        }
        for g in 0..groups.n {
            let code = groups.code[g];
            let mf = cache.megaflow_at(code, groups.at[g]);
            let Some(plan) = &mf.fast else { continue };
            let members = &groups.order[usize::from(start[g])..usize::from(start[g + 1])];
            self.replay_counted(plan.ops(), mf, members, &mut groups.held, tx, out.now_ms);
        }
        let t4 = pmd::rdtsc();
        let cy = &mut cache.counts.cycles;
        cy[STAGE_EXTRACT] += t1 - t0;
        cy[STAGE_EMC] += t2 - t1;
        cy[STAGE_MEGAFLOW] += t3 - t2;
        cy[STAGE_UPCALL] += upcall_cycles;
        cy[STAGE_ACTIONS] += (t4 - t3).saturating_sub(upcall_cycles);
        cache.keys = keys;
        cache.end_batch();
        counts.flush(&self.tables, out.now_ms);
        self.counters.fold(cache);
        if !out.normal.is_empty() {
            l2.process(rxq, &mut out.normal, tx);
            out.normal.clear();
        }
    }

    /// Runs a PACKET_OUT's actions on its frame (on a PMD thread: the
    /// control thread has no tx queue).
    pub fn packet_out(&self, req: &PacketOutReq, tx: &mut TxBatches, l2: &mut L2Pipeline, now_ns: u64) {
        let Some(p) = Packet::from_bytes(&self.pool, &req.data) else {
            self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let in_slot = self.ofport_slot.get(&req.in_port).map_or(usize::MAX, |(s, _)| *s);
        let mut out = Out { in_slot, in_port: req.in_port, normal: Batch::new(), now_ms: now_ns / 1_000_000, now_ns };
        let mut key = FlowKey::extract(p.data(), req.in_port);
        let origin = Origin::NONE;
        if req.actions.iter().any(|a| matches!(a, Action::Output { port: port::TABLE, .. })) {
            // OFPP_TABLE: the frame goes through the tables as if received
            // on in_port.
            let mut counts = BatchCounts::default();
            self.run(p, key, &mut out, tx, &mut counts);
            counts.flush(&self.tables, out.now_ms);
        } else {
            let _ = self.apply(p, &mut key, &req.actions, &mut out, tx, origin);
        }
        if !out.normal.is_empty() && in_slot != usize::MAX {
            l2.process(&RxqRef { port: in_slot, queue: 0 }, &mut out.normal, tx);
        }
        out.normal.clear();
    }

    /// Replays a megaflow's decision on a packet whose key is `key`;
    /// returns how many steps ran (fewer than all when the packet was
    /// dropped or sent on the way).
    fn replay(&self, mut p: Packet, key: &mut FlowKey, mf: &Megaflow, out: &mut Out, tx: &mut TxBatches) -> usize {
        let len = p.len() as u64;
        for (i, s) in mf.steps.iter().enumerate() {
            match s {
                Step::Table { entry: None, .. } => {
                    self.counters.miss_drops.fetch_add(1, Ordering::Relaxed);
                    return i + 1;
                }
                Step::Table { .. } => {}
                Step::Apply { acts, table, cookie, reason } => {
                    let origin = Origin { table: *table, cookie: *cookie, reason: *reason };
                    let Some(q) = self.apply(p, key, acts, out, tx, origin) else { return i + 1 };
                    p = q;
                }
                Step::Metadata(m) => key.set_u64(Field::Metadata, *m),
                Step::Meter(m) => {
                    if !self.meter(*m, &mut p, len, out.now_ns) {
                        return i + 1;
                    }
                }
            }
        }
        mf.steps.len()
    }

    /// `steps` (a translation for a packet received on `in_port`)
    /// compiled into [`FastOp`]s, when they have that shape: tables that
    /// matched, metadata writes (nothing reads them after the last
    /// lookup), Ethernet address set-fields, dec_ttl, and one output to a
    /// port of this bridge other than `in_port`, last.
    fn compile(&self, steps: &[Step], in_port: u32) -> Option<FastPlan> {
        let mut ops = [FastOp::DecTtl { done: 0 }; ofproto::megaflow::FAST_OPS];
        let mut n = 0;
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Table { entry: Some(_), .. } | Step::Metadata(_) => {}
                Step::Apply { acts, .. } => {
                    for a in acts.iter() {
                        if n > 0 && matches!(ops[n - 1], FastOp::Output { .. }) {
                            return None;
                        }
                        let op = match a {
                            Action::SetField(o)
                                if o.mask().is_none() && matches!(o.field, Field::EthDst | Field::EthSrc) =>
                            {
                                let mut mac = [0u8; 6];
                                mac.copy_from_slice(o.value().get(..6)?);
                                FastOp::SetMac { at: if o.field == Field::EthDst { 0 } else { 6 }, mac }
                            }
                            Action::DecNwTtl => FastOp::DecTtl { done: u32::try_from(i + 1).ok()? },
                            Action::Output { port: p, .. } if *p != in_port && *p <= port::MAX => {
                                FastOp::Output { slot: u32::try_from(self.ofport_slot.get(p)?.0).ok()? }
                            }
                            _ => return None,
                        };
                        *ops.get_mut(n)? = op;
                        n += 1;
                    }
                }
                _ => return None,
            }
        }
        let ops = &ops[..n];
        matches!(ops.last(), Some(FastOp::Output { .. })).then(|| FastPlan::new(ops)).flatten()
    }

    /// Replays a compiled decision on the packets of one group (`members`
    /// of `held`, in arrival order), one operation at a time over all of
    /// them; the megaflow counts those that went through all of its
    /// tables, the others (TTL expired before the last table) are counted
    /// on their own.
    #[inline]
    fn replay_counted(
        &self,
        ops: &[FastOp],
        mf: &Megaflow,
        members: &[u8],
        held: &mut [Option<Packet>],
        tx: &mut TxBatches,
        now_ms: u64,
    ) {
        let (mut packets, mut bytes) = (0, 0);
        for op in ops {
            match *op {
                FastOp::SetMac { at, mac } => {
                    let at = usize::from(at);
                    for &i in members {
                        let Some(p) = held[usize::from(i)].as_mut() else { continue };
                        if let Some(d) = p.data_mut().get_mut(at..at + 6) {
                            d.copy_from_slice(&mac);
                        }
                    }
                }
                FastOp::DecTtl { done } => {
                    for &i in members {
                        let slot = &mut held[usize::from(i)];
                        let Some(p) = slot.as_mut() else { continue };
                        if rewrite::dec_nw_ttl(p.data_mut()).is_err() {
                            self.counters.ttl_expired.fetch_add(1, Ordering::Relaxed);
                            let len = p.len() as u64;
                            let done = done as usize;
                            if done > mf.last_table {
                                (packets, bytes) = (packets + 1, bytes + len);
                            } else {
                                count_steps(&self.tables, &mf.steps[..done], 1, len, now_ms);
                            }
                            *slot = None;
                        }
                    }
                }
                FastOp::Output { slot } => {
                    for &i in members {
                        let Some(p) = held[usize::from(i)].take() else { continue };
                        (packets, bytes) = (packets + 1, bytes + p.len() as u64);
                        tx.send(slot as usize, p);
                    }
                }
            }
        }
        if packets > 0 {
            mf.hit(packets, bytes, now_ms);
        }
    }

    /// Runs meter `m` on a packet of `len` bytes: false when a drop band
    /// dropped it.
    fn meter(&self, m: u32, p: &mut Packet, len: u64, now_ns: u64) -> bool {
        if let Some(band) = self.meters.get(&m).and_then(|mt| mt.apply(len, now_ns)) {
            if band.band_type == 1 {
                self.counters.meter_drops.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            // DSCP remark: raise the drop precedence (RFC 2597 AFxy: y in
            // DSCP bits 1-2) by prec_level.
            rewrite::remark_dscp(p.data_mut(), band.prec_level);
        }
        true
    }

    /// Runs one packet (its key `key`) through the tables: packet-outs
    /// to OFPP_TABLE and keys whose decision cannot be cached.
    fn run<'s>(&'s self, p: Packet, key: FlowKey, out: &mut Out, tx: &mut TxBatches, counts: &mut BatchCounts<'s>) {
        let len = p.len() as u64;
        let mut w = PacketWalk { dp: self, p: Some(p), key, len, out, tx, counts };
        xlate::walk(&self.tables, &mut w);
    }

    /// Applies `acts` in order; outputs send a copy unless they are the
    /// last action. Returns the packet when it lives on.
    fn apply(
        &self,
        mut p: Packet,
        key: &mut FlowKey,
        acts: &[Action],
        out: &mut Out,
        tx: &mut TxBatches,
        origin: Origin,
    ) -> Option<Packet> {
        for (i, a) in acts.iter().enumerate() {
            let last = i + 1 == acts.len();
            match a {
                Action::Output { port: op, max_len } => {
                    if last {
                        self.output(p, *op, *max_len, key, out, tx, origin);
                        return None;
                    }
                    match p.copy(&self.pool) {
                        Some(c) => self.output(c, *op, *max_len, key, out, tx, origin),
                        None => {
                            self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Action::Group(g) => {
                    let Some(group) = self.groups.get(g) else { continue };
                    group.stats.packets.fetch_add(1, Ordering::Relaxed);
                    group.stats.bytes.fetch_add(p.len() as u64, Ordering::Relaxed);
                    // The buckets that run: all, one by hash, the only
                    // one, or the first live one.
                    let (from, to) = match group.group_type {
                        0 => (0, group.buckets.len()),
                        1 => self.select_bucket(group, key).map_or((0, 0), |i| (i, i + 1)),
                        2 => (0, group.buckets.len().min(1)),
                        _ => group
                            .buckets
                            .iter()
                            .position(|b| self.ofport_slot.get(&b.watch_port).is_some_and(|(_, up)| *up))
                            .map_or((0, 0), |i| (i, i + 1)),
                    };
                    for bi in from..to {
                        let b = &group.buckets[bi];
                        if let Some((pk, by)) = group.stats.buckets.get(bi) {
                            pk.fetch_add(1, Ordering::Relaxed);
                            by.fetch_add(p.len() as u64, Ordering::Relaxed);
                        }
                        let mut k = key.clone();
                        // Each bucket works on its own copy (spec 5.6.1).
                        match p.copy(&self.pool) {
                            Some(c) => {
                                let _ = self.apply(c, &mut k, &b.actions, out, tx, origin);
                            }
                            None => {
                                self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if last {
                        return None;
                    }
                }
                Action::PushVlan(tpid) => {
                    if p.prepend(4).is_none() {
                        self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    let d = p.data_mut();
                    d.copy_within(4..16, 0);
                    // The new tag copies VID and PCP of an existing one (spec
                    // 5.12), else 0.
                    let vid = key.get_u64(Field::VlanVid).filter(|v| v & 0x1000 != 0).map_or(0, |v| v & 0xfff);
                    let pcp = key.get_u64(Field::VlanPcp).unwrap_or(0) & 7;
                    let tci = u16::try_from(vid | (pcp << 13)).unwrap_or(0);
                    d[12..14].copy_from_slice(&tpid.to_be_bytes());
                    d[14..16].copy_from_slice(&tci.to_be_bytes());
                    key.set_u64(Field::VlanVid, u64::from(0x1000 | (tci & 0xfff)));
                    key.set_u64(Field::VlanPcp, u64::from(tci >> 13));
                }
                Action::PopVlan => {
                    let d = p.data();
                    if d.len() >= 18 && matches!(u16::from_be_bytes([d[12], d[13]]), 0x8100 | 0x88a8) {
                        let d = p.data_mut();
                        d.copy_within(0..12, 4);
                        pop_front(&mut p, 4);
                        let k = FlowKey::extract(p.data(), out.in_port);
                        key.set_u64(Field::VlanVid, k.get_u64(Field::VlanVid).unwrap_or(0));
                        match k.get_u64(Field::VlanPcp) {
                            Some(v) => key.set_u64(Field::VlanPcp, v),
                            None => key.clear(Field::VlanPcp),
                        }
                    }
                }
                Action::DecNwTtl => {
                    if rewrite::dec_nw_ttl(p.data_mut()).is_err() {
                        self.counters.ttl_expired.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
                Action::DecMplsTtl => {
                    if rewrite::dec_mpls_ttl(p.data_mut()).is_err() {
                        self.counters.ttl_expired.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
                Action::SetNwTtl(t) => {
                    rewrite::set_nw_ttl(p.data_mut(), *t);
                }
                Action::SetMplsTtl(t) => {
                    rewrite::set_mpls_ttl(p.data_mut(), *t);
                }
                Action::CopyTtlIn => {
                    rewrite::copy_ttl_in(p.data_mut());
                }
                Action::CopyTtlOut => {
                    rewrite::copy_ttl_out(p.data_mut());
                }
                Action::PushMpls(et) => {
                    if p.prepend(4).is_none() {
                        self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    rewrite::push_mpls_after_prepend(p.data_mut(), *et);
                    *key = FlowKey::extract(p.data(), out.in_port).with_pipeline_of(key);
                }
                Action::PopMpls(et) => {
                    if rewrite::pop_mpls_before_adj(p.data_mut(), *et) {
                        pop_front(&mut p, 4);
                        *key = FlowKey::extract(p.data(), out.in_port).with_pipeline_of(key);
                    }
                }
                Action::SetField(o) => {
                    if !rewrite::set_field(p.data_mut(), o) {
                        self.counters.unsupported_set_field.fetch_add(1, Ordering::Relaxed);
                    }
                    key.set(o.field, o.value());
                }
                // Queues (QoS) are not in this datapath yet: there is nothing
                // to select, as on a switch without queues.
                Action::SetQueue(_) => {}
                Action::PushPbb(et) => {
                    if p.prepend(18).is_none() {
                        self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    if !rewrite::push_pbb_after_prepend(p.data_mut(), *et) {
                        p.adj(18);
                    }
                    *key = FlowKey::extract(p.data(), out.in_port).with_pipeline_of(key);
                }
                Action::PopPbb => {
                    if let Some(n) = rewrite::pbb_header_len(p.data()) {
                        pop_front(&mut p, n);
                        *key = FlowKey::extract(p.data(), out.in_port).with_pipeline_of(key);
                    }
                }
            }
        }
        Some(p)
    }

    fn select_bucket(&self, g: &Group, key: &FlowKey) -> Option<usize> {
        pick_weighted(flow_hash(key), g.buckets.iter().map(|b| b.weight))
    }

    #[allow(clippy::too_many_arguments)]
    fn output(
        &self,
        p: Packet,
        op: u32,
        max_len: u16,
        key: &FlowKey,
        out: &mut Out,
        tx: &mut TxBatches,
        origin: Origin,
    ) {
        match op {
            port::NORMAL => {
                if let Err(p) = out.normal.push(p) {
                    drop(p);
                }
            }
            port::IN_PORT => tx.send(out.in_slot, p),
            port::ALL | port::FLOOD => {
                let targets: Vec<usize> =
                    self.ofport_slot.iter().filter(|(n, _)| **n != out.in_port).map(|(_, (s, _))| *s).collect();
                let mut p = Some(p);
                for (i, s) in targets.iter().enumerate() {
                    let pk =
                        if i + 1 == targets.len() { p.take() } else { p.as_ref().and_then(|x| x.copy(&self.pool)) };
                    match pk {
                        Some(pk) => tx.send(*s, pk),
                        None => {
                            self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            port::CONTROLLER => {
                let n = if max_len == 0xffff { p.len() } else { usize::from(max_len).min(p.len()) };
                let d = p.data();
                let msg = ToController {
                    bridge: self.bridge,
                    reason: origin.reason,
                    table_id: origin.table,
                    cookie: origin.cookie,
                    in_port: out.in_port,
                    metadata: key.get_u64(Field::Metadata).unwrap_or(0),
                    total_len: u16::try_from(p.len()).unwrap_or(u16::MAX),
                    data: d[..n.min(d.len())].to_vec(),
                };
                if self.to_controller.try_send(msg).is_err() {
                    self.counters.controller_queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Back out of the input port only with IN_PORT (spec 5.12; OVS
            // drops it too).
            n if n == out.in_port => {
                self.counters.bad_port.fetch_add(1, Ordering::Relaxed);
            }
            n => match self.ofport_slot.get(&n) {
                Some((slot, _)) => tx.send(*slot, p),
                None => {
                    self.counters.bad_port.fetch_add(1, Ordering::Relaxed);
                }
            },
        }
    }
}

/// Ethernet's minimum frame length, without FCS.
const MIN_FRAME: usize = 60;

/// Drops the frame's first `n` bytes (a header popped) and pads what is
/// left to Ethernet's minimum with zeros, as a NIC pads on transmit:
/// virtual ports (AF_PACKET, memif, vhost) would otherwise carry a popped
/// minimum-size frame short.
fn pop_front(p: &mut Packet, n: usize) {
    p.adj(n);
    let len = p.len();
    if len < MIN_FRAME {
        if let Some(pad) = p.append(MIN_FRAME - len) {
            pad.fill(0);
        }
    }
}

/// The hash a select group picks its bucket by: MACs, the 5-tuple (SCTP
/// too) and ARP's addresses, so one flow always takes one bucket. FNV-1a, then murmur3's finaliser (FNV's
/// low bits alone are just the parity of the input bytes' low bits).
fn flow_hash(key: &FlowKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in [
        Field::EthSrc,
        Field::EthDst,
        Field::Ipv4Src,
        Field::Ipv4Dst,
        Field::Ipv6Src,
        Field::Ipv6Dst,
        Field::IpProto,
        Field::TcpSrc,
        Field::TcpDst,
        Field::UdpSrc,
        Field::UdpDst,
        Field::SctpSrc,
        Field::SctpDst,
        Field::ArpSpa,
        Field::ArpTpa,
    ] {
        for b in key.get(f).unwrap_or(&[]) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The index of the weight that `hash` falls on, each weight taking its
/// share of the hash space (its high half scaled onto the total); None
/// when every weight is 0.
fn pick_weighted(hash: u64, weights: impl Iterator<Item = u16> + Clone) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    let mut pick = ((hash >> 32) * total) >> 32;
    for (i, w) in weights.enumerate() {
        if pick < u64::from(w) {
            return Some(i);
        }
        pick -= u64::from(w);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flows that differ only in a few address and port bytes spread over
    /// the buckets by their weights (within 3 points), and one flow always
    /// gets the same bucket.
    #[test]
    fn select_spreads_flows_by_weight() {
        for weights in [vec![1u16, 1], vec![1, 3], vec![50, 0, 50]] {
            let total: u32 = weights.iter().map(|w| u32::from(*w)).sum();
            let mut hits = vec![0u32; weights.len()];
            let n = 20_000u32;
            for i in 0..n {
                let mut k = FlowKey::default();
                let mut src = [0u8; 16];
                src[0] = 0x20;
                src[15] = u8::try_from(i % 251).unwrap();
                k.set(Field::Ipv6Src, &src);
                k.set(Field::Ipv6Dst, &[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20]);
                k.set_u64(Field::TcpSrc, u64::from(i / 251));
                k.set_u64(Field::TcpDst, 2222);
                let b = pick_weighted(flow_hash(&k), weights.iter().copied()).unwrap();
                assert_eq!(pick_weighted(flow_hash(&k), weights.iter().copied()), Some(b));
                hits[b] += 1;
            }
            for (h, w) in hits.iter().zip(&weights) {
                let want = f64::from(n) * f64::from(*w) / f64::from(total);
                assert!((f64::from(*h) - want).abs() < 0.03 * f64::from(n), "weights {weights:?}: {hits:?}");
            }
        }
        assert_eq!(pick_weighted(7, [0u16, 0].into_iter()), None);
    }
}
