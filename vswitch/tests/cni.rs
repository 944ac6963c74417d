//! `vswitch-cni` (container-host) attaching namespaces to a running
//! vswitchd, invoked as a runtime invokes a CNI plugin: two containers
//! ADDed to one bridge ping each other through the switch; CHECK, DEL
//! (twice), STATUS and GC; a failed ADD leaves nothing behind.

mod common;

use common::Lab;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The plugin binary, built with the workspace (target/<profile>/).
fn plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(|d| d.parent()).unwrap().join("vswitch-cni");
    assert!(p.exists(), "{} missing: build the workspace (cargo build -p container-host)", p.display());
    p
}

struct Containers(Vec<String>, PathBuf);

impl Drop for Containers {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn cni(cmd: &str, id: &str, ns: &str, conf: &Value) -> (i32, Value) {
    let mut c = Command::new(plugin());
    c.env_clear().env("CNI_COMMAND", cmd).env("CNI_PATH", "/usr/lib/cni").env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    if !id.is_empty() {
        c.env("CNI_CONTAINERID", id).env("CNI_IFNAME", "eth0").env("CNI_NETNS", format!("/run/netns/{ns}"));
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

fn ns_ping(ns: &str, to: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", to])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn leases(data: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join("tenants/0"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn containers_attached_by_the_plugin_talk_through_vswitchd() {
    let mut lab = Lab::new("cni", 0, None);
    lab.write_config("[[bridge]]\nname = \"br0\"\n");
    lab.start();
    let tag = std::process::id() % 100_000;
    let nss: Vec<String> = (1..=4).map(|i| format!("cni{tag}c{i}")).collect();
    let data = std::env::temp_dir().join(format!("cni-e2e-{tag}"));
    let _c = Containers(nss.clone(), data.clone());
    for ns in &nss {
        assert!(Command::new("ip").args(["netns", "add", ns]).status().unwrap().success());
    }
    let conf = json!({
        "cniVersion": "1.1.0", "name": "tenants", "type": "vswitch-cni", "bridge": "br0",
        "socket": lab.sock(), "mtu": 1500, "portType": "afpacket",
        "ipam": {"type": "vswitch-ipam", "ranges": [[{"subnet": "10.215.0.0/24"}]], "dataDir": data}
    });

    let (rc, r1) = cni("ADD", "ctr-one", &nss[0], &conf);
    assert_eq!(rc, 0, "ADD: {r1}\n{}", lab.log());
    let (rc, r2) = cni("ADD", "ctr-two", &nss[1], &conf);
    assert_eq!(rc, 0, "ADD: {r2}");
    assert_eq!(r1["ips"][0]["address"], "10.215.0.2/24");
    assert_eq!(r1["ips"][0]["interface"], 1);
    assert_eq!(r1["interfaces"][1]["mac"], "0a:58:0a:d7:00:02", "MAC from the address");
    assert_eq!(r1["interfaces"][1]["sandbox"], format!("/run/netns/{}", nss[0]));
    let host1 = r1["interfaces"][0]["name"].as_str().unwrap().to_string();
    let ports: Vec<String> = lab.port_names(0);
    assert!(ports.contains(&host1), "{ports:?}");
    assert!(ns_ping(&nss[0], "10.215.0.3"), "container one reaches two through vswitchd");
    // The bridge answers ARP for both from its responder.
    let arp = lab.ctl(&["arp-show", "br0"]);
    assert!(arp.to_string().contains("10.215.0.2") && arp.to_string().contains("0a:58:0a:d7:00:03"), "{arp}");

    // The bandwidth capability: the container's egress policed as the
    // port's ingress, its ingress as the port's egress.
    let mut shaped = conf.clone();
    shaped["runtimeConfig"] = json!({"bandwidth": {"ingressRate": 20_000_000, "ingressBurst": 400_000, "egressRate": 10_000_000, "egressBurst": 200_000}});
    let (rc, r4) = cni("ADD", "ctr-four", &nss[3], &shaped);
    assert_eq!(rc, 0, "{r4}");
    let host4 = r4["interfaces"][0]["name"].as_str().unwrap();
    let qos = lab.ctl(&["qos-show", host4]).to_string();
    for want in ["10000000", "200000", "20000000", "400000"] {
        assert!(qos.contains(want), "{want} in {qos}");
    }
    let ing = qos.find("ingress").unwrap();
    let egr = qos.find("egress").unwrap();
    let (first, second) = if ing < egr { (&qos[ing..egr], &qos[egr..]) } else { (&qos[ing..], &qos[egr..ing]) };
    assert!(first.contains("10000000") && second.contains("20000000"), "{qos}");
    assert_eq!(cni("DEL", "ctr-four", &nss[3], &shaped).0, 0);

    let mut checked = conf.clone();
    checked["prevResult"] = r1.clone();
    assert_eq!(cni("CHECK", "ctr-one", &nss[0], &checked), (0, Value::Null));
    assert_eq!(cni("STATUS", "", "", &conf), (0, Value::Null));

    // A failed ADD (no such bridge) leaves no interface, port or lease.
    let mut bad = conf.clone();
    bad["bridge"] = json!("br-missing");
    let (rc, e) = cni("ADD", "ctr-three", &nss[2], &bad);
    assert_eq!((rc, e["code"].clone()), (1, json!(7)), "{e}");
    assert!(e["details"].as_str().unwrap().contains("br-missing"), "{e}");
    assert!(!Command::new("ip")
        .args(["-n", &nss[2], "link", "show", "eth0"])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success());
    assert_eq!(leases(&data), vec!["10.215.0.2", "10.215.0.3"], "the failed ADD's lease was released");
    let (_, r3) = cni("ADD", "ctr-three", &nss[2], &conf);
    assert_eq!(r3["ips"][0]["address"], "10.215.0.6/24", "round robin: .4 and .5, freed, come back last");

    // DEL, twice: port, interfaces and lease gone.
    assert_eq!(cni("DEL", "ctr-one", &nss[0], &checked), (0, Value::Null));
    assert_eq!(cni("DEL", "ctr-one", &nss[0], &checked), (0, Value::Null));
    assert!(!lab.port_names(0).contains(&host1));
    assert!(!link_exists(&host1));
    assert_eq!(cni("CHECK", "ctr-one", &nss[0], &checked).1["code"], 102);
    assert!(!ns_ping(&nss[1], "10.215.0.2"));

    // GC keeps only ctr-two: ctr-three's port and lease go.
    let host3 = r3["interfaces"][0]["name"].as_str().unwrap().to_string();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-two", "ifname": "eth0"}]);
    assert_eq!(cni("GC", "", "", &gc), (0, Value::Null));
    assert!(!lab.port_names(0).contains(&host3) && !link_exists(&host3));
    assert_eq!(leases(&data), vec!["10.215.0.3"]);

    // vswitchd down: STATUS says 50, ADD 11 (try again later) and leaves
    // nothing.
    drop(lab);
    assert_eq!(cni("STATUS", "", "", &conf).1["code"], 50);
    let (rc, e) = cni("ADD", "ctr-one", &nss[0], &conf);
    assert_eq!((rc, e["code"].clone()), (1, json!(11)), "{e}");
    assert!(!Command::new("ip")
        .args(["-n", &nss[0], "link", "show", "eth0"])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success());
}
