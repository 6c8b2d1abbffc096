//! The napi surface: `NativeChild`, the native half of a forked ChildProcess. Everything below this file is plain
//! Rust (see core/ and os/), testable with `cargo test` alone.

#![deny(clippy::all)]

mod cluster;
mod core;
mod delivery;
mod js_call;
mod os;
mod runtime;
mod uv;

use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::Arc;

use napi::bindgen_prelude::ToNapiValue;
use napi::bindgen_prelude::{Buffer, Either, Function, FunctionRef};
use napi::{sys as napi_sys, Env, Error, Result, Status};
use napi_derive::napi;

use crate::core::channel::{Channel, Event, EventSink, ReadOutcome, WriteProgress};
use crate::core::error::SysError;
use crate::core::frame::{Decoder, Frame};
use crate::delivery::{Delivery, KeepAlive};
use crate::os::process::Process;
use crate::os::spawn::{SpawnOptions, Stdio};
use crate::os::{spawn, sys};

/// Default cap on one message: V8's longest string is just under 512 MiB, so nothing larger could be delivered.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 512 * 1024 * 1024;

/// How long a child's exit waits for its channel's EOF to be reported first.
const EXIT_AFTER_EOF_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// One entry of the stdio array, already normalised by index.js.
#[napi(object)]
pub struct StdioSlot {
    /// 'pipe' | 'ipc' | 'ignore' | 'fd'
    pub kind: String,
    pub fd: Option<i32>,
}

/// What index.js hands over after Node's option juggling and validation.
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
}

/// Text for JS. Json lines are nearly always ASCII, and then V8 takes them as Latin-1 with a plain copy instead of
/// decoding UTF-8 (the core has already validated the text).
pub struct Text(String);

impl ToNapiValue for Text {
    unsafe fn to_napi_value(env: napi_sys::napi_env, val: Self) -> Result<napi_sys::napi_value> {
        let text = val.0;
        if !text.is_ascii() {
            // SAFETY: forwarded with the caller's guarantees (a live env on the JS thread).
            return unsafe { String::to_napi_value(env, text) };
        }
        let mut out = std::ptr::null_mut();
        // SAFETY: ASCII is valid Latin-1; the pointer and length describe `text`, which outlives the call.
        let status = unsafe {
            napi_sys::napi_create_string_latin1(
                env,
                text.as_ptr().cast(),
                text.len() as isize,
                &mut out,
            )
        };
        if status == napi_sys::Status::napi_ok {
            Ok(out)
        } else {
            Err(Error::new(Status::from(status), "cannot create a string"))
        }
    }
}

/// Bytes for JS, copied into a Buffer that V8 allocates. An external Buffer over our Vec (napi-rs's `Buffer`) would
/// save the copy, but its memory is accounted as external and frees only with its finalizer: at one 1 MB frame per
/// message it kept V8's major collector busy (a third of a child's CPU on the advanced 1 MB echo).
pub struct Bytes(Vec<u8>);

/// From this size on, a batch goes to JS as an external Buffer over our Vec after all: a copy of many megabytes
/// costs more than the finalizer, and such batches come too seldom to keep the collector busy.
const EXTERNAL_BYTES_FROM: usize = 4 * 1024 * 1024;

impl ToNapiValue for Bytes {
    unsafe fn to_napi_value(env: napi_sys::napi_env, val: Self) -> Result<napi_sys::napi_value> {
        if val.0.len() >= EXTERNAL_BYTES_FROM {
            // SAFETY: `env` is the live env napi-rs handed us for this conversion.
            return unsafe { Buffer::to_napi_value(env, Buffer::from(val.0)) };
        }
        let mut out = std::ptr::null_mut();
        // SAFETY: the pointer and length describe `val.0`, which outlives the call; napi copies the bytes.
        let status = unsafe {
            napi_sys::napi_create_buffer_copy(
                env,
                val.0.len(),
                val.0.as_ptr().cast(),
                std::ptr::null_mut(),
                &mut out,
            )
        };
        if status == napi_sys::Status::napi_ok {
            Ok(out)
        } else {
            Err(Error::new(Status::from(status), "cannot create a buffer"))
        }
    }
}

/// One event for index.js. `kind` says which fields are set:
/// 'lines' text · 'frames' bytes (length-prefixed advanced frames) · 'error' code, message · 'readError' code, errno, syscall · 'eof' ·
/// 'handle' text or bytes (one NODE_HANDLE envelope) and fd, which JS now owns · 'exit' exitCode, signal · 'written' seq, failed, queued (+ code, errno, syscall when writes failed).
#[napi(object, object_from_js = false)]
pub struct ChannelEvent {
    pub kind: String,
    pub text: Option<Text>,
    pub bytes: Option<Bytes>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub errno: Option<i32>,
    pub syscall: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub seq: Option<f64>,
    pub failed: Option<f64>,
    pub queued: Option<f64>,
    /// A received fd, now owned by JS (kind 'handle').
    pub fd: Option<i32>,
}

impl ChannelEvent {
    fn new(kind: &str) -> Self {
        ChannelEvent {
            kind: kind.into(),
            text: None,
            bytes: None,
            code: None,
            message: None,
            errno: None,
            syscall: None,
            exit_code: None,
            signal: None,
            seq: None,
            failed: None,
            queued: None,
            fd: None,
        }
    }

    fn sys(kind: &str, err: SysError) -> Self {
        ChannelEvent {
            code: Some(err.code()),
            errno: Some(err.uv_errno()),
            syscall: Some(err.syscall.into()),
            ..ChannelEvent::new(kind)
        }
    }

    fn progress(p: WriteProgress) -> Self {
        let base = match p.error {
            Some(err) => ChannelEvent::sys("written", err),
            None => ChannelEvent::new("written"),
        };
        ChannelEvent {
            seq: Some(p.done as f64),
            failed: Some(p.failed as f64),
            queued: Some(p.queued_bytes as f64),
            ..base
        }
    }
}

impl From<Event> for ChannelEvent {
    fn from(event: Event) -> Self {
        match event {
            Event::Frame(Frame::Lines(text)) => ChannelEvent {
                text: Some(Text(text)),
                ..ChannelEvent::new("lines")
            },
            Event::Frame(Frame::Frames(bytes)) => ChannelEvent {
                bytes: Some(Bytes(bytes)),
                ..ChannelEvent::new("frames")
            },
            Event::Frame(Frame::Error { code, message }) => ChannelEvent {
                code: Some(code.as_str().into()),
                message: Some(message),
                ..ChannelEvent::new("error")
            },
            Event::Handle { envelope, fd } => {
                let base = ChannelEvent {
                    fd: Some(fd.into_raw_fd()),
                    ..ChannelEvent::new("handle")
                };
                match envelope {
                    Frame::Lines(text) => ChannelEvent {
                        text: Some(Text(text)),
                        ..base
                    },
                    Frame::Frames(bytes) => ChannelEvent {
                        bytes: Some(Bytes(bytes)),
                        ..base
                    },
                    Frame::Error { .. } => base,
                }
            }
            Event::ReadError(err) => ChannelEvent::sys("readError", err),
            Event::Eof => ChannelEvent::new("eof"),
            Event::Exit { code, signal } => ChannelEvent {
                exit_code: code,
                signal,
                ..ChannelEvent::new("exit")
            },
            Event::Progress(p) => ChannelEvent::progress(p),
            // Handled in `poll`; never reaches JS.
            Event::ReaderIdle => ChannelEvent::new("idle"),
        }
    }
}

/// A system error for JS to rebuild as Node's ErrnoException: the message is just its code (e.g. `E2BIG`).
pub(crate) fn sys_error(err: SysError) -> Error {
    Error::new(Status::GenericFailure, err.code())
}

/// What kind of socket a received fd is ('tcp' | 'pipe' | 'udp' | 'other'), to rebuild Node's Native handles.
#[napi]
pub fn socket_kind(fd: i32) -> &'static str {
    if fd < 0 {
        return "other";
    }
    // SAFETY: borrowed for one getsockopt/getsockname; JS owns the fd and keeps it open across this call.
    sys::socket_kind(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
}

/// Reads the channel on the JS thread while traffic is light: one wake-up per message, as Node's own channel has.
/// A read that fills the whole buffer hands the channel to a reader thread, which reads off the JS thread in big
/// batches until the socket goes quiet and then hands it back. Without libuv at hand a reader thread does it all.
pub(crate) fn start_reading(
    env: &Env,
    channel: &Arc<Channel>,
    delivery: &Arc<Delivery>,
    on_wake: &Function<(), ()>,
) -> std::result::Result<Option<uv::Poll>, SysError> {
    let direct = js_call::DirectCall::new(env, on_wake).ok();
    let (ch, delivery) = (channel.clone(), delivery.clone());
    let on_readable = Box::new(move |stop: &dyn Fn()| {
        let mut outcome = ReadOutcome::Idle;
        let pending = delivery.quietly(|| outcome = ch.read_ready(1));
        match outcome {
            ReadOutcome::Idle => {}
            ReadOutcome::Ended => stop(),
            // Stop before JS runs below: a quick burst may already be over, and JS then starts polling again.
            // Polling goes on on the JS thread only if no reader thread could start.
            ReadOutcome::Busy => {
                if ch.read_burst().is_ok() {
                    stop();
                }
            }
        }
        if pending {
            match &direct {
                Some(direct) => direct.call(),
                None => delivery.push_wake(),
            }
        }
    });
    let poller = env
        .get_uv_event_loop()
        .ok()
        .and_then(|uv_loop| uv::Poll::new(uv_loop.cast(), channel.raw_fd(), on_readable));
    match poller {
        Some(poller) => {
            poller.start();
            Ok(Some(poller))
        }
        None => {
            channel.spawn_reader()?;
            Ok(None)
        }
    }
}

/// Everything that happened since the last call, in order, for either end's `poll`.
/// Json lines, the hot path, arrive as bare strings: no event object to build for them.
pub(crate) type Polled = Either<Text, ChannelEvent>;

/// What either end's napi class holds of its channel: the channel, its event queue, the JS-thread poller and
/// the keep-alive of `ref()`. NativeChild (the parent's end) and NativeChannel (runtime.rs, the child's) delegate
/// their channel methods here.
pub(crate) struct ChannelSide {
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) channel: Option<Arc<Channel>>,
    pub(crate) wake_fn: FunctionRef<(), ()>,
    pub(crate) channel_ref: Option<KeepAlive>,
    /// Watches the channel on the JS thread while no reader thread has it.
    pub(crate) poller: Option<uv::Poll>,
}

impl ChannelSide {
    pub(crate) fn fd(&self) -> Option<i32> {
        self.channel.as_ref().map(|c| c.raw_fd())
    }

    pub(crate) fn poll(&self) -> Vec<Polled> {
        let mut out = Vec::new();
        for event in self.delivery.drain() {
            match event {
                // A burst is over: the JS thread reads again, in order after everything the thread read.
                Event::ReaderIdle => {
                    if let Some(poller) = &self.poller {
                        poller.start();
                    }
                }
                Event::Frame(Frame::Lines(text)) => out.push(Either::A(Text(text))),
                other => out.push(Either::B(ChannelEvent::from(other))),
            }
        }
        out
    }

    /// Queues a write (with an fd for a NODE_HANDLE envelope). Returns the bytes still queued (0: all written
    /// now), or -errno.
    pub(crate) fn submit(&self, data: &Either<String, Buffer>, fd: Option<i32>) -> f64 {
        let Some(channel) = &self.channel else {
            return -(nix::libc::EPIPE as f64);
        };
        let bytes: &[u8] = match data {
            Either::A(s) => s.as_bytes(),
            Either::B(b) => b,
        };
        let result = match fd {
            Some(fd) if fd < 0 => return -(nix::libc::EBADF as f64),
            Some(fd) => {
                // SAFETY: borrowed only for this call, during which JS keeps the handle (and fd) open.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                channel.write_handle(bytes, fd)
            }
            None => channel.write(bytes),
        };
        match result {
            Ok(w) => w.queued_bytes as f64,
            Err(e) => e.uv_errno() as f64,
        }
    }

    pub(crate) fn close(&self) {
        if let Some(c) = &self.channel {
            c.close();
        }
    }

    pub(crate) fn release(&mut self) {
        self.poller = None;
        self.channel_ref = None;
        self.channel = None;
    }

    pub(crate) fn ref_channel(&mut self, env: &Env) -> Result<()> {
        if self.channel_ref.is_none() && self.channel.is_some() {
            self.channel_ref = Some(keep_alive(&self.wake_fn, env)?);
        }
        Ok(())
    }

    pub(crate) fn unref_channel(&mut self) {
        self.channel_ref = None;
    }
}

/// A strong hold on the wake function, whose only job is to keep the event loop alive while it exists.
pub(crate) fn keep_alive(wake_fn: &FunctionRef<(), ()>, env: &Env) -> Result<KeepAlive> {
    wake_fn
        .borrow_back(env)?
        .build_threadsafe_function::<()>()
        .callee_handled::<false>()
        .build()
}

/// The native half of a forked child: its process, its channel and its stdio pipes.
#[napi]
pub struct NativeChild {
    side: ChannelSide,
    process: Option<Arc<Process>>,
    spawn_error: Option<SysError>,
    pipes: Vec<Option<OwnedFd>>,
    process_ref: Option<KeepAlive>,
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

        let wake = on_wake
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build()?;
        let wake_fn = on_wake.create_ref()?;
        let delivery = Arc::new(Delivery::new(wake));
        let sink: Arc<dyn EventSink> = delivery.clone();

        let spawned = spawn::spawn(&opts).map_err(sys_error)?;
        let channel = spawned
            .ipc
            .map(|sock| Channel::new(sock, Decoder::new(advanced, max), sink.clone()));
        let poller = match &channel {
            Some(channel) => match start_reading(&env, channel, &delivery, &on_wake) {
                Ok(poller) => poller,
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
                // The child is gone, so its end of the channel is closed and EOF is moments away, unless a
                // grandchild kept a copy: wait for it a little, not forever.
                let ended = channel.as_ref().map(Arc::downgrade);
                let before_exit = move || {
                    if let Some(channel) = ended.and_then(|weak| weak.upgrade()) {
                        channel.wait_ended(EXIT_AFTER_EOF_WAIT);
                    }
                };
                Some(Process::watch(pid, sink, before_exit).map_err(sys_error)?)
            }
            None => None,
        };
        let mut child = NativeChild {
            side: ChannelSide {
                delivery,
                channel,
                wake_fn,
                channel_ref: None,
                poller,
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

    /// Queues bytes for the child. Returns the bytes still queued (0: all written now), or -errno.
    #[napi]
    pub fn write(&self, data: Either<String, Buffer>) -> f64 {
        self.side.submit(&data, None)
    }

    /// Sends a NODE_HANDLE envelope with `fd` (duplicated: the caller keeps its own). Later writes wait for the
    /// peer's ACK. Returns like `write`.
    #[napi]
    pub fn write_handle(&self, envelope: Either<String, Buffer>, fd: i32) -> f64 {
        self.side.submit(&envelope, Some(fd))
    }

    /// Closes the channel once queued writes are out (Node's disconnect()); the reader then reports 'eof'.
    #[napi]
    pub fn close_channel(&self) {
        self.side.close();
    }

    /// Drops our hold on the channel after its EOF, so its socket closes now rather than at garbage collection
    /// (the reader and writer threads hold it only until they end).
    #[napi]
    pub fn release_channel(&mut self) {
        self.side.release();
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
            self.process_ref = Some(keep_alive(&self.side.wake_fn, &env)?);
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

/// A worker's `queryServer`, as index.js normalises it.
#[napi(object)]
pub struct ServerSpec {
    /// Node's handle key: `${address}:${port}:${addressType}:${fd}:${index}`.
    pub key: String,
    /// 'rr' | 'none' | 'reuseport'
    pub policy: String,
    /// 'tcp' | 'pipe' | 'udp4' | 'udp6'
    pub kind: String,
    pub address: Option<String>,
    pub port: Option<i32>,
    pub fd: Option<i32>,
    pub flags: Option<u32>,
    pub backlog: Option<i32>,
    pub readable_all: Option<bool>,
    pub writable_all: Option<bool>,
}

/// `getsockname()` of a round-robin TCP server, as Node's `sockname` reply carries it.
#[napi(object)]
pub struct SockName {
    pub address: String,
    pub family: String,
    pub port: u32,
}

/// The primary's side of one cluster server key: its sockets and, under round-robin, accepting and handing out
/// connections off the JS thread (src/cluster).
#[napi]
pub struct NativeServer {
    server: cluster::Server,
}

#[napi]
impl NativeServer {
    /// Makes the server's socket; throws an Error whose message is the errno code (e.g. `EADDRINUSE`).
    #[napi(factory)]
    pub fn open(spec: ServerSpec) -> Result<NativeServer> {
        use cluster::listen::{Kind, Spec, DEFAULT_BACKLOG};
        let kind = match spec.kind.as_str() {
            "tcp" => Kind::Tcp,
            "pipe" => Kind::Pipe,
            "udp4" => Kind::Udp4,
            "udp6" => Kind::Udp6,
            other => {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!("bad kind {other:?}"),
                ))
            }
        };
        let policy = match spec.policy.as_str() {
            "rr" => cluster::Policy::RoundRobin,
            "none" => cluster::Policy::Shared,
            "reuseport" => cluster::Policy::ReusePort,
            other => {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!("bad policy {other:?}"),
                ))
            }
        };
        let port = spec.port.unwrap_or(0);
        let listen_spec = Spec {
            kind,
            address: spec.address,
            port: u16::try_from(port.max(0))
                .map_err(|_| sys_error(SysError::new(nix::errno::Errno::EINVAL, "bind")))?,
            fd: spec.fd.filter(|fd| *fd >= 0),
            flags: spec.flags.unwrap_or(0),
            backlog: spec.backlog.unwrap_or(DEFAULT_BACKLOG),
            readable_all: spec.readable_all.unwrap_or(false),
            writable_all: spec.writable_all.unwrap_or(false),
        };
        let server = cluster::Server::open(&spec.key, listen_spec, policy).map_err(sys_error)?;
        Ok(NativeServer { server })
    }

    /// The policy in effect ('rr' | 'none' | 'reuseport'): UDP is always shared, a path never reuse-port.
    #[napi(getter)]
    pub fn policy(&self) -> &'static str {
        match self.server.policy() {
            cluster::Policy::RoundRobin => "rr",
            cluster::Policy::Shared => "none",
            cluster::Policy::ReusePort => "reuseport",
        }
    }

    /// Adds a worker; returns the fd to send it with the reply (ours: `writeHandle` sends a copy), or null under
    /// round-robin. Throws like `open`.
    #[napi]
    pub fn add(&self, worker_id: u32, worker: &NativeChild) -> Result<Option<i32>> {
        self.server
            .add(worker_id, worker.side.channel.clone())
            .map_err(sys_error)
    }

    /// Removes a worker; true when it was the last and the server is closed.
    #[napi]
    pub fn remove(&self, worker_id: u32) -> bool {
        self.server.remove(worker_id)
    }

    #[napi]
    pub fn sockname(&self) -> Option<SockName> {
        self.server.sockname().map(|n| SockName {
            address: n.address,
            family: n.family.into(),
            port: n.port.into(),
        })
    }
}
