//! PMD threads forwarding over memif: N in, exactly N out; malformed frames
//! counted and dropped; rx queues moved between threads under traffic;
//! capture taps copying a port's packets while they are set, and only
//! then.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // test data is small and known

mod common;

use common::*;
use pmd::capture::{Direction, PortTaps, Tap};
use pmd::forward::{P2p, Validation};
use pmd::pmd::{PmdConfig, PmdSet};
use pmd::{Batch, Packet, Port, PortConfig, PortSource};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Rig {
    eal: &'static pmd::Eal,
    pool: Arc<pmd::Mempool>,
    gen_a: Port,
    gen_b: Port,
    fwd: Vec<Arc<Port>>,
    _c: Cleanup,
}

impl Drop for Rig {
    /// Closes the forwarder's ends first (the PMD set holding them must be
    /// stopped by then), waits for the generator's ends to see it, and only
    /// then lets the generator's ends close.
    fn drop(&mut self) {
        self.fwd.clear();
        wait_links_down(&[&self.gen_a, &self.gen_b]);
    }
}

fn rig(tag: &str, n_rxq: u16, n_txq: u16) -> Rig {
    let (sa, sb) = (sock(&format!("{tag}a")), sock(&format!("{tag}b")));
    let c = Cleanup(vec![sa.clone(), sb.clone()]);
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let vdev = |i: u32, role: &str, s: &str| {
        PortSource::Vdev(format!("net_memif{i},role={role},id=0,socket={s},socket-abstract=no"))
    };
    let q = |mut c: PortConfig| {
        c.n_rxq = n_rxq;
        c.n_txq = n_txq;
        c
    };
    let gen_a = Port::open(eal, &q(PortConfig::new("gen_a", vdev(0, "server", &sa))), pool.clone()).unwrap();
    let gen_b = Port::open(eal, &q(PortConfig::new("gen_b", vdev(1, "server", &sb))), pool.clone()).unwrap();
    let fa = Arc::new(Port::open(eal, &q(PortConfig::new("fwd_a", vdev(2, "client", &sa))), pool.clone()).unwrap());
    let fb = Arc::new(Port::open(eal, &q(PortConfig::new("fwd_b", vdev(3, "client", &sb))), pool.clone()).unwrap());
    wait_links(&[&gen_a, &gen_b, &fa, &fb]);
    Rig { eal, pool, gen_a, gen_b, fwd: vec![fa, fb], _c: c }
}

fn any_core() -> Vec<usize> {
    // Tests do not assume dedicated cores: the last core the process may use.
    let ids = core_affinity_ids();
    vec![*ids.last().unwrap()]
}

fn core_affinity_ids() -> Vec<usize> {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (0..n).collect()
}

/// Sends `frames` on `tx` (retrying what the ring refuses) and collects
/// what arrives on `rx` until `expect` frames came or 10 s passed.
fn pump(pool: &pmd::Mempool, tx: &Port, rx: &Port, frames: &[Vec<u8>], expect: usize) -> Vec<Vec<u8>> {
    let mut next = 0;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut idle_since = None;
    while Instant::now() < deadline {
        let mut b = Batch::new();
        // At most 256 frames in flight: below every ring on the way
        // (memif's default is 1024), so a correct forwarder loses none.
        while next < frames.len() && !b.is_full() && next < got.len() + 256 {
            b.push(Packet::from_bytes(pool, &frames[next]).unwrap()).unwrap();
            next += 1;
        }
        tx.tx_burst(0, &mut b);
        next -= b.len();
        b.clear();
        let mut r = Batch::new();
        for q in 0..rx.n_rxq() {
            rx.rx_burst(q, &mut r);
            got.extend(r.as_slice().iter().map(|p| p.data().to_vec()));
            r.clear();
        }
        if got.len() >= expect && next == frames.len() {
            // Wait a little longer for anything unexpected.
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(200) {
                break;
            }
        }
    }
    got
}

#[test]
fn pmd_forwards_exactly_n_packets_between_memif_ports() {
    let r = rig("n", 1, 1);
    let set = PmdSet::start(&PmdConfig { cores: any_core(), rebalance_interval: None }, r.fwd.clone(), |_| {
        P2p::new(vec![1, 0], Validation::Ethernet)
    })
    .unwrap();
    let n = 10_000usize;
    let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(64 + i % 64, i as u32)).collect();
    let got = pump(&r.pool, &r.gen_a, &r.gen_b, &frames, n);
    assert_eq!(got.len(), n, "exactly N packets come out");
    assert!(got.iter().zip(&frames).all(|(a, b)| a == b), "in order, byte for byte");
    // And the other direction.
    let back: Vec<Vec<u8>> = (0..500).map(|i| frame(1500, i)).collect();
    let got = pump(&r.pool, &r.gen_b, &r.gen_a, &back, 500);
    assert_eq!(got.len(), 500);
    let st = set.stats();
    assert_eq!(st[0].packets, (n + 500) as u64);
    assert!(st[0].busy_cycles > 0 && st[0].cycles_per_packet > 0.0);
    assert!(st[0].packets_per_batch >= 1.0);
    assert!(st[0].iteration_us[3] > 0.0 || st[0].iterations > 0);
    let fa = r.fwd[0].stats();
    assert_eq!(fa.rx_packets, n as u64);
    assert_eq!(fa.rx_malformed, 0);
    assert_eq!(r.fwd[1].stats().tx_dropped, 0);
    set.stop();
}

#[test]
fn malformed_frames_are_counted_per_port_and_dropped() {
    let r = rig("m", 1, 1);
    let set = PmdSet::start(&PmdConfig { cores: any_core(), rebalance_interval: None }, r.fwd.clone(), |_| {
        P2p::new(vec![1, 0], Validation::Full)
    })
    .unwrap();
    let good = frame(128, 1);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x43; // IHL 3
    let mut bad_csum = good.clone();
    bad_csum[24] ^= 0xff; // IPv4 header checksum
    let mut bad_len = good.clone();
    bad_len[17] = 0xff; // IPv4 total length past the frame
    let runt = vec![0xffu8; 10];
    let mut bad_tcp = frame(80, 2);
    bad_tcp[23] = 6; // protocol TCP, then a data offset below 5
    bad_tcp[24..26].fill(0);
    let c = wire::checksum::checksum(&bad_tcp[14..34]);
    bad_tcp[24..26].copy_from_slice(&c.to_be_bytes());
    bad_tcp[34 + 12] = 0x20;
    let mix = vec![good.clone(), bad_ihl, runt, good.clone(), bad_csum, bad_len, bad_tcp, good.clone()];
    let got = pump(&r.pool, &r.gen_a, &r.gen_b, &mix, 3);
    assert_eq!(got, vec![good.clone(), good.clone(), good.clone()], "only the well-formed frames pass");
    assert_eq!(r.fwd[0].stats().rx_malformed, 5, "each malformed frame counted on its input port");
    assert_eq!(r.fwd[1].stats().rx_malformed, 0);
    // The thread survived and still forwards.
    let got = pump(&r.pool, &r.gen_b, &r.gen_a, std::slice::from_ref(&good), 1);
    assert_eq!(got, vec![good]);
    set.stop();
}

#[test]
fn rx_queues_move_between_threads_without_loss() {
    // Two PMD threads (on whatever cores exist; they may share one), two
    // rx queues per port; move every queue to thread 0, then rebalance.
    let cores = core_affinity_ids();
    let cores = vec![cores[0], *cores.last().unwrap()];
    let r = rig("q", 2, 2);
    let set = PmdSet::start(&PmdConfig { cores, rebalance_interval: None }, r.fwd.clone(), |_| {
        P2p::new(vec![1, 0], Validation::None)
    })
    .unwrap();
    let before: Vec<_> = set.stats().iter().map(|s| s.rxqs.len()).collect();
    assert_eq!(before, vec![2, 2], "round-robin start: two queues each");
    let n = 4000;
    let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(64, i as u32)).collect();
    let mover = std::thread::scope(|s| {
        let h = s.spawn(|| {
            for q in 0..2 {
                assert!(set.assign(0, q, 0));
                assert!(set.assign(1, q, 0));
            }
        });
        let got = pump(&r.pool, &r.gen_a, &r.gen_b, &frames, n);
        h.join().unwrap();
        got
    });
    assert_eq!(mover.len(), n, "no packet lost while queues moved");
    let after: Vec<_> = set.stats().iter().map(|s| s.rxqs.len()).collect();
    assert_eq!(after, vec![4, 0]);
    // Rebalancing by load spreads them again.
    let got = pump(&r.pool, &r.gen_a, &r.gen_b, &frames, n);
    assert_eq!(got.len(), n);
    let moves = set.rebalance();
    assert!(!moves.is_empty());
    let spread: Vec<_> = set.stats().iter().map(|s| s.rxqs.len()).collect();
    assert!(spread.iter().all(|&k| k >= 1), "{spread:?}");
    set.stop();
}

#[test]
fn pmd_refuses_bad_core_and_shared_txq() {
    let r = rig("c", 1, 1);
    let e = PmdSet::start(&PmdConfig { cores: vec![9999], rebalance_interval: None }, r.fwd.clone(), |_| {
        P2p::new(vec![1, 0], Validation::None)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("pmd.cores") && e.contains("9999"), "{e}");
    let e = PmdSet::start(&PmdConfig { cores: vec![0, 0], rebalance_interval: None }, r.fwd.clone(), |_| {
        P2p::new(vec![1, 0], Validation::None)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("n_txq"), "{e}");
}

/// Forwards like P2p, but the first packet makes it wait until released:
/// a PMD thread stuck in its pipeline.
struct Stuck {
    inner: P2p,
    release: Arc<std::sync::atomic::AtomicBool>,
    entered: Arc<std::sync::atomic::AtomicBool>,
}

impl pmd::pmd::Pipeline for Stuck {
    fn process(&mut self, rxq: &pmd::pmd::RxqRef, batch: &mut Batch, tx: &mut pmd::pmd::TxBatches) {
        use std::sync::atomic::Ordering;
        self.entered.store(true, Ordering::SeqCst);
        while !self.release.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        self.inner.process(rxq, batch, tx);
    }
}

#[test]
fn a_queue_is_not_taken_from_a_thread_stuck_in_its_pipeline() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let cores = core_affinity_ids();
    let cores = vec![cores[0], *cores.last().unwrap()];
    let r = rig("s", 2, 2);
    let release = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicBool::new(false));
    let set = PmdSet::start(&PmdConfig { cores, rebalance_interval: None }, r.fwd.clone(), |_| Stuck {
        inner: P2p::new(vec![1, 0], Validation::None),
        release: release.clone(),
        entered: entered.clone(),
    })
    .unwrap();
    // Round robin: thread 0 polls queue 0 of both ports, thread 1 queue 1.
    // The generator sends on ring 0, so thread 0 gets the packet and sticks.
    assert_eq!(set.stats()[0].rxqs, vec![(0, 0), (1, 0)]);
    let mut b = Batch::new();
    b.push(Packet::from_bytes(&r.pool, &frame(64, 1)).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    // Right after link-up the ring may refuse it: send until it is taken.
    while r.gen_a.tx_burst(0, &mut b) == 0 {
        assert!(Instant::now() < deadline, "the generator's ring took the packet");
        std::thread::sleep(Duration::from_millis(5));
    }
    while !entered.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the packet reached the pipeline");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!set.assign(0, 0, 1), "the move is refused: the owner never let go");
    assert_eq!(set.stats()[0].rxqs, vec![(0, 0), (1, 0)], "the queue stays with its owner");
    assert_eq!(set.stats()[1].rxqs, vec![(0, 1), (1, 1)]);
    release.store(true, Ordering::SeqCst);
    let got = pump(&r.pool, &r.gen_a, &r.gen_b, &[], 1);
    assert_eq!(got.len(), 1, "the held packet is forwarded once released");
    assert!(set.assign(0, 0, 1), "a responsive owner lets go");
    assert_eq!(set.stats()[1].rxqs, vec![(0, 0), (0, 1), (1, 1)]);
    set.stop();
}

#[test]
fn ports_are_added_and_removed_under_traffic_without_loss_on_others() {
    let r = rig("ar", 1, 1);
    let eal = r.eal;
    let (sc, sd) = (sock("arc"), sock("ard"));
    let _c = Cleanup(vec![sc.clone(), sd.clone()]);
    let vdev = |i: u32, role: &str, s: &str| {
        PortSource::Vdev(format!("net_memif{i},role={role},id=0,socket={s},socket-abstract=no"))
    };
    let gen_c = Port::open(eal, &PortConfig::new("gen_c", vdev(4, "server", &sc)), r.pool.clone()).unwrap();
    let gen_d = Port::open(eal, &PortConfig::new("gen_d", vdev(5, "server", &sd)), r.pool.clone()).unwrap();
    let fc = Arc::new(Port::open(eal, &PortConfig::new("fwd_c", vdev(6, "client", &sc)), r.pool.clone()).unwrap());
    let fd = Arc::new(Port::open(eal, &PortConfig::new("fwd_d", vdev(7, "client", &sd)), r.pool.clone()).unwrap());
    wait_links(&[&gen_c, &gen_d, &fc, &fd]);
    // Slots 2 and 3 are forwarded to each other once they exist.
    let set = PmdSet::start(&PmdConfig { cores: any_core(), rebalance_interval: None }, r.fwd.clone(), |_| {
        P2p::new(vec![1, 0, 3, 2], Validation::Ethernet)
    })
    .unwrap();
    let set = Arc::new(set);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The control thread adds and removes C and D over and over while A->B
    // traffic flows.
    let control = {
        let (set, done) = (set.clone(), done.clone());
        let (mut c, mut d) = (Some(fc), Some(fd));
        std::thread::spawn(move || {
            let mut cycles = 0u32;
            loop {
                let mut hooks = Vec::new();
                let sc = set.add_port(c.take().unwrap(), |s| hooks.push(s)).unwrap();
                let sd = set.add_port(d.take().unwrap(), |s| hooks.push(s)).unwrap();
                assert_eq!((sc, sd), (2, 3), "empty slots are reused");
                assert_eq!(hooks, vec![2, 3], "the hook sees the slot before the threads do");
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return cycles;
                }
                std::thread::sleep(Duration::from_millis(2));
                d = set.remove_port(3).unwrap();
                c = set.remove_port(2).unwrap();
                assert_eq!(Arc::strong_count(c.as_ref().unwrap()), 1, "no thread holds a removed port");
                assert!(set.ports()[2].is_none() && set.ports()[3].is_none());
                assert!(set.remove_port(2).unwrap().is_none(), "an empty slot has nothing to remove");
                cycles += 1;
            }
        })
    };
    let n = 20_000usize;
    let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(64 + i % 64, i as u32)).collect();
    let got = pump(&r.pool, &r.gen_a, &r.gen_b, &frames, n);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let cycles = control.join().unwrap();
    assert!(cycles >= 1, "ports were added and removed while traffic flowed");
    assert_eq!(got.len(), n, "no loss on the untouched ports ({cycles} add/remove cycles)");
    assert!(got.iter().zip(&frames).all(|(a, b)| a == b), "in order, byte for byte");
    // The ports added last forward too.
    let cd: Vec<Vec<u8>> = (0..1000).map(|i| frame(200, i)).collect();
    let got = pump(&r.pool, &gen_c, &gen_d, &cd, 1000);
    assert_eq!(got.len(), 1000, "an added port forwards");
    let st = set.stats();
    assert!(st[0].rxqs.contains(&(2, 0)) && st[0].rxqs.contains(&(3, 0)), "{:?}", st[0].rxqs);
    let set = Arc::try_unwrap(set).ok().unwrap();
    let ports = set.ports();
    set.stop();
    drop(ports);
    wait_links_down(&[&gen_c, &gen_d]);
}

/// A tap copies exactly the frames a running PMD set receives on one port
/// (rx) and sends on the other (tx), byte for byte and in order, while it
/// is set; a full ring drops copies, counted, never the forwarded frames;
/// with the taps cleared, nothing more is copied.
#[test]
fn capture_taps_copy_while_set_and_never_drop_traffic() {
    let r = rig("cap", 1, 1);
    let set = PmdSet::start(&PmdConfig { cores: any_core(), rebalance_interval: None }, r.fwd.clone(), |_| {
        P2p::new(vec![1, 0], Validation::Ethernet)
    })
    .unwrap();
    let rx_tap = Arc::new(Tap::new(64, 96));
    let tx_tap = Arc::new(Tap::new(64, 2048));
    assert!(set.set_taps(0, PortTaps { rx: Some(rx_tap.clone()), ..PortTaps::default() }));
    assert!(set.set_taps(1, PortTaps { tx: Some(tx_tap.clone()), ..PortTaps::default() }));
    let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(64 + i * 37, i as u32)).collect();
    let got = pump(&r.pool, &r.gen_a, &r.gen_b, &frames, frames.len());
    assert_eq!(got, frames, "forwarded as without a tap");
    let drain = |t: &Tap| {
        let mut v = Vec::new();
        while let Some(rec) = t.take() {
            v.push((rec.dir, rec.orig_len, rec.data[..rec.len as usize].to_vec()));
            t.recycle(rec);
        }
        v
    };
    let rx = drain(&rx_tap);
    assert_eq!(rx.len(), frames.len());
    for ((dir, orig, data), f) in rx.iter().zip(&frames) {
        assert_eq!((*dir, *orig as usize), (Direction::Rx, f.len()));
        // Cut at the snaplen, the whole length recorded.
        assert_eq!(data[..], f[..f.len().min(96)]);
    }
    let tx = drain(&tx_tap);
    assert_eq!(
        tx.iter().map(|(d, _, x)| (*d, x.clone())).collect::<Vec<_>>(),
        frames.iter().map(|f| (Direction::Tx, f.clone())).collect::<Vec<_>>()
    );
    assert_eq!((rx_tap.captured(), rx_tap.dropped(), tx_tap.captured()), (40, 0, 40));

    // Nobody drains: the ring's 64 records fill, the other copies are
    // dropped and counted; every frame is still forwarded.
    let more: Vec<Vec<u8>> = (0..100).map(|i| frame(200, 1000 + i)).collect();
    let got = pump(&r.pool, &r.gen_a, &r.gen_b, &more, more.len());
    assert_eq!(got, more);
    assert_eq!((rx_tap.captured(), rx_tap.dropped()), (40 + 64, 36));
    assert_eq!((tx_tap.captured(), tx_tap.dropped()), (40 + 64, 36));
    assert_eq!(drain(&rx_tap).len(), 64);
    assert_eq!(drain(&tx_tap).len(), 64);

    // Taps cleared: no copy any more.
    assert!(set.set_taps(0, PortTaps::default()));
    assert!(set.set_taps(1, PortTaps::default()));
    let last: Vec<Vec<u8>> = (0..10).map(|i| frame(100, 2000 + i)).collect();
    assert_eq!(pump(&r.pool, &r.gen_a, &r.gen_b, &last, last.len()).len(), 10);
    assert_eq!((rx_tap.captured(), tx_tap.captured()), (104, 104));
    assert!(rx_tap.take().is_none() && tx_tap.take().is_none());
    // An empty slot has no taps to set.
    assert!(!set.set_taps(7, PortTaps::default()));
    set.stop();
}

/// The threads' cores as the kernel has them: (name, allowed cores) of
/// every thread of this process.
fn thread_cores() -> Vec<(String, Vec<usize>)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .map(|t| {
            let dir = t.path();
            let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim();
            let mut cores = Vec::new();
            for part in list.split(',').filter(|p| !p.is_empty()) {
                match part.split_once('-') {
                    Some((a, b)) => cores.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
                    None => cores.push(part.parse().unwrap()),
                }
            }
            (name, cores)
        })
        .collect()
}

/// With a core to spare, every thread but the PMD thread leaves the PMD
/// core, and threads started afterwards inherit that; the PMD thread
/// keeps its core and forwards on.
#[test]
fn other_threads_leave_the_pmd_cores() {
    let r = rig("iso", 1, 1);
    let pmd_core = any_core();
    let set = PmdSet::start(&PmdConfig { cores: pmd_core.clone(), rebalance_interval: None }, r.fwd.clone(), |_| {
        P2p::new(vec![1, 0], Validation::Ethernet)
    })
    .unwrap();
    let all = core_affinity_ids();
    match set.keep_others_off_pmd_cores() {
        None => assert_eq!(all.len(), 1, "only a one-core machine leaves no core to the others"),
        Some(others) => {
            assert_eq!(others, all.iter().copied().filter(|c| !pmd_core.contains(c)).collect::<Vec<_>>());
            let later = std::thread::spawn(thread_cores).join().unwrap();
            for (name, cores) in later {
                if name == format!("pmd0-c{}", pmd_core[0]) {
                    assert_eq!(cores, pmd_core, "{name}");
                } else {
                    assert!(cores.iter().all(|c| !pmd_core.contains(c)), "{name} may run on {cores:?}");
                }
            }
        }
    }
    let frames: Vec<Vec<u8>> = (0..100).map(|i| frame(100, i)).collect();
    assert_eq!(pump(&r.pool, &r.gen_a, &r.gen_b, &frames, 100).len(), 100);
    set.stop();
}
