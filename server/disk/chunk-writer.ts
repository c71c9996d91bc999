import type { FileHandle } from 'node:fs/promises';

export interface ChunkWriterOptions {
  /** Called after every batch the kernel accepted (or refused, with the error). */
  onSettled?: (err?: unknown) => void;
}

/**
 * Writes a stream of chunks at increasing positions of a file. While one `writev` is in the thread
 * pool, the chunks that arrive gather into the next: batches grow by themselves when the disk is
 * the slower side, and a slow download still reaches the disk at once. `written` counts only
 * bytes the kernel accepted. It holds whatever it is given: its one user, the Pump in
 * server/net/pump.ts, bounds memory by its own blocks (it pauses the socket while too many of
 * them wait for the disk) and gives a block back once `written` has passed it.
 */
export class ChunkWriter {
  /** Bytes written to the file so far (from `start`). */
  written = 0;
  private readonly onSettled: ((err?: unknown) => void) | undefined;
  private gathering: Buffer[] = [];
  private gatheredBytes = 0;
  private inFlight: Promise<void> | undefined;
  private failure: unknown;

  constructor(
    private readonly file: FileHandle,
    private readonly start: number,
    options: ChunkWriterOptions = {},
  ) {
    this.onSettled = options.onSettled;
  }

  /**
   * Queues a chunk: written at once when no write is under way, else with the next batch. The
   * chunk must stay unchanged until `written` has passed it. Throws the error of a failed write.
   */
  push(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    this.gathering.push(chunk);
    this.gatheredBytes += chunk.length;
    if (!this.inFlight) this.writeBatch();
  }

  /** Writes everything queued and waits for it; rejects with the first write error. */
  async flush(): Promise<void> {
    while (this.inFlight || this.gatheredBytes > 0) {
      if (this.failure) break;
      if (!this.inFlight) this.writeBatch();
      await this.inFlight;
    }
    if (this.failure) throw this.failure;
  }

  private writeBatch(): void {
    const buffers = this.gathering;
    const bytes = this.gatheredBytes;
    this.gathering = [];
    this.gatheredBytes = 0;
    this.inFlight = this.writeAll(buffers, this.start + this.written)
      .then(
        () => {
          this.written += bytes;
        },
        (err: unknown) => {
          this.failure = err;
        },
      )
      .finally(() => {
        this.inFlight = undefined;
        if (!this.failure && this.gatheredBytes > 0) this.writeBatch();
        try {
          this.onSettled?.(this.failure);
        } catch (err) {
          this.failure ??= err; // surfaces at the next push or flush, never as an unhandled rejection
        }
      });
  }

  /** writev may write less than asked (a signal, a nearly full disk): go on from where it stopped. */
  private async writeAll(buffers: Buffer[], position: number): Promise<void> {
    let rest = buffers;
    let at = position;
    while (rest.length > 0) {
      const { bytesWritten } = await this.file.writev(rest, at);
      at += bytesWritten;
      let skip = bytesWritten;
      const next: Buffer[] = [];
      for (const b of rest) {
        if (skip >= b.length) {
          skip -= b.length;
        } else {
          next.push(skip > 0 ? b.subarray(skip) : b);
          skip = 0;
        }
      }
      if (bytesWritten === 0 && next.length > 0) throw Object.assign(new Error('the disk accepted no bytes'), { code: 'EIO' });
      rest = next;
    }
  }
}
