//! L2 switching on PMD threads (what OpenFlow calls NORMAL): MAC learning
//! per bridge and VLAN, flooding of broadcast, multicast and unknown
//! unicast, and access/trunk VLAN semantics with tag push and pop.
//!
//! VLAN rules, as Open vSwitch applies them:
//! - an **access** port carries one VLAN untagged: untagged frames (or
//!   priority-tagged, VID 0) join its VLAN; tagged frames are dropped;
//!   frames leave it untagged;
//! - a **trunk** port carries tagged frames of its allowed VLANs (all when
//!   the list is empty); untagged frames belong to VLAN 0, allowed only when
//!   the list is empty; frames of VLAN 0 leave untagged, others tagged;
//! - a port with **no VLAN** handling carries VLAN 0 and leaves frames as
//!   they are.
//!
//! A frame whose destination was learned on its own input port is dropped
//! (it has already reached its segment). Every drop has a reason and a
//! counter ([`L2Counters`]).

use crate::mac_table::{Learned, MacTable};
use pmd::packet::Batch;
use pmd::pmd::{Pipeline, RxqRef, TxBatches};
use pmd::{Mempool, Packet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use wire::EthernetAddress;

const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

/// VLAN behaviour of one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortVlan {
    /// One VLAN, untagged on the wire.
    Access(u16),
    /// Tagged VLANs; an empty set allows every VLAN (and untagged = VLAN 0).
    Trunk(VlanSet),
    /// No VLAN handling: VLAN 0, frames untouched.
    None,
}

/// A set of VLAN ids (0-4095) as a bitmap; empty means "all".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VlanSet {
    bits: Option<Box<[u64; 64]>>,
}

impl VlanSet {
    /// Every VLAN.
    pub fn all() -> VlanSet {
        VlanSet { bits: None }
    }
    /// Exactly these.
    pub fn of(vlans: &[u16]) -> VlanSet {
        if vlans.is_empty() {
            return VlanSet::all();
        }
        let mut b = Box::new([0u64; 64]);
        for v in vlans {
            let v = usize::from(*v & 0x0fff);
            b[v / 64] |= 1 << (v % 64);
        }
        VlanSet { bits: Some(b) }
    }
    /// Whether `vlan` is in the set.
    #[inline]
    pub fn contains(&self, vlan: u16) -> bool {
        match &self.bits {
            None => true,
            Some(b) => {
                let v = usize::from(vlan & 0x0fff);
                b[v / 64] & (1 << (v % 64)) != 0
            }
        }
    }
    fn is_all(&self) -> bool {
        self.bits.is_none()
    }
}

impl PortVlan {
    /// The VLAN a frame arriving here belongs to, or None to drop it.
    #[inline]
    fn ingress(&self, tag: Option<u16>) -> Option<u16> {
        let vid = tag.filter(|v| *v != 0);
        match self {
            PortVlan::Access(t) => vid.is_none().then_some(*t),
            PortVlan::Trunk(set) => match vid {
                Some(v) => set.contains(v).then_some(v),
                None => set.is_all().then_some(0),
            },
            PortVlan::None => Some(0),
        }
    }
    /// Whether frames of `vlan` may leave here.
    #[inline]
    fn carries(&self, vlan: u16) -> bool {
        match self {
            PortVlan::Access(t) => *t == vlan,
            PortVlan::Trunk(set) => {
                if vlan == 0 {
                    set.is_all()
                } else {
                    set.contains(vlan)
                }
            }
            PortVlan::None => vlan == 0,
        }
    }
}

/// Counters of one PMD thread's L2 pipeline, written by that thread only.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct L2Counters {
    /// Frames sent to one learned port.
    pub unicast: AtomicU64,
    /// Frames flooded (broadcast, multicast, unknown unicast).
    pub flooded: AtomicU64,
    /// Copies made for flooding.
    pub flood_copies: AtomicU64,
    /// Dropped: VLAN not allowed on the input port.
    pub drop_vlan: AtomicU64,
    /// Dropped: destination learned on the input port.
    pub drop_hairpin: AtomicU64,
    /// Dropped: shorter than an Ethernet header (or a cut VLAN tag).
    pub drop_malformed: AtomicU64,
    /// Dropped: no mbuf for a flood copy or a tag.
    pub drop_nombuf: AtomicU64,
    /// Source MACs that moved to another port.
    pub mac_moves: AtomicU64,
}

/// Single writer (its PMD thread): load + store, no locked RMW.
use pmd::port::SwCounters;
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    SwCounters::bump(c, n);
}

/// Totals over every PMD thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L2Stats {
    /// See [`L2Counters::unicast`].
    pub unicast: u64,
    /// See [`L2Counters::flooded`].
    pub flooded: u64,
    /// See [`L2Counters::flood_copies`].
    pub flood_copies: u64,
    /// See [`L2Counters::drop_vlan`].
    pub drop_vlan: u64,
    /// See [`L2Counters::drop_hairpin`].
    pub drop_hairpin: u64,
    /// See [`L2Counters::drop_malformed`].
    pub drop_malformed: u64,
    /// See [`L2Counters::drop_nombuf`].
    pub drop_nombuf: u64,
    /// See [`L2Counters::mac_moves`].
    pub mac_moves: u64,
}

/// What every PMD thread's pipeline of one bridge shares: a snapshot of
/// its membership, with the MAC table and counters that outlive snapshots.
#[derive(Debug)]
pub struct L2Bridge {
    /// VLAN behaviour per port slot (the PmdSet's slots); ports of other
    /// bridges and empty slots are `None`.
    pub ports: Vec<Option<PortVlan>>,
    /// The bridge's MAC table.
    pub table: Arc<MacTable>,
    /// Mbufs for flood copies and pushed tags.
    pub pool: Arc<Mempool>,
    counters: Arc<[L2Counters]>,
}

impl L2Bridge {
    /// A bridge over every port (by port index) with a table of
    /// `mac_capacity`.
    pub fn new(ports: Vec<PortVlan>, mac_capacity: u32, pool: Arc<Mempool>) -> Arc<L2Bridge> {
        L2Bridge::with_members(ports.into_iter().map(Some).collect(), mac_capacity, pool)
    }

    /// A bridge over the ports that are `Some` (the others belong to other
    /// bridges on the same PMD threads).
    pub fn with_members(ports: Vec<Option<PortVlan>>, mac_capacity: u32, pool: Arc<Mempool>) -> Arc<L2Bridge> {
        Arc::new(L2Bridge {
            ports,
            table: Arc::new(MacTable::new(mac_capacity)),
            pool,
            counters: (0..pmd::port::MAX_PMDS).map(|_| L2Counters::default()).collect(),
        })
    }

    /// The same bridge (MAC table, counters, pool) with another membership:
    /// the snapshot the control thread publishes when ports change.
    pub fn with_ports(&self, ports: Vec<Option<PortVlan>>) -> Arc<L2Bridge> {
        Arc::new(L2Bridge {
            ports,
            table: self.table.clone(),
            pool: self.pool.clone(),
            counters: self.counters.clone(),
        })
    }

    /// The pipeline for PMD thread `pmd`.
    pub fn pipeline(self: &Arc<Self>, pmd: usize) -> L2Pipeline {
        L2Pipeline { bridge: self.clone(), pmd: pmd.min(pmd::port::MAX_PMDS - 1), tsc_per_s: pmd::tsc_hz().max(1) }
    }

    /// Counters summed over the PMD threads.
    pub fn stats(&self) -> L2Stats {
        let mut s = L2Stats::default();
        for c in self.counters.iter() {
            let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s.unicast += g(&c.unicast);
            s.flooded += g(&c.flooded);
            s.flood_copies += g(&c.flood_copies);
            s.drop_vlan += g(&c.drop_vlan);
            s.drop_hairpin += g(&c.drop_hairpin);
            s.drop_malformed += g(&c.drop_malformed);
            s.drop_nombuf += g(&c.drop_nombuf);
            s.mac_moves += g(&c.mac_moves);
        }
        s
    }

    /// Seconds on the clock the learning table uses.
    pub fn now_s() -> u32 {
        #[allow(clippy::cast_possible_truncation)] // wraps after 136 years of uptime; ages use wrapping arithmetic
        let s = (pmd::rdtsc() / pmd::tsc_hz().max(1)) as u32;
        s
    }
}

/// One PMD thread's L2 pipeline.
#[derive(Debug)]
pub struct L2Pipeline {
    bridge: Arc<L2Bridge>,
    pmd: usize,
    tsc_per_s: u64,
}

/// The frame's 802.1Q/802.1ad tag, if any: (VID, offset of the inner
/// EtherType). None for a frame too short for its headers.
#[inline]
fn read_tag(d: &[u8]) -> Option<Option<u16>> {
    if d.len() < wire::ethernet::HEADER_LEN {
        return None;
    }
    let et = u16::from_be_bytes([d[12], d[13]]);
    if et == TPID_8021Q || et == TPID_8021AD {
        if d.len() < 18 {
            return None;
        }
        return Some(Some(u16::from_be_bytes([d[14], d[15]]) & 0x0fff));
    }
    Some(None)
}

/// Rewrites the frame's tagging for `out`: strip, push or keep.
#[inline]
fn egress(p: &mut Packet, out: &PortVlan, vlan: u16, tagged: bool) -> bool {
    let want_tag = match out {
        PortVlan::Access(_) => false,
        PortVlan::Trunk(_) => vlan != 0,
        PortVlan::None => return true,
    };
    if tagged && !want_tag {
        // Pop: the MACs move 4 bytes on, over the tag.
        let d = p.data_mut();
        d.copy_within(0..12, 4);
        return p.adj(4);
    }
    if want_tag && !tagged {
        if p.prepend(4).is_none() {
            return false;
        }
        let d = p.data_mut();
        d.copy_within(4..16, 0);
        d[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
        d[14..16].copy_from_slice(&(vlan & 0x0fff).to_be_bytes());
        return true;
    }
    if want_tag && tagged {
        // Keep PCP/DEI, set the VID (the same unless VLANs were translated).
        let d = p.data_mut();
        let tci = (u16::from_be_bytes([d[14], d[15]]) & 0xf000) | (vlan & 0x0fff);
        d[14..16].copy_from_slice(&tci.to_be_bytes());
    }
    true
}

impl Pipeline for L2Pipeline {
    fn process(&mut self, rxq: &RxqRef, batch: &mut Batch, tx: &mut TxBatches) {
        let br = &*self.bridge;
        let c = &br.counters[self.pmd];
        #[allow(clippy::cast_possible_truncation)] // see L2Bridge::now_s
        let now_s = (pmd::rdtsc() / self.tsc_per_s) as u32;
        let in_port = rxq.port;
        let Some(in_vlan) = &br.ports[in_port] else {
            // Not ours: the dispatcher sends each port's batches to its
            // own bridge, so this is a wiring mistake; drop, never panic.
            let n = batch.len() as u64;
            batch.clear();
            bump(&c.drop_malformed, n);
            return;
        };
        #[allow(clippy::cast_possible_truncation)] // port indices are below 2^32
        let in_port32 = in_port as u32;
        // Stage 1 (VPP's lesson): start loading every packet's MAC-table
        // buckets, so that stage 2 finds them in cache instead of waiting
        // for memory once per packet.
        // What stage 1 read of each frame's tag, so stage 2 does not read it
        // again (None: too short for its headers).
        let mut tags = [None::<Option<u16>>; pmd::BATCH_SIZE];
        for (p, t) in batch.as_slice().iter().zip(tags.iter_mut()) {
            let d = p.data();
            *t = read_tag(d);
            if let Some(vlan) = t.and_then(|t| in_vlan.ingress(t)) {
                br.table.prefetch(vlan, EthernetAddress([d[6], d[7], d[8], d[9], d[10], d[11]]));
                br.table.prefetch(vlan, EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]]));
            }
        }
        // VPP's l2-learn lesson: consecutive frames of one conversation
        // (same VLAN, same MAC pair) share one decision, so a run of them
        // learns and looks up once. (VLAN, the 12 MAC bytes, the lookup.)
        let mut last: Option<(u16, [u8; 12], Option<u32>)> = None;
        let mut unicast = 0u64;
        for (mut p, tag) in batch.drain().zip(tags) {
            let Some(tag) = tag else {
                bump(&c.drop_malformed, 1);
                continue;
            };
            let Some(vlan) = in_vlan.ingress(tag) else {
                bump(&c.drop_vlan, 1);
                continue;
            };
            let d = p.data();
            let mut macs = [0u8; 12];
            macs.copy_from_slice(&d[..12]);
            let dst = EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]]);
            let looked_up = match last {
                Some((v, m, out)) if v == vlan && m == macs => out,
                _ => {
                    let src = EthernetAddress([d[6], d[7], d[8], d[9], d[10], d[11]]);
                    if src.is_unicast() {
                        if let Learned::Moved(_) = br.table.learn(vlan, src, in_port32, now_s) {
                            bump(&c.mac_moves, 1);
                        }
                    }
                    let out = if dst.is_unicast() { br.table.lookup(vlan, dst) } else { None };
                    last = Some((vlan, macs, out));
                    out
                }
            };
            let tagged = tag.is_some();
            if let Some(out) = looked_up {
                let out = out as usize;
                if out == in_port {
                    bump(&c.drop_hairpin, 1);
                    continue;
                }
                if let Some(Some(out_vlan)) = br.ports.get(out).filter(|v| v.as_ref().is_some_and(|v| v.carries(vlan)))
                {
                    if egress(&mut p, out_vlan, vlan, tagged) {
                        unicast += 1;
                        tx.send(out, p);
                    } else {
                        bump(&c.drop_nombuf, 1);
                    }
                    continue;
                }
            }
            // Flood: every other port of the VLAN; copies for all but the
            // last, which takes the original.
            bump(&c.flooded, 1);
            let outs = br
                .ports
                .iter()
                .enumerate()
                .filter(|(i, v)| *i != in_port && v.as_ref().is_some_and(|v| v.carries(vlan)))
                .map(|(i, _)| i);
            let mut last = None;
            for o in outs {
                if let Some(prev) = last.replace(o) {
                    // Every segment: a jumbo frame may be a chain.
                    match p.copy(&br.pool) {
                        Some(mut copy) => {
                            bump(&c.flood_copies, 1);
                            if egress(&mut copy, br.ports[prev].as_ref().unwrap_or(&PortVlan::None), vlan, tagged) {
                                tx.send(prev, copy);
                            } else {
                                bump(&c.drop_nombuf, 1);
                            }
                        }
                        None => bump(&c.drop_nombuf, 1),
                    }
                }
            }
            if let Some(o) = last {
                if egress(&mut p, br.ports[o].as_ref().unwrap_or(&PortVlan::None), vlan, tagged) {
                    tx.send(o, p);
                } else {
                    bump(&c.drop_nombuf, 1);
                }
            }
        }
        bump(&c.unicast, unicast);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_ingress_and_egress_rules() {
        let acc = PortVlan::Access(10);
        assert_eq!(acc.ingress(None), Some(10));
        assert_eq!(acc.ingress(Some(0)), Some(10), "priority-tagged counts as untagged");
        assert_eq!(acc.ingress(Some(10)), None, "tagged frames are dropped on access ports");
        let tr = PortVlan::Trunk(VlanSet::of(&[10, 20]));
        assert_eq!(tr.ingress(Some(20)), Some(20));
        assert_eq!(tr.ingress(Some(30)), None);
        assert_eq!(tr.ingress(None), None, "no untagged frames on a trunk with a VLAN list");
        let all = PortVlan::Trunk(VlanSet::all());
        assert_eq!(all.ingress(None), Some(0));
        assert_eq!(all.ingress(Some(4000)), Some(4000));
        assert_eq!(PortVlan::None.ingress(Some(5)), Some(0));
        assert!(acc.carries(10) && !acc.carries(20));
        assert!(tr.carries(10) && !tr.carries(0) && !tr.carries(30));
        assert!(all.carries(0) && all.carries(77));
        assert!(PortVlan::None.carries(0) && !PortVlan::None.carries(10));
    }

    #[test]
    fn tags_are_read_and_cut_frames_refused() {
        let mut f = vec![0u8; 18];
        f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        f[14..16].copy_from_slice(&0xa00au16.to_be_bytes());
        assert_eq!(read_tag(&f), Some(Some(10)));
        assert_eq!(read_tag(&f[..16]), None);
        assert_eq!(read_tag(&f[..13]), None);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(read_tag(&f[..14]), Some(None));
    }
}

/// What the PMD threads' dispatchers read: which bridge each port slot
/// belongs to, and each bridge's current snapshot. The control thread
/// builds a new one for every change and publishes it in a [`ViewCell`].
#[derive(Debug, Default)]
pub struct DpView {
    /// Index into `bridges` per port slot; `None`: an empty slot.
    pub by_port: Vec<Option<usize>>,
    /// Bridge snapshots.
    pub bridges: Vec<Arc<L2Bridge>>,
    /// Cross-connects per port slot: every frame received on the slot goes
    /// to this slot, untouched (VPP's `l2 xconnect`).
    pub xconnect: Vec<Option<usize>>,
    /// Per bridge (same index as `bridges`): its OpenFlow pipeline, when
    /// OpenFlow drives it; None: NORMAL (L2 switching) only.
    pub openflow: Vec<Option<Arc<crate::ofdp::OfBridgeDp>>>,
    /// Per bridge: fail_mode secure with controllers, and no OpenFlow
    /// pipeline published yet: nothing is forwarded (never NORMAL).
    pub closed: Vec<bool>,
}

/// Where the control thread publishes the [`DpView`]. PMD threads read it
/// only in [`Pipeline::reconfigure`] (when the PMD set's generation
/// changed), so the mutex is never taken per packet; the control thread
/// stores the new view before it bumps the generation.
pub type ViewCell = Arc<std::sync::Mutex<Arc<DpView>>>;

/// Runs each port's batches through the pipeline of the bridge the port
/// belongs to: one set of PMD threads serves every bridge.
#[derive(Debug)]
pub struct BridgeDispatch {
    by_port: Vec<Option<usize>>,
    xconnect: Vec<Option<usize>>,
    openflow: Vec<Option<Arc<crate::ofdp::OfBridgeDp>>>,
    closed: Vec<bool>,
    /// PACKET_OUTs to run (PMD thread 0 only).
    packet_outs: Option<std::sync::mpsc::Receiver<crate::ofdp::PacketOutReq>>,
    epoch: std::time::Instant,
    bridges: Vec<L2Pipeline>,
    /// Per bridge: this thread's megaflows for its OpenFlow snapshot.
    caches: Vec<ofproto::megaflow::MegaflowCache>,
    polls: u64,
    cell: Option<ViewCell>,
    pmd: usize,
    /// Settings of the caches.
    cache_cfg: ofproto::megaflow::CacheConfig,
    /// Per bridge: the last megaflow dump request answered.
    dumps_done: Vec<u64>,
}

impl BridgeDispatch {
    /// A fixed wiring: `by_port[i]` is the index in `bridges` of port i's
    /// bridge.
    pub fn new(by_port: Vec<usize>, bridges: &[Arc<L2Bridge>], pmd: usize) -> BridgeDispatch {
        BridgeDispatch {
            by_port: by_port.into_iter().map(Some).collect(),
            xconnect: Vec::new(),
            openflow: Vec::new(),
            closed: Vec::new(),
            packet_outs: None,
            epoch: std::time::Instant::now(),
            bridges: bridges.iter().map(|b| b.pipeline(pmd)).collect(),
            caches: Vec::new(),
            polls: 0,
            cell: None,
            pmd,
            cache_cfg: ofproto::megaflow::CacheConfig::default(),
            dumps_done: Vec::new(),
        }
    }

    /// A wiring that follows the view published in `cell`; PACKET_OUTs
    /// arrive on `packet_outs` (give it to one thread only); `epoch` is
    /// the clock flow timeouts count from; `cache_cfg` sets up the
    /// megaflow and exact-match caches.
    pub fn following(
        cell: ViewCell,
        pmd: usize,
        packet_outs: Option<std::sync::mpsc::Receiver<crate::ofdp::PacketOutReq>>,
        epoch: std::time::Instant,
        cache_cfg: ofproto::megaflow::CacheConfig,
    ) -> BridgeDispatch {
        let mut d = BridgeDispatch {
            by_port: Vec::new(),
            xconnect: Vec::new(),
            openflow: Vec::new(),
            closed: Vec::new(),
            packet_outs,
            epoch,
            bridges: Vec::new(),
            caches: Vec::new(),
            polls: 0,
            cell: Some(cell),
            pmd,
            cache_cfg,
            dumps_done: Vec::new(),
        };
        d.reconfigure();
        d
    }
}

impl BridgeDispatch {
    /// Answers the megaflow dumps asked for since the last poll (one
    /// atomic load per OpenFlow bridge when there is none).
    fn answer_dumps(&mut self) {
        if self.dumps_done.len() < self.openflow.len() {
            self.dumps_done.resize(self.openflow.len(), 0);
        }
        for (b, of) in self.openflow.iter().enumerate() {
            let Some(of) = of else { continue };
            let req = of.counters.dumps.request.load(Ordering::Acquire);
            if req == self.dumps_done[b] {
                continue;
            }
            self.dumps_done[b] = req;
            let flows = self.caches.get(b).map(ofproto::megaflow::MegaflowCache::dump).unwrap_or_default();
            let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            let mut answers = of.counters.dumps.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            answers.retain(|a| a.0 != self.pmd);
            answers.push((self.pmd, req, now_ms, flows));
        }
    }
}

impl Pipeline for BridgeDispatch {
    #[inline]
    fn process(&mut self, rxq: &RxqRef, batch: &mut Batch, tx: &mut TxBatches) {
        if let Some(Some(out)) = self.xconnect.get(rxq.port) {
            tx.send_batch(*out, batch);
            return;
        }
        // A slot the view does not know yet (or any more): the batch is
        // left for the PMD thread to free.
        if let Some(Some(b)) = self.by_port.get(rxq.port) {
            match self.openflow.get(*b) {
                Some(Some(of)) => {
                    let now_ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    if self.caches.len() <= *b {
                        let cfg = self.cache_cfg;
                        self.caches.resize_with(*b + 1, || ofproto::megaflow::MegaflowCache::new(cfg));
                        // Its megaflows' counters go to the bridge's
                        // folder from the first.
                        self.caches[*b].hand_over(&of.folder, &of.tables);
                    }
                    of.process(rxq, batch, tx, &mut self.bridges[*b], &mut self.caches[*b], now_ns);
                }
                // Secure, waiting for its tables: the batch is left for the
                // PMD thread to free.
                _ if self.closed.get(*b) == Some(&true) => {}
                _ => self.bridges[*b].process(rxq, batch, tx),
            }
        }
    }

    fn poll(&mut self, tx: &mut TxBatches) {
        // New megaflows go to their bridge's folder (which folds their
        // counters into the OpenFlow entries) every 1024 iterations (a
        // few milliseconds when busy, less when idle).
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(1024) {
            let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            for (c, of) in self.caches.iter_mut().zip(&self.openflow) {
                if let Some(of) = of {
                    c.hand_over(&of.folder, &of.tables);
                    c.expire(now_ms);
                    of.counters.fold(c);
                }
            }
        }
        self.answer_dumps();
        let Some(rx) = &self.packet_outs else { return };
        // A few per iteration: the rx queues come first.
        for _ in 0..8 {
            let Ok(req) = rx.try_recv() else { return };
            if let Some(Some(of)) = self.openflow.get(req.bridge) {
                let now_ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                of.packet_out(&req, tx, &mut self.bridges[req.bridge], now_ns);
            }
        }
    }

    fn reconfigure(&mut self) {
        self.answer_dumps();
        let Some(cell) = &self.cell else { return };
        let view = cell.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        self.by_port.clone_from(&view.by_port);
        self.xconnect.clone_from(&view.xconnect);
        // A bridge whose OpenFlow snapshot changed starts an empty cache:
        // no decision outlives the tables it was made from.
        let mut caches = Vec::with_capacity(view.openflow.len());
        for (b, of) in view.openflow.iter().enumerate() {
            let same = matches!((self.openflow.get(b), of), (Some(Some(old)), Some(new)) if Arc::ptr_eq(old, new));
            let old = self.caches.get_mut(b).map(std::mem::take);
            match old {
                Some(c) if same => caches.push(c),
                Some(mut c) => {
                    if let Some(Some(o)) = self.openflow.get(b) {
                        // Flows changed only, and this thread used the
                        // snapshot the changes start from: the megaflows
                        // they cannot affect stay.
                        let kept = match of.as_ref().and_then(|n| n.delta.as_ref()) {
                            Some((base, changes)) if *base == o.seq => c.revalidate(changes),
                            _ => false,
                        };
                        o.counters.fold(&mut c);
                        if kept {
                            o.counters.mf_caches_kept.fetch_add(1, Ordering::Relaxed);
                            caches.push(c);
                            continue;
                        }
                        o.counters.cache_dropped(&c);
                    }
                    caches.push(ofproto::megaflow::MegaflowCache::succeeding(&mut c));
                }
                None => caches.push(ofproto::megaflow::MegaflowCache::new(self.cache_cfg)),
            }
        }
        // Each cache's megaflows go to its bridge's folder (those of a
        // cache just replaced went to the old one's when it was dropped).
        for (c, of) in caches.iter_mut().zip(&view.openflow) {
            if let Some(of) = of {
                c.hand_over(&of.folder, &of.tables);
            }
        }
        self.caches = caches;
        self.openflow.clone_from(&view.openflow);
        self.closed.clone_from(&view.closed);
        self.bridges = view.bridges.iter().map(|b| b.pipeline(self.pmd)).collect();
    }
}
