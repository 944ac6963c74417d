//! `Packet`, an owned rte_mbuf, and `Batch`, up to [`BATCH_SIZE`] of them
//! with no heap and a bulk free.

use crate::Mempool;
use dpdk_sys::rte_mbuf;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

/// Packets per batch: one rx burst, one tx burst.
pub const BATCH_SIZE: usize = 32;

/// A count of packets in one batch (at most [`BATCH_SIZE`]) as DPDK's
/// unsigned count.
#[inline]
#[allow(clippy::cast_possible_truncation)]
const fn burst_count(n: usize) -> u32 {
    debug_assert!(n <= BATCH_SIZE);
    n as u32
}

/// Per-packet metadata, kept in the mbuf's private area (so it travels with
/// the packet between PMD stages without a side table). Valid once the rx
/// path or flow extraction wrote it; a freshly allocated mbuf's meta is
/// whatever the last user left, so [`Packet::alloc`] clears it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// The switch's number for the port it came in on.
    pub in_port: u32,
    /// Hash the datapath uses (RSS from the NIC, or computed in software).
    pub dp_hash: u32,
    /// Offset of the Ethernet header (non-zero after decapsulation).
    pub l2_offset: u16,
    /// Offset of the network header; 0: not parsed.
    pub l3_offset: u16,
    /// Offset of the transport header; 0: none or not parsed.
    pub l4_offset: u16,
    /// Offset of the transport payload; 0: none or not parsed.
    pub payload_offset: u16,
    /// Parse results and offload requests (see [`meta_flags`]).
    pub flags: u32,
    /// Tunnel metadata: the VNI or GRE key it was received with (set by
    /// decapsulation), or the one to send it with (set by OpenFlow before
    /// an output to a tunnel port whose key is `flow`).
    pub tun_id: u32,
    /// The outer source address it was received from (decapsulation).
    pub tun_src: u32,
    /// The outer destination address it was received at (decapsulation).
    pub tun_dst: u32,
    /// Tunnel flags received (bit 0: OAM).
    pub tun_flags: u16,
    /// After decapsulation: bytes from the outer IP header to the inner
    /// frame (the outer headers stay in the headroom until something is
    /// prepended; see [`Packet::before`]).
    pub tun_hdr: u16,
    /// Geneve option bytes received, right before the inner frame.
    pub tun_opts: u16,
    /// Geneve option bytes to send, at the front of the data: stamped by
    /// the OpenFlow output to a Geneve port, taken (and zeroed) by the
    /// port's encapsulation.
    pub tun_tx_opts: u16,
    /// The remote to send to through a tunnel whose remote is `flow`
    /// (IPv4 as IPv4-mapped IPv6; unspecified: none): stamped by the
    /// OpenFlow output, taken (and zeroed) by the encapsulation.
    pub tun_remote: [u8; 16],
    /// The data offset when an output stamped `tun_tx_opts` and
    /// `tun_remote`: they count only while it still is (a stale stamp
    /// left in a recycled mbuf does not).
    pub tun_stamp: u16,
    /// The port slot it was received on, plus one (0: not known): set on
    /// receive while some port is shaped, so a scheduler can class frames
    /// by the port they came from.
    pub rx_slot: u16,
    /// The OpenFlow queue a `set_queue` action chose, plus one (0: none);
    /// cleared with `rx_slot`.
    pub queue: u32,
}

/// Bits of [`PacketMeta::flags`].
pub mod meta_flags {
    /// The headers were parsed and the offsets are valid.
    pub const PARSED: u32 = 1 << 0;
    /// The frame carried an 802.1Q/802.1ad tag.
    pub const VLAN: u32 = 1 << 1;
    /// Network layer is IPv4.
    pub const IPV4: u32 = 1 << 2;
    /// Network layer is IPv6.
    pub const IPV6: u32 = 1 << 3;
    /// The datapath hash is valid.
    pub const HASH_VALID: u32 = 1 << 4;
}

/// An owned mbuf; freed (back to its pool) on drop.
#[repr(transparent)]
#[derive(Debug)]
pub struct Packet {
    raw: NonNull<rte_mbuf>,
}

// SAFETY: a Packet is the only owner of its mbuf; moving it to another
// thread moves the ownership, and mbuf free is thread-safe.
unsafe impl Send for Packet {}

impl Packet {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nobody else will use or free.
    #[inline]
    pub unsafe fn from_raw(raw: NonNull<rte_mbuf>) -> Packet {
        Packet { raw }
    }

    /// Gives up ownership without freeing.
    #[inline]
    pub fn into_raw(self) -> NonNull<rte_mbuf> {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    /// Allocates an empty packet (data length 0, full headroom).
    #[inline]
    pub fn alloc(pool: &Mempool) -> Option<Packet> {
        // SAFETY: the pool is valid; the shim returns NULL or a fresh mbuf
        // that is ours alone.
        let raw = NonNull::new(unsafe { dpdk_sys::vs_pktmbuf_alloc(pool.as_ptr()) })?;
        let mut p = Packet { raw };
        *p.meta_mut() = PacketMeta::default();
        Some(p)
    }

    /// Allocates a packet holding a copy of `bytes`.
    pub fn from_bytes(pool: &Mempool, bytes: &[u8]) -> Option<Packet> {
        let mut p = Packet::alloc(pool)?;
        p.append(bytes.len())?.copy_from_slice(bytes);
        Some(p)
    }

    /// A copy of the whole packet, every segment, into mbufs of `pool`
    /// (the copy may be chained differently). Metadata is not copied.
    pub fn copy(&self, pool: &Mempool) -> Option<Packet> {
        // SAFETY: the mbuf is valid and ours; rte_pktmbuf_copy reads it and
        // returns NULL or a new chain that is ours alone.
        let raw = NonNull::new(unsafe { dpdk_sys::rte_pktmbuf_copy(self.raw.as_ptr(), pool.as_ptr(), 0, u32::MAX) })?;
        Some(Packet { raw })
    }

    #[inline]
    fn m(&self) -> &rte_mbuf {
        // SAFETY: we own a valid mbuf for self's lifetime.
        unsafe { self.raw.as_ref() }
    }

    #[inline]
    fn m_mut(&mut self) -> &mut rte_mbuf {
        // SAFETY: we own a valid mbuf for self's lifetime, exclusively.
        unsafe { self.raw.as_mut() }
    }

    /// The raw mbuf, for DPDK calls.
    #[inline]
    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.raw.as_ptr()
    }

    /// Starts loading the mbuf's header, both its cache lines (sending
    /// reads the first, freeing writes the second): for a frame that has
    /// waited in a queue long enough to leave the cache.
    #[inline]
    pub fn prefetch_header(&self) {
        let m = self.raw.as_ptr().cast::<u8>();
        crate::prefetch(m);
        crate::prefetch(m.wrapping_add(64));
    }

    /// Starts loading the first cache line of its data (reads the header:
    /// prefetch that first).
    #[inline]
    pub fn prefetch_data(&self) {
        let m = self.m();
        crate::prefetch(m.buf_addr.cast::<u8>().wrapping_add(usize::from(m.data_off)));
    }

    /// Whole packet length (all segments).
    #[inline]
    pub fn len(&self) -> usize {
        self.m().pkt_len as usize
    }

    /// Whether the packet holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.m().pkt_len == 0
    }

    /// Whether all bytes are in the first segment ([`Packet::data`] is the
    /// whole packet).
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.m().nb_segs == 1
    }

    /// Bytes of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's
        // buffer, which we own and which is initialised up to data_len.
        unsafe {
            std::slice::from_raw_parts(m.buf_addr.cast::<u8>().add(usize::from(m.data_off)), usize::from(m.data_len))
        }
    }

    /// Mutable bytes of the first segment.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.m_mut();
        // SAFETY: as in `data`, and we hold the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// Free bytes in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.m().data_off)
    }

    /// The `n` bytes before the data in the first segment: what
    /// [`Packet::adj`] took off (the outer headers after decapsulation),
    /// meaningful only while nothing was prepended since.
    #[inline]
    pub fn before(&self, n: usize) -> Option<&[u8]> {
        let m = self.m();
        let at = usize::from(m.data_off).checked_sub(n)?;
        // SAFETY: buf_addr + at .. + n lies inside the mbuf's buffer (its
        // headroom), which we own; the mempool's memory was zeroed when
        // mapped, so the bytes are initialised.
        Some(unsafe { std::slice::from_raw_parts(m.buf_addr.cast::<u8>().add(at), n) })
    }

    /// Free bytes after the data of the last segment (single-segment
    /// packets only; 0 otherwise).
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.m();
        if m.nb_segs != 1 {
            return 0;
        }
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    /// Grows the packet at the end by `n` bytes and returns them, or None
    /// when there is no room (nothing changes then).
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        let n16 = u16::try_from(n).ok()?;
        let m = self.m_mut();
        let at = usize::from(m.data_off) + usize::from(m.data_len);
        m.data_len += n16;
        m.pkt_len += u32::from(n16);
        // SAFETY: at..at+n is inside the buffer (checked against tailroom).
        Some(unsafe { std::slice::from_raw_parts_mut(m.buf_addr.cast::<u8>().add(at), n) })
    }

    /// Grows the packet at the front by `n` bytes (headroom, for pushing
    /// encapsulation) and returns them, or None when there is no room.
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.headroom() {
            return None;
        }
        let n16 = u16::try_from(n).ok()?;
        let m = self.m_mut();
        m.data_off -= n16;
        m.data_len += n16;
        m.pkt_len += u32::from(n16);
        let at = usize::from(m.data_off);
        // SAFETY: the new front lies inside the buffer (checked against
        // headroom).
        Some(unsafe { std::slice::from_raw_parts_mut(m.buf_addr.cast::<u8>().add(at), n) })
    }

    /// Removes `n` bytes from the front (pops headers); false when the first
    /// segment is shorter.
    pub fn adj(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else { return false };
        let m = self.m_mut();
        if n16 > m.data_len {
            return false;
        }
        m.data_off += n16;
        m.data_len -= n16;
        m.pkt_len -= u32::from(n16);
        true
    }

    /// Removes `n` bytes from the end; false when the (single) segment is
    /// shorter or the packet has several segments.
    pub fn trim(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else { return false };
        let m = self.m_mut();
        if m.nb_segs != 1 || n16 > m.data_len {
            return false;
        }
        m.data_len -= n16;
        m.pkt_len -= u32::from(n16);
        true
    }

    /// The DPDK port id it was received on.
    #[inline]
    pub fn rx_port(&self) -> u16 {
        self.m().port
    }

    /// The NIC's RSS hash, when the NIC gave one.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let m = self.m();
        if m.ol_flags & crate::port::offload_flags().mbuf_rx_rss_hash != 0 {
            // SAFETY: the hash union holds the RSS value when the flag is set.
            Some(unsafe { m.__bindgen_anon_2.hash.rss })
        } else {
            None
        }
    }

    /// Offload flags (`RTE_MBUF_F_*`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.m().ol_flags
    }

    /// Asks the NIC for transmit offloads: `flags` (`RTE_MBUF_F_TX_*`) are
    /// added to the offload flags and the header lengths word is set
    /// (see [`tx_offload_word`]).
    #[inline]
    pub fn set_tx_offload(&mut self, flags: u64, lengths: u64) {
        let m = self.m_mut();
        m.ol_flags |= flags;
        m.__bindgen_anon_3.tx_offload = lengths;
    }

    /// The header lengths word for transmit offloads, as
    /// [`Packet::set_tx_offload`] sets it.
    #[inline]
    pub fn tx_offload(&self) -> u64 {
        // SAFETY: tx_offload is the union's whole 64-bit view.
        unsafe { self.m().__bindgen_anon_3.tx_offload }
    }

    /// The segment size a large TCP segment is to be cut to (a guest's
    /// GSO request: `RTE_MBUF_F_RX_LRO` or `RTE_MBUF_F_TX_TCP_SEG` with
    /// `tso_segsz`); None for any other packet.
    #[inline]
    pub fn gso_size(&self) -> Option<u16> {
        let f = crate::port::seg_flags();
        if self.m().ol_flags & (f.rx_lro | f.tx_tcp_seg) == 0 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)] // a 16-bit field of the word
        let mss = (self.tx_offload() >> 24) as u16;
        (mss > 0).then_some(mss)
    }

    /// Whether the L4 checksum in the data is a partial one to complete
    /// (`RTE_MBUF_F_RX_L4_CKSUM_NONE`: a guest left it to the switch).
    #[inline]
    pub fn l4_cksum_partial(&self) -> bool {
        let f = crate::port::offload_flags();
        self.m().ol_flags & f.mbuf_rx_l4_cksum_mask == crate::port::seg_flags().rx_l4_cksum_none
    }

    /// Whether a guest left work to the switch: a large segment to cut
    /// ([`Packet::gso_size`]'s flags) or a partial L4 checksum.
    #[inline]
    pub fn guest_offloads(&self) -> bool {
        let f = crate::port::seg_flags();
        self.m().ol_flags & (f.rx_lro | f.tx_tcp_seg) != 0 || self.l4_cksum_partial()
    }

    /// Clears what [`Packet::guest_offloads`] reads (the segmentation
    /// flags, the L4 checksum state, the lengths word), so that none of it
    /// is taken for a request to the next NIC; the RSS hash stays.
    #[inline]
    pub fn clear_guest_offloads(&mut self) {
        let f = crate::port::seg_flags();
        let l4 = crate::port::offload_flags().mbuf_rx_l4_cksum_mask;
        let m = self.m_mut();
        m.ol_flags &= !(f.rx_lro | f.tx_tcp_seg | l4);
        m.__bindgen_anon_3.tx_offload = 0;
    }

    /// Copies `out.len()` bytes from offset `off` of the whole packet
    /// (across segments) into `out`; false when the packet is shorter.
    pub fn read_at(&self, mut off: usize, out: &mut [u8]) -> bool {
        let mut done = 0;
        let mut seg: *const rte_mbuf = self.raw.as_ptr();
        while done < out.len() {
            if seg.is_null() {
                return false;
            }
            // SAFETY: seg is this packet's mbuf or one of its chain, all
            // valid while we own the packet.
            let m = unsafe { &*seg };
            let len = usize::from(m.data_len);
            if off < len {
                let n = (len - off).min(out.len() - done);
                // SAFETY: buf_addr + data_off + off .. + n lies inside this
                // segment's initialised data.
                let src = unsafe {
                    std::slice::from_raw_parts(m.buf_addr.cast::<u8>().add(usize::from(m.data_off) + off), n)
                };
                out[done..done + n].copy_from_slice(src);
                done += n;
                off = 0;
            } else {
                off -= len;
            }
            seg = m.next;
        }
        true
    }

    /// Metadata in the private area.
    #[inline]
    pub fn meta(&self) -> &PacketMeta {
        // SAFETY: every mbuf of our pools has a private area of at least
        // size_of::<PacketMeta>() right after the rte_mbuf (Mempool::new),
        // aligned to 8 (rte_mbuf is 128-byte aligned and sized).
        unsafe { &*self.raw.as_ptr().add(1).cast::<PacketMeta>() }
    }

    /// Mutable metadata.
    #[inline]
    pub fn meta_mut(&mut self) -> &mut PacketMeta {
        // SAFETY: as in `meta`, and we own the mbuf exclusively.
        unsafe { &mut *self.raw.as_ptr().add(1).cast::<PacketMeta>() }
    }
}

impl Drop for Packet {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it goes back to its pool exactly once.
        unsafe { dpdk_sys::vs_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// The mbuf's transmit-offload lengths word (DPDK's `rte_mbuf_tx_offload`):
/// inner L2, L3, L4 lengths, TSO segment size, outer L3 and L2 lengths.
pub fn tx_offload_word(l2: u64, l3: u64, l4: u64, tso: u64, outer_l3: u64, outer_l2: u64) -> u64 {
    // SAFETY: a pure function of its arguments.
    unsafe { dpdk_sys::vs_tx_offload(l2, l3, l4, tso, outer_l3, outer_l2) }
}

/// Up to [`BATCH_SIZE`] packets, inline (no heap). Dropping a batch frees
/// what is left in it with one bulk free.
pub struct Batch {
    len: usize,
    pkts: [MaybeUninit<Packet>; BATCH_SIZE],
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("len", &self.len).finish()
    }
}

impl Batch {
    /// An empty batch.
    #[inline]
    pub const fn new() -> Batch {
        Batch { len: 0, pkts: [const { MaybeUninit::uninit() }; BATCH_SIZE] }
    }

    /// Packets held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// No packets.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No room for another.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BATCH_SIZE
    }

    /// Free slots.
    #[inline]
    pub fn room(&self) -> usize {
        BATCH_SIZE - self.len
    }

    /// Adds a packet; gives it back when full.
    #[inline]
    pub fn push(&mut self, p: Packet) -> Result<(), Packet> {
        if self.is_full() {
            return Err(p);
        }
        self.pkts[self.len].write(p);
        self.len += 1;
        Ok(())
    }

    /// Removes the last packet.
    #[inline]
    pub fn pop(&mut self) -> Option<Packet> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot len was initialised and is now outside the live range.
        Some(unsafe { self.pkts[self.len].assume_init_read() })
    }

    /// The packets.
    #[inline]
    pub fn as_slice(&self) -> &[Packet] {
        // SAFETY: the first len slots are initialised; MaybeUninit<Packet>
        // has Packet's layout.
        unsafe { std::slice::from_raw_parts(self.pkts.as_ptr().cast::<Packet>(), self.len) }
    }

    /// The packets, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Packet] {
        // SAFETY: as in as_slice, with exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.pkts.as_mut_ptr().cast::<Packet>(), self.len) }
    }

    /// Keeps the packets for which `keep` says true, in order; the others
    /// are freed with one bulk free. Returns how many were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Packet) -> bool) -> usize {
        let mut dropped: [*mut rte_mbuf; BATCH_SIZE] = [std::ptr::null_mut(); BATCH_SIZE];
        let mut nd = 0;
        let mut w = 0;
        for r in 0..self.len {
            // SAFETY: slot r < len is initialised; each slot is read once
            // and either written back at w <= r or recorded for freeing.
            let mut p = unsafe { self.pkts[r].assume_init_read() };
            if keep(&mut p) {
                self.pkts[w].write(p);
                w += 1;
            } else {
                dropped[nd] = p.into_raw().as_ptr();
                nd += 1;
            }
        }
        self.len = w;
        if nd > 0 {
            // SAFETY: the pointers are mbufs we owned and no longer hold.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(dropped.as_mut_ptr(), burst_count(nd)) };
        }
        nd
    }

    /// Fills the batch's free room with empty packets from `pool` in one
    /// bulk allocation (all or nothing). Their metadata is not cleared:
    /// for generators that write every byte they use. Returns how many were
    /// added (0 when the pool cannot give that many).
    pub fn alloc_bulk(&mut self, pool: &Mempool) -> usize {
        let n = self.room();
        if n == 0 {
            return 0;
        }
        // SAFETY: spare_ptr points at n free slots; on success the shim
        // fills all n with fresh mbufs that are ours; on failure none.
        let ret = unsafe { dpdk_sys::vs_pktmbuf_alloc_bulk(pool.as_ptr(), self.spare_ptr(), burst_count(n)) };
        if ret != 0 {
            return 0;
        }
        self.len += n;
        n
    }

    /// Moves as many packets from `other` (from its end) as fit here;
    /// returns how many moved. Only the used slots are copied.
    #[inline]
    pub fn append(&mut self, other: &mut Batch) -> usize {
        let n = other.len.min(self.room());
        let from = other.len - n;
        // SAFETY: other's slots from..from+n are initialised and are given
        // up (other.len shrinks); our slots len..len+n are free.
        unsafe {
            std::ptr::copy_nonoverlapping(other.pkts.as_ptr().add(from), self.pkts.as_mut_ptr().add(self.len), n);
        }
        other.len = from;
        self.len += n;
        n
    }

    /// Frees every packet with one bulk free.
    #[inline]
    pub fn clear(&mut self) {
        if self.len > 0 {
            let n = self.len;
            self.len = 0;
            // SAFETY: the first n slots held owned mbufs (Packet is a
            // transparent NonNull<rte_mbuf>); len is 0 so none is freed twice.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr().cast::<*mut rte_mbuf>(), burst_count(n)) };
        }
    }

    /// Pointer to the slots for an rx burst into the free part; call
    /// [`Batch::set_len`] with the count received.
    #[inline]
    pub(crate) fn spare_ptr(&mut self) -> *mut *mut rte_mbuf {
        // SAFETY: len <= BATCH_SIZE, so the pointer is in bounds or one
        // past the end.
        unsafe { self.pkts.as_mut_ptr().add(self.len).cast::<*mut rte_mbuf>() }
    }

    /// Pointer to the packets for a tx burst.
    #[inline]
    pub(crate) fn as_raw_ptr(&mut self) -> *mut *mut rte_mbuf {
        self.pkts.as_mut_ptr().cast::<*mut rte_mbuf>()
    }

    /// # Safety
    /// The slots up to `len` must hold owned, valid mbufs.
    #[inline]
    pub(crate) unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= BATCH_SIZE);
        self.len = len;
    }

    /// Forgets the first `n` packets (a tx burst took them) and moves the
    /// rest to the front.
    #[inline]
    pub(crate) fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        let rest = self.len - n;
        if rest > 0 && n > 0 {
            // SAFETY: slots n..len are initialised; copy them (bitwise moves
            // of owning pointers) to 0..rest; the old slots are forgotten.
            unsafe { std::ptr::copy(self.pkts.as_ptr().add(n), self.pkts.as_mut_ptr(), rest) };
        }
        self.len = rest;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Takes a batch's packets out in order ([`Batch::drain`]); what is not
/// taken is freed (one bulk free) when the drain is dropped.
pub struct Drain<'a> {
    batch: &'a mut Batch,
    next: usize,
    end: usize,
}

impl Batch {
    /// Takes every packet out, in order; the batch is empty afterwards.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let end = self.len;
        // The slots stay initialised until read; len = 0 means the batch
        // itself will not free them.
        self.len = 0;
        Drain { batch: self, next: 0, end }
    }
}

impl Iterator for Drain<'_> {
    type Item = Packet;
    #[inline]
    fn next(&mut self) -> Option<Packet> {
        if self.next == self.end {
            return None;
        }
        // SAFETY: slots next..end were initialised and are read once each.
        let p = unsafe { self.batch.pkts[self.next].assume_init_read() };
        self.next += 1;
        Some(p)
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        let rest = self.end - self.next;
        if rest > 0 {
            // SAFETY: slots next..end hold owned mbufs nobody has read.
            unsafe {
                dpdk_sys::rte_pktmbuf_free_bulk(
                    self.batch.pkts.as_mut_ptr().add(self.next).cast::<*mut rte_mbuf>(),
                    burst_count(rest),
                );
            }
        }
    }
}

impl Extend<Packet> for Batch {
    /// Adds packets until full; packets past the capacity are dropped
    /// (freed), so use [`Batch::room`] first when that matters.
    fn extend<I: IntoIterator<Item = Packet>>(&mut self, iter: I) {
        for p in iter {
            let _ = self.push(p);
        }
    }
}
