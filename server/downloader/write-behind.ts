import type { FileHandle } from 'node:fs/promises';

/**
 * Has the kernel write a file's dirty pages while the download goes on (an fdatasync every
 * `every` bytes, one at a time), so the fsync before the rename waits for the last stretch only.
 * Without it Linux keeps up to a tenth of RAM dirty and a 2 GB file reaches the disk only at that
 * fsync, after the network is done: seconds during which nothing else happens.
 */
export class WriteBehind {
  private since = 0;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly file: FileHandle,
    private readonly every = 64 * 1024 * 1024,
  ) {}

  /** Counts bytes the kernel accepted into the file. */
  wrote(bytes: number): void {
    this.since += bytes;
    if (this.since < this.every || this.inFlight) return;
    this.since = 0;
    this.inFlight = this.file
      .datasync()
      .catch(() => undefined) // a failure shows at the fsync before the rename, where it counts
      .finally(() => {
        this.inFlight = undefined;
      });
  }

  /** Waits for a sync in flight: call before closing the file (its descriptor must outlive it). */
  async settled(): Promise<void> {
    await this.inFlight;
  }
}
