//! `vswitch-cni`: the CNI plugin (spec 1.0.0 and 1.1.0) that attaches a
//! container to a vswitchd bridge by a veth pair: addresses from the
//! network's `ipam` section (leased in-process, as `vswitch-ipam` does),
//! the pair set up over netlink with the container end inside its
//! namespace, the host end added to the bridge through vswitchd's control
//! socket (AF_XDP, or AF_PACKET where AF_XDP cannot be had), and the
//! container's addresses in the bridge's ARP responder. A failed ADD undoes
//! every step it made; DEL is idempotent; CHECK checks the pair, the
//! leases and the port; GC removes leases and ports of attachments no
//! longer valid; STATUS asks vswitchd.
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "tenants", "type": "vswitch-cni",
//!  "bridge": "br0", "socket": "/run/vswitchd.sock", "mtu": 1500,
//!  "portType": "auto",
//!  "ipam": {"type": "vswitch-ipam", "ranges": [[{"subnet": "10.1.0.0/24"}]],
//!           "routes": [{"dst": "0.0.0.0/0"}]}}
//! ```

use container_host::cni::{self, code, CniError, Command, Env, IpamResult};
use container_host::control::{Control, ControlError};
use container_host::ipam::Owner;
use container_host::ipam_plugin::{invalid, static_requests, Plugin};
use container_host::netlink::{self, RouteSpec, VethSpec};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// This plugin's keys of the network configuration.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attach {
    bridge: String,
    #[serde(default = "default_socket")]
    socket: PathBuf,
    #[serde(default = "default_mtu")]
    mtu: u32,
    /// VLAN (access port tag), none for untagged.
    #[serde(default)]
    vlan: Option<u16>,
    /// `afxdp`, `afpacket` or `auto` (AF_XDP, else AF_PACKET).
    #[serde(default = "default_port_type")]
    port_type: String,
    /// What the runtime passes for capabilities (`bandwidth`).
    #[serde(default)]
    runtime_config: RuntimeConfig,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(default)]
    bandwidth: Option<Bandwidth>,
}

/// CNI's `bandwidth` capability, from the container's side: `ingress` is
/// what it receives (the switch's egress to its port), in bits per second
/// and bursts in bits.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Bandwidth {
    #[serde(default)]
    ingress_rate: Option<u64>,
    #[serde(default)]
    ingress_burst: Option<u64>,
    #[serde(default)]
    egress_rate: Option<u64>,
    #[serde(default)]
    egress_burst: Option<u64>,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/vswitchd/vswitchd.sock")
}
fn default_mtu() -> u32 {
    1500
}
fn default_port_type() -> String {
    "auto".into()
}

fn control_err(e: ControlError) -> CniError {
    match e {
        ControlError::Unreachable(..) => {
            CniError::new(code::TRY_AGAIN_LATER, "vswitchd is not answering", e.to_string())
        }
        other => CniError::new(code::INVALID_CONFIG, "vswitchd refused the attachment", other.to_string()),
    }
}

fn net_err(e: netlink::NetError) -> CniError {
    CniError::new(code::IO_FAILURE, "interface set-up failed", e.to_string())
}

/// The host end's name (and the switch port's): `vc` and 8 hex digits of
/// a hash of the container id and interface, under 16 characters.
fn host_name(owner: &Owner) -> String {
    // FNV-1a, 32 bits: stable across runs and builds.
    let mut h: u32 = 0x811c_9dc5;
    for b in owner.container.bytes().chain([0]).chain(owner.ifname.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("vc{h:08x}")
}

/// A MAC for the container end, from its IPv4 address where it has one
/// (stable across restarts, as the address is); locally administered.
fn mac_for(ips: &[(IpAddr, u8)], owner: &Owner) -> [u8; 6] {
    if let Some((IpAddr::V4(a), _)) = ips.iter().find(|(a, _)| a.is_ipv4()) {
        let o = a.octets();
        return [0x0a, 0x58, o[0], o[1], o[2], o[3]];
    }
    let h = host_name(owner);
    let n = u32::from_str_radix(&h[2..], 16).unwrap_or(0).to_be_bytes();
    [0x0a, 0x58, n[0], n[1], n[2], n[3]]
}

/// `ADDRESS/LEN`.
fn cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = s.split_once('/')?;
    Some((a.parse().ok()?, l.parse().ok()?))
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

struct Cni {
    ipam: Plugin,
    attach: Attach,
    ctl: Control,
}

impl Cni {
    fn new(conf: cni::NetConf) -> Result<Cni, CniError> {
        let attach: Attach =
            serde_json::from_value(Value::Object(conf.rest.clone())).map_err(|e| invalid(format!("network: {e}")))?;
        if attach.mtu < 68 || attach.mtu > 9600 {
            return Err(invalid(format!("mtu {} is outside 68-9600", attach.mtu)));
        }
        if !["auto", "afxdp", "afpacket"].contains(&attach.port_type.as_str()) {
            return Err(invalid(format!("portType {:?} is none of auto, afxdp, afpacket", attach.port_type)));
        }
        let ctl = Control::new(&attach.socket);
        Ok(Cni { ipam: Plugin::new(conf)?, attach, ctl })
    }

    fn add_port(&self, host: &str) -> Result<(), CniError> {
        let kinds: &[&str] = match self.attach.port_type.as_str() {
            "auto" => &["afxdp", "afpacket"],
            "afxdp" => &["afxdp"],
            _ => &["afpacket"],
        };
        let mut last = None;
        for kind in kinds {
            let mut port = json!({"name": host, "type": kind, "iface": host, "mtu": self.attach.mtu});
            if let Some(tag) = self.attach.vlan {
                port["vlan_mode"] = json!("access");
                port["tag"] = json!(tag);
            }
            if let Some(b) = &self.attach.runtime_config.bandwidth {
                // The container's egress is what the switch receives from
                // the port (bits per second, bursts in bits, on both sides).
                let rates = [("ingress_rate", b.egress_rate), ("egress_rate", b.ingress_rate)];
                let bursts = [("ingress_burst", b.egress_burst), ("egress_burst", b.ingress_burst)];
                for (k, v) in rates.into_iter().filter_map(|(k, v)| Some((k, v.filter(|r| *r > 0)?))) {
                    port[k] = json!(v);
                }
                for (k, v) in bursts.into_iter().filter_map(|(k, v)| Some((k, v.filter(|r| *r > 0)?))) {
                    port[k] = json!(v);
                }
            }
            match self.ctl.call("add-port", json!({"bridge": self.attach.bridge, "port": port})) {
                Ok(_) => return Ok(()),
                Err(e @ ControlError::Unreachable(..)) => return Err(control_err(e)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| invalid("no port type"), control_err))
    }

    fn arp(&self, method: &str, ip: IpAddr, mac: Option<&[u8; 6]>) -> Result<Value, ControlError> {
        let mut p = json!({"bridge": self.attach.bridge, "ip": ip.to_string(), "vlan": self.attach.vlan.unwrap_or(0)});
        if let Some(m) = mac {
            p["mac"] = json!(fmt_mac(m));
        }
        self.ctl.call(method, p)
    }

    /// ADD: a failure part way is undone by DEL, which removes whatever of
    /// the attachment exists.
    fn add(&self, env: &Env, owner: &Owner) -> Result<Value, CniError> {
        let r = self.attach(env, owner);
        if r.is_err() {
            let _ = self.del(owner);
        }
        r
    }

    fn attach(&self, env: &Env, owner: &Owner) -> Result<Value, CniError> {
        let netns = env.netns.clone().unwrap_or_default();
        let host = host_name(owner);
        let leased: IpamResult = self.ipam.add(owner, &static_requests(&env.args)?)?;
        let ips: Vec<(IpAddr, u8)> = leased.ips.iter().filter_map(|c| cidr(&c.address)).collect();
        let routes = leased
            .routes
            .iter()
            .filter_map(|r| {
                let (dst, len) = cidr(&r.dst)?;
                let gw = r.gw.as_deref().and_then(|g| g.parse().ok()).or_else(|| {
                    leased
                        .ips
                        .iter()
                        .filter_map(|c| c.gateway.as_deref()?.parse::<IpAddr>().ok())
                        .find(|g| g.is_ipv4() == dst.is_ipv4())
                });
                Some(RouteSpec { dst: (dst, len), gw })
            })
            .collect();
        let mac = mac_for(&ips, owner);
        let spec = VethSpec {
            host: host.clone(),
            ifname: owner.ifname.clone(),
            mtu: self.attach.mtu,
            mac: Some(mac),
            addrs: ips.clone(),
            routes,
            finish_checksums: true,
        };
        netlink::attach_veth(Path::new(&netns), &spec).map_err(net_err)?;
        self.add_port(&host)?;
        for (a, _) in &ips {
            self.arp("arp-add", *a, Some(&mac)).map_err(control_err)?;
        }
        let mut ipcfg = serde_json::to_value(&leased.ips).unwrap_or_default();
        for c in ipcfg.as_array_mut().into_iter().flatten() {
            c["interface"] = json!(1);
        }
        let mut r = json!({
            "cniVersion": self.ipam.conf.cni_version,
            "interfaces": [{"name": host}, {"name": owner.ifname, "mac": fmt_mac(&mac), "mtu": self.attach.mtu, "sandbox": netns}],
            "ips": ipcfg,
        });
        if !leased.routes.is_empty() {
            r["routes"] = serde_json::to_value(&leased.routes).unwrap_or_default();
        }
        if let Some(d) = leased.dns {
            r["dns"] = d;
        }
        if self.ipam.conf.cni_version == "1.0.0" {
            // (mtu on interfaces is 1.1.0's.)
            if let Some(i) = r["interfaces"][1].as_object_mut() {
                i.remove("mtu");
            }
        }
        Ok(r)
    }

    fn del(&self, owner: &Owner) -> Result<(), CniError> {
        let host = host_name(owner);
        let mine: Vec<IpAddr> = self.ipam.leases_of(owner)?;
        // What vswitchd holds goes first; a vswitchd that is down holds
        // nothing of it after its restart but what its config file says,
        // which this plugin never writes.
        match self.ctl.call("del-port", json!({"port": host})) {
            Ok(_) | Err(ControlError::Refused(..) | ControlError::Unreachable(..)) => {}
            Err(e) => return Err(control_err(e)),
        }
        for a in mine {
            let _ = self.arp("arp-del", a, None);
        }
        netlink::remove_link(&host).map_err(net_err)?;
        self.ipam.del(owner)
    }

    fn check(&self, env: &Env, owner: &Owner) -> Result<(), CniError> {
        self.ipam.check(owner)?;
        let prev = self.ipam.conf.prev_result.clone().unwrap_or_default();
        let ips: Vec<(IpAddr, u8)> =
            prev["ips"].as_array().into_iter().flatten().filter_map(|c| cidr(c["address"].as_str()?)).collect();
        let mac =
            prev["interfaces"].as_array().into_iter().flatten().find(|i| i["name"] == owner.ifname.as_str()).and_then(
                |i| {
                    let b: Vec<u8> =
                        i["mac"].as_str()?.split(':').filter_map(|x| u8::from_str_radix(x, 16).ok()).collect();
                    <[u8; 6]>::try_from(b.as_slice()).ok()
                },
            );
        let host = host_name(owner);
        let spec = VethSpec {
            host: host.clone(),
            ifname: owner.ifname.clone(),
            mtu: self.attach.mtu,
            mac,
            addrs: ips,
            routes: Vec::new(),
            finish_checksums: true,
        };
        let netns = env.netns.clone().unwrap_or_default();
        netlink::check_veth(Path::new(&netns), &spec)
            .map_err(|e| CniError::new(code::CHECK_FAILED, "attachment check failed", e.to_string()))?;
        if !self.bridge_ports().map_err(control_err)?.contains(&host) {
            return Err(CniError::new(
                code::CHECK_FAILED,
                "attachment check failed",
                format!("port {host} is not on bridge {}", self.attach.bridge),
            ));
        }
        Ok(())
    }

    fn gc(&self) -> Result<(), CniError> {
        let keep: Vec<String> = self
            .ipam
            .conf
            .valid_attachments
            .iter()
            .map(|a| host_name(&Owner { container: a.container.clone(), ifname: a.ifname.clone() }))
            .collect();
        if let Ok(ports) = self.bridge_ports() {
            let ours = ports
                .into_iter()
                .filter(|n| n.len() == 10 && n.starts_with("vc") && n[2..].chars().all(|c| c.is_ascii_hexdigit()));
            for p in ours.filter(|p| !keep.contains(p)) {
                let _ = self.ctl.call("del-port", json!({"port": p}));
                let _ = netlink::remove_link(&p);
            }
        }
        self.ipam.gc()
    }

    /// The names of the ports on the network's bridge.
    fn bridge_ports(&self) -> Result<Vec<String>, ControlError> {
        let show = self.ctl.call("show", Value::Null)?;
        Ok(show["bridges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["name"] == self.attach.bridge.as_str())
            .flat_map(|b| b["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect())
    }

    fn status(&self) -> Result<(), CniError> {
        self.ipam.status()?;
        self.ctl
            .call("version", Value::Null)
            .map(|_| ())
            .map_err(|e| CniError::new(code::NOT_AVAILABLE, "vswitchd is not answering", e.to_string()))
    }
}

fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let c = Cni::new(cni::parse_conf(stdin)?)?;
    let owner = Owner { container: env.container.clone(), ifname: env.ifname.clone() };
    match env.command {
        Command::Add => c.add(env, &owner).map(Some),
        Command::Del => c.del(&owner).map(|()| None),
        Command::Check => c.check(env, &owner).map(|()| None),
        Command::Gc => c.gc().map(|()| None),
        Command::Status => c.status().map(|()| None),
        Command::Version => Ok(None),
    }
}

fn main() {
    cni::plugin_main(run);
}
