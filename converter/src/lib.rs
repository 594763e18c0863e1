//! yolots-converter: turns a YOLOv7 model description into a TorchScript artifact.
//!
//! The crate links libtorch through `tch` and a small C++ shim (`csrc/`) for the JIT
//! calls that `tch` does not expose.

mod ffi;
pub mod runtime;
