//! Progress of a conversion, as events a caller can print or stream as JSON lines.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::options::{ParseOptionError, spelled_enum};

/// The stages of a conversion, in order. Not every conversion visits every stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Mapping the file and parsing the archive.
    Reading,
    /// Building the typed model description.
    Describing,
    /// Turning weights into tensors and building the network.
    Building,
    /// Folding BatchNorm, RepConv branches and implicit knowledge.
    Fusing,
    /// Generating and compiling TorchScript.
    Scripting,
    /// Tracing the eager network (trace mode).
    Tracing,
    /// Writing the ONNX graph (ONNX format).
    Exporting,
    /// Freeze / optimize_for_inference / optimize_for_mobile.
    Optimizing,
    /// Writing the artifact.
    Saving,
    /// Loading the artifact back and comparing it with the reference.
    Validating,
    /// Measuring latency.
    Timing,
    /// Finished (successfully or not: see the result).
    Done,
}

spelled_enum!(Stage, "stage", {
    Reading => "reading",
    Describing => "describing",
    Building => "building",
    Fusing => "fusing",
    Scripting => "scripting",
    Tracing => "tracing",
    Exporting => "exporting",
    Optimizing => "optimizing",
    Saving => "saving",
    Validating => "validating",
    Timing => "timing",
    Done => "done",
});

/// One progress report: the stage, how far the whole conversion is (0 to 1), and a
/// human-readable message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressEvent {
    pub stage: Stage,
    pub fraction: f64,
    pub message: String,
}

impl ProgressEvent {
    pub fn new(stage: Stage, fraction: f64, message: impl Into<String>) -> Self {
        ProgressEvent {
            stage,
            fraction: fraction.clamp(0.0, 1.0),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_as_json_lines() {
        let e = ProgressEvent::new(Stage::Validating, 1.5, "comparing");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"stage":"validating","fraction":1.0,"message":"comparing"}"#
        );
    }

    #[test]
    fn every_stage_parses_back_from_its_wire_spelling() {
        for &stage in Stage::ALL {
            let wire = serde_json::to_value(stage).unwrap();
            assert_eq!(wire, stage.as_str());
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert!("resting".parse::<Stage>().is_err());
    }
}
