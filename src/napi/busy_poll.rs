//! Busy polling on the JS thread: after a send or a receive the loop keeps looking for the next message for a
//! short window instead of going to sleep in epoll, as Linux's SO_BUSY_POLL does for NICs; `core/spin.rs` decides
//! when and how long (always for a user's `busyPoll`, by default only while it pays). It runs as one libuv idle
//! handle per thread: while it is started libuv polls for I/O without blocking, so the ends' own poll handles read
//! what arrives, and timers and other I/O still run. An idle process costs nothing: the handle stops when the
//! window passes.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::core::cpu_pressure::CpuCrowding;
use crate::core::spin::{SpinPolicy, Turn, Window};
use crate::napi::uv;
use crate::os::pressure;

/// The thread's busy poll, shared by its ends (each holds an `Rc`: it closes with the last of them). Not `Send`.
pub(crate) struct Spinner {
    idle: uv::Idle,
    policy: Rc<RefCell<SpinPolicy>>,
    uv_loop: *mut c_void,
}

thread_local! {
    static SPINNER: RefCell<Weak<Spinner>> = const { RefCell::new(Weak::new()) };
    /// How long this thread's loop has polled for nothing in all: turns that found nothing since the last one, and
    /// the CPU they yielded. Idle in all but name: `loop_gauge.rs` counts it with the time libuv waited in epoll.
    static SPUN: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// Whether the machine's CPUs are crowded, sampled as traffic comes (at most once per its window). The thread's,
    /// not a spinner's: it outlives the ends (a parent that forks one child after another keeps its judgement).
    static CPUS: RefCell<CpuCrowding> = RefCell::new(CpuCrowding::default());
}

/// This thread's time spent busy polling for nothing, so far.
pub(crate) fn spun() -> Duration {
    SPUN.with(Cell::get)
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
            // When the last turn of the running episode ended.
            let mut last_turn: Option<Instant> = None;
            let on_turn = Box::new(move |stop: &dyn Fn()| {
                let now = Instant::now();
                let turn = turns.borrow_mut().turn(now, gave_away);
                gave_away = Duration::ZERO;
                match turn {
                    Turn::Stop => {
                        stop();
                        last_turn = None;
                    }
                    // Nothing came since the last turn: the loop only polled meanwhile.
                    Turn::Yield => {
                        std::thread::yield_now();
                        gave_away = now.elapsed();
                        let polled = last_turn
                            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
                        SPUN.with(|spun| spun.set(spun.get() + polled + gave_away));
                        last_turn = Some(now + gave_away);
                    }
                    Turn::Poll => last_turn = Some(now),
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
        let now = self.now_judged();
        if self.policy.borrow_mut().sent(now, window) {
            self.idle.start();
        }
    }

    /// A read on an end brought something.
    pub(crate) fn received(&self, window: Window) {
        let now = self.now_judged();
        if self.policy.borrow_mut().received(now, window) {
            self.idle.start();
        }
    }

    /// The time, with the policy told whether the machine is crowded as of then.
    fn now_judged(&self) -> Instant {
        let now = Instant::now();
        let crowded = CPUS.with(|cpus| cpus.borrow_mut().crowded(now, pressure::cpu_stalled));
        self.policy.borrow_mut().set_crowded(crowded);
        now
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
