//! Resource bounds of child processes (the upload check, conversions): limits set in the
//! forked child before it runs, and the signs by which a child that ran into its memory
//! bound can be told from one that crashed.

/// Sets `resource`'s soft and hard limit of the calling process. Async-signal-safe (one
/// system call, nothing allocated): callable in a `pre_exec` closure.
pub fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct passed by reference for the duration of the call.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What a process writes when an allocation fails under its memory bound: Rust's
/// allocation-failure abort, C++'s `bad_alloc`, libtorch's CPU allocator (which reports
/// `ENOMEM` as "can't allocate memory ... Cannot allocate memory"), a failed thread or
/// mapping, and the dynamic loader when the bound is below what a binary needs to start.
pub const ALLOCATION_FAILED: &[&str] = &[
    "memory allocation of",
    "bad_alloc",
    "Cannot allocate memory",
    "can't allocate memory",
    "out of memory",
    "failed to map segment",
];

/// Whether `text` (a child's stderr or its error message) says an allocation failed.
pub fn allocation_failed(text: &str) -> bool {
    ALLOCATION_FAILED.iter().any(|sign| text.contains(sign))
}

/// The longest sign, in bytes: how much of one chunk of a stream to keep in front of the
/// next so a sign split between two reads is still seen.
pub fn longest_sign() -> usize {
    ALLOCATION_FAILED.iter().map(|s| s.len()).max().unwrap_or(0)
}

/// Watches a stream as it passes by, chunk by chunk, for a sign of a failed allocation.
#[derive(Debug, Default)]
pub struct AllocationWatch {
    /// The end of the previous chunk (a sign may start there).
    carry: Vec<u8>,
    seen: bool,
}

impl AllocationWatch {
    /// Looks at the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.seen {
            return;
        }
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(chunk);
        if allocation_failed(&String::from_utf8_lossy(&window)) {
            self.seen = true;
            return;
        }
        let keep = longest_sign().min(window.len());
        self.carry = window.split_off(window.len() - keep);
    }

    /// Whether any chunk so far said an allocation failed.
    pub fn seen(&self) -> bool {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_split_between_chunks_is_seen() {
        let text = b"Torch(\"DefaultCPUAllocator: can't allocate memory: you tried\")";
        for split in 0..text.len() {
            let mut watch = AllocationWatch::default();
            let (a, b) = text.split_at(split);
            watch.feed(a);
            watch.feed(b);
            assert!(watch.seen(), "split at {split}");
        }
        let mut watch = AllocationWatch::default();
        watch.feed(b"thread 'main' panicked at src/x.rs: index out of bounds");
        assert!(!watch.seen());
    }
}
