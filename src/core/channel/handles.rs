//! Handles pipelined between two forkline ends, on a [`Channel`]: the announce this end sends when it opens (or in
//! answer), and what changes once both ends announced. In Node's protocol a sender holds every write behind a handle
//! until its NODE_HANDLE_ACK, one round trip per handle; pipelined, up to `internal::HANDLES_IN_FLIGHT` handles are
//! in flight, the receiver pairs fds with envelopes in order (core/pairing.rs) and answers each as before, and the
//! sender matches answers to handles in order (write.rs).
//!
//! Negotiated as memfds are (memfd.rs): the child runtime's end announces `{cmd: 'NODE_HANDLE_PIPELINE'}` first
//! thing on the channel, in either serialization; the parent answers only if it started its child on the runtime.
//! A plain Node child never announces, so the parent never answers it nor pipelines to it: it sees Node's protocol,
//! one handle at a time, byte for byte. An end receives pipelined from the moment it announced (it then pairs in
//! order, which for one handle at a time is the same as Node's pairing), and sends pipelined once the peer's announce
//! has come too. Unless `FORKLINE_HANDLE_PIPELINE=0` (napi/side.rs), inherited by children.
//!
//! A NACK (the receiver's fd was lost, e.g. at EMFILE) is answered by sending that handle again after those on
//! their way, behind a `NODE_HANDLE_RESEND` marker, or `NODE_HANDLE_DROPPED` once it was sent too often; the receiver
//! holds what followed the NACKed envelope until then (core/nack_hold.rs), so messages arrive in Node's order.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Channel;
use crate::core::internal::{self, Handshake};
use crate::os::sys;

/// Who has said what.
#[derive(Debug, Default)]
pub(super) struct PipelineState {
    /// We announced (and so pair received fds in order).
    ours: AtomicBool,
    /// We announce in answer to the peer's announce (the parent's end of a runtime child).
    answer: AtomicBool,
    /// The peer announced: it pairs in order and holds what follows a NACKed handle, so a handle sent again goes
    /// with our markers (`Handshake::Resend`, `Handshake::Dropped`; core/nack_hold.rs).
    peer: AtomicBool,
}

impl Channel {
    /// Announces, before anything else is written, that this end takes handles pipelined (the child runtime's end,
    /// whose parent is always forkline). A failed send announces nothing: the peer then never pipelines to us.
    pub fn announce_pipeline(&self) {
        if self.pipeline.ours.swap(true, Ordering::AcqRel) {
            return;
        }
        self.reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending_fd
            .pipeline();
        let frame = internal::encode(Handshake::Pipeline, self.advanced);
        if !matches!(sys::send(self.sock.as_fd(), &[IoSlice::new(&frame)], None, false), Ok(n) if n == frame.len())
        {
            // Nothing went: the peer sends one handle at a time, which in-order pairing takes as Node's does.
            self.pipeline.ours.store(false, Ordering::Release);
        }
    }

    /// Announces in answer, once the peer has announced (the parent's end of a runtime child).
    pub fn answer_pipeline(&self) {
        self.pipeline.answer.store(true, Ordering::Release);
    }

    /// Whether handles go pipelined (both ends announced).
    pub fn pipelines_handles(&self) -> bool {
        self.state().pipelined
    }

    /// Whether the peer holds what follows a handle it NACKed until our marker says it comes again.
    pub(super) fn peer_holds_after_nack(&self) -> bool {
        self.pipeline.peer.load(Ordering::Acquire)
    }

    /// Whether this end holds what follows a handle it NACKed: it announced, so the peer marks what it sends again.
    pub(super) fn holds_after_nack(&self) -> bool {
        self.pipeline.ours.load(Ordering::Acquire)
    }

    /// A marker for the peer's hold, behind everything queued (`control_locked`'s `last`); true if the socket
    /// failed.
    pub(super) fn resend_marker(
        self: &Arc<Self>,
        st: &mut std::sync::MutexGuard<'_, super::write::WriteState>,
        kind: Handshake,
    ) -> bool {
        let frame = internal::encode(kind, self.advanced);
        let len = frame.len();
        let failed = self.control_locked(st, frame, None, true);
        self.stats.own_sent(len);
        failed
    }

    /// The peer announced (`len` bytes, on the reader's thread, `pairing` being its fd pairing): answer if we are
    /// to, and send pipelined from now on if we announced.
    pub(super) fn peer_pipelines(
        self: &Arc<Self>,
        len: usize,
        pairing: &mut crate::core::pairing::Pairing<std::os::fd::OwnedFd>,
    ) {
        self.stats.own_received(len);
        self.pipeline.peer.store(true, Ordering::Release);
        if self.pipeline.answer.load(Ordering::Acquire)
            && !self.pipeline.ours.swap(true, Ordering::AcqRel)
        {
            pairing.pipeline();
            let frame = internal::encode(Handshake::Pipeline, self.advanced);
            let len = frame.len();
            // Through the queue: other writes may be under way, and a frame must not land inside one.
            self.send_control(frame, None);
            self.stats.own_sent(len);
        }
        if !self.pipeline.ours.load(Ordering::Acquire) {
            return;
        }
        let mut st = self.state();
        if st.pipelined {
            return;
        }
        st.pipelined = true;
        // Writes held behind the handle in flight may go now, as far as the window allows.
        st.release_held();
        self.send_released(st);
    }
}
