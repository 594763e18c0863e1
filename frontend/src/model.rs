//! The JSON the page reads and writes: `/api/v1/config`, conversion options, jobs, job
//! events, the inspection summary and the conversion report. Every struct tolerates
//! missing fields (serde defaults): a newer or older service still renders.

use serde::{Deserialize, Deserializer, Serialize};
use yolots_protocol::{
    COCO_KEYPOINT_NAMES, DeviceChoice, Format, ImageSize, Mode, Optimize, Output, Precision, Stage,
    Task, keypoint_layout, limits,
};

/// A stage as the service spells it; `None` when absent, null or unknown to this page.
fn known_stage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Stage>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(text.and_then(|t| t.parse().ok()))
}

/// Why a file or a request was refused: a stable code and a message for people.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// An `application/problem+json` answer (RFC 9457).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Problem {
    pub title: String,
    pub status: u16,
    pub detail: Option<String>,
    pub code: String,
}

impl Problem {
    /// The message to show: the detail when there is one, else the title.
    pub fn message(&self) -> String {
        match &self.detail {
            Some(detail) if !detail.is_empty() => detail.clone(),
            _ => self.title.clone(),
        }
    }

    pub fn refusal(&self) -> Refusal {
        Refusal::new(&self.code, self.message())
    }
}

/// `GET /api/v1/config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub max_upload_bytes: u64,
    pub limits: Limits,
    pub devices: Vec<String>,
    pub defaults: Options,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_upload_bytes: u64::MAX,
            limits: Limits::default(),
            devices: vec!["cpu".to_owned()],
            defaults: Options::default(),
        }
    }
}

/// The conversion limits of the service (`null` or absent: no limit).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_parameters: Option<u64>,
    pub max_layers: Option<u64>,
    pub job_timeout_seconds: Option<f64>,
}

/// Conversion options, in the protocol's types (on the wire as the CLI spells them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    pub format: Format,
    pub mode: Mode,
    pub head: Output,
    pub precision: Precision,
    pub fuse: bool,
    pub optimize: Optimize,
    /// `[height, width]` in pixels.
    pub img_size: [u32; 2],
    pub device: DeviceChoice,
    pub conf: f64,
    pub iou: f64,
    pub max_det: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            format: Format::default(),
            mode: Mode::default(),
            head: Output::default(),
            precision: Precision::default(),
            fuse: true,
            optimize: Optimize::default(),
            img_size: {
                let size = ImageSize::default();
                [size.height, size.width]
            },
            device: DeviceChoice::default(),
            conf: limits::DEFAULT_CONF,
            iou: limits::DEFAULT_IOU,
            max_det: u32::try_from(limits::DEFAULT_MAX_DET).unwrap_or(u32::MAX),
        }
    }
}

impl Options {
    /// Sets the format; ONNX takes script mode and no TorchScript optimisation.
    pub fn set_format(&mut self, format: Format) {
        self.format = format;
        if format == Format::Onnx {
            self.mode = Mode::Script;
            self.optimize = Optimize::None;
        }
    }

    /// Sets the mode; a mode ONNX does not take goes back to TorchScript.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        if Format::Onnx.check(mode, self.optimize).is_err() {
            self.format = Format::Torchscript;
        }
    }

    /// Sets the optimisation; one ONNX does not take goes back to TorchScript.
    pub fn set_optimize(&mut self, optimize: Optimize) {
        self.optimize = optimize;
        if Format::Onnx.check(self.mode, optimize).is_err() {
            self.format = Format::Torchscript;
        }
    }
}

/// The reader's summary of a checkpoint (`inspect::Summary`, schema version 1), the
/// fields the page shows.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Inspection {
    pub model: String,
    pub variant: String,
    pub width_multiple: Option<f64>,
    pub source: String,
    pub head: String,
    /// `detect`, or `pose` for a head with keypoints (absent from older readers: detect).
    pub task: Task,
    pub nc: usize,
    /// Keypoints per detection (0 for detection models).
    pub nkpt: usize,
    /// The keypoints' names when the layout is known (COCO's 17), else empty.
    pub keypoint_names: Vec<String>,
    pub names: Vec<String>,
    pub strides: Vec<f64>,
    pub anchors: Vec<Vec<[f64; 2]>>,
    pub parameters: u64,
    pub weights_dtype: String,
    pub fused: bool,
    pub epoch: Option<i64>,
    pub layers: Vec<LayerRow>,
}

impl Inspection {
    /// The largest stride: image sides must be multiples of it.
    pub fn max_stride(&self) -> u32 {
        let max = self.strides.iter().copied().fold(0.0, f64::max);
        if max >= 1.0 && max <= f64::from(u16::MAX) {
            max as u32
        } else {
            32
        }
    }

    /// `17 per detection, COCO person keypoints`; `None` for detection models.
    pub fn keypoints(&self) -> Option<String> {
        let coco = self
            .keypoint_names
            .iter()
            .map(String::as_str)
            .eq(COCO_KEYPOINT_NAMES);
        keypoints_text(self.nkpt, coco)
    }
}

/// How many keypoints a model predicts and whose layout they follow, for people; `None`
/// without keypoints.
fn keypoints_text(nkpt: usize, coco: bool) -> Option<String> {
    let layout = if coco {
        "COCO person keypoints"
    } else {
        "custom layout"
    };
    (nkpt > 0).then(|| format!("{nkpt} per detection, {layout}"))
}

/// A task for people: what the model's outputs hold besides the CLI spelling.
pub fn task_text(task: Task) -> &'static str {
    match task {
        Task::Detect => "detect (boxes)",
        Task::Pose => "pose (boxes and keypoints)",
    }
}

/// One layer of the summary.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LayerRow {
    pub index: usize,
    pub from: Vec<i64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub out_channels: usize,
    pub parameters: u64,
    pub details: String,
}

/// Where a job stands, as the service spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    #[default]
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// A status a newer service added: shown as it is spelled, never final.
    #[serde(other)]
    Unknown,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Unknown => "unknown",
        }
    }

    /// `succeeded`, `failed` and `cancelled` never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Queued or running: the job may still change by itself.
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// A conversion job.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    /// The stage last reported; `None` also for a stage this page does not know.
    #[serde(deserialize_with = "known_stage")]
    pub stage: Option<Stage>,
    pub progress: Option<f64>,
    pub options: Options,
    pub source: Option<SourceFile>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub error: Option<Refusal>,
    pub artifact: Option<ArtifactFile>,
    pub reused_from: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub links: Links,
}

impl Job {
    /// `succeeded`, `failed` and `cancelled` never change again.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    fn link(&self, given: &str, tail: &str) -> String {
        if given.is_empty() {
            format!("/api/v1/jobs/{}{tail}", self.id)
        } else {
            given.to_owned()
        }
    }

    pub fn self_link(&self) -> String {
        self.link(&self.links.self_, "")
    }

    pub fn events_link(&self) -> String {
        self.link(&self.links.events, "/events")
    }

    pub fn report_link(&self) -> String {
        self.link(&self.links.report, "/report")
    }

    pub fn artifact_link(&self) -> String {
        self.link(&self.links.artifact, "/artifact")
    }

    pub fn file_name(&self) -> &str {
        self.source.as_ref().map_or("", |s| s.name.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SourceFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ArtifactFile {
    pub file_name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub report: String,
    pub artifact: String,
}

/// `GET /api/v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct JobList {
    pub jobs: Vec<Job>,
    pub page: u32,
    pub per_page: u32,
    pub total: u64,
}

/// `POST /api/v1/sessions` and `GET /api/v1/session`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Session {
    pub owner: Owner,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Owner {
    pub id: String,
    pub name: String,
    pub is_admin: bool,
}

/// The data of an `event: progress`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Progress {
    #[serde(deserialize_with = "known_stage")]
    pub stage: Option<Stage>,
    pub fraction: Option<f64>,
    pub message: Option<String>,
}

/// The converter's `report.json` (`yolots.report/v1`), the fields the page shows.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Report {
    pub schema: String,
    pub status: String,
    pub created: String,
    pub source: ReportSource,
    pub options: serde_json::Value,
    pub environment: Environment,
    pub artifact: ReportArtifact,
    pub stages: Vec<StageTime>,
    pub validation: Validation,
    pub latency: Option<Latency>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ReportSource {
    pub file_name: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub variant: String,
    pub model: String,
    pub classes: usize,
    pub names: Vec<String>,
    /// Absent from reports written before pose models were supported: detect.
    pub task: Task,
    pub nkpt: usize,
    pub parameters: u64,
    pub layers: usize,
    pub head: String,
    pub strides: Vec<f64>,
    pub weights_dtype: String,
    pub epoch: Option<i64>,
    pub already_fused: bool,
}

impl ReportSource {
    /// `17 per detection, COCO person keypoints`; `None` for detection models. The report
    /// names no keypoints: the converter gives COCO's names to every 17-keypoint model.
    pub fn keypoints(&self) -> Option<String> {
        keypoints_text(self.nkpt, keypoint_layout(self.nkpt).is_some())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Environment {
    pub yolots_version: String,
    pub libtorch_version: Option<String>,
    pub device: String,
    pub cuda_devices: usize,
    pub cpu_threads: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ReportArtifact {
    pub file_name: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub format: String,
    pub fused: bool,
    pub tensor_elements: i64,
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Validation {
    pub status: String,
    pub device: String,
    pub reference: String,
    pub loaded_with: String,
    pub note: Option<String>,
    pub checks: Vec<OutputCheck>,
    pub failed_outputs: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OutputCheck {
    pub name: String,
    pub method: String,
    pub kind: String,
    pub input_shape: Vec<i64>,
    pub shape: Vec<i64>,
    pub max_abs_error: Option<f64>,
    pub mean_abs_error: Option<f64>,
    pub tolerance: Tolerance,
    pub passed: bool,
    pub detail: Option<String>,
}

impl OutputCheck {
    /// What the check compares, for people (the report's `OutputKind`); `None` for a kind
    /// this page does not know yet.
    pub fn compares(&self) -> Option<&'static str> {
        Some(match self.kind.as_str() {
            "raw" => "pre-activation head outputs",
            "boxes" => "box coordinates, input pixels",
            "probabilities" => "objectness and class probabilities",
            "keypoints" => "keypoint coordinates, input pixels",
            "keypoint_confidences" => "keypoint confidences",
            "detections" => "detections after NMS",
            "smoke" => "runs and returns the documented shape",
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub device: String,
    pub method: String,
    pub input_shape: Vec<i64>,
    pub warmup: usize,
    pub runs: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_takes_script_mode_and_no_torchscript_optimisation() {
        let mut o = Options {
            mode: Mode::Trace,
            optimize: Optimize::Mobile,
            ..Options::default()
        };
        o.set_format(Format::Onnx);
        assert_eq!(
            (o.format, o.mode, o.optimize),
            (Format::Onnx, Mode::Script, Optimize::None)
        );
        o.set_mode(Mode::Trace);
        assert_eq!(o.format, Format::Torchscript);
        o.set_format(Format::Onnx);
        o.set_optimize(Optimize::Freeze);
        assert_eq!(o.format, Format::Torchscript);
        o.set_format(Format::Onnx);
        o.set_mode(Mode::Script);
        assert_eq!(o.format, Format::Onnx);
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["format"], "onnx");
    }

    #[test]
    fn a_job_without_links_gets_the_documented_ones() {
        let job: Job = serde_json::from_str(r#"{"id": "abc", "status": "running"}"#).unwrap();
        assert_eq!(job.events_link(), "/api/v1/jobs/abc/events");
        assert_eq!(job.artifact_link(), "/api/v1/jobs/abc/artifact");
        assert!(!job.is_final());
    }

    #[test]
    fn a_problem_prefers_its_detail() {
        let p: Problem =
            serde_json::from_str(r#"{"title": "Bad", "detail": "worse", "code": "x"}"#).unwrap();
        assert_eq!(p.message(), "worse");
        assert_eq!(p.refusal().code, "x");
    }

    #[test]
    fn the_max_stride_falls_back_to_32() {
        let mut i = Inspection::default();
        assert_eq!(i.max_stride(), 32);
        i.strides = vec![8.0, 16.0, 32.0, 64.0];
        assert_eq!(i.max_stride(), 64);
    }

    #[test]
    fn a_pose_summary_reads_its_task_and_keypoints() {
        let json = serde_json::json!({
            "head": "IKeypoint", "variant": "yolov7-w6-pose", "task": "pose", "nc": 1,
            "nkpt": 17, "keypoint_names": COCO_KEYPOINT_NAMES, "names": ["person"],
        });
        let pose: Inspection = serde_json::from_value(json).unwrap();
        assert_eq!(pose.task, Task::Pose);
        assert_eq!(pose.nkpt, 17);
        assert_eq!(task_text(pose.task), "pose (boxes and keypoints)");
        assert_eq!(
            pose.keypoints().as_deref(),
            Some("17 per detection, COCO person keypoints")
        );

        let custom = Inspection {
            keypoint_names: Vec::new(),
            nkpt: 5,
            ..pose
        };
        assert_eq!(
            custom.keypoints().as_deref(),
            Some("5 per detection, custom layout")
        );
    }

    #[test]
    fn a_summary_from_before_pose_support_is_a_detection_model() {
        let old: Inspection =
            serde_json::from_str(r#"{"head": "IDetect", "nc": 3, "names": ["a", "b", "c"]}"#)
                .unwrap();
        assert_eq!(old.task, Task::Detect);
        assert_eq!((old.nkpt, old.keypoint_names.len()), (0, 0));
        assert_eq!(old.keypoints(), None);
        assert_eq!(task_text(old.task), "detect (boxes)");
    }

    #[test]
    fn a_pose_report_reads_its_task_keypoints_and_keypoint_checks() {
        let report: Report = serde_json::from_str(
            r#"{"source": {"head": "IKeypoint", "task": "pose", "nkpt": 17, "classes": 1},
                "validation": {"checks": [
                    {"name": "decoded.keypoints.x@1x640x640", "kind": "keypoints"},
                    {"name": "decoded.keypoints.conf@1x640x640", "kind": "keypoint_confidences"}
                ]}}"#,
        )
        .unwrap();
        assert_eq!(report.source.task, Task::Pose);
        assert_eq!(
            report.source.keypoints().as_deref(),
            Some("17 per detection, COCO person keypoints")
        );
        let compares: Vec<_> = report
            .validation
            .checks
            .iter()
            .map(OutputCheck::compares)
            .collect();
        assert_eq!(
            compares,
            [
                Some("keypoint coordinates, input pixels"),
                Some("keypoint confidences")
            ]
        );
    }

    #[test]
    fn a_report_from_before_pose_support_is_a_detection_model() {
        let report: Report = serde_json::from_str(
            r#"{"source": {"head": "IDetect", "classes": 3},
                "validation": {"checks": [
                    {"name": "decoded.boxes@1x640x640", "kind": "boxes"},
                    {"name": "later@1x640x640", "kind": "something_newer"}
                ]}}"#,
        )
        .unwrap();
        assert_eq!((report.source.task, report.source.nkpt), (Task::Detect, 0));
        assert_eq!(report.source.keypoints(), None);
        let checks = &report.validation.checks;
        assert_eq!(checks[0].compares(), Some("box coordinates, input pixels"));
        assert_eq!(checks[1].compares(), None);
    }
}
