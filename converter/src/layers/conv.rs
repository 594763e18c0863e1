//! `nn.Conv2d`, `nn.BatchNorm2d` and YOLOv7's `Conv` block (conv, BatchNorm, activation),
//! with Conv+BN fusion.
//!
//! Fusion follows the official `fuse_conv_and_bn` arithmetic in float32:
//! `w' = w * gamma / sqrt(var + eps)`, `b' = beta - gamma * mean / sqrt(var + eps)`
//! (plus the scaled conv bias when there is one).

use tch::Tensor;
use yolots_checkpoint::model;

use super::{Emitter, Layer, NamedTensors, Placement, WeightSource, activation, pair};
use crate::error::Result;
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;

/// `nn.Conv2d`.
#[derive(Debug)]
pub(crate) struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    pub dilation: [i64; 2],
    pub groups: i64,
}

impl Conv2d {
    pub(crate) fn load(d: &model::Conv2d, src: &dyn WeightSource) -> Result<Self> {
        Ok(Conv2d {
            weight: src.load(&d.weight)?,
            bias: d.bias.as_ref().map(|b| src.load(b)).transpose()?,
            stride: pair(d.stride)?,
            padding: pair(d.padding)?,
            dilation: pair(d.dilation)?,
            groups: super::int(d.groups)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_conv2d(
            &self.weight,
            self.bias.as_ref(),
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )?)
    }

    /// Same hyper-parameters, new tensors.
    pub(crate) fn with(&self, weight: Tensor, bias: Option<Tensor>) -> Self {
        Conv2d {
            weight,
            bias,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        }
    }

    pub(crate) fn place(&self, p: Placement) -> Result<Self> {
        Ok(self.with(
            p.put(&self.weight)?,
            self.bias.as_ref().map(|b| p.put(b)).transpose()?,
        ))
    }

    pub(crate) fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        out.push("weight", &self.weight);
        if let Some(b) = &self.bias {
            out.push("bias", b);
        }
    }

    fn class(&self) -> &'static str {
        if self.bias.is_some() {
            "Conv2d"
        } else {
            "Conv2dNoBias"
        }
    }

    pub(crate) fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        let class = self.class();
        let mut m = em.module(class)?;
        m.parameter("weight", &self.weight)?;
        if let Some(b) = &self.bias {
            m.parameter("bias", b)?;
        }
        m.set_ints("stride", &self.stride)?;
        m.set_ints("padding", &self.padding)?;
        m.set_ints("dilation", &self.dilation)?;
        m.set_int("groups", self.groups)?;
        let bias = if self.bias.is_some() {
            "self.bias"
        } else {
            "None"
        };
        em.finish(class, &mut m, || {
            format!(
                "def forward(self, x: Tensor) -> Tensor:\n    \
                 return torch.conv2d(x, self.weight, {bias}, self.stride, self.padding, \
                 self.dilation, self.groups)\n"
            )
        })?;
        Ok(m)
    }
}

/// `nn.BatchNorm2d` in inference form.
#[derive(Debug)]
pub(crate) struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub eps: f64,
}

impl BatchNorm2d {
    pub(crate) fn load(d: &model::BatchNorm2d, src: &dyn WeightSource) -> Result<Self> {
        Ok(BatchNorm2d {
            weight: src.load(&d.weight)?,
            bias: src.load(&d.bias)?,
            running_mean: src.load(&d.running_mean)?,
            running_var: src.load(&d.running_var)?,
            eps: d.eps,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.0,
            self.eps,
            true,
        )?)
    }

    pub(crate) fn place(&self, p: Placement) -> Result<Self> {
        Ok(BatchNorm2d {
            weight: p.put(&self.weight)?,
            bias: p.put(&self.bias)?,
            running_mean: p.put(&self.running_mean)?,
            running_var: p.put(&self.running_var)?,
            eps: self.eps,
        })
    }

    /// `gamma / sqrt(var + eps)`: the per-channel scale BatchNorm applies.
    fn scale(&self) -> Result<Tensor> {
        Ok(self
            .weight
            .f_div(&self.running_var.f_add_scalar(self.eps)?.f_sqrt()?)?)
    }

    /// `beta - gamma * mean / sqrt(var + eps)`: the shift BatchNorm applies.
    fn shift(&self) -> Result<Tensor> {
        let std = self.running_var.f_add_scalar(self.eps)?.f_sqrt()?;
        Ok(self
            .bias
            .f_sub(&self.weight.f_mul(&self.running_mean)?.f_div(&std)?)?)
    }

    /// The convolution that equals `self(conv(x))`.
    pub(crate) fn fold_into(&self, conv: &Conv2d) -> Result<Conv2d> {
        let scale = self.scale()?;
        let weight = conv.weight.f_mul(&scale.f_reshape([-1, 1, 1, 1])?)?;
        let mut bias = self.shift()?;
        if let Some(b) = &conv.bias {
            bias = b.f_mul(&scale)?.f_add(&bias)?;
        }
        Ok(conv.with(weight, Some(bias)))
    }

    pub(crate) fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        out.push("weight", &self.weight);
        out.push("bias", &self.bias);
        out.push("running_mean", &self.running_mean);
        out.push("running_var", &self.running_var);
    }

    pub(crate) fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        const CLASS: &str = "BatchNorm2d";
        let mut m = em.module(CLASS)?;
        m.parameter("weight", &self.weight)?;
        m.parameter("bias", &self.bias)?;
        m.buffer("running_mean", &self.running_mean)?;
        m.buffer("running_var", &self.running_var)?;
        m.set_float("eps", self.eps)?;
        em.finish(CLASS, &mut m, || {
            "def forward(self, x: Tensor) -> Tensor:\n    \
             return torch.batch_norm(x, self.weight, self.bias, self.running_mean, \
             self.running_var, False, 0.0, self.eps, True)\n"
                .to_owned()
        })?;
        Ok(m)
    }
}

/// YOLOv7's `Conv`: `act(bn(conv(x)))`, or `act(conv(x))` once fused.
#[derive(Debug)]
pub(crate) struct Conv {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm2d>,
    pub act: model::Activation,
}

impl Conv {
    pub(crate) fn load(d: &model::ConvBlock, src: &dyn WeightSource) -> Result<Self> {
        Ok(Conv {
            conv: Conv2d::load(&d.conv, src)?,
            bn: d
                .bn
                .as_ref()
                .map(|b| BatchNorm2d::load(b, src))
                .transpose()?,
            act: d.act,
        })
    }

    /// BatchNorm folded into the convolution (a no-op for an already fused block).
    pub(crate) fn fused(self) -> Result<Self> {
        let Some(bn) = &self.bn else {
            return Ok(self);
        };
        Ok(Conv {
            conv: bn.fold_into(&self.conv)?,
            bn: None,
            act: self.act,
        })
    }

    pub(crate) fn place(&self, p: Placement) -> Result<Self> {
        Ok(Conv {
            conv: self.conv.place(p)?,
            bn: self.bn.as_ref().map(|b| b.place(p)).transpose()?,
            act: self.act,
        })
    }

    fn class(&self) -> String {
        let bn = if self.bn.is_some() { "Bn" } else { "" };
        let bias = if self.conv.bias.is_some() {
            ""
        } else {
            "NoBias"
        };
        format!("Conv{bias}{bn}{}", activation::tag(self.act))
    }
}

impl Layer for Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = self.conv.forward(x)?;
        if let Some(bn) = &self.bn {
            y = bn.forward(&y)?;
        }
        activation::forward(self.act, y)
    }

    fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        out.scope("conv", |o| self.conv.named(o));
        if let Some(bn) = &self.bn {
            out.scope("bn", |o| bn.named(o));
        }
    }

    fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        let class = self.class();
        let conv = self.conv.script(em)?;
        let bn = self.bn.as_ref().map(|b| b.script(em)).transpose()?;
        let mut m = em.module(&class)?;
        m.submodule("conv", &conv)?;
        if let Some(bn) = &bn {
            m.submodule("bn", bn)?;
        }
        activation::register(self.act, &mut m)?;
        let inner = if bn.is_some() {
            "self.bn.forward(self.conv.forward(x))"
        } else {
            "self.conv.forward(x)"
        };
        em.finish(&class, &mut m, || {
            format!(
                "def forward(self, x: Tensor) -> Tensor:\n    return {}\n",
                activation::script(self.act, inner)
            )
        })?;
        Ok(m)
    }

    /// The ONNX nodes of the block, weights named `{name}.conv.*` and `{name}.bn.*`.
    fn onnx(&self, e: &mut OnnxEmitter, x: &str, name: &str) -> Result<String> {
        let mut y = e.conv2d(x, &self.conv, &format!("{name}.conv"))?;
        if let Some(bn) = &self.bn {
            y = e.batch_norm(&y, bn, &format!("{name}.bn"))?;
        }
        Ok(e.activation(self.act, &y))
    }

    fn fuse(self: Box<Self>) -> Result<Box<dyn Layer>> {
        Ok(Box::new(self.fused()?))
    }

    fn place(&self, p: Placement) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Conv::place(self, p)?))
    }
}
