//! forkline: Node's child_process IPC and cluster, with the channel in Rust. The crate has four layers, one folder
//! each, whose mod.rs says what it owns and what it may import:
//!
//! - `core/`: one end of a Node IPC channel, its wire formats and its handshake; symmetric and napi-free.
//! - `os/`: the syscalls: sockets, spawning a child, reaping and signalling it.
//! - `cluster/`: a cluster primary's server sockets and its round-robin hand-off of connections.
//! - `napi/`: the thin surface the JS layer sees (`NativeChild`, `NativeChannel`, `NativeServer`).
//!
//! Everything but `napi/` is plain Rust, tested by `cargo test` alone. Nothing imports `napi/`.

// Clippy's default lints are errors in every build, not only under `npm run lint`'s `-D warnings`.
#![deny(clippy::all)]

mod cluster;
mod core;
mod napi;
mod os;
