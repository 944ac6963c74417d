//! Ports on kernel interfaces, as containers attach: AF_PACKET and AF_XDP
//! on a real veth pair, and a TAP device read and written from the kernel
//! side through a raw socket. Needs root; every interface is removed again,
//! also when a test fails.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // test data is small and known

mod common;

use common::*;
use pmd::{Batch, Packet, Port, PortConfig, PortSource};
use std::process::Command;
use std::time::{Duration, Instant};

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip(8) runs");
    assert!(st.success(), "ip {args:?} failed");
}

/// A veth pair, deleted on drop; IPv6 off so the kernel sends nothing of
/// its own on it.
struct Veth(String, String);

impl Veth {
    fn new(tag: &str) -> Veth {
        let pid = std::process::id() % 100_000;
        let (a, b) = (format!("vt{tag}{pid}a"), format!("vt{tag}{pid}b"));
        let _ = Command::new("ip").args(["link", "del", &a]).status();
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        for n in [&a, &b] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{n}/disable_ipv6"), "1");
            ip(&["link", "set", n, "up"]);
        }
        Veth(a, b)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// Sends `n` distinct frames on `tx` and returns those of them that arrive
/// on `rx` (other frames, if any, are ignored).
fn exchange(pool: &pmd::Mempool, tx: &Port, rx: &Port, n: u32) -> Vec<u32> {
    let mut got = Vec::new();
    let mut next = 0u32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (got.len() as u32) < n && Instant::now() < deadline {
        let mut b = Batch::new();
        while next < n && !b.is_full() && next < got.len() as u32 + 64 {
            b.push(Packet::from_bytes(pool, &frame(100, 0xab00_0000 + next)).unwrap()).unwrap();
            next += 1;
        }
        tx.tx_burst(0, &mut b);
        next -= b.len() as u32;
        b.clear();
        rx.rx_burst(0, &mut b);
        for p in b.as_slice() {
            let d = p.data();
            if d.len() == 100 && d[..40] == frame(100, 0)[..40] {
                got.push(u32::from_be_bytes(d[42..46].try_into().unwrap()) - 0xab00_0000);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    got
}

#[test]
fn af_packet_on_a_veth_pair() {
    let v = Veth::new("p");
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let a =
        Port::open(eal, &PortConfig::new("a", PortSource::Vdev(format!("net_af_packet0,iface={}", v.0))), pool.clone())
            .unwrap();
    let b =
        Port::open(eal, &PortConfig::new("b", PortSource::Vdev(format!("net_af_packet1,iface={}", v.1))), pool.clone())
            .unwrap();
    wait_links(&[&a, &b]);
    let got = exchange(&pool, &a, &b, 500);
    assert_eq!(got, (0..500).collect::<Vec<u32>>(), "every frame crossed the veth once, in order");
}

/// An AF_PACKET port takes in only its own interface's frames, also while
/// another interface is busy as it opens: DPDK 22.11 sets up the ring of
/// an unbound socket that sees every interface, and the port drops what
/// that caught before it is used (else a switch learns other ports' MACs
/// on the new one and replays their old frames).
#[test]
fn af_packet_port_opened_beside_busy_interface_gets_no_foreign_frames() {
    let (own, busy) = (Veth::new("o"), Veth::new("f"));
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (ifname, stop) = (busy.0.clone(), stop.clone());
        std::thread::spawn(move || {
            let s = RawSock::bind(&ifname);
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.send(&frame(100, 0xfeed_0000));
                sent += 1;
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let mut foreign = 0;
    for i in 0..5 {
        let cfg = PortConfig::new("a", PortSource::Vdev(format!("net_af_packet{i},iface={}", own.0)));
        let a = Port::open(eal, &cfg, pool.clone()).unwrap();
        let until = Instant::now() + Duration::from_millis(50);
        let mut b = Batch::new();
        while Instant::now() < until {
            a.rx_burst(0, &mut b);
            foreign += b.as_slice().iter().filter(|p| p.data().len() == 100).count();
            b.clear();
        }
        assert_eq!(a.stats().rx_packets, 0, "counters restart after the foreign frames are dropped");
        drop(a);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert!(sent > 1000, "the busy interface was busy ({sent} frames)");
    assert_eq!(foreign, 0, "frames sent on {} came in on the port on {}", busy.0, own.0);
}

#[test]
fn af_xdp_on_a_veth_pair() {
    let v = Veth::new("x");
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let a =
        Port::open(eal, &PortConfig::new("a", PortSource::Vdev(format!("net_af_xdp0,iface={}", v.0))), pool.clone())
            .unwrap();
    let b =
        Port::open(eal, &PortConfig::new("b", PortSource::Vdev(format!("net_af_xdp1,iface={}", v.1))), pool.clone())
            .unwrap();
    wait_links(&[&a, &b]);
    let got = exchange(&pool, &a, &b, 500);
    assert_eq!(got, (0..500).collect::<Vec<u32>>());
}

/// A raw AF_PACKET socket on one interface, from the kernel side.
struct RawSock(i32);

impl RawSock {
    fn bind(ifname: &str) -> RawSock {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: plain socket calls with valid arguments.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, proto);
            assert!(fd >= 0, "raw socket (needs root)");
            let name = std::ffi::CString::new(ifname).unwrap();
            let idx = libc::if_nametoindex(name.as_ptr());
            assert!(idx > 0, "{ifname} exists");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto as u16;
            sll.sll_ifindex = idx as i32;
            let r = libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind to {ifname}");
            RawSock(fd)
        }
    }
    fn send(&self, f: &[u8]) {
        // SAFETY: f is a valid buffer for the call.
        let r = unsafe { libc::send(self.0, f.as_ptr().cast(), f.len(), 0) };
        assert_eq!(r, f.len() as isize);
    }
    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        // SAFETY: buf is valid for its length.
        let r = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        (r > 0).then(|| {
            buf.truncate(r as usize);
            buf
        })
    }
}

impl Drop for RawSock {
    fn drop(&mut self) {
        // SAFETY: closes our own descriptor once.
        unsafe { libc::close(self.0) };
    }
}

#[test]
fn tap_port_talks_to_the_kernel() {
    let name = format!("vtt{}", std::process::id() % 100_000);
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _g = Gone(name.clone());
    let eal = eal(&[]);
    let pool = pool(eal, "p");
    let tap =
        Port::open(eal, &PortConfig::new("tap", PortSource::Vdev(format!("net_tap0,iface={name}"))), pool.clone())
            .unwrap();
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    ip(&["link", "set", &name, "up"]);
    let sock = RawSock::bind(&name);
    // DPDK -> kernel.
    let mut b = Batch::new();
    b.push(Packet::from_bytes(&pool, &frame(120, 42)).unwrap()).unwrap();
    assert_eq!(tap.tx_burst(0, &mut b), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        seen = std::iter::from_fn(|| sock.recv()).find(|f| f == &frame(120, 42));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen.is_some(), "the kernel saw the frame DPDK sent on the tap");
    // Kernel -> DPDK.
    sock.send(&frame(90, 7));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = false;
    while !got && Instant::now() < deadline {
        let mut r = Batch::new();
        tap.rx_burst(0, &mut r);
        got = r.as_slice().iter().any(|p| p.data() == &frame(90, 7)[..]);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(got, "DPDK received the frame the kernel sent into the tap");
    assert!(tap.xstats().iter().any(|(n, _)| n.contains("rx")), "tap reports xstats");
}
