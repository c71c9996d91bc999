/**
 * The abort plumbing of one attempt or request: its own AbortController, aborted by the caller's
 * signal (a pause, cancel or shutdown, whose reason it keeps) and by a stall watch. Its own, so
 * that a stall or the end of the attempt aborts this request and not the whole job.
 */
import { AppError } from '../errors';

export type StallWatch =
  /** Asked every stallMs/4 (between 50 ms and 1 s): returns the error when something stalled. */
  | { stallMs: number; poll: () => AppError | undefined }
  /** One deadline: the answer must come within stallMs, else `deadline()` is the reason. */
  | { stallMs: number; deadline: () => AppError };

export interface AttemptAbort {
  readonly signal: AbortSignal;
  /** Whether the stall watch fired (its error is `signal.reason`, unless the caller aborted first). */
  readonly stalled: boolean;
  abort(reason: unknown): void;
  /**
   * Stops the watch and lets go of the caller's signal. `abortUnread`: also abort with
   * `ABORTED: transfer over`, so that a response left unread gives back its connection.
   */
  dispose(options?: { abortUnread?: boolean }): void;
}

/** The reason of an attempt that ended: one error for all (nobody reports it; its stack was a cost per file). */
const TRANSFER_OVER = new AppError('ABORTED', 'transfer over');

export function attemptAbort(outer: AbortSignal, watch: StallWatch): AttemptAbort {
  const controller = new AbortController();
  const onOuterAbort = (): void => controller.abort(outer.reason);
  // A signal already aborted fires no event: a pause that landed before this attempt began stops it here.
  if (outer.aborted) onOuterAbort();
  else outer.addEventListener('abort', onOuterAbort, { once: true });
  let stalled = false;
  const stall = (error: AppError): void => {
    stalled = true;
    controller.abort(error);
  };
  const timer =
    'poll' in watch
      ? setInterval(() => {
          const error = watch.poll();
          if (error) stall(error);
        }, Math.max(50, Math.min(1000, watch.stallMs / 4)))
      : setTimeout(() => stall(watch.deadline()), watch.stallMs);
  return {
    signal: controller.signal,
    get stalled() {
      return stalled;
    },
    abort: (reason) => controller.abort(reason),
    dispose: ({ abortUnread = false } = {}) => {
      clearInterval(timer); // clears a timeout too
      outer.removeEventListener('abort', onOuterAbort);
      if (abortUnread && !controller.signal.aborted) controller.abort(TRANSFER_OVER);
    },
  };
}
