//! vswitchd as an OpenFlow 1.3 switch driven by the real `ovs-ofctl -O
//! OpenFlow13` (Debian's openvswitch-common), with and without
//! `--no-names` (with names, it first asks for table features and port
//! descriptions): flows added, modified, deleted strictly and not, dumped;
//! refused flows get the spec's error; groups, meters, tables and ports
//! dumped; a malformed message gets an OpenFlow error and the connection
//! and the switch keep working. Ports are DPDK null devices that receive
//! nothing (`no-rx=1`): no kernel interfaces, nothing leaves the machine.

mod common;

use common::free_port;
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Switch {
    dir: std::path::PathBuf,
    child: Child,
    port: u16,
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start() -> Switch {
    let tag = std::process::id();
    let dir = std::env::temp_dir().join(format!("vswitchd-of-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let sock = dir.join("ctl.sock");
    let cfg = dir.join("of.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nmemory = \"no-huge\"\nmemory_mb = 256\nfile_prefix = \"vsof{tag}\"\n\n[control]\nsocket = \"{}\"\n\n\
             [[bridge]]\nname = \"br0\"\ndatapath_id = \"0xab\"\nflow_tables = 8\ncontrollers = [\"ptcp:{port}:127.0.0.1\"]\n\n\
             [[bridge.port]]\nname = \"p1\"\ntype = \"dpdk\"\ndevargs = \"net_null0,no-rx=1\"\n\n\
             [[bridge.port]]\nname = \"p2\"\ntype = \"dpdk\"\ndevargs = \"net_null1,no-rx=1\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vswitchd"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let mut s = Switch { dir, child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            s.child.try_wait().unwrap().is_none(),
            "vswitchd exited: {}",
            std::fs::read_to_string(s.dir.join("log")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "no OpenFlow listener");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

impl Switch {
    fn ofctl_out(&self, names: bool, args: &[&str]) -> Output {
        let target = format!("tcp:127.0.0.1:{}", self.port);
        let mut c = Command::new("ovs-ofctl");
        c.args(["-O", "OpenFlow13"]);
        if !names {
            c.arg("--no-names");
        }
        // Options (--strict) after the command, before the target.
        let opts = args[1..].iter().take_while(|a| a.starts_with("--")).count();
        c.arg(args[0]).args(&args[1..=opts]).arg(&target).args(&args[1 + opts..]);
        c.output().expect("ovs-ofctl (ci/setup installs openvswitch-common)")
    }
    /// `ovs-ofctl ARGS`, which must succeed; its output.
    fn ofctl(&self, names: bool, args: &[&str]) -> String {
        let o = self.ofctl_out(names, args);
        assert!(o.status.success(), "ovs-ofctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    /// `ovs-ofctl ARGS`, which must fail; its error output.
    fn ofctl_err(&self, args: &[&str]) -> String {
        let o = self.ofctl_out(true, args);
        assert!(!o.status.success(), "ovs-ofctl {args:?} should have failed");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
    fn ctl(&self, args: &[&str]) -> Value {
        let o = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .args(["--socket", &self.dir.join("ctl.sock").display().to_string(), "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

fn flow_lines(dump: &str) -> Vec<String> {
    // Durations change from dump to dump: dropped.
    dump.lines()
        .skip(1)
        .map(|l| {
            l.split(", ")
                .filter(|p| !p.trim_start().starts_with("duration="))
                .collect::<Vec<_>>()
                .join(", ")
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn ovs_ofctl_drives_flow_tables() {
    let s = start();
    for names in [true, false] {
        s.ofctl(names, &["del-flows"]);
        s.ofctl(names, &["add-flow", "table=0,priority=10,in_port=1,actions=output:2"]);
        s.ofctl(
            names,
            &["add-flow", "table=0,priority=20,cookie=0x7,ip,nw_dst=10.0.0.0/8,actions=dec_ttl,goto_table:1"],
        );
        s.ofctl(names, &["add-flow", "table=1,priority=5,idle_timeout=60,actions=NORMAL"]);
        assert_eq!(
            flow_lines(&s.ofctl(names, &["dump-flows"])),
            vec![
                "cookie=0x7, table=0, n_packets=0, n_bytes=0, priority=20,ip,nw_dst=10.0.0.0/8 actions=dec_ttl,goto_table:1",
                "cookie=0x0, table=0, n_packets=0, n_bytes=0, priority=10,in_port=1 actions=output:2",
                "cookie=0x0, table=1, n_packets=0, n_bytes=0, idle_timeout=60, priority=5 actions=NORMAL",
            ],
            "names: {names}"
        );
    }
    // Non-strict modify: every flow in table 1.
    s.ofctl(true, &["mod-flows", "table=1,actions=output:1"]);
    assert!(s.ofctl(true, &["dump-flows", "table=1"]).contains("priority=5 actions=output:1"));
    // Strict delete needs the exact match and priority.
    s.ofctl(true, &["del-flows", "--strict", "table=0,priority=11,in_port=1"]);
    assert_eq!(flow_lines(&s.ofctl(true, &["dump-flows"])).len(), 3);
    s.ofctl(true, &["del-flows", "--strict", "table=0,priority=10,in_port=1"]);
    assert_eq!(flow_lines(&s.ofctl(true, &["dump-flows"])).len(), 2);
    // Non-strict delete by cookie.
    s.ofctl(true, &["del-flows", "cookie=0x7/-1"]);
    assert_eq!(flow_lines(&s.ofctl(true, &["dump-flows"])).len(), 1);
    // Refused flows get the spec's errors.
    assert!(s.ofctl_err(&["add-flow", "actions=output:9"]).contains("OFPBAC_BAD_OUT_PORT"));
    assert!(s.ofctl_err(&["add-flow", "table=3,actions=goto_table:1"]).contains("OFPBIC_BAD_TABLE_ID"));
    assert!(s.ofctl_err(&["add-flow", "table=9,actions=drop"]).contains("OFPFMFC_BAD_TABLE_ID"), "8 tables");
    assert!(s.ofctl_err(&["add-flow", "actions=group:5"]).contains("OFPBAC_BAD_OUT_GROUP"));
    // Tables, ports.
    let tables = s.ofctl(true, &["dump-tables"]);
    assert!(tables.contains("table 0:") && tables.contains("active=0"), "{tables}");
    assert!(tables.contains("table 1:") && tables.contains("active=1"), "{tables}");
    let desc = s.ofctl(true, &["dump-ports-desc"]);
    assert!(desc.contains("1(p1): addr:") && desc.contains("2(p2): addr:"), "{desc}");
    assert!(s.ofctl(true, &["dump-ports"]).contains("2 ports"));
    // Groups and meters.
    s.ofctl(
        true,
        &["add-group", "group_id=1,type=select,bucket=weight:2,actions=output:1,bucket=weight:1,actions=output:2"],
    );
    assert!(s
        .ofctl(true, &["dump-groups"])
        .contains("group_id=1,type=select,bucket=weight:2,actions=output:1,bucket=actions=output:2"));
    assert!(s
        .ofctl_err(&["add-group", "group_id=1,type=all,bucket=actions=output:1"])
        .contains("OFPGMFC_GROUP_EXISTS"));
    s.ofctl(true, &["add-flow", "priority=3,actions=group:1"]);
    s.ofctl(true, &["add-meter", "meter=1,kbps,burst,bands=type=drop,rate=1000,burst_size=100"]);
    assert!(s.ofctl(true, &["dump-meters"]).contains("meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100"));
    // Deleting the group removes the flow that used it.
    s.ofctl(true, &["del-groups", "group_id=1"]);
    assert!(!s.ofctl(true, &["dump-flows"]).contains("group:1"));
    // vswitchctl sees the same.
    let flows = s.ctl(&["dump-flows", "br0"]);
    assert_eq!(flows["flows"].as_array().unwrap().len(), 1, "{flows}");
    assert_eq!(flows["flows"][0]["actions"], "output:1");
    let c = s.ctl(&["controllers"]);
    assert_eq!(c["bridges"][0]["datapath_id"], "00000000000000ab");
    assert_eq!(c["bridges"][0]["controllers"][0]["state"], "listening");
}

#[test]
fn a_malformed_message_gets_an_error_and_the_session_goes_on() {
    let s = start();
    let mut t = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let read_msg = |t: &mut std::net::TcpStream| {
        let mut h = [0u8; 8];
        t.read_exact(&mut h).unwrap();
        let n = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let mut body = vec![0u8; n - 8];
        t.read_exact(&mut body).unwrap();
        (h, body)
    };
    let (h, _) = read_msg(&mut t);
    assert_eq!((h[0], h[1]), (4, 0), "the switch says HELLO first");
    t.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap();
    // A message of an unknown type 99: OFPET_BAD_REQUEST / OFPBRC_BAD_TYPE.
    t.write_all(&[4, 99, 0, 8, 0, 0, 0, 2]).unwrap();
    let (h, body) = read_msg(&mut t);
    assert_eq!((h[1], &h[4..8], &body[..4]), (1, &[0u8, 0, 0, 2][..], &[0u8, 1, 0, 1][..]));
    // A flow-mod cut short: OFPBRC_BAD_LEN.
    t.write_all(&[4, 14, 0, 12, 0, 0, 0, 3, 0, 0, 0, 0]).unwrap();
    let (h, body) = read_msg(&mut t);
    assert_eq!((h[1], &body[..4]), (1, &[0u8, 1, 0, 6][..]));
    // Still answering.
    t.write_all(&[4, 2, 0, 8, 0, 0, 0, 4]).unwrap();
    let (h, _) = read_msg(&mut t);
    assert_eq!((h[1], h[7]), (3, 4), "echo reply");
    assert!(s.ofctl(true, &["dump-flows"]).starts_with("OFPST_FLOW reply"));
}

/// Ports added and removed at run time are announced to controllers with
/// PORT_STATUS (ADD, DELETE).
#[test]
fn controllers_hear_of_ports_added_and_removed() {
    use ofproto::ofp::Message;
    let s = start();
    let mut t = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    t.write_all(&Message::Hello { versions: vec![4] }.encode(1)).unwrap();
    let mut buf = Vec::new();
    let mut next_status = |t: &mut std::net::TcpStream| {
        let ps = common::next_port_status(t, &mut buf, None);
        (ps.reason, ps.desc.name)
    };
    // Let the session start before the change.
    std::thread::sleep(Duration::from_millis(300));
    s.ctl(&["add-port", "br0", "p3", "type=dpdk", "devargs=net_null2,no-rx=1"]);
    assert_eq!(next_status(&mut t), (0, "p3".to_string()), "OFPPR_ADD");
    s.ctl(&["del-port", "p3"]);
    assert_eq!(next_status(&mut t), (1, "p3".to_string()), "OFPPR_DELETE");
}
