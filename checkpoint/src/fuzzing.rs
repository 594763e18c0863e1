//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus replay test.
//! Each takes arbitrary bytes and must never panic, whatever they hold.

use crate::inspect::Summary;
use crate::{Checkpoint, Limits, ModelDescription};

/// Tighter limits than the defaults, so each input stays cheap.
fn limits() -> Limits {
    Limits {
        max_objects: 1 << 20,
        max_memo: 1 << 20,
        max_container_len: 1 << 20,
        max_total_inflated: 256 << 20,
        max_entry_size: 256 << 20,
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
