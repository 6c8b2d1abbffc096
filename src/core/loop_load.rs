//! Whether a thread's event loop has been busy lately, as a decision without the clock or the loop: it is given the
//! time and the loop's total time spent waiting for I/O (libuv's idle-time metric, the one behind Node's
//! `performance.eventLoopUtilization()`); `napi/loop_gauge.rs` reads both on the JS thread.
//!
//! It decides who reads a handle's ACK in Node's protocol (napi/side.rs). A busy JS thread answers each ACK only
//! when its loop comes round to the channel, behind whatever else it has to do: the reactor then reads the ACKs and
//! sends the queued handles (10-25% more sockets/s than the JS thread reading them, with the clients in the same
//! process and the loop ~90% busy; docs/benchmarks.md). A mostly idle thread wakes for the ACK at once, and the
//! reactor's read costs two more thread wake-ups per handle: with the clients in a process of their own (the loop
//! 20-40% busy) 10-15% fewer sockets/s without busy polling, the same rate for ~15% more CPU with it.

use std::time::{Duration, Instant};

use crate::core::windowed_share::{Counts, Thresholds, WindowedShare};

/// Judged over windows of 2 ms or more: a loop out of its I/O wait for 70% of one has become busy, and stays busy
/// until a window with less than 50%.
const THRESHOLDS: Thresholds = Thresholds {
    window: Duration::from_millis(2),
    on_after: 1,
    on_from: 0.7,
    on_until: 0.5,
    counts: Counts::Outside,
};

/// One thread's loop load.
#[derive(Debug)]
pub(crate) struct LoopLoad(WindowedShare);

impl Default for LoopLoad {
    fn default() -> Self {
        LoopLoad(WindowedShare::new(THRESHOLDS))
    }
}

impl LoopLoad {
    /// Busy lately? `idle` is read only when a window has passed since the last sample: the loop's total time
    /// waiting for I/O, None if the loop does not measure it, which counts as busy (the reactor then reads the ACKs,
    /// as it did before loads were measured).
    pub(crate) fn busy(&mut self, now: Instant, idle: impl FnOnce() -> Option<Duration>) -> bool {
        self.0.on(now, idle, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_loop_is_judged_by_its_share_outside_the_io_wait_over_each_window() {
        let t0 = Instant::now();
        let mut load = LoopLoad::default();
        // The first sample only starts the first window.
        assert!(!load.busy(t0, || Some(Duration::ZERO)));
        // 1.8 ms of 2 out of the wait: busy.
        assert!(load.busy(t0 + 2 * MS, || Some(MS / 5)));
        // 1.2 ms of 2 (60%): still busy, below BUSY_FROM but above BUSY_UNTIL.
        assert!(load.busy(t0 + 4 * MS, || Some(MS)));
        // 0.4 ms of 4: idle again.
        assert!(!load.busy(t0 + 8 * MS, || Some(MS * 4 + MS * 3 / 5)));
        // 60% again: not enough to become busy.
        assert!(!load.busy(t0 + 10 * MS, || Some(MS * 5 + MS * 2 / 5)));
    }

    #[test]
    fn samples_closer_than_a_window_keep_the_judgement_and_do_not_read_the_metric() {
        let t0 = Instant::now();
        let mut load = LoopLoad::default();
        load.busy(t0, || Some(Duration::ZERO));
        assert!(load.busy(t0 + 3 * MS, || Some(Duration::ZERO)));
        let mut read = false;
        assert!(load.busy(t0 + 4 * MS, || {
            read = true;
            Some(4 * MS)
        }));
        assert!(!read);
        // The next window counts from the last sample (3 ms), not from the call that only looked.
        assert!(!load.busy(t0 + 5 * MS, || Some(2 * MS)));
    }

    #[test]
    fn a_loop_without_the_metric_counts_as_busy_and_a_metric_that_runs_ahead_as_idle() {
        let t0 = Instant::now();
        let mut load = LoopLoad::default();
        assert!(load.busy(t0, || None));
        let mut load = LoopLoad::default();
        load.busy(t0, || Some(Duration::ZERO));
        // More idle time than wall time (clocks read a moment apart): a wholly idle window, not a negative share.
        assert!(!load.busy(t0 + 2 * MS, || Some(3 * MS)));
    }
}
