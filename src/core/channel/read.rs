//! The read side of a [`Channel`]: reads on the owner's thread (`read_ready`), a reader thread for the whole
//! stream (`spawn_reader`) or a burst thread for heavy traffic (`read_burst`), and the end of the stream.
//! Decoded frames go through [`Inbound`] (inbound.rs) before they reach the sink.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;

use nix::errno::Errno;

use super::inbound::Inbound;
use super::{thread_error, Channel, Event, EventSink, ReadOutcome};
use crate::core::error::{Code, SysError};
use crate::core::frame::{Decoder, Frame};
use crate::core::pairing::Pairing;
use crate::os::sys;

/// Read size per recvmsg. Deno's ReadBuffer starts at 64 KiB; the perfect parent of shared/perf-limits.md reads
/// 256 KiB, and a message that fits is read in one go on the JS thread (a read that fills the buffer counts as a
/// burst and goes to the burst thread).
pub(super) const READ_BUFFER: usize = 256 * 1024;

/// The read side's state: one reader at a time, on whichever thread reads.
pub(super) struct ReadState {
    pub(super) decoder: Decoder,
    /// An fd waiting for its NODE_HANDLE envelope.
    pub(super) pending_fd: Pairing<OwnedFd>,
    pub(super) buf: Vec<u8>,
    pub(super) ended: bool,
}

#[derive(Debug, Default)]
pub(super) struct Burst {
    started: bool,
    requested: bool,
}

/// How long a reader thread started for a burst keeps waiting for more before handing reading back.
const READER_IDLE_MS: i32 = 2;
/// Reads a reader thread makes between checks for room in the owner's queue.
const READS_PER_TURN: usize = 16;

impl Channel {
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
            self.stats.received_bytes(got.n);
            rs.pending_fd.arrived(got.fds, |earlier| {
                stray(
                    sink,
                    earlier,
                    "a second file descriptor arrived before the first one's handle message",
                )
            });
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
        if let Some(fd) = rs.pending_fd.finish() {
            stray(
                sink,
                fd,
                "a file descriptor arrived with no handle message before the channel closed",
            );
        }
        rs.buf = Vec::new();
        sys::shutdown(self.sock.as_fd());
        // The peer is gone: fail what waits, and let the writer exit rather than wait forever.
        self.state().peer_gone();
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
