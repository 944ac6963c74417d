//! Flow-based tunnels against the Linux kernel's VXLAN device (host B of
//! the overlay lab): a port whose remote is `flow`, steered by OpenFlow's
//! `set_field:...->tun_dst` (or `tun_ipv6_dst`), and frames coming in
//! matched on `tun_src`/`tun_dst` (or their IPv6 forms), as `ovs-ofctl`
//! writes them for OVS. Needs root.

mod common;

use common::overlay::{flow_tunnel_lab, hits, ofctl, tcp_transfer, tunnel, HostB};
use common::Lab;

/// [`flow_tunnel_lab`] with a VXLAN port into host B.
fn flow_lab(lab: &mut Lab, b: &HostB, ours: &str) -> String {
    flow_tunnel_lab(lab, "vxlan", "vx1", &b.uplink, ours)
}

#[test]
fn a_flow_remote_is_chosen_by_set_field_tun_dst_and_matched_by_tun_src() {
    let mut lab = Lab::new("vf", 1, None);
    let b = HostB::new(&lab);
    let us = flow_lab(&mut lab, &b, "172.31.9.1/24");
    ofctl(&["add-flow", &us, "in_port=1,actions=set_field:172.31.9.2->tun_dst,output:2"]);
    ofctl(&["add-flow", &us, "in_port=2,tun_src=172.31.9.2,tun_dst=172.31.9.1,actions=output:1"]);
    // No remote is known before the first frame names it: that frame
    // waits for host B's ARP answer and goes, none is lost.
    assert_eq!(tunnel(&lab, "vx1")["remotes"].as_array().map(Vec::len), Some(0));
    assert_eq!(lab.ping(1, 2, 4, "0.2", None), 4, "container 1 -> host B's container: {}", lab.log());
    assert_eq!(b.ping(&b.container, "10.99.0.1", 4, 1), 4, "and back");
    tcp_transfer(&lab, &lab.ns(1), &b.container, "10.99.0.2");
    let t = tunnel(&lab, "vx1");
    assert_eq!((t["remote_ip"].as_str(), t["remotes"][0]["remote_ip"].as_str()), (Some("flow"), Some("172.31.9.2")));
    assert_eq!((t["remotes"][0]["state"].as_str(), t["remotes"][0]["uplink"].as_str()), (Some("up"), Some("up")));
    let flows = ofctl(&["dump-flows", &us]);
    assert!(hits(&flows, "tun_src=172.31.9.2") >= 8, "{flows}");
    // Frames from host B match only a flow for its address.
    ofctl(&["del-flows", &us, "in_port=2"]);
    ofctl(&["add-flow", &us, "in_port=2,tun_src=172.31.9.99,actions=output:1"]);
    assert_eq!(lab.ping(1, 2, 2, "0.2", None), 0, "replies from 172.31.9.2 do not match tun_src=172.31.9.99");
    ofctl(&["add-flow", &us, "in_port=2,tun_src=172.31.9.0/24,actions=output:1"]);
    assert_eq!(lab.ping(1, 2, 2, "0.2", None), 2, "a masked tun_src matches");
    // A frame with no tun_dst has nowhere to go: dropped and counted.
    ofctl(&["mod-flows", &us, "in_port=1,actions=output:2"]);
    let before = tunnel(&lab, "vx1")["drop_no_path"].as_u64().unwrap();
    assert_eq!(lab.ping(1, 2, 2, "0.2", None), 0, "no tun_dst");
    assert!(tunnel(&lab, "vx1")["drop_no_path"].as_u64().unwrap() > before);
}

#[test]
fn a_flow_remote_over_ipv6_is_chosen_by_tun_ipv6_dst() {
    let mut lab = Lab::new("vf6", 1, None);
    let b = HostB::v6(&lab);
    let us = flow_lab(&mut lab, &b, "fd00:9::1/64");
    ofctl(&["add-flow", &us, "in_port=1,actions=set_field:fd00:9::2->tun_ipv6_dst,output:2"]);
    ofctl(&["add-flow", &us, "in_port=2,tun_ipv6_src=fd00:9::2,tun_ipv6_dst=fd00:9::1,actions=output:1"]);
    assert_eq!(lab.ping(1, 2, 4, "0.2", None), 4, "container 1 -> host B's container: {}", lab.log());
    assert_eq!(b.ping(&b.container, "10.99.0.1", 4, 1), 4, "and back");
    let t = tunnel(&lab, "vx1");
    assert_eq!(t["remotes"][0]["remote_ip"], "fd00:9::2", "{t}");
    let flows = ofctl(&["dump-flows", &us]);
    assert!(hits(&flows, "tun_ipv6_src=fd00:9::2") >= 8, "{flows}");
}

#[test]
fn tos_inherit_copies_each_frames_tos_to_the_outer_header() {
    let mut lab = Lab::new("vti", 1, None);
    let b = HostB::new(&lab);
    common::overlay::config(&lab, &b, false);
    let pcap = lab.dir.join("tos.pcap");
    let mut dump = common::overlay::capture(&b, &pcap);
    lab.start();
    lab.ctl(&["add-port", "br-int", "vx1", "type=vxlan", "remote_ip=172.31.9.2", "key=42", "tos=inherit"]);
    common::overlay::wait_for("the tunnel", || tunnel(&lab, "vx1")["state"] == "up");
    assert_eq!(tunnel(&lab, "vx1")["tos"], "inherit");
    // Pings with DSCP EF (TOS 0xb8), then with TOS 0x20.
    for tos in ["0xb8", "0x20"] {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(1),
                "ping",
                "-q",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "2",
                "-Q",
                tos,
                "10.99.0.2",
            ])
            .output()
            .unwrap();
        assert_eq!(common::received(&out), 3, "pings with TOS {tos}");
    }
    // tcpdump writes what it has read; give it the last frames.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let _ = std::process::Command::new("kill").arg(dump.id().to_string()).status();
    let _ = dump.wait();
    // Our frames on host B's underlay: the outer TOS is the inner one,
    // the outer checksum right.
    let data = std::fs::read(&pcap).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
    let ours = HostB::mac(None, &b.uplink);
    let mut seen = std::collections::BTreeMap::new();
    while let Some(pkt) = reader.next_packet() {
        let Ok(pkt) = pkt else { break };
        let f = &pkt.data[..];
        if f[6..12] != ours || f[12..14] != [0x08, 0x00] || f.len() < 50 + 34 {
            continue;
        }
        assert!(wire::Ipv4Packet::new_checked(&f[14..]).unwrap().verify_checksum(), "outer IPv4 checksum");
        let inner_tos = if f[50 + 12..50 + 14] == [0x08, 0x00] { f[50 + 15] } else { 0 };
        assert_eq!(f[15], inner_tos, "outer TOS = inner TOS");
        *seen.entry(inner_tos).or_insert(0) += 1;
    }
    assert!(seen.get(&0xb8) >= Some(&3) && seen.get(&0x20) >= Some(&3), "{seen:?}");
}
