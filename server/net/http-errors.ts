/*
 * Owns what HTTP failures are called: the errors the raw client raises for a response it cannot
 * read or that was cut short, and the human messages for HTTP error statuses.
 */
import { AppError } from '../errors';

/** The server answered something we cannot read as HTTP/1.1; retryable: a later attempt may get a sane answer. */
export const badResponse = (message: string): AppError => new AppError('BAD_RESPONSE', message, { retryable: true });

/** The connection ended before the response did; callers treat it as the reset it amounts to. */
export const closedEarly = (): Error => Object.assign(new Error('the connection closed early'), { code: 'ECONNRESET' });

/** Human messages for HTTP failures: what happened and, where it helps, what to do. */
export function describeHttpError(status: number, url: URL): string {
  const host = url.host;
  switch (status) {
    case 401:
      return `${host} answered 401: it needs credentials for this file`;
    case 403:
      return `${host} answered 403: access to this file is forbidden`;
    case 404:
      return `${host} answered 404: no file at this URL`;
    case 408:
      return `${host} answered 408: the request timed out`;
    case 410:
      return `${host} answered 410: the file is gone`;
    case 429:
      return `${host} answered 429: too many requests, it asked us to slow down`;
    default:
      if (status >= 500) return `${host} answered ${status}: a server error`;
      return `${host} answered ${status}`;
  }
}
