//! Whole files: open (from a slice and from a reader), describe, read every tensor.
#![no_main]

// Counted, so each read's peak heap is checked against its budget plus the slack.
#[global_allocator]
static HEAP: yolots_checkpoint::fuzzing::heap::CountingAllocator =
    yolots_checkpoint::fuzzing::heap::CountingAllocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    yolots_checkpoint::fuzzing::archive(data);
    yolots_checkpoint::fuzzing::reader(data);
});
