//! Checks of a port's policing settings, and the bursts they default to.

use crate::schema::{Marker, Policer, Port, RateUnit};

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
