//! `detect_image` for ONNX artifacts: the letterbox, the NMS and the way back to the
//! image's pixels that the TorchScript artifacts run inside their graph (`script.rs`,
//! `_letterbox`, `_nms`, `_greedy`, `_unletterbox`), done here with the same aten
//! operations around ONNX Runtime's run of the network.

use tch::{Kind, Tensor};

use super::model::Thresholds;
use crate::error::{ConvertError, Result};
use crate::metadata::ArtifactMetadata;
use crate::onnx::runtime::OnnxSession;
use crate::options::Output;

/// Boxes of different classes never overlap once shifted this far apart.
const CLASS_OFFSET: f32 = 4096.0;

/// Most candidate boxes the NMS looks at.
const MAX_CANDIDATES: i64 = 30_000;

/// The letterboxed input and how to undo it.
pub(crate) struct Letterbox {
    /// float32 `[1, 3, th, tw]`, RGB in 0..1.
    pub input: Tensor,
    pub gain: f64,
    pub pad_x: f64,
    pub pad_y: f64,
}

/// `_letterbox`: `image` (uint8 `[H, W, 3]`) resized bilinearly to fit `[th, tw]`
/// keeping its aspect ratio, centred on grey (114).
pub(crate) fn letterbox(image: &Tensor, th: i64, tw: i64) -> Result<Letterbox> {
    let size = image.size();
    let (h0, w0) = (size[0], size[1]);
    let r = (th as f64 / h0 as f64).min(tw as f64 / w0 as f64);
    // TorchScript's `round` rounds half to even, as Python's does.
    let nh = (h0 as f64 * r).round_ties_even() as i64;
    let nw = (w0 as f64 * r).round_ties_even() as i64;
    let top = ((th - nh) as f64 / 2.0 - 0.1).round_ties_even() as i64;
    let left = ((tw - nw) as f64 / 2.0 - 0.1).round_ties_even() as i64;
    let mut x = image
        .f_permute([2, 0, 1])?
        .f_unsqueeze(0)?
        .f_to_kind(Kind::Float)?;
    if nh != h0 || nw != w0 {
        x = x
            .f_upsample_bilinear2d([nh, nw], false, None, None)?
            .f_round()?
            .f_clamp(0.0, 255.0)?;
    }
    let canvas = Tensor::f_full([1, 3, th, tw], 114.0, (Kind::Float, image.device()))?;
    canvas
        .f_narrow(2, top, nh)?
        .f_narrow(3, left, nw)?
        .f_copy_(&x)?;
    Ok(Letterbox {
        input: canvas.f_div_scalar(255.0)?,
        gain: r,
        pad_x: (tw as f64 - w0 as f64 * r) / 2.0,
        pad_y: (th as f64 - h0 as f64 * r) / 2.0,
    })
}

/// `detect_image` of an ONNX artifact: `[K, 6 + 3 nkpt]` in the image's pixels.
pub(crate) fn detect_image(
    session: &mut OnnxSession,
    meta: &ArtifactMetadata,
    image: &Tensor,
    t: Thresholds,
) -> Result<Tensor> {
    let [th, tw] = meta.input.img_size.hw();
    let lb = letterbox(image, th, tw)?;
    let outputs = session.run(&lb.input)?;
    let nkpt = meta.kpt_shape.map_or(0, |[n, _]| n as i64);
    let no_det = meta.nc as i64 + 5;
    let det = match meta.head {
        Output::Decoded => {
            let (_, decoded) = outputs
                .into_iter()
                .next()
                .ok_or_else(|| ConvertError::OnnxRuntime("the model has no output".into()))?;
            nms(&decoded.f_select(0, 0)?, no_det, nkpt, t)?
        }
        Output::Detections => {
            // The NMS is inside the graph with the thresholds chosen at conversion; a
            // stricter confidence or a smaller count still applies.
            if t.iou != meta.iou_thres || t.conf < meta.conf_thres {
                tracing::warn!(
                    conf = meta.conf_thres,
                    iou = meta.iou_thres,
                    "this ONNX artifact's NMS runs inside it with the thresholds of its conversion"
                );
            }
            let (_, rows) = outputs
                .into_iter()
                .next()
                .ok_or_else(|| ConvertError::OnnxRuntime("the model has no output".into()))?;
            // Drop the batch index column.
            let rows = rows.f_narrow(1, 1, rows.size()[1] - 1)?;
            let keep = rows.f_select(1, 4)?.f_gt(t.conf)?;
            let rows = rows.f_index(&[Some(keep)])?;
            let n = rows.size()[0].min(t.max_det.max(0));
            rows.f_narrow(0, 0, n)?
        }
        Output::Raw => {
            return Err(ConvertError::Unsupported(
                "predict runs ONNX artifacts whose head is decoded or detections, not raw \
                 (convert again with --head decoded)"
                    .into(),
            ));
        }
    };
    let size = image.size();
    unletterbox(&det, size[0], size[1], &lb, nkpt)
}

/// `_nms` over one image's decoded rows `[N, no]`: candidates above `conf`, scored as
/// the artifact scores them, class-aware greedy NMS, best first; rows of
/// `x1, y1, x2, y2, score, class` and the keypoints.
pub(crate) fn nms(x: &Tensor, no_det: i64, nkpt: i64, t: Thresholds) -> Result<Tensor> {
    let x = x.f_to_kind(Kind::Float)?;
    let keep = x.f_select(1, 4)?.f_gt(t.conf)?;
    let x = x.f_index(&[Some(keep)])?;
    let objectness = x.f_narrow(1, 4, 1)?;
    let (conf, class) = if nkpt == 0 && x.size()[1] == 6 {
        (objectness.shallow_clone(), objectness.f_zeros_like()?)
    } else {
        let probabilities = x.f_narrow(1, 5, no_det - 5)?;
        let (conf, class) = probabilities.f_mul(&objectness)?.f_max_dim(1, true)?;
        (conf, class.f_to_kind(Kind::Float)?)
    };
    let (cx, cy) = (x.f_select(1, 0)?, x.f_select(1, 1)?);
    let (w, h) = (x.f_select(1, 2)?, x.f_select(1, 3)?);
    let (hw, hh) = (w.f_div_scalar(2.0)?, h.f_div_scalar(2.0)?);
    let corners = Tensor::f_stack(
        &[
            cx.f_sub(&hw)?,
            cy.f_sub(&hh)?,
            cx.f_add(&hw)?,
            cy.f_add(&hh)?,
        ],
        1,
    )?;
    let mut columns = vec![corners, conf.shallow_clone(), class];
    if nkpt > 0 {
        columns.push(x.f_narrow(1, no_det, 3 * nkpt)?);
    }
    let det = Tensor::f_cat(&columns, 1)?;
    let det = det.f_index(&[Some(conf.f_view([-1])?.f_gt(t.conf)?)])?;
    let det = if det.size()[0] > MAX_CANDIDATES {
        let (_, order) = det.f_select(1, 4)?.f_sort_stable(true, 0, true)?;
        det.f_index_select(0, &order.f_narrow(0, 0, MAX_CANDIDATES)?)?
    } else {
        det
    };
    let kept = greedy(&det, t.iou, t.max_det)?;
    let kept = Tensor::f_from_slice(&kept)?;
    Ok(det.f_index_select(0, &kept)?)
}

/// `_greedy`: indices of the rows kept, best first (a stable sort by score, then each
/// kept box removes the boxes of its class overlapping it by more than `iou`).
fn greedy(det: &Tensor, iou: f64, max_det: i64) -> Result<Vec<i64>> {
    let n = det.size()[0] as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    let cols = det.size()[1] as usize;
    let values: Vec<f32> = Vec::try_from(det.f_contiguous()?.f_view([-1])?)?;
    let row = |i: usize| &values[i * cols..(i + 1) * cols];
    let mut order: Vec<usize> = (0..n).collect();
    // Stable, highest first; equal scores keep their order.
    order.sort_by(|&a, &b| row(b)[4].total_cmp(&row(a)[4]));
    let boxes: Vec<[f32; 4]> = order
        .iter()
        .map(|&i| {
            let r = row(i);
            let off = r[5] * CLASS_OFFSET;
            [r[0] + off, r[1] + off, r[2] + off, r[3] + off]
        })
        .collect();
    let areas: Vec<f32> = boxes
        .iter()
        .map(|b| (b[2] - b[0]) * (b[3] - b[1]))
        .collect();
    let iou = iou as f32;
    let mut alive = vec![true; n];
    let mut keep = Vec::new();
    for i in 0..n {
        if !alive[i] {
            continue;
        }
        if keep.len() as i64 >= max_det {
            break;
        }
        keep.push(order[i] as i64);
        let b = boxes[i];
        for j in i + 1..n {
            if !alive[j] {
                continue;
            }
            let c = boxes[j];
            let iw = (c[2].min(b[2]) - c[0].max(b[0])).max(0.0);
            let ih = (c[3].min(b[3]) - c[1].max(b[1])).max(0.0);
            let inter = iw * ih;
            if inter / (areas[i] + areas[j] - inter) > iou {
                alive[j] = false;
            }
        }
    }
    Ok(keep)
}

/// `_unletterbox`: corners and keypoints back to the image's pixels, clipped to it.
fn unletterbox(det: &Tensor, h0: i64, w0: i64, lb: &Letterbox, nkpt: i64) -> Result<Tensor> {
    let back = |column: Tensor, pad: f64, limit: i64| -> Result<Tensor> {
        Ok(column
            .f_sub_scalar(pad)?
            .f_div_scalar(lb.gain)?
            .f_clamp(0.0, limit as f64)?)
    };
    let corners = Tensor::f_stack(
        &[
            back(det.f_select(1, 0)?, lb.pad_x, w0)?,
            back(det.f_select(1, 1)?, lb.pad_y, h0)?,
            back(det.f_select(1, 2)?, lb.pad_x, w0)?,
            back(det.f_select(1, 3)?, lb.pad_y, h0)?,
        ],
        1,
    )?;
    let mut columns = vec![corners, det.f_narrow(1, 4, 2)?];
    if nkpt > 0 {
        let k = det.f_narrow(1, 6, 3 * nkpt)?.f_view([-1, nkpt, 3])?;
        let kx = back(k.f_select(2, 0)?, lb.pad_x, w0)?;
        let ky = back(k.f_select(2, 1)?, lb.pad_y, h0)?;
        let kc = k.f_select(2, 2)?;
        columns.push(Tensor::f_stack(&[kx, ky, kc], 2)?.f_view([-1, 3 * nkpt])?);
    }
    Ok(Tensor::f_cat(&columns, 1)?)
}
