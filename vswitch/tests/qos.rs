//! Port policing with real traffic: UDP from Debian's iperf3 between two
//! namespaces through policed ports of vswitchd, the delivered rate
//! measured at the receiver; colours counted; rates changed live. Needs
//! root and iperf3 (ci/setup installs it).

mod common;

use common::Lab;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

/// UDP payload bytes per datagram (1,514-byte frames).
const PAYLOAD: u64 = 1472;
/// Bytes on the wire a policer counts per datagram (Ethernet, IPv4, UDP).
const FRAME: u64 = PAYLOAD + 8 + 20 + 14;

/// `secs` of UDP at `offered` bits/s (payload) from container `from` to
/// container `to`; the payload rate the receiver got, bits/s.
fn udp_rate(lab: &Lab, from: u32, to: u32, offered: u64, secs: u32) -> f64 {
    udp_rate_of(lab, from, to, offered, secs, PAYLOAD)
}

/// [`udp_rate`] with `payload`-byte datagrams.
fn udp_rate_of(lab: &Lab, from: u32, to: u32, offered: u64, secs: u32, payload: u64) -> f64 {
    let port = common::free_port().to_string();
    let server = Command::new("ip")
        .args(["netns", "exec", &lab.ns(to), "iperf3", "-s", "-1", "-J", "-p", &port])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 (ci/setup installs it)");
    std::thread::sleep(Duration::from_millis(500));
    let client = Command::new("ip")
        .args(["netns", "exec", &lab.ns(from), "iperf3", "-c", &format!("10.99.0.{to}"), "-u", "-p", &port])
        .args(["-b", &offered.to_string(), "-l", &payload.to_string(), "-t", &secs.to_string(), "-J"])
        .output()
        .unwrap();
    assert!(client.status.success(), "iperf3 client: {}", String::from_utf8_lossy(&client.stdout));
    let out = server.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sum = &v["end"]["sum"];
    let got = sum["packets"].as_u64().unwrap() - sum["lost_packets"].as_u64().unwrap();
    let secs = sum["seconds"].as_f64().unwrap();
    (got * payload * 8) as f64 / secs
}

#[test]
fn a_policer_delivers_its_rate_and_counts_colours() {
    let mut lab = Lab::new("qp", 2, None);
    // 20 Mbit/s on what c1 sends into the switch.
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}",
        lab.port(1, "c1", "ingress_rate = 20000000"),
        lab.port(2, "c2", "")
    ));
    lab.start();
    lab.static_arp();
    let want = 20e6 * PAYLOAD as f64 / FRAME as f64;
    let got = udp_rate(&lab, 1, 2, 60_000_000, 4);
    eprintln!("policed at 20 Mbit/s: {got:.0} bits/s of payload, want {want:.0}");
    assert!((got - want).abs() / want < 0.02, "{got:.0} bits/s against {want:.0}");
    let q = lab.ctl(&["qos-show", "c1"]);
    let ing = &q["ports"][0]["ingress"];
    assert_eq!(ing["marker"], "srtcm");
    assert!(ing["green"]["packets"].as_u64() > Some(1000) && ing["red"]["packets"].as_u64() > Some(1000), "{q}");
    assert!(q["ports"][0]["egress"].is_null());
    // Changed live: 5 Mbit/s.
    lab.ctl(&["qos-set", "c1", "ingress_rate=5000000"]);
    let got = udp_rate(&lab, 1, 2, 60_000_000, 3);
    let want = 5e6 * PAYLOAD as f64 / FRAME as f64;
    eprintln!("policed at 5 Mbit/s: {got:.0}, want {want:.0}");
    assert!((got - want).abs() / want < 0.02, "{got:.0} bits/s against {want:.0}");
    // Refused with where and why, nothing changed.
    let e = lab.ctl_err(&["qos-set", "c1", "ingress_rate=5000000", "ingress_burst=100"]);
    assert!(e.contains("smaller than a frame"), "{e}");
    // Removed: the other way is not policed, nor is this one now.
    lab.ctl(&["qos-set", "c1", "ingress_rate=0"]);
    assert!(lab.ctl(&["qos-show"])["ports"].as_array().unwrap().is_empty());
    let got = udp_rate(&lab, 1, 2, 40_000_000, 2);
    assert!(got > 35e6, "unpoliced: {got:.0}");
}

#[test]
fn a_two_rate_packet_policer_passes_its_peak_rate_of_small_frames() {
    let mut lab = Lab::new("qt", 2, None);
    // On what the switch sends to c2: RFC 2698 in packets per second,
    // committed 2,000, peak 3,000.
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}[bridge.port.egress_policer]\nmarker = \"trtcm\"\nunit = \"packets\"\ncir = 2000\ncbs = 20\npir = 3000\npbs = 30\n\n",
        lab.port(1, "c1", ""),
        lab.port(2, "c2", "")
    ));
    lab.start();
    lab.static_arp();
    // 64-byte frames (22 bytes of payload) at 10,000 per second.
    let got = udp_rate_of(&lab, 1, 2, 10_000 * 22 * 8, 4, 22) / (22.0 * 8.0);
    eprintln!("two-rate policer, 3,000 packets/s peak: {got:.0} packets/s delivered");
    assert!((got - 3000.0).abs() / 3000.0 < 0.02, "{got:.0} packets/s");
    // Green at the committed rate, yellow up to the peak, red beyond.
    let q = lab.ctl(&["qos-show", "c2"]);
    let e = &q["ports"][0]["egress"];
    let (g, y, r) = (
        e["green"]["packets"].as_u64().unwrap(),
        e["yellow"]["packets"].as_u64().unwrap(),
        e["red"]["packets"].as_u64().unwrap(),
    );
    let ratio = g as f64 / y as f64;
    assert!((ratio - 2.0).abs() < 0.1, "green {g} yellow {y}: 2:1 expected");
    assert!(r > g, "red {r}: 10,000 offered, 3,000 pass");
}
