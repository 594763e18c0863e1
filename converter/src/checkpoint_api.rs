//! The checkpoint reader's API, in one place.

pub(crate) use yolots_checkpoint::{Checkpoint, Error};
