//! `data.pkl` programs with every storage present: the description walk.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    yolots_checkpoint::fuzzing::describe(data);
});
