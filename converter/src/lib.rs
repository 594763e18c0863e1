//! yolots-converter: turns a YOLOv7 model description into a TorchScript artifact.
//!
//! [`convert`] is the whole pipeline the CLI and the service worker run: read the
//! checkpoint (through `yolots-checkpoint`, never executing it), build the network with
//! tch, fuse, emit TorchScript (generated source, or a trace), optimise, save, load the
//! artifact back and compare it with the unfused float32 eager network, time it, and
//! report ([`ConversionReport`], documented in `REPORT.md`).
//!
//! # The artifact
//!
//! A TorchScript module (class `__torch__.yolots.Model`) whose parameters keep the source
//! names (`model.0.conv.weight`, ...), with:
//!
//! - `forward(images)`: `images` float32 (float16 for half artifacts) `[B, 3, H, W]`, RGB
//!   in 0..1, H and W multiples of the largest stride; returns what the head option says
//!   (`decoded` `[B, N, 5 + nc]`, `raw` list of `[B, na, ny, nx, 5 + nc]`, or
//!   `detections` list of `[K, 6]` per image);
//! - `raw(images)` and `decoded(images)` whatever the head;
//! - `detect(images, conf_thres, iou_thres, max_det) -> List[Tensor]` (`[K, 6]` per image:
//!   x1, y1, x2, y2, score, class; float32);
//! - `detect_image(image, conf_thres, iou_thres, max_det) -> Tensor` for one
//!   `uint8 [H, W, 3]` RGB image of any size, letterboxed inside the graph to the
//!   conversion size, boxes in the image's own pixels;
//! - attributes `names`, `stride`, `img_size`, `conf_thres`, `iou_thres`, `max_det`, and
//!   `extra/yolots.json` ([`ArtifactMetadata`]).
//!
//! Script-mode artifacts take any batch and size and run on whatever device they are
//! moved to; trace-mode artifacts run the traced network at the conversion size and
//! batch 1 (their decoding, NMS and letterbox are still scripted).
//!
//! The crate links libtorch through `tch` and a small C++ shim (`csrc/`) for the JIT
//! calls that `tch` does not expose (defining methods, registering attributes, freezing,
//! mobile export, tracing into a module with parameters).

mod checkpoint_api;
mod clock;
mod convert;
mod cuda_backend;
mod error;
mod ffi;
mod jit;
mod layers;
mod memory;
mod metadata;
mod network;
mod onnx;
mod options;
pub mod predict;
mod progress;
mod proof;
mod report;
pub mod runtime;
mod script;
mod source;
mod timing;
mod validate;

pub use convert::convert;
pub use error::{ConvertError, Result};
pub use jit::MobileModule;
pub use layers::WeightSource;
pub use metadata::{ArtifactMetadata, InputSpec, METADATA_FILE, METADATA_FORMAT};
pub use onnx::runtime::{LIBRARY_VAR as ONNXRUNTIME_VAR, VERSION as ONNXRUNTIME_VERSION};
pub use options::{
    ConvertRequest, DeviceChoice, Format, ImageSize, Mode, Optimize, Output, ParseOptionError,
    Perturbation, Precision, ResolveDevice, TestFault, limits,
};
pub use progress::{ProgressEvent, Stage};
pub use report::write_report;
pub use report::{
    ArtifactFacts, ConversionReport, Environment, Latency, OutputCheck, OutputKind, REPORT_SCHEMA,
    ReportOptions, ReportStatus, SourceFacts, StageTime, Tolerance, Validation, ValidationInput,
    ValidationStatus,
};
pub use timing::DEFAULT_LATENCY_BUDGET_S;
pub use validate::tolerance;
pub use yolots_protocol::{ConverterLine, EXIT_DIVERGED, EXIT_REFUSED, ErrorCode, RuntimeFacts};

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
