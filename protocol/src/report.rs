//! `report.json`: what was converted, how, and the proof that the artifact computes what
//! the source model computes. The schema is documented field by field in the converter's
//! `REPORT.md`; `schema` names its version. The converter writes it; the worker, the API
//! and the page read it, all through these types.

use serde::{Deserialize, Serialize};

use crate::options::{DeviceChoice, Format, ImageSize, Mode, Optimize, Output, Precision};
use crate::progress::Stage;
use crate::task::Task;

/// Version tag of the report layout.
pub const REPORT_SCHEMA: &str = "yolots.report/v1";

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionReport {
    pub schema: String,
    /// `passed`, `failed` or `not_validated` (see [`ReportStatus`]).
    pub status: ReportStatus,
    /// When the conversion finished (RFC 3339, UTC).
    pub created: String,
    pub source: SourceFacts,
    pub options: ReportOptions,
    pub environment: Environment,
    pub artifact: ArtifactFacts,
    /// Wall time of each stage, in the order they ran.
    pub stages: Vec<StageTime>,
    pub validation: Validation,
    /// Absent when timing was not asked for (`latency_runs = 0`).
    pub latency: Option<Latency>,
}

impl ConversionReport {
    /// Seconds spent in `stage` (0 when it did not run).
    pub fn stage_seconds(&self, stage: Stage) -> f64 {
        self.stages
            .iter()
            .filter(|s| s.stage == stage)
            .map(|s| s.seconds)
            .sum()
    }
}

/// Overall outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Validated, every check within tolerance.
    Passed,
    /// Validated, at least one check out of tolerance (`validation.failed_outputs`).
    Failed,
    /// Validation skipped on request, or impossible on this device (`validation.note`).
    NotValidated,
}

/// Facts about the input checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFacts {
    pub file_name: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// Best guess at the official configuration (`yolov7`, `yolov7-tiny`, ... or `custom`).
    pub variant: String,
    /// Which model of the checkpoint was converted: `ema` or `model`.
    pub model: String,
    pub classes: usize,
    pub names: Vec<String>,
    /// `detect`, or `pose` for a keypoint model (absent in reports written before pose
    /// models were supported: `detect`).
    #[serde(default)]
    pub task: Task,
    /// Keypoints per detection (0 for detection models).
    #[serde(default)]
    pub nkpt: usize,
    /// Parameters as the source counts them (training-only heads included).
    pub parameters: u64,
    pub layers: usize,
    /// `Detect`, `IDetect`, `IAuxDetect` or `IKeypoint`.
    pub head: String,
    pub strides: Vec<f64>,
    pub weights_dtype: String,
    pub epoch: Option<i64>,
    /// The checkpoint was fused already (then it is never fused again).
    pub already_fused: bool,
}

/// The options the conversion ran with (paths left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportOptions {
    /// Absent in reports written before ONNX existed: `torchscript`.
    #[serde(default)]
    pub format: Format,
    pub mode: Mode,
    pub head: Output,
    pub precision: Precision,
    pub fuse: bool,
    pub optimize: Optimize,
    pub img_size: ImageSize,
    pub device: DeviceChoice,
    pub conf: f64,
    pub iou: f64,
    pub max_det: i64,
    pub validate: bool,
    pub latency_runs: usize,
    /// Timing stopped once the timed runs had taken about this many seconds (at least one
    /// run, at most `latency_runs`); null: exactly `latency_runs` runs. Absent in reports
    /// written before the budget existed, which timed a fixed number of runs.
    #[serde(default)]
    pub latency_budget_s: Option<f64>,
}

/// Where it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub yolots_version: String,
    /// The libtorch loaded at run time.
    pub libtorch_version: Option<String>,
    /// The device validation and timing used (`cpu`, `cuda:0`).
    pub device: String,
    pub cuda_devices: usize,
    /// Intra-op threads libtorch used on the CPU.
    pub cpu_threads: i64,
}

/// The file written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactFacts {
    pub file_name: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// `torchscript` (loads in `torch.jit.load`, `torch::jit::load`, `tch::CModule`),
    /// `lite` (loads in the mobile lite interpreter) or `onnx` (ONNX Runtime, TensorRT, ...).
    pub format: String,
    /// Whether BatchNorm, RepConv branches and implicit knowledge are folded.
    pub fused: bool,
    /// Elements in all parameters and buffers of the network.
    pub tensor_elements: i64,
    /// Methods callable on the module.
    pub methods: Vec<String>,
}

/// Wall time of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: Stage,
    pub seconds: f64,
}

/// Outcome of validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationStatus {
    Passed,
    Failed,
    /// Not asked for.
    Skipped,
    /// Asked for but impossible here (for example float16 on a device without kernels);
    /// `note` says why. Never reported as passed.
    NotValidated,
}

/// The comparison of the saved artifact, loaded back, with the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub status: ValidationStatus,
    /// Device the artifact and the reference ran on.
    pub device: String,
    /// What the artifact was compared with.
    pub reference: String,
    /// How the artifact was loaded (`tch::CModule::load`, `lite interpreter`).
    pub loaded_with: String,
    pub note: Option<String>,
    /// The inputs the artifact and the reference ran on, in the order they ran.
    #[serde(default)]
    pub inputs: Vec<ValidationInput>,
    pub checks: Vec<OutputCheck>,
    /// Names of the checks that failed.
    pub failed_outputs: Vec<String>,
    pub seconds: f64,
}

/// One input of validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationInput {
    /// `[B, 3, H, W]`.
    pub shape: Vec<i64>,
    /// What running at this shape proves (`conversion size`, or `dynamic batch and
    /// non-square size`).
    pub proves: String,
    /// The artifact methods run on it, in order (the reference ran once per input).
    pub methods: Vec<String>,
}

/// What kind of numbers a check compares, which picks its tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Pre-sigmoid head outputs.
    Raw,
    /// Box coordinates in input pixels.
    Boxes,
    /// Objectness and class probabilities.
    Probabilities,
    /// Keypoint x, y in input pixels (pose models).
    Keypoints,
    /// Keypoint confidences (pose models), probabilities.
    KeypointConfidences,
    /// Detections after NMS, matched box by box.
    Detections,
    /// A method that must run and return the documented shape.
    Smoke,
}

/// `|artifact - reference| <= abs + rel * |reference|`, element by element.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
}

/// One compared output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputCheck {
    /// `<output>@<B>x<H>x<W>`, for example `decoded.boxes@1x640x640` or `raw.2@2x480x320`.
    pub name: String,
    /// The artifact method that produced it.
    pub method: String,
    pub kind: OutputKind,
    pub input_shape: Vec<i64>,
    pub shape: Vec<i64>,
    /// Largest `|artifact - reference|`; absent when the outputs could not be compared
    /// (different shapes, or the method failed).
    pub max_abs_error: Option<f64>,
    pub mean_abs_error: Option<f64>,
    pub tolerance: Tolerance,
    pub passed: bool,
    /// Extra facts (detection counts, the error when a method failed).
    pub detail: Option<String>,
}

/// Inference latency of the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub device: String,
    /// The method timed (`forward`).
    pub method: String,
    pub input_shape: Vec<i64>,
    /// Untimed calls of the artifact before the first timed one, whatever their method:
    /// the length of `warmup_calls`.
    pub warmup: usize,
    /// Timed calls.
    pub runs: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Every call of the artifact before the first timed one, `method@shape`, in order:
    /// validation's calls, then any made for timing only.
    #[serde(default)]
    pub warmup_calls: Vec<String>,
    /// How many of the timed runs were validation's own call of `forward` at this input
    /// (0 or 1): its output is the one compared with the reference.
    #[serde(default)]
    pub validated_runs: usize,
    /// Timing stopped before a run that would have taken the timed runs past this many
    /// seconds (at least one run); null when the number of runs was fixed.
    #[serde(default)]
    pub budget_s: Option<f64>,
    /// Most timed runs allowed (`runs` when the number was fixed).
    #[serde(default)]
    pub max_runs: usize,
    /// Seconds of all timed runs together.
    #[serde(default)]
    pub timed_s: f64,
}
