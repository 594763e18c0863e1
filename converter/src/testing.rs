//! A small synthetic YOLOv7-like model that uses every layer kind, with random weights,
//! for tests that must not depend on the checkpoint reader or fixture files.

use std::cell::RefCell;
use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use yolots_checkpoint::model::*;

use crate::error::{ConvertError, Result};
use crate::layers::WeightSource;

/// Tensors by name, made up on the fly.
#[derive(Default)]
pub(crate) struct Weights {
    tensors: RefCell<HashMap<String, Tensor>>,
}

impl WeightSource for Weights {
    fn load(&self, r: &TensorRef) -> Result<Tensor> {
        self.tensors
            .borrow()
            .get(&r.name)
            .map(|t| t.copy())
            .ok_or_else(|| ConvertError::Internal(format!("no tensor {}", r.name)))
    }
}

struct Maker<'w> {
    w: &'w Weights,
}

impl Maker<'_> {
    fn tensor(&self, name: &str, shape: &[usize], t: Tensor) -> TensorRef {
        self.w.tensors.borrow_mut().insert(name.to_owned(), t);
        let mut stride = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        TensorRef {
            name: name.to_owned(),
            dtype: DType::F32,
            shape: shape.to_vec(),
            stride,
            storage_offset: 0,
            storage_key: name.to_owned(),
        }
    }

    fn randn(&self, name: &str, shape: &[usize], scale: f64) -> TensorRef {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::randn(&dims, (Kind::Float, Device::Cpu)) * scale;
        self.tensor(name, shape, t)
    }

    fn uniform(&self, name: &str, shape: &[usize], lo: f64, hi: f64) -> TensorRef {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::rand(&dims, (Kind::Float, Device::Cpu)) * (hi - lo) + lo;
        self.tensor(name, shape, t)
    }

    fn conv2d(&self, p: &str, c1: usize, c2: usize, k: usize, s: usize, bias: bool) -> Conv2d {
        let fan_in = (c1 * k * k) as f64;
        Conv2d {
            in_channels: c1,
            out_channels: c2,
            kernel: [k, k],
            stride: [s, s],
            padding: [k / 2, k / 2],
            dilation: [1, 1],
            groups: 1,
            weight: self.randn(&format!("{p}.weight"), &[c2, c1, k, k], 1.0 / fan_in.sqrt()),
            bias: bias.then(|| self.randn(&format!("{p}.bias"), &[c2], 0.1)),
        }
    }

    fn bn(&self, p: &str, c: usize) -> BatchNorm2d {
        BatchNorm2d {
            num_features: c,
            eps: 1e-3,
            weight: self.uniform(&format!("{p}.weight"), &[c], 0.5, 1.5),
            bias: self.randn(&format!("{p}.bias"), &[c], 0.1),
            running_mean: self.randn(&format!("{p}.running_mean"), &[c], 0.1),
            running_var: self.uniform(&format!("{p}.running_var"), &[c], 0.5, 1.5),
        }
    }

    fn conv(
        &self,
        p: &str,
        c1: usize,
        c2: usize,
        k: usize,
        s: usize,
        act: Activation,
    ) -> ConvBlock {
        ConvBlock {
            conv: self.conv2d(&format!("{p}.conv"), c1, c2, k, s, false),
            bn: Some(self.bn(&format!("{p}.bn"), c2)),
            act,
        }
    }

    fn repconv(&self, p: &str, c1: usize, c2: usize) -> RepConv {
        let branch = |name: &str, k: usize| ConvBlock {
            conv: {
                let mut c = self.conv2d(&format!("{p}.{name}.0"), c1, c2, k, 1, false);
                c.padding = [k / 2, k / 2];
                c
            },
            bn: Some(self.bn(&format!("{p}.{name}.1"), c2)),
            act: Activation::Identity,
        };
        RepConv {
            in_channels: c1,
            out_channels: c2,
            act: Activation::Silu,
            form: RepConvForm::Branches {
                identity: (c1 == c2).then(|| self.bn(&format!("{p}.rbr_identity"), c1)),
                dense: branch("rbr_dense", 3),
                one_by_one: branch("rbr_1x1", 1),
            },
        }
    }
}

fn pool(k: usize, s: usize) -> MaxPool2d {
    MaxPool2d {
        kernel: [k, k],
        stride: [s, s],
        padding: [if s == 1 { k / 2 } else { 0 }; 2],
        dilation: [1, 1],
        ceil_mode: false,
    }
}

fn layer(index: usize, from: &[i64], class: &str, kind: LayerKind, out: usize) -> Layer {
    Layer {
        index,
        from: from.to_vec(),
        class: class.to_owned(),
        kind,
        out_channels: out,
        parameters: 0,
    }
}

/// A model with every layer kind: ReOrg, Conv (SiLU and LeakyReLU), DownC, RepConv (with
/// and without identity), MP, SP, Shortcut, SPPCSPC, Upsample, Concat, and an `IDetect`
/// (or `Detect`) head with `nc` classes over strides 8, 16, 32.
pub(crate) fn synthetic_model(nc: usize, implicit: bool, seed: i64) -> (ModelDescription, Weights) {
    tch::manual_seed(seed);
    let weights = Weights::default();
    let m = Maker { w: &weights };
    let silu = Activation::Silu;
    let leaky = Activation::LeakyRelu {
        negative_slope: 0.1,
    };
    let mut layers = vec![
        layer(0, &[-1], "models.common.ReOrg", LayerKind::ReOrg, 12),
        layer(
            1,
            &[-1],
            "models.common.Conv",
            LayerKind::Conv(m.conv("model.1", 12, 16, 3, 1, silu)),
            16,
        ),
        layer(
            2,
            &[-1],
            "models.common.Conv",
            LayerKind::Conv(m.conv("model.2", 16, 16, 3, 2, silu)),
            16,
        ),
        layer(
            3,
            &[-1],
            "models.common.DownC",
            LayerKind::DownC(DownC {
                cv1: m.conv("model.3.cv1", 16, 16, 1, 1, silu),
                cv2: m.conv("model.3.cv2", 16, 16, 3, 2, silu),
                cv3: m.conv("model.3.cv3", 16, 16, 1, 1, silu),
                pool: pool(2, 2),
            }),
            32,
        ),
        layer(
            4,
            &[-1],
            "models.common.RepConv",
            LayerKind::RepConv(m.repconv("model.4", 32, 32)),
            32,
        ),
        layer(
            5,
            &[-1],
            "models.common.MP",
            LayerKind::MaxPool {
                class: "MP".into(),
                pool: pool(2, 2),
            },
            32,
        ),
        layer(
            6,
            &[-1],
            "models.common.Conv",
            LayerKind::Conv(m.conv("model.6", 32, 32, 1, 1, leaky)),
            32,
        ),
        layer(
            7,
            &[-1],
            "models.common.SP",
            LayerKind::MaxPool {
                class: "SP".into(),
                pool: pool(5, 1),
            },
            32,
        ),
        layer(
            8,
            &[6, -1],
            "models.common.Shortcut",
            LayerKind::Shortcut,
            32,
        ),
        layer(
            9,
            &[-1],
            "models.common.SPPCSPC",
            LayerKind::SppCspc(SppCspc {
                cv1: m.conv("model.9.cv1", 32, 16, 1, 1, silu),
                cv2: m.conv("model.9.cv2", 32, 16, 1, 1, silu),
                cv3: m.conv("model.9.cv3", 16, 16, 3, 1, silu),
                cv4: m.conv("model.9.cv4", 16, 16, 1, 1, silu),
                cv5: m.conv("model.9.cv5", 64, 16, 1, 1, silu),
                cv6: m.conv("model.9.cv6", 16, 16, 3, 1, silu),
                cv7: m.conv("model.9.cv7", 32, 32, 1, 1, silu),
                pools: vec![pool(5, 1), pool(9, 1), pool(13, 1)],
            }),
            32,
        ),
        layer(
            10,
            &[-1],
            "models.common.Conv",
            LayerKind::Conv(m.conv("model.10", 32, 32, 3, 2, silu)),
            32,
        ),
        layer(
            11,
            &[-1],
            "torch.nn.modules.upsampling.Upsample",
            LayerKind::Upsample {
                scale_factor: 2.0,
                mode: UpsampleMode::Nearest,
            },
            32,
        ),
        layer(
            12,
            &[-1, 9],
            "models.common.Concat",
            LayerKind::Concat { dim: 1 },
            64,
        ),
        layer(
            13,
            &[-1],
            "models.common.Conv",
            LayerKind::Conv(m.conv("model.13", 64, 32, 1, 1, silu)),
            32,
        ),
        layer(
            14,
            &[4],
            "models.common.RepConv",
            LayerKind::RepConv(m.repconv("model.14", 32, 48)),
            48,
        ),
    ];
    let na = 3;
    let no = nc + 5;
    let strides = vec![8.0, 16.0, 32.0];
    let anchors_px: Vec<Vec<[f32; 2]>> = vec![
        vec![[12.0, 16.0], [19.0, 36.0], [40.0, 28.0]],
        vec![[36.0, 75.0], [76.0, 55.0], [72.0, 146.0]],
        vec![[142.0, 110.0], [192.0, 243.0], [459.0, 401.0]],
    ];
    let flat: Vec<f32> = anchors_px.iter().flatten().flatten().copied().collect();
    let grid_units: Vec<f32> = flat
        .chunks(2 * na)
        .zip(&strides)
        .flat_map(|(c, s)| c.iter().map(move |v| v / *s as f32))
        .collect();
    let anchors = m.tensor(
        "model.15.anchors",
        &[3, na, 2],
        Tensor::from_slice(&grid_units).view([3, 3, 2]),
    );
    let anchor_grid = m.tensor(
        "model.15.anchor_grid",
        &[3, 1, na, 1, 1, 2],
        Tensor::from_slice(&flat).view([3, 1, 3, 1, 1, 2]),
    );
    let chans = [48usize, 32, 32];
    let convs = chans
        .iter()
        .enumerate()
        .map(|(i, &c)| m.conv2d(&format!("model.15.m.{i}"), c, no * na, 1, 1, true))
        .collect();
    let (implicit_a, implicit_m) = if implicit {
        (
            chans
                .iter()
                .enumerate()
                .map(|(i, &c)| m.randn(&format!("model.15.ia.{i}.implicit"), &[1, c, 1, 1], 0.02))
                .collect(),
            (0..3)
                .map(|i| {
                    m.uniform(
                        &format!("model.15.im.{i}.implicit"),
                        &[1, no * na, 1, 1],
                        0.97,
                        1.03,
                    )
                })
                .collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let head = DetectHead {
        kind: if implicit {
            HeadKind::IDetect
        } else {
            HeadKind::Detect
        },
        nc,
        na,
        nl: 3,
        strides: strides.clone(),
        anchors_px,
        anchors,
        anchor_grid,
        convs,
        implicit_a,
        implicit_m,
        aux_convs: Vec::new(),
        fused: false,
        keypoints: None,
    };
    layers.push(layer(
        15,
        &[14, 13, 10],
        "models.yolo.IDetect",
        LayerKind::Detect(head),
        no * na,
    ));
    let desc = ModelDescription {
        source: ModelSource::Model,
        variant: Variant::Custom,
        names: (0..nc).map(|i| format!("class{i}")).collect(),
        nc,
        strides,
        layers,
        save: vec![4, 6, 9, 10, 13],
        input_channels: 3,
        epoch: Some(-1),
        weights_dtype: DType::F32,
        parameters: 0,
        fused: false,
    };
    (desc, weights)
}

/// The same model as a checkpoint fused before upload would describe it: convolutions
/// with biases and no BatchNorm, re-parameterised RepConvs, implicit knowledge folded.
pub(crate) fn prefused(desc: &ModelDescription, weights: &Weights) -> (ModelDescription, Weights) {
    let fused =
        crate::network::Network::build(desc, weights, true, crate::layers::Placement::CPU_F32)
            .unwrap();
    let out = Weights::default();
    let m = Maker { w: &out };
    let t = |name: &str| {
        let (_, tensor) = fused
            .named()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no fused tensor {name}"));
        let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
        m.tensor(name, &shape, tensor.copy())
    };
    let conv2d = |c: &Conv2d, prefix: &str| Conv2d {
        weight: t(&format!("{prefix}.weight")),
        bias: Some(t(&format!("{prefix}.bias"))),
        ..c.clone()
    };
    let block = |b: &ConvBlock, prefix: &str| ConvBlock {
        conv: conv2d(&b.conv, &format!("{prefix}.conv")),
        bn: None,
        act: b.act,
    };
    let mut d = desc.clone();
    for layer in &mut d.layers {
        let p = format!("model.{}", layer.index);
        layer.kind = match &layer.kind {
            LayerKind::Conv(b) => LayerKind::Conv(block(b, &p)),
            LayerKind::RepConv(r) => {
                let RepConvForm::Branches { dense, .. } = &r.form else {
                    unreachable!()
                };
                LayerKind::RepConv(RepConv {
                    form: RepConvForm::Reparam {
                        conv: conv2d(&dense.conv, &format!("{p}.rbr_reparam")),
                    },
                    ..r.clone()
                })
            }
            LayerKind::SppCspc(s) => LayerKind::SppCspc(SppCspc {
                cv1: block(&s.cv1, &format!("{p}.cv1")),
                cv2: block(&s.cv2, &format!("{p}.cv2")),
                cv3: block(&s.cv3, &format!("{p}.cv3")),
                cv4: block(&s.cv4, &format!("{p}.cv4")),
                cv5: block(&s.cv5, &format!("{p}.cv5")),
                cv6: block(&s.cv6, &format!("{p}.cv6")),
                cv7: block(&s.cv7, &format!("{p}.cv7")),
                pools: s.pools.clone(),
            }),
            LayerKind::DownC(x) => LayerKind::DownC(DownC {
                cv1: block(&x.cv1, &format!("{p}.cv1")),
                cv2: block(&x.cv2, &format!("{p}.cv2")),
                cv3: block(&x.cv3, &format!("{p}.cv3")),
                pool: x.pool,
            }),
            LayerKind::Detect(h) => LayerKind::Detect(DetectHead {
                anchors: t(&format!("{p}.anchors")),
                anchor_grid: t(&format!("{p}.anchor_grid")),
                convs: h
                    .convs
                    .iter()
                    .enumerate()
                    .map(|(i, c)| conv2d(c, &format!("{p}.m.{i}")))
                    .collect(),
                implicit_a: Vec::new(),
                implicit_m: Vec::new(),
                fused: true,
                ..h.clone()
            }),
            other => other.clone(),
        };
    }
    d.fused = true;
    (d, out)
}
