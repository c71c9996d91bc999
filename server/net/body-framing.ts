/*
 * Owns where a response body ends — after Content-Length bytes, after the last chunk, or when the
 * server closes — and whether the connection can serve another request after it. Framing that
 * could be read two ways is refused (RFC 9112 §6, and what llhttp refuses): Transfer-Encoding with
 * Content-Length, a transfer coding other than exactly `chunked`, Transfer-Encoding twice, a
 * Content-Length that is not one run of digits, chunk lines that are not CRLF-ended or well
 * formed, chunk data not followed by CRLF, trailer lines that are no fields. The Framer works in
 * place on the connection's block (chunk framing is removed by moving bytes down), so reading a
 * chunked body allocates nothing either; a Content-Length body is never scanned.
 */
import { badResponse, closedEarly } from './http-errors';
import { FIELD_LIMIT, HEAD_LIMIT, parseField, type ParsedHead } from './head-parser';

/** How a body is framed, and whether the connection may be kept for another request after it. */
export interface Framing {
  framer: Framer;
  keepAlive: boolean;
  /** How long the server keeps the connection open while idle (its `Keep-Alive: timeout=N`), in ms. */
  serverIdleMs?: number;
}

/** A chunk size, its extensions (BWS ; name [= token / quoted-string]) and nothing else. */
const CHUNK_LINE =
  /^([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?)*$/;
/** Longest chunk-size line (extensions included) read. */
const CHUNK_LINE_LIMIT = 4096;

/**
 * Decides the framing from a parsed final (non-1xx) head. May normalize `headers['content-length']`
 * (repeated equal values become one); throws BAD_RESPONSE for framing that cannot be trusted and for
 * a 2xx body in a content coding (the request asked for identity: encoded bytes are never stored).
 */
export function framingOf(head: ParsedHead): Framing {
  const { status, minor, headers, counts } = head;
  const connection = (headers.connection ?? '').toLowerCase();
  let keepAlive = minor === '1' ? !/(?:^|[\s,])close(?:$|[\s,])/.test(connection) : /(?:^|[\s,])keep-alive(?:$|[\s,])/.test(connection);
  const te = headers['transfer-encoding'];
  const cl = headers['content-length'];
  if (te !== undefined) {
    if ((counts['transfer-encoding'] ?? 0) > 1) throw badResponse('the server sent Transfer-Encoding twice');
    if (cl !== undefined) throw badResponse('the server sent both Transfer-Encoding and Content-Length: its framing is ambiguous');
    if (te.toLowerCase() !== 'chunked') throw badResponse(`the server sent a transfer coding other than chunked (Transfer-Encoding: ${JSON.stringify(te.slice(0, 40))})`);
  }
  let length: number | undefined;
  if (cl !== undefined) {
    const values = new Set(cl.split(',').map((v) => v.replace(/^[ \t]+|[ \t]+$/g, '')));
    const [only] = values;
    if (values.size !== 1 || !/^\d{1,15}$/.test(only!)) throw badResponse(`the server sent an invalid Content-Length (${JSON.stringify(cl.slice(0, 40))})`);
    headers['content-length'] = only;
    length = Number(only);
  }
  const coding = headers['content-encoding'];
  if (status >= 200 && status < 300 && coding !== undefined && coding.split(',').some((c) => c.trim().toLowerCase() !== 'identity')) {
    throw badResponse(`the server sent the body in a content coding (Content-Encoding: ${JSON.stringify(coding.slice(0, 40))}) though identity was asked for`);
  }
  let framer: Framer;
  if (status === 204 || status === 304 || status < 200) {
    framer = new Framer('length', 0);
  } else if (te !== undefined) {
    framer = new Framer('chunked', 0);
    if (minor === '0') keepAlive = false; // chunks from HTTP/1.0: read them, never trust the connection again (RFC 9112 §6.1)
  } else if (length !== undefined) {
    framer = new Framer('length', length);
  } else {
    framer = new Framer('close', 0);
    keepAlive = false;
  }
  const framing: Framing = { framer, keepAlive };
  const idle = /(?:^|[\s,;])timeout[ \t]*=[ \t]*(\d{1,6})(?:$|[\s,;])/i.exec(headers['keep-alive'] ?? '');
  if (idle) framing.serverIdleMs = Number(idle[1]) * 1000;
  return framing;
}

/** Where a body ends: after Content-Length bytes, after the last chunk, or when the server closes. */
export class Framer {
  done: boolean;
  /** Nothing followed the body: the connection can serve another request. */
  clean = true;
  private state: 'size' | 'data' | 'cr' | 'lf' | 'trailer' = 'size';
  private line = '';
  private trailerBytes = 0;
  private trailerFields = 0;

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
      switch (this.state) {
        case 'data': {
          const n = Math.min(to - i, this.remaining);
          if (out !== i) block.copyWithin(out, i, i + n);
          out += n;
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = 'cr';
          break;
        }
        case 'cr':
        case 'lf': {
          // The CRLF after a chunk's data, byte by byte: anything else means the size was wrong.
          if (block[i] !== (this.state === 'cr' ? 13 : 10)) throw badResponse('the server sent a chunk whose data is not followed by CRLF (a wrong chunk size)');
          i++;
          this.state = this.state === 'cr' ? 'lf' : 'size';
          break;
        }
        default: {
          const nl = block.subarray(i, to).indexOf(10);
          const stop = nl < 0 ? to : i + nl;
          this.line += block.toString('latin1', i, stop);
          if (this.state === 'size' ? this.line.length > CHUNK_LINE_LIMIT : this.trailerBytes + this.line.length > HEAD_LIMIT) {
            throw badResponse(this.state === 'size' ? 'the server sent a chunk-size line longer than 4 KiB' : 'the server sent trailers larger than 64 KiB');
          }
          i = stop;
          if (stop === to) break;
          i++; // the LF
          if (!this.line.endsWith('\r')) throw badResponse('the server ended a line of its chunked body with a bare LF, not CRLF');
          const line = this.line.slice(0, -1);
          this.line = '';
          if (this.state === 'size') this.sizeLine(line);
          else this.trailerLine(line);
        }
      }
    }
    if (i < to) this.clean = false;
    return [from, out];
  }

  private sizeLine(line: string): void {
    const m = CHUNK_LINE.exec(line);
    const digits = m?.[1]!.replace(/^0+(?=.)/, '');
    if (!m || digits!.length > 12) throw badResponse(`the server sent an invalid chunk-size line (${JSON.stringify(line.slice(0, 40))})`);
    this.remaining = parseInt(digits!, 16);
    this.state = this.remaining === 0 ? 'trailer' : 'data';
  }

  private trailerLine(line: string): void {
    if (line === '') {
      this.done = true;
      return;
    }
    parseField(line, 'trailer'); // checked, then dropped: trailers never change a body or its headers
    this.trailerBytes += line.length + 2;
    if (++this.trailerFields > FIELD_LIMIT) throw badResponse(`the server sent more than ${FIELD_LIMIT} trailer fields`);
  }

  /** The connection ended: fine for a body that runs to the close, else the body was cut short. */
  eof(): Error | undefined {
    return this.done || this.kind === 'close' ? undefined : closedEarly();
  }
}
