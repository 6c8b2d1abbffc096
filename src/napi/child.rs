//! `NativeChild`, the native half of a forked ChildProcess (the parent's end): spawns the child, watches its
//! process and holds its channel and stdio pipes.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::{Buffer, Either, Function};

use crate::napi::payload::Line;
use napi::{Env, Error, Result, Status};
use napi_derive::napi;

use crate::core::channel::{Channel, Event, EventSink};
use crate::core::error::SysError;
use crate::core::frame::Decoder;
use crate::napi::delivery::Delivery;
use crate::napi::error::sys_error;
use crate::napi::event::Polled;
use crate::napi::js_call::DirectCall;
use crate::napi::loop_hold::{self, Hold};
use crate::napi::side::{start_reading, ChannelSide, DEFAULT_MAX_MESSAGE_SIZE};
use crate::napi::stats::ChannelStats;
use crate::napi::wake;
use crate::os::process::Process;
use crate::os::spawn::{self, SpawnOptions, Stdio};

/// How long a child's exit waits for its channel's EOF to be reported first, when a grandchild may hold the
/// channel open (the EOF may then never come).
const EXIT_AFTER_EOF_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
/// The same when the child's end is closed everywhere: the EOF comes once the bytes before it are read, which takes
/// as long as the owner takes to read them (a parent busy in JS takes a while), so this only guards against a bug.
const EXIT_AFTER_HANGUP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One entry of the stdio array, already normalised by lib/child_process.js.
#[napi(object)]
pub struct StdioSlot {
    /// 'pipe' | 'ipc' | 'ignore' | 'fd'
    pub kind: String,
    pub fd: Option<i32>,
}

/// What lib/child_process.js hands over after Node's option juggling and validation.
#[napi(object)]
pub struct NativeSpawnOptions {
    pub file: String,
    /// The full argv, argv[0] included.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub stdio: Vec<StdioSlot>,
    pub detached: Option<bool>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// 'json' | 'advanced'
    pub serialization: Option<String>,
    pub max_message_size: Option<f64>,
    /// µs to keep polling after each send and receive (0: never; absent: while it pays).
    pub busy_poll: Option<u32>,
}

/// The native half of a forked child: its process, its channel and its stdio pipes.
#[napi]
pub struct NativeChild {
    pub(super) side: ChannelSide,
    process: Option<Arc<Process>>,
    spawn_error: Option<SysError>,
    pipes: Vec<Option<OwnedFd>>,
    process_ref: Option<Hold>,
}

#[napi]
impl NativeChild {
    /// Spawns the child. `onWake` is called (with no arguments) whenever `poll()` has something.
    #[napi(factory)]
    pub fn spawn(
        env: Env,
        options: NativeSpawnOptions,
        on_wake: Function<(), ()>,
    ) -> Result<NativeChild> {
        let stdio = options
            .stdio
            .iter()
            .map(|s| match (s.kind.as_str(), s.fd) {
                ("pipe", _) => Ok(Stdio::Pipe),
                ("ipc", _) => Ok(Stdio::Ipc),
                ("ignore", _) => Ok(Stdio::Ignore),
                ("fd", Some(fd)) if fd >= 0 => Ok(Stdio::Fd(fd)),
                (kind, _) => Err(Error::new(
                    Status::InvalidArg,
                    format!("bad stdio slot {kind:?}"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        // Only a child on forkline's runtime (lib/runtime_env.js) is answered when it announces memfds: a Node child
        // that sent the same internal message by hand must never be sent one.
        let runtime_child = options
            .env
            .iter()
            .any(|e| e.starts_with("FORKLINE_CHANNEL_FD="));
        let opts = SpawnOptions {
            file: options.file,
            args: options.args,
            env: options.env,
            cwd: options.cwd,
            stdio,
            detached: options.detached.unwrap_or(false),
            uid: options.uid,
            gid: options.gid,
        };
        let advanced = options.serialization.as_deref() == Some("advanced");
        let max = options
            .max_message_size
            .map_or(DEFAULT_MAX_MESSAGE_SIZE, |m| m as usize);

        let call = Rc::new(DirectCall::new(&env, &on_wake)?);
        let (waker, wakeable) = wake::register(&env, call.clone())?;
        let delivery = Arc::new(Delivery::new(waker));
        let sink: Arc<dyn EventSink> = delivery.clone();

        let spawned = spawn::spawn(&opts).map_err(sys_error)?;
        let channel = spawned
            .ipc
            .map(|sock| Channel::new(sock, Decoder::new(advanced, max), sink.clone()));
        if let Some(channel) = channel
            .as_ref()
            .filter(|_| runtime_child && crate::napi::side::memfd_enabled())
        {
            channel.answer_memfd();
        }
        if let Some(channel) = channel
            .as_ref()
            .filter(|_| runtime_child && crate::napi::side::handle_pipeline_enabled())
        {
            channel.answer_pipeline();
        }
        let busy_poll = crate::napi::busy_poll::window_of(options.busy_poll);
        let reading = match &channel {
            Some(channel) => match start_reading(&env, channel, &delivery, &call, busy_poll) {
                Ok(reading) => Some(reading),
                Err(e) => {
                    if let Some(pid) = spawned.pid {
                        let pid = nix::unistd::Pid::from_raw(pid);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
                        let _ = nix::sys::wait::waitpid(pid, None);
                    }
                    return Err(sys_error(e));
                }
            },
            None => None,
        };
        let process = match spawned.pid {
            Some(pid) => {
                // 'disconnect' comes before 'exit': the child is gone, so its end of the channel is closed and EOF
                // will come once what it wrote is read, unless a grandchild kept a copy (then wait only a little).
                let ended = channel.as_ref().map(Arc::downgrade);
                let on_exit = move |code, signal| {
                    let exit = move || sink.push(Event::Exit { code, signal });
                    match ended.and_then(|weak| weak.upgrade()) {
                        Some(channel) => {
                            let wait = if channel.peer_hung_up() {
                                EXIT_AFTER_HANGUP_WAIT
                            } else {
                                EXIT_AFTER_EOF_WAIT
                            };
                            channel.after_end(wait, exit)
                        }
                        None => exit(),
                    }
                };
                Some(Process::watch(pid, on_exit).map_err(sys_error)?)
            }
            None => None,
        };
        let mut child = NativeChild {
            side: ChannelSide {
                delivery,
                stats: channel.as_ref().map(|c| c.stats()).unwrap_or_default(),
                channel,
                channel_ref: None,
                reading: reading.unwrap_or_default(),
                passes_handles: Default::default(),
                wakeable: Some(wakeable),
            },
            process,
            spawn_error: spawned.error,
            pipes: spawned.pipes,
            process_ref: None,
        };
        child.ref_process(env)?;
        child.ref_channel(env)?;
        Ok(child)
    }

    #[napi(getter)]
    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().map(|p| p.pid())
    }

    /// libuv-style (negative) errno of a spawn that failed the way Node reports asynchronously.
    #[napi(getter)]
    pub fn spawn_errno(&self) -> Option<i32> {
        self.spawn_error.map(|e| e.uv_errno())
    }

    #[napi(getter)]
    pub fn channel_fd(&self) -> Option<i32> {
        self.side.fd()
    }

    /// Hands our ends of the 'pipe' slots to JS, which wraps them in net.Sockets and owns them from then on.
    #[napi]
    pub fn take_stdio(&mut self) -> Vec<Option<i32>> {
        self.pipes
            .iter_mut()
            .map(|p| p.take().map(IntoRawFd::into_raw_fd))
            .collect()
    }

    /// Everything that happened since the last call, in order: json lines as strings, the rest as events.
    #[napi(ts_return_type = "Array<string | ChannelEvent>")]
    pub fn poll(&self) -> Vec<Polled> {
        self.side.poll()
    }

    /// Queues json text (one or more messages, newline-separated; the last newline is added here) or advanced frames
    /// for the child. Returns the bytes still queued (0: all written now), or -errno.
    #[napi(ts_args_type = "data: string | Buffer")]
    pub fn write(&self, data: Either<Line, Buffer>) -> f64 {
        self.side.submit(data, None)
    }

    /// `write` for json text alone: one fewer conversion than `string | Buffer`, whose dispatch makes (and drops)
    /// an error object on every call.
    #[napi(ts_args_type = "data: string")]
    pub fn write_line(&self, data: Line) -> f64 {
        self.side.submit(Either::A(data), None)
    }

    /// Sends a NODE_HANDLE envelope with `fd` (duplicated: the caller keeps its own). Later writes wait for the
    /// peer's ACK. Returns like `write`.
    #[napi(ts_args_type = "envelope: string | Buffer, fd: number")]
    pub fn write_handle(&self, envelope: Either<Line, Buffer>, fd: i32) -> f64 {
        self.side.submit(envelope, Some(fd))
    }

    /// The channel's counters (still there once it is closed).
    #[napi]
    pub fn stats(&self) -> ChannelStats {
        self.side.stats()
    }

    /// How many writes wait behind a handle sent to the child that waits for its ACK, or -1 if a write now would
    /// not wait (pipelined with a runtime peer: only behind a handle past the window). send()'s return value then
    /// follows Node's `_handleQueue.length === 1`.
    #[napi]
    pub fn held_writes(&self) -> i64 {
        self.side.held_writes()
    }

    /// Closes the channel once queued writes are out (Node's disconnect()); the reader then reports 'eof'.
    #[napi]
    pub fn close_channel(&self) {
        self.side.close();
    }

    /// Drops our hold on the channel after its EOF, so its socket closes now rather than at garbage collection
    /// (the reactor holds it only while it has reading or writing to do for it).
    #[napi]
    pub fn release_channel(&mut self) {
        self.side.release();
    }

    /// Everything the child will report has been reported (JS emitted 'close'): lets go of the channel and of what
    /// keeps the JS object reachable from here, so that both can be collected, as Node's are.
    #[napi]
    pub fn retire(&mut self) {
        self.side.retire();
    }

    /// Sends a signal: 0 on success, else -errno (ESRCH once the child is gone).
    #[napi]
    pub fn kill(&self, signal: i32) -> i32 {
        match &self.process {
            Some(p) => p.kill(signal).map_or_else(|e| -(e as i32), |()| 0),
            None => -nix::libc::ESRCH,
        }
    }

    /// While the process is ref'd and alive, the event loop stays alive (Node's subprocess.ref()).
    #[napi]
    pub fn ref_process(&mut self, env: Env) -> Result<()> {
        if self.process_ref.is_none() && self.process.is_some() {
            self.process_ref = Some(loop_hold::hold(&env)?);
        }
        Ok(())
    }

    #[napi]
    pub fn unref_process(&mut self) {
        self.process_ref = None;
    }

    /// While the channel is ref'd and open, the event loop stays alive (Node's subprocess.channel.ref()).
    #[napi]
    pub fn ref_channel(&mut self, env: Env) -> Result<()> {
        self.side.ref_channel(&env)
    }

    #[napi]
    pub fn unref_channel(&mut self) {
        self.side.unref_channel();
    }
}
