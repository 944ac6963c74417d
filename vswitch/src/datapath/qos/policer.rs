//! Three-colour markers as port policers: single-rate (RFC 2697),
//! two-rate (RFC 2698) and two-rate with independent excess (RFC 4115),
//! colour-blind or colour-aware, in bits or packets per second. Green and
//! yellow frames pass, red ones are dropped; every colour is counted.
//!
//! The buckets are atomics shared by every PMD thread sending through the
//! port (no lock: each thread refills with the time since the last refill
//! it swapped out, then takes its frames' tokens with compare-and-swap).
//! Tokens are kept in thousandths of a byte (or of a packet) in 64 bits,
//! with the refill computed in 128 bits: 400 Gbit/s with a one-second
//! burst is 5e13 units, far from wrapping (OVS's 32-bit field wrapped above
//! 34 Gbit/s, ovs-issues #189).

use std::sync::atomic::{AtomicU64, Ordering};

/// Token units per byte (or packet).
const MILLI: u64 = 1000;

/// Which marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// RFC 2697 single rate: committed bucket (CBS) filled at CIR, its
    /// overflow filling the excess bucket (EBS).
    SrTcm,
    /// RFC 2698 two rate: peak bucket (PBS) at PIR, committed (CBS) at CIR.
    TrTcm,
    /// RFC 4115 two rate: committed (CBS) at CIR, excess (EBS) at EIR,
    /// filled independently.
    TrTcm4115,
}

/// A frame's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Colour {
    /// Within the committed rate.
    Green,
    /// Within the excess or peak rate.
    Yellow,
    /// Beyond: dropped.
    Red,
}

/// A policer's settings (rates per second, bursts, in bytes or packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicerSpec {
    /// The marker.
    pub marker: Marker,
    /// Rates and bursts count packets instead of bytes.
    pub packets: bool,
    /// Committed rate.
    pub cir: u64,
    /// Committed burst.
    pub cbs: u64,
    /// The second rate: PIR (RFC 2698) or EIR (RFC 4115); unused by RFC 2697.
    pub rate2: u64,
    /// The second burst: EBS (RFC 2697, 4115) or PBS (RFC 2698).
    pub burst2: u64,
    /// Colour-aware: a frame's own colour (from its DSCP) caps the one it
    /// gets.
    pub colour_aware: bool,
}

/// Per-colour counters.
#[derive(Debug, Default)]
pub struct ColourCounters {
    /// Packets by colour (green, yellow, red).
    pub packets: [AtomicU64; 3],
    /// Bytes by colour.
    pub bytes: [AtomicU64; 3],
}

/// A policer's state.
#[derive(Debug)]
pub struct Policer {
    /// Settings.
    pub spec: PolicerSpec,
    /// The committed bucket, in units.
    c: AtomicU64,
    /// The second bucket (excess or peak), in units.
    e: AtomicU64,
    /// The time the buckets were last filled to (ns, caller's clock).
    last_ns: AtomicU64,
    /// Counters.
    pub counts: ColourCounters,
}

/// `rate` per second over `ns` nanoseconds, in units.
#[inline]
fn fill(rate: u64, ns: u64) -> u64 {
    u64::try_from(u128::from(rate) * u128::from(MILLI) * u128::from(ns) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// Takes `cost` from `b` when it holds that many; whether it did.
#[inline]
fn take(b: &AtomicU64, cost: u64) -> bool {
    b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| x.checked_sub(cost)).is_ok()
}

/// Adds `n` to `b` up to `cap`; what did not fit.
#[inline]
fn add(b: &AtomicU64, n: u64, cap: u64) -> u64 {
    let mut over = 0;
    let _ = b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| {
        let y = x.saturating_add(n);
        over = y.saturating_sub(cap);
        Some(y.min(cap))
    });
    over
}

impl Policer {
    /// A policer with full buckets, its clock started at `now_ns`.
    pub fn new(spec: PolicerSpec, now_ns: u64) -> Policer {
        let units = |b: u64| b.saturating_mul(MILLI);
        Policer {
            spec,
            c: AtomicU64::new(units(spec.cbs)),
            e: AtomicU64::new(units(spec.burst2)),
            last_ns: AtomicU64::new(now_ns),
            counts: ColourCounters::default(),
        }
    }

    /// Fills the buckets for the time since the last fill.
    #[inline]
    pub fn refill(&self, now_ns: u64) {
        let last = self.last_ns.swap(now_ns, Ordering::Relaxed);
        // One second at most: every bucket is full by then.
        let ns = now_ns.saturating_sub(last).min(1_000_000_000);
        if ns == 0 {
            return;
        }
        let s = &self.spec;
        let (cbs, b2) = (s.cbs.saturating_mul(MILLI), s.burst2.saturating_mul(MILLI));
        match s.marker {
            SrTcm => {
                let over = add(&self.c, fill(s.cir, ns), cbs);
                if over > 0 {
                    add(&self.e, over, b2);
                }
            }
            Marker::TrTcm | Marker::TrTcm4115 => {
                add(&self.c, fill(s.cir, ns), cbs);
                add(&self.e, fill(s.rate2, ns), b2);
            }
        }
    }

    /// The colour of a frame of `bytes` (its own colour `pre` when
    /// colour-aware), its tokens taken.
    #[inline]
    pub fn mark(&self, bytes: u64, pre: Colour) -> Colour {
        let s = &self.spec;
        let cost = if s.packets { MILLI } else { bytes.saturating_mul(MILLI) };
        let pre = if s.colour_aware { pre } else { Colour::Green };
        let colour = match s.marker {
            // The committed bucket, else the excess one.
            SrTcm | Marker::TrTcm4115 => {
                if pre == Colour::Green && take(&self.c, cost) {
                    Colour::Green
                } else if pre != Colour::Red && take(&self.e, cost) {
                    Colour::Yellow
                } else {
                    Colour::Red
                }
            }
            // The peak bucket first, then the committed one.
            Marker::TrTcm => {
                if pre == Colour::Red || !take(&self.e, cost) {
                    Colour::Red
                } else if pre == Colour::Yellow || !take(&self.c, cost) {
                    Colour::Yellow
                } else {
                    Colour::Green
                }
            }
        };
        let i = colour as usize;
        self.counts.packets[i].fetch_add(1, Ordering::Relaxed);
        self.counts.bytes[i].fetch_add(bytes, Ordering::Relaxed);
        colour
    }

    /// Packets and bytes by colour so far.
    pub fn totals(&self) -> ([u64; 3], [u64; 3]) {
        let g = |a: &[AtomicU64; 3]| [0, 1, 2].map(|i| a[i].load(Ordering::Relaxed));
        (g(&self.counts.packets), g(&self.counts.bytes))
    }
}

use Marker::SrTcm;

/// A frame's own colour from its DSCP (RFC 2597's drop precedences: AFx1
/// green, AFx2 yellow, AFx3 red; anything else green).
#[inline]
pub fn dscp_colour(frame: &[u8]) -> Colour {
    match dscp_pcp(frame) {
        (Some(dscp), None) => colour_of_dscp(dscp),
        _ => Colour::Green,
    }
}

/// A frame's DSCP (IPv4 or IPv6) and 802.1Q priority (PCP), after at most
/// one VLAN tag; None where it has none.
#[inline]
pub fn dscp_pcp(d: &[u8]) -> (Option<u8>, Option<u8>) {
    let (pcp, ty, l3) = match d.get(12..14) {
        Some([0x81, 0x00] | [0x88, 0xa8]) => (d.get(14).map(|t| t >> 5), d.get(16..18), 18),
        t => (None, t, 14),
    };
    let dscp = match ty {
        Some([0x08, 0x00]) => d.get(l3 + 1).map(|tos| tos >> 2),
        Some([0x86, 0xdd]) => d.get(l3..l3 + 2).map(|v| ((v[0] & 0x0f) << 2) | (v[1] >> 6)),
        _ => None,
    };
    (dscp, pcp)
}

/// The drop precedence a DSCP gives (RFC 2597: AFx2 yellow, AFx3 red).
#[inline]
pub fn colour_of_dscp(dscp: u8) -> Colour {
    // AF classes 1-4: 0b001dd0 .. 0b100dd0.
    if (1..=4).contains(&(dscp >> 3)) && dscp & 1 == 0 {
        match (dscp >> 1) & 3 {
            2 => Colour::Yellow,
            3 => Colour::Red,
            _ => Colour::Green,
        }
    } else {
        Colour::Green
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(marker: Marker, cir: u64, cbs: u64, rate2: u64, burst2: u64) -> PolicerSpec {
        PolicerSpec { marker, packets: false, cir, cbs, rate2, burst2, colour_aware: false }
    }

    #[test]
    fn srtcm_marks_as_rfc_2697_says() {
        // CIR 1000 B/s, CBS 1500, EBS 1000: a full committed bucket, then
        // the excess one, then red; refills go to C first, overflow to E.
        let p = Policer::new(spec(SrTcm, 1000, 1500, 0, 1000), 0);
        assert_eq!(p.mark(1000, Colour::Green), Colour::Green);
        assert_eq!(p.mark(1000, Colour::Green), Colour::Yellow, "C has 500, E 1000");
        assert_eq!(p.mark(500, Colour::Green), Colour::Green);
        assert_eq!(p.mark(100, Colour::Green), Colour::Red);
        // One second: C gets 1000 (of its 1500).
        p.refill(1_000_000_000);
        assert_eq!(p.mark(1000, Colour::Green), Colour::Green);
        assert_eq!(p.mark(1, Colour::Green), Colour::Red);
        // Two seconds (but one counts at most): C gets 1000.
        p.refill(3_000_000_000);
        // One more: C fills to 1500, the 500 over go to E.
        p.refill(4_000_000_000);
        assert_eq!(p.mark(1500, Colour::Green), Colour::Green);
        assert_eq!(p.mark(500, Colour::Green), Colour::Yellow);
        assert_eq!(p.mark(1, Colour::Green), Colour::Red);
        let (pk, by) = p.totals();
        assert_eq!((pk, by), ([4, 2, 3], [4000, 1500, 102]));
    }

    #[test]
    fn trtcm_marks_as_rfc_2698_says() {
        // CIR 1000, CBS 1000, PIR 2000, PBS 2000.
        let p = Policer::new(spec(Marker::TrTcm, 1000, 1000, 2000, 2000), 0);
        assert_eq!(p.mark(1000, Colour::Green), Colour::Green, "P 1000, C 0");
        assert_eq!(p.mark(800, Colour::Green), Colour::Yellow, "P 200");
        assert_eq!(p.mark(800, Colour::Green), Colour::Red, "beyond the peak");
        p.refill(500_000_000);
        assert_eq!(p.mark(500, Colour::Green), Colour::Green, "half a second: C 500, P 1200");
    }

    #[test]
    fn rfc_4115_fills_its_buckets_independently() {
        // CIR 1000, CBS 1000, EIR 500, EBS 500: E fills at its own rate.
        let p = Policer::new(spec(Marker::TrTcm4115, 1000, 1000, 500, 500), 0);
        assert_eq!(p.mark(1000, Colour::Green), Colour::Green);
        assert_eq!(p.mark(500, Colour::Green), Colour::Yellow);
        assert_eq!(p.mark(1, Colour::Green), Colour::Red);
        p.refill(1_000_000_000);
        assert_eq!(p.mark(1000, Colour::Green), Colour::Green);
        assert_eq!(p.mark(500, Colour::Green), Colour::Yellow);
    }

    #[test]
    fn colour_aware_never_improves_a_frames_colour() {
        let mut s = spec(SrTcm, 1000, 1500, 0, 1500);
        s.colour_aware = true;
        let p = Policer::new(s, 0);
        assert_eq!(p.mark(100, Colour::Yellow), Colour::Yellow, "tokens in C, but yellow stays yellow");
        assert_eq!(p.mark(100, Colour::Red), Colour::Red);
        assert_eq!(p.mark(100, Colour::Green), Colour::Green);
        // AF11 green, AF12 yellow, AF13 red, EF green.
        let f = |tos: u8| {
            let mut f = vec![0u8; 34];
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[15] = tos;
            dscp_colour(&f)
        };
        assert_eq!(
            [f(10 << 2), f(12 << 2), f(14 << 2), f(46 << 2)],
            [Colour::Green, Colour::Yellow, Colour::Red, Colour::Green]
        );
    }

    #[test]
    fn packets_per_second_and_high_rates_do_not_wrap() {
        let mut s = spec(SrTcm, 1000, 10, 0, 0);
        s.packets = true;
        let p = Policer::new(s, 0);
        assert!((0..10).all(|_| p.mark(1500, Colour::Green) == Colour::Green));
        assert_eq!(p.mark(64, Colour::Green), Colour::Red, "10 packets of burst, whatever their size");
        // 400 Gbit/s with a one-second burst: 5e10 bytes.
        let b = 400_000_000_000 / 8;
        let p = Policer::new(spec(SrTcm, b, b, 0, 0), 0);
        assert_eq!(p.mark(b, Colour::Green), Colour::Green);
        assert_eq!(p.mark(1, Colour::Green), Colour::Red);
        p.refill(500_000_000);
        assert_eq!(p.mark(b / 2, Colour::Green), Colour::Green, "half a second refills half");
        assert_eq!(p.mark(1, Colour::Green), Colour::Red);
    }
}
