/**
 * The status file as a whole: what is done at start-up, and in which order, with the three parts
 * that own the file between them — reading it (status-file-read.ts), writing it (status-file-write.ts,
 * the writer's state machine) and watching it for edits by another process (status-file-watch.ts).
 * It knows nothing of the entries' meaning: the store hands it the entries to write and takes the
 * entries an edit holds.
 */
import type { Logger } from '../logger';
import type { Entry } from '../protocol/wire';
import { readAtStartup } from './status-file-read';
import { createEditWatch } from './status-file-watch';
import { createStatusFileWriter, removeStaleTemps, type Urgency } from './status-file-write';

export interface StatusFileOptions {
  file: string;
  log: Logger;
  /** Least time between two progress-only writes of the file. */
  writeIntervalMs: number;
  /** Watch the file for edits by other processes. */
  watch: boolean;
  /** Entries whose `dest` this refuses (one that would leave MODELS_DIR) are dropped. */
  isValidDest: (dest: string) => boolean;
  /** The entries the file is to hold, keyed by dest. */
  entries: () => ReadonlyMap<string, Entry>;
  /** The file was edited by another process; the entries it now holds. */
  onEdit: (entries: Map<string, Entry>) => void;
}

export interface StatusFile {
  /**
   * Start-up: removes the temp files of a killed write, reads the file (one that cannot be used is
   * kept aside, bad entries dropped, all logged; never throws for content), hands its entries to
   * `take`, rewrites it at once when it differs from them, then starts watching it.
   */
  load(take: (entries: Map<string, Entry>) => void): Promise<void>;
  /** The entries changed: write them, at once (a state change) or within writeIntervalMs (progress). */
  changed(urgency: Urgency): void;
  /** Writes pending changes now and waits for them to be on disk. */
  flush(): Promise<void>;
  /** The final write, then no more writes, and the watch stopped. Idempotent. */
  close(): Promise<void>;
}

export function createStatusFile(options: StatusFileOptions): StatusFile {
  const { file, log, isValidDest } = options;
  const watch = createEditWatch({ file, log, isValidDest, enabled: options.watch, onEdit: options.onEdit });
  const writer = createStatusFileWriter({
    file,
    log,
    writeIntervalMs: options.writeIntervalMs,
    entries: options.entries,
    look: () => watch.look(),
    afterWrite: () => watch.afterWrite(),
    writing: (content) => watch.remember(content),
  });
  let closing: Promise<void> | undefined;

  return {
    async load(take) {
      await removeStaleTemps(file, log);
      const read = await readAtStartup({ file, log, isValidDest });
      if (read.text !== undefined) watch.remember(read.text); // what we started from is no edit
      take(read.entries);
      if (read.changes.length > 0) {
        // The file on disk must say what clients are shown (another process reads it too, and a
        // token must not stay on disk until the next download happens to rewrite it).
        writer.changed('now');
        await writer.flush();
        if (!writer.failed) log.info(`rewrote the status file ${file} to match the ${options.entries().size} entries served (${read.changes.join('; ')})`);
      }
      await watch.start();
    },
    changed: (urgency) => writer.changed(urgency),
    flush: () => writer.flush(),
    close: () =>
      (closing ??= (async () => {
        // The final write looks for another process's edit first, like every write: one made since
        // the watcher last polled (a shutdown right after it) is applied, not renamed over. Only
        // then does the watch stop.
        await writer.close();
        await watch.close();
      })()),
  };
}
