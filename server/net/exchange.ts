/*
 * Owns one request on a connection up to the response head: writes the GET head, reads the
 * response head (skipping 1xx interim answers), and says how its body is framed. The body's
 * first bytes stay in the connection's block for whoever reads the body (body.ts).
 */
import { AppError } from '../errors';
import { framingOf, type Framer } from './body-framing';
import type { Connection, Consumer } from './connection';
import { parseHead, TOKEN } from './head-parser';
import { badResponse, closedEarly } from './http-errors';

const HEAD_LIMIT = 64 * 1024;

/** Rejection of an exchange on a reused connection that the server had closed while it was idle: retry on a new one. */
export const STALE = Symbol('stale connection');

export interface ResponseHead {
  status: number;
  /** Field names in lower case; repeated fields joined with ", ". */
  headers: Record<string, string | undefined>;
  framer: Framer;
  keepAlive: boolean;
}

/** The request head of a GET; throws BAD_HEADER for a header that would smuggle a line. */
export function requestHead(url: URL, headers: Record<string, string>): string {
  let head = `GET ${url.pathname || '/'}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name) || /[^\t\x20-\x7e\x80-\xff]/.test(value)) throw new AppError('BAD_HEADER', `invalid request header ${name}`);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}Connection: keep-alive\r\n\r\n`;
}

/**
 * Sends `head` on `conn` and resolves with the response head once it arrived, leaving `conn`
 * paused with no reader. Rejects with STALE when a reused connection fails before any byte came.
 */
export function exchange(conn: Connection, head: string, signal: AbortSignal): Promise<ResponseHead> {
  return new Promise<ResponseHead>((resolve, reject) => {
    let got = 0;
    let settled = false;
    const settle = (err: unknown, value?: ResponseHead): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      if (value) resolve(value);
      else reject(err);
    };
    const onAbort = (): void => settle(signal.reason);
    const failed = (err: Error): void => settle(got === 0 && conn.reused ? STALE : err);
    const reader: Consumer = {
      bytes(block, start, from, to) {
        got += to - from;
        // Skip 1xx interim answers (100 Continue, 103 Early Hints): the real one follows.
        for (;;) {
          const region = block.subarray(start, to);
          const end = region.indexOf('\r\n\r\n', Math.max(0, from - start - 3), 'latin1');
          if (end < 0) {
            if (region.length > HEAD_LIMIT) {
              conn.pause();
              settle(badResponse('the server sent response headers larger than 64 KiB'));
            }
            return start;
          }
          let parsed: ResponseHead;
          try {
            const text = parseHead(region.toString('latin1', 0, end));
            parsed = { status: text.status, headers: text.headers, ...framingOf(text) };
          } catch (err) {
            conn.pause();
            settle(err);
            return start;
          }
          start += end + 4;
          if (parsed.status >= 100 && parsed.status < 200) continue;
          conn.pause(); // the body waits for whoever reads it; its first bytes stay in the block
          conn.detach();
          settle(undefined, parsed);
          return start;
        }
      },
      retire: conn.pool.give,
      end: () => failed(closedEarly()),
      fail: failed,
    };
    signal.addEventListener('abort', onAbort, { once: true });
    conn.attach(reader); // nothing is here yet on a new or claimed connection: this makes it the reader and resumes it
    conn.send(head);
  });
}
