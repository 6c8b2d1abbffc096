//! One end of a Node IPC channel: a socket, a decoder, an ordered write queue, and the NODE_HANDLE handshake
//! (lib/internal/child_process.js) for the fds that travel on it.
//!
//! Symmetric by design: nothing here knows whether it is the parent's or the child's end, or about napi. Events go
//! to an [`EventSink`]; the napi layer's sink wakes JS once per batch, a test's sink is a plain queue.
//!
//! Handles, as Node does them: an fd leaves with its envelope in one sendmsg; until the peer answers
//! NODE_HANDLE_ACK every later write is held back, and a NODE_HANDLE_NACK sends envelope and fd again (at most
//! three times). A received fd waits for the next NODE_HANDLE envelope; the pair goes to JS exactly once and the
//! reader answers ACK, while an envelope without an fd is answered NACK and an fd without an envelope is closed.
//!
//! What cannot be done at once on the owner's thread — reading a burst, writing what the socket did not take —
//! is done on the process's one reactor thread (os/reactor.rs), to which the channel is a [`Source`].
//!
//! The channel is one type in several files: this one holds [`Channel`], what it reports and how it is made;
//! `read.rs` the read side (the owner's reads, the reactor's bursts, EOF); `write.rs` the ordered write queue,
//! the reactor's writes and the sending half of the handshake; `inbound.rs` what the reader does with
//! each decoded frame (pairing fds with their envelopes, answering the handshake, routing `newconn` replies);
//! `memfd.rs` large advanced messages as memfds (core/memfd.rs); `handles.rs` handles pipelined between two forkline
//! ends;
//! `stats.rs` its counters (`stats()`), bumped by one-line hooks in the other three; `tests.rs` the tests of all.

mod handles;
mod inbound;
mod memfd;
mod read;
mod stats;
#[cfg(test)]
mod tests;
mod write;

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use nix::errno::Errno;

use crate::core::error::SysError;
use crate::core::frame::{Decoder, Frame};
use crate::core::internal::NewconnReply;
use crate::os::reactor::{self, Ready, Registration, Source};
use crate::os::sys;
use read::{Ended, ReactorRead, ReadState};
use write::WriteState;

pub use stats::{Snapshot, Stats};

/// What a channel reports, in the order it happened.
#[derive(Debug)]
pub enum Event {
    /// A decoded frame: json lines, advanced frames, or a decode error.
    Frame(Frame),
    /// One whole advanced frame that came as a memfd (memfd.rs): large, so the owner takes the Vec as it is.
    LargeFrame(Vec<u8>),
    /// A NODE_HANDLE envelope (one json line or one advanced frame) and the fd it carried.
    Handle { envelope: Frame, fd: OwnedFd },
    /// A read failed; EOF follows.
    ReadError(SysError),
    /// The peer closed its end (or we shut ours down). The channel's last event but for write progress.
    Eof,
    /// The child exited (pushed by the reaper onto the same queue, so it follows the messages read before it).
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Queued writes went out (or failed). On the same queue as the rest, so it outlives the channel's own end.
    Progress(WriteProgress),
    /// A burst handed to the reactor with `read_burst` is over (the socket went quiet); reading is the owner's
    /// again (see `read_ready`).
    ReaderIdle,
}

/// Where a channel's events go.
pub trait EventSink: Send + Sync + 'static {
    fn push(&self, event: Event);
    /// Asked by the reactor before it reads for the owner: false stops the reading (the kernel then pushes back
    /// on the peer) until the channel's `on_room` callback runs. Never blocks.
    fn has_room(&self) -> bool {
        true
    }
    /// Keeps `resume` and calls it once the owner has caught up (at once, if it already has).
    fn on_room(&self, resume: Box<dyn FnOnce() + Send>) {
        resume();
    }
}

/// Takes a cluster worker's answers to the connections handed to it (cluster/round_robin.rs).
pub trait NewconnReplies: Send + Sync + 'static {
    /// True if the reply answered one of ours (it is then consumed, not delivered).
    fn reply(&self, reply: NewconnReply) -> bool;
}

/// Which way a round of reading went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Nothing more is ready (or the last read did not fill the buffer).
    Idle,
    /// Every read filled the buffer: more is probably waiting.
    Busy,
    /// The stream ended and EOF has been reported.
    Ended,
}

/// How far the writer got: every write with `seq <= done` is on the wire; those up to `failed` never will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteProgress {
    pub done: u64,
    pub failed: u64,
    pub error: Option<SysError>,
    pub queued_bytes: usize,
}

/// One end of an IPC channel.
pub struct Channel {
    sock: Arc<OwnedFd>,
    sink: Arc<dyn EventSink>,
    advanced: bool,
    write: Mutex<WriteState>,
    /// Signalled each time the reactor has written, for `wait_written`.
    written_cv: Condvar,
    reader: Mutex<ReadState>,
    /// What the reactor reads for the owner: nothing, a burst, or everything.
    reactor_read: Mutex<ReactorRead>,
    /// Whether EOF has been reported, and what waits for it.
    ended: Mutex<Ended>,
    /// Our place in the reactor, made the first time the channel needs it.
    registration: OnceLock<Registration>,
    /// Set once the peer is a cluster worker that connections are handed to.
    newconn_replies: OnceLock<Arc<dyn NewconnReplies>>,
    stats: Arc<Stats>,
    /// Large messages as memfds (memfd.rs): who announced.
    memfd: memfd::MemfdState,
    /// Handles pipelined (handles.rs): who announced.
    pipeline: handles::PipelineState,
    /// The decoder's maxMessageSize, for messages that come as memfds.
    max_message: usize,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("sock", &self.sock)
            .finish_non_exhaustive()
    }
}

/// The result of one `write`: its sequence number, what is still queued behind the socket, and whether it waits
/// behind an unacknowledged handle (it leaves when the peer's ACK is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub seq: u64,
    pub queued_bytes: usize,
    pub held: bool,
}

fn reactor_error(errno: Errno) -> SysError {
    SysError::new(errno, "epoll_ctl")
}

impl Channel {
    /// Takes ownership of `sock` and has the reactor read it until EOF.
    // Unused by the napi ends, which poll on the JS thread; the core's plain entry point (tests).
    #[allow(dead_code)]
    pub fn open(
        sock: OwnedFd,
        decoder: Decoder,
        sink: Arc<dyn EventSink>,
    ) -> Result<Arc<Channel>, SysError> {
        let channel = Channel::new(sock, decoder, sink);
        channel.read_all()?;
        Ok(channel)
    }

    /// Takes ownership of `sock`; nothing reads until the owner calls `read_ready`, `read_burst` or `read_all`.
    pub fn new(sock: OwnedFd, decoder: Decoder, sink: Arc<dyn EventSink>) -> Arc<Channel> {
        let advanced = matches!(decoder, Decoder::Advanced(_));
        let stats = Arc::new(Stats::default());
        let max_message = decoder.max();
        Arc::new(Channel {
            sock: Arc::new(sock),
            sink: Arc::new(stats::Counted {
                inner: sink,
                stats: stats.clone(),
            }),
            advanced,
            write: Mutex::new(WriteState::default()),
            written_cv: Condvar::new(),
            reader: Mutex::new(ReadState::new(decoder)),
            reactor_read: Mutex::new(ReactorRead::default()),
            ended: Mutex::new(Ended::default()),
            registration: OnceLock::new(),
            newconn_replies: OnceLock::new(),
            stats,
            memfd: memfd::MemfdState::default(),
            pipeline: handles::PipelineState::default(),
            max_message,
        })
    }

    /// Routes the peer's `newconn` replies to `replies` from now on. The handshake's ACK/NACKs are then kept
    /// from the owner too: for a worker they come once per connection and nobody listens for them.
    pub fn set_newconn_replies(&self, replies: Arc<dyn NewconnReplies>) {
        let _ = self.newconn_replies.set(replies);
    }

    /// Whether the channel speaks Node's 'advanced' (V8) serialization.
    pub fn is_advanced(&self) -> bool {
        self.advanced
    }

    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }

    /// The channel's registration with the reactor, made on first use.
    fn registration(self: &Arc<Self>) -> Result<&Registration, SysError> {
        if let Some(reg) = self.registration.get() {
            return Ok(reg);
        }
        let me: Arc<dyn Source> = self.clone();
        let reg =
            Registration::new(self.sock.clone(), Arc::downgrade(&me)).map_err(reactor_error)?;
        // Two threads may race to register: the loser's registration is dropped (and deregistered) here.
        let _ = self.registration.set(reg);
        Ok(self.registration.get().expect("set above"))
    }

    /// Whether the peer's end is closed everywhere (its bytes may still wait to be read): EOF is then certain.
    pub fn peer_hung_up(&self) -> bool {
        use std::os::fd::AsFd;
        sys::peer_hung_up(self.sock.as_fd())
    }

    /// Runs `f` once EOF has been reported, or after `timeout` if it has not been by then; at once if it has.
    /// For a child's exit, which Node reports after the channel's 'disconnect'.
    pub fn after_end(self: &Arc<Self>, timeout: Duration, f: impl FnOnce() + Send + 'static) {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        if ended.ended {
            drop(ended);
            return f();
        }
        let once = Arc::new(Mutex::new(Some(f)));
        let run = move || {
            let f = once.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(f) = f {
                f();
            }
        };
        // Without a reactor nothing can time out: then do not wait at all.
        let Ok(timer) = reactor::after(timeout, run.clone()) else {
            drop(ended);
            return run();
        };
        // EOF first (the common case): the timer goes, so that it holds neither `f` nor the reactor's thread.
        ended.waiters.push(Box::new(move || {
            reactor::cancel(timer);
            run();
        }));
    }
}

impl Source for Channel {
    fn ready(self: Arc<Self>, ready: Ready) {
        if ready.writable {
            self.on_writable();
        }
        if ready.readable {
            self.on_readable();
        }
    }
}
