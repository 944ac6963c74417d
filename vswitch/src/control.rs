//! The control socket's methods: each takes the request's params and
//! returns a JSON result or an [`RpcError`].

use crate::l2::L2Bridge;
use crate::switch::Switch;
use config::rpc::{Request, Response, RpcError};
use serde_json::{json, Value};

/// Answers one request.
pub fn handle(sw: &Switch, req: &Request) -> Response {
    let id = req.id.clone().unwrap_or(Value::Null);
    match dispatch(sw, req) {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    }
}

fn param_str<'a>(req: &'a Request, name: &str) -> Result<Option<&'a str>, RpcError> {
    match req.params.as_ref().and_then(|p| p.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(RpcError::new(RpcError::INVALID_PARAMS, format!("`{name}` must be a string, not {other}"))),
    }
}

fn no_params(req: &Request) -> Result<(), RpcError> {
    match &req.params {
        None => Ok(()),
        Some(Value::Object(m)) if m.is_empty() => Ok(()),
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(p) => {
            Err(RpcError::new(RpcError::INVALID_PARAMS, format!("`{}` takes no parameters, got {p}", req.method)))
        }
    }
}

fn dispatch(sw: &Switch, req: &Request) -> Result<Value, RpcError> {
    match req.method.as_str() {
        "version" => {
            no_params(req)?;
            Ok(json!({"vswitchd": env!("CARGO_PKG_VERSION"), "dpdk": pmd::Eal::version()}))
        }
        "show" => {
            no_params(req)?;
            Ok(show(sw))
        }
        "port-stats" => {
            let only = param_str(req, "port")?;
            if let Some(name) = only {
                if !sw.ports.iter().any(|p| p.name == name) {
                    return Err(RpcError::new(RpcError::REFUSED, format!("no port `{name}`")));
                }
            }
            let v: Vec<Value> = sw.ports.iter().filter(|p| only.is_none_or(|n| n == p.name)).map(port_json).collect();
            Ok(json!({ "ports": v }))
        }
        "pmd-stats" => {
            no_params(req)?;
            let names: Vec<&str> = sw.ports.iter().map(|p| p.name.as_str()).collect();
            let v: Vec<Value> = sw
                .pmds
                .stats()
                .iter()
                .map(|s| {
                    json!({
                        "pmd": s.index, "core": s.core, "iterations": s.iterations,
                        "busy_pct": s.busy_pct, "busy_cycles": s.busy_cycles, "idle_cycles": s.idle_cycles,
                        "packets": s.packets, "cycles_per_packet": s.cycles_per_packet, "packets_per_batch": s.packets_per_batch,
                        "iteration_us": {"p50": s.iteration_us[0], "p99": s.iteration_us[1], "p999": s.iteration_us[2], "max": s.iteration_us[3]},
                        "rxqs": s.rxqs.iter().map(|(p, q)| json!({"port": names.get(*p), "queue": q})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Ok(json!({ "pmds": v }))
        }
        "fdb-show" => {
            let name = param_str(req, "bridge")?
                .ok_or_else(|| RpcError::new(RpcError::INVALID_PARAMS, "`fdb-show` needs `bridge`"))?;
            let b = sw
                .bridges
                .iter()
                .find(|b| b.name == name)
                .ok_or_else(|| RpcError::new(RpcError::REFUSED, format!("no bridge `{name}`")))?;
            let now = L2Bridge::now_s();
            let entries: Vec<Value> =
                b.l2.table
                    .entries(now)
                    .iter()
                    .map(|e| {
                        let port = sw.ports.get(e.port as usize);
                        json!({"port": port.map(|p| p.name.as_str()), "ofport": port.map(|p| p.ofport),
                           "vlan": e.vlan, "mac": e.mac.to_string(), "age_s": e.age_s})
                    })
                    .collect();
            let t = b.l2.table.stats();
            Ok(json!({"bridge": b.name, "entries": entries,
                      "stats": {"entries": t.entries, "capacity": b.l2.table.capacity(), "learned": t.learned, "moves": t.moves,
                                "expired": t.expired, "evictions": t.evictions, "full_refusals": t.full_refusals}}))
        }
        other => Err(RpcError::new(
            RpcError::METHOD_NOT_FOUND,
            format!("no method `{other}` (methods: version, show, port-stats, pmd-stats, fdb-show)"),
        )),
    }
}

fn port_json(p: &crate::switch::SwitchPort) -> Value {
    let s = p.port.stats();
    let l = p.port.link();
    json!({
        "name": p.name, "ofport": p.ofport, "driver": p.port.driver(), "link": if l.up { "up" } else { "down" },
        "mtu": p.port.mtu(), "rx_packets": s.rx_packets, "tx_packets": s.tx_packets, "rx_bytes": s.rx_bytes, "tx_bytes": s.tx_bytes,
        "rx_dropped": s.rx_missed + s.rx_nombuf + s.rx_malformed, "tx_dropped": s.tx_dropped + s.tx_errors,
        "rx_errors": s.rx_errors, "rx_malformed": s.rx_malformed,
    })
}

/// `show`: bridges with their ports and counters.
pub fn show(sw: &Switch) -> Value {
    let bridges: Vec<Value> = sw
        .bridges
        .iter()
        .enumerate()
        .map(|(bi, b)| {
            let s = b.l2.stats();
            json!({
                "name": b.name,
                "ports": sw.ports.iter().filter(|p| p.bridge == bi).map(port_json).collect::<Vec<_>>(),
                "l2": {"unicast": s.unicast, "flooded": s.flooded, "drop_vlan": s.drop_vlan, "drop_hairpin": s.drop_hairpin,
                       "drop_malformed": s.drop_malformed, "drop_nombuf": s.drop_nombuf, "mac_moves": s.mac_moves},
            })
        })
        .collect();
    json!({ "bridges": bridges })
}
