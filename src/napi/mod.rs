//! The napi layer, thin: the classes the JS layer sees (`NativeChild` in child.rs, `NativeChannel` in runtime.rs,
//! `NativeServer` in server.rs), what they share (`side.rs`, `event.rs`, `payload.rs`, `delivery.rs`, `error.rs`)
//! and the ways onto Node's own thread (`js_call.rs`, `uv.rs`, `wake.rs`). It may import every other layer; none
//! imports it.
//! Its `unsafe` is FFI into Node (napi_sys calls, libuv's functions) and borrows of fds that JS owns, each block
//! with its `// SAFETY:` line; the syscalls stay in os/.

pub(crate) mod busy_poll;
pub(crate) mod child;
pub(crate) mod control;
pub(crate) mod delivery;
pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod js_call;
pub(crate) mod loop_gauge;
pub(crate) mod loop_hold;
pub(crate) mod payload;
pub(crate) mod runtime;
pub(crate) mod server;
pub(crate) mod side;
pub(crate) mod stats;
pub(crate) mod uv;
pub(crate) mod wake;
