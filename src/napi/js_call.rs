//! Calling the JS wake function straight from a libuv callback on the JS thread, where no napi scope is open:
//! `napi_make_callback` is napi's way in from there (it opens the callback scope, so nextTicks and microtasks run
//! afterwards, as after any I/O callback). This saves the thread-safe function's extra trip round the event loop
//! for messages read on the JS thread itself.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::ptr;
use std::rc::Rc;

use napi::bindgen_prelude::{Function, JsValue};
use napi::{sys, Env, Error, Result, Status};

/// A direct caller of one JS function. Not `Send`: it lives and dies on the JS thread.
pub struct DirectCall {
    env: sys::napi_env,
    func: sys::napi_ref,
    context: sys::napi_async_context,
    /// Whether `env` is still there. The libuv handles that own a DirectCall are closed as their napi objects are
    /// finalized, and when that is the environment's teardown (a worker thread ending), their close callbacks run
    /// after the environment is gone: this one must then leave its reference and async context alone.
    live: Rc<Cell<bool>>,
}

thread_local! {
    /// The liveness of this thread's napi environment (each JS thread has one), set up with the first DirectCall.
    static ENV_LIVE: RefCell<Option<Rc<Cell<bool>>>> = const { RefCell::new(None) };
}

/// The liveness flag of `env`, the environment of this thread: cleared by an environment cleanup hook, which Node
/// runs before it takes the napi environment down (hooks run in reverse order of registration, and napi's own was
/// registered first).
fn env_live(env: sys::napi_env) -> Result<Rc<Cell<bool>>> {
    ENV_LIVE.with(|slot| {
        if let Some(live) = slot.borrow().as_ref().filter(|live| live.get()) {
            return Ok(live.clone());
        }
        let live = Rc::new(Cell::new(true));
        let arg = Rc::into_raw(live.clone()) as *mut c_void;
        // SAFETY: a live env on the JS thread; `arg` is an Rc that on_env_cleanup takes back, once.
        let status = unsafe { sys::napi_add_env_cleanup_hook(env, Some(on_env_cleanup), arg) };
        if let Err(err) = check(status, "cleanup hook") {
            // SAFETY: napi did not take `arg`: take it back here.
            drop(unsafe { Rc::from_raw(arg as *const Cell<bool>) });
            return Err(err);
        }
        *slot.borrow_mut() = Some(live.clone());
        Ok(live)
    })
}

unsafe extern "C" fn on_env_cleanup(arg: *mut c_void) {
    // SAFETY: `arg` is the Rc that env_live leaked for this hook, which Node runs once, on the env's thread.
    let live = unsafe { Rc::from_raw(arg as *const Cell<bool>) };
    live.set(false);
}

impl std::fmt::Debug for DirectCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectCall").finish_non_exhaustive()
    }
}

fn check(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Error::new(Status::from(status), what.to_owned()))
    }
}

impl DirectCall {
    pub fn new(env: &Env, func: &Function<(), ()>) -> Result<DirectCall> {
        let env = env.raw();
        let mut call = DirectCall {
            env,
            func: ptr::null_mut(),
            context: ptr::null_mut(),
            live: env_live(env)?,
        };
        let mut name = ptr::null_mut();
        // SAFETY: plain napi calls on the JS thread with a live env; each out-pointer is a valid local.
        unsafe {
            check(
                sys::napi_create_reference(env, func.value().value, 1, &mut call.func),
                "reference",
            )?;
            check(
                sys::napi_create_string_utf8(env, c"forkline".as_ptr(), 8, &mut name),
                "resource name",
            )?;
            check(
                sys::napi_async_init(env, ptr::null_mut(), name, &mut call.context),
                "async context",
            )?;
        }
        Ok(call)
    }

    /// Calls the function with no arguments. A throw becomes an uncaught exception, as a throw in any I/O
    /// callback does in Node.
    pub fn call(&self) {
        let env = self.env;
        // SAFETY: called from a libuv callback on the JS thread, outside any napi call: a handle scope is opened
        // and closed around the call, every handle used is created inside it, and `func`/`context` live as long
        // as `self`.
        unsafe {
            let mut scope = ptr::null_mut();
            if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
                return;
            }
            let (mut func, mut recv, mut result) =
                (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
            if sys::napi_get_reference_value(env, self.func, &mut func) == sys::Status::napi_ok
                // An object, not undefined: Node finds the callback's context through the receiver.
                && sys::napi_get_global(env, &mut recv) == sys::Status::napi_ok
            {
                let status = sys::napi_make_callback(
                    env,
                    self.context,
                    recv,
                    func,
                    0,
                    ptr::null(),
                    &mut result,
                );
                if status == sys::Status::napi_pending_exception {
                    let mut err = ptr::null_mut();
                    if sys::napi_get_and_clear_last_exception(env, &mut err) == sys::Status::napi_ok
                    {
                        sys::napi_fatal_exception(env, err);
                    }
                }
            }
            sys::napi_close_handle_scope(env, scope);
        }
    }
}

impl Drop for DirectCall {
    fn drop(&mut self) {
        if !self.live.get() {
            return; // The environment took its references and async contexts down with it.
        }
        // SAFETY: on the JS thread (the owner is a JS object's native half), with the env still there; both were
        // created in `new` (null if `new` failed part way, which napi rejects harmlessly).
        unsafe {
            sys::napi_async_destroy(self.env, self.context);
            sys::napi_delete_reference(self.env, self.func);
        }
    }
}
