//! Whole files read from memory and through a reader: both must give the same answer, and
//! neither may spend more than its budget.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    yolots_checkpoint::fuzzing::paths(data);
});
