//! The MAC table against a plain HashMap: for random sequences of learn,
//! expire and flush (few keys, a roomy table: no bucket is ever full),
//! every lookup and every counter agrees.

use proptest::prelude::*;
use std::collections::HashMap;
use vswitch::datapath::l2::mac_table::{Learned, MacTable};
use wire::EthernetAddress;

#[derive(Debug, Clone)]
enum Op {
    Learn { vlan: u16, mac: u8, port: u32, dt: u32 },
    Expire { dt: u32, aging: u32 },
    Flush { port: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u16..3, 0u8..12, 0u32..4, 0u32..3).prop_map(|(vlan, mac, port, dt)| Op::Learn { vlan, mac, port, dt }),
        1 => (0u32..5, 0u32..6).prop_map(|(dt, aging)| Op::Expire { dt, aging }),
        1 => (0u32..4).prop_map(|port| Op::Flush { port }),
    ]
}

proptest! {
    #[test]
    fn table_equals_model(ops in prop::collection::vec(op(), 1..200)) {
        let t = MacTable::new(4096);
        let mut model: HashMap<(u16, u8), (u32, u32)> = HashMap::new();
        let mut now = 0u32;
        let mac = |m: u8| EthernetAddress([2, 0, 0, 0, 0, m]);
        for op in ops {
            match op {
                Op::Learn { vlan, mac: m, port, dt } => {
                    now += dt;
                    let want = match model.get(&(vlan, m)) {
                        None => Learned::New,
                        Some((p, _)) if *p == port => Learned::Known,
                        Some((p, _)) => Learned::Moved(*p),
                    };
                    model.insert((vlan, m), (port, now));
                    prop_assert_eq!(t.learn(vlan, mac(m), port, now), want);
                }
                Op::Expire { dt, aging } => {
                    now += dt;
                    let before = model.len();
                    model.retain(|_, (_, seen)| now - *seen <= aging);
                    prop_assert_eq!(t.expire(now, aging), (before - model.len()) as u64);
                }
                Op::Flush { port } => {
                    let before = model.len();
                    model.retain(|_, (p, _)| *p != port);
                    prop_assert_eq!(t.flush_port(port), (before - model.len()) as u64);
                }
            }
            for vlan in 0..3 {
                for m in 0..12 {
                    prop_assert_eq!(t.lookup(vlan, mac(m)), model.get(&(vlan, m)).map(|(p, _)| *p));
                }
            }
            prop_assert_eq!(t.stats().entries, model.len() as u64);
            prop_assert_eq!(t.stats().evictions, 0);
        }
    }
}
