/**
 * The retry policy as a pure function (like got's calculate-retry-delay): which failures are
 * worth another attempt, and how long to wait before it. Tested without a network.
 */
export interface RetryPolicy {
  /** Attempts in a row that made no progress before giving up. @default 6 */
  maxFailures: number;
  /** First delay. @default 1000 */
  baseMs: number;
  /** Longest delay. @default 60000 */
  maxMs: number;
}

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({ maxFailures: 6, baseMs: 1000, maxMs: 60_000 });

export interface FailedAttempt {
  /** Attempts in a row that failed without bringing a byte (1 after the first failure). */
  failures: number;
  retryable: boolean;
  /** Seconds from a Retry-After header. */
  retryAfter?: number;
}

/** Milliseconds to wait before the next attempt, or `undefined` to give up. */
export function retryDelay(attempt: FailedAttempt, policy: RetryPolicy = DEFAULT_RETRY, random: () => number = Math.random): number | undefined {
  if (!attempt.retryable || attempt.failures >= policy.maxFailures) return undefined;
  if (attempt.retryAfter !== undefined && attempt.retryAfter >= 0) {
    // Honour the server's word, but never wait longer than ten minutes for one attempt.
    return Math.min(attempt.retryAfter * 1000, 10 * 60_000);
  }
  const exponential = Math.min(policy.maxMs, policy.baseMs * 2 ** (attempt.failures - 1));
  // Full jitter between half and all of the delay, so that many clients do not retry in step.
  return Math.round(exponential / 2 + (random() * exponential) / 2);
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date); undefined when absent or bad. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

/** HTTP statuses that are worth retrying: timeouts, rate limits and server errors. */
export const isRetryableStatus = (status: number): boolean => status === 408 || status === 429 || status >= 500;
