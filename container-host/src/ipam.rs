//! Address management for container networks: ranges of a subnet, static
//! requests, the gateway and reserved addresses kept out, and leases kept
//! on disk so that an address is never handed out twice, whatever kills
//! the process and when.
//!
//! A lease is a file named by its address in the network's directory,
//! holding its owner (container id and interface). It is written whole to
//! a temporary file, flushed to disk, then published by `link(2)`, which
//! fails if the name exists: the file system itself decides who gets an
//! address, so two processes (or a process and its killed predecessor)
//! cannot both get it, and a lease is either absent or complete. The
//! directory is flushed before an allocation returns: a lease is durable
//! before the caller answers. A lock file (`flock`, released by the kernel
//! when its holder dies) keeps allocations in one order, so concurrent ones
//! do not all race for the same next address; correctness does not depend
//! on it. A process killed after publishing but before answering leaves a
//! lease nobody was told about: [`Store::gc`] (CNI GC, the service's start)
//! removes leases whose owners are not attached, and temporary files of
//! dead processes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Why an address could not be had.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The settings are wrong (CNI code 7).
    #[error("invalid IPAM configuration: {0}")]
    Config(String),
    /// Every address of the ranges is leased.
    #[error("no free address in {0}")]
    Exhausted(String),
    /// The address asked for is leased to another owner.
    #[error("{0} is already leased to {1}")]
    Taken(IpAddr, String),
    /// The address asked for lies outside every range.
    #[error("{0} is not in any range of the network")]
    OutOfRange(IpAddr),
    /// The lease store failed.
    #[error("lease store {0}: {1}")]
    Io(String, io::Error),
}

/// A subnet: address and prefix length (`10.1.0.0/24`, `fd00::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Its network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    fn bits(&self) -> u32 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The first and last addresses, as numbers.
    fn span(&self) -> (u128, u128) {
        let host = self.bits() - u32::from(self.prefix);
        let mask = if host == 128 { u128::MAX } else { (1u128 << host) - 1 };
        let first = num(self.addr) & !mask;
        (first, first | mask)
    }

    /// Whether `ip` is in it.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b) = self.span();
        ip.is_ipv4() == self.addr.is_ipv4() && (a..=b).contains(&num(ip))
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{a:?} is not an IP address"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("{p:?} is not a prefix length"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if u32::from(prefix) > bits {
            return Err(format!("prefix /{prefix} is longer than {bits} bits"));
        }
        let c = Cidr { addr, prefix };
        if num(addr) != c.span().0 {
            return Err(format!("{s} has host bits set (the subnet is {})", ip(c.span().0, addr.is_ipv4())));
        }
        Ok(c)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn num(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn ip(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(0)))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// One range of a subnet, as CNI's host-local writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Range {
    /// The subnet.
    pub subnet: Cidr,
    /// First address handed out (default: the subnet's first host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_start: Option<IpAddr>,
    /// Last address handed out (default: the last host; for IPv4 the one
    /// below broadcast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<IpAddr>,
    /// The gateway (default: the subnet's first host), never handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

impl Range {
    /// Its gateway, given or by default (None if the range is invalid).
    pub fn gateway_or_default(&self) -> Option<IpAddr> {
        self.bounds().ok().map(|(_, _, gw)| gw)
    }

    /// First and last addresses handed out, and the gateway; checked.
    fn bounds(&self) -> Result<(u128, u128, IpAddr), String> {
        let c = self.subnet;
        let v4 = c.addr.is_ipv4();
        let (net, last) = c.span();
        // Hosts: IPv4 without network and broadcast addresses (but /31 and
        // /32, which have none), IPv6 without the subnet-router anycast
        // address (but /127 and /128).
        let (lo, hi) = match (v4, c.prefix) {
            (true, p) if p < 31 => (net + 1, last - 1),
            (false, p) if p < 127 => (net + 1, last),
            _ => (net, last),
        };
        let gw = self.gateway.unwrap_or_else(|| ip(lo, v4));
        let start = self.range_start.map_or(lo, num);
        let end = self.range_end.map_or(hi, num);
        for (what, a) in [("rangeStart", self.range_start), ("rangeEnd", self.range_end), ("gateway", self.gateway)] {
            if let Some(a) = a {
                if !c.contains(a) {
                    return Err(format!("{what} {a} is outside {c}"));
                }
            }
        }
        if start < lo || end > hi || start > end {
            return Err(format!("range {}-{} is not within {c}'s hosts", ip(start, v4), ip(end, v4)));
        }
        Ok((start, end, gw))
    }
}

/// A network's address pool.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pool {
    /// Ranges, tried in order.
    pub ranges: Vec<Range>,
    /// Addresses never handed out (besides each range's gateway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<IpAddr>,
}

impl Pool {
    /// Checks the ranges: each within its subnet, not overlapping.
    pub fn check(&self) -> Result<(), IpamError> {
        if self.ranges.is_empty() {
            return Err(IpamError::Config("no ranges".into()));
        }
        let mut spans = Vec::new();
        for r in &self.ranges {
            let (a, b, _) = r.bounds().map_err(IpamError::Config)?;
            let v4 = r.subnet.addr.is_ipv4();
            if let Some((_, _, other)) = spans
                .iter()
                .find(|(x, y, o): &&(u128, u128, &Range)| o.subnet.addr.is_ipv4() == v4 && a <= *y && *x <= b)
            {
                return Err(IpamError::Config(format!("ranges in {} and {} overlap", r.subnet, other.subnet)));
            }
            spans.push((a, b, r));
        }
        Ok(())
    }
}

/// Who holds a lease: a container's interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The runtime's container id.
    pub container: String,
    /// The interface in the container (CNI_IFNAME).
    pub ifname: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container, self.ifname)
    }
}

impl Owner {
    fn encode(&self) -> String {
        format!("{}\n{}\n", self.container, self.ifname)
    }

    fn decode(s: &str) -> Option<Owner> {
        let mut l = s.lines();
        let (container, ifname) = (l.next()?, l.next()?);
        Some(Owner { container: container.into(), ifname: ifname.into() })
    }

    /// Whether it can be written into a lease (no line breaks, not empty).
    fn valid(&self) -> bool {
        let ok = |s: &str| !s.is_empty() && !s.contains(['\n', '\r', '\0']);
        ok(&self.container) && ok(&self.ifname)
    }
}

/// One network's leases on disk.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    name: String,
}

const TMP: &str = ".tmp-";

impl Store {
    /// The store of network `network` under `root` (created if new);
    /// temporary files left by dead processes are removed.
    pub fn open(root: &Path, network: &str) -> Result<Store, IpamError> {
        let bad = network.is_empty() || network.starts_with('.') || network.contains(['/', '\0']);
        if bad {
            return Err(IpamError::Config(format!("network name {network:?} cannot name a directory")));
        }
        let dir = root.join(network);
        let s = Store { dir, name: network.to_string() };
        fs::create_dir_all(&s.dir).map_err(|e| s.err(e))?;
        s.sweep_temporaries()?;
        Ok(s)
    }

    fn err(&self, e: io::Error) -> IpamError {
        IpamError::Io(self.dir.display().to_string(), e)
    }

    fn sweep_temporaries(&self) -> Result<(), IpamError> {
        for e in fs::read_dir(&self.dir).map_err(|e| self.err(e))? {
            let name = e.map_err(|e| self.err(e))?.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(TMP).and_then(|r| r.split('-').next()) else { continue };
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_file(self.dir.join(&name));
            }
        }
        Ok(())
    }

    /// Every lease: address and owner, by address.
    pub fn leases(&self) -> Result<Vec<(IpAddr, Owner)>, IpamError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(|e| self.err(e))? {
            let e = e.map_err(|e| self.err(e))?;
            let Ok(a) = e.file_name().to_string_lossy().parse::<IpAddr>() else { continue };
            match fs::read_to_string(e.path()) {
                Ok(s) => out.extend(Owner::decode(&s).map(|o| (a, o))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        out.sort_by_key(|(a, _)| (a.is_ipv6(), num(*a)));
        Ok(out)
    }

    fn lock(&self) -> Result<File, IpamError> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))
            .map_err(|e| self.err(e))?;
        f.lock().map_err(|e| self.err(e))?;
        Ok(f)
    }

    fn sync_dir(&self) -> Result<(), IpamError> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| self.err(e))
    }

    /// Leases an address of `pool` to `owner`: `want` if given (it must be
    /// in a range and free, or already `owner`'s), else the next free one
    /// after the last handed out in the first range that has one. An owner
    /// that holds an address of the pool's family already gets that one
    /// again (an ADD repeated is answered alike). Durable on return.
    pub fn allocate(&self, pool: &Pool, owner: &Owner, want: Option<IpAddr>) -> Result<IpAddr, IpamError> {
        pool.check()?;
        if !owner.valid() {
            return Err(IpamError::Config(format!("owner {owner:?} cannot be recorded")));
        }
        let _lock = self.lock()?;
        let held = self.leases()?;
        let v4 = want.map_or(pool.ranges[0].subnet.addr.is_ipv4(), |w| w.is_ipv4());
        if let Some((a, _)) = held.iter().find(|(a, o)| o == owner && a.is_ipv4() == v4 && want.is_none_or(|w| w == *a))
        {
            return Ok(*a);
        }
        let tmp = self.write_temporary(owner)?;
        let got = self.claim(pool, want, &held, &tmp, v4);
        let _ = fs::remove_file(&tmp);
        let a = got?;
        self.sync_dir()?;
        Ok(a)
    }

    fn write_temporary(&self, owner: &Owner) -> Result<PathBuf, IpamError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tmp = self.dir.join(format!("{TMP}{}-{nanos}", std::process::id()));
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| self.err(e))?;
        f.write_all(owner.encode().as_bytes()).and_then(|()| f.sync_all()).map_err(|e| self.err(e))?;
        Ok(tmp)
    }

    /// Publishes `tmp` as the lease of `a`; false if `a` is leased.
    fn publish(&self, tmp: &Path, a: IpAddr) -> Result<bool, IpamError> {
        match fs::hard_link(tmp, self.dir.join(a.to_string())) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    fn claim(
        &self,
        pool: &Pool,
        want: Option<IpAddr>,
        held: &[(IpAddr, Owner)],
        tmp: &Path,
        v4: bool,
    ) -> Result<IpAddr, IpamError> {
        if let Some(w) = want {
            let ok = pool.ranges.iter().any(|r| {
                r.bounds().is_ok_and(|(a, b, gw)| r.subnet.contains(w) && (a..=b).contains(&num(w)) && gw != w)
            });
            if !ok || pool.reserved.contains(&w) {
                return Err(IpamError::OutOfRange(w));
            }
            if self.publish(tmp, w)? {
                return Ok(w);
            }
            let by = self.owner_of(w).map_or_else(|| "another owner".into(), |o| o.to_string());
            return Err(IpamError::Taken(w, by));
        }
        let taken: std::collections::HashSet<u128> =
            held.iter().filter(|(a, _)| a.is_ipv4() == v4).map(|(a, _)| num(*a)).collect();
        for (k, r) in pool.ranges.iter().enumerate().filter(|(_, r)| r.subnet.addr.is_ipv4() == v4) {
            let (start, end, gw) = r.bounds().map_err(IpamError::Config)?;
            let cursor = self.cursor(k).filter(|c| (start..=end).contains(c));
            let first = cursor.map_or(start, |c| if c == end { start } else { c + 1 });
            // From the one after the last handed out, round to it.
            let order = (first..=end).chain(start..first);
            for n in order {
                let a = ip(n, v4);
                if taken.contains(&n) || a == gw || pool.reserved.contains(&a) {
                    continue;
                }
                if self.publish(tmp, a)? {
                    self.set_cursor(k, n);
                    return Ok(a);
                }
            }
        }
        Err(IpamError::Exhausted(self.name.clone()))
    }

    fn owner_of(&self, a: IpAddr) -> Option<Owner> {
        fs::read_to_string(self.dir.join(a.to_string())).ok().and_then(|s| Owner::decode(&s))
    }

    fn cursor(&self, range: usize) -> Option<u128> {
        let s = fs::read_to_string(self.dir.join(format!(".last-{range}"))).ok()?;
        s.trim().parse::<IpAddr>().ok().map(num)
    }

    /// Where the next allocation in `range` starts looking (a hint: not
    /// flushed, and a lost one only changes where the search begins).
    fn set_cursor(&self, range: usize, n: u128) {
        let v4 = n <= u128::from(u32::MAX);
        let path = self.dir.join(format!(".last-{range}"));
        let tmp = self.dir.join(format!(".last-{range}.{}", std::process::id()));
        if fs::write(&tmp, ip(n, v4).to_string()).is_ok() {
            let _ = fs::rename(&tmp, path);
        }
    }

    /// Releases every lease of `owner`; returns their addresses (none is
    /// not an error: a DEL repeated succeeds).
    pub fn release(&self, owner: &Owner) -> Result<Vec<IpAddr>, IpamError> {
        let _lock = self.lock()?;
        let gone: Vec<IpAddr> = self.leases()?.into_iter().filter(|(_, o)| o == owner).map(|(a, _)| a).collect();
        for a in &gone {
            match fs::remove_file(self.dir.join(a.to_string())) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        if !gone.is_empty() {
            self.sync_dir()?;
        }
        Ok(gone)
    }

    /// Removes the leases whose owners `attached` says are gone, and dead
    /// processes' temporary files; returns the addresses freed.
    pub fn gc(&self, attached: &dyn Fn(&Owner) -> bool) -> Result<Vec<IpAddr>, IpamError> {
        let _lock = self.lock()?;
        self.sweep_temporaries()?;
        let mut freed = Vec::new();
        for (a, o) in self.leases()? {
            if !attached(&o) {
                fs::remove_file(self.dir.join(a.to_string())).map_err(|e| self.err(e))?;
                freed.push(a);
            }
        }
        if !freed.is_empty() {
            self.sync_dir()?;
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests;
