/**
 * The queue of the Downloader (downloader.ts adds the commands): its jobs, its life (start, close,
 * periodic maintenance) and which download transfers when. The queue has a budget of connections,
 * `maxConcurrent` × `connections`; each download counts for the connections it may use
 * (job.ts's connectionsFor: one for a small file, up to `connections` for a big one) while it
 * transfers, and for none once its transfer is over (verifying, syncing, renaming). Downloads
 * start in order while their connections fit in what is left: `maxConcurrent` big files at
 * once, or many more small ones of a group (a workflow's models, a Hugging Face folder's files);
 * a download outside a group also waits while `maxConcurrent` downloads transfer (MAX_CONCURRENT
 * is "downloads transferring at once"); the rest wait as `queued`. With `connections` = 1 that is
 * `maxConcurrent` transfers at once. All state lives in the store's entries; this class only
 * changes them. A job's attempts are in run.ts, its end in verify.ts and job.ts; maintenance.ts
 * and orphans.ts hold what runs outside jobs.
 */
import path from 'node:path';
import { EventEmitter } from 'node:events';
import type { Logger } from '../logger';
import { resolveDest } from '../disk/paths';
import type { Entry } from '../protocol/wire';
import { isActive } from '../protocol/status';
import type { StatusStore } from '../store/status-store';
import { removePart } from '../disk/part-file';
import { FolderSync } from '../disk/folder-sync';
import { createAgent, type Agent } from '../net/agent';
import type { ProxyConfig } from '../config';
import { DEFAULT_RETRY, type RetryPolicy } from './retry-delay';
import { plainSource, type SourceResolver } from './source';
import { connectionsFor, Stop, type Job, type JobDeps, type StopKind } from './job';
import { runJob } from './run';
import { maintain, mergeExternal } from './maintenance';
import { adoptOrphans } from './orphans';
import { createTransition, type Transition } from './transition';
import { runClaimed, type DestClaims } from './claims';

export interface DownloaderOptions {
  store: StatusStore;
  modelsDir: string;
  log: Logger;
  /** Downloads of `connections` connections that transfer at once: the queue's budget is this × `connections`. @default 3 */
  maxConcurrent?: number;
  /** HTTP connections one download may use. @default 1 */
  connections?: number;
  /** A segment is never split below this many bytes. @default 4 MiB */
  minSegmentBytes?: number;
  retry?: Partial<RetryPolicy>;
  /** An attempt with no byte for this long is aborted and retried. @default 30000 */
  stallMs?: number;
  /** Least time between two progress updates of one download. @default 250 */
  progressIntervalMs?: number;
  /** @default 10 */
  staleMinutes?: number;
  /** @default 24 */
  retentionHours?: number;
  /** How often stale detection and retention run. @default 60000 */
  maintenanceIntervalMs?: number;
  /** Turns a URL a user gave into what to fetch (sources: Hugging Face, Civitai). @default plain URLs */
  resolveSource?: SourceResolver;
  /**
   * The service's own files (status file, catalog, extra_model_paths.yaml, model list): no
   * download may be written over one of them, their lock or their temp files, even with
   * `overwrite`, when they live inside MODELS_DIR. @default none
   */
  protectedFiles?: readonly string[];
  /** HTTPS_PROXY, HTTP_PROXY and NO_PROXY as config.ts read them. @default none: direct */
  proxy?: ProxyConfig;
  /** Fleet mode: this server's hold on destinations on a shared volume (server/fleet/). @default none (a lone server) */
  claims?: DestClaims;
}

/** The queue of every download (see the top of this file); Downloader (downloader.ts) adds the commands. */
export abstract class DownloadQueue extends EventEmitter<{ finished: [Entry] }> {
  protected readonly store: StatusStore;
  protected readonly log: Logger;
  protected readonly o: Required<Omit<DownloaderOptions, 'store' | 'log' | 'retry' | 'resolveSource' | 'protectedFiles' | 'proxy' | 'claims'>>;
  private readonly claims: DestClaims | undefined;
  private readonly retryPolicy: RetryPolicy;
  private readonly resolveSource: SourceResolver;
  protected readonly protectedFiles: readonly string[];
  protected readonly jobs = new Map<string, Job>();
  private readonly queue: string[] = [];
  /** Source URLs as given, credentials included; memory only, never written anywhere. */
  protected readonly sources = new Map<string, URL>();
  private readonly jobDeps: JobDeps;
  /** This Downloader's HTTP connections (pool, per-host caps): closed with it, and no one else's. */
  readonly agent: Agent;
  /** The folder syncs after its renames, shared by the files that finish together in one folder. */
  readonly folders = new FolderSync();
  /** Every status change goes through it (checked against the state machine of protocol/status.ts). */
  protected readonly transition: Transition;
  private maintenance: NodeJS.Timeout | undefined;
  protected state: 'idle' | 'running' | 'closing' | 'closed' = 'idle';

  constructor(options: DownloaderOptions) {
    super();
    this.store = options.store;
    this.log = options.log;
    this.o = {
      modelsDir: options.modelsDir,
      maxConcurrent: options.maxConcurrent ?? 3,
      connections: options.connections ?? 1,
      minSegmentBytes: options.minSegmentBytes ?? 4 * 1024 * 1024,
      stallMs: options.stallMs ?? 30_000,
      progressIntervalMs: options.progressIntervalMs ?? 250,
      staleMinutes: options.staleMinutes ?? 10,
      retentionHours: options.retentionHours ?? 24,
      maintenanceIntervalMs: options.maintenanceIntervalMs ?? 60_000,
    };
    this.retryPolicy = { ...DEFAULT_RETRY, ...options.retry };
    this.resolveSource = options.resolveSource ?? plainSource;
    this.agent = createAgent(options.proxy ? { proxy: options.proxy } : {});
    this.protectedFiles = (options.protectedFiles ?? []).map((f) => path.resolve(f));
    this.transition = createTransition({ log: this.log });
    this.claims = options.claims;
    this.jobDeps = {
      store: this.store,
      agent: this.agent,
      log: this.log,
      stallMs: this.o.stallMs,
      progressIntervalMs: this.o.progressIntervalMs,
      connections: this.o.connections,
      minSegmentBytes: this.o.minSegmentBytes,
      retryPolicy: this.retryPolicy,
      resolveSource: this.resolveSource,
      givenUrl: (dest) => this.sources.get(dest),
      forgetUrl: (dest) => this.sources.delete(dest),
      finished: (entry) => this.emit('finished', entry),
      transition: this.transition,
      folders: this.folders,
      setShare: (job, share) => {
        const less = share < job.share;
        job.share = share;
        if (less) this.pump();
      },
    };
  }

  /** Resumes what the status file says was under way, and starts periodic maintenance. */
  async start(): Promise<void> {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.store.on('external', (entries) => this.applyExternal(entries));
    const claims = this.claims;
    await adoptOrphans({ store: this.store, modelsDir: this.o.modelsDir, log: this.log, ...(claims ? { claim: (dest: string) => claims.claimOrphan(dest) } : {}) });
    const unfinished = this.store
      .all()
      .filter((e) => isActive(e.status))
      .sort((a, b) => a.start_time - b.start_time);
    for (const e of unfinished) {
      this.store.put(this.transition(e, 'queued', { speed: 0, eta: null }));
      this.queue.push(e.dest);
    }
    if (unfinished.length > 0) this.log.info(`resuming ${unfinished.length} unfinished download(s)`);
    this.maintain();
    this.maintenance = setInterval(() => this.maintain(), this.o.maintenanceIntervalMs);
    this.maintenance.unref();
    this.pump();
  }

  /** Whether a transfer is running for this destination in this process. */
  isLive(dest: string): boolean {
    return this.jobs.has(dest);
  }

  /**
   * Drops a finished entry. Its final file stays; the `.part` of a failed one goes with it (an
   * orphan `.part` is taken, at the next start, for a download whose entry was lost).
   */
  protected forget(e: Entry): void {
    this.store.remove(e.dest);
    this.sources.delete(e.dest);
    if (e.status !== 'completed') void this.discardPart(e.dest);
  }

  /** Aborts every transfer keeping its `.part`, and leaves its entry `queued` for the next start. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.state = 'closing';
    if (this.maintenance) clearInterval(this.maintenance);
    const pending = [...this.jobs.values()].map((j) => j.done);
    for (const dest of this.jobs.keys()) this.stopJob(dest, 'shutdown');
    await Promise.all(pending);
    await this.agent.close();
    this.state = 'closed';
  }

  protected enqueue(dest: string): void {
    if (!this.queue.includes(dest)) this.queue.push(dest);
    this.pump();
  }

  /**
   * Starts queued downloads, in order, while the connections each may use (connectionsFor) fit in
   * the budget left by the transfers running. A download that does not fit waits, and so do those
   * behind it: a big file is never passed over for ever by a stream of small ones.
   */
  private pump(): void {
    if (this.state !== 'running') return;
    const budget = this.o.maxConcurrent * this.o.connections;
    let used = 0;
    let transferring = 0;
    for (const job of this.jobs.values()) {
      used += job.share;
      if (job.share > 0) transferring++;
    }
    for (let i = 0; i < this.queue.length && used < budget; ) {
      const dest = this.queue[i]!;
      const entry = this.store.get(dest);
      if (!entry || entry.status !== 'queued') {
        this.queue.splice(i, 1);
      } else if (this.jobs.has(dest)) {
        i++; // its previous job is still winding down; it starts when that one ends
      } else {
        const share = connectionsFor(entry.file_size, this.o.connections, this.o.minSegmentBytes);
        if (used + share > budget) break;
        // MAX_CONCURRENT is a count of downloads transferring at once; only the files of a group (a
        // workflow's, a Hugging Face folder's) may go past it, within the connection budget.
        if (!entry.group && transferring >= this.o.maxConcurrent) break;
        this.queue.splice(i, 1);
        used += share;
        transferring++;
        this.startJob(entry, share);
      }
    }
  }

  protected stopJob(dest: string, kind: StopKind): boolean {
    const job = this.jobs.get(dest);
    if (!job) return false;
    if (!job.controller.signal.aborted) job.controller.abort(new Stop(kind));
    return true;
  }

  protected async discardPart(dest: string): Promise<void> {
    const abs = resolveDest(this.o.modelsDir, dest.slice(0, dest.lastIndexOf('/')), dest.slice(dest.lastIndexOf('/') + 1)).abs;
    const remove = (): Promise<void> => removePart(abs).catch((err: unknown) => this.log.warn(`could not remove ${dest}.part: ${(err as Error).message}`));
    await (this.claims ? this.claims.whileHeld(dest, remove) : remove());
  }

  private startJob(entry: Entry, share: number): void {
    const { abs } = resolveDest(this.o.modelsDir, entry.folder, entry.filename);
    const job: Job = { dest: entry.dest, abs, controller: new AbortController(), done: Promise.resolve(), share };
    this.jobs.set(entry.dest, job);
    job.done = (this.claims ? runClaimed(this.jobDeps, job, this.claims) : runJob(this.jobDeps, job))
      .catch((err: unknown) => this.log.error(`${entry.dest}: unexpected failure: ${(err as Error).stack ?? String(err)}`))
      .finally(() => {
        this.jobs.delete(entry.dest);
        this.claims?.settle(entry.dest);
        this.pump();
      });
  }

  /** Stale detection, retention and re-queueing (maintenance.ts); periodic, not only at start-up. */
  private maintain(): void {
    maintain({
      store: this.store,
      staleMinutes: this.o.staleMinutes,
      retentionHours: this.o.retentionHours,
      isLive: (dest) => this.jobs.has(dest),
      isQueued: (dest) => this.queue.includes(dest),
      enqueue: (dest) => this.enqueue(dest),
      forget: (e) => this.forget(e),
      transition: this.transition,
    });
  }

  /** Another process edited the status file: take its entries, except those our live transfers own. */
  private applyExternal(entries: Map<string, Entry>): void {
    mergeExternal(this.store, this.jobs.keys(), entries);
    this.maintain();
  }
}
