//! The CNI protocol as a plugin sees it (spec 1.0.0 and 1.1.0): the
//! command and its parameters from the environment, the network
//! configuration from stdin, version negotiation, results and errors as
//! the spec writes them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Spec versions this crate's plugins answer to.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];

/// The spec's well-known error codes (and ours from 100).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// The plugin is not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
    /// Not available, and existing containers may have limited
    /// connectivity (STATUS).
    pub const NOT_AVAILABLE_LIMITED: u32 = 51;
    /// No free address in the network's ranges (ours).
    pub const NO_ADDRESS: u32 = 100;
    /// An address asked for is leased to someone else (ours).
    pub const ADDRESS_TAKEN: u32 = 101;
    /// CHECK found the attachment not as its result says (ours).
    pub const CHECK_FAILED: u32 = 102;
}

/// An error as the spec has a plugin print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    /// The version of the output.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// What kind ([`code`]).
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// The details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error with `code`, message and details (version filled in when
    /// printed).
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError { cni_version: String::new(), code, msg: msg.into(), details: details.into() }
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

/// The operation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach (idempotent).
    Del,
    /// Check an attachment.
    Check,
    /// Report supported versions.
    Version,
    /// Report readiness (1.1.0).
    Status,
    /// Remove what valid attachments do not hold (1.1.0).
    Gc,
}

/// The parameters of an invocation, from `CNI_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (ADD, DEL, CHECK).
    pub container: String,
    /// `CNI_NETNS` (ADD and CHECK; optional for DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME` (ADD, DEL, CHECK).
    pub ifname: String,
    /// `CNI_ARGS`, as key-value pairs.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`.
    pub path: Vec<String>,
}

fn bad_env(msg: String) -> CniError {
    CniError::new(code::INVALID_ENVIRONMENT, "invalid environment variables", msg)
}

/// Whether `id` is a container id as the spec allows: an alphanumeric
/// first character, then alphanumerics, `_`, `.`, `-`.
pub fn valid_container_id(id: &str) -> bool {
    let mut c = id.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric()) && c.all(|x| x.is_ascii_alphanumeric() || "_.-".contains(x))
}

/// Whether `name` is an interface name Linux takes (not empty, not `.` or
/// `..`, under 16 bytes, no `/`, `:` or white space).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() < 16
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

impl Env {
    /// Reads and checks the parameters through `var` (the process's
    /// environment, or a test's).
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(other) => {
                return Err(bad_env(format!("CNI_COMMAND {other:?} is none of ADD, DEL, CHECK, VERSION, STATUS, GC")))
            }
            None => return Err(bad_env("CNI_COMMAND is not set".into())),
        };
        let attach = matches!(command, Command::Add | Command::Del | Command::Check);
        let mut env = Env {
            command,
            container: String::new(),
            netns: get("CNI_NETNS"),
            ifname: String::new(),
            args: Vec::new(),
            path: Vec::new(),
        };
        if attach {
            env.container = get("CNI_CONTAINERID").ok_or_else(|| bad_env("CNI_CONTAINERID is not set".into()))?;
            if !valid_container_id(&env.container) {
                return Err(bad_env(format!("CNI_CONTAINERID {:?} is not a valid container id", env.container)));
            }
            env.ifname = get("CNI_IFNAME").ok_or_else(|| bad_env("CNI_IFNAME is not set".into()))?;
            if !valid_ifname(&env.ifname) {
                return Err(bad_env(format!("CNI_IFNAME {:?} is not a valid interface name", env.ifname)));
            }
            if command != Command::Del && env.netns.is_none() {
                return Err(bad_env("CNI_NETNS is not set".into()));
            }
        }
        if let Some(args) = get("CNI_ARGS") {
            for kv in args.split(';').filter(|s| !s.is_empty()) {
                let (k, v) =
                    kv.split_once('=').ok_or_else(|| bad_env(format!("CNI_ARGS item {kv:?} is not KEY=VALUE")))?;
                env.args.push((k.to_string(), v.to_string()));
            }
        }
        env.path = get("CNI_PATH")
            .map(|p| p.split(':').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        if command != Command::Version && env.path.is_empty() {
            return Err(bad_env("CNI_PATH is not set".into()));
        }
        Ok(env)
    }
}

/// A network configuration (one plugin's, as a runtime passes it): the
/// fields every plugin reads; the rest stays in `rest`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NetConf {
    /// The spec version the runtime chose.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Versions the configuration allows (1.1.0).
    #[serde(rename = "cniVersions", default)]
    pub cni_versions: Vec<String>,
    /// The network's name.
    pub name: String,
    /// The plugin's name.
    #[serde(rename = "type")]
    pub plugin: String,
    /// The result of the ADD before (DEL and CHECK).
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    /// GC's attachments to keep.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Vec<Attachment>,
    /// Everything else.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// An attachment GC keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The container.
    #[serde(rename = "containerID")]
    pub container: String,
    /// Its interface.
    pub ifname: String,
}

/// Parses stdin's configuration and checks its version against ours.
pub fn parse_conf(stdin: &[u8]) -> Result<NetConf, CniError> {
    let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(code::DECODING_FAILURE, "the network configuration is not valid JSON of a network", e.to_string())
    })?;
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            format!("configuration has {}; this plugin supports {}", conf.cni_version, SUPPORTED_VERSIONS.join(", ")),
        ));
    }
    if conf.name.is_empty() {
        return Err(CniError::new(code::INVALID_CONFIG, "invalid network configuration", "\"name\" is empty"));
    }
    Ok(conf)
}

/// VERSION's answer, for a request of version `asked` (or ours).
pub fn version_reply(asked: Option<&str>) -> Value {
    let v =
        asked.filter(|a| SUPPORTED_VERSIONS.contains(a)).unwrap_or(SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1]);
    serde_json::json!({ "cniVersion": v, "supportedVersions": SUPPORTED_VERSIONS })
}

/// An address in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length (`10.1.0.5/24`).
    pub address: String,
    /// Its gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into the result's interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<u32>,
}

/// A route in a result (or an IPAM configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination (`0.0.0.0/0`).
    pub dst: String,
    /// Next hop (default: the gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// What an IPAM plugin answers to ADD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpamResult {
    /// The version of the output.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
}

/// A plugin's `main`: reads stdin and the parameters, answers VERSION,
/// hands every other command to `run`, prints its result or the spec's
/// error (in the configuration's version) and exits non-zero on error.
pub fn plugin_main(run: impl FnOnce(&Env, &[u8]) -> Result<Option<Value>, CniError>) {
    use std::io::{Read, Write};
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let asked =
        serde_json::from_slice::<Value>(&stdin).ok().and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string));
    let version = asked
        .clone()
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string());
    let out = read
        .map_err(|e| CniError::new(code::IO_FAILURE, "cannot read stdin", e.to_string()))
        .and_then(|_| Env::from_vars(&|k| std::env::var(k).ok()))
        .and_then(|env| {
            if env.command == Command::Version {
                Ok(Some(version_reply(asked.as_deref())))
            } else {
                run(&env, &stdin)
            }
        });
    let mut o = std::io::stdout().lock();
    match out {
        Ok(Some(v)) => {
            let _ = writeln!(o, "{v}");
        }
        Ok(None) => {}
        Err(mut e) => {
            e.cni_version = version;
            let _ = writeln!(o, "{}", serde_json::to_string(&e).unwrap_or_default());
            drop(o);
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let m: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        Env::from_vars(&|k| m.get(k).cloned())
    }

    #[test]
    fn parameters_are_read_and_checked() {
        let base = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc_1.x-y"),
            ("CNI_NETNS", "/run/netns/a"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ];
        let e = env(&base).unwrap();
        assert_eq!((e.command, e.container.as_str(), e.ifname.as_str()), (Command::Add, "abc_1.x-y", "eth0"));
        assert_eq!(e.path, vec!["/opt/cni/bin", "/usr/lib/cni"]);
        let with = |k: &str, v: &str| {
            let mut p: Vec<(&str, &str)> = base.iter().copied().filter(|(x, _)| *x != k).collect();
            if !v.is_empty() {
                p.push((k, v));
            }
            env(&p).map_err(|e| (e.code, e.details))
        };
        for (k, v, why) in [
            ("CNI_COMMAND", "", "CNI_COMMAND is not set"),
            ("CNI_COMMAND", "PUT", "\"PUT\" is none of"),
            ("CNI_CONTAINERID", "-x", "not a valid container id"),
            ("CNI_CONTAINERID", "", "CNI_CONTAINERID is not set"),
            ("CNI_IFNAME", "a/b", "not a valid interface name"),
            ("CNI_IFNAME", "sixteen-chars-xx", "not a valid interface name"),
            ("CNI_NETNS", "", "CNI_NETNS is not set"),
            ("CNI_PATH", "", "CNI_PATH is not set"),
            ("CNI_ARGS", "A=1;B", "\"B\" is not KEY=VALUE"),
        ] {
            let (c, d) = with(k, v).unwrap_err();
            assert_eq!(c, code::INVALID_ENVIRONMENT);
            assert!(d.contains(why), "{k}={v}: {d}");
        }
        // DEL without a namespace is fine; VERSION needs nothing else.
        assert!(with("CNI_NETNS", "").is_err());
        assert!(env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/x")])
            .is_ok());
        assert_eq!(env(&[("CNI_COMMAND", "VERSION")]).unwrap().command, Command::Version);
        assert_eq!(with("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p").unwrap().args.len(), 2);
    }

    #[test]
    fn versions_are_negotiated() {
        let c = parse_conf(
            br#"{"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"], "name": "n", "type": "t", "ipam": {}}"#,
        )
        .unwrap();
        assert_eq!(c.cni_versions.len(), 2);
        assert!(c.rest.contains_key("ipam"));
        let e = parse_conf(br#"{"cniVersion": "0.3.1", "name": "n", "type": "t"}"#).unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        assert_eq!(parse_conf(b"{nope").unwrap_err().code, code::DECODING_FAILURE);
        assert_eq!(
            parse_conf(br#"{"cniVersion": "1.1.0", "name": "", "type": "t"}"#).unwrap_err().code,
            code::INVALID_CONFIG
        );
        assert_eq!(version_reply(Some("1.0.0"))["cniVersion"], "1.0.0");
        assert_eq!(version_reply(Some("0.4.0"))["cniVersion"], "1.1.0");
    }
}
