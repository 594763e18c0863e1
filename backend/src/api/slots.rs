//! Uploads in flight: at most so many at once in the server, and fewer of one owner, so one
//! client (or many slow ones) cannot hold every connection and the memory of their bodies.
//! A slot is taken after authentication and before the body is read, and given back when
//! the request ends, however it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// The counts of uploads in flight, shared by the server's threads.
#[derive(Debug, Clone)]
pub struct UploadSlots {
    counts: Arc<Mutex<Counts>>,
    /// Most uploads at once in the server; 0: no limit.
    total: usize,
    /// Most uploads at once of one owner; 0: no limit.
    per_owner: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    owners: HashMap<Uuid, usize>,
}

/// Why no slot was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The server has `limit` uploads in flight.
    Server { limit: usize },
    /// The owner has `limit` uploads in flight.
    Owner { limit: usize },
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Server { limit } => write!(
                f,
                "the server is receiving {limit} uploads already, its most at once"
            ),
            Busy::Owner { limit } => write!(
                f,
                "you are uploading {limit} files already, the most one owner may at once"
            ),
        }
    }
}

/// One upload's place, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    owner: Uuid,
}

impl UploadSlots {
    pub fn new(total: usize, per_owner: usize) -> Self {
        Self {
            counts: Arc::default(),
            total,
            per_owner,
        }
    }

    /// A slot for an upload of `owner`, if one is free.
    pub fn take(&self, owner: Uuid) -> Result<Slot, Busy> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if self.total > 0 && counts.total >= self.total {
            return Err(Busy::Server { limit: self.total });
        }
        let mine = counts.owners.get(&owner).copied().unwrap_or(0);
        if self.per_owner > 0 && mine >= self.per_owner {
            return Err(Busy::Owner {
                limit: self.per_owner,
            });
        }
        counts.total += 1;
        counts.owners.insert(owner, mine + 1);
        Ok(Slot {
            counts: self.counts.clone(),
            owner,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(mine) = counts.owners.get_mut(&self.owner) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                counts.owners.remove(&self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_in_all_and_per_owner_and_come_back() {
        let slots = UploadSlots::new(3, 2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), Busy::Owner { limit: 2 });
        let _b1 = slots.take(b).unwrap();
        assert_eq!(slots.take(b).unwrap_err(), Busy::Server { limit: 3 });
        drop(a1);
        let _b2 = slots.take(b).unwrap();
        // No limits.
        let free = UploadSlots::new(0, 0);
        let held: Vec<Slot> = (0..100).map(|_| free.take(a).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
