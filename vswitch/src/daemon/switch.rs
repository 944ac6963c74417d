//! A running switch built from a validated configuration: EAL, mbuf pools,
//! every bridge's ports, one set of PMD threads serving all bridges; and
//! the run-time changes to it (ports added, removed and changed, bridges
//! added and removed, a whole new file applied as a difference).
//!
//! Every change follows one order, so forwarding on untouched ports never
//! stops: the control thread builds a new [`DpView`] (which bridge each
//! port slot belongs to, each bridge's membership) and publishes it, then
//! the PMD set's generation is bumped and every PMD thread picks the view
//! up between two iterations ([`pmd::pmd::PmdSet`] documents the hand-off).
//! A removed port is closed only after every thread let go of it.

use super::underlay::{Hop, Underlay};
use crate::datapath::dispatch::{BridgeDispatch, DpView, ViewCell};
use crate::datapath::l2::{L2Bridge, PortVlan, VlanSet};
use crate::datapath::tunnel::underlay::{new_uplink_counters, UplinkCounters};
use crate::datapath::tunnel::{self, TunnelCounters, TunnelSpec, TunnelVport};
use config::{Config, MemoryMode, PortType, RxqAssignment, VlanMode};
use pmd::pmd::{PmdConfig, PmdSet};
use pmd::{Eal, EalConfig, Memory, Mempool, Port, PortConfig, PortSource};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the switch could not start or a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// DPDK refused something (named in the message).
    #[error(transparent)]
    Pmd(#[from] pmd::Error),
    /// A port could not be opened.
    #[error("bridge {bridge}: {error}")]
    Port {
        /// Bridge.
        bridge: String,
        /// Port.
        port: String,
        /// Why (it names the port).
        error: pmd::Error,
    },
    /// A change that the configuration rules refuse, or that cannot be
    /// applied while running; nothing was changed.
    #[error("{0}")]
    Refused(String),
}

/// What a port is attached to.
#[derive(Debug)]
pub enum Attachment {
    /// A DPDK port.
    Device(Arc<Port>),
    /// A tunnel: its frames travel encapsulated through an uplink.
    Tunnel(TunnelPort),
}

/// A tunnel port: its settings, counters and the vport the PMD threads
/// send through now (with the hop it was built for).
#[derive(Debug)]
pub struct TunnelPort {
    /// Settings.
    pub spec: TunnelSpec,
    /// Counters of every vport the port has had.
    pub counters: Arc<[TunnelCounters]>,
    /// The vport in use and the route's hop (control thread only).
    state: Mutex<(Arc<TunnelVport>, Option<Hop>)>,
    /// `remote_ip = "flow"`: the remotes frames were sent to.
    remotes: Mutex<std::collections::BTreeSet<std::net::IpAddr>>,
}

/// The most remotes a tunnel whose remote is `flow` keeps paths for.
pub const MAX_FLOW_REMOTES: usize = 65_536;

impl TunnelPort {
    /// The vport the PMD threads send through.
    pub fn vport(&self) -> Arc<TunnelVport> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0.clone()
    }
    /// Where the routes send it (None: no route).
    pub fn hop(&self) -> Option<Hop> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }
    /// Records a new vport and hop.
    pub fn set(&self, v: Arc<TunnelVport>, hop: Option<Hop>) {
        *self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (v, hop);
    }
    /// The remotes frames were sent to (`remote_ip = "flow"`).
    pub fn remotes(&self) -> Vec<std::net::IpAddr> {
        self.remotes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().copied().collect()
    }
    /// Adds a remote: true when new (and there was room).
    pub fn add_remote(&self, r: std::net::IpAddr) -> bool {
        let mut set = self.remotes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.len() < MAX_FLOW_REMOTES && set.insert(r)
    }
}

impl Attachment {
    /// What the datapaths need to know of a tunnel port: bits of
    /// [`crate::datapath::ofdp::TUNNEL_FIXED_KEY`],
    /// [`crate::datapath::ofdp::TUNNEL_FLOW_KEY`],
    /// [`crate::datapath::ofdp::TUNNEL_FLOW_REMOTE`],
    /// [`crate::datapath::ofdp::TUNNEL_GENEVE`]; 0 for a device.
    pub fn tunnel_class(&self) -> u8 {
        use crate::datapath::ofdp::{TUNNEL_FIXED_KEY, TUNNEL_FLOW_KEY, TUNNEL_FLOW_REMOTE, TUNNEL_GENEVE};
        match self {
            Attachment::Tunnel(t) => {
                (if t.spec.key_flow { TUNNEL_FLOW_KEY } else { TUNNEL_FIXED_KEY })
                    | if t.spec.remote_flow { TUNNEL_FLOW_REMOTE } else { 0 }
                    | if t.spec.kind == tunnel::TunnelKind::Geneve { TUNNEL_GENEVE } else { 0 }
            }
            Attachment::Device(_) => 0,
        }
    }

    /// The DPDK port (None for a tunnel).
    pub fn device(&self) -> Option<&Arc<Port>> {
        match self {
            Attachment::Device(p) => Some(p),
            Attachment::Tunnel(_) => None,
        }
    }
    /// Counters: the device's, or the tunnel's (inner frames; its drops as
    /// tx drops).
    pub fn stats(&self) -> pmd::port::PortStats {
        match self {
            Attachment::Device(p) => p.stats(),
            Attachment::Tunnel(t) => {
                let s = tunnel::tunnel_stats(&t.counters);
                pmd::port::PortStats {
                    rx_packets: s.rx_packets,
                    tx_packets: s.tx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_bytes: s.tx_bytes,
                    tx_dropped: s.drop_no_path + s.drop_too_big + s.drop_no_room,
                    ..Default::default()
                }
            }
        }
    }
    /// Link state: a tunnel is up while it has a path (a route and a
    /// resolved next hop).
    pub fn link(&self) -> pmd::port::LinkState {
        match self {
            Attachment::Device(p) => p.link(),
            Attachment::Tunnel(t) => {
                pmd::port::LinkState { up: t.vport().path.is_some(), speed_mbps: 0, full_duplex: true }
            }
        }
    }
    /// MTU: the device's, or what the tunnel's uplink leaves for inner
    /// frames (1450 before it has a path).
    pub fn mtu(&self) -> u16 {
        match self {
            Attachment::Device(p) => p.mtu(),
            Attachment::Tunnel(t) => t
                .vport()
                .path
                .as_ref()
                .map_or(1450, |p| u16::try_from(p.max_inner.saturating_sub(14)).unwrap_or(u16::MAX)),
        }
    }
    /// The MAC: the device's, or a locally administered one from the
    /// tunnel's slot.
    pub fn mac(&self) -> wire::EthernetAddress {
        match self {
            Attachment::Device(p) => p.mac(),
            Attachment::Tunnel(t) => {
                let s = u32::try_from(t.vport().slot).unwrap_or(u32::MAX).to_be_bytes();
                wire::EthernetAddress([0x02, 0x76, s[0], s[1], s[2], s[3]])
            }
        }
    }
    /// The driver: DPDK's name, or the tunnel type.
    pub fn driver(&self) -> &str {
        match self {
            Attachment::Device(p) => p.driver(),
            Attachment::Tunnel(t) => t.spec.kind.name(),
        }
    }
}

/// One port as the switch knows it.
#[derive(Debug)]
pub struct SwitchPort {
    /// The config's name.
    pub name: String,
    /// The bridge it belongs to (its name).
    pub bridge: String,
    /// OpenFlow port number (requested, or assigned in order).
    pub ofport: u32,
    /// VLAN behaviour.
    pub vlan: PortVlan,
    /// The DPDK port or the tunnel.
    pub port: Attachment,
    /// Its slot in the PMD set (the index MAC entries and counters use).
    pub slot: usize,
    /// The configuration it was opened with.
    pub cfg: config::Port,
    /// Counters of its underlay stack (used when it has `addresses`).
    pub uplink: Arc<[UplinkCounters]>,
    /// Its policers: on what it receives, on what it sends.
    pub policers: [Option<Arc<crate::datapath::qos::PortPolicer>>; 2],
    /// Its egress scheduler, with the settings and receiving-port slots
    /// it was made from.
    pub shaper: Option<super::qos::ShaperState>,
}

/// One bridge.
#[derive(Debug)]
pub struct SwitchBridge {
    /// Name.
    pub name: String,
    /// Its L2 state (MAC table, counters; membership as first built: the
    /// PMD threads use the published [`DpView`]).
    pub l2: Arc<L2Bridge>,
    /// Seconds a MAC lives without traffic.
    pub mac_aging_s: u32,
    /// Its OpenFlow pipeline, when OpenFlow drives it (None: NORMAL).
    pub of: Option<Arc<crate::datapath::ofdp::OfBridgeDp>>,
    /// fail_mode secure with controllers: no NORMAL switching ever, even
    /// before the OpenFlow pipeline is published.
    pub secure: bool,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Ports added, as `bridge/port`.
    pub added: Vec<String>,
    /// Ports removed.
    pub removed: Vec<String>,
    /// Ports closed and opened again with new settings.
    pub reopened: Vec<String>,
    /// Ports whose VLAN or OpenFlow number changed in place.
    pub changed: Vec<String>,
    /// Bridges added.
    pub bridges_added: Vec<String>,
    /// Bridges removed.
    pub bridges_removed: Vec<String>,
    /// The `[[route]]`s changed.
    pub routes_changed: bool,
}

impl ReloadReport {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == ReloadReport::default()
    }
}

/// The running switch.
pub struct Switch {
    /// Bridges in config order.
    pub bridges: Vec<SwitchBridge>,
    /// Ports in config order (all bridges).
    pub ports: Vec<SwitchPort>,
    /// The PMD threads.
    pub pmds: PmdSet,
    /// The EAL arguments used.
    pub eal_args: Vec<String>,
    /// The configuration in force (the file, plus run-time changes).
    pub cfg: Config,
    /// The file `reload` reads again.
    pub config_path: Option<PathBuf>,
    pub(super) eal: &'static Eal,
    /// Mbuf pools by data room: the first is sized at start for the
    /// largest MTU then; a port added later with a larger MTU gets a pool
    /// of its own size (as OVS keeps one pool per MTU).
    pools: Vec<Arc<Mempool>>,
    view: ViewCell,
    next_vdev: usize,
    /// Packet-ins from the PMD threads.
    pub to_controller: std::sync::mpsc::Receiver<crate::datapath::ofdp::ToController>,
    /// The sending end the OpenFlow pipelines get.
    pub to_controller_tx: std::sync::mpsc::SyncSender<crate::datapath::ofdp::ToController>,
    /// PACKET_OUTs to PMD thread 0.
    pub packet_out_tx: std::sync::mpsc::SyncSender<crate::datapath::ofdp::PacketOutReq>,
    /// The clock flow timeouts count from (shared with the PMD threads).
    pub epoch: std::time::Instant,
    /// Bumped whenever ports come or go (OpenFlow views map ports to slots).
    pub port_epoch: u64,
    /// The cores every thread but the PMD threads runs on (None: the PMD
    /// threads take every core, and the others share them).
    pub control_cores: Option<Vec<usize>>,
    /// Routes, neighbours and the tunnels' paths.
    pub underlay: Underlay,
}

/// The ARP responder of a bridge's `[[bridge.arp]]` entries (validated).
fn arp_responder(entries: &[config::ArpEntry]) -> crate::datapath::l2::arp_responder::ArpResponder {
    crate::datapath::l2::arp_responder::ArpResponder::new(
        entries.iter().filter_map(|e| Some((e.vlan, e.ip.parse().ok()?, config::parse_mac(&e.mac).ok()?))),
    )
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
        PortType::Afpacket => match p.mtu {
            // The default 2 KB PACKET_MMAP frames cut jumbo frames.
            Some(m) if m > 1500 => {
                let frame = afpacket_frame(m);
                PortSource::Vdev(format!("net_af_packet{i},iface={iface},blocksz={frame},framesz={frame}"))
            }
            _ => PortSource::Vdev(format!("net_af_packet{i},iface={iface}")),
        },
        PortType::Tap | PortType::Internal => PortSource::Vdev(format!("net_tap{i},iface={iface}")),
        // Never opened (no device).
        PortType::Vxlan | PortType::Geneve | PortType::Gre => PortSource::Vdev(String::new()),
    }
}

/// AF_PACKET's PACKET_MMAP frame size for jumbo frames of `mtu`: the
/// frame plus the kernel's 80-byte header, in whole pages. DPDK 22.11's
/// driver lays frames out at a fixed stride, so a block (whole pages) must
/// hold a whole number of frames: frame = block.
fn afpacket_frame(mtu: u16) -> usize {
    (usize::from(mtu) + 14 + 8 + 80).next_multiple_of(4096)
}

/// Mbuf data room that port `p`'s frames need: Ethernet header, two VLAN
/// tags and headroom; for AF_PACKET a whole PACKET_MMAP frame (less the
/// 32 bytes of it the driver does not copy), as its driver refuses smaller
/// mbufs. Rounded up to 1 KB so that nearby MTUs share a pool.
fn room_for(p: &config::Port) -> usize {
    let mtu = p.mtu.unwrap_or(1500);
    let frame = match p.kind {
        PortType::Afpacket if mtu > 1500 => afpacket_frame(mtu) - 32,
        _ => usize::from(mtu) + 14 + 4 + 4,
    };
    (frame + pmd::mempool::HEADROOM).next_multiple_of(1024).max(usize::from(pmd::mempool::DEFAULT_DATA_ROOM))
}

/// Whether two port configurations differ only in what can change in place
/// (VLAN handling, OpenFlow number, cross-connect, policing).
fn same_device(a: &config::Port, b: &config::Port) -> bool {
    let strip = |p: &config::Port| config::Port {
        vlan_mode: VlanMode::None,
        tag: None,
        trunks: Vec::new(),
        ofport: None,
        peer: None,
        ingress_rate: None,
        ingress_burst: None,
        egress_rate: None,
        egress_burst: None,
        ingress_policer: None,
        egress_policer: None,
        shaper: None,
        ..p.clone()
    };
    strip(a) == strip(b)
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
        // Mbufs fit the largest frame of any port.
        let room = cfg.bridges.iter().flat_map(|b| b.ports.iter()).map(room_for).max().unwrap_or(0);
        let room = u16::try_from(room.max(usize::from(pmd::mempool::DEFAULT_DATA_ROOM))).unwrap_or(u16::MAX);
        let nports: usize = cfg.bridges.iter().map(|b| b.ports.len()).sum();
        let mbufs = u32::try_from((nports * 4096 + 8192).next_power_of_two() - 1).unwrap_or(u32::MAX);
        let pool = Arc::new(Mempool::new(eal, "vswitchd", mbufs, 256, room, None)?);
        let rebalance = match cfg.pmd.rxq_assignment {
            RxqAssignment::Cycles => Some(Duration::from_secs(u64::from(cfg.pmd.rebalance_interval_s))),
            RxqAssignment::RoundRobin => None,
        };
        let view: ViewCell = Arc::new(Mutex::new(Arc::new(DpView::default())));
        let cell = view.clone();
        // Bounded: a flood of packet-ins is dropped and counted, it never
        // blocks a PMD thread.
        let (to_controller_tx, to_controller) = std::sync::mpsc::sync_channel(4096);
        let (packet_out_tx, packet_out_rx) = std::sync::mpsc::sync_channel(1024);
        let mut packet_out_rx = Some(packet_out_rx);
        let (inject_tx, inject_rx) = std::sync::mpsc::sync_channel(4096);
        let mut inject_rx = Some(inject_rx);
        let epoch = std::time::Instant::now();
        let cache_cfg = cache_config(&cfg.pmd);
        // Started here, not by the first PMD thread that frees many
        // megaflows: threads inherit their creator's cores.
        ofproto::megaflow::start_reaper();
        let pmds = PmdSet::start(&PmdConfig { cores: pmd_cores, rebalance_interval: rebalance }, Vec::new(), |i| {
            BridgeDispatch::following(
                cell.clone(),
                i,
                if i == 0 { packet_out_rx.take() } else { None },
                if i == 0 { inject_rx.take() } else { None },
                epoch,
                cache_cfg,
            )
        })?;
        let control_cores = pmds.keep_others_off_pmd_cores();
        let mut sw = Switch {
            control_cores,
            bridges: Vec::new(),
            ports: Vec::new(),
            pmds,
            eal_args: eal.args().to_vec(),
            cfg: Config { bridges: Vec::new(), ..cfg.clone() },
            config_path: None,
            eal,
            pools: vec![pool],
            view,
            next_vdev: 0,
            to_controller,
            to_controller_tx,
            packet_out_tx,
            epoch,
            port_epoch: 0,
            underlay: Underlay::new(inject_tx),
        };
        sw.underlay.set_static_routes(&cfg.routes);
        // The file was validated as a whole (ports may name peers that
        // come later): ports are opened without the one-at-a-time check.
        for b in &cfg.bridges {
            sw.add_bridge(b);
            for p in &b.ports {
                sw.open_attach(&b.name, p)?;
            }
        }
        sw.cfg.routes.clone_from(&cfg.routes);
        sw.publish();
        sw.resolve_tunnels();
        Ok(sw)
    }

    /// A port by its PMD slot.
    pub fn port_by_slot(&self, slot: u32) -> Option<&SwitchPort> {
        self.ports.iter().find(|p| p.slot as u64 == u64::from(slot))
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

    /// The view the PMD threads should use for the current bridges and
    /// ports, plus `extra` (a port about to be added: slot, bridge, VLAN).
    fn build_view(
        bridges: &[SwitchBridge],
        ports: &[SwitchPort],
        underlay: &Underlay,
        extra: Option<(usize, &str, &PortVlan)>,
    ) -> DpView {
        let slots = ports.iter().map(|p| p.slot + 1).chain(extra.map(|e| e.0 + 1)).max().unwrap_or(0);
        // Cross-connected ports are not L2 members.
        let members =
            ports.iter().filter(|p| p.cfg.peer.is_none()).map(|p| (p.slot, p.bridge.as_str(), &p.vlan)).chain(extra);
        let mut by_port = vec![None; slots];
        let mut xconnect = vec![None; slots];
        for p in ports {
            if let Some(peer) = &p.cfg.peer {
                xconnect[p.slot] = ports.iter().find(|q| &q.name == peer && q.bridge == p.bridge).map(|q| q.slot);
            }
        }
        let mut per_bridge: Vec<Vec<Option<PortVlan>>> = bridges.iter().map(|_| vec![None; slots]).collect();
        for (slot, bridge, vlan) in members {
            if let Some(bi) = bridges.iter().position(|b| b.name == bridge) {
                by_port[slot] = Some(bi);
                per_bridge[bi][slot] = Some(vlan.clone());
            }
        }
        let mut tunnels = vec![0u8; slots];
        for p in ports {
            tunnels[p.slot] = p.port.tunnel_class();
        }
        DpView {
            uplinks: super::underlay::uplinks(ports, underlay, slots),
            by_port,
            xconnect,
            openflow: bridges.iter().map(|b| b.of.clone()).collect(),
            closed: bridges.iter().map(|b| b.secure && b.of.is_none()).collect(),
            bridges: bridges
                .iter()
                .zip(per_bridge)
                .map(|(b, members)| b.l2.with_ports(members, tunnels.clone()))
                .collect(),
        }
    }

    fn store_view(cell: &ViewCell, view: DpView) {
        *cell.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(view);
    }

    /// Replaces a bridge's ARP responder entries (`arp-add`, `arp-del`),
    /// checked as the file's would be, and publishes them.
    pub fn set_arp(&mut self, bridge: &str, entries: Vec<config::ArpEntry>) -> Result<(), SwitchError> {
        let c = self.candidate(|c| {
            let b = c.bridges.iter_mut().find(|b| b.name == bridge).ok_or_else(|| format!("no bridge `{bridge}`"))?;
            b.arp = entries.clone();
            Ok(())
        })?;
        self.cfg = c;
        if let Some(b) = self.bridges.iter_mut().find(|b| b.name == bridge) {
            b.l2 = b.l2.with_arp(arp_responder(&entries));
        }
        self.publish();
        Ok(())
    }

    /// Sets (or clears) a bridge's OpenFlow pipeline and waits until every
    /// PMD thread uses it.
    pub fn set_openflow(&mut self, bridge: &str, of: Option<Arc<crate::datapath::ofdp::OfBridgeDp>>) {
        let old = self.bridges.iter_mut().find(|b| b.name == bridge).map(|b| std::mem::replace(&mut b.of, of));
        self.publish();
        // The PMD threads let go of the old pipeline during `publish`; the
        // last reference goes here, so its memory (the tables' snapshot)
        // is freed on this thread and reused warm by the next publication
        // instead of bouncing between cores.
        drop(old);
    }

    /// Sets a bridge's OpenFlow settings (controllers, fail_mode,
    /// datapath_id) from `nb`, its ports and other settings untouched;
    /// publishes at once (a secure bridge that gains controllers stops
    /// switching before the answer goes out). The caller validated `nb`.
    pub fn set_openflow_settings(&mut self, nb: &config::Bridge) -> Result<(), SwitchError> {
        let (Some(b), Some(cb)) = (
            self.bridges.iter_mut().find(|b| b.name == nb.name),
            self.cfg.bridges.iter_mut().find(|b| b.name == nb.name),
        ) else {
            return Err(SwitchError::Refused(format!("no bridge `{}`", nb.name)));
        };
        cb.controllers.clone_from(&nb.controllers);
        cb.fail_mode = nb.fail_mode;
        cb.datapath_id.clone_from(&nb.datapath_id);
        b.secure = nb.fail_mode == config::FailMode::Secure && !nb.controllers.is_empty();
        self.publish();
        Ok(())
    }

    /// The mbuf pool for copies made on the fast path.
    pub fn pool(&self) -> Arc<Mempool> {
        self.pools[0].clone()
    }

    /// Publishes the view of the current ports and waits until every PMD
    /// thread uses it.
    fn publish(&self) {
        Self::store_view(&self.view, Self::build_view(&self.bridges, &self.ports, &self.underlay, None));
        self.pmds.reconfigure();
    }

    fn add_bridge(&mut self, b: &config::Bridge) {
        self.bridges.push(SwitchBridge {
            name: b.name.clone(),
            l2: L2Bridge::new(Vec::new(), b.mac_table_size, self.pools[0].clone()).with_arp(arp_responder(&b.arp)),
            mac_aging_s: b.mac_aging_s,
            of: None,
            secure: b.fail_mode == config::FailMode::Secure && !b.controllers.is_empty(),
        });
        self.cfg.bridges.push(config::Bridge { ports: Vec::new(), ..b.clone() });
    }

    /// The pool whose mbufs fit port `p`'s frames, made when none does.
    fn pool_for(&mut self, p: &config::Port) -> Result<Arc<Mempool>, pmd::Error> {
        let need = room_for(p);
        if let Some(p) = self.pools.iter().find(|p| usize::from(p.data_room()) >= need) {
            return Ok(p.clone());
        }
        let room = u16::try_from(need).unwrap_or(u16::MAX);
        let p = Arc::new(Mempool::new(self.eal, &format!("vswitchd-{room}"), 8191, 256, room, None)?);
        self.pools.push(p.clone());
        Ok(p)
    }

    /// Opens the DPDK port for `p` (not yet polled), or makes the tunnel.
    fn open(&mut self, bridge: &str, p: &config::Port) -> Result<Attachment, SwitchError> {
        if p.kind.is_tunnel() {
            let spec = TunnelSpec::of(p);
            let counters = tunnel::new_counters();
            // Without a path until the slot is known and resolved.
            let v = Arc::new(TunnelVport::new(usize::MAX, spec, None, counters.clone()));
            return Ok(Attachment::Tunnel(TunnelPort {
                spec,
                counters,
                state: Mutex::new((v, None)),
                remotes: Mutex::default(),
            }));
        }
        let err = |source| SwitchError::Port { bridge: bridge.into(), port: p.name.clone(), error: source };
        let pool = self.pool_for(p).map_err(err)?;
        // Vdev names are never reused: DPDK keeps some per-name state (AF_XDP
        // maps, memif ids) until the process ends.
        let i = self.next_vdev;
        self.next_vdev += 1;
        let mut pc = PortConfig::new(&p.name, source_of(i, p));
        pc.n_rxq = p.n_rxq;
        // One tx queue per PMD thread, and no fewer than rx queues: peers
        // such as memif ask for symmetric queue pairs.
        pc.n_txq = u16::try_from(self.pmds.n_threads()).unwrap_or(1).max(p.n_rxq);
        pc.mtu = p.mtu;
        pc.tx_offloads = match &p.tx_offload {
            config::TxOffload::Auto => pmd::port::TxOffloads::Auto,
            config::TxOffload::Off => pmd::port::TxOffloads::Off,
            config::TxOffload::Only(names) => pmd::port::TxOffloads::Only(
                pmd::port::TX_OFFLOAD_NAMES.iter().filter(|(n, _)| names.iter().any(|x| x == n)).map(|(_, b)| b).sum(),
            ),
        };
        Ok(Attachment::Device(Arc::new(Port::open(self.eal, &pc, pool).map_err(err)?)))
    }

    /// Makes an opened port (or a tunnel) part of `bridge` and starts
    /// polling it (sending through it).
    fn attach(&mut self, bridge: &str, p: &config::Port, port: Attachment) -> Result<(), SwitchError> {
        let ofport = p.ofport.unwrap_or_else(|| {
            let used: Vec<u32> = self.ports.iter().filter(|q| q.bridge == bridge).map(|q| q.ofport).collect();
            let requested = |n: u32| {
                self.cfg.bridges.iter().filter(|b| b.name == bridge).flat_map(|b| &b.ports).any(|q| q.ofport == Some(n))
            };
            (1..).find(|n| !used.contains(n) && !requested(*n)).unwrap_or(u32::MAX)
        });
        let vlan = vlan_of(p);
        let (bridges, ports, cell, underlay) = (&self.bridges, &self.ports, &self.view, &self.underlay);
        // A cross-connected port is never an L2 member, not even before its
        // peer exists (its frames are dropped until then, never learned).
        let member = p.peer.is_none();
        let before_publish = |slot| {
            Self::store_view(cell, Self::build_view(bridges, ports, underlay, member.then_some((slot, bridge, &vlan))));
        };
        let slot = match &port {
            Attachment::Device(dev) => self
                .pmds
                .add_port(dev.clone(), before_publish)
                .map_err(|source| SwitchError::Port { bridge: bridge.into(), port: p.name.clone(), error: source })?,
            Attachment::Tunnel(t) => {
                // Frames sent before the path is known wait for it.
                let (hold, wake, inject) = (underlay.held_sender(), underlay.wake.clone(), underlay.inject_sender());
                let pool = self.pools.first().cloned();
                let make = |slot| {
                    let v = Arc::new(TunnelVport {
                        slot,
                        spec: t.spec,
                        path: None,
                        hold: Some(hold),
                        wake: Some(wake),
                        inject: Some(inject),
                        counters: t.counters.clone(),
                        flows: Arc::default(),
                        pool,
                    });
                    t.set(v.clone(), None);
                    v as Arc<dyn pmd::pmd::VirtualPort>
                };
                self.pmds.add_virtual(make, before_publish)
            }
        };
        self.ports.push(SwitchPort {
            name: p.name.clone(),
            bridge: bridge.into(),
            ofport,
            vlan,
            port,
            slot,
            cfg: p.clone(),
            uplink: new_uplink_counters(),
            policers: [None, None],
            shaper: None,
        });
        self.port_epoch += 1;
        if config::qos::policer_of(p, true).is_some() || config::qos::policer_of(p, false).is_some() {
            self.apply_qos(self.ports.len() - 1);
        }
        self.apply_shapers();
        if let Some(b) = self.cfg.bridges.iter_mut().find(|b| b.name == bridge) {
            b.ports.push(p.clone());
        }
        // Cross-connections to and from this port know its slot only now;
        // so do the uplinks' tables of tunnels and the tunnels' paths.
        let tunnel_or_uplink = p.kind.is_tunnel() || !p.addresses.is_empty();
        if tunnel_or_uplink
            || p.peer.is_some()
            || self.ports.iter().any(|q| q.cfg.peer.as_deref() == Some(p.name.as_str()) && q.bridge == bridge)
        {
            self.publish();
        }
        if tunnel_or_uplink {
            self.resolve_tunnels();
        }
        Ok(())
    }

    fn open_attach(&mut self, bridge: &str, p: &config::Port) -> Result<(), SwitchError> {
        let port = self.open(bridge, p)?;
        self.attach(bridge, p, port)
    }

    fn candidate(&self, change: impl FnOnce(&mut Config) -> Result<(), String>) -> Result<Config, SwitchError> {
        let mut c = self.cfg.clone();
        change(&mut c).map_err(SwitchError::Refused)?;
        c.check().map_err(SwitchError::Refused)?;
        Ok(c)
    }

    /// Adds port `p` to `bridge` while the switch runs (`add-port`). The
    /// same rules as in the file apply; a refused port changes nothing.
    pub fn add_port(&mut self, bridge: &str, p: &config::Port) -> Result<(), SwitchError> {
        self.candidate(|c| {
            let b = c.bridges.iter_mut().find(|b| b.name == bridge).ok_or_else(|| format!("no bridge `{bridge}`"))?;
            b.ports.push(p.clone());
            Ok(())
        })?;
        self.open_attach(bridge, p)
    }

    /// Removes the port named `name` while the switch runs (`del-port`):
    /// its MACs are forgotten and the port is closed once no PMD thread
    /// uses it. Other ports forward on meanwhile.
    pub fn del_port(&mut self, name: &str) -> Result<(), SwitchError> {
        let i = self
            .ports
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| SwitchError::Refused(format!("no port `{name}`")))?;
        let sp = self.ports.remove(i);
        Self::store_view(&self.view, Self::build_view(&self.bridges, &self.ports, &self.underlay, None));
        let removed = match &sp.port {
            Attachment::Device(_) => self.pmds.remove_port(sp.slot).map(|_| ()),
            Attachment::Tunnel(_) => {
                if self.pmds.remove_virtual(sp.slot) {
                    Ok(())
                } else {
                    Err(pmd::Error::Thread {
                        core: 0,
                        reason: format!("a PMD thread did not let go of tunnel {name} within 5 s"),
                    })
                }
            }
        };
        if let Err(e) = removed {
            // A PMD thread did not let go: the port stays as it was.
            self.ports.insert(i, sp);
            self.publish();
            return Err(e.into());
        }
        // After the threads let go: nothing learns on the slot any more.
        if let Some(b) = self.bridges.iter().find(|b| b.name == sp.bridge) {
            #[allow(clippy::cast_possible_truncation)] // slots are below 2^32
            b.l2.table.flush_port(sp.slot as u32);
        }
        for b in &mut self.cfg.bridges {
            b.ports.retain(|p| p.name != name);
        }
        self.port_epoch += 1;
        let underlay_changed = sp.port.device().is_none() || !sp.cfg.addresses.is_empty();
        drop(sp);
        self.apply_shapers();
        if underlay_changed {
            self.resolve_tunnels();
        }
        Ok(())
    }

    /// Applies `new` as a difference against the configuration in force:
    /// bridges and ports added and removed, ports whose device settings
    /// changed closed and opened again, VLAN and OpenFlow numbers changed
    /// in place. Untouched ports keep forwarding throughout.
    ///
    /// Refused with nothing changed: a new file that changes `eal`, `pmd`
    /// or `control` (they need a restart), or one in which a new port
    /// cannot be opened. A port whose new settings cannot be opened is put
    /// back with its old ones and named in the error.
    pub fn reload(&mut self, new: &Config) -> Result<ReloadReport, SwitchError> {
        for (what, same) in [
            ("eal", self.cfg.eal == new.eal),
            ("pmd", self.cfg.pmd == new.pmd),
            ("control", self.cfg.control == new.control),
        ] {
            if !same {
                return Err(SwitchError::Refused(format!(
                    "the `{what}` section changed: that needs a restart of vswitchd; nothing was applied"
                )));
            }
        }
        // The number of flow tables is fixed for a bridge's life (its
        // flows live in them); controllers, fail_mode and datapath_id
        // change live (see `OpenFlow::prepare` / `commit`).
        for nb in &new.bridges {
            if let Some(ob) = self.cfg.bridges.iter().find(|b| b.name == nb.name) {
                if ob.flow_tables != nb.flow_tables {
                    return Err(SwitchError::Refused(format!(
                        "bridge `{}`: flow_tables changed from {} to {}: that needs a restart of vswitchd; nothing was applied",
                        nb.name, ob.flow_tables, nb.flow_tables
                    )));
                }
            }
        }
        let old = self.cfg.clone();
        let find = |c: &Config, b: &str, p: &str| -> Option<config::Port> {
            c.bridges.iter().find(|x| x.name == b)?.ports.iter().find(|x| x.name == p).cloned()
        };
        let mut report = ReloadReport::default();
        // Port name -> (bridge, cfg) in the old and new files.
        let old_ports: Vec<(String, config::Port)> =
            old.bridges.iter().flat_map(|b| b.ports.iter().map(|p| (b.name.clone(), p.clone()))).collect();
        let new_ports: Vec<(String, config::Port)> =
            new.bridges.iter().flat_map(|b| b.ports.iter().map(|p| (b.name.clone(), p.clone()))).collect();
        let mut to_remove = Vec::new();
        let mut to_reopen = Vec::new();
        let mut to_change = Vec::new();
        for (b, p) in &old_ports {
            match find(new, b, &p.name) {
                None => to_remove.push(p.name.clone()),
                Some(np) if np == *p => {}
                Some(np) if same_device(&np, p) => to_change.push((b.clone(), np)),
                Some(np) => to_reopen.push((b.clone(), np)),
            }
        }
        let to_add: Vec<(String, config::Port)> =
            new_ports.iter().filter(|(b, p)| find(&old, b, &p.name).is_none()).cloned().collect();
        // Ports that moved to another bridge are removed, then added.
        // New ports are opened first: one that cannot be opened refuses
        // the whole reload before anything changed.
        let mut opened = Vec::new();
        for (b, p) in &to_add {
            // A name taken by a port that is about to go frees up only after
            // it went: open those later.
            if old_ports.iter().any(|(_, q)| q.name == p.name) {
                continue;
            }
            match self.open(b, p) {
                Ok(port) => opened.push((b.clone(), p.clone(), port)),
                Err(e) => return Err(SwitchError::Refused(format!("{e}; nothing was applied"))),
            }
        }
        for name in &to_remove {
            let b = old_ports.iter().find(|(_, p)| &p.name == name).map(|(b, _)| b.clone()).unwrap_or_default();
            self.del_port(name)?;
            report.removed.push(format!("{b}/{name}"));
        }
        // Bridges: new ones before their ports arrive; removed ones once
        // their ports are gone; settings of kept ones in place.
        for nb in &new.bridges {
            match self.bridges.iter_mut().position(|b| b.name == nb.name) {
                None => {
                    self.add_bridge(nb);
                    report.bridges_added.push(nb.name.clone());
                }
                Some(i) => {
                    let ob = old.bridges.iter().find(|b| b.name == nb.name);
                    if ob.map(|b| b.mac_table_size) != Some(nb.mac_table_size) {
                        self.bridges[i].l2 = L2Bridge::new(Vec::new(), nb.mac_table_size, self.pools[0].clone())
                            .with_arp(arp_responder(&nb.arp));
                    } else if ob.map(|b| &b.arp) != Some(&nb.arp) {
                        self.bridges[i].l2 = self.bridges[i].l2.with_arp(arp_responder(&nb.arp));
                    }
                    self.bridges[i].mac_aging_s = nb.mac_aging_s;
                    self.bridges[i].secure = nb.fail_mode == config::FailMode::Secure && !nb.controllers.is_empty();
                    if let Some(cb) = self.cfg.bridges.iter_mut().find(|b| b.name == nb.name) {
                        *cb = config::Bridge { ports: std::mem::take(&mut cb.ports), ..nb.clone() };
                    }
                }
            }
        }
        let gone: Vec<String> = self
            .bridges
            .iter()
            .filter(|b| !new.bridges.iter().any(|n| n.name == b.name))
            .map(|b| b.name.clone())
            .collect();
        self.bridges.retain(|b| !gone.contains(&b.name));
        self.cfg.bridges.retain(|b| !gone.contains(&b.name));
        report.bridges_removed = gone;
        for (b, p) in &to_change {
            if let Some(i) = self.ports.iter().position(|sp| sp.name == p.name) {
                let sp = &mut self.ports[i];
                sp.vlan = vlan_of(p);
                sp.ofport = p.ofport.unwrap_or(sp.ofport);
                let qos = |c: &config::Port| (config::qos::policer_of(c, true), config::qos::policer_of(c, false));
                let requeue = qos(&sp.cfg) != qos(p);
                sp.cfg = p.clone();
                if requeue {
                    self.apply_qos(i);
                }
            }
            if let Some(cp) = self.cfg.bridges.iter_mut().flat_map(|x| x.ports.iter_mut()).find(|x| x.name == p.name) {
                *cp = p.clone();
            }
            report.changed.push(format!("{b}/{}", p.name));
        }
        // The bridge snapshots (new MAC tables, VLANs) go out in one view.
        self.publish();
        let mut failed = Vec::new();
        for (b, p) in &to_reopen {
            let Some(was) = find(&old, b, &p.name) else { continue };
            self.del_port(&p.name)?;
            match self.open_attach(b, p) {
                Ok(()) => report.reopened.push(format!("{b}/{}", p.name)),
                Err(e) => {
                    failed.push(format!("{e} (kept its old settings)"));
                    self.open_attach(b, &was)?;
                }
            }
        }
        for (b, p, port) in opened {
            self.attach(&b, &p, port)?;
            report.added.push(format!("{b}/{}", p.name));
        }
        for (b, p) in &to_add {
            if !report.added.iter().any(|a| a == &format!("{b}/{}", p.name)) {
                self.open_attach(b, p)?;
                report.added.push(format!("{b}/{}", p.name));
            }
        }
        // Config order, as in the file.
        let order: Vec<&str> = new_ports.iter().map(|(_, p)| p.name.as_str()).collect();
        self.ports.sort_by_key(|p| order.iter().position(|n| *n == p.name).unwrap_or(usize::MAX));
        for cb in &mut self.cfg.bridges {
            cb.ports.sort_by_key(|p| order.iter().position(|n| *n == p.name).unwrap_or(usize::MAX));
        }
        if self.cfg.routes != new.routes {
            self.cfg.routes.clone_from(&new.routes);
            self.underlay.set_static_routes(&new.routes);
            report.routes_changed = true;
        }
        self.resolve_tunnels();
        self.apply_shapers();
        if !failed.is_empty() {
            return Err(SwitchError::Refused(failed.join("; ")));
        }
        Ok(report)
    }
}

/// The machine's memory, bytes (0 when /proc/meminfo does not say).
fn mem_total() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    m.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The megaflow and exact-match cache settings of `[pmd]`. With
/// `megaflow_limit = "auto"` a cache grows up to 4,194,304 megaflows while
/// it takes less than its share of a quarter of the machine's memory
/// (each PMD thread a share).
fn cache_config(p: &config::PmdSection) -> ofproto::megaflow::CacheConfig {
    use ofproto::megaflow::EmcMode;
    let n_pmds = p.cores.len().max(1) as u64;
    let (start, grow_to) = match p.megaflow_limit {
        config::MegaflowLimit::Auto => (config::MegaflowLimit::AUTO_START, config::MegaflowLimit::MAX),
        config::MegaflowLimit::Fixed(n) => (n, n),
    };
    ofproto::megaflow::CacheConfig {
        emc: match p.emc {
            config::EmcMode::Auto => EmcMode::Auto,
            config::EmcMode::On => EmcMode::On,
            config::EmcMode::Off => EmcMode::Off,
        },
        emc_entries: p.emc_entries as usize,
        emc_insert_inv_prob: p.emc_insert_inv_prob,
        max_idle_ms: u64::from(p.megaflow_max_idle_ms),
        max_megaflows: start as usize,
        grow_to: grow_to as usize,
        grow_bytes: mem_total() / 4 / n_pmds,
    }
}
