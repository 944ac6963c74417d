//! The codec against Open vSwitch, an independent implementation:
//! `ovs-ofctl ofp-print` decodes what we encode, and what `ovs-ofctl -O
//! OpenFlow13` sends to a switch (a listener in this test) decodes into what
//! its command line said.

use ofproto::ofp::action::port;
use ofproto::ofp::msg::{
    Bucket, Features, FlowMod, FlowModCommand, GroupMod, MeterBand, MeterMod, PacketIn, NO_BUFFER,
};
use ofproto::ofp::multipart::{Desc, FlowStats, MpReply, MpRequest, MultipartReply};
use ofproto::ofp::port::{PortDesc, PortStats};
use ofproto::ofp::{frame_len, Action, Field, Instruction, Match, Message, OfpError, Oxm};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What `ovs-ofctl ofp-print` says about our encoding of `m`.
fn ovs_print(m: &Message) -> String {
    save_seed(&m.encode(0x1234));
    let out = Command::new("ovs-ofctl")
        .args(["ofp-print", &hex(&m.encode(0x1234))])
        .output()
        .expect("ovs-ofctl (Debian's openvswitch-common; ci/setup installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("***"), "ovs-ofctl found a problem in our encoding of {m:?}:\n{text}");
    text
}

/// With OFP_CORPUS_OUT set, keeps `frame` as a fuzzing seed there (how
/// fuzz/corpus/ofp was made: real messages from ovs-ofctl and from us).
fn save_seed(frame: &[u8]) {
    if let Some(dir) = std::env::var_os("OFP_CORPUS_OUT") {
        let name = format!("t{}-{}-{}", frame[1], frame.len(), hex(&frame[frame.len().saturating_sub(4)..]));
        std::fs::write(std::path::Path::new(&dir).join(name), frame).unwrap();
    }
}

fn ip_tcp_match() -> Match {
    Match::any()
        .with(Oxm::exact_u64(Field::InPort, 1))
        .with(Oxm::exact_u64(Field::EthType, 0x0800))
        .with(Oxm::masked(Field::Ipv4Src, &[10, 1, 0, 0], &[255, 255, 0, 0]))
        .with(Oxm::exact_u64(Field::IpProto, 6))
        .with(Oxm::exact_u64(Field::TcpDst, 80))
}

#[test]
fn ovs_reads_what_we_encode() {
    let t = ovs_print(&Message::Hello { versions: vec![1, 4] });
    assert!(t.contains("OFPT_HELLO (OF1.3)") && t.contains("version bitmap: 0x01, 0x04"), "{t}");

    let fm = Message::FlowMod(FlowMod {
        cookie: 0xabc,
        cookie_mask: 0,
        table_id: 2,
        command: FlowModCommand::Add,
        idle_timeout: 10,
        hard_timeout: 0,
        priority: 100,
        buffer_id: NO_BUFFER,
        out_port: port::ANY,
        out_group: port::ANY,
        flags: 1,
        match_: ip_tcp_match(),
        instructions: vec![
            Instruction::ApplyActions(vec![
                Action::SetField(Oxm::exact(Field::EthDst, &[2, 0, 0, 0, 0, 9])),
                Action::PushVlan(0x8100),
                Action::SetField(Oxm::exact_u64(Field::VlanVid, 0x1000 | 10)),
                Action::DecNwTtl,
            ]),
            Instruction::WriteActions(vec![Action::Output { port: 3, max_len: 0 }]),
            Instruction::WriteMetadata { metadata: 0x10, mask: 0xff },
            Instruction::GotoTable(5),
        ],
    });
    let t = ovs_print(&fm);
    for want in [
        "OFPT_FLOW_MOD (OF1.3)",
        "ADD table:2",
        "priority=100",
        "tcp,in_port=1,nw_src=10.1.0.0/16,tp_dst=80",
        "cookie:0xabc",
        "idle:10",
        "send_flow_rem",
        // Apply-actions print bare, before the other instructions.
        "actions=set_field:02:00:00:00:00:09->eth_dst,push_vlan:0x8100,set_field:4106->vlan_vid,dec_ttl,",
        "write_actions(output:3)",
        "write_metadata:0x10/0xff",
        "goto_table:5",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }

    let g = Message::GroupMod(GroupMod {
        command: 0,
        group_type: 1,
        group_id: 7,
        buckets: vec![
            Bucket {
                weight: 3,
                watch_port: port::ANY,
                watch_group: port::ANY,
                actions: vec![Action::Output { port: 1, max_len: 0 }],
            },
            Bucket {
                weight: 1,
                watch_port: port::ANY,
                watch_group: port::ANY,
                actions: vec![Action::Output { port: 2, max_len: 0 }],
            },
        ],
    });
    let t = ovs_print(&g);
    assert!(t.contains("ADD group_id=7,type=select,bucket=weight:3,actions=output:1,bucket=actions=output:2"), "{t}");

    let m = Message::MeterMod(MeterMod {
        command: 0,
        flags: 1 | 4 | 8,
        meter_id: 5,
        bands: vec![MeterBand { band_type: 1, rate: 1000, burst_size: 100, prec_level: 0 }],
    });
    let t = ovs_print(&m);
    assert!(
        t.contains("ADD meter=5 kbps burst stats bands=") && t.contains("type=drop rate=1000 burst_size=100"),
        "{t}"
    );

    let f = Message::FeaturesReply(Features {
        datapath_id: 0x1,
        n_buffers: 0,
        n_tables: 254,
        auxiliary_id: 0,
        capabilities: 0x4f,
    });
    let t = ovs_print(&f);
    assert!(t.contains("dpid:0000000000000001") && t.contains("n_tables:254"), "{t}");

    let pi = Message::PacketIn(PacketIn {
        buffer_id: NO_BUFFER,
        total_len: 60,
        reason: 0,
        table_id: 0,
        cookie: 0,
        match_: Match::any().with(Oxm::exact_u64(Field::InPort, 2)),
        data: vec![0xff; 60],
    });
    let t = ovs_print(&pi);
    assert!(t.contains("OFPT_PACKET_IN (OF1.3)") && t.contains("in_port=2") && t.contains("(via no_match)"), "{t}");

    let desc = PortDesc {
        port_no: 1,
        hw_addr: [2, 0, 0, 0, 0, 1],
        name: "c1".into(),
        curr_speed: 10_000_000,
        max_speed: 10_000_000,
        ..PortDesc::default()
    };
    let t = ovs_print(&Message::MultipartReply(MultipartReply { flags: 0, body: MpReply::PortDesc(vec![desc]) }));
    assert!(t.contains("OFPST_PORT_DESC reply (OF1.3)") && t.contains("1(c1): addr:02:00:00:00:00:01"), "{t}");

    let fs = FlowStats {
        table_id: 0,
        duration_sec: 3,
        duration_nsec: 0,
        priority: 5,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        cookie: 0,
        packet_count: 7,
        byte_count: 700,
        match_: ip_tcp_match(),
        instructions: vec![Instruction::ApplyActions(vec![Action::Output { port: port::NORMAL, max_len: 0 }])],
    };
    let t = ovs_print(&Message::MultipartReply(MultipartReply { flags: 0, body: MpReply::Flow(vec![fs]) }));
    assert!(t.contains("n_packets=7, n_bytes=700, priority=5,tcp,in_port=1") && t.contains("actions=NORMAL"), "{t}");

    let ps =
        PortStats { port_no: 1, counters: [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0], duration_sec: 1, duration_nsec: 0 };
    let t = ovs_print(&Message::MultipartReply(MultipartReply { flags: 0, body: MpReply::PortStats(vec![ps]) }));
    assert!(t.contains("port  1: rx pkts=1, bytes=3") && t.contains("tx pkts=2, bytes=4"), "{t}");

    let d = Desc { mfr_desc: "vswitch".into(), sw_desc: "0.1".into(), ..Desc::default() };
    let t = ovs_print(&Message::MultipartReply(MultipartReply { flags: 0, body: MpReply::Desc(d) }));
    assert!(t.contains("Manufacturer: vswitch"), "{t}");

    let e = Message::error(OfpError::BadMatch(ofproto::ofp::error::BadMatch::BadPrereq), &fm.encode(9));
    let t = ovs_print(&e);
    assert!(t.contains("OFPBMC_BAD_PREREQ"), "{t}");
}

/// Accepts one `ovs-ofctl` connection and answers like a minimal switch;
/// returns every message it received.
fn serve_one(l: TcpListener) -> Vec<Message> {
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&Message::Hello { versions: vec![4] }.encode(1)).unwrap();
    let mut got = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(n) = frame_len(&buf).filter(|n| buf.len() >= *n && *n >= 8) {
            let frame: Vec<u8> = buf.drain(..n).collect();
            save_seed(&frame);
            let (xid, m) = Message::decode(&frame).unwrap_or_else(|e| panic!("{e:?} decoding {}", hex(&frame)));
            let reply = match &m {
                Message::EchoRequest(d) => Some(Message::EchoReply(d.clone())),
                Message::BarrierRequest => Some(Message::BarrierReply),
                Message::FeaturesRequest => {
                    Some(Message::FeaturesReply(Features { datapath_id: 1, n_tables: 254, ..Features::default() }))
                }
                Message::MultipartRequest(r) if matches!(r.body, MpRequest::PortDesc) => {
                    Some(Message::MultipartReply(MultipartReply { flags: 0, body: MpReply::PortDesc(vec![]) }))
                }
                _ => None,
            };
            if let Some(r) = reply {
                s.write_all(&r.encode(xid)).unwrap();
            }
            got.push(m);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return got,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn ofctl(args: &[&str]) -> Vec<Message> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || serve_one(l));
    let target = format!("tcp:127.0.0.1:{port}");
    let mut full: Vec<&str> = vec!["-O", "OpenFlow13", "--no-names"];
    full.extend_from_slice(&args[..1]);
    full.push(&target);
    full.extend_from_slice(&args[1..]);
    let out = Command::new("ovs-ofctl").args(&full).output().unwrap();
    assert!(out.status.success(), "ovs-ofctl {full:?}: {}", String::from_utf8_lossy(&out.stderr));
    server.join().unwrap()
}

#[test]
fn we_read_what_ovs_ofctl_sends() {
    let got = ofctl(&[
        "add-flow",
        "table=1,priority=7,cookie=0x5,udp6,ipv6_src=fe80::/64,udp_dst=53,idle_timeout=30,\
         actions=push_vlan:0x8100,set_field:4106->vlan_vid,group:4,output:2,controller:128",
    ]);
    let fm = got.iter().find_map(|m| if let Message::FlowMod(f) = m { Some(f) } else { None }).expect("a flow-mod");
    assert_eq!((fm.table_id, fm.priority, fm.cookie, fm.idle_timeout), (1, 7, 5, 30));
    assert_eq!(fm.command, FlowModCommand::Add);
    assert_eq!(fm.match_.get(Field::EthType).unwrap().value_u64(), 0x86dd);
    assert_eq!(fm.match_.get(Field::IpProto).unwrap().value_u64(), 17);
    assert_eq!(fm.match_.get(Field::UdpDst).unwrap().value_u64(), 53);
    let src = fm.match_.get(Field::Ipv6Src).unwrap();
    assert_eq!(&src.value()[..2], &[0xfe, 0x80]);
    assert_eq!(src.mask().unwrap(), &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        fm.instructions,
        vec![Instruction::ApplyActions(vec![
            Action::PushVlan(0x8100),
            Action::SetField(Oxm::exact_u64(Field::VlanVid, 0x1000 | 10)),
            Action::Group(4),
            Action::Output { port: 2, max_len: 0 },
            Action::Output { port: port::CONTROLLER, max_len: 128 },
        ])]
    );
    assert!(got.contains(&Message::BarrierRequest), "{got:?}");

    let got = ofctl(&[
        "add-group",
        "group_id=3,type=ff,bucket=watch_port:1,actions=output:1,bucket=watch_port:2,actions=output:2",
    ]);
    let gm = got.iter().find_map(|m| if let Message::GroupMod(g) = m { Some(g) } else { None }).expect("a group-mod");
    assert_eq!((gm.command, gm.group_type, gm.group_id, gm.buckets.len()), (0, 3, 3, 2));
    assert_eq!(gm.buckets[1].watch_port, 2);
    assert_eq!(gm.buckets[1].actions, vec![Action::Output { port: 2, max_len: 0 }]);

    let got = ofctl(&["add-meter", "meter=2,pktps,burst,bands=type=dscp_remark,rate=500,burst_size=50,prec_level=1"]);
    let mm = got.iter().find_map(|m| if let Message::MeterMod(x) = m { Some(x) } else { None }).expect("a meter-mod");
    assert_eq!((mm.meter_id, mm.flags), (2, 2 | 4));
    assert_eq!(mm.bands, vec![MeterBand { band_type: 2, rate: 500, burst_size: 50, prec_level: 1 }]);

    let got = ofctl(&["del-flows", "--strict", "priority=9,arp,arp_tpa=10.0.0.1"]);
    let fm = got.iter().find_map(|m| if let Message::FlowMod(f) = m { Some(f) } else { None }).expect("a flow-mod");
    assert_eq!((fm.command, fm.priority, fm.table_id), (FlowModCommand::DeleteStrict, 9, 0xff));
    assert_eq!(fm.match_.get(Field::ArpTpa).unwrap().value(), &[10, 0, 0, 1]);
}

/// Every message we can build survives encode -> decode unchanged.
#[test]
fn encoded_messages_decode_to_themselves() {
    let msgs = vec![
        Message::Hello { versions: vec![4] },
        Message::EchoRequest(vec![1, 2, 3]),
        Message::BarrierRequest,
        Message::RoleRequest(ofproto::ofp::msg::Role { role: 2, generation_id: 9 }),
        Message::SetAsync(ofproto::ofp::msg::AsyncConfig {
            packet_in_mask: [3, 0],
            port_status_mask: [7, 7],
            flow_removed_mask: [15, 0],
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MpReply::Aggregate { packet_count: 1, byte_count: 2, flow_count: 3 },
        }),
    ];
    for m in msgs {
        let b = m.encode(77);
        assert_eq!(Message::decode(&b), Ok((77, m)));
    }
}
