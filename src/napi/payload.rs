//! Message payloads as JS values: json text as a Latin-1 string when it is ASCII (`Text`), advanced frames as a
//! Buffer, copied or external by size (`Bytes`). Each conversion calls napi_sys directly, with its `// SAFETY:` lines.

use napi::bindgen_prelude::{Buffer, ToNapiValue};
use napi::{sys as napi_sys, Error, Result, Status};

/// Text for JS. Json lines are nearly always ASCII, and then V8 takes them as Latin-1 with a plain copy instead of
/// decoding UTF-8 (the core has already validated the text).
pub struct Text(pub(super) String);

impl ToNapiValue for Text {
    unsafe fn to_napi_value(env: napi_sys::napi_env, val: Self) -> Result<napi_sys::napi_value> {
        let text = val.0;
        if !text.is_ascii() {
            // SAFETY: forwarded with the caller's guarantees (a live env on the JS thread).
            return unsafe { String::to_napi_value(env, text) };
        }
        let mut out = std::ptr::null_mut();
        // SAFETY: ASCII is valid Latin-1; the pointer and length describe `text`, which outlives the call.
        let status = unsafe {
            napi_sys::napi_create_string_latin1(
                env,
                text.as_ptr().cast(),
                text.len() as isize,
                &mut out,
            )
        };
        if status == napi_sys::Status::napi_ok {
            Ok(out)
        } else {
            Err(Error::new(Status::from(status), "cannot create a string"))
        }
    }
}

/// Bytes for JS, copied into a Buffer that V8 allocates. An external Buffer over our Vec (napi-rs's `Buffer`) would
/// save the copy, but its memory is accounted as external and frees only with its finalizer: at one 1 MB frame per
/// message it kept V8's major collector busy (a third of a child's CPU on the advanced 1 MB echo).
pub struct Bytes(pub(super) Vec<u8>);

/// From this size on, a batch goes to JS as an external Buffer over our Vec after all: a copy of many megabytes
/// costs more than the finalizer, and such batches come too seldom to keep the collector busy.
const EXTERNAL_BYTES_FROM: usize = 4 * 1024 * 1024;

impl ToNapiValue for Bytes {
    unsafe fn to_napi_value(env: napi_sys::napi_env, val: Self) -> Result<napi_sys::napi_value> {
        if val.0.len() >= EXTERNAL_BYTES_FROM {
            // SAFETY: `env` is the live env napi-rs handed us for this conversion.
            return unsafe { Buffer::to_napi_value(env, Buffer::from(val.0)) };
        }
        let mut out = std::ptr::null_mut();
        // SAFETY: the pointer and length describe `val.0`, which outlives the call; napi copies the bytes.
        let status = unsafe {
            napi_sys::napi_create_buffer_copy(
                env,
                val.0.len(),
                val.0.as_ptr().cast(),
                std::ptr::null_mut(),
                &mut out,
            )
        };
        if status == napi_sys::Status::napi_ok {
            Ok(out)
        } else {
            Err(Error::new(Status::from(status), "cannot create a buffer"))
        }
    }
}

/// A whole frame that came as a memfd (core/channel/memfd.rs), handed to JS as an external Buffer over our Vec,
/// whatever its size: such frames are at least 256 KiB, and on the advanced 1 MB echo between two forkline ends the
/// copy cost more than the finalizers (measured: 1.76x node against 1.1x with the copy).
pub struct LargeBytes(pub(super) Vec<u8>);

impl ToNapiValue for LargeBytes {
    unsafe fn to_napi_value(env: napi_sys::napi_env, val: Self) -> Result<napi_sys::napi_value> {
        // SAFETY: `env` is the live env napi-rs handed us for this conversion.
        unsafe { Buffer::to_napi_value(env, Buffer::from(val.0)) }
    }
}
