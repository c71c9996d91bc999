/**
 * A large status file costs in proportion to what changed, not to its size, at every write: its
 * writes are spaced so that at most `maxBytesPerSecond` of it is written (state changes too), and
 * the text is the same JSON as ever (pretty-printed, keyed by dest), however it was assembled.
 * (The measured figures, 10,000 entries with 4 downloads: `npm run bench -- --only bigstatus`.)
 *
 * Checked to fail before: the second state change of a 600 kB file was written 2 ms after the
 * first (at once, whatever the size).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { createEntry, patchEntry } from '../../server/store/entry';
import { createStatusFileWriter } from '../../server/store/status-file-write';
import type { Entry } from '../../server/protocol/wire';
import { captureLogger, tempDir, waitFor } from '../helpers/harness';

test('a large file is written at most maxBytesPerSecond, state changes included; its text is the usual JSON', async () => {
  const { dir, cleanup } = await tempDir('md-scale-');
  try {
    const entries = new Map<string, Entry>();
    for (let i = 0; i < 2000; i++) {
      const e = createEntry({ dest: `loras/m${i}.bin`, folder: 'loras', filename: `m${i}.bin`, url: `https://example.com/${'p'.repeat(100)}/${i}`, status: 'completed' });
      entries.set(e.dest, e);
    }
    const file = path.join(dir, 'status.json');
    const writes: Array<{ at: number; bytes: number }> = [];
    const writer = createStatusFileWriter({
      file,
      log: captureLogger(),
      writeIntervalMs: 10,
      maxBytesPerSecond: 1024 * 1024,
      entries: () => entries,
      look: async () => false,
      writing: (content) => writes.push({ at: Date.now(), bytes: content.length }),
    });
    writer.changed('now');
    await waitFor(() => writes.length === 1, 'the first write');
    const first = writes[0]!;
    expect(first.bytes).toBeGreaterThan(500_000);
    const e0 = entries.get('loras/m0.bin')!;
    entries.set(e0.dest, patchEntry(e0, { status: 'error', error: { code: 'X', message: 'x' } }));
    writer.changed('now');
    await waitFor(() => writes.length === 2, 'the second write', 5000);
    // The second state change waited out the first write's share of the byte budget.
    expect(writes[1]!.at - first.at).toBeGreaterThanOrEqual((first.bytes / (1024 * 1024)) * 1000 - 20);
    await writer.close();
    const text = await fs.readFile(file, 'utf8');
    expect(text).toBe(JSON.stringify(Object.fromEntries(entries), null, 2) + '\n');
  } finally {
    await cleanup();
  }
});
