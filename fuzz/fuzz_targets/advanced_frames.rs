#![no_main]
//! The `advanced_frames` invariants of src/core/invariants.rs (its `advanced_frames` says how the input is read).

libfuzzer_sys::fuzz_target!(|data: &[u8]| forkline_fuzz::invariants::advanced_frames(data));
