//! Folding megaflow counters into the flow tables away from the PMD
//! threads (what OVS's revalidator threads do for its datapath flows).
//!
//! A PMD thread only adds to its megaflows' own counters (plain stores:
//! it is their one writer) and hands each new megaflow over once, a batch
//! of them every few milliseconds ([`MegaflowCache::hand_over`]). A
//! [`Folder`] holds them all and, in passes, adds what each gained since
//! the previous pass to the counters and idle clocks of the tables and
//! entries its decision went through. In a big table that fold is a DRAM
//! miss or two per megaflow (the megaflow, the entries it matched): on
//! the PMD thread it cost as much as the lookup itself. A megaflow its
//! cache let go of (expired, revalidated away, flushed) is folded once
//! more and freed here, off the PMD thread too.
//!
//! Passes run on the folder's own thread ([`Folder::start`]), every
//! [`PASS_MS`] at least and never more than a tenth of that thread's
//! time; [`Folder::fold_all`] runs one at once (before flows expire, and
//! before statistics are answered unless a long pass just ended, see
//! [`Folder::fold_for_stats`]), so what a controller reads is up to date
//! with every megaflow handed over.

use super::entry::Tally;
use super::{Megaflow, MegaflowCache};
use crate::table::{TableCounters, Tables};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// Milliseconds between two passes of the folder's thread at least.
pub const PASS_MS: u64 = 250;

/// The tables' counters a batch of megaflows counts into, and the batch.
type Handed = (Arc<[TableCounters]>, Vec<Arc<Megaflow>>);

/// Megaflows of one set of table counters, with the packets and bytes
/// already folded of each (apart: a pass writes those, never the
/// megaflow, whose lines its PMD thread writes).
struct Group {
    counters: Arc<[TableCounters]>,
    flows: Vec<Arc<Megaflow>>,
    done: Vec<(u64, u64)>,
}

/// Batches handed over, and emptied vectors to give back: a PMD thread
/// that installs a million megaflows a second would otherwise grow a new
/// vector between hand-overs, copying it at each doubling and faulting
/// in fresh pages for it.
#[derive(Default)]
struct Inbox {
    handed: Vec<Handed>,
    spare: Vec<Vec<Arc<Megaflow>>>,
}

/// Counters of a folder (`vswitchctl pmd-stats`).
#[derive(Debug, Default)]
pub struct FolderStats {
    /// Passes so far.
    pub passes: AtomicU64,
    /// Megaflows held now (in a cache, or let go of and not yet folded
    /// the last time).
    pub held: AtomicU64,
    /// Megaflows a pass found with new packets, summed over passes.
    pub folded: AtomicU64,
    /// Megaflows folded for the last time and freed.
    pub released: AtomicU64,
    /// The last pass's length, microseconds.
    pub last_pass_us: AtomicU64,
}

/// The megaflows of one bridge's PMD threads, folded into its tables'
/// counters in passes (see the module docs).
#[derive(Default)]
pub struct Folder {
    /// Batches handed over by PMD threads since the last pass (a PMD
    /// thread only tries the lock: it never waits for it).
    inbox: Mutex<Inbox>,
    /// What passes walk (held by a pass for its whole length).
    held: Mutex<Vec<Group>>,
    /// Its counters.
    pub stats: FolderStats,
    /// Its thread, once started (woken when a cache let go of many
    /// megaflows at once).
    thread: std::sync::OnceLock<std::thread::Thread>,
    /// When the last pass ended, and how long it took.
    last: Mutex<Option<(Instant, Duration)>>,
}

/// Whether a statistics request needs a pass of its own, the last one
/// having ended `ago` after taking `took`: not when that pass was long
/// (10 ms or more: a big table) and ended within ten times its length,
/// so that a controller polling table statistics cannot keep the control
/// thread folding (a pass over two million megaflows takes most of a
/// second); a small table's statistics are always folded first.
fn stats_need_pass(last: Option<(Duration, Duration)>) -> bool {
    match last {
        Some((ago, took)) => took < Duration::from_millis(10) || ago >= took * 10,
        None => true,
    }
}

impl std::fmt::Debug for Folder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Folder").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Folder {
    /// An empty folder; passes run when [`Folder::fold_all`] is called,
    /// or on a thread of their own after [`Folder::start`].
    pub fn new() -> Arc<Folder> {
        Arc::new(Folder::default())
    }

    /// Starts the folder's thread (`megaflow-fold`): a pass every
    /// [`PASS_MS`], or ten times the last pass's length when that is
    /// longer and it freed nothing (megaflows let go of are freed without
    /// that wait: under a flood of new flows a cache fills and starts over
    /// several times a second), or at once when woken
    /// ([`Folder::wake`]). It ends once the folder is dropped.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let weak: Weak<Folder> = Arc::downgrade(self);
        let t = std::thread::Builder::new().name("megaflow-fold".into()).spawn(move || loop {
            let Some(f) = weak.upgrade() else { return };
            let t = Instant::now();
            let released = f.stats.released.load(Ordering::Relaxed);
            f.fold_all();
            let freed = f.stats.released.load(Ordering::Relaxed) > released;
            drop(f);
            let pass = Duration::from_millis(PASS_MS);
            std::thread::park_timeout(if freed { pass } else { pass.max(t.elapsed() * 10) });
        })?;
        let _ = self.thread.set(t.thread().clone());
        Ok(())
    }

    /// Runs the next pass of its thread now (a cache let go of many
    /// megaflows: they are freed without waiting for the next period).
    pub fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Takes `flows` (new megaflows counting into the table counters
    /// `counters`) when the inbox is free, leaving an emptied vector in
    /// their place; false (and `flows` left as it was) when a pass is
    /// taking it: the caller tries again later.
    pub fn offer(&self, counters: &Arc<[TableCounters]>, flows: &mut Vec<Arc<Megaflow>>) -> bool {
        match self.inbox.try_lock() {
            Ok(mut inbox) => {
                let spare = inbox.spare.pop().unwrap_or_default();
                inbox.handed.push((counters.clone(), std::mem::replace(flows, spare)));
                true
            }
            Err(_) => false,
        }
    }

    /// As [`Folder::offer`], waiting for the inbox (not on a PMD
    /// thread's fast path).
    pub fn give(&self, counters: Arc<[TableCounters]>, flows: Vec<Arc<Megaflow>>) {
        if !flows.is_empty() {
            self.inbox.lock().unwrap_or_else(PoisonError::into_inner).handed.push((counters, flows));
        }
    }

    /// One pass now: every megaflow handed over is folded (what it gained
    /// since the previous pass, into its tables and entries), those no
    /// cache holds any more for the last time, and freed. Returns the
    /// packets folded.
    pub fn fold_all(&self) -> u64 {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let handed = std::mem::take(&mut self.inbox.lock().unwrap_or_else(PoisonError::into_inner).handed);
        let mut spare = Vec::new();
        for (counters, mut flows) in handed {
            let g = match held.iter().position(|g| Arc::ptr_eq(&g.counters, &counters)) {
                Some(i) => &mut held[i],
                None => {
                    held.push(Group { counters, flows: Vec::new(), done: Vec::new() });
                    held.last_mut().expect("just pushed")
                }
            };
            g.done.resize(g.flows.len() + flows.len(), (0, 0));
            g.flows.append(&mut flows);
            spare.push(flows);
        }
        {
            // A few emptied vectors go back, for the next hand-overs.
            let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
            spare.truncate(4usize.saturating_sub(inbox.spare.len()));
            inbox.spare.append(&mut spare);
        }
        let t = Instant::now();
        let (mut packets, mut folded, mut released) = (0, 0, 0);
        for g in held.iter_mut() {
            let (p, f, r) = fold_group(g);
            packets += p;
            folded += f;
            released += r;
        }
        held.retain(|g| !g.flows.is_empty());
        let s = &self.stats;
        s.passes.fetch_add(1, Ordering::Relaxed);
        s.folded.fetch_add(folded, Ordering::Relaxed);
        s.released.fetch_add(released, Ordering::Relaxed);
        s.held.store(held.iter().map(|g| g.flows.len() as u64).sum(), Ordering::Relaxed);
        s.last_pass_us.store(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), t.elapsed()));
        packets
    }

    /// A pass before answering statistics, unless a long one ended
    /// recently (see `stats_need_pass`): the answer is then as old as that
    /// pass, as with OVS's revalidators.
    pub fn fold_for_stats(&self) {
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if stats_need_pass(last.map(|(end, took)| (end.elapsed(), took))) {
            self.fold_all();
        }
    }
}

/// Folds group `g`'s megaflows, a chunk of 64 at a time through a tally
/// (each entry's and table's atomics written once per chunk), the
/// megaflows prefetched 16 ahead and their entries 8 ahead; frees those
/// no cache holds. Returns (packets, megaflows with news, megaflows freed).
fn fold_group(g: &mut Group) -> (u64, u64, u64) {
    const AHEAD: usize = 16;
    const CHUNK: usize = 64;
    let (mut packets, mut folded, mut released) = (0, 0, 0);
    let mut i = 0;
    while i < g.flows.len() {
        let end = (i + CHUNK).min(g.flows.len());
        let mut gone = [false; CHUNK];
        {
            let flows = &g.flows;
            let mut tally = Tally::new();
            for j in i..end {
                if let Some(mf) = flows.get(j + AHEAD) {
                    // Its reference counts (just before it), then its
                    // lines.
                    let at = Arc::as_ptr(mf).cast::<u8>();
                    super::prefetch(at.wrapping_sub(1));
                    Megaflow::prefetch_fold_at(at.addr());
                }
                if let Some(mf) = flows.get(j + AHEAD / 2) {
                    mf.prefetch_entries();
                }
                let mf = &flows[j];
                // Its cache let go of it: the PMD thread's last counts
                // were written before (the reference count's release).
                if Arc::strong_count(mf) == 1 {
                    fence(Ordering::Acquire);
                    gone[j - i] = true;
                }
                let (p, b) = (mf.packets.load(Ordering::Relaxed), mf.bytes.load(Ordering::Relaxed));
                let done = &mut g.done[j];
                let dp = p.wrapping_sub(done.0);
                // The PMD thread stores packets, then bytes: a pass may
                // read a hit's packets without its bytes, which a later
                // pass then finds alone.
                if dp > 0 || b != done.1 {
                    mf.count_into(&g.counters, &mut tally, dp, b.wrapping_sub(done.1));
                    *done = (p, b);
                    packets += dp;
                    folded += 1;
                }
            }
            tally.send(&g.counters);
        }
        // The freed leave by swap from the end, highest first; the
        // megaflows moved into their slots are walked next (those already
        // folded in this pass fold nothing twice: only what they gained).
        let mut next = end;
        for j in (i..end).rev().filter(|j| gone[j - i]) {
            g.flows.swap_remove(j);
            g.done.swap_remove(j);
            released += 1;
            next = j;
        }
        i = next;
    }
    (packets, folded, released)
}

impl MegaflowCache {
    /// Hands the megaflows installed since last time to `folder`, which
    /// folds their counters into `tables`' from now on; tries its lock
    /// only (the PMD thread never waits): what it could not hand over
    /// waits for the next call. Call every few milliseconds.
    pub fn hand_over(&mut self, folder: &Arc<Folder>, tables: &Tables) {
        if self.sink.as_ref().is_none_or(|(f, c)| !Arc::ptr_eq(f, folder) || !Arc::ptr_eq(c, &tables.counters)) {
            // Megaflows of an earlier sink go there first.
            self.hand_over_now();
            self.sink = Some((folder.clone(), tables.counters.clone()));
        }
        if !self.fresh.is_empty() {
            folder.offer(&tables.counters, &mut self.fresh);
        }
    }

    /// Hands what is left over to the last folder named, waiting for its
    /// lock (when the cache goes, or in tests).
    pub fn hand_over_now(&mut self) {
        if let Some((f, c)) = &self.sink {
            f.give(c.clone(), std::mem::take(&mut self.fresh));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statistics get a pass of their own after short passes always, and
    /// after a long one once ten times its length went by.
    #[test]
    fn statistics_fold_unless_a_long_pass_just_ended() {
        let ms = Duration::from_millis;
        assert!(stats_need_pass(None), "no pass yet");
        assert!(stats_need_pass(Some((ms(0), ms(9)))), "a short pass, just ended");
        assert!(!stats_need_pass(Some((ms(100), ms(700)))), "a long pass, 100 ms ago");
        assert!(!stats_need_pass(Some((ms(6999), ms(700)))));
        assert!(stats_need_pass(Some((ms(7000), ms(700)))), "ten times its length ago");
    }
}
