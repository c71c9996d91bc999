/**
 * The WebSocket hub: upgrades (same checks as the HTTP API), a full snapshot first, then updates
 * with increasing `seq`, and the clients' commands. Each client's queue is its Outbox (bounded in
 * bytes); liveness is our own pings being answered.
 */
import crypto from 'node:crypto';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, WebSocket } from 'ws';
import type { Config } from '../config';
import type { Downloader } from '../downloader/downloader';
import { AppError } from '../errors';
import type { Logger } from '../logger';
import type { AddRequest, AddResult, ClientCommand, Entry, ServerMessage } from '../protocol/wire';
import { checkHost, checkOrigin, checkToken } from './security';
import { Outbox } from './ws-outbox';
import type { StatusStore } from '../store/status-store';
import type { Fleet } from '../fleet/fleet';

export const MAX_WS_MESSAGE = 64 * 1024;

export interface HubOptions {
  config: Readonly<Config>;
  store: StatusStore;
  downloader: Downloader;
  log: Logger;
  /** Starts a download for the `start` command: settles the file name (see intake.ts). @default downloader.add */
  intake?: (req: AddRequest) => Promise<AddResult>;
  /** Ping period; a peer that misses one pong, or whose socket stays full for two periods, is dropped. @default 30000 */
  heartbeatMs?: number;
  /** Bytes queued for a client beyond which its updates are coalesced. @default 256 KiB */
  highWaterMark?: number;
  /** Bytes a client may hold in the server (socket buffer plus unsent replies) before it is dropped. @default 4 MiB */
  maxQueuedBytes?: number;
  /** Fleet mode: the fleet's view instead of the store's entries; commands for another server's downloads handed to it. */
  fleet?: Fleet;
  /**
   * Least time between two rounds of updates: a change after a quiet moment goes out at once, the
   * changes that follow within this time go together at its end, in one write per client, each
   * download's progress in one status coalesced to its latest (a group of 200 small files makes
   * about a thousand changes a second). 0: every change at once. @default 25
   */
  batchMs?: number;
}

interface Client {
  ws: WebSocket;
  alive: boolean;
  /** The payload of our last ping: only its echo proves the peer alive (an unsolicited pong does not). */
  ping: Buffer | null;
  out: Outbox;
  /** The connection under the WebSocket: corked while a round of updates is handed to it, so they leave in one write. */
  socket: Duplex;
}

/**
 * The WebSocket fan-out: a full snapshot first, then updates with increasing `seq`. A slow reader
 * is sent the latest state of each download, never an unbounded backlog.
 */
export class WsHub {
  private readonly wss: WebSocketServer;
  private readonly clients = new Set<Client>();
  private readonly o: HubOptions & { heartbeatMs: number; highWaterMark: number; maxQueuedBytes: number; batchMs: number };
  /** Updates and removals waiting for the next round, by download and status (the latest of each), in seq order. */
  private readonly pending = new Map<string, { key: string; message: ServerMessage }>();
  private round: NodeJS.Timeout | undefined;
  private lastRound = 0;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly removers: Array<() => void> = [];
  private closed = false;
  /** What clients are shown: the store's entries, or in fleet mode the fleet's view (the same events). */
  private readonly feed: Pick<StatusStore, 'seq' | 'all'>;

  constructor(server: http.Server, options: HubOptions) {
    this.o = { heartbeatMs: 30_000, highWaterMark: 256 * 1024, maxQueuedBytes: 4 * 1024 * 1024, batchMs: 25, ...options };
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WS_MESSAGE, perMessageDeflate: false });
    const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => this.upgrade(req, socket, head);
    server.on('upgrade', onUpgrade);
    this.removers.push(() => server.off('upgrade', onUpgrade));

    const store = options.fleet?.view ?? options.store;
    this.feed = store;
    const onUpdate = (e: Entry): void => this.broadcast(e.id, { type: 'update', seq: store.seq, download: e });
    const onRemoved = (e: Entry): void => this.broadcast(e.id, { type: 'removed', seq: store.seq, id: e.id, dest: e.dest });
    const onReset = (): void => {
      this.pending.clear(); // older than the snapshot, which shows their changes
      const entries = store.all(); // one list for every client: the entries themselves are never mutated
      for (const c of this.clients) c.out.snapshot(store.seq, entries);
    };
    store.on('update', onUpdate).on('removed', onRemoved).on('reset', onReset);
    this.removers.push(() => store.off('update', onUpdate).off('removed', onRemoved).off('reset', onReset));

    this.heartbeat = setInterval(() => {
      const now = Date.now();
      for (const c of this.clients) {
        const stuck = c.out.blockedSince !== null && now - c.out.blockedSince > 2 * this.o.heartbeatMs;
        if (!c.alive || stuck) {
          c.ws.terminate();
          continue;
        }
        c.alive = false;
        c.ping = crypto.randomBytes(8);
        c.ws.ping(c.ping);
      }
    }, this.o.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Per-client queue sizes, for tests and the benchmark: proof that memory stays bounded. */
  stats(): Array<{ pending: number; bufferedAmount: number; queuedBytes: number; blocked: boolean }> {
    return [...this.clients].map((c) => ({ pending: c.out.pending, bufferedAmount: c.ws.bufferedAmount, queuedBytes: c.out.queuedBytes, blocked: c.out.blockedSince !== null }));
  }

  /** Closes every connection and stops listening for upgrades. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.round);
    this.pending.clear();
    for (const remove of this.removers) remove();
    for (const c of this.clients) c.ws.close(1001, 'server shutting down');
    const deadline = setTimeout(() => {
      for (const c of this.clients) c.ws.terminate();
    }, 1000);
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    clearTimeout(deadline);
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    const refusal =
      this.closed
        ? new AppError('SHUTTING_DOWN', 'The server is shutting down', { status: 503 })
        : pathname !== '/ws'
          ? new AppError('NOT_FOUND', 'The WebSocket lives at /ws', { status: 404 })
          : (checkHost(req, this.o.config) ?? checkOrigin(req, this.o.config) ?? checkToken(req, this.o.config, true));
    if (refusal) {
      const body = JSON.stringify({ error: refusal.toJSON() });
      socket.on('error', () => undefined);
      socket.end(
        `HTTP/1.1 ${refusal.status} ${refusal.status === 401 ? 'Unauthorized' : refusal.status === 403 ? 'Forbidden' : 'Refused'}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.connected(ws, socket));
  }

  private connected(ws: WebSocket, socket: Duplex): void {
    const out = new Outbox(ws, {
      highWaterMark: this.o.highWaterMark,
      maxQueuedBytes: this.o.maxQueuedBytes,
      onOverBudget: () => {
        this.o.log.warn(`WebSocket client dropped: more than ${this.o.maxQueuedBytes} bytes unread`);
        ws.terminate();
      },
    });
    const client: Client = { ws, alive: true, ping: null, out, socket };
    this.clients.add(client);
    ws.on('pong', (data) => {
      if (client.ping && data.equals(client.ping)) client.alive = true;
    });
    ws.on('error', (err) => this.o.log.warn(`WebSocket client error: ${err.message}`));
    ws.on('close', () => {
      this.clients.delete(client);
      out.clear();
    });
    ws.on('message', (data, isBinary) => this.onMessage(client, data, isBinary));
    out.snapshot(this.feed.seq, this.feed.all());
  }

  /**
   * Queues an update or removal for every client: sent at once after a quiet moment, else with the
   * round that ends `batchMs` after the last one, in one write per client. Every status a download
   * goes through is sent; of its progress in one status only the latest (clients apply updates by
   * `seq`, so the earlier ones would be overtaken anyway).
   */
  private broadcast(key: string, message: ServerMessage): void {
    if (this.clients.size === 0) return;
    const slot = message.type === 'update' ? `${key} ${message.download.status}` : `${key} ${message.type}`;
    this.pending.delete(slot); // re-inserted at the end, so messages leave in seq order
    this.pending.set(slot, { key, message });
    if (this.round) return;
    const wait = this.lastRound + this.o.batchMs - Date.now();
    if (wait <= 0) this.sendRound();
    else this.round = setTimeout(() => this.sendRound(), wait);
  }

  private sendRound(): void {
    this.round = undefined;
    this.lastRound = Date.now();
    for (const c of this.clients) c.socket.cork();
    try {
      for (const { key, message } of this.pending.values()) {
        const data = JSON.stringify(message); // serialized once for every client
        for (const c of this.clients) c.out.update(key, message, data);
      }
    } finally {
      this.pending.clear();
      for (const c of this.clients) c.socket.uncork();
    }
  }

  private reply(c: Client, message: ServerMessage): void {
    if (c.ws.readyState === WebSocket.OPEN) c.out.reply(message);
  }

  private onMessage(c: Client, data: RawData, isBinary: boolean): void {
    let requestId: string | null = null;
    try {
      if (isBinary) throw new AppError('INVALID_MESSAGE', 'Expected a JSON text message, got binary data', { status: 400 });
      let cmd: ClientCommand;
      try {
        cmd = JSON.parse(data.toString()) as ClientCommand;
      } catch {
        throw new AppError('INVALID_JSON', 'The message is not valid JSON', { status: 400 });
      }
      if (!cmd || typeof cmd !== 'object' || Array.isArray(cmd)) throw new AppError('INVALID_MESSAGE', 'Expected a JSON object', { status: 400 });
      if (typeof cmd.request_id === 'string' && cmd.request_id.length <= 200) requestId = cmd.request_id;
      const d = this.o.downloader;
      switch (cmd.type) {
        case 'start': {
          // May ask the source for the file's name first: answered when that is done.
          const add = this.o.intake ?? (async (req: AddRequest) => d.add(req));
          add(cmd as AddRequest).then(
            (result) =>
              this.reply(c, {
                type: 'ack',
                request_id: requestId,
                status: result.outcome,
                download: result.download,
                ...(result.same_as ? { same_as: result.same_as } : {}),
                ...(result.linked ? { linked: true } : {}),
              }),
            (err: unknown) => this.replyError(c, requestId, err),
          );
          return;
        }
        case 'pause':
        case 'resume':
        case 'cancel':
        case 'retry':
          if (this.o.fleet) {
            this.o.fleet.command(cmd.type, cmd.id).then(
              (r) => this.reply(c, { type: 'ack', request_id: requestId, download: r.download, ...(r.forwarded_to ? { forwarded_to: r.forwarded_to } : {}) }),
              (err: unknown) => this.replyError(c, requestId, err),
            );
            return;
          }
          this.reply(c, { type: 'ack', request_id: requestId, download: d[cmd.type](cmd.id) });
          return;
        case 'clear_completed':
          this.reply(c, { type: 'ack', request_id: requestId, removed_count: d.clearCompleted() });
          return;
        default:
          // The input is not echoed: a reply is never larger than what the server chose to say.
          throw new AppError('UNKNOWN_COMMAND', 'Unknown message type; expected start, pause, resume, cancel, retry or clear_completed', { status: 400 });
      }
    } catch (err) {
      this.replyError(c, requestId, err);
    }
  }

  private replyError(c: Client, requestId: string | null, err: unknown): void {
    const e = err instanceof AppError ? err : new AppError('INTERNAL', 'Internal error; see the server log');
    if (!(err instanceof AppError)) this.o.log.error(`WebSocket command failed: ${(err as Error).stack ?? String(err)}`);
    this.reply(c, { type: 'error', request_id: requestId, error: e.toJSON() });
  }
}
