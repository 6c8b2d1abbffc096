//! The machine's CPU pressure (Linux PSI, /proc/pressure/cpu), for `core/cpu_pressure.rs`. The file is opened once
//! per process and read again from its start at each sample (about 1 µs); a kernel without PSI has no such file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::time::Duration;

use crate::core::cpu_pressure::some_total;

static CPU: OnceLock<Option<File>> = OnceLock::new();

/// The total time, so far, during which some runnable task waited for a CPU. None without PSI.
pub(crate) fn cpu_stalled() -> Option<Duration> {
    let file = CPU
        .get_or_init(|| File::open("/proc/pressure/cpu").ok())
        .as_ref()?;
    let mut buf = [0u8; 256];
    let len = file.read_at(&mut buf, 0).ok()?;
    some_total(std::str::from_utf8(&buf[..len]).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_stall_total_is_read_where_the_kernel_has_psi_and_never_goes_back() {
        // Without PSI (or where a container hides it) there is nothing to read, which busy polling takes as
        // a machine that is not crowded.
        let Some(first) = cpu_stalled() else {
            return;
        };
        let second = cpu_stalled().expect("read once, read again");
        assert!(second >= first);
    }
}
