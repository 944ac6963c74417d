//! A port's egress scheduler: a hierarchy of port -> classes -> queues, in
//! the manner of Linux HTB, run by one thread.
//!
//! - The port has a token bucket at its rate: nothing leaves beyond it.
//! - Each class has two buckets: its guaranteed rate and its ceiling. A
//!   backlogged class whose guarantee has tokens is *green* and is served
//!   before any other; one whose guarantee is spent but whose ceiling is
//!   not is *yellow* and borrows what green classes leave, shared among
//!   yellow classes in proportion to their guarantees (deficit round robin
//!   with quanta proportional to the rates); one whose ceiling is spent
//!   *waits* until the time its bucket refills. Sending debits the ceiling
//!   (and, when green, the guarantee); a bucket may run one frame into
//!   debt, so rates hold to the byte on average without looking at the
//!   next frame's size.
//! - Within a class, queues are served by strict priority, and queues of
//!   one priority by deficit round robin on their weights. Each queue has
//!   a depth in packets and bytes (tail drop) and optionally RED or WRED
//!   (per-colour thresholds) on its averaged depth.
//!
//! Green and yellow classes sit on two intrusive lists; waiting ones (and
//! yellow ones due for promotion) as timed events in a heap, so a dequeue
//! costs O(log classes) whatever the number of classes, and nothing is
//! allocated after construction: queues, lists and heap are sized then.
//! Everything here is single-threaded; [`super::shaper`] puts it on its
//! PMD thread.

use super::fifo::{self, Fifo, Slot};
use super::policer::Colour;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Token units per byte: buckets hold byte-nanoseconds, so a refill is
/// `rate (bytes/s) * elapsed (ns)`, exact.
const NB: i64 = 1_000_000_000;
/// No class (list end).
const NIL: u32 = u32::MAX;
/// The smallest round-robin quantum, in bytes.
const MIN_QUANTUM: i64 = 2048;
/// The largest one (a class with more than 512 times the smallest
/// guarantee gets no larger share of the excess than 512 times).
const MAX_QUANTUM: i64 = MIN_QUANTUM * 512;
/// Queues per class at most.
pub const MAX_QUEUES: usize = 8;
/// Classes per port at most.
pub const MAX_CLASSES: usize = 65_536;

/// Active queue management of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aqm {
    /// Drop only when the queue is full.
    Tail,
    /// Random early detection on the averaged depth (packets): no drop
    /// below `min`, probability rising linearly to `max_p` (parts per
    /// million) at `max`, all dropped above. With `weighted`, yellow frames
    /// (by DSCP drop precedence) use thresholds at 3/4 and red ones at 1/2.
    Red {
        /// Lower threshold, packets.
        min: u32,
        /// Upper threshold, packets.
        max: u32,
        /// Drop probability at `max`, per million.
        max_p: u32,
        /// Per-colour thresholds (WRED).
        weighted: bool,
    },
}

/// A queue's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSpec {
    /// Lower is served first; queues of one priority share by weight.
    pub priority: u8,
    /// Share among queues of its priority.
    pub weight: u32,
    /// Packets it holds at most.
    pub depth: u32,
    /// Bytes it holds at most.
    pub depth_bytes: u64,
    /// Drop policy.
    pub aqm: Aqm,
}

/// A class's settings (rates in bytes per second, bursts in bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassSpec {
    /// Its number (the OpenFlow queue id that `set_queue` names).
    pub id: u32,
    /// Guaranteed rate (may be 0: only borrows).
    pub rate: u64,
    /// Guarantee bucket size.
    pub burst: u64,
    /// Ceiling rate (at least `rate`).
    pub ceil: u64,
    /// Ceiling bucket size.
    pub cburst: u64,
    /// Its queues, in configuration order (at least one).
    pub queues: Vec<QueueSpec>,
}

/// A port scheduler's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedSpec {
    /// The port's rate, bytes per second.
    pub rate: u64,
    /// The port's bucket, bytes.
    pub burst: u64,
    /// Frames queued in all classes at most (the mbufs a port may hold:
    /// queues deeper than the pool would starve the other ports).
    pub limit: u64,
    /// The classes.
    pub classes: Vec<ClassSpec>,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Its queue was full (packets or bytes).
    Full = 0,
    /// RED or WRED chose it.
    Early = 1,
    /// The port's scheduler held its limit of frames in all.
    Limit = 2,
}

/// Drop reasons, in [`Drop`] order.
pub const DROP_REASONS: [&str; 3] = ["queue_full", "early", "port_limit"];

/// Queueing delay histogram buckets: bucket `i` holds delays below
/// `2^(i/2)` microseconds' worth of nanoseconds (`delay_bucket_ns`).
pub const DELAY_BUCKETS: usize = 48;

/// The upper bound of delay bucket `i`, in nanoseconds.
pub fn delay_bucket_ns(i: usize) -> u64 {
    // 2^(i/2) * 1000 ns, with odd i at sqrt(2) times the even one below.
    let base = 1000u64 << (i / 2);
    if i % 2 == 1 {
        base * 1414 / 1000
    } else {
        base
    }
}

#[inline]
fn delay_bucket(ns: u64) -> usize {
    let us = ns / 1000;
    if us == 0 {
        return 0;
    }
    // In [1000 << l, 1000 << (l + 1)): bucket 2l + 1 below sqrt(2) of the
    // way, 2l + 2 above.
    let l = 63 - us.leading_zeros() as usize;
    let i = if ns < (1000u64 << l) * 1414 / 1000 { 2 * l + 1 } else { 2 * l + 2 };
    i.min(DELAY_BUCKETS - 1)
}

/// A class's counters (written by the scheduler's thread only).
#[derive(Debug, Clone, Default)]
pub struct ClassStats {
    /// Frames sent.
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Bytes sent on the guarantee (green).
    pub green_bytes: u64,
    /// Drops by reason ([`Drop`] order).
    pub drops: [u64; 3],
    /// Queueing delay histogram ([`delay_bucket_ns`]).
    pub delay: Vec<u64>,
}

impl ClassStats {
    /// The delay below which `q` (0-1) of the frames sent were queued, in
    /// nanoseconds (a bucket's upper bound); 0 when none was sent.
    pub fn delay_quantile(&self, q: f64) -> u64 {
        let total: u64 = self.delay.iter().sum();
        if total == 0 {
            return 0;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let want = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.delay.iter().enumerate() {
            seen += n;
            if seen >= want {
                return delay_bucket_ns(i);
            }
        }
        delay_bucket_ns(DELAY_BUCKETS - 1)
    }
}

/// What the scheduler holds: a frame's size is all it needs.
pub trait Frame {
    /// Bytes it costs.
    fn bytes(&self) -> u32;
}

/// What queueing and sending a queue's every frame touches, in one cache
/// line; the rest of it ([`QueueCold`]) is read only for RED and weights.
#[repr(C, align(64))]
struct Queue<T> {
    items: Fifo<T>,
    bytes: u64,
    deficit: i64,
    depth_bytes: u64,
    depth: u32,
    /// Whether its AQM is RED or WRED (else tail drop).
    red: bool,
}

struct QueueCold {
    spec: QueueSpec,
    /// RED's averaged depth, packets in 1/1024ths.
    avg: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: i64,
    cap: i64,
    rate: u64,
}

impl Bucket {
    fn new(rate: u64, burst: u64) -> Bucket {
        let cap = i64::try_from(u128::from(burst) * NB as u128).unwrap_or(i64::MAX);
        Bucket { tokens: cap, cap, rate }
    }

    #[inline]
    fn refill(&mut self, dt: u64) {
        let add = u128::from(self.rate) * u128::from(dt);
        let t = i128::from(self.tokens) + i128::try_from(add).unwrap_or(i128::MAX / 2);
        self.tokens = i64::try_from(t.min(i128::from(self.cap))).unwrap_or(self.cap);
    }

    /// Nanoseconds until it holds a token (u64::MAX when its rate is 0).
    fn wait(&self) -> u64 {
        if self.tokens > 0 {
            return 0;
        }
        if self.rate == 0 {
            return u64::MAX;
        }
        let need = u128::try_from(1 - i128::from(self.tokens)).unwrap_or(1);
        u64::try_from(need.div_ceil(u128::from(self.rate))).unwrap_or(u64::MAX)
    }
}

/// What a class's every frame touches, together (two cache lines): its
/// buckets, places on the lists, backlog, where its queues are and what
/// it sent. The rest of a class ([`Cold`]) is read when it drops, borrows
/// or has several queues, and per change.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
struct Hot {
    g: Bucket,
    c: Bucket,
    last: u64,
    /// Round-robin deficits on the green and yellow lists.
    deficit: [i64; 2],
    /// Links (next, previous) on the green and yellow lists.
    link: [(u32, u32); 2],
    /// When its pending event fires (u64::MAX: none).
    event: u64,
    /// Frames sent, and their bytes.
    packets: u64,
    bytes: u64,
    backlog: u32,
    /// Bumped whenever its pending event is superseded.
    gen: u32,
    /// Its first queue in the scheduler's queues.
    q0: u32,
    /// Non-empty queues, as bits of positions in `Cold::order`.
    nonempty: u8,
    /// Its queues.
    nq: u8,
    /// Whether it is on each list.
    on: [bool; 2],
}

struct Cold {
    spec: ClassSpec,
    /// Queue indices in priority order.
    order: Vec<u8>,
    /// Each queue's position in `order`.
    pos_of: [u8; MAX_QUEUES],
    /// For each position in `order`, where its priority's run ends.
    level_end: [u8; MAX_QUEUES],
    rr: usize,
    /// Bytes sent borrowing (as a yellow class): the rest were green.
    borrowed_bytes: u64,
    drops: [u64; 3],
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// Every how many frames sent the queueing delay is sampled (each port's
/// histogram is of a sample: percentiles hold, at a fraction of the cost).
const DELAY_SAMPLE: u32 = 64;

/// One port's scheduler.
pub struct Scheduler<T> {
    port: Bucket,
    port_last: u64,
    hot: Vec<Hot>,
    /// Each class's first queue, apart (a prefetch needs it without
    /// waiting for the class's own line).
    q0: Vec<u32>,
    /// Each class's round-robin quantum (bytes), apart: read at every turn's
    /// end, it would cost a miss per turn in [`Cold`].
    quantum: Vec<i64>,
    cold: Vec<Cold>,
    queues: Vec<Queue<T>>,
    qcold: Vec<QueueCold>,
    /// Each class's delay histogram, [`DELAY_BUCKETS`] counters per class.
    delay: Vec<u64>,
    lists: [List; 2],
    events: BinaryHeap<Reverse<(u64, u32, u32)>>,
    rng: u64,
    sample: u32,
    limit: u64,
    backlog_packets: u64,
    backlog_bytes: u64,
}

impl<T> std::fmt::Debug for Scheduler<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("classes", &self.hot.len()).finish_non_exhaustive()
    }
}

fn quanta(spec: &SchedSpec) -> Vec<i64> {
    let min = spec.classes.iter().map(|c| c.rate).filter(|r| *r > 0).min().unwrap_or(1);
    spec.classes
        .iter()
        .map(|c| {
            let q = u128::from(c.rate) * MIN_QUANTUM as u128 / u128::from(min);
            i64::try_from(q).unwrap_or(MAX_QUANTUM).clamp(MIN_QUANTUM, MAX_QUANTUM)
        })
        .collect()
}

impl<T: Frame> Scheduler<T> {
    /// A scheduler for `spec` at time `now` (ns), buckets full, queues
    /// sized to their depths.
    pub fn new(spec: &SchedSpec, now: u64) -> Scheduler<T> {
        let mut hot = Vec::with_capacity(spec.classes.len());
        let mut cold = Vec::with_capacity(spec.classes.len());
        let mut queues = Vec::new();
        let mut qcold = Vec::new();
        let quantum = quanta(spec);
        for (c, &quantum) in spec.classes.iter().zip(&quantum) {
            let mut order: Vec<u8> = (0..c.queues.len()).filter_map(|i| u8::try_from(i).ok()).collect();
            order.sort_by_key(|&i| c.queues[usize::from(i)].priority);
            let mut pos_of = [0u8; MAX_QUEUES];
            let mut level_end = [0u8; MAX_QUEUES];
            for (p, &q) in order.iter().enumerate() {
                pos_of[usize::from(q) % MAX_QUEUES] = u8::try_from(p).unwrap_or(0);
                let prio = c.queues[usize::from(q)].priority;
                let end = order.iter().rposition(|&o| c.queues[usize::from(o)].priority == prio).unwrap_or(p) + 1;
                level_end[p % MAX_QUEUES] = u8::try_from(end).unwrap_or(0);
            }
            hot.push(Hot {
                g: Bucket::new(c.rate, c.burst),
                c: Bucket::new(c.ceil, c.cburst),
                last: now,
                deficit: [quantum; 2],
                link: [(NIL, NIL); 2],
                event: u64::MAX,
                packets: 0,
                bytes: 0,
                backlog: 0,
                gen: 0,
                q0: u32::try_from(queues.len()).unwrap_or(u32::MAX),
                nonempty: 0,
                nq: u8::try_from(c.queues.len()).unwrap_or(1),
                on: [false; 2],
            });
            queues.extend(c.queues.iter().map(|qs| Queue {
                items: Fifo::with_capacity(qs.depth as usize),
                bytes: 0,
                deficit: 0,
                depth_bytes: qs.depth_bytes,
                depth: qs.depth,
                red: qs.aqm != Aqm::Tail,
            }));
            qcold.extend(c.queues.iter().map(|qs| QueueCold { spec: *qs, avg: 0 }));
            cold.push(Cold { spec: c.clone(), order, pos_of, level_end, rr: 0, borrowed_bytes: 0, drops: [0; 3] });
        }
        let n = hot.len();
        Scheduler {
            port: Bucket::new(spec.rate, spec.burst),
            port_last: now,
            q0: hot.iter().map(|h| h.q0).collect(),
            quantum,
            hot,
            cold,
            queues,
            qcold,
            delay: vec![0; n * DELAY_BUCKETS],
            lists: [List { head: NIL, tail: NIL }; 2],
            events: BinaryHeap::with_capacity(2 * n + 16),
            rng: 0x9e37_79b9_7f4a_7c15,
            sample: 0,
            limit: spec.limit,
            backlog_packets: 0,
            backlog_bytes: 0,
        }
    }

    /// Starts loading what enqueueing to class `class`, queue `queue`
    /// touches: the class's state (both its lines) and the queue (a batch
    /// is classed first, prefetched, then queued). [`Self::prefetch_slot`]
    /// follows once the queue is in.
    #[inline]
    pub fn prefetch(&self, class: usize, queue: usize) {
        if let (Some(h), Some(&q0)) = (self.hot.get(class), self.q0.get(class)) {
            pmd::prefetch(h);
            pmd::prefetch(std::ptr::from_ref(h).cast::<u8>().wrapping_add(64));
            if let Some(q) = self.queues.get(q0 as usize + queue) {
                pmd::prefetch(q);
            }
        }
    }

    /// Starts loading the slot a frame for class `class`, queue `queue`
    /// goes to (reads the queue: prefetch it first).
    #[inline]
    pub fn prefetch_slot(&self, class: usize, queue: usize) {
        if let Some(q) = self.q0.get(class).and_then(|q0| self.queues.get(*q0 as usize + queue)) {
            q.items.prefetch_tail();
        }
    }

    /// Class `i`'s queue `qi` (position in its spec).
    #[inline]
    fn qidx(&self, i: usize, qi: usize) -> usize {
        self.q0[i] as usize + qi
    }

    /// Takes over the queued frames of `old` (same class ids and queue
    /// positions; those of classes gone are handed to `dropped`) and its
    /// counters: a live change of rates loses nothing queued.
    pub fn adopt(&mut self, old: &mut Scheduler<T>, now: u64, dropped: &mut impl FnMut(T)) {
        for oi in 0..old.hot.len() {
            let id = old.cold[oi].spec.id;
            let (oq0, onq) = (old.hot[oi].q0 as usize, usize::from(old.hot[oi].nq));
            let Some(ci) = self.cold.iter().position(|c| c.spec.id == id) else {
                for q in &mut old.queues[oq0..oq0 + onq] {
                    for s in q.items.drain() {
                        dropped(s.frame);
                    }
                }
                continue;
            };
            let (oh, oc) = (&old.hot[oi], &mut old.cold[oi]);
            self.hot[ci].packets = oh.packets;
            self.hot[ci].bytes = oh.bytes;
            let c = &mut self.cold[ci];
            c.borrowed_bytes = oc.borrowed_bytes;
            c.drops = oc.drops;
            let (from, to) = (oi * DELAY_BUCKETS, ci * DELAY_BUCKETS);
            self.delay[to..to + DELAY_BUCKETS].copy_from_slice(&old.delay[from..from + DELAY_BUCKETS]);
            let nq = usize::from(self.hot[ci].nq);
            for k in 0..onq {
                let to = self.qidx(ci, k.min(nq - 1));
                let from = &mut old.queues[oq0 + k];
                // A queue made shallower (or merged into) keeps what it
                // had: its ring grows here, on the control thread.
                let q = &mut self.queues[to];
                q.items.reserve(q.items.len() + from.items.len());
                for s in from.items.drain() {
                    let b = u64::from(s.bytes);
                    q.bytes += b;
                    let _ = q.items.push(s);
                    self.hot[ci].backlog += 1;
                    self.backlog_packets += 1;
                    self.backlog_bytes += b;
                }
            }
            for k in 0..nq {
                if !self.queues[self.qidx(ci, k)].items.is_empty() {
                    self.hot[ci].nonempty |= 1 << self.cold[ci].pos_of[k];
                }
            }
            self.update(ci, now);
        }
        old.backlog_packets = 0;
        old.backlog_bytes = 0;
    }

    /// The classes' ids, in order.
    pub fn class_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.cold.iter().map(|c| c.spec.id)
    }

    /// Class `i`'s counters.
    pub fn stats(&self, i: usize) -> ClassStats {
        let (h, c) = (&self.hot[i], &self.cold[i]);
        ClassStats {
            packets: h.packets,
            bytes: h.bytes,
            green_bytes: h.bytes - c.borrowed_bytes.min(h.bytes),
            drops: c.drops,
            delay: self.delay[i * DELAY_BUCKETS..(i + 1) * DELAY_BUCKETS].to_vec(),
        }
    }

    /// Bytes class `i` sent.
    pub fn bytes_sent(&self, i: usize) -> u64 {
        self.hot[i].bytes
    }

    /// Class `i`'s settings.
    pub fn class_spec(&self, i: usize) -> &ClassSpec {
        &self.cold[i].spec
    }

    /// Class `i`'s backlog: packets and bytes per queue.
    pub fn depth(&self, i: usize) -> Vec<(usize, u64)> {
        let (q0, nq) = (self.hot[i].q0 as usize, usize::from(self.hot[i].nq));
        self.queues[q0..q0 + nq].iter().map(|q| (q.items.len(), q.bytes)).collect()
    }

    /// Frames it holds in all classes at most.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Frames queued in all classes, and their bytes.
    pub fn backlog(&self) -> (u64, u64) {
        (self.backlog_packets, self.backlog_bytes)
    }

    fn random(&mut self) -> u32 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        u32::try_from(self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32).unwrap_or(0)
    }

    /// Queues `f` in class `class`, queue `queue` (positions in the spec),
    /// with drop precedence `colour`, at time `now`; a frame refused is
    /// handed back with the reason.
    pub fn enqueue(&mut self, class: usize, queue: usize, colour: Colour, f: T, now: u64) -> Result<(), (T, Drop)> {
        let b = u64::from(f.bytes());
        let qx = self.qidx(class, queue);
        let q = &mut self.queues[qx];
        let len = q.items.len() as u64;
        if len >= u64::from(q.depth) || q.bytes + b > q.depth_bytes {
            self.cold[class].drops[Drop::Full as usize] += 1;
            return Err((f, Drop::Full));
        }
        if self.backlog_packets >= self.limit {
            self.cold[class].drops[Drop::Limit as usize] += 1;
            return Err((f, Drop::Limit));
        }
        if q.red && self.early(qx, len, colour) {
            self.cold[class].drops[Drop::Early as usize] += 1;
            return Err((f, Drop::Early));
        }
        let q = &mut self.queues[qx];
        let slot = Slot { frame: f, bytes: u32::try_from(b).unwrap_or(u32::MAX), at: fifo::tick(now) };
        if let Err(s) = q.items.push(slot) {
            // (Its ring holds its depth: not reached.)
            self.cold[class].drops[Drop::Full as usize] += 1;
            return Err((s.frame, Drop::Full));
        }
        q.bytes += b;
        let first = q.items.len() == 1;
        self.backlog_packets += 1;
        self.backlog_bytes += b;
        let h = &mut self.hot[class];
        h.backlog += 1;
        if first {
            h.nonempty |= if h.nq == 1 { 1 } else { 1 << self.cold[class].pos_of[queue] };
        }
        if h.backlog == 1 {
            self.update(class, now);
        }
        Ok(())
    }

    /// Whether RED (or WRED, by `colour`) drops a frame arriving at queue
    /// `qx` holding `len` frames; updates its averaged depth.
    fn early(&mut self, qx: usize, len: u64, colour: Colour) -> bool {
        let qc = &mut self.qcold[qx];
        let Aqm::Red { min, max, max_p, weighted } = qc.spec.aqm else { return false };
        // avg += (len - avg) / 512, in 1/1024ths of a packet.
        let cur = len << 10;
        qc.avg = if cur >= qc.avg { qc.avg + ((cur - qc.avg) >> 9) } else { qc.avg - ((qc.avg - cur) >> 9) };
        let (num, den) = match (weighted, colour) {
            (true, Colour::Yellow) => (3, 4),
            (true, Colour::Red) => (1, 2),
            _ => (1, 1),
        };
        let (min, max) = (u64::from(min) * num / den, u64::from(max) * num / den);
        let avg = qc.avg >> 10;
        if avg < min {
            false
        } else if avg >= max {
            true
        } else {
            u64::from(self.random() % 1_000_000) < u64::from(max_p) * (avg - min) / (max - min).max(1)
        }
    }

    #[inline]
    fn refill(&mut self, i: usize, now: u64) {
        let h = &mut self.hot[i];
        let dt = now.saturating_sub(h.last);
        if dt > 0 {
            h.g.refill(dt);
            h.c.refill(dt);
            h.last = now;
        }
    }

    fn unlink(&mut self, l: usize, i: usize) {
        let (next, prev) = self.hot[i].link[l];
        let list = &mut self.lists[l];
        if prev == NIL {
            list.head = next;
        } else {
            self.hot[prev as usize].link[l].0 = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.hot[next as usize].link[l].1 = prev;
        }
        let h = &mut self.hot[i];
        h.link[l] = (NIL, NIL);
        h.on[l] = false;
    }

    fn push_back(&mut self, l: usize, i: usize) {
        let tail = self.lists[l].tail;
        let me = u32::try_from(i).unwrap_or(NIL);
        let h = &mut self.hot[i];
        h.link[l] = (NIL, tail);
        h.on[l] = true;
        if tail == NIL {
            self.lists[l].head = me;
        } else {
            self.hot[tail as usize].link[l].0 = me;
        }
        self.lists[l].tail = me;
    }

    /// Makes class `i` re-examined at `at` (unless it already will be by
    /// then).
    fn schedule(&mut self, i: usize, at: u64) {
        if self.hot[i].event <= at {
            return;
        }
        if self.events.len() == self.events.capacity() {
            let hot = &self.hot;
            self.events.retain(|Reverse((_, c, g))| hot[*c as usize].gen == *g);
        }
        let h = &mut self.hot[i];
        h.gen = h.gen.wrapping_add(1);
        h.event = at;
        self.events.push(Reverse((at, u32::try_from(i).unwrap_or(NIL), h.gen)));
    }

    /// Puts class `i` on the lists its backlog and buckets say at time
    /// `now`: green (guarantee and ceiling have tokens), yellow (ceiling
    /// has, guarantee does not, or did once and it stays there: its place
    /// among borrowers is kept while its guarantee refills), neither; and
    /// makes it re-examined when a bucket it lacks refills. Places on lists
    /// it stays on are kept.
    fn update(&mut self, i: usize, now: u64) {
        self.refill(i, now);
        let h = &self.hot[i];
        if h.backlog == 0 {
            // An empty class leaves its lists when it comes to their head
            // (a class that empties and fills again, as most do under
            // load, keeps its places without relinking).
            return;
        }
        let want = [h.g.tokens > 0 && h.c.tokens > 0, h.c.tokens > 0 && (h.on[1] || h.g.tokens <= 0)];
        let wake = match () {
            _ if h.c.tokens <= 0 => h.c.wait(),
            _ if h.g.tokens <= 0 => h.g.wait(),
            _ => u64::MAX,
        };
        for (l, w) in want.into_iter().enumerate() {
            match (w, self.hot[i].on[l]) {
                (true, false) => self.push_back(l, i),
                (false, true) => self.unlink(l, i),
                _ => {}
            }
        }
        if wake != u64::MAX {
            self.schedule(i, now.saturating_add(wake));
        }
    }

    /// The queue (index) to serve next in class `i` (which has backlog).
    #[inline]
    fn pick(&mut self, i: usize) -> usize {
        let h = &self.hot[i];
        if h.nq == 1 {
            return 0;
        }
        let (q0, nonempty) = (h.q0 as usize, h.nonempty);
        let c = &mut self.cold[i];
        let first = nonempty.trailing_zeros() as usize;
        let end = usize::from(c.level_end[first]);
        if end - first == 1 {
            return usize::from(c.order[first]);
        }
        // Deficit round robin among the non-empty queues of this priority.
        let n = end - first;
        if c.rr < first || c.rr >= end {
            c.rr = first;
        }
        loop {
            let pos = c.rr;
            let qi = usize::from(c.order[pos]);
            if nonempty & (1 << pos) != 0 {
                let weight = self.qcold[q0 + qi].spec.weight.max(1);
                let q = &mut self.queues[q0 + qi];
                if q.deficit > 0 {
                    return qi;
                }
                q.deficit += i64::from(weight) * 1518;
            }
            c.rr = first + (pos + 1 - first) % n;
        }
    }

    /// Sends what the buckets allow at time `now`, at most `max` frames,
    /// each through `out`; returns how many.
    pub fn dequeue(&mut self, now: u64, max: usize, out: &mut impl FnMut(T)) -> usize {
        let dt = now.saturating_sub(self.port_last);
        self.port.refill(dt);
        self.port_last = now;
        while let Some(&Reverse((at, i, g))) = self.events.peek() {
            if at > now {
                break;
            }
            self.events.pop();
            let i = i as usize;
            if self.hot[i].gen == g {
                self.hot[i].event = u64::MAX;
                self.update(i, now);
            }
        }
        let mut n = 0;
        while n < max && self.port.tokens > 0 {
            let l = if self.lists[0].head != NIL { 0 } else { 1 };
            let head = self.lists[l].head;
            if head == NIL {
                break;
            }
            let i = head as usize;
            let h = &self.hot[i];
            if h.backlog == 0 || (l == 1 && h.c.tokens <= 0) {
                self.unlink(l, i);
                continue;
            }
            if h.deficit[l] <= 0 {
                // Its turn is over: to the back, with a new quantum.
                self.hot[i].deficit[l] += self.quantum[i];
                self.unlink(l, i);
                self.push_back(l, i);
                continue;
            }
            // The next classes of the list: the one after next starts
            // loading with its first queue (the queue's place is apart),
            // and the next one's first frame (its class and queue are in
            // cache: they were prefetched a turn ago).
            let next = self.hot[i].link[l].0;
            if next != NIL {
                let hn = &self.hot[next as usize];
                self.queues[hn.q0 as usize].items.prefetch_head();
                let after = hn.link[l].0;
                if after != NIL {
                    let ha = &self.hot[after as usize];
                    pmd::prefetch(ha);
                    pmd::prefetch(std::ptr::from_ref(ha).cast::<u8>().wrapping_add(64));
                    pmd::prefetch(&self.queues[self.q0[after as usize] as usize]);
                }
            }
            self.refill(i, now);
            let qi = self.pick(i);
            let qx = self.qidx(i, qi);
            let q = &mut self.queues[qx];
            let Some(s) = q.items.pop() else { break };
            let b = u64::from(s.bytes);
            let bi = i64::from(s.bytes);
            q.bytes -= b;
            q.deficit -= bi;
            let emptied = q.items.is_empty();
            if emptied {
                q.deficit = 0;
            }
            let h = &mut self.hot[i];
            if emptied {
                h.nonempty &= if h.nq == 1 { 0 } else { !(1 << self.cold[i].pos_of[qi]) };
            }
            let cost = bi * NB;
            h.c.tokens -= cost;
            if l == 0 {
                h.g.tokens -= cost;
            }
            h.deficit[l] -= bi;
            h.backlog -= 1;
            h.packets += 1;
            h.bytes += b;
            let stays = h.backlog > 0 && h.c.tokens > 0 && (l == 1 || h.g.tokens > 0);
            let recheck = !stays || (l == 1 && h.on[0] != (h.g.tokens > 0));
            if l == 1 {
                self.cold[i].borrowed_bytes += b;
            }
            self.sample = self.sample.wrapping_add(1);
            if self.sample.is_multiple_of(DELAY_SAMPLE) {
                self.delay[i * DELAY_BUCKETS + delay_bucket(fifo::since(s.at, now))] += 1;
            }
            self.port.tokens -= cost;
            self.backlog_packets -= 1;
            self.backlog_bytes -= b;
            out(s.frame);
            n += 1;
            if recheck {
                self.update(i, now);
            }
        }
        n
    }

    /// Nanoseconds from `now` until the scheduler could send again (0:
    /// now; u64::MAX: nothing queued).
    pub fn next_wake(&self, now: u64) -> u64 {
        if self.backlog_packets == 0 {
            return u64::MAX;
        }
        if self.port.tokens <= 0 {
            return self.port.wait();
        }
        if self.lists[0].head != NIL || self.lists[1].head != NIL {
            return 0;
        }
        self.events.peek().map_or(u64::MAX, |Reverse((at, _, _))| at.saturating_sub(now))
    }

    /// Hands every queued frame to `out` (the scheduler is being removed).
    pub fn drain(&mut self, out: &mut impl FnMut(T)) {
        for q in &mut self.queues {
            for s in q.items.drain() {
                out(s.frame);
            }
            q.bytes = 0;
        }
        for h in &mut self.hot {
            h.backlog = 0;
            h.nonempty = 0;
            h.on = [false; 2];
            h.link = [(NIL, NIL); 2];
            h.event = u64::MAX;
        }
        self.lists = [List { head: NIL, tail: NIL }; 2];
        self.events.clear();
        self.backlog_packets = 0;
        self.backlog_bytes = 0;
    }
}

#[cfg(test)]
mod tests;
