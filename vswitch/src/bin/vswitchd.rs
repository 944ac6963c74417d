//! `vswitchd --config FILE`: the switch daemon.
//!
//! Reads and validates the configuration (a wrong file is refused with
//! file:line:column, the field and why), starts EAL, ports and PMD threads,
//! serves the control socket (JSON-RPC 2.0, one message per line, mode
//! 0600) from a mio event loop, ages learned MACs every second, re-reads
//! the file on SIGHUP (or the `reload` method) and applies the difference,
//! and stops cleanly on SIGINT or SIGTERM.
//!
//! The heap is asked for transparent huge pages: at start, unless
//! `GLIBC_TUNABLES` already names `glibc.malloc.hugetlb`, the daemon
//! executes itself again (same PID, same arguments) with
//! `glibc.malloc.hugetlb=1` added, so that glibc's malloc madvises its
//! arenas `MADV_HUGEPAGE`. Megaflows, stored keys and flow entries then
//! cost a TLB entry per 2 MB, not per 4 KB: with millions of them, each
//! packet's lookup would otherwise walk page tables. Set
//! `GLIBC_TUNABLES=glibc.malloc.hugetlb=0` to keep 4 KB pages.

use anyhow::{Context, Result};
use clap::Parser;
use config::rpc::parse_request;
use config::Config;
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vswitch::openflow::OpenFlow;
use vswitch::switch::Switch;

#[derive(Parser)]
#[command(version, about = "The userspace switch daemon")]
struct Args {
    /// Configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Control socket path (overrides `control.socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGHUP {
        RELOAD.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

const LISTENER: Token = Token(0);
/// The most a client may send without a newline.
const MAX_LINE: usize = 1 << 20;

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

/// Executes this program again with `glibc.malloc.hugetlb=1` in
/// `GLIBC_TUNABLES` (see the module docs); returns only where it is
/// already set or the exec failed (then the heap keeps 4 KB pages).
/// Line-aligned small blocks (megaflows) without glibc's slow aligned
/// path (see `vswitch::alloc`).
#[global_allocator]
static ALLOC: vswitch::alloc::LineAlloc = vswitch::alloc::LineAlloc;

fn heap_on_huge_pages() {
    use std::os::unix::process::CommandExt;
    const TUNABLE: &str = "glibc.malloc.hugetlb";
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains(TUNABLE) {
        return;
    }
    let tunables = if current.is_empty() { format!("{TUNABLE}=1") } else { format!("{current}:{TUNABLE}=1") };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "vswitchd".into());
    // The file's own path (not /proc/self/exe): the process keeps its name.
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vswitchd: could not restart with huge pages for the heap ({e}); going on with 4 KB pages");
            return;
        }
    };
    let err = std::process::Command::new(exe).arg0(arg0).args(args).env("GLIBC_TUNABLES", tunables).exec();
    eprintln!("vswitchd: could not restart with huge pages for the heap ({err}); going on with 4 KB pages");
}

fn main() {
    heap_on_huge_pages();
    if let Err(e) = run() {
        eprintln!("vswitchd: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let cfg = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let socket = args.socket.unwrap_or_else(|| PathBuf::from(&cfg.control.socket));
    // SAFETY: installs async-signal-safe handlers that only store an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    let mut sw = Switch::start(&cfg)?;
    sw.config_path = Some(args.config.clone());
    eprintln!(
        "vswitchd: {} bridge(s), {} port(s), PMD threads on cores {:?}; control socket {}",
        sw.bridges.len(),
        sw.ports.len(),
        sw.pmds.stats().iter().map(|s| s.core).collect::<Vec<_>>(),
        socket.display()
    );
    let served = serve(&mut sw, &socket);
    let _ = std::fs::remove_file(&socket);
    sw.stop();
    served
}

fn bind(path: &Path) -> Result<UnixListener> {
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

fn serve(sw: &mut Switch, path: &Path) -> Result<()> {
    let mut listener = bind(path)?;
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut of = OpenFlow::new(&sw.cfg, sw.epoch, poll.registry())?;
    of.port_changes(poll.registry(), sw);
    let mut port_epoch = sw.port_epoch;
    let mut events = Events::with_capacity(64);
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next = 1usize;
    let mut last_age = Instant::now();
    let mut last_links = Instant::now();
    while !STOP.load(Ordering::SeqCst) {
        // Packet-ins wait in a queue the loop drains: with OpenFlow bridges
        // it wakes every 10 ms so that they reach controllers quickly.
        let wake = if of.any_active() { Duration::from_millis(10) } else { Duration::from_millis(100) };
        match poll.poll(&mut events, Some(wake)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        if RELOAD.swap(false, Ordering::SeqCst) {
            match vswitch::control::reload(sw, &mut of, poll.registry()) {
                Ok(r) => eprintln!("vswitchd: reloaded: {r}"),
                Err(e) => eprintln!("vswitchd: reload refused: {e}"),
            }
        }
        of.tick(poll.registry());
        if last_links.elapsed() >= Duration::from_millis(200) {
            of.link_changes(poll.registry(), sw);
            last_links = Instant::now();
        }
        of.drain_packet_ins(poll.registry(), sw);
        if sw.port_epoch != port_epoch {
            port_epoch = sw.port_epoch;
            of.port_changes(poll.registry(), sw);
        }
        of.sync(sw);
        if last_age.elapsed() >= Duration::from_secs(1) {
            sw.age_macs();
            last_age = Instant::now();
        }
        for ev in events.iter() {
            if OpenFlow::owns(ev.token()) {
                of.event(poll.registry(), sw, ev.token(), ev.is_readable(), ev.is_writable());
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
                closed = vswitch::read_available(&mut c.stream, &mut c.inbuf);
                while let Some(nl) = c.inbuf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = c.inbuf.drain(..=nl).collect();
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let resp = match parse_request(text.trim()) {
                        Ok(req) if req.id.is_none() => continue, // a notification: no answer
                        Ok(req) => vswitch::control::handle(sw, &mut of, poll.registry(), &req),
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
            }
        }
    }
    eprintln!("vswitchd: stopping");
    Ok(())
}
