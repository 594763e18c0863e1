//! Every error code yolots emits, in one table: its stable spelling (the `code` of an API
//! problem document, of a failed job and of the converter's JSON error line), where it
//! comes from, and the advice the web page gives for it.
//!
//! A code is written nowhere else as a string: producers name a variant, consumers match
//! on one, so a misspelt or unknown code does not compile. Codes arriving from elsewhere
//! (an older or newer server) parse with [`ErrorCode::parse`], which returns `None` for a
//! code this build does not know.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where an error code comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The checkpoint reader refused the file (an upload's check, `inspect`, or a job).
    Reader,
    /// The converter failed (a job, or `yolots convert`).
    Converter,
    /// The service stopped or ended a job (worker, queue, storage).
    Job,
    /// The REST API refused a request.
    Api,
}

/// Spellings used before this table existed, which stored jobs may still carry.
const LEGACY_SPELLINGS: &[(&str, ErrorCode)] = &[
    ("invalid_option", ErrorCode::InvalidOptions),
    ("io", ErrorCode::IoError),
];

/// Defines [`ErrorCode`] from one table: variant, spelling, origin, advice.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => $code:literal, $origin:ident, $advice:literal; )+) => {
        /// A stable, machine-readable error code (`snake_case` on the wire).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),+ }
            }

            /// Where the code comes from.
            pub const fn origin(self) -> Origin {
                match self { $(ErrorCode::$variant => Origin::$origin),+ }
            }

            /// What a user can do about it, in a sentence or two.
            pub const fn advice(self) -> &'static str {
                match self { $(ErrorCode::$variant => $advice),+ }
            }

            /// The code spelled `text` (or an older spelling of it), if this build knows it.
            pub fn parse(text: &str) -> Option<ErrorCode> {
                match text {
                    $($code => Some(ErrorCode::$variant),)+
                    _ => LEGACY_SPELLINGS
                        .iter()
                        .find(|(old, _)| *old == text)
                        .map(|&(_, code)| code),
                }
            }
        }
    };
}

error_codes! {
    /// Not a zip archive nor a legacy pickle: not a PyTorch checkpoint.
    NotAnArchive => "not_an_archive", Reader,
        "This file is not a PyTorch checkpoint. Upload the .pt file that YOLOv7's train.py wrote (weights/best.pt or last.pt).";
    /// The file ends early.
    Truncated => "truncated", Reader,
        "The file ends early: it was cut short while copying or downloading. Copy the complete file and upload it again.";
    /// The archive's structure is inconsistent.
    Corrupt => "corrupt", Reader,
        "The file is damaged (its archive structure is inconsistent). Copy it again from where it was trained.";
    /// A valid checkpoint feature the reader does not support.
    Unsupported => "unsupported", Reader,
        "The checkpoint uses a storage feature yolots does not read. Re-save it with torch.save from a recent PyTorch.";
    /// A memory, work or size limit of the reader was reached.
    LimitExceeded => "limit_exceeded", Reader,
        "The checkpoint is larger or more complex than this server reads. A YOLOv7 checkpoint stays far below the limits; check that this is the right file.";
    /// The pickle stream is malformed.
    MalformedPickle => "malformed_pickle", Reader,
        "The checkpoint's data is malformed. Copy the file again from where it was trained.";
    /// The pickle stream uses an opcode the safe reader refuses.
    UnsupportedOpcode => "unsupported_opcode", Reader,
        "The checkpoint contains instructions yolots never runs (it reads checkpoints as data only). Re-save the model with torch.save.";
    /// Only a state dict: no model structure to rebuild.
    StateDictOnly => "state_dict_only", Reader,
        "The file holds only weights (a state_dict), not the model. Upload the checkpoint train.py saves, which holds the whole model.";
    /// No model in the checkpoint.
    NoModel => "no_model", Reader,
        "The checkpoint holds no model. Upload the checkpoint train.py saves (with its 'model' or 'ema' entry).";
    /// A model outside the YOLOv7 family.
    UnsupportedModel => "unsupported_model", Reader,
        "yolots converts the YOLOv7 detection family (tiny to e6e, training or deploy configurations). Choose a checkpoint of one of these.";
    /// A layer class the reader does not know.
    UnknownLayer => "unknown_layer", Reader,
        "The model uses a layer yolots does not know; it is outside the YOLOv7 family that yolots converts.";
    /// A layer whose settings cannot be right.
    BadLayer => "bad_layer", Reader,
        "A layer of the model has settings that cannot be right (for example a degenerate detection head). Check the checkpoint.";
    /// A tensor whose shape disagrees with its layer.
    ShapeMismatch => "shape_mismatch", Reader,
        "A weight's shape disagrees with its layer: the checkpoint is inconsistent. Check that it was saved by YOLOv7's code.";
    /// A tensor claims more bytes than its storage holds.
    StorageTooSmall => "storage_too_small", Reader,
        "A weight claims more data than the file stores: the checkpoint is damaged.";
    /// A tensor element type the reader does not convert.
    UnsupportedDtype => "unsupported_dtype", Reader,
        "A weight has an element type yolots does not convert (float16, bfloat16, float32 and float64 are read). Re-save in float32 or float16.";

    /// An option refused (by the API, the page or the converter).
    InvalidOptions => "invalid_options", Converter,
        "The options were refused: start a new conversion with other options.";
    /// The artifact does not compute what the checkpoint computes.
    ValidationFailed => "validation_failed", Converter,
        "The artifact does not compute what the original does. Try again without fusing, or with fp32; the report lists the outputs that differ.";
    /// libtorch refused an operation.
    LibtorchError => "libtorch_error", Converter,
        "libtorch refused an operation of this conversion. Try fp32, no fusing or another optimisation; if it persists, the report and the server's log have the details.";
    /// ONNX Runtime could not be loaded, or refused to load or run an ONNX artifact.
    OnnxruntimeError => "onnxruntime_error", Converter,
        "ONNX Runtime could not load or run the ONNX file made for this model. Check that the server's ONNX Runtime library is installed (YOLOTS_ONNXRUNTIME); if it is, please report the model, since this is a yolots bug.";
    /// libtorch could not compile the generated TorchScript.
    ScriptError => "script_error", Converter,
        "libtorch could not compile the TorchScript made for this model. Try the trace mode; please report the model, since this is a yolots bug.";
    /// Reading or writing a file failed on the converting machine.
    IoError => "io_error", Converter,
        "The converting machine could not read or write a file (full disk or lost storage). Retry in a moment.";
    /// A bug: something that should not happen.
    InternalError => "internal_error", Converter,
        "Something went wrong on the server. Retry; if it fails again, the server's log has the details.";
    /// An image given to `predict` could not be decoded (not JPEG, PNG, WebP or BMP,
    /// truncated, or damaged).
    ImageUnreadable => "image_unreadable", Converter,
        "The image could not be read: it is not a JPEG, PNG, WebP or BMP file, or it is cut short or damaged. Save it again as JPEG or PNG.";
    /// An image larger than `predict` decodes (its declared dimensions or the memory
    /// decoding it would take).
    ImageTooLarge => "image_too_large", Converter,
        "The image is larger than yolots decodes (16384 pixels a side, 1 GiB decoded). Scale it down first; a detector sees it at its conversion size anyway.";

    /// The conversion process died (a signal: libtorch aborted, or memory ran out).
    ConversionCrashed => "conversion_crashed", Job,
        "The conversion process stopped unexpectedly (libtorch aborted, or memory ran out) on every attempt. Retry; if it fails again, try fp32, no fusing or a smaller image size.";
    /// The conversion needed more memory or CPU time than its bounds (or asked for more
    /// pixels than the worker converts); not retried.
    ResourceExceeded => "resource_exceeded", Job,
        "The conversion needed more memory or CPU time than this server gives one conversion. Try a smaller image size, or ask the operator to raise the workers' bounds.";
    /// The conversion ran past the server's time limit.
    Timeout => "timeout", Job,
        "The conversion ran past this server's time limit. Try a smaller image size, skip the mobile optimisation, or pick a GPU device.";
    /// The worker stopped renewing its lease.
    LeaseExpired => "lease_expired", Job,
        "The worker running the job stopped (it crashed or lost the database). The job is retried on another worker; if every attempt fails, the server's log says why.";
    /// The artifact could not be stored.
    StorageError => "storage_error", Job,
        "The service could not store the artifact. Retry in a moment.";
    /// Cancelled by its owner.
    Cancelled => "cancelled", Job,
        "The job was cancelled. Retry runs it again with the same file and options.";

    /// A job id that is not a UUID.
    MalformedId => "malformed_id", Api,
        "The job id in the address is malformed. Open the job from your jobs list.";
    /// No such job (or not the caller's).
    NotFound => "not_found", Api,
        "It may have been deleted, or belong to someone else. See your jobs.";
    /// The report or artifact does not exist yet.
    NotReady => "not_ready", Api,
        "The job has not produced this yet. Wait until it succeeds.";
    /// The request conflicts with the job's state.
    Conflict => "conflict", Api,
        "The job's state does not allow this now (for example, only a failed or cancelled job can be retried). Reload the job.";
    /// A query parameter out of range.
    InvalidQuery => "invalid_query", Api,
        "The address has a query parameter out of range.";
    /// A request that cannot be read.
    InvalidRequest => "invalid_request", Api,
        "The request could not be read. Reload the page and try again.";
    /// The upload is not a valid multipart form.
    InvalidMultipart => "invalid_multipart", Api,
        "The upload was not a valid form. Reload the page and upload again.";
    /// The upload has no file part.
    MissingFile => "missing_file", Api,
        "The upload had no file. Choose a .pt file and upload again.";
    /// The uploaded file is empty.
    EmptyFile => "empty_file", Api,
        "The file is empty: choose the checkpoint itself.";
    /// Too many uploads in flight, in the server or of this owner.
    TooManyUploads => "too_many_uploads", Api,
        "The server is receiving as many uploads as it takes at once (or as many of yours). Wait for one to finish, then upload again.";
    /// The upload is larger than the server accepts.
    UploadTooLarge => "upload_too_large", Api,
        "This server does not take files that large. Strip the optimizer state (YOLOv7's strip_optimizer) or ask the operator to raise the limit.";
    /// The request body stopped arriving.
    RequestTimeout => "request_timeout", Api,
        "The upload stopped arriving before it was complete. Check the connection and upload again.";
    /// No worker of the service converts on the device the options ask for.
    DeviceUnavailable => "device_unavailable", Api,
        "No worker of this service converts on that device (a CUDA GPU). Choose the device auto or cpu, or ask the operator to start a GPU worker.";
    /// The model has more parameters or layers than the server converts.
    ModelTooLarge => "model_too_large", Api,
        "The model is beyond what this server converts (parameters or layers). Ask the operator to raise its limits.";
    /// The upload check ran out of memory or time.
    CheckResourcesExceeded => "check_resources_exceeded", Api,
        "Checking the file took more memory or time than this server allows. A YOLOv7 checkpoint stays far below these bounds; check that this is the right file.";
    /// No token, or a token the server does not know.
    Unauthorized => "unauthorized", Api,
        "Sign in again: your session has ended.";
    /// A token that is malformed, revoked or expired.
    InvalidToken => "invalid_token", Api,
        "The token was refused (revoked or expired). Ask for a new one.";
    /// A state-changing request from another site (or another port of this host) that
    /// carried this site's session cookie.
    CrossSiteRequest => "cross_site_request", Api,
        "Another site tried to act with your session here. Use this service's own page; nothing was changed.";
    /// A service endpoint for operators, asked for without an admin token.
    AdminOnly => "admin_only", Api,
        "This address is for the service's operators: use an admin token (yolots token create --admin).";
    /// Browser sessions are off on this server.
    SessionsDisabled => "sessions_disabled", Api,
        "This server does not open browser sessions; use an API token.";
    /// A `Range` outside the file.
    RangeNotSatisfiable => "range_not_satisfiable", Api,
        "The requested byte range is outside the file. Download the whole file.";
    /// The database cannot be reached.
    DatabaseUnavailable => "database_unavailable", Api,
        "The service's database is unavailable for a moment. Retry shortly.";
    /// The artifact store cannot be reached.
    StorageUnavailable => "storage_unavailable", Api,
        "The service's file store is unavailable for a moment. Retry shortly.";
}

impl ErrorCode {
    /// Advice for a code as it arrived on the wire; a generic line for a code this build
    /// does not know.
    pub fn advice_for(text: &str) -> &'static str {
        ErrorCode::parse(text).map_or(GENERIC_ADVICE, ErrorCode::advice)
    }
}

/// The advice for a code this build does not know.
pub const GENERIC_ADVICE: &str =
    "Retry the job. If it fails again, the server's log has the details.";

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::parse(s).ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<ErrorCode> for &str {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == other.as_str()
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_is_snake_case_unique_and_parses_back() {
        let mut seen = HashSet::new();
        for &code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} is listed twice");
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text} is not snake_case"
            );
            assert_eq!(ErrorCode::parse(text), Some(code));
            assert_eq!(text.parse::<ErrorCode>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn every_code_has_its_own_advice() {
        for &code in ErrorCode::ALL {
            let advice = code.advice();
            assert!(advice.ends_with('.'), "{code}: {advice}");
            assert_ne!(advice, GENERIC_ADVICE, "{code} has only the generic advice");
        }
    }

    #[test]
    fn an_unknown_code_gets_the_generic_advice() {
        assert_eq!(ErrorCode::parse("job_timeout"), None);
        assert_eq!(ErrorCode::advice_for("job_timeout"), GENERIC_ADVICE);
        assert!("job_timeout".parse::<ErrorCode>().is_err());
        assert_eq!(
            ErrorCode::advice_for("timeout"),
            ErrorCode::Timeout.advice()
        );
    }

    #[test]
    fn older_spellings_still_parse() {
        assert_eq!(
            ErrorCode::parse("invalid_option"),
            Some(ErrorCode::InvalidOptions)
        );
        assert_eq!(ErrorCode::parse("io"), Some(ErrorCode::IoError));
        assert_eq!(ErrorCode::IoError.as_str(), "io_error");
    }

    #[test]
    fn codes_compare_with_their_spelling() {
        assert_eq!(ErrorCode::LimitExceeded, "limit_exceeded");
        assert_eq!("invalid_options", ErrorCode::InvalidOptions);
    }
}
