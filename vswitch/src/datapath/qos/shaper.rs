//! A port's scheduler on its PMD thread ([`pmd::capture::Shaper`]): every
//! PMD thread hands its batches for the port to a lock-free ring; the
//! owner takes them in, classes each frame (OpenFlow `set_queue`, then the
//! port it came in on, then the default class; within the class by DSCP,
//! then PCP), queues it in the [`Scheduler`] and sends what the scheduler
//! lets out.
//!
//! The scheduler sits behind a mutex that only the owner takes on the fast
//! path (`try_lock` once per loop iteration, never contended but for the
//! control thread's rare reads and changes); a change of settings is built
//! on the control thread and adopted under the lock with every queued frame
//! kept.

use super::policer::{colour_of_dscp, dscp_pcp, Colour};
use super::sched::{Aqm, ClassSpec, ClassStats, Frame, QueueSpec, SchedSpec, Scheduler, DROP_REASONS};
use pmd::ring::PacketRing;
use pmd::{Batch, Packet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many frames ahead of its queueing a frame's slot is prefetched.
const SLOT_AHEAD: usize = 16;
/// How many frames behind its header a sent frame's data is prefetched.
const DATA_BEHIND: usize = 8;
/// Frames the hand-over ring holds: it only covers the time between a PMD
/// thread's hand-over and the owner's next intake (the scheduler's queues
/// are the buffer); a longer ring would hold frames long enough to leave
/// the cache. A full ring drops, counted as hand-over drops.
const HANDOVER_RING: u32 = 1024;

impl Frame for Packet {
    #[inline]
    fn bytes(&self) -> u32 {
        u32::try_from(self.len()).unwrap_or(u32::MAX)
    }
}

/// How frames find their class and queue.
#[derive(Debug, Clone, Default)]
pub struct Classes {
    /// (OpenFlow queue id, class index), sorted.
    by_queue: Vec<(u32, u16)>,
    /// Class index + 1 by queue id, when the ids are below 65,536 (0:
    /// none); else `by_queue` is searched.
    by_id: Vec<u16>,
    /// Class index + 1 by receiving port slot (0: none).
    by_slot: Vec<u16>,
    default: usize,
    /// Per class: queue by DSCP (0xff: none), queue by PCP, default queue,
    /// whether any queue is WRED (colours needed).
    maps: Vec<([u8; 64], [u8; 8], u8, bool)>,
    /// Per class: whether the frame's headers choose its queue or colour,
    /// and its default queue (apart from `maps`: most classes need only
    /// these).
    parse: Vec<(bool, u8)>,
}

/// A shaper's settings made from the configuration: the scheduler's
/// spec, and its classification.
#[derive(Debug, Clone)]
pub struct ShaperSpec {
    /// The scheduler's.
    pub sched: SchedSpec,
    /// The classification.
    pub classes: Classes,
}

/// The shaper of port `p` (bits become bytes), `slot_of` giving the port
/// slot of a port's name.
pub fn spec_of(p: &config::Port, slot_of: &dyn Fn(&str) -> Option<usize>) -> Option<ShaperSpec> {
    let s = p.shaper.as_ref()?;
    let classes = config::qos::classes_of(s);
    let mut cls = Classes::default();
    let mut specs = Vec::with_capacity(classes.len());
    for (ci, c) in classes.iter().enumerate() {
        let idx = u16::try_from(ci).unwrap_or(u16::MAX);
        cls.by_queue.push((c.id, idx));
        for name in &c.in_ports {
            if let Some(slot) = slot_of(name) {
                if cls.by_slot.len() <= slot + 1 {
                    cls.by_slot.resize(slot + 2, 0);
                }
                cls.by_slot[slot + 1] = idx + 1;
            }
        }
        if s.default_class == Some(c.id) {
            cls.default = ci;
        }
        let queues = config::qos::queues_of(c);
        let mut dscp = [0xffu8; 64];
        let mut pcp = [0xffu8; 8];
        let mut default = u8::try_from(queues.len() - 1).unwrap_or(0);
        let mut wred = false;
        let mut qspecs = Vec::with_capacity(queues.len());
        for (qi, q) in queues.iter().enumerate() {
            let qi8 = u8::try_from(qi).unwrap_or(0);
            for d in &q.dscp {
                dscp[usize::from(*d & 63)] = qi8;
            }
            for v in &q.pcp {
                pcp[usize::from(*v & 7)] = qi8;
            }
            if q.dscp.is_empty() && q.pcp.is_empty() {
                default = default.min(qi8);
            }
            let (depth, depth_bytes) = config::qos::queue_depth(p, q);
            let (min, max, pr) = config::qos::red_of(p, q);
            wred |= q.aqm == config::Aqm::Wred;
            qspecs.push(QueueSpec {
                priority: q.priority,
                weight: q.weight,
                depth,
                depth_bytes,
                aqm: match q.aqm {
                    config::Aqm::Tail => Aqm::Tail,
                    a => Aqm::Red { min, max, max_p: pr * 10_000, weighted: a == config::Aqm::Wred },
                },
            });
        }
        cls.parse.push((wred || dscp.iter().chain(&pcp).any(|q| *q != 0xff), default));
        cls.maps.push((dscp, pcp, default, wred));
        let ceil = config::qos::class_ceil(s, c);
        specs.push(ClassSpec {
            id: c.id,
            rate: c.rate / 8,
            burst: config::qos::shaper_burst(p, c.rate, c.burst) / 8,
            ceil: ceil / 8,
            cburst: config::qos::shaper_burst(p, ceil, c.cburst.or(c.burst)) / 8,
            queues: qspecs,
        });
    }
    cls.by_queue.sort_unstable();
    if let Some(&(max, _)) = cls.by_queue.last().filter(|(max, _)| *max < 1 << 16) {
        cls.by_id = vec![0; max as usize + 1];
        for &(id, idx) in &cls.by_queue {
            cls.by_id[id as usize] = idx + 1;
        }
    }
    let depths: u64 = specs.iter().flat_map(|c| &c.queues).map(|q| u64::from(q.depth)).sum();
    Some(ShaperSpec {
        sched: SchedSpec {
            rate: s.rate / 8,
            burst: config::qos::shaper_burst(p, s.rate, s.burst) / 8,
            limit: s.limit.map_or(depths, u64::from),
            classes: specs,
        },
        classes: cls,
    })
}

impl Classes {
    /// The class and queue of frame `f`, and its drop precedence.
    #[inline]
    fn of(&self, f: &Packet) -> (usize, usize, Colour) {
        let m = f.meta();
        let mut class = self.default;
        if m.queue != 0 {
            let id = m.queue - 1;
            if !self.by_id.is_empty() {
                if let Some(&c) = self.by_id.get(id as usize).filter(|c| **c != 0) {
                    class = usize::from(c - 1);
                }
            } else if let Ok(k) = self.by_queue.binary_search_by_key(&id, |e| e.0) {
                class = usize::from(self.by_queue[k].1);
            }
        } else if let Some(&c) = self.by_slot.get(usize::from(m.rx_slot)).filter(|c| **c != 0) {
            class = usize::from(c - 1);
        }
        let (parse, default) = self.parse[class];
        if !parse {
            return (class, usize::from(default), Colour::Green);
        }
        let (dscp_map, pcp_map, _, wred) = &self.maps[class];
        let d = f.data();
        let mut queue = default;
        // The headers are read once, for the queue and the colour.
        let (dscp, tci) = dscp_pcp(d);
        if let Some(q) = dscp.map(|x| dscp_map[usize::from(x)]).filter(|q| *q != 0xff) {
            queue = q;
        } else if let Some(q) = tci.map(|p| pcp_map[usize::from(p)]).filter(|q| *q != 0xff) {
            queue = q;
        }
        // (A tagged frame is green, as the colour-aware policers take it.)
        let colour = match (wred, dscp, tci) {
            (true, Some(x), None) => colour_of_dscp(x),
            _ => Colour::Green,
        };
        (class, usize::from(queue), colour)
    }
}

struct Inner {
    sched: Scheduler<Packet>,
    classes: Classes,
    /// What the port refused last time: sent first.
    pending: Batch,
    /// Taken from the ring, being classed.
    taken: Batch,
    /// Per class: bytes at the last rate sample, and the rate (bytes/s).
    rates: Vec<(u64, u64)>,
    last_sample: u64,
}

/// A shaped port's scheduler and its hand-over ring.
pub struct PortShaper {
    ring: PacketRing,
    owner: usize,
    inner: Mutex<Inner>,
    /// Frames the ring refused (their class is not known there).
    handoff_drops: AtomicU64,
    /// Frames dropped with classes a change removed.
    removed_drops: AtomicU64,
}

impl std::fmt::Debug for PortShaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortShaper").field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// Rates are sampled this often (ns).
const SAMPLE_NS: u64 = 100_000_000;

impl PortShaper {
    /// A shaper for `spec` run by PMD thread `owner`.
    pub fn new(eal: &pmd::Eal, name: &str, spec: ShaperSpec, owner: usize) -> Result<PortShaper, pmd::Error> {
        let n = spec.sched.classes.len();
        Ok(PortShaper {
            ring: PacketRing::new(eal, &format!("shp-{name}"), HANDOVER_RING)?,
            owner,
            inner: Mutex::new(Inner {
                sched: Scheduler::new(&spec.sched, super::now_ns()),
                classes: spec.classes,
                pending: Batch::new(),
                taken: Batch::new(),
                rates: vec![(0, 0); n],
                last_sample: super::now_ns(),
            }),
            handoff_drops: AtomicU64::new(0),
            removed_drops: AtomicU64::new(0),
        })
    }

    /// Adopts new settings: the scheduler is built here (on the caller's
    /// thread), then swapped in under the lock with every queued frame of
    /// a class that stays; returns frames dropped with classes removed.
    pub fn reconfigure(&self, spec: ShaperSpec) -> u64 {
        let now = super::now_ns();
        let mut new = Scheduler::new(&spec.sched, now);
        let n = spec.sched.classes.len();
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lost = 0;
        new.adopt(&mut g.sched, now, &mut |_| lost += 1);
        let old_rates: Vec<(u32, (u64, u64))> = g.sched.class_ids().zip(g.rates.iter().copied()).collect();
        g.rates =
            new.class_ids().map(|id| old_rates.iter().find(|(o, _)| *o == id).map_or((0, 0), |(_, r)| *r)).collect();
        g.rates.resize(n, (0, 0));
        g.sched = new;
        g.classes = spec.classes;
        self.removed_drops.fetch_add(lost, Ordering::Relaxed);
        lost
    }

    /// What the shaper shows: per class its settings, counters, rate,
    /// depth and delays; the frames lost on hand-over.
    pub fn snapshot(&self) -> ShaperSnapshot {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let classes = (0..g.rates.len())
            .map(|i| ClassSnapshot {
                spec: g.sched.class_spec(i).clone(),
                stats: g.sched.stats(i),
                rate: g.rates[i].1,
                depth: g.sched.depth(i),
            })
            .collect();
        ShaperSnapshot {
            classes,
            handoff_drops: self.handoff_drops.load(Ordering::Relaxed),
            removed_drops: self.removed_drops.load(Ordering::Relaxed),
            ring: self.ring.len(),
            limit: g.sched.limit(),
            queued: g.sched.backlog().0,
        }
    }

    fn sample(g: &mut Inner, now: u64) {
        let dt = now.saturating_sub(g.last_sample);
        if dt < SAMPLE_NS {
            return;
        }
        for i in 0..g.rates.len() {
            let bytes = g.sched.bytes_sent(i);
            let (last, rate) = g.rates[i];
            let inst = u64::try_from(u128::from(bytes - last) * 1_000_000_000 / u128::from(dt)).unwrap_or(u64::MAX);
            // A moving average over about four samples.
            g.rates[i] = (bytes, if rate == 0 { inst } else { (rate * 3 + inst) / 4 });
        }
        g.last_sample = now;
    }
}

/// A class as `qos-show` reports it.
#[derive(Debug, Clone)]
pub struct ClassSnapshot {
    /// Settings (bytes).
    pub spec: ClassSpec,
    /// Counters.
    pub stats: ClassStats,
    /// Rate achieved lately, bytes per second.
    pub rate: u64,
    /// Per queue: packets and bytes queued.
    pub depth: Vec<(usize, u64)>,
}

/// A shaper as `qos-show` reports it.
#[derive(Debug, Clone)]
pub struct ShaperSnapshot {
    /// The classes.
    pub classes: Vec<ClassSnapshot>,
    /// Frames lost handing over to the scheduler's thread (ring full).
    pub handoff_drops: u64,
    /// Frames dropped with classes a change removed.
    pub removed_drops: u64,
    /// Frames in the ring now.
    pub ring: usize,
    /// Frames the scheduler holds at most, and now.
    pub limit: u64,
    /// Frames queued now.
    pub queued: u64,
}

/// Names of the drop reasons, in counter order.
pub fn drop_reasons() -> &'static [&'static str] {
    &DROP_REASONS
}

impl pmd::capture::Shaper for PortShaper {
    #[inline]
    fn hand_over(&self, _pmd: usize, batch: &mut Batch) {
        self.ring.enqueue(batch);
        if !batch.is_empty() {
            self.handoff_drops.fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
        }
    }

    fn owner(&self) -> usize {
        self.owner
    }

    #[inline]
    fn run(&self, out: &mut Batch) {
        let Ok(mut g) = self.inner.try_lock() else { return };
        let g = &mut *g;
        if !g.pending.is_empty() {
            out.append(&mut g.pending);
            return;
        }
        if g.sched.backlog().0 == 0 && self.ring.is_empty() {
            return;
        }
        let now = super::now_ns();
        // Take in what was handed over (a bounded amount per run).
        for _ in 0..8 {
            if self.ring.dequeue(&mut g.taken) == 0 {
                break;
            }
            // Classed first, what each frame's queueing touches loaded
            // meanwhile (its class and queue); then queued, the free slot
            // of the queue a few frames ahead loaded meanwhile (its place
            // is in the queue, in by then).
            let mut classed = [(0usize, 0usize, Colour::Green); pmd::BATCH_SIZE];
            let n = g.taken.len();
            for (k, f) in g.taken.as_slice().iter().enumerate() {
                classed[k] = g.classes.of(f);
                g.sched.prefetch(classed[k].0, classed[k].1);
            }
            for &(c, q, _) in &classed[..n.min(SLOT_AHEAD)] {
                g.sched.prefetch_slot(c, q);
            }
            for (k, f) in g.taken.drain().enumerate() {
                if let Some(&(c, q, _)) = classed[..n].get(k + SLOT_AHEAD) {
                    g.sched.prefetch_slot(c, q);
                }
                let (c, q, colour) = classed[k];
                // A refused frame is dropped (freed) here, counted by the
                // scheduler.
                let _ = g.sched.enqueue(c, q, colour, f, now);
            }
        }
        // What leaves has waited: its header starts loading as it leaves
        // the scheduler, its data a few frames later (the port's send reads
        // both, and frees it).
        g.sched.dequeue(now, out.room(), &mut |f| {
            f.prefetch_header();
            if let Some(p) = out.as_slice().len().checked_sub(DATA_BEHIND).and_then(|k| out.as_slice().get(k)) {
                p.prefetch_data();
            }
            let _ = out.push(f);
        });
        let n = out.len();
        for p in &out.as_slice()[n.saturating_sub(DATA_BEHIND)..] {
            p.prefetch_data();
        }
        Self::sample(g, now);
    }

    fn unsent(&self, out: &mut Batch) {
        if let Ok(mut g) = self.inner.lock() {
            g.pending.append(out);
        }
        // (What did not fit is freed with `out`.)
    }
}
