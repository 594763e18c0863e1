//! The model description under hostile sharing and sizes, written here opcode by opcode:
//! layer lists of millions of shared entries, cycles through the layer list, one huge
//! attribute dict shared by every layer, huge class names, shared input lists, huge values
//! quoted in errors, and degenerate heads. Each is refused with its typed error (most often
//! `limit_exceeded` naming where the budget ran out) or described quickly, never by
//! exhausting memory or time.

#![allow(clippy::unwrap_used)]

mod common;
mod hostile_model;
#[path = "common/paths.rs"]
mod paths;

use hostile_model::*;
use yolots_checkpoint::fuzzing::heap;
use yolots_checkpoint::{Checkpoint, Error, Limits, ModelDescription};

fn describe(bytes: &[u8]) -> Result<ModelDescription, Error> {
    describe_with(bytes, Limits::default())
}

/// Reads and describes `bytes`; fails when the read held more heap than its budget plus
/// the slack, as the allocator measures it.
#[track_caller]
fn describe_with(bytes: &[u8], limits: Limits) -> Result<ModelDescription, Error> {
    let most = limits.max_memory + heap::SLACK;
    let (described, peak) =
        heap::peak_of(|| Checkpoint::from_bytes_with_limits(bytes, limits)?.describe());
    assert!(
        peak <= most,
        "the read held {peak} bytes of heap, more than {most}"
    );
    described
}

/// Limits whose memory allowance leaves the pickle alone, so the description is what runs
/// out of budget.
fn roomy() -> Limits {
    Limits {
        max_memory: 1 << 30,
        ..Limits::default()
    }
}

#[track_caller]
fn assert_budget_at(error: &Error, expected: &str) {
    match error {
        Error::BudgetExceeded { at, .. } => assert_eq!(*at, expected, "{error}"),
        other => panic!("expected the budget to run out at {expected}, got {other:?}"),
    }
    assert_eq!(error.code(), "limit_exceeded");
    assert!(error.to_string().contains(expected), "{error}");
}

#[track_caller]
fn assert_bad_head(error: &Error, index: usize, words: &str) {
    match error {
        Error::BadLayer {
            index: i,
            class,
            reason,
        } => {
            assert_eq!(*i, index, "{error}");
            assert_eq!(class, "models.yolo.Detect", "{error}");
            assert!(reason.contains(words), "{error}");
        }
        other => panic!("expected a bad head, got {other:?}"),
    }
}

#[test]
fn the_hand_built_model_is_described() {
    let head = HeadSpec::two_levels();
    let bytes = checkpoint(&head, no_attrs, standard_layers(&head, 3, |_, _| {}));
    let d = describe(&bytes).unwrap();
    assert_eq!(d.layers.len(), 6);
    assert_eq!(d.names, ["0"]);
    assert_eq!(d.strides, [8.0, 16.0]);
    // The three uses of the shared `Conv` own its 9 weights once, like `Model.parameters()`.
    let per_layer: Vec<u64> = d.layers.iter().map(|l| l.parameters).collect();
    assert_eq!(per_layer, [9, 9, 9, 0, 0, 36]);
    assert_eq!(d.parameters, 63);
    assert_eq!(
        d.head().unwrap().anchors_px,
        [[[10.0, 13.0]], [[30.0, 61.0]]]
    );
}

/// A million entries of one shared layer, a few bytes each in the file, used to reserve
/// 5.7 GB for the description before the first layer was read.
#[test]
fn a_million_shared_layers_are_refused_before_anything_is_built() {
    let bytes = shared_layers(1_000_000);
    assert!(bytes.len() < 24 << 20, "{} bytes", bytes.len());
    let error = describe_with(&bytes, roomy()).unwrap_err();
    assert_budget_at(&error, "describe: layer list");
    // With the default limits it ends as soon as the budget is spent, wherever that is.
    let error = describe(&bytes).unwrap_err();
    assert_eq!(error.code(), "limit_exceeded", "{error}");
}

/// Every layer reaches the whole layer list through a child pointing back at it: counting
/// each layer's parameters used to walk everything again (2·10^4 layers took 28 s).
#[test]
fn parameters_are_counted_once_through_cycles() {
    let d = describe(&cyclic_layers(20_000)).unwrap();
    assert_eq!(d.layers.len(), 20_003);
    // Layer 2 reaches everything: what the others own was not counted yet.
    let per_layer: Vec<u64> = d.layers.iter().map(|l| l.parameters).take(4).collect();
    assert_eq!(per_layer, [9, 9, 63 - 18, 0]);
    assert_eq!(d.layers.last().unwrap().parameters, 0);
    assert_eq!(d.parameters, 63);

    // Five times as many: more than the description may hold, refused at once.
    let error = describe(&cyclic_layers(100_000)).unwrap_err();
    assert_eq!(error.code(), "limit_exceeded", "{error}");
}

/// Every layer shares one instance dict of two million entries: each attribute lookup used
/// to scan all of them. The last entry of a key wins, as in Python.
#[test]
fn a_huge_shared_attribute_dict_is_indexed_once() {
    let bytes = shared_attribute_dict(2_000_000, 1_000);
    let d = describe_with(&bytes, roomy()).unwrap();
    assert_eq!(d.layers.len(), 1_003);
    assert!(d.layers[2..1_002].iter().all(|l| l.from == [-1]));
}

/// No `names`: one default name per class. A file of a few kilobytes used to ask for 24 GB.
#[test]
fn the_class_count_is_bounded() {
    for (nc, accepted) in [(1_000_000_000, false), (100_001, false), (100_000, true)] {
        let bytes = classes(nc);
        assert!(bytes.len() < 32 << 10, "{} bytes", bytes.len());
        match describe(&bytes) {
            Ok(d) if accepted => assert_eq!(d.names.len(), 100_000),
            Err(error) if !accepted => assert_bad_head(&error, 3, "classes"),
            other => panic!("nc = {nc}: {other:?}"),
        }
    }
}

/// One 16 MB name listed a thousand times used to be copied a thousand times (16 GB).
#[test]
fn a_huge_shared_class_name_runs_out_of_budget() {
    let error = describe(&shared_name(16 << 20, 1_000)).unwrap_err();
    assert_budget_at(&error, "describe: class names");
}

/// A thousand layers share one module whose input list has a million entries: each layer
/// used to copy it (and more lists as long), over 6 GB in all.
#[test]
fn a_shared_input_list_is_paid_for_at_every_copy() {
    let error = describe(&shared_inputs(1_000_000, 1_000)).unwrap_err();
    assert_budget_at(&error, "describe: layer inputs");
}

/// Errors quote values from the file clipped: a message stays short whatever the file.
#[test]
fn errors_quote_huge_values_clipped() {
    const HUGE: usize = 4 << 20;
    let short = |bytes: Vec<u8>| {
        let error = describe(&bytes).unwrap_err();
        let message = error.to_string();
        assert!(message.len() < 4_000, "{} bytes: {message}", message.len());
        error
    };
    let error = short(huge_key(HUGE));
    assert!(matches!(error, Error::BadLayer { index: 0, .. }), "{error}");
    let error = short(huge_class(HUGE, "Conv"));
    assert!(matches!(error, Error::BadLayer { index: 0, .. }), "{error}");
    let error = short(huge_class(HUGE, "Unknown"));
    assert!(
        matches!(error, Error::UnknownLayer { index: 0, .. }),
        "{error}"
    );
    let error = short(huge_activation(HUGE));
    assert!(matches!(error, Error::BadLayer { index: 0, .. }), "{error}");
    short(many_dims(50_000));
    let error = short(mixed_strides(100_000));
    assert!(matches!(error, Error::BadLayer { index: 2, .. }), "{error}");
    let error = short(huge_keys_no_model(HUGE / 4));
    assert!(matches!(error, Error::NoModel { .. }), "{error}");
}

/// Heads no YOLOv7 model has are refused, naming the head.
#[test]
fn degenerate_heads_are_refused() {
    let base = HeadSpec::two_levels();
    let cases: Vec<(&str, HeadSpec, &str)> = vec![
        (
            "one level",
            HeadSpec {
                nl: 1,
                strides: vec![8.0],
                anchors: vec![10.0, 13.0],
                ..HeadSpec::two_levels()
            },
            "levels",
        ),
        (
            "zero stride",
            HeadSpec {
                strides: vec![0.0, 16.0],
                ..HeadSpec::two_levels()
            },
            "powers of two",
        ),
        (
            "decreasing strides",
            HeadSpec {
                strides: vec![16.0, 8.0],
                ..HeadSpec::two_levels()
            },
            "increasing",
        ),
        (
            "equal strides",
            HeadSpec {
                strides: vec![8.0, 8.0],
                ..HeadSpec::two_levels()
            },
            "increasing",
        ),
        (
            "stride not a power of two",
            HeadSpec {
                strides: vec![8.0, 12.0],
                ..HeadSpec::two_levels()
            },
            "powers of two",
        ),
        (
            "NaN stride",
            HeadSpec {
                strides: vec![8.0, f32::NAN],
                ..HeadSpec::two_levels()
            },
            "powers of two",
        ),
        (
            "NaN anchor",
            HeadSpec {
                anchors: vec![10.0, f32::NAN, 30.0, 61.0],
                ..HeadSpec::two_levels()
            },
            "anchor",
        ),
        (
            "infinite anchor",
            HeadSpec {
                anchors: vec![10.0, 13.0, f32::INFINITY, 61.0],
                ..HeadSpec::two_levels()
            },
            "anchor",
        ),
        (
            "negative anchor",
            HeadSpec {
                anchors: vec![-10.0, 13.0, 30.0, 61.0],
                ..HeadSpec::two_levels()
            },
            "anchor",
        ),
        (
            "zero anchor",
            HeadSpec {
                anchors: vec![10.0, 13.0, 30.0, 0.0],
                ..HeadSpec::two_levels()
            },
            "anchor",
        ),
    ];
    for (what, head, words) in cases {
        let layers = |b: &mut B, _| {
            b.dict(3, |b, i| {
                b.str(&i.to_string());
                match i {
                    0 => conv(b, 8, |_| {}),
                    1 => conv(b, 2, |_| {}),
                    _ => {
                        let from: &[i32] = if head.nl == 1 { &[-1] } else { &[0, -1] };
                        detect(b, &head, from);
                    }
                }
            });
        };
        let error = describe(&checkpoint(&head, no_attrs, layers))
            .map(|_| ())
            .unwrap_err();
        eprintln!("{what}: {error}");
        assert_bad_head(&error, 2, words);
    }
    // The same layers with a sane head are fine.
    let bytes = checkpoint(&base, no_attrs, standard_layers(&base, 0, |_, _| {}));
    describe(&bytes).unwrap();
}
