//! The pose fixture (`pose/yolov7-w6-pose-w25`, official `pose` branch: 17 keypoints, one
//! class, depth-wise keypoint head) against the pose code's own outputs: script (fused,
//! `decoded`; unfused, `raw`) and trace, every output checked with the converter's own
//! validation too; Python's `torch.jit.load` as an outside client on both inputs; `detect`
//! against a plain greedy NMS with the pose semantics; `detect_image` on a letterboxed
//! image whose keypoints must come back in the image's pixels.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tch::{IValue, Kind, Tensor};
use yolots_converter::{Mode, Output, ValidationStatus};

const POSE: &str = "pose/yolov7-w6-pose-w25";

/// Classes and keypoints of a model's rows.
#[derive(Debug, Clone, Copy)]
struct Layout {
    nc: i64,
    nkpt: i64,
}

impl Layout {
    fn no_det(self) -> i64 {
        self.nc + 5
    }
}

/// The shared fixture's: one class (`person`), the 17 COCO keypoints.
const FIXTURE: Layout = Layout { nc: 1, nkpt: 17 };

/// Boxes, scores, keypoint x, y and keypoint confidences, each within its tolerance.
fn assert_pose_decoded(what: &str, l: Layout, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{what}: shapes");
    let no_det = l.no_det();
    assert_eq!(got.size()[2], no_det + 3 * l.nkpt);
    let part = |t: &Tensor, start: i64, step: i64| t.slice(2, start, None, step);
    let boxes = max_abs(&got.narrow(2, 0, 4), &want.narrow(2, 0, 4));
    let scores = max_abs(&got.narrow(2, 4, l.nc + 1), &want.narrow(2, 4, l.nc + 1));
    let kx = max_abs(&part(got, no_det, 3), &part(want, no_det, 3));
    let ky = max_abs(&part(got, no_det + 1, 3), &part(want, no_det + 1, 3));
    let kc = max_abs(&part(got, no_det + 2, 3), &part(want, no_det + 2, 3));
    assert!(boxes <= BOX_TOL, "{what}: box error {boxes:e} px");
    assert!(scores <= PROB_TOL, "{what}: score error {scores:e}");
    assert!(
        kx.max(ky) <= BOX_TOL,
        "{what}: keypoint error {kx:e}, {ky:e} px"
    );
    assert!(kc <= PROB_TOL, "{what}: keypoint confidence error {kc:e}");
}

/// A pose detection row: corners, score, class, then `(x, y, conf)` per keypoint.
#[derive(Debug, Clone)]
struct PoseDet {
    b: [f32; 4],
    score: f32,
    class: f32,
    kpt: Vec<f32>,
}

fn pose_rows(t: &Tensor, l: Layout) -> Vec<PoseDet> {
    let cols = (6 + 3 * l.nkpt) as usize;
    assert_eq!(t.size()[1] as usize, cols, "detection row width");
    let v: Vec<f32> = Vec::try_from(t.to_kind(Kind::Float).contiguous().view(-1)).unwrap();
    v.chunks_exact(cols)
        .map(|r| PoseDet {
            b: [r[0], r[1], r[2], r[3]],
            score: r[4],
            class: r[5],
            kpt: r[6..].to_vec(),
        })
        .collect()
}

/// The test's own greedy NMS with the pose code's semantics over one image's decoded rows:
/// objectness above `conf`, score = objectness x class probability (also for one class),
/// best class, class-aware, stable by score, the keypoints kept after the class.
fn plain_pose_nms(
    decoded: &Tensor,
    l: Layout,
    conf: f32,
    iou_thres: f32,
    max_det: usize,
) -> Vec<PoseDet> {
    let no = decoded.size()[1] as usize;
    let no_det = l.no_det() as usize;
    assert_eq!(no, no_det + 3 * l.nkpt as usize);
    let v: Vec<f32> = Vec::try_from(decoded.contiguous().view(-1)).unwrap();
    let mut c: Vec<PoseDet> = Vec::new();
    for r in v.chunks_exact(no) {
        if r[4] <= conf {
            continue;
        }
        let (mut score, mut class) = (f32::MIN, 0usize);
        for (k, p) in r[5..no_det].iter().enumerate() {
            if p * r[4] > score {
                score = p * r[4];
                class = k;
            }
        }
        if score <= conf {
            continue;
        }
        let (cx, cy, w, h) = (r[0], r[1], r[2], r[3]);
        c.push(PoseDet {
            b: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            score,
            class: class as f32,
            kpt: r[no_det..].to_vec(),
        });
    }
    c.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap());
    let mut keep: Vec<PoseDet> = Vec::new();
    let mut dead = vec![false; c.len()];
    for i in 0..c.len() {
        if dead[i] {
            continue;
        }
        keep.push(c[i].clone());
        if keep.len() == max_det {
            break;
        }
        let off = |d: &PoseDet| d.b.map(|x| x + d.class * 4096.0);
        let bi = off(&c[i]);
        for j in i + 1..c.len() {
            if iou(&bi, &off(&c[j])) > iou_thres {
                dead[j] = true;
            }
        }
    }
    keep
}

fn assert_same_pose_detections(what: &str, got: &[PoseDet], want: &[PoseDet], kpt_tol: f32) {
    assert!(!want.is_empty(), "{what}: no box, the test proves nothing");
    assert_eq!(got.len(), want.len(), "{what}: box counts");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.class, w.class, "{what}: class of box {k}");
        let o = iou(&g.b, &w.b);
        assert!(o >= 0.99, "{what}: box {k} IoU {o}");
        assert!(
            (g.score - w.score).abs() <= 1e-4,
            "{what}: score of box {k}"
        );
        let e = g
            .kpt
            .iter()
            .zip(&w.kpt)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(e <= kpt_tol, "{what}: keypoints of box {k} differ by {e}");
    }
}

/// `detect` at conf 0.001 and 0.005 keeps, image by image, exactly what the plain pose NMS
/// keeps over the artifact's own `decoded` output; returns every row kept.
fn detect_matches_plain_nms(
    m: &tch::CModule,
    image: &Tensor,
    decoded: &Tensor,
    l: Layout,
    input: &str,
) -> Vec<PoseDet> {
    let mut kept = Vec::new();
    for conf in [0.001f32, 0.005] {
        let args = [
            IValue::Tensor(image.shallow_clone()),
            IValue::Double(f64::from(conf)),
            IValue::Double(0.45),
            IValue::Int(300),
        ];
        let det = call(m, "detect", &args);
        assert_eq!(det.len(), decoded.size()[0] as usize);
        for (i, d) in det.iter().enumerate() {
            let want = plain_pose_nms(&decoded.get(i as i64), l, conf, 0.45, 300);
            let got = pose_rows(d, l);
            let what = format!("detect {input}[{i}] conf {conf}");
            assert_same_pose_detections(&what, &got, &want, 1e-3);
            kept.extend(got);
        }
    }
    kept
}

/// `forward` (decoded head) and `raw` match the expected outputs on inputs `a` and `b`, and
/// `detect` matches the plain pose NMS there; returns every detection `detect` kept.
fn matches_expected_on_both_inputs(
    m: &tch::CModule,
    exp: &Expected,
    l: Layout,
    what: &str,
) -> Vec<PoseDet> {
    let mut kept = Vec::new();
    for input in ["a", "b"] {
        let image = exp.get(&format!("{input}.input"));
        let x = IValue::Tensor(image.shallow_clone());
        let decoded = call(m, "forward", std::slice::from_ref(&x));
        let want = exp.get(&format!("{input}.decoded"));
        assert_pose_decoded(&format!("{what} {input}"), l, &decoded[0], want);
        let raw = call(m, "raw", std::slice::from_ref(&x));
        assert_raw(&format!("{what} {input}"), &raw, &exp.raw(input));
        kept.extend(detect_matches_plain_nms(m, image, &decoded[0], l, input));
    }
    kept
}

/// Fused, `decoded` head, validated by the converter: forward and raw on both inputs, the
/// metadata, `detect` against the plain pose NMS, and Python on both inputs.
#[test]
fn script_fused_decoded_matches_the_pose_code() {
    let exp = Expected::load(POSE);
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(POSE, dir.path(), "pose.torchscript.pt", exp.size("a"));
    r.validate = true;
    let report = run(&r);
    assert_eq!(
        report.validation.status,
        ValidationStatus::Passed,
        "{:?}",
        report.validation.failed_outputs
    );
    assert_eq!(report.source.task.as_str(), "pose");
    assert_eq!(report.source.nkpt, 17);
    // Keypoint errors are reported on their own.
    let names: Vec<&str> = report
        .validation
        .checks
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for part in ["keypoints.x", "keypoints.y", "keypoints.conf"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("decoded.{part}@"))),
            "no {part} check in {names:?}"
        );
    }

    let m = load(&r.output);
    matches_expected_on_both_inputs(&m, &exp, FIXTURE, "fused");

    let meta = metadata_in_archive(&r.output);
    assert_eq!(meta.task.as_str(), "pose");
    assert_eq!(meta.kpt_shape, Some([17, 3]));
    let names = meta.keypoint_names.unwrap();
    assert_eq!((names.len(), names[0].as_str()), (17, "nose"));
    assert_eq!(meta.skeleton.unwrap().len(), 19);
    assert_eq!(meta.names, ["person"]);

    if python().is_none() {
        tool_missing("no Python with torch for the outside client (YOLOTS_PYTHON or .yolots/venv)");
        return;
    }
    for input in ["a", "b"] {
        let x = exp.get(&format!("{input}.input"));
        let input_path = dir.path().join(format!("{input}.input.f32"));
        write_f32(x, &input_path);
        let want = exp.get(&format!("{input}.decoded"));
        let want_path = dir.path().join(format!("{input}.decoded.f32"));
        write_f32(want, &want_path);
        let spec = serde_json::json!({
            "artifact": r.output,
            "lite": false,
            "method": "forward",
            "input": input_path,
            "input_shape": x.size(),
            "expected": [{"path": want_path, "shape": want.size(), "index": 0, "split": true,
                          "no_det": FIXTURE.no_det()}],
        });
        let answer = python_check(&spec, dir.path());
        let e = &answer["errors"][0];
        let bound = |key: &str, tol: f64| {
            let v = e[key].as_f64().unwrap_or(f64::INFINITY);
            assert!(v <= tol, "python {input} {key}: {answer}");
        };
        bound("boxes", BOX_TOL);
        bound("probs", PROB_TOL);
        bound("kpt_xy", BOX_TOL);
        bound("kpt_conf", PROB_TOL);
        assert_eq!(answer["metadata"]["task"], "pose");
        assert_eq!(answer["metadata"]["kpt_shape"], serde_json::json!([17, 3]));
    }
}

/// Unfused, `raw` head: the pre-activation maps on both inputs (here and in Python), the
/// decoded output through `decoded`.
#[test]
fn script_unfused_raw_matches_the_pose_code() {
    let exp = Expected::load(POSE);
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(POSE, dir.path(), "raw.torchscript.pt", exp.size("a"));
    r.fuse = false;
    r.head = Output::Raw;
    run(&r);
    let m = load(&r.output);
    for input in ["a", "b"] {
        let x = IValue::Tensor(exp.get(&format!("{input}.input")).shallow_clone());
        let raw = call(&m, "forward", std::slice::from_ref(&x));
        assert_raw(&format!("unfused {input}"), &raw, &exp.raw(input));
        let decoded = call(&m, "decoded", &[x]);
        let want = exp.get(&format!("{input}.decoded"));
        assert_pose_decoded(&format!("unfused {input}"), FIXTURE, &decoded[0], want);
    }
    if python().is_none() {
        return;
    }
    for input in ["a", "b"] {
        let x = exp.get(&format!("{input}.input"));
        let input_path = dir.path().join(format!("{input}.input.f32"));
        write_f32(x, &input_path);
        let expected: Vec<serde_json::Value> = exp
            .raw(input)
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let path = dir.path().join(format!("{input}.raw.{i}.f32"));
                write_f32(t, &path);
                serde_json::json!({"path": path, "shape": t.size(), "index": i, "split": false})
            })
            .collect();
        let spec = serde_json::json!({
            "artifact": r.output, "lite": false, "method": "forward",
            "input": input_path, "input_shape": x.size(), "expected": expected,
        });
        let answer = python_check(&spec, dir.path());
        for e in answer["errors"].as_array().unwrap() {
            let v = e["max"].as_f64().unwrap_or(f64::INFINITY);
            assert!(v <= RAW_TOL, "python raw {input}: {answer}");
        }
    }
}

/// Trace mode at the size of `a`, with the detections head (its NMS stays scripted).
#[test]
fn trace_with_detections_matches_the_pose_code_on_a() {
    let exp = Expected::load(POSE);
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(POSE, dir.path(), "traced.torchscript.pt", exp.size("a"));
    r.mode = Mode::Trace;
    r.head = Output::Detections;
    r.conf = 0.005;
    r.validate = true;
    let report = run(&r);
    assert_eq!(report.validation.status, ValidationStatus::Passed);
    let m = load(&r.output);
    let x = IValue::Tensor(exp.get("a.input").shallow_clone());
    let decoded = call(&m, "decoded", std::slice::from_ref(&x));
    assert_pose_decoded("traced a", FIXTURE, &decoded[0], exp.get("a.decoded"));
    let det = call(&m, "forward", &[x]);
    let want = plain_pose_nms(&decoded[0].get(0), FIXTURE, 0.005, 0.45, 300);
    let got = pose_rows(&det[0], FIXTURE);
    assert_same_pose_detections("traced detections", &got, &want, 1e-3);
}

/// `detect_image` on non-square uint8 images (one padded only, one scaled and padded):
/// exactly `detect` on the test's own letterbox of the image, mapped back, keypoints in
/// the original image's pixels and inside it.
#[test]
fn detect_image_maps_keypoints_back_through_the_letterbox() {
    let exp = Expected::load(POSE);
    let dir = tempfile::tempdir().unwrap();
    let size = 256i64;
    let r = request(POSE, dir.path(), "image.torchscript.pt", exp.size("a"));
    assert_eq!(exp.size("a").hw(), [size, size]);
    run(&r);
    let m = load(&r.output);
    for (h0, w0) in [(256i64, 128i64), (200, 333)] {
        // A smooth picture from the fixture's input, resized to h0 x w0.
        let image = Tensor::upsample_bilinear2d(exp.get("a.input"), [h0, w0], false, None, None)
            .multiply_scalar(255.0)
            .round()
            .clamp(0.0, 255.0);
        let hwc = image
            .get(0)
            .permute([1, 2, 0])
            .to_kind(Kind::Uint8)
            .contiguous();
        // The letterbox as the official `letterbox(auto=False)` computes it.
        let gain = (size as f64 / h0 as f64).min(size as f64 / w0 as f64);
        let (nh, nw) = (
            (h0 as f64 * gain).round() as i64,
            (w0 as f64 * gain).round() as i64,
        );
        let top = ((size - nh) as f64 / 2.0 - 0.1).round() as i64;
        let left = ((size - nw) as f64 / 2.0 - 0.1).round() as i64;
        let padded = {
            let canvas = Tensor::full([1, 3, size, size], 114.0, (Kind::Float, tch::Device::Cpu));
            let chw = hwc.permute([2, 0, 1]).unsqueeze(0).to_kind(Kind::Float);
            let body = if (nh, nw) != (h0, w0) {
                Tensor::upsample_bilinear2d(&chw, [nh, nw], false, None, None)
                    .round()
                    .clamp(0.0, 255.0)
            } else {
                chw
            };
            canvas.narrow(2, top, nh).narrow(3, left, nw).copy_(&body);
            canvas / 255.0
        };
        let (pad_x, pad_y) = (
            (size as f64 - w0 as f64 * gain) / 2.0,
            (size as f64 - h0 as f64 * gain) / 2.0,
        );
        let conf = 0.001;
        let args = |t: Tensor| {
            [
                IValue::Tensor(t),
                IValue::Double(conf),
                IValue::Double(0.45),
                IValue::Int(300),
            ]
        };
        let got = pose_rows(
            &call(&m, "detect_image", &args(hwc.shallow_clone()))[0],
            FIXTURE,
        );
        let on_letterbox = pose_rows(&call(&m, "detect", &args(padded))[0], FIXTURE);
        assert!(
            !got.is_empty(),
            "{h0}x{w0}: no detection, the test proves nothing"
        );
        assert_eq!(got.len(), on_letterbox.len(), "{h0}x{w0}: box counts");
        let back = |v: f32, pad: f64, limit: i64| {
            (((f64::from(v) - pad) / gain) as f32).clamp(0.0, limit as f32)
        };
        for (k, (g, l)) in got.iter().zip(&on_letterbox).enumerate() {
            let what = format!("{h0}x{w0} box {k}");
            let want_box = [
                back(l.b[0], pad_x, w0),
                back(l.b[1], pad_y, h0),
                back(l.b[2], pad_x, w0),
                back(l.b[3], pad_y, h0),
            ];
            for c in 0..4 {
                assert!(
                    (g.b[c] - want_box[c]).abs() <= 1e-3,
                    "{what}: box {:?} vs {want_box:?}",
                    g.b
                );
            }
            assert_eq!((g.score, g.class), (l.score, l.class), "{what}");
            for j in 0..FIXTURE.nkpt as usize {
                let (gx, gy, gc) = (g.kpt[3 * j], g.kpt[3 * j + 1], g.kpt[3 * j + 2]);
                let wx = back(l.kpt[3 * j], pad_x, w0);
                let wy = back(l.kpt[3 * j + 1], pad_y, h0);
                assert!(
                    (gx - wx).abs() <= 1e-3 && (gy - wy).abs() <= 1e-3,
                    "{what}: keypoint {j}"
                );
                assert!((0.0..=w0 as f32).contains(&gx) && (0.0..=h0 as f32).contains(&gy));
                assert_eq!(gc, l.kpt[3 * j + 2], "{what}: keypoint {j} confidence");
            }
        }
    }
}

/// Every option on the pose fixture, each conversion proved by the converter's own
/// validation (keypoint checks included): float16, freeze, inference, mobile, all heads,
/// trace.
#[test]
fn every_option_converts_and_validates_a_pose_model() {
    use yolots_converter::{Optimize, Precision};
    let exp = Expected::load(POSE);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            Mode::Script,
            Output::Decoded,
            Precision::Fp16,
            Optimize::None,
        ),
        (
            Mode::Script,
            Output::Detections,
            Precision::Fp32,
            Optimize::Freeze,
        ),
        (
            Mode::Script,
            Output::Raw,
            Precision::Fp32,
            Optimize::Inference,
        ),
        (
            Mode::Script,
            Output::Decoded,
            Precision::Fp32,
            Optimize::Mobile,
        ),
        (
            Mode::Trace,
            Output::Detections,
            Precision::Fp16,
            Optimize::None,
        ),
    ];
    for (i, (mode, head, precision, optimize)) in cases.into_iter().enumerate() {
        let what = format!("{mode} {head} {precision} {optimize}");
        let mut r = request(POSE, dir.path(), &format!("case{i}.pt"), exp.size("a"));
        r.mode = mode;
        r.head = head;
        r.precision = precision;
        r.optimize = optimize;
        r.conf = 0.005;
        r.validate = true;
        let report = run(&r);
        assert_eq!(
            report.validation.status,
            ValidationStatus::Passed,
            "{what}: {:?}",
            report.validation.failed_outputs
        );
        let checks = &report.validation.checks;
        assert!(
            checks
                .iter()
                .any(|c| c.name.starts_with("decoded.keypoints.conf@")),
            "{what}: no keypoint check"
        );
        if head == Output::Detections {
            let d = checks
                .iter()
                .find(|c| c.name.starts_with("detections.0@"))
                .unwrap();
            assert_eq!(d.shape[1], 6 + 3 * 17, "{what}");
            assert!(
                d.detail.as_deref().unwrap_or("").contains("keypoint"),
                "{what}"
            );
        }
    }
}

/// A pose model the test writes itself with `tests/python/make_pose.py` (our own module
/// classes under the official names): 2 classes, 5 keypoints, the single-convolution
/// keypoint branch, a depth-wise `Conv` in the backbone, training style with `ema` (whose
/// weights differ from `model`'s). Its expected outputs come from the script's own eager
/// network and a decode written from the format for any `nc` and `nkpt`, not from the
/// official decode (hard-coded to 17 keypoints and one class).
#[test]
fn a_custom_pose_model_converts_and_validates() {
    const CUSTOM: Layout = Layout { nc: 2, nkpt: 5 };
    let python = python().expect("the setup's Python environment (.yolots/venv) is missing");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("custom-pose.pt");
    let made = std::process::Command::new(python)
        .arg(manifest_dir().join("tests/python/make_pose.py"))
        .args(["--preset", "custom", "--out"])
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "make_pose.py: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let exp = Expected::from_file(&dir.path().join("custom-pose.expected.safetensors"));
    assert_eq!(exp.meta["nkpt"], 5);
    assert_eq!(exp.meta["nc"], 2);

    let mut r = yolots_converter::ConvertRequest::new(&source, dir.path().join("custom.pt"));
    r.img_size = exp.size("a");
    r.device = yolots_converter::DeviceChoice::Cpu;
    r.latency_runs = 0;
    let report = run(&r);
    assert_eq!(
        report.validation.status,
        ValidationStatus::Passed,
        "{:?}",
        report.validation.failed_outputs
    );
    assert_eq!(report.source.model, "ema");
    assert_eq!((report.source.classes, report.source.nkpt), (2, 5));
    assert_eq!(report.source.names, exp.names());

    let m = load(&r.output);
    let kept = matches_expected_on_both_inputs(&m, &exp, CUSTOM, "custom");
    let classes_kept: std::collections::BTreeSet<i64> =
        kept.iter().map(|d| d.class as i64).collect();
    // The best class per box, not class 0 alone (the pose code's NMS looks at class 0).
    assert_eq!(classes_kept.into_iter().collect::<Vec<_>>(), [0, 1]);
    let meta = metadata_in_archive(&r.output);
    assert_eq!(meta.kpt_shape, Some([5, 3]));
    assert_eq!(meta.keypoint_names, None);
    assert_eq!(meta.skeleton, None);
}
