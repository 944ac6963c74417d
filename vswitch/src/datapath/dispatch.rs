//! One set of PMD threads serves every bridge: the dispatcher runs each
//! received batch through the pipeline of the bridge its port belongs to
//! (cross-connect, OpenFlow or L2), following the view the control thread
//! publishes.

use super::l2::{L2Bridge, L2Pipeline};
use super::ofdp::{OfBridgeDp, PacketOutReq};
use super::tunnel::underlay::Uplink;
use pmd::packet::Batch;
use pmd::pmd::{Pipeline, RxqRef, TxBatches};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
    pub openflow: Vec<Option<Arc<OfBridgeDp>>>,
    /// Per bridge: fail_mode secure with controllers, and no OpenFlow
    /// pipeline published yet: nothing is forwarded (never NORMAL).
    pub closed: Vec<bool>,
    /// Per port slot: the underlay stack of an uplink (a port with
    /// addresses), which sees its batches before its bridge does.
    pub uplinks: Vec<Option<Arc<Uplink>>>,
}

/// Frames for PMD thread 0 from the control thread (ARP requests, frames
/// that waited for a neighbour) and from tunnel ports (ICMP for frames
/// too big).
pub type Inject = std::sync::mpsc::Receiver<super::tunnel::Injected>;

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
    openflow: Vec<Option<Arc<OfBridgeDp>>>,
    closed: Vec<bool>,
    /// PACKET_OUTs to run (PMD thread 0 only).
    packet_outs: Option<std::sync::mpsc::Receiver<PacketOutReq>>,
    /// Frames from the control thread (PMD thread 0 only).
    inject: Option<Inject>,
    uplinks: Vec<Option<Arc<Uplink>>>,
    /// Decapsulated frames of one received batch, by tunnel slot (room
    /// for a batch of distinct tunnels, reserved once).
    decapped: Vec<(usize, Batch)>,
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
            inject: None,
            uplinks: Vec::new(),
            decapped: Vec::with_capacity(pmd::BATCH_SIZE),
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
    /// arrive on `packet_outs` and the control thread's frames on `inject`
    /// (give them to one thread only); `epoch` is the clock flow timeouts
    /// count from; `cache_cfg` sets up the megaflow and exact-match caches.
    pub fn following(
        cell: ViewCell,
        pmd: usize,
        packet_outs: Option<std::sync::mpsc::Receiver<PacketOutReq>>,
        inject: Option<Inject>,
        epoch: std::time::Instant,
        cache_cfg: ofproto::megaflow::CacheConfig,
    ) -> BridgeDispatch {
        let mut d = BridgeDispatch {
            by_port: Vec::new(),
            xconnect: Vec::new(),
            openflow: Vec::new(),
            closed: Vec::new(),
            packet_outs,
            inject,
            uplinks: Vec::new(),
            decapped: Vec::with_capacity(pmd::BATCH_SIZE),
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

impl BridgeDispatch {
    /// Sends or receives what was injected (a batch's worth per turn).
    fn run_injected(&mut self, tx: &mut TxBatches) {
        use super::tunnel::Injected;
        let mut b = Batch::new();
        for _ in 0..pmd::BATCH_SIZE {
            let Some(Ok(i)) = self.inject.as_ref().map(std::sync::mpsc::Receiver::try_recv) else { break };
            match i {
                Injected::Tx(slot, p) => tx.send(slot, p),
                Injected::Rx(slot, p) => {
                    let _ = b.push(p);
                    self.bridge(&RxqRef { port: slot, queue: 0 }, &mut b, tx);
                    b.clear();
                }
            }
        }
    }

    /// Runs a batch from an uplink through its underlay stack, the
    /// decapsulated frames through their tunnel ports' bridges; what is
    /// left goes to the uplink's bridge.
    #[inline]
    fn underlay(&mut self, ul: &Uplink, rxq: &RxqRef, batch: &mut Batch, tx: &mut TxBatches) {
        let mut decapped = std::mem::take(&mut self.decapped);
        ul.receive(self.pmd, batch, tx, &mut decapped);
        for (slot, b) in &mut decapped {
            self.bridge(&RxqRef { port: *slot, queue: rxq.queue }, b, tx);
            b.clear();
        }
        decapped.clear();
        self.decapped = decapped;
    }
}

impl Pipeline for BridgeDispatch {
    #[inline]
    fn process(&mut self, rxq: &RxqRef, batch: &mut Batch, tx: &mut TxBatches) {
        if let Some(Some(ul)) = self.uplinks.get(rxq.port) {
            let ul = ul.clone();
            self.underlay(&ul, rxq, batch, tx);
            if batch.is_empty() {
                return;
            }
        }
        self.bridge(rxq, batch, tx);
    }

    fn poll(&mut self, tx: &mut TxBatches) {
        self.poll_caches(tx);
    }

    fn reconfigure(&mut self) {
        self.follow_view();
    }
}

impl BridgeDispatch {
    /// Runs a batch received on (or decapsulated for) slot `rxq.port`
    /// through its bridge's pipeline.
    #[inline]
    fn bridge(&mut self, rxq: &RxqRef, batch: &mut Batch, tx: &mut TxBatches) {
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

    fn poll_caches(&mut self, tx: &mut TxBatches) {
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
        if self.inject.is_some() {
            self.run_injected(tx);
        }
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

    fn follow_view(&mut self) {
        self.answer_dumps();
        let Some(cell) = &self.cell else { return };
        let view = cell.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        self.by_port.clone_from(&view.by_port);
        self.uplinks.clone_from(&view.uplinks);
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
