//! Keeping a pipelining peer's messages in order around a handle that has to be sent again, as a pure state machine
//! (generic over what it holds, so tests count what comes out).
//!
//! In Node's protocol nothing follows a handle until its ACK, so a NACKed handle sent again is still the next
//! message. Pipelined (core/channel/handles.rs), later messages and handles are already on their way when the NACK
//! reaches the sender, and the handle sent again arrives after them. The receiver therefore holds everything that
//! arrives after an envelope it NACKed (a gap), until the sender's `NODE_HANDLE_RESEND` marker says that the next
//! envelope is that handle (it fills the gap, and what the gap held goes out behind it) or its `NODE_HANDLE_DROPPED`
//! says it gave up (what was held goes out without it). The sender sends handles again in the order of their NACKs,
//! so the oldest gap is the one filled. A handle sent again that is NACKed again while other gaps wait could come
//! back after theirs: then, and when more than `HOLD_MAX` messages or `HOLD_MAX_BYTES` wait (a peer that never
//! sends again must not grow this without end: held messages bypass the sink's backpressure), everything held goes
//! out at once and later ones arrive as they come, out of Node's order but never lost.

use std::collections::VecDeque;

/// The most messages held behind NACKed handles, and the most bytes.
pub const HOLD_MAX: usize = 4096;
pub const HOLD_MAX_BYTES: usize = 64 << 20;

#[derive(Debug)]
enum Slot<T> {
    /// Where a NACKed handle goes once it is sent again.
    Gap,
    /// A message and what it weighs.
    Held(T, usize),
}

#[derive(Debug)]
pub struct NackHold<T> {
    /// Empty, or a gap first: what precedes the oldest gap has gone out.
    slots: VecDeque<Slot<T>>,
    gaps: usize,
    /// What the held messages weigh, as `pass` was told.
    bytes: usize,
    /// The sender said the next envelope is one sent again.
    resend_next: bool,
}

impl<T> Default for NackHold<T> {
    fn default() -> Self {
        NackHold {
            slots: VecDeque::new(),
            gaps: 0,
            bytes: 0,
            resend_next: false,
        }
    }
}

impl<T> NackHold<T> {
    /// A message of `bytes` arrived: out now, or held behind a gap.
    pub fn pass(&mut self, item: T, bytes: usize, mut out: impl FnMut(T)) {
        if self.gaps == 0 {
            return out(item);
        }
        self.slots.push_back(Slot::Held(item, bytes));
        self.bytes = self.bytes.saturating_add(bytes);
        if self.slots.len() - self.gaps > HOLD_MAX || self.bytes > HOLD_MAX_BYTES {
            self.release_all(out);
        }
    }

    /// A first envelope was NACKed: what follows waits for it.
    pub fn nacked(&mut self) {
        self.slots.push_back(Slot::Gap);
        self.gaps += 1;
    }

    /// The sender's marker: the next envelope is one sent again.
    pub fn resend_announced(&mut self) {
        self.resend_next = true;
    }

    /// Whether the envelope at hand is one sent again (the marker counts once).
    pub fn take_resend(&mut self) -> bool {
        std::mem::take(&mut self.resend_next)
    }

    /// The handle sent again came: it takes the oldest gap's place, and what waited behind it goes out.
    pub fn resent(&mut self, item: T, mut out: impl FnMut(T)) {
        if self.gaps == 0 {
            return out(item);
        }
        self.slots.pop_front();
        self.gaps -= 1;
        out(item);
        self.drain(out);
    }

    /// The handle sent again was NACKed again: it is sent once more (or dropped), and fills the oldest gap then,
    /// unless other gaps wait, which it may now come after (see the module's comment).
    pub fn nacked_again(&mut self, out: impl FnMut(T)) {
        if self.gaps > 1 {
            self.release_all(out);
        }
    }

    /// The sender gave up on the oldest gap's handle: what waited behind it goes out.
    pub fn dropped(&mut self, out: impl FnMut(T)) {
        if self.gaps == 0 {
            return;
        }
        self.slots.pop_front();
        self.gaps -= 1;
        self.drain(out);
    }

    /// Everything held goes out, in order, and nothing waits any more (the stream ended, or too much waited).
    pub fn release_all(&mut self, mut out: impl FnMut(T)) {
        self.gaps = 0;
        self.bytes = 0;
        for slot in std::mem::take(&mut self.slots) {
            if let Slot::Held(item, _) = slot {
                out(item);
            }
        }
    }

    fn drain(&mut self, mut out: impl FnMut(T)) {
        while let Some(Slot::Held(..)) = self.slots.front() {
            if let Some(Slot::Held(item, bytes)) = self.slots.pop_front() {
                self.bytes = self.bytes.saturating_sub(bytes);
                out(item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        hold: &mut NackHold<i32>,
        step: impl FnOnce(&mut NackHold<i32>, &mut dyn FnMut(i32)),
    ) -> Vec<i32> {
        let mut got = Vec::new();
        step(hold, &mut |x| got.push(x));
        got
    }

    #[test]
    fn without_a_nack_everything_goes_out_at_once() {
        let mut h = NackHold::default();
        assert_eq!(run(&mut h, |h, out| h.pass(1, 1, out)), [1]);
        assert_eq!(
            run(&mut h, |h, out| h.resent(2, out)),
            [2],
            "no gap to fill"
        );
        assert_eq!(run(&mut h, |h, out| h.dropped(out)), [] as [i32; 0]);
    }

    #[test]
    fn what_follows_a_nacked_handle_waits_for_it_to_be_sent_again() {
        let mut h = NackHold::default();
        h.nacked();
        assert_eq!(run(&mut h, |h, out| h.pass(2, 1, out)), [] as [i32; 0]);
        assert_eq!(run(&mut h, |h, out| h.pass(3, 1, out)), [] as [i32; 0]);
        h.resend_announced();
        assert!(h.take_resend());
        assert!(!h.take_resend(), "the marker counts once");
        assert_eq!(run(&mut h, |h, out| h.resent(1, out)), [1, 2, 3]);
        assert_eq!(run(&mut h, |h, out| h.pass(4, 1, out)), [4]);
    }

    /// Handles 1 and 3 NACKed, 2 and 4 held behind them.
    fn two_gaps() -> NackHold<i32> {
        let mut h = NackHold::default();
        h.nacked();
        h.pass(2, 1, |_| panic!("held"));
        h.nacked();
        h.pass(4, 1, |_| panic!("held"));
        h
    }

    #[test]
    fn two_gaps_fill_in_the_order_of_their_nacks() {
        let mut h = two_gaps();
        assert_eq!(
            run(&mut h, |h, out| h.resent(1, out)),
            [1, 2],
            "up to the next gap"
        );
        assert_eq!(run(&mut h, |h, out| h.resent(3, out)), [3, 4]);
    }

    #[test]
    fn a_dropped_handle_lets_what_waited_behind_it_go() {
        let mut h = NackHold::default();
        h.nacked();
        h.pass(2, 1, |_| panic!("held"));
        h.nacked_again(|_| panic!("one gap: it still waits"));
        h.nacked();
        h.pass(4, 1, |_| panic!("held"));
        assert_eq!(run(&mut h, |h, out| h.dropped(out)), [2]);
        assert_eq!(run(&mut h, |h, out| h.resent(3, out)), [3, 4]);
    }

    #[test]
    fn a_second_nack_with_other_gaps_waiting_lets_everything_go() {
        let mut h = two_gaps();
        assert_eq!(run(&mut h, |h, out| h.nacked_again(out)), [2, 4]);
        assert_eq!(run(&mut h, |h, out| h.pass(5, 1, out)), [5]);
        assert_eq!(
            run(&mut h, |h, out| h.resent(1, out)),
            [1],
            "late, never lost"
        );
    }

    #[test]
    fn past_the_bound_everything_held_goes_out() {
        let mut h = NackHold::default();
        h.nacked();
        let mut got = Vec::new();
        for i in 0..=HOLD_MAX as i32 {
            h.pass(i, 1, |x| got.push(x));
        }
        assert_eq!(got, (0..=HOLD_MAX as i32).collect::<Vec<_>>());
        assert_eq!(
            run(&mut h, |h, out| h.pass(-1, 1, out)),
            [-1],
            "nothing waits any more"
        );
    }
}
