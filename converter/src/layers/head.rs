//! The detection heads `Detect`, `IDetect`, `IAuxDetect` and the pose head `IKeypoint`: a
//! 1x1 convolution per level (with implicit knowledge around it for `IDetect`,
//! `IAuxDetect` and `IKeypoint`), for `IKeypoint` the keypoint branch beside it
//! ([`super::keypoints`]), the raw `[B, na, ny, nx, no]` arrangement, and the decoding
//! into boxes (and keypoints) in input pixels.
//!
//! Decoding, as the official inference path computes it (grid built from the feature
//! size, in float32):
//! `xy = (sigmoid * 2 - 0.5 + grid) * stride`, `wh = (sigmoid * 2) ** 2 * anchor_grid`.
//!
//! Folding implicit knowledge, as the official `IDetect.fuse`: with `ia` added before
//! and `im` multiplied after the conv, `b' = (b + W @ ia) * im`, `W' = W * im`.
//! The training-only auxiliary convolutions of `IAuxDetect` (`m2`) are carried over but
//! never run.

use tch::{Kind, Tensor};
use yolots_checkpoint::model::{self, HeadKind};

use super::conv::Conv2d;
use super::keypoints::{self, KeypointBranch};
use super::{Emitter, NamedTensors, Placement, WeightSource, int};
use crate::error::{ConvertError, Result};
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;
use yolots_onnx::attr;
use yolots_onnx::proto::DataType;

/// A detection head.
#[derive(Debug)]
pub(crate) struct Head {
    pub kind: HeadKind,
    pub nc: i64,
    pub na: i64,
    /// Values per anchor: `no_det`, then `3 * nkpt` keypoint values.
    pub no: i64,
    /// Box, objectness and class probabilities: `nc + 5`.
    pub no_det: i64,
    /// Keypoints per detection (0 for detection heads).
    pub nkpt: i64,
    pub strides: Vec<f64>,
    /// `[nl, na, 2]`, in grid units.
    pub anchors: Tensor,
    /// `[nl, 1, na, 1, 1, 2]`, in pixels.
    pub anchor_grid: Tensor,
    /// `m.i`: one output convolution per level.
    pub convs: Vec<Conv2d>,
    /// `ia.i.implicit` (`[1, c_in, 1, 1]`), empty once folded or for `Detect`.
    pub implicit_a: Vec<Tensor>,
    /// `im.i.implicit` (`[1, no * na, 1, 1]`).
    pub implicit_m: Vec<Tensor>,
    /// `m2.i`: `IAuxDetect`'s training-only convolutions.
    pub aux: Vec<Conv2d>,
    /// `m_kpt.i`: `IKeypoint`'s keypoint branches (empty for detection heads).
    pub keypoints: Vec<KeypointBranch>,
}

impl Head {
    pub(crate) fn load(d: &model::DetectHead, src: &dyn WeightSource) -> Result<Self> {
        if d.convs.len() != d.nl || d.strides.len() != d.nl {
            return Err(ConvertError::Unsupported(format!(
                "head with {} levels but {} convolutions and {} strides",
                d.nl,
                d.convs.len(),
                d.strides.len()
            )));
        }
        if !d.implicit_a.is_empty() && (d.implicit_a.len() != d.nl || d.implicit_m.len() != d.nl) {
            return Err(ConvertError::Unsupported(
                "head with implicit knowledge on some levels only".into(),
            ));
        }
        let branches = d.keypoints.as_ref().map_or(&[][..], |k| &k.branches[..]);
        if !branches.is_empty() && branches.len() != d.nl {
            return Err(ConvertError::Unsupported(format!(
                "head with {} levels but {} keypoint branches",
                d.nl,
                branches.len()
            )));
        }
        let load_all =
            |v: &[model::TensorRef]| v.iter().map(|t| src.load(t)).collect::<Result<_>>();
        Ok(Head {
            kind: d.kind,
            nc: int(d.nc)?,
            na: int(d.na)?,
            no: int(d.no())?,
            no_det: int(d.no_det())?,
            nkpt: int(d.nkpt())?,
            strides: d.strides.clone(),
            anchors: src.load(&d.anchors)?,
            anchor_grid: src.load(&d.anchor_grid)?,
            convs: d
                .convs
                .iter()
                .map(|c| Conv2d::load(c, src))
                .collect::<Result<_>>()?,
            implicit_a: load_all(&d.implicit_a)?,
            implicit_m: load_all(&d.implicit_m)?,
            aux: d
                .aux_convs
                .iter()
                .map(|c| Conv2d::load(c, src))
                .collect::<Result<_>>()?,
            keypoints: branches
                .iter()
                .map(|b| KeypointBranch::load(b, src))
                .collect::<Result<_>>()?,
        })
    }

    pub(crate) fn nl(&self) -> usize {
        self.convs.len()
    }

    fn has_implicit(&self) -> bool {
        !self.implicit_a.is_empty()
    }

    /// `[B, C, ny, nx]` -> `[B, na, ny, nx, no]`.
    fn arrange(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.size();
        let dim = |i: usize| s.get(i).copied().unwrap_or(0);
        Ok(x.f_view([dim(0), self.na, self.no, dim(2), dim(3)])?
            .f_permute([0, 1, 3, 4, 2])?
            .f_contiguous()?)
    }

    /// The raw outputs of the first `nl` inputs (later inputs feed training-only heads).
    pub(crate) fn forward(&self, xs: &[&Tensor]) -> Result<Vec<Tensor>> {
        if xs.len() < self.nl() {
            return Err(ConvertError::Unsupported(format!(
                "head with {} levels gets {} inputs",
                self.nl(),
                xs.len()
            )));
        }
        let mut out = Vec::with_capacity(self.nl());
        for (i, conv) in self.convs.iter().enumerate() {
            let mut y = if self.has_implicit() {
                let shifted = self.implicit_a[i].f_add(xs[i])?;
                self.implicit_m[i].f_mul(&conv.forward(&shifted)?)?
            } else {
                conv.forward(xs[i])?
            };
            if let Some(branch) = self.keypoints.get(i) {
                // The keypoint branch reads the level's input without implicit knowledge.
                y = Tensor::f_cat(&[y, branch.forward(xs[i])?], 1)?;
            }
            out.push(self.arrange(&y)?);
        }
        Ok(out)
    }

    /// `[B, N, no]`: boxes (cx, cy, w, h) in input pixels, objectness, class
    /// probabilities, then for pose heads `(x, y, conf)` per keypoint.
    pub(crate) fn decode(&self, raw: &[Tensor]) -> Result<Tensor> {
        let mut z = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let y = r.f_slice(4, 0, self.no_det, 1)?.f_sigmoid()?;
            let s = y.size();
            let (bs, ny, nx) = (s[0], s[2], s[3]);
            let opts = (Kind::Float, y.device());
            let gx = Tensor::f_arange(nx, opts)?
                .f_view([1, nx])?
                .f_expand([ny, nx], false)?;
            let gy = Tensor::f_arange(ny, opts)?
                .f_view([ny, 1])?
                .f_expand([ny, nx], false)?;
            let grid = Tensor::f_stack(&[gx, gy], 2)?.f_view([1, 1, ny, nx, 2])?;
            let stride = self.strides.get(i).copied().unwrap_or(1.0);
            let xy = y
                .f_slice(4, 0, 2, 1)?
                .f_mul_scalar(2.0)?
                .f_sub_scalar(0.5)?
                .f_add(&grid)?
                .f_mul_scalar(stride)?
                .f_to_kind(y.kind())?;
            let wh = y
                .f_slice(4, 2, 4, 1)?
                .f_mul_scalar(2.0)?
                .f_pow_tensor_scalar(2)?
                .f_mul(&self.anchor_grid.f_get(int(i)?)?)?;
            let rest = y.f_slice(4, 4, None, 1)?;
            let mut parts = vec![xy, wh, rest];
            if self.nkpt > 0 {
                let k = r.f_slice(4, self.no_det, None, 1)?;
                parts.push(keypoints::decode(&k, &grid, stride, self.nkpt)?);
            }
            z.push(Tensor::f_cat(&parts, -1)?.f_view([bs, -1, self.no])?);
        }
        Ok(Tensor::f_cat(&z, 1)?)
    }

    /// Implicit knowledge folded into the convolutions (a no-op when already folded), and
    /// the BatchNorms of the keypoint branches into theirs.
    pub(crate) fn fused(self) -> Result<Self> {
        let keypoints = self
            .keypoints
            .into_iter()
            .map(KeypointBranch::fused)
            .collect::<Result<Vec<_>>>()?;
        let head = Head { keypoints, ..self };
        head.fold_implicit()
    }

    fn fold_implicit(self) -> Result<Self> {
        if !self.has_implicit() {
            return Ok(self);
        }
        let mut convs = Vec::with_capacity(self.convs.len());
        for ((conv, ia), im) in self
            .convs
            .iter()
            .zip(&self.implicit_a)
            .zip(&self.implicit_m)
        {
            let w = &conv.weight;
            let (c_out, c_in) = (w.size()[0], w.size()[1]);
            let bias = match &conv.bias {
                Some(b) => b.shallow_clone(),
                None => Tensor::f_zeros([c_out], (w.kind(), w.device()))?,
            };
            let shift = w
                .f_reshape([c_out, c_in])?
                .f_matmul(&ia.f_reshape([c_in, 1])?)?
                .f_squeeze_dim(1)?;
            let scale = im.f_reshape([c_out])?;
            let bias = bias.f_add(&shift)?.f_mul(&scale)?;
            let weight = w.f_mul(&im.f_transpose(0, 1)?)?;
            convs.push(conv.with(weight, Some(bias)));
        }
        Ok(Head {
            convs,
            implicit_a: Vec::new(),
            implicit_m: Vec::new(),
            ..self
        })
    }

    pub(crate) fn place(&self, p: Placement) -> Result<Self> {
        let put_all = |v: &[Tensor]| v.iter().map(|t| p.put(t)).collect::<Result<Vec<_>>>();
        let place_all = |v: &[Conv2d]| v.iter().map(|c| c.place(p)).collect::<Result<Vec<_>>>();
        Ok(Head {
            kind: self.kind,
            nc: self.nc,
            na: self.na,
            no: self.no,
            no_det: self.no_det,
            nkpt: self.nkpt,
            strides: self.strides.clone(),
            anchors: p.put(&self.anchors)?,
            anchor_grid: p.put(&self.anchor_grid)?,
            convs: place_all(&self.convs)?,
            implicit_a: put_all(&self.implicit_a)?,
            implicit_m: put_all(&self.implicit_m)?,
            aux: place_all(&self.aux)?,
            keypoints: self
                .keypoints
                .iter()
                .map(|b| b.place(p))
                .collect::<Result<_>>()?,
        })
    }

    pub(crate) fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        out.push("anchors", &self.anchors);
        out.push("anchor_grid", &self.anchor_grid);
        out.scope("m", |o| {
            for (i, c) in self.convs.iter().enumerate() {
                o.scope(&i.to_string(), |o| c.named(o));
            }
        });
        for (name, list) in [("ia", &self.implicit_a), ("im", &self.implicit_m)] {
            out.scope(name, |o| {
                for (i, t) in list.iter().enumerate() {
                    o.scope(&i.to_string(), |o| o.push("implicit", t));
                }
            });
        }
        out.scope("m2", |o| {
            for (i, c) in self.aux.iter().enumerate() {
                o.scope(&i.to_string(), |o| c.named(o));
            }
        });
        out.scope("m_kpt", |o| {
            for (i, b) in self.keypoints.iter().enumerate() {
                o.scope(&i.to_string(), |o| b.named(o));
            }
        });
    }

    fn implicit(em: &mut Emitter, class: &str, op: &str, t: &Tensor) -> Result<ScriptModule> {
        let mut m = em.module(class)?;
        m.parameter("implicit", t)?;
        em.finish(class, &mut m, || {
            format!("def forward(self, x: Tensor) -> Tensor:\n    return self.implicit {op} x\n")
        })?;
        Ok(m)
    }

    pub(crate) fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        let convs = self
            .convs
            .iter()
            .map(|c| c.script(em))
            .collect::<Result<Vec<_>>>()?;
        let m_list = em.list("HeadConvs", &convs)?;
        let mut children = vec![m_list];
        if self.has_implicit() {
            let ia = self
                .implicit_a
                .iter()
                .map(|t| Self::implicit(em, "ImplicitA", "+", t))
                .collect::<Result<Vec<_>>>()?;
            let im = self
                .implicit_m
                .iter()
                .map(|t| Self::implicit(em, "ImplicitM", "*", t))
                .collect::<Result<Vec<_>>>()?;
            children.push(em.list("ImplicitAList", &ia)?);
            children.push(em.list("ImplicitMList", &im)?);
        }
        if !self.aux.is_empty() {
            let aux = self
                .aux
                .iter()
                .map(|c| c.script(em))
                .collect::<Result<Vec<_>>>()?;
            children.push(em.list("HeadConvs", &aux)?);
        }
        if !self.keypoints.is_empty() {
            let branches = self
                .keypoints
                .iter()
                .map(|b| b.script(em))
                .collect::<Result<Vec<_>>>()?;
            children.push(em.list("KeypointBranches", &branches)?);
        }
        let base = match (self.kind, self.has_implicit()) {
            _ if !self.keypoints.is_empty() => "IKeypoint",
            (HeadKind::Detect, _) | (_, false) => "Detect",
            (HeadKind::IDetect | HeadKind::IKeypoint, true) => "IDetect",
            (HeadKind::IAuxDetect, true) => "IAuxDetect",
        };
        let refs: Vec<&ScriptModule> = children.iter().collect();
        let class = em.class_name(base, &refs);
        let mut m = em.module(&class)?;
        let mut names = vec!["m"];
        if self.has_implicit() {
            names.extend(["ia", "im"]);
        }
        if !self.aux.is_empty() {
            names.push("m2");
        }
        if !self.keypoints.is_empty() {
            names.push("m_kpt");
        }
        for (name, child) in names.iter().zip(&children) {
            m.submodule(name, child)?;
        }
        m.buffer("anchors", &self.anchors)?;
        m.buffer("anchor_grid", &self.anchor_grid)?;
        m.set_floats("stride", &self.strides)?;
        m.set_int("nc", self.nc)?;
        m.set_int("na", self.na)?;
        m.set_int("no", self.no)?;
        m.set_int("no_det", self.no_det)?;
        m.set_int("nkpt", self.nkpt)?;
        m.set_int("nl", int(self.nl())?)?;
        em.finish(&class, &mut m, || self.source())?;
        Ok(m)
    }

    /// The ONNX nodes of the raw outputs, float32 values named `raw_0`, `raw_1`, ...
    /// (weights named `{name}.m.0.weight`, ...).
    pub(crate) fn onnx_raw(
        &self,
        e: &mut OnnxEmitter,
        xs: &[&str],
        name: &str,
    ) -> Result<Vec<String>> {
        if xs.len() < self.nl() {
            return Err(ConvertError::Unsupported(format!(
                "head with {} levels gets {} inputs",
                self.nl(),
                xs.len()
            )));
        }
        let mut out = Vec::with_capacity(self.nl());
        for (i, conv) in self.convs.iter().enumerate() {
            let x = xs[i];
            let conv_name = format!("{name}.m.{i}");
            let mut y = if self.has_implicit() {
                let ia = e.weight(&format!("{name}.ia.{i}.implicit"), &self.implicit_a[i])?;
                let im = e.weight(&format!("{name}.im.{i}.implicit"), &self.implicit_m[i])?;
                let shifted = e.g.op("Add", &[&ia, x], vec![]);
                let y = e.conv2d(&shifted, conv, &conv_name)?;
                e.g.op("Mul", &[&im, &y], vec![])
            } else {
                e.conv2d(x, conv, &conv_name)?
            };
            if let Some(branch) = self.keypoints.get(i) {
                let k = branch.onnx(e, x, &format!("{name}.m_kpt.{i}"))?;
                y = e.concat(&[&y, &k], 1);
            }
            // [B, na * no, ny, nx] -> [B, ny, nx, na, no] -> [B, na, ny, nx, no]: the
            // reshape then only splits the last axis, whatever the size.
            let t = e.transpose(&y, &[0, 2, 3, 1]);
            let t = e.reshape(&t, &[0, 0, 0, self.na, self.no]);
            let t = e.transpose(&t, &[0, 3, 1, 2, 4]);
            let raw = format!("raw_{i}");
            let to_float = attr::int("to", DataType::Float as i64);
            e.g.op_into("Cast", &[&t], &[&raw], vec![to_float]);
            out.push(raw);
        }
        Ok(out)
    }

    /// The ONNX nodes of [`Head::decode`] over float32 raw values, the grid built from
    /// each level's shape at run time; the result is the value `decoded`.
    pub(crate) fn onnx_decode(&self, e: &mut OnnxEmitter, raw: &[String]) -> Result<String> {
        let mut levels = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let stride = self.strides.get(i).copied().unwrap_or(1.0) as f32;
            let y = e.slice(r, 4, 0, Some(self.no_det));
            let y = e.g.op("Sigmoid", &[&y], vec![]);
            let (gx, gy) = grid_axes(e, r);
            let coordinate = |e: &mut OnnxEmitter, c: i64, grid: &str| {
                let v = e.slice(&y, 4, c, Some(c + 1));
                let v = e.mul_add(&v, 2.0, -0.5);
                let v = e.g.op("Add", &[&v, grid], vec![]);
                e.mul_scalar(&v, stride)
            };
            let gx5 = e.reshape(&gx, &[1, 1, 1, -1, 1]);
            let gy5 = e.reshape(&gy, &[1, 1, -1, 1, 1]);
            let cx = coordinate(e, 0, &gx5);
            let cy = coordinate(e, 1, &gy5);
            let wh = e.slice(&y, 4, 2, Some(4));
            let wh = e.mul_scalar(&wh, 2.0);
            let wh = e.g.op("Mul", &[&wh, &wh], vec![]);
            let anchors = e.float_constant(&self.anchor_grid.f_get(int(i)?)?)?;
            let wh = e.g.op("Mul", &[&wh, &anchors], vec![]);
            let rest = e.slice(&y, 4, 4, None);
            let mut parts = vec![cx, cy, wh, rest];
            if self.nkpt > 0 {
                let k = e.slice(r, 4, self.no_det, None);
                let gx6 = e.reshape(&gx, &[1, 1, 1, -1, 1, 1]);
                let gy6 = e.reshape(&gy, &[1, 1, -1, 1, 1, 1]);
                parts.push(keypoints::onnx_decode(
                    e,
                    &k,
                    (&gx6, &gy6),
                    stride,
                    self.nkpt,
                ));
            }
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let joined = e.concat(&refs, 4);
            levels.push(e.reshape(&joined, &[0, -1, self.no]));
        }
        let refs: Vec<&str> = levels.iter().map(String::as_str).collect();
        e.g.op_into("Concat", &refs, &[DECODED], vec![attr::int("axis", 1)]);
        Ok(DECODED.to_owned())
    }

    fn source(&self) -> String {
        let mut src = String::from(
            "def forward(self, xs: List[Tensor]) -> List[Tensor]:\n    out: List[Tensor] = []\n",
        );
        for i in 0..self.nl() {
            let conv = |x: &str| format!("getattr(self.m, \"{i}\").forward({x})");
            let y = if self.has_implicit() {
                let shifted = format!("getattr(self.ia, \"{i}\").forward(xs[{i}])");
                format!("getattr(self.im, \"{i}\").forward({})", conv(&shifted))
            } else {
                conv(&format!("xs[{i}]"))
            };
            let y = if self.keypoints.is_empty() {
                y
            } else {
                let branch = format!("getattr(self.m_kpt, \"{i}\").forward(xs[{i}])");
                format!("torch.cat([{y}, {branch}], 1)")
            };
            src.push_str(&format!("    out.append(self._arrange({y}))\n"));
        }
        src.push_str("    return out\n\n");
        src.push_str(DECODE_SOURCE);
        src.push_str(keypoints::DECODE_SOURCE);
        src
    }
}

/// Name of the decoded value in ONNX graphs (an output, or an inner value for the
/// `detections` head that validation reads as an extra output).
pub(crate) const DECODED: &str = "decoded";

/// The cell columns `[nx]` and rows `[ny]` of a `[B, na, ny, nx, no]` value, as float32
/// ranges computed from its shape at run time.
fn grid_axes(e: &mut OnnxEmitter, r: &str) -> (String, String) {
    let shape = e.g.op("Shape", &[r], vec![]);
    let zero = e.g.int_scalar(0);
    let one = e.g.int_scalar(1);
    let axis = |e: &mut OnnxEmitter, dim: i64| {
        let d = e.g.int_scalar(dim);
        let n = e.g.op("Gather", &[&shape, &d], vec![attr::int("axis", 0)]);
        let range = e.g.op("Range", &[&zero, &n, &one], vec![]);
        e.cast(&range, DataType::Float)
    };
    let gx = axis(e, 3);
    let gy = axis(e, 2);
    (gx, gy)
}

/// The head's shared methods: raw arrangement and decoding (one screen with
/// [`Head::arrange`] and [`Head::decode`]). The sigmoid covers the box part (`no_det`
/// values); a pose head's keypoints after it go through `_decode_keypoints`
/// ([`keypoints::DECODE_SOURCE`]).
const DECODE_SOURCE: &str = r#"
def _arrange(self, x: Tensor) -> Tensor:
    bs = x.size(0)
    ny = x.size(2)
    nx = x.size(3)
    return x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()

def decode(self, raw: List[Tensor]) -> Tensor:
    z: List[Tensor] = []
    for i in range(len(raw)):
        r = raw[i]
        y = torch.sigmoid(r[:, :, :, :, 0:self.no_det])
        bs = y.size(0)
        ny = y.size(2)
        nx = y.size(3)
        gx = torch.arange(nx, device=y.device).float().view(1, nx).expand(ny, nx)
        gy = torch.arange(ny, device=y.device).float().view(ny, 1).expand(ny, nx)
        grid = torch.stack([gx, gy], 2).view(1, 1, ny, nx, 2)
        xy = ((y[:, :, :, :, 0:2] * 2.0 - 0.5 + grid) * self.stride[i]).to(y.dtype)
        wh = (y[:, :, :, :, 2:4] * 2.0) ** 2 * self.anchor_grid[i]
        parts = [xy, wh, y[:, :, :, :, 4:]]
        if self.nkpt > 0:
            parts.append(self._decode_keypoints(r[:, :, :, :, self.no_det:], grid, self.stride[i]))
        z.append(torch.cat(parts, -1).view(bs, -1, self.no))
    return torch.cat(z, 1)
"#;
