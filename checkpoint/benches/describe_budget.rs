//! Peak memory and time of reading and describing hand-made hostile checkpoints (shared
//! layer lists, cycles, a huge shared attribute dict, huge or many class names, shared input
//! lists, huge values to quote), each at a size that exhausted memory or time before the
//! description had a budget.
//!
//! Targets (printed, not asserted): at most 256 MB of extra memory and 2 s per file, the
//! file accepted or refused with a typed error.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/hostile_model/mod.rs"]
mod hostile_model;

use std::time::Instant;

use yolots_checkpoint::Checkpoint;
use yolots_checkpoint::fuzzing::heap;

#[global_allocator]
static HEAP: heap::CountingAllocator = heap::CountingAllocator;

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// Reads and describes `bytes`, printing the time, the peak extra memory and the outcome.
fn measure(name: &str, bytes: &[u8]) -> (f64, usize) {
    let start = Instant::now();
    let (outcome, peak) =
        heap::peak_of(|| Checkpoint::from_bytes(bytes).and_then(|c| c.describe()));
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak as usize;
    let outcome = match outcome {
        Ok(d) => format!("described, {} layers", d.layers.len()),
        Err(e) => {
            let message = e.to_string();
            let cut: String = message.chars().take(110).collect();
            format!("{} ({} bytes): {cut}", e.code(), message.len())
        }
    };
    println!(
        "{name:<34} file {:>6.1} MB  {:>8.1} ms  peak {:>6.1} MB  {outcome}",
        mb(bytes.len()),
        seconds * 1e3,
        mb(peak)
    );
    (seconds, peak)
}

/// The full-size official checkpoint: best of 20 runs of `describe()` alone and of
/// `from_bytes` + `describe()` (target: 60 ms), and the budget a read spends on it.
fn official() {
    let dir = common::fixtures_dir();
    let Ok(bytes) = std::fs::read(dir.join("yolov7-full.pt")) else {
        println!("yolov7-full.pt is missing: not measured");
        return;
    };
    let mut both = f64::MAX;
    let mut alone = f64::MAX;
    let mut spent = (0, 0);
    for _ in 0..20 {
        let start = Instant::now();
        let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
        let opened = start.elapsed().as_secs_f64();
        let described = Instant::now();
        checkpoint.describe().unwrap();
        alone = alone.min(described.elapsed().as_secs_f64());
        both = both.min(opened + described.elapsed().as_secs_f64());
        let budget = checkpoint.budget();
        spent = (budget.memory_used(), budget.steps_used());
    }
    println!(
        "yolov7-full.pt: describe {:.1} ms, from_bytes + describe {:.1} ms (best of 20); \
         budget spent {:.1} MB, {} steps",
        alone * 1e3,
        both * 1e3,
        mb(spent.0 as usize),
        spent.1
    );
}

fn main() {
    official();
    let inputs = hostile_model::catalog();
    let mut worst = (0.0f64, 0usize);
    for (name, build) in inputs {
        let bytes = build();
        let (seconds, peak) = measure(name, &bytes);
        worst = (worst.0.max(seconds), worst.1.max(peak));
    }
    println!(
        "worst: {:.1} ms, peak {:.1} MB (targets: 2000 ms, 256 MB)",
        worst.0 * 1e3,
        mb(worst.1)
    );
}
