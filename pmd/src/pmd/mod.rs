//! Poll-mode threads.
//!
//! One thread per configured core, pinned there with `core_affinity` and
//! registered with EAL (`rte_thread_register`) so mempool per-lcore caches
//! work for it. Each thread busy-polls the rx queues it owns, hands every
//! non-empty batch to its [`Pipeline`], and flushes its per-port tx batches
//! once per iteration. It counts TSC cycles busy (an iteration that received
//! packets) and idle, packets, batches, and records each busy iteration's
//! duration in an hdrhistogram.
//!
//! Rx queues are assigned round-robin at start; [`PmdSet::rebalance`] moves
//! them by measured busy cycles (greedy: heaviest queue to the least loaded
//! thread). Each thread polls a private list of its queues, rebuilt only
//! when the set's generation number changes, so the fast path reads one
//! atomic per iteration and takes no lock. A move:
//!
//! 1. the control thread stores `owner = NONE` for the queue, bumps the
//!    generation (Release) and waits until the old owner acknowledges it
//!    (`seen_gen`, Acquire). The owner loads the generation with Acquire at
//!    the top of an iteration, so the rebuilt list it polls from then on
//!    was read after the `NONE` store and no longer holds the queue; the
//!    acknowledgement is stored (Release) only after that rebuild;
//! 2. it stores the new owner and bumps the generation again; the new
//!    owner picks the queue up at its next iteration.
//!
//! Packets wait in the NIC ring meanwhile; none is lost or reordered.
//!
//! Ports come and go at run time. The ports and their rx queues form one
//! [`Topology`] snapshot, published under a mutex the PMD threads take only
//! when the generation changed (never per packet). Ports live in slots: a
//! port keeps its slot (the `port` of [`RxqRef`] and of
//! [`TxBatches::send`]) for its whole life, and a removed port leaves an
//! empty slot behind. [`PmdSet::add_port`] publishes a snapshot with the
//! new port and its queues already assigned; [`PmdSet::remove_port`]
//! publishes one without it and waits until every thread acknowledged the
//! generation: from then on no thread polls the port or holds packets for
//! it (pending tx batches are flushed to the old port first), so the
//! caller may close it. Threads serving other ports go on untouched.

mod thread;

use thread::pmd_main;
pub use thread::TxBatches;

use crate::capture::PortTaps;
use crate::packet::Batch;
use crate::port::Port;
use crate::{tsc_hz, Error};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Owner value of a queue no thread polls.
const NO_OWNER: usize = usize::MAX;

/// What a PMD thread does with each received batch.
pub trait Pipeline: Send + 'static {
    /// Processes one batch received on `rxq`. Packets to send go through
    /// `tx.send`; whatever is left in `batch` afterwards is freed.
    fn process(&mut self, rxq: &RxqRef, batch: &mut Batch, tx: &mut TxBatches);

    /// Called on the PMD thread whenever the set's generation changed
    /// (ports added or removed, [`PmdSet::reconfigure`]), before the thread
    /// acknowledges it: a pipeline that reads configuration published by
    /// the control thread picks up the new one here.
    fn reconfigure(&mut self) {}

    /// Called once per loop iteration, before the tx flush: work that does
    /// not come from an rx queue (packets the control thread hands over).
    /// Keep it cheap: it runs on every iteration, idle ones included.
    fn poll(&mut self, _tx: &mut TxBatches) {}
}

/// A port with no device: what is sent to its slot is handed to
/// [`VirtualPort::transmit`] on the sending PMD thread, once per tx batch,
/// which passes each packet on to a device port's slot (a tunnel port
/// encapsulates and sends through its uplink). It receives nothing by
/// itself: its pipeline feeds it packets under its slot number.
pub trait VirtualPort: Send + Sync + std::fmt::Debug {
    /// Takes a batch sent to the port on PMD thread `pmd`; `out(slot, p)`
    /// queues `p` for a device port's slot. Packets left in `batch` are
    /// freed (the implementation counts why). A packet handed to a
    /// virtual slot through `out` is dropped and counted as sent to a
    /// missing port: virtual ports do not chain.
    fn transmit(&self, pmd: usize, batch: &mut Batch, out: &mut dyn FnMut(usize, crate::Packet));
}

/// The virtual ports by slot.
pub type VirtualSlots = Arc<[Option<Arc<dyn VirtualPort>>]>;

/// The rx queue a batch came from.
#[derive(Debug, Clone, Copy)]
pub struct RxqRef {
    /// The port's slot in the set's port table.
    pub port: usize,
    /// Queue number on that port.
    pub queue: u16,
}

/// One rx queue and its ownership and load counters (shared by every
/// snapshot that holds it, so its counters outlive reconfigurations).
#[derive(Debug)]
struct Rxq {
    port: usize,
    queue: u16,
    owner: AtomicUsize,
    cycles: AtomicU64,
    packets: AtomicU64,
    cycles_at_rebalance: AtomicU64,
}

/// Counters of one PMD thread, written by it alone.
#[derive(Debug, Default)]
#[repr(align(64))]
struct PmdShared {
    /// The thread's kernel id (0 until it runs).
    tid: AtomicU64,
    iterations: AtomicU64,
    seen_gen: AtomicU64,
    running: AtomicBool,
    busy_cycles: AtomicU64,
    idle_cycles: AtomicU64,
    packets: AtomicU64,
    rx_batches: AtomicU64,
    no_port_drops: AtomicU64,
}

/// The ports by slot (an empty slot: a removed port).
pub type PortSlots = Arc<[Option<Arc<Port>>]>;

/// PMD thread settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmdConfig {
    /// One thread per core, pinned there.
    pub cores: Vec<usize>,
    /// Rebalance rx queues by busy cycles this often (None: only on
    /// request).
    pub rebalance_interval: Option<Duration>,
}

/// Statistics of one PMD thread.
#[derive(Debug, Clone, PartialEq)]
pub struct PmdStats {
    /// Index of the thread.
    pub index: usize,
    /// Core it is pinned to.
    pub core: usize,
    /// Loop iterations.
    pub iterations: u64,
    /// TSC cycles of iterations that received packets.
    pub busy_cycles: u64,
    /// TSC cycles of iterations that received nothing.
    pub idle_cycles: u64,
    /// Packets received.
    pub packets: u64,
    /// Non-empty rx bursts.
    pub rx_batches: u64,
    /// Busy share of all cycles, in percent.
    pub busy_pct: f64,
    /// Busy cycles per packet.
    pub cycles_per_packet: f64,
    /// Packets per non-empty burst.
    pub packets_per_batch: f64,
    /// Busy-iteration duration percentiles in microseconds: p50, p99,
    /// p99.9, max.
    pub iteration_us: [f64; 4],
    /// The rx queues it polls, as (port slot, queue).
    pub rxqs: Vec<(usize, u16)>,
    /// Packets dropped because their output port had been removed.
    pub no_port_drops: u64,
}

/// One thread's busy-iteration durations in buckets
/// ([`PmdSet::iteration_histograms`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IterationHistogram {
    /// Iterations that took at most each bound, cumulative.
    pub buckets: Vec<u64>,
    /// Iterations recorded.
    pub count: u64,
    /// Their total duration, seconds.
    pub sum_s: f64,
}

/// The ports and rx queues the threads serve: one published snapshot.
#[derive(Debug)]
struct Topology {
    ports: PortSlots,
    /// Virtual ports by slot (as long as `ports`; a slot holds a device
    /// port, a virtual port or nothing).
    vports: VirtualSlots,
    rxqs: Vec<Arc<Rxq>>,
    /// Capture taps by port slot (as long as `ports`).
    taps: Arc<[PortTaps]>,
}

impl Topology {
    /// A snapshot of `ports` and `rxqs`, keeping `old`'s taps of the
    /// slots that still hold the same port (a new or emptied slot has
    /// none).
    fn with_ports(
        ports: Vec<Option<Arc<Port>>>,
        mut vports: Vec<Option<Arc<dyn VirtualPort>>>,
        rxqs: Vec<Arc<Rxq>>,
        old: Option<&Topology>,
    ) -> Arc<Topology> {
        vports.resize(ports.len(), None);
        let same_vport = |i: usize, v: &Arc<dyn VirtualPort>| {
            old.and_then(|o| o.vports.get(i)).and_then(Option::as_ref).is_some_and(|w| Arc::ptr_eq(v, w))
        };
        let taps = ports
            .iter()
            .enumerate()
            .map(|(i, p)| match (old, p) {
                (Some(o), Some(p)) if o.ports.get(i).and_then(Option::as_ref).is_some_and(|q| Arc::ptr_eq(p, q)) => {
                    o.taps.get(i).cloned().unwrap_or_default()
                }
                (Some(o), None) if vports[i].as_ref().is_some_and(|v| same_vport(i, v)) => {
                    o.taps.get(i).cloned().unwrap_or_default()
                }
                _ => PortTaps::default(),
            })
            .collect();
        Arc::new(Topology { ports: ports.into(), vports: vports.into(), rxqs, taps })
    }
}

struct Shared {
    /// The current snapshot. The control thread replaces it (under the
    /// lock) and then bumps `gen` with Release; a PMD thread that loads a
    /// new `gen` with Acquire takes the lock once and clones the Arc.
    topo: Mutex<Arc<Topology>>,
    gen: AtomicU64,
    stop: AtomicBool,
    pmds: Vec<PmdShared>,
    cores: Vec<usize>,
    hists: Vec<Mutex<Histogram<u64>>>,
    /// Serialises rx-queue moves and port changes (control path only).
    moves: Mutex<()>,
}

impl Shared {
    fn topology(&self) -> Arc<Topology> {
        self.topo.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
    fn publish(&self, t: Arc<Topology>) -> u64 {
        *self.topo.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = t;
        self.gen.fetch_add(1, Ordering::AcqRel) + 1
    }
    /// Waits until every running thread acknowledged generation `g`; the
    /// index of the first that did not within `limit`.
    fn wait_acks(&self, g: u64, limit: Duration) -> Result<(), usize> {
        let deadline = Instant::now() + limit;
        for (i, p) in self.pmds.iter().enumerate() {
            while p.running.load(Ordering::Acquire) && p.seen_gen.load(Ordering::Acquire) < g {
                if Instant::now() >= deadline {
                    return Err(i);
                }
                std::thread::yield_now();
            }
        }
        Ok(())
    }
}

/// The first slot with neither a device nor a virtual port (or a new one).
fn free_slot(t: &Topology) -> usize {
    (0..t.ports.len())
        .find(|&i| t.ports[i].is_none() && t.vports.get(i).is_none_or(Option::is_none))
        .unwrap_or(t.ports.len())
}

/// How long a thread may take to let go of a queue or a port.
const ACK_LIMIT: Duration = Duration::from_secs(5);

/// A set of running PMD threads. Stopping (or dropping) it stops and joins
/// them.
pub struct PmdSet {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    rebalancer: Option<JoinHandle<()>>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("static histogram bounds are valid")
}

fn new_rxq(port: usize, queue: u16, owner: usize) -> Arc<Rxq> {
    Arc::new(Rxq {
        port,
        queue,
        owner: AtomicUsize::new(owner),
        cycles: AtomicU64::new(0),
        packets: AtomicU64::new(0),
        cycles_at_rebalance: AtomicU64::new(0),
    })
}

fn check_txqs(p: &Port, threads: usize) -> Result<(), Error> {
    if usize::from(p.n_txq()) < threads {
        return Err(Error::InvalidOption {
            option: format!("port {}: n_txq", p.name()),
            why: format!("{} tx queues for {threads} PMD threads: each thread needs its own", p.n_txq()),
        });
    }
    Ok(())
}

impl PmdSet {
    /// Starts one thread per core of `cfg`, polling every rx queue of every
    /// port (assigned round-robin; port i in slot i), each running the
    /// pipeline `make_pipeline(thread_index)` returns. Fails, with every
    /// started thread stopped again, when a core cannot be pinned or
    /// registered.
    pub fn start<P: Pipeline>(
        cfg: &PmdConfig,
        ports: Vec<Arc<Port>>,
        mut make_pipeline: impl FnMut(usize) -> P,
    ) -> Result<PmdSet, Error> {
        if cfg.cores.is_empty() {
            return Err(Error::InvalidOption {
                option: "pmd.cores".into(),
                why: "at least one PMD core is needed".into(),
            });
        }
        let available: Vec<usize> =
            core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
        for c in &cfg.cores {
            if !available.is_empty() && !available.contains(c) {
                return Err(Error::InvalidOption {
                    option: "pmd.cores".into(),
                    why: format!("core {c} is not available to this process (available: {available:?})"),
                });
            }
        }
        for p in &ports {
            check_txqs(p, cfg.cores.len())?;
        }
        let n = cfg.cores.len();
        let mut rxqs = Vec::new();
        for (pi, p) in ports.iter().enumerate() {
            for q in 0..p.n_rxq() {
                rxqs.push(new_rxq(pi, q, rxqs.len() % n));
            }
        }
        let shared = Arc::new(Shared {
            topo: Mutex::new(Topology::with_ports(ports.into_iter().map(Some).collect(), Vec::new(), rxqs, None)),
            gen: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            pmds: (0..n).map(|_| PmdShared::default()).collect(),
            cores: cfg.cores.clone(),
            hists: (0..n).map(|_| Mutex::new(new_hist())).collect(),
            moves: Mutex::new(()),
        });
        let mut set = PmdSet { shared: shared.clone(), threads: Vec::new(), rebalancer: None };
        for (idx, &core) in cfg.cores.iter().enumerate() {
            let pipeline = make_pipeline(idx);
            let sh = shared.clone();
            let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
            let h = std::thread::Builder::new()
                .name(format!("pmd{idx}-c{core}"))
                .spawn(move || pmd_main(sh, idx, core, pipeline, ready_tx))
                .map_err(|e| Error::Thread { core, reason: e.to_string() })?;
            set.threads.push(h);
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(Error::Thread { core, reason }),
                Err(_) => return Err(Error::Thread { core, reason: "thread exited during start".into() }),
            }
        }
        if let Some(every) = cfg.rebalance_interval {
            let sh = shared.clone();
            set.rebalancer = Some(
                std::thread::Builder::new()
                    .name("pmd-rebalance".into())
                    .spawn(move || {
                        let mut last = Instant::now();
                        while !sh.stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(50));
                            if last.elapsed() >= every {
                                rebalance(&sh);
                                last = Instant::now();
                            }
                        }
                    })
                    .map_err(|e| Error::Thread { core: 0, reason: e.to_string() })?,
            );
        }
        Ok(set)
    }

    /// Adds a port while the threads run: it takes the first empty slot
    /// (or a new one), and its rx queues go to the threads polling the
    /// fewest queues. `before_publish(slot)` runs before any thread can see
    /// the port, so the caller can publish what its pipelines need to know
    /// about the slot (they pick it up in [`Pipeline::reconfigure`]).
    /// Returns the slot once every thread polls the new table.
    pub fn add_port(&self, port: Arc<Port>, before_publish: impl FnOnce(usize)) -> Result<usize, Error> {
        let sh = &self.shared;
        check_txqs(&port, sh.pmds.len())?;
        let _one_at_a_time = sh.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = sh.topology();
        let mut ports = old.ports.to_vec();
        let slot = free_slot(&old);
        if slot == ports.len() {
            ports.push(None);
        }
        let mut load = vec![0usize; sh.pmds.len()];
        for r in &old.rxqs {
            if let Some(l) = load.get_mut(r.owner.load(Ordering::Relaxed)) {
                *l += 1;
            }
        }
        let mut rxqs = old.rxqs.clone();
        for q in 0..port.n_rxq() {
            let to = (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0);
            load[to] += 1;
            rxqs.push(new_rxq(slot, q, to));
        }
        ports[slot] = Some(port);
        before_publish(slot);
        let g = sh.publish(Topology::with_ports(ports, old.vports.to_vec(), rxqs, Some(&*old)));
        // Not needed for safety (nothing is closed); the caller gets a
        // switch that polls the port when this returns.
        let _ = sh.wait_acks(g, ACK_LIMIT);
        Ok(slot)
    }

    /// Removes the port in `slot` while the threads run and returns it once
    /// no thread polls it or holds packets for it: dropping the returned
    /// port closes it. Threads sending to the slot afterwards drop those
    /// packets (counted as `no_port_drops`). `None` for an empty slot.
    /// When a thread does not acknowledge within 5 s (stuck in its
    /// pipeline) the port is put back and the thread is named in the error.
    pub fn remove_port(&self, slot: usize) -> Result<Option<Arc<Port>>, Error> {
        let sh = &self.shared;
        let _one_at_a_time = sh.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = sh.topology();
        let Some(Some(port)) = old.ports.get(slot).cloned() else { return Ok(None) };
        let mut ports = old.ports.to_vec();
        ports[slot] = None;
        let rxqs: Vec<Arc<Rxq>> = old.rxqs.iter().filter(|r| r.port != slot).cloned().collect();
        let g = sh.publish(Topology::with_ports(ports, old.vports.to_vec(), rxqs, Some(&*old)));
        if let Err(pmd) = sh.wait_acks(g, ACK_LIMIT) {
            sh.publish(old);
            return Err(Error::Thread {
                core: sh.cores[pmd],
                reason: format!("PMD thread {pmd} did not let go of port {} within 5 s; the port stays", port.name()),
            });
        }
        Ok(Some(port))
    }

    /// Adds the virtual port `make(slot)` returns (it takes the first
    /// empty slot, or a new one), with `before_publish(slot)` as in
    /// [`PmdSet::add_port`]; returns its slot once every thread sends
    /// through it.
    pub fn add_virtual(
        &self,
        make: impl FnOnce(usize) -> Arc<dyn VirtualPort>,
        before_publish: impl FnOnce(usize),
    ) -> usize {
        let sh = &self.shared;
        let _one_at_a_time = sh.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = sh.topology();
        let slot = free_slot(&old);
        let mut ports = old.ports.to_vec();
        ports.resize(ports.len().max(slot + 1), None);
        let mut vports = old.vports.to_vec();
        vports.resize(ports.len(), None);
        vports[slot] = Some(make(slot));
        before_publish(slot);
        let g = sh.publish(Topology::with_ports(ports, vports, old.rxqs.clone(), Some(&*old)));
        let _ = sh.wait_acks(g, ACK_LIMIT);
        slot
    }

    /// Replaces the virtual port in `slot` (its taps stay) and returns
    /// once every thread sends through the new one; false for a slot
    /// without a virtual port, or when a thread did not acknowledge within
    /// 5 s (it picks the new one up at its next iteration).
    pub fn set_virtual(&self, slot: usize, vport: Arc<dyn VirtualPort>) -> bool {
        let sh = &self.shared;
        let _one_at_a_time = sh.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = sh.topology();
        if old.vports.get(slot).is_none_or(Option::is_none) {
            return false;
        }
        let mut vports = old.vports.to_vec();
        vports[slot] = Some(vport);
        let topo = Arc::new(Topology {
            ports: old.ports.clone(),
            vports: vports.into(),
            rxqs: old.rxqs.clone(),
            taps: old.taps.clone(),
        });
        let g = sh.publish(topo);
        sh.wait_acks(g, ACK_LIMIT).is_ok()
    }

    /// Removes the virtual port in `slot` and returns once no thread sends
    /// through it (later sends to the slot are dropped as sent to a
    /// missing port); false when a thread did not acknowledge within 5 s.
    pub fn remove_virtual(&self, slot: usize) -> bool {
        let sh = &self.shared;
        let _one_at_a_time = sh.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = sh.topology();
        if old.vports.get(slot).is_none_or(Option::is_none) {
            return true;
        }
        let mut vports = old.vports.to_vec();
        vports[slot] = None;
        let g = sh.publish(Topology::with_ports(old.ports.to_vec(), vports, old.rxqs.clone(), Some(&*old)));
        sh.wait_acks(g, ACK_LIMIT).is_ok()
    }

    /// Sets the capture taps of the port in `slot` (none: capture off)
    /// and returns once every thread copies into the new ones and none
    /// into the old ones. False for an empty slot or when a thread did not
    /// acknowledge within 5 s (the taps are then set anyway: a late thread
    /// picks them up at its next iteration).
    pub fn set_taps(&self, slot: usize, taps: PortTaps) -> bool {
        // The slot's gates stay.
        self.update_taps(slot, |t| PortTaps { rx: taps.rx, tx: taps.tx, ..t.clone() })
    }

    /// Sets the gates of the port in `slot` (its capture taps stay) and
    /// returns once every thread passes batches through the new ones.
    /// False as [`PmdSet::set_taps`].
    pub fn set_gates(
        &self,
        slot: usize,
        rx: Option<Arc<dyn crate::capture::Gate>>,
        tx: Option<Arc<dyn crate::capture::Gate>>,
    ) -> bool {
        self.update_taps(slot, |t| PortTaps { rx_gate: rx, tx_gate: tx, ..t.clone() })
    }

    /// Sets the scheduler of the port in `slot` (None: unshaped) and
    /// returns once every thread hands its batches for the port to it.
    /// False as [`PmdSet::set_taps`].
    pub fn set_shaper(&self, slot: usize, shaper: Option<Arc<dyn crate::capture::Shaper>>) -> bool {
        self.update_taps(slot, |t| PortTaps { shaper, ..t.clone() })
    }

    /// Replaces the [`PortTaps`] of `slot` with `f` of them, publishes and
    /// waits for the threads.
    fn update_taps(&self, slot: usize, f: impl FnOnce(&PortTaps) -> PortTaps) -> bool {
        let sh = &self.shared;
        let _one_at_a_time = sh.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = sh.topology();
        if old.ports.get(slot).is_none_or(Option::is_none) && old.vports.get(slot).is_none_or(Option::is_none) {
            return false;
        }
        let mut all = old.taps.to_vec();
        all[slot] = f(&all[slot]);
        let topo = Arc::new(Topology {
            ports: old.ports.clone(),
            vports: old.vports.clone(),
            rxqs: old.rxqs.clone(),
            taps: all.into(),
        });
        let g = sh.publish(topo);
        sh.wait_acks(g, ACK_LIMIT).is_ok()
    }

    /// Bumps the generation and waits until every thread ran
    /// [`Pipeline::reconfigure`]: after a caller published new pipeline
    /// configuration, no packet is handled by the old one once this
    /// returns. False when a thread did not acknowledge within 5 s.
    pub fn reconfigure(&self) -> bool {
        let sh = &self.shared;
        let _one_at_a_time = sh.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let g = sh.gen.fetch_add(1, Ordering::AcqRel) + 1;
        sh.wait_acks(g, ACK_LIMIT).is_ok()
    }

    /// Moves rx queues between threads by busy cycles since the last
    /// rebalance. Returns the moves as (port slot, queue, from, to).
    pub fn rebalance(&self) -> Vec<(usize, u16, usize, usize)> {
        rebalance(&self.shared)
    }

    /// Assigns one rx queue to thread `to` (for operators and tests); false
    /// for an unknown queue or thread, or when the current owner did not let
    /// go within 5 s.
    pub fn assign(&self, port: usize, queue: u16, to: usize) -> bool {
        let sh = &self.shared;
        if to >= sh.pmds.len() {
            return false;
        }
        let _one_at_a_time = sh.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let topo = sh.topology();
        match topo.rxqs.iter().find(|r| r.port == port && r.queue == queue) {
            Some(r) => move_rxq(sh, r, to),
            None => false,
        }
    }

    /// Keeps every other thread of the process off the PMD threads' cores:
    /// the threads running now (the caller's, EAL's) go to the cores the
    /// caller may use less the PMD cores, and the threads they start later
    /// inherit that. A PMD core then runs its PMD thread alone, as on an
    /// isolated core: no control-plane burst (a storm of flow-mods, a
    /// reload) takes its time slices. Returns the cores left to the other
    /// threads; None, with nothing changed, when the PMD threads take
    /// every core the caller may use.
    pub fn keep_others_off_pmd_cores(&self) -> Option<Vec<usize>> {
        let sh = &self.shared;
        let allowed: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
        let others: Vec<usize> = allowed.into_iter().filter(|c| !sh.cores.contains(c)).collect();
        if others.is_empty() {
            return None;
        }
        let pmd_tids: Vec<u64> = sh.pmds.iter().map(|p| p.tid.load(Ordering::Acquire)).collect();
        // SAFETY: cpu_set_t is plain bits; CPU_ZERO/CPU_SET write within it
        // for core ids below CPU_SETSIZE (checked).
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in others.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            // SAFETY: as above.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
            if pmd_tids.contains(&tid) {
                continue;
            }
            let Ok(tid) = libc::pid_t::try_from(tid) else { continue };
            // SAFETY: sets the affinity of one of this process's threads
            // from a valid, initialised set of the right size. A thread
            // that ended meanwhile makes it fail (ESRCH), which is fine.
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        }
        Some(others)
    }

    /// How many threads run.
    pub fn n_threads(&self) -> usize {
        self.shared.pmds.len()
    }

    /// Statistics of every thread.
    pub fn stats(&self) -> Vec<PmdStats> {
        let sh = &self.shared;
        let topo = sh.topology();
        let hz = tsc_hz().max(1) as f64;
        sh.pmds
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let busy = p.busy_cycles.load(Ordering::Relaxed);
                let idle = p.idle_cycles.load(Ordering::Relaxed);
                let pkts = p.packets.load(Ordering::Relaxed);
                let batches = p.rx_batches.load(Ordering::Relaxed);
                let h = sh.hists[i].lock().map(|h| h.clone()).unwrap_or_else(|_| new_hist());
                let us = |c: u64| c as f64 * 1e6 / hz;
                let iteration_us = if h.is_empty() {
                    [0.0; 4]
                } else {
                    [
                        us(h.value_at_quantile(0.5)),
                        us(h.value_at_quantile(0.99)),
                        us(h.value_at_quantile(0.999)),
                        us(h.max()),
                    ]
                };
                PmdStats {
                    index: i,
                    core: sh.cores[i],
                    iterations: p.iterations.load(Ordering::Relaxed),
                    busy_cycles: busy,
                    idle_cycles: idle,
                    packets: pkts,
                    rx_batches: batches,
                    busy_pct: if busy + idle == 0 { 0.0 } else { 100.0 * busy as f64 / (busy + idle) as f64 },
                    cycles_per_packet: if pkts == 0 { 0.0 } else { busy as f64 / pkts as f64 },
                    packets_per_batch: if batches == 0 { 0.0 } else { pkts as f64 / batches as f64 },
                    iteration_us,
                    rxqs: topo
                        .rxqs
                        .iter()
                        .filter(|r| r.owner.load(Ordering::Relaxed) == i)
                        .map(|r| (r.port, r.queue))
                        .collect(),
                    no_port_drops: p.no_port_drops.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Each thread's busy-iteration durations as cumulative counts at
    /// `bounds_s` (seconds, ascending), with their count and sum in
    /// seconds: what a Prometheus histogram holds. Read from the copy the
    /// threads publish every 16,384 iterations (they never wait for it).
    pub fn iteration_histograms(&self, bounds_s: &[f64]) -> Vec<IterationHistogram> {
        let hz = tsc_hz().max(1) as f64;
        self.shared
            .hists
            .iter()
            .map(|h| {
                let h = h.lock().map(|h| h.clone()).unwrap_or_else(|_| new_hist());
                let buckets = bounds_s
                    .iter()
                    .map(|b| {
                        // Bounds below a cycle hold nothing; far beyond
                        // the histogram's range, everything.
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped
                        let cycles = (b * hz).clamp(0.0, 1e18) as u64;
                        if cycles == 0 {
                            0
                        } else {
                            h.count_between(1, cycles)
                        }
                    })
                    .collect();
                IterationHistogram { buckets, count: h.len(), sum_s: h.mean() * h.len() as f64 / hz }
            })
            .collect()
    }

    /// Packets and busy cycles per rx queue, as (port slot, queue, owner,
    /// packets, cycles).
    pub fn rxq_stats(&self) -> Vec<(usize, u16, usize, u64, u64)> {
        self.shared
            .topology()
            .rxqs
            .iter()
            .map(|r| {
                (
                    r.port,
                    r.queue,
                    r.owner.load(Ordering::Relaxed),
                    r.packets.load(Ordering::Relaxed),
                    r.cycles.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The ports the threads poll, by slot (None: an empty slot).
    pub fn ports(&self) -> PortSlots {
        self.shared.topology().ports.clone()
    }

    /// Stops and joins every thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(r) = self.rebalancer.take() {
            let _ = r.join();
        }
    }
}

impl Drop for PmdSet {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Moves rx queue `r` to thread `to`; false when the old owner did not
/// acknowledge in time (the queue then stays where it was). The caller
/// holds `moves`: two moves at once could let a new owner start before the
/// old one let go.
fn move_rxq(sh: &Shared, r: &Rxq, to: usize) -> bool {
    let from = r.owner.swap(NO_OWNER, Ordering::SeqCst);
    if from != NO_OWNER && from != to {
        let g = sh.gen.fetch_add(1, Ordering::AcqRel) + 1;
        let old = &sh.pmds[from];
        let deadline = Instant::now() + ACK_LIMIT;
        while old.running.load(Ordering::Acquire) && old.seen_gen.load(Ordering::Acquire) < g {
            if Instant::now() >= deadline {
                // Stuck in its pipeline: it may still be polling the queue,
                // so giving the queue to another thread is not safe.
                r.owner.store(from, Ordering::SeqCst);
                sh.gen.fetch_add(1, Ordering::AcqRel);
                return false;
            }
            std::thread::yield_now();
        }
    }
    r.owner.store(to, Ordering::SeqCst);
    sh.gen.fetch_add(1, Ordering::AcqRel);
    true
}

fn rebalance(sh: &Shared) -> Vec<(usize, u16, usize, usize)> {
    let n = sh.pmds.len();
    if n < 2 {
        return Vec::new();
    }
    let _one_at_a_time = sh.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let topo = sh.topology();
    // Load of each queue since the last rebalance.
    let mut loads: Vec<(usize, u64)> = topo
        .rxqs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let now = r.cycles.load(Ordering::Relaxed);
            let before = r.cycles_at_rebalance.swap(now, Ordering::Relaxed);
            (i, now.saturating_sub(before))
        })
        .collect();
    loads.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut pmd_load = vec![0u64; n];
    let mut moves = Vec::new();
    for (i, load) in loads {
        let r = &topo.rxqs[i];
        let cur = r.owner.load(Ordering::Relaxed);
        // Least loaded thread; ties keep the current owner (no needless
        // moves).
        let min = *pmd_load.iter().min().unwrap_or(&0);
        let to = if cur < n && pmd_load[cur] == min { cur } else { (0..n).min_by_key(|&p| pmd_load[p]).unwrap_or(0) };
        pmd_load[to] += load.max(1);
        if to != cur && move_rxq(sh, r, to) {
            moves.push((r.port, r.queue, cur, to));
        }
    }
    moves
}
