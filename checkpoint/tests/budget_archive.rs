//! The reader's memory and work stay within its budget on inputs built to blow them up:
//! memo growth, value amplification, deflated storages, huge central directories, huge
//! quoted names. Each input would have cost gigabytes or minutes before the budget; each
//! is now refused with a typed error (or read within the budget), and every way of
//! opening it gives the same answer.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/paths.rs"]
mod paths;

use std::io::Write;

use common::{Pickle, ZipEntry, stored, torch_zip, zip};
use yolots_checkpoint::{Checkpoint, DType, Error, Limits, TensorRef};

const MIB: u64 = 1 << 20;

/// A torch archive around a bare pickle, no storages.
fn archive(pickle: &[u8]) -> Vec<u8> {
    torch_zip(pickle, &[], "little")
}

fn is_budget_error(error: &Error) -> bool {
    matches!(error, Error::BudgetExceeded { .. }) && error.code() == "limit_exceeded"
}

fn limits_with_memory(max_memory: u64) -> Limits {
    Limits {
        max_memory,
        ..Limits::default()
    }
}

/// `LONG_BINPUT` of the top of the stack at `count` indices, each 1,023 past the last.
fn memo_stores(count: u32) -> Vec<u8> {
    let mut p = Pickle::new().op(b']');
    for i in 0..count {
        p = p.op(b'r').raw(&(i * 1023).to_le_bytes());
    }
    p.stop()
}

#[test]
fn memo_stores_past_its_end_cost_only_what_they_store() {
    // 37,000 stores in 186 KB: each used to grow the memo table by 1,023 slots (1.1 GB).
    let bytes = archive(&memo_stores(37_000));
    let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
    let used = checkpoint.budget().memory_used();
    assert!(used < 8 * MIB, "{used} bytes charged");
    paths::agree(&bytes);

    // A million of them (8 GB requested before): refused once the budget is spent.
    let bytes = archive(&memo_stores(1_000_000));
    let limits = limits_with_memory(32 * MIB);
    let error = Checkpoint::from_bytes_with_limits(&bytes, limits.clone()).unwrap_err();
    assert!(is_budget_error(&error), "{error}");
    paths::agree_with(&bytes, &limits);
}

/// A list of `pairs` references to one `(key, value)` pair, memoized at 0.
fn pair_list(pairs: usize) -> Pickle {
    let mut p = Pickle::new()
        .str("k")
        .op(b'N')
        .op(0x86)
        .op(b'q')
        .raw(&[1])
        .op(b'0')
        .mark();
    for _ in 0..pairs {
        p = p.op(b'h').raw(&[1]);
    }
    p.op(b'l').op(b'q').raw(&[0])
}

#[test]
fn duplicating_opcodes_cannot_amplify_values() {
    // `OrderedDict(pairs)` and `set(pairs)` copy 50,000 entries for 6 bytes of opcodes:
    // 5,000 of them built 8 GB of values before the budget.
    for callable in [("collections", "OrderedDict"), ("builtins", "set")] {
        let mut p = pair_list(50_000)
            .global(callable.0, callable.1)
            .op(b'q')
            .raw(&[2])
            .op(b'0');
        for _ in 0..5_000 {
            p = p
                .op(b'h')
                .raw(&[2])
                .op(b'h')
                .raw(&[0])
                .op(0x85)
                .op(b'R')
                .op(b'0');
        }
        let bytes = archive(&p.stop());
        assert!(bytes.len() < 200_000);
        let error = Checkpoint::from_bytes(&bytes).unwrap_err();
        assert!(is_budget_error(&error), "{callable:?}: {error}");
        paths::agree(&bytes);
    }

    // `APPENDS` of the same list again and again into one list: 1 GB of elements from a
    // program of a few hundred kilobytes.
    let mut p = pair_list(0).op(b']').op(b'q').raw(&[3]).op(b'0');
    for _ in 0..8 {
        p = p.op(b'h').raw(&[3]).mark();
        for _ in 0..20_000 {
            p = p.op(b'h').raw(&[1]);
        }
        p = p.op(b'e').op(b'0');
    }
    // Then double it with `set(list)` copies kept in a list.
    p = p.op(b']');
    for _ in 0..2_000 {
        p = p
            .global("builtins", "set")
            .op(b'h')
            .raw(&[3])
            .op(0x85)
            .op(b'R')
            .op(b'a');
    }
    let bytes = archive(&p.stop());
    let error = Checkpoint::from_bytes(&bytes).unwrap_err();
    assert!(is_budget_error(&error), "{error}");
    paths::agree(&bytes);
}

#[test]
fn every_opcode_is_charged_as_work() {
    // 2 million `DUP`/`POP` pairs: cheap opcodes, but each one counts.
    let mut program = Pickle::new().op(b'N');
    program
        .0
        .extend(std::iter::repeat_n([b'2', b'0'], 1_000_000).flatten());
    let program = program.stop();
    let limits = Limits {
        max_steps: 1_000_000,
        ..Limits::default()
    };
    let error = Checkpoint::from_bytes_with_limits(&archive(&program), limits.clone()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::BudgetExceeded {
                budget: "reader work",
                ..
            }
        ),
        "{error}"
    );
    // Within the default allowance it reads, and the work is on the bill.
    let bytes = archive(&program);
    let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
    assert!(checkpoint.budget().steps_used() >= 1_990_000);
    assert!(checkpoint.budget().steps_used() <= Limits::default().max_steps);
}

/// A raw deflate stream of `chunks` MiB of zeros and its CRC-32, assembled from one
/// compressed MiB repeated, so building a 1.9 GB entry takes no time.
fn zeros_deflated(chunks: u64) -> (Vec<u8>, u32) {
    let zeros = vec![0u8; MIB as usize];
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let next = |encoder: &mut flate2::write::DeflateEncoder<Vec<u8>>| {
        encoder.write_all(&zeros).unwrap();
        encoder.flush().unwrap();
        std::mem::take(encoder.get_mut())
    };
    let first = next(&mut encoder);
    let repeated = next(&mut encoder);
    assert_eq!(next(&mut encoder), repeated, "a flushed chunk repeats");
    let end = encoder.finish().unwrap();
    let mut stream = first;
    for _ in 1..chunks {
        stream.extend_from_slice(&repeated);
    }
    stream.extend_from_slice(&end);

    let mut one = crc32fast::Hasher::new();
    one.update(&zeros);
    let mut crc = crc32fast::Hasher::new();
    for _ in 0..chunks {
        crc.combine(&one);
    }
    (stream, crc.finalize())
}

fn f32_tensor(name: &str, key: &str, numel: usize, offset: usize) -> TensorRef {
    TensorRef {
        name: name.into(),
        dtype: DType::F32,
        shape: vec![numel],
        stride: vec![1],
        storage_offset: offset,
        storage_key: key.into(),
    }
}

#[test]
fn a_huge_deflated_storage_is_refused_before_inflating() {
    // 72 bytes of tensor in a 1.9 GB deflated entry: the file is 2 MB.
    let chunks = 1900;
    let (data, crc) = zeros_deflated(chunks);
    let program = Pickle::new()
        .tensor("FloatStorage", "0", 18, 0, &[18], &[1])
        .stop();
    let bytes = zip(&[
        stored("archive/data.pkl", &program),
        ZipEntry {
            name: "archive/data/0".into(),
            data,
            method: 8,
            crc,
            size: (chunks * MIB) as u32,
        },
    ]);
    assert!(bytes.len() < 3 * MIB as usize, "{}", bytes.len());
    let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
    let tensor = f32_tensor("small", "0", 18, 0);
    checkpoint.check_tensor(&tensor).unwrap();
    let error = checkpoint.tensor_data(&tensor).unwrap_err();
    assert!(is_budget_error(&error), "{error}");
    assert!(checkpoint.budget().memory_used() < 8 * MIB);
    // The same through a reader.
    let checkpoint = Checkpoint::from_reader(std::io::Cursor::new(&bytes)).unwrap();
    let error = checkpoint.tensor_data(&tensor).unwrap_err();
    assert!(is_budget_error(&error), "{error}");
}

#[test]
fn tensors_sharing_a_deflated_storage_inflate_it_once() {
    // 1,000 tensors in one 8 MiB deflated storage: reading them all used to inflate the
    // entry 1,000 times (8 GB of inflating); now it is inflated and paid for once.
    let numel = 2 * MIB as usize;
    let storage: Vec<u8> = (0..numel).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let count = 1_000;
    let mut p = Pickle::new().op(b']');
    for i in 0..count {
        p = p
            .tensor(
                "FloatStorage",
                "0",
                numel as i32,
                (i * 2_000) as i32,
                &[16],
                &[1],
            )
            .op(b'a');
    }
    let bytes = zip(&[
        stored("archive/data.pkl", &p.stop()),
        common::deflated("archive/data/0", &storage),
    ]);
    for checkpoint in [
        Checkpoint::from_bytes(&bytes).unwrap(),
        Checkpoint::from_reader(std::io::Cursor::new(&bytes)).unwrap(),
    ] {
        let before = checkpoint.budget().memory_used();
        for i in 0..count {
            let tensor = f32_tensor("t", "0", 16, i * 2_000);
            let values = checkpoint.tensor_f32(&tensor).unwrap();
            assert_eq!(values[0], (i * 2_000) as f32);
        }
        let inflated = checkpoint.budget().memory_used() - before;
        assert_eq!(inflated, storage.len() as u64);
    }
}

#[test]
fn tensors_built_from_repeated_elements_stay_within_the_budget() {
    // One stored float, read as 2^28 of them through a zero stride (1 GiB built).
    let program = Pickle::new()
        .tensor("FloatStorage", "0", 1, 0, &[1], &[1])
        .stop();
    let bytes = torch_zip(&program, &[("0", &[0; 4])], "little");
    let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
    let tensor = TensorRef {
        stride: vec![0],
        shape: vec![1 << 28],
        ..f32_tensor("broadcast", "0", 1, 0)
    };
    let error = checkpoint.tensor_data(&tensor).unwrap_err();
    assert!(is_budget_error(&error), "{error}");
}

/// A central directory of `count` entries of which only the first `valid` are whole: the
/// rest is cut short, so parsing it would fail, and only a count check made before
/// parsing gives a limit error.
fn many_entries(count: u32, valid: usize) -> Vec<u8> {
    let program = Pickle::new().empty_dict().stop();
    let mut entries = vec![stored("archive/data.pkl", &program)];
    for i in 0..count {
        entries.push(stored(&format!("archive/extra/{i}"), b""));
    }
    let mut bytes = zip(&entries);
    // Overwrite the central headers after the first `valid` ones with zeros.
    let cd_offset =
        u32::from_le_bytes(bytes[bytes.len() - 6..bytes.len() - 2].try_into().unwrap()) as usize;
    let eocd = bytes.len() - 22;
    let mut at = cd_offset;
    for _ in 0..valid {
        let name_len = u16::from_le_bytes([bytes[at + 28], bytes[at + 29]]) as usize;
        at += 46 + name_len;
    }
    bytes[at..eocd].fill(0);
    bytes
}

#[test]
fn the_entry_count_is_checked_before_the_central_directory_is_parsed() {
    let limits = Limits {
        max_entries: 1_000,
        ..Limits::default()
    };
    let bytes = many_entries(5_000, 10);
    for error in [
        Checkpoint::from_bytes_with_limits(&bytes, limits.clone()).unwrap_err(),
        Checkpoint::from_reader_with_limits(std::io::Cursor::new(&bytes), limits.clone())
            .unwrap_err(),
    ] {
        assert!(
            matches!(
                error,
                Error::LimitExceeded {
                    what: "zip entries",
                    actual: 5_001,
                    ..
                }
            ),
            "{error}"
        );
    }
    paths::agree_with(&bytes, &limits);

    // A zip64 end record declaring 5 million entries, as torch writes them (the 32-bit
    // record saturated): refused from the record alone.
    let mut bytes = many_entries(3, 3);
    let eocd = bytes.len() - 22;
    let cd_offset = u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().unwrap());
    let cd_size = u32::from_le_bytes(bytes[eocd + 12..eocd + 16].try_into().unwrap());
    bytes.truncate(eocd);
    let record = bytes.len() as u64;
    bytes.extend_from_slice(b"PK\x06\x06");
    bytes.extend_from_slice(&44u64.to_le_bytes());
    bytes.extend_from_slice(&[45, 0, 45, 0]);
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&5_000_000u64.to_le_bytes());
    bytes.extend_from_slice(&5_000_000u64.to_le_bytes());
    bytes.extend_from_slice(&u64::from(cd_size).to_le_bytes());
    bytes.extend_from_slice(&u64::from(cd_offset).to_le_bytes());
    bytes.extend_from_slice(b"PK\x06\x07");
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&record.to_le_bytes());
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(b"PK\x05\x06");
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&[0xff; 4]);
    bytes.extend_from_slice(&[0xff; 8]);
    bytes.extend_from_slice(&[0; 2]);
    let error = Checkpoint::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                what: "zip entries",
                actual: 5_000_000,
                ..
            }
        ),
        "{error}"
    );
    paths::agree(&bytes);
}

#[test]
#[allow(clippy::vec_init_then_push)] // one comment per input reads better than one vec![]
fn error_messages_quote_only_a_prefix_of_huge_values() {
    let huge = "x".repeat(4 << 20);
    let mut inputs = vec![];
    // A model class with a 4 MB name.
    inputs.push(archive(
        &Pickle::new()
            .empty_dict()
            .str("model")
            .global(&huge, "Model")
            .op(b')')
            .op(0x81)
            .setitem()
            .stop(),
    ));
    // A 4 MB integer literal.
    inputs.push(archive(
        &Pickle(Vec::new())
            .op(b'I')
            .raw(huge.replace('x', "9").as_bytes())
            .op(b'\n')
            .stop(),
    ));
    // A persistent id of an unknown 4 MB type.
    inputs.push(archive(
        &Pickle::new().mark().str(&huge).tuple().op(b'Q').stop(),
    ));
    // A tensor in a storage with a 4 MB key that is not in the archive.
    inputs.push(archive(
        &Pickle::new()
            .empty_dict()
            .str("model")
            .tensor("FloatStorage", &huge, 1, 0, &[1], &[1])
            .setitem()
            .stop(),
    ));
    // Two data.pkl in folders with 60 KB names, and a stored entry that lies about its
    // size.
    let program = Pickle::new().empty_dict().stop();
    let folder = "f".repeat(60_000);
    inputs.push(zip(&[
        stored(&format!("{folder}/data.pkl"), &program),
        stored(&format!("{folder}2/data.pkl"), &program),
    ]));
    let mut lying = stored(&format!("{folder}/data.pkl"), &program);
    lying.size += 1;
    inputs.push(zip(&[lying]));
    // The same storage key read as two element types, under a 4 MB key.
    inputs.push(archive(
        &Pickle::new()
            .mark()
            .tensor("FloatStorage", &huge, 1, 0, &[1], &[1])
            .tensor("HalfStorage", &huge, 1, 0, &[1], &[1])
            .tuple()
            .stop(),
    ));
    for bytes in &inputs {
        let error = match Checkpoint::from_bytes(bytes) {
            Ok(checkpoint) => checkpoint.describe().unwrap_err(),
            Err(error) => error,
        };
        let message = error.to_string();
        assert!(
            message.len() < 1_000,
            "{} bytes: {}",
            message.len(),
            &message[..200]
        );
        paths::agree(bytes);
    }
}

#[test]
fn duplicate_names_and_storages_are_corrupt() {
    let program = Pickle::new()
        .tensor("FloatStorage", "0", 1, 0, &[1], &[1])
        .stop();
    // Two entries named `archive/data/0` (PyTorch reads the last): an edited file.
    let bytes = zip(&[
        stored("archive/data.pkl", &program),
        stored("archive/data/0", &[0; 4]),
        stored("archive/data/0", &[1; 4]),
    ]);
    let error = Checkpoint::from_bytes(&bytes).unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    paths::agree(&bytes);

    // One storage key read as floats and as halves.
    let program = Pickle::new()
        .mark()
        .tensor("FloatStorage", "0", 2, 0, &[2], &[1])
        .tensor("HalfStorage", "0", 4, 0, &[4], &[1])
        .tuple()
        .stop();
    let bytes = torch_zip(&program, &[("0", &[0; 8])], "little");
    let error = Checkpoint::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { reason, .. } if reason.contains("HalfStorage")),
        "{error}"
    );
    paths::agree(&bytes);
    // The same type twice is one storage shared by two tensors, as torch writes it.
    let program = Pickle::new()
        .mark()
        .tensor("FloatStorage", "0", 2, 0, &[2], &[1])
        .tensor("FloatStorage", "0", 2, 1, &[1], &[1])
        .tuple()
        .stop();
    let bytes = torch_zip(&program, &[("0", &[0; 8])], "little");
    Checkpoint::from_bytes(&bytes).unwrap();
}

/// Every file of the seed corpus, the test checkpoints and the fuzzers' findings: whole
/// files as they are, and bare pickles inside an archive.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let fuzz = common::manifest_dir().join("../fuzz");
    for dir in [
        "corpus/archive",
        "corpus/pickle",
        "corpus/describe",
        "artifacts/archive",
    ] {
        let Ok(read) = std::fs::read_dir(fuzz.join(dir)) else {
            continue;
        };
        let mut files: Vec<_> = read.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let name = file.display().to_string();
            if dir.ends_with("archive") {
                seeds.push((name, bytes));
            } else {
                seeds.push((format!("{name} in an archive"), archive(&bytes)));
            }
        }
    }
    for name in [
        "deploy.pt",
        "kinds-legacy.pt",
        "aux-deflated.pt",
        "state-dict.pt",
    ] {
        seeds.push((name.into(), common::data(name)));
    }
    seeds
}

#[test]
fn every_way_of_opening_agrees_on_the_corpus() {
    let seeds = seeds();
    assert!(seeds.len() >= 20, "{} seeds", seeds.len());
    for (name, bytes) in &seeds {
        let answer = paths::agree(bytes);
        // Cut short anywhere: the commonest damage, and where the two paths used to differ.
        let step = (bytes.len() / 64).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            let cut_answer = paths::agree(&bytes[..cut]);
            assert!(
                cut_answer.outcome.is_err(),
                "{name} cut at {cut}: {cut_answer:?}"
            );
        }
        let _ = answer;
    }
}

/// Deterministic xorshift noise for the mutations.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random edit: flipped bytes, a cut, a repeated or removed run, an opcode-like byte.
fn mutate(bytes: &[u8], noise: &mut Noise) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return out;
    }
    match noise.below(5) {
        0 => {
            for _ in 0..1 + noise.below(4) {
                let at = noise.below(out.len());
                out[at] ^= 1 << noise.below(8);
            }
        }
        1 => out.truncate(noise.below(out.len())),
        2 => {
            let at = noise.below(out.len());
            let len = noise.below(64).min(out.len() - at);
            let run = out[at..at + len].to_vec();
            for _ in 0..1 + noise.below(16) {
                out.splice(at..at, run.iter().copied());
            }
        }
        3 => {
            let at = noise.below(out.len());
            let len = noise.below(64).min(out.len() - at);
            out.drain(at..at + len);
        }
        _ => {
            let at = noise.below(out.len());
            out[at] = [b'2', b'a', b'e', b'r', b'h', b'(', b'.', 0x94, b'Q', b'R'][noise.below(10)];
        }
    }
    out
}

#[test]
fn mutated_inputs_read_the_same_both_ways_within_the_budget() {
    // A property over many inputs: whatever the bytes, reading them from memory and through
    // a reader gives the same answer, and no read charges past its limits (tight ones here,
    // so the budget is actually reached).
    let limits = yolots_checkpoint::fuzzing::limits();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    for (name, bytes) in seeds() {
        for round in 0..48 {
            let mut input = mutate(&bytes, &mut noise);
            if round % 4 == 3 {
                input = mutate(&input, &mut noise);
            }
            let answer = paths::agree_with(&input, &limits);
            assert!(answer.within_budget, "{name} round {round}");
            checked += 1;
        }
    }
    assert!(checked > 1_000);
}

/// A legacy-format file (five pickles in a row, no storages) whose object is a list of
/// `strings` short strings: past 1 MiB, a reader has to look further than its first window.
fn legacy_file(strings: usize) -> Vec<u8> {
    let mut bytes = vec![0x80, 2, 0x8a, 10];
    bytes.extend_from_slice(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    bytes.push(b'.');
    bytes.extend_from_slice(&Pickle::new().op(b'M').raw(&1001u16.to_le_bytes()).stop());
    bytes.extend_from_slice(
        &Pickle::new()
            .empty_dict()
            .str("little_endian")
            .op(0x88)
            .setitem()
            .stop(),
    );
    let mut object = Pickle::new().op(b']');
    for chunk in 0..strings.div_ceil(1000) {
        object = object.mark();
        for i in 0..1000.min(strings - chunk * 1000) {
            object = object.str(&format!("{:05}", i));
        }
        object = object.op(b'e');
    }
    bytes.extend_from_slice(&object.stop());
    bytes.extend_from_slice(&Pickle::new().op(b']').stop());
    bytes
}

#[test]
fn a_legacy_pickle_longer_than_the_first_window_reads_the_same_both_ways() {
    // 200,000 strings in 2 MB: a reader used to run the pickle on 1 MiB, fail, and run it
    // again on 2 MiB with the first attempt's 100,000 values still counted.
    let bytes = legacy_file(200_000);
    assert!(bytes.len() > 1 << 20);
    let limits = Limits {
        max_objects: 250_000,
        ..Limits::default()
    };
    let answer = paths::agree_with(&bytes, &limits);
    assert_eq!(answer.outcome, Err("no_model"), "{answer:?}");
    let checkpoint =
        Checkpoint::from_reader_with_limits(std::io::Cursor::new(&bytes), limits.clone()).unwrap();
    let from_bytes = Checkpoint::from_bytes_with_limits(&bytes, limits).unwrap();
    assert_eq!(checkpoint.graph().len(), from_bytes.graph().len());
    assert_eq!(
        checkpoint.budget().memory_used(),
        from_bytes.budget().memory_used()
    );
    paths::agree(&bytes);
}
