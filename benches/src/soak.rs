//! `vswitch-bench soak`: vswitchd under steady traffic for minutes while
//! everything an operator and a controller do goes on around it: flows
//! added and deleted in bulk (each pass on a new controller connection,
//! so the controller also goes and comes back), a port added and removed
//! every few seconds. Traffic runs at a share (90%) of the zero-loss rate
//! found first; each interval (a minute) reports the packets lost (and of
//! them, those the forwarder's ring refused), the latency percentiles,
//! vswitchd's resident memory and the generator's own longest pause, so
//! that a leak or a stall under churn shows, and a stall of the
//! generator's core is not taken for one of the switch.

use crate::forwarders::{describe, flow_mod_churn_with, Kind, Running, Scenario, Setup, Transport};
use crate::gen::TrafficSpec;
use crate::rfc2544::{search, Step};
use crate::rig::Rig;
use anyhow::{bail, Context, Result};
use pmd::Eal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `vswitch-bench soak` options.
#[derive(clap::Parser, Clone)]
pub struct SoakArgs {
    /// How long, in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Seconds per reported interval.
    #[arg(long, default_value_t = 60.0)]
    pub interval_seconds: f64,
    /// The OpenFlow scenario vswitchd runs (its table 1 churns).
    #[arg(long, value_enum, default_value = "of-3table")]
    pub scenario: Scenario,
    /// Flows per direction.
    #[arg(long, default_value_t = 1000)]
    pub flows: u32,
    /// Transport.
    #[arg(long, value_enum, default_value = "memif")]
    pub transport: Transport,
    /// Frame size with FCS.
    #[arg(long, default_value_t = 64)]
    pub frame_size: usize,
    /// Offered load as a share of the zero-loss rate found first.
    #[arg(long, default_value_t = 0.9)]
    pub load: f64,
    /// Offered Mpps per direction, instead of searching the zero-loss rate.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Flows added, then deleted, per churn pass (0: no flow churn).
    #[arg(long, default_value_t = 1000)]
    pub churn_flows: u32,
    /// Flow-mods per second the churn keeps to (0: as fast as the switch
    /// answers, a storm; on a 2-core host the storm's client and
    /// vswitchd's control thread share the generator's core).
    #[arg(long, default_value_t = 10_000.0)]
    pub churn_rate: f64,
    /// Seconds between a port's arrival and its removal (and the next; 0:
    /// no port churn).
    #[arg(long, default_value_t = 5.0)]
    pub port_every_seconds: f64,
    /// Core of the generator/sink.
    #[arg(long, default_value_t = 1)]
    pub gen_core: usize,
    /// Core of vswitchd's PMD thread.
    #[arg(long, default_value_t = 0)]
    pub fwd_core: usize,
    /// Write results as JSON here.
    #[arg(long)]
    pub json: Option<String>,
    /// Scratch directory.
    #[arg(long, default_value = "/tmp/vswitch-bench")]
    pub dir: String,
}

/// Resident memory of process `pid`, kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Adds and removes a port every `every` until `stop`: a null device, so
/// that the PMD threads' port table and the OpenFlow ports change under
/// traffic. Counts the ports that came and went.
fn port_churn(socket: &str, every: Duration, stop: &AtomicBool, done: &AtomicU64) -> Result<()> {
    let ctl = Running::tool_path("vswitchctl")?;
    let run = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new(&ctl).args(["--socket", socket]).args(args).output()?;
        if !out.status.success() {
            bail!("vswitchctl {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    let pause = |d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for n in 0u32.. {
        pause(every);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Device names are never reused within vswitchd's life.
        run(&["add-port", "br0", "soak", "type=dpdk", &format!("devargs=net_null{}", 100 + n)])?;
        pause(every);
        run(&["del-port", "soak"])?;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs the soak.
pub fn run(a: &SoakArgs) -> Result<()> {
    if !a.scenario.openflow() {
        bail!("--scenario: the soak churns OpenFlow flows: of-3table or upcall");
    }
    if a.minutes <= 0.0 || a.interval_seconds <= 0.0 || !(0.01..=1.0).contains(&a.load) {
        bail!("--minutes and --interval-seconds must be positive, --load a share from 0.01 to 1");
    }
    std::fs::create_dir_all(&a.dir)?;
    let setup = Setup {
        dir: a.dir.clone().into(),
        gen_core: a.gen_core,
        fwd_core: a.fwd_core,
        transport: a.transport,
        queues: match a.transport {
            Transport::Memif => 2,
            Transport::Vhost => 1,
        },
        scenario: a.scenario,
        macs: a.flows,
        megaflow_limit: None,
        baseline_vswitchd: None,
        remotes: 1,
        qos: None,
    };
    let (eal, pool) = crate::rig::generator(&[a.gen_core, a.fwd_core], "vsbench-soak")?;
    println!(
        "vswitch-bench soak: {} min, {:?} {} flows, {} B frames over {:?}, generator core {}, vswitchd core {} | {}",
        a.minutes,
        a.scenario,
        a.flows,
        a.frame_size,
        a.transport,
        a.gen_core,
        a.fwd_core,
        Eal::version()
    );
    let rig = Rig::start(Kind::Vswitch, &setup, eal, &pool, 1)?;
    let spec = |secs: f64, rate: Option<f64>| TrafficSpec {
        frame_size: a.frame_size,
        flows: a.flows,
        rate_mpps: rate,
        duration: Duration::from_secs_f64(secs),
        latency_sample: 16,
        tunnel: setup.scenario.encap(),
        send: [true, true],
        remotes: 1,
    };
    let full = rig.trial(spec(crate::rig::default_warmup(a.flows) + 1.0, None))?;
    let (rate, zero_loss) = match a.rate {
        Some(r) => (r, None),
        None => {
            let found = search(full.mpps_each_way() * 1.1, 0.02, 12, |rate| -> Result<Step> {
                let r = rig.trial(spec(2.0, Some(rate)))?;
                Ok(Step {
                    rate_mpps: rate,
                    offered_mpps: r.offered_mpps_each_way(),
                    offered: r.offered[0] + r.offered[1],
                    lost: r.lost(),
                })
            })?;
            let z = found.zero_loss_mpps.context("no zero-loss rate: every trial lost packets")?;
            (z * a.load, Some(z))
        }
    };
    println!(
        "  offered {rate:.3} Mpps per direction{}",
        zero_loss.map(|z| format!(" ({:.0}% of the zero-loss rate, {z:.3} Mpps)", a.load * 100.0)).unwrap_or_default()
    );
    let pid = rig.fwd.pid().context("vswitchd's pid")?;
    let target = rig.fwd.of_target.clone().context("vswitchd's OpenFlow target")?;
    let socket = rig.fwd.control_socket().context("vswitchd's control socket")?.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (mods, ports) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let churn =
        {
            let (stop, mods, n, rate) = (stop.clone(), mods.clone(), a.churn_flows, a.churn_rate);
            std::thread::spawn(move || {
                if n > 0 {
                    flow_mod_churn_with(&target, n, &stop, true, Some(rate), &mods)
                } else {
                    Ok(())
                }
            })
        };
    let porting = {
        let (stop, ports, every) = (stop.clone(), ports.clone(), a.port_every_seconds);
        std::thread::spawn(move || {
            if every > 0.0 {
                port_churn(&socket, Duration::from_secs_f64(every), &stop, &ports)
            } else {
                Ok(())
            }
        })
    };
    let intervals = (a.minutes * 60.0 / a.interval_seconds).ceil().max(1.0) as usize;
    let mut rows = Vec::new();
    let (mut lost_all, mut offered_all) = (0u64, 0u64);
    println!(
        "  {:>8} {:>10} {:>10} {:>10} {:>9} {:>28} {:>8} {:>8} {:>6} {:>10}",
        "interval",
        "offered",
        "lost",
        "refused",
        "Mpps",
        "latency us p50/p99/p99.9/max",
        "rss MB",
        "mods/s",
        "ports",
        "gen gap us"
    );
    let (mut mods_at, mut ports_at) = (0, 0);
    // A churn thread that ended before the stop failed: its error is
    // reported at the end.
    let failed = |h: &std::thread::JoinHandle<Result<()>>, on: bool| on && h.is_finished();
    for i in 0..intervals {
        let r = rig.trial(spec(a.interval_seconds, Some(rate)))?;
        let rss = rss_kb(pid).unwrap_or(0);
        let (m, p) = (mods.load(Ordering::Relaxed), ports.load(Ordering::Relaxed));
        let h = &r.latency;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let lat = [us(0.5), us(0.99), us(0.999), h.max() as f64 / 1000.0];
        let row = serde_json::json!({
            "interval": i + 1, "offered": r.offered[0] + r.offered[1], "lost": r.lost(),
            "refused": (r.offered[0] + r.offered[1]).saturating_sub(r.tx[0] + r.tx[1]),
            "mpps": r.mpps_each_way(), "latency_us": {"p50": lat[0], "p99": lat[1], "p999": lat[2], "max": lat[3]},
            "rss_kb": rss, "flow_mods_per_s": (m - mods_at) as f64 / a.interval_seconds, "ports_churned": p - ports_at,
            "generator_max_gap_us": r.max_gap_us,
        });
        println!(
            "  {:>8} {:>10} {:>10} {:>10} {:>9.3} {:>28} {:>8.1} {:>8.0} {:>6} {:>10.0}",
            i + 1,
            r.offered[0] + r.offered[1],
            r.lost(),
            (r.offered[0] + r.offered[1]).saturating_sub(r.tx[0] + r.tx[1]),
            r.mpps_each_way(),
            format!("{:.1}/{:.1}/{:.1}/{:.1}", lat[0], lat[1], lat[2], lat[3]),
            rss as f64 / 1024.0,
            (m - mods_at) as f64 / a.interval_seconds,
            p - ports_at,
            r.max_gap_us
        );
        (mods_at, ports_at) = (m, p);
        lost_all += r.lost();
        offered_all += r.offered[0] + r.offered[1];
        rows.push(row);
        if failed(&churn, a.churn_flows > 0) || failed(&porting, a.port_every_seconds > 0.0) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let churned = churn.join().map_err(|_| anyhow::anyhow!("flow churn panicked"))?;
    let ported = porting.join().map_err(|_| anyhow::anyhow!("port churn panicked"))?;
    rig.stop()?;
    churned.map_err(|e| anyhow::anyhow!("flow churn: {}", describe(&e)))?;
    ported.map_err(|e| anyhow::anyhow!("port churn: {}", describe(&e)))?;
    let rss: Vec<u64> = rows.iter().filter_map(|r| r["rss_kb"].as_u64()).collect();
    let growth = match (rss.first(), rss.last()) {
        (Some(&f), Some(&l)) if f > 0 => (l as f64 - f as f64) / f as f64 * 100.0,
        _ => 0.0,
    };
    println!(
        "  total: {lost_all} lost of {offered_all} offered; vswitchd RSS {:.1} MB -> {:.1} MB ({growth:+.1}%); {} flow-mods, {} ports added and removed",
        *rss.first().unwrap_or(&0) as f64 / 1024.0,
        *rss.last().unwrap_or(&0) as f64 / 1024.0,
        mods.load(Ordering::Relaxed),
        ports.load(Ordering::Relaxed)
    );
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "soak": {"minutes": a.minutes, "interval_seconds": a.interval_seconds, "scenario": a.scenario,
                     "flows": a.flows, "transport": a.transport, "frame_size": a.frame_size,
                     "zero_loss_mpps": zero_loss, "load": a.load, "rate_mpps": rate, "churn_flows": a.churn_flows,
                     "lost": lost_all, "offered": offered_all, "rss_growth_pct": growth,
                     "flow_mods": mods.load(Ordering::Relaxed), "ports_churned": ports.load(Ordering::Relaxed),
                     "dpdk": Eal::version(), "intervals": rows}
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        println!("wrote {path}");
    }
    Ok(())
}
