//! Prometheus metrics: `[control] metrics = "IP:PORT"` serves `GET /metrics`
//! in the Prometheus text exposition format (0.0.4).
//!
//! An HTTP thread (tiny_http) takes the requests; for each scrape it asks
//! the control thread, through a channel and the event loop's waker, for a
//! [`Snapshot`] of the counters, which the control thread reads from the
//! same atomics `vswitchctl show`, `port-stats` and `pmd-stats` read (the
//! PMD threads' own lines are never touched more than those do), and
//! encodes it with `prometheus-client`. A scrape costs the control thread
//! one pass over ports, PMD threads, bridges and tables.
//!
//! Families (counters get `_total` appended by the encoder):
//! - per port (`bridge`, `port`): `vswitch_port_{rx,tx}_{packets,bytes}`,
//!   `vswitch_port_dropped{direction,reason}`, `vswitch_port_link_up`,
//!   `vswitch_port_mtu_bytes`;
//! - per PMD thread (`pmd`, `core`): `vswitch_pmd_cycles{state}`,
//!   `vswitch_pmd_packets`, `vswitch_pmd_iterations`,
//!   `vswitch_pmd_cycles_per_packet`, `vswitch_pmd_iteration_seconds`
//!   (a histogram of busy iterations), `vswitch_pmd_no_port_dropped`; per
//!   rx queue (`port`, `queue`, `pmd`): `vswitch_rxq_packets`,
//!   `vswitch_rxq_cycles`;
//! - per bridge (`bridge`): `vswitch_l2_packets{kind}`,
//!   `vswitch_l2_dropped{reason}`, `vswitch_mac_entries`,
//!   `vswitch_mac_learned`, ...; with OpenFlow `vswitch_openflow_flows`,
//!   `vswitch_openflow_dropped{reason}`, `vswitch_datapath_packets{path}`
//!   (exact-match hit, megaflow hit, upcall), `vswitch_megaflows`,
//!   `vswitch_megaflow_bytes`, `vswitch_megaflow_limit`, `vswitch_megaflow_thrashing`,
//!   `vswitch_megaflow_{installs,expired,revalidated,flushed}`,
//!   `vswitch_megaflow_stage_cycles{stage}`;
//! - per OpenFlow table (`bridge`, `table`), for tables with flows or
//!   lookups: `vswitch_openflow_table_{lookups,matches}`,
//!   `vswitch_openflow_table_flows`;
//! - per running capture (`port`, `file`): `vswitch_capture_captured`,
//!   `vswitch_capture_dropped`.

use super::capture::Captures;
use super::openflow::OpenFlow;
use super::switch::Switch;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the PMD iteration histogram's buckets, seconds.
const ITERATION_BOUNDS_S: [f64; 12] = [1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 1e-2, 1e-1];

/// How long the HTTP thread waits for the control thread's snapshot.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// A value of one series.
#[derive(Debug, Clone)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram { sum: f64, count: u64, buckets: Vec<(f64, u64)> },
}

/// One metric family: its series by label values.
#[derive(Debug, Clone)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    series: Vec<(Vec<(&'static str, String)>, Value)>,
}

/// Every family of one scrape, read by the control thread.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    families: Vec<Family>,
}

impl Snapshot {
    fn family(&mut self, name: &'static str, help: &'static str, kind: MetricType) -> &mut Family {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            return &mut self.families[i];
        }
        self.families.push(Family { name, help, kind, series: Vec::new() });
        self.families.last_mut().expect("just pushed")
    }

    fn counter(&mut self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], v: u64) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        self.family(name, help, MetricType::Counter).series.push((labels, Value::Counter(v)));
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], v: f64) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        self.family(name, help, MetricType::Gauge).series.push((labels, Value::Gauge(v)));
    }

    /// The text exposition format (0.0.4).
    pub fn encode(self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

impl prometheus_client::collector::Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let mut m = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, v) in &f.series {
                let mut s = m.encode_family(labels)?;
                match v {
                    Value::Counter(c) => s.encode_counter::<NoLabelSet, _, u64>(c, None)?,
                    Value::Gauge(g) => s.encode_gauge(g)?,
                    Value::Histogram { sum, count, buckets } => {
                        s.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads every family from the running switch (control thread).
pub fn snapshot(sw: &Switch, of: &OpenFlow, captures: &Captures) -> Snapshot {
    let mut s = Snapshot::default();
    s.gauge(
        "vswitch_build_info",
        "vswitchd's version and the DPDK it runs on.",
        &[("version", env!("CARGO_PKG_VERSION")), ("dpdk", &pmd::Eal::version())],
        1.0,
    );
    ports(&mut s, sw);
    pmds(&mut s, sw);
    for b in &sw.bridges {
        bridge(&mut s, b);
        if let Some(ob) = of.bridge(&b.name).filter(|o| o.has_controllers) {
            openflow(&mut s, ob, sw.cfg.pmd.megaflow_limit);
        }
    }
    for c in captures.stats() {
        let l = [("port", c.port.as_str()), ("file", c.file.as_str())];
        s.counter("vswitch_capture_captured", "Packets copied into a capture's ring.", &l, c.captured);
        s.counter(
            "vswitch_capture_dropped",
            "Copies a full capture ring refused (forwarded traffic is never dropped for a capture).",
            &l,
            c.dropped,
        );
    }
    s
}

/// A port scheduler's classes: what each sent and dropped, its depth and
/// rate lately.
fn shaper(s: &mut Snapshot, p: &super::switch::SwitchPort, snap: &crate::datapath::qos::shaper::ShaperSnapshot) {
    let l = [("bridge", p.bridge.as_str()), ("port", p.name.as_str())];
    s.counter(
        "vswitch_shaper_handoff_drops",
        "Frames lost handing over to a port's scheduler.",
        &l,
        snap.handoff_drops,
    );
    for c in &snap.classes {
        let id = c.spec.id.to_string();
        let l = [("bridge", p.bridge.as_str()), ("port", p.name.as_str()), ("queue", id.as_str())];
        s.counter("vswitch_queue_tx_packets", "Packets a scheduler's class sent.", &l, c.stats.packets);
        s.counter("vswitch_queue_tx_bytes", "Bytes a scheduler's class sent.", &l, c.stats.bytes);
        #[allow(clippy::cast_precision_loss)]
        let depth = c.depth.iter().map(|d| d.0).sum::<usize>() as f64;
        s.gauge("vswitch_queue_depth_packets", "Packets queued in a scheduler's class.", &l, depth);
        #[allow(clippy::cast_precision_loss)]
        s.gauge("vswitch_queue_rate_bits", "A class's rate lately, bits per second.", &l, (c.rate * 8) as f64);
        for (reason, n) in crate::datapath::qos::shaper::drop_reasons().iter().zip(c.stats.drops) {
            let l =
                [("bridge", p.bridge.as_str()), ("port", p.name.as_str()), ("queue", id.as_str()), ("reason", reason)];
            s.counter("vswitch_queue_drops", "Packets a scheduler's class dropped, by reason.", &l, n);
        }
    }
}

fn ports(s: &mut Snapshot, sw: &Switch) {
    for p in &sw.ports {
        let st = p.port.stats();
        let l = [("bridge", p.bridge.as_str()), ("port", p.name.as_str())];
        s.counter("vswitch_port_rx_packets", "Packets received.", &l, st.rx_packets);
        s.counter("vswitch_port_tx_packets", "Packets sent.", &l, st.tx_packets);
        s.counter("vswitch_port_rx_bytes", "Bytes received.", &l, st.rx_bytes);
        s.counter("vswitch_port_tx_bytes", "Bytes sent.", &l, st.tx_bytes);
        for (dir, pol) in ["ingress", "egress"].into_iter().zip(&p.policers) {
            let Some(pol) = pol else { continue };
            let (packets, bytes) = pol.policer.totals();
            for (i, colour) in ["green", "yellow", "red"].into_iter().enumerate() {
                let l =
                    [("bridge", p.bridge.as_str()), ("port", p.name.as_str()), ("direction", dir), ("colour", colour)];
                s.counter(
                    "vswitch_policer_packets",
                    "Packets a port's policer marked, by colour (red: dropped).",
                    &l,
                    packets[i],
                );
                s.counter("vswitch_policer_bytes", "Bytes a port's policer marked, by colour.", &l, bytes[i]);
            }
        }
        if let Some(st) = &p.shaper {
            shaper(s, p, &st.shaper.snapshot());
        }
        if let super::switch::Attachment::Tunnel(t) = &p.port {
            tunnel(s, p, t);
            continue;
        }
        for (dir, reason, v) in [
            ("rx", "ring_full", st.rx_missed),
            ("rx", "no_mbuf", st.rx_nombuf),
            ("rx", "malformed", st.rx_malformed),
            ("rx", "errors", st.rx_errors),
            ("tx", "ring_full", st.tx_dropped),
            ("tx", "errors", st.tx_errors),
        ] {
            let l = [("bridge", p.bridge.as_str()), ("port", p.name.as_str()), ("direction", dir), ("reason", reason)];
            s.counter("vswitch_port_dropped", "Frames dropped at a port, by direction and reason.", &l, v);
        }
        let link = p.port.link();
        s.gauge("vswitch_port_link_up", "1 while the port's link is up.", &l, if link.up { 1.0 } else { 0.0 });
        s.gauge("vswitch_port_mtu_bytes", "The port's MTU.", &l, f64::from(p.port.mtu()));
        if !p.cfg.addresses.is_empty() {
            uplink(s, p);
        }
    }
    let u = &sw.underlay;
    for (state, name) in [
        (super::underlay::NeighState::Reachable, "reachable"),
        (super::underlay::NeighState::Probing, "probing"),
        (super::underlay::NeighState::Incomplete, "incomplete"),
        (super::underlay::NeighState::Failed, "failed"),
        (super::underlay::NeighState::Permanent, "permanent"),
    ] {
        #[allow(clippy::cast_precision_loss)] // a count of neighbours
        let n = u.neighbours.values().filter(|n| n.state == state).count() as f64;
        s.gauge("vswitch_underlay_neighbours", "Underlay neighbours, by state.", &[("state", name)], n);
    }
    s.counter(
        "vswitch_underlay_arp_requests",
        "ARP requests the switch sent for its neighbours.",
        &[],
        u.stats.arp_requests,
    );
    for (outcome, v) in [
        ("sent", u.stats.held_sent),
        ("queue_full", u.stats.held_overflow),
        ("expired", u.stats.held_expired),
        ("no_route", u.stats.held_no_route),
    ] {
        s.counter(
            "vswitch_underlay_held_frames",
            "Frames that waited for a neighbour, by outcome (sent, or dropped and why).",
            &[("outcome", outcome)],
            v,
        );
    }
}

/// A tunnel port's own series (its packets are the port's).
fn tunnel(s: &mut Snapshot, p: &super::switch::SwitchPort, t: &super::switch::TunnelPort) {
    let st = crate::datapath::tunnel::tunnel_stats(&t.counters);
    for (reason, v) in [("no_path", st.drop_no_path), ("too_big", st.drop_too_big), ("no_headroom", st.drop_no_room)] {
        let l = [("bridge", p.bridge.as_str()), ("port", p.name.as_str()), ("reason", reason)];
        s.counter("vswitch_tunnel_dropped", "Frames a tunnel port could not send, by reason.", &l, v);
    }
    let l = [("bridge", p.bridge.as_str()), ("port", p.name.as_str())];
    s.counter("vswitch_tunnel_held", "Frames a tunnel port handed over to wait for its next hop.", &l, st.held);
    s.counter(
        "vswitch_tunnel_gso_segments",
        "Segments a tunnel port cut from guests' large TCP segments.",
        &l,
        st.gso_segments,
    );
    let up = if p.port.link().up { 1.0 } else { 0.0 };
    s.gauge("vswitch_port_link_up", "1 while the port's link is up.", &l, up);
    s.gauge("vswitch_port_mtu_bytes", "The port's MTU.", &l, f64::from(p.port.mtu()));
}

/// An uplink's underlay stack.
fn uplink(s: &mut Snapshot, p: &super::switch::SwitchPort) {
    let st = crate::datapath::tunnel::underlay::uplink_stats(&p.uplink);
    for (kind, v) in [
        ("decapsulated", st.decapsulated),
        ("arp_replied", st.arp_replied),
        ("echo_replied", st.echo_replied),
        ("passed", st.passed),
    ] {
        s.counter(
            "vswitch_underlay_packets",
            "Frames an uplink's underlay stack handled, by kind.",
            &[("port", p.name.as_str()), ("kind", kind)],
            v,
        );
    }
    for (reason, v) in crate::datapath::tunnel::underlay::DROP_REASONS.iter().zip(st.drops) {
        s.counter(
            "vswitch_underlay_dropped",
            "Frames an uplink's underlay stack dropped, by reason.",
            &[("port", p.name.as_str()), ("reason", reason)],
            v,
        );
    }
}

fn pmds(s: &mut Snapshot, sw: &Switch) {
    let hists = sw.pmds.iteration_histograms(&ITERATION_BOUNDS_S);
    for (st, h) in sw.pmds.stats().iter().zip(hists) {
        let (pmd, core) = (st.index.to_string(), st.core.to_string());
        let l = [("pmd", pmd.as_str()), ("core", core.as_str())];
        for (state, v) in [("busy", st.busy_cycles), ("idle", st.idle_cycles)] {
            let l = [("pmd", pmd.as_str()), ("core", core.as_str()), ("state", state)];
            s.counter(
                "vswitch_pmd_cycles",
                "TSC cycles of a PMD thread's iterations, busy (received packets) or idle.",
                &l,
                v,
            );
        }
        s.counter("vswitch_pmd_packets", "Packets a PMD thread received.", &l, st.packets);
        s.counter("vswitch_pmd_iterations", "Poll loop iterations.", &l, st.iterations);
        s.counter(
            "vswitch_pmd_no_port_dropped",
            "Packets dropped because their output port had been removed.",
            &l,
            st.no_port_drops,
        );
        s.gauge(
            "vswitch_pmd_cycles_per_packet",
            "Busy cycles per packet received, since start.",
            &l,
            st.cycles_per_packet,
        );
        let buckets = ITERATION_BOUNDS_S.iter().copied().zip(h.buckets).chain([(f64::INFINITY, h.count)]).collect();
        let labels = l.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        s.family(
            "vswitch_pmd_iteration_seconds",
            "Duration of PMD loop iterations that received packets.",
            MetricType::Histogram,
        )
        .series
        .push((labels, Value::Histogram { sum: h.sum_s, count: h.count, buckets }));
    }
    for (slot, queue, owner, packets, cycles) in sw.pmds.rxq_stats() {
        #[allow(clippy::cast_possible_truncation)] // slots are below 2^32
        let Some(p) = sw.port_by_slot(slot as u32) else {
            continue;
        };
        let (q, o) = (queue.to_string(), owner.to_string());
        let l = [("port", p.name.as_str()), ("queue", q.as_str()), ("pmd", o.as_str())];
        s.counter("vswitch_rxq_packets", "Packets received on an rx queue.", &l, packets);
        s.counter("vswitch_rxq_cycles", "Busy cycles spent on an rx queue's batches.", &l, cycles);
    }
}

fn bridge(s: &mut Snapshot, b: &super::switch::SwitchBridge) {
    let l2 = b.l2.stats();
    let name = b.name.as_str();
    for (kind, v) in [("unicast", l2.unicast), ("flooded", l2.flooded), ("flood_copies", l2.flood_copies)] {
        s.counter("vswitch_l2_packets", "Packets L2 switching sent, by kind.", &[("bridge", name), ("kind", kind)], v);
    }
    for (outcome, v) in [("answered", l2.arp_answered), ("passed", l2.arp_passed)] {
        s.counter(
            "vswitch_l2_arp_requests",
            "ARP requests the bridge's responder answered, or passed on (flooded) for addresses it does not know.",
            &[("bridge", name), ("outcome", outcome)],
            v,
        );
    }
    for (reason, v) in [
        ("vlan", l2.drop_vlan),
        ("hairpin", l2.drop_hairpin),
        ("malformed", l2.drop_malformed),
        ("no_mbuf", l2.drop_nombuf),
    ] {
        s.counter(
            "vswitch_l2_dropped",
            "Packets L2 switching dropped, by reason.",
            &[("bridge", name), ("reason", reason)],
            v,
        );
    }
    let t = b.l2.table.stats();
    let l = [("bridge", name)];
    s.gauge("vswitch_mac_entries", "MAC table entries.", &l, t.entries as f64);
    s.gauge("vswitch_mac_capacity", "MAC table capacity.", &l, b.l2.table.capacity() as f64);
    s.counter("vswitch_mac_learned", "MACs learned.", &l, t.learned);
    s.counter("vswitch_mac_moves", "MACs that moved to another port.", &l, t.moves);
    s.counter("vswitch_mac_expired", "MACs aged out.", &l, t.expired);
    s.counter("vswitch_mac_evictions", "MACs pushed out of a full bucket.", &l, t.evictions);
    s.counter("vswitch_mac_full_refusals", "New MACs not learned: the table was full.", &l, t.full_refusals);
}

fn openflow(s: &mut Snapshot, ob: &super::openflow::OfBridge, limit: config::MegaflowLimit) {
    let c = &ob.counters;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let name = ob.bridge.as_str();
    let l = [("bridge", name)];
    let tables = &ob.agent.tables;
    s.gauge(
        "vswitch_openflow_flows",
        "OpenFlow flow entries in all tables.",
        &l,
        tables.tables.iter().map(|t| t.entries.len()).sum::<usize>() as f64,
    );
    for (reason, v) in [
        ("miss", ld(&c.miss_drops)),
        ("bad_port", ld(&c.bad_port)),
        ("controller_queue_full", ld(&c.controller_queue_full)),
        ("ttl_expired", ld(&c.ttl_expired)),
        ("meter", ld(&c.meter_drops)),
        ("no_mbuf", ld(&c.nombuf)),
        ("upcall_budget", ld(&c.mf_upcall_drops)),
    ] {
        s.counter(
            "vswitch_openflow_dropped",
            "Packets the OpenFlow pipeline dropped, by reason.",
            &[("bridge", name), ("reason", reason)],
            v,
        );
    }
    s.counter(
        "vswitch_openflow_unsupported_actions",
        "Set-field actions the datapath could not apply.",
        &l,
        ld(&c.unsupported_set_field),
    );
    for (path, v) in [("emc", ld(&c.mf_emc_hits)), ("megaflow", ld(&c.mf_hits)), ("upcall", ld(&c.mf_upcalls))] {
        s.counter(
            "vswitch_datapath_packets",
            "Packets by the way the datapath found their decision: exact-match cache, megaflow, or a walk of the tables (upcall).",
            &[("bridge", name), ("path", path)],
            v,
        );
    }
    s.gauge("vswitch_megaflows", "Megaflows all PMD threads' caches hold.", &l, ld(&c.megaflows) as f64);
    s.gauge("vswitch_megaflow_bytes", "Memory the megaflows take.", &l, ld(&c.mf_bytes) as f64);
    s.gauge(
        "vswitch_megaflow_limit",
        "Megaflows one PMD thread's cache may hold now (megaflow_limit = \"auto\" grows it).",
        &l,
        ld(&c.mf_limit).max(u64::from(limit.initial())) as f64,
    );
    s.gauge(
        "vswitch_megaflow_thrashing",
        "1 while the caches fill up and start over (the log and `show` say what to set).",
        &l,
        if ob.caches.hint.is_some() { 1.0 } else { 0.0 },
    );
    s.counter("vswitch_megaflow_installs", "Megaflows installed.", &l, ld(&c.mf_installs));
    s.counter("vswitch_megaflow_expired", "Megaflows removed for being idle.", &l, ld(&c.mf_expired));
    s.counter("vswitch_megaflow_revalidated", "Megaflows removed by flow changes.", &l, ld(&c.mf_revalidated));
    s.counter("vswitch_megaflow_flushed", "Megaflows dropped because a cache was full.", &l, ld(&c.mf_flushed));
    s.counter("vswitch_megaflow_uncacheable", "Upcalls whose decision could not be cached.", &l, ld(&c.mf_uncacheable));
    s.counter("vswitch_megaflow_subtable_lookups", "Megaflow subtables probed.", &l, ld(&c.mf_subtable_lookups));
    for (stage, cy) in ofproto::megaflow::STAGES.iter().zip(&c.stage_cycles) {
        s.counter(
            "vswitch_megaflow_stage_cycles",
            "TSC cycles of the OpenFlow fast path, by stage.",
            &[("bridge", name), ("stage", stage)],
            ld(cy),
        );
    }
    let f = &ob.agent.folder.stats;
    s.counter("vswitch_megaflow_folder_passes", "Passes of the bridge's megaflow folder.", &l, ld(&f.passes));
    s.gauge(
        "vswitch_megaflow_folder_last_pass_seconds",
        "Length of the folder's last pass.",
        &l,
        ld(&f.last_pass_us) as f64 / 1e6,
    );
    for (id, (t, ct)) in tables.tables.iter().zip(tables.counters.iter()).enumerate() {
        let (lookups, matches) = (ld(&ct.lookups), ld(&ct.matches));
        if t.entries.is_empty() && lookups == 0 {
            continue;
        }
        let id = id.to_string();
        let l = [("bridge", name), ("table", id.as_str())];
        s.counter("vswitch_openflow_table_lookups", "Packets looked up in an OpenFlow table.", &l, lookups);
        s.counter("vswitch_openflow_table_matches", "Packets that matched a flow in an OpenFlow table.", &l, matches);
        s.gauge("vswitch_openflow_table_flows", "Flow entries in an OpenFlow table.", &l, t.entries.len() as f64);
    }
}

/// A scrape waiting for the control thread's snapshot.
pub type ScrapeRequest = SyncSender<Snapshot>;

/// The HTTP side: a thread serving `/metrics`, asking the control thread
/// for each scrape's snapshot. Dropped: the thread stops.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr`; each scrape sends a request on `to_control` and
    /// calls `wake` (the event loop's waker), then waits for the answer.
    pub fn start(
        addr: SocketAddr,
        to_control: Sender<ScrapeRequest>,
        wake: impl Fn() + Send + 'static,
    ) -> Result<MetricsServer, String> {
        let server =
            tiny_http::Server::http(addr).map_err(|e| format!("control.metrics: cannot listen on {addr}: {e}"))?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let srv = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                for rq in srv.incoming_requests() {
                    respond(rq, &to_control, &wake);
                }
            })
            .map_err(|e| format!("metrics thread: {e}"))?;
        Ok(MetricsServer { server, thread: Some(thread), addr })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(k: &str, v: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("static header is valid")
}

fn respond(rq: tiny_http::Request, to_control: &Sender<ScrapeRequest>, wake: &impl Fn()) {
    use tiny_http::{Method, Response};
    let path = rq.url().split('?').next().unwrap_or("");
    let text = |code: u16, body: String| {
        Response::from_string(body)
            .with_status_code(code)
            .with_header(header("Content-Type", "text/plain; charset=utf-8"))
    };
    let resp = match (rq.method(), path) {
        (Method::Get, "/metrics") => {
            let (tx, rx) = mpsc::sync_channel(1);
            let got = to_control.send(tx).ok().and_then(|()| {
                wake();
                rx.recv_timeout(SCRAPE_TIMEOUT).ok()
            });
            match got {
                Some(snap) => Response::from_string(snap.encode())
                    .with_header(header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")),
                None => text(503, "vswitchd's control thread did not answer within 5 s\n".into()),
            }
        }
        (Method::Get, "/") => text(200, "vswitchd: metrics at /metrics\n".into()),
        (Method::Get, p) => text(404, format!("no page {p}: metrics are at /metrics\n")),
        (m, _) => text(405, format!("{m} is not served: GET /metrics\n")),
    };
    let _ = rq.respond(resp);
}

/// Answers every scrape waiting in `rx` (control thread, each loop turn).
pub fn answer(rx: &Receiver<ScrapeRequest>, sw: &Switch, of: &OpenFlow, captures: &Captures) {
    while let Ok(reply) = rx.try_recv() {
        let _ = reply.try_send(snapshot(sw, of, captures));
    }
}
