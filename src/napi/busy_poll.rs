//! Busy polling (`busyPoll`, µs): after each send and receive, the JS thread keeps looking for the next message
//! for a while instead of going to sleep in epoll, as Linux's SO_BUSY_POLL does for NICs. A round trip then costs
//! no wake-up on either end that polls. It runs as a libuv idle handle, so the event loop stays responsive: libuv
//! calls it once per loop turn and polls for I/O without blocking while it is started, so timers and other I/O
//! still run. An idle channel costs nothing: the handle stops when the window passes without a message.

use std::cell::Cell;
use std::ffi::c_void;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::napi::side::JsThreadRead;
use crate::napi::uv;

/// The busy poll of one channel end. Not `Send`: it lives on the JS thread.
pub(crate) struct BusyPoll {
    idle: uv::Idle,
    until: Rc<Cell<Instant>>,
    window: Duration,
}

impl BusyPoll {
    pub(crate) fn new(
        uv_loop: *mut c_void,
        window: Duration,
        read: JsThreadRead,
    ) -> Option<BusyPoll> {
        let until = Rc::new(Cell::new(Instant::now()));
        let deadline = until.clone();
        let on_turn = Box::new(move |stop: &dyn Fn()| {
            if Instant::now() >= deadline.get() {
                return stop();
            }
            if read.read_once(stop) {
                deadline.set(Instant::now() + window);
            } else {
                // A peer we just woke is often queued on this CPU (a socket write wakes its reader where the
                // writer runs, expecting the writer to sleep): let it run rather than spin in its way.
                std::thread::yield_now();
            }
        });
        let idle = uv::Idle::new(uv_loop, on_turn)?;
        Some(BusyPoll {
            idle,
            until,
            window,
        })
    }

    /// Polls for `window` from now (a send or a receive just happened).
    pub(crate) fn arm(&self) {
        self.until.set(Instant::now() + self.window);
        self.idle.start();
    }
}
