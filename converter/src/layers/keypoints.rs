//! The keypoint branch of the pose head `IKeypoint`, one per level (`m_kpt.i`): a single
//! 1x1 convolution, or (`dw_conv_kpt`) a chain of depth-wise and point-wise `Conv` blocks
//! ending in that convolution. Its output sits beside the box convolution's in the head:
//! `cat(im(m(ia(x))), m_kpt(x))` along channels.
//!
//! Decoding a keypoint, per level, with the model's own `nkpt` (the official code
//! hard-codes 17): `x, y = (raw * 2 - 0.5 + grid) * stride` (no sigmoid),
//! `conf = sigmoid(raw)`. Eager ([`decode`]) and TorchScript ([`DECODE_SOURCE`]) side by
//! side.

use tch::Tensor;
use yolots_checkpoint::model;

use super::conv::{Conv, Conv2d};
use super::{Emitter, Layer, NamedTensors, Placement, WeightSource};
use crate::error::Result;
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;

/// One level's keypoint branch.
#[derive(Debug)]
pub(crate) struct KeypointBranch {
    /// The `DWConv`/`Conv` chain (empty for the single-convolution head).
    pub blocks: Vec<Conv>,
    /// The output convolution, `3 * nkpt * na` channels.
    pub out: Conv2d,
}

impl KeypointBranch {
    pub(crate) fn load(d: &model::KeypointBranch, src: &dyn WeightSource) -> Result<Self> {
        Ok(KeypointBranch {
            blocks: d
                .blocks
                .iter()
                .map(|b| Conv::load(b, src))
                .collect::<Result<_>>()?,
            out: Conv2d::load(&d.out, src)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.shallow_clone();
        for block in &self.blocks {
            y = block.forward(&y)?;
        }
        self.out.forward(&y)
    }

    /// BatchNorms of the chain folded into their convolutions.
    pub(crate) fn fused(self) -> Result<Self> {
        Ok(KeypointBranch {
            blocks: self
                .blocks
                .into_iter()
                .map(Conv::fused)
                .collect::<Result<_>>()?,
            out: self.out,
        })
    }

    pub(crate) fn place(&self, p: Placement) -> Result<Self> {
        Ok(KeypointBranch {
            blocks: self
                .blocks
                .iter()
                .map(|b| b.place(p))
                .collect::<Result<_>>()?,
            out: self.out.place(p)?,
        })
    }

    /// `m_kpt.i.weight` for a single convolution; `m_kpt.i.0.conv.weight`, ...,
    /// `m_kpt.i.11.weight` for a chain, as the source's `Sequential` names them.
    pub(crate) fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        if self.blocks.is_empty() {
            self.out.named(out);
            return;
        }
        for (j, block) in self.blocks.iter().enumerate() {
            out.scope(&j.to_string(), |o| block.named(o));
        }
        out.scope(&self.blocks.len().to_string(), |o| self.out.named(o));
    }

    pub(crate) fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        if self.blocks.is_empty() {
            return self.out.script(em);
        }
        let mut children = self
            .blocks
            .iter()
            .map(|b| b.script(em))
            .collect::<Result<Vec<_>>>()?;
        children.push(self.out.script(em)?);
        let refs: Vec<&ScriptModule> = children.iter().collect();
        let class = em.class_name("KeypointBranch", &refs);
        let mut m = em.module(&class)?;
        for (j, child) in children.iter().enumerate() {
            m.submodule(&j.to_string(), child)?;
        }
        let calls = children.len();
        em.finish(&class, &mut m, || {
            let mut src = String::from("def forward(self, x: Tensor) -> Tensor:\n");
            for j in 0..calls {
                src.push_str(&format!("    x = getattr(self, \"{j}\").forward(x)\n"));
            }
            src.push_str("    return x\n");
            src
        })?;
        Ok(m)
    }

    /// The ONNX nodes of the branch, weights named as [`KeypointBranch::named`] names them.
    pub(crate) fn onnx(&self, e: &mut OnnxEmitter, x: &str, name: &str) -> Result<String> {
        if self.blocks.is_empty() {
            return e.conv2d(x, &self.out, name);
        }
        let mut y = x.to_owned();
        for (j, block) in self.blocks.iter().enumerate() {
            y = block.onnx(e, &y, &format!("{name}.{j}"))?;
        }
        e.conv2d(&y, &self.out, &format!("{name}.{}", self.blocks.len()))
    }
}

/// Decodes one level's keypoint part `k` (`[B, na, ny, nx, 3 * nkpt]`, pre-activation) with
/// its `grid` (`[1, 1, ny, nx, 2]`, float32): pixels for x, y and a sigmoid for the
/// confidence, in `k`'s dtype.
pub(crate) fn decode(k: &Tensor, grid: &Tensor, stride: f64, nkpt: i64) -> Result<Tensor> {
    let s = k.size();
    let (bs, na, ny, nx) = (s[0], s[1], s[2], s[3]);
    let k = k.f_view([bs, na, ny, nx, nkpt, 3])?;
    let xy = k
        .f_slice(5, 0, 2, 1)?
        .f_mul_scalar(2.0)?
        .f_sub_scalar(0.5)?
        .f_add(&grid.f_unsqueeze(4)?)?
        .f_mul_scalar(stride)?
        .f_to_kind(k.kind())?;
    let conf = k.f_slice(5, 2, 3, 1)?.f_sigmoid()?;
    Ok(Tensor::f_cat(&[xy, conf], 5)?.f_view([bs, na, ny, nx, 3 * nkpt])?)
}

/// The head's TorchScript method doing what [`decode`] does.
pub(crate) const DECODE_SOURCE: &str = r#"
def _decode_keypoints(self, k: Tensor, grid: Tensor, stride: float) -> Tensor:
    bs = k.size(0)
    na = k.size(1)
    ny = k.size(2)
    nx = k.size(3)
    k = k.view(bs, na, ny, nx, self.nkpt, 3)
    xy = ((k[:, :, :, :, :, 0:2] * 2.0 - 0.5 + grid.unsqueeze(4)) * stride).to(k.dtype)
    conf = torch.sigmoid(k[:, :, :, :, :, 2:3])
    return torch.cat([xy, conf], 5).view(bs, na, ny, nx, 3 * self.nkpt)
"#;

/// The ONNX nodes doing what [`decode`] does, on float32 `k` with the level's grid
/// columns `gx` (`[1, 1, 1, nx, 1, 1]`) and rows `gy` (`[1, 1, ny, 1, 1, 1]`).
pub(crate) fn onnx_decode(
    e: &mut OnnxEmitter,
    k: &str,
    (gx, gy): (&str, &str),
    stride: f32,
    nkpt: i64,
) -> String {
    let k = e.reshape(k, &[0, 0, 0, 0, nkpt, 3]);
    let coordinate = |e: &mut OnnxEmitter, c: i64, grid: &str| {
        let v = e.slice(&k, 5, c, Some(c + 1));
        let v = e.mul_add(&v, 2.0, -0.5);
        let v = e.g.op("Add", &[&v, grid], vec![]);
        e.mul_scalar(&v, stride)
    };
    let x = coordinate(e, 0, gx);
    let y = coordinate(e, 1, gy);
    let conf = e.slice(&k, 5, 2, Some(3));
    let conf = e.g.op("Sigmoid", &[&conf], vec![]);
    let joined = e.concat(&[&x, &y, &conf], 5);
    e.reshape(&joined, &[0, 0, 0, 0, 3 * nkpt])
}
