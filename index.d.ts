// Types for forkline: node:child_process's fork() with the IPC channel in Rust, and node:cluster's primary.
import { EventEmitter } from 'node:events';
import type { Cluster as NodeCluster, ClusterSettings as NodeClusterSettings, Worker } from 'node:cluster';
import type * as net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type {
  ForkOptions as NodeForkOptions,
  MessageOptions,
  SendHandle,
  Serializable,
  StdioNull,
  StdioPipe,
} from 'node:child_process';

export { spawn, spawnSync, exec, execSync, execFile, execFileSync } from 'node:child_process';
export type { MessageOptions, SendHandle, Serializable } from 'node:child_process';

export interface ForkOptions extends NodeForkOptions {
  /** Largest message accepted from the child, in bytes (default 512 MiB). Longer ones are dropped with a
   * `FORKLINE_MESSAGE_TOO_LARGE` error event; the messages around them still arrive. */
  maxMessageSize?: number | undefined;
  /** Busy polling, in µs (`FORKLINE_BUSY_POLL` sets the process default): how long the channel keeps looking for
   * the next message after each send and receive instead of sleeping, on the event loop (timers and I/O still run).
   * Absent: 50 µs, only while it pays (a window that caught nothing makes later ones skipped, up to 63 in 64, and a
   * busy CPU ends one). A number: that long, always; 0: never (Node's behaviour). Passed on to a
   * `childRuntime: 'forkline'` child. */
  busyPoll?: number | undefined;
  /** What serves the child's `process.send` / `process.on('message')`: `'node'` (Node's own channel, the default)
   * or `'forkline'` (forkline's Rust channel, preloaded into the child; the child's code is unchanged). The
   * environment variable `FORKLINE_CHILD_RUNTIME` sets the default for a whole process (for children of its own
   * `node` only). A child with `NODE_UNIQUE_ID` (a cluster worker) on `'forkline'` has Node's worker side started
   * on forkline's channel. */
  childRuntime?: 'node' | 'forkline' | undefined;
}

/** What crossed one channel, from `child.channel.stats()` (or `process.channel.stats()` under the child runtime).
 * Counts include the channel's own messages (a handle's ACK/NACK, cluster messages) and keep their values once
 * the channel has closed. */
export interface ChannelStats {
  /** Messages accepted for sending (on the wire, or queued: see `bytesQueued`); a resent handle counts again. */
  messagesSent: number;
  bytesSent: number;
  /** Handles (file descriptors) sent with their messages. */
  handlesSent: number;
  messagesReceived: number;
  bytesReceived: number;
  handlesReceived: number;
  /** Bytes accepted by send() and not yet written to the socket. */
  bytesQueued: number;
  /** Times send() returned false (too much queued, a handle in flight, or the channel closed). */
  backpressureEvents: number;
  /** Errors reported by the channel, by code: `FORKLINE_*` faults, Node's `ERR_IPC_*`, errno codes of failed
   * reads and writes (a failed write counts once). */
  errors: Record<string, number>;
}

/** `child.channel`: keeps the event loop alive while ref'd, as Node's. */
export interface Control {
  ref(): void;
  unref(): void;
  readonly fd: number | undefined;
  /** forkline's own: the channel's counters. */
  stats(): ChannelStats;
}

export class ChildProcess extends EventEmitter {
  stdin: Writable | null;
  stdout: Readable | null;
  stderr: Readable | null;
  readonly stdio: Array<Readable | Writable | net.Socket | null>;
  readonly channel?: Control | null | undefined;
  readonly pid?: number | undefined;
  readonly connected: boolean;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  readonly killed: boolean;
  readonly spawnfile: string | null;
  readonly spawnargs: string[];
  kill(signal?: NodeJS.Signals | number): boolean;
  send(message: Serializable, callback?: (error: Error | null) => void): boolean;
  send(message: Serializable, sendHandle?: SendHandle, callback?: (error: Error | null) => void): boolean;
  send(
    message: Serializable,
    sendHandle?: SendHandle,
    options?: MessageOptions,
    callback?: (error: Error | null) => void,
  ): boolean;
  disconnect(): void;
  ref(): void;
  unref(): void;
  [Symbol.dispose](): void;

  addListener(event: string, listener: (...args: any[]) => void): this;
  addListener(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  addListener(event: 'disconnect', listener: () => void): this;
  addListener(event: 'drain', listener: () => void): this;
  addListener(event: 'error', listener: (err: Error) => void): this;
  addListener(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  addListener(event: 'message', listener: (message: Serializable, sendHandle: SendHandle) => void): this;
  addListener(event: 'spawn', listener: () => void): this;
  on(event: string, listener: (...args: any[]) => void): this;
  on(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'disconnect', listener: () => void): this;
  on(event: 'drain', listener: () => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'message', listener: (message: Serializable, sendHandle: SendHandle) => void): this;
  on(event: 'spawn', listener: () => void): this;
  once(event: string, listener: (...args: any[]) => void): this;
  once(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'disconnect', listener: () => void): this;
  once(event: 'drain', listener: () => void): this;
  once(event: 'error', listener: (err: Error) => void): this;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'message', listener: (message: Serializable, sendHandle: SendHandle) => void): this;
  once(event: 'spawn', listener: () => void): this;
}

export interface ChildProcessWithoutNullStreams extends ChildProcess {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
}

export type { StdioNull, StdioPipe };

/** What serves this process: `'native'` (forkline's Rust addon) or `'portable'` (Node's own channel and cluster with
 * forkline's JS-level features, where the addon cannot load or `FORKLINE_BACKEND=portable`; docs/api.md, "Portable
 * mode"). */
export const backend: 'native' | 'portable';

export function fork(modulePath: string | URL, options?: ForkOptions): ChildProcess;
export function fork(modulePath: string | URL, args?: readonly string[], options?: ForkOptions): ChildProcess;

export type { Worker } from 'node:cluster';
import type { WorkerStats } from './lib/cluster/stats';
export type { WorkerStats };

export interface RestartPolicy {
  /** Deaths tolerated within `windowMs` before giving up (default 5). */
  maxRestarts?: number | undefined;
  /** The sliding window deaths are counted in, in ms (default 60000). */
  windowMs?: number | undefined;
}

export interface ClusterSettings extends NodeClusterSettings {
  /** Re-fork a worker that exits on its own (not disconnected or killed by the primary); `true` for the defaults.
   * Past `maxRestarts` deaths within `windowMs`, the cluster emits 'giveup' once and stops restarting. */
  restart?: boolean | RestartPolicy | undefined;
  /** The host's bus gateway (`forkline/bus`); also FORKLINE_BUS_URL / FORKLINE_BUS_NAMESPACE. */
  bus?: import('./lib/bus/index').BusSettings | undefined;
  /** The runtime workers are forked on: `'node'` (Node's channel and worker side) or `'forkline'` (forkline's
   * channel, which starts Node's worker side on it). Unset: `FORKLINE_CHILD_RUNTIME`, else `'node'`. */
  childRuntime?: 'node' | 'forkline' | undefined;
}

/** node:cluster's primary, with round-robin accept and hand-off in Rust, a 'reuseport' policy, restarts and
 * rolling reloads. In a worker process, `cluster` is Node's own worker-side module. */
export interface Cluster extends NodeCluster {
  /** Each worker listens on a SO_REUSEPORT socket of its own; the kernel balances connections. */
  readonly SCHED_REUSEPORT: 3;
  settings: ClusterSettings;
  setupPrimary(settings?: ClusterSettings): void;
  setupMaster(settings?: ClusterSettings): void;
  /** Replaces every worker, one at a time: the new one is listening before the old one is disconnected, and the
   * next starts once the old one has exited (it is killed if still running `timeout` ms, default 10000, after its
   * disconnect). Rejects (`FORKLINE_RELOAD_FAILED`) if a new worker dies before it is serving. */
  /** Every worker of every host gets `message` through plain `process.on('message')`. */
  broadcast(message: Serializable): Promise<void>;
  reload(callback?: (err: Error | null) => void): Promise<void>;
  reload(options?: { timeout?: number | undefined }, callback?: (err: Error | null) => void): Promise<void>;
  /** forkline's own: one entry per worker in `cluster.workers`. */
  stats(): WorkerStats[];
  on(event: 'giveup', listener: (worker: Worker, deaths: number) => void): this;
  on(event: string, listener: (...args: any[]) => void): this;
  once(event: 'giveup', listener: (worker: Worker, deaths: number) => void): this;
  once(event: string, listener: (...args: any[]) => void): this;
}

export const cluster: Cluster;

export type { Bus, BusSettings, MessageInfo, JobInfo, ProcessOptions } from './lib/bus/index';
export const bus: import('./lib/bus/index').Bus;

/** A module `forkline/register` can replace: `node:child_process` (fork, and spawn with an 'ipc' slot) or `node:cluster`. */
export type RegisterableModule = 'child_process' | 'cluster';

/** What `forkline/register` (`node --import forkline/register`, `-r`, or in NODE_OPTIONS) did in this process. */
export interface Registered {
  /** Whether the register module ran in this process. */
  readonly ran: boolean;
  /** The modules it was asked to replace (FORKLINE_REGISTER; both by default). */
  readonly requested: readonly RegisterableModule[];
  /** Those it replaced. */
  readonly replaced: readonly RegisterableModule[];
  /** Those it left as Node's, with why (a cluster worker, forkline could not load, ...). */
  readonly skipped: { readonly [name in RegisterableModule]?: string };
}

/** What `forkline/register` did in this process; `{ ran: false, ... }` when it did not run. Reading it registers nothing. */
export const registered: Registered;
