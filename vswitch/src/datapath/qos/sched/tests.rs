//! The scheduler against simulated time: rates, guarantees, borrowing,
//! ceilings, priorities, weights, drops and live changes.

use super::*;

#[derive(Debug)]
struct F(u32, usize);

impl Frame for F {
    fn bytes(&self) -> u32 {
        self.0
    }
}

const MBIT: u64 = 1_000_000 / 8;

fn queue() -> QueueSpec {
    QueueSpec { priority: 0, weight: 1, depth: 64, depth_bytes: 1 << 20, aqm: Aqm::Tail }
}

fn class(id: u32, rate_mbit: u64, ceil_mbit: u64) -> ClassSpec {
    ClassSpec { id, rate: rate_mbit * MBIT, burst: 3000, ceil: ceil_mbit * MBIT, cburst: 3000, queues: vec![queue()] }
}

fn spec(rate_mbit: u64, classes: Vec<ClassSpec>) -> SchedSpec {
    SchedSpec { rate: rate_mbit * MBIT, burst: 3000, limit: u64::MAX, classes }
}

/// Runs `secs` of simulated time in 10 us steps; `offer(class, queue)`
/// says whether that queue is kept full. Returns bytes sent per (class,
/// queue) tag.
fn run(s: &mut Scheduler<F>, shape: &[usize], secs: f64, offer: impl Fn(usize, usize, u64) -> bool) -> Vec<Vec<u64>> {
    let mut sent: Vec<Vec<u64>> = shape.iter().map(|n| vec![0; *n]).collect();
    let step = 10_000u64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let end = (secs * 1e9) as u64;
    let mut now = 0;
    while now < end {
        for (c, nq) in shape.iter().enumerate() {
            for q in 0..*nq {
                while offer(c, q, now) && s.depth(c)[q].0 < 32 {
                    s.enqueue(c, q, Colour::Green, F(1000, c * 16 + q), now).unwrap();
                }
            }
        }
        s.dequeue(now, 1 << 20, &mut |f| sent[f.1 / 16][f.1 % 16] += u64::from(f.0));
        now += step;
    }
    sent
}

fn mbit(bytes: u64, secs: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b * 8.0 / secs / 1e6
}

fn near(got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= want * tol, "got {got:.3}, want {want:.3} within {:.1}%", tol * 100.0);
}

#[test]
fn the_port_rate_holds() {
    let mut s = Scheduler::new(&spec(100, vec![class(0, 100, 100)]), 0);
    let sent = run(&mut s, &[1], 2.0, |_, _, _| true);
    near(mbit(sent[0][0], 2.0), 100.0, 0.01);
    // The ceiling holds below the port rate too.
    let mut s = Scheduler::new(&spec(1000, vec![class(0, 10, 30)]), 0);
    let sent = run(&mut s, &[1], 2.0, |_, _, _| true);
    near(mbit(sent[0][0], 2.0), 30.0, 0.01);
}

#[test]
fn guarantees_share_two_to_one_when_saturated() {
    let mut s = Scheduler::new(&spec(30, vec![class(1, 20, 30), class(2, 10, 30)]), 0);
    let sent = run(&mut s, &[1, 1], 2.0, |_, _, _| true);
    near(mbit(sent[0][0], 2.0), 20.0, 0.02);
    near(mbit(sent[1][0], 2.0), 10.0, 0.02);
}

#[test]
fn excess_is_borrowed_in_proportion_to_guarantees() {
    // 30 guaranteed of 90: the 60 left over goes 2:1 as well.
    let mut s = Scheduler::new(&spec(90, vec![class(1, 20, 90), class(2, 10, 90)]), 0);
    let sent = run(&mut s, &[1, 1], 2.0, |_, _, _| true);
    near(mbit(sent[0][0], 2.0), 60.0, 0.03);
    near(mbit(sent[1][0], 2.0), 30.0, 0.03);
}

#[test]
fn an_idle_class_is_borrowed_from_up_to_the_ceiling() {
    let mk = || Scheduler::new(&spec(100, vec![class(1, 50, 70), class(2, 50, 100)]), 0);
    let mut s = mk();
    let sent = run(&mut s, &[1, 1], 2.0, |c, _, _| c == 0);
    near(mbit(sent[0][0], 2.0), 70.0, 0.01);
    let mut s = mk();
    let sent = run(&mut s, &[1, 1], 2.0, |c, _, _| c == 1);
    near(mbit(sent[1][0], 2.0), 100.0, 0.01);
    // Once the other wakes, each is back to its guarantee.
    let mut s = mk();
    let sent = run(&mut s, &[1, 1], 2.0, |c, _, t| c == 1 || t >= 1_000_000_000);
    let second = mbit(sent[0][0], 1.0);
    near(second, 50.0, 0.03);
}

#[test]
fn strict_priority_then_weights_within_a_class() {
    let mut c = class(0, 10, 10);
    c.queues = vec![
        QueueSpec { priority: 1, weight: 3, ..queue() },
        QueueSpec { priority: 0, ..queue() },
        QueueSpec { priority: 1, weight: 1, ..queue() },
    ];
    // The priority-0 queue takes all while it is busy.
    let mut s = Scheduler::new(&spec(10, vec![c.clone()]), 0);
    let sent = run(&mut s, &[3], 1.0, |_, _, _| true);
    near(mbit(sent[0][1], 1.0), 10.0, 0.01);
    assert_eq!(sent[0][0] + sent[0][2], 0);
    // Without it, the two priority-1 queues share 3:1.
    let mut s = Scheduler::new(&spec(10, vec![c]), 0);
    let sent = run(&mut s, &[3], 1.0, |_, q, _| q != 1);
    near(mbit(sent[0][0], 1.0), 7.5, 0.03);
    near(mbit(sent[0][2], 1.0), 2.5, 0.03);
}

#[test]
fn thousands_of_classes_share_evenly() {
    let n = 4096;
    let classes = (0..n).map(|i| class(i, 1, 1000)).collect();
    let mut s = Scheduler::new(&SchedSpec { burst: 20_000, ..spec(8192, classes) }, 0);
    let shape = vec![1; n as usize];
    let sent = run(&mut s, &shape, 0.5, |_, _, _| true);
    let total: u64 = sent.iter().map(|v| v[0]).sum();
    near(mbit(total, 0.5), 8192.0, 0.01);
    for v in &sent {
        near(mbit(v[0], 0.5), 2.0, 0.1);
    }
}

#[test]
fn full_queues_drop_and_count() {
    let mut s = Scheduler::new(&spec(1, vec![class(0, 1, 1)]), 0);
    let depth = s.class_spec(0).queues[0].depth;
    for _ in 0..depth {
        s.enqueue(0, 0, Colour::Green, F(1000, 0), 0).unwrap();
    }
    let Err((_, why)) = s.enqueue(0, 0, Colour::Green, F(1000, 0), 0) else { panic!("a full queue took more") };
    assert_eq!(why, Drop::Full);
    assert_eq!(s.stats(0).drops[Drop::Full as usize], 1);
    assert_eq!(s.backlog(), (u64::from(depth), u64::from(depth) * 1000));
    // The port's limit holds over all classes.
    let mut s = Scheduler::new(&SchedSpec { limit: 5, ..spec(1, vec![class(0, 1, 1), class(1, 0, 1)]) }, 0);
    for i in 0..5 {
        s.enqueue(i % 2, 0, Colour::Green, F(100, 0), 0).unwrap();
    }
    let Err((_, why)) = s.enqueue(1, 0, Colour::Green, F(100, 0), 0) else { panic!("over the limit") };
    assert_eq!(why, Drop::Limit);
    assert_eq!(s.stats(1).drops[Drop::Limit as usize], 1);
}

#[test]
fn red_drops_early_and_wred_drops_red_frames_first() {
    let mut c = class(0, 1, 1);
    c.queues[0].depth = 1000;
    c.queues[0].aqm = Aqm::Red { min: 20, max: 100, max_p: 100_000, weighted: true };
    let mut s = Scheduler::new(&spec(1, vec![c]), 0);
    let mut dropped = [0u32; 3];
    // Nothing leaves (time stands still): the averaged depth climbs.
    for i in 0..900 {
        let colour = [Colour::Green, Colour::Yellow, Colour::Red][i % 3];
        if let Err((_, why)) = s.enqueue(0, 0, colour, F(100, 0), 0) {
            assert_eq!(why, Drop::Early);
            dropped[i % 3] += 1;
        }
    }
    assert!(dropped[0] > 0, "RED never dropped: {dropped:?}");
    assert!(dropped[2] > dropped[1] && dropped[1] > dropped[0], "WRED's order: {dropped:?}");
    assert!(s.backlog().0 < 900);
}

#[test]
fn a_live_change_keeps_what_is_queued() {
    let mut old = Scheduler::new(&spec(10, vec![class(1, 10, 10), class(2, 5, 10)]), 0);
    for _ in 0..10 {
        old.enqueue(0, 0, Colour::Green, F(1000, 0), 0).unwrap();
        old.enqueue(1, 0, Colour::Green, F(1000, 16), 0).unwrap();
    }
    // Class 2 goes, class 1 gets a new rate.
    let mut new = Scheduler::new(&spec(20, vec![class(1, 20, 20)]), 0);
    let mut lost = 0;
    new.adopt(&mut old, 0, &mut |_| lost += 1);
    assert_eq!(lost, 10);
    assert_eq!(new.backlog(), (10, 10_000));
    let mut out = 0;
    let mut now = 0;
    while new.backlog().0 > 0 && now < 1_000_000_000 {
        now += 100_000;
        new.dequeue(now, 64, &mut |_| out += 1);
    }
    assert_eq!(out, 10);
    // At 20 Mbit/s, 10 kB less the 3000-byte burst take 2.8 ms.
    assert!(now <= 3_000_000, "drained at {now} ns");
}

#[test]
fn a_queue_made_shallower_keeps_what_it_holds() {
    let mut old = Scheduler::new(&spec(10, vec![class(1, 10, 10)]), 0);
    for k in 0..40 {
        old.enqueue(0, 0, Colour::Green, F(1000, k), 0).unwrap();
    }
    let mut c = class(1, 10, 10);
    c.queues[0].depth = 16;
    let mut new = Scheduler::new(&spec(10, vec![c]), 0);
    new.adopt(&mut old, 0, &mut |_| panic!("nothing is lost"));
    // Full at its new depth until it drains below it.
    assert!(matches!(new.enqueue(0, 0, Colour::Green, F(1000, 99), 0), Err((_, Drop::Full))));
    let mut order = Vec::new();
    let mut now = 0;
    while new.backlog().0 > 0 {
        now += 100_000;
        new.dequeue(now, 64, &mut |f| order.push(f.1));
    }
    assert_eq!(order, (0..40).collect::<Vec<_>>());
}

#[test]
fn delay_quantiles_come_from_the_histogram() {
    // One frame in DELAY_SAMPLE has its delay sampled: ten samples.
    let frames = 10 * DELAY_SAMPLE;
    let mut c = class(0, 8, 8);
    c.queues[0].depth = frames;
    let mut s = Scheduler::new(&spec(8, vec![c]), 0);
    for _ in 0..frames {
        s.enqueue(0, 0, Colour::Green, F(1000, 0), 0).unwrap();
    }
    let mut now = 0;
    while s.backlog().0 > 0 {
        now += 10_000;
        s.dequeue(now, 64, &mut |_| {});
    }
    let st = s.stats(0);
    assert_eq!(st.packets, u64::from(frames));
    assert_eq!(st.delay.iter().sum::<u64>(), 10);
    // 8 Mbit/s is 1 ms per frame (after a 3-frame burst): the last frame
    // waited frames - 3 ms, the first sampled DELAY_SAMPLE - 3; a bucket
    // reads at most sqrt(2) above.
    let ms = 1_000_000u64;
    let p100 = st.delay_quantile(1.0);
    let last = u64::from(frames - 3) * ms;
    assert!((last..=last * 3 / 2).contains(&p100), "p100 {p100}");
    let p10 = st.delay_quantile(0.1);
    assert!(p10 < u64::from(DELAY_SAMPLE) * ms * 3 / 2, "p10 {p10}");
    assert!(p10 >= u64::from(DELAY_SAMPLE - 4) * ms, "p10 {p10}");
}

#[test]
fn a_delay_falls_in_the_first_bucket_above_it() {
    let mut ns = 1u64;
    while ns < 1 << 40 {
        for d in [ns - 1, ns, ns + 1, ns * 1414 / 1000, ns * 1415 / 1000] {
            let want = (0..DELAY_BUCKETS).find(|&i| d < delay_bucket_ns(i)).unwrap_or(DELAY_BUCKETS - 1);
            assert_eq!(delay_bucket(d), want, "{d} ns");
        }
        ns = ns * 3 / 2 + 1;
    }
}

#[test]
fn many_small_guarantees_borrow_the_whole_port() {
    // 1,000 classes of 50 kbit/s each, ceilings at the port's 50 Mbit/s,
    // small frames: borrowing fills the port.
    let classes = (0..1000)
        .map(|i| ClassSpec { rate: 50_000 / 8, burst: 3044, ceil: 50 * MBIT, cburst: 6250, ..class(i, 0, 50) })
        .collect();
    let mut s = Scheduler::new(&SchedSpec { rate: 50 * MBIT, burst: 6250, limit: u64::MAX, classes }, 0);
    let shape = vec![1; 1000];
    let sent = run(&mut s, &shape, 1.0, |_, _, _| true);
    let total: u64 = sent.iter().map(|v| v[0]).sum();
    near(mbit(total, 1.0), 50.0, 0.01);
}
