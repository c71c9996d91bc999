/**
 * The sha256 computed while a segmented download is written (server/disk/prefix-hash.ts): the
 * hasher on its own (it reads no byte it was not told is written, starts over when the file or
 * its prefix is not the one it hashed, and a failed worker gives no digest).
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PrefixHash, prefixHashFaults } from '../../server/disk/prefix-hash';
import { tempDir, waitFor } from '../helpers/harness';

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

describe('PrefixHash', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => ({ dir, cleanup } = await tempDir()));
  afterEach(async () => {
    delete prefixHashFaults.failAt;
    await cleanup();
  });

  test('hashes exactly the bytes it is told are written, and its digest is the sha256 of the file', async () => {
    const file = path.join(dir, 'a.part');
    const data = crypto.randomBytes(8 * MiB + 7);
    const handle = await fs.open(file, 'w+');
    await handle.truncate(data.length); // sparse, like a segmented .part
    const hash = new PrefixHash();
    try {
      await hash.follow(file, handle, 0);
      await handle.write(data, 0, 3 * MiB + 1, 0);
      hash.advance(3 * MiB + 1);
      await waitFor(() => hash.hashed === 3 * MiB + 1, 'the written prefix to be hashed');
      expect(hash.covers(data.length)).toBe(false);
      expect(await hash.digest(data.length)).toBeUndefined(); // not every byte is written yet
      // Zeros beyond the prefix were never read: the rest is written now, and the digest is right.
      await handle.write(data, 3 * MiB + 1, data.length - (3 * MiB + 1), 3 * MiB + 1);
      hash.ended(data.length);
      expect(hash.covers(data.length)).toBe(true);
      expect(await hash.digest(data.length)).toBe(sha(data));
      expect(hash.tailBytes).toBe(data.length - (3 * MiB + 1));
    } finally {
      await hash.close();
      await handle.close();
    }
  });

  test('starts over when the prefix it hashed is no longer all written, or the file is another one', async () => {
    const file = path.join(dir, 'b.part');
    const first = crypto.randomBytes(4 * MiB);
    await fs.writeFile(file, first);
    const hash = new PrefixHash();
    let handle = await fs.open(file, 'r+');
    try {
      await hash.follow(file, handle, 3 * MiB);
      await waitFor(() => hash.hashed === 3 * MiB, 'three megabytes hashed');
      // A map saved before the last sync says less is written: those bytes will be written again.
      const second = Buffer.concat([first.subarray(0, MiB), crypto.randomBytes(3 * MiB)]);
      await hash.follow(file, handle, MiB);
      expect(hash.hashed).toBeLessThanOrEqual(MiB);
      await handle.write(second, MiB, 3 * MiB, MiB);
      hash.ended(second.length);
      expect(await hash.digest(second.length)).toBe(sha(second));

      // A new .part under the same name (a file changed upstream and started over).
      await handle.close();
      await fs.rm(file);
      const third = crypto.randomBytes(2 * MiB);
      await fs.writeFile(file, third);
      handle = await fs.open(file, 'r+');
      await hash.follow(file, handle, third.length);
      hash.ended(third.length);
      expect(await hash.digest(third.length)).toBe(sha(third));
    } finally {
      await hash.close();
      await handle.close();
    }
  });

  test.each(['throw', 'exit'] as const)('a worker that fails (%s) gives no digest, never a wrong one', async (how) => {
    prefixHashFaults.failAt = { at: MiB, how };
    const file = path.join(dir, 'c.part');
    const data = crypto.randomBytes(3 * MiB);
    await fs.writeFile(file, data);
    const handle = await fs.open(file, 'r');
    const hash = new PrefixHash();
    try {
      await hash.follow(file, handle, data.length);
      hash.ended(data.length);
      expect(await hash.digest(data.length)).toBeUndefined();
      expect(hash.covers(data.length)).toBe(false);
    } finally {
      await hash.close();
      await handle.close();
    }
  });
});
