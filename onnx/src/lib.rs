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

/// Writes a model as file bytes without ever holding them all: the weights (the graph's
/// initializers) are encoded and written one at a time, after the rest of the graph, and
/// each is freed once written. Protobuf readers take a message's fields in any order, so
/// the file reads back as the model [`encode`] writes.
pub fn write(mut model: proto::ModelProto, out: &mut impl std::io::Write) -> std::io::Result<()> {
    use prost::Message;
    use prost::encoding::{WireType, encode_key, encode_varint, message};

    /// `GraphProto.initializer` and `ModelProto.graph` in `onnx.proto`.
    const INITIALIZER: u32 = 5;
    const GRAPH: u32 = 7;

    let Some(mut graph) = model.graph.take() else {
        return out.write_all(&model.encode_to_vec());
    };
    let weights = std::mem::take(&mut graph.initializer);
    let weights_len: usize = weights
        .iter()
        .map(|t| message::encoded_len(INITIALIZER, t))
        .sum();
    let mut head = model.encode_to_vec();
    encode_key(GRAPH, WireType::LengthDelimited, &mut head);
    encode_varint((graph.encoded_len() + weights_len) as u64, &mut head);
    graph.encode(&mut head).map_err(std::io::Error::other)?;
    out.write_all(&head)?;
    drop(head);
    let mut buf = Vec::new();
    for t in weights {
        buf.clear();
        message::encode(INITIALIZER, &t, &mut buf);
        drop(t);
        out.write_all(&buf)?;
    }
    Ok(())
}
