//! OpenFlow controller connections of every bridge: listeners
//! (`ptcp:PORT[:IP]`) and active connections (`tcp:IP:PORT`, reconnected
//! with backoff), driven by the daemon's mio loop. Each complete message
//! goes to the bridge's [`Agent`]; what it answers is queued on the
//! connections it names. Idle connections get an echo request every 5 s
//! and are closed after 15 s without any message.

use crate::datapath::ofdp::OfCounters;
use config::Controller;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use ofproto::agent::{Agent, ConnId, PortInfo};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the control thread makes of a bridge's megaflow caches, each
/// second: whether they thrash (fill up and start over, so that packets
/// keep walking the tables), said once in the log and in `show` while it
/// lasts, with what to set.
#[derive(Debug, Default)]
pub struct CacheWatch {
    /// Megaflows dropped by full caches in each of the last 10 seconds.
    window: std::collections::VecDeque<u64>,
    last_flushed: u64,
    warned: bool,
    /// While they thrash: what is happening and what to do.
    pub hint: Option<String>,
}

impl CacheWatch {
    /// Seconds the watch looks back.
    const WINDOW: usize = 10;

    /// One second's look at `c`, under `[pmd] megaflow_limit = limit`.
    pub fn second(&mut self, bridge: &str, c: &OfCounters, limit: config::MegaflowLimit) {
        use std::sync::atomic::Ordering::Relaxed;
        let flushed = c.mf_flushed.load(Relaxed);
        self.window.push_back(flushed.saturating_sub(self.last_flushed));
        self.last_flushed = flushed;
        if self.window.len() > Self::WINDOW {
            self.window.pop_front();
        }
        let recent: u64 = self.window.iter().sum();
        let now = c.mf_limit.load(Relaxed).max(u64::from(limit.initial())).max(1);
        // A full cache drops about its limit each time it starts over.
        self.hint = (recent >= 2 * now).then(|| {
            let times = recent / now;
            match limit {
                config::MegaflowLimit::Fixed(n) => format!(
                    "megaflow caches filled up and started over about {times} times in {}s at {n} megaflows per PMD \
                     thread, so packets keep walking the tables: set [pmd] megaflow_limit = \"auto\" (or at least {})",
                    Self::WINDOW,
                    (u64::from(n) * 2).min(u64::from(config::MegaflowLimit::MAX))
                ),
                config::MegaflowLimit::Auto => format!(
                    "megaflow caches filled up and started over about {times} times in {}s at {now} megaflows per PMD \
                     thread, as many as \"auto\" lets them hold (4194304, or a quarter of the memory over the PMD \
                     threads): the traffic has more flows than the caches hold",
                    Self::WINDOW
                ),
            }
        });
        if let (Some(h), false) = (&self.hint, self.warned) {
            eprintln!("vswitchd: bridge {bridge}: {h}");
            self.warned = true;
        }
    }
}

/// Tokens at or above this belong to OpenFlow (listeners, then
/// connections); the control socket uses the ones below.
pub const TOKEN_BASE: usize = 1 << 24;
const CONN_BASE: usize = TOKEN_BASE + (1 << 16);
/// The most a peer may have queued unread before we drop it.
const MAX_OUTBUF: usize = 64 << 20;
const ECHO_EVERY: Duration = Duration::from_secs(5);
const DEAD_AFTER: Duration = Duration::from_secs(15);

mod conn;
mod sync;

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
    /// Whether its megaflow caches thrash.
    pub caches: CacheWatch,
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
                    caches: CacheWatch::default(),
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

    /// Each OpenFlow bridge's look at its megaflow caches (call once a
    /// second).
    pub fn watch_caches(&mut self, limit: config::MegaflowLimit) {
        for b in self.bridges.iter_mut().filter(|b| b.has_controllers && !b.removed) {
            b.caches.second(&b.bridge, &b.counters, limit);
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
