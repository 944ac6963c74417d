//! Every example loads; every kind of mistake is refused with the file,
//! line, column, field and reason.

use config::{Config, Controller, FailMode, MemoryMode, PortType, VlanMode};
use std::path::Path;

fn examples() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn every_example_loads() {
    let files = examples();
    assert!(files.len() >= 4);
    for f in files {
        let cfg = Config::load(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!cfg.bridges.is_empty(), "{}", f.display());
    }
}

#[test]
fn examples_mean_what_they_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let c = Config::load(&dir.join("vlans.toml")).unwrap();
    assert_eq!(c.eal.memory, MemoryMode::InMemory);
    let ports = &c.bridges[0].ports;
    assert_eq!((ports[0].vlan_mode, ports[0].tag), (VlanMode::Access, Some(10)));
    assert_eq!(ports[2].kind, PortType::Tap);
    assert_eq!(
        (ports[3].vlan_mode, ports[3].trunks.as_slice(), ports[3].mtu),
        (VlanMode::Trunk, &[10u16, 20][..], Some(9000))
    );
    let c = Config::load(&dir.join("nic-openflow.toml")).unwrap();
    let b = &c.bridges[0];
    assert_eq!(b.fail_mode, FailMode::Secure);
    assert_eq!(
        b.controllers.iter().map(|s| s.parse::<Controller>().unwrap()).collect::<Vec<_>>(),
        vec![
            Controller::Listen { port: 6653, ip: "127.0.0.1".parse().unwrap() },
            Controller::Connect { ip: "127.0.0.1".parse().unwrap(), port: 6633 }
        ]
    );
    let c = Config::parse("", "empty.toml").unwrap();
    assert_eq!(c.control.socket, "/run/vswitch/vswitchd.sock");
    assert_eq!(c.eal.memory, MemoryMode::Hugepages);
    assert_eq!(c.pmd.rebalance_interval_s, 60);
}

const BASE: &str = r#"[eal]
cores = [0, 1]

[[bridge]]
name = "br0"

[[bridge.port]]
name = "p0"
type = "afxdp"
iface = "veth0"
"#;

/// (text appended to BASE or replacing it, expected "line:col", field,
/// words the message must hold)
fn check(text: &str, at: &str, field: &str, words: &[&str]) {
    let e = Config::parse(text, "sw.toml").expect_err(text);
    let shown = e.to_string();
    assert_eq!(format!("{}:{}", e.line, e.column), at, "{shown}");
    assert_eq!(e.field, field, "{shown}");
    assert!(shown.starts_with(&format!("sw.toml:{at}: ")), "{shown}");
    for w in words {
        assert!(shown.contains(w), "`{w}` missing from: {shown}");
    }
}

#[test]
fn type_and_schema_errors_point_at_the_key() {
    check(&format!("{BASE}colour = \"red\"\n"), "11:1", "bridge[0].port[0].colour", &["unknown field `colour`"]);
    check("[eal]\ncores = [0, 1]\nhuge = true\n", "3:1", "eal.huge", &["unknown field `huge`"]);
    check("[eal]\ncores = [0, \"one\"]\n", "2:13", "eal.cores[1]", &["invalid type"]);
    check("[eal]\nmemory = \"lots\"\n", "2:10", "eal.memory", &["unknown variant `lots`", "hugepages", "no-huge"]);
    check(&BASE.replace("afxdp", "afxpd"), "9:8", "bridge[0].port[0].type", &["unknown variant `afxpd`"]);
    check("[[bridge]]\nfail_mode = \"secure\"\n", "1:1", "bridge[0]", &["missing field `name`"]);
    check("[eal\n", "1:5", "", &["unclosed table"]);
}

#[test]
fn semantic_errors_point_at_the_value() {
    check(
        &format!("{BASE}vlan_mode = \"access\"\ntag = 5000\n"),
        "12:7",
        "bridge[0].port[0].tag",
        &["VLAN 5000 is outside 1-4094"],
    );
    check(&format!("{BASE}vlan_mode = \"access\"\n"), "11:13", "bridge[0].port[0].vlan_mode", &["needs `tag`"]);
    check(&format!("{BASE}tag = 5\n"), "11:7", "bridge[0].port[0].tag", &["access ports"]);
    check(
        &format!("{BASE}vlan_mode = \"trunk\"\ntrunks = [10, 0]\n"),
        "12:15",
        "bridge[0].port[0].trunks[1]",
        &["VLAN 0"],
    );
    check(
        &format!("{BASE}vlan_mode = \"trunk\"\ntrunks = [10, 10]\n"),
        "12:15",
        "bridge[0].port[0].trunks[1]",
        &["twice"],
    );
    check(&format!("{BASE}mtu = 20000\n"), "11:7", "bridge[0].port[0].mtu", &["outside 68-9600"]);
    check(
        &BASE.replace("[[bridge.port]]", "flow_table_size = 0\n[[bridge.port]]"),
        "7:19",
        "bridge[0].flow_table_size",
        &["0 is outside 1-16777216"],
    );
    check("[pmd]\nemc_entries = 1000\n", "2:15", "pmd.emc_entries", &["1000 is not a power of two"]);
    check("[pmd]\nemc = \"sometimes\"\n", "2:7", "pmd.emc", &["unknown variant `sometimes`", "auto"]);
    check("[pmd]\nmegaflow_max_idle_ms = 5\n", "2:24", "pmd.megaflow_max_idle_ms", &["at least 100 ms"]);
    check("[pmd]\nmegaflow_limit = 0\n", "2:18", "pmd.megaflow_limit", &["from 1 to 4194304"]);
    check("[pmd]\nmegaflow_limit = 4194305\n", "2:18", "pmd.megaflow_limit", &["from 1 to 4194304"]);
    check("[pmd]\nmegaflow_limit = \"lots\"\n", "2:18", "pmd.megaflow_limit", &["\"auto\" or a number"]);
    check("[pmd]\nmegaflow_limit = -3\n", "2:18", "pmd.megaflow_limit", &["\"auto\" or a number"]);
    check(&format!("{BASE}peer = \"p9\"\n"), "11:8", "bridge[0].port[0].peer", &["no port `p9` in bridge `br0`"]);
    check(&format!("{BASE}peer = \"p0\"\n"), "11:8", "bridge[0].port[0].peer", &["to itself"]);
    check(&format!("{BASE}ofport = 0\n"), "11:10", "bridge[0].port[0].ofport", &["outside 1-65279"]);
    check(&format!("{BASE}pci = \"0000:3b:00.0\"\n"), "11:7", "bridge[0].port[0].pci", &["only for dpdk"]);
    check(&BASE.replace("iface = \"veth0\"\n", ""), "9:8", "bridge[0].port[0].type", &["needs `iface`"]);
    check(
        &format!("{BASE}\n[[bridge.port]]\nname = \"p0\"\ntype = \"tap\"\n"),
        "13:8",
        "bridge[0].port[1].name",
        &["already defined as bridge[0].port[0]"],
    );
    check(
        &format!("{BASE}\n[[bridge.port]]\nname = \"p1\"\ntype = \"afpacket\"\niface = \"veth0\"\n"),
        "15:9",
        "bridge[0].port[1].iface",
        &["already used by bridge[0].port[0]"],
    );
    check(
        &format!("{BASE}\n[[bridge.port]]\nname = \"d\"\ntype = \"dpdk\"\n"),
        "14:8",
        "bridge[0].port[1].type",
        &["needs `pci`", "`devargs`"],
    );
    check(
        &format!("{BASE}\n[[bridge.port]]\nname = \"d\"\ntype = \"dpdk\"\npci = \"3b:00\"\n"),
        "15:7",
        "bridge[0].port[1].pci",
        &["not a PCI address"],
    );
    check(
        &format!("{BASE}\n[[bridge.port]]\nname = \"d\"\ntype = \"dpdk\"\ndevargs = \"memif0\"\n"),
        "15:11",
        "bridge[0].port[1].devargs",
        &["net_"],
    );
    check(
        &format!("{BASE}\n[[bridge]]\nname = \"br0\"\n"),
        "13:8",
        "bridge[1].name",
        &["already defined as bridge[0]"],
    );
    check(
        &BASE.replace("name = \"br0\"", "name = \"br0\"\ncontrollers = [\"tcp:1.2.3.4\"]"),
        "6:16",
        "bridge[0].controllers[0]",
        &["tcp:IP:PORT"],
    );
    check(
        &BASE.replace("name = \"br0\"", "name = \"br0\"\ndatapath_id = \"xyz\""),
        "6:15",
        "bridge[0].datapath_id",
        &["hex"],
    );
    check(
        &BASE.replace("name = \"br0\"", "name = \"a very long bridge name\""),
        "5:8",
        "bridge[0].name",
        &["1-15 characters"],
    );
    check("[eal]\ncores = [0, 1]\n[pmd]\ncores = [2]\n", "4:10", "pmd.cores[0]", &["not in eal.cores"]);
    check("[eal]\ncores = [0, 0]\n", "2:13", "eal.cores[1]", &["twice"]);
    check("[eal]\nmemory_mb = 8\n", "2:13", "eal.memory_mb", &["too little"]);
    check("[control]\nsocket = \"vs.sock\"\n", "2:10", "control.socket", &["absolute path"]);
    check("[control]\nmetrics = \"localhost\"\n", "2:11", "control.metrics", &["IP:PORT"]);
}

const TUNNEL: &str = r#"[[bridge]]
name = "br0"

[[bridge.port]]
name = "up"
type = "afxdp"
iface = "veth0"
addresses = ["10.0.0.1/24"]

[[bridge.port]]
name = "vx"
type = "vxlan"
remote_ip = "10.0.0.2"
"#;

#[test]
fn tunnels_and_routes_are_checked() {
    let c = Config::parse(TUNNEL, "sw.toml").unwrap();
    let vx = &c.bridges[0].ports[1];
    assert_eq!((vx.kind, vx.ttl, vx.df, vx.csum, vx.dst_port), (PortType::Vxlan, 64, true, false, None));
    check(&format!("{TUNNEL}key = 16777216\n"), "14:7", "bridge[0].port[1].key", &["24-bit VNI"]);
    check(&TUNNEL.replace("remote_ip = \"10.0.0.2\"", ""), "12:8", "bridge[0].port[1].type", &["needs `remote_ip`"]);
    check(
        &format!("{}local_ip = \"10.0.0.1\"\n", TUNNEL.replace("\"10.0.0.2\"", "\"fd00::2\"")),
        "14:12",
        "bridge[0].port[1].local_ip",
        &["one family"],
    );
    check(&TUNNEL.replace("\"10.0.0.2\"", "\"ff02::1\""), "13:13", "bridge[0].port[1].remote_ip", &["not a unicast"]);
    // TOS: a byte or "inherit".
    let c = Config::parse(&format!("{TUNNEL}tos = \"inherit\"\n"), "sw.toml").unwrap();
    assert_eq!(c.bridges[0].ports[1].tos, config::TunnelTos::Inherit);
    let c = Config::parse(&format!("{TUNNEL}tos = 184\n"), "sw.toml").unwrap();
    assert_eq!(c.bridges[0].ports[1].tos, config::TunnelTos::Fixed(184));
    check(&format!("{TUNNEL}tos = 256\n"), "14:7", "bridge[0].port[1].tos", &["\"inherit\""]);
    // A flow remote: each frame's tun_dst.
    let c = Config::parse(&TUNNEL.replace("\"10.0.0.2\"", "\"flow\""), "sw.toml").unwrap();
    assert_eq!(c.bridges[0].ports[1].remote_ip.as_deref(), Some("flow"));
    check(&TUNNEL.replace("\"10.0.0.2\"", "\"flows\""), "13:13", "bridge[0].port[1].remote_ip", &["nor `flow`"]);
    Config::parse(
        &TUNNEL
            .replace("\"10.0.0.1/24\"", "\"10.0.0.1/24\", \"fd00:9::1/64\"")
            .replace("\"10.0.0.2\"", "\"fd00:9::2\""),
        "sw.toml",
    )
    .unwrap();
    check(&format!("{TUNNEL}iface = \"x\"\n"), "14:9", "bridge[0].port[1].iface", &["tunnel port takes no `iface`"]);
    check(&format!("{TUNNEL}local_ip = \"10.0.0.9\"\n"), "14:12", "bridge[0].port[1].local_ip", &["not one of"]);
    check(&format!("{TUNNEL}ttl = 0\n"), "14:7", "bridge[0].port[1].ttl", &["1-255"]);
    check(
        &format!("{TUNNEL}\n[[bridge.port]]\nname = \"vx2\"\ntype = \"vxlan\"\nremote_ip = \"10.0.0.2\"\n"),
        "18:13",
        "bridge[0].port[2].remote_ip",
        &["same remote_ip"],
    );
    check(&TUNNEL.replace("/24", "/33"), "8:14", "bridge[0].port[0].addresses[0]", &["prefix length"]);
    check(&TUNNEL.replace("10.0.0.1/24", "fd00::1/129"), "8:14", "bridge[0].port[0].addresses[0]", &["0-128"]);
    check(
        &TUNNEL.replace("iface = \"veth0\"\n", "iface = \"veth0\"\nkey = 5\n"),
        "8:7",
        "bridge[0].port[0].key",
        &["for tunnel ports"],
    );
    check(
        &format!("{TUNNEL}\n[[route]]\nprefix = \"10.9.0.0/16\"\nvia = \"10.1.0.1\"\n"),
        "17:7",
        "route[0].via",
        &["no subnet"],
    );
    check(
        &format!("{TUNNEL}\n[[route]]\nprefix = \"10.9.0.1/16\"\nvia = \"10.0.0.254\"\n"),
        "16:10",
        "route[0].prefix",
        &["host bits"],
    );
    Config::parse(&format!("{TUNNEL}\n[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.0.0.254\"\n"), "sw.toml").unwrap();
    let c = Config::parse(&format!("{TUNNEL}key = \"flow\"\n"), "sw.toml").unwrap();
    assert_eq!(c.bridges[0].ports[1].key, Some(config::TunnelKey::Flow));
    check(&format!("{TUNNEL}key = \"some\"\n"), "14:7", "bridge[0].port[1].key", &["\"flow\""]);
    check(
        &TUNNEL.replace("type = \"vxlan\"", "type = \"gre\"").replace("remote_ip", "dst_port = 5\nremote_ip"),
        "13:12",
        "bridge[0].port[1].dst_port",
        &["GRE has no UDP port"],
    );
}

#[test]
fn a_missing_file_names_it() {
    let e = Config::load(Path::new("/nonexistent/vswitchd.toml")).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/vswitchd.toml: "), "{e}");
}

#[test]
fn policers_are_checked() {
    let c = Config::parse(&format!("{BASE}ingress_rate = 10000000\n"), "sw.toml").unwrap();
    let p = &c.bridges[0].ports[0];
    let pol = config::qos::policer_of(p, true).unwrap();
    assert_eq!((pol.cir, pol.cbs), (10_000_000, 100_000), "10 ms of the rate by default");
    assert!(config::qos::policer_of(p, false).is_none());
    check(
        &format!("{BASE}ingress_rate = 10000000\ningress_burst = 800\n"),
        "11:16",
        "bridge[0].port[0].ingress_rate",
        &["smaller than a frame", "12176 bits"],
    );
    check(
        &format!("{BASE}egress_rate = 0\n"),
        "11:15",
        "bridge[0].port[0].egress_rate",
        &["outside 1-400000000000 bits/s"],
    );
    check(
        &format!("{BASE}egress_burst = 100000\n"),
        "11:16",
        "bridge[0].port[0].egress_burst",
        &["without `egress_rate`"],
    );
    let trtcm = "[bridge.port.egress_policer]\nmarker = \"trtcm\"\ncir = 2000000\ncbs = 20000\n";
    check(&format!("{BASE}{trtcm}"), "11:1", "bridge[0].port[0].egress_policer", &["needs `pir` and `pbs`"]);
    check(
        &format!("{BASE}{trtcm}pir = 1000000\npbs = 20000\n"),
        "11:1",
        "bridge[0].port[0].egress_policer",
        &["pir 1000000 is below cir 2000000"],
    );
    check(
        &format!("{BASE}{trtcm}eir = 1\n"),
        "11:1",
        "bridge[0].port[0].egress_policer",
        &["`eir` is not a setting of trtcm"],
    );
    let c = Config::parse(&format!("{BASE}{trtcm}pir = 3000000\npbs = 30000\n"), "sw.toml").unwrap();
    assert_eq!(c.bridges[0].ports[0].egress_policer.as_ref().map(|p| p.marker), Some(config::Marker::Trtcm));
    check(
        &format!("{BASE}ingress_rate = 1\n[bridge.port.ingress_policer]\ncir = 1\ncbs = 1\nunit = \"packets\"\n"),
        "12:1",
        "bridge[0].port[0].ingress_policer",
        &["replaces"],
    );
}

#[test]
fn shapers_are_checked() {
    let sh = "[bridge.port.shaper]\nrate = 100000000\n\n[[bridge.port.shaper.class]]\nid = 1\nrate = 60000000\n";
    let c = Config::parse(&format!("{BASE}{sh}"), "sw.toml").unwrap();
    let s = c.bridges[0].ports[0].shaper.as_ref().unwrap();
    assert_eq!(config::qos::class_ceil(s, &s.classes[0]), 100_000_000, "the ceiling is the port's rate by default");
    assert_eq!(config::qos::queue_depth(&c.bridges[0].ports[0], &config::qos::queues_of(&s.classes[0])[0]).0, 256);
    check(
        &format!("{BASE}{sh}ceil = 50000000\n"),
        "17:8",
        "bridge[0].port[0].shaper.class[0].ceil",
        &["50000000 is below the class's guarantee 60000000"],
    );
    check(
        &format!("{BASE}{sh}\n[[bridge.port.shaper.class]]\nid = 2\nrate = 50000000\n"),
        "20:8",
        "bridge[0].port[0].shaper.class[1].rate",
        &["guarantees add up to 110000000, above the port's rate 100000000"],
    );
    check(
        &format!("{BASE}{sh}\n[[bridge.port.shaper.class]]\nid = 1\n"),
        "19:6",
        "bridge[0].port[0].shaper.class[1].id",
        &["class 1 is defined twice"],
    );
    check(
        &format!("{BASE}[bridge.port.shaper]\nrate = 100000000\nburst = 800\n"),
        "13:9",
        "bridge[0].port[0].shaper.burst",
        &["smaller than a frame of the port's MTU (12176 bits)"],
    );
    check(
        &format!("{BASE}[bridge.port.shaper]\nrate = 500000000000\n"),
        "12:8",
        "bridge[0].port[0].shaper.rate",
        &["outside 1-400000000000 bits/s"],
    );
    check(
        &format!("{BASE}{sh}in_ports = [\"p0\", \"nosuch\"]\n"),
        "17:19",
        "bridge[0].port[0].shaper.class[0].in_ports[1]",
        &["no port `nosuch`"],
    );
    let queue = "\n[[bridge.port.shaper.class.queue]]\n";
    check(
        &format!("{BASE}{sh}{}", queue.repeat(9)),
        "18:1",
        "bridge[0].port[0].shaper.class[0].queue",
        &["9 queues: a class holds 8"],
    );
    check(
        &format!("{BASE}{sh}{queue}dscp = [46]\n{queue}dscp = [46, 10]\n"),
        "22:8",
        "bridge[0].port[0].shaper.class[0].queue[1].dscp",
        &["DSCP 46 is outside 0-63 or in two queues"],
    );
    check(
        &format!("{BASE}{sh}{queue}aqm = \"red\"\ndepth = 100\nred_min = 80\nred_max = 40\n"),
        "22:11",
        "bridge[0].port[0].shaper.class[0].queue[0].red_max",
        &["RED needs red_min 80 < red_max 40 <= depth 100"],
    );
    check(
        &format!("{BASE}{sh}{queue}red_min = 10\n"),
        "18:1",
        "bridge[0].port[0].shaper.class[0].queue[0].aqm",
        &["RED thresholds on a tail-drop queue"],
    );
    check(
        &format!("{BASE}[bridge.port.shaper]\nrate = 100000000\nlimit = 0\n"),
        "13:9",
        "bridge[0].port[0].shaper.limit",
        &["0 is outside 1-16777216 packets"],
    );
    check(
        &format!("{BASE}[bridge.port.shaper]\nrate = 100000000\ndefault_class = 3\n"),
        "13:17",
        "bridge[0].port[0].shaper.default_class",
        &["no class 3"],
    );
}
