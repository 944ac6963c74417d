//! One forwarder under test with the generator connected to it: the
//! forwarder started on its core, the generator's two ports opened and up
//! (retried with fresh device names when a connection fails at a bad
//! moment), trials run on the generator's core, and a stop that closes
//! the traffic side first.

use crate::forwarders::{Kind, Running, Setup};
use crate::gen::{run_trial, TrafficSpec, TrialResult};
use anyhow::{bail, Context, Result};
use pmd::{Eal, Mempool, Port, PortConfig, PortSource};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default warm-up before a measured trial: 0.5 s, and 20 s more per
/// million flows per direction, so that every flow's first packet (an
/// upcall, in OpenFlow scenarios) is seen before the trial.
pub fn default_warmup(flows: u32) -> f64 {
    0.5 + f64::from(flows) * 2e-5
}

/// The generator's EAL (hugepages, shareable by fd for vhost-user) on
/// `cores`, and its mbuf pool.
pub fn generator(cores: &[usize], file_prefix: &str) -> Result<(&'static Eal, Arc<Mempool>)> {
    let eal = Eal::init(&pmd::EalConfig {
        cores: cores.to_vec(),
        memory: pmd::Memory::Hugepages { socket_mem_mb: Some(1024) },
        file_prefix: file_prefix.into(),
        // vhost-user needs the generator's memory shareable by fd.
        extra_args: vec!["--single-file-segments".into()],
        ..pmd::EalConfig::default()
    })?;
    let pool = Arc::new(Mempool::new(eal, "gen", 65535, 256, pmd::mempool::DEFAULT_DATA_ROOM, None)?);
    Ok((eal, pool))
}

/// A forwarder and the generator's ports connected to it.
pub struct Rig {
    /// The forwarder.
    pub fwd: Running,
    ports: [Arc<Port>; 2],
    pool: Arc<Mempool>,
    gen_core: usize,
}

impl Rig {
    /// Starts `kind` and connects the generator (`uniq` makes the
    /// generator's device names unique within the process).
    pub fn start(kind: Kind, s: &Setup, eal: &'static Eal, pool: &Arc<Mempool>, uniq: usize) -> Result<Rig> {
        let fwd = Running::start(kind, s)?;
        let q = s.queues;
        // A memif client connects once, in dev_start, and a refused
        // connect fails the open; a link can also stay down after a bad
        // moment. Either way: fresh generator ports (new device names), up
        // to three times.
        let mut ports = Vec::new();
        for attempt in 0..3 {
            ports.clear();
            let opened: Result<()> = (0..2).try_for_each(|i| {
                let mut cfg =
                    PortConfig::new(&format!("gen{i}"), PortSource::Vdev(s.gen_devargs(i, uniq * 4 + attempt, q)));
                cfg.n_rxq = q;
                cfg.n_txq = q;
                ports.push(Arc::new(
                    Port::open(eal, &cfg, pool.clone()).with_context(|| format!("generator port {i}"))?,
                ));
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
        Ok(Rig { fwd, ports: [ports[0].clone(), ports[1].clone()], pool: pool.clone(), gen_core: s.gen_core })
    }

    /// Runs one trial on the generator's core.
    pub fn trial(&self, spec: TrafficSpec) -> Result<TrialResult> {
        let (ports, pool, gen_core) = (self.ports.clone(), self.pool.clone(), self.gen_core);
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
    }

    /// Stops the forwarder, then closes the generator's ports (no traffic
    /// runs by then); the forwarder's cycles per packet when it reports
    /// them at exit. In this order: a memif port's counters reset when its
    /// peer goes, and testpmd reports its cycles from them as it exits.
    pub fn stop(self) -> Result<Option<f64>> {
        let Rig { fwd, ports, .. } = self;
        let cpp = fwd.stop();
        drop(ports);
        cpp
    }
}
