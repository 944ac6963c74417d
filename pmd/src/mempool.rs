//! Packet mempools.

use crate::error::{rte_errno_str, Error, Result};
use crate::packet::PacketMeta;
use crate::Eal;
use std::ffi::CString;
use std::ptr::NonNull;

/// Room for a standard frame (RTE_MBUF_DEFAULT_BUF_SIZE: 2048 data bytes
/// plus headroom).
#[allow(clippy::cast_possible_truncation)] // RTE_PKTMBUF_HEADROOM is 128
pub const DEFAULT_DATA_ROOM: u16 = 2048 + dpdk_sys::RTE_PKTMBUF_HEADROOM as u16;

/// Headroom in front of a received frame: room to push tunnel headers
/// (VXLAN over IPv6 with a VLAN tag needs 74 bytes) without moving data.
pub const HEADROOM: usize = dpdk_sys::RTE_PKTMBUF_HEADROOM as usize;

/// A pool of mbufs, each with a [`PacketMeta`] in its private area.
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
    name: String,
    data_room: u16,
}

// SAFETY: an rte_mempool is designed for concurrent use from many lcores:
// get/put go through per-lcore caches and a lock-free ring.
unsafe impl Send for Mempool {}
// SAFETY: as above; shared references only call thread-safe functions.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n` mbufs of `data_room` bytes (headroom included)
    /// on `socket` (None: any), with a per-lcore cache of `cache` mbufs.
    pub fn new(_eal: &Eal, name: &str, n: u32, cache: u32, data_room: u16, socket: Option<i32>) -> Result<Mempool> {
        let err = |reason: String| Error::Mempool { name: name.into(), reason };
        if n < 64 {
            return Err(err(format!("{n} mbufs is too few (at least 64)")));
        }
        if cache > 512 || cache > n / 2 {
            return Err(err(format!("cache of {cache} is too large for {n} mbufs (at most 512 and n/2)")));
        }
        if usize::from(data_room) <= HEADROOM {
            return Err(err(format!("data room {data_room} leaves no room past the {HEADROOM}-byte headroom")));
        }
        let cname = CString::new(name).map_err(|_| err("name contains NUL".into()))?;
        let priv_size = u16::try_from(std::mem::size_of::<PacketMeta>().next_multiple_of(8)).expect("meta is small");
        let socket = socket.unwrap_or(dpdk_sys::SOCKET_ID_ANY);
        // SAFETY: cname is a valid C string for the call; the other
        // arguments are plain values checked above.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, priv_size, data_room, socket) };
        let raw = NonNull::new(raw).ok_or_else(|| err(rte_errno_str()))?;
        Ok(Mempool { raw, name: name.into(), data_room })
    }

    /// The raw pool, for DPDK calls.
    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes per mbuf, headroom included.
    pub fn data_room(&self) -> u16 {
        self.data_room
    }

    /// Mbufs currently in the pool (not in use).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for self's lifetime.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs in all, in the pool or out.
    pub fn size(&self) -> u32 {
        self.available() + self.in_use()
    }

    /// Mbufs currently handed out.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid for self's lifetime.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: ports using the pool are closed before it (they hold an
        // Arc to it); freeing a pool with mbufs still out is DPDK's
        // documented misuse, which the Arc ordering prevents.
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}
