//! `vswitch-ipam` under a real CNI plugin: Debian's reference `bridge`
//! plugin (containernetworking-plugins) asks it for the addresses of a
//! veth it puts into a real network namespace, which then reaches the
//! gateway on the bridge; DEL takes it all down and frees the address.

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const BRIDGE_PLUGIN: &str = "/usr/lib/cni/bridge";

fn sh(cmd: &str) -> (bool, String) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

fn bridge(cmd: &str, netns: &str, conf: &Value) -> (i32, Value) {
    let ours = Path::new(env!("CARGO_BIN_EXE_vswitch-ipam")).parent().unwrap().display().to_string();
    let mut child = Command::new(BRIDGE_PLUGIN)
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", "bridgetest")
        .env("CNI_NETNS", format!("/run/netns/{netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", format!("{ours}:/usr/lib/cni"))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

struct Cleanup(String, String, std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        sh(&format!("ip netns del {} 2>/dev/null; ip link del {} 2>/dev/null", self.0, self.1));
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

#[test]
fn the_reference_bridge_plugin_gets_its_addresses_from_us() {
    assert!(
        Path::new(BRIDGE_PLUGIN).exists(),
        "{BRIDGE_PLUGIN} missing: ci/setup installs containernetworking-plugins"
    );
    let id = std::process::id() % 100_000;
    let (ns, br) = (format!("ipamns{id}"), format!("ipambr{id}"));
    let data = std::env::temp_dir().join(format!("cni-bridge-{id}"));
    let _clean = Cleanup(ns.clone(), br.clone(), data.clone());
    assert!(sh(&format!("ip netns add {ns}")).0);
    let conf = json!({
        "cniVersion": "1.0.0", "name": "bridged", "type": "bridge", "bridge": br, "isGateway": true,
        "ipam": {"type": "vswitch-ipam", "ranges": [[{"subnet": "10.213.7.0/24", "rangeStart": "10.213.7.50"}]],
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data}
    });
    let (rc, r) = bridge("ADD", &ns, &conf);
    assert_eq!(rc, 0, "bridge ADD: {r}");
    assert_eq!(r["ips"][0]["address"], "10.213.7.50/24", "{r}");
    let (ok, addr) = sh(&format!("ip -n {ns} -4 -o addr show dev eth0"));
    assert!(ok && addr.contains("10.213.7.50/24"), "{addr}");
    let (ok, ping) = sh(&format!("ip netns exec {ns} ping -c 2 -W 2 -i 0.2 10.213.7.1"));
    assert!(ok, "the gateway on the bridge answers: {ping}");
    let leases = std::fs::read_dir(data.join("bridged/0"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == "10.213.7.50")
        .count();
    assert_eq!(leases, 1);

    let mut del = conf.clone();
    del["prevResult"] = r;
    assert_eq!(bridge("DEL", &ns, &del).0, 0);
    assert!(!data.join("bridged/0/10.213.7.50").exists(), "DEL freed the lease");
    assert!(!sh(&format!("ip -n {ns} link show eth0")).0, "DEL removed the veth");
}
