//! What each PMD thread runs: its loop (the rx queues it owns polled,
//! each burst through its pipeline, capture taps, the counters it alone
//! writes) and its per-port tx batches.

use super::{new_hist, Pipeline, PortSlots, Rxq, RxqRef, Shared, VirtualSlots};
use crate::capture::{Direction, PortTaps, Tap};
use crate::packet::Batch;
use crate::port::Port;
use crate::rdtsc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

/// Per-port tx batches of one PMD thread; flushed once per iteration, or
/// when one fills.
pub struct TxBatches {
    ports: PortSlots,
    /// Virtual ports by slot (empty until the first topology with one).
    vports: VirtualSlots,
    /// A tx capture tap per slot (mostly none).
    taps: Vec<Option<Arc<Tap>>>,
    /// A tx gate per slot (mostly none).
    gates: Vec<Option<Arc<dyn crate::capture::Gate>>>,
    /// A scheduler per slot (mostly none).
    shapers: Vec<Option<Arc<dyn crate::capture::Shaper>>>,
    /// The slots whose scheduler this thread runs.
    owned: Vec<usize>,
    /// What a scheduler lets out, on its way to the port.
    shaped: Batch,
    batches: Vec<Batch>,
    pmd: usize,
    txq: Vec<u16>,
    /// Packets sent to an empty slot (a port removed meanwhile).
    no_port_drops: u64,
}

fn txq_of(p: &Option<Arc<Port>>, pmd: usize) -> u16 {
    p.as_ref().map_or(0, |p| u16::try_from(pmd % usize::from(p.n_txq().max(1))).unwrap_or(0))
}

impl TxBatches {
    pub(super) fn new(ports: PortSlots, pmd: usize) -> TxBatches {
        let txq = ports.iter().map(|p| txq_of(p, pmd)).collect();
        TxBatches {
            vports: Vec::new().into(),
            batches: ports.iter().map(|_| Batch::new()).collect(),
            taps: vec![None; ports.len()],
            gates: vec![None; ports.len()],
            shapers: vec![None; ports.len()],
            owned: Vec::new(),
            shaped: Batch::new(),
            ports,
            pmd,
            txq,
            no_port_drops: 0,
        }
    }

    /// Follows a new port table: what is pending goes to the ports it was
    /// meant for (still open: the control thread closes a removed port
    /// only after this thread acknowledged the change).
    fn set_ports(&mut self, ports: PortSlots, vports: VirtualSlots, taps: &[PortTaps]) {
        self.flush();
        self.vports = vports;
        self.taps = (0..ports.len()).map(|i| taps.get(i).and_then(|t| t.tx.clone())).collect();
        self.gates = (0..ports.len()).map(|i| taps.get(i).and_then(|t| t.tx_gate.clone())).collect();
        self.shapers = (0..ports.len()).map(|i| taps.get(i).and_then(|t| t.shaper.clone())).collect();
        self.owned = (0..ports.len())
            .filter(|&i| self.shapers[i].as_ref().is_some_and(|s| s.owner() == self.pmd) && ports[i].is_some())
            .collect();
        self.txq = ports.iter().map(|p| txq_of(p, self.pmd)).collect();
        self.batches.resize_with(ports.len(), Batch::new);
        self.ports = ports;
    }

    #[inline]
    fn burst(&mut self, slot: usize) {
        if let Some(Some(g)) = self.gates.get(slot) {
            g.admit(self.pmd, &mut self.batches[slot]);
            if self.batches[slot].is_empty() {
                return;
            }
        }
        if let Some(Some(sh)) = self.shapers.get(slot) {
            sh.hand_over(self.pmd, &mut self.batches[slot]);
            return;
        }
        if let Some(Some(vp)) = self.vports.get(slot) {
            let vp = vp.clone();
            let mut b = std::mem::take(&mut self.batches[slot]);
            if let Some(Some(tap)) = self.taps.get(slot) {
                tap.capture(b.as_slice(), Direction::Tx);
            }
            vp.transmit(self.pmd, &mut b, &mut |s, p| self.send_device(s, p));
            return;
        }
        let b = &mut self.batches[slot];
        match &self.ports[slot] {
            Some(port) => {
                if let Some(Some(tap)) = self.taps.get(slot) {
                    tap.capture(b.as_slice(), Direction::Tx);
                }
                port.tx_burst_or_drop(self.txq[slot], b, self.pmd);
            }
            None => {
                self.no_port_drops += b.len() as u64;
                b.clear();
            }
        }
    }

    /// Queues a packet for the port in slot `port`; sends that port's batch
    /// first if it is full. A slot out of range drops the packet (counted
    /// as a drop to a missing port).
    #[inline]
    pub fn send(&mut self, port: usize, p: crate::Packet) {
        let Some(b) = self.batches.get_mut(port) else {
            self.no_port_drops += 1;
            return;
        };
        if b.is_full() {
            self.burst(port);
        }
        let _ = self.batches[port].push(p);
    }

    /// [`TxBatches::send`] for what a virtual port passes on: a device
    /// port's slot only.
    #[inline]
    fn send_device(&mut self, port: usize, p: crate::Packet) {
        if matches!(self.vports.get(port), Some(Some(_))) {
            self.no_port_drops += 1;
            return;
        }
        self.send(port, p);
    }

    /// Moves a whole batch to slot `port`'s tx batch (sending first when it
    /// would not fit).
    #[inline]
    pub fn send_batch(&mut self, port: usize, batch: &mut Batch) {
        let Some(b) = self.batches.get_mut(port) else {
            self.no_port_drops += batch.len() as u64;
            batch.clear();
            return;
        };
        if b.room() < batch.len() {
            self.burst(port);
        }
        self.batches[port].append(batch);
    }

    /// Runs the schedulers this thread owns: each sends what it lets out
    /// now (a few bursts at most); what a port refuses goes back to it.
    #[inline]
    pub fn run_shapers(&mut self) {
        for k in 0..self.owned.len() {
            let slot = self.owned[k];
            let (Some(Some(sh)), Some(Some(port))) = (self.shapers.get(slot), self.ports.get(slot)) else { continue };
            for _ in 0..4 {
                sh.run(&mut self.shaped);
                if self.shaped.is_empty() {
                    break;
                }
                let n = self.shaped.len();
                if let Some(Some(tap)) = self.taps.get(slot) {
                    // (A frame the port refuses is captured again when
                    // it is sent.)
                    tap.capture(self.shaped.as_slice(), Direction::Tx);
                }
                let sent = port.tx_burst(self.txq[slot], &mut self.shaped);
                if sent < n {
                    sh.unsent(&mut self.shaped);
                    break;
                }
                if n < crate::BATCH_SIZE {
                    // It let out less than a burst: nothing more for now.
                    break;
                }
            }
        }
    }

    /// Whether some port here is shaped (received frames are then stamped
    /// with their port).
    pub fn any_shaped(&self) -> bool {
        self.shapers.iter().any(Option::is_some)
    }

    /// The ports, by slot.
    pub fn ports(&self) -> &[Option<Arc<Port>>] {
        &self.ports
    }

    /// This thread's index (for per-PMD counter slots).
    pub fn pmd_index(&self) -> usize {
        self.pmd
    }

    /// Sends every pending batch; what a ring refuses is dropped and
    /// counted.
    #[inline]
    pub fn flush(&mut self) {
        // Virtual ports first: what they pass on leaves in this flush.
        for i in 0..self.vports.len().min(self.batches.len()) {
            if self.vports[i].is_some() && !self.batches[i].is_empty() {
                self.burst(i);
            }
        }
        for i in 0..self.batches.len() {
            if !self.batches[i].is_empty() {
                self.burst(i);
            }
        }
    }
}

pub(super) fn pmd_main<P: Pipeline>(
    sh: Arc<Shared>,
    me: usize,
    core: usize,
    mut pipeline: P,
    ready: mpsc::Sender<Result<(), String>>,
) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        let _ = ready.send(Err(format!("cannot pin to core {core}")));
        return;
    }
    // SAFETY: registers this non-EAL thread with EAL (gives it an lcore id
    // for mempool caches); called once, unregistered before exit.
    if unsafe { dpdk_sys::rte_thread_register() } != 0 {
        let _ = ready.send(Err(format!("rte_thread_register: {}", crate::error::rte_errno_str())));
        return;
    }
    // SAFETY: gettid(2) has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    sh.pmds[me].tid.store(u64::try_from(tid).unwrap_or(0), Ordering::Release);
    // Before `ready`: a queue move right after start must wait for us.
    sh.pmds[me].running.store(true, Ordering::Release);
    let _ = ready.send(Ok(()));
    drop(ready);

    let stats = &sh.pmds[me];
    let mut topo = sh.topology();
    let mut tx = TxBatches::new(topo.ports.clone(), me);
    let mut batch = Batch::new();
    // The queues this thread polls: each with its port, rx capture tap and
    // rx gate.
    type Polled = (Arc<Rxq>, Arc<Port>, Option<Arc<Tap>>, Option<Arc<dyn crate::capture::Gate>>);
    let mut local: Vec<Polled> = Vec::new();
    let mut local_gen = 0u64;
    let mut stamp = false;
    let mut hist = new_hist();
    let (mut busy, mut idle, mut pkts, mut batches, mut iters) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut last_publish = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        let g = sh.gen.load(Ordering::Acquire);
        if g != local_gen {
            // The snapshot read now was published before `g` (publish
            // stores it, then bumps with Release), so it is at least as
            // new as the change being acknowledged.
            topo = sh.topology();
            local.clear();
            local.extend(topo.rxqs.iter().filter(|r| r.owner.load(Ordering::Relaxed) == me).filter_map(|r| {
                let tap = topo.taps.get(r.port).and_then(|t| t.rx.clone());
                let gate = topo.taps.get(r.port).and_then(|t| t.rx_gate.clone());
                topo.ports.get(r.port).and_then(Clone::clone).map(|p| (r.clone(), p, tap, gate))
            }));
            tx.set_ports(topo.ports.clone(), topo.vports.clone(), &topo.taps);
            stamp = tx.any_shaped();
            pipeline.reconfigure();
            local_gen = g;
            // Only now is every removed queue out of `local`, and every
            // packet for a removed port sent or dropped.
            stats.seen_gen.store(g, Ordering::Release);
        }
        let t0 = rdtsc();
        let mut ts = t0;
        let mut got = 0usize;
        for (rxq, port, tap, gate) in &local {
            let n = port.rx_burst(rxq.queue, &mut batch);
            if n == 0 {
                continue;
            }
            if let Some(g) = gate {
                g.admit(me, &mut batch);
                if batch.is_empty() {
                    continue;
                }
            }
            if let Some(tap) = tap {
                tap.capture(batch.as_slice(), Direction::Rx);
            }
            if stamp {
                let slot = u16::try_from(rxq.port + 1).unwrap_or(0);
                for p in batch.as_mut_slice() {
                    let m = p.meta_mut();
                    m.rx_slot = slot;
                    m.queue = 0;
                }
            }
            got += n;
            batches += 1;
            pipeline.process(&RxqRef { port: rxq.port, queue: rxq.queue }, &mut batch, &mut tx);
            batch.clear();
            let te = rdtsc();
            // Single writer per queue at a time (the hand-off above orders
            // owners), so plain load + store.
            rxq.cycles.store(rxq.cycles.load(Ordering::Relaxed) + (te - ts), Ordering::Relaxed);
            rxq.packets.store(rxq.packets.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
            ts = te;
        }
        pipeline.poll(&mut tx);
        tx.flush();
        tx.run_shapers();
        let dt = rdtsc() - t0;
        if got > 0 {
            busy += dt;
            pkts += got as u64;
            let _ = hist.record(dt.max(1));
        } else {
            idle += dt;
        }
        iters += 1;
        // Counters: plain stores by their only writer, read by anyone.
        stats.busy_cycles.store(busy, Ordering::Relaxed);
        stats.idle_cycles.store(idle, Ordering::Relaxed);
        stats.packets.store(pkts, Ordering::Relaxed);
        stats.rx_batches.store(batches, Ordering::Relaxed);
        stats.iterations.store(iters, Ordering::Relaxed);
        stats.no_port_drops.store(tx.no_port_drops, Ordering::Relaxed);
        if iters - last_publish >= 1 << 14 {
            if let Ok(mut h) = sh.hists[me].try_lock() {
                let _ = h.add(&hist);
                hist.reset();
                last_publish = iters;
            }
        }
    }
    tx.flush();
    if let Ok(mut h) = sh.hists[me].lock() {
        let _ = h.add(&hist);
    }
    drop(local);
    drop(tx);
    drop(topo);
    stats.running.store(false, Ordering::Release);
    drop(pipeline);
    // SAFETY: this thread registered itself above.
    unsafe { dpdk_sys::rte_thread_unregister() };
}
