//! The errors a conversion can end with, sorted by who has to act on them.

use std::path::PathBuf;

use yolots_protocol::ErrorCode;

use crate::report::ConversionReport;

/// Why a conversion did not produce a validated artifact.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input is not a checkpoint the reader accepts (unsupported or hostile file).
    /// The CLI exits with status 2 and prints the reader's message.
    #[error("{0}")]
    Input(#[source] crate::checkpoint_api::Error),

    /// The description is valid but asks for something the converter cannot build
    /// (for example a layer wiring no YOLOv7 config produces). Treated like `Input`.
    #[error("unsupported model: {0}")]
    Unsupported(String),

    /// An option does not fit the model (for example an image size that is not a
    /// multiple of the largest stride).
    #[error("invalid option: {0}")]
    Options(String),

    /// The artifact was written but does not reproduce the reference within the
    /// tolerances. The report (also written to disk when asked) says which outputs
    /// diverged. The CLI exits with status 3.
    #[error("validation failed: {} diverged from the reference", failed_outputs.join(", "))]
    ValidationFailed {
        report: Box<ConversionReport>,
        failed_outputs: Vec<String>,
    },

    /// libtorch refused an operation (a tch call or a shim call).
    #[error("libtorch: {0}")]
    Torch(String),

    /// ONNX Runtime could not be loaded, or refused to load or run an ONNX artifact.
    #[error("ONNX Runtime: {0}")]
    OnnxRuntime(String),

    /// Generated TorchScript did not compile: a bug in the emitter, never the user's.
    #[error("TorchScript of class {class} did not compile: {message}")]
    Script { class: String, message: String },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An image given to `predict` could not be decoded: not one of the formats it reads
    /// (JPEG, PNG, WebP, BMP, recognised by content), truncated or damaged.
    #[error("{}: {message}", path.display())]
    ImageUnreadable { path: PathBuf, message: String },

    /// An image beyond the decoding limits of `predict` (its declared width or height, or
    /// the memory its decoding would take); refused before its pixels are allocated.
    #[error("{}: {message}", path.display())]
    ImageTooLarge { path: PathBuf, message: String },

    /// A background step failed in a way that should not happen (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConvertError {
    /// The stable code for logs, the converter's JSON error line and a failed job.
    pub fn code(&self) -> ErrorCode {
        match self {
            ConvertError::Input(e) => e.code(),
            ConvertError::Unsupported(_) => ErrorCode::UnsupportedModel,
            ConvertError::Options(_) => ErrorCode::InvalidOptions,
            ConvertError::ValidationFailed { .. } => ErrorCode::ValidationFailed,
            ConvertError::Torch(_) => ErrorCode::LibtorchError,
            ConvertError::OnnxRuntime(_) => ErrorCode::OnnxruntimeError,
            ConvertError::Script { .. } => ErrorCode::ScriptError,
            ConvertError::Io { .. } => ErrorCode::IoError,
            ConvertError::ImageUnreadable { .. } => ErrorCode::ImageUnreadable,
            ConvertError::ImageTooLarge { .. } => ErrorCode::ImageTooLarge,
            ConvertError::Internal(_) => ErrorCode::InternalError,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ConvertError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<tch::TchError> for ConvertError {
    fn from(e: tch::TchError) -> Self {
        ConvertError::Torch(e.to_string())
    }
}

impl<R> From<ort::Error<R>> for ConvertError {
    fn from(e: ort::Error<R>) -> Self {
        ConvertError::OnnxRuntime(e.message().to_owned())
    }
}

/// Result alias of this crate.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
