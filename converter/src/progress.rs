//! Progress of a conversion, as events a caller can print or stream as JSON lines. The
//! types live in `yolots-protocol`, shared with the programs that do not load libtorch.

pub use yolots_protocol::{ProgressEvent, Stage};
