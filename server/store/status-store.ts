/**
 * The downloads' entries in memory, keyed by `dest`, and their typed events: the API the rest of
 * the server uses. Every change bumps `seq` and emits `update`/`removed`/`reset`, then tells the
 * status file (status-file.ts), which mirrors the entries on disk and reports edits made to it by
 * another process as `external`.
 */
import { EventEmitter } from 'node:events';
import { createStatusFile, type StatusFile } from './status-file';
import type { Urgency } from './status-file-write';
import type { Logger } from '../logger';
import type { Entry } from '../protocol/wire';

export type { Urgency } from './status-file-write';

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

/**
 * Entries in memory, keyed by `dest`, and the status file that mirrors them. The file is rewritten
 * atomically (write-file-atomic: temp file, fsync, rename), so a reader never sees it half-written.
 */
export class StatusStore extends EventEmitter<StoreEvents> {
  readonly file: string;
  private readonly entries = new Map<string, Entry>();
  private readonly byId = new Map<string, string>();
  private seqValue = 0;
  private readonly statusFile: StatusFile;

  constructor(options: StatusStoreOptions) {
    super();
    this.file = options.file;
    this.statusFile = createStatusFile({
      file: options.file,
      log: options.log,
      writeIntervalMs: options.writeIntervalMs ?? 250,
      watch: options.watch ?? true,
      isValidDest: options.isValidDest ?? (() => true),
      entries: () => this.entries,
      onEdit: (entries) => this.emit('external', entries),
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
   * Reads the file at start-up. A file that does not parse (or is not an object of entries) is
   * renamed aside and logged; single bad entries are dropped and logged. Never throws for content.
   */
  async load(): Promise<Entry[]> {
    await this.statusFile.load((entries) => {
      for (const e of entries.values()) this.setEntry(e);
    });
    return this.all();
  }

  /** Adds or replaces the entry for `entry.dest` (synchronously: duplicate checks rely on it). */
  put(entry: Entry, urgency: Urgency = 'now'): Entry {
    this.setEntry(entry);
    this.seqValue++;
    this.emit('update', entry);
    this.statusFile.changed(urgency);
    return entry;
  }

  remove(dest: string): Entry | undefined {
    const entry = this.entries.get(dest);
    if (!entry) return undefined;
    this.entries.delete(dest);
    if (this.byId.get(entry.id) === dest) this.byId.delete(entry.id);
    this.seqValue++;
    this.emit('removed', entry);
    this.statusFile.changed('now');
    return entry;
  }

  /** Replaces every entry at once (external edits), then emits `reset`. */
  replaceAll(entries: Iterable<Entry>): void {
    this.entries.clear();
    this.byId.clear();
    for (const e of entries) this.setEntry(e);
    this.seqValue++;
    this.emit('reset');
    this.statusFile.changed('now');
  }

  /** Writes pending changes now and waits for them to be on disk. */
  flush(): Promise<void> {
    return this.statusFile.flush();
  }

  /** Flushes and stops watching. Idempotent: every call gets the same promise. */
  close(): Promise<void> {
    return this.statusFile.close();
  }

  private setEntry(entry: Entry): void {
    const previous = this.entries.get(entry.dest);
    if (previous && previous.id !== entry.id) this.byId.delete(previous.id);
    this.entries.set(entry.dest, entry);
    this.byId.set(entry.id, entry.dest);
  }
}
