//! The keypoint branch of the pose head `IKeypoint` (the official `pose` branch): per level,
//! one 1x1 `nn.Conv2d`, or (`dw_conv_kpt`) a `Sequential` of depth-wise and point-wise
//! `Conv` blocks ending in that convolution.

use super::layers::{Ctx, conv_block, conv2d};
use super::module::Module;
use crate::error::{Result, clip};
use crate::model::{KeypointBranch, Keypoints};
use crate::pickle::Value;

/// Most keypoints per detection: far beyond any layout in use (COCO has 17, whole-body 133).
pub(crate) const MAX_KEYPOINTS: usize = 1024;

/// Most blocks in one level's keypoint chain (the official depth-wise head has 11).
const MAX_CHAIN: usize = 64;

/// `nkpt` as the head declares it: `None` or 0 means a head without keypoints.
pub(crate) fn declared_nkpt(ctx: &Ctx<'_, '_>, m: &Module<'_>, path: &str) -> Result<usize> {
    match m.attr("nkpt") {
        None | Some(Value::None) => Ok(0),
        Some(_) => {
            let nkpt = ctx.usize_attr(m, "nkpt", path)?;
            if nkpt > MAX_KEYPOINTS {
                return Err(ctx.bad(format!(
                    "`{path}.nkpt` is {nkpt}, expected at most {MAX_KEYPOINTS} keypoints"
                )));
            }
            Ok(nkpt)
        }
    }
}

/// Reads `m_kpt`: one branch per level, each reading `inputs[i]` channels and giving
/// `outputs` (`3 * nkpt * na`).
pub(crate) fn keypoints(
    ctx: &Ctx<'_, '_>,
    m: &Module<'_>,
    path: &str,
    nkpt: usize,
    inputs: &[usize],
    outputs: usize,
) -> Result<Keypoints> {
    let levels = ctx.list(m, "m_kpt", path)?;
    if levels.len() != inputs.len() {
        return Err(ctx.bad(format!(
            "`{path}.m_kpt` has {} branches for {} levels",
            levels.len(),
            inputs.len()
        )));
    }
    let depthwise = match m.attr("dw_conv_kpt") {
        Some(Value::Bool(b)) => Some(b),
        _ => None,
    };
    let branches = levels
        .iter()
        .zip(inputs)
        .enumerate()
        .map(|(i, (level, &c_in))| branch(ctx, level, &format!("{path}.m_kpt.{i}"), c_in, outputs))
        .collect::<Result<Vec<_>>>()?;
    let chained = branches.iter().any(|b| !b.blocks.is_empty());
    if depthwise.is_some_and(|d| d != chained) {
        let (said, found) = if chained {
            ("single convolutions", "chains")
        } else {
            ("depth-wise chains", "single convolutions")
        };
        return Err(ctx.bad(format!(
            "`{path}.dw_conv_kpt` declares {said}, its branches are {found}"
        )));
    }
    Ok(Keypoints {
        nkpt,
        depthwise: chained,
        branches,
    })
}

fn branch(
    ctx: &Ctx<'_, '_>,
    level: &Module<'_>,
    path: &str,
    c_in: usize,
    outputs: usize,
) -> Result<KeypointBranch> {
    let check_out = |conv: &crate::model::Conv2d, what: &str, reads: usize| {
        if conv.in_channels != reads || conv.out_channels != outputs || conv.kernel != [1, 1] {
            return Err(ctx.bad(format!(
                "`{what}` is a {}x{} convolution {} -> {}, expected 1x1 {reads} -> {outputs}",
                conv.kernel[0], conv.kernel[1], conv.in_channels, conv.out_channels
            )));
        }
        if conv.stride != [1, 1] || conv.groups != 1 {
            return Err(ctx.bad(format!(
                "`{what}` must keep the map's size and mix every channel"
            )));
        }
        Ok(())
    };
    match level.torch_class() {
        Some("Conv2d") => {
            let out = conv2d(ctx, level, path)?;
            check_out(&out, path, c_in)?;
            Ok(KeypointBranch {
                blocks: Vec::new(),
                out,
            })
        }
        Some("Sequential") => {
            let entries = level.children(ctx.ck.budget())?;
            if entries.len() > MAX_CHAIN + 1 {
                return Err(ctx.bad(format!(
                    "`{path}` has {} entries, more than {}",
                    entries.len(),
                    MAX_CHAIN + 1
                )));
            }
            let Some(((last_key, last), chain)) = entries.split_last() else {
                return Err(ctx.bad(format!("`{path}` is an empty Sequential")));
            };
            let module = |key: &str, value: Value| {
                Module::new(level.graph, value)
                    .ok_or_else(|| ctx.bad(format!("`{path}.{}` is not a module", clip(key))))
            };
            let mut blocks = Vec::with_capacity(chain.len());
            let mut width = c_in;
            for (key, value) in chain {
                let what = format!("{path}.{}", clip(key));
                let block_module = module(key, *value)?;
                if block_module.yolo_class() != Some("Conv") {
                    return Err(ctx.bad(format!(
                        "`{what}` is `{}`, expected models.common.Conv",
                        clip(&block_module.class_path())
                    )));
                }
                let block = conv_block(ctx, &block_module, &what)?;
                if block.conv.in_channels != width || block.conv.stride != [1, 1] {
                    return Err(ctx.bad(format!(
                        "`{what}` reads {} channels at stride {}, its input gives {width} and \
                         the branch must keep the map's size",
                        block.conv.in_channels, block.conv.stride[0]
                    )));
                }
                width = block.conv.out_channels;
                blocks.push(block);
            }
            let what = format!("{path}.{}", clip(last_key));
            let out = conv2d(ctx, &module(last_key, *last)?, &what)?;
            check_out(&out, &what, width)?;
            Ok(KeypointBranch { blocks, out })
        }
        _ => Err(ctx.bad(format!(
            "`{path}` is `{}`, expected torch.nn.Conv2d or torch.nn.Sequential",
            clip(&level.class_path())
        ))),
    }
}
