//! L2 switching on a real PMD thread between memif ports: learning,
//! flooding, access/trunk VLANs with tags pushed and popped, hairpin drops,
//! MAC moves. Run under cargo-nextest (one EAL per test process).
#![allow(clippy::cast_possible_truncation)] // test data is small and known

use pmd::pmd::{PmdConfig, PmdSet};
use pmd::{Batch, Mempool, Packet, Port, PortConfig, PortSource};

// The pmd crate's test set-up (one EAL per test process, VSWITCH_TEST_MEMORY).
#[path = "../../pmd/tests/common/mod.rs"]
mod common;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::datapath::l2::{L2Bridge, PortVlan, VlanSet};
use wire::EthernetAddress;

struct Rig {
    pool: Arc<Mempool>,
    gen: Vec<Port>,
    bridge: Arc<L2Bridge>,
    set: Option<PmdSet>,
    socks: Vec<String>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(s) = self.set.take() {
            // Closes the switch's memif ends (the set held the last
            // references); wait for the hosts' ends to see it before they
            // close: DPDK 22.11's memif can crash when both ends of a pair
            // in one process close while a disconnect is being handled.
            s.stop();
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.gen.iter().any(|p| p.link().up) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for s in &self.socks {
            let _ = std::fs::remove_file(s);
        }
    }
}

fn rig(vlans: Vec<PortVlan>) -> Rig {
    rig_with_room(vlans, pmd::mempool::DEFAULT_DATA_ROOM)
}

/// A rig whose switch side receives into mbufs of `room` bytes (headroom
/// included): frames longer than that arrive as several segments.
fn rig_with_room(vlans: Vec<PortVlan>, room: u16) -> Rig {
    rig_with(vlans, room, None)
}

/// A rig whose ports (both sides) have `mtu`; with an MTU, the hosts'
/// mbufs are as large as the switch's.
fn rig_with(vlans: Vec<PortVlan>, room: u16, mtu: Option<u16>) -> Rig {
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let eal = common::eal(&[]);
    let pool = match mtu {
        None => common::pool(eal, "p"),
        Some(_) => Arc::new(Mempool::new(eal, "p", 4095, 256, room, None).unwrap()),
    };
    let switch_pool = Arc::new(Mempool::new(eal, "sw", 8191, 256, room, None).unwrap());
    let n = vlans.len();
    let socks: Vec<String> = (0..n).map(|i| format!("/tmp/l2test-{}-{i}.sock", std::process::id())).collect();
    let mut gen = Vec::new();
    let mut fwd = Vec::new();
    for (i, s) in socks.iter().enumerate() {
        let dev = |k: usize, role: &str| {
            PortSource::Vdev(format!("net_memif{k},role={role},id=0,socket={s},socket-abstract=no"))
        };
        let cfg = |name: String, src| {
            let mut c = PortConfig::new(&name, src);
            c.mtu = mtu;
            c
        };
        fwd.push(Arc::new(Port::open(eal, &cfg(format!("sw{i}"), dev(i, "server")), switch_pool.clone()).unwrap()));
        gen.push(Port::open(eal, &cfg(format!("host{i}"), dev(n + i, "client")), pool.clone()).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gen.iter().all(|p| p.link().up) || !fwd.iter().all(|p| p.link().up) {
        assert!(Instant::now() < deadline, "memif links up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let bridge = L2Bridge::new(vlans, 1024, switch_pool.clone());
    let b = bridge.clone();
    let set =
        PmdSet::start(&PmdConfig { cores: vec![ncpu - 1], rebalance_interval: None }, fwd, move |i| b.pipeline(i))
            .unwrap();
    Rig { pool, gen, bridge, set: Some(set), socks }
}

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, n])
}

/// A frame dst <- src, tagged with `vid` when given, carrying `mark`.
fn frame(dst: EthernetAddress, src: EthernetAddress, vid: Option<u16>, mark: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(v) = vid {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&0x88b5u16.to_be_bytes()); // local experimental EtherType
    f.extend(std::iter::repeat_n(mark, 46));
    f
}

impl Rig {
    /// Sends `f` from host port `from`; returns what every host port
    /// received within 300 ms, by port.
    fn send(&self, from: usize, f: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut b = Batch::new();
        b.push(Packet::from_bytes(&self.pool, f).unwrap()).unwrap();
        assert_eq!(self.gen[from].tx_burst(0, &mut b), 1);
        self.collect()
    }

    /// What every host port receives within 300 ms, by port.
    fn collect(&self) -> Vec<Vec<Vec<u8>>> {
        let mut got = vec![Vec::new(); self.gen.len()];
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            for (i, g) in self.gen.iter().enumerate() {
                let mut r = Batch::new();
                g.rx_burst(0, &mut r);
                got[i].extend(r.as_slice().iter().map(|p| p.data().to_vec()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    }

    /// Sends `frames` from host port `from` in one burst (the switch sees
    /// them in one batch, or few); returns what every host port received
    /// within 300 ms, by port.
    fn send_burst(&self, from: usize, frames: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
        let mut b = Batch::new();
        for f in frames {
            b.push(Packet::from_bytes(&self.pool, f).unwrap()).unwrap();
        }
        assert_eq!(self.gen[from].tx_burst(0, &mut b), frames.len());
        self.collect()
    }

    /// The host ports that received anything.
    fn reached(&self, from: usize, f: &[u8]) -> Vec<usize> {
        self.send(from, f).iter().enumerate().filter(|(_, v)| !v.is_empty()).map(|(i, _)| i).collect()
    }
}

#[test]
fn learns_floods_and_then_switches() {
    let r = rig(vec![PortVlan::None, PortVlan::None, PortVlan::None]);
    // A (port 0) -> B, unknown: flooded to 1 and 2, byte for byte.
    let ab = frame(mac(0xb), mac(0xa), None, 1);
    let got = r.send(0, &ab);
    assert_eq!((got[0].len(), got[1].clone(), got[2].clone()), (0, vec![ab.clone()], vec![ab.clone()]));
    // B (port 1) -> A: A was learned on 0, so only port 0.
    assert_eq!(r.reached(1, &frame(mac(0xa), mac(0xb), None, 2)), vec![0]);
    // Now A -> B goes to port 1 alone.
    assert_eq!(r.reached(0, &ab), vec![1]);
    // Broadcast and multicast from 2 reach every other port.
    assert_eq!(r.reached(2, &frame(EthernetAddress::BROADCAST, mac(0xc), None, 3)), vec![0, 1]);
    assert_eq!(r.reached(2, &frame(EthernetAddress([1, 0, 0x5e, 0, 0, 1]), mac(0xc), None, 4)), vec![0, 1]);
    let fdb = r.bridge.table.entries(vswitch::datapath::l2::L2Bridge::now_s());
    let learned: Vec<(EthernetAddress, u32)> = fdb.iter().map(|e| (e.mac, e.port)).collect();
    assert_eq!(learned, vec![(mac(0xa), 0), (mac(0xb), 1), (mac(0xc), 2)]);
    let s = r.bridge.stats();
    assert_eq!((s.unicast, s.flooded, s.flood_copies), (2, 3, 3));
}

#[test]
fn vlans_isolate_and_trunks_carry_tags() {
    let r = rig(vec![
        PortVlan::Access(10),
        PortVlan::Access(10),
        PortVlan::Access(20),
        PortVlan::Trunk(VlanSet::of(&[10, 20])),
    ]);
    // Broadcast in VLAN 10 from port 0: port 1 untagged, the trunk tagged
    // with VID 10, never port 2.
    let bc = frame(EthernetAddress::BROADCAST, mac(1), None, 7);
    let got = r.send(0, &bc);
    assert!(got[2].is_empty() && got[0].is_empty());
    assert_eq!(got[1], vec![bc.clone()]);
    assert_eq!(got[3], vec![frame(EthernetAddress::BROADCAST, mac(1), Some(10), 7)], "tag pushed, rest unchanged");
    // From VLAN 20: only the trunk, tagged 20.
    let got = r.send(2, &frame(EthernetAddress::BROADCAST, mac(2), None, 8));
    assert!(got[0].is_empty() && got[1].is_empty());
    assert_eq!(got[3], vec![frame(EthernetAddress::BROADCAST, mac(2), Some(20), 8)]);
    // Tagged VID 20 from the trunk to the host learned on port 2: untagged.
    let got = r.send(3, &frame(mac(2), mac(3), Some(20), 9));
    assert_eq!(got[2], vec![frame(mac(2), mac(3), None, 9)], "tag popped");
    assert!(got[0].is_empty() && got[1].is_empty());
    // The VLANs keep their MAC tables apart: mac(3) is known in 20, not 10.
    let now = vswitch::datapath::l2::L2Bridge::now_s();
    assert!(r.bridge.table.entries(now).iter().any(|e| e.mac == mac(3) && e.vlan == 20 && e.port == 3));
    assert_eq!(r.bridge.table.lookup(10, mac(3)), None);
    // Tagged frames on an access port and VLANs the trunk does not allow
    // are dropped and counted.
    assert!(r.reached(0, &frame(EthernetAddress::BROADCAST, mac(1), Some(10), 1)).is_empty());
    assert!(r.reached(3, &frame(EthernetAddress::BROADCAST, mac(3), Some(30), 1)).is_empty());
    assert!(r.reached(3, &frame(EthernetAddress::BROADCAST, mac(3), None, 1)).is_empty());
    assert_eq!(r.bridge.stats().drop_vlan, 3);
}

#[test]
fn hairpin_drops_moves_and_runts() {
    let r = rig(vec![PortVlan::None, PortVlan::None]);
    assert_eq!(r.reached(0, &frame(EthernetAddress::BROADCAST, mac(0xa), None, 1)), vec![1]);
    assert_eq!(r.reached(0, &frame(EthernetAddress::BROADCAST, mac(0xc), None, 1)), vec![1]);
    // C -> A, both behind port 0: the frame is not sent back.
    assert!(r.reached(0, &frame(mac(0xa), mac(0xc), None, 2)).is_empty());
    assert_eq!(r.bridge.stats().drop_hairpin, 1);
    // A shows up behind port 1: it moves, and traffic follows it.
    assert_eq!(r.reached(1, &frame(EthernetAddress::BROADCAST, mac(0xa), None, 3)), vec![0]);
    assert_eq!(r.bridge.stats().mac_moves, 1);
    assert_eq!(r.reached(0, &frame(mac(0xa), mac(0xc), None, 4)), vec![1]);
    // A runt is dropped and counted; the thread goes on.
    assert!(r.reached(0, &[0xffu8; 10]).is_empty());
    assert_eq!(r.bridge.stats().drop_malformed, 1);
    assert_eq!(r.reached(1, &frame(mac(0xc), mac(0xa), None, 5)), vec![0]);
}

/// One burst mixing conversations: runs of the same MAC pair share a
/// decision in the pipeline, so every frame must still go where its own
/// MACs say, in order.
#[test]
fn a_burst_of_mixed_conversations_goes_where_each_frame_says() {
    let r = rig(vec![PortVlan::None, PortVlan::None, PortVlan::None]);
    assert_eq!(r.reached(1, &frame(EthernetAddress::BROADCAST, mac(0xb), None, 0)), vec![0, 2]);
    assert_eq!(r.reached(2, &frame(EthernetAddress::BROADCAST, mac(0xc), None, 0)), vec![0, 1]);
    let (ab, ac, ad) = (
        |m| frame(mac(0xb), mac(0xa), None, m),
        |m| frame(mac(0xc), mac(0xa), None, m),
        |m| frame(mac(0xd), mac(0xa), None, m),
    );
    let burst = vec![ab(1), ab(2), ac(3), ac(4), ab(5), ad(6), ad(7), ac(8), ab(9)];
    let got = r.send_burst(0, &burst);
    assert!(got[0].is_empty(), "nothing back to the sender");
    assert_eq!(got[1], vec![ab(1), ab(2), ab(5), ad(6), ad(7), ab(9)], "B's frames and the unknown D's, in order");
    assert_eq!(got[2], vec![ac(3), ac(4), ad(6), ad(7), ac(8)], "C's frames and the unknown D's, in order");
    let s = r.bridge.stats();
    assert_eq!((s.unicast, s.flooded), (7, 4), "{s:?}");
    // A was learned from the burst: B reaches it on port 0 alone.
    assert_eq!(r.reached(1, &frame(mac(0xa), mac(0xb), None, 10)), vec![0]);
}

#[test]
fn multi_segment_frames_are_flooded_whole() {
    // The switch receives into 1024-byte mbufs: a 1400-byte frame arrives
    // as two segments. Flooding it to two ports must send two whole copies.
    let r = rig_with_room(vec![PortVlan::None, PortVlan::None, PortVlan::None], 1024 + 128);
    let mut big = frame(EthernetAddress::BROADCAST, mac(0xa), None, 0);
    big.extend((0..1400 - big.len()).map(|i| (i % 251) as u8));
    let got = r.send(0, &big);
    assert_eq!(got[1], vec![big.clone()], "port 1 got the whole frame");
    assert_eq!(got[2], vec![big.clone()], "port 2 got the whole frame");
}

#[test]
fn multi_segment_frames_get_their_tag_pushed() {
    let r = rig_with_room(
        vec![PortVlan::Access(5), PortVlan::Trunk(VlanSet::all()), PortVlan::Trunk(VlanSet::all())],
        1024 + 128,
    );
    let mut big = frame(EthernetAddress::BROADCAST, mac(0xa), None, 0);
    big.extend((0..1400 - big.len()).map(|i| (i % 251) as u8));
    let got = r.send(0, &big);
    let mut tagged = big[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged.extend_from_slice(&big[12..]);
    assert_eq!(got[1], vec![tagged.clone()]);
    assert_eq!(got[2], vec![tagged]);
}

/// MTU 9000 on memif: 9000-byte frames are flooded, then switched, whole
/// and byte for byte.
#[test]
fn jumbo_frames_cross_memif_at_mtu_9000() {
    let r = rig_with(vec![PortVlan::None, PortVlan::None, PortVlan::None], 9216 + 128, Some(9000));
    let mut ab = frame(mac(0xb), mac(0xa), None, 7);
    ab.extend((0..9014 - ab.len()).map(|i| (i % 251) as u8));
    assert_eq!(ab.len(), 9014, "a full 9000-byte payload behind the Ethernet header");
    let got = r.send(0, &ab);
    assert_eq!((got[1].clone(), got[2].clone()), (vec![ab.clone()], vec![ab.clone()]), "flooded whole");
    let mut ba = frame(mac(0xa), mac(0xb), None, 8);
    ba.extend(std::iter::repeat_n(0x5a, 9014 - ba.len()));
    assert_eq!(r.send(1, &ba), vec![vec![ba.clone()], vec![], vec![]], "switched whole");
    assert_eq!(r.bridge.stats().drop_malformed, 0);
}
