//! vswitchd's heap: the system allocator, except for small blocks aligned
//! to a cache line (megaflows: what a hit touches is their first line).
//! glibc serves those through `memalign`, which carves an aligned chunk
//! out of a bigger one and frees the pieces around it, bypassing its
//! per-thread cache: a PMD thread installing a million megaflows a second
//! spent a third of its time there (0.70-0.84 M installs/s against
//! 1.13-1.20 M unaligned). [`LineAlloc`] takes such a block from `malloc`
//! 64 bytes longer (the per-thread cache's fast path), returns the first
//! line-aligned address inside it and keeps `malloc`'s address in the 8
//! bytes before, for `free`.

use std::alloc::{GlobalAlloc, Layout, System};

/// Alignment served by over-allocating: a cache line.
const LINE: usize = 64;
/// Blocks at most this big are over-allocated (beyond, `memalign`'s cost
/// is small against the block's own).
const SMALL: usize = 4096;

/// The system allocator, with line-aligned small blocks over-allocated
/// (see the module docs). `#[global_allocator]` in vswitchd.
#[derive(Debug, Default)]
pub struct LineAlloc;

impl LineAlloc {
    /// Whether `layout` is served by over-allocating.
    #[inline]
    fn over(layout: Layout) -> bool {
        layout.align() == LINE && layout.size() <= SMALL
    }
}

// SAFETY: every block comes from `System` (directly, or `LINE` bytes
// longer with the returned address inside it, line-aligned, at least 8
// bytes past `System`'s: `System` aligns to 16, so the first line-aligned
// address past it is 16 to 64 bytes on, and the block holds `size` bytes
// from there); `dealloc` tells the two kinds apart by the same layout the
// caller allocated with, and frees what `System` gave.
unsafe impl GlobalAlloc for LineAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::over(layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: a non-zero size (at least LINE), alignment 16.
        let raw = unsafe { System.alloc(Layout::from_size_align_unchecked(layout.size() + LINE, 16)) };
        if raw.is_null() {
            return raw;
        }
        let at = (raw.addr() + LINE) & !(LINE - 1);
        let p = raw.with_addr(at);
        // SAFETY: `at - 8` lies in the block (`at` is 16 to 64 bytes past
        // `raw`), 8-aligned.
        unsafe { p.sub(8).cast::<*mut u8>().write(raw) };
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::over(layout) {
            // SAFETY: allocated by `System` with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        // SAFETY: written by `alloc` 8 bytes before the address it gave.
        let raw = unsafe { ptr.sub(8).cast::<*mut u8>().read() };
        // SAFETY: what `System` gave `alloc`, with that layout.
        unsafe { System.dealloc(raw, Layout::from_size_align_unchecked(layout.size() + LINE, 16)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line-aligned blocks of every small size are aligned, hold their
    /// bytes and keep them through a reallocation; other blocks pass
    /// through.
    #[test]
    fn line_aligned_blocks_are_aligned_and_whole() {
        let a = LineAlloc;
        for size in [1usize, 63, 64, 65, 200, 1000, 4096, 4097, 100_000] {
            for align in [8usize, 16, 64, 128] {
                let l = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a valid non-zero layout; the block is written
                // within its size and freed with the same layout.
                unsafe {
                    let p = a.alloc(l);
                    assert!(!p.is_null());
                    assert_eq!(p.addr() % align, 0, "size {size} align {align}");
                    for i in 0..size {
                        p.add(i).write(u8::try_from(i % 256).unwrap());
                    }
                    let q = a.realloc(p, l, size * 2);
                    assert_eq!(q.addr() % align, 0, "realloc: size {size} align {align}");
                    for i in 0..size {
                        assert_eq!(
                            q.add(i).read(),
                            u8::try_from(i % 256).unwrap(),
                            "size {size} align {align} byte {i}"
                        );
                    }
                    a.dealloc(q, Layout::from_size_align(size * 2, align).unwrap());
                }
            }
        }
    }
}
