//! yolots-onnx: ONNX models as plain data.
//!
//! [`proto`] declares the `onnx.proto` messages yolots uses, [`Graph`] builds a graph
//! node by node, and [`read`] summarises a file (inputs, outputs, metadata) without
//! running it. The converter writes its ONNX artifacts with this crate; the `yolots`
//! binary's `inspect` reads them with it, without loading libtorch or ONNX Runtime.

mod graph;
pub mod proto;
pub mod read;

pub use graph::{Dim, Graph, ModelInfo, attr, float_output};

/// The operator set yolots writes: read by ONNX Runtime, TensorRT 8.6+ and OpenVINO.
pub const OPSET: i64 = 17;

/// The IR version that goes with opset 17.
pub const IR_VERSION: i64 = 8;

/// Encodes a model as file bytes.
pub fn encode(model: &proto::ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}
