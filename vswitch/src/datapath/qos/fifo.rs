//! A queue's frames: a ring of fixed capacity, each slot holding the frame
//! with its size and the time it was queued, so that sending reads neither
//! the frame nor anything but this slot, and the slot the next frame goes
//! to (or leaves from) can be prefetched before it is needed.

/// One queued frame.
pub struct Slot<T> {
    pub frame: T,
    /// Its bytes, as the scheduler counts them.
    pub bytes: u32,
    /// When it was queued, in [`TICK_NS`] units (wrapping).
    pub at: u32,
}

/// Nanoseconds per unit of [`Slot::at`]: 64 ns, wrapping every 274 s.
pub const TICK_NS: u64 = 64;

/// `now` (ns) in [`Slot::at`]'s units.
#[inline]
#[allow(clippy::cast_possible_truncation)]
pub fn tick(now: u64) -> u32 {
    // Truncated on purpose: differences are taken wrapping.
    (now / TICK_NS) as u32
}

/// Nanoseconds from `at` (a [`tick`]) to `now`.
#[inline]
pub fn since(at: u32, now: u64) -> u64 {
    u64::from(tick(now).wrapping_sub(at)) * TICK_NS
}

/// A ring of slots.
pub struct Fifo<T> {
    slots: Box<[Option<Slot<T>>]>,
    head: u32,
    len: u32,
}

impl<T> Fifo<T> {
    /// An empty ring holding `cap` frames (at least one).
    pub fn with_capacity(cap: usize) -> Fifo<T> {
        Fifo { slots: (0..cap.max(1)).map(|_| None).collect(), head: 0, len: 0 }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn at(&self, k: u32) -> usize {
        let i = self.head as usize + k as usize;
        if i >= self.slots.len() {
            i - self.slots.len()
        } else {
            i
        }
    }

    /// Appends `s`, or hands it back when the ring is full.
    #[inline]
    pub fn push(&mut self, s: Slot<T>) -> Result<(), Slot<T>> {
        if self.len as usize == self.slots.len() {
            return Err(s);
        }
        let i = self.at(self.len);
        self.slots[i] = Some(s);
        self.len += 1;
        Ok(())
    }

    /// Takes the oldest slot.
    #[inline]
    pub fn pop(&mut self) -> Option<Slot<T>> {
        if self.len == 0 {
            return None;
        }
        let s = self.slots[self.head as usize].take();
        self.head = u32::try_from(self.at(1)).unwrap_or(0);
        self.len -= 1;
        s
    }

    /// Starts loading the slot the next push writes.
    #[inline]
    pub fn prefetch_tail(&self) {
        if let Some(s) = self.slots.get(self.at(self.len)) {
            pmd::prefetch(s);
        }
    }

    /// Starts loading the slot the next pop reads.
    #[inline]
    pub fn prefetch_head(&self) {
        if let Some(s) = self.slots.get(self.head as usize) {
            pmd::prefetch(s);
        }
    }

    /// Takes every slot, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Slot<T>> + '_ {
        std::iter::from_fn(move || self.pop())
    }

    /// Makes room for at least `cap` frames, keeping those queued (off the
    /// fast path: it allocates).
    pub fn reserve(&mut self, cap: usize) {
        if cap <= self.slots.len() {
            return;
        }
        let mut bigger = Fifo::with_capacity(cap);
        for s in self.drain() {
            let _ = bigger.push(s);
        }
        *self = bigger;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u32) -> Slot<u32> {
        Slot { frame: n, bytes: n, at: 0 }
    }

    #[test]
    fn keeps_order_across_the_wrap_and_refuses_when_full() {
        let mut f = Fifo::with_capacity(3);
        for round in 0..5u32 {
            for k in 0..3 {
                assert!(f.push(slot(round * 10 + k)).is_ok());
            }
            assert_eq!(f.push(slot(99)).err().map(|s| s.frame), Some(99));
            assert_eq!(f.pop().map(|s| s.frame), Some(round * 10));
            assert!(f.push(slot(round * 10 + 3)).is_ok());
            let got: Vec<u32> = f.drain().map(|s| s.frame).collect();
            assert_eq!(got, vec![round * 10 + 1, round * 10 + 2, round * 10 + 3]);
            assert!(f.is_empty());
        }
    }

    #[test]
    fn reserve_keeps_what_is_queued() {
        let mut f = Fifo::with_capacity(2);
        f.push(slot(1)).ok();
        f.push(slot(2)).ok();
        f.pop();
        f.push(slot(3)).ok();
        f.reserve(4);
        f.push(slot(4)).ok();
        f.push(slot(5)).ok();
        assert_eq!(f.drain().map(|s| s.frame).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
    }

    #[test]
    fn delays_survive_the_tick_wrapping() {
        let t0 = (u64::from(u32::MAX) - 10) * TICK_NS;
        let at = tick(t0);
        assert_eq!(since(at, t0 + 1_000 * TICK_NS), 1_000 * TICK_NS);
    }
}
