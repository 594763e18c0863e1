//! Hostile and broken inputs, written here opcode by opcode: each gives its own typed error
//! (or inert data) and nothing runs.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/paths.rs"]
mod paths;

use std::path::{Path, PathBuf};

use common::{Pickle, data, deflated, entries_of, stored, torch_zip, zip};
use yolots_checkpoint::pickle::{self, Node};
use yolots_checkpoint::{Checkpoint, DType, Error, Limits, TensorRef};

/// A torch archive around a bare pickle, no storages.
fn archive(pickle: &[u8]) -> Vec<u8> {
    torch_zip(pickle, &[], "little")
}

/// Opens `bytes` from memory, after checking that every other way of opening them gives
/// the same answer.
fn open(bytes: &[u8]) -> yolots_checkpoint::Result<Checkpoint<'_>> {
    paths::agree(bytes);
    Checkpoint::from_bytes(bytes)
}

fn describe_error(bytes: &[u8]) -> Error {
    match open(bytes) {
        Ok(checkpoint) => checkpoint.describe().unwrap_err(),
        Err(e) => e,
    }
}

/// A scratch folder for files an attack would create.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("yolots-hostile-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `callable(arg)` where the callable is `module.name`.
fn call(p: Pickle, module: &str, name: &str, arg: &str) -> Pickle {
    p.global(module, name).str(arg).op(0x85).reduce()
}

/// The attacks, each building one value that would run code if it were unpickled by Python.
fn attacks(dir: &Path) -> Vec<(String, PathBuf, Pickle)> {
    let marker = |n: usize| dir.join(format!("ran-{n}"));
    let path = |n: usize| marker(n).display().to_string();
    let mut out = Vec::new();
    let mut add =
        |label: &str, n: usize, body: Pickle| out.push((label.to_string(), marker(n), body));
    add(
        "os.system",
        0,
        call(Pickle::new(), "os", "system", &format!("touch {}", path(0))),
    );
    add(
        "posix.system",
        1,
        call(
            Pickle::new(),
            "posix",
            "system",
            &format!("touch {}", path(1)),
        ),
    );
    add(
        "builtins.eval",
        2,
        call(
            Pickle::new(),
            "builtins",
            "eval",
            &format!("open({:?}, 'w')", path(2)),
        ),
    );
    add(
        "__builtin__.exec",
        3,
        call(
            Pickle::new(),
            "__builtin__",
            "exec",
            &format!("open({:?}, 'w').close()", path(3)),
        ),
    );
    // subprocess.Popen(['touch', path])
    add(
        "subprocess.Popen",
        4,
        Pickle::new()
            .global("subprocess", "Popen")
            .op(b']')
            .mark()
            .str("touch")
            .str(&path(4))
            .op(b'e')
            .op(0x85)
            .reduce(),
    );
    // The same through NEWOBJ.
    add(
        "subprocess.Popen via NEWOBJ",
        5,
        Pickle::new()
            .global("subprocess", "Popen")
            .op(b']')
            .mark()
            .str("touch")
            .str(&path(5))
            .op(b'e')
            .op(0x85)
            .op(0x81),
    );
    // Protocol 4 STACK_GLOBAL.
    add(
        "STACK_GLOBAL os.system",
        6,
        Pickle(vec![0x80, 4])
            .str("os")
            .str("system")
            .op(0x93)
            .str(&format!("touch {}", path(6)))
            .op(0x85)
            .reduce(),
    );
    // Protocol 0 INST.
    add(
        "INST os.system",
        7,
        Pickle(Vec::new())
            .mark()
            .str(&format!("touch {}", path(7)))
            .op(b'i')
            .raw(b"os\nsystem\n"),
    );
    // getattr(os, 'system')(cmd): a bound method used as a callable.
    add(
        "getattr(os, 'system')",
        8,
        Pickle::new()
            .global("builtins", "getattr")
            .global("os", "")
            .str("system")
            .op(0x86)
            .reduce()
            .str(&format!("touch {}", path(8)))
            .op(0x85)
            .reduce(),
    );
    // BUILD with a state that a Python __setstate__ would act on.
    add(
        "BUILD on os.system result",
        9,
        call(Pickle::new(), "os", "system", &format!("touch {}", path(9)))
            .empty_dict()
            .str("__setstate__")
            .global("os", "system")
            .setitem()
            .op(b'b'),
    );
    out
}

#[test]
fn code_in_globals_never_runs() {
    let dir = scratch("globals");
    for (label, marker, body) in attacks(&dir) {
        // On its own: parsed into inert data.
        let program = Pickle(body.0.clone()).stop();
        let (graph, root) =
            pickle::parse(&program, &Limits::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
        match graph.get(root) {
            Some(Node::Object(object)) => {
                let class = object.class.unwrap();
                assert!(
                    graph.global(class).is_some() || graph.get(class).is_some(),
                    "{label}: the callable is kept as a reference"
                );
            }
            other => panic!("{label}: {other:?}"),
        }
        // As the root of a checkpoint: a typed refusal.
        let error = describe_error(&archive(&program));
        assert_eq!(error.code(), "unsupported_model", "{label}: {error}");
        // Under `model`, as a training checkpoint would hold it.
        let value = match body.0.as_slice() {
            [0x80, _, rest @ ..] => rest,
            all => all,
        };
        let nested = Pickle::new()
            .empty_dict()
            .str("model")
            .raw(value)
            .setitem()
            .stop();
        let error = describe_error(&archive(&nested));
        assert!(
            matches!(
                error,
                Error::UnsupportedModel { .. } | Error::NoModel { .. }
            ),
            "{label}: {error}"
        );
        assert!(!marker.exists(), "{label} ran");
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing was created"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn os_system_is_a_named_reference() {
    let program = call(Pickle::new(), "os", "system", "rm -rf /").stop();
    let (graph, root) = pickle::parse(&program, &Limits::default()).unwrap();
    let object = graph.object(root).unwrap();
    assert_eq!(graph.global(object.class.unwrap()), Some(("os", "system")));
    let args = graph.seq(object.args.unwrap()).unwrap();
    assert_eq!(graph.str(args[0]), Some("rm -rf /"));
}

#[test]
fn empty_file() {
    let error = open(&[]).unwrap_err();
    assert!(matches!(error, Error::NotAnArchive { .. }), "{error}");
    assert_eq!(error.code(), "not_an_archive");
    let error = Checkpoint::from_reader(std::io::Cursor::new(Vec::new())).unwrap_err();
    assert!(matches!(error, Error::NotAnArchive { .. }), "{error}");
}

/// Deterministic noise.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn random_bytes() {
    for seed in 1..50u64 {
        let mut bytes = noise(4096, seed);
        if bytes[0] == 0x80 || bytes[0] == b'P' {
            bytes[0] = 0;
        }
        let error = open(&bytes).unwrap_err();
        assert!(matches!(error, Error::NotAnArchive { .. }), "{error}");
        // Noise behind a zip signature or a pickle header fails cleanly too.
        for head in [&b"PK\x03\x04"[..], &b"\x80\x02"[..], &b"\x80\x05\x95"[..]] {
            let mut bytes = bytes.clone();
            bytes[..head.len()].copy_from_slice(head);
            let error = open(&bytes).unwrap_err();
            assert!(!error.code().as_str().is_empty());
            let _ = pickle::parse(&bytes, &Limits::default());
        }
    }
}

#[test]
fn truncated_archive() {
    let bytes = common::fixture("yolov7-tiny.pt");
    let error = open(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(error, Error::Truncated { .. }), "{error}");
    assert_eq!(error.code(), "truncated");
    for cut in [
        1,
        4,
        30,
        100,
        1000,
        100_000,
        bytes.len() - 22,
        bytes.len() - 1,
    ] {
        assert!(open(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // A legacy file cut inside its storages.
    let legacy = data("kinds-legacy.pt");
    let error = open(&legacy[..legacy.len() - 100]).unwrap_err();
    assert!(matches!(error, Error::Truncated { .. }), "{error}");
    // A pickle cut anywhere.
    let program = entries_of(&data("deploy.pt"))
        .into_iter()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .unwrap()
        .1;
    for cut in (0..program.len()).step_by(97) {
        let error = pickle::parse(&program[..cut], &Limits::default()).unwrap_err();
        assert!(
            matches!(error, Error::Truncated { .. }),
            "cut at {cut}: {error}"
        );
    }
}

/// A deflate stream of `declared` bytes' worth of claims, holding garbage: inflating it
/// would fail with a `Corrupt` error, so a `LimitExceeded` proves nothing was inflated.
fn bomb_entry(name: &str, declared: u32) -> common::ZipEntry {
    common::ZipEntry {
        name: name.into(),
        data: noise(64, 7),
        method: 8,
        crc: 0,
        size: declared,
    }
}

#[test]
fn zip_bomb_is_refused_before_inflating() {
    let program = Pickle::new().empty_dict().stop();
    let huge = 0xFFFF_FF00u32; // about 4 GiB
    let bytes = zip(&[
        stored("archive/data.pkl", &program),
        bomb_entry("archive/data/0", huge),
    ]);
    let error = open(&bytes).unwrap_err();
    assert!(
        matches!(error, Error::LimitExceeded { what: "zip entry size", actual, .. } if actual == u64::from(huge)),
        "{error}"
    );
    assert_eq!(error.code(), "limit_exceeded");

    // Several entries under the per-entry limit, over the total.
    let gib = 1u32 << 30;
    let entries = [
        stored("archive/data.pkl", &program),
        bomb_entry("archive/data/0", gib + gib / 2),
        bomb_entry("archive/data/1", gib + gib / 2),
        bomb_entry("archive/data/2", gib + gib / 2),
    ];
    let error = open(&zip(&entries)).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                what: "total inflated size",
                ..
            }
        ),
        "{error}"
    );

    // A pickle declaring more than the pickle limit.
    let bytes = zip(&[bomb_entry("archive/data.pkl", gib)]);
    let error = open(&bytes).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                what: "pickle size",
                ..
            }
        ),
        "{error}"
    );
    // Through a reader too.
    let error = Checkpoint::from_reader(std::io::Cursor::new(bytes)).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                what: "pickle size",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn zip_bomb_is_stopped_while_inflating() {
    // 64 MiB of zeros that declare 1 KiB: inflation stops right after the declared size.
    let zeros = vec![0u8; 64 << 20];
    let mut entry = deflated("archive/data/0", &zeros);
    entry.size = 1024;
    entry.crc = crc32fast::hash(&zeros[..1024]);
    let program = Pickle::new().empty_dict().stop();
    let bytes = zip(&[stored("archive/data.pkl", &program), entry]);
    let checkpoint = open(&bytes).unwrap();
    let tensor = TensorRef {
        name: "bomb".into(),
        dtype: DType::F32,
        shape: vec![256],
        stride: vec![1],
        storage_offset: 0,
        storage_key: "0".into(),
    };
    let error = checkpoint.tensor_data(&tensor).unwrap_err();
    match &error {
        Error::Corrupt { reason, .. } => assert!(reason.contains("1024 declared"), "{reason}"),
        other => panic!("{other}"),
    }

    // A pickle that inflates past its declared size.
    let mut program_entry = deflated(
        "archive/data.pkl",
        &[program.clone(), vec![b'N'; 1 << 20]].concat(),
    );
    program_entry.size = program.len() as u32;
    let error = open(&zip(&[program_entry])).unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

#[test]
fn deeply_nested_pickles() {
    const N: usize = 1_000_000;
    // A million open marks.
    let program = Pickle::new().raw(&vec![b'('; N]).stop();
    let error = pickle::parse(&program, &Limits::default()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                what: "pickle nesting depth",
                ..
            }
        ),
        "{error}"
    );

    // A million lists on the stack, then appended into each other.
    let program = Pickle::new()
        .raw(&vec![b']'; N])
        .raw(&vec![b'a'; N - 1])
        .stop();
    let error = pickle::parse(&program, &Limits::default()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                what: "pickle stack",
                ..
            }
        ),
        "{error}"
    );

    // A million nested tuples built on a stack of one: fine to parse, no recursion anywhere.
    let program = Pickle::new().op(b')').raw(&vec![0x85; N]).stop();
    let (graph, root) = pickle::parse(&program, &Limits::default()).unwrap();
    assert_eq!(graph.seq(root).map(<[_]>::len), Some(1));
    let error = describe_error(&archive(&program));
    assert!(matches!(error, Error::NoModel { .. }), "{error}");

    // A million nested lists through the memo: `[[[...]]]` with every level memoized.
    let mut p = Pickle::new().op(b']').op(b'r').raw(&0u32.to_le_bytes());
    for i in 1..N as u32 {
        p = p
            .op(b'j')
            .raw(&(i - 1).to_le_bytes())
            .op(b']')
            .op(b'r')
            .raw(&i.to_le_bytes())
            .op(b'a')
            .op(b'0');
    }
    let program = p.op(b'j').raw(&0u32.to_le_bytes()).stop();
    let (graph, root) = pickle::parse(&program, &Limits::default()).unwrap();
    let mut depth = 0;
    let mut value = root;
    while let Some([inner]) = graph.seq(value) {
        value = *inner;
        depth += 1;
    }
    assert_eq!(depth, N - 1);
    drop(graph);
    let error = describe_error(&archive(&program));
    assert!(matches!(error, Error::NoModel { .. }), "{error}");
}

#[test]
fn configured_limits_are_enforced() {
    let limits = Limits {
        max_memo: 10,
        ..Limits::default()
    };
    let mut p = Pickle::new().op(b']');
    for i in 0..20u8 {
        p = p.op(b'q').raw(&[i]);
    }
    let error = pickle::parse(&p.stop(), &limits).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                what: "pickle memo entries",
                limit: 10,
                ..
            }
        ),
        "{error}"
    );

    let limits = Limits {
        max_container_len: 5,
        ..Limits::default()
    };
    let program = Pickle::new()
        .op(b']')
        .mark()
        .raw(&[b'N'; 10])
        .op(b'e')
        .stop();
    let error = pickle::parse(&program, &limits).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                what: "container length",
                ..
            }
        ),
        "{error}"
    );

    let limits = Limits {
        max_objects: 100,
        ..Limits::default()
    };
    let program = Pickle::new().raw(&[b']', b'0'].repeat(200)).op(b'N').stop();
    let error = pickle::parse(&program, &limits).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                what: "pickle objects",
                ..
            }
        ),
        "{error}"
    );

    // A hostile memo index does not allocate a huge table.
    let program = Pickle::new()
        .op(b'N')
        .op(b'r')
        .raw(&u32::MAX.to_le_bytes())
        .stop();
    assert!(pickle::parse(&program, &Limits::default()).is_ok());
}

#[test]
fn storage_shorter_than_its_tensor() {
    let bytes = data("deploy.pt");
    let entries: Vec<_> = entries_of(&bytes)
        .into_iter()
        .map(|(name, content)| {
            if name.ends_with("/data/0") {
                stored(&name, &content[..content.len() / 2])
            } else {
                stored(&name, &content)
            }
        })
        .collect();
    let error = describe_error(&zip(&entries));
    match &error {
        Error::StorageTooSmall {
            tensor,
            needed,
            available,
        } => {
            assert_eq!(tensor, "model.0.conv.weight");
            assert_eq!((*needed, *available), (432, 216));
        }
        other => panic!("{other}"),
    }
    assert_eq!(error.code(), "storage_too_small");

    // A view past the end of an intact storage.
    let checkpoint = open(&bytes).unwrap();
    let d = checkpoint.describe().unwrap();
    let mut tensor = d.tensors()[0].clone();
    tensor.storage_offset = 1;
    let error = checkpoint.tensor_data(&tensor).unwrap_err();
    assert!(
        matches!(error, Error::StorageTooSmall { needed: 434, .. }),
        "{error}"
    );
    tensor.storage_offset = 0;
    tensor.shape = vec![usize::MAX, 2];
    tensor.stride = vec![2, 1];
    assert!(checkpoint.tensor_data(&tensor).is_err());
    tensor.storage_key = "missing".into();
    let error = checkpoint.tensor_data(&tensor).unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

#[test]
fn unsupported_and_malformed_opcodes() {
    let error = pickle::parse(&[0x80, 2, 0xff], &Limits::default()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::UnsupportedOpcode {
                opcode: 0xff,
                offset: 2
            }
        ),
        "{error}"
    );
    assert_eq!(error.code(), "unsupported_opcode");
    let error = pickle::parse(&[0x80, 2, 0x82, 1, b'.'], &Limits::default()).unwrap_err();
    assert!(
        matches!(error, Error::UnsupportedOpcode { opcode: 0x82, .. }),
        "{error}"
    );
    let error = pickle::parse(b"\x80\x02R.", &Limits::default()).unwrap_err();
    assert!(matches!(error, Error::Pickle { offset: 2, .. }), "{error}");
    assert_eq!(error.code(), "malformed_pickle");
    let error = pickle::parse(b"\x80\x09N.", &Limits::default()).unwrap_err();
    assert!(matches!(error, Error::Pickle { .. }), "{error}");
    // A tensor rebuild with nonsense arguments is refused, not guessed at.
    let program = Pickle::new()
        .global("torch._utils", "_rebuild_tensor_v2")
        .str("not a storage")
        .op(0x85)
        .reduce()
        .stop();
    assert!(matches!(
        pickle::parse(&program, &Limits::default()),
        Err(Error::Pickle { .. })
    ));
}

#[test]
fn archives_that_are_not_checkpoints() {
    let error = open(&zip(&[stored("readme.txt", b"hello")])).unwrap_err();
    assert!(matches!(error, Error::NotAnArchive { .. }), "{error}");
    let scripted = zip(&[
        stored("m/constants.pkl", b"\x80\x02)."),
        stored("m/code/__torch__.py", b"def forward(self): pass"),
    ]);
    let error = open(&scripted).unwrap_err();
    assert!(matches!(error, Error::Unsupported { .. }), "{error}");
    // A dict without a model names what it has.
    let program = Pickle::new()
        .empty_dict()
        .str("epoch")
        .int(3)
        .setitem()
        .stop();
    let error = describe_error(&archive(&program));
    match error {
        Error::NoModel { reason } => assert!(reason.contains("epoch"), "{reason}"),
        other => panic!("{other}"),
    }
    // Another detector's model class.
    let program = Pickle::new()
        .empty_dict()
        .str("model")
        .global("ultralytics.nn.tasks", "DetectionModel")
        .op(b')')
        .op(0x81)
        .empty_dict()
        .op(b'b')
        .setitem()
        .stop();
    let error = describe_error(&archive(&program));
    assert!(
        matches!(&error, Error::UnsupportedModel { class } if class == "ultralytics.nn.tasks.DetectionModel"),
        "{error}"
    );
    assert_eq!(error.code(), "unsupported_model");
}

fn f32_tensor(shape: &[usize], stride: &[usize], offset: usize) -> TensorRef {
    TensorRef {
        name: "t".into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
        stride: stride.to_vec(),
        storage_offset: offset,
        storage_key: "0".into(),
    }
}

#[test]
fn strided_views_and_byte_order() {
    let values: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let program = Pickle::new()
        .tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1])
        .stop();
    for big in [false, true] {
        let storage: Vec<u8> = values
            .iter()
            .flat_map(|v| {
                if big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            })
            .collect();
        let bytes = torch_zip(
            &program,
            &[("0", &storage)],
            if big { "big" } else { "little" },
        );
        let checkpoint = open(&bytes).unwrap();
        assert_eq!(checkpoint.big_endian(), big);
        // The pickle's tensor, as data.
        let graph = checkpoint.graph();
        let tensor = graph.tensor(checkpoint.root()).unwrap();
        assert_eq!(
            (tensor.shape.as_slice(), tensor.stride.as_slice()),
            (&[2, 3][..], &[3, 1][..])
        );
        // Contiguous, transposed, offset and stepped views.
        let read = |shape: &[usize], stride: &[usize], offset: usize| {
            checkpoint
                .tensor_f32(&f32_tensor(shape, stride, offset))
                .unwrap()
        };
        assert_eq!(read(&[2, 3], &[3, 1], 0), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(read(&[3, 2], &[1, 3], 0), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(read(&[2], &[1], 3), [3.0, 4.0]);
        assert_eq!(read(&[3], &[2], 0), [0.0, 2.0, 4.0]);
        assert_eq!(read(&[2, 1, 2], &[3, 7, 1], 1), [1.0, 2.0, 4.0, 5.0]);
        assert_eq!(read(&[0, 4], &[4, 1], 6), Vec::<f32>::new());
        let data = checkpoint.tensor_data(&f32_tensor(&[6], &[1], 0)).unwrap();
        assert_eq!(
            matches!(data, std::borrow::Cow::Borrowed(_)),
            !big,
            "swapping copies"
        );
        assert_eq!(data.len(), 24);
        assert_eq!(&data[4..8], &1.0f32.to_le_bytes());
        // Zero strides: a huge tensor over one element is refused, not materialized.
        let broadcast = f32_tensor(&[1 << 20, 1 << 20], &[0, 0], 0);
        let error = checkpoint.tensor_data(&broadcast).unwrap_err();
        assert!(
            matches!(
                error,
                Error::LimitExceeded {
                    what: "tensor size",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(read(&[2, 2], &[0, 0], 5), [5.0; 4]);
    }
}

#[test]
fn error_codes_are_distinct() {
    let errors = [
        Error::NotAnArchive {
            reason: String::new(),
        },
        Error::Truncated {
            what: String::new(),
            offset: 0,
        },
        Error::Corrupt {
            entry: String::new(),
            reason: String::new(),
        },
        Error::Unsupported {
            what: String::new(),
        },
        Error::LimitExceeded {
            what: "x",
            limit: 0,
            actual: 1,
        },
        Error::Pickle {
            offset: 0,
            reason: String::new(),
        },
        Error::UnsupportedOpcode {
            opcode: 0,
            offset: 0,
        },
        Error::StateDictOnly,
        Error::NoModel {
            reason: String::new(),
        },
        Error::UnsupportedModel {
            class: String::new(),
        },
        Error::UnknownLayer {
            index: 0,
            class: String::new(),
        },
        Error::BadLayer {
            index: 0,
            class: String::new(),
            reason: String::new(),
        },
        Error::ShapeMismatch {
            tensor: String::new(),
            expected: vec![1],
            actual: vec![2],
        },
        Error::StorageTooSmall {
            tensor: String::new(),
            needed: 1,
            available: 0,
        },
        Error::UnsupportedDtype {
            tensor: String::new(),
            dtype: String::new(),
        },
        Error::Io {
            what: String::new(),
            source: std::io::Error::other("x"),
        },
    ];
    let mut codes: Vec<&str> = errors.iter().map(|e| e.code().as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), errors.len());
    assert_eq!(
        Error::ShapeMismatch {
            tensor: "w".into(),
            expected: vec![2, 3],
            actual: vec![3]
        }
        .to_string(),
        "tensor `w` has shape [3], expected [2, 3]"
    );
}
