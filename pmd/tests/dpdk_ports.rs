//! DPDK tests over ring, null and memif vdevs: real EAL, real mbufs.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // test data is small and known

mod common;

use common::*;
use pmd::{Batch, Packet, Port, PortConfig, PortSource};
use std::time::{Duration, Instant};

#[test]
fn mbuf_layout_matches_c() {
    use std::mem::offset_of;
    type M = dpdk_sys::rte_mbuf;
    // SAFETY: vs_mbuf_offset is a pure function.
    let c = |i| unsafe { dpdk_sys::vs_mbuf_offset(i) };
    assert_eq!(c(0), offset_of!(M, buf_addr));
    assert_eq!(c(1), offset_of!(M, data_off));
    assert_eq!(c(2), offset_of!(M, nb_segs));
    assert_eq!(c(3), offset_of!(M, port));
    assert_eq!(c(4), offset_of!(M, ol_flags));
    assert_eq!(c(6), offset_of!(M, pkt_len));
    assert_eq!(c(7), offset_of!(M, data_len));
    assert_eq!(c(8), offset_of!(M, vlan_tci));
    assert_eq!(c(10), offset_of!(M, buf_len));
    assert_eq!(c(11), offset_of!(M, next));
    assert_eq!(c(13), std::mem::size_of::<M>());
    assert_eq!(c(14), offset_of!(M, priv_size));
}

#[test]
fn packet_alloc_edit_and_free() {
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let before = pool.in_use();
    {
        let mut p = Packet::from_bytes(&pool, &frame(64, 7)).unwrap();
        assert_eq!(p.len(), 64);
        assert_eq!(&p.data()[42..46], &7u32.to_be_bytes());
        assert_eq!(p.headroom(), pmd::mempool::HEADROOM);
        // Push a 50-byte outer header into the headroom and pop it again.
        p.prepend(50).unwrap().fill(0xee);
        assert_eq!(p.len(), 114);
        assert_eq!(p.data()[0], 0xee);
        assert!(p.adj(50));
        assert_eq!(p.data(), &frame(64, 7)[..]);
        assert!(p.prepend(p.headroom() + 1).is_none());
        assert!(p.trim(4));
        assert_eq!(p.len(), 60);
        assert!(p.append(p.tailroom() + 1).is_none());
        p.meta_mut().in_port = 9;
        assert_eq!(p.meta().in_port, 9);
        assert_eq!(pool.in_use(), before + 1);
    }
    assert_eq!(pool.in_use(), before, "dropping a Packet returns its mbuf");
    let mut b = Batch::new();
    for i in 0..pmd::BATCH_SIZE {
        b.push(Packet::from_bytes(&pool, &frame(64, i as u32)).unwrap()).unwrap();
    }
    assert!(b.is_full());
    let extra = Packet::alloc(&pool).unwrap();
    assert!(b.push(extra).is_err(), "a full batch refuses a packet and gives it back");
    let dropped = b.retain(|p| u32::from_be_bytes(p.data()[42..46].try_into().unwrap()) % 2 == 0);
    assert_eq!(dropped, 16);
    let seqs: Vec<u32> =
        b.as_slice().iter().map(|p| u32::from_be_bytes(p.data()[42..46].try_into().unwrap())).collect();
    assert_eq!(seqs, (0..32).step_by(2).collect::<Vec<u32>>());
    drop(b);
    assert_eq!(pool.in_use(), before, "dropping a Batch bulk-frees what it holds");
}

#[test]
fn ring_port_sends_and_receives_real_mbufs() {
    let eal = eal(&["net_ring0".to_string()]);
    let pool = pool(eal, "p");
    let port = Port::open(eal, &PortConfig::new("ring", PortSource::Vdev("net_ring0".into())), pool.clone()).unwrap();
    assert!(port.link().up);
    let mut tx = Batch::new();
    for i in 0..20u32 {
        tx.push(Packet::from_bytes(&pool, &frame(128, i)).unwrap()).unwrap();
    }
    assert_eq!(port.tx_burst(0, &mut tx), 20);
    assert!(tx.is_empty());
    let mut rx = Batch::new();
    assert_eq!(port.rx_burst(0, &mut rx), 20);
    for (i, p) in rx.as_slice().iter().enumerate() {
        assert_eq!(p.data(), &frame(128, i as u32)[..], "packet {i} came back byte for byte, in order");
    }
    let s = port.stats();
    assert_eq!((s.tx_packets, s.rx_packets), (20, 20));
}

#[test]
fn null_port_generates_and_sinks() {
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let port =
        Port::open(eal, &PortConfig::new("null", PortSource::Vdev("net_null0,size=64".into())), pool.clone()).unwrap();
    let mut rx = Batch::new();
    assert_eq!(port.rx_burst(0, &mut rx), pmd::BATCH_SIZE);
    assert!(rx.as_slice().iter().all(|p| p.len() == 64));
    assert_eq!(port.tx_burst(0, &mut rx), pmd::BATCH_SIZE);
    assert!(!port.caps().rx_ipv4_cksum, "net_null has no checksum offload and says so");
    assert_eq!(port.driver(), "net_null");
}

#[test]
fn memif_pair_carries_frames_between_ports() {
    let s = sock("pair");
    let _c = Cleanup(vec![s.clone()]);
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let server = Port::open(
        eal,
        &PortConfig::new("srv", PortSource::Vdev(format!("net_memif0,role=server,id=0,socket={s},socket-abstract=no"))),
        pool.clone(),
    )
    .unwrap();
    let client = Port::open(
        eal,
        &PortConfig::new("cli", PortSource::Vdev(format!("net_memif1,role=client,id=0,socket={s},socket-abstract=no"))),
        pool.clone(),
    )
    .unwrap();
    wait_links(&[&server, &client]);
    let n = 1000u32;
    let mut sent = 0u32;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n as usize && Instant::now() < deadline {
        let mut tx = Batch::new();
        while sent < n && !tx.is_full() {
            tx.push(Packet::from_bytes(&pool, &frame(60 + (sent as usize % 1400), sent)).unwrap()).unwrap();
            sent += 1;
        }
        let k = server.tx_burst(0, &mut tx);
        sent -= tx.len() as u32; // refused ones are sent again
        let _ = k;
        let mut rx = Batch::new();
        client.rx_burst(0, &mut rx);
        for p in rx.as_slice() {
            got.push(p.data().to_vec());
        }
    }
    assert_eq!(got.len(), n as usize);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d, &frame(60 + (i % 1400), i as u32), "frame {i}");
    }
    drop(client);
    wait_links_down(&[&server]);
}

#[test]
fn bad_port_options_are_refused_by_name() {
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let open = |cfg: PortConfig| Port::open(eal, &cfg, pool.clone()).unwrap_err().to_string();
    let mut cfg = PortConfig::new("n0", PortSource::Vdev("net_null0".into()));
    cfg.n_rxq = 0;
    let e = open(cfg);
    assert!(e.contains("port n0: n_rxq"), "{e}");
    let mut cfg = PortConfig::new("n1", PortSource::Vdev("net_null1".into()));
    cfg.rxd = 100;
    let e = open(cfg);
    assert!(e.contains("port n1: rxd"), "{e}");
    let mut cfg = PortConfig::new("n2", PortSource::Vdev("net_null2".into()));
    cfg.mtu = Some(9000);
    let e = open(cfg);
    assert!(e.contains("port n2: mtu") && e.contains("mbufs"), "{e}");
    let e = open(PortConfig::new("m", PortSource::Vdev("net_memif9,role=bogus".into())));
    assert!(e.contains("port m: device") && e.contains("role=bogus"), "{e}");
    let e = open(PortConfig::new("x", PortSource::Vdev("memif9".into())));
    assert!(e.contains("vdev `memif9`"), "{e}");
    // The failures left nothing half-open: a good port still opens.
    Port::open(eal, &PortConfig::new("ok", PortSource::Vdev("net_null3".into())), pool.clone()).unwrap();
}

#[test]
fn eal_refuses_a_second_init() {
    let _ = eal(&[]);
    let e = pmd::Eal::init(&pmd::EalConfig { cores: vec![0], file_prefix: "again".into(), ..Default::default() })
        .unwrap_err();
    assert!(matches!(e, pmd::Error::EalAlreadyInitialised), "{e}");
}

#[test]
fn eal_reports_bad_arguments() {
    let cfg = pmd::EalConfig {
        cores: vec![0],
        file_prefix: format!("bad{}", std::process::id()),
        extra_args: vec!["--no-such-eal-flag".into()],
        ..Default::default()
    };
    let e = pmd::Eal::init(&cfg).unwrap_err().to_string();
    assert!(e.contains("EAL initialisation failed") && e.contains("--no-such-eal-flag"), "{e}");
}

#[test]
fn batch_append_moves_only_what_fits() {
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let before = pool.in_use();
    let mut a = Batch::new();
    let mut b = Batch::new();
    for i in 0..20u32 {
        a.push(Packet::from_bytes(&pool, &frame(64, i)).unwrap()).unwrap();
        b.push(Packet::from_bytes(&pool, &frame(64, 100 + i)).unwrap()).unwrap();
    }
    assert_eq!(a.append(&mut b), 12, "only the free room is filled");
    assert_eq!((a.len(), b.len()), (32, 8));
    let seq = |p: &Packet| u32::from_be_bytes(p.data()[42..46].try_into().unwrap());
    assert_eq!(seq(&a.as_slice()[20]), 108, "the moved packets are b's last ones, in order");
    assert_eq!(seq(&b.as_slice()[7]), 107);
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), before, "no mbuf leaked or freed twice");
}

#[test]
fn missing_hugepages_say_how_to_reserve_them() {
    // Ask for more hugepage memory than any test machine has free.
    let cfg = pmd::EalConfig {
        cores: vec![0],
        memory: pmd::Memory::Hugepages { socket_mem_mb: Some(1 << 24) },
        file_prefix: format!("huge{}", std::process::id()),
        ..Default::default()
    };
    let e = pmd::Eal::init(&cfg).unwrap_err().to_string();
    assert!(e.starts_with("hugepages:"), "{e}");
    assert!(e.contains("/proc/sys/vm/nr_hugepages") && e.contains("mount -t hugetlbfs"), "{e}");
}

#[test]
fn drain_takes_packets_in_order_and_frees_the_rest() {
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let before = pool.in_use();
    let mut b = Batch::new();
    for i in 0..10u32 {
        b.push(Packet::from_bytes(&pool, &frame(64, i)).unwrap()).unwrap();
    }
    let seq = |p: &Packet| u32::from_be_bytes(p.data()[42..46].try_into().unwrap());
    let taken: Vec<u32> = b.drain().take(4).map(|p| seq(&p)).collect();
    assert_eq!(taken, vec![0, 1, 2, 3]);
    assert!(b.is_empty());
    assert_eq!(pool.in_use(), before, "the six not taken were freed with the drain");
}

#[test]
fn a_port_beyond_dpdks_port_table_is_refused_saying_so() {
    let eal = eal(&[]);
    let pool = pool(eal, "lim");
    let max = usize::try_from(dpdk_sys::RTE_MAX_ETHPORTS).unwrap();
    let mut ports = Vec::new();
    for i in 0..max {
        let cfg = PortConfig::new(&format!("n{i}"), PortSource::Vdev(format!("net_null{i}")));
        ports.push(Port::open(eal, &cfg, pool.clone()).unwrap());
    }
    let cfg = PortConfig::new("one-more", PortSource::Vdev(format!("net_null{max}")));
    let e = Port::open(eal, &cfg, pool.clone()).unwrap_err().to_string();
    assert!(e.contains("DPDK holds 32 ports at most (RTE_MAX_ETHPORTS"), "{e}");
}
