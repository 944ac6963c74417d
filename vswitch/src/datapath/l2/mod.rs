//! L2 switching on PMD threads (what OpenFlow calls NORMAL): MAC learning
//! per bridge and VLAN, flooding of broadcast, multicast and unknown
//! unicast, and access/trunk VLAN semantics with tag push and pop.
//!
//! VLAN rules, as Open vSwitch applies them:
//! - an **access** port carries one VLAN untagged: untagged frames (or
//!   priority-tagged, VID 0) join its VLAN; tagged frames are dropped;
//!   frames leave it untagged;
//! - a **trunk** port carries tagged frames of its allowed VLANs (all when
//!   the list is empty); untagged frames belong to VLAN 0, allowed only when
//!   the list is empty; frames of VLAN 0 leave untagged, others tagged;
//! - a port with **no VLAN** handling carries VLAN 0 and leaves frames as
//!   they are.
//!
//! A frame whose destination was learned on its own input port is dropped
//! (it has already reached its segment). ARP requests for addresses the
//! bridge's [`arp_responder`] knows are answered at once, never flooded.
//! Every drop has a reason and a counter ([`L2Counters`]).

pub mod arp_responder;
pub mod mac_table;

use arp_responder::ArpResponder;
use mac_table::{Learned, MacTable};
use pmd::packet::Batch;
use pmd::pmd::{Pipeline, RxqRef, TxBatches};
use pmd::{Mempool, Packet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use wire::EthernetAddress;

const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

/// VLAN behaviour of one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortVlan {
    /// One VLAN, untagged on the wire.
    Access(u16),
    /// Tagged VLANs; an empty set allows every VLAN (and untagged = VLAN 0).
    Trunk(VlanSet),
    /// No VLAN handling: VLAN 0, frames untouched.
    None,
}

/// A set of VLAN ids (0-4095) as a bitmap; empty means "all".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VlanSet {
    bits: Option<Box<[u64; 64]>>,
}

impl VlanSet {
    /// Every VLAN.
    pub fn all() -> VlanSet {
        VlanSet { bits: None }
    }
    /// Exactly these.
    pub fn of(vlans: &[u16]) -> VlanSet {
        if vlans.is_empty() {
            return VlanSet::all();
        }
        let mut b = Box::new([0u64; 64]);
        for v in vlans {
            let v = usize::from(*v & 0x0fff);
            b[v / 64] |= 1 << (v % 64);
        }
        VlanSet { bits: Some(b) }
    }
    /// Whether `vlan` is in the set.
    #[inline]
    pub fn contains(&self, vlan: u16) -> bool {
        match &self.bits {
            None => true,
            Some(b) => {
                let v = usize::from(vlan & 0x0fff);
                b[v / 64] & (1 << (v % 64)) != 0
            }
        }
    }
    fn is_all(&self) -> bool {
        self.bits.is_none()
    }
}

impl PortVlan {
    /// The VLAN a frame arriving here belongs to, or None to drop it.
    #[inline]
    fn ingress(&self, tag: Option<u16>) -> Option<u16> {
        let vid = tag.filter(|v| *v != 0);
        match self {
            PortVlan::Access(t) => vid.is_none().then_some(*t),
            PortVlan::Trunk(set) => match vid {
                Some(v) => set.contains(v).then_some(v),
                None => set.is_all().then_some(0),
            },
            PortVlan::None => Some(0),
        }
    }
    /// Whether frames of `vlan` may leave here.
    #[inline]
    fn carries(&self, vlan: u16) -> bool {
        match self {
            PortVlan::Access(t) => *t == vlan,
            PortVlan::Trunk(set) => {
                if vlan == 0 {
                    set.is_all()
                } else {
                    set.contains(vlan)
                }
            }
            PortVlan::None => vlan == 0,
        }
    }
}

/// Counters of one PMD thread's L2 pipeline, written by that thread only.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct L2Counters {
    /// Frames sent to one learned port.
    pub unicast: AtomicU64,
    /// Frames flooded (broadcast, multicast, unknown unicast).
    pub flooded: AtomicU64,
    /// Copies made for flooding.
    pub flood_copies: AtomicU64,
    /// Dropped: VLAN not allowed on the input port.
    pub drop_vlan: AtomicU64,
    /// Dropped: destination learned on the input port.
    pub drop_hairpin: AtomicU64,
    /// Dropped: shorter than an Ethernet header (or a cut VLAN tag).
    pub drop_malformed: AtomicU64,
    /// Dropped: no mbuf for a flood copy or a tag.
    pub drop_nombuf: AtomicU64,
    /// Source MACs that moved to another port.
    pub mac_moves: AtomicU64,
    /// ARP requests the responder answered.
    pub arp_answered: AtomicU64,
    /// ARP requests for addresses the responder does not know (flooded).
    pub arp_passed: AtomicU64,
}

/// Single writer (its PMD thread): load + store, no locked RMW.
use pmd::port::SwCounters;
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    SwCounters::bump(c, n);
}

/// Totals over every PMD thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L2Stats {
    /// See [`L2Counters::unicast`].
    pub unicast: u64,
    /// See [`L2Counters::flooded`].
    pub flooded: u64,
    /// See [`L2Counters::flood_copies`].
    pub flood_copies: u64,
    /// See [`L2Counters::drop_vlan`].
    pub drop_vlan: u64,
    /// See [`L2Counters::drop_hairpin`].
    pub drop_hairpin: u64,
    /// See [`L2Counters::drop_malformed`].
    pub drop_malformed: u64,
    /// See [`L2Counters::drop_nombuf`].
    pub drop_nombuf: u64,
    /// See [`L2Counters::mac_moves`].
    pub mac_moves: u64,
    /// See [`L2Counters::arp_answered`].
    pub arp_answered: u64,
    /// See [`L2Counters::arp_passed`].
    pub arp_passed: u64,
}

/// What every PMD thread's pipeline of one bridge shares: a snapshot of
/// its membership, with the MAC table and counters that outlive snapshots.
#[derive(Debug)]
pub struct L2Bridge {
    /// VLAN behaviour per port slot (the PmdSet's slots); ports of other
    /// bridges and empty slots are `None`.
    pub ports: Vec<Option<PortVlan>>,
    /// The bridge's MAC table.
    pub table: Arc<MacTable>,
    /// Mbufs for flood copies and pushed tags.
    pub pool: Arc<Mempool>,
    /// Addresses whose ARP requests the PMD threads answer.
    pub arp: Arc<ArpResponder>,
    /// Tunnel ports by slot (as [`crate::datapath::ofdp::TUNNEL_FLOW_KEY`]
    /// and its sibling; 0: other ports): a frame to a flow-keyed tunnel
    /// takes the key it came in with, or 0.
    pub tunnels: Vec<u8>,
    counters: Arc<[L2Counters]>,
}

impl L2Bridge {
    /// A bridge over every port (by port index) with a table of
    /// `mac_capacity`.
    pub fn new(ports: Vec<PortVlan>, mac_capacity: u32, pool: Arc<Mempool>) -> Arc<L2Bridge> {
        L2Bridge::with_members(ports.into_iter().map(Some).collect(), mac_capacity, pool)
    }

    /// A bridge over the ports that are `Some` (the others belong to other
    /// bridges on the same PMD threads).
    pub fn with_members(ports: Vec<Option<PortVlan>>, mac_capacity: u32, pool: Arc<Mempool>) -> Arc<L2Bridge> {
        Arc::new(L2Bridge {
            ports,
            table: Arc::new(MacTable::new(mac_capacity)),
            pool,
            arp: Arc::new(ArpResponder::default()),
            tunnels: Vec::new(),
            counters: (0..pmd::port::MAX_PMDS).map(|_| L2Counters::default()).collect(),
        })
    }

    /// The same bridge (MAC table, counters, pool) with another membership
    /// (and tunnel ports, by slot): the snapshot the control thread
    /// publishes when ports change.
    pub fn with_ports(&self, ports: Vec<Option<PortVlan>>, tunnels: Vec<u8>) -> Arc<L2Bridge> {
        Arc::new(L2Bridge {
            ports,
            table: self.table.clone(),
            pool: self.pool.clone(),
            arp: self.arp.clone(),
            tunnels,
            counters: self.counters.clone(),
        })
    }

    /// The same bridge with another ARP responder.
    pub fn with_arp(&self, arp: ArpResponder) -> Arc<L2Bridge> {
        Arc::new(L2Bridge {
            ports: self.ports.clone(),
            table: self.table.clone(),
            pool: self.pool.clone(),
            arp: Arc::new(arp),
            tunnels: self.tunnels.clone(),
            counters: self.counters.clone(),
        })
    }

    /// The pipeline for PMD thread `pmd`.
    pub fn pipeline(self: &Arc<Self>, pmd: usize) -> L2Pipeline {
        L2Pipeline { bridge: self.clone(), pmd: pmd.min(pmd::port::MAX_PMDS - 1), tsc_per_s: pmd::tsc_hz().max(1) }
    }

    /// Counters summed over the PMD threads.
    pub fn stats(&self) -> L2Stats {
        let mut s = L2Stats::default();
        for c in self.counters.iter() {
            let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s.unicast += g(&c.unicast);
            s.flooded += g(&c.flooded);
            s.flood_copies += g(&c.flood_copies);
            s.drop_vlan += g(&c.drop_vlan);
            s.drop_hairpin += g(&c.drop_hairpin);
            s.drop_malformed += g(&c.drop_malformed);
            s.drop_nombuf += g(&c.drop_nombuf);
            s.mac_moves += g(&c.mac_moves);
            s.arp_answered += g(&c.arp_answered);
            s.arp_passed += g(&c.arp_passed);
        }
        s
    }

    /// Seconds on the clock the learning table uses.
    pub fn now_s() -> u32 {
        #[allow(clippy::cast_possible_truncation)] // wraps after 136 years of uptime; ages use wrapping arithmetic
        let s = (pmd::rdtsc() / pmd::tsc_hz().max(1)) as u32;
        s
    }
}

/// One PMD thread's L2 pipeline.
#[derive(Debug)]
pub struct L2Pipeline {
    bridge: Arc<L2Bridge>,
    pmd: usize,
    tsc_per_s: u64,
}

/// The frame's 802.1Q/802.1ad tag, if any: (VID, offset of the inner
/// EtherType). None for a frame too short for its headers.
#[inline]
fn read_tag(d: &[u8]) -> Option<Option<u16>> {
    if d.len() < wire::ethernet::HEADER_LEN {
        return None;
    }
    let et = u16::from_be_bytes([d[12], d[13]]);
    if et == TPID_8021Q || et == TPID_8021AD {
        if d.len() < 18 {
            return None;
        }
        return Some(Some(u16::from_be_bytes([d[14], d[15]]) & 0x0fff));
    }
    Some(None)
}

/// The key a frame (or its copy) from a port of `tunnels[in_port]` takes
/// to a flow-keyed tunnel `out`: the one it came in with, or 0.
#[inline]
fn stamp_key(tunnels: &[u8], in_port: usize, out: usize, p: &mut Packet, came_with: u32) {
    if tunnels.get(out).is_some_and(|t| t & crate::datapath::ofdp::TUNNEL_FLOW_KEY != 0) {
        let from_tunnel = tunnels.get(in_port).is_some_and(|t| *t != 0);
        p.meta_mut().tun_id = if from_tunnel { came_with } else { 0 };
    }
}

/// Rewrites the frame's tagging for `out`: strip, push or keep.
#[inline]
fn egress(p: &mut Packet, out: &PortVlan, vlan: u16, tagged: bool) -> bool {
    let want_tag = match out {
        PortVlan::Access(_) => false,
        PortVlan::Trunk(_) => vlan != 0,
        PortVlan::None => return true,
    };
    if tagged && !want_tag {
        // Pop: the MACs move 4 bytes on, over the tag.
        let d = p.data_mut();
        d.copy_within(0..12, 4);
        return p.adj(4);
    }
    if want_tag && !tagged {
        if p.prepend(4).is_none() {
            return false;
        }
        let d = p.data_mut();
        d.copy_within(4..16, 0);
        d[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
        d[14..16].copy_from_slice(&(vlan & 0x0fff).to_be_bytes());
        return true;
    }
    if want_tag && tagged {
        // Keep PCP/DEI, set the VID (the same unless VLANs were translated).
        let d = p.data_mut();
        let tci = (u16::from_be_bytes([d[14], d[15]]) & 0xf000) | (vlan & 0x0fff);
        d[14..16].copy_from_slice(&tci.to_be_bytes());
    }
    true
}

impl Pipeline for L2Pipeline {
    fn process(&mut self, rxq: &RxqRef, batch: &mut Batch, tx: &mut TxBatches) {
        let br = &*self.bridge;
        let c = &br.counters[self.pmd];
        #[allow(clippy::cast_possible_truncation)] // see L2Bridge::now_s
        let now_s = (pmd::rdtsc() / self.tsc_per_s) as u32;
        let in_port = rxq.port;
        let Some(in_vlan) = &br.ports[in_port] else {
            // Not ours: the dispatcher sends each port's batches to its
            // own bridge, so this is a wiring mistake; drop, never panic.
            let n = batch.len() as u64;
            batch.clear();
            bump(&c.drop_malformed, n);
            return;
        };
        #[allow(clippy::cast_possible_truncation)] // port indices are below 2^32
        let in_port32 = in_port as u32;
        // Stage 1 (VPP's lesson): start loading every packet's MAC-table
        // buckets, so that stage 2 finds them in cache instead of waiting
        // for memory once per packet.
        // What stage 1 read of each frame's tag, so stage 2 does not read it
        // again (None: too short for its headers).
        let mut tags = [None::<Option<u16>>; pmd::BATCH_SIZE];
        for (p, t) in batch.as_slice().iter().zip(tags.iter_mut()) {
            let d = p.data();
            *t = read_tag(d);
            if let Some(vlan) = t.and_then(|t| in_vlan.ingress(t)) {
                br.table.prefetch(vlan, EthernetAddress([d[6], d[7], d[8], d[9], d[10], d[11]]));
                br.table.prefetch(vlan, EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]]));
            }
        }
        // VPP's l2-learn lesson: consecutive frames of one conversation
        // (same VLAN, same MAC pair) share one decision, so a run of them
        // learns and looks up once. (VLAN, the 12 MAC bytes, the lookup.)
        let mut last: Option<(u16, [u8; 12], Option<u32>)> = None;
        let mut unicast = 0u64;
        for (mut p, tag) in batch.drain().zip(tags) {
            let Some(tag) = tag else {
                bump(&c.drop_malformed, 1);
                continue;
            };
            let Some(vlan) = in_vlan.ingress(tag) else {
                bump(&c.drop_vlan, 1);
                continue;
            };
            if !br.arp.is_empty() && p.data()[0] == 0xff {
                match br.arp.answer(p.data_mut(), if tag.is_some() { 18 } else { 14 }, vlan) {
                    Some(true) => {
                        bump(&c.arp_answered, 1);
                        tx.send(in_port, p);
                        continue;
                    }
                    Some(false) => bump(&c.arp_passed, 1),
                    None => {}
                }
            }
            let d = p.data();
            let mut macs = [0u8; 12];
            macs.copy_from_slice(&d[..12]);
            let dst = EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]]);
            let looked_up = match last {
                Some((v, m, out)) if v == vlan && m == macs => out,
                _ => {
                    let src = EthernetAddress([d[6], d[7], d[8], d[9], d[10], d[11]]);
                    if src.is_unicast() {
                        if let Learned::Moved(_) = br.table.learn(vlan, src, in_port32, now_s) {
                            bump(&c.mac_moves, 1);
                        }
                    }
                    let out = if dst.is_unicast() { br.table.lookup(vlan, dst) } else { None };
                    last = Some((vlan, macs, out));
                    out
                }
            };
            let tagged = tag.is_some();
            if let Some(out) = looked_up {
                let out = out as usize;
                if out == in_port {
                    bump(&c.drop_hairpin, 1);
                    continue;
                }
                if let Some(Some(out_vlan)) = br.ports.get(out).filter(|v| v.as_ref().is_some_and(|v| v.carries(vlan)))
                {
                    if egress(&mut p, out_vlan, vlan, tagged) {
                        unicast += 1;
                        let came_with = p.meta().tun_id;
                        stamp_key(&br.tunnels, in_port, out, &mut p, came_with);
                        tx.send(out, p);
                    } else {
                        bump(&c.drop_nombuf, 1);
                    }
                    continue;
                }
            }
            // Flood: every other port of the VLAN; copies for all but the
            // last, which takes the original.
            bump(&c.flooded, 1);
            let outs = br
                .ports
                .iter()
                .enumerate()
                .filter(|(i, v)| *i != in_port && v.as_ref().is_some_and(|v| v.carries(vlan)))
                .map(|(i, _)| i);
            let mut last = None;
            for o in outs {
                if let Some(prev) = last.replace(o) {
                    // Every segment: a jumbo frame may be a chain.
                    match p.copy(&br.pool) {
                        Some(mut copy) => {
                            bump(&c.flood_copies, 1);
                            if egress(&mut copy, br.ports[prev].as_ref().unwrap_or(&PortVlan::None), vlan, tagged) {
                                stamp_key(&br.tunnels, in_port, prev, &mut copy, p.meta().tun_id);
                                tx.send(prev, copy);
                            } else {
                                bump(&c.drop_nombuf, 1);
                            }
                        }
                        None => bump(&c.drop_nombuf, 1),
                    }
                }
            }
            if let Some(o) = last {
                if egress(&mut p, br.ports[o].as_ref().unwrap_or(&PortVlan::None), vlan, tagged) {
                    let came_with = p.meta().tun_id;
                    stamp_key(&br.tunnels, in_port, o, &mut p, came_with);
                    tx.send(o, p);
                } else {
                    bump(&c.drop_nombuf, 1);
                }
            }
        }
        bump(&c.unicast, unicast);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_ingress_and_egress_rules() {
        let acc = PortVlan::Access(10);
        assert_eq!(acc.ingress(None), Some(10));
        assert_eq!(acc.ingress(Some(0)), Some(10), "priority-tagged counts as untagged");
        assert_eq!(acc.ingress(Some(10)), None, "tagged frames are dropped on access ports");
        let tr = PortVlan::Trunk(VlanSet::of(&[10, 20]));
        assert_eq!(tr.ingress(Some(20)), Some(20));
        assert_eq!(tr.ingress(Some(30)), None);
        assert_eq!(tr.ingress(None), None, "no untagged frames on a trunk with a VLAN list");
        let all = PortVlan::Trunk(VlanSet::all());
        assert_eq!(all.ingress(None), Some(0));
        assert_eq!(all.ingress(Some(4000)), Some(4000));
        assert_eq!(PortVlan::None.ingress(Some(5)), Some(0));
        assert!(acc.carries(10) && !acc.carries(20));
        assert!(tr.carries(10) && !tr.carries(0) && !tr.carries(30));
        assert!(all.carries(0) && all.carries(77));
        assert!(PortVlan::None.carries(0) && !PortVlan::None.carries(10));
    }

    #[test]
    fn tags_are_read_and_cut_frames_refused() {
        let mut f = vec![0u8; 18];
        f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        f[14..16].copy_from_slice(&0xa00au16.to_be_bytes());
        assert_eq!(read_tag(&f), Some(Some(10)));
        assert_eq!(read_tag(&f[..16]), None);
        assert_eq!(read_tag(&f[..13]), None);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(read_tag(&f[..14]), Some(None));
    }
}
