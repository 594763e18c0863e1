//! The job as stored ([`JobRow`]) and as the API shows it ([`JobView`]), and the
//! conversion options a job carries ([`JobOptions`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use utoipa::ToSchema;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{RefOr, Schema};
use uuid::Uuid;
use yolots_protocol::report::ConversionReport;
use yolots_protocol::{
    DeviceChoice, DeviceClass, ErrorCode, Format, ImageSize, Mode, Optimize, Output, Precision,
    Stage, limits,
};

/// The states of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, ToSchema)]
#[sqlx(type_name = "job_status", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the job is over (nothing will change it but a retry or a delete).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A deliberate failure of the conversion process, honoured only when the server and the
/// worker both allow test faults.
pub use yolots_protocol::TestFault;

fn yes() -> bool {
    true
}

/// Conversion options of a job; every field is optional (the defaults are those of
/// `yolots convert`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    /// `torchscript` or `onnx` (absent from the stored and shown options when it is the
    /// default, so options written before ONNX keep their text).
    #[serde(default, skip_serializing_if = "Format::is_torchscript")]
    #[schema(schema_with = format_schema)]
    pub format: Format,
    /// `script` (dynamic batch, size and device) or `trace` (fixed size).
    #[serde(default)]
    #[schema(schema_with = mode_schema)]
    pub mode: Mode,
    /// What `forward` returns: `decoded`, `raw` or `detections`.
    #[serde(default)]
    #[schema(schema_with = head_schema)]
    pub head: Output,
    /// `fp32` or `fp16`.
    #[serde(default)]
    #[schema(schema_with = precision_schema)]
    pub precision: Precision,
    /// Fold BatchNorm, RepConv branches and implicit knowledge into convolutions.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub fuse: bool,
    /// `none`, `freeze`, `inference` or `mobile` (a lite-interpreter `.ptl`).
    #[serde(default)]
    #[schema(schema_with = optimize_schema)]
    pub optimize: Optimize,
    /// `[height, width]`: trace size, validation size, letterbox size; multiples of the
    /// model's largest stride.
    #[serde(default)]
    #[schema(schema_with = img_size_schema)]
    pub img_size: ImageSize,
    /// `auto` (the worker's device), `cpu` or `cuda:N`.
    #[serde(default)]
    #[schema(schema_with = device_schema)]
    pub device: DeviceChoice,
    /// Confidence threshold of the `detections` head.
    #[serde(default = "default_conf")]
    #[schema(schema_with = conf_schema)]
    pub conf: f64,
    /// IoU threshold of the `detections` head.
    #[serde(default = "default_iou")]
    #[schema(schema_with = iou_schema)]
    pub iou: f64,
    /// Most detections per image of the `detections` head.
    #[serde(default = "default_max_det")]
    #[schema(schema_with = max_det_schema)]
    pub max_det: i64,
    /// Only in builds with the `test-hooks` feature (the end-to-end tests'): elsewhere an
    /// unknown field, neither accepted nor listed.
    #[cfg(feature = "test-hooks")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub test_fault: Option<TestFault>,
}

fn default_conf() -> f64 {
    limits::DEFAULT_CONF
}
fn default_iou() -> f64 {
    limits::DEFAULT_IOU
}
fn default_max_det() -> i64 {
    limits::DEFAULT_MAX_DET
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            format: Format::default(),
            mode: Mode::default(),
            head: Output::default(),
            precision: Precision::default(),
            fuse: true,
            optimize: Optimize::default(),
            img_size: ImageSize::default(),
            device: DeviceChoice::default(),
            conf: default_conf(),
            iou: default_iou(),
            max_det: default_max_det(),
            #[cfg(feature = "test-hooks")]
            test_fault: None,
        }
    }
}

/// Why options were refused: a sentence, and the option at fault when one is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidOptions {
    pub message: String,
    /// The option refused (`precision`, `conf`...), when the refusal is about one.
    pub option: Option<&'static str>,
}

impl InvalidOptions {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            option: None,
        }
    }
}

impl From<limits::OutOfRange> for InvalidOptions {
    fn from(error: limits::OutOfRange) -> Self {
        Self {
            message: error.to_string(),
            option: Some(error.option),
        }
    }
}

impl From<limits::Incompatible> for InvalidOptions {
    fn from(error: limits::Incompatible) -> Self {
        Self {
            message: error.to_string(),
            option: Some(error.option),
        }
    }
}

impl JobOptions {
    /// Parses the `options` part of an upload: a JSON object (serde would also read a
    /// struct from a positional array, which no one means and no one can read back).
    pub fn parse(text: &str) -> Result<Self, InvalidOptions> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| InvalidOptions::new(e.to_string()))?;
        let serde_json::Value::Object(fields) = value else {
            return Err(InvalidOptions::new(format!(
                "options must be a JSON object of named options, not {}",
                json_kind(&value)
            )));
        };
        Self::deserialize(serde_json::Value::Object(fields))
            .map_err(|e| InvalidOptions::new(e.to_string()))
    }

    /// Checks the values that do not depend on the model, and the options that cannot go
    /// together (the converter's own rule, so a job that could only fail is never queued).
    pub fn check(&self, allow_test_faults: bool) -> Result<(), InvalidOptions> {
        limits::check(self.conf, self.iou, self.max_det, self.img_size)?;
        limits::compatible(self.format, self.mode, self.precision, self.optimize)?;
        if self.test_fault().is_some() && !allow_test_faults {
            return Err(InvalidOptions::new("unknown field `test_fault`"));
        }
        Ok(())
    }

    /// The deliberate fault asked for; always `None` in a build without test hooks.
    pub fn test_fault(&self) -> Option<TestFault> {
        #[cfg(feature = "test-hooks")]
        return self.test_fault;
        #[cfg(not(feature = "test-hooks"))]
        None
    }

    /// Checks the image's pixels (height x width) against a service's ceiling.
    pub fn check_pixels(&self, max_pixels: u64) -> Result<(), InvalidOptions> {
        let pixels = self.img_size.pixels();
        if pixels > max_pixels {
            let ImageSize { height, width } = self.img_size;
            return Err(InvalidOptions {
                message: format!(
                    "img_size {height}x{width} is {pixels} pixels, more than the {max_pixels} \
                     this service converts"
                ),
                option: Some("img_size"),
            });
        }
        Ok(())
    }

    /// Checks the image size against the model's largest stride.
    pub fn check_for_model(&self, strides: &[f64]) -> Result<(), InvalidOptions> {
        let max = strides.iter().fold(0.0f64, |a, &b| a.max(b)).round() as u32;
        let ImageSize { height, width } = self.img_size;
        if max > 0 && (height % max != 0 || width % max != 0) {
            return Err(InvalidOptions {
                message: format!(
                    "img_size {height}x{width} is not a multiple of the model's largest stride \
                     {max}"
                ),
                option: Some("img_size"),
            });
        }
        Ok(())
    }

    /// The canonical text of the options: equal options, equal text (the reuse key).
    pub fn key(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Which workers may run the job: `any`, `cpu` or `cuda`.
    pub fn device_class(&self) -> DeviceClass {
        self.device.class()
    }
}

/// What a JSON value is, for messages.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn spelled(values: Vec<String>, default: String, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some(values))
        .default(Some(serde_json::Value::String(default)))
        .description(Some(description))
        .into()
}

fn format_schema() -> RefOr<Schema> {
    let all = Format::ALL.iter().map(ToString::to_string).collect();
    spelled(
        all,
        Format::default().to_string(),
        "The artifact's format: TorchScript, or ONNX (opset 17).",
    )
}

fn mode_schema() -> RefOr<Schema> {
    let all = Mode::ALL.iter().map(ToString::to_string).collect();
    spelled(
        all,
        Mode::default().to_string(),
        "How the TorchScript is made.",
    )
}

fn head_schema() -> RefOr<Schema> {
    let all = Output::ALL.iter().map(ToString::to_string).collect();
    spelled(
        all,
        Output::default().to_string(),
        "What `forward` returns.",
    )
}

fn precision_schema() -> RefOr<Schema> {
    let all = Precision::ALL.iter().map(ToString::to_string).collect();
    spelled(all, Precision::default().to_string(), "Element type.")
}

fn optimize_schema() -> RefOr<Schema> {
    let all = Optimize::ALL.iter().map(ToString::to_string).collect();
    spelled(
        all,
        Optimize::default().to_string(),
        "Graph optimisation before saving.",
    )
}

fn img_size_schema() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::Integer))
                .minimum(Some(*limits::IMAGE_SIDE.start()))
                .maximum(Some(*limits::IMAGE_SIDE.end())),
        )
        .min_items(Some(2))
        .max_items(Some(2))
        .default(Some(serde_json::json!([640, 640])))
        .description(Some("[height, width] in pixels."))
        .into()
}

fn threshold_schema(default: f64) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Number))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
        .minimum(Some(*limits::THRESHOLD.start()))
        .maximum(Some(*limits::THRESHOLD.end()))
        .default(Some(serde_json::json!(default)))
        .into()
}

fn conf_schema() -> RefOr<Schema> {
    threshold_schema(limits::DEFAULT_CONF)
}

fn iou_schema() -> RefOr<Schema> {
    threshold_schema(limits::DEFAULT_IOU)
}

fn max_det_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(*limits::MAX_DET.start()))
        .maximum(Some(*limits::MAX_DET.end()))
        .default(Some(serde_json::json!(limits::DEFAULT_MAX_DET)))
        .into()
}

fn device_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .pattern(Some("^(auto|cpu|cuda(:[0-9]{1,2})?)$"))
        .default(Some(serde_json::json!("auto")))
        .description(Some("`auto`, `cpu` or `cuda:N`."))
        .into()
}

/// A job as stored: every column typed (the queries that read it are checked against the
/// schema when the service is compiled).
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub status: JobStatus,
    pub options: Json<JobOptions>,
    pub options_key: String,
    pub device_class: DeviceClass,
    pub source_name: String,
    pub source_size: i64,
    pub source_sha256: String,
    pub source_key: String,
    pub stage: Option<Stage>,
    pub progress: f32,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_after: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_token: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    pub report: Option<Json<ConversionReport>>,
    pub artifact_key: Option<String>,
    pub artifact_name: Option<String>,
    pub artifact_size: Option<i64>,
    pub artifact_sha256: Option<String>,
    pub reused_from: Option<Uuid>,
    pub event_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The uploaded checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceView {
    /// The file name the client gave (for display only).
    pub name: String,
    pub size: i64,
    pub sha256: String,
}

/// Why a job failed (or why its last attempt did).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorView {
    /// Stable code: a reader code, `validation_failed`, `timeout`, `conversion_crashed`...
    pub code: String,
    pub message: String,
}

/// The converted file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactView {
    pub file_name: String,
    pub size: i64,
    pub sha256: String,
}

/// Where to go next.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub report: String,
    pub artifact: String,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    pub status: JobStatus,
    /// The conversion stage last reported (`reading`, `validating`, `done`...).
    pub stage: Option<String>,
    /// How far the conversion is, 0 to 1.
    pub progress: f32,
    pub options: JobOptions,
    pub source: SourceView,
    /// Attempts started so far.
    pub attempts: i32,
    pub max_attempts: i32,
    /// The last error (also set while a retry waits in the queue).
    pub error: Option<ErrorView>,
    /// Present once the job succeeded.
    pub artifact: Option<ArtifactView>,
    /// The job whose artifact this one reuses (same source and options).
    pub reused_from: Option<Uuid>,
    /// A cancel was asked for and the worker has not stopped yet.
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub links: Links,
}

impl From<&JobRow> for JobView {
    fn from(row: &JobRow) -> Self {
        let base = format!("/api/v1/jobs/{}", row.id);
        let options = JobOptions {
            #[cfg(feature = "test-hooks")]
            test_fault: None,
            ..row.options.0.clone()
        };
        JobView {
            id: row.id,
            status: row.status,
            stage: row.stage.map(|stage| stage.as_str().to_owned()),
            progress: row.progress,
            options,
            source: SourceView {
                // Names stored before they were cleaned on arrival are cleaned here.
                name: crate::names::display_name(&row.source_name),
                size: row.source_size,
                sha256: row.source_sha256.clone(),
            },
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            error: row.error_code.map(|code| ErrorView {
                code: code.as_str().to_owned(),
                message: row.error_message.clone().unwrap_or_default(),
            }),
            artifact: match (
                row.status,
                &row.artifact_name,
                row.artifact_size,
                &row.artifact_sha256,
            ) {
                (JobStatus::Succeeded, Some(name), Some(size), Some(sha)) => Some(ArtifactView {
                    file_name: name.clone(),
                    size,
                    sha256: sha.clone(),
                }),
                _ => None,
            },
            reused_from: row.reused_from,
            cancel_requested: row.cancel_requested,
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            links: Links {
                events: format!("{base}/events"),
                report: format!("{base}/report"),
                artifact: format!("{base}/artifact"),
                self_: base,
            },
        }
    }
}

/// `NAME.torchscript.pt` (`.ptl` for mobile, `NAME.onnx` for ONNX) from the uploaded
/// file's name, reduced to characters safe in a header and a storage key.
pub fn artifact_name(source_name: &str, format: Format, optimize: Optimize) -> String {
    let stem = source_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim_end_matches(".pth")
        .trim_end_matches(".pt");
    let mut safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    safe = safe.trim_matches('.').to_owned();
    if safe.is_empty() {
        safe = "model".into();
    }
    if format == Format::Onnx {
        return format!("{safe}.onnx");
    }
    let extension = if optimize == Optimize::Mobile {
        "ptl"
    } else {
        "pt"
    };
    format!("{safe}.torchscript.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_and_round_trip() {
        let o = JobOptions::parse("").unwrap();
        assert_eq!(o, JobOptions::default());
        let o = JobOptions::parse(r#"{"mode":"trace","img_size":[320,480],"device":"cuda:1"}"#)
            .unwrap();
        assert_eq!(o.mode, Mode::Trace);
        assert_eq!(o.img_size, ImageSize::new(320, 480));
        assert_eq!(o.device_class(), DeviceClass::Cuda);
        assert_eq!(JobOptions::parse(&o.key()).unwrap(), o);
        assert!(JobOptions::parse(r#"{"mode":"jit"}"#).is_err());
        assert!(JobOptions::parse(r#"{"colour":"red"}"#).is_err());
        assert!(JobOptions::parse("[1]").is_err());
    }

    #[test]
    fn options_are_an_object_and_nothing_else() {
        // Every field in order, as serde would read a struct from a sequence.
        let positional = r#"["torchscript","trace","decoded","fp32",true,"none",[640,640],"cpu",0.25,0.45,300,null]"#;
        for text in [positional, "null", "3", r#""trace""#, "true", "[]"] {
            let error = JobOptions::parse(text).unwrap_err();
            assert!(error.message.contains("JSON object"), "{text}: {error}");
        }
        assert_eq!(
            JobOptions::parse(r#"{"mode": "trace"}"#).unwrap().mode,
            Mode::Trace
        );
    }

    #[test]
    fn incompatible_pairs_are_refused_naming_the_option() {
        for (text, option) in [
            (
                r#"{"optimize": "mobile", "precision": "fp16"}"#,
                "precision",
            ),
            (r#"{"format": "onnx", "mode": "trace"}"#, "mode"),
            (r#"{"format": "onnx", "optimize": "inference"}"#, "optimize"),
        ] {
            let error = JobOptions::parse(text).unwrap().check(false).unwrap_err();
            assert_eq!(error.option, Some(option), "{text}: {error}");
            assert!(error.message.starts_with(option), "{text}: {error}");
        }
        let fine = JobOptions::parse(r#"{"optimize": "mobile", "precision": "fp32"}"#).unwrap();
        assert!(fine.check(false).is_ok());
    }

    /// Built without the test hooks (`cargo build -p yolots`, the release builds), the
    /// option is unknown: refused, and not among the fields the refusal lists.
    #[cfg(not(feature = "test-hooks"))]
    #[test]
    fn without_test_hooks_test_fault_is_an_unknown_field() {
        let refused = JobOptions::parse(r#"{"test_fault": "abort"}"#).unwrap_err();
        assert!(
            refused.message.contains("unknown field `test_fault`"),
            "{refused}"
        );
        assert_eq!(
            refused.message.matches("test_fault").count(),
            1,
            "{refused}"
        );
    }

    #[test]
    fn options_are_checked() {
        let mut o = JobOptions::default();
        assert!(o.check(false).is_ok());
        o.conf = 1.5;
        assert_eq!(o.check(false).err().and_then(|e| e.option), Some("conf"));
        #[cfg(feature = "test-hooks")]
        {
            o = JobOptions {
                test_fault: Some(TestFault::Abort),
                ..JobOptions::default()
            };
            assert!(o.check(false).is_err());
            assert!(o.check(true).is_ok());
        }
        o = JobOptions {
            img_size: ImageSize::new(320, 100),
            ..JobOptions::default()
        };
        assert!(o.check(false).is_ok());
        assert!(o.check_for_model(&[8.0, 16.0, 32.0]).is_err());
        assert!(
            JobOptions::default()
                .check_for_model(&[8.0, 16.0, 32.0])
                .is_ok()
        );
    }

    #[test]
    fn the_format_keeps_older_options_text_and_refuses_what_onnx_cannot_do() {
        let default = JobOptions::default();
        let named = JobOptions::parse(r#"{"format": "torchscript"}"#).unwrap();
        // The default format is left out of the text: options stored before ONNX keep
        // their reuse key.
        assert_eq!(named.key(), default.key());
        assert!(!default.key().contains("format"));
        let onnx = JobOptions::parse(r#"{"format": "onnx"}"#).unwrap();
        assert_eq!(onnx.format, Format::Onnx);
        assert!(onnx.key().contains(r#""format":"onnx""#));
        assert!(onnx.check(false).is_ok());
        for text in [
            r#"{"format": "onnx", "mode": "trace"}"#,
            r#"{"format": "onnx", "optimize": "freeze"}"#,
        ] {
            let options = JobOptions::parse(text).unwrap();
            assert!(options.check(false).is_err(), "{text}");
        }
        assert!(JobOptions::parse(r#"{"format": "tflite"}"#).is_err());
    }

    #[test]
    fn artifact_names_are_safe() {
        assert_eq!(
            artifact_name("best.pt", Format::Torchscript, Optimize::None),
            "best.torchscript.pt"
        );
        assert_eq!(
            artifact_name(
                "../../etc/pass wd\".pt",
                Format::Torchscript,
                Optimize::Mobile
            ),
            "pass_wd_.torchscript.ptl"
        );
        assert_eq!(
            artifact_name("..", Format::Torchscript, Optimize::None),
            "model.torchscript.pt"
        );
        assert_eq!(
            artifact_name("runs/best.pt", Format::Onnx, Optimize::None),
            "best.onnx"
        );
    }
}
