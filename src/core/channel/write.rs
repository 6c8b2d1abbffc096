//! The write side of a [`Channel`]: one ordered queue, written at once while the socket takes it and by the
//! reactor when the socket has room again, with the sending half of the NODE_HANDLE handshake (held writes behind an
//! unacknowledged handle, ACK, NACK and retransmission), write progress, and `close`.
//!
//! Pipelined (both ends forkline, handles.rs): up to `HANDLES_IN_FLIGHT` handles are on the wire unacknowledged,
//! ACKs and NACKs answer them in order, and only a handle past that window holds what follows it; other writes never
//! wait for an ACK.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, MutexGuard};

use nix::errno::Errno;

use super::{Channel, Event, WriteProgress, Written};
use crate::core::error::SysError;
use crate::core::internal::{Handshake, HANDLES_IN_FLIGHT};
use crate::os::sys;

/// Most iovecs the reactor hands one sendmsg (Linux's UIO_MAXIOV is 1024).
const MAX_IOV: usize = 256;
/// sendmsg calls per reactor turn, so that one channel with a deep queue cannot hold the reactor from the others.
const WRITES_PER_TURN: usize = 16;

/// Node's MAX_HANDLE_RETRANSMISSIONS: NACKs answered by sending the handle again before giving up.
pub(super) const MAX_HANDLE_RETRANSMISSIONS: u32 = 3;

#[derive(Debug)]
struct Chunk {
    data: Vec<u8>,
    sent: usize,
    /// Bytes of `data` already on the wire when it was queued (an owned write keeps its whole buffer rather than
    /// copying the unsent tail): they were never counted in `queued_bytes`.
    start: usize,
    /// 0 for the channel's own messages (ACK/NACK, retransmissions, cluster hand-offs), which complete no write of
    /// the owner's and do not count in its `queued_bytes`.
    seq: u64,
    /// Sent as SCM_RIGHTS with the chunk's first byte.
    fd: Option<Arc<OwnedFd>>,
    /// The chunk is the rest of a message the socket has begun to take: nothing may go between.
    begun: bool,
}

impl Chunk {
    fn new(data: Vec<u8>, seq: u64, fd: Option<Arc<OwnedFd>>) -> Self {
        Chunk {
            data,
            sent: 0,
            start: 0,
            seq,
            fd,
            begun: false,
        }
    }

    /// What is left of `data` after its first `sent` bytes went: an owned buffer is kept as it is, a borrowed
    /// one's tail is copied.
    fn rest(data: Cow<'_, [u8]>, sent: usize, seq: u64, fd: Option<Arc<OwnedFd>>) -> Self {
        match data {
            Cow::Owned(data) => Chunk {
                data,
                sent,
                start: sent,
                seq,
                fd,
                begun: sent > 0,
            },
            Cow::Borrowed(data) => Chunk {
                begun: sent > 0,
                ..Chunk::new(data[sent..].to_vec(), seq, fd)
            },
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
pub(super) struct WriteState {
    /// Ready to go, in order.
    queue: VecDeque<Chunk>,
    /// Written after a handle whose ACK has not come yet (pipelined: after a handle past the window): they wait, in
    /// order.
    held: VecDeque<Chunk>,
    /// Handles on the wire (or queued for it) whose ACK has not come, oldest first: at most one in Node's protocol.
    unacked: VecDeque<Unacked>,
    /// Both ends agreed to pipeline handles (handles.rs).
    pub(super) pipelined: bool,
    queued_bytes: usize,
    /// close() was called (or the peer is gone): shut down once nothing is left to send.
    closing: bool,
    next_seq: u64,
    progress: WriteProgress,
    /// The progress last handed out by `take_progress`, so each change is reported once.
    reported: WriteProgress,
    /// While the owner's turn runs (`defer_control`), our ACK/NACK answers wait here and leave with the owner's
    /// next write, in the same sendmsg, or at the end of the turn: a worker's answer to a handed-over connection
    /// then costs the primary one wake-up, not two.
    deferring: bool,
    deferred: Vec<u8>,
}

impl WriteState {
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.held.is_empty() && self.unacked.is_empty()
    }

    /// Whether a write now (a handle's if `handle`) must wait behind an unacknowledged handle: in Node's protocol
    /// anything while one is unacknowledged; pipelined, only a handle past the window; and anything behind a write
    /// that waits.
    pub(super) fn must_hold(&self, handle: bool) -> bool {
        if !self.held.is_empty() {
            return true;
        }
        if self.pipelined {
            handle && self.unacked.len() >= HANDLES_IN_FLIGHT
        } else {
            !self.unacked.is_empty()
        }
    }

    pub(super) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The front chunk is all on the wire: drops it and, for an owner's write, counts it done. True if it was one.
    fn pop_written(&mut self) -> bool {
        let Some(chunk) = self.queue.pop_front() else {
            return false;
        };
        if chunk.seq == 0 {
            return false;
        }
        self.queued_bytes = self
            .queued_bytes
            .saturating_sub(chunk.data.len() - chunk.start);
        self.progress.queued_bytes = self.queued_bytes;
        self.progress.done = self.progress.done.max(chunk.seq);
        true
    }

    fn add_queued(&mut self, n: usize) {
        self.queued_bytes += n;
        self.progress.queued_bytes = self.queued_bytes;
    }

    /// After an ACK (or giving up): held writes go out, up to and including the next handle, which then waits
    /// (pipelined: up to the first handle the window has no room for).
    pub(super) fn release_held(&mut self) {
        let window = if self.pipelined { HANDLES_IN_FLIGHT } else { 1 };
        while let Some(chunk) = self.held.front() {
            let handle = chunk.fd.clone();
            if handle.is_some() && self.unacked.len() >= window {
                break;
            }
            let chunk = self.held.pop_front().expect("looked at above");
            if let Some(fd) = handle.clone() {
                self.unacked.push_back(Unacked {
                    envelope: chunk.data.clone(),
                    fd,
                    retransmissions: 0,
                });
            }
            self.queue.push_back(chunk);
            if handle.is_some() && !self.pipelined {
                break;
            }
        }
    }

    /// The stream has ended (the reader's `end_stream`): no ACK can come now. Fails what waits behind a handle
    /// (and the rest with it), and marks the channel closing.
    pub(super) fn peer_gone(&mut self) {
        self.closing = true;
        if !self.held.is_empty() || !self.unacked.is_empty() {
            self.fail_all(SysError::new(Errno::EPIPE, "write"));
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
        self.unacked.clear();
        self.queued_bytes = 0;
        self.progress.queued_bytes = 0;
        if self.progress.error.is_none() {
            self.progress.error = Some(err);
        }
        self.progress.failed = self.progress.failed.max(last).max(self.progress.done);
    }
}

fn dup(fd: BorrowedFd<'_>) -> Result<Arc<OwnedFd>, SysError> {
    fd.try_clone_to_owned()
        .map(Arc::new)
        .map_err(|e| SysError::new(Errno::from_raw(e.raw_os_error().unwrap_or(0)), "dup"))
}

impl Channel {
    pub(super) fn state(&self) -> MutexGuard<'_, WriteState> {
        // A panic while holding this lock leaves plain data behind; carry on with it.
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `data` after every earlier write. Tries the socket at once, without blocking; what does not fit the
    /// reactor writes when the socket has room. Never blocks the caller on the peer. An owned buffer is queued as
    /// it is (a big message's unsent tail is not copied).
    pub fn write<'a>(
        self: &Arc<Self>,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<Written, SysError> {
        self.submit(data.into(), None, true).map(|(w, _)| w)
    }

    /// Like writing `buf` owned, but a buffer that went out whole at once comes back, emptied, so the caller can
    /// fill it again without allocating (and faulting in) new memory for its next message. One that had to be
    /// queued stays with the queue, and `buf` is left without capacity.
    pub fn write_from(self: &Arc<Self>, buf: &mut Vec<u8>) -> Result<Written, SysError> {
        let (written, back) = self.submit(Cow::Owned(std::mem::take(buf)), None, true)?;
        if let Some(mut back) = back {
            back.clear();
            *buf = back;
        }
        Ok(written)
    }

    /// Queues a NODE_HANDLE envelope with `fd` (which we duplicate and keep until the ACK).
    pub fn write_handle(
        self: &Arc<Self>,
        envelope: &[u8],
        fd: BorrowedFd<'_>,
    ) -> Result<Written, SysError> {
        self.submit(Cow::Borrowed(envelope), Some(dup(fd)?), true)
            .map(|(w, _)| w)
    }

    /// Like `write_handle`, for a handle the core sends on its own (a cluster hand-off): in order with the owner's
    /// writes, but taking none of their sequence numbers, so the owner's count stays its own.
    pub fn write_own_handle(
        self: &Arc<Self>,
        envelope: &[u8],
        fd: BorrowedFd<'_>,
    ) -> Result<(), SysError> {
        self.submit(Cow::Borrowed(envelope), Some(dup(fd)?), false)
            .map(drop)
    }

    pub(super) fn submit(
        self: &Arc<Self>,
        data: Cow<'_, [u8]>,
        fd: Option<Arc<OwnedFd>>,
        owners: bool,
    ) -> Result<(Written, Option<Vec<u8>>), SysError> {
        let mut st = self.state();
        if let Some(err) = st.progress.error {
            return Err(err);
        }
        if st.closing {
            let err = SysError::new(Errno::EPIPE, "write");
            self.stats.write_failed(&err);
            return Err(err);
        }
        // Deferred answers ride in front of this write; where they cannot (a handle's fd must start its own
        // sendmsg; a queue or a hold in the way), they go first on their own.
        if (fd.is_some() || !st.queue.is_empty() || st.must_hold(false))
            && self.flush_deferred(&mut st)
        {
            let err = st.progress.error;
            drop(st);
            self.report_progress();
            return Err(err.unwrap_or(SysError::new(Errno::EPIPE, "write")));
        }
        self.stats.sent(&data, self.advanced, fd.is_some());
        // The seq is only taken by a write that is accepted, so the owner can count the same writes.
        let seq = if owners { st.next_seq + 1 } else { 0 };
        let counted = |n: usize| if owners { n } else { 0 };
        if st.must_hold(fd.is_some()) {
            st.next_seq = st.next_seq.max(seq);
            st.add_queued(counted(data.len()));
            st.held.push_back(Chunk::new(data.into_owned(), seq, fd));
            let written = Written {
                seq,
                queued_bytes: st.queued_bytes,
                held: true,
            };
            return Ok((written, None));
        }
        if let Some(fd) = &fd {
            st.unacked.push_back(Unacked {
                envelope: data.to_vec(),
                fd: fd.clone(),
                retransmissions: 0,
            });
        }
        let mut sent = 0;
        if st.queue.is_empty() {
            let prefix = std::mem::take(&mut st.deferred);
            if !prefix.is_empty() {
                self.stats.sent(&prefix, self.advanced, false);
            }
            let result = if prefix.is_empty() {
                self.send_now(&data, fd.as_deref())
            } else {
                self.send_now_after(&prefix, &data).map(|(p, n)| {
                    if p < prefix.len() {
                        let mut rest = Chunk::new(prefix[p..].to_vec(), 0, None);
                        rest.begun = p > 0;
                        st.queue.push_back(rest);
                    }
                    n
                })
            };
            match result {
                Ok(n) => sent = n,
                Err(err) => {
                    if fd.is_some() {
                        st.unacked.pop_back();
                    }
                    st.progress.error = Some(err);
                    self.stats.write_failed(&err);
                    return Err(err);
                }
            }
            if sent == data.len() && st.queue.is_empty() {
                if owners {
                    st.next_seq = seq;
                    st.progress.done = seq;
                    // The caller learns of this one from our return value; don't wake it again to say so.
                    if st.reported.done == seq - 1 {
                        st.reported.done = seq;
                    }
                }
                let written = Written {
                    seq,
                    queued_bytes: st.queued_bytes,
                    held: false,
                };
                let back = match data {
                    Cow::Owned(data) => Some(data),
                    Cow::Borrowed(_) => None,
                };
                return Ok((written, back));
            }
        }
        st.next_seq = st.next_seq.max(seq);
        // If any byte went, the fd went with it.
        let fd = if sent == 0 { fd } else { None };
        st.add_queued(counted(data.len() - sent));
        st.queue.push_back(Chunk::rest(data, sent, seq, fd));
        let queued_bytes = st.queued_bytes;
        self.kick_writer(&mut st)?;
        Ok((
            Written {
                seq,
                queued_bytes,
                held: false,
            },
            None,
        ))
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

    /// `prefix` then `data` in as few sendmsgs as the socket takes; returns how much of each went.
    fn send_now_after(&self, prefix: &[u8], data: &[u8]) -> Result<(usize, usize), SysError> {
        let (mut p, mut n) = (0, 0);
        while p < prefix.len() || n < data.len() {
            let bufs = [IoSlice::new(&prefix[p..]), IoSlice::new(&data[n..])];
            let sent = sys::send(self.sock.as_fd(), &bufs, None, false)?;
            if sent == 0 {
                break;
            }
            let to_prefix = sent.min(prefix.len() - p);
            p += to_prefix;
            n += sent - to_prefix;
        }
        Ok((p, n))
    }

    /// Starts or ends the owner's turn (reading and delivering on the JS thread): during it, fd-less control
    /// answers are deferred (see `WriteState::deferring`); ending it sends what is left of them.
    pub fn defer_control(self: &Arc<Self>, on: bool) {
        let mut st = self.state();
        st.deferring = on;
        if !on && self.flush_deferred(&mut st) {
            drop(st);
            self.report_progress();
        }
    }

    /// Sends the deferred answers now; true if the socket failed (as `control_locked`).
    fn flush_deferred(self: &Arc<Self>, st: &mut MutexGuard<'_, WriteState>) -> bool {
        if st.deferred.is_empty() {
            return false;
        }
        let data = std::mem::take(&mut st.deferred);
        self.control_locked(st, data, None, false)
    }

    /// The channel's own messages (ACK/NACK, retransmissions) go ahead of held and queued writes, but never into
    /// the middle of one: the writer sends whole chunks.
    pub(super) fn send_control(self: &Arc<Self>, data: Vec<u8>, fd: Option<Arc<OwnedFd>>) {
        let mut st = self.state();
        if st.deferring && fd.is_none() && !st.closing && st.progress.error.is_none() {
            st.deferred.extend_from_slice(&data);
            return;
        }
        if self.control_locked(&mut st, data, fd, false) {
            drop(st);
            self.report_progress();
        }
    }

    /// `send_control` under the lock; true if the socket failed (progress to report once the lock is dropped).
    /// `last`: after everything queued rather than ahead of it.
    pub(super) fn control_locked(
        self: &Arc<Self>,
        st: &mut MutexGuard<'_, WriteState>,
        data: Vec<u8>,
        fd: Option<Arc<OwnedFd>>,
        last: bool,
    ) -> bool {
        if st.closing || st.progress.error.is_some() {
            return false;
        }
        self.stats.sent(&data, self.advanced, fd.is_some());
        let mut sent = 0;
        if st.queue.is_empty() {
            match self.send_now(&data, fd.as_deref()) {
                Ok(n) if n == data.len() => return false,
                Ok(n) => sent = n,
                Err(err) => {
                    st.fail_all(err);
                    return true;
                }
            }
        }
        let fd = if sent == 0 { fd } else { None };
        // Ahead of the owner's writes, but never inside one the socket has begun to take.
        let at = if last {
            st.queue.len()
        } else {
            usize::from(st.queue.front().is_some_and(|c| c.begun || c.sent > 0))
        };
        st.queue
            .insert(at, Chunk::rest(Cow::Owned(data), sent, 0, fd));
        // A reactor that cannot run leaves the bytes queued; the channel then ends at the peer's next write.
        let _ = self.kick_writer(st);
        false
    }

    pub(super) fn on_ack(self: &Arc<Self>) {
        let mut st = self.state();
        if st.unacked.pop_front().is_none() {
            return;
        }
        st.release_held();
        self.send_released(st);
    }

    /// Sends what an ACK (or the start of pipelining) released from here, without waking the reactor for it, as
    /// far as the socket takes it now (a handle at a time is the common case: the next connection, the next socket).
    pub(super) fn send_released(self: &Arc<Self>, mut st: MutexGuard<'_, WriteState>) {
        let mut progressed = false;
        while let Some(chunk) = st.queue.front_mut() {
            let fd = chunk.fd.clone().filter(|_| chunk.sent == 0);
            let sent = match self.send_now(&chunk.data[chunk.sent..], fd.as_deref()) {
                Ok(n) => n,
                // The reactor meets the same error and fails what is queued.
                Err(_) => break,
            };
            if sent > 0 {
                chunk.fd = None;
            }
            chunk.sent += sent;
            if chunk.sent < chunk.data.len() {
                break;
            }
            progressed |= st.pop_written();
        }
        if !st.queue.is_empty() {
            let _ = self.kick_writer(&mut st);
        }
        self.shut_down_if_done(&st);
        drop(st);
        if progressed {
            self.report_progress();
        }
    }

    /// Sends the unacknowledged handle again (the oldest: answers come in order); false once it has been sent too
    /// often (it is then dropped).
    pub(super) fn on_nack(self: &Arc<Self>) -> bool {
        let mut st = self.state();
        let Some(mut unacked) = st.unacked.pop_front() else {
            return true;
        };
        let marked = self.peer_holds_after_nack();
        if unacked.retransmissions == MAX_HANDLE_RETRANSMISSIONS {
            st.release_held();
            // The peer lets go of what it held for this handle.
            if marked && self.resend_marker(&mut st, Handshake::Dropped) {
                drop(st);
                self.report_progress();
                return false;
            }
            let _ = self.kick_writer(&mut st);
            return false;
        }
        unacked.retransmissions += 1;
        let (envelope, fd) = (unacked.envelope.clone(), unacked.fd.clone());
        // Its answer now comes after those of the handles already on their way: pipelined, it goes after them too,
        // so that answers and unacknowledged handles stay in the same order; the marker before it tells the peer
        // to deliver it in its first place.
        let pipelined = st.pipelined;
        st.unacked.push_back(unacked);
        if pipelined || marked {
            let failed = (marked && self.resend_marker(&mut st, Handshake::Resend))
                || self.control_locked(&mut st, envelope, Some(fd), true);
            if failed {
                drop(st);
                self.report_progress();
            }
            return true;
        }
        drop(st);
        self.send_control(envelope, Some(fd));
        true
    }

    /// Asks the reactor to write the queue once the socket has room.
    fn kick_writer(self: &Arc<Self>, _st: &mut WriteState) -> Result<(), SysError> {
        self.registration()?
            .want_write(true)
            .map_err(super::reactor_error)
    }

    /// After close(): once everything is on the wire and acknowledged, shut the socket down (the peer sees EOF).
    fn shut_down_if_done(&self, st: &WriteState) {
        if st.closing && st.idle() && st.progress.error.is_none() {
            sys::shutdown(self.sock.as_fd());
        }
    }

    /// The reactor's turn at writing: a bounded number of sendmsg calls, then back to the others.
    pub(super) fn on_writable(self: &Arc<Self>) {
        let mut st = self.state();
        match self.send_queued(&mut st) {
            Ok(()) => {}
            Err(err) => {
                // The peer is gone: nothing queued will ever arrive. Fail it all, loudly.
                st.fail_all(err);
            }
        }
        if st.queue.is_empty() {
            if let Some(reg) = self.registration.get() {
                let _ = reg.want_write(false);
            }
            self.shut_down_if_done(&st);
        }
        drop(st);
        self.written_cv.notify_all();
        self.report_progress();
    }

    /// Sends queued chunks without blocking, in as few syscalls as the socket allows, until it is full or
    /// `WRITES_PER_TURN` calls have been made.
    fn send_queued(&self, st: &mut WriteState) -> Result<(), SysError> {
        for _ in 0..WRITES_PER_TURN {
            if st.queue.is_empty() {
                break;
            }
            // One sendmsg per fd: an fd rides with its own chunk's first byte, never with an earlier chunk's.
            let first = &st.queue[0];
            let fd = first.fd.clone().filter(|_| first.sent == 0);
            let mut iov = vec![IoSlice::new(&first.data[first.sent..])];
            iov.extend(
                st.queue
                    .iter()
                    .skip(1)
                    .take(MAX_IOV - 1)
                    .take_while(|c| c.fd.is_none())
                    .map(|c| IoSlice::new(&c.data[c.sent..])),
            );
            let mut n = sys::send(
                self.sock.as_fd(),
                &iov,
                fd.as_deref().map(|f| f.as_fd()),
                false,
            )?;
            drop(iov);
            if n == 0 {
                break;
            }
            st.queue[0].fd = None;
            while n > 0 {
                let Some(c) = st.queue.front_mut() else { break };
                let take = n.min(c.data.len() - c.sent);
                c.sent += take;
                n -= take;
                if c.sent == c.data.len() {
                    st.pop_written();
                }
            }
        }
        Ok(())
    }

    /// Tells the owner how far the writes got, if that changed since it last heard.
    pub(super) fn report_progress(&self) {
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

    /// Whether writes wait behind an unacknowledged handle.
    pub(super) fn has_held_writes(&self) -> bool {
        !self.state().held.is_empty()
    }

    /// Whether a handle (or memfd marker) sent on this channel still waits for the peer's ACK.
    pub fn awaiting_ack(&self) -> bool {
        !self.state().unacked.is_empty()
    }

    /// How many writes wait behind an unacknowledged handle, if a write now would wait too (else None): Node's
    /// `_handleQueue.length` before a send. After an ACK what waited goes out up to and including the next handle,
    /// and what follows that handle is the new queue, as in Node's ACK handler.
    pub fn held_writes(&self) -> Option<usize> {
        let st = self.state();
        if !st.must_hold(false) {
            return None;
        }
        // Pipelined, writes wait only behind a handle past the window, the first held: Node's handle in flight.
        Some(if st.pipelined {
            st.held.len().saturating_sub(1)
        } else {
            st.held.len()
        })
    }

    /// Blocks until every write queued so far is on the wire (or can never be), for at most `timeout`; true if
    /// nothing is left. For a process about to exit: the reactor thread dies with it. Writes held behind an
    /// unacknowledged handle cannot leave without a read, which nobody does here, so they do not count.
    pub fn wait_written(self: &Arc<Self>, timeout: std::time::Duration) -> bool {
        let mut st = self.state();
        // Answers deferred for a turn that the exit cut short (process.exit() in a listener) go first.
        st.deferring = false;
        self.flush_deferred(&mut st);
        let (st, _) = self
            .written_cv
            .wait_timeout_while(st, timeout, |st| {
                st.progress.error.is_none() && !st.queue.is_empty()
            })
            .unwrap_or_else(|p| p.into_inner());
        st.queue.is_empty()
    }

    /// Ends the channel once every write queued so far is on the wire (and any handle acknowledged); the reader
    /// then sees EOF.
    pub fn close(self: &Arc<Self>) {
        let mut st = self.state();
        if st.closing {
            return;
        }
        let failed = self.flush_deferred(&mut st);
        st.closing = true;
        if failed {
            drop(st);
            self.report_progress();
            return;
        }
        // With nothing left to send we shut down now; otherwise once it is sent (and any handle acknowledged).
        if st.idle() {
            sys::shutdown(self.sock.as_fd());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owned_tail_counts_only_its_unsent_bytes() {
        let mut st = WriteState::default();
        st.add_queued(900);
        st.queue
            .push_back(Chunk::rest(Cow::Owned(vec![0; 1000]), 100, 1, None));
        st.add_queued(50);
        st.queue
            .push_back(Chunk::rest(Cow::Borrowed(&[0; 100]), 50, 2, None));
        assert_eq!(st.queue[1].data.len(), 50, "a borrowed tail is copied");
        assert_eq!(st.queued_bytes(), 950);
        assert!(st.pop_written());
        assert_eq!(st.queued_bytes(), 50);
        assert!(st.pop_written());
        assert_eq!((st.queued_bytes(), st.progress.done), (0, 2));
    }
}
