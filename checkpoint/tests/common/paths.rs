//! Every way of opening a checkpoint must give the same answer: from memory, through a
//! reader, and from a file on disk.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use yolots_checkpoint::fuzzing::{Answer, answer, both_paths};
use yolots_checkpoint::{Checkpoint, Limits};

/// Reads `bytes` from memory, through a `Cursor` and from a temporary file with default
/// limits; panics when the answers differ or a read passed its budget, else returns the
/// answer.
pub fn agree(bytes: &[u8]) -> Answer {
    agree_with(bytes, &Limits::default())
}

/// [`agree`] with explicit limits (the file is opened with the default ones, so it is only
/// compared under default limits).
pub fn agree_with(bytes: &[u8], limits: &Limits) -> Answer {
    let answer = match both_paths(bytes, limits) {
        Ok(answer) => answer,
        Err((from_bytes, from_reader)) => panic!(
            "{} bytes: from memory {from_bytes:?}, through a reader {from_reader:?}",
            bytes.len()
        ),
    };
    assert!(answer.within_budget, "budget exceeded: {answer:?}");
    if *limits == Limits::default() {
        let from_file = from_file(bytes);
        assert_eq!(
            answer,
            from_file,
            "{} bytes: from memory and from a file differ",
            bytes.len()
        );
    }
    answer
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
