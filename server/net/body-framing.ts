/*
 * Owns where a response body ends — after Content-Length bytes, after the last chunk, or when the
 * server closes — and whether the connection can serve another request after it. The Framer
 * works in place on the connection's block (chunk framing is removed by moving bytes down), so
 * reading a chunked body allocates nothing either.
 */
import { badResponse, closedEarly } from './http-errors';
import type { ParsedHead } from './head-parser';

/** How a body is framed, and whether the connection may be kept for another request after it. */
export interface Framing {
  framer: Framer;
  keepAlive: boolean;
}

/**
 * Decides the framing from a parsed head. May normalize `headers['content-length']` (repeated
 * equal values become one); throws BAD_RESPONSE for a Content-Length that cannot be trusted.
 */
export function framingOf(head: ParsedHead): Framing {
  const { status, minor, headers } = head;
  const connection = (headers.connection ?? '').toLowerCase();
  let keepAlive = minor === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
  let framer: Framer;
  const te = headers['transfer-encoding'];
  if ((status >= 100 && status < 200) || status === 204 || status === 304) {
    framer = new Framer('length', 0);
  } else if (te !== undefined) {
    const chunked = /(?:^|,)\s*chunked\s*$/i.test(te);
    framer = new Framer(chunked ? 'chunked' : 'close', 0);
    // Both framings, or chunks from HTTP/1.0: read it, but never trust the connection again (RFC 9112 §6.1).
    if (!chunked || headers['content-length'] !== undefined || minor === '0') keepAlive = false;
  } else if (headers['content-length'] !== undefined) {
    const values = new Set(headers['content-length'].split(',').map((v) => v.trim()));
    const [only] = values;
    if (values.size !== 1 || !/^\d{1,15}$/.test(only!)) throw badResponse(`the server sent an invalid Content-Length (${headers['content-length'].slice(0, 40)})`);
    headers['content-length'] = only;
    framer = new Framer('length', Number(only));
  } else {
    framer = new Framer('close', 0);
    keepAlive = false;
  }
  return { framer, keepAlive };
}

/** Where a body ends: after Content-Length bytes, after the last chunk, or when the server closes. */
export class Framer {
  done: boolean;
  /** Nothing followed the body: the connection can serve another request. */
  clean = true;
  private state: 'size' | 'data' | 'crlf' | 'trailer' = 'size';
  private line = '';

  constructor(
    readonly kind: 'length' | 'chunked' | 'close',
    private remaining: number,
  ) {
    this.done = kind === 'length' && remaining === 0;
  }

  /** Body bytes left to come, when known. */
  get left(): number | undefined {
    return this.kind === 'length' ? this.remaining : undefined;
  }

  /** Takes the raw bytes `block[from, to)`; returns where the body bytes among them are (chunk framing removed in place). */
  take(block: Buffer, from: number, to: number): [number, number] {
    if (this.done) {
      if (to > from) this.clean = false;
      return [from, from];
    }
    if (this.kind === 'close') return [from, to];
    if (this.kind === 'length') {
      const n = Math.min(to - from, this.remaining);
      this.remaining -= n;
      if (this.remaining === 0) this.done = true;
      if (to - from > n) this.clean = false; // bytes beyond the announced length
      return [from, from + n];
    }
    let out = from;
    let i = from;
    while (i < to && !this.done) {
      if (this.state === 'data') {
        const n = Math.min(to - i, this.remaining);
        if (out !== i) block.copyWithin(out, i, i + n);
        out += n;
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = 'crlf';
        continue;
      }
      const nl = block.subarray(i, to).indexOf(10);
      const stop = nl < 0 ? to : i + nl;
      this.line += block.toString('latin1', i, stop);
      if (this.line.length > 4096) throw badResponse('the server sent a malformed chunked body');
      i = stop;
      if (nl < 0) break;
      i++;
      const line = this.line.replace(/\r$/, '');
      this.line = '';
      if (this.state === 'size') {
        const size = /^([0-9a-fA-F]{1,12})\s*(?:;.*)?$/.exec(line);
        if (!size) throw badResponse('the server sent a malformed chunked body');
        this.remaining = parseInt(size[1]!, 16);
        this.state = this.remaining === 0 ? 'trailer' : 'data';
      } else if (this.state === 'crlf') {
        if (line !== '') throw badResponse('the server sent a malformed chunked body');
        this.state = 'size';
      } else if (line === '') {
        this.done = true;
      }
    }
    if (i < to) this.clean = false;
    return [from, out];
  }

  /** The connection ended: fine for a body that runs to the close, else the body was cut short. */
  eof(): Error | undefined {
    return this.done || this.kind === 'close' ? undefined : closedEarly();
  }
}
