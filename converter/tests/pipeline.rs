//! The pipeline end to end on real checkpoints: its own validation and report, float16,
//! the mobile lite interpreter, and the errors a caller maps to exit codes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tch::{IValue, Kind};
use yolots_converter::{
    ConvertError, MobileModule, Optimize, OutputKind, Perturbation, Precision, ReportStatus, Stage,
    ValidationStatus, convert,
};

#[test]
fn validation_and_report_on_a_training_checkpoint() {
    let name = "yolov7-w25-c3";
    let exp = Expected::load(name);
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(name, dir.path(), "m.torchscript", exp.size("a"));
    r.validate = true;
    r.latency_runs = 2;
    r.latency_budget_s = None;
    r.report = Some(dir.path().join("report.json"));
    let mut stages = Vec::new();
    let report = convert(&r, &mut |e| stages.push(e.stage)).unwrap();
    assert_eq!(report.status, ReportStatus::Passed);
    assert_eq!(report.validation.status, ValidationStatus::Passed);
    assert_eq!(report.source.classes, 3);
    assert_eq!(report.source.names, exp.names());
    assert_eq!(report.source.head, "IDetect");
    assert_eq!(report.source.model, "ema");
    assert_eq!(report.source.sha256.len(), 64);
    assert_eq!(report.artifact.sha256.len(), 64);
    assert_eq!(report.artifact.format, "torchscript");
    // Both sizes, raw and decoded, plus the detect_image smoke check.
    let kinds: Vec<OutputKind> = report.validation.checks.iter().map(|c| c.kind).collect();
    for k in [
        OutputKind::Raw,
        OutputKind::Boxes,
        OutputKind::Probabilities,
        OutputKind::Smoke,
    ] {
        assert!(kinds.contains(&k), "{k:?} not checked");
    }
    assert!(
        report
            .validation
            .checks
            .iter()
            .any(|c| c.input_shape[0] == 2)
    );
    let latency = report.latency.as_ref().unwrap();
    assert_eq!(latency.runs, 2);
    assert!(latency.p50_ms > 0.0 && latency.p90_ms >= latency.p50_ms);
    for s in [
        Stage::Reading,
        Stage::Describing,
        Stage::Building,
        Stage::Fusing,
        Stage::Scripting,
        Stage::Saving,
        Stage::Validating,
        Stage::Timing,
        Stage::Done,
    ] {
        assert!(stages.contains(&s), "no {s} event");
    }
    // The file reads back into the typed report (floats aside, which JSON may round).
    let written: yolots_converter::ConversionReport =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(written.status, report.status);
    assert_eq!(written.artifact, report.artifact);
    assert_eq!(written.source, report.source);
    let names = |r: &yolots_converter::ConversionReport| {
        r.validation
            .checks
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&written), names(&report));
}

#[test]
fn float16_artifacts_validate_on_cpu() {
    let name = "yolov7-tiny";
    let exp = Expected::load(name);
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(name, dir.path(), "half.torchscript", exp.size("a"));
    r.precision = Precision::Fp16;
    r.validate = true;
    let report = convert(&r, &mut |_| {}).unwrap();
    assert_eq!(
        report.status,
        ReportStatus::Passed,
        "{:#?}",
        report.validation
    );
    let m = load(&r.output);
    let out = call(
        &m,
        "forward",
        &[IValue::Tensor(exp.get("a.input").to_kind(Kind::Half))],
    );
    assert_eq!(out[0].kind(), Kind::Half);

    // Float32 images, what a caller has at hand, are cast to the artifact's precision.
    let out = call(
        &m,
        "decoded",
        &[IValue::Tensor(exp.get("a.input").shallow_clone())],
    );
    assert_eq!(out[0].kind(), Kind::Half);

    // A size that is not a multiple of the largest stride, or a tensor that is not a batch
    // of images, is refused with a message that says so.
    for (bad, words) in [
        (
            tch::Tensor::zeros([1, 3, 37, 64], tch::kind::FLOAT_CPU),
            "multiples of 32",
        ),
        (
            tch::Tensor::zeros([3, 64, 64], tch::kind::FLOAT_CPU),
            "[B, 3, H, W]",
        ),
    ] {
        let error = m
            .method_is::<IValue>("decoded", &[IValue::Tensor(bad)])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains(words), "{error}");
    }
}

#[test]
fn mobile_artifact_loads_in_the_lite_interpreter_and_matches() {
    let name = "yolov7-deploy-w25-c3";
    let exp = Expected::load(name);
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(name, dir.path(), "m.ptl", exp.size("a"));
    r.optimize = Optimize::Mobile;
    r.validate = true;
    let report = convert(&r, &mut |_| {}).unwrap();
    assert_eq!(
        report.status,
        ReportStatus::Passed,
        "{:#?}",
        report.validation
    );
    assert_eq!(report.artifact.format, "lite");
    assert!(report.validation.loaded_with.contains("lite"));

    let mut m = MobileModule::load(&r.output).unwrap();
    let got = m.forward(exp.get("a.input")).unwrap();
    assert_decoded("lite a", &got[0], exp.get("a.decoded"));

    if python().is_none() {
        return;
    }
    write_f32(exp.get("b.input"), &dir.path().join("b.f32"));
    write_f32(exp.get("b.decoded"), &dir.path().join("bd.f32"));
    let spec = serde_json::json!({
        "artifact": r.output, "lite": true, "method": "forward",
        "input": dir.path().join("b.f32"), "input_shape": exp.get("b.input").size(),
        "expected": [{"path": dir.path().join("bd.f32"), "shape": exp.get("b.decoded").size(),
                      "index": 0, "split": true}],
    });
    let answer = python_check(&spec, dir.path());
    let e = &answer["errors"][0];
    assert!(
        e["boxes"].as_f64().unwrap() <= BOX_TOL,
        "python lite b: {answer}"
    );
    assert!(
        e["probs"].as_f64().unwrap() <= PROB_TOL,
        "python lite b: {answer}"
    );
}

#[test]
fn a_checkpoint_the_reader_refuses_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pt");
    std::fs::write(&bad, b"this is not a checkpoint at all").unwrap();
    let truncated = dir.path().join("truncated.pt");
    let bytes = std::fs::read(checkpoint("yolov7-tiny")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    for path in [bad, truncated] {
        let mut r = request(
            "yolov7-tiny",
            dir.path(),
            "out.torchscript",
            Default::default(),
        );
        r.input = path.clone();
        match convert(&r, &mut |_| {}) {
            Err(ConvertError::Input(e)) => assert!(!e.to_string().is_empty()),
            other => panic!("{}: expected an input error, got {other:?}", path.display()),
        }
        assert!(!dir.path().join("out.torchscript").exists());
    }
}

#[test]
fn tampered_weights_fail_validation_and_the_report_names_the_output() {
    let name = "yolov7-deploy-w25-c3";
    let exp = Expected::load(name);
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(name, dir.path(), "m.torchscript", exp.size("a"));
    r.validate = true;
    r.report = Some(dir.path().join("report.json"));
    // The head's level-1 bias changed after the reference was built.
    r.perturb = Some(Perturbation {
        parameter: "model.105.m.1.bias".into(),
        delta: 0.05,
    });
    match convert(&r, &mut |_| {}) {
        Err(ConvertError::ValidationFailed {
            report,
            failed_outputs,
        }) => {
            assert!(
                failed_outputs.iter().any(|o| o.starts_with("raw.1@")),
                "{failed_outputs:?}"
            );
            assert!(
                !failed_outputs.iter().any(|o| o.starts_with("raw.0@")),
                "{failed_outputs:?}"
            );
            assert_eq!(report.status, ReportStatus::Failed);
            let written: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                    .unwrap();
            assert_eq!(written["status"], "failed");
            assert!(
                written["validation"]["failed_outputs"]
                    .to_string()
                    .contains("raw.1@")
            );
        }
        other => panic!("expected a validation failure, got {other:?}"),
    }
}
