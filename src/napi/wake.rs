//! Waking a JS thread for events read off it (by the reactor, or the exit of a child): one thread-safe function per
//! JS thread, shared by every channel end on it, instead of one per end. A thread-safe function is a libuv async
//! handle, a queue and an async resource (~1.1 KiB of malloc heap each, measured with heaptrack), and libuv looks at
//! every async handle of its loop on each wake-up; a parent of hundreds of children needs only one.
//!
//! A wake-up carries the end's number; on the JS thread the thread's dispatcher looks the number up and calls that
//! end's JS function, each in a callback scope of its own (nextTicks and microtasks run between two ends, as between
//! two of Node's I/O callbacks). An end that is gone is skipped.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, Weak};

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, Env, Result, Status};

use crate::napi::js_call::DirectCall;

/// The thread's wake-up: takes an end's number; weak (it never keeps the event loop alive by itself).
type Shared = ThreadsafeFunction<i64, (), i64, Status, false, true>;

thread_local! {
    /// The thread's wake-up while any end holds it (each JS thread has a loop of its own).
    static SHARED: RefCell<Weak<Shared>> = const { RefCell::new(Weak::new()) };
    /// The ends of this thread that can be woken, by number.
    static ENDS: RefCell<HashMap<i64, Rc<DirectCall>>> = RefCell::new(HashMap::new());
    static NEXT: Cell<i64> = const { Cell::new(1) };
}

/// Wakes one end's JS thread; `Send` and `Sync`, for whichever thread has events for it.
pub struct Waker {
    shared: Arc<Shared>,
    end: i64,
}

impl Waker {
    /// Asks the end's thread to call its JS function. Fails only while its environment is going away, and then
    /// nobody is listening.
    pub fn wake(&self) {
        let _ = self
            .shared
            .call(self.end, ThreadsafeFunctionCallMode::NonBlocking);
    }
}

/// An end's place in its thread's table, kept by the end on its JS thread: dropped, the end is no longer called.
pub struct Wakeable {
    end: i64,
}

impl Drop for Wakeable {
    fn drop(&mut self) {
        // At thread exit the table may be gone first.
        let _ = ENDS.try_with(|ends| ends.borrow_mut().remove(&self.end));
    }
}

/// Enters `call` (the end's JS function) in this thread's table: the `Waker` for other threads, and the entry that
/// the end keeps.
pub fn register(env: &Env, call: Rc<DirectCall>) -> Result<(Waker, Wakeable)> {
    let shared = shared(env)?;
    let end = NEXT.with(|next| {
        let end = next.get();
        next.set(end + 1);
        end
    });
    ENDS.with(|ends| ends.borrow_mut().insert(end, call));
    Ok((Waker { shared, end }, Wakeable { end }))
}

fn shared(env: &Env) -> Result<Arc<Shared>> {
    SHARED.with(|slot| {
        if let Some(shared) = slot.borrow().upgrade() {
            return Ok(shared);
        }
        let shared = Arc::new(
            env.create_function::<i64, ()>("forklineWake", dispatch)?
                .build_threadsafe_function::<i64>()
                .callee_handled::<false>()
                .weak::<true>()
                .build()?,
        );
        *slot.borrow_mut() = Arc::downgrade(&shared);
        Ok(shared)
    })
}

/// The thread-safe function's JS function, native: calls the end whose number it is given.
unsafe extern "C" fn dispatch(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let mut argc = 1;
    let mut arg = ptr::null_mut();
    let mut end = 0i64;
    // SAFETY: called by napi on the JS thread with a live env and this call's info; the out-pointers are locals.
    let read = unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            &mut arg,
            ptr::null_mut(),
            ptr::null_mut(),
        ) == sys::Status::napi_ok
            && argc == 1
            && sys::napi_get_value_int64(env, arg, &mut end) == sys::Status::napi_ok
    };
    if read {
        // Out of the table before the call: JS may open or drop ends meanwhile.
        if let Some(call) = ENDS.with(|ends| ends.borrow().get(&end).cloned()) {
            call.call();
        }
    }
    ptr::null_mut()
}
