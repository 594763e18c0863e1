//! `yolots.json`, the extra file stored inside every artifact: what a client needs to
//! feed the model and read its output without the report.

use serde::{Deserialize, Serialize};

use crate::options::{Format, ImageSize, Mode, Optimize, Output, Precision};
use yolots_protocol::Task;

/// Name of the extra file in the archive (`extra/yolots.json`).
pub const METADATA_FILE: &str = "yolots.json";

/// The contents of `yolots.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMetadata {
    pub format: String,
    /// `detect`, or `pose` for keypoint models (absent in files written before pose
    /// models were supported: `detect`).
    #[serde(default)]
    pub task: Task,
    pub names: Vec<String>,
    pub nc: usize,
    /// Pose models: `[nkpt, 3]`, each keypoint's x, y (pixels) and confidence, after the
    /// box and class columns of every output row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpt_shape: Option<[usize; 2]>,
    /// Pose models with the COCO layout (17 keypoints): the keypoints' names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypoint_names: Option<Vec<String>>,
    /// Pose models with the COCO layout: keypoint index pairs to join when drawing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skeleton: Option<Vec<[usize; 2]>>,
    /// Stride of each output level, in input pixels.
    pub strides: Vec<i64>,
    /// Anchors per level, `(w, h)` in input pixels.
    pub anchors: Vec<Vec<[f32; 2]>>,
    pub input: InputSpec,
    pub head: Output,
    pub precision: Precision,
    pub mode: Mode,
    pub optimize: Optimize,
    pub fused: bool,
    /// Thresholds `forward` uses when the head is `detections`.
    pub conf_thres: f64,
    pub iou_thres: f64,
    pub max_det: i64,
    pub source_sha256: String,
    pub source_file: String,
    pub yolots_version: String,
    pub libtorch_version: Option<String>,
    /// `torchscript` or `onnx` (absent in files written before ONNX: `torchscript`).
    #[serde(default)]
    pub artifact_format: Format,
    /// RFC 3339, UTC.
    pub created: String,
}

/// How `forward` wants its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// `[B, 3, H, W]` with `-1` for sizes that may vary.
    pub shape: Vec<i64>,
    pub dtype: String,
    /// `RGB`, values in `[0, 1]`.
    pub color: String,
    pub range: [f64; 2],
    /// Size used at conversion (trace size, `detect_image` letterbox size).
    pub img_size: ImageSize,
    /// H and W must be multiples of this.
    pub size_multiple: i64,
    /// Batch and size are free (script mode) or fixed (trace mode).
    pub dynamic: bool,
}

/// Format tag of `yolots.json`.
pub const METADATA_FORMAT: &str = "yolots.artifact/v1";
