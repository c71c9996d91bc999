/**
 * A scriptable HTTP file server for the download manager's tests.
 *
 * It behaves like a plain static server (nginx-like Range / If-Range / ETag handling) by default,
 * and can be told to misbehave per path: persistently (throttle, ignore Range, no Content-Length)
 * or once (status codes, resets, stalls, redirects, lying Content-Length). Every request is
 * recorded so tests can wait on what the client actually did instead of sleeping.
 *
 * Decisions worth knowing:
 * - Multi-range requests (`bytes=0-9,20-29`) get a single-part 206 for the FIRST range only;
 *   no multipart/byteranges. A downloader never asks for more than one range.
 * - A syntactically invalid Range (e.g. `bytes=9-3`, `items=0-1`) is ignored (200 full body),
 *   as RFC 9110 says; an unsatisfiable one (start >= size, `bytes=-0`) gets 416.
 * - Body-shaping faults (resetAfter, stallAfter, contentLengthDelta, drip, ignoreRange) apply to file responses;
 *   on a route() path or an unknown path only status / redirectTo / retryAfter / body / headers
 *   take effect (the fault is still consumed).
 * - `bytesSent` counts body bytes once the socket accepted them (write callback), so
 *   waitForBytes() resolving means the bytes are on their way, not merely queued in the helper.
 *
 * Only node: built-ins, so it can be used by any test without extra dependencies.
 */
import * as http from 'node:http';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';

export interface FileOptions {
  /** Generate deterministic pseudo-random bytes of this size, seeded by the path. */
  size?: number;
  /** Or serve these exact bytes (not copied: do not mutate them afterwards). */
  data?: Buffer;
  /** Default: strong ETag `"<sha256 first 16 hex>"` of the content; false = no ETag. */
  etag?: string | false;
  /** Default: a fixed HTTP date (advanced by one hour each time setFileOptions changes the content); false = none. */
  lastModified?: string | false;
  /** Default application/octet-stream. */
  contentType?: string;
  contentDisposition?: string;
  /** Extra response headers (e.g. X-Linked-Size). */
  headers?: Record<string, string>;
  /** Bytes per second per connection. */
  throttle?: number;
  /** Answer 200 with the full body even when Range is asked (Accept-Ranges is still advertised unless acceptRanges is false). */
  ignoreRange?: boolean;
  /** Chunked transfer, no Content-Length, no Accept-Ranges, Range never honoured. */
  noContentLength?: boolean;
  /** Default true: advertise Accept-Ranges: bytes and honour Range. */
  acceptRanges?: boolean;
}

/**
 * One-shot behaviour, consumed in order by the next requests (any method) to the path. A fault with
 * `when` is consumed by the first later request it matches; requests it does not match pass it by
 * (and may take a fault queued after it).
 */
export interface Fault {
  /** Only a request this returns true for takes the fault (e.g. not a one-byte probe). */
  when?: (request: RequestRecord) => boolean;
  /** Answer this status with a small text body instead of the file. */
  status?: number;
  /** Retry-After header sent with `status`. */
  retryAfter?: string;
  /** Send headers + this many body bytes, then close the socket (after flushing them). No effect if the body is not longer than that. */
  resetAfter?: number;
  /** Send headers + this many body bytes (at most the body), then nothing more, socket kept open until releaseStalls()/close(). */
  stallAfter?: number;
  /** 302 to this absolute URL. */
  redirectTo?: string;
  /**
   * Advertise Content-Length = real length + delta. Positive: the real bytes are sent and the
   * socket is closed (a truncated response). Negative: only Content-Length bytes are sent and the
   * response ends normally (a short but well-formed response).
   */
  contentLengthDelta?: number;
  /** With `status`: the body to send instead of the default text. */
  body?: string | Buffer;
  /** Extra headers for this one response. */
  headers?: Record<string, string>;
  /** Answer this one request with 200 and the whole body even when it asks for a Range (the file's If-Range/ETag unchanged). */
  ignoreRange?: boolean;
  /**
   * A slow drip: the first `times` × `bytes` body bytes go out `bytes` at a time, one piece every
   * `everyMs` ms, then the rest as usual. The connection is alive but barely moving.
   */
  drip?: { bytes: number; everyMs: number; times: number };
}

export interface RequestRecord {
  method: string;
  /** Path the request was matched against (no query; the registered spelling when it matched). */
  path: string;
  /** Path + query as received. */
  url: string;
  headers: http.IncomingHttpHeaders;
  range?: string;
  /** 0 until the status line is decided. */
  status: number;
  /** Body bytes accepted by the socket so far. */
  bytesSent: number;
  /** Date.now() at arrival. */
  startedAt: number;
  /** Date.now() when the response closed (completed or cut); undefined while it is open. */
  endedAt?: number;
  /** The response was fully sent as a well-formed HTTP message. */
  finished: boolean;
  /** The one-shot fault consumed by this request, if any (addition to the brief's API). */
  fault?: Fault;
}

export interface FileInfo {
  data: Buffer;
  sha256: string;
  size: number;
  url: string;
}

export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface FileServer {
  /** "http://127.0.0.1:<port>" */
  url: string;
  port: number;
  addFile(path: string, opts: FileOptions): FileInfo;
  /** Merge new options in; passing `size` or `data` regenerates the content (new bytes, new default ETag/Last-Modified). Returns the current content. */
  setFileOptions(path: string, opts: Partial<FileOptions>): FileInfo;
  fault(path: string, ...faults: Fault[]): void;
  /** Drops the faults not yet consumed for the path. */
  clearFaults(path: string): void;
  /** Custom handler; a path ending in `/*` matches every path under that prefix (longest prefix wins). Routes win over files. */
  route(path: string, handler: RouteHandler): void;
  requests: RequestRecord[];
  waitForRequest(pred: (r: RequestRecord) => boolean, timeoutMs?: number): Promise<RequestRecord>;
  waitForBytes(path: string, atLeast: number, timeoutMs?: number): Promise<void>;
  releaseStalls(): void;
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 5000;
/** Slice size for unthrottled bodies: small enough that bytesSent progresses visibly and faults cut precisely. */
const CHUNK = 64 * 1024;
/** Throttle tick: short enough for a smooth rate, long enough not to spin. */
const TICK_MS = 25;
/** Base of the default Last-Modified; fixed so If-Range by date is reproducible across runs. */
const BASE_LAST_MODIFIED_MS = Date.UTC(2025, 0, 1, 0, 0, 0);

interface FileEntry {
  opts: FileOptions;
  data: Buffer;
  sha256: string;
  /** Bumped whenever the content is replaced, so regenerated bytes and the default Last-Modified differ. */
  generation: number;
}

/**
 * xorshift32 over a Uint32Array: ~16M iterations for 64 MiB take tens of milliseconds, far cheaper
 * than crypto.randomBytes, and the same path always yields the same bytes (little-endian hosts).
 */
function generateBytes(size: number, seedText: string): Buffer {
  const words = Math.ceil(size / 4);
  // A dedicated ArrayBuffer: pooled Buffers may sit at offsets a Uint32Array cannot view.
  const ab = new ArrayBuffer(words * 4);
  const u32 = new Uint32Array(ab);
  let x = createHash('sha256').update(seedText).digest().readUInt32LE(0) | 0;
  if (x === 0) x = 0x9e3779b9 | 0; // xorshift's only fixed point
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    u32[i] = x;
  }
  return Buffer.from(ab, 0, size);
}

function normalizePath(path: string): string {
  return path.startsWith('/') ? path : `/${path}`;
}

type ParsedRange = { start: number; end: number } | 'unsatisfiable' | undefined; // end exclusive

/** Parses the first range of a `bytes=` header; undefined means "ignore the header". */
export function parseRange(header: string, total: number): ParsedRange {
  const m = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!m) return undefined;
  const first = (m[1] ?? '').split(',')[0]!.trim();
  const mm = /^(\d*)\s*-\s*(\d*)$/.exec(first);
  if (!mm) return undefined;
  const a = mm[1] ?? '';
  const b = mm[2] ?? '';
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const k = Number(b);
    if (k === 0 || total === 0) return 'unsatisfiable';
    return { start: Math.max(0, total - k), end: total };
  }
  const start = Number(a);
  if (b !== '' && Number(b) < start) return undefined;
  if (start >= total) return 'unsatisfiable';
  const last = b === '' ? total - 1 : Math.min(Number(b), total - 1);
  return { start, end: last + 1 };
}

/** If-Range: a strong ETag compare, or an exact Last-Modified match. Weak tags never match. */
function ifRangeMatches(value: string, etag: string | undefined, lastModified: string | undefined): boolean {
  const v = value.trim();
  if (v.startsWith('W/')) return false;
  if (v.startsWith('"')) return etag !== undefined && !etag.startsWith('W/') && v === etag;
  return lastModified !== undefined && v === lastModified;
}

/** Resolves after `ms`, or early when `res` closes, so throttle loops end promptly on abort/close(). */
function sleepOrClose(ms: number, res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    res.on('close', done);
  });
}

function drainOrClose(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

export async function startFileServer(opts: { host?: string } = {}): Promise<FileServer> {
  const host = opts.host ?? '127.0.0.1';
  const files = new Map<string, FileEntry>();
  const faults = new Map<string, Fault[]>();
  const routes = new Map<string, RouteHandler>();
  const requests: RequestRecord[] = [];
  const sockets = new Set<Socket>();
  const stalled = new Set<Socket>();
  const waiters = new Set<{ check: () => void; fail: (err: Error) => void }>();
  let closing: Promise<void> | undefined;

  /** Re-evaluates every waiter; called on any record change so predicates on status/finished work. */
  const notify = (): void => {
    for (const w of [...waiters]) w.check();
  };

  const server = http.createServer((req, res) => handle(req, res));
  // Tracked so close() can destroy keep-alive and stalled connections; server.close() alone waits for them.
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      stalled.delete(socket);
    });
  });

  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  const info = (path: string, e: FileEntry): FileInfo => ({
    data: e.data,
    sha256: e.sha256,
    size: e.data.length,
    url: baseUrl + path,
  });

  const buildContent = (path: string, o: FileOptions, generation: number): { data: Buffer; sha256: string } => {
    if (o.data !== undefined && o.size !== undefined) throw new Error(`file-server: ${path}: give either size or data, not both`);
    let data: Buffer;
    if (o.data !== undefined) data = o.data;
    else if (o.size !== undefined) {
      if (!Number.isSafeInteger(o.size) || o.size < 0) throw new Error(`file-server: ${path}: bad size ${o.size}`);
      data = generateBytes(o.size, generation === 0 ? path : `${path}#${generation}`);
    } else throw new Error(`file-server: ${path}: size or data is required`);
    // Hashed once here so every request and every test assertion reuses it.
    return { data, sha256: createHash('sha256').update(data).digest('hex') };
  };

  const etagOf = (e: FileEntry): string | undefined =>
    e.opts.etag === false ? undefined : (e.opts.etag ?? `"${e.sha256.slice(0, 16)}"`);
  const lastModifiedOf = (e: FileEntry): string | undefined =>
    e.opts.lastModified === false
      ? undefined
      : (e.opts.lastModified ?? new Date(BASE_LAST_MODIFIED_MS + e.generation * 3_600_000).toUTCString());

  const findRoute = (path: string): RouteHandler | undefined => {
    const exact = routes.get(path);
    if (exact) return exact;
    let best: { len: number; h: RouteHandler } | undefined;
    for (const [key, h] of routes) {
      if (!key.endsWith('/*')) continue;
      const prefix = key.slice(0, -1);
      if (path.startsWith(prefix) && (!best || prefix.length > best.len)) best = { len: prefix.length, h };
    }
    return best?.h;
  };

  /** The registered spelling of a request path: raw first, then percent-decoded. */
  const resolvePath = (raw: string): string => {
    const known = (p: string): boolean => files.has(p) || faults.has(p) || findRoute(p) !== undefined;
    if (known(raw)) return raw;
    try {
      const decoded = decodeURIComponent(raw);
      if (known(decoded)) return decoded;
    } catch {
      // malformed escapes: keep the raw path
    }
    return raw;
  };

  function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = resolvePath(q === -1 ? url : url.slice(0, q));
    const method = req.method ?? 'GET';
    const record: RequestRecord = {
      method,
      path,
      url,
      headers: req.headers,
      range: typeof req.headers.range === 'string' ? req.headers.range : undefined,
      status: 0,
      bytesSent: 0,
      startedAt: Date.now(),
      finished: false,
    };
    requests.push(record);
    res.on('finish', () => {
      record.finished = true;
      record.status = res.statusCode;
      notify();
    });
    res.on('close', () => {
      record.endedAt = Date.now();
      if (record.status === 0 && res.headersSent) {
        record.status = res.statusCode;
        notify();
      }
    });

    const queue = faults.get(path) ?? [];
    const at = queue.findIndex((f) => f.when === undefined || f.when(record));
    const fault = at === -1 ? undefined : queue.splice(at, 1)[0];
    if (fault) record.fault = fault;
    notify();

    if (fault?.redirectTo !== undefined) {
      sendSimple(req, res, record, 302, `Found: ${fault.redirectTo}\n`, { Location: fault.redirectTo, ...fault.headers });
      return;
    }
    if (fault?.status !== undefined) {
      const extra: http.OutgoingHttpHeaders = { ...fault.headers };
      if (fault.retryAfter !== undefined) extra['Retry-After'] = fault.retryAfter;
      const body = fault.body ?? `${fault.status} ${http.STATUS_CODES[fault.status] ?? ''}\n`;
      sendSimple(req, res, record, fault.status, body, extra);
      return;
    }

    const handler = findRoute(path);
    if (handler) {
      runRoute(handler, req, res, record);
      return;
    }
    const entry = files.get(path);
    if (!entry) {
      sendSimple(req, res, record, 404, 'Not Found\n', {});
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      sendSimple(req, res, record, 405, 'Method Not Allowed\n', { Allow: 'GET, HEAD' });
      return;
    }
    void serveFile(req, res, record, entry, fault);
  }

  function sendSimple(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    record: RequestRecord,
    status: number,
    body: string | Buffer,
    headers: http.OutgoingHttpHeaders,
  ): void {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    record.status = status;
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': buf.length, ...headers });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.end(buf, () => {
      record.bytesSent += buf.length;
      notify();
    });
  }

  function runRoute(handler: RouteHandler, req: http.IncomingMessage, res: http.ServerResponse, record: RequestRecord): void {
    // Count body bytes written by the handler so waitForBytes works on fake API hosts too.
    const count = (chunk: unknown): void => {
      if (req.method === 'HEAD' || chunk === undefined || chunk === null || typeof chunk === 'function') return;
      const n = typeof chunk === 'string' ? Buffer.byteLength(chunk) : (chunk as Uint8Array).byteLength;
      if (n > 0) {
        record.bytesSent += n;
        notify();
      }
    };
    const origWrite = res.write.bind(res) as (...args: unknown[]) => boolean;
    const origEnd = res.end.bind(res) as (...args: unknown[]) => http.ServerResponse;
    res.write = ((...args: unknown[]) => {
      count(args[0]);
      return origWrite(...args);
    }) as typeof res.write;
    res.end = ((...args: unknown[]) => {
      count(args[0]);
      return origEnd(...args);
    }) as typeof res.end;
    try {
      handler(req, res);
    } catch (err) {
      // A throwing test handler should fail loudly on the client side, not hang it.
      if (!res.headersSent) sendSimple(req, res, record, 500, `route handler threw: ${String(err)}\n`, {});
      else res.destroy();
    }
  }

  async function serveFile(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    record: RequestRecord,
    entry: FileEntry,
    fault: Fault | undefined,
  ): Promise<void> {
    const o = entry.opts;
    const data = entry.data;
    const total = data.length;
    const etag = etagOf(entry);
    const lastModified = lastModifiedOf(entry);
    const advertiseRanges = o.acceptRanges !== false && !o.noContentLength;
    const honourRanges = advertiseRanges && !o.ignoreRange && !fault?.ignoreRange;

    const headers: http.OutgoingHttpHeaders = { 'Content-Type': o.contentType ?? 'application/octet-stream' };
    if (etag !== undefined) headers['ETag'] = etag;
    if (lastModified !== undefined) headers['Last-Modified'] = lastModified;
    if (o.contentDisposition !== undefined) headers['Content-Disposition'] = o.contentDisposition;
    if (advertiseRanges) headers['Accept-Ranges'] = 'bytes';
    Object.assign(headers, o.headers, fault?.headers);

    let status = 200;
    let start = 0;
    let end = total;
    const rangeHeader = record.range;
    if (honourRanges && rangeHeader !== undefined) {
      const rawIfRange = req.headers['if-range'];
      const ifRange = Array.isArray(rawIfRange) ? rawIfRange[0] : rawIfRange;
      // A failed If-Range means "the file changed": the whole new body, as a real server does.
      if (ifRange === undefined || ifRangeMatches(ifRange, etag, lastModified)) {
        const r = parseRange(rangeHeader, total);
        if (r === 'unsatisfiable') {
          sendSimple(req, res, record, 416, 'Range Not Satisfiable\n', { ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Range': `bytes */${total}` });
          return;
        }
        if (r) {
          status = 206;
          start = r.start;
          end = r.end;
          headers['Content-Range'] = `bytes ${start}-${end - 1}/${total}`;
        }
      }
    }

    const body = data.subarray(start, end);
    let sendLimit = body.length;
    let after: 'end' | 'reset' | 'stall' = 'end';
    if (!o.noContentLength) {
      const advertised = Math.max(0, body.length + (fault?.contentLengthDelta ?? 0));
      headers['Content-Length'] = advertised;
      if (advertised < body.length) sendLimit = advertised;
      else if (advertised > body.length) after = 'reset'; // cannot ever satisfy the promise: cut it off
    }
    if (fault?.resetAfter !== undefined && fault.resetAfter <= sendLimit) {
      sendLimit = Math.max(0, fault.resetAfter);
      after = 'reset';
    }
    if (fault?.stallAfter !== undefined && (after !== 'reset' || fault.stallAfter < sendLimit)) {
      sendLimit = Math.max(0, Math.min(fault.stallAfter, sendLimit));
      after = 'stall';
    }
    if (req.method === 'HEAD') sendLimit = 0;

    record.status = status;
    res.writeHead(status, headers);
    notify();

    if (req.method === 'HEAD' && after === 'end') {
      res.end();
      return;
    }
    let dripped = 0;
    if (fault?.drip && req.method !== 'HEAD') {
      res.flushHeaders();
      for (let i = 0; i < fault.drip.times && dripped < sendLimit; i++) {
        await sleepOrClose(fault.drip.everyMs, res);
        if (res.destroyed) return;
        const piece = body.subarray(dripped, Math.min(sendLimit, dripped + fault.drip.bytes));
        dripped += piece.length;
        res.write(piece, (err) => {
          if (err) return;
          record.bytesSent += piece.length;
          notify();
        });
      }
    }
    const complete = await pump(res, record, body.subarray(dripped, sendLimit), o.throttle);
    if (!complete) return; // client went away or close() ran

    const socket = res.socket;
    if (after === 'end') {
      res.end();
    } else if (after === 'reset') {
      if (sendLimit === 0) res.flushHeaders(); // writeHead only buffers; the client must see the headers first
      // end() flushes what was written (including corked chunks) before the FIN, so the client
      // receives exactly sendLimit bytes; then destroy to drop the connection for good.
      if (socket) socket.end(() => socket.destroy());
    } else {
      if (sendLimit === 0) res.flushHeaders();
      if (socket && !socket.destroyed) stalled.add(socket);
    }
  }

  /** Writes `body` respecting backpressure and the per-connection throttle; false if the response closed first. */
  async function pump(res: http.ServerResponse, record: RequestRecord, body: Buffer, throttle: number | undefined): Promise<boolean> {
    let closed = false;
    res.once('close', () => {
      closed = true;
    });
    const write = (chunk: Buffer): boolean =>
      res.write(chunk, (err) => {
        if (err) return;
        record.bytesSent += chunk.length;
        notify();
      });

    let sent = 0;
    if (throttle === undefined || throttle <= 0) {
      while (sent < body.length) {
        if (closed || res.destroyed) return false;
        const chunk = body.subarray(sent, sent + CHUNK);
        sent += chunk.length;
        if (!write(chunk)) await drainOrClose(res);
      }
      return !(closed || res.destroyed);
    }

    // Token bucket refilled from the clock, capped at 100 ms worth so a pause (backpressure)
    // is not followed by a burst that would break the advertised rate.
    const cap = Math.max(1, throttle * 0.1);
    let budget = 0;
    let last = Date.now();
    while (sent < body.length) {
      await sleepOrClose(TICK_MS, res);
      if (closed || res.destroyed) return false;
      const now = Date.now();
      budget = Math.min(cap, budget + (throttle * (now - last)) / 1000);
      last = now;
      const n = Math.min(Math.floor(budget), body.length - sent, CHUNK);
      if (n < 1) continue;
      budget -= n;
      const chunk = body.subarray(sent, sent + n);
      sent += n;
      if (!write(chunk)) await drainOrClose(res);
    }
    return !(closed || res.destroyed);
  }

  const describeRequests = (): string =>
    requests.length === 0
      ? 'none'
      : requests
          .slice(-10)
          .map((r) => `${r.method} ${r.url} -> ${r.status || '?'} (${r.bytesSent} B${r.range ? `, range ${r.range}` : ''}${r.finished ? ', finished' : ''})`)
          .join('; ');

  /** Shared waiter plumbing: a condition re-checked on every change, a deadline, and rejection on close(). */
  function waitFor<T>(test: () => T | undefined, timeoutMs: number, describe: () => string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, value?: T): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        waiters.delete(waiter);
        if (err) reject(err);
        else resolve(value as T);
      };
      const waiter = {
        check: (): void => {
          try {
            const v = test();
            if (v !== undefined) finish(undefined, v);
          } catch (err) {
            finish(err instanceof Error ? err : new Error(String(err)));
          }
        },
        fail: (err: Error): void => finish(err),
      };
      const timer = setTimeout(() => finish(new Error(`${describe()} (timed out after ${timeoutMs} ms; last requests: ${describeRequests()})`)), timeoutMs);
      waiters.add(waiter);
      waiter.check();
      if (!settled && closing) finish(new Error(`${describe()} (file server is closed)`));
    });
  }

  const fs: FileServer = {
    url: baseUrl,
    port,
    requests,

    addFile(path, fileOpts) {
      const p = normalizePath(path);
      const opts = { ...fileOpts };
      const content = buildContent(p, opts, 0);
      const entry: FileEntry = { opts, ...content, generation: 0 };
      files.set(p, entry);
      return info(p, entry);
    },

    setFileOptions(path, patch) {
      const p = normalizePath(path);
      const entry = files.get(p);
      if (!entry) throw new Error(`file-server: setFileOptions: no file at ${p}`);
      const merged: FileOptions = { ...entry.opts, ...patch };
      // size and data are alternatives: the one just given replaces the other.
      if ('size' in patch && patch.size !== undefined && !('data' in patch)) delete merged.data;
      if ('data' in patch && patch.data !== undefined && !('size' in patch)) delete merged.size;
      if (patch.size !== undefined || patch.data !== undefined) {
        const generation = entry.generation + 1;
        // Built before anything is assigned, so a bad patch leaves the file as it was.
        Object.assign(entry, buildContent(p, merged, generation), { generation });
      }
      entry.opts = merged;
      return info(p, entry);
    },

    fault(path, ...newFaults) {
      const p = normalizePath(path);
      const queue = faults.get(p) ?? [];
      queue.push(...newFaults);
      faults.set(p, queue);
    },

    clearFaults(path) {
      faults.delete(normalizePath(path));
    },

    route(path, handler) {
      routes.set(normalizePath(path), handler);
    },

    waitForRequest(pred, timeoutMs = DEFAULT_TIMEOUT_MS) {
      return waitFor(() => requests.find(pred), timeoutMs, () => `waitForRequest: no request matched ${pred.toString()}`);
    },

    async waitForBytes(path, atLeast, timeoutMs = DEFAULT_TIMEOUT_MS) {
      const p = normalizePath(path);
      const sum = (): number => requests.reduce((acc, r) => (r.path === p ? acc + r.bytesSent : acc), 0);
      await waitFor(() => (sum() >= atLeast ? true : undefined), timeoutMs, () => `waitForBytes: ${p} reached ${sum()} of ${atLeast} bytes`);
    },

    releaseStalls() {
      for (const s of stalled) s.destroy();
      stalled.clear();
    },

    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const w of [...waiters]) w.fail(new Error('file server closed while waiting'));
        // server.close() stops accepting and calls back once every connection is gone, which
        // only happens because we destroy them all (idle keep-alive, throttled, stalled).
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        stalled.clear();
      });
      return closing;
    },
  };
  return fs;
}
