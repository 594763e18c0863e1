//! A restricted pickle reader: builds values, never imports or calls anything.
//!
//! [`parse`] runs a `data.pkl` program with the torch vocabulary of `crate::torch` (tensor
//! rebuild functions, storages, ordered dicts, sets, numpy scalars, bound-method references)
//! and returns the value graph. Every other class becomes an inert [`Object`].

pub(crate) mod cost;
mod decode;
mod machine;
mod memo;
pub mod opcodes;
mod scan;
mod value;

pub(crate) use machine::{CallKind, Fault, Hooks, run};
pub(crate) use scan::needed_len;
pub use value::{Graph, NdArray, Node, ObjId, Object, Storage, Tensor, Value};

use crate::error::Result;
use crate::limits::{Budget, Limits};

/// Runs one pickle program (as found in a torch zip archive's `data.pkl`) and returns the
/// graph of values it built and its result.
///
/// Persistent ids are read as torch zip-format storage references; no storage bytes are
/// needed or checked here. The memory and work it may spend are those of a fresh
/// [`Budget`] of `limits`.
pub fn parse(data: &[u8], limits: &Limits) -> Result<(Graph, Value)> {
    let budget = Budget::new(limits);
    let mut graph = Graph::new(limits.max_objects);
    let mut hooks = crate::torch::TorchHooks::new(crate::torch::PidFormat::Zip);
    let run = run(data, 0, "pickle", &mut graph, &mut hooks, limits, &budget)?;
    Ok((graph, run.value))
}
