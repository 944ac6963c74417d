//! `vswitch-bench compare`: forwarders side by side, alternating over
//! rounds on one transport and the same cores; throughput, cycles per
//! packet, loss, latency, and with `--zero-loss` each one's RFC 2544
//! zero-loss rate and the latency at 50, 90 and 99% of it. Results are
//! printed as tables with ratios and written as JSON with SVG charts.

use crate::forwarders::{describe, Kind, Scenario, Setup, Transport};
use crate::gen::{TrafficSpec, TrialResult};
use crate::rfc2544::{search, Step};
use crate::rig::Rig;
use anyhow::{bail, Result};
use pmd::{Eal, Mempool};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `vswitch-bench compare`: forwarders side by side.
#[derive(clap::Parser, Clone)]
pub struct CompareArgs {
    /// Scenario: p2p (in_port -> output between two ports) or l2 (MAC
    /// learning switch: vswitchd against OVS-DPDK's NORMAL action).
    #[arg(long, value_enum, default_value = "p2p")]
    pub scenario: Scenario,
    /// Source MACs per direction for the l2 scenario (sets --flows).
    #[arg(long)]
    pub macs: Option<u32>,
    /// Transport between generator and forwarder.
    #[arg(long, value_enum, default_value = "memif")]
    pub transport: Transport,
    /// Tunnel scenarios: traffic both ways, or only into the tunnel
    /// (encapsulation) or only out of it (decapsulation).
    #[arg(long, value_enum, default_value = "both")]
    pub tunnel_direction: TunnelDirection,
    /// Tunnel scenarios: remote endpoints (above 1: a tunnel port whose
    /// remote is `flow` in both switches, OpenFlow flows sending each inner
    /// destination MAC to its remote; the `--flows` inner MACs spread over
    /// them).
    #[arg(long, default_value_t = 1)]
    pub remotes: u32,
    /// Frame size in bytes (with FCS), 64..=1518.
    #[arg(long, default_value_t = 64)]
    pub frame_size: usize,
    /// Seconds per trial.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Rounds; forwarders alternate within each (A B C A B C ...).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Distinct flows per direction: source MAC, IP and UDP port vary
    /// together. A list (`1,1000,100000`) runs the whole comparison at
    /// each count and draws Mpps and cycles per packet against flows.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub flows: Vec<u32>,
    /// Forwarders to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "vswitch,testpmd,ovs-dpdk")]
    pub forwarders: Vec<Kind>,
    /// Core of the generator/sink.
    #[arg(long, default_value_t = 1)]
    pub gen_core: usize,
    /// Core every forwarder is pinned to.
    #[arg(long, default_value_t = 0)]
    pub fwd_core: usize,
    /// Offered load per direction for the latency trial, in Mpps.
    #[arg(long, default_value_t = 0.5)]
    pub latency_rate: f64,
    /// Seconds of the latency trial (0: none; latency then comes from the
    /// throughput trial, at saturation).
    #[arg(long, default_value_t = 2)]
    pub latency_seconds: u64,
    /// Rx/tx queue pairs per port for every forwarder and the generator
    /// (default: 2 on memif, which OVS-DPDK needs there; 1 on vhost).
    #[arg(long)]
    pub queues: Option<u16>,
    /// Offered load per direction for the measured trial, in Mpps (none:
    /// as fast as the forwarder takes). With `--storm`, a rate below the
    /// forwarder's zero-loss rate shows whether flow table changes cost
    /// packets.
    #[arg(long)]
    pub rate: Option<f64>,
    /// OpenFlow scenarios: during the measured trial, a controller adds
    /// this many flows to table 1 (matching no generated packet; each add
    /// changes the tables the datapath uses), then deletes them one by one
    /// (strict), each pass ended by a barrier, again and again until the
    /// trial ends.
    #[arg(long, default_value_t = 0)]
    pub storm: u32,
    /// Seconds of traffic before each measured trial (caches filled, MACs
    /// learnt); by default 0.5 s and 20 s more per million flows, so that
    /// every flow is seen before the trial.
    #[arg(long)]
    pub warmup_seconds: Option<f64>,
    /// OpenFlow scenarios: vswitchd's `[pmd] megaflow_limit` (megaflows
    /// per PMD thread; its default, "auto", when not given: the caches
    /// grow to the traffic). OVS-DPDK's is fixed (65,536 per PMD thread).
    #[arg(long)]
    pub megaflow_limit: Option<u32>,
    /// Another vswitchd build to run as the forwarder `vswitch-base`
    /// (added to `--forwarders` when not named there): two builds side by
    /// side in one run.
    #[arg(long)]
    pub baseline_vswitchd: Option<std::path::PathBuf>,
    /// After the rounds, search each forwarder's zero-loss rate (RFC 2544
    /// throughput: binary search for the highest offered rate with no
    /// loss over a trial), then measure latency at 50, 90 and 99% of it.
    #[arg(long)]
    pub zero_loss: bool,
    /// Seconds of each zero-loss trial (RFC 2544 asks for 60).
    #[arg(long, default_value_t = 2.0)]
    pub zero_loss_seconds: f64,
    /// The search stops when the interval is within this share of the
    /// rate.
    #[arg(long, default_value_t = 0.02)]
    pub zero_loss_resolution: f64,
    /// qos scenario: scheduler classes per shaped port (1-65536).
    #[arg(long, default_value_t = 1)]
    pub classes: u32,
    /// qos scenario: traffic to half of the classes only (the others
    /// idle).
    #[arg(long)]
    pub idle_half: bool,
    /// qos scenario: the shaped ports' rate in bits/s (default: 100
    /// Gbit/s, which never binds: the scheduler's cost is measured). Given,
    /// each forwarder's delivered rate is compared with it, OVS-DPDK polices
    /// at it (egress-policer) and Linux HTB on a veth pair shapes at it.
    #[arg(long)]
    pub qos_rate: Option<u64>,
    /// Write results as JSON here (and SVG charts beside it).
    #[arg(long)]
    pub json: Option<String>,
    /// Scratch directory for sockets and logs.
    #[arg(long, default_value = "/tmp/vswitch-bench")]
    pub dir: String,
}

/// One forwarder's results over the rounds.
#[derive(Default, Clone)]
struct Samples {
    /// Per round: flow-mods the storm applied per second of the trial.
    storm_rate: Vec<f64>,
    mpps: Vec<f64>,
    cpp: Vec<f64>,
    /// Per round: cycles per packet in each of `forwarders::STAGES`.
    stages: Vec<Vec<f64>>,
    /// Per round: megaflows installed per second of the trial.
    installs_per_s: Vec<f64>,
    /// Per round: packets per group of one megaflow's packets in a batch.
    per_group: Vec<f64>,
    loss: Vec<f64>,
    lat: Option<hdrhistogram::Histogram<u64>>,
    errors: Vec<String>,
    /// The zero-loss search and the latency at fractions of its rate.
    zero_loss: Option<serde_json::Value>,
}

/// The median of `v` (None when empty).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    Some(if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 })
}

/// The smallest and largest of `v`.
pub fn minmax(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)))
}

/// Which ways a tunnel scenario's traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelDirection {
    /// Into the tunnel and out of it at once.
    Both,
    /// Only into the tunnel: port 0 sends, the uplink receives VXLAN.
    Encap,
    /// Only out of it: the uplink sends VXLAN, port 0 receives.
    Decap,
}

impl TunnelDirection {
    /// Which generator ports send.
    pub fn send(self) -> [bool; 2] {
        match self {
            TunnelDirection::Both => [true, true],
            TunnelDirection::Encap => [true, false],
            TunnelDirection::Decap => [false, true],
        }
    }
}

/// Runs `compare`: at each flow count, the rounds of every forwarder,
/// then (with `--zero-loss`) each one's zero-loss search; prints the
/// tables and writes the JSON and charts.
pub fn run(mut a: CompareArgs) -> Result<()> {
    if let Some(m) = a.macs {
        if a.scenario != Scenario::L2 {
            bail!("--macs is for --scenario l2 (p2p takes --flows)");
        }
        a.flows = vec![m.max(1)];
    }
    if a.flows.is_empty() || a.flows.contains(&0) {
        bail!("--flows: give one or more counts of at least 1");
    }
    if !(0.001..=0.5).contains(&a.zero_loss_resolution) || a.zero_loss_seconds <= 0.0 {
        bail!("--zero-loss-resolution is a share from 0.001 to 0.5 and --zero-loss-seconds more than 0");
    }
    if !(64..=1518).contains(&a.frame_size) {
        bail!("--frame-size: {} is outside 64..=1518", a.frame_size);
    }
    if a.scenario == Scenario::Qos && a.transport != Transport::Memif {
        bail!("the qos scenario runs over memif");
    }
    if a.remotes != 1 && !a.scenario.tunnel() {
        bail!("--remotes is for tunnel scenarios (vxlan, geneve, gre)");
    }
    if a.remotes == 0 || a.remotes > 65_534 {
        bail!("--remotes: {} is outside 1..=65534", a.remotes);
    }
    if a.tunnel_direction != TunnelDirection::Both && !a.scenario.tunnel() {
        bail!("--tunnel-direction is for tunnel scenarios (vxlan, geneve, gre)");
    }
    if a.scenario.tunnel() && a.transport != Transport::Memif {
        bail!("tunnel scenarios run over memif (the uplink's MAC is a memif devarg)");
    }
    let qos_flags = a.classes != 1 || a.idle_half || a.qos_rate.is_some();
    if qos_flags && a.scenario != Scenario::Qos {
        bail!("--classes, --idle-half and --qos-rate are for --scenario qos");
    }
    if !(1..=65_536).contains(&a.classes) || (a.idle_half && a.classes < 2) {
        bail!("--classes: {} is outside 1..=65536 (at least 2 with --idle-half)", a.classes);
    }
    if a.gen_core == a.fwd_core {
        bail!("--gen-core and --fwd-core must differ (generator and forwarder each need a core)");
    }
    if a.baseline_vswitchd.is_some() && !a.forwarders.contains(&Kind::VswitchBase) {
        a.forwarders.insert(1, Kind::VswitchBase);
    }
    std::fs::create_dir_all(&a.dir)?;
    let queues = a.queues.unwrap_or(match a.transport {
        Transport::Memif => 2,
        Transport::Vhost => 1,
    });
    if queues == 0 || queues > 8 {
        bail!("--queues: {queues} is outside 1..=8");
    }
    if a.warmup_seconds.is_some_and(|w| !(0.0..=600.0).contains(&w)) {
        bail!("--warmup-seconds: {:?} is outside 0..=600", a.warmup_seconds);
    }
    let setup = Setup {
        dir: a.dir.clone().into(),
        gen_core: a.gen_core,
        fwd_core: a.fwd_core,
        transport: a.transport,
        queues,
        scenario: a.scenario,
        macs: a.flows[0],
        megaflow_limit: a.megaflow_limit,
        baseline_vswitchd: a.baseline_vswitchd.clone(),
        remotes: a.remotes,
        qos: (a.scenario == Scenario::Qos).then(|| crate::qos::QosBench {
            classes: a.classes,
            active: if a.idle_half { a.classes / 2 } else { a.classes },
            rate: a.qos_rate.unwrap_or(crate::qos::UNBOUND),
        }),
    };
    let (eal, pool) = crate::rig::generator(&[a.gen_core, a.fwd_core], "vsbench-gen")?;
    let mut docs = Vec::new();
    let mut uniq = 0;
    for &flows in &a.flows.clone() {
        let mut a = a.clone();
        a.flows = vec![flows];
        let s = Setup { macs: flows, ..setup.clone() };
        docs.push(run_point(&a, &s, queues, eal, &pool, &mut uniq)?);
    }
    write(&a, docs)
}

/// One flow count: the rounds, the zero-loss searches, the report; its
/// JSON document.
fn run_point(
    a: &CompareArgs,
    setup: &Setup,
    queues: u16,
    eal: &'static Eal,
    pool: &Arc<Mempool>,
    uniq: &mut usize,
) -> Result<serde_json::Value> {
    println!(
        "vswitch-bench compare: scenario {:?} transport {:?} ({} queue pairs per port) frame {} B flows {} | generator core {} forwarder core {} | {} | {} rounds x {} s",
        a.scenario, a.transport, queues, a.frame_size, a.flows[0], a.gen_core, a.fwd_core, Eal::version(), a.rounds, a.seconds
    );
    let mut samples: Vec<Samples> = vec![Samples::default(); a.forwarders.len()];
    for round in 0..a.rounds {
        for (fi, &kind) in a.forwarders.iter().enumerate() {
            *uniq += 1;
            let want_latency = a.latency_seconds > 0;
            match one_trial(kind, setup, eal, pool, a, *uniq, want_latency) {
                Ok((res, lat, cpp, stages, storm)) => {
                    println!(
                        "  round {} {:<9} {:>7.2} Mpps each way  loss {:.2e} ({} of {})  {}{}",
                        round + 1,
                        kind.name(),
                        res.mpps_each_way(),
                        res.loss_ratio(),
                        res.tx[0] + res.tx[1] - (res.rx[0] + res.rx[1]).min(res.tx[0] + res.tx[1]),
                        res.tx[0] + res.tx[1],
                        cpp.map(|c| format!("{c:.1} cycles/pkt")).unwrap_or_else(|| "cycles/pkt n/a".into()),
                        storm.map(|r| format!("  during {r:.0} flow-mods/s")).unwrap_or_default()
                    );
                    let s = &mut samples[fi];
                    if let Some(r) = storm {
                        s.storm_rate.push(r);
                    }
                    s.mpps.push(res.mpps_each_way());
                    s.loss.push(res.loss_ratio());
                    if let Some(c) = cpp {
                        s.cpp.push(c);
                    }
                    if let Some(of) = stages {
                        let per_s = of.installs as f64 / a.seconds as f64;
                        s.installs_per_s.push(per_s);
                        s.per_group.push(of.packets_per_group);
                        let st = of.stages;
                        println!(
                            "          {:.0} megaflow installs/s; {:.1} packets per megaflow group; cycles/pkt by stage: {}",
                            per_s,
                            of.packets_per_group,
                            crate::forwarders::STAGES
                                .iter()
                                .zip(&st)
                                .map(|(n, c)| format!("{n} {c:.1}"))
                                .collect::<Vec<_>>()
                                .join("  ")
                        );
                        s.stages.push(st);
                    }
                    // Latency: every round's trial, merged.
                    if let Some(l) = lat {
                        match s.lat.as_mut() {
                            Some(h) => {
                                let _ = h.add(&l);
                            }
                            None => s.lat = Some(l),
                        }
                    } else if s.lat.is_none() && a.latency_seconds == 0 {
                        s.lat = Some(res.latency.clone());
                    }
                }
                Err(e) => {
                    println!("  round {} {:<9} failed: {}", round + 1, kind.name(), describe(&e));
                    samples[fi].errors.push(describe(&e));
                }
            }
        }
    }
    if a.zero_loss {
        for (fi, &kind) in a.forwarders.iter().enumerate() {
            *uniq += 1;
            let upper = median(&samples[fi].mpps).unwrap_or(a.rate.unwrap_or(20.0)) * 1.1;
            match zero_loss(kind, setup, eal, pool, a, *uniq, upper) {
                Ok(z) => samples[fi].zero_loss = Some(z),
                Err(e) => {
                    println!("  zero-loss {:<9} failed: {}", kind.name(), describe(&e));
                    samples[fi].errors.push(format!("zero-loss: {}", describe(&e)));
                }
            }
        }
    }
    let mut doc = report(a, queues, &samples)?;
    if let Some(q) = &setup.qos {
        doc["qos"] = qos_report(a, q, setup, eal, pool, uniq, &samples);
    }
    Ok(doc)
}

/// The qos scenario's tables: each forwarder's packet rate against ours
/// unshaped, and with `--qos-rate` the rate delivered against the one
/// configured, Linux HTB on a veth pair measured beside them.
fn qos_report(
    a: &CompareArgs,
    q: &crate::qos::QosBench,
    setup: &Setup,
    eal: &'static Eal,
    pool: &Arc<Mempool>,
    uniq: &mut usize,
    samples: &[Samples],
) -> serde_json::Value {
    let unshaped = a.forwarders.iter().position(|k| *k == Kind::VswitchUnshaped).and_then(|i| median(&samples[i].mpps));
    println!(
        "
qos: {} classes per port, {} with traffic, rate {} bit/s{}",
        q.classes,
        q.active,
        q.rate,
        if q.rate == crate::qos::UNBOUND { " (not binding)" } else { "" }
    );
    let mut rows = Vec::new();
    for (k, s) in a.forwarders.iter().zip(samples) {
        let Some(m) = median(&s.mpps) else { continue };
        let bits = m * 1e6 * (a.frame_size - 4) as f64 * 8.0;
        let err = (q.rate != crate::qos::UNBOUND).then(|| (bits - q.rate as f64) / q.rate as f64);
        println!(
            "{:<17} {:>8.3} Mpps  {:>7} of unshaped  {:>12.0} bit/s delivered{}",
            k.name(),
            m,
            unshaped.map(|u| format!("{:.1}%", m / u * 100.0)).unwrap_or_default(),
            bits,
            err.map(|e| format!("  rate error {:+.2}%", e * 100.0)).unwrap_or_default()
        );
        rows.push(serde_json::json!({"forwarder": k.name(), "mpps": m, "vs_unshaped": unshaped.map(|u| m / u),
            "bits_delivered": bits, "rate_error": err}));
    }
    if q.rate != crate::qos::UNBOUND {
        let mut v = Vec::new();
        for _ in 0..a.rounds {
            *uniq += 1;
            let spec = TrafficSpec {
                frame_size: a.frame_size,
                flows: a.flows[0],
                rate_mpps: None,
                duration: Duration::from_secs(a.seconds),
                latency_sample: 16,
                tunnel: None,
                send: [true, true],
                remotes: 1,
            };
            match crate::qos::linux_htb_trial(eal, pool, q, spec, setup.gen_core, *uniq) {
                Ok(r) => v.push(crate::qos::delivered_bits(&r, a.frame_size)),
                Err(e) => println!("linux-htb failed: {}", describe(&e)),
            }
        }
        if let Some(bits) = median(&v) {
            let err = (bits - q.rate as f64) / q.rate as f64;
            println!(
                "{:<17} {:>8.3} Mpps  {:>7}  {:>12.0} bit/s delivered  rate error {:+.2}%",
                "linux-htb (veth)",
                bits / ((a.frame_size - 4) as f64 * 8.0) / 1e6,
                "",
                bits,
                err * 100.0
            );
            rows.push(
                serde_json::json!({"forwarder": "linux-htb", "bits_delivered": bits, "rate_error": err, "rounds": v}),
            );
        }
    }
    serde_json::json!({"classes": q.classes, "active": q.active, "rate": q.rate, "results": rows})
}

type TrialOut =
    (TrialResult, Option<hdrhistogram::Histogram<u64>>, Option<f64>, Option<crate::forwarders::OfStats>, Option<f64>);

fn one_trial(
    kind: Kind,
    s: &Setup,
    eal: &'static Eal,
    pool: &Arc<Mempool>,
    a: &CompareArgs,
    uniq: usize,
    latency: bool,
) -> Result<TrialOut> {
    let rig = Rig::start(kind, s, eal, pool, uniq)?;
    let fwd = &rig.fwd;
    let spec = |secs: f64, rate: Option<f64>| TrafficSpec {
        frame_size: a.frame_size,
        flows: a.flows[0],
        rate_mpps: rate,
        duration: Duration::from_secs_f64(secs),
        latency_sample: 16,
        tunnel: s.scenario.encap(),
        send: a.tunnel_direction.send(),
        remotes: s.remotes,
    };
    let run_on_gen_core = |spec: TrafficSpec| rig.trial(spec);
    // Warm up (caches, learning), then the measured trial.
    run_on_gen_core(spec(warmup(a), None))?;
    fwd.clear_counters();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = match (&fwd.of_target, a.storm) {
        (Some(target), n) if n > 0 => {
            let (target, stop) = (target.clone(), stop.clone());
            Some(std::thread::spawn(move || crate::forwarders::flow_mod_churn(&target, n, &stop)))
        }
        _ => None,
    };
    let t0 = Instant::now();
    let res = run_on_gen_core(spec(a.seconds as f64, a.rate));
    let trial_secs = t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let storm = match storm.map(|h| h.join()) {
        Some(Ok(Ok(mods))) => Some(mods as f64 / trial_secs),
        Some(Ok(Err(e))) => bail!("flow-mod storm: {}", describe(&e)),
        Some(Err(_)) => bail!("flow-mod storm thread panicked"),
        None => None,
    };
    let res = res?;
    let ovs_cpp = fwd.cycles_before_stop();
    let stages = fwd.stages_before_stop();
    let lat = if latency {
        Some(run_on_gen_core(spec(a.latency_seconds as f64, Some(a.latency_rate)))?.latency)
    } else {
        None
    };
    let cpp = rig.stop()?.or(ovs_cpp);
    if res.rx[0] + res.rx[1] == 0 {
        bail!("no packet came back");
    }
    Ok((res, lat, cpp, stages, storm))
}

/// Prints the table of one flow count; its JSON document.
fn report(a: &CompareArgs, queues: u16, samples: &[Samples]) -> Result<serde_json::Value> {
    let idx_tp = a.forwarders.iter().position(|k| *k == Kind::Testpmd);
    let tp_mpps = idx_tp.and_then(|i| median(&samples[i].mpps));
    println!();
    println!(
        "{:<10} {:>9} {:>17} {:>9} {:>11} {:>10} {:>24}",
        "forwarder", "Mpps", "min-max", "vs tp", "cyc/pkt", "loss", "latency us p50/p99/p99.9/max"
    );
    let mut results = Vec::new();
    for (k, s) in a.forwarders.iter().zip(samples) {
        let m = median(&s.mpps);
        let Some(mpps) = m else {
            println!("{:<10} error: {}", k.name(), s.errors.first().map(String::as_str).unwrap_or("no result"));
            results.push(serde_json::json!({"forwarder": k.name(), "error": s.errors.first().cloned().unwrap_or_else(|| "no result".into())}));
            continue;
        };
        let (lo, hi) = minmax(&s.mpps);
        let cpp = median(&s.cpp);
        let loss = median(&s.loss).unwrap_or(0.0);
        let lat = s.lat.as_ref().filter(|h| !h.is_empty()).map(|h| {
            let us = |v: u64| v as f64 / 1000.0;
            [us(h.value_at_quantile(0.5)), us(h.value_at_quantile(0.99)), us(h.value_at_quantile(0.999)), us(h.max())]
        });
        let ratio = tp_mpps.map(|t| mpps / t);
        println!(
            "{:<10} {:>9.2} {:>8.2}-{:<8.2} {:>9} {:>11} {:>10.2e} {:>24}",
            k.name(),
            mpps,
            lo,
            hi,
            ratio.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_default(),
            cpp.map(|c| format!("{c:.1}")).unwrap_or_else(|| "n/a".into()),
            loss,
            lat.map(|l| format!("{:.1}/{:.1}/{:.1}/{:.1}", l[0], l[1], l[2], l[3])).unwrap_or_else(|| "n/a".into())
        );
        let mut r = serde_json::json!({
            "forwarder": k.name(),
            "mpps": mpps,
            "mpps_min": lo,
            "mpps_max": hi,
            "rounds": s.mpps.len(),
            "cycles_per_packet": cpp,
            "loss_ratio": loss,
            "ratio_to_testpmd": ratio,
            "latency_us": lat.map(|l| serde_json::json!({"p50": l[0], "p99": l[1], "p999": l[2], "max": l[3]})),
        });
        if !s.stages.is_empty() {
            // Each stage's median over the rounds.
            let stages: serde_json::Map<String, serde_json::Value> = crate::forwarders::STAGES
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let v: Vec<f64> = s.stages.iter().filter_map(|r| r.get(i).copied()).collect();
                    ((*n).to_string(), serde_json::json!(median(&v)))
                })
                .collect();
            r["stages"] = serde_json::Value::Object(stages);
            r["megaflow_installs_per_s"] = serde_json::json!(median(&s.installs_per_s));
            r["packets_per_group"] = serde_json::json!(median(&s.per_group));
        }
        if !s.storm_rate.is_empty() {
            r["storm_flow_mods_per_s"] = serde_json::json!(median(&s.storm_rate));
            r["loss_ratio_max"] = serde_json::json!(s.loss.iter().copied().fold(0.0, f64::max));
        }
        if let Some(z) = &s.zero_loss {
            r["zero_loss"] = z.clone();
        }
        if !s.errors.is_empty() {
            r["round_errors"] = serde_json::json!(s.errors);
        }
        results.push(r);
    }
    println!(
        "\nMpps: received per direction (median of rounds). cycles/pkt: as each forwarder counts its own busy cycles\n(ours: whole iterations that received packets, empty polls and tx flush included; testpmd: only polls that\nreceived; OVS: its PMD processing cycles). Latency: all rounds' trials at {} Mpps offered per direction, merged.",
        a.latency_rate
    );
    let zl: Vec<String> = a
        .forwarders
        .iter()
        .zip(samples)
        .filter_map(|(k, s)| {
            let z = s.zero_loss.as_ref()?;
            let lat: Vec<String> = z["latency"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    format!(
                        "{}%: {:.1}/{:.1}/{:.1}",
                        l["load_pct"],
                        l["latency_us"]["p50"].as_f64().unwrap_or(0.0),
                        l["latency_us"]["p99"].as_f64().unwrap_or(0.0),
                        l["latency_us"]["p999"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect();
            Some(format!(
                "{:<12} {:>9} Mpps zero-loss ({} trials)  latency us p50/p99/p99.9 at {}",
                k.name(),
                z["mpps"].as_f64().map_or("none".into(), |m| format!("{m:.2}")),
                z["steps"].as_array().map_or(0, Vec::len),
                lat.join("  ")
            ))
        })
        .collect();
    if !zl.is_empty() {
        println!(
            "\nZero-loss rates (RFC 2544, {} s trials, {}% resolution):",
            a.zero_loss_seconds,
            a.zero_loss_resolution * 100.0
        );
        for l in zl {
            println!("{l}");
        }
    }
    Ok(serde_json::json!({
        "scenario": a.scenario, "tunnel_direction": a.scenario.tunnel().then_some(a.tunnel_direction), "remotes": a.scenario.tunnel().then_some(a.remotes),
        "transport": a.transport,
        "queues": queues,
        "frame_size": a.frame_size,
        "flows": a.flows[0],
        "seconds": a.seconds,
        "rounds": a.rounds,
        "gen_core": a.gen_core,
        "fwd_core": a.fwd_core,
        "dpdk": Eal::version(),
        "latency_rate_mpps": a.latency_rate,
        "rate_mpps": a.rate,
        "storm_flows": a.storm,
        "zero_loss_seconds": a.zero_loss.then_some(a.zero_loss_seconds),
        "results": results,
    }))
}

/// The warm-up before each measured trial: `--warmup-seconds`, or
/// [`crate::rig::default_warmup`].
fn warmup(a: &CompareArgs) -> f64 {
    a.warmup_seconds.unwrap_or_else(|| crate::rig::default_warmup(a.flows[0]))
}

/// Loads whose latency a zero-loss search measures, percent of its rate.
const LATENCY_LOADS: [u32; 3] = [50, 90, 99];

/// The zero-loss search of one forwarder (a fresh start, warmed up), and
/// the latency at 50, 90 and 99% of the rate found, as JSON.
fn zero_loss(
    kind: Kind,
    s: &Setup,
    eal: &'static Eal,
    pool: &Arc<Mempool>,
    a: &CompareArgs,
    uniq: usize,
    upper: f64,
) -> Result<serde_json::Value> {
    let rig = Rig::start(kind, s, eal, pool, uniq)?;
    let spec = |secs: f64, rate: Option<f64>| TrafficSpec {
        frame_size: a.frame_size,
        flows: a.flows[0],
        rate_mpps: rate,
        duration: Duration::from_secs_f64(secs),
        latency_sample: 16,
        tunnel: s.scenario.encap(),
        send: a.tunnel_direction.send(),
        remotes: s.remotes,
    };
    rig.trial(spec(warmup(a), None))?;
    let found = search(upper, a.zero_loss_resolution, 16, |rate| -> Result<Step> {
        let r = rig.trial(spec(a.zero_loss_seconds, Some(rate)))?;
        let st = Step {
            rate_mpps: rate,
            offered_mpps: r.offered_mpps_each_way(),
            offered: r.offered[0] + r.offered[1],
            lost: r.lost(),
        };
        println!(
            "  zero-loss {:<9} {:>7.3} Mpps asked, {:>7.3} offered: {} lost of {}",
            kind.name(),
            rate,
            st.offered_mpps,
            st.lost,
            st.offered
        );
        Ok(st)
    })?;
    let mut latency = Vec::new();
    if let Some(z) = found.zero_loss_mpps {
        for pct in LATENCY_LOADS {
            let r = rig.trial(spec(a.zero_loss_seconds, Some(z * f64::from(pct) / 100.0)))?;
            let h = &r.latency;
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            latency.push(serde_json::json!({"load_pct": pct, "offered_mpps": r.offered_mpps_each_way(),
                "lost": r.lost(), "latency_us": {"p50": us(0.5), "p99": us(0.99), "p999": us(0.999), "max": h.max() as f64 / 1000.0}}));
        }
    }
    rig.stop()?;
    Ok(serde_json::json!({"mpps": found.zero_loss_mpps, "resolution": a.zero_loss_resolution,
                          "trial_seconds": a.zero_loss_seconds, "steps": found.steps, "latency": latency}))
}

/// Writes the JSON (one document, or `{"sweep": [...]}` for several flow
/// counts) and the charts beside it.
fn write(a: &CompareArgs, docs: Vec<serde_json::Value>) -> Result<()> {
    let Some(path) = &a.json else { return Ok(()) };
    let path = std::path::Path::new(path);
    let doc = if docs.len() == 1 { docs[0].clone() } else { serde_json::json!({ "sweep": docs }) };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)?;
    std::fs::rename(&tmp, path)?;
    println!("wrote {}", path.display());
    let mut charts = Vec::new();
    for d in &docs {
        let json = if docs.len() == 1 {
            path.to_path_buf()
        } else {
            path.with_file_name(format!(
                "{}-{}flows.json",
                path.file_stem().unwrap_or_default().to_string_lossy(),
                d["flows"]
            ))
        };
        charts.extend(crate::plot::latency(d, &json)?);
    }
    if docs.len() > 1 {
        charts.extend(crate::plot::versus_flows(&docs, &path.with_extension(""))?);
    }
    for c in charts {
        println!("wrote {}", c.display());
    }
    Ok(())
}
