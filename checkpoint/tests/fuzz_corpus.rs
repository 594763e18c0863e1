//! Replays the fuzzing seed corpus (`fuzz/corpus/<target>/`) and any crash the fuzzer left
//! in `fuzz/artifacts/<target>/` through the same entry points as the cargo-fuzz targets:
//! none may panic, and no read may hold more heap than its budget plus the slack (this
//! binary counts its allocations). Runs on stable, without libFuzzer.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use yolots_checkpoint::fuzzing::{self, heap};

mod common;
#[path = "common/paths.rs"]
mod paths;

fn fuzz_dir() -> PathBuf {
    common::manifest_dir().join("../fuzz")
}

/// The entry points of a target folder.
fn entries(target: &str) -> Vec<fn(&[u8])> {
    match target {
        "archive" => vec![fuzzing::archive, fuzzing::reader, fuzzing::paths],
        "pickle" => vec![fuzzing::pickle],
        "describe" => vec![fuzzing::describe],
        "legacy" => vec![fuzzing::legacy],
        _ => vec![
            fuzzing::legacy,
            fuzzing::archive,
            fuzzing::reader,
            fuzzing::paths,
            fuzzing::pickle,
            fuzzing::describe,
        ],
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    assert!(heap::installed(), "the counting allocator is not installed");
    let mut count = 0;
    for target in files_or_dirs(&fuzz_dir().join(kind)) {
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        for file in files(&target) {
            let data = std::fs::read(&file).unwrap();
            for entry in entries(&name) {
                entry(&data);
            }
            // Every prefix of small inputs too: truncation is the commonest damage.
            if data.len() <= 512 {
                for cut in 0..data.len() {
                    for entry in entries(&name) {
                        entry(&data[..cut]);
                    }
                }
            }
            count += 1;
        }
    }
    count
}

fn files_or_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = read
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn seed_corpus_replays_without_panics() {
    let count = replay("corpus");
    assert!(
        count >= 10,
        "the seed corpus is in fuzz/corpus ({count} files found)"
    );
}

#[test]
fn the_legacy_corpus_grown_by_fuzzing_replays() {
    // The corpus `cargo fuzz run legacy` grew, committed: every input read both ways within
    // its budget and its heap bound.
    let dir = fuzz_dir().join("corpus/legacy");
    let files = files(&dir);
    assert!(
        files.len() >= 100,
        "{}: {} files; the grown legacy corpus is committed there",
        dir.display(),
        files.len()
    );
    for file in files {
        fuzzing::legacy(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn fuzz_artifacts_replay_without_panics() {
    // Crashes found by `cargo fuzz run` land here; once fixed they stay as regressions.
    replay("artifacts");
}

#[test]
fn seed_pickles_are_valid() {
    // The pickle seeds are well-formed programs: the machine reads every one.
    let limits = yolots_checkpoint::Limits::default();
    for file in files(&fuzz_dir().join("corpus/pickle")) {
        let data = std::fs::read(&file).unwrap();
        if let Err(e) = yolots_checkpoint::pickle::parse(&data, &limits) {
            panic!("{}: {e}", file.display());
        }
    }
}
