//! Packet capture on a port (`vswitchctl capture`), as `dpdk-dumpcap` and
//! `ovs-tcpdump` do: the PMD threads copy the port's packets into a tap's
//! bounded ring ([`pmd::capture`]) only while a capture runs; a writer
//! thread per capture drains the ring into a pcapng (or pcap) file with
//! nanosecond timestamps and each packet's direction, and stops after
//! `count` packets or when asked. A capture started over a control
//! connection ends when that connection closes, so a client that dies
//! leaves nothing running.
//!
//! A full ring drops the copies it cannot take and counts them
//! ([`CaptureStats::dropped`]); forwarded traffic never waits for a
//! capture.

use super::switch::Switch;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, TsResolution};
use pmd::capture::{Direction, PortTaps, Record, Tap};
use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Records in a capture's ring unless asked otherwise.
pub const DEFAULT_RING: usize = 4096;
/// Bytes kept of each packet unless asked otherwise (as tcpdump).
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// Which of a port's packets a capture takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Received.
    Rx,
    /// Sent.
    Tx,
    /// Both.
    Both,
}

impl std::str::FromStr for Which {
    type Err = String;
    fn from_str(s: &str) -> Result<Which, String> {
        match s {
            "rx" | "in" => Ok(Which::Rx),
            "tx" | "out" => Ok(Which::Tx),
            "both" | "inout" => Ok(Which::Both),
            _ => Err(format!("`direction` must be rx, tx or both, not `{s}`")),
        }
    }
}

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// pcapng: nanosecond timestamps, the port's name, each packet's
    /// direction.
    Pcapng,
    /// Classic pcap (nanosecond variant).
    Pcap,
}

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    /// The port's name.
    pub port: String,
    /// Its packets in which direction.
    pub which: Which,
    /// Stop after this many packets (0: until stopped).
    pub count: u64,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// The file to write (created or truncated).
    pub file: PathBuf,
    /// Its format.
    pub format: Format,
    /// Records in the ring.
    pub ring: usize,
}

/// A capture's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureStats {
    /// Its id.
    pub id: u64,
    /// The port.
    pub port: String,
    /// The file.
    pub file: String,
    /// Packets copied into the ring.
    pub captured: u64,
    /// Copies the full ring refused.
    pub dropped: u64,
    /// Packets written to the file.
    pub written: u64,
    /// Whether it ended (count reached, stopped, port removed, or the file
    /// failed).
    pub done: bool,
    /// Why it ended early, when it did.
    pub error: Option<String>,
}

struct Session {
    id: u64,
    spec: CaptureSpec,
    slot: usize,
    tap: Arc<Tap>,
    /// The control connection that started it.
    owner: u64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    /// The tap's (captured, dropped) when the writer ended by itself.
    at_end: Arc<[AtomicU64; 2]>,
    writer: Option<JoinHandle<Result<(), String>>>,
    /// The taps are off (detached from the port).
    detached: bool,
    error: Option<String>,
}

/// The running captures (control thread).
#[derive(Default)]
pub struct Captures {
    next_id: u64,
    sessions: Vec<Session>,
}

impl Captures {
    /// Starts capturing `spec.port`'s packets; the capture's id. Refused
    /// for an unknown port, a port already captured in that direction, a
    /// relative path or a file that cannot be created.
    pub fn start(&mut self, sw: &Switch, spec: CaptureSpec, owner: u64) -> Result<u64, String> {
        let port = sw.ports.iter().find(|p| p.name == spec.port).ok_or_else(|| format!("no port `{}`", spec.port))?;
        if !spec.file.is_absolute() {
            return Err(format!("`file` must be an absolute path, not `{}`", spec.file.display()));
        }
        if spec.snaplen == 0 {
            return Err("`snaplen` must be at least 1".into());
        }
        if !(16..=1 << 20).contains(&spec.ring) {
            return Err(format!("`ring` must be from 16 to 1048576 records, not {}", spec.ring));
        }
        let clash = |w: Which| match (w, spec.which) {
            (Which::Both, _) | (_, Which::Both) => true,
            (a, b) => a == b,
        };
        if let Some(s) = self.sessions.iter().find(|s| !s.detached && s.spec.port == spec.port && clash(s.spec.which)) {
            return Err(format!("port `{}` is already captured by capture {}: stop it first", spec.port, s.id));
        }
        let file = std::fs::File::create(&spec.file).map_err(|e| format!("{}: {e}", spec.file.display()))?;
        // A record holds the largest frame the port carries (two VLAN
        // tags), or the snaplen when that is less.
        let frame = usize::from(port.port.mtu()) + 14 + 8;
        let keep = usize::try_from(spec.snaplen).unwrap_or(usize::MAX).min(frame);
        let tap = Arc::new(Tap::new(spec.ring, keep));
        let (stop, done, written) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let at_end = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let w = Writer {
            tap: tap.clone(),
            port: spec.port.clone(),
            snaplen: spec.snaplen,
            count: spec.count,
            stop: stop.clone(),
            done: done.clone(),
            written: written.clone(),
            at_end: at_end.clone(),
            clock: Clock::now(),
        };
        let format = spec.format;
        let writer = std::thread::Builder::new()
            .name(format!("capture-{}", spec.port))
            .spawn(move || w.run(BufWriter::with_capacity(1 << 20, file), format))
            .map_err(|e| format!("capture thread: {e}"))?;
        self.next_id += 1;
        let id = self.next_id;
        let slot = port.slot;
        self.sessions.push(Session {
            id,
            spec,
            slot,
            tap,
            owner,
            stop,
            done,
            written,
            at_end,
            writer: Some(writer),
            detached: false,
            error: None,
        });
        sw.pmds.set_taps(slot, self.taps_of(slot));
        Ok(id)
    }

    /// The taps the running captures of `slot` have on it.
    fn taps_of(&self, slot: usize) -> PortTaps {
        let mut t = PortTaps::default();
        for s in self.sessions.iter().filter(|s| !s.detached && s.slot == slot) {
            if matches!(s.spec.which, Which::Rx | Which::Both) {
                t.rx = Some(s.tap.clone());
            }
            if matches!(s.spec.which, Which::Tx | Which::Both) {
                t.tx = Some(s.tap.clone());
            }
        }
        t
    }

    /// Takes session `i`'s taps off its port (if the port is still there)
    /// and waits for its writer to write what the ring holds.
    fn finish(&mut self, sw: &Switch, i: usize) {
        let s = &mut self.sessions[i];
        if !s.detached {
            s.detached = true;
            let slot = s.slot;
            let alive = sw.ports.iter().any(|p| p.slot == slot && p.name == self.sessions[i].spec.port);
            if alive {
                let taps = self.taps_of(slot);
                sw.pmds.set_taps(slot, taps);
            }
        }
        // No PMD thread copies into it any more: the writer drains the
        // ring and ends.
        let s = &mut self.sessions[i];
        s.stop.store(true, Ordering::Release);
        if let Some(h) = s.writer.take() {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => s.error = Some(e),
                Err(_) => s.error = Some("the capture's writer panicked".into()),
            }
        }
    }

    fn index(&self, id: u64) -> Result<usize, String> {
        self.sessions.iter().position(|s| s.id == id).ok_or_else(|| format!("no capture {id}"))
    }

    /// Stops capture `id` (its file complete when this returns) and
    /// forgets it; its last counters.
    pub fn stop(&mut self, sw: &Switch, id: u64) -> Result<CaptureStats, String> {
        let i = self.index(id)?;
        self.finish(sw, i);
        let st = self.stats_of(i);
        self.sessions.remove(i);
        Ok(st)
    }

    /// Capture `id`'s counters.
    pub fn status(&self, id: u64) -> Result<CaptureStats, String> {
        self.index(id).map(|i| self.stats_of(i))
    }

    fn stats_of(&self, i: usize) -> CaptureStats {
        let s = &self.sessions[i];
        // Once the writer ended (count reached), the PMD threads copy on
        // until the tap is taken off: those copies, and the full ring's
        // refusals, are beyond the capture.
        let (captured, dropped) = if s.done.load(Ordering::Acquire) {
            (s.at_end[0].load(Ordering::Relaxed), s.at_end[1].load(Ordering::Relaxed))
        } else {
            (s.tap.captured(), s.tap.dropped())
        };
        CaptureStats {
            id: s.id,
            port: s.spec.port.clone(),
            file: s.spec.file.display().to_string(),
            captured,
            dropped,
            written: s.written.load(Ordering::Relaxed),
            done: s.detached && s.writer.is_none(),
            error: s.error.clone(),
        }
    }

    /// Every capture's counters.
    pub fn stats(&self) -> Vec<CaptureStats> {
        (0..self.sessions.len()).map(|i| self.stats_of(i)).collect()
    }

    /// Ends captures whose writer finished (count reached, the file
    /// failed) or whose port is gone (call each loop turn); finished ones
    /// stay listed until stopped or until their owner goes.
    pub fn tick(&mut self, sw: &Switch) {
        for i in 0..self.sessions.len() {
            let s = &self.sessions[i];
            if s.detached {
                continue;
            }
            let gone = !sw.ports.iter().any(|p| p.slot == s.slot && p.name == s.spec.port);
            if gone || s.done.load(Ordering::Acquire) {
                self.finish(sw, i);
                if gone && self.sessions[i].error.is_none() {
                    self.sessions[i].error = Some(format!("port `{}` was removed", self.sessions[i].spec.port));
                }
            }
        }
    }

    /// Stops every capture the control connection `owner` started (it
    /// closed).
    pub fn owner_gone(&mut self, sw: &Switch, owner: u64) {
        while let Some(i) = self.sessions.iter().position(|s| s.owner == owner) {
            self.finish(sw, i);
            self.sessions.remove(i);
        }
    }

    /// Stops every capture (the daemon stops).
    pub fn stop_all(&mut self, sw: &Switch) {
        for i in 0..self.sessions.len() {
            self.finish(sw, i);
        }
        self.sessions.clear();
    }
}

/// Wall-clock time of TSC values.
#[derive(Clone, Copy)]
struct Clock {
    tsc0: u64,
    unix0: Duration,
    hz: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            tsc0: pmd::rdtsc(),
            unix0: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default(),
            hz: pmd::tsc_hz().max(1),
        }
    }

    fn at(&self, tsc: u64) -> Duration {
        let dt = u128::from(tsc.wrapping_sub(self.tsc0)) * 1_000_000_000 / u128::from(self.hz);
        self.unix0 + Duration::from_nanos(u64::try_from(dt).unwrap_or(u64::MAX))
    }
}

/// A capture's writer thread.
struct Writer {
    tap: Arc<Tap>,
    port: String,
    snaplen: u32,
    count: u64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    at_end: Arc<[AtomicU64; 2]>,
    clock: Clock,
}

/// The file being written.
enum Sink<W: Write> {
    Ng(PcapNgWriter<W>),
    Classic(PcapWriter<W>),
}

impl Writer {
    /// Writes records until `count` or until stopped (then what the ring
    /// still holds); the file is flushed either way.
    fn run<W: Write>(self, out: W, format: Format) -> Result<(), String> {
        let r = self.write_all(out, format);
        self.at_end[0].store(self.tap.captured(), Ordering::Relaxed);
        self.at_end[1].store(self.tap.dropped(), Ordering::Relaxed);
        self.done.store(true, Ordering::Release);
        r
    }

    fn write_all<W: Write>(&self, out: W, format: Format) -> Result<(), String> {
        let err = |e: pcap_file::PcapError| format!("writing the capture: {e}");
        let mut sink = match format {
            Format::Pcapng => {
                let mut w = PcapNgWriter::new(out).map_err(err)?;
                w.write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: DataLink::ETHERNET,
                    snaplen: self.snaplen,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Owned(self.port.clone())),
                        // Timestamps in nanoseconds.
                        InterfaceDescriptionOption::IfTsResol(9),
                    ],
                })
                .map_err(err)?;
                Sink::Ng(w)
            }
            Format::Pcap => {
                let header = PcapHeader {
                    snaplen: self.snaplen,
                    datalink: DataLink::ETHERNET,
                    ts_resolution: TsResolution::NanoSecond,
                    ..PcapHeader::default()
                };
                Sink::Classic(PcapWriter::with_header(out, header).map_err(err)?)
            }
        };
        let mut n = 0u64;
        loop {
            let Some(r) = self.tap.take() else {
                if self.stop.load(Ordering::Acquire) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            let res = self.write_one(&mut sink, &r);
            self.tap.recycle(r);
            res.map_err(err)?;
            n += 1;
            self.written.store(n, Ordering::Relaxed);
            if self.count > 0 && n >= self.count {
                break;
            }
        }
        let mut out = match sink {
            Sink::Ng(w) => w.into_inner(),
            Sink::Classic(w) => w.into_writer(),
        };
        out.flush().map_err(|e| format!("writing the capture: {e}"))
    }

    fn write_one<W: Write>(&self, sink: &mut Sink<W>, r: &Record) -> Result<(), pcap_file::PcapError> {
        let data = &r.data[..usize::try_from(r.len).unwrap_or(0).min(r.data.len())];
        let ts = self.clock.at(r.tsc);
        match sink {
            Sink::Ng(w) => {
                // epb_flags bits 0-1: 1 inbound, 2 outbound.
                let dir = match r.dir {
                    Direction::Rx => 1,
                    Direction::Tx => 2,
                };
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: ts,
                    original_len: r.orig_len,
                    data: Cow::Borrowed(data),
                    options: vec![EnhancedPacketOption::Flags(dir)],
                })?;
            }
            Sink::Classic(w) => {
                w.write_packet(&PcapPacket { timestamp: ts, orig_len: r.orig_len, data: Cow::Borrowed(data) })?;
            }
        }
        Ok(())
    }
}

/// The control socket's capture methods: `capture-start` (`port`,
/// `file`, optional `direction` rx|tx|both, `count`, `snaplen`, `format`
/// pcapng|pcap, `ring`), `capture-stop` and `capture-status` (`id`),
/// `capture-list`. `conn` is the asking connection: it owns the captures
/// it starts.
pub fn rpc(
    sw: &Switch,
    caps: &mut Captures,
    conn: u64,
    req: &config::rpc::Request,
) -> Result<serde_json::Value, config::rpc::RpcError> {
    use super::control::{param_str, param_u64};
    use config::rpc::RpcError;
    let refused = |e: String| RpcError::new(RpcError::REFUSED, e);
    let invalid = |e: String| RpcError::new(RpcError::INVALID_PARAMS, e);
    let id = || param_u64(req, "id")?.ok_or_else(|| invalid(format!("`{}` needs `id`", req.method)));
    match req.method.as_str() {
        "capture-start" => {
            let port = param_str(req, "port")?.ok_or_else(|| invalid("`capture-start` needs `port`".into()))?;
            let file = param_str(req, "file")?.ok_or_else(|| invalid("`capture-start` needs `file`".into()))?;
            let which = param_str(req, "direction")?.unwrap_or("both").parse().map_err(invalid)?;
            let format = match param_str(req, "format")?.unwrap_or("pcapng") {
                "pcapng" => Format::Pcapng,
                "pcap" => Format::Pcap,
                f => return Err(invalid(format!("`format` must be pcapng or pcap, not `{f}`"))),
            };
            let snaplen = param_u64(req, "snaplen")?.unwrap_or(u64::from(DEFAULT_SNAPLEN));
            let spec = CaptureSpec {
                port: port.to_string(),
                which,
                count: param_u64(req, "count")?.unwrap_or(0),
                snaplen: u32::try_from(snaplen).map_err(|_| invalid(format!("`snaplen` {snaplen} is too large")))?,
                file: PathBuf::from(file),
                format,
                ring: usize::try_from(param_u64(req, "ring")?.unwrap_or(DEFAULT_RING as u64)).unwrap_or(usize::MAX),
            };
            let id = caps.start(sw, spec, conn).map_err(refused)?;
            Ok(serde_json::json!({"id": id, "port": port, "file": file}))
        }
        "capture-stop" => Ok(stats_json(&caps.stop(sw, id()?).map_err(refused)?)),
        "capture-status" => Ok(stats_json(&caps.status(id()?).map_err(refused)?)),
        "capture-list" => Ok(serde_json::json!({"captures": caps.stats().iter().map(stats_json).collect::<Vec<_>>()})),
        m => Err(RpcError::new(RpcError::METHOD_NOT_FOUND, format!("no method `{m}`"))),
    }
}

fn stats_json(s: &CaptureStats) -> serde_json::Value {
    serde_json::json!({"id": s.id, "port": s.port, "file": s.file, "captured": s.captured, "dropped": s.dropped,
                       "written": s.written, "done": s.done, "error": s.error})
}
