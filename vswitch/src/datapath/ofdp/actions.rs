//! OpenFlow actions on a packet, as the slow path and uncompiled replays
//! run them: outputs (ports, IN_PORT, ALL, FLOOD, NORMAL, CONTROLLER),
//! groups, VLAN, MPLS and PBB push and pop, TTLs, set-field, meters; and
//! the walk of one packet through the tables.

use super::counters::BatchCounts;
use super::{OfBridgeDp, Out, ToController};
use crate::datapath::rewrite;
use ofproto::agent::Group;
use ofproto::flow::FlowKey;
use ofproto::ofp::action::port;
use ofproto::ofp::{Action, Field};
use ofproto::xlate::{self, Origin, Walker};
use pmd::pmd::TxBatches;
use pmd::Packet;
use std::sync::atomic::Ordering;

/// The slow path's walker: the packet itself goes through the tables.
pub(super) struct PacketWalk<'a, 's> {
    dp: &'s OfBridgeDp,
    p: Option<Packet>,
    key: FlowKey,
    len: u64,
    out: &'a mut Out,
    tx: &'a mut TxBatches,
    counts: &'a mut BatchCounts<'s>,
}

impl<'s> Walker<'s> for PacketWalk<'_, 's> {
    fn lookup(&mut self, table: u8, t: &'s ofproto::table::FlowTable) -> Option<&'s ofproto::table::FlowEntry> {
        let found = t.lookup(&self.key);
        self.counts.table(&self.dp.tables, table, found.is_some());
        match found {
            Some(e) => self.counts.entry(&e.stats, self.len, self.out.now_ms),
            None => {
                // No table-miss entry: dropped (OpenFlow 1.3, 5.4).
                self.dp.counters.miss_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        found
    }
    fn apply(&mut self, acts: &[Action], origin: Origin) -> bool {
        let Some(p) = self.p.take() else { return false };
        self.p = self.dp.apply(p, &mut self.key, acts, self.out, self.tx, origin);
        self.p.is_some()
    }
    fn write_metadata(&mut self, metadata: u64, mask: u64) {
        xlate::write_metadata(&mut self.key, metadata, mask);
    }
    fn meter(&mut self, meter: u32) -> bool {
        match self.p.as_mut() {
            Some(p) => self.dp.meter(meter, p, self.len, self.out.now_ns),
            None => false,
        }
    }
}

impl OfBridgeDp {
    /// Runs meter `m` on a packet of `len` bytes: false when a drop band
    /// dropped it.
    pub(super) fn meter(&self, m: u32, p: &mut Packet, len: u64, now_ns: u64) -> bool {
        if let Some(band) = self.meters.get(&m).and_then(|mt| mt.apply(len, now_ns)) {
            if band.band_type == 1 {
                self.counters.meter_drops.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            // DSCP remark: raise the drop precedence (RFC 2597 AFxy: y in
            // DSCP bits 1-2) by prec_level.
            rewrite::remark_dscp(p.data_mut(), band.prec_level);
        }
        true
    }

    /// Runs one packet (its key `key`) through the tables: packet-outs
    /// to OFPP_TABLE and keys whose decision cannot be cached.
    pub(super) fn run<'s>(
        &'s self,
        p: Packet,
        key: FlowKey,
        out: &mut Out,
        tx: &mut TxBatches,
        counts: &mut BatchCounts<'s>,
    ) {
        let len = p.len() as u64;
        let mut w = PacketWalk { dp: self, p: Some(p), key, len, out, tx, counts };
        xlate::walk(&self.tables, &mut w);
    }

    /// Applies `acts` in order; outputs send a copy unless they are the
    /// last action. Returns the packet when it lives on.
    pub(super) fn apply(
        &self,
        mut p: Packet,
        key: &mut FlowKey,
        acts: &[Action],
        out: &mut Out,
        tx: &mut TxBatches,
        origin: Origin,
    ) -> Option<Packet> {
        for (i, a) in acts.iter().enumerate() {
            let last = i + 1 == acts.len();
            match a {
                Action::Output { port: op, max_len } => {
                    if last {
                        self.output(p, *op, *max_len, key, out, tx, origin);
                        return None;
                    }
                    match p.copy(&self.pool) {
                        Some(c) => self.output(c, *op, *max_len, key, out, tx, origin),
                        None => {
                            self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Action::Group(g) => {
                    let Some(group) = self.groups.get(g) else { continue };
                    group.stats.packets.fetch_add(1, Ordering::Relaxed);
                    group.stats.bytes.fetch_add(p.len() as u64, Ordering::Relaxed);
                    // The buckets that run: all, one by hash, the only
                    // one, or the first live one.
                    let (from, to) = match group.group_type {
                        0 => (0, group.buckets.len()),
                        1 => self.select_bucket(group, key).map_or((0, 0), |i| (i, i + 1)),
                        2 => (0, group.buckets.len().min(1)),
                        _ => group
                            .buckets
                            .iter()
                            .position(|b| self.ofport_slot.get(&b.watch_port).is_some_and(|(_, up)| *up))
                            .map_or((0, 0), |i| (i, i + 1)),
                    };
                    for bi in from..to {
                        let b = &group.buckets[bi];
                        if let Some((pk, by)) = group.stats.buckets.get(bi) {
                            pk.fetch_add(1, Ordering::Relaxed);
                            by.fetch_add(p.len() as u64, Ordering::Relaxed);
                        }
                        let mut k = key.clone();
                        // Each bucket works on its own copy (spec 5.6.1).
                        match p.copy(&self.pool) {
                            Some(c) => {
                                let _ = self.apply(c, &mut k, &b.actions, out, tx, origin);
                            }
                            None => {
                                self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if last {
                        return None;
                    }
                }
                Action::PushVlan(tpid) => {
                    if p.prepend(4).is_none() {
                        self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    let d = p.data_mut();
                    d.copy_within(4..16, 0);
                    // The new tag copies VID and PCP of an existing one (spec
                    // 5.12), else 0.
                    let vid = key.get_u64(Field::VlanVid).filter(|v| v & 0x1000 != 0).map_or(0, |v| v & 0xfff);
                    let pcp = key.get_u64(Field::VlanPcp).unwrap_or(0) & 7;
                    let tci = u16::try_from(vid | (pcp << 13)).unwrap_or(0);
                    d[12..14].copy_from_slice(&tpid.to_be_bytes());
                    d[14..16].copy_from_slice(&tci.to_be_bytes());
                    key.set_u64(Field::VlanVid, u64::from(0x1000 | (tci & 0xfff)));
                    key.set_u64(Field::VlanPcp, u64::from(tci >> 13));
                }
                Action::PopVlan => {
                    let d = p.data();
                    if d.len() >= 18 && matches!(u16::from_be_bytes([d[12], d[13]]), 0x8100 | 0x88a8) {
                        let d = p.data_mut();
                        d.copy_within(0..12, 4);
                        pop_front(&mut p, 4);
                        let k = FlowKey::extract(p.data(), out.in_port);
                        key.set_u64(Field::VlanVid, k.get_u64(Field::VlanVid).unwrap_or(0));
                        match k.get_u64(Field::VlanPcp) {
                            Some(v) => key.set_u64(Field::VlanPcp, v),
                            None => key.clear(Field::VlanPcp),
                        }
                    }
                }
                Action::DecNwTtl => {
                    if rewrite::dec_nw_ttl(p.data_mut()).is_err() {
                        self.counters.ttl_expired.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
                Action::DecMplsTtl => {
                    if rewrite::dec_mpls_ttl(p.data_mut()).is_err() {
                        self.counters.ttl_expired.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
                Action::SetNwTtl(t) => {
                    rewrite::set_nw_ttl(p.data_mut(), *t);
                }
                Action::SetMplsTtl(t) => {
                    rewrite::set_mpls_ttl(p.data_mut(), *t);
                }
                Action::CopyTtlIn => {
                    rewrite::copy_ttl_in(p.data_mut());
                }
                Action::CopyTtlOut => {
                    rewrite::copy_ttl_out(p.data_mut());
                }
                Action::PushMpls(et) => {
                    if p.prepend(4).is_none() {
                        self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    rewrite::push_mpls_after_prepend(p.data_mut(), *et);
                    *key = FlowKey::extract(p.data(), out.in_port).with_pipeline_of(key);
                }
                Action::PopMpls(et) => {
                    if rewrite::pop_mpls_before_adj(p.data_mut(), *et) {
                        pop_front(&mut p, 4);
                        *key = FlowKey::extract(p.data(), out.in_port).with_pipeline_of(key);
                    }
                }
                Action::SetField(o) if o.field.is_tunnel() => key.set(o.field, o.value()),
                Action::SetField(o) => {
                    if !rewrite::set_field(p.data_mut(), o) {
                        self.counters.unsupported_set_field.fetch_add(1, Ordering::Relaxed);
                    }
                    key.set(o.field, o.value());
                }
                // The queue (a class of the output port's scheduler) the
                // frame goes to; a port without that class uses its
                // default one, an unshaped port ignores it.
                Action::SetQueue(q) => p.meta_mut().queue = q.saturating_add(1),
                Action::PushPbb(et) => {
                    if p.prepend(18).is_none() {
                        self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    if !rewrite::push_pbb_after_prepend(p.data_mut(), *et) {
                        p.adj(18);
                    }
                    *key = FlowKey::extract(p.data(), out.in_port).with_pipeline_of(key);
                }
                Action::PopPbb => {
                    if let Some(n) = rewrite::pbb_header_len(p.data()) {
                        pop_front(&mut p, n);
                        *key = FlowKey::extract(p.data(), out.in_port).with_pipeline_of(key);
                    }
                }
            }
        }
        Some(p)
    }

    pub(super) fn select_bucket(&self, g: &Group, key: &FlowKey) -> Option<usize> {
        pick_weighted(flow_hash(key), g.buckets.iter().map(|b| b.weight))
    }

    /// Queues `p` for `slot`; to a tunnel with the fields it takes from
    /// the flow: `tunnel_id` (key `flow`), `tun_dst` or `tun_ipv6_dst`
    /// (remote `flow`), the `tun_metadata` fields as Geneve options in
    /// front of the frame.
    #[inline]
    fn send(&self, slot: usize, mut p: Packet, key: &FlowKey, tx: &mut TxBatches) {
        if self.stamps(slot) {
            let t = self.tunnels[slot];
            if t & super::TUNNEL_FLOW_KEY != 0 {
                #[allow(clippy::cast_possible_truncation)] // VNIs and GRE keys are 32 bits at most
                let id = key.get_u64(Field::TunnelId).unwrap_or(0) as u32;
                p.meta_mut().tun_id = id;
            }
            if t & super::TUNNEL_FLOW_REMOTE != 0 {
                let mut r = [0u8; 16];
                if let Some(v4) = key.get(Field::TunDst) {
                    r[10..12].fill(0xff);
                    r[12..].copy_from_slice(v4);
                } else if let Some(v6) = key.get(Field::TunIpv6Dst) {
                    r.copy_from_slice(v6);
                }
                p.meta_mut().tun_remote = r;
            }
            if t & super::TUNNEL_GENEVE != 0 && !self.tlv.is_empty() {
                let mut opts = [0u8; crate::datapath::tunnel::meta::MAX_OPTS];
                let n = crate::datapath::tunnel::meta::options_from_key(key, &self.tlv, &mut opts);
                if n > 0 {
                    let Some(front) = p.prepend(n) else {
                        self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    front.copy_from_slice(&opts[..n]);
                }
                #[allow(clippy::cast_possible_truncation)] // at most MAX_OPTS
                {
                    p.meta_mut().tun_tx_opts = n as u16;
                }
            }
            #[allow(clippy::cast_possible_truncation)] // mbuf offsets are 16 bits
            let at = p.headroom() as u16;
            p.meta_mut().tun_stamp = at;
        }
        tx.send(slot, p);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn output(
        &self,
        p: Packet,
        op: u32,
        max_len: u16,
        key: &FlowKey,
        out: &mut Out,
        tx: &mut TxBatches,
        origin: Origin,
    ) {
        match op {
            port::NORMAL => {
                if let Err(p) = out.normal.push(p) {
                    drop(p);
                }
            }
            port::IN_PORT => self.send(out.in_slot, p, key, tx),
            port::ALL | port::FLOOD => {
                let targets: Vec<usize> =
                    self.ofport_slot.iter().filter(|(n, _)| **n != out.in_port).map(|(_, (s, _))| *s).collect();
                let mut p = Some(p);
                for (i, s) in targets.iter().enumerate() {
                    let pk =
                        if i + 1 == targets.len() { p.take() } else { p.as_ref().and_then(|x| x.copy(&self.pool)) };
                    match pk {
                        Some(pk) => self.send(*s, pk, key, tx),
                        None => {
                            self.counters.nombuf.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            port::CONTROLLER => {
                let n = if max_len == 0xffff { p.len() } else { usize::from(max_len).min(p.len()) };
                let d = p.data();
                let msg = ToController {
                    bridge: self.bridge,
                    reason: origin.reason,
                    table_id: origin.table,
                    cookie: origin.cookie,
                    in_port: out.in_port,
                    metadata: key.get_u64(Field::Metadata).unwrap_or(0),
                    total_len: u16::try_from(p.len()).unwrap_or(u16::MAX),
                    data: d[..n.min(d.len())].to_vec(),
                };
                if self.to_controller.try_send(msg).is_err() {
                    self.counters.controller_queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Back out of the input port only with IN_PORT (spec 5.12; OVS
            // drops it too).
            n if n == out.in_port => {
                self.counters.bad_port.fetch_add(1, Ordering::Relaxed);
            }
            n => match self.ofport_slot.get(&n) {
                Some((slot, _)) => self.send(*slot, p, key, tx),
                None => {
                    self.counters.bad_port.fetch_add(1, Ordering::Relaxed);
                }
            },
        }
    }
}

/// Ethernet's minimum frame length, without FCS.
const MIN_FRAME: usize = 60;

/// Drops the frame's first `n` bytes (a header popped) and pads what is
/// left to Ethernet's minimum with zeros, as a NIC pads on transmit:
/// virtual ports (AF_PACKET, memif, vhost) would otherwise carry a popped
/// minimum-size frame short.
fn pop_front(p: &mut Packet, n: usize) {
    p.adj(n);
    let len = p.len();
    if len < MIN_FRAME {
        if let Some(pad) = p.append(MIN_FRAME - len) {
            pad.fill(0);
        }
    }
}

/// The hash a select group picks its bucket by: MACs, the 5-tuple (SCTP
/// too) and ARP's addresses, so one flow always takes one bucket. FNV-1a, then murmur3's finaliser (FNV's
/// low bits alone are just the parity of the input bytes' low bits).
fn flow_hash(key: &FlowKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in [
        Field::EthSrc,
        Field::EthDst,
        Field::Ipv4Src,
        Field::Ipv4Dst,
        Field::Ipv6Src,
        Field::Ipv6Dst,
        Field::IpProto,
        Field::TcpSrc,
        Field::TcpDst,
        Field::UdpSrc,
        Field::UdpDst,
        Field::SctpSrc,
        Field::SctpDst,
        Field::ArpSpa,
        Field::ArpTpa,
    ] {
        for b in key.get(f).unwrap_or(&[]) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The index of the weight that `hash` falls on, each weight taking its
/// share of the hash space (its high half scaled onto the total); None
/// when every weight is 0.
fn pick_weighted(hash: u64, weights: impl Iterator<Item = u16> + Clone) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    let mut pick = ((hash >> 32) * total) >> 32;
    for (i, w) in weights.enumerate() {
        if pick < u64::from(w) {
            return Some(i);
        }
        pick -= u64::from(w);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flows that differ only in a few address and port bytes spread over
    /// the buckets by their weights (within 3 points), and one flow always
    /// gets the same bucket.
    #[test]
    fn select_spreads_flows_by_weight() {
        for weights in [vec![1u16, 1], vec![1, 3], vec![50, 0, 50]] {
            let total: u32 = weights.iter().map(|w| u32::from(*w)).sum();
            let mut hits = vec![0u32; weights.len()];
            let n = 20_000u32;
            for i in 0..n {
                let mut k = FlowKey::default();
                let mut src = [0u8; 16];
                src[0] = 0x20;
                src[15] = u8::try_from(i % 251).unwrap();
                k.set(Field::Ipv6Src, &src);
                k.set(Field::Ipv6Dst, &[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20]);
                k.set_u64(Field::TcpSrc, u64::from(i / 251));
                k.set_u64(Field::TcpDst, 2222);
                let b = pick_weighted(flow_hash(&k), weights.iter().copied()).unwrap();
                assert_eq!(pick_weighted(flow_hash(&k), weights.iter().copied()), Some(b));
                hits[b] += 1;
            }
            for (h, w) in hits.iter().zip(&weights) {
                let want = f64::from(n) * f64::from(*w) / f64::from(total);
                assert!((f64::from(*h) - want).abs() < 0.03 * f64::from(n), "weights {weights:?}: {hits:?}");
            }
        }
        assert_eq!(pick_weighted(7, [0u16, 0].into_iter()), None);
    }
}
