//! What the converter says to whoever runs it with `--progress json`: one JSON object per
//! line on stdout. The worker reads exactly these lines; nothing else on stdout is part of
//! the conversation.

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;
use crate::progress::ProgressEvent;
use crate::report::ConversionReport;

/// One line of `yolots-converter convert --progress json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConverterLine {
    /// A stage began.
    Progress(ProgressEvent),
    /// The conversion succeeded (validated, or not asked to be); always the last line.
    Result { report: Box<ConversionReport> },
    /// The conversion failed; always the last line.
    Error {
        code: ErrorCode,
        message: String,
        /// The process's exit status: 2 for a refused input or option, 3 for a failed
        /// validation, 1 otherwise.
        exit_code: u8,
        /// The report, when validation failed (the artifact exists but diverges).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Box<ConversionReport>>,
    },
}

/// Exit status of a conversion whose input or options were refused.
pub const EXIT_REFUSED: u8 = 2;
/// Exit status of a conversion whose artifact failed validation.
pub const EXIT_DIVERGED: u8 = 3;

impl ConverterLine {
    /// Whether a failure is the request's own (the input, an option, or a diverging
    /// artifact), which another attempt would only repeat.
    pub fn is_final_failure(code: ErrorCode, exit_code: u8) -> bool {
        exit_code == EXIT_REFUSED || exit_code == EXIT_DIVERGED || code == ErrorCode::InvalidOptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_and_error_lines_read_as_the_converter_writes_them() {
        let line: ConverterLine = serde_json::from_str(
            r#"{"event":"progress","stage":"building","fraction":0.1,"message":"m"}"#,
        )
        .unwrap();
        assert!(matches!(line, ConverterLine::Progress(e) if e.fraction == 0.1));
        let line: ConverterLine = serde_json::from_str(
            r#"{"event":"error","code":"not_an_archive","message":"x","exit_code":2}"#,
        )
        .unwrap();
        assert_eq!(
            line,
            ConverterLine::Error {
                code: ErrorCode::NotAnArchive,
                message: "x".into(),
                exit_code: 2,
                report: None
            }
        );
        let text = serde_json::to_string(&line).unwrap();
        assert_eq!(
            text,
            r#"{"event":"error","code":"not_an_archive","message":"x","exit_code":2}"#
        );
    }

    #[test]
    fn refused_and_diverged_conversions_are_not_retried() {
        assert!(ConverterLine::is_final_failure(
            ErrorCode::NotAnArchive,
            EXIT_REFUSED
        ));
        assert!(ConverterLine::is_final_failure(
            ErrorCode::ValidationFailed,
            EXIT_DIVERGED
        ));
        assert!(ConverterLine::is_final_failure(
            ErrorCode::InvalidOptions,
            1
        ));
        assert!(!ConverterLine::is_final_failure(
            ErrorCode::LibtorchError,
            1
        ));
    }
}
