/*
 * Owns a set of connections, like Node's http.Agent or undici's Agent: how many may go to one host
 * at a time, the idle keep-alive ones kept for the next request, and the pool of blocks their
 * reads land in. Each Downloader has its own, so closing it closes only its own sockets and no
 * state is shared through module globals. Connections are pooled by origin and TLS options; the
 * TLS sessions kept for resumption are keyed the same way (and by server name). It also holds what
 * every request of its owner shares: the time limits' defaults and the proxy configuration.
 */
import os from 'node:os';
import type { ProxyConfig } from '../config';
import { BufferPool } from './buffer-pool';
import { Connection, DEFAULT_TIMEOUTS, type Timeouts, type TlsOptions } from './connection';
import { proxyFor } from './proxy';
import { TlsSessions } from './tls-sessions';

export interface AgentOptions {
  /**
   * Connections to one host at a time; requests beyond wait their turn. More gain nothing and get
   * a client throttled by CDNs (aria2 caps at 16 too). @default 16
   */
  perHost?: number;
  /** How long an idle connection is kept for another request (less when the server's Keep-Alive says so). @default 4000 */
  idleMs?: number;
  /** Time limits of every request (a request may set its own): connect 30 s, TLS 30 s, head 30 s, body idle 60 s by default. */
  timeouts?: Partial<Timeouts>;
  /** The proxies to go through (config.ts's `proxy`, from HTTPS_PROXY/HTTP_PROXY/NO_PROXY). @default none */
  proxy?: ProxyConfig;
}

interface Slot {
  used: number;
  waiting: Array<() => void>;
}

export function createAgent(options: AgentOptions = {}): Agent {
  return new Agent(options);
}

export class Agent {
  /** The blocks every connection of this agent reads into. */
  readonly pool = new BufferPool();
  private readonly perHost: number;
  private readonly idleMs: number;
  private readonly slots = new Map<string, Slot>();
  /** Idle connections by key, each with the timer that closes it. */
  private readonly idle = new Map<string, Map<Connection, NodeJS.Timeout>>();
  private readonly tlsIds = new WeakMap<object, number>();
  /** TLS sessions for resumption, across the connections (segments, retries) of this agent. */
  readonly tlsSessions = new TlsSessions();
  /** The server's own listen address, once it listens (see `refuseSelf`). */
  private self: { port: number; host: string } | undefined;
  readonly timeouts: Readonly<Timeouts>;
  private readonly proxy: ProxyConfig | undefined;
  private tlsCount = 0;
  private closed = false;

  constructor(options: AgentOptions = {}) {
    this.perHost = options.perHost ?? 16;
    this.idleMs = options.idleMs ?? 4000;
    this.timeouts = Object.freeze({ ...DEFAULT_TIMEOUTS, ...definedOnly(options.timeouts) });
    this.proxy = options.proxy;
  }

  /** What connections are pooled and counted by: the origin, and the TLS options when a caller gave some (a test's CA). */
  keyFor(url: URL, tlsOptions: TlsOptions | undefined): string {
    if (!tlsOptions) return `${url.protocol}//${url.host}`;
    let id = this.tlsIds.get(tlsOptions);
    if (id === undefined) this.tlsIds.set(tlsOptions, (id = ++this.tlsCount));
    return `${url.protocol}//${url.host}#${id}`;
  }

  /** Resolves when a connection to `key` may be used: at once, or when another request gives its slot back. */
  takeSlot(key: string, signal: AbortSignal): Promise<void> {
    const slot = this.slots.get(key) ?? { used: 0, waiting: [] };
    this.slots.set(key, slot);
    if (slot.used < this.perHost) {
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

  giveSlot(key: string): void {
    const slot = this.slots.get(key);
    if (!slot) return;
    const next = slot.waiting.shift();
    if (next) return next(); // the slot passes on
    slot.used--;
    if (slot.used === 0) this.slots.delete(key);
  }

  /** A connection for a request that holds a slot of `key`: an idle one, or a new one (through the proxy for `url`, if any). */
  connect(key: string, url: URL, tlsOptions: TlsOptions | undefined, timeouts: Partial<Timeouts> = {}): Connection {
    return (
      this.takeIdle(key) ??
      new Connection({ key, url, tls: tlsOptions, pool: this.pool, timeouts: { ...this.timeouts, ...definedOnly(timeouts) }, proxy: proxyFor(url, this.proxy), sessions: this.tlsSessions, isSelf: this.isSelf })
    );
  }

  /**
   * Refuses connections to this server itself: `host` and `port` are where it listens. A wildcard
   * host (`0.0.0.0`, `::`) stands for every address of this machine.
   */
  refuseSelf(host: string, port: number): void {
    this.self = { host, port };
  }

  private readonly isSelf = (address: string | undefined, port: number | undefined): boolean => {
    const self = this.self;
    if (!self || !address || port !== self.port) return false;
    const bare = address.replace(/^::ffff:/i, '');
    if (bare === self.host.replace(/^::ffff:/i, '')) return true;
    const loopback = bare === '::1' || bare.startsWith('127.');
    if (self.host === '0.0.0.0' || self.host === '::') {
      return loopback || Object.values(os.networkInterfaces()).some((list) => list?.some((i) => i.address.replace(/^::ffff:/i, '') === bare));
    }
    return loopback && (self.host === 'localhost' || self.host === '::1' || self.host.startsWith('127.'));
  };

  /** The proxy requests to `url` go through, if any. */
  proxyFor(url: URL): ReturnType<typeof proxyFor> {
    return proxyFor(url, this.proxy);
  }

  /**
   * A response is done with `conn`: keep it for the next request when it is `reuse`able and still
   * open, close it otherwise; and give back its slot. `serverIdleMs` is how long the server said it
   * keeps an idle connection (Keep-Alive: timeout=N): ours is closed a second before that.
   */
  release(conn: Connection, reuse: boolean, serverIdleMs?: number): void {
    const idleMs = Math.min(this.idleMs, serverIdleMs === undefined ? Infinity : serverIdleMs - 1000);
    if (reuse && conn.state === 'busy' && !this.closed && idleMs > 0) this.park(conn, idleMs);
    else conn.dispose();
    this.giveSlot(conn.key);
  }

  /**
   * Closes the idle connections, and resolves once their sockets are closed. From then on none is
   * kept: those still in use close when their response is done. A request made later still works
   * (an intake probe racing shutdown), on a connection that closes after it.
   */
  async close(): Promise<void> {
    this.closed = true;
    const closing: Array<Promise<void>> = [];
    for (const conns of this.idle.values()) {
      for (const conn of [...conns.keys()]) {
        const socket = conn.socket;
        if (!socket.closed) closing.push(new Promise((resolve) => socket.once('close', () => resolve())));
        this.drop(conn);
      }
    }
    await Promise.all(closing);
  }

  private park(conn: Connection, idleMs: number): void {
    const conns = this.idle.get(conn.key) ?? new Map<Connection, NodeJS.Timeout>();
    this.idle.set(conn.key, conns);
    const drop = (): void => this.drop(conn);
    conns.set(conn, setTimeout(drop, idleMs).unref());
    conn.toIdle(drop);
  }

  private drop(conn: Connection): void {
    this.unpark(conn);
    conn.dispose();
  }

  private unpark(conn: Connection): void {
    const conns = this.idle.get(conn.key);
    clearTimeout(conns?.get(conn));
    conns?.delete(conn);
    if (conns?.size === 0) this.idle.delete(conn.key);
  }

  private takeIdle(key: string): Connection | undefined {
    for (const conn of this.idle.get(key)?.keys() ?? []) {
      this.unpark(conn);
      if (conn.claim()) return conn;
      conn.dispose();
    }
    return undefined;
  }
}

/** `o` without its undefined entries (so that they do not override defaults). */
function definedOnly<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
}
