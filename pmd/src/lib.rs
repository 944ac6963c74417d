//! Packets and ports on DPDK.
//!
//! This crate owns everything that touches DPDK directly: EAL set-up from a
//! typed configuration ([`eal`]), mempools ([`mempool`]), the mbuf-backed
//! [`Packet`] and the fixed-capacity [`Batch`] ([`packet`]), ethdev ports
//! from PCI addresses or vdev devargs with their queues, offload
//! capabilities, link state and statistics ([`port`]), and poll-mode
//! threads pinned to cores with rx-queue assignment and cycle accounting,
//! beside virtual ports (no device: a function passes what is sent to them
//! on to device ports, as a tunnel encapsulates) ([`pmd`]), capture
//! taps a PMD thread copies packets into while a capture runs, the gates
//! and shapers a port's batches pass through ([`capture`]), and the
//! lock-free packet ring that hands batches to another thread ([`ring`]).
//!
//! It must not know about bridges, OpenFlow or configuration files: the
//! switch gives it a [`pmd::Pipeline`] to run on each received batch, and
//! gets back counters. Header parsing lives in the `wire` crate, which has
//! no DPDK in it; this crate re-exports it.
//!
//! All `unsafe` of the project's fast path is here, each block with the
//! reason it is sound.

pub mod capture;
pub mod eal;
pub mod error;
pub mod forward;
pub mod mempool;
pub mod packet;
pub mod pmd;
pub mod port;
pub mod ring;

pub use eal::{Eal, EalConfig, Memory};
pub use error::Error;
pub use mempool::Mempool;
pub use packet::{Batch, Packet, PacketMeta, BATCH_SIZE};
pub use port::{Port, PortConfig, PortId, PortSource};
pub use wire;

/// Reads the CPU's time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no memory effects and exists on every x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::time::Instant::now().elapsed().as_nanos() as u64
    }
}

/// Asks the CPU to bring the cache line at `p` into all cache levels. A hint:
/// it never faults, whatever `p` is, so it is safe to call.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint that does not access memory
    // architecturally and never faults, even on an invalid address; SSE is
    // part of x86_64's baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// TSC ticks per second, as DPDK measured it at EAL start.
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL computed once at init; no arguments.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
