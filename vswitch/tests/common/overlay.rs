//! The overlay lab of the tunnel tests: "host B" (a namespace with the
//! kernel's VXLAN device, a Linux bridge and a container behind it, at
//! 172.31.9.2 or fd00:9::2), vswitchd's configuration with an uplink into
//! it, and what the tests ask of both.

use super::{sh, Lab};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The VNI of host B's VXLAN device.
pub const VNI: u32 = 42;
/// Our underlay address.
pub const OUR_IP: [u8; 4] = [172, 31, 9, 1];
/// Host B's.
pub const B_IP: [u8; 4] = [172, 31, 9, 2];

/// Host B: namespaces for the host and its container, the underlay veth.
pub struct HostB {
    pub ns: String,
    pub container: String,
    /// The uplink's kernel end in our namespace (vswitchd's AF_PACKET port).
    pub uplink: String,
}

impl HostB {
    /// Host B at 172.31.9.2 with a kernel VXLAN device (VNI 42, remote
    /// 172.31.9.1) bridged to its container at 10.99.0.2 (MTU 1450).
    pub fn new(lab: &Lab) -> HostB {
        HostB::with_mtu(lab, 1450)
    }

    /// [`HostB::new`] with its container's MTU.
    pub fn with_mtu(lab: &Lab, container_mtu: u32) -> HostB {
        HostB::build(lab, container_mtu, false)
    }

    /// [`HostB::new`] over an IPv6 underlay: host B at fd00:9::2, the
    /// kernel's VXLAN device to fd00:9::1.
    pub fn v6(lab: &Lab) -> HostB {
        HostB::build(lab, 1400, true)
    }

    fn build(lab: &Lab, container_mtu: u32, v6: bool) -> HostB {
        let (b_addr, local, remote) =
            if v6 { ("fd00:9::2/64", "fd00:9::2", "fd00:9::1") } else { ("172.31.9.2/24", "172.31.9.2", "172.31.9.1") };
        let t = &lab.tag;
        let b = HostB { ns: format!("vs{t}hb"), container: format!("vs{t}hc"), uplink: format!("vs{t}u") };
        b.cleanup();
        let (ns, c) = (b.ns.as_str(), b.container.as_str());
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "netns", "add", c]);
        sh(&["ip", "link", "add", "name", &b.uplink, "type", "veth", "peer", "name", "ul", "netns", ns]);
        sh(&["ip", "link", "set", &b.uplink, "up"]);
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", b.uplink), "1");
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", "ul", "up"],
            &["addr", "add", b_addr, "dev", "ul", "nodad"],
            &[
                "link", "add", "name", "vx0", "type", "vxlan", "id", "42", "remote", remote, "local", local, "dstport",
                "4789",
            ],
            &["link", "set", "vx0", "up"],
            &["link", "add", "name", "brx", "type", "bridge"],
            &["link", "set", "vx0", "master", "brx"],
            &["link", "set", "brx", "up"],
            &["link", "add", "name", "bport", "type", "veth", "peer", "name", "eth0", "netns", c],
            &["link", "set", "bport", "master", "brx"],
            &["link", "set", "bport", "up"],
        ] {
            let mut v = vec!["ip", "-n", ns];
            v.extend_from_slice(args);
            sh(&v);
        }
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", "eth0", "mtu", &container_mtu.to_string()],
            &["link", "set", "eth0", "up"],
            &["addr", "add", "10.99.0.2/24", "dev", "eth0"],
        ] {
            let mut v = vec!["ip", "-n", c];
            v.extend_from_slice(args);
            sh(&v);
        }
        // Finished checksums on the wire (veth leaves them to "hardware").
        for (n, dev) in [(ns, "ul"), (c, "eth0")] {
            let _ = Command::new("ip")
                .args(["netns", "exec", n, "ethtool", "-K", dev, "tx", "off"])
                .stdout(Stdio::null())
                .status();
        }
        b
    }
    fn cleanup(&self) {
        for args in [["netns", "del", &self.ns], ["netns", "del", &self.container], ["link", "del", &self.uplink]] {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        }
    }
    /// The MAC of `dev` in namespace `ns` (None: ours).
    pub fn mac(ns: Option<&str>, dev: &str) -> [u8; 6] {
        let mut c = Command::new("ip");
        if let Some(ns) = ns {
            c.args(["-n", ns]);
        }
        let out = c.args(["-j", "link", "show", dev]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = v[0]["address"].as_str().unwrap();
        let b: Vec<u8> = s.split(':').map(|x| u8::from_str_radix(x, 16).unwrap()).collect();
        b.try_into().unwrap()
    }
    /// Pings from namespace `ns`; replies received.
    pub fn ping(&self, ns: &str, to: &str, count: u32, wait_s: u32) -> u32 {
        super::ping_in(ns, to, count, "0.2", wait_s)
    }
}

impl Drop for HostB {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// vswitchd's config: br-int with container 1 (and tunnel vx1 to host B),
/// br-phy with the uplink; metrics served on the address returned.
pub fn config(lab: &Lab, b: &HostB, tunnel: bool) -> String {
    config_at(lab, b, tunnel, "172.31.9.1/24", "172.31.9.2")
}

pub fn config_at(lab: &Lab, b: &HostB, tunnel: bool, ours: &str, remote: &str) -> String {
    let metrics = format!("127.0.0.1:{}", super::free_port());
    let vx = if tunnel {
        format!("[[bridge.port]]\nname = \"vx1\"\ntype = \"vxlan\"\nremote_ip = \"{remote}\"\nkey = 42\n")
    } else {
        String::new()
    };
    lab.write_config_with(
        &format!("metrics = \"{metrics}\""),
        &format!(
            "[[bridge]]\nname = \"br-int\"\n\n{}{vx}\n[[bridge]]\nname = \"br-phy\"\n\n\
             [[bridge.port]]\nname = \"up\"\ntype = \"afpacket\"\niface = \"{}\"\naddresses = [\"{ours}\"]\n",
            lab.port(1, "c1", ""),
            b.uplink
        ),
    );
    metrics
}

/// `tunnel-show`'s entry for `port`.
pub fn tunnel(lab: &Lab, port: &str) -> Value {
    let t = lab.ctl(&["tunnel-show"]);
    t["tunnels"].as_array().unwrap().iter().find(|x| x["port"] == port).cloned().unwrap_or(Value::Null)
}

pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// tcpdump on host B's underlay interface, until stopped.
pub fn capture(b: &HostB, file: &std::path::Path) -> Child {
    let child = Command::new("ip")
        .args(["netns", "exec", &b.ns, "tcpdump", "-i", "ul", "-n", "-U", "-w"])
        .arg(file)
        .args(["udp", "port", "4789"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says "listening on" once it captures.
    std::thread::sleep(Duration::from_millis(1500));
    child
}

/// 1 MB over TCP from namespace `from` to `to_ip` in namespace `to`.
pub fn tcp_transfer(lab: &Lab, from: &str, to: &str, to_ip: &str) {
    let send = lab.dir.join("send");
    let recv = lab.dir.join(format!("recv-{to}"));
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&send, &data).unwrap();
    let mut server = Command::new("ip")
        .args(["netns", "exec", to, "sh", "-c", &format!("timeout 20 nc -l -p 5001 > {}", recv.display())])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let st = Command::new("ip")
        .args(["netns", "exec", from, "sh", "-c", &format!("nc -q 1 -w 5 {to_ip} 5001 < {}", send.display())])
        .status()
        .unwrap();
    assert!(st.success(), "nc from {from}");
    let _ = server.wait();
    assert_eq!(std::fs::read(&recv).unwrap(), data, "1 MB over TCP from {from} to {to}");
}

/// A lab with container 1, host B and vswitchd started with a VXLAN tunnel
/// to it, once the tunnel is up; the metrics address.
pub fn vxlan_lab(prefix: &str) -> (Lab, HostB, String) {
    let mut lab = Lab::new(prefix, 1, None);
    let b = HostB::new(&lab);
    let metrics = config(&lab, &b, true);
    lab.start();
    wait_for("the tunnel to come up", || tunnel(&lab, "vx1")["state"] == "up");
    (lab, b, metrics)
}

/// `ovs-ofctl -O OpenFlow13 ARGS...` against vswitchd: its output when it
/// succeeds, its error text when it fails, as `ok` expects.
pub fn ofctl_expect(args: &[&str], ok: bool) -> String {
    let out = Command::new("ovs-ofctl").args(["-O", "OpenFlow13"]).args(args).output().unwrap();
    assert_eq!(out.status.success(), ok, "ovs-ofctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(if ok { &out.stdout } else { &out.stderr }).into_owned()
}

/// [`ofctl_expect`] that must succeed.
pub fn ofctl(args: &[&str]) -> String {
    ofctl_expect(args, true)
}

/// Packets the first flow containing `m` counted in `flows`
/// (`dump-flows`' text).
pub fn hits(flows: &str, m: &str) -> u64 {
    flows
        .lines()
        .find(|l| l.contains(m))
        .and_then(|l| l.split("n_packets=").nth(1))
        .and_then(|n| n.split(',').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
}

/// vswitchd with container 1 (OpenFlow port 1) and a `kind` tunnel port
/// `name` (OpenFlow port 2, VNI 42) whose remote is `flow`, on an OpenFlow
/// bridge listening for ovs-ofctl; the uplink on `uplink` with address
/// `ours`. Started; the OpenFlow target.
pub fn flow_tunnel_lab(lab: &mut Lab, kind: &str, name: &str, uplink: &str, ours: &str) -> String {
    let of = super::free_port();
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br-int\"\nfail_mode = \"secure\"\ncontrollers = [\"ptcp:{of}:127.0.0.1\"]\n\n{}\
         [[bridge.port]]\nname = \"{name}\"\ntype = \"{kind}\"\nremote_ip = \"flow\"\nkey = 42\nofport = 2\n\n\
         [[bridge]]\nname = \"br-phy\"\n\n[[bridge.port]]\nname = \"up\"\ntype = \"afpacket\"\niface = \"{uplink}\"\naddresses = [\"{ours}\"]\n",
        lab.port(1, "c1", "ofport = 1"),
    ));
    lab.start();
    format!("tcp:127.0.0.1:{of}")
}
