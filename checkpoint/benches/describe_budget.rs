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

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use yolots_checkpoint::Checkpoint;

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// Reads and describes `bytes`, printing the time, the peak extra memory and the outcome.
fn measure(name: &str, bytes: &[u8]) -> (f64, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let outcome = Checkpoint::from_bytes(bytes).and_then(|c| c.describe());
    let seconds = start.elapsed().as_secs_f64();
    let peak = PEAK.load(Ordering::Relaxed) - base;
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

/// Writes one hostile checkpoint.
type Build = Box<dyn Fn() -> Vec<u8>>;

fn main() {
    use hostile_model::*;
    official();
    const MIB: usize = 1 << 20;
    let inputs: Vec<(&str, Build)> = vec![
        ("3.9e6 shared layers", Box::new(|| shared_layers(3_900_000))),
        ("1e6 shared layers", Box::new(|| shared_layers(1_000_000))),
        ("2e4 cyclic layers", Box::new(|| cyclic_layers(20_000))),
        ("1e5 cyclic layers", Box::new(|| cyclic_layers(100_000))),
        (
            "2e6-entry dict shared by 1e3",
            Box::new(|| shared_attribute_dict(2_000_000, 1_000)),
        ),
        ("nc = 1e9, no names", Box::new(|| classes(1_000_000_000))),
        ("nc = 1e5, no names", Box::new(|| classes(100_000))),
        (
            "16 MB name shared 1e3 times",
            Box::new(|| shared_name(16 * MIB, 1_000)),
        ),
        (
            "1e6 inputs shared by 1e3",
            Box::new(|| shared_inputs(1_000_000, 1_000)),
        ),
        ("16 MB layer key", Box::new(|| huge_key(16 * MIB))),
        (
            "16 MB class name",
            Box::new(|| huge_class(16 * MIB, "Conv")),
        ),
        (
            "16 MB activation name",
            Box::new(|| huge_activation(16 * MIB)),
        ),
        ("5e4-dim weight", Box::new(|| many_dims(50_000))),
        (
            "1e6 mixed-stride inputs",
            Box::new(|| mixed_strides(1_000_000)),
        ),
        (
            "12 keys of 4 MB, no model",
            Box::new(|| huge_keys_no_model(4 * MIB)),
        ),
    ];
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
