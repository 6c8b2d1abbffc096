// Types for `forkline/bus`: cluster messaging within a host (over IPC) and across hosts (through Redis).
import { EventEmitter } from 'node:events';

declare namespace bus {
  export interface BusSettings {
    /** One Redis server, e.g. `redis://host:6379` or `rediss://…` (needs the optional package ioredis), or
     * FORKLINE_BUS_URL. Without url, sentinels or cluster: local-only. */
    url?: string | undefined;
    /** A primary found through Sentinel: the sentinels' URLs (`redis://h:26379`), and `name`, the primary's name. */
    sentinels?: string[] | undefined;
    name?: string | undefined;
    /** A Redis Cluster: startup nodes (URLs, or one comma-separated string; FORKLINE_BUS_CLUSTER). Keys carry hash
     * tags (`{<namespace>:q:<queue>}`); pub/sub is sharded (SSUBSCRIBE/SPUBLISH) where the servers have it. */
    cluster?: string[] | string | undefined;
    /** Passed to ioredis's Redis.Cluster as they are (natMap, dnsLookup, …). */
    clusterOptions?: object | undefined;
    /** 'replicated': enqueue() resolves once a replica has the job too (WAIT 1), and rejects with
     * FORKLINE_BUS_UNAVAILABLE if none has it within `replicationTimeout` ms (default 1000). Default 'primary'. */
    durability?: 'primary' | 'replicated' | undefined;
    replicationTimeout?: number | undefined;
    /** Each worker publishes through a broker connection of its own (one IPC hop less; a connection per worker),
     * and every subscriber, on its host too, gets its messages through the broker. Default false. */
    directPublish?: boolean | undefined;
    /** Prefix of every broker key and channel, so apps sharing a Redis stay apart (default 'forkline'). */
    namespace?: string | undefined;
    /** This host's name (default: the hostname and the primary's pid). */
    host?: string | undefined;
    /** How long a job may stay with a host that stopped answering before another host takes it (ms, default 30000). */
    claimTimeout?: number | undefined;
    /** Largest message, in UTF-8 bytes of its JSON (default 1 MiB). */
    maxMessageSize?: number | undefined;
    /** Broker operations held while it is unreachable (default 1000), each for at most `pendingTimeout` ms
     * (default 5000); past either they reject with `FORKLINE_BUS_UNAVAILABLE`. */
    maxPending?: number | undefined;
    pendingTimeout?: number | undefined;
    /** How long `connect()` waits for the broker (ms, default 10000). */
    connectTimeout?: number | undefined;
    /** Passed to ioredis as they are, for every connection (TLS, passwords, …). */
    redisOptions?: object | undefined;
  }

  export interface MessageInfo {
    topic: string;
    /** The publisher's host and pid. */
    host: string;
    pid: number;
  }

  export interface JobInfo {
    queue: string;
    /** The id enqueue() returned. */
    id: string;
    /** 1 on the first try. */
    attempt: number;
    /** In `<queue>:dead`: the last error. */
    error?: string;
  }

  export interface ProcessOptions {
    /** Jobs this process runs at once (default 1). */
    concurrency?: number | undefined;
    /** Tries before the job goes to `<queue>:dead` (default 3). */
    maxAttempts?: number | undefined;
  }

  export interface Bus extends EventEmitter {
    /** 'worker' (of a forkline cluster: the primary holds the connection), 'primary' or 'standalone'. */
    readonly role: 'worker' | 'primary' | 'standalone';
    readonly host: string;
    /** Every subscriber of `topic` on every host gets it once; order kept per publisher and topic. */
    publish(topic: string, message: unknown): Promise<void>;
    subscribe<T = any>(topic: string, listener: (message: T, info: MessageInfo) => void): Promise<() => Promise<void>>;
    /** Resolves with the job's id. */
    enqueue(queue: string, job: unknown): Promise<string>;
    /** Each job goes to one handler anywhere, acknowledged when its promise resolves; a throw retries it. */
    process<T = any>(
      queue: string,
      handler: (job: T, info: JobInfo) => unknown,
      options?: ProcessOptions,
    ): () => Promise<void>;
    /** Answered by exactly one responder anywhere; rejects with `FORKLINE_BUS_TIMEOUT` after `timeout` ms (5000). */
    request<R = any>(topic: string, message: unknown, options?: { timeout?: number | undefined }): Promise<R>;
    respond<T = any>(
      topic: string,
      handler: (message: T, info: { topic: string }) => unknown,
      options?: { concurrency?: number | undefined },
    ): () => Promise<void>;
    /** In a process that is not a worker: this process becomes its own host's gateway. */
    connect(settings?: BusSettings): Promise<Bus>;
    close(): Promise<void>;
    on(event: 'error', listener: (err: Error & { code?: string }) => void): this;
    on(event: string | symbol, listener: (...args: any[]) => void): this;
  }
}

declare const bus: bus.Bus;
export = bus;
