// Types for `forkline/cluster`: the cluster module alone.
import { cluster } from '../../index';

export = cluster;
