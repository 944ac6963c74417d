//! The operator's tools end to end, with real peers: Debian's Prometheus
//! scrapes vswitchd's metrics; `vswitchctl capture` writes files that
//! `tcpdump -r` reads back byte for byte; `vswitchctl trace` walks packets
//! through hand-checked tables and agrees with the megaflows the datapath
//! really installs. Needs root; cleans up after itself.

mod common;

use common::{free_port, http_get, sh, Lab};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Prometheus server scraping one target every second, killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Prometheus {
    fn start(dir: &std::path::Path, target: &str) -> Prometheus {
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: vswitchd\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("Debian's prometheus (ci/setup installs it)");
        Prometheus { child, addr }
    }

    /// The value of the first series `query` returns (an instant query),
    /// once it returns one within 30 s.
    fn value(&self, query: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let path = format!("/api/v1/query?query={}", urlencode(query));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        loop {
            if let Ok((200, _, body)) = http_get(&self.addr, &path) {
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                if let Some(x) = v["data"]["result"][0]["value"][1].as_str().and_then(|x| x.parse::<f64>().ok()) {
                    if ok(x) {
                        return x;
                    }
                }
                last = body;
            }
            assert!(Instant::now() < deadline, "Prometheus never had `{query}` as expected; last answer: {last}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// How many series `query` returns.
    fn count(&self, query: &str) -> usize {
        let (_, _, body) = http_get(&self.addr, &format!("/api/v1/query?query={}", urlencode(query))).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().map_or(0, Vec::len)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Debian's Prometheus scrapes `[control] metrics` and its HTTP API
/// returns the series after traffic: port counters at least what
/// `port-stats` said before, both MACs in the table, PMD cycles and the
/// iteration histogram; vswitchd's own page speaks the text format.
#[test]
fn prometheus_scrapes_the_metrics() {
    let mut lab = Lab::new("m", 2, None);
    let addr = format!("127.0.0.1:{}", free_port());
    lab.write_config_with(
        &format!("metrics = \"{addr}\""),
        &format!("[[bridge]]\nname = \"br0\"\n\n{}{}", lab.port(1, "c1", ""), lab.port(2, "c2", "")),
    );
    lab.start();
    assert_eq!(lab.ping(1, 2, 5, "0.2", None), 5);
    let rx_before = lab.ctl(&["port-stats", "c1"])["ports"][0]["rx_packets"].as_u64().unwrap();
    assert!(rx_before >= 5);

    let (status, head, body) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(status, 200, "{head}");
    assert!(head.to_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    for line in ["# TYPE vswitch_port_rx_packets_total counter", "# TYPE vswitch_pmd_iteration_seconds histogram"] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
    }
    let sample = |series: &str| -> f64 {
        let line = body.lines().find(|l| l.starts_with(&format!("{series} "))).unwrap_or_else(|| panic!("no {series}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(sample("vswitch_mac_entries{bridge=\"br0\"}"), 2.0);
    assert!(sample("vswitch_port_rx_packets_total{bridge=\"br0\",port=\"c1\"}") >= rx_before as f64);
    assert!(body.contains("vswitch_pmd_iteration_seconds_bucket{pmd=\"0\",core="), "{body}");
    assert!(body.contains("le=\"+Inf\"}"), "{body}");
    assert_eq!(http_get(&addr, "/nothing").unwrap().0, 404);

    let prom = Prometheus::start(&lab.dir, &addr);
    assert_eq!(prom.value("up{job=\"vswitchd\"}", |v| v == 1.0), 1.0);
    let rx = prom.value("vswitch_port_rx_packets_total{port=\"c1\",bridge=\"br0\"}", |v| v >= rx_before as f64);
    let now = lab.ctl(&["port-stats", "c1"])["ports"][0]["rx_packets"].as_u64().unwrap();
    assert!(rx <= now as f64, "Prometheus {rx}, port-stats {now}");
    prom.value("vswitch_mac_entries{bridge=\"br0\"}", |v| v == 2.0);
    prom.value("vswitch_pmd_cycles_total{state=\"busy\"}", |v| v > 0.0);
    prom.value("vswitch_pmd_iteration_seconds_count", |v| v > 0.0);
    prom.value("vswitch_l2_packets_total{kind=\"unicast\"}", |v| v >= 5.0);
    // Drops by reason: six reasons per port, two ports.
    assert_eq!(prom.count("vswitch_port_dropped_total"), 12);
    assert_eq!(prom.count("vswitch_port_link_up == 1"), 2);
}

/// Frames with the local experimental EtherType, from `src` to all.
fn frames(src: &str, sizes: &[usize]) -> Vec<Vec<u8>> {
    let mac: Vec<u8> = src.split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
    sizes
        .iter()
        .enumerate()
        .map(|(n, &len)| {
            let mut f = vec![0xff; 6];
            f.extend_from_slice(&mac);
            f.extend_from_slice(&[0x88, 0xb5]);
            f.extend((0..len - 14).map(|i| u8::try_from((i * 7 + n * 31) % 251).unwrap()));
            f
        })
        .collect()
}

/// Sends `frames` out of container `ns`'s eth0 as they are (a raw packet
/// socket).
fn send(ns: &str, frames: &[Vec<u8>]) {
    let hex: Vec<String> = frames.iter().map(|f| f.iter().map(|b| format!("{b:02x}")).collect()).collect();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('eth0',0))\nfor h in {hex:?}:\n    s.send(bytes.fromhex(h))\n"
    );
    sh(&["ip", "netns", "exec", ns, "python3", "-c", &script]);
}

/// The frames `tcpdump -r` reads from `file`, as bytes.
fn tcpdump(file: &std::path::Path) -> Vec<Vec<u8>> {
    let out = Command::new("tcpdump").args(["-n", "-xx", "-r"]).arg(file).output().unwrap();
    assert!(out.status.success(), "tcpdump -r {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let t = line.trim_start();
        if let Some(hex) = t.strip_prefix("0x").and_then(|r| r.split_once(':')).map(|(_, h)| h) {
            let bytes = hex
                .split_whitespace()
                .flat_map(|w| (0..w.len()).step_by(2).map(move |i| u8::from_str_radix(&w[i..i + 2], 16).unwrap()));
            frames.last_mut().expect("hex before a packet line").extend(bytes);
        } else if !t.is_empty() {
            frames.push(Vec::new());
        }
    }
    frames
}

/// Starts `vswitchctl capture ARGS` in the background.
fn capture(lab: &Lab, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(["--socket", &lab.sock(), "capture"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a `vswitchctl capture` to end by itself; its output.
fn finished(mut c: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the capture did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "capture: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_captures(lab: &Lab, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.ctl(&["captures"])["captures"].as_array().map_or(0, Vec::len) != n {
        assert!(Instant::now() < deadline, "{} captures never ran", n);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `vswitchctl capture` writes exactly the frames a container sent, byte
/// for byte, as received on its port (pcapng, marked inbound) and as sent
/// on the other (pcap); a snaplen cuts frames and keeps their length; a
/// client that dies ends its capture; bad requests are refused with why.
#[test]
fn captures_hold_exactly_the_frames_sent() {
    let mut lab = Lab::new("k", 2, None);
    for i in 1..=2 {
        // Nothing but the test's frames on the wire.
        sh(&["ip", "netns", "exec", &lab.ns(i), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    lab.two_port_config();
    lab.start();
    let sent = frames(&lab.mac(1), &[60, 64, 333, 1000, 1514]);
    let rx_file = lab.dir.join("c1-rx.pcapng");
    let tx_file = lab.dir.join("c2-tx.pcap");
    let rx = capture(&lab, &["c1", "--direction", "rx", "--count", "5", "-w", rx_file.to_str().unwrap()]);
    let tx = capture(
        &lab,
        &["c2", "--direction", "tx", "--count", "5", "--format", "pcap", "-w", tx_file.to_str().unwrap()],
    );
    wait_captures(&lab, 2);
    send(&lab.ns(1), &sent);
    assert!(finished(rx).starts_with("5 packets written"));
    assert!(finished(tx).starts_with("5 packets written"));
    assert_eq!(tcpdump(&rx_file), sent, "received on c1");
    assert_eq!(tcpdump(&tx_file), sent, "sent on c2 (flooded)");
    // pcapng: the port's name and each packet's direction (epb_flags 1:
    // inbound).
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::Block;
    let mut r = pcap_file::pcapng::PcapNgReader::new(std::fs::File::open(&rx_file).unwrap()).unwrap();
    let (mut names, mut flags) = (Vec::new(), Vec::new());
    while let Some(b) = r.next_block() {
        match b.unwrap() {
            Block::InterfaceDescription(i) => names.extend(i.options.iter().filter_map(|o| match o {
                InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                _ => None,
            })),
            Block::EnhancedPacket(p) => flags.extend(p.options.iter().filter_map(|o| match o {
                EnhancedPacketOption::Flags(f) => Some(*f),
                _ => None,
            })),
            _ => {}
        }
    }
    assert_eq!(names, ["c1"]);
    assert_eq!(flags, [1; 5]);

    // A snaplen of 64: 64 bytes kept, the whole length recorded.
    let cut_file = lab.dir.join("cut.pcap");
    let cut =
        capture(&lab, &["c1", "--count", "2", "--snaplen", "64", "--format", "pcap", "-w", cut_file.to_str().unwrap()]);
    wait_captures(&lab, 1);
    send(&lab.ns(1), &sent[3..]);
    finished(cut);
    let kept = tcpdump(&cut_file);
    assert_eq!(kept, sent[3..].iter().map(|f| f[..64].to_vec()).collect::<Vec<_>>());
    let out = Command::new("tcpdump").args(["-n", "-r"]).arg(&cut_file).output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout);
    let lengths: Vec<&str> =
        lines.lines().filter_map(|l| l.split_once(", length ")).map(|(_, n)| n.trim_end_matches([':', ' '])).collect();
    assert_eq!(lengths, ["1000", "1514"], "{lines}");

    // Refused: a port already captured that way, an unknown port, a
    // relative path (over the socket: vswitchctl makes paths absolute).
    let held = capture(&lab, &["c2", "-w", lab.dir.join("held.pcapng").to_str().unwrap()]);
    wait_captures(&lab, 1);
    assert!(lab.ctl_err(&["capture", "c2", "--direction", "tx", "-w", "/tmp/x.pcapng"]).contains("already captured"));
    assert!(lab.ctl_err(&["capture", "nope", "-w", "/tmp/x.pcapng"]).contains("no port `nope`"));
    // The client dies without a word: its capture ends with its connection.
    let mut held = held;
    held.kill().unwrap();
    held.wait().unwrap();
    wait_captures(&lab, 0);
    let out = lab.ctl_output(false, &["capture", "c2", "--duration", "0.3", "-w", "relative.pcapng"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file("relative.pcapng");
    assert!(lab.log().lines().all(|l| !l.contains("panic")), "{}", lab.log());
}

/// `vswitchctl trace` on hand-checked tables: the tables an ICMP packet
/// visits, the entries that match, the output and the megaflow; the same
/// for a real packet (captured from a ping), whose megaflow is the one
/// `dp-flows` shows after the ping; on a bridge without OpenFlow, the MAC
/// table's decision.
#[test]
fn traces_follow_the_tables_and_match_the_datapath() {
    let mut lab = Lab::new("t", 2, None);
    for i in 1..=2 {
        // The captured frame must be the ping, not a router solicitation.
        sh(&["ip", "netns", "exec", &lab.ns(i), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    let of_port = lab.openflow_config();
    lab.start();
    lab.static_arp();
    let target = format!("tcp:127.0.0.1:{of_port}");
    let flows = "table=0,priority=10,in_port=1,actions=goto_table:1\n\
                 table=0,priority=10,in_port=2,actions=goto_table:1\n\
                 table=1,priority=20,ip,nw_dst=10.99.0.2,actions=output:2\n\
                 table=1,priority=20,ip,nw_dst=10.99.0.1,actions=output:1\n\
                 table=1,priority=10,arp,actions=NORMAL\n";
    let file = lab.dir.join("flows");
    std::fs::write(&file, flows).unwrap();
    let st = Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "add-flows", &target]).arg(&file).status().unwrap();
    assert!(st.success());

    let t = lab.ctl(&["trace", "br0", "in_port=c1,icmp,nw_src=10.99.0.1,nw_dst=10.99.0.2,icmp_type=8"]);
    assert_eq!(t["pipeline"], "openflow");
    let steps = t["steps"].as_array().unwrap();
    assert_eq!(steps[0]["table"], 0);
    assert_eq!(steps[0]["match"], "in_port=1");
    assert_eq!(steps[1]["table"], 1);
    assert_eq!(steps[1]["priority"], 20);
    assert_eq!(steps[1]["match"], "eth_type=0x800,ipv4_dst=10.99.0.2");
    assert_eq!(steps[2]["actions"], "output:2");
    assert_eq!(t["actions"], "output:2");
    assert_eq!(t["megaflow"], "in_port=1,eth_type=0x800,ipv4_dst=10.99.0.2");
    let text = lab.ctl_output(false, &["trace", "br0", "in_port=1,icmp,nw_dst=10.99.0.2"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("  1. priority 20, eth_type=0x800,ipv4_dst=10.99.0.2, cookie 0x0"), "{text}");
    assert!(text.contains("Datapath actions: output:2"), "{text}");
    // A destination no flow names: dropped in table 1.
    let miss = lab.ctl(&["trace", "br0", "in_port=c1,icmp,nw_dst=10.99.0.3"]);
    assert_eq!(miss["actions"], "drop(miss in table 1)");

    // Handed to NORMAL: the MAC table's decision follows, as in OVS.
    let arp = lab.ctl(&["trace", "br0", "in_port=c1,arp,dl_dst=ff:ff:ff:ff:ff:ff"]);
    assert_eq!(arp["actions"], "output:NORMAL");
    assert!(arp["normal"]["output"].is_null() && arp["normal"]["decision"] == "flood: broadcast or multicast", "{arp}");
    assert!(arp["text"].as_str().unwrap().ends_with("NORMAL: VLAN 0: flood: broadcast or multicast"), "{arp}");
    assert!(t["normal"].is_null(), "no NORMAL, no MAC table: {t}");

    // A real ping's first frame, captured on c1, traced as bytes.
    let file = lab.dir.join("ping.pcap");
    let cap =
        capture(&lab, &["c1", "--direction", "rx", "--count", "1", "--format", "pcap", "-w", file.to_str().unwrap()]);
    wait_captures(&lab, 1);
    assert_eq!(lab.ping(1, 2, 1, "0.2", None), 1);
    finished(cap);
    let frame = tcpdump(&file).remove(0);
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let real = lab.ctl(&["trace", "br0", "--in-port", "c1", "--packet", &hex]);
    assert_eq!(real["actions"], "output:2");
    let dp = lab.ctl(&["dp-flows", "br0"]);
    let installed: Vec<&str> = dp["flows"].as_array().unwrap().iter().filter_map(|f| f["match"].as_str()).collect();
    assert!(
        installed.contains(&real["megaflow"].as_str().unwrap()),
        "trace {} vs dp-flows {installed:?}",
        real["megaflow"]
    );

    assert!(lab.ctl_err(&["trace", "br0", "icmp,nw_dst=10.99.0.2"]).contains("in_port"));
    assert!(lab.ctl_err(&["trace", "nope", "in_port=1"]).contains("no bridge `nope`"));
    assert!(lab
        .ctl_err(&["trace", "br0", "--in-port", "c1", "--packet", "0a0b"])
        .contains("shorter than an Ethernet header"));
}

/// On a MAC-learning bridge, trace tells where the MAC table sends a
/// frame: a learned destination's port, or a flood.
#[test]
fn traces_on_a_normal_bridge_show_the_mac_table() {
    let mut lab = Lab::new("n", 2, None);
    lab.two_port_config();
    lab.start();
    assert!(lab.reaches(1, 2));
    let known = lab.ctl(&["trace", "br0", &format!("in_port=c2,ip,dl_dst={}", lab.mac(1))]);
    assert_eq!(known["pipeline"], "normal");
    assert_eq!(known["output"], "c1", "{known}");
    let unknown = lab.ctl(&["trace", "br0", "in_port=c2,ip,dl_dst=02:12:34:56:78:9a"]);
    assert!(unknown["output"].is_null() && unknown["decision"].as_str().unwrap().starts_with("flood"), "{unknown}");
}

/// A fixed megaflow limit too small for the traffic: the caches fill up
/// and start over again and again; vswitchd says so once in its log, and
/// `show` and the metrics say so while it lasts, naming what to set.
#[test]
fn a_thrashing_megaflow_cache_is_reported_once() {
    let mut lab = Lab::new("x", 2, None);
    for i in 1..=2 {
        sh(&["ip", "netns", "exec", &lab.ns(i), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    let of_port = free_port();
    let addr = format!("127.0.0.1:{}", free_port());
    lab.write_config_with(
        &format!("metrics = \"{addr}\"\n\n[pmd]\nmegaflow_limit = 4\nemc = \"off\""),
        &format!(
            "[[bridge]]\nname = \"br0\"\nfail_mode = \"secure\"\ncontrollers = [\"ptcp:{of_port}:127.0.0.1\"]\n\n{}{}",
            lab.port(1, "c1", "ofport = 1"),
            lab.port(2, "c2", "ofport = 2")
        ),
    );
    lab.start();
    // Every source MAC its own megaflow: the flow examines all of dl_src.
    let file = lab.dir.join("flows");
    std::fs::write(&file, "priority=20,dl_src=02:ff:ff:ff:ff:ff,actions=drop\npriority=0,actions=output:2\n").unwrap();
    let st = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow13", "add-flows", &format!("tcp:127.0.0.1:{of_port}")])
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());
    let many: Vec<Vec<u8>> = (0..64u8).flat_map(|i| frames(&format!("02:00:00:00:01:{i:02x}"), &[60])).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        send(&lab.ns(1), &many);
        let m = &lab.ctl(&["show"])["bridges"][0]["openflow"]["megaflow"];
        if m["thrashing"] == true {
            let hint = m["hint"].as_str().unwrap();
            assert!(hint.contains("megaflow_limit = \"auto\" (or at least 8)"), "{hint}");
            assert_eq!(m["limit"], 4);
            break;
        }
        assert!(Instant::now() < deadline, "never reported: {m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, _, body) = http_get(&addr, "/metrics").unwrap();
    assert!(body.lines().any(|l| l.starts_with("vswitch_megaflow_thrashing{bridge=\"br0\"} 1")), "{body}");
    for _ in 0..5 {
        send(&lab.ns(1), &many);
        std::thread::sleep(Duration::from_millis(300));
    }
    let said = lab.log().lines().filter(|l| l.contains("megaflow caches filled up")).count();
    assert_eq!(said, 1, "{}", lab.log());
}
