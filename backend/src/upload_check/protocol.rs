//! What `yolots check-upload` prints: one JSON line on stdout, read by the server.

use serde::{Deserialize, Serialize};
use yolots_protocol::ErrorCode;

/// The facts the upload check needs from a checkpoint the reader accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFacts {
    pub strides: Vec<f64>,
    pub parameters: u64,
    pub layers: u64,
}

/// The one line the checking process prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CheckLine {
    /// The reader described the model.
    Described(ModelFacts),
    /// The reader refused the file: its stable code and its message.
    Refused { code: ErrorCode, message: String },
    /// The file could not be read (an I/O failure on the service's side).
    Failed { message: String },
}

impl CheckLine {
    /// Reads the stored upload at `path` with the checkpoint reader and describes it.
    pub fn of_file(path: &std::path::Path) -> Self {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) => {
                return CheckLine::Failed {
                    message: format!("opening {}: {error}", path.display()),
                };
            }
        };
        let reader = std::io::BufReader::with_capacity(1 << 16, file);
        match yolots_checkpoint::Checkpoint::from_reader(reader).and_then(|c| c.describe()) {
            Ok(description) => CheckLine::Described(ModelFacts {
                strides: description.strides.clone(),
                parameters: description.parameters,
                layers: description.layers.len() as u64,
            }),
            Err(error) if error.is_input_error() => CheckLine::Refused {
                code: error.code(),
                message: error.to_string(),
            },
            Err(error) => CheckLine::Failed {
                message: error.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for line in [
            CheckLine::Described(ModelFacts {
                strides: vec![8.0, 16.0, 32.0],
                parameters: 6_000_000,
                layers: 77,
            }),
            CheckLine::Refused {
                code: ErrorCode::LimitExceeded,
                message: "pickle memo entries exceeds the limit: 5 > 4".into(),
            },
            CheckLine::Failed {
                message: "disk".into(),
            },
        ] {
            let text = serde_json::to_string(&line).unwrap();
            assert!(!text.contains('\n'));
            assert_eq!(serde_json::from_str::<CheckLine>(&text).unwrap(), line);
        }
        let text = r#"{"outcome":"refused","code":"truncated","message":"m"}"#;
        assert!(matches!(
            serde_json::from_str::<CheckLine>(text).unwrap(),
            CheckLine::Refused { code, .. } if code == "truncated"
        ));
    }

    #[test]
    fn a_missing_file_is_a_failure_not_a_refusal() {
        let line = CheckLine::of_file(std::path::Path::new("/nonexistent/source.pt"));
        assert!(matches!(line, CheckLine::Failed { .. }), "{line:?}");
    }

    #[test]
    fn a_file_that_is_not_a_checkpoint_is_refused_with_the_readers_code() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"hello, not a checkpoint").unwrap();
        let line = CheckLine::of_file(file.path());
        assert!(
            matches!(&line, CheckLine::Refused { code, .. } if code == "not_an_archive"),
            "{line:?}"
        );
    }
}
