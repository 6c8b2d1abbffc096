//! The core: one end of a Node IPC channel (`channel/`), the two wire formats it decodes (`frame.rs`), the
//! internal messages it answers itself (`internal.rs`) and the errors it reports (`error.rs`). Symmetric and
//! napi-free: nothing here knows whether it is the parent's end or the child's, and `cargo test` tests all of it.
//! It may import `crate::os` (the channel's socket syscalls); never `crate::napi`, nor `crate::cluster`. The pure
//! parts (`frame`, `internal`, `pairing`, `error`) are also compiled into the fuzz targets (fuzz/src/lib.rs), with
//! `invariants.rs`, the checks those targets and the property tests (`proptests.rs`) share.

pub(crate) mod buffers;
pub(crate) mod channel;
pub(crate) mod cpu_pressure;
pub(crate) mod error;
pub(crate) mod frame;
pub(crate) mod internal;
#[cfg(test)]
mod invariants;
pub(crate) mod loop_load;
pub(crate) mod memfd;
pub(crate) mod nack_hold;
pub(crate) mod pairing;
#[cfg(test)]
mod proptests;
pub(crate) mod spin;
pub(crate) mod windowed_share;
