//! Events from the channel and the reactor (reads, writes, the child's exit) to JS: a queue and one coalesced
//! wake-up per batch.
//!
//! Whoever pushes an event calls the JS wake function only if the wake flag flips false → true. JS clears the flag
//! and drains the queue in one call (`drain`, via `poll`), so a burst of messages costs one boundary crossing, not
//! one each. Once the queue holds enough, the reactor stops reading for this channel (`has_room`) until JS has
//! drained it (`on_room`), and the kernel pushes back on the peer. Reads on the JS thread are never held back.
//!
//! In napi/, not core/: the wake-up is the JS thread's shared thread-safe function (wake.rs). The core sees only its
//! `EventSink`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::core::channel::{Event, EventSink};
use crate::napi::wake::Waker;

/// Events the reactor may read ahead of JS. With ≤ 256 KiB read per event this bounds memory at a few MiB per
/// channel.
const QUEUE_CAPACITY: usize = 64;

/// Most events handed to JS per `poll`; the rest get a fresh wake-up, so timers and I/O run in between.
pub const MAX_BATCH: usize = 64;

/// Room a drained queue keeps. A plain deque under a lock, not a lock-free channel: crossbeam's unbounded channel
/// keeps a block of 31 slots per channel (~1.7 KiB, measured with massif: 174 KB for 100 children), where a parent
/// of hundreds of mostly idle children wants each channel to hold little.
const KEPT_CAPACITY: usize = 8;

pub struct Delivery {
    queue: Mutex<VecDeque<Event>>,
    woken: AtomicBool,
    waker: Waker,
    /// Set while the JS thread itself reads: it calls JS right after, so pushes need not wake it.
    quiet: AtomicBool,
    /// What to call once JS has drained: the reactor's reads, held back for room.
    resume: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Set while `resume` is held, so the drain on the JS thread takes the lock only then.
    waiting: AtomicBool,
}

impl Delivery {
    pub fn new(waker: Waker) -> Self {
        Delivery {
            queue: Mutex::new(VecDeque::new()),
            woken: AtomicBool::new(false),
            waker,
            quiet: AtomicBool::new(false),
            resume: Mutex::new(None),
            waiting: AtomicBool::new(false),
        }
    }

    fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Runs `read` (on the JS thread) without waking JS for what it pushes; true if events are waiting after it.
    pub fn quietly(&self, read: impl FnOnce()) -> bool {
        self.quiet.store(true, Ordering::Release);
        read();
        self.quiet.store(false, Ordering::Release);
        self.pending() > 0
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Event>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events waiting for JS.
    pub fn pending(&self) -> usize {
        self.queue().len()
    }

    /// Hands up to `MAX_BATCH` events to `take`, in order; if more are waiting, asks for another wake-up.
    pub fn drain(&self, mut take: impl FnMut(Event)) {
        // A swap, not a store: a store could be ordered after the queue read below, and a push in between would
        // then find the flag still set and not wake anyone (a lost wake-up). As read-modify-writes, this and the
        // pusher's swap are ordered: either it sees the push, or the pusher sees the cleared flag and wakes JS.
        self.woken.swap(false, Ordering::AcqRel);
        // One lock for the batch: `take` only moves each event into the caller's list (napi/side.rs `poll`).
        let more = {
            let mut queue = self.queue();
            let n = queue.len().min(MAX_BATCH);
            queue.drain(..n).for_each(&mut take);
            if queue.is_empty() && queue.capacity() > 4 * KEPT_CAPACITY {
                queue.shrink_to(KEPT_CAPACITY);
            }
            !queue.is_empty()
        };
        if more {
            self.wake();
        }
        if self.waiting.swap(false, Ordering::SeqCst) {
            self.resume_now();
        }
    }

    fn resume_now(&self) {
        let resume = self.resume.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(resume) = resume {
            resume();
        }
    }
}

impl EventSink for Delivery {
    fn push(&self, event: Event) {
        self.queue().push_back(event);
        if !self.quiet.load(Ordering::Acquire) {
            self.wake();
        }
    }

    fn has_room(&self) -> bool {
        self.pending() < QUEUE_CAPACITY
    }

    fn on_room(&self, resume: Box<dyn FnOnce() + Send>) {
        *self.resume.lock().unwrap_or_else(|p| p.into_inner()) = Some(resume);
        // Announce first, then look: a drain after the look sees the flag and resumes; a drain before it has
        // already made room, which the look sees.
        self.waiting.store(true, Ordering::SeqCst);
        if self.has_room() && self.waiting.swap(false, Ordering::SeqCst) {
            self.resume_now();
        }
    }
}
