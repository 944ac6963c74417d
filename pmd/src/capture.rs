//! Packet capture taps: while a capture is on for a port, the PMD threads
//! copy the packets they receive on it or send on it into a bounded ring
//! of preallocated records, which a writer (another thread) drains.
//!
//! A tap is published with the port table ([`crate::pmd::PmdSet::set_taps`]),
//! so a port without one costs a PMD thread one test of a pointer per
//! burst, on a line it reads anyway. With one, each packet costs a copy of
//! at most `snaplen` bytes and two lock-free queue operations; when the
//! writer falls behind and no free record is left, the copy is dropped and
//! counted, never the packet: forwarding goes on as without the tap.
//!
//! Records move between two bounded multi-producer queues: `free` (empty
//! records, taken by the PMD threads) and `full` (captured, taken by the
//! writer, which gives them back to `free`). Both hold every record, so
//! pushing a record back never fails; nothing is allocated after the tap
//! is made.

use crate::packet::Packet;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which way a captured packet went through its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received on the port.
    Rx,
    /// Sent on the port (handed to its tx ring; a full ring may still
    /// drop it, counted as the port's tx drop).
    Tx,
}

/// One captured packet.
#[derive(Debug)]
pub struct Record {
    /// TSC when its burst was captured.
    pub tsc: u64,
    /// The packet's whole length.
    pub orig_len: u32,
    /// Bytes copied into `data` (at most the tap's snaplen).
    pub len: u32,
    /// Its direction.
    pub dir: Direction,
    /// The copied bytes (the first `len`).
    pub data: Box<[u8]>,
}

/// A bounded ring of records one capture fills (see the module docs).
#[derive(Debug)]
pub struct Tap {
    free: ArrayQueue<Box<Record>>,
    full: ArrayQueue<Box<Record>>,
    snaplen: usize,
    captured: AtomicU64,
    dropped: AtomicU64,
}

impl Tap {
    /// A tap of `records` records of `snaplen` bytes each (both at least
    /// 1), allocated now.
    pub fn new(records: usize, snaplen: usize) -> Tap {
        let records = records.max(1);
        let snaplen = snaplen.max(1);
        let free = ArrayQueue::new(records);
        for _ in 0..records {
            let r = Box::new(Record { tsc: 0, orig_len: 0, len: 0, dir: Direction::Rx, data: vec![0; snaplen].into() });
            // The queue holds exactly `records`.
            let _ = free.push(r);
        }
        Tap { free, full: ArrayQueue::new(records), snaplen, captured: AtomicU64::new(0), dropped: AtomicU64::new(0) }
    }

    /// Copies `pkts` (one burst that went `dir`) into the ring; a packet
    /// that finds no free record is counted in [`Tap::dropped`].
    #[inline(never)]
    pub fn capture(&self, pkts: &[Packet], dir: Direction) {
        let tsc = crate::rdtsc();
        let (mut took, mut missed) = (0u64, 0u64);
        for p in pkts {
            let Some(mut r) = self.free.pop() else {
                missed += 1;
                continue;
            };
            // The first segment: a chained jumbo frame is cut at its
            // first mbuf (its whole length is still recorded).
            let d = p.data();
            let n = d.len().min(self.snaplen);
            r.data[..n].copy_from_slice(&d[..n]);
            r.len = u32::try_from(n).unwrap_or(u32::MAX);
            r.orig_len = u32::try_from(p.len()).unwrap_or(u32::MAX);
            r.tsc = tsc;
            r.dir = dir;
            // `full` has room for every record.
            let _ = self.full.push(r);
            took += 1;
        }
        // Several PMD threads may capture the same port: one add each per
        // burst, only while a capture is on.
        if took > 0 {
            self.captured.fetch_add(took, Ordering::Relaxed);
        }
        if missed > 0 {
            self.dropped.fetch_add(missed, Ordering::Relaxed);
        }
    }

    /// The oldest captured record, for the writer; give it back with
    /// [`Tap::recycle`].
    pub fn take(&self) -> Option<Box<Record>> {
        self.full.pop()
    }

    /// Returns a record the writer is done with.
    pub fn recycle(&self, r: Box<Record>) {
        let _ = self.free.push(r);
    }

    /// Packets copied so far.
    pub fn captured(&self) -> u64 {
        self.captured.load(Ordering::Relaxed)
    }

    /// Copies dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes copied per packet at most.
    pub fn snaplen(&self) -> usize {
        self.snaplen
    }
}

/// What a port's batches pass through on a PMD thread before anything
/// else sees them (received) or before they are sent: a policer, say. It
/// keeps what may go on in `batch` and drops the rest.
pub trait Gate: Send + Sync + std::fmt::Debug {
    /// Filters `batch` on PMD thread `pmd`.
    fn admit(&self, pmd: usize, batch: &mut crate::Batch);
}

/// A port whose frames leave through a scheduler that one PMD thread
/// runs (its owner): every thread hands its batches over (a lock-free
/// ring), the owner takes them in and sends what the scheduler lets out.
pub trait Shaper: Send + Sync + std::fmt::Debug {
    /// Takes `batch` from PMD thread `pmd` (what cannot be taken is
    /// dropped and counted); `batch` is empty afterwards.
    fn hand_over(&self, pmd: usize, batch: &mut crate::Batch);
    /// The PMD thread that runs the scheduler.
    fn owner(&self) -> usize;
    /// On the owner: takes in what was handed over and fills `out` with
    /// what may be sent now (empty: nothing for now).
    fn run(&self, out: &mut crate::Batch);
    /// On the owner: `out` held frames the port did not take; they are
    /// sent first next time.
    fn unsent(&self, out: &mut crate::Batch);
}

/// The taps and gates of one port slot.
#[derive(Debug, Clone, Default)]
pub struct PortTaps {
    /// Copies received packets.
    pub rx: Option<std::sync::Arc<Tap>>,
    /// Copies sent packets.
    pub tx: Option<std::sync::Arc<Tap>>,
    /// Received batches pass through it first (before the rx tap).
    pub rx_gate: Option<std::sync::Arc<dyn Gate>>,
    /// Batches to send pass through it last (before the tx tap).
    pub tx_gate: Option<std::sync::Arc<dyn Gate>>,
    /// Batches to send (after `tx_gate`) go to this scheduler, whose
    /// owner sends them (through the tx tap).
    pub shaper: Option<std::sync::Arc<dyn Shaper>>,
}
