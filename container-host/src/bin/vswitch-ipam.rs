//! `vswitch-ipam`: a CNI IPAM plugin (spec 1.0.0 and 1.1.0) over the
//! crash-safe lease store, configured as CNI's `host-local` is, so that a
//! network moves over by changing its `ipam.type` (see
//! `container_host::ipam_plugin`). A static address comes from `CNI_ARGS`
//! `IP=` (host-local's convention).

use container_host::cni::{self, code, CniError, Command, Env};
use container_host::ipam::Owner;
use container_host::ipam_plugin::{static_requests, Plugin};

fn run(env: &Env, stdin: &[u8]) -> Result<Option<serde_json::Value>, CniError> {
    let p = Plugin::new(cni::parse_conf(stdin)?)?;
    let owner = Owner { container: env.container.clone(), ifname: env.ifname.clone() };
    match env.command {
        Command::Add => {
            let wants = static_requests(&env.args)?;
            let r = p.add(&owner, &wants)?;
            Ok(Some(serde_json::to_value(r).map_err(|e| CniError::new(code::IO_FAILURE, "result", e.to_string()))?))
        }
        Command::Del => p.del(&owner).map(|()| None),
        Command::Check => p.check(&owner).map(|()| None),
        Command::Gc => p.gc().map(|()| None),
        Command::Status => p.status().map(|()| None),
        Command::Version => Ok(None),
    }
}

fn main() {
    cni::plugin_main(run);
}
