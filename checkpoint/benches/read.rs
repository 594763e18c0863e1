//! Reading and describing the full-size YOLOv7 checkpoint (`../shared/fixtures/yolov7-full.pt`,
//! 75.6 MB): time with criterion, extra memory with a counting allocator.
//!
//! Targets (printed, not asserted): read + describe in at most 60 ms, and at most 1.2x the
//! file size of extra memory.
//!
//! Then the hostile inputs (memo growth, duplicated values, deflated storages, huge
//! central directories and names, long legacy pickles), each up to 64 MB: the worst peak
//! memory and time of opening (from memory and through a reader), describing and reading
//! every tensor. Target: at most 256 MB and 2 s each, the budget error otherwise.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use yolots_checkpoint::Checkpoint;
use yolots_checkpoint::fuzzing::heap;

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/hostile.rs"]
mod hostile;

#[global_allocator]
static HEAP: heap::CountingAllocator = heap::CountingAllocator;

fn path() -> PathBuf {
    common::manifest_dir().join("../../shared/fixtures/yolov7-full.pt")
}

/// [`peak_of`] for the hostile report.
fn peak_of_boxed(f: hostile::Run<'_>) -> (String, usize) {
    peak_of(f)
}

/// Peak bytes allocated by `f` beyond what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (out, peak) = heap::peak_of(f);
    (out, peak as usize)
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

fn report(bytes: &[u8]) {
    let file = bytes.len();
    let start = Instant::now();
    let (description, extra) = peak_of(|| {
        let checkpoint = Checkpoint::from_bytes(bytes).expect("opens");
        checkpoint.describe().expect("describes")
    });
    let once = start.elapsed();
    println!(
        "yolov7-full.pt: {:.1} MB, {} layers, {} parameters",
        mb(file),
        description.layers.len(),
        description.parameters
    );
    println!(
        "from_bytes + describe: first run {:.1} ms, peak extra memory {:.2} MB = {:.3}x the file",
        once.as_secs_f64() * 1e3,
        mb(extra),
        extra as f64 / file as f64
    );
    let (_, with_file) = peak_of(|| {
        let bytes = std::fs::read(path()).expect("reads");
        let checkpoint = Checkpoint::from_bytes(&bytes).expect("opens");
        checkpoint.describe().expect("describes")
    });
    println!(
        "read file + from_bytes + describe: peak {:.2} MB = {:.3}x the file",
        mb(with_file),
        with_file as f64 / file as f64
    );
    let (_, lazy) = peak_of(|| {
        let checkpoint = Checkpoint::open(path()).expect("opens");
        checkpoint.describe().expect("describes")
    });
    println!(
        "open (lazy reader) + describe: peak {:.2} MB = {:.3}x the file",
        mb(lazy),
        lazy as f64 / file as f64
    );
}

fn bench(c: &mut Criterion) {
    let Ok(bytes) = std::fs::read(path()) else {
        eprintln!("{} is missing: nothing to benchmark", path().display());
        return;
    };
    report(&bytes);
    hostile::report(peak_of_boxed);
    let mut group = c.benchmark_group("yolov7-full");
    group.sample_size(30);
    group.bench_function("from_bytes+describe", |b| {
        b.iter(|| {
            let checkpoint = Checkpoint::from_bytes(black_box(&bytes)).expect("opens");
            black_box(checkpoint.describe().expect("describes"))
        })
    });
    group.bench_function("open+describe (lazy file reader)", |b| {
        b.iter(|| {
            let checkpoint = Checkpoint::open(path()).expect("opens");
            black_box(checkpoint.describe().expect("describes"))
        })
    });
    let checkpoint = Checkpoint::from_bytes(&bytes).expect("opens");
    let description = checkpoint.describe().expect("describes");
    group.bench_function("tensor_data of every tensor (borrowed)", |b| {
        b.iter(|| {
            for tensor in description.tensors() {
                black_box(checkpoint.tensor_data(tensor).expect("reads"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
