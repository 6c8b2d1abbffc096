//! A libuv poll handle on Node's own event loop, so the JS thread can read the channel the moment it is readable:
//! one wake-up, as Node's own channel has, instead of a reader thread waking the JS thread. Also the idle handle
//! behind busy polling, and the loop's idle-time metric (how busy the JS thread is, `loop_gauge.rs`).
//!
//! libuv's functions are looked up in the running process at run time (Node exports them for addons), the way
//! napi-rs looks up napi's own: the crate then links without libuv, and `cargo test` runs without Node.
//!
//! It sits in napi/, not os/: it makes no syscall but reaches into Node's runtime, as napi does. The loop is the
//! one napi hands out (`napi_get_uv_event_loop`), the symbols are Node's own, the callback runs on the JS thread,
//! and only the napi layer uses it (`side.rs`, with `js_call.rs` to call JS from that callback).

use std::ffi::{c_int, c_void, CStr};
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Duration;

use nix::libc;

/// libuv's `uv_handle_type` values for poll and idle handles and `uv_poll_event` for readability (uv.h).
const UV_IDLE: c_int = 6;
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;

type PollCb = unsafe extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
type IdleCb = unsafe extern "C" fn(handle: *mut c_void);
type CloseCb = unsafe extern "C" fn(handle: *mut c_void);

// The C signatures of the libuv functions we use (uv.h).
type HandleSizeFn = unsafe extern "C" fn(c_int) -> usize;
type PollInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
type PollStartFn = unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int;
type HandleFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type IdleInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type IdleStartFn = unsafe extern "C" fn(*mut c_void, IdleCb) -> c_int;
type IsClosingFn = unsafe extern "C" fn(*const c_void) -> c_int;
type UnrefFn = unsafe extern "C" fn(*mut c_void);
type CloseFn = unsafe extern "C" fn(*mut c_void, CloseCb);

struct Api {
    handle_size: HandleSizeFn,
    poll_init: PollInitFn,
    poll_start: PollStartFn,
    poll_stop: HandleFn,
    idle_init: IdleInitFn,
    idle_start: IdleStartFn,
    idle_stop: HandleFn,
    is_closing: IsClosingFn,
    unref: UnrefFn,
    close: CloseFn,
}

fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT only reads the process's symbol tables; `name` is NUL-terminated.
    let ptr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!ptr.is_null()).then_some(ptr)
}

fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(|| {
        // SAFETY: each symbol is libuv's function of that name, whose C signature (uv.h) its type alias repeats.
        unsafe {
            Some(Api {
                handle_size: std::mem::transmute::<*mut c_void, HandleSizeFn>(symbol(
                    c"uv_handle_size",
                )?),
                poll_init: std::mem::transmute::<*mut c_void, PollInitFn>(symbol(c"uv_poll_init")?),
                poll_start: std::mem::transmute::<*mut c_void, PollStartFn>(symbol(
                    c"uv_poll_start",
                )?),
                poll_stop: std::mem::transmute::<*mut c_void, HandleFn>(symbol(c"uv_poll_stop")?),
                idle_init: std::mem::transmute::<*mut c_void, IdleInitFn>(symbol(c"uv_idle_init")?),
                idle_start: std::mem::transmute::<*mut c_void, IdleStartFn>(symbol(
                    c"uv_idle_start",
                )?),
                idle_stop: std::mem::transmute::<*mut c_void, HandleFn>(symbol(c"uv_idle_stop")?),
                is_closing: std::mem::transmute::<*mut c_void, IsClosingFn>(symbol(
                    c"uv_is_closing",
                )?),
                unref: std::mem::transmute::<*mut c_void, UnrefFn>(symbol(c"uv_unref")?),
                close: std::mem::transmute::<*mut c_void, CloseFn>(symbol(c"uv_close")?),
            })
        }
    })
    .as_ref()
}

/// How long `uv_loop` has waited for I/O in all (libuv's `uv_metrics_idle_time`; Node turns the metric on for
/// every loop it runs, the main thread's and each worker's). None where libuv has no such function; a loop that
/// does not keep the metric reports 0, which reads as always busy (the reactor then reads ACKs, as before the gauge).
pub fn idle_time(uv_loop: *mut c_void) -> Option<Duration> {
    type IdleTimeFn = unsafe extern "C" fn(*mut c_void) -> u64;
    static IDLE_TIME: OnceLock<Option<IdleTimeFn>> = OnceLock::new();
    let idle_time = (*IDLE_TIME.get_or_init(|| {
        // SAFETY: the symbol is libuv's function of that name, whose C signature (uv.h) the alias repeats.
        symbol(c"uv_metrics_idle_time")
            .map(|f| unsafe { std::mem::transmute::<*mut c_void, IdleTimeFn>(f) })
    }))?;
    // SAFETY: `uv_loop` is the live loop napi handed out; libuv documents the call as thread-safe.
    Some(Duration::from_nanos(unsafe { idle_time(uv_loop) }))
}

/// What runs on the JS thread when the fd is readable. It gets a function that stops polling, to call before it
/// does anything (such as calling into JS) that may start polling again.
type OnReadable = Box<dyn FnMut(&dyn Fn())>;

/// A poll handle watching one fd for readability. Not `Send`: it lives and dies on the JS thread.
pub struct Poll {
    handle: *mut c_void,
}

impl std::fmt::Debug for Poll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poll").finish_non_exhaustive()
    }
}

/// A zeroed handle of libuv type `kind`, set up by `init` (libuv's `uv_*_init`), carrying `callback` as its data
/// and unref'd (it never keeps the loop alive by itself). None without libuv, or if `init` fails.
fn new_handle(
    kind: c_int,
    callback: OnReadable,
    init: impl FnOnce(*mut c_void) -> c_int,
) -> Option<*mut c_void> {
    let api = api()?;
    // SAFETY: uv_handle_size is a pure function; calloc'd memory is zeroed, as libuv expects of a fresh handle.
    let handle = unsafe { libc::calloc(1, (api.handle_size)(kind)) };
    if handle.is_null() {
        return None;
    }
    if init(handle) != 0 {
        // SAFETY: allocated by calloc above; a handle whose init failed was never registered with the loop.
        unsafe { libc::free(handle) };
        return None;
    }
    let data: *mut OnReadable = Box::into_raw(Box::new(callback));
    // SAFETY: every uv handle begins with `void *data`, libuv's field for the user's pointer.
    unsafe {
        *(handle as *mut *mut OnReadable) = data;
        (api.unref)(handle);
    }
    Some(handle)
}

/// Stops a handle with its type's `uv_*_stop`, from one of its callbacks, unless it is closing (closing stops it
/// already, and uv_poll_stop asserts on a closing handle).
fn stop_handle(handle: *mut c_void, stop: impl FnOnce(&Api) -> HandleFn) {
    if let Some(api) = api() {
        // SAFETY: `handle` is a live handle of the type `stop` is for (the caller's callback is running on it), on
        // its loop's thread; is_closing only reads it.
        unsafe {
            if (api.is_closing)(handle) == 0 {
                (stop(api))(handle);
            }
        }
    }
}

/// Closes a handle made by `new_handle`: libuv stops it, and `on_close` frees it and its callback once libuv is done.
fn close_handle(handle: *mut c_void) {
    if let Some(api) = api() {
        // SAFETY: `handle` came from new_handle and is closed once, by its owner's Drop, on the loop's thread.
        unsafe { (api.close)(handle, on_close) };
    }
}

impl Poll {
    /// A stopped poll handle on `uv_loop` for `fd` (libuv makes the fd non-blocking). It never keeps the loop
    /// alive by itself. None when this process has no libuv to offer.
    pub fn new(uv_loop: *mut c_void, fd: RawFd, on_readable: OnReadable) -> Option<Poll> {
        let api = api()?;
        // SAFETY: `handle` is a zeroed uv_poll_t-sized block for the JS thread's loop.
        let handle = new_handle(UV_POLL, on_readable, |handle| unsafe {
            (api.poll_init)(uv_loop, handle, fd)
        })?;
        Some(Poll { handle })
    }

    pub fn start(&self) {
        if let Some(api) = api() {
            // SAFETY: `handle` is an initialised poll handle, used on the loop's own thread.
            unsafe { (api.poll_start)(self.handle, UV_READABLE, on_poll) };
        }
    }

    pub fn stop(&self) {
        stop_handle(self.handle, |api| api.poll_stop);
    }
}

unsafe extern "C" fn on_poll(handle: *mut c_void, status: c_int, _events: c_int) {
    // SAFETY: `data` was set in new_handle and stays valid until the close callback frees it; libuv calls this
    // only between start and close, on the loop's thread.
    let callback = unsafe { &mut **(handle as *mut *mut OnReadable) };
    let stopped = std::cell::Cell::new(false);
    let stop = || {
        stopped.set(true);
        stop_handle(handle, |api| api.poll_stop);
    };
    // A panic must not unwind into libuv: stop.
    if catch_unwind(AssertUnwindSafe(|| callback(&stop))).is_err() {
        stop();
        return;
    }
    // An error status (EPOLLERR: e.g. the peer closed with our bytes unread, which sets ECONNRESET on our end)
    // comes after libuv has stopped the handle itself. The read reports the error once the data before it is
    // read; until then keep polling, or the bytes and EOF still queued would never be read.
    if status < 0 && !stopped.get() {
        if let Some(api) = api() {
            // SAFETY: an initialised poll handle on its loop's thread, not closing (checked), restarted as `start`.
            unsafe {
                if (api.is_closing)(handle) == 0 {
                    (api.poll_start)(handle, UV_READABLE, on_poll);
                }
            }
        }
    }
}

unsafe extern "C" fn on_close(handle: *mut c_void) {
    // SAFETY: libuv is done with the handle; `data` is the Box leaked in new_handle and `handle` came from calloc.
    unsafe {
        drop(Box::from_raw(*(handle as *mut *mut OnReadable)));
        libc::free(handle);
    }
}

/// An idle handle: while started, libuv runs its callback once per loop turn and polls for I/O without blocking,
/// so timers and I/O still run between calls. For busy polling; never keeps the loop alive by itself. Not `Send`.
pub struct Idle {
    handle: *mut c_void,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle").finish_non_exhaustive()
    }
}

impl Idle {
    /// A stopped idle handle on `uv_loop`; `on_turn` gets a function that stops it. None without libuv.
    pub fn new(uv_loop: *mut c_void, on_turn: OnReadable) -> Option<Idle> {
        let api = api()?;
        // SAFETY: `handle` is a zeroed uv_idle_t-sized block for the JS thread's loop.
        let handle = new_handle(UV_IDLE, on_turn, |handle| unsafe {
            (api.idle_init)(uv_loop, handle)
        })?;
        Some(Idle { handle })
    }

    pub fn start(&self) {
        if let Some(api) = api() {
            // SAFETY: an initialised idle handle, used on its loop's thread; starting a started one is a no-op.
            unsafe { (api.idle_start)(self.handle, on_idle) };
        }
    }
}

unsafe extern "C" fn on_idle(handle: *mut c_void) {
    // SAFETY: `data` was set in new_handle and stays valid until the close callback frees it; libuv calls this only
    // between start and close, on the loop's thread.
    let callback = unsafe { &mut **(handle as *mut *mut OnReadable) };
    let stop = || stop_handle(handle, |api| api.idle_stop);
    // A panic must not unwind into libuv: stop.
    if catch_unwind(AssertUnwindSafe(|| callback(&stop))).is_err() {
        stop();
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        close_handle(self.handle);
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        close_handle(self.handle);
    }
}
