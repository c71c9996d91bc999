/*
 * Owns moving a response body to a file: the fast path of every transfer. The connection's blocks
 * go to the disk as they are: a run of bytes in the block being filled is written every FLUSH_MS
 * or when the block is retired, a retired block goes back to the pool once its bytes are on disk,
 * and the socket is paused while MAX_BLOCKS of them wait for the disk, so memory stays bounded.
 */
import type { Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { ChunkWriter } from '../disk/chunk-writer';
import type { Framer } from './body-framing';
import type { Connection } from './connection';

/** Blocks of one body that may wait for the disk before the socket is paused (4 MiB per connection). */
const MAX_BLOCKS = 4;
/** A slow body still reaches the disk (and the progress bar) this often, whole block or not. */
const FLUSH_MS = 50;

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
    /** Hands the connection back: to be kept for another request (`reuse`) or closed. */
    private readonly release: (reuse: boolean) => void,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.done.catch(() => undefined); // the caller awaits it; an abort after it stopped listening is no crash
    this.writer = new ChunkWriter(o.file, o.position, { onSettled: (err) => this.settled(err) });
    this.timer = setInterval(() => this.submit(), FLUSH_MS);
    // From the next microtask: the caller holds the pump before its callbacks first run.
    queueMicrotask(() => this.start());
  }

  private start(): void {
    if (this.finished) return;
    if (this.framer.done) return this.finish('end');
    this.conn.watchBody();
    this.conn.attach({
      bytes: (block, start, from, to) => this.bytes(block, start, from, to),
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

  /** Takes what arrived; returns how far it consumed the connection's bytes (see Consumer.bytes). */
  private bytes(block: Buffer, start: number, from: number, to: number): number {
    if (this.finished) return start; // left for the connection's next reader, which closes it
    let a: number;
    let b: number;
    try {
      [a, b] = this.framer.take(block, from, to);
    } catch (err) {
      this.fail(err as Error);
      return start;
    }
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
    return to;
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
    while (this.retired.length > 0 && this.retired[0]!.upTo <= this.writer.written) this.conn.pool.give(this.retired.shift()!.block);
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
    this.conn.cut(); // no more bytes into the blocks; they are given back below
    this.submit(); // what arrived is kept: it is where the next attempt resumes
    this.writer.flush().then(
      () => this.settleFailure(err),
      () => this.settleFailure(err),
    );
  }

  /** No write is in flight any more: every block can be given back. */
  private settleFailure(err: unknown): void {
    for (const { block } of this.retired.splice(0)) this.conn.pool.give(block);
    this.release(false);
    this.reject(err);
  }
}
