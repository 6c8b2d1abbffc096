//! A yes-or-no judgement of what share of the time something has held lately, from a running total of that time
//! (a loop's time waiting for I/O, the machine's time with tasks waiting for a CPU): the share is taken over windows
//! no shorter than a given span and judged with two thresholds, so that a share near one edge does not flap.
//! Without the clock or the source: the caller passes the time and reads the total only when asked to.

use std::time::{Duration, Instant};

/// What the running total counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counts {
    /// The time the judged state held (the share is the total's growth over the window).
    Within,
    /// The time it did not (the share is what the total's growth leaves of the window).
    Outside,
}

/// How a share is judged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Thresholds {
    /// The shortest stretch a judgement is made over; samples closer together keep the last judgement.
    pub(crate) window: Duration,
    /// This many windows in a row with this share or more turn the judgement on...
    pub(crate) on_after: u32,
    pub(crate) on_from: f64,
    /// ...and it stays on until a window with less than this share.
    pub(crate) on_until: f64,
    pub(crate) counts: Counts,
}

/// One judged share: the last sample and the judgement it gave.
#[derive(Debug)]
pub(crate) struct WindowedShare {
    thresholds: Thresholds,
    /// The last sample: when, and the total then.
    last: Option<(Instant, Duration)>,
    on: bool,
    /// Windows in a row, so far, at `on_from` or more while off.
    rising: u32,
}

impl WindowedShare {
    pub(crate) const fn new(thresholds: Thresholds) -> Self {
        WindowedShare {
            thresholds,
            last: None,
            on: false,
            rising: 0,
        }
    }

    /// The judgement at `now`. Takes a sample once a window has passed since the last one (`total` is read only
    /// then); a source that cannot be read (`total` gives None) makes the judgement `unknown`.
    pub(crate) fn on(
        &mut self,
        now: Instant,
        total: impl FnOnce() -> Option<Duration>,
        unknown: bool,
    ) -> bool {
        if let Some((at, _)) = self.last {
            if now.saturating_duration_since(at) < self.thresholds.window {
                return self.on;
            }
        }
        let Some(total_now) = total() else {
            self.on = unknown;
            return unknown;
        };
        if let Some((at, total_then)) = self.last {
            let span = now.saturating_duration_since(at).as_secs_f64();
            // A total that grew more than the wall clock (two clocks read a moment apart) is a whole window.
            let grown = (total_now.saturating_sub(total_then).as_secs_f64() / span).min(1.0);
            let share = match self.thresholds.counts {
                Counts::Within => grown,
                Counts::Outside => 1.0 - grown,
            };
            let Thresholds {
                on_after,
                on_from,
                on_until,
                ..
            } = self.thresholds;
            if self.on {
                self.on = share >= on_until;
            } else {
                self.rising = if share >= on_from { self.rising + 1 } else { 0 };
                self.on = self.rising >= on_after;
            }
            if self.on {
                self.rising = 0;
            }
        }
        self.last = Some((now, total_now));
        self.on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn within() -> WindowedShare {
        WindowedShare::new(Thresholds {
            window: 10 * MS,
            on_after: 1,
            on_from: 0.25,
            on_until: 0.15,
            counts: Counts::Within,
        })
    }

    #[test]
    fn a_share_of_the_time_within_turns_on_from_one_threshold_and_off_below_the_other() {
        let t0 = Instant::now();
        let mut share = within();
        // The first sample only starts the first window.
        assert!(!share.on(t0, || Some(Duration::ZERO), false));
        // 2 ms of 10: off.
        assert!(!share.on(t0 + 10 * MS, || Some(2 * MS), false));
        // 3 ms of 10: on.
        assert!(share.on(t0 + 20 * MS, || Some(5 * MS), false));
        // 2 ms of 10: between the thresholds, stays on.
        assert!(share.on(t0 + 30 * MS, || Some(7 * MS), false));
        // 1 ms of 10: off.
        assert!(!share.on(t0 + 40 * MS, || Some(8 * MS), false));
    }

    #[test]
    fn on_after_several_windows_in_a_row_and_off_after_one() {
        let t0 = Instant::now();
        let mut share = WindowedShare::new(Thresholds {
            on_after: 3,
            ..within().thresholds
        });
        share.on(t0, || Some(Duration::ZERO), false);
        // 5 ms of 10, twice, then a quiet window: the count starts over.
        assert!(!share.on(t0 + 10 * MS, || Some(5 * MS), false));
        assert!(!share.on(t0 + 20 * MS, || Some(10 * MS), false));
        assert!(!share.on(t0 + 30 * MS, || Some(10 * MS), false));
        assert!(!share.on(t0 + 40 * MS, || Some(15 * MS), false));
        assert!(!share.on(t0 + 50 * MS, || Some(20 * MS), false));
        assert!(share.on(t0 + 60 * MS, || Some(25 * MS), false));
        // One window below on_until turns it off; then three again are needed.
        assert!(!share.on(t0 + 70 * MS, || Some(26 * MS), false));
        assert!(!share.on(t0 + 80 * MS, || Some(31 * MS), false));
        assert!(!share.on(t0 + 90 * MS, || Some(36 * MS), false));
        assert!(share.on(t0 + 100 * MS, || Some(41 * MS), false));
    }

    #[test]
    fn samples_closer_than_a_window_keep_the_judgement_and_do_not_read_the_source() {
        let t0 = Instant::now();
        let mut share = within();
        share.on(t0, || Some(Duration::ZERO), false);
        let mut read = false;
        assert!(!share.on(
            t0 + 9 * MS,
            || {
                read = true;
                Some(9 * MS)
            },
            false
        ));
        assert!(!read);
        // The window counts from the last sample taken.
        assert!(share.on(t0 + 12 * MS, || Some(6 * MS), false));
    }

    #[test]
    fn an_unreadable_source_gives_the_judgement_for_unknown_and_a_runaway_total_a_whole_window() {
        let t0 = Instant::now();
        let mut share = within();
        assert!(share.on(t0, || None, true));
        assert!(!share.on(t0 + 10 * MS, || None, false));
        let mut share = WindowedShare::new(Thresholds {
            counts: Counts::Outside,
            ..within().thresholds
        });
        share.on(t0, || Some(Duration::ZERO), false);
        // More time outside than wall time: a share of 0 within, not a negative one.
        assert!(!share.on(t0 + 10 * MS, || Some(30 * MS), false));
    }
}
