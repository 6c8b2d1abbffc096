// Types of cluster.stats() (lib/cluster/stats.js), one entry per worker of the primary.
import type { ChannelStats } from '../../index';

export interface WorkerStats {
  id: number;
  pid: number | undefined;
  /** The worker's `state`: 'none' | 'online' | 'listening' | 'disconnected' | 'dead'. */
  state: string;
  /** Seconds since the worker was forked. */
  uptime: number;
  /** Restarts of this worker's slot: a worker forked again after a death counts one more than the one it replaces
   * (a reload's replacement keeps the count). */
  restarts: number;
  /** Connections the primary handed to this worker (round-robin, and reuse-port's leftovers), and how many of those
   * it refused (they went on to another worker). Zero under SCHED_NONE, where workers accept themselves. */
  connections: { handed: number; refused: number };
  /** The worker channel's counters; null if it never had one. */
  channel: ChannelStats | null;
}
