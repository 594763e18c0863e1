//! The building blocks of YOLOv7 layers (`Conv2d`, `BatchNorm2d`, activations, pools) and
//! the non-head layer kinds, read from pickled module attributes and checked against the
//! shapes of their tensors.

use super::module::{Module, pair, tensor_ref};
use crate::Checkpoint;
use crate::error::{Error, Result, clip};
use crate::model::{
    Activation, BatchNorm2d, Conv2d, ConvBlock, DownC, MaxPool2d, RepConv, RepConvForm, SppCspc,
    TensorRef, UpsampleMode,
};

/// Most submodules in a list inside a layer (the head's levels, the pools of `SPPCSPC`).
const MAX_LIST: usize = 64;

/// The layer being read: where errors point.
pub(crate) struct Ctx<'c, 'a> {
    pub ck: &'c Checkpoint<'a>,
    pub index: usize,
    /// The class path, as the layer will keep it (errors quote it clipped).
    pub class: String,
}

impl<'g> Ctx<'_, '_> {
    pub fn bad(&self, reason: impl Into<String>) -> Error {
        Error::BadLayer {
            index: self.index,
            class: clip(&self.class),
            reason: reason.into(),
        }
    }

    /// The submodule `key` of `m`, which must exist.
    pub fn child(&self, m: &Module<'g>, key: &str, path: &str) -> Result<Module<'g>> {
        let value = m
            .child(key)
            .ok_or_else(|| self.bad(format!("`{path}.{key}` is missing")))?;
        Module::new(m.graph, value).ok_or_else(|| {
            self.bad(format!(
                "`{path}.{key}` is a {}, not a module",
                clip(&m.graph.describe(value))
            ))
        })
    }

    /// The submodules of a `Sequential`/`ModuleList` child, in order.
    pub fn list(&self, m: &Module<'g>, key: &str, path: &str) -> Result<Vec<Module<'g>>> {
        let list = self.child(m, key, path)?;
        let entries = list.child_entries();
        if entries > MAX_LIST {
            return Err(self.bad(format!(
                "`{path}.{key}` has {entries} entries, more than {MAX_LIST}"
            )));
        }
        list.children(self.ck.budget())?
            .into_iter()
            .map(|(name, value)| {
                Module::new(m.graph, value).ok_or_else(|| {
                    self.bad(format!("`{path}.{key}.{}` is not a module", clip(name)))
                })
            })
            .collect()
    }

    pub fn param(&self, m: &Module<'g>, key: &str, path: &str) -> Result<TensorRef> {
        let value = m
            .param(key)
            .ok_or_else(|| self.bad(format!("parameter `{path}.{key}` is missing")))?;
        tensor_ref(self.ck, value, &format!("{path}.{key}"))
    }

    pub fn buffer(&self, m: &Module<'g>, key: &str, path: &str) -> Result<TensorRef> {
        let value = m
            .buffer(key)
            .ok_or_else(|| self.bad(format!("buffer `{path}.{key}` is missing")))?;
        tensor_ref(self.ck, value, &format!("{path}.{key}"))
    }

    pub fn usize_attr(&self, m: &Module<'g>, key: &str, path: &str) -> Result<usize> {
        m.int(key)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| self.bad(format!("`{path}.{key}` is not a non-negative integer")))
    }

    pub fn pair_attr(&self, m: &Module<'g>, key: &str, path: &str) -> Result<[usize; 2]> {
        m.attr(key)
            .and_then(|v| pair(m.graph, v))
            .ok_or_else(|| self.bad(format!("`{path}.{key}` is not an int or a pair of ints")))
    }

    fn expect_class(&self, m: &Module<'g>, names: &[&str], path: &str) -> Result<()> {
        match m.torch_class() {
            Some(name) if names.contains(&name) => Ok(()),
            _ => Err(self.bad(format!(
                "`{path}` is `{}`, expected torch.nn.{}",
                clip(&m.class_path()),
                names.join(" or torch.nn.")
            ))),
        }
    }
}

/// Checks a tensor's shape.
pub(crate) fn expect_shape(tensor: &TensorRef, expected: &[usize]) -> Result<()> {
    if tensor.shape == expected {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            tensor: tensor.name.clone(),
            expected: expected.to_vec(),
            actual: tensor.shape.clone(),
        })
    }
}

/// `nn.Conv2d`.
pub(crate) fn conv2d(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<Conv2d> {
    ctx.expect_class(m, &["Conv2d"], path)?;
    if m.attr("transposed") == Some(crate::pickle::Value::Bool(true)) {
        return Err(ctx.bad(format!("`{path}` is a transposed convolution")));
    }
    if let Some(mode) = m.str("padding_mode")
        && mode != "zeros"
    {
        return Err(ctx.bad(format!(
            "`{path}` pads with `{}`, only zeros is supported",
            clip(mode)
        )));
    }
    let in_channels = ctx.usize_attr(m, "in_channels", path)?;
    let out_channels = ctx.usize_attr(m, "out_channels", path)?;
    let groups = ctx.usize_attr(m, "groups", path)?;
    let kernel = ctx.pair_attr(m, "kernel_size", path)?;
    let stride = ctx.pair_attr(m, "stride", path)?;
    let padding = ctx.pair_attr(m, "padding", path)?;
    let dilation = ctx.pair_attr(m, "dilation", path)?;
    if groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
        return Err(ctx.bad(format!(
            "`{path}`: {in_channels} -> {out_channels} channels cannot be split in {groups} groups"
        )));
    }
    if stride.contains(&0) || dilation.contains(&0) || out_channels == 0 {
        return Err(ctx.bad(format!("`{path}` has a zero stride, dilation or width")));
    }
    let weight = ctx.param(m, "weight", path)?;
    expect_shape(
        &weight,
        &[out_channels, in_channels / groups, kernel[0], kernel[1]],
    )?;
    let bias = match m.param("bias") {
        Some(_) => {
            let bias = ctx.param(m, "bias", path)?;
            expect_shape(&bias, &[out_channels])?;
            Some(bias)
        }
        None => None,
    };
    Ok(Conv2d {
        in_channels,
        out_channels,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        weight,
        bias,
    })
}

/// `nn.BatchNorm2d` with its running statistics.
pub(crate) fn batchnorm(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<BatchNorm2d> {
    ctx.expect_class(m, &["BatchNorm2d", "SyncBatchNorm"], path)?;
    let num_features = ctx.usize_attr(m, "num_features", path)?;
    let eps = m
        .float("eps")
        .filter(|e| e.is_finite() && *e >= 0.0)
        .ok_or_else(|| ctx.bad(format!("`{path}.eps` is not a non-negative number")))?;
    let tensors = ["weight", "bias", "running_mean", "running_var"].map(|key| {
        let t = if key.starts_with("running") {
            ctx.buffer(m, key, path)
        } else {
            ctx.param(m, key, path)
        }?;
        expect_shape(&t, &[num_features])?;
        Ok::<_, Error>(t)
    });
    let [weight, bias, running_mean, running_var] = tensors;
    Ok(BatchNorm2d {
        num_features,
        eps,
        weight: weight?,
        bias: bias?,
        running_mean: running_mean?,
        running_var: running_var?,
    })
}

/// The activation module of a block.
pub(crate) fn activation(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<Activation> {
    let torch = m.torch_class();
    // The official repository also has export-friendly copies in `utils.activations`.
    let utils = (m.module == "utils.activations" || m.module.ends_with(".utils.activations"))
        .then_some(m.name);
    Ok(match torch.or(utils) {
        Some("Identity") => Activation::Identity,
        Some("SiLU") => Activation::Silu,
        Some("ReLU") => Activation::Relu,
        Some("LeakyReLU") => Activation::LeakyRelu {
            negative_slope: m.float("negative_slope").unwrap_or(0.01),
        },
        Some("Hardswish") => Activation::Hardswish,
        Some("Sigmoid") => Activation::Sigmoid,
        Some("Tanh") => Activation::Tanh,
        Some("Mish") => Activation::Mish,
        _ => {
            return Err(ctx.bad(format!(
                "`{path}` is `{}`, not a supported activation",
                clip(&m.class_path())
            )));
        }
    })
}

/// How the official `fuse()` left a module: `forward` replaced by `fuseforward`.
pub(crate) fn fused_forward(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<bool> {
    match m.forward_override() {
        None => Ok(false),
        Some(Some("fuseforward")) => Ok(true),
        Some(Some("forward")) => Ok(false),
        Some(other) => Err(ctx.bad(format!(
            "`{path}.forward` is replaced by {}",
            other.map_or("a value that is not a method".to_string(), |n| format!(
                "`{}`",
                clip(n)
            ))
        ))),
    }
}

/// The YOLOv7 `Conv` block. With `forward = fuseforward` the official code skips `bn` even
/// if it is still there, so it is left out here too.
pub(crate) fn conv_block(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<ConvBlock> {
    let conv_module = ctx.child(m, "conv", path)?;
    let conv = conv2d(ctx, &conv_module, &format!("{path}.conv"))?;
    let fused = fused_forward(ctx, m, path)?;
    let bn = match (fused, m.child("bn")) {
        (false, Some(_)) => {
            let bn_module = ctx.child(m, "bn", path)?;
            let bn = batchnorm(ctx, &bn_module, &format!("{path}.bn"))?;
            if bn.num_features != conv.out_channels {
                return Err(ctx.bad(format!(
                    "`{path}.bn` normalizes {} channels, the convolution gives {}",
                    bn.num_features, conv.out_channels
                )));
            }
            Some(bn)
        }
        _ => None,
    };
    let act_module = ctx.child(m, "act", path)?;
    let act = activation(ctx, &act_module, &format!("{path}.act"))?;
    Ok(ConvBlock { conv, bn, act })
}

/// A `Sequential(Conv2d, BatchNorm2d)` branch of a training-form `RepConv`.
fn conv_bn_branch(ctx: &Ctx<'_, '_>, m: &Module<'_>, key: &str, path: &str) -> Result<ConvBlock> {
    let branch = ctx.child(m, key, path)?;
    let path = format!("{path}.{key}");
    let conv = conv2d(ctx, &ctx.child(&branch, "0", &path)?, &format!("{path}.0"))?;
    let bn = batchnorm(ctx, &ctx.child(&branch, "1", &path)?, &format!("{path}.1"))?;
    if bn.num_features != conv.out_channels {
        return Err(ctx.bad(format!(
            "`{path}`: BatchNorm width differs from the convolution"
        )));
    }
    Ok(ConvBlock {
        conv,
        bn: Some(bn),
        act: Activation::Identity,
    })
}

/// `RepConv`, in the training form (three branches) or the deploy form (`rbr_reparam`).
/// Like the official `forward`, `rbr_reparam` wins when both are present.
pub(crate) fn repconv(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<RepConv> {
    let in_channels = ctx.usize_attr(m, "in_channels", path)?;
    let out_channels = ctx.usize_attr(m, "out_channels", path)?;
    let act = activation(ctx, &ctx.child(m, "act", path)?, &format!("{path}.act"))?;
    let check_io = |conv: &Conv2d, what: &str| {
        if conv.in_channels != in_channels || conv.out_channels != out_channels {
            Err(ctx.bad(format!(
                "`{what}` maps {} -> {} channels, the block declares {in_channels} -> {out_channels}",
                conv.in_channels, conv.out_channels
            )))
        } else {
            Ok(())
        }
    };
    let form = if m.child("rbr_reparam").is_some() {
        let what = format!("{path}.rbr_reparam");
        let conv = conv2d(ctx, &ctx.child(m, "rbr_reparam", path)?, &what)?;
        check_io(&conv, &what)?;
        RepConvForm::Reparam { conv }
    } else {
        let dense = conv_bn_branch(ctx, m, "rbr_dense", path)?;
        let one_by_one = conv_bn_branch(ctx, m, "rbr_1x1", path)?;
        check_io(&dense.conv, &format!("{path}.rbr_dense"))?;
        check_io(&one_by_one.conv, &format!("{path}.rbr_1x1"))?;
        if one_by_one.conv.kernel != [1, 1] || one_by_one.conv.stride != dense.conv.stride {
            return Err(ctx.bad(format!(
                "`{path}.rbr_1x1` must be a 1x1 convolution with the dense branch's stride"
            )));
        }
        let identity = match m.child("rbr_identity") {
            Some(_) => {
                let what = format!("{path}.rbr_identity");
                let bn = batchnorm(ctx, &ctx.child(m, "rbr_identity", path)?, &what)?;
                if in_channels != out_channels || dense.conv.stride != [1, 1] {
                    return Err(ctx.bad(format!(
                        "`{what}` is only valid when the block keeps its shape"
                    )));
                }
                if bn.num_features != in_channels {
                    return Err(
                        ctx.bad(format!("`{what}` normalizes the wrong number of channels"))
                    );
                }
                Some(bn)
            }
            None => None,
        };
        RepConvForm::Branches {
            dense,
            one_by_one,
            identity,
        }
    };
    Ok(RepConv {
        in_channels,
        out_channels,
        act,
        form,
    })
}

/// `nn.MaxPool2d`.
pub(crate) fn maxpool(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<MaxPool2d> {
    ctx.expect_class(m, &["MaxPool2d"], path)?;
    if m.attr("return_indices") == Some(crate::pickle::Value::Bool(true)) {
        return Err(ctx.bad(format!("`{path}` returns indices")));
    }
    let kernel = ctx.pair_attr(m, "kernel_size", path)?;
    // `stride=None` means the kernel size.
    let stride = match m.attr("stride") {
        None | Some(crate::pickle::Value::None) => kernel,
        Some(_) => ctx.pair_attr(m, "stride", path)?,
    };
    let padding = ctx.pair_attr(m, "padding", path)?;
    let dilation = match m.attr("dilation") {
        None => [1, 1],
        Some(_) => ctx.pair_attr(m, "dilation", path)?,
    };
    if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
        return Err(ctx.bad(format!("`{path}` has a zero kernel, stride or dilation")));
    }
    Ok(MaxPool2d {
        kernel,
        stride,
        padding,
        dilation,
        ceil_mode: m.int("ceil_mode").unwrap_or(0) != 0,
    })
}

/// `SPPCSPC`, with its internal channel flow checked.
pub(crate) fn sppcspc(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<SppCspc> {
    let block = |key: &str| conv_block(ctx, &ctx.child(m, key, path)?, &format!("{path}.{key}"));
    let (cv1, cv2, cv3, cv4) = (block("cv1")?, block("cv2")?, block("cv3")?, block("cv4")?);
    let (cv5, cv6, cv7) = (block("cv5")?, block("cv6")?, block("cv7")?);
    let pools = ctx
        .list(m, "m", path)?
        .iter()
        .enumerate()
        .map(|(i, p)| maxpool(ctx, p, &format!("{path}.m.{i}")))
        .collect::<Result<Vec<_>>>()?;
    let flows = [
        ("cv3", cv3.conv.in_channels, cv1.conv.out_channels),
        ("cv4", cv4.conv.in_channels, cv3.conv.out_channels),
        (
            "cv5",
            cv5.conv.in_channels,
            cv4.conv
                .out_channels
                .saturating_mul(pools.len().saturating_add(1)),
        ),
        ("cv6", cv6.conv.in_channels, cv5.conv.out_channels),
        (
            "cv7",
            cv7.conv.in_channels,
            cv6.conv.out_channels.saturating_add(cv2.conv.out_channels),
        ),
    ];
    check_flows(ctx, path, &flows)?;
    if cv1.conv.in_channels != cv2.conv.in_channels {
        return Err(ctx.bad(format!(
            "`{path}.cv1` and `{path}.cv2` read different widths"
        )));
    }
    Ok(SppCspc {
        cv1,
        cv2,
        cv3,
        cv4,
        cv5,
        cv6,
        cv7,
        pools,
    })
}

/// `DownC`: `cat(cv2(cv1(x)), cv3(mp(x)))`.
pub(crate) fn downc(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<DownC> {
    let block = |key: &str| conv_block(ctx, &ctx.child(m, key, path)?, &format!("{path}.{key}"));
    let (cv1, cv2, cv3) = (block("cv1")?, block("cv2")?, block("cv3")?);
    let pool = maxpool(ctx, &ctx.child(m, "mp", path)?, &format!("{path}.mp"))?;
    check_flows(
        ctx,
        path,
        &[("cv2", cv2.conv.in_channels, cv1.conv.out_channels)],
    )?;
    if cv1.conv.in_channels != cv3.conv.in_channels {
        return Err(ctx.bad(format!(
            "`{path}.cv1` and `{path}.cv3` read different widths"
        )));
    }
    Ok(DownC {
        cv1,
        cv2,
        cv3,
        pool,
    })
}

fn check_flows(ctx: &Ctx<'_, '_>, path: &str, flows: &[(&str, usize, usize)]) -> Result<()> {
    for (key, reads, given) in flows {
        if reads != given {
            return Err(ctx.bad(format!(
                "`{path}.{key}` reads {reads} channels but is given {given}"
            )));
        }
    }
    Ok(())
}

/// `nn.Upsample`: one scale factor for both axes, nearest or bilinear.
pub(crate) fn upsample(
    ctx: &Ctx<'_, '_>,
    m: &Module<'_>,
    path: &str,
) -> Result<(f64, UpsampleMode)> {
    let graph = m.graph;
    if m.attr("size")
        .is_some_and(|v| v != crate::pickle::Value::None)
    {
        return Err(ctx.bad(format!("`{path}` upsamples to a fixed size")));
    }
    let value = m
        .attr("scale_factor")
        .ok_or_else(|| ctx.bad(format!("`{path}.scale_factor` is missing")))?;
    let scale = match graph.float(value) {
        Some(f) => f,
        None => match graph.seq(value) {
            Some([a, b]) => match (graph.float(*a), graph.float(*b)) {
                (Some(a), Some(b)) if a == b => a,
                _ => return Err(ctx.bad(format!("`{path}` scales the axes differently"))),
            },
            _ => return Err(ctx.bad(format!("`{path}.scale_factor` is not a number"))),
        },
    };
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ctx.bad(format!("`{path}.scale_factor` {scale} is not positive")));
    }
    let mode = match m.str("mode").unwrap_or("nearest") {
        "nearest" => UpsampleMode::Nearest,
        "bilinear" => UpsampleMode::Bilinear,
        other => return Err(ctx.bad(format!("`{path}` uses mode `{}`", clip(other)))),
    };
    if mode == UpsampleMode::Bilinear
        && m.attr("align_corners") == Some(crate::pickle::Value::Bool(true))
    {
        return Err(ctx.bad(format!("`{path}` aligns corners")));
    }
    Ok((scale, mode))
}
