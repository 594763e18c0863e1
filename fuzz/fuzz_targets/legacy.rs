//! Legacy-format (pre-zip) checkpoints: the object pickle, the storage-key list and the
//! storage sections after a well-formed header, read from memory and through a reader.
//! The answers must agree, stay within the budget, and hold at most the budget plus the
//! slack of heap, as the counting allocator measures it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use yolots_checkpoint::fuzzing::heap::CountingAllocator;

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

fuzz_target!(|data: &[u8]| yolots_checkpoint::fuzzing::legacy(data));
