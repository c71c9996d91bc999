/*
 * Owns a set of connections, like Node's http.Agent or undici's Agent: how many may go to one host
 * at a time, the idle keep-alive ones kept for the next request, and the pool of blocks their
 * reads land in. Each Downloader has its own, so closing it closes only its own sockets and no
 * state is shared through module globals. Connections are pooled by origin and TLS options; a TLS
 * session cache, when there is one, belongs here too, keyed the same way.
 */
import { BufferPool } from './buffer-pool';
import { Connection, type TlsOptions } from './connection';

export interface AgentOptions {
  /**
   * Connections to one host at a time; requests beyond wait their turn. More gain nothing and get
   * a client throttled by CDNs (aria2 caps at 16 too). @default 16
   */
  perHost?: number;
  /** How long an idle connection is kept for another request. @default 4000 */
  idleMs?: number;
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
  private tlsCount = 0;
  private closed = false;

  constructor(options: AgentOptions = {}) {
    this.perHost = options.perHost ?? 16;
    this.idleMs = options.idleMs ?? 4000;
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

  /** A connection for a request that holds a slot of `key`: an idle one, or a new one. */
  connect(key: string, url: URL, tlsOptions: TlsOptions | undefined): Connection {
    return this.takeIdle(key) ?? new Connection(key, url, tlsOptions, this.pool);
  }

  /** A response is done with `conn`: keep it for the next request when it is `reuse`able and still open, close it otherwise; and give back its slot. */
  release(conn: Connection, reuse: boolean): void {
    if (reuse && conn.state === 'busy' && !this.closed) this.park(conn);
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

  private park(conn: Connection): void {
    const conns = this.idle.get(conn.key) ?? new Map<Connection, NodeJS.Timeout>();
    this.idle.set(conn.key, conns);
    const drop = (): void => this.drop(conn);
    conns.set(conn, setTimeout(drop, this.idleMs).unref());
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
