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
//! the control thread publishes after each change (see [`crate::daemon::switch`]
//! for the hand-off); a snapshot that differs only by flow changes keeps
//! the megaflows those changes cannot affect, any other starts an empty
//! cache. Each batch counts the TSC cycles of its stages (extract, EMC,
//! megaflow, upcall, actions). Entry, table and group counters are shared
//! atomics, folded per batch.

mod actions;
mod counters;

pub use counters::{DumpBoard, OfCounters};

use super::l2::L2Pipeline;
use super::rewrite;
use counters::BatchCounts;
use ofproto::agent::{Group, Meter};
use ofproto::flow::FlowKey;
use ofproto::megaflow::{
    count_steps, FastOp, FastPlan, Megaflow, MegaflowCache, NONE, STAGE_ACTIONS, STAGE_EMC, STAGE_EXTRACT,
    STAGE_MEGAFLOW, STAGE_UPCALL,
};
use ofproto::ofp::action::port;
use ofproto::ofp::{Action, Field};
use ofproto::table::Tables;
use ofproto::xlate::{self, Origin, Step};
use pmd::packet::{Batch, BATCH_SIZE};
use pmd::pmd::{Pipeline, RxqRef, TxBatches};
use pmd::{Mempool, Packet};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
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

/// A tunnel port with a fixed key.
pub const TUNNEL_FIXED_KEY: u8 = 1;
/// A tunnel port whose key is `flow`: each frame's `tunnel_id`.
pub const TUNNEL_FLOW_KEY: u8 = 2;
/// A tunnel port whose remote is `flow`: each frame's `tun_dst` or
/// `tun_ipv6_dst`.
pub const TUNNEL_FLOW_REMOTE: u8 = 4;
/// A Geneve port: frames take their `tun_metadata` fields along as
/// options (when the TLV map names any).
pub const TUNNEL_GENEVE: u8 = 8;

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
    /// Tunnel ports by slot: bits of [`TUNNEL_FIXED_KEY`],
    /// [`TUNNEL_FLOW_KEY`], [`TUNNEL_FLOW_REMOTE`], [`TUNNEL_GENEVE`], or
    /// 0 for other ports. Frames from a tunnel carry its `tunnel_id` and
    /// `tun_*` fields; frames to a flow-keyed one take theirs along.
    pub tunnels: Vec<u8>,
    /// The Geneve option map of the `tun_metadata` fields.
    pub tlv: ofproto::agent::tlv::TlvTable,
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
    /// Whether frames to `slot` take tunnel fields along (its key or
    /// remote is `flow`, or it is Geneve and options are mapped).
    #[inline]
    pub(super) fn stamps(&self, slot: usize) -> bool {
        let t = self.tunnels.get(slot).copied().unwrap_or(0);
        t & (TUNNEL_FLOW_KEY | TUNNEL_FLOW_REMOTE) != 0 || (t & TUNNEL_GENEVE != 0 && !self.tlv.is_empty())
    }

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
        let from_tunnel = self.tunnels.get(rxq.port).is_some_and(|t| *t != 0);
        for (k, p) in keys.iter_mut().zip(batch.as_slice()) {
            k.extract_into(p.data(), in_port);
            if from_tunnel {
                k.set_u64(Field::TunnelId, u64::from(p.meta().tun_id));
                crate::datapath::tunnel::meta::fields_into_key(p, &self.tlv, k);
            }
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
    /// lookup), Ethernet address set-fields, dec_ttl, set_queue, and one output to a
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
                            Action::SetQueue(q) => FastOp::SetQueue { queue: *q },
                            Action::Output { port: p, .. } if *p != in_port && *p <= port::MAX => {
                                let slot = self.ofport_slot.get(p)?.0;
                                // A tunnel that takes the frame's tunnel
                                // fields along: the actions do that.
                                if self.stamps(slot) {
                                    return None;
                                }
                                FastOp::Output { slot: u32::try_from(slot).ok()? }
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
                FastOp::SetQueue { queue } => {
                    for &i in members {
                        if let Some(p) = held[usize::from(i)].as_mut() {
                            p.meta_mut().queue = queue.saturating_add(1);
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
}
