//! Forwarders under test: started as their own processes, pinned to the
//! forwarding core, stopped by the bench, and asked for their own cycles
//! per packet.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How generator and forwarder are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Shared-memory packet interface; the forwarder is the memif server.
    Memif,
    /// vhost-user: the generator is virtio_user in server mode, the
    /// forwarder the vhost-user client (how OVS-DPDK attaches VMs and
    /// containers).
    Vhost,
}

/// Which forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Kind {
    /// Ours.
    #[value(name = "vswitch")]
    #[serde(rename = "vswitch")]
    Vswitch,
    /// dpdk-testpmd io-forward.
    #[value(name = "testpmd")]
    #[serde(rename = "testpmd")]
    Testpmd,
    /// OVS-DPDK with in_port->output flows.
    #[value(name = "ovs-dpdk")]
    #[serde(rename = "ovs-dpdk")]
    OvsDpdk,
    /// Another build of ours (`--baseline-vswitchd PATH`), run exactly as
    /// ours is: an A/B comparison of two builds within one run.
    #[value(name = "vswitch-base")]
    #[serde(rename = "vswitch-base")]
    VswitchBase,
    /// Ours without its schedulers (the qos scenario's baseline).
    #[value(name = "vswitch-unshaped")]
    #[serde(rename = "vswitch-unshaped")]
    VswitchUnshaped,
}

impl Kind {
    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Vswitch => "vswitch",
            Kind::Testpmd => "testpmd",
            Kind::OvsDpdk => "ovs-dpdk",
            Kind::VswitchBase => "vswitch-base",
            Kind::VswitchUnshaped => "vswitch-unshaped",
        }
    }

    /// Whether it is a build of vswitchd.
    pub fn is_vswitchd(self) -> bool {
        matches!(self, Kind::Vswitch | Kind::VswitchBase | Kind::VswitchUnshaped)
    }
}

/// Where things go during one run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Scratch directory (sockets, logs, OVS database).
    pub dir: PathBuf,
    /// Generator core.
    pub gen_core: usize,
    /// Forwarder core.
    pub fwd_core: usize,
    /// Transport.
    pub transport: Transport,
    /// Rx/tx queue pairs per port, the same for every forwarder and the
    /// generator (OVS-DPDK's memif ports need 2: its PMD sends on tx queue
    /// 1; see shared/RECIPES.md).
    pub queues: u16,
    /// What the forwarders do.
    pub scenario: Scenario,
    /// Source MACs per direction (the l2 scenario sizes MAC tables for them).
    pub macs: u32,
    /// vswitchd's `[pmd] megaflow_limit` (its default when None).
    pub megaflow_limit: Option<u32>,
    /// The vswitchd binary [`Kind::VswitchBase`] runs.
    pub baseline_vswitchd: Option<PathBuf>,
    /// Tunnel scenarios: remote endpoints. Above 1, both switches have a
    /// tunnel port whose remote is `flow` and OpenFlow tables that pick
    /// each inner destination MAC's remote
    /// ([`crate::flows::remote_flows`]).
    pub remotes: u32,
    /// The qos scenario's schedulers.
    pub qos: Option<crate::qos::QosBench>,
}

/// What the forwarders under test do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// in_port -> output between two ports: ours is `vswitchd` with the two
    /// ports cross-connected (`peer`), OVS has in_port flows.
    P2p,
    /// MAC learning switch: ours is `vswitchd` with a bridge, OVS the
    /// NORMAL action; both with MAC tables sized for `--macs`.
    L2,
    /// Three OpenFlow tables loaded into both switches by `ovs-ofctl -O
    /// OpenFlow13 add-flows` from one file: classify by in_port, rewrite
    /// per source address (one flow per generated flow: set eth_dst,
    /// dec_ttl), output by in_port. The load's flow-mod rate is reported.
    #[value(name = "of-3table")]
    #[serde(rename = "of-3table")]
    Of3table,
    /// Every packet a new megaflow: the same three tables, but table 1
    /// holds one exact source-MAC flow no packet matches (so every lookup
    /// examines the whole source MAC, which varies per flow) and a
    /// catch-all; run
    /// with `--flows` well above the switches' megaflow capacity
    /// (1,000,000), each packet is an upcall. Mpps is the rate of
    /// megaflow installs the forwarding core sustains.
    Upcall,
    /// An overlay: port 0 is a container's side of a learning bridge whose
    /// other port is a VXLAN tunnel (VNI 100) to the generator's "remote
    /// endpoint" 198.18.0.2; port 1 is the uplink holding the switch's
    /// underlay address 198.18.0.1. Frames from port 0 leave port 1
    /// encapsulated, VXLAN from port 1 leaves port 0 decapsulated: both in
    /// one run (`--flows` inner flows each way). Ours: a tunnel port and an
    /// uplink with `addresses`; OVS: its userspace tunnelling (a vxlan port
    /// on br-int, the address on br-phy, `tnl/neigh/set`, `ovs/route/add`).
    /// Both with the remote's MAC set statically. memif only.
    Vxlan,
    /// [`Scenario::Vxlan`] with a Geneve tunnel (UDP 6081, no options).
    Geneve,
    /// [`Scenario::Vxlan`] with Ethernet over GRE (key 100).
    Gre,
    /// The of-3table flows with a `set_queue` each, through shaped ports
    /// (see [`crate::qos`]).
    Qos,
}

impl Scenario {
    /// Whether port 1 carries a tunnel.
    pub fn tunnel(self) -> bool {
        self.encap().is_some()
    }

    /// The tunnel port 1 carries.
    pub fn encap(self) -> Option<crate::gen::Encap> {
        match self {
            Scenario::Vxlan => Some(crate::gen::Encap::Vxlan),
            Scenario::Geneve => Some(crate::gen::Encap::Geneve),
            Scenario::Gre => Some(crate::gen::Encap::Gre),
            _ => None,
        }
    }

    /// The tunnel's port type, in vswitchd's configuration and OVS's.
    pub fn tunnel_type(self) -> &'static str {
        match self {
            Scenario::Geneve => "geneve",
            Scenario::Gre => "gre",
            _ => "vxlan",
        }
    }

    /// Whether the switches are driven by OpenFlow tables loaded from a
    /// flow file.
    pub fn openflow(self) -> bool {
        matches!(self, Scenario::Of3table | Scenario::Upcall | Scenario::Qos)
    }

    /// The flow file of an OpenFlow scenario for `flows` generated flows
    /// per direction.
    pub fn flow_file(self, flows: u32) -> String {
        match self {
            Scenario::Upcall => crate::flows::upcall_flows(),
            _ => crate::flows::of_3table_flows(flows),
        }
    }
}

/// Sets the generator's MAC as vswitchd's permanent neighbour on the
/// uplink, once its control socket answers.
fn set_neighbour(sock: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(our_binary("vswitchctl")?)
            .args(["--socket", sock, "neigh-set", "p1"])
            .arg(std::net::Ipv4Addr::from(crate::gen::VXLAN_REMOTE).to_string())
            .arg(wire::EthernetAddress(crate::gen::VXLAN_REMOTE_MAC).to_string())
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("vswitchctl neigh-set: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Loads a flow file with `ovs-ofctl -O OpenFlow13 add-flows TARGET FILE`
/// (it ends with a barrier), retrying the connection for up to 20 s;
/// returns the flow-mods and the seconds the load took.
fn load_flows(target: &str, file: &Path, dir: &Path) -> Result<(usize, f64)> {
    let n = std::fs::read_to_string(file)?.lines().count();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t0 = Instant::now();
        let out = ovs_env(
            Command::new(tool("ovs-ofctl")?).args(["-O", "OpenFlow13", "--no-names", "add-flows", target]).arg(file),
            dir,
        )
        .output()?;
        if out.status.success() {
            return Ok((n, t0.elapsed().as_secs_f64()));
        }
        if Instant::now() > deadline {
            bail!("ovs-ofctl add-flows {target}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Setup {
    /// Whether a tunnel scenario runs with many remotes (a flow remote).
    pub fn flow_remotes(&self) -> bool {
        self.scenario.tunnel() && self.remotes > 1
    }
    /// Socket path of port i.
    pub fn sock(&self, i: usize) -> String {
        self.dir.join(format!("p{i}.sock")).display().to_string()
    }
    /// The generator's devargs for port i, trial-unique device names.
    pub fn gen_devargs(&self, i: usize, uniq: usize, queues: u16) -> String {
        match self.transport {
            Transport::Memif => {
                format!("net_memif{},role=client,id=0,socket={},socket-abstract=no", 100 + uniq * 2 + i, self.sock(i))
            }
            Transport::Vhost => {
                format!("net_virtio_user{},path={},server=1,queues={queues}", 100 + uniq * 2 + i, self.sock(i))
            }
        }
    }
    fn fwd_devargs(&self, i: usize) -> String {
        // The uplink of a tunnel scenario has the MAC the generator's
        // VXLAN is addressed to.
        let mac = if self.scenario.tunnel() && i == 1 {
            format!(",mac={}", wire::EthernetAddress(crate::gen::VXLAN_LOCAL_MAC))
        } else {
            String::new()
        };
        match self.transport {
            Transport::Memif => {
                format!("net_memif{i},role=server,id=0,socket={},socket-abstract=no{mac}", self.sock(i))
            }
            Transport::Vhost => format!("net_vhost{i},iface={},client=1,queues={}", self.sock(i), self.queues),
        }
    }
}

/// A running forwarder.
pub struct Running {
    kind: Kind,
    child: Option<Child>,
    log: PathBuf,
    ovs: Option<Ovs>,
    /// vswitchd's control socket, and its PMD counters when the trial began.
    vswitchd: Option<(String, std::cell::Cell<VsCounters>)>,
    /// Where an OpenFlow client reaches it (of-3table): `tcp:IP:PORT` or
    /// `unix:PATH`.
    pub of_target: Option<String>,
}

struct Ovs {
    dir: PathBuf,
    ctl: PathBuf,
}

fn tool(name: &str) -> Result<PathBuf> {
    for d in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(d).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("`{name}` is not installed (ci/setup installs it)")
}

/// One of our binaries, next to this one.
fn our_binary(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name(name);
    if !p.exists() {
        bail!("{} not found: build it with `cargo build --release -p benches -p vswitch`", p.display());
    }
    Ok(p)
}

/// Stages of vswitchd's OpenFlow fast path it counts cycles for (its
/// `pmd-stats`), then the rest of its PMD's busy cycles ("io": rx, tx,
/// batching, polling).
pub const STAGES: [&str; 6] = ["extract", "emc", "megaflow", "upcall", "actions", "io"];

/// vswitchd's PMD counters summed over threads: busy cycles, packets, and
/// the cycles of each OpenFlow stage (`STAGES` but "io").
#[derive(Debug, Default, Clone, Copy)]
struct VsCounters {
    busy: u64,
    packets: u64,
    stages: [u64; 5],
    /// Megaflow installs (all OpenFlow bridges).
    installs: u64,
    /// Groups of one megaflow's packets replayed together, and their
    /// packets.
    groups: u64,
    grouped: u64,
}

/// vswitchd's OpenFlow fast path during a trial.
#[derive(Debug, Clone)]
pub struct OfStats {
    /// Cycles per packet in each of [`STAGES`].
    pub stages: Vec<f64>,
    /// Megaflows installed.
    pub installs: u64,
    /// Packets per group of one megaflow's packets in a batch (replayed
    /// together).
    pub packets_per_group: f64,
}

fn vswitchd_counters(sock: &str) -> Option<VsCounters> {
    let out =
        Command::new(our_binary("vswitchctl").ok()?).args(["--socket", sock, "--json", "pmd-stats"]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut c = VsCounters::default();
    for x in v["pmds"].as_array()? {
        c.busy += x["busy_cycles"].as_u64().unwrap_or(0);
        c.packets += x["packets"].as_u64().unwrap_or(0);
    }
    for b in v["openflow"].as_array().into_iter().flatten() {
        for (i, name) in STAGES[..5].iter().enumerate() {
            c.stages[i] += b["megaflow"]["stage_cycles"][name].as_u64().unwrap_or(0);
        }
        c.installs += b["megaflow"]["installs"].as_u64().unwrap_or(0);
        c.groups += b["megaflow"]["groups"].as_u64().unwrap_or(0);
        c.grouped += b["megaflow"]["grouped_packets"].as_u64().unwrap_or(0);
    }
    Some(c)
}

impl Running {
    /// Starts `kind` on the forwarding core; returns once its ports exist
    /// (the generator may connect).
    pub fn start(kind: Kind, s: &Setup) -> Result<Running> {
        for i in 0..2 {
            let _ = std::fs::remove_file(s.sock(i));
        }
        let log = s.dir.join(format!("{}.log", kind.name()));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let cores = format!("{},{}", s.gen_core, s.fwd_core);
        let mut r = Running { kind, child: None, log, ovs: None, vswitchd: None, of_target: None };
        let flows_file = s.dir.join("of-3table.flows");
        let openflow = s.scenario.openflow() || s.flow_remotes();
        let of_port = openflow
            .then(|| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()))
            .transpose()?;
        if s.flow_remotes() {
            std::fs::write(&flows_file, crate::flows::remote_flows(s.macs, s.remotes))?;
        } else if s.scenario == Scenario::Qos {
            std::fs::write(&flows_file, crate::qos::flows(s.macs, crate::qos::of(s)?))?;
        } else if openflow {
            std::fs::write(&flows_file, s.scenario.flow_file(s.macs))?;
        }
        match kind {
            Kind::Vswitch | Kind::VswitchBase | Kind::VswitchUnshaped => {
                let sock = s.dir.join("vswitchd.sock").display().to_string();
                let cfg = s.dir.join("vswitchd.toml");
                // p2p: the two ports cross-connected; l2: a learning bridge;
                // vxlan: port 1 is the uplink of br-phy, port 0 and the
                // tunnel learn on br0.
                let port = |i: usize| {
                    let extra = match s.scenario {
                        Scenario::P2p => format!("peer = \"p{}\"\n", 1 - i),
                        _ if s.scenario.tunnel() && i == 1 => {
                            format!("addresses = [\"{}/24\"]\n", std::net::Ipv4Addr::from(crate::gen::VXLAN_LOCAL))
                        }
                        Scenario::Qos if kind != Kind::VswitchUnshaped => {
                            s.qos.as_ref().map(crate::qos::shaper_toml).unwrap_or_default()
                        }
                        Scenario::L2
                        | Scenario::Qos
                        | Scenario::Of3table
                        | Scenario::Upcall
                        | Scenario::Vxlan
                        | Scenario::Geneve
                        | Scenario::Gre => String::new(),
                    };
                    format!(
                        "[[bridge.port]]\nname = \"p{i}\"\ntype = \"dpdk\"\ndevargs = \"{}\"\nn_rxq = {}\n{extra}",
                        s.fwd_devargs(i),
                        s.queues
                    )
                };
                let (p1, tunnel) = if s.scenario.tunnel() {
                    (
                        format!(
                            "[[bridge.port]]\nname = \"vx\"\ntype = \"{}\"\nremote_ip = \"{}\"\nkey = {}\n\n\
                             [[bridge]]\nname = \"br-phy\"\n\n{}{}",
                            s.scenario.tunnel_type(),
                            match s.flow_remotes() {
                                true => "flow".to_string(),
                                false => std::net::Ipv4Addr::from(crate::gen::VXLAN_REMOTE).to_string(),
                            },
                            crate::gen::VXLAN_VNI,
                            port(1),
                            crate::flows::remote_route(s)
                        ),
                        true,
                    )
                } else {
                    (port(1), false)
                };
                std::fs::write(
                    &cfg,
                    format!(
                        "[eal]\ncores = [{cores}]\nmemory = \"in-memory\"\nmemory_mb = 512\nfile_prefix = \"vsbench-vswitchd\"\n\n\
                         [pmd]\ncores = [{fwd}]\nrxq_assignment = \"round-robin\"\n{limit}\n[control]\nsocket = \"{sock}\"\n\n\
                         [[bridge]]\nname = \"br0\"\nmac_table_size = {table}\n{of}\n{p0}\n{p1}\n",
                        fwd = s.fwd_core,
                        limit = s.megaflow_limit.map(|n| format!("megaflow_limit = {n}\n")).unwrap_or_default(),
                        table = (s.macs * 4).max(8192),
                        of = match of_port {
                            Some(p) => format!(
                                "fail_mode = \"secure\"\ncontrollers = [\"ptcp:{p}:127.0.0.1\"]\nflow_table_size = {}\n",
                                (2 * u64::from(s.macs) + 16).clamp(1_000_000, 1 << 24)
                            ),
                            None => String::new(),
                        },
                        p0 = port(0),
                    ),
                )?;
                let bin = match (kind, &s.baseline_vswitchd) {
                    (Kind::VswitchBase, Some(p)) => p.clone(),
                    (Kind::VswitchBase, None) => bail!("vswitch-base needs --baseline-vswitchd PATH"),
                    _ => our_binary("vswitchd")?,
                };
                let mut c = Command::new(bin);
                c.arg("--config").arg(&cfg);
                r.child = Some(c.stdin(Stdio::null()).stdout(out).stderr(err).spawn().context("starting vswitchd")?);
                if tunnel {
                    // The generator answers no ARP: its MAC is set, as OVS's
                    // tnl/neigh/set does for OVS.
                    set_neighbour(&sock)?;
                }
                r.vswitchd = Some((sock, std::cell::Cell::new(VsCounters::default())));
            }
            Kind::Testpmd => {
                let mut c = Command::new(tool("dpdk-testpmd")?);
                c.args(["-l", &cores, "--main-lcore", &s.gen_core.to_string(), "--no-pci", "--in-memory", "-m", "512"])
                    .args(["--file-prefix", "vsbench-tp", "--log-level=4"])
                    .args(["--vdev", &s.fwd_devargs(0), "--vdev", &s.fwd_devargs(1)])
                    .args(["--", "--forward-mode=io", "--auto-start", "--stats-period=1", "--record-core-cycles"])
                    .args(["--total-num-mbufs=32768", "--nb-cores=1"])
                    .arg(format!("--rxq={}", s.queues))
                    .arg(format!("--txq={}", s.queues));
                r.child =
                    Some(c.stdin(Stdio::null()).stdout(out).stderr(err).spawn().context("starting dpdk-testpmd")?);
            }
            Kind::OvsDpdk => r.ovs = Some(start_ovs(s)?),
        }
        // Memif servers create their sockets at start; vhost clients retry
        // until the generator's sockets appear.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = r.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!("{} exited at start ({st}); its log:\n{}", kind.name(), tail(&r.log));
                }
            }
            // A memif server's socket file appears at bind(), just before
            // listen(). Probing it with a connection is no option (DPDK
            // 22.11's memif server can crash on a peer that leaves at once),
            // so settle briefly; the caller reconnects with fresh ports if a
            // link still does not come up.
            let ready = match s.transport {
                Transport::Memif => (0..2).all(|i| Path::new(&s.sock(i)).exists()),
                Transport::Vhost => true,
            };
            if ready {
                std::thread::sleep(Duration::from_millis(300));
                break;
            }
            if Instant::now() > deadline {
                bail!("{} did not create its sockets in 30 s; its log:\n{}", kind.name(), tail(&r.log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let (Some(p), Kind::OvsDpdk) = (of_port, kind) {
            let _ = p;
            r.of_target = r.ovs.as_ref().map(|o| format!("unix:{}", o.dir.join("br0.mgmt").display()));
        }
        if let (Some(p), true) = (of_port, kind.is_vswitchd()) {
            r.of_target = Some(format!("tcp:127.0.0.1:{p}"));
            let (n, secs) = load_flows(&format!("tcp:127.0.0.1:{p}"), &flows_file, &s.dir)?;
            println!(
                "  {}: {n} flows loaded by ovs-ofctl add-flows in {secs:.2} s ({:.0} flow-mods/s)",
                kind.name(),
                n as f64 / secs
            );
        }
        Ok(r)
    }

    /// Zeroes the forwarder's own cycle counters before a trial, where it
    /// has a way.
    pub fn clear_counters(&self) {
        if let Some(o) = &self.ovs {
            let _ = appctl(o, &["dpif-netdev/pmd-stats-clear"]);
        }
        if let Some((sock, at)) = &self.vswitchd {
            at.set(vswitchd_counters(sock).unwrap_or_default());
        }
    }

    /// Reads vswitchd's or OVS's cycles per packet before it stops
    /// (testpmd reports at exit).
    pub fn cycles_before_stop(&self) -> Option<f64> {
        if let Some((sock, at)) = &self.vswitchd {
            let (c1, c0) = (vswitchd_counters(sock)?, at.get());
            return (c1.packets > c0.packets).then(|| (c1.busy - c0.busy) as f64 / (c1.packets - c0.packets) as f64);
        }
        let o = self.ovs.as_ref()?;
        let out = appctl(o, &["dpif-netdev/pmd-stats-show"]).ok()?;
        number_after(&out, "avg processing cycles per packet:")
    }

    /// vswitchd's cycles per packet in each of `STAGES` since
    /// `clear_counters`, the megaflows it installed and its packets per
    /// group (None for the others, or without OpenFlow traffic): "io" is
    /// its busy cycles per packet less the counted stages.
    pub fn stages_before_stop(&self) -> Option<OfStats> {
        let (sock, at) = self.vswitchd.as_ref()?;
        let (c1, c0) = (vswitchd_counters(sock)?, at.get());
        let packets = c1.packets.checked_sub(c0.packets).filter(|p| *p > 0)? as f64;
        let mut v: Vec<f64> = (0..5).map(|i| (c1.stages[i] - c0.stages[i]) as f64 / packets).collect();
        if v.iter().all(|x| *x == 0.0) {
            return None;
        }
        let busy = (c1.busy - c0.busy) as f64 / packets;
        v.push((busy - v.iter().sum::<f64>()).max(0.0));
        let groups = (c1.groups - c0.groups).max(1) as f64;
        Some(OfStats {
            stages: v,
            installs: c1.installs - c0.installs,
            packets_per_group: (c1.grouped - c0.grouped) as f64 / groups,
        })
    }

    /// Stops it; returns its cycles per packet if it reported them.
    pub fn stop(mut self) -> Result<Option<f64>> {
        if let Some(o) = self.ovs.take() {
            stop_ovs(&o);
            return Ok(None);
        }
        let Some(mut c) = self.child.take() else { return Ok(None) };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while c.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("{} did not stop on SIGINT in 15 s (killed)", self.kind.name());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(match self.kind {
            // vswitchd's were read from its control socket before the stop.
            Kind::Vswitch | Kind::VswitchBase | Kind::VswitchUnshaped => None,
            Kind::Testpmd => {
                number_after(&std::fs::read_to_string(&self.log).unwrap_or_default(), "CPU cycles/packet=")
            }
            Kind::OvsDpdk => None,
        })
    }

    /// vswitchd's control socket (None for the others).
    pub fn control_socket(&self) -> Option<&str> {
        self.vswitchd.as_ref().map(|v| v.0.as_str())
    }

    /// Its process id, when it runs as a child of the bench.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// One of our binaries (next to the bench's), for the soak's port
    /// churn.
    pub fn tool_path(name: &str) -> Result<PathBuf> {
        our_binary(name)
    }

    /// The forwarder's log, last lines.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // On an error path: ask it to stop (so it flushes its log), then
        // insist.
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(o) = self.ovs.take() {
            stop_ovs(&o);
        }
    }
}

fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn number_after(text: &str, key: &str) -> Option<f64> {
    let at = text.rfind(key)? + key.len();
    let rest = text[at..].trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ovs_env<'a>(c: &'a mut Command, dir: &Path) -> &'a mut Command {
    c.env("OVS_RUNDIR", dir).env("OVS_DBDIR", dir).env("OVS_LOGDIR", dir).env("OVS_SYSCONFDIR", dir)
}

fn appctl(o: &Ovs, args: &[&str]) -> Result<String> {
    run(ovs_env(Command::new(tool("ovs-appctl")?).arg("-t").arg(&o.ctl).args(args), &o.dir))
}

fn start_ovs(s: &Setup) -> Result<Ovs> {
    let dir = s.dir.join("ovs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let vswitchd = Path::new("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk");
    if !vswitchd.exists() {
        bail!("{} is not installed (apt-get install openvswitch-switch-dpdk; ci/setup does)", vswitchd.display());
    }
    let db = dir.join("conf.db");
    let sock = format!("unix:{}", dir.join("db.sock").display());
    run(ovs_env(
        Command::new(tool("ovsdb-tool")?).arg("create").arg(&db).arg("/usr/share/openvswitch/vswitch.ovsschema"),
        &dir,
    ))?;
    run(ovs_env(
        Command::new(tool("ovsdb-server")?)
            .arg(format!("--remote=punix:{}", dir.join("db.sock").display()))
            .arg(format!("--pidfile={}", dir.join("ovsdb-server.pid").display()))
            .arg("--detach")
            .arg(format!("--log-file={}", dir.join("ovsdb-server.log").display()))
            .arg(&db),
        &dir,
    ))?;
    let vsctl = |args: &[&str]| -> Result<String> {
        run(ovs_env(Command::new(tool("ovs-vsctl").expect("checked")).arg(format!("--db={sock}")).args(args), &dir))
    };
    tool("ovs-vsctl")?;
    vsctl(&["--no-wait", "init"])?;
    vsctl(&[
        "--no-wait",
        "set",
        "Open_vSwitch",
        ".",
        "other_config:dpdk-init=true",
        "other_config:dpdk-extra=--no-pci --file-prefix vsbench-ovs",
        "other_config:dpdk-socket-mem=512",
        &format!("other_config:pmd-cpu-mask=0x{:x}", 1u64 << s.fwd_core),
        &format!("other_config:dpdk-lcore-mask=0x{:x}", 1u64 << s.gen_core),
    ])?;
    run(ovs_env(
        Command::new(vswitchd)
            .arg(&sock)
            .arg(format!("--pidfile={}", dir.join("ovs-vswitchd.pid").display()))
            .arg("--detach")
            .arg(format!("--log-file={}", dir.join("ovs-vswitchd.log").display())),
        &dir,
    ))?;
    let pid = std::fs::read_to_string(dir.join("ovs-vswitchd.pid"))?.trim().to_string();
    // The control socket is named after the program: ovs-vswitchd-dpdk.<pid>.ctl.
    let o = Ovs { ctl: dir.join(format!("ovs-vswitchd-dpdk.{pid}.ctl")), dir: dir.clone() };
    // Running now: a set-up that fails stops it again, so that it holds no
    // memory or sockets the next forwarder needs.
    match configure_ovs(s, &o, &vsctl) {
        Ok(()) => Ok(o),
        Err(e) => {
            stop_ovs(&o);
            Err(e)
        }
    }
}

/// Bridges, ports and flows of the scenario in a running OVS.
fn configure_ovs(s: &Setup, o: &Ovs, vsctl: &dyn Fn(&[&str]) -> Result<String>) -> Result<()> {
    let dir = o.dir.clone();
    vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"])?;
    // Tunnels: port 1 on br-phy, whose own interface holds the underlay
    // address (OVS's userspace tunnelling recipe).
    let phy = "vsb-phy";
    if s.scenario.tunnel() {
        let mac = format!("other-config:hwaddr={}", wire::EthernetAddress(crate::gen::VXLAN_LOCAL_MAC));
        vsctl(&["add-br", phy, "--", "set", "bridge", phy, "datapath_type=netdev", &mac])?;
    }
    for i in 0..2 {
        let name = format!("p{i}");
        let bridge = if s.scenario.tunnel() && i == 1 { phy } else { "br0" };
        let ofport = format!("ofport_request={}", i + 1);
        let options = match s.transport {
            Transport::Memif => vec![
                "type=dpdk".to_string(),
                format!("options:n_rxq={}", s.queues),
                format!("options:dpdk-devargs=net_memif{i},role=server,socket={},socket-abstract=no,id=0", s.sock(i)),
            ],
            Transport::Vhost => {
                vec!["type=dpdkvhostuserclient".to_string(), format!("options:vhost-server-path={}", s.sock(i))]
            }
        };
        let mut args = vec!["add-port", bridge, &name, "--", "set", "Interface", &name, &ofport];
        args.extend(options.iter().map(String::as_str));
        vsctl(&args)?;
    }
    if s.scenario.tunnel() {
        let (local, remote) =
            (std::net::Ipv4Addr::from(crate::gen::VXLAN_LOCAL), std::net::Ipv4Addr::from(crate::gen::VXLAN_REMOTE));
        vsctl(&[
            "add-port",
            "br0",
            "vx",
            "--",
            "set",
            "Interface",
            "vx",
            &format!("type={}", s.scenario.tunnel_type()),
            "ofport_request=2",
            &format!("options:remote_ip={}", if s.flow_remotes() { "flow".to_string() } else { remote.to_string() }),
            &format!("options:key={}", crate::gen::VXLAN_VNI),
        ])?;
        run(Command::new("ip").args(["addr", "replace", &format!("{local}/24"), "dev", phy]))?;
        run(Command::new("ip").args(["link", "set", phy, "up"]))?;
        appctl(o, &["ovs/route/add", &format!("{remote}/24"), phy])?;
        if s.flow_remotes() {
            // The remotes, beyond the generator as their router.
            appctl(o, &["ovs/route/add", crate::flows::REMOTES_PREFIX, phy, &remote.to_string()])?;
        }
        appctl(
            o,
            &[
                "tnl/neigh/set",
                phy,
                &remote.to_string(),
                &wire::EthernetAddress(crate::gen::VXLAN_REMOTE_MAC).to_string(),
            ],
        )?;
    }
    let ofctl = |args: &[&str]| run(ovs_env(Command::new(tool("ovs-ofctl").expect("checked")).args(args), &dir));
    tool("ovs-ofctl")?;
    let mgmt = format!("unix:{}", dir.join("br0.mgmt").display());
    ofctl(&["del-flows", &mgmt])?;
    match s.scenario {
        Scenario::P2p => {
            ofctl(&["add-flow", &mgmt, "in_port=1,actions=output:2"])?;
            ofctl(&["add-flow", &mgmt, "in_port=2,actions=output:1"])?;
        }
        Scenario::Of3table | Scenario::Upcall | Scenario::Qos => {
            vsctl(&["set", "bridge", "br0", "protocols=OpenFlow10,OpenFlow13"])?;
            if let Some(q) = s.qos.as_ref().filter(|q| q.rate != crate::qos::UNBOUND) {
                for p in ["p0", "p1"] {
                    let args = crate::qos::ovs_policer_args(p, q);
                    vsctl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
                }
            }
            let (n, secs) = load_flows(&mgmt, &s.dir.join("of-3table.flows"), &dir)?;
            println!(
                "  ovs-dpdk: {n} flows loaded by ovs-ofctl add-flows in {secs:.2} s ({:.0} flow-mods/s)",
                n as f64 / secs
            );
        }
        _ if s.flow_remotes() => {
            vsctl(&["set", "bridge", "br0", "protocols=OpenFlow10,OpenFlow13"])?;
            std::fs::write(s.dir.join("remotes.flows"), crate::flows::remote_flows(s.macs, s.remotes))?;
            let (n, secs) = load_flows(&mgmt, &s.dir.join("remotes.flows"), &dir)?;
            println!("  ovs-dpdk: {n} flows loaded by ovs-ofctl add-flows in {secs:.2} s");
        }
        Scenario::L2 | Scenario::Vxlan | Scenario::Geneve | Scenario::Gre => {
            ofctl(&["add-flow", &mgmt, "actions=NORMAL"])?;
            vsctl(&["set", "bridge", "br0", &format!("other_config:mac-table-size={}", (s.macs * 4).max(8192))])?;
        }
    }
    Ok(())
}

fn stop_ovs(o: &Ovs) {
    // Deleting the bridge destroys the userspace datapath and its
    // `ovs-netdev` interface, which an exit alone leaves behind.
    if let Ok(vsctl) = tool("ovs-vsctl") {
        let db = format!("--db=unix:{}", o.dir.join("db.sock").display());
        for br in ["br0", "vsb-phy"] {
            let _ = run(ovs_env(
                Command::new(&vsctl).args([db.as_str(), "--timeout=10", "--if-exists", "del-br", br]),
                &o.dir,
            ));
        }
    }
    let _ = appctl(o, &["exit", "--cleanup"]);
    for pidfile in ["ovs-vswitchd.pid", "ovsdb-server.pid"] {
        if let Ok(pid) = std::fs::read_to_string(o.dir.join(pidfile)) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) on a daemon this bench started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(10);
                // SAFETY: signal 0 only checks the process exists.
                while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Why a forwarder could not run, for the JSON `"error"` field.
pub fn describe(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// Sends `flows` flow-mods (distinct table-1 flows, as of-3table's) in
/// one stream followed by one barrier, as a controller that programs a
/// switch in bulk does, and returns the seconds until the barrier reply
/// (everything installed and, for ours, in the PMD threads' tables). Any
/// error reply fails the run.
pub fn flow_mod_storm(target: &str, flows: u32) -> Result<f64> {
    use ofproto::ofp::msg::FlowModCommand;
    use std::io::Write;
    let mut c = Controller::connect(target)?;
    let bulk = storm_pass(FlowModCommand::Add, flows);
    let t0 = Instant::now();
    // The switch reads while we write: a writer thread would be tidier;
    // the kernel buffers and the switch's reading keep this from blocking
    // for long, and replies (errors, barrier) are read afterwards.
    c.s.write_all(&bulk)?;
    c.wait_barrier()?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Churns `target`'s table 1 until `stop`: adds `flows` flows (matching
/// no generated packet), a barrier, deletes them one by one (strict), a
/// barrier, and again. Returns the flow-mods applied (whole passes, and
/// the one under way counted to its last barrier).
pub fn flow_mod_churn(target: &str, flows: u32, stop: &std::sync::atomic::AtomicBool) -> Result<u64> {
    let done = std::sync::atomic::AtomicU64::new(0);
    flow_mod_churn_with(target, flows, stop, false, None, &done)?;
    Ok(done.load(std::sync::atomic::Ordering::Relaxed))
}

/// [`flow_mod_churn`], adding each pass's flow-mods to `done` as its
/// barrier comes back; with `reconnect`, each add and each delete pass on
/// a new controller connection (the switch sees its controller go and
/// come back, its flows kept); with `rate`, paced to that many flow-mods
/// per second (a pass, then a pause).
pub fn flow_mod_churn_with(
    target: &str,
    flows: u32,
    stop: &std::sync::atomic::AtomicBool,
    reconnect: bool,
    rate: Option<f64>,
    done: &std::sync::atomic::AtomicU64,
) -> Result<()> {
    use ofproto::ofp::msg::FlowModCommand;
    use std::io::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let mut c = Controller::connect(target)?;
    let (add, del) = (storm_pass(FlowModCommand::Add, flows), storm_pass(FlowModCommand::DeleteStrict, flows));
    let t0 = Instant::now();
    for bulk in [&add, &del].into_iter().cycle() {
        if stop.load(Relaxed) {
            break;
        }
        if reconnect {
            c = Controller::connect(target)?;
        }
        c.s.write_all(bulk)?;
        c.wait_barrier()?;
        let n = done.fetch_add(u64::from(flows), Relaxed) + u64::from(flows);
        if let Some(r) = rate.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(n as f64 / r);
            while t0.elapsed() < due && !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(10).min(due.saturating_sub(t0.elapsed())));
            }
        }
    }
    Ok(())
}

/// `flows` flow-mods of `cmd` on table 1 (priority 20, `ip,nw_src=11.x`:
/// no generated packet matches them), then a barrier (xid 7).
fn storm_pass(cmd: ofproto::ofp::msg::FlowModCommand, flows: u32) -> Vec<u8> {
    use ofproto::ofp::msg::FlowMod;
    use ofproto::ofp::{Action, Field, Instruction, Match, Message, Oxm};
    let mut bulk = Vec::new();
    for f in 0..flows {
        let m = Match::any()
            .with(Oxm::exact_u64(Field::EthType, 0x0800))
            .with(Oxm::exact(Field::Ipv4Src, &(0x0b00_0000 + f).to_be_bytes()));
        let ins = vec![Instruction::ApplyActions(vec![Action::DecNwTtl]), Instruction::GotoTable(2)];
        bulk.extend_from_slice(&Message::FlowMod(FlowMod::new(cmd, 1, 20, m, ins)).encode(f + 10));
    }
    bulk.extend_from_slice(&Message::BarrierRequest.encode(7));
    bulk
}

/// The bench's own OpenFlow controller connection (HELLO sent).
struct Controller {
    target: String,
    s: Box<dyn ReadWrite>,
    /// Bytes read and not yet a whole message.
    buf: Vec<u8>,
}

impl Controller {
    fn connect(target: &str) -> Result<Controller> {
        use ofproto::ofp::Message;
        use std::io::Write;
        let mut s: Box<dyn ReadWrite> = if let Some(a) = target.strip_prefix("tcp:") {
            Box::new(std::net::TcpStream::connect(a)?)
        } else if let Some(p) = target.strip_prefix("unix:") {
            Box::new(std::os::unix::net::UnixStream::connect(p)?)
        } else {
            bail!("{target}: not tcp: or unix:")
        };
        s.write_all(&Message::Hello { versions: vec![4] }.encode(1))?;
        Ok(Controller { target: target.to_string(), s, buf: Vec::new() })
    }

    /// Reads until the barrier reply (xid 7); an error message fails.
    fn wait_barrier(&mut self) -> Result<()> {
        use ofproto::ofp::{frame_len, Message};
        use std::io::Read;
        let mut chunk = [0u8; 65536];
        loop {
            while let Some(n) = frame_len(&self.buf).filter(|n| self.buf.len() >= *n && *n >= 8) {
                let f: Vec<u8> = self.buf.drain(..n).collect();
                match Message::decode(&f) {
                    Ok((7, Message::BarrierReply)) => return Ok(()),
                    Ok((_, Message::Error { err_type, code, .. })) => {
                        bail!("{}: error {err_type}/{code} during the storm", self.target)
                    }
                    _ => {}
                }
            }
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                bail!("{}: closed before the barrier reply", self.target);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A byte stream either TCP or Unix.
trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}
