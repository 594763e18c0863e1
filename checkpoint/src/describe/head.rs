//! The detection heads: `Detect`, `IDetect` (implicit knowledge), `IAuxDetect` (with
//! training-only auxiliary convolutions) and the pose head `IKeypoint` (`IDetect`'s box
//! outputs beside a keypoint branch per level, see [`super::keypoints`]).

use super::MAX_CLASSES;
use super::keypoints::{declared_nkpt, keypoints};
use super::layers::{Ctx, conv2d, expect_shape, fused_forward};
use super::module::{Module, tensor_ref};
use crate::error::Result;
use crate::model::{Conv2d, DetectHead, HeadKind, TensorRef};

/// Reads a head; `inputs` are the channel counts flowing in from its `from` layers.
pub(crate) fn head(
    ctx: &Ctx<'_, '_>,
    m: &Module<'_>,
    kind: HeadKind,
    path: &str,
    inputs: &[usize],
    model_stride: Option<TensorRef>,
) -> Result<DetectHead> {
    let nc = ctx.usize_attr(m, "nc", path)?;
    let na = ctx.usize_attr(m, "na", path)?;
    let nl = ctx.usize_attr(m, "nl", path)?;
    let nkpt = match kind {
        HeadKind::IKeypoint => declared_nkpt(ctx, m, path)?,
        HeadKind::Detect | HeadKind::IDetect | HeadKind::IAuxDetect => 0,
    };
    // The box part of each output row; the keypoints follow it.
    let no = nc.saturating_add(5);
    let no_kpt = nkpt.saturating_mul(yolots_protocol::KEYPOINT_VALUES);
    if let Some(declared) = m.int("no")
        && usize::try_from(declared).ok() != Some(no.saturating_add(no_kpt))
    {
        let expected = if nkpt > 0 {
            "nc + 5 + 3 * nkpt"
        } else {
            "nc + 5"
        };
        return Err(ctx.bad(format!(
            "`{path}.no` is {declared}, expected {expected} = {}",
            no.saturating_add(no_kpt)
        )));
    }
    if let Some(declared) = m.int("no_det")
        && usize::try_from(declared).ok() != Some(no)
    {
        return Err(ctx.bad(format!(
            "`{path}.no_det` is {declared}, expected nc + 5 = {no}"
        )));
    }
    // Official heads have 3 or 4 levels of 3 anchors; a single level or anything far
    // beyond is not a YOLOv7 head.
    if !(2..=16).contains(&nl) || !(1..=64).contains(&na) {
        return Err(ctx.bad(format!(
            "`{path}` has {nl} levels of {na} anchors, expected 2 to 16 levels of 1 to 64"
        )));
    }
    if !(1..=MAX_CLASSES).contains(&nc) {
        return Err(ctx.bad(format!(
            "`{path}.nc` is {nc}, expected 1 to {MAX_CLASSES} classes"
        )));
    }
    let outputs = no.saturating_mul(na);
    let expected_inputs = match kind {
        HeadKind::IAuxDetect => nl.saturating_mul(2),
        HeadKind::Detect | HeadKind::IDetect | HeadKind::IKeypoint => nl,
    };
    if inputs.len() != expected_inputs {
        return Err(ctx.bad(format!(
            "{} inputs for {nl} levels, expected {expected_inputs}",
            inputs.len()
        )));
    }
    let (main_inputs, aux_inputs) = inputs.split_at(nl);

    let output_convs = |key: &str, ins: &[usize]| -> Result<Vec<Conv2d>> {
        let modules = ctx.list(m, key, path)?;
        if modules.len() != ins.len() {
            return Err(ctx.bad(format!(
                "`{path}.{key}` has {} convolutions for {} levels",
                modules.len(),
                ins.len()
            )));
        }
        modules
            .iter()
            .zip(ins)
            .enumerate()
            .map(|(i, (module, &c_in))| {
                let what = format!("{path}.{key}.{i}");
                let conv = conv2d(ctx, module, &what)?;
                if conv.in_channels != c_in || conv.out_channels != outputs || conv.kernel != [1, 1] {
                    return Err(ctx.bad(format!(
                        "`{what}` is a {}x{} convolution {} -> {}, expected 1x1 {c_in} -> {outputs}",
                        conv.kernel[0], conv.kernel[1], conv.in_channels, conv.out_channels
                    )));
                }
                Ok(conv)
            })
            .collect()
    };
    let convs = output_convs("m", main_inputs)?;
    let aux_convs = match kind {
        HeadKind::IAuxDetect => output_convs("m2", aux_inputs)?,
        HeadKind::Detect | HeadKind::IDetect | HeadKind::IKeypoint => Vec::new(),
    };
    // `IKeypoint` keeps its keypoint branches whatever the fusion state: the official
    // `fuse()` only folds the BatchNorms inside them.
    let keypoints = match nkpt {
        0 => None,
        _ => Some(keypoints(
            ctx,
            m,
            path,
            nkpt,
            main_inputs,
            no_kpt.saturating_mul(na),
        )?),
    };

    let fused = fused_forward(ctx, m, path)?;
    let (implicit_a, implicit_m) = match kind {
        // `fuseforward` no longer applies the implicit layers (they were folded).
        _ if fused => (Vec::new(), Vec::new()),
        HeadKind::Detect => (Vec::new(), Vec::new()),
        HeadKind::IDetect | HeadKind::IAuxDetect | HeadKind::IKeypoint => {
            let implicit = |key: &str, widths: &mut dyn Iterator<Item = usize>| {
                let modules = ctx.list(m, key, path)?;
                if modules.len() != nl {
                    return Err(ctx.bad(format!(
                        "`{path}.{key}` has {} entries for {nl} levels",
                        modules.len()
                    )));
                }
                modules
                    .iter()
                    .zip(widths)
                    .enumerate()
                    .map(|(i, (module, width))| {
                        let t = ctx.param(module, "implicit", &format!("{path}.{key}.{i}"))?;
                        expect_shape(&t, &[1, width, 1, 1])?;
                        Ok(t)
                    })
                    .collect::<Result<Vec<_>>>()
            };
            let a = implicit("ia", &mut main_inputs.iter().copied())?;
            let im = implicit("im", &mut std::iter::repeat(outputs))?;
            (a, im)
        }
    };

    let anchors = ctx.buffer(m, "anchors", path)?;
    expect_shape(&anchors, &[nl, na, 2])?;
    let anchor_grid = ctx.buffer(m, "anchor_grid", path)?;
    expect_shape(&anchor_grid, &[nl, 1, na, 1, 1, 2])?;
    let grid = ctx.ck.tensor_f32(&anchor_grid)?;
    for (key, values) in [
        ("anchors", ctx.ck.tensor_f32(&anchors)?),
        ("anchor_grid", grid.clone()),
    ] {
        if let Some(bad) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(ctx.bad(format!(
                "`{path}.{key}` holds {bad}: anchors must be positive sizes"
            )));
        }
    }
    let anchors_px: Vec<Vec<[f32; 2]>> = grid
        .chunks_exact(na.saturating_mul(2))
        .map(|level| {
            level
                .chunks_exact(2)
                .filter_map(|wh| match wh {
                    [w, h] => Some([*w, *h]),
                    _ => None,
                })
                .collect()
        })
        .collect();

    // `Detect.stride` is a plain attribute (not a buffer); the model keeps a copy.
    let stride = match m.attr("stride").filter(|v| m.graph.tensor(*v).is_some()) {
        Some(value) => Some(tensor_ref(ctx.ck, value, &format!("{path}.stride"))?),
        None => model_stride,
    };
    let stride = stride.ok_or_else(|| ctx.bad(format!("`{path}.stride` is missing")))?;
    expect_shape(&stride, &[nl])?;
    let strides: Vec<f64> = ctx
        .ck
        .tensor_f32(&stride)?
        .into_iter()
        .map(f64::from)
        .collect();
    // Each level halves the resolution of the one before: 8, 16, 32[, 64].
    let power_of_two =
        |s: f64| (1.0..=65536.0).contains(&s) && s.fract() == 0.0 && (s as u32).is_power_of_two();
    let increasing = strides.windows(2).all(|w| matches!(w, [a, b] if a < b));
    if !strides.iter().all(|s| power_of_two(*s)) || !increasing {
        return Err(ctx.bad(format!(
            "`{path}.stride` is {strides:?}: the levels' strides must be increasing powers of two"
        )));
    }

    Ok(DetectHead {
        kind,
        nc,
        na,
        nl,
        strides,
        anchors_px,
        anchors,
        anchor_grid,
        convs,
        implicit_a,
        implicit_m,
        aux_convs,
        fused,
        keypoints,
    })
}
