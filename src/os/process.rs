//! A child's life after spawn: its exit, reported by the reactor, and a kill that can never hit a recycled pid.
//!
//! Each child gets a pidfd (Linux ≥ 5.3) registered with the process's one reactor (reactor.rs): it turns readable
//! when the child exits, the reactor reaps it by that pidfd, and signals go through `pidfd_send_signal`, which
//! names this child and no other even after its pid is reused. Where pidfds are missing (older kernels, or
//! `FORKLINE_NO_PIDFD=1` for the tests) one reaper thread for all children waits for any child to exit without
//! reaping it (`WNOWAIT`), then reaps only its own pids: exits of children that libuv (node:child_process) or
//! anyone else started are left to them. Never a SIGCHLD handler: libuv owns SIGCHLD in a Node process.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::core::error::SysError;
use crate::os::reactor::{Ready, Registration, Source};

/// What runs once the child has exited and been reaped: its exit code or signal.
type OnExit = Box<dyn FnOnce(Option<i32>, Option<i32>) + Send>;

pub struct Process {
    pid: Pid,
    watch: Watch,
    on_exit: Mutex<Option<OnExit>>,
}

enum Watch {
    /// The pidfd and its place in the reactor, until the child is reaped (then both are closed: a process that
    /// forks thousands of children keeps no fd for those that are gone).
    Pidfd(Mutex<Option<(Arc<OwnedFd>, Registration)>>),
    /// Reaped by the fallback thread; true once reaped (from then on the pid may belong to someone else).
    ByPid { reaped: Mutex<bool> },
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves nothing half-done that matters here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Process {
    /// Starts watching `pid`; `on_exit` runs once it has exited and been reaped (on the reactor or reaper
    /// thread).
    pub fn watch(
        pid: i32,
        on_exit: impl FnOnce(Option<i32>, Option<i32>) + Send + 'static,
    ) -> Result<Arc<Process>, SysError> {
        let pid = Pid::from_raw(pid);
        let on_exit = Mutex::new(Some(Box::new(on_exit) as OnExit));
        let pidfd = if pidfd_disabled() {
            None
        } else {
            pidfd_open(pid)
        };
        match pidfd {
            Some(fd) => {
                let process = Arc::new(Process {
                    pid,
                    watch: Watch::Pidfd(Mutex::new(None)),
                    on_exit,
                });
                let fd = Arc::new(fd);
                let me: Arc<dyn Source> = process.clone();
                let reg = Registration::new(fd.clone(), Arc::downgrade(&me))
                    .map_err(|e| SysError::new(e, "epoll_ctl"))?;
                let Watch::Pidfd(slot) = &process.watch else {
                    unreachable!()
                };
                // In the slot before the reactor can see it exit, so that `ready` finds it there.
                let mut held = lock(slot);
                reg.want_read(true)
                    .map_err(|e| SysError::new(e, "epoll_ctl"))?;
                *held = Some((fd, reg));
                drop(held);
                Ok(process)
            }
            None => {
                let process = Arc::new(Process {
                    pid,
                    watch: Watch::ByPid {
                        reaped: Mutex::new(false),
                    },
                    on_exit,
                });
                Reaper::get().add(&process)?;
                Ok(process)
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Sends `signal` (0 probes). ESRCH once the child is gone, as libuv reports it.
    pub fn kill(&self, signal: i32) -> Result<(), Errno> {
        let sig = if signal == 0 {
            None
        } else {
            Some(Signal::try_from(signal)?)
        };
        match &self.watch {
            Watch::Pidfd(slot) => {
                // Under the lock the reactor reaps with: once reaped, the pidfd is gone and so is the child.
                let slot = lock(slot);
                match &*slot {
                    Some((fd, _)) => pidfd_send_signal(fd.as_fd(), signal),
                    None => Err(Errno::ESRCH),
                }
            }
            Watch::ByPid { reaped } => {
                // Under the lock the reaper reaps with, so the pid cannot be reused meanwhile.
                let reaped = lock(reaped);
                if *reaped {
                    return Err(Errno::ESRCH);
                }
                kill(self.pid, sig)
            }
        }
    }

    fn exited(&self, code: Option<i32>, signal: Option<i32>) {
        if let Some(on_exit) = lock(&self.on_exit).take() {
            on_exit(code, signal);
        }
    }
}

impl Source for Process {
    fn ready(self: Arc<Self>, ready: Ready) {
        let Watch::Pidfd(slot) = &self.watch else {
            return;
        };
        if !ready.readable {
            return;
        }
        let mut slot = lock(slot);
        let Some((fd, _)) = &*slot else { return };
        let status = match waitid(
            Id::PIDFd(fd.as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => return,
            Ok(status) => status_of(status),
            // ECHILD: someone else reaped it (a waitpid(-1) elsewhere in the process); its status is lost.
            Err(_) => (None, None),
        };
        // Reaped: out of the reactor and closed (dropped after the lock, as the registration may hold us).
        let gone = slot.take();
        drop(slot);
        if let Some((_, reg)) = &gone {
            let _ = reg.want_read(false);
        }
        drop(gone);
        self.exited(status.0, status.1);
    }
}

fn status_of(status: WaitStatus) -> (Option<i32>, Option<i32>) {
    match status {
        WaitStatus::Exited(_, code) => (Some(code), None),
        WaitStatus::Signaled(_, sig, _) => (None, Some(sig as i32)),
        // Stopped/continued are not reported without WUNTRACED/WCONTINUED.
        _ => (None, None),
    }
}

/// `FORKLINE_NO_PIDFD=1` takes the fallback path, so the tests can run it on a kernel that has pidfds.
fn pidfd_disabled() -> bool {
    static DISABLED: OnceLock<bool> = OnceLock::new();
    *DISABLED.get_or_init(|| std::env::var_os("FORKLINE_NO_PIDFD").is_some_and(|v| v == "1"))
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us, open and owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_send_signal(pidfd: std::os::fd::BorrowedFd<'_>, signal: i32) -> Result<(), Errno> {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags reads no memory of ours; the fd is borrowed
    // open for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// The fallback: one thread for every child this process watches by pid.
struct Reaper {
    watched: Mutex<Watched>,
    some: Condvar,
}

#[derive(Default)]
struct Watched {
    pids: HashMap<i32, Weak<Process>>,
    /// Whether the thread runs: it ends a while after the last watched child is reaped.
    running: bool,
}

/// How long the reaper waits before looking again when the child that exited is someone else's, which its owner
/// (libuv) reaps on its own loop.
const FOREIGN_EXIT_BACKOFF: Duration = Duration::from_millis(2);
/// How long the reaper thread waits with no child to watch before it ends.
const LINGER: Duration = Duration::from_secs(1);

impl Reaper {
    fn get() -> &'static Reaper {
        static REAPER: OnceLock<Reaper> = OnceLock::new();
        REAPER.get_or_init(|| Reaper {
            watched: Mutex::new(Watched::default()),
            some: Condvar::new(),
        })
    }

    fn add(&'static self, process: &Arc<Process>) -> Result<(), SysError> {
        let mut watched = lock(&self.watched);
        if !watched.running {
            std::thread::Builder::new()
                .name("forkline-reaper".into())
                .spawn(move || self.run())
                .map_err(|_| SysError::new(Errno::EAGAIN, "thread"))?;
            watched.running = true;
        }
        watched
            .pids
            .insert(process.pid.as_raw(), Arc::downgrade(process));
        self.some.notify_one();
        Ok(())
    }

    fn run(&self) {
        loop {
            {
                let mut watched = lock(&self.watched);
                while watched.pids.is_empty() {
                    let (next, waited) = self
                        .some
                        .wait_timeout(watched, LINGER)
                        .unwrap_or_else(|p| p.into_inner());
                    watched = next;
                    if waited.timed_out() && watched.pids.is_empty() {
                        watched.running = false;
                        return;
                    }
                }
            }
            // Some child exited (ours or not): find which of ours did, reaping none of the others.
            match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Ok(_) | Err(Errno::EINTR) => {}
                // No children at all: ours were reaped by someone else.
                Err(_) => {}
            }
            if !self.reap_ours() {
                std::thread::sleep(FOREIGN_EXIT_BACKOFF);
            }
        }
    }

    /// Reaps every watched child that has exited; true if there was one (or a watched one vanished).
    fn reap_ours(&self) -> bool {
        let pids: Vec<i32> = lock(&self.watched).pids.keys().copied().collect();
        let mut any = false;
        for pid in pids {
            let exited = match waitid(
                Id::Pid(Pid::from_raw(pid)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            ) {
                Ok(WaitStatus::StillAlive) => false,
                Ok(_) | Err(_) => true,
            };
            if !exited {
                continue;
            }
            any = true;
            let process = lock(&self.watched)
                .pids
                .remove(&pid)
                .and_then(|w| w.upgrade());
            let Some(process) = process else {
                // Nobody wants this one any more; reap it so it is no zombie.
                let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                continue;
            };
            let Watch::ByPid { reaped } = &process.watch else {
                continue;
            };
            let status = {
                let mut reaped = lock(reaped);
                let status = loop {
                    match waitpid(process.pid, None) {
                        Err(Errno::EINTR) => continue,
                        Ok(status) => break status_of(status),
                        Err(_) => break (None, None),
                    }
                };
                *reaped = true;
                status
            };
            process.exited(status.0, status.1);
        }
        any
    }
}

/// Blocks until `pid` exits.
#[cfg(test)]
pub fn wait_blocking(pid: i32) -> (Option<i32>, Option<i32>) {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(Errno::EINTR) => continue,
            Ok(status) => return status_of(status),
            Err(_) => return (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::spawn::{spawn, SpawnOptions, Stdio};
    use crossbeam_channel::unbounded;

    fn sleeper() -> i32 {
        spawn(&SpawnOptions {
            file: "/bin/sleep".into(),
            args: vec!["sleep".into(), "30".into()],
            stdio: vec![Stdio::Ignore; 3],
            ..Default::default()
        })
        .unwrap()
        .pid
        .unwrap()
    }

    #[test]
    fn kill_reports_the_signal_then_refuses() {
        let (tx, rx) = unbounded();
        let p = Process::watch(sleeper(), move |code, signal| {
            tx.send((code, signal)).unwrap()
        })
        .unwrap();
        p.kill(Signal::SIGTERM as i32).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, (None, Some(Signal::SIGTERM as i32)));
        assert_eq!(p.kill(Signal::SIGTERM as i32), Err(Errno::ESRCH));
    }

    #[test]
    fn the_fallback_reaps_its_own_children_and_leaves_the_others() {
        let reaper = Reaper::get();
        let (tx, rx) = unbounded();
        let ours = Arc::new(Process {
            pid: Pid::from_raw(sleeper()),
            watch: Watch::ByPid {
                reaped: Mutex::new(false),
            },
            on_exit: Mutex::new(Some(Box::new(move |code, signal| {
                tx.send((code, signal)).unwrap()
            }))),
        });
        reaper.add(&ours).unwrap();
        // Someone else's child: exits at once, and must still be there for its owner to reap.
        let theirs = spawn(&SpawnOptions {
            file: "/bin/true".into(),
            args: vec!["true".into()],
            stdio: vec![Stdio::Ignore; 3],
            ..Default::default()
        })
        .unwrap()
        .pid
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        ours.kill(Signal::SIGKILL as i32).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, (None, Some(Signal::SIGKILL as i32)));
        assert_eq!(ours.kill(0), Err(Errno::ESRCH));
        assert_eq!(wait_blocking(theirs), (Some(0), None));
    }
}
