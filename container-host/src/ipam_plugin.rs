//! The IPAM side of CNI over the lease store: an `ipam` section shaped as
//! `host-local`'s (`ranges` as sets of ranges, one address from each set,
//! `reserved`, `routes`, `dns`, `dataDir`) turned into leases: ADD takes
//! one address per set (a failed ADD releases what it took), DEL releases
//! (idempotent), CHECK compares the leases with `prevResult`, GC keeps only
//! `cni.dev/valid-attachments`, STATUS says whether the lease directory is
//! usable. Used by the `vswitch-ipam` plugin and by `vswitch-cni`.

use crate::cni::{code, CniError, IpConfig, IpamResult, NetConf, Route};
use crate::ipam::{IpamError, Owner, Pool, Range, Store};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The `ipam` section.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpamConf {
    #[serde(rename = "type")]
    _plugin: String,
    /// Sets of ranges: one address from each.
    pub ranges: Vec<Vec<Range>>,
    #[serde(default)]
    /// Never handed out.
    pub reserved: Vec<IpAddr>,
    #[serde(default)]
    /// Routes answered.
    pub routes: Vec<Route>,
    #[serde(default)]
    /// Where leases live.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    /// DNS settings answered.
    pub dns: Option<serde_json::Value>,
}

const DEFAULT_DATA_DIR: &str = "/var/lib/cni/vswitch-ipam";

/// An invalid-configuration error.
pub fn invalid(details: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_CONFIG, "invalid IPAM configuration", details)
}

/// The CNI error of an IPAM error.
pub fn from_ipam(e: IpamError) -> CniError {
    match e {
        IpamError::Config(d) => invalid(d),
        IpamError::Exhausted(n) => {
            CniError::new(code::NO_ADDRESS, "no free address", format!("every address of {n} is leased"))
        }
        e @ IpamError::Taken(..) => CniError::new(code::ADDRESS_TAKEN, "address taken", e.to_string()),
        e @ IpamError::OutOfRange(_) => invalid(e.to_string()),
        e @ IpamError::Io(..) => CniError::new(code::IO_FAILURE, "lease store failed", e.to_string()),
    }
}

/// The IPAM side of an invocation: the configuration and its leases.
pub struct Plugin {
    /// The network configuration.
    pub conf: NetConf,
    /// Its `ipam` section.
    pub ipam: IpamConf,
    root: PathBuf,
}

impl Plugin {
    /// See the module.
    pub fn new(conf: NetConf) -> Result<Plugin, CniError> {
        let raw = conf.rest.get("ipam").cloned().ok_or_else(|| invalid("no \"ipam\" section"))?;
        let ipam: IpamConf = serde_json::from_value(raw).map_err(|e| invalid(format!("ipam: {e}")))?;
        if ipam.ranges.is_empty() {
            return Err(invalid("ipam.ranges is empty"));
        }
        for (k, set) in ipam.ranges.iter().enumerate() {
            let pool = Pool { ranges: set.clone(), reserved: ipam.reserved.clone() };
            pool.check().map_err(|e| invalid(format!("ipam.ranges[{k}]: {e}")))?;
            let v4 = set[0].subnet.addr.is_ipv4();
            if set.iter().any(|r| r.subnet.addr.is_ipv4() != v4) {
                return Err(invalid(format!("ipam.ranges[{k}] mixes IPv4 and IPv6")));
            }
        }
        let n = &conf.name;
        if n.starts_with('.') || n.contains(['/', '\0']) {
            return Err(invalid(format!("network name {n:?} cannot name a directory")));
        }
        let root = ipam.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)).join(n);
        Ok(Plugin { conf, ipam, root })
    }

    fn store(&self, set: usize) -> Result<Store, CniError> {
        Store::open(&self.root, &set.to_string()).map_err(from_ipam)
    }

    fn pool(&self, set: usize) -> Pool {
        Pool { ranges: self.ipam.ranges[set].clone(), reserved: self.ipam.reserved.clone() }
    }

    /// The range of set `set` that holds `a`.
    fn range_of(&self, set: usize, a: IpAddr) -> Option<&Range> {
        self.ipam.ranges[set].iter().find(|r| r.subnet.contains(a))
    }

    /// See the module.
    pub fn add(&self, owner: &Owner, wants: &[IpAddr]) -> Result<IpamResult, CniError> {
        let mut ips = Vec::new();
        for set in 0..self.ipam.ranges.len() {
            let v4 = self.ipam.ranges[set][0].subnet.addr.is_ipv4();
            let want = wants.iter().copied().find(|w| w.is_ipv4() == v4 && self.range_of(set, *w).is_some());
            match self.store(set).and_then(|s| s.allocate(&self.pool(set), owner, want).map_err(from_ipam)) {
                Ok(a) => {
                    let r = self.range_of(set, a).ok_or_else(|| invalid(format!("{a} is in no range")))?;
                    let gw = r.gateway_or_default();
                    ips.push(IpConfig {
                        address: format!("{a}/{}", r.subnet.prefix),
                        gateway: gw.map(|g| g.to_string()),
                        interface: None,
                    });
                }
                Err(e) => {
                    // A failed ADD leaves nothing behind.
                    for done in 0..set {
                        let _ = self.store(done).and_then(|s| s.release(owner).map_err(from_ipam));
                    }
                    return Err(e);
                }
            }
        }
        Ok(IpamResult {
            cni_version: self.conf.cni_version.clone(),
            ips,
            routes: self.ipam.routes.clone(),
            dns: self.ipam.dns.clone(),
        })
    }

    /// The sets whose lease directories exist (a set removed from the
    /// configuration still has its leases released and collected).
    fn sets_on_disk(&self) -> Vec<usize> {
        let mut v: Vec<usize> = std::fs::read_dir(&self.root)
            .map(|d| d.filter_map(Result::ok).filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Addresses leased to `owner`, in every set.
    pub fn leases_of(&self, owner: &Owner) -> Result<Vec<IpAddr>, CniError> {
        let mut v = Vec::new();
        for set in self.sets_on_disk() {
            v.extend(
                self.store(set)?.leases().map_err(from_ipam)?.into_iter().filter(|(_, o)| o == owner).map(|(a, _)| a),
            );
        }
        Ok(v)
    }

    /// See the module.
    pub fn del(&self, owner: &Owner) -> Result<(), CniError> {
        for set in self.sets_on_disk() {
            self.store(set)?.release(owner).map_err(from_ipam)?;
        }
        Ok(())
    }

    /// See the module.
    pub fn check(&self, owner: &Owner) -> Result<(), CniError> {
        let failed = |d: String| CniError::new(code::CHECK_FAILED, "IPAM check failed", d);
        let mut held = Vec::new();
        for set in 0..self.ipam.ranges.len() {
            let mine: Vec<IpAddr> = self
                .store(set)?
                .leases()
                .map_err(from_ipam)?
                .into_iter()
                .filter(|(_, o)| o == owner)
                .map(|(a, _)| a)
                .collect();
            if mine.is_empty() {
                return Err(failed(format!("{owner} holds no address of ipam.ranges[{set}]")));
            }
            held.extend(mine);
        }
        let prev = self.conf.prev_result.as_ref().ok_or_else(|| invalid("CHECK needs prevResult"))?;
        let ips = prev.get("ips").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        for ip in ips {
            let addr = ip.get("address").and_then(|a| a.as_str()).unwrap_or_default();
            let a: IpAddr = addr
                .split('/')
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|_| invalid(format!("prevResult address {addr:?}")))?;
            if !held.contains(&a) {
                return Err(failed(format!("{a} of prevResult is not leased to {owner}")));
            }
        }
        Ok(())
    }

    /// See the module.
    pub fn gc(&self) -> Result<(), CniError> {
        let keep = &self.conf.valid_attachments;
        for set in self.sets_on_disk() {
            self.store(set)?
                .gc(&|o| keep.iter().any(|k| k.container == o.container && k.ifname == o.ifname))
                .map_err(from_ipam)?;
        }
        Ok(())
    }

    /// See the module.
    pub fn status(&self) -> Result<(), CniError> {
        let probe = |dir: &Path| -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let p = dir.join(format!(".status-{}", std::process::id()));
            std::fs::write(&p, b"ok")?;
            std::fs::remove_file(p)
        };
        probe(&self.root).map_err(|e| {
            CniError::new(code::NOT_AVAILABLE, "lease directory unusable", format!("{}: {e}", self.root.display()))
        })
    }
}

/// Static addresses asked for in `CNI_ARGS` (`IP=a[,b]`, host-local's
/// convention).
pub fn static_requests(args: &[(String, String)]) -> Result<Vec<IpAddr>, CniError> {
    let mut wants = Vec::new();
    for (k, v) in args.iter().filter(|(k, _)| k == "IP") {
        for a in v.split(',') {
            wants.push(a.parse().map_err(|_| invalid(format!("CNI_ARGS {k}={a} is not an address")))?);
        }
    }
    Ok(wants)
}
