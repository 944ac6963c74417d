//! Veth attachments in real network namespaces, read back with `ip`.

use container_host::netlink::{attach_veth, check_veth, remove_link, NetError, RouteSpec, VethSpec};
use std::path::PathBuf;
use std::process::Command;

fn sh(cmd: &str) -> (bool, String) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let n = format!("nl{tag}{}", std::process::id() % 100_000);
        sh(&format!("ip netns del {n} 2>/dev/null"));
        assert!(sh(&format!("ip netns add {n}")).0);
        Ns(n)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        sh(&format!("ip netns del {}", self.0));
    }
}

fn spec(host: &str) -> VethSpec {
    VethSpec {
        host: host.into(),
        ifname: "eth0".into(),
        mtu: 1400,
        mac: Some([0x02, 0x00, 0x0a, 0xd6, 0x00, 0x05]),
        addrs: vec![("10.214.0.5".parse().unwrap(), 24), ("fd00:214::5".parse().unwrap(), 64)],
        routes: vec![RouteSpec { dst: ("0.0.0.0".parse().unwrap(), 0), gw: Some("10.214.0.1".parse().unwrap()) }],
        finish_checksums: true,
    }
}

#[test]
fn a_veth_is_set_up_inside_the_namespace_and_removed_again() {
    let ns = Ns::new("a");
    let host = format!("vh{}", std::process::id() % 100_000);
    let s = spec(&host);
    let got = attach_veth(&ns.path(), &s).unwrap();
    assert_eq!(got.mac, [0x02, 0x00, 0x0a, 0xd6, 0x00, 0x05]);
    let (_, link) = sh(&format!("ip -n {} -o link show eth0", ns.0));
    assert!(link.contains("mtu 1400") && link.contains("02:00:0a:d6:00:05") && link.contains("UP"), "{link}");
    let (_, addr) = sh(&format!("ip -n {} -o addr show dev eth0", ns.0));
    assert!(addr.contains("10.214.0.5/24") && addr.contains("fd00:214::5/64"), "{addr}");
    let (_, route) = sh(&format!("ip -n {} route show default", ns.0));
    assert!(route.contains("default via 10.214.0.1 dev eth0"), "{route}");
    let (_, k) = sh(&format!("ip netns exec {} ethtool -k eth0", ns.0));
    assert!(k.contains("tx-checksum-ip-generic: off"), "transmit checksums finished in the container: {k}");
    let (_, lo) = sh(&format!("ip -n {} -o link show lo", ns.0));
    assert!(lo.contains("UP"), "{lo}");
    let (_, h) = sh(&format!("ip -o link show {host}"));
    assert!(h.contains("mtu 1400") && h.contains("state UP") || h.contains(",UP"), "{h}");
    // The pair carries traffic: the host end as the gateway.
    assert!(sh(&format!("ip addr add 10.214.0.1/24 dev {host}")).0);
    let (ok, ping) = sh(&format!("ip netns exec {} ping -c 2 -W 2 -i 0.2 10.214.0.1", ns.0));
    assert!(ok, "{ping}");
    check_veth(&ns.path(), &s).unwrap();

    // A second attachment of the same name is refused, the first untouched.
    assert!(matches!(attach_veth(&ns.path(), &s), Err(NetError::Exists(n)) if n == host));
    let mut other = s.clone();
    other.mtu = 1500;
    assert!(check_veth(&ns.path(), &other).unwrap_err().to_string().contains("MTU Some(1400), not 1500"));

    assert!(remove_link(&host).unwrap());
    assert!(!remove_link(&host).unwrap(), "a DEL repeated finds nothing and succeeds");
    assert!(!sh(&format!("ip -n {} link show eth0", ns.0)).0, "the container end went with it");
    assert!(check_veth(&ns.path(), &s).unwrap_err().to_string().contains("is missing"));
}

#[test]
fn a_failed_attachment_leaves_nothing_behind() {
    let ns = Ns::new("b");
    let host = format!("vf{}", std::process::id() % 100_000);
    // A route through a gateway off every subnet of the interface fails
    // inside the namespace, after the pair was made and moved.
    let mut s = spec(&host);
    s.routes = vec![RouteSpec { dst: ("0.0.0.0".parse().unwrap(), 0), gw: Some("192.0.2.1".parse().unwrap()) }];
    let e = attach_veth(&ns.path(), &s).unwrap_err();
    assert!(e.to_string().contains("add route 0.0.0.0/0"), "{e}");
    assert!(!sh(&format!("ip link show {host}")).0, "host end removed");
    assert!(!sh(&format!("ip -n {} link show eth0", ns.0)).0, "container end removed");
    // A namespace that does not exist: refused before anything is made.
    let e = attach_veth(&PathBuf::from("/run/netns/no-such-ns-here"), &spec(&host)).unwrap_err();
    assert!(matches!(e, NetError::Netns(..)), "{e}");
    assert!(!sh(&format!("ip link show {host}")).0);
}
