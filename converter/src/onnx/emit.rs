//! The graph under construction and the ONNX forms shared by several layer kinds
//! (convolution, BatchNorm, activation, pooling). Each layer kind's own ONNX method
//! lives in its layer file, beside its eager forward and its TorchScript class.

use tch::{Device, Kind, Tensor};
use yolots_checkpoint::model::Activation;
use yolots_onnx::proto::DataType;
use yolots_onnx::{Graph, attr};

use crate::error::{ConvertError, Result};
use crate::layers::conv::{BatchNorm2d, Conv2d};
use crate::layers::pool::MaxPool;

/// A graph being written, with the element type of its weights and activations.
pub(crate) struct OnnxEmitter {
    pub g: Graph,
    /// `Float` or `Float16`; the graph's inputs and outputs are float32 either way.
    pub elem: DataType,
}

impl OnnxEmitter {
    pub(crate) fn new(name: &str, elem: DataType) -> Self {
        OnnxEmitter {
            g: Graph::new(name),
            elem,
        }
    }

    fn kind(&self) -> Kind {
        match self.elem {
            DataType::Float16 => Kind::Half,
            _ => Kind::Float,
        }
    }

    /// `t` as an initializer named `name`, in the graph's element type.
    pub(crate) fn weight(&mut self, name: &str, t: &Tensor) -> Result<String> {
        let t = t
            .f_to_device(Device::Cpu)?
            .f_to_kind(self.kind())?
            .f_contiguous()?;
        let numel = t.numel();
        let mut raw = vec![0u8; numel * self.elem.size()];
        t.f_copy_data_u8(&mut raw, numel)?;
        Ok(self.g.tensor(name, self.elem, &t.size(), raw))
    }

    /// A float32 tensor as a float32 initializer (decoding constants).
    pub(crate) fn float_constant(&mut self, t: &Tensor) -> Result<String> {
        let t = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?;
        let dims = t.size();
        let values: Vec<f32> = Vec::try_from(t.f_flatten(0, -1)?)?;
        Ok(self.g.floats(&values, &dims))
    }

    /// `Conv`, with the weights named `{name}.weight` and `{name}.bias`.
    pub(crate) fn conv2d(&mut self, x: &str, c: &Conv2d, name: &str) -> Result<String> {
        let w = self.weight(&format!("{name}.weight"), &c.weight)?;
        let b = c
            .bias
            .as_ref()
            .map(|b| self.weight(&format!("{name}.bias"), b))
            .transpose()?;
        let (kh, kw) = match c.weight.size().as_slice() {
            [_, _, h, w] => (*h, *w),
            other => {
                return Err(ConvertError::Unsupported(format!(
                    "convolution weight of shape {other:?}"
                )));
            }
        };
        let mut inputs = vec![x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let [ph, pw] = c.padding;
        Ok(self.g.op(
            "Conv",
            &inputs,
            vec![
                attr::ints("kernel_shape", &[kh, kw]),
                attr::ints("strides", &c.stride),
                attr::ints("pads", &[ph, pw, ph, pw]),
                attr::ints("dilations", &c.dilation),
                attr::int("group", c.groups),
            ],
        ))
    }

    /// `BatchNormalization` in inference form.
    pub(crate) fn batch_norm(&mut self, x: &str, bn: &BatchNorm2d, name: &str) -> Result<String> {
        let scale = self.weight(&format!("{name}.weight"), &bn.weight)?;
        let bias = self.weight(&format!("{name}.bias"), &bn.bias)?;
        let mean = self.weight(&format!("{name}.running_mean"), &bn.running_mean)?;
        let var = self.weight(&format!("{name}.running_var"), &bn.running_var)?;
        Ok(self.g.op(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            vec![attr::float("epsilon", bn.eps as f32)],
        ))
    }

    /// The activation applied to `x`. Opset 17 has no SiLU or Mish operator: they are
    /// written out (`x * sigmoid(x)`, `x * tanh(softplus(x))`).
    pub(crate) fn activation(&mut self, act: Activation, x: &str) -> String {
        let g = &mut self.g;
        match act {
            Activation::Identity => x.to_owned(),
            Activation::Silu => {
                let s = g.op("Sigmoid", &[x], vec![]);
                g.op("Mul", &[x, &s], vec![])
            }
            Activation::Relu => g.op("Relu", &[x], vec![]),
            Activation::LeakyRelu { negative_slope } => g.op(
                "LeakyRelu",
                &[x],
                vec![attr::float("alpha", negative_slope as f32)],
            ),
            Activation::Hardswish => g.op("HardSwish", &[x], vec![]),
            Activation::Sigmoid => g.op("Sigmoid", &[x], vec![]),
            Activation::Tanh => g.op("Tanh", &[x], vec![]),
            Activation::Mish => {
                let sp = g.op("Softplus", &[x], vec![]);
                let t = g.op("Tanh", &[&sp], vec![]);
                g.op("Mul", &[x, &t], vec![])
            }
        }
    }

    /// `MaxPool`, with PyTorch's padding and ceil rule.
    pub(crate) fn max_pool(&mut self, x: &str, p: &MaxPool) -> String {
        let [ph, pw] = p.padding;
        self.g.op(
            "MaxPool",
            &[x],
            vec![
                attr::ints("kernel_shape", &p.kernel),
                attr::ints("strides", &p.stride),
                attr::ints("pads", &[ph, pw, ph, pw]),
                attr::ints("dilations", &p.dilation),
                attr::int("ceil_mode", i64::from(p.ceil_mode)),
            ],
        )
    }

    /// `x[..., start:end]` along `axis` (`end` `None`: to the end).
    pub(crate) fn slice(&mut self, x: &str, axis: i64, start: i64, end: Option<i64>) -> String {
        self.slice_step(x, axis, start, end, 1)
    }

    pub(crate) fn slice_step(
        &mut self,
        x: &str,
        axis: i64,
        start: i64,
        end: Option<i64>,
        step: i64,
    ) -> String {
        let starts = self.g.ints(&[start]);
        let ends = self.g.ints(&[end.unwrap_or(i64::MAX)]);
        let axes = self.g.ints(&[axis]);
        let steps = self.g.ints(&[step]);
        self.g
            .op("Slice", &[x, &starts, &ends, &axes, &steps], vec![])
    }

    /// `Reshape` to a constant shape (`0` keeps the input's size, `-1` infers).
    pub(crate) fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.g.ints(shape);
        self.g.op("Reshape", &[x, &s], vec![])
    }

    pub(crate) fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.g.op("Transpose", &[x], vec![attr::ints("perm", perm)])
    }

    pub(crate) fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.g.op("Concat", xs, vec![attr::int("axis", axis)])
    }

    /// `Cast` to `to`.
    pub(crate) fn cast(&mut self, x: &str, to: DataType) -> String {
        self.g.op("Cast", &[x], vec![attr::int("to", to as i64)])
    }

    /// `x * a + b` with float32 scalar constants (`a` first, as the eager code computes).
    pub(crate) fn mul_add(&mut self, x: &str, a: f32, b: f32) -> String {
        let a = self.g.float_scalar(a);
        let b = self.g.float_scalar(b);
        let m = self.g.op("Mul", &[x, &a], vec![]);
        self.g.op("Add", &[&m, &b], vec![])
    }

    pub(crate) fn mul_scalar(&mut self, x: &str, a: f32) -> String {
        let a = self.g.float_scalar(a);
        self.g.op("Mul", &[x, &a], vec![])
    }
}
