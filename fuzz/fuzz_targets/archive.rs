//! Whole files: open (from a slice and from a reader), describe, read every tensor.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    yolots_checkpoint::fuzzing::archive(data);
    yolots_checkpoint::fuzzing::reader(data);
});
