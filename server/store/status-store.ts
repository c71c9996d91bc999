import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import writeFileAtomic from 'write-file-atomic';
import { newId, parseEntry } from './entry';
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
  private readonly watchEnabled: boolean;
  private readonly isValidDest: (dest: string) => boolean;
  private readonly entries = new Map<string, Entry>();
  private readonly byId = new Map<string, string>();
  private seqValue = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private dirty = false;
  private urgent = false;
  private lastWriteAt = 0;
  /** Hashes of our recent writes (and of edits already applied), so they are not taken for new edits. */
  private readonly known: string[] = [];
  private watcher: FSWatcher | undefined;
  private closed = false;
  /** close() has begun: its final write still adopts an edit made since the last look. */
  private closing = false;
  /** The last write found another process's edit half-written and is giving it a moment. */
  private waitingForEdit = false;
  /** Whether the last write of the file failed (a full disk): memory is right, the file behind. */
  private writeFailed = false;
  /** The hash of the last edit that could not be used, and how many times a write waited for it to be finished. */
  private unusableEdit: string | undefined;
  private editWaits = 0;

  constructor(options: StatusStoreOptions) {
    super();
    this.file = options.file;
    this.log = options.log;
    this.writeIntervalMs = options.writeIntervalMs ?? 250;
    this.watchEnabled = options.watch ?? true;
    this.isValidDest = options.isValidDest ?? (() => true);
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
    await this.removeStaleTemps();
    let text: string | undefined;
    try {
      text = await readText(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) this.remember(text); // what we started from is no edit
    const parsed = text === undefined ? undefined : await this.parse(text, { atStartup: true });
    for (const e of parsed?.entries.values() ?? []) this.setEntry(e);
    if (parsed && parsed.changes.length > 0) {
      // The file on disk must say what clients are shown (another process reads it too, and a
      // token must not stay on disk until the next download happens to rewrite it).
      this.dirty = true;
      this.urgent = true;
      await this.writeNow();
      if (!this.writeFailed) this.log.info(`rewrote the status file ${this.file} to match the ${this.entries.size} entries served (${parsed.changes.join('; ')})`);
    }
    if (this.watchEnabled) await this.startWatching();
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
    await this.watcher?.close();
    this.watcher = undefined;
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
    this.writing = this.adoptPendingEdit()
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
        this.remember(content);
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

  /**
   * Another process's edit that the watcher has not reported yet (it polls) would be overwritten
   * by this write and lost: while downloads run we rewrite the file every few hundred ms. So look
   * first, and apply it (the downloader merges it) before writing.
   */
  private async adoptPendingEdit(): Promise<boolean> {
    if (!this.watchEnabled || this.closed) return false;
    let text: string;
    try {
      text = await readText(this.file);
    } catch {
      return false;
    }
    await this.applyEdit(text);
    // True while the file holds an edit that could not be used (empty, cut short): one being written.
    return this.unusableEdit === hash(text);
  }

  private serialize(): string {
    const obj: Record<string, Entry> = {};
    for (const [dest, entry] of this.entries) obj[dest] = entry;
    return JSON.stringify(obj, null, 2) + '\n';
  }

  /** Contents we wrote or already took in: the watcher must not apply them as edits. */
  private remember(content: string): void {
    this.known.push(hash(content));
    if (this.known.length > 8) this.known.shift();
  }

  /**
   * The entries the file holds, and what makes the file differ from them (dropped entries, new ids,
   * cleaned URLs). Undefined when it cannot be used at all (not JSON, not an object, empty): at
   * start-up it is then kept aside; an edit by another process is ignored, never taken for "no
   * downloads" (a non-atomic writer leaves the file empty or half-written for a moment).
   */
  private async parse(text: string, options: { atStartup: boolean }): Promise<ParsedFile | undefined> {
    const result = new Map<string, Entry>();
    const unusable = async (reason: string): Promise<ParsedFile | undefined> => {
      if (!options.atStartup) {
        this.log.warn(`ignored an edit of ${this.file}: ${reason}`);
        return undefined;
      }
      // Moved aside: there is no file left to disagree with. Copied aside (it could not be moved):
      // the bad file is still in place, so it is replaced at once by what is served.
      return (await this.keepAside(reason)) === 'copied' ? { entries: result, changes: ['its unusable content was kept aside'] } : undefined;
    };
    if (text.trim() === '') {
      // At start-up, nothing to keep aside (`touch` makes one for a bind mount), but worth a line:
      // it may also be what a crash of another writer left.
      if (!options.atStartup) return unusable('it is empty');
      this.log.warn(`the status file ${this.file} is empty; starting with no downloads`);
      return { entries: result, changes: [] };
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      return unusable(`it is not valid JSON (${(err as Error).message})`);
    }
    if (!data || typeof data !== 'object' || Array.isArray(data)) return unusable('it is not an object keyed by destination');
    const dropped: string[] = [];
    const ids = new Set<string>();
    const renamed: string[] = [];
    let urls = 0;
    for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
      const entry = parseEntry(key, value);
      if (typeof entry === 'string') dropped.push(`${key}: ${entry}`);
      else if (!this.isValidDest(key)) dropped.push(`${key}: not a destination inside the models folder`);
      else {
        // A copied entry (a hand edit) keeps the id of its original: commands and the page key
        // downloads by id, so one of the two would be out of reach.
        if (ids.has(entry.id)) {
          entry.id = newId();
          renamed.push(key);
        }
        ids.add(entry.id);
        // A token or signature removed (or the URL put in its normal form): never logged itself.
        if (entry.url !== (value as { url: string }).url) urls++;
        result.set(key, entry);
      }
    }
    const changes: string[] = [];
    if (renamed.length > 0) {
      this.log.warn(`gave ${renamed.length} entr${renamed.length === 1 ? 'y' : 'ies'} of ${this.file} a new id (another entry had the same): ${listed(renamed, ', ')}`);
      changes.push(`${renamed.length} new id${renamed.length === 1 ? '' : 's'}`);
    }
    if (dropped.length > 0) {
      this.log.warn(`dropped ${dropped.length} unusable entr${dropped.length === 1 ? 'y' : 'ies'} of ${this.file}: ${listed(dropped, '; ')}`);
      if (options.atStartup) await this.copyAside('it had unusable entries');
      changes.push(`${dropped.length} unusable entr${dropped.length === 1 ? 'y' : 'ies'} dropped`);
    }
    if (urls > 0) changes.push(`${urls} URL${urls === 1 ? '' : 's'} without credentials or in normal form`);
    return { entries: result, changes };
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

  private asidePath(): string {
    return `${this.file}.bad-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  }

  /**
   * Moves an unusable file out of the way. Never throws: a file that cannot be moved (locked on
   * Windows, a bind-mounted file: EBUSY) is copied instead, and one that cannot be copied either is
   * only logged; the server starts in any case.
   */
  private async keepAside(reason: string): Promise<'moved' | 'copied' | 'failed'> {
    const aside = this.asidePath();
    try {
      await fs.rename(this.file, aside);
      this.log.warn(`the status file ${this.file} could not be used (${reason}); kept it as ${aside} and started with an empty one`);
      return 'moved';
    } catch (err) {
      this.log.warn(`the status file ${this.file} could not be used (${reason}) nor moved aside (${(err as Error).message})`);
    }
    return (await this.copyAside(`${reason}; it will be overwritten`)) ? 'copied' : 'failed';
  }

  private async copyAside(reason: string): Promise<boolean> {
    const aside = this.asidePath();
    try {
      await fs.copyFile(this.file, aside);
      this.log.warn(`kept a copy of the status file as ${aside} (${reason})`);
      return true;
    } catch (err) {
      this.log.error(`could not keep a copy of the status file ${this.file} as ${aside} (${reason}): ${(err as Error).message}`);
      return false;
    }
  }

  private async startWatching(): Promise<void> {
    await fs.mkdir(path.dirname(this.file), { recursive: true });
    // Watch the exact path: write-file-atomic renames a temp file over it, and a folder watch
    // would report those temp files too.
    // Polling one file is cheap and survives the inode swap of every atomic rename; fs.watch-based
    // watching misses an edit that lands while it re-attaches after our own rename.
    const watcher = chokidar.watch(this.file, { ignoreInitial: true, persistent: true, usePolling: true, interval: 250 });
    this.watcher = watcher;
    const onChange = (): void => {
      void this.onFileChanged();
    };
    watcher.on('add', onChange).on('change', onChange);
    watcher.on('error', (err) => this.log.warn(`watching ${this.file} failed: ${(err as Error).message}`));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  }

  private async onFileChanged(): Promise<void> {
    if (this.closed) return;
    let text: string;
    try {
      text = await readText(this.file);
    } catch {
      return; // removed between the event and the read: our next write recreates it
    }
    await this.applyEdit(text);
  }

  /** Applies the file's content as another process's edit, unless it is ours or already applied. */
  private async applyEdit(text: string): Promise<void> {
    if (this.closed || this.known.includes(hash(text))) return;
    this.remember(text); // at once: the watcher and a write may both look at the same edit
    const parsed = await this.parse(text, { atStartup: false });
    if (!parsed) this.unusableEdit = hash(text);
    if (this.closed || !parsed) return;
    const { entries } = parsed;
    this.log.info(`the status file was edited by another process; loaded ${entries.size} entries from it`);
    this.emit('external', entries);
  }
}

/** How long, and how many times, a write waits for another process to finish writing the file in place. */
const EDIT_WAIT_MS = 50;
const EDIT_WAITS = 10;

const hash = (text: string): string => crypto.createHash('sha1').update(text).digest('hex');

/** The entries of a status file, and what makes the file differ from them (empty when nothing does). */
interface ParsedFile {
  entries: Map<string, Entry>;
  changes: string[];
}

/** The first ten items, and how many more there are: a log line that stays a line. */
const listed = (items: string[], separator: string): string => items.slice(0, 10).join(separator) + (items.length > 10 ? `${separator}and ${items.length - 10} more` : '');

/**
 * The file's text. An editor on Windows may save it with a byte-order mark (Notepad's "UTF-8 with
 * BOM"), or as UTF-16 (PowerShell 5's `Out-File`): JSON.parse refuses both as they come.
 */
async function readText(file: string): Promise<string> {
  const data = await fs.readFile(file);
  if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) return data.subarray(3).toString('utf8');
  if (data[0] === 0xff && data[1] === 0xfe) return data.subarray(2).toString('utf16le');
  return data.toString('utf8');
}
