//! OpenFlow controller connections of every bridge: listeners
//! (`ptcp:PORT[:IP]`) and active connections (`tcp:IP:PORT`, reconnected
//! with backoff), driven by the daemon's mio loop. Each complete message
//! goes to the bridge's [`Agent`]; what it answers is queued on the
//! connections it names. Idle connections get an echo request every 5 s
//! and are closed after 15 s without any message.

use crate::ofdp::{OfBridgeDp, OfCounters, PacketOutReq};
use crate::switch::Switch;
use config::Controller;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use ofproto::agent::{Agent, ConnId, Datapath, PortInfo};
use ofproto::ofp::{frame_len, Action, Message, OfpError};
use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tokens at or above this belong to OpenFlow (listeners, then
/// connections); the control socket uses the ones below.
pub const TOKEN_BASE: usize = 1 << 24;
const CONN_BASE: usize = TOKEN_BASE + (1 << 16);
/// The most a peer may have queued unread before we drop it.
const MAX_OUTBUF: usize = 64 << 20;
const ECHO_EVERY: Duration = Duration::from_secs(5);
const DEAD_AFTER: Duration = Duration::from_secs(15);

/// One bridge's OpenFlow side.
pub struct OfBridge {
    /// The bridge's name.
    pub bridge: String,
    /// Its OpenFlow state.
    pub agent: Agent,
    /// OFPPC_* bits set by PORT_MOD, by OpenFlow port number.
    pub port_config: HashMap<u32, u32>,
    /// fail_mode = "secure": the tables rule even with no controller
    /// connected (standalone falls back to NORMAL switching).
    pub fail_secure: bool,
    /// Whether it has controllers configured at all.
    pub has_controllers: bool,
    /// Drop counters of its fast path.
    pub counters: Arc<OfCounters>,
    /// What the last publication showed: (active, agent generation, port
    /// epoch, link epoch, group and meter generation).
    published: Option<(bool, u64, u64, u64, u64)>,
    /// Publications of this bridge so far (the last one's number).
    published_seq: u64,
    /// Bumped when a port's link goes up or down (republishes: fast
    /// failover follows liveness).
    link_epoch: u64,
    /// Ports as controllers last heard of them (port-status on change).
    known_ports: Option<Vec<PortInfo>>,
    /// The bridge was removed (its index stays taken: packet-ins in
    /// flight name bridges by index).
    removed: bool,
}

struct Listener {
    bridge: usize,
    listener: TcpListener,
    spec: String,
}

struct Active {
    bridge: usize,
    addr: SocketAddr,
    spec: String,
    conn: Option<ConnId>,
    next_try: Instant,
    backoff: Duration,
}

struct Conn {
    bridge: usize,
    stream: TcpStream,
    peer: String,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    last_rx: Instant,
    last_echo: Instant,
    connected: bool,
    origin: Origin,
}

/// Where a connection came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Accepted by this listener.
    Listener(usize),
    /// Opened for this connect target.
    Active(usize),
}

impl Origin {
    fn active(self) -> Option<usize> {
        match self {
            Origin::Active(a) => Some(a),
            Origin::Listener(_) => None,
        }
    }
}

/// Every bridge's controllers and connections.
pub struct OpenFlow {
    /// Per bridge, in config order (bridges without OpenFlow included).
    pub bridges: Vec<OfBridge>,
    /// By token (`TOKEN_BASE + index`); `None`: a free slot.
    listeners: Vec<Option<Listener>>,
    /// By index (connections name theirs); `None`: a free slot.
    actives: Vec<Option<Active>>,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    started: Instant,
    last_publish: Instant,
    /// Changes not yet published to the PMD threads.
    pending: bool,
    /// How long the last publication took: a storm of flow-mods is
    /// published at most every 10 ms or twice that, whichever is longer,
    /// so publishing never takes more than a third of the control thread.
    publish_cost: Duration,
}

/// A bridge's ports as OpenFlow describes them; `config` holds the
/// OFPPC_* bits PORT_MOD set.
fn port_infos(sw: &Switch, bridge: &str, config: &HashMap<u32, u32>) -> Vec<PortInfo> {
    sw.ports
        .iter()
        .filter(|p| p.bridge == bridge)
        .map(|p| {
            let s = p.port.stats();
            let l = p.port.link();
            PortInfo {
                port_no: p.ofport,
                name: p.name.clone(),
                hw_addr: p.port.mac().0,
                link_up: l.up,
                config: config.get(&p.ofport).copied().unwrap_or(0),
                counters: [
                    s.rx_packets,
                    s.tx_packets,
                    s.rx_bytes,
                    s.tx_bytes,
                    s.rx_dropped(),
                    s.tx_dropped,
                    s.rx_errors,
                    s.tx_errors,
                    0,
                    0,
                    0,
                    0,
                ],
                duration_sec: 0,
                speed_kbps: l.speed_mbps.saturating_mul(1000),
            }
        })
        .collect()
}

/// The switch as an OpenFlow bridge's datapath.
struct SwitchDp<'a> {
    sw: &'a Switch,
    bridge: &'a str,
    index: usize,
    config: &'a mut HashMap<u32, u32>,
}

impl Datapath for SwitchDp<'_> {
    fn port_nos(&self) -> Vec<u32> {
        self.sw.ports.iter().filter(|p| p.bridge == self.bridge).map(|p| p.ofport).collect()
    }

    fn ports(&self) -> Vec<PortInfo> {
        port_infos(self.sw, self.bridge, self.config)
    }

    fn packet_out(&mut self, in_port: u32, actions: &[Action], data: &[u8]) -> Result<(), OfpError> {
        use ofproto::ofp::action::port;
        use ofproto::ofp::error::{BadAction, BadRequest};
        let is_port = |n: u32| self.sw.ports.iter().any(|p| p.bridge == self.bridge && p.ofport == n);
        if data.len() < 14 {
            return Err(OfpError::BadRequest(BadRequest::BadPacket));
        }
        if in_port != port::CONTROLLER && in_port != port::LOCAL && !is_port(in_port) {
            return Err(OfpError::BadRequest(BadRequest::BadPort));
        }
        for a in actions {
            if let Action::Output { port: p, .. } = a {
                if *p <= port::MAX && !is_port(*p) {
                    return Err(OfpError::BadAction(BadAction::BadOutPort));
                }
            }
        }
        // Run by PMD thread 0 (the control thread has no tx queue).
        self.sw
            .packet_out_tx
            .try_send(PacketOutReq { bridge: self.index, in_port, actions: actions.to_vec(), data: data.to_vec() })
            .map_err(|_| OfpError::BadRequest(BadRequest::Eperm))
    }

    fn port_mod(&mut self, port_no: u32, config: u32, mask: u32) -> bool {
        if !self.sw.ports.iter().any(|p| p.bridge == self.bridge && p.ofport == port_no) {
            return false;
        }
        let c = self.config.entry(port_no).or_insert(0);
        *c = (*c & !mask) | (config & mask);
        true
    }
}

/// The datapath id: the configured one, or 48 bits derived from the
/// bridge's name (stable across restarts and reorderings, as OVS derives
/// one from the bridge's MAC address).
fn parse_dpid(s: Option<&str>, name: &str) -> u64 {
    s.and_then(|d| u64::from_str_radix(d.trim_start_matches("0x"), 16).ok()).unwrap_or_else(|| {
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        h & 0xffff_ffff_ffff
    })
}

/// Listeners bound ahead of a change of controllers (`OpenFlow::prepare`),
/// so that an address already in use refuses the change before anything
/// moved.
pub struct Prepared {
    bound: Vec<(String, String, TcpListener)>,
}

impl OpenFlow {
    /// Sets up every bridge's agent and listeners (registered with `reg`)
    /// and the connections to make; `epoch` is the clock the PMD threads
    /// stamp flow hits with (timeouts count from it).
    pub fn new(cfg: &config::Config, epoch: Instant, reg: &Registry) -> std::io::Result<OpenFlow> {
        let mut of = OpenFlow {
            bridges: Vec::new(),
            listeners: Vec::new(),
            actives: Vec::new(),
            conns: HashMap::new(),
            next_conn: 0,
            started: epoch,
            last_publish: Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now),
            pending: false,
            publish_cost: Duration::ZERO,
        };
        let prepared = of.prepare(cfg).map_err(|e| std::io::Error::new(ErrorKind::AddrInUse, e))?;
        of.apply(reg, cfg, prepared)?;
        Ok(of)
    }

    /// The OpenFlow side of a bridge that exists now.
    pub fn bridge(&self, name: &str) -> Option<&OfBridge> {
        self.bridges.iter().find(|b| !b.removed && b.bridge == name)
    }

    fn bridge_index(&self, name: &str) -> Option<usize> {
        self.bridges.iter().position(|b| !b.removed && b.bridge == name)
    }

    /// First half of a change of OpenFlow settings to `cfg`: refuses what
    /// cannot change on a running bridge (its number of flow tables) and
    /// binds the listeners `cfg` adds, so that an address in use refuses
    /// the change with nothing applied.
    pub fn prepare(&self, cfg: &config::Config) -> Result<Prepared, String> {
        let mut bound = Vec::new();
        for b in &cfg.bridges {
            let bi = self.bridge_index(&b.name);
            if let Some(have) = bi.map(|i| self.bridges[i].agent.tables.tables.len()) {
                if have != usize::from(b.flow_tables) {
                    return Err(format!(
                        "bridge `{}`: flow_tables changed from {have} to {}: that needs a restart of vswitchd; nothing was applied",
                        b.name, b.flow_tables
                    ));
                }
            }
            for spec in &b.controllers {
                let Ok(Controller::Listen { port, ip }) = spec.parse::<Controller>() else { continue };
                if bi.is_some_and(|bi| self.listeners.iter().flatten().any(|l| l.bridge == bi && l.spec == *spec)) {
                    continue;
                }
                let l = TcpListener::bind(SocketAddr::new(ip, port))
                    .map_err(|e| format!("bridge `{}`: controller `{spec}`: {e}; nothing was applied", b.name))?;
                bound.push((b.name.clone(), spec.clone(), l));
            }
        }
        Ok(Prepared { bound })
    }

    /// Second half: makes every bridge's OpenFlow side match `cfg`
    /// (normally the switch's configuration once the change is in).
    /// New bridges get an agent; removed ones lose their controllers.
    /// Listeners and connect targets no longer named are closed with their
    /// connections, new ones start; a changed datapath id closes the
    /// bridge's connections, since OpenFlow has no message to tell a
    /// controller (they reconnect and read the new one in FEATURES_REPLY,
    /// as with OVS). Publishes with the next sync.
    pub fn apply(&mut self, reg: &Registry, cfg: &config::Config, prepared: Prepared) -> std::io::Result<()> {
        for bi in 0..self.bridges.len() {
            if !self.bridges[bi].removed && !cfg.bridges.iter().any(|b| b.name == self.bridges[bi].bridge) {
                self.keep_controllers(reg, bi, &[]);
                let b = &mut self.bridges[bi];
                b.removed = true;
                b.has_controllers = false;
                b.known_ports = None;
            }
        }
        let mut bound = prepared.bound;
        for b in &cfg.bridges {
            let bi = if let Some(bi) = self.bridge_index(&b.name) {
                bi
            } else {
                let mut agent = Agent::new(0, b.flow_tables, b.flow_table_size as usize);
                agent.dp_desc = b.name.clone();
                agent.folder.start()?;
                self.bridges.push(OfBridge {
                    bridge: b.name.clone(),
                    agent,
                    port_config: HashMap::new(),
                    fail_secure: false,
                    has_controllers: false,
                    counters: Arc::new(OfCounters::default()),
                    published: None,
                    published_seq: 0,
                    link_epoch: 0,
                    known_ports: None,
                    removed: false,
                });
                self.bridges.len() - 1
            };
            self.keep_controllers(reg, bi, &b.controllers);
            let dpid = parse_dpid(b.datapath_id.as_deref(), &b.name);
            let ob = &mut self.bridges[bi];
            ob.agent.tables.max_entries = b.flow_table_size as usize;
            let dpid_changed = ob.agent.datapath_id != dpid;
            ob.agent.datapath_id = dpid;
            ob.fail_secure = b.fail_mode == config::FailMode::Secure;
            ob.has_controllers = !b.controllers.is_empty();
            if dpid_changed {
                let ids: Vec<ConnId> = self.conns.iter().filter(|(_, c)| c.bridge == bi).map(|(id, _)| *id).collect();
                for id in ids {
                    self.close(reg, id);
                }
            }
            for spec in &b.controllers {
                match spec.parse::<Controller>() {
                    Ok(Controller::Listen { .. }) => {
                        if self.listeners.iter().flatten().any(|l| l.bridge == bi && l.spec == *spec) {
                            continue;
                        }
                        let Some(at) = bound.iter().position(|(n, s, _)| *n == b.name && s == spec) else { continue };
                        let (_, _, mut listener) = bound.swap_remove(at);
                        let li = self.listeners.iter().position(Option::is_none).unwrap_or(self.listeners.len());
                        reg.register(&mut listener, Token(TOKEN_BASE + li), Interest::READABLE)?;
                        let l = Some(Listener { bridge: bi, listener, spec: spec.clone() });
                        if li == self.listeners.len() {
                            self.listeners.push(l);
                        } else {
                            self.listeners[li] = l;
                        }
                    }
                    Ok(Controller::Connect { ip, port }) => {
                        if self.actives.iter().flatten().any(|a| a.bridge == bi && a.spec == *spec) {
                            continue;
                        }
                        let a = Some(Active {
                            bridge: bi,
                            addr: SocketAddr::new(ip, port),
                            spec: spec.clone(),
                            conn: None,
                            next_try: Instant::now(),
                            backoff: Duration::from_millis(500),
                        });
                        match self.actives.iter().position(Option::is_none) {
                            Some(ai) => self.actives[ai] = a,
                            None => self.actives.push(a),
                        }
                    }
                    // The config was validated: not reached.
                    Err(_) => {}
                }
            }
        }
        self.pending = true;
        Ok(())
    }

    /// Closes bridge `bi`'s listeners and connect targets that `specs` no
    /// longer names, with their connections.
    fn keep_controllers(&mut self, reg: &Registry, bi: usize, specs: &[String]) {
        for li in 0..self.listeners.len() {
            if self.listeners[li].as_ref().is_some_and(|l| l.bridge == bi && !specs.contains(&l.spec)) {
                if let Some(mut l) = self.listeners[li].take() {
                    let _ = reg.deregister(&mut l.listener);
                }
                let ids: Vec<ConnId> =
                    self.conns.iter().filter(|(_, c)| c.origin == Origin::Listener(li)).map(|(id, _)| *id).collect();
                for id in ids {
                    self.close(reg, id);
                }
            }
        }
        for ai in 0..self.actives.len() {
            if self.actives[ai].as_ref().is_some_and(|a| a.bridge == bi && !specs.contains(&a.spec)) {
                if let Some(id) = self.actives[ai].as_ref().and_then(|a| a.conn) {
                    self.close(reg, id);
                }
                self.actives[ai] = None;
            }
        }
    }

    /// Whether `t` is one of ours.
    pub fn owns(t: Token) -> bool {
        t.0 >= TOKEN_BASE
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn add_conn(&mut self, reg: &Registry, bridge: usize, mut stream: TcpStream, peer: String, origin: Origin) {
        // Accepted connections are up; connect targets wait for the
        // socket to become writable.
        let connected = matches!(origin, Origin::Listener(_));
        let id = self.next_conn;
        self.next_conn += 1;
        let interest = if connected { Interest::READABLE } else { Interest::READABLE | Interest::WRITABLE };
        if reg.register(&mut stream, Token(CONN_BASE + usize::try_from(id).unwrap_or(0)), interest).is_err() {
            return;
        }
        let hello = self.bridges[bridge].agent.connected(id);
        let now = Instant::now();
        let c = Conn {
            bridge,
            stream,
            peer,
            inbuf: Vec::new(),
            outbuf: hello,
            last_rx: now,
            last_echo: now,
            connected,
            origin,
        };
        self.conns.insert(id, c);
        if let Some(a) = origin.active().and_then(|a| self.actives[a].as_mut()) {
            a.conn = Some(id);
        }
        if connected {
            self.flush(reg, id);
        }
    }

    fn close(&mut self, reg: &Registry, id: ConnId) {
        if let Some(mut c) = self.conns.remove(&id) {
            let _ = reg.deregister(&mut c.stream);
            self.bridges[c.bridge].agent.disconnected(id);
            if let Some(a) = c.origin.active().and_then(|a| self.actives[a].as_mut()) {
                a.conn = None;
                a.next_try = Instant::now() + a.backoff;
                a.backoff = (a.backoff * 2).min(Duration::from_secs(8));
            }
        }
    }

    fn flush(&mut self, reg: &Registry, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let mut dead = false;
        while c.connected && !c.outbuf.is_empty() {
            match c.stream.write(&c.outbuf) {
                Ok(0) => {
                    dead = true;
                    break;
                }
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    dead = true;
                    break;
                }
            }
        }
        if dead || c.outbuf.len() > MAX_OUTBUF {
            self.close(reg, id);
            return;
        }
        let want = if c.outbuf.is_empty() && c.connected {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        let _ = reg.reregister(&mut c.stream, Token(CONN_BASE + usize::try_from(id).unwrap_or(0)), want);
    }

    fn send(&mut self, reg: &Registry, out: Vec<(ConnId, Vec<u8>)>) {
        let mut touched = Vec::new();
        for (id, bytes) in out {
            if let Some(c) = self.conns.get_mut(&id) {
                c.outbuf.extend_from_slice(&bytes);
                touched.push(id);
            }
        }
        touched.dedup();
        for id in touched {
            self.flush(reg, id);
        }
    }

    /// Handles a readiness event on one of our tokens.
    pub fn event(&mut self, reg: &Registry, sw: &mut Switch, t: Token, readable: bool, writable: bool) {
        if t.0 < CONN_BASE {
            let li = t.0 - TOKEN_BASE;
            loop {
                let Some(l) = self.listeners.get(li).and_then(Option::as_ref) else { return };
                match l.listener.accept() {
                    Ok((stream, peer)) => {
                        let bridge = l.bridge;
                        let _ = stream.set_nodelay(true);
                        self.add_conn(reg, bridge, stream, peer.to_string(), Origin::Listener(li));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                    Err(_) => return,
                }
            }
        }
        let id = (t.0 - CONN_BASE) as ConnId;
        let Some(c) = self.conns.get_mut(&id) else { return };
        if !c.connected && (writable || readable) {
            match c.stream.peer_addr() {
                Ok(_) => {
                    c.connected = true;
                    if let Some(a) = c.origin.active().and_then(|a| self.actives[a].as_mut()) {
                        a.backoff = Duration::from_millis(500);
                    }
                }
                Err(_) => {
                    self.close(reg, id);
                    return;
                }
            }
        }
        let mut closed = false;
        if readable {
            closed = crate::read_available(&mut c.stream, &mut c.inbuf);
            c.last_rx = Instant::now();
        }
        let bridge = c.bridge;
        // Whole messages are handled in place and the buffer is shifted
        // once per read, not once per message (a storm of small flow-mods
        // would otherwise move the buffer over and over).
        let data = std::mem::take(&mut c.inbuf);
        let mut at = 0;
        let now_ms = self.now_ms();
        while let Some(n) = frame_len(&data[at..]) {
            if n < 8 {
                // A length below the header's: the stream cannot be framed
                // any more. Answer once and close.
                let e =
                    Message::error(OfpError::BadRequest(ofproto::ofp::error::BadRequest::BadLen), &data[at..at + 8]);
                self.send(reg, vec![(id, e.encode(0))]);
                closed = true;
                break;
            }
            if data.len() - at < n {
                break;
            }
            let f = &data[at..at + n];
            at += n;
            let ob = &mut self.bridges[bridge];
            let before = ob.agent.generation;
            let mut dp = SwitchDp { sw, bridge: &ob.bridge, index: bridge, config: &mut ob.port_config };
            let (out, close) = ob.agent.receive(id, f, &mut dp, now_ms);
            // The PMD threads get new tables at most every 10 ms, and always
            // before an answer goes out (a barrier reply in particular),
            // across reads too: a flow-mod in one read, its barrier in the
            // next.
            self.pending |= self.bridges[bridge].agent.generation != before;
            if self.pending && !out.is_empty() {
                self.sync_now(sw);
            }
            self.send(reg, out);
            if close {
                closed = true;
                break;
            }
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.inbuf = data;
            c.inbuf.drain(..at);
        }
        self.flush(reg, id);
        if closed {
            self.flush(reg, id);
            self.close(reg, id);
        }
    }

    /// Periodic work (call every 100-200 ms): flow expiry, echo keepalive,
    /// dead connections, active connections to (re)open.
    pub fn tick(&mut self, reg: &Registry) {
        let now_ms = self.now_ms();
        for bi in 0..self.bridges.len() {
            let before = self.bridges[bi].agent.generation;
            let out = self.bridges[bi].agent.tick(now_ms);
            self.pending |= self.bridges[bi].agent.generation != before;
            self.send(reg, out);
        }
        let now = Instant::now();
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else { continue };
            if !c.connected {
                continue;
            }
            if now.duration_since(c.last_rx) > DEAD_AFTER {
                eprintln!("vswitchd: controller {} silent for {DEAD_AFTER:?}, closing", c.peer);
                self.close(reg, id);
            } else if now.duration_since(c.last_rx) > ECHO_EVERY && now.duration_since(c.last_echo) > ECHO_EVERY {
                c.last_echo = now;
                self.send(reg, vec![(id, Message::EchoRequest(Vec::new()).encode(0))]);
            }
        }
        for ai in 0..self.actives.len() {
            let Some(a) = &self.actives[ai] else { continue };
            if a.conn.is_some() || now < a.next_try {
                continue;
            }
            let (bridge, addr, spec) = (a.bridge, a.addr, a.spec.clone());
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    self.add_conn(reg, bridge, stream, spec, Origin::Active(ai));
                }
                Err(_) => {
                    if let Some(a) = self.actives[ai].as_mut() {
                        a.next_try = now + a.backoff;
                        a.backoff = (a.backoff * 2).min(Duration::from_secs(8));
                    }
                }
            }
        }
    }

    /// Publishes each bridge's OpenFlow pipeline to the PMD threads when it
    /// changed (flows, groups, ports) or when OpenFlow starts or stops
    /// ruling the bridge: with fail_mode secure whenever it has
    /// controllers configured; standalone only while one is connected
    /// (NORMAL switching otherwise).
    /// Changes that answer nothing (a storm of flow-mods) are published at
    /// most every 10 ms (longer when publishing takes more than 5 ms); [`OpenFlow::sync_now`] publishes at once (before
    /// an answer goes out).
    pub fn sync(&mut self, sw: &mut Switch) {
        if self.last_publish.elapsed() >= Duration::from_millis(10).max(self.publish_cost * 2) {
            self.sync_now(sw);
        }
    }

    /// Publishes every bridge whose pipeline changed, now.
    pub fn sync_now(&mut self, sw: &mut Switch) {
        let start = Instant::now();
        self.sync_bridges(sw);
        self.publish_cost = start.elapsed();
    }

    fn sync_bridges(&mut self, sw: &mut Switch) {
        self.last_publish = Instant::now();
        self.pending = false;
        for bi in 0..self.bridges.len() {
            let b = &self.bridges[bi];
            if b.removed {
                continue;
            }
            let connected = b.agent.connections().next().is_some();
            let active = b.has_controllers && (b.fail_secure || connected);
            let state = (active, b.agent.generation, sw.port_epoch, b.link_epoch, b.agent.group_meter_generation);
            if b.published == Some(state) || (b.published.is_none() && !active) {
                continue;
            }
            // Only flows changed since the last publication (and the
            // datapath was active then): the PMD threads may keep the
            // megaflows these changes cannot affect.
            let only_flows =
                b.published.is_some_and(|p| p.0 && active && (p.2, p.3, p.4) == (state.2, state.3, state.4));
            let changes = self.bridges[bi].agent.tables.take_changes();
            let delta = changes.filter(|_| only_flows).map(|c| (self.bridges[bi].published_seq, Arc::from(c)));
            self.bridges[bi].published_seq += 1;
            let dp = active.then(|| {
                let mut dp = self.snapshot(bi, sw);
                dp.seq = self.bridges[bi].published_seq;
                dp.delta = delta;
                Arc::new(dp)
            });
            let name = self.bridges[bi].bridge.clone();
            sw.set_openflow(&name, dp);
            self.bridges[bi].published = Some(state);
        }
    }

    fn snapshot(&self, bi: usize, sw: &Switch) -> OfBridgeDp {
        let b = &self.bridges[bi];
        let ports: Vec<&crate::switch::SwitchPort> = sw.ports.iter().filter(|p| p.bridge == b.bridge).collect();
        let slots = sw.ports.iter().map(|p| p.slot + 1).max().unwrap_or(0);
        let mut slot_ofport = vec![0u32; slots];
        let mut ofport_slot = std::collections::BTreeMap::new();
        for p in &ports {
            slot_ofport[p.slot] = p.ofport;
            ofport_slot.insert(p.ofport, (p.slot, p.port.link().up));
        }
        OfBridgeDp {
            bridge: bi,
            tables: b.agent.tables.snapshot(),
            groups: b.agent.groups.clone(),
            meters: b.agent.meters.clone(),
            slot_ofport,
            ofport_slot,
            miss_send_len: b.agent.config.miss_send_len,
            to_controller: sw.to_controller_tx.clone(),
            counters: b.counters.clone(),
            pool: sw.pool(),
            epoch_ms: 0,
            seq: 0,
            delta: None,
            folder: b.agent.folder.clone(),
        }
    }

    /// Tells controllers about ports added and removed since last time
    /// (PORT_STATUS ADD / DELETE); call after run-time port changes.
    pub fn port_changes(&mut self, reg: &Registry, sw: &Switch) {
        for bi in 0..self.bridges.len() {
            let b = &mut self.bridges[bi];
            if b.removed {
                continue;
            }
            let now = port_infos(sw, &b.bridge, &b.port_config);
            let Some(before) = b.known_ports.replace(now.clone()) else { continue };
            let mut out = Vec::new();
            for p in now.iter().filter(|p| !before.iter().any(|q| q.port_no == p.port_no && q.name == p.name)) {
                out.extend(b.agent.port_status(0, p));
            }
            for p in before.iter().filter(|p| !now.iter().any(|q| q.port_no == p.port_no && q.name == p.name)) {
                out.extend(b.agent.port_status(1, p));
            }
            self.send(reg, out);
        }
    }

    /// Follows the links of the bridges' ports (call every 100-200 ms): a
    /// link that went up or down is announced to the controllers
    /// (PORT_STATUS MODIFY) and the pipeline is published again, so that
    /// fast-failover groups pick their buckets by the new liveness.
    pub fn link_changes(&mut self, reg: &Registry, sw: &Switch) {
        let mut out = Vec::new();
        for b in &mut self.bridges {
            let Some(known) = b.known_ports.as_mut() else { continue };
            for k in known.iter_mut() {
                let Some(p) = sw.ports.iter().find(|p| p.bridge == b.bridge && p.ofport == k.port_no) else { continue };
                let up = p.port.link().up;
                if up != k.link_up {
                    k.link_up = up;
                    out.extend(b.agent.port_status(2, k));
                    b.link_epoch += 1;
                    self.pending = true;
                }
            }
        }
        self.send(reg, out);
    }

    /// Whether any bridge's pipeline is OpenFlow now.
    pub fn any_active(&self) -> bool {
        self.bridges.iter().any(|b| b.published.is_some_and(|(active, ..)| active))
    }

    /// Sends the PMD threads' packet-ins to the controllers that want them.
    pub fn drain_packet_ins(&mut self, reg: &Registry, sw: &Switch) {
        for _ in 0..256 {
            let Ok(m) = sw.to_controller.try_recv() else { return };
            let Some(b) = self.bridges.get(m.bridge).filter(|b| !b.removed) else { continue };
            let mut match_ = ofproto::ofp::Match::any()
                .with(ofproto::ofp::Oxm::exact_u64(ofproto::ofp::Field::InPort, u64::from(m.in_port)));
            if m.metadata != 0 {
                match_ = match_.with(ofproto::ofp::Oxm::exact_u64(ofproto::ofp::Field::Metadata, m.metadata));
            }
            // A table-miss packet-in carries miss_send_len bytes.
            let mut data = m.data;
            if m.reason == 0 && b.agent.config.miss_send_len != 0xffff {
                data.truncate(usize::from(b.agent.config.miss_send_len));
            }
            let pi = ofproto::ofp::msg::PacketIn {
                buffer_id: ofproto::ofp::msg::NO_BUFFER,
                total_len: m.total_len,
                reason: m.reason,
                table_id: m.table_id,
                cookie: m.cookie,
                match_,
                data,
            };
            let out = b.agent.packet_in(&pi);
            self.send(reg, out);
        }
    }

    /// Controllers of every bridge, for `vswitchctl controllers`.
    pub fn describe(&self) -> serde_json::Value {
        let role_name = |r: u32| match r {
            1 => "equal",
            2 => "master",
            3 => "slave",
            _ => "other",
        };
        let mut v = Vec::new();
        for (bi, b) in self.bridges.iter().enumerate().filter(|(_, b)| !b.removed) {
            let mut ctl = Vec::new();
            for l in self.listeners.iter().flatten().filter(|l| l.bridge == bi) {
                ctl.push(serde_json::json!({"target": l.spec, "kind": "listen", "state": "listening"}));
            }
            for a in self.actives.iter().flatten().filter(|a| a.bridge == bi) {
                let state = match a.conn.and_then(|id| self.conns.get(&id)) {
                    Some(c) if c.connected => "connected",
                    Some(_) => "connecting",
                    None => "backoff",
                };
                ctl.push(serde_json::json!({"target": a.spec, "kind": "connect", "state": state}));
            }
            let conns: Vec<serde_json::Value> = self
                .conns
                .iter()
                .filter(|(_, c)| c.bridge == bi)
                .map(|(id, c)| {
                    let role = b.agent.role_of(*id).map_or("none", role_name);
                    serde_json::json!({"peer": c.peer, "connected": c.connected, "role": role})
                })
                .collect();
            v.push(serde_json::json!({"bridge": b.bridge, "datapath_id": format!("{:016x}", b.agent.datapath_id),
                                      "fail_mode": if b.fail_secure { "secure" } else { "standalone" },
                                      "controllers": ctl, "connections": conns}));
        }
        serde_json::json!({ "bridges": v })
    }
}
