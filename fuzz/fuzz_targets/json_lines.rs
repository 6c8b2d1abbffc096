#![no_main]
//! The `json_lines` invariants of src/core/invariants.rs (its `json_lines` says how the input is read).

libfuzzer_sys::fuzz_target!(|data: &[u8]| forkline_fuzz::invariants::json_lines(data));
