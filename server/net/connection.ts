/*
 * Owns one HTTP/1.1 connection: its socket, the block its reads land in, which consumer those
 * bytes go to, how far they are consumed, and its state. Node's http module costs about 0.8
 * CPU-seconds per GB just to hand a body to JavaScript (a parser callback, a Buffer and a stream
 * event per chunk, then their garbage); on a 2-core machine that halved our speed next to curl.
 * Here the socket reads (`onread`) straight into reused 1 MiB blocks (buffer-pool.ts): the kernel
 * fills a block, a full one goes to its consumer (the pump writes it to disk) while the next fills,
 * and nothing is allocated per chunk. Its time limits (connect, TLS, the head, an idle body) are
 * time-limits.ts's; dial.ts reaches the other end, directly or through a proxy.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import { AppError } from '../errors';
import type { ProxyServer } from '../config';
import { BLOCK, type BufferPool } from './buffer-pool';
import { handshake, openSocket, openTunnel, proxyUnreachable, seconds, timeoutError, type ConnectionOptions } from './dial';
import { TimeLimits } from './time-limits';

export { DEFAULT_TIMEOUTS, type ConnectionOptions, type Timeouts, type TlsOptions } from './dial';

/** A read is never offered less room than this: the block is retired and a fresh one taken. */
const MIN_READ = 64 * 1024;
/** Where a read lands while the block is full of bytes its reader has not taken (nextBuffer); copied out at once by onRead. */
const SCRATCH = Buffer.allocUnsafe(MIN_READ);

/**
 * - busy: a request or its body owns it (a new connection starts so).
 * - idle: parked in its agent's pool between requests.
 * - ended: its socket ended or failed. The owner may still read what arrived before; no other
 *   request is ever sent on it.
 * - closed: disposed: socket destroyed, block given back. Final.
 */
export type ConnectionState = 'busy' | 'idle' | 'ended' | 'closed';

/** What a connection does with what it reads; the current one is swapped per request and state. */
export interface Consumer {
  /**
   * Bytes arrived: `block[start, to)` are not consumed yet, and of those `block[from, to)` are new.
   * Returns where the unconsumed bytes start now: `to` when it took them all, less to leave the
   * rest to whoever reads next (the body that came with a head).
   */
  bytes(block: Buffer, start: number, from: number, to: number): number;
  /** No more bytes will land in `block`: the consumer now owns it and gives it back when done. */
  retire(block: Buffer): void;
  /** The peer closed its side. Called at most once per consumer that matters; later calls are no-ops. */
  end(): void;
  fail(err: Error): void;
}

export class Connection {
  readonly key: string;
  readonly pool: BufferPool;
  /** The socket HTTP goes over: the TLS one once a tunnel's handshake began, the TCP one before. */
  socket: net.Socket;
  private current: ConnectionState = 'busy';
  /** The block reads land in; a view of it at `fill` is what the socket reads into next. */
  private block: Buffer;
  private fill = 0;
  /** Bytes of `block` before this index are consumed; those after it are carried into the next block. */
  private used = 0;
  private consumer: Consumer;
  /** Takes no bytes (they wait for the next consumer); gives retired blocks back. */
  private readonly ignore: Consumer;
  /** Paused by its consumer (or parked for a reader): `attach` leaves it so. */
  private paused = false;
  /** Served a request before (it may have been closed by the server while idle). */
  private served = false;
  /** How the socket ended, kept for a consumer that takes over later. */
  private eof = false;
  private error: Error | undefined;
  /** Connected (and through the handshake and any tunnel): requests may be written. */
  private ready = false;
  /** A request head written before the connection was ready. */
  private queued: string | undefined;
  /** Waiting for a proxy's answer to CONNECT: `socket` is the TCP one, read by the tunnel's own listener. */
  private tunnelling = false;
  /** Its time limits: one runs at a time. */
  private readonly limits: TimeLimits;
  private readonly proxy: ProxyServer | undefined;
  /** The TCP connection to the proxy is up (failures from then on are the tunnel's or the host's). */
  private proxyReached = false;
  /** What messages call the other end: the host, or the proxy for a failure to reach it. */
  private readonly host: string;

  constructor(o: ConnectionOptions) {
    this.key = o.key;
    this.pool = o.pool;
    this.proxy = o.proxy;
    this.host = o.url.host;
    this.limits = new TimeLimits(o.timeouts, this.host, (err) => this.socket.destroy(err));
    this.block = o.pool.take();
    this.ignore = { bytes: (_block, start) => start, retire: o.pool.give, end() {}, fail() {} };
    this.consumer = this.ignore;
    const onread: net.OnReadOpts = { buffer: () => this.nextBuffer(), callback: (n, buf) => this.onRead(n, buf) };
    const reach = o.proxy ? `the proxy at ${o.proxy.display}` : this.host;
    this.limits.arm(o.timeouts.connectMs, () => timeoutError('CONNECT_TIMEOUT', `could not connect to ${reach} in ${seconds(o.timeouts.connectMs)}`));
    const https = o.url.protocol === 'https:';
    if (o.proxy && https) {
      this.socket = this.tunnel(o, o.proxy);
    } else {
      this.socket = openSocket(o, onread);
      this.wire(this.socket);
      if (https) handshake(this.socket as tls.TLSSocket, o, this.limits, () => this.up());
      else
        this.socket.once('connect', () => {
          this.proxyReached = true;
          // A redirect (or a name) that leads back to this server's own API: a download could save
          // `/status` into the models folder, or re-create a deleted catalog. Checked on the peer the
          // socket reached, so neither a DNS name nor a spelling of the address gets around it.
          if (!o.proxy && o.isSelf?.(this.socket.remoteAddress, this.socket.remotePort)) {
            this.socket.destroy(new AppError('SELF_ADDRESS', `${this.host} is this server's own address; a download never fetches from it`));
            return;
          }
          this.up();
        });
    }
  }
  get state(): ConnectionState {
    return this.current;
  }

  /** Whether it served a request before: a failure before any byte then means the server closed it while idle. */
  get reused(): boolean {
    return this.served;
  }

  /** Bytes received and not yet consumed. */
  get buffered(): number {
    return this.fill - this.used;
  }

  /** The one place the state changes: `closed` is final, and an ended connection only closes. */
  private to(next: ConnectionState): void {
    if (this.current === 'closed' || (this.current === 'ended' && next !== 'closed')) return;
    this.current = next;
  }

  /** Makes `consumer` the reader: hands it the bytes already here, then how the socket ended, if it did. */
  attach(consumer: Consumer): void {
    this.consumer = consumer;
    this.paused = false; // the socket itself stays paused until below: did the consumer ask for a pause?
    if (this.fill > this.used) {
      try {
        this.deliver(consumer, this.used);
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

  /** No reader for now: bytes that arrive wait for the next one. */
  detach(): void {
    this.consumer = this.ignore;
  }

  /** Hands the bytes already here to `take`, all of them consumed, without reading the socket. */
  takeBuffered(take: (block: Buffer, from: number, to: number) => void): void {
    this.deliver(
      {
        bytes: (block, start, _from, to) => {
          take(block, start, to);
          return to;
        },
      },
      this.used,
    );
  }

  /** Writes a request head: now, or once the connection is up. */
  send(head: string): void {
    if (this.ready) this.socket.write(head, 'latin1');
    else this.queued = (this.queued ?? '') + head;
  }

  /** A response head is awaited from now: HEAD_TIMEOUT when it is not all here within the limit (counted from the connection being up). */
  expectHead(): void {
    this.limits.expectHead(this.ready);
  }

  /** The head arrived (or the request ended): its limit stops. */
  headDone(): void {
    this.limits.headDone();
  }

  /** A body is read from now until the connection is parked or closed: BODY_TIMEOUT after `bodyIdleMs` without a byte while it is not paused. */
  watchBody(): void {
    this.limits.watchBody(this.paused);
  }

  pause(): void {
    this.paused = true;
    if (!this.tunnelling) this.socket.pause(); // the proxy's answer to CONNECT is read whatever the consumer wants
    this.limits.paused(); // held back by its reader (the disk): not the server's silence
  }

  resume(): void {
    this.paused = false;
    if (!this.tunnelling) this.socket.resume();
    this.limits.resumed();
  }

  /** Stops every read at once (the socket is destroyed; its 'close' ends the connection). The block stays until `dispose`. */
  cut(): void {
    this.limits.quiet();
    this.socket.destroy();
  }

  /** Parks it: `onActivity` hears of anything that comes from an idle connection (bytes, EOF, an error). */
  toIdle(onActivity: () => void): void {
    this.limits.quiet();
    this.to('idle');
    this.served = true;
    this.socket.unref();
    // Anything from an idle connection ends it: it is no clean HTTP stream anymore.
    this.attach({
      bytes: (_block, start) => {
        onActivity();
        return start;
      },
      retire: this.pool.give,
      end: onActivity,
      fail: onActivity,
    });
  }

  /** Takes it from the idle pool for a request; false when it ended meanwhile. */
  claim(): boolean {
    if (this.current !== 'idle') return false;
    this.to('busy');
    this.detach();
    this.pause();
    this.socket.ref();
    return true;
  }

  /** Closes the socket and gives its block back: only once no consumer still writes from it. */
  dispose(): void {
    if (this.current === 'closed') return;
    this.limits.quiet();
    this.to('closed');
    this.consumer = this.ignore;
    this.socket.destroy();
    this.pool.give(this.block);
  }

  /** The socket that HTTP goes over: its end, close and failure are the connection's. */
  private wire(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on('error', (err) => this.failed(err));
    const ended = (): void => {
      this.limits.quiet();
      this.to('ended');
      this.eof = true;
      this.consumer.end();
    };
    socket.on('end', ended);
    socket.on('close', ended);
  }

  private failed(err: Error): void {
    if (this.proxy && !this.proxyReached && !(err instanceof AppError)) err = proxyUnreachable(this.proxy, err); // not the host's failure
    this.limits.quiet();
    this.to('ended');
    this.error ??= err;
    this.consumer.fail(err);
  }

  /** The connection is up: the queued request goes out, and the head's limit starts if one is awaited. */
  private up(): void {
    this.ready = true;
    this.limits.disarm();
    if (this.queued !== undefined) {
      this.socket.write(this.queued, 'latin1');
      this.queued = undefined;
    }
    this.limits.headDue();
  }

  /** An https connection through a proxy (dial.ts): the TCP socket, until TLS over the tunnel takes over. */
  private tunnel(o: ConnectionOptions, proxy: ProxyServer): net.Socket {
    this.tunnelling = true;
    return openTunnel(o, proxy, {
      reached: () => (this.proxyReached = true),
      arm: (ms, make) => this.limits.arm(ms, make),
      disarm: () => this.limits.disarm(),
      failed: (err) => this.failed(err),
      secured: (secure) => {
        this.socket = secure;
        this.tunnelling = false;
        this.wire(secure);
        // tls.connect ignores `onread` over a given socket: its bytes come as 'data' and are copied into the block.
        secure.on('data', (chunk: Buffer) => this.onRead(chunk.length, chunk));
        if (this.paused) secure.pause();
        handshake(secure, o, this.limits, () => this.up());
      },
    });
  }

  private nextBuffer(): Buffer {
    if (BLOCK - this.fill < MIN_READ) {
      // Node asks for the next buffer right after a read that paused (a head, a block of body behind
      // it for a reader yet to come): retiring now copies that body; onRead retires it once taken.
      if (this.paused && this.fill > this.used) return SCRATCH;
      this.retire();
    }
    return this.block.subarray(this.fill);
  }

  private retire(): void {
    const old = this.block;
    const next = this.pool.take();
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
      // A Node that reads into one fixed buffer, or 'data' from a tunnel: copy into the block.
      if (BLOCK - this.fill < n) this.retire();
      this.block.set(buf.subarray(0, n), this.fill);
    }
    const from = this.fill;
    this.fill += n;
    this.limits.received(n);
    try {
      this.deliver(this.consumer, from);
    } catch (err) {
      // A failing consumer (its callbacks are the caller's code) fails its request, not the process.
      this.socket.destroy(err as Error);
    }
    return true;
  }

  /**
   * Hands `block[used, fill)` to `consumer` and moves `used` to where it says (besides `retire`,
   * which only moves the unconsumed bytes to a new block, the one place `used` changes). Until
   * it returns, everything is counted consumed: a consumer that hands the connection on from
   * inside (a body that ends parks it) must not hand on bytes it took.
   */
  private deliver(consumer: Pick<Consumer, 'bytes'>, from: number): void {
    const start = this.used;
    this.used = this.fill;
    this.used = consumer.bytes(this.block, start, from, this.fill);
  }
}
