//! The machine's CPU pressure (Linux PSI, /proc/pressure/cpu), for `core/cpu_pressure.rs`. The file is opened, read
//! and closed at each sample (a few µs, at most once per 20 ms of traffic): a process holds no fd for it between
//! samples, so none appears in the process's fds, or in a leak check's count, at some first send. A kernel without
//! PSI has no such file, which is remembered.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::core::cpu_pressure::some_total;

const CPU: &str = "/proc/pressure/cpu";

/// The kernel has no PSI, or does not let this process read it: no later sample will do better.
static MISSING: AtomicBool = AtomicBool::new(false);

/// The total time, so far, during which some runnable task waited for a CPU. None without PSI, and for a sample that
/// failed for a passing reason (no fd free in a flood of them).
pub(crate) fn cpu_stalled() -> Option<Duration> {
    if MISSING.load(Ordering::Relaxed) {
        return None;
    }
    let mut buf = [0u8; 256];
    match File::open(CPU).and_then(|mut file| file.read(&mut buf)) {
        Ok(len) => some_total(std::str::from_utf8(&buf[..len]).ok()?),
        Err(err) => {
            let lasting = matches!(err.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied)
                // A pressure file whose reads the kernel refuses (PSI switched off where the file stays).
                || err.raw_os_error() == Some(nix::libc::EOPNOTSUPP);
            if lasting {
                MISSING.store(true, Ordering::Relaxed);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_stall_total_is_read_where_the_kernel_has_psi_and_never_goes_back() {
        // Without PSI (or where a container hides it) there is nothing to read, which busy polling takes as a machine
        // that is not crowded.
        let Some(first) = cpu_stalled() else {
            return;
        };
        let second = cpu_stalled().expect("read once, read again");
        assert!(second >= first);
    }
}
