//! The agent against real OpenFlow messages: sessions, roles, flow, group
//! and meter mods, statistics.

use super::*;
use crate::ofp::action::port;
use crate::ofp::msg::{FlowModCommand, MeterBand, MeterMod};
use crate::ofp::multipart::{FlowStatsRequest, MpReply, MpRequest, MultipartReply, MultipartRequest};
use crate::ofp::{Instruction, Match};

struct Dp(Vec<PortInfo>, Vec<(u32, Vec<Action>)>);
impl Datapath for Dp {
    fn ports(&self) -> Vec<PortInfo> {
        self.0.clone()
    }
    fn packet_out(&mut self, in_port: u32, actions: &[Action], _data: &[u8]) -> Result<(), OfpError> {
        self.1.push((in_port, actions.to_vec()));
        Ok(())
    }
    fn port_mod(&mut self, _p: u32, _c: u32, _m: u32) -> bool {
        true
    }
}

fn dp() -> Dp {
    Dp(
        (1..=2).map(|i| PortInfo { port_no: i, name: format!("p{i}"), link_up: true, ..PortInfo::default() }).collect(),
        vec![],
    )
}

fn replies(a: &mut Agent, id: ConnId, m: Message, d: &mut Dp) -> Vec<Message> {
    let (out, close) = a.receive(id, &m.encode(7), d, 1000);
    assert!(!close);
    out.into_iter().map(|(_, b)| Message::decode(&b).unwrap().1).collect()
}

fn add(priority: u16, out: u32) -> Message {
    let mut f = crate::ofp::msg::FlowMod::new(
        FlowModCommand::Add,
        0,
        priority,
        Match::any(),
        vec![Instruction::ApplyActions(vec![Action::Output { port: out, max_len: 0 }])],
    );
    f.cookie = 1;
    f.flags = FF_SEND_FLOW_REM;
    Message::FlowMod(f)
}

/// A flow statistics request for every flow of every table.
fn all_flows() -> FlowStatsRequest {
    FlowStatsRequest {
        table_id: 0xff,
        out_port: port::ANY,
        out_group: port::ANY,
        cookie: 0,
        cookie_mask: 0,
        match_: Match::any(),
    }
}

#[test]
fn a_session_negotiates_answers_and_changes_tables() {
    let mut a = Agent::new(1, 4, 100);
    let mut d = dp();
    let hello = a.connected(1);
    assert_eq!(Message::decode(&hello).unwrap().1, Message::Hello { versions: vec![4] });
    assert!(replies(&mut a, 1, Message::Hello { versions: vec![1, 4] }, &mut d).is_empty());
    let f = replies(&mut a, 1, Message::FeaturesRequest, &mut d);
    assert!(matches!(&f[0], Message::FeaturesReply(x) if x.n_tables == 4 && x.datapath_id == 1));
    assert!(replies(&mut a, 1, add(5, 2), &mut d).is_empty());
    // An output to a port that does not exist: BAD_ACTION/BAD_OUT_PORT.
    let e = replies(&mut a, 1, add(6, 9), &mut d);
    assert!(matches!(&e[0], Message::Error { err_type: 2, code: 4, .. }), "{e:?}");
    let req = Message::MultipartRequest(MultipartRequest { flags: 0, body: MpRequest::Flow(all_flows()) });
    let r = replies(&mut a, 1, req, &mut d);
    assert!(
        matches!(&r[0], Message::MultipartReply(MultipartReply { body: MpReply::Flow(v), .. }) if v.len() == 1 && v[0].priority == 5)
    );
    assert_eq!(replies(&mut a, 1, Message::BarrierRequest, &mut d), vec![Message::BarrierReply]);
    // A message cut short: an error, and the session goes on.
    let (out, close) = a.receive(1, &[4, 14, 0, 9, 0, 0, 0, 1, 0], &mut d, 0);
    assert!(!close);
    assert!(matches!(Message::decode(&out[0].1).unwrap().1, Message::Error { err_type: 1, code: 6, .. }));
    let tf = replies(
        &mut a,
        1,
        Message::MultipartRequest(MultipartRequest { flags: 0, body: MpRequest::TableFeatures(vec![]) }),
        &mut d,
    );
    assert_eq!(tf.len(), 4, "one table per part");
}

/// What the datapath counted on its megaflows reaches the flow
/// statistics a controller asks for and keeps a flow with an idle
/// timeout alive, before any pass of the folder's own thread: the
/// agent folds first.
#[test]
fn datapath_counts_reach_statistics_and_idle_timeouts() {
    use crate::megaflow::{Megaflow, MegaflowCache};
    let mut a = Agent::new(1, 1, 100);
    let mut d = dp();
    a.connected(1);
    replies(&mut a, 1, Message::Hello { versions: vec![4] }, &mut d);
    let Message::FlowMod(mut f) = add(5, 2) else { unreachable!() };
    f.idle_timeout = 1;
    assert!(replies(&mut a, 1, Message::FlowMod(f), &mut d).is_empty());
    // A PMD thread's cache: one megaflow, hit 3 times at 1,500 ms.
    let key = crate::flow::FlowKey::extract(&[0u8; 60], 1);
    let t = crate::xlate::translate(&a.tables, &key);
    let mut cache = MegaflowCache::default();
    let c = cache.install(&key, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 1000))).unwrap();
    cache.get(c).hit(3, 180, 1500);
    cache.hand_over(&a.folder, &a.tables);
    let req = Message::MultipartRequest(MultipartRequest { flags: 0, body: MpRequest::Aggregate(all_flows()) });
    let r = replies(&mut a, 1, req, &mut d);
    assert!(
        matches!(
            &r[0],
            Message::MultipartReply(MultipartReply {
                body: MpReply::Aggregate { packet_count: 3, byte_count: 180, .. },
                ..
            })
        ),
        "{r:?}"
    );
    // Hit again at 2,200 (not folded yet): at 2,600 the flow is not
    // idle for a second.
    cache.get(c).hit(1, 60, 2200);
    assert!(a.tick(2600).is_empty());
    assert_eq!(a.tables.tables[0].entries.len(), 1, "kept alive by the datapath's hit");
    // No hit since 2,200: gone at 3,200, its flow-removed counting all 4.
    let removed = a.tick(3200);
    assert_eq!(a.tables.tables[0].entries.len(), 0);
    let Message::FlowRemoved(fr) = Message::decode(&removed[0].1).unwrap().1 else { panic!("{removed:?}") };
    assert_eq!((fr.packet_count, fr.byte_count), (4, 240));
}

#[test]
fn roles_master_slave_and_generation_ids() {
    let mut a = Agent::new(1, 4, 100);
    let mut d = dp();
    for id in [1, 2] {
        a.connected(id);
        replies(&mut a, id, Message::Hello { versions: vec![4] }, &mut d);
    }
    let r = replies(&mut a, 1, Message::RoleRequest(Role { role: role::MASTER, generation_id: 10 }), &mut d);
    assert_eq!(r, vec![Message::RoleReply(Role { role: role::MASTER, generation_id: 10 })]);
    replies(&mut a, 2, Message::RoleRequest(Role { role: role::SLAVE, generation_id: 10 }), &mut d);
    let e = replies(&mut a, 2, add(1, 1), &mut d);
    assert!(matches!(&e[0], Message::Error { err_type: 1, code: 10, .. }), "a slave may not modify: {e:?}");
    let stale = replies(&mut a, 2, Message::RoleRequest(Role { role: role::MASTER, generation_id: 9 }), &mut d);
    assert!(matches!(&stale[0], Message::Error { err_type: 11, code: 0, .. }), "{stale:?}");
    replies(&mut a, 2, Message::RoleRequest(Role { role: role::MASTER, generation_id: 11 }), &mut d);
    assert_eq!((a.role_of(1), a.role_of(2)), (Some(role::SLAVE), Some(role::MASTER)), "the old master steps down");
}

#[test]
fn a_meter_drops_what_exceeds_its_rate() {
    let mut a = Agent::new(1, 1, 10);
    let mut d = dp();
    a.connected(1);
    replies(&mut a, 1, Message::Hello { versions: vec![4] }, &mut d);
    // 100 packets per second, burst 10 packets.
    let mm = MeterMod {
        command: 0,
        flags: 2 | 4,
        meter_id: 1,
        bands: vec![MeterBand { band_type: 1, rate: 100, burst_size: 10, prec_level: 0 }],
    };
    assert!(replies(&mut a, 1, Message::MeterMod(mm), &mut d).is_empty());
    let m = &a.meters[&1];
    // 1000 packets offered over one second: ~10 (burst) + ~100 (rate) pass.
    let passed = (0..1000u64).filter(|i| m.apply(64, i * 1_000_000).is_none()).count();
    assert!((105..=115).contains(&passed), "{passed} passed");
    assert_eq!(m.stats.packets.load(Ordering::Relaxed), 1000);
    assert_eq!(m.stats.bands[0].0.load(Ordering::Relaxed), 1000 - passed as u64);
    // Bad meter mods.
    let bad = |flags, rate| MeterMod {
        command: 0,
        flags,
        meter_id: 2,
        bands: vec![MeterBand { band_type: 1, rate, burst_size: 0, prec_level: 0 }],
    };
    let e = replies(&mut a, 1, Message::MeterMod(bad(3, 10)), &mut d);
    assert!(matches!(&e[0], Message::Error { err_type: 12, code: 5, .. }), "kbps and pktps: {e:?}");
    let e = replies(&mut a, 1, Message::MeterMod(bad(1, 0)), &mut d);
    assert!(matches!(&e[0], Message::Error { err_type: 12, code: 6, .. }), "rate 0: {e:?}");
}

#[test]
fn a_wrong_version_is_refused_and_closed() {
    let mut a = Agent::new(1, 4, 100);
    let mut d = dp();
    a.connected(1);
    let (out, close) = a.receive(1, &Message::Hello { versions: vec![1] }.encode(3), &mut d, 0);
    assert!(close);
    assert!(matches!(Message::decode(&out[0].1).unwrap().1, Message::Error { err_type: 0, code: 0, .. }));
}
