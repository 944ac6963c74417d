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

use anyhow::Result;
use clap::Parser;
use config::Config;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use vswitch::daemon::switch::Switch;

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
    let pmd_cores: Vec<usize> = sw.pmds.stats().iter().map(|s| s.core).collect();
    eprintln!(
        "vswitchd: {} bridge(s), {} port(s), PMD threads on cores {pmd_cores:?}; control socket {}",
        sw.bridges.len(),
        sw.ports.len(),
        socket.display()
    );
    match &sw.control_cores {
        Some(c) => eprintln!("vswitchd: every other thread on cores {c:?}: the PMD cores run their PMD threads alone"),
        None => eprintln!(
            "vswitchd: warning: the PMD threads take every core this process may use ({pmd_cores:?}), so the \
             control thread shares them and a burst of control work delays packets: leave a core out of [pmd] cores"
        ),
    }
    let served = vswitch::daemon::server::serve(&mut sw, &socket, &STOP, &RELOAD);
    let _ = std::fs::remove_file(&socket);
    sw.stop();
    served
}
