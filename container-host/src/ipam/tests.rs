//! Leases on a real file system (a fresh directory per test).

use super::*;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("ipam-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    Dir(d)
}

fn pool(json: &str) -> Pool {
    serde_json::from_str(json).unwrap()
}

fn owner(c: &str) -> Owner {
    Owner { container: c.into(), ifname: "eth0".into() }
}

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn hands_out_hosts_in_order_skipping_gateway_and_reserved_until_exhausted() {
    let d = dir("order");
    let s = Store::open(&d.0, "net1").unwrap();
    let p = pool(r#"{"ranges": [{"subnet": "10.1.0.0/29"}], "reserved": ["10.1.0.3"]}"#);
    let got: Vec<IpAddr> = (0..4).map(|k| s.allocate(&p, &owner(&format!("c{k}")), None).unwrap()).collect();
    // .0 network, .1 gateway, .3 reserved, .7 broadcast.
    assert_eq!(got, vec![a("10.1.0.2"), a("10.1.0.4"), a("10.1.0.5"), a("10.1.0.6")]);
    assert!(matches!(s.allocate(&p, &owner("c9"), None), Err(IpamError::Exhausted(n)) if n == "net1"));
    assert_eq!(s.leases().unwrap().len(), 4);
}

#[test]
fn an_add_repeated_gets_the_same_address_and_a_del_repeated_succeeds() {
    let d = dir("idem");
    let s = Store::open(&d.0, "n").unwrap();
    let p = pool(r#"{"ranges": [{"subnet": "10.2.0.0/24"}]}"#);
    let first = s.allocate(&p, &owner("c1"), None).unwrap();
    assert_eq!(s.allocate(&p, &owner("c1"), None).unwrap(), first);
    let other = Owner { container: "c1".into(), ifname: "net1".into() };
    assert_ne!(s.allocate(&p, &other, None).unwrap(), first);
    assert_eq!(s.release(&owner("c1")).unwrap(), vec![first]);
    assert_eq!(s.release(&owner("c1")).unwrap(), Vec::<IpAddr>::new());
    assert_eq!(s.leases().unwrap().len(), 1);
}

#[test]
fn a_freed_address_is_handed_out_again_only_after_the_rest() {
    let d = dir("cursor");
    let s = Store::open(&d.0, "n").unwrap();
    let p = pool(r#"{"ranges": [{"subnet": "10.3.0.0/29", "gateway": "10.3.0.6"}]}"#);
    let x = s.allocate(&p, &owner("a"), None).unwrap();
    assert_eq!(x, a("10.3.0.1"));
    s.release(&owner("a")).unwrap();
    // Round robin from the last handed out: .2 .3 .4 .5, then .1 again.
    let next: Vec<IpAddr> =
        ["b", "c", "d", "e", "f"].iter().map(|c| s.allocate(&p, &owner(c), None).unwrap()).collect();
    assert_eq!(next, ["10.3.0.2", "10.3.0.3", "10.3.0.4", "10.3.0.5", "10.3.0.1"].map(a).to_vec());
}

#[test]
fn static_addresses_are_checked() {
    let d = dir("static");
    let s = Store::open(&d.0, "n").unwrap();
    let p = pool(r#"{"ranges": [{"subnet": "10.4.0.0/24", "rangeStart": "10.4.0.10", "rangeEnd": "10.4.0.20"}]}"#);
    assert_eq!(s.allocate(&p, &owner("a"), Some(a("10.4.0.15"))).unwrap(), a("10.4.0.15"));
    assert_eq!(s.allocate(&p, &owner("a"), Some(a("10.4.0.15"))).unwrap(), a("10.4.0.15"));
    let e = s.allocate(&p, &owner("b"), Some(a("10.4.0.15"))).unwrap_err();
    assert_eq!(e.to_string(), "10.4.0.15 is already leased to a/eth0");
    for out in ["10.4.0.9", "10.4.0.21", "10.4.0.1", "10.5.0.15"] {
        assert!(matches!(s.allocate(&p, &owner("c"), Some(a(out))), Err(IpamError::OutOfRange(_))), "{out}");
    }
    // Dynamic allocation goes around the static lease.
    assert_eq!(s.allocate(&p, &owner("d"), None).unwrap(), a("10.4.0.10"));
}

#[test]
fn ipv6_ranges_work_alike() {
    let d = dir("v6");
    let s = Store::open(&d.0, "n").unwrap();
    let p = pool(r#"{"ranges": [{"subnet": "fd00:10::/120"}]}"#);
    assert_eq!(s.allocate(&p, &owner("a"), None).unwrap(), a("fd00:10::2"));
    assert_eq!(s.allocate(&p, &owner("b"), None).unwrap(), a("fd00:10::3"));
    assert_eq!(s.leases().unwrap()[0], (a("fd00:10::2"), owner("a")));
}

#[test]
fn bad_pools_are_refused_with_why() {
    let cases = [
        (r#"{"ranges": []}"#, "no ranges"),
        (
            r#"{"ranges": [{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}]}"#,
            "rangeStart 10.0.1.1 is outside 10.0.0.0/24",
        ),
        (
            r#"{"ranges": [{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.50", "rangeEnd": "10.0.0.40"}]}"#,
            "range 10.0.0.50-10.0.0.40",
        ),
        (r#"{"ranges": [{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.128/25"}]}"#, "overlap"),
    ];
    for (json, why) in cases {
        let e = pool(json).check().unwrap_err().to_string();
        assert!(e.contains(why), "{json}: {e}");
    }
    for (json, why) in [
        (r#"{"ranges": [{"subnet": "10.0.0.1/24"}]}"#, "has host bits set (the subnet is 10.0.0.0)"),
        (r#"{"ranges": [{"subnet": "10.0.0.0/33"}]}"#, "prefix /33 is longer than 32 bits"),
        (r#"{"ranges": [{"subnet": "10.0.0.0/24", "gw": "10.0.0.1"}]}"#, "unknown field `gw`"),
    ] {
        let e = serde_json::from_str::<Pool>(json).unwrap_err().to_string();
        assert!(e.contains(why), "{json}: {e}");
    }
    let d = dir("badname");
    assert!(matches!(Store::open(&d.0, "../x"), Err(IpamError::Config(_))));
}

#[test]
fn gc_frees_leases_of_detached_owners_and_dead_processes_temporaries() {
    let d = dir("gc");
    let s = Store::open(&d.0, "n").unwrap();
    let p = pool(r#"{"ranges": [{"subnet": "10.6.0.0/24"}]}"#);
    for c in ["keep", "gone1", "gone2"] {
        s.allocate(&p, &owner(c), None).unwrap();
    }
    // What a process killed between its temporary and its link leaves.
    let stale = d.0.join("n").join(format!("{TMP}{}-1", u32::MAX));
    fs::write(&stale, "x\ny\n").unwrap();
    let freed = s.gc(&|o| o.container == "keep").unwrap();
    assert_eq!(freed, vec![a("10.6.0.3"), a("10.6.0.4")]);
    assert_eq!(s.leases().unwrap(), vec![(a("10.6.0.2"), owner("keep"))]);
    assert!(!stale.exists());
}
