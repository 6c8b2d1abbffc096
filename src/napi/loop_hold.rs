//! What keeps Node's event loop alive while a child or its channel is ref'd (`subprocess.ref()`,
//! `subprocess.channel.ref()`): one strong thread-safe function per JS thread, shared by every holder and released
//! with the last one. Node's own handles do this per child; a thread-safe function is heavier (a libuv async handle,
//! a queue and an async resource), so forkline keeps one, not two per child.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use napi::threadsafe_function::ThreadsafeFunction;
use napi::{sys, Env, Result, Status};

/// A thread-safe function held strongly (not weak): while it exists, the loop stays alive.
type KeepAlive = ThreadsafeFunction<(), (), (), Status, false, false>;

/// One reason to keep the loop alive; the loop may end once every `Hold` of its thread is dropped.
pub(crate) struct Hold {
    _alive: Rc<KeepAlive>,
}

thread_local! {
    /// The thread's keep-alive while anyone holds it. Per thread: each JS thread (the main one, each worker) has a
    /// loop of its own.
    static SHARED: RefCell<Weak<KeepAlive>> = const { RefCell::new(Weak::new()) };
}

/// A hold on this thread's loop. The first one makes the keep-alive (over a function of its own that is never
/// called: one of a child's would keep that child's JS object alive with it), later ones share it.
pub(crate) fn hold(env: &Env) -> Result<Hold> {
    SHARED.with(|shared| {
        if let Some(alive) = shared.borrow().upgrade() {
            return Ok(Hold { _alive: alive });
        }
        let alive = Rc::new(
            env.create_function::<(), ()>("forklineKeepAlive", never_called)?
                .build_threadsafe_function::<()>()
                .callee_handled::<false>()
                .build()?,
        );
        *shared.borrow_mut() = Rc::downgrade(&alive);
        Ok(Hold { _alive: alive })
    })
}

/// The keep-alive's function. Nothing calls it (no one calls the thread-safe function); it returns undefined.
unsafe extern "C" fn never_called(
    _env: sys::napi_env,
    _info: sys::napi_callback_info,
) -> sys::napi_value {
    std::ptr::null_mut()
}
