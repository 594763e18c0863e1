//! A builder for one ONNX graph: nodes are appended in topological order, every value
//! gets a unique name, and constants become initializers.
//!
//! ```
//! use yolots_onnx::{Dim, Graph, attr};
//! use yolots_onnx::proto::DataType;
//!
//! let mut g = Graph::new("example");
//! g.input("x", DataType::Float, &[Dim::Named("n".into()), Dim::Fixed(4)]);
//! let y = g.op("Relu", &["x"], vec![]);
//! let axes = g.ints(&[1]);
//! let s = g.op("ReduceSum", &[&y, &axes], vec![attr::int("keepdims", 0)]);
//! g.output_as(&s, "sum", DataType::Float, &[Dim::Named("n".into())]);
//! let model = g.into_model(yolots_onnx::ModelInfo::new("example", "0"), vec![]);
//! assert_eq!(model.graph.unwrap().node.len(), 3);
//! ```

use std::collections::HashMap;

use crate::proto::{
    self, AttributeProto, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    tensor_shape_proto, type_proto,
};
use crate::{IR_VERSION, OPSET};

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    /// A symbolic size (`batch`, `height`, ...), free at run time.
    Named(String),
}

/// Who wrote the model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub producer_name: String,
    pub producer_version: String,
    pub doc_string: String,
}

impl ModelInfo {
    pub fn new(producer_name: &str, producer_version: &str) -> Self {
        ModelInfo {
            producer_name: producer_name.to_owned(),
            producer_version: producer_version.to_owned(),
            doc_string: String::new(),
        }
    }
}

/// Node attributes.
pub mod attr {
    use crate::proto::{AttributeProto, AttributeType};

    fn named(name: &str, kind: AttributeType) -> AttributeProto {
        AttributeProto {
            name: name.to_owned(),
            r#type: kind as i32,
            ..Default::default()
        }
    }

    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            i: v,
            ..named(name, AttributeType::Int)
        }
    }

    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            ints: v.to_vec(),
            ..named(name, AttributeType::Ints)
        }
    }

    pub fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            f: v,
            ..named(name, AttributeType::Float)
        }
    }

    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            s: v.as_bytes().to_vec(),
            ..named(name, AttributeType::String)
        }
    }
}

/// A graph under construction.
#[derive(Debug)]
pub struct Graph {
    name: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Op type -> how many nodes of it exist (for node and value names).
    counts: HashMap<String, usize>,
    constants: usize,
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                Dim::Named(n) => tensor_shape_proto::dimension::Value::DimParam(n.clone()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

impl Graph {
    pub fn new(name: &str) -> Self {
        Graph {
            name: name.to_owned(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            counts: HashMap::new(),
            constants: 0,
        }
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.inputs.push(value_info(name, elem, dims));
    }

    /// Declares the value `value` as a graph output named `name` (through an `Identity`
    /// node when the names differ).
    pub fn output_as(&mut self, value: &str, name: &str, elem: DataType, dims: &[Dim]) {
        if value != name {
            self.op_into("Identity", &[value], &[name], Vec::new());
        }
        self.outputs.push(value_info(name, elem, dims));
    }

    /// A named initializer from little-endian bytes; returns its name.
    pub fn tensor(&mut self, name: &str, elem: DataType, dims: &[i64], raw: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: elem as i32,
            name: name.to_owned(),
            raw_data: raw,
            ..Default::default()
        });
        name.to_owned()
    }

    fn constant_name(&mut self) -> String {
        self.constants += 1;
        format!("const_{}", self.constants)
    }

    /// A 1-D int64 constant (shapes, axes, indices).
    pub fn ints(&mut self, values: &[i64]) -> String {
        let name = self.constant_name();
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(&name, DataType::Int64, &[values.len() as i64], raw)
    }

    /// A scalar int64 constant.
    pub fn int_scalar(&mut self, value: i64) -> String {
        let name = self.constant_name();
        self.tensor(&name, DataType::Int64, &[], value.to_le_bytes().to_vec())
    }

    /// A float32 constant of shape `dims`.
    pub fn floats(&mut self, values: &[f32], dims: &[i64]) -> String {
        let name = self.constant_name();
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(&name, DataType::Float, dims, raw)
    }

    /// A scalar float32 constant.
    pub fn float_scalar(&mut self, value: f32) -> String {
        self.floats(&[value], &[])
    }

    /// Appends a node with one output, named after the op; returns the output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_n(op, inputs, 1, attrs).pop().unwrap_or_default()
    }

    /// Appends a node with `outputs` outputs; returns their names.
    pub fn op_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let n = self.counts.get(op).copied().unwrap_or(0);
        let names: Vec<String> = (0..outputs)
            .map(|k| {
                if outputs == 1 {
                    format!("{op}_{n}")
                } else {
                    format!("{op}_{n}_{k}")
                }
            })
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.op_into(op, inputs, &refs, attrs);
        names
    }

    /// Appends a node whose outputs have the given names.
    pub fn op_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        let n = self.counts.entry(op.to_owned()).or_insert(0);
        let name = format!("{op}_{n}");
        *n += 1;
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            name,
            op_type: op.to_owned(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Appends a node with one output and a name of our choosing: runtimes quote a failing
    /// node's name, so a node that exists to fail can say why in it.
    pub fn op_named(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let output = self.op(op, inputs, attrs);
        if let Some(node) = self.nodes.last_mut() {
            node.name = name.to_owned();
        }
        output
    }

    /// Elements in every initializer.
    pub fn initializer_elements(&self) -> i64 {
        self.initializers
            .iter()
            .map(|t| t.dims.iter().product::<i64>())
            .sum()
    }

    /// The finished model, with `metadata` as its `metadata_props`.
    pub fn into_model(self, info: ModelInfo, metadata: Vec<(String, String)>) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: info.producer_name,
            producer_version: info.producer_version,
            domain: String::new(),
            model_version: 1,
            doc_string: info.doc_string,
            graph: Some(GraphProto {
                node: self.nodes,
                name: self.name,
                initializer: self.initializers,
                doc_string: String::new(),
                input: self.inputs,
                output: self.outputs,
                value_info: Vec::new(),
            }),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
        }
    }
}

/// A float32 value info, for adding an intermediate value as an extra graph output.
pub fn float_output(name: &str, rank: usize) -> ValueInfoProto {
    let dims: Vec<Dim> = (0..rank)
        .map(|i| Dim::Named(format!("{name}_{i}")))
        .collect();
    value_info(name, proto::DataType::Float, &dims)
}
