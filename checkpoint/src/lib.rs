//! yolots-checkpoint: reads PyTorch checkpoints as data, never as code, and describes the
//! YOLOv7 model inside.
//!
//! ```no_run
//! # fn main() -> Result<(), yolots_checkpoint::Error> {
//! let bytes = std::fs::read("yolov7-tiny.pt").unwrap();
//! let checkpoint = yolots_checkpoint::Checkpoint::from_bytes(&bytes)?;
//! let description = checkpoint.describe()?;
//! println!("{}", yolots_checkpoint::inspect::Summary::from(&description));
//! if let Some(head) = description.head() {
//!     let weights = checkpoint.tensor_f32(&head.convs[0].weight)?;
//!     println!("{} head weights", weights.len());
//! }
//! # Ok(()) }
//! ```
//!
//! The layers of the crate, each in its module:
//!
//! - [`archive`](Checkpoint): the zip and legacy containers, limits, tensor bytes;
//! - [`pickle`]: a pickle machine that builds values and never imports or calls anything;
//! - `torch`: the few torch/Python callables read as data (tensor rebuilds, ordered dicts,
//!   sets, numpy scalars, bound methods); every other class becomes an inert object;
//! - `describe`: the walk over `Model.model` that produces a [`ModelDescription`];
//! - [`inspect`]: the human and JSON summaries of `yolots inspect`.
//!
//! No file system, threads or memory maps are needed (the `fs` feature only adds
//! [`Checkpoint::open`]), so the crate builds for `wasm32-unknown-unknown`.

// Input-derived data must never panic the reader: no indexing, unwrap or panics outside
// tests.
#![cfg_attr(
    not(test),
    warn(
        clippy::indexing_slicing,
        clippy::panic,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::unreachable
    )
)]

mod archive;
mod describe;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod limits;
pub mod model;
pub mod pickle;
mod torch;

pub use archive::{ArchiveFormat, Checkpoint, ReadSeek};
pub use error::{Error, ErrorCode, Result};
pub use limits::{Budget, Limits};
pub use model::{DType, ModelDescription, TensorRef};
