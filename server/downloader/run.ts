/**
 * The retry loop of one job: attempt after attempt (over segments when allowed, else one stream),
 * the retry policy between them, until the `.part` holds the file, the policy gives up, or the job
 * is stopped. Then verify.ts checks and commits the file.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { bytesOnDisk, readMeta } from '../disk/part-file';
import { retryDelay } from './retry-delay';
import { SpeedMeter } from './speed-meter';
import { attemptSegmented, NOT_SEGMENTABLE } from './segments';
import { attemptTransfer, type AttemptOptions, type AttemptResult, type TransferState } from './transfer';
import { advance, asAppError, capitalize, fail, stopped, update, type Job, type JobDeps } from './job';
import { alreadyFinished, finish } from './verify';

export async function runJob(deps: JobDeps, job: Job): Promise<void> {
  const signal = job.controller.signal;
  const first = deps.store.get(job.dest)!;
  const source = deps.resolveSource(deps.givenUrl(job.dest) ?? new URL(first.url));
  const state: TransferState = { hashedBytes: 0, received: 0, expected: {} };
  const meter = new SpeedMeter();
  let failures = 0;
  if (await alreadyFinished(deps, job, first)) return;
  let best = await bytesOnDisk(job.abs);
  let segmented = true;
  let result: AttemptResult | undefined;
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
            meter.reset();
            meter.sample(offset);
            const sha256 = deps.store.get(job.dest)?.sha256 ?? state.expected.sha256;
            advance(deps, job, 'downloading', { downloaded: offset, file_size: total, error: undefined, ...(sha256 ? { sha256 } : {}) });
          },
          onProgress: (downloaded, total) => {
            meter.sample(downloaded);
            const speed = meter.rate();
            const eta = total !== null && speed > 0 ? Math.max(0, (total - downloaded) / speed) : null;
            update(deps, job, { downloaded, file_size: total, speed, eta }, 'soon');
          },
        };
        // Several connections when allowed and the server serves ranges; a segment map on disk
        // is resumed as segments whatever CONNECTIONS says now.
        if (segmented && (deps.connections > 1 || (await readMeta(job.abs))?.segments)) {
          const r = await attemptSegmented({ ...attempt, connections: deps.connections, minSegmentBytes: deps.minSegmentBytes, retry: deps.retryPolicy });
          if (r === NOT_SEGMENTABLE) segmented = false;
          else result = r;
        }
        result ??= await attemptTransfer(attempt);
      } catch (err) {
        if (signal.aborted) throw signal.reason;
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
    await finish(deps, job, result, state);
  } catch (err) {
    await stopped(deps, job, err);
  }
}
