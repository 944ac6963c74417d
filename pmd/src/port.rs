//! DPDK ethdev ports: from a PCI address (a NIC or an SR-IOV VF) or vdev
//! devargs (net_memif, net_af_xdp, net_af_packet, net_tap, net_vhost,
//! net_virtio_user, net_ring, net_null), with their queues, RSS, MTU,
//! promiscuous mode, offload capabilities, link state and statistics.

use crate::error::{strerror, Error, Result};
use crate::packet::Batch;
use crate::{Eal, Mempool};
use dpdk_sys::consts::{self, Flag};
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// DPDK's port number.
pub type PortId = u16;

/// The most PMD threads that keep per-port software counters; PMD threads
/// past this share the last slot's counters (with atomic adds).
pub const MAX_PMDS: usize = 64;

/// Where a port comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSource {
    /// A PCI device (NIC or VF): `0000:3b:00.0[,driver args]`.
    Pci(String),
    /// A virtual device: `net_memif0,role=server,socket=/run/x.sock`.
    Vdev(String),
}

impl PortSource {
    /// The DPDK device name (devargs up to the first comma).
    pub fn device_name(&self) -> &str {
        let s = match self {
            PortSource::Pci(s) | PortSource::Vdev(s) => s,
        };
        s.split(',').next().unwrap_or(s)
    }
}

/// How to set a port up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The name users know it by (used in every error and counter).
    pub name: String,
    /// Device.
    pub source: PortSource,
    /// Receive queues.
    pub n_rxq: u16,
    /// Transmit queues (one per PMD thread that sends to it).
    pub n_txq: u16,
    /// Receive descriptors per queue.
    pub rxd: u16,
    /// Transmit descriptors per queue.
    pub txd: u16,
    /// MTU (None: the device's default). Virtual devices whose driver
    /// advertises a largest frame below it although they carry any frame
    /// (DPDK 22.11's memif and AF_PACKET say 1518, yet chain buffers or
    /// use larger PACKET_MMAP frames) get no ethdev MTU: the port then
    /// reports the configured one. A PCI device is held to its limit.
    pub mtu: Option<u16>,
    /// Receive every frame, whatever its destination MAC.
    pub promiscuous: bool,
    /// Spread flows over the rx queues by RSS hash (when n_rxq > 1 and the
    /// device can).
    pub rss: bool,
    /// Ask the NIC to check IPv4/TCP/UDP checksums on receive, where it can.
    pub rx_checksum_offload: bool,
    /// Transmit offloads to enable where the device has them.
    pub tx_offloads: TxOffloads,
}

/// Which transmit offloads a port may use (a driver that advertises one
/// wrongly is held back: OVS's X710/E810 outer UDP checksum reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxOffloads {
    /// Every one the device advertises that the switch uses.
    #[default]
    Auto,
    /// None: software does it all.
    Off,
    /// Only these (`TX_*` bits of this module), where the device has them.
    Only(u64),
}

/// The outer IPv4 header checksum of tunnel packets (the switch's bit).
pub const TX_OUTER_IPV4_CKSUM: u64 = 1 << 0;
/// The outer UDP checksum of tunnel packets.
pub const TX_OUTER_UDP_CKSUM: u64 = 1 << 1;
/// TCP segmentation (TSO).
pub const TX_TSO: u64 = 1 << 2;
/// TCP segmentation inside VXLAN.
pub const TX_VXLAN_TSO: u64 = 1 << 3;
/// TCP segmentation inside Geneve.
pub const TX_GENEVE_TSO: u64 = 1 << 4;
/// TCP segmentation inside GRE.
pub const TX_GRE_TSO: u64 = 1 << 5;
/// The (inner) IPv4 header checksum.
pub const TX_IPV4_CKSUM: u64 = 1 << 6;
/// The (inner) TCP and UDP checksums.
pub const TX_L4_CKSUM: u64 = 1 << 7;
/// Every transmit offload the switch knows, by the names configurations
/// use.
pub const TX_OFFLOAD_NAMES: [(&str, u64); 8] = [
    ("outer_ipv4_cksum", TX_OUTER_IPV4_CKSUM),
    ("outer_udp_cksum", TX_OUTER_UDP_CKSUM),
    ("tso", TX_TSO),
    ("vxlan_tso", TX_VXLAN_TSO),
    ("geneve_tso", TX_GENEVE_TSO),
    ("gre_tso", TX_GRE_TSO),
    ("ipv4_cksum", TX_IPV4_CKSUM),
    ("l4_cksum", TX_L4_CKSUM),
];

/// Every `TX_*` bit.
pub const TX_ALL: u64 = (1 << 8) - 1;

impl PortConfig {
    /// One rx and one tx queue, 1024 descriptors each, promiscuous, RSS and
    /// checksum offload where the device has them.
    pub fn new(name: &str, source: PortSource) -> PortConfig {
        PortConfig {
            name: name.into(),
            source,
            n_rxq: 1,
            n_txq: 1,
            rxd: 1024,
            txd: 1024,
            mtu: None,
            promiscuous: true,
            rss: true,
            rx_checksum_offload: true,
            tx_offloads: TxOffloads::Auto,
        }
    }
}

/// Offload capabilities a port reported, and what was enabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadCaps {
    /// The NIC checks IPv4 header checksums on receive.
    pub rx_ipv4_cksum: bool,
    /// The NIC checks TCP and UDP checksums on receive.
    pub rx_l4_cksum: bool,
    /// The NIC computes IPv4 header checksums on transmit.
    pub tx_ipv4_cksum: bool,
    /// The NIC computes TCP and UDP checksums on transmit.
    pub tx_l4_cksum: bool,
    /// The NIC computes the outer IPv4 checksum of tunnel packets.
    pub tx_outer_ipv4_cksum: bool,
    /// The NIC computes the outer UDP checksum of tunnel packets.
    pub tx_outer_udp_cksum: bool,
    /// TCP segmentation.
    pub tx_tso: bool,
    /// TCP segmentation inside VXLAN.
    pub tx_vxlan_tso: bool,
    /// TCP segmentation inside Geneve.
    pub tx_geneve_tso: bool,
    /// RSS hash delivered in the mbuf.
    pub rss_hash: bool,
    /// Raw `rx_offload_capa`.
    pub rx_capa: u64,
    /// Raw `tx_offload_capa`.
    pub tx_capa: u64,
    /// The rx offloads enabled.
    pub rx_enabled: u64,
    /// The transmit offloads enabled (`TX_*` bits of this module).
    pub tx_enabled: u64,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// Up.
    pub up: bool,
    /// Speed in Mbps (0: unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Hardware counters (from the driver) plus the software counters the
/// PMD threads keep for this port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Dropped by the NIC: rx ring full (we did not poll fast enough).
    pub rx_missed: u64,
    /// Receive errors reported by the NIC.
    pub rx_errors: u64,
    /// Transmit errors reported by the NIC.
    pub tx_errors: u64,
    /// Receive failures for lack of mbufs.
    pub rx_nombuf: u64,
    /// Dropped by the switch: malformed frames (runts, bad headers).
    pub rx_malformed: u64,
    /// Dropped by the switch: tx ring full.
    pub tx_dropped: u64,
}

impl PortStats {
    /// Received frames dropped, whatever the reason: ring full, no mbuf,
    /// malformed.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_missed + self.rx_nombuf + self.rx_malformed
    }
}

/// The `RTE_MBUF_F_*` and offload flag values, read once from the C side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OffloadFlags {
    pub mbuf_rx_rss_hash: u64,
    pub mbuf_rx_ip_cksum_mask: u64,
    pub mbuf_rx_ip_cksum_bad: u64,
    pub mbuf_rx_l4_cksum_mask: u64,
    pub mbuf_rx_l4_cksum_bad: u64,
    pub mbuf_rx_ip_cksum_good: u64,
    pub mbuf_rx_l4_cksum_good: u64,
}

pub(crate) fn offload_flags() -> &'static OffloadFlags {
    static F: OnceLock<OffloadFlags> = OnceLock::new();
    F.get_or_init(|| OffloadFlags {
        mbuf_rx_rss_hash: consts::get(Flag::MbufRxRssHash),
        mbuf_rx_ip_cksum_mask: consts::get(Flag::MbufRxIpCksumMask),
        mbuf_rx_ip_cksum_bad: consts::get(Flag::MbufRxIpCksumBad),
        mbuf_rx_l4_cksum_mask: consts::get(Flag::MbufRxL4CksumMask),
        mbuf_rx_l4_cksum_bad: consts::get(Flag::MbufRxL4CksumBad),
        mbuf_rx_ip_cksum_good: consts::get(Flag::MbufRxIpCksumGood),
        mbuf_rx_l4_cksum_good: consts::get(Flag::MbufRxL4CksumGood),
    })
}

/// Whether the NIC marked a packet's IP or L4 checksum bad.
#[inline]
pub fn rx_cksum_bad(ol_flags: u64) -> bool {
    let f = offload_flags();
    (ol_flags & f.mbuf_rx_ip_cksum_mask) == f.mbuf_rx_ip_cksum_bad
        || (ol_flags & f.mbuf_rx_l4_cksum_mask) == f.mbuf_rx_l4_cksum_bad
}

/// The `RTE_MBUF_F_TX_*` flags a tunnel's transmit offloads set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelTxFlags {
    /// `RTE_MBUF_F_TX_OUTER_IPV4`.
    pub outer_ipv4: u64,
    /// `RTE_MBUF_F_TX_OUTER_IPV6`.
    pub outer_ipv6: u64,
    /// `RTE_MBUF_F_TX_OUTER_IP_CKSUM`.
    pub outer_ip_cksum: u64,
    /// `RTE_MBUF_F_TX_OUTER_UDP_CKSUM`.
    pub outer_udp_cksum: u64,
    /// `RTE_MBUF_F_TX_TUNNEL_VXLAN`.
    pub vxlan: u64,
    /// `RTE_MBUF_F_TX_TUNNEL_GENEVE`.
    pub geneve: u64,
    /// `RTE_MBUF_F_TX_TUNNEL_GRE`.
    pub gre: u64,
}

/// The flags of a large TCP segment to be cut into MSS-sized ones: what
/// a vhost-user guest's GSO request arrives with (`RTE_MBUF_F_RX_LRO`
/// with `tso_segsz`, or `RTE_MBUF_F_TX_TCP_SEG` with legacy offload flags),
/// and what a sender asks a NIC with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegFlags {
    /// `RTE_MBUF_F_RX_LRO`.
    pub rx_lro: u64,
    /// `RTE_MBUF_F_TX_TCP_SEG`.
    pub tx_tcp_seg: u64,
    /// `RTE_MBUF_F_TX_IPV4`.
    pub tx_ipv4: u64,
    /// `RTE_MBUF_F_TX_IP_CKSUM`.
    pub tx_ip_cksum: u64,
    /// `RTE_MBUF_F_TX_TCP_CKSUM`.
    pub tx_tcp_cksum: u64,
    /// `RTE_MBUF_F_TX_UDP_CKSUM`.
    pub tx_udp_cksum: u64,
    /// `RTE_MBUF_F_TX_IPV6`.
    pub tx_ipv6: u64,
    /// `RTE_MBUF_F_RX_L4_CKSUM_NONE`: the L4 checksum in the data is not
    /// complete (a guest's partial one), the data is intact.
    pub rx_l4_cksum_none: u64,
}

/// DPDK's values of [`SegFlags`], read once.
pub fn seg_flags() -> &'static SegFlags {
    static F: OnceLock<SegFlags> = OnceLock::new();
    F.get_or_init(|| SegFlags {
        rx_lro: consts::get(Flag::MbufRxLro),
        tx_tcp_seg: consts::get(Flag::MbufTxTcpSeg),
        tx_ipv4: consts::get(Flag::MbufTxIpv4),
        tx_ip_cksum: consts::get(Flag::MbufTxIpCksum),
        tx_tcp_cksum: consts::get(Flag::MbufTxTcpCksum),
        tx_udp_cksum: consts::get(Flag::MbufTxUdpCksum),
        tx_ipv6: consts::get(Flag::MbufTxIpv6),
        rx_l4_cksum_none: consts::get(Flag::MbufRxL4CksumNone),
    })
}

/// DPDK's values of [`TunnelTxFlags`], read once.
pub fn tunnel_tx_flags() -> &'static TunnelTxFlags {
    static F: OnceLock<TunnelTxFlags> = OnceLock::new();
    F.get_or_init(|| TunnelTxFlags {
        outer_ipv4: consts::get(Flag::MbufTxOuterIpv4),
        outer_ipv6: consts::get(Flag::MbufTxOuterIpv6),
        outer_ip_cksum: consts::get(Flag::MbufTxOuterIpCksum),
        outer_udp_cksum: consts::get(Flag::MbufTxOuterUdpCksum),
        vxlan: consts::get(Flag::MbufTxTunnelVxlan),
        geneve: consts::get(Flag::MbufTxTunnelGeneve),
        gre: consts::get(Flag::MbufTxTunnelGre),
    })
}

/// Whether the NIC checked a packet's IP header checksum and found it good.
#[inline]
pub fn rx_ip_cksum_good(ol_flags: u64) -> bool {
    let f = offload_flags();
    (ol_flags & f.mbuf_rx_ip_cksum_mask) == f.mbuf_rx_ip_cksum_good
}

/// Whether the NIC checked a packet's TCP/UDP checksum and found it good.
#[inline]
pub fn rx_l4_cksum_good(ol_flags: u64) -> bool {
    let f = offload_flags();
    (ol_flags & f.mbuf_rx_l4_cksum_mask) == f.mbuf_rx_l4_cksum_good
}

/// Software counters of one PMD thread for one port, on their own cache
/// line. Written by that thread only (plain load + store), read by anyone.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct SwCounters {
    /// Malformed frames dropped.
    pub rx_malformed: AtomicU64,
    /// Frames the tx ring did not take.
    pub tx_dropped: AtomicU64,
}

impl SwCounters {
    /// Adds to a counter that only the calling PMD thread writes.
    #[inline]
    pub fn bump(c: &AtomicU64, n: u64) {
        // Single writer: a relaxed load and store, no locked RMW; readers
        // see a value that only grows.
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// An ethdev port, configured and started. Stopped and closed on drop.
#[derive(Debug)]
pub struct Port {
    id: PortId,
    name: String,
    device: String,
    is_vdev: bool,
    caps: OffloadCaps,
    n_rxq: u16,
    n_txq: u16,
    mtu: u16,
    driver: String,
    /// The kernel interface of an AF_PACKET / AF_XDP port, whose carrier
    /// is the port's link (DPDK 22.11's drivers report a fixed "up").
    kernel_iface: Option<String>,
    sw: Box<[SwCounters]>,
    _pool: Arc<Mempool>,
}

fn port_err(port: &str, op: &'static str, ret: i32) -> Error {
    Error::Port { port: port.into(), op, reason: strerror(ret) }
}

fn invalid(port: &str, option: &str, why: String) -> Error {
    Error::InvalidOption { option: format!("port {port}: {option}"), why }
}

fn port_by_name(device: &str) -> Option<PortId> {
    let c = CString::new(device).ok()?;
    let mut id: u16 = 0;
    // SAFETY: c is a valid C string; id is a valid out pointer.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    (ret == 0).then_some(id)
}

impl Port {
    /// Probes the device (unless EAL already did, from `--vdev`), checks
    /// the configuration against what the device can do, configures queues
    /// and offloads, and starts it.
    pub fn open(_eal: &Eal, cfg: &PortConfig, pool: Arc<Mempool>) -> Result<Port> {
        let name = cfg.name.as_str();
        let device = cfg.source.device_name().to_string();
        let is_vdev = matches!(cfg.source, PortSource::Vdev(_));
        if cfg.n_rxq == 0 {
            return Err(invalid(name, "n_rxq", "at least one rx queue is needed".into()));
        }
        if cfg.n_txq == 0 {
            return Err(invalid(name, "n_txq", "at least one tx queue is needed".into()));
        }
        for (opt, v) in [("rxd", cfg.rxd), ("txd", cfg.txd)] {
            if !v.is_power_of_two() || v < 32 {
                return Err(invalid(name, opt, format!("{v} descriptors: use a power of two, at least 32")));
            }
        }
        let mut probed_here = false;
        let id = match port_by_name(&device) {
            Some(id) => id,
            None => {
                let ret = match &cfg.source {
                    PortSource::Vdev(devargs) => {
                        crate::eal::check_vdev(devargs)?;
                        // SAFETY: a plain query of the EAL's port table.
                        let ports = unsafe { dpdk_sys::rte_eth_dev_count_total() };
                        if u32::from(ports) >= dpdk_sys::RTE_MAX_ETHPORTS {
                            return Err(invalid(
                                name,
                                "device",
                                format!(
                                    "DPDK holds {} ports at most (RTE_MAX_ETHPORTS of this libdpdk build) and all are in use",
                                    dpdk_sys::RTE_MAX_ETHPORTS
                                ),
                            ));
                        }
                        let (dname, args) = devargs.split_once(',').unwrap_or((devargs, ""));
                        let cn = CString::new(dname).expect("checked name");
                        let ca =
                            CString::new(args).map_err(|_| invalid(name, "devargs", "contains a NUL byte".into()))?;
                        // SAFETY: both are valid C strings for the call.
                        unsafe { dpdk_sys::rte_vdev_init(cn.as_ptr(), ca.as_ptr()) }
                    }
                    PortSource::Pci(devargs) => {
                        let c = CString::new(devargs.as_str())
                            .map_err(|_| invalid(name, "pci", "contains a NUL byte".into()))?;
                        // SAFETY: c is a valid C string for the call.
                        unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) }
                    }
                };
                if ret < 0 {
                    let what = match &cfg.source {
                        PortSource::Vdev(d) => format!(
                            "the driver refused devargs `{d}`: {} (DPDK's log above names the bad key)",
                            strerror(ret)
                        ),
                        PortSource::Pci(d) => format!(
                            "probing PCI device `{d}` failed: {} (is it bound to vfio-pci and in eal.pci_allow?)",
                            strerror(ret)
                        ),
                    };
                    return Err(invalid(name, "device", what));
                }
                probed_here = true;
                port_by_name(&device).ok_or_else(|| {
                    invalid(name, "device", format!("`{device}` was probed but is not an ethdev port"))
                })?
            }
        };
        let mut port = Port {
            id,
            name: name.into(),
            device,
            is_vdev: is_vdev && probed_here,
            caps: OffloadCaps::default(),
            n_rxq: cfg.n_rxq,
            n_txq: cfg.n_txq,
            mtu: 1500,
            driver: String::new(),
            kernel_iface: match &cfg.source {
                PortSource::Vdev(d) if d.starts_with("net_af_packet") || d.starts_with("net_af_xdp") => {
                    d.split(',').find_map(|kv| kv.strip_prefix("iface=")).map(str::to_string)
                }
                _ => None,
            },
            sw: (0..MAX_PMDS).map(|_| SwCounters::default()).collect(),
            _pool: pool,
        };
        // From here, Drop closes the port if set-up fails.
        port.configure(cfg)?;
        Ok(port)
    }

    fn configure(&mut self, cfg: &PortConfig) -> Result<()> {
        let name = self.name.clone();
        let id = self.id;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: id is a valid port; info is a valid out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if ret != 0 {
            return Err(port_err(&name, "rte_eth_dev_info_get", ret));
        }
        if !info.driver_name.is_null() {
            // SAFETY: driver_name is a static C string of the driver.
            self.driver = unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned();
        }
        if cfg.n_rxq > info.max_rx_queues {
            return Err(invalid(
                &name,
                "n_rxq",
                format!("{} exceeds {}'s maximum of {}", cfg.n_rxq, self.driver, info.max_rx_queues),
            ));
        }
        if cfg.n_txq > info.max_tx_queues {
            return Err(invalid(
                &name,
                "n_txq",
                format!("{} exceeds {}'s maximum of {}", cfg.n_txq, self.driver, info.max_tx_queues),
            ));
        }
        if let Some(mtu) = cfg.mtu {
            if u32::from(mtu) > u32::from(info.max_mtu) || u32::from(mtu) < u32::from(info.min_mtu) {
                return Err(invalid(
                    &name,
                    "mtu",
                    format!("{mtu} is outside {}'s range {}..={}", self.driver, info.min_mtu, info.max_mtu),
                ));
            }
            let need = usize::from(mtu) + 14 + 8 + crate::mempool::HEADROOM;
            if need > usize::from(self._pool.data_room()) {
                return Err(invalid(
                    &name,
                    "mtu",
                    format!(
                        "{mtu} needs mbufs of {need} bytes, the pool's are {} (mbuf sizes follow the largest MTU)",
                        self._pool.data_room()
                    ),
                ));
            }
        }
        // Frames of the MTU (Ethernet header, FCS) beyond what the driver
        // says it receives: see PortConfig::mtu.
        let soft_mtu = cfg.mtu.filter(|m| u32::from(*m) + 18 > info.max_rx_pktlen);
        if let (Some(m), false) = (soft_mtu, matches!(cfg.source, PortSource::Vdev(_))) {
            return Err(invalid(
                &name,
                "mtu",
                format!(
                    "{m} needs frames of {} bytes; {} receives at most {}",
                    u32::from(m) + 18,
                    self.driver,
                    info.max_rx_pktlen
                ),
            ));
        }
        let eth_mtu = cfg.mtu.filter(|_| soft_mtu.is_none());
        let rx_capa = info.rx_offload_capa;
        let tx_capa = info.tx_offload_capa;
        let has = |capa: u64, f: Flag| capa & consts::get(f) != 0;
        let mut conf = dpdk_sys::rte_eth_conf::default();
        let mut rx_off = 0u64;
        if cfg.rx_checksum_offload {
            for f in [Flag::RxOffloadIpv4Cksum, Flag::RxOffloadUdpCksum, Flag::RxOffloadTcpCksum] {
                if has(rx_capa, f) {
                    rx_off |= consts::get(f);
                }
            }
        }
        let rss_hf = (consts::get(Flag::RssIp) | consts::get(Flag::RssTcp) | consts::get(Flag::RssUdp))
            & info.flow_type_rss_offloads;
        if cfg.rss && cfg.n_rxq > 1 && rss_hf != 0 {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            if has(rx_capa, Flag::RxOffloadRssHash) {
                rx_off |= consts::get(Flag::RxOffloadRssHash);
            }
        }
        conf.rxmode.offloads = rx_off;
        let wanted = match cfg.tx_offloads {
            TxOffloads::Auto => TX_ALL,
            TxOffloads::Off => 0,
            TxOffloads::Only(m) => m,
        };
        let mut tx_enabled = 0;
        for (bit, flags) in [
            (TX_OUTER_IPV4_CKSUM, &[Flag::TxOffloadOuterIpv4Cksum][..]),
            (TX_OUTER_UDP_CKSUM, &[Flag::TxOffloadOuterUdpCksum]),
            (TX_TSO, &[Flag::TxOffloadTcpTso]),
            (TX_VXLAN_TSO, &[Flag::TxOffloadVxlanTnlTso]),
            (TX_GENEVE_TSO, &[Flag::TxOffloadGeneveTnlTso]),
            (TX_GRE_TSO, &[Flag::TxOffloadGreTnlTso]),
            (TX_IPV4_CKSUM, &[Flag::TxOffloadIpv4Cksum]),
            (TX_L4_CKSUM, &[Flag::TxOffloadTcpCksum, Flag::TxOffloadUdpCksum]),
        ] {
            if wanted & bit != 0 && flags.iter().all(|f| has(tx_capa, *f)) {
                for f in flags {
                    conf.txmode.offloads |= consts::get(*f);
                }
                tx_enabled |= bit;
            }
        }
        if has(tx_capa, Flag::TxOffloadMbufFastFree) {
            // Every mbuf we send comes from one pool with refcnt 1.
            conf.txmode.offloads |= consts::get(Flag::TxOffloadMbufFastFree);
        }
        if let Some(mtu) = eth_mtu {
            conf.rxmode.mtu = u32::from(mtu);
        }
        // SAFETY: id is valid; conf is a fully initialised rte_eth_conf.
        let ret = unsafe { dpdk_sys::rte_eth_dev_configure(id, cfg.n_rxq, cfg.n_txq, &conf) };
        if ret != 0 {
            return Err(port_err(&name, "rte_eth_dev_configure", ret));
        }
        let mut rxd = cfg.rxd;
        let mut txd = cfg.txd;
        // SAFETY: id is valid; rxd/txd are valid in/out pointers.
        let ret = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rxd, &mut txd) };
        if ret != 0 {
            return Err(port_err(&name, "rte_eth_dev_adjust_nb_rx_tx_desc", ret));
        }
        // SAFETY: id is a valid port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = u32::try_from(socket).unwrap_or(0);
        for q in 0..cfg.n_rxq {
            // SAFETY: id and q are valid; NULL rx_conf takes the driver's
            // defaults; the pool outlives the port (we hold an Arc).
            let ret =
                unsafe { dpdk_sys::rte_eth_rx_queue_setup(id, q, rxd, socket, std::ptr::null(), self._pool.as_ptr()) };
            if ret != 0 {
                return Err(port_err(&name, "rte_eth_rx_queue_setup", ret));
            }
        }
        for q in 0..cfg.n_txq {
            let mut txconf = info.default_txconf;
            txconf.offloads = conf.txmode.offloads;
            // SAFETY: id and q are valid; txconf is initialised.
            let ret = unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, txd, socket, &txconf) };
            if ret != 0 {
                return Err(port_err(&name, "rte_eth_tx_queue_setup", ret));
            }
        }
        if let Some(mtu) = eth_mtu {
            // SAFETY: id is valid.
            let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(id, mtu) };
            if ret != 0 && ret != -libc::ENOTSUP {
                return Err(port_err(&name, "rte_eth_dev_set_mtu", ret));
            }
        }
        let mut mtu = 0u16;
        // SAFETY: id is valid; mtu is a valid out pointer.
        if unsafe { dpdk_sys::rte_eth_dev_get_mtu(id, &mut mtu) } == 0 {
            self.mtu = mtu;
        }
        if let Some(m) = soft_mtu {
            self.mtu = m;
        }
        // SAFETY: id is valid and configured.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        if ret != 0 {
            return Err(port_err(&name, "rte_eth_dev_start", ret));
        }
        if cfg.promiscuous {
            // Not every vdev has a promiscuous mode (ring, memif): they pass
            // every frame anyway, so ENOTSUP is fine.
            // SAFETY: id is valid.
            let ret = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
            if ret != 0 && ret != -libc::ENOTSUP {
                return Err(port_err(&name, "rte_eth_promiscuous_enable", ret));
            }
        }
        if self.driver == "net_af_packet" {
            self.drop_foreign_frames();
        }
        self.caps = OffloadCaps {
            rx_ipv4_cksum: rx_off & consts::get(Flag::RxOffloadIpv4Cksum) != 0,
            rx_l4_cksum: rx_off & consts::get(Flag::RxOffloadTcpCksum) != 0
                && rx_off & consts::get(Flag::RxOffloadUdpCksum) != 0,
            tx_ipv4_cksum: has(tx_capa, Flag::TxOffloadIpv4Cksum),
            tx_l4_cksum: has(tx_capa, Flag::TxOffloadTcpCksum) && has(tx_capa, Flag::TxOffloadUdpCksum),
            tx_outer_ipv4_cksum: has(tx_capa, Flag::TxOffloadOuterIpv4Cksum),
            tx_outer_udp_cksum: has(tx_capa, Flag::TxOffloadOuterUdpCksum),
            tx_tso: has(tx_capa, Flag::TxOffloadTcpTso),
            tx_vxlan_tso: has(tx_capa, Flag::TxOffloadVxlanTnlTso),
            tx_geneve_tso: has(tx_capa, Flag::TxOffloadGeneveTnlTso),
            rss_hash: rx_off & consts::get(Flag::RxOffloadRssHash) != 0,
            rx_capa,
            tx_capa,
            rx_enabled: rx_off,
            tx_enabled,
        };
        Ok(())
    }

    /// DPDK 22.11's AF_PACKET driver opens each queue's socket for every
    /// interface (`ETH_P_ALL`), sets up its rx ring, and only then binds it
    /// to the port's interface: frames seen meanwhile on *any* interface of
    /// the namespace, other ports' traffic included, wait in the ring. Taken
    /// for frames that came in on this port they would teach the switch that
    /// other ports' MAC addresses live here (and replay old frames). The
    /// port is not in any PMD's set yet, so they are dropped here and the
    /// counters restart from zero. After `bind` no foreign frame enters.
    fn drop_foreign_frames(&self) {
        let mut batch = Batch::new();
        for q in 0..self.n_rxq {
            while self.rx_burst(q, &mut batch) > 0 {
                batch.clear();
            }
        }
        self.reset_stats();
    }

    /// DPDK port id.
    #[inline]
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The user's name for it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// DPDK device name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Driver name (net_memif, net_ice, ...).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Offload capabilities.
    pub fn caps(&self) -> &OffloadCaps {
        &self.caps
    }

    /// Rx queues.
    pub fn n_rxq(&self) -> u16 {
        self.n_rxq
    }

    /// Tx queues.
    pub fn n_txq(&self) -> u16 {
        self.n_txq
    }

    /// MTU in effect.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Receives up to the batch's free room from queue `q`; returns how many
    /// arrived. The caller owns the queue (one thread per queue).
    #[inline]
    pub fn rx_burst(&self, q: u16, batch: &mut Batch) -> usize {
        let room = u16::try_from(batch.room()).unwrap_or(0);
        if room == 0 {
            return 0;
        }
        // SAFETY: the port is started; spare_ptr points at `room` free
        // slots; the driver writes at most `room` mbuf pointers, each now
        // ours.
        let n = usize::from(unsafe { dpdk_sys::vs_eth_rx_burst(self.id, q, batch.spare_ptr(), room) });
        let len = batch.len() + n;
        // SAFETY: the driver initialised n more slots with owned mbufs.
        unsafe { batch.set_len(len) };
        n
    }

    /// Sends the batch on queue `q`; the packets the ring did not take stay
    /// in the batch (at its front) for the caller to retry or drop.
    #[inline]
    pub fn tx_burst(&self, q: u16, batch: &mut Batch) -> usize {
        let n = u16::try_from(batch.len()).unwrap_or(0);
        if n == 0 {
            return 0;
        }
        // SAFETY: the port is started; the first n slots hold owned mbufs;
        // the driver takes ownership of the first `sent`.
        let sent = usize::from(unsafe { dpdk_sys::vs_eth_tx_burst(self.id, q, batch.as_raw_ptr(), n) });
        batch.consume_front(sent);
        sent
    }

    /// Sends the batch and drops (frees) what the ring refused, counting it
    /// in `tx_dropped` of PMD slot `pmd`. Returns packets sent.
    #[inline]
    pub fn tx_burst_or_drop(&self, q: u16, batch: &mut Batch, pmd: usize) -> usize {
        let sent = self.tx_burst(q, batch);
        if !batch.is_empty() {
            SwCounters::bump(&self.sw_counters(pmd).tx_dropped, batch.len() as u64);
            batch.clear();
        }
        sent
    }

    /// The software counters slot of PMD `pmd`.
    #[inline]
    pub fn sw_counters(&self, pmd: usize) -> &SwCounters {
        &self.sw[pmd.min(MAX_PMDS - 1)]
    }

    /// Link state, without waiting.
    pub fn link(&self) -> LinkState {
        let mut l = dpdk_sys::rte_eth_link::default();
        // SAFETY: id is valid; l is a valid out pointer.
        unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut l) };
        // A kernel interface's carrier: a veth whose peer or itself is
        // down has none. Read from sysfs (a control-path call, not per
        // packet).
        let carrier = self.kernel_iface.as_ref().is_none_or(|i| {
            std::fs::read_to_string(format!("/sys/class/net/{i}/carrier")).is_ok_and(|c| c.trim() == "1")
        });
        LinkState {
            up: l.link_status() != 0 && carrier,
            speed_mbps: if l.link_speed == u32::MAX { 0 } else { l.link_speed },
            full_duplex: l.link_duplex() != 0,
        }
    }

    /// The port's MAC address.
    pub fn mac(&self) -> wire::EthernetAddress {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: id is valid; a is a valid out pointer.
        unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut a) };
        wire::EthernetAddress(a.addr_bytes)
    }

    /// Hardware and software counters.
    pub fn stats(&self) -> PortStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: id is valid; s is a valid out pointer.
        unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        let (mut malformed, mut txd) = (0, 0);
        for c in self.sw.iter() {
            malformed += c.rx_malformed.load(Ordering::Relaxed);
            txd += c.tx_dropped.load(Ordering::Relaxed);
        }
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
            rx_malformed: malformed,
            tx_dropped: txd,
        }
    }

    /// Zeroes the driver's counters.
    pub fn reset_stats(&self) {
        // SAFETY: id is valid.
        unsafe { dpdk_sys::rte_eth_stats_reset(self.id) };
    }

    /// The driver's extended statistics by name.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a NULL array asks for the count only.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) };
        let Ok(n) = usize::try_from(n) else { return Vec::new() };
        if n == 0 {
            return Vec::new();
        }
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n];
        let mut vals = vec![dpdk_sys::rte_eth_xstat::default(); n];
        let cap = u32::try_from(n).unwrap_or(u32::MAX);
        // SAFETY: both arrays have n elements, as told.
        let got_n = unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), cap) };
        // SAFETY: as above.
        let got_v = unsafe { dpdk_sys::rte_eth_xstats_get(self.id, vals.as_mut_ptr(), cap) };
        let m = usize::try_from(got_n.min(got_v)).unwrap_or(0).min(n);
        vals[..m]
            .iter()
            .filter_map(|v| {
                let name = names.get(usize::try_from(v.id).ok()?)?;
                // SAFETY: the name is a NUL-terminated array the driver filled.
                let s = unsafe { CStr::from_ptr(name.name.as_ptr()) }.to_string_lossy().into_owned();
                Some((s, v.value))
            })
            .collect()
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: id is a port we configured; stop and close are valid on
        // it in any state; after close the id is not used again.
        unsafe {
            dpdk_sys::rte_eth_dev_stop(self.id);
            dpdk_sys::rte_eth_dev_close(self.id);
        }
        if self.is_vdev {
            if let Ok(c) = CString::new(self.device.as_str()) {
                // SAFETY: c names the vdev we created in open().
                unsafe { dpdk_sys::rte_vdev_uninit(c.as_ptr()) };
            }
        }
    }
}
