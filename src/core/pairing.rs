//! Pairing received fds with their NODE_HANDLE envelopes, as a pure state machine (generic over the fd type, so
//! tests and fuzz targets can count what it hands out and what it drops).
//!
//! An fd rides with the first byte of its sender's message, so it arrives in the same read as, or before, the
//! envelope it belongs to; Node sends one per message. The slot holds the latest fd until an envelope claims it.
//! Every fd that comes in leaves exactly once: claimed by an envelope, returned as stray (a second fd before the
//! first one's envelope), or returned by `finish` at the end of the stream. At most one is ever held.
//!
//! Between two forkline ends that agreed to pipeline handles (`internal::Handshake::Pipeline`), several envelopes and their
//! fds may be in flight: the pairing is then a queue (`pipelined`). forkline's sender puts each fd on the first byte
//! of its envelope, alone in its sendmsg, and the kernel ends a read at a message that carries fds, so the fds come
//! in the order of their envelopes, each no later than its envelope's first byte: the oldest waiting fd is the next
//! envelope's. An fd the kernel dropped (MSG_CTRUNC) keeps its place as a gap (`lost`), so that its envelope is
//! answered NACK and the next one still gets its own fd. At most `PIPELINE_MAX` are held; an older one past that is a
//! stray.

use std::collections::VecDeque;

/// The most fds a pipelined pairing holds: twice the sender's window (`internal::HANDLES_IN_FLIGHT`).
pub const PIPELINE_MAX: usize = 2 * crate::core::internal::HANDLES_IN_FLIGHT;

/// The fds waiting for their envelopes.
#[derive(Debug)]
pub struct Pairing<T> {
    /// Node's protocol: the latest fd. Pipelined: every fd in order, `None` for one that was lost.
    pending: VecDeque<Option<T>>,
    pipelined: bool,
}

impl<T> Default for Pairing<T> {
    fn default() -> Self {
        Pairing {
            pending: VecDeque::new(),
            pipelined: false,
        }
    }
}

impl<T> Pairing<T> {
    /// From now on, fds queue in order for the envelopes that follow (the peer pipelines handles).
    pub fn pipeline(&mut self) {
        self.pipelined = true;
    }

    /// The fds that came with one read, in order. In Node's protocol each replaces the one waiting, which `stray`
    /// gets: an fd that nobody's envelope claimed before the next one came. Pipelined, each queues; past
    /// `PIPELINE_MAX` the oldest is a stray.
    pub fn arrived(&mut self, fds: impl IntoIterator<Item = T>, mut stray: impl FnMut(T)) {
        let room = if self.pipelined { PIPELINE_MAX } else { 1 };
        for fd in fds {
            if self.pending.len() == room {
                if let Some(Some(earlier)) = self.pending.pop_front() {
                    stray(earlier);
                }
            }
            self.pending.push_back(Some(fd));
        }
    }

    /// A read's fds were cut short (MSG_CTRUNC). Pipelined, the one that should have come keeps its place, so its
    /// envelope goes without it (NACK) and the next envelope still gets its own. Nothing to do in Node's protocol.
    pub fn lost(&mut self) {
        if self.pipelined {
            if self.pending.len() == PIPELINE_MAX {
                self.pending.pop_front();
            }
            self.pending.push_back(None);
        }
    }

    /// An envelope was decoded: the fd that belongs to it, or None when it never came (answered with a NACK).
    pub fn envelope(&mut self) -> Option<T> {
        self.pending.pop_front().flatten()
    }

    /// The stream ended: an fd no envelope claimed, if any (call until None).
    pub fn finish(&mut self) -> Option<T> {
        while let Some(slot) = self.pending.pop_front() {
            if slot.is_some() {
                return slot;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_fd_waits_earlier_ones_are_strays() {
        let mut p = Pairing::default();
        let mut strays = Vec::new();
        p.arrived([1, 2, 3], |fd| strays.push(fd));
        assert_eq!(strays, [1, 2]);
        assert_eq!(p.envelope(), Some(3));
        assert_eq!(p.envelope(), None, "an envelope without its fd");
        p.arrived([4], |fd| strays.push(fd));
        assert_eq!(p.finish(), Some(4));
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn pipelined_fds_wait_in_order_and_a_lost_one_keeps_its_place() {
        let mut p = Pairing::default();
        p.pipeline();
        let mut strays = Vec::new();
        p.arrived([1, 2], |fd| strays.push(fd));
        p.lost();
        p.arrived([4], |fd| strays.push(fd));
        assert_eq!(p.envelope(), Some(1));
        assert_eq!(p.envelope(), Some(2));
        assert_eq!(p.envelope(), None, "the lost one's envelope");
        assert_eq!(
            p.envelope(),
            Some(4),
            "the next envelope still gets its own"
        );
        p.arrived(0..PIPELINE_MAX as i32 + 2, |fd| strays.push(fd));
        assert_eq!(strays, [0, 1], "past the bound the oldest are strays");
        let mut left = Vec::new();
        while let Some(fd) = p.finish() {
            left.push(fd);
        }
        assert_eq!(left, (2..PIPELINE_MAX as i32 + 2).collect::<Vec<_>>());
    }
}
