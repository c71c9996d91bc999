/**
 * A job: one run of one download in this process, from taking a transfer slot to the end of its
 * last attempt. Owns what a job is (Job, the reasons it is stopped), what it needs of its
 * Downloader (JobDeps), its writes to its entry, and how it ends when stopped or failed.
 * The attempts themselves are in run.ts, the checks after the transfer in verify.ts.
 */
import type { Logger } from '../logger';
import type { Agent } from '../net/agent';
import { AppError, withoutPaths } from '../errors';
import type { ErrorCode } from '../protocol/error-codes';
import type { Entry } from '../protocol/wire';
import { nowSeconds, patchEntry } from '../store/entry';
import type { StatusStore } from '../store/status-store';
import { bytesOnDisk, removePart } from '../disk/part-file';
import type { FolderSync } from '../disk/folder-sync';
import type { RetryPolicy } from './retry-delay';
import type { SourceResolver } from './source';
import type { DownloadStatus } from '../protocol/status';
import type { StatusPatch, Transition } from './transition';

/** `lost`: fleet mode's hold on the destination was lost (downloader/claims.ts): no further write. */
export type StopKind = 'pause' | 'cancel' | 'shutdown' | 'lost';

/** Why a job was aborted; carried as the AbortSignal's reason. */
export class Stop extends Error {
  constructor(readonly kind: StopKind) {
    super(`download ${kind}`);
  }
}

export interface Job {
  dest: string;
  /** Final path of the file; bytes go to `<abs>.part`. */
  abs: string;
  /** Aborted (with a Stop) by a command or a shutdown: from then on the command owns the entry. */
  controller: AbortController;
  /** Settles when the job has ended and let go of its files. */
  done: Promise<void>;
  /**
   * Fleet mode: throws (and stops the job) when this server no longer holds the destination;
   * called before every write of its files. Absent on a lone server.
   */
  guard?: () => void;
  /**
   * The connections this job counts for in the queue's budget (see `connectionsFor`): what it may
   * use while it transfers, 0 once the transfer is over (verifying, syncing, renaming).
   */
  share: number;
}

/**
 * How many connections a download of `size` bytes may use: one for a file of less than two
 * minimum segments (or of unknown size on one connection), else CONNECTIONS or as many minimum
 * segments as the file holds, whichever is fewer; CONNECTIONS when the size is unknown. The same
 * rule as the split of a segmented transfer (rangesFor in segment-map.ts, and the probe's
 * two-segment minimum in segment-start.ts).
 */
export function connectionsFor(size: number | null, connections: number, minSegmentBytes: number): number {
  if (connections <= 1) return 1;
  if (size === null) return connections;
  if (size < 2 * minSegmentBytes) return 1;
  return Math.max(1, Math.min(connections, Math.floor(size / minSegmentBytes)));
}

/** What a job needs of the Downloader that runs it. */
export interface JobDeps {
  store: StatusStore;
  agent: Agent;
  log: Logger;
  stallMs: number;
  progressIntervalMs: number;
  connections: number;
  minSegmentBytes: number;
  retryPolicy: RetryPolicy;
  resolveSource: SourceResolver;
  /** The URL as the user gave it (credentials included), while this process still has it. */
  givenUrl(dest: string): URL | undefined;
  /** The download completed: the URL the user gave is needed no more. */
  forgetUrl(dest: string): void;
  /** A download ended, completed or failed (the Downloader's `finished` event). */
  finished(entry: Entry): void;
  /** Every status change goes through it (checked against the state machine). */
  transition: Transition;
  /** The folder syncs after renames, shared by the files that finish together in one folder. */
  folders: FolderSync;
  /** The job now counts for `share` connections in the queue's budget (fewer lets queued ones start). */
  setShare(job: Job, share: number): void;
}

/** Applies a change to the job's entry, unless the job was stopped (a command owns the entry then). */
export function update(deps: JobDeps, job: Job, patch: StatusPatch, urgency: 'now' | 'soon' = 'now'): Entry | undefined {
  const current = deps.store.get(job.dest);
  if (!current || job.controller.signal.aborted) return undefined;
  return deps.store.put(patchEntry(current, patch), urgency);
}

/** Moves the job's entry to `to` (with `patch`), unless the job was stopped (as update). */
export function advance(deps: JobDeps, job: Job, to: DownloadStatus, patch: StatusPatch = {}): Entry | undefined {
  const current = deps.store.get(job.dest);
  if (!current || job.controller.signal.aborted) return undefined;
  return deps.store.put(deps.transition(current, to, patch));
}

export function fail(deps: JobDeps, job: Job, code: ErrorCode, message: string, downloaded: number): void {
  const e = advance(deps, job, 'error', { error: { code, message: withoutPaths(message) }, downloaded, speed: 0, eta: null, completion_time: nowSeconds() });
  deps.log.warn(`${job.dest}: ${message}`);
  if (e) deps.finished(e);
}

/** A job ended by a command, a shutdown or a fault outside the transfer (the disk, a bug). */
export async function stopped(deps: JobDeps, job: Job, err: unknown): Promise<void> {
  const kind = err instanceof Stop ? err.kind : undefined;
  if (kind === 'lost') return; // another server may be writing the files now: touch nothing
  if (kind === 'cancel') {
    if (mayWrite(job)) await removePart(job.abs).catch(() => undefined);
  } else if (kind === 'shutdown') {
    const e = deps.store.get(job.dest);
    if (e && e.status !== 'paused' && e.status !== 'cancelled') {
      deps.store.put(deps.transition(e, 'queued', { speed: 0, eta: null, downloaded: await bytesOnDisk(job.abs) }));
    }
  } else if (kind === undefined) {
    const error = asAppError(err);
    fail(deps, job, error.code, capitalize(error.message), await bytesOnDisk(job.abs));
  } else {
    // pause: the command already set the entry; record the bytes actually on disk
    const e = deps.store.get(job.dest);
    if (e) deps.store.put(patchEntry(e, { downloaded: await bytesOnDisk(job.abs) }));
  }
}

/** Whether the job may still change its files (fleet mode: this server still holds them). */
export function mayWrite(job: Job): boolean {
  try {
    job.guard?.();
    return true;
  } catch {
    return false;
  }
}

/** Any failure as an AppError: ours as they are, anything else (a bug, a fault) as `ERROR`. */
export const asAppError = (err: unknown): AppError => (err instanceof AppError ? err : new AppError('ERROR', (err as Error).message, { cause: err }));

export const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
