//! yolots-protocol: the plain data that yolots' programs exchange.
//!
//! The converter (which loads libtorch), the `yolots` binary (which never does) and the
//! web page speak in these types: the conversion options as the CLI spells them
//! ([`Format`], [`Mode`], [`Output`], [`Precision`], [`Optimize`], [`DeviceChoice`], [`ImageSize`]), what a
//! model predicts ([`Task`], with the COCO keypoint layout of pose models), the
//! progress of a conversion ([`ProgressEvent`], [`Stage`]) and the facts about the
//! libtorch a converter loads ([`RuntimeFacts`]); and every error code any part emits,
//! with the advice the page gives for it ([`ErrorCode`]). Serde and plain Rust only, so every side
//! can depend on it without linking libtorch, and it builds for `wasm32-unknown-unknown`.

#[cfg(feature = "cli")]
pub mod cli;
mod converter_line;
mod error_code;
mod options;
mod progress;
pub mod report;
mod request;
mod runtime;
#[cfg(feature = "sqlx")]
mod sql;
mod task;
pub mod words;

pub use converter_line::{ConverterLine, EXIT_DIVERGED, EXIT_REFUSED};
pub use error_code::{ErrorCode, GENERIC_ADVICE, Origin, UnknownErrorCode};
pub use options::{
    DeviceChoice, DeviceClass, Format, ImageSize, Mode, Optimize, Output, ParseOptionError,
    Precision, limits,
};
pub use progress::{ProgressEvent, Stage};
pub use request::{ConvertRequest, Perturbation, TestFault};
pub use runtime::RuntimeFacts;
pub use runtime::TEST_HOOKS;
pub use task::{COCO_KEYPOINT_NAMES, COCO_SKELETON, KEYPOINT_VALUES, Task, keypoint_layout};
