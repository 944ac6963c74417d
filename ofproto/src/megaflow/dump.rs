//! Megaflows as `dp-flows` shows them.

use super::entry::Megaflow;
use super::subtable::word;
use super::{MegaflowCache, Step};
use crate::classifier::FlowMask;
use crate::flow::FlowKey;
use std::sync::Arc;

/// A megaflow as `dp-flows` shows it.
#[derive(Debug)]
pub struct DpFlow {
    /// Its key: the bits of `mask`, the others zero.
    pub key: FlowKey,
    /// Its mask.
    pub mask: Arc<FlowMask>,
    /// The megaflow.
    pub mf: Arc<Megaflow>,
}

impl DpFlow {
    /// The key under the mask, close to `ovs-appctl dpctl/dump-flows`
    /// (see [`match_string`]).
    pub fn match_string(&self) -> String {
        match_string(&self.key, &self.mask)
    }

    /// The tables its decision went through.
    pub fn tables(&self) -> Vec<u8> {
        self.mf
            .steps
            .iter()
            .filter_map(|s| if let Step::Table { table, .. } = s { Some(*table) } else { None })
            .collect()
    }

    /// Its decision as an action list (see [`steps_string`]).
    pub fn actions_string(&self) -> String {
        steps_string(&self.mf.steps)
    }
}

/// A megaflow's key under its mask, close to `ovs-appctl
/// dpctl/dump-flows`: `field=value` for all bits, `field=value/mask` for
/// some, `field=*` where only the field's presence matters, `!field` where
/// its absence does.
pub fn match_string(key: &FlowKey, mask: &FlowMask) -> String {
    let mut parts = Vec::new();
    for f in mask.fields() {
        let i = f as usize;
        let w = f.width();
        let mut m = [0u8; 16];
        m[..8].copy_from_slice(&mask.bits[i][0].to_ne_bytes());
        m[8..].copy_from_slice(&mask.bits[i][1].to_ne_bytes());
        let m = &m[..w];
        match key.get(f) {
            None => parts.push(format!("!{}", f.name())),
            Some(_) if m.iter().all(|b| *b == 0) => parts.push(format!("{}=*", f.name())),
            Some(v) if m.iter().all(|b| *b == 0xff) => parts.push(crate::ofp::oxm::Oxm::exact(f, v).to_string()),
            Some(v) => parts.push(crate::ofp::oxm::Oxm::masked(f, v, m).to_string()),
        }
    }
    parts.join(",")
}

/// A decision as an action list (`drop` when it sends nothing).
pub fn steps_string(steps: &[Step]) -> String {
    let mut parts = Vec::new();
    for s in steps {
        match s {
            Step::Table { entry: None, table } => parts.push(format!("drop(miss in table {table})")),
            Step::Table { .. } => {}
            Step::Apply { acts, .. } => parts.extend(acts.iter().map(ToString::to_string)),
            Step::Metadata(m) => parts.push(format!("metadata=0x{m:x}")),
            Step::Meter(m) => parts.push(format!("meter:{m}")),
        }
    }
    if parts.is_empty() {
        "drop".into()
    } else {
        parts.join(",")
    }
}

impl MegaflowCache {
    /// Every megaflow with its key and mask, for `dp-flows` and tests
    /// (allocates: on request only).
    pub fn dump(&self) -> Vec<DpFlow> {
        let mut v = Vec::with_capacity(self.len);
        for st in &self.subtables {
            for (slot, mf) in st.flows.iter().enumerate() {
                let k = st.key(slot);
                let mut key = FlowKey::default();
                for (n, &(i, _)) in st.fields.iter().enumerate() {
                    if word(k, 0) & (1 << i) != 0 {
                        key.set_words(i, st.stored(k, n));
                    }
                }
                v.push(DpFlow { key, mask: st.mask.clone(), mf: mf.clone() });
            }
        }
        v
    }

    /// Every megaflow, for tests.
    pub fn megaflows(&self) -> impl Iterator<Item = &Arc<Megaflow>> {
        self.subtables.iter().flat_map(|s| s.flows.iter())
    }
}
