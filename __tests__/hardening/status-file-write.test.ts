/**
 * The status file's writer (server/store/status-file-write.ts) on its own, its look at the file
 * before each write played by the test: the wait for an edit written in place, which a flush waits
 * out rather than skips, and which ends after EDIT_WAITS looks; a change made by the look (an edit
 * being applied) or during a write, never lost; a look that throws; nothing written after close().
 * (The same through a whole server, with real edits: status-file-edits.test.ts.)
 *
 * Checked to fail without the protection: with flush() making a wait for an edit due at once, the
 * first test wrote after 0 ms instead of 100; with the writer entering `writing` after handing the
 * content on rather than before, the change made at that moment was never written.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { createEntry } from '../../server/store/entry';
import { createStatusFileWriter, EDIT_WAIT_MS, EDIT_WAITS, type StatusFileWriter } from '../../server/store/status-file-write';
import type { Entry } from '../../server/protocol/wire';
import { captureLogger, tempDir } from '../helpers/harness';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

interface Rig {
  writer: StatusFileWriter;
  entries: Map<string, Entry>;
  file: string;
  log: ReturnType<typeof captureLogger>;
  /** How many times the writer looked at the file. */
  readonly looks: number;
  /** The content of each write, as it was taken. */
  writes: string[];
}

/** A writer whose n-th look (from 1) is `look(n)`: true for a half-written file. */
async function rig(look: (n: number, r: Rig) => boolean, onWrite: (n: number, r: Rig) => void = () => undefined): Promise<Rig> {
  const { dir, cleanup } = await tempDir('md-writer-');
  const log = captureLogger();
  const entries = new Map<string, Entry>();
  const file = path.join(dir, 'status.json');
  let looks = 0;
  const writes: string[] = [];
  const writer = createStatusFileWriter({
    file,
    log,
    writeIntervalMs: 100,
    entries: () => entries,
    look: async () => look(++looks, r),
    writing: (content) => {
      writes.push(content);
      onWrite(writes.length, r);
    },
  });
  const r: Rig = {
    writer,
    entries,
    file,
    log,
    get looks() {
      return looks;
    },
    writes,
  };
  cleanups.push(async () => {
    await writer.close();
    await cleanup();
  });
  return r;
}

const add = (r: Rig, name: string): void => {
  const dest = `loras/${name}`;
  r.entries.set(dest, createEntry({ dest, folder: 'loras', filename: name, url: `http://127.0.0.1:9/${name}` }));
};
const onDisk = async (r: Rig): Promise<string[]> => Object.keys(JSON.parse(await fs.readFile(r.file, 'utf8')) as object);

test('a write waits while the file is half-written, and a flush waits that out instead of writing over it', async () => {
  const r = await rig((n) => n <= 2);
  add(r, 'a.bin');
  const t0 = Date.now();
  r.writer.changed('now');
  await r.writer.flush();
  // Two waits of EDIT_WAIT_MS (a timer may fire up to a millisecond before Date.now() says so).
  expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * EDIT_WAIT_MS - 2);
  expect(r.looks).toBe(3);
  expect(r.writes).toHaveLength(1);
  expect(await onDisk(r)).toEqual(['loras/a.bin']);
  expect(r.writer.state).toBe('idle');
});

test(`a file that stays half-written is written over after ${EDIT_WAITS} waits`, async () => {
  const r = await rig(() => true);
  add(r, 'a.bin');
  r.writer.changed('soon');
  await r.writer.flush();
  expect(r.looks).toBe(EDIT_WAITS + 1);
  expect(await onDisk(r)).toEqual(['loras/a.bin']);
});

test('a change made while the file is looked at (an edit being applied) is in that write; one made during a write, in the next', async () => {
  const r = await rig(
    (n, rr) => {
      if (n === 1) {
        add(rr, 'from-edit.bin');
        rr.writer.changed('now');
      }
      return false;
    },
    (n, rr) => {
      if (n === 1) {
        add(rr, 'during-write.bin');
        rr.writer.changed('soon');
      }
    },
  );
  add(r, 'a.bin');
  r.writer.changed('soon');
  await r.writer.flush();
  expect(r.writes.map((c) => Object.keys(JSON.parse(c) as object))).toEqual([
    ['loras/a.bin', 'loras/from-edit.bin'],
    ['loras/a.bin', 'loras/from-edit.bin', 'loras/during-write.bin'],
  ]);
  expect(await onDisk(r)).toEqual(['loras/a.bin', 'loras/from-edit.bin', 'loras/during-write.bin']);
});

test('a look that throws is logged as a failed write, and the write is made again', async () => {
  const r = await rig((n) => {
    if (n === 1) throw new Error('a listener broke');
    return false;
  });
  add(r, 'a.bin');
  r.writer.changed('now');
  await r.writer.flush();
  expect(r.log.lines).toContain(`error could not write the status file ${r.file}: a listener broke`);
  expect(r.looks).toBe(2);
  expect(await onDisk(r)).toEqual(['loras/a.bin']);
  expect(r.writer.failed).toBe(false);
});

test('close() makes the final write (after a look), is the same promise for every caller, and nothing is written after it', async () => {
  const r = await rig(() => false);
  add(r, 'a.bin');
  r.writer.changed('soon');
  const closing = r.writer.close();
  expect(r.writer.close()).toBe(closing);
  await closing;
  expect([r.looks, r.writes.length, r.writer.state]).toEqual([1, 1, 'closed']);
  add(r, 'late.bin');
  r.writer.changed('now');
  await r.writer.flush();
  expect([r.looks, r.writes.length, r.writer.state]).toEqual([1, 1, 'closed']);
  expect(await onDisk(r)).toEqual(['loras/a.bin']);
});
