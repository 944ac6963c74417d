//! The switch's own underlay stack on an uplink, run by the PMD thread
//! that polls it, before the uplink's bridge sees the batch:
//!
//! - ARP requests for the uplink's addresses are answered at once, in
//!   place; the asker (and any ARP reply to us) is reported to the
//!   control thread's neighbour cache ([`Notice`]);
//! - pings to the addresses are answered in place;
//! - VXLAN, Geneve and GRE packets to the addresses are checked (outer
//!   IPv4, UDP and GRE checksums unless the NIC marked them good, lengths,
//!   flags, versions, Geneve's option length), matched to their tunnel
//!   port by (remote, VNI or key, UDP port) and decapsulated; the inner frames go on through the tunnel port's bridge
//!   in the same pass, as received on the tunnel port;
//! - anything else to the addresses is dropped and counted; everything
//!   not for them goes to the uplink's bridge unchanged.

use super::{gre_flags, TunnelCounters, TunnelKind, Wake, ETH_P_TEB};
use pmd::packet::Batch;
use pmd::pmd::TxBatches;
use pmd::port::SwCounters;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// What the control thread learns from ARP on an uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    /// The uplink's slot.
    pub uplink: usize,
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: [u8; 6],
}

/// Which tunnel port a decapsulated frame belongs to.
#[derive(Debug, Clone)]
pub struct DecapTarget {
    /// The tunnel port's slot.
    pub slot: usize,
    /// The local address the port is bound to (None: any of ours).
    pub local: Option<IpAddr>,
    /// Its counters.
    pub counters: Arc<[TunnelCounters]>,
}

impl PartialEq for DecapTarget {
    fn eq(&self, o: &DecapTarget) -> bool {
        self.slot == o.slot && self.local == o.local && Arc::ptr_eq(&self.counters, &o.counters)
    }
}

impl Eq for DecapTarget {}

/// (remote, VNI or key, UDP port): what identifies a tunnel port on
/// receive; a `key = "flow"` port takes every VNI (None) not given to a
/// port of its own.
pub type DecapKey = (IpAddr, Option<u32>, u16);

/// Counters of one uplink's underlay stack on one PMD thread.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct UplinkCounters {
    /// Frames decapsulated.
    pub decapsulated: AtomicU64,
    /// ARP requests for our addresses answered.
    pub arp_replied: AtomicU64,
    /// Neighbours reported to the control thread.
    pub neighbour_notices: AtomicU64,
    /// Pings to our addresses answered.
    pub echo_replied: AtomicU64,
    /// Frames passed on to the uplink's bridge.
    pub passed: AtomicU64,
    /// Dropped: outer headers cut short or lengths that contradict.
    pub drop_truncated: AtomicU64,
    /// Dropped: a bad outer IPv4 or UDP checksum.
    pub drop_bad_checksum: AtomicU64,
    /// Dropped: a fragmented outer packet (never reassembled).
    pub drop_fragment: AtomicU64,
    /// Dropped: VXLAN without the I flag, Geneve of another version or
    /// payload, GRE with flags (routing, recursion), a version or a
    /// payload we do not speak.
    pub drop_bad_header: AtomicU64,
    /// Dropped: Geneve options longer than the packet, or critical ones.
    pub drop_bad_options: AtomicU64,
    /// Dropped: no tunnel port for the remote, VNI and port.
    pub drop_unknown_tunnel: AtomicU64,
    /// Dropped: for our addresses but neither tunnel, ARP nor ping.
    pub drop_not_tunnel: AtomicU64,
    /// Neighbour notices lost (the control thread's queue was full).
    pub drop_notice: AtomicU64,
}

impl UplinkCounters {
    /// The drop counters, in the order of [`DROP_REASONS`].
    #[inline]
    fn drops(&self) -> [&AtomicU64; 8] {
        [
            &self.drop_truncated,
            &self.drop_bad_checksum,
            &self.drop_fragment,
            &self.drop_bad_header,
            &self.drop_bad_options,
            &self.drop_unknown_tunnel,
            &self.drop_not_tunnel,
            &self.drop_notice,
        ]
    }
}

/// The drop reasons of [`UplinkCounters`], as named in statistics.
pub const DROP_REASONS: [&str; 8] = [
    "truncated",
    "bad_checksum",
    "fragment",
    "bad_header",
    "bad_options",
    "unknown_tunnel",
    "not_tunnel",
    "notice_lost",
];

/// Totals over the PMD threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UplinkStats {
    /// See [`UplinkCounters::decapsulated`].
    pub decapsulated: u64,
    /// See [`UplinkCounters::arp_replied`].
    pub arp_replied: u64,
    /// See [`UplinkCounters::neighbour_notices`].
    pub neighbour_notices: u64,
    /// See [`UplinkCounters::echo_replied`].
    pub echo_replied: u64,
    /// See [`UplinkCounters::passed`].
    pub passed: u64,
    /// Drops in the order of [`DROP_REASONS`].
    pub drops: [u64; 8],
}

/// Per-PMD counters of an uplink, summed.
pub fn uplink_stats(c: &[UplinkCounters]) -> UplinkStats {
    let mut s = UplinkStats::default();
    for c in c {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.decapsulated += g(&c.decapsulated);
        s.arp_replied += g(&c.arp_replied);
        s.neighbour_notices += g(&c.neighbour_notices);
        s.echo_replied += g(&c.echo_replied);
        s.passed += g(&c.passed);
        for (t, a) in s.drops.iter_mut().zip(c.drops()) {
            *t += g(a);
        }
    }
    s
}

/// Fresh per-PMD counters for an uplink.
pub fn new_uplink_counters() -> Arc<[UplinkCounters]> {
    (0..pmd::port::MAX_PMDS).map(|_| UplinkCounters::default()).collect()
}

/// An uplink as its PMD threads see it: a snapshot the control thread
/// publishes with the datapath view.
#[derive(Debug)]
pub struct Uplink {
    /// Its slot.
    pub slot: usize,
    /// Its MAC.
    pub mac: [u8; 6],
    /// The switch's addresses on it (IPv4 and IPv6).
    pub addrs: Vec<IpAddr>,
    /// The UDP ports tunnels listen on, and their protocols.
    pub udp_ports: Vec<(u16, TunnelKind)>,
    /// Whether a GRE tunnel exists (IP protocol 47 is decapsulated).
    pub gre: bool,
    /// Tunnel ports by what identifies them on receive.
    pub decap: HashMap<DecapKey, DecapTarget, super::super::FxBuildHasher>,
    /// Counters, shared by every snapshot of the uplink.
    pub counters: Arc<[UplinkCounters]>,
    /// Neighbours go to the control thread here.
    pub notices: Option<SyncSender<Notice>>,
    /// Wakes the control thread after a notice.
    pub wake: Option<Wake>,
    /// The critical Geneve options the switch understands.
    pub geneve_known: Arc<super::meta::GeneveKnown>,
}

/// What the underlay stack makes of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not for our addresses: to the uplink's bridge.
    Pass,
    /// An ARP request for one of our addresses: answer; report the asker.
    ArpRequest(Notice),
    /// An ARP reply to us: report it, then drop the frame.
    ArpReply(Notice),
    /// A ping to one of our addresses: answer.
    Echo,
    /// An IPv6 neighbour solicitation for one of our addresses: answer
    /// with an advertisement; report the asker (when it said its MAC).
    NdSolicit(Option<Notice>),
    /// An IPv6 neighbour advertisement to us: report it, then drop it.
    NdAdvert(Notice),
    /// A ping over IPv6 to one of our addresses: answer.
    Echo6,
    /// A tunnel packet: strip `outer` bytes, keep `inner_len`, go on as
    /// received on the target's port.
    Decap {
        /// The tunnel port.
        target: DecapTarget,
        /// Its VNI or key, and its outer addresses (the packet's tunnel
        /// metadata).
        tun: (u32, IpAddr, IpAddr),
        /// Outer header bytes.
        outer: usize,
        /// Inner frame bytes.
        inner_len: usize,
        /// Geneve option bytes (right before the inner frame) and the OAM
        /// flag.
        geneve: (u16, bool),
    },
    /// Dropped, for the reason counted in this counter's place of
    /// [`DROP_REASONS`].
    Drop(usize),
}

const DROP_TRUNCATED: usize = 0;
const DROP_BAD_CHECKSUM: usize = 1;
const DROP_FRAGMENT: usize = 2;
const DROP_BAD_HEADER: usize = 3;
const DROP_BAD_OPTIONS: usize = 4;
const DROP_UNKNOWN_TUNNEL: usize = 5;
const DROP_NOT_TUNNEL: usize = 6;

fn ip4(b: &[u8]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

fn ip6(b: &[u8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[..16]).unwrap_or_default()))
}

/// The MAC an ICMPv6 neighbour discovery message gives in its source
/// (`want` 1) or target (2) link-layer address option.
fn nd_mac(opts: &[u8], want: u8) -> Option<[u8; 6]> {
    let mut o = opts;
    while o.len() >= 8 {
        let len = usize::from(o[1]) * 8;
        if len == 0 || len > o.len() {
            return None;
        }
        if o[0] == want && len >= 8 {
            return o[2..8].try_into().ok();
        }
        o = &o[len..];
    }
    None
}

impl Uplink {
    #[inline]
    fn ours(&self, ip: IpAddr) -> bool {
        self.addrs.contains(&ip)
    }

    /// Classifies one frame (`ip_good`, `l4_good`: the NIC checked those
    /// checksums and found them good).
    pub fn classify(&self, d: &[u8], ip_good: bool, l4_good: bool) -> Verdict {
        if d.len() < 14 {
            return Verdict::Pass;
        }
        let to_us = d[..6] == self.mac;
        let bcast = d[..6] == [0xff; 6];
        // IPv6 multicast (solicited-node addresses of neighbour discovery).
        let mcast6 = d[..2] == [0x33, 0x33];
        if !to_us && !bcast && !mcast6 {
            return Verdict::Pass;
        }
        match [d[12], d[13]] {
            [0x08, 0x06] if !mcast6 => self.arp(d),
            [0x08, 0x00] if to_us => self.ipv4(d, ip_good, l4_good),
            [0x86, 0xdd] if to_us || mcast6 => self.ipv6(d, l4_good),
            _ => Verdict::Pass,
        }
    }

    fn arp(&self, d: &[u8]) -> Verdict {
        let Ok(a) = wire::ArpPacket::new_checked(&d[14..]) else { return Verdict::Pass };
        if a.htype() != 1 || a.ptype() != 0x0800 || a.hlen() != 6 || a.plen() != 4 {
            return Verdict::Pass;
        }
        let tpa = IpAddr::V4(Ipv4Addr::from(a.tpa().0));
        if !self.ours(tpa) {
            return Verdict::Pass;
        }
        let n = Notice { uplink: self.slot, ip: IpAddr::V4(Ipv4Addr::from(a.spa().0)), mac: a.sha().0 };
        match a.operation() {
            wire::ArpOperation::REQUEST => Verdict::ArpRequest(n),
            wire::ArpOperation::REPLY => Verdict::ArpReply(n),
            _ => Verdict::Drop(DROP_NOT_TUNNEL),
        }
    }

    fn ipv4(&self, d: &[u8], ip_good: bool, l4_good: bool) -> Verdict {
        let ip = &d[14..];
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return Verdict::Drop(DROP_TRUNCATED);
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ihl < 20 || total < ihl || total > ip.len() {
            return Verdict::Drop(DROP_TRUNCATED);
        }
        let dst = ip4(&ip[16..20]);
        if !self.ours(dst) {
            return Verdict::Pass;
        }
        if !ip_good && wire::checksum::fold(wire::checksum::sum(0, &ip[..ihl])) != 0xffff {
            return Verdict::Drop(DROP_BAD_CHECKSUM);
        }
        if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
            return Verdict::Drop(DROP_FRAGMENT);
        }
        let l4 = &ip[ihl..total];
        match ip[9] {
            1 if l4.len() >= 8 && l4[0] == 8 && l4[1] == 0 => Verdict::Echo,
            proto @ (17 | 47) => {
                let (src, dstw) = (
                    wire::Ipv4Address([ip[12], ip[13], ip[14], ip[15]]),
                    wire::Ipv4Address([ip[16], ip[17], ip[18], ip[19]]),
                );
                let pseudo = wire::checksum::pseudo_v4(src, dstw, 17, 0);
                self.tunnel(proto, l4, (ip4(&ip[12..16]), dst), 14 + ihl, pseudo, l4_good)
            }
            _ => Verdict::Drop(DROP_NOT_TUNNEL),
        }
    }

    fn ipv6(&self, d: &[u8], l4_good: bool) -> Verdict {
        let ip = &d[14..];
        if ip.len() < 40 || ip[0] >> 4 != 6 {
            return Verdict::Drop(DROP_TRUNCATED);
        }
        let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if 40 + plen > ip.len() {
            return Verdict::Drop(DROP_TRUNCATED);
        }
        let (src, dst) = (ip6(&ip[8..24]), ip6(&ip[24..40]));
        let l4 = &ip[40..40 + plen];
        let next = ip[6];
        let solicited = ip[24..37] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];
        if !self.ours(dst) && !solicited {
            return Verdict::Pass;
        }
        let pseudo = |nh: u8, len: usize| {
            let (s, t) = (wire::Ipv6Address::from_bytes(&ip[8..24]), wire::Ipv6Address::from_bytes(&ip[24..40]));
            #[allow(clippy::cast_possible_truncation)] // plen came from a 16-bit field
            wire::checksum::pseudo_v6(&s, &t, nh, len as u32)
        };
        match next {
            58 => {
                if l4.len() < 8 || wire::checksum::fold(wire::checksum::sum(pseudo(58, plen), l4)) != 0xffff {
                    return Verdict::Drop(DROP_BAD_CHECKSUM);
                }
                match l4[0] {
                    // Neighbour discovery: hop limit 255 (RFC 4861).
                    135 if ip[7] == 255 && l4.len() >= 24 => {
                        let target = ip6(&l4[8..24]);
                        if !self.ours(target) {
                            return Verdict::Pass;
                        }
                        let n = nd_mac(&l4[24..], 1).map(|mac| Notice { uplink: self.slot, ip: src, mac });
                        // Duplicate address detection (from ::) gets no answer here.
                        if src == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
                            return Verdict::Drop(DROP_NOT_TUNNEL);
                        }
                        Verdict::NdSolicit(n)
                    }
                    136 if ip[7] == 255 && l4.len() >= 24 && self.ours(dst) => match nd_mac(&l4[24..], 2) {
                        Some(mac) => Verdict::NdAdvert(Notice { uplink: self.slot, ip: ip6(&l4[8..24]), mac }),
                        None => Verdict::Drop(DROP_NOT_TUNNEL),
                    },
                    128 if self.ours(dst) => Verdict::Echo6,
                    _ => Verdict::Pass,
                }
            }
            proto @ (17 | 47) if self.ours(dst) => self.tunnel(proto, l4, (src, dst), 14 + 40, pseudo(17, 0), l4_good),
            _ if self.ours(dst) => Verdict::Drop(DROP_NOT_TUNNEL),
            _ => Verdict::Pass,
        }
    }

    /// A UDP (VXLAN, Geneve) or GRE packet from `addrs.0` to our
    /// `addrs.1`, its transport at `l4` (after `outer_ip` bytes of
    /// Ethernet and IP header); `pseudo`: the UDP pseudo-header's sum but
    /// for the length.
    fn tunnel(
        &self,
        proto: u8,
        l4: &[u8],
        addrs: (IpAddr, IpAddr),
        outer_ip: usize,
        pseudo: u32,
        l4_good: bool,
    ) -> Verdict {
        let (remote, dst) = addrs;
        let found = |vni: u32, port: u16, outer: usize, inner_len: usize, geneve: (u16, bool)| {
            let any = match remote {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            // A port for this remote, else one whose remote is `flow`.
            let t = [remote, any]
                .into_iter()
                .find_map(|r| self.decap.get(&(r, Some(vni), port)).or_else(|| self.decap.get(&(r, None, port))));
            match t {
                Some(t) if t.local.is_none_or(|l| l == dst) => {
                    Verdict::Decap { target: t.clone(), tun: (vni, remote, dst), outer, inner_len, geneve }
                }
                _ => Verdict::Drop(DROP_UNKNOWN_TUNNEL),
            }
        };
        match proto {
            17 => {
                if l4.len() < 8 {
                    return Verdict::Drop(DROP_TRUNCATED);
                }
                let dport = u16::from_be_bytes([l4[2], l4[3]]);
                let Some(kind) = self.udp_ports.iter().find(|(p, _)| *p == dport).map(|(_, k)| *k) else {
                    return Verdict::Drop(DROP_NOT_TUNNEL);
                };
                let ulen = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
                if ulen < 8 + 8 + 14 || ulen > l4.len() {
                    return Verdict::Drop(DROP_TRUNCATED);
                }
                let udp = &l4[..ulen];
                let csum = u16::from_be_bytes([udp[6], udp[7]]);
                #[allow(clippy::cast_possible_truncation)] // ulen came from a 16-bit field
                let pseudo = pseudo + ulen as u32;
                if csum != 0 && !l4_good && wire::checksum::fold(wire::checksum::sum(pseudo, udp)) != 0xffff {
                    return Verdict::Drop(DROP_BAD_CHECKSUM);
                }
                let t = &udp[8..];
                let vni = u32::from_be_bytes([0, t[4], t[5], t[6]]);
                let (hdr, geneve) = match kind {
                    TunnelKind::Geneve => {
                        // Version 0 carrying Ethernet; options kept for
                        // the tun_metadata fields, but critical ones (the
                        // C bit) only when a TLV map names them.
                        let opts = usize::from(t[0] & 0x3f) * 4;
                        if t[0] >> 6 != 0 || t[2..4] != ETH_P_TEB.to_be_bytes() {
                            return Verdict::Drop(DROP_BAD_HEADER);
                        }
                        if 8 + opts + 14 > t.len()
                            || (t[1] & 0x40 != 0 && !super::meta::critical_known(&t[8..8 + opts], &self.geneve_known))
                        {
                            return Verdict::Drop(DROP_BAD_OPTIONS);
                        }
                        #[allow(clippy::cast_possible_truncation)] // at most 63 words
                        (8 + opts, (opts as u16, t[1] & 0x80 != 0))
                    }
                    _ => {
                        if t[0] & 0x08 == 0 {
                            return Verdict::Drop(DROP_BAD_HEADER);
                        }
                        (8, (0, false))
                    }
                };
                found(vni, dport, outer_ip + 8 + hdr, ulen - 8 - hdr, geneve)
            }
            47 if self.gre => {
                if l4.len() < 4 {
                    return Verdict::Drop(DROP_TRUNCATED);
                }
                let flags = u16::from_be_bytes([l4[0], l4[1]]);
                let allowed = gre_flags::C | gre_flags::K | gre_flags::S;
                if flags & !allowed != 0 || l4[2..4] != ETH_P_TEB.to_be_bytes() {
                    // Routing, strict source routes, recursion, another
                    // version or payload: not Ethernet over GRE as we
                    // speak it.
                    return Verdict::Drop(DROP_BAD_HEADER);
                }
                let mut at = 4;
                if flags & gre_flags::C != 0 {
                    if l4.len() < 8 {
                        return Verdict::Drop(DROP_TRUNCATED);
                    }
                    if wire::checksum::fold(wire::checksum::sum(0, l4)) != 0xffff {
                        return Verdict::Drop(DROP_BAD_CHECKSUM);
                    }
                    at += 4;
                }
                let mut key = 0;
                if flags & gre_flags::K != 0 {
                    let Some(k) = l4.get(at..at + 4) else { return Verdict::Drop(DROP_TRUNCATED) };
                    key = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
                    at += 4;
                }
                if flags & gre_flags::S != 0 {
                    at += 4;
                }
                if at + 14 > l4.len() {
                    return Verdict::Drop(DROP_TRUNCATED);
                }
                found(key, 0, outer_ip + at, l4.len() - at, (0, false))
            }
            _ => Verdict::Drop(DROP_NOT_TUNNEL),
        }
    }

    /// Runs a received batch through the underlay stack: answers go out
    /// through `tx`, decapsulated frames into `decapped` grouped by tunnel
    /// slot, and `batch` keeps only what the uplink's bridge should see.
    pub fn receive(&self, pmd: usize, batch: &mut Batch, tx: &mut TxBatches, decapped: &mut Vec<(usize, Batch)>) {
        let c = &self.counters[pmd.min(self.counters.len() - 1)];
        let mut keep = Batch::new();
        let (mut passed, mut decap) = (0u64, 0u64);
        for mut p in batch.drain() {
            let fl = p.ol_flags();
            let v = self.classify(p.data(), pmd::port::rx_ip_cksum_good(fl), pmd::port::rx_l4_cksum_good(fl));
            match v.clone() {
                Verdict::Pass => {
                    passed += 1;
                    let _ = keep.push(p);
                }
                Verdict::Decap { target, tun, outer, inner_len, geneve } => {
                    if !p.adj(outer) || p.len() < inner_len || !p.trim(p.len() - inner_len) {
                        SwCounters::bump(&c.drop_truncated, 1);
                        continue;
                    }
                    let v4 = |a: IpAddr| match a {
                        IpAddr::V4(a) => u32::from(a),
                        IpAddr::V6(_) => 0,
                    };
                    let m = p.meta_mut();
                    (m.tun_id, m.tun_src, m.tun_dst) = (tun.0, v4(tun.1), v4(tun.2));
                    #[allow(clippy::cast_possible_truncation)] // outer headers are short
                    {
                        m.tun_hdr = (outer - 14) as u16;
                    }
                    m.tun_opts = geneve.0;
                    m.tun_flags = u16::from(geneve.1);
                    let tc = &target.counters[pmd.min(target.counters.len() - 1)];
                    SwCounters::bump(&tc.rx_packets, 1);
                    SwCounters::bump(&tc.rx_bytes, inner_len as u64);
                    decap += 1;
                    match decapped.iter_mut().find(|(s, _)| *s == target.slot) {
                        Some((_, b)) => {
                            let _ = b.push(p);
                        }
                        None => {
                            let mut b = Batch::new();
                            let _ = b.push(p);
                            decapped.push((target.slot, b));
                        }
                    }
                }
                Verdict::ArpRequest(n) => {
                    self.notify(c, n);
                    arp_reply_in_place(p.data_mut(), self.mac);
                    SwCounters::bump(&c.arp_replied, 1);
                    tx.send(self.slot, p);
                }
                Verdict::ArpReply(n) => self.notify(c, n),
                Verdict::Echo | Verdict::Echo6 => {
                    if p.is_contiguous() {
                        if v == Verdict::Echo {
                            echo_reply_in_place(p.data_mut(), self.mac);
                        } else {
                            echo6_reply_in_place(p.data_mut(), self.mac);
                        }
                        SwCounters::bump(&c.echo_replied, 1);
                        tx.send(self.slot, p);
                    } else {
                        SwCounters::bump(&c.drop_not_tunnel, 1);
                    }
                }
                Verdict::NdSolicit(n) => {
                    if let Some(n) = n {
                        self.notify(c, n);
                    }
                    let mut na = [0u8; NA_LEN];
                    let len = p.len();
                    let fits = p.is_contiguous()
                        && if len < NA_LEN { p.append(NA_LEN - len).is_some() } else { p.trim(len - NA_LEN) };
                    if fits && neighbour_advert(&p.data()[..NA_LEN.min(len)], self.mac, &mut na) {
                        p.data_mut().copy_from_slice(&na);
                        SwCounters::bump(&c.arp_replied, 1);
                        tx.send(self.slot, p);
                    } else {
                        SwCounters::bump(&c.drop_truncated, 1);
                    }
                }
                Verdict::NdAdvert(n) => self.notify(c, n),
                Verdict::Drop(r) => SwCounters::bump(c.drops()[r], 1),
            }
        }
        if passed > 0 {
            SwCounters::bump(&c.passed, passed);
        }
        if decap > 0 {
            SwCounters::bump(&c.decapsulated, decap);
        }
        *batch = keep;
    }

    fn notify(&self, c: &UplinkCounters, n: Notice) {
        let Some(tx) = &self.notices else { return };
        if tx.try_send(n).is_ok() {
            SwCounters::bump(&c.neighbour_notices, 1);
            if let Some(w) = &self.wake {
                w.wake();
            }
        } else {
            SwCounters::bump(&c.drop_notice, 1);
        }
    }
}

/// The uplink the decapsulation fuzz target and its corpus replay
/// (`fuzz/corpus/decap`) run frames through: MAC 02:00:00:00:00:01,
/// address 10.0.0.1; from 10.0.0.2 a VXLAN tunnel with VNI 42 (slot 7), a
/// Geneve one with VNI 42 (slot 8) and a GRE one with key 42 (slot 9).
pub fn fuzz_uplink() -> Uplink {
    let mut decap = HashMap::default();
    for (port, slot) in [(4789, 7), (6081, 8), (0, 9)] {
        decap.insert(
            (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), Some(42), port),
            DecapTarget { slot, local: None, counters: super::new_counters() },
        );
    }
    Uplink {
        slot: 1,
        mac: [2, 0, 0, 0, 0, 1],
        addrs: vec![
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            "fd00::1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ],
        udp_ports: vec![(4789, TunnelKind::Vxlan), (6081, TunnelKind::Geneve)],
        geneve_known: Arc::default(),
        gre: true,
        decap,
        counters: new_uplink_counters(),
        notices: None,
        wake: None,
    }
}

/// Turns an ARP request (Ethernet frame) into our reply, in place.
pub fn arp_reply_in_place(d: &mut [u8], mac: [u8; 6]) {
    let asker: [u8; 6] = d[22..28].try_into().unwrap_or_default();
    let (spa, tpa): ([u8; 4], [u8; 4]) =
        (d[28..32].try_into().unwrap_or_default(), d[38..42].try_into().unwrap_or_default());
    d[0..6].copy_from_slice(&asker);
    d[6..12].copy_from_slice(&mac);
    d[20..22].copy_from_slice(&2u16.to_be_bytes());
    d[22..28].copy_from_slice(&mac);
    d[28..32].copy_from_slice(&tpa);
    d[32..38].copy_from_slice(&asker);
    d[38..42].copy_from_slice(&spa);
}

/// Bytes of the neighbour advertisement the switch answers with: Ethernet,
/// IPv6, ICMPv6 (24) and the target link-layer address option (8).
pub const NA_LEN: usize = 14 + 40 + 24 + 8;

/// Writes into `out` the neighbour advertisement that answers the
/// solicitation `ns` (an Ethernet frame, at least its headers and target),
/// from MAC `mac`: solicited and override, our MAC in the option, to the
/// asker. False when `ns` is too short.
pub fn neighbour_advert(ns: &[u8], mac: [u8; 6], out: &mut [u8; NA_LEN]) -> bool {
    if ns.len() < 14 + 40 + 24 {
        return false;
    }
    out.fill(0);
    out[0..6].copy_from_slice(&ns[6..12]);
    out[6..12].copy_from_slice(&mac);
    out[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut out[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = 58;
    ip[7] = 255;
    let target: [u8; 16] = ns[14 + 40 + 8..14 + 40 + 24].try_into().unwrap_or_default();
    ip[8..24].copy_from_slice(&target);
    ip[24..40].copy_from_slice(&ns[14 + 8..14 + 24]);
    let m = &mut out[54..NA_LEN];
    m[0] = 136;
    m[4] = 0x60; // solicited, override
    m[8..24].copy_from_slice(&target);
    m[24] = 2;
    m[25] = 1;
    m[26..32].copy_from_slice(&mac);
    let s = wire::checksum::sum(
        wire::checksum::pseudo_v6(
            &wire::Ipv6Address(target),
            &wire::Ipv6Address::from_bytes(&ns[14 + 8..14 + 24]),
            58,
            32,
        ),
        &out[54..NA_LEN],
    );
    let ck = !wire::checksum::fold(s);
    out[56..58].copy_from_slice(&ck.to_be_bytes());
    true
}

/// Turns an ICMPv6 echo request (Ethernet frame) into our reply, in place:
/// addresses swapped, type 129, hop limit 64, the checksum updated (the
/// pseudo-header's sum does not change with the addresses swapped).
pub fn echo6_reply_in_place(d: &mut [u8], mac: [u8; 6]) {
    let peer: [u8; 6] = d[6..12].try_into().unwrap_or_default();
    d[0..6].copy_from_slice(&peer);
    d[6..12].copy_from_slice(&mac);
    let (a, b) = d[22..54].split_at_mut(16);
    a.swap_with_slice(b);
    d[21] = 64;
    let ck = wire::checksum::update16(u16::from_be_bytes([d[56], d[57]]), 0x8000, 0x8100);
    d[54] = 129;
    d[56..58].copy_from_slice(&ck.to_be_bytes());
}

/// Turns an ICMP echo request (Ethernet frame) into our reply, in place:
/// addresses swapped, type 0, TTL 64, checksums updated incrementally.
pub fn echo_reply_in_place(d: &mut [u8], mac: [u8; 6]) {
    let peer: [u8; 6] = d[6..12].try_into().unwrap_or_default();
    d[0..6].copy_from_slice(&peer);
    d[6..12].copy_from_slice(&mac);
    let ihl = usize::from(d[14] & 0x0f) * 4;
    let (a, b) = d[26..34].split_at_mut(4);
    a.swap_with_slice(b);
    let old = u16::from_be_bytes([d[22], d[23]]);
    d[22] = 64;
    let new = u16::from_be_bytes([d[22], d[23]]);
    let ck = wire::checksum::update16(u16::from_be_bytes([d[24], d[25]]), old, new);
    d[24..26].copy_from_slice(&ck.to_be_bytes());
    let icmp = 14 + ihl;
    let ck = wire::checksum::update16(u16::from_be_bytes([d[icmp + 2], d[icmp + 3]]), 0x0800, 0x0000);
    d[icmp] = 0;
    d[icmp + 2..icmp + 4].copy_from_slice(&ck.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::{TunnelKind, TunnelPath, TunnelSpec, VXLAN_OVERHEAD};
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn uplink() -> Uplink {
        fuzz_uplink()
    }

    /// A VXLAN packet from 10.0.0.2 to us, VNI `vni`, built by the
    /// encapsulation path (so both ends are checked against each other).
    fn vxlan(vni: u32, csum: bool) -> Vec<u8> {
        tunnelled(TunnelKind::Vxlan, vni, csum)
    }

    fn tunnelled(kind: TunnelKind, vni: u32, csum: bool) -> Vec<u8> {
        let dst_port = match kind {
            TunnelKind::Vxlan => 4789,
            TunnelKind::Geneve => 6081,
            TunnelKind::Gre => 0,
        };
        let spec = TunnelSpec { kind, dst_port, csum, ..TunnelSpec::vxlan(Ipv4Addr::new(10, 0, 0, 1).into(), vni) };
        let path = TunnelPath::new(&spec, 0, PEER, MAC, Ipv4Addr::new(10, 0, 0, 2).into(), 1500);
        let inner: Vec<u8> = (0..60u8).collect();
        let mut f = vec![0u8; path.len + inner.len()];
        f[path.len..].copy_from_slice(&inner);
        path.write(&mut f, inner.len(), 1, 40000);
        match (csum, kind) {
            (true, TunnelKind::Gre) => super::super::gre_checksum(&mut f),
            (true, _) => super::super::udp_checksum(&mut f),
            _ => {}
        }
        f
    }

    #[test]
    fn a_key_flow_port_takes_every_vni_not_given_to_its_own_port() {
        let mut u = uplink();
        let flow = DecapTarget { slot: 11, local: None, counters: super::super::new_counters() };
        u.decap.insert((Ipv4Addr::new(10, 0, 0, 2).into(), None, 4789), flow);
        assert!(
            matches!(u.classify(&vxlan(42, false), false, false), Verdict::Decap { target, .. } if target.slot == 7)
        );
        match u.classify(&vxlan(4242, false), false, false) {
            Verdict::Decap { target, tun, .. } => assert_eq!((target.slot, tun.0), (11, 4242)),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn geneve_and_gre_are_decapsulated_and_checked() {
        let u = uplink();
        for (kind, slot, outer) in [(TunnelKind::Geneve, 8, 50), (TunnelKind::Gre, 9, 42)] {
            for csum in [false, true] {
                let f = tunnelled(kind, 42, csum);
                let outer = outer + if csum && kind == TunnelKind::Gre { 4 } else { 0 };
                match u.classify(&f, false, false) {
                    Verdict::Decap { target, outer: o, inner_len, tun, .. } => {
                        assert_eq!(tun, (42, Ipv4Addr::new(10, 0, 0, 2).into(), Ipv4Addr::new(10, 0, 0, 1).into()));
                        assert_eq!((target.slot, o, inner_len), (slot, outer, 60), "{kind:?} csum {csum}");
                    }
                    v => panic!("{kind:?}: {v:?}"),
                }
            }
            assert_eq!(u.classify(&tunnelled(kind, 43, false), false, false), Verdict::Drop(DROP_UNKNOWN_TUNNEL));
        }
        // Geneve with an option (8 bytes: class, type, length 1, data).
        let mut f = tunnelled(TunnelKind::Geneve, 42, false);
        f[42] = 2;
        f.splice(50..50, [0xff, 0xff, 0x80, 1, 0, 0, 0xab, 0xcd]);
        let ip_len = u16::from_be_bytes([f[16], f[17]]) + 8;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[24..26].fill(0);
        let ck = wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&ck.to_be_bytes());
        let ulen = u16::from_be_bytes([f[38], f[39]]) + 8;
        f[38..40].copy_from_slice(&ulen.to_be_bytes());
        assert!(matches!(u.classify(&f, false, false), Verdict::Decap { outer: 58, inner_len: 60, .. }));
        // Its options longer than the packet, or critical: dropped.
        let mut g = f.clone();
        g[42] = 0x3f;
        assert_eq!(u.classify(&g, false, false), Verdict::Drop(DROP_BAD_OPTIONS));
        let mut g = f.clone();
        g[43] = 0x40;
        assert_eq!(u.classify(&g, false, false), Verdict::Drop(DROP_BAD_OPTIONS));
        let mut g = f;
        g[42] |= 0x40; // version 1
        assert_eq!(u.classify(&g, false, false), Verdict::Drop(DROP_BAD_HEADER));
        // GRE with routing, another version, another payload, or a bad
        // checksum.
        for (at, x) in [(34, 0x40), (35, 0x01), (36, 0x01)] {
            let mut g = tunnelled(TunnelKind::Gre, 42, false);
            g[at] ^= x;
            assert_eq!(u.classify(&g, false, false), Verdict::Drop(DROP_BAD_HEADER), "byte {at}");
        }
        let mut g = tunnelled(TunnelKind::Gre, 42, true);
        g[60] ^= 1;
        assert_eq!(u.classify(&g, false, false), Verdict::Drop(DROP_BAD_CHECKSUM));
    }

    #[test]
    fn vxlan_from_a_known_remote_is_decapsulated() {
        let u = uplink();
        for csum in [false, true] {
            match u.classify(&vxlan(42, csum), false, false) {
                Verdict::Decap { target, outer, inner_len, tun, .. } => {
                    assert_eq!((target.slot, outer, inner_len), (7, VXLAN_OVERHEAD, 60));
                    assert_eq!(tun.0, 42);
                }
                v => panic!("{v:?}"),
            }
        }
        // Trailing Ethernet padding is not part of the inner frame.
        let mut f = vxlan(42, false);
        f.extend_from_slice(&[0; 10]);
        assert!(matches!(u.classify(&f, false, false), Verdict::Decap { inner_len: 60, .. }));
    }

    #[test]
    fn bad_tunnel_packets_are_dropped_by_reason() {
        let u = uplink();
        assert_eq!(u.classify(&vxlan(43, false), false, false), Verdict::Drop(DROP_UNKNOWN_TUNNEL));
        let mut f = vxlan(42, false);
        f[24] ^= 0xff; // IPv4 checksum
        assert_eq!(u.classify(&f, false, false), Verdict::Drop(DROP_BAD_CHECKSUM));
        assert!(matches!(u.classify(&f, true, false), Verdict::Decap { .. }), "the NIC said good");
        let mut f = vxlan(42, true);
        f[60] ^= 0x01; // the inner frame, under the UDP checksum
        assert_eq!(u.classify(&f, false, false), Verdict::Drop(DROP_BAD_CHECKSUM));
        let mut f = vxlan(42, false);
        f[42] = 0; // VXLAN flags without I
        assert_eq!(u.classify(&f, false, false), Verdict::Drop(DROP_BAD_HEADER));
        let f = vxlan(42, false);
        assert_eq!(u.classify(&f[..40], false, false), Verdict::Drop(DROP_TRUNCATED));
        let mut f = vxlan(42, false);
        f[38..40].copy_from_slice(&9u16.to_be_bytes()); // UDP length too short for VXLAN
        assert_eq!(u.classify(&f, false, false), Verdict::Drop(DROP_TRUNCATED));
        let mut f = vxlan(42, false);
        f[36..38].copy_from_slice(&4790u16.to_be_bytes());
        assert_eq!(u.classify(&f, false, false), Verdict::Drop(DROP_NOT_TUNNEL));
        // To another address, or another MAC: the bridge's business.
        let mut f = vxlan(42, false);
        f[33] = 9;
        assert_eq!(u.classify(&f, false, false), Verdict::Pass);
        let mut f = vxlan(42, false);
        f[5] = 9;
        assert_eq!(u.classify(&f, false, false), Verdict::Pass);
        assert_eq!(u.classify(&[0u8; 10], false, false), Verdict::Pass);
    }

    fn arp(op: u16, tpa: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&PEER);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&PEER);
        f.extend_from_slice(&[10, 0, 0, 2]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa);
        f
    }

    #[test]
    fn arp_for_us_is_answered_and_reported() {
        let u = uplink();
        let n = Notice { uplink: 1, ip: Ipv4Addr::new(10, 0, 0, 2).into(), mac: PEER };
        let mut f = arp(1, [10, 0, 0, 1]);
        assert_eq!(u.classify(&f, false, false), Verdict::ArpRequest(n));
        arp_reply_in_place(&mut f, MAC);
        let a = wire::ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), wire::ArpOperation::REPLY);
        assert_eq!((a.sha().0, a.spa().0, a.tha().0, a.tpa().0), (MAC, [10, 0, 0, 1], PEER, [10, 0, 0, 2]));
        assert_eq!((&f[..6], &f[6..12]), (&PEER[..], &MAC[..]));
        assert_eq!(u.classify(&arp(2, [10, 0, 0, 1]), false, false), Verdict::ArpReply(n));
        assert_eq!(u.classify(&arp(1, [10, 0, 0, 9]), false, false), Verdict::Pass, "someone else's address");
    }

    #[test]
    fn pings_to_us_are_answered() {
        let u = uplink();
        let mut f = Vec::new();
        f.extend_from_slice(&MAC);
        f.extend_from_slice(&PEER);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0x45u8, 0, 0, 28, 0, 1, 0x40, 0, 63, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1];
        let ck = wire::checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut icmp = [8u8, 0, 0, 0, 0, 7, 0, 1];
        let ck = wire::checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&icmp);
        assert_eq!(u.classify(&f, false, false), Verdict::Echo);
        echo_reply_in_place(&mut f, MAC);
        let ip = wire::Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr().0, ip.dst_addr().0, ip.ttl()), ([10, 0, 0, 1], [10, 0, 0, 2], 64));
        assert_eq!(ip.payload()[0], 0, "echo reply");
        assert_eq!(wire::checksum::checksum(ip.payload()), 0, "ICMP checksum");
        assert_eq!(&f[..6], &PEER[..]);
    }
}
