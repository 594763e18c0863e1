//! Building the [`ModelDescription`] from the unpickled graph: pick `ema` or `model`, walk
//! `Model.model` layer by layer, read each layer's hyper-parameters, and check tensor shapes,
//! the channels flowing between layers and the strides the head claims.

mod head;
mod layers;
mod module;
pub(crate) mod variant;

use std::collections::HashSet;

use self::layers::Ctx;
use self::module::{Module, tensor_ref};
use crate::Checkpoint;
use crate::error::{Error, Result};
use crate::model::{
    DType, HeadKind, Layer, LayerKind, MaxPool2d, ModelDescription, ModelSource, RepConvForm,
};
use crate::pickle::{Graph, Node, ObjId, Value};

pub(crate) fn describe(ck: &Checkpoint<'_>) -> Result<ModelDescription> {
    let graph = ck.graph();
    let root = ck.root();
    let (model_value, source) = pick_model(graph, root)?;
    let epoch = graph
        .dict(root)
        .and_then(|_| graph.dict_get(root, "epoch"))
        .and_then(|v| graph.int(v));
    let where_ = match source {
        ModelSource::Ema => "ema",
        ModelSource::Model => "model",
    };
    let model = match (Module::new(graph, model_value), graph.object(model_value)) {
        (Some(model), _) => model,
        // An object whose "class" is not a class reference (a call result, a method...).
        (None, Some(object)) => {
            return Err(Error::UnsupportedModel {
                class: object
                    .class
                    .map_or("an unknown class".into(), |c| graph.describe(c)),
            });
        }
        (None, None) => {
            return Err(Error::NoModel {
                reason: format!("`{where_}` is a {}", graph.describe(model_value)),
            });
        }
    };
    if model.yolo_class() != Some("Model") {
        return Err(Error::UnsupportedModel {
            class: model.class_path(),
        });
    }
    let sequential = model
        .child("model")
        .and_then(|v| Module::new(graph, v))
        .filter(|m| m.torch_class() == Some("Sequential"))
        .ok_or_else(|| Error::NoModel {
            reason: format!("`{where_}` has no layer list (`model.model`)"),
        })?;
    let entries = sequential.children();
    if entries.is_empty() {
        return Err(Error::NoModel {
            reason: format!("`{where_}.model` has no layers"),
        });
    }

    let input_channels = model
        .attr("yaml")
        .and_then(|y| graph.dict_get(y, "ch"))
        .and_then(|v| graph.int(v))
        .and_then(|c| usize::try_from(c).ok())
        .filter(|c| *c > 0)
        .unwrap_or(3);
    let model_stride = match model.attr("stride").filter(|v| graph.tensor(*v).is_some()) {
        Some(v) => Some(tensor_ref(ck, v, "stride")?),
        None => None,
    };

    let mut walk = Walk {
        ck,
        input_channels,
        channels: Vec::with_capacity(entries.len()),
        strides: Vec::with_capacity(entries.len()),
        layers: Vec::with_capacity(entries.len()),
        head_inputs: Vec::new(),
    };
    let count = entries.len();
    for (index, (key, value)) in entries.into_iter().enumerate() {
        walk.layer(index, key, value, index + 1 == count, model_stride.clone())?;
    }

    let Some(last) = walk.layers.last() else {
        return Err(Error::NoModel {
            reason: "no layers".into(),
        });
    };
    let last_index = last.index;
    let last_class = last.class.clone();
    let LayerKind::Detect(head) = &last.kind else {
        return Err(Error::BadLayer {
            index: last_index,
            class: last_class,
            reason: "the last layer must be a detection head (Detect, IDetect or IAuxDetect)"
                .into(),
        });
    };
    let head_error = |reason: String| Error::BadLayer {
        index: last_index,
        class: last_class.clone(),
        reason,
    };

    if let Some(nc) = model.int("nc")
        && usize::try_from(nc).ok() != Some(head.nc)
    {
        return Err(head_error(format!(
            "the model says nc = {nc}, the head {}",
            head.nc
        )));
    }
    let names = names(graph, &model, head.nc).map_err(head_error)?;
    let save = save_list(graph, &model, &walk.layers).map_err(head_error)?;
    let parameters = count_parameters(graph, model_value);
    let weights_dtype = weights_dtype(&walk.layers);
    let fused = is_fused(&walk.layers);
    let (variant, _) = variant::guess(&walk.layers, head.kind, head.nl, &walk.head_inputs);
    let strides = head.strides.clone();

    Ok(ModelDescription {
        source,
        variant,
        names,
        nc: head.nc,
        strides,
        layers: walk.layers,
        save,
        input_channels,
        epoch,
        weights_dtype,
        parameters,
        fused,
    })
}

/// The model to describe: `ema` when present and not `None`, else `model`; a pickled model
/// object on its own counts as `model`.
fn pick_model(graph: &Graph, root: Value) -> Result<(Value, ModelSource)> {
    let present = |key: &str| {
        graph
            .dict_get(root, key)
            .filter(|v| !matches!(v, Value::None))
    };
    let (value, source) = match graph.get(root) {
        Some(Node::Dict(entries)) => match (present("ema"), present("model")) {
            (Some(ema), _) => (ema, ModelSource::Ema),
            (None, Some(model)) => (model, ModelSource::Model),
            (None, None) => {
                if is_state_dict(graph, root)
                    || ["state_dict", "model_state_dict"]
                        .iter()
                        .any(|k| present(k).is_some_and(|v| is_state_dict(graph, v)))
                {
                    return Err(Error::StateDictOnly);
                }
                let keys: Vec<&str> = entries
                    .iter()
                    .filter_map(|(k, _)| graph.str(*k))
                    .take(12)
                    .collect();
                return Err(Error::NoModel {
                    reason: format!("no `model` or `ema` entry (keys: {})", keys.join(", ")),
                });
            }
        },
        Some(Node::Object(_)) => (root, ModelSource::Model),
        _ => {
            return Err(Error::NoModel {
                reason: format!("the file holds a {}", graph.describe(root)),
            });
        }
    };
    if is_state_dict(graph, value) {
        return Err(Error::StateDictOnly);
    }
    Ok((value, source))
}

/// A non-empty dict whose values are all tensors.
fn is_state_dict(graph: &Graph, value: Value) -> bool {
    graph.dict(value).is_some_and(|entries| {
        !entries.is_empty() && entries.iter().all(|(_, v)| graph.tensor(*v).is_some())
    })
}

/// The layer walk: channels and strides flowing out of every layer so far.
struct Walk<'c, 'a> {
    ck: &'c Checkpoint<'a>,
    input_channels: usize,
    channels: Vec<usize>,
    /// Input pixels per output pixel (vertically) of every layer.
    strides: Vec<f64>,
    layers: Vec<Layer>,
    /// Channels flowing into the head.
    head_inputs: Vec<usize>,
}

/// What a layer's class makes it.
#[derive(Clone, Copy)]
enum Class {
    Conv,
    RepConv,
    Pool,
    SppCspc,
    Concat,
    Upsample,
    ReOrg,
    DownC,
    Shortcut,
    Head(HeadKind),
}

fn classify(m: &Module<'_>) -> Option<Class> {
    Some(match (m.yolo_class(), m.torch_class()) {
        (Some("Conv"), _) => Class::Conv,
        (Some("RepConv"), _) => Class::RepConv,
        (Some("MP" | "SP"), _) | (_, Some("MaxPool2d")) => Class::Pool,
        (Some("SPPCSPC"), _) => Class::SppCspc,
        (Some("Concat"), _) => Class::Concat,
        (_, Some("Upsample")) => Class::Upsample,
        (Some("ReOrg"), _) => Class::ReOrg,
        (Some("DownC"), _) => Class::DownC,
        (Some("Shortcut"), _) => Class::Shortcut,
        (Some("Detect"), _) => Class::Head(HeadKind::Detect),
        (Some("IDetect"), _) => Class::Head(HeadKind::IDetect),
        (Some("IAuxDetect"), _) => Class::Head(HeadKind::IAuxDetect),
        _ => return None,
    })
}

impl Walk<'_, '_> {
    fn layer(
        &mut self,
        index: usize,
        key: &str,
        value: Value,
        last: bool,
        model_stride: Option<crate::model::TensorRef>,
    ) -> Result<()> {
        let graph = self.ck.graph();
        let m = Module::new(graph, value).ok_or_else(|| Error::UnknownLayer {
            index,
            class: graph.describe(value),
        })?;
        let class = m.class_path();
        let kind = classify(&m).ok_or_else(|| Error::UnknownLayer {
            index,
            class: class.clone(),
        })?;
        let ctx = Ctx {
            ck: self.ck,
            index,
            class,
        };
        if key != index.to_string() {
            return Err(ctx.bad(format!("registered as `{key}` at position {index}")));
        }
        if let Some(i) = m.int("i")
            && usize::try_from(i).ok() != Some(index)
        {
            return Err(ctx.bad(format!("its index `i` is {i}")));
        }
        let (from, is_list) = self.from(&ctx, &m)?;
        let sources = self.sources(&ctx, index, &from)?;
        let ins: Vec<usize> = sources.iter().map(|s| self.channels_of(*s)).collect();
        let in_strides: Vec<f64> = sources.iter().map(|s| self.stride_of(*s)).collect();
        let path = format!("model.{index}");

        let single = |what: &str| -> Result<(usize, f64)> {
            match (is_list, ins.as_slice(), in_strides.as_slice()) {
                (false, [c], [s]) => Ok((*c, *s)),
                _ => Err(ctx.bad(format!("{what} takes exactly one input"))),
            }
        };
        let expect_in = |reads: usize, given: usize, what: &str| -> Result<()> {
            if reads == given {
                Ok(())
            } else {
                Err(ctx.bad(format!(
                    "`{what}` reads {reads} channels but its input gives {given}"
                )))
            }
        };
        let same_strides = |what: &str| -> Result<f64> {
            let first = in_strides.first().copied().unwrap_or(1.0);
            if in_strides.iter().any(|s| (s - first).abs() > 1e-9 * first) {
                return Err(ctx.bad(format!(
                    "{what} joins maps of different strides {in_strides:?}"
                )));
            }
            Ok(first)
        };

        let (kind, out, stride) = match kind {
            Class::Conv => {
                let (c, s) = single("Conv")?;
                let block = layers::conv_block(&ctx, &m, &path)?;
                expect_in(block.conv.in_channels, c, &format!("{path}.conv"))?;
                let out = block.conv.out_channels;
                let stride = s * block.conv.stride[0] as f64;
                (LayerKind::Conv(block), out, stride)
            }
            Class::RepConv => {
                let (c, s) = single("RepConv")?;
                let rep = layers::repconv(&ctx, &m, &path)?;
                expect_in(rep.in_channels, c, &path)?;
                let step = match &rep.form {
                    RepConvForm::Branches { dense, .. } => dense.conv.stride[0],
                    RepConvForm::Reparam { conv } => conv.stride[0],
                };
                let out = rep.out_channels;
                (LayerKind::RepConv(rep), out, s * step as f64)
            }
            Class::Pool => {
                let (c, s) = single(m.name)?;
                let pool = match m.torch_class() {
                    Some("MaxPool2d") => layers::maxpool(&ctx, &m, &path)?,
                    _ => layers::maxpool(&ctx, &ctx.child(&m, "m", &path)?, &format!("{path}.m"))?,
                };
                let kind = LayerKind::MaxPool {
                    class: m.name.to_string(),
                    pool,
                };
                (kind, c, s * pool.stride[0] as f64)
            }
            Class::SppCspc => {
                let (c, s) = single("SPPCSPC")?;
                let spp = layers::sppcspc(&ctx, &m, &path)?;
                expect_in(spp.cv1.conv.in_channels, c, &format!("{path}.cv1"))?;
                let step: usize = [&spp.cv1, &spp.cv3, &spp.cv4, &spp.cv5, &spp.cv6, &spp.cv7]
                    .iter()
                    .map(|b| b.conv.stride[0])
                    .product::<usize>()
                    .saturating_mul(pool_steps(&spp.pools));
                let out = spp.cv7.conv.out_channels;
                (LayerKind::SppCspc(spp), out, s * step as f64)
            }
            Class::Concat => {
                if !is_list || ins.is_empty() {
                    return Err(ctx.bad("Concat takes a list of inputs"));
                }
                let dim = m.int("d").unwrap_or(1);
                if dim != 1 {
                    return Err(
                        ctx.bad(format!("concatenates along dimension {dim}, not channels"))
                    );
                }
                let stride = same_strides("Concat")?;
                let out = ins.iter().fold(0usize, |a, c| a.saturating_add(*c));
                (LayerKind::Concat { dim }, out, stride)
            }
            Class::Upsample => {
                let (c, s) = single("Upsample")?;
                let (scale_factor, mode) = layers::upsample(&ctx, &m, &path)?;
                (
                    LayerKind::Upsample { scale_factor, mode },
                    c,
                    s / scale_factor,
                )
            }
            Class::ReOrg => {
                let (c, s) = single("ReOrg")?;
                (LayerKind::ReOrg, c.saturating_mul(4), s * 2.0)
            }
            Class::DownC => {
                let (c, s) = single("DownC")?;
                let down = layers::downc(&ctx, &m, &path)?;
                expect_in(down.cv1.conv.in_channels, c, &format!("{path}.cv1"))?;
                let conv_step = down.cv1.conv.stride[0].saturating_mul(down.cv2.conv.stride[0]);
                let pool_step = down.pool.stride[0].saturating_mul(down.cv3.conv.stride[0]);
                if conv_step != pool_step {
                    return Err(ctx.bad(format!(
                        "its branches downsample by {conv_step} and {pool_step}"
                    )));
                }
                let out = down
                    .cv2
                    .conv
                    .out_channels
                    .saturating_add(down.cv3.conv.out_channels);
                (LayerKind::DownC(down), out, s * conv_step as f64)
            }
            Class::Shortcut => {
                let (Some(&a), Some(&b), true) = (ins.first(), ins.get(1), is_list) else {
                    return Err(ctx.bad("Shortcut takes a list of two inputs"));
                };
                if a != b {
                    return Err(ctx.bad(format!("adds maps of {a} and {b} channels")));
                }
                let stride = same_strides("Shortcut")?;
                (LayerKind::Shortcut, a, stride)
            }
            Class::Head(kind) => {
                if !last {
                    return Err(ctx.bad("a detection head must be the last layer"));
                }
                if !is_list {
                    return Err(ctx.bad("the head takes a list of inputs"));
                }
                let head = head::head(&ctx, &m, kind, &path, &ins, model_stride)?;
                for (level, (&claimed, &actual)) in head.strides.iter().zip(&in_strides).enumerate()
                {
                    if (claimed - actual).abs() > 1e-6 * actual.max(1.0) {
                        return Err(ctx.bad(format!(
                            "level {level} claims stride {claimed} but its input has stride {actual}"
                        )));
                    }
                }
                self.head_inputs = ins.clone();
                let out = head.nc.saturating_add(5).saturating_mul(head.na);
                let stride = in_strides.first().copied().unwrap_or(1.0);
                (LayerKind::Detect(head), out, stride)
            }
        };
        let parameters = count_parameters(graph, value);
        self.layers.push(Layer {
            index,
            from,
            class: ctx.class,
            kind,
            out_channels: out,
            parameters,
        });
        self.channels.push(out);
        self.strides.push(stride);
        Ok(())
    }

    /// The layer's `f`: an int or a list of ints (and which of the two it was).
    fn from(&self, ctx: &Ctx<'_, '_>, m: &Module<'_>) -> Result<(Vec<i64>, bool)> {
        let graph = m.graph;
        let value = m
            .attr("f")
            .ok_or_else(|| ctx.bad("its input list `f` is missing"))?;
        if let Some(f) = graph.int(value) {
            return Ok((vec![f], false));
        }
        let items = graph
            .seq(value)
            .ok_or_else(|| ctx.bad(format!("`f` is a {}", graph.describe(value))))?;
        let from = items
            .iter()
            .map(|v| graph.int(*v))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ctx.bad("`f` holds something other than integers"))?;
        Ok((from, true))
    }

    /// Resolves `f` entries to earlier layers (`None` is the input image).
    fn sources(&self, ctx: &Ctx<'_, '_>, index: usize, from: &[i64]) -> Result<Vec<Option<usize>>> {
        from.iter()
            .map(|&f| {
                let target = if f < 0 {
                    i64::try_from(index).ok().and_then(|i| i.checked_add(f))
                } else {
                    Some(f)
                };
                match target {
                    // Layer 0 reading "the previous layer" reads the image.
                    Some(-1) if index == 0 && f == -1 => Ok(None),
                    Some(t) if t >= 0 && (t as u64) < index as u64 => Ok(usize::try_from(t).ok()),
                    _ => Err(ctx.bad(format!("input {f} does not name an earlier layer"))),
                }
            })
            .collect()
    }

    fn channels_of(&self, source: Option<usize>) -> usize {
        match source {
            None => self.input_channels,
            Some(i) => self.channels.get(i).copied().unwrap_or(0),
        }
    }

    fn stride_of(&self, source: Option<usize>) -> f64 {
        match source {
            None => 1.0,
            Some(i) => self.strides.get(i).copied().unwrap_or(1.0),
        }
    }
}

fn pool_steps(pools: &[MaxPool2d]) -> usize {
    // The pools of SPPCSPC run in parallel; they must all keep the size.
    pools.iter().map(|p| p.stride[0]).max().unwrap_or(1)
}

/// `model.names` (a list, or a dict from index to name in some forks); the official default
/// (`"0"`, `"1"`, ...) when absent.
fn names(graph: &Graph, model: &Module<'_>, nc: usize) -> std::result::Result<Vec<String>, String> {
    let Some(value) = model.attr("names") else {
        return Ok((0..nc).map(|i| i.to_string()).collect());
    };
    let names: Vec<String> = if let Some(items) = graph.seq(value) {
        items
            .iter()
            .map(|v| graph.str(*v).map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("`names` holds something other than strings")?
    } else if let Some(entries) = graph.dict(value) {
        let mut pairs: Vec<(i64, String)> = entries
            .iter()
            .map(|(k, v)| Some((graph.int(*k)?, graph.str(*v)?.to_string())))
            .collect::<Option<_>>()
            .ok_or("`names` is a dict that does not map integers to strings")?;
        pairs.sort_by_key(|(k, _)| *k);
        pairs.into_iter().map(|(_, v)| v).collect()
    } else {
        return Err(format!("`names` is a {}", graph.describe(value)));
    };
    if names.len() != nc {
        return Err(format!(
            "`names` has {} names for {nc} classes",
            names.len()
        ));
    }
    Ok(names)
}

/// `Model.save`, checked; derived from the inputs when absent.
fn save_list(
    graph: &Graph,
    model: &Module<'_>,
    layers: &[Layer],
) -> std::result::Result<Vec<usize>, String> {
    let mut save: Vec<usize> = match model.attr("save").and_then(|v| graph.seq(v)) {
        Some(items) => items
            .iter()
            .map(|v| graph.int(*v).and_then(|i| usize::try_from(i).ok()))
            .collect::<Option<_>>()
            .ok_or("`save` holds something other than layer indices")?,
        None => layers
            .iter()
            .flat_map(|l| {
                l.from.iter().filter(|f| **f != -1).filter_map(move |f| {
                    let index = i64::try_from(l.index).ok()?;
                    usize::try_from(if *f < 0 { index + f } else { *f }).ok()
                })
            })
            .collect(),
    };
    save.sort_unstable();
    save.dedup();
    if let Some(bad) = save.iter().find(|i| **i >= layers.len()) {
        return Err(format!(
            "`save` names layer {bad}, the model has {}",
            layers.len()
        ));
    }
    Ok(save)
}

/// Parameters of every module reachable from `root` through `_modules`, each tensor once.
fn count_parameters(graph: &Graph, root: Value) -> u64 {
    let mut modules: HashSet<ObjId> = HashSet::new();
    let mut tensors: HashSet<ObjId> = HashSet::new();
    let mut stack = vec![root];
    let mut total: u64 = 0;
    while let Some(value) = stack.pop() {
        let Value::Ref(id) = value else { continue };
        if !modules.insert(id) {
            continue;
        }
        let Some(m) = Module::new(graph, value) else {
            continue;
        };
        for p in m.params() {
            if let (Value::Ref(pid), Some(t)) = (p, graph.tensor(p))
                && tensors.insert(pid)
            {
                let numel = t
                    .shape
                    .iter()
                    .fold(1u64, |n, d| n.saturating_mul(*d as u64));
                total = total.saturating_add(numel);
            }
        }
        stack.extend(m.children().into_iter().map(|(_, v)| v));
    }
    total
}

/// The element type of the first convolution's weights.
fn weights_dtype(layers: &[Layer]) -> DType {
    layers
        .iter()
        .find_map(|l| match &l.kind {
            LayerKind::Conv(block) => Some(block.conv.weight.dtype),
            LayerKind::RepConv(rep) => Some(match &rep.form {
                RepConvForm::Branches { dense, .. } => dense.conv.weight.dtype,
                RepConvForm::Reparam { conv } => conv.weight.dtype,
            }),
            LayerKind::Detect(head) => head.convs.first().map(|c| c.weight.dtype),
            _ => None,
        })
        .unwrap_or(DType::F32)
}

/// Fused when nothing is left to fuse (no BatchNorm, no RepConv branches, no implicit
/// layers) and the official `fuse()` left its marks somewhere.
fn is_fused(layers: &[Layer]) -> bool {
    // Per block: (something left to fuse, a mark of fusion).
    fn block(b: &crate::model::ConvBlock) -> (bool, bool) {
        (b.bn.is_some(), b.bn.is_none())
    }
    let mut unfused = false;
    let mut marks = false;
    for layer in layers {
        let states: Vec<(bool, bool)> = match &layer.kind {
            LayerKind::Conv(b) => vec![block(b)],
            LayerKind::SppCspc(s) => [&s.cv1, &s.cv2, &s.cv3, &s.cv4, &s.cv5, &s.cv6, &s.cv7]
                .into_iter()
                .map(block)
                .collect(),
            LayerKind::DownC(d) => [&d.cv1, &d.cv2, &d.cv3].into_iter().map(block).collect(),
            LayerKind::RepConv(r) => match r.form {
                RepConvForm::Branches { .. } => vec![(true, false)],
                RepConvForm::Reparam { .. } => vec![(false, true)],
            },
            LayerKind::Detect(h) => match h.kind {
                HeadKind::Detect => vec![],
                HeadKind::IDetect | HeadKind::IAuxDetect => vec![(!h.fused, h.fused)],
            },
            _ => vec![],
        };
        for (u, m) in states {
            unfused |= u;
            marks |= m;
        }
    }
    marks && !unfused
}
