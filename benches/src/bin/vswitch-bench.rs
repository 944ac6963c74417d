//! `vswitch-bench`: the loop benchmark. `compare` runs our forwarder,
//! dpdk-testpmd io-forward and OVS-DPDK in turn (alternating, several
//! rounds) against the same generator, transport and cores, and prints a
//! side-by-side table with ratios to testpmd; `--json` writes the results
//! and SVG charts; `soak` runs traffic for minutes under churn; `plot`
//! draws charts from kept results.

use anyhow::{Context, Result};
use benches::compare::{median, minmax, CompareArgs};
use benches::forwarders::{describe, Kind, Running, Scenario, Setup, Transport};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Packet-rate and latency benchmarks against dpdk-testpmd and OVS-DPDK")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run forwarders side by side and print a table with ratios
    /// (`--zero-loss`: and each one's RFC 2544 zero-loss rate).
    Compare(CompareArgs),
    /// Traffic at 90% of the zero-loss rate for minutes while flows churn,
    /// ports come and go and the controller reconnects: loss, latency and
    /// vswitchd's memory each minute.
    Soak(benches::soak::SoakArgs),
    /// Charts of kept results: Mpps and cycles per packet against flows,
    /// from `compare` JSON files at several flow counts.
    Plot(PlotArgs),
    /// OpenFlow flow-mods per second: one storm of distinct flow-mods and
    /// a barrier, into vswitchd and OVS-DPDK in turn.
    FlowMod(FlowModArgs),
    /// Containers attached per second and ADD/DEL latency through our CNI
    /// plugin against the reference bridge + host-local plugins.
    Attach(benches::attach::AttachArgs),
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
        remotes: 1,
        qos: None,
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
struct PlotArgs {
    /// Charts go to `STEM-mpps.svg` and `STEM-cycles.svg`.
    #[arg(long)]
    out: std::path::PathBuf,
    /// `compare` results (one scenario, one flow count each, or sweeps).
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
}

fn plot(p: &PlotArgs) -> Result<()> {
    let mut docs = Vec::new();
    for f in &p.files {
        let d: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f).with_context(|| format!("{}", f.display()))?)
                .with_context(|| format!("{}: not JSON", f.display()))?;
        match d["sweep"].as_array() {
            Some(s) => docs.extend(s.iter().cloned()),
            None => docs.push(d),
        }
    }
    for c in benches::plot::versus_flows(&docs, &p.out)? {
        println!("wrote {}", c.display());
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Compare(a) => benches::compare::run(a),
        Cmd::FlowMod(f) => flow_mod(&f),
        Cmd::Attach(a) => benches::attach::run(&a),
        Cmd::Soak(s) => benches::soak::run(&s),
        Cmd::Plot(p) => plot(&p),
    }
}
