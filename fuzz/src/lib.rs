//! forkline's pure core, compiled from source for the fuzz targets (the main crate is a cdylib only, and an rlib
//! would grow the release .node). The files' `crate::core::...` paths resolve through `core` below.

#[path = "../../src/core/buffers.rs"]
pub mod buffers;
#[path = "../../src/core/error.rs"]
pub mod error;
#[path = "../../src/core/frame.rs"]
pub mod frame;
#[path = "../../src/core/internal.rs"]
pub mod internal;
#[path = "../../src/core/invariants.rs"]
pub mod invariants;
#[path = "../../src/core/pairing.rs"]
pub mod pairing;

pub mod core {
    pub use crate::{buffers, error, frame, internal, pairing};
}
