//! Groups and meters: their entries, counters and token buckets, and the
//! group-mod and meter-mod messages that change them.

use super::{Agent, OFPG_ALL, OFPG_MAX, OFPM_ALL, OFPM_MAX};
use crate::ofp::action::{port, Action};
use crate::ofp::error::{GroupModFailed, MeterModFailed, OfpError};
use crate::ofp::msg::{Bucket, GroupMod, MeterBand, MeterMod};
use crate::table::Removed;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A group.
#[derive(Debug, Clone)]
pub struct Group {
    /// OFPGT_*.
    pub group_type: u8,
    /// Buckets.
    pub buckets: Vec<Bucket>,
    /// Packets and bytes through it, and per bucket.
    pub stats: Arc<GroupCounters>,
    /// Added at, caller's milliseconds.
    pub created_ms: u64,
}

/// Counters of a group (shared with the datapath).
#[derive(Debug, Default)]
pub struct GroupCounters {
    /// Packets.
    pub packets: AtomicU64,
    /// Bytes.
    pub bytes: AtomicU64,
    /// (packets, bytes) per bucket.
    pub buckets: Vec<(AtomicU64, AtomicU64)>,
}

/// A meter.
#[derive(Debug, Clone)]
pub struct Meter {
    /// OFPMF_*.
    pub flags: u16,
    /// Bands.
    pub bands: Vec<MeterBand>,
    /// Packets and bytes in, and per band.
    pub stats: Arc<MeterCounters>,
    /// Added at, caller's milliseconds.
    pub created_ms: u64,
}

/// Counters of a meter and its bands' token buckets (shared with the
/// datapath; atomics, no lock).
#[derive(Debug, Default)]
pub struct MeterCounters {
    /// Packets in.
    pub packets: AtomicU64,
    /// Bytes in.
    pub bytes: AtomicU64,
    /// (packets, bytes) per band: packets the band was applied to.
    pub bands: Vec<(AtomicU64, AtomicU64)>,
    /// Per band: tokens in nano-units (bits for kbps meters, packets for
    /// pktps ones, times 1e9).
    pub tokens: Vec<AtomicU64>,
    /// When the buckets were last refilled, in the caller's nanoseconds.
    pub last_ns: AtomicU64,
}

impl Meter {
    /// Bucket size of band `b` in nano-units: its burst when the meter has
    /// OFPMF_BURST, else 100 ms of its rate; at least one full-size frame.
    fn capacity(&self, b: &MeterBand) -> u64 {
        let kbps = self.flags & 1 != 0;
        let unit: u64 = if kbps { 1000 } else { 1 };
        let units =
            if self.flags & 4 != 0 { u64::from(b.burst_size) * unit } else { (u64::from(b.rate) * unit / 10).max(1) };
        let floor = if kbps { 1518 * 8 } else { 1 };
        units.max(floor).saturating_mul(1_000_000_000)
    }

    /// Meters a packet of `bytes` at `now_ns`: the band it exceeds (the one
    /// of highest rate among those whose bucket is short, spec 5.7.1), or
    /// None when it conforms. Counts the meter's and the band's counters.
    pub fn apply(&self, bytes: u64, now_ns: u64) -> Option<&MeterBand> {
        let st = &self.stats;
        st.packets.fetch_add(1, Ordering::Relaxed);
        st.bytes.fetch_add(bytes, Ordering::Relaxed);
        let kbps = self.flags & 1 != 0;
        let unit: u64 = if kbps { 1000 } else { 1 };
        let cost = if kbps { bytes * 8 } else { 1 }.saturating_mul(1_000_000_000);
        let last = st.last_ns.swap(now_ns, Ordering::Relaxed);
        // One second of refill at most: the buckets are full by then.
        let elapsed = now_ns.saturating_sub(last).min(1_000_000_000);
        let mut exceeded: Option<usize> = None;
        for (i, b) in self.bands.iter().enumerate() {
            let Some(t) = st.tokens.get(i) else { continue };
            let cap = self.capacity(b);
            let add = elapsed.saturating_mul(u64::from(b.rate) * unit);
            let _ = t.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(x.saturating_add(add).min(cap)));
            if t.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| x.checked_sub(cost)).is_err()
                && exceeded.is_none_or(|e| self.bands[e].rate < b.rate)
            {
                exceeded = Some(i);
            }
        }
        let i = exceeded?;
        if let Some((p, by)) = st.bands.get(i) {
            p.fetch_add(1, Ordering::Relaxed);
            by.fetch_add(bytes, Ordering::Relaxed);
        }
        self.bands.get(i)
    }
}

impl Agent {
    pub(super) fn group_mod(&mut self, g: &GroupMod, now_ms: u64) -> Result<Vec<Removed>, OfpError> {
        let err = |c| Err(OfpError::GroupModFailed(c));
        match g.command {
            0 | 1 => {
                if g.group_id > OFPG_MAX {
                    return err(GroupModFailed::InvalidGroup);
                }
                if g.group_type > 3 {
                    return err(GroupModFailed::BadType);
                }
                if g.group_type == 2 && g.buckets.len() != 1 {
                    return err(GroupModFailed::InvalidGroup);
                }
                for b in &g.buckets {
                    if g.group_type == 3 && b.watch_port == port::ANY && b.watch_group == port::ANY {
                        return err(GroupModFailed::BadWatch);
                    }
                    if g.group_type != 1 && b.weight != 0 && g.group_type != 3 {
                        return err(GroupModFailed::WeightUnsupported);
                    }
                    for a in &b.actions {
                        if let Action::Group(x) = a {
                            if *x == g.group_id {
                                return err(GroupModFailed::Loop);
                            }
                            if !self.groups.contains_key(x) {
                                return err(GroupModFailed::ChainedGroup);
                            }
                        }
                    }
                }
                let exists = self.groups.contains_key(&g.group_id);
                if g.command == 0 && exists {
                    return err(GroupModFailed::GroupExists);
                }
                if g.command == 1 && !exists {
                    return err(GroupModFailed::UnknownGroup);
                }
                let counters = GroupCounters {
                    buckets: g.buckets.iter().map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
                    ..GroupCounters::default()
                };
                self.groups.insert(
                    g.group_id,
                    Group {
                        group_type: g.group_type,
                        buckets: g.buckets.clone(),
                        stats: Arc::new(counters),
                        created_ms: now_ms,
                    },
                );
                self.generation += 1;
                self.group_meter_generation += 1;
                Ok(Vec::new())
            }
            2 => {
                let ids: Vec<u32> = if g.group_id == OFPG_ALL {
                    self.groups.keys().copied().collect()
                } else {
                    self.groups.contains_key(&g.group_id).then_some(g.group_id).into_iter().collect()
                };
                let mut removed = Vec::new();
                for id in ids {
                    self.groups.remove(&id);
                    removed.extend(self.tables.remove_group_users(id));
                }
                self.generation += 1;
                self.group_meter_generation += 1;
                Ok(removed)
            }
            _ => err(GroupModFailed::BadCommand),
        }
    }

    pub(super) fn meter_mod(&mut self, m: &MeterMod, now_ms: u64) -> Result<(), OfpError> {
        let err = |c| Err(OfpError::MeterModFailed(c));
        match m.command {
            0 | 1 => {
                if m.meter_id == 0 || m.meter_id > OFPM_MAX {
                    return err(MeterModFailed::InvalidMeter);
                }
                let kbps = m.flags & 1 != 0;
                let pktps = m.flags & 2 != 0;
                if kbps == pktps || m.flags & !0xf != 0 {
                    return err(MeterModFailed::BadFlags);
                }
                if m.bands.is_empty() {
                    return err(MeterModFailed::BadBand);
                }
                if m.bands.iter().any(|b| b.rate == 0) {
                    return err(MeterModFailed::BadRate);
                }
                let exists = self.meters.contains_key(&m.meter_id);
                if m.command == 0 && exists {
                    return err(MeterModFailed::MeterExists);
                }
                if m.command == 1 && !exists {
                    return err(MeterModFailed::UnknownMeter);
                }
                let counters = MeterCounters {
                    bands: m.bands.iter().map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
                    tokens: m.bands.iter().map(|_| AtomicU64::new(0)).collect(),
                    ..MeterCounters::default()
                };
                let meter =
                    Meter { flags: m.flags, bands: m.bands.clone(), stats: Arc::new(counters), created_ms: now_ms };
                // Buckets start full.
                for (t, b) in meter.stats.tokens.iter().zip(&meter.bands) {
                    t.store(meter.capacity(b), Ordering::Relaxed);
                }
                self.meters.insert(m.meter_id, meter);
                self.generation += 1;
                self.group_meter_generation += 1;
                Ok(())
            }
            2 => {
                if m.meter_id == OFPM_ALL {
                    self.meters.clear();
                } else {
                    self.meters.remove(&m.meter_id);
                }
                self.generation += 1;
                self.group_meter_generation += 1;
                Ok(())
            }
            _ => err(MeterModFailed::BadCommand),
        }
    }
}
