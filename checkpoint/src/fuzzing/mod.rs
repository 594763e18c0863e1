//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus replay test.
//! Each takes arbitrary bytes and must never panic, whatever they hold; where the binary
//! counts its allocations ([`heap::CountingAllocator`]), no read may hold more heap than
//! its memory budget plus [`heap::SLACK`].

pub mod heap;

use crate::inspect::Summary;
use crate::{Checkpoint, Limits, ModelDescription, Result};

/// Tighter limits than the defaults, so each input stays cheap.
pub fn limits() -> Limits {
    Limits {
        max_objects: 1 << 20,
        max_memo: 1 << 20,
        max_container_len: 1 << 20,
        max_total_inflated: 256 << 20,
        max_entry_size: 256 << 20,
        max_memory: 64 << 20,
        max_steps: 20_000_000,
        ..Limits::default()
    }
}

/// Zero bytes standing in for every storage in [`describe`].
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

fn exercise(checkpoint: &Checkpoint<'_>, description: &ModelDescription) {
    for tensor in description.tensors() {
        let _ = checkpoint.tensor_f32(tensor);
    }
    let summary = Summary::from(description);
    let _ = summary.to_string();
    let _ = serde_json::to_string(&summary);
}

/// What reading a checkpoint answered: the description (as JSON) or the error code, and
/// whether the read stayed within its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `Ok(description as JSON)` or `Err(error code)`.
    pub outcome: std::result::Result<String, &'static str>,
    /// Whether every counter of the budget stayed within its limit.
    pub within_budget: bool,
}

/// Opens with `open`, describes, and reports what came of it.
pub fn answer<'a>(opened: Result<Checkpoint<'a>>) -> Answer {
    let checkpoint = match opened {
        Ok(checkpoint) => checkpoint,
        Err(e) => {
            return Answer {
                outcome: Err(e.code().as_str()),
                within_budget: true,
            };
        }
    };
    let outcome =
        match checkpoint.describe() {
            Ok(description) => Ok(serde_json::to_string(&description)
                .unwrap_or_else(|e| format!("unserializable: {e}"))),
            Err(e) => Err(e.code().as_str()),
        };
    let budget = checkpoint.budget();
    let limits = checkpoint.limits();
    Answer {
        outcome,
        within_budget: budget.memory_used() <= limits.max_memory
            && budget.steps_used() <= limits.max_steps,
    }
}

/// What reading some bytes both ways answered, and the most heap either read held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub answer: Answer,
    /// Peak heap bytes of the larger of the two reads (0 without the counting allocator).
    pub peak_heap: u64,
}

impl Read {
    /// Whether the reads held at most their memory budget plus [`heap::SLACK`].
    pub fn heap_within(&self, limits: &Limits) -> bool {
        self.peak_heap <= limits.max_memory.saturating_add(heap::SLACK)
    }
}

/// Reads `data` from memory and through a reader with the same `limits`: both must give the
/// same answer. Returns it with the reads' peak heap, or both answers when they differ.
pub fn both_paths(data: &[u8], limits: &Limits) -> std::result::Result<Read, (Answer, Answer)> {
    let (from_bytes, bytes_peak) =
        heap::peak_of(|| answer(Checkpoint::from_bytes_with_limits(data, limits.clone())));
    let (from_reader, reader_peak) = heap::peak_of(|| {
        let cursor = std::io::Cursor::new(data);
        answer(Checkpoint::from_reader_with_limits(cursor, limits.clone()))
    });
    if from_bytes == from_reader {
        Ok(Read {
            answer: from_bytes,
            peak_heap: bytes_peak.max(reader_peak),
        })
    } else {
        Err((from_bytes, from_reader))
    }
}

/// Panics, on purpose, when a measured read held more than its budget plus the slack.
#[allow(clippy::panic)]
fn assert_heap(what: &str, peak: u64, limits: &Limits) {
    let most = limits.max_memory.saturating_add(heap::SLACK);
    if peak > most {
        panic!(
            "{what}: peak heap {peak} bytes > budget {} + slack {}",
            limits.max_memory,
            heap::SLACK
        );
    }
}

/// Bytes as a whole checkpoint file: open, describe, read every tensor, summarize.
pub fn archive(data: &[u8]) {
    let ((), peak) = heap::peak_of(|| {
        let Ok(checkpoint) = Checkpoint::from_bytes_with_limits(data, limits()) else {
            return;
        };
        if let Ok(description) = checkpoint.describe() {
            exercise(&checkpoint, &description);
        }
    });
    assert_heap("reading from memory", peak, &limits());
}

/// Bytes as a reader instead of a slice (the lazy path).
pub fn reader(data: &[u8]) {
    let ((), peak) = heap::peak_of(|| {
        let cursor = std::io::Cursor::new(data);
        let Ok(checkpoint) = Checkpoint::from_reader_with_limits(cursor, limits()) else {
            return;
        };
        if let Ok(description) = checkpoint.describe() {
            exercise(&checkpoint, &description);
        }
    });
    assert_heap("reading through a reader", peak, &limits());
}

/// Bytes read both ways: the answers must agree and stay within the budget, and the heap
/// within the budget plus the slack (the oracle of the `paths` and `legacy` fuzz targets).
/// Panics, on purpose, when they do not.
#[allow(clippy::panic)]
pub fn paths(data: &[u8]) {
    let limits = limits();
    match both_paths(data, &limits) {
        Ok(read) => {
            assert!(read.answer.within_budget, "budget exceeded: {read:?}");
            assert_heap("reading both ways", read.peak_heap, &limits);
        }
        Err((bytes, reader)) => {
            panic!("reading from memory gives {bytes:?}, from a reader {reader:?}")
        }
    }
}

/// The first three pickles of a legacy-format file (magic number, protocol version 1001,
/// little-endian system info), as `torch.save(..., _use_new_zipfile_serialization=False)`
/// writes them.
pub const LEGACY_HEADER: &[u8] = &[
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.', 0x80,
    0x02, b'M', 0xe9, 0x03, b'.', 0x80, 0x02, b'}', b'q', 0x00, b'X', 0x0d, 0x00, 0x00, 0x00, b'l',
    b'i', b't', b't', b'l', b'e', b'_', b'e', b'n', b'd', b'i', b'a', b'n', b'q', 0x01, 0x88, b's',
    b'.',
];

/// The first pickle of [`LEGACY_HEADER`]: the magic number.
const LEGACY_MAGIC: &[u8] = &[
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
];

/// Bytes as a legacy-format file: used whole when they start with the legacy header, else
/// after it, so the fuzzer spends its time on the object pickle, the storage keys and the
/// storage sections. Read both ways, as [`paths`] does.
pub fn legacy(data: &[u8]) {
    paths(&as_legacy_file(data));
}

/// `data` when it starts with the legacy magic number, else [`LEGACY_HEADER`] then `data`.
pub fn as_legacy_file(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // The magic number's pickle: what a legacy file must start with.
    if data.starts_with(LEGACY_MAGIC) {
        return data.into();
    }
    let mut file = Vec::with_capacity(LEGACY_HEADER.len() + data.len());
    file.extend_from_slice(LEGACY_HEADER);
    file.extend_from_slice(data);
    file.into()
}

/// Bytes as a bare pickle program.
pub fn pickle(data: &[u8]) {
    let limits = limits();
    let (_, peak) = heap::peak_of(|| crate::pickle::parse(data, &limits));
    assert_heap("running a pickle", peak, &limits);
}

/// Bytes as a `data.pkl` whose storages `"0"` to `"1023"` all exist (zero-filled), so the
/// description walk gets past the storage checks.
pub fn describe(data: &[u8]) {
    let storages: Vec<(String, &[u8])> = (0..1024)
        .map(|key: u32| (key.to_string(), &ZEROS[..]))
        .collect();
    let ((), peak) = heap::peak_of(|| {
        let Ok(checkpoint) = Checkpoint::from_parts(data, storages, limits()) else {
            return;
        };
        if let Ok(description) = checkpoint.describe() {
            exercise(&checkpoint, &description);
        }
    });
    assert_heap("describing a pickle", peak, &limits());
}
