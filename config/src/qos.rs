//! Checks of a port's policing settings, and the bursts they default to.

use crate::error::Seg;
use crate::schema::{Aqm, Marker, Policer, Port, RateUnit, Shaper, ShaperClass, ShaperQueue};
use std::collections::HashSet;

/// The highest rate, bits per second (400 Gbit/s).
pub const MAX_BITS: u64 = 400_000_000_000;
/// The highest rate, packets per second.
pub const MAX_PACKETS: u64 = 1_000_000_000;

/// The largest frame of a port (its MTU, 1500 by default, with the
/// Ethernet header, a VLAN tag and the FCS), in bits.
pub fn frame_bits(p: &Port) -> u64 {
    (u64::from(p.mtu.unwrap_or(1500)) + 22) * 8
}

/// The burst of a simple `*_rate` (bits): the given one, or 10 ms of the
/// rate, at least two frames of the port's MTU.
pub fn default_burst(p: &Port, rate: u64, burst: Option<u64>) -> u64 {
    burst.unwrap_or_else(|| (rate / 100).max(2 * frame_bits(p)))
}

/// The policer a direction of port `p` has: its three-colour one, or the
/// simple rate's (single rate, no excess bucket), or none.
pub fn policer_of(p: &Port, ingress: bool) -> Option<Policer> {
    let (rate, burst, full) = match ingress {
        true => (p.ingress_rate, p.ingress_burst, &p.ingress_policer),
        false => (p.egress_rate, p.egress_burst, &p.egress_policer),
    };
    if let Some(f) = full {
        return Some(f.clone());
    }
    let cir = rate?;
    Some(Policer {
        marker: Marker::Srtcm,
        unit: RateUnit::Bits,
        cir,
        cbs: default_burst(p, cir, burst),
        ebs: None,
        eir: None,
        pir: None,
        pbs: None,
        colour_aware: false,
    })
}

/// Checks port `p`'s policing: the key at fault and why.
pub fn check(p: &Port) -> Result<(), (String, String)> {
    for (dir, rate, burst, full) in [
        ("ingress", p.ingress_rate, p.ingress_burst, &p.ingress_policer),
        ("egress", p.egress_rate, p.egress_burst, &p.egress_policer),
    ] {
        let k = |s: &str| format!("{dir}_{s}");
        if full.is_some() && (rate.is_some() || burst.is_some()) {
            return Err((k("policer"), format!("`{dir}_policer` replaces `{dir}_rate` and `{dir}_burst`: set one")));
        }
        if rate.is_none() && burst.is_some() {
            return Err((k("burst"), format!("a burst without `{dir}_rate`")));
        }
        if dir == "ingress" && p.kind.is_tunnel() && (rate.is_some() || full.is_some()) {
            return Err((k("rate"), "a tunnel port's frames are policed where they enter: on the uplink".into()));
        }
        let Some(pol) = policer_of(p, dir == "ingress") else { continue };
        let key = if full.is_some() { k("policer") } else { k("rate") };
        let (max, unit) = match pol.unit {
            RateUnit::Bits => (MAX_BITS, "bits/s"),
            RateUnit::Packets => (MAX_PACKETS, "packets/s"),
        };
        let min_burst = if pol.unit == RateUnit::Bits { frame_bits(p) } else { 1 };
        let rates = [("cir", Some(pol.cir)), ("pir", pol.pir), ("eir", pol.eir)];
        for (name, r) in rates {
            if let Some(r) = r.filter(|r| *r == 0 || *r > max) {
                return Err((key, format!("{name} {r} is outside 1-{max} {unit}")));
            }
        }
        for (name, b) in [("cbs", Some(pol.cbs)), ("pbs", pol.pbs), ("ebs", pol.ebs.filter(|e| *e > 0))] {
            if let Some(b) = b.filter(|b| *b < min_burst) {
                return Err((
                    key,
                    format!(
                        "{name} {b} is smaller than a frame of the port's MTU ({min_burst} {})",
                        unit.trim_end_matches("/s")
                    ),
                ));
            }
        }
        let extra = |names: &[(&str, bool)]| names.iter().find(|(_, set)| *set).map(|(n, _)| (*n).to_string());
        let wrong = match pol.marker {
            Marker::Srtcm => {
                extra(&[("pir", pol.pir.is_some()), ("pbs", pol.pbs.is_some()), ("eir", pol.eir.is_some())])
            }
            Marker::Trtcm => extra(&[("ebs", pol.ebs.is_some()), ("eir", pol.eir.is_some())]),
            Marker::Trtcm4115 => extra(&[("pir", pol.pir.is_some()), ("pbs", pol.pbs.is_some())]),
        };
        if let Some(w) = wrong {
            return Err((key, format!("`{w}` is not a setting of {:?}", pol.marker).to_lowercase()));
        }
        match pol.marker {
            Marker::Trtcm => {
                let (Some(pir), Some(_)) = (pol.pir, pol.pbs) else {
                    return Err((key, "trtcm needs `pir` and `pbs`".into()));
                };
                if pir < pol.cir {
                    return Err((key, format!("pir {pir} is below cir {}", pol.cir)));
                }
            }
            Marker::Trtcm4115 if pol.eir.is_none() => return Err((key, "trtcm4115 needs `eir` (and `ebs`)".into())),
            _ => {}
        }
    }
    Ok(())
}

/// Classes a port's scheduler holds at most.
pub const MAX_CLASSES: usize = 65_536;
/// Queues a class holds at most.
pub const MAX_QUEUES: usize = 8;
/// Packets a queue holds at most.
pub const MAX_DEPTH: u32 = 65_536;
/// A queue's depth when not given, packets.
pub const DEFAULT_DEPTH: u32 = 256;

/// A shaper's or class's burst, bits: the given one, or 1 ms of the rate,
/// at least two frames of the port's MTU.
pub fn shaper_burst(p: &Port, rate: u64, burst: Option<u64>) -> u64 {
    burst.unwrap_or_else(|| (rate / 1000).max(2 * frame_bits(p)))
}

/// A class's ceiling, bits per second.
pub fn class_ceil(s: &Shaper, c: &ShaperClass) -> u64 {
    c.ceil.unwrap_or(s.rate)
}

/// The classes of a shaper: its own, or one at the port's rate and burst
/// (id 0).
pub fn classes_of(s: &Shaper) -> Vec<ShaperClass> {
    if !s.classes.is_empty() {
        return s.classes.clone();
    }
    vec![ShaperClass {
        id: 0,
        rate: s.rate,
        ceil: None,
        burst: s.burst,
        cburst: s.burst,
        in_ports: Vec::new(),
        queues: Vec::new(),
    }]
}

/// The queues of a class: its own, or one with the defaults.
pub fn queues_of(c: &ShaperClass) -> Vec<ShaperQueue> {
    if !c.queues.is_empty() {
        return c.queues.clone();
    }
    vec![ShaperQueue {
        priority: 0,
        weight: 1,
        dscp: Vec::new(),
        pcp: Vec::new(),
        depth: None,
        depth_bytes: None,
        aqm: Aqm::Tail,
        red_min: None,
        red_max: None,
        red_max_p: None,
    }]
}

/// A queue's depth in packets and bytes.
pub fn queue_depth(p: &Port, q: &ShaperQueue) -> (u32, u64) {
    let n = q.depth.unwrap_or(DEFAULT_DEPTH);
    (n, q.depth_bytes.unwrap_or(u64::from(n) * frame_bits(p) / 8))
}

/// A RED queue's thresholds (packets) and drop probability at the upper
/// one (percent).
pub fn red_of(p: &Port, q: &ShaperQueue) -> (u32, u32, u32) {
    let (n, _) = queue_depth(p, q);
    (q.red_min.unwrap_or(n / 4), q.red_max.unwrap_or(n * 3 / 4), q.red_max_p.unwrap_or(10))
}

/// Checks port `p`'s shaper: the path under the port at fault, and why.
/// (That its `in_ports` exist is checked with the whole file.)
pub(crate) fn check_shaper(p: &Port) -> Result<(), (Vec<Seg>, String)> {
    let Some(s) = &p.shaper else { return Ok(()) };
    let k = |parts: &[Seg]| {
        let mut v = vec![Seg::Key("shaper".into())];
        v.extend_from_slice(parts);
        v
    };
    let key = |s: &str| Seg::Key(s.into());
    if p.kind.is_tunnel() {
        return Err((k(&[]), "a tunnel port's frames are shaped where they leave: on the uplink".into()));
    }
    let fb = frame_bits(p);
    if s.rate == 0 || s.rate > MAX_BITS {
        return Err((k(&[key("rate")]), format!("{} is outside 1-{MAX_BITS} bits/s", s.rate)));
    }
    let small = |b: u64| format!("{b} is smaller than a frame of the port's MTU ({fb} bits)");
    if let Some(b) = s.burst.filter(|b| *b < fb) {
        return Err((k(&[key("burst")]), small(b)));
    }
    if s.classes.len() > MAX_CLASSES {
        return Err((
            k(&[key("class")]),
            format!("{} classes: the scheduler holds {MAX_CLASSES} per port", s.classes.len()),
        ));
    }
    let mut ids = HashSet::new();
    let mut claimed = HashSet::new();
    let mut guaranteed = 0u64;
    for (ci, c) in s.classes.iter().enumerate() {
        let ck = |rest: &[Seg]| {
            let mut v = vec![key("class"), Seg::Index(ci)];
            v.extend_from_slice(rest);
            k(&v)
        };
        if !ids.insert(c.id) {
            return Err((ck(&[key("id")]), format!("class {} is defined twice", c.id)));
        }
        let ceil = class_ceil(s, c);
        if c.rate > s.rate {
            return Err((ck(&[key("rate")]), format!("{} is above the port's rate {}", c.rate, s.rate)));
        }
        if ceil == 0 || ceil > s.rate {
            return Err((ck(&[key("ceil")]), format!("{ceil} is outside 1-{} (the port's rate)", s.rate)));
        }
        if ceil < c.rate {
            return Err((ck(&[key("ceil")]), format!("{ceil} is below the class's guarantee {}", c.rate)));
        }
        for (name, b) in [("burst", c.burst), ("cburst", c.cburst)] {
            if let Some(b) = b.filter(|b| *b < fb) {
                return Err((ck(&[key(name)]), small(b)));
            }
        }
        guaranteed += c.rate;
        if guaranteed > s.rate {
            return Err((
                ck(&[key("rate")]),
                format!("the classes' guarantees add up to {guaranteed}, above the port's rate {}", s.rate),
            ));
        }
        for (pi, name) in c.in_ports.iter().enumerate() {
            if !claimed.insert(name.as_str()) {
                return Err((ck(&[key("in_ports"), Seg::Index(pi)]), format!("port `{name}` is in two classes")));
            }
        }
        if c.queues.len() > MAX_QUEUES {
            return Err((ck(&[key("queue")]), format!("{} queues: a class holds {MAX_QUEUES}", c.queues.len())));
        }
        let (mut dscp, mut pcp) = (HashSet::new(), HashSet::new());
        for (qi, q) in c.queues.iter().enumerate() {
            let qk = |name: &str| ck(&[key("queue"), Seg::Index(qi), key(name)]);
            if q.priority > 7 {
                return Err((qk("priority"), format!("{} is outside 0-7", q.priority)));
            }
            if !(1..=1000).contains(&q.weight) {
                return Err((qk("weight"), format!("{} is outside 1-1000", q.weight)));
            }
            for d in &q.dscp {
                if *d > 63 || !dscp.insert(*d) {
                    return Err((qk("dscp"), format!("DSCP {d} is outside 0-63 or in two queues")));
                }
            }
            for v in &q.pcp {
                if *v > 7 || !pcp.insert(*v) {
                    return Err((qk("pcp"), format!("PCP {v} is outside 0-7 or in two queues")));
                }
            }
            let (n, bytes) = queue_depth(p, q);
            if n == 0 || n > MAX_DEPTH {
                return Err((qk("depth"), format!("{n} is outside 1-{MAX_DEPTH} packets")));
            }
            if bytes * 8 < fb {
                return Err((qk("depth_bytes"), format!("{bytes} bytes does not hold a frame of the port's MTU")));
            }
            if q.aqm != Aqm::Tail {
                let (min, max, pr) = red_of(p, q);
                if min >= max || max > n {
                    return Err((qk("red_max"), format!("RED needs red_min {min} < red_max {max} <= depth {n}")));
                }
                if !(1..=100).contains(&pr) {
                    return Err((qk("red_max_p"), format!("{pr} is outside 1-100 percent")));
                }
            } else if q.red_min.is_some() || q.red_max.is_some() || q.red_max_p.is_some() {
                return Err((qk("aqm"), "RED thresholds on a tail-drop queue: set aqm = \"red\" or \"wred\"".into()));
            }
        }
    }
    if let Some(l) = s.limit.filter(|l| *l == 0 || *l > 1 << 24) {
        return Err((k(&[key("limit")]), format!("{l} is outside 1-{} packets", 1 << 24)));
    }
    if let Some(d) = s.default_class {
        if !classes_of(s).iter().any(|c| c.id == d) {
            return Err((k(&[key("default_class")]), format!("no class {d}")));
        }
    }
    Ok(())
}
