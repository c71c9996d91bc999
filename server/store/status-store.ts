import { EventEmitter } from 'node:events';
import { readAtStartup } from './status-file-read';
import { createEditWatch, type EditWatch } from './status-file-watch';
import { createStatusFileWriter, removeStaleTemps, type StatusFileWriter, type Urgency } from './status-file-write';
import type { Logger } from '../logger';
import type { Entry } from '../protocol/wire';

export interface StatusStoreOptions {
  file: string;
  log: Logger;
  /** Least time between two progress-only writes of the file. @default 250 */
  writeIntervalMs?: number;
  /** Watch the file for edits by other processes. @default true */
  watch?: boolean;
  /** Entries whose `dest` this refuses (one that would leave MODELS_DIR) are dropped on load. */
  isValidDest?: (dest: string) => boolean;
}

export interface StoreEvents {
  update: [Entry];
  removed: [Entry];
  /** The whole set was replaced (an external edit): subscribers need a fresh snapshot. */
  reset: [];
  /** The file was edited by another process; the entries it now holds. */
  external: [Map<string, Entry>];
}

export type { Urgency } from './status-file-write';

/**
 * Entries in memory, keyed by `dest`, and the status file that mirrors them. Every change bumps
 * `seq` and emits `update`/`removed`; the file is rewritten atomically (write-file-atomic: temp file,
 * fsync, rename), so a reader never sees it half-written.
 */
export class StatusStore extends EventEmitter<StoreEvents> {
  readonly file: string;
  private readonly log: Logger;
  private readonly isValidDest: (dest: string) => boolean;
  private readonly entries = new Map<string, Entry>();
  private readonly byId = new Map<string, string>();
  private seqValue = 0;
  private readonly watch: EditWatch;
  private readonly writer: StatusFileWriter;
  private closing: Promise<void> | undefined;

  constructor(options: StatusStoreOptions) {
    super();
    this.file = options.file;
    this.log = options.log;
    this.isValidDest = options.isValidDest ?? (() => true);
    this.watch = createEditWatch({
      file: this.file,
      log: this.log,
      isValidDest: this.isValidDest,
      enabled: options.watch ?? true,
      onEdit: (entries) => this.emit('external', entries),
    });
    this.writer = createStatusFileWriter({
      file: this.file,
      log: this.log,
      writeIntervalMs: options.writeIntervalMs ?? 250,
      entries: () => this.entries,
      look: () => this.watch.look(),
      writing: (content) => this.watch.remember(content),
    });
  }

  /** Increases with every change; the WebSocket `seq`. */
  get seq(): number {
    return this.seqValue;
  }

  all(): Entry[] {
    return [...this.entries.values()];
  }

  get(dest: string): Entry | undefined {
    return this.entries.get(dest);
  }

  getById(id: string): Entry | undefined {
    const dest = this.byId.get(id);
    return dest === undefined ? undefined : this.entries.get(dest);
  }

  /**
   * Reads the file at start-up (see readAtStartup: a file that cannot be used is kept aside, bad
   * entries dropped, both logged). Never throws for content.
   */
  async load(): Promise<Entry[]> {
    await removeStaleTemps(this.file, this.log);
    const read = await readAtStartup({ file: this.file, log: this.log, isValidDest: this.isValidDest });
    if (read.text !== undefined) this.watch.remember(read.text); // what we started from is no edit
    for (const e of read.entries.values()) this.setEntry(e);
    if (read.changes.length > 0) {
      // The file on disk must say what clients are shown (another process reads it too, and a
      // token must not stay on disk until the next download happens to rewrite it).
      this.writer.changed('now');
      await this.writer.flush();
      if (!this.writer.failed) this.log.info(`rewrote the status file ${this.file} to match the ${this.entries.size} entries served (${read.changes.join('; ')})`);
    }
    await this.watch.start();
    return this.all();
  }

  /** Adds or replaces the entry for `entry.dest` (synchronously: duplicate checks rely on it). */
  put(entry: Entry, urgency: Urgency = 'now'): Entry {
    this.setEntry(entry);
    this.seqValue++;
    this.emit('update', entry);
    this.writer.changed(urgency);
    return entry;
  }

  remove(dest: string): Entry | undefined {
    const entry = this.entries.get(dest);
    if (!entry) return undefined;
    this.entries.delete(dest);
    if (this.byId.get(entry.id) === dest) this.byId.delete(entry.id);
    this.seqValue++;
    this.emit('removed', entry);
    this.writer.changed('now');
    return entry;
  }

  /** Replaces every entry at once (external edits), then emits `reset`. */
  replaceAll(entries: Iterable<Entry>): void {
    this.entries.clear();
    this.byId.clear();
    for (const e of entries) this.setEntry(e);
    this.seqValue++;
    this.emit('reset');
    this.writer.changed('now');
  }

  /** Writes pending changes now and waits for them to be on disk. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /** Flushes and stops watching. Idempotent. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      // The final write looks for another process's edit first, like every write: one made since the
      // watcher last polled (a shutdown right after it) is applied, not renamed over.
      await this.writer.close();
      await this.watch.close();
    })());
  }

  private setEntry(entry: Entry): void {
    const previous = this.entries.get(entry.dest);
    if (previous && previous.id !== entry.id) this.byId.delete(previous.id);
    this.entries.set(entry.dest, entry);
    this.byId.set(entry.id, entry.dest);
  }
}
