//! vswitchd end to end with OpenFlow: containers (namespaces) on AF_PACKET
//! ports forwarded by flows that `ovs-ofctl` loads, the datapath's caches
//! as `dp-flows` shows them, packet-in and packet-out, fast failover, and
//! controllers, fail mode and datapath id changed while running. Needs
//! root; cleans up after itself.

mod common;

use common::Lab;
use serde_json::Value;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

/// The datapath's caches as an operator sees them: `dp-flows` lists each
/// megaflow with its mask, counters, tables and actions; with the
/// exact-match cache on (every key inserted) the repeated pings are EMC
/// hits; a megaflow idle past `megaflow_max_idle_ms` goes away, and what
/// it counted stays in the OpenFlow flow's statistics; `pmd-stats` shows
/// the cycles of each stage.
#[test]
fn dp_flows_show_megaflows_that_expire() {
    let lab = Lab::new("e", 2, None);
    let of_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    lab.write_config(&format!(
        "[pmd]\nemc = \"on\"\nemc_insert_inv_prob = 1\nmegaflow_max_idle_ms = 1000\n\n\
         [[bridge]]\nname = \"br0\"\nfail_mode = \"secure\"\nflow_table_size = 8\ncontrollers = [\"ptcp:{of_port}:127.0.0.1\"]\n\n{}{}",
        lab.port(1, "c1", "ofport = 1"),
        lab.port(2, "c2", "ofport = 2")
    ));
    let mut lab = lab;
    lab.start();
    lab.static_arp();
    let target = format!("tcp:127.0.0.1:{of_port}");
    let ofctl = |args: &[&str]| ofctl(&target, args);
    // `flow_table_size`: table 2 takes 8 flows, the 9th is refused.
    for i in 0..8 {
        ofctl(&["add-flow", &format!("table=2,priority={i},actions=drop")]);
    }
    let full = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow13", "add-flow", &target, "table=2,priority=9,actions=drop"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&full.stderr).contains("OFPFMFC_TABLE_FULL"), "{full:?}");
    ofctl(&["del-flows", "table=2"]);
    ofctl(&["add-flow", "table=0,priority=10,ip,actions=goto_table:1"]);
    ofctl(&["add-flow", "table=1,priority=10,in_port=1,ip,nw_dst=10.99.0.0/16,actions=output:2"]);
    ofctl(&["add-flow", "table=1,priority=10,in_port=2,ip,actions=output:1"]);
    // A more specific route the requests cannot take (prefix tracking).
    ofctl(&["add-flow", "table=1,priority=24,in_port=1,ip,nw_dst=10.99.200.0/24,actions=drop"]);
    assert_eq!(lab.ping(1, 2, 8, "0.1", None), 8);
    let flows = lab.ctl(&["dp-flows", "br0"]);
    let list = flows["flows"].as_array().unwrap();
    let to2 = list
        .iter()
        .find(|f| f["actions"] == "output:2")
        .unwrap_or_else(|| panic!("a megaflow for the echo requests: {flows}"));
    let m = to2["match"].as_str().unwrap();
    // Table 1 looked at in_port and at the destination's first 17 bits:
    // 16 for the /16, and of the /24 (10.99.200/24) only what tells
    // 10.99.0.2 from it (the 17th bit: 200 = 0b11001000), not 24 bits;
    // nothing at the source.
    assert!(m.contains("in_port=1") && m.contains("eth_type=0x800"), "{m}");
    assert!(m.contains("ipv4_dst=10.99.0.0/255.255.128.0"), "the /16 and one bit of the /24: {m}");
    assert!(!m.contains("ipv4_src"), "{m}");
    assert_eq!(to2["tables"], serde_json::json!([0, 1]), "{to2}");
    // 8 echo requests, the upcall's own included (it is replayed from
    // the megaflow it installed), the others through the EMC or not.
    assert_eq!(to2["packets"], 8, "{to2}");
    assert!(list.iter().any(|f| f["actions"] == "output:1"), "replies: {flows}");
    let mf = lab.ctl(&["pmd-stats"])["openflow"][0]["megaflow"].clone();
    assert!(mf["emc_hits"].as_u64().unwrap() >= 12 && mf["emc_inserts"].as_u64().unwrap() >= 2, "{mf}");
    for stage in ["extract", "emc", "megaflow", "upcall", "actions"] {
        assert!(mf["stage_cycles"][stage].as_u64().unwrap() > 0, "{stage}: {mf}");
    }
    // A flow change keeps the megaflows it cannot affect (the same
    // megaflow, older) and removes those whose region it overlaps: a rule
    // for 10.100/16 cannot match the requests' megaflow (10.99/16, the
    // bits both examine differ) but may match the replies' (table 1 did
    // not look at their destination).
    let age = to2["age_ms"].as_u64().unwrap();
    let revalidated = |lab: &Lab| lab.ctl(&["pmd-stats"])["openflow"][0]["megaflow"]["revalidated"].as_u64().unwrap();
    ofctl(&["add-flow", "table=1,priority=50,ip,nw_dst=10.100.0.0/16,actions=drop"]);
    let flows = lab.ctl(&["dp-flows", "br0"]);
    let list = flows["flows"].as_array().unwrap();
    let kept = list.iter().find(|f| f["actions"] == "output:2");
    let kept = kept.unwrap_or_else(|| panic!("kept through a flow-mod that cannot affect it: {flows}"));
    assert!(kept["age_ms"].as_u64().unwrap() >= age && kept["packets"] == 8, "the same megaflow: {kept}");
    assert!(!list.iter().any(|f| f["actions"] == "output:1"), "the replies' megaflow overlaps: {flows}");
    let mf = lab.ctl(&["pmd-stats"])["openflow"][0]["megaflow"].clone();
    assert!(mf["caches_kept"].as_u64().unwrap() >= 1, "{mf}");
    let before = revalidated(&lab);
    ofctl(&["add-flow", "table=1,priority=60,in_port=1,ip,nw_dst=10.99.0.2,actions=output:2"]);
    assert_eq!(revalidated(&lab), before + 1, "the overlapping flow removed the requests' megaflow");
    assert!(!lab.ctl(&["dp-flows", "br0"])["flows"].as_array().unwrap().iter().any(|f| f["actions"] == "output:2"));
    assert_eq!(lab.ping(1, 2, 2, "0.1", None), 2, "the new flow forwards");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !ofctl(&["dump-flows", "table=1,ip,nw_dst=10.99.0.2"]).contains("n_packets=2,") {
        assert!(Instant::now() < deadline, "{}", ofctl(&["dump-flows"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Idle: gone within the idle time and a sweep.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.ctl(&["dp-flows", "br0"])["flows"].as_array().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "megaflows still there: {}", lab.ctl(&["dp-flows", "br0"]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mf = lab.ctl(&["pmd-stats"])["openflow"][0]["megaflow"].clone();
    assert!(mf["expired"].as_u64().unwrap() >= 2 && mf["megaflows"] == 0 && mf["bytes"] == 0, "{mf}");
    let dump = ofctl(&["dump-flows", "table=1,in_port=1,ip,nw_dst=10.99.0.0/16"]);
    assert!(dump.contains("n_packets=8,"), "the flow counted every request: {dump}");
    // Traffic again: a new megaflow.
    assert_eq!(lab.ping(1, 2, 2, "0.1", None), 2);
    assert!(!lab.ctl(&["dp-flows", "br0"])["flows"].as_array().unwrap().is_empty());
    let text = lab.ctl_output(false, &["dp-flows", "br0"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("in_port=1,") && text.contains("actions:output:2"), "{text}");
    // A compiled decision (set_field on eth_dst, dec_ttl, output): a wrong
    // destination MAC makes c2 ignore the requests, its own MAC gets them
    // answered, and TTL 1 expires at dec_ttl.
    let o = Command::new("ip").args(["-n", &lab.ns(2), "-j", "link", "show", "eth0"]).output().unwrap();
    let mac2 = serde_json::from_slice::<Value>(&o.stdout).unwrap()[0]["address"].as_str().unwrap().to_string();
    let rewrite = |mac: &str| {
        ofctl(&["del-flows", "table=1,in_port=1"]);
        ofctl(&[
            "add-flow",
            &format!("table=1,priority=10,in_port=1,ip,actions=set_field:{mac}->eth_dst,dec_ttl,output:2"),
        ]);
    };
    rewrite("02:00:00:00:00:99");
    assert_eq!(lab.ping(1, 2, 2, "0.1", None), 0, "requests to a MAC c2 does not have");
    rewrite(&mac2);
    assert_eq!(lab.ping(1, 2, 3, "0.1", None), 3, "requests rewritten to c2's own MAC");
    let flows = lab.ctl(&["dp-flows", "br0"]);
    // The IPv4 megaflow from c1 (the namespace also sends IPv6 now and
    // then: router and neighbour solicitations, their own megaflows).
    let ipv4_from_c1 = |f: &&Value| {
        let m = f["match"].as_str().unwrap();
        m.contains("in_port=1,") && m.contains("eth_type=0x800")
    };
    let f = flows["flows"].as_array().unwrap().iter().find(ipv4_from_c1).cloned();
    let f = f.unwrap_or_else(|| panic!("{flows}"));
    assert_eq!(f["actions"], format!("set_field:{mac2}->eth_dst,dec_ttl,output:2"), "{f}");
    assert_eq!(f["compiled"], true, "{f}");
    let expired = |lab: &Lab| lab.ctl(&["show"])["bridges"][0]["openflow"]["drop_ttl_expired"].as_u64().unwrap();
    let before = expired(&lab);
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.ns(1), "ping", "-q", "-c", "3", "-i", "0.1", "-W", "1", "-t", "1", "10.99.0.2"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "TTL 1 cannot reach c2");
    assert_eq!(expired(&lab) - before, 3, "each expiry counted");
    // A burst of one flow: its packets are grouped per megaflow (while
    // groups average more than one packet, and tried again now and then),
    // leave in order, and are counted exactly: every datagram c2 got was
    // counted by the OpenFlow flow. The bench's smoke run shows groups of
    // a whole batch at full load.
    let n_packets = || {
        let dump = ofctl(&["dump-flows", "table=1,in_port=1,ip"]);
        let at = dump.find("n_packets=").unwrap_or_else(|| panic!("{dump}")) + "n_packets=".len();
        dump[at..].split(',').next().unwrap().parse::<u64>().unwrap()
    };
    let before = n_packets();
    let mut receiver = Command::new("ip")
        .args(["netns", "exec", &lab.ns(2), "python3", "-c"])
        .arg(
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)\n\
             s.bind(('10.99.0.2', 9999))\n\
             print('ready', flush=True)\n\
             s.settimeout(2)\n\
             seen = []\n\
             try:\n    while True: seen.append(int(s.recv(64)))\n\
             except socket.timeout: pass\n\
             print(len(seen), int(all(a < b for a, b in zip(seen, seen[1:]))))",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(receiver.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let sent = Command::new("ip")
        .args(["netns", "exec", &lab.ns(1), "python3", "-c"])
        .arg(
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range(10000): s.sendto(str(i).encode(), ('10.99.0.2', 9999))",
        )
        .status()
        .unwrap();
    assert!(sent.success());
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(receiver.wait().unwrap().success());
    let got: Vec<u64> = line.split_whitespace().map(|w| w.parse().unwrap()).collect();
    assert!(got[0] >= 5000, "most of the burst reached c2: {line}");
    assert_eq!(got[1], 1, "in the order sent: {line}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while n_packets() - before < got[0] {
        assert!(Instant::now() < deadline, "counted {} of {} received", n_packets() - before, got[0]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(n_packets() - before <= 10_000, "{}", n_packets() - before);
    let mf = lab.ctl(&["pmd-stats"])["openflow"][0]["megaflow"].clone();
    assert!(mf["groups"].as_u64().unwrap() > 0, "grouped per megaflow: {mf}");
}

/// OpenFlow rules the bridge (fail_mode secure): with no flow nothing
/// passes; in_port flows carry pings; NORMAL hands over to L2 switching;
/// a select group spreads; a table-miss flow to the controller makes
/// packet-ins; counters count; flows deleted, traffic stops again.
#[test]
fn openflow_flows_forward_containers() {
    let mut lab = Lab::new("o", 2, None);
    let of_port = lab.openflow_config();
    lab.start();
    lab.static_arp();
    let target = format!("tcp:127.0.0.1:{of_port}");
    let ofctl = |args: &[&str]| ofctl(&target, args);
    assert!(!lab.reaches(1, 2), "secure and no flows: nothing passes");
    let of_show = |k: &str| lab.ctl(&["show"])["bridges"][0]["openflow"][k].as_u64().unwrap();
    assert!(of_show("drop_miss") > 0, "table misses are counted");
    ofctl(&["add-flow", "priority=10,in_port=1,actions=output:2"]);
    ofctl(&["add-flow", "priority=10,in_port=2,actions=output:1"]);
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3, "in_port flows carry pings");
    let dump = ofctl(&["dump-flows"]);
    assert!(dump.lines().filter(|l| l.contains("in_port=")).all(|l| !l.contains("n_packets=0,")), "counters: {dump}");
    // The megaflow cache answered all but the first packet each way, and
    // its counters reach the OpenFlow entries exactly (folded within
    // milliseconds): 5 ICMP echo requests, 5 packets on the icmp flow.
    let mf = |k: &str| lab.ctl(&["show"])["bridges"][0]["openflow"]["megaflow"][k].as_u64().unwrap();
    assert!(mf("upcalls") >= 2 && mf("hits") >= 4, "{}", lab.ctl(&["show"]));
    assert!(mf("megaflows") >= 2 && mf("bytes") > 0, "{}", lab.ctl(&["show"]));
    ofctl(&["add-flow", "priority=20,in_port=1,icmp,actions=output:2"]);
    assert_eq!(lab.ping(1, 2, 5, "0.1", None), 5);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !ofctl(&["dump-flows", "icmp"]).contains("n_packets=5,") {
        assert!(Instant::now() < deadline, "icmp flow counters: {}", ofctl(&["dump-flows"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    let pmd = lab.ctl(&["pmd-stats"]);
    assert!(pmd["openflow"][0]["megaflow"]["hit_rate"].as_f64().unwrap() > 0.0, "{pmd}");
    ofctl(&["del-flows"]);
    assert!(!lab.reaches(1, 2), "flows deleted: nothing passes");
    // NORMAL: the bridge's L2 switching, through a second table.
    ofctl(&["add-flow", "table=0,priority=1,actions=goto_table:3"]);
    ofctl(&["add-flow", "table=3,priority=1,actions=NORMAL"]);
    assert_eq!(lab.ping(2, 1, 3, "0.2", None), 3, "goto_table then NORMAL");
    let fdb = lab.ctl(&["fdb-show", "br0"]);
    assert_eq!(fdb["entries"].as_array().unwrap().len(), 2, "NORMAL learned: {fdb}");
    // A group of type all with one bucket per port, and dec_ttl on the way.
    ofctl(&["del-flows"]);
    ofctl(&["add-group", "group_id=5,type=all,bucket=actions=output:1,bucket=actions=output:2"]);
    ofctl(&["add-flow", "priority=5,actions=group:5"]);
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3, "group all: a copy per bucket (none back to the input port)");
    assert!(ofctl(&["dump-group-stats"]).contains("group_id=5"), "group stats");
    // A meter of 10 packets per second (burst 5) on c1's traffic: of 60
    // pings at 50 per second only about 5 + 12 get through.
    ofctl(&["del-flows"]);
    ofctl(&["add-meter", "meter=1,pktps,burst,bands=type=drop,rate=10,burst_size=5"]);
    ofctl(&["add-flow", "priority=10,in_port=1,actions=meter:1,output:2"]);
    ofctl(&["add-flow", "priority=10,in_port=2,actions=output:1"]);
    let got = lab.ping(1, 2, 60, "0.02", None);
    assert!((5..=30).contains(&got), "metered to ~10 pps: {got} of 60 answered");
    let stats = ofctl(&["meter-stats"]);
    assert!(stats.contains("meter:1") && stats.contains("packet_count:"), "{stats}");
    assert!(of_show("drop_meter") >= 30, "meter drops are counted");
    // MPLS within one pipeline: c2's IPv4 gets a label pushed (MPLS TTL
    // 2), table 1 matches the label, decrements the MPLS TTL and pops: the
    // replies arrive. With MPLS TTL 1 the decrement expires them.
    let mpls = |ttl: u32| {
        ofctl(&["del-flows"]);
        ofctl(&["add-flow", "table=0,priority=10,in_port=1,actions=output:2"]);
        ofctl(&[
            "add-flow",
            &format!("table=0,priority=10,in_port=2,ip,actions=push_mpls:0x8847,set_field:77->mpls_label,set_mpls_ttl:{ttl},goto_table:1"),
        ]);
        ofctl(&["add-flow", "table=0,priority=5,in_port=2,actions=output:1"]);
        ofctl(&["add-flow", "table=1,priority=10,mpls,mpls_label=77,actions=dec_mpls_ttl,pop_mpls:0x0800,output:1"]);
    };
    mpls(2);
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3, "replies pushed into MPLS, matched by label, popped");
    assert!(ofctl(&["dump-flows", "table=1"]).contains("n_packets=3,"), "table 1 matched the labelled replies");
    mpls(1);
    assert_eq!(lab.ping(1, 2, 2, "0.2", None), 0, "MPLS TTL 1 expires at dec_mpls_ttl");
    assert!(of_show("drop_ttl_expired") >= 2, "TTL expiries are counted");
    // A table-miss flow to the controller: packet-ins, counted by the
    // controller side (ovs-ofctl monitor would need a terminal; the
    // switch's counters and the absence of forwarding show it here).
    ofctl(&["del-flows"]);
    ofctl(&["add-flow", "priority=0,actions=CONTROLLER:128"]);
    assert!(!lab.reaches(1, 2), "packets go to the controller, not to c2");
    let dump = ofctl(&["dump-flows"]);
    assert!(!dump.contains("n_packets=0,"), "the table-miss flow counted them: {dump}");
}

/// A controller written here with the ofproto codec: it installs a
/// table-miss flow to itself and answers every packet-in with a
/// packet-out to the other port, so the containers reach each other only
/// through the controller (reactive control).
#[test]
fn packet_in_and_packet_out_make_a_reactive_switch() {
    use ofproto::ofp::action::port;
    use ofproto::ofp::msg::{FlowMod, FlowModCommand, PacketOut, NO_BUFFER};
    use ofproto::ofp::{frame_len, Action, Field, Instruction, Match, Message};
    use std::io::{Read, Write};
    let mut lab = Lab::new("q", 2, None);
    let of_port = lab.openflow_config();
    lab.start();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", of_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    s.write_all(&Message::Hello { versions: vec![4] }.encode(1)).unwrap();
    let to_controller =
        vec![Instruction::ApplyActions(vec![Action::Output { port: port::CONTROLLER, max_len: 0xffff }])];
    let miss = FlowMod::new(FlowModCommand::Add, 0, 0, Match::any(), to_controller);
    s.write_all(&Message::FlowMod(miss).encode(2)).unwrap();
    // As a controller does: a barrier, so the flow is in place before
    // traffic.
    s.write_all(&Message::BarrierRequest.encode(3)).unwrap();
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    let deadline = Instant::now() + Duration::from_secs(5);
    'barrier: loop {
        assert!(Instant::now() < deadline, "no barrier reply");
        if let Ok(n) = s.read(&mut chunk) {
            buf.extend_from_slice(&chunk[..n]);
        }
        while let Some(n) = frame_len(&buf).filter(|n| buf.len() >= *n) {
            let f: Vec<u8> = buf.drain(..n).collect();
            if let Ok((_, Message::BarrierReply)) = Message::decode(&f) {
                break 'barrier;
            }
        }
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let controller = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut buf, mut chunk, mut packet_ins) = (Vec::new(), [0u8; 65536], 0u32);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = s.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                }
                while let Some(n) = frame_len(&buf).filter(|n| buf.len() >= *n) {
                    let f: Vec<u8> = buf.drain(..n).collect();
                    match Message::decode(&f).unwrap().1 {
                        Message::PacketIn(pi) => {
                            packet_ins += 1;
                            assert_eq!(pi.reason, 0, "a table-miss flow's packet-in says no_match");
                            let in_port = u32::try_from(pi.match_.get(Field::InPort).unwrap().value_u64()).unwrap();
                            let po = PacketOut {
                                buffer_id: NO_BUFFER,
                                in_port,
                                actions: vec![Action::Output { port: 3 - in_port, max_len: 0 }],
                                data: pi.data,
                            };
                            s.write_all(&Message::PacketOut(po).encode(9)).unwrap();
                        }
                        Message::EchoRequest(d) => s.write_all(&Message::EchoReply(d).encode(0)).unwrap(),
                        Message::Error { err_type, code, .. } => panic!("switch error {err_type}/{code}"),
                        _ => {}
                    }
                }
            }
            packet_ins
        })
    };
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3, "pings through the controller");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let packet_ins = controller.join().unwrap();
    assert!(packet_ins >= 8, "ARP both ways and 3 echo requests and replies: {packet_ins} packet-ins");
}

/// A fast-failover group follows link state: c1's traffic takes the first
/// bucket whose watched port is live (c2); when c2's veth loses its carrier
/// the port shows LINK_DOWN and the group fails over to c3, a standby with
/// c2's addresses; when the carrier is back, so is c2.
#[test]
fn fast_failover_follows_link_state() {
    let mut lab = Lab::new("v", 3, None);
    let of_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\nfail_mode = \"secure\"\ncontrollers = [\"ptcp:{of_port}:127.0.0.1\"]\n\n{}{}{}",
        lab.port(1, "c1", "ofport = 1"),
        lab.port(2, "c2", "ofport = 2"),
        lab.port(3, "c3", "ofport = 3")
    ));
    lab.start();
    let (mac2, ns3) = (lab.mac(2), lab.ns(3));
    common::sh(&["ip", "-n", &ns3, "link", "set", "eth0", "address", &mac2]);
    common::sh(&["ip", "-n", &ns3, "addr", "add", "10.99.0.2/24", "dev", "eth0"]);
    lab.static_arp();
    let target = format!("tcp:127.0.0.1:{of_port}");
    let ofctl = |args: &[&str]| ofctl(&target, args);
    // A controller session of our own hears each link change as a
    // PORT_STATUS MODIFY with the port's new state.
    let mut mon = std::net::TcpStream::connect(("127.0.0.1", of_port)).unwrap();
    mon.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    mon.write_all(&ofproto::ofp::Message::Hello { versions: vec![4] }.encode(1)).unwrap();
    let mut monbuf = Vec::new();
    let mut next_modify = |t: &mut std::net::TcpStream| {
        let ps = common::next_port_status(t, &mut monbuf, Some(2));
        (ps.desc.name, ps.desc.state)
    };
    ofctl(&[
        "add-group",
        "group_id=1,type=fast_failover,bucket=watch_port:2,actions=output:2,bucket=watch_port:3,actions=output:3",
    ]);
    ofctl(&["add-flow", "in_port=1,actions=group:1"]);
    ofctl(&["add-flow", "in_port=2,actions=output:1"]);
    ofctl(&["add-flow", "in_port=3,actions=output:1"]);
    let tx = |name: &str| {
        let show = lab.ctl(&["show"]);
        show["bridges"][0]["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["tx_packets"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3, "through the first bucket");
    let (c2, c3) = (tx("c2"), tx("c3"));
    assert!(c2 >= 3, "c2 got them: {c2}");
    // Sets c2's link and waits until OpenFlow's port description shows it.
    let set_link = |up: bool| {
        common::sh(&["ip", "link", "set", &lab.host(2), if up { "up" } else { "down" }]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while ofctl(&["dump-ports-desc"]).contains("LINK_DOWN") == up {
            assert!(Instant::now() < deadline, "c2's link never went up={up}: {}", ofctl(&["dump-ports-desc"]));
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    set_link(false);
    assert_eq!(next_modify(&mut mon), ("c2".to_string(), 1), "OFPPR_MODIFY, OFPPS_LINK_DOWN (and not LIVE)");
    std::thread::sleep(Duration::from_millis(500));
    let c2 = tx("c2");
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3, "c3 answers in c2's place");
    assert!(tx("c3") >= c3 + 3, "the second bucket took them");
    assert!(tx("c2") < c2 + 3, "not the first: {} then {}", c2, tx("c2"));
    // Carrier back: back to c2. (Counted on c3, which stays up: an
    // AF_PACKET port's tx counter is unreliable after its interface was
    // down, as DPDK's driver counts a failed kick as nothing sent.)
    set_link(true);
    assert_eq!(next_modify(&mut mon), ("c2".to_string(), 4), "OFPPR_MODIFY, link up: OFPPS_LIVE, no LINK_DOWN");
    std::thread::sleep(Duration::from_millis(500));
    let c3 = tx("c3");
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3, "answered again");
    assert!(tx("c3") < c3 + 3, "no longer through c3: {c3} then {}", tx("c3"));
}

/// A bridge's controllers, fail mode and datapath id change while it
/// runs, through vswitchctl and through a reload: each change is in force
/// when the answer comes (traffic and `ovs-ofctl` show it); a refused
/// change (address in use, bad datapath id) leaves everything as it was;
/// a connect target gets the switch's HELLO, is closed when the datapath id
/// changes (and comes back), and is closed for good when it is dropped.
#[test]
fn openflow_settings_change_while_running() {
    use std::io::Read;
    let mut lab = Lab::new("s", 2, None);
    lab.two_port_config();
    lab.start();
    assert!(lab.reaches(1, 2), "no controllers: NORMAL switching");
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let p = free();
    let listen = format!("ptcp:{p}:127.0.0.1");
    let target = format!("tcp:127.0.0.1:{p}");
    let r = lab.ctl(&["set-controller", "br0", &listen]);
    assert_eq!(r["controllers"], serde_json::json!([listen]), "{r}");
    assert_eq!(r["fail_mode"], "standalone");
    assert!(lab.reaches(1, 2), "standalone, no controller connected: still NORMAL");
    lab.ctl(&["set-fail-mode", "br0", "secure"]);
    assert!(!lab.reaches(1, 2), "secure with an empty table: nothing passes");
    ofctl(&target, &["add-flow", "priority=1,actions=NORMAL"]);
    assert!(lab.reaches(1, 2), "the flow a controller added forwards");

    // The datapath id: derived from the name, then set.
    let dpid = lab.ctl(&["controllers"])["bridges"][0]["datapath_id"].as_str().unwrap().to_string();
    assert!(ofctl(&target, &["show"]).contains(&format!("dpid:{dpid}")), "{dpid}");
    let r = lab.ctl(&["set-datapath-id", "br0", "0xbeef"]);
    assert_eq!(r["datapath_id"], "000000000000beef", "{r}");
    assert!(ofctl(&target, &["show"]).contains("dpid:000000000000beef"));

    // Refused changes keep everything.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_spec = format!("ptcp:{}:127.0.0.1", busy.local_addr().unwrap().port());
    let e = lab.ctl_err(&["set-controller", "br0", &listen, &busy_spec]);
    assert!(e.contains(&busy_spec) && e.contains("nothing was applied"), "{e}");
    let e = lab.ctl_err(&["set-datapath-id", "br0", "xyz"]);
    assert!(e.contains("`bridge[0].datapath_id`") && e.contains("nothing was applied"), "{e}");
    let e = lab.ctl_err(&["set-controller", "br0", "tcp:nowhere"]);
    assert!(e.contains("`bridge[0].controllers[0]`"), "{e}");
    assert!(ofctl(&target, &["show"]).contains("dpid:000000000000beef"), "still listening, same id");
    assert!(lab.reaches(1, 2));

    // A connect target: the switch says HELLO; a new datapath id closes
    // the connection and the switch connects again.
    let ctl = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let connect = format!("tcp:127.0.0.1:{}", ctl.local_addr().unwrap().port());
    lab.ctl(&["set-controller", "br0", &listen, &connect]);
    let accept = || {
        let (mut c, _) = ctl.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut hello = [0u8; 8];
        c.read_exact(&mut hello).unwrap();
        assert_eq!((hello[0], hello[1]), (4, 0), "an OpenFlow 1.3 HELLO: {hello:?}");
        c
    };
    // Closed within 3 s (long before the 15 s after which a silent peer
    // is dropped; echo requests may come first).
    let closed = |c: &mut std::net::TcpStream| {
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + Duration::from_secs(3);
        c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        while Instant::now() < deadline {
            match c.read(&mut buf) {
                Ok(0) => return true,
                Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return true
                }
                _ => {}
            }
        }
        false
    };
    let mut c = accept();
    assert_eq!(lab.ctl(&["controllers"])["bridges"][0]["controllers"].as_array().unwrap().len(), 2);
    lab.ctl(&["set-datapath-id", "br0", "1234"]);
    assert!(closed(&mut c), "a new datapath id closes the controller's connection");
    let mut c = accept();
    lab.ctl(&["set-controller", "br0", &listen]);
    assert!(closed(&mut c), "a dropped target's connection is closed");
    ctl.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(ctl.accept().is_err(), "a dropped target is not connected again");

    // No controllers: NORMAL again, and nobody listens.
    ofctl(&target, &["del-flows"]);
    assert!(!lab.reaches(1, 2));
    let r = lab.ctl(&["del-controller", "br0"]);
    assert_eq!(r["controllers"], serde_json::json!([]), "{r}");
    assert!(lab.reaches(1, 2), "without controllers the bridge switches by itself");
    assert!(std::net::TcpStream::connect(("127.0.0.1", p)).is_err(), "the listener is closed");

    // The file: controllers and fail_mode applied by reload, live.
    let p2 = free();
    let good = std::fs::read_to_string(lab.config_path()).unwrap();
    std::fs::write(
        lab.config_path(),
        good.replace(
            "name = \"br0\"\n",
            &format!("name = \"br0\"\nfail_mode = \"secure\"\ncontrollers = [\"ptcp:{p2}:127.0.0.1\"]\n"),
        ),
    )
    .unwrap();
    lab.ctl(&["reload"]);
    assert!(!lab.reaches(1, 2), "secure from the file, no flows");
    let target2 = format!("tcp:127.0.0.1:{p2}");
    ofctl(&target2, &["add-flow", "priority=1,actions=NORMAL"]);
    assert!(lab.reaches(1, 2));
    let c = lab.ctl(&["controllers"]);
    assert_eq!(c["bridges"][0]["fail_mode"], "secure", "{c}");
    assert!(lab.log().lines().all(|l| !l.contains("panic")), "{}", lab.log());
}

/// `ovs-ofctl -O OpenFlow13 COMMAND TARGET ARGS...`, which must succeed;
/// its output.
fn ofctl(target: &str, args: &[&str]) -> String {
    let o = Command::new("ovs-ofctl").args(["-O", "OpenFlow13", args[0], target]).args(&args[1..]).output().unwrap();
    assert!(o.status.success(), "ovs-ofctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}
