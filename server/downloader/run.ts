/**
 * The retry loop of one job: attempt after attempt (over segments when allowed, else one stream),
 * the retry policy between them, until the `.part` holds the file, the policy gives up, or the job
 * is stopped. Then verify.ts checks and commits the file.
 */
import os from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { bytesOnDisk, readMeta, readPart, type PartMeta } from '../disk/part-file';
import { PrefixHash } from '../disk/prefix-hash';
import { retryDelay } from './retry-delay';
import { SpeedMeter } from './speed-meter';
import { attemptSegmented, NOT_SEGMENTABLE } from './segments';
import { attemptTransfer, type AttemptOptions, type AttemptResult, type TransferState } from './transfer';
import { advance, asAppError, capitalize, connectionsFor, fail, stopped, update, type Job, type JobDeps } from './job';
import { alreadyFinished, finish } from './verify';

/**
 * Segmented transfers hash their `.part` while it is written (server/disk/prefix-hash.ts) when a
 * sha256 is expected. Without one the digest is only recorded on the entry, a nicety worth its
 * ~0.8 CPU-seconds per GB only where a core is to spare: on two cores a download bound by the CPU
 * went from 468 to 267 MB/s with it (bench, loopback). INFLIGHT_HASH (read at each run): `0` never
 * (the whole file is hashed after the transfer, as before: the bench's comparison), `1` always.
 */
function inflightHash(): { enabled: boolean; withoutExpected: boolean } {
  const setting = process.env.INFLIGHT_HASH;
  return { enabled: setting !== '0', withoutExpected: setting === '1' || (setting !== '0' && os.availableParallelism() > 2) };
}

export async function runJob(deps: JobDeps, job: Job): Promise<void> {
  const signal = job.controller.signal;
  const first = deps.store.get(job.dest)!;
  const source = deps.resolveSource(deps.givenUrl(job.dest) ?? new URL(first.url));
  const state: TransferState = { hashedBytes: 0, received: 0, expected: {} };
  const meter = new SpeedMeter();
  let failures = 0;
  if (await alreadyFinished(deps, job, first)) return;
  /** What the first attempt finds on disk (later ones look again). */
  let found: Awaited<ReturnType<typeof readPart>> | undefined = await readPart(job.abs);
  let best = await bytesOnDisk(job.abs, found);
  let segmented = true;
  // A file known (from a listing, an earlier attempt) to be too small to split goes straight to one
  // stream: no probe first, one request instead of two.
  const small = connectionsFor(first.file_size, deps.connections, deps.minSegmentBytes) === 1;
  /** Whether the attempt under way is segmented. */
  let inSegments = false;
  let result: AttemptResult | undefined;
  const policy = inflightHash();
  const hash = policy.enabled ? new PrefixHash((m) => deps.log.warn(`${job.dest}: ${m}`)) : undefined;
  try {
    while (!result) {
      const e = deps.store.get(job.dest)!;
      advance(deps, job, 'starting', { attempts: e.attempts + 1, speed: 0, eta: null });
      try {
        const attempt: AttemptOptions = {
          source,
          abs: job.abs,
          signal,
          agent: deps.agent,
          stallMs: deps.stallMs,
          progressIntervalMs: deps.progressIntervalMs,
          wantHash: e.sha256 !== undefined,
          state,
          log: (m) => deps.log.info(m),
          ...(job.guard ? { guard: job.guard } : {}),
          onStart: (offset, total) => {
            // Fewer connections than the queue counted (a small file, a single stream): the rest start others.
            const share = inSegments ? connectionsFor(total, deps.connections, deps.minSegmentBytes) : 1;
            if (share < job.share) deps.setShare(job, share);
            meter.reset();
            meter.sample(offset);
            const sha256 = deps.store.get(job.dest)?.sha256 ?? state.expected.sha256;
            advance(deps, job, 'downloading', { downloaded: offset, file_size: total, error: undefined, ...(sha256 ? { sha256 } : {}) });
          },
          onProgress: (downloaded, total) => {
            // Every byte is in: no connection is at work any more (the final sync and map save of a
            // segmented transfer still run); the queue may start the next download meanwhile.
            if (downloaded === total && job.share > 0) deps.setShare(job, 0);
            meter.sample(downloaded);
            const speed = meter.rate();
            const eta = total !== null && speed > 0 ? Math.max(0, (total - downloaded) / speed) : null;
            update(deps, job, { downloaded, file_size: total, speed, eta }, 'soon');
          },
        };
        // Several connections when allowed and the server serves ranges; a segment map on disk
        // is resumed as segments whatever CONNECTIONS says now.
        const map = (): Promise<PartMeta | undefined> => (found ? Promise.resolve(found.meta) : readMeta(job.abs));
        inSegments = segmented && ((deps.connections > 1 && !small) || (await map())?.segments !== undefined);
        if (found && !found.part && !inSegments) attempt.noPart = true;
        found = undefined;
        if (inSegments) {
          const r = await attemptSegmented({ ...attempt, connections: deps.connections, minSegmentBytes: deps.minSegmentBytes, retry: deps.retryPolicy, ...(hash ? { hash, hashWithoutExpected: policy.withoutExpected } : {}) });
          if (r === NOT_SEGMENTABLE) {
            segmented = inSegments = false;
            deps.setShare(job, Math.min(job.share, 1));
          } else result = r;
        }
        if (!result) {
          await hash?.reset(); // one stream may write the file from 0 again: what was hashed may change
          result = await attemptTransfer(attempt);
        }
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        // An attempt that failed after its last byte (a disk error as it ended) tries again as it began.
        if (job.share === 0) job.share = connectionsFor(deps.store.get(job.dest)!.file_size, deps.connections, deps.minSegmentBytes);
        const error = asAppError(err);
        const size = await bytesOnDisk(job.abs);
        failures = size > best ? 1 : failures + 1;
        best = Math.max(best, size);
        const wait = retryDelay({ failures, retryable: error.retryable, ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }) }, deps.retryPolicy);
        const attempts = deps.store.get(job.dest)!.attempts;
        if (wait === undefined) {
          const tried = error.retryable ? ` (gave up after ${attempts} attempts)` : '';
          fail(deps, job, error.code, `${capitalize(error.message)}${tried}`, size);
          return;
        }
        deps.log.warn(`${job.dest}: ${error.message}; retrying in ${(wait / 1000).toFixed(1)} s`);
        advance(deps, job, 'starting', { downloaded: size, speed: 0, eta: null, error: { code: error.code, message: `${capitalize(error.message)}; retrying in ${Math.ceil(wait / 1000)} s` } });
        await delay(wait, undefined, { signal });
      }
    }
    // The transfer is over: its connections go to the next in the queue while this one verifies,
    // syncs and renames its file.
    deps.setShare(job, 0);
    await finish(deps, job, result, state, hash);
  } catch (err) {
    await stopped(deps, job, err);
  } finally {
    await hash?.close();
  }
}
