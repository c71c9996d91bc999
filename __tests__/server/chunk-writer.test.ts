import crypto from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { ChunkWriter } from '../../server/disk/chunk-writer';

/** A file in memory whose writev accepts at most `limit` bytes a call, as a nearly full disk may. */
function shortWriter(size: number, limit: number, failAt?: number): { handle: FileHandle; data: Buffer; calls: number[] } {
  const data = Buffer.alloc(size);
  const calls: number[] = [];
  const handle = {
    async writev(buffers: Buffer[], position: number) {
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
  return { handle, data, calls };
}

test('short writes are continued where they stopped; bytes land at the right offsets', async () => {
  const source = crypto.randomBytes(200_000);
  const f = shortWriter(300_000, 7_000);
  const w = new ChunkWriter(f.handle, 50_000, { highWaterMark: 64 * 1024 });
  for (let i = 0; i < source.length; ) {
    const n = 1 + Math.floor(Math.random() * 9000);
    if (!w.push(source.subarray(i, i + n))) await w.drained();
    i += n;
  }
  await w.flush();
  expect(w.written).toBe(source.length);
  expect(f.data.subarray(50_000, 250_000).equals(source)).toBe(true);
  expect(f.calls.every((n) => n <= 7_000)).toBe(true);
  expect(f.calls.length).toBeLessThan(source.length / 1000); // batched, not one write per chunk
});

test('a write error (ENOSPC) surfaces from flush and stops further pushes', async () => {
  const f = shortWriter(100_000, 100_000, 20_000);
  const w = new ChunkWriter(f.handle, 0);
  w.push(Buffer.alloc(20_000, 1));
  while (w.written < 20_000) await new Promise((r) => setImmediate(r));
  w.push(Buffer.alloc(10_000, 2));
  await expect(w.flush()).rejects.toMatchObject({ code: 'ENOSPC' });
  expect(w.written).toBe(20_000);
  expect(() => w.push(Buffer.alloc(1))).toThrow('no space left');
});
