//! Overlay tunnels against the Linux kernel: "host B" is a network
//! namespace with the kernel's VXLAN device and a Linux bridge, its
//! container another namespace behind that bridge; vswitchd holds the
//! underlay address on an uplink (a veth into host B) and container 1 on
//! br-int. Needs root.

mod common;

use common::overlay::{
    capture, config, config_at, hits, ofctl, tcp_transfer, tunnel, vxlan_lab, wait_for, HostB, B_IP, OUR_IP, VNI,
};
use common::{sh, Lab};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn vxlan_interoperates_with_the_kernels_vxlan_device() {
    let mut lab = Lab::new("vx", 1, None);
    let b = HostB::new(&lab);
    let metrics = config(&lab, &b, true);
    let pcap = lab.dir.join("underlay.pcap");
    let mut dump = capture(&b, &pcap);
    lab.start();
    let our_mac = HostB::mac(None, &b.uplink);
    let b_mac = HostB::mac(Some(&b.ns), "ul");

    // The switch resolves host B by ARP itself; the tunnel comes up.
    wait_for("the tunnel to come up", || tunnel(&lab, "vx1")["state"] == "up");
    let n = lab.ctl(&["neigh-show"]);
    let nb = &n["neighbours"].as_array().unwrap().iter().find(|x| x["ip"] == "172.31.9.2").cloned().unwrap();
    assert_eq!(nb["mac"].as_str().unwrap(), wire::EthernetAddress(b_mac).to_string());
    assert_eq!(nb["state"], "reachable");

    // Both ways: pings and 1 MB of TCP.
    assert_eq!(lab.ping(1, 2, 5, "0.2", None), 5, "container 1 -> host B's container: {}", lab.log());
    assert_eq!(b.ping(&b.container, "10.99.0.1", 5, 1), 5, "host B's container -> container 1");
    tcp_transfer(&lab, &lab.ns(1), &b.container, "10.99.0.2");
    tcp_transfer(&lab, &b.container, &lab.ns(1), "10.99.0.1");

    // The underlay address answers ARP and ping itself.
    sh(&["ip", "-n", &b.ns, "neigh", "flush", "dev", "ul"]);
    assert_eq!(b.ping(&b.ns, "172.31.9.1", 3, 1), 3, "host B pings the switch's underlay address");
    let show = lab.ctl(&["show"]);
    let up = &show["bridges"][1]["ports"][0]["underlay"];
    assert!(up["arp_replied"].as_u64().unwrap() >= 1, "{up}");
    assert!(up["echo_replied"].as_u64().unwrap() >= 3, "{up}");
    assert!(up["decapsulated"].as_u64().unwrap() >= 10, "{up}");
    for (reason, n) in up["drops"].as_object().unwrap() {
        assert_eq!(n, 0, "drops: {reason}");
    }
    let t = tunnel(&lab, "vx1");
    assert_eq!((t["drop_no_path"].as_u64(), t["drop_too_big"].as_u64()), (Some(0), Some(0)), "{t}");
    // The same counters in the metrics.
    let (_, _, body) = common::http_get(&metrics, "/metrics").unwrap();
    let value = |series: &str| -> f64 {
        let line = body.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in:\n{body}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("vswitch_underlay_packets_total{port=\"up\",kind=\"decapsulated\"}") >= 10.0);
    assert_eq!(value("vswitch_underlay_dropped_total{port=\"up\",reason=\"unknown_tunnel\"}"), 0.0);
    assert_eq!(value("vswitch_tunnel_dropped_total{bridge=\"br-int\",port=\"vx1\",reason=\"no_path\"}"), 0.0);
    assert_eq!(value("vswitch_port_link_up{bridge=\"br-int\",port=\"vx1\"}"), 1.0);
    assert_eq!(value("vswitch_underlay_neighbours{state=\"reachable\"}"), 1.0);

    // The underlay, byte by byte.
    let _ = Command::new("kill").arg(dump.id().to_string()).status();
    let _ = dump.wait();
    let data = std::fs::read(&pcap).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
    let (mut ours, mut theirs) = (0, 0);
    let mut ids = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let Ok(pkt) = pkt else { break }; // the last record may be cut by the kill
        let f = &pkt.data[..];
        let eth = wire::EthernetFrame::new_checked(f).unwrap();
        let ip = wire::Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum(), "outer IPv4 checksum");
        let udp = wire::UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.dst_port(), 4789);
        let vx = wire::vxlan::VxlanPacket::new_checked(udp.payload()).unwrap();
        assert_eq!((vx.flags(), vx.vni()), (0x08, VNI));
        let inner = wire::EthernetFrame::new_checked(vx.payload()).unwrap();
        if eth.src_addr().0 == our_mac {
            ours += 1;
            assert_eq!(eth.dst_addr().0, b_mac, "to host B's MAC");
            assert_eq!((ip.src_addr().0, ip.dst_addr().0), (OUR_IP, B_IP));
            assert_eq!(ip.ttl(), 64);
            assert!(ip.dont_frag() && !ip.more_frags() && ip.frag_offset() == 0, "DF, never fragmented");
            assert_eq!((ip.dscp(), ip.ecn()), (0, 0));
            assert_eq!(usize::from(ip.total_len()), ip.payload().len() + 20);
            assert!((32768..=61000).contains(&udp.src_port()), "source port {}", udp.src_port());
            assert_eq!(usize::from(udp.len()), udp.payload().len() + 8);
            assert_eq!(udp.checksum(), 0, "no outer UDP checksum over IPv4 unless csum");
            assert_eq!(usize::from(udp.len()), 16 + vx.payload().len());
            ids.push(ip.ident());
            // The inner frame is container 1's, untouched.
            assert_eq!(inner.src_addr().0, HostB::mac(Some(&lab.ns(1)), "eth0"));
        } else {
            theirs += 1;
            assert_eq!((ip.src_addr().0, ip.dst_addr().0), (B_IP, OUR_IP));
        }
    }
    assert!(ours >= 10 && theirs >= 10, "frames captured: ours {ours}, host B's {theirs}");
    ids.dedup();
    assert!(ids.len() >= ours * 9 / 10, "outer IPv4 IDs change from frame to frame");
}

#[test]
fn the_first_frame_to_an_unresolved_next_hop_waits_and_is_sent() {
    let (lab, b, _) = vxlan_lab("vw");
    // Both containers know each other's MAC: the first frame is the ping.
    let hc_mac = wire::EthernetAddress(HostB::mac(Some(&b.container), "eth0")).to_string();
    let c1_mac = wire::EthernetAddress(HostB::mac(Some(&lab.ns(1)), "eth0")).to_string();
    sh(&[
        "ip",
        "-n",
        &lab.ns(1),
        "neigh",
        "replace",
        "10.99.0.2",
        "lladdr",
        &hc_mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    sh(&[
        "ip",
        "-n",
        &b.container,
        "neigh",
        "replace",
        "10.99.0.1",
        "lladdr",
        &c1_mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    // Host B answers no ARP for a moment; the switch forgets it.
    let arp_ignore = "net.ipv4.conf.ul.arp_ignore";
    sh(&["ip", "netns", "exec", &b.ns, "sysctl", "-qw", &format!("{arp_ignore}=8")]);
    let held_before = tunnel(&lab, "vx1")["held"].as_u64().unwrap();
    lab.ctl(&["neigh-flush"]);
    assert_ne!(tunnel(&lab, "vx1")["state"], "up");
    let pinger = {
        let ns = lab.ns(1);
        std::thread::spawn(move || {
            let out = Command::new("ip")
                .args(["netns", "exec", &ns, "ping", "-c", "1", "-W", "4", "10.99.0.2"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains("1 received")
        })
    };
    wait_for("the ping to wait for the neighbour", || tunnel(&lab, "vx1")["held"].as_u64() > Some(held_before));
    assert!(lab.ctl(&["neigh-show"])["neighbours"][0]["waiting"].as_u64() >= Some(1));
    // Host B answers again: the next ARP retransmission resolves it.
    sh(&["ip", "netns", "exec", &b.ns, "sysctl", "-qw", &format!("{arp_ignore}=0")]);
    assert!(pinger.join().unwrap(), "the first ping was answered: it waited, it was not dropped");
    let t = tunnel(&lab, "vx1");
    assert_eq!((t["state"].as_str(), t["drop_no_path"].as_u64()), (Some("up"), Some(0)), "{t}");
    let held = lab.ctl(&["tunnel-show"])["held"].clone();
    assert!(held["sent"].as_u64() >= Some(1), "{held}");
    assert!(lab.ctl(&["neigh-show"])["arp_requests"].as_u64() >= Some(2), "retransmitted");
}

#[test]
fn routes_and_tunnels_change_live() {
    let mut lab = Lab::new("vr", 1, None);
    let b = HostB::new(&lab);
    config(&lab, &b, false);
    lab.start();
    // A tunnel added live to a remote beyond a router nobody has set up.
    lab.ctl(&["add-port", "br-int", "vx9", "type=vxlan", "remote_ip=10.50.0.7", "key=9"]);
    assert_eq!(tunnel(&lab, "vx9")["state"], "no route");
    assert!(lab.ctl_err(&["route-add", "10.50.0.0/16", "192.0.2.1"]).contains("no subnet"));
    assert!(lab.ctl_err(&["route-add", "10.50.0.1/16", "172.31.9.2"]).contains("host bits"));
    lab.ctl(&["route-add", "10.50.0.0/16", "172.31.9.2"]);
    let routes = lab.ctl(&["route-show"])["routes"].clone();
    let r: Vec<(String, String)> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["prefix"].as_str().unwrap().to_string(), r["origin"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(r, [("172.31.9.0/24".into(), "connected".into()), ("10.50.0.0/16".into(), "live".into())]);
    // Host B is the "router": the tunnel resolves it and comes up.
    wait_for("the routed tunnel to come up", || tunnel(&lab, "vx9")["state"] == "up");
    let t = tunnel(&lab, "vx9");
    assert_eq!(
        (t["next_hop"].as_str(), t["uplink"].as_str(), t["local_ip"].as_str()),
        (Some("172.31.9.2"), Some("up"), Some("172.31.9.1"))
    );
    lab.ctl(&["route-del", "10.50.0.0/16"]);
    assert_eq!(tunnel(&lab, "vx9")["state"], "no route");
    assert!(lab.ctl_err(&["route-del", "10.50.0.0/16"]).contains("no live route"));
    // A route from the file, applied by reload.
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    std::fs::write(lab.config_path(), format!("{text}\n[[route]]\nprefix = \"10.50.0.0/16\"\nvia = \"172.31.9.2\"\n"))
        .unwrap();
    let r = lab.ctl(&["reload"]);
    assert_eq!(r["routes_changed"], true, "{r}");
    // The live tunnel is not in the file: the reload removed it.
    assert!(tunnel(&lab, "vx9").is_null());
    lab.ctl(&["add-port", "br-int", "vx9", "type=vxlan", "remote_ip=10.50.0.7", "key=9"]);
    wait_for("the tunnel routed by the file", || tunnel(&lab, "vx9")["state"] == "up");
    // Removed live: its slot is free again and nothing else changed.
    lab.ctl(&["del-port", "vx9"]);
    assert!(tunnel(&lab, "vx9").is_null());
    assert!(lab.ctl_err(&["add-port", "br-int", "bad", "type=vxlan"]).contains("remote_ip"));
    // A permanent neighbour (nobody answers for .77): the tunnel through
    // it is up at once, and stays so.
    assert!(lab.ctl_err(&["neigh-set", "c1", "172.31.9.77", "02:00:00:00:00:77"]).contains("no uplink"));
    lab.ctl(&["neigh-set", "up", "172.31.9.77", "02:00:00:00:00:77"]);
    lab.ctl(&["route-add", "10.60.0.0/16", "172.31.9.77"]);
    lab.ctl(&["add-port", "br-int", "vx8", "type=vxlan", "remote_ip=10.60.0.1", "key=8"]);
    assert_eq!(tunnel(&lab, "vx8")["state"], "up");
    let n = lab.ctl(&["neigh-show"]);
    let e = n["neighbours"].as_array().unwrap().iter().find(|x| x["ip"] == "172.31.9.77").cloned().unwrap();
    assert_eq!((e["state"].as_str(), e["mac"].as_str()), (Some("permanent"), Some("02:00:00:00:00:77")));
}

/// Sends raw frames out of `dev` in namespace `ns` (an AF_PACKET socket
/// opened in a thread that entered the namespace).
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // libc's field types for small constants
fn send_raw(ns: &str, dev: &str, frames: Vec<Vec<u8>>) {
    let (ns, dev) = (ns.to_string(), dev.to_string());
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        // SAFETY: setns(2) on this thread only, with a namespace file we
        // opened; socket, if_nametoindex and sendto with buffers we own.
        unsafe {
            use std::os::fd::AsRawFd;
            assert_eq!(libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET), 0, "setns");
            let s = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(s >= 0, "AF_PACKET socket");
            let name = std::ffi::CString::new(dev).unwrap();
            let ifindex = libc::if_nametoindex(name.as_ptr());
            assert!(ifindex > 0);
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_ifindex = ifindex as i32;
            sa.sll_halen = 6;
            for fr in frames {
                let n = libc::sendto(
                    s,
                    fr.as_ptr().cast(),
                    fr.len(),
                    0,
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(n, fr.len() as isize, "sendto");
            }
            libc::close(s);
        }
    })
    .join()
    .unwrap();
}

#[test]
fn bad_tunnel_packets_are_dropped_and_counted_by_reason() {
    use vswitch::datapath::tunnel::{udp_checksum, TunnelPath, TunnelSpec, VXLAN_OVERHEAD};
    let (lab, b, _) = vxlan_lab("vd");
    let (our_mac, b_mac) = (HostB::mac(None, &b.uplink), HostB::mac(Some(&b.ns), "ul"));
    // Well-formed VXLAN from host B to us, as the switch itself would
    // build it the other way; then spoiled one way each.
    let good = |vni: u32, dport: u16| {
        let spec =
            TunnelSpec { dst_port: dport, csum: true, ..TunnelSpec::vxlan(std::net::IpAddr::V4(OUR_IP.into()), vni) };
        let path = TunnelPath::new(&spec, 0, b_mac, our_mac, std::net::IpAddr::V4(B_IP.into()), 1500);
        let mut inner = vec![0xffu8; 6];
        inner.extend_from_slice(&[2, 0, 0, 0, 0, 0x99, 0x08, 0x06]);
        inner.resize(60, 0);
        let mut f = vec![0u8; VXLAN_OVERHEAD + inner.len()];
        f[VXLAN_OVERHEAD..].copy_from_slice(&inner);
        path.write(&mut f, inner.len(), 7, 40000);
        udp_checksum(&mut f);
        f
    };
    let spoil = |f: &mut Vec<u8>, at: usize, x: u8| f[at] ^= x;
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.push(good(43, 4789)); // unknown VNI
    }
    for _ in 0..2 {
        let mut f = good(VNI, 4789);
        spoil(&mut f, 24, 0xff); // outer IPv4 checksum
        frames.push(f);
    }
    let mut f = good(VNI, 4789);
    spoil(&mut f, 70, 0x01); // inner byte under the UDP checksum
    frames.push(f);
    let mut f = good(VNI, 4789);
    f[42] = 0; // VXLAN flags without I
    f[40..42].fill(0); // (no UDP checksum, so that the flags are what is wrong)
    frames.push(f);
    let mut f = good(VNI, 4789);
    f[38..40].copy_from_slice(&500u16.to_be_bytes()); // UDP length past the packet
    frames.push(f);
    // (Outer fragments are counted too, but DPDK's AF_PACKET driver asks
    // the kernel to reassemble them first: the unit tests and the fuzz
    // corpus cover them.)
    frames.push(good(VNI, 5555)); // not a tunnel port
    send_raw(&b.ns, "ul", frames);
    let expect = [
        ("unknown_tunnel", 3),
        ("bad_checksum", 3),
        ("bad_header", 1),
        ("truncated", 1),
        ("fragment", 0),
        ("not_tunnel", 1),
        ("notice_lost", 0),
    ];
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !expect.iter().all(|(r, n)| last[*r].as_u64() == Some(*n)) {
        assert!(Instant::now() < deadline, "drops by reason: {last}, expected {expect:?}");
        std::thread::sleep(Duration::from_millis(50));
        last = lab.ctl(&["show"])["bridges"][1]["ports"][0]["underlay"]["drops"].clone();
    }
    // The text of `show` names them too; the switch forwards on.
    let out = lab.ctl_output(false, &["show"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unknown_tunnel 3") && text.contains("bad_checksum 3"), "{text}");
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3);
}

#[test]
fn a_frame_too_big_for_the_tunnel_teaches_its_sender_the_path_mtu() {
    // Both containers at MTU 1500 over a 1500-byte underlay: 50 bytes of
    // VXLAN do not fit, and only path MTU discovery makes TCP work.
    let mut lab = Lab::new("vp", 1, None);
    let b = HostB::with_mtu(&lab, 1500);
    config(&lab, &b, true);
    lab.start();
    wait_for("the tunnel to come up", || tunnel(&lab, "vx1")["state"] == "up");
    assert_eq!(lab.ping(1, 2, 2, "0.2", None), 2);
    // A ping that does not fit, with DF: the answer is "fragmentation
    // needed" with the tunnel's inner MTU, which the sender caches.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(1),
            "ping",
            "-c",
            "2",
            "-i",
            "0.3",
            "-W",
            "1",
            "-s",
            "1472",
            "-M",
            "do",
            "10.99.0.2",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("mtu = 1450") || text.contains("mtu=1450"), "ping says: {text}");
    let route = Command::new("ip").args(["-n", &lab.ns(1), "route", "get", "10.99.0.2"]).output().unwrap();
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(route.contains("mtu 1450"), "the sender's route cache: {route}");
    assert_eq!(lab.ping(1, 2, 2, "0.2", Some(1422)), 2, "a ping that fits the path MTU");
    let t = tunnel(&lab, "vx1");
    assert!(t["drop_too_big"].as_u64() >= Some(1) && t["pmtu_sent"].as_u64() >= Some(1), "{t}");
    // IPv6 in the containers: ICMPv6 "packet too big" teaches the same.
    sh(&["ip", "-n", &lab.ns(1), "addr", "add", "fd01::1/64", "dev", "eth0", "nodad"]);
    sh(&["ip", "-n", &b.container, "addr", "add", "fd01::2/64", "dev", "eth0", "nodad"]);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(1),
            "ping",
            "-6",
            "-c",
            "3",
            "-i",
            "0.3",
            "-W",
            "1",
            "-s",
            "1452",
            "-M",
            "do",
            "fd01::2",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("mtu=1450") || text.contains("mtu = 1450"), "ping -6 says: {text}");
    let route = Command::new("ip").args(["-n", &lab.ns(1), "-6", "route", "get", "fd01::2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&route.stdout).contains("mtu 1450"), "{}", String::from_utf8_lossy(&route.stdout));
    // TCP finds it by itself: the cache flushed, host B's container
    // announces MSS 1460, the first full segments are too big.
    sh(&["ip", "-n", &lab.ns(1), "route", "flush", "cache"]);
    let before = t["pmtu_sent"].as_u64().unwrap();
    tcp_transfer(&lab, &lab.ns(1), &b.container, "10.99.0.2");
    let t = tunnel(&lab, "vx1");
    assert!(t["pmtu_sent"].as_u64() > Some(before), "TCP's segments got their answer too: {t}");
}

#[test]
fn the_arp_responder_answers_and_never_floods_into_the_tunnel() {
    let mut lab = Lab::new("va", 1, None);
    let b = HostB::new(&lab);
    config(&lab, &b, true);
    let hc_mac = wire::EthernetAddress(HostB::mac(Some(&b.container), "eth0")).to_string();
    // Known to br-int's responder from the file: host B's container.
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    let text = text.replacen(
        "[[bridge]]\nname = \"br-int\"\n",
        &format!("[[bridge]]\nname = \"br-int\"\n\n[[bridge.arp]]\nip = \"10.99.0.2\"\nmac = \"{hc_mac}\"\n"),
        1,
    );
    std::fs::write(lab.config_path(), text).unwrap();
    lab.start();
    wait_for("the tunnel to come up", || tunnel(&lab, "vx1")["state"] == "up");
    // Capture what enters the tunnel while container 1 resolves host B's
    // container and pings it.
    let pcap = lab.dir.join("vx1.pcapng");
    let cap = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(["--socket", &lab.sock(), "capture", "vx1", "--direction", "tx", "--duration", "3", "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    sh(&["ip", "-n", &lab.ns(1), "neigh", "flush", "all"]);
    assert_eq!(lab.ping(1, 2, 1, "0.2", None), 1);
    let neigh = Command::new("ip").args(["-n", &lab.ns(1), "neigh", "show", "10.99.0.2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&neigh.stdout).contains(&hc_mac), "container 1 learnt host B's container's MAC");
    let arp = lab.ctl(&["arp-show", "br-int"]);
    assert_eq!(arp["answered"], 1, "{arp}");
    // An address it does not know is flooded as usual (into the tunnel).
    lab.ping(1, 77, 1, "0.2", None);
    let _ = cap.wait_with_output();
    let arp = lab.ctl(&["arp-show", "br-int"]);
    assert!(arp["passed"].as_u64() >= Some(1), "{arp}");
    // The capture: the ping went into the tunnel; the request for
    // 10.99.0.2 did not, the one for 10.99.0.77 did.
    let data = std::fs::read(&pcap).unwrap();
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&data[..]).unwrap();
    let (mut icmp, mut arp_known, mut arp_unknown) = (0, 0, 0);
    while let Some(block) = reader.next_block() {
        let Ok(pcap_file::pcapng::Block::EnhancedPacket(p)) = block else { continue };
        let f = &p.data[..];
        // ARP requests (operation 1) by the address asked for.
        match [f[12], f[13]] {
            [0x08, 0x06] if f[20..22] == [0, 1] && f[38..42] == [10, 99, 0, 2] => arp_known += 1,
            [0x08, 0x06] if f[20..22] == [0, 1] && f[38..42] == [10, 99, 0, 77] => arp_unknown += 1,
            [0x08, 0x00] if f[23] == 1 => icmp += 1,
            _ => {}
        }
    }
    assert_eq!(arp_known, 0, "the responder answered: never flooded into the tunnel");
    assert!(arp_unknown >= 1 && icmp >= 1, "unknown addresses flood, pings pass: {arp_unknown} {icmp}");
    // Live: removed, the request floods again.
    lab.ctl(&["arp-del", "br-int", "10.99.0.2"]);
    assert_eq!(lab.ctl(&["arp-show", "br-int"])["entries"].as_array().unwrap().len(), 0);
    assert!(lab.ctl_err(&["arp-add", "br-int", "10.99.0.2", "not-a-mac"]).contains("MAC"));
}

#[test]
fn openflow_sets_and_matches_tunnel_id_through_a_flow_keyed_port() {
    // OVN's shape: one tunnel port per remote with key=flow; the tables
    // choose the VNI with set_field and match it on the way in.
    let mut lab = Lab::new("vo", 1, None);
    let b = HostB::new(&lab);
    let of = common::free_port();
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br-int\"\nfail_mode = \"secure\"\ncontrollers = [\"ptcp:{of}:127.0.0.1\"]\n\n{}\
         [[bridge.port]]\nname = \"vx1\"\ntype = \"vxlan\"\nremote_ip = \"172.31.9.2\"\nkey = \"flow\"\nofport = 2\n\n\
         [[bridge]]\nname = \"br-phy\"\n\n[[bridge.port]]\nname = \"up\"\ntype = \"afpacket\"\niface = \"{}\"\naddresses = [\"172.31.9.1/24\"]\n",
        lab.port(1, "c1", "ofport = 1"),
        b.uplink
    ));
    lab.start();
    let target = format!("tcp:127.0.0.1:{of}");
    ofctl(&["add-flow", &target, "in_port=1,actions=set_field:42->tun_id,output:2"]);
    ofctl(&["add-flow", &target, "in_port=2,tun_id=42,actions=output:1"]);
    wait_for("the tunnel to come up", || tunnel(&lab, "vx1")["state"] == "up");
    assert_eq!(tunnel(&lab, "vx1")["key"], "flow");
    // The kernel's device takes VNI 42 only: the pings say the VNI went out
    // as set, and the replies (VNI 42) matched tun_id=42 coming in.
    assert_eq!(lab.ping(1, 2, 4, "0.2", None), 4, "{}", lab.log());
    let flows = ofctl(&["dump-flows", &target]);
    assert!(hits(&flows, "tun_id=0x2a") >= 4, "{flows}");
    // Another VNI out: host B's kernel has no such network.
    ofctl(&["mod-flows", &target, "in_port=1,actions=set_field:43->tun_id,output:2"]);
    assert_eq!(lab.ping(1, 2, 2, "0.2", None), 0, "VNI 43 reaches nobody");
    // Back to 42 out, but another VNI expected in: the replies miss.
    ofctl(&["mod-flows", &target, "in_port=1,actions=set_field:42->tun_id,output:2"]);
    ofctl(&["del-flows", &target, "in_port=2"]);
    ofctl(&["add-flow", &target, "in_port=2,tun_id=7,actions=output:1"]);
    assert_eq!(lab.ping(1, 2, 2, "0.2", None), 0, "replies on VNI 42 do not match tun_id=7");
}

#[test]
fn vxlan_over_an_ipv6_underlay_interoperates_with_the_kernel() {
    let mut lab = Lab::new("v6", 1, None);
    let b = HostB::v6(&lab);
    config_at(&lab, &b, true, "fd00:9::1/64", "fd00:9::2");
    let pcap = lab.dir.join("underlay6.pcap");
    let mut dump = capture(&b, &pcap);
    lab.start();
    // Neighbour discovery instead of ARP, both ways.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tunnel(&lab, "vx1")["state"] != "up" {
        assert!(
            Instant::now() < deadline,
            "the tunnel did not come up: {} {} {}",
            lab.ctl(&["tunnel-show"]),
            lab.ctl(&["neigh-show"]),
            lab.ctl(&["route-show"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = lab.ctl(&["neigh-show"]);
    let nb = n["neighbours"].as_array().unwrap().iter().find(|x| x["ip"] == "fd00:9::2").cloned().unwrap();
    assert_eq!(nb["mac"].as_str().unwrap(), wire::EthernetAddress(HostB::mac(Some(&b.ns), "ul")).to_string());
    assert_eq!(lab.ping(1, 2, 4, "0.2", None), 4, "container 1 -> host B's container: {}", lab.log());
    assert_eq!(b.ping(&b.container, "10.99.0.1", 4, 1), 4);
    tcp_transfer(&lab, &lab.ns(1), &b.container, "10.99.0.2");
    tcp_transfer(&lab, &b.container, &lab.ns(1), "10.99.0.1");
    // The underlay address answers neighbour solicitations and pings.
    sh(&["ip", "-n", &b.ns, "neigh", "flush", "dev", "ul"]);
    assert_eq!(b.ping(&b.ns, "fd00:9::1", 3, 1), 3, "host B pings fd00:9::1");
    let up = lab.ctl(&["show"])["bridges"][1]["ports"][0]["underlay"].clone();
    assert!(up["arp_replied"].as_u64() >= Some(1) && up["echo_replied"].as_u64() >= Some(3), "{up}");
    for (reason, n) in up["drops"].as_object().unwrap() {
        assert_eq!(n, 0, "drops: {reason}");
    }
    // On the wire: IPv6 from us to host B, UDP to 4789 with a checksum
    // that verifies (the kernel drops zero checksums over IPv6 by default).
    let _ = Command::new("kill").arg(dump.id().to_string()).status();
    let _ = dump.wait();
    let data = std::fs::read(&pcap).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
    let our_mac = HostB::mac(None, &b.uplink);
    let mut ours = 0;
    while let Some(pkt) = reader.next_packet() {
        let Ok(pkt) = pkt else { break };
        let f = &pkt.data[..];
        if f[6..12] != our_mac || f[12..14] != [0x86, 0xdd] {
            continue;
        }
        ours += 1;
        let ip = wire::Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.src_addr().0, "fd00:9::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(ip.hop_limit(), 64);
        let udp = &f[54..14 + 40 + usize::from(ip.payload_len())];
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
        assert_ne!(u16::from_be_bytes([udp[6], udp[7]]), 0, "a UDP checksum over IPv6");
        let s = wire::checksum::sum(
            wire::checksum::pseudo_v6(&ip.src_addr(), &ip.dst_addr(), 17, u32::try_from(udp.len()).unwrap()),
            udp,
        );
        assert_eq!(wire::checksum::fold(s), 0xffff, "it verifies");
        assert_eq!(wire::vxlan::VxlanPacket::new_checked(&udp[8..]).unwrap().vni(), VNI);
    }
    assert!(ours >= 10, "our frames on host B's underlay: {ours}");
}
