//! Real heap use of a read, measured by the allocator: the check that the reader's
//! [`Budget`](crate::limits::Budget) is charged for everything it holds, whatever the code
//! path, and not only where someone remembered to charge it.
//!
//! A binary that wants the measurement installs [`CountingAllocator`] as its global
//! allocator (the reader's tests, benchmarks and fuzz targets do):
//!
//! ```ignore
//! #[global_allocator]
//! static HEAP: yolots_checkpoint::fuzzing::heap::CountingAllocator =
//!     yolots_checkpoint::fuzzing::heap::CountingAllocator;
//! ```
//!
//! Counters are per thread, so tests running side by side do not see each other's
//! allocations; the reader itself never starts a thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a read may hold beyond its memory budget: the allocator's rounding, the buffers a
/// reader fills before it knows their content, the answer handed back.
pub const SLACK: u64 = 16 << 20;

/// The system allocator, counting the bytes live on each thread and their peak.
pub struct CountingAllocator;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

/// Set by the first allocation made through [`CountingAllocator`].
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn record(delta: i64) {
    // `try_with`: a thread being torn down has no counters left; its frees are not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

fn size(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Counts a fresh allocation of `layout` (none when it failed) and hands it on.
fn allocated(ptr: *mut u8, layout: Layout) -> *mut u8 {
    if !ptr.is_null() {
        INSTALLED.store(true, Ordering::Relaxed);
        record(size(layout.size()));
    }
    ptr
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting touches
// only thread-local cells and an atomic flag, and allocates nothing.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        allocated(unsafe { System.alloc(layout) }, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        allocated(unsafe { System.alloc_zeroed(layout) }, layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-size(layout.size()));
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            record(size(new_size) - size(layout.size()));
        }
        new
    }
}

/// Whether this binary's global allocator is [`CountingAllocator`] (it has allocated).
pub fn installed() -> bool {
    // Make sure at least one allocation has gone through the global allocator.
    drop(std::hint::black_box(Box::new(0u8)));
    INSTALLED.load(Ordering::Relaxed)
}

/// Runs `f` and returns its result with the most bytes it held on this thread at once
/// beyond what was live before (the result itself included). Nested calls measure
/// their own part and leave the outer peak as it would have been.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let base = LIVE.with(Cell::get);
    let outer = PEAK.with(|peak| peak.replace(base));
    let out = f();
    let peak = PEAK.with(Cell::get);
    PEAK.with(|p| p.set(outer.max(peak)));
    (out, u64::try_from(peak.saturating_sub(base)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Without the allocator installed (unit tests use the system one) nothing is counted:
    // the measurement itself is tested where it is installed (`tests/heap.rs`).
    #[test]
    fn without_the_allocator_nothing_is_counted() {
        let (len, peak) = peak_of(|| vec![0u8; 1 << 20].len());
        assert_eq!(len, 1 << 20);
        assert_eq!(peak, 0);
        assert!(!installed());
    }
}
