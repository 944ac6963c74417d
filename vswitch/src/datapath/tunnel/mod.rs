//! Overlay tunnels on the PMD threads.
//!
//! - **Encapsulation**: a tunnel port is a [`TunnelVport`], a virtual
//!   port of the PMD set. Whatever a pipeline sends to its slot (a learnt
//!   MAC, a flood copy, an OpenFlow output) gets the outer header prebuilt
//!   for its remote and next hop ([`TunnelPath`]): lengths, IPv4 ID and
//!   checksum, a UDP source port from the inner flow's hash, and goes out
//!   through the uplink, once per tx batch. While the next hop is not
//!   resolved, frames go to the control thread, which holds a bounded
//!   number per neighbour and sends them once it answers.
//! - **Decapsulation** and the switch's own underlay stack on uplinks:
//!   [`underlay::Uplink`].
//!
//! The control thread builds a new vport whenever a tunnel's path
//! changes (`daemon::underlay`) and swaps it in; the PMD threads never
//! look anything up per packet but the decapsulation table and, for a
//! tunnel whose remote is `flow`, the path to each frame's remote.

mod gso;
pub mod meta;
mod nic;
pub mod underlay;
mod vport;

pub use vport::{FlowPaths, TunnelVport};

use pmd::Packet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Outer Ethernet, IPv4, UDP and VXLAN headers.
pub const VXLAN_OVERHEAD: usize = 14 + 20 + 8 + 8;
/// The most outer header bytes of any tunnel (over IPv6: VXLAN and Geneve
/// without options 70, GRE with checksum and key 66).
pub const MAX_OVERHEAD: usize = 80;
/// IANA's UDP port for Geneve.
pub const GENEVE_PORT: u16 = 6081;

/// A tunnel's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// VXLAN (RFC 7348), over UDP.
    Vxlan,
    /// Geneve (RFC 8926), over UDP; options sent and received as the
    /// bridge's TLV map names them (`tun_metadata`), others received and
    /// ignored unless critical.
    Geneve,
    /// Ethernet over GRE (RFC 2890 with its key; protocol 0x6558).
    Gre,
}

impl TunnelKind {
    /// How configurations and statistics name it.
    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
        }
    }
}
/// The UDP source ports encapsulation picks from (as Linux and OVS do).
pub const SRC_PORTS: std::ops::RangeInclusive<u16> = 32768..=61000;

/// A tunnel port's settings (from its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Protocol.
    pub kind: TunnelKind,
    /// The remote endpoint (IPv4 or IPv6; unspecified when `remote_flow`).
    pub remote: IpAddr,
    /// `remote_ip = "flow"`: each frame's own (its
    /// [`pmd::PacketMeta::tun_remote`]), and any is received.
    pub remote_flow: bool,
    /// The local endpoint, when the configuration fixes it.
    pub local: Option<IpAddr>,
    /// VNI (VXLAN, Geneve) or key (GRE).
    pub vni: u32,
    /// `key = "flow"`: each frame's own (its [`pmd::PacketMeta::tun_id`]),
    /// and any is received.
    pub key_flow: bool,
    /// UDP destination port (0 for GRE).
    pub dst_port: u16,
    /// Outer UDP checksum computed (else zero).
    pub csum: bool,
    /// Outer TTL.
    pub ttl: u8,
    /// Outer TOS.
    pub tos: u8,
    /// `tos = "inherit"`: each frame's own IPv4 TOS or IPv6 traffic class.
    pub tos_inherit: bool,
    /// Don't Fragment on the outer header.
    pub df: bool,
}

impl TunnelSpec {
    /// A VXLAN tunnel to `remote` with VNI `vni` and the defaults a
    /// configuration has (UDP 4789, no checksum, TTL 64, TOS 0, DF).
    pub fn vxlan(remote: IpAddr, vni: u32) -> TunnelSpec {
        TunnelSpec {
            kind: TunnelKind::Vxlan,
            remote,
            remote_flow: false,
            local: None,
            vni,
            key_flow: false,
            dst_port: config::VXLAN_PORT,
            csum: false,
            ttl: 64,
            tos: 0,
            tos_inherit: false,
            df: true,
        }
    }

    /// The settings of a tunnel port (the configuration was validated:
    /// unparsable addresses cannot occur).
    pub fn of(p: &config::Port) -> TunnelSpec {
        let kind = match p.kind {
            config::PortType::Geneve => TunnelKind::Geneve,
            config::PortType::Gre => TunnelKind::Gre,
            _ => TunnelKind::Vxlan,
        };
        let dst_port = match kind {
            TunnelKind::Vxlan => p.dst_port.unwrap_or(config::VXLAN_PORT),
            TunnelKind::Geneve => p.dst_port.unwrap_or(GENEVE_PORT),
            TunnelKind::Gre => 0,
        };
        TunnelSpec {
            kind,
            remote: p.remote_ip.as_deref().and_then(|r| r.parse().ok()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            remote_flow: p.remote_ip.as_deref() == Some("flow"),
            local: p.local_ip.as_deref().and_then(|l| l.parse().ok()),
            vni: p.key.and_then(config::TunnelKey::fixed).unwrap_or(0),
            key_flow: p.key == Some(config::TunnelKey::Flow),
            dst_port,
            csum: p.csum,
            ttl: p.ttl,
            tos: match p.tos {
                config::TunnelTos::Fixed(t) => t,
                config::TunnelTos::Inherit => 0,
            },
            tos_inherit: p.tos == config::TunnelTos::Inherit,
            df: p.df,
        }
    }
}

/// Counters of one tunnel port on one PMD thread, written by that thread
/// alone (the sending thread for tx, the decapsulating one for rx).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct TunnelCounters {
    /// Frames encapsulated and handed to the uplink.
    pub tx_packets: AtomicU64,
    /// Their inner bytes.
    pub tx_bytes: AtomicU64,
    /// Frames decapsulated from the uplink.
    pub rx_packets: AtomicU64,
    /// Their inner bytes.
    pub rx_bytes: AtomicU64,
    /// Frames handed to the control thread to wait for the next hop.
    pub held: AtomicU64,
    /// Dropped: no path to the remote (no route, or the waiting queue full).
    pub drop_no_path: AtomicU64,
    /// Dropped: too big for the uplink's MTU once encapsulated (never
    /// fragmented, RFC 7348).
    pub drop_too_big: AtomicU64,
    /// Dropped: no headroom for the outer headers.
    pub drop_no_room: AtomicU64,
    /// ICMP "fragmentation needed" sent back for frames too big.
    pub pmtu_sent: AtomicU64,
    /// Segments made of guests' large TCP segments (GSO in software).
    pub gso_segments: AtomicU64,
    /// The next outer IPv4 identification of this thread.
    pub ip_id: AtomicU64,
    /// When this thread last sent an ICMP "fragmentation needed" (TSC).
    pub last_icmp: AtomicU64,
}

/// Totals over the PMD threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelStats {
    /// See [`TunnelCounters::tx_packets`].
    pub tx_packets: u64,
    /// See [`TunnelCounters::tx_bytes`].
    pub tx_bytes: u64,
    /// See [`TunnelCounters::rx_packets`].
    pub rx_packets: u64,
    /// See [`TunnelCounters::rx_bytes`].
    pub rx_bytes: u64,
    /// See [`TunnelCounters::held`].
    pub held: u64,
    /// See [`TunnelCounters::drop_no_path`].
    pub drop_no_path: u64,
    /// See [`TunnelCounters::drop_too_big`].
    pub drop_too_big: u64,
    /// See [`TunnelCounters::drop_no_room`].
    pub drop_no_room: u64,
    /// See [`TunnelCounters::pmtu_sent`].
    pub pmtu_sent: u64,
    /// See [`TunnelCounters::gso_segments`].
    pub gso_segments: u64,
}

/// Per-PMD counters of one tunnel port, summed.
pub fn tunnel_stats(c: &[TunnelCounters]) -> TunnelStats {
    let mut s = TunnelStats::default();
    for c in c {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.tx_packets += g(&c.tx_packets);
        s.tx_bytes += g(&c.tx_bytes);
        s.rx_packets += g(&c.rx_packets);
        s.rx_bytes += g(&c.rx_bytes);
        s.held += g(&c.held);
        s.drop_no_path += g(&c.drop_no_path);
        s.drop_too_big += g(&c.drop_too_big);
        s.drop_no_room += g(&c.drop_no_room);
        s.pmtu_sent += g(&c.pmtu_sent);
        s.gso_segments += g(&c.gso_segments);
    }
    s
}

/// Fresh per-PMD counters for a tunnel port.
pub fn new_counters() -> Arc<[TunnelCounters]> {
    (0..pmd::port::MAX_PMDS).map(|_| TunnelCounters::default()).collect()
}

/// A frame the control thread hands PMD thread 0: sent out of a port's
/// slot, or run through a bridge as received on one (the ICMP a tunnel
/// port answers a too big frame with reaches its sender so).
#[derive(Debug)]
pub enum Injected {
    /// Out of the slot (device or tunnel).
    Tx(usize, Packet),
    /// Into the slot's bridge, as received on it.
    Rx(usize, Packet),
}

/// The most ICMP "fragmentation needed" a tunnel port sends per PMD
/// thread and second (as Linux rate-limits its ICMP errors).
pub const PMTU_PER_SECOND: u64 = 1000;

/// The ICMP "fragmentation needed" (RFC 1191) for an inner IPv4 frame `d`
/// that does not fit a tunnel whose inner MTU is `mtu`, written into
/// `out`; its length. None (the frame is only dropped) for a frame that is
/// not IPv4 with Don't Fragment, a later fragment, an ICMP error itself, or
/// from no unicast sender. As the Linux VXLAN device does, the message
/// comes from the frame's destination, so it reaches the sender through
/// the bridge like any frame from the tunnel.
pub fn frag_needed(d: &[u8], mtu: u16, out: &mut [u8; 128]) -> Option<usize> {
    if d.len() < 14 + 20 || d[12..14] != [0x08, 0x00] || d[14] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(d[14] & 0x0f) * 4;
    let ip = &d[14..];
    if ihl < 20 || ip.len() < ihl + 8 {
        return None;
    }
    let (flags, src) = (u16::from_be_bytes([ip[6], ip[7]]), Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dont_frag = flags & 0x4000 != 0;
    let first = flags & 0x1fff == 0;
    let icmp_error = ip[9] == 1 && !matches!(ip[ihl], 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18);
    if !dont_frag || !first || icmp_error || src.is_unspecified() || src.is_multicast() || src.is_broadcast() {
        return None;
    }
    let quoted = ihl + 8;
    let n = 14 + 20 + 8 + quoted;
    if n > out.len() {
        return None;
    }
    out[0..6].copy_from_slice(&d[6..12]);
    out[6..12].copy_from_slice(&d[0..6]);
    out[12..14].copy_from_slice(&[0x08, 0x00]);
    let h = &mut out[14..34];
    h.fill(0);
    h[0] = 0x45;
    h[1] = 0xc0;
    h[2..4].copy_from_slice(&u16::try_from(20 + 8 + quoted).unwrap_or(0).to_be_bytes());
    h[8] = 64;
    h[9] = 1;
    h[12..16].copy_from_slice(&ip[16..20]);
    h[16..20].copy_from_slice(&ip[12..16]);
    let ck = wire::checksum::checksum(h);
    h[10..12].copy_from_slice(&ck.to_be_bytes());
    let m = &mut out[34..n];
    m[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    m[6..8].copy_from_slice(&mtu.to_be_bytes());
    m[8..].copy_from_slice(&ip[..quoted]);
    let ck = wire::checksum::checksum(m);
    m[2..4].copy_from_slice(&ck.to_be_bytes());
    Some(n)
}

/// How much of an IPv6 packet too big for a tunnel its ICMPv6 error
/// quotes (its header and the start of what follows).
const PTB_QUOTE: usize = 128 - 14 - 40 - 8;

/// The ICMPv6 "packet too big" (RFC 4443, for path MTU discovery, RFC
/// 8201) for an inner IPv6 frame `d` that does not fit a tunnel whose inner
/// MTU is `mtu`, written into `out`; its length. None for a frame from no
/// unicast sender or that is an ICMPv6 error itself. From the frame's
/// destination, as [`frag_needed`].
pub fn packet_too_big(d: &[u8], mtu: u16, out: &mut [u8; 128]) -> Option<usize> {
    if d.len() < 14 + 40 || d[12..14] != [0x86, 0xdd] || d[14] >> 4 != 6 {
        return None;
    }
    let ip = &d[14..];
    let src = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
    let icmp_error = ip[6] == 58 && ip.get(40).is_some_and(|t| *t < 128);
    if src.is_unspecified() || src.is_multicast() || icmp_error {
        return None;
    }
    let quoted = ip.len().min(PTB_QUOTE);
    let n = 14 + 40 + 8 + quoted;
    out[0..6].copy_from_slice(&d[6..12]);
    out[6..12].copy_from_slice(&d[0..6]);
    out[12..14].copy_from_slice(&[0x86, 0xdd]);
    let h = &mut out[14..54];
    h.fill(0);
    h[0] = 0x60;
    h[4..6].copy_from_slice(&u16::try_from(8 + quoted).unwrap_or(0).to_be_bytes());
    h[6] = 58;
    h[7] = 64;
    h[8..24].copy_from_slice(&ip[24..40]);
    h[24..40].copy_from_slice(&ip[8..24]);
    let m = &mut out[54..n];
    m[..8].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    m[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
    m[8..].copy_from_slice(&ip[..quoted]);
    let s = wire::checksum::sum(
        wire::checksum::pseudo_v6(
            &wire::Ipv6Address::from_bytes(&ip[24..40]),
            &wire::Ipv6Address::from_bytes(&ip[8..24]),
            58,
            u32::try_from(8 + quoted).unwrap_or(0),
        ),
        m,
    );
    let ck = !wire::checksum::fold(s);
    m[2..4].copy_from_slice(&ck.to_be_bytes());
    Some(n)
}

/// A frame that waits for its tunnel's next hop, on its way to the
/// control thread.
#[derive(Debug)]
pub struct Held {
    /// The tunnel port's slot (the frame goes there again once the next
    /// hop answers).
    pub slot: usize,
    /// The inner frame.
    pub packet: Packet,
}

/// Where a tunnel's frames go now: through which uplink, with which outer
/// header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPath {
    /// The uplink's slot.
    pub uplink: usize,
    /// The outer headers with zero lengths, ID, checksums and source port
    /// (the first `len` bytes).
    pub header: [u8; MAX_OVERHEAD],
    /// Outer header bytes.
    pub len: usize,
    /// Where the VNI (3 bytes) or GRE key (4 bytes) is in the header.
    key_at: usize,
    /// The tunnel's protocol.
    pub kind: TunnelKind,
    /// The largest inner frame (Ethernet header included) that fits the
    /// uplink's MTU once encapsulated.
    pub max_inner: usize,
    /// Partial sum of the outer IPv4 header as prebuilt.
    ip_sum: u32,
    /// The outer network header is IPv6 (its UDP checksum is always
    /// computed).
    pub v6: bool,
    /// Where the outer UDP or GRE header starts.
    pub l4: usize,
    /// What the uplink's NIC computes: the mbuf's offload flags and
    /// lengths word (None: software does it all).
    pub offload: Option<TxOffload>,
    /// The transmit offloads the uplink's NIC enabled (`pmd::port::TX_*`),
    /// for what a guest's frames ask (segmentation, inner checksums).
    pub nic: u64,
}

/// Transmit offloads a tunnel asks of its uplink's NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOffload {
    /// `RTE_MBUF_F_TX_*` flags.
    pub flags: u64,
    /// The mbuf's lengths word (outer L2 and L3, and as "L2" the outer L4,
    /// tunnel and inner Ethernet headers, as DPDK counts tunnels).
    pub lengths: u64,
    /// The NIC computes the outer IPv4 header checksum.
    pub outer_ip: bool,
    /// The NIC computes the outer UDP checksum.
    pub outer_udp: bool,
}

/// The `RTE_MBUF_F_TX_*` flags of a `kind` tunnel's outer headers (over
/// IPv6 when `v6`), nothing asked yet.
pub fn tunnel_flags(kind: TunnelKind, v6: bool) -> u64 {
    let f = pmd::port::tunnel_tx_flags();
    (if v6 { f.outer_ipv6 } else { f.outer_ipv4 })
        | match kind {
            TunnelKind::Vxlan => f.vxlan,
            TunnelKind::Geneve => f.geneve,
            TunnelKind::Gre => f.gre,
        }
}

/// What to ask of a NIC that enabled `enabled` (`pmd::port::TX_*` bits)
/// for a `kind` tunnel (`csum`: with a UDP checksum; `v6`: over IPv6, where
/// a UDP tunnel always has one): the outer IPv4 checksum, and the outer
/// UDP checksum when there is one to compute. None when the NIC computes
/// neither.
pub fn tx_offload_for(kind: TunnelKind, csum: bool, enabled: u64, v6: bool) -> Option<TxOffload> {
    let f = pmd::port::tunnel_tx_flags();
    let outer_ip = !v6 && enabled & pmd::port::TX_OUTER_IPV4_CKSUM != 0;
    let outer_udp = (csum || v6) && kind != TunnelKind::Gre && enabled & pmd::port::TX_OUTER_UDP_CKSUM != 0;
    if !outer_ip && !outer_udp {
        return None;
    }
    let mut flags = tunnel_flags(kind, v6);
    if outer_ip {
        flags |= f.outer_ip_cksum;
    }
    if outer_udp {
        flags |= f.outer_udp_cksum;
    }
    // DPDK counts a tunnel's outer L4 and tunnel headers into l2_len with
    // the inner Ethernet header.
    let tunnel = match kind {
        TunnelKind::Vxlan | TunnelKind::Geneve => 8 + 8,
        TunnelKind::Gre => 4 + 4 + if csum { 4 } else { 0 },
    };
    let lengths = pmd::packet::tx_offload_word(tunnel + 14, 0, 0, 0, if v6 { 40 } else { 20 }, 14);
    Some(TxOffload { flags, lengths, outer_ip, outer_udp })
}

mod off {
    pub const IP: usize = 14;
    pub const IP_LEN: usize = IP + 2;
    pub const IP_ID: usize = IP + 4;
    pub const IP_CSUM: usize = IP + 10;
    pub const IP_SRC: usize = IP + 12;
    pub const UDP: usize = IP + 20;
}

/// Transparent Ethernet bridging: what Geneve and GRE carry here.
pub const ETH_P_TEB: u16 = 0x6558;
/// The GRE flags the switch sends and accepts: C (checksum present), K
/// (key present), S (sequence number present; accepted, never sent).
pub mod gre_flags {
    /// Checksum present.
    pub const C: u16 = 0x8000;
    /// Routing present (RFC 1701; refused).
    pub const R: u16 = 0x4000;
    /// Key present.
    pub const K: u16 = 0x2000;
    /// Sequence number present.
    pub const S: u16 = 0x1000;
}

impl TunnelPath {
    /// The path through uplink slot `uplink` (MAC `src_mac`, MTU `mtu`)
    /// to next hop `dst_mac`, from `local` (of the remote's family).
    pub fn new(spec: &TunnelSpec, uplink: usize, src_mac: [u8; 6], dst_mac: [u8; 6], local: IpAddr, mtu: u16) -> Self {
        let mut h = [0u8; MAX_OVERHEAD];
        h[0..6].copy_from_slice(&dst_mac);
        h[6..12].copy_from_slice(&src_mac);
        let proto = if spec.kind == TunnelKind::Gre { 47 } else { 17 };
        let (v6, l4) = match (local, spec.remote) {
            (IpAddr::V6(l), IpAddr::V6(r)) => {
                h[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
                h[off::IP] = 0x60 | (spec.tos >> 4);
                h[off::IP + 1] = spec.tos << 4;
                h[off::IP + 6] = proto;
                h[off::IP + 7] = spec.ttl;
                h[off::IP + 8..off::IP + 24].copy_from_slice(&l.octets());
                h[off::IP + 24..off::IP + 40].copy_from_slice(&r.octets());
                (true, off::IP + 40)
            }
            (l, r) => {
                let (l, r) = match (l, r) {
                    (IpAddr::V4(l), IpAddr::V4(r)) => (l, r),
                    _ => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED),
                };
                h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                h[off::IP] = 0x45;
                h[off::IP + 1] = spec.tos;
                if spec.df {
                    h[off::IP + 6] = 0x40;
                }
                h[off::IP + 8] = spec.ttl;
                h[off::IP + 9] = proto;
                h[off::IP_SRC..off::IP_SRC + 4].copy_from_slice(&l.octets());
                h[off::IP_SRC + 4..off::IP_SRC + 8].copy_from_slice(&r.octets());
                (false, off::UDP)
            }
        };
        let (len, key_at) = match spec.kind {
            TunnelKind::Vxlan | TunnelKind::Geneve => {
                h[l4 + 2..l4 + 4].copy_from_slice(&spec.dst_port.to_be_bytes());
                let t = l4 + 8;
                if spec.kind == TunnelKind::Vxlan {
                    h[t] = 0x08;
                } else {
                    // Version 0, no options, not OAM nor critical.
                    h[t + 2..t + 4].copy_from_slice(&ETH_P_TEB.to_be_bytes());
                }
                h[t + 4..t + 8].copy_from_slice(&((spec.vni & 0x00ff_ffff) << 8).to_be_bytes());
                (t + 8, t + 4)
            }
            TunnelKind::Gre => {
                let mut flags = gre_flags::K;
                let mut at = l4 + 4;
                if spec.csum {
                    flags |= gre_flags::C;
                    at += 4;
                }
                h[l4..l4 + 2].copy_from_slice(&flags.to_be_bytes());
                h[l4 + 2..l4 + 4].copy_from_slice(&ETH_P_TEB.to_be_bytes());
                h[at..at + 4].copy_from_slice(&spec.vni.to_be_bytes());
                (at + 4, at)
            }
        };
        let ip_sum = if v6 { 0 } else { wire::checksum::sum(0, &h[off::IP..off::IP + 20]) };
        let max_inner = usize::from(mtu).saturating_sub(len - 14);
        TunnelPath { uplink, header: h, len, key_at, kind: spec.kind, max_inner, ip_sum, v6, l4, offload: None, nic: 0 }
    }

    /// The same path through an uplink whose NIC enabled `enabled`
    /// transmit offloads (`pmd::port::TX_*`).
    pub fn with_offloads(mut self, spec: &TunnelSpec, enabled: u64) -> TunnelPath {
        self.offload = tx_offload_for(spec.kind, spec.csum, enabled, self.v6);
        self.nic = enabled;
        self
    }

    /// Writes another VNI or GRE key into headers [`TunnelPath::write`]
    /// wrote (a tunnel whose key is `flow`).
    #[inline]
    pub fn write_key(&self, out: &mut [u8], key: u32) {
        match self.kind {
            TunnelKind::Gre => out[self.key_at..self.key_at + 4].copy_from_slice(&key.to_be_bytes()),
            _ => out[self.key_at..self.key_at + 3].copy_from_slice(&key.to_be_bytes()[1..]),
        }
    }

    /// Sets the TOS of headers [`TunnelPath::write`] wrote whose prebuilt
    /// TOS is 0 (`tos = "inherit"`), the IPv4 checksum updated.
    #[inline]
    pub fn write_tos(&self, out: &mut [u8], tos: u8) {
        if self.v6 {
            out[off::IP] |= tos >> 4;
            out[off::IP + 1] |= tos << 4;
        } else {
            let sum = u16::from_be_bytes([out[off::IP_CSUM], out[off::IP_CSUM + 1]]);
            let new = crate::datapath::rewrite::csum_update(sum, 0x4500, 0x4500 | u16::from(tos));
            out[off::IP + 1] = tos;
            out[off::IP_CSUM..off::IP_CSUM + 2].copy_from_slice(&new.to_be_bytes());
        }
    }

    /// Writes the outer headers for an inner frame of `inner_len` bytes
    /// into `out` (the [`TunnelPath::len`] bytes before it).
    #[inline]
    pub fn write(&self, out: &mut [u8], inner_len: usize, ip_id: u16, src_port: u16) {
        out[..self.len].copy_from_slice(&self.header[..self.len]);
        // What follows the IP header.
        let l4_len = u16::try_from(self.len - self.l4 + inner_len).unwrap_or(u16::MAX);
        if self.v6 {
            out[off::IP + 4..off::IP + 6].copy_from_slice(&l4_len.to_be_bytes());
        } else {
            let ip_len = l4_len.saturating_add(20);
            out[off::IP_LEN..off::IP_LEN + 2].copy_from_slice(&ip_len.to_be_bytes());
            out[off::IP_ID..off::IP_ID + 2].copy_from_slice(&ip_id.to_be_bytes());
            let s = self.ip_sum + u32::from(ip_len) + u32::from(ip_id);
            out[off::IP_CSUM..off::IP_CSUM + 2].copy_from_slice(&(!wire::checksum::fold(s)).to_be_bytes());
        }
        if self.kind != TunnelKind::Gre {
            out[self.l4..self.l4 + 2].copy_from_slice(&src_port.to_be_bytes());
            out[self.l4 + 4..self.l4 + 6].copy_from_slice(&l4_len.to_be_bytes());
        }
    }
}

/// The TOS byte of an inner frame: its IPv4 TOS or IPv6 traffic class
/// (untagged), else 0.
#[inline]
pub fn inner_tos(d: &[u8]) -> u8 {
    match (d.get(12..14), d.get(14), d.get(15)) {
        (Some([0x08, 0x00]), Some(_), Some(t)) => *t,
        (Some([0x86, 0xdd]), Some(a), Some(b)) => (a << 4) | (b >> 4),
        _ => 0,
    }
}

/// Where an encapsulated frame's outer UDP or GRE header starts (after
/// its IPv4 or IPv6 header).
fn l4_of(d: &[u8]) -> usize {
    if d[12..14] == [0x86, 0xdd] {
        off::IP + 40
    } else {
        off::UDP
    }
}

/// Writes the GRE checksum of an encapsulated frame (`d`: from the outer
/// Ethernet header to the end of the inner frame; its GRE header has the C
/// flag).
pub fn gre_checksum(d: &mut [u8]) {
    let g = l4_of(d);
    d[g + 4..g + 6].fill(0);
    let c = wire::checksum::checksum(&d[g..]);
    d[g + 4..g + 6].copy_from_slice(&c.to_be_bytes());
}

/// Writes the UDP checksum of an encapsulated frame (`d`: from the outer
/// Ethernet header, IPv4 or IPv6, to the end of the inner frame).
pub fn udp_checksum(d: &mut [u8]) {
    let u = l4_of(d);
    let pseudo = if u == off::UDP {
        let src = wire::Ipv4Address([d[off::IP_SRC], d[off::IP_SRC + 1], d[off::IP_SRC + 2], d[off::IP_SRC + 3]]);
        let dst = wire::Ipv4Address([d[off::IP_SRC + 4], d[off::IP_SRC + 5], d[off::IP_SRC + 6], d[off::IP_SRC + 7]]);
        wire::checksum::pseudo_v4(src, dst, 17, u16::try_from(d.len() - u).unwrap_or(u16::MAX))
    } else {
        let src = wire::Ipv6Address::from_bytes(&d[off::IP + 8..off::IP + 24]);
        let dst = wire::Ipv6Address::from_bytes(&d[off::IP + 24..off::IP + 40]);
        wire::checksum::pseudo_v6(&src, &dst, 17, u32::try_from(d.len() - u).unwrap_or(u32::MAX))
    };
    d[u + 6..u + 8].fill(0);
    let s = wire::checksum::sum(pseudo, &d[u..]);
    // Zero means "no checksum" in UDP: all ones stands for it.
    let c = match !wire::checksum::fold(s) {
        0 => 0xffff,
        c => c,
    };
    d[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
}

/// The hash of an inner frame that picks its UDP source port: its MACs
/// and, for IPv4, addresses and ports, so that one flow keeps one outer
/// port (and one path through the underlay's ECMP) and flows spread.
#[inline]
pub fn inner_hash(d: &[u8]) -> u32 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut mix = |w: u64| h = (h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    if d.len() >= 14 {
        mix(u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]));
        mix(u64::from(u32::from_be_bytes([d[8], d[9], d[10], d[11]])));
    }
    if d.len() >= 38 && d[12] == 0x08 && d[13] == 0x00 {
        mix(u64::from_be_bytes([d[26], d[27], d[28], d[29], d[30], d[31], d[32], d[33]]));
        if d[14] == 0x45 {
            mix(u64::from(u32::from_be_bytes([d[34], d[35], d[36], d[37]])));
        }
    }
    #[allow(clippy::cast_possible_truncation)] // folding 64 bits into 32
    let x = (h ^ (h >> 32)) as u32;
    x
}

/// The UDP source port for a hash, in [`SRC_PORTS`].
#[inline]
pub fn src_port(hash: u32) -> u16 {
    let span = u32::from(*SRC_PORTS.end() - *SRC_PORTS.start()) + 1;
    #[allow(clippy::cast_possible_truncation)] // below span, which fits u16
    let p = *SRC_PORTS.start() + (hash % span) as u16;
    p
}

/// Wakes the control thread (a mio waker), once until it drained.
#[derive(Clone)]
pub struct Wake {
    pending: Arc<AtomicBool>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wake").field("pending", &self.pending).finish_non_exhaustive()
    }
}

impl Wake {
    /// A waker that calls `wake`.
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Wake {
        Wake { pending: Arc::new(AtomicBool::new(false)), wake }
    }
    /// Wakes the control thread unless a wake-up is pending already (one
    /// system call per wake-up, not per packet).
    #[inline]
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            (self.wake)();
        }
    }
    /// Called by the control thread before it drains its queues.
    pub fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TunnelSpec {
        TunnelSpec::vxlan(Ipv4Addr::new(10, 0, 0, 2).into(), 0x12_3456)
    }

    #[test]
    fn the_outer_header_is_a_valid_vxlan_packet() {
        let inner = [0xaau8; 60];
        let path = TunnelPath::new(
            &spec(),
            3,
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(10, 0, 0, 1).into(),
            1500,
        );
        let mut frame = vec![0u8; VXLAN_OVERHEAD + inner.len()];
        frame[VXLAN_OVERHEAD..].copy_from_slice(&inner);
        path.write(&mut frame, inner.len(), 0x1234, src_port(77));
        let eth = wire::EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr().0, [2, 0, 0, 0, 0, 2]);
        let ip = wire::Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum(), "outer IPv4 checksum");
        assert_eq!(ip.total_len(), 20 + 8 + 8 + 60);
        assert_eq!(ip.ident(), 0x1234);
        assert!(ip.dont_frag());
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.src_addr().0, [10, 0, 0, 1]);
        assert_eq!(ip.dst_addr().0, [10, 0, 0, 2]);
        let udp = wire::UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.dst_port(), 4789);
        assert!(SRC_PORTS.contains(&udp.src_port()));
        assert_eq!(udp.len(), 8 + 8 + 60);
        assert_eq!(udp.checksum(), 0, "no UDP checksum unless csum");
        let vx = wire::vxlan::VxlanPacket::new_checked(udp.payload()).unwrap();
        assert_eq!(vx.flags(), 0x08);
        assert_eq!(vx.vni(), 0x12_3456);
        assert_eq!(vx.payload(), &inner[..]);
        // With csum the UDP checksum verifies.
        udp_checksum(&mut frame);
        let ip = wire::Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let udp = wire::UdpPacket::new_checked(ip.payload()).unwrap();
        assert_ne!(udp.checksum(), 0);
        let s =
            wire::checksum::sum(wire::checksum::pseudo_v4(ip.src_addr(), ip.dst_addr(), 17, udp.len()), ip.payload());
        assert_eq!(wire::checksum::fold(s), 0xffff, "UDP checksum verifies");
        // The MTU bounds the inner frame: 1500 - 50 + 14.
        assert_eq!(path.max_inner, 1464);
        // A key=flow tunnel writes each frame's VNI, GRE's key too.
        path.write_key(&mut frame, 0x00ab_cdef);
        let vx = wire::vxlan::VxlanPacket::new_checked(&frame[42..]).unwrap();
        assert_eq!(vx.vni(), 0x00ab_cdef);
        let gre = TunnelSpec { kind: TunnelKind::Gre, csum: true, ..spec() };
        let path =
            TunnelPath::new(&gre, 3, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], Ipv4Addr::new(10, 0, 0, 1).into(), 1500);
        let mut frame = vec![0u8; path.len + 60];
        path.write(&mut frame, 60, 1, 0);
        path.write_key(&mut frame, 0xdead_beef);
        assert_eq!(path.len, 14 + 20 + 12);
        assert_eq!(&frame[34..38], &[0xa0, 0x00, 0x65, 0x58], "C and K, Ethernet");
        assert_eq!(&frame[42..46], &0xdead_beefu32.to_be_bytes());
    }

    #[test]
    fn offloads_are_asked_for_what_the_nic_enabled() {
        use pmd::port::{TX_OUTER_IPV4_CKSUM as IP, TX_OUTER_UDP_CKSUM as UDP};
        let f = pmd::port::tunnel_tx_flags();
        assert_eq!(tx_offload_for(TunnelKind::Vxlan, true, 0, false), None, "nothing enabled: software");
        assert_eq!(tx_offload_for(TunnelKind::Vxlan, false, UDP, false), None, "no UDP checksum to compute");
        let o = tx_offload_for(TunnelKind::Vxlan, false, IP | UDP, false).unwrap();
        assert!(o.outer_ip && !o.outer_udp);
        assert_eq!(o.flags, f.outer_ipv4 | f.outer_ip_cksum | f.vxlan);
        assert!(f.outer_ipv4 != 0 && f.outer_ip_cksum != 0 && f.vxlan != 0 && f.outer_ipv4 != f.outer_ip_cksum);
        // Outer L2 14 and L3 20; UDP, VXLAN and the inner Ethernet header
        // as "L2", DPDK's way: the bit layout of rte_mbuf's tx_offload.
        assert_eq!(o.lengths, 30 | (20 << 40) | (14 << 49));
        let o = tx_offload_for(TunnelKind::Geneve, true, IP | UDP, false).unwrap();
        assert!(o.outer_ip && o.outer_udp);
        assert_eq!(o.flags, f.outer_ipv4 | f.outer_ip_cksum | f.outer_udp_cksum | f.geneve);
        let o = tx_offload_for(TunnelKind::Vxlan, true, UDP, false).unwrap();
        assert!(!o.outer_ip && o.outer_udp);
        assert_eq!(o.flags & f.outer_ip_cksum, 0, "the IP checksum stays in software");
        let o = tx_offload_for(TunnelKind::Gre, true, IP | UDP, false).unwrap();
        assert!(!o.outer_udp, "GRE has no UDP checksum");
        assert_eq!(o.lengths & 0x7f, 4 + 4 + 4 + 14, "GRE with checksum and key, inner Ethernet");
        assert_eq!(o.flags, f.outer_ipv4 | f.outer_ip_cksum | f.gre);
        // Over IPv6: no IP checksum, the UDP one always (RFC 8200), an
        // outer L3 of 40 bytes.
        assert_eq!(tx_offload_for(TunnelKind::Vxlan, false, IP, true), None, "no IPv4 checksum over IPv6");
        let o = tx_offload_for(TunnelKind::Vxlan, false, IP | UDP, true).unwrap();
        assert!(!o.outer_ip && o.outer_udp);
        assert_eq!(o.flags, f.outer_ipv6 | f.outer_udp_cksum | f.vxlan);
        assert_eq!(o.lengths, 30 | (40 << 40) | (14 << 49));
    }

    #[test]
    fn too_big_frames_get_fragmentation_needed_back() {
        // A TCP segment with DF from 10.0.0.1 (MAC ..:01) to 10.0.0.2.
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let mut ip = [0x45u8, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let ck = wire::checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89, 1, 2, 3, 4]);
        f.resize(1514, 0xab);
        let mut out = [0u8; 128];
        let n = frag_needed(&f, 1450, &mut out).unwrap();
        let eth = wire::EthernetFrame::new_checked(&out[..n]).unwrap();
        assert_eq!(
            (eth.dst_addr().0, eth.src_addr().0),
            ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]),
            "back to the sender"
        );
        let ip = wire::Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr().0, ip.dst_addr().0), ([10, 0, 0, 2], [10, 0, 0, 1]));
        let icmp = ip.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4), "destination unreachable, fragmentation needed");
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1450, "the next-hop MTU");
        assert_eq!(wire::checksum::checksum(icmp), 0);
        assert_eq!(&icmp[8..], &f[14..14 + 28], "the header and 8 bytes of the datagram");
        // Without DF, or an ICMP error itself: dropped, no answer.
        let mut g = f.clone();
        g[20] = 0;
        assert_eq!(frag_needed(&g, 1450, &mut out), None);
        let mut g = f.clone();
        g[23] = 1;
        g[34] = 3;
        assert_eq!(frag_needed(&g, 1450, &mut out), None);
        let mut g = f.clone();
        g[12] = 0x86;
        g[13] = 0xdd;
        assert_eq!(frag_needed(&g, 1450, &mut out), None);
    }

    #[test]
    fn over_ipv6_the_outer_header_is_ipv6_with_a_udp_checksum() {
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let spec = TunnelSpec { remote: v6("fd00:9::2"), ..spec() };
        let path = TunnelPath::new(&spec, 3, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], v6("fd00:9::1"), 1500);
        assert_eq!((path.v6, path.len, path.l4), (true, 70, 54));
        assert_eq!(path.max_inner, 1500 - 40 - 8 - 8);
        let inner = [0x5au8; 60];
        let mut f = vec![0u8; path.len + inner.len()];
        f[path.len..].copy_from_slice(&inner);
        path.write(&mut f, inner.len(), 0, 40000);
        udp_checksum(&mut f);
        let ip = wire::Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(f[12..14], [0x86, 0xdd]);
        assert_eq!((ip.payload_len(), ip.hop_limit()), (8 + 8 + 60, 64));
        assert_eq!(ip.src_addr().0, "fd00:9::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let udp = &f[54..];
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
        let s = wire::checksum::sum(
            wire::checksum::pseudo_v6(&ip.src_addr(), &ip.dst_addr(), 17, u32::try_from(udp.len()).unwrap()),
            udp,
        );
        assert_eq!(wire::checksum::fold(s), 0xffff, "the UDP checksum verifies");
        let vx = wire::vxlan::VxlanPacket::new_checked(&udp[8..]).unwrap();
        assert_eq!((vx.vni(), vx.payload()), (0x12_3456, &inner[..]));
    }

    #[test]
    fn too_big_ipv6_frames_get_packet_too_big_back() {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x60, 0, 0, 0, 0x05, 0xc8, 6, 64];
        f.extend_from_slice(&"fd01::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&"fd01::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        f.resize(1514, 0xab);
        let mut out = [0u8; 128];
        let n = packet_too_big(&f, 1450, &mut out).unwrap();
        assert_eq!(n, 128);
        let ip = wire::Ipv6Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!(ip.src_addr().0, "fd01::2".parse::<std::net::Ipv6Addr>().unwrap().octets(), "from the destination");
        assert_eq!(ip.dst_addr().0, "fd01::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let m = &out[54..n];
        assert_eq!((m[0], m[1], u32::from_be_bytes([m[4], m[5], m[6], m[7]])), (2, 0, 1450));
        let s = wire::checksum::sum(wire::checksum::pseudo_v6(&ip.src_addr(), &ip.dst_addr(), 58, 74), m);
        assert_eq!(wire::checksum::fold(s), 0xffff, "ICMPv6 checksum");
        assert_eq!(&m[8..], &f[14..14 + PTB_QUOTE]);
        // An ICMPv6 error itself gets none.
        let mut g = f.clone();
        g[20] = 58;
        g[54] = 1;
        assert_eq!(packet_too_big(&g, 1450, &mut out), None);
    }

    #[test]
    fn source_ports_stay_in_range_and_follow_the_flow() {
        let mut f = [0u8; 60];
        f[12] = 0x08;
        f[14] = 0x45;
        let a = inner_hash(&f);
        assert_eq!(a, inner_hash(&f), "one flow, one port");
        f[37] = 1; // another destination port
        assert_ne!(a, inner_hash(&f));
        for h in [0, 1, 28232, 28233, u32::MAX] {
            assert!(SRC_PORTS.contains(&src_port(h)));
        }
    }
}
