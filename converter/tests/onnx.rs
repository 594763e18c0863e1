//! ONNX artifacts of every fixture (the pose fixture too), run by the PyPI `onnxruntime`
//! as an outside client on both official inputs (batch 1 square, batch 2 non-square):
//! `decoded` and `raw` against the official outputs, `detections` against the test's own
//! plain NMS over the same file's `decoded` value, float16 files against the official
//! outputs with float16 tolerances, every file through `onnx.checker` (full check). Then
//! the converter's own proof (ONNX Runtime loaded as a library), its refusals, and a
//! missing ONNX Runtime.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tch::{Kind, Tensor};
use yolots_converter::{
    ConvertError, ConvertRequest, Format, Mode, Optimize, Output, Precision, ReportStatus,
    ValidationStatus,
};

const POSE: &str = "pose/yolov7-w6-pose-w25";

/// The Python with `onnxruntime` and `onnx` that setup installs.
fn onnx_python() -> Option<PathBuf> {
    std::env::var_os("YOLOTS_ONNX_PYTHON").map(PathBuf::from)
}

/// Whether the converter can load ONNX Runtime (setup names its library).
fn runtime_available() -> bool {
    std::env::var_os(yolots_converter::ONNXRUNTIME_VAR).is_some()
}

/// An ONNX request at the size of input `a`, without the converter's own proof.
fn onnx_request(name: &str, dir: &Path, file: &str, exp: &Expected) -> ConvertRequest {
    let mut r = request(name, dir, file, exp.size("a"));
    r.format = Format::Onnx;
    r
}

/// What the outside client got from one file: per input, `(output name, tensor)`.
struct ClientRun {
    metadata: serde_json::Map<String, serde_json::Value>,
    input_dims: Vec<serde_json::Value>,
    outputs: Vec<Vec<(String, Tensor)>>,
}

impl ClientRun {
    fn get(&self, input: usize, name: &str) -> &Tensor {
        self.outputs[input]
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("no output {name}"))
    }
}

fn read_f32(path: &str, shape: &[i64]) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    Tensor::from_data_size(&bytes, shape, Kind::Float)
}

/// Runs `check_onnx.py` on `models` (file, inner values to expose) and both inputs.
fn client(dir: &Path, models: &[(&Path, &[&str])], exp: &Expected) -> Vec<ClientRun> {
    let python = onnx_python().unwrap();
    let inputs: Vec<serde_json::Value> = ["a", "b"]
        .iter()
        .map(|input| {
            let t = exp.get(&format!("{input}.input"));
            let path = dir.join(format!("{input}.input.f32"));
            write_f32(t, &path);
            serde_json::json!({"path": path, "shape": t.size()})
        })
        .collect();
    let models: Vec<serde_json::Value> = models
        .iter()
        .map(|(path, expose)| serde_json::json!({"path": path, "expose": expose}))
        .collect();
    let spec = serde_json::json!({"models": models, "inputs": inputs, "out_dir": dir});
    let spec_path = dir.join("onnx-spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let out = Command::new(python)
        .arg(manifest_dir().join("tests/python/check_onnx.py"))
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnxruntime client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    answer["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["checker"], "ok");
            let outputs = m["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|run| {
                    run.as_array()
                        .unwrap()
                        .iter()
                        .map(|o| {
                            let shape: Vec<i64> =
                                serde_json::from_value(o["shape"].clone()).unwrap();
                            let t = read_f32(o["path"].as_str().unwrap(), &shape);
                            (o["name"].as_str().unwrap().to_owned(), t)
                        })
                        .collect()
                })
                .collect();
            ClientRun {
                metadata: m["metadata"].as_object().unwrap().clone(),
                input_dims: m["input_dims"].as_array().unwrap().clone(),
                outputs,
            }
        })
        .collect()
}

/// Boxes, scores and (for pose rows) keypoint x, y and confidences within `(box, prob)`.
fn assert_rows(what: &str, nc: i64, got: &Tensor, want: &Tensor, (box_tol, prob_tol): (f64, f64)) {
    assert_eq!(got.size(), want.size(), "{what}: shapes");
    let no_det = nc + 5;
    let no = want.size()[2];
    let boxes = max_abs(&got.narrow(2, 0, 4), &want.narrow(2, 0, 4));
    let scores = max_abs(&got.narrow(2, 4, nc + 1), &want.narrow(2, 4, nc + 1));
    assert!(boxes <= box_tol, "{what}: box error {boxes:e} px");
    assert!(scores <= prob_tol, "{what}: probability error {scores:e}");
    if no > no_det {
        let part = |t: &Tensor, start: i64| t.slice(2, start, None, 3);
        let kx = max_abs(&part(got, no_det), &part(want, no_det));
        let ky = max_abs(&part(got, no_det + 1), &part(want, no_det + 1));
        let kc = max_abs(&part(got, no_det + 2), &part(want, no_det + 2));
        assert!(
            kx.max(ky) <= box_tol,
            "{what}: keypoint error {kx:e}, {ky:e} px"
        );
        assert!(kc <= prob_tol, "{what}: keypoint confidence error {kc:e}");
    }
}

/// The `detections` rows of image `image`: `(corners, score, class, keypoints)`.
fn detections_of(t: &Tensor, image: usize) -> Vec<(Det, Vec<f32>)> {
    let columns = t.size()[1] as usize;
    let v: Vec<f32> = Vec::try_from(t.contiguous().view(-1)).unwrap();
    v.chunks_exact(columns)
        .filter(|r| r[0] as usize == image)
        .map(|r| {
            let det = Det {
                b: [r[1], r[2], r[3], r[4]],
                score: r[5],
                class: r[6],
            };
            (det, r[7..].to_vec())
        })
        .collect()
}

/// Every image's detections equal the plain NMS over the same run's `decoded`, in order,
/// keypoints included; returns how many boxes were compared.
fn assert_detections_match_plain_nms(
    what: &str,
    nc: usize,
    run: &ClientRun,
    input: usize,
    conf: f32,
) -> usize {
    let decoded = run.get(input, "decoded");
    let detections = run.get(input, "detections");
    let no_det = (nc + 5) as i64;
    let mut compared = 0;
    for image in 0..decoded.size()[0] {
        let rows = decoded.get(image);
        let kept = plain_nms_kept(&rows, nc, conf, 0.45, 300);
        let want: Vec<Det> = kept.iter().map(|(_, d)| *d).collect();
        let got = detections_of(detections, image as usize);
        let got_dets: Vec<Det> = got.iter().map(|(d, _)| *d).collect();
        let tag = format!("{what} image {image}");
        if want.is_empty() {
            assert!(
                got_dets.is_empty(),
                "{tag}: {} boxes, none wanted",
                got_dets.len()
            );
            continue;
        }
        compared += want.len();
        assert_same_detections(&tag, &got_dets, &want);
        for ((_, got_kpts), (index, _)) in got.iter().zip(&kept) {
            let want_kpts: Vec<f32> =
                Vec::try_from(rows.get(*index as i64).slice(0, no_det, None, 1)).unwrap();
            assert_eq!(got_kpts, &want_kpts, "{tag}: keypoints of row {index}");
        }
    }
    compared
}

fn matches_official_outputs(name: &str) {
    let Some(_) = onnx_python() else {
        tool_missing("YOLOTS_ONNX_PYTHON is not set");
        return;
    };
    let exp = Expected::load(name);
    let nc = exp.get("a.decoded").size()[2] as usize - 5 - 3 * nkpt_of(&exp);
    let dir = tempfile::tempdir().unwrap();
    let mut decoded = onnx_request(name, dir.path(), "decoded.onnx", &exp);
    decoded.head = Output::Decoded;
    let mut raw = onnx_request(name, dir.path(), "raw.onnx", &exp);
    raw.head = Output::Raw;
    let detections = |file: &str, conf: f64| {
        let mut r = onnx_request(name, dir.path(), file, &exp);
        r.head = Output::Detections;
        r.conf = conf;
        r
    };
    let (loose, strict) = (
        detections("det-0.001.onnx", 0.001),
        detections("det-0.005.onnx", 0.005),
    );
    for r in [&decoded, &raw, &loose, &strict] {
        let report = run(r);
        assert_eq!(report.artifact.format, "onnx");
    }
    let expose: &[&str] = &["decoded"];
    let runs = client(
        dir.path(),
        &[
            (&decoded.output, &[]),
            (&raw.output, &[]),
            (&loose.output, expose),
            (&strict.output, expose),
        ],
        &exp,
    );
    let mut compared = 0;
    for (i, input) in ["a", "b"].iter().enumerate() {
        let what = format!("{name} {input}");
        let want = exp.get(&format!("{input}.decoded"));
        assert_rows(
            &what,
            nc as i64,
            runs[0].get(i, "decoded"),
            want,
            (BOX_TOL, PROB_TOL),
        );
        let raw_got: Vec<Tensor> = (0..exp.raw(input).len())
            .map(|l| runs[1].get(i, &format!("raw_{l}")).shallow_clone())
            .collect();
        assert_raw(&what, &raw_got, &exp.raw(input));
        for (run, conf) in [(&runs[2], 0.001), (&runs[3], 0.005)] {
            let what = format!("{what} conf {conf}");
            compared += assert_detections_match_plain_nms(&what, nc, run, i, conf);
        }
    }
    // The random weights of the tiny fixture score every box of its 80 classes below
    // 0.001; the others keep hundreds.
    if name != "yolov7-tiny" {
        assert!(
            compared > 0,
            "{name}: no box at all, the test proves nothing"
        );
    }
    let meta: yolots_converter::ArtifactMetadata =
        serde_json::from_str(runs[0].metadata["yolots.json"].as_str().unwrap()).unwrap();
    assert_eq!(meta.names, exp.names());
    assert_eq!(meta.strides, exp.strides());
    assert_eq!(meta.artifact_format, Format::Onnx);
    assert_eq!(runs[0].metadata["nc"], nc.to_string());
    assert_eq!(runs[0].metadata["head"], "decoded");
    assert!(runs[0].metadata["source_sha256"].as_str().unwrap().len() == 64);
    assert_eq!(
        runs[0].input_dims,
        [
            serde_json::json!("batch"),
            serde_json::json!(3),
            serde_json::json!("height"),
            serde_json::json!("width")
        ]
    );
}

fn nkpt_of(exp: &Expected) -> usize {
    exp.meta
        .get("nkpt")
        .and_then(serde_json::Value::as_u64)
        .map_or(0, |n| n as usize)
}

#[test]
fn every_fixture_runs_in_onnxruntime_as_the_official_code() {
    for name in MODELS {
        matches_official_outputs(name);
    }
}

#[test]
fn the_pose_fixture_runs_in_onnxruntime_as_the_pose_code() {
    matches_official_outputs(POSE);
}

/// Float16 files: about half the float32 size, inputs and outputs still float32, within
/// the float16 tolerances of the official outputs; the converter's own proof passes.
#[test]
fn fp16_files_are_half_the_size_and_within_float16_tolerances() {
    if onnx_python().is_none() || !runtime_available() {
        tool_missing("no ONNX Runtime (YOLOTS_ONNXRUNTIME or the library beside the binaries)");
        return;
    }
    for name in ["yolov7-tiny", POSE] {
        let exp = Expected::load(name);
        let nc = exp.get("a.decoded").size()[2] as usize - 5 - 3 * nkpt_of(&exp);
        let dir = tempfile::tempdir().unwrap();
        let full = onnx_request(name, dir.path(), "fp32.onnx", &exp);
        let mut half = onnx_request(name, dir.path(), "fp16.onnx", &exp);
        half.precision = Precision::Fp16;
        half.validate = true;
        let full_size = run(&full).artifact.size_bytes as f64;
        let report = run(&half);
        assert_eq!(report.validation.status, ValidationStatus::Passed, "{name}");
        let ratio = report.artifact.size_bytes as f64 / full_size;
        assert!(
            (0.45..0.56).contains(&ratio),
            "{name}: fp16/fp32 size {ratio}"
        );
        let runs = client(dir.path(), &[(&half.output, &[])], &exp);
        for (i, input) in ["a", "b"].iter().enumerate() {
            let want = exp.get(&format!("{input}.decoded"));
            let got = runs[0].get(i, "decoded");
            // Boxes 1 px + 2 % of the coordinate, probabilities 0.01 (the converter's
            // float16 tolerances); the relative part is applied through a looser bound.
            let box_tol = 1.0 + 0.02 * want.narrow(2, 0, 4).abs().max().double_value(&[]);
            assert_rows(
                &format!("{name} fp16 {input}"),
                nc as i64,
                got,
                want,
                (box_tol, 1e-2),
            );
        }
    }
}

/// The converter's proof of an ONNX file: every stage checked on both inputs, timed, and
/// reported with the format.
#[test]
fn the_converter_validates_and_times_its_onnx_files() {
    if !runtime_available() {
        tool_missing("no ONNX Runtime (YOLOTS_ONNXRUNTIME or the library beside the binaries)");
        return;
    }
    let exp = Expected::load("yolov7-tiny");
    let dir = tempfile::tempdir().unwrap();
    let mut r = onnx_request("yolov7-tiny", dir.path(), "tiny.onnx", &exp);
    r.head = Output::Detections;
    r.conf = 0.001;
    r.validate = true;
    r.latency_runs = 2;
    let report = run(&r);
    assert_eq!(report.status, ReportStatus::Passed);
    assert_eq!(report.options.format, Format::Onnx);
    assert_eq!(report.artifact.methods, ["detections"]);
    // The release the library reports, not its build string.
    let runtime = format!(
        "ONNX Runtime {} (CPU)",
        yolots_converter::ONNXRUNTIME_VERSION
    );
    assert!(
        report.validation.loaded_with.starts_with(&runtime),
        "{}",
        report.validation.loaded_with
    );
    let names: Vec<&str> = report
        .validation
        .checks
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for part in [
        "raw.0@2x",
        "decoded.boxes@2x",
        "detections.1@2x",
        "raw.2@1x",
        "detections.0@1x",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(part)),
            "no {part} check in {names:?}"
        );
    }
    assert_eq!(report.validation.inputs.len(), 2);
    assert_eq!(report.validation.inputs[0].shape[0], 2);
    let latency = report.latency.unwrap();
    assert_eq!(latency.runs, 2);
    assert_eq!(latency.input_shape, exp.get("a.input").size());
    // Timing goes on in validation's session: its two runs were the warm-up.
    assert_eq!(latency.warmup_calls.len(), 2, "{:?}", latency.warmup_calls);
    assert!(latency.warmup_calls[0].starts_with("run@2x3x"));
    assert!(latency.warmup_calls[1].starts_with("run@1x3x"));

    // Without validation the file as written is loaded and warmed up at the timed size.
    let mut unvalidated = onnx_request("yolov7-tiny", dir.path(), "timed.onnx", &exp);
    unvalidated.validate = false;
    unvalidated.latency_runs = 1;
    let latency = run(&unvalidated).latency.unwrap();
    assert_eq!(latency.runs, 1);
    assert_eq!(latency.warmup_calls.len(), 1, "{:?}", latency.warmup_calls);
    assert!(latency.warmup_calls[0].starts_with("run@1x3x"));

    // A perturbed weight makes the file diverge, and the report says where.
    let mut bad = onnx_request("yolov7-tiny", dir.path(), "bad.onnx", &exp);
    bad.validate = true;
    bad.perturb = Some(yolots_converter::Perturbation {
        parameter: "model.77.m.0.weight".into(),
        delta: 0.5,
    });
    match yolots_converter::convert(&bad, &mut |_| {}) {
        Err(ConvertError::ValidationFailed { failed_outputs, .. }) => {
            assert!(
                failed_outputs.iter().any(|o| o.starts_with("raw.0@")),
                "{failed_outputs:?}"
            );
        }
        other => panic!("a perturbed file passed: {:?}", other.map(|r| r.status)),
    }
}

#[test]
fn onnx_refuses_what_only_torchscript_does() {
    let exp = Expected::load("yolov7-tiny");
    let dir = tempfile::tempdir().unwrap();
    let mut trace = onnx_request("yolov7-tiny", dir.path(), "t.onnx", &exp);
    trace.mode = Mode::Trace;
    let mut frozen = onnx_request("yolov7-tiny", dir.path(), "f.onnx", &exp);
    frozen.optimize = Optimize::Freeze;
    for r in [trace, frozen] {
        match yolots_converter::convert(&r, &mut |_| {}) {
            Err(ConvertError::Options(message)) => assert!(message.contains("TorchScript")),
            other => panic!("accepted: {:?}", other.map(|r| r.status)),
        }
        assert!(!r.output.exists());
    }
}

/// Images whose height or width is not a multiple of the largest stride are refused by the
/// ONNX file itself, and ONNX Runtime's error says so (it quotes the checking node's name)
/// rather than failing deep inside at a Concat; a good size still runs. Float16 files take
/// the float32 images every caller has.
#[test]
fn an_onnx_file_names_the_stride_when_the_image_size_is_wrong() {
    let python = onnx_python().expect("YOLOTS_ONNX_PYTHON: cargo xtask setup installs it");
    let exp = Expected::load("yolov7-tiny");
    let dir = tempfile::tempdir().unwrap();
    let mut r = onnx_request("yolov7-tiny", dir.path(), "m.onnx", &exp);
    r.precision = Precision::Fp16;
    run(&r);
    let out = Command::new(python)
        .arg(manifest_dir().join("tests/python/run_sizes.py"))
        .arg(&r.output)
        .args(["64x96", "37x64", "64x70"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "64 96 ran");
    for line in &lines[1..] {
        assert!(
            line.contains("refused")
                && line.contains("image height and width must be multiples of 32"),
            "{line}"
        );
    }
}

/// Without ONNX Runtime, an ONNX conversion that validates or times ends in
/// `onnxruntime_error` before any work (nothing is written), one without validation or
/// timing needs none.
#[test]
fn a_missing_onnx_runtime_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_yolots-converter");
    let convert = |extra: &[&str]| {
        Command::new(exe)
            .args([
                "convert",
                "--format",
                "onnx",
                "--device",
                "cpu",
                "--progress",
                "json",
            ])
            .arg(checkpoint("yolov7-tiny"))
            .arg("-o")
            .arg(dir.path().join("m.onnx"))
            .args(extra)
            .env(
                yolots_converter::ONNXRUNTIME_VAR,
                dir.path().join("missing.so"),
            )
            .output()
            .unwrap()
    };
    let out = convert(&["--latency-runs", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["code"], "onnxruntime_error", "{stdout}");
    assert!(last["message"].as_str().unwrap().contains("missing.so"));
    assert_eq!(stdout.lines().count(), 1, "work began first: {stdout}");
    assert!(
        !dir.path().join("m.onnx").exists(),
        "an unvalidated file was left"
    );
    let out = convert(&["--no-validate", "--latency-runs", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("m.onnx").is_file());
}
