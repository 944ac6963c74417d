//! IPAM under concurrency and SIGKILL: 1,000 ADDs from 16 processes that
//! are killed at random points and restarted (as a runtime retries an ADD
//! that got no answer, or gives it up), then: no address answered twice,
//! every answered lease still there, and after GC nothing else.

use container_host::ipam::{Owner, Pool, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WORKERS: usize = 16;
const ADDS: usize = 1000;
const POOL: &str = r#"{"ranges": [{"subnet": "10.77.0.0/20"}], "reserved": ["10.77.0.9"]}"#;

fn owners_of(worker: usize) -> impl Iterator<Item = String> {
    (worker..ADDS).step_by(WORKERS).map(|k| format!("ctr-{k:04}"))
}

fn journal(root: &Path, worker: usize) -> PathBuf {
    root.join(format!("journal-{worker}"))
}

/// A worker process: ADDs its owners in order, writing `start` before and
/// `done ADDRESS` after each (the runtime having its answer); a restarted
/// one retries what it started and has no answer for, or gives it up
/// (`abandon`) every other time, leaving a lease for GC.
#[test]
fn ipam_worker() {
    let (Ok(root), Ok(worker)) = (std::env::var("IPAM_ROOT"), std::env::var("IPAM_WORKER")) else { return };
    let (root, worker) = (PathBuf::from(root), worker.parse::<usize>().unwrap());
    let pool: Pool = serde_json::from_str(POOL).unwrap();
    let store = Store::open(&root.join("leases"), "net").unwrap();
    let path = journal(&root, worker);
    let seen = std::fs::read_to_string(&path).unwrap_or_default();
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    let mut line = |s: String| log.write_all(s.as_bytes()).unwrap();
    let restarts = seen.lines().filter(|l| *l == "restart").count();
    line("restart\n".into());
    for c in owners_of(worker) {
        let finished = |w: &str| seen.lines().any(|l| l.starts_with(&format!("{w} {c}")));
        if finished("done") || finished("abandon") {
            continue;
        }
        if finished("start") && restarts % 2 == 1 {
            line(format!("abandon {c}\n"));
            continue;
        }
        line(format!("start {c}\n"));
        let a = store.allocate(&pool, &Owner { container: c.clone(), ifname: "eth0".into() }, None).unwrap();
        line(format!("done {c} {a}\n"));
    }
}

fn spawn(root: &Path, worker: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "ipam_worker", "--nocapture", "--test-threads", "1"])
        .env("IPAM_ROOT", root)
        .env("IPAM_WORKER", worker.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn no_address_twice_and_no_leak_after_gc_with_workers_killed_at_random() {
    let root = std::env::temp_dir().join(format!("ipam-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let t0 = Instant::now();
    let mut kids: Vec<Option<Child>> = (0..WORKERS).map(|w| Some(spawn(&root, w))).collect();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(std::process::id());
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut kills, mut spawns) = (0, WORKERS);
    while kids.iter().any(Option::is_some) {
        assert!(t0.elapsed() < Duration::from_secs(240), "workers did not finish");
        std::thread::sleep(Duration::from_millis(5 + next() % 30));
        // Kill one at random (200 kills at most, so that the run ends).
        let w = usize::try_from(next() % WORKERS as u64).unwrap();
        if kills < 200 {
            if let Some(k) = kids[w].as_mut() {
                if k.try_wait().unwrap().is_none() {
                    k.kill().unwrap();
                    k.wait().unwrap();
                    kills += 1;
                    kids[w] = Some(spawn(&root, w));
                    spawns += 1;
                }
            }
        }
        for (w, slot) in kids.iter_mut().enumerate() {
            if let Some(k) = slot {
                if let Some(st) = k.try_wait().unwrap() {
                    assert!(st.success() || st.code().is_none(), "worker {w} failed: {st}");
                    *slot = None;
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();

    // What the runtime was told, and what it gave up.
    let mut answered: BTreeMap<String, IpAddr> = BTreeMap::new();
    let mut abandoned = BTreeSet::new();
    for w in 0..WORKERS {
        for l in std::fs::read_to_string(journal(&root, w)).unwrap().lines() {
            let f: Vec<&str> = l.split(' ').collect();
            match f.as_slice() {
                ["done", c, a] => {
                    let a: IpAddr = a.parse().unwrap();
                    let before = answered.insert((*c).to_string(), a);
                    assert!(before.is_none_or(|b| b == a), "{c} answered {b:?} then {a}", b = before);
                }
                ["abandon", c] => {
                    abandoned.insert((*c).to_string());
                }
                _ => {}
            }
        }
    }
    assert_eq!(answered.len() + abandoned.len(), ADDS, "every ADD answered or given up");
    let distinct: BTreeSet<IpAddr> = answered.values().copied().collect();
    assert_eq!(distinct.len(), answered.len(), "an address answered to two containers");
    assert!(!distinct.contains(&"10.77.0.1".parse().unwrap()) && !distinct.contains(&"10.77.0.9".parse().unwrap()));

    let store = Store::open(&root.join("leases"), "net").unwrap();
    let leases: BTreeMap<String, IpAddr> = store.leases().unwrap().into_iter().map(|(a, o)| (o.container, a)).collect();
    for (c, a) in &answered {
        assert_eq!(leases.get(c), Some(a), "{c}'s answered lease is gone");
    }
    let leaked = leases.len() - answered.len();
    let freed = store.gc(&|o| answered.contains_key(&o.container)).unwrap();
    assert_eq!(freed.len(), leaked);
    let after: BTreeMap<String, IpAddr> = store.leases().unwrap().into_iter().map(|(a, o)| (o.container, a)).collect();
    assert_eq!(after, answered, "after GC the leases are exactly the answered ADDs");
    let stray: Vec<_> = std::fs::read_dir(root.join("leases/net"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(stray.is_empty(), "temporaries left: {stray:?}");
    eprintln!(
        "ipam crash test: {ADDS} ADDs by {WORKERS} processes, {kills} SIGKILLs ({spawns} starts) in {secs:.1} s; \
         {} answered, {} given up ({leaked} of them leased: reclaimed by GC), 0 addresses twice",
        answered.len(),
        abandoned.len()
    );
    let _ = std::fs::remove_dir_all(&root);
}
