/*
 * Owns one request on a connection up to the response head: writes the GET head, reads the
 * response head (skipping 1xx interim answers), and says how its body is framed. The body's
 * first bytes stay in the connection's block for whoever reads the body (body.ts).
 */
import { AppError } from '../errors';
import { framingOf, type Framer } from './body-framing';
import type { Connection, Consumer } from './connection';
import { HeadScanner, parseHead, TOKEN, type Headers } from './head-parser';
import { badResponse, closedEarly } from './http-errors';

/** Interim (1xx) answers skipped before the final one, at most. */
const INTERIM_LIMIT = 16;

/** Rejection of an exchange on a reused connection that the server had closed while it was idle: retry on a new one. */
export const STALE = Symbol('stale connection');

export interface ResponseHead {
  status: number;
  /** Field names in lower case (no prototype); list fields joined with ", ". */
  headers: Headers;
  framer: Framer;
  keepAlive: boolean;
  /** The server's own idle limit for the connection (Keep-Alive: timeout=N), in ms. */
  serverIdleMs?: number;
}

/**
 * The request head of a GET; throws BAD_HEADER for a header that would smuggle a line. To an http
 * proxy (`proxy`), the request target is the whole URL (absolute form) and the proxy's credentials go along.
 */
export function requestHead(url: URL, headers: Record<string, string>, proxy?: { authorization?: string }): string {
  const path = `${url.pathname || '/'}${url.search}`;
  let head = `GET ${proxy ? `${url.protocol}//${url.host}${path}` : path} HTTP/1.1\r\nHost: ${url.host}\r\n`;
  if (proxy?.authorization) head += `Proxy-Authorization: ${proxy.authorization}\r\n`;
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
    let scanner = new HeadScanner();
    let interim = 0;
    const settle = (err: unknown, value?: ResponseHead): void => {
      if (settled) return;
      settled = true;
      conn.headDone();
      signal.removeEventListener('abort', onAbort);
      if (value) resolve(value);
      else reject(err);
    };
    const onAbort = (): void => settle(signal.reason);
    // Our own errors (a time limit) are never the server having closed an idle connection.
    const failed = (err: Error): void => settle(got === 0 && conn.reused && !(err instanceof AppError) ? STALE : err);
    const reader: Consumer = {
      bytes(block, start, from, to) {
        got += to - from;
        try {
          for (;;) {
            const end = scanner.scan(block.subarray(start, to));
            if (end < 0) return start;
            const parsed = parseHead(block.toString('latin1', start, start + end - 4));
            start += end;
            if (parsed.status === 101) throw badResponse('the server switched protocols (101) in answer to a plain GET');
            if (parsed.status < 200) {
              // 100 Continue, 102 Processing, 103 Early Hints or one not known yet: the final answer follows (RFC 9110 §15.2).
              if (++interim > INTERIM_LIMIT) throw badResponse(`the server sent more than ${INTERIM_LIMIT} interim (1xx) answers`);
              scanner = new HeadScanner();
              continue;
            }
            const framing = framingOf(parsed);
            conn.pause(); // the body waits for whoever reads it; its first bytes stay in the block
            conn.detach();
            settle(undefined, { status: parsed.status, headers: parsed.headers, ...framing });
            return start;
          }
        } catch (err) {
          conn.pause();
          settle(err);
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
    conn.expectHead();
  });
}
