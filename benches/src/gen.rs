//! The traffic generator and sink.

use pmd::{Batch, Mempool, Port};
use std::sync::Arc;
use std::time::Duration;
use wire::build::Udp4Frame;
use wire::{EthernetAddress, Ipv4Address};

/// Bursts a paced generator may fall behind before it skips the ones it
/// missed (see [`run_trial`]).
const MAX_LAG_BURSTS: u64 = 16;

/// Marks a payload as ours (and not some stray frame of the peer's).
const MAGIC: u32 = 0x5653_4231; // "VSB1"

/// What to send.
#[derive(Debug, Clone)]
pub struct TrafficSpec {
    /// Frame size without FCS (the usual "64-byte frame" is 60 here + 4 FCS
    /// the wire adds; we send `frame_size - 4` bytes so the sizes match what
    /// testpmd and OVS report).
    pub frame_size: usize,
    /// Distinct flows: source MAC, source IP and UDP source port vary
    /// together (flow f: MAC 02:d:00:f, IP [`flow_ip`], port 1024 + f %
    /// 50000).
    pub flows: u32,
    /// Offered rate per direction in Mpps (None: as fast as the rings take).
    pub rate_mpps: Option<f64>,
    /// Trial length.
    pub duration: Duration,
    /// Record every Nth packet's latency.
    pub latency_sample: u32,
    /// Port 1 is a tunnel uplink: what is sent there is VXLAN, Geneve or
    /// GRE (VNI or key [`VXLAN_VNI`] from the remote endpoint
    /// [`VXLAN_REMOTE`] to the switch's [`VXLAN_LOCAL`]) around the frame,
    /// and what comes back there is expected encapsulated (frame sizes are
    /// the inner frames').
    pub tunnel: Option<Encap>,
    /// Which ports send (port 0, port 1); both in every scenario but a
    /// tunnel's encapsulation-only or decapsulation-only run.
    pub send: [bool; 2],
    /// Tunnel scenarios: remote endpoints. Above 1, flow f comes through
    /// the tunnel from [`crate::flows::remote_ip`]`(f % remotes)`, and port
    /// 0's flow f is addressed to the MAC of the tunnel's flow f (the
    /// switches' flows send it back to that remote).
    pub remotes: u32,
}

/// The switch's underlay address in tunnel scenarios (RFC 2544's
/// benchmarking range: nothing on a real network uses it).
pub const VXLAN_LOCAL: [u8; 4] = [198, 18, 0, 1];
/// The generator's, as the remote endpoint.
pub const VXLAN_REMOTE: [u8; 4] = [198, 18, 0, 2];
/// The switch's uplink MAC in tunnel scenarios.
pub const VXLAN_LOCAL_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];
/// The remote endpoint's MAC.
pub const VXLAN_REMOTE_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 2];
/// The VNI.
pub const VXLAN_VNI: u32 = 100;
/// A tunnel protocol of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// VXLAN to UDP 4789.
    Vxlan,
    /// Geneve (no options) to UDP 6081.
    Geneve,
    /// Ethernet over GRE with a key.
    Gre,
}

impl Encap {
    /// Outer Ethernet, IPv4 and tunnel headers.
    pub fn overhead(self) -> usize {
        match self {
            Encap::Vxlan | Encap::Geneve => 14 + 20 + 8 + 8,
            Encap::Gre => 14 + 20 + 8,
        }
    }
}

/// `inner` in a tunnel from the remote endpoint to the switch (UDP
/// checksum zero, as a Linux VTEP sends; source port from the flow).
pub fn encap_wrap(kind: Encap, inner: &[u8], flow: u32, remote: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(kind.overhead() + inner.len());
    f.extend_from_slice(&VXLAN_LOCAL_MAC);
    f.extend_from_slice(&VXLAN_REMOTE_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (kind.overhead() - 14 + inner.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = if kind == Encap::Gre { 47 } else { 17 };
    ip[12..16].copy_from_slice(&remote);
    ip[16..20].copy_from_slice(&VXLAN_LOCAL);
    let ck = wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend_from_slice(&ip);
    let sport = 32768 + (flow % 28000) as u16;
    match kind {
        Encap::Gre => {
            f.extend_from_slice(&[0x20, 0x00, 0x65, 0x58]);
            f.extend_from_slice(&VXLAN_VNI.to_be_bytes());
        }
        _ => {
            f.extend_from_slice(&sport.to_be_bytes());
            f.extend_from_slice(&(if kind == Encap::Vxlan { 4789u16 } else { 6081 }).to_be_bytes());
            f.extend_from_slice(&(ip_len - 20).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(if kind == Encap::Vxlan { &[0x08, 0, 0, 0] } else { &[0, 0, 0x65, 0x58] });
            f.extend_from_slice(&(VXLAN_VNI << 8).to_be_bytes());
        }
    }
    f.extend_from_slice(inner);
    f
}

/// What came back.
#[derive(Debug, Clone)]
pub struct TrialResult {
    /// Packets sent (accepted by the tx ring) per direction.
    pub tx: [u64; 2],
    /// Packets offered per direction: at a paced rate, every packet due,
    /// whether the forwarder's ring took it or not (what RFC 2544 counts
    /// lost when it does not come back); unpaced, the same as `tx`.
    pub offered: [u64; 2],
    /// Packets received per direction (sent on 0, received on 1; and back).
    pub rx: [u64; 2],
    /// Frames received that were not ours.
    pub foreign: u64,
    /// Seconds of sending.
    pub seconds: f64,
    /// Directions that sent (1 or 2).
    pub directions: u32,
    /// Latency samples in nanoseconds.
    pub latency: hdrhistogram::Histogram<u64>,
    /// The generator's longest pause between two turns of its loop,
    /// microseconds: a long one (its core taken by another thread) sends
    /// late and drains late, and can cost packets that the forwarder is
    /// not to blame for.
    pub max_gap_us: f64,
}

impl TrialResult {
    /// Received Mpps per direction, averaged over both.
    pub fn mpps_each_way(&self) -> f64 {
        (self.rx[0] + self.rx[1]) as f64 / f64::from(self.directions.max(1)) / self.seconds / 1e6
    }
    /// Packets offered (both directions) that did not come back.
    pub fn lost(&self) -> u64 {
        (self.offered[0] + self.offered[1]).saturating_sub(self.rx[0] + self.rx[1])
    }
    /// Offered Mpps per direction, averaged over both.
    pub fn offered_mpps_each_way(&self) -> f64 {
        (self.offered[0] + self.offered[1]) as f64 / f64::from(self.directions.max(1)) / self.seconds / 1e6
    }
    /// Share of accepted packets that did not come back.
    pub fn loss_ratio(&self) -> f64 {
        let tx = self.tx[0] + self.tx[1];
        if tx == 0 {
            return 0.0;
        }
        (tx.saturating_sub(self.rx[0] + self.rx[1])) as f64 / tx as f64
    }
}

/// The source IPv4 address of flow `f` in direction `dir`: 10.0.0.0 plus
/// a block of 2^22 addresses per direction, so that up to 4M flows per
/// direction never share an address with the other direction's.
pub fn flow_ip(dir: u32, f: u32) -> u32 {
    0x0a00_0000 + (dir << 22) + (f & 0x3f_ffff)
}

fn templates(spec: &TrafficSpec, dir: usize) -> Vec<Vec<u8>> {
    let len = spec.frame_size.saturating_sub(4).max(60);
    (0..spec.flows.max(1))
        .map(|f| {
            let fr = Udp4Frame {
                // Flow f: source MAC, IP and UDP port all vary with f.
                src_mac: EthernetAddress([2, dir as u8, 0, (f >> 16) as u8, (f >> 8) as u8, f as u8]),
                dst_mac: match spec.remotes > 1 {
                    true => EthernetAddress([2, dir as u8 ^ 1, 0, (f >> 16) as u8, (f >> 8) as u8, f as u8]),
                    false => EthernetAddress([2, dir as u8 ^ 1, 0, 0, 0, 0]),
                },
                vlan: None,
                src_ip: Ipv4Address::from_u32(flow_ip(dir as u32, f)),
                dst_ip: Ipv4Address::from_u32(flow_ip(dir as u32 ^ 1, 1)),
                src_port: 1024 + (f % 50000) as u16,
                dst_port: 5001,
                ttl: 64,
            };
            let mut b = vec![0u8; len];
            fr.emit(&mut b, false);
            if let (Some(kind), 1) = (spec.tunnel, dir) {
                let remote = if spec.remotes > 1 { crate::flows::remote_ip(f % spec.remotes) } else { VXLAN_REMOTE };
                return encap_wrap(kind, &b, f, remote);
            }
            b
        })
        .collect()
}

/// Runs one trial on `ports` (two of them) from the calling thread, which
/// should be pinned to the generator's core and registered with EAL. At a
/// paced rate, a generator that falls more than 16 bursts behind (its core
/// taken by another thread) skips what it missed instead of sending it at
/// once: those packets were not offered, and a line-rate catch-up would
/// overflow the rings and count as the forwarder's loss.
pub fn run_trial(ports: &[Arc<Port>; 2], pool: &Mempool, spec: &TrafficSpec) -> TrialResult {
    let tmpl = [templates(spec, 0), templates(spec, 1)];
    let payload_at = Udp4Frame {
        src_mac: EthernetAddress::default(),
        dst_mac: EthernetAddress::default(),
        vlan: None,
        src_ip: Ipv4Address::default(),
        dst_ip: Ipv4Address::default(),
        src_port: 0,
        dst_port: 0,
        ttl: 0,
    }
    .header_len();
    // Where the tag is in what is sent on each port (and in what comes
    // back on it: port 1 carries VXLAN both ways in tunnel scenarios).
    let outer = spec.tunnel.map_or(0, Encap::overhead);
    let tag_at = [payload_at, payload_at + outer];
    let hz = pmd::tsc_hz() as f64;
    let ns_per_tick = 1e9 / hz;
    let mut lat = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let (mut tx, mut offered, mut rx, mut foreign) = ([0u64; 2], [0u64; 2], [0u64; 2], 0u64);
    let mut flow = [0usize; 2];
    let mut seq: u32 = 0;
    let start = pmd::rdtsc();
    let end = start + (spec.duration.as_secs_f64() * hz) as u64;
    let drain_end = end + (0.2 * hz) as u64;
    let ticks_per_burst = spec.rate_mpps.map(|r| (32.0 / (r * 1e6) * hz) as u64);
    let mut next_send = [start; 2];
    // Per direction, packets built but not yet taken by the tx ring: kept
    // for the next burst instead of being freed and built again.
    let mut pending = [Batch::new(), Batch::new()];
    let mut b = Batch::new();
    let n_rxq: Vec<u16> = ports.iter().map(|p| p.n_rxq()).collect();
    let (mut last_turn, mut max_gap) = (start, 0u64);
    loop {
        let now = pmd::rdtsc();
        max_gap = max_gap.max(now.saturating_sub(last_turn));
        last_turn = now;
        if now >= drain_end {
            break;
        }
        let sending = now < end;
        for d in 0..2 {
            if sending && spec.send[d] && ticks_per_burst.is_none_or(|_| now >= next_send[d]) {
                let out = &mut pending[d];
                let have = out.len();
                if out.alloc_bulk(pool) > 0 {
                    let stamp = pmd::rdtsc();
                    for p in &mut out.as_mut_slice()[have..] {
                        let t = &tmpl[d][flow[d]];
                        flow[d] += 1;
                        if flow[d] == tmpl[d].len() {
                            flow[d] = 0;
                        }
                        let Some(buf) = p.append(t.len()) else { continue };
                        buf.copy_from_slice(t);
                        let mut tag = [0u8; 16];
                        tag[..4].copy_from_slice(&MAGIC.to_ne_bytes());
                        tag[4..12].copy_from_slice(&stamp.to_ne_bytes());
                        tag[12..].copy_from_slice(&seq.to_ne_bytes());
                        buf[tag_at[d]..tag_at[d] + 16].copy_from_slice(&tag);
                        seq = seq.wrapping_add(1);
                    }
                }
                let due = out.len() as u64;
                let took = ports[d].tx_burst(0, out) as u64;
                tx[d] += took;
                offered[d] += if ticks_per_burst.is_some() { due } else { took };
                if let Some(t) = ticks_per_burst {
                    next_send[d] += t;
                    // Fallen behind (its core taken for a while): the
                    // bursts it missed were never offered. Sending them
                    // all at once would overflow the rings and blame the
                    // forwarder for the generator's pause.
                    if now > next_send[d] + MAX_LAG_BURSTS * t {
                        next_send[d] = now;
                    }
                    // Paced: what the ring refused is dropped, so the
                    // timestamps stay honest.
                    out.clear();
                }
            }
            // Drain each ring (up to 8 bursts): a forwarder that sends all
            // its output on one ring (one tx queue per PMD thread, as ours
            // and OVS-DPDK do) must not be held back by the sink.
            for q in 0..n_rxq[d] {
                for _ in 0..8 {
                    let n = ports[d].rx_burst(q, &mut b);
                    if n == 0 {
                        break;
                    }
                    let now = pmd::rdtsc();
                    for p in b.as_slice() {
                        let data = p.data();
                        let ours = |at: usize| data.len() >= at + 16 && data[at..at + 4] == MAGIC.to_ne_bytes();
                        // Where this port's frames carry the tag; or the
                        // other port's (a forwarder that does not
                        // encapsulate, as testpmd's io forwarding).
                        let Some(payload_at) = [tag_at[d], tag_at[d ^ 1]].into_iter().find(|at| ours(*at)) else {
                            foreign += 1;
                            continue;
                        };
                        // Arrived on port d: sent on the other one.
                        rx[d ^ 1] += 1;
                        let s = u32::from_ne_bytes(data[payload_at + 12..payload_at + 16].try_into().unwrap_or([0; 4]));
                        if s % spec.latency_sample.max(1) == 0 {
                            let sent =
                                u64::from_ne_bytes(data[payload_at + 4..payload_at + 12].try_into().unwrap_or([0; 8]));
                            let _ = lat.record(((now.saturating_sub(sent)) as f64 * ns_per_tick) as u64 + 1);
                        }
                    }
                    b.clear();
                    if n < pmd::BATCH_SIZE {
                        break;
                    }
                }
            }
        }
    }
    TrialResult {
        tx,
        offered,
        rx,
        foreign,
        seconds: spec.duration.as_secs_f64(),
        directions: spec.send.iter().filter(|s| **s).count() as u32,
        latency: lat,
        max_gap_us: max_gap as f64 * ns_per_tick / 1000.0,
    }
}
