/**
 * The live view of a Model Downloader's downloads over its WebSocket (`/ws`, docs/reference.md):
 * the snapshot of the first frame, then `update`/`removed` applied in `seq` order, reconnection
 * with backoff after a drop (a new snapshot then replaces everything), and a fallback to polling
 * `GET /status` when WebSockets cannot get through at all (a proxy that blocks them).
 *
 * No DOM, and nothing imported at run time but the two modules split from it (which import nothing
 * either): the page uses the browser's WebSocket, a Node bot passes the `ws` package's
 * (`new LiveClient({ url, WebSocket })`). Wire types come from server/protocol/wire.ts.
 *
 * This file owns the connection: its attempts and backoff, its states, the commands sent over it.
 * The downloads and the `seq` rules that apply messages to them are in live-downloads.ts; the
 * polling fallback is in status-poller.ts.
 */
import type { AckMessage, ClientCommand, Entry, ErrorInfo, ServerMessage } from '../server/protocol/wire.js';
import { LiveDownloads, type DownloadsChange } from './live-downloads.js';
import { probeOnce, StatusPoller, type ProbeResult } from './status-poller.js';

export type { DownloadsChange } from './live-downloads.js';
export type { ProbeResult } from './status-poller.js';

/**
 * A callback slot both the DOM's and `ws`'s WebSocket types fit. Declared method-style so that
 * its parameter is checked bivariantly: each library types its event objects differently.
 */
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'] | null;

/** The part of the WebSocket API this client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: Handler<unknown>;
  onmessage: Handler<{ data: unknown }>;
  onclose: Handler<{ code: number; reason: string }>;
  onerror: Handler<unknown>;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * - `connecting`: the first attempt is under way.
 * - `live`: the WebSocket is open and the snapshot applied; updates flow.
 * - `reconnecting`: the connection dropped (or an attempt failed); the next attempt is scheduled.
 * - `polling`: the WebSocket cannot open but HTTP works: `GET /status` every `pollMs`.
 * - `offline`: several attempts in a row failed and HTTP does not answer either.
 * - `unauthorized`: the server wants an API token; nothing is retried until `reconnectNow()`.
 * - `closed`: `close()` was called.
 */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'polling' | 'offline' | 'unauthorized' | 'closed';

export interface ConnectionInfo {
  state: ConnectionState;
  /** Failed attempts in a row. */
  failures: number;
  /** When the state is not live: milliseconds until the next WebSocket attempt, if one is scheduled. */
  retryInMs?: number;
}

export interface LiveClientOptions {
  /** The WebSocket URL, or a function returning it at each attempt (so a new token is picked up). */
  url: string | (() => string);
  /** @default globalThis.WebSocket */
  WebSocket?: WebSocketConstructor;
  /**
   * Reads every entry over HTTP (the page uses `GET /status`). Used after an attempt that could not
   * open, to tell a blocked WebSocket (HTTP answers: poll it) from a server that is down or wants a
   * token. Without it there is no polling fallback.
   */
  probe?: () => Promise<ProbeResult>;
  /** First reconnection delay; doubles per failed attempt. @default 500 */
  minBackoffMs?: number;
  /** @default 10000 */
  maxBackoffMs?: number;
  /** Polling period while the WebSocket cannot open. @default 2000 */
  pollMs?: number;
  /** Failed attempts in a row after which the state is `offline` instead of `reconnecting`. @default 4 */
  offlineAfter?: number;
}

export interface LiveClientEvents {
  state: [ConnectionInfo];
  change: [DownloadsChange];
  /** Every message from the server, after it was applied. */
  message: [ServerMessage];
}

/** A command refused by the server (`{type:"error"}`), or lost with its connection. */
export class CommandError extends Error {
  readonly code: string;
  constructor(info: ErrorInfo) {
    super(info.message);
    this.name = 'CommandError';
    this.code = info.code;
  }
}

type Listener<A extends unknown[]> = (...args: A) => void;

/** A minimal typed event emitter (node:events is not in the browser). */
class Emitter<M extends { [K in keyof M]: unknown[] }> {
  private readonly listeners = new Map<keyof M, Set<Listener<never[]>>>();

  /** Adds a listener; returns its remover. */
  on<K extends keyof M>(event: K, listener: Listener<M[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as unknown as Listener<never[]>);
    return () => set.delete(listener as unknown as Listener<never[]>);
  }

  protected emit<K extends keyof M>(event: K, ...args: M[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) (listener as unknown as Listener<M[K]>)(...args);
  }
}

const OPEN = 1;

export class LiveClient extends Emitter<LiveClientEvents> {
  private readonly o: Required<Omit<LiveClientOptions, 'probe' | 'url'>> & Pick<LiveClientOptions, 'probe'>;
  private readonly url: () => string;
  private readonly known = new LiveDownloads();
  private readonly poller: StatusPoller;
  private socket: WebSocketLike | undefined;
  private info: ConnectionInfo = { state: 'connecting', failures: 0 };
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Bumped by every attempt and drop: an answer to an older attempt's probe is stale. */
  private generation = 0;
  private started = false;
  private closed = false;
  private requestCounter = 0;
  private readonly pending = new Map<string, { resolve: (m: AckMessage) => void; reject: (e: Error) => void }>();

  constructor(options: LiveClientOptions) {
    super();
    const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) throw new TypeError('No WebSocket implementation: pass `WebSocket` (e.g. the `ws` package\'s)');
    this.o = {
      WebSocket: Ctor,
      probe: options.probe,
      minBackoffMs: options.minBackoffMs ?? 500,
      maxBackoffMs: options.maxBackoffMs ?? 10_000,
      pollMs: options.pollMs ?? 2000,
      offlineAfter: options.offlineAfter ?? 4,
    };
    const { url } = options;
    this.url = typeof url === 'function' ? url : () => url;
    this.poller = new StatusPoller(options.probe, this.o.pollMs, {
      read: (downloads) => this.emit('change', this.known.replaceAll(downloads)),
      answered: () => {
        if (this.info.state !== 'polling') this.setState({ state: 'polling', failures: this.info.failures });
      },
      unauthorized: () => {
        this.clearRetry();
        this.setState({ state: 'unauthorized', failures: this.info.failures });
      },
      unanswered: () => this.setState({ state: 'offline', failures: this.info.failures }),
    });
  }

  /** The latest state of every download, keyed by id. Read-only: it changes as messages arrive. */
  get downloads(): ReadonlyMap<string, Entry> {
    return this.known.downloads;
  }

  /** `seq` of the last applied message; -1 before the first snapshot. */
  get seq(): number {
    return this.known.seq;
  }

  get connection(): ConnectionInfo {
    return this.info;
  }

  /** Opens the first connection. Idempotent. */
  start(): this {
    if (this.started || this.closed) return this;
    this.started = true;
    this.connect();
    return this;
  }

  /** Drops the current attempt or connection and connects at once, e.g. after a new token was given. */
  reconnectNow(): void {
    if (this.closed) return;
    this.started = true;
    this.poller.stop();
    this.dropSocket();
    this.setState({ state: this.known.seq === -1 ? 'connecting' : 'reconnecting', failures: 0 });
    this.connect();
  }

  /** Stops for good: closes the socket, stops retrying and polling. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.stop();
    this.dropSocket();
    this.setState({ state: 'closed', failures: this.info.failures });
  }

  /**
   * Applies one server message. Updates and removals whose `seq` is not greater than the last
   * applied one are stale and ignored; a snapshot always replaces the whole state.
   * Returns whether the downloads changed.
   */
  apply(m: ServerMessage): boolean {
    switch (m.type) {
      case 'snapshot':
      case 'update':
      case 'removed': {
        const change = this.known.apply(m);
        if (!change) return false;
        this.emit('change', change);
        return true;
      }
      case 'ack':
      case 'error': {
        const waiter = m.request_id === null ? undefined : this.pending.get(m.request_id);
        if (waiter && m.request_id !== null) {
          this.pending.delete(m.request_id);
          if (m.type === 'ack') waiter.resolve(m);
          else waiter.reject(new CommandError(m.error));
        }
        return false;
      }
      default:
        return false; // a message type from a newer server: nothing to do
    }
  }

  /**
   * Sends a command over the live connection; resolves with its `ack`, rejects with a
   * `CommandError` for an `error` answer or when the connection is not live or drops first.
   */
  send(command: ClientCommand): Promise<AckMessage> {
    const ws = this.socket;
    if (!ws || ws.readyState !== OPEN || this.info.state !== 'live') {
      return Promise.reject(new CommandError({ code: 'NOT_CONNECTED', message: 'Not connected to the server' }));
    }
    const request_id = command.request_id ?? `c${++this.requestCounter}`;
    return new Promise<AckMessage>((resolve, reject) => {
      this.pending.set(request_id, { resolve, reject });
      ws.send(JSON.stringify({ ...command, request_id }));
    });
  }

  private setState(info: ConnectionInfo): void {
    const prev = this.info;
    this.info = info;
    if (prev.state !== info.state || prev.failures !== info.failures || prev.retryInMs !== info.retryInMs) this.emit('state', info);
  }

  private connect(): void {
    if (this.closed) return;
    this.clearRetry();
    const generation = ++this.generation;
    let ws: WebSocketLike;
    try {
      ws = new this.o.WebSocket(this.url());
    } catch {
      void this.failed(false, generation); // e.g. a malformed URL: counts as a failed attempt
      return;
    }
    this.socket = ws;
    let live = false;
    let ended = false;
    ws.onmessage = (event) => {
      if (this.socket !== ws) return;
      let m: ServerMessage;
      try {
        m = JSON.parse(typeof event.data === 'string' ? event.data : String(event.data)) as ServerMessage;
      } catch {
        return; // not ours to crash on
      }
      if (!m || typeof m !== 'object') return;
      if (m.type === 'snapshot' && !live) {
        live = true;
        this.poller.stop();
        this.setState({ state: 'live', failures: 0 });
      }
      this.apply(m);
      this.emit('message', m);
    };
    const end = (): void => {
      if (ended || this.socket !== ws) return;
      ended = true;
      this.socket = undefined;
      this.rejectPending();
      void this.failed(live, generation);
    };
    ws.onclose = end;
    ws.onerror = end;
  }

  /** After a connection ended (`wasLive`) or an attempt failed: decide the state and schedule the next attempt. */
  private async failed(wasLive: boolean, generation: number): Promise<void> {
    if (this.closed) return;
    const failures = wasLive ? 0 : this.info.failures + 1;
    // A live connection that dropped is retried soon; failed attempts back off, doubling.
    const base = Math.min(this.o.maxBackoffMs, this.o.minBackoffMs * 2 ** failures);
    const delay = Math.round(base * (0.8 + Math.random() * 0.2)); // jitter: many tabs do not retry in step

    if (!wasLive && this.o.probe && !this.poller.polling) {
      const result = await probeOnce(this.o.probe);
      if (this.closed || generation !== this.generation) return; // superseded meanwhile
      if (result.ok) {
        this.poller.start(result.downloads);
      } else if (result.unauthorized) {
        this.setState({ state: 'unauthorized', failures });
        return; // retrying cannot help; the page asks for the token and calls reconnectNow()
      }
    }
    const state: ConnectionState = this.poller.polling ? 'polling' : failures >= this.o.offlineAfter ? 'offline' : 'reconnecting';
    this.setState({ state, failures, retryInMs: delay });
    this.clearRetry();
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private clearRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private dropSocket(): void {
    this.clearRetry();
    this.generation++;
    const ws = this.socket;
    this.socket = undefined;
    this.rejectPending();
    if (ws) {
      try {
        ws.close(1000, 'client closing');
      } catch {
        // already closing
      }
    }
  }

  private rejectPending(): void {
    for (const { reject } of this.pending.values()) reject(new CommandError({ code: 'DISCONNECTED', message: 'The connection closed before the server answered' }));
    this.pending.clear();
  }
}
