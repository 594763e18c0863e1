//! `RepConv` (RepVGG block): `act(dense(x) + one_by_one(x) + identity(x))`, each branch
//! a conv+BN (the identity branch a bare BN), re-parameterised into one kxk convolution.
//!
//! Re-parameterisation as in the official `fuse_repvgg_block`: fold each BN into its
//! branch, zero-pad the 1x1 kernel to kxk, express the identity BN as a kxk kernel with
//! a 1 at the centre of channel `i`'s own input, and sum kernels and biases.

use tch::{Kind, Tensor};
use yolots_checkpoint::model::{self, RepConvForm};

use super::conv::{BatchNorm2d, Conv2d};
use super::{Emitter, Layer, NamedTensors, Placement, WeightSource, activation};
use crate::error::{ConvertError, Result};
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;

/// A conv+BN branch, named like the source's `nn.Sequential(conv, bn)` (`0`, `1`).
#[derive(Debug)]
pub(crate) struct Branch {
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
}

impl Branch {
    fn load(d: &model::ConvBlock, src: &dyn WeightSource) -> Result<Self> {
        let bn = d
            .bn
            .as_ref()
            .ok_or_else(|| ConvertError::Unsupported("RepConv branch without BatchNorm".into()))?;
        Ok(Branch {
            conv: Conv2d::load(&d.conv, src)?,
            bn: BatchNorm2d::load(bn, src)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.bn.forward(&self.conv.forward(x)?)
    }

    fn place(&self, p: Placement) -> Result<Self> {
        Ok(Branch {
            conv: self.conv.place(p)?,
            bn: self.bn.place(p)?,
        })
    }

    fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        out.scope("0", |o| self.conv.named(o));
        out.scope("1", |o| self.bn.named(o));
    }

    fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        let conv = self.conv.script(em)?;
        let bn = self.bn.script(em)?;
        em.list("ConvBnSequential", &[conv, bn])
    }

    fn onnx(&self, e: &mut OnnxEmitter, x: &str, name: &str) -> Result<String> {
        let y = e.conv2d(x, &self.conv, &format!("{name}.0"))?;
        e.batch_norm(&y, &self.bn, &format!("{name}.1"))
    }
}

/// The two forms of the block.
// Built once per layer: boxing the larger form buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Form {
    Branches {
        dense: Branch,
        one_by_one: Branch,
        identity: Option<BatchNorm2d>,
    },
    Reparam(Conv2d),
}

/// YOLOv7's `RepConv`.
#[derive(Debug)]
pub(crate) struct RepConv {
    pub form: Form,
    pub act: model::Activation,
    pub in_channels: i64,
}

impl RepConv {
    pub(crate) fn load(d: &model::RepConv, src: &dyn WeightSource) -> Result<Self> {
        let form = match &d.form {
            RepConvForm::Branches {
                dense,
                one_by_one,
                identity,
            } => Form::Branches {
                dense: Branch::load(dense, src)?,
                one_by_one: Branch::load(one_by_one, src)?,
                identity: identity
                    .as_ref()
                    .map(|b| BatchNorm2d::load(b, src))
                    .transpose()?,
            },
            RepConvForm::Reparam { conv } => Form::Reparam(Conv2d::load(conv, src)?),
        };
        Ok(RepConv {
            form,
            act: d.act,
            in_channels: super::int(d.in_channels)?,
        })
    }

    /// The re-parameterised block (a no-op when it already is).
    pub(crate) fn fused(self) -> Result<Self> {
        let Form::Branches {
            dense,
            one_by_one,
            identity,
        } = &self.form
        else {
            return Ok(self);
        };
        let d = dense.bn.fold_into(&dense.conv)?;
        let o = one_by_one.bn.fold_into(&one_by_one.conv)?;
        let (kh, kw) = kernel_hw(&d.weight)?;
        let (oh, ow) = kernel_hw(&o.weight)?;
        let (ph, pw) = ((kh - oh) / 2, (kw - ow) / 2);
        let o_weight = o
            .weight
            .f_constant_pad_nd([pw, kw - ow - pw, ph, kh - oh - ph])?;
        let mut weight = d.weight.f_add(&o_weight)?;
        let mut bias = bias_of(&d)?.f_add(&bias_of(&o)?)?;
        if let Some(id) = identity {
            let kernel = identity_kernel(self.in_channels, d.groups, kh, kw)?;
            let folded = id.fold_into(&d.with(kernel, None))?;
            weight = weight.f_add(&folded.weight)?;
            bias = bias.f_add(&bias_of(&folded)?)?;
        }
        Ok(RepConv {
            form: Form::Reparam(d.with(weight, Some(bias))),
            act: self.act,
            in_channels: self.in_channels,
        })
    }

    pub(crate) fn place(&self, p: Placement) -> Result<Self> {
        let form = match &self.form {
            Form::Reparam(conv) => Form::Reparam(conv.place(p)?),
            Form::Branches {
                dense,
                one_by_one,
                identity,
            } => Form::Branches {
                dense: dense.place(p)?,
                one_by_one: one_by_one.place(p)?,
                identity: identity.as_ref().map(|b| b.place(p)).transpose()?,
            },
        };
        Ok(RepConv {
            form,
            act: self.act,
            in_channels: self.in_channels,
        })
    }
}

impl Layer for RepConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.form {
            Form::Reparam(conv) => conv.forward(x)?,
            Form::Branches {
                dense,
                one_by_one,
                identity,
            } => {
                let mut y = dense.forward(x)?.f_add(&one_by_one.forward(x)?)?;
                if let Some(id) = identity {
                    y = y.f_add(&id.forward(x)?)?;
                }
                y
            }
        };
        activation::forward(self.act, y)
    }

    fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        match &self.form {
            Form::Reparam(conv) => out.scope("rbr_reparam", |o| conv.named(o)),
            Form::Branches {
                dense,
                one_by_one,
                identity,
            } => {
                if let Some(id) = identity {
                    out.scope("rbr_identity", |o| id.named(o));
                }
                out.scope("rbr_dense", |o| dense.named(o));
                out.scope("rbr_1x1", |o| one_by_one.named(o));
            }
        }
    }

    fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        let act = activation::tag(self.act);
        match &self.form {
            Form::Reparam(conv) => {
                let child = conv.script(em)?;
                let class = em.class_name(&format!("RepConv{act}"), &[&child]);
                let mut m = em.module(&class)?;
                m.submodule("rbr_reparam", &child)?;
                activation::register(self.act, &mut m)?;
                em.finish(&class, &mut m, || {
                    format!(
                        "def forward(self, x: Tensor) -> Tensor:\n    return {}\n",
                        activation::script(self.act, "self.rbr_reparam.forward(x)")
                    )
                })?;
                Ok(m)
            }
            Form::Branches {
                dense,
                one_by_one,
                identity,
            } => {
                let id = if identity.is_some() { "Identity" } else { "" };
                let d = dense.script(em)?;
                let o = one_by_one.script(em)?;
                let i = identity.as_ref().map(|b| b.script(em)).transpose()?;
                let class = em.class_name(&format!("RepConvBranches{id}{act}"), &[&d, &o]);
                let mut m = em.module(&class)?;
                m.submodule("rbr_dense", &d)?;
                m.submodule("rbr_1x1", &o)?;
                if let Some(i) = &i {
                    m.submodule("rbr_identity", i)?;
                }
                activation::register(self.act, &mut m)?;
                let branch = |name: &str| {
                    format!(
                        "getattr(self.{name}, \"1\").forward(getattr(self.{name}, \"0\").forward(x))"
                    )
                };
                let mut sum = format!("{} + {}", branch("rbr_dense"), branch("rbr_1x1"));
                if i.is_some() {
                    sum.push_str(" + self.rbr_identity.forward(x)");
                }
                em.finish(&class, &mut m, || {
                    format!(
                        "def forward(self, x: Tensor) -> Tensor:\n    y = {sum}\n    return {}\n",
                        activation::script(self.act, "y")
                    )
                })?;
                Ok(m)
            }
        }
    }

    /// The ONNX nodes of either form.
    fn onnx(&self, e: &mut OnnxEmitter, x: &str, name: &str) -> Result<String> {
        let y = match &self.form {
            Form::Reparam(conv) => e.conv2d(x, conv, &format!("{name}.rbr_reparam"))?,
            Form::Branches {
                dense,
                one_by_one,
                identity,
            } => {
                let d = dense.onnx(e, x, &format!("{name}.rbr_dense"))?;
                let o = one_by_one.onnx(e, x, &format!("{name}.rbr_1x1"))?;
                let mut y = e.g.op("Add", &[&d, &o], vec![]);
                if let Some(id) = identity {
                    let i = e.batch_norm(x, id, &format!("{name}.rbr_identity"))?;
                    y = e.g.op("Add", &[&y, &i], vec![]);
                }
                y
            }
        };
        Ok(e.activation(self.act, &y))
    }

    fn fuse(self: Box<Self>) -> Result<Box<dyn Layer>> {
        Ok(Box::new(self.fused()?))
    }

    fn place(&self, p: Placement) -> Result<Box<dyn Layer>> {
        Ok(Box::new(RepConv::place(self, p)?))
    }
}

fn kernel_hw(w: &Tensor) -> Result<(i64, i64)> {
    match w.size().as_slice() {
        [_, _, h, w] => Ok((*h, *w)),
        other => Err(ConvertError::Unsupported(format!(
            "RepConv kernel of shape {other:?}"
        ))),
    }
}

fn bias_of(c: &Conv2d) -> Result<Tensor> {
    c.bias
        .as_ref()
        .map(|b| b.shallow_clone())
        .ok_or_else(|| ConvertError::Internal("folded convolution without bias".into()))
}

/// The kxk kernel of the identity map: output channel `i` reads input `i % (c / g)` of
/// its group at the kernel centre.
fn identity_kernel(channels: i64, groups: i64, kh: i64, kw: i64) -> Result<Tensor> {
    let per_group = channels / groups.max(1);
    let kernel = Tensor::f_zeros(
        [channels, per_group, kh, kw],
        (Kind::Float, tch::Device::Cpu),
    )?;
    let idx = Tensor::f_arange(channels, (Kind::Int64, tch::Device::Cpu))?;
    let inner = idx.f_remainder(per_group)?;
    let centre = Tensor::from_slice(&[kh / 2 * kw + kw / 2]);
    // Flatten the kernel taps to write all centres at once.
    let mut flat = kernel.f_view([channels, per_group, kh * kw])?;
    let _ = flat.f_index_put_(
        &[Some(idx), Some(inner), Some(centre)],
        &Tensor::from_slice(&[1f32]),
        false,
    )?;
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Activation;

    fn bn(c: i64, seed: f64) -> BatchNorm2d {
        let r = |s: f64| Tensor::arange(c, (Kind::Float, tch::Device::Cpu)) * 0.1 + s;
        BatchNorm2d {
            weight: r(0.5 + seed),
            bias: r(-0.2 + seed),
            running_mean: r(0.1 * seed),
            running_var: r(1.0 + seed),
            eps: 1e-3,
        }
    }

    fn conv(c: i64, k: i64) -> Conv2d {
        Conv2d {
            weight: Tensor::randn([c, c, k, k], (Kind::Float, tch::Device::Cpu)),
            bias: None,
            stride: [1, 1],
            padding: [k / 2, k / 2],
            dilation: [1, 1],
            groups: 1,
        }
    }

    #[test]
    fn reparam_equals_the_branches() {
        tch::manual_seed(1);
        let c = 4;
        let block = RepConv {
            form: Form::Branches {
                dense: Branch {
                    conv: conv(c, 3),
                    bn: bn(c, 0.1),
                },
                one_by_one: Branch {
                    conv: conv(c, 1),
                    bn: bn(c, 0.2),
                },
                identity: Some(bn(c, 0.3)),
            },
            act: Activation::Silu,
            in_channels: c,
        };
        let x = Tensor::randn([2, c, 7, 5], (Kind::Float, tch::Device::Cpu));
        let expected = block.forward(&x).unwrap();
        let fused = block.fused().unwrap();
        assert!(matches!(fused.form, Form::Reparam(_)));
        let got = fused.forward(&x).unwrap();
        let err = (got - expected).abs().max().double_value(&[]);
        assert!(err < 1e-4, "max error {err}");
    }
}
