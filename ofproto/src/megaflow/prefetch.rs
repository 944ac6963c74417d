//! Cache-line prefetch hints (never fault, whatever the address).

/// Starts loading the cache line at `p` (a hint: never faults).
#[inline]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: _mm_prefetch only hints the cache; it never dereferences in
    // a way that can fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Whether the CPU has PREFETCHW (CPUID 0x8000_0001, ECX bit 8): on
/// others the instruction is not safe to run.
fn has_prefetchw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID is on every x86-64 CPU; the leaf is checked against
            // the highest one it has.
            let max = std::arch::x86_64::__cpuid(0x8000_0000).eax;
            max >= 0x8000_0001 && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Starts loading the cache line at `p` to write it (PREFETCHW: the line
/// comes exclusive, taken from any other core that holds it, so that the
/// store that follows waits for nothing); a plain prefetch where the CPU
/// lacks the instruction. A hint: never faults.
#[inline]
pub fn prefetch_write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    if has_prefetchw() {
        // SAFETY: PREFETCHW (checked present) only hints the cache; it
        // never faults, whatever the address, and touches no register or
        // flag.
        unsafe {
            std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly));
        }
        return;
    }
    prefetch(p);
}

/// Starts loading every cache line of the `len` bytes at `p` (`len` > 0).
#[inline]
pub fn prefetch_span(p: *const u8, len: usize) {
    // One prefetch per line the span touches.
    let first = p.addr() & !63;
    let last = (p.addr() + len.max(1) - 1) & !63;
    for line in (first..=last).step_by(64) {
        prefetch(p.wrapping_add(line.wrapping_sub(p.addr())));
    }
}
