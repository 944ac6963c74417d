//! Quality of service on the PMD threads: port policers (three-colour
//! markers that drop red frames) on what a port receives, before its
//! pipeline sees the batch, and on what it sends, before the tx burst
//! (gates of the PMD set: [`pmd::capture::Gate`]); and egress schedulers
//! (classes with guarantees and ceilings, queues by priority and weight)
//! each run by one PMD thread ([`shaper`], [`pmd::capture::Shaper`]).

mod fifo;
pub mod policer;
pub mod sched;
pub mod shaper;

use pmd::Batch;
use policer::{dscp_colour, Colour, Marker, Policer, PolicerSpec};

/// Nanoseconds of the TSC (the policers' and schedulers' clock): the TSC
/// times a multiplier computed once (ns per tick in 32.32 fixed point),
/// so a reading costs a multiply, not a division.
#[inline]
pub fn now_ns() -> u64 {
    static MULT: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let m = *MULT.get_or_init(|| (1_000_000_000u128 << 32) / u128::from(pmd::tsc_hz().max(1)));
    u64::try_from((u128::from(pmd::rdtsc()) * m) >> 32).unwrap_or(u64::MAX)
}

/// The policer of a port's configuration (rates in bits are kept in
/// bytes).
pub fn spec_of(p: &config::Policer) -> PolicerSpec {
    let bits = p.unit == config::RateUnit::Bits;
    let v = |x: u64| if bits { x / 8 } else { x };
    PolicerSpec {
        marker: match p.marker {
            config::Marker::Srtcm => Marker::SrTcm,
            config::Marker::Trtcm => Marker::TrTcm,
            config::Marker::Trtcm4115 => Marker::TrTcm4115,
        },
        packets: !bits,
        cir: v(p.cir),
        cbs: v(p.cbs),
        rate2: v(p.pir.or(p.eir).unwrap_or(0)),
        burst2: v(p.pbs.or(p.ebs).unwrap_or(0)),
        colour_aware: p.colour_aware,
    }
}

/// A policer as a port's gate: each batch refills its buckets once, then
/// every frame is marked; red ones are dropped.
#[derive(Debug)]
pub struct PortPolicer {
    /// The policer (its counters are the port's QoS statistics).
    pub policer: Policer,
    /// Its configuration.
    pub cfg: config::Policer,
}

impl PortPolicer {
    /// A policer for `cfg`, buckets full.
    pub fn new(cfg: &config::Policer) -> PortPolicer {
        PortPolicer { policer: Policer::new(spec_of(cfg), now_ns()), cfg: cfg.clone() }
    }
}

impl pmd::capture::Gate for PortPolicer {
    #[inline]
    fn admit(&self, _pmd: usize, batch: &mut Batch) {
        let p = &self.policer;
        p.refill(now_ns());
        let aware = p.spec.colour_aware;
        batch.retain(|f| {
            let pre = if aware { dscp_colour(f.data()) } else { Colour::Green };
            p.mark(f.len() as u64, pre) != Colour::Red
        });
    }
}
