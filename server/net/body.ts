/*
 * Owns a response body and the connection under it until the body is done: it is read either as
 * an ordinary Readable (error pages, tiny answers; each chunk is copied) or moved to a file by a
 * Pump (the fast path), never both; then the connection goes back to its agent, kept or closed.
 */
import { Readable } from 'node:stream';
import type { Agent } from './agent';
import type { Framer, Framing } from './body-framing';
import type { Connection } from './connection';
import { Pump, type PumpOptions } from './pump';

/**
 * A response body. Read it as a stream (small answers), or move it to a file with `pump()`.
 * Destroying it closes the connection, unless the rest of a short body is already here.
 */
export class RawBody extends Readable {
  private released = false;
  private pumping: Pump | undefined;
  private reading = false;

  private readonly framer: Framer;
  private readonly keepAlive: boolean;
  private readonly serverIdleMs: number | undefined;

  constructor(
    private readonly conn: Connection,
    framing: Framing,
    private readonly signal: AbortSignal,
    private readonly agent: Agent,
  ) {
    super({ highWaterMark: 64 * 1024 });
    this.framer = framing.framer;
    this.keepAlive = framing.keepAlive;
    this.serverIdleMs = framing.serverIdleMs;
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
    conn.watchBody();
    conn.attach({
      bytes: (block, start, from, to) => {
        let body: [number, number];
        try {
          body = this.framer.take(block, from, to);
        } catch (err) {
          this.destroy(err as Error);
          return start;
        }
        if (body[1] > body[0] && !this.push(Buffer.from(block.subarray(body[0], body[1])))) conn.pause();
        if (this.framer.done) finish();
        return to;
      },
      retire: conn.pool.give,
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
      if (!this.reading && left !== undefined && left <= this.conn.buffered && this.conn.state === 'busy') {
        this.conn.takeBuffered((block, from, to) => this.framer.take(block, from, to));
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
    this.agent.release(this.conn, reuse, this.serverIdleMs);
  }
}
