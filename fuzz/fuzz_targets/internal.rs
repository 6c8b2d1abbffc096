#![no_main]
//! The `internal` invariants of src/core/invariants.rs (its `internal` says how the input is read).

libfuzzer_sys::fuzz_target!(|data: &[u8]| forkline_fuzz::invariants::internal(data));
