//! The egress scheduler alone: TSC cycles per frame queued and sent by two
//! ports' schedulers of N classes each (64-byte frames to random classes in
//! batches of 32, prefetched as the shaper does, rates that never bind), so
//! that its cost can be read apart from the rest of the datapath.
//!
//! `cargo run --release -p vswitch --example sched_cost -- [CLASSES] [FRAMES]`
//! (defaults 4096 and 20,000,000); pin it to a core with `taskset`.

use vswitch::datapath::qos::policer::Colour;
use vswitch::datapath::qos::sched::{Aqm, ClassSpec, Frame, QueueSpec, SchedSpec, Scheduler};

struct F(u32);

impl Frame for F {
    fn bytes(&self) -> u32 {
        self.0
    }
}

const BATCH: usize = 32;
const AHEAD: usize = 16;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let n = args.next().flatten().unwrap_or(4096).clamp(1, 65_536);
    let frames = args.next().flatten().unwrap_or(20_000_000);
    let q = QueueSpec { priority: 0, weight: 1, depth: 256, depth_bytes: 1 << 20, aqm: Aqm::Tail };
    let classes: Vec<ClassSpec> = (0..u32::try_from(n).unwrap_or(1))
        .map(|id| ClassSpec { id, rate: 1 << 30, burst: 1 << 20, ceil: 1 << 30, cburst: 1 << 20, queues: vec![q] })
        .collect();
    let spec = SchedSpec { rate: 1 << 40, burst: 1 << 30, limit: 1 << 20, classes };
    let mut ports: Vec<Scheduler<F>> = (0..2).map(|_| Scheduler::new(&spec, 0)).collect();
    let (mut rng, mut now, mut queued, mut sent) = (0x1234_5678_u64, 0_u64, 0_u64, 0_u64);
    let t0 = pmd::rdtsc();
    while queued < frames {
        for s in &mut ports {
            let mut cl = [0usize; BATCH];
            for c in &mut cl {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                *c = usize::try_from(rng % n).unwrap_or(0);
                s.prefetch(*c, 0);
            }
            for c in &cl[..AHEAD] {
                s.prefetch_slot(*c, 0);
            }
            for k in 0..BATCH {
                if let Some(c) = cl.get(k + AHEAD) {
                    s.prefetch_slot(*c, 0);
                }
                let _ = s.enqueue(cl[k], 0, Colour::Green, F(60), now);
            }
            queued += BATCH as u64;
            now += 1000;
            sent += s.dequeue(now, BATCH, &mut drop) as u64;
        }
    }
    let cycles = pmd::rdtsc() - t0;
    #[allow(clippy::cast_precision_loss)]
    let per = cycles as f64 / queued as f64;
    println!("{n} classes per port, 2 ports: {per:.1} cycles per frame queued and sent ({sent} of {queued} sent)");
}
