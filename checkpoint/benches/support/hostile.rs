//! Hostile inputs for the read benchmark, built here, each at most 64 MB.

use std::io::Write;
use std::time::{Duration, Instant};

use yolots_checkpoint::{Checkpoint, DType, TensorRef};

use crate::common::{Pickle, ZipEntry, stored, torch_zip, zip};

const MIB: usize = 1 << 20;

/// One measured read, returning its answer.
pub type Run<'a> = Box<dyn FnOnce() -> String + 'a>;

fn archive(pickle: &[u8]) -> Vec<u8> {
    torch_zip(pickle, &[], "little")
}

fn memo_stores(count: u32) -> Vec<u8> {
    let mut p = Pickle::new().op(b']');
    p.0.reserve(count as usize * 5);
    for i in 0..count {
        p.0.push(b'r');
        p.0.extend_from_slice(&i.wrapping_mul(1023).to_le_bytes());
    }
    p.stop()
}

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

fn amplified(callable: (&str, &str), calls: usize) -> Vec<u8> {
    let mut p = pair_list(90_000)
        .global(callable.0, callable.1)
        .op(b'q')
        .raw(&[2])
        .op(b'0');
    for _ in 0..calls {
        p.0.extend_from_slice(&[b'h', 2, b'h', 0, 0x85, b'R', b'0']);
    }
    archive(&p.stop())
}

fn dup_pop(pairs: usize) -> Vec<u8> {
    let mut p = Pickle::new().op(b'N');
    p.0.extend(std::iter::repeat_n([b'2', b'0'], pairs).flatten());
    archive(&p.stop())
}

fn nested_tuples(n: usize) -> Vec<u8> {
    let mut p = Pickle::new().op(b')');
    p.0.extend(std::iter::repeat_n(0x85, n));
    archive(&p.stop())
}

fn zeros_deflated(chunks: usize) -> (Vec<u8>, u32) {
    let zeros = vec![0u8; MIB];
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let next = |encoder: &mut flate2::write::DeflateEncoder<Vec<u8>>| {
        encoder.write_all(&zeros).expect("deflates");
        encoder.flush().expect("flushes");
        std::mem::take(encoder.get_mut())
    };
    let mut stream = next(&mut encoder);
    let repeated = next(&mut encoder);
    for _ in 2..chunks {
        stream.extend_from_slice(&repeated);
    }
    stream.extend_from_slice(&repeated);
    stream.extend_from_slice(&encoder.finish().expect("finishes"));
    let mut one = crc32fast::Hasher::new();
    one.update(&zeros);
    let mut crc = crc32fast::Hasher::new();
    for _ in 0..chunks {
        crc.combine(&one);
    }
    (stream, crc.finalize())
}

fn tensor(key: &str, numel: usize, offset: usize) -> TensorRef {
    TensorRef {
        name: "t".into(),
        dtype: DType::F32,
        shape: vec![numel],
        stride: vec![1],
        storage_offset: offset,
        storage_key: key.into(),
    }
}

/// A small tensor in a 1.9 GB deflated entry.
fn deflated_bomb() -> (Vec<u8>, Vec<TensorRef>) {
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
    (bytes, vec![tensor("0", 18, 0)])
}

/// 20,000 tensors sharing one 48 MiB deflated storage.
fn shared_deflated() -> (Vec<u8>, Vec<TensorRef>) {
    let numel = 12 * MIB;
    let storage: Vec<u8> = (0..numel).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let count = 20_000;
    let mut p = Pickle::new().op(b']');
    for i in 0..count {
        p = p
            .tensor(
                "FloatStorage",
                "0",
                numel as i32,
                (i * 600) as i32,
                &[16],
                &[1],
            )
            .op(b'a');
    }
    let bytes = zip(&[
        stored("archive/data.pkl", &p.stop()),
        crate::common::deflated("archive/data/0", &storage),
    ]);
    let tensors = (0..count).map(|i| tensor("0", 16, i * 600)).collect();
    (bytes, tensors)
}

/// 600,000 zip entries (about 64 MB of headers).
fn many_entries() -> Vec<u8> {
    let program = Pickle::new().empty_dict().stop();
    let mut entries = vec![stored("archive/data.pkl", &program)];
    for i in 0..600_000 {
        entries.push(stored(&format!("archive/x/{i}"), b""));
    }
    zip(&entries)
}

fn huge_names() -> Vec<u8> {
    let huge = "x".repeat(60 * MIB);
    archive(
        &Pickle::new()
            .empty_dict()
            .str("model")
            .global(&huge, "Model")
            .op(b')')
            .op(0x81)
            .setitem()
            .stop(),
    )
}

/// A legacy file whose object pickle is `strings` short strings.
fn legacy(strings: usize) -> Vec<u8> {
    let mut object = Pickle::new().op(b']');
    for chunk in 0..strings.div_ceil(1000) {
        object.0.push(b'(');
        for i in 0..1000.min(strings - chunk * 1000) {
            object = object.str(&format!("{i:05}"));
        }
        object.0.push(b'e');
    }
    crate::common::torch_legacy(&object.stop(), &[], 4)
}

/// Opens `bytes` from memory or through a reader, describes, reads `tensors`; the answer
/// of the last step reached.
fn read_all(bytes: &[u8], tensors: &[TensorRef], through_reader: bool) -> String {
    let opened = if through_reader {
        Checkpoint::from_reader(std::io::Cursor::new(bytes))
    } else {
        Checkpoint::from_bytes(bytes)
    };
    let checkpoint = match opened {
        Ok(checkpoint) => checkpoint,
        Err(e) => return format!("open: {}", e.code()),
    };
    let mut answer = match checkpoint.describe() {
        Ok(_) => "described".to_string(),
        Err(e) => format!("describe: {}", e.code()),
    };
    let refused = tensors
        .iter()
        .filter(|tensor| checkpoint.tensor_data(tensor).is_err())
        .count();
    if !tensors.is_empty() {
        answer += &format!(
            ", {}/{} tensors read",
            tensors.len() - refused,
            tensors.len()
        );
    }
    answer
}

/// Writes one hostile input and the tensors to read from it.
pub type Build = fn() -> (Vec<u8>, Vec<TensorRef>);

/// The hostile inputs of the archive side, by name.
pub fn inputs() -> Vec<(&'static str, Build)> {
    vec![
        ("memo stores past the end (12.5M)", || {
            (archive(&memo_stores(12_500_000)), Vec::new())
        }),
        ("OrderedDict of 90k pairs, 1M times", || {
            (
                amplified(("collections", "OrderedDict"), 1_000_000),
                Vec::new(),
            )
        }),
        ("set of 90k items, 1M times", || {
            (amplified(("builtins", "set"), 1_000_000), Vec::new())
        }),
        ("DUP/POP, 30M pairs", || (dup_pop(30_000_000), Vec::new())),
        ("nested tuples, 30M", || {
            (nested_tuples(30_000_000), Vec::new())
        }),
        ("tensor in a 1.9 GB deflated entry", deflated_bomb),
        ("20k tensors sharing a deflated entry", shared_deflated),
        ("600k zip entries", || (many_entries(), Vec::new())),
        ("60 MB class name", || (huge_names(), Vec::new())),
        ("legacy pickle of 5M strings", || {
            (legacy(5_000_000), Vec::new())
        }),
    ]
}

/// Prints each hostile input's peak memory and time, then the worst of them.
pub fn report(peak_of: fn(Run<'_>) -> (String, usize)) {
    let inputs = inputs();
    let mut worst_memory = (0usize, "");
    let mut worst_time = (Duration::ZERO, "");
    println!(
        "hostile inputs: file size, then the worse of reading from memory and through a \
         reader: peak extra memory, time, answer"
    );
    for (name, build) in inputs {
        let (bytes, tensors) = build();
        let mut peak = 0;
        let mut time = Duration::ZERO;
        let mut answers = Vec::new();
        for through_reader in [false, true] {
            let start = Instant::now();
            let (answer, path_peak) =
                peak_of(Box::new(|| read_all(&bytes, &tensors, through_reader)));
            time = time.max(start.elapsed());
            peak = peak.max(path_peak);
            answers.push(answer);
        }
        answers.dedup();
        println!(
            "  {name}: {:.1} MB, peak {:.1} MB, {:.2} s, {}",
            bytes.len() as f64 / 1e6,
            peak as f64 / 1e6,
            time.as_secs_f64(),
            answers.join(" | ")
        );
        if peak > worst_memory.0 {
            worst_memory = (peak, name);
        }
        if time > worst_time.0 {
            worst_time = (time, name);
        }
    }
    println!(
        "hostile worst: peak {:.1} MB ({}), time {:.2} s ({}); targets 256 MB and 2 s",
        worst_memory.0 as f64 / 1e6,
        worst_memory.1,
        worst_time.0.as_secs_f64(),
        worst_time.1
    );
}
