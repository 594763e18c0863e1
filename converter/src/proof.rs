//! The proof that the saved artifact computes what the checkpoint computes, and its
//! latency, from one load of the artifact.
//!
//! Each expensive step runs once:
//! 1. The eager reference (built unfused in float32) runs once per input; its outputs are
//!    kept and the network is dropped before the artifact is loaded, so the two never
//!    hold memory together.
//! 2. The artifact is loaded once. In script mode it first runs every output method on a
//!    small second input (batch 2, `2S x 3S` for the largest stride `S`), which proves the
//!    dynamic batch and a non-square size for a fraction of a full run; `forward` runs
//!    there twice when it is to be timed (the profiling executor's recording and
//!    optimising calls). Then `detect_image`, which runs the network at the conversion
//!    size, then `forward` at the conversion size (every output method there in trace
//!    mode, which has no second input).
//! 3. Those calls are timing's warm-up, and that last `forward` call, timed, is the first
//!    timed run; more follow on the same input within the budget.

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use yolots_checkpoint::model::ModelDescription;

use crate::clock::Clock;
use crate::error::{ConvertError, Result};
use crate::layers::{Placement, WeightSource};
use crate::network::Network;
use crate::options::device_name;
use crate::options::{ConvertRequest, Mode, Optimize, Output, Precision, PrecisionKind};
use crate::progress::Stage;
use crate::report::{
    Latency, OutputCheck, OutputKind, Validation, ValidationInput, ValidationStatus,
};
use crate::timing::{self, Artifact, TimingPlan};
use crate::validate::{self, Arg, Loaded, Reference, RowLayout};

/// What validation and timing found.
pub(crate) struct Proof {
    pub validation: Validation,
    pub latency: Option<Latency>,
}

/// Validates and times the artifact at `request.output`, as the request asks.
pub(crate) fn prove(
    desc: &ModelDescription,
    weights: &dyn WeightSource,
    request: &ConvertRequest,
    device: Device,
    max_stride: i64,
    clock: &mut Clock<'_>,
) -> Result<Proof> {
    let mobile = request.optimize == Optimize::Mobile;
    // The lite interpreter runs where the file was saved (CPU).
    let run_device = if mobile { Device::Cpu } else { device };
    let plan = TimingPlan::of(request);
    if !request.validate && plan.max_runs == 0 {
        return Ok(Proof {
            validation: crate::report::validation_skipped(
                device_name(device),
                "validation disabled",
            ),
            latency: None,
        });
    }
    let inputs = ProofInput::plan(request, max_stride, run_device)?;
    let layout = RowLayout {
        nc: desc.nc,
        nkpt: desc.nkpt(),
    };
    let mut artifact = None;
    let mut validated_forward = None;
    let validation = if request.validate {
        clock.begin(
            Stage::Validating,
            format!("validating on {}", device_name(run_device)),
        );
        let start = Instant::now();
        let references = reference_outputs(desc, weights, run_device, &inputs)?;
        weights.release_cached();
        crate::memory::release_freed();
        let loaded = Loaded::load(&request.output, mobile, run_device)?;
        let mut loaded = Artifact::new(loaded, run_device);
        let warm_second = plan.max_runs > 0 && inputs.len() > 1;
        let (mut validation, forward_at) = validate_loaded(
            &mut loaded,
            request,
            layout,
            &inputs,
            &references,
            warm_second,
        )?;
        drop(references);
        validation.device = device_name(run_device);
        validation.loaded_with = loaded.loaded_with().into();
        validation.seconds = start.elapsed().as_secs_f64();
        validated_forward = forward_at;
        artifact = Some(loaded);
        validation
    } else {
        crate::report::validation_skipped(device_name(device), "validation disabled")
    };

    let latency = if plan.max_runs > 0 {
        clock.begin(Stage::Timing, timing_message(plan));
        let mut artifact = match artifact {
            Some(artifact) => artifact,
            None => Artifact::new(
                Loaded::load(&request.output, mobile, run_device)?,
                run_device,
            ),
        };
        let kind = request.precision.kind();
        let Some(conversion) = inputs.last() else {
            return Err(ConvertError::Internal("no input to time".into()));
        };
        let input = conversion.tensor.f_to_kind(kind)?;
        let pre = match inputs.first() {
            Some(first) if inputs.len() > 1 => Some(first.tensor.f_to_kind(kind)?),
            _ => None,
        };
        timing::time_forward(
            &mut artifact,
            &input,
            pre.as_ref(),
            validated_forward,
            device_name(run_device),
            plan,
        )?
    } else {
        None
    };
    Ok(Proof {
        validation,
        latency,
    })
}

pub(crate) fn timing_message(plan: TimingPlan) -> String {
    match plan.budget_s {
        Some(budget) => format!(
            "timing for about {budget} s, at most {}",
            yolots_protocol::words::count(plan.max_runs as u64, "run", "runs")
        ),
        None => format!(
            "timing {}",
            yolots_protocol::words::count(plan.max_runs as u64, "run", "runs")
        ),
    }
}

/// One validation input: a deterministic float32 tensor and what it proves.
pub(crate) struct ProofInput {
    pub tensor: Tensor,
    /// What running at this shape proves.
    pub proves: &'static str,
    /// Every output method runs on it; otherwise `forward` only (and `decoded`, which the
    /// detections check needs).
    pub all_methods: bool,
}

impl ProofInput {
    /// Script mode: the small second input first, then the conversion size. Trace mode:
    /// the conversion size only (a traced network keeps its batch and size).
    pub(crate) fn plan(
        request: &ConvertRequest,
        max_stride: i64,
        device: Device,
    ) -> Result<Vec<Self>> {
        let mut inputs = Vec::new();
        let dynamic = request.mode == Mode::Script;
        if dynamic {
            let hw = validate::second_size(request.img_size, max_stride);
            inputs.push(ProofInput {
                tensor: validate::test_input(2, hw)?.f_to_device(device)?,
                proves: "dynamic batch and non-square size",
                all_methods: true,
            });
        }
        inputs.push(ProofInput {
            tensor: validate::test_input(1, request.img_size.hw())?.f_to_device(device)?,
            proves: "conversion size",
            all_methods: !dynamic,
        });
        Ok(inputs)
    }

    /// `<B>x<H>x<W>`, the suffix of check names.
    pub(crate) fn tag(&self) -> String {
        match self.tensor.size().as_slice() {
            [b, _, h, w] => format!("{b}x{h}x{w}"),
            other => format!("{other:?}"),
        }
    }
}

/// The reference's outputs for every input; the network is gone when this returns.
pub(crate) fn reference_outputs(
    desc: &ModelDescription,
    weights: &dyn WeightSource,
    device: Device,
    inputs: &[ProofInput],
) -> Result<Vec<Reference>> {
    let placement = Placement {
        kind: Kind::Float,
        device,
    };
    let net = Network::build(desc, weights, false, placement)?;
    // On the CPU, oneDNN convolutions run about 1.6x faster on channels-last tensors; the
    // layout changes where values live in memory, not what is computed.
    let channels_last = device == Device::Cpu;
    if channels_last {
        net.lay_out_channels_last()?;
    }
    inputs
        .iter()
        .map(|input| {
            if channels_last {
                let input = input.tensor.copy();
                crate::jit::lay_out_channels_last(&input)?;
                Reference::compute(&net, &input)
            } else {
                Reference::compute(&net, &input.tensor)
            }
        })
        .collect()
}

/// Runs the artifact on every input and compares it with the reference outputs; also
/// returns the index, among the artifact's calls, of its last call of `forward` at the
/// conversion size. With `warm_second`, `forward` runs a second time on the second input.
fn validate_loaded(
    artifact: &mut Artifact,
    request: &ConvertRequest,
    layout: RowLayout,
    inputs: &[ProofInput],
    references: &[Reference],
    warm_second: bool,
) -> Result<(Validation, Option<usize>)> {
    let kind = request.precision.kind();
    let conversion_shape = inputs.last().map(|input| input.tensor.size());
    let mut checks: Vec<OutputCheck> = Vec::new();
    let mut ran = Vec::new();
    let mut note = None;
    let mut smoke = None;
    for (input, reference) in inputs.iter().zip(references) {
        let artifact_input = input.tensor.f_to_kind(kind)?;
        let shape = artifact_input.size();
        let is_conversion = Some(&shape) == conversion_shape.as_ref();
        if is_conversion {
            // The network at the conversion size, before `forward` runs there.
            smoke = Some(smoke_detect_image(
                artifact,
                request,
                layout,
                input.tensor.device(),
            )?);
        }
        let first_call = artifact.calls.len();
        let mut outcome = run_checks(
            artifact,
            request,
            layout,
            &artifact_input,
            input,
            reference,
            &mut checks,
        );
        if outcome.is_ok() && warm_second && !is_conversion {
            outcome = artifact.run("forward", &artifact_input).map(drop);
        }
        ran.push(ValidationInput {
            shape,
            proves: input.proves.to_owned(),
            methods: artifact
                .calls
                .get(first_call..)
                .unwrap_or_default()
                .iter()
                .map(|c| c.method.clone())
                .collect(),
        });
        match outcome {
            Ok(()) => {}
            Err(ConvertError::Torch(message))
                if request.precision == Precision::Fp16 && message.contains("Half") =>
            {
                note = Some(format!(
                    "float16 not validated on {}: libtorch has no float16 kernel for an \
                     operation here ({message})",
                    device_name(input.tensor.device())
                ));
                checks.clear();
                smoke = None;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    checks.extend(smoke);
    let failed_outputs: Vec<String> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.clone())
        .collect();
    let status = if note.is_some() {
        ValidationStatus::NotValidated
    } else if failed_outputs.is_empty() {
        ValidationStatus::Passed
    } else {
        ValidationStatus::Failed
    };
    let forward_at = match (&note, &conversion_shape) {
        (None, Some(shape)) => artifact
            .calls
            .iter()
            .rposition(|c| c.method == "forward" && &c.shape == shape),
        _ => None,
    };
    let validation = Validation {
        status,
        device: String::new(),
        reference: "eager network built unfused in float32 from the same checkpoint".into(),
        loaded_with: String::new(),
        note,
        inputs: ran,
        checks,
        failed_outputs,
        seconds: 0.0,
    };
    Ok((validation, forward_at))
}

/// The checks of one input. Every output method when `input.all_methods`, else what
/// `forward` returns (with `decoded` for the detections head, whose NMS is checked
/// against that output). `forward` runs last.
fn run_checks(
    artifact: &mut Artifact,
    request: &ConvertRequest,
    layout: RowLayout,
    artifact_input: &Tensor,
    input: &ProofInput,
    reference: &Reference,
    checks: &mut Vec<OutputCheck>,
) -> Result<()> {
    let precision = request.precision;
    let shape = artifact_input.size();
    let tag = input.tag();
    let (raw_method, decoded_method) = validate::methods_for(request.head);
    let wants = |method: &str| input.all_methods || method == "forward";
    if wants(raw_method) {
        let raw = artifact.run(raw_method, artifact_input)?;
        validate::check_raw(
            checks,
            raw_method,
            &tag,
            &shape,
            &raw,
            &reference.raw,
            precision,
        )?;
    }
    let detections = request.head == Output::Detections;
    if !(wants(decoded_method) || detections) {
        return Ok(());
    }
    let decoded = artifact.run(decoded_method, artifact_input)?;
    let decoded = match decoded.as_slice() {
        [d] => d,
        _ => {
            return Err(ConvertError::Internal(format!(
                "{decoded_method} returned {} tensors",
                decoded.len()
            )));
        }
    };
    validate::check_decoded(
        checks,
        decoded_method,
        &tag,
        &shape,
        (decoded, &reference.decoded),
        layout,
        precision,
    )?;
    if detections {
        // The artifact's NMS must keep exactly what a plain NMS keeps on the same decoded
        // output (whose parity with the reference is checked above). Comparing with NMS
        // over the reference's output instead would fail on near-ties: candidates whose
        // scores differ in the last float digits may rank either way.
        let got = artifact.run("forward", artifact_input)?;
        let want =
            validate::nms_per_image(decoded, layout, request.conf, request.iou, request.max_det)?;
        for (i, w) in want.iter().enumerate() {
            let g = match got.get(i) {
                Some(t) => validate::dets_of(t, layout)?,
                None => Vec::new(),
            };
            checks.push(validate::compare_detections(
                format!("detections.{i}@{tag}"),
                &shape,
                &g,
                w,
                request.conf,
                precision,
            ));
        }
    }
    Ok(())
}

/// `detect_image` must take an odd-sized uint8 image and return `[K, 6 + 3 * nkpt]`.
fn smoke_detect_image(
    artifact: &mut Artifact,
    request: &ConvertRequest,
    layout: RowLayout,
    device: Device,
) -> Result<OutputCheck> {
    let [h, w] = request.img_size.hw();
    let (ih, iw) = (h * 3 / 4 + 1, w / 2 + 3);
    let image = validate::test_input(1, [ih, iw])?
        .f_mul_scalar(255.0)?
        .f_to_kind(Kind::Uint8)?
        .f_get(0)?
        .f_permute([1, 2, 0])?
        .f_contiguous()?
        .f_to_device(device)?;
    let result = artifact.call(
        "detect_image",
        vec![1, 3, h, w],
        &[
            Arg::Tensor(&image),
            Arg::Float(request.conf),
            Arg::Float(request.iou),
            Arg::Int(request.max_det),
        ],
    );
    let (shape, passed, detail) = match &result {
        Ok(ts) => match ts.as_slice() {
            [t] if t.dim() == 2
                && usize::try_from(t.size()[1]).ok() == Some(layout.det_columns()) =>
            {
                (t.size(), true, None)
            }
            _ => (
                Vec::new(),
                false,
                Some(format!("returned {} tensors", ts.len())),
            ),
        },
        Err(e) => (Vec::new(), false, Some(e.to_string())),
    };
    Ok(OutputCheck {
        name: format!("detect_image@{ih}x{iw}x3"),
        method: "detect_image".into(),
        kind: OutputKind::Smoke,
        input_shape: vec![ih, iw, 3],
        shape,
        max_abs_error: None,
        mean_abs_error: None,
        tolerance: validate::tolerance(OutputKind::Smoke, request.precision),
        passed,
        detail,
    })
}
