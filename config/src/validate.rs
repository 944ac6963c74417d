//! Checks that go beyond types: ranges, combinations, uniqueness.

use crate::error::Seg;
use crate::schema::{Config, Controller, PortType, VlanMode};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

type Failure = (Vec<Seg>, String);

fn key(k: &str) -> Seg {
    Seg::Key(k.into())
}

fn fail<T>(path: Vec<Seg>, why: impl Into<String>) -> Result<T, Failure> {
    Err((path, why.into()))
}

fn check_name(path: Vec<Seg>, what: &str, name: &str) -> Result<(), Failure> {
    if name.is_empty() || name.len() > 15 {
        return fail(path, format!("{what} name `{name}` must be 1-15 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return fail(path, format!("{what} name `{name}` may hold only letters, digits, `-`, `_` and `.`"));
    }
    Ok(())
}

pub(crate) fn validate(cfg: &Config) -> Result<(), Failure> {
    let eal = &cfg.eal;
    let mut seen = HashSet::new();
    for (i, c) in eal.cores.iter().enumerate() {
        if !seen.insert(c) {
            return fail(vec![key("eal"), key("cores"), Seg::Index(i)], format!("core {c} is listed twice"));
        }
    }
    if eal.memory_mb < 64 {
        return fail(vec![key("eal"), key("memory_mb")], format!("{} MB is too little (at least 64)", eal.memory_mb));
    }
    if eal.file_prefix.is_empty() || eal.file_prefix.contains(['/', ' ', '\t']) {
        return fail(vec![key("eal"), key("file_prefix")], "must be a non-empty name without `/` or spaces");
    }
    let mut seen = HashSet::new();
    for (i, c) in cfg.pmd.cores.iter().enumerate() {
        let path = vec![key("pmd"), key("cores"), Seg::Index(i)];
        if !seen.insert(c) {
            return fail(path, format!("core {c} is listed twice"));
        }
        if !eal.cores.is_empty() && !eal.cores.contains(c) {
            return fail(path, format!("core {c} is not in eal.cores {:?}", eal.cores));
        }
    }
    if cfg.pmd.rebalance_interval_s == 0 {
        return fail(vec![key("pmd"), key("rebalance_interval_s")], "must be at least 1 second");
    }
    let e = cfg.pmd.emc_entries;
    if !(2..=1 << 20).contains(&e) || !e.is_power_of_two() {
        return fail(vec![key("pmd"), key("emc_entries")], format!("{e} is not a power of two from 2 to 1048576"));
    }
    if cfg.pmd.megaflow_max_idle_ms < 100 {
        return fail(vec![key("pmd"), key("megaflow_max_idle_ms")], "must be at least 100 ms");
    }
    if let crate::schema::MegaflowLimit::Fixed(n) = cfg.pmd.megaflow_limit {
        if !(1..=crate::schema::MegaflowLimit::MAX).contains(&n) {
            return fail(vec![key("pmd"), key("megaflow_limit")], "must be \"auto\" or from 1 to 4194304");
        }
    }
    if !cfg.control.socket.starts_with('/') {
        return fail(vec![key("control"), key("socket")], format!("`{}` must be an absolute path", cfg.control.socket));
    }
    if let Some(m) = &cfg.control.metrics {
        if m.parse::<std::net::SocketAddr>().is_err() {
            return fail(
                vec![key("control"), key("metrics")],
                format!("`{m}` is not an IP:PORT to serve metrics on (e.g. \"127.0.0.1:9470\")"),
            );
        }
    }
    let mut bridge_names = HashMap::new();
    let mut port_names: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut ifaces: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut addresses: HashMap<IpAddr, (usize, usize)> = HashMap::new();
    let mut subnets: Vec<(IpAddr, u8)> = Vec::new();
    let mut tunnels: Vec<(usize, usize)> = Vec::new();
    for (bi, b) in cfg.bridges.iter().enumerate() {
        let bp = |rest: &[Seg]| {
            let mut p = vec![key("bridge"), Seg::Index(bi)];
            p.extend_from_slice(rest);
            p
        };
        check_name(bp(&[key("name")]), "bridge", &b.name)?;
        if let Some(prev) = bridge_names.insert(b.name.as_str(), bi) {
            return fail(bp(&[key("name")]), format!("bridge `{}` is already defined as bridge[{prev}]", b.name));
        }
        if let Some(dpid) = &b.datapath_id {
            let hex = dpid.strip_prefix("0x").unwrap_or(dpid);
            if hex.is_empty() || hex.len() > 16 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return fail(bp(&[key("datapath_id")]), format!("`{dpid}` is not up to 16 hex digits"));
            }
        }
        let mut listen_ports = HashSet::new();
        for (ci, c) in b.controllers.iter().enumerate() {
            let path = bp(&[key("controllers"), Seg::Index(ci)]);
            match c.parse::<Controller>() {
                Ok(Controller::Listen { port, .. }) => {
                    if !listen_ports.insert(port) {
                        return fail(path, format!("listens on port {port} twice"));
                    }
                }
                Ok(Controller::Connect { .. }) => {}
                Err(why) => return fail(path, why),
            }
        }
        if b.mac_aging_s == 0 {
            return fail(bp(&[key("mac_aging_s")]), "must be at least 1 second");
        }
        if b.flow_tables == 0 || b.flow_tables == 255 {
            return fail(bp(&[key("flow_tables")]), format!("{} is outside 1-254", b.flow_tables));
        }
        if !(1..=1 << 24).contains(&b.flow_table_size) {
            return fail(bp(&[key("flow_table_size")]), format!("{} is outside 1-16777216", b.flow_table_size));
        }
        if b.mac_table_size == 0 {
            return fail(bp(&[key("mac_table_size")]), "must be at least 1");
        }
        let mut arp = HashSet::new();
        for (ai, e) in b.arp.iter().enumerate() {
            let path = |k: &str| bp(&[key("arp"), Seg::Index(ai), key(k)]);
            let ip: Ipv4Addr = e.ip.parse().map_err(|_| (path("ip"), format!("`{}` is not an IPv4 address", e.ip)))?;
            parse_mac(&e.mac).map_err(|why| (path("mac"), why))?;
            if e.vlan > 4094 {
                return fail(path("vlan"), format!("VLAN {} is outside 0-4094", e.vlan));
            }
            if !arp.insert((e.vlan, ip)) {
                return fail(path("ip"), format!("{ip} on VLAN {} is listed twice", e.vlan));
            }
        }
        let mut ofports = HashMap::new();
        for (pi, p) in b.ports.iter().enumerate() {
            let pp = |k: &str| bp(&[key("port"), Seg::Index(pi), key(k)]);
            check_name(pp("name"), "port", &p.name)?;
            if let Some((b0, p0)) = port_names.insert(p.name.as_str(), (bi, pi)) {
                return fail(pp("name"), format!("port `{}` is already defined as bridge[{b0}].port[{p0}]", p.name));
            }
            match p.kind {
                PortType::Dpdk => match (&p.pci, &p.devargs) {
                    (Some(_), Some(_)) => return fail(pp("devargs"), "a dpdk port takes `pci` or `devargs`, not both"),
                    (None, None) => {
                        return fail(pp("type"), "a dpdk port needs `pci` (a NIC or VF) or `devargs` (a vdev)")
                    }
                    (Some(pci), None) if !is_pci(pci) => {
                        return fail(pp("pci"), format!("`{pci}` is not a PCI address like 0000:3b:00.0"));
                    }
                    (None, Some(d)) if !d.starts_with("net_") => {
                        return fail(
                            pp("devargs"),
                            format!("`{d}` does not start with a net_ driver name (net_memif0,...)"),
                        );
                    }
                    _ => {}
                },
                PortType::Afxdp | PortType::Afpacket | PortType::Tap => {
                    for (k, v) in [("pci", &p.pci), ("devargs", &p.devargs)] {
                        if v.is_some() {
                            return fail(pp(k), format!("`{k}` is only for dpdk ports"));
                        }
                    }
                    match &p.iface {
                        None if p.kind != PortType::Tap => {
                            return fail(pp("type"), "needs `iface`, the kernel interface to attach");
                        }
                        Some(i) => {
                            check_name(pp("iface"), "interface", i)?;
                            if let Some((b0, p0)) = ifaces.insert(i.as_str(), (bi, pi)) {
                                return fail(
                                    pp("iface"),
                                    format!("interface `{i}` is already used by bridge[{b0}].port[{p0}]"),
                                );
                            }
                        }
                        None => {}
                    }
                }
                PortType::Vxlan | PortType::Geneve | PortType::Gre => check_tunnel(p, &pp)?,
                PortType::Internal => {
                    for (k, set) in
                        [("pci", p.pci.is_some()), ("devargs", p.devargs.is_some()), ("iface", p.iface.is_some())]
                    {
                        if set {
                            return fail(
                                pp(k),
                                format!("an internal port takes no `{k}` (it is named after the port)"),
                            );
                        }
                    }
                }
            }
            if !p.kind.is_tunnel() {
                for (k, set) in [
                    ("remote_ip", p.remote_ip.is_some()),
                    ("local_ip", p.local_ip.is_some()),
                    ("key", p.key.is_some()),
                    ("dst_port", p.dst_port.is_some()),
                    ("csum", p.csum),
                ] {
                    if set {
                        return fail(
                            pp(k),
                            format!("`{k}` is for tunnel ports (type = \"vxlan\", \"geneve\", \"gre\")"),
                        );
                    }
                }
            }
            for (ai, a) in p.addresses.iter().enumerate() {
                let path = bp(&[key("port"), Seg::Index(pi), key("addresses"), Seg::Index(ai)]);
                let (ip, len) = parse_ip_net(a).map_err(|why| (path.clone(), why))?;
                if len == 0 || !is_unicast(ip) {
                    return fail(path, format!("`{a}` is not a unicast address with a prefix length of at least 1"));
                }
                if let Some((b0, p0)) = addresses.insert(ip, (bi, pi)) {
                    return fail(path, format!("{ip} is already an address of bridge[{b0}].port[{p0}]"));
                }
                subnets.push((ip, len));
            }
            if p.kind.is_tunnel() {
                tunnels.push((bi, pi));
            }
            if let Some(of) = p.ofport {
                if !(1..=0xfeff).contains(&of) {
                    return fail(pp("ofport"), format!("{of} is outside 1-65279"));
                }
                if let Some(prev) = ofports.insert(of, pi) {
                    return fail(pp("ofport"), format!("OpenFlow port {of} is already taken by port[{prev}]"));
                }
            }
            match p.vlan_mode {
                VlanMode::Access => match p.tag {
                    None => return fail(pp("vlan_mode"), "an access port needs `tag` (1-4094)"),
                    Some(t) if !(1..=4094).contains(&t) => {
                        return fail(pp("tag"), format!("VLAN {t} is outside 1-4094"))
                    }
                    _ => {}
                },
                VlanMode::Trunk | VlanMode::None if p.tag.is_some() => {
                    return fail(pp("tag"), "`tag` is for access ports (set vlan_mode = \"access\")");
                }
                _ => {}
            }
            if p.vlan_mode != VlanMode::Trunk && !p.trunks.is_empty() {
                return fail(pp("trunks"), "`trunks` is for trunk ports (set vlan_mode = \"trunk\")");
            }
            let mut seen = HashSet::new();
            for (ti, t) in p.trunks.iter().enumerate() {
                let path = bp(&[key("port"), Seg::Index(pi), key("trunks"), Seg::Index(ti)]);
                if !(1..=4094).contains(t) {
                    return fail(path, format!("VLAN {t} is outside 1-4094"));
                }
                if !seen.insert(t) {
                    return fail(path, format!("VLAN {t} is listed twice"));
                }
            }
            if let Some(m) = p.mtu {
                if !(68..=9600).contains(&m) {
                    return fail(pp("mtu"), format!("{m} is outside 68-9600"));
                }
            }
            if let crate::schema::TxOffload::Only(list) = &p.tx_offload {
                if p.kind.is_tunnel() {
                    return fail(pp("tx_offload"), "a tunnel port has no device: its uplink's `tx_offload` counts");
                }
                for (i, o) in list.iter().enumerate() {
                    if !crate::TX_OFFLOADS.contains(&o.as_str()) {
                        return fail(
                            bp(&[key("port"), Seg::Index(pi), key("tx_offload"), Seg::Index(i)]),
                            format!("`{o}` is no offload the switch uses ({})", crate::TX_OFFLOADS.join(", ")),
                        );
                    }
                }
            }
            if let Err((rest, why)) = crate::qos::check_shaper(p) {
                let mut path = vec![key("port"), Seg::Index(pi)];
                path.extend(rest);
                return fail(bp(&path), why);
            }
            if let Err((k, why)) = crate::qos::check(p) {
                return fail(pp(&k), why);
            }
            if p.n_rxq == 0 || p.n_rxq > 64 {
                return fail(pp("n_rxq"), format!("{} is outside 1-64", p.n_rxq));
            }
            if let Some(peer) = &p.peer {
                if peer == &p.name {
                    return fail(pp("peer"), "a port cannot be cross-connected to itself");
                }
                if !b.ports.iter().any(|q| &q.name == peer) {
                    return fail(pp("peer"), format!("no port `{peer}` in bridge `{}`", b.name));
                }
                if p.vlan_mode != VlanMode::None {
                    return fail(pp("vlan_mode"), "a cross-connected port forwards frames as they are: no VLAN mode");
                }
            }
        }
    }
    // A shaper's classes name ports of the switch.
    for (bi, b) in cfg.bridges.iter().enumerate() {
        for (pi, p) in b.ports.iter().enumerate() {
            let Some(s) = &p.shaper else { continue };
            for (ci, c) in s.classes.iter().enumerate() {
                if let Some((k, n)) = c.in_ports.iter().enumerate().find(|(_, n)| !port_names.contains_key(n.as_str()))
                {
                    let path = vec![
                        key("bridge"),
                        Seg::Index(bi),
                        key("port"),
                        Seg::Index(pi),
                        key("shaper"),
                        key("class"),
                        Seg::Index(ci),
                        key("in_ports"),
                        Seg::Index(k),
                    ];
                    return fail(path, format!("no port `{n}`"));
                }
            }
        }
    }
    // Tunnels: a local address that is ours, and one port per (remote,
    // local, key, UDP port), so that a received packet has one port.
    let mut endpoints = HashMap::new();
    let mut port_kinds: HashMap<u16, (PortType, (usize, usize))> = HashMap::new();
    for (bi, pi) in tunnels {
        let p = &cfg.bridges[bi].ports[pi];
        let path = |k: &str| vec![key("bridge"), Seg::Index(bi), key("port"), Seg::Index(pi), key(k)];
        let local = p.local_ip.as_deref().map(|l| l.parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        if let Some(l) = local {
            if !addresses.contains_key(&l) {
                return fail(path("local_ip"), format!("{l} is not one of the uplinks' `addresses`"));
            }
            let remote = p.remote_ip.as_deref().and_then(|r| r.parse::<IpAddr>().ok());
            if remote.is_some_and(|r| r.is_ipv4() != l.is_ipv4()) {
                return fail(path("local_ip"), "local_ip and remote_ip must be of one family (IPv4 or IPv6)");
            }
        }
        let port = match p.kind {
            PortType::Geneve => p.dst_port.unwrap_or(crate::GENEVE_PORT),
            PortType::Gre => 0,
            _ => p.dst_port.unwrap_or(crate::VXLAN_PORT),
        };
        if let Some((kind, (b0, p0))) = port_kinds.get(&port).filter(|(k, _)| port != 0 && *k != p.kind) {
            return fail(
                path("dst_port"),
                format!("UDP port {port} is bridge[{b0}].port[{p0}]'s, a {kind:?} tunnel: one protocol per port"),
            );
        }
        port_kinds.insert(port, (p.kind, (bi, pi)));
        let k = (p.remote_ip.clone(), p.key.map(|k| k.fixed()), port);
        if let Some((b0, p0)) = endpoints.insert(k, (bi, pi)) {
            return fail(
                path("remote_ip"),
                format!("bridge[{b0}].port[{p0}] is a tunnel with the same remote_ip, key and UDP port (or both GRE)"),
            );
        }
    }
    for (ri, r) in cfg.routes.iter().enumerate() {
        let path = |k: &str| vec![key("route"), Seg::Index(ri), key(k)];
        let (net, len) = parse_ip_net(&r.prefix).map_err(|why| (path("prefix"), why))?;
        if network(net, len) != net {
            return fail(
                path("prefix"),
                format!("`{}` has host bits set (the network is {}/{len})", r.prefix, network(net, len)),
            );
        }
        let via: IpAddr = r.via.parse().map_err(|_| (path("via"), format!("`{}` is not an IP address", r.via)))?;
        if via.is_ipv4() != net.is_ipv4() {
            return fail(path("via"), format!("{via} and the prefix `{}` are of different families", r.prefix));
        }
        if !subnets.iter().any(|(a, l)| in_subnet(via, *a, *l)) {
            return fail(
                path("via"),
                format!("{via} is in no subnet of the uplinks' `addresses`: the next hop must be directly reachable"),
            );
        }
    }
    Ok(())
}

/// The settings of a tunnel port: no device keys, a remote, a key that
/// fits the protocol.
fn check_tunnel(p: &crate::Port, pp: &dyn Fn(&str) -> Vec<Seg>) -> Result<(), Failure> {
    for (k, set) in [
        ("pci", p.pci.is_some()),
        ("devargs", p.devargs.is_some()),
        ("iface", p.iface.is_some()),
        ("peer", p.peer.is_some()),
        ("addresses", !p.addresses.is_empty()),
        ("mtu", p.mtu.is_some()),
        ("n_rxq", p.n_rxq != 1),
    ] {
        if set {
            return fail(pp(k), format!("a tunnel port takes no `{k}` (its frames leave through an uplink)"));
        }
    }
    match &p.remote_ip {
        None => return fail(pp("type"), "a tunnel port needs `remote_ip`"),
        Some(r) if r == "flow" => {}
        Some(r) => match r.parse::<IpAddr>() {
            Ok(a) if is_unicast(a) => {}
            Ok(a) => return fail(pp("remote_ip"), format!("{a} is not a unicast address")),
            Err(_) => return fail(pp("remote_ip"), format!("`{r}` is not an IP address nor `flow`")),
        },
    }
    if let Some(l) = &p.local_ip {
        if l.parse::<IpAddr>().is_err() {
            return fail(pp("local_ip"), format!("`{l}` is not an IP address"));
        }
    }
    if let Some(k) = p.key.and_then(crate::schema::TunnelKey::fixed) {
        if k > 0x00ff_ffff && p.kind != PortType::Gre {
            return fail(pp("key"), format!("{k} does not fit a 24-bit VNI (0-16777215)"));
        }
    }
    if p.kind == PortType::Gre && p.dst_port.is_some() {
        return fail(pp("dst_port"), "GRE has no UDP port");
    }
    if p.dst_port == Some(0) {
        return fail(pp("dst_port"), "must be a UDP port (1-65535)");
    }
    if p.ttl == 0 {
        return fail(pp("ttl"), "must be 1-255");
    }
    Ok(())
}

/// Parses `IP/LEN`: an IPv4 address and a prefix length 0-32, or an IPv6
/// one and 0-128.
pub fn parse_ip_net(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: write an address and a prefix length, as 10.0.0.1/24 or fd00::1/64"))?;
    let ip = a.parse::<IpAddr>().map_err(|_| format!("`{a}` is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len =
        l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("`{l}` is not a prefix length (0-{max})"))?;
    Ok((ip, len))
}

/// Whether `ip` may be a tunnel endpoint or an uplink's address: unicast,
/// not unspecified, not loopback.
pub fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast() || a.is_loopback()),
    }
}

/// Parses a MAC address, `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> =
        s.split(':').filter(|x| (1..=2).contains(&x.len())).filter_map(|x| u8::from_str_radix(x, 16).ok()).collect();
    match (s.split(':').count(), <[u8; 6]>::try_from(bytes)) {
        (6, Ok(m)) => Ok(m),
        _ => Err(format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)")),
    }
}

/// The netmask of an IPv4 prefix length.
pub fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn prefix_mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// `ip` with the host bits of a `len` prefix cleared.
pub fn network(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & prefix_mask(len))),
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & prefix_mask6(len))),
    }
}

/// Whether `ip` is in `net/len` (of the same family).
pub fn in_subnet(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    ip.is_ipv4() == net.is_ipv4() && network(ip, len) == network(net, len)
}

fn is_pci(s: &str) -> bool {
    let parts: Vec<&str> = s.split([':', '.']).collect();
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [d, b, dev, f] => hex(d, 4) && hex(b, 2) && hex(dev, 2) && hex(f, 1),
        [b, dev, f] => hex(b, 2) && hex(dev, 2) && hex(f, 1),
        _ => false,
    }
}
