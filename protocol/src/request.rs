//! What one conversion is asked to do, as one message: `yolots-converter convert` builds
//! it from its flags, and a worker hands it to `yolots-converter run` on stdin.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::options::{
    DeviceChoice, Format, ImageSize, Mode, Optimize, Output, ParseOptionError, Precision, limits,
};

crate::options::spelled_enum!(TestFault, "test fault", {
    Abort => "abort",
    Hang => "hang",
    Slow => "slow",
});

/// A deliberate failure of the conversion process, for the service's fault tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestFault {
    /// `abort()` in the middle of the conversion.
    Abort,
    /// Stop making progress (until the time limit kills the process).
    Hang,
    /// Sleep a few seconds in the middle of the conversion, then go on.
    Slow,
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
    /// Where the artifact goes (`.torchscript`/`.pt`; `.ptl` with `Optimize::Mobile`;
    /// `.onnx` with `Format::Onnx`).
    pub output: PathBuf,
    /// TorchScript or ONNX (requests written before ONNX existed read as TorchScript).
    #[serde(default)]
    pub format: Format,
    pub mode: Mode,
    pub head: Output,
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
    /// The checkpoint's name as its owner knows it, for the report and the artifact's
    /// metadata (a service stores uploads under names of its own); `None`: the input's
    /// file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    #[doc(hidden)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturb: Option<Perturbation>,
    /// A deliberate failure for the service's fault tests, acted on once the `building`
    /// stage is reported (workers pass it only when the server allows test faults). Only
    /// in builds with the `test-hooks` feature; others ignore it.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fault: Option<TestFault>,
}

impl ConvertRequest {
    /// A request with the CLI defaults.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        ConvertRequest {
            input: input.into(),
            output: output.into(),
            format: Format::default(),
            mode: Mode::default(),
            head: Output::default(),
            precision: Precision::default(),
            fuse: true,
            optimize: Optimize::default(),
            img_size: ImageSize::default(),
            device: DeviceChoice::default(),
            conf: limits::DEFAULT_CONF,
            iou: limits::DEFAULT_IOU,
            max_det: limits::DEFAULT_MAX_DET,
            validate: true,
            latency_runs: limits::DEFAULT_LATENCY_RUNS,
            latency_budget_s: Some(limits::DEFAULT_LATENCY_BUDGET_S),
            #[cfg(feature = "test-hooks")]
            test_fault: None,
            report: None,
            source_name: None,
            perturb: None,
        }
    }

    /// The deliberate fault asked for; always `None` in a build without test hooks.
    pub fn test_fault(&self) -> Option<TestFault> {
        #[cfg(feature = "test-hooks")]
        return self.test_fault;
        #[cfg(not(feature = "test-hooks"))]
        None
    }

    /// The same request asking for `fault`; a build without test hooks keeps none.
    pub fn with_test_fault(self, fault: Option<TestFault>) -> Self {
        #[cfg(feature = "test-hooks")]
        return ConvertRequest {
            test_fault: fault,
            ..self
        };
        #[cfg(not(feature = "test-hooks"))]
        {
            let _ = fault;
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built without the test hooks (the release builds), a request's `test_fault` is
    /// ignored: the converter never acts on it.
    #[cfg(not(feature = "test-hooks"))]
    #[test]
    fn without_test_hooks_a_test_fault_is_ignored() {
        let request: ConvertRequest = serde_json::from_str(
            &serde_json::to_string(&ConvertRequest::new("in.pt", "out.pt"))
                .unwrap()
                .replacen('{', r#"{"test_fault":"abort","#, 1),
        )
        .unwrap();
        assert_eq!(request.test_fault(), None);
    }

    #[test]
    fn a_request_round_trips_as_json_and_old_requests_still_read() {
        let request = ConvertRequest::new("in.pt", "out.pt").with_test_fault(Some(TestFault::Hang));
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text.contains(r#""test_fault":"hang""#),
            cfg!(feature = "test-hooks"),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<ConvertRequest>(&text).unwrap(),
            request
        );
        let plain = serde_json::to_string(&ConvertRequest::new("in.pt", "out.pt")).unwrap();
        assert!(
            !plain.contains("test_fault") && !plain.contains("perturb"),
            "{plain}"
        );
    }
}
