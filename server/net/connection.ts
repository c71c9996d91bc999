/*
 * Owns one HTTP/1.1 connection: its socket, the block its reads land in, which consumer those
 * bytes go to, how far they are consumed, and its state. Node's http module costs about 0.8
 * CPU-seconds per GB just to hand a body to JavaScript (a parser callback, a Buffer and a stream
 * event per chunk, then their garbage); on a 2-core machine that halved our speed next to curl.
 * Here the socket reads (`onread`) straight into reused 1 MiB blocks (buffer-pool.ts): the kernel
 * fills a block, a full one goes to its consumer (the pump writes it to disk) while the next fills,
 * and nothing is allocated per chunk.
 */
import net from 'node:net';
import tls from 'node:tls';
import { guardedLookup } from './url-policy';
import { BLOCK, type BufferPool } from './buffer-pool';

/** A read is never offered less room than this: the block is retired and a fresh one taken. */
const MIN_READ = 64 * 1024;

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

/**
 * TLS options a caller may give (a test's CA). Where the socket goes and how its host is looked
 * up are not theirs to set: they are left out here, and overridden at run time as well.
 */
export type TlsOptions = Omit<tls.ConnectionOptions, 'host' | 'port' | 'path' | 'socket' | 'lookup' | 'onread'>;

export class Connection {
  readonly socket: net.Socket;
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

  constructor(
    readonly key: string,
    url: URL,
    tlsOptions: TlsOptions | undefined,
    readonly pool: BufferPool,
  ) {
    this.block = pool.take();
    this.ignore = { bytes: (_block, start) => start, retire: pool.give, end() {}, fail() {} };
    this.consumer = this.ignore;
    const onread: net.OnReadOpts = { buffer: () => this.nextBuffer(), callback: (n, buf) => this.onRead(n, buf) };
    this.socket = openSocket(url, tlsOptions, onread);
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => {
      this.to('ended');
      this.error ??= err;
      this.consumer.fail(err);
    });
    const ended = (): void => {
      this.to('ended');
      this.eof = true;
      this.consumer.end();
    };
    this.socket.on('end', ended);
    this.socket.on('close', ended);
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

  /** Writes a request head. */
  send(head: string): void {
    this.socket.write(head, 'latin1');
  }

  pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    this.paused = false;
    this.socket.resume();
  }

  /** Stops every read at once (the socket is destroyed; its 'close' ends the connection). The block stays until `dispose`. */
  cut(): void {
    this.socket.destroy();
  }

  /** Parks it: `onActivity` hears of anything that comes from an idle connection (bytes, EOF, an error). */
  toIdle(onActivity: () => void): void {
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
    this.to('closed');
    this.consumer = this.ignore;
    this.socket.destroy();
    this.pool.give(this.block);
  }

  private nextBuffer(): Buffer {
    if (BLOCK - this.fill < MIN_READ) this.retire();
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
      // A Node that reads into one fixed buffer: copy into the block.
      if (BLOCK - this.fill < n) this.retire();
      this.block.set(buf.subarray(0, n), this.fill);
    }
    const from = this.fill;
    this.fill += n;
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

/**
 * Connects to the URL's host and port. The caller's TLS options go first and ours last, so that
 * none of theirs can send the socket elsewhere (host, port, a Unix `path`, a ready `socket`) or
 * around the address guard (`lookup`): url-policy.ts refuses link-local and metadata addresses
 * at every DNS answer, and only that lookup ever resolves a host here.
 */
function openSocket(url: URL, tlsOptions: TlsOptions | undefined, onread: net.OnReadOpts): net.Socket {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const https = url.protocol === 'https:';
  const port = Number(url.port) || (https ? 443 : 80);
  if (!https) return net.connect({ host, port, lookup: guardedLookup, onread });
  // tls.connect takes `onread` too (documented; its types omit it).
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
  return tls.connect(secure);
}
