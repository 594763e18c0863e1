//! The layer walk: each entry of `Model.model` in order, typed by its class, with the
//! channels and strides flowing out of every layer checked against what the next layers
//! read.

use super::layers::{self, Ctx};
use super::module::Module;
use super::params::ParamCounter;
use super::{charge_index_cost, head};
use crate::Checkpoint;
use crate::error::{Error, Result, clip};
use crate::model::{HeadKind, Layer, LayerKind, MaxPool2d, RepConvForm, TensorRef};
use crate::pickle::Value;

/// The layer walk: channels and strides flowing out of every layer so far.
pub(super) struct Walk<'c, 'a> {
    pub ck: &'c Checkpoint<'a>,
    pub input_channels: usize,
    pub channels: Vec<usize>,
    /// Input pixels per output pixel (vertically) of every layer.
    pub strides: Vec<f64>,
    pub layers: Vec<Layer>,
    /// Channels flowing into the head.
    pub head_inputs: Vec<usize>,
    /// Counts each layer's parameters, each module and tensor once over the whole walk.
    pub params: ParamCounter<'c>,
}

/// Bytes a layer's input list costs while it is read: the list kept in the layer, and the
/// sources, channels and strides worked out from it.
const BYTES_PER_INPUT: u64 = 40;

/// How many values of a list an error message shows.
const SHOWN: usize = 8;

/// The first [`SHOWN`] values of a list, for messages.
fn few(values: &[f64]) -> String {
    let shown: Vec<String> = values.iter().take(SHOWN).map(f64::to_string).collect();
    let more = values.len().saturating_sub(SHOWN);
    if more == 0 {
        format!("[{}]", shown.join(", "))
    } else {
        format!("[{}, ... {more} more]", shown.join(", "))
    }
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
        (Some("IKeypoint"), _) => Class::Head(HeadKind::IKeypoint),
        _ => return None,
    })
}

impl Walk<'_, '_> {
    pub(super) fn layer(
        &mut self,
        index: usize,
        key: &str,
        value: Value,
        last: bool,
        model_stride: Option<TensorRef>,
    ) -> Result<()> {
        let graph = self.ck.graph();
        let budget = self.ck.budget();
        budget.charge_steps("describe: layers", 1)?;
        charge_index_cost(self.ck)?;
        let m = Module::new(graph, value).ok_or_else(|| Error::UnknownLayer {
            index,
            class: clip(&graph.describe(value)),
        })?;
        // The layer keeps its class path: paid for before it is copied.
        budget.charge_memory(
            "describe: layer class",
            (m.module.len() + m.name.len() + 1) as u64,
        )?;
        let kind = classify(&m).ok_or_else(|| Error::UnknownLayer {
            index,
            class: clip(&m.class_path()),
        })?;
        let ctx = Ctx {
            ck: self.ck,
            index,
            class: m.class_path(),
        };
        if key != index.to_string() {
            return Err(ctx.bad(format!("registered as `{}` at position {index}", clip(key))));
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
                    "{what} joins maps of different strides {}",
                    few(&in_strides)
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
                let out = head.no().saturating_mul(head.na);
                let stride = in_strides.first().copied().unwrap_or(1.0);
                (LayerKind::Detect(head), out, stride)
            }
        };
        let parameters = self.params.count(value)?;
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
            .ok_or_else(|| ctx.bad(format!("`f` is a {}", clip(&graph.describe(value)))))?;
        // Layers may share one list: each copy is paid for.
        let len = items.len() as u64;
        let budget = self.ck.budget();
        budget.charge_steps("describe: layer inputs", len)?;
        budget.charge_memory(
            "describe: layer inputs",
            len.saturating_mul(BYTES_PER_INPUT),
        )?;
        let from = crate::pickle::cost::collect_exact(items.iter().map(|v| graph.int(*v)))
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
