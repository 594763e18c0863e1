//! The values a pickle builds, kept in an arena.
//!
//! Pickles share and mutate objects (an empty dict is memoized, then filled; a module's
//! state refers back to the module through a bound method), so containers live in a
//! [`Graph`] and a [`Value`] is a small `Copy` handle to them. Nothing here recurses over the
//! graph: cycles and deep nesting cost nothing, and dropping the graph is flat.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::DType;

/// A pickled value: a scalar, or a reference to a node of the [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Ref(ObjId),
}

/// Index of a node in a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjId(u32);

impl ObjId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Everything a pickle can build that is not a scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(Box<str>),
    Bytes(Box<[u8]>),
    /// An integer outside `i64`: little-endian two's complement, as `LONG1`/`LONG4` store it.
    BigInt(Box<[u8]>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Entries in insertion order. Inserting an existing key appends again (inserts stay
    /// O(1) on hostile input); lookups take the last entry, as a Python dict would.
    Dict(Vec<(Value, Value)>),
    Set {
        items: Vec<Value>,
        frozen: bool,
    },
    /// A `GLOBAL`/`STACK_GLOBAL` reference: a name, never imported or called.
    Global {
        module: Box<str>,
        name: Box<str>,
    },
    /// An instance of a class this reader does not interpret: inert data.
    Object(Object),
    /// `getattr(target, name)`: how a bound method such as `module.fuseforward` pickles.
    BoundMethod {
        target: Value,
        name: Box<str>,
    },
    Storage(Storage),
    Tensor(Tensor),
    /// `numpy.ndarray`, as `numpy.core.multiarray._reconstruct` and `BUILD` describe it.
    NdArray(NdArray),
    /// `numpy.core.multiarray.scalar(dtype, bytes)`.
    NpScalar {
        dtype: Value,
        data: Value,
    },
    /// `numpy.dtype(descr)`; the byte order comes with its `BUILD` state.
    NpDtype {
        descr: Box<str>,
        byte_order: Option<char>,
    },
}

/// An object built by `REDUCE`/`NEWOBJ`/`INST`/`OBJ` of a class this reader does not know:
/// the class reference, the arguments and whatever `BUILD`, `APPENDS` and `SETITEMS` gave it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    pub class: Option<Value>,
    pub args: Option<Value>,
    pub state: Option<Value>,
    pub list_items: Vec<Value>,
    pub dict_items: Vec<(Value, Value)>,
}

/// A tensor storage named by a persistent id.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    /// Archive key (`data/<key>` in the zip format).
    pub key: Box<str>,
    /// The storage class name (`HalfStorage`, `FloatStorage`, `UntypedStorage`, ...).
    pub type_name: Box<str>,
    /// `None` for element types this reader does not convert.
    pub dtype: Option<DType>,
    /// Declared size in elements.
    pub numel: u64,
    pub location: Box<str>,
    /// Offset in elements of a legacy storage view into its root storage.
    pub view_offset: u64,
}

/// A tensor rebuilt by `torch._utils._rebuild_tensor_v2` (or v3, or the old form).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub storage: ObjId,
    /// From the storage type, or the explicit dtype of `_rebuild_tensor_v3`.
    pub dtype: Option<DType>,
    /// The dtype name when `dtype` is `None`, for messages.
    pub dtype_name: Box<str>,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
    pub storage_offset: usize,
    pub requires_grad: bool,
    /// Wrapped by `_rebuild_parameter`: an `nn.Parameter`.
    pub parameter: bool,
}

/// A numpy array as plain data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub dtype: Option<Value>,
    pub fortran_order: bool,
    /// Raw element bytes (a bytes node), or a list of objects for object arrays.
    pub data: Option<Value>,
}

/// The arena of values built by one or more pickles.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    max_nodes: u64,
    /// Lookup indexes of the large dicts that [`Graph::dict_get`] was asked about.
    indexes: DictIndexes,
}

/// Dicts with fewer entries than this are scanned; larger ones get an index on their first
/// lookup, so a walk that looks up many keys in one huge (or shared) dict stays linear.
const INDEX_FROM: usize = 32;

/// Per-dict indexes from the hash of a string key to the position of its last entry.
///
/// Only positions are stored, never the keys: a lookup hashes its key, jumps to the
/// candidate entry and compares the text there. Two keys of one dict with the same 64-bit
/// hash (never seen in practice with a per-graph random hasher) make the index ambiguous for
/// that hash; such a lookup falls back to scanning the dict, which is always right.
#[derive(Debug, Default)]
struct DictIndexes {
    hasher: std::collections::hash_map::RandomState,
    built: Mutex<HashMap<ObjId, Arc<HashMap<u64, u32>>>>,
    /// Bytes and work spent building indexes, not yet reported by [`Graph::take_index_cost`].
    bytes: AtomicU64,
    steps: AtomicU64,
}

/// Bytes one index entry is counted as (key, position, table overhead).
const INDEX_ENTRY_BYTES: u64 = 24;

impl Graph {
    /// An empty graph that refuses to grow past `max_nodes` nodes.
    pub fn new(max_nodes: u64) -> Self {
        Graph {
            nodes: Vec::new(),
            max_nodes: max_nodes.min(u64::from(u32::MAX)),
            indexes: DictIndexes::default(),
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a node; `None` when the graph is full.
    pub(crate) fn alloc(&mut self, node: Node) -> Option<Value> {
        let len = self.nodes.len();
        if len as u64 >= self.max_nodes {
            return None;
        }
        let id = u32::try_from(len).ok()?;
        self.nodes.push(node);
        Some(Value::Ref(ObjId(id)))
    }

    pub fn node(&self, id: ObjId) -> Option<&Node> {
        self.nodes.get(id.index())
    }

    pub(crate) fn node_mut(&mut self, id: ObjId) -> Option<&mut Node> {
        // A dict may change: its index would be stale.
        if let Ok(built) = self.indexes.built.get_mut()
            && !built.is_empty()
        {
            built.clear();
        }
        self.nodes.get_mut(id.index())
    }

    /// The node a value refers to (`None` for scalars).
    pub fn get(&self, value: Value) -> Option<&Node> {
        match value {
            Value::Ref(id) => self.node(id),
            _ => None,
        }
    }

    pub fn str(&self, value: Value) -> Option<&str> {
        match self.get(value)? {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn bytes(&self, value: Value) -> Option<&[u8]> {
        match self.get(value)? {
            Node::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Elements of a list or tuple.
    pub fn seq(&self, value: Value) -> Option<&[Value]> {
        match self.get(value)? {
            Node::List(items) | Node::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// Entries of a dict.
    pub fn dict(&self, value: Value) -> Option<&[(Value, Value)]> {
        match self.get(value)? {
            Node::Dict(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under a string key of a dict (the last one inserted).
    ///
    /// Large dicts are indexed on their first lookup (see [`Graph::take_index_cost`]), so
    /// repeated lookups cost O(1) whatever the dict's size.
    pub fn dict_get(&self, dict: Value, key: &str) -> Option<Value> {
        let entries = self.dict(dict)?;
        if entries.len() >= INDEX_FROM
            && let Value::Ref(id) = dict
            && let Some(index) = self.dict_index(id, entries)
        {
            let hash = self.indexes.hasher.hash_one(key);
            let position = *index.get(&hash)?;
            match entries.get(position as usize) {
                Some((k, v)) if self.str(*k) == Some(key) => return Some(*v),
                // A hash shared by two keys: scan.
                _ => {}
            }
        }
        self.scan(entries, key)
    }

    fn scan(&self, entries: &[(Value, Value)], key: &str) -> Option<Value> {
        entries
            .iter()
            .rev()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// The index of dict `id`, built now if it is not yet; `None` if the lock is poisoned or
    /// the dict has more entries than positions fit in `u32` (scanned instead).
    fn dict_index(&self, id: ObjId, entries: &[(Value, Value)]) -> Option<Arc<HashMap<u64, u32>>> {
        let mut built = self.indexes.built.lock().ok()?;
        if let Some(index) = built.get(&id) {
            return Some(Arc::clone(index));
        }
        let mut index: HashMap<u64, u32> = HashMap::new();
        for (position, (k, _)) in entries.iter().enumerate() {
            let Some(text) = self.str(*k) else { continue };
            // Later entries overwrite earlier ones: the last insertion wins, as in Python.
            index.insert(
                self.indexes.hasher.hash_one(text),
                u32::try_from(position).ok()?,
            );
        }
        let len = entries.len() as u64;
        self.indexes.steps.fetch_add(len, Ordering::Relaxed);
        self.indexes.bytes.fetch_add(
            (index.capacity() as u64).saturating_mul(INDEX_ENTRY_BYTES),
            Ordering::Relaxed,
        );
        let index = Arc::new(index);
        built.insert(id, Arc::clone(&index));
        Some(index)
    }

    /// Bytes and work units spent on dict indexes since the last call, for the caller to
    /// charge to its [`Budget`](crate::Budget).
    pub(crate) fn take_index_cost(&self) -> (u64, u64) {
        (
            self.indexes.bytes.swap(0, Ordering::Relaxed),
            self.indexes.steps.swap(0, Ordering::Relaxed),
        )
    }

    /// `(module, name)` of a global reference.
    pub fn global(&self, value: Value) -> Option<(&str, &str)> {
        match self.get(value)? {
            Node::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    pub fn object(&self, value: Value) -> Option<&Object> {
        match self.get(value)? {
            Node::Object(object) => Some(object),
            _ => None,
        }
    }

    pub fn tensor(&self, value: Value) -> Option<&Tensor> {
        match self.get(value)? {
            Node::Tensor(tensor) => Some(tensor),
            _ => None,
        }
    }

    pub fn storage(&self, id: ObjId) -> Option<&Storage> {
        match self.node(id)? {
            Node::Storage(storage) => Some(storage),
            _ => None,
        }
    }

    /// An integer (booleans count, as in Python).
    pub fn int(&self, value: Value) -> Option<i64> {
        match value {
            Value::Int(i) => Some(i),
            Value::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    /// A number as `f64` (ints and floats).
    pub fn float(&self, value: Value) -> Option<f64> {
        match value {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }

    /// `module.name` of the class of an object (the callable of a `REDUCE`/`NEWOBJ`).
    pub fn class_path(&self, value: Value) -> Option<String> {
        let class = self.object(value)?.class?;
        let (module, name) = self.global(class)?;
        Some(format!("{module}.{name}"))
    }

    /// A short description of what a value is, for error messages.
    pub fn describe(&self, value: Value) -> String {
        match value {
            Value::None => "None".into(),
            Value::Bool(b) => format!("bool {b}"),
            Value::Int(i) => format!("int {i}"),
            Value::Float(f) => format!("float {f}"),
            Value::Ref(id) => match self.node(id) {
                None => "dangling reference".into(),
                Some(Node::Str(s)) => format!("str {:?}", truncate(s, 40)),
                Some(Node::Bytes(b)) => format!("bytes of length {}", b.len()),
                Some(Node::BigInt(_)) => "big int".into(),
                Some(Node::List(l)) => format!("list of {}", l.len()),
                Some(Node::Tuple(t)) => format!("tuple of {}", t.len()),
                Some(Node::Dict(d)) => format!("dict of {}", d.len()),
                Some(Node::Set { items, .. }) => format!("set of {}", items.len()),
                Some(Node::Global { module, name }) => format!("global {module}.{name}"),
                Some(Node::Object(_)) => match self.class_path(value) {
                    Some(class) => format!("`{class}` object"),
                    None => "object".into(),
                },
                Some(Node::BoundMethod { name, .. }) => format!("bound method `{name}`"),
                Some(Node::Storage(_)) => "storage".into(),
                Some(Node::Tensor(_)) => "tensor".into(),
                Some(Node::NdArray(_)) => "numpy array".into(),
                Some(Node::NpScalar { .. }) => "numpy scalar".into(),
                Some(Node::NpDtype { .. }) => "numpy dtype".into(),
            },
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(graph: &mut Graph, s: &str) -> Value {
        graph.alloc(Node::Str(s.into())).unwrap()
    }

    /// A dict large enough to be indexed: lookups agree with a scan, the last entry of a
    /// key wins, and changing the dict drops its index.
    #[test]
    fn indexed_lookups_keep_python_semantics() {
        let mut graph = Graph::new(1_000);
        let mut entries = Vec::new();
        for i in 0..INDEX_FROM * 2 {
            let key = text(&mut graph, &format!("k{}", i % INDEX_FROM));
            entries.push((key, Value::Int(i as i64)));
        }
        // A non-string key is skipped by string lookups.
        entries.push((Value::Int(7), Value::Int(-1)));
        let dict = graph.alloc(Node::Dict(entries)).unwrap();
        for i in 0..INDEX_FROM {
            let last = (i + INDEX_FROM) as i64;
            assert_eq!(
                graph.dict_get(dict, &format!("k{i}")),
                Some(Value::Int(last))
            );
        }
        assert_eq!(graph.dict_get(dict, "absent"), None);
        let (bytes, steps) = graph.take_index_cost();
        assert!(bytes > 0 && steps == (INDEX_FROM * 2 + 1) as u64);
        assert_eq!(graph.take_index_cost(), (0, 0));

        let key = text(&mut graph, "k0");
        let Value::Ref(id) = dict else { panic!() };
        if let Some(Node::Dict(entries)) = graph.node_mut(id) {
            entries.push((key, Value::Int(99)));
        }
        assert_eq!(graph.dict_get(dict, "k0"), Some(Value::Int(99)));
    }
}
