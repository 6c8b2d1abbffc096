//! One end of a Node IPC channel: a socket, a decoder on a reader thread, and an ordered write queue.
//!
//! Symmetric by design: nothing here knows whether it is the parent's or the child's end, or about napi. Events go
//! to an [`EventSink`]; the napi layer's sink wakes JS once per batch, a test's sink is a plain queue.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use nix::errno::Errno;

use crate::error::{Code, SysError};
use crate::frame::{Decoder, Frame, FrameSink};
use crate::sys;

/// Read size per recvmsg. Deno's ReadBuffer starts at 64 KiB; a node child writes one message per syscall, so a
/// read rarely finds more than this waiting.
const READ_BUFFER: usize = 64 * 1024;

/// Most iovecs the writer hands one sendmsg (Linux's UIO_MAXIOV is 1024).
const MAX_IOV: usize = 256;

/// What a channel reports, in the order it happened.
#[derive(Debug)]
pub enum Event {
    /// A decoded frame: json lines, an advanced frame, or a decode error.
    Frame(Frame),
    /// A read failed; EOF follows.
    ReadError(SysError),
    /// The peer closed its end (or we shut ours down). Always the channel's last event.
    Eof,
    /// The child exited (pushed by the reaper onto the same queue, so it follows the messages read before it).
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// Where a channel's events go. `push` may block: that is the backpressure that stops the reader reading.
pub trait EventSink: Send + Sync + 'static {
    fn push(&self, event: Event);
    /// Writes made progress; nothing to queue, but the owner may want to know (send callbacks, 'drain').
    fn poke(&self);
}

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
    seq: u64,
}

#[derive(Debug, Default)]
struct WriteState {
    queue: VecDeque<Chunk>,
    queued_bytes: usize,
    /// The writer thread holds chunks outside the lock while it sends; direct writes must wait their turn.
    in_flight: bool,
    writer_started: bool,
    /// close() was called: shut down once the queue is empty.
    closing: bool,
    next_seq: u64,
    progress: WriteProgress,
    /// The progress last handed out by `take_progress`, so each change is reported once.
    reported: WriteProgress,
}

/// One end of an IPC channel.
pub struct Channel {
    sock: Arc<OwnedFd>,
    sink: Arc<dyn EventSink>,
    write: Mutex<WriteState>,
    wake_writer: Condvar,
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

impl Channel {
    /// Takes ownership of `sock` and starts its reader thread.
    pub fn open(
        sock: OwnedFd,
        decoder: Decoder,
        sink: Arc<dyn EventSink>,
    ) -> Result<Arc<Channel>, SysError> {
        let channel = Arc::new(Channel {
            sock: Arc::new(sock),
            sink,
            write: Mutex::new(WriteState::default()),
            wake_writer: Condvar::new(),
        });
        let reader = channel.clone();
        thread::Builder::new()
            .name("forkline-reader".into())
            .spawn(move || reader.read_loop(decoder))
            .map_err(|e| SysError::new(Errno::from_raw(e.raw_os_error().unwrap_or(0)), "thread"))?;
        Ok(channel)
    }

    fn state(&self) -> MutexGuard<'_, WriteState> {
        // A panic while holding this lock leaves plain data behind; carry on with it.
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `data` after every earlier write. Tries the socket at once, without blocking; what does not fit goes
    /// to the writer thread. Never blocks the caller on the peer.
    pub fn write(self: &Arc<Self>, data: &[u8]) -> Result<Written, SysError> {
        let mut st = self.state();
        if let Some(err) = st.progress.error {
            return Err(err);
        }
        if st.closing {
            return Err(SysError::new(Errno::EPIPE, "write"));
        }
        // The seq is only taken by a write that is accepted, so JS can count the same writes.
        let seq = st.next_seq + 1;
        let mut sent = 0;
        if st.queue.is_empty() && !st.in_flight {
            while sent < data.len() {
                match sys::send(
                    self.sock.as_fd(),
                    &[IoSlice::new(&data[sent..])],
                    None,
                    false,
                ) {
                    Ok(0) => break,
                    Ok(n) => sent += n,
                    Err(err) => {
                        st.progress.error = Some(err);
                        return Err(err);
                    }
                }
            }
            st.next_seq = seq;
            if sent == data.len() {
                st.progress.done = seq;
                return Ok(Written {
                    seq,
                    queued_bytes: 0,
                });
            }
        }
        st.next_seq = seq;
        st.queue.push_back(Chunk {
            data: data[sent..].to_vec(),
            sent: 0,
            seq,
        });
        st.queued_bytes += data.len() - sent;
        st.progress.queued_bytes = st.queued_bytes;
        let queued_bytes = st.queued_bytes;
        self.start_writer(&mut st)?;
        self.wake_writer.notify_one();
        Ok(Written { seq, queued_bytes })
    }

    fn start_writer(self: &Arc<Self>, st: &mut WriteState) -> Result<(), SysError> {
        if st.writer_started {
            return Ok(());
        }
        let me = self.clone();
        thread::Builder::new()
            .name("forkline-writer".into())
            .spawn(move || {
                if catch_unwind(AssertUnwindSafe(|| me.write_loop())).is_err() {
                    me.sink.push(Event::Frame(Frame::Error {
                        code: Code::Internal,
                        message: "forkline's writer thread failed; the channel is closed".into(),
                    }));
                    sys::shutdown(me.sock.as_fd());
                }
            })
            .map_err(|e| SysError::new(Errno::from_raw(e.raw_os_error().unwrap_or(0)), "thread"))?;
        st.writer_started = true;
        Ok(())
    }

    fn write_loop(&self) {
        let mut st = self.state();
        loop {
            while st.queue.is_empty() && !st.closing {
                st = self.wake_writer.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.queue.is_empty() {
                // closing, and everything queued before close() is on the wire.
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
                    let bytes: usize = batch.iter().map(|c| c.data.len()).sum();
                    st.queued_bytes -= bytes;
                    st.progress.done = batch.last().map_or(st.progress.done, |c| c.seq);
                }
                Err(err) => {
                    // The peer is gone: nothing queued will ever arrive. Fail it all, loudly.
                    let last = st
                        .queue
                        .back()
                        .or(batch.last())
                        .map_or(st.progress.done, |c| c.seq);
                    st.queue.clear();
                    st.queued_bytes = 0;
                    st.progress.error = Some(err);
                    st.progress.failed = last;
                }
            }
            st.progress.queued_bytes = st.queued_bytes;
            drop(st);
            self.sink.poke();
            st = self.state();
            if st.progress.error.is_some() {
                return;
            }
        }
    }

    fn send_all(&self, batch: &mut [Chunk]) -> Result<(), SysError> {
        let mut first = 0;
        while first < batch.len() {
            let iov: Vec<IoSlice<'_>> = batch[first..]
                .iter()
                .take(MAX_IOV)
                .map(|c| IoSlice::new(&c.data[c.sent..]))
                .collect();
            let mut n = sys::send(self.sock.as_fd(), &iov, None, true)?;
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

    /// Write progress, if it changed since the last call.
    pub fn take_progress(&self) -> Option<WriteProgress> {
        let mut st = self.state();
        if st.progress == st.reported {
            return None;
        }
        st.reported = st.progress;
        Some(st.progress)
    }

    /// Ends the channel once every write queued so far is on the wire; the reader then sees EOF.
    pub fn close(&self) {
        let mut st = self.state();
        if st.closing {
            return;
        }
        st.closing = true;
        if st.queue.is_empty() && !st.in_flight {
            sys::shutdown(self.sock.as_fd());
        } else {
            self.wake_writer.notify_one();
        }
    }

    fn read_loop(&self, mut decoder: Decoder) {
        let (sock, sink) = (&*self.sock, &*self.sink);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut buf = vec![0u8; READ_BUFFER];
            loop {
                match sys::recv(sock.as_fd(), &mut buf) {
                    Ok(got) => {
                        if !got.fds.is_empty() || got.fds_truncated {
                            // TODO(#3): NODE_HANDLE envelopes claim their fd here. Until then every fd is stray: closed.
                            sink.push(Event::Frame(Frame::Error {
                                code: Code::StrayFd,
                                message: format!(
                                    "{} file descriptor(s) arrived with no handle message; closed",
                                    got.fds.len()
                                ),
                            }));
                            drop(got.fds);
                        }
                        if got.n == 0 {
                            break;
                        }
                        decoder.feed(&buf[..got.n], &mut Frames(sink));
                    }
                    // A reset is how a crashed peer says goodbye: EOF, as Node treats it.
                    Err(err) if err.errno == Errno::ECONNRESET => break,
                    Err(err) => {
                        sink.push(Event::ReadError(err));
                        break;
                    }
                }
            }
            decoder.finish(&mut Frames(sink));
        }));
        if outcome.is_err() {
            sink.push(Event::Frame(Frame::Error {
                code: Code::Internal,
                message: "forkline's reader thread failed; the channel is closed".into(),
            }));
        }
        sys::shutdown(sock.as_fd());
        // The peer is gone: let the writer fail what is queued and exit rather than wait forever.
        self.state().closing = true;
        self.wake_writer.notify_one();
        sink.push(Event::Eof);
    }

    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }
}

struct Frames<'a>(&'a dyn EventSink);

impl FrameSink for Frames<'_> {
    fn frame(&mut self, frame: Frame) {
        self.0.push(Event::Frame(frame));
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
            let _ = self.0.send(event);
        }
        fn poke(&self) {
            let _ = self.1.send(());
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

    fn next(rx: &Receiver<Event>) -> Event {
        rx.recv_timeout(Duration::from_secs(5)).expect("event")
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
        let (ch, mut peer, _rx, pokes) = open(1024);
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
        pokes.recv_timeout(Duration::from_secs(5)).unwrap();
        let p = loop {
            let p = ch.take_progress().unwrap_or_default();
            if p.done == 20 {
                break p;
            }
            pokes.recv_timeout(Duration::from_secs(5)).unwrap();
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
    fn stray_fd_is_reported_and_closed() {
        let (_ch, peer, rx, _) = open(1024);
        let (x, _y) = sys::socketpair().unwrap();
        sys::send(peer.as_fd(), &[IoSlice::new(b"1\n")], Some(x.as_fd()), true).unwrap();
        assert!(matches!(
            next(&rx),
            Event::Frame(Frame::Error {
                code: Code::StrayFd,
                ..
            })
        ));
        assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "1\n"));
    }
}
