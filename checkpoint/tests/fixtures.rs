//! Every real checkpoint in `../shared/fixtures`: the description agrees with the fixture
//! metadata written by the official code, every layer is recognised, and tensor values are
//! read exactly (reference values computed once, independently, by
//! `tests/data/reference.py`: torch for the values, zipfile + struct for the raw bits).

#![allow(clippy::unwrap_used)]

mod common;

use std::borrow::Cow;

use common::{fixture, meta};
use yolots_checkpoint::inspect::Summary;
use yolots_checkpoint::model::{HeadKind, LayerKind, ModelSource, Variant};
use yolots_checkpoint::{Checkpoint, DType, ModelDescription, TensorRef};

/// (name, numel, sum of the values, [first, second, last], sum of the raw bit patterns).
type Pick = (&'static str, usize, f64, [f64; 3], u64);

struct Reference {
    name: &'static str,
    total_sum: f64,
    tensors: usize,
    picks: &'static [Pick],
}

const REFERENCES: &[Reference] = &[
    Reference {
        name: "yolov7-tiny",
        total_sum: 15709.456671595573,
        tensors: 289,
        picks: &[
            (
                "model.0.conv.weight",
                864,
                3.6758235692977905,
                [0.07342529296875, 0.1549072265625, 0.058685302734375],
                23188417,
            ),
            (
                "model.77.m.0.weight",
                32640,
                9.031566381454468,
                [-0.086669921875, 0.0123291015625, -0.07684326171875],
                865285485,
            ),
            (
                "model.77.m.0.bias",
                255,
                -1190.7626419067383,
                [0.0538330078125, -0.0338134765625, -4.91796875],
                12502706,
            ),
            (
                "model.77.anchor_grid",
                18,
                1760.0,
                [10.0, 13.0, 326.0],
                383756,
            ),
            (
                "model.5.bn.running_var",
                32,
                40.96533203125,
                [1.4091796875, 1.73046875, 1.8271484375],
                498364,
            ),
            (
                "model.77.ia.0.implicit",
                128,
                0.5292123556137085,
                [0.029571533203125, -0.011383056640625, 0.0237884521484375],
                2808603,
            ),
        ],
    },
    Reference {
        name: "yolov7-w25-c3",
        total_sum: 16118.240725457668,
        tensors: 474,
        picks: &[
            (
                "model.0.conv.weight",
                216,
                -0.5152873992919922,
                [-0.13427734375, 0.058135986328125, 0.048126220703125],
                6094526,
            ),
            (
                "model.105.m.0.weight",
                1536,
                1.1342252492904663,
                [-0.00598907470703125, -0.069580078125, -0.055206298828125],
                41580608,
            ),
            (
                "model.105.m.0.bias",
                24,
                -31.09339141845703,
                [0.07080078125, -0.01444244384765625, -1.248046875],
                912565,
            ),
            (
                "model.105.anchor_grid",
                18,
                2158.0,
                [12.0, 16.0, 401.0],
                388984,
            ),
            (
                "model.5.bn.running_var",
                16,
                20.74267578125,
                [1.345703125, 1.5654296875, 1.755859375],
                249844,
            ),
            (
                "model.105.ia.0.implicit",
                64,
                0.3151226043701172,
                [
                    -0.0005712509155273438,
                    0.01561737060546875,
                    -0.01543426513671875,
                ],
                1243164,
            ),
        ],
    },
    Reference {
        name: "yolov7-w6-w25-c3",
        total_sum: 26462.46668434143,
        tensors: 561,
        picks: &[
            (
                "model.1.conv.weight",
                1728,
                0.3449974060058594,
                [-0.029266357421875, -0.039093017578125, -0.017486572265625],
                46202938,
            ),
            (
                "model.122.m.0.weight",
                1536,
                3.695818781852722,
                [-0.06622314453125, -0.11651611328125, -0.047637939453125],
                40856085,
            ),
            (
                "model.122.m.0.bias",
                24,
                -31.300701141357422,
                [-0.04180908203125, 0.08978271484375, -1.224609375],
                980030,
            ),
            (
                "model.122.anchor_grid",
                24,
                6656.0,
                [19.0, 27.0, 792.0],
                548162,
            ),
            (
                "model.6.bn.running_var",
                16,
                19.93017578125,
                [1.25, 1.5986328125, 0.5908203125],
                248027,
            ),
            (
                "model.122.ia.0.implicit",
                64,
                0.5915260314941406,
                [0.03302001953125, 0.032501220703125, 0.024688720703125],
                1283985,
            ),
        ],
    },
    Reference {
        name: "yolov7-deploy-w25-c3",
        total_sum: 16140.950943291187,
        tensors: 468,
        picks: &[
            (
                "model.0.conv.weight",
                216,
                2.6544189453125,
                [0.11993408203125, -0.1328125, -0.12078857421875],
                5801172,
            ),
            (
                "model.105.m.0.weight",
                1536,
                -1.2150717377662659,
                [-0.08984375, 0.05023193359375, -0.084716796875],
                41918057,
            ),
            (
                "model.105.m.0.bias",
                24,
                -31.4822998046875,
                [-0.09197998046875, -0.050628662109375, -1.1328125],
                1018324,
            ),
            (
                "model.105.anchor_grid",
                18,
                2158.0,
                [12.0, 16.0, 401.0],
                388984,
            ),
            (
                "model.5.bn.running_var",
                16,
                20.74267578125,
                [1.345703125, 1.5654296875, 1.755859375],
                249844,
            ),
        ],
    },
];

fn find<'d>(description: &'d ModelDescription, name: &str) -> &'d TensorRef {
    description
        .tensors()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

/// Sum of the little-endian raw element bit patterns.
fn raw_bits(data: &[u8], dtype: DType) -> u64 {
    match dtype.size() {
        2 => data
            .chunks_exact(2)
            .map(|c| u64::from(u16::from_le_bytes([c[0], c[1]])))
            .sum(),
        4 => data
            .chunks_exact(4)
            .map(|c| u64::from(u32::from_le_bytes(c.try_into().unwrap())))
            .sum(),
        n => panic!("unexpected element size {n}"),
    }
}

fn check_against_meta(name: &str, description: &ModelDescription) {
    let meta = meta(name);
    let names: Vec<String> = meta["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert_eq!(description.names, names, "{name}: names");
    assert_eq!(
        description.nc as u64,
        meta["nc"].as_u64().unwrap(),
        "{name}: nc"
    );
    let strides: Vec<f64> = meta["stride"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(description.strides, strides, "{name}: strides");
    let head = description.head().expect("a head");
    assert_eq!(
        head.kind.as_str(),
        meta["detect"].as_str().unwrap(),
        "{name}: head class"
    );
    assert_eq!(head.strides, strides, "{name}: head strides");
    assert_eq!(
        description.parameters,
        meta["params"].as_u64().unwrap(),
        "{name}: parameters"
    );
}

fn check_reference(
    reference: &Reference,
    checkpoint: &Checkpoint<'_>,
    description: &ModelDescription,
) {
    let name = reference.name;
    let tensors = description.tensors();
    assert_eq!(tensors.len(), reference.tensors, "{name}: tensor count");
    for &(tensor, numel, sum, [first, second, last], bits) in reference.picks {
        let t = find(description, tensor);
        assert_eq!(t.numel(), numel, "{tensor}");
        let data = checkpoint.tensor_data(t).unwrap();
        assert!(
            matches!(data, Cow::Borrowed(_)),
            "{tensor}: contiguous data is borrowed"
        );
        assert_eq!(data.len(), numel * t.dtype.size());
        assert_eq!(raw_bits(&data, t.dtype), bits, "{name} {tensor}: raw bits");
        let values = checkpoint.tensor_f32(t).unwrap();
        assert_eq!(
            [values[0], values[1], values[numel - 1]].map(f64::from),
            [first, second, last],
            "{name} {tensor}"
        );
        let total: f64 = values.iter().map(|v| f64::from(*v)).sum();
        assert!(
            (total - sum).abs() <= 1e-9 * sum.abs().max(1.0),
            "{name} {tensor}: {total} != {sum}"
        );
    }
    let mut total = 0.0f64;
    for t in &tensors {
        total += checkpoint
            .tensor_f32(t)
            .unwrap()
            .iter()
            .map(|v| f64::from(*v))
            .sum::<f64>();
    }
    let expected = reference.total_sum;
    assert!(
        (total - expected).abs() <= 1e-9 * expected.abs(),
        "{name}: sum of all tensors {total} != {expected}"
    );
}

#[test]
fn fixtures_match_their_metadata_and_values() {
    for reference in REFERENCES {
        let bytes = fixture(&format!("{}.pt", reference.name));
        let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
        let description = checkpoint.describe().unwrap();
        check_against_meta(reference.name, &description);
        check_reference(reference, &checkpoint, &description);
        assert_eq!(description.weights_dtype, DType::F16);
        assert!(!description.fused);
        // The summary renders and serializes.
        let summary = Summary::from(&description);
        let text = summary.to_string();
        assert!(
            text.contains(&format!("layers      {}", description.layers.len())),
            "{text}"
        );
        assert!(text.contains(description.head().unwrap().kind.as_str()));
        serde_json::to_string(&summary).unwrap();
    }
}

#[test]
fn reader_and_bytes_agree() {
    for reference in REFERENCES {
        let bytes = fixture(&format!("{}.pt", reference.name));
        let from_bytes = Checkpoint::from_bytes(&bytes).unwrap();
        let from_reader = Checkpoint::from_reader(std::io::Cursor::new(&bytes)).unwrap();
        let a = from_bytes.describe().unwrap();
        let b = from_reader.describe().unwrap();
        assert_eq!(a, b, "{}", reference.name);
        for &(tensor, ..) in reference.picks {
            let t = find(&a, tensor);
            assert_eq!(
                from_bytes.tensor_data(t).unwrap(),
                from_reader.tensor_data(t).unwrap()
            );
        }
    }
}

#[test]
fn opens_files_lazily() {
    let path = common::fixtures_dir().join("yolov7-tiny.pt");
    let checkpoint = Checkpoint::open(&path).unwrap();
    let description = checkpoint.describe().unwrap();
    check_against_meta("yolov7-tiny", &description);
    let reference = &REFERENCES[0];
    let (tensor, numel, _, [first, ..], _) = reference.picks[1];
    let values = checkpoint.tensor_f32(find(&description, tensor)).unwrap();
    assert_eq!((values.len(), f64::from(values[0])), (numel, first));
}

#[test]
fn full_size_yolov7_is_described() {
    let bytes = fixture("yolov7-full.pt");
    let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
    let description = checkpoint.describe().unwrap();
    assert_eq!(description.parameters, 37_622_682);
    assert_eq!(description.layers.len(), 106);
    assert_eq!(
        (description.variant, description.width_multiple()),
        (Variant::Yolov7, Some(1.0))
    );
    assert_eq!(description.names.len(), 80);
    // Every storage the description names fits, and nothing is copied to read it.
    for t in description.tensors() {
        assert!(matches!(
            checkpoint.tensor_data(t).unwrap(),
            Cow::Borrowed(_)
        ));
    }
}

#[test]
fn variants_and_layers() {
    let cases = [
        (
            "yolov7-tiny",
            Variant::Yolov7Tiny,
            Some(1.0),
            HeadKind::IDetect,
            78,
            ModelSource::Model,
            Some(-1),
        ),
        (
            "yolov7-w25-c3",
            Variant::Yolov7,
            Some(0.25),
            HeadKind::IDetect,
            106,
            ModelSource::Ema,
            Some(3),
        ),
        (
            "yolov7-w6-w25-c3",
            Variant::Yolov7W6,
            Some(0.25),
            HeadKind::IAuxDetect,
            123,
            ModelSource::Model,
            Some(-1),
        ),
        (
            "yolov7-deploy-w25-c3",
            Variant::Yolov7,
            Some(0.25),
            HeadKind::Detect,
            106,
            ModelSource::Model,
            Some(-1),
        ),
    ];
    for (name, variant, width, head, layers, source, epoch) in cases {
        let bytes = fixture(&format!("{name}.pt"));
        let d = Checkpoint::from_bytes(&bytes).unwrap().describe().unwrap();
        assert_eq!(d.variant, variant, "{name}");
        assert_eq!(d.width_multiple(), width, "{name}");
        assert_eq!(d.head().unwrap().kind, head, "{name}");
        assert_eq!(d.layers.len(), layers, "{name}");
        assert_eq!(d.source, source, "{name}");
        assert_eq!(d.epoch, epoch, "{name}");
        assert_eq!(d.input_channels, 3);
        for (i, layer) in d.layers.iter().enumerate() {
            assert_eq!(layer.index, i);
        }
        // The layer parameters add up to the model's.
        assert_eq!(
            d.layers.iter().map(|l| l.parameters).sum::<u64>(),
            d.parameters,
            "{name}"
        );
    }
}

#[test]
fn tiny_layers_in_detail() {
    let bytes = fixture("yolov7-tiny.pt");
    let d = Checkpoint::from_bytes(&bytes).unwrap().describe().unwrap();
    let LayerKind::Conv(conv) = &d.layers[0].kind else {
        panic!()
    };
    assert_eq!(conv.conv.kernel, [3, 3]);
    assert_eq!(conv.conv.stride, [2, 2]);
    assert_eq!(conv.conv.padding, [1, 1]);
    assert_eq!((conv.conv.in_channels, conv.conv.out_channels), (3, 32));
    assert_eq!(conv.bn.as_ref().unwrap().eps, 0.001);
    assert!(
        matches!(conv.act, yolots_checkpoint::model::Activation::LeakyRelu { negative_slope } if negative_slope == 0.1)
    );
    let LayerKind::MaxPool { class, pool } = &d.layers[8].kind else {
        panic!()
    };
    assert_eq!(
        (class.as_str(), pool.kernel, pool.stride),
        ("MP", [2, 2], [2, 2])
    );
    let LayerKind::MaxPool { class, pool } = &d.layers[31].kind else {
        panic!()
    };
    assert_eq!(
        (class.as_str(), pool.kernel, pool.stride, pool.padding),
        ("SP", [5, 5], [1, 1], [2, 2])
    );
    assert_eq!(d.layers[6].from, vec![-1, -2, -3, -4]);
    assert_eq!(d.layers[6].out_channels, 128);
    let head = d.head().unwrap();
    assert_eq!((head.nl, head.na, head.nc), (3, 3, 80));
    assert_eq!(
        head.anchors_px[0],
        vec![[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]]
    );
    assert_eq!(head.implicit_a.len(), 3);
    assert_eq!(d.save[..5], [1, 2, 3, 4, 8]);
}
