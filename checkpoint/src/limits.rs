//! Bounds that turn hostile or absurd files into [`Error::LimitExceeded`](crate::Error)
//! instead of memory exhaustion or endless work.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Resource limits applied while reading a checkpoint.
///
/// The defaults accept every official YOLOv7 checkpoint, training ones with optimizer state
/// included, with a wide margin, and refuse zip bombs and pathological pickles early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest uncompressed size of one archive entry, in bytes.
    pub max_entry_size: u64,
    /// Largest sum of the declared uncompressed sizes of the compressed entries, in bytes.
    /// Stored entries are not counted: their bytes are the file's own.
    pub max_total_inflated: u64,
    /// Largest number of entries in a zip archive.
    pub max_entries: u64,
    /// Largest pickle program (`data.pkl`), in bytes.
    pub max_pickle_size: u64,
    /// Deepest nesting of pickle marks (containers being built inside containers).
    pub max_depth: u64,
    /// Most values on the pickle machine's stack at once.
    pub max_stack: u64,
    /// Most entries in the pickle memo (a quarter of them at most stored out of sequence,
    /// which picklers never do).
    pub max_memo: u64,
    /// Most values built by one pickle (strings, containers, objects, tensors...).
    pub max_objects: u64,
    /// Most elements in one list, tuple, dict or set.
    pub max_container_len: u64,
    /// Most bytes the reader may hold for one checkpoint, summed over everything it keeps:
    /// pickle values, memo, inflated entries, the model description. Charged to a [`Budget`].
    pub max_memory: u64,
    /// Most units of work for one checkpoint: opcodes executed, attribute lookups, walk
    /// steps. Charged to a [`Budget`].
    pub max_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        Limits {
            max_entry_size: 2 * GIB,
            max_total_inflated: 4 * GIB,
            max_entries: 100_000,
            max_pickle_size: 64 * MIB,
            max_depth: 1_000,
            max_stack: 100_000,
            max_memo: 4_000_000,
            max_objects: 4_000_000,
            max_container_len: 4_000_000,
            max_memory: 192 * MIB,
            max_steps: 200_000_000,
        }
    }
}

/// What one read of a checkpoint has spent of its [`Limits::max_memory`] and
/// [`Limits::max_steps`].
///
/// Every part of the reader charges what it is about to hold or do *before* doing it, so a
/// count declared by the file never sizes an allocation that was not paid for. Counters are
/// atomic so a shared `&Budget` can be charged from anywhere (the reader is `Send + Sync`).
#[derive(Debug, Default)]
pub struct Budget {
    max_memory: u64,
    max_steps: u64,
    memory: AtomicU64,
    steps: AtomicU64,
}

impl Budget {
    /// A fresh budget with the limits' memory and work allowances.
    pub fn new(limits: &Limits) -> Self {
        Budget {
            max_memory: limits.max_memory,
            max_steps: limits.max_steps,
            memory: AtomicU64::new(0),
            steps: AtomicU64::new(0),
        }
    }

    /// Pays for `bytes` more bytes held by the reader; `at` says what is being held. A
    /// refused charge is not recorded, so what is used never exceeds the limit.
    pub fn charge_memory(&self, at: &'static str, bytes: u64) -> Result<()> {
        add(&self.memory, bytes, self.max_memory)
            .map_err(|used| Error::budget("reader memory", at, self.max_memory, used))
    }

    /// Pays for `units` more units of work; `at` says what work.
    pub fn charge_steps(&self, at: &'static str, units: u64) -> Result<()> {
        add(&self.steps, units, self.max_steps)
            .map_err(|used| Error::budget("reader work", at, self.max_steps, used))
    }

    /// Checks that `bytes` more would fit in what is left of the memory allowance, without
    /// paying for them: for results handed to the caller rather than kept by the reader.
    pub fn check_memory(&self, at: &'static str, bytes: u64) -> Result<()> {
        let used = self.memory_used().saturating_add(bytes);
        if used > self.max_memory {
            return Err(Error::budget("reader memory", at, self.max_memory, used));
        }
        Ok(())
    }

    /// Bytes charged so far.
    pub fn memory_used(&self) -> u64 {
        self.memory.load(Ordering::Relaxed)
    }

    /// Work units charged so far.
    pub fn steps_used(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }
}

/// Adds `amount` unless the total would pass `max`; the refused total is the error.
fn add(counter: &AtomicU64, amount: u64, max: u64) -> Result<(), u64> {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_add(amount)).filter(|&total| total <= max)
        })
        .map(|_| ())
        .map_err(|v| v.saturating_add(amount))
}
