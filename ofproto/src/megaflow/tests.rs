//! The megaflow cache against the tables it caches: differential property
//! tests, folding, expiry and revalidation.

use super::subtable::{seg, seg_len};
use super::*;
use crate::ofp::action::Instruction;
use crate::ofp::msg::{FlowMod, FlowModCommand};
use crate::ofp::oxm::{Field, Match, Oxm};
use crate::ofp::Action;
use crate::table::Tables;
use crate::testing::Ports;
use crate::xlate::translate;
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Stored key slots fill the arena's segments in order, each to its
/// length, up to the largest cache.
#[test]
fn key_segments_follow_each_other() {
    let mut want = (0, 0);
    for slot in 0..=MAX_MEGAFLOWS {
        assert_eq!(seg(slot), want, "slot {slot}");
        want = if want.1 + 1 == seg_len(want.0) { (want.0 + 1, 0) } else { (want.0, want.1 + 1) };
    }
}

/// Codes name every slot of the largest cache in every subtable, and
/// never look like an exact-match cache entry's code or like NONE.
#[test]
fn codes_name_every_slot() {
    for (si, slot) in [(0, 0), (1, 1 << 20), (MAX_SUBTABLES - 1, MAX_MEGAFLOWS - 1), (7, 1_048_577)] {
        let c = code(si, slot);
        assert_eq!(decode(c), (si, slot));
        assert!(c & EMC_CODE == 0 && c != NONE, "{c:#x}");
    }
}

/// A random flow: (table, priority, in_port, eth_type, ip_proto,
/// ipv4_dst and prefix, vlan, metadata and mask, set ipv4_dst, vlan
/// action, write-metadata, goto, output).
type Spec = (u8, u16, Option<u8>, Option<bool>, Option<bool>, Option<(u8, u8)>, Option<bool>, Option<(u8, u8)>);
type Acts = (Option<u8>, u8, Option<u8>, bool, Option<u8>);

fn flow_mod((spec, acts): &(Spec, Acts), delete: bool) -> FlowMod {
    let &(table, priority, in_port, ipv4, proto, dst, vlan, meta) = spec;
    let &(set_dst, vlan_act, write_meta, goto, output) = acts;
    let table = table % 3;
    let mut m = Match::any();
    if let Some(p) = in_port {
        m = m.with(Oxm::exact_u64(Field::InPort, u64::from(p % 3 + 1)));
    }
    let ip4 = ipv4 == Some(true) || dst.is_some() || set_dst.is_some();
    if ip4 || ipv4.is_some() {
        m = m.with(Oxm::exact_u64(Field::EthType, if ip4 { 0x0800 } else { 0x86dd }));
        if let Some(tcp) = proto {
            m = m.with(Oxm::exact_u64(Field::IpProto, if tcp { 6 } else { 17 }));
        }
    }
    if let Some((d, plen)) = dst {
        let plen = [0u32, 8, 16, 24, 32][usize::from(plen % 5)];
        let mask = (!0u32).checked_shl(32 - plen).unwrap_or(0);
        let v = u32::from_be_bytes([d % 3, d / 3 % 3, 0, 1]) & mask;
        m = m.with(Oxm::masked(Field::Ipv4Dst, &v.to_be_bytes(), &mask.to_be_bytes()));
    }
    if let Some(tagged) = vlan {
        m = m.with(Oxm::exact_u64(Field::VlanVid, if tagged { 0x1005 } else { 0 }));
    }
    // Tunnel metadata (decapsulated frames carry their VNI as tunnel_id):
    // some flows match it, from bits of the priority no other use takes.
    if priority & 4 != 0 {
        m = m.with(Oxm::exact_u64(Field::TunnelId, u64::from(priority >> 3) % 3 * 0x2a));
    }
    // The Nicira tunnel fields: the outer source, exact or by prefix, and
    // a Geneve option's value (present only on some tunnelled keys).
    if priority & 0x40 != 0 {
        let src = [172, 31, 0, 1 + u8::from(priority & 0x80 != 0)];
        m = m.with(match priority & 0x100 != 0 {
            true => Oxm::masked(Field::TunSrc, &[172, 31, 0, 0], &[255, 255, 255, 0]),
            false => Oxm::exact(Field::TunSrc, &src),
        });
    }
    if priority & 0x200 != 0 {
        let mut v = [0u8; 16];
        v[15] = u8::from(priority & 0x400 != 0);
        m = m.with(Oxm::exact(Field::TunMetadata0, &v));
    }
    if let Some((v, mk)) = meta {
        let mk = u64::from(mk % 4);
        m = m.with(Oxm::masked(Field::Metadata, &(u64::from(v) & mk).to_be_bytes(), &mk.to_be_bytes()));
    }
    let mut apply = Vec::new();
    if let Some(d) = set_dst.filter(|_| ip4) {
        apply.push(Action::SetField(Oxm::exact(Field::Ipv4Dst, &[d % 3, 0, 0, 1])));
    }
    match vlan_act % 4 {
        1 => apply.push(Action::PushVlan(0x8100)),
        2 => apply.push(Action::PopVlan),
        _ => {}
    }
    let mut ins = Vec::new();
    if let Some(o) = output.filter(|o| o % 2 == 0) {
        // An output before the end: the packet goes on (a copy leaves).
        apply.push(Action::Output { port: u32::from(o % 4 + 1), max_len: 0 });
        apply.push(Action::DecNwTtl);
    }
    if !apply.is_empty() {
        ins.push(Instruction::ApplyActions(apply));
    }
    if let Some(o) = output.filter(|o| o % 2 == 1) {
        ins.push(Instruction::WriteActions(vec![Action::Output { port: u32::from(o % 4 + 1), max_len: 0 }]));
    }
    if let Some(w) = write_meta {
        ins.push(Instruction::WriteMetadata { metadata: u64::from(w % 4), mask: 3 });
    }
    if goto && table < 2 {
        ins.push(Instruction::GotoTable(table + 1));
    }
    let command = if delete { FlowModCommand::DeleteStrict } else { FlowModCommand::Add };
    FlowMod::new(command, table, priority % 4, m, ins)
}

/// A key: (in_port, kind 0 IPv4 / 1 IPv6 / 2 ARP, tcp, dst, tagged); its
/// tunnel_id (0, 0x2a or 0x54) from the in_port's other bits, and when
/// not 0 (decapsulated) its outer source and maybe a Geneve option from
/// more of them.
fn key((in_port, kind, tcp, dst, tagged): (u8, u8, bool, u8, bool)) -> FlowKey {
    let mut k = FlowKey::default();
    k.set_u64(Field::InPort, u64::from(in_port % 3 + 1));
    k.set_u64(Field::Metadata, 0);
    k.set_u64(Field::TunnelId, u64::from(in_port / 3 % 3) * 0x2a);
    if in_port / 3 % 3 != 0 {
        k.set(Field::TunSrc, &[172, 31, 0, 1 + in_port / 9 % 2]);
        k.set(Field::TunDst, &[172, 31, 0, 9]);
        k.set_u64(Field::TunFlags, 0);
        if in_port / 18 % 2 == 1 {
            let mut v = [0u8; 16];
            v[15] = in_port / 36 % 2;
            k.set(Field::TunMetadata0, &v);
        }
    }
    k.set_u64(Field::VlanVid, if tagged { 0x1005 } else { 0 });
    if tagged {
        k.set_u64(Field::VlanPcp, 3);
    }
    k.set(Field::EthDst, &[2, 0, 0, 0, 0, 1]);
    match kind % 3 {
        0 => {
            k.set_u64(Field::EthType, 0x0800);
            k.set_u64(Field::IpProto, if tcp { 6 } else { 17 });
            k.set(Field::Ipv4Dst, &[dst % 3, dst / 3 % 3, 0, 1]);
            k.set(Field::Ipv4Src, &[10, 0, 0, dst]);
        }
        1 => {
            k.set_u64(Field::EthType, 0x86dd);
            k.set_u64(Field::IpProto, if tcp { 6 } else { 17 });
        }
        _ => k.set_u64(Field::EthType, 0x0806),
    }
    k
}

fn spec() -> impl Strategy<Value = (Spec, Acts)> {
    let s = (
        any::<u8>(),
        any::<u16>(),
        any::<Option<u8>>(),
        any::<Option<bool>>(),
        any::<Option<bool>>(),
        any::<Option<(u8, u8)>>(),
        any::<Option<bool>>(),
        any::<Option<(u8, u8)>>(),
    );
    let a = (any::<Option<u8>>(), any::<u8>(), any::<Option<u8>>(), any::<bool>(), any::<Option<u8>>());
    (s, a)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Batch lookups with repeated keys (runs of one flow's packets,
    /// answered without a probe) give every packet the answer a lookup
    /// of its own key gives, misses included.
    #[test]
    fn repeated_keys_get_their_own_answers(
        batches in prop::collection::vec(prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, 8, 9, 12]), 1..40), 1..20),
        installed in prop::collection::vec(any::<bool>(), 6),
    ) {
        let mut tables = Tables::new(1, 100);
        let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(Field::Ipv4Dst, &[0, 0, 0, 0], &[127, 255, 255, 255]));
        let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
        tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, 5, m, out), 0, &Ports).unwrap();
        // Keys 8 apart differ only where the megaflows do not look
        // (the top bit of ipv4_dst): one megaflow, different keys.
        let key_of = |i: u8| {
            let mut k = key((0, 0, true, 0, false));
            k.set(Field::Ipv4Dst, &[(i / 8) << 7, 0, 0, i % 8]);
            k
        };
        let mut cache = MegaflowCache::new(CacheConfig::default());
        for (i, _) in installed.iter().enumerate().filter(|(_, yes)| **yes) {
            let k = key_of(u8::try_from(i).unwrap());
            let t = translate(&tables, &k);
            cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0))).unwrap();
        }
        for b in &batches {
            let keys: Vec<FlowKey> = b.iter().map(|&i| key_of(i)).collect();
            let mut codes = vec![NONE; keys.len()];
            cache.lookup_batch(&keys, &mut codes);
            for (k, c) in keys.iter().zip(&codes) {
                prop_assert_eq!(cache.lookup(k).unwrap_or(NONE), *c, "{:?}", b);
            }
            cache.end_batch();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random three-table pipelines (goto, set-field of a field a later
    /// table matches, metadata written and matched, VLAN push and pop,
    /// outputs in apply-actions and in the action set) changed by random
    /// adds and deletes between random packets, with idle megaflows
    /// expiring as the clock moves on: every packet the exact-match
    /// cache or a megaflow answers gets exactly the decision the tables
    /// give it, and decisions the tables mark uncacheable are never
    /// cached. As in the datapath, each change starts an empty cache
    /// that inherits the exact-match cache under a new generation (a
    /// small one, so that entries are replaced).
    #[test]
    fn megaflow_decisions_equal_the_tables(
        flows in prop::collection::vec(spec(), 1..25),
        ops in prop::collection::vec(prop_oneof![
            4 => any::<(u8, u8, bool, u8, bool)>().prop_map(Op::Key),
            1 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, d)| Op::Mod(i, d)),
            1 => (0u64..3).prop_map(Op::Tick),
        ], 1..150),
    ) {
        let mut tables = Tables::new(3, 1000);
        for f in &flows {
            let _ = tables.flow_mod(&flow_mod(f, false), 0, &Ports);
        }
        let cfg = CacheConfig { emc: EmcMode::On, emc_entries: 16, emc_insert_inv_prob: 1, max_idle_ms: 100, ..CacheConfig::default() };
        let mut cache = MegaflowCache::new(cfg);
        let mut now = 0;
        tables.take_changes();
        for op in &ops {
            match op {
                Op::Key(k) => {
                    let k = key(*k);
                    let t = translate(&tables, &k);
                    let (mut code, mut hash) = ([NONE], [0]);
                    cache.emc_lookup_batch(std::slice::from_ref(&k), &mut hash, &mut code);
                    cache.lookup_batch(std::slice::from_ref(&k), &mut code);
                    if code[0] != NONE {
                        prop_assert!(t.cacheable, "an uncacheable decision was cached");
                        prop_assert_eq!(&cache.get(code[0]).steps[..], &t.steps[..], "key {:?}", k);
                        prop_assert!(cache.megaflows().any(|m| Arc::ptr_eq(m, cache.get(code[0]))), "the EMC named a megaflow the cache dropped");
                        cache.get(code[0]).hit(1, 1, now);
                        cache.emc_offer(hash[0], &k, code[0]);
                    } else if t.cacheable {
                        let mf = Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), now));
                        let c = cache.install(&k, mf).unwrap();
                        prop_assert_eq!(cache.lookup(&k), Some(c), "an installed megaflow covers its key");
                        cache.emc_offer(hash[0], &k, c);
                    }
                    cache.end_batch();
                }
                Op::Mod(ix, delete) => {
                    // As the datapath does: the megaflows the change
                    // may affect go, the others stay (every later
                    // answer is checked against the new tables).
                    let f = &flows[ix.index(flows.len())];
                    let _ = tables.flow_mod(&flow_mod(f, *delete), 0, &Ports);
                    let kept = match tables.take_changes() {
                        Some(changes) => cache.revalidate(&changes),
                        None => false,
                    };
                    if !kept {
                        cache = MegaflowCache::succeeding(&mut cache);
                    }
                }
                Op::Tick(dt) => {
                    now += dt * 60;
                    cache.expire(now);
                    prop_assert_eq!(cache.megaflows().count(), cache.len());
                    for mf in cache.megaflows() {
                        prop_assert!(now - mf.used_ms.load(Ordering::Relaxed) < 100, "an idle megaflow was kept");
                    }
                }
            }
        }
    }

    /// Revalidation against an exhaustive key space: random tables,
    /// a megaflow for every key, random flow-mods (a new flow added,
    /// an existing one deleted) each followed by revalidation; every
    /// megaflow kept answers every key it covers as the new tables do.
    #[test]
    fn revalidated_megaflows_equal_the_new_tables(
        flows in prop::collection::vec(spec(), 1..20),
        mods in prop::collection::vec((spec(), any::<bool>()), 1..6),
    ) {
        let mut tables = Tables::new(3, 1000);
        for f in &flows {
            let _ = tables.flow_mod(&flow_mod(f, false), 0, &Ports);
        }
        tables.take_changes();
        let keys: Vec<FlowKey> = (0..3u8)
            .flat_map(|p| (0..3u8).map(move |kind| (p, kind)))
            .flat_map(|(p, kind)| [false, true].into_iter().map(move |tcp| (p, kind, tcp)))
            .flat_map(|(p, kind, tcp)| (0..9u8).map(move |d| (p, kind, tcp, d)))
            .flat_map(|(p, kind, tcp, d)| [false, true].into_iter().map(move |tag| key((p, kind, tcp, d, tag))))
            .collect();
        let mut cache = MegaflowCache::default();
        for (m, delete) in &mods {
            for k in &keys {
                let t = translate(&tables, k);
                if t.cacheable && cache.lookup(k).is_none() {
                    cache.install(k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0))).unwrap();
                }
            }
            let fm = if *delete { flow_mod(&flows[usize::from(m.0.1) % flows.len()], true) } else { flow_mod(m, false) };
            let _ = tables.flow_mod(&fm, 0, &Ports);
            let changes = tables.take_changes().unwrap();
            prop_assert!(cache.revalidate(&changes));
            for k in &keys {
                if let Some(c) = cache.lookup(k) {
                    prop_assert_eq!(&cache.get(c).steps[..], &translate(&tables, k).steps[..], "key {:?} after {:?}", k, fm);
                }
            }
        }
    }

    /// Megaflows removed from the middle of one subtable's index
    /// (expired) are gone, and every other stays found, through
    /// rounds of installs and expiries.
    #[test]
    fn expiry_keeps_the_index_whole(rounds in prop::collection::vec((1usize..600, any::<u64>()), 1..6)) {
        let mut tables = Tables::new(1, 100);
        // A mask that is not a prefix (no prefix tracking): every key
        // its own megaflow of one subtable.
        let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(Field::Ipv4Dst, &[0, 0, 0, 0], &[127, 255, 255, 255]));
        let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
        tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, 5, m, out), 0, &Ports).unwrap();
        let cfg = CacheConfig { max_idle_ms: 10, ..CacheConfig::default() };
        let mut cache = MegaflowCache::new(cfg);
        let mut live = std::collections::BTreeSet::new();
        let mut gone = std::collections::BTreeSet::new();
        let mut next = 0u32;
        let key_of = |i: u32| {
            let mut k = key((0, 0, true, 0, false));
            k.set(Field::Ipv4Dst, &i.to_be_bytes());
            k
        };
        for (r, &(n, seed)) in rounds.iter().enumerate() {
            let now = 100 * (r as u64 + 1);
            for _ in 0..n {
                let k = key_of(next);
                let t = translate(&tables, &k);
                cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), now))).unwrap();
                live.insert(next);
                next += 1;
            }
            // About half of all live megaflows stay in use.
            for &i in &live {
                if (u64::from(i) ^ seed).count_ones() % 2 == 0 {
                    let c = cache.lookup(&key_of(i)).unwrap();
                    cache.get(c).hit(1, 1, now + 50);
                }
            }
            cache.expire(now + 55);
            let kept: Vec<u32> = live.iter().copied().filter(|&i| cache.lookup(&key_of(i)).is_some()).collect();
            for &i in &live {
                if !kept.contains(&i) {
                    gone.insert(i);
                }
            }
            live = kept.into_iter().collect();
            prop_assert_eq!(cache.len(), live.len());
            for &i in &gone {
                prop_assert!(cache.lookup(&key_of(i)).is_none(), "expired {} still found", i);
            }
            for mf in cache.megaflows() {
                prop_assert_eq!(mf.used_ms.load(Ordering::Relaxed), now + 50, "only the megaflows in use are kept");
            }
            // The addresses batch lookups give are their slots'
            // megaflows', through index growth and slots moved by
            // removals.
            let keys: Vec<FlowKey> = live.iter().map(|&i| key_of(i)).collect();
            for chunk in keys.chunks(64) {
                let (mut codes, mut at) = ([NONE; 64], [0usize; 64]);
                cache.lookup_batch_at(chunk, &mut codes[..chunk.len()], &mut at[..chunk.len()]);
                for (&c, &a) in codes.iter().zip(&at).take(chunk.len()) {
                    prop_assert!(c != NONE);
                    prop_assert_eq!(Arc::as_ptr(cache.get(c)).addr(), a);
                    prop_assert!(std::ptr::eq(cache.megaflow_at(c, a), &**cache.get(c)));
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Key((u8, u8, bool, u8, bool)),
    Mod(prop::sample::Index, bool),
    Tick(u64),
}

/// A chain of `depth` tables: each goes to the next on any packet,
/// the last has a rule per `ipv4_dst` 10.0.0.d (d < `keys`) that
/// outputs; and the key of destination d.
fn chain(depth: u8, keys: u8) -> (Tables, impl Fn(u8) -> FlowKey) {
    let mut tables = Tables::new(depth, 1000);
    let last = depth - 1;
    for t in 0..last {
        let goto = vec![Instruction::GotoTable(t + 1)];
        tables.flow_mod(&FlowMod::new(FlowModCommand::Add, t, 1, Match::any(), goto), 0, &Ports).unwrap();
    }
    for d in 0..keys {
        let m =
            Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::exact(Field::Ipv4Dst, &[10, 0, 0, d]));
        let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
        tables.flow_mod(&FlowMod::new(FlowModCommand::Add, last, 5, m, out), 0, &Ports).unwrap();
    }
    let key = |d: u8| {
        let mut k = key((0, 0, true, 0, false));
        k.set(Field::Ipv4Dst, &[10, 0, 0, d]);
        k
    };
    (tables, key)
}

/// Packets and bytes counted by the entry of the last table that
/// matches destination `d`.
fn entry_counts(tables: &Tables, d: u8) -> (u64, u64) {
    let last = tables.tables.last().unwrap();
    let e =
        last.entries.iter().find(|e| e.match_.get(Field::Ipv4Dst).map(Oxm::value) == Some(&[10, 0, 0, d][..])).unwrap();
    (e.stats.packets.load(Ordering::Relaxed), e.stats.bytes.load(Ordering::Relaxed))
}

/// Hits `k`'s megaflow (through the exact-match cache when on;
/// installing it first) with `n` packets of 64 bytes, as the datapath
/// does.
fn hit(cache: &mut MegaflowCache, tables: &Tables, k: &FlowKey, n: u64) {
    let (mut code, mut hash) = ([NONE], [0]);
    cache.emc_lookup_batch(std::slice::from_ref(k), &mut hash, &mut code);
    cache.lookup_batch(std::slice::from_ref(k), &mut code);
    let c = if code[0] == NONE {
        let t = translate(tables, k);
        let mf = Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0));
        let Some(c) = cache.install(k, mf.clone()) else {
            // Full: replayed once, not kept.
            mf.hit(n, 64 * n, 1);
            cache.keep_unkept(mf);
            return;
        };
        c
    } else {
        code[0]
    };
    cache.get(c).hit(n, 64 * n, 1);
    cache.emc_offer(hash[0], k, c);
}

proptest! {
    /// The folder counts every packet a megaflow answered exactly
    /// once, in its entries' and tables' counters, whenever its passes
    /// run (between batches, or on a thread of their own all along),
    /// whether the megaflow is still in its cache or was let go of
    /// (expired, or flushed with a full cache) before a pass saw its
    /// last packets, whether the packet was answered by a megaflow or
    /// an exact-match entry, and whether the megaflow holds its
    /// lookups inline (up to COUNTED tables) or walks its steps
    /// (more).
    #[test]
    fn folds_count_every_packet_once(
        depth in 1u8..7,
        hits in prop::collection::vec((0u8..200, 1u64..4, prop::bool::weighted(0.2)), 1..3000),
        batch in 1usize..40,
        period in 1usize..20,
        expire_every in 1usize..100,
        with_emc in any::<bool>(),
        limit in prop::sample::select(vec![30usize, 1000]),
        concurrent in any::<bool>(),
    ) {
        // IPv6 packets match no rule of the last table: another
        // megaflow mask, so two subtables that rankings reorder.
        let v6 = key((0, 1, true, 0, false));
        let (tables, key) = chain(depth, 200);
        let emc = if with_emc { EmcMode::On } else { EmcMode::Off };
        let cfg = CacheConfig {
            max_idle_ms: 2, max_megaflows: limit, grow_to: limit, grow_bytes: 0, emc, emc_entries: 16,
            emc_insert_inv_prob: 1
        };
        let folder = Folder::new();
        let stop = AtomicBool::new(false);
        let (want, misses) = std::thread::scope(|s| {
            if concurrent {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        folder.fold_all();
                    }
                });
            }
            let mut cache = MegaflowCache::new(cfg);
            cache.hand_over(&folder, &tables);
            let (mut want, mut misses) = ([0u64; 200], 0);
            for (b, chunk) in hits.chunks(batch).enumerate() {
                for &(d, n, ip6) in chunk {
                    if ip6 {
                        hit(&mut cache, &tables, &v6, n);
                        misses += n;
                    } else {
                        hit(&mut cache, &tables, &key(d), n);
                        want[usize::from(d)] += n;
                    }
                }
                cache.end_batch();
                if b % period == period - 1 {
                    cache.hand_over(&folder, &tables);
                    if !concurrent {
                        folder.fold_all();
                    }
                }
                if b % expire_every == expire_every - 1 {
                    // Idle ones go: every megaflow idle at 10 ms, as
                    // hit at 1.
                    cache.expire(10);
                }
            }
            stop.store(true, Ordering::Relaxed);
            // What the cache still holds, handed over when it goes.
            drop(cache);
            (want, misses)
        });
        folder.fold_all();
        for (d, &w) in (0..=u8::MAX).zip(&want) {
            prop_assert_eq!(entry_counts(&tables, d), (w, 64 * w), "destination {}", d);
        }
        let total: u64 = want.iter().sum();
        for (t, c) in tables.counters.iter().enumerate() {
            let matched = if t + 1 == tables.counters.len() { total } else { total + misses };
            prop_assert_eq!(c.lookups.load(Ordering::Relaxed), total + misses, "table {} lookups", t);
            prop_assert_eq!(c.matches.load(Ordering::Relaxed), matched, "table {} matches", t);
        }
        // Every megaflow was let go of, folded a last time and freed.
        prop_assert_eq!(folder.stats.held.load(Ordering::Relaxed), 0);
    }
}

proptest! {
    /// Stored keys with two-word fields (IPv6 addresses) over more
    /// than one cache line: every answer equals the tables', keys
    /// differing only in unexamined bits share a megaflow, and after
    /// expiry moves slots (a row copied over another) every dumped
    /// megaflow is found again by its own key.
    #[test]
    fn wide_keys_are_stored_whole(
        rules in prop::collection::vec((0u8..4, 0u8..8, 0u8..3, any::<bool>()), 1..12),
        keys in prop::collection::vec((any::<prop::sample::Index>(), any::<u64>(), any::<bool>()), 1..200),
        idle in prop::collection::vec(any::<bool>(), 201),
    ) {
        let addr = |hi: u8, lo: u64| {
            let mut a = [0u8; 16];
            a[..8].copy_from_slice(&(0x2001_0db8_0000_0000 | u64::from(hi)).to_be_bytes());
            a[8..].copy_from_slice(&lo.to_be_bytes());
            a
        };
        let mut tables = Tables::new(1, 100);
        for &(src, dst, port, with_in_port) in &rules {
            let mut m = Match::any()
                .with(Oxm::exact_u64(Field::EthType, 0x86dd))
                .with(Oxm::exact_u64(Field::IpProto, 6))
                // A /96: its mask has bits in both words.
                .with(Oxm::masked(Field::Ipv6Src, &addr(src, 0), &addr(0xff, 0xffff_ffff_0000_0000).map(|b| if b == 0 { 0 } else { 0xff })))
                .with(Oxm::exact(Field::Ipv6Dst, &addr(9, u64::from(dst))))
                .with(Oxm::exact_u64(Field::TcpDst, 80 + u64::from(port)));
            if with_in_port {
                m = m.with(Oxm::exact_u64(Field::InPort, 1));
            }
            let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
            let _ = tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, u16::from(dst), m, out), 0, &Ports);
        }
        let key = |&(src, lo, dst, port, in_port): &(u8, u64, u8, u8, u8)| {
            let mut k = FlowKey::default();
            k.set_u64(Field::InPort, u64::from(in_port % 2 + 1));
            k.set_u64(Field::Metadata, 0);
            k.set_u64(Field::EthType, 0x86dd);
            k.set_u64(Field::IpProto, 6);
            k.set(Field::Ipv6Src, &addr(src, lo));
            k.set(Field::Ipv6Dst, &addr(9, u64::from(dst)));
            k.set_u64(Field::TcpDst, 80 + u64::from(port));
            k.set_u64(Field::TcpSrc, lo & 0xffff);
            k
        };
        let cfg = CacheConfig { max_idle_ms: 100, ..CacheConfig::default() };
        let mut cache = MegaflowCache::new(cfg);
        // The first key matches the first rule (every field
        // examined); the others a rule's fields or random ones.
        let (src, dst, port, _) = rules[0];
        let keys: Vec<_> = std::iter::once((src, 7, dst, port, 0))
            .chain(keys.iter().map(|&(ix, lo, ruled)| {
                let (src, dst, port, _) = rules[ix.index(rules.len())];
                let b = lo.to_be_bytes();
                if ruled {
                    (src, lo & 0xffff_ffff, dst, port, b[0])
                } else {
                    (b[1] % 4, lo, b[2] % 10, b[3] % 4, b[0])
                }
            }))
            .collect();
        // Keys used at 0 first, then at 100 (time never goes back).
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&j| !idle[j]);
        for j in order {
            let kk = &keys[j];
            let k = key(kk);
            let t = translate(&tables, &k);
            let now = if idle[j] { 0 } else { 100 };
            match cache.lookup(&k) {
                Some(c) => {
                    prop_assert_eq!(&cache.get(c).steps[..], &t.steps[..], "key {:?}", kk);
                    cache.get(c).hit(1, 64, now);
                }
                None => {
                    let c = cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), now))).unwrap();
                    prop_assert_eq!(cache.lookup(&k), Some(c));
                }
            }
        }
        prop_assert!(cache.subtables.iter().any(|st| st.stride > 8), "a key over two lines");
        for _ in 0..64 {
            cache.expire(150);
        }
        for (j, kk) in keys.iter().enumerate() {
            let k = key(kk);
            match cache.lookup(&k) {
                Some(c) => {
                    prop_assert_eq!(&cache.get(c).steps[..], &translate(&tables, &k).steps[..], "key {:?}", kk);
                    prop_assert!(cache.get(c).used_ms.load(Ordering::Relaxed) == 100, "an idle megaflow stayed");
                }
                None => prop_assert!(idle[j], "key {:?} used at 100 lost its megaflow", kk),
            }
        }
        let dumped = cache.dump();
        prop_assert_eq!(dumped.len(), cache.len());
        for d in &dumped {
            let c = cache.lookup(&d.key);
            prop_assert!(c.is_some_and(|c| Arc::ptr_eq(cache.get(c), &d.mf)), "a dumped key finds its megaflow");
        }
    }
}

/// A megaflow its cache lets go of is folded once more by the next
/// pass (what it gained since the last) and freed there; the others
/// stay held. New megaflows wait in the cache until it hands them
/// over.
#[test]
fn megaflows_let_go_are_folded_once_more_and_freed() {
    let (tables, key) = chain(3, 200);
    let folder = Folder::new();
    let cfg = CacheConfig { max_idle_ms: 10, ..CacheConfig::default() };
    let mut cache = MegaflowCache::new(cfg);
    for d in 0..100 {
        hit(&mut cache, &tables, &key(d), 1);
    }
    folder.fold_all();
    assert_eq!(entry_counts(&tables, 5), (0, 0), "not handed over yet");
    cache.hand_over(&folder, &tables);
    folder.fold_all();
    assert_eq!(entry_counts(&tables, 5), (1, 64));
    assert_eq!(folder.stats.held.load(Ordering::Relaxed), 100);
    // Half are hit again at 50, then all hit once more; those not hit
    // at 50 expire at 55 (the hit at 1 was their last use) before a
    // pass sees their last packet.
    let weak: Vec<_> = cache.megaflows().map(Arc::downgrade).collect();
    for d in 0..100 {
        if d % 2 == 0 {
            let c = cache.lookup(&key(d)).unwrap();
            cache.get(c).hit(1, 64, 50);
        }
        let c = cache.lookup(&key(d)).unwrap();
        let mf = cache.get(c);
        mf.hit(1, 64, mf.used_ms.load(Ordering::Relaxed));
    }
    for _ in 0..64 {
        cache.expire(55);
    }
    assert_eq!(cache.len(), 50);
    assert_eq!(weak.iter().filter(|w| w.upgrade().is_some()).count(), 100, "the folder holds the expired");
    folder.fold_all();
    assert_eq!(entry_counts(&tables, 4), (3, 192), "hit at 1, 50 and again");
    assert_eq!(entry_counts(&tables, 5), (2, 128), "the last hit of an expired megaflow is counted");
    assert_eq!(folder.stats.held.load(Ordering::Relaxed), 50);
    assert_eq!(folder.stats.released.load(Ordering::Relaxed), 50);
    assert_eq!(weak.iter().filter(|w| w.upgrade().is_some()).count(), 50, "freed after their last fold");
    // A pass with nothing new folds nothing twice.
    assert_eq!(folder.fold_all(), 0);
    assert_eq!(entry_counts(&tables, 4), (3, 192));
}

/// A full cache installs nothing more within the batch, then starts
/// over at its end, its counters folded into the tables first.
#[test]
fn a_full_cache_starts_over_at_the_end_of_the_batch() {
    let mut tables = Tables::new(1, 100);
    let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800));
    let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
    tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, 5, m, out), 0, &Ports).unwrap();
    let mut cache = MegaflowCache::with_capacity(3);
    let mut codes = Vec::new();
    for port in 1..=4u64 {
        let mut k = key((0, 0, true, 0, false));
        k.set_u64(Field::InPort, port);
        let t = translate(&tables, &k);
        let mf = Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0));
        codes.push(cache.install(&k, mf));
    }
    assert!(codes[..3].iter().all(Option::is_some) && codes[3].is_none(), "{codes:?}");
    let c = codes[0].unwrap();
    cache.get(c).hit(1, 100, 1);
    let folder = Folder::new();
    cache.hand_over(&folder, &tables);
    cache.end_batch();
    assert_eq!((cache.len(), cache.counts.flushed), (0, 3));
    folder.fold_all();
    let e = &tables.tables[0].entries[0];
    assert_eq!(e.stats.packets.load(Ordering::Relaxed), 1, "the hit before the flush reached the entry");
    assert_eq!(folder.stats.held.load(Ordering::Relaxed), 0, "the flushed megaflows were freed");
}

/// A cache allowed to grow doubles its limit when it fills, keeping every
/// megaflow and every code, up to its ceiling; there, or past its memory
/// budget, it starts over like a fixed one.
#[test]
fn a_growing_cache_doubles_up_to_its_ceiling() {
    let mut tables = Tables::new(1, 100);
    let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800));
    let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
    tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, 5, m, out), 0, &Ports).unwrap();
    let install = |cache: &mut MegaflowCache, port: u64| {
        let mut k = key((0, 0, true, 0, false));
        k.set_u64(Field::InPort, port);
        let t = translate(&tables, &k);
        let mf = Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0));
        (cache.install(&k, mf), k)
    };
    let cfg = CacheConfig { max_megaflows: 2, grow_to: 8, grow_bytes: 1 << 30, ..CacheConfig::default() };
    let mut cache = MegaflowCache::new(cfg);
    let mut keys = Vec::new();
    for port in 1..=8 {
        let (c, k) = install(&mut cache, port);
        assert!(c.is_some(), "megaflow {port} kept");
        keys.push((c.unwrap(), k));
    }
    assert_eq!((cache.len(), cache.config().max_megaflows, cache.counts.grown), (8, 8, 2));
    for (c, k) in &keys {
        assert_eq!(cache.lookup(k), Some(*c), "every megaflow still answers with its code");
    }
    // At the ceiling: full, and it starts over at the end of the batch.
    assert!(install(&mut cache, 9).0.is_none());
    cache.end_batch();
    assert_eq!((cache.len(), cache.counts.flushed), (0, 8));
    // The grown limit stays for the next snapshot's cache.
    assert_eq!(MegaflowCache::succeeding(&mut cache).config().max_megaflows, 8);
    // Past its memory budget it does not grow.
    let mut small = MegaflowCache::new(CacheConfig { grow_bytes: 1, ..cfg });
    assert!(install(&mut small, 1).0.is_some() && install(&mut small, 2).0.is_some());
    assert!(install(&mut small, 3).0.is_none());
    assert_eq!(small.counts.grown, 0);
}

/// A flow table change keeps the megaflows it cannot affect (another
/// table, or a rule whose match the megaflow's region does not
/// overlap) and removes those it may.
#[test]
fn revalidation_keeps_what_a_change_cannot_affect() {
    let mut tables = Tables::new(2, 100);
    let ip = |src: [u8; 4], plen: u32| {
        let mask = (!0u32).checked_shl(32 - plen).unwrap_or(0).to_be_bytes();
        Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(Field::Ipv4Src, &src, &mask))
    };
    let out = |p: u32| vec![Instruction::ApplyActions(vec![Action::Output { port: p, max_len: 0 }])];
    let add = |t: &mut Tables, prio: u16, m: Match, p: u32| {
        t.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, prio, m, out(p)), 0, &Ports).unwrap();
    };
    add(&mut tables, 10, ip([10, 0, 0, 1], 32), 2);
    tables.take_changes();
    let mut cache = MegaflowCache::default();
    let mut k = key((0, 0, true, 0, false));
    k.set(Field::Ipv4Src, &[10, 0, 0, 1]);
    let t = translate(&tables, &k);
    cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0))).unwrap();
    // Another source, another table: kept.
    add(&mut tables, 20, ip([11, 0, 0, 1], 32), 3);
    tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 1, 5, Match::any(), out(3)), 0, &Ports).unwrap();
    let changes = tables.take_changes().unwrap();
    assert!(cache.revalidate(&changes));
    assert_eq!((cache.len(), cache.counts.revalidated), (1, 0), "nothing overlapped");
    let c = cache.lookup(&k).unwrap();
    assert_eq!(cache.get(c).steps[..], translate(&tables, &k).steps[..]);
    // 10/8 at a higher priority covers it: removed.
    add(&mut tables, 30, ip([10, 0, 0, 0], 8), 4);
    let changes = tables.take_changes().unwrap();
    assert!(cache.revalidate(&changes));
    assert_eq!((cache.len(), cache.counts.revalidated), (0, 1));
    assert!(cache.lookup(&k).is_none());
}

/// One megaflow per distinct decision under one mask: keys that differ
/// only in bits no table looked at share it.
#[test]
fn keys_differing_in_unexamined_bits_share_a_megaflow() {
    let mut tables = Tables::new(1, 100);
    let m = Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(
        Field::Ipv4Dst,
        &[10, 0, 0, 0],
        &[255, 0, 0, 0],
    ));
    let out = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
    tables.flow_mod(&FlowMod::new(FlowModCommand::Add, 0, 5, m, out), 0, &Ports).unwrap();
    let mut cache = MegaflowCache::default();
    let mut k = key((0, 0, true, 0, false));
    for i in 0..=255u8 {
        k.set(Field::Ipv4Dst, &[10, i, 255 - i, i]);
        k.set(Field::Ipv4Src, &[192, 168, i, 1]);
        if cache.lookup(&k).is_none() {
            let t = translate(&tables, &k);
            cache.install(&k, Arc::new(Megaflow::new(t.steps, cache.intern(t.mask), 0))).unwrap();
        }
    }
    assert_eq!((cache.len(), cache.n_subtables()), (1, 1), "256 addresses in 10/8, one megaflow");
    k.set(Field::Ipv4Dst, &[11, 0, 0, 1]);
    assert!(cache.lookup(&k).is_none(), "11.0.0.1 is outside it");
}
