//! One thread and one epoll for the whole process: every channel's off-JS-thread reads and writes, every child's
//! exit (its pidfd) and every round-robin acceptor are events here, so the thread count does not grow with the
//! number of children (libuv's model; #13).
//!
//! A source registers one fd and says what it wants (`want_read`/`want_write`); the reactor calls its `ready`
//! while the fd is ready for that. Level-triggered: a handler does a bounded amount of work per call and returns,
//! and a source that still has work is simply ready again on the next turn, after the others — so one flooding
//! channel cannot starve the rest. A registration with nothing wanted is taken out of the epoll set (a hung-up
//! socket would otherwise report EPOLLHUP forever). One-off timers (`after`) cover the rest: a burst going quiet,
//! an accept retry, the wait for a channel's EOF before its child's exit is reported.
//!
//! The thread starts when a source first wants something (or a timer is set), and ends after a second with
//! nothing wanted and no timer, so a process whose children are all gone is back to the threads it had before the
//! first fork; the next fork starts it again. It never keeps Node's event loop alive: what keeps a process alive is
//! the JS side's ref'd handles.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// What a registered fd is ready for, as far as its source asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
}

/// Something the reactor serves. `ready` runs on the reactor thread: it must not block, and should do a bounded
/// amount of work (it is called again while the fd stays ready).
pub trait Source: Send + Sync + 'static {
    fn ready(self: Arc<Self>, ready: Ready);
}

/// Events taken from the kernel per epoll_wait.
const EVENTS_PER_WAIT: usize = 256;
/// The eventfd's token: wakes the thread when a nearer timer is set.
const WAKE_TOKEN: u64 = 0;
/// How long the thread waits with nothing wanted and no timer before it ends.
const LINGER: Duration = Duration::from_secs(1);

type Timer = Box<dyn FnOnce() + Send>;

struct Reactor {
    epoll: Epoll,
    wake: EventFd,
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
    timers: Mutex<Timers>,
    /// Registrations that want something now (are in the epoll set).
    active: AtomicUsize,
    /// Whether the thread runs.
    running: Mutex<bool>,
}

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    due: HashMap<u64, Timer>,
    next_id: u64,
}

struct Entry {
    token: u64,
    fd: Arc<OwnedFd>,
    source: Weak<dyn Source>,
    state: Mutex<EntryState>,
}

struct EntryState {
    read: bool,
    write: bool,
    /// The interest the kernel has now (empty: not in the epoll set).
    registered: EpollFlags,
    /// The source, held while it wants something: a channel with queued writes lives until they are out even if
    /// its owner let go, as its writer thread used to keep it.
    hold: Option<Arc<dyn Source>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain bookkeeping: a panic elsewhere leaves nothing half-done that matters here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(WAKE_TOKEN + 1);

/// The process's reactor (its epoll and tables: the thread starts on demand); None if the epoll cannot be made.
fn reactor() -> Option<&'static Reactor> {
    static REACTOR: OnceLock<Option<&'static Reactor>> = OnceLock::new();
    *REACTOR.get_or_init(|| {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok()?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).ok()?;
        epoll
            .add(
                wake.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
            )
            .ok()?;
        let reactor: &'static Reactor = Box::leak(Box::new(Reactor {
            epoll,
            wake,
            entries: Mutex::new(HashMap::new()),
            timers: Mutex::new(Timers::default()),
            active: AtomicUsize::new(0),
            running: Mutex::new(false),
        }));
        Some(reactor)
    })
}

fn unavailable() -> Errno {
    Errno::EAGAIN
}

/// A source's place in the reactor; taking it out of the epoll set when dropped.
pub struct Registration {
    entry: Arc<Entry>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("token", &self.entry.token)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Registers `fd` for `source` (nothing wanted yet). The registration keeps `fd` open, so its number cannot be
    /// reused while the epoll set may still name it.
    pub fn new(fd: Arc<OwnedFd>, source: Weak<dyn Source>) -> Result<Registration, Errno> {
        let reactor = reactor().ok_or_else(unavailable)?;
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            token,
            fd,
            source,
            state: Mutex::new(EntryState {
                read: false,
                write: false,
                registered: EpollFlags::empty(),
                hold: None,
            }),
        });
        lock(&reactor.entries).insert(token, entry.clone());
        Ok(Registration { entry })
    }

    /// Asks for `ready` calls while the fd is readable (or stops asking).
    pub fn want_read(&self, on: bool) -> Result<(), Errno> {
        self.entry.update(|st| st.read = on)
    }

    /// Asks for `ready` calls while the fd is writable (or stops asking).
    pub fn want_write(&self, on: bool) -> Result<(), Errno> {
        self.entry.update(|st| st.write = on)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(reactor) = reactor() else { return };
        lock(&reactor.entries).remove(&self.entry.token);
        let hold = {
            let mut st = lock(&self.entry.state);
            if !st.registered.is_empty() {
                let _ = reactor.epoll.delete(self.entry.fd.as_fd());
                st.registered = EpollFlags::empty();
                reactor.active.fetch_sub(1, Ordering::SeqCst);
            }
            st.hold.take()
        };
        drop(hold);
    }
}

impl Entry {
    fn update(&self, change: impl FnOnce(&mut EntryState)) -> Result<(), Errno> {
        let reactor = reactor().ok_or_else(unavailable)?;
        let mut st = lock(&self.state);
        change(&mut st);
        let mut want = EpollFlags::empty();
        if st.read {
            want |= EpollFlags::EPOLLIN;
        }
        if st.write {
            want |= EpollFlags::EPOLLOUT;
        }
        let result = if want == st.registered {
            Ok(())
        } else if want.is_empty() {
            reactor.epoll.delete(self.fd.as_fd())
        } else {
            let event = EpollEvent::new(want, self.token);
            if st.registered.is_empty() {
                reactor.epoll.add(self.fd.as_fd(), event)
            } else {
                let mut event = event;
                reactor.epoll.modify(self.fd.as_fd(), &mut event)
            }
        };
        if result.is_ok() {
            match (st.registered.is_empty(), want.is_empty()) {
                (true, false) => {
                    reactor.active.fetch_add(1, Ordering::SeqCst);
                }
                (false, true) => {
                    reactor.active.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            }
            st.registered = want;
        }
        // Dropped after the lock: the last hold on a source may drop it, and its registration with it.
        let released = if want.is_empty() {
            st.hold.take()
        } else {
            if st.hold.is_none() {
                st.hold = self.source.upgrade();
            }
            None
        };
        drop(st);
        drop(released);
        result?;
        if !want.is_empty() {
            reactor.ensure_running()?;
        }
        Ok(())
    }

    fn dispatch(&self, events: EpollFlags) {
        let (read, write) = {
            let st = lock(&self.state);
            (st.read, st.write)
        };
        let Some(source) = self.source.upgrade() else {
            return;
        };
        // An error or hang-up is reported to whichever side is listening: its next syscall tells what happened.
        let trouble = events.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
        let ready = Ready {
            readable: read && (events.contains(EpollFlags::EPOLLIN) || trouble),
            writable: write && (events.contains(EpollFlags::EPOLLOUT) || trouble),
        };
        if ready.readable || ready.writable {
            source.ready(ready);
        }
    }
}

/// A timer set with `after`, for `cancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId(u64);

/// Runs `f` on the reactor thread once `delay` has passed. Err if the reactor cannot run.
pub fn after(delay: Duration, f: impl FnOnce() + Send + 'static) -> Result<TimerId, Errno> {
    let reactor = reactor().ok_or_else(unavailable)?;
    let at = Instant::now() + delay;
    let mut timers = lock(&reactor.timers);
    let sooner = timers.heap.peek().is_none_or(|Reverse((t, _))| at < *t);
    let id = timers.next_id;
    timers.next_id += 1;
    timers.heap.push(Reverse((at, id)));
    timers.due.insert(id, Box::new(f));
    drop(timers);
    if sooner {
        let _ = reactor.wake.write(1);
    }
    reactor.ensure_running()?;
    Ok(TimerId(id))
}

/// Drops a timer that has not run yet (so that it keeps neither the thread nor what `f` holds).
pub fn cancel(timer: TimerId) {
    if let Some(reactor) = reactor() {
        let f = lock(&reactor.timers).due.remove(&timer.0);
        if f.is_some() {
            // The thread may be asleep until that timer: let it look again (and end, if nothing else is left).
            let _ = reactor.wake.write(1);
        }
        drop(f);
    }
}

impl Reactor {
    /// Starts the thread unless it runs.
    fn ensure_running(&'static self) -> Result<(), Errno> {
        let mut running = lock(&self.running);
        if !*running {
            std::thread::Builder::new()
                .name("forkline-reactor".into())
                .spawn(move || self.run())
                .map_err(|_| unavailable())?;
            *running = true;
        }
        Ok(())
    }

    /// Ends the thread if nothing is wanted and no timer is set (checked under the lock `ensure_running` takes,
    /// after whatever it saw: a source that wants something counts itself active before it asks for the thread).
    fn may_stop(&self) -> bool {
        let mut running = lock(&self.running);
        if self.active.load(Ordering::SeqCst) == 0 && lock(&self.timers).due.is_empty() {
            *running = false;
            return true;
        }
        false
    }

    fn run(&self) {
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
        let mut quiet_since: Option<Instant> = None;
        loop {
            let timeout = self.next_timeout();
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                // Only EBADF/EFAULT/EINVAL, none of which can happen to our own epoll: keep the thread alive.
                Err(_) => 0,
            };
            for event in &events[..n] {
                let token = event.data();
                if token == WAKE_TOKEN {
                    let _ = self.wake.read();
                    continue;
                }
                let entry = lock(&self.entries).get(&token).cloned();
                if let Some(entry) = entry {
                    // A panicking handler must not take every other channel's thread with it.
                    let _ = catch_unwind(AssertUnwindSafe(|| entry.dispatch(event.events())));
                }
            }
            self.run_timers();
            // Ends after LINGER with nothing to do, not at once: a channel bursting every few milliseconds would
            // otherwise start a thread each time.
            if n > 0 || self.active.load(Ordering::SeqCst) > 0 {
                quiet_since = None;
            } else if quiet_since.get_or_insert_with(Instant::now).elapsed() >= LINGER
                && self.may_stop()
            {
                return;
            }
        }
    }

    fn next_timeout(&self) -> EpollTimeout {
        let mut timers = lock(&self.timers);
        // Cancelled timers leave their place in the heap: drop those at the front.
        while let Some(Reverse((_, id))) = timers.heap.peek() {
            if timers.due.contains_key(id) {
                break;
            }
            timers.heap.pop();
        }
        match timers.heap.peek() {
            None => EpollTimeout::try_from(LINGER.as_millis() as i32).unwrap_or(EpollTimeout::NONE),
            Some(Reverse((at, _))) => {
                let left = at.saturating_duration_since(Instant::now());
                // Round up, so a timer is never run a little early and then waited for again at 0 ms.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE)
            }
        }
    }

    fn run_timers(&self) {
        let now = Instant::now();
        loop {
            let f = {
                let mut timers = lock(&self.timers);
                match timers.heap.peek() {
                    Some(Reverse((at, id))) if *at <= now => {
                        let id = *id;
                        timers.heap.pop();
                        timers.due.remove(&id)
                    }
                    _ => return,
                }
            };
            if let Some(f) = f {
                let _ = catch_unwind(AssertUnwindSafe(f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, Sender};
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    struct Probe {
        tx: Sender<Ready>,
        reg: OnceLock<Registration>,
        sock: UnixStream,
    }

    impl Source for Probe {
        fn ready(self: Arc<Self>, ready: Ready) {
            let mut buf = [0u8; 64];
            use std::io::Read;
            let _ = (&self.sock).read(&mut buf);
            let _ = self.tx.send(ready);
        }
    }

    #[test]
    fn calls_a_source_while_it_is_ready_and_timers_in_order() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let (tx, rx) = unbounded();
        let fd = Arc::new(OwnedFd::from(a.try_clone().unwrap()));
        let probe = Arc::new(Probe {
            tx,
            reg: OnceLock::new(),
            sock: a,
        });
        let weak: Weak<dyn Source> = Arc::downgrade(&probe) as Weak<dyn Source>;
        let reg = Registration::new(fd, weak).unwrap();
        reg.want_read(true).unwrap();
        probe.reg.set(reg).unwrap();
        b.write_all(b"x").unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(got.readable && !got.writable);

        let (ttx, trx) = unbounded();
        for (i, ms) in [(2, 30u64), (1, 10), (3, 50)] {
            let ttx = ttx.clone();
            after(Duration::from_millis(ms), move || ttx.send(i).unwrap()).unwrap();
        }
        let cancelled = after(Duration::from_millis(20), || panic!("cancelled")).unwrap();
        cancel(cancelled);
        let order: Vec<i32> = (0..3)
            .map(|_| trx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(order, [1, 2, 3]);
    }
}
