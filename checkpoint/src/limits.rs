//! Bounds that turn hostile or absurd files into [`Error::LimitExceeded`](crate::Error)
//! instead of memory exhaustion or endless work.

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
    /// Most entries in the pickle memo.
    pub max_memo: u64,
    /// Most values built by one pickle (strings, containers, objects, tensors...).
    pub max_objects: u64,
    /// Most elements in one list, tuple, dict or set.
    pub max_container_len: u64,
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
        }
    }
}
