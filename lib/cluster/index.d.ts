// Types for `forkline/cluster`: the cluster module alone (its stats() entries: WorkerStats, lib/cluster/stats.d.ts).
import { cluster } from '../../index';

export = cluster;
