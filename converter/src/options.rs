//! What a conversion is asked to do: the request, and what its option types mean to
//! libtorch.
//!
//! The option types live in `yolots-protocol` (shared with the programs that do not load
//! libtorch); each parses from and prints as its CLI spelling (`FromStr` / `Display`) and
//! serialises the same way, so the CLI, the REST API and the report agree.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use yolots_protocol::{
    DeviceChoice, Head, ImageSize, Mode, Optimize, ParseOptionError, Precision, limits,
};

/// What a precision means to libtorch.
pub(crate) trait PrecisionKind {
    /// The tensor element type.
    fn kind(self) -> tch::Kind;
}

impl PrecisionKind for Precision {
    fn kind(self) -> tch::Kind {
        match self {
            Precision::Fp32 => tch::Kind::Float,
            Precision::Fp16 => tch::Kind::Half,
        }
    }
}

/// What a device choice means to the libtorch of this process.
pub trait ResolveDevice {
    /// The device this choice means on this machine.
    fn resolve(self) -> tch::Device;
}

impl ResolveDevice for DeviceChoice {
    fn resolve(self) -> tch::Device {
        // Only a choice that may mean CUDA asks about devices (which loads the CUDA
        // backend when a driver is present).
        let devices = match self {
            DeviceChoice::Cpu => 0,
            DeviceChoice::Auto | DeviceChoice::Cuda(_) => crate::runtime::cuda_device_count(),
        };
        match self.resolve_for(devices) {
            DeviceChoice::Cuda(n) => tch::Device::Cuda(n),
            DeviceChoice::Auto | DeviceChoice::Cpu => tch::Device::Cpu,
        }
    }
}

/// A deliberate fault, for tests that prove validation catches a broken artifact.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Perturbation {
    /// Source name of the parameter to change (`model.0.conv.weight`); after fusion the
    /// fused tensor of that name.
    pub parameter: String,
    /// Added to every element of the artifact's copy (the reference keeps the original).
    pub delta: f64,
}

/// Everything one conversion needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvertRequest {
    /// The checkpoint (`.pt`).
    pub input: PathBuf,
    /// Where the artifact goes (`.torchscript`/`.pt`; `.ptl` with `Optimize::Mobile`).
    pub output: PathBuf,
    pub mode: Mode,
    pub head: Head,
    pub precision: Precision,
    /// Fold BatchNorm, RepConv branches and implicit knowledge into convolutions.
    pub fuse: bool,
    pub optimize: Optimize,
    /// Conversion size: trace size, validation size, `detect_image` letterbox size.
    pub img_size: ImageSize,
    pub device: DeviceChoice,
    /// Confidence threshold of the `detections` head.
    pub conf: f64,
    /// IoU threshold of the `detections` head.
    pub iou: f64,
    /// Most detections per image of the `detections` head.
    pub max_det: i64,
    /// Load the artifact back and compare it with the reference.
    pub validate: bool,
    /// The most timed runs of `forward` after warm-up (0 skips timing).
    pub latency_runs: usize,
    /// Stop timing before a run that would take the timed runs past this many seconds
    /// (at least one run is made); `None`: exactly `latency_runs` runs. Requests written
    /// before the budget existed read as `None`, the fixed count they meant.
    #[serde(default)]
    pub latency_budget_s: Option<f64>,
    /// Where to write `report.json` (also written when validation fails).
    pub report: Option<PathBuf>,
    #[doc(hidden)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturb: Option<Perturbation>,
}

impl ConvertRequest {
    /// A request with the CLI defaults.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        ConvertRequest {
            input: input.into(),
            output: output.into(),
            mode: Mode::default(),
            head: Head::default(),
            precision: Precision::default(),
            fuse: true,
            optimize: Optimize::default(),
            img_size: ImageSize::default(),
            device: DeviceChoice::default(),
            conf: limits::DEFAULT_CONF,
            iou: limits::DEFAULT_IOU,
            max_det: limits::DEFAULT_MAX_DET,
            validate: true,
            latency_runs: 10,
            latency_budget_s: Some(crate::timing::DEFAULT_LATENCY_BUDGET_S),
            report: None,
            perturb: None,
        }
    }
}
