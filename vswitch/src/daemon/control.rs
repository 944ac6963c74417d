//! The control socket's methods: each takes the request's params and
//! returns a JSON result or an [`RpcError`].

use crate::daemon::openflow::OpenFlow;
use crate::daemon::switch::Switch;
use crate::datapath::l2::L2Bridge;
use config::rpc::{Request, Response, RpcError};
use mio::Registry;
use ofproto::ofp::display::instructions_text;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// The methods, for the "no such method" error.
const METHODS: &str = "version, show, port-stats, pmd-stats, fdb-show, add-port, del-port, reload, dump-flows, \
     dump-groups, dump-meters, dp-flows, controllers, set-openflow, capture-start, capture-stop, capture-status, \
     capture-list, trace, tunnel-show, route-show, neigh-show, neigh-flush, neigh-set, \
     route-add, route-del, arp-add, arp-del, arp-show, qos-show, qos-set";

/// What the control thread keeps beside the switch: the OpenFlow
/// connections and the running captures.
pub struct Daemon {
    /// OpenFlow controllers of every bridge.
    pub of: OpenFlow,
    /// Packet captures.
    pub captures: super::capture::Captures,
}

/// Answers one request from control connection `conn`; `reg` is the
/// daemon's poll registry (OpenFlow listeners and connections a change
/// opens are registered with it).
pub fn handle(sw: &mut Switch, d: &mut Daemon, reg: &Registry, conn: u64, req: &Request) -> Response {
    let id = req.id.clone().unwrap_or(Value::Null);
    match dispatch(sw, d, reg, conn, req) {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    }
}

/// Parameter `name` as a string (None when absent or null).
pub(super) fn param_str<'a>(req: &'a Request, name: &str) -> Result<Option<&'a str>, RpcError> {
    match req.params.as_ref().and_then(|p| p.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(RpcError::new(RpcError::INVALID_PARAMS, format!("`{name}` must be a string, not {other}"))),
    }
}

/// Parameter `name` as an unsigned number (None when absent or null).
pub(super) fn param_u64(req: &Request, name: &str) -> Result<Option<u64>, RpcError> {
    match req.params.as_ref().and_then(|p| p.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            RpcError::new(RpcError::INVALID_PARAMS, format!("`{name}` must be an unsigned number, not {v}"))
        }),
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

fn dispatch(sw: &mut Switch, d: &mut Daemon, reg: &Registry, conn: u64, req: &Request) -> Result<Value, RpcError> {
    let of = &mut d.of;
    match req.method.as_str() {
        "version" => {
            no_params(req)?;
            Ok(json!({"vswitchd": env!("CARGO_PKG_VERSION"), "dpdk": pmd::Eal::version()}))
        }
        "show" => {
            no_params(req)?;
            Ok(show(sw, Some(&*of)))
        }
        "port-stats" => {
            let only = param_str(req, "port")?;
            if let Some(name) = only {
                if !sw.ports.iter().any(|p| p.name == name) {
                    return Err(RpcError::new(RpcError::REFUSED, format!("no port `{name}`")));
                }
            }
            let v: Vec<Value> =
                sw.ports.iter().filter(|p| only.is_none_or(|n| n == p.name)).map(|p| port_json(sw, p)).collect();
            Ok(json!({ "ports": v }))
        }
        "pmd-stats" => {
            no_params(req)?;
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
                        "no_port_drops": s.no_port_drops,
                        "rxqs": s.rxqs.iter().map(|(p, q)| {
                            #[allow(clippy::cast_possible_truncation)] // slots are below 2^32
                            let name = sw.port_by_slot(*p as u32).map(|p| p.name.as_str());
                            json!({"port": name, "queue": q})
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect();
            // Megaflow caches, per OpenFlow bridge (all its PMD threads).
            let mf: Vec<Value> = sw
                .bridges
                .iter()
                .filter_map(|b| of.bridge(&b.name).filter(|o| o.has_controllers))
                .map(|o| json!({"bridge": o.bridge, "megaflow": megaflow_json(o, sw.cfg.pmd.megaflow_limit)}))
                .collect();
            Ok(json!({ "pmds": v, "openflow": mf }))
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
                        let port = sw.port_by_slot(e.port);
                        json!({"port": port.map(|p| p.name.as_str()), "ofport": port.map(|p| p.ofport),
                           "vlan": e.vlan, "mac": e.mac.to_string(), "age_s": e.age_s})
                    })
                    .collect();
            let t = b.l2.table.stats();
            Ok(json!({"bridge": b.name, "entries": entries,
                      "stats": {"entries": t.entries, "capacity": b.l2.table.capacity(), "learned": t.learned, "moves": t.moves,
                                "expired": t.expired, "evictions": t.evictions, "full_refusals": t.full_refusals}}))
        }
        "add-port" => {
            let bridge = param_str(req, "bridge")?
                .ok_or_else(|| RpcError::new(RpcError::INVALID_PARAMS, "`add-port` needs `bridge`"))?
                .to_string();
            let spec = req
                .params
                .as_ref()
                .and_then(|p| p.get("port"))
                .ok_or_else(|| RpcError::new(RpcError::INVALID_PARAMS, "`add-port` needs `port` (an object)"))?;
            let port: config::Port = serde_json::from_value(spec.clone())
                .map_err(|e| RpcError::new(RpcError::INVALID_PARAMS, format!("`port`: {e}")))?;
            sw.add_port(&bridge, &port).map_err(refused)?;
            Ok(json!({"bridge": bridge, "port": port.name}))
        }
        "del-port" => {
            let name = param_str(req, "port")?
                .ok_or_else(|| RpcError::new(RpcError::INVALID_PARAMS, "`del-port` needs `port`"))?
                .to_string();
            if let Some(q) = sw.ports.iter().find(|q| q.cfg.peer.as_deref() == Some(name.as_str())) {
                return Err(RpcError::new(
                    RpcError::REFUSED,
                    format!("port `{name}` is the peer of `{}`: remove that port first", q.name),
                ));
            }
            sw.del_port(&name).map_err(refused)?;
            Ok(json!({"port": name}))
        }
        "controllers" => {
            no_params(req)?;
            Ok(of.describe())
        }
        "dp-flows" => {
            let name = param_str(req, "bridge")?
                .ok_or_else(|| RpcError::new(RpcError::INVALID_PARAMS, "`dp-flows` needs `bridge`"))?;
            let b = of.bridge(name).ok_or_else(|| RpcError::new(RpcError::REFUSED, format!("no bridge `{name}`")))?;
            let answers = if b.has_controllers { dump_megaflows(&b.counters, sw.pmds.n_threads()) } else { Vec::new() };
            let ld = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
            let mut flows = Vec::new();
            for (pmd, now_ms, dump) in &answers {
                for f in dump {
                    let used = ld(&f.mf.used_ms);
                    flows.push(json!({
                        "pmd": pmd, "match": f.match_string(), "tables": f.tables(), "actions": f.actions_string(),
                        "compiled": f.mf.fast.is_some(),
                        "packets": ld(&f.mf.packets), "bytes": ld(&f.mf.bytes),
                        "age_ms": now_ms.saturating_sub(f.mf.created_ms),
                        "idle_ms": now_ms.saturating_sub(used),
                    }));
                }
            }
            Ok(json!({"bridge": name, "pmds_answered": answers.len(), "flows": flows}))
        }
        "dump-flows" | "dump-groups" | "dump-meters" => {
            let name = param_str(req, "bridge")?
                .ok_or_else(|| RpcError::new(RpcError::INVALID_PARAMS, format!("`{}` needs `bridge`", req.method)))?;
            let b = of.bridge(name).ok_or_else(|| RpcError::new(RpcError::REFUSED, format!("no bridge `{name}`")))?;
            let a = &b.agent;
            let ld = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
            Ok(match req.method.as_str() {
                "dump-flows" => {
                    let table = match req.params.as_ref().and_then(|p| p.get("table")) {
                        None | Some(Value::Null) => None,
                        Some(v) => Some(v.as_u64().filter(|t| *t < 255).ok_or_else(|| {
                            RpcError::new(RpcError::INVALID_PARAMS, format!("`table` must be a table number, not {v}"))
                        })?),
                    };
                    let flows: Vec<Value> = a
                        .tables
                        .tables
                        .iter()
                        .flat_map(|t| &t.entries)
                        .filter(|e| table.is_none_or(|t| u64::from(e.table_id) == t))
                        .map(|e| {
                            json!({"table": e.table_id, "priority": e.priority, "cookie": format!("0x{:x}", e.cookie),
                                   "match": e.match_.to_string(), "actions": instructions_text(&e.instructions),
                                   "idle_timeout": e.idle_timeout, "hard_timeout": e.hard_timeout,
                                   "n_packets": ld(&e.stats.packets), "n_bytes": ld(&e.stats.bytes)})
                        })
                        .collect();
                    json!({"bridge": name, "flows": flows})
                }
                "dump-groups" => {
                    let groups: Vec<Value> = a
                        .groups
                        .iter()
                        .map(|(id, g)| {
                            let buckets: Vec<Value> = g
                                .buckets
                                .iter()
                                .map(|bk| json!({"weight": bk.weight, "watch_port": bk.watch_port,
                                                 "actions": bk.actions.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")}))
                                .collect();
                            let kind = ["all", "select", "indirect", "ff"].get(usize::from(g.group_type)).copied().unwrap_or("?");
                            json!({"group_id": id, "type": kind, "buckets": buckets,
                                   "n_packets": ld(&g.stats.packets), "n_bytes": ld(&g.stats.bytes)})
                        })
                        .collect();
                    json!({"bridge": name, "groups": groups})
                }
                _ => {
                    let meters: Vec<Value> = a
                        .meters
                        .iter()
                        .map(|(id, m)| {
                            let unit = if m.flags & 1 != 0 { "kbps" } else { "pktps" };
                            let bands: Vec<Value> = m
                                .bands
                                .iter()
                                .map(|bd| json!({"type": if bd.band_type == 1 { "drop" } else { "dscp_remark" },
                                                 "rate": bd.rate, "burst_size": bd.burst_size, "prec_level": bd.prec_level}))
                                .collect();
                            json!({"meter_id": id, "unit": unit, "bands": bands,
                                   "n_packets": ld(&m.stats.packets), "n_bytes": ld(&m.stats.bytes)})
                        })
                        .collect();
                    json!({"bridge": name, "meters": meters})
                }
            })
        }
        "arp-add" | "arp-del" | "arp-show" => arp(sw, req),
        "reload" => {
            no_params(req)?;
            reload(sw, of, reg).map_err(|e| RpcError::new(RpcError::REFUSED, e))
        }
        "set-openflow" => set_openflow(sw, of, reg, req),
        m if m.starts_with("capture-") => super::capture::rpc(sw, &mut d.captures, conn, req),
        "trace" => super::trace::rpc(sw, of, req),
        "tunnel-show" | "route-show" | "neigh-show" | "neigh-flush" | "neigh-set" | "route-add" | "route-del" => {
            super::underlay::rpc(sw, req)
        }
        "qos-show" | "qos-set" => super::qos::rpc(sw, req),
        other => Err(RpcError::new(RpcError::METHOD_NOT_FOUND, format!("no method `{other}` (methods: {METHODS})"))),
    }
}

/// The ARP responder's methods: `arp-add` (`bridge`, `ip`, `mac`,
/// `vlan`), `arp-del` (`bridge`, `ip`, `vlan`), `arp-show` (`bridge`).
fn arp(sw: &mut Switch, req: &Request) -> Result<Value, RpcError> {
    let bridge = param_str(req, "bridge")?
        .ok_or_else(|| RpcError::new(RpcError::INVALID_PARAMS, format!("`{}` needs `bridge`", req.method)))?
        .to_string();
    let Some(cb) = sw.cfg.bridges.iter().find(|b| b.name == bridge) else {
        return Err(RpcError::new(RpcError::REFUSED, format!("no bridge `{bridge}`")));
    };
    let mut entries = cb.arp.clone();
    let vlan = u16::try_from(param_u64(req, "vlan")?.unwrap_or(0))
        .map_err(|_| RpcError::new(RpcError::INVALID_PARAMS, "`vlan` is 0-4094"))?;
    let ip = param_str(req, "ip")?.map(str::to_string);
    match req.method.as_str() {
        "arp-add" => {
            let (Some(ip), Some(mac)) = (ip, param_str(req, "mac")?) else {
                return Err(RpcError::new(RpcError::INVALID_PARAMS, "`arp-add` needs `ip` and `mac`"));
            };
            entries.retain(|e| !(e.ip == ip && e.vlan == vlan));
            entries.push(config::ArpEntry { ip, mac: mac.to_string(), vlan });
            sw.set_arp(&bridge, entries).map_err(refused)?;
        }
        "arp-del" => {
            let Some(ip) = ip else { return Err(RpcError::new(RpcError::INVALID_PARAMS, "`arp-del` needs `ip`")) };
            let before = entries.len();
            entries.retain(|e| !(e.ip == ip && e.vlan == vlan));
            if entries.len() == before {
                return Err(RpcError::new(
                    RpcError::REFUSED,
                    format!("bridge `{bridge}` has no ARP entry for {ip} on VLAN {vlan}"),
                ));
            }
            sw.set_arp(&bridge, entries).map_err(refused)?;
        }
        _ => {}
    }
    let b = sw.bridges.iter().find(|b| b.name == bridge).map(|b| b.l2.stats()).unwrap_or_default();
    let entries = sw.cfg.bridges.iter().find(|b| b.name == bridge).map(|b| b.arp.clone()).unwrap_or_default();
    let list: Vec<Value> = entries.iter().map(|e| json!({"ip": e.ip, "mac": e.mac, "vlan": e.vlan})).collect();
    Ok(json!({"bridge": bridge, "entries": list, "answered": b.arp_answered, "passed": b.arp_passed}))
}

fn refused(e: crate::daemon::switch::SwitchError) -> RpcError {
    RpcError::new(RpcError::REFUSED, e.to_string())
}

/// `set-openflow`: a bridge's `controllers` (a list of targets, empty
/// for none), `fail_mode` and `datapath_id` (a string; empty for the
/// default), each optional, applied live. The bridge's new settings are
/// validated as a whole configuration would be (errors name the field)
/// and listeners are bound before anything changes: a refused change
/// leaves the switch as it was.
fn set_openflow(sw: &mut Switch, of: &mut OpenFlow, reg: &Registry, req: &Request) -> Result<Value, RpcError> {
    let invalid = |m: String| RpcError::new(RpcError::INVALID_PARAMS, m);
    let name = param_str(req, "bridge")?.ok_or_else(|| invalid("`set-openflow` needs `bridge`".into()))?.to_string();
    let params = req.params.as_ref().and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(k) =
        params.keys().find(|k| !["bridge", "controllers", "fail_mode", "datapath_id"].contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "`set-openflow` has no parameter `{k}` (bridge, controllers, fail_mode, datapath_id)"
        )));
    }
    let mut cfg = sw.cfg.clone();
    let b = cfg
        .bridges
        .iter_mut()
        .find(|b| b.name == name)
        .ok_or_else(|| RpcError::new(RpcError::REFUSED, format!("no bridge `{name}`")))?;
    if let Some(v) = params.get("controllers") {
        b.controllers = serde_json::from_value(v.clone())
            .map_err(|_| invalid(format!("`controllers` must be a list of strings, not {v}")))?;
    }
    if let Some(v) = params.get("fail_mode") {
        b.fail_mode = serde_json::from_value(v.clone())
            .map_err(|_| invalid(format!("`fail_mode` must be \"secure\" or \"standalone\", not {v}")))?;
    }
    if let Some(v) = param_str(req, "datapath_id")? {
        b.datapath_id = (!v.is_empty()).then(|| v.to_string());
    }
    let nb = b.clone();
    cfg.check().map_err(|e| RpcError::new(RpcError::REFUSED, format!("{e}; nothing was applied")))?;
    let prepared = of.prepare(&cfg).map_err(|e| RpcError::new(RpcError::REFUSED, e))?;
    sw.set_openflow_settings(&nb).map_err(refused)?;
    of.apply(reg, &sw.cfg, prepared).map_err(|e| RpcError::new(RpcError::REFUSED, e.to_string()))?;
    of.port_changes(reg, sw);
    // In force before the answer: a secure bridge with its first
    // controller drops from now on, one without controllers switches.
    of.sync_now(sw);
    let ob = of.bridge(&name).map(|b| b.agent.datapath_id).unwrap_or_default();
    Ok(json!({"bridge": name, "controllers": nb.controllers, "fail_mode": nb.fail_mode,
              "datapath_id": format!("{ob:016x}")}))
}

/// Reads the switch's config file again and applies the difference (the
/// `reload` method and SIGHUP), OpenFlow settings included. A file that
/// does not load is refused with its file:line:column error and the switch
/// keeps its state.
pub fn reload(sw: &mut Switch, of: &mut OpenFlow, reg: &Registry) -> Result<Value, String> {
    let path = sw.config_path.clone().ok_or("this switch was not started from a file")?;
    let cfg = config::Config::load(&path).map_err(|e| format!("{e}; the running configuration is kept"))?;
    let prepared = of.prepare(&cfg)?;
    let r = sw.reload(&cfg);
    // Whatever part of the file is in force now (all of it, or what a
    // port that failed to reopen left), OpenFlow follows.
    of.apply(reg, &sw.cfg, prepared).map_err(|e| e.to_string())?;
    of.sync_now(sw);
    let r = r.map_err(|e| e.to_string())?;
    Ok(json!({"added": r.added, "removed": r.removed, "reopened": r.reopened, "changed": r.changed,
              "bridges_added": r.bridges_added, "bridges_removed": r.bridges_removed, "routes_changed": r.routes_changed}))
}

/// A bridge's megaflow counters: hits and upcalls (walks of the tables),
/// the hit rate, subtables probed per packet looked up, megaflows held
/// now by all PMD threads, installs, misses dropped over the upcall
/// budget and decisions that could not be cached.
/// Asks every PMD thread for its megaflows of the bridge whose counters
/// are `c` and waits for the `n_pmds` answers (a second at most: a PMD
/// thread answers between two batches).
fn dump_megaflows(
    c: &crate::datapath::ofdp::OfCounters,
    n_pmds: usize,
) -> Vec<(usize, u64, Vec<ofproto::megaflow::DpFlow>)> {
    let req = c.dumps.request.fetch_add(1, Ordering::AcqRel) + 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        {
            let mut a = c.dumps.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if a.iter().filter(|x| x.1 == req).count() >= n_pmds || std::time::Instant::now() >= deadline {
                let mut out: Vec<_> =
                    a.drain(..).filter(|x| x.1 == req).map(|(pmd, _, now_ms, flows)| (pmd, now_ms, flows)).collect();
                out.sort_by_key(|x| x.0);
                return out;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn megaflow_json(ob: &super::openflow::OfBridge, limit: config::MegaflowLimit) -> Value {
    let (c, f) = (&ob.counters, &ob.agent.folder.stats);
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (hits, upcalls) = (ld(&c.mf_hits), ld(&c.mf_upcalls));
    #[allow(clippy::cast_precision_loss)] // ratios of counters
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let emc = ld(&c.mf_emc_hits);
    let all = emc + hits + upcalls;
    let stages: serde_json::Map<String, Value> = ofproto::megaflow::STAGES
        .iter()
        .zip(&c.stage_cycles)
        .map(|(name, cy)| ((*name).to_string(), json!(ld(cy))))
        .collect();
    json!({"hits": hits, "upcalls": upcalls, "hit_rate": ratio(emc + hits, all),
           "emc_hits": emc, "emc_hit_rate": ratio(emc, all), "emc_inserts": ld(&c.mf_emc_inserts),
           "megaflow_hit_rate": ratio(hits, all),
           "repeat_hits": ld(&c.mf_repeats), "groups": ld(&c.mf_groups), "grouped_packets": ld(&c.mf_grouped),
           "packets_per_group": ratio(ld(&c.mf_grouped), ld(&c.mf_groups)),
           "folder": {"passes": ld(&f.passes), "held": ld(&f.held), "folded": ld(&f.folded),
                      "released": ld(&f.released), "last_pass_us": ld(&f.last_pass_us)},
           "subtable_lookups_per_packet": ratio(ld(&c.mf_subtable_lookups), hits + upcalls),
           "subtable_lookups_per_hit": ratio(ld(&c.mf_subtable_lookups), hits),
           "expired": ld(&c.mf_expired), "revalidated": ld(&c.mf_revalidated), "caches_kept": ld(&c.mf_caches_kept),
           "packets": all, "stage_cycles": stages,
           "megaflows": ld(&c.megaflows), "installs": ld(&c.mf_installs),
           "upcall_drops": ld(&c.mf_upcall_drops), "uncacheable": ld(&c.mf_uncacheable),
           "flushed_full": ld(&c.mf_flushed), "grown": ld(&c.mf_grown),
           "limit": ld(&c.mf_limit).max(u64::from(limit.initial())),
           "limit_mode": if limit == config::MegaflowLimit::Auto { "auto" } else { "fixed" },
           "thrashing": ob.caches.hint.is_some(), "hint": ob.caches.hint, "bytes": ld(&c.mf_bytes),
           "bytes_per_megaflow": ratio(ld(&c.mf_bytes), ld(&c.megaflows))})
}

fn port_json(sw: &Switch, p: &crate::daemon::switch::SwitchPort) -> Value {
    let s = p.port.stats();
    let l = p.port.link();
    let mut v = json!({
        "name": p.name, "ofport": p.ofport, "driver": p.port.driver(), "link": if l.up { "up" } else { "down" },
        "mtu": p.port.mtu(), "rx_packets": s.rx_packets, "tx_packets": s.tx_packets, "rx_bytes": s.rx_bytes, "tx_bytes": s.tx_bytes,
        "rx_dropped": s.rx_dropped(), "tx_dropped": s.tx_dropped + s.tx_errors,
        "rx_errors": s.rx_errors, "rx_malformed": s.rx_malformed,
    });
    if let crate::daemon::switch::Attachment::Tunnel(t) = &p.port {
        v["tunnel"] = super::underlay::tunnel_json(sw, p, t);
    }
    if let Some(d) = p.port.device() {
        let on = d.caps().tx_enabled;
        v["tx_offloads"] =
            json!(pmd::port::TX_OFFLOAD_NAMES.iter().filter(|(_, b)| on & b != 0).map(|(n, _)| *n).collect::<Vec<_>>());
    }
    if !p.cfg.addresses.is_empty() {
        v["underlay"] = super::underlay::uplink_json(p);
    }
    v
}

/// `show`: bridges with their ports and counters (and, with `of`, each
/// OpenFlow bridge's drop counters by reason).
pub fn show(sw: &Switch, of: Option<&OpenFlow>) -> Value {
    let bridges: Vec<Value> = sw
        .bridges
        .iter()
        .map(|b| {
            let s = b.l2.stats();
            let mut v = json!({
                "name": b.name,
                "ports": sw.ports.iter().filter(|p| p.bridge == b.name).map(|p| port_json(sw, p)).collect::<Vec<_>>(),
                "l2": {"unicast": s.unicast, "flooded": s.flooded, "drop_vlan": s.drop_vlan, "drop_hairpin": s.drop_hairpin,
                       "drop_malformed": s.drop_malformed, "drop_nombuf": s.drop_nombuf, "mac_moves": s.mac_moves,
                       "arp_answered": s.arp_answered, "arp_passed": s.arp_passed},
            });
            if let Some(ob) = of.and_then(|o| o.bridge(&b.name)).filter(|x| x.has_controllers) {
                let c = &ob.counters;
                let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                v["openflow"] = json!({
                    "flows": ob.agent.tables.tables.iter().map(|t| t.entries.len()).sum::<usize>(),
                    "drop_miss": ld(&c.miss_drops), "drop_bad_port": ld(&c.bad_port),
                    "drop_controller_queue_full": ld(&c.controller_queue_full), "drop_ttl_expired": ld(&c.ttl_expired),
                    "drop_meter": ld(&c.meter_drops), "drop_nombuf": ld(&c.nombuf),
                    "unsupported_actions": ld(&c.unsupported_set_field),
                    "megaflow": megaflow_json(ob, sw.cfg.pmd.megaflow_limit),
                });
            }
            v
        })
        .collect();
    json!({ "bridges": bridges })
}
