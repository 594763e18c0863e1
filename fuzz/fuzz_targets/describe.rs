//! `data.pkl` programs with every storage present: the description walk.
#![no_main]

// Counted, so each read's peak heap is checked against its budget plus the slack.
#[global_allocator]
static HEAP: yolots_checkpoint::fuzzing::heap::CountingAllocator =
    yolots_checkpoint::fuzzing::heap::CountingAllocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    yolots_checkpoint::fuzzing::describe(data);
});
