#![no_main]
//! The `fd_pairing` invariants of src/core/invariants.rs (its `fd_pairing` says how the input is read).

libfuzzer_sys::fuzz_target!(|data: &[u8]| forkline_fuzz::invariants::fd_pairing(data));
