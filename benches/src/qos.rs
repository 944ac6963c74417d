//! The qos scenario: the of-3table flows with a `set_queue` per flow,
//! through vswitchd with both ports shaped (`vswitch`: `--classes`
//! classes, each guaranteed an equal share of the port's rate, borrowing
//! to all of it) or unshaped (`vswitch-unshaped`, same flows), OVS-DPDK
//! with the same flows (with `--qos-rate`: an egress-policer at that rate
//! on both ports, policing only: OVS-DPDK has no shaper) and testpmd. With
//! `--qos-rate`, the rate each one delivers against the configured one, and
//! Linux's HTB on a veth pair at the same rate as the kernel's anchor
//! (the generator's af_packet ports on either end, each end's egress
//! shaped).

use crate::forwarders::Setup;
use crate::gen::{TrafficSpec, TrialResult};
use anyhow::{bail, Context, Result};
use pmd::{Eal, Mempool, Port, PortConfig, PortSource};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The scheduler of the qos scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QosBench {
    /// Classes per port.
    pub classes: u32,
    /// Classes that get traffic (the others idle).
    pub active: u32,
    /// The ports' rate, bits/s (the default, 100 Gbit/s, never binds:
    /// the scheduler's cost is what is measured).
    pub rate: u64,
}

/// The rate of a scheduler that is not to bind.
pub const UNBOUND: u64 = 100_000_000_000;

/// The flows: of-3table's, with `set_queue:(f % active)` instead of
/// dec_ttl for flow f of each direction.
pub fn flows(flows: u32, q: &QosBench) -> String {
    crate::flows::of_3table_flows_with(flows, |f| format!("set_queue:{},", f % q.active.max(1)))
}

/// A port's `[bridge.port.shaper]` in vswitchd's configuration: the rate,
/// and `classes` classes with an equal guarantee each, ceiling the rate.
pub fn shaper_toml(q: &QosBench) -> String {
    let mut t = format!("[bridge.port.shaper]\nrate = {}\n", q.rate);
    let each = q.rate / u64::from(q.classes.max(1));
    for c in 0..q.classes {
        t.push_str(&format!("[[bridge.port.shaper.class]]\nid = {c}\nrate = {each}\n"));
    }
    t
}

/// OVS-DPDK's egress-policer on port `port` at `q.rate` (bytes per second
/// and a burst of 1 ms, at least two frames), as `ovs-vsctl` arguments.
pub fn ovs_policer_args(port: &str, q: &QosBench) -> Vec<String> {
    let cir = q.rate / 8;
    let cbs = (cir / 1000).max(3028);
    vec![
        "set".into(),
        "port".into(),
        port.into(),
        "qos=@q".into(),
        "--".into(),
        "--id=@q".into(),
        "create".into(),
        "qos".into(),
        "type=egress-policer".into(),
        format!("other-config:cir={cir}"),
        format!("other-config:cbs={cbs}"),
    ]
}

/// The bits per second a trial delivered per direction, counting frames
/// as the shapers do (from the Ethernet header, no FCS).
pub fn delivered_bits(r: &TrialResult, frame_size: usize) -> f64 {
    r.mpps_each_way() * 1e6 * (frame_size - 4) as f64 * 8.0
}

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("{args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A veth pair with HTB at a rate on each end's egress; removed on drop.
struct HtbPair {
    ends: [String; 2],
}

impl HtbPair {
    fn new(rate: u64) -> Result<HtbPair> {
        let ends = ["vsbq0".to_string(), "vsbq1".to_string()];
        let _ = Command::new("ip").args(["link", "del", &ends[0]]).output();
        sh(&["ip", "link", "add", &ends[0], "type", "veth", "peer", "name", &ends[1]])?;
        let pair = HtbPair { ends };
        // 1 ms of the rate as burst, as vswitchd's default.
        let burst = format!("{}b", (rate / 8 / 1000).max(3028));
        for e in &pair.ends {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{e}/disable_ipv6"), "1");
            sh(&["ip", "link", "set", e, "up"])?;
            sh(&["tc", "qdisc", "replace", "dev", e, "root", "handle", "1:", "htb", "default", "1"])?;
            let r = format!("{rate}bit");
            let class = ["tc", "class", "add", "dev", e, "parent", "1:", "classid", "1:1", "htb"];
            let mut args = class.to_vec();
            args.extend(["rate", &r, "ceil", &r, "burst", &burst, "cburst", &burst]);
            sh(&args)?;
        }
        Ok(pair)
    }
}

impl Drop for HtbPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.ends[0]]).output();
    }
}

/// Linux HTB on a veth pair at `q.rate`: the generator sends on af_packet
/// ports at both ends, each end's egress shaped; the trial's result.
pub fn linux_htb_trial(
    eal: &'static Eal,
    pool: &Arc<Mempool>,
    q: &QosBench,
    spec: TrafficSpec,
    gen_core: usize,
    uniq: usize,
) -> Result<TrialResult> {
    let pair = HtbPair::new(q.rate)?;
    let mut ports = Vec::new();
    for (i, e) in pair.ends.iter().enumerate() {
        let cfg = PortConfig::new(
            &format!("htb{i}"),
            PortSource::Vdev(format!("net_af_packet{},iface={e},qpairs=1,qdisc_bypass=0", 200 + uniq * 2 + i)),
        );
        ports.push(Arc::new(Port::open(eal, &cfg, pool.clone()).with_context(|| format!("af_packet on {e}"))?));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ports.iter().all(|p| p.link().up) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ports = [ports[0].clone(), ports[1].clone()];
    let pool = pool.clone();
    let warm = TrafficSpec { duration: Duration::from_secs_f64(0.5), ..spec };
    let r = std::thread::spawn(move || {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: gen_core }) {
            bail!("cannot pin the generator to core {gen_core}");
        }
        // SAFETY: registers this thread with EAL for mempool caches;
        // unregistered below.
        if unsafe { dpdk_sys::rte_thread_register() } != 0 {
            bail!("rte_thread_register failed");
        }
        let _ = crate::gen::run_trial(&ports, &pool, &warm);
        let r = crate::gen::run_trial(&ports, &pool, &spec);
        // SAFETY: this thread registered itself above.
        unsafe { dpdk_sys::rte_thread_unregister() };
        Ok(r)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("generator thread panicked"))??;
    drop(pair);
    Ok(r)
}

/// The setup's scheduler, or an error naming the flag.
pub fn of(s: &Setup) -> Result<&QosBench> {
    s.qos.as_ref().context("the qos scenario needs its settings")
}
