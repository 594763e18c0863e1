//! Reading pickled `nn.Module` objects: class, instance dictionary, submodules,
//! parameters and buffers, as inert data.

use std::collections::HashMap;

use crate::Checkpoint;
use crate::error::{Error, Result, clip};
use crate::limits::Budget;
use crate::model::TensorRef;
use crate::pickle::{Graph, Node, Value};

/// A pickled module: an object whose class is a global and whose `BUILD` state is its
/// `__dict__` (or `(__dict__, slots)`).
#[derive(Clone, Copy)]
pub(crate) struct Module<'g> {
    pub graph: &'g Graph,
    pub value: Value,
    pub module: &'g str,
    pub name: &'g str,
    state: Option<Value>,
}

impl<'g> Module<'g> {
    /// `None` when `value` is not an object of a named class.
    pub fn new(graph: &'g Graph, value: Value) -> Option<Self> {
        let object = graph.object(value)?;
        let (module, name) = graph.global(object.class?)?;
        let state = object.state.and_then(|s| match graph.get(s) {
            Some(Node::Dict(_)) => Some(s),
            // `(__dict__, slot_state)` for classes with `__slots__`.
            Some(Node::Tuple(items)) => items.first().copied().filter(|d| graph.dict(*d).is_some()),
            _ => None,
        });
        Some(Module {
            graph,
            value,
            module,
            name,
            state,
        })
    }

    /// `module.Class`, as the checkpoint names it.
    pub fn class_path(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }

    /// A class of the official YOLOv7 code (`models.common`, `models.yolo`, also when the
    /// package is vendored under another prefix).
    pub fn yolo_class(&self) -> Option<&'g str> {
        let m = self.module;
        let ours = ["models.common", "models.yolo", "models.experimental"]
            .iter()
            .any(|p| m == *p || m.ends_with(&format!(".{p}")));
        ours.then_some(self.name)
    }

    /// A class of `torch.nn`.
    pub fn torch_class(&self) -> Option<&'g str> {
        (self.module == "torch.nn" || self.module.starts_with("torch.nn.")).then_some(self.name)
    }

    /// An entry of the instance dictionary.
    pub fn attr(&self, key: &str) -> Option<Value> {
        self.graph.dict_get(self.state?, key)
    }

    fn registry(&self, registry: &str, key: &str) -> Option<Value> {
        let dict = self.attr(registry)?;
        self.graph
            .dict_get(dict, key)
            .filter(|v| !matches!(v, Value::None))
    }

    /// A submodule (`_modules[key]`, absent when `None`).
    pub fn child(&self, key: &str) -> Option<Value> {
        self.registry("_modules", key)
    }

    /// A parameter (`_parameters[key]`, absent when `None`).
    pub fn param(&self, key: &str) -> Option<Value> {
        self.registry("_parameters", key)
    }

    /// A buffer (`_buffers[key]`, absent when `None`).
    pub fn buffer(&self, key: &str) -> Option<Value> {
        self.registry("_buffers", key)
    }

    /// Entries of the `_modules` dict as stored (`None` and repeated keys included).
    pub fn child_entries(&self) -> usize {
        self.attr("_modules")
            .and_then(|d| self.graph.dict(d))
            .map_or(0, <[_]>::len)
    }

    /// The submodules in registration order, `None` entries skipped. A key inserted twice
    /// keeps its first position and its last value, as in a Python dict. The list and its
    /// key index are paid for before they are built.
    pub fn children(&self, budget: &Budget) -> Result<Vec<(&'g str, Value)>> {
        const AT: &str = "describe: submodule list";
        // One output slot and one key index slot (with hash table overhead) per entry.
        const BYTES_PER_ENTRY: u64 = 64;
        let graph = self.graph;
        let Some(entries) = self.attr("_modules").and_then(|d| graph.dict(d)) else {
            return Ok(Vec::new());
        };
        let len = entries.len() as u64;
        budget.charge_steps(AT, len)?;
        budget.charge_memory(AT, len.saturating_mul(BYTES_PER_ENTRY))?;
        // Sized from entries already held in memory, and paid for just above.
        let mut out: Vec<(&'g str, Value)> = Vec::with_capacity(entries.len());
        let mut position: HashMap<&'g str, usize> = HashMap::with_capacity(entries.len());
        for (k, v) in entries {
            let Some(key) = graph.str(*k) else { continue };
            match position.get(key).and_then(|&i| out.get_mut(i)) {
                Some(slot) => slot.1 = *v,
                None => {
                    position.insert(key, out.len());
                    out.push((key, *v));
                }
            }
        }
        out.retain(|(_, v)| !matches!(v, Value::None));
        Ok(out)
    }

    /// Parameter values of this module (not of its children).
    pub fn params(&self) -> Vec<Value> {
        let graph = self.graph;
        self.attr("_parameters")
            .and_then(|d| graph.dict(d))
            .map(|entries| {
                entries
                    .iter()
                    .map(|(_, v)| *v)
                    .filter(|v| !matches!(v, Value::None))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(|v| self.graph.int(v))
    }

    pub fn float(&self, key: &str) -> Option<f64> {
        self.attr(key).and_then(|v| self.graph.float(v))
    }

    pub fn str(&self, key: &str) -> Option<&'g str> {
        self.attr(key).and_then(|v| self.graph.str(v))
    }

    /// The name of the method a pickled `forward` attribute is bound to (`fuseforward` once
    /// the official `fuse()` ran), if the instance dictionary overrides `forward`.
    pub fn forward_override(&self) -> Option<Option<&'g str>> {
        let value = self.attr("forward")?;
        Some(match self.graph.get(value) {
            // Only a method of this very module counts (`self.fuseforward`).
            Some(Node::BoundMethod { target, name }) if *target == self.value => Some(name),
            _ => None,
        })
    }
}

/// Most dimensions of a tensor the description reads (`anchor_grid` has 6).
pub(crate) const MAX_DIMS: usize = 8;

/// Longest storage key kept (PyTorch writes `0`, `1`, ...).
const MAX_STORAGE_KEY: usize = 256;

/// A [`TensorRef`] for a pickled tensor, checked against its storage. What the reference
/// copies from the file (shape, strides, storage key) is bounded and paid for first.
pub(crate) fn tensor_ref(ck: &Checkpoint<'_>, value: Value, name: &str) -> Result<TensorRef> {
    let graph = ck.graph();
    let tensor = graph.tensor(value).ok_or_else(|| Error::Corrupt {
        entry: "data.pkl".into(),
        reason: format!(
            "`{name}` is a {}, not a tensor",
            clip(&graph.describe(value))
        ),
    })?;
    let dtype = tensor.dtype.ok_or_else(|| Error::UnsupportedDtype {
        tensor: name.to_string(),
        dtype: clip(&tensor.dtype_name),
    })?;
    if tensor.shape.len() > MAX_DIMS || tensor.stride.len() > MAX_DIMS {
        return Err(Error::Unsupported {
            what: format!(
                "tensor `{name}` has {} dimensions, the model's tensors have at most {MAX_DIMS}",
                tensor.shape.len().max(tensor.stride.len())
            ),
        });
    }
    let storage = graph
        .storage(tensor.storage)
        .ok_or_else(|| Error::Corrupt {
            entry: "data.pkl".into(),
            reason: format!("tensor `{name}` has no storage"),
        })?;
    if storage.key.len() > MAX_STORAGE_KEY {
        return Err(Error::Corrupt {
            entry: "data.pkl".into(),
            reason: format!(
                "tensor `{name}` names its storage with a key of {} bytes",
                storage.key.len()
            ),
        });
    }
    let held = name.len() + storage.key.len() + 2 * MAX_DIMS * std::mem::size_of::<usize>();
    ck.budget()
        .charge_memory("describe: tensor reference", held as u64)?;
    let view_offset = usize::try_from(storage.view_offset).unwrap_or(usize::MAX);
    let reference = TensorRef {
        name: name.to_string(),
        dtype,
        shape: tensor.shape.clone(),
        stride: tensor.stride.clone(),
        storage_offset: tensor.storage_offset.saturating_add(view_offset),
        storage_key: storage.key.to_string(),
    };
    ck.check_tensor(&reference)?;
    Ok(reference)
}

/// An int or a pair of ints (PyTorch stores `kernel_size=3` and `(3, 3)` alike).
pub(crate) fn pair(graph: &Graph, value: Value) -> Option<[usize; 2]> {
    if let Some(i) = graph.int(value) {
        let i = usize::try_from(i).ok()?;
        return Some([i, i]);
    }
    match graph.seq(value)? {
        [a, b] => Some([
            usize::try_from(graph.int(*a)?).ok()?,
            usize::try_from(graph.int(*b)?).ok()?,
        ]),
        _ => None,
    }
}
