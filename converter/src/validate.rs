//! Validation: the saved artifact, loaded back the way users load it, against the eager
//! network built unfused in float32 from the same checkpoint.
//!
//! Each output is compared element by element with a tolerance that depends on what the
//! numbers are (raw logits, box pixels, probabilities) and on the artifact's precision.
//! Detections are matched box by box against an independent NMS over the reference's
//! decoded output.

use std::path::Path;

use tch::{CModule, Device, IValue, Kind, Tensor};

use crate::error::{ConvertError, Result};
use crate::jit::{MobileArg, MobileModule};
use crate::network::Network;
use crate::options::{ImageSize, Output, Precision};
use crate::report::{OutputCheck, OutputKind, Tolerance};

/// Per-element tolerance for an output kind at a precision.
///
/// Float32: raw 1e-4, boxes 1e-3 px, probabilities 1e-5 (the spread between the official
/// fused and unfused models is about ten times smaller). Float16 carries about three
/// significant digits through a hundred layers: raw 0.05 + 2 %, boxes 1 px + 2 %,
/// probabilities 0.01.
pub fn tolerance(kind: OutputKind, precision: Precision) -> Tolerance {
    let (abs, rel) = match (precision, kind) {
        (Precision::Fp32, OutputKind::Raw) => (1e-4, 0.0),
        (Precision::Fp32, OutputKind::Boxes) => (1e-3, 0.0),
        (Precision::Fp32, OutputKind::Probabilities) => (1e-5, 0.0),
        (Precision::Fp16, OutputKind::Raw) => (5e-2, 2e-2),
        (Precision::Fp16, OutputKind::Boxes) => (1.0, 2e-2),
        (Precision::Fp16, OutputKind::Probabilities) => (1e-2, 0.0),
        // Keypoints are pixels like boxes, their confidences probabilities.
        (_, OutputKind::Keypoints) => return tolerance(OutputKind::Boxes, precision),
        (_, OutputKind::KeypointConfidences) => {
            return tolerance(OutputKind::Probabilities, precision);
        }
        (_, OutputKind::Detections) => (tolerance(OutputKind::Boxes, precision).abs, 0.0),
        (_, OutputKind::Smoke) => (0.0, 0.0),
    };
    Tolerance { abs, rel }
}

/// A deterministic input in `[0, 1)` (a hash of the element index, no RNG state).
pub(crate) fn test_input(batch: i64, size: [i64; 2]) -> Result<Tensor> {
    let n = batch * 3 * size[0] * size[1];
    let i = Tensor::f_arange(n, (Kind::Double, Device::Cpu))?;
    let hashed = i
        .f_mul_scalar(12.9898)?
        .f_add_scalar(78.233)?
        .f_sin()?
        .f_mul_scalar(43758.5453)?
        .f_frac()?
        .f_abs()?;
    Ok(hashed
        .f_to_kind(Kind::Float)?
        .f_view([batch, 3, size[0], size[1]])?)
}

/// The second validation size: `2S x 3S` for the largest stride `S` (`3S x 2S` when that is
/// the conversion size). It proves what the conversion size cannot, at a small fraction of
/// its cost: another size than the conversion's, a non-square one (height and width cannot
/// be swapped anywhere unnoticed), and at least two cells per side at the coarsest level.
pub(crate) fn second_size(size: ImageSize, stride: i64) -> [i64; 2] {
    let s = stride.max(1);
    let small = [2 * s, 3 * s];
    if small == size.hw() {
        [3 * s, 2 * s]
    } else {
        small
    }
}

/// An artifact loaded back: TorchScript through tch, or a `.ptl` through the lite
/// interpreter.
pub(crate) enum Loaded {
    Script(CModule),
    Mobile(MobileModule),
}

/// An argument of a method call.
pub(crate) enum Arg<'a> {
    Tensor(&'a Tensor),
    Float(f64),
    Int(i64),
}

impl Loaded {
    pub(crate) fn load(path: &Path, mobile: bool, device: Device) -> Result<Self> {
        let start = std::time::Instant::now();
        let loaded = if mobile {
            Loaded::Mobile(MobileModule::load(path)?)
        } else {
            let mut m = CModule::load_on_device(path, device)?;
            m.f_set_eval()?;
            Loaded::Script(m)
        };
        tracing::debug!(ms = start.elapsed().as_secs_f64() * 1e3, "artifact loaded");
        Ok(loaded)
    }

    pub(crate) fn loaded_with(&self) -> &'static str {
        match self {
            Loaded::Script(_) => "tch::CModule::load_on_device",
            Loaded::Mobile(_) => "lite interpreter (torch::jit::_load_for_mobile)",
        }
    }

    /// Runs `method` and returns every tensor of its result, in order.
    pub(crate) fn call(&mut self, method: &str, args: &[Arg<'_>]) -> Result<Vec<Tensor>> {
        let _guard = tch::no_grad_guard();
        match self {
            Loaded::Script(m) => {
                let ivalues: Vec<IValue> = args
                    .iter()
                    .map(|a| match a {
                        Arg::Tensor(t) => IValue::Tensor(t.shallow_clone()),
                        Arg::Float(f) => IValue::Double(*f),
                        Arg::Int(i) => IValue::Int(*i),
                    })
                    .collect();
                let out = m.method_is(method, &ivalues)?;
                let mut tensors = Vec::new();
                flatten(out, &mut tensors)?;
                Ok(tensors)
            }
            Loaded::Mobile(m) => {
                let margs: Vec<MobileArg<'_>> = args
                    .iter()
                    .map(|a| match a {
                        Arg::Tensor(t) => MobileArg::Tensor(t),
                        Arg::Float(f) => MobileArg::Float(*f),
                        Arg::Int(i) => MobileArg::Int(*i),
                    })
                    .collect();
                m.run(method, &margs)
            }
        }
    }
}

fn flatten(v: IValue, out: &mut Vec<Tensor>) -> Result<()> {
    match v {
        IValue::Tensor(t) => out.push(t),
        IValue::TensorList(ts) => out.extend(ts),
        IValue::GenericList(vs) | IValue::Tuple(vs) => {
            for v in vs {
                flatten(v, out)?;
            }
        }
        other => {
            return Err(ConvertError::Internal(format!(
                "method returned a non-tensor value: {other:?}"
            )));
        }
    }
    Ok(())
}

/// Compares `got` with `want` element by element.
pub(crate) fn compare(
    name: String,
    method: &str,
    kind: OutputKind,
    input_shape: &[i64],
    got: &Tensor,
    want: &Tensor,
    tol: Tolerance,
) -> Result<OutputCheck> {
    let shape = got.size();
    let mut check = OutputCheck {
        name,
        method: method.to_owned(),
        kind,
        input_shape: input_shape.to_vec(),
        shape: shape.clone(),
        max_abs_error: None,
        mean_abs_error: None,
        tolerance: tol,
        passed: false,
        detail: None,
    };
    if shape != want.size() {
        check.detail = Some(format!("shape {shape:?}, reference {:?}", want.size()));
        return Ok(check);
    }
    if got.numel() == 0 {
        check.max_abs_error = Some(0.0);
        check.mean_abs_error = Some(0.0);
        check.passed = true;
        return Ok(check);
    }
    let g = got.f_to_kind(Kind::Double)?.f_to_device(want.device())?;
    let w = want.f_to_kind(Kind::Double)?;
    let diff = g.f_sub(&w)?.f_abs()?;
    check.max_abs_error = Some(diff.f_max()?.f_double_value(&[])?);
    check.mean_abs_error = Some(diff.f_mean(Kind::Double)?.f_double_value(&[])?);
    let bound = w.f_abs()?.f_mul_scalar(tol.rel)?.f_add_scalar(tol.abs)?;
    // `le` is false for NaN, so a NaN anywhere fails the check.
    check.passed = diff.f_le_tensor(&bound)?.f_all()?.f_int64_value(&[])? != 0;
    Ok(check)
}

/// How a decoded row is laid out: `cx, cy, w, h, objectness`, `nc` class probabilities,
/// then `(x, y, conf)` for each of `nkpt` keypoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowLayout {
    pub nc: usize,
    pub nkpt: usize,
}

impl RowLayout {
    /// Values of the box part: `nc + 5`.
    pub(crate) fn no_det(self) -> usize {
        self.nc + 5
    }

    /// Values of a decoded row.
    pub(crate) fn no(self) -> usize {
        self.no_det() + 3 * self.nkpt
    }

    /// Values of a detection row: corners, score, class, then the keypoints.
    pub(crate) fn det_columns(self) -> usize {
        6 + 3 * self.nkpt
    }
}

/// One detection: corners in pixels, score, class, and for pose models `(x, y, conf)` per
/// keypoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Det {
    pub xyxy: [f32; 4],
    pub score: f32,
    pub class: f32,
    pub keypoints: Vec<f32>,
}

/// Rows of a `[K, 6 + 3 * nkpt]` tensor.
pub(crate) fn dets_of(t: &Tensor, layout: RowLayout) -> Result<Vec<Det>> {
    let t = t
        .f_to_kind(Kind::Float)?
        .f_to_device(Device::Cpu)?
        .f_contiguous()?;
    let v: Vec<f32> = Vec::try_from(t.f_flatten(0, -1)?)?;
    Ok(v.chunks_exact(layout.det_columns())
        .map(|r| Det {
            xyxy: [r[0], r[1], r[2], r[3]],
            score: r[4],
            class: r[5],
            keypoints: r[6..].to_vec(),
        })
        .collect())
}

/// Greedy class-aware NMS over one image's decoded rows (`[N, no]`), with the official
/// semantics, in plain Rust (independent of the TorchScript version). Detection models
/// with one class score by objectness alone; pose models always score objectness x class
/// probability (the pose code's `non_max_suppression(kpt_label=True)`), and their rows
/// keep their keypoints.
pub(crate) fn reference_nms(
    rows: &[f32],
    layout: RowLayout,
    conf: f64,
    iou: f64,
    max_det: usize,
) -> Vec<Det> {
    const MAX_WH: f32 = 4096.0;
    // Thresholds compare in float32, as a float tensor against a Python float does.
    let conf = conf as f32;
    let iou = iou as f32;
    let (no_det, pose) = (layout.no_det(), layout.nkpt > 0);
    let mut cands = Vec::new();
    for r in rows.chunks_exact(layout.no()) {
        if !above(r[4], conf) {
            continue;
        }
        let (score, class) = if layout.nc == 1 && !pose {
            (r[4], 0usize)
        } else {
            let mut best = (f32::NEG_INFINITY, 0usize);
            for (c, p) in r[5..no_det].iter().enumerate() {
                let s = p * r[4];
                if s > best.0 {
                    best = (s, c);
                }
            }
            best
        };
        if !above(score, conf) {
            continue;
        }
        let (cx, cy, w, h) = (r[0], r[1], r[2], r[3]);
        cands.push(Det {
            xyxy: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            score,
            class: class as f32,
            keypoints: r[no_det..].to_vec(),
        });
    }
    // Stable: equal scores keep their index order.
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| cands[b].score.total_cmp(&cands[a].score));
    let shifted = |d: &Det| d.xyxy.map(|v| v + d.class * MAX_WH);
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let mut suppressed = vec![false; cands.len()];
    let mut keep = Vec::new();
    for (oi, &i) in order.iter().enumerate() {
        if suppressed[oi] {
            continue;
        }
        keep.push(cands[i].clone());
        if keep.len() >= max_det {
            break;
        }
        let bi = shifted(&cands[i]);
        for (oj, &j) in order.iter().enumerate().skip(oi + 1) {
            if suppressed[oj] {
                continue;
            }
            let bj = shifted(&cands[j]);
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            let ov = inter / (area(&bi) + area(&bj) - inter);
            if ov > iou {
                suppressed[oj] = true;
            }
        }
    }
    keep
}

/// `v > t`, false for NaN (as a tensor comparison is).
fn above(v: f32, t: f32) -> bool {
    v > t
}

/// IoU of two corner boxes.
pub(crate) fn box_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Matches artifact detections to reference ones (same class, IoU >= 0.99, each used
/// once). Boxes left unmatched pass only when their score is within `margin` of the
/// confidence threshold (a float difference may move such a box across it).
pub(crate) fn compare_detections(
    name: String,
    input_shape: &[i64],
    got: &[Det],
    want: &[Det],
    conf: f64,
    precision: Precision,
) -> OutputCheck {
    let tol = tolerance(OutputKind::Detections, precision);
    let score_tol = tolerance(OutputKind::Probabilities, precision).abs;
    let margin = (10.0 * score_tol) as f32;
    let mut used = vec![false; got.len()];
    let (mut max_box, mut max_score, mut sum_box, mut matched) = (0f64, 0f64, 0f64, 0usize);
    // Keypoint x, y (pixels) and confidences of matched detections.
    let (mut max_kpt, mut max_kpt_conf) = (0f64, 0f64);
    let mut unmatched_want = 0usize;
    for w in want {
        let hit = got
            .iter()
            .enumerate()
            .find(|(k, g)| !used[*k] && g.class == w.class && box_iou(&g.xyxy, &w.xyxy) >= 0.99);
        match hit {
            Some((k, g)) => {
                used[k] = true;
                matched += 1;
                for c in 0..4 {
                    let e = f64::from((g.xyxy[c] - w.xyxy[c]).abs());
                    max_box = max_box.max(e);
                    sum_box += e;
                }
                max_score = max_score.max(f64::from((g.score - w.score).abs()));
                if g.keypoints.len() != w.keypoints.len() {
                    max_kpt = f64::INFINITY;
                }
                for (c, (a, b)) in g.keypoints.iter().zip(&w.keypoints).enumerate() {
                    let e = f64::from((a - b).abs());
                    if c % 3 == 2 {
                        max_kpt_conf = max_kpt_conf.max(e);
                    } else {
                        max_kpt = max_kpt.max(e);
                    }
                }
            }
            None if (w.score - conf as f32).abs() <= margin => {}
            None => unmatched_want += 1,
        }
    }
    let unmatched_got = got
        .iter()
        .zip(&used)
        .filter(|(g, u)| !**u && (g.score - conf as f32).abs() > margin)
        .count();
    let pose = want.iter().chain(got).any(|d| !d.keypoints.is_empty());
    let passed = unmatched_want == 0
        && unmatched_got == 0
        && max_box <= tol.abs
        && max_score <= score_tol
        && max_kpt <= tol.abs
        && max_kpt_conf <= score_tol;
    let keypoints = if pose {
        format!(
            ", max keypoint error {max_kpt:.2e} px, max keypoint confidence error {max_kpt_conf:.2e}"
        )
    } else {
        String::new()
    };
    let columns = got
        .first()
        .or(want.first())
        .map_or(6, |d| 6 + d.keypoints.len());
    OutputCheck {
        name,
        method: "forward".into(),
        kind: OutputKind::Detections,
        input_shape: input_shape.to_vec(),
        shape: vec![got.len() as i64, columns as i64],
        max_abs_error: Some(max_box),
        mean_abs_error: Some(if matched > 0 {
            sum_box / (4 * matched) as f64
        } else {
            0.0
        }),
        tolerance: tol,
        passed,
        detail: Some(format!(
            "{} boxes, reference {}, matched {matched}, unmatched beyond the threshold margin: \
             {unmatched_got} artifact / {unmatched_want} reference, max score error {max_score:.2e}{keypoints}",
            got.len(),
            want.len()
        )),
    }
}

/// The reference outputs for one input.
pub(crate) struct Reference {
    pub raw: Vec<Tensor>,
    pub decoded: Tensor,
}

impl Reference {
    pub(crate) fn compute(net: &Network, input: &Tensor) -> Result<Self> {
        let start = std::time::Instant::now();
        let raw = net.forward_raw(input)?;
        let decoded = net.head()?.decode(&raw)?;
        tracing::debug!(shape = ?input.size(), ms = start.elapsed().as_secs_f64() * 1e3,
            "reference run");
        Ok(Reference { raw, decoded })
    }
}

/// Plain-Rust NMS of every image of a decoded `[B, N, no]` output.
pub(crate) fn nms_per_image(
    decoded: &Tensor,
    layout: RowLayout,
    conf: f64,
    iou: f64,
    max_det: i64,
) -> Result<Vec<Vec<Det>>> {
    let d = decoded
        .f_to_kind(Kind::Float)?
        .f_to_device(Device::Cpu)?
        .f_contiguous()?;
    let b = match d.size().as_slice() {
        [b, _, no] if usize::try_from(*no).ok() == Some(layout.no()) => *b,
        other => {
            let message = format!(
                "decoded output of shape {other:?}, expected [B, N, {}]",
                layout.no()
            );
            return Err(ConvertError::Internal(message));
        }
    };
    let mut out = Vec::new();
    for i in 0..b {
        let rows: Vec<f32> = Vec::try_from(d.f_get(i)?.f_flatten(0, -1)?)?;
        out.push(reference_nms(
            &rows,
            layout,
            conf,
            iou,
            usize::try_from(max_det).unwrap_or(0),
        ));
    }
    Ok(out)
}

/// Checks of decoded output: boxes and probabilities separately, and for pose models the
/// keypoints' x, y and their confidences, each on its own.
pub(crate) fn check_decoded(
    checks: &mut Vec<OutputCheck>,
    method: &str,
    tag: &str,
    input_shape: &[i64],
    (got, want): (&Tensor, &Tensor),
    layout: RowLayout,
    precision: Precision,
) -> Result<()> {
    let last = got.size().len().saturating_sub(1) as i64;
    let no_det = layout.no_det() as i64;
    // (name, kind, first column, end column, step).
    let mut parts = vec![
        ("boxes", OutputKind::Boxes, 0, Some(4), 1),
        ("scores", OutputKind::Probabilities, 4, Some(no_det), 1),
    ];
    if layout.nkpt > 0 {
        parts.push(("keypoints.x", OutputKind::Keypoints, no_det, None, 3));
        parts.push(("keypoints.y", OutputKind::Keypoints, no_det + 1, None, 3));
        parts.push((
            "keypoints.conf",
            OutputKind::KeypointConfidences,
            no_det + 2,
            None,
            3,
        ));
    }
    for (part, kind, start, end, step) in parts {
        let g = got.f_slice(last, start, end, step)?;
        let w = want.f_slice(last, start, end, step)?;
        checks.push(compare(
            format!("decoded.{part}@{tag}"),
            method,
            kind,
            input_shape,
            &g,
            &w,
            tolerance(kind, precision),
        )?);
    }
    Ok(())
}

/// Checks of raw outputs, one per level.
pub(crate) fn check_raw(
    checks: &mut Vec<OutputCheck>,
    method: &str,
    tag: &str,
    input_shape: &[i64],
    got: &[Tensor],
    want: &[Tensor],
    precision: Precision,
) -> Result<()> {
    if got.len() != want.len() {
        checks.push(OutputCheck {
            name: format!("raw@{tag}"),
            method: method.to_owned(),
            kind: OutputKind::Raw,
            input_shape: input_shape.to_vec(),
            shape: vec![got.len() as i64],
            max_abs_error: None,
            mean_abs_error: None,
            tolerance: tolerance(OutputKind::Raw, precision),
            passed: false,
            detail: Some(format!("{} levels, reference {}", got.len(), want.len())),
        });
        return Ok(());
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        checks.push(compare(
            format!("raw.{i}@{tag}"),
            method,
            OutputKind::Raw,
            input_shape,
            g,
            w,
            tolerance(OutputKind::Raw, precision),
        )?);
    }
    Ok(())
}

/// Which method gives which output, per head.
pub(crate) fn methods_for(head: Output) -> (&'static str, &'static str) {
    match head {
        Output::Decoded => ("raw", "forward"),
        Output::Raw => ("forward", "decoded"),
        Output::Detections => ("raw", "decoded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_size_is_small_non_square_and_not_the_conversion_size() {
        assert_eq!(second_size(ImageSize::new(640, 640), 32), [64, 96]);
        assert_eq!(second_size(ImageSize::new(1280, 1280), 64), [128, 192]);
        assert_eq!(second_size(ImageSize::new(64, 96), 32), [96, 64]);
        assert_eq!(second_size(ImageSize::new(32, 32), 32), [64, 96]);
    }

    #[test]
    fn input_is_deterministic_and_in_range() {
        let a = test_input(1, [8, 8]).unwrap();
        let b = test_input(1, [8, 8]).unwrap();
        assert!(a.equal(&b));
        assert!(a.min().double_value(&[]) >= 0.0 && a.max().double_value(&[]) < 1.0);
    }

    const TWO_CLASSES: RowLayout = RowLayout { nc: 2, nkpt: 0 };
    const ONE_CLASS: RowLayout = RowLayout { nc: 1, nkpt: 0 };

    fn row(cx: f32, cy: f32, w: f32, h: f32, obj: f32, cls: &[f32]) -> Vec<f32> {
        let mut r = vec![cx, cy, w, h, obj];
        r.extend_from_slice(cls);
        r
    }

    #[test]
    fn nms_is_class_aware_greedy_and_stable() {
        let rows: Vec<f32> = [
            row(10.0, 10.0, 10.0, 10.0, 0.9, &[0.9, 0.1]),
            row(11.0, 10.0, 10.0, 10.0, 0.9, &[0.8, 0.1]), // suppressed by the first
            row(11.0, 10.0, 10.0, 10.0, 0.9, &[0.1, 0.8]), // other class: kept
            row(50.0, 50.0, 10.0, 10.0, 0.9, &[0.5, 0.1]),
            row(80.0, 80.0, 10.0, 10.0, 0.9, &[0.5, 0.1]), // ties the previous: after it
            row(90.0, 90.0, 10.0, 10.0, 0.1, &[0.9, 0.1]), // objectness below conf
        ]
        .concat();
        let keep = reference_nms(&rows, TWO_CLASSES, 0.25, 0.45, 300);
        let centres: Vec<(f32, f32)> = keep
            .iter()
            .map(|d| ((d.xyxy[0] + d.xyxy[2]) / 2.0, d.class))
            .collect();
        assert_eq!(
            centres,
            vec![(10.0, 0.0), (11.0, 1.0), (50.0, 0.0), (80.0, 0.0)]
        );
        assert_eq!(reference_nms(&rows, TWO_CLASSES, 0.25, 0.45, 2).len(), 2);
    }

    #[test]
    fn one_class_scores_are_objectness() {
        let rows = [row(10.0, 10.0, 4.0, 4.0, 0.3, &[0.01])].concat();
        let keep = reference_nms(&rows, ONE_CLASS, 0.25, 0.45, 300);
        assert_eq!(keep.len(), 1);
        assert_eq!(keep[0].score, 0.3);
    }

    #[test]
    fn pose_scores_multiply_the_class_probability_and_keep_keypoints() {
        let layout = RowLayout { nc: 1, nkpt: 2 };
        let mut a = row(10.0, 10.0, 4.0, 4.0, 0.5, &[0.8]);
        a.extend_from_slice(&[1.0, 2.0, 0.9, 3.0, 4.0, 0.1]);
        // Objectness above the threshold, objectness x class probability below it.
        let mut b = row(50.0, 50.0, 4.0, 4.0, 0.5, &[0.4]);
        b.extend_from_slice(&[5.0, 6.0, 0.9, 7.0, 8.0, 0.1]);
        let rows = [a, b].concat();
        let keep = reference_nms(&rows, layout, 0.25, 0.45, 300);
        assert_eq!(keep.len(), 1);
        assert_eq!(keep[0].score, 0.4);
        assert_eq!(keep[0].keypoints, [1.0, 2.0, 0.9, 3.0, 4.0, 0.1]);
    }

    #[test]
    fn pose_detections_compare_their_keypoints() {
        let det = |kx: f32| Det {
            xyxy: [0.0, 0.0, 10.0, 10.0],
            score: 0.5,
            class: 0.0,
            keypoints: vec![kx, 1.0, 0.5],
        };
        let same = compare_detections(
            "d".into(),
            &[1],
            &[det(1.0)],
            &[det(1.0)],
            0.1,
            Precision::Fp32,
        );
        assert!(same.passed, "{:?}", same.detail);
        let moved = compare_detections(
            "d".into(),
            &[1],
            &[det(1.5)],
            &[det(1.0)],
            0.1,
            Precision::Fp32,
        );
        assert!(!moved.passed);
        assert!(moved.detail.unwrap().contains("max keypoint error 5.00e-1"));
    }
}
