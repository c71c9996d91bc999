import crypto from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { ChunkWriter } from '../../server/disk/chunk-writer';

/** A file in memory whose writev accepts at most `limit` bytes a call, as a nearly full disk may. */
function shortWriter(size: number, limit: number, failAt?: number): { handle: FileHandle; data: Buffer; calls: number[]; batches: number[] } {
  const data = Buffer.alloc(size);
  /** Bytes each writev call accepted, and how many buffers each was given. */
  const calls: number[] = [];
  const batches: number[] = [];
  const handle = {
    async writev(buffers: Buffer[], position: number) {
      batches.push(buffers.length);
      await new Promise((r) => setImmediate(r));
      if (failAt !== undefined && position >= failAt) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      let n = 0;
      for (const b of buffers) {
        const take = Math.min(b.length, limit - n);
        b.copy(data, position + n, 0, take);
        n += take;
        if (n >= limit) break;
      }
      calls.push(n);
      return { bytesWritten: n, buffers };
    },
  } as unknown as FileHandle;
  return { handle, data, calls, batches };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('short writes are continued where they stopped; bytes land at the right offsets', async () => {
  const source = crypto.randomBytes(200_000);
  const f = shortWriter(300_000, 7_000);
  const w = new ChunkWriter(f.handle, 50_000);
  for (let i = 0; i < source.length; ) {
    const n = 1 + Math.floor(Math.random() * 9000);
    w.push(source.subarray(i, i + n));
    i += n;
    if (Math.random() < 0.3) await tick(); // chunks arrive while writes are under way, as from a socket
  }
  await w.flush();
  expect(w.written).toBe(source.length);
  expect(f.data.subarray(50_000, 250_000).equals(source)).toBe(true);
  expect(f.data.subarray(0, 50_000).equals(Buffer.alloc(50_000))).toBe(true); // nothing before `start`
  expect(f.calls.every((n) => n <= 7_000)).toBe(true);
});

test('chunks that arrive during a write gather into the next one; a lone chunk is written at once', async () => {
  const f = shortWriter(200_000, 200_000);
  const w = new ChunkWriter(f.handle, 0);
  w.push(Buffer.alloc(100, 1));
  for (let i = 0; i < 999; i++) w.push(Buffer.alloc(100, 2)); // all while the first writev is in flight
  await w.flush();
  expect(f.batches).toEqual([1, 999]); // one writev for the 999, not 999 writes
  expect(w.written).toBe(100_000);

  w.push(Buffer.alloc(10, 3)); // no flush: a slow download's bytes still reach the disk
  while (w.written < 100_010) await tick();
  expect(f.batches).toEqual([1, 999, 1]);
  expect(f.data.subarray(100_000, 100_010).equals(Buffer.alloc(10, 3))).toBe(true);
});

test('onSettled follows every batch, after `written` counts it', async () => {
  const f = shortWriter(100_000, 100_000);
  const seen: Array<{ err: unknown; written: number }> = [];
  const w: ChunkWriter = new ChunkWriter(f.handle, 0, { onSettled: (err) => seen.push({ err, written: w.written }) });
  w.push(Buffer.alloc(1_000));
  w.push(Buffer.alloc(2_000));
  w.push(Buffer.alloc(3_000));
  await w.flush();
  expect(seen).toEqual([
    { err: undefined, written: 1_000 },
    { err: undefined, written: 6_000 },
  ]);
});

test('a write error (ENOSPC) surfaces from flush and stops further pushes', async () => {
  const f = shortWriter(100_000, 100_000, 20_000);
  const settled: unknown[] = [];
  const w = new ChunkWriter(f.handle, 0, { onSettled: (err) => settled.push(err) });
  w.push(Buffer.alloc(20_000, 1));
  while (w.written < 20_000) await tick();
  w.push(Buffer.alloc(10_000, 2));
  await expect(w.flush()).rejects.toMatchObject({ code: 'ENOSPC' });
  expect(w.written).toBe(20_000);
  expect(settled).toEqual([undefined, expect.objectContaining({ code: 'ENOSPC' })]);
  expect(() => w.push(Buffer.alloc(1))).toThrow('no space left');
});

test('an onSettled that throws fails the writer (at the next push or flush), not the process', async () => {
  const f = shortWriter(100_000, 100_000);
  const w = new ChunkWriter(f.handle, 0, {
    onSettled: () => {
      throw new Error('the caller broke');
    },
  });
  w.push(Buffer.alloc(1_000));
  await expect(w.flush()).rejects.toThrow('the caller broke');
  expect(() => w.push(Buffer.alloc(1))).toThrow('the caller broke');
});
