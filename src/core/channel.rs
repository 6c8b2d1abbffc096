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

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

use nix::errno::Errno;

use crate::core::error::{Code, SysError};
use crate::core::frame::{Decoder, Frame, FrameSink};
use crate::core::internal::{self, Handshake, NewconnReply};
use crate::sys;

/// Read size per recvmsg. Deno's ReadBuffer starts at 64 KiB; the perfect parent of shared/perf-limits.md reads
/// 256 KiB, and a message that fits is read in one go on the JS thread (a read that fills the buffer counts as a
/// burst and goes to the burst thread).
const READ_BUFFER: usize = 256 * 1024;

/// Most iovecs the writer hands one sendmsg (Linux's UIO_MAXIOV is 1024).
const MAX_IOV: usize = 256;

/// Node's MAX_HANDLE_RETRANSMISSIONS: NACKs answered by sending the handle again before giving up.
const MAX_HANDLE_RETRANSMISSIONS: u32 = 3;

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

/// The read side's state: one reader at a time, on whichever thread reads.
struct ReadState {
    decoder: Decoder,
    /// An fd waiting for its NODE_HANDLE envelope.
    pending_fd: Option<OwnedFd>,
    buf: Vec<u8>,
    ended: bool,
}

#[derive(Debug, Default)]
struct Burst {
    started: bool,
    requested: bool,
}

/// How long a reader thread started for a burst keeps waiting for more before handing reading back.
const READER_IDLE_MS: i32 = 2;
/// Reads a reader thread makes between checks for room in the owner's queue.
const READS_PER_TURN: usize = 16;

/// How far the writer got: every write with `seq <= done` is on the wire; those up to `failed` never will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteProgress {
    pub done: u64,
    pub failed: u64,
    pub error: Option<SysError>,
    pub queued_bytes: usize,
}

#[derive(Debug)]
struct Chunk {
    data: Vec<u8>,
    sent: usize,
    /// 0 for the channel's own messages (ACK/NACK, retransmissions, cluster hand-offs), which complete no write of
    /// the owner's and do not count in its `queued_bytes`.
    seq: u64,
    /// Sent as SCM_RIGHTS with the chunk's first byte.
    fd: Option<Arc<OwnedFd>>,
}

impl Chunk {
    fn new(data: Vec<u8>, seq: u64, fd: Option<Arc<OwnedFd>>) -> Self {
        Chunk {
            data,
            sent: 0,
            seq,
            fd,
        }
    }
}

/// A handle on the wire whose ACK has not come yet: kept whole for a retransmission.
#[derive(Debug)]
struct Unacked {
    envelope: Vec<u8>,
    fd: Arc<OwnedFd>,
    retransmissions: u32,
}

#[derive(Debug, Default)]
struct WriteState {
    /// Ready to go, in order.
    queue: VecDeque<Chunk>,
    /// Written after a handle whose ACK has not come yet: they wait, in order.
    held: VecDeque<Chunk>,
    unacked: Option<Unacked>,
    queued_bytes: usize,
    /// The writer thread holds chunks outside the lock while it sends; direct writes must wait their turn.
    in_flight: bool,
    writer_started: bool,
    /// close() was called (or the peer is gone): shut down once nothing is left to send.
    closing: bool,
    next_seq: u64,
    progress: WriteProgress,
    /// The progress last handed out by `take_progress`, so each change is reported once.
    reported: WriteProgress,
}

impl WriteState {
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.held.is_empty() && self.unacked.is_none() && !self.in_flight
    }

    fn add_queued(&mut self, n: usize) {
        self.queued_bytes += n;
        self.progress.queued_bytes = self.queued_bytes;
    }

    /// After an ACK (or giving up): held writes go out, up to and including the next handle, which then waits.
    fn release_held(&mut self) {
        while let Some(chunk) = self.held.pop_front() {
            let handle = chunk.fd.clone();
            if let Some(fd) = handle.clone() {
                self.unacked = Some(Unacked {
                    envelope: chunk.data.clone(),
                    fd,
                    retransmissions: 0,
                });
            }
            self.queue.push_back(chunk);
            if handle.is_some() {
                break;
            }
        }
    }

    /// The peer is gone: whatever waits will never arrive.
    fn fail_all(&mut self, err: SysError) {
        let last = self
            .queue
            .iter()
            .chain(self.held.iter())
            .map(|c| c.seq)
            .max()
            .unwrap_or(0);
        self.queue.clear();
        self.held.clear();
        self.unacked = None;
        self.queued_bytes = 0;
        self.progress.queued_bytes = 0;
        if self.progress.error.is_none() {
            self.progress.error = Some(err);
        }
        self.progress.failed = self.progress.failed.max(last).max(self.progress.done);
    }
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

fn dup(fd: BorrowedFd<'_>) -> Result<Arc<OwnedFd>, SysError> {
    fd.try_clone_to_owned()
        .map(Arc::new)
        .map_err(|e| SysError::new(Errno::from_raw(e.raw_os_error().unwrap_or(0)), "dup"))
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
        Arc::new(Channel {
            sock: Arc::new(sock),
            sink,
            advanced,
            write: Mutex::new(WriteState::default()),
            wake_writer: Condvar::new(),
            written_cv: Condvar::new(),
            reader: Mutex::new(ReadState {
                decoder,
                pending_fd: None,
                buf: vec![0u8; READ_BUFFER],
                ended: false,
            }),
            burst: Mutex::new(Burst::default()),
            burst_cv: Condvar::new(),
            ended: Mutex::new(false),
            ended_cv: Condvar::new(),
            newconn_replies: OnceLock::new(),
        })
    }

    /// Reads on a thread of its own until EOF.
    pub fn spawn_reader(self: &Arc<Self>) -> Result<(), SysError> {
        let me = self.clone();
        thread::Builder::new()
            .name("forkline-reader".into())
            .spawn(move || {
                me.read_until_quiet(-1);
            })
            .map_err(thread_error)?;
        Ok(())
    }

    /// Hands reading to the burst thread (started on first use, parked between bursts): it reads off the owner's
    /// thread until the socket has been quiet for a moment, then reports `Event::ReaderIdle` and parks again.
    pub fn read_burst(self: &Arc<Self>) -> Result<(), SysError> {
        let mut burst = self.burst.lock().unwrap_or_else(|p| p.into_inner());
        burst.requested = true;
        if burst.started {
            self.burst_cv.notify_one();
            return Ok(());
        }
        let me = self.clone();
        thread::Builder::new()
            .name("forkline-burst".into())
            .spawn(move || me.burst_loop())
            .map_err(thread_error)?;
        burst.started = true;
        Ok(())
    }

    fn burst_loop(self: Arc<Self>) {
        loop {
            {
                let mut burst = self.burst.lock().unwrap_or_else(|p| p.into_inner());
                while !burst.requested {
                    if *self.ended.lock().unwrap_or_else(|p| p.into_inner()) {
                        return;
                    }
                    burst = self.burst_cv.wait(burst).unwrap_or_else(|p| p.into_inner());
                }
                burst.requested = false;
            }
            match self.read_until_quiet(READER_IDLE_MS) {
                ReadOutcome::Ended => return,
                _ => self.sink.push(Event::ReaderIdle),
            }
        }
    }

    /// Reads (waiting for more, with room in the owner's queue) until the stream ends or nothing has come for
    /// `quiet_ms` (-1: until the end).
    fn read_until_quiet(self: &Arc<Self>, quiet_ms: i32) -> ReadOutcome {
        loop {
            self.sink.reserve();
            match self.read_ready(READS_PER_TURN) {
                ReadOutcome::Ended => return ReadOutcome::Ended,
                ReadOutcome::Busy => {}
                ReadOutcome::Idle => {
                    if !sys::wait_readable(self.sock.as_fd(), quiet_ms) {
                        return ReadOutcome::Idle;
                    }
                }
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, WriteState> {
        // A panic while holding this lock leaves plain data behind; carry on with it.
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `data` after every earlier write. Tries the socket at once, without blocking; what does not fit goes
    /// to the writer thread. Never blocks the caller on the peer.
    pub fn write(self: &Arc<Self>, data: &[u8]) -> Result<Written, SysError> {
        self.submit(data, None, true)
    }

    /// Queues a NODE_HANDLE envelope with `fd` (which we duplicate and keep until the ACK).
    pub fn write_handle(
        self: &Arc<Self>,
        envelope: &[u8],
        fd: BorrowedFd<'_>,
    ) -> Result<Written, SysError> {
        self.submit(envelope, Some(dup(fd)?), true)
    }

    /// Like `write_handle`, for a handle the core sends on its own (a cluster hand-off): in order with the owner's
    /// writes, but taking none of their sequence numbers, so the owner's count stays its own.
    pub fn write_own_handle(
        self: &Arc<Self>,
        envelope: &[u8],
        fd: BorrowedFd<'_>,
    ) -> Result<(), SysError> {
        self.submit(envelope, Some(dup(fd)?), false).map(drop)
    }

    fn submit(
        self: &Arc<Self>,
        data: &[u8],
        fd: Option<Arc<OwnedFd>>,
        owners: bool,
    ) -> Result<Written, SysError> {
        let mut st = self.state();
        if let Some(err) = st.progress.error {
            return Err(err);
        }
        if st.closing {
            return Err(SysError::new(Errno::EPIPE, "write"));
        }
        // The seq is only taken by a write that is accepted, so the owner can count the same writes.
        let seq = if owners { st.next_seq + 1 } else { 0 };
        let counted = |n: usize| if owners { n } else { 0 };
        if st.unacked.is_some() || !st.held.is_empty() {
            st.next_seq = st.next_seq.max(seq);
            st.held.push_back(Chunk::new(data.to_vec(), seq, fd));
            st.add_queued(counted(data.len()));
            return Ok(Written {
                seq,
                queued_bytes: st.queued_bytes,
            });
        }
        if let Some(fd) = &fd {
            st.unacked = Some(Unacked {
                envelope: data.to_vec(),
                fd: fd.clone(),
                retransmissions: 0,
            });
        }
        let mut sent = 0;
        if st.queue.is_empty() && !st.in_flight {
            match self.send_now(data, fd.as_deref()) {
                Ok(n) => sent = n,
                Err(err) => {
                    st.unacked = None;
                    st.progress.error = Some(err);
                    return Err(err);
                }
            }
            if sent == data.len() {
                if owners {
                    st.next_seq = seq;
                    st.progress.done = seq;
                    // The caller learns of this one from our return value; don't wake it again to say so.
                    if st.reported.done == seq - 1 {
                        st.reported.done = seq;
                    }
                }
                return Ok(Written {
                    seq,
                    queued_bytes: st.queued_bytes,
                });
            }
        }
        st.next_seq = st.next_seq.max(seq);
        // If any byte went, the fd went with it.
        let fd = if sent == 0 { fd } else { None };
        st.queue
            .push_back(Chunk::new(data[sent..].to_vec(), seq, fd));
        st.add_queued(counted(data.len() - sent));
        let queued_bytes = st.queued_bytes;
        self.kick_writer(&mut st)?;
        Ok(Written { seq, queued_bytes })
    }

    /// Writes without blocking until done or the socket is full; returns the bytes written.
    fn send_now(&self, data: &[u8], fd: Option<&OwnedFd>) -> Result<usize, SysError> {
        let mut sent = 0;
        while sent < data.len() {
            let with = if sent == 0 {
                fd.map(|f| f.as_fd())
            } else {
                None
            };
            match sys::send(
                self.sock.as_fd(),
                &[IoSlice::new(&data[sent..])],
                with,
                false,
            )? {
                0 => break,
                n => sent += n,
            }
        }
        Ok(sent)
    }

    /// The channel's own messages (ACK/NACK, retransmissions) go ahead of held and queued writes, but never into
    /// the middle of one: the writer sends whole chunks.
    fn send_control(self: &Arc<Self>, data: Vec<u8>, fd: Option<Arc<OwnedFd>>) {
        let mut st = self.state();
        if st.closing || st.progress.error.is_some() {
            return;
        }
        let mut sent = 0;
        if st.queue.is_empty() && !st.in_flight {
            match self.send_now(&data, fd.as_deref()) {
                Ok(n) if n == data.len() => return,
                Ok(n) => sent = n,
                Err(err) => {
                    st.fail_all(err);
                    drop(st);
                    self.report_progress();
                    return;
                }
            }
        }
        let fd = if sent == 0 { fd } else { None };
        st.queue.push_front(Chunk {
            data,
            sent,
            seq: 0,
            fd,
        });
        // A thread that cannot start leaves the bytes queued; the channel then ends at the peer's next write.
        let _ = self.kick_writer(&mut st);
    }

    fn on_ack(self: &Arc<Self>) {
        let mut st = self.state();
        if st.unacked.take().is_none() {
            return;
        }
        st.release_held();
        // Send what the ACK released from here, without waking the writer thread for it, as far as the socket
        // takes it now (a handle at a time is the common case: the next connection, the next socket).
        let mut progressed = false;
        while !st.in_flight {
            let Some(chunk) = st.queue.front_mut() else {
                break;
            };
            let fd = chunk.fd.clone().filter(|_| chunk.sent == 0);
            let sent = match self.send_now(&chunk.data[chunk.sent..], fd.as_deref()) {
                Ok(n) => n,
                // The writer meets the same error and fails what is queued.
                Err(_) => break,
            };
            if sent > 0 {
                chunk.fd = None;
            }
            chunk.sent += sent;
            if chunk.sent < chunk.data.len() {
                break;
            }
            let (seq, len) = (chunk.seq, chunk.data.len());
            st.queue.pop_front();
            if seq != 0 {
                st.queued_bytes = st.queued_bytes.saturating_sub(len);
                st.progress.queued_bytes = st.queued_bytes;
                st.progress.done = st.progress.done.max(seq);
                progressed = true;
            }
        }
        if !st.queue.is_empty() {
            let _ = self.kick_writer(&mut st);
        }
        drop(st);
        if progressed {
            self.report_progress();
        }
    }

    /// Sends the unacknowledged handle again; false once it has been sent too often (it is then dropped).
    fn on_nack(self: &Arc<Self>) -> bool {
        let mut st = self.state();
        let Some(unacked) = st.unacked.as_mut() else {
            return true;
        };
        if unacked.retransmissions == MAX_HANDLE_RETRANSMISSIONS {
            st.unacked = None;
            st.release_held();
            let _ = self.kick_writer(&mut st);
            return false;
        }
        unacked.retransmissions += 1;
        let (envelope, fd) = (unacked.envelope.clone(), unacked.fd.clone());
        drop(st);
        self.send_control(envelope, Some(fd));
        true
    }

    fn kick_writer(self: &Arc<Self>, st: &mut WriteState) -> Result<(), SysError> {
        if !st.writer_started {
            let me = self.clone();
            thread::Builder::new()
                .name("forkline-writer".into())
                .spawn(move || {
                    if catch_unwind(AssertUnwindSafe(|| me.write_loop())).is_err() {
                        me.sink.push(Event::Frame(Frame::Error {
                            code: Code::Internal,
                            message: "forkline's writer thread failed; the channel is closed"
                                .into(),
                        }));
                        sys::shutdown(me.sock.as_fd());
                    }
                })
                .map_err(thread_error)?;
            st.writer_started = true;
        }
        self.wake_writer.notify_one();
        Ok(())
    }

    fn write_loop(&self) {
        let mut st = self.state();
        loop {
            while st.queue.is_empty() && !(st.closing && st.idle()) {
                st = self.wake_writer.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.queue.is_empty() {
                // closing, and everything queued before close() is on the wire and acknowledged.
                sys::shutdown(self.sock.as_fd());
                return;
            }
            // Take every queued chunk and send them in as few syscalls as the socket allows.
            let mut batch: Vec<Chunk> = st.queue.drain(..).collect();
            st.in_flight = true;
            drop(st);
            let result = self.send_all(&mut batch);
            st = self.state();
            st.in_flight = false;
            match result {
                Ok(()) => {
                    let total: usize = batch
                        .iter()
                        .filter(|c| c.seq != 0)
                        .map(|c| c.data.len())
                        .sum();
                    st.queued_bytes = st.queued_bytes.saturating_sub(total);
                    st.progress.queued_bytes = st.queued_bytes;
                    let last = batch.iter().map(|c| c.seq).max().unwrap_or(0);
                    st.progress.done = st.progress.done.max(last);
                }
                Err(err) => {
                    // The peer is gone: nothing queued will ever arrive. Fail it all, loudly.
                    let last = batch.iter().map(|c| c.seq).max().unwrap_or(0);
                    st.fail_all(err);
                    st.progress.failed = st.progress.failed.max(last);
                }
            }
            drop(batch);
            drop(st);
            self.written_cv.notify_all();
            self.report_progress();
            st = self.state();
            if st.progress.error.is_some() {
                return;
            }
        }
    }

    fn send_all(&self, batch: &mut [Chunk]) -> Result<(), SysError> {
        let mut first = 0;
        while first < batch.len() {
            // One sendmsg per fd: an fd rides with its own chunk's first byte, never with an earlier chunk's.
            let fd = batch[first].fd.clone().filter(|_| batch[first].sent == 0);
            let mut iov = vec![IoSlice::new(&batch[first].data[batch[first].sent..])];
            iov.extend(
                batch[first + 1..]
                    .iter()
                    .take(MAX_IOV - 1)
                    .take_while(|c| c.fd.is_none())
                    .map(|c| IoSlice::new(&c.data[c.sent..])),
            );
            let mut n = sys::send(
                self.sock.as_fd(),
                &iov,
                fd.as_deref().map(|f| f.as_fd()),
                true,
            )?;
            if n > 0 {
                batch[first].fd = None;
            }
            while n > 0 {
                let c = &mut batch[first];
                let take = n.min(c.data.len() - c.sent);
                c.sent += take;
                n -= take;
                if c.sent == c.data.len() {
                    first += 1;
                }
            }
        }
        Ok(())
    }

    /// Tells the owner how far the writes got, if that changed since it last heard.
    fn report_progress(&self) {
        let progress = {
            let mut st = self.state();
            if st.progress == st.reported {
                return;
            }
            st.reported = st.progress;
            st.progress
        };
        self.sink.push(Event::Progress(progress));
    }

    /// Blocks until every write queued so far is on the wire (or can never be), for at most `timeout`; true if
    /// nothing is left. For a process about to exit: its writer thread dies with it. Writes held behind an
    /// unacknowledged handle cannot leave without a read, which nobody does here, so they do not count.
    pub fn wait_written(&self, timeout: std::time::Duration) -> bool {
        let st = self.state();
        let (st, _) = self
            .written_cv
            .wait_timeout_while(st, timeout, |st| {
                st.progress.error.is_none() && (st.in_flight || !st.queue.is_empty())
            })
            .unwrap_or_else(|p| p.into_inner());
        st.queue.is_empty() && !st.in_flight
    }

    /// Ends the channel once every write queued so far is on the wire (and any handle acknowledged); the reader
    /// then sees EOF.
    pub fn close(self: &Arc<Self>) {
        let mut st = self.state();
        if st.closing {
            return;
        }
        st.closing = true;
        // With nothing left to send we shut down now; otherwise the writer does once it is done (or now, if no
        // writer thread can be started).
        if st.idle() || self.kick_writer(&mut st).is_err() {
            sys::shutdown(self.sock.as_fd());
        }
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

    /// Reads what is ready, without blocking, at most `max_reads` times; decoded messages go to the sink.
    pub fn read_ready(self: &Arc<Self>, max_reads: usize) -> ReadOutcome {
        let mut rs = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if rs.ended {
            return ReadOutcome::Ended;
        }
        match catch_unwind(AssertUnwindSafe(|| self.read_some(&mut rs, max_reads))) {
            Ok(outcome) => outcome,
            Err(_) => {
                self.sink.push(Event::Frame(Frame::Error {
                    code: Code::Internal,
                    message: "forkline's reader failed; the channel is closed".into(),
                }));
                self.end_stream(&mut rs);
                ReadOutcome::Ended
            }
        }
    }

    fn read_some(self: &Arc<Self>, rs: &mut ReadState, max_reads: usize) -> ReadOutcome {
        let sink = &*self.sink;
        for _ in 0..max_reads {
            let got = match sys::recv(self.sock.as_fd(), &mut rs.buf) {
                Ok(got) => got,
                Err(err) if err.errno == Errno::EAGAIN => return ReadOutcome::Idle,
                // A reset is how a crashed peer says goodbye: EOF, as Node treats it.
                Err(err) if err.errno == Errno::ECONNRESET => {
                    self.end_stream(rs);
                    return ReadOutcome::Ended;
                }
                Err(err) => {
                    sink.push(Event::ReadError(err));
                    self.end_stream(rs);
                    return ReadOutcome::Ended;
                }
            };
            for fd in got.fds {
                if let Some(earlier) = rs.pending_fd.replace(fd) {
                    stray(
                        sink,
                        earlier,
                        "a second file descriptor arrived before the first one's handle message",
                    );
                }
            }
            if got.fds_truncated {
                sink.push(Event::Frame(Frame::Error {
                    code: Code::FdLost,
                    message: "a file descriptor sent by the peer was lost (MSG_CTRUNC: is this process out of file \
                              descriptors?); its handle message is answered NODE_HANDLE_NACK"
                        .into(),
                }));
            }
            if got.n == 0 {
                self.end_stream(rs);
                return ReadOutcome::Ended;
            }
            let ReadState {
                decoder,
                pending_fd,
                buf,
                ..
            } = rs;
            decoder.feed(
                &buf[..got.n],
                &mut Inbound {
                    channel: self,
                    pending_fd,
                },
            );
            if got.n < buf.len() {
                return ReadOutcome::Idle;
            }
        }
        ReadOutcome::Busy
    }

    /// The stream is over: report what was cut short, close what nobody claimed, fail what waits, say EOF.
    fn end_stream(self: &Arc<Self>, rs: &mut ReadState) {
        let sink = &*self.sink;
        rs.ended = true;
        let ReadState {
            decoder,
            pending_fd,
            ..
        } = rs;
        decoder.finish(&mut Inbound {
            channel: self,
            pending_fd,
        });
        if let Some(fd) = rs.pending_fd.take() {
            stray(
                sink,
                fd,
                "a file descriptor arrived with no handle message before the channel closed",
            );
        }
        rs.buf = Vec::new();
        sys::shutdown(self.sock.as_fd());
        // The peer is gone: fail what waits, and let the writer exit rather than wait forever.
        {
            let mut st = self.state();
            st.closing = true;
            if !st.held.is_empty() || st.unacked.is_some() {
                st.fail_all(SysError::new(Errno::EPIPE, "write"));
            }
        }
        self.wake_writer.notify_one();
        self.report_progress();
        sink.push(Event::Eof);
        *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.ended_cv.notify_all();
        // A parked burst thread holds the channel: let it see the end and go.
        let _burst = self.burst.lock().unwrap_or_else(|p| p.into_inner());
        self.burst_cv.notify_all();
    }

    /// Waits until the reader has reported EOF, for at most `timeout`; true if it has.
    pub fn wait_ended(&self, timeout: std::time::Duration) -> bool {
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        let (ended, _) = self
            .ended_cv
            .wait_timeout_while(ended, timeout, |ended| !*ended)
            .unwrap_or_else(|p| p.into_inner());
        *ended
    }
}

/// Closes an fd nobody claimed, and says so.
fn stray(sink: &dyn EventSink, fd: OwnedFd, why: &str) {
    drop(fd);
    sink.push(Event::Frame(Frame::Error {
        code: Code::StrayFd,
        message: format!("{why}; it was closed"),
    }));
}

/// The reader's view of decoded frames: pairs a received fd with its NODE_HANDLE envelope and answers the
/// handshake; everything else passes through.
struct Inbound<'a> {
    channel: &'a Arc<Channel>,
    pending_fd: &'a mut Option<OwnedFd>,
}

impl Inbound<'_> {
    fn push(&self, frame: Frame) {
        self.channel.sink.push(Event::Frame(frame));
    }

    /// Acts on one handshake message; returns whether it is delivered on to JS (as Node emits it as
    /// 'internalMessage'), or `None` when it was an envelope consumed here.
    fn handshake(&mut self, kind: Handshake, envelope: Frame) -> Option<Frame> {
        let advanced = self.channel.advanced;
        match kind {
            Handshake::Handle => match self.pending_fd.take() {
                Some(fd) => {
                    self.channel
                        .send_control(internal::encode(Handshake::Ack, advanced), None);
                    self.channel.sink.push(Event::Handle { envelope, fd });
                    None
                }
                None => {
                    // Node's answer to an envelope whose fd did not make it (e.g. MSG_CTRUNC): send it again.
                    self.channel
                        .send_control(internal::encode(Handshake::Nack, advanced), None);
                    None
                }
            },
            Handshake::Ack => {
                self.channel.on_ack();
                self.delivered(envelope)
            }
            Handshake::Nack => {
                if !self.channel.on_nack() {
                    self.push(Frame::Error {
                        code: Code::HandleNotReceived,
                        message: "Handle did not reach the receiving process correctly".into(),
                    });
                }
                self.delivered(envelope)
            }
        }
    }

    fn delivered(&self, envelope: Frame) -> Option<Frame> {
        match self.channel.newconn_replies.get() {
            Some(_) => None,
            None => Some(envelope),
        }
    }

    /// Whether `reply` answered a connection we handed over (and is consumed).
    fn claimed(&self, reply: Option<NewconnReply>) -> bool {
        match (reply, self.channel.newconn_replies.get()) {
            (Some(reply), Some(replies)) => replies.reply(reply),
            _ => false,
        }
    }

    fn lines(&mut self, text: String) {
        let mut pass = String::new();
        let cluster = self.channel.newconn_replies.get().is_some();
        for line in text.split_inclusive('\n') {
            let body = &line[..line.len() - 1];
            let Some(kind) = internal::json_handshake(body) else {
                if !(cluster && self.claimed(internal::json_newconn_reply(body))) {
                    pass.push_str(line);
                }
                continue;
            };
            if kind == Handshake::Handle && !pass.is_empty() {
                self.push(Frame::Lines(std::mem::take(&mut pass)));
            }
            if let Some(Frame::Lines(back)) = self.handshake(kind, Frame::Lines(line.to_owned())) {
                pass.push_str(&back);
            }
        }
        if !pass.is_empty() {
            self.push(Frame::Lines(pass));
        }
    }

    fn frames(&mut self, run: Vec<u8>) {
        let mut pass = Vec::new();
        let mut at = 0;
        let cluster = self.channel.newconn_replies.get().is_some();
        while at < run.len() {
            let len = u32::from_be_bytes([run[at], run[at + 1], run[at + 2], run[at + 3]]) as usize;
            let frame = &run[at..at + 4 + len];
            at += 4 + len;
            let Some(kind) = internal::v8_handshake(&frame[4..]) else {
                if !(cluster && self.claimed(internal::v8_newconn_reply(&frame[4..]))) {
                    pass.extend_from_slice(frame);
                }
                continue;
            };
            if kind == Handshake::Handle && !pass.is_empty() {
                self.push(Frame::Frames(std::mem::take(&mut pass)));
            }
            if let Some(Frame::Frames(back)) = self.handshake(kind, Frame::Frames(frame.to_vec())) {
                pass.extend_from_slice(&back);
            }
        }
        if !pass.is_empty() {
            self.push(Frame::Frames(pass));
        }
    }
}

impl Inbound<'_> {
    /// Whether `bytes` may hold a `newconn` reply to look for (only a cluster worker's channel has them).
    fn may_hold_reply(&self, bytes: &[u8]) -> bool {
        self.channel.newconn_replies.get().is_some() && internal::may_be_newconn_reply(bytes)
    }
}

impl FrameSink for Inbound<'_> {
    fn frame(&mut self, frame: Frame) {
        match frame {
            Frame::Lines(text)
                if internal::may_be_handshake(text.as_bytes())
                    || self.may_hold_reply(text.as_bytes()) =>
            {
                self.lines(text)
            }
            Frame::Frames(run)
                if internal::frames_may_hold_handshake(&run) || self.may_hold_reply(&run) =>
            {
                self.frames(run)
            }
            other => self.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, Receiver, Sender};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    struct TestSink(Sender<Event>, Sender<()>);
    impl EventSink for TestSink {
        fn push(&self, event: Event) {
            if matches!(event, Event::Progress(_)) {
                let _ = self.1.send(());
            }
            let _ = self.0.send(event);
        }
    }

    fn open(max: usize) -> (Arc<Channel>, UnixStream, Receiver<Event>, Receiver<()>) {
        let (ours, theirs) = sys::socketpair().unwrap();
        let (tx, rx) = unbounded();
        let (ptx, prx) = unbounded();
        let ch =
            Channel::open(ours, Decoder::new(false, max), Arc::new(TestSink(tx, ptx))).unwrap();
        (ch, UnixStream::from(theirs), rx, prx)
    }

    /// The next event other than write progress.
    fn next(rx: &Receiver<Event>) -> Event {
        loop {
            match rx.recv_timeout(Duration::from_secs(5)).expect("event") {
                Event::Progress(_) => continue,
                other => return other,
            }
        }
    }

    #[test]
    fn reads_lines_then_eof() {
        let (_ch, mut peer, rx, _) = open(1024);
        peer.write_all(b"{\"a\":1}\n").unwrap();
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "{\"a\":1}\n"));
        drop(peer);
        assert!(matches!(next(&rx), Event::Eof));
    }

    #[test]
    fn peer_dying_mid_message_is_truncation_then_eof() {
        let (_ch, mut peer, rx, _) = open(1024);
        peer.write_all(b"1\n{\"half\":").unwrap();
        drop(peer);
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(_))));
        assert!(matches!(
            next(&rx),
            Event::Frame(Frame::Error {
                code: Code::TruncatedMessage,
                ..
            })
        ));
        assert!(matches!(next(&rx), Event::Eof));
    }

    #[test]
    fn writes_keep_order_when_the_socket_is_full() {
        let (ch, mut peer, rx, _) = open(1024);
        let big = vec![b'x'; 300_000];
        let mut last = None;
        for i in 0..20u8 {
            let mut msg = big.clone();
            msg[0] = i;
            last = Some(ch.write(&msg).unwrap());
        }
        assert!(
            last.unwrap().queued_bytes > 0,
            "a full socket queues instead of blocking"
        );
        let mut got = vec![0u8; big.len() * 20];
        peer.read_exact(&mut got).unwrap();
        for i in 0..20 {
            assert_eq!(got[i * big.len()], i as u8);
        }
        let p = loop {
            match rx.recv_timeout(Duration::from_secs(5)).expect("progress") {
                Event::Progress(p) if p.done == 20 => break p,
                _ => {}
            }
        };
        assert_eq!(p.queued_bytes, 0);
    }

    #[test]
    fn close_flushes_queued_writes_before_eof() {
        let (ch, mut peer, rx, _) = open(1024);
        let big = vec![b'y'; 1 << 20];
        ch.write(&big).unwrap();
        ch.close();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), big.len());
        assert!(ch.write(b"late\n").is_err(), "no writes after close");
        drop(peer);
        assert!(matches!(next(&rx), Event::Eof));
    }

    #[test]
    fn write_to_a_dead_peer_is_epipe() {
        let (ch, peer, _rx, _) = open(1024);
        drop(peer);
        let err = loop {
            match ch.write(b"x\n") {
                Ok(_) => thread::sleep(Duration::from_millis(1)),
                Err(e) => break e,
            }
        };
        assert_eq!(err.errno, Errno::EPIPE);
    }

    #[test]
    fn stray_fd_is_reported_and_closed_at_eof() {
        let (_ch, peer, rx, _) = open(1024);
        let (x, _y) = sys::socketpair().unwrap();
        sys::send(peer.as_fd(), &[IoSlice::new(b"1\n")], Some(x.as_fd()), true).unwrap();
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "1\n"));
        drop(peer);
        assert!(matches!(
            next(&rx),
            Event::Frame(Frame::Error {
                code: Code::StrayFd,
                ..
            })
        ));
        assert!(matches!(next(&rx), Event::Eof));
    }

    fn read_line(peer: &mut UnixStream) -> String {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while peer.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        String::from_utf8(line).unwrap()
    }

    const ENVELOPE: &str = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":1}\n";

    #[test]
    fn an_envelope_with_its_fd_becomes_one_handle_event_and_is_acked() {
        let (_ch, mut peer, rx, _) = open(1024);
        let (x, _y) = sys::socketpair().unwrap();
        let wire = format!("\"before\"\n{ENVELOPE}\"after\"\n");
        sys::send(
            peer.as_fd(),
            &[IoSlice::new(wire.as_bytes())],
            Some(x.as_fd()),
            true,
        )
        .unwrap();
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "\"before\"\n"));
        assert!(
            matches!(next(&rx), Event::Handle { envelope: Frame::Lines(s), .. } if s == ENVELOPE)
        );
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "\"after\"\n"));
        assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_ACK\"}");
    }

    #[test]
    fn an_envelope_without_its_fd_is_nacked_and_not_delivered() {
        let (_ch, mut peer, rx, _) = open(1024);
        peer.write_all(format!("{ENVELOPE}2\n").as_bytes()).unwrap();
        assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_NACK\"}");
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "2\n"));
    }

    /// Reads one chunk and the fds that came with it.
    fn recv_with_fds(peer: &UnixStream) -> (String, usize) {
        let mut buf = [0u8; 4096];
        assert!(sys::wait_readable(peer.as_fd(), 5000));
        let got = sys::recv(peer.as_fd(), &mut buf).unwrap();
        (
            String::from_utf8_lossy(&buf[..got.n]).into_owned(),
            got.fds.len(),
        )
    }

    #[test]
    fn writes_after_a_handle_wait_for_its_ack_and_a_nack_resends_it() {
        let (ch, mut peer, rx, _) = open(1024);
        let (x, _y) = sys::socketpair().unwrap();
        ch.write_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
        ch.write(b"\"queued\"\n").unwrap();
        assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
        // NACK: the envelope and its fd come again, and nothing else yet.
        peer.write_all(b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n").unwrap();
        assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
        peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
        assert_eq!(read_line(&mut peer), "\"queued\"");
        // Both handshake answers are also handed on (Node emits them as 'internalMessage').
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s.contains("NACK")));
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s.contains("ACK")));
    }

    #[test]
    fn the_cores_own_handles_keep_their_place_but_take_no_sequence_number() {
        let (ch, mut peer, rx, _) = open(1024);
        let (x, _y) = sys::socketpair().unwrap();
        assert_eq!(ch.write(b"1\n").unwrap().seq, 1);
        ch.write_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
        ch.write_own_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
        let third = ch.write(b"3\n").unwrap();
        assert_eq!(third.seq, 3, "the core's own handle took no seq");
        assert_eq!(
            third.queued_bytes, 2,
            "nor does it count in the owner's queued bytes"
        );
        assert_eq!(read_line(&mut peer), "1");
        assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
        // Each ACK releases the next write, sent at once by the reader that saw the ACK.
        peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
        assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
        peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
        assert_eq!(read_line(&mut peer), "3");
        let done = loop {
            match rx.recv_timeout(Duration::from_secs(5)).expect("progress") {
                Event::Progress(p) if p.done == 3 => break p,
                _ => {}
            }
        };
        assert_eq!(done.queued_bytes, 0);
    }

    #[test]
    fn a_handle_nacked_too_often_is_dropped_with_an_error_and_the_queue_moves_on() {
        let (ch, mut peer, rx, _) = open(1024);
        let (x, _y) = sys::socketpair().unwrap();
        ch.write_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
        ch.write(b"\"queued\"\n").unwrap();
        assert_eq!(recv_with_fds(&peer).1, 1);
        for _ in 0..MAX_HANDLE_RETRANSMISSIONS {
            peer.write_all(b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n").unwrap();
            assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
        }
        peer.write_all(b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n").unwrap();
        assert_eq!(read_line(&mut peer), "\"queued\"");
        let mut saw_error = false;
        while let Ok(ev) = rx.recv_timeout(Duration::from_millis(500)) {
            saw_error |= matches!(
                ev,
                Event::Frame(Frame::Error {
                    code: Code::HandleNotReceived,
                    ..
                })
            );
        }
        assert!(saw_error);
    }

    #[test]
    fn advanced_envelope_with_fd_is_acked_in_v8_format() {
        let (ours, theirs) = sys::socketpair().unwrap();
        let (tx, rx) = unbounded();
        let (ptx, _prx) = unbounded();
        let _ch =
            Channel::open(ours, Decoder::new(true, 1024), Arc::new(TestSink(tx, ptx))).unwrap();
        let peer = UnixStream::from(theirs);
        let body: Vec<u8> = [0xff, 0x0f, b'o', b'"', 3]
            .iter()
            .copied()
            .chain(*b"cmd")
            .chain([b'"', 11])
            .chain(*b"NODE_HANDLE")
            .chain([b'{', 1])
            .collect();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let (x, _y) = sys::socketpair().unwrap();
        sys::send(peer.as_fd(), &[IoSlice::new(&frame)], Some(x.as_fd()), true).unwrap();
        assert!(
            matches!(next(&rx), Event::Handle { envelope: Frame::Frames(f), .. } if f == frame)
        );
        let mut buf = [0u8; 64];
        assert!(sys::wait_readable(peer.as_fd(), 5000));
        let got = sys::recv(peer.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..got.n], &internal::encode(Handshake::Ack, true)[..]);
    }

    #[test]
    fn a_burst_reader_hands_reading_back_when_idle() {
        let (ours, theirs) = sys::socketpair().unwrap();
        let (tx, rx) = unbounded();
        let (ptx, _prx) = unbounded();
        let ch = Channel::new(ours, Decoder::new(false, 1024), Arc::new(TestSink(tx, ptx)));
        let mut peer = UnixStream::from(theirs);
        assert_eq!(ch.read_ready(1), ReadOutcome::Idle, "nothing to read yet");
        // More than the socket holds, so the writer blocks until the burst thread drains it.
        let burst = "1\n".repeat(400_000);
        let mut writer = peer.try_clone().unwrap();
        let writing = thread::spawn(move || writer.write_all(burst.as_bytes()).unwrap());
        assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
        ch.read_burst().unwrap();
        let mut lines = 0;
        loop {
            match next(&rx) {
                Event::Frame(Frame::Lines(s)) => lines += s.len() / 2,
                Event::ReaderIdle => break,
                other => panic!("{other:?}"),
            }
        }
        writing.join().unwrap();
        assert_eq!(
            lines, 400_000,
            "the thread read the whole burst, then went idle"
        );
        peer.write_all(b"2\n").unwrap();
        assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
        assert_eq!(ch.read_ready(1), ReadOutcome::Idle);
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "2\n"));
        drop(peer);
        assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
        assert_eq!(ch.read_ready(1), ReadOutcome::Ended);
        assert!(matches!(next(&rx), Event::Eof));
    }

    /// A sink that holds at most `cap` events until the test drains it.
    struct BoundedSink {
        events: Mutex<Vec<Event>>,
        room: Condvar,
        cap: usize,
    }

    impl EventSink for BoundedSink {
        fn push(&self, event: Event) {
            self.events.lock().unwrap().push(event);
        }
        fn reserve(&self) {
            let mut events = self.events.lock().unwrap();
            while events.len() >= self.cap {
                events = self.room.wait(events).unwrap();
            }
        }
    }

    #[test]
    fn a_burst_reader_stops_reading_while_its_owner_is_behind() {
        let (ours, theirs) = sys::socketpair().unwrap();
        let sink = Arc::new(BoundedSink {
            events: Mutex::new(Vec::new()),
            room: Condvar::new(),
            cap: 4,
        });
        let ch = Channel::new(ours, Decoder::new(false, 1024), sink.clone());
        let mut writer = UnixStream::from(theirs);
        let flood = "1\n".repeat(8 << 20);
        let writing = thread::spawn(move || writer.write_all(flood.as_bytes()).unwrap());
        ch.read_burst().unwrap();
        thread::sleep(Duration::from_millis(300));
        assert!(
            !writing.is_finished(),
            "the peer must be held back while nobody drains"
        );
        assert!(
            sink.events.lock().unwrap().len() <= 4 + 2,
            "at most a read past the cap"
        );
        // Drain until the whole flood is through.
        let mut lines = 0;
        while lines < 8 << 20 {
            let mut events = sink.events.lock().unwrap();
            for ev in events.drain(..) {
                if let Event::Frame(Frame::Lines(s)) = ev {
                    lines += s.len() / 2;
                }
            }
            sink.room.notify_all();
            drop(events);
            thread::sleep(Duration::from_millis(1));
        }
        writing.join().unwrap();
    }

    #[test]
    fn wait_written_returns_once_a_large_write_is_on_the_wire() {
        let (ch, mut peer, _rx, _prx) = open(1024);
        let big = vec![b'x'; 8 << 20];
        let w = ch.write(&big).unwrap();
        assert!(w.queued_bytes > 0, "8 MiB cannot fit the socket buffer");
        assert!(
            !ch.wait_written(Duration::from_millis(50)),
            "nobody reads yet: still queued"
        );
        let reading = thread::spawn(move || {
            let mut got = vec![0u8; 8 << 20];
            peer.read_exact(&mut got).unwrap();
            got.len()
        });
        assert!(ch.wait_written(Duration::from_secs(10)));
        assert_eq!(reading.join().unwrap(), 8 << 20);
    }
}
