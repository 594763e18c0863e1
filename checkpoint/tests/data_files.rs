//! The small checkpoints of `tests/data`, written by the official YOLOv7 code from tiny
//! configurations (`generate.py`): every layer kind and activation, fused checkpoints,
//! training checkpoints, the legacy format, deflated archives, f32 and bf16 weights.
//! Reference values come from `reference.py` (torch, independently of this crate).

#![allow(clippy::unwrap_used)]

mod common;

use std::borrow::Cow;

use common::data;
use yolots_checkpoint::model::{
    Activation, HeadKind, LayerKind, ModelSource, RepConvForm, UpsampleMode, Variant,
};
use yolots_checkpoint::{ArchiveFormat, Checkpoint, DType, Error, ModelDescription, TensorRef};

fn describe(name: &str) -> (Vec<u8>, ModelDescription) {
    let bytes = data(name);
    let description = Checkpoint::from_bytes(&bytes).unwrap().describe().unwrap();
    (bytes, description)
}

fn find<'d>(d: &'d ModelDescription, name: &str) -> &'d TensorRef {
    d.tensors()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

fn sum(values: &[f32]) -> f64 {
    values.iter().map(|v| f64::from(*v)).sum()
}

#[test]
fn every_layer_kind_and_activation() {
    let (_, d) = describe("kinds.pt");
    assert_eq!(d.names, ["cat", "dog"]);
    assert_eq!((d.nc, d.parameters, d.variant), (2, 24054, Variant::Custom));
    assert_eq!(d.width_multiple(), None);
    assert!(!d.fused);
    let acts: Vec<Activation> = d.layers[..8]
        .iter()
        .map(|l| match &l.kind {
            LayerKind::Conv(b) => b.act,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        acts,
        [
            Activation::Silu,
            Activation::LeakyRelu {
                negative_slope: 0.1
            },
            Activation::Relu,
            Activation::Hardswish,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Mish,
            Activation::Identity,
        ]
    );
    let types: Vec<&str> = d
        .layers
        .iter()
        .map(|l| l.class.rsplit('.').next().unwrap())
        .collect();
    assert_eq!(
        types[8..],
        [
            "MP",
            "Conv",
            "DownC",
            "Conv",
            "Shortcut",
            "MaxPool2d",
            "SPPCSPC",
            "SP",
            "Conv",
            "Upsample",
            "Concat",
            "RepConv",
            "RepConv",
            "ReOrg",
            "Concat",
            "IDetect"
        ]
    );
    let LayerKind::DownC(down) = &d.layers[10].kind else {
        panic!()
    };
    assert_eq!((down.pool.kernel, down.cv2.conv.stride), ([2, 2], [2, 2]));
    assert_eq!(d.layers[10].out_channels, 16);
    assert!(matches!(d.layers[12].kind, LayerKind::Shortcut));
    let LayerKind::MaxPool { class, pool } = &d.layers[13].kind else {
        panic!()
    };
    assert_eq!(
        (class.as_str(), pool.kernel, pool.stride),
        ("MaxPool2d", [2, 2], [2, 2])
    );
    let LayerKind::SppCspc(spp) = &d.layers[14].kind else {
        panic!()
    };
    let kernels: Vec<usize> = spp.pools.iter().map(|p| p.kernel[0]).collect();
    assert_eq!(kernels, [5, 9, 13]);
    assert!(matches!(
        d.layers[17].kind,
        LayerKind::Upsample { scale_factor, mode: UpsampleMode::Nearest } if scale_factor == 2.0
    ));
    assert_eq!(d.layers[18].out_channels, 24);
    let LayerKind::RepConv(rep) = &d.layers[19].kind else {
        panic!()
    };
    let RepConvForm::Branches { identity, .. } = &rep.form else {
        panic!()
    };
    assert!(
        identity.is_some(),
        "24 -> 24, stride 1 keeps an identity branch"
    );
    let LayerKind::RepConv(rep) = &d.layers[20].kind else {
        panic!()
    };
    let RepConvForm::Branches {
        identity,
        dense,
        one_by_one,
    } = &rep.form
    else {
        panic!()
    };
    assert!(identity.is_none());
    assert_eq!(
        (dense.conv.kernel, one_by_one.conv.kernel),
        ([3, 3], [1, 1])
    );
    assert_eq!(dense.act, Activation::Identity);
    assert_eq!(
        d.layers[21].out_channels, 64,
        "ReOrg quadruples the channels"
    );
    let head = d.head().unwrap();
    assert_eq!(
        (head.kind, head.nl, head.na, head.fused),
        (HeadKind::IDetect, 3, 3, false)
    );
    assert_eq!(head.implicit_a.len(), 3);
    assert_eq!(head.implicit_a[1].shape, [1, 80, 1, 1]);
    assert_eq!(head.implicit_m[0].shape, [1, 21, 1, 1]);
    assert_eq!(d.layers.last().unwrap().from, [9, 22, 15]);
    // `Model.save` as parse_model wrote it (`-2 % 12 == 10`), deduplicated.
    assert_eq!(d.save, [9, 10, 12, 15, 20, 22]);
}

/// (tensor, sum of its values, first value, last value).
type Pick = (&'static str, f64, f64, f64);

#[test]
fn reference_values() {
    // (file, total of all described tensors, [(tensor, sum, first, last)]).
    let cases: &[(&str, Option<f64>, &[Pick])] = &[
        (
            "kinds.pt",
            Some(2533.7358421087265),
            &[
                (
                    "model.0.conv.weight",
                    -1.4128265380859375,
                    -0.24169921875,
                    -0.2496337890625,
                ),
                (
                    "model.23.m.0.bias",
                    -35.906982421875,
                    -0.410888671875,
                    -1.0087890625,
                ),
                (
                    "model.23.ia.0.implicit",
                    -3.5784759521484375,
                    -0.697265625,
                    0.396484375,
                ),
                (
                    "model.5.bn.running_var",
                    7.8505859375,
                    0.88330078125,
                    0.802734375,
                ),
            ],
        ),
        (
            "kinds-fused.pt",
            None,
            &[
                (
                    "model.0.conv.weight",
                    -1.8127870559692383,
                    -0.0792236328125,
                    -0.2318115234375,
                ),
                (
                    "model.23.m.0.weight",
                    -58.89581537246704,
                    -0.28125,
                    -0.158203125,
                ),
                (
                    "model.23.m.0.bias",
                    -124.1676025390625,
                    0.2003173828125,
                    -0.619140625,
                ),
            ],
        ),
        (
            "aux-fused.pt",
            None,
            &[
                (
                    "model.1.conv.weight",
                    -1.3300666213035583,
                    0.029052734375,
                    -0.06396484375,
                ),
                ("model.15.m.0.bias", -30.593505859375, 0.20703125, -1.109375),
                ("model.15.anchor_grid", 6659.0, 19.0, 792.0),
            ],
        ),
        (
            "deploy.pt",
            Some(2065.19537371397),
            &[
                (
                    "model.0.conv.weight",
                    -3.371774673461914,
                    0.1697998046875,
                    0.05877685546875,
                ),
                (
                    "model.8.m.0.bias",
                    -7.489044189453125,
                    0.22509765625,
                    4.05078125,
                ),
                (
                    "model.6.bn.running_var",
                    23.36083984375,
                    1.7548828125,
                    1.5224609375,
                ),
            ],
        ),
    ];
    for (file, total, picks) in cases {
        let bytes = data(file);
        let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
        let d = checkpoint.describe().unwrap();
        for (name, expected, first, last) in *picks {
            let values = checkpoint.tensor_f32(find(&d, name)).unwrap();
            assert_eq!(f64::from(values[0]), *first, "{file} {name}");
            assert_eq!(f64::from(*values.last().unwrap()), *last, "{file} {name}");
            let s = sum(&values);
            assert!(
                (s - expected).abs() < 1e-9 * expected.abs().max(1.0),
                "{file} {name}: {s}"
            );
        }
        if let Some(total) = total {
            let s: f64 = d
                .tensors()
                .iter()
                .map(|t| sum(&checkpoint.tensor_f32(t).unwrap()))
                .sum();
            assert!(
                (s - total).abs() < 1e-9 * total.abs(),
                "{file}: {s} != {total}"
            );
        }
    }
}

#[test]
fn fused_checkpoints_are_recognised() {
    let (_, d) = describe("kinds-fused.pt");
    assert!(d.fused);
    assert_eq!(d.weights_dtype, DType::F32);
    for layer in &d.layers {
        match &layer.kind {
            LayerKind::Conv(b) => {
                assert!(b.bn.is_none(), "layer {}", layer.index);
                assert!(b.conv.bias.is_some(), "the folded bias stays");
            }
            LayerKind::SppCspc(s) => assert!(s.cv7.bn.is_none()),
            LayerKind::DownC(dc) => assert!(dc.cv1.bn.is_none()),
            LayerKind::RepConv(r) => {
                let RepConvForm::Reparam { conv } = &r.form else {
                    panic!()
                };
                assert!(conv.bias.is_some());
            }
            _ => {}
        }
    }
    let head = d.head().unwrap();
    assert!(head.fused);
    assert!(head.implicit_a.is_empty() && head.implicit_m.is_empty());
    // The official fuse() keeps the implicit modules (and their parameters) around.
    assert_eq!(d.parameters, 22678);

    let (_, d) = describe("aux-fused.pt");
    assert!(d.fused);
    assert_eq!(d.weights_dtype, DType::BF16);
    let head = d.head().unwrap();
    assert_eq!(
        (head.kind, head.fused, head.aux_convs.len()),
        (HeadKind::IAuxDetect, true, 4)
    );

    // A RepConv built in its deploy form next to unfused convolutions: not fused overall.
    let (_, d) = describe("deploy.pt");
    assert!(!d.fused);
    let LayerKind::RepConv(rep) = &d.layers[5].kind else {
        panic!()
    };
    assert!(matches!(rep.form, RepConvForm::Reparam { .. }));
    assert_eq!(d.head().unwrap().kind, HeadKind::Detect);
}

#[test]
fn aux_head_and_reorg() {
    let (_, d) = describe("aux.pt");
    let head = d.head().unwrap();
    assert_eq!(
        (head.kind, head.nl, head.convs.len(), head.aux_convs.len()),
        (HeadKind::IAuxDetect, 4, 4, 4)
    );
    assert_eq!(head.strides, [8.0, 16.0, 32.0, 64.0]);
    assert_eq!(head.aux_convs[0].in_channels, 8);
    assert_eq!(head.convs[0].in_channels, 16);
    assert!(matches!(d.layers[0].kind, LayerKind::ReOrg));
    assert_eq!(d.layers[0].out_channels, 12);
    assert_eq!(d.names, ["helmet", "vest", "person"]);
}

#[test]
fn training_checkpoint_uses_ema() {
    let bytes = data("kinds-training.pt");
    let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
    let d = checkpoint.describe().unwrap();
    assert_eq!((d.source, d.epoch), (ModelSource::Ema, Some(4)));
    assert_eq!(d.parameters, 24054);
    // The optimizer state and the numpy fitness were read as data beside the model.
    let graph = checkpoint.graph();
    let fitness = graph.dict_get(checkpoint.root(), "best_fitness").unwrap();
    assert!(
        matches!(graph.get(fitness), Some(yolots_checkpoint::pickle::Node::NdArray(a)) if a.shape == [1])
    );
    let optimizer = graph.dict_get(checkpoint.root(), "optimizer").unwrap();
    assert!(graph.dict_get(optimizer, "state").is_some());
}

#[test]
fn legacy_format_reads_the_same_model() {
    let zip_bytes = data("kinds.pt");
    let legacy_bytes = data("kinds-legacy.pt");
    let zip = Checkpoint::from_bytes(&zip_bytes).unwrap();
    let legacy = Checkpoint::from_bytes(&legacy_bytes).unwrap();
    assert_eq!(
        (zip.format(), legacy.format()),
        (ArchiveFormat::Zip, ArchiveFormat::Legacy)
    );
    let (a, b) = (zip.describe().unwrap(), legacy.describe().unwrap());
    assert_eq!(a.parameters, b.parameters);
    assert_eq!(a.layers.len(), b.layers.len());
    let (ta, tb) = (a.tensors(), b.tensors());
    assert_eq!(ta.len(), tb.len());
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!((&x.name, &x.shape, x.dtype), (&y.name, &y.shape, y.dtype));
        assert_eq!(
            zip.tensor_data(x).unwrap(),
            legacy.tensor_data(y).unwrap(),
            "{}",
            x.name
        );
    }
    // The lazy reader walks the legacy storages too.
    let lazy = Checkpoint::from_reader(std::io::Cursor::new(legacy_bytes.clone())).unwrap();
    let c = lazy.describe().unwrap();
    assert_eq!(b, c);
    let last = tb.last().unwrap();
    assert_eq!(
        lazy.tensor_data(last).unwrap(),
        legacy.tensor_data(last).unwrap()
    );
}

#[test]
fn deflated_archive_reads_the_same_model() {
    let stored_bytes = data("aux.pt");
    let deflated_bytes = data("aux-deflated.pt");
    let stored = Checkpoint::from_bytes(&stored_bytes).unwrap();
    let deflated = Checkpoint::from_bytes(&deflated_bytes).unwrap();
    let (a, b) = (stored.describe().unwrap(), deflated.describe().unwrap());
    assert_eq!(a, b);
    for t in a.tensors() {
        let inflated = deflated.tensor_data(t).unwrap();
        assert!(matches!(inflated, Cow::Owned(_)));
        assert_eq!(stored.tensor_data(t).unwrap(), inflated, "{}", t.name);
    }
    let lazy = Checkpoint::from_reader(std::io::Cursor::new(&deflated_bytes)).unwrap();
    assert_eq!(lazy.describe().unwrap(), a);
}

#[test]
fn state_dict_is_refused_with_advice() {
    let bytes = data("state-dict.pt");
    let error = Checkpoint::from_bytes(&bytes)
        .unwrap()
        .describe()
        .unwrap_err();
    assert!(matches!(error, Error::StateDictOnly), "{error}");
    assert_eq!(error.code(), "state_dict_only");
    let message = error.to_string();
    assert!(
        message.contains("architecture is missing") && message.contains("train.py"),
        "{message}"
    );
}

#[test]
fn yolov5_layer_is_refused_by_class_and_index() {
    let bytes = data("unsupported-c3.pt");
    let error = Checkpoint::from_bytes(&bytes)
        .unwrap()
        .describe()
        .unwrap_err();
    match &error {
        Error::UnknownLayer { index, class } => {
            assert_eq!((*index, class.as_str()), (3, "models.common.C3"));
        }
        other => panic!("{other}"),
    }
    assert_eq!(error.code(), "unknown_layer");
    let message = error.to_string();
    assert!(
        message.contains("models.common.C3")
            && message.contains("layer 3")
            && message.contains("YOLOv7")
    );
}

#[test]
fn json_summary_is_stable() {
    let (_, d) = describe("deploy.pt");
    let json = serde_json::to_value(yolots_checkpoint::inspect::Summary::from(&d)).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "anchors",
        "epoch",
        "fused",
        "head",
        "input_channels",
        "keypoint_names",
        "layers",
        "model",
        "names",
        "nc",
        "nkpt",
        "parameters",
        "schema_version",
        "source",
        "strides",
        "task",
        "variant",
        "weights_dtype",
        "width_multiple",
    ];
    expected.sort_unstable();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["model"], "YOLOv7");
    assert_eq!(json["variant"], "custom");
    assert_eq!(json["head"], "Detect");
    assert_eq!(json["task"], "detect");
    assert_eq!(json["nkpt"], 0);
    assert_eq!(json["weights_dtype"], "f16");
    assert_eq!(json["source"], "model");
    assert_eq!(json["anchors"][0][0], serde_json::json!([10.0, 13.0]));
    let row = &json["layers"][5];
    assert_eq!(row["index"], 5);
    assert_eq!(row["from"], serde_json::json!([2]));
    assert_eq!(row["type"], "RepConv");
    assert_eq!(row["class"], "models.common.RepConv");
    assert_eq!(row["out_channels"], 16);
    assert_eq!(row["parameters"], 2320);
}
