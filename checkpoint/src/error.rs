//! Every way reading or describing a checkpoint can fail, each with enough context to say
//! what and where, and a stable machine code for the REST API.

use std::fmt;

/// A failure to read or describe a checkpoint.
///
/// The variants are part of the contract: the browser, the CLI and the REST API show the
/// message and report [`Error::code`]. New variants may be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither a PyTorch zip archive nor the legacy pickle format.
    #[error("not a PyTorch checkpoint: {reason}")]
    NotAnArchive { reason: String },

    /// The data ends before a structure it announces.
    #[error("truncated {what} at byte offset {offset}")]
    Truncated { what: String, offset: u64 },

    /// An archive entry is inconsistent or damaged.
    #[error("corrupt entry `{entry}`: {reason}")]
    Corrupt { entry: String, reason: String },

    /// A valid file using something this reader does not implement.
    #[error("unsupported: {what}")]
    Unsupported { what: String },

    /// A size, count or depth limit was reached; see [`crate::Limits`].
    #[error("{what} exceeds the limit: {actual} > {limit}")]
    LimitExceeded {
        what: &'static str,
        limit: u64,
        actual: u64,
    },

    /// The read spent more memory or work than its [`crate::limits::Budget`] allows.
    #[error("{budget} exceeds the limit at {at}: {used} > {limit}")]
    BudgetExceeded {
        budget: &'static str,
        at: &'static str,
        limit: u64,
        used: u64,
    },

    /// The pickle program is malformed (stack underflow, wrong operand types, bad text...).
    #[error("malformed pickle at byte offset {offset}: {reason}")]
    Pickle { offset: u64, reason: String },

    /// An opcode outside the pickle protocols 0 to 5, or one this reader refuses
    /// (extension registry, out-of-band buffers).
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte offset {offset}")]
    UnsupportedOpcode { opcode: u8, offset: u64 },

    /// The file holds tensors only.
    #[error(
        "the architecture is missing: this file is a state_dict (tensors only); upload the full \
         checkpoint written by YOLOv7's train.py (a dict with `model` or `ema`), not a state_dict"
    )]
    StateDictOnly,

    /// No model object where one was expected.
    #[error("no model in the checkpoint: {reason}")]
    NoModel { reason: String },

    /// The model object is not a YOLOv7 `models.yolo.Model`.
    #[error(
        "unsupported model class `{class}`: only the YOLOv7 detection family (models.yolo.Model) \
         is supported"
    )]
    UnsupportedModel { class: String },

    /// A layer class outside the YOLOv7 detection family.
    #[error(
        "layer {index} is `{class}`, which is not part of YOLOv7: only the YOLOv7 detection \
         family is supported"
    )]
    UnknownLayer { index: usize, class: String },

    /// A known layer whose attributes or wiring make no sense.
    #[error("layer {index} (`{class}`): {reason}")]
    BadLayer {
        index: usize,
        class: String,
        reason: String,
    },

    /// A tensor whose shape disagrees with its module's hyper-parameters.
    #[error(
        "tensor `{tensor}` has shape {}, expected {}",
        Shape(actual),
        Shape(expected)
    )]
    ShapeMismatch {
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    /// A tensor that reaches past the end of its storage.
    #[error("tensor `{tensor}` needs {needed} bytes of storage, only {available} are stored")]
    StorageTooSmall {
        tensor: String,
        needed: u64,
        available: u64,
    },

    /// A tensor element type this reader does not convert (complex, quantized, ...).
    #[error("tensor `{tensor}` has unsupported element type `{dtype}`")]
    UnsupportedDtype { tensor: String, dtype: String },

    /// Reading from the underlying reader failed.
    #[error("I/O error while reading {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A stable, machine-readable code (`snake_case`), one per variant.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotAnArchive { .. } => "not_an_archive",
            Error::Truncated { .. } => "truncated",
            Error::Corrupt { .. } => "corrupt",
            Error::Unsupported { .. } => "unsupported",
            Error::LimitExceeded { .. } | Error::BudgetExceeded { .. } => "limit_exceeded",
            Error::Pickle { .. } => "malformed_pickle",
            Error::UnsupportedOpcode { .. } => "unsupported_opcode",
            Error::StateDictOnly => "state_dict_only",
            Error::NoModel { .. } => "no_model",
            Error::UnsupportedModel { .. } => "unsupported_model",
            Error::UnknownLayer { .. } => "unknown_layer",
            Error::BadLayer { .. } => "bad_layer",
            Error::ShapeMismatch { .. } => "shape_mismatch",
            Error::StorageTooSmall { .. } => "storage_too_small",
            Error::UnsupportedDtype { .. } => "unsupported_dtype",
            Error::Io { .. } => "io",
        }
    }

    /// Whether the error is about the file (a user problem: refuse the upload) rather than
    /// about reading it (an I/O failure on our side).
    pub fn is_input_error(&self) -> bool {
        !matches!(self, Error::Io { .. })
    }

    pub(crate) fn corrupt(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn limit(what: &'static str, limit: u64, actual: u64) -> Self {
        Error::LimitExceeded {
            what,
            limit,
            actual,
        }
    }

    /// The read ran out of its memory or work [`Budget`](crate::limits::Budget): `budget`
    /// names the allowance, `at` where it was spent.
    pub(crate) fn budget(budget: &'static str, at: &'static str, limit: u64, used: u64) -> Self {
        Error::BudgetExceeded {
            budget,
            at,
            limit,
            used,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Longest prefix of a value from the file that an error message quotes.
pub(crate) const QUOTE_CHARS: usize = 120;

/// A string from the file as an error message may quote it: at most [`QUOTE_CHARS`]
/// characters, then how long the whole was, so a huge name cannot make a huge message.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        None => text.to_owned(),
        Some((end, _)) => format!(
            "{}… ({} bytes in all)",
            text.get(..end).unwrap_or_default(),
            text.len()
        ),
    }
}

/// `[1, 2, 3]` rendering for shapes in messages.
struct Shape<'a>(&'a [usize]);

impl fmt::Display for Shape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text() {
        assert_eq!(clip("Conv"), "Conv");
        let long = "é".repeat(10_000);
        let clipped = clip(&long);
        assert!(clipped.chars().count() < QUOTE_CHARS + 30, "{clipped}");
        assert!(clipped.ends_with("(20000 bytes in all)"), "{clipped}");
    }
}
