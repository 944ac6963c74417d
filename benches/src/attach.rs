//! `vswitch-bench attach`: how fast containers are attached. N network
//! namespaces are ADDed one after the other through a CNI plugin, then
//! DELeted, as a runtime does it (environment and stdin, one process per
//! call); each call timed. Ours (`vswitch-cni` with its IPAM, ports on a
//! vswitchd bridge) against Debian's reference `bridge` plugin with
//! `host-local` (ports on a Linux bridge), in one run. Reports ADD and DEL
//! latency p50/p99, attachments per second and, for ours, vswitchd's
//! resident memory with every container attached.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The options.
#[derive(clap::Args, Clone, Debug)]
pub struct AttachArgs {
    /// Containers attached (one namespace each).
    #[arg(long, default_value_t = 100)]
    pub containers: usize,
    /// Plugins, in order: `vswitch` (vswitch-cni), `bridge` (the reference
    /// bridge + host-local).
    #[arg(long, value_delimiter = ',', default_value = "vswitch,bridge")]
    pub plugins: Vec<String>,
    /// Port type ours asks vswitchd for: auto, afxdp, afpacket.
    #[arg(long, default_value = "auto")]
    pub port_type: String,
    /// Scratch directory.
    #[arg(long, default_value = "/tmp/vswitch-bench-attach")]
    pub dir: String,
    /// Write results as JSON here.
    #[arg(long)]
    pub json: Option<String>,
}

fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((s.len() as f64 - 1.0) * q).round() as usize;
    s.get(i).copied().unwrap_or(0.0)
}

fn sh(args: &[&str]) -> Result<()> {
    let st = Command::new(args[0]).args(&args[1..]).stderr(Stdio::null()).status()?;
    if !st.success() {
        bail!("{args:?} failed");
    }
    Ok(())
}

/// One plugin call: milliseconds it took.
fn call(plugin: &Path, cmd: &str, id: &str, ns: &str, path: &str, conf: &Value) -> Result<f64> {
    let t = Instant::now();
    let mut child = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/run/netns/{ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", path)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| plugin.display().to_string())?;
    child.stdin.take().context("stdin")?.write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!("{} {cmd} {id}: {}", plugin.display(), String::from_utf8_lossy(&out.stdout));
    }
    Ok(ms)
}

fn rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_vswitchd(dir: &Path, n: usize) -> Result<(Daemon, PathBuf)> {
    let sock = dir.join("ctl.sock");
    let _ = std::fs::remove_file(&sock);
    // Each AF_PACKET or AF_XDP port takes its rings' mbufs from the pool.
    let mb = (512 + n * 4).min(16_384);
    let cfg = format!(
        "[eal]\nmemory = \"no-huge\"\nmemory_mb = {mb}\nfile_prefix = \"vsattach\"\n\n[control]\nsocket = \"{}\"\n\n[[bridge]]\nname = \"br0\"\n",
        sock.display()
    );
    let path = dir.join("vswitchd.toml");
    std::fs::write(&path, cfg)?;
    let bin = std::env::current_exe()?.with_file_name("vswitchd");
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("vswitchd.log"))?)
        .spawn()
        .with_context(|| format!("{} (cargo build --release -p vswitch)", bin.display()))?;
    let d = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if Instant::now() > deadline {
            bail!("vswitchd did not start: {}", std::fs::read_to_string(dir.join("vswitchd.log")).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((d, sock))
}

/// One plugin's run: ADD and DEL latencies (ms), the wall time of all
/// ADDs, vswitchd's memory (ours).
struct Run {
    add: Vec<f64>,
    del: Vec<f64>,
    add_wall: f64,
    rss_mb: Option<f64>,
}

fn run_plugin(a: &AttachArgs, which: &str, nss: &[String]) -> Result<Run> {
    let dir = PathBuf::from(&a.dir);
    let ours = std::env::current_exe()?.with_file_name("vswitch-cni");
    let data = dir.join(format!("ipam-{which}"));
    let _ = std::fs::remove_dir_all(&data);
    let mut daemon = None;
    let (plugin, path, conf) = match which {
        "vswitch" => {
            if !ours.exists() {
                bail!("{} missing: cargo build --release -p container-host", ours.display());
            }
            let (d, sock) = start_vswitchd(&dir, nss.len())?;
            daemon = Some(d);
            let conf = json!({"cniVersion": "1.0.0", "name": "attach", "type": "vswitch-cni", "bridge": "br0",
                "socket": sock, "portType": a.port_type,
                "ipam": {"type": "vswitch-ipam", "ranges": [[{"subnet": "10.220.0.0/16"}]], "dataDir": data}});
            (ours.clone(), ours.parent().map(|p| p.display().to_string()).unwrap_or_default(), conf)
        }
        "bridge" => {
            let conf = json!({"cniVersion": "1.0.0", "name": "attach", "type": "bridge", "bridge": "vsattachbr",
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.221.0.0/16"}]], "dataDir": data}});
            (PathBuf::from("/usr/lib/cni/bridge"), "/usr/lib/cni".to_string(), conf)
        }
        other => bail!("--plugins: `{other}` is not vswitch or bridge"),
    };
    if !plugin.exists() {
        bail!("{} missing (ci/setup installs containernetworking-plugins)", plugin.display());
    }
    let mut add = Vec::new();
    let t = Instant::now();
    for (k, ns) in nss.iter().enumerate() {
        add.push(call(&plugin, "ADD", &format!("ctr{k}"), ns, &path, &conf)?);
    }
    let add_wall = t.elapsed().as_secs_f64();
    let rss_mb = daemon.as_ref().map(|d| rss_mb(d.0.id()));
    let mut del = Vec::new();
    for (k, ns) in nss.iter().enumerate() {
        del.push(call(&plugin, "DEL", &format!("ctr{k}"), ns, &path, &conf)?);
    }
    if which == "bridge" {
        let _ = sh(&["ip", "link", "del", "vsattachbr"]);
    }
    drop(daemon);
    Ok(Run { add, del, add_wall, rss_mb })
}

/// Runs the benchmark.
pub fn run(a: &AttachArgs) -> Result<()> {
    std::fs::create_dir_all(&a.dir)?;
    let nss: Vec<String> = (0..a.containers).map(|k| format!("vsat{k}")).collect();
    struct Nss<'a>(&'a [String]);
    impl Drop for Nss<'_> {
        fn drop(&mut self) {
            for ns in self.0 {
                let _ = sh(&["ip", "netns", "del", ns]);
            }
        }
    }
    let _guard = Nss(&nss);
    for ns in &nss {
        let _ = sh(&["ip", "netns", "del", ns]);
        sh(&["ip", "netns", "add", ns])?;
    }
    println!(
        "vswitch-bench attach: {} containers, ADD then DEL one after the other, plugins {}",
        a.containers,
        a.plugins.join(", ")
    );
    let mut rows = Vec::new();
    for p in &a.plugins {
        let r = run_plugin(a, p, &nss)?;
        #[allow(clippy::cast_precision_loss)]
        let per_s = a.containers as f64 / r.add_wall;
        let name = if p == "vswitch" { "vswitch-cni + vswitchd" } else { "bridge + host-local (Linux bridge)" };
        println!(
            "{name:<36} ADD p50 {:6.1} ms p99 {:6.1} ms  {per_s:6.1} attaches/s   DEL p50 {:6.1} ms p99 {:6.1} ms{}",
            percentile(&r.add, 0.5),
            percentile(&r.add, 0.99),
            percentile(&r.del, 0.5),
            percentile(&r.del, 0.99),
            r.rss_mb.map_or(String::new(), |m| format!("   vswitchd RSS {m:.0} MB with {} ports", a.containers))
        );
        rows.push(json!({"plugin": p, "containers": a.containers, "add_ms_p50": percentile(&r.add, 0.5), "add_ms_p99": percentile(&r.add, 0.99),
            "del_ms_p50": percentile(&r.del, 0.5), "del_ms_p99": percentile(&r.del, 0.99), "attaches_per_s": per_s, "vswitchd_rss_mb": r.rss_mb}));
    }
    if let Some(j) = &a.json {
        std::fs::write(j, serde_json::to_string_pretty(&json!({"attach": rows}))?)?;
        println!("wrote {j}");
    }
    Ok(())
}
