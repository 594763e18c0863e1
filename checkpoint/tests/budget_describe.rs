//! The model description under hostile sharing and sizes, written here opcode by opcode:
//! layer lists of millions of shared entries, cycles through the layer list, one huge
//! attribute dict shared by every layer, huge class names, shared input lists, huge values
//! quoted in errors, and degenerate heads. Each is refused with its typed error (most often
//! `limit_exceeded` naming where the budget ran out) or described quickly, never by
//! exhausting memory or time.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Pickle, torch_zip};
use yolots_checkpoint::{Checkpoint, Error, Limits, ModelDescription};

/// Floats in the one storage every tensor lives in.
const STORAGE_FLOATS: usize = 4096;
/// Where the anchors and the strides of the head sit in the storage.
const ANCHORS_AT: usize = 3200;
const STRIDES_AT: usize = 3300;

/// A pickle program being written, with its memo counter.
struct B {
    p: Pickle,
    memo: u32,
}

impl B {
    fn new() -> Self {
        B {
            p: Pickle::new(),
            memo: 0,
        }
    }
    fn with(&mut self, f: impl FnOnce(Pickle) -> Pickle) {
        let p = std::mem::take(&mut self.p);
        self.p = f(p);
    }
    fn op(&mut self, op: u8) {
        self.with(|p| p.op(op));
    }
    fn str(&mut self, s: &str) {
        self.with(|p| p.str(s));
    }
    fn int(&mut self, i: i32) {
        self.with(|p| p.int(i));
    }
    fn global(&mut self, module: &str, name: &str) {
        self.with(|p| p.global(module, name));
    }
    /// Memoizes the value on top of the stack; its memo index.
    fn put(&mut self) -> u32 {
        let index = self.memo;
        self.memo += 1;
        self.with(|p| p.op(b'r').raw(&index.to_le_bytes()));
        index
    }
    fn get(&mut self, index: u32) {
        self.with(|p| p.op(b'j').raw(&index.to_le_bytes()));
    }
    /// `key` then the value `value` writes, inside a dict being filled.
    fn kv(&mut self, key: &str, value: impl FnOnce(&mut B)) {
        self.str(key);
        value(self);
    }
    /// Ends the pending `SETITEMS`/`APPENDS` batch and opens the next, so long containers
    /// never hold more than a batch on the pickle stack.
    fn flush(&mut self, op: u8) {
        self.op(op);
        self.op(b'(');
    }
    /// A dict of `n` entries written by `entry`, in batches of 1,000.
    fn dict(&mut self, n: usize, mut entry: impl FnMut(&mut B, usize)) {
        self.op(b'}');
        self.op(b'(');
        for i in 0..n {
            entry(self, i);
            if i % 1000 == 999 {
                self.flush(b'u');
            }
        }
        self.op(b'u');
    }
    /// A list of ints, in batches of 1,000.
    fn int_list(&mut self, items: impl IntoIterator<Item = i32>) {
        self.op(b']');
        self.op(b'(');
        for (i, item) in items.into_iter().enumerate() {
            self.int(item);
            if i % 1000 == 999 {
                self.flush(b'e');
            }
        }
        self.op(b'e');
    }
    fn int_tuple(&mut self, items: &[i32]) {
        self.op(b'(');
        for i in items {
            self.int(*i);
        }
        self.op(b't');
    }
    /// An object of class `module.class` whose `BUILD` state is the dict `state` fills.
    fn object(&mut self, module: &str, class: &str, state: impl FnOnce(&mut B)) {
        self.global(module, class);
        self.op(b')');
        self.op(0x81);
        self.op(b'}');
        self.op(b'(');
        state(self);
        self.op(b'u');
        self.op(b'b');
    }
    /// A float tensor in storage `0`.
    fn tensor(&mut self, shape: &[i32], stride: &[i32], offset: i32) {
        let numel = STORAGE_FLOATS as i32;
        self.with(|p| p.tensor("FloatStorage", "0", numel, offset, shape, stride));
    }
    fn contiguous(&mut self, shape: &[i32], offset: i32) {
        let mut stride = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        self.tensor(shape, &stride, offset);
    }
    fn finish(self) -> Vec<u8> {
        self.p.stop()
    }
}

/// `nn.Conv2d(cin, cout, k, stride=s, bias=False)` with its weight at the storage's start;
/// `zero_strides` makes the weight a broadcast view of one element.
fn conv2d(b: &mut B, cin: i32, cout: i32, s: i32, zero_strides: bool) {
    b.object("torch.nn.modules.conv", "Conv2d", |b| {
        conv2d_attrs(b, cin, cout, s, zero_strides);
    });
}

fn conv2d_attrs(b: &mut B, cin: i32, cout: i32, s: i32, zero_strides: bool) {
    b.kv("in_channels", |b| b.int(cin));
    b.kv("out_channels", |b| b.int(cout));
    b.kv("kernel_size", |b| b.int_tuple(&[1, 1]));
    b.kv("stride", |b| b.int_tuple(&[s, s]));
    b.kv("padding", |b| b.int_tuple(&[0, 0]));
    b.kv("dilation", |b| b.int_tuple(&[1, 1]));
    b.kv("groups", |b| b.int(1));
    b.kv("_parameters", |b| {
        b.dict(1, |b, _| {
            b.kv("weight", |b| {
                if zero_strides {
                    b.tensor(&[cout, cin, 1, 1], &[0, 0, 0, 0], 0);
                } else {
                    b.contiguous(&[cout, cin, 1, 1], 0);
                }
            });
        });
    });
}

fn silu(b: &mut B) {
    b.object("torch.nn.modules.activation", "SiLU", |_| {});
}

/// The attributes of a YOLOv7 `Conv` 3 -> 3 with stride `s` reading `f`, besides `_modules`.
fn conv_attrs(b: &mut B, f: i32) {
    b.kv("f", |b| b.int(f));
}

/// `models.common.Conv` 3 -> 3, 1x1, stride `s`, reading the previous layer.
fn conv(b: &mut B, s: i32, extra_children: impl FnOnce(&mut B)) {
    b.object("models.common", "Conv", |b| {
        conv_attrs(b, -1);
        b.kv("_modules", |b| {
            b.op(b'}');
            b.op(b'(');
            b.kv("conv", |b| conv2d(b, 3, 3, s, false));
            b.kv("act", silu);
            extra_children(b);
            b.op(b'u');
        });
    });
}

/// What a test head looks like.
struct HeadSpec {
    nl: usize,
    nc: i32,
    strides: Vec<f32>,
    anchors: Vec<f32>,
    zero_stride_weights: bool,
}

impl HeadSpec {
    fn two_levels() -> Self {
        HeadSpec {
            nl: 2,
            nc: 1,
            strides: vec![8.0, 16.0],
            anchors: vec![10.0, 13.0, 30.0, 61.0],
            zero_stride_weights: false,
        }
    }
}

/// `models.yolo.Detect` with one anchor per level, reading `from`.
fn detect(b: &mut B, head: &HeadSpec, from: &[i32]) {
    let nl = head.nl as i32;
    b.object("models.yolo", "Detect", |b| {
        b.kv("nc", |b| b.int(head.nc));
        b.kv("na", |b| b.int(1));
        b.kv("nl", |b| b.int(nl));
        b.kv("f", |b| b.int_list(from.iter().copied()));
        b.kv("stride", |b| b.contiguous(&[nl], STRIDES_AT as i32));
        b.kv("_buffers", |b| {
            b.op(b'}');
            b.op(b'(');
            b.kv("anchors", |b| b.contiguous(&[nl, 1, 2], ANCHORS_AT as i32));
            b.kv("anchor_grid", |b| {
                b.contiguous(&[nl, 1, 1, 1, 1, 2], ANCHORS_AT as i32);
            });
            b.op(b'u');
        });
        b.kv("_modules", |b| {
            b.dict(1, |b, _| {
                b.kv("m", |b| {
                    b.object("torch.nn.modules.container", "ModuleList", |b| {
                        b.kv("_modules", |b| {
                            b.dict(head.nl, |b, i| {
                                b.kv(&i.to_string(), |b| {
                                    conv2d(b, 3, head.nc + 5, 1, head.zero_stride_weights);
                                });
                            });
                        });
                    });
                });
            });
        });
    });
}

/// The storage: weights of 0.5, then the head's anchors and strides.
fn storage(head: &HeadSpec) -> Vec<u8> {
    let mut floats = vec![0.5f32; STORAGE_FLOATS];
    floats[ANCHORS_AT..ANCHORS_AT + head.anchors.len()].copy_from_slice(&head.anchors);
    floats[STRIDES_AT..STRIDES_AT + head.strides.len()].copy_from_slice(&head.strides);
    floats.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// `{"model": Model}` where `Model.model` is a `Sequential` of the layers `layers` writes
/// (given the memo index of the `Sequential` itself, for cycles), and `model_attrs` adds
/// attributes to the `Model`.
fn checkpoint(
    head: &HeadSpec,
    model_attrs: impl FnOnce(&mut B),
    layers: impl FnOnce(&mut B, u32),
) -> Vec<u8> {
    let mut b = B::new();
    b.op(b'}');
    b.str("model");
    b.object("models.yolo", "Model", |b| {
        model_attrs(b);
        b.kv("_modules", |b| {
            b.op(b'}');
            b.op(b'(');
            b.kv("model", |b| {
                // Memoized before its state is built, so layers may refer back to it.
                b.global("torch.nn.modules.container", "Sequential");
                b.op(b')');
                b.op(0x81);
                let sequential = b.put();
                b.op(b'}');
                b.op(b'(');
                b.kv("_modules", |b| layers(b, sequential));
                b.op(b'u');
                b.op(b'b');
            });
            b.op(b'u');
        });
    });
    b.op(b's');
    torch_zip(&b.finish(), &[("0", &storage(head))], "little")
}

/// The usual layers: `Conv` stride 8, `Conv` stride 2, `repeats` entries of one shared
/// `Conv` stride 1 (whose extra children `extra` writes), then the head reading layer 0 and
/// the last `Conv`.
fn standard_layers<'h>(
    head: &'h HeadSpec,
    repeats: usize,
    extra: impl Fn(&mut B, u32) + 'h,
) -> impl FnOnce(&mut B, u32) + 'h {
    move |b, sequential| {
        let mut shared = None;
        b.dict(repeats + 3, |b, i| {
            b.str(&i.to_string());
            match i {
                0 => conv(b, 8, |_| {}),
                1 => conv(b, 2, |_| {}),
                i if i == repeats + 2 => detect(b, head, &[0, -1]),
                _ => match shared {
                    Some(index) => b.get(index),
                    None => {
                        conv(b, 1, |b| extra(b, sequential));
                        shared = Some(b.put());
                    }
                },
            }
        });
    }
}

fn no_attrs(_: &mut B) {}

fn describe(bytes: &[u8]) -> Result<ModelDescription, Error> {
    Checkpoint::from_bytes(bytes)?.describe()
}

fn describe_with(bytes: &[u8], limits: Limits) -> Result<ModelDescription, Error> {
    Checkpoint::from_bytes_with_limits(bytes, limits)?.describe()
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
    let head = HeadSpec::two_levels();
    let bytes = checkpoint(
        &head,
        no_attrs,
        standard_layers(&head, 1_000_000, |_, _| {}),
    );
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
    let head = HeadSpec::two_levels();
    let back_to_the_list = |b: &mut B, sequential: u32| {
        b.kv("loop", |b| b.get(sequential));
    };
    let bytes = checkpoint(
        &head,
        no_attrs,
        standard_layers(&head, 20_000, back_to_the_list),
    );
    let d = describe(&bytes).unwrap();
    assert_eq!(d.layers.len(), 20_003);
    // Layer 2 reaches everything: what the others own was not counted yet.
    let per_layer: Vec<u64> = d.layers.iter().map(|l| l.parameters).take(4).collect();
    assert_eq!(per_layer, [9, 9, 63 - 18, 0]);
    assert_eq!(d.parameters, 63);

    // Five times as many: more than the description may hold, refused at once.
    let bytes = checkpoint(
        &head,
        no_attrs,
        standard_layers(&head, 100_000, back_to_the_list),
    );
    let error = describe(&bytes).unwrap_err();
    assert_eq!(error.code(), "limit_exceeded", "{error}");
}

/// Every layer shares one instance dict of two million entries: each attribute lookup used
/// to scan all of them. The last entry of a key wins, as in Python.
#[test]
fn a_huge_shared_attribute_dict_is_indexed_once() {
    const JUNK: usize = 2_000_000;
    let head = HeadSpec::two_levels();
    let layers = |b: &mut B, _| {
        let mut shared = None;
        b.dict(1_003, |b, i| {
            b.str(&i.to_string());
            match i {
                0 => conv(b, 8, |_| {}),
                1 => conv(b, 2, |_| {}),
                1_002 => detect(b, &head, &[0, -1]),
                _ => match shared {
                    Some(index) => b.get(index),
                    None => {
                        b.object("models.common", "Conv", |b| {
                            // A wrong value first, then junk, then the real attributes.
                            b.kv("f", |b| b.int(7));
                            b.str("junk");
                            let junk = b.put();
                            b.op(b'N');
                            for n in 1..JUNK {
                                b.get(junk);
                                b.op(b'N');
                                if n % 1000 == 999 {
                                    b.flush(b'u');
                                }
                            }
                            conv_attrs(b, -1);
                            b.kv("_modules", |b| {
                                b.op(b'}');
                                b.op(b'(');
                                b.kv("conv", |b| conv2d(b, 3, 3, 1, false));
                                b.kv("act", silu);
                                b.op(b'u');
                            });
                        });
                        shared = Some(b.put());
                    }
                },
            }
        });
    };
    let bytes = checkpoint(&head, no_attrs, layers);
    let d = describe_with(&bytes, roomy()).unwrap();
    assert_eq!(d.layers.len(), 1_003);
    assert!(d.layers[2..1_002].iter().all(|l| l.from == [-1]));
}

/// No `names`: one default name per class. A file of a few kilobytes used to ask for 24 GB.
#[test]
fn the_class_count_is_bounded() {
    for (nc, accepted) in [(1_000_000_000, false), (100_001, false), (100_000, true)] {
        let head = HeadSpec {
            nc,
            zero_stride_weights: true,
            ..HeadSpec::two_levels()
        };
        let bytes = checkpoint(&head, no_attrs, standard_layers(&head, 1, |_, _| {}));
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
    let head = HeadSpec {
        nc: 1_000,
        ..HeadSpec::two_levels()
    };
    let name = "n".repeat(16 << 20);
    let names = |b: &mut B| {
        b.kv("names", |b| {
            b.op(b']');
            b.op(b'(');
            b.str(&name);
            let shared = b.put();
            for _ in 1..1_000 {
                b.get(shared);
            }
            b.op(b'e');
        });
    };
    let bytes = checkpoint(&head, names, standard_layers(&head, 1, |_, _| {}));
    let error = describe(&bytes).unwrap_err();
    assert_budget_at(&error, "describe: class names");
}

/// A thousand layers share one module whose input list has a million entries: each layer
/// used to copy it (and more lists as long), over 6 GB in all.
#[test]
fn a_shared_input_list_is_paid_for_at_every_copy() {
    let head = HeadSpec::two_levels();
    let layers = |b: &mut B, _| {
        let mut shared = None;
        b.dict(1_000, |b, i| {
            b.str(&i.to_string());
            match shared {
                Some(index) => b.get(index),
                None => {
                    b.object("models.common", "Concat", |b| {
                        b.kv("d", |b| b.int(1));
                        b.kv("f", |b| b.int_list(std::iter::repeat_n(-1, 1_000_000)));
                    });
                    shared = Some(b.put());
                }
            }
        });
    };
    let bytes = checkpoint(&head, no_attrs, layers);
    let error = describe(&bytes).unwrap_err();
    assert_budget_at(&error, "describe: layer inputs");
}

/// Errors quote values from the file clipped: a message stays short whatever the file.
#[test]
fn errors_quote_huge_values_clipped() {
    const HUGE: usize = 4 << 20;
    let head = HeadSpec::two_levels();
    let short = |error: Error| {
        let message = error.to_string();
        assert!(message.len() < 4_000, "{} bytes: {message}", message.len());
        error
    };

    // A layer registered under a huge key.
    let key = "k".repeat(HUGE);
    let layers = |b: &mut B, _| {
        b.dict(1, |b, _| {
            b.str(&key);
            conv(b, 8, |_| {});
        });
    };
    let error = short(describe(&checkpoint(&head, no_attrs, layers)).unwrap_err());
    assert!(matches!(error, Error::BadLayer { index: 0, .. }), "{error}");

    // A layer of a class with a huge name, known or not.
    let module = format!("{}.models.common", "m".repeat(HUGE));
    for class in ["Conv", "Unknown"] {
        let layers = |b: &mut B, _| {
            b.dict(1, |b, _| {
                b.str("0");
                b.object(&module, class, |b| conv_attrs(b, -1));
            });
        };
        short(describe(&checkpoint(&head, no_attrs, layers)).unwrap_err());
    }

    // An activation of a class with a huge name.
    let activation = "a".repeat(HUGE);
    let layers = |b: &mut B, _| {
        b.dict(1, |b, _| {
            b.str("0");
            b.object("models.common", "Conv", |b| {
                conv_attrs(b, -1);
                b.kv("_modules", |b| {
                    b.op(b'}');
                    b.op(b'(');
                    b.kv("conv", |b| conv2d(b, 3, 3, 8, false));
                    b.kv("act", |b| b.object("torch.nn", &activation, |_| {}));
                    b.op(b'u');
                });
            });
        });
    };
    let error = short(describe(&checkpoint(&head, no_attrs, layers)).unwrap_err());
    assert!(matches!(error, Error::BadLayer { index: 0, .. }), "{error}");

    // A weight of fifty thousand dimensions.
    let layers = |b: &mut B, _| {
        b.dict(1, |b, _| {
            b.str("0");
            b.object("models.common", "Conv", |b| {
                conv_attrs(b, -1);
                b.kv("_modules", |b| {
                    b.op(b'}');
                    b.op(b'(');
                    b.kv("conv", |b| {
                        b.object("torch.nn.modules.conv", "Conv2d", |b| {
                            conv2d_attrs(b, 3, 3, 8, false);
                            b.kv("_parameters", |b| {
                                b.dict(1, |b, _| {
                                    b.kv("weight", |b| {
                                        b.tensor(&[1; 50_000], &[1; 50_000], 0);
                                    });
                                });
                            });
                        });
                    });
                    b.kv("act", silu);
                    b.op(b'u');
                });
            });
        });
    };
    short(describe(&checkpoint(&head, no_attrs, layers)).unwrap_err());

    // A concatenation of a hundred thousand maps of two different strides.
    let layers = |b: &mut B, _| {
        b.dict(3, |b, i| {
            b.str(&i.to_string());
            match i {
                0 => conv(b, 8, |_| {}),
                1 => conv(b, 2, |_| {}),
                _ => b.object("models.common", "Concat", |b| {
                    b.kv("d", |b| b.int(1));
                    b.kv("f", |b| {
                        b.int_list(std::iter::once(0).chain(std::iter::repeat_n(1, 100_000)));
                    });
                }),
            }
        });
    };
    let error = short(describe(&checkpoint(&head, no_attrs, layers)).unwrap_err());
    assert!(matches!(error, Error::BadLayer { index: 2, .. }), "{error}");

    // No model, and a dozen huge keys to list instead.
    let mut b = B::new();
    b.dict(12, |b, i| {
        b.str(&format!("{i}{}", "x".repeat(HUGE / 4)));
        b.int(0);
    });
    let bytes = torch_zip(&b.finish(), &[], "little");
    let error = short(describe(&bytes).unwrap_err());
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
