//! Whether the machine's CPUs have been oversubscribed lately, from Linux's pressure stall information: the
//! `some` line of /proc/pressure/cpu counts, in µs, the time during which at least one runnable task waited for a
//! CPU. `os/pressure.rs` reads it; this judges it, without the clock or the file.
//!
//! Busy polling (`spin.rs`) spends a CPU to meet the next message awake. That pays while a CPU would otherwise sit
//! idle; when tasks already queue for the CPUs it takes one from whoever has work (and keeps the idle balancer from
//! moving a queued task to it), and the whole program runs slower. Measured on 2 vCPUs: a ping-pong or a pipelined
//! echo keeps tasks waiting 2-5% of the time, sockets handed to a child with the clients in a third process ~40%
//! (where polling cost 8-10% of the sockets/s).

use std::time::{Duration, Instant};

use crate::core::windowed_share::{Counts, Thresholds, WindowedShare};

/// Judged over windows of 20 ms or more: tasks waiting for a CPU 25% of ten windows in a row (200 ms: longer than a
/// node child's start, whose threads crowd 2 CPUs for a moment) make the machine crowded, until one window with less
/// than 15%. Polling where it does not pay costs ~10%; not polling where it pays, 30% and more, so it takes more to
/// turn it off than to turn it on again.
const THRESHOLDS: Thresholds = Thresholds {
    window: Duration::from_millis(20),
    on_after: 10,
    on_from: 0.25,
    on_until: 0.15,
    counts: Counts::Within,
};

/// One thread's view of the machine's CPU pressure.
#[derive(Debug)]
pub(crate) struct CpuCrowding(WindowedShare);

impl Default for CpuCrowding {
    fn default() -> Self {
        CpuCrowding(WindowedShare::new(THRESHOLDS))
    }
}

impl CpuCrowding {
    /// Crowded lately? `stalled` is read only when a window has passed since the last sample: the total time with
    /// a task waiting for a CPU, None where the kernel does not tell (no PSI), which counts as not crowded.
    pub(crate) fn crowded(
        &mut self,
        now: Instant,
        stalled: impl FnOnce() -> Option<Duration>,
    ) -> bool {
        self.0.on(now, stalled, false)
    }
}

/// The `some` total of a pressure file's text (`some avg10=0.00 avg60=0.00 avg300=0.00 total=123`).
pub(crate) fn some_total(text: &str) -> Option<Duration> {
    let line = text.lines().find(|line| line.starts_with("some "))?;
    let micros = line
        .split(' ')
        .find_map(|field| field.strip_prefix("total="))?;
    micros.trim().parse().ok().map(Duration::from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_some_total_is_read_from_the_pressure_files_text() {
        let text = "some avg10=1.13 avg60=12.73 avg300=18.38 total=4003194726\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(some_total(text), Some(Duration::from_micros(4_003_194_726)));
        assert_eq!(some_total("full avg10=0.00 total=5\n"), None);
        assert_eq!(some_total("some avg10=0.00 total=x\n"), None);
        assert_eq!(some_total(""), None);
    }

    #[test]
    fn tasks_waiting_a_quarter_of_the_time_for_200_ms_crowd_the_machine_and_without_psi_it_never_is(
    ) {
        const MS: Duration = Duration::from_millis(1);
        let t0 = Instant::now();
        let at = |k: u32| t0 + k * 20 * MS;
        let mut cpus = CpuCrowding::default();
        let mut stalled = Duration::ZERO;
        assert!(!cpus.crowded(at(0), || Some(stalled)));
        // A ping-pong's few percent, then a child starting (75% for 100 ms), then quiet again: not crowded.
        for k in 1..=11 {
            stalled += if (6..=10).contains(&k) { 15 * MS } else { MS };
            assert!(!cpus.crowded(at(k), || Some(stalled)));
        }
        // Sockets to a child with the clients in another process: ~40%, crowded from the tenth window in a row.
        for k in 12..=25 {
            stalled += 8 * MS;
            assert_eq!(cpus.crowded(at(k), || Some(stalled)), k >= 21, "window {k}");
        }
        // One window below 15% ends it.
        stalled += 2 * MS;
        assert!(!cpus.crowded(at(26), || Some(stalled)));
        let mut cpus = CpuCrowding::default();
        assert!(!cpus.crowded(t0, || None));
        assert!(!cpus.crowded(at(30), || None));
    }
}
