//! Ports' policers and schedulers on the control thread: made from the
//! configuration and set in the PMD set (policers as the gates of the
//! port's slot, schedulers as its shaper) on attach, on a reload or
//! port change that changed them, on `qos-set`; and shown (`qos-show`).

use super::switch::Switch;
use crate::datapath::qos::shaper::{self, PortShaper, ShaperSnapshot};
use crate::datapath::qos::PortPolicer;
use config::rpc::{Request, RpcError};
use serde_json::{json, Value};
use std::sync::Arc;

/// A port's scheduler and what it was made from (its settings, and the
/// slots of the ports its classes name).
#[derive(Debug)]
pub struct ShaperState {
    /// The scheduler.
    pub shaper: Arc<PortShaper>,
    /// When it was made.
    pub since: std::time::Instant,
    made_from: (config::Shaper, Vec<Option<usize>>),
}

impl Switch {
    /// Makes port `i`'s policers from its configuration (fresh buckets)
    /// and sets them as its slot's gates; the other ports' are untouched.
    pub(super) fn apply_qos(&mut self, i: usize) {
        let cfg = &self.ports[i].cfg;
        let make = |ingress| config::qos::policer_of(cfg, ingress).map(|p| Arc::new(PortPolicer::new(&p)));
        let (rx, tx) = (make(true), make(false));
        let gate = |p: &Option<Arc<PortPolicer>>| p.clone().map(|p| p as Arc<dyn pmd::capture::Gate>);
        self.pmds.set_gates(self.ports[i].slot, gate(&rx), gate(&tx));
        self.ports[i].policers = [rx, tx];
    }

    /// Brings every port's scheduler in line with its settings and the
    /// ports its classes name: made, changed in place (queued frames
    /// kept), or removed. Untouched when nothing it depends on changed.
    pub(super) fn apply_shapers(&mut self) {
        for i in 0..self.ports.len() {
            let sp = &self.ports[i];
            if sp.port.device().is_none() || (sp.cfg.shaper.is_none() && sp.shaper.is_none()) {
                continue;
            }
            let slots: Vec<(String, usize)> = self.ports.iter().map(|p| (p.name.clone(), p.slot)).collect();
            let slot_of = |n: &str| slots.iter().find(|(m, _)| m == n).map(|(_, s)| *s);
            let Some(cfg) = sp.cfg.shaper.clone() else {
                let slot = sp.slot;
                self.pmds.set_shaper(slot, None);
                self.ports[i].shaper = None;
                continue;
            };
            let named: Vec<Option<usize>> =
                cfg.classes.iter().flat_map(|c| c.in_ports.iter()).map(|n| slot_of(n)).collect();
            let made_from = (cfg, named);
            if sp.shaper.as_ref().is_some_and(|s| s.made_from == made_from) {
                continue;
            }
            let Some(mut spec) = shaper::spec_of(&sp.cfg, &slot_of) else { continue };
            // Its share of the mbufs: a quarter of the pool among the
            // shaped ports.
            let shaped = self.ports.iter().filter(|p| p.cfg.shaper.is_some()).count().max(1) as u64;
            let share = (u64::from(self.pool().size()) / 4 / shaped).max(64);
            spec.sched.limit = spec.sched.limit.min(share);
            let (name, slot) = (sp.name.clone(), sp.slot);
            if let Some(st) = &mut self.ports[i].shaper {
                st.shaper.reconfigure(spec);
                st.made_from = made_from;
                continue;
            }
            let owner = slot % self.pmds.n_threads().max(1);
            match PortShaper::new(self.eal, &name, spec, owner) {
                Ok(s) => {
                    let s = Arc::new(s);
                    self.pmds.set_shaper(slot, Some(s.clone() as Arc<dyn pmd::capture::Shaper>));
                    self.ports[i].shaper = Some(ShaperState { shaper: s, since: std::time::Instant::now(), made_from });
                }
                Err(e) => eprintln!("vswitchd: port {name}: no scheduler: {e}"),
            }
        }
    }
}

/// A scheduler: its classes (rates in bits/s) and what each counted.
pub fn shaper_json(cfg: &config::Shaper, s: &ShaperSnapshot) -> Value {
    let classes: Vec<Value> = s
        .classes
        .iter()
        .map(|c| {
            let drops: serde_json::Map<String, Value> =
                shaper::drop_reasons().iter().zip(c.stats.drops).map(|(r, n)| ((*r).to_string(), json!(n))).collect();
            json!({
                "id": c.spec.id, "rate": c.spec.rate * 8, "ceil": c.spec.ceil * 8,
                "packets": c.stats.packets, "bytes": c.stats.bytes, "green_bytes": c.stats.green_bytes,
                "rate_achieved": c.rate * 8,
                "depth": c.depth.iter().map(|(p, b)| json!({"packets": p, "bytes": b})).collect::<Vec<_>>(),
                "drops": drops,
                "delay_ns": {
                    "p50": c.stats.delay_quantile(0.5), "p99": c.stats.delay_quantile(0.99),
                    "p999": c.stats.delay_quantile(0.999), "max": c.stats.delay_quantile(1.0),
                },
            })
        })
        .collect();
    json!({
        "rate": cfg.rate, "classes": classes, "handoff_drops": s.handoff_drops,
        "class_removed_drops": s.removed_drops, "ring": s.ring,
        "limit": s.limit, "queued": s.queued,
    })
}

/// One direction's policer: its settings and what it counted.
fn policer_json(p: &PortPolicer) -> Value {
    let (packets, bytes) = p.policer.totals();
    let colour = |i: usize| json!({ "packets": packets[i], "bytes": bytes[i] });
    json!({
        "marker": p.cfg.marker, "unit": p.cfg.unit, "cir": p.cfg.cir, "cbs": p.cfg.cbs, "eir": p.cfg.eir,
        "ebs": p.cfg.ebs, "pir": p.cfg.pir, "pbs": p.cfg.pbs, "colour_aware": p.cfg.colour_aware,
        "green": colour(0), "yellow": colour(1), "red": colour(2),
    })
}

/// The control socket's QoS methods: `qos-show` (`port`: one port, else
/// every policed one) and `qos-set` (`port`, `settings`: `ingress_rate`,
/// `ingress_burst`, `egress_rate`, `egress_burst`, bits; a rate of 0
/// removes the policer), checked as the configuration file is.
pub fn rpc(sw: &mut Switch, req: &Request) -> Result<Value, RpcError> {
    let port = super::control::param_str(req, "port")?.map(str::to_string);
    match req.method.as_str() {
        "qos-show" => {
            if let Some(name) = &port {
                if !sw.ports.iter().any(|p| &p.name == name) {
                    return Err(RpcError::new(RpcError::INVALID_PARAMS, format!("no port `{name}`")));
                }
            }
            let ports: Vec<Value> = sw
                .ports
                .iter()
                .filter(|p| {
                    port.as_ref().map_or(p.policers.iter().any(Option::is_some) || p.shaper.is_some(), |n| &p.name == n)
                })
                .map(|p| {
                    json!({
                        "port": p.name, "bridge": p.bridge,
                        "ingress": p.policers[0].as_deref().map(policer_json),
                        "egress": p.policers[1].as_deref().map(policer_json),
                        "shaper": p.shaper.as_ref().zip(p.cfg.shaper.as_ref())
                            .map(|(s, c)| shaper_json(c, &s.shaper.snapshot())),
                    })
                })
                .collect();
            Ok(json!({ "ports": ports }))
        }
        "qos-set" => {
            let bad = |m: String| RpcError::new(RpcError::INVALID_PARAMS, m);
            let name = port.ok_or_else(|| bad("`qos-set` needs `port`".into()))?;
            let i = sw.ports.iter().position(|p| p.name == name).ok_or_else(|| bad(format!("no port `{name}`")))?;
            let settings = req
                .params
                .as_ref()
                .and_then(|p| p.get("settings"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut cfg = sw.ports[i].cfg.clone();
            for (k, v) in &settings {
                if k == "shaper" {
                    cfg.shaper = match v {
                        Value::Null => None,
                        v => Some(serde_json::from_value(v.clone()).map_err(|e| bad(format!("`shaper`: {e}")))?),
                    };
                    continue;
                }
                let n = v.as_u64().ok_or_else(|| bad(format!("`{k}`: a number of bits (per second)")))?;
                let n = (n > 0).then_some(n);
                match k.as_str() {
                    "ingress_rate" => (cfg.ingress_rate, cfg.ingress_policer) = (n, None),
                    "ingress_burst" => cfg.ingress_burst = n,
                    "egress_rate" => (cfg.egress_rate, cfg.egress_policer) = (n, None),
                    "egress_burst" => cfg.egress_burst = n,
                    other => {
                        return Err(bad(format!(
                            "`{other}` is not a QoS setting (ingress_rate, ingress_burst, egress_rate, egress_burst, shaper)"
                        )))
                    }
                }
            }
            for d in ["ingress", "egress"] {
                let (rate, burst) = match d {
                    "ingress" => (cfg.ingress_rate, &mut cfg.ingress_burst),
                    _ => (cfg.egress_rate, &mut cfg.egress_burst),
                };
                if rate.is_none() {
                    *burst = None;
                }
            }
            config::qos::check(&cfg)
                .map_err(|(k, why)| RpcError::new(RpcError::REFUSED, format!("port `{name}`: {k}: {why}")))?;
            // The shaper is checked with the whole configuration (its
            // classes name other ports).
            let mut whole = sw.cfg.clone();
            if let Some(c) = whole.bridges.iter_mut().flat_map(|b| b.ports.iter_mut()).find(|p| p.name == name) {
                *c = cfg.clone();
            }
            whole.check().map_err(|why| RpcError::new(RpcError::REFUSED, why))?;
            sw.ports[i].cfg = cfg.clone();
            sw.cfg = whole;
            sw.apply_qos(i);
            sw.apply_shapers();
            Ok(json!({ "port": name }))
        }
        other => Err(RpcError::new(RpcError::METHOD_NOT_FOUND, format!("no method `{other}`"))),
    }
}
