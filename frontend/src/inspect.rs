//! In-browser inspection: the service's own reader (`yolots-checkpoint`) on the bytes of
//! the chosen file, then the service's limits. Whatever the service would refuse is refused
//! here first, with the same code and message, before a byte is uploaded.

use serde::Serialize;
use yolots_checkpoint::Checkpoint;
use yolots_checkpoint::inspect::Summary;

use crate::model::{Config, Inspection, Refusal};

/// What the worker answers: exactly one of the two fields is set.
#[derive(Serialize)]
struct WorkerAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Refusal>,
}

/// Reads and describes a checkpoint held in memory.
pub fn inspect_bytes(bytes: &[u8]) -> Result<Summary, Refusal> {
    let described = Checkpoint::from_bytes(bytes).and_then(|checkpoint| checkpoint.describe());
    match described {
        Ok(description) => Ok(Summary::from(&description)),
        Err(error) => Err(Refusal {
            code: error.code().as_str().to_owned(),
            message: error.to_string(),
        }),
    }
}

/// [`inspect_bytes`] as the JSON the worker posts back to the page.
pub fn inspect_json(bytes: &[u8]) -> String {
    let answer = match inspect_bytes(bytes) {
        Ok(summary) => WorkerAnswer {
            summary: Some(summary),
            error: None,
        },
        Err(refusal) => WorkerAnswer {
            summary: None,
            error: Some(refusal),
        },
    };
    serde_json::to_string(&answer)
        .unwrap_or_else(|error| format!(r#"{{"error":{{"code":"internal","message":"{error}"}}}}"#))
}

/// What the service checks before reading a file: its size.
pub fn check_size(size: u64, config: &Config) -> Result<(), Refusal> {
    if size == 0 {
        return Err(Refusal::new("empty_file", "the uploaded file is empty"));
    }
    if size > config.max_upload_bytes {
        return Err(Refusal::new(
            "upload_too_large",
            format!(
                "the upload exceeds the limit of {} bytes",
                config.max_upload_bytes
            ),
        ));
    }
    Ok(())
}

/// What the service checks after reading a file: the conversion limits.
pub fn check_limits(inspection: &Inspection, config: &Config) -> Result<(), Refusal> {
    let limits = &config.limits;
    if let Some(max) = limits.max_parameters
        && inspection.parameters > max
    {
        return Err(Refusal::new(
            "model_too_large",
            format!(
                "the model has {} parameters; this service converts at most {max}",
                inspection.parameters
            ),
        ));
    }
    if let Some(max) = limits.max_layers
        && inspection.layers.len() as u64 > max
    {
        return Err(Refusal::new(
            "model_too_large",
            format!(
                "the model has {} layers; this service converts at most {max}",
                inspection.layers.len()
            ),
        ));
    }
    Ok(())
}

/// Parses the worker's answer.
pub fn parse_answer(json: &str) -> Result<Inspection, Refusal> {
    #[derive(serde::Deserialize)]
    struct Answer {
        summary: Option<Inspection>,
        error: Option<Refusal>,
    }
    match serde_json::from_str::<Answer>(json) {
        Ok(Answer {
            summary: Some(summary),
            ..
        }) => Ok(summary),
        Ok(Answer {
            error: Some(refusal),
            ..
        }) => Err(refusal),
        Ok(_) => Err(Refusal::new("internal", "the inspection answered nothing")),
        Err(error) => Err(Refusal::new(
            "internal",
            format!("the inspection answered something unreadable: {error}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Option<Vec<u8>> {
        let dir = std::env::var_os("YOLOTS_FIXTURES").map_or_else(
            || {
                // Cargo's run-time value first: a shared build folder may hold a test
                // binary compiled in another clone.
                std::env::var_os("CARGO_MANIFEST_DIR")
                    .map_or_else(
                        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
                        std::path::PathBuf::from,
                    )
                    .join("../../shared/fixtures")
            },
            std::path::PathBuf::from,
        );
        let path = dir.join(name);
        std::fs::read(path).ok()
    }

    #[test]
    fn a_yolov7_checkpoint_round_trips_through_the_worker_json() {
        let Some(bytes) = fixture("yolov7-w25-c3.pt") else {
            eprintln!("fixtures not found; skipped");
            return;
        };
        let inspection = parse_answer(&inspect_json(&bytes)).unwrap();
        assert!(inspection.names.iter().any(|n| n == "helmet"));
        assert_eq!(inspection.nc, inspection.names.len());
        assert!(inspection.parameters > 0);
        assert!(!inspection.layers.is_empty());
        assert_eq!(inspection.task, yolots_protocol::Task::Detect);
        assert_eq!(inspection.keypoints(), None);
    }

    #[test]
    fn a_pose_checkpoint_round_trips_with_its_keypoints() {
        let Some(bytes) = fixture("pose/yolov7-w6-pose-w25.pt") else {
            eprintln!("pose fixture not found; skipped");
            return;
        };
        let inspection = parse_answer(&inspect_json(&bytes)).unwrap();
        assert_eq!(inspection.head, "IKeypoint");
        assert_eq!(inspection.task, yolots_protocol::Task::Pose);
        assert_eq!(inspection.nkpt, 17);
        assert_eq!(
            inspection.keypoint_names.first().map(String::as_str),
            Some("nose")
        );
        assert_eq!(
            inspection.keypoints().as_deref(),
            Some("17 per detection, COCO person keypoints")
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_readers_code_and_message() {
        let bytes = b"this is not a checkpoint at all";
        let refusal = parse_answer(&inspect_json(bytes)).unwrap_err();
        let expected = Checkpoint::from_bytes(bytes).unwrap_err();
        assert_eq!(refusal.code, expected.code().as_str());
        assert_eq!(refusal.message, expected.to_string());
    }

    #[test]
    fn sizes_and_limits_are_checked_like_the_service() {
        let mut config = Config {
            max_upload_bytes: 10,
            ..Config::default()
        };
        assert_eq!(check_size(0, &config).unwrap_err().code, "empty_file");
        assert_eq!(
            check_size(11, &config).unwrap_err().code,
            "upload_too_large"
        );
        assert!(check_size(10, &config).is_ok());

        let inspection = Inspection {
            parameters: 100,
            ..Inspection::default()
        };
        config.limits.max_parameters = Some(99);
        assert!(check_limits(&inspection, &config).is_err());
        config.limits.max_parameters = Some(100);
        assert!(check_limits(&inspection, &config).is_ok());
    }
}
