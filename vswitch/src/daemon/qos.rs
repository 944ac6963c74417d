//! Ports' policers on the control thread: made from the configuration
//! and set as the PMD set's gates of the port's slot (on attach, on a
//! reload that changed them, on `qos-set`), and shown (`qos-show`).

use super::switch::Switch;
use crate::datapath::qos::PortPolicer;
use config::rpc::{Request, RpcError};
use serde_json::{json, Value};
use std::sync::Arc;

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
                .filter(|p| port.as_ref().map_or(p.policers.iter().any(Option::is_some), |n| &p.name == n))
                .map(|p| {
                    json!({
                        "port": p.name, "bridge": p.bridge,
                        "ingress": p.policers[0].as_deref().map(policer_json),
                        "egress": p.policers[1].as_deref().map(policer_json),
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
                let n = v.as_u64().ok_or_else(|| bad(format!("`{k}`: a number of bits (per second)")))?;
                let n = (n > 0).then_some(n);
                match k.as_str() {
                    "ingress_rate" => (cfg.ingress_rate, cfg.ingress_policer) = (n, None),
                    "ingress_burst" => cfg.ingress_burst = n,
                    "egress_rate" => (cfg.egress_rate, cfg.egress_policer) = (n, None),
                    "egress_burst" => cfg.egress_burst = n,
                    other => {
                        return Err(bad(format!(
                            "`{other}` is not a rate setting (ingress_rate, ingress_burst, egress_rate, egress_burst)"
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
            sw.ports[i].cfg = cfg.clone();
            if let Some(c) = sw.cfg.bridges.iter_mut().flat_map(|b| b.ports.iter_mut()).find(|p| p.name == name) {
                *c = cfg;
            }
            sw.apply_qos(i);
            Ok(json!({ "port": name }))
        }
        other => Err(RpcError::new(RpcError::METHOD_NOT_FOUND, format!("no method `{other}`"))),
    }
}
