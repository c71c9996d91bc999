/*
 * Owns checking a 206 answer's Content-Range against what was asked and what is known of the file:
 * a pure function, so that every path that appends a range to stored bytes (one connection's
 * resume, each segment, the probe) holds the answer to the same rules. A resume answered by an
 * honest 206 of a file that changed upstream (no ETag, or the same one) starts where asked but
 * tells another total: appending it would splice two files. Only the total can tell.
 */
import type { AppError } from '../errors';
import { badResponse } from './http-errors';

export interface ContentRange {
  /** First byte of the range. */
  start: number;
  /** Last byte of the range (inclusive). */
  end: number;
  /** The whole file's size, or null when the server wrote `*`. */
  total: number | null;
}

export interface RangeWanted {
  /** The first byte asked for: the range must start there. */
  start: number;
  /** The last byte asked for (inclusive), when the request had one: the range must not go past it. */
  end?: number;
  /**
   * The file's size as known from before (the stored size of a resume, the probe's total for a
   * segment): the range's total must be it, and must be given. Null or absent when not known yet.
   */
  total?: number | null;
  /** The answer's Content-Length, when it had one: it must be the range's length. */
  contentLength?: string | undefined;
}

const MAX = Number.MAX_SAFE_INTEGER;

/**
 * Parses `header` (`bytes first-last/total`, RFC 9110 §14.4) and checks it against `want`.
 * Returns the range, or throws a retryable AppError BAD_RESPONSE that says what does not match;
 * the bytes stored so far then cannot be trusted to go with this answer's.
 */
export function checkContentRange(header: string | undefined, want: RangeWanted): ContentRange {
  const m = /^bytes (\d{1,16})-(\d{1,16})\/(\d{1,16}|\*)$/i.exec((header ?? '').replace(/^[ \t]+|[ \t]+$/g, ''));
  if (!m) throw refuse(header === undefined ? 'the server answered 206 without a Content-Range' : `the server answered 206 with an invalid Content-Range (${JSON.stringify(header.slice(0, 60))})`);
  const start = Number(m[1]);
  const end = Number(m[2]);
  const total = m[3] === '*' ? null : Number(m[3]);
  if (start > MAX || end > MAX || (total !== null && total > MAX)) throw refuse(`the server answered a Content-Range past what can be counted (${header})`);
  if (end < start || (total !== null && end >= total)) throw refuse(`the server answered an impossible Content-Range (${header})`);
  if (start !== want.start) throw refuse(`the server answered bytes from ${start} when bytes from ${want.start} were asked for`);
  if (want.end !== undefined && end > want.end) throw refuse(`the server answered bytes up to ${end} when bytes up to ${want.end} were asked for`);
  if (want.total !== undefined && want.total !== null) {
    if (total === null) throw refuse(`the server did not say the file's size (Content-Range: ${header}), so it cannot be checked against the ${want.total} bytes known`);
    if (total !== want.total) throw refuse(`the file changed upstream: it is ${total} bytes now, ${want.total} before`);
  }
  if (want.contentLength !== undefined && Number(want.contentLength) !== end - start + 1) {
    throw refuse(`the server's Content-Length (${want.contentLength}) is not the length of its Content-Range (${header})`);
  }
  return { start, end, total };
}

const refuse = (message: string): AppError => badResponse(message);
