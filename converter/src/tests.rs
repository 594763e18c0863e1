//! Pipeline tests on the synthetic model (every layer kind, random weights): each
//! conversion is validated by the pipeline itself against the eager network.

use tch::{Device, Kind, Tensor};

use crate::clock::Clock;
use crate::convert::convert_model;
use crate::error::ConvertError;
use crate::layers::Placement;
use crate::network::Network;
use crate::options::*;
use crate::report::source_facts;
use crate::report::{ConversionReport, ReportStatus};
use crate::testing::synthetic_model;

fn request(dir: &tempfile::TempDir, name: &str) -> ConvertRequest {
    let mut r = ConvertRequest::new("synthetic.pt", dir.path().join(name));
    r.img_size = ImageSize::new(64, 96);
    r.device = DeviceChoice::Cpu;
    r.latency_runs = 2;
    r
}

fn run(r: &ConvertRequest, nc: usize, implicit: bool) -> crate::Result<ConversionReport> {
    let (desc, weights) = synthetic_model(nc, implicit, 7);
    let source = source_facts(&desc, "synthetic.pt", 0, "0".repeat(64));
    let mut events = Vec::new();
    let mut progress = |e: &crate::ProgressEvent| events.push(e.clone());
    let mut clock = Clock::new(&mut progress);
    let report = convert_model(&desc, &weights, source, r, &mut clock);
    drop(clock);
    if report.is_ok() {
        assert_eq!(events.last().map(|e| e.stage), Some(crate::Stage::Done));
    }
    report
}

fn assert_passed(report: &ConversionReport) {
    assert_eq!(
        report.status,
        ReportStatus::Passed,
        "{}",
        serde_json::to_string_pretty(&report.validation).unwrap()
    );
}

#[test]
fn fusion_keeps_the_eager_outputs() {
    let (desc, weights) = synthetic_model(3, true, 1);
    let plain = Network::build(&desc, &weights, false, Placement::CPU_F32).unwrap();
    let fused = Network::build(&desc, &weights, true, Placement::CPU_F32).unwrap();
    let x = crate::validate::test_input(2, [64, 96]).unwrap();
    let a = plain.forward_decoded(&x).unwrap();
    let b = fused.forward_decoded(&x).unwrap();
    assert_eq!(a.size(), vec![2, 3 * (8 * 12 + 4 * 6 + 2 * 3), 8]);
    let err = (a - b).abs().max().double_value(&[]);
    assert!(err < 1e-3, "fused vs unfused decoded: {err}");
}

#[test]
fn named_tensors_mirror_the_source() {
    let (desc, weights) = synthetic_model(3, true, 1);
    let net = Network::build(&desc, &weights, false, Placement::CPU_F32).unwrap();
    let names: Vec<String> = net.named().into_iter().map(|(n, _)| n).collect();
    for expected in [
        "model.1.conv.weight",
        "model.1.bn.running_var",
        "model.3.cv2.bn.weight",
        "model.4.rbr_identity.weight",
        "model.4.rbr_dense.0.weight",
        "model.4.rbr_1x1.1.running_mean",
        "model.9.cv7.conv.weight",
        "model.15.m.2.bias",
        "model.15.ia.0.implicit",
        "model.15.im.1.implicit",
        "model.15.anchor_grid",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
}

#[test]
fn script_artifacts_validate_fused_and_unfused() {
    let dir = tempfile::tempdir().unwrap();
    for fuse in [true, false] {
        let mut r = request(&dir, &format!("s{fuse}.torchscript"));
        r.fuse = fuse;
        let report = run(&r, 3, true).unwrap();
        assert_passed(&report);
        assert_eq!(report.artifact.fused, fuse);
        // Both sizes were checked: every output at the small second size (here 3S x 2S,
        // the conversion size being 2S x 3S), what `forward` returns at the conversion size.
        let names: Vec<&str> = report
            .validation
            .checks
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(names.contains(&"raw.2@2x96x64"), "{names:?}");
        assert!(names.contains(&"decoded.boxes@2x96x64"), "{names:?}");
        assert!(names.contains(&"decoded.boxes@1x64x96"), "{names:?}");
        assert!(report.latency.is_some());
    }
}

#[test]
fn validation_runs_the_small_input_first_and_its_forward_call_is_the_first_timed_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(&dir, "timed.torchscript");
    r.latency_budget_s = Some(30.0);
    let report = run(&r, 3, true).unwrap();
    assert_passed(&report);
    let inputs: Vec<(&[i64], &[String])> = report
        .validation
        .inputs
        .iter()
        .map(|i| (i.shape.as_slice(), i.methods.as_slice()))
        .collect();
    assert_eq!(
        inputs,
        vec![
            (
                &[2, 3, 96, 64][..],
                &["raw".to_owned(), "forward".into(), "forward".into()][..]
            ),
            (&[1, 3, 64, 96][..], &["forward".to_owned()][..]),
        ]
    );
    let latency = report.latency.unwrap();
    assert_eq!((latency.runs, latency.validated_runs), (2, 1));
    assert_eq!(latency.warmup, latency.warmup_calls.len());
    assert_eq!(
        latency.warmup_calls.last().map(String::as_str),
        Some("detect_image@49x51x3")
    );
    assert_eq!(latency.budget_s, Some(30.0));
}

#[test]
fn an_exact_number_of_runs_without_validation_warms_up_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(&dir, "exact.torchscript");
    r.validate = false;
    r.latency_runs = 3;
    r.latency_budget_s = None;
    let report = run(&r, 3, true).unwrap();
    let latency = report.latency.unwrap();
    assert_eq!((latency.runs, latency.validated_runs), (3, 0));
    assert_eq!(
        latency.warmup_calls,
        vec!["forward@2x3x96x64".to_owned(), "forward@1x3x64x96".into()]
    );
    assert_eq!(latency.budget_s, None);
}

#[test]
fn a_latency_budget_must_be_positive() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(&dir, "budget.torchscript");
    r.latency_budget_s = Some(0.0);
    assert!(matches!(run(&r, 3, true), Err(ConvertError::Options(_))));
}

#[test]
fn trace_artifacts_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(&dir, "t.torchscript");
    r.mode = Mode::Trace;
    let report = run(&r, 3, true).unwrap();
    assert_passed(&report);
    assert!(
        report
            .validation
            .checks
            .iter()
            .all(|c| !c.name.contains("@2x"))
    );
}

#[test]
fn optimised_artifacts_validate() {
    let dir = tempfile::tempdir().unwrap();
    let combos = [
        (Optimize::Freeze, Mode::Script, Precision::Fp32),
        (Optimize::Inference, Mode::Script, Precision::Fp32),
        (Optimize::Mobile, Mode::Script, Precision::Fp32),
        (Optimize::Inference, Mode::Trace, Precision::Fp32),
        (Optimize::Freeze, Mode::Trace, Precision::Fp16),
        (Optimize::Inference, Mode::Script, Precision::Fp16),
    ];
    for (opt, mode, precision) in combos {
        let mut r = request(&dir, &format!("o-{opt}-{mode}-{precision}.pt"));
        r.optimize = opt;
        r.mode = mode;
        r.precision = precision;
        let report = run(&r, 3, false).unwrap_or_else(|e| panic!("{opt} {mode} {precision}: {e}"));
        assert_passed(&report);
    }
    // Mobile's rewrites are float32 only: refused up front, not after the work.
    let mut r = request(&dir, "o-mobile-half.ptl");
    r.optimize = Optimize::Mobile;
    r.precision = Precision::Fp16;
    assert!(matches!(run(&r, 3, false), Err(ConvertError::Options(_))));
}

#[test]
fn half_precision_artifacts_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(&dir, "h.torchscript");
    r.precision = Precision::Fp16;
    let report = run(&r, 3, true).unwrap();
    assert_passed(&report);
}

#[test]
fn detections_head_validates() {
    let dir = tempfile::tempdir().unwrap();
    for nc in [1, 3] {
        let mut r = request(&dir, &format!("d{nc}.torchscript"));
        r.head = Output::Detections;
        r.conf = 0.001;
        let report = run(&r, nc, true).unwrap();
        assert_passed(&report);
        let det = report
            .validation
            .checks
            .iter()
            .find(|c| c.name.starts_with("detections.0@"))
            .unwrap();
        assert!(det.shape[0] > 0, "no detection at conf 0.001: {det:?}");
    }
}

#[test]
fn a_perturbed_weight_fails_validation_and_names_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(&dir, "p.torchscript");
    r.perturb = Some(Perturbation {
        parameter: "model.15.m.0.bias".into(),
        delta: 0.5,
    });
    r.report = Some(dir.path().join("report.json"));
    match run(&r, 3, true) {
        Err(ConvertError::ValidationFailed {
            report,
            failed_outputs,
        }) => {
            assert!(
                failed_outputs.iter().any(|n| n.starts_with("raw.0@")),
                "{failed_outputs:?}"
            );
            assert!(!failed_outputs.iter().any(|n| n.starts_with("raw.1@")));
            assert_eq!(report.status, ReportStatus::Failed);
            assert!(dir.path().join("report.json").exists());
            assert!(dir.path().join("p.torchscript").exists());
        }
        other => panic!("expected a validation failure, got {other:?}"),
    }
}

#[test]
fn bad_torchscript_is_an_error_not_an_abort() {
    let cu = crate::jit::CompilationUnit::new().unwrap();
    let mut m = crate::jit::ScriptModule::new(&cu, "__torch__.yolots.Broken").unwrap();
    let err = m
        .define(
            "Broken",
            "def forward(self, x: Tensor) -> Tensor:\n    return self.nope(x)\n",
        )
        .unwrap_err();
    match err {
        ConvertError::Script { class, message } => {
            assert_eq!(class, "Broken");
            assert!(message.contains("nope"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn image_size_must_fit_the_stride() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(&dir, "x.torchscript");
    r.img_size = ImageSize::new(100, 96);
    assert!(matches!(run(&r, 3, true), Err(ConvertError::Options(_))));
}

#[test]
fn script_artifact_runs_on_other_sizes_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = request(&dir, "dyn.torchscript");
    r.validate = false;
    r.latency_runs = 0;
    run(&r, 3, true).unwrap();
    let m = tch::CModule::load(dir.path().join("dyn.torchscript")).unwrap();
    let x = Tensor::rand([3, 3, 96, 160], (Kind::Float, Device::Cpu));
    let y = m.forward_ts(&[x]).unwrap();
    assert_eq!(y.size(), vec![3, 3 * (12 * 20 + 6 * 10 + 3 * 5), 8]);
}

#[test]
fn an_already_fused_checkpoint_is_not_fused_twice() {
    let (desc, weights) = synthetic_model(3, true, 5);
    let (fused_desc, fused_weights) = crate::testing::prefused(&desc, &weights);
    let plain = Network::build(&desc, &weights, false, Placement::CPU_F32).unwrap();
    // Asking for fusion again must change nothing.
    let again = Network::build(&fused_desc, &fused_weights, true, Placement::CPU_F32).unwrap();
    let as_is = Network::build(&fused_desc, &fused_weights, false, Placement::CPU_F32).unwrap();
    for ((na, a), (nb, b)) in again.named().iter().zip(as_is.named()) {
        assert_eq!(*na, nb);
        assert!(a.equal(b), "{na} changed by a second fusion");
    }
    let x = crate::validate::test_input(1, [64, 96]).unwrap();
    let err = (plain.forward_decoded(&x).unwrap() - again.forward_decoded(&x).unwrap())
        .abs()
        .max()
        .double_value(&[]);
    assert!(err < 1e-3, "{err}");

    // The pipeline converts it and validates it against itself.
    let dir = tempfile::tempdir().unwrap();
    let r = request(&dir, "prefused.torchscript");
    let source = source_facts(&fused_desc, "prefused.pt", 0, "0".repeat(64));
    let mut progress = |_: &crate::ProgressEvent| {};
    let mut clock = Clock::new(&mut progress);
    let report = convert_model(&fused_desc, &fused_weights, source, &r, &mut clock).unwrap();
    assert_passed(&report);
    assert!(report.source.already_fused && report.artifact.fused);
    assert_eq!(report.stage_seconds(crate::Stage::Fusing), 0.0);
}
