//! The reader's budget as an invariant: whatever the input, the real peak heap of a read,
//! measured by a counting global allocator, stays within the memory budget plus
//! [`heap::SLACK`]. Every read here goes through `paths::agree`, which measures it (from
//! memory, through a reader and from a file) and fails past that bound.

#![allow(clippy::unwrap_used)]

mod common;
mod hostile_model;
#[path = "common/paths.rs"]
mod paths;

use common::{Pickle, legacy_header, legacy_of, torch_legacy};
use yolots_checkpoint::fuzzing::{self, heap};
use yolots_checkpoint::{Checkpoint, Error, Limits};

const MIB: usize = 1 << 20;

#[test]
fn the_allocator_counts_this_binary() {
    assert!(heap::installed());
    let (len, peak) = heap::peak_of(|| vec![1u8; 3 * MIB].len());
    assert_eq!(len, 3 * MIB);
    assert!(peak >= 3 * MIB as u64, "peak {peak}");
    // Freed memory is not counted again, and nested measures see only their own part.
    let ((), outer) = heap::peak_of(|| {
        let (_, inner) = heap::peak_of(|| vec![0u8; MIB].len());
        assert!(inner >= MIB as u64);
        let (_, inner) = heap::peak_of(|| vec![0u8; 16].len());
        assert!(inner < 1024, "{inner}");
    });
    assert!(outer >= MIB as u64, "{outer}");
}

#[test]
fn the_fuzzers_legacy_header_is_what_torch_writes() {
    assert_eq!(fuzzing::LEGACY_HEADER, legacy_header(true).as_slice());
}

/// A legacy archive whose storage-key list holds `copies` references to one string of `len`
/// bytes (memoized once), after an object with one tensor in storage `"0"`.
fn repeated_key_list(len: usize, copies: usize) -> Vec<u8> {
    let object = Pickle::new()
        .tensor("FloatStorage", "0", 4, 0, &[4], &[1])
        .stop();
    let mut bytes = legacy_header(true);
    bytes.extend_from_slice(&object);
    let mut keys = Pickle::new()
        .op(b']')
        .mark()
        .str(&"1".repeat(len))
        .op(b'r')
        .raw(&0u32.to_le_bytes());
    for _ in 1..copies {
        keys = keys.op(b'j').raw(&0u32.to_le_bytes());
    }
    bytes.extend_from_slice(&keys.op(b'e').stop());
    bytes
}

#[test]
fn a_legacy_key_list_of_one_long_string_is_refused_within_the_budget() {
    // 16 MB on disk: 2,000 references to one 16 MiB key used to be copied (32 GB).
    let bytes = repeated_key_list(16 * MIB, 2_000);
    assert!(bytes.len() < 17 * MIB, "{} bytes", bytes.len());
    let error = Checkpoint::from_bytes(&bytes).unwrap_err();
    match &error {
        Error::LimitExceeded {
            what,
            limit,
            actual,
        } => {
            assert_eq!(*what, "legacy storage key length", "{error}");
            assert_eq!(*limit, 64);
            assert_eq!(*actual, 16 * MIB as u64);
        }
        other => panic!("expected the key length limit, got {other:?}"),
    }
    assert_eq!(error.code(), "limit_exceeded");
    let answer = paths::agree(&bytes);
    assert_eq!(answer.outcome, Err("limit_exceeded"));

    // Short keys repeated are caught as listed twice; a real list is read.
    let answer = paths::agree(&repeated_key_list(1, 2_000));
    assert_eq!(answer.outcome, Err("corrupt"), "{answer:?}");
    let object = Pickle::new()
        .tensor("FloatStorage", "0", 4, 0, &[4], &[1])
        .stop();
    let good = torch_legacy(&object, &[("0", &[0; 16])], 4);
    let checkpoint = Checkpoint::from_bytes(&good).unwrap();
    let used = checkpoint.budget().memory_used();
    assert!(used < MIB as u64, "{used} bytes charged");
}

#[test]
fn storage_keys_longer_than_any_real_one_are_refused_in_both_formats() {
    let object = |key: &str| {
        Pickle::new()
            .tensor("FloatStorage", key, 4, 0, &[4], &[1])
            .stop()
    };
    let long = "9".repeat(65);
    let zip = common::torch_zip(&object(&long), &[(&long, &[0; 16])], "little");
    let legacy = torch_legacy(&object(&long), &[(&long, &[0; 16])], 4);
    for bytes in [zip, legacy] {
        let error = Checkpoint::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(
                error,
                Error::LimitExceeded {
                    what: "storage key length",
                    ..
                }
            ),
            "{error}"
        );
        paths::agree(&bytes);
    }
    // 64 bytes is still a key.
    let key = "9".repeat(64);
    let bytes = torch_legacy(&object(&key), &[(&key, &[0; 16])], 4);
    Checkpoint::from_bytes(&bytes).unwrap();
}

/// The worst peak heap of the generated inputs, in both formats, with the default limits
/// and with the fuzzers' tighter ones. The formats are read side by side on two threads:
/// the allocator counts each thread on its own.
#[test]
fn generated_inputs_of_both_formats_stay_within_the_budget() {
    let catalog = hostile_model::catalog();
    let worst_of = |format: &'static str| {
        let mut worst = (0u64, String::new());
        for (name, build) in &catalog {
            let zip = build();
            let bytes = if format == "zip" {
                zip
            } else {
                legacy_of(&zip)
            };
            for limits in [Limits::default(), fuzzing::limits()] {
                let read = paths::measure_with(&bytes, &limits);
                assert!(read.answer.within_budget, "{name} ({format}): {read:?}");
                if read.peak_heap > worst.0 {
                    worst = (read.peak_heap, format!("{name} ({format})"));
                }
            }
        }
        worst
    };
    let (zip, legacy) = std::thread::scope(|scope| {
        let zip = scope.spawn(|| worst_of("zip"));
        let legacy = scope.spawn(|| worst_of("legacy"));
        (zip.join().unwrap(), legacy.join().unwrap())
    });
    for (peak, name) in [zip, legacy] {
        println!("worst peak heap: {peak} bytes, {name}");
    }
}

/// A pickle whose one value is a string, bytes or name of `len` bytes, written by `op`.
fn one_huge_value(op: &str, len: usize) -> Vec<u8> {
    let text = "a".repeat(len);
    let latin1 = vec![0xe9u8; len];
    let p = Pickle::new();
    let p = match op {
        "BINUNICODE" => p.str(&text),
        "BINBYTES" => p
            .op(b'B')
            .raw(&(len as u32).to_le_bytes())
            .raw(text.as_bytes()),
        "BINSTRING latin-1" => p.op(b'T').raw(&(len as u32).to_le_bytes()).raw(&latin1),
        "LONG4" => p.op(0x8b).raw(&(len as u32).to_le_bytes()).raw(&latin1),
        "GLOBAL" => p.global(&text, "Model"),
        "STACK_GLOBAL" => p.str(&text).str("Model").op(0x93),
        "UNICODE" => p.op(b'V').raw(text.as_bytes()).op(b'\n'),
        "STRING" => p.op(b'S').raw(b"'").raw(text.as_bytes()).raw(b"'\n"),
        other => panic!("no writer for {other}"),
    };
    common::torch_zip(&p.stop(), &[], "little")
}

#[test]
fn values_are_refused_before_they_are_copied_out_of_the_program() {
    // A 30 MiB value in a 40 MiB budget: the program (30 MiB, paid) and a copy of the value
    // would hold 60 MiB, past the budget and the slack, before the value was paid for.
    let limits = Limits {
        max_memory: 40 * MIB as u64,
        ..Limits::default()
    };
    for op in [
        "BINUNICODE",
        "BINBYTES",
        "BINSTRING latin-1",
        "LONG4",
        "GLOBAL",
        "STACK_GLOBAL",
        "UNICODE",
        "STRING",
    ] {
        let bytes = one_huge_value(op, 30 * MIB);
        let read = paths::measure_with(&bytes, &limits);
        assert_eq!(read.answer.outcome, Err("limit_exceeded"), "{op}: {read:?}");
        assert!(
            read.peak_heap < limits.max_memory,
            "{op}: {} bytes of heap",
            read.peak_heap
        );
    }
}
