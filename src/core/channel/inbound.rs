//! What the reader does with each decoded frame of a [`Channel`]: a received fd is paired with its NODE_HANDLE
//! envelope and the handshake is answered; on a cluster worker's channel the `newconn` replies are routed to
//! the primary's distributor; everything else passes through to the sink untouched.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::{Channel, Event};
use crate::core::error::Code;
use crate::core::frame::{Frame, FrameSink};
use crate::core::internal::{self, Handshake, NewconnReply};
use crate::core::nack_hold::NackHold;
use crate::core::pairing::Pairing;

/// The reader's view of decoded frames: pairs a received fd with its NODE_HANDLE envelope and answers the
/// handshake; everything else passes through, in order also around a handle sent again (nack_hold.rs).
pub(super) struct Inbound<'a> {
    pub(super) channel: &'a Arc<Channel>,
    pub(super) pending_fd: &'a mut Pairing<OwnedFd>,
    pub(super) hold: &'a mut NackHold<Event>,
}

impl Inbound<'_> {
    /// Errors go out at once; messages in order, behind a NACKed handle still to come.
    fn push(&mut self, frame: Frame) {
        match frame {
            Frame::Error { .. } => self.channel.sink.push(Event::Frame(frame)),
            frame => self.deliver(Event::Frame(frame)),
        }
    }

    pub(super) fn deliver(&mut self, event: Event) {
        let sink = &self.channel.sink;
        let bytes = weight(&event);
        self.hold.pass(event, bytes, |event| sink.push(event));
    }

    /// What an envelope (or large-message marker) whose fd came brings: in its place if it was sent again.
    pub(super) fn deliver_with_fd(&mut self, event: Event) {
        if self.hold.take_resend() {
            let sink = &self.channel.sink;
            self.hold.resent(event, |event| sink.push(event));
        } else {
            self.deliver(event);
        }
    }

    /// An envelope (or marker) whose fd did not come: NACK it, and while pipelined hold what follows until the
    /// sender sends it again or gives up.
    pub(super) fn nack(&mut self, advanced: bool) {
        self.channel
            .send_control(internal::encode(Handshake::Nack, advanced), None);
        if !self.channel.holds_after_nack() {
            return;
        }
        let sink = &self.channel.sink;
        if self.hold.take_resend() {
            self.hold.nacked_again(|event| sink.push(event));
        } else {
            self.hold.nacked();
        }
    }

    /// What was sent again in a gap's place came, but cannot be delivered: the gap is over all the same.
    pub(super) fn resent_lost(&mut self) {
        if self.hold.take_resend() {
            let sink = &self.channel.sink;
            self.hold.dropped(|event| sink.push(event));
        }
    }

    /// The sender's own markers around a handle sent again (pipelined only; counted as no message).
    fn resend_marker(&mut self, kind: Handshake, envelope: &Frame) {
        self.channel.stats.own_received(envelope.wire_len());
        let sink = &self.channel.sink;
        match kind {
            Handshake::Resend => self.hold.resend_announced(),
            _ => self.hold.dropped(|event| sink.push(event)),
        }
    }

    /// Acts on one handshake message; returns whether it is delivered on to JS (as Node emits it as
    /// 'internalMessage'), or `None` when it was an envelope consumed here.
    fn handshake(&mut self, kind: Handshake, envelope: Frame) -> Option<Frame> {
        let advanced = self.channel.advanced;
        match kind {
            Handshake::Handle => match self.pending_fd.envelope() {
                Some(fd) => {
                    self.channel.stats.received_handle();
                    self.channel
                        .send_control(internal::encode(Handshake::Ack, advanced), None);
                    self.deliver_with_fd(Event::Handle { envelope, fd });
                    None
                }
                None => {
                    // Node's answer to an envelope whose fd did not make it (e.g. MSG_CTRUNC): send it again.
                    self.nack(advanced);
                    None
                }
            },
            Handshake::Resend | Handshake::Dropped => {
                self.resend_marker(kind, &envelope);
                None
            }
            Handshake::Ack => {
                self.channel.on_ack();
                self.delivered(envelope)
            }
            Handshake::Pipeline => {
                self.channel
                    .peer_pipelines(envelope.wire_len(), self.pending_fd);
                None
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

/// What a message held behind a NACKed handle weighs, for the hold's bound.
fn weight(event: &Event) -> usize {
    match event {
        Event::Frame(frame)
        | Event::Handle {
            envelope: frame, ..
        } => frame.wire_len(),
        Event::LargeFrame(bytes) => bytes.len(),
        _ => 0,
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
            // A forkline peer's announce and large-message markers (memfd.rs), never counted as messages.
            Frame::Frames(run) if crate::core::memfd::frames_may_hold(&run) => {
                self.memfd_frames(run)
            }
            other => self.pass_on(other),
        }
    }
}

impl Inbound<'_> {
    pub(super) fn pass_on(&mut self, frame: Frame) {
        self.channel.stats.received(&frame, self.channel.advanced);
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
