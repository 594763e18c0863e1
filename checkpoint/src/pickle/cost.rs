//! What the values of a pickle cost in memory, charged to the read's
//! [`Budget`](crate::limits::Budget) before they are kept.

use super::value::{Node, Value};

/// Bytes of one node slot of the graph's arena.
const NODE: u64 = std::mem::size_of::<Node>() as u64;
/// Bytes of one element of a list, tuple or set.
pub(crate) const VALUE: u64 = std::mem::size_of::<Value>() as u64;
/// Bytes of one dict entry.
pub(crate) const ENTRY: u64 = std::mem::size_of::<(Value, Value)>() as u64;

/// What the graph's arena allocates when a node is added to `len` nodes: nodes are added
/// one at a time, so the arena's capacity doubles from 4 exactly as `Vec` grows it, and
/// the growth is paid when it happens.
pub(crate) fn arena_growth(len: usize) -> u64 {
    let slots = match len {
        0 => 4,
        n if n >= 4 && n.is_power_of_two() => n,
        _ => 0,
    };
    (slots as u64).saturating_mul(NODE)
}

/// What adding `node` to a graph of `len` nodes costs: arena growth and the node's heap
/// allocations (capacities, not lengths).
pub(crate) fn node(node: &Node, len: usize) -> u64 {
    heap(node).saturating_add(arena_growth(len))
}

/// The heap allocations of a node.
pub(crate) fn heap(node: &Node) -> u64 {
    match node {
        Node::Str(text) => text.len() as u64,
        Node::Bytes(bytes) | Node::BigInt(bytes) => bytes.len() as u64,
        Node::List(items) | Node::Tuple(items) | Node::Set { items, .. } => {
            values(items.capacity())
        }
        Node::Dict(entries) => entries_bytes(entries.capacity()),
        Node::Global { module, name } => (module.len() as u64).saturating_add(name.len() as u64),
        Node::Object(object) => values(object.list_items.capacity())
            .saturating_add(entries_bytes(object.dict_items.capacity())),
        Node::BoundMethod { name, .. } => name.len() as u64,
        Node::Storage(storage) => (storage.key.len() as u64)
            .saturating_add(storage.type_name.len() as u64)
            .saturating_add(storage.location.len() as u64),
        Node::Tensor(tensor) => dims(tensor.shape.capacity())
            .saturating_add(dims(tensor.stride.capacity()))
            .saturating_add(tensor.dtype_name.len() as u64),
        Node::NdArray(array) => dims(array.shape.capacity()),
        Node::NpScalar { .. } => 0,
        Node::NpDtype { descr, .. } => descr.len() as u64,
    }
}

/// Bytes of `n` values.
pub(crate) fn values(n: usize) -> u64 {
    (n as u64).saturating_mul(VALUE)
}

/// Bytes of `n` dict entries.
pub(crate) fn entries_bytes(n: usize) -> u64 {
    (n as u64).saturating_mul(ENTRY)
}

/// Bytes of `n` dimensions of a shape or strides.
pub(crate) fn dims(n: usize) -> u64 {
    (n as u64).saturating_mul(std::mem::size_of::<usize>() as u64)
}

/// The extra bytes `vec` will hold once `extra` more elements of `size` bytes are pushed,
/// and reserves them: the growth is paid for before it happens.
pub(crate) fn grow<T>(
    vec: &mut Vec<T>,
    extra: usize,
    budget: &crate::limits::Budget,
    at: &'static str,
) -> crate::error::Result<()> {
    let needed = vec.len().saturating_add(extra);
    if needed <= vec.capacity() {
        return Ok(());
    }
    // Double like `Vec` does, so appends one at a time stay amortized O(1).
    let target = needed.max(vec.capacity().saturating_mul(2)).max(4);
    let added = target.saturating_sub(vec.capacity());
    let bytes = (added as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    budget.charge_memory(at, bytes)?;
    vec.reserve_exact(target.saturating_sub(vec.len()));
    Ok(())
}

/// Collects `items` into a vector of exactly their count, or `None` at the first `None`.
/// Collecting `Option`s or `Result`s directly grows by doubling, holding up to twice what
/// was paid for.
pub(crate) fn collect_exact<T>(items: impl ExactSizeIterator<Item = Option<T>>) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(item?);
    }
    Some(out)
}
