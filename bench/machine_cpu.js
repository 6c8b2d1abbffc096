'use strict';

// The machine's busy CPU time (all CPUs), from /proc/stat: what the bench's machine line and the rows that report
// the machine's cores read. Loads nothing but node:fs, so that a measured process (bench/children/scale-parent.js)
// can use it without loading forkline.

const fs = require('node:fs');

// USER_HZ is 100 on every Linux ABI.
const CLOCK_TICK_MICROS = 1e6 / 100;

// µs of busy CPU time since boot, summed over the CPUs: user nice system idle iowait irq softirq steal, all but idle
// and iowait (guest time is already in user). null without /proc/stat.
function machineBusyMicros() {
  let text;
  try {
    text = fs.readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const fields = text.split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return fields.slice(0, 8).reduce((sum, v, k) => (k === 3 || k === 4 ? sum : sum + v), 0) * CLOCK_TICK_MICROS;
}

// The share of all CPUs busy over the next `ms` milliseconds (this process waits, idle, meanwhile), 0–1; null
// without /proc/stat. Unlike the load average, which after a run of hundreds of processes stays high for minutes
// while the CPUs idle, it says whether something else is running now.
function busyShareOver(ms, cpus) {
  const before = machineBusyMicros();
  if (before === null) return null;
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  return Math.min(1, (machineBusyMicros() - before) / (ms * 1e3 * cpus));
}

module.exports = { CLOCK_TICK_MICROS, machineBusyMicros, busyShareOver };
