//! A running switch built from a validated configuration: EAL, one mbuf
//! pool, every bridge's ports, one set of PMD threads serving all bridges.

use crate::l2::{BridgeDispatch, L2Bridge, PortVlan, VlanSet};
use config::{Config, MemoryMode, PortType, RxqAssignment, VlanMode};
use pmd::pmd::{PmdConfig, PmdSet};
use pmd::{Eal, EalConfig, Memory, Mempool, Port, PortConfig, PortSource};
use std::sync::Arc;
use std::time::Duration;

/// Why the switch could not start.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// DPDK refused something (named in the message).
    #[error(transparent)]
    Pmd(#[from] pmd::Error),
    /// A port could not be opened.
    #[error("bridge {bridge}, port {port}")]
    Port {
        /// Bridge.
        bridge: String,
        /// Port.
        port: String,
        /// Why.
        source: pmd::Error,
    },
}

/// One port as the switch knows it.
#[derive(Debug)]
pub struct SwitchPort {
    /// The config's name.
    pub name: String,
    /// The bridge it belongs to (index into [`Switch::bridges`]).
    pub bridge: usize,
    /// OpenFlow port number (requested, or assigned in order).
    pub ofport: u32,
    /// VLAN behaviour.
    pub vlan: PortVlan,
    /// The DPDK port.
    pub port: Arc<Port>,
}

/// One bridge.
#[derive(Debug)]
pub struct SwitchBridge {
    /// Name.
    pub name: String,
    /// Its L2 state (MAC table, counters).
    pub l2: Arc<L2Bridge>,
    /// Seconds a MAC lives without traffic.
    pub mac_aging_s: u32,
}

/// The running switch.
pub struct Switch {
    /// Bridges in config order.
    pub bridges: Vec<SwitchBridge>,
    /// Ports in PMD order (all bridges).
    pub ports: Vec<SwitchPort>,
    /// The PMD threads.
    pub pmds: PmdSet,
    /// The EAL arguments used.
    pub eal_args: Vec<String>,
}

fn vlan_of(p: &config::Port) -> PortVlan {
    match p.vlan_mode {
        VlanMode::Access => PortVlan::Access(p.tag.unwrap_or(1)),
        VlanMode::Trunk => PortVlan::Trunk(VlanSet::of(&p.trunks)),
        VlanMode::None => PortVlan::None,
    }
}

fn source_of(i: usize, p: &config::Port) -> PortSource {
    let iface = p.iface.clone().unwrap_or_else(|| p.name.clone());
    match p.kind {
        PortType::Dpdk => match (&p.pci, &p.devargs) {
            (Some(pci), _) => PortSource::Pci(pci.clone()),
            (None, Some(d)) => PortSource::Vdev(d.clone()),
            (None, None) => PortSource::Vdev(String::new()),
        },
        PortType::Afxdp => PortSource::Vdev(format!("net_af_xdp{i},iface={iface}")),
        PortType::Afpacket => PortSource::Vdev(format!("net_af_packet{i},iface={iface}")),
        PortType::Tap | PortType::Internal => PortSource::Vdev(format!("net_tap{i},iface={iface}")),
    }
}

impl Switch {
    /// Starts EAL, opens every port and starts the PMD threads.
    pub fn start(cfg: &Config) -> Result<Switch, SwitchError> {
        let all: Vec<usize> = (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect();
        let eal_cores = if cfg.eal.cores.is_empty() { all.clone() } else { cfg.eal.cores.clone() };
        let memory = match cfg.eal.memory {
            MemoryMode::Hugepages => Memory::Hugepages { socket_mem_mb: Some(cfg.eal.memory_mb) },
            MemoryMode::InMemory => Memory::InMemory { socket_mem_mb: Some(cfg.eal.memory_mb) },
            MemoryMode::NoHuge => Memory::NoHuge { mb: cfg.eal.memory_mb },
        };
        let eal_cfg = EalConfig {
            cores: eal_cores.clone(),
            memory,
            file_prefix: cfg.eal.file_prefix.clone(),
            extra_args: cfg.eal.extra_args.clone(),
            ..EalConfig::default()
        };
        let eal = Eal::init(&eal_cfg)?;
        let pmd_cores =
            if cfg.pmd.cores.is_empty() { vec![*eal_cores.last().unwrap_or(&0)] } else { cfg.pmd.cores.clone() };
        // Mbufs fit the largest MTU of any port.
        let max_mtu = cfg.bridges.iter().flat_map(|b| b.ports.iter()).filter_map(|p| p.mtu).max().unwrap_or(1500);
        let room = (usize::from(max_mtu) + 14 + 4 + 4 + pmd::mempool::HEADROOM)
            .max(usize::from(pmd::mempool::DEFAULT_DATA_ROOM));
        let room = u16::try_from(room).unwrap_or(u16::MAX);
        let nports: usize = cfg.bridges.iter().map(|b| b.ports.len()).sum();
        let mbufs = u32::try_from((nports * 4096 + 8192).next_power_of_two() - 1).unwrap_or(u32::MAX);
        let pool = Arc::new(Mempool::new(eal, "vswitchd", mbufs, 256, room, None)?);
        let mut ports = Vec::new();
        for (bi, b) in cfg.bridges.iter().enumerate() {
            let mut next_ofport = 1;
            for p in &b.ports {
                let i = ports.len();
                let mut pc = PortConfig::new(&p.name, source_of(i, p));
                pc.n_rxq = p.n_rxq;
                // One tx queue per PMD thread, and no fewer than rx queues:
                // peers such as memif ask for symmetric queue pairs.
                pc.n_txq = u16::try_from(pmd_cores.len()).unwrap_or(1).max(p.n_rxq);
                pc.mtu = p.mtu;
                let port = Port::open(eal, &pc, pool.clone()).map_err(|source| SwitchError::Port {
                    bridge: b.name.clone(),
                    port: p.name.clone(),
                    source,
                })?;
                let ofport = p.ofport.unwrap_or_else(|| {
                    while b.ports.iter().any(|q| q.ofport == Some(next_ofport)) {
                        next_ofport += 1;
                    }
                    next_ofport += 1;
                    next_ofport - 1
                });
                ports.push(SwitchPort {
                    name: p.name.clone(),
                    bridge: bi,
                    ofport,
                    vlan: vlan_of(p),
                    port: Arc::new(port),
                });
            }
        }
        let bridges: Vec<SwitchBridge> = cfg
            .bridges
            .iter()
            .enumerate()
            .map(|(bi, b)| SwitchBridge {
                name: b.name.clone(),
                l2: L2Bridge::with_members(
                    ports.iter().map(|p| (p.bridge == bi).then(|| p.vlan.clone())).collect(),
                    b.mac_table_size,
                    pool.clone(),
                ),
                mac_aging_s: b.mac_aging_s,
            })
            .collect();
        let by_port: Vec<usize> = ports.iter().map(|p| p.bridge).collect();
        let l2s: Vec<Arc<L2Bridge>> = bridges.iter().map(|b| b.l2.clone()).collect();
        let rebalance = match cfg.pmd.rxq_assignment {
            RxqAssignment::Cycles => Some(Duration::from_secs(u64::from(cfg.pmd.rebalance_interval_s))),
            RxqAssignment::RoundRobin => None,
        };
        let pmds = PmdSet::start(
            &PmdConfig { cores: pmd_cores, rebalance_interval: rebalance },
            ports.iter().map(|p| p.port.clone()).collect(),
            |i| BridgeDispatch::new(by_port.clone(), &l2s, i),
        )?;
        Ok(Switch { bridges, ports, pmds, eal_args: eal.args().to_vec() })
    }

    /// Expires idle MACs on every bridge (call about once a second).
    pub fn age_macs(&self) -> u64 {
        let now = L2Bridge::now_s();
        self.bridges.iter().map(|b| b.l2.table.expire(now, b.mac_aging_s)).sum()
    }

    /// Stops the PMD threads (ports close when the switch is dropped).
    pub fn stop(self) {
        self.pmds.stop();
    }
}
