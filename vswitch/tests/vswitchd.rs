//! vswitchd end to end: two containers (namespaces) on AF_PACKET ports
//! ping each other through L2 switching; vswitchctl shows counters and
//! learned MACs; the control socket answers bad requests with JSON-RPC
//! errors and keeps serving; SIGTERM stops it cleanly; a bad config file is
//! refused with where and why. Needs root; cleans up after itself.

mod common;

use common::Lab;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn containers_ping_through_vswitchd() {
    let mut lab = Lab::new("p", 2, None);
    lab.two_port_config();
    lab.start();
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3, "ping through vswitchd");
    let show = lab.ctl(&["show"]);
    let ports = show["bridges"][0]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    for p in ports {
        assert!(p["rx_packets"].as_u64().unwrap() >= 3, "{p}");
        assert!(p["tx_packets"].as_u64().unwrap() >= 3, "{p}");
        assert_eq!(p["link"], "up");
    }
    assert_eq!(show["bridges"][0]["name"], "br0");
    // Both containers' MACs were learned, each on its own port.
    let mac_of = |i: u32| {
        let out = Command::new("ip").args(["-n", &lab.ns(i), "-j", "link", "show", "eth0"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["address"].as_str().unwrap().to_string()
    };
    let fdb = lab.ctl(&["fdb-show", "br0"]);
    let entries: Vec<(String, String)> = fdb["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["mac"].as_str().unwrap().to_string(), e["port"].as_str().unwrap().to_string()))
        .collect();
    assert!(entries.contains(&(mac_of(1), "c1".into())), "{entries:?}");
    assert!(entries.contains(&(mac_of(2), "c2".into())), "{entries:?}");
    let pmd = lab.ctl(&["pmd-stats"]);
    assert!(pmd["pmds"][0]["packets"].as_u64().unwrap() >= 6);
    assert_eq!(lab.ctl(&["version"])["dpdk"].as_str().unwrap().split(' ').next(), Some("DPDK"));

    // Bad requests get JSON-RPC errors on one connection that keeps working.
    let s = std::os::unix::net::UnixStream::connect(lab.sock()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut ask = |line: &str| -> Value {
        w.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = String::new();
        r.read_line(&mut out).unwrap();
        serde_json::from_str(&out).unwrap()
    };
    assert_eq!(ask("{oops")["error"]["code"], -32700);
    assert_eq!(ask(r#"{"jsonrpc":"2.0","method":"frobnicate","id":2}"#)["error"]["code"], -32601);
    assert_eq!(ask(r#"{"jsonrpc":"2.0","method":"fdb-show","params":{"bridge":5},"id":3}"#)["error"]["code"], -32602);
    assert_eq!(
        ask(r#"{"jsonrpc":"2.0","method":"fdb-show","params":{"bridge":"nope"},"id":4}"#)["error"]["code"],
        -32000
    );
    assert_eq!(ask(r#"{"jsonrpc":"2.0","id":5}"#)["error"]["code"], -32600);
    let v = ask(r#"{"jsonrpc":"2.0","method":"version","id":6}"#);
    assert_eq!(v["id"], 6);
    assert!(v["result"]["vswitchd"].is_string());

    // vswitchctl reports errors in words, with a non-zero exit.
    let out = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(["--socket", &lab.sock(), "fdb-show", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bridge `nope`"));

    // SIGTERM: a clean stop, the socket removed.
    let mut d = lab.daemon.take().unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = d.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "vswitchd did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(!std::path::Path::new(&lab.sock()).exists());
}

#[test]
fn a_bad_config_is_refused_with_where_and_why() {
    let dir = std::env::temp_dir().join(format!("vswitchd-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[[bridge]]\nname = \"br0\"\n\n[[bridge.port]]\nname = \"p\"\ntype = \"afxdp\"\niface = \"x\"\nvlan_mode = \"access\"\ntag = 9999\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vswitchd")).arg("--config").arg(&cfg).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:9:7: `bridge[0].port[0].tag`: VLAN 9999 is outside 1-4094"), "{err}");
}

/// Three containers: c1 and c2 in access VLAN 10, c3 in access VLAN 20.
/// c1 reaches c2; nobody reaches c3; learned MACs age out of `fdb-show`
/// after `mac_aging_s`.
#[test]
fn access_vlans_isolate_containers_and_macs_age_out() {
    let mut lab = Lab::new("v", 3, None);
    let port = |i: u32, vlan: u16| lab.port(i, &format!("c{i}"), &format!("vlan_mode = \"access\"\ntag = {vlan}\n"));
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\nmac_aging_s = 2\n\n{}{}{}",
        port(1, 10),
        port(2, 10),
        port(3, 20)
    ));
    lab.start();
    assert!(lab.reaches(1, 2), "same access VLAN: reachable");
    assert!(!lab.reaches(1, 3), "VLAN 10 must not reach VLAN 20");
    assert!(!lab.reaches(3, 2), "VLAN 20 must not reach VLAN 10");
    let ctl = |args: &[&str]| lab.ctl(args);
    let fdb = ctl(&["fdb-show", "br0"]);
    let vlans: Vec<(String, u64)> = fdb["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["port"].as_str().unwrap().to_string(), e["vlan"].as_u64().unwrap()))
        .collect();
    assert!(vlans.contains(&("c1".into(), 10)) && vlans.contains(&("c2".into(), 10)), "{vlans:?}");
    assert!(vlans.iter().all(|(p, v)| (p == "c3") == (*v == 20)), "{vlans:?}");
    // c3's ARP requests were flooded only within VLAN 20 (to nobody):
    // c1 and c2 never received a frame from c3.
    let show = ctl(&["show"]);
    assert!(show["bridges"][0]["l2"]["flooded"].as_u64().unwrap() > 0);
    // With traffic stopped, every entry ages out (aging 2 s, swept each s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = ctl(&["fdb-show", "br0"])["entries"].as_array().unwrap().len();
        if n == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} entries never aged out");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ctl(&["fdb-show", "br0"])["stats"]["expired"].as_u64().unwrap() >= 3);
}

/// A port added and removed with vswitchctl while two other containers
/// ping each other every 10 ms: the added port forwards, the removed one
/// stops, and not one ping between the others is lost. Bad add-port
/// requests are refused in words and change nothing.
#[test]
fn ports_are_added_and_removed_while_others_forward() {
    let mut lab = Lab::new("a", 3, None);
    lab.two_port_config();
    lab.start();
    assert!(lab.reaches(1, 2));
    let lab = std::sync::Arc::new(lab);
    let pinger = {
        let lab = lab.clone();
        std::thread::spawn(move || lab.ping(1, 2, 400, "0.01", None))
    };
    std::thread::sleep(Duration::from_millis(300));
    let h3 = format!("iface={}", lab.host(3));
    for round in 0..2 {
        lab.ctl(&["add-port", "br0", "c3", "type=afpacket", &h3]);
        assert_eq!(lab.port_names(0), ["c1", "c2", "c3"]);
        assert!(lab.reaches(1, 3), "round {round}: the added port forwards");
        let fdb = lab.ctl(&["fdb-show", "br0"]);
        assert!(fdb["entries"].as_array().unwrap().iter().any(|e| e["port"] == "c3"), "{fdb}");
        lab.ctl(&["del-port", "c3"]);
        assert_eq!(lab.port_names(0), ["c1", "c2"]);
        let fdb = lab.ctl(&["fdb-show", "br0"]);
        assert!(fdb["entries"].as_array().unwrap().iter().all(|e| e["port"] != "c3"), "its MACs are forgotten: {fdb}");
        assert!(!lab.reaches(1, 3), "round {round}: the removed port is gone");
    }
    // Refused requests change nothing.
    assert!(lab.ctl_err(&["add-port", "nope", "c3", "type=afpacket", &h3]).contains("no bridge `nope`"));
    let e = lab.ctl_err(&["add-port", "br0", "c2", "type=afpacket", &h3]);
    assert!(e.contains("port `c2` is already defined"), "{e}");
    let e = lab.ctl_err(&["add-port", "br0", "c3", "type=afpacket", &h3, "colour=blue"]);
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = lab.ctl_err(&["add-port", "br0", "c3", "type=afpacket", "iface=nosuchif0"]);
    assert!(e.contains("port c3") && e.contains("nosuchif0"), "{e}");
    assert!(lab.ctl_err(&["del-port", "c9"]).contains("no port `c9`"));
    assert_eq!(lab.port_names(0), ["c1", "c2"]);
    let answered = pinger.join().unwrap();
    assert_eq!(answered, 400, "pings between untouched ports lost while c3 came and went");
    let pmd = lab.ctl(&["pmd-stats"]);
    assert!(pmd["pmds"][0]["rxqs"].as_array().unwrap().iter().all(|q| q["port"] != "c3"), "{pmd}");
}

/// `reload` applies the file's difference (a port removed, one added, VLANs
/// changed in place, also on SIGHUP); a broken file, a change that needs a
/// restart and a port that cannot be opened are refused and the switch
/// keeps its state.
#[test]
fn reload_applies_the_difference_and_refuses_bad_files() {
    let mut lab = Lab::new("r", 3, None);
    lab.two_port_config();
    lab.start();
    assert!(lab.reaches(1, 2));
    let good = std::fs::read_to_string(lab.config_path()).unwrap();

    std::fs::write(lab.config_path(), format!("{good}\n[[bridge]\n")).unwrap();
    let e = lab.ctl_err(&["reload"]);
    assert!(e.contains("vswitchd.toml:") && e.contains("running configuration is kept"), "{e}");
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}",
        lab.port(1, "c1", ""),
        lab.port(3, "c3", "tag = 5000")
    ));
    let e = lab.ctl_err(&["reload"]);
    assert!(e.contains("`bridge[0].port[1].tag`"), "{e}");
    std::fs::write(lab.config_path(), good.replace("memory_mb = 512", "memory_mb = 256")).unwrap();
    assert!(lab.ctl_err(&["reload"]).contains("`eal` section changed"));
    let bad_iface = lab.port(3, "c3", "").replace(&lab.host(3), "nosuchif0");
    lab.write_config(&format!("[[bridge]]\nname = \"br0\"\n\n{}{}", lab.port(1, "c1", ""), bad_iface));
    let e = lab.ctl_err(&["reload"]);
    assert!(e.contains("nothing was applied"), "{e}");
    std::fs::write(lab.config_path(), good.replace("name = \"br0\"\n", "name = \"br0\"\nflow_tables = 8\n")).unwrap();
    let e = lab.ctl_err(&["reload"]);
    assert!(e.contains("bridge `br0`: flow_tables changed") && e.contains("restart"), "{e}");
    assert_eq!(lab.port_names(0), ["c1", "c2"], "refused reloads keep the running state");
    assert!(lab.reaches(1, 2));

    // c2 out, c3 in.
    lab.write_config(&format!("[[bridge]]\nname = \"br0\"\n\n{}{}", lab.port(1, "c1", ""), lab.port(3, "c3", "")));
    let r = lab.ctl(&["reload"]);
    assert_eq!(r["added"], serde_json::json!(["br0/c3"]), "{r}");
    assert_eq!(r["removed"], serde_json::json!(["br0/c2"]), "{r}");
    assert_eq!(lab.port_names(0), ["c1", "c3"]);
    assert!(lab.reaches(1, 3));
    assert!(!lab.reaches(1, 2));

    // SIGHUP: c2 back; c1 and c2 in VLAN 10, c3 moved to VLAN 20 in place.
    let access = |vlan: u16| format!("vlan_mode = \"access\"\ntag = {vlan}\n");
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}{}",
        lab.port(1, "c1", &access(10)),
        lab.port(2, "c2", &access(10)),
        lab.port(3, "c3", &access(20))
    ));
    lab.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.port_names(0) != ["c1", "c2", "c3"] {
        assert!(Instant::now() < deadline, "SIGHUP did not reload: {}", lab.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(lab.reaches(1, 2), "VLAN 10 to VLAN 10");
    assert!(!lab.reaches(1, 3), "VLAN 10 must not reach VLAN 20 after the change");
    assert!(lab.log().contains("vswitchd: reloaded"), "{}", lab.log());
    let r = lab.ctl(&["reload"]);
    let unchanged = |v: &serde_json::Value| v.as_array().is_some_and(Vec::is_empty) || v == &serde_json::json!(false);
    assert!(r.as_object().unwrap().values().all(unchanged), "same file, no changes: {r}");
}

/// MTU 9000 end to end: 8972-byte pings with DF set and a TCP transfer of
/// jumbo segments cross the switch intact.
#[test]
fn jumbo_frames_and_tcp_cross_the_switch() {
    let mut lab = Lab::new("j", 2, Some(9000));
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}",
        lab.port(1, "c1", "mtu = 9000"),
        lab.port(2, "c2", "mtu = 9000")
    ));
    lab.start();
    assert!(lab.reaches(1, 2));
    assert_eq!(lab.ping(1, 2, 3, "0.2", Some(8972)), 3, "9000-byte frames cross the switch");
    for p in lab.ctl(&["show"])["bridges"][0]["ports"].as_array().unwrap() {
        assert_eq!(p["mtu"], 9000, "{p}");
    }
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let send = lab.dir.join("send");
    let recv = lab.dir.join("recv");
    std::fs::write(&send, &data).unwrap();
    let listener = Command::new("ip")
        .args(["netns", "exec", &lab.ns(1), "sh", "-c"])
        .arg(format!("timeout 30 nc -l -p 5001 > {}", recv.display()))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let st = Command::new("ip")
        .args(["netns", "exec", &lab.ns(2), "sh", "-c"])
        .arg(format!("nc -q 1 -w 10 10.99.0.1 5001 < {}", send.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let out = listener.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = std::fs::read(&recv).unwrap();
    assert!(got == data, "TCP over jumbo frames: {} of {} bytes, intact: false", got.len(), data.len());
    let l2 = &lab.ctl(&["show"])["bridges"][0]["l2"];
    assert_eq!(l2["drop_malformed"], 0, "{l2}");
}

/// Two cross-connected ports (`peer`): frames pass as they are, with no
/// learning and no flooding by the bridge.
#[test]
fn cross_connected_ports_forward_without_learning() {
    let mut lab = Lab::new("x", 2, None);
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n{}{}",
        lab.port(1, "c1", "peer = \"c2\""),
        lab.port(2, "c2", "peer = \"c1\"")
    ));
    lab.start();
    assert_eq!(lab.ping(1, 2, 3, "0.2", None), 3, "ping across a cross-connect");
    let fdb = lab.ctl(&["fdb-show", "br0"]);
    assert_eq!(fdb["entries"].as_array().unwrap().len(), 0, "nothing learned: {fdb}\n{}", lab.log());
    let l2 = &lab.ctl(&["show"])["bridges"][0]["l2"];
    assert_eq!((l2["unicast"].as_u64(), l2["flooded"].as_u64()), (Some(0), Some(0)), "{l2}");
    let ports = &lab.ctl(&["show"])["bridges"][0]["ports"];
    assert!(ports.as_array().unwrap().iter().all(|p| p["tx_packets"].as_u64().unwrap() >= 3), "{ports}");
    assert!(lab.ctl_err(&["del-port", "c2"]).contains("port `c2` is the peer of `c1`"));
}

/// A vhost-user port (vswitchd the client, as OVS's dpdkvhostuserclient)
/// whose peer dies and comes back: its link goes down, then up by itself,
/// and traffic flows again. The peer is dpdk-testpmd with a virtio_user
/// server port sending continuously (txonly).
#[test]
fn a_vhost_user_port_comes_back_when_its_peer_restarts() {
    let mut lab = Lab::new("u", 0, None);
    let vsock = lab.dir.join("vhu0.sock").display().to_string();
    lab.write_config(&format!(
        "[[bridge]]\nname = \"br0\"\n\n[[bridge.port]]\nname = \"vm0\"\ntype = \"dpdk\"\ndevargs = \"net_vhost0,iface={vsock},client=1,queues=1\"\n"
    ));
    struct Peer(std::process::Child);
    impl Drop for Peer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log = lab.dir.join("testpmd.log");
    let peer = || {
        let _ = std::fs::remove_file(&vsock);
        // testpmd forwards on core 0; vswitchd's PMD thread takes the last.
        Peer(
            Command::new("dpdk-testpmd")
                .args(["-l", "0,1", "--main-lcore", "1", "--no-pci", "--in-memory", "--single-file-segments"])
                .args(["-m", "256", "--file-prefix", &format!("vhtp{}", std::process::id()), "--log-level=4"])
                .arg("--vdev")
                .arg(format!("net_virtio_user0,path={vsock},server=1,queues=1"))
                .args(["--", "--forward-mode=txonly", "--auto-start", "--total-num-mbufs=8192", "--nb-cores=1"])
                // With a stats period testpmd runs until killed; without one it
                // would wait for Enter on stdin and exit at once on /dev/null.
                .args(["--stats-period=1"])
                .stdin(std::process::Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("dpdk-testpmd (Debian's dpdk package; ci/setup installs it)"),
        )
    };
    let mut p = peer();
    lab.start();
    let port = |lab: &Lab| lab.ctl(&["port-stats", "vm0"])["ports"][0].clone();
    let wait = |what: &str, ok: &dyn Fn(&Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = port(&lab);
            if ok(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {v}\nvswitchd: {}\ntestpmd: {}",
                lab.log(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let first = wait("link up and traffic from the first peer", &|v| {
        v["link"] == "up" && v["rx_packets"].as_u64() > Some(1000)
    });
    // The peer dies without a word.
    let _ = p.0.kill();
    let _ = p.0.wait();
    wait("link down once the peer is gone", &|v| v["link"] == "down");
    let before = port(&lab)["rx_packets"].as_u64().unwrap();
    assert!(before >= first["rx_packets"].as_u64().unwrap());
    p = peer();
    wait("link up again and traffic from the restarted peer", &|v| {
        v["link"] == "up" && v["rx_packets"].as_u64().unwrap() > before + 1000
    });
    drop(p);
}
