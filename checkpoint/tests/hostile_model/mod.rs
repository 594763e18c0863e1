//! A writer of hand-made YOLOv7 checkpoints, opcode by opcode, and the hostile ones built
//! with it: shared layer lists, cycles, huge shared dicts, names and input lists, huge
//! values to quote, degenerate heads. Shared by the tests and the benchmark of the
//! description's budget.

#![allow(dead_code, clippy::unwrap_used)]

use crate::common::{Pickle, torch_zip};

/// Floats in the one storage every tensor lives in.
pub const STORAGE_FLOATS: usize = 4096;
/// Where the anchors and the strides of the head sit in the storage.
pub const ANCHORS_AT: usize = 3200;
pub const STRIDES_AT: usize = 3300;

/// A pickle program being written, with its memo counter.
pub struct B {
    p: Pickle,
    memo: u32,
}

impl B {
    pub fn new() -> Self {
        B {
            p: Pickle::new(),
            memo: 0,
        }
    }
    pub fn with(&mut self, f: impl FnOnce(Pickle) -> Pickle) {
        let p = std::mem::take(&mut self.p);
        self.p = f(p);
    }
    pub fn op(&mut self, op: u8) {
        self.with(|p| p.op(op));
    }
    pub fn str(&mut self, s: &str) {
        self.with(|p| p.str(s));
    }
    pub fn int(&mut self, i: i32) {
        self.with(|p| p.int(i));
    }
    pub fn global(&mut self, module: &str, name: &str) {
        self.with(|p| p.global(module, name));
    }
    /// Memoizes the value on top of the stack; its memo index.
    pub fn put(&mut self) -> u32 {
        let index = self.memo;
        self.memo += 1;
        self.with(|p| p.op(b'r').raw(&index.to_le_bytes()));
        index
    }
    pub fn get(&mut self, index: u32) {
        self.with(|p| p.op(b'j').raw(&index.to_le_bytes()));
    }
    /// `key` then the value `value` writes, inside a dict being filled.
    pub fn kv(&mut self, key: &str, value: impl FnOnce(&mut B)) {
        self.str(key);
        value(self);
    }
    /// Ends the pending `SETITEMS`/`APPENDS` batch and opens the next, so long containers
    /// never hold more than a batch on the pickle stack.
    pub fn flush(&mut self, op: u8) {
        self.op(op);
        self.op(b'(');
    }
    /// A dict of `n` entries written by `entry`, in batches of 1,000.
    pub fn dict(&mut self, n: usize, mut entry: impl FnMut(&mut B, usize)) {
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
    pub fn int_list(&mut self, items: impl IntoIterator<Item = i32>) {
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
    pub fn int_tuple(&mut self, items: &[i32]) {
        self.op(b'(');
        for i in items {
            self.int(*i);
        }
        self.op(b't');
    }
    /// An object of class `module.class` whose `BUILD` state is the dict `state` fills.
    pub fn object(&mut self, module: &str, class: &str, state: impl FnOnce(&mut B)) {
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
    pub fn tensor(&mut self, shape: &[i32], stride: &[i32], offset: i32) {
        let numel = STORAGE_FLOATS as i32;
        self.with(|p| p.tensor("FloatStorage", "0", numel, offset, shape, stride));
    }
    pub fn contiguous(&mut self, shape: &[i32], offset: i32) {
        let mut stride = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        self.tensor(shape, &stride, offset);
    }
    pub fn finish(self) -> Vec<u8> {
        self.p.stop()
    }
}

/// `nn.Conv2d(cin, cout, k, stride=s, bias=False)` with its weight at the storage's start;
/// `zero_strides` makes the weight a broadcast view of one element.
pub fn conv2d(b: &mut B, cin: i32, cout: i32, s: i32, zero_strides: bool) {
    b.object("torch.nn.modules.conv", "Conv2d", |b| {
        conv2d_attrs(b, cin, cout, s, zero_strides);
    });
}

pub fn conv2d_attrs(b: &mut B, cin: i32, cout: i32, s: i32, zero_strides: bool) {
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

pub fn silu(b: &mut B) {
    b.object("torch.nn.modules.activation", "SiLU", |_| {});
}

/// The attributes of a YOLOv7 `Conv` 3 -> 3 with stride `s` reading `f`, besides `_modules`.
pub fn conv_attrs(b: &mut B, f: i32) {
    b.kv("f", |b| b.int(f));
}

/// `models.common.Conv` 3 -> 3, 1x1, stride `s`, reading the previous layer.
pub fn conv(b: &mut B, s: i32, extra_children: impl FnOnce(&mut B)) {
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
pub struct HeadSpec {
    pub nl: usize,
    pub nc: i32,
    pub strides: Vec<f32>,
    pub anchors: Vec<f32>,
    pub zero_stride_weights: bool,
}

impl HeadSpec {
    pub fn two_levels() -> Self {
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
pub fn detect(b: &mut B, head: &HeadSpec, from: &[i32]) {
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
pub fn storage(head: &HeadSpec) -> Vec<u8> {
    let mut floats = vec![0.5f32; STORAGE_FLOATS];
    floats[ANCHORS_AT..ANCHORS_AT + head.anchors.len()].copy_from_slice(&head.anchors);
    floats[STRIDES_AT..STRIDES_AT + head.strides.len()].copy_from_slice(&head.strides);
    floats.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// `{"model": Model}` where `Model.model` is a `Sequential` of the layers `layers` writes
/// (given the memo index of the `Sequential` itself, for cycles), and `model_attrs` adds
/// attributes to the `Model`.
pub fn checkpoint(
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
pub fn standard_layers<'h>(
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

pub fn no_attrs(_: &mut B) {}

/// `repeats` entries of one shared layer between two real ones and the head.
pub fn shared_layers(repeats: usize) -> Vec<u8> {
    let head = HeadSpec::two_levels();
    checkpoint(&head, no_attrs, standard_layers(&head, repeats, |_, _| {}))
}

/// As [`shared_layers`], the shared layer holding the layer list as a child: every layer
/// reaches every other.
pub fn cyclic_layers(repeats: usize) -> Vec<u8> {
    let head = HeadSpec::two_levels();
    let back_to_the_list = |b: &mut B, sequential: u32| {
        b.kv("loop", |b| b.get(sequential));
    };
    checkpoint(
        &head,
        no_attrs,
        standard_layers(&head, repeats, back_to_the_list),
    )
}

/// `layers` entries of one `Conv` whose instance dict has `junk` entries of one key between
/// a wrong `f` and its real attributes.
pub fn shared_attribute_dict(junk: usize, layers: usize) -> Vec<u8> {
    let head = HeadSpec::two_levels();
    let write = |b: &mut B, _| {
        let mut shared = None;
        b.dict(layers + 3, |b, i| {
            b.str(&i.to_string());
            match i {
                0 => conv(b, 8, |_| {}),
                1 => conv(b, 2, |_| {}),
                i if i == layers + 2 => detect(b, &head, &[0, -1]),
                _ => match shared {
                    Some(index) => b.get(index),
                    None => {
                        b.object("models.common", "Conv", |b| {
                            // A wrong value first, then junk, then the real attributes.
                            b.kv("f", |b| b.int(7));
                            b.str("junk");
                            let key = b.put();
                            b.op(b'N');
                            for n in 1..junk {
                                b.get(key);
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
    checkpoint(&head, no_attrs, write)
}

/// A head of `nc` classes whose weights are broadcast views of one element, no `names`.
pub fn classes(nc: i32) -> Vec<u8> {
    let head = HeadSpec {
        nc,
        zero_stride_weights: true,
        ..HeadSpec::two_levels()
    };
    checkpoint(&head, no_attrs, standard_layers(&head, 1, |_, _| {}))
}

/// `names` lists one name of `len` bytes `copies` times (as many classes).
pub fn shared_name(len: usize, copies: usize) -> Vec<u8> {
    let head = HeadSpec {
        nc: copies as i32,
        ..HeadSpec::two_levels()
    };
    let name = "n".repeat(len);
    let names = |b: &mut B| {
        b.kv("names", |b| {
            b.op(b']');
            b.op(b'(');
            b.str(&name);
            let shared = b.put();
            for i in 1..copies {
                b.get(shared);
                if i % 1000 == 999 {
                    b.flush(b'e');
                }
            }
            b.op(b'e');
        });
    };
    checkpoint(&head, names, standard_layers(&head, 1, |_, _| {}))
}

/// `layers` entries of one `Concat` whose input list has `len` entries.
pub fn shared_inputs(len: usize, layers: usize) -> Vec<u8> {
    let head = HeadSpec::two_levels();
    let write = |b: &mut B, _| {
        let mut shared = None;
        b.dict(layers, |b, i| {
            b.str(&i.to_string());
            match shared {
                Some(index) => b.get(index),
                None => {
                    b.object("models.common", "Concat", |b| {
                        b.kv("d", |b| b.int(1));
                        b.kv("f", |b| b.int_list(std::iter::repeat_n(-1, len)));
                    });
                    shared = Some(b.put());
                }
            }
        });
    };
    checkpoint(&head, no_attrs, write)
}

/// A layer registered under a key of `len` bytes.
pub fn huge_key(len: usize) -> Vec<u8> {
    let head = HeadSpec::two_levels();
    let key = "k".repeat(len);
    let layers = |b: &mut B, _| {
        b.dict(1, |b, _| {
            b.str(&key);
            conv(b, 8, |_| {});
        });
    };
    checkpoint(&head, no_attrs, layers)
}

/// A layer of class `<len bytes>.models.common.<class>`.
pub fn huge_class(len: usize, class: &str) -> Vec<u8> {
    let head = HeadSpec::two_levels();
    let module = format!("{}.models.common", "m".repeat(len));
    let layers = |b: &mut B, _| {
        b.dict(1, |b, _| {
            b.str("0");
            b.object(&module, class, |b| conv_attrs(b, -1));
        });
    };
    checkpoint(&head, no_attrs, layers)
}

/// A `Conv` whose activation is `torch.nn.<len bytes>`.
pub fn huge_activation(len: usize) -> Vec<u8> {
    let head = HeadSpec::two_levels();
    let activation = "a".repeat(len);
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
    checkpoint(&head, no_attrs, layers)
}

/// A convolution weight of `dims` dimensions of size 1.
pub fn many_dims(dims: usize) -> Vec<u8> {
    let head = HeadSpec::two_levels();
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
                                        b.tensor(&vec![1; dims], &vec![1; dims], 0);
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
    checkpoint(&head, no_attrs, layers)
}

/// A `Concat` of one map of stride 8 and `len` maps of stride 16.
pub fn mixed_strides(len: usize) -> Vec<u8> {
    let head = HeadSpec::two_levels();
    let layers = |b: &mut B, _| {
        b.dict(3, |b, i| {
            b.str(&i.to_string());
            match i {
                0 => conv(b, 8, |_| {}),
                1 => conv(b, 2, |_| {}),
                _ => b.object("models.common", "Concat", |b| {
                    b.kv("d", |b| b.int(1));
                    b.kv("f", |b| {
                        b.int_list(std::iter::once(0).chain(std::iter::repeat_n(1, len)));
                    });
                }),
            }
        });
    };
    checkpoint(&head, no_attrs, layers)
}

/// No model: a dict of a dozen keys of `len` bytes.
pub fn huge_keys_no_model(len: usize) -> Vec<u8> {
    let mut b = B::new();
    b.dict(12, |b, i| {
        b.str(&format!("{i}{}", "x".repeat(len)));
        b.int(0);
    });
    torch_zip(&b.finish(), &[], "little")
}

impl B {
    /// `torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())`
    /// whose persistent id, shape and stride the closures write.
    pub fn rebuild_tensor(
        &mut self,
        pid: impl FnOnce(&mut B),
        shape: impl FnOnce(&mut B),
        stride: impl FnOnce(&mut B),
    ) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.op(b'(');
        pid(self);
        self.op(b'Q');
        self.int(0);
        shape(self);
        stride(self);
        self.op(0x89);
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
        self.op(b't');
        self.op(b'R');
    }

    /// The persistent id of float storage `key` (written by `key`) of `numel` elements.
    pub fn float_storage(&mut self, numel: i32, key: impl FnOnce(&mut B)) {
        self.op(b'(');
        self.str("storage");
        self.global("torch", "FloatStorage");
        key(self);
        self.str("cpu");
        self.int(numel);
        self.op(b't');
    }
}

/// Which field of many tensors one shared value stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedField {
    /// One tuple of `len` ones, as the shape and as the strides.
    Dims,
    /// One storage key of `len` bytes.
    StorageKey,
}

/// The standard model with an extra `Model` attribute: a list of `tensors` tensors that all
/// share one value of `len` elements (or bytes) in `field`.
pub fn shared_tensor_field(field: SharedField, len: usize, tensors: usize) -> Vec<u8> {
    let head = HeadSpec::two_levels();
    // The memo index of the shared value, once written.
    let memo = std::cell::Cell::new(None);
    let shared = |b: &mut B, write: &dyn Fn(&mut B)| match memo.get() {
        Some(index) => b.get(index),
        None => {
            write(b);
            memo.set(Some(b.put()));
        }
    };
    let ones = |b: &mut B| {
        b.op(b'(');
        for _ in 0..len {
            b.int(1);
        }
        b.op(b't');
    };
    let key = "7".repeat(if field == SharedField::StorageKey {
        len
    } else {
        0
    });
    let extra = |b: &mut B| {
        b.kv("extra", |b| {
            b.op(b']');
            b.op(b'(');
            for i in 0..tensors {
                b.rebuild_tensor(
                    |b| {
                        b.float_storage(STORAGE_FLOATS as i32, |b| match field {
                            SharedField::StorageKey => shared(b, &|b| b.str(&key)),
                            _ => b.str("0"),
                        });
                    },
                    |b| match field {
                        SharedField::Dims => shared(b, &ones),
                        SharedField::StorageKey => b.int_tuple(&[1]),
                    },
                    |b| match field {
                        SharedField::Dims => shared(b, &ones),
                        SharedField::StorageKey => b.int_tuple(&[1]),
                    },
                );
                if i % 1000 == 999 {
                    b.flush(b'e');
                }
            }
            b.op(b'e');
        });
    };
    checkpoint(&head, extra, standard_layers(&head, 1, |_, _| {}))
}

/// The generated hostile inputs: each shares or repeats one value where a reference can
/// stand (layer lists, attribute dicts, names, input lists, shapes, strides, storage keys)
/// or holds one huge value, at a size that exhausted memory or time before the reader had
/// a budget. Zip archives; [`crate::common::legacy_of`] writes each in the legacy format.
pub fn catalog() -> Vec<(&'static str, Build)> {
    const MIB: usize = 1 << 20;
    vec![
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
        (
            "1e4-dim shape and stride shared by 1e5 tensors",
            Box::new(|| shared_tensor_field(SharedField::Dims, 10_000, 100_000)),
        ),
        (
            "16 MB storage key shared by 2e3 tensors",
            Box::new(|| shared_tensor_field(SharedField::StorageKey, 16 * MIB, 2_000)),
        ),
    ]
}

/// Writes one hostile checkpoint.
pub type Build = Box<dyn Fn() -> Vec<u8> + Send + Sync>;
