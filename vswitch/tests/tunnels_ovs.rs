//! Geneve and GRE against Open vSwitch's userspace datapath, an
//! independent implementation of both, running in a namespace as "host B".
//! Needs root and Debian's Open vSwitch (ci/setup installs it).

mod common;

use common::overlay::{flow_tunnel_lab, ofctl_expect, tcp_transfer, tunnel, wait_for};
use common::{sh, Lab};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Host B as Open vSwitch's userspace datapath sees it: ovsdb-server and
/// ovs-vswitchd running in a namespace, br-phy (netdev) with the underlay
/// veth and the address 172.31.9.2, br-int (netdev) with a tunnel port to
/// us and the veth of its container (10.99.0.2, MTU 1400).
struct OvsHost {
    ns: String,
    container: String,
    uplink: String,
    dir: std::path::PathBuf,
}

impl OvsHost {
    fn new(lab: &Lab, tunnel: &[&str]) -> OvsHost {
        let t = &lab.tag;
        let o = OvsHost {
            ns: format!("vs{t}ob"),
            container: format!("vs{t}oc"),
            uplink: format!("vs{t}o"),
            dir: lab.dir.join("ovs"),
        };
        o.cleanup();
        std::fs::create_dir_all(&o.dir).unwrap();
        let (ns, c) = (o.ns.as_str(), o.container.as_str());
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "netns", "add", c]);
        sh(&["ip", "link", "add", "name", &o.uplink, "type", "veth", "peer", "name", "ul", "netns", ns]);
        sh(&["ip", "link", "set", &o.uplink, "up"]);
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", o.uplink), "1");
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", ns, "link", "set", "ul", "up"]);
        sh(&["ip", "-n", ns, "link", "add", "name", "bport", "type", "veth", "peer", "name", "eth0", "netns", c]);
        sh(&["ip", "-n", ns, "link", "set", "bport", "up"]);
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", "eth0", "mtu", "1400"],
            &["link", "set", "eth0", "up"],
            &["addr", "add", "10.99.0.2/24", "dev", "eth0"],
        ] {
            let mut v = vec!["ip", "-n", c];
            v.extend_from_slice(args);
            sh(&v);
        }
        for (n, dev) in [(ns, "ul"), (ns, "bport"), (c, "eth0")] {
            let _ = Command::new("ip")
                .args(["netns", "exec", n, "ethtool", "-K", dev, "tx", "off"])
                .stdout(Stdio::null())
                .status();
        }
        let db = o.dir.join("conf.db");
        o.ovs(false, "ovsdb-tool", &["create", db.to_str().unwrap(), "/usr/share/openvswitch/vswitch.ovsschema"]);
        let remote = format!("--remote=punix:{}", o.dir.join("db.sock").display());
        let pid = format!("--pidfile={}", o.dir.join("ovsdb-server.pid").display());
        let log = format!("--log-file={}", o.dir.join("ovsdb-server.log").display());
        o.ovs(true, "ovsdb-server", &[&remote, &pid, "--detach", &log, db.to_str().unwrap()]);
        o.vsctl(&["--no-wait", "init"]);
        let sock = format!("unix:{}", o.dir.join("db.sock").display());
        let pid = format!("--pidfile={}", o.dir.join("ovs-vswitchd.pid").display());
        let log = format!("--log-file={}", o.dir.join("ovs-vswitchd.log").display());
        o.ovs(true, "ovs-vswitchd", &[&sock, &pid, "--detach", &log]);
        o.vsctl(&["add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev"]);
        o.vsctl(&["add-port", "br-phy", "ul"]);
        sh(&["ip", "-n", ns, "addr", "add", "172.31.9.2/24", "dev", "br-phy"]);
        sh(&["ip", "-n", ns, "link", "set", "br-phy", "up"]);
        o.vsctl(&["add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev"]);
        o.vsctl(&["add-port", "br-int", "bport", "--", "set", "interface", "bport", "ofport_request=1"]);
        let mut args = vec!["add-port", "br-int", "tun0", "--", "set", "interface", "tun0", "ofport_request=2"];
        args.extend_from_slice(tunnel);
        o.vsctl(&args);
        o
    }
    fn env<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("OVS_RUNDIR", &self.dir)
            .env("OVS_DBDIR", &self.dir)
            .env("OVS_LOGDIR", &self.dir)
            .env("OVS_SYSCONFDIR", &self.dir)
    }
    /// Runs an OVS program (in host B's namespace when `in_ns`).
    fn ovs(&self, in_ns: bool, prog: &str, args: &[&str]) -> String {
        let mut c = if in_ns {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.ns, prog]);
            c
        } else {
            Command::new(prog)
        };
        let out = self.env(c.args(args)).output().unwrap();
        assert!(out.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn vsctl(&self, args: &[&str]) -> String {
        let db = format!("--db=unix:{}", self.dir.join("db.sock").display());
        let mut a = vec![db.as_str(), "--timeout=20"];
        a.extend_from_slice(args);
        self.ovs(false, "ovs-vsctl", &a)
    }
    fn ofctl(&self, args: &[&str]) -> String {
        self.ovs(false, "ovs-ofctl", args)
    }
    fn mgmt(&self, br: &str) -> String {
        format!("unix:{}", self.dir.join(format!("{br}.mgmt")).display())
    }
    fn cleanup(&self) {
        for pidfile in ["ovs-vswitchd.pid", "ovsdb-server.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(pidfile)) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        for args in [["netns", "del", &self.ns], ["netns", "del", &self.container], ["link", "del", &self.uplink]] {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        }
    }
    /// Pings from namespace `ns`; replies received.
    fn ping(&self, ns: &str, to: &str, count: u32) -> u32 {
        common::ping_in(ns, to, count, "0.3", 1)
    }
}

impl Drop for OvsHost {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// vswitchd with container 1 and a `kind` tunnel to OVS's host, the
/// uplink on the veth into its namespace.
fn ovs_peer_config(lab: &Lab, o: &OvsHost, kind: &str) {
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br-int\"\n\n{}[[bridge.port]]\nname = \"t1\"\ntype = \"{kind}\"\nremote_ip = \"172.31.9.2\"\nkey = 42\n\n\
         [[bridge]]\nname = \"br-phy\"\n\n[[bridge.port]]\nname = \"up\"\ntype = \"afpacket\"\niface = \"{}\"\naddresses = [\"172.31.9.1/24\"]\n",
        lab.port(1, "c1", ""),
        o.uplink
    ));
}

/// Pings and 1 MB of TCP both ways between container 1 and OVS's
/// container, over the tunnel; the tunnel's counters.
fn talk_to_ovs(lab: &Lab, o: &OvsHost) -> Value {
    wait_for("the tunnel to come up", || tunnel(lab, "t1")["state"] == "up");
    // OVS drops the first packets while it resolves us by ARP.
    let deadline = Instant::now() + Duration::from_secs(15);
    while o.ping(&lab.ns(1), "10.99.0.2", 1) == 0 {
        assert!(
            Instant::now() < deadline,
            "no ping through OVS: {}",
            std::fs::read_to_string(o.dir.join("ovs-vswitchd.log")).unwrap_or_default()
        );
    }
    assert_eq!(o.ping(&lab.ns(1), "10.99.0.2", 5), 5, "container 1 -> OVS's container");
    assert_eq!(o.ping(&o.container, "10.99.0.1", 5), 5, "OVS's container -> container 1");
    tcp_transfer(lab, &lab.ns(1), &o.container, "10.99.0.2");
    tcp_transfer(lab, &o.container, &lab.ns(1), "10.99.0.1");
    let up = lab.ctl(&["show"])["bridges"][1]["ports"][0]["underlay"].clone();
    for (reason, n) in up["drops"].as_object().unwrap() {
        assert_eq!(n, 0, "uplink drops: {reason}: {up}");
    }
    tunnel(lab, "t1")
}

#[test]
fn geneve_with_an_option_interoperates_with_ovs_userspace() {
    let mut lab = Lab::new("vg", 1, None);
    let o = OvsHost::new(&lab, &["type=geneve", "options:remote_ip=172.31.9.1", "options:key=42"]);
    // OVS puts a 4-byte option on what it sends to us (not a critical
    // one: those we do not know are dropped, as RFC 8926 says).
    o.ofctl(&["add-tlv-map", &o.mgmt("br-int"), "{class=0xffff,type=0x01,len=4}->tun_metadata0"]);
    o.ofctl(&["del-flows", &o.mgmt("br-int")]);
    o.ofctl(&["add-flow", &o.mgmt("br-int"), "in_port=1,actions=set_field:0xabcd->tun_metadata0,output:2"]);
    o.ofctl(&["add-flow", &o.mgmt("br-int"), "in_port=2,actions=output:1"]);
    ovs_peer_config(&lab, &o, "geneve");
    let pcap = lab.dir.join("up.pcapng");
    lab.start();
    let cap = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args([
            "--socket",
            &lab.sock(),
            "capture",
            "up",
            "--direction",
            "rx",
            "--count",
            "200",
            "--duration",
            "20",
            "-w",
        ])
        .arg(&pcap)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t = talk_to_ovs(&lab, &o);
    assert!(t["rx_packets"].as_u64() > Some(700) && t["tx_packets"].as_u64() > Some(700), "{t}");
    let _ = cap.wait_with_output();
    // What OVS sent: Geneve to 6081 with VNI 42 and the option.
    let data = std::fs::read(&pcap).unwrap();
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&data[..]).unwrap();
    let mut with_option = 0;
    while let Some(block) = reader.next_block() {
        let Ok(pcap_file::pcapng::Block::EnhancedPacket(p)) = block else { continue };
        let f = &p.data[..];
        if f.len() > 60 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[36..38] == 6081u16.to_be_bytes() {
            let g = &f[42..];
            assert_eq!(u32::from_be_bytes([0, g[4], g[5], g[6]]), 42, "VNI");
            if g[0] & 0x3f == 2 && g[8..12] == [0xff, 0xff, 0x01, 1] && g[12..16] == 0xabcdu32.to_be_bytes() {
                with_option += 1;
            }
        }
    }
    assert!(with_option > 10, "Geneve frames from OVS with the option TLV: {with_option}");
    // OVS decapsulated ours: its tunnel port received them.
    let stats = o.ofctl(&["dump-ports", &o.mgmt("br-int"), "2"]);
    assert!(!stats.contains("rx pkts=0,"), "OVS's tunnel port: {stats}");
}

#[test]
fn gre_with_a_key_interoperates_with_ovs_userspace() {
    let mut lab = Lab::new("vq", 1, None);
    let o = OvsHost::new(&lab, &["type=gre", "options:remote_ip=172.31.9.1", "options:key=42"]);
    ovs_peer_config(&lab, &o, "gre");
    lab.start();
    let t = talk_to_ovs(&lab, &o);
    assert!(t["rx_packets"].as_u64() > Some(700) && t["tx_packets"].as_u64() > Some(700), "{t}");
    assert_eq!(t["type"], "gre");
}

#[test]
fn geneve_metadata_and_a_flow_remote_work_with_ovs_as_ovn_writes_them() {
    // OVN's shape: a critical 4-byte option (class 0x0102, type 0x80)
    // carries the logical port, set on the way out and matched on the way
    // in. OVS only takes our frames with 0x5678 in it; we only take its
    // frames with 0x1234, from its address. Our tunnel's remote is `flow`:
    // the tables choose it with set_field:...->tun_dst.
    let mut lab = Lab::new("vm", 1, None);
    let o = OvsHost::new(&lab, &["type=geneve", "options:remote_ip=172.31.9.1", "options:key=42"]);
    let ovs = o.mgmt("br-int");
    o.ofctl(&["add-tlv-map", &ovs, "{class=0x0102,type=0x80,len=4}->tun_metadata0"]);
    o.ofctl(&["del-flows", &ovs]);
    o.ofctl(&["add-flow", &ovs, "in_port=1,actions=set_field:0x1234->tun_metadata0,output:2"]);
    o.ofctl(&["add-flow", &ovs, "in_port=2,tun_metadata0=0x5678,actions=output:1"]);
    let us = flow_tunnel_lab(&mut lab, "geneve", "t1", &o.uplink, "172.31.9.1/24");
    // Without a map here, OVS's critical option is not understood: its
    // frames are dropped and counted.
    ofctl_expect(&["add-flow", &us, "in_port=2,actions=output:1"], true);
    ofctl_expect(&["add-flow", &us, "in_port=1,actions=set_field:172.31.9.2->tun_dst,output:2"], true);
    let bad_options = || lab.ctl(&["show"])["bridges"][1]["ports"][0]["underlay"]["drops"]["bad_options"].as_u64();
    let deadline = Instant::now() + Duration::from_secs(15);
    while bad_options() == Some(0) {
        assert!(Instant::now() < deadline, "OVS's critical option was not refused");
        o.ping(&o.container, "10.99.0.1", 1);
    }
    // A flow naming an unmapped field is refused as OVS refuses it.
    let e = ofctl_expect(&["add-flow", &us, "in_port=2,tun_metadata0=0x1234,actions=output:1"], false);
    assert!(e.contains("NXFMFC_INVALID_TLV_FIELD"), "{e}");
    ofctl_expect(&["add-tlv-map", &us, "{class=0x0102,type=0x80,len=4}->tun_metadata0"], true);
    let map = ofctl_expect(&["dump-tlv-map", &us], true);
    assert!(map.contains("0x102") && map.contains("0x80") && map.contains("tun_metadata0"), "{map}");
    ofctl_expect(&["del-flows", &us], true);
    ofctl_expect(
        &["add-flow", &us, "in_port=2,tun_src=172.31.9.2,tun_dst=172.31.9.1,tun_metadata0=0x1234,actions=output:1"],
        true,
    );
    ofctl_expect(
        &["add-flow", &us, "in_port=1,actions=set_field:0x5678->tun_metadata0,set_field:172.31.9.2->tun_dst,output:2"],
        true,
    );
    // The mapping is in use: not deleted.
    let e = ofctl_expect(&["del-tlv-map", &us, "{class=0x0102,type=0x80,len=4}->tun_metadata0"], false);
    assert!(e.contains("NXTTMFC_INVALID_TLV_DEL"), "{e}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while o.ping(&lab.ns(1), "10.99.0.2", 1) == 0 {
        assert!(
            Instant::now() < deadline,
            "no ping through OVS: {} {}",
            lab.ctl(&["tunnel-show"]),
            std::fs::read_to_string(o.dir.join("ovs-vswitchd.log")).unwrap_or_default()
        );
    }
    assert_eq!(o.ping(&lab.ns(1), "10.99.0.2", 5), 5, "container 1 -> OVS's container");
    assert_eq!(o.ping(&o.container, "10.99.0.1", 5), 5, "OVS's container -> container 1");
    tcp_transfer(&lab, &lab.ns(1), &o.container, "10.99.0.2");
    let t = tunnel(&lab, "t1");
    assert_eq!((t["remote_ip"].as_str(), t["state"].as_str()), (Some("flow"), Some("flow")), "{t}");
    assert_eq!(t["remotes"][0]["remote_ip"], "172.31.9.2", "{t}");
    assert_eq!(t["remotes"][0]["state"], "up", "{t}");
    // Our flows matched what OVS sent, and OVS's matched what we sent.
    let flows = ofctl_expect(&["dump-flows", &us], true);
    let line = flows.lines().find(|l| l.contains("tun_metadata0=0x1234")).unwrap_or_default();
    assert!(line.contains("tun_src=172.31.9.2") && !line.contains("n_packets=0,"), "{flows}");
    let theirs = o.ofctl(&["dump-flows", &ovs]);
    let line = theirs.lines().find(|l| l.contains("tun_metadata0=0x5678")).unwrap_or_default();
    assert!(!line.is_empty() && !line.contains("n_packets=0,"), "{theirs}");
    // Another value out: OVS's flow no longer matches, nothing comes back.
    ofctl_expect(
        &["mod-flows", &us, "in_port=1,actions=set_field:0x5679->tun_metadata0,set_field:172.31.9.2->tun_dst,output:2"],
        true,
    );
    assert_eq!(o.ping(&lab.ns(1), "10.99.0.2", 3), 0, "OVS drops the wrong tun_metadata0");
    // Another remote: nobody answers ARP for it, frames wait and expire.
    ofctl_expect(
        &["mod-flows", &us, "in_port=1,actions=set_field:0x5678->tun_metadata0,set_field:172.31.9.7->tun_dst,output:2"],
        true,
    );
    assert_eq!(o.ping(&lab.ns(1), "10.99.0.2", 3), 0, "172.31.9.7 is nobody");
    let t = tunnel(&lab, "t1");
    let r7 = t["remotes"].as_array().unwrap().iter().find(|r| r["remote_ip"] == "172.31.9.7").cloned();
    assert_eq!(r7.map(|r| r["state"].clone()), Some(Value::from("resolving")), "{t}");
}
