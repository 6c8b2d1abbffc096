//! The read side of a [`Channel`]: reads on the owner's thread (`read_ready`), reads handed to the reactor for
//! a burst (`read_burst`) or for the whole stream (`read_all`), and the end of the stream. Decoded frames go
//! through [`Inbound`] (inbound.rs) before they reach the sink.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;

use super::inbound::Inbound;
use super::{reactor_error, Channel, Event, EventSink, ReadOutcome};
use crate::core::error::{Code, SysError};
use crate::core::frame::{Decoder, Frame};
use crate::core::nack_hold::NackHold;
use crate::core::pairing::Pairing;
use crate::os::{reactor, sys};

/// Read sizes per recvmsg. A channel starts with the smallest: an idle or chatty channel (hundreds of children
/// echoing small messages) then holds little. A read that fills its buffer makes the next one four times larger, up
/// to the perfect parent's 256 KiB of shared/perf-limits.md (Deno's ReadBuffer is 64 KiB); a read that fills that
/// counts as a burst and goes to the reactor. After `KEEP_BIG_BUFFER` without a read that needed more than the
/// smallest size, the buffer is let go, and the next read maps the smallest again. The buffer is its own mapping
/// (`sys::ReadBuf`): pages a read never reached are never faulted in, and a dropped one goes back to the kernel.
/// A channel at the smallest size owns no buffer: it reads into its thread's (`SHARED_BUF`), since the decoder copies
/// what it keeps; only a grown buffer is the channel's own. A parent of hundreds of chatty children so holds one
/// page per thread instead of at least one per channel.
pub(super) const READ_BUFFER_MIN: usize = 16 * 1024;
pub(super) const READ_BUFFER_MAX: usize = 256 * 1024;
const READ_BUFFER_GROWTH: usize = 4;
/// How long a grown read buffer stays without a read that needed it.
const KEEP_BIG_BUFFER: Duration = if cfg!(test) {
    Duration::from_millis(100)
} else {
    Duration::from_secs(2)
};

thread_local! {
    /// The smallest read buffer, one per thread for every channel it reads at that size (taken for a read, put back
    /// after it; a read that panics drops it, and the next one maps another).
    static SHARED_BUF: std::cell::Cell<Option<sys::ReadBuf>> = const { std::cell::Cell::new(None) };
}

/// The read side's state: one reader at a time, on whichever thread reads.
pub(super) struct ReadState {
    pub(super) decoder: Decoder,
    /// An fd waiting for its NODE_HANDLE envelope.
    pub(super) pending_fd: Pairing<OwnedFd>,
    /// Pipelined: what arrived after a NACKed envelope, until it comes again.
    pub(super) hold: NackHold<Event>,
    /// The channel's own buffer once grown (`size` bytes, mapped at the first read of that size); none at
    /// `READ_BUFFER_MIN`, where the thread's shared one serves.
    buf: Option<sys::ReadBuf>,
    size: usize,
    pub(super) ended: bool,
    /// Reads that brought more than `READ_BUFFER_MIN`: while they go on, a grown buffer stays.
    big_reads: u64,
    /// A timer will look whether the grown buffer is still needed.
    shrink_set: bool,
}

impl ReadState {
    pub(super) fn new(decoder: Decoder) -> Self {
        ReadState {
            decoder,
            pending_fd: Pairing::default(),
            hold: NackHold::default(),
            buf: None,
            size: READ_BUFFER_MIN,
            ended: false,
            big_reads: 0,
            shrink_set: false,
        }
    }

    /// The current read size, and whether a buffer of that size is mapped.
    #[cfg(test)]
    pub(super) fn read_size(&self) -> (usize, bool) {
        (self.size, self.buf.is_some())
    }
}

/// What the reactor reads for the owner.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Nothing: the owner reads (or nobody does yet).
    #[default]
    Owner,
    /// A burst, until the socket is quiet for `BURST_QUIET`; then the owner reads again.
    Burst,
    /// Everything, until EOF.
    All,
}

#[derive(Debug, Default)]
pub(super) struct ReactorRead {
    mode: Mode,
    /// Counts the reactor's reads; a quiet timer set at one count is void once the reactor has read again.
    turn: u64,
}

/// EOF reported, and what waits for it (`after_end`).
#[derive(Default)]
pub(super) struct Ended {
    pub(super) ended: bool,
    pub(super) waiters: Vec<Box<dyn FnOnce() + Send>>,
}

/// How long the socket must stay quiet before a burst is over and reading goes back to the owner.
const BURST_QUIET: Duration = Duration::from_millis(2);
/// Reads per reactor turn, so that one flooding channel cannot hold the reactor from the others.
const READS_PER_TURN: usize = 16;
/// Full reads the owner may add to finish a large message it has begun (16 MiB): such a message is read whole by
/// the thread that began it, with no hand-off to the reactor and back (two thread wake-ups for each message), as
/// Node reads its channel; past this the reactor takes over, so that a peer cannot hold the owner's thread for long.
/// A flood of small messages still goes to the reactor after `max_reads`.
const OWNER_MESSAGE_READS: usize = 64;

impl Channel {
    fn reading(&self) -> std::sync::MutexGuard<'_, ReactorRead> {
        self.reactor_read.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Has the reactor read everything, until EOF.
    pub fn read_all(self: &Arc<Self>) -> Result<(), SysError> {
        self.hand_to_reactor(Mode::All)
    }

    /// Hands reading to the reactor for a burst: it reads off the owner's thread until the socket has been quiet
    /// for a moment, then reports `Event::ReaderIdle` and the owner reads again.
    pub fn read_burst(self: &Arc<Self>) -> Result<(), SysError> {
        self.hand_to_reactor(Mode::Burst)
    }

    /// Ends a burst at the owner's word: from now on the owner reads. The reactor may finish a read it had begun
    /// (reads take turns on the read state, so nothing is read twice or out of order), and reads nothing after it.
    /// False if no burst was on.
    pub fn end_burst(self: &Arc<Self>) -> bool {
        {
            let mut reading = self.reading();
            if reading.mode != Mode::Burst {
                return false;
            }
            reading.mode = Mode::Owner;
            reading.turn += 1;
        }
        self.stop_reactor_reads();
        true
    }

    fn hand_to_reactor(self: &Arc<Self>, mode: Mode) -> Result<(), SysError> {
        let reg = self.registration()?;
        let mut reading = self.reading();
        reading.mode = mode;
        reading.turn += 1;
        reg.want_read(true).map_err(|e| {
            reading.mode = Mode::Owner;
            reactor_error(e)
        })
    }

    /// The reactor's turn at reading: a bounded number of reads, then back to the others.
    pub(super) fn on_readable(self: &Arc<Self>) {
        let mode = self.reading().mode;
        if mode == Mode::Owner {
            return self.stop_reactor_reads();
        }
        if !self.sink.has_room() {
            // The reactor reads nothing for us until the owner has caught up.
            self.reading().turn += 1;
            self.stop_reactor_reads();
            return self.sink.on_room(self.resume_reads());
        }
        let outcome = self.read_with(READS_PER_TURN, 0);
        let turn = {
            let mut reading = self.reading();
            reading.turn += 1;
            reading.turn
        };
        match outcome {
            ReadOutcome::Ended => self.stop_reactor_reads(),
            // Busy too: the socket may have run dry exactly at the end of this turn's reads, and then no readiness
            // comes to end the burst (a timer made void by the next read costs less than a stuck burst).
            ReadOutcome::Busy | ReadOutcome::Idle if mode == Mode::Burst => {
                let me = Arc::downgrade(self);
                let quiet = move || {
                    if let Some(me) = me.upgrade() {
                        me.burst_quiet(turn);
                    }
                };
                if reactor::after(BURST_QUIET, quiet).is_err() {
                    self.burst_quiet(turn);
                }
            }
            ReadOutcome::Busy | ReadOutcome::Idle => {}
        }
    }

    /// Nothing has been read since `turn`: the burst is over, reading goes back to the owner. Not while writes wait
    /// for a handle's ACK: that ACK is what they wait for, and the owner's thread may be busy when it comes (the
    /// next read starts the quiet over).
    fn burst_quiet(self: &Arc<Self>, turn: u64) {
        if self.has_held_writes() {
            return;
        }
        {
            let mut reading = self.reading();
            if reading.mode != Mode::Burst || reading.turn != turn {
                return;
            }
            reading.mode = Mode::Owner;
        }
        self.stop_reactor_reads();
        self.sink.push(Event::ReaderIdle);
    }

    fn stop_reactor_reads(&self) {
        if let Some(reg) = self.registration.get() {
            let _ = reg.want_read(false);
        }
    }

    /// What the sink calls when the owner has caught up: the reactor reads on, if it still reads for us.
    fn resume_reads(self: &Arc<Self>) -> Box<dyn FnOnce() + Send> {
        let me = Arc::downgrade(self);
        Box::new(move || {
            let Some(me) = me.upgrade() else { return };
            let mode = me.reading().mode;
            if mode != Mode::Owner {
                if let Some(reg) = me.registration.get() {
                    let _ = reg.want_read(true);
                }
            }
        })
    }

    /// The owner's read: what is ready, without blocking, at most `max_reads` times (plus what finishes a message
    /// begun, up to `OWNER_MESSAGE_READS` more); decoded messages go to the sink.
    pub fn read_ready(self: &Arc<Self>, max_reads: usize) -> ReadOutcome {
        self.read_with(max_reads, OWNER_MESSAGE_READS)
    }

    fn read_with(self: &Arc<Self>, max_reads: usize, message_reads: usize) -> ReadOutcome {
        let mut rs = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if rs.ended {
            return ReadOutcome::Ended;
        }
        match catch_unwind(AssertUnwindSafe(|| {
            self.read_some(&mut rs, max_reads, message_reads)
        })) {
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

    fn read_some(
        self: &Arc<Self>,
        rs: &mut ReadState,
        max_reads: usize,
        mut message_reads: usize,
    ) -> ReadOutcome {
        let sink = &*self.sink;
        let mut reads = 0;
        while reads < max_reads {
            // The rest of a large frame goes straight into its own buffer; anything else through the read buffer.
            let direct = rs.decoder.direct().is_some();
            let shared = !direct && rs.size == READ_BUFFER_MIN;
            let mut lent = None;
            if shared {
                lent = SHARED_BUF.with(|cell| cell.take());
            }
            let missing = if shared {
                lent.is_none()
            } else {
                !direct && rs.buf.is_none()
            };
            if missing {
                match sys::ReadBuf::new(rs.size) {
                    Ok(buf) if shared => lent = Some(buf),
                    Ok(buf) => rs.buf = Some(buf),
                    Err(err) => {
                        sink.push(Event::ReadError(err));
                        self.end_stream(rs);
                        return ReadOutcome::Ended;
                    }
                }
            }
            // Back to the thread when this read is done with it, however it ends.
            let mut lent = LentBuf(lent);
            let (result, asked) = match rs.decoder.direct() {
                Some((frame, rest)) => (sys::recv_spare(self.sock.as_fd(), frame, rest), rest),
                None => {
                    let buf = match lent.0.as_ref() {
                        Some(_) => lent.get_mut(),
                        None => rs.buf.as_mut().expect("mapped above"),
                    };
                    (buf.recv(self.sock.as_fd()), rs.size)
                }
            };
            let got = match result {
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
            self.stats.received_bytes(got.n);
            rs.pending_fd.arrived(got.fds, |earlier| {
                stray(
                    sink,
                    earlier,
                    "a second file descriptor arrived before the first one's handle message",
                )
            });
            if got.fds_truncated {
                rs.pending_fd.lost();
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
                hold,
                buf,
                ..
            } = rs;
            let mut inbound = Inbound {
                channel: self,
                pending_fd,
                hold,
            };
            if direct {
                decoder.direct_filled(&mut inbound);
            } else {
                let buf = lent.0.as_ref().or(buf.as_ref()).expect("mapped above");
                decoder.feed(buf.filled(got.n), &mut inbound);
                if got.n > READ_BUFFER_MIN {
                    rs.big_reads += 1;
                }
            }
            if got.n < asked {
                return ReadOutcome::Idle;
            }
            // A large frame just made whole: whether more waits, the next read says (a frame begins with an
            // ordinary read, so this cannot go on).
            if direct && !rs.decoder.in_large_message() {
                continue;
            }
            // A full read: more is probably waiting. Below the largest size, read it again at once with more room
            // (a growth is not a burst, and does not count as one of `max_reads`).
            if !direct && rs.size < READ_BUFFER_MAX {
                self.grow_read_buffer(rs);
                continue;
            }
            if message_reads > 0 && rs.decoder.in_large_message() {
                message_reads -= 1;
            } else {
                reads += 1;
            }
        }
        ReadOutcome::Busy
    }

    fn grow_read_buffer(self: &Arc<Self>, rs: &mut ReadState) {
        rs.size = (rs.size * READ_BUFFER_GROWTH).min(READ_BUFFER_MAX);
        rs.buf = None;
        if !rs.shrink_set {
            rs.shrink_set = true;
            Self::shrink_after(Arc::downgrade(self), rs.big_reads);
        }
    }

    /// After `KEEP_BIG_BUFFER` without a read bigger than `READ_BUFFER_MIN` since `seen`, the read buffer goes back
    /// to that size; otherwise it looks again later.
    fn shrink_after(channel: std::sync::Weak<Channel>, seen: u64) {
        let shrink = move || {
            let Some(channel) = channel.upgrade() else {
                return;
            };
            let mut rs = channel.reader.lock().unwrap_or_else(|p| p.into_inner());
            if rs.ended {
                return;
            }
            if rs.big_reads != seen {
                let seen = rs.big_reads;
                drop(rs);
                return Self::shrink_after(Arc::downgrade(&channel), seen);
            }
            rs.size = READ_BUFFER_MIN;
            rs.buf = None;
            rs.shrink_set = false;
        };
        // No reactor, no timer: the buffer then keeps its size until the channel closes.
        let _ = reactor::after(KEEP_BIG_BUFFER, shrink);
    }

    /// The stream is over: report what was cut short, close what nobody claimed, fail what waits, say EOF.
    fn end_stream(self: &Arc<Self>, rs: &mut ReadState) {
        let sink = &*self.sink;
        rs.ended = true;
        let ReadState {
            decoder,
            pending_fd,
            hold,
            ..
        } = rs;
        decoder.finish(&mut Inbound {
            channel: self,
            pending_fd,
            hold,
        });
        // A handle NACKed and never sent again holds nothing back once the stream is over.
        rs.hold.release_all(|event| sink.push(event));
        while let Some(fd) = rs.pending_fd.finish() {
            stray(
                sink,
                fd,
                "a file descriptor arrived with no handle message before the channel closed",
            );
        }
        rs.buf = None;
        sys::shutdown(self.sock.as_fd());
        // Whichever thread read the end: the reactor has nothing more to read for us.
        self.stop_reactor_reads();
        // The peer is gone: fail what waits, and let queued writes fail rather than wait forever.
        self.state().peer_gone();
        self.report_progress();
        sink.push(Event::Eof);
        let waiters = {
            let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
            ended.ended = true;
            std::mem::take(&mut ended.waiters)
        };
        for waiter in waiters {
            waiter();
        }
    }
}

/// The thread's shared read buffer while one read uses it; given back when dropped.
struct LentBuf(Option<sys::ReadBuf>);

impl LentBuf {
    fn get_mut(&mut self) -> &mut sys::ReadBuf {
        self.0.as_mut().expect("lent")
    }
}

impl Drop for LentBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            SHARED_BUF.with(|cell| cell.set(Some(buf)));
        }
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
