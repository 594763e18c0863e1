//! yolots-converter: turns a YOLOv7 model description into a TorchScript artifact.
//!
//! [`convert`] is the whole pipeline the CLI and the service worker run: read the
//! checkpoint (through `yolots-checkpoint`, never executing it), build the network with
//! tch, fuse, emit TorchScript (generated source, or a trace), optimise, save, load the
//! artifact back and compare it with the unfused float32 eager network, time it, and
//! report ([`ConversionReport`], documented in `REPORT.md`).
//!
//! The crate links libtorch through `tch` and a small C++ shim (`csrc/`) for the JIT
//! calls that `tch` does not expose (defining methods, registering attributes, freezing,
//! mobile export, tracing into a module with parameters).

mod checkpoint_api;
mod convert;
mod error;
mod ffi;
mod jit;
mod layers;
mod metadata;
mod network;
mod options;
mod progress;
mod report;
pub mod runtime;
mod script;
mod source;
mod validate;

pub use convert::{convert, write_report};
pub use error::{ConvertError, Result};
pub use jit::MobileModule;
pub use layers::WeightSource;
pub use metadata::{ArtifactMetadata, InputSpec, METADATA_FILE, METADATA_FORMAT};
pub use options::{
    ConvertRequest, DeviceChoice, Head, ImageSize, Mode, Optimize, ParseOptionError, Perturbation,
    Precision,
};
pub use progress::{ProgressEvent, Stage};
pub use report::{
    ArtifactFacts, ConversionReport, Environment, Latency, OutputCheck, OutputKind, REPORT_SCHEMA,
    ReportOptions, ReportStatus, SourceFacts, StageTime, Tolerance, Validation, ValidationStatus,
};
pub use validate::tolerance;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
