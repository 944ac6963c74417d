//! Flow-based tunnels against the Linux kernel's VXLAN device (host B of
//! the overlay lab): a port whose remote is `flow`, steered by OpenFlow's
//! `set_field:...->tun_dst` (or `tun_ipv6_dst`), and frames coming in
//! matched on `tun_src`/`tun_dst` (or their IPv6 forms), as `ovs-ofctl`
//! writes them for OVS. Needs root.

mod common;

use common::overlay::{hits, ofctl, tcp_transfer, tunnel, HostB};
use common::Lab;

/// vswitchd with container 1 and a VXLAN port (VNI 42) whose remote is
/// `flow` on an OpenFlow bridge, the uplink into host B with `ours`; the
/// OpenFlow target.
fn flow_lab(lab: &mut Lab, b: &HostB, ours: &str) -> String {
    let of = common::free_port();
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br-int\"\nfail_mode = \"secure\"\ncontrollers = [\"ptcp:{of}:127.0.0.1\"]\n\n{}\
         [[bridge.port]]\nname = \"vx1\"\ntype = \"vxlan\"\nremote_ip = \"flow\"\nkey = 42\nofport = 2\n\n\
         [[bridge]]\nname = \"br-phy\"\n\n[[bridge.port]]\nname = \"up\"\ntype = \"afpacket\"\niface = \"{}\"\naddresses = [\"{ours}\"]\n",
        lab.port(1, "c1", "ofport = 1"),
        b.uplink
    ));
    lab.start();
    format!("tcp:127.0.0.1:{of}")
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
