//! A child's life after spawn: the reaper thread and a kill that can never hit a recycled pid.
//!
//! We reap only our own pid (never waitpid(-1), never a SIGCHLD handler): libuv owns SIGCHLD in a Node process and
//! reaps its own children by pid.

use std::sync::{Arc, Mutex};
use std::thread;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::core::channel::{Event, EventSink};
use crate::core::error::SysError;

#[derive(Debug)]
pub struct Process {
    pid: Pid,
    /// True once reaped: from then on the pid may belong to someone else.
    reaped: Mutex<bool>,
}

impl Process {
    /// Starts watching `pid`; its exit arrives on `sink` as `Event::Exit`, after `before_exit` has run (the owner
    /// uses it to let the channel's EOF go first, as Node reports 'disconnect' before 'exit').
    pub fn watch(
        pid: i32,
        sink: Arc<dyn EventSink>,
        before_exit: impl FnOnce() + Send + 'static,
    ) -> Result<Arc<Process>, SysError> {
        let process = Arc::new(Process {
            pid: Pid::from_raw(pid),
            reaped: Mutex::new(false),
        });
        let me = process.clone();
        thread::Builder::new()
            .name("forkline-reaper".into())
            .spawn(move || {
                let (code, signal) = me.wait();
                before_exit();
                sink.push(Event::Exit { code, signal });
            })
            .map_err(|e| SysError::new(Errno::from_raw(e.raw_os_error().unwrap_or(0)), "thread"))?;
        Ok(process)
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    fn wait(&self) -> (Option<i32>, Option<i32>) {
        // Wait without reaping, then reap under the lock, so kill() never races a reused pid.
        while let Err(Errno::EINTR) = waitid(
            Id::Pid(self.pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {}
        let mut reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        let status = wait_status(self.pid);
        *reaped = true;
        status
    }

    /// Sends `signal` (0 probes). ESRCH once the child is gone, as libuv reports it.
    pub fn kill(&self, signal: i32) -> Result<(), Errno> {
        let reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if *reaped {
            return Err(Errno::ESRCH);
        }
        let sig = if signal == 0 {
            None
        } else {
            Some(Signal::try_from(signal)?)
        };
        kill(self.pid, sig)
    }
}

fn wait_status(pid: Pid) -> (Option<i32>, Option<i32>) {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return (Some(code), None),
            Ok(WaitStatus::Signaled(_, sig, _)) => return (None, Some(sig as i32)),
            Err(Errno::EINTR) => continue,
            // Stopped/continued are not reported without WUNTRACED; ECHILD means someone else reaped it.
            _ => return (None, None),
        }
    }
}

/// Blocks until `pid` exits.
#[cfg(test)]
pub fn wait_blocking(pid: i32) -> (Option<i32>, Option<i32>) {
    wait_status(Pid::from_raw(pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::spawn::{spawn, SpawnOptions, Stdio};
    use crossbeam_channel::{unbounded, Sender};
    use std::time::Duration;

    struct Sink(Sender<Event>);
    impl EventSink for Sink {
        fn push(&self, event: Event) {
            let _ = self.0.send(event);
        }
    }

    #[test]
    fn kill_reports_the_signal_then_refuses() {
        let out = spawn(&SpawnOptions {
            file: "/bin/sleep".into(),
            args: vec!["sleep".into(), "30".into()],
            stdio: vec![Stdio::Ignore; 3],
            ..Default::default()
        })
        .unwrap();
        let (tx, rx) = unbounded();
        let p = Process::watch(out.pid.unwrap(), Arc::new(Sink(tx)), || ()).unwrap();
        p.kill(Signal::SIGTERM as i32).unwrap();
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            Event::Exit { code, signal } => {
                assert_eq!((code, signal), (None, Some(Signal::SIGTERM as i32)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.kill(Signal::SIGTERM as i32), Err(Errno::ESRCH));
    }
}
