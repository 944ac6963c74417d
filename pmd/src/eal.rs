//! EAL set-up from a typed configuration.
//!
//! DPDK's Environment Abstraction Layer is initialised once per process.
//! [`EalConfig`] says which cores it may use, where its memory comes from
//! (hugepages, or plain memory for tests and machines without them), its
//! file prefix (so several DPDK processes share a machine), the vdevs to
//! create and the PCI devices it may take. Every value is checked before
//! EAL sees it, so a mistake is reported with the option's name rather than
//! as a DPDK log line.

use crate::error::{Error, Result};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where EAL's memory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Memory {
    /// 2 MB (or 1 GB) hugepages from hugetlbfs; `socket_mem_mb` per NUMA
    /// socket is reserved at start (None: EAL takes what it needs).
    Hugepages {
        /// Megabytes to reserve on socket 0.
        socket_mem_mb: Option<u32>,
    },
    /// Ordinary anonymous memory (`--no-huge`): no hugepages needed; slower
    /// for real NICs, fine for vdevs and tests. `mb` is the total.
    NoHuge {
        /// Megabytes of memory.
        mb: u32,
    },
    /// Hugepages without files in hugetlbfs (`--in-memory`): nothing is left
    /// behind if the process dies; no secondary processes.
    InMemory {
        /// Megabytes to reserve on socket 0.
        socket_mem_mb: Option<u32>,
    },
}

/// Everything needed to start EAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConfig {
    /// CPU cores the process may run on. The main lcore is the first; it
    /// floats over all of them, so the control thread is never pinned to a
    /// PMD core. PMD threads are pinned by [`crate::pmd`], not by EAL.
    pub cores: Vec<usize>,
    /// Memory source.
    pub memory: Memory,
    /// Hugepage file prefix and runtime directory name; unique per process
    /// on a machine.
    pub file_prefix: String,
    /// Virtual devices, as DPDK devargs (`net_memif0,role=server,...`).
    pub vdevs: Vec<String>,
    /// PCI devices EAL may take (allow list). Empty with no PCI device
    /// wanted means `--no-pci`.
    pub pci_allow: Vec<String>,
    /// DPDK log level (1-8); 4 (warnings) keeps it quiet.
    pub log_level: u8,
    /// Further EAL arguments, passed as they are, last.
    pub extra_args: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> EalConfig {
        EalConfig {
            cores: (0..num_cpus()).collect(),
            memory: Memory::NoHuge { mb: 512 },
            file_prefix: format!("vswitch{}", std::process::id()),
            vdevs: Vec::new(),
            pci_allow: Vec::new(),
            log_level: 4,
            extra_args: Vec::new(),
        }
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Online CPUs by number (from sched_getaffinity of this process).
fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids().map(|v| v.into_iter().map(|c| c.id).collect()).unwrap_or_default()
}

fn is_pci_addr(s: &str) -> bool {
    // [domain:]bus:device.function, hex digits.
    let (addr, _) = s.split_once(',').unwrap_or((s, ""));
    let parts: Vec<&str> = addr.split(':').collect();
    let (bus_dev, ok_dom) = match parts.as_slice() {
        [dom, bus, devfn] => (format!("{bus}:{devfn}"), dom.len() == 4 && dom.chars().all(|c| c.is_ascii_hexdigit())),
        [bus, devfn] => (format!("{bus}:{devfn}"), true),
        _ => return false,
    };
    let Some((bus, devfn)) = bus_dev.split_once(':') else { return false };
    let Some((dev, func)) = devfn.split_once('.') else { return false };
    ok_dom
        && bus.len() == 2
        && dev.len() == 2
        && func.len() == 1
        && [bus, dev, func].iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Checks a vdev devargs string's shape: `net_<driver><N>[,key=value...]`.
pub fn check_vdev(devargs: &str) -> Result<()> {
    let bad = |why: String| Err(Error::InvalidOption { option: format!("vdev `{devargs}`"), why });
    let (name, args) = devargs.split_once(',').unwrap_or((devargs, ""));
    if !name.starts_with("net_") || name.len() <= 4 {
        return bad(
            "a vdev name starts with its driver, e.g. net_memif0, net_af_xdp0, net_tap0, net_ring0, net_null0".into()
        );
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return bad(format!("device name `{name}` may hold only letters, digits and _"));
    }
    if !args.is_empty() {
        for kv in args.split(',') {
            if kv.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                return bad(format!("`{kv}` is not key=value"));
            }
        }
    }
    Ok(())
}

impl EalConfig {
    /// Checks every value and builds EAL's argument vector.
    pub fn to_args(&self) -> Result<Vec<String>> {
        let invalid = |option: &str, why: String| Error::InvalidOption { option: option.into(), why };
        if self.cores.is_empty() {
            return Err(invalid("eal.cores", "at least one core is needed".into()));
        }
        let allowed = allowed_cpus();
        for c in &self.cores {
            if !allowed.is_empty() && !allowed.contains(c) {
                return Err(invalid(
                    "eal.cores",
                    format!("core {c} is not available to this process (available: {allowed:?})"),
                ));
            }
        }
        if self.file_prefix.is_empty()
            || self.file_prefix.contains('/')
            || self.file_prefix.contains(char::is_whitespace)
        {
            return Err(invalid(
                "eal.file_prefix",
                format!("`{}` must be a non-empty name without / or spaces", self.file_prefix),
            ));
        }
        if !(1..=8).contains(&self.log_level) {
            return Err(invalid("eal.log_level", format!("{} is outside 1 (emergency) ..= 8 (debug)", self.log_level)));
        }
        let cores = self.cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        // lcore 0 (main) may float over every configured core.
        let mut args =
            vec!["vswitch".to_string(), "--lcores".into(), format!("0@({cores})"), "--main-lcore".into(), "0".into()];
        match &self.memory {
            Memory::Hugepages { socket_mem_mb } | Memory::InMemory { socket_mem_mb } => {
                check_hugepages(socket_mem_mb.unwrap_or(0))?;
                if let Some(mb) = socket_mem_mb {
                    if *mb == 0 {
                        return Err(invalid("eal.socket_mem_mb", "0 MB is too little".into()));
                    }
                    args.extend(["--socket-mem".into(), mb.to_string()]);
                }
                if matches!(self.memory, Memory::InMemory { .. }) {
                    args.push("--in-memory".into());
                }
            }
            Memory::NoHuge { mb } => {
                if *mb < 64 {
                    return Err(invalid("eal.memory_mb", format!("{mb} MB is too little for mempools (at least 64)")));
                }
                args.extend(["--no-huge".into(), "-m".into(), mb.to_string()]);
            }
        }
        args.extend(["--file-prefix".into(), self.file_prefix.clone()]);
        args.push(format!("--log-level={}", self.log_level));
        for v in &self.vdevs {
            check_vdev(v)?;
            args.extend(["--vdev".into(), v.clone()]);
        }
        if self.pci_allow.is_empty() {
            args.push("--no-pci".into());
        }
        for p in &self.pci_allow {
            if !is_pci_addr(p) {
                return Err(invalid("eal.pci_allow", format!("`{p}` is not a PCI address like 0000:3b:00.0")));
            }
            args.extend(["-a".into(), p.clone()]);
        }
        args.extend(self.extra_args.iter().cloned());
        Ok(args)
    }
}

fn check_hugepages(want_mb: u32) -> Result<()> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let free = field("HugePages_Free:");
    let size_kb = field("Hugepagesize:").max(1);
    if free == 0 {
        return Err(Error::Hugepages(format!(
            "none free (HugePages_Total {}, HugePages_Free 0)",
            field("HugePages_Total:")
        )));
    }
    let free_mb = free * size_kb / 1024;
    if u64::from(want_mb) > free_mb {
        return Err(Error::Hugepages(format!("{want_mb} MB asked for, only {free_mb} MB free")));
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if !mounts.lines().any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs")) {
        return Err(Error::Hugepages("no hugetlbfs is mounted".into()));
    }
    Ok(())
}

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// Proof that EAL is initialised in this process; everything that needs
/// EAL takes a `&Eal`.
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
}

impl Eal {
    /// Starts EAL. Fails on a bad option (named), missing hugepages (with
    /// how to reserve them), or a second call in the same process.
    pub fn init(config: &EalConfig) -> Result<&'static Eal> {
        let args = config.to_args()?;
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::EalAlreadyInitialised);
        }
        let cargs: Vec<CString> =
            args.iter().map(|a| CString::new(a.as_str())).collect::<std::result::Result<_, _>>().map_err(|_| {
                Error::InvalidOption { option: "eal".into(), why: "an argument contains a NUL byte".into() }
            })?;
        let mut argv: Vec<*mut libc::c_char> = cargs.iter().map(|c| c.as_ptr().cast_mut()).collect();
        argv.push(std::ptr::null_mut());
        let argc = i32::try_from(cargs.len()).expect("EAL argument count fits i32");
        // SAFETY: argv is a NULL-terminated array of pointers to
        // NUL-terminated strings that outlive the call; EAL may permute the
        // pointer array (it is ours and mutable) but does not free them. The
        // CStrings are leaked below because EAL keeps pointers into argv.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let reason = crate::error::rte_errno_str();
            return Err(Error::EalInit { args, reason });
        }
        std::mem::forget(cargs);
        std::mem::forget(argv);
        Ok(Box::leak(Box::new(Eal { args })))
    }

    /// The arguments EAL was started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// DPDK's version string ("DPDK 22.11.11", say).
    pub fn version() -> String {
        // SAFETY: rte_version returns a pointer to a static NUL-terminated
        // string.
        unsafe { std::ffi::CStr::from_ptr(dpdk_sys::vs_version()) }.to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_for_no_huge() {
        let cfg = EalConfig {
            cores: vec![0],
            memory: Memory::NoHuge { mb: 256 },
            file_prefix: "t1".into(),
            vdevs: vec!["net_ring0".into(), "net_memif0,role=server,socket=/tmp/x.sock".into()],
            ..EalConfig::default()
        };
        let a = cfg.to_args().unwrap();
        assert!(a.windows(2).any(|w| w == ["--lcores", "0@(0)"]));
        assert!(a.windows(3).any(|w| w == ["--no-huge", "-m", "256"]));
        assert!(a.contains(&"--no-pci".to_string()));
        assert!(a.windows(2).any(|w| w == ["--vdev", "net_memif0,role=server,socket=/tmp/x.sock"]));
    }

    #[test]
    fn bad_options_are_named() {
        let base = EalConfig { cores: vec![0], file_prefix: "t".into(), ..EalConfig::default() };
        let e = EalConfig { cores: vec![], ..base.clone() }.to_args().unwrap_err().to_string();
        assert!(e.contains("eal.cores"), "{e}");
        let e = EalConfig { cores: vec![4096], ..base.clone() }.to_args().unwrap_err().to_string();
        assert!(e.contains("eal.cores") && e.contains("4096"), "{e}");
        let e = EalConfig { vdevs: vec!["memif0".into()], ..base.clone() }.to_args().unwrap_err().to_string();
        assert!(e.contains("vdev `memif0`"), "{e}");
        let e = EalConfig { vdevs: vec!["net_memif0,role".into()], ..base.clone() }.to_args().unwrap_err().to_string();
        assert!(e.contains("`role` is not key=value"), "{e}");
        let e = EalConfig { pci_allow: vec!["3b:00".into()], ..base.clone() }.to_args().unwrap_err().to_string();
        assert!(e.contains("eal.pci_allow"), "{e}");
        let e = EalConfig { memory: Memory::NoHuge { mb: 8 }, ..base.clone() }.to_args().unwrap_err().to_string();
        assert!(e.contains("eal.memory_mb"), "{e}");
        let e = EalConfig { file_prefix: "a/b".into(), ..base.clone() }.to_args().unwrap_err().to_string();
        assert!(e.contains("eal.file_prefix"), "{e}");
        let e = EalConfig { log_level: 0, ..base }.to_args().unwrap_err().to_string();
        assert!(e.contains("eal.log_level"), "{e}");
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_addr("0000:3b:00.0"));
        assert!(is_pci_addr("3b:00.1"));
        assert!(is_pci_addr("0000:3b:00.0,rxq_cqe_comp_en=0"));
        assert!(!is_pci_addr("3b:00"));
        assert!(!is_pci_addr("zz:00.0"));
    }
}
