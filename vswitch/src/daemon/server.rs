//! The control thread's event loop: the control socket (JSON-RPC 2.0, one
//! message per line, mode 0600), the OpenFlow listeners and connections,
//! packet-ins from the PMD threads, link changes, MAC aging and reloads.

use super::capture::Captures;
use super::control::Daemon;
use super::metrics::{self, MetricsServer};
use super::openflow::OpenFlow;
use super::switch::Switch;
use anyhow::{Context, Result};
use config::rpc::parse_request;
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
/// Woken by the metrics thread (below the OpenFlow tokens, far above any
/// control connection's).
const WAKER: Token = Token(super::openflow::TOKEN_BASE - 1);
/// The most a client may send without a newline.
const MAX_LINE: usize = 1 << 20;

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

/// Binds the control socket at `path` (mode 0600), replacing a stale one
/// a dead daemon left; refused while a live daemon answers there.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        // A live daemon answers; a dead one left its socket behind.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use by a running vswitchd", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves the control socket at `path` and the OpenFlow connections of
/// `sw` until `stop` is set; `reload` set re-reads the config file (it is
/// cleared when taken).
pub fn serve(sw: &mut Switch, path: &Path, stop: &AtomicBool, reload: &AtomicBool) -> Result<()> {
    let mut listener = bind(path)?;
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let of = OpenFlow::new(&sw.cfg, sw.epoch, poll.registry())?;
    let mut d = Daemon { of, captures: Captures::default() };
    d.of.port_changes(poll.registry(), sw);
    // Scrapes come from the metrics thread; the waker gets the loop to
    // answer them at once.
    let (scrape_tx, scrapes) = std::sync::mpsc::channel();
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    // PMD threads wake the loop for neighbours and frames that wait.
    sw.underlay.set_waker(waker.clone());
    let _metrics = match &sw.cfg.control.metrics {
        Some(addr) => {
            let addr = addr.parse().with_context(|| format!("control.metrics `{addr}`"))?;
            let w = waker.clone();
            let m = MetricsServer::start(addr, scrape_tx, move || {
                let _ = w.wake();
            })
            .map_err(anyhow::Error::msg)?;
            eprintln!("vswitchd: metrics on http://{}/metrics", m.addr);
            Some(m)
        }
        None => None,
    };
    let mut port_epoch = sw.port_epoch;
    let mut events = Events::with_capacity(64);
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next = 1usize;
    let mut last_age = Instant::now();
    let mut last_links = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        // Packet-ins wait in a queue the loop drains: with OpenFlow bridges
        // it wakes every 10 ms so that they reach controllers quickly.
        let wake = if d.of.any_active() { Duration::from_millis(10) } else { Duration::from_millis(100) };
        match poll.poll(&mut events, Some(wake)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        if reload.swap(false, Ordering::SeqCst) {
            match super::control::reload(sw, &mut d.of, poll.registry()) {
                Ok(r) => eprintln!("vswitchd: reloaded: {r}"),
                Err(e) => eprintln!("vswitchd: reload refused: {e}"),
            }
        }
        sw.underlay_tick();
        metrics::answer(&scrapes, sw, &d.of, &d.captures);
        d.captures.tick(sw);
        d.of.tick(poll.registry());
        if last_links.elapsed() >= Duration::from_millis(200) {
            d.of.link_changes(poll.registry(), sw);
            last_links = Instant::now();
        }
        d.of.drain_packet_ins(poll.registry(), sw);
        if sw.port_epoch != port_epoch {
            port_epoch = sw.port_epoch;
            d.of.port_changes(poll.registry(), sw);
        }
        d.of.sync(sw);
        if last_age.elapsed() >= Duration::from_secs(1) {
            sw.age_macs();
            d.of.watch_caches(sw.cfg.pmd.megaflow_limit);
            last_age = Instant::now();
        }
        for ev in events.iter() {
            if ev.token() == WAKER {
                continue;
            }
            if OpenFlow::owns(ev.token()) {
                d.of.event(poll.registry(), sw, ev.token(), ev.is_readable(), ev.is_writable());
                continue;
            }
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let t = Token(next);
                            next += 1;
                            poll.registry().register(&mut stream, t, Interest::READABLE)?;
                            conns.insert(t, Conn { stream, inbuf: Vec::new(), outbuf: Vec::new() });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                continue;
            }
            let t = ev.token();
            let Some(c) = conns.get_mut(&t) else { continue };
            let mut closed = false;
            if ev.is_readable() {
                closed = super::read_available(&mut c.stream, &mut c.inbuf);
                while let Some(nl) = c.inbuf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = c.inbuf.drain(..=nl).collect();
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let resp = match parse_request(text.trim()) {
                        Ok(req) if req.id.is_none() => continue, // a notification: no answer
                        Ok(req) => super::control::handle(sw, &mut d, poll.registry(), t.0 as u64, &req),
                        Err(resp) => *resp,
                    };
                    c.outbuf.extend_from_slice(serde_json::to_string(&resp)?.as_bytes());
                    c.outbuf.push(b'\n');
                }
                if c.inbuf.len() > MAX_LINE {
                    closed = true;
                }
            }
            if !c.outbuf.is_empty() {
                match c.stream.write(&c.outbuf) {
                    Ok(n) => {
                        c.outbuf.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => closed = true,
                }
                let want =
                    if c.outbuf.is_empty() { Interest::READABLE } else { Interest::READABLE | Interest::WRITABLE };
                poll.registry().reregister(&mut c.stream, t, want)?;
            }
            if closed && c.outbuf.is_empty() {
                if let Some(mut c) = conns.remove(&t) {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
                // Its captures end with it.
                d.captures.owner_gone(sw, t.0 as u64);
            }
        }
    }
    eprintln!("vswitchd: stopping");
    d.captures.stop_all(sw);
    Ok(())
}
