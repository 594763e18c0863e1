//! The reader's memory budget as an invariant, measured: the real peak heap (counted by the
//! global allocator) of reading each hostile input from memory and through a reader, and
//! of describing it. Inputs: the generated ones of both formats (zip and legacy) with shared
//! references at every place one can stand, the archive-side hostile inputs, a legacy
//! storage-key list of one long string, and every file of the fuzz corpus.
//!
//! Goal (printed, not asserted; the tests assert it): at most the budget plus 16 MiB for
//! every input, with the default limits and with the fuzzers' tighter ones.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;
// Only its inputs are used here; the read benchmark uses its report too.
#[allow(dead_code)]
#[path = "support/hostile.rs"]
mod hostile;
#[path = "../tests/hostile_model/mod.rs"]
mod hostile_model;

use std::path::PathBuf;
use std::time::Instant;

use yolots_checkpoint::Limits;
use yolots_checkpoint::fuzzing::{self, heap};

#[global_allocator]
static HEAP: heap::CountingAllocator = heap::CountingAllocator;

const MIB: f64 = (1 << 20) as f64;

/// The worst read so far: its peak beyond its own budget, the peak, and the input.
#[derive(Default)]
struct Worst {
    over_budget: i64,
    peak: u64,
    input: String,
    count: usize,
}

impl Worst {
    /// Reads `bytes` both ways under `limits`, prints the figures when `print`, keeps the
    /// worst.
    fn read(&mut self, name: &str, bytes: &[u8], limits: &Limits, print: bool) {
        let start = Instant::now();
        let read = match fuzzing::both_paths(bytes, limits) {
            Ok(read) => read,
            Err((a, b)) => panic!("{name}: the two paths differ: {a:?} | {b:?}"),
        };
        let seconds = start.elapsed().as_secs_f64();
        let over = read.peak_heap as i64 - limits.max_memory as i64;
        if print {
            println!(
                "  {name}: {:.1} MB file, peak heap {:.1} MiB of a {:.0} MiB budget, {:.2} s, {}",
                bytes.len() as f64 / 1e6,
                read.peak_heap as f64 / MIB,
                limits.max_memory as f64 / MIB,
                seconds,
                match &read.answer.outcome {
                    Ok(_) => "described",
                    Err(code) => code,
                }
            );
        }
        self.count += 1;
        if self.count == 1 || over > self.over_budget {
            *self = Worst {
                over_budget: over,
                peak: read.peak_heap,
                input: format!("{name} (budget {:.0} MiB)", limits.max_memory as f64 / MIB),
                count: self.count,
            };
        }
    }
}

fn corpus_files() -> Vec<(String, Vec<u8>)> {
    let root = common::manifest_dir().join("../fuzz/corpus");
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    dirs.sort();
    for dir in dirs {
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|r| r.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let name = format!(
                "corpus/{target}/{}",
                file.file_name().unwrap().to_string_lossy()
            );
            let bytes = match target.as_str() {
                "legacy" => fuzzing::as_legacy_file(&data).into_owned(),
                "pickle" | "describe" => common::torch_zip(&data, &[], "little"),
                _ => data,
            };
            out.push((name, bytes));
        }
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let default = Limits::default();
    let tight = fuzzing::limits();
    let mut worst = Worst::default();
    println!("reader heap: peak of the larger of the two reads (memory, reader), open + describe");
    println!("generated inputs, zip and legacy:");
    for (name, build) in hostile_model::catalog() {
        let zip = build();
        let legacy = common::legacy_of(&zip);
        for (format, bytes) in [("zip", &zip), ("legacy", &legacy)] {
            worst.read(&format!("{name}, {format}"), bytes, &default, true);
            worst.read(&format!("{name}, {format}"), bytes, &tight, false);
        }
    }
    println!("archive-side hostile inputs:");
    for (name, build) in hostile::inputs() {
        let (bytes, _) = build();
        worst.read(name, &bytes, &default, true);
        worst.read(name, &bytes, &tight, false);
    }
    let corpus = corpus_files();
    let corpus_start = Instant::now();
    let mut corpus_worst = Worst::default();
    for (name, bytes) in &corpus {
        corpus_worst.read(name, bytes, &default, false);
        corpus_worst.read(name, bytes, &tight, false);
    }
    println!(
        "fuzz corpus: {} files read both ways under both limits in {:.1} s; worst peak heap \
         {:.2} MiB ({})",
        corpus.len(),
        corpus_start.elapsed().as_secs_f64(),
        corpus_worst.peak as f64 / MIB,
        corpus_worst.input
    );
    let total = worst.count + corpus_worst.count;
    if corpus_worst.over_budget > worst.over_budget {
        worst = corpus_worst;
    }
    println!(
        "worst over {total} reads: peak heap {:.1} MiB, {:+.1} MiB against its budget ({}); \
         goal at most +16 MiB: {}",
        worst.peak as f64 / MIB,
        worst.over_budget as f64 / MIB,
        worst.input,
        if worst.over_budget <= (heap::SLACK as i64) {
            "met"
        } else {
            "MISSED"
        }
    );
}
