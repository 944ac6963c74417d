//! The configuration file's schema. Unknown keys are errors everywhere.

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// DPDK's Environment Abstraction Layer.
    #[serde(default)]
    pub eal: EalSection,
    /// Poll-mode threads.
    #[serde(default)]
    pub pmd: PmdSection,
    /// The control socket.
    #[serde(default)]
    pub control: ControlSection,
    /// Bridges, in file order.
    #[serde(default, rename = "bridge")]
    pub bridges: Vec<Bridge>,
    /// Underlay routes for tunnels, besides the subnets of the uplinks'
    /// `addresses` (which are routed directly).
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
}

/// `[[route]]`: an underlay prefix and the next hop that reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination prefix, `IP/LEN` (`0.0.0.0/0`: the default route).
    pub prefix: String,
    /// Next hop: an address in the subnet of an uplink's `addresses`.
    pub via: String,
}

/// Where EAL's memory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryMode {
    /// 2 MB hugepages from hugetlbfs (production).
    #[default]
    Hugepages,
    /// Hugepages without files (nothing left behind by a crash).
    InMemory,
    /// Ordinary memory: no hugepages needed (tests, small machines).
    NoHuge,
}

/// `[eal]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EalSection {
    /// Cores the process may run on (the control thread floats over them);
    /// empty: every core.
    #[serde(default)]
    pub cores: Vec<usize>,
    /// Memory source.
    #[serde(default)]
    pub memory: MemoryMode,
    /// Megabytes of memory.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    /// Hugepage file prefix (unique per process on a machine).
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    /// Further EAL arguments, passed as they are.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn default_memory_mb() -> u32 {
    1024
}
fn default_file_prefix() -> String {
    "vswitchd".into()
}

impl Default for EalSection {
    fn default() -> EalSection {
        EalSection {
            cores: Vec::new(),
            memory: MemoryMode::default(),
            memory_mb: default_memory_mb(),
            file_prefix: default_file_prefix(),
            extra_args: Vec::new(),
        }
    }
}

/// How rx queues are spread over PMD threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RxqAssignment {
    /// In order, one thread after the other, never moved.
    RoundRobin,
    /// Round robin at start, then moved by measured busy cycles.
    #[default]
    Cycles,
}

/// `[pmd]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PmdSection {
    /// One PMD thread per core; each must be one of `eal.cores` (when that
    /// is given). Empty: the last core.
    #[serde(default)]
    pub cores: Vec<usize>,
    /// Rx-queue assignment policy.
    #[serde(default)]
    pub rxq_assignment: RxqAssignment,
    /// Seconds between rebalances with `cycles`.
    #[serde(default = "default_rebalance_s")]
    pub rebalance_interval_s: u32,
    /// When the exact-match cache (EMC) of an OpenFlow bridge is looked
    /// up before its megaflows.
    #[serde(default)]
    pub emc: EmcMode,
    /// Entries of each PMD thread's exact-match cache per OpenFlow
    /// bridge (a power of two, 2 to 1048576).
    #[serde(default = "default_emc_entries")]
    pub emc_entries: u32,
    /// One in this many keys that hit a megaflow goes into the exact-match
    /// cache (1: every one; 0: none), as OVS's `emc-insert-inv-prob`.
    #[serde(default = "default_emc_insert_inv_prob")]
    pub emc_insert_inv_prob: u32,
    /// A megaflow without a packet for this many milliseconds is removed
    /// (at least 100).
    #[serde(default = "default_megaflow_max_idle_ms")]
    pub megaflow_max_idle_ms: u32,
    /// Megaflows each PMD thread holds at most per OpenFlow bridge:
    /// `"auto"` (the default) starts at 262144 and doubles whenever a
    /// cache fills, up to 4194304 or a quarter of the machine's memory
    /// over all PMD threads (about 770 bytes a megaflow); a number (1 to
    /// 4194304) fixes it. A full cache that cannot grow starts over.
    #[serde(default)]
    pub megaflow_limit: MegaflowLimit,
}

/// When the exact-match cache is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EmcMode {
    /// While megaflow lookups probe two subtables or more per packet on
    /// average (below that, hashing the whole key costs what it saves).
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

fn default_rebalance_s() -> u32 {
    60
}

fn default_emc_entries() -> u32 {
    8192
}

fn default_emc_insert_inv_prob() -> u32 {
    100
}

fn default_megaflow_max_idle_ms() -> u32 {
    10_000
}

/// `[pmd] megaflow_limit`: grown by the caches, or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MegaflowLimit {
    /// Start at 262,144 and double when full (see [`PmdSection`]).
    #[default]
    Auto,
    /// This many, never more.
    Fixed(u32),
}

impl MegaflowLimit {
    /// Megaflows a cache starts with.
    pub const AUTO_START: u32 = 262_144;
    /// The most any cache holds.
    pub const MAX: u32 = 4_194_304;

    /// The limit a cache starts with.
    pub fn initial(self) -> u32 {
        match self {
            MegaflowLimit::Auto => Self::AUTO_START,
            MegaflowLimit::Fixed(n) => n,
        }
    }
}

impl Serialize for MegaflowLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MegaflowLimit::Auto => s.serialize_str("auto"),
            MegaflowLimit::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for MegaflowLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MegaflowLimit, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = MegaflowLimit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"auto\" or a number of megaflows from 1 to 4194304")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MegaflowLimit, E> {
                match v {
                    "auto" => Ok(MegaflowLimit::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MegaflowLimit, E> {
                u32::try_from(v)
                    .map(MegaflowLimit::Fixed)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MegaflowLimit, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for PmdSection {
    fn default() -> PmdSection {
        PmdSection {
            cores: Vec::new(),
            rxq_assignment: RxqAssignment::default(),
            rebalance_interval_s: default_rebalance_s(),
            emc: EmcMode::default(),
            emc_entries: default_emc_entries(),
            emc_insert_inv_prob: default_emc_insert_inv_prob(),
            megaflow_max_idle_ms: default_megaflow_max_idle_ms(),
            megaflow_limit: MegaflowLimit::Auto,
        }
    }
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// Unix socket path of the JSON-RPC control socket (mode 0600).
    #[serde(default = "default_socket")]
    pub socket: String,
    /// `IP:PORT` to serve Prometheus metrics on (`GET /metrics`); none
    /// when absent.
    #[serde(default)]
    pub metrics: Option<String>,
}

fn default_socket() -> String {
    "/run/vswitch/vswitchd.sock".into()
}

impl Default for ControlSection {
    fn default() -> ControlSection {
        ControlSection { socket: default_socket(), metrics: None }
    }
}

/// What a bridge does when no controller is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FailMode {
    /// Keep the flow tables; send nothing new anywhere.
    Secure,
    /// Behave as a MAC-learning switch.
    #[default]
    Standalone,
}

/// `[[bridge]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    /// Name (1-15 characters: letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// OpenFlow datapath id: 16 hex digits (None: derived from the name).
    #[serde(default)]
    pub datapath_id: Option<String>,
    /// Behaviour without controllers.
    #[serde(default)]
    pub fail_mode: FailMode,
    /// OpenFlow controllers: `ptcp:PORT[:IP]` (listen) or `tcp:IP:PORT`.
    #[serde(default)]
    pub controllers: Vec<String>,
    /// Seconds a learned MAC lives without traffic.
    #[serde(default = "default_aging")]
    pub mac_aging_s: u32,
    /// Most MACs learned per bridge.
    #[serde(default = "default_mac_table")]
    pub mac_table_size: u32,
    /// Ports, in file order.
    #[serde(default, rename = "port")]
    pub ports: Vec<Port>,
    /// Addresses whose ARP requests the bridge answers itself (its ARP
    /// responder), never flooding them.
    #[serde(default, rename = "arp")]
    pub arp: Vec<ArpEntry>,
    /// OpenFlow flow tables (1-254).
    #[serde(default = "default_flow_tables")]
    pub flow_tables: u8,
    /// Flows each OpenFlow table holds at most (1 to 16,777,216); a
    /// flow-mod beyond it gets OFPFMFC_TABLE_FULL. A reload applies a new
    /// size at once (flows already in a table stay).
    #[serde(default = "default_flow_table_size")]
    pub flow_table_size: u32,
}

fn default_flow_table_size() -> u32 {
    1_000_000
}

fn default_flow_tables() -> u8 {
    254
}
fn default_aging() -> u32 {
    300
}
fn default_mac_table() -> u32 {
    8192
}

/// `[[bridge.arp]]`: an address the bridge's ARP responder answers for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArpEntry {
    /// The IPv4 address asked for.
    pub ip: String,
    /// The MAC the answer gives.
    pub mac: String,
    /// The VLAN the request comes on (0: untagged, or a port without VLAN
    /// handling).
    #[serde(default)]
    pub vlan: u16,
}

/// How a port is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortType {
    /// A DPDK ethdev: a PCI device (`pci`) or vdev devargs (`devargs`).
    Dpdk,
    /// AF_XDP on a kernel interface (`iface`), e.g. a container's veth.
    Afxdp,
    /// AF_PACKET on a kernel interface (`iface`).
    Afpacket,
    /// A TAP device the switch creates (`iface`: its name).
    Tap,
    /// The bridge's own interface towards the host (a TAP named after the
    /// port).
    Internal,
    /// A VXLAN tunnel (RFC 7348) to `remote_ip`, over the underlay of the
    /// ports with `addresses`.
    Vxlan,
    /// A Geneve tunnel (RFC 8926).
    Geneve,
    /// Ethernet over GRE (with a key).
    Gre,
}

impl PortType {
    /// Whether the type is a tunnel (no device of its own: its frames
    /// travel encapsulated through an uplink).
    pub fn is_tunnel(self) -> bool {
        matches!(self, PortType::Vxlan | PortType::Geneve | PortType::Gre)
    }
}

/// VLAN behaviour of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VlanMode {
    /// Untagged frames belong to `tag`; tagged frames are dropped.
    Access,
    /// Tagged frames of `trunks` (empty: every VLAN) pass as they are.
    Trunk,
    /// No VLAN handling: the port carries whatever arrives (VLAN 0).
    #[default]
    None,
}

/// `[[bridge.port]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Name, unique in the switch.
    pub name: String,
    /// Attachment.
    #[serde(rename = "type")]
    pub kind: PortType,
    /// `dpdk`: PCI address (`0000:3b:00.0`), NIC or VF.
    #[serde(default)]
    pub pci: Option<String>,
    /// `dpdk`: vdev devargs (`net_memif0,role=server,socket=/run/x.sock`).
    #[serde(default)]
    pub devargs: Option<String>,
    /// `afxdp`, `afpacket`: the kernel interface; `tap`: the name to give.
    #[serde(default)]
    pub iface: Option<String>,
    /// Requested OpenFlow port number (1-65279), unique in the bridge.
    #[serde(default)]
    pub ofport: Option<u32>,
    /// VLAN mode.
    #[serde(default)]
    pub vlan_mode: VlanMode,
    /// `access`: the VLAN (1-4094).
    #[serde(default)]
    pub tag: Option<u16>,
    /// `trunk`: allowed VLANs (1-4094 each; empty: all).
    #[serde(default)]
    pub trunks: Vec<u16>,
    /// MTU (68-9600; mbufs are sized for the largest).
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Receive queues.
    #[serde(default = "default_rxq")]
    pub n_rxq: u16,
    /// Cross-connect (VPP's `l2 xconnect`): every frame received on this
    /// port is sent, as it is, to the named port of the same bridge, with
    /// no learning and no flooding. A cross-connected port is not part of
    /// the bridge's L2 switching. Set it on both ports for both directions.
    #[serde(default)]
    pub peer: Option<String>,
    /// Uplinks: the switch's own underlay addresses on this port
    /// (`IP/LEN`), which tunnel endpoints use; the switch answers ARP and
    /// ping for them itself.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Tunnels: the remote endpoint's underlay address, or `flow` (each
    /// frame's own, set by OpenFlow `set_field:...->tun_dst`).
    #[serde(default)]
    pub remote_ip: Option<String>,
    /// Tunnels: the local endpoint, one of an uplink's `addresses`
    /// (default: the address of the uplink the route to `remote_ip`
    /// leaves by).
    #[serde(default)]
    pub local_ip: Option<String>,
    /// Tunnels: the VNI (VXLAN, Geneve: 0 to 16777215) or the GRE key;
    /// `"flow"`: each frame's `tunnel_id`, set by OpenFlow (and any is
    /// received).
    #[serde(default)]
    pub key: Option<TunnelKey>,
    /// Tunnels: the UDP destination port (VXLAN: 4789, Geneve: 6081; none
    /// for GRE).
    #[serde(default)]
    pub dst_port: Option<u16>,
    /// Tunnels: compute the outer UDP checksum (IPv4 underlay; otherwise
    /// it is zero, as RFC 7348 allows), or GRE's.
    #[serde(default)]
    pub csum: bool,
    /// Tunnels: the outer TTL (1-255).
    #[serde(default = "default_tunnel_ttl")]
    pub ttl: u8,
    /// Tunnels: the outer TOS byte (DSCP and ECN), or `"inherit"`: each
    /// frame's own (its IPv4 TOS or IPv6 traffic class; 0 for others).
    #[serde(default)]
    pub tos: TunnelTos,
    /// Tunnels: set Don't Fragment on the outer IPv4 header.
    #[serde(default = "default_true")]
    pub df: bool,
    /// Transmit offloads the port may use: `"auto"` (every one the device
    /// advertises), `"off"`, or a list of [`crate::TX_OFFLOADS`].
    #[serde(default)]
    pub tx_offload: TxOffload,
    /// Policing of what the port receives (a container's egress), bits
    /// per second: a single-rate two-colour policer (what is over the rate
    /// is dropped). CNI's `egressRate`.
    #[serde(default)]
    pub ingress_rate: Option<u64>,
    /// Its burst, bits (default: 10 ms of the rate, at least two frames of
    /// the port's MTU). CNI's `egressBurst`.
    #[serde(default)]
    pub ingress_burst: Option<u64>,
    /// Policing of what the port sends (a container's ingress), bits per
    /// second. CNI's `ingressRate`.
    #[serde(default)]
    pub egress_rate: Option<u64>,
    /// Its burst, bits. CNI's `ingressBurst`.
    #[serde(default)]
    pub egress_burst: Option<u64>,
    /// A three-colour policer on what the port receives (instead of
    /// `ingress_rate`).
    #[serde(default)]
    pub ingress_policer: Option<Policer>,
    /// A three-colour policer on what the port sends (instead of
    /// `egress_rate`).
    #[serde(default)]
    pub egress_policer: Option<Policer>,
    /// Egress shaping: what the port sends is queued in classes and sent
    /// at the rates they allow.
    #[serde(default)]
    pub shaper: Option<Shaper>,
}

/// A port's egress scheduler: the port's rate, shared by classes (each a
/// guaranteed rate and a ceiling up to which it borrows what others leave
/// unused), each class holding queues served by strict priority and then
/// by weight. Rates count frames from the Ethernet header on (no FCS,
/// preamble or gap), as Linux's HTB does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Shaper {
    /// The port's rate, bits per second.
    pub rate: u64,
    /// Its burst, bits (default: 1 ms of the rate, at least two frames).
    #[serde(default)]
    pub burst: Option<u64>,
    /// The class of frames no other rule classes (default: the first).
    #[serde(default)]
    pub default_class: Option<u32>,
    /// Frames the scheduler holds in all its queues at most (default and
    /// at most: its share of the switch's mbufs, a quarter of the pool
    /// divided among the shaped ports, so that deep queues never starve
    /// the other ports).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The classes (none: one class at the port's rate).
    #[serde(default, rename = "class")]
    pub classes: Vec<ShaperClass>,
}

/// A class of a port's scheduler (a tenant's, a container's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShaperClass {
    /// Its number: the OpenFlow queue id `set_queue` names.
    pub id: u32,
    /// Guaranteed rate, bits per second (0: it only borrows).
    #[serde(default)]
    pub rate: u64,
    /// Ceiling, bits per second (default: the port's rate).
    #[serde(default)]
    pub ceil: Option<u64>,
    /// Burst of the guarantee, bits (default: 1 ms of it, at least two
    /// frames).
    #[serde(default)]
    pub burst: Option<u64>,
    /// Burst of the ceiling, bits (default as `burst`).
    #[serde(default)]
    pub cburst: Option<u64>,
    /// Frames received on these ports go to this class (a container's
    /// egress, wherever it leaves), unless `set_queue` chose another.
    #[serde(default)]
    pub in_ports: Vec<String>,
    /// The queues (none: one, tail drop, the default depth).
    #[serde(default, rename = "queue")]
    pub queues: Vec<ShaperQueue>,
}

/// A queue of a class.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShaperQueue {
    /// Lower is served first (0-7).
    #[serde(default)]
    pub priority: u8,
    /// Share among the class's queues of the same priority (1-1000).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Frames with these DSCP values go here.
    #[serde(default)]
    pub dscp: Vec<u8>,
    /// Frames with these 802.1Q priorities (PCP) go here (DSCP first).
    #[serde(default)]
    pub pcp: Vec<u8>,
    /// Packets it holds at most (default 256).
    #[serde(default)]
    pub depth: Option<u32>,
    /// Bytes it holds at most (default: `depth` frames of the port's MTU).
    #[serde(default)]
    pub depth_bytes: Option<u64>,
    /// `"tail"`, `"red"` or `"wred"` (per-colour thresholds by DSCP drop
    /// precedence: yellow at 3/4, red at 1/2 of them).
    #[serde(default)]
    pub aqm: Aqm,
    /// RED's lower threshold, packets of averaged depth (default depth/4).
    #[serde(default)]
    pub red_min: Option<u32>,
    /// RED's upper threshold (default depth*3/4).
    #[serde(default)]
    pub red_max: Option<u32>,
    /// RED's drop probability at `red_max`, percent (default 10).
    #[serde(default)]
    pub red_max_p: Option<u32>,
}

fn default_weight() -> u32 {
    1
}

/// A queue's drop policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Aqm {
    /// Drop when full.
    #[default]
    Tail,
    /// Random early detection.
    Red,
    /// Weighted RED: colour (DSCP drop precedence) sets the thresholds.
    Wred,
}

/// A three-colour marker policing a port: green and yellow frames pass,
/// red ones are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policer {
    /// `"srtcm"` (RFC 2697: `cir`, `cbs`, `ebs`), `"trtcm"` (RFC 2698:
    /// `cir`, `cbs`, `pir`, `pbs`) or `"trtcm4115"` (RFC 4115: `cir`,
    /// `cbs`, `eir`, `ebs`).
    #[serde(default)]
    pub marker: Marker,
    /// Rates and bursts in `"bits"` (per second; bursts in bits) or
    /// `"packets"`.
    #[serde(default)]
    pub unit: RateUnit,
    /// Committed rate.
    pub cir: u64,
    /// Committed burst.
    pub cbs: u64,
    /// Excess burst (srtcm, trtcm4115; default 0).
    #[serde(default)]
    pub ebs: Option<u64>,
    /// Excess rate (trtcm4115).
    #[serde(default)]
    pub eir: Option<u64>,
    /// Peak rate (trtcm).
    #[serde(default)]
    pub pir: Option<u64>,
    /// Peak burst (trtcm).
    #[serde(default)]
    pub pbs: Option<u64>,
    /// Colour-aware: a frame's DSCP drop precedence (AFx2 yellow, AFx3
    /// red) caps its colour.
    #[serde(default)]
    pub colour_aware: bool,
}

/// A policer's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Marker {
    /// RFC 2697 single rate three colour.
    #[default]
    Srtcm,
    /// RFC 2698 two rate three colour.
    Trtcm,
    /// RFC 4115 two rate three colour, independent excess bucket.
    Trtcm4115,
}

/// What a policer's rates count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateUnit {
    /// Bits per second, bursts in bits.
    #[default]
    Bits,
    /// Packets per second, bursts in packets.
    Packets,
}

/// A port's `tx_offload`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TxOffload {
    /// What the device advertises.
    #[default]
    Auto,
    /// None.
    Off,
    /// These, where the device has them.
    Only(Vec<String>),
}

impl Serialize for TxOffload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TxOffload::Auto => s.serialize_str("auto"),
            TxOffload::Off => s.serialize_str("off"),
            TxOffload::Only(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TxOffload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TxOffload, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TxOffload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"auto\", \"off\" or a list of offloads")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TxOffload, E> {
                match v {
                    "auto" => Ok(TxOffload::Auto),
                    "off" => Ok(TxOffload::Off),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<TxOffload, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element::<String>()? {
                    v.push(x);
                }
                Ok(TxOffload::Only(v))
            }
        }
        d.deserialize_any(V)
    }
}

fn default_tunnel_ttl() -> u8 {
    64
}

fn default_true() -> bool {
    true
}

fn default_rxq() -> u16 {
    1
}

/// A tunnel port's `key`: fixed, or each frame's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKey {
    /// This VNI or GRE key.
    Fixed(u32),
    /// `"flow"`: the frame's `tunnel_id` (OpenFlow's set-field, or the one
    /// it was received with); received with any.
    Flow,
}

impl TunnelKey {
    /// The fixed key (None for `flow`).
    pub fn fixed(self) -> Option<u32> {
        match self {
            TunnelKey::Fixed(k) => Some(k),
            TunnelKey::Flow => None,
        }
    }
}

impl Serialize for TunnelKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TunnelKey::Fixed(k) => s.serialize_u32(*k),
            TunnelKey::Flow => s.serialize_str("flow"),
        }
    }
}

/// A number up to `max`, or `word` (None).
struct NumberOr {
    word: &'static str,
    max: u64,
    expecting: &'static str,
}

impl serde::de::Visitor<'_> for NumberOr {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<u64>, E> {
        match v == self.word {
            true => Ok(None),
            false => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
        }
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<u64>, E> {
        match v <= self.max {
            true => Ok(Some(v)),
            false => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
        }
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<u64>, E> {
        u64::try_from(v)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            .and_then(|v| self.visit_u64(v))
    }
}

impl<'de> Deserialize<'de> for TunnelKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TunnelKey, D::Error> {
        let v = NumberOr { word: "flow", max: u64::from(u32::MAX), expecting: "a key (0 to 4294967295) or \"flow\"" };
        Ok(match d.deserialize_any(v)? {
            Some(k) => TunnelKey::Fixed(u32::try_from(k).unwrap_or(u32::MAX)),
            None => TunnelKey::Flow,
        })
    }
}

/// A tunnel port's `tos`: fixed, or each frame's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelTos {
    /// This TOS byte.
    Fixed(u8),
    /// `"inherit"`: the inner IPv4 TOS or IPv6 traffic class.
    Inherit,
}

impl Default for TunnelTos {
    fn default() -> TunnelTos {
        TunnelTos::Fixed(0)
    }
}

impl Serialize for TunnelTos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TunnelTos::Fixed(t) => s.serialize_u8(*t),
            TunnelTos::Inherit => s.serialize_str("inherit"),
        }
    }
}

impl<'de> Deserialize<'de> for TunnelTos {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TunnelTos, D::Error> {
        let v = NumberOr { word: "inherit", max: 255, expecting: "a TOS byte (0 to 255) or \"inherit\"" };
        Ok(match d.deserialize_any(v)? {
            Some(t) => TunnelTos::Fixed(u8::try_from(t).unwrap_or(0)),
            None => TunnelTos::Inherit,
        })
    }
}

/// A parsed controller target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Controller {
    /// `ptcp:PORT[:IP]`: listen.
    Listen {
        /// TCP port.
        port: u16,
        /// Address to bind (default 0.0.0.0).
        ip: std::net::IpAddr,
    },
    /// `tcp:IP:PORT`: connect.
    Connect {
        /// Controller address.
        ip: std::net::IpAddr,
        /// TCP port.
        port: u16,
    },
}

impl std::str::FromStr for Controller {
    type Err = String;
    fn from_str(s: &str) -> Result<Controller, String> {
        let port = |p: &str| {
            p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("`{p}` is not a TCP port (1-65535)"))
        };
        let ip = |a: &str| {
            let a = a.trim_start_matches('[').trim_end_matches(']');
            a.parse::<std::net::IpAddr>().map_err(|_| format!("`{a}` is not an IP address"))
        };
        if let Some(rest) = s.strip_prefix("ptcp:") {
            return match rest.split_once(':') {
                None => Ok(Controller::Listen { port: port(rest)?, ip: std::net::Ipv4Addr::UNSPECIFIED.into() }),
                Some((p, a)) => Ok(Controller::Listen { port: port(p)?, ip: ip(a)? }),
            };
        }
        if let Some(rest) = s.strip_prefix("tcp:") {
            let (a, p) = rest.rsplit_once(':').ok_or_else(|| format!("`{s}`: write tcp:IP:PORT"))?;
            return Ok(Controller::Connect { ip: ip(a)?, port: port(p)? });
        }
        Err(format!("`{s}`: a controller is ptcp:PORT[:IP] (listen) or tcp:IP:PORT (connect)"))
    }
}
