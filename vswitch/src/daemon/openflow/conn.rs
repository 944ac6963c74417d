//! The connections' I/O: accepted and active connections registered with
//! the daemon's mio loop, whole messages to the bridge's agent and its
//! answers queued back, keepalive, backoff and reconnection.

use super::sync::SwitchDp;
use super::{Conn, OpenFlow, Origin, CONN_BASE, DEAD_AFTER, ECHO_EVERY, MAX_OUTBUF, TOKEN_BASE};
use crate::daemon::switch::Switch;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use ofproto::agent::ConnId;
use ofproto::ofp::{frame_len, Message, OfpError};
use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

impl OpenFlow {
    pub(super) fn add_conn(
        &mut self,
        reg: &Registry,
        bridge: usize,
        mut stream: TcpStream,
        peer: String,
        origin: Origin,
    ) {
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

    pub(super) fn close(&mut self, reg: &Registry, id: ConnId) {
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

    pub(super) fn flush(&mut self, reg: &Registry, id: ConnId) {
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

    pub(super) fn send(&mut self, reg: &Registry, out: Vec<(ConnId, Vec<u8>)>) {
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
            closed = crate::daemon::read_available(&mut c.stream, &mut c.inbuf);
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
}
