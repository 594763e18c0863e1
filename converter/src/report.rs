//! The report's types live in `yolots-protocol` (the worker, the API and the page read
//! them too); what only the converter does with them is here: the facts about the source,
//! the artifact, the options and the environment, a skipped validation, the latency
//! summary of timed runs, and writing `report.json`.

use std::fs;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use tch::Device;
use yolots_checkpoint::model::{DType, ModelDescription};

use crate::error::{ConvertError, Result};
use crate::options::{ConvertRequest, device_name};
use crate::timing::{Call, TimingPlan};

pub use yolots_protocol::report::*;

/// Validation that did not run, and why.
pub(crate) fn validation_skipped(device: String, note: &str) -> Validation {
    Validation {
        status: ValidationStatus::Skipped,
        device,
        reference: String::new(),
        loaded_with: String::new(),
        note: Some(note.to_owned()),
        inputs: Vec::new(),
        checks: Vec::new(),
        failed_outputs: Vec::new(),
        seconds: 0.0,
    }
}

/// Summarises run times in milliseconds (nearest-rank percentiles).
pub(crate) fn latency_from_runs(
    device: String,
    method: &str,
    input_shape: Vec<i64>,
    warmup_calls: &[Call],
    validated_runs: usize,
    plan: TimingPlan,
    mut ms: Vec<f64>,
) -> Option<Latency> {
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let idx = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
        ms[idx]
    };
    Some(Latency {
        device,
        method: method.to_owned(),
        input_shape,
        warmup: warmup_calls.len(),
        runs: ms.len(),
        p50_ms: rank(0.5),
        p90_ms: rank(0.9),
        mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        min_ms: ms[0],
        max_ms: ms[ms.len() - 1],
        warmup_calls: warmup_calls.iter().map(Call::label).collect(),
        validated_runs,
        budget_s: plan.budget_s,
        max_runs: plan.max_runs,
        timed_s: ms.iter().sum::<f64>() / 1e3,
    })
}

pub(crate) fn source_facts(
    desc: &ModelDescription,
    file_name: &str,
    size: u64,
    sha256: String,
) -> SourceFacts {
    let head = desc.head();
    SourceFacts {
        file_name: file_name.to_owned(),
        size_bytes: size,
        sha256,
        variant: desc.variant.as_str().to_owned(),
        model: desc.source.as_str().to_owned(),
        classes: desc.nc,
        names: desc.names.clone(),
        task: desc.task(),
        nkpt: desc.nkpt(),
        parameters: desc.parameters,
        layers: desc.layers.len(),
        head: head.map_or("none", |h| h.kind.as_str()).to_owned(),
        strides: desc.strides.clone(),
        weights_dtype: dtype_name(desc.weights_dtype).to_owned(),
        epoch: desc.epoch,
        already_fused: desc.fused,
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::U8 => "uint8",
        DType::I8 => "int8",
        DType::I16 => "int16",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::Bool => "bool",
    }
}

pub(crate) fn artifact_facts(
    path: &Path,
    format: &str,
    methods: Vec<String>,
    fused: bool,
    tensor_elements: i64,
) -> Result<ArtifactFacts> {
    // Streamed: the artifact can be hundreds of MB.
    let mut file = fs::File::open(path).map_err(|e| ConvertError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| ConvertError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok(ArtifactFacts {
        file_name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size_bytes: size,
        sha256: hex::encode(hasher.finalize()),
        format: format.to_owned(),
        fused,
        tensor_elements,
        methods,
    })
}

pub(crate) fn report_options(r: &ConvertRequest) -> ReportOptions {
    ReportOptions {
        format: r.format,
        mode: r.mode,
        head: r.head,
        precision: r.precision,
        fuse: r.fuse,
        optimize: r.optimize,
        img_size: r.img_size,
        device: r.device,
        conf: r.conf,
        iou: r.iou,
        max_det: r.max_det,
        validate: r.validate,
        latency_runs: r.latency_runs,
        latency_budget_s: r.latency_budget_s,
    }
}

pub(crate) fn environment(device: Device) -> Environment {
    Environment {
        yolots_version: env!("CARGO_PKG_VERSION").to_owned(),
        libtorch_version: crate::runtime::libtorch_version(),
        device: device_name(device),
        cuda_devices: crate::runtime::cuda_device_count(),
        cpu_threads: i64::from(tch::get_num_threads()),
    }
}

/// Writes `report` as pretty JSON.
pub fn write_report(report: &ConversionReport, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| ConvertError::Internal(format!("report: {e}")))?;
    fs::write(path, json).map_err(|e| ConvertError::io(path, e))
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let plan = TimingPlan {
            max_runs: 10,
            budget_s: None,
        };
        let l = latency_from_runs(
            "cpu".into(),
            "forward",
            vec![1, 3, 64, 64],
            &[],
            0,
            plan,
            (1..=10).rev().map(f64::from).collect(),
        )
        .unwrap();
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.min_ms, l.max_ms),
            (5.0, 9.0, 1.0, 10.0)
        );
        assert_eq!(l.mean_ms, 5.5);
        assert!((l.timed_s - 0.055).abs() < 1e-12);
        let none = latency_from_runs("cpu".into(), "forward", vec![], &[], 0, plan, vec![]);
        assert!(none.is_none());
    }
}
