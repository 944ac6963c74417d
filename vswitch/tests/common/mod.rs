//! A lab for vswitchd end-to-end tests: N "containers" (network
//! namespaces) whose veth host ends become AF_PACKET ports of a vswitchd
//! started from a config file the test writes. Needs root; everything is
//! removed when the lab is dropped, also after a failed assertion.
#![allow(dead_code)]

pub mod overlay;

use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Lab {
    pub tag: String,
    n: u32,
    pub daemon: Option<Child>,
    pub dir: PathBuf,
}

/// A TCP port on loopback nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET `path` from `addr` over HTTP/1.0: (status, headers, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

/// The replies a `ping -q` got, from its summary ("N packets
/// transmitted, M received, ...").
pub fn received(out: &Output) -> u32 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `ping -q -c COUNT -i INTERVAL -W WAIT TO` in namespace `ns`; the replies.
pub fn ping_in(ns: &str, to: &str, count: u32, interval: &str, wait_s: u32) -> u32 {
    received(
        &Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-q", "-c", &count.to_string(), "-i", interval])
            .args(["-W", &wait_s.to_string(), to])
            .output()
            .unwrap(),
    )
}

pub fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?}");
}

impl Lab {
    /// `n` containers, container i at 10.99.0.i/24; `mtu` on both veth ends.
    pub fn new(prefix: &str, n: u32, mtu: Option<u32>) -> Lab {
        let tag = format!("{prefix}{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("vswitchd-test-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab { tag, n, daemon: None, dir };
        lab.cleanup_net();
        for i in 1..=n {
            let (ns, host) = (lab.ns(i), lab.host(i));
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            if let Some(m) = mtu {
                sh(&["ip", "link", "set", &host, "mtu", &m.to_string()]);
                sh(&["ip", "-n", &ns, "link", "set", "eth0", "mtu", &m.to_string()]);
            }
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "addr", "add", &format!("10.99.0.{i}/24"), "dev", "eth0"]);
            // The kernel leaves TCP/UDP checksums to "hardware" on veth; a
            // switch reading frames from a socket must see them finished.
            let _ = Command::new("ip")
                .args(["netns", "exec", &ns, "ethtool", "-K", "eth0", "tx", "off"])
                .stdout(Stdio::null())
                .status();
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"), "1");
            sh(&["ip", "link", "set", &host, "up"]);
        }
        lab
    }
    pub fn ns(&self, i: u32) -> String {
        format!("vs{}c{i}", self.tag)
    }
    pub fn host(&self, i: u32) -> String {
        format!("vs{}h{i}", self.tag)
    }
    pub fn sock(&self) -> String {
        self.dir.join("ctl.sock").display().to_string()
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("vswitchd.toml")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vswitchd.log")).unwrap_or_default()
    }
    fn cleanup_net(&self) {
        for i in 1..=self.n {
            for args in [["netns", "del", &self.ns(i)], ["link", "del", &self.host(i)]] {
                let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
            }
        }
    }
    /// The `[[bridge.port]]` table of port `name` on container i's veth.
    pub fn port(&self, i: u32, name: &str, extra: &str) -> String {
        format!("[[bridge.port]]\nname = \"{name}\"\ntype = \"afpacket\"\niface = \"{}\"\n{extra}\n", self.host(i))
    }
    /// Writes the config file: EAL settings for tests, the control socket,
    /// then `bridges` (TOML text).
    pub fn write_config(&self, bridges: &str) -> PathBuf {
        self.write_config_with("", bridges)
    }
    /// As [`Lab::write_config`], with more keys of `[control]` (TOML
    /// lines; sections such as `[pmd]` may follow them).
    pub fn write_config_with(&self, control: &str, bridges: &str) -> PathBuf {
        let text = format!(
            "[eal]\nmemory = \"no-huge\"\nmemory_mb = 512\nfile_prefix = \"vsdt{tag}\"\n\n[control]\nsocket = \"{sock}\"\n{control}\n\n{bridges}",
            tag = self.tag,
            sock = self.sock(),
        );
        let p = self.config_path();
        std::fs::write(&p, text).unwrap();
        p
    }
    /// A bridge `br0`, fail_mode secure, listening for OpenFlow on a free
    /// loopback port (returned), with containers 1 and 2 as ports c1 and c2
    /// (OpenFlow ports 1 and 2).
    pub fn openflow_config(&self) -> u16 {
        let of_port = free_port();
        self.write_config(&format!(
            "[[bridge]]\nname = \"br0\"\nfail_mode = \"secure\"\ncontrollers = [\"ptcp:{of_port}:127.0.0.1\"]\n\n{}{}",
            self.port(1, "c1", "ofport = 1"),
            self.port(2, "c2", "ofport = 2")
        ));
        of_port
    }

    /// A bridge `br0` with containers 1 and 2 as ports c1 and c2.
    pub fn two_port_config(&self) -> PathBuf {
        self.write_config(&format!(
            "[[bridge]]\nname = \"br0\"\n\n{}{}",
            self.port(1, "c1", ""),
            self.port(2, "c2", "")
        ))
    }
    pub fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_vswitchd"))
            .arg("--config")
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("vswitchd.log")).unwrap())
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(self.sock()).is_err() {
            let exited = self.daemon.as_mut().unwrap().try_wait().unwrap();
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "vswitchd did not start ({exited:?}): {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    pub fn ctl_output(&self, json: bool, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vswitchctl"));
        c.args(["--socket", &self.sock()]);
        if json {
            c.arg("--json");
        }
        c.args(args).output().unwrap()
    }
    /// `vswitchctl --json ARGS`, which must succeed.
    pub fn ctl(&self, args: &[&str]) -> Value {
        let out = self.ctl_output(true, args);
        assert!(out.status.success(), "vswitchctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
    /// `vswitchctl ARGS`, which must fail; its error text.
    pub fn ctl_err(&self, args: &[&str]) -> String {
        let out = self.ctl_output(false, args);
        assert!(
            !out.status.success(),
            "vswitchctl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
    /// `ping -c count` from container `from` to container `to`; how many
    /// answers came back.
    pub fn ping(&self, from: u32, to: u32, count: u32, interval: &str, size: Option<u32>) -> u32 {
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            self.ns(from),
            "ping".into(),
            "-q".into(),
            "-c".into(),
            count.to_string(),
            "-i".into(),
            interval.into(),
            "-W".into(),
            "1".into(),
        ];
        if let Some(s) = size {
            args.extend(["-s".into(), s.to_string(), "-M".into(), "do".into()]);
        }
        args.push(format!("10.99.0.{to}"));
        received(&Command::new("ip").args(&args).output().unwrap())
    }
    /// Whether container `from` reaches `to` (2 pings, one answer is enough).
    pub fn reaches(&self, from: u32, to: u32) -> bool {
        self.ping(from, to, 2, "0.2", None) > 0
    }
    /// The MAC address of container i's eth0.
    pub fn mac(&self, i: u32) -> String {
        let out = Command::new("ip").args(["-n", &self.ns(i), "-j", "link", "show", "eth0"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["address"].as_str().unwrap().to_string()
    }

    /// Permanent neighbour entries between all containers: tests whose
    /// flows change under them count pings, not ARP retries.
    pub fn static_arp(&self) {
        for i in 1..=self.n {
            for j in (1..=self.n).filter(|j| *j != i) {
                sh(&[
                    "ip",
                    "-n",
                    &self.ns(i),
                    "neigh",
                    "replace",
                    &format!("10.99.0.{j}"),
                    "lladdr",
                    &self.mac(j),
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ]);
            }
        }
    }

    /// Port names of bridge `br` in `show`.
    pub fn port_names(&self, br: usize) -> Vec<String> {
        let show = self.ctl(&["show"]);
        show["bridges"][br]["ports"]
            .as_array()
            .map(|a| a.iter().map(|p| p["name"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: i32) {
        let pid = self.daemon.as_ref().unwrap().id();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(i32::try_from(pid).unwrap(), sig) };
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        self.cleanup_net();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next PORT_STATUS (of `reason`, when given) on a controller session
/// `t` (read timeout set by the caller), within 10 s; unread bytes stay in
/// `buf` for the next call.
pub fn next_port_status(
    t: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
    reason: Option<u8>,
) -> ofproto::ofp::msg::PortStatus {
    use ofproto::ofp::{frame_len, Message};
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(n) = frame_len(buf).filter(|n| buf.len() >= *n) {
            let f: Vec<u8> = buf.drain(..n).collect();
            if let Ok((_, Message::PortStatus(ps))) = Message::decode(&f) {
                if reason.is_none_or(|r| r == ps.reason) {
                    return ps;
                }
            }
        }
        assert!(Instant::now() < deadline, "no port-status");
        let mut chunk = [0u8; 4096];
        if let Ok(n) = t.read(&mut chunk) {
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// EAL in this test process (for tests on mbufs), started by the first
/// test that asks: one core, `mb` MB of ordinary memory, a file prefix of
/// its own.
pub fn eal(prefix: &str, mb: u32) -> &'static pmd::Eal {
    static EAL: std::sync::OnceLock<&'static pmd::Eal> = std::sync::OnceLock::new();
    EAL.get_or_init(|| {
        pmd::Eal::init(&pmd::EalConfig {
            cores: vec![0],
            memory: pmd::Memory::NoHuge { mb },
            file_prefix: format!("{prefix}{}", std::process::id()),
            log_level: 4,
            ..pmd::EalConfig::default()
        })
        .expect("EAL")
    })
}
