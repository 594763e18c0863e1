//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus replay test.
//! Each takes arbitrary bytes and must never panic, whatever they hold.

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

/// Reads `data` from memory and through a reader with the same `limits`: both must give the
/// same answer. Returns it, or both answers when they differ.
pub fn both_paths(data: &[u8], limits: &Limits) -> std::result::Result<Answer, (Answer, Answer)> {
    let from_bytes = answer(Checkpoint::from_bytes_with_limits(data, limits.clone()));
    let cursor = std::io::Cursor::new(data);
    let from_reader = answer(Checkpoint::from_reader_with_limits(cursor, limits.clone()));
    if from_bytes == from_reader {
        Ok(from_bytes)
    } else {
        Err((from_bytes, from_reader))
    }
}

/// Bytes as a whole checkpoint file: open, describe, read every tensor, summarize.
pub fn archive(data: &[u8]) {
    let Ok(checkpoint) = Checkpoint::from_bytes_with_limits(data, limits()) else {
        return;
    };
    if let Ok(description) = checkpoint.describe() {
        exercise(&checkpoint, &description);
    }
}

/// Bytes as a reader instead of a slice (the lazy path).
pub fn reader(data: &[u8]) {
    let cursor = std::io::Cursor::new(data);
    let Ok(checkpoint) = Checkpoint::from_reader_with_limits(cursor, limits()) else {
        return;
    };
    if let Ok(description) = checkpoint.describe() {
        exercise(&checkpoint, &description);
    }
}

/// Bytes read both ways: the answers must agree and stay within the budget (the oracle
/// of the `paths` fuzz target). Panics, on purpose, when they do not.
#[allow(clippy::panic)]
pub fn paths(data: &[u8]) {
    match both_paths(data, &limits()) {
        Ok(answer) => assert!(answer.within_budget, "budget exceeded: {answer:?}"),
        Err((bytes, reader)) => {
            panic!("reading from memory gives {bytes:?}, from a reader {reader:?}")
        }
    }
}

/// Bytes as a bare pickle program.
pub fn pickle(data: &[u8]) {
    let _ = crate::pickle::parse(data, &limits());
}

/// Bytes as a `data.pkl` whose storages `"0"` to `"1023"` all exist (zero-filled), so the
/// description walk gets past the storage checks.
pub fn describe(data: &[u8]) {
    let storages = (0..1024).map(|key: u32| (key.to_string(), &ZEROS[..]));
    let Ok(checkpoint) = Checkpoint::from_parts(data, storages, limits()) else {
        return;
    };
    if let Ok(description) = checkpoint.describe() {
        exercise(&checkpoint, &description);
    }
}
