//! `PacketRing`: DPDK's lock-free ring of mbuf pointers, many producers
//! and one consumer: how PMD threads hand packets to the one thread that
//! owns a port's scheduler (a burst per compare-and-swap, not a packet).

use crate::error::{rte_errno_str, Error, Result};
use crate::packet::Batch;
use crate::Eal;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// A ring of packets: any thread enqueues, one thread dequeues.
pub struct PacketRing {
    raw: NonNull<dpdk_sys::rte_ring>,
    name: String,
}

// SAFETY: rte_ring's multi-producer enqueue is safe from any thread; the
// single-consumer dequeue is only reached through `&mut`-free methods whose
// callers are the one consumer (documented on `dequeue`).
unsafe impl Send for PacketRing {}
// SAFETY: as above.
unsafe impl Sync for PacketRing {}

impl std::fmt::Debug for PacketRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketRing").field("name", &self.name).field("count", &self.len()).finish()
    }
}

static SERIAL: AtomicU64 = AtomicU64::new(0);

impl PacketRing {
    /// A ring of `size` slots (rounded up to a power of two; one fewer is
    /// usable), named `name` plus a serial (DPDK's ring names are global).
    pub fn new(_eal: &Eal, name: &str, size: u32) -> Result<PacketRing> {
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        // DPDK ring names hold 29 bytes.
        let full = format!("{}-{serial}", &name[..name.len().min(16)]);
        let cname = CString::new(full.clone())
            .map_err(|_| Error::InvalidOption { option: "ring".into(), why: "name contains NUL".into() })?;
        let count = size.max(2).next_power_of_two();
        // SAFETY: cname is a valid C string for the call; SC_DEQ makes the
        // dequeue single-consumer, enqueue stays multi-producer.
        let raw = unsafe {
            dpdk_sys::rte_ring_create(cname.as_ptr(), count, dpdk_sys::SOCKET_ID_ANY, dpdk_sys::RING_F_SC_DEQ)
        };
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::InvalidOption { option: format!("ring {full}"), why: rte_errno_str() })?;
        Ok(PacketRing { raw, name: full })
    }

    /// Moves what fits of `batch` (from its front) into the ring; what did
    /// not fit stays in `batch`. Returns how many moved.
    #[inline]
    pub fn enqueue(&self, batch: &mut Batch) -> usize {
        let n = u32::try_from(batch.len()).unwrap_or(0);
        if n == 0 {
            return 0;
        }
        // SAFETY: the first n slots hold owned mbufs; the ring takes the
        // first `sent` (their ownership moves to it) and consume_front
        // forgets them.
        let sent = unsafe { dpdk_sys::vs_ring_mp_enqueue_burst(self.raw.as_ptr(), batch.as_raw_ptr().cast(), n) };
        let sent = sent as usize;
        batch.consume_front(sent);
        sent
    }

    /// Fills `out`'s free room from the ring; returns how many came. Only
    /// the ring's one consumer calls it.
    #[inline]
    pub fn dequeue(&self, out: &mut Batch) -> usize {
        let room = u32::try_from(out.room()).unwrap_or(0);
        if room == 0 {
            return 0;
        }
        // SAFETY: spare_ptr points at `room` free slots; the ring writes
        // at most that many pointers to mbufs that become ours.
        let got = unsafe { dpdk_sys::vs_ring_sc_dequeue_burst(self.raw.as_ptr(), out.spare_ptr().cast(), room) };
        let got = got as usize;
        // SAFETY: the slots up to len + got now hold owned mbufs.
        unsafe { out.set_len(out.len() + got) };
        got
    }

    /// Packets in the ring.
    pub fn len(&self) -> usize {
        // SAFETY: the ring is valid; counting reads its head and tail.
        unsafe { dpdk_sys::vs_ring_count(self.raw.as_ptr()) as usize }
    }

    /// Nothing in the ring.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        let mut b = Batch::new();
        while self.dequeue(&mut b) > 0 {
            b.clear();
        }
        // SAFETY: the ring is ours, empty, and nobody holds it any more.
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) };
    }
}
