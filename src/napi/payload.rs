//! Message payloads between JS and the core: json text out of JS as one UTF-8 line (`Line`), json text into JS as a
//! Latin-1 string when it is ASCII, external when it is big (`Text`), advanced frames as a Buffer, copied or external
//! over a kept buffer by size (`Bytes`, `LargeBytes`). Each conversion calls napi_sys directly, with its `// SAFETY:` lines.

use std::ffi::c_void;
use std::sync::OnceLock;

use napi::bindgen_prelude::{FromNapiValue, ToNapiValue, TypeName, ValidateNapiValue, ValueType};
use napi::{sys as napi_sys, Error, Result, Status};

use crate::core::buffers;
use crate::os::reactor;

/// The end of a json message on the wire.
const LINE_END: u8 = b'\n';

/// One or more json messages from JS (`JSON.stringify` output, joined by newlines), as the bytes of a write: UTF-8
/// with the final newline added here. Written into the buffer of the last line that went out at once (`recycle`),
/// so a steady stream of messages allocates and faults in no new memory, and without zero-filling it first.
pub struct Line(pub(super) Vec<u8>);

/// Largest line buffer kept for the next write on the JS thread.
const SPARE_KEPT: usize = 4 * 1024 * 1024;

thread_local! {
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Line {
    /// Gives a line's buffer back for the next one (the channel returns it when it needed no queueing).
    pub(super) fn recycle(mut line: Vec<u8>) {
        if line.capacity() > 0 && line.capacity() <= SPARE_KEPT {
            line.clear();
            SPARE.set(line);
        }
    }
}

impl TypeName for Line {
    fn type_name() -> &'static str {
        "String"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ValidateNapiValue for Line {}

impl FromNapiValue for Line {
    unsafe fn from_napi_value(
        env: napi_sys::napi_env,
        value: napi_sys::napi_value,
    ) -> Result<Self> {
        let mut units = 0;
        // SAFETY: a null buffer asks only for the length (in UTF-16 units); `env` and `value` come from napi-rs.
        let status = unsafe {
            napi_sys::napi_get_value_string_utf16(env, value, std::ptr::null_mut(), 0, &mut units)
        };
        check(status, "a json message must be a string")?;
        let mut line = SPARE.take();
        // UTF-8 is as long as UTF-16 has units only when it is all ASCII, the common case: try that room first.
        // SAFETY: forwarded (a live env, a string value).
        unsafe { write_utf8(env, value, units, &mut line) }?;
        if line.len() < units || !line.is_ascii() {
            // Cut short: room for the worst case (3 bytes a unit; a surrogate pair's 4 bytes take its 2 units' 6).
            // SAFETY: as above.
            unsafe { write_utf8(env, value, units * 3, &mut line) }?;
        }
        line.push(LINE_END);
        Ok(Line(line))
    }
}

/// Replaces `line` with as much of the string's UTF-8 as `room` bytes hold (whole characters only).
unsafe fn write_utf8(
    env: napi_sys::napi_env,
    value: napi_sys::napi_value,
    room: usize,
    line: &mut Vec<u8>,
) -> Result<()> {
    line.clear();
    // napi also writes a NUL after the text; the newline replaces it.
    line.reserve(room + 1);
    let mut written = 0;
    // SAFETY: napi writes at most `room + 1` bytes (UTF-8, then a NUL) into the capacity reserved above.
    let status = unsafe {
        napi_sys::napi_get_value_string_utf8(
            env,
            value,
            line.as_mut_ptr().cast(),
            room + 1,
            &mut written,
        )
    };
    check(status, "cannot read a json message")?;
    // SAFETY: napi initialized the first `written` bytes.
    unsafe { line.set_len(written) };
    Ok(())
}

fn check(status: napi_sys::napi_status, what: &str) -> Result<()> {
    if status == napi_sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Error::new(Status::from(status), what.to_string()))
    }
}

/// Text for JS. Json lines are nearly always ASCII, and then V8 takes them as Latin-1 with a plain copy instead of
/// decoding UTF-8 (the core has already validated the text). A big one becomes an external string over our own
/// buffer instead: V8 would otherwise copy it into a fresh large-object page, faulting in every page of it.
pub struct Text(pub(super) String);

/// From this size on, ASCII text goes to JS as an external string.
const EXTERNAL_TEXT_FROM: usize = 256 * 1024;

impl ToNapiValue for Text {
    unsafe fn to_napi_value(env: napi_sys::napi_env, val: Self) -> Result<napi_sys::napi_value> {
        let text = val.0;
        if !text.is_ascii() {
            // SAFETY: forwarded with the caller's guarantees (a live env on the JS thread).
            return unsafe { String::to_napi_value(env, text) };
        }
        if text.len() >= EXTERNAL_TEXT_FROM && external_strings(env) {
            // SAFETY: forwarded with the caller's guarantees (a live env on the JS thread).
            return unsafe { external_latin1(env, text) };
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

/// Whether this Node has `node_api_create_external_string_latin1` (20.4 and later; napi-sys's stub for a missing
/// symbol would print to stderr on every call).
fn external_strings(env: napi_sys::napi_env) -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        let mut version = std::ptr::null();
        // SAFETY: `env` is live; napi fills `version` with a pointer to a static struct.
        let status = unsafe { napi_sys::napi_get_node_version(env, &mut version) };
        if status != napi_sys::Status::napi_ok || version.is_null() {
            return false;
        }
        // SAFETY: napi returned a valid pointer to a struct that lives as long as the process.
        let v = unsafe { &*version };
        (v.major, v.minor) >= (20, 4)
    })
}

/// An external Latin-1 string over `text` (ASCII), which V8 frees through `drop_text` once the string is collected.
unsafe fn external_latin1(env: napi_sys::napi_env, text: String) -> Result<napi_sys::napi_value> {
    let text = Box::new(text);
    let (ptr, len) = (text.as_ptr(), text.len());
    let hint = Box::into_raw(text);
    let mut out = std::ptr::null_mut();
    let mut copied = false;
    // SAFETY: the bytes stay alive (owned by `hint`) until V8 calls `drop_text`; ASCII is valid Latin-1.
    let status = unsafe {
        napi_sys::node_api_create_external_string_latin1(
            env,
            ptr.cast(),
            len as isize,
            Some(drop_text),
            hint.cast(),
            &mut out,
            &mut copied,
        )
    };
    // Copied instead, napi has already run the finalizer; failed, nobody took the box.
    if status != napi_sys::Status::napi_ok {
        // SAFETY: `hint` came from Box::into_raw above and napi took no ownership of it.
        drop(unsafe { Box::from_raw(hint) });
    }
    check(status, "cannot create a string")?;
    Ok(out)
}

unsafe extern "C" fn drop_text(
    _env: napi_sys::node_api_basic_env,
    _data: *mut c_void,
    hint: *mut c_void,
) {
    // SAFETY: `hint` is the Box<String> that external_latin1 leaked for this string, finalized once.
    drop(unsafe { Box::from_raw(hint.cast::<String>()) });
}

/// Bytes for JS: a small batch copied into a Buffer that V8 allocates; a large one (`buffers::MIN` or more) as an
/// external Buffer over our Vec, which goes back to the kept buffers (core/buffers.rs) when V8 collects the Buffer,
/// for the next large message to be read into. Fresh large memory, ours or V8's, costs more in page faults than a
/// copy of it, and freed it goes back to the kernel: without the kept buffers an external Buffer cost more than the
/// copy (measured), with them it costs neither.
pub struct Bytes(pub(super) Vec<u8>);

impl ToNapiValue for Bytes {
    unsafe fn to_napi_value(env: napi_sys::napi_env, val: Self) -> Result<napi_sys::napi_value> {
        if val.0.len() >= buffers::MIN {
            // SAFETY: forwarded with the caller's guarantees (a live env on the JS thread).
            return unsafe { kept_buffer(env, val.0) };
        }
        // SAFETY: as above.
        unsafe { copied_buffer(env, &val.0) }
    }
}

/// A whole frame that came as a memfd (core/channel/memfd.rs): such frames are at least 256 KiB, and go to JS as
/// large `Bytes` do.
pub struct LargeBytes(pub(super) Vec<u8>);

impl ToNapiValue for LargeBytes {
    unsafe fn to_napi_value(env: napi_sys::napi_env, val: Self) -> Result<napi_sys::napi_value> {
        // SAFETY: forwarded with the caller's guarantees (a live env on the JS thread).
        unsafe { kept_buffer(env, val.0) }
    }
}

unsafe fn copied_buffer(env: napi_sys::napi_env, bytes: &[u8]) -> Result<napi_sys::napi_value> {
    let mut out = std::ptr::null_mut();
    // SAFETY: the pointer and length describe `bytes`, which outlives the call; napi copies the bytes.
    let status = unsafe {
        napi_sys::napi_create_buffer_copy(
            env,
            bytes.len(),
            bytes.as_ptr().cast(),
            std::ptr::null_mut(),
            &mut out,
        )
    };
    check(status, "cannot create a buffer")?;
    Ok(out)
}

/// An external Buffer over `bytes`, whose Vec is given back to the kept buffers once V8 collects the Buffer.
unsafe fn kept_buffer(env: napi_sys::napi_env, bytes: Vec<u8>) -> Result<napi_sys::napi_value> {
    let bytes = Box::new(bytes);
    let (ptr, len) = (bytes.as_ptr(), bytes.len());
    let hint = Box::into_raw(bytes);
    let mut out = std::ptr::null_mut();
    // SAFETY: the bytes stay alive (owned by `hint`) until napi calls `give_back`, once.
    let status = unsafe {
        napi_sys::napi_create_external_buffer(
            env,
            len,
            ptr.cast_mut().cast(),
            Some(give_back),
            hint.cast(),
            &mut out,
        )
    };
    if status == napi_sys::Status::napi_ok {
        return Ok(out);
    }
    // SAFETY: napi took no ownership of `hint`, which came from Box::into_raw above.
    let bytes = unsafe { Box::from_raw(hint) };
    // A runtime that allows no external buffers (Electron's sandbox): a copy, and the Vec is kept at once.
    // SAFETY: forwarded with the caller's guarantees.
    let copied = unsafe { copied_buffer(env, &bytes) };
    keep(*bytes);
    copied
}

unsafe extern "C" fn give_back(_env: napi_sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the Box<Vec<u8>> that kept_buffer leaked for this Buffer, finalized once.
    let bytes = unsafe { Box::from_raw(hint.cast::<Vec<u8>>()) };
    keep(*bytes);
}

/// Keeps a large buffer for the next large message; the first one kept arranges for the set to be let go once
/// large messages stop.
fn keep(bytes: Vec<u8>) {
    if buffers::give(bytes) {
        trim_later();
    }
}

fn trim_later() {
    let _ = reactor::after(buffers::IDLE, || {
        if buffers::trim() {
            trim_later();
        }
    });
}
