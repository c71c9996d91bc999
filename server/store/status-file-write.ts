/**
 * Writing the status file: debounced atomic rewrites (write-file-atomic: a temp file `<file>.<n>`,
 * renamed over the file, so a reader never sees it half-written), a progress-only change at most
 * every `writeIntervalMs` (250 ms: ≤ 4 writes a second), a state change at once and fsynced, and
 * the temp files a killed write left behind removed at start-up.
 *
 * What a write costs grows with the file, not with what changed: so a large file is written less
 * often (at most `maxBytesPerSecond` of it, state changes included: 100,000 entries are 34 MB, and
 * rewriting them 4 times a second was 0.9 cores and 136 MB/s), and each entry's JSON is kept from
 * one write to the next (entries are immutable: a changed one is a new object), so a write
 * serializes only the entries that changed. Before each write the file is
 * looked at (`look`, from status-file-watch.ts), and a write waits while another process is
 * writing the file in place.
 *
 * The writer is one state machine; every transition is in `on()`.
 *
 *   idle              Nothing to write.
 *                       change → scheduled
 *   scheduled         A write is due when its timer runs out: at once for a state change, else what
 *                     is left of writeIntervalMs since the last write began.
 *                       change: a state change where only progress was pending → scheduled (at once)
 *                       timer, flush() → looking
 *   looking           Reading the file for an edit made since the watcher last polled, applied before
 *                     we write (a change made meanwhile, the edit's own included, is in this write).
 *                       file whole, or EDIT_WAITS waits used up → writing
 *                       file half-written (another process writing it in place) → waiting-for-edit
 *                       the look threw (a listener of the edit) → scheduled, logged as a failed write
 *   waiting-for-edit  Giving that process EDIT_WAIT_MS to finish: renamed over now, the rest of its
 *                     write would go to the old, unlinked file.
 *                       timer → looking (one more of the EDIT_WAITS)
 *                       change, once a state change is pending → looking at once (it counts as one)
 *                       flush() waits the timer out: the moment given to the edit is not skipped
 *   writing           The content is taken; write-file-atomic is at work.
 *                       change → writing+dirty
 *                       done or failed → idle (a failure is logged; memory stays right, the next
 *                       change retries: a full disk must not take the server down)
 *   writing+dirty     The same, with changes made since the content was taken.
 *                       change: noted (a state change makes the next write durable)
 *                       done or failed → scheduled
 *   closed            close() flushed until idle, then entered it; nothing is written any more.
 *
 * close() is no state of its own: its final write looks for another process's edit first, like
 * every write (one made since the watcher last polled, just before a shutdown, is applied, not
 * renamed over), so until it is done the states above run as usual.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import type { Logger } from '../logger';
import type { Entry } from '../protocol/wire';

/** How a change reaches the file: state changes at once, progress at most every writeIntervalMs. */
export type Urgency = 'now' | 'soon';

/** See the first comment. `urgent`: the changes not yet written include a state change. */
export type WriterState =
  | { name: 'idle' }
  | { name: 'scheduled'; urgent: boolean; timer: NodeJS.Timeout }
  | { name: 'looking'; urgent: boolean; editWaits: number }
  | { name: 'waiting-for-edit'; urgent: boolean; editWaits: number; timer: NodeJS.Timeout }
  | { name: 'writing' }
  | { name: 'writing+dirty'; urgent: boolean }
  | { name: 'closed' };

type WriterEvent =
  | { type: 'change'; urgency: Urgency }
  /** The timer of `scheduled` or `waiting-for-edit` ran out, or flush() wants a scheduled write now. */
  | { type: 'due' }
  | { type: 'looked'; halfWritten: boolean }
  | { type: 'look-failed' }
  | { type: 'written' }
  | { type: 'close' };

/** How long, and how many times, a write waits for another process to finish writing the file in place. */
export const EDIT_WAIT_MS = 50;
export const EDIT_WAITS = 10;

export interface StatusFileWriterOptions {
  file: string;
  log: Logger;
  /** Least time between two progress-only writes of the file. */
  writeIntervalMs: number;
  /** Bytes of status file written a second at most, on average: a large file waits longer between writes. @default 8 MiB */
  maxBytesPerSecond?: number;
  /** What the file is to hold: the entries keyed by dest, in this order. */
  entries: () => ReadonlyMap<string, Entry>;
  /** Looks at the file just before a write; true while it holds another process's half-written edit. */
  look: () => Promise<boolean>;
  /** Called with each content as it is taken to be written, before the file changes. */
  writing: (content: string) => void;
  /** Called once each write is done or failed, before the writer moves on. Must not reject. @default nothing */
  afterWrite?: () => Promise<void>;
}

export interface StatusFileWriter {
  readonly state: WriterState['name'];
  /** Whether the last write of the file failed (a full disk): memory is right, the file behind. */
  readonly failed: boolean;
  /** The entries changed: write them, at once or within writeIntervalMs. */
  changed(urgency: Urgency): void;
  /** Writes pending changes now and waits for them to be on disk. */
  flush(): Promise<void>;
  /** Flushes, then writes no more. Idempotent. */
  close(): Promise<void>;
}

export function createStatusFileWriter(options: StatusFileWriterOptions): StatusFileWriter {
  const { file, log, writeIntervalMs } = options;
  let state: WriterState = { name: 'idle' };
  const maxBytesPerSecond = options.maxBytesPerSecond ?? 8 * 1024 * 1024;
  let lastWriteAt = 0;
  /** Least time between two writes, from the size of the last one. */
  let gapMs = 0;
  const serialize = createSerializer();
  let failed = false;
  let closing: Promise<void> | undefined;
  /** flush() waiting for the state to change. */
  let waiters: Array<() => void> = [];

  const enter = (next: WriterState): void => {
    state = next;
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
  };
  const transitioned = (): Promise<void> => new Promise((resolve) => waiters.push(resolve));

  const schedule = (urgent: boolean): void => {
    const wait = Math.max(0, lastWriteAt + (urgent ? gapMs : Math.max(gapMs, writeIntervalMs)) - Date.now());
    enter({ name: 'scheduled', urgent, timer: setTimeout(() => on({ type: 'due' }), wait) });
  };

  const look = (urgent: boolean, editWaits: number): void => {
    enter({ name: 'looking', urgent, editWaits });
    options.look().then(
      (halfWritten) => on({ type: 'looked', halfWritten }),
      (err: unknown) => {
        failedWith(err);
        on({ type: 'look-failed' });
      },
    );
  };

  const write = (urgent: boolean): void => {
    const content = serialize(options.entries());
    // Entered before anything else is called: a change made from here on is one this write lacks.
    enter({ name: 'writing' });
    options.writing(content);
    lastWriteAt = Date.now();
    gapMs = (content.length / maxBytesPerSecond) * 1000;
    // A state change is fsynced; a progress-only rewrite need not be (a resume trusts the .part on
    // disk, not the byte count), and an fsync per progress tick stalls behind the download's own
    // dirty pages. Either way the rename keeps the file whole.
    fs.mkdir(path.dirname(file), { recursive: true })
      .then(() => writeFileAtomic(file, content, { mode: 0o600, fsync: urgent }))
      .then(() => {
        failed = false;
      }, failedWith)
      .then(() => options.afterWrite?.())
      .then(() => on({ type: 'written' }));
  };

  const failedWith = (err: unknown): void => {
    failed = true;
    log.error(`could not write the status file ${file}: ${(err as Error).message}`);
  };

  /** Every transition of the writer. */
  const on = (event: WriterEvent): void => {
    const s = state;
    const now = event.type === 'change' && event.urgency === 'now';
    switch (s.name) {
      case 'idle':
        if (event.type === 'change') schedule(now);
        else if (event.type === 'close') enter({ name: 'closed' });
        return;
      case 'scheduled':
        if (now && !s.urgent) {
          clearTimeout(s.timer);
          schedule(true);
        } else if (event.type === 'due') {
          clearTimeout(s.timer);
          look(s.urgent, 0);
        }
        return;
      case 'looking':
        if (event.type === 'change') s.urgent ||= now;
        else if (event.type === 'look-failed') schedule(s.urgent);
        else if (event.type === 'looked') {
          if (event.halfWritten && s.editWaits < EDIT_WAITS) {
            enter({ name: 'waiting-for-edit', urgent: s.urgent, editWaits: s.editWaits + 1, timer: setTimeout(() => on({ type: 'due' }), EDIT_WAIT_MS) });
          } else write(s.urgent);
        }
        return;
      case 'waiting-for-edit':
        if (event.type === 'change') s.urgent ||= now;
        // As before the split: a change while a state change is pending looks again at once
        // rather than at the timer; the look counts as one of the EDIT_WAITS all the same.
        if (event.type === 'due' || (event.type === 'change' && s.urgent)) {
          clearTimeout(s.timer);
          look(s.urgent, s.editWaits);
        }
        return;
      case 'writing':
        if (event.type === 'change') enter({ name: 'writing+dirty', urgent: now });
        else if (event.type === 'written') enter({ name: 'idle' });
        return;
      case 'writing+dirty':
        if (event.type === 'change') s.urgent ||= now;
        else if (event.type === 'written') schedule(s.urgent);
        return;
      case 'closed':
        return;
    }
  };

  const flush = async (): Promise<void> => {
    for (;;) {
      if (state.name === 'idle' || state.name === 'closed') return;
      // A scheduled write is made now. Not so a wait for a half-written edit: it runs out first.
      if (state.name === 'scheduled') on({ type: 'due' });
      await transitioned();
    }
  };

  return {
    get state() {
      return state.name;
    },
    get failed() {
      return failed;
    },
    changed: (urgency) => on({ type: 'change', urgency }),
    flush,
    close: () =>
      (closing ??= (async () => {
        // Checked and entered with nothing awaited in between: a change made after the last
        // write went out is written too.
        do {
          await flush();
        } while (state.name !== 'idle' && state.name !== 'closed');
        on({ type: 'close' });
      })()),
  };
}

/**
 * `JSON.stringify(Object.fromEntries(entries), null, 2) + '\n'`, the same text, with each entry's
 * part remembered for as long as the entry object lives.
 */
function createSerializer(): (entries: ReadonlyMap<string, Entry>) => string {
  const parts = new WeakMap<Entry, { dest: string; text: string }>();
  return (entries) => {
    if (entries.size === 0) return '{}\n';
    const out: string[] = [];
    for (const [dest, entry] of entries) {
      let part = parts.get(entry);
      if (part === undefined || part.dest !== dest) {
        part = { dest, text: `  ${JSON.stringify(dest)}: ${JSON.stringify(entry, null, 2).replace(/\n/g, '\n  ')}` };
        parts.set(entry, part);
      }
      out.push(part.text);
    }
    return `{\n${out.join(',\n')}\n}\n`;
  };
}

/**
 * write-file-atomic writes `<file>.<number>` and renames it over the file; a process killed
 * between the two (kill -9, a crash, a power cut) leaves the temp file behind, one per kill.
 */
export async function removeStaleTemps(file: string, log: Logger): Promise<void> {
  const dir = path.dirname(file);
  const base = `${path.basename(file)}.`;
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  const stale = names.filter((n) => n.startsWith(base) && /^\d+$/.test(n.slice(base.length)));
  for (const name of stale) await fs.rm(path.join(dir, name), { force: true });
  if (stale.length > 0) log.info(`removed ${stale.length} temporary file(s) left by an interrupted write of ${file}`);
}
