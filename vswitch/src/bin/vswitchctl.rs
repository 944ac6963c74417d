//! `vswitchctl`: the command line of the control socket.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use config::rpc::{Request, Response};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

#[derive(Parser)]
#[command(version, about = "Talks to vswitchd over its control socket")]
struct Cli {
    /// Control socket.
    #[arg(long, global = true, default_value = "/run/vswitch/vswitchd.sock")]
    socket: String,
    /// Print the JSON result as it is.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bridges, ports, link and counters.
    Show,
    /// Port counters (one port, or all).
    PortStats {
        /// Port name.
        port: Option<String>,
    },
    /// PMD threads: busy %, cycles per packet, rx queues.
    PmdStats,
    /// Learned MAC addresses of a bridge.
    FdbShow {
        /// Bridge name.
        bridge: String,
    },
    /// Adds a port to a running bridge: `add-port br0 c3 type=afxdp
    /// iface=veth3 vlan_mode=access tag=10` (the keys of a `[[bridge.port]]`
    /// in the config file; lists as `trunks=10,20`, `addresses=IP/LEN,...`).
    AddPort {
        /// Bridge name.
        bridge: String,
        /// Port name.
        name: String,
        /// `key=value` settings.
        settings: Vec<String>,
    },
    /// Removes a port; the others keep forwarding.
    DelPort {
        /// Port name.
        name: String,
    },
    /// Re-reads the config file and applies the difference.
    Reload,
    /// OpenFlow flows of a bridge (one table, or all).
    DumpFlows {
        /// Bridge name.
        bridge: String,
        /// Table number.
        table: Option<u8>,
    },
    /// The megaflows the PMD threads hold for a bridge, with their masks,
    /// counters and ages (as `ovs-appctl dpctl/dump-flows`).
    DpFlows {
        /// Bridge name.
        bridge: String,
    },
    /// OpenFlow groups of a bridge.
    DumpGroups {
        /// Bridge name.
        bridge: String,
    },
    /// OpenFlow meters of a bridge.
    DumpMeters {
        /// Bridge name.
        bridge: String,
    },
    /// OpenFlow controllers: targets, connection state, roles.
    Controllers,
    /// Sets a bridge's OpenFlow controllers, live (replaces the list):
    /// `set-controller br0 ptcp:6653 tcp:192.0.2.1:6653`.
    SetController {
        /// Bridge name.
        bridge: String,
        /// Targets: `ptcp:PORT[:IP]` (listen) or `tcp:IP:PORT` (connect).
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Removes all of a bridge's controllers (it switches as NORMAL again).
    DelController {
        /// Bridge name.
        bridge: String,
    },
    /// Sets what a bridge does without a connected controller.
    SetFailMode {
        /// Bridge name.
        bridge: String,
        /// `secure` (flow tables only) or `standalone` (NORMAL switching).
        #[arg(value_parser = ["secure", "standalone"])]
        mode: String,
    },
    /// Sets a bridge's OpenFlow datapath id (up to 16 hex digits; `default`
    /// for the one derived from its name); its controllers reconnect.
    SetDatapathId {
        /// Bridge name.
        bridge: String,
        /// Datapath id.
        id: String,
    },
    /// Writes a port's packets to a pcapng (or pcap) file, as dpdk-dumpcap
    /// does: `capture c1 -w /tmp/c1.pcapng --count 100`. Runs until
    /// `--count` packets, `--duration` seconds or Ctrl-C; the switch copies
    /// packets only while it runs.
    Capture {
        /// Port name.
        port: String,
        /// Packets received (rx), sent (tx) or both.
        #[arg(long, default_value = "both", value_parser = ["rx", "tx", "both"])]
        direction: String,
        /// Stop after this many packets.
        #[arg(long, short = 'c')]
        count: Option<u64>,
        /// Bytes kept of each packet (262144).
        #[arg(long, short = 's')]
        snaplen: Option<u32>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// File format.
        #[arg(long, default_value = "pcapng", value_parser = ["pcapng", "pcap"])]
        format: String,
        /// Records in the capture's ring (4096); a full ring drops copies,
        /// never forwarded packets.
        #[arg(long)]
        ring: Option<u64>,
        /// The file to write.
        #[arg(short = 'w', long = "write")]
        file: std::path::PathBuf,
    },
    /// Running captures and their counters.
    Captures,
    /// Traces a packet through a bridge's tables (as ovs-appctl
    /// ofproto/trace): `trace br0 in_port=1,tcp,nw_dst=10.0.0.2,tp_dst=80`,
    /// or a real packet: `trace br0 --in-port c1 --packet 0200...`.
    Trace {
        /// Bridge name.
        bridge: String,
        /// The flow, as ovs-ofctl writes one (in_port may name a port).
        flow: Option<String>,
        /// A packet's bytes in hex, from the Ethernet header on.
        #[arg(long, conflicts_with = "flow", requires = "in_port")]
        packet: Option<String>,
        /// The port a `--packet` arrives on (name or OpenFlow number).
        #[arg(long)]
        in_port: Option<String>,
    },
    /// Tunnel ports (remote, VNI, uplink, next hop, state, counters) and
    /// the uplinks' underlay counters, drops by reason.
    TunnelShow,
    /// Ports' policers: settings, and packets and bytes by colour (red:
    /// dropped). One port, or every policed one.
    QosShow {
        /// Port name.
        port: Option<String>,
    },
    /// Changes a port's policing while running: `vswitchctl qos-set c1
    /// ingress_rate=10000000 ingress_burst=200000 egress_rate=0` (bits per
    /// second, bits; a rate of 0 removes the policer); its scheduler with
    /// `shaper='{"rate":100000000,"class":[...]}'` (as in the file, in
    /// JSON; `shaper=none` removes it, queued frames kept on a change).
    QosSet {
        /// Port name.
        port: String,
        /// `key=value` settings.
        settings: Vec<String>,
    },
    /// Underlay routes: the uplinks' subnets, the file's and live ones.
    RouteShow,
    /// Underlay neighbours (ARP) and frames waiting for them.
    NeighShow,
    /// Forgets the underlay's neighbours: tunnels resolve their next hops
    /// again (as `ovs-appctl tnl/neigh/flush`).
    NeighFlush,
    /// Sets a permanent underlay neighbour (as `ovs-appctl tnl/neigh/set`):
    /// `neigh-set uplink 192.0.2.2 02:00:00:00:00:02`.
    NeighSet {
        /// The uplink port.
        uplink: String,
        /// The neighbour's address.
        ip: String,
        /// Its MAC.
        mac: String,
    },
    /// Adds an underlay route while running: `route-add 10.2.0.0/16
    /// 192.0.2.254`.
    RouteAdd {
        /// Destination prefix (IP/LEN).
        prefix: String,
        /// Next hop, on an uplink's subnet.
        via: String,
    },
    /// Removes a route added with `route-add`.
    RouteDel {
        /// Destination prefix (IP/LEN).
        prefix: String,
    },
    /// Adds an address to a bridge's ARP responder: `arp-add br0 10.0.0.5
    /// 02:00:00:00:00:05 [--vlan N]`.
    ArpAdd {
        /// Bridge name.
        bridge: String,
        /// IPv4 address.
        ip: String,
        /// The MAC to answer with.
        mac: String,
        /// The VLAN the requests come on (0: untagged).
        #[arg(long, default_value_t = 0)]
        vlan: u16,
    },
    /// Removes an address from a bridge's ARP responder.
    ArpDel {
        /// Bridge name.
        bridge: String,
        /// IPv4 address.
        ip: String,
        /// Its VLAN.
        #[arg(long, default_value_t = 0)]
        vlan: u16,
    },
    /// A bridge's ARP responder: its addresses, requests answered and passed.
    ArpShow {
        /// Bridge name.
        bridge: String,
    },
    /// Versions of vswitchd and DPDK.
    Version,
}

/// `key=value` settings as the JSON of a config port: numbers stay
/// numbers, `trunks` is a list.
fn port_spec(name: &str, settings: &[String]) -> Result<Value> {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(name));
    for s in settings {
        let (k, v) = s.split_once('=').with_context(|| format!("`{s}`: write settings as key=value"))?;
        let v = if k == "shaper" {
            if v == "none" {
                Value::Null
            } else {
                serde_json::from_str(v).with_context(|| format!("`{s}`: shaper is JSON (or none)"))?
            }
        } else if k == "addresses" {
            json!(v.split(',').filter(|x| !x.is_empty()).collect::<Vec<_>>())
        } else if let Ok(b) = v.parse::<bool>() {
            json!(b)
        } else if k == "trunks" {
            let list: Result<Vec<u16>, _> = v.split(',').filter(|x| !x.is_empty()).map(str::parse).collect();
            json!(list.with_context(|| format!("`{s}`: trunks is a list of VLAN ids, as trunks=10,20"))?)
        } else if let Ok(n) = v.parse::<u64>() {
            json!(n)
        } else {
            json!(v)
        };
        m.insert(k.into(), v);
    }
    Ok(Value::Object(m))
}

/// A port scheduler as `qos-show` prints it: a line per class.
fn print_shaper(port: &str, s: &Value) {
    if s.is_null() {
        return;
    }
    let mbit = |v: &Value| format!("{:.3}", v.as_f64().unwrap_or(0.0) / 1e6);
    let us = |v: &Value| format!("{:.0}", v.as_f64().unwrap_or(0.0) / 1e3);
    println!(
        "{port} shaper: {} Mbit/s; frames queued {} of {}; hand-over drops {}, frames in hand-over {}",
        mbit(&s["rate"]),
        s["queued"],
        s["limit"],
        s["handoff_drops"],
        s["ring"]
    );
    println!(
        "  class  rate/ceil Mbit/s    now Mbit/s  packets     queued  drops full/early/limit  delay us p50/p99/max"
    );
    for c in s["classes"].as_array().into_iter().flatten() {
        let queued: u64 = c["depth"].as_array().into_iter().flatten().filter_map(|d| d["packets"].as_u64()).sum();
        println!(
            "  {:>5}  {:>8}/{:<8}  {:>10}  {:>8}  {:>8}  {:>6}/{}/{}  {}/{}/{}",
            c["id"].to_string(),
            mbit(&c["rate"]),
            mbit(&c["ceil"]),
            mbit(&c["rate_achieved"]),
            c["packets"].to_string(),
            queued,
            c["drops"]["queue_full"].to_string(),
            c["drops"]["early"],
            c["drops"]["port_limit"],
            us(&c["delay_ns"]["p50"]),
            us(&c["delay_ns"]["p99"]),
            us(&c["delay_ns"]["max"]),
        );
    }
}

/// A connection to the control socket, for one request or several.
struct Conn {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Conn {
    fn open(socket: &str) -> Result<Conn> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("cannot reach vswitchd at {socket} (is it running? --socket sets the path)"))?;
        Ok(Conn { reader: BufReader::new(stream.try_clone()?), stream, next_id: 1 })
    }

    fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value> {
        let req = Request::new(method, params, self.next_id);
        self.next_id += 1;
        self.stream.write_all(format!("{}\n", serde_json::to_string(&req)?).as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let resp: Response =
            serde_json::from_str(&line).with_context(|| format!("vswitchd answered something else: {line:?}"))?;
        if let Some(e) = resp.error {
            bail!("{} (error {})", e.message, e.code);
        }
        resp.result.context("vswitchd answered neither a result nor an error")
    }
}

fn call(socket: &str, method: &str, params: Option<Value>) -> Result<Value> {
    Conn::open(socket)?.call(method, params)
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// `capture`: starts the capture on one connection (vswitchd ends it if
/// that connection closes), polls it until it is done, `--duration`
/// passes or Ctrl-C, then stops it and prints what was written.
fn capture(cli: &Cli, params: Value, duration: Option<f64>) -> Result<()> {
    let mut c = Conn::open(&cli.socket)?;
    let started = c.call("capture-start", Some(params))?;
    let id = started["id"].as_u64().context("capture-start answered no id")?;
    // SAFETY: installs an async-signal-safe handler that only stores an
    // atomic; before any thread starts.
    unsafe {
        libc::signal(libc::SIGINT, on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    if !cli.json {
        eprintln!(
            "capturing on {} into {} (Ctrl-C stops)",
            started["port"].as_str().unwrap_or("?"),
            started["file"].as_str().unwrap_or("?")
        );
    }
    let t0 = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let st = c.call("capture-status", Some(json!({ "id": id })))?;
        let timed_out = duration.is_some_and(|d| t0.elapsed().as_secs_f64() >= d);
        if st["done"].as_bool() == Some(true) || timed_out || INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
    }
    let r = c.call("capture-stop", Some(json!({ "id": id })))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} packets written to {} ({} captured, {} copies dropped: ring full)",
            n(&r["written"]),
            r["file"].as_str().unwrap_or("?"),
            n(&r["captured"]),
            n(&r["dropped"])
        );
    }
    if let Some(e) = r["error"].as_str() {
        bail!("the capture ended early: {e}");
    }
    Ok(())
}

fn main() {
    // Output piped into `head` and the like: end quietly when the reader
    // goes, as command-line tools do, instead of panicking on EPIPE.
    // SAFETY: restores the default action of one signal before any
    // thread starts; no handler is installed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("vswitchctl: {e:#}");
        std::process::exit(1);
    }
}

/// One tunnel port, as `show` and `tunnel-show` print it.
fn tunnel_line(t: &Value) -> String {
    // A flow remote's remotes, each with its state.
    let remotes: String = t["remotes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!("\n  remote {} ({})", r["remote_ip"].as_str().unwrap_or(""), r["state"].as_str().unwrap_or(""))
        })
        .collect();
    format!(
        "tunnel {}: {} remote {} key {} dst_port {} via {} next hop {} ({}); held {} drops: no_path {} too_big {} no_room {}{remotes}",
        t["port"].as_str().unwrap_or(""),
        t["type"].as_str().unwrap_or(""),
        t["remote_ip"].as_str().unwrap_or(""),
        n(&t["key"]),
        n(&t["dst_port"]),
        t["uplink"].as_str().unwrap_or("-"),
        t["next_hop"].as_str().unwrap_or("-"),
        t["state"].as_str().unwrap_or(""),
        n(&t["held"]),
        n(&t["drop_no_path"]),
        n(&t["drop_too_big"]),
        n(&t["drop_no_room"]),
    )
}

/// One uplink's underlay stack, as `show` and `tunnel-show` print it.
fn uplink_line(port: &str, u: &Value) -> String {
    let addrs: Vec<&str> = u["addresses"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let drops: Vec<String> =
        u["drops"].as_object().into_iter().flatten().map(|(k, v)| format!("{k} {}", n(v))).collect();
    format!(
        "uplink {port} {}: decapsulated {} arp_replied {} echo_replied {} passed {} drops: {}",
        addrs.join(","),
        n(&u["decapsulated"]),
        n(&u["arp_replied"]),
        n(&u["echo_replied"]),
        n(&u["passed"]),
        drops.join(" ")
    )
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn run(cli: &Cli) -> Result<()> {
    let (method, params) = match &cli.cmd {
        Cmd::Capture { port, direction, count, snaplen, duration, format, ring, file } => {
            let file = std::path::absolute(file).with_context(|| format!("{}", file.display()))?;
            let params = json!({"port": port, "direction": direction, "count": count, "snaplen": snaplen,
                                "format": format, "ring": ring, "file": file});
            return capture(cli, params, *duration);
        }
        Cmd::Trace { bridge, flow, packet, in_port } => {
            if flow.is_none() && packet.is_none() {
                bail!("give a flow (in_port=1,tcp,...) or --packet HEX --in-port PORT");
            }
            ("trace", Some(json!({"bridge": bridge, "flow": flow, "packet": packet, "in_port": in_port})))
        }
        Cmd::Show => ("show", None),
        Cmd::PortStats { port } => ("port-stats", port.as_ref().map(|p| json!({ "port": p }))),
        Cmd::PmdStats => ("pmd-stats", None),
        Cmd::FdbShow { bridge } => ("fdb-show", Some(json!({ "bridge": bridge }))),
        Cmd::AddPort { bridge, name, settings } => {
            ("add-port", Some(json!({"bridge": bridge, "port": port_spec(name, settings)?})))
        }
        Cmd::DelPort { name } => ("del-port", Some(json!({ "port": name }))),
        Cmd::Reload => ("reload", None),
        Cmd::DumpFlows { bridge, table } => ("dump-flows", Some(json!({"bridge": bridge, "table": table}))),
        Cmd::DpFlows { bridge } => ("dp-flows", Some(json!({ "bridge": bridge }))),
        Cmd::DumpGroups { bridge } => ("dump-groups", Some(json!({ "bridge": bridge }))),
        Cmd::DumpMeters { bridge } => ("dump-meters", Some(json!({ "bridge": bridge }))),
        Cmd::Controllers => ("controllers", None),
        Cmd::SetController { bridge, targets } => {
            ("set-openflow", Some(json!({"bridge": bridge, "controllers": targets})))
        }
        Cmd::DelController { bridge } => ("set-openflow", Some(json!({"bridge": bridge, "controllers": []}))),
        Cmd::SetFailMode { bridge, mode } => ("set-openflow", Some(json!({"bridge": bridge, "fail_mode": mode}))),
        Cmd::SetDatapathId { bridge, id } => {
            let id = if id == "default" { "" } else { id.as_str() };
            ("set-openflow", Some(json!({"bridge": bridge, "datapath_id": id})))
        }
        Cmd::Version => ("version", None),
        Cmd::Captures => ("capture-list", None),
        Cmd::TunnelShow => ("tunnel-show", None),
        Cmd::QosShow { port } => ("qos-show", Some(json!({ "port": port }))),
        Cmd::QosSet { port, settings } => {
            let mut spec = port_spec(port, settings)?;
            if let Some(m) = spec.as_object_mut() {
                m.remove("name");
            }
            ("qos-set", Some(json!({ "port": port, "settings": spec })))
        }
        Cmd::RouteShow => ("route-show", None),
        Cmd::NeighShow => ("neigh-show", None),
        Cmd::NeighFlush => ("neigh-flush", None),
        Cmd::NeighSet { uplink, ip, mac } => ("neigh-set", Some(json!({"uplink": uplink, "ip": ip, "mac": mac}))),
        Cmd::RouteAdd { prefix, via } => ("route-add", Some(json!({"prefix": prefix, "via": via}))),
        Cmd::RouteDel { prefix } => ("route-del", Some(json!({ "prefix": prefix }))),
        Cmd::ArpAdd { bridge, ip, mac, vlan } => {
            ("arp-add", Some(json!({"bridge": bridge, "ip": ip, "mac": mac, "vlan": vlan})))
        }
        Cmd::ArpDel { bridge, ip, vlan } => ("arp-del", Some(json!({"bridge": bridge, "ip": ip, "vlan": vlan}))),
        Cmd::ArpShow { bridge } => ("arp-show", Some(json!({ "bridge": bridge }))),
    };
    let r = call(&cli.socket, method, params)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let ports_table = |ports: &Value| {
        println!(
            "  {:<12} {:>6} {:<5} {:>12} {:>12} {:>10} {:>10}",
            "port", "ofport", "link", "rx_packets", "tx_packets", "rx_dropped", "tx_dropped"
        );
        for p in ports.as_array().into_iter().flatten() {
            println!(
                "  {:<12} {:>6} {:<5} {:>12} {:>12} {:>10} {:>10}",
                p["name"].as_str().unwrap_or(""),
                n(&p["ofport"]),
                p["link"].as_str().unwrap_or(""),
                n(&p["rx_packets"]),
                n(&p["tx_packets"]),
                n(&p["rx_dropped"]),
                n(&p["tx_dropped"])
            );
        }
    };
    match &cli.cmd {
        Cmd::Show => {
            for b in r["bridges"].as_array().into_iter().flatten() {
                println!("bridge {}", b["name"].as_str().unwrap_or(""));
                ports_table(&b["ports"]);
                let l = &b["l2"];
                println!(
                    "  l2: unicast {} flooded {} mac_moves {} arp answered {} passed {} drops: vlan {} hairpin {} malformed {} nombuf {}",
                    n(&l["unicast"]),
                    n(&l["flooded"]),
                    n(&l["mac_moves"]),
                    n(&l["arp_answered"]),
                    n(&l["arp_passed"]),
                    n(&l["drop_vlan"]),
                    n(&l["drop_hairpin"]),
                    n(&l["drop_malformed"]),
                    n(&l["drop_nombuf"])
                );
                let o = &b["openflow"];
                if o.is_object() {
                    println!(
                        "  openflow: {} flows; drops: miss {} bad_port {} controller_queue_full {} ttl_expired {} meter {} nombuf {}; unsupported actions {}",
                        n(&o["flows"]),
                        n(&o["drop_miss"]),
                        n(&o["drop_bad_port"]),
                        n(&o["drop_controller_queue_full"]),
                        n(&o["drop_ttl_expired"]),
                        n(&o["drop_meter"]),
                        n(&o["drop_nombuf"]),
                        n(&o["unsupported_actions"])
                    );
                    if let Some(h) = o["megaflow"]["hint"].as_str() {
                        println!("  thrashing: {h}");
                    }
                }
                for p in b["ports"].as_array().into_iter().flatten() {
                    let t = &p["tunnel"];
                    if t.is_object() {
                        println!("  {}", tunnel_line(t));
                    }
                    let u = &p["underlay"];
                    if u.is_object() {
                        println!("  {}", uplink_line(p["name"].as_str().unwrap_or(""), u));
                    }
                }
            }
        }
        Cmd::TunnelShow => {
            for t in r["tunnels"].as_array().into_iter().flatten() {
                println!("{}", tunnel_line(t));
            }
            for u in r["uplinks"].as_array().into_iter().flatten() {
                println!("{}", uplink_line(u["port"].as_str().unwrap_or(""), u));
            }
            let h = &r["held"];
            println!(
                "frames that waited for a neighbour: sent {} dropped: queue full {} expired {} no route {}",
                n(&h["sent"]),
                n(&h["overflow"]),
                n(&h["expired"]),
                n(&h["no_route"])
            );
        }
        Cmd::RouteShow => {
            for rt in r["routes"].as_array().into_iter().flatten() {
                let via = rt["via"].as_str().map_or("directly".to_string(), |v| format!("via {v}"));
                println!(
                    "{:<18} {} dev {} ({})",
                    rt["prefix"].as_str().unwrap_or(""),
                    via,
                    rt["uplink"].as_str().unwrap_or("?"),
                    rt["origin"].as_str().unwrap_or("")
                );
            }
        }
        Cmd::NeighShow => {
            for x in r["neighbours"].as_array().into_iter().flatten() {
                println!(
                    "{:<15} dev {} lladdr {} {} age {}s waiting {}",
                    x["ip"].as_str().unwrap_or(""),
                    x["uplink"].as_str().unwrap_or(""),
                    x["mac"].as_str().unwrap_or("-"),
                    x["state"].as_str().unwrap_or(""),
                    x["age_s"].as_u64().map_or("-".to_string(), |a| a.to_string()),
                    n(&x["waiting"])
                );
            }
        }
        Cmd::RouteAdd { prefix, via } => println!("route {prefix} via {via} added"),
        Cmd::RouteDel { prefix } => println!("route {prefix} removed"),
        Cmd::ArpAdd { .. } | Cmd::ArpDel { .. } | Cmd::ArpShow { .. } => {
            for e in r["entries"].as_array().into_iter().flatten() {
                println!(
                    "{:<15} {} vlan {}",
                    e["ip"].as_str().unwrap_or(""),
                    e["mac"].as_str().unwrap_or(""),
                    n(&e["vlan"])
                );
            }
            println!("requests answered {} passed {}", n(&r["answered"]), n(&r["passed"]));
        }
        Cmd::NeighFlush => println!("{} neighbours forgotten", n(&r["flushed"])),
        Cmd::NeighSet { uplink, ip, mac } => println!("{ip} is {mac} on {uplink} (permanent)"),
        Cmd::PortStats { .. } => ports_table(&r["ports"]),
        Cmd::PmdStats => {
            for p in r["pmds"].as_array().into_iter().flatten() {
                let it = &p["iteration_us"];
                println!(
                    "pmd {} core {}: busy {:.1}%  {:.1} cycles/pkt  {:.1} pkts/batch  {} packets  iteration p50 {:.2} us p99 {:.2} us p99.9 {:.2} us",
                    n(&p["pmd"]), n(&p["core"]), p["busy_pct"].as_f64().unwrap_or(0.0), p["cycles_per_packet"].as_f64().unwrap_or(0.0),
                    p["packets_per_batch"].as_f64().unwrap_or(0.0), n(&p["packets"]), it["p50"].as_f64().unwrap_or(0.0),
                    it["p99"].as_f64().unwrap_or(0.0), it["p999"].as_f64().unwrap_or(0.0)
                );
                for q in p["rxqs"].as_array().into_iter().flatten() {
                    println!("  rxq {} queue {}", q["port"].as_str().unwrap_or("?"), n(&q["queue"]));
                }
            }
            for b in r["openflow"].as_array().into_iter().flatten() {
                let m = &b["megaflow"];
                let pct = |k: &str| 100.0 * m[k].as_f64().unwrap_or(0.0);
                println!(
                    "bridge {} megaflows {}: emc hits {} ({:.1}%) megaflow hits {} ({:.1}%) upcalls {}  subtables/hit {:.2}  upcall drops {}  uncacheable {}  expired {}",
                    b["bridge"].as_str().unwrap_or(""),
                    n(&m["megaflows"]),
                    n(&m["emc_hits"]),
                    pct("emc_hit_rate"),
                    n(&m["hits"]),
                    pct("megaflow_hit_rate"),
                    n(&m["upcalls"]),
                    m["subtable_lookups_per_hit"].as_f64().unwrap_or(0.0),
                    n(&m["upcall_drops"]),
                    n(&m["uncacheable"]),
                    n(&m["expired"])
                );
                let packets = n(&m["packets"]).max(1) as f64;
                let stages: Vec<String> = m["stage_cycles"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k} {:.1}", v.as_u64().unwrap_or(0) as f64 / packets))
                    .collect();
                println!("  cycles/pkt by stage: {}", stages.join("  "));
                println!(
                    "  cache limit {} per PMD thread ({}), grown {} times, flushed when full {}",
                    n(&m["limit"]),
                    m["limit_mode"].as_str().unwrap_or("?"),
                    n(&m["grown"]),
                    n(&m["flushed_full"])
                );
                if let Some(h) = m["hint"].as_str() {
                    println!("  thrashing: {h}");
                }
            }
        }
        Cmd::FdbShow { .. } => {
            println!("{:<12} {:>6} {:>5} {:<17} {:>6}", "port", "ofport", "vlan", "mac", "age_s");
            for e in r["entries"].as_array().into_iter().flatten() {
                println!(
                    "{:<12} {:>6} {:>5} {:<17} {:>6}",
                    e["port"].as_str().unwrap_or("?"),
                    n(&e["ofport"]),
                    n(&e["vlan"]),
                    e["mac"].as_str().unwrap_or(""),
                    n(&e["age_s"])
                );
            }
            let s = &r["stats"];
            println!(
                "{} of {} entries; learned {} moves {} expired {} evictions {} refused (full) {}",
                n(&s["entries"]),
                n(&s["capacity"]),
                n(&s["learned"]),
                n(&s["moves"]),
                n(&s["expired"]),
                n(&s["evictions"]),
                n(&s["full_refusals"])
            );
        }
        Cmd::AddPort { bridge, name, .. } => println!("added port {name} to {bridge}"),
        Cmd::QosSet { port, .. } => println!("QoS of {port} changed"),
        Cmd::QosShow { .. } => {
            for p in r["ports"].as_array().into_iter().flatten() {
                for d in ["ingress", "egress"] {
                    let q = &p[d];
                    if q.is_null() {
                        continue;
                    }
                    let c = |k: &str| format!("{}/{}", n(&q[k]["packets"]), n(&q[k]["bytes"]));
                    println!(
                        "{} {d}: {} {} cir {} cbs {} eir {} ebs {} pir {} pbs {}; packets/bytes green {} yellow {} red (dropped) {}",
                        p["port"].as_str().unwrap_or(""),
                        q["marker"].as_str().unwrap_or(""),
                        q["unit"].as_str().unwrap_or(""),
                        n(&q["cir"]),
                        n(&q["cbs"]),
                        n(&q["eir"]),
                        n(&q["ebs"]),
                        n(&q["pir"]),
                        n(&q["pbs"]),
                        c("green"),
                        c("yellow"),
                        c("red")
                    );
                }
                print_shaper(p["port"].as_str().unwrap_or(""), &p["shaper"]);
            }
        }
        Cmd::DelPort { name } => println!("removed port {name}"),
        Cmd::Reload => {
            let mut any = false;
            for k in ["bridges_added", "bridges_removed", "added", "removed", "reopened", "changed"] {
                let v: Vec<&str> = r[k].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                if !v.is_empty() {
                    any = true;
                    println!("{k}: {}", v.join(" "));
                }
            }
            if r["routes_changed"] == json!(true) {
                any = true;
                println!("routes: changed");
            }
            if !any {
                println!("reloaded: no changes");
            }
        }
        Cmd::DumpFlows { .. } => {
            for f in r["flows"].as_array().into_iter().flatten() {
                println!(
                    " cookie={}, table={}, n_packets={}, n_bytes={}, priority={}{}{} actions={}",
                    f["cookie"].as_str().unwrap_or(""),
                    n(&f["table"]),
                    n(&f["n_packets"]),
                    n(&f["n_bytes"]),
                    n(&f["priority"]),
                    match f["match"].as_str() {
                        Some("") | None => String::new(),
                        Some(m) => format!(",{m}"),
                    },
                    match (n(&f["idle_timeout"]), n(&f["hard_timeout"])) {
                        (0, 0) => String::new(),
                        (i, h) => format!(" idle_timeout={i},hard_timeout={h}"),
                    },
                    f["actions"].as_str().unwrap_or("")
                );
            }
        }
        Cmd::DpFlows { .. } => {
            for f in r["flows"].as_array().into_iter().flatten() {
                let tables: Vec<String> =
                    f["tables"].as_array().into_iter().flatten().map(|t| n(t).to_string()).collect();
                println!(
                    "pmd {} {}, packets:{}, bytes:{}, age:{:.3}s, used:{:.3}s, tables:{}, actions:{}",
                    n(&f["pmd"]),
                    f["match"].as_str().unwrap_or(""),
                    n(&f["packets"]),
                    n(&f["bytes"]),
                    n(&f["age_ms"]) as f64 / 1000.0,
                    n(&f["idle_ms"]) as f64 / 1000.0,
                    tables.join(","),
                    f["actions"].as_str().unwrap_or("")
                );
            }
        }
        Cmd::DumpGroups { .. } => {
            for g in r["groups"].as_array().into_iter().flatten() {
                let buckets: Vec<String> = g["buckets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        format!("bucket=weight:{},actions={}", n(&b["weight"]), b["actions"].as_str().unwrap_or(""))
                    })
                    .collect();
                println!(
                    " group_id={},type={},{} n_packets={}",
                    n(&g["group_id"]),
                    g["type"].as_str().unwrap_or(""),
                    buckets.join(","),
                    n(&g["n_packets"])
                );
            }
        }
        Cmd::DumpMeters { .. } => {
            for m in r["meters"].as_array().into_iter().flatten() {
                let bands: Vec<String> = m["bands"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        format!(
                            "type={} rate={} burst_size={}",
                            b["type"].as_str().unwrap_or(""),
                            n(&b["rate"]),
                            n(&b["burst_size"])
                        )
                    })
                    .collect();
                println!(
                    " meter={} {} bands={} n_packets={}",
                    n(&m["meter_id"]),
                    m["unit"].as_str().unwrap_or(""),
                    bands.join(" "),
                    n(&m["n_packets"])
                );
            }
        }
        Cmd::Controllers => {
            for b in r["bridges"].as_array().into_iter().flatten() {
                println!(
                    "bridge {} (datapath id {}, fail_mode {})",
                    b["name"].as_str().or(b["bridge"].as_str()).unwrap_or(""),
                    b["datapath_id"].as_str().unwrap_or(""),
                    b["fail_mode"].as_str().unwrap_or("")
                );
                for c in b["controllers"].as_array().into_iter().flatten() {
                    println!(
                        "  {} ({}): {}",
                        c["target"].as_str().unwrap_or(""),
                        c["kind"].as_str().unwrap_or(""),
                        c["state"].as_str().unwrap_or("")
                    );
                }
                for c in b["connections"].as_array().into_iter().flatten() {
                    println!(
                        "  connection {}: role {}",
                        c["peer"].as_str().unwrap_or(""),
                        c["role"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Cmd::SetController { .. } | Cmd::DelController { .. } | Cmd::SetFailMode { .. } | Cmd::SetDatapathId { .. } => {
            let list: Vec<&str> = r["controllers"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            println!(
                "bridge {}: controllers [{}], fail_mode {}, datapath id {}",
                r["bridge"].as_str().unwrap_or(""),
                list.join(", "),
                r["fail_mode"].as_str().unwrap_or(""),
                r["datapath_id"].as_str().unwrap_or("")
            );
        }
        Cmd::Version => {
            println!("vswitchd {} on {}", r["vswitchd"].as_str().unwrap_or("?"), r["dpdk"].as_str().unwrap_or("?"))
        }
        Cmd::Trace { .. } => println!("{}", r["text"].as_str().unwrap_or("")),
        Cmd::Capture { .. } => {}
        Cmd::Captures => {
            for c in r["captures"].as_array().into_iter().flatten() {
                println!(
                    "capture {} on {} -> {}: {} captured, {} written, {} dropped{}",
                    n(&c["id"]),
                    c["port"].as_str().unwrap_or("?"),
                    c["file"].as_str().unwrap_or("?"),
                    n(&c["captured"]),
                    n(&c["written"]),
                    n(&c["dropped"]),
                    if c["done"].as_bool() == Some(true) { " (done)" } else { "" }
                );
            }
        }
    }
    Ok(())
}
