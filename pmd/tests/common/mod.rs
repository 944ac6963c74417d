//! Shared set-up for the DPDK tests: one EAL per test process (run them
//! under cargo-nextest, which gives each test its own process).
//!
//! `VSWITCH_TEST_MEMORY=hugepages` runs them on hugepages (in-memory mode,
//! so a crashed test leaves no files behind); the default is no-huge, which
//! needs nothing from the machine.
#![allow(dead_code)]

use pmd::{Eal, EalConfig, Memory, Mempool};
use std::sync::Arc;

pub fn memory() -> Memory {
    match std::env::var("VSWITCH_TEST_MEMORY").as_deref() {
        Ok("hugepages") => Memory::InMemory { socket_mem_mb: Some(256) },
        _ => Memory::NoHuge { mb: 256 },
    }
}

pub fn eal(vdevs: &[String]) -> &'static Eal {
    let cfg = EalConfig {
        cores: (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect(),
        memory: memory(),
        file_prefix: format!("pmdtest{}", std::process::id()),
        vdevs: vdevs.to_vec(),
        log_level: 4,
        ..EalConfig::default()
    };
    Eal::init(&cfg).expect("EAL init for tests")
}

pub fn pool(eal: &Eal, name: &str) -> Arc<Mempool> {
    Arc::new(Mempool::new(eal, name, 8191, 256, pmd::mempool::DEFAULT_DATA_ROOM, None).expect("mempool"))
}

/// A unique path for a memif socket of this test process.
pub fn sock(tag: &str) -> String {
    format!("/tmp/pmdtest-{}-{tag}.sock", std::process::id())
}

/// Removes the test's socket files, also when the test panics.
pub struct Cleanup(pub Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A UDP frame of `len` bytes carrying `seq` in its payload.
pub fn frame(len: usize, seq: u32) -> Vec<u8> {
    let f = wire::build::Udp4Frame {
        src_mac: wire::EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_mac: wire::EthernetAddress([2, 0, 0, 0, 0, 2]),
        vlan: None,
        src_ip: wire::Ipv4Address([10, 0, 0, 1]),
        dst_ip: wire::Ipv4Address([10, 0, 0, 2]),
        src_port: 1000,
        dst_port: 2000,
        ttl: 64,
    };
    let mut buf = vec![0u8; len];
    let at = f.header_len();
    buf[at..at + 4].copy_from_slice(&seq.to_be_bytes());
    f.emit(&mut buf, true);
    buf
}

/// Waits until every port's link is up (memif connects asynchronously).
pub fn wait_links(ports: &[&pmd::Port]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ports.iter().all(|p| p.link().up) {
        assert!(
            std::time::Instant::now() < deadline,
            "links did not come up: {:?}",
            ports.iter().map(|p| (p.name().to_string(), p.link().up)).collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits (up to 2 s) until every port's link is down: the peer's
/// disconnect has been handled by DPDK's interrupt thread. Closing a memif
/// port while that thread still handles its peer's disconnect can crash
/// DPDK 22.11's memif driver when both ends live in one process.
pub fn wait_links_down(ports: &[&pmd::Port]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while ports.iter().any(|p| p.link().up) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
