//! What a model file says about itself: opset, inputs, outputs and metadata, read
//! without running it.

use prost::Message;

use crate::proto::{DataType, ModelProto, ValueInfoProto, tensor_shape_proto, type_proto};

/// Why a file could not be read as an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("not an ONNX model: it has no graph")]
    NoGraph,
}

/// A graph input or output as `name: type[dims]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSummary {
    pub name: String,
    pub elem_type: String,
    /// Fixed sizes as numbers, symbolic ones by name.
    pub dims: Vec<String>,
}

impl std::fmt::Display for ValueSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}[{}]",
            self.name,
            self.elem_type,
            self.dims.join(", ")
        )
    }
}

/// The facts of one model file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub ir_version: i64,
    /// `(domain, version)`; `""` is the default ONNX domain.
    pub opsets: Vec<(String, i64)>,
    pub producer: String,
    pub inputs: Vec<ValueSummary>,
    pub outputs: Vec<ValueSummary>,
    pub nodes: usize,
    pub initializers: usize,
    /// Elements in every initializer.
    pub initializer_elements: i64,
    pub metadata: Vec<(String, String)>,
}

impl ModelSummary {
    /// The metadata value of `key`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn summarise(v: &ValueInfoProto) -> ValueSummary {
    // Tensors are the only value type yolots writes or declares.
    let tensor = v
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .map(|type_proto::Value::TensorType(t)| t);
    let elem_type = tensor
        .and_then(|t| DataType::try_from(t.elem_type).ok())
        .map_or("?", DataType::name)
        .to_owned();
    let dims = tensor
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(tensor_shape_proto::dimension::Value::DimValue(n)) => n.to_string(),
                    Some(tensor_shape_proto::dimension::Value::DimParam(p)) => p.clone(),
                    None => "?".to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    ValueSummary {
        name: v.name.clone(),
        elem_type,
        dims,
    }
}

/// Decodes a model file.
pub fn decode(bytes: &[u8]) -> Result<ModelProto, ReadError> {
    Ok(ModelProto::decode(bytes)?)
}

/// Reads the facts of a model file.
pub fn summary(bytes: &[u8]) -> Result<ModelSummary, ReadError> {
    let model = decode(bytes)?;
    let graph = model.graph.as_ref().ok_or(ReadError::NoGraph)?;
    Ok(ModelSummary {
        ir_version: model.ir_version,
        opsets: model
            .opset_import
            .iter()
            .map(|o| (o.domain.clone(), o.version))
            .collect(),
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_owned(),
        inputs: graph.input.iter().map(summarise).collect(),
        outputs: graph.output.iter().map(summarise).collect(),
        nodes: graph.node.len(),
        initializers: graph.initializer.len(),
        initializer_elements: graph
            .initializer
            .iter()
            .map(|t| t.dims.iter().product::<i64>())
            .sum(),
        metadata: model
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect(),
    })
}

/// Whether `bytes` start like a model file yolots wrote (field 1, `ir_version`, first).
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x08)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DataType;
    use crate::{Dim, Graph, ModelInfo, attr};

    fn model() -> crate::proto::ModelProto {
        let mut g = Graph::new("t");
        let batch = Dim::Named("batch".into());
        g.input("images", DataType::Float, &[batch.clone(), Dim::Fixed(3)]);
        let w = g.floats(&[1.0, 2.0, 3.0], &[3]);
        let y = g.op("Mul", &["images", &w], vec![]);
        let y = g.op("Softmax", &[&y], vec![attr::int("axis", 1)]);
        g.output_as(&y, "scores", DataType::Float, &[batch, Dim::Fixed(3)]);
        let w2 = g.floats(&[4.0, 5.0], &[2]);
        let _ = g.op("Identity", &[&w2], vec![]);
        let metadata = vec![("yolots.json".to_owned(), "{}".to_owned())];
        g.into_model(ModelInfo::new("yolots", "1.2.3"), metadata)
    }

    fn model_bytes() -> Vec<u8> {
        crate::encode(&model())
    }

    #[test]
    fn a_streamed_model_reads_back_as_the_encoded_one() {
        let mut streamed = Vec::new();
        crate::write(model(), &mut streamed).unwrap();
        assert_eq!(streamed.len(), model_bytes().len());
        let back = <crate::proto::ModelProto as prost::Message>::decode(&streamed[..]).unwrap();
        assert_eq!(back, model());
        assert_eq!(back.graph.unwrap().initializer.len(), 2);
    }

    #[test]
    fn a_written_model_reads_back() {
        let bytes = model_bytes();
        assert!(looks_like_onnx(&bytes));
        let s = summary(&bytes).unwrap();
        assert_eq!(s.ir_version, crate::IR_VERSION);
        assert_eq!(s.opsets, [(String::new(), crate::OPSET)]);
        assert_eq!(s.producer, "yolots 1.2.3");
        assert_eq!(s.inputs[0].to_string(), "images float[batch, 3]");
        assert_eq!(s.outputs[0].to_string(), "scores float[batch, 3]");
        // Mul, Softmax, the Identity that names the output, and one of a second weight.
        assert_eq!(s.nodes, 4);
        assert_eq!((s.initializers, s.initializer_elements), (2, 5));
        assert_eq!(s.metadata("yolots.json"), Some("{}"));
        assert_eq!(s.metadata("missing"), None);
    }

    #[test]
    fn other_files_are_refused() {
        assert!(!looks_like_onnx(b"PK\x03\x04"));
        assert!(summary(b"\xff\xff\xff").is_err());
        // A valid message without a graph.
        assert!(matches!(summary(&[0x08, 0x08]), Err(ReadError::NoGraph)));
    }
}
