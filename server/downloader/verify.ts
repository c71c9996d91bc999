/**
 * The end of a job: the size and sha256 checks — from the hash of one stream, else from the hash a
 * worker computed of the written `.part` while a segmented transfer went on (only its tail is left
 * to hash after the last byte), else from a checksum pass over the whole `.part` (also when that
 * worker failed) — the rename of the `.part` to its final name, and the shortcut for a file a
 * killed server had already renamed but not yet recorded. Without an expected sha256, the one
 * computed while downloading is recorded on the entry when it is ready at little cost. A small
 * file kept in git (Hugging Face) is checked by its git blob id (`git_oid`) in a pass after the
 * transfer, which records its sha256 too.
 */
import fs from 'node:fs';
import type { Entry } from '../protocol/wire';
import { nowSeconds } from '../store/entry';
import { commitPart, hashFile, partPath, readMeta, removePart } from '../disk/part-file';
import type { PrefixHash } from '../disk/prefix-hash';
import { SpeedMeter } from './speed-meter';
import { fileBlobDigests } from './git-blob';
import type { AttemptResult, TransferState } from './transfer';
import { advance, fail, update, type Job, type JobDeps } from './job';

/** Checks the transferred `.part` and, when it is right, renames it into place: `completed`. */
export async function finish(deps: JobDeps, job: Job, result: AttemptResult, state: TransferState, inflight?: PrefixHash): Promise<void> {
  const signal = job.controller.signal;
  const expectedSha = deps.store.get(job.dest)?.sha256;
  const streamed = state.hash !== undefined && state.hashedBytes === result.size;
  const following = !streamed && inflight?.covers(result.size) === true ? inflight : undefined;
  const pass = expectedSha !== undefined && !streamed && !following;
  // With a checksum pass ahead, the bar starts again from 0 for it rather than jumping back later;
  // with the in-flight hash it shows how much of the file that hash has covered.
  const progress = pass ? 0 : following && expectedSha !== undefined ? percent(following.hashed, result.size) : undefined;
  const entry = advance(deps, job, 'verifying', { downloaded: result.size, file_size: result.total ?? result.size, speed: 0, eta: null, ...(progress === undefined ? {} : { progress }) })!;
  const expectedSize = state.expected.size;
  if (expectedSize !== undefined && expectedSize !== result.size) {
    job.guard?.();
    await removePart(job.abs);
    fail(deps, job, 'SIZE_MISMATCH', `The file has ${result.size} bytes, but its source announced ${expectedSize}; the file was discarded`, 0);
    return;
  }
  let computed: string | undefined;
  if (entry.sha256) {
    let digest = streamed ? state.hash!.digest('hex') : following ? await inflightDigest(deps, job, following, result.size) : undefined;
    if (digest !== undefined && digest !== entry.sha256 && following) {
      // A 30 GB file is not discarded on the word of the in-flight hash alone: one pass confirms it.
      deps.log.warn(`${job.dest}: the sha256 computed while downloading is ${digest}, not the expected one; hashing the whole file to confirm`);
      digest = undefined;
    }
    digest ??= await verifyPass(deps, job, result.size);
    if (digest !== entry.sha256) {
      job.guard?.();
      await removePart(job.abs);
      fail(deps, job, 'SHA256_MISMATCH', `The downloaded file's sha256 is ${digest}, but ${entry.sha256} was expected; the file was discarded`, 0);
      return;
    }
  } else if (following && result.size - following.hashed <= CHEAP_TAIL) {
    computed = await inflightDigest(deps, job, following, result.size);
  }
  if (entry.git_oid) {
    // A small file kept in git: hashed after the transfer (its sha256 with it, to be remembered).
    const digests = await fileBlobDigests(partPath(job.abs), signal);
    if (digests.gitOid !== entry.git_oid) {
      job.guard?.();
      await removePart(job.abs);
      fail(deps, job, 'GIT_OID_MISMATCH', `The downloaded file's git blob id is ${digests.gitOid}, but Hugging Face lists ${entry.git_oid}; the file was discarded`, 0);
      return;
    }
    if (!entry.sha256) computed = digests.sha256;
  }
  signal.throwIfAborted();
  job.guard?.(); // fleet mode: never rename a `.part` another server now owns
  await commitPart(job.abs, { folders: deps.folders, ...(result.mapless ? { mapless: true } : {}), ...(result.synced ? { synced: true } : {}) });
  const done = deps.store.put(deps.transition(deps.store.get(job.dest)!, 'completed', { speed: 0, eta: null, completion_time: nowSeconds(), error: undefined, ...(computed ? { sha256: computed } : {}) }));
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
  // Put at its name before this download began (rename sets the ctime): the file it replaces, not
  // its result (an overwrite cancelled and retried, say, whose old file has the same size).
  if (stat.ctimeMs < e.start_time * 1000) return false;
  if ((await fs.promises.stat(partPath(job.abs)).catch(() => undefined)) || (await readMeta(job.abs))) return false;
  advance(deps, job, 'verifying', { downloaded: stat.size, speed: 0, eta: null, ...(e.sha256 ? { progress: 0 } : {}) });
  if (e.sha256) {
    const digest = await hashFile(job.abs, () => undefined, job.controller.signal).catch(() => undefined);
    if (job.controller.signal.aborted) return true; // paused or removed meanwhile: the command owns the entry
    if (digest !== e.sha256) return false; // not ours after all: fetch it again (it replaces the file only when whole)
  }
  if (e.git_oid) {
    const digests = await fileBlobDigests(job.abs, job.controller.signal).catch(() => undefined);
    if (job.controller.signal.aborted) return true;
    if (digests?.gitOid !== e.git_oid) return false;
  }
  const done = advance(deps, job, 'completed', { speed: 0, eta: null, completion_time: nowSeconds(), error: undefined });
  if (!done) return true;
  deps.log.info(`${job.dest}: the file was already complete on disk (the server stopped before recording it); marked completed`);
  deps.finished(done);
  return true;
}

/**
 * Without an expected sha256, the one computed while downloading is recorded when no more than
 * this is left to hash (a quarter of a second here); a hash still catching up after a resume is
 * not waited for.
 */
const CHEAP_TAIL = 256 * 1024 * 1024;

const percent = (part: number, whole: number): number => (whole > 0 ? Math.floor((part / whole) * 100) : 100);

/**
 * The in-flight hash's digest of the `.part`, waiting for its tail (showing it as the progress of
 * `verifying` when it is long, as after a resume); undefined when its worker failed.
 */
async function inflightDigest(deps: JobDeps, job: Job, hash: PrefixHash, size: number): Promise<string | undefined> {
  const meter = new SpeedMeter();
  meter.sample(hash.hashed);
  const timer = setInterval(() => {
    meter.sample(hash.hashed);
    const rate = meter.rate();
    update(deps, job, { progress: percent(hash.hashed, size), eta: rate > 0 ? (size - hash.hashed) / rate : null }, 'soon');
  }, 250);
  try {
    const digest = await hash.digest(size, job.controller.signal);
    if (digest !== undefined) deps.log.info(`${job.dest}: sha256 computed while downloading; ${hash.tailBytes ?? 0} bytes were left to hash after the last byte`);
    else deps.log.warn(`${job.dest}: the sha256 computed while downloading is not available; hashing the whole file`);
    return digest;
  } finally {
    clearInterval(timer);
  }
}

/**
 * Hashes a `.part` whose bytes did not all stream through one hash in order (segments, a resume
 * after a restart), showing the pass as the progress of `verifying`, with its own ETA.
 */
async function verifyPass(deps: JobDeps, job: Job, size: number): Promise<string> {
  const meter = new SpeedMeter();
  meter.sample(0);
  update(deps, job, { progress: 0 }, 'soon');
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
