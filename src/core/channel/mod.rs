//! One end of a Node IPC channel: a socket, a decoder on a reader thread, an ordered write queue, and the
//! NODE_HANDLE handshake (lib/internal/child_process.js) for the fds that travel on it.
//!
//! Symmetric by design: nothing here knows whether it is the parent's or the child's end, or about napi. Events go
//! to an [`EventSink`]; the napi layer's sink wakes JS once per batch, a test's sink is a plain queue.
//!
//! Handles, as Node does them: an fd leaves with its envelope in one sendmsg; until the peer answers
//! NODE_HANDLE_ACK every later write is held back, and a NODE_HANDLE_NACK sends envelope and fd again (at most
//! three times). A received fd waits for the next NODE_HANDLE envelope; the pair goes to JS exactly once and the
//! reader answers ACK, while an envelope without an fd is answered NACK and an fd without an envelope is closed.
//!
//! The channel is one type in five files: this one holds [`Channel`], what it reports and how it is made;
//! `read.rs` the read side (the JS thread's reads, the reader and burst threads, EOF); `write.rs` the ordered
//! write queue, its writer thread and the sending half of the handshake; `inbound.rs` what the reader does with
//! each decoded frame (pairing fds with their envelopes, answering the handshake, routing `newconn` replies);
//! `stats.rs` its counters (`stats()`), bumped by one-line hooks in the other three; `tests.rs` the tests of all.

mod inbound;
mod read;
mod stats;
#[cfg(test)]
mod tests;
mod write;

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use nix::errno::Errno;

use crate::core::error::SysError;
use crate::core::frame::{Decoder, Frame};
use crate::core::internal::NewconnReply;
use crate::core::pairing::Pairing;
use read::{Burst, ReadState, READ_BUFFER};
use write::WriteState;

pub use stats::{Snapshot, Stats};

/// What a channel reports, in the order it happened.
#[derive(Debug)]
pub enum Event {
    /// A decoded frame: json lines, advanced frames, or a decode error.
    Frame(Frame),
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
    /// A reader thread started with `spawn_reader(true)` found the socket idle and stopped; reading is the
    /// owner's again (see `read_ready`).
    ReaderIdle,
}

/// Where a channel's events go.
pub trait EventSink: Send + Sync + 'static {
    fn push(&self, event: Event);
    /// Called by a reader thread before each read: may block until the owner has caught up, which is the
    /// backpressure that stops the reader reading (the kernel then pushes back on the peer).
    fn reserve(&self) {}
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
    wake_writer: Condvar,
    /// Signalled each time the writer has finished a batch, for `wait_written`.
    written_cv: Condvar,
    reader: Mutex<ReadState>,
    /// The burst thread: started on first use, parked between bursts.
    burst: Mutex<Burst>,
    burst_cv: Condvar,
    /// Set once the reader has reported EOF.
    ended: Mutex<bool>,
    ended_cv: Condvar,
    /// Set once the peer is a cluster worker that connections are handed to.
    newconn_replies: OnceLock<Arc<dyn NewconnReplies>>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("sock", &self.sock)
            .finish_non_exhaustive()
    }
}

/// The result of one `write`: its sequence number and what is still queued behind the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub seq: u64,
    pub queued_bytes: usize,
}

fn thread_error(e: std::io::Error) -> SysError {
    SysError::new(Errno::from_raw(e.raw_os_error().unwrap_or(0)), "thread")
}

impl Channel {
    /// Takes ownership of `sock` and starts a reader thread that reads until EOF.
    // Unused by the napi parent, which polls on the JS thread; the core's plain entry point (tests, #7's runtime).
    #[allow(dead_code)]
    pub fn open(
        sock: OwnedFd,
        decoder: Decoder,
        sink: Arc<dyn EventSink>,
    ) -> Result<Arc<Channel>, SysError> {
        let channel = Channel::new(sock, decoder, sink);
        channel.spawn_reader()?;
        Ok(channel)
    }

    /// Takes ownership of `sock`; nothing reads until the owner calls `read_ready` or `spawn_reader`.
    pub fn new(sock: OwnedFd, decoder: Decoder, sink: Arc<dyn EventSink>) -> Arc<Channel> {
        let advanced = matches!(decoder, Decoder::Advanced(_));
        let stats = Arc::new(Stats::default());
        Arc::new(Channel {
            sock: Arc::new(sock),
            sink: Arc::new(stats::Counted {
                inner: sink,
                stats: stats.clone(),
            }),
            advanced,
            write: Mutex::new(WriteState::default()),
            wake_writer: Condvar::new(),
            written_cv: Condvar::new(),
            reader: Mutex::new(ReadState {
                decoder,
                pending_fd: Pairing::default(),
                buf: vec![0u8; READ_BUFFER],
                ended: false,
            }),
            burst: Mutex::new(Burst::default()),
            burst_cv: Condvar::new(),
            ended: Mutex::new(false),
            ended_cv: Condvar::new(),
            newconn_replies: OnceLock::new(),
            stats,
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
}
