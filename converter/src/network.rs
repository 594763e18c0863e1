//! The eager network: layers built from the description, wired as `Model.forward_once`
//! wires them, with fusion and placement, and the straight-line TorchScript of the same
//! wiring.

use std::fmt::Write as _;

use tch::Tensor;
use yolots_checkpoint::model::{LayerKind, ModelDescription};

use crate::error::{ConvertError, Result};
use crate::jit::ScriptModule;
use crate::layers::concat::Concat;
use crate::layers::conv::Conv;
use crate::layers::downc::DownC;
use crate::layers::head::Head;
use crate::layers::pool::MaxPool;
use crate::layers::reorg::ReOrg;
use crate::layers::repconv::RepConv;
use crate::layers::shortcut::Shortcut;
use crate::layers::sppcspc::SppCspc;
use crate::layers::upsample::Upsample;
use crate::layers::{Emitter, Layer, NamedTensors, Placement, WeightSource};
use crate::onnx::emit::OnnxEmitter;

/// One layer: a one-input kind behind [`Layer`], or one of the kinds that read a list of
/// tensors (which the network wires itself).
#[derive(Debug)]
pub(crate) enum Block {
    One(Box<dyn Layer>),
    Concat(Concat),
    Shortcut(Shortcut),
    Head(Head),
}

impl Block {
    fn load(kind: &LayerKind, src: &dyn WeightSource) -> Result<Self> {
        let one = |layer: Box<dyn Layer>| Ok(Block::One(layer));
        match kind {
            LayerKind::Conv(c) => one(Box::new(Conv::load(c, src)?)),
            LayerKind::RepConv(r) => one(Box::new(RepConv::load(r, src)?)),
            LayerKind::MaxPool { pool, .. } => one(Box::new(MaxPool::new(pool)?)),
            LayerKind::SppCspc(s) => one(Box::new(SppCspc::load(s, src)?)),
            LayerKind::Upsample { scale_factor, mode } => one(Box::new(Upsample {
                scale: *scale_factor,
                mode: *mode,
            })),
            LayerKind::ReOrg => one(Box::new(ReOrg)),
            LayerKind::DownC(d) => one(Box::new(DownC::load(d, src)?)),
            LayerKind::Concat { dim } => Ok(Block::Concat(Concat { dim: *dim })),
            LayerKind::Shortcut => Ok(Block::Shortcut(Shortcut)),
            LayerKind::Detect(h) => Ok(Block::Head(Head::load(h, src)?)),
        }
    }

    /// Whether the layer reads a list of tensors (`Concat`, `Shortcut`, heads).
    fn takes_list(&self) -> bool {
        !matches!(self, Block::One(_))
    }

    fn fused(self) -> Result<Self> {
        Ok(match self {
            Block::One(l) => Block::One(l.fuse()?),
            Block::Head(h) => Block::Head(h.fused()?),
            other => other,
        })
    }

    fn place(&self, p: Placement) -> Result<Self> {
        Ok(match self {
            Block::One(l) => Block::One(l.place(p)?),
            Block::Head(h) => Block::Head(h.place(p)?),
            Block::Concat(c) => Block::Concat(*c),
            Block::Shortcut(s) => Block::Shortcut(*s),
        })
    }

    fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        match self {
            Block::One(l) => l.named(out),
            Block::Head(h) => h.named(out),
            Block::Concat(_) | Block::Shortcut(_) => {}
        }
    }

    fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        match self {
            Block::One(l) => l.script(em),
            Block::Concat(c) => c.script(em),
            Block::Shortcut(s) => s.script(em),
            Block::Head(h) => h.script(em),
        }
    }

    /// The one-input layer, for the walks that feed it a single value.
    fn one(&self) -> Result<&dyn Layer> {
        match self {
            Block::One(l) => Ok(l.as_ref()),
            _ => Err(ConvertError::Internal(
                "list layer called with one input".into(),
            )),
        }
    }
}

/// Where a layer input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Image,
    Layer(usize),
}

#[derive(Debug)]
struct Node {
    inputs: Vec<Src>,
    block: Block,
    /// Whether inference needs this layer's output (training-only branches do not).
    live: bool,
}

/// The network of one model.
#[derive(Debug)]
pub(crate) struct Network {
    nodes: Vec<Node>,
}

impl Network {
    /// Builds every layer: weights loaded as float32 on the CPU, fused when asked (before
    /// any cast, as the official code fuses in float32), then placed.
    pub(crate) fn build(
        desc: &ModelDescription,
        src: &dyn WeightSource,
        fuse: bool,
        placement: Placement,
    ) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        let mut nodes = Vec::with_capacity(desc.layers.len());
        for (i, layer) in desc.layers.iter().enumerate() {
            if layer.index != i {
                return Err(ConvertError::Unsupported(format!(
                    "layer {} listed at position {i}",
                    layer.index
                )));
            }
            let inputs = layer
                .from
                .iter()
                .map(|&f| resolve(i, f))
                .collect::<Result<Vec<_>>>()?;
            let mut block = Block::load(&layer.kind, src)?;
            if fuse {
                block = block.fused()?;
            }
            if placement.kind != tch::Kind::Float || placement.device != tch::Device::Cpu {
                block = block.place(placement)?;
            }
            if !block.takes_list() && inputs.len() != 1 {
                return Err(ConvertError::Unsupported(format!(
                    "layer {i} ({}) reads {} inputs",
                    layer.class,
                    inputs.len()
                )));
            }
            nodes.push(Node {
                inputs,
                block,
                live: false,
            });
        }
        match nodes.last() {
            Some(Node {
                block: Block::Head(_),
                ..
            }) => {}
            _ => {
                return Err(ConvertError::Unsupported(
                    "the last layer is not a detection head".into(),
                ));
            }
        }
        mark_live(&mut nodes);
        Ok(Network { nodes })
    }

    /// Every layer fused (each unfused layer is dropped as soon as its fused form exists).
    pub(crate) fn fused(self) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        let nodes = self
            .nodes
            .into_iter()
            .map(|n| {
                Ok(Node {
                    block: n.block.fused()?,
                    ..n
                })
            })
            .collect::<Result<_>>()?;
        Ok(Network { nodes })
    }

    /// Every tensor cast and moved (each old layer dropped as soon as it is replaced).
    pub(crate) fn placed(self, p: Placement) -> Result<Self> {
        let nodes = self
            .nodes
            .into_iter()
            .map(|n| {
                Ok(Node {
                    block: n.block.place(p)?,
                    ..n
                })
            })
            .collect::<Result<_>>()?;
        Ok(Network { nodes })
    }

    pub(crate) fn head(&self) -> Result<&Head> {
        match self.nodes.last().map(|n| &n.block) {
            Some(Block::Head(h)) => Ok(h),
            _ => Err(ConvertError::Internal("network without head".into())),
        }
    }

    /// The inputs a node reads in inference (a head reads only its main levels).
    fn used_inputs(&self, node: &Node) -> usize {
        match &node.block {
            Block::Head(h) => h.nl().min(node.inputs.len()),
            _ => node.inputs.len(),
        }
    }

    /// The raw head outputs (`[B, na, ny, nx, no]` per level).
    pub(crate) fn forward_raw(&self, image: &Tensor) -> Result<Vec<Tensor>> {
        let _guard = tch::no_grad_guard();
        let last_use = self.last_use();
        let mut outputs: Vec<Option<Tensor>> = (0..self.nodes.len()).map(|_| None).collect();
        let last = self.nodes.len() - 1;
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.live {
                continue;
            }
            let n = self.used_inputs(node);
            let mut xs = Vec::with_capacity(n);
            for src in &node.inputs[..n] {
                xs.push(match src {
                    Src::Image => image,
                    Src::Layer(j) => outputs[*j]
                        .as_ref()
                        .ok_or_else(|| ConvertError::Internal(format!("layer {j} not computed")))?,
                });
            }
            if let Block::Head(h) = &node.block {
                if i == last {
                    return h.forward(&xs);
                }
                return Err(ConvertError::Unsupported(format!(
                    "head at layer {i} is not last"
                )));
            }
            let y = if let Block::Concat(c) = &node.block {
                c.forward(&xs)?
            } else if let Block::Shortcut(s) = &node.block {
                s.forward(&xs)?
            } else {
                node.block.one()?.forward(xs[0])?
            };
            outputs[i] = Some(y);
            // Free what no later layer reads, as the official `save` list does.
            for (j, out) in outputs.iter_mut().enumerate().take(i + 1) {
                if last_use[j] <= i {
                    *out = None;
                }
            }
        }
        Err(ConvertError::Internal("network ended without head".into()))
    }

    /// The network's ONNX nodes from the value `images` (in the graph's element type) to
    /// the raw head outputs (float32 values `raw_0`, `raw_1`, ...), dead layers skipped.
    pub(crate) fn onnx(&self, e: &mut OnnxEmitter, images: &str) -> Result<Vec<String>> {
        let mut values: Vec<Option<String>> = vec![None; self.nodes.len()];
        let last = self.nodes.len() - 1;
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.live {
                continue;
            }
            let n = self.used_inputs(node);
            let mut xs = Vec::with_capacity(n);
            for src in &node.inputs[..n] {
                xs.push(match src {
                    Src::Image => images,
                    Src::Layer(j) => values[*j]
                        .as_deref()
                        .ok_or_else(|| ConvertError::Internal(format!("layer {j} not written")))?,
                });
            }
            let name = format!("model.{i}");
            let y = match &node.block {
                Block::Head(h) if i == last => return h.onnx_raw(e, &xs, &name),
                Block::Head(_) => {
                    return Err(ConvertError::Unsupported(format!(
                        "head at layer {i} is not last"
                    )));
                }
                Block::Concat(c) => c.onnx(e, &xs),
                Block::Shortcut(s) => s.onnx(e, &xs)?,
                Block::One(l) => l.onnx(e, xs[0], &name)?,
            };
            values[i] = Some(y);
        }
        Err(ConvertError::Internal("network ended without head".into()))
    }

    /// Decoded `[B, N, no]`.
    #[cfg(test)]
    pub(crate) fn forward_decoded(&self, image: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        self.head()?.decode(&self.forward_raw(image)?)
    }

    /// For each layer, the index of the last live layer that reads it.
    fn last_use(&self) -> Vec<usize> {
        let mut last = vec![0usize; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.live {
                continue;
            }
            for src in &node.inputs[..self.used_inputs(node)] {
                if let Src::Layer(j) = src {
                    last[*j] = last[*j].max(i);
                }
            }
        }
        last
    }

    /// Every tensor with its source name (`model.0.conv.weight`, ...).
    pub(crate) fn named(&self) -> Vec<(String, &Tensor)> {
        let mut out = NamedTensors::new();
        out.scope("model", |o| {
            for (i, node) in self.nodes.iter().enumerate() {
                o.scope(&i.to_string(), |o| node.block.named(o));
            }
        });
        out.items
    }

    /// Adds `delta` to the tensor named `name` in place (a test fault).
    pub(crate) fn perturb(&self, name: &str, delta: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let (_, t) = self
            .named()
            .into_iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| ConvertError::Options(format!("no parameter named {name}")))?;
        let mut t = t.shallow_clone();
        let _ = t.f_add_scalar_(delta)?;
        Ok(())
    }

    /// Lays every 4-d weight out channels-last, in place and one tensor at a time (so
    /// the network is never held twice). Modules the tensors are registered on see the
    /// new layout too.
    pub(crate) fn lay_out_channels_last(&self) -> Result<()> {
        for (_, t) in self.named() {
            crate::jit::lay_out_channels_last(t)?;
        }
        Ok(())
    }

    /// Parameters and buffers in the network (after fusion, as registered).
    pub(crate) fn numel(&self) -> i64 {
        self.named().iter().map(|(_, t)| t.numel() as i64).sum()
    }

    /// The `model` container: one module per layer, under `"0"`, `"1"`, ...
    pub(crate) fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        let layers = self
            .nodes
            .iter()
            .map(|n| n.block.script(em))
            .collect::<Result<Vec<_>>>()?;
        em.list("Sequential", &layers)
    }

    /// The straight-line TorchScript method `raw(images) -> List[Tensor]` of the root
    /// module, calling `self.model.<i>` in order (dead training-only layers skipped).
    /// With `channels_last` the input is first laid out channels-last (memory format 2),
    /// to match weights stored that way.
    pub(crate) fn raw_source(&self, channels_last: bool) -> String {
        let mut src = String::from(
            "def raw(self, images: Tensor) -> List[Tensor]:\n    images = self._input(images)\n",
        );
        if channels_last {
            src.push_str(CHANNELS_LAST_INPUT);
        }
        let name = |s: &Src| match s {
            Src::Image => "images".to_owned(),
            Src::Layer(j) => format!("x{j}"),
        };
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.live {
                continue;
            }
            let inputs = &node.inputs[..self.used_inputs(node)];
            let arg = if node.block.takes_list() {
                let list: Vec<String> = inputs.iter().map(name).collect();
                format!("[{}]", list.join(", "))
            } else {
                inputs.first().map(name).unwrap_or_default()
            };
            let call = format!("getattr(self.model, \"{i}\").forward({arg})");
            if matches!(node.block, Block::Head(_)) {
                let _ = writeln!(src, "    return {call}");
            } else {
                let _ = writeln!(src, "    x{i} = {call}");
            }
        }
        src
    }

    /// Path of the head inside the root module, for TorchScript (`getattr(self.model, "N")`).
    pub(crate) fn head_path(&self) -> String {
        format!(
            "getattr(self.model, \"{}\")",
            self.nodes.len().saturating_sub(1)
        )
    }
}

/// Lays the input out channels-last (`torch.channels_last` is memory format 2; the
/// name is not visible to TorchScript compiled outside Python).
pub(crate) const CHANNELS_LAST_INPUT: &str = "    images = images.contiguous(memory_format=2)\n";

/// Absolute source of input `f` of layer `i` (`-1` previous, other negatives relative).
fn resolve(i: usize, f: i64) -> Result<Src> {
    let j = if f < 0 {
        i64::try_from(i).unwrap_or(i64::MAX) + f
    } else {
        f
    };
    if j < 0 {
        return if f == -1 && i == 0 {
            Ok(Src::Image)
        } else {
            Err(ConvertError::Unsupported(format!(
                "layer {i} reads layer {f}"
            )))
        };
    }
    let j = usize::try_from(j)
        .map_err(|_| ConvertError::Unsupported(format!("layer {i} reads {f}")))?;
    if j >= i {
        return Err(ConvertError::Unsupported(format!(
            "layer {i} reads layer {j}, which is not before it"
        )));
    }
    Ok(Src::Layer(j))
}

/// Marks the layers inference needs, walking back from the head's main inputs.
fn mark_live(nodes: &mut [Node]) {
    let Some(last) = nodes.len().checked_sub(1) else {
        return;
    };
    nodes[last].live = true;
    for i in (0..nodes.len()).rev() {
        if !nodes[i].live {
            continue;
        }
        let used = match &nodes[i].block {
            Block::Head(h) => h.nl().min(nodes[i].inputs.len()),
            _ => nodes[i].inputs.len(),
        };
        let srcs: Vec<Src> = nodes[i].inputs[..used].to_vec();
        for s in srcs {
            if let Src::Layer(j) = s {
                nodes[j].live = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_layer_references() {
        assert_eq!(resolve(0, -1).unwrap(), Src::Image);
        assert_eq!(resolve(5, -1).unwrap(), Src::Layer(4));
        assert_eq!(resolve(5, -3).unwrap(), Src::Layer(2));
        assert_eq!(resolve(5, 1).unwrap(), Src::Layer(1));
        assert!(resolve(5, 5).is_err());
        assert!(resolve(1, -3).is_err());
    }
}
