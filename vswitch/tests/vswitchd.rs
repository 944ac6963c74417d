//! vswitchd end to end: two containers (namespaces) on AF_PACKET ports
//! ping each other through L2 switching; vswitchctl shows counters and
//! learned MACs; the control socket answers bad requests with JSON-RPC
//! errors and keeps serving; SIGTERM stops it cleanly; a bad config file is
//! refused with where and why. Needs root; cleans up after itself.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Lab {
    tag: String,
    daemon: Option<Child>,
    dir: std::path::PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let tag = format!("{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("vswitchd-test-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab { tag, daemon: None, dir };
        lab.cleanup_net();
        for i in 1..=2 {
            let (ns, host) = (lab.ns(i), lab.host(i));
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "addr", "add", &format!("10.99.0.{i}/24"), "dev", "eth0"]);
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"), "1");
            sh(&["ip", "link", "set", &host, "up"]);
        }
        lab
    }
    fn ns(&self, i: u32) -> String {
        format!("vsdt{}c{i}", self.tag)
    }
    fn host(&self, i: u32) -> String {
        format!("vsdt{}h{i}", self.tag)
    }
    fn sock(&self) -> String {
        self.dir.join("ctl.sock").display().to_string()
    }
    fn cleanup_net(&self) {
        for i in 1..=2 {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(i)]).status();
            let _ = Command::new("ip").args(["link", "del", &self.host(i)]).status();
        }
    }
    fn config(&self, extra_port: &str) -> std::path::PathBuf {
        let text = format!(
            "[eal]\nmemory = \"no-huge\"\nmemory_mb = 256\nfile_prefix = \"vsdt{tag}\"\n\n[control]\nsocket = \"{sock}\"\n\n\
             [[bridge]]\nname = \"br0\"\n\n[[bridge.port]]\nname = \"c1\"\ntype = \"afpacket\"\niface = \"{h1}\"\n\n\
             [[bridge.port]]\nname = \"c2\"\ntype = \"afpacket\"\niface = \"{h2}\"\n{extra_port}",
            tag = self.tag,
            sock = self.sock(),
            h1 = self.host(1),
            h2 = self.host(2),
        );
        let p = self.dir.join("vswitchd.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
    fn start(&mut self) {
        let cfg = self.config("");
        let child = Command::new(env!("CARGO_BIN_EXE_vswitchd"))
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(self.sock()).is_err() {
            assert!(Instant::now() < deadline, "vswitchd did not open its control socket");
            assert!(self.daemon.as_mut().unwrap().try_wait().unwrap().is_none(), "vswitchd exited");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn ctl(&self, args: &[&str]) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .args(["--socket", &self.sock(), "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "vswitchctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        self.cleanup_net();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?}");
}

#[test]
fn containers_ping_through_vswitchd() {
    let mut lab = Lab::new();
    lab.start();
    let ping = Command::new("ip")
        .args(["netns", "exec", &lab.ns(1), "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.99.0.2"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "ping through vswitchd: {}", String::from_utf8_lossy(&ping.stdout));
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
    let tag = format!("{}", std::process::id() % 100_000);
    let ns = |i: u32| format!("vsvt{tag}c{i}");
    let host = |i: u32| format!("vsvt{tag}h{i}");
    let dir = std::env::temp_dir().join(format!("vswitchd-vlan-{tag}"));
    struct Gone(Vec<String>, Vec<String>, std::path::PathBuf, Option<Child>);
    impl Drop for Gone {
        fn drop(&mut self) {
            if let Some(mut c) = self.3.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            for n in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", n]).status();
            }
            for h in &self.1 {
                let _ = Command::new("ip").args(["link", "del", h]).status();
            }
            let _ = std::fs::remove_dir_all(&self.2);
        }
    }
    let mut g = Gone((1..=3).map(ns).collect(), (1..=3).map(host).collect(), dir.clone(), None);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=3 {
        let _ = Command::new("ip").args(["netns", "del", &ns(i)]).status();
        let _ = Command::new("ip").args(["link", "del", &host(i)]).status();
        sh(&["ip", "netns", "add", &ns(i)]);
        sh(&["ip", "link", "add", &host(i), "type", "veth", "peer", "name", "eth0", "netns", &ns(i)]);
        sh(&["ip", "-n", &ns(i), "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns(i), "addr", "add", &format!("10.98.0.{i}/24"), "dev", "eth0"]);
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", host(i)), "1");
        sh(&["ip", "link", "set", &host(i), "up"]);
    }
    let sock = dir.join("ctl.sock").display().to_string();
    let port = |i: u32, vlan: u16| {
        format!("[[bridge.port]]\nname = \"c{i}\"\ntype = \"afpacket\"\niface = \"{}\"\nvlan_mode = \"access\"\ntag = {vlan}\n\n", host(i))
    };
    let cfg = dir.join("vlan.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nmemory = \"no-huge\"\nmemory_mb = 256\nfile_prefix = \"vsvt{tag}\"\n\n[control]\nsocket = \"{sock}\"\n\n\
             [[bridge]]\nname = \"br0\"\nmac_aging_s = 2\n\n{}{}{}",
            port(1, 10),
            port(2, 10),
            port(3, 20)
        ),
    )
    .unwrap();
    let log = dir.join("vswitchd.log");
    g.3 = Some(
        Command::new(env!("CARGO_BIN_EXE_vswitchd"))
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        let exited = g.3.as_mut().unwrap().try_wait().unwrap();
        assert!(
            Instant::now() < deadline && exited.is_none(),
            "vswitchd did not start ({exited:?}): {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ping = |from: u32, to: u32| {
        Command::new("ip")
            .args(["netns", "exec", &ns(from), "ping", "-c", "2", "-i", "0.2", "-W", "1", &format!("10.98.0.{to}")])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(ping(1, 2), "same access VLAN: reachable");
    assert!(!ping(1, 3), "VLAN 10 must not reach VLAN 20");
    assert!(!ping(3, 2), "VLAN 20 must not reach VLAN 10");
    let ctl = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .args(["--socket", &sock, "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
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
