//! A virtio guest's large TCP segments over a VXLAN tunnel: dpdk-testpmd
//! as the guest (a virtio-user port to vswitchd's vhost-user port with
//! `tso=1`, replaying a 9,000-byte TCP frame from a pcap file with TSO
//! asked on its virtio port), vswitchd cutting it to fit the tunnel, and
//! the kernel's VXLAN device on host B receiving the segments, captured
//! and checked on its underlay. Needs root, hugepages and dpdk-testpmd.

mod common;

use common::overlay::{capture, tunnel, HostB};
use common::Lab;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wire::checksum::{fold, pseudo_v4, sum};

const PAYLOAD: usize = 9000;
const MSS: usize = 1400;

/// A TCP frame of [`PAYLOAD`] bytes to host B's container (byte i of the
/// payload i % 251), its checksums complete.
fn big_frame(dst_mac: [u8; 6]) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend([2, 0, 0, 0, 0, 0x51, 0x08, 0x00, 0x45, 0]);
    f.extend(u16::try_from(40 + PAYLOAD).unwrap().to_be_bytes());
    f.extend([0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 99, 0, 9, 10, 99, 0, 2]);
    let c = !fold(sum(0, &f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend([0x30, 0x39, 0x13, 0x89]);
    f.extend(7000u32.to_be_bytes());
    f.extend([0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..PAYLOAD).map(|i| u8::try_from(i % 251).unwrap()));
    let c = !fold(sum(tcp_pseudo(&f, 20 + PAYLOAD), &f[34..]));
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

fn tcp_pseudo(f: &[u8], len: usize) -> u32 {
    pseudo_v4(
        wire::Ipv4Address([f[26], f[27], f[28], f[29]]),
        wire::Ipv4Address([f[30], f[31], f[32], f[33]]),
        6,
        u16::try_from(len).unwrap(),
    )
}

struct Guest(std::process::Child);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_guests_large_tcp_segments_are_cut_to_fit_the_tunnel() {
    let mut lab = Lab::new("vt", 0, None);
    let b = HostB::new(&lab);
    let vsock = lab.dir.join("vhu.sock").display().to_string();
    let _ = std::fs::remove_file(&vsock);
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br-int\"\n\n[[bridge.port]]\nname = \"vm\"\ntype = \"dpdk\"\n\
         devargs = \"net_vhost0,iface={vsock},client=1,queues=1,tso=1\"\n\n\
         [[bridge.port]]\nname = \"vx1\"\ntype = \"vxlan\"\nremote_ip = \"172.31.9.2\"\nkey = 42\n\n\
         [[bridge]]\nname = \"br-phy\"\n\n[[bridge.port]]\nname = \"up\"\ntype = \"afpacket\"\niface = \"{}\"\naddresses = [\"172.31.9.1/24\"]\n",
        b.uplink
    ));
    // The guest's frame, in a pcap file testpmd replays.
    let pcap = lab.dir.join("big.pcap");
    {
        let f = std::fs::File::create(&pcap).unwrap();
        let header = pcap_file::pcap::PcapHeader { snaplen: 65535, ..Default::default() };
        let mut w = pcap_file::pcap::PcapWriter::with_header(f, header).unwrap();
        let frame = big_frame(HostB::mac(Some(&b.container), "eth0"));
        let p = pcap_file::pcap::PcapPacket::new(Duration::ZERO, u32::try_from(frame.len()).unwrap(), &frame);
        w.write_packet(&p).unwrap();
    }
    let cmds = lab.dir.join("testpmd.cmds");
    std::fs::write(
        &cmds,
        format!(
            "port stop 1\ncsum set ip hw 1\ncsum set tcp hw 1\ntso set {MSS} 1\nport start 1\nset fwd csum\nstart\n"
        ),
    )
    .unwrap();
    let log = lab.dir.join("testpmd.log");
    let guest = Guest(
        Command::new("dpdk-testpmd")
            .args(["-l", "0,1", "--main-lcore", "1", "--no-pci", "--in-memory", "--single-file-segments"])
            .args(["-m", "512", "--file-prefix", &format!("vhgso{}", std::process::id()), "--log-level=4"])
            .arg("--vdev")
            .arg(format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()))
            .arg("--vdev")
            .arg(format!("net_virtio_user1,path={vsock},server=1,queues=1"))
            .args(["--", "--mbuf-size=16384", "--total-num-mbufs=4096", "--nb-cores=1", "--stats-period=1"])
            .arg(format!("--cmdline-file={}", cmds.display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("dpdk-testpmd (Debian's dpdk package; ci/setup installs it)"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let file = lab.dir.join("underlay.pcap");
    let mut dump = capture(&b, &file);
    lab.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tunnel(&lab, "vx1")["gso_segments"].as_u64() < Some(60) {
        assert!(
            Instant::now() < deadline,
            "no segments: {} {}\ntestpmd: {}\nvswitchd: {}",
            lab.ctl(&["tunnel-show"]),
            lab.ctl(&["port-stats", "vm"]),
            std::fs::read_to_string(&log).unwrap_or_default(),
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(guest);
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").arg(dump.id().to_string()).status();
    let _ = dump.wait();
    let t = tunnel(&lab, "vx1");
    assert_eq!(t["drop_too_big"], 0, "{t}");
    // On host B's underlay: VXLAN frames whose inner TCP segments carry
    // the 9,000 bytes in 1,400-byte pieces, every checksum valid.
    let data = std::fs::read(&file).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
    let (mut segments, mut whole) = (0, 0);
    let mut next = 0usize;
    while let Some(pkt) = reader.next_packet() {
        let Ok(pkt) = pkt else { break };
        let f = &pkt.data[..];
        if f.len() < 50 + 54 || f[12..14] != [0x08, 0x00] {
            continue;
        }
        assert!(f.len() - 14 <= 1500, "an outer packet of {} bytes on an MTU of 1500", f.len() - 14);
        let inner = &f[50..];
        assert!(wire::Ipv4Packet::new_checked(&inner[14..]).unwrap().verify_checksum(), "inner IPv4 checksum");
        let tcp_len = usize::from(u16::from_be_bytes([inner[16], inner[17]])) - 20;
        assert_eq!(fold(sum(tcp_pseudo(inner, tcp_len), &inner[34..34 + tcp_len])), 0xffff, "inner TCP checksum");
        let seq = u32::from_be_bytes([inner[38], inner[39], inner[40], inner[41]]);
        let off = usize::try_from(seq - 7000).unwrap();
        let payload = &inner[54..34 + tcp_len];
        assert_eq!(payload.len(), MSS.min(PAYLOAD - off), "segment at {off}");
        assert!(payload.iter().enumerate().all(|(i, b)| usize::from(*b) == (off + i) % 251), "payload at {off}");
        segments += 1;
        if off == next {
            next += payload.len();
            if next == PAYLOAD {
                whole += 1;
                next = 0;
            }
        }
    }
    assert!(segments >= 20 && whole >= 2, "{segments} segments, {whole} frames whole in order");
}
