//! The pickle memo (`PUT`/`GET`): dense for the sequential indices picklers write, sparse
//! for the rest.
//!
//! The dense part only ever grows by one slot, for the index right at its end, so every
//! slot is a stored entry that was paid for: an index declared by the file never sizes an
//! allocation.

use std::collections::HashMap;

use super::value::Value;
use crate::error::{Error, Result};
use crate::limits::Budget;

/// Bytes charged for one sparse entry: key and value (24 bytes) in a hash table at most
/// 7/8 full that doubles when it grows, old and new table both alive while it does (the
/// peak measured by the read benchmark).
const SPARSE_ENTRY_COST: u64 = 80;

/// Memo entries by index.
#[derive(Default)]
pub(super) struct Memo {
    dense: Vec<Option<Value>>,
    sparse: HashMap<u64, Value>,
    pub(super) count: u64,
}

impl Memo {
    pub(super) fn get(&self, index: u64) -> Option<Value> {
        match usize::try_from(index).ok().and_then(|i| self.dense.get(i)) {
            Some(slot) => *slot,
            None => self.sparse.get(&index).copied(),
        }
    }

    pub(super) fn put(
        &mut self,
        index: u64,
        value: Value,
        max: u64,
        budget: &Budget,
    ) -> Result<()> {
        if let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.dense.get_mut(i))
        {
            *slot = Some(value);
            return Ok(());
        }
        if let Some(slot) = self.sparse.get_mut(&index) {
            *slot = value;
            return Ok(());
        }
        // A fresh entry: count it and pay for it before storing it.
        if self.count >= max {
            return Err(Error::limit(
                "pickle memo entries",
                max,
                self.count.saturating_add(1),
            ));
        }
        if index == self.dense.len() as u64 {
            super::cost::grow(&mut self.dense, 1, budget, "pickle memo")?;
            self.dense.push(Some(value));
        } else {
            // Picklers number their entries in sequence: out-of-sequence ones are rare, and
            // each costs a hashed insert, so they get a quarter of the allowance.
            let sparse_max = max / 4;
            if self.sparse.len() as u64 >= sparse_max {
                return Err(Error::limit(
                    "pickle memo entries out of sequence",
                    sparse_max,
                    sparse_max.saturating_add(1),
                ));
            }
            budget.charge_memory("pickle memo", SPARSE_ENTRY_COST)?;
            self.sparse.insert(index, value);
        }
        self.count = self.count.saturating_add(1);
        Ok(())
    }
}
