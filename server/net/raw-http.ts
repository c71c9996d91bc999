import type { Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import net from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { AppError } from '../errors';
import { guardedLookup } from './url-policy';
import { ChunkWriter } from '../disk/chunk-writer';

/*
 * A small HTTP/1.1 client for GETs of large files. Node's http module costs about 0.8 CPU-seconds
 * per GB just to hand a body to JavaScript (a parser callback, a Buffer and a stream event per
 * chunk, then their garbage); on a 2-core machine that halved our speed next to curl. Here the
 * socket reads (`onread`) straight into 1 MiB blocks that are reused: the kernel fills a block, a
 * full block goes to the disk in one positional write while the next one fills, and no memory is
 * allocated per chunk. Headers are parsed by hand (status line, fields, Content-Length or chunked),
 * idle keep-alive connections are reused, and at most 16 connections go to one host at a time.
 *
 * A body is read one of two ways: `pump()` moves it to a file (the fast path of every transfer),
 * or the body is read as an ordinary Readable (error pages, tiny answers; copies each chunk).
 */

const BLOCK = 1024 * 1024;
/** A read is never offered less room than this: the block is retired and a fresh one taken. */
const MIN_READ = 64 * 1024;
/** Blocks of one body that may wait for the disk before the socket is paused (4 MiB per connection). */
const MAX_BLOCKS = 4;
const HEAD_LIMIT = 64 * 1024;
const IDLE_MS = 4000;
/** More connections to one host gain nothing and get a client throttled by CDNs (aria2 caps at 16 too). */
const PER_HOST = 16;
/** A slow body still reaches the disk (and the progress bar) this often, whole block or not. */
const FLUSH_MS = 50;

const spare: Buffer[] = [];
const takeBlock = (): Buffer => spare.pop() ?? Buffer.allocUnsafeSlow(BLOCK);
const giveBlock = (b: Buffer): void => {
  if (spare.length < 16) spare.push(b);
};

/** What a connection does with what it reads; the current one is swapped per request and state. */
interface Consumer {
  /** New bytes in `block[from, to)`. */
  bytes(block: Buffer, from: number, to: number): void;
  /** No more bytes will land in `block`: the consumer now owns it and gives it back when done. */
  retire(block: Buffer): void;
  /** The peer closed its side. Called at most once per consumer that matters; later calls are no-ops. */
  end(): void;
  fail(err: Error): void;
}

/**
 * TLS options a caller may give (a test's CA). Where the socket goes and how its host is looked
 * up are not theirs to set: they are left out here, and overridden at run time as well.
 */
export type TlsOptions = Omit<tls.ConnectionOptions, 'host' | 'port' | 'path' | 'socket' | 'lookup' | 'onread'>;

const IGNORE: Consumer = { bytes() {}, retire: giveBlock, end() {}, fail() {} };

const closedEarly = (): Error => Object.assign(new Error('the connection closed early'), { code: 'ECONNRESET' });
const badResponse = (message: string): AppError => new AppError('BAD_RESPONSE', message, { retryable: true });

class Connection {
  readonly socket: net.Socket;
  /** The block reads land in; a view of it at `fill` is what the socket reads into next. */
  block = takeBlock();
  fill = 0;
  /** Bytes of `block` before this index are consumed; those after it are carried into the next block. */
  used = 0;
  consumer: Consumer = IGNORE;
  /** Served a request before (it may have been closed by the server while idle). */
  reused = false;
  dead = false;
  /** How the socket ended, kept for a consumer that takes over later. */
  eof = false;
  error: Error | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  private disposed = false;

  constructor(
    readonly key: string,
    url: URL,
    tlsOptions: TlsOptions | undefined,
  ) {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const https = url.protocol === 'https:';
    const port = Number(url.port) || (https ? 443 : 80);
    const onread: net.OnReadOpts = { buffer: () => this.nextBuffer(), callback: (n, buf) => this.onRead(n, buf) };
    // tls.connect takes `onread` too (documented; its types omit it). The caller's options go first
    // and ours last, so that none of theirs can send the socket elsewhere (host, port, a Unix `path`,
    // a ready `socket`) or around the address guard (`lookup`, which refuses link-local and
    // metadata addresses at every DNS answer).
    const secure: tls.ConnectionOptions & { onread: net.OnReadOpts } = {
      ...tlsOptions,
      host,
      port,
      path: undefined,
      socket: undefined,
      lookup: guardedLookup,
      onread,
      ALPNProtocols: ['http/1.1'],
      ...(net.isIP(host) ? {} : { servername: host }),
    };
    this.socket = https ? tls.connect(secure) : net.connect({ host, port, lookup: guardedLookup, onread });
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => {
      this.dead = true;
      this.error ??= err;
      this.consumer.fail(err);
    });
    const ended = (): void => {
      this.dead = true;
      this.eof = true;
      this.consumer.end();
    };
    this.socket.on('end', ended);
    this.socket.on('close', ended);
  }

  /** Makes `consumer` the reader: hands it the bytes already here, then how the socket ended, if it did. */
  attach(consumer: Consumer): void {
    this.consumer = consumer;
    this.paused = false; // the socket itself stays paused until below: did the consumer ask for a pause?
    if (this.fill > this.used) {
      try {
        consumer.bytes(this.block, this.used, this.fill);
      } catch (err) {
        this.socket.destroy(err as Error); // as in onRead: the request fails, not the process
        consumer.fail(err as Error);
        return;
      }
    }
    if (this.consumer !== consumer) return; // it has moved on (done with this connection)
    if (this.error) consumer.fail(this.error);
    else if (this.eof) consumer.end();
    else if (!this.paused) this.resume(); // not when the bytes here were all it wanted
  }

  private nextBuffer(): Buffer {
    if (BLOCK - this.fill < MIN_READ) this.retire();
    return this.block.subarray(this.fill);
  }

  private retire(): void {
    const old = this.block;
    const next = takeBlock();
    const keep = this.fill - this.used;
    if (keep > 0) old.copy(next, 0, this.used, this.fill);
    this.block = next;
    this.fill = keep;
    this.used = 0;
    this.consumer.retire(old);
  }

  /** Always true: pausing is done with `pause()`, where the reason is known. */
  private onRead(n: number, buf: Uint8Array): boolean {
    if (buf.buffer !== this.block.buffer || buf.byteOffset !== this.block.byteOffset + this.fill) {
      // A Node that reads into one fixed buffer: copy into the block.
      if (BLOCK - this.fill < n) this.retire();
      this.block.set(buf.subarray(0, n), this.fill);
    }
    const from = this.fill;
    this.fill += n;
    try {
      this.consumer.bytes(this.block, from, this.fill);
    } catch (err) {
      // A failing consumer (its callbacks are the caller's code) fails its request, not the process.
      this.socket.destroy(err as Error);
    }
    return true;
  }

  /** Paused by its consumer (or parked for a reader): `attach` leaves it so. */
  paused = false;

  pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    this.paused = false;
    this.socket.resume();
  }

  /** Closes the socket and gives its block back: only once no consumer still writes from it. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.dead = true;
    this.consumer = IGNORE;
    this.socket.destroy();
    giveBlock(this.block);
  }
}

// ---- connections per host, and idle ones kept for the next request

const slots = new Map<string, { used: number; waiting: Array<() => void> }>();

function acquireSlot(key: string, signal: AbortSignal): Promise<void> {
  const slot = slots.get(key) ?? { used: 0, waiting: [] };
  slots.set(key, slot);
  if (slot.used < PER_HOST) {
    slot.used++;
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      slot.waiting.splice(slot.waiting.indexOf(grant), 1);
      reject(signal.reason);
    };
    const grant = (): void => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    slot.waiting.push(grant);
  });
}

function releaseSlot(key: string): void {
  const slot = slots.get(key);
  if (!slot) return;
  const next = slot.waiting.shift();
  if (next) return next(); // the slot passes on
  slot.used--;
  if (slot.used === 0) slots.delete(key);
}

const idle = new Map<string, Set<Connection>>();

function park(conn: Connection): void {
  const set = idle.get(conn.key) ?? new Set<Connection>();
  idle.set(conn.key, set);
  set.add(conn);
  conn.reused = true;
  const drop = (): void => {
    unpark(conn);
    conn.dispose();
  };
  conn.idleTimer = setTimeout(drop, IDLE_MS).unref();
  conn.socket.unref();
  // Anything from an idle connection (bytes, EOF, an error) ends it: it is no clean HTTP stream anymore.
  conn.attach({ bytes: drop, retire: giveBlock, end: drop, fail: drop });
}

function unpark(conn: Connection): void {
  clearTimeout(conn.idleTimer);
  const set = idle.get(conn.key);
  set?.delete(conn);
  if (set?.size === 0) idle.delete(conn.key);
}

function takeIdle(key: string): Connection | undefined {
  for (const conn of idle.get(key) ?? []) {
    unpark(conn);
    if (conn.dead) {
      conn.dispose();
      continue;
    }
    conn.consumer = IGNORE;
    conn.pause();
    conn.socket.ref();
    return conn;
  }
  return undefined;
}

/** Closes the idle keep-alive connections (at shutdown; they would close by themselves within seconds). */
export function closeIdleConnections(): void {
  for (const set of idle.values()) for (const conn of [...set]) conn.consumer.end();
}

// ---- requests and responses

export interface RawResponse {
  status: number;
  /** Field names in lower case; repeated fields joined with ", ". */
  headers: Record<string, string | undefined>;
  body: RawBody;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function requestHead(url: URL, headers: Record<string, string>): string {
  let head = `GET ${url.pathname || '/'}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name) || /[^\t\x20-\x7e\x80-\xff]/.test(value)) throw new AppError('BAD_HEADER', `invalid request header ${name}`);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}Connection: keep-alive\r\n\r\n`;
}

const STALE = Symbol('stale connection');

// Connections made with other TLS options (a test's CA) are pooled apart.
const tlsIds = new WeakMap<object, number>();
let tlsCount = 0;
const tlsId = (o: object): number => tlsIds.get(o) ?? (tlsIds.set(o, ++tlsCount), tlsCount);

/**
 * Sends a GET on an idle connection to the host or a new one, and resolves with the status and
 * headers once they arrived; the body is read from the response's `body`. An idle connection the
 * server closed meanwhile is retried once on a new one. Aborting `signal` ends the request, or
 * the body's reading, at once.
 */
export async function request(url: URL, headers: Record<string, string>, signal: AbortSignal, options: { tls?: TlsOptions } = {}): Promise<RawResponse> {
  const key = `${url.protocol}//${url.host}${options.tls ? `#${tlsId(options.tls)}` : ''}`;
  const head = requestHead(url, headers);
  if (signal.aborted) throw signal.reason;
  await acquireSlot(key, signal);
  try {
    for (;;) {
      signal.throwIfAborted(); // it may have fired while the slot was handed over
      const conn = takeIdle(key) ?? new Connection(key, url, options.tls);
      try {
        const res = await exchange(conn, head, signal);
        signal.throwIfAborted();
        return { status: res.status, headers: res.headers, body: new RawBody(conn, res.framer, res.keepAlive, signal) };
      } catch (err) {
        conn.dispose();
        if (err === STALE) continue;
        throw err;
      }
    }
  } catch (err) {
    releaseSlot(key);
    throw err;
  }
}

interface Head {
  status: number;
  headers: Record<string, string | undefined>;
  framer: Framer;
  keepAlive: boolean;
}

function exchange(conn: Connection, head: string, signal: AbortSignal): Promise<Head> {
  return new Promise<Head>((resolve, reject) => {
    let got = 0;
    let settled = false;
    const settle = (err: unknown, value?: Head): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      if (value) resolve(value);
      else reject(err);
    };
    const onAbort = (): void => settle(signal.reason);
    const failed = (err: Error): void => settle(got === 0 && conn.reused ? STALE : err);
    conn.consumer = {
      bytes(block, from, to) {
        got += to - from;
        // Skip 1xx interim answers (100 Continue, 103 Early Hints): the real one follows.
        for (;;) {
          const region = block.subarray(conn.used, to);
          const end = region.indexOf('\r\n\r\n', Math.max(0, from - conn.used - 3), 'latin1');
          if (end < 0) {
            if (region.length > HEAD_LIMIT) {
              conn.pause();
              settle(badResponse('the server sent response headers larger than 64 KiB'));
            }
            return;
          }
          let parsed: Head;
          try {
            parsed = parseHead(region.toString('latin1', 0, end));
          } catch (err) {
            conn.pause();
            settle(err);
            return;
          }
          conn.used += end + 4;
          if (parsed.status >= 100 && parsed.status < 200) continue;
          conn.pause(); // the body waits for whoever reads it; its first bytes stay in the block
          conn.consumer = IGNORE;
          settle(undefined, parsed);
          return;
        }
      },
      retire: giveBlock,
      end: () => failed(closedEarly()),
      fail: failed,
    };
    signal.addEventListener('abort', onAbort, { once: true });
    conn.socket.write(head, 'latin1');
    conn.resume();
  });
}

function parseHead(text: string): Head {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!m) throw badResponse(`the server did not answer in HTTP/1.1 (${JSON.stringify((lines[0] ?? '').slice(0, 40))})`);
  const status = Number(m[2]);
  const headers: Record<string, string | undefined> = {};
  let last: string | undefined;
  for (const line of lines.slice(1)) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && last) {
      headers[last] += ` ${line.trim()}`; // obsolete line folding
      continue;
    }
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    if (colon <= 0 || !TOKEN.test(name)) throw badResponse('the server sent a malformed header line');
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    last = name;
  }
  const connection = (headers.connection ?? '').toLowerCase();
  let keepAlive = m[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
  let framer: Framer;
  const te = headers['transfer-encoding'];
  if ((status >= 100 && status < 200) || status === 204 || status === 304) {
    framer = new Framer('length', 0);
  } else if (te !== undefined) {
    const chunked = /(?:^|,)\s*chunked\s*$/i.test(te);
    framer = new Framer(chunked ? 'chunked' : 'close', 0);
    // Both framings, or chunks from HTTP/1.0: read it, but never trust the connection again (RFC 9112 §6.1).
    if (!chunked || headers['content-length'] !== undefined || m[1] === '0') keepAlive = false;
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
  return { status, headers, framer, keepAlive };
}

/** Where a body ends: after Content-Length bytes, after the last chunk, or when the server closes. */
class Framer {
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

export interface PumpOptions {
  file: FileHandle;
  /** File offset of the body's first byte. */
  position: number;
  /** File offset the body must stop at (a range that may shrink while it is read); reading stops there. */
  end?: () => number;
  /** Fed every body byte, in order. */
  hash?: Hash;
  /** Called as bytes arrive (before they are on disk). */
  onData?: (bytes: number) => void;
  /** Called when more bytes are on disk, with `written`. */
  onWritten?: (written: number) => void;
}

/**
 * A response body. Read it as a stream (small answers), or move it to a file with `pump()`.
 * Destroying it closes the connection, unless the rest of a short body is already here.
 */
export class RawBody extends Readable {
  private released = false;
  private pumping: Pump | undefined;
  private reading = false;

  constructor(
    private readonly conn: Connection,
    private readonly framer: Framer,
    private readonly keepAlive: boolean,
    private readonly signal: AbortSignal,
  ) {
    super({ highWaterMark: 64 * 1024 });
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  // Not destroy(reason): a body nobody reads has no 'error' listener, and the reason is the caller's to throw.
  private readonly onAbort = (): void => {
    this.pumping?.abort(this.signal.reason instanceof Error ? this.signal.reason : new Error('aborted'));
    this.destroy();
  };

  /**
   * Writes the body at `position` of `file` and resolves, once every byte is on disk, with `end`
   * (the body is over) or `limit` (the range end was reached first); rejects with the transport,
   * disk or abort error after writing what arrived. `written` and `pending` are live meanwhile.
   */
  pump(o: PumpOptions): Pump {
    if (this.pumping || this.reading || this.released) throw new Error('the body is already being read');
    this.pumping = new Pump(this.conn, this.framer, o, (reuse) => this.release(reuse && this.keepAlive));
    return this.pumping;
  }

  override _read(): void {
    if (this.released || this.pumping) return; // a pumped body is the pump's alone
    if (this.reading) return this.conn.resume();
    this.reading = true;
    const conn = this.conn;
    const finish = (): void => {
      this.release(this.framer.clean && this.keepAlive);
      this.push(null);
    };
    if (this.framer.done) return finish();
    conn.attach({
      bytes: (block, from, to) => {
        let body: [number, number];
        try {
          body = this.framer.take(block, from, to);
        } catch (err) {
          this.destroy(err as Error);
          return;
        }
        conn.used = to;
        if (body[1] > body[0] && !this.push(Buffer.from(block.subarray(body[0], body[1])))) conn.pause();
        if (this.framer.done) finish();
      },
      retire: giveBlock,
      end: () => {
        const err = this.framer.eof();
        if (err) this.destroy(err);
        else finish();
      },
      fail: (err) => this.destroy(err),
    });
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (this.pumping) {
      this.pumping.abort(err ?? new Error('the body was closed'));
    } else if (!this.released) {
      // A short body already received (a redirect's, a one-byte probe's): read it, keep the connection.
      const left = this.framer.left;
      const here = this.conn.fill - this.conn.used;
      if (!this.reading && left !== undefined && left <= here && !this.conn.dead) {
        this.framer.take(this.conn.block, this.conn.used, this.conn.fill);
        this.conn.used = this.conn.fill;
        this.release(this.framer.clean && this.keepAlive);
      } else {
        this.release(false);
      }
    }
    callback(err);
  }

  private release(reuse: boolean): void {
    if (this.released) return;
    this.released = true;
    this.signal.removeEventListener('abort', this.onAbort);
    if (reuse && !this.conn.dead) park(this.conn);
    else this.conn.dispose();
    releaseSlot(this.conn.key);
  }
}

/** A body on its way to a file: see `RawBody.pump`. */
export class Pump {
  /** Body bytes received (on disk or on their way). */
  received = 0;
  readonly done: Promise<'end' | 'limit'>;
  private readonly writer: ChunkWriter;
  /** Received bytes not yet handed to the writer: `block[from, to)`. */
  private run: { block: Buffer; from: number; to: number } | undefined;
  /** Blocks no longer read into, with the received count their last byte brings; given back once written. */
  private retired: Array<{ block: Buffer; upTo: number }> = [];
  private pausedForDisk = false;
  private finished = false;
  private readonly timer: NodeJS.Timeout;
  private resolve!: (how: 'end' | 'limit') => void;
  private reject!: (err: unknown) => void;

  constructor(
    private readonly conn: Connection,
    private readonly framer: Framer,
    private readonly o: PumpOptions,
    private readonly release: (reuse: boolean) => void,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.done.catch(() => undefined); // the caller awaits it; an abort after it stopped listening is no crash
    this.writer = new ChunkWriter(o.file, o.position, { highWaterMark: Infinity, onSettled: (err) => this.settled(err) });
    this.timer = setInterval(() => this.submit(), FLUSH_MS);
    // From the next microtask: the caller holds the pump before its callbacks first run.
    queueMicrotask(() => this.start());
  }

  private start(): void {
    if (this.finished) return;
    if (this.framer.done) return this.finish('end');
    this.conn.attach({
      bytes: (block, from, to) => this.bytes(block, from, to),
      retire: (block) => this.retire(block),
      end: () => {
        const err = this.framer.eof();
        if (err) this.fail(err);
        else this.finish('end');
      },
      fail: (err) => this.fail(err),
    });
  }

  /** Bytes on disk, from `position`. */
  get written(): number {
    return this.writer.written;
  }

  /** Bytes received but not yet on disk. */
  get pending(): number {
    return this.received - this.writer.written;
  }

  abort(err: Error): void {
    this.fail(err);
  }

  private bytes(block: Buffer, from: number, to: number): void {
    if (this.finished) return;
    let a: number;
    let b: number;
    try {
      [a, b] = this.framer.take(block, from, to);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    this.conn.used = to;
    const end = this.o.end?.();
    if (end !== undefined) b = Math.min(b, a + Math.max(0, end - (this.o.position + this.received)));
    if (b > a) {
      this.o.hash?.update(block.subarray(a, b));
      this.received += b - a;
      if (this.run?.block === block && this.run.to === a) this.run.to = b;
      else {
        this.submit();
        this.run = { block, from: a, to: b };
      }
      this.o.onData?.(b - a);
    }
    if (this.framer.done) this.finish('end');
    else if (end !== undefined && this.o.position + this.received >= end) this.finish('limit');
  }

  private retire(block: Buffer): void {
    if (this.run?.block === block) this.submit();
    this.retired.push({ block, upTo: this.received });
    this.giveBackWritten();
    if (!this.finished && !this.pausedForDisk && this.retired.length >= MAX_BLOCKS) {
      this.pausedForDisk = true;
      this.conn.pause();
    }
  }

  private submit(): void {
    const run = this.run;
    if (!run) return;
    this.run = undefined;
    try {
      this.writer.push(run.block.subarray(run.from, run.to));
    } catch (err) {
      this.fail(err as Error); // an earlier write failed
    }
  }

  private settled(err: unknown): void {
    if (err) return this.fail(err as Error);
    this.giveBackWritten();
    try {
      this.o.onWritten?.(this.writer.written);
    } catch (e) {
      return this.fail(e as Error); // the caller's callback: fail the pump, not the process
    }
    if (this.pausedForDisk && !this.finished && this.retired.length < MAX_BLOCKS) {
      this.pausedForDisk = false;
      this.conn.resume();
    }
  }

  private giveBackWritten(): void {
    while (this.retired.length > 0 && this.retired[0]!.upTo <= this.writer.written) giveBlock(this.retired.shift()!.block);
  }

  private finish(how: 'end' | 'limit'): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.timer);
    this.conn.pause();
    this.submit();
    this.writer.flush().then(
      () => {
        this.giveBackWritten();
        this.release(how === 'end' && this.framer.clean);
        this.resolve(how);
      },
      (err: unknown) => this.settleFailure(err),
    );
  }

  private fail(err: Error): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.timer);
    this.conn.pause();
    this.conn.socket.destroy(); // no more bytes into the blocks; they are given back below
    this.submit(); // what arrived is kept: it is where the next attempt resumes
    this.writer.flush().then(
      () => this.settleFailure(err),
      () => this.settleFailure(err),
    );
  }

  /** No write is in flight any more: every block can be given back. */
  private settleFailure(err: unknown): void {
    for (const { block } of this.retired.splice(0)) giveBlock(block);
    this.release(false);
    this.reject(err);
  }
}
