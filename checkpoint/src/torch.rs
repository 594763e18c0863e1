//! The torch vocabulary of the pickle machine: which globals are read as data.
//!
//! `torch.save` pickles tensors as calls to `torch._utils._rebuild_tensor_v2` on storages
//! named by persistent ids, parameters as `_rebuild_parameter`, and ordinary Python values
//! (ordered dicts, sets, bytes, numpy scalars, bound methods) as calls to their
//! constructors. Those few callables are interpreted here into plain [`Node`]s. Any other
//! global, `os.system` or `builtins.eval` included, only ever becomes the class reference of
//! an inert [`Object`]: nothing is looked up, imported or called.

use std::collections::HashMap;

use crate::error::{Error, clip};
use crate::limits::Budget;
use crate::model::DType;
use crate::pickle::{
    CallKind, Fault, Graph, Hooks, NdArray, Node, ObjId, Object, Storage, Tensor, Value, cost,
};

/// Bytes charged for one entry of the hooks' own tables, besides its key's text.
const TABLE_ENTRY: u64 = 64;
/// Most arguments any interpreted callable looks at; the rest of a longer tuple is
/// ignored instead of copied.
const MAX_ARGS: usize = 8;

/// How persistent ids are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PidFormat {
    /// `('storage', storage_type, key, location, numel)` (zip archives).
    Zip,
    /// `('storage', storage_type, root_key, location, numel, view_metadata)` and
    /// `('module', class, source_file, source)` (the legacy format).
    Legacy,
    /// Persistent ids are not allowed (the legacy format's header pickles).
    None,
}

/// A root storage as the pickle declared it (used to walk legacy storage sections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeclaredStorage {
    pub type_name: Box<str>,
    pub numel: u64,
}

/// The callables interpreted as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    RebuildTensor {
        explicit_dtype: bool,
    },
    RebuildParameter,
    TorchSize,
    OrderedDict,
    Set {
        frozen: bool,
    },
    GetAttr,
    CodecsEncode,
    Bytes,
    NpReconstruct,
    NpScalar,
    NpDtype,
    CopyregReconstructor,
    /// Everything else: an inert object.
    Other,
}

fn known(module: &str, name: &str) -> Known {
    // Protocol 2 pickles written by Python 3 use the Python 2 module names.
    let module = match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        "numpy._core.multiarray" => "numpy.core.multiarray",
        other => other,
    };
    match (module, name) {
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => Known::RebuildTensor {
            explicit_dtype: false,
        },
        ("torch._utils", "_rebuild_tensor_v3") => Known::RebuildTensor {
            explicit_dtype: true,
        },
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Known::RebuildParameter
        }
        ("torch", "Size") => Known::TorchSize,
        ("collections", "OrderedDict") => Known::OrderedDict,
        ("builtins", "set") => Known::Set { frozen: false },
        ("builtins", "frozenset") => Known::Set { frozen: true },
        ("builtins", "getattr") => Known::GetAttr,
        ("builtins", "bytes" | "bytearray") => Known::Bytes,
        ("_codecs", "encode") => Known::CodecsEncode,
        ("numpy.core.multiarray", "_reconstruct") => Known::NpReconstruct,
        ("numpy.core.multiarray", "scalar") => Known::NpScalar,
        ("numpy", "dtype") => Known::NpDtype,
        ("copyreg", "_reconstructor") => Known::CopyregReconstructor,
        _ => Known::Other,
    }
}

/// Element type of a torch storage class (`HalfStorage`, ...).
pub(crate) fn storage_dtype(type_name: &str) -> Option<DType> {
    Some(match type_name {
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "ByteStorage" | "UntypedStorage" => DType::U8,
        "CharStorage" => DType::I8,
        "ShortStorage" => DType::I16,
        "IntStorage" => DType::I32,
        "LongStorage" => DType::I64,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

/// Bytes per element of a storage class, including the types this reader does not convert
/// (so a legacy storage section can still be walked past them).
pub(crate) fn storage_element_size(type_name: &str) -> Option<usize> {
    if let Some(dtype) = storage_dtype(type_name) {
        return Some(dtype.size());
    }
    Some(match type_name {
        "ComplexFloatStorage" => 8,
        "ComplexDoubleStorage" => 16,
        "ComplexHalfStorage" => 4,
        "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage" | "QUInt2x4Storage" => 1,
        "QInt32Storage" => 4,
        _ => return None,
    })
}

/// Element type named by a `torch.<dtype>` global (`_rebuild_tensor_v3`).
fn torch_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "float16" | "half" => DType::F16,
        "bfloat16" => DType::BF16,
        "float32" | "float" => DType::F32,
        "float64" | "double" => DType::F64,
        "uint8" => DType::U8,
        "int8" => DType::I8,
        "int16" | "short" => DType::I16,
        "int32" | "int" => DType::I32,
        "int64" | "long" => DType::I64,
        "bool" => DType::Bool,
        _ => return None,
    })
}

/// [`Hooks`] that read torch files as data.
pub(crate) struct TorchHooks {
    format: PidFormat,
    /// Storage nodes already built, by persistent-id identity (key and view).
    storages: HashMap<(Box<str>, u64), Value>,
    /// Root storages in the order first seen.
    declared: HashMap<Box<str>, DeclaredStorage>,
    /// Interpretation of each global already met, so the hot `REDUCE`s skip the lookup.
    known: HashMap<ObjId, Known>,
}

impl TorchHooks {
    pub(crate) fn new(format: PidFormat) -> Self {
        TorchHooks {
            format,
            storages: HashMap::new(),
            declared: HashMap::new(),
            known: HashMap::new(),
        }
    }

    pub(crate) fn set_format(&mut self, format: PidFormat) {
        self.format = format;
    }

    /// Root storages named by the pickle, by key.
    pub(crate) fn declared(&self) -> &HashMap<Box<str>, DeclaredStorage> {
        &self.declared
    }

    fn known(&mut self, graph: &Graph, budget: &Budget, callable: Value) -> Result<Known, Fault> {
        let Value::Ref(id) = callable else {
            return Ok(Known::Other);
        };
        if let Some(k) = self.known.get(&id) {
            return Ok(*k);
        }
        let k = match graph.global(callable) {
            Some((module, name)) => known(module, name),
            None => Known::Other,
        };
        budget.charge_memory("pickle callables", TABLE_ENTRY)?;
        self.known.insert(id, k);
        Ok(k)
    }

    fn storage(
        &mut self,
        graph: &mut Graph,
        budget: &Budget,
        fields: &[Value],
        view: Option<(Box<str>, u64, u64)>,
    ) -> Result<Value, Fault> {
        let [_, storage_type, key, location, numel, ..] = fields else {
            return Err(malformed("storage persistent id with too few fields"));
        };
        let type_name: Box<str> = match graph.global(*storage_type) {
            Some((_, name)) => {
                check_key_len("storage type name length", name.len())?;
                name.into()
            }
            None => return Err(malformed("storage type is not a class reference")),
        };
        let key = key_string(graph, *key, "storage key", "storage key length")?;
        let location = graph.str(*location).unwrap_or("");
        check_key_len("storage location length", location.len())?;
        let location: Box<str> = location.into();
        let numel = graph
            .int(*numel)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| malformed("storage size is not a non-negative integer"))?;
        match self.declared.get(&key) {
            // One storage read as two element types: torch.save refuses to write that.
            Some(first) if first.type_name != type_name => {
                return Err(Fault::Refused(Error::corrupt(
                    format!("data/{}", clip(&key)),
                    format!(
                        "storage declared as `{}` and as `{}`",
                        clip(&first.type_name),
                        clip(&type_name)
                    ),
                )));
            }
            Some(_) => {}
            None => {
                budget.charge_memory(
                    "storage table",
                    TABLE_ENTRY
                        .saturating_add(key.len() as u64)
                        .saturating_add(type_name.len() as u64),
                )?;
                self.declared.insert(
                    key.clone(),
                    DeclaredStorage {
                        type_name: type_name.clone(),
                        numel,
                    },
                );
            }
        }
        let (view_offset, view_numel, view_key) = match view {
            Some((view_key, offset, size)) => (offset, size, view_key),
            None => (0, numel, key.clone()),
        };
        if let Some(v) = self.storages.get(&(view_key.clone(), view_offset)) {
            return Ok(*v);
        }
        let node = Node::Storage(Storage {
            key,
            dtype: storage_dtype(&type_name),
            type_name,
            numel: view_numel,
            location,
            view_offset,
        });
        budget.charge_memory(
            "storage table",
            cost::node(&node, graph.len())
                .saturating_add(TABLE_ENTRY)
                .saturating_add(view_key.len() as u64),
        )?;
        let value = graph.alloc(node).ok_or(Fault::GraphFull)?;
        self.storages.insert((view_key, view_offset), value);
        Ok(value)
    }
}

impl Hooks for TorchHooks {
    fn persistent_load(
        &mut self,
        graph: &mut Graph,
        budget: &Budget,
        pid: Value,
    ) -> Result<Value, Fault> {
        let fields = graph
            .seq(pid)
            .ok_or_else(|| malformed("persistent id is not a tuple"))?
            .iter()
            .take(MAX_ARGS)
            .copied()
            .collect::<Vec<_>>();
        let typename = match fields.first() {
            Some(v) => key_string(
                graph,
                *v,
                "persistent id type name",
                "persistent id type name length",
            )?,
            None => return Err(malformed("persistent id without a type name")),
        };
        match (self.format, &*typename) {
            (PidFormat::Zip, "storage") => self.storage(graph, budget, &fields, None),
            (PidFormat::Legacy, "storage") => {
                let view = match fields.get(5).copied() {
                    None | Some(Value::None) => None,
                    Some(meta) => {
                        let parts = graph
                            .seq(meta)
                            .ok_or_else(|| malformed("storage view metadata is not a tuple"))?;
                        let [view_key, offset, size] = parts else {
                            return Err(malformed("storage view metadata needs 3 fields"));
                        };
                        let view_key = key_string(
                            graph,
                            *view_key,
                            "storage view key",
                            "storage view key length",
                        )?;
                        let offset = non_negative(graph, *offset, "storage view offset")?;
                        let size = non_negative(graph, *size, "storage view size")?;
                        Some((view_key, offset, size))
                    }
                };
                self.storage(graph, budget, &fields, view)
            }
            // Old files record the class of pickled modules for a source check: the class
            // reference itself is the value.
            (PidFormat::Legacy, "module") => fields
                .get(1)
                .copied()
                .ok_or_else(|| malformed("module persistent id without a class")),
            (PidFormat::None, _) => Err(malformed("persistent id where none is allowed")),
            (_, other) => Err(malformed(format!(
                "unknown persistent id type {:?}",
                clip(other)
            ))),
        }
    }

    fn call(
        &mut self,
        graph: &mut Graph,
        budget: &Budget,
        callable: Value,
        args: Value,
        _kind: CallKind,
    ) -> Result<Value, Fault> {
        let known = self.known(graph, budget, callable)?;
        // What the value to build will hold beyond its slot, paid before it is built.
        let payload = payload(graph, known, args);
        let growth = cost::arena_growth(graph.len());
        budget.charge_memory("pickle values", payload.saturating_add(growth))?;
        let list = |graph: &Graph| {
            graph
                .seq(args)
                .map(|items| items.iter().take(MAX_ARGS).copied().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let node = match known {
            Known::RebuildTensor { explicit_dtype } => {
                Node::Tensor(rebuild_tensor(graph, &list(graph), explicit_dtype)?)
            }
            Known::RebuildParameter => {
                let a = list(graph);
                let data = a.first().copied().unwrap_or(Value::None);
                let requires_grad = a.get(1).and_then(|v| graph.int(*v)).unwrap_or(0) != 0;
                let Value::Ref(id) = data else {
                    return Err(malformed("_rebuild_parameter of a non-tensor"));
                };
                match graph.node_mut(id) {
                    Some(Node::Tensor(t)) => {
                        t.parameter = true;
                        t.requires_grad = requires_grad;
                    }
                    _ => return Err(malformed("_rebuild_parameter of a non-tensor")),
                }
                return Ok(data);
            }
            Known::TorchSize => match list(graph).first() {
                Some(&shape) if graph.seq(shape).is_some() => return Ok(shape),
                None => Node::Tuple(Vec::new()),
                Some(_) => return Err(malformed("torch.Size of a non-sequence")),
            },
            Known::OrderedDict => {
                let mut entries = Vec::new();
                if let Some(&pairs) = list(graph).first() {
                    let pairs = graph.seq(pairs).unwrap_or_default();
                    // Exactly what was paid for, not a doubled capacity.
                    entries.reserve_exact(pairs.len());
                    for pair in pairs {
                        match graph.seq(*pair) {
                            Some([k, v]) => entries.push((*k, *v)),
                            _ => return Err(malformed("OrderedDict item is not a pair")),
                        }
                    }
                }
                Node::Dict(entries)
            }
            Known::Set { frozen } => {
                let items = match list(graph).first() {
                    Some(&items) => graph
                        .seq(items)
                        .map(<[Value]>::to_vec)
                        .ok_or_else(|| malformed("set of a non-sequence"))?,
                    None => Vec::new(),
                };
                Node::Set { items, frozen }
            }
            Known::GetAttr => match list(graph).as_slice() {
                [target, name, ..] => {
                    let name = graph
                        .str(*name)
                        .ok_or_else(|| malformed("getattr with a non-string name"))?;
                    Node::BoundMethod {
                        target: *target,
                        name: name.into(),
                    }
                }
                _ => return Err(malformed("getattr needs an object and a name")),
            },
            Known::CodecsEncode => match list(graph).as_slice() {
                [text, encoding] => {
                    let text = graph
                        .str(*text)
                        .ok_or_else(|| malformed("encode of a non-string"))?;
                    let encoding = graph.str(*encoding).unwrap_or("utf-8");
                    Node::Bytes(encode(text, encoding)?.into())
                }
                _ => return Err(malformed("_codecs.encode needs a string and an encoding")),
            },
            Known::Bytes => match list(graph).as_slice() {
                [] => Node::Bytes(Box::default()),
                [data] if graph.bytes(*data).is_some() => return Ok(*data),
                [text, encoding] => {
                    let text = graph
                        .str(*text)
                        .ok_or_else(|| malformed("bytes of a non-string"))?;
                    let encoding = graph.str(*encoding).unwrap_or("utf-8");
                    Node::Bytes(encode(text, encoding)?.into())
                }
                _ => inert(callable, args),
            },
            Known::NpReconstruct => {
                let shape = list(graph)
                    .get(1)
                    .map(|&s| dims(graph, s, "numpy array shape"))
                    .transpose()?
                    .unwrap_or_default();
                Node::NdArray(NdArray {
                    shape,
                    ..NdArray::default()
                })
            }
            Known::NpScalar => match list(graph).as_slice() {
                [dtype, data, ..] => Node::NpScalar {
                    dtype: *dtype,
                    data: *data,
                },
                _ => return Err(malformed("numpy scalar needs a dtype and data")),
            },
            Known::NpDtype => {
                let descr = list(graph)
                    .first()
                    .and_then(|v| graph.str(*v))
                    .ok_or_else(|| malformed("numpy dtype without a descriptor"))?
                    .into();
                Node::NpDtype {
                    descr,
                    byte_order: None,
                }
            }
            Known::CopyregReconstructor => Node::Object(Object {
                class: list(graph).first().copied(),
                ..Object::default()
            }),
            Known::Other => inert(callable, args),
        };
        graph.alloc(node).ok_or(Fault::GraphFull)
    }

    fn build(
        &mut self,
        graph: &mut Graph,
        budget: &Budget,
        target: Value,
        state: Value,
    ) -> Result<(), Fault> {
        let Value::Ref(id) = target else {
            return Ok(());
        };
        // Read what the state says before borrowing the target mutably.
        let array_state = match graph.node(id) {
            Some(Node::NdArray(_)) => {
                let shape = graph
                    .seq(state)
                    .and_then(|items| items.get(usize::from(items.len() == 5)).copied());
                let dims = shape.and_then(|s| graph.seq(s)).map_or(0, <[Value]>::len);
                budget.charge_memory("numpy array shapes", cost::dims(dims))?;
                Some(ndarray_state(graph, state)?)
            }
            _ => None,
        };
        let byte_order = match graph.node(id) {
            Some(Node::NpDtype { .. }) => graph
                .seq(state)
                .and_then(|s| s.get(1).copied())
                .and_then(|v| graph.str(v))
                .and_then(|s| s.chars().next()),
            _ => None,
        };
        match graph.node_mut(id) {
            Some(Node::Object(object)) => object.state = Some(state),
            Some(Node::NdArray(array)) => {
                if let Some(new) = array_state {
                    *array = new;
                }
            }
            Some(Node::NpDtype { byte_order: bo, .. }) => *bo = byte_order,
            // Tensors, dicts and the rest carry no state this reader needs.
            _ => {}
        }
        Ok(())
    }
}

/// The most bytes the value built for `known(args)` can hold besides its node slot: the
/// elements it copies out of its arguments.
fn payload(graph: &Graph, known: Known, args: Value) -> u64 {
    let arg = |i: usize| graph.seq(args).and_then(|items| items.get(i).copied());
    let len = |value: Option<Value>| -> usize {
        match value.and_then(|v| graph.get(v)) {
            Some(Node::List(items) | Node::Tuple(items)) => items.len(),
            Some(Node::Str(text)) => text.len(),
            _ => 0,
        }
    };
    match known {
        Known::RebuildTensor { .. } => {
            cost::dims(len(arg(2))).saturating_add(cost::dims(len(arg(3))))
        }
        Known::OrderedDict => cost::entries_bytes(len(arg(0))),
        Known::Set { .. } => cost::values(len(arg(0))),
        // Latin-1 text encodes to at most its UTF-8 length.
        Known::CodecsEncode | Known::Bytes => len(arg(0)) as u64,
        Known::GetAttr => len(arg(1)) as u64,
        Known::NpReconstruct => cost::dims(len(arg(1))),
        Known::NpDtype => len(arg(0)) as u64,
        Known::RebuildParameter
        | Known::TorchSize
        | Known::NpScalar
        | Known::CopyregReconstructor
        | Known::Other => 0,
    }
}

fn malformed(reason: impl Into<String>) -> Fault {
    Fault::Malformed(reason.into())
}

fn inert(callable: Value, args: Value) -> Node {
    Node::Object(Object {
        class: Some(callable),
        args: Some(args),
        ..Object::default()
    })
}

/// A persistent-id string field (Python 2 files may store them as bytes).
/// Longest storage key (or persistent-id type name) accepted, in bytes. `torch.save` writes
/// short decimal strings: the zip format numbers storages from `"0"`, the legacy format
/// uses a storage's address (at most 20 digits).
pub(crate) const MAX_STORAGE_KEY: usize = 64;

/// The text of a persistent id's key field (a string, UTF-8 bytes or an integer), refused
/// before it is copied when it is longer than any real key.
/// `what` names the field in messages, `limit` the bound it passed.
fn key_string(
    graph: &Graph,
    value: Value,
    what: &str,
    limit: &'static str,
) -> Result<Box<str>, Fault> {
    let text = if let Some(s) = graph.str(value) {
        s
    } else if let Some(b) = graph.bytes(value) {
        std::str::from_utf8(b).map_err(|_| malformed(format!("{what} is not UTF-8")))?
    } else if let Some(i) = graph.int(value) {
        return Ok(i.to_string().into());
    } else {
        return Err(malformed(format!("{what} is not a string")));
    };
    check_key_len(limit, text.len())?;
    Ok(text.into())
}

/// Refuses a key longer than [`MAX_STORAGE_KEY`] with the reader's limit error.
pub(crate) fn check_key_len(what: &'static str, len: usize) -> Result<(), Error> {
    if len > MAX_STORAGE_KEY {
        return Err(Error::limit(what, MAX_STORAGE_KEY as u64, len as u64));
    }
    Ok(())
}

fn non_negative(graph: &Graph, value: Value, what: &str) -> Result<u64, Fault> {
    graph
        .int(value)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| malformed(format!("{what} is not a non-negative integer")))
}

/// A tuple of non-negative integers (a shape or strides).
fn dims(graph: &Graph, value: Value, what: &str) -> Result<Vec<usize>, Fault> {
    let items = graph
        .seq(value)
        .ok_or_else(|| malformed(format!("{what} is not a tuple")))?;
    // Exactly as long as paid for: collecting `Result`s would grow by doubling.
    let mut out = Vec::with_capacity(items.len());
    for v in items {
        let dim = graph
            .int(*v)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| malformed(format!("{what} has a non-integer or negative entry")))?;
        out.push(dim);
    }
    Ok(out)
}

fn rebuild_tensor(graph: &Graph, args: &[Value], explicit_dtype: bool) -> Result<Tensor, Fault> {
    let [storage, offset, size, stride, rest @ ..] = args else {
        return Err(malformed("tensor rebuild with too few arguments"));
    };
    let Value::Ref(storage_id) = *storage else {
        return Err(malformed("tensor storage is not a storage"));
    };
    let storage_node = graph
        .storage(storage_id)
        .ok_or_else(|| malformed("tensor storage is not a storage"))?;
    let shape = dims(graph, *size, "tensor size")?;
    let stride = dims(graph, *stride, "tensor stride")?;
    if shape.len() != stride.len() {
        return Err(malformed("tensor size and stride differ in length"));
    }
    let storage_offset = graph
        .int(*offset)
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| malformed("tensor storage offset is not a non-negative integer"))?;
    let requires_grad = rest.first().and_then(|v| graph.int(*v)).unwrap_or(0) != 0;
    let (dtype, dtype_name) = if explicit_dtype {
        let name = rest
            .get(2)
            .and_then(|v| graph.global(*v))
            .map(|(_, name)| name)
            .ok_or_else(|| malformed("_rebuild_tensor_v3 without a dtype"))?;
        (torch_dtype(name), name.into())
    } else {
        (storage_node.dtype, storage_node.type_name.clone())
    };
    Ok(Tensor {
        storage: storage_id,
        dtype,
        dtype_name,
        shape,
        stride,
        storage_offset,
        requires_grad,
        parameter: false,
    })
}

/// `str.encode(encoding)` for the encodings pickles use to carry bytes.
fn encode(text: &str, encoding: &str) -> Result<Vec<u8>, Fault> {
    match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| malformed("non-Latin-1 character")))
            .collect(),
        "utf-8" | "utf8" | "ascii" => Ok(text.as_bytes().to_vec()),
        other => Err(malformed(format!("unsupported encoding {:?}", clip(other)))),
    }
}

/// numpy's `ndarray.__setstate__` tuple: `(version, shape, dtype, is_fortran, data)`.
fn ndarray_state(graph: &Graph, state: Value) -> Result<NdArray, Fault> {
    let items = graph
        .seq(state)
        .ok_or_else(|| malformed("numpy array state is not a tuple"))?;
    let fields = match items {
        [_, shape, dtype, fortran, data] | [shape, dtype, fortran, data] => {
            [*shape, *dtype, *fortran, *data]
        }
        _ => return Err(malformed("numpy array state has an unexpected length")),
    };
    let [shape, dtype, fortran, data] = fields;
    Ok(NdArray {
        shape: dims(graph, shape, "numpy array shape")?,
        dtype: Some(dtype),
        fortran_order: graph.int(fortran).unwrap_or(0) != 0,
        data: Some(data),
    })
}
