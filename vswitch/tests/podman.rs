//! podman (Debian's, with runc and its CNI network backend) running two
//! containers on a network whose plugin is `vswitch-cni`: they ping and
//! move 4 MB by TCP through vswitchd; `podman rm` detaches them (ports,
//! interfaces and addresses gone); `podman network ls/inspect` see the
//! network. The image is busybox (Debian's static build) imported from a
//! tarball: nothing is pulled.

mod common;

use common::Lab;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Podman {
    dir: PathBuf,
    names: Vec<String>,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "vfs"]);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.run(&["rm", "-f", "-t", "0", n]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn podman_containers_on_a_vswitch_cni_network_talk_through_vswitchd() {
    for tool in ["podman", "runc", "busybox"] {
        assert!(
            Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap().status.success(),
            "{tool} missing: ci/setup installs it"
        );
    }
    let mut lab = Lab::new("pdm", 0, None);
    lab.write_config("[[bridge]]\nname = \"br0\"\n");
    lab.start();
    let tag = std::process::id() % 100_000;
    let dir = std::env::temp_dir().join(format!("podman-cni-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("net.d")).unwrap();
    let plugins = std::env::current_exe().unwrap().parent().and_then(Path::parent).unwrap().to_path_buf();
    assert!(plugins.join("vswitch-cni").exists(), "vswitch-cni missing in {}", plugins.display());
    let net = format!("vsnet{tag}");
    let names: Vec<String> = (1..=2).map(|i| format!("vsc{tag}n{i}")).collect();
    let pm = Podman { dir: dir.clone(), names: names.clone() };
    std::fs::write(
        dir.join("containers.conf"),
        format!(
            // (podman's default limits are above what this sandbox may
            // raise to.)
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\n[network]\nnetwork_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{p}\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"{d}\"\n",
            p = plugins.display(),
            d = dir.join("net.d").display()
        ),
    )
    .unwrap();
    let conflist = json!({"cniVersion": "1.0.0", "name": net, "plugins": [{
        "type": "vswitch-cni", "bridge": "br0", "socket": lab.sock(), "mtu": 1500, "portType": "afpacket",
        "ipam": {"type": "vswitch-ipam", "ranges": [[{"subnet": "10.217.0.0/24"}]], "dataDir": dir.join("ipam")}}]});
    std::fs::write(dir.join("net.d").join(format!("{net}.conflist")), conflist.to_string()).unwrap();

    // An image of busybox alone, imported.
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for tool in ["sh", "ping", "nc", "sleep", "dd", "wc", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let tar = dir.join("bb.tar");
    assert!(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    let image = format!("localhost/vswitch-bb:{tag}");
    pm.ok(&["import", tar.to_str().unwrap(), &image]);

    let listed = pm.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(listed.lines().any(|l| l == format!("{net} vswitch-cni")), "{listed}");
    let inspect: Value = serde_json::from_str(&pm.ok(&["network", "inspect", &net])).unwrap();
    assert_eq!(inspect[0]["name"], net.as_str(), "{inspect}");

    for n in &names {
        pm.ok(&["run", "-d", "--name", n, "--network", &net, &image, "sleep", "600"]);
    }
    let ip = |n: &str| {
        pm.ok(&["inspect", n, "--format", &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}")])
    };
    let (ip1, ip2) = (ip(&names[0]), ip(&names[1]));
    assert!(ip1.starts_with("10.217.0.") && ip2.starts_with("10.217.0.") && ip1 != ip2, "{ip1} {ip2}");
    assert_eq!(lab.port_names(0).len(), 2, "both on the bridge");
    pm.ok(&["exec", &names[0], "ping", "-c", "3", "-W", "2", &ip2]);
    // 4 MB by TCP (the listener's stdin held open so that it does not
    // close its side first).
    pm.ok(&["exec", "-d", &names[1], "sh", "-c", "sleep 20 | nc -l -p 5000 > /tmp/got"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    pm.ok(&[
        "exec",
        &names[0],
        "sh",
        "-c",
        &format!("dd if=/dev/zero bs=1k count=4096 2>/dev/null | nc -w 3 {ip2} 5000"),
    ]);
    let mut got = String::new();
    for _ in 0..20 {
        got = pm.ok(&["exec", &names[1], "wc", "-c", "/tmp/got"]);
        if got.starts_with("4194304") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(got.starts_with("4194304 "), "received {got}");

    for n in &names {
        pm.ok(&["rm", "-f", "-t", "0", n]);
    }
    assert!(lab.port_names(0).is_empty(), "podman rm detached both: {:?}", lab.port_names(0));
    let leases: Vec<_> = std::fs::read_dir(dir.join(format!("ipam/{net}/0")))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leases.is_empty(), "addresses freed: {leases:?}");
    let _ = pm.run(&["rmi", &image]);
}
