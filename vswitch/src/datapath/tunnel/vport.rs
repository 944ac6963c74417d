//! A tunnel port as the PMD threads send through it: the encapsulation
//! of each tx batch (with the Geneve options and remote an OpenFlow
//! output stamped), frames too big answered with ICMP, frames without a
//! path handed to the control thread.

use super::meta::{remote_of, well_formed};
use super::{
    frag_needed, gre_checksum, inner_hash, packet_too_big, src_port, udp_checksum, Held, Injected, TunnelCounters,
    TunnelKind, TunnelPath, TunnelSpec, Wake, PMTU_PER_SECOND,
};
use pmd::packet::Batch;
use pmd::pmd::VirtualPort;
use pmd::port::SwCounters;
use pmd::Packet;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// The paths of a tunnel whose remote is `flow`, by remote (IPv4 as
/// IPv4-mapped IPv6).
pub type FlowPaths = HashMap<[u8; 16], TunnelPath, crate::datapath::FxBuildHasher>;

/// A tunnel port as the PMD threads send through it.
#[derive(Debug)]
pub struct TunnelVport {
    /// Its slot.
    pub slot: usize,
    /// Settings.
    pub spec: TunnelSpec,
    /// Where frames go; None: the next hop is not resolved (or there is no
    /// route), and frames go to `hold`.
    pub path: Option<TunnelPath>,
    /// Frames waiting for the next hop go to the control thread here.
    pub hold: Option<SyncSender<Held>>,
    /// Wakes the control thread when a frame was held.
    pub wake: Option<Wake>,
    /// Where the ICMP for a too big frame goes (PMD thread 0, which runs
    /// it through the bridge as received on this port).
    pub inject: Option<SyncSender<Injected>>,
    /// Counters, shared by every vport the port has had.
    pub counters: Arc<[TunnelCounters]>,
    /// `remote_ip = "flow"`: the paths to the remotes resolved so far
    /// (frames to others go to the control thread, which resolves them).
    pub flows: Arc<FlowPaths>,
    /// Mbufs for the segments of a guest's large TCP segments (None: they
    /// are dropped as too big).
    pub pool: Option<Arc<pmd::Mempool>>,
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    SwCounters::bump(c, n);
}

impl TunnelVport {
    /// A vport for `slot` sending through `path`, with nowhere to hold
    /// frames nor to send ICMP, no flow remotes and no pool (the daemon
    /// sets those).
    pub fn new(slot: usize, spec: TunnelSpec, path: Option<TunnelPath>, counters: Arc<[TunnelCounters]>) -> Self {
        TunnelVport {
            slot,
            spec,
            path,
            hold: None,
            wake: None,
            inject: None,
            counters,
            flows: Arc::default(),
            pool: None,
        }
    }

    fn hold(&self, c: &TunnelCounters, batch: &mut Batch) {
        let Some(hold) = &self.hold else {
            bump(&c.drop_no_path, batch.len() as u64);
            for p in batch.drain() {
                unstamped(p);
            }
            return;
        };
        let mut held = 0;
        for p in batch.drain() {
            match hold.try_send(Held { slot: self.slot, packet: p }) {
                Ok(()) => held += 1,
                Err(std::sync::mpsc::TrySendError::Full(h) | std::sync::mpsc::TrySendError::Disconnected(h)) => {
                    bump(&c.drop_no_path, 1);
                    unstamped(h.packet);
                }
            }
        }
        if held > 0 {
            bump(&c.held, held);
            if let Some(w) = &self.wake {
                w.wake();
            }
        }
    }
}

impl TunnelVport {
    /// Answers a frame too big for the tunnel with ICMP "fragmentation
    /// needed" (rate-limited), rewritten in its own mbuf.
    #[cold]
    fn too_big(&self, c: &TunnelCounters, mut p: Packet, path: &TunnelPath) {
        let Some(inject) = &self.inject else { return };
        let now = pmd::rdtsc();
        if now.saturating_sub(c.last_icmp.load(Ordering::Relaxed)) < pmd::tsc_hz() / PMTU_PER_SECOND {
            return;
        }
        let mtu = u16::try_from(path.max_inner - 14).unwrap_or(u16::MAX);
        let mut icmp = [0u8; 128];
        let d = p.data();
        let n = if d.len() > 14 && d[12..14] == [0x86, 0xdd] {
            packet_too_big(d, mtu, &mut icmp)
        } else {
            frag_needed(d, mtu, &mut icmp)
        };
        let Some(n) = n else { return };
        let len = p.len();
        if !p.is_contiguous() || !p.trim(len - n) {
            return;
        }
        p.data_mut()[..n].copy_from_slice(&icmp[..n]);
        c.last_icmp.store(now, Ordering::Relaxed);
        if inject.try_send(Injected::Rx(self.slot, p)).is_ok() {
            bump(&c.pmtu_sent, 1);
        }
    }
}

/// Drops a frame with what its output stamped cleared (no later use of
/// the mbuf may take it for its own).
fn unstamped(mut p: Packet) {
    let m = p.meta_mut();
    m.tun_tx_opts = 0;
    m.tun_remote = [0; 16];
}

/// What one transmit did, counted once at its end.
#[derive(Default)]
struct Tally {
    n: u64,
    bytes: u64,
    too_big: u64,
    no_room: u64,
}

impl TunnelVport {
    /// Encapsulates one frame through `path`: its Geneve options (the
    /// first `tun_tx_opts` bytes, stamped by the output) go in the header.
    #[inline]
    fn encap(
        &self,
        c: &TunnelCounters,
        path: &TunnelPath,
        mut p: Packet,
        id: &mut u64,
        t: &mut Tally,
        out: &mut dyn FnMut(usize, Packet),
    ) {
        let mut opts = 0;
        if path.kind == TunnelKind::Geneve {
            let at = p.headroom();
            let m = p.meta_mut();
            opts = usize::from(std::mem::take(&mut m.tun_tx_opts));
            if usize::from(m.tun_stamp) != at {
                opts = 0;
            }
            if opts > 0 && (opts > 252 || !p.data().get(..opts).is_some_and(well_formed)) {
                // Not options an output stamped: never sent as such.
                opts = 0;
            }
        }
        let mut inner = None;
        if p.guest_offloads() {
            if let Some(mss) = p.gso_size().filter(|_| p.len() > path.max_inner) {
                inner = super::nic::tso(path, &mut p, opts, usize::from(mss), self.spec.csum);
                if inner.is_none() {
                    self.segment(c, path, p, opts, usize::from(mss), id, t, out);
                    return;
                }
            } else if p.l4_cksum_partial() {
                inner = super::nic::l4_checksum(path, &p, opts);
                if inner.is_none() && p.is_contiguous() {
                    super::gso::complete_l4_checksum(&mut p.data_mut()[opts..]);
                }
            }
            // What it was received with is no request to the uplink's NIC.
            p.clear_guest_offloads();
        }
        self.encap_frame(c, path, p, opts, inner, id, t, out);
    }

    /// Cuts a guest's large TCP segment (`opts` bytes of Geneve options in
    /// front) into segments that fit the tunnel, each encapsulated with the
    /// options.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn segment(
        &self,
        c: &TunnelCounters,
        path: &TunnelPath,
        mut p: Packet,
        opts: usize,
        mss: usize,
        id: &mut u64,
        t: &mut Tally,
        out: &mut dyn FnMut(usize, Packet),
    ) {
        let mut o = [0u8; 252];
        o[..opts].copy_from_slice(&p.data()[..opts]);
        let (Some(pool), true) = (&self.pool, p.adj(opts)) else {
            t.too_big += 1;
            return;
        };
        let mut each = |mut s: Packet| {
            if opts > 0 {
                match s.prepend(opts) {
                    Some(front) => front.copy_from_slice(&o[..opts]),
                    None => {
                        t.no_room += 1;
                        return;
                    }
                }
            }
            self.encap_frame(c, path, s, opts, None, id, t, out);
        };
        match super::gso::segment(&p, mss, path.max_inner - opts, pool, &mut each) {
            Some(n) => bump(&c.gso_segments, n as u64),
            None => {
                t.too_big += 1;
                self.too_big(c, p, path);
            }
        }
    }

    /// Encapsulates one frame that needs nothing more done to it in
    /// software (`opts` bytes of Geneve options at its front; `inner`:
    /// what its uplink's NIC does inside it).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn encap_frame(
        &self,
        c: &TunnelCounters,
        path: &TunnelPath,
        mut p: Packet,
        opts: usize,
        inner: Option<super::nic::Inner>,
        id: &mut u64,
        t: &mut Tally,
        out: &mut dyn FnMut(usize, Packet),
    ) {
        let len = p.len();
        // (A frame the NIC segments is as long as the guest made it.)
        if len > path.max_inner && inner.is_none_or(|i| i.tso == 0) {
            t.too_big += 1;
            if p.adj(opts) {
                self.too_big(c, p, path);
            }
            return;
        }
        let hash = p.rss_hash().unwrap_or_else(|| inner_hash(&p.data()[opts..]));
        let Some(hdr) = p.prepend(path.len) else {
            t.no_room += 1;
            return;
        };
        #[allow(clippy::cast_possible_truncation)] // the IPv4 ID wraps at 16 bits
        path.write(hdr, len, *id as u16, src_port(hash));
        if opts > 0 {
            #[allow(clippy::cast_possible_truncation)] // at most 63 words
            {
                hdr[path.l4 + 8] = (opts / 4) as u8;
            }
        }
        *id = id.wrapping_add(1);
        if self.spec.tos_inherit {
            let tos = super::inner_tos(&p.data()[path.len + opts..]);
            path.write_tos(p.data_mut(), tos);
        }
        if self.spec.key_flow {
            let key = p.meta().tun_id;
            path.write_key(p.data_mut(), key);
        }
        let offload = super::nic::offload_for(path, opts, inner.as_ref());
        if let Some(o) = &offload {
            super::nic::apply(&mut p, path, o);
        }
        let software_csum = offload.is_none_or(|o| !o.outer_udp);
        // Over IPv6 a UDP tunnel always has its checksum (RFC 8200).
        let csum = self.spec.csum || (path.v6 && path.kind != TunnelKind::Gre);
        if csum && software_csum && p.is_contiguous() {
            match path.kind {
                TunnelKind::Gre => gre_checksum(p.data_mut()),
                _ => udp_checksum(p.data_mut()),
            }
        }
        t.n += 1;
        t.bytes += (len - opts) as u64;
        out(path.uplink, p);
    }
}

impl VirtualPort for TunnelVport {
    #[inline]
    fn transmit(&self, pmd: usize, batch: &mut Batch, out: &mut dyn FnMut(usize, Packet)) {
        let c = &self.counters[pmd.min(self.counters.len() - 1)];
        let mut id = c.ip_id.load(Ordering::Relaxed);
        let mut t = Tally::default();
        if self.spec.remote_flow {
            // Each frame to the remote its output stamped (taken, so that
            // no later use of the mbuf sees it); those without a path yet
            // wait for the control thread, those without a remote are
            // dropped.
            let mut wait = Batch::new();
            let mut no_remote = 0;
            for mut p in batch.drain() {
                let at = p.headroom();
                let m = p.meta_mut();
                let r = std::mem::take(&mut m.tun_remote);
                if usize::from(m.tun_stamp) != at || remote_of(r).is_none() {
                    no_remote += 1;
                    continue;
                }
                match self.flows.get(&r) {
                    Some(path) => self.encap(c, path, p, &mut id, &mut t, out),
                    None => {
                        p.meta_mut().tun_remote = r;
                        if let Err(p) = wait.push(p) {
                            drop(p);
                            no_remote += 1;
                        }
                    }
                }
            }
            if no_remote > 0 {
                bump(&c.drop_no_path, no_remote);
            }
            if !wait.is_empty() {
                self.hold(c, &mut wait);
            }
        } else {
            let Some(path) = &self.path else {
                self.hold(c, batch);
                return;
            };
            for p in batch.drain() {
                self.encap(c, path, p, &mut id, &mut t, out);
            }
        }
        c.ip_id.store(id, Ordering::Relaxed);
        bump(&c.tx_packets, t.n);
        bump(&c.tx_bytes, t.bytes);
        if t.too_big > 0 {
            bump(&c.drop_too_big, t.too_big);
        }
        if t.no_room > 0 {
            bump(&c.drop_no_room, t.no_room);
        }
    }
}
