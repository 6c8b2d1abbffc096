//! Busy polling on the JS thread: after a send or a receive the loop keeps looking for the next message for a
//! short window instead of going to sleep in epoll, as Linux's SO_BUSY_POLL does for NICs; `core/spin.rs` decides
//! when and how long (always for a user's `busyPoll`, by default only while it pays). It runs as one libuv idle
//! handle per thread: while it is started libuv polls for I/O without blocking, so the ends' own poll handles read
//! what arrives, and timers and other I/O still run. An idle process costs nothing: the handle stops when the
//! window passes.

use std::cell::RefCell;
use std::ffi::c_void;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::core::spin::{SpinPolicy, Turn, Window};
use crate::napi::uv;

/// The thread's busy poll, shared by its ends (each holds an `Rc`: it closes with the last of them). Not `Send`.
pub(crate) struct Spinner {
    idle: uv::Idle,
    policy: Rc<RefCell<SpinPolicy>>,
    uv_loop: *mut c_void,
}

thread_local! {
    static SPINNER: RefCell<Weak<Spinner>> = const { RefCell::new(Weak::new()) };
}

impl Spinner {
    /// The spinner of `uv_loop`'s thread (made at its first end). None without libuv.
    pub(crate) fn for_loop(uv_loop: *mut c_void) -> Option<Rc<Spinner>> {
        SPINNER.with(|cell| {
            if let Some(spinner) = cell.borrow().upgrade().filter(|s| s.uv_loop == uv_loop) {
                return Some(spinner);
            }
            let policy = Rc::new(RefCell::new(SpinPolicy::default()));
            let turns = policy.clone();
            let mut gave_away = Duration::ZERO;
            let on_turn = Box::new(move |stop: &dyn Fn()| {
                let turn = turns.borrow_mut().turn(Instant::now(), gave_away);
                gave_away = Duration::ZERO;
                match turn {
                    Turn::Stop => stop(),
                    Turn::Yield => {
                        let before = Instant::now();
                        std::thread::yield_now();
                        gave_away = before.elapsed();
                    }
                    Turn::Poll => {}
                }
            });
            let idle = uv::Idle::new(uv_loop, on_turn)?;
            let spinner = Rc::new(Spinner {
                idle,
                policy,
                uv_loop,
            });
            *cell.borrow_mut() = Rc::downgrade(&spinner);
            Some(spinner)
        })
    }

    /// An end sent something.
    pub(crate) fn sent(&self, window: Window) {
        if self.policy.borrow_mut().sent(Instant::now(), window) {
            self.idle.start();
        }
    }

    /// A read on an end brought something.
    pub(crate) fn received(&self, window: Window) {
        if self.policy.borrow_mut().received(Instant::now(), window) {
            self.idle.start();
        }
    }
}

/// One end's busy polling: the thread's spinner and the end's window.
pub(crate) struct BusyPoll {
    pub(crate) spinner: Rc<Spinner>,
    pub(crate) window: Window,
}

impl BusyPoll {
    pub(crate) fn sent(&self) {
        self.spinner.sent(self.window);
    }
}

/// The window of a `busyPoll` option in µs: absent polls while it pays (the default), 0 never, else always that long.
pub(crate) fn window_of(busy_poll: Option<u32>) -> Option<Window> {
    match busy_poll {
        None => Some(Window::Auto),
        Some(0) => None,
        Some(us) => Some(Window::Fixed(Duration::from_micros(us.into()))),
    }
}
