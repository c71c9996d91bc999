/**
 * The end of a job: the size and sha256 checks (the checksum pass over the `.part` when its bytes
 * did not all stream through one hash), the rename of the `.part` to its final name, and the
 * shortcut for a file a killed server had already renamed but not yet recorded.
 */
import fs from 'node:fs';
import type { Entry } from '../protocol/wire';
import { nowSeconds } from '../store/entry';
import { commitPart, hashFile, partPath, readMeta, removePart } from '../disk/part-file';
import { SpeedMeter } from './speed-meter';
import type { AttemptResult, TransferState } from './transfer';
import { advance, fail, update, type Job, type JobDeps } from './job';

/** Checks the transferred `.part` and, when it is right, renames it into place: `completed`. */
export async function finish(deps: JobDeps, job: Job, result: AttemptResult, state: TransferState): Promise<void> {
  const signal = job.controller.signal;
  const expectedSha = deps.store.get(job.dest)?.sha256;
  const streamed = state.hash !== undefined && state.hashedBytes === result.size;
  const pass = expectedSha !== undefined && !streamed;
  // With a checksum pass ahead, the bar starts again from 0 for it rather than jumping back later.
  const entry = advance(deps, job, 'verifying', { downloaded: result.size, file_size: result.total ?? result.size, speed: 0, eta: null, ...(pass ? { progress: 0 } : {}) })!;
  const expectedSize = state.expected.size;
  if (expectedSize !== undefined && expectedSize !== result.size) {
    job.guard?.();
    await removePart(job.abs);
    fail(deps, job, 'SIZE_MISMATCH', `The file has ${result.size} bytes, but its source announced ${expectedSize}; the file was discarded`, 0);
    return;
  }
  if (entry.sha256) {
    const digest = pass ? await verifyPass(deps, job, result.size) : state.hash!.digest('hex');
    if (digest !== entry.sha256) {
      job.guard?.();
      await removePart(job.abs);
      fail(deps, job, 'SHA256_MISMATCH', `The downloaded file's sha256 is ${digest}, but ${entry.sha256} was expected; the file was discarded`, 0);
      return;
    }
  }
  signal.throwIfAborted();
  job.guard?.(); // fleet mode: never rename a `.part` another server now owns
  await commitPart(job.abs);
  const done = deps.store.put(deps.transition(deps.store.get(job.dest)!, 'completed', { speed: 0, eta: null, completion_time: nowSeconds(), error: undefined }));
  deps.forgetUrl(job.dest);
  deps.log.info(`${job.dest}: completed (${result.size} bytes)`);
  deps.finished(done);
}

/**
 * A kill between the rename of a finished `.part` and the status write that says `completed`
 * leaves a whole file under its final name and an entry that says it is under way: finish the
 * entry (after checking size and sha256) instead of fetching gigabytes again. Only for an entry
 * that had begun (a fresh `overwrite` must fetch) and has neither `.part` nor `.part.json`.
 */
export async function alreadyFinished(deps: JobDeps, job: Job, e: Entry): Promise<boolean> {
  if (e.attempts === 0 || e.file_size === null) return false;
  const stat = await fs.promises.stat(job.abs).catch(() => undefined);
  if (!stat?.isFile() || stat.size !== e.file_size) return false;
  if ((await fs.promises.stat(partPath(job.abs)).catch(() => undefined)) || (await readMeta(job.abs))) return false;
  advance(deps, job, 'verifying', { downloaded: stat.size, speed: 0, eta: null, ...(e.sha256 ? { progress: 0 } : {}) });
  if (e.sha256) {
    const digest = await hashFile(job.abs, () => undefined, job.controller.signal).catch(() => undefined);
    if (job.controller.signal.aborted) return true; // paused or removed meanwhile: the command owns the entry
    if (digest !== e.sha256) return false; // not ours after all: fetch it again (it replaces the file only when whole)
  }
  const done = advance(deps, job, 'completed', { speed: 0, eta: null, completion_time: nowSeconds(), error: undefined });
  if (!done) return true;
  deps.log.info(`${job.dest}: the file was already complete on disk (the server stopped before recording it); marked completed`);
  deps.finished(done);
  return true;
}

/**
 * Hashes a `.part` whose bytes did not all stream through one hash in order (segments, a resume
 * after a restart), showing the pass as the progress of `verifying`, with its own ETA.
 */
async function verifyPass(deps: JobDeps, job: Job, size: number): Promise<string> {
  const meter = new SpeedMeter();
  meter.sample(0);
  return hashFile(
    partPath(job.abs),
    (hashed) => {
      meter.sample(hashed);
      const rate = meter.rate();
      update(deps, job, { progress: size > 0 ? Math.floor((hashed / size) * 100) : 100, eta: rate > 0 ? (size - hashed) / rate : null }, 'soon');
    },
    job.controller.signal,
  );
}
