//! The underlay as the control thread keeps it: routes (the uplinks'
//! subnets, the configuration's `[[route]]`s and those added live),
//! neighbours resolved with ARP (retransmitted, rate-limited, aged and
//! probed again), frames that wait for a neighbour (a bounded number each,
//! sent once it answers), and every tunnel port's path: which uplink, which
//! next hop, which outer header. A tunnel whose path changes gets a new
//! [`TunnelVport`] swapped into the PMD threads.

use super::switch::{Attachment, Switch, SwitchPort, TunnelPort};
use crate::datapath::tunnel;
use crate::datapath::tunnel::meta::{remote_key, remote_of};
use crate::datapath::tunnel::underlay::{DecapTarget, Notice, Uplink, DROP_REASONS};
use crate::datapath::tunnel::{FlowPaths, Held, Injected, TunnelPath, TunnelSpec, TunnelVport, Wake};
use config::rpc::{Request, RpcError};
use pmd::Packet;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Frames that may wait for one neighbour; more are dropped and counted.
pub const HOLD_PER_NEIGHBOUR: usize = 64;
/// How long a frame waits for its neighbour at most.
pub const HOLD_FOR: Duration = Duration::from_secs(3);
/// Requests sent before a neighbour is declared unreachable.
pub const MAX_REQUESTS: u32 = 3;
/// Time between two requests for one neighbour.
pub const REQUEST_EVERY: Duration = Duration::from_secs(1);
/// A neighbour that said nothing for this long is asked again (its MAC is
/// used meanwhile), and forgotten if it does not answer.
pub const REACHABLE_FOR: Duration = Duration::from_secs(60);
/// An unreachable neighbour that tunnels still need is tried again every
/// so long (frames for it wait meanwhile, up to [`HOLD_FOR`]).
pub const RETRY_FAILED: Duration = Duration::from_secs(5);
/// Neighbours kept at most (those that ARP us beyond that are ignored).
pub const MAX_NEIGHBOURS: usize = 4096;

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An uplink's subnet.
    Connected,
    /// The configuration file.
    Static,
    /// Added through the control socket.
    Live,
}

impl Origin {
    /// How `route-show` names it.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Connected => "connected",
            Origin::Static => "static",
            Origin::Live => "live",
        }
    }
}

/// A route: a prefix and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Network.
    pub net: IpAddr,
    /// Prefix length.
    pub len: u8,
    /// Next hop (None: on the uplink's subnet, the destination itself).
    pub via: Option<IpAddr>,
    /// Where it came from.
    pub origin: Origin,
}

/// The state of a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighState {
    /// Asked, no answer yet.
    Incomplete,
    /// Answered recently.
    Reachable,
    /// Answered, but long ago: asked again, its MAC still used.
    Probing,
    /// Did not answer; tried again later while a tunnel needs it.
    Failed,
    /// Set by the operator (`neigh-set`): never asked, never aged.
    Permanent,
}

impl NeighState {
    /// How `neigh-show` names it.
    pub fn name(self) -> &'static str {
        match self {
            NeighState::Incomplete => "incomplete",
            NeighState::Reachable => "reachable",
            NeighState::Probing => "probing",
            NeighState::Failed => "failed",
            NeighState::Permanent => "permanent",
        }
    }
}

/// One neighbour on an uplink.
#[derive(Debug)]
pub struct Neighbour {
    /// The uplink's port name.
    pub uplink: String,
    /// Its MAC, once known.
    pub mac: Option<[u8; 6]>,
    /// State.
    pub state: NeighState,
    /// When it last answered (or asked us).
    pub confirmed: Option<Instant>,
    /// Requests sent since it last answered.
    pub requests: u32,
    last_request: Option<Instant>,
    /// Frames waiting for it: (tunnel slot, frame, since).
    queue: VecDeque<(usize, Packet, Instant)>,
}

impl Neighbour {
    /// A neighbour on `uplink` not heard from yet.
    fn new(uplink: String, state: NeighState) -> Neighbour {
        Neighbour { uplink, mac: None, state, confirmed: None, requests: 0, last_request: None, queue: VecDeque::new() }
    }
}

/// Counters of the control thread's side of the underlay.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnderlayStats {
    /// ARP requests sent.
    pub arp_requests: u64,
    /// Frames sent after waiting for their neighbour.
    pub held_sent: u64,
    /// Frames dropped: their neighbour's queue was full.
    pub held_overflow: u64,
    /// Frames dropped: waited too long, or the neighbour did not answer.
    pub held_expired: u64,
    /// Frames dropped: their tunnel has no route (or went away).
    pub held_no_route: u64,
}

/// The control thread's underlay state.
pub struct Underlay {
    held_tx: SyncSender<Held>,
    held_rx: Receiver<Held>,
    notice_tx: SyncSender<Notice>,
    notice_rx: Receiver<Notice>,
    inject: SyncSender<Injected>,
    waker: Arc<OnceLock<Arc<mio::Waker>>>,
    /// Wakes the control loop from PMD threads (once until drained).
    pub wake: Wake,
    /// Neighbours by address.
    pub neighbours: BTreeMap<IpAddr, Neighbour>,
    /// Routes from the configuration and the control socket (the
    /// uplinks' subnets are added when looked up).
    pub routes: Vec<Route>,
    /// Counters.
    pub stats: UnderlayStats,
    /// The next hops tunnels need now: tried again while they do not
    /// answer; other neighbours that stop answering are forgotten.
    wanted: std::collections::BTreeSet<IpAddr>,
    /// The critical Geneve options the bridges' TLV maps name (the
    /// uplinks accept those).
    pub geneve_known: Arc<crate::datapath::tunnel::meta::GeneveKnown>,
}

impl std::fmt::Debug for Underlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Underlay").field("neighbours", &self.neighbours).field("routes", &self.routes).finish()
    }
}

/// Where a tunnel's frames go, as the routes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The uplink's index in `Switch::ports`.
    pub uplink: usize,
    /// The local address (the tunnel's own, or the uplink's address in the
    /// next hop's subnet).
    pub local: IpAddr,
    /// The next hop (the remote itself on a connected subnet).
    pub next_hop: IpAddr,
}

impl Underlay {
    /// A new underlay; PMD thread 0 takes the other end of `inject`.
    pub fn new(inject: SyncSender<Injected>) -> Underlay {
        let (held_tx, held_rx) = std::sync::mpsc::sync_channel(4096);
        let (notice_tx, notice_rx) = std::sync::mpsc::sync_channel(1024);
        let waker: Arc<OnceLock<Arc<mio::Waker>>> = Arc::new(OnceLock::new());
        let w = waker.clone();
        let wake = Wake::new(Arc::new(move || {
            if let Some(w) = w.get() {
                let _ = w.wake();
            }
        }));
        Underlay {
            held_tx,
            held_rx,
            notice_tx,
            notice_rx,
            inject,
            waker,
            wake,
            neighbours: BTreeMap::new(),
            routes: Vec::new(),
            stats: UnderlayStats::default(),
            wanted: std::collections::BTreeSet::new(),
            geneve_known: Arc::default(),
        }
    }

    /// The control loop's waker, for the PMD threads to wake it.
    pub fn set_waker(&self, w: Arc<mio::Waker>) {
        let _ = self.waker.set(w);
    }

    /// Where held frames go (for the tunnel vports).
    pub fn held_sender(&self) -> SyncSender<Held> {
        self.held_tx.clone()
    }

    /// Where tunnel ports send the ICMP for frames too big (PMD thread 0).
    pub fn inject_sender(&self) -> SyncSender<Injected> {
        self.inject.clone()
    }

    /// Where neighbour notices go (for the uplinks).
    pub fn notice_sender(&self) -> SyncSender<Notice> {
        self.notice_tx.clone()
    }

    /// The routes from the configuration file, replacing the static ones
    /// (live ones stay).
    pub fn set_static_routes(&mut self, routes: &[config::Route]) {
        self.routes.retain(|r| r.origin == Origin::Live);
        for r in routes {
            if let (Ok((net, len)), Ok(via)) = (config::parse_ip_net(&r.prefix), r.via.parse()) {
                self.routes.push(Route { net, len, via: Some(via), origin: Origin::Static });
            }
        }
    }
}

/// The uplinks' subnets: (port index, address, prefix length).
fn connected(sw: &Switch) -> Vec<(usize, IpAddr, u8)> {
    let mut out = Vec::new();
    for (i, p) in sw.ports.iter().enumerate() {
        if p.port.device().is_none() {
            continue;
        }
        for a in &p.cfg.addresses {
            if let Ok((ip, len)) = config::parse_ip_net(a) {
                out.push((i, ip, len));
            }
        }
    }
    out
}

/// Every route in force: the uplinks' subnets, then the others.
pub fn routes(sw: &Switch) -> Vec<(Route, Option<String>)> {
    let mut out: Vec<(Route, Option<String>)> = connected(sw)
        .into_iter()
        .map(|(i, ip, len)| {
            let net = config::network(ip, len);
            (Route { net, len, via: None, origin: Origin::Connected }, Some(sw.ports[i].name.clone()))
        })
        .collect();
    for r in &sw.underlay.routes {
        let dev = r.via.and_then(|v| on_link(sw, v)).map(|(i, _)| sw.ports[i].name.clone());
        out.push((r.clone(), dev));
    }
    out
}

/// The uplink (port index) and our address on the subnet holding `ip`.
fn on_link(sw: &Switch, ip: IpAddr) -> Option<(usize, IpAddr)> {
    connected(sw)
        .into_iter()
        .filter(|(_, a, len)| config::in_subnet(ip, *a, *len))
        .max_by_key(|(_, _, len)| *len)
        .map(|(i, a, _)| (i, a))
}

/// The path to `dst` by the longest matching prefix.
pub fn route_to(sw: &Switch, dst: IpAddr, local: Option<IpAddr>) -> Option<Hop> {
    let direct = on_link(sw, dst).map(|(i, a)| (prefix_of(sw, i, a), i, a, dst));
    let mut best = direct;
    for r in &sw.underlay.routes {
        if !config::in_subnet(dst, r.net, r.len) || best.as_ref().is_some_and(|b| b.0 >= r.len) {
            continue;
        }
        let Some(via) = r.via else { continue };
        if let Some((i, a)) = on_link(sw, via) {
            best = Some((r.len, i, a, via));
        }
    }
    let (_, uplink, addr, next_hop) = best?;
    Some(Hop { uplink, local: local.unwrap_or(addr), next_hop })
}

fn prefix_of(sw: &Switch, port: usize, addr: IpAddr) -> u8 {
    sw.ports[port]
        .cfg
        .addresses
        .iter()
        .filter_map(|a| config::parse_ip_net(a).ok())
        .find(|(ip, _)| *ip == addr)
        .map_or(128, |(_, l)| l)
}

/// The request that resolves `target` from `mac`/`src`: an ARP request
/// (broadcast) for IPv4, a neighbour solicitation (to the target's
/// solicited-node multicast address, with our MAC) for IPv6.
pub fn resolution_request(mac: [u8; 6], src: IpAddr, target: IpAddr) -> Option<Vec<u8>> {
    match (src, target) {
        (IpAddr::V4(s), IpAddr::V4(t)) => Some(arp_request(mac, s, t)),
        (IpAddr::V6(s), IpAddr::V6(t)) => Some(neighbour_solicitation(mac, s, t)),
        _ => None,
    }
}

/// A neighbour solicitation for `target` from `mac`/`src` (RFC 4861): to
/// its solicited-node multicast address, hop limit 255, our MAC in the
/// source link-layer address option.
pub fn neighbour_solicitation(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]];
    let mut f = Vec::with_capacity(86);
    f.extend_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&group);
    let mut m = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&t);
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&mac);
    let s = wire::checksum::sum(
        wire::checksum::pseudo_v6(&wire::Ipv6Address(src.octets()), &wire::Ipv6Address(group), 58, 32),
        &m,
    );
    let ck = !wire::checksum::fold(s);
    m[2..4].copy_from_slice(&ck.to_be_bytes());
    f.extend_from_slice(&m);
    f
}

/// An ARP request for `target` from `mac`/`spa`, broadcast.
pub fn arp_request(mac: [u8; 6], spa: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

/// The underlay stacks of the ports with addresses, by slot: their
/// addresses and the tunnels they decapsulate for.
pub(super) fn uplinks(ports: &[SwitchPort], underlay: &Underlay, slots: usize) -> Vec<Option<Arc<Uplink>>> {
    let mut out = vec![None; slots];
    let tunnels: Vec<(&SwitchPort, &TunnelPort)> = ports
        .iter()
        .filter_map(|p| match &p.port {
            Attachment::Tunnel(t) => Some((p, t)),
            Attachment::Device(_) => None,
        })
        .collect();
    let mut udp_ports: Vec<(u16, tunnel::TunnelKind)> = tunnels
        .iter()
        .filter(|(_, t)| t.spec.kind != tunnel::TunnelKind::Gre)
        .map(|(_, t)| (t.spec.dst_port, t.spec.kind))
        .collect();
    udp_ports.sort_unstable_by_key(|(p, _)| *p);
    udp_ports.dedup_by_key(|(p, _)| *p);
    let gre = tunnels.iter().any(|(_, t)| t.spec.kind == tunnel::TunnelKind::Gre);
    for p in ports {
        let (Attachment::Device(dev), false) = (&p.port, p.cfg.addresses.is_empty()) else { continue };
        let addrs: Vec<std::net::IpAddr> =
            p.cfg.addresses.iter().filter_map(|a| config::parse_ip_net(a).ok()).map(|(ip, _)| ip).collect();
        // Every uplink decapsulates for every tunnel: the remote may
        // reach us through any of them.
        let decap = tunnels
            .iter()
            .flat_map(|(sp, t)| {
                // A port whose remote is `flow` takes any remote of
                // either family (unspecified) not given to a port.
                let remotes = match t.spec.remote_flow {
                    true => vec![std::net::Ipv4Addr::UNSPECIFIED.into(), std::net::Ipv6Addr::UNSPECIFIED.into()],
                    false => vec![t.spec.remote],
                };
                let target = DecapTarget { slot: sp.slot, local: t.spec.local, counters: t.counters.clone() };
                let vni = (!t.spec.key_flow).then_some(t.spec.vni);
                remotes.into_iter().map(move |r| ((r, vni, t.spec.dst_port), target.clone()))
            })
            .collect();
        out[p.slot] = Some(Arc::new(Uplink {
            slot: p.slot,
            mac: dev.mac().0,
            addrs,
            udp_ports: udp_ports.clone(),
            gre,
            decap,
            counters: p.uplink.clone(),
            notices: Some(underlay.notice_sender()),
            wake: Some(underlay.wake.clone()),
            geneve_known: underlay.geneve_known.clone(),
        }));
    }
    out
}

impl Switch {
    /// Drains what the PMD threads sent (neighbours, held frames), sends
    /// ARP requests that are due, ages neighbours and updates every
    /// tunnel's path. Call it on every turn of the control loop.
    pub fn underlay_tick(&mut self) {
        self.underlay.wake.clear();
        let now = Instant::now();
        let mut changed = false;
        while let Ok(n) = self.underlay.notice_rx.try_recv() {
            changed |= self.learn(n, now);
        }
        let mut held = Vec::new();
        while let Ok(h) = self.underlay.held_rx.try_recv() {
            held.push(h);
        }
        for h in held {
            changed |= self.hold(h, now);
        }
        changed |= self.age_neighbours(now);
        if changed {
            self.resolve_tunnels();
        }
        self.send_requests(now);
    }

    /// Records what a neighbour said; true when a MAC changed.
    fn learn(&mut self, n: Notice, now: Instant) -> bool {
        let Some(uplink) = self.port_by_slot(u32::try_from(n.uplink).unwrap_or(u32::MAX)).map(|p| p.name.clone())
        else {
            return false;
        };
        if !self.underlay.neighbours.contains_key(&n.ip) && self.underlay.neighbours.len() >= MAX_NEIGHBOURS {
            return false;
        }
        let e = self
            .underlay
            .neighbours
            .entry(n.ip)
            .or_insert_with(|| Neighbour::new(uplink.clone(), NeighState::Incomplete));
        if e.state == NeighState::Permanent {
            return false;
        }
        let changed = e.mac != Some(n.mac) || e.uplink != uplink || e.state == NeighState::Failed;
        e.mac = Some(n.mac);
        e.uplink = uplink;
        e.state = NeighState::Reachable;
        e.confirmed = Some(now);
        e.requests = 0;
        changed
    }

    /// Queues a frame for its tunnel's next hop (or sends it, when the
    /// tunnel got a path meanwhile); true when it named a remote new to a
    /// tunnel whose remote is `flow` (its path is to be worked out).
    fn hold(&mut self, h: Held, now: Instant) -> bool {
        let Some(p) = self.ports.iter().find(|p| p.slot == h.slot) else {
            self.underlay.stats.held_no_route += 1;
            return false;
        };
        let Attachment::Tunnel(t) = &p.port else {
            self.underlay.stats.held_no_route += 1;
            return false;
        };
        let (hop, new) = if t.spec.remote_flow {
            let Some(r) = remote_of(h.packet.meta().tun_remote) else {
                self.underlay.stats.held_no_route += 1;
                return false;
            };
            if t.vport().flows.contains_key(&remote_key(r)) {
                self.inject(h.slot, h.packet);
                self.underlay.stats.held_sent += 1;
                return false;
            }
            (route_to(self, r, t.spec.local), t.add_remote(r))
        } else {
            if t.vport().path.is_some() {
                self.inject(h.slot, h.packet);
                self.underlay.stats.held_sent += 1;
                return false;
            }
            (t.hop(), false)
        };
        let Some(hop) = hop else {
            self.underlay.stats.held_no_route += 1;
            return false;
        };
        let uplink = self.ports[hop.uplink].name.clone();
        let n = self
            .underlay
            .neighbours
            .entry(hop.next_hop)
            .or_insert_with(|| Neighbour::new(uplink, NeighState::Incomplete));
        if n.queue.len() >= HOLD_PER_NEIGHBOUR {
            self.underlay.stats.held_overflow += 1;
            return new;
        }
        n.queue.push_back((h.slot, h.packet, now));
        new
    }

    fn inject(&self, slot: usize, p: Packet) {
        // A full channel drops the frame (PMD thread 0 drains 32 a turn).
        let _ = self.underlay.inject.try_send(Injected::Tx(slot, p));
    }

    /// Neighbours that went quiet are asked again, those that do not
    /// answer are forgotten; frames that waited too long are dropped. True
    /// when a MAC was forgotten.
    fn age_neighbours(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for n in self.underlay.neighbours.values_mut() {
            match n.state {
                NeighState::Reachable if n.confirmed.is_some_and(|c| now - c >= REACHABLE_FOR) => {
                    n.state = NeighState::Probing;
                    n.requests = 0;
                    n.last_request = None;
                }
                NeighState::Probing | NeighState::Incomplete
                    if n.requests >= MAX_REQUESTS && n.last_request.is_some_and(|t| now - t >= REQUEST_EVERY) =>
                {
                    n.state = NeighState::Failed;
                    changed |= n.mac.take().is_some();
                    self.underlay.stats.held_expired += n.queue.len() as u64;
                    n.queue.clear();
                }
                _ => {}
            }
            let before = n.queue.len();
            n.queue.retain(|(_, _, since)| now - *since < HOLD_FOR);
            self.underlay.stats.held_expired += (before - n.queue.len()) as u64;
        }
        let wanted = &self.underlay.wanted;
        self.underlay.neighbours.retain(|ip, n| n.state != NeighState::Failed || wanted.contains(ip));
        changed
    }

    /// Sends the ARP requests that are due.
    fn send_requests(&mut self, now: Instant) {
        let mut out = Vec::new();
        for (ip, n) in &mut self.underlay.neighbours {
            let due = match n.state {
                NeighState::Incomplete | NeighState::Probing => {
                    n.requests < MAX_REQUESTS && n.last_request.is_none_or(|t| now - t >= REQUEST_EVERY)
                }
                // Tried again while a tunnel needs it.
                NeighState::Failed => n.last_request.is_none_or(|t| now - t >= RETRY_FAILED),
                NeighState::Reachable | NeighState::Permanent => false,
            };
            if due {
                if n.state == NeighState::Failed {
                    n.state = NeighState::Incomplete;
                    n.requests = 0;
                }
                n.requests += 1;
                n.last_request = Some(now);
                out.push((*ip, n.uplink.clone()));
            }
        }
        for (ip, uplink) in out {
            let Some(p) = self.ports.iter().find(|p| p.name == uplink) else { continue };
            let Some(dev) = p.port.device() else { continue };
            let Some((_, local)) = on_link(self, ip) else { continue };
            let Some(frame) = resolution_request(dev.mac().0, local, ip) else { continue };
            if let Some(pkt) = Packet::from_bytes(&self.pool(), &frame) {
                self.inject(p.slot, pkt);
                self.underlay.stats.arp_requests += 1;
            }
        }
    }

    /// Works out every tunnel's path again (after ports, routes or
    /// neighbours changed), swaps in new vports where a path changed, and
    /// sends the frames that waited for neighbours now resolved.
    pub fn resolve_tunnels(&mut self) {
        let now = Instant::now();
        let mut swaps = Vec::new();
        let mut flow_hops = Vec::new();
        for i in 0..self.ports.len() {
            let Attachment::Tunnel(t) = &self.ports[i].port else { continue };
            if t.spec.remote_flow {
                // A path per remote frames were sent to.
                let mut flows = FlowPaths::default();
                for r in t.remotes() {
                    let Some(h) = route_to(self, r, t.spec.local) else { continue };
                    if let Some(path) = self.path_through(&TunnelSpec { remote: r, ..t.spec }, &h) {
                        flows.insert(remote_key(r), path);
                    }
                    flow_hops.push(h);
                }
                if *t.vport().flows != flows {
                    swaps.push((i, None, None, Arc::new(flows)));
                }
                continue;
            }
            let hop = route_to(self, t.spec.remote, t.spec.local);
            let path = hop.as_ref().and_then(|h| self.path_through(&t.spec, h));
            let hop_changed = t.hop() != hop;
            if hop_changed || t.vport().path != path {
                swaps.push((i, hop, path, Arc::default()));
            }
        }
        self.underlay.wanted = self
            .ports
            .iter()
            .filter_map(|p| match &p.port {
                Attachment::Tunnel(t) => t.hop().map(|h| h.next_hop),
                Attachment::Device(_) => None,
            })
            .chain(swaps.iter().filter_map(|(_, h, _, _)| h.as_ref().map(|h| h.next_hop)))
            .chain(flow_hops.iter().map(|h| h.next_hop))
            .collect();
        // Neighbours the tunnels need are asked for.
        let unresolved = swaps.iter().filter(|(_, _, p, _)| p.is_none()).filter_map(|(_, h, _, _)| h.as_ref());
        for h in unresolved.chain(flow_hops.iter()).cloned().collect::<Vec<_>>() {
            let uplink = self.ports[h.uplink].name.clone();
            self.underlay
                .neighbours
                .entry(h.next_hop)
                .or_insert_with(|| Neighbour::new(uplink, NeighState::Incomplete));
        }
        for (i, hop, path, flows) in swaps {
            let slot = self.ports[i].slot;
            let Attachment::Tunnel(t) = &self.ports[i].port else { continue };
            let v = Arc::new(TunnelVport {
                slot,
                spec: t.spec,
                path,
                hold: Some(self.underlay.held_sender()),
                wake: Some(self.underlay.wake.clone()),
                inject: Some(self.underlay.inject_sender()),
                counters: t.counters.clone(),
                flows,
                pool: Some(self.pool()),
            });
            t.set(v.clone(), hop);
            self.pmds.set_virtual(slot, v);
        }
        // Frames that waited for a neighbour that now answers.
        let mut ready = Vec::new();
        for n in self.underlay.neighbours.values_mut() {
            if n.mac.is_some() {
                ready.extend(n.queue.drain(..));
            }
        }
        for (slot, p, since) in ready {
            if now - since < HOLD_FOR {
                self.inject(slot, p);
                self.underlay.stats.held_sent += 1;
            } else {
                self.underlay.stats.held_expired += 1;
            }
        }
    }

    /// The path of a tunnel with `spec` through hop `h`, when its next
    /// hop's MAC is known.
    fn path_through(&self, spec: &TunnelSpec, h: &Hop) -> Option<TunnelPath> {
        let up = &self.ports[h.uplink];
        let dev = up.port.device()?;
        let mac = self.underlay.neighbours.get(&h.next_hop)?.mac?;
        Some(
            TunnelPath::new(spec, up.slot, dev.mac().0, mac, h.local, dev.mtu())
                .with_offloads(spec, dev.caps().tx_enabled),
        )
    }

    /// Adds a route while running (`route-add`); a prefix already routed
    /// live is replaced.
    pub fn route_add(&mut self, prefix: &str, via: &str) -> Result<(), String> {
        let (net, len) = config::parse_ip_net(prefix)?;
        if config::network(net, len) != net {
            return Err(format!("`{prefix}` has host bits set"));
        }
        let via: IpAddr = via.parse().map_err(|_| format!("`{via}` is not an IP address"))?;
        if via.is_ipv4() != net.is_ipv4() {
            return Err(format!("{via} and `{prefix}` are of different families"));
        }
        if on_link(self, via).is_none() {
            return Err(format!(
                "{via} is in no subnet of the uplinks' addresses: the next hop must be directly reachable"
            ));
        }
        self.underlay.routes.retain(|r| !(r.origin == Origin::Live && r.net == net && r.len == len));
        self.underlay.routes.push(Route { net, len, via: Some(via), origin: Origin::Live });
        self.resolve_tunnels();
        Ok(())
    }

    /// Forgets every neighbour (`neigh-flush`, as OVS's `tnl/neigh/flush`):
    /// frames waiting for one are dropped, and tunnels resolve their next
    /// hops again at once.
    pub fn neigh_flush(&mut self) -> usize {
        let n = self.underlay.neighbours.len();
        for nb in self.underlay.neighbours.values() {
            self.underlay.stats.held_expired += nb.queue.len() as u64;
        }
        self.underlay.neighbours.clear();
        self.resolve_tunnels();
        n
    }

    /// Sets a permanent neighbour on an uplink (`neigh-set`, as OVS's
    /// `tnl/neigh/set`): never asked for, never aged; `neigh-flush` forgets
    /// it too.
    pub fn neigh_set(&mut self, uplink: &str, ip: &str, mac: &str) -> Result<(), String> {
        let ip: IpAddr = ip.parse().map_err(|_| format!("`{ip}` is not an IP address"))?;
        let mac = config::parse_mac(mac)?;
        let p = self.ports.iter().find(|p| p.name == uplink).ok_or_else(|| format!("no port `{uplink}`"))?;
        if p.cfg.addresses.is_empty() {
            return Err(format!("port `{uplink}` has no `addresses`: it is no uplink"));
        }
        let e = self
            .underlay
            .neighbours
            .entry(ip)
            .or_insert_with(|| Neighbour::new(uplink.to_string(), NeighState::Permanent));
        e.uplink = uplink.to_string();
        e.mac = Some(mac);
        e.state = NeighState::Permanent;
        e.confirmed = Some(Instant::now());
        self.resolve_tunnels();
        Ok(())
    }

    /// Removes a route added live (`route-del`).
    pub fn route_del(&mut self, prefix: &str) -> Result<(), String> {
        let (net, len) = config::parse_ip_net(prefix)?;
        let before = self.underlay.routes.len();
        self.underlay.routes.retain(|r| !(r.origin == Origin::Live && r.net == net && r.len == len));
        if self.underlay.routes.len() == before {
            return Err(format!("no live route to {prefix} (routes from the file change with a reload)"));
        }
        self.resolve_tunnels();
        Ok(())
    }
}

/// A tunnel port's settings, path and counters, for `show` and
/// `tunnel-show`.
pub fn tunnel_json(sw: &Switch, p: &SwitchPort, t: &TunnelPort) -> Value {
    let v = t.vport();
    let hop = t.hop();
    let st = crate::datapath::tunnel::tunnel_stats(&t.counters);
    let state = match (&hop, &v.path) {
        _ if t.spec.remote_flow => "flow".to_string(),
        (_, Some(_)) => "up".to_string(),
        (None, None) => "no route".to_string(),
        (Some(h), None) => format!("resolving {}", h.next_hop),
    };
    // A `flow` remote's remotes, with their next hops when resolved.
    let remotes: Vec<Value> = t
        .remotes()
        .into_iter()
        .map(|r| {
            let path = v.flows.get(&remote_key(r));
            json!({"remote_ip": r.to_string(), "state": if path.is_some() { "up" } else { "resolving" },
                   "uplink": path.and_then(|p| sw.port_by_slot(u32::try_from(p.uplink).ok()?)).map(|u| u.name.clone())})
        })
        .collect();
    json!({
        "port": p.name, "bridge": p.bridge, "type": t.spec.kind.name(),
        "remote_ip": if t.spec.remote_flow { "flow".to_string() } else { t.spec.remote.to_string() },
        "remotes": remotes, "local_ip": hop.as_ref().map(|h| h.local.to_string()),
        "key": if t.spec.key_flow { json!("flow") } else { json!(t.spec.vni) }, "dst_port": t.spec.dst_port, "csum": t.spec.csum, "ttl": t.spec.ttl, "tos": if t.spec.tos_inherit { json!("inherit") } else { json!(t.spec.tos) }, "df": t.spec.df,
        "uplink": hop.as_ref().map(|h| sw.ports[h.uplink].name.clone()), "next_hop": hop.as_ref().map(|h| h.next_hop.to_string()),
        "state": state,
        "tx_packets": st.tx_packets, "tx_bytes": st.tx_bytes, "rx_packets": st.rx_packets, "rx_bytes": st.rx_bytes,
        "held": st.held, "drop_no_path": st.drop_no_path, "drop_too_big": st.drop_too_big, "drop_no_room": st.drop_no_room,
        "pmtu_sent": st.pmtu_sent, "gso_segments": st.gso_segments,
    })
}

/// An uplink's addresses and its underlay stack's counters.
pub fn uplink_json(p: &SwitchPort) -> Value {
    let s = crate::datapath::tunnel::underlay::uplink_stats(&p.uplink);
    let drops: serde_json::Map<String, Value> =
        DROP_REASONS.iter().zip(s.drops).map(|(r, n)| ((*r).to_string(), json!(n))).collect();
    json!({
        "addresses": p.cfg.addresses, "decapsulated": s.decapsulated, "arp_replied": s.arp_replied,
        "echo_replied": s.echo_replied, "neighbour_notices": s.neighbour_notices, "passed": s.passed, "drops": drops,
    })
}

/// The control socket's underlay methods: `tunnel-show`, `route-show`,
/// `neigh-show`, `neigh-flush`, `neigh-set` (`uplink`, `ip`, `mac`),
/// `route-add` (`prefix`, `via`) and `route-del` (`prefix`).
pub fn rpc(sw: &mut Switch, req: &Request) -> Result<Value, RpcError> {
    let need = |name: &str| -> Result<String, RpcError> {
        super::control::param_str(req, name)?
            .map(str::to_string)
            .ok_or_else(|| RpcError::new(RpcError::INVALID_PARAMS, format!("`{}` needs `{name}`", req.method)))
    };
    match req.method.as_str() {
        "tunnel-show" => {
            let tunnels: Vec<Value> = sw
                .ports
                .iter()
                .filter_map(|p| match &p.port {
                    Attachment::Tunnel(t) => Some(tunnel_json(sw, p, t)),
                    Attachment::Device(_) => None,
                })
                .collect();
            let uplinks: Vec<Value> = sw
                .ports
                .iter()
                .filter(|p| !p.cfg.addresses.is_empty())
                .map(|p| {
                    let mut v = uplink_json(p);
                    v["port"] = json!(p.name);
                    v
                })
                .collect();
            let s = &sw.underlay.stats;
            Ok(json!({"tunnels": tunnels, "uplinks": uplinks,
                      "held": {"sent": s.held_sent, "overflow": s.held_overflow, "expired": s.held_expired, "no_route": s.held_no_route}}))
        }
        "route-show" => {
            let routes: Vec<Value> = routes(sw)
                .into_iter()
                .map(|(r, dev)| {
                    json!({"prefix": format!("{}/{}", r.net, r.len), "via": r.via.map(|v| v.to_string()),
                           "uplink": dev, "origin": r.origin.name()})
                })
                .collect();
            Ok(json!({ "routes": routes }))
        }
        "neigh-show" => {
            let now = Instant::now();
            let n: Vec<Value> = sw
                .underlay
                .neighbours
                .iter()
                .map(|(ip, n)| {
                    json!({"ip": ip.to_string(), "uplink": n.uplink,
                           "mac": n.mac.map(|m| wire::EthernetAddress(m).to_string()), "state": n.state.name(),
                           "age_s": n.confirmed.map(|c| (now - c).as_secs()), "waiting": n.queue.len()})
                })
                .collect();
            Ok(json!({"neighbours": n, "arp_requests": sw.underlay.stats.arp_requests}))
        }
        "neigh-flush" => Ok(json!({ "flushed": sw.neigh_flush() })),
        "neigh-set" => {
            let (uplink, ip, mac) = (need("uplink")?, need("ip")?, need("mac")?);
            sw.neigh_set(&uplink, &ip, &mac).map_err(|e| RpcError::new(RpcError::REFUSED, e))?;
            Ok(json!({"uplink": uplink, "ip": ip, "mac": mac}))
        }
        "route-add" => {
            let (prefix, via) = (need("prefix")?, need("via")?);
            sw.route_add(&prefix, &via).map_err(|e| RpcError::new(RpcError::REFUSED, e))?;
            Ok(json!({"prefix": prefix, "via": via}))
        }
        _ => {
            let prefix = need("prefix")?;
            sw.route_del(&prefix).map_err(|e| RpcError::new(RpcError::REFUSED, e))?;
            Ok(json!({ "prefix": prefix }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_requests_are_well_formed() {
        let f = arp_request([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        // And IPv6's: a solicitation the switch's own underlay stack would
        // answer (the uplink of the fuzz corpus holds fd00::1).
        let ns = neighbour_solicitation([2, 0, 0, 0, 0, 2], "fd00::2".parse().unwrap(), "fd00::1".parse().unwrap());
        let mut ns_to_us = ns.clone();
        ns_to_us[..6].copy_from_slice(&[0x33, 0x33, 0xff, 0, 0, 1]);
        assert_eq!(ns, ns_to_us, "to the solicited-node group of fd00::1");
        let u = crate::datapath::tunnel::underlay::fuzz_uplink();
        match u.classify(&ns, false, false) {
            crate::datapath::tunnel::underlay::Verdict::NdSolicit(Some(n)) => {
                assert_eq!((n.ip, n.mac), ("fd00::2".parse::<IpAddr>().unwrap(), [2, 0, 0, 0, 0, 2]));
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(f.len(), 60);
        assert_eq!(&f[..6], &[0xff; 6]);
        let a = wire::ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), wire::ArpOperation::REQUEST);
        assert_eq!((a.spa().0, a.tpa().0, a.sha().0), ([10, 0, 0, 1], [10, 0, 0, 2], [2, 0, 0, 0, 0, 1]));
    }
}
