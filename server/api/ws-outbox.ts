/**
 * One WebSocket client's outgoing queue, bounded in bytes whatever the client does.
 *
 * What leaves, in order of priority, while the socket's buffer is under the high-water mark:
 * - the snapshot, streamed as fragments of one text message, a few dozen KiB of entries at a time,
 *   so a 30 MB snapshot never sits whole in memory once per client (the entries are the store's
 *   immutable objects, so a list of references is a consistent picture);
 * - replies to the client's commands, first in first out, counted in bytes;
 * - updates, coalesced per download: the latest state of each, in seq order.
 * A client holding more than `maxQueuedBytes` (socket buffer plus unsent replies) is over its
 * budget: a reader that stopped reading while sending commands. The hub drops it; otherwise its
 * replies would grow the server without bound (seen: 59 → 273 MB of RSS from one such client).
 */
import { WebSocket } from 'ws';
import type { Entry, ServerMessage } from '../protocol/wire';

export interface OutboxOptions {
  /** Bytes buffered in the socket beyond which messages wait here. */
  highWaterMark: number;
  /** Socket buffer plus unsent replies beyond which the client is dropped. */
  maxQueuedBytes: number;
  /** Called once when the budget is exceeded. */
  onOverBudget: () => void;
}

/** About this much JSON of entries per snapshot fragment. */
const FRAGMENT_BYTES = 64 * 1024;

interface SnapshotStream {
  seq: number;
  entries: readonly Entry[];
  /** Next entry to serialize; -1 before the head has been sent. */
  next: number;
}

export class Outbox {
  /** Latest message per download id, in the order they must leave (seq order). */
  private readonly updates = new Map<string, ServerMessage>();
  private readonly replies: string[] = [];
  private replyBytes = 0;
  private stream: SnapshotStream | null = null;
  /** A snapshot asked for while another was half sent: it follows that one. */
  private nextSnapshot: Omit<SnapshotStream, 'next'> | null = null;
  /** When the socket buffer was last seen full with messages waiting; null while it drains. */
  blockedSince: number | null = null;
  private dropped = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly o: OutboxOptions,
  ) {}

  /** A full picture at `seq`: supersedes every update queued before it. */
  snapshot(seq: number, entries: readonly Entry[]): void {
    this.updates.clear();
    if (this.stream && this.stream.next >= 0) this.nextSnapshot = { seq, entries };
    else this.stream = { seq, entries, next: -1 };
    this.pump();
  }

  /** An update or removal of the download `key`; `data` is its JSON when already serialized. */
  update(key: string, message: ServerMessage, data?: string): void {
    if (this.idle()) {
      this.send(data ?? JSON.stringify(message));
      return;
    }
    this.updates.delete(key); // re-inserted at the end, so messages leave in seq order
    this.updates.set(key, message);
    this.pump();
  }

  /** An answer to one of the client's commands: never coalesced, so counted against the budget. */
  reply(message: ServerMessage): void {
    const data = JSON.stringify(message);
    if (this.idle()) {
      this.send(data);
      return;
    }
    this.replies.push(data);
    this.replyBytes += Buffer.byteLength(data);
    this.checkBudget();
    this.pump();
  }

  /** Messages waiting here (not yet handed to the socket). */
  get pending(): number {
    return this.updates.size + this.replies.length + (this.stream ? 1 : 0) + (this.nextSnapshot ? 1 : 0);
  }

  /** Bytes this client holds in the server: the socket buffer plus unsent replies. */
  get queuedBytes(): number {
    return this.ws.bufferedAmount + this.replyBytes;
  }

  /** Forgets everything queued (the connection closed). */
  clear(): void {
    this.updates.clear();
    this.replies.length = 0;
    this.replyBytes = 0;
    this.stream = null;
    this.nextSnapshot = null;
  }

  private idle(): boolean {
    return this.pending === 0 && this.ws.bufferedAmount <= this.o.highWaterMark;
  }

  private open(): boolean {
    return this.ws.readyState === WebSocket.OPEN && !this.dropped;
  }

  private checkBudget(): void {
    if (this.dropped || this.queuedBytes <= this.o.maxQueuedBytes) return;
    this.dropped = true;
    this.clear();
    this.o.onOverBudget();
  }

  private send(data: string, fin = true): void {
    if (!this.open()) return;
    this.ws.send(data, { fin }, (err) => {
      if (err) return;
      this.blockedSince = null; // the socket is moving
      if (this.pending > 0) this.pump();
    });
    this.checkBudget();
  }

  /** Hands messages to the socket while its buffer is under the high-water mark. */
  private pump(): void {
    while (this.open()) {
      if (this.ws.bufferedAmount > this.o.highWaterMark) {
        if (this.pending > 0) this.blockedSince ??= Date.now();
        return;
      }
      if (this.stream) {
        this.sendFragment(this.stream);
        continue;
      }
      const reply = this.replies.shift();
      if (reply !== undefined) {
        this.replyBytes -= Buffer.byteLength(reply);
        this.send(reply);
        continue;
      }
      const first = this.updates.entries().next();
      if (first.done) return;
      this.updates.delete(first.value[0]);
      this.send(JSON.stringify(first.value[1]));
    }
  }

  private sendFragment(s: SnapshotStream): void {
    let text = '';
    if (s.next < 0) {
      text = `{"type":"snapshot","seq":${s.seq},"downloads":[`;
      s.next = 0;
    }
    while (s.next < s.entries.length && text.length < FRAGMENT_BYTES) {
      text += (s.next > 0 ? ',' : '') + JSON.stringify(s.entries[s.next]);
      s.next++;
    }
    const last = s.next >= s.entries.length;
    if (last) {
      text += ']}';
      this.stream = this.nextSnapshot ? { ...this.nextSnapshot, next: -1 } : null;
      this.nextSnapshot = null;
    }
    this.send(text, last);
  }
}
