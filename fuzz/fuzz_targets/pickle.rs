//! Bare pickle programs through the restricted machine.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    yolots_checkpoint::fuzzing::pickle(data);
});
