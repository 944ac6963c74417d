//! `vswitch-ipam` driven as a runtime drives a CNI plugin: `CNI_*`
//! variables, the network configuration on stdin, the result or the
//! spec's error on stdout and the exit status.

use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

struct Net {
    dir: PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Net {
    fn new(tag: &str) -> Net {
        let dir = std::env::temp_dir().join(format!("cni-ipam-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Net { dir }
    }

    /// A bridge network's configuration with our IPAM, as a runtime passes
    /// it to the IPAM plugin.
    fn conf(&self, version: &str, ranges: Value) -> Value {
        json!({
            "cniVersion": version, "name": "tenant-a", "type": "bridge", "bridge": "br0",
            "ipam": {"type": "vswitch-ipam", "ranges": ranges, "reserved": ["10.9.0.2"],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": self.dir}
        })
    }
}

/// Runs the plugin: (exit status, stdout as JSON or Null).
fn cni(cmd: &str, container: &str, extra: &[(&str, &str)], stdin: &Value) -> (i32, Value) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vswitch-ipam"));
    c.env_clear().env("CNI_COMMAND", cmd).env("CNI_PATH", "/usr/lib/cni");
    if !container.is_empty() {
        c.env("CNI_CONTAINERID", container).env("CNI_IFNAME", "eth0").env("CNI_NETNS", "/run/netns/x");
    }
    for (k, v) in extra {
        c.env(k, v);
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let v = if out.stdout.is_empty() { Value::Null } else { serde_json::from_slice(&out.stdout).unwrap() };
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn add_del_check_gc_status_version_round_trip() {
    let n = Net::new("trip");
    let conf = n.conf("1.0.0", json!([[{"subnet": "10.9.0.0/29"}], [{"subnet": "fd00:9::/120"}]]));
    let (rc, v) = cni("VERSION", "", &[], &json!({"cniVersion": "1.0.0"}));
    assert_eq!((rc, v), (0, json!({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]})));

    let (rc, r) = cni("ADD", "ctr1", &[], &conf);
    assert_eq!(rc, 0, "{r}");
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(
        r["ips"],
        json!([{"address": "10.9.0.3/29", "gateway": "10.9.0.1"}, {"address": "fd00:9::2/120", "gateway": "fd00:9::1"}])
    );
    assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0"}]));
    // ADD repeated: the same answer.
    assert_eq!(cni("ADD", "ctr1", &[], &conf).1, r);

    let mut with_prev = conf.clone();
    with_prev["prevResult"] = r.clone();
    assert_eq!(cni("CHECK", "ctr1", &[], &with_prev), (0, Value::Null));
    let mut wrong = with_prev.clone();
    wrong["prevResult"]["ips"][0]["address"] = json!("10.9.0.4/29");
    let (rc, e) = cni("CHECK", "ctr1", &[], &wrong);
    assert_eq!((rc, e["code"].clone()), (1, json!(102)), "{e}");
    assert!(e["details"].as_str().unwrap().contains("10.9.0.4 of prevResult is not leased to ctr1/eth0"));

    // A static address through CNI_ARGS, and one already taken.
    let (rc, s) = cni("ADD", "ctr2", &[("CNI_ARGS", "IgnoreUnknown=1;IP=10.9.0.6")], &conf);
    assert_eq!((rc, s["ips"][0]["address"].clone()), (0, json!("10.9.0.6/29")), "{s}");
    let (rc, e) = cni("ADD", "ctr3", &[("CNI_ARGS", "IP=10.9.0.6")], &conf);
    assert_eq!((rc, e["code"].clone()), (1, json!(101)), "{e}");
    // ctr3's failed ADD left nothing: its IPv6 lease was rolled back.
    let v6 = std::fs::read_dir(n.dir.join("tenant-a/1"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(v6, 2, "leases of ctr1 and ctr2 only");

    // DEL, twice; then CHECK fails.
    assert_eq!(cni("DEL", "ctr1", &[], &conf), (0, Value::Null));
    assert_eq!(cni("DEL", "ctr1", &[], &conf), (0, Value::Null));
    assert_eq!(cni("CHECK", "ctr1", &[], &with_prev).1["code"], 102);

    // GC keeps only the valid attachments (1.1.0).
    let mut gc = n.conf("1.1.0", json!([[{"subnet": "10.9.0.0/29"}], [{"subnet": "fd00:9::/120"}]]));
    cni("ADD", "ctr4", &[], &gc);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr4", "ifname": "eth0"}]);
    assert_eq!(cni("GC", "", &[], &gc), (0, Value::Null));
    let (_, again) = cni("ADD", "ctr2", &[], &gc);
    assert_ne!(again["ips"][0]["address"], "10.9.0.6/29", "ctr2's lease was collected");
    assert_eq!(cni("STATUS", "", &[], &gc), (0, Value::Null));
}

#[test]
fn errors_carry_the_spec_codes() {
    let n = Net::new("errors");
    let conf = n.conf("1.1.0", json!([[{"subnet": "10.9.1.0/30"}]]));
    let code = |rc_v: (i32, Value)| {
        assert_eq!(rc_v.0, 1, "{}", rc_v.1);
        assert!(rc_v.1["msg"].is_string());
        rc_v.1["code"].as_u64().unwrap()
    };
    // A /30 has one address left after its gateway: the second ADD finds none.
    assert_eq!(cni("ADD", "a", &[], &conf).0, 0);
    assert_eq!(code(cni("ADD", "b", &[], &conf)), 100);
    assert_eq!(code(cni("ADD", "", &[], &conf)), 4);
    assert_eq!(code(cni("ADD", "-bad", &[], &conf)), 4);
    assert_eq!(code(cni("ADD", "c", &[], &n.conf("0.4.0", json!([[{"subnet": "10.9.0.0/30"}]])))), 1);
    assert_eq!(code(cni("ADD", "c", &[], &json!("not a network"))), 6);
    assert_eq!(code(cni("ADD", "c", &[], &n.conf("1.1.0", json!([[{"subnet": "10.9.0.1/30"}]])))), 7);
    assert_eq!(
        code(cni("ADD", "c", &[], &n.conf("1.1.0", json!([[{"subnet": "10.9.0.0/30"}, {"subnet": "fd00::/64"}]])))),
        7
    );
    let mut unknown = conf.clone();
    unknown["ipam"]["rangez"] = json!([]);
    assert_eq!(code(cni("ADD", "c", &[], &unknown)), 7);
    // STATUS on a lease directory that cannot be made.
    let mut blocked = conf.clone();
    std::fs::create_dir_all(&n.dir).unwrap();
    std::fs::write(n.dir.join("file"), b"").unwrap();
    blocked["ipam"]["dataDir"] = json!(n.dir.join("file"));
    assert_eq!(code(cni("STATUS", "", &[], &blocked)), 50);
    // The error is the spec's shape, in the configuration's version.
    let (_, e) = cni("ADD", "b", &[], &conf);
    assert_eq!(e["cniVersion"], "1.1.0");
    assert_eq!(e["msg"], "no free address");
}
