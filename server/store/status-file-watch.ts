/**
 * Edits of the status file by another process: the file is polled at its exact path, and also
 * looked at just before each of our writes (`look`), since a write would otherwise rename over an
 * edit the poll has not seen yet. An edit is applied through `onEdit`; our own writes and what we
 * started from are remembered (`remember`) and never taken for edits; an edit that cannot be used
 * (empty, cut short: another process writing the file in place) is ignored, and `look` says so, so
 * that the writer can give it a moment to be finished (the wait itself: status-file-write.ts).
 *
 * An edit made in place (`jq … > status.json`, Python's `open('w')`: the same file truncated and
 * written again) between that look and our rename would go with the file our rename replaces. So
 * the file looked at stays open until our write is done (`afterWrite`): an edit written into it
 * meanwhile is still read there, and applied. (An edit renamed into place in that moment is lost:
 * a rename replaces whatever holds the name; only a cooperating writer could avoid that.)
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import type { Stats } from 'node:fs';
import { decodeStatusBytes, parseStatusText, readStatusText, type ReadOptions } from './status-file-read';
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
  /**
   * Our write that followed the last look is done (or failed): an edit written in place into the
   * file that look read, after it read it, is applied now. Never rejects.
   */
  afterWrite(): Promise<void>;
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
  /** The file the last look read, kept open through our write, and what it was then. */
  let held: { handle: fs.FileHandle; stat: Stats } | undefined;
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

  const letGo = async (): Promise<void> => {
    const h = held;
    held = undefined;
    await h?.handle.close().catch(() => undefined);
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
      await letGo();
      let text: string;
      let handle: fs.FileHandle | undefined;
      try {
        handle = await fs.open(file, 'r');
        const stat = await handle.stat();
        text = decodeStatusBytes(await handle.readFile());
        held = { handle, stat };
      } catch {
        await handle?.close().catch(() => undefined);
        return false;
      }
      apply(text);
      return unusableEdit !== undefined && unusableEdit === hash(text);
    },

    async afterWrite() {
      const h = held;
      if (!h) return;
      try {
        const now = await h.handle.stat();
        const same = now.size === h.stat.size && now.mtimeMs === h.stat.mtimeMs && now.ctimeMs === h.stat.ctimeMs;
        if (!same && !closed) {
          const data = Buffer.alloc(now.size);
          const { bytesRead } = await h.handle.read(data, 0, now.size, 0);
          apply(decodeStatusBytes(data.subarray(0, bytesRead)));
        }
      } catch {
        // the edit could not be read: as before, the next look or poll sees what the file holds
      } finally {
        await letGo();
      }
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
        await letGo();
        await watcher?.close();
        watcher = undefined;
      })());
    },
  };
}
