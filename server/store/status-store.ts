import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { readAtStartup } from './status-file-read';
import { createEditWatch, type EditWatch } from './status-file-watch';
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

/** How a change reaches the file: state changes at once, progress at most every writeIntervalMs. */
export type Urgency = 'now' | 'soon';

/**
 * Entries in memory, keyed by `dest`, and the status file that mirrors them. Every change bumps
 * `seq` and emits `update`/`removed`; the file is rewritten atomically (write-file-atomic: temp file,
 * fsync, rename), so a reader never sees it half-written.
 */
export class StatusStore extends EventEmitter<StoreEvents> {
  readonly file: string;
  private readonly log: Logger;
  private readonly writeIntervalMs: number;
  private readonly isValidDest: (dest: string) => boolean;
  private readonly entries = new Map<string, Entry>();
  private readonly byId = new Map<string, string>();
  private seqValue = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private dirty = false;
  private urgent = false;
  private lastWriteAt = 0;
  private readonly watch: EditWatch;
  private closed = false;
  /** close() has begun: its final write still adopts an edit made since the last look. */
  private closing = false;
  /** The last write found another process's edit half-written and is giving it a moment. */
  private waitingForEdit = false;
  /** Whether the last write of the file failed (a full disk): memory is right, the file behind. */
  private writeFailed = false;
  /** How many times a write waited for a half-written edit to be finished. */
  private editWaits = 0;

  constructor(options: StatusStoreOptions) {
    super();
    this.file = options.file;
    this.log = options.log;
    this.writeIntervalMs = options.writeIntervalMs ?? 250;
    this.isValidDest = options.isValidDest ?? (() => true);
    this.watch = createEditWatch({
      file: this.file,
      log: this.log,
      isValidDest: this.isValidDest,
      enabled: options.watch ?? true,
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
   * Reads the file at start-up (see readAtStartup: a file that cannot be used is kept aside, bad
   * entries dropped, both logged). Never throws for content.
   */
  async load(): Promise<Entry[]> {
    await this.removeStaleTemps();
    const read = await readAtStartup({ file: this.file, log: this.log, isValidDest: this.isValidDest });
    if (read.text !== undefined) this.watch.remember(read.text); // what we started from is no edit
    for (const e of read.entries.values()) this.setEntry(e);
    if (read.changes.length > 0) {
      // The file on disk must say what clients are shown (another process reads it too, and a
      // token must not stay on disk until the next download happens to rewrite it).
      this.dirty = true;
      this.urgent = true;
      await this.writeNow();
      if (!this.writeFailed) this.log.info(`rewrote the status file ${this.file} to match the ${this.entries.size} entries served (${read.changes.join('; ')})`);
    }
    await this.watch.start();
    return this.all();
  }

  /** Adds or replaces the entry for `entry.dest` (synchronously: duplicate checks rely on it). */
  put(entry: Entry, urgency: Urgency = 'now'): Entry {
    this.setEntry(entry);
    this.seqValue++;
    this.emit('update', entry);
    this.schedule(urgency);
    return entry;
  }

  remove(dest: string): Entry | undefined {
    const entry = this.entries.get(dest);
    if (!entry) return undefined;
    this.entries.delete(dest);
    if (this.byId.get(entry.id) === dest) this.byId.delete(entry.id);
    this.seqValue++;
    this.emit('removed', entry);
    this.schedule('now');
    return entry;
  }

  /** Replaces every entry at once (external edits), then emits `reset`. */
  replaceAll(entries: Iterable<Entry>): void {
    this.entries.clear();
    this.byId.clear();
    for (const e of entries) this.setEntry(e);
    this.seqValue++;
    this.emit('reset');
    this.schedule('now');
  }

  /** Writes pending changes now and waits for them to be on disk. */
  async flush(): Promise<void> {
    while (this.writing || this.dirty) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
        // The moment a half-written edit was to get is waited out here too, not skipped.
        if (this.waitingForEdit) await new Promise((r) => setTimeout(r, EDIT_WAIT_MS));
      }
      if (this.writing) await this.writing;
      else await this.writeNow();
    }
  }

  /** Flushes and stops watching. Idempotent. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // The final write looks for another process's edit first, like every write: one made since the
    // watcher last polled (a shutdown right after it) is applied, not renamed over.
    await this.flush();
    this.closed = true;
    await this.watch.close();
  }

  private setEntry(entry: Entry): void {
    const previous = this.entries.get(entry.dest);
    if (previous && previous.id !== entry.id) this.byId.delete(previous.id);
    this.entries.set(entry.dest, entry);
    this.byId.set(entry.id, entry.dest);
  }

  private schedule(urgency: Urgency): void {
    this.dirty = true;
    if (urgency === 'now') this.urgent = true;
    if (this.writing) return; // the running write reschedules when it ends
    const wait = this.urgent ? 0 : Math.max(0, this.lastWriteAt + this.writeIntervalMs - Date.now());
    if (this.timer && !this.urgent) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.writeNow();
    }, wait);
  }

  private writeNow(): Promise<void> {
    if (this.writing) return this.writing;
    let waitForEdit = false;
    this.waitingForEdit = false;
    this.writing = this.watch
      .look()
      .then((halfWritten) => {
        // Another process is writing the file in place (`jq … > status.json`: truncated, not yet
        // whole). Renamed over now, the rest of its write would go to the old, unlinked file and its
        // edit would be lost: give it a moment (at most EDIT_WAITS × EDIT_WAIT_MS), then write anyway.
        if (halfWritten && this.editWaits < EDIT_WAITS) {
          this.editWaits++;
          waitForEdit = true;
          return;
        }
        this.editWaits = 0;
        // A state change is fsynced; a progress-only rewrite need not be (a resume trusts the .part
        // on disk, not the byte count), and an fsync per progress tick stalls behind the download's
        // own dirty pages. Either way the rename keeps the file whole.
        const durable = this.urgent;
        this.dirty = false;
        this.urgent = false;
        const content = this.serialize();
        this.watch.remember(content);
        this.lastWriteAt = Date.now();
        return fs
          .mkdir(path.dirname(this.file), { recursive: true })
          .then(() => writeFileAtomic(this.file, content, { mode: 0o600, fsync: durable }))
          .then(() => {
            this.writeFailed = false;
          });
      })
      .catch((err: unknown) => {
        this.writeFailed = true;
        // A full disk must not take the server down: memory stays right and the next change retries.
        this.log.error(`could not write the status file ${this.file}: ${(err as Error).message}`);
      })
      .finally(() => {
        this.writing = undefined;
        this.waitingForEdit = waitForEdit;
        if (this.closed) return;
        if (waitForEdit) {
          if (this.timer) clearTimeout(this.timer);
          this.timer = setTimeout(() => {
            this.timer = undefined;
            if (this.dirty) void this.writeNow();
          }, EDIT_WAIT_MS);
        } else if (this.dirty) this.schedule(this.urgent ? 'now' : 'soon');
      });
    return this.writing;
  }

  private serialize(): string {
    const obj: Record<string, Entry> = {};
    for (const [dest, entry] of this.entries) obj[dest] = entry;
    return JSON.stringify(obj, null, 2) + '\n';
  }

  /**
   * write-file-atomic writes `<file>.<number>` and renames it over the file; a process killed
   * between the two (kill -9, a crash, a power cut) leaves the temp file behind, one per kill.
   */
  private async removeStaleTemps(): Promise<void> {
    const dir = path.dirname(this.file);
    const base = `${path.basename(this.file)}.`;
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch {
      return;
    }
    const stale = names.filter((n) => n.startsWith(base) && /^\d+$/.test(n.slice(base.length)));
    for (const name of stale) await fs.rm(path.join(dir, name), { force: true });
    if (stale.length > 0) this.log.info(`removed ${stale.length} temporary file(s) left by an interrupted write of ${this.file}`);
  }

}

/** How long, and how many times, a write waits for another process to finish writing the file in place. */
const EDIT_WAIT_MS = 50;
const EDIT_WAITS = 10;
