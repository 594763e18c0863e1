//! The pickle memo (`PUT`/`GET`): dense for the sequential indices picklers write, sparse
//! for the rest, so a hostile index cannot force a huge allocation.

use std::collections::HashMap;

use super::value::Value;
use crate::error::{Error, Result};

/// Memo entries by index.
#[derive(Default)]
pub(super) struct Memo {
    dense: Vec<Option<Value>>,
    sparse: HashMap<u64, Value>,
    pub(super) count: u64,
}

impl Memo {
    /// Largest jump past the dense end that still grows the dense part.
    const DENSE_SLACK: u64 = 1024;

    pub(super) fn get(&self, index: u64) -> Option<Value> {
        match usize::try_from(index).ok().and_then(|i| self.dense.get(i)) {
            Some(slot) => *slot,
            None => self.sparse.get(&index).copied(),
        }
    }

    pub(super) fn put(&mut self, index: u64, value: Value, max: u64) -> Result<()> {
        let len = self.dense.len() as u64;
        let fresh =
            if index < len.saturating_add(Self::DENSE_SLACK) && !self.sparse.contains_key(&index) {
                let i = usize::try_from(index)
                    .map_err(|_| Error::limit("pickle memo index", max, index))?;
                if i >= self.dense.len() {
                    self.dense.resize(i.saturating_add(1), None);
                }
                match self.dense.get_mut(i) {
                    Some(slot) => slot.replace(value).is_none(),
                    None => false,
                }
            } else {
                self.sparse.insert(index, value).is_none()
            };
        if fresh {
            self.count = self.count.saturating_add(1);
            if self.count > max {
                return Err(Error::limit("pickle memo entries", max, self.count));
            }
        }
        Ok(())
    }
}
