//! `vswitch-bench`: the loop benchmark. `compare` runs our forwarder,
//! dpdk-testpmd io-forward and OVS-DPDK in turn (alternating, several
//! rounds) against the same generator, transport and cores, and prints a
//! side-by-side table with ratios to testpmd; `--json` writes the results.

use anyhow::{bail, Context, Result};
use benches::forwarders::{describe, Kind, Running, Scenario, Setup, Transport};
use benches::gen::{run_trial, TrafficSpec, TrialResult};
use clap::{Parser, Subcommand};
use pmd::{Eal, EalConfig, Memory, Mempool, Port, PortConfig, PortSource};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(version, about = "Packet-rate and latency benchmarks against dpdk-testpmd and OVS-DPDK")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run forwarders side by side and print a table with ratios.
    Compare(CompareArgs),
    /// OpenFlow flow-mods per second: one storm of distinct flow-mods and
    /// a barrier, into vswitchd and OVS-DPDK in turn.
    FlowMod(FlowModArgs),
}

#[derive(Parser, Clone)]
struct FlowModArgs {
    /// Flow-mods per storm.
    #[arg(long, default_value_t = 100_000)]
    flows: u32,
    /// Rounds; the switches alternate.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Core every switch's PMD thread is pinned to.
    #[arg(long, default_value_t = 0)]
    fwd_core: usize,
    /// Scratch directory.
    #[arg(long, default_value = "/tmp/vswitch-bench")]
    dir: String,
    /// Write results as JSON here.
    #[arg(long)]
    json: Option<String>,
}

fn flow_mod(a: &FlowModArgs) -> Result<()> {
    std::fs::create_dir_all(&a.dir)?;
    let setup = Setup {
        dir: a.dir.clone().into(),
        gen_core: usize::from(a.fwd_core == 0),
        fwd_core: a.fwd_core,
        transport: Transport::Memif,
        queues: 2,
        scenario: Scenario::Of3table,
        macs: 1,
        megaflow_limit: None,
        baseline_vswitchd: None,
    };
    println!(
        "vswitch-bench flow-mod: {} distinct flow-mods then one barrier, {} rounds, PMD core {}",
        a.flows, a.rounds, a.fwd_core
    );
    let kinds = [Kind::Vswitch, Kind::OvsDpdk];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for round in 0..a.rounds {
        for (i, kind) in kinds.iter().enumerate() {
            let fwd = Running::start(*kind, &setup)?;
            let target = fwd.of_target.clone().context("no OpenFlow target")?;
            let res = benches::forwarders::flow_mod_storm(&target, a.flows);
            let _ = fwd.stop();
            match res {
                Ok(secs) => {
                    let r = f64::from(a.flows) / secs;
                    println!("  round {} {:<9} {:>10.0} flow-mods/s ({secs:.2} s)", round + 1, kind.name(), r);
                    rates[i].push(r);
                }
                Err(e) => println!("  round {} {:<9} failed: {}", round + 1, kind.name(), describe(&e)),
            }
        }
    }
    let med: Vec<Option<f64>> = rates.iter().map(|r| median(r)).collect();
    for (i, kind) in kinds.iter().enumerate() {
        let (lo, hi) = minmax(&rates[i]);
        println!(
            "{:<9} {:>10.0} flow-mods/s median (min {:.0}, max {:.0}){}",
            kind.name(),
            med[i].unwrap_or(0.0),
            lo,
            hi,
            match (med[i], med[1]) {
                (Some(x), Some(o)) if i == 0 => format!("  {:.2}x OVS-DPDK", x / o),
                _ => String::new(),
            }
        );
    }
    if let Some(path) = &a.json {
        let doc = serde_json::json!({"scenario": "flow-mod", "flows": a.flows, "rounds": a.rounds,
            "results": kinds.iter().enumerate().map(|(i, k)| serde_json::json!({"forwarder": k.name(), "flow_mods_per_s": med[i], "samples": rates[i]})).collect::<Vec<_>>()});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}

#[derive(Parser, Clone)]
struct CompareArgs {
    /// Scenario: p2p (in_port -> output between two ports) or l2 (MAC
    /// learning switch: vswitchd against OVS-DPDK's NORMAL action).
    #[arg(long, value_enum, default_value = "p2p")]
    scenario: Scenario,
    /// Source MACs per direction for the l2 scenario (sets --flows).
    #[arg(long)]
    macs: Option<u32>,
    /// Transport between generator and forwarder.
    #[arg(long, value_enum, default_value = "memif")]
    transport: Transport,
    /// Frame size in bytes (with FCS), 64..=1518.
    #[arg(long, default_value_t = 64)]
    frame_size: usize,
    /// Seconds per trial.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds; forwarders alternate within each (A B C A B C ...).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Distinct flows: source MAC, IP and UDP port vary together.
    #[arg(long, default_value_t = 1)]
    flows: u32,
    /// Forwarders to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "vswitch,testpmd,ovs-dpdk")]
    forwarders: Vec<Kind>,
    /// Core of the generator/sink.
    #[arg(long, default_value_t = 1)]
    gen_core: usize,
    /// Core every forwarder is pinned to.
    #[arg(long, default_value_t = 0)]
    fwd_core: usize,
    /// Offered load per direction for the latency trial, in Mpps.
    #[arg(long, default_value_t = 0.5)]
    latency_rate: f64,
    /// Seconds of the latency trial (0: none; latency then comes from the
    /// throughput trial, at saturation).
    #[arg(long, default_value_t = 2)]
    latency_seconds: u64,
    /// Rx/tx queue pairs per port for every forwarder and the generator
    /// (default: 2 on memif, which OVS-DPDK needs there; 1 on vhost).
    #[arg(long)]
    queues: Option<u16>,
    /// Offered load per direction for the measured trial, in Mpps (none:
    /// as fast as the forwarder takes). With `--storm`, a rate below the
    /// forwarder's zero-loss rate shows whether flow table changes cost
    /// packets.
    #[arg(long)]
    rate: Option<f64>,
    /// OpenFlow scenarios: during the measured trial, a controller adds
    /// this many flows to table 1 (matching no generated packet; each add
    /// changes the tables the datapath uses), then deletes them one by one
    /// (strict), each pass ended by a barrier, again and again until the
    /// trial ends.
    #[arg(long, default_value_t = 0)]
    storm: u32,
    /// Seconds of traffic before each measured trial (caches filled, MACs
    /// learnt); by default 0.5 s and 4 s more per million flows, so that
    /// every flow is seen before the trial.
    #[arg(long)]
    warmup_seconds: Option<f64>,
    /// OpenFlow scenarios: vswitchd's `[pmd] megaflow_limit` (megaflows
    /// per PMD thread; its default, "auto", when not given: the caches
    /// grow to the traffic). OVS-DPDK's is fixed (65,536 per PMD thread).
    #[arg(long)]
    megaflow_limit: Option<u32>,
    /// Another vswitchd build to run as the forwarder `vswitch-base`
    /// (added to `--forwarders` when not named there): two builds side by
    /// side in one run.
    #[arg(long)]
    baseline_vswitchd: Option<std::path::PathBuf>,
    /// Write results as JSON here.
    #[arg(long)]
    json: Option<String>,
    /// Scratch directory for sockets and logs.
    #[arg(long, default_value = "/tmp/vswitch-bench")]
    dir: String,
}

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
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    Some(if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 })
}

fn minmax(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)))
}

fn main() -> Result<()> {
    let mut a = match Cli::parse().cmd {
        Cmd::Compare(a) => a,
        Cmd::FlowMod(f) => return flow_mod(&f),
    };
    if let Some(m) = a.macs {
        if a.scenario != Scenario::L2 {
            bail!("--macs is for --scenario l2 (p2p takes --flows)");
        }
        a.flows = m.max(1);
    }
    if !(64..=1518).contains(&a.frame_size) {
        bail!("--frame-size: {} is outside 64..=1518", a.frame_size);
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
    let warmup = a.warmup_seconds.unwrap_or(0.5 + f64::from(a.flows) * 4e-6);
    if !(0.0..=600.0).contains(&warmup) {
        bail!("--warmup-seconds: {warmup} is outside 0..=600");
    }
    a.warmup_seconds = Some(warmup);
    let setup = Setup {
        dir: a.dir.clone().into(),
        gen_core: a.gen_core,
        fwd_core: a.fwd_core,
        transport: a.transport,
        queues,
        scenario: a.scenario,
        macs: a.flows,
        megaflow_limit: a.megaflow_limit,
        baseline_vswitchd: a.baseline_vswitchd.clone(),
    };
    let eal = Eal::init(&EalConfig {
        cores: vec![a.gen_core, a.fwd_core],
        memory: Memory::Hugepages { socket_mem_mb: Some(1024) },
        file_prefix: "vsbench-gen".into(),
        // vhost-user needs the generator's memory shareable by fd.
        extra_args: vec!["--single-file-segments".into()],
        ..EalConfig::default()
    })?;
    let pool = Arc::new(Mempool::new(eal, "gen", 65535, 256, pmd::mempool::DEFAULT_DATA_ROOM, None)?);
    println!(
        "vswitch-bench compare: scenario {:?} transport {:?} ({} queue pairs per port) frame {} B flows {} | generator core {} forwarder core {} | {} | {} rounds x {} s",
        a.scenario, a.transport, queues, a.frame_size, a.flows, a.gen_core, a.fwd_core, Eal::version(), a.rounds, a.seconds
    );
    let mut samples: Vec<Samples> = vec![Samples::default(); a.forwarders.len()];
    let mut uniq = 0;
    for round in 0..a.rounds {
        for (fi, &kind) in a.forwarders.iter().enumerate() {
            uniq += 1;
            let want_latency = a.latency_seconds > 0;
            match one_trial(kind, &setup, eal, &pool, &a, uniq, want_latency) {
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
                            benches::forwarders::STAGES
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
    report(&a, queues, &samples)
}

type TrialOut =
    (TrialResult, Option<hdrhistogram::Histogram<u64>>, Option<f64>, Option<benches::forwarders::OfStats>, Option<f64>);

fn one_trial(
    kind: Kind,
    s: &Setup,
    eal: &'static Eal,
    pool: &Arc<Mempool>,
    a: &CompareArgs,
    uniq: usize,
    latency: bool,
) -> Result<TrialOut> {
    let fwd = Running::start(kind, s)?;
    let q = s.queues;
    // Links come up within a second or two; a connection that failed at a
    // bad moment is retried with fresh generator ports (new device names).
    // A memif client connects once, in dev_start, and a refused connect
    // fails the open; a link can also stay down after a bad moment. Either
    // way: fresh generator ports (new device names), up to three times.
    let mut ports = Vec::new();
    for attempt in 0..3 {
        ports.clear();
        let opened: Result<()> = (0..2).try_for_each(|i| {
            let mut cfg =
                PortConfig::new(&format!("gen{i}"), PortSource::Vdev(s.gen_devargs(i, uniq * 4 + attempt, q)));
            cfg.n_rxq = q;
            cfg.n_txq = q;
            ports.push(Arc::new(Port::open(eal, &cfg, pool.clone()).with_context(|| format!("generator port {i}"))?));
            Ok(())
        });
        let up = opened.is_ok() && {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ports.iter().all(|p| p.link().up) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            ports.iter().all(|p| p.link().up)
        };
        if up {
            break;
        }
        let why = match opened {
            Err(e) => format!("{e:#}"),
            Ok(()) => "links not up after 10 s".to_string(),
        };
        if attempt == 2 {
            bail!("cannot connect to {} in 3 tries ({why}); its log:\n{}", kind.name(), fwd.log_tail());
        }
        eprintln!("{}: {why}; reconnecting", kind.name());
        std::thread::sleep(Duration::from_secs(1));
    }
    let ports: [Arc<Port>; 2] = [ports[0].clone(), ports[1].clone()];
    let spec = |secs: f64, rate: Option<f64>| TrafficSpec {
        frame_size: a.frame_size,
        flows: a.flows,
        rate_mpps: rate,
        duration: Duration::from_secs_f64(secs),
        latency_sample: 16,
    };
    let gen_core = s.gen_core;
    let run_on_gen_core = |spec: TrafficSpec| -> Result<TrialResult> {
        let ports = ports.clone();
        let pool = pool.clone();
        std::thread::spawn(move || {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: gen_core }) {
                bail!("cannot pin the generator to core {gen_core}");
            }
            // SAFETY: registers this thread with EAL for mempool caches;
            // unregistered below.
            if unsafe { dpdk_sys::rte_thread_register() } != 0 {
                bail!("rte_thread_register failed");
            }
            let r = run_trial(&ports, &pool, &spec);
            // SAFETY: this thread registered itself above.
            unsafe { dpdk_sys::rte_thread_unregister() };
            Ok(r)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("generator thread panicked"))?
    };
    // Warm up (caches, learning), then the measured trial.
    run_on_gen_core(spec(a.warmup_seconds.unwrap_or(0.5), None))?;
    fwd.clear_counters();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = match (&fwd.of_target, a.storm) {
        (Some(target), n) if n > 0 => {
            let (target, stop) = (target.clone(), stop.clone());
            Some(std::thread::spawn(move || benches::forwarders::flow_mod_churn(&target, n, &stop)))
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
    // Stop the traffic side first: DPDK 22.11's memif can crash when its
    // peer disconnects mid-traffic.
    drop(ports);
    let cpp = fwd.stop()?.or(ovs_cpp);
    if res.rx[0] + res.rx[1] == 0 {
        bail!("no packet came back");
    }
    Ok((res, lat, cpp, stages, storm))
}

fn report(a: &CompareArgs, queues: u16, samples: &[Samples]) -> Result<()> {
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
            let stages: serde_json::Map<String, serde_json::Value> = benches::forwarders::STAGES
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
        if !s.errors.is_empty() {
            r["round_errors"] = serde_json::json!(s.errors);
        }
        results.push(r);
    }
    println!(
        "\nMpps: received per direction (median of rounds). cycles/pkt: as each forwarder counts its own busy cycles\n(ours: whole iterations that received packets, empty polls and tx flush included; testpmd: only polls that\nreceived; OVS: its PMD processing cycles). Latency: all rounds' trials at {} Mpps offered per direction, merged.",
        a.latency_rate
    );
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "scenario": a.scenario,
            "transport": a.transport,
            "queues": queues,
            "frame_size": a.frame_size,
            "flows": a.flows,
            "seconds": a.seconds,
            "rounds": a.rounds,
            "gen_core": a.gen_core,
            "fwd_core": a.fwd_core,
            "dpdk": Eal::version(),
            "latency_rate_mpps": a.latency_rate,
            "rate_mpps": a.rate,
            "storm_flows": a.storm,
            "results": results,
        });
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)?;
        std::fs::rename(&tmp, path)?;
        println!("wrote {path}");
    }
    Ok(())
}
