import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { createEntry, nowSeconds, patchEntry } from '../store/entry';
import { AppError, badRequest, conflict, notFound } from '../errors';
import type { Logger } from '../logger';
import { filenameFromUrl, resolveDest } from '../disk/paths';
import type { AddRequest, AddResult, Entry } from '../protocol/wire';
import type { ErrorCode } from '../protocol/error-codes';
import { commandFits, isActive, isFinished, type Command } from '../protocol/status';
import type { StatusStore } from '../store/status-store';
import { parseSourceUrl, redactUrl } from '../net/url-policy';
import { bytesOnDisk, commitPart, hashFile, partPath, readMeta, removePart } from '../disk/part-file';
import { closeIdleConnections } from '../net/raw-http';
import { DEFAULT_RETRY, retryDelay, type RetryPolicy } from './retry-delay';
import { plainSource, type SourceResolver } from './source';
import { SpeedMeter } from './speed-meter';
import { attemptSegmented, NOT_SEGMENTABLE } from './segments';
import { attemptTransfer, type AttemptOptions, type TransferState } from './transfer';

export interface DownloaderOptions {
  store: StatusStore;
  modelsDir: string;
  log: Logger;
  /** @default 3 */
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
}

type StopKind = 'pause' | 'cancel' | 'shutdown';
/** Why a job was aborted; carried as the AbortSignal's reason. */
class Stop extends Error {
  constructor(readonly kind: StopKind) {
    super(`download ${kind}`);
  }
}

interface Job {
  dest: string;
  abs: string;
  controller: AbortController;
  done: Promise<void>;
}

const SHA256 = /^[0-9a-fA-F]{64}$/;

/**
 * The queue and the life of every download: at most `maxConcurrent` transfer at once, the rest
 * wait as `queued`. All state lives in the store's entries; this class only changes them.
 */
export class Downloader extends EventEmitter<{ finished: [Entry] }> {
  private readonly store: StatusStore;
  private readonly log: Logger;
  private readonly o: Required<Omit<DownloaderOptions, 'store' | 'log' | 'retry' | 'resolveSource'>>;
  private readonly retryPolicy: RetryPolicy;
  private readonly resolveSource: SourceResolver;
  private readonly jobs = new Map<string, Job>();
  private readonly queue: string[] = [];
  /** Source URLs as given, credentials included; memory only, never written anywhere. */
  private readonly sources = new Map<string, URL>();
  private maintenance: NodeJS.Timeout | undefined;
  private state: 'idle' | 'running' | 'closing' | 'closed' = 'idle';

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
  }

  /** Resumes what the status file says was under way, and starts periodic maintenance. */
  async start(): Promise<void> {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.store.on('external', (entries) => this.applyExternal(entries));
    await this.adoptOrphans();
    const unfinished = this.store
      .all()
      .filter((e) => isActive(e.status))
      .sort((a, b) => a.start_time - b.start_time);
    for (const e of unfinished) {
      this.store.put(patchEntry(e, { status: 'queued', speed: 0, eta: null }));
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

  add(req: AddRequest): AddResult {
    if (this.state === 'closing' || this.state === 'closed') throw new AppError('SHUTTING_DOWN', 'The server is shutting down', { status: 503 });
    if (!req || typeof req !== 'object') throw badRequest('INVALID_BODY', 'Expected a JSON object with `url` and `folder`');
    const source = parseSourceUrl(req.url);
    if (req.sha256 !== undefined && (typeof req.sha256 !== 'string' || !SHA256.test(req.sha256))) {
      throw badRequest('INVALID_SHA256', 'Expected `sha256` to be 64 hexadecimal digits');
    }
    if (req.overwrite !== undefined && typeof req.overwrite !== 'boolean') throw badRequest('INVALID_BODY', 'Expected `overwrite` to be true or false');
    if (req.filename !== undefined && typeof req.filename !== 'string') throw badRequest('INVALID_FILENAME', 'Expected `filename` to be a string');
    const filename = req.filename || filenameFromUrl(source);
    if (!filename) throw badRequest('FILENAME_REQUIRED', 'The URL does not end in a file name; give `filename`');
    const d = resolveDest(this.o.modelsDir, req.folder, filename);

    // From here to store.put nothing awaits: two requests in the same tick cannot both pass.
    const existing = this.store.get(d.dest);
    if (existing && (!isFinished(existing.status) || this.jobs.has(d.dest))) {
      throw Object.assign(conflict('ALREADY_ACTIVE', `${d.dest} is already ${existing.status}`), { download: existing });
    }
    const stat = fs.statSync(d.abs, { throwIfNoEntry: false });
    if (stat?.isDirectory()) throw conflict('DEST_IS_DIRECTORY', `${d.dest} is a folder; choose another filename`);
    if (stat && !req.overwrite) {
      const download =
        existing?.status === 'completed'
          ? existing
          : createEntry({ ...d, url: redactUrl(source), status: 'completed', file_size: stat.size, downloaded: stat.size });
      return { outcome: 'already_exists', download };
    }
    const entry = createEntry({ ...d, url: redactUrl(source), ...(req.sha256 ? { sha256: req.sha256 } : {}) });
    this.sources.set(d.dest, source);
    this.store.put(entry);
    this.enqueue(d.dest);
    return { outcome: 'started', download: entry };
  }

  pause(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('pause', e.status)) throw this.wrongState(e, 'pause');
    const next = this.store.put(patchEntry(e, { status: 'paused', speed: 0, eta: null }));
    this.stopJob(e.dest, 'pause');
    return next;
  }

  resume(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('resume', e.status)) throw this.wrongState(e, 'resume');
    const next = this.store.put(patchEntry(e, { status: 'queued', error: undefined }));
    this.enqueue(e.dest);
    return next;
  }

  cancel(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('cancel', e.status)) throw this.wrongState(e, 'cancel');
    const next = this.store.put(patchEntry(e, { status: 'cancelled', speed: 0, eta: null, completion_time: nowSeconds() }));
    if (!this.stopJob(e.dest, 'cancel')) void this.discardPart(e.dest);
    return next;
  }

  retry(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('retry', e.status)) throw this.wrongState(e, 'retry');
    const next = this.store.put(patchEntry(e, { status: 'queued', error: undefined, speed: 0, eta: null }));
    this.enqueue(e.dest);
    return next;
  }

  /** Forgets a finished download (see forget). */
  remove(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('remove', e.status) || this.jobs.has(e.dest)) {
      throw Object.assign(conflict('ACTIVE', `${e.dest} is ${e.status}; cancel it first`), { download: e });
    }
    this.forget(e);
    return e;
  }

  /**
   * Drops a finished entry. Its final file stays; the `.part` of a failed one goes with it (an
   * orphan `.part` is taken, at the next start, for a download whose entry was lost).
   */
  private forget(e: Entry): void {
    this.store.remove(e.dest);
    this.sources.delete(e.dest);
    if (e.status !== 'completed') void this.discardPart(e.dest);
  }

  /** Drops every completed, failed and cancelled entry; returns how many. */
  clearCompleted(): number {
    let n = 0;
    for (const e of this.store.all()) {
      if (isFinished(e.status) && !this.jobs.has(e.dest)) {
        this.forget(e);
        n++;
      }
    }
    return n;
  }

  /** Aborts every transfer keeping its `.part`, and leaves its entry `queued` for the next start. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.state = 'closing';
    if (this.maintenance) clearInterval(this.maintenance);
    const pending = [...this.jobs.values()].map((j) => j.done);
    for (const dest of this.jobs.keys()) this.stopJob(dest, 'shutdown');
    await Promise.all(pending);
    closeIdleConnections();
    this.state = 'closed';
  }

  /**
   * A `.part` with its `.part.json` but no entry means the status file was lost or set aside:
   * list it as `paused` (the user decides: resume or cancel) rather than leave gigabytes unseen.
   */
  private async adoptOrphans(): Promise<void> {
    const found: string[] = [];
    const walk = async (dir: string, rel: string, depth: number): Promise<void> => {
      let items: import('node:fs').Dirent[];
      try {
        items = await fs.promises.readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const item of items) {
        if (item.isDirectory() && depth < 4 && !item.name.startsWith('.')) await walk(path.join(dir, item.name), `${rel}${item.name}/`, depth + 1);
        else if (item.isFile() && item.name.endsWith('.part.json') && rel !== '') found.push(rel + item.name.slice(0, -'.part.json'.length));
      }
    };
    await walk(this.o.modelsDir, '', 0);
    for (const dest of found) {
      if (this.store.get(dest)) continue;
      const slash = dest.lastIndexOf('/');
      let abs: string;
      try {
        abs = resolveDest(this.o.modelsDir, dest.slice(0, slash), dest.slice(slash + 1)).abs;
      } catch {
        continue;
      }
      const meta = await readMeta(abs);
      if (!meta || !/^https?:/.test(meta.url)) continue;
      const downloaded = await bytesOnDisk(abs);
      this.store.put(
        createEntry({ dest, folder: dest.slice(0, slash), filename: dest.slice(slash + 1), url: meta.url, status: 'paused', file_size: meta.fileSize, downloaded }),
      );
      this.log.warn(`found a partial download of ${dest} (${downloaded} bytes) with no entry in the status file; listed it as paused: resume or cancel it`);
    }
  }

  private find(id: unknown): Entry {
    const e = typeof id === 'string' ? this.store.getById(id) : undefined;
    if (!e) throw notFound('NOT_FOUND', `No download with id \`${String(id)}\``);
    return e;
  }

  private wrongState(e: Entry, command: Command): AppError {
    return Object.assign(conflict('INVALID_STATE', `Cannot ${command} ${e.dest}: it is ${e.status}`), { download: e });
  }

  private enqueue(dest: string): void {
    if (!this.queue.includes(dest)) this.queue.push(dest);
    this.pump();
  }

  private pump(): void {
    if (this.state !== 'running') return;
    for (let i = 0; i < this.queue.length && this.jobs.size < this.o.maxConcurrent; ) {
      const dest = this.queue[i]!;
      const entry = this.store.get(dest);
      if (!entry || entry.status !== 'queued') {
        this.queue.splice(i, 1);
      } else if (this.jobs.has(dest)) {
        i++; // its previous job is still winding down; it starts when that one ends
      } else {
        this.queue.splice(i, 1);
        this.startJob(entry);
      }
    }
  }

  private stopJob(dest: string, kind: StopKind): boolean {
    const job = this.jobs.get(dest);
    if (!job) return false;
    if (!job.controller.signal.aborted) job.controller.abort(new Stop(kind));
    return true;
  }

  private async discardPart(dest: string): Promise<void> {
    const abs = resolveDest(this.o.modelsDir, dest.slice(0, dest.lastIndexOf('/')), dest.slice(dest.lastIndexOf('/') + 1)).abs;
    await removePart(abs).catch((err: unknown) => this.log.warn(`could not remove ${dest}.part: ${(err as Error).message}`));
  }

  private startJob(entry: Entry): void {
    const { abs } = resolveDest(this.o.modelsDir, entry.folder, entry.filename);
    const job: Job = { dest: entry.dest, abs, controller: new AbortController(), done: Promise.resolve() };
    this.jobs.set(entry.dest, job);
    job.done = this.run(job)
      .catch((err: unknown) => this.log.error(`${entry.dest}: unexpected failure: ${(err as Error).stack ?? String(err)}`))
      .finally(() => {
        this.jobs.delete(entry.dest);
        this.pump();
      });
  }

  /** Applies a change to the job's entry, unless the job was stopped (a command owns the entry then). */
  private update(job: Job, patch: Parameters<typeof patchEntry>[1], urgency: 'now' | 'soon' = 'now'): Entry | undefined {
    const current = this.store.get(job.dest);
    if (!current || job.controller.signal.aborted) return undefined;
    return this.store.put(patchEntry(current, patch), urgency);
  }

  private async run(job: Job): Promise<void> {
    const signal = job.controller.signal;
    const first = this.store.get(job.dest)!;
    const source = this.resolveSource(this.sources.get(job.dest) ?? new URL(first.url));
    const state: TransferState = { hashedBytes: 0, received: 0, expected: {} };
    const meter = new SpeedMeter();
    let failures = 0;
    if (await this.alreadyFinished(job, first)) return;
    let best = await bytesOnDisk(job.abs);
    let segmented = true;
    let result: { size: number; total: number | null } | undefined;
    try {
      while (!result) {
        const e = this.store.get(job.dest)!;
        this.update(job, { status: 'starting', attempts: e.attempts + 1, speed: 0, eta: null });
        try {
          const attempt: AttemptOptions = {
            source,
            abs: job.abs,
            signal,
            stallMs: this.o.stallMs,
            progressIntervalMs: this.o.progressIntervalMs,
            wantHash: e.sha256 !== undefined,
            state,
            log: (m) => this.log.info(m),
            onStart: (offset, total) => {
              meter.reset();
              meter.sample(offset);
              const sha256 = this.store.get(job.dest)?.sha256 ?? state.expected.sha256;
              this.update(job, { status: 'downloading', downloaded: offset, file_size: total, error: undefined, ...(sha256 ? { sha256 } : {}) });
            },
            onProgress: (downloaded, total) => {
              meter.sample(downloaded);
              const speed = meter.rate();
              const eta = total !== null && speed > 0 ? Math.max(0, (total - downloaded) / speed) : null;
              this.update(job, { downloaded, file_size: total, speed, eta }, 'soon');
            },
          };
          // Several connections when allowed and the server serves ranges; a segment map on disk
          // is resumed as segments whatever CONNECTIONS says now.
          if (segmented && (this.o.connections > 1 || (await readMeta(job.abs))?.segments)) {
            const r = await attemptSegmented({ ...attempt, connections: this.o.connections, minSegmentBytes: this.o.minSegmentBytes, retry: this.retryPolicy });
            if (r === NOT_SEGMENTABLE) segmented = false;
            else result = r;
          }
          result ??= await attemptTransfer(attempt);
        } catch (err) {
          if (signal.aborted) throw signal.reason;
          const error = err instanceof AppError ? err : new AppError('ERROR', (err as Error).message, { cause: err });
          const size = await bytesOnDisk(job.abs);
          failures = size > best ? 1 : failures + 1;
          best = Math.max(best, size);
          const wait = retryDelay({ failures, retryable: error.retryable, ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }) }, this.retryPolicy);
          const attempts = this.store.get(job.dest)!.attempts;
          if (wait === undefined) {
            const tried = error.retryable ? ` (gave up after ${attempts} attempts)` : '';
            this.fail(job, error.code, `${capitalize(error.message)}${tried}`, size);
            return;
          }
          this.log.warn(`${job.dest}: ${error.message}; retrying in ${(wait / 1000).toFixed(1)} s`);
          this.update(job, { status: 'starting', downloaded: size, speed: 0, eta: null, error: { code: error.code, message: `${capitalize(error.message)}; retrying in ${Math.ceil(wait / 1000)} s` } });
          await delay(wait, undefined, { signal });
        }
      }
      await this.finish(job, result, state);
    } catch (err) {
      await this.stopped(job, err);
    }
  }

  private async finish(job: Job, result: { size: number; total: number | null }, state: TransferState): Promise<void> {
    const signal = job.controller.signal;
    const expectedSha = this.store.get(job.dest)?.sha256;
    const streamed = state.hash !== undefined && state.hashedBytes === result.size;
    const pass = expectedSha !== undefined && !streamed;
    // With a checksum pass ahead, the bar starts again from 0 for it rather than jumping back later.
    const entry = this.update(job, { status: 'verifying', downloaded: result.size, file_size: result.total ?? result.size, speed: 0, eta: null, ...(pass ? { progress: 0 } : {}) })!;
    const expectedSize = state.expected.size;
    if (expectedSize !== undefined && expectedSize !== result.size) {
      await removePart(job.abs);
      this.fail(job, 'SIZE_MISMATCH', `The file has ${result.size} bytes, but its source announced ${expectedSize}; the file was discarded`, 0);
      return;
    }
    if (entry.sha256) {
      const digest = pass ? await this.verifyPass(job, result.size) : state.hash!.digest('hex');
      if (digest !== entry.sha256) {
        await removePart(job.abs);
        this.fail(job, 'SHA256_MISMATCH', `The downloaded file's sha256 is ${digest}, but ${entry.sha256} was expected; the file was discarded`, 0);
        return;
      }
    }
    signal.throwIfAborted();
    await commitPart(job.abs);
    const done = this.store.put(patchEntry(this.store.get(job.dest)!, { status: 'completed', speed: 0, eta: null, completion_time: nowSeconds(), error: undefined }));
    this.sources.delete(job.dest);
    this.log.info(`${job.dest}: completed (${result.size} bytes)`);
    this.emit('finished', done);
  }

  /**
   * A kill between the rename of a finished `.part` and the status write that says `completed`
   * leaves a whole file under its final name and an entry that says it is under way: finish the
   * entry (after checking size and sha256) instead of fetching gigabytes again. Only for an entry
   * that had begun (a fresh `overwrite` must fetch) and has neither `.part` nor `.part.json`.
   */
  private async alreadyFinished(job: Job, e: Entry): Promise<boolean> {
    if (e.attempts === 0 || e.file_size === null) return false;
    const stat = await fs.promises.stat(job.abs).catch(() => undefined);
    if (!stat?.isFile() || stat.size !== e.file_size) return false;
    if ((await fs.promises.stat(partPath(job.abs)).catch(() => undefined)) || (await readMeta(job.abs))) return false;
    this.update(job, { status: 'verifying', downloaded: stat.size, speed: 0, eta: null, ...(e.sha256 ? { progress: 0 } : {}) });
    if (e.sha256) {
      const digest = await hashFile(job.abs, () => undefined, job.controller.signal).catch(() => undefined);
      if (job.controller.signal.aborted) return true; // paused or removed meanwhile: the command owns the entry
      if (digest !== e.sha256) return false; // not ours after all: fetch it again (it replaces the file only when whole)
    }
    const done = this.update(job, { status: 'completed', speed: 0, eta: null, completion_time: nowSeconds(), error: undefined });
    if (!done) return true;
    this.log.info(`${job.dest}: the file was already complete on disk (the server stopped before recording it); marked completed`);
    this.emit('finished', done);
    return true;
  }

  /**
   * Hashes a `.part` whose bytes did not all stream through one hash in order (segments, a resume
   * after a restart), showing the pass as the progress of `verifying`, with its own ETA.
   */
  private async verifyPass(job: Job, size: number): Promise<string> {
    const meter = new SpeedMeter();
    meter.sample(0);
    return hashFile(
      partPath(job.abs),
      (hashed) => {
        meter.sample(hashed);
        const rate = meter.rate();
        this.update(job, { progress: size > 0 ? Math.floor((hashed / size) * 100) : 100, eta: rate > 0 ? (size - hashed) / rate : null }, 'soon');
      },
      job.controller.signal,
    );
  }

  private fail(job: Job, code: ErrorCode, message: string, downloaded: number): void {
    const e = this.update(job, { status: 'error', error: { code, message }, downloaded, speed: 0, eta: null, completion_time: nowSeconds() });
    this.log.warn(`${job.dest}: ${message}`);
    if (e) this.emit('finished', e);
  }

  /** A job ended by a command, a shutdown or a fault outside the transfer (the disk, a bug). */
  private async stopped(job: Job, err: unknown): Promise<void> {
    const kind = err instanceof Stop ? err.kind : undefined;
    if (kind === 'cancel') {
      await removePart(job.abs).catch(() => undefined);
    } else if (kind === 'shutdown') {
      const e = this.store.get(job.dest);
      if (e && e.status !== 'paused' && e.status !== 'cancelled') {
        this.store.put(patchEntry(e, { status: 'queued', speed: 0, eta: null, downloaded: await bytesOnDisk(job.abs) }));
      }
    } else if (kind === undefined) {
      const error = err instanceof AppError ? err : new AppError('ERROR', (err as Error).message, { cause: err });
      this.fail(job, error.code, capitalize(error.message), await bytesOnDisk(job.abs));
    } else {
      // pause: the command already set the entry; record the bytes actually on disk
      const e = this.store.get(job.dest);
      if (e) this.store.put(patchEntry(e, { downloaded: await bytesOnDisk(job.abs) }));
    }
  }

  /** Stale detection and retention; runs periodically, not only at start-up. */
  private maintain(): void {
    const now = nowSeconds();
    for (const e of this.store.all()) {
      if (this.jobs.has(e.dest)) continue; // a live transfer is never stale: the stall timeout watches it
      if (e.status !== 'queued' && isActive(e.status) && now - e.timestamp > this.o.staleMinutes * 60) {
        this.store.put(
          patchEntry(e, {
            status: 'error',
            speed: 0,
            eta: null,
            completion_time: now,
            error: { code: 'STALE', message: `No progress for ${this.o.staleMinutes} minutes and no transfer is running; press retry to resume` },
          }),
        );
      } else if (e.status === 'queued' && !this.queue.includes(e.dest)) {
        this.enqueue(e.dest);
      } else if (isFinished(e.status) && now - (e.completion_time ?? e.timestamp) > this.o.retentionHours * 3600) {
        this.forget(e);
      }
    }
  }

  /** Another process edited the status file: take its entries, except those our live transfers own. */
  private applyExternal(entries: Map<string, Entry>): void {
    const merged = new Map(entries);
    for (const dest of this.jobs.keys()) {
      const ours = this.store.get(dest);
      if (ours) merged.set(dest, ours);
    }
    this.store.replaceAll(merged.values());
    this.maintain();
  }
}

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
