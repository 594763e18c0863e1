//! Every way of opening a checkpoint must give the same answer: from memory, through a
//! reader, and from a file on disk; and no read may hold more heap than its memory budget
//! plus [`heap::SLACK`], as the allocator measures it. A test binary that includes this
//! module counts its allocations.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use yolots_checkpoint::fuzzing::heap::{self, CountingAllocator};
use yolots_checkpoint::fuzzing::{Answer, Read, answer, both_paths};
use yolots_checkpoint::{Checkpoint, Limits};

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

/// Reads `bytes` from memory, through a `Cursor` and from a temporary file with default
/// limits; panics when the answers differ, a read passed its budget or held more heap than
/// the budget plus the slack, else returns the answer.
pub fn agree(bytes: &[u8]) -> Answer {
    agree_with(bytes, &Limits::default())
}

/// [`agree`] with explicit limits (the file is opened with the default ones, so it is only
/// compared under default limits).
pub fn agree_with(bytes: &[u8], limits: &Limits) -> Answer {
    measure_with(bytes, limits).answer
}

/// [`agree_with`], returning the answer with the peak heap of the larger in-memory read.
pub fn measure_with(bytes: &[u8], limits: &Limits) -> Read {
    assert!(heap::installed(), "the counting allocator is not installed");
    let read = match both_paths(bytes, limits) {
        Ok(read) => read,
        Err((from_bytes, from_reader)) => panic!(
            "{} bytes: from memory {from_bytes:?}, through a reader {from_reader:?}",
            bytes.len()
        ),
    };
    assert!(read.answer.within_budget, "budget exceeded: {read:?}");
    assert!(
        read.heap_within(limits),
        "{} bytes: the read held {} bytes of heap, more than its budget {} + {} ({:?})",
        bytes.len(),
        read.peak_heap,
        limits.max_memory,
        heap::SLACK,
        read.answer
    );
    if *limits == Limits::default() {
        let (from_file, file_peak) = heap::peak_of(|| from_file(bytes));
        assert_eq!(
            read.answer,
            from_file,
            "{} bytes: from memory and from a file differ",
            bytes.len()
        );
        assert!(
            file_peak <= limits.max_memory + heap::SLACK,
            "{} bytes: opening the file held {file_peak} bytes of heap",
            bytes.len()
        );
    }
    read
}

/// The answer of `Checkpoint::open` on a temporary copy of `bytes`.
pub fn from_file(bytes: &[u8]) -> Answer {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("yolots-paths-{}-{n}.pt", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let result = answer(Checkpoint::open(&path));
    std::fs::remove_file(&path).unwrap();
    result
}
