import type { FileHandle } from 'node:fs/promises';
import { WriteBehind } from '../../server/disk/write-behind';

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
  const behind = new WriteBehind(f.file, { every: 1000 });
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

test('what a sync covers is published only once it succeeded; a failed one publishes nothing', async () => {
  const f = fakeFile();
  let published: number[] = [];
  let counter = 0;
  const behind = new WriteBehind(f.file, { every: 10, onSync: () => ((at) => () => published.push(at))(++counter) });
  behind.wrote(10);
  expect(published).toEqual([]); // the sync is under way: its counts may not be claimed yet
  f.finish();
  await behind.settled();
  expect(published).toEqual([1]);

  const failing = { datasync: () => Promise.reject(Object.assign(new Error('no space'), { code: 'ENOSPC' })) } as unknown as FileHandle;
  published = [];
  const broken = new WriteBehind(failing, { every: 10, onSync: () => () => published.push(1) });
  broken.wrote(10);
  await broken.settled();
  expect(published).toEqual([]);
});

test('on a slow link a sync also comes once bytes have waited maxAgeMs', async () => {
  const f = fakeFile();
  const behind = new WriteBehind(f.file, { every: 1_000_000, maxAgeMs: 0 });
  behind.wrote(0);
  expect(f.calls()).toBe(0); // nothing to sync
  behind.wrote(5);
  expect(f.calls()).toBe(1);
  f.finish();
  await behind.settled();
});
