/**
 * Edits of the status file by another process: the file is polled at its exact path, and also
 * looked at just before each of our writes (`look`), since a write would otherwise rename over an
 * edit the poll has not seen yet. An edit is applied through `onEdit`; our own writes and what we
 * started from are remembered (`remember`) and never taken for edits; an edit that cannot be used
 * (empty, cut short: another process writing the file in place) is ignored, and `look` says so, so
 * that the writer can give it a moment to be finished (the wait itself: status-file-write.ts).
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import { parseStatusText, readStatusText, type ReadOptions } from './status-file-read';
import type { Entry } from '../protocol/wire';

export interface EditWatchOptions extends ReadOptions {
  /** Watch the file for edits by other processes; when false, `look` finds none either. */
  enabled: boolean;
  /** Another process's edit, validated: the entries the file now holds. */
  onEdit: (entries: Map<string, Entry>) => void;
}

export interface EditWatch {
  /** Content that is no edit (what we start from, each of our writes). */
  remember(content: string): void;
  /**
   * Looks at the file now: applies an edit not seen yet; true while the file holds an edit that
   * could not be used (empty, cut short): one being written in place.
   */
  look(): Promise<boolean>;
  /** Starts polling the file; resolves once the watcher is ready. */
  start(): Promise<void>;
  /** Stops applying edits at once, then stops polling. Idempotent. */
  close(): Promise<void>;
}

/** How many hashes of recent contents are remembered: more than the writes made during one poll. */
const KNOWN = 8;

const hash = (text: string): string => crypto.createHash('sha1').update(text).digest('hex');

export function createEditWatch(options: EditWatchOptions): EditWatch {
  const { file, log, enabled, onEdit } = options;
  /** Hashes of our recent writes (and of edits already applied), so they are not taken for new edits. */
  const known: string[] = [];
  /**
   * The latest remembered content itself, hashed only when the next one replaces it: a look right
   * after our own write compares the file with it (a memcmp) instead of hashing megabytes.
   */
  let latest: string | undefined;
  /** The hash of the last edit that could not be used. */
  let unusableEdit: string | undefined;
  let watcher: FSWatcher | undefined;
  /** Set by close() before it awaits anything: from then on no edit is applied. */
  let closed = false;
  let closing: Promise<void> | undefined;

  const remember = (content: string): void => {
    if (latest !== undefined) {
      known.push(hash(latest));
      if (known.length > KNOWN) known.shift();
    }
    latest = content;
    unusableEdit = undefined; // our write replaces whatever half-written edit the file held
  };
  const isKnown = (text: string): boolean => text === latest || known.includes(hash(text));

  /** Applies the file's content as another process's edit, unless it is ours or already applied. */
  const apply = (text: string): void => {
    if (closed || isKnown(text)) return;
    remember(text); // at once: the watcher and a write may both look at the same edit
    const parsed = parseStatusText(text, options);
    if (!parsed.usable) {
      log.warn(`ignored an edit of ${file}: ${parsed.reason}`);
      unusableEdit = hash(text);
      return;
    }
    log.info(`the status file was edited by another process; loaded ${parsed.entries.size} entries from it`);
    onEdit(parsed.entries);
  };

  const onFileChanged = async (): Promise<void> => {
    if (closed) return;
    let text: string;
    try {
      text = await readStatusText(file);
    } catch {
      return; // removed between the event and the read: our next write recreates it
    }
    apply(text);
  };

  return {
    remember,

    // Another process's edit that the poll has not reported yet would be overwritten by our next
    // write and lost: while downloads run we rewrite the file every few hundred ms. So the writer
    // looks first, and the edit is applied (the downloader merges it) before it writes.
    async look() {
      if (!enabled || closed) return false;
      let text: string;
      try {
        text = await readStatusText(file);
      } catch {
        return false;
      }
      apply(text);
      return unusableEdit !== undefined && unusableEdit === hash(text);
    },

    async start() {
      if (!enabled || closed) return;
      await fs.mkdir(path.dirname(file), { recursive: true });
      if (closed) return;
      // Watch the exact path: write-file-atomic renames a temp file over it, and a folder watch
      // would report those temp files too.
      // Polling one file is cheap and survives the inode swap of every atomic rename; fs.watch-based
      // watching misses an edit that lands while it re-attaches after our own rename.
      const w = chokidar.watch(file, { ignoreInitial: true, persistent: true, usePolling: true, interval: 250 });
      watcher = w;
      const onChange = (): void => {
        void onFileChanged();
      };
      w.on('add', onChange).on('change', onChange);
      w.on('error', (err) => log.warn(`watching ${file} failed: ${(err as Error).message}`));
      await new Promise<void>((resolve) => w.once('ready', () => resolve()));
    },

    close() {
      closed = true;
      return (closing ??= (async () => {
        await watcher?.close();
        watcher = undefined;
      })());
    },
  };
}
