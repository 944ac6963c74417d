//! Egress shaping with real traffic: TCP and UDP from Debian's iperf3
//! between namespaces through a shaped port of vswitchd, measured at the
//! receiver: the port's rate, guarantees shared 2:1, an idle class's
//! bandwidth borrowed to the ceiling, strict priority, `set_queue` from
//! `ovs-ofctl` with its queue statistics, and a live rate change that
//! keeps what is queued. Needs root, iperf3 and ovs-ofctl (ci/setup).

mod common;

use common::Lab;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TCP payload per full frame (MTU 1500 with timestamps: 1448 of 1514).
const TCP_SHARE: f64 = 1448.0 / 1514.0;

/// `ip netns exec NS` with the command kept off the PMD thread's core (the
/// last one, vswitchd's default): iperf3 preempting the PMD thread would
/// stall the scheduler, which is not what these tests measure.
fn in_ns(lab: &Lab, i: u32) -> Command {
    let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.ns(i)]);
    if n >= 2 {
        c.args(["taskset", "-c", &format!("0-{}", n - 2)]);
    }
    c
}

fn server(lab: &Lab, on: u32, port: &str) -> Child {
    in_ns(lab, on)
        .args(["iperf3", "-s", "-1", "-J", "-p", port])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 (ci/setup installs it)")
}

fn client(lab: &Lab, from: u32, to: u32, port: &str, extra: &[&str]) -> Child {
    in_ns(lab, from)
        .args(["iperf3", "-c", &format!("10.99.0.{to}"), "-p", port, "-J"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// What an iperf3 server measured: received bits/s (TCP goodput, or UDP
/// payload), and for UDP the datagrams lost and sent.
fn received(s: Child) -> (f64, u64, u64) {
    let out = s.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let end = &v["end"];
    let sum = &end["sum"];
    (
        end["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0),
        sum["lost_packets"].as_u64().unwrap_or(0),
        sum["packets"].as_u64().unwrap_or(0),
    )
}

/// Runs the given flows at once (from, to, client options); what each
/// server received.
fn flows(lab: &Lab, list: &[(u32, u32, Vec<&str>)]) -> Vec<(f64, u64, u64)> {
    let ports: Vec<String> = list.iter().map(|_| common::free_port().to_string()).collect();
    let servers: Vec<Child> = list.iter().zip(&ports).map(|((_, to, _), p)| server(lab, *to, p)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let clients: Vec<Child> =
        list.iter().zip(&ports).map(|((from, to, extra), p)| client(lab, *from, *to, p, extra)).collect();
    for c in clients {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "iperf3 client: {}", String::from_utf8_lossy(&out.stdout));
    }
    servers.into_iter().map(received).collect()
}

fn within(got: f64, want: f64, tol: f64, what: &str) {
    eprintln!("{what}: {:.3} Mbit/s, want {:.3} (within {:.0}%)", got / 1e6, want / 1e6, tol * 100.0);
    assert!((got - want).abs() <= want * tol, "{what}: {got:.0} bits/s against {want:.0}");
}

#[test]
fn tcp_goodput_holds_the_shaped_rate_from_10_mbits_to_1_gbits() {
    let mut lab = Lab::new("sr", 2, None);
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}[bridge.port.shaper]\nrate = 10000000\nburst = 100000\n\n",
        lab.port(1, "c1", ""),
        lab.port(2, "c2", "")
    ));
    lab.start();
    lab.static_arp();
    // Bursts of 10 ms: the PMD thread shares its core with iperf3 here, and
    // a scheduler that is not run for longer than its burst loses rate (on
    // a dedicated core the default, 1 ms, holds).
    for rate in [10_000_000u64, 100_000_000, 1_000_000_000] {
        if rate != 10_000_000 {
            // Changed live.
            lab.ctl(&["qos-set", "c2", &format!("shaper={{\"rate\":{rate},\"burst\":{}}}", rate / 100)]);
        }
        // A run that delivers less than the rate may be the host's CPU
        // (iperf3, the kernel and the PMD thread share two cores): up to
        // three runs for one within 5%. More than the rate fails at once.
        // At 1 Gbit/s this host may not carry that much TCP at all: the
        // goal is then what the same path carries unshaped (measured
        // first), which the shaper must not take away.
        let mut want = rate as f64 * TCP_SHARE;
        let what = format!("TCP through {} Mbit/s", rate / 1_000_000);
        if rate >= 1_000_000_000 {
            lab.ctl(&["qos-set", "c2", "shaper=none"]);
            let carried = flows(&lab, &[(1, 2, vec!["-t", "5", "-O", "1"])])[0].0;
            eprintln!("unshaped, this path carries {:.3} Mbit/s of TCP", carried / 1e6);
            lab.ctl(&["qos-set", "c2", &format!("shaper={{\"rate\":{rate},\"burst\":{}}}", rate / 100)]);
            want = want.min(carried);
        }
        let mut got = 0.0;
        for _ in 0..3 {
            got = flows(&lab, &[(1, 2, vec!["-t", "5", "-O", "1"])])[0].0;
            eprintln!("{what}: {:.3} Mbit/s, want {:.3}", got / 1e6, want / 1e6);
            let cap = rate as f64 * TCP_SHARE;
            assert!(got <= cap * 1.05, "{what}: {got:.0} bits/s, above {cap:.0}");
            if got >= want * 0.95 {
                break;
            }
        }
        within(got, want, 0.05, &what);
    }
    // What qos-show says under load: the class ran at the port's rate.
    let port = common::free_port().to_string();
    let s = server(&lab, 2, &port);
    std::thread::sleep(Duration::from_millis(300));
    let c = client(&lab, 1, 2, &port, &["-t", "3"]);
    std::thread::sleep(Duration::from_millis(2000));
    let show = lab.ctl(&["qos-show", "c2"]);
    let out = lab.ctl_output(false, &["qos-show", "c2"]);
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    c.wait_with_output().unwrap();
    received(s);
    let class = &show["ports"][0]["shaper"]["classes"][0];
    let now = class["rate_achieved"].as_f64().unwrap();
    assert!(now > 0.8e9 && now < 1.02e9, "rate achieved under load: {class}");
    assert!(class["delay_ns"]["p99"].as_u64() > Some(0), "{class}");
}

#[test]
fn guarantees_share_two_to_one_and_an_idle_class_is_borrowed_from() {
    let mut lab = Lab::new("sg", 3, None);
    // What c3 receives: 30 Mbit/s, c1's frames guaranteed 20 (ceiling
    // 25), c2's 10 (ceiling 30).
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}{}[bridge.port.shaper]\nrate = 30000000\n\n\
         [[bridge.port.shaper.class]]\nid = 1\nrate = 20000000\nceil = 25000000\nin_ports = [\"c1\"]\n\n\
         [[bridge.port.shaper.class]]\nid = 2\nrate = 10000000\nin_ports = [\"c2\"]\n\n",
        lab.port(1, "c1", ""),
        lab.port(2, "c2", ""),
        lab.port(3, "c3", "")
    ));
    lab.start();
    lab.static_arp();
    let t = vec!["-t", "6", "-O", "2"];
    let both = flows(&lab, &[(1, 3, t.clone()), (2, 3, t.clone())]);
    let share = both[0].0 / both[1].0;
    eprintln!("c1 {:.3} Mbit/s, c2 {:.3} Mbit/s: {share:.3} to 1", both[0].0 / 1e6, both[1].0 / 1e6);
    assert!((share - 2.0).abs() <= 0.1, "c1:c2 {share:.3}, want 2 within 5%");
    within(both[0].0 + both[1].0, 30e6 * TCP_SHARE, 0.05, "both together");
    // c2 alone borrows c1's unused guarantee up to the port's rate; c1
    // alone up to its ceiling of 25.
    let alone = flows(&lab, &[(2, 3, t.clone())]);
    within(alone[0].0, 30e6 * TCP_SHARE, 0.05, "c2 alone");
    let alone = flows(&lab, &[(1, 3, t)]);
    within(alone[0].0, 25e6 * TCP_SHARE, 0.05, "c1 alone, to its ceiling");
}

#[test]
fn strict_priority_holds_under_saturation() {
    let mut lab = Lab::new("sp", 3, None);
    // One class of 20 Mbit/s: EF (DSCP 46) first, the rest after.
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}{}[bridge.port.shaper]\nrate = 20000000\n\n\
         [[bridge.port.shaper.class]]\nid = 0\nrate = 20000000\n\n\
         [[bridge.port.shaper.class.queue]]\npriority = 0\ndscp = [46]\n\n\
         [[bridge.port.shaper.class.queue]]\npriority = 1\n\n",
        lab.port(1, "c1", ""),
        lab.port(2, "c2", ""),
        lab.port(3, "c3", "")
    ));
    lab.start();
    lab.static_arp();
    // 8 Mbit/s of EF against 40 of best effort into 20.
    let ef = vec!["-u", "-b", "8000000", "-l", "1000", "-t", "4", "-S", "184"];
    let be = vec!["-u", "-b", "40000000", "-l", "1000", "-t", "4"];
    let got = flows(&lab, &[(1, 3, ef), (2, 3, be)]);
    eprintln!("EF {:?}, best effort {:?}", got[0], got[1]);
    // EF sent all it meant to (8 Mbit/s of 1,000-byte datagrams for 4 s)
    // and lost nothing. (iperf3's own rate figure depends on its timing,
    // a little under 8 on this host.)
    assert!(got[0].2 >= 3_900, "EF sent {} datagrams of 4,000", got[0].2);
    assert!(got[0].1 * 1000 <= got[0].2, "EF lost {} of {} datagrams", got[0].1, got[0].2);
    // Best effort gets the rest of the 20 (frames are 1042 bytes for 1000
    // of payload), not more.
    let rest = 20e6 * 1000.0 / 1042.0 - 8e6;
    within(got[1].0, rest, 0.06, "best effort gets the rest");
}

fn rx_packets(lab: &Lab, i: u32) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(i), "cat", "/sys/class/net/eth0/statistics/rx_packets"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_live_rate_change_takes_effect_at_once_and_loses_nothing_queued() {
    let mut lab = Lab::new("sl", 2, None);
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}[bridge.port.shaper]\nrate = 1000000\n\n",
        lab.port(1, "c1", ""),
        lab.port(2, "c2", "")
    ));
    lab.start();
    lab.static_arp();
    // 200 datagrams of 1,000 bytes at once: at 1 Mbit/s they take 1.7 s,
    // so most wait in the queue (256 deep).
    let before = rx_packets(&lab, 2);
    let st = Command::new("ip")
        .args(["netns", "exec", &lab.ns(1), "bash", "-c"])
        .arg(
            "p=$(head -c 1000 /dev/zero | tr '\\0' x); for i in $(seq 200); do echo -n $p > /dev/udp/10.99.0.2/9; done",
        )
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    let early = rx_packets(&lab, 2) - before;
    assert!(early < 100, "{early} of 200 already through at 1 Mbit/s");
    let t = Instant::now();
    lab.ctl(&["qos-set", "c2", "shaper={\"rate\":100000000}"]);
    let applied = t.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let got = rx_packets(&lab, 2) - before;
    eprintln!("{early} through before the change, {got} within 100 ms after it (applied in {applied:?})");
    assert!(got >= 200, "{got} of 200 arrived");
    let show = lab.ctl(&["qos-show", "c2"]);
    let s = &show["ports"][0]["shaper"];
    assert_eq!(s["classes"][0]["drops"]["queue_full"], 0, "{s}");
    assert_eq!(s["class_removed_drops"], 0, "{s}");
    let sent = s["classes"][0]["packets"].as_u64().unwrap();
    assert!(sent >= 200, "{s}");
    // A reload that changes only the shaper changes it in place: the port
    // stays open, the class keeps its counters.
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}[bridge.port.shaper]\nrate = 5000000\n\n",
        lab.port(1, "c1", ""),
        lab.port(2, "c2", "")
    ));
    let r = lab.ctl(&["reload"]);
    assert_eq!(r["changed"], serde_json::json!(["br0/c2"]), "{r}");
    assert!(r["reopened"].as_array().is_none_or(Vec::is_empty), "{r}");
    let s = &lab.ctl(&["qos-show", "c2"])["ports"][0]["shaper"];
    assert_eq!(s["rate"], 5_000_000, "{s}");
    assert_eq!(s["classes"][0]["packets"].as_u64(), Some(sent), "{s}");
    // A bad one is refused with where and why, the running one kept.
    let e = lab.ctl_err(&["qos-set", "c2", "shaper={\"rate\":5000000,\"class\":[{\"id\":1,\"rate\":9000000}]}"]);
    assert!(e.contains("shaper.class[0].rate") && e.contains("above the port's rate"), "{e}");
    assert_eq!(lab.ctl(&["qos-show", "c2"])["ports"][0]["shaper"]["rate"], 5_000_000);
}

#[test]
fn set_queue_steers_flows_and_ovs_ofctl_reads_the_queues() {
    let mut lab = Lab::new("sq", 2, None);
    let of_port = common::free_port();
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\nfail_mode = \"secure\"\ncontrollers = [\"ptcp:{of_port}:127.0.0.1\"]\n\n{}{}\
         [bridge.port.shaper]\nrate = 100000000\n\n\
         [[bridge.port.shaper.class]]\nid = 1\nrate = 60000000\n\n\
         [[bridge.port.shaper.class]]\nid = 7\nrate = 20000000\nceil = 50000000\n\n",
        lab.port(1, "c1", "ofport = 1"),
        lab.port(2, "c2", "ofport = 2")
    ));
    lab.start();
    lab.static_arp();
    let target = format!("tcp:127.0.0.1:{of_port}");
    let ofctl = |args: &[&str]| {
        let o = Command::new("ovs-ofctl").args(["-O", "OpenFlow13"]).args(args).output().expect("ovs-ofctl");
        assert!(o.status.success(), "ovs-ofctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // ICMP to queue 7, other IPv4 to queue 1 (explicitly), nothing else.
    ofctl(&["add-flow", &target, "priority=20,in_port=1,icmp,actions=set_queue:7,output:2"]);
    ofctl(&["add-flow", &target, "priority=10,in_port=1,ip,actions=set_queue:1,output:2"]);
    ofctl(&["add-flow", &target, "in_port=2,ip,actions=output:1"]);
    assert_eq!(lab.ping(1, 2, 20, "0.02", Some(1000)), 20);
    let st = Command::new("ip")
        .args(["netns", "exec", &lab.ns(1), "bash", "-c"])
        .arg("for i in $(seq 10); do echo -n x > /dev/udp/10.99.0.2/9; done")
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(200));
    let stats = ofctl(&["queue-stats", &target]);
    eprintln!("{stats}");
    let pkts = |q: u32| -> u64 {
        let line =
            stats.lines().find(|l| l.contains(&format!("port 2 queue {q}:"))).unwrap_or_else(|| panic!("{stats}"));
        let at = line.find("pkts=").unwrap() + 5;
        line[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert_eq!(pkts(7), 20, "the pings went to queue 7");
    assert_eq!(pkts(1), 10, "the datagrams went to queue 1");
    // One queue; a queue that is not there is an error.
    assert!(ofctl(&["queue-stats", &target, "2", "7"]).contains("queue 7"));
    let o = Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "queue-stats", &target, "2", "9"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("OFPQOFC_BAD_QUEUE"), "{text}");
    // The queues' rates as tenths of a percent of the port's.
    let cfg = ofctl(&["queue-get-config", &target, "2"]);
    eprintln!("{cfg}");
    assert!(cfg.contains("queue 7") && cfg.contains("min_rate:20.0%") && cfg.contains("max_rate:50.0%"), "{cfg}");
}
