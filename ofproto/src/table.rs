//! Flow tables with OpenFlow 1.3's semantics (spec 5.2-5.5, 6.4): priority
//! matching, add with the overlap check and replacement of an identical
//! entry, strict and non-strict modify and delete with cookie masks and
//! out_port / out_group filters, idle and hard timeouts, per-entry
//! counters and durations, table-miss entries (priority 0, any match).
//!
//! Lookup goes through the table's tuple-space [`Classifier`], which
//! answers as a scan of the entries in priority order would (older first
//! among equal priorities); the entries themselves stay in that order for
//! dumps and as the reference the classifier is tested against.

use crate::classifier::{Classifier, FlowMask};
use crate::flow::FlowKey;
use crate::ofp::action::{port, Action, Instruction};
use crate::ofp::error::{BadAction, BadInstruction, FlowModFailed, MeterModFailed, OfpError};
use crate::ofp::msg::{FlowMod, FlowModCommand, FF_CHECK_OVERLAP, FF_RESET_COUNTS};
use crate::ofp::oxm::{Field, Match, Oxm};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// OFPTT_ALL.
pub const ALL_TABLES: u8 = 0xff;

/// Counters of one flow entry, shared by every snapshot of the table that
/// holds it: the datapath adds to them, the control thread reads them.
#[derive(Debug, Default)]
pub struct EntryStats {
    /// Packets matched.
    pub packets: AtomicU64,
    /// Bytes matched.
    pub bytes: AtomicU64,
    /// When a packet last matched, in the caller's milliseconds.
    pub last_used_ms: AtomicU64,
}

impl EntryStats {
    /// Counts `packets` of `bytes` matched at `now_ms`.
    #[inline]
    pub fn hit(&self, packets: u64, bytes: u64, now_ms: u64) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.last_used_ms.load(Ordering::Relaxed) < now_ms {
            self.last_used_ms.store(now_ms, Ordering::Relaxed);
        }
    }
}

/// One flow entry.
#[derive(Debug, Clone)]
pub struct FlowEntry {
    /// Its table.
    pub table_id: u8,
    /// Priority.
    pub priority: u16,
    /// Match.
    pub match_: Match,
    /// Instructions.
    pub instructions: Vec<Instruction>,
    /// Cookie.
    pub cookie: u64,
    /// Idle timeout, seconds (0: none).
    pub idle_timeout: u16,
    /// Hard timeout, seconds (0: none).
    pub hard_timeout: u16,
    /// OFPFF_* flags.
    pub flags: u16,
    /// When it was added, caller's milliseconds.
    pub created_ms: u64,
    /// Counters.
    pub stats: Arc<EntryStats>,
    /// Its place among entries of equal priority in its table (order of
    /// insertion) and its name in the table's classifier.
    pub seq: u64,
}

impl FlowEntry {
    /// Whether any of its actions outputs to `port` (ANY: yes).
    pub fn outputs_to(&self, p: u32) -> bool {
        p == port::ANY || self.actions().any(|a| matches!(a, Action::Output { port, .. } if *port == p))
    }
    /// Whether any of its actions goes to `group` (ANY: yes).
    pub fn uses_group(&self, g: u32) -> bool {
        g == port::ANY || self.actions().any(|a| matches!(a, Action::Group(x) if *x == g))
    }
    /// Whether it has a meter instruction for `meter`.
    pub fn uses_meter(&self, meter: u32) -> bool {
        self.instructions.iter().any(|i| matches!(i, Instruction::Meter(m) if *m == meter))
    }
    fn actions(&self) -> impl Iterator<Item = &Action> {
        self.instructions.iter().flat_map(|i| match i {
            Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a.as_slice(),
            _ => &[],
        })
    }
}

/// A flow entry that left its table, and why (OFPRR_*).
#[derive(Debug, Clone)]
pub struct Removed {
    /// The entry.
    pub entry: FlowEntry,
    /// OFPRR_IDLE_TIMEOUT 0, HARD_TIMEOUT 1, DELETE 2, GROUP_DELETE 3.
    pub reason: u8,
}

/// What a flow-mod may refer to, for its validation.
pub trait Refs {
    /// Whether `port` is a port of the switch (reserved ports are checked
    /// by the table).
    fn port_exists(&self, port: u32) -> bool;
    /// Whether the group exists.
    fn group_exists(&self, group: u32) -> bool;
    /// Whether the meter exists.
    fn meter_exists(&self, meter: u32) -> bool;
}

/// A flow's identity in its table: priority and match (fields in id order).
type FlowId = (u16, Vec<Oxm>);

fn flow_id(priority: u16, m: &Match) -> FlowId {
    let mut v = m.fields.clone();
    v.sort_by_key(|o| o.field);
    (priority, v)
}

/// One table: entries in priority order (highest first; among equal
/// priorities, the older first).
#[derive(Debug, Clone, Default)]
pub struct FlowTable {
    /// Entries, shared with the snapshots the datapath holds (a change
    /// copies the one entry it touches).
    pub entries: Vec<Arc<FlowEntry>>,
    /// Identities of the entries, so an add finds an identical entry
    /// without a scan (flow-mod storms stay linear).
    ids: std::collections::HashSet<FlowId>,
    /// The entries for lookup (subtables shared with snapshots).
    pub cls: Classifier<Arc<FlowEntry>>,
    next_seq: u64,
    /// Entries with an idle or hard timeout.
    timed: usize,
}

impl FlowTable {
    /// The entry a packet with `key` hits.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<&FlowEntry> {
        self.cls.lookup(key).map(|e| &**e)
    }
    /// As [`FlowTable::lookup`], adding to `wc` the bits of `key` the
    /// answer depends on.
    #[inline]
    pub fn lookup_wc(&self, key: &FlowKey, wc: &mut FlowMask) -> Option<&FlowEntry> {
        self.cls.lookup_wc(key, wc).map(|e| &**e)
    }
    /// The entry a scan in priority order finds: the classifier's
    /// reference.
    pub fn scan(&self, key: &FlowKey) -> Option<&FlowEntry> {
        self.entries.iter().find(|e| e.match_.matches(key)).map(|e| &**e)
    }
    /// The index in `entries` of the entry of `priority` whose match is
    /// `m` field for field: a classifier probe and a binary search
    /// (entries are in priority order, then in sequence order), not a
    /// scan of the table.
    fn position_same(&self, priority: u16, m: &Match) -> Option<usize> {
        let (seq, _) = self.cls.find_exact(priority, m, |e| same_fields(&e.match_, m))?;
        let lo = self.entries.partition_point(|x| x.priority > priority);
        let hi = self.entries.partition_point(|x| x.priority >= priority);
        self.entries[lo..hi].binary_search_by_key(&seq, |x| x.seq).ok().map(|i| lo + i)
    }

    fn insert(&mut self, id: FlowId, mut e: FlowEntry) {
        // After every entry of higher or equal priority: a run of adds at
        // one priority appends.
        let at = self.entries.partition_point(|x| x.priority >= e.priority);
        e.seq = self.next_seq;
        self.next_seq += 1;
        let e = Arc::new(e);
        self.cls.insert(e.priority, &e.match_, e.seq, e.clone());
        self.timed += usize::from(e.idle_timeout != 0 || e.hard_timeout != 0);
        self.ids.insert(id);
        self.entries.insert(at, e);
    }
    /// Rebuilds the identity index after entries were removed.
    fn reindex(&mut self) {
        self.ids = self.entries.iter().map(|e| flow_id(e.priority, &e.match_)).collect();
        self.timed = self.entries.iter().filter(|e| e.idle_timeout != 0 || e.hard_timeout != 0).count();
    }
}

/// Every flow table of a bridge.
#[derive(Debug, Clone)]
pub struct Tables {
    /// The tables, by id.
    pub tables: Vec<FlowTable>,
    /// Entries per table at most.
    pub max_entries: usize,
    /// Per table: its lookup and match counters (one allocation shared by
    /// every snapshot: publishing the tables touches no counter).
    pub counters: Arc<[TableCounters]>,
    /// The rules added, changed and removed since the last
    /// [`Tables::take_changes`] (None: too many to list).
    changes: Option<Vec<crate::megaflow::Change>>,
}

/// Counters of one table (OpenFlow table stats).
#[derive(Debug, Default)]
pub struct TableCounters {
    /// Packets looked up here.
    pub lookups: AtomicU64,
    /// Packets that matched an entry here.
    pub matches: AtomicU64,
}

/// Changes listed at most between two [`Tables::take_changes`]; beyond,
/// the datapath starts its megaflow caches over.
const MAX_CHANGES: usize = 65_536;

fn same_fields(a: &Match, b: &Match) -> bool {
    a.fields.len() == b.fields.len() && a.fields.iter().all(|o| b.get(o.field) == Some(o))
}

fn mask_of(o: &Oxm) -> Vec<u8> {
    o.mask().map_or_else(|| vec![0xff; o.field.width()], <[u8]>::to_vec)
}

impl Match {
    /// Whether every packet this match accepts is accepted by `wider` too
    /// (a non-strict modify or delete selects such flows).
    pub fn within(&self, wider: &Match) -> bool {
        wider.fields.iter().all(|w| {
            self.get(w.field).is_some_and(|o| {
                let (om, wm) = (mask_of(o), mask_of(w));
                om.iter().zip(&wm).all(|(a, b)| a & b == *b)
                    && o.value().iter().zip(&wm).zip(w.value()).all(|((v, m), want)| v & m == *want)
            })
        })
    }
    /// Whether some packet matches both.
    pub fn overlaps(&self, other: &Match) -> bool {
        self.fields.iter().all(|a| {
            other.get(a.field).is_none_or(|b| {
                let (am, bm) = (mask_of(a), mask_of(b));
                a.value().iter().zip(b.value()).zip(am.iter().zip(&bm)).all(|((x, y), (m1, m2))| (x ^ y) & m1 & m2 == 0)
            })
        })
    }
}

impl Tables {
    /// `n` empty tables of at most `max_entries` entries each.
    pub fn new(n: u8, max_entries: usize) -> Tables {
        Tables {
            tables: (0..n).map(|_| FlowTable::default()).collect(),
            max_entries,
            counters: (0..n).map(|_| TableCounters::default()).collect(),
            changes: Some(Vec::new()),
        }
    }

    /// A copy for the datapath: the classifiers (their subtables shared,
    /// not copied) and the table counters (shared), without the entry
    /// list and index the control side keeps, so that a snapshot costs the
    /// number of subtables, not of flows; not to be changed with
    /// [`Tables::flow_mod`], and [`FlowTable::scan`] finds nothing in it.
    pub fn snapshot(&self) -> Tables {
        Tables {
            tables: self
                .tables
                .iter()
                .map(|t| FlowTable {
                    entries: Vec::new(),
                    ids: std::collections::HashSet::new(),
                    cls: t.cls.clone(),
                    next_seq: t.next_seq,
                    timed: 0,
                })
                .collect(),
            max_entries: self.max_entries,
            counters: self.counters.clone(),
            changes: None,
        }
    }

    /// The rule changes since the last call, for the datapath to keep the
    /// megaflows they cannot affect; None when they were too many to list.
    pub fn take_changes(&mut self) -> Option<Vec<crate::megaflow::Change>> {
        self.changes.replace(Vec::new())
    }

    /// Lists a change of a rule matching `m` in `table`.
    fn note(&mut self, table: u8, m: &Match) {
        if let Some(c) = self.changes.as_mut() {
            if c.len() < MAX_CHANGES {
                c.push(crate::megaflow::Change::new(table, m));
            } else {
                self.changes = None;
            }
        }
    }

    fn note_removed(&mut self, removed: &[Removed]) {
        for r in removed {
            self.note(r.entry.table_id, &r.entry.match_);
        }
    }

    /// How many tables.
    pub fn n_tables(&self) -> u8 {
        u8::try_from(self.tables.len()).unwrap_or(u8::MAX)
    }

    fn check(&self, fm: &FlowMod, refs: &dyn Refs) -> Result<(), OfpError> {
        let n = self.n_tables();
        for i in &fm.instructions {
            match i {
                Instruction::GotoTable(t) if *t <= fm.table_id || *t >= n => {
                    return Err(OfpError::BadInstruction(BadInstruction::BadTableId));
                }
                Instruction::Meter(m) if !refs.meter_exists(*m) => {
                    return Err(OfpError::MeterModFailed(MeterModFailed::UnknownMeter));
                }
                Instruction::ApplyActions(acts) | Instruction::WriteActions(acts) => {
                    // What the packet is at each action: pushes and pops of
                    // MPLS change its EtherType, set-fields its fields.
                    let mut now = fm.match_.clone();
                    let set = |m: &mut Match, o: Oxm| {
                        m.fields.retain(|x| x.field != o.field);
                        m.fields.push(o);
                    };
                    for a in acts {
                        match a {
                            Action::PushMpls(e) | Action::PopMpls(e) => {
                                set(&mut now, Oxm::exact_u64(Field::EthType, u64::from(*e)));
                            }
                            Action::SetField(o) if now.prereq_met(o.field) => set(&mut now, *o),
                            Action::Output { port: p, .. } => {
                                let reserved = *p > port::MAX;
                                if (reserved && *p == port::TABLE) || (!reserved && !refs.port_exists(*p)) {
                                    return Err(OfpError::BadAction(BadAction::BadOutPort));
                                }
                            }
                            Action::Group(g) if !refs.group_exists(*g) => {
                                return Err(OfpError::BadAction(BadAction::BadOutGroup));
                            }
                            Action::SetField(_) => {
                                return Err(OfpError::BadAction(BadAction::MatchInconsistent));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies a flow-mod at `now_ms`; returns the entries it removed (for
    /// flow-removed messages). A refused flow-mod changes nothing. The
    /// instructions are kept in the order the spec runs them (meter,
    /// apply-actions, clear-actions, write-actions, write-metadata,
    /// goto-table), whatever order they came in.
    pub fn flow_mod(&mut self, fm: &FlowMod, now_ms: u64, refs: &dyn Refs) -> Result<Vec<Removed>, OfpError> {
        let mut sorted;
        let fm = if fm.instructions.windows(2).all(|w| w[0].exec_rank() <= w[1].exec_rank()) {
            fm
        } else {
            sorted = fm.clone();
            sorted.instructions.sort_by_key(Instruction::exec_rank);
            &sorted
        };
        let n = self.n_tables();
        let in_range = fm.table_id < n;
        let cookie_ok = |e: &FlowEntry| e.cookie & fm.cookie_mask == fm.cookie & fm.cookie_mask;
        match fm.command {
            FlowModCommand::Add => {
                if !in_range {
                    return Err(OfpError::FlowModFailed(FlowModFailed::BadTableId));
                }
                self.check(fm, refs)?;
                let max = self.max_entries;
                let t = &mut self.tables[usize::from(fm.table_id)];
                let id = flow_id(fm.priority, &fm.match_);
                let same = if t.ids.contains(&id) { t.position_same(fm.priority, &fm.match_) } else { None };
                if fm.flags & FF_CHECK_OVERLAP != 0
                    && t.entries.iter().any(|e| e.priority == fm.priority && e.match_.overlaps(&fm.match_))
                {
                    return Err(OfpError::FlowModFailed(FlowModFailed::Overlap));
                }
                if same.is_none() && t.entries.len() >= max {
                    return Err(OfpError::FlowModFailed(FlowModFailed::TableFull));
                }
                let stats = match same {
                    Some(i) => {
                        let old = t.entries.remove(i);
                        t.cls.remove(old.priority, &old.match_, old.seq);
                        t.ids.remove(&id);
                        t.timed -= usize::from(old.idle_timeout != 0 || old.hard_timeout != 0);
                        if fm.flags & FF_RESET_COUNTS != 0 {
                            Arc::new(EntryStats::default())
                        } else {
                            old.stats.clone()
                        }
                    }
                    None => Arc::new(EntryStats::default()),
                };
                stats.last_used_ms.store(now_ms, Ordering::Relaxed);
                t.insert(
                    id,
                    FlowEntry {
                        table_id: fm.table_id,
                        priority: fm.priority,
                        match_: fm.match_.clone(),
                        instructions: fm.instructions.clone(),
                        cookie: fm.cookie,
                        idle_timeout: fm.idle_timeout,
                        hard_timeout: fm.hard_timeout,
                        flags: fm.flags,
                        created_ms: now_ms,
                        stats,
                        seq: 0,
                    },
                );
                self.note(fm.table_id, &fm.match_);
                Ok(Vec::new())
            }
            FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                if !in_range {
                    return Err(OfpError::FlowModFailed(FlowModFailed::BadTableId));
                }
                self.check(fm, refs)?;
                let strict = fm.command == FlowModCommand::ModifyStrict;
                let t = &mut self.tables[usize::from(fm.table_id)];
                let one = if strict { t.position_same(fm.priority, &fm.match_) } else { None };
                let mut modified = Vec::new();
                let range = match one {
                    Some(i) => i..i + 1,
                    None if strict => 0..0,
                    None => 0..t.entries.len(),
                };
                for e in &mut t.entries[range] {
                    let hit = if strict {
                        e.priority == fm.priority && same_fields(&e.match_, &fm.match_)
                    } else {
                        e.match_.within(&fm.match_)
                    };
                    if hit && cookie_ok(e) {
                        // A new entry (the classifier and snapshots hold
                        // the old one), then the classifier's copy.
                        let m = Arc::make_mut(e);
                        m.instructions.clone_from(&fm.instructions);
                        if fm.flags & FF_RESET_COUNTS != 0 {
                            m.stats = Arc::new(EntryStats::default());
                        }
                        t.cls.update(e.priority, &e.match_, e.seq, e.clone());
                        modified.push(e.match_.clone());
                    }
                }
                for m in &modified {
                    self.note(fm.table_id, m);
                }
                Ok(Vec::new())
            }
            FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
                if !in_range && fm.table_id != ALL_TABLES {
                    return Err(OfpError::FlowModFailed(FlowModFailed::BadTableId));
                }
                let strict = fm.command == FlowModCommand::DeleteStrict;
                let mut removed = Vec::new();
                for (ti, t) in self.tables.iter_mut().enumerate() {
                    if fm.table_id != ALL_TABLES && usize::from(fm.table_id) != ti {
                        continue;
                    }
                    if strict {
                        // One entry at most: found by a probe, removed
                        // without a scan or a rebuild of the index.
                        let Some(i) = t.position_same(fm.priority, &fm.match_) else { continue };
                        let e = &t.entries[i];
                        if cookie_ok(e) && e.outputs_to(fm.out_port) && e.uses_group(fm.out_group) {
                            let e = t.entries.remove(i);
                            t.cls.remove(e.priority, &e.match_, e.seq);
                            t.ids.remove(&flow_id(e.priority, &e.match_));
                            t.timed -= usize::from(e.idle_timeout != 0 || e.hard_timeout != 0);
                            removed.push(Removed { entry: (*e).clone(), reason: 2 });
                        }
                        continue;
                    }
                    t.entries.retain(|e| {
                        let hit = e.match_.within(&fm.match_);
                        let gone = hit && cookie_ok(e) && e.outputs_to(fm.out_port) && e.uses_group(fm.out_group);
                        if gone {
                            t.cls.remove(e.priority, &e.match_, e.seq);
                            removed.push(Removed { entry: (**e).clone(), reason: 2 });
                        }
                        !gone
                    });
                    t.reindex();
                }
                self.note_removed(&removed);
                Ok(removed)
            }
        }
    }

    /// Whether an entry would expire at `now_ms` (by its idle timeout as
    /// its counters stand, or its hard timeout): the datapath's latest
    /// hits, not yet folded into the counters, may keep it, and the
    /// flow-removed message reports them.
    pub fn expiry_due(&self, now_ms: u64) -> bool {
        self.tables.iter().filter(|t| t.timed > 0).flat_map(|t| t.entries.iter()).any(|e| {
            let idle = u64::from(e.idle_timeout) * 1000;
            let hard = u64::from(e.hard_timeout) * 1000;
            (idle > 0 && now_ms >= e.stats.last_used_ms.load(Ordering::Relaxed) + idle)
                || (hard > 0 && now_ms >= e.created_ms + hard)
        })
    }

    /// Removes entries whose idle or hard timeout passed at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Removed> {
        let mut removed = Vec::new();
        for t in &mut self.tables {
            // Most tables have no timeouts at all: no scan of their flows
            // every tick.
            if t.timed == 0 {
                continue;
            }
            t.entries.retain(|e| {
                let idle = u64::from(e.idle_timeout) * 1000;
                let hard = u64::from(e.hard_timeout) * 1000;
                let reason = if hard > 0 && now_ms >= e.created_ms + hard {
                    Some(1)
                } else if idle > 0 && now_ms >= e.stats.last_used_ms.load(Ordering::Relaxed) + idle {
                    Some(0)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    t.cls.remove(e.priority, &e.match_, e.seq);
                    removed.push(Removed { entry: (**e).clone(), reason });
                }
                reason.is_none()
            });
            if !removed.is_empty() {
                t.reindex();
            }
        }
        self.note_removed(&removed);
        removed
    }

    /// Removes every entry that sends to `group` (a group deleted).
    pub fn remove_group_users(&mut self, group: u32) -> Vec<Removed> {
        let mut removed = Vec::new();
        for t in &mut self.tables {
            t.entries.retain(|e| {
                let gone = e.uses_group(group);
                if gone {
                    t.cls.remove(e.priority, &e.match_, e.seq);
                    removed.push(Removed { entry: (**e).clone(), reason: 3 });
                }
                !gone
            });
            t.reindex();
        }
        self.note_removed(&removed);
        removed
    }

    /// Entries selected by a flow-stats request's fields.
    pub fn select(
        &self,
        table_id: u8,
        m: &Match,
        out_port: u32,
        out_group: u32,
        cookie: u64,
        cookie_mask: u64,
    ) -> impl Iterator<Item = &FlowEntry> {
        let m = m.clone();
        self.tables
            .iter()
            .enumerate()
            .filter(move |(i, _)| table_id == ALL_TABLES || usize::from(table_id) == *i)
            .flat_map(|(_, t)| t.entries.iter().map(|e| &**e))
            .filter(move |e| {
                e.match_.within(&m)
                    && e.cookie & cookie_mask == cookie & cookie_mask
                    && e.outputs_to(out_port)
                    && e.uses_group(out_group)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofp::msg::FF_SEND_FLOW_REM;
    use crate::ofp::oxm::Field;

    struct Everything;
    impl Refs for Everything {
        fn port_exists(&self, p: u32) -> bool {
            p < 100
        }
        fn group_exists(&self, g: u32) -> bool {
            g == 1
        }
        fn meter_exists(&self, m: u32) -> bool {
            m == 1
        }
    }

    fn fm(command: FlowModCommand, priority: u16, m: Match, out: u32) -> FlowMod {
        FlowMod::new(
            command,
            0,
            priority,
            m,
            vec![Instruction::ApplyActions(vec![Action::Output { port: out, max_len: 0 }])],
        )
    }

    fn ip(dst: [u8; 4], plen: u8) -> Match {
        let mask = (!0u32).checked_shl(32 - u32::from(plen)).unwrap_or(0).to_be_bytes();
        // The value within its mask, as the decoder requires.
        let dst: Vec<u8> = dst.iter().zip(&mask).map(|(v, m)| v & m).collect();
        Match::any().with(Oxm::exact_u64(Field::EthType, 0x0800)).with(Oxm::masked(Field::Ipv4Dst, &dst, &mask))
    }

    fn key(dst: [u8; 4]) -> FlowKey {
        let mut k = FlowKey::default();
        k.set_u64(Field::EthType, 0x0800);
        k.set(Field::Ipv4Dst, &dst);
        k
    }

    fn out_of(t: &Tables, k: &FlowKey) -> Option<u32> {
        t.tables[0].lookup(k).map(|e| match &e.instructions[0] {
            Instruction::ApplyActions(a) => match a[0] {
                Action::Output { port, .. } => port,
                _ => 0,
            },
            _ => 0,
        })
    }

    #[test]
    fn priority_wins_and_identical_adds_replace() {
        let mut t = Tables::new(4, 100);
        t.flow_mod(&fm(FlowModCommand::Add, 10, ip([10, 0, 0, 0], 8), 1), 0, &Everything).unwrap();
        t.flow_mod(&fm(FlowModCommand::Add, 20, ip([10, 1, 0, 0], 16), 2), 0, &Everything).unwrap();
        t.flow_mod(&fm(FlowModCommand::Add, 0, Match::any(), 3), 0, &Everything).unwrap();
        assert_eq!(out_of(&t, &key([10, 1, 2, 3])), Some(2));
        assert_eq!(out_of(&t, &key([10, 2, 2, 3])), Some(1));
        assert_eq!(out_of(&t, &key([11, 0, 0, 1])), Some(3), "table-miss entry");
        t.tables[0].entries[0].stats.hit(5, 500, 1);
        t.flow_mod(&fm(FlowModCommand::Add, 20, ip([10, 1, 0, 0], 16), 4), 0, &Everything).unwrap();
        assert_eq!(t.tables[0].entries.len(), 3, "identical match and priority: replaced");
        assert_eq!(out_of(&t, &key([10, 1, 2, 3])), Some(4));
        assert_eq!(t.tables[0].entries[0].stats.packets.load(Ordering::Relaxed), 5, "counters kept");
        let mut reset = fm(FlowModCommand::Add, 20, ip([10, 1, 0, 0], 16), 4);
        reset.flags = FF_RESET_COUNTS;
        t.flow_mod(&reset, 0, &Everything).unwrap();
        assert_eq!(t.tables[0].entries[0].stats.packets.load(Ordering::Relaxed), 0, "RESET_COUNTS");
    }

    #[test]
    fn overlap_check_modify_and_delete() {
        let mut t = Tables::new(4, 100);
        t.flow_mod(&fm(FlowModCommand::Add, 10, ip([10, 0, 0, 0], 8), 1), 0, &Everything).unwrap();
        let mut o = fm(FlowModCommand::Add, 10, ip([10, 1, 0, 0], 16), 2);
        o.flags = FF_CHECK_OVERLAP;
        assert_eq!(t.flow_mod(&o, 0, &Everything).unwrap_err(), OfpError::FlowModFailed(FlowModFailed::Overlap));
        o.priority = 11;
        t.flow_mod(&o, 0, &Everything).unwrap();
        // Non-strict modify of 10/8 catches 10.1/16 too; strict only itself.
        t.flow_mod(&fm(FlowModCommand::ModifyStrict, 10, ip([10, 0, 0, 0], 8), 7), 0, &Everything).unwrap();
        assert_eq!(out_of(&t, &key([10, 2, 0, 1])), Some(7));
        assert_eq!(out_of(&t, &key([10, 1, 0, 1])), Some(2));
        t.flow_mod(&fm(FlowModCommand::Modify, 0, ip([10, 0, 0, 0], 8), 8), 0, &Everything).unwrap();
        assert_eq!(out_of(&t, &key([10, 1, 0, 1])), Some(8));
        // Modify never adds.
        t.flow_mod(&fm(FlowModCommand::Modify, 0, ip([12, 0, 0, 0], 8), 9), 0, &Everything).unwrap();
        assert_eq!(t.tables[0].entries.len(), 2);
        // Delete with out_port filter: only flows that output to 3.
        let mut d = fm(FlowModCommand::Delete, 0, Match::any(), 0);
        d.table_id = ALL_TABLES;
        d.out_port = 3;
        assert!(t.flow_mod(&d, 0, &Everything).unwrap().is_empty());
        d.out_port = port::ANY;
        let gone = t.flow_mod(&d, 0, &Everything).unwrap();
        assert_eq!(gone.len(), 2);
        assert!(gone.iter().all(|r| r.reason == 2));
        assert!(t.tables[0].entries.is_empty());
    }

    #[test]
    fn bad_flow_mods_are_refused_with_the_spec_errors() {
        let mut t = Tables::new(4, 1);
        let mut f = fm(FlowModCommand::Add, 1, Match::any(), 1);
        f.table_id = 4;
        assert_eq!(t.flow_mod(&f, 0, &Everything).unwrap_err(), OfpError::FlowModFailed(FlowModFailed::BadTableId));
        let mut f = fm(FlowModCommand::Add, 1, Match::any(), 1);
        f.table_id = 2;
        f.instructions.push(Instruction::GotoTable(1));
        assert_eq!(t.flow_mod(&f, 0, &Everything).unwrap_err(), OfpError::BadInstruction(BadInstruction::BadTableId));
        let f = fm(FlowModCommand::Add, 1, Match::any(), 200);
        assert_eq!(t.flow_mod(&f, 0, &Everything).unwrap_err(), OfpError::BadAction(BadAction::BadOutPort));
        let mut f = fm(FlowModCommand::Add, 1, Match::any(), 1);
        f.instructions = vec![Instruction::ApplyActions(vec![Action::Group(9)])];
        assert_eq!(t.flow_mod(&f, 0, &Everything).unwrap_err(), OfpError::BadAction(BadAction::BadOutGroup));
        let mut f = fm(FlowModCommand::Add, 1, Match::any(), 1);
        f.instructions =
            vec![Instruction::ApplyActions(vec![Action::SetField(Oxm::exact(Field::Ipv4Src, &[1, 1, 1, 1]))])];
        assert_eq!(t.flow_mod(&f, 0, &Everything).unwrap_err(), OfpError::BadAction(BadAction::MatchInconsistent));
        let mut f = fm(FlowModCommand::Add, 1, Match::any(), 1);
        f.instructions.push(Instruction::Meter(5));
        assert_eq!(t.flow_mod(&f, 0, &Everything).unwrap_err(), OfpError::MeterModFailed(MeterModFailed::UnknownMeter));
        t.flow_mod(&fm(FlowModCommand::Add, 1, Match::any(), 1), 0, &Everything).unwrap();
        let f = fm(FlowModCommand::Add, 2, Match::any(), 1);
        assert_eq!(t.flow_mod(&f, 0, &Everything).unwrap_err(), OfpError::FlowModFailed(FlowModFailed::TableFull));
        assert_eq!(t.tables[0].entries.len(), 1, "refused flow-mods change nothing");
    }

    #[test]
    fn timeouts_expire_entries_with_their_reason() {
        let mut t = Tables::new(1, 100);
        let mut idle = fm(FlowModCommand::Add, 1, ip([1, 0, 0, 0], 8), 1);
        idle.idle_timeout = 2;
        idle.flags = FF_SEND_FLOW_REM;
        let mut hard = fm(FlowModCommand::Add, 1, ip([2, 0, 0, 0], 8), 1);
        hard.hard_timeout = 3;
        t.flow_mod(&idle, 1000, &Everything).unwrap();
        t.flow_mod(&hard, 1000, &Everything).unwrap();
        assert!(t.expire(2500).is_empty());
        // Traffic keeps the idle one alive.
        t.tables[0].lookup(&key([1, 1, 1, 1])).unwrap().stats.hit(1, 60, 2500);
        assert!(t.expire(3900).is_empty());
        let gone = t.expire(4000);
        assert_eq!((gone.len(), gone[0].reason), (1, 1), "hard timeout at 1000 + 3000");
        assert!(t.expire(4400).is_empty());
        let gone = t.expire(4500);
        assert_eq!((gone.len(), gone[0].reason), (1, 0), "idle since 2500 for 2000");
    }

    #[test]
    fn within_and_overlaps() {
        let a = ip([10, 1, 0, 0], 16);
        let b = ip([10, 0, 0, 0], 8);
        assert!(a.within(&b) && !b.within(&a));
        assert!(a.within(&Match::any()));
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!ip([11, 0, 0, 0], 8).overlaps(&b));
        let other_field = Match::any().with(Oxm::exact_u64(Field::InPort, 1));
        assert!(other_field.overlaps(&b), "disjoint fields overlap");
    }

    /// Random flow-mods (adds, identical re-adds, strict and non-strict
    /// modifies and deletes) over a few prefix shapes and priorities: after
    /// each, every key gets from the classifier the entry the priority scan
    /// finds (the same entry, not only the same output), and a snapshot
    /// taken before later changes keeps answering as its own scan does.
    #[test]
    fn classifier_lookup_equals_the_scan_through_random_flow_mods() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let op = (0u8..5, 0u16..3, any::<[u8; 2]>(), 0u8..4, 0u32..50);
        let mut runner = TestRunner::new(Config::with_cases(150));
        runner
            .run(&(prop::collection::vec(op, 1..60), prop::collection::vec(any::<[u8; 2]>(), 1..30)), |(ops, keys)| {
                let mut t = Tables::new(1, 1000);
                let mut snap: Option<(Tables, Vec<Option<u64>>)> = None;
                let plens = [0u8, 8, 16, 24];
                let keys: Vec<FlowKey> = keys.iter().map(|k| key([k[0] % 4, k[1] % 4, 0, 0])).collect();
                for (i, (cmd, prio, d, plen, out)) in ops.iter().enumerate() {
                    let m = ip([d[0] % 4, d[1] % 4, 0, 0], plens[usize::from(*plen)]);
                    let command = [
                        FlowModCommand::Add,
                        FlowModCommand::Add,
                        FlowModCommand::ModifyStrict,
                        FlowModCommand::Modify,
                        [FlowModCommand::DeleteStrict, FlowModCommand::Delete][i % 2],
                    ][usize::from(*cmd)];
                    t.flow_mod(&fm(command, *prio, m, *out), 0, &Everything).unwrap();
                    for k in &keys {
                        let (a, b) = (t.tables[0].lookup(k), t.tables[0].scan(k));
                        prop_assert_eq!(a.map(|e| e.seq), b.map(|e| e.seq));
                        prop_assert_eq!(
                            out_of(&t, k),
                            b.map(|e| match &e.instructions[0] {
                                Instruction::ApplyActions(a) => match a[0] {
                                    Action::Output { port, .. } => port,
                                    _ => 0,
                                },
                                _ => 0,
                            })
                        );
                    }
                    if i == ops.len() / 2 {
                        let s = t.snapshot();
                        let seen = keys.iter().map(|k| t.tables[0].scan(k).map(|e| e.seq)).collect();
                        snap = Some((s, seen));
                    }
                }
                if let Some((s, seen)) = snap {
                    for (k, want) in keys.iter().zip(seen) {
                        prop_assert_eq!(s.tables[0].lookup(k).map(|e| e.seq), want, "the snapshot moved");
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
