//! Parameter counts as PyTorch gives them (`sum(p.numel() for p in m.parameters())`: each
//! tensor once), in time linear in the graph whatever its sharing or cycles.

use std::collections::HashSet;

use super::module::Module;
use crate::error::Result;
use crate::limits::Budget;
use crate::pickle::{Graph, ObjId, Value};

const AT: &str = "describe: parameter count";

/// Bytes counted per remembered id (hash set slot and overhead) and per pending value.
const SEEN_BYTES: u64 = 16;
const PENDING_BYTES: u64 = std::mem::size_of::<Value>() as u64;

/// Counts parameters over successive roots, never visiting a module, a registry dict or a
/// tensor twice: a module reachable from two layers is counted for the first one only.
pub(super) struct ParamCounter<'g> {
    graph: &'g Graph,
    budget: &'g Budget,
    modules: HashSet<ObjId>,
    /// `_parameters` and `_modules` dicts already expanded (modules may share them).
    registries: HashSet<ObjId>,
    tensors: HashSet<ObjId>,
}

impl<'g> ParamCounter<'g> {
    pub fn new(graph: &'g Graph, budget: &'g Budget) -> Self {
        ParamCounter {
            graph,
            budget,
            modules: HashSet::new(),
            registries: HashSet::new(),
            tensors: HashSet::new(),
        }
    }

    /// Parameters reachable from `root` through `_modules` not counted by an earlier call.
    pub fn count(&mut self, root: Value) -> Result<u64> {
        let graph = self.graph;
        let mut pending = vec![root];
        let mut total: u64 = 0;
        while let Some(value) = pending.pop() {
            self.budget.charge_steps(AT, 1)?;
            let Value::Ref(id) = value else { continue };
            if !self.remember(Set::Modules, id)? {
                continue;
            }
            let Some(m) = Module::new(graph, value) else {
                continue;
            };
            if let Some(Value::Ref(dict)) = m.attr("_parameters")
                && self.remember(Set::Registries, dict)?
            {
                let params = m.params();
                self.budget.charge_steps(AT, params.len() as u64)?;
                for p in params {
                    if let (Value::Ref(pid), Some(t)) = (p, graph.tensor(p))
                        && self.remember(Set::Tensors, pid)?
                    {
                        let numel = t
                            .shape
                            .iter()
                            .fold(1u64, |n, d| n.saturating_mul(*d as u64));
                        total = total.saturating_add(numel);
                    }
                }
            }
            if let Some(Value::Ref(dict)) = m.attr("_modules")
                && self.remember(Set::Registries, dict)?
            {
                let children = m.children(self.budget)?;
                self.budget
                    .charge_memory(AT, (children.len() as u64).saturating_mul(PENDING_BYTES))?;
                pending.extend(children.into_iter().map(|(_, v)| v));
            }
        }
        Ok(total)
    }

    /// Adds `id` to a set, paying for it; whether it was new.
    fn remember(&mut self, set: Set, id: ObjId) -> Result<bool> {
        let set = match set {
            Set::Modules => &mut self.modules,
            Set::Registries => &mut self.registries,
            Set::Tensors => &mut self.tensors,
        };
        if set.contains(&id) {
            return Ok(false);
        }
        self.budget.charge_memory(AT, SEEN_BYTES)?;
        set.insert(id);
        Ok(true)
    }
}

#[derive(Clone, Copy)]
enum Set {
    Modules,
    Registries,
    Tensors,
}
