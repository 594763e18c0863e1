//! The proof of an ONNX artifact: the written file run by ONNX Runtime on the CPU,
//! compared output by output with the eager network built unfused in float32, then timed.
//!
//! Validation loads the file once with its inner values (`raw_*`, and `decoded` for the
//! `detections` head) added as graph outputs, so one run per input checks every stage:
//! the raw levels, the decoding, and the NMS (against the plain NMS of
//! [`validate::reference_nms`] over the same run's `decoded`). It runs on the small
//! second input (batch 2, non-square) and at the conversion size. Timing goes on in that
//! session, whose run at the conversion size was its warm-up (the same nodes as the file;
//! the inner values it also returns are computed by the file anyway); without validation
//! it loads the file exactly as written and warms it up first.

use std::time::Instant;

use prost::Message;
use tch::{Device, Tensor};
use yolots_checkpoint::model::ModelDescription;
use yolots_onnx::proto::ModelProto;

use super::nms::DETECTION_COLUMNS;
use super::runtime::{self, OnnxSession};
use crate::clock::Clock;
use crate::error::{ConvertError, Result};
use crate::layers::WeightSource;
use crate::layers::head::DECODED;
use crate::options::{ConvertRequest, Output};
use crate::progress::Stage;
use crate::proof::{Proof, ProofInput, reference_outputs};
use crate::report::{OutputCheck, Validation, ValidationInput, ValidationStatus};
use crate::timing::{Call, TimingPlan};
use crate::validate::{self, Det, RowLayout};

/// Whether the request needs ONNX Runtime: an ONNX artifact validated or timed.
pub(crate) fn needs_runtime(request: &ConvertRequest) -> bool {
    request.format == crate::options::Format::Onnx
        && (request.validate || TimingPlan::of(request).max_runs > 0)
}

/// Validates and times the ONNX file at `request.output`, as the request asks.
pub(crate) fn prove(
    desc: &ModelDescription,
    weights: &dyn WeightSource,
    request: &ConvertRequest,
    max_stride: i64,
    clock: &mut Clock<'_>,
) -> Result<Proof> {
    let plan = TimingPlan::of(request);
    if !needs_runtime(request) {
        return Ok(Proof {
            validation: crate::report::validation_skipped("cpu".into(), "validation disabled"),
            latency: None,
        });
    }
    let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
    let inputs = ProofInput::plan(request, max_stride, Device::Cpu)?;
    let layout = RowLayout {
        nc: desc.nc,
        nkpt: desc.nkpt(),
    };
    // With validation's report, its session and the runs it made, for timing to go on with.
    let (validation, validated) = if request.validate {
        clock.begin(
            Stage::Validating,
            "validating with ONNX Runtime on cpu".into(),
        );
        let start = Instant::now();
        let references = reference_outputs(desc, weights, Device::Cpu, &inputs)?;
        weights.release_cached();
        crate::memory::release_freed();
        let levels = desc.strides.len();
        let inner = with_inner_outputs(&request.output, request.head, levels)?;
        let mut session = OnnxSession::from_file(inner.path(), threads)?;
        drop(inner);
        let mut checks = Vec::new();
        let mut ran = Vec::new();
        let mut calls = Vec::new();
        for (input, reference) in inputs.iter().zip(&references) {
            let shape = input.tensor.size();
            let started = Instant::now();
            let outputs = session.run(&input.tensor)?;
            calls.push(Call {
                method: RUN.into(),
                shape: shape.clone(),
                network_shape: shape,
                ms: started.elapsed().as_secs_f64() * 1e3,
            });
            ran.push(ValidationInput {
                shape: input.tensor.size(),
                proves: input.proves.to_owned(),
                methods: outputs.iter().map(|(n, _)| n.clone()).collect(),
            });
            check_outputs(&mut checks, request, layout, input, reference, &outputs)?;
        }
        let failed_outputs: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.clone())
            .collect();
        let validation = Validation {
            status: if failed_outputs.is_empty() {
                ValidationStatus::Passed
            } else {
                ValidationStatus::Failed
            },
            device: "cpu".into(),
            reference: "eager network built unfused in float32 from the same checkpoint".into(),
            loaded_with: format!(
                "ONNX Runtime {} (CPU), the written file with its inner raw and decoded values \
                 added as outputs",
                runtime::loaded_version()?
            ),
            note: None,
            inputs: ran,
            checks,
            failed_outputs,
            seconds: start.elapsed().as_secs_f64(),
        };
        (validation, Some((session, calls)))
    } else {
        let skipped = crate::report::validation_skipped("cpu".into(), "validation disabled");
        (skipped, None)
    };

    let latency = if plan.max_runs > 0 {
        let Some(conversion) = inputs.last() else {
            return Err(ConvertError::Internal("no input to time".into()));
        };
        clock.begin(Stage::Timing, crate::proof::timing_message(plan));
        let (session, warmup) = match validated {
            Some(warm) => warm,
            None => warm_file(request, &conversion.tensor, threads)?,
        };
        Some(time_session(session, &conversion.tensor, &warmup, plan)?)
    } else {
        None
    };
    Ok(Proof {
        validation,
        latency: latency.flatten(),
    })
}

/// A copy of the file, beside it, with `raw_*` (and `decoded`, when the graph computes
/// it) added as outputs where they are not already; removed when dropped. Written as a
/// file, not kept as bytes, so ONNX Runtime loads it without a second copy in memory.
fn with_inner_outputs(
    path: &std::path::Path,
    head: Output,
    levels: usize,
) -> Result<tempfile::NamedTempFile> {
    let bytes = std::fs::read(path).map_err(|e| ConvertError::io(path, e))?;
    let mut model = ModelProto::decode(&bytes[..])
        .map_err(|e| ConvertError::Internal(format!("reading back the ONNX file: {e}")))?;
    drop(bytes);
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| ConvertError::Internal("ONNX file without graph".into()))?;
    let mut inner: Vec<(String, usize)> = (0..levels).map(|i| (format!("raw_{i}"), 5)).collect();
    if head == Output::Detections {
        inner.push((DECODED.to_owned(), 3));
    }
    for (name, rank) in inner {
        if !graph.output.iter().any(|o| o.name == name) {
            graph.output.push(yolots_onnx::float_output(&name, rank));
        }
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::Path::new("."));
    let mut copy = tempfile::Builder::new()
        .prefix(".yolots-validate-")
        .suffix(".onnx")
        .tempfile_in(dir)
        .map_err(|e| ConvertError::io(dir, e))?;
    let written = {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, copy.as_file_mut());
        yolots_onnx::write(model, &mut out).and_then(|()| std::io::Write::flush(&mut out))
    };
    written.map_err(|e| ConvertError::io(copy.path(), e))?;
    Ok(copy)
}

/// The checks of one input's outputs against the reference.
fn check_outputs(
    checks: &mut Vec<OutputCheck>,
    request: &ConvertRequest,
    layout: RowLayout,
    input: &ProofInput,
    reference: &validate::Reference,
    outputs: &[(String, Tensor)],
) -> Result<()> {
    let precision = request.precision;
    let shape = input.tensor.size();
    let tag = input.tag();
    let get = |name: &str| {
        outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| ConvertError::Internal(format!("ONNX Runtime gave no output {name}")))
    };
    let raw = (0..reference.raw.len())
        .map(|i| get(&format!("raw_{i}")).map(Tensor::shallow_clone))
        .collect::<Result<Vec<_>>>()?;
    validate::check_raw(checks, "raw", &tag, &shape, &raw, &reference.raw, precision)?;
    if request.head == Output::Raw {
        return Ok(());
    }
    let decoded = get(DECODED)?;
    validate::check_decoded(
        checks,
        DECODED,
        &tag,
        &shape,
        (decoded, &reference.decoded),
        layout,
        precision,
    )?;
    if request.head == Output::Detections {
        let got = detections_by_image(get(super::nms::DETECTIONS)?, layout, shape[0])?;
        let want =
            validate::nms_per_image(decoded, layout, request.conf, request.iou, request.max_det)?;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let mut check = validate::compare_detections(
                format!("detections.{i}@{tag}"),
                &shape,
                g,
                w,
                request.conf,
                precision,
            );
            check.method = super::nms::DETECTIONS.to_owned();
            checks.push(check);
        }
    }
    Ok(())
}

/// The rows of a `[K, 7 + 3 * nkpt]` detections output, per image (by their first
/// column).
pub(crate) fn detections_by_image(
    t: &Tensor,
    layout: RowLayout,
    images: i64,
) -> Result<Vec<Vec<Det>>> {
    let columns = DETECTION_COLUMNS + 3 * layout.nkpt;
    match t.size().as_slice() {
        [_, c] if usize::try_from(*c).ok() == Some(columns) => {}
        other => {
            return Err(ConvertError::Internal(format!(
                "detections of shape {other:?}, expected [K, {columns}]"
            )));
        }
    }
    let values: Vec<f32> = Vec::try_from(t.f_contiguous()?.f_flatten(0, -1)?)?;
    let mut out: Vec<Vec<Det>> = (0..images).map(|_| Vec::new()).collect();
    for r in values.chunks_exact(columns) {
        let image = r[0];
        let slot = (image >= 0.0)
            .then(|| out.get_mut(image as usize))
            .flatten()
            .ok_or_else(|| ConvertError::Internal(format!("detection of image {image}")))?;
        slot.push(Det {
            xyxy: [r[1], r[2], r[3], r[4]],
            score: r[5],
            class: r[6],
            keypoints: r[7..].to_vec(),
        });
    }
    Ok(out)
}

/// What a timed call of an ONNX file is named in the report.
const RUN: &str = "run";

/// One run of `session` on `input`, in milliseconds.
fn timed_run(session: &mut OnnxSession, input: &Tensor) -> Result<f64> {
    let start = Instant::now();
    session.run(input)?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// The file as written, loaded and run once at the conversion size (ONNX Runtime sizes
/// its memory arena for a shape on its first run there).
fn warm_file(
    request: &ConvertRequest,
    input: &Tensor,
    threads: usize,
) -> Result<(OnnxSession, Vec<Call>)> {
    let mut session = OnnxSession::from_file(&request.output, threads)?;
    let shape = input.size();
    let warmup = vec![Call {
        method: RUN.into(),
        shape: shape.clone(),
        network_shape: shape,
        ms: timed_run(&mut session, input)?,
    }];
    Ok((session, warmup))
}

/// Timed runs of a session that has already run at `input`'s shape, within the plan.
fn time_session(
    mut session: OnnxSession,
    input: &Tensor,
    warmup: &[Call],
    plan: TimingPlan,
) -> Result<Option<crate::report::Latency>> {
    let shape = input.size();
    if !warmup.iter().any(|c| c.shape == shape) {
        return Err(ConvertError::Internal(
            "timing an ONNX session that never ran at the timed shape".into(),
        ));
    }
    let mut ms = Vec::new();
    while plan.wants_another(&ms) {
        ms.push(timed_run(&mut session, input)?);
    }
    Ok(crate::report::latency_from_runs(
        "cpu".into(),
        RUN,
        shape,
        warmup,
        0,
        plan,
        ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detections_split_by_their_image_column() {
        let layout = RowLayout { nc: 2, nkpt: 0 };
        let rows = Tensor::from_slice(&[
            0f32, 1.0, 2.0, 3.0, 4.0, 0.9, 1.0, //
            1.0, 5.0, 6.0, 7.0, 8.0, 0.8, 0.0, //
            0.0, 9.0, 9.0, 9.0, 9.0, 0.7, 0.0,
        ])
        .view([3, 7]);
        let per_image = detections_by_image(&rows, layout, 3).unwrap();
        assert_eq!(
            per_image.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        assert_eq!(per_image[1][0].xyxy, [5.0, 6.0, 7.0, 8.0]);
        let bad = Tensor::from_slice(&[4f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).view([1, 7]);
        assert!(detections_by_image(&bad, layout, 2).is_err());
    }
}
