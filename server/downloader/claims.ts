/**
 * Fleet mode as the downloader sees it: this server's hold on destinations on a volume several
 * servers share (server/fleet/ implements DestClaims; a lone server has none). A job writes into a
 * `.part` only while this server holds its destination, checks the hold before every write (see
 * Job.guard), and stops before the next one once the hold is lost.
 */
import { removePart } from '../disk/part-file';
import { isFinished } from '../protocol/status';
import { Stop, type Job, type JobDeps } from './job';
import { runJob } from './run';

/** A held destination, for a job. */
export interface WriteGuard {
  /** Whether this server may still write the destination's files. Synchronous and cheap: asked before every write. */
  valid(): boolean;
  /** Calls `listener` once when the hold is lost (taken over, or not refreshed in time). Returns an unsubscribe. */
  onLost(listener: () => void): () => void;
}

export interface DestClaims {
  /**
   * Waits until this server holds `dest` for a job. Undefined when another server has the download
   * now (the fleet took its entry off this server). Rejects once `signal` aborts.
   */
  forJob(dest: string, signal: AbortSignal): Promise<WriteGuard | undefined>;
  /** Runs `fn` (the removal of a `.part`) only while this server holds `dest`; skips it when another does. */
  whileHeld(dest: string, fn: () => Promise<void>): Promise<void>;
  /** `dest` may be let go of (its job ended; its entry finished or was forgotten). Idempotent. */
  settle(dest: string): void;
  /**
   * A `.part` with no entry found at start-up: takes its destination for this server, which then
   * lists it; false when it is another live server's (held or listed by it).
   */
  claimOrphan(dest: string): Promise<boolean>;
}

/**
 * A job under a hold: waits for the hold, runs with the write guard, and when the hold is lost
 * mid-run (no byte written after that), waits for it again — or for the server that took it over
 * to list the download, which then leaves this server.
 */
export async function runClaimed(deps: JobDeps, job: Job, claims: DestClaims): Promise<void> {
  for (;;) {
    const controller = job.controller;
    let guard: WriteGuard | undefined;
    try {
      guard = await claims.forJob(job.dest, controller.signal);
    } catch (err) {
      if (!controller.signal.aborted) throw err;
      // Paused, cancelled or shut down while waiting: the command owns the entry. A cancel removes
      // the `.part` only if this server can hold it: another server may be writing it.
      const reason: unknown = controller.signal.reason;
      if (reason instanceof Stop && reason.kind === 'cancel') await claims.whileHeld(job.dest, () => removePart(job.abs));
      return;
    }
    if (!guard) return;
    const held = guard;
    const lose = (): void => {
      if (!controller.signal.aborted) controller.abort(new Stop('lost'));
    };
    job.guard = () => {
      if (!held.valid()) lose();
      if (controller.signal.reason instanceof Stop && controller.signal.reason.kind === 'lost') throw controller.signal.reason;
    };
    const off = held.onLost(lose);
    try {
      await runJob(deps, job);
    } finally {
      off();
      delete job.guard;
    }
    const reason: unknown = controller.signal.reason;
    if (!(reason instanceof Stop && reason.kind === 'lost')) return;
    deps.log.warn(`${job.dest}: this server lost its lock on the destination; stopped writing, waiting to get it back or for the server that took it over`);
    job.controller = new AbortController();
    const e = deps.store.get(job.dest);
    // A command that landed meanwhile owns the entry (its own abort found the job already stopped).
    if (e?.status === 'cancelled') await claims.whileHeld(job.dest, () => removePart(job.abs));
    if (!e || isFinished(e.status) || e.status === 'paused') return;
    deps.store.put(
      deps.transition(e, 'queued', {
        speed: 0,
        eta: null,
        error: { code: 'LOCK_LOST', message: 'This server lost its lock on the destination (it was stopped or cut off for too long); waiting to get it back or for the server that took it over' },
      }),
    );
  }
}
