//! Every way reading or describing a checkpoint can fail, each with enough context to say
//! what and where, and a stable machine code for the REST API.

use std::fmt;

pub use yolots_protocol::ErrorCode;

/// A failure to read or describe a checkpoint.
///
/// The variants are part of the contract: the browser, the CLI and the REST API show the
/// message and report [`Error::code`]. New variants may be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither a PyTorch zip archive nor the legacy pickle format.
    #[error("not a PyTorch checkpoint: {}", Long(reason))]
    NotAnArchive { reason: String },

    /// The data ends before a structure it announces.
    #[error("truncated {} at byte offset {offset}", Long(what))]
    Truncated { what: String, offset: u64 },

    /// An archive entry is inconsistent or damaged.
    #[error("corrupt entry `{}`: {}", Short(entry), Long(reason))]
    Corrupt { entry: String, reason: String },

    /// A valid file using something this reader does not implement.
    #[error("unsupported: {}", Long(what))]
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
    #[error("malformed pickle at byte offset {offset}: {}", Long(reason))]
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
    #[error("no model in the checkpoint: {}", Long(reason))]
    NoModel { reason: String },

    /// The model object is not a YOLOv7 `models.yolo.Model`.
    #[error(
        "unsupported model class `{}`: only the YOLOv7 detection family (models.yolo.Model) \
         is supported",
        Short(class)
    )]
    UnsupportedModel { class: String },

    /// A layer class outside the YOLOv7 detection family.
    #[error(
        "layer {index} is `{}`, which is not part of YOLOv7: only the YOLOv7 detection \
         family is supported",
        Short(class)
    )]
    UnknownLayer { index: usize, class: String },

    /// A known layer whose attributes or wiring make no sense.
    #[error("layer {index} (`{}`): {}", Short(class), Long(reason))]
    BadLayer {
        index: usize,
        class: String,
        reason: String,
    },

    /// A tensor whose shape disagrees with its module's hyper-parameters.
    #[error(
        "tensor `{}` has shape {}, expected {}",
        Short(tensor),
        Shape(actual),
        Shape(expected)
    )]
    ShapeMismatch {
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    /// A tensor that reaches past the end of its storage.
    #[error(
        "tensor `{}` needs {needed} bytes of storage, only {available} are stored",
        Short(tensor)
    )]
    StorageTooSmall {
        tensor: String,
        needed: u64,
        available: u64,
    },

    /// A tensor element type this reader does not convert (complex, quantized, ...).
    #[error(
        "tensor `{}` has unsupported element type `{}`",
        Short(tensor),
        Short(dtype)
    )]
    UnsupportedDtype { tensor: String, dtype: String },

    /// Reading from the underlying reader failed.
    #[error("I/O error while reading {}: {source}", Long(what))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The stable, machine-readable code of this error (one per variant; the table of
    /// codes is `yolots_protocol::ErrorCode`).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotAnArchive { .. } => ErrorCode::NotAnArchive,
            Error::Truncated { .. } => ErrorCode::Truncated,
            Error::Corrupt { .. } => ErrorCode::Corrupt,
            Error::Unsupported { .. } => ErrorCode::Unsupported,
            Error::LimitExceeded { .. } | Error::BudgetExceeded { .. } => ErrorCode::LimitExceeded,
            Error::Pickle { .. } => ErrorCode::MalformedPickle,
            Error::UnsupportedOpcode { .. } => ErrorCode::UnsupportedOpcode,
            Error::StateDictOnly => ErrorCode::StateDictOnly,
            Error::NoModel { .. } => ErrorCode::NoModel,
            Error::UnsupportedModel { .. } => ErrorCode::UnsupportedModel,
            Error::UnknownLayer { .. } => ErrorCode::UnknownLayer,
            Error::BadLayer { .. } => ErrorCode::BadLayer,
            Error::ShapeMismatch { .. } => ErrorCode::ShapeMismatch,
            Error::StorageTooSmall { .. } => ErrorCode::StorageTooSmall,
            Error::UnsupportedDtype { .. } => ErrorCode::UnsupportedDtype,
            Error::Io { .. } => ErrorCode::IoError,
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
/// Longest free-text part (a reason, a "what") of a message: a few quoted values and words.
const TEXT_CHARS: usize = 4 * QUOTE_CHARS;
/// Most dimensions of a shape a message lists.
const SHAPE_DIMS: usize = 8;

/// A string from the file as an error message may quote it: at most [`QUOTE_CHARS`]
/// characters, then how long the whole was, so a huge name cannot make a huge message.
pub(crate) fn clip(text: &str) -> String {
    Clipped(text, QUOTE_CHARS).to_string()
}

/// `text` cut after `max` characters, with the length of the whole.
struct Clipped<'a>(&'a str, usize);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Clipped(text, max) = *self;
        match text.char_indices().nth(max) {
            None => f.write_str(text),
            Some((end, _)) => write!(
                f,
                "{}… ({} bytes in all)",
                text.get(..end).unwrap_or_default(),
                text.len()
            ),
        }
    }
}

/// A name in a message (entry, class, tensor): clipped again when shown, whoever built the
/// error.
struct Short<'a>(&'a str);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Clipped(self.0, QUOTE_CHARS).fmt(f)
    }
}

/// A reason or description in a message, clipped when shown.
struct Long<'a>(&'a str);

impl fmt::Display for Long<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Clipped(self.0, TEXT_CHARS).fmt(f)
    }
}

/// `[1, 2, 3]` rendering for shapes in messages; a long shape lists its first dimensions
/// and how many there are.
struct Shape<'a>(&'a [usize]);

impl fmt::Display for Shape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().take(SHAPE_DIMS).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > SHAPE_DIMS {
            write!(f, ", … ({} dimensions)", self.0.len())?;
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

    #[test]
    fn messages_stay_short_whoever_built_them() {
        let huge = "x".repeat(1 << 20);
        let errors = [
            Error::UnsupportedModel {
                class: huge.clone(),
            },
            Error::corrupt(huge.clone(), huge.clone()),
            Error::ShapeMismatch {
                tensor: huge.clone(),
                expected: vec![1; 1 << 16],
                actual: vec![2; 1 << 16],
            },
            Error::Pickle {
                offset: 0,
                reason: huge.clone(),
            },
        ];
        for error in errors {
            assert!(
                error.to_string().len() < 1200,
                "{}",
                error.to_string().len()
            );
        }
    }
}
