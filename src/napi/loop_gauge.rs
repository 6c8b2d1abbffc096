//! How busy the JS thread's event loop has been lately (core/loop_load.rs judges it from the clock and libuv's
//! idle-time metric): one gauge per JS thread, shared by its ends. Sampled when JS is woken for an end's events
//! and when a handle is sent, so a judgement covers the last few milliseconds of a thread that is passing handles.
//! Not `Send`.

use std::cell::RefCell;
use std::ffi::c_void;
use std::rc::{Rc, Weak};
use std::time::Instant;

use crate::core::loop_load::LoopLoad;
use crate::napi::{busy_poll, uv};

pub(crate) struct LoopGauge {
    uv_loop: *mut c_void,
    load: RefCell<LoopLoad>,
}

thread_local! {
    static GAUGE: RefCell<Weak<LoopGauge>> = const { RefCell::new(Weak::new()) };
}

impl LoopGauge {
    /// The gauge of `uv_loop`'s thread (made at its first end, with a first sample).
    pub(crate) fn for_loop(uv_loop: *mut c_void) -> Rc<LoopGauge> {
        GAUGE.with(|cell| {
            if let Some(gauge) = cell.borrow().upgrade().filter(|g| g.uv_loop == uv_loop) {
                return gauge;
            }
            let gauge = Rc::new(LoopGauge {
                uv_loop,
                load: RefCell::new(LoopLoad::default()),
            });
            gauge.busy();
            *cell.borrow_mut() = Rc::downgrade(&gauge);
            gauge
        })
    }

    /// Busy lately (samples the loop if a window has passed since the last sample). Busy polling that found
    /// nothing counts as idle: libuv's metric counts only the time it waited in epoll, and while this thread busy
    /// polls it does not wait there.
    pub(crate) fn busy(&self) -> bool {
        self.load.borrow_mut().busy(Instant::now(), || {
            uv::idle_time(self.uv_loop).map(|idle| idle + busy_poll::spun())
        })
    }
}
