import type { FileHandle } from 'node:fs/promises';

export interface WriteBehindOptions {
  /** Sync after this many bytes. @default 64 MiB */
  every?: number;
  /** Sync also when bytes have waited this long (a slow link), if set. */
  maxAgeMs?: number;
  /**
   * Called as a sync starts; what it returns is called once that sync succeeded. For a segment
   * map: take the counts now, publish them as safe to save when the sync is done.
   */
  onSync?: () => (() => void) | void;
}

/**
 * Has the kernel write a file's dirty pages while the download goes on (an fdatasync every
 * `every` bytes, one at a time), so the fsync before the rename waits for the last stretch only.
 * Without it Linux keeps up to a tenth of RAM dirty and a 2 GB file reaches the disk only at that
 * fsync, after the network is done: seconds during which nothing else happens.
 */
export class WriteBehind {
  private since = 0;
  private lastSync = Date.now();
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly file: FileHandle,
    private readonly options: WriteBehindOptions = {},
  ) {}

  /** Counts bytes the kernel accepted into the file. */
  wrote(bytes: number): void {
    this.since += bytes;
    if (this.inFlight) return;
    const { every = 64 * 1024 * 1024, maxAgeMs } = this.options;
    const old = maxAgeMs !== undefined && this.since > 0 && Date.now() - this.lastSync >= maxAgeMs;
    if (this.since < every && !old) return;
    this.since = 0;
    const synced = this.options.onSync?.();
    this.inFlight = this.file
      .datasync()
      .then(
        () => synced?.(),
        () => undefined, // a failure shows at the fsync before the rename, where it counts
      )
      .finally(() => {
        this.inFlight = undefined;
        this.lastSync = Date.now();
      });
  }

  /** Waits for a sync in flight: call before closing the file (its descriptor must outlive it). */
  async settled(): Promise<void> {
    await this.inFlight;
  }
}
