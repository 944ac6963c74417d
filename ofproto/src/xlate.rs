//! Translation: a flow key's walk through a bridge's tables, as the fast
//! path walks them, turned into a decision the datapath can replay
//! ([`Step`]s) plus the mask of every bit the walk examined ([`FlowMask`],
//! from the classifier). Every key equal to this one on the mask gets the
//! same steps: the megaflow ([`crate::megaflow`]).
//!
//! The steps keep what is per packet per packet: meters, TTL checks,
//! select-group hashing and fast-failover liveness run when the steps are
//! replayed, so one megaflow serves every bucket of a select group.
//!
//! A decision cannot be cached when a header is pushed or popped and a
//! later table then looks at the packet: the key after a push or pop is
//! read from the frame again, from bytes a mask cannot name. Such keys
//! walk the tables every time ([`Translation::cacheable`] is false).

use crate::classifier::FlowMask;
use crate::flow::FlowKey;
use crate::ofp::action::Instruction;
use crate::ofp::oxm::Field;
use crate::ofp::Action;
use crate::table::{EntryStats, FlowEntry, FlowTable, Tables};
use std::sync::Arc;

/// One step of a decision, replayed in order.
#[derive(Debug, Clone)]
pub enum Step {
    /// A table was looked up; `entry` is the entry that matched (None: a
    /// miss without table-miss entry, which drops).
    Table {
        /// Table id.
        table: u8,
        /// The matched entry's counters.
        entry: Option<Arc<EntryStats>>,
    },
    /// An apply-actions list (or the action set at the end), run as the
    /// tables run it.
    Apply {
        /// The actions.
        acts: Box<[Action]>,
        /// Table of the flow that holds them.
        table: u8,
        /// Its cookie.
        cookie: u64,
        /// OFPR_ACTION 1, or OFPR_NO_MATCH 0 for a table-miss entry.
        reason: u8,
    },
    /// The pipeline's metadata becomes this (write-metadata).
    Metadata(u64),
    /// A meter instruction.
    Meter(u32),
}

impl PartialEq for Step {
    fn eq(&self, other: &Step) -> bool {
        match (self, other) {
            (Step::Table { table: a, entry: x }, Step::Table { table: b, entry: y }) => {
                a == b
                    && match (x, y) {
                        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                        (None, None) => true,
                        _ => false,
                    }
            }
            (
                Step::Apply { acts: a, table: t, cookie: c, reason: r },
                Step::Apply { acts: b, table: u, cookie: d, reason: s },
            ) => a == b && t == u && c == d && r == s,
            (Step::Metadata(a), Step::Metadata(b)) => a == b,
            (Step::Meter(a), Step::Meter(b)) => a == b,
            _ => false,
        }
    }
}

/// A key's decision and the bits it depends on.
#[derive(Debug, Clone)]
pub struct Translation {
    /// What to do, in order.
    pub steps: Vec<Step>,
    /// Every bit of the key the walk examined; the input port always.
    pub mask: FlowMask,
    /// Whether the steps hold for every key equal on `mask` (see the
    /// module's documentation).
    pub cacheable: bool,
}

/// Whether an action re-reads the key from the frame.
pub fn reextracts(a: &Action) -> bool {
    matches!(a, Action::PopVlan | Action::PushMpls(_) | Action::PopMpls(_) | Action::PushPbb(_) | Action::PopPbb)
}

/// What an action does to the key later tables see (the fast path makes
/// the same change as it runs the action on the frame). Headers pushed or
/// popped are left to the caller (see [`reextracts`]).
pub fn key_effect(key: &mut FlowKey, a: &Action) {
    match a {
        Action::SetField(o) => key.set(o.field, o.value()),
        Action::PushVlan(_) => {
            // The new tag copies VID and PCP of an existing one (spec
            // 5.12), else 0.
            let vid = key.get_u64(Field::VlanVid).filter(|v| v & 0x1000 != 0).map_or(0, |v| v & 0xfff);
            let pcp = key.get_u64(Field::VlanPcp).unwrap_or(0) & 7;
            key.set_u64(Field::VlanVid, 0x1000 | vid);
            key.set_u64(Field::VlanPcp, pcp);
        }
        _ => {}
    }
}

/// Whether the fast path's packet ends with this list of actions (an
/// output or a group as the last action consumes it).
pub fn consumes(acts: &[Action]) -> bool {
    matches!(acts.last(), Some(Action::Output { .. } | Action::Group(_)))
}

/// Where an action list came from, for packet-ins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Table of the flow.
    pub table: u8,
    /// Its cookie.
    pub cookie: u64,
    /// OFPR_NO_MATCH 0 (a table-miss entry) or OFPR_ACTION 1.
    pub reason: u8,
}

impl Origin {
    /// Before any table (a packet-out).
    pub const NONE: Origin = Origin { table: 0, cookie: 0, reason: 1 };

    /// Entry `e` of table `table`.
    pub fn of(table: u8, e: &FlowEntry) -> Origin {
        Origin { table, cookie: e.cookie, reason: u8::from(!(e.priority == 0 && e.match_.fields.is_empty())) }
    }
}

/// Sets the metadata bits `mask` of `key` to `metadata`'s (write-metadata);
/// the new metadata.
pub fn write_metadata(key: &mut FlowKey, metadata: u64, mask: u64) -> u64 {
    let old = key.get_u64(Field::Metadata).unwrap_or(0);
    let new = (old & !mask) | (metadata & mask);
    key.set_u64(Field::Metadata, new);
    new
}

/// What a walk through the tables does at each step. The walk itself
/// ([`walk`]) is one: the translation walks with a key, the fast path's
/// slow path with a packet, and they cannot drift apart.
pub trait Walker<'t> {
    /// Looks up table `table` with the walker's key (None: a miss
    /// without table-miss entry, which ends the walk).
    fn lookup(&mut self, table: u8, t: &'t FlowTable) -> Option<&'t FlowEntry>;
    /// Runs an apply-actions list (or, at the end, the action set); false
    /// when the packet is gone (sent by a final output or group, dropped).
    fn apply(&mut self, acts: &[Action], origin: Origin) -> bool;
    /// Write-metadata.
    fn write_metadata(&mut self, metadata: u64, mask: u64);
    /// A meter instruction; false when it dropped the packet.
    fn meter(&mut self, meter: u32) -> bool;
}

/// Walks `tables` (spec 5.1-5.10): apply-actions in order, the action set
/// at the end in the spec's order, goto-table only forward, metadata.
pub fn walk<'t, W: Walker<'t>>(tables: &'t Tables, w: &mut W) {
    // Made only when a flow writes to it: most pipelines never do.
    let mut set: Option<ActionSet> = None;
    let mut origin = Origin::NONE;
    let mut table = 0u8;
    while let Some(t) = tables.tables.get(usize::from(table)) {
        let Some(e) = w.lookup(table, t) else { return };
        origin = Origin::of(table, e);
        let mut next = None;
        for i in &e.instructions {
            match i {
                Instruction::ApplyActions(a) => {
                    if !w.apply(a, origin) {
                        return;
                    }
                }
                Instruction::ClearActions => set = None,
                Instruction::WriteActions(a) => set.get_or_insert_with(ActionSet::default).write(a),
                Instruction::WriteMetadata { metadata, mask } => w.write_metadata(*metadata, *mask),
                Instruction::GotoTable(n) => next = Some(*n),
                Instruction::Meter(m) => {
                    if !w.meter(*m) {
                        return;
                    }
                }
            }
        }
        match next {
            Some(n) if n > table => table = n,
            _ => break,
        }
    }
    if let Some(set) = set.filter(|s| s.any) {
        let mut buf = [Action::PopPbb; SET_MAX];
        let acts = set.actions(&mut buf);
        if !acts.is_empty() {
            w.apply(acts, origin);
        }
    }
}

/// The translation's walker: the key, the bits looked at, the steps.
pub(crate) struct Translator {
    /// The key as the walk changed it.
    pub(crate) key: FlowKey,
    mask: FlowMask,
    steps: Vec<Step>,
    cacheable: bool,
    reextracted: bool,
}

impl Translator {
    /// A walk for `key` (the input port always examined).
    pub(crate) fn new(key: &FlowKey) -> Translator {
        let mut mask = FlowMask::default();
        mask.set(Field::InPort, [u64::MAX, 0]);
        Translator { key: key.clone(), mask, steps: Vec::with_capacity(8), cacheable: true, reextracted: false }
    }

    /// What the walk decided.
    pub(crate) fn finish(self) -> Translation {
        Translation { steps: self.steps, mask: self.mask, cacheable: self.cacheable }
    }
}

impl<'t> Walker<'t> for Translator {
    fn lookup(&mut self, table: u8, t: &'t FlowTable) -> Option<&'t FlowEntry> {
        self.cacheable &= !self.reextracted;
        let found = t.lookup_wc(&self.key, &mut self.mask);
        self.steps.push(Step::Table { table, entry: found.map(|e| e.stats.clone()) });
        found
    }
    fn apply(&mut self, acts: &[Action], o: Origin) -> bool {
        self.steps.push(Step::Apply { acts: acts.into(), table: o.table, cookie: o.cookie, reason: o.reason });
        if consumes(acts) {
            return false;
        }
        for a in acts {
            self.reextracted |= reextracts(a);
            key_effect(&mut self.key, a);
        }
        true
    }
    fn write_metadata(&mut self, metadata: u64, mask: u64) {
        let new = write_metadata(&mut self.key, metadata, mask);
        self.steps.push(Step::Metadata(new));
    }
    fn meter(&mut self, meter: u32) -> bool {
        self.steps.push(Step::Meter(meter));
        true
    }
}

/// Walks `tables` with `key` as the fast path does.
pub fn translate(tables: &Tables, key: &FlowKey) -> Translation {
    let mut w = Translator::new(key);
    walk(tables, &mut w);
    w.finish()
}

/// The action set (spec 5.10): at most one action of each kind, kept
/// inline (no allocation per packet).
pub struct ActionSet {
    copy_ttl_in: bool,
    pop_vlan: bool,
    push_vlan: Option<u16>,
    copy_ttl_out: bool,
    dec_nw_ttl: bool,
    /// One set-field per field, by field id.
    set_fields: [Option<Action>; crate::ofp::oxm::N_FIELDS],
    group: Option<u32>,
    output: Option<Action>,
    /// Whether anything was written.
    pub any: bool,
}

impl Default for ActionSet {
    fn default() -> ActionSet {
        ActionSet {
            copy_ttl_in: false,
            pop_vlan: false,
            push_vlan: None,
            copy_ttl_out: false,
            dec_nw_ttl: false,
            set_fields: [None; crate::ofp::oxm::N_FIELDS],
            group: None,
            output: None,
            any: false,
        }
    }
}

/// Up to this many actions run from an action set.
pub const SET_MAX: usize = crate::ofp::oxm::N_FIELDS + 8;

impl ActionSet {
    /// Adds write-actions' `acts` (one per kind; a later one replaces).
    pub fn write(&mut self, acts: &[Action]) {
        for a in acts {
            self.any = true;
            match a {
                Action::CopyTtlIn => self.copy_ttl_in = true,
                Action::PopVlan => self.pop_vlan = true,
                Action::PushVlan(e) => self.push_vlan = Some(*e),
                Action::CopyTtlOut => self.copy_ttl_out = true,
                Action::DecNwTtl => self.dec_nw_ttl = true,
                Action::SetField(o) => self.set_fields[o.field as usize] = Some(*a),
                Action::Group(g) => self.group = Some(*g),
                Action::Output { .. } => self.output = Some(*a),
                _ => {}
            }
        }
    }
    /// In execution order into `buf`; output only without a group.
    pub fn actions<'b>(&self, buf: &'b mut [Action; SET_MAX]) -> &'b [Action] {
        let mut n = 0;
        let mut push = |a: Action| {
            buf[n] = a;
            n += 1;
        };
        if self.copy_ttl_in {
            push(Action::CopyTtlIn);
        }
        if self.pop_vlan {
            push(Action::PopVlan);
        }
        if let Some(e) = self.push_vlan {
            push(Action::PushVlan(e));
        }
        if self.copy_ttl_out {
            push(Action::CopyTtlOut);
        }
        if self.dec_nw_ttl {
            push(Action::DecNwTtl);
        }
        for a in self.set_fields.iter().flatten() {
            push(*a);
        }
        match (self.group, self.output) {
            (Some(g), _) => push(Action::Group(g)),
            (None, Some(o)) => push(o),
            (None, None) => {}
        }
        &buf[..n]
    }
}
