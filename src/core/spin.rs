//! When an end keeps polling for its next message instead of going to sleep (busy polling), as decisions without
//! the clock or the event loop; `napi/busy_poll.rs` runs them on the JS thread's loop.
//!
//! Sleeping costs a round trip two wake-ups, and on a virtual machine a wake-up of an idle CPU costs more than the
//! whole message (tens of µs, most of an end's CPU per round trip). So after a send or a receive an end polls for a
//! short window, one episode, before it sleeps. A window given by the user (`busyPoll: µs`) is always polled.
//! By default (`Window::Auto`) the end polls only while polling pays: an episode in which nothing arrived doubles
//! the number of later episodes skipped (up to `MAX_SKIP`), and one in which something arrived resets it; a yield
//! that kept the CPU away for `CONTENDED` ends a default episode as a miss, since someone else had work for the
//! CPU. A peer that answers at once is then met awake; a slow or silent peer costs one window in `MAX_SKIP` sends.
//! Nor does a default episode start while the machine is crowded (tasks queue for its CPUs: `cpu_pressure.rs`),
//! when the CPU it would spend is one that some other task is waiting for.

use std::time::{Duration, Instant};

/// The default window: a node child answers a small message in ~10-35 µs of its own time on our machines.
pub(crate) const AUTO_WINDOW: Duration = Duration::from_micros(50);

/// Most episodes skipped after episodes that caught nothing: what a silent peer can cost is one window in this many.
pub(crate) const MAX_SKIP: u32 = 64;

/// A yield that gave the CPU away this long means another thread wanted it: this process's own threads, the peer
/// or the kernel's work for either. Polling then takes CPU from whoever does the work, so a default episode ends.
pub(crate) const CONTENDED: Duration = Duration::from_micros(30);

/// How long an end polls after traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Window {
    /// The user's `busyPoll`: always, that long.
    Fixed(Duration),
    /// The default: `AUTO_WINDOW`, while it pays.
    Auto,
}

impl Window {
    fn span(self) -> Duration {
        match self {
            Window::Fixed(span) => span,
            Window::Auto => AUTO_WINDOW,
        }
    }
}

/// What one turn of the event loop does while an episode runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The window passed: stop polling (the loop sleeps in epoll again).
    Stop,
    /// Nothing came since the last turn: give the CPU to whoever waits for it (often the peer just woken, queued
    /// on this CPU because a socket write wakes its reader where the writer runs) and poll again.
    Yield,
    /// Something came since the last turn: poll again at once.
    Poll,
}

/// One thread's busy polling: every end on the thread shares it, since one loop polls all their sockets.
#[derive(Debug, Default)]
pub(crate) struct SpinPolicy {
    /// Until when the running episode polls; None between episodes.
    deadline: Option<Instant>,
    /// Something arrived during the running episode.
    caught: bool,
    /// Something arrived since the last turn.
    fresh: bool,
    /// A user's window is part of the running episode: it polls whatever the contention.
    fixed: bool,
    /// Episodes to skip after the last ones caught nothing, and how many the next miss skips.
    skip: u32,
    penalty: u32,
    /// Tasks queue for the machine's CPUs: no default episode starts.
    crowded: bool,
}

impl SpinPolicy {
    /// An end sent something: poll for its window from now. True when an episode starts (start polling).
    pub(crate) fn sent(&mut self, now: Instant, window: Window) -> bool {
        self.extend(now, window)
    }

    /// A read brought something: it counts for the running episode, and the next message may follow.
    pub(crate) fn received(&mut self, now: Instant, window: Window) -> bool {
        if self.deadline.is_some() {
            self.caught = true;
            self.fresh = true;
        }
        self.extend(now, window)
    }

    /// Whether the machine's CPUs are crowded now (from `cpu_pressure.rs`).
    pub(crate) fn set_crowded(&mut self, crowded: bool) {
        self.crowded = crowded;
    }

    fn extend(&mut self, now: Instant, window: Window) -> bool {
        let until = now + window.span();
        let fixed = matches!(window, Window::Fixed(_));
        if let Some(deadline) = &mut self.deadline {
            *deadline = (*deadline).max(until);
            self.fixed |= fixed;
            return false;
        }
        if !fixed && self.crowded {
            return false;
        }
        if !fixed && self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        self.deadline = Some(until);
        self.caught = false;
        self.fresh = false;
        self.fixed = fixed;
        true
    }

    /// One turn of the loop while polling. `gave_away`: how long the last `Turn::Yield` left the CPU to others.
    pub(crate) fn turn(&mut self, now: Instant, gave_away: Duration) -> Turn {
        let Some(deadline) = self.deadline else {
            return Turn::Stop;
        };
        let contended = gave_away >= CONTENDED && !self.fixed;
        if now >= deadline || contended {
            self.deadline = None;
            // An episode cut short by contention counts as one that caught nothing, whatever it caught.
            if self.caught && !contended {
                self.penalty = 0;
            } else {
                self.penalty = (self.penalty * 2).clamp(1, MAX_SKIP);
                self.skip = self.penalty;
            }
            return Turn::Stop;
        }
        if std::mem::take(&mut self.fresh) {
            Turn::Poll
        } else {
            Turn::Yield
        }
    }

    /// Whether an episode runs.
    #[cfg(test)]
    fn polling(&self) -> bool {
        self.deadline.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// An episode from `t`: a send, then turns until the window passes; `answer_at` (µs after the send) brings a
    /// message. Returns whether the episode started and the turns it took.
    fn episode(p: &mut SpinPolicy, t: Instant, answer_at: Option<u64>) -> (bool, Vec<Turn>) {
        let started = p.sent(t, Window::Auto);
        let mut turns = Vec::new();
        if !started {
            return (false, turns);
        }
        for us in (5..1_000).step_by(5) {
            if answer_at == Some(us) {
                p.received(t + Duration::from_micros(us), Window::Auto);
            }
            let turn = p.turn(t + Duration::from_micros(us), Duration::ZERO);
            turns.push(turn);
            if turn == Turn::Stop {
                break;
            }
        }
        (true, turns)
    }

    #[test]
    fn a_send_polls_its_window_yielding_on_empty_turns_then_stops() {
        let mut p = SpinPolicy::default();
        let t = Instant::now();
        assert!(p.sent(t, Window::Auto));
        assert!(p.polling());
        assert_eq!(p.turn(t + 10 * US, Duration::ZERO), Turn::Yield);
        assert_eq!(p.turn(t + 49 * US, Duration::ZERO), Turn::Yield);
        assert_eq!(p.turn(t + 50 * US, Duration::ZERO), Turn::Stop);
        assert!(!p.polling());
    }

    #[test]
    fn a_message_extends_the_episode_and_the_next_turn_polls_at_once() {
        let mut p = SpinPolicy::default();
        let t = Instant::now();
        p.sent(t, Window::Auto);
        assert!(
            !p.received(t + 40 * US, Window::Auto),
            "the episode runs already"
        );
        assert_eq!(p.turn(t + 41 * US, Duration::ZERO), Turn::Poll);
        assert_eq!(
            p.turn(t + 60 * US, Duration::ZERO),
            Turn::Yield,
            "the window now ends 50 µs after the message"
        );
        assert_eq!(p.turn(t + 90 * US, Duration::ZERO), Turn::Stop);
    }

    #[test]
    fn episodes_that_catch_nothing_are_skipped_more_and_more_up_to_max_skip() {
        let mut p = SpinPolicy::default();
        let mut t = Instant::now();
        let mut started = 0;
        let sends = 10_000;
        for _ in 0..sends {
            if episode(&mut p, t, None).0 {
                started += 1;
            }
            t += 1_000 * US;
        }
        // 1 + 1 + 2 + 4 + ... skipped after each miss, then one episode in MAX_SKIP + 1 sends.
        assert!(
            started < sends / MAX_SKIP as usize + 10,
            "{started} episodes for a silent peer"
        );
        assert!(
            started > sends / (MAX_SKIP as usize + 1) - 10,
            "{started}: it still tries now and then"
        );
    }

    #[test]
    fn one_episode_that_catches_something_ends_the_skipping() {
        let mut p = SpinPolicy::default();
        let mut t = Instant::now();
        for _ in 0..20 {
            episode(&mut p, t, None);
            t += 1_000 * US;
        }
        // Sends until one polls again; that one is answered in time.
        let mut waited = 0;
        while !episode(&mut p, t, Some(20)).0 {
            waited += 1;
            t += 1_000 * US;
        }
        assert!(waited <= MAX_SKIP);
        t += 1_000 * US;
        for _ in 0..100 {
            let (started, turns) = episode(&mut p, t, Some(20));
            assert!(started, "a peer that answers in time is always polled for");
            assert!(turns.contains(&Turn::Poll));
            t += 1_000 * US;
        }
    }

    #[test]
    fn a_fixed_window_always_polls_and_for_its_own_length() {
        let mut p = SpinPolicy::default();
        let t = Instant::now();
        for k in 0..10u32 {
            let at = t + k * 1_000 * US;
            assert!(p.sent(at, Window::Fixed(200 * US)));
            assert_eq!(p.turn(at + 150 * US, Duration::ZERO), Turn::Yield);
            assert_eq!(p.turn(at + 200 * US, Duration::ZERO), Turn::Stop);
        }
        // Contention does not cut it short.
        assert!(p.sent(t + 20_000 * US, Window::Fixed(200 * US)));
        assert_eq!(p.turn(t + 20_100 * US, CONTENDED * 2), Turn::Yield);
        assert_eq!(p.turn(t + 20_200 * US, Duration::ZERO), Turn::Stop);
        // Its misses make an Auto send skip.
        assert!(!p.sent(t + 30_000 * US, Window::Auto));
    }

    #[test]
    fn a_yield_that_gave_the_cpu_away_for_long_ends_the_episode_as_a_miss() {
        let mut p = SpinPolicy::default();
        let t = Instant::now();
        p.sent(t, Window::Auto);
        p.received(t + 5 * US, Window::Auto);
        assert_eq!(p.turn(t + 6 * US, Duration::ZERO), Turn::Poll);
        assert_eq!(p.turn(t + 8 * US, Duration::ZERO), Turn::Yield);
        assert_eq!(
            p.turn(t + 9 * US, CONTENDED - US),
            Turn::Yield,
            "a short yield is not contention"
        );
        assert_eq!(p.turn(t + 45 * US, CONTENDED), Turn::Stop);
        assert!(!p.polling());
        assert!(
            !p.sent(t + 50 * US, Window::Auto),
            "it counts as a miss: the next send skips"
        );
    }

    #[test]
    fn a_receive_starts_an_episode_but_only_a_message_during_one_counts_as_caught() {
        let mut p = SpinPolicy::default();
        let t = Instant::now();
        assert!(
            p.received(t, Window::Auto),
            "the next message of a stream may follow"
        );
        assert_eq!(
            p.turn(t + 5 * US, Duration::ZERO),
            Turn::Yield,
            "what woke us is not a catch"
        );
        assert_eq!(p.turn(t + 50 * US, Duration::ZERO), Turn::Stop);
        assert!(
            !p.sent(t + 100 * US, Window::Auto),
            "that episode caught nothing"
        );
    }

    #[test]
    fn a_crowded_machine_starts_no_default_episode_and_costs_no_skips_but_a_users_window_still_polls(
    ) {
        let mut p = SpinPolicy::default();
        let t = Instant::now();
        p.set_crowded(true);
        for k in 0..10u32 {
            assert!(!p.sent(t + k * 100 * US, Window::Auto));
            assert!(!p.received(t + k * 100 * US + 50 * US, Window::Auto));
        }
        assert!(p.sent(t + 2_000 * US, Window::Fixed(100 * US)));
        assert_eq!(p.turn(t + 2_100 * US, Duration::ZERO), Turn::Stop);
        p.set_crowded(false);
        // The user's window caught nothing, so one default send skips; none of the crowded ones counted.
        assert!(!p.sent(t + 3_000 * US, Window::Auto));
        assert!(p.sent(t + 4_000 * US, Window::Auto));
    }
}
