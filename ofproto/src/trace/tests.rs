//! Traces of hand-checked pipelines, and flows written as text against
//! the keys extraction gives real frames.

use super::*;
use crate::ofp::action::Instruction;
use crate::ofp::msg::{FlowMod, FlowModCommand};
use crate::ofp::oxm::{Match, Oxm};
use crate::testing::{udp4, Ports};

fn add(t: &mut Tables, table: u8, priority: u16, m: Match, ins: Vec<Instruction>) {
    let fm = FlowMod { cookie: 0x10 + u64::from(table), ..FlowMod::new(FlowModCommand::Add, table, priority, m, ins) };
    t.flow_mod(&fm, 0, &Ports).unwrap();
}

/// The bench's three tables: table 0 by in_port, table 1 rewrites
/// 10.0.0.1's packets (eth_dst, dec_ttl), table 2 outputs by in_port.
fn three_tables() -> Tables {
    let mut t = Tables::new(3, 1000);
    add(&mut t, 0, 10, Match::any().with(Oxm::exact_u64(Field::InPort, 1)), vec![Instruction::GotoTable(1)]);
    add(
        &mut t,
        1,
        10,
        Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::exact(Field::Ipv4Src, &[10, 0, 0, 1])),
        vec![
            Instruction::ApplyActions(vec![
                Action::SetField(Oxm::exact(Field::EthDst, &[2, 0, 0, 0, 0, 2])),
                Action::DecNwTtl,
            ]),
            Instruction::GotoTable(2),
        ],
    );
    add(
        &mut t,
        2,
        10,
        Match::any().with(Oxm::exact_u64(Field::InPort, 1)),
        vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])],
    );
    t
}

/// A packet of the rewritten flow: every table, the rewrite seen in the
/// key, output 2; the megaflow examines in_port, the Ethernet type and
/// all of the source address, and no port or destination.
#[test]
fn a_packet_walks_three_tables() {
    let t = three_tables();
    let key = parse_flow("in_port=1,udp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=53").unwrap();
    let tr = trace(&t, &key);
    type Lookup = (u8, Option<(u16, String, u64)>);
    let lookups: Vec<Lookup> = tr
        .events
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Lookup { table, entry } => {
                Some((*table, entry.as_ref().map(|m| (m.priority, m.match_.clone(), m.cookie))))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        lookups,
        vec![
            (0, Some((10, "in_port=1".into(), 0x10))),
            (1, Some((10, "eth_type=0x800,ipv4_src=10.0.0.1".into(), 0x11))),
            (2, Some((10, "in_port=1".into(), 0x12))),
        ]
    );
    let acts: Vec<&TraceEvent> = tr.events.iter().filter(|e| matches!(e, TraceEvent::Actions { .. })).collect();
    assert_eq!(
        acts,
        vec![
            &TraceEvent::Actions {
                actions: "set_field:02:00:00:00:00:02->eth_dst,dec_ttl".into(),
                changed: vec!["eth_dst=02:00:00:00:00:02".into()],
            },
            &TraceEvent::Actions { actions: "output:2".into(), changed: vec![] },
        ]
    );
    assert_eq!(tr.final_key.get(Field::EthDst), Some(&[2, 0, 0, 0, 0, 2][..]));
    assert_eq!(tr.megaflow(), "in_port=1,eth_type=0x800,ipv4_src=10.0.0.1");
    assert_eq!(tr.actions(), "set_field:02:00:00:00:00:02->eth_dst,dec_ttl,output:2");
    assert!(tr.translation.cacheable);
    let text = tr.to_string();
    for line in [
        "  1. priority 10, eth_type=0x800,ipv4_src=10.0.0.1, cookie 0x11",
        "     -> set_field:02:00:00:00:00:02->eth_dst,dec_ttl  (key: eth_dst=02:00:00:00:00:02)",
        "Megaflow: in_port=1,eth_type=0x800,ipv4_src=10.0.0.1",
        "Datapath actions: set_field:02:00:00:00:00:02->eth_dst,dec_ttl,output:2",
    ] {
        assert!(text.lines().any(|l| l == line), "no line `{line}` in\n{text}");
    }
}

/// A packet table 1 has no flow for, and no table-miss entry: dropped
/// there; prefix tracking keeps its megaflow to the 29 bits that tell
/// 10.0.0.9 from 10.0.0.1 (28 shared, and one more).
#[test]
fn a_miss_is_dropped_and_its_megaflow_is_a_prefix() {
    let tr = trace(&three_tables(), &parse_flow("in_port=1,ip,nw_src=10.0.0.9").unwrap());
    assert_eq!(
        tr.events.iter().rfind(|e| matches!(e, TraceEvent::Lookup { .. })),
        Some(&TraceEvent::Lookup { table: 1, entry: None })
    );
    assert_eq!(tr.actions(), "drop(miss in table 1)");
    assert_eq!(tr.megaflow(), "in_port=1,eth_type=0x800,ipv4_src=10.0.0.8/255.255.255.248");
    assert!(tr.to_string().contains("  1. no match and no table-miss flow: the packet is dropped"), "{tr}");
}

/// Another input port misses table 0 at once: only in_port is examined.
#[test]
fn another_port_misses_table_zero() {
    let tr = trace(&three_tables(), &parse_flow("in_port=3,ip,nw_src=10.0.0.1").unwrap());
    assert_eq!(tr.events, vec![TraceEvent::Lookup { table: 0, entry: None }]);
    assert_eq!(tr.megaflow(), "in_port=3");
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The key a written flow parses to is the key extraction gives a real
/// frame with those headers, for UDP, tagged UDP, ARP, TCP over IPv6 and
/// a neighbour solicitation.
#[test]
fn written_flows_are_the_keys_of_real_frames() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "in_port=3,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,udp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=1000,tp_dst=53",
            udp4(None),
        ),
        (
            "in_port=3,eth_src=02:00:00:00:00:01,eth_dst=02:00:00:00:00:02,dl_vlan=7,udp,ipv4_src=10.0.0.1,ipv4_dst=10.0.0.2,udp_src=1000,udp_dst=53",
            udp4(Some(7)),
        ),
        (
            "in_port=3,dl_dst=ff:ff:ff:ff:ff:ff,dl_src=02:00:00:00:00:01,arp,arp_op=1,nw_src=10.0.0.1,nw_dst=10.0.0.2,arp_sha=02:00:00:00:00:01",
            hex("ffffffffffff 020000000001 0806 0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002 \
                 000000000000000000000000000000000000"),
        ),
        (
            "in_port=3,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,tcp6,ipv6_src=2001:db8::1,ipv6_dst=2001:db8::2,tp_src=40000,tp_dst=80",
            hex("020000000002 020000000001 86dd 60000000 0014 06 40 20010db8000000000000000000000001 \
                 20010db8000000000000000000000002 9c40 0050 00000000 00000000 5002 ffff 0000 0000"),
        ),
        (
            "in_port=3,dl_src=02:00:00:00:00:01,dl_dst=33:33:ff:00:00:02,icmp6,ipv6_src=2001:db8::1,ipv6_dst=ff02::1:ff00:2,icmp_type=135,nd_target=2001:db8::2,nd_sll=02:00:00:00:00:01",
            hex("3333ff000002 020000000001 86dd 60000000 0020 3a ff 20010db8000000000000000000000001 \
                 ff0200000000000000000001ff000002 87 00 0000 00000000 20010db8000000000000000000000002 \
                 01 01 020000000001"),
        ),
    ];
    for (text, frame) in cases {
        let parsed = parse_flow(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let extracted = FlowKey::extract(&frame, 3);
        assert_eq!(key_string(&parsed), key_string(&extracted), "{text}");
        assert_eq!(parsed.present_bits(), extracted.present_bits(), "{text}");
    }
}

/// Flows that do not describe a packet are refused with why.
#[test]
fn bad_flows_are_refused_with_why() {
    for (text, why) in [
        ("tcp,tp_dst=80", "in_port"),
        ("in_port=1,tp_dst=80", "tcp, udp or sctp"),
        ("in_port=1,ip,nw_src=10.0.0", "not a value of ipv4_src"),
        ("in_port=1,colour=red", "unknown field `colour`"),
        ("in_port=1,ipv6_src=::1", "does not apply"),
        ("in_port=1,tcp,icmp_type=3", "icmp or icmp6"),
        ("in_port=1,arp,tcp", "contradicts"),
        ("in_port=1,dl_vlan=5000", "VLAN id"),
        ("in_port=1,nw_proto=300", "does not fit"),
        ("in_port=1,bogus", "field=value"),
    ] {
        let e = parse_flow(text).unwrap_err();
        assert!(e.contains(why), "{text}: {e}");
    }
}
