//! `pmd-fwd`: the minimal port-to-port forwarder on the `pmd` crate.
//!
//! Ports are given in pairs; port 2k forwards to 2k+1 and back. One PMD
//! thread per `--core`. Runs until SIGINT/SIGTERM (or `--seconds`), printing
//! port and PMD counters every `--stats-interval` seconds and at exit, and
//! writes them as JSON with `--stats-json` (the benchmark reads cycles per
//! packet from there).

use anyhow::{bail, Context, Result};
use clap::Parser;
use pmd::forward::{P2p, Validation};
use pmd::pmd::{PmdConfig, PmdSet};
use pmd::{Eal, EalConfig, Memory, Mempool, Port, PortConfig, PortSource};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(version, about = "Minimal DPDK port-to-port forwarder (the foundation's stand-in for the switch)")]
struct Args {
    /// Port devargs (vdev like net_memif0,role=server,socket=/tmp/a.sock or
    /// a PCI address); give them in pairs.
    #[arg(long = "port", required = true)]
    ports: Vec<String>,
    /// PMD core(s), one thread each.
    #[arg(long = "core", default_value = "0")]
    cores: Vec<usize>,
    /// Cores the control thread may float over (default: all).
    #[arg(long, value_delimiter = ',')]
    eal_cores: Option<Vec<usize>>,
    /// Memory: no-huge, hugepages or in-memory.
    #[arg(long, default_value = "hugepages")]
    memory: String,
    /// Megabytes of memory.
    #[arg(long, default_value_t = 512)]
    mb: u32,
    /// EAL file prefix.
    #[arg(long, default_value = "pmdfwd")]
    file_prefix: String,
    /// Rx queues per port.
    #[arg(long, default_value_t = 1)]
    rxq: u16,
    /// Tx queues per port (default: one per PMD core; at least that many).
    #[arg(long)]
    txq: Option<u16>,
    /// Frame checks before forwarding: none (like testpmd io), ethernet, full.
    #[arg(long, default_value = "ethernet")]
    validate: String,
    /// MTU for every port (mbufs are sized to fit).
    #[arg(long)]
    mtu: Option<u16>,
    /// Print counters every N seconds (0: only at exit).
    #[arg(long, default_value_t = 0)]
    stats_interval: u64,
    /// Stop after N seconds.
    #[arg(long)]
    seconds: Option<u64>,
    /// Write final counters as JSON here.
    #[arg(long)]
    stats_json: Option<String>,
    /// Further EAL arguments (repeatable).
    #[arg(long = "eal-arg", allow_hyphen_values = true)]
    eal_args: Vec<String>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.ports.len() % 2 != 0 {
        bail!("--port: give ports in pairs (2k forwards to 2k+1); got {}", a.ports.len());
    }
    let validation = match a.validate.as_str() {
        "none" => Validation::None,
        "ethernet" => Validation::Ethernet,
        "full" => Validation::Full,
        v => bail!("--validate: `{v}` is not none, ethernet or full"),
    };
    let memory = match a.memory.as_str() {
        "no-huge" => Memory::NoHuge { mb: a.mb },
        "hugepages" => Memory::Hugepages { socket_mem_mb: Some(a.mb) },
        "in-memory" => Memory::InMemory { socket_mem_mb: Some(a.mb) },
        m => bail!("--memory: `{m}` is not no-huge, hugepages or in-memory"),
    };
    let all: Vec<usize> = (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect();
    let eal_cfg = EalConfig {
        cores: a.eal_cores.clone().unwrap_or(all),
        memory,
        file_prefix: a.file_prefix.clone(),
        extra_args: a.eal_args.clone(),
        ..EalConfig::default()
    };
    let eal = Eal::init(&eal_cfg)?;
    // SAFETY: installs async-signal-safe handlers that only store an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    let data_room = match a.mtu {
        Some(mtu) => u16::try_from(usize::from(mtu) + 14 + 8 + 4 + pmd::mempool::HEADROOM)
            .context("--mtu too large")?
            .max(pmd::mempool::DEFAULT_DATA_ROOM),
        None => pmd::mempool::DEFAULT_DATA_ROOM,
    };
    let pool = Arc::new(Mempool::new(eal, "fwd", 32767, 256, data_room, None)?);
    let n_pmd = u16::try_from(a.cores.len()).context("too many cores")?;
    let mut ports = Vec::new();
    for (i, dev) in a.ports.iter().enumerate() {
        let source = if dev.starts_with("net_") { PortSource::Vdev(dev.clone()) } else { PortSource::Pci(dev.clone()) };
        let mut cfg = PortConfig::new(&format!("p{i}"), source);
        cfg.n_rxq = a.rxq;
        cfg.n_txq = a.txq.unwrap_or(n_pmd).max(n_pmd);
        cfg.mtu = a.mtu;
        ports.push(Arc::new(Port::open(eal, &cfg, pool.clone()).with_context(|| format!("opening port {i} ({dev})"))?));
    }
    let peer: Vec<usize> = (0..ports.len()).map(|i| i ^ 1).collect();
    let set = PmdSet::start(
        &PmdConfig { cores: a.cores.clone(), rebalance_interval: Some(Duration::from_secs(10)) },
        ports.clone(),
        |_| P2p::new(peer.clone(), validation),
    )?;
    eprintln!("pmd-fwd: forwarding {} ports on core(s) {:?} ({:?} validation)", ports.len(), a.cores, validation);
    let start = Instant::now();
    let mut last = Instant::now();
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if a.seconds.is_some_and(|s| start.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        if a.stats_interval > 0 && last.elapsed() >= Duration::from_secs(a.stats_interval) {
            print_stats(&ports, &set);
            last = Instant::now();
        }
    }
    let report = report_json(&ports, &set, start.elapsed());
    set.stop();
    print_stats_final(&report);
    if let Some(path) = &a.stats_json {
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&report)?)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(())
}

fn report_json(ports: &[Arc<Port>], set: &PmdSet, elapsed: Duration) -> serde_json::Value {
    let ports: Vec<_> = ports
        .iter()
        .map(|p| {
            let s = p.stats();
            let l = p.link();
            serde_json::json!({
                "name": p.name(), "device": p.device(), "driver": p.driver(), "link_up": l.up, "mtu": p.mtu(),
                "rx_packets": s.rx_packets, "tx_packets": s.tx_packets, "rx_bytes": s.rx_bytes, "tx_bytes": s.tx_bytes,
                "rx_missed": s.rx_missed, "rx_errors": s.rx_errors, "tx_errors": s.tx_errors, "rx_nombuf": s.rx_nombuf,
                "rx_malformed": s.rx_malformed, "tx_dropped": s.tx_dropped,
            })
        })
        .collect();
    let pmds: Vec<_> = set
        .stats()
        .iter()
        .map(|s| {
            serde_json::json!({
                "index": s.index, "core": s.core, "iterations": s.iterations, "busy_cycles": s.busy_cycles,
                "idle_cycles": s.idle_cycles, "packets": s.packets, "rx_batches": s.rx_batches,
                "busy_pct": s.busy_pct, "cycles_per_packet": s.cycles_per_packet, "packets_per_batch": s.packets_per_batch,
                "iteration_us": {"p50": s.iteration_us[0], "p99": s.iteration_us[1], "p999": s.iteration_us[2], "max": s.iteration_us[3]},
                "rxqs": s.rxqs,
            })
        })
        .collect();
    serde_json::json!({ "seconds": elapsed.as_secs_f64(), "tsc_hz": pmd::tsc_hz(), "ports": ports, "pmds": pmds })
}

fn print_stats(ports: &[Arc<Port>], set: &PmdSet) {
    print_stats_final(&report_json(ports, set, Duration::ZERO));
}

fn print_stats_final(r: &serde_json::Value) {
    println!(
        "{:<6} {:<5} {:>14} {:>14} {:>10} {:>12} {:>10}",
        "port", "link", "rx_packets", "tx_packets", "rx_missed", "rx_malformed", "tx_dropped"
    );
    for p in r["ports"].as_array().into_iter().flatten() {
        println!(
            "{:<6} {:<5} {:>14} {:>14} {:>10} {:>12} {:>10}",
            p["name"].as_str().unwrap_or(""),
            if p["link_up"].as_bool().unwrap_or(false) { "up" } else { "down" },
            p["rx_packets"].as_u64().unwrap_or(0),
            p["tx_packets"].as_u64().unwrap_or(0),
            p["rx_missed"].as_u64().unwrap_or(0),
            p["rx_malformed"].as_u64().unwrap_or(0),
            p["tx_dropped"].as_u64().unwrap_or(0)
        );
    }
    for s in r["pmds"].as_array().into_iter().flatten() {
        println!(
            "pmd{} core {}: busy {:.1}%  {:.1} cycles/pkt  {:.1} pkts/batch  iteration p50 {:.2} us p99 {:.2} us max {:.2} us  rxqs {}",
            s["index"], s["core"], s["busy_pct"].as_f64().unwrap_or(0.0), s["cycles_per_packet"].as_f64().unwrap_or(0.0),
            s["packets_per_batch"].as_f64().unwrap_or(0.0), s["iteration_us"]["p50"].as_f64().unwrap_or(0.0),
            s["iteration_us"]["p99"].as_f64().unwrap_or(0.0), s["iteration_us"]["max"].as_f64().unwrap_or(0.0), s["rxqs"]
        );
    }
}
