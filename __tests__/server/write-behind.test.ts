import type { FileHandle } from 'node:fs/promises';
import { WriteBehind } from '../../server/downloader/write-behind';

/** A file whose datasync calls are counted and finish when the test says. */
function fakeFile(): { file: FileHandle; calls: () => number; finish: () => void } {
  const pending: Array<() => void> = [];
  let calls = 0;
  const file = {
    datasync: () => {
      calls++;
      return new Promise<void>((resolve) => pending.push(resolve));
    },
  } as unknown as FileHandle;
  return { file, calls: () => calls, finish: () => pending.splice(0).forEach((r) => r()) };
}

test('syncs every N bytes, one at a time, and settled() waits for the one in flight', async () => {
  const f = fakeFile();
  const behind = new WriteBehind(f.file, 1000);
  behind.wrote(999);
  expect(f.calls()).toBe(0);
  behind.wrote(1);
  expect(f.calls()).toBe(1);
  behind.wrote(5000); // one is in flight: no second one on top of it
  expect(f.calls()).toBe(1);
  let settled = false;
  const waiting = behind.settled().then(() => (settled = true));
  await Promise.resolve();
  expect(settled).toBe(false);
  f.finish();
  await waiting;
  expect(settled).toBe(true);
  behind.wrote(1000);
  expect(f.calls()).toBe(2);
  f.finish();
  await behind.settled();
});
