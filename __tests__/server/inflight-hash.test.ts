/**
 * The sha256 computed while a segmented download is written (server/disk/prefix-hash.ts): the
 * hasher on its own (it reads no byte it was not told is written, starts over when the file or
 * its prefix is not the one it hashed, and a failed worker gives no digest), and downloads through
 * a real server: only the tail is left to hash after the last byte, a wrong sha256 still fails,
 * a failing worker falls back to the full pass, a restart resumes exact, and a download without a
 * sha256 gets the one computed on its entry.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import type { PartMeta } from '../../server/disk/part-file';
import { PrefixHash, prefixHashFaults } from '../../server/disk/prefix-hash';
import { spawnServer, type ChildServer } from '../helpers/child-server';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';

const KiB = 1024;
const MiB = 1024 * KiB;
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

describe('downloads', () => {
  let files: FileServer;
  let srv: TestServer | undefined;
  const children: ChildServer[] = [];
  beforeEach(async () => {
    files = await startFileServer();
  });
  afterEach(async () => {
    delete prefixHashFaults.failAt;
    for (const c of children.splice(0)) await c.kill('SIGKILL');
    await srv?.stop();
    srv = undefined;
    await files.close();
  });

  // Segments of 256 KiB at least, so pieces of 4 MiB: a 24 MiB file is taken in pieces, lowest first.
  const start = (options: { dir?: string } = {}): Promise<TestServer> => startTestServer({ CONNECTIONS: '4' }, { ...options, downloader: { minSegmentBytes: 256 * KiB } });
  const settle = (s: TestServer, id: string, timeoutMs = 30_000): Promise<Entry> =>
    waitFor(() => {
      const e = s.store.getById(id);
      return e?.status === 'completed' || e?.status === 'error' ? e : undefined;
    }, `download ${id} to finish`, timeoutMs);
  const add = async (s: TestServer, body: Record<string, unknown>): Promise<string> => {
    const res = await s.api('POST', '/api/downloads', body);
    expect(res.status).toBe(202);
    return res.body.download.id as string;
  };
  const tailOf = (lines: string[]): number | undefined => {
    const m = lines.map((l) => /sha256 computed while downloading; (\d+) bytes were left to hash after the last byte/.exec(l)).find(Boolean);
    return m ? Number(m[1]) : undefined;
  };
  /** A log line saying the whole file is (to be) hashed after the transfer. */
  const fullPass = (lines: string[]): boolean => lines.some((l) => / whole file will be hashed|hashing the whole file$/.test(l));

  test('a segmented download with its sha256 is hashed while it downloads: only the tail is left after the last byte', async () => {
    srv = await start();
    const f = files.addFile('/inflight.bin', { size: 24 * MiB + 5, throttle: 4 * MiB });
    const verifying: number[] = [];
    srv.store.on('update', (e) => {
      if (e.dest === 'loras/inflight.bin' && e.status === 'verifying') verifying.push(e.progress);
    });
    const id = await add(srv, { url: f.url, folder: 'loras', sha256: f.sha256 });
    const done = await settle(srv, id);
    expect(done).toMatchObject({ status: 'completed', sha256: f.sha256, downloaded: f.size });
    expect(sha(await fs.readFile(path.join(srv.modelsDir, 'loras/inflight.bin')))).toBe(f.sha256);
    // The bytes read back after the last byte landed: the last pieces (well under a MiB as a rule;
    // a third of the file leaves room for a starved worker), where a pass would read all 24 MiB and
    // a range per connection would leave three quarters of them.
    const tail = tailOf(srv.log.lines);
    expect(tail).toBeDefined();
    expect(tail!).toBeLessThanOrEqual(8 * MiB);
    expect(fullPass(srv.log.lines)).toBe(false);
    expect(verifying[0]).toBeGreaterThanOrEqual(Math.floor(((f.size - 8 * MiB) / f.size) * 100)); // no pass from 0 %
    // Pieces, lowest first: more requests than connections, the first four at the start of the file.
    const starts = files.requests.filter((r) => r.path === '/inflight.bin' && r.range !== 'bytes=0-0').map((r) => Number(/^bytes=(\d+)-/.exec(r.range!)![1]));
    expect(starts.length).toBeGreaterThan(4);
    expect(Math.max(...starts.slice(0, 4))).toBeLessThan(16 * MiB);
  });

  test('a wrong sha256 still ends in SHA256_MISMATCH, confirmed by a full pass, with no file left', async () => {
    srv = await start();
    const f = files.addFile('/wrong.bin', { size: 20 * MiB, throttle: 8 * MiB });
    const id = await add(srv, { url: f.url, folder: 'loras', sha256: 'b'.repeat(64) });
    const failed = await settle(srv, id);
    expect(failed.error).toMatchObject({ code: 'SHA256_MISMATCH' });
    expect(failed.error!.message).toContain(f.sha256);
    expect(srv.log.lines.some((l) => l.includes(`computed while downloading is ${f.sha256}, not the expected one; hashing the whole file to confirm`))).toBe(true);
    for (const name of ['wrong.bin', 'wrong.bin.part', 'wrong.bin.part.json']) await expect(fs.access(path.join(srv.modelsDir, 'loras', name))).rejects.toThrow();
  });

  test.each(['throw', 'exit'] as const)('a hashing worker that fails (%s) falls back to the full pass: the right verdict either way', async (how) => {
    prefixHashFaults.failAt = { at: 2 * MiB, how };
    srv = await start();
    const f = files.addFile('/crash.bin', { size: 20 * MiB, throttle: 8 * MiB });
    const good = await settle(srv, await add(srv, { url: f.url, folder: 'loras', sha256: f.sha256 }));
    expect(good).toMatchObject({ status: 'completed', sha256: f.sha256 });
    expect(sha(await fs.readFile(path.join(srv.modelsDir, 'loras/crash.bin')))).toBe(f.sha256);
    expect(fullPass(srv.log.lines)).toBe(true);
    expect(tailOf(srv.log.lines)).toBeUndefined();

    const g = files.addFile('/crash-wrong.bin', { size: 20 * MiB, throttle: 8 * MiB });
    const bad = await settle(srv, await add(srv, { url: g.url, folder: 'loras', sha256: 'c'.repeat(64) }));
    expect(bad.error).toMatchObject({ code: 'SHA256_MISMATCH' });
    await expect(fs.access(path.join(srv.modelsDir, 'loras/crash-wrong.bin'))).rejects.toThrow();
  });

  describe('INFLIGHT_HASH', () => {
    const before = process.env.INFLIGHT_HASH;
    afterEach(() => {
      if (before === undefined) delete process.env.INFLIGHT_HASH;
      else process.env.INFLIGHT_HASH = before;
    });

    test('=1: without a given sha256, the one computed while downloading is recorded on the entry', async () => {
      process.env.INFLIGHT_HASH = '1'; // else only where more than two cores leave one to spare
      srv = await start();
      const f = files.addFile('/plain.bin', { size: 20 * MiB, throttle: 8 * MiB });
      const done = await settle(srv, await add(srv, { url: f.url, folder: 'loras' }));
      expect(done).toMatchObject({ status: 'completed', sha256: f.sha256 });
      expect(tailOf(srv.log.lines)).toBeDefined();
    });

    test('=0: nothing is hashed while downloading; the whole file is, after the transfer, as before', async () => {
      process.env.INFLIGHT_HASH = '0';
      srv = await start();
      const f = files.addFile('/off.bin', { size: 20 * MiB, throttle: 8 * MiB });
      const verifying: number[] = [];
      srv.store.on('update', (e) => {
        if (e.dest === 'loras/off.bin' && e.status === 'verifying') verifying.push(e.progress);
      });
      const done = await settle(srv, await add(srv, { url: f.url, folder: 'loras', sha256: f.sha256 }));
      expect(done).toMatchObject({ status: 'completed', sha256: f.sha256 });
      expect(tailOf(srv.log.lines)).toBeUndefined();
      expect(verifying[0]).toBe(0); // the pass, from 0 %
      const plain = files.addFile('/off-plain.bin', { size: 20 * MiB, throttle: 8 * MiB });
      expect((await settle(srv, await add(srv, { url: plain.url, folder: 'loras' }))).sha256).toBeUndefined();
    });
  });

  test('stopped mid-download and started again: the prefix on disk is hashed again while the rest arrives, and the file is exact', async () => {
    const first = await start();
    const f = files.addFile('/again.bin', { size: 24 * MiB, throttle: 2 * MiB });
    const id = await add(first, { url: f.url, folder: 'loras', sha256: f.sha256 });
    await waitFor(() => (first.store.getById(id)?.downloaded ?? 0) > 8 * MiB, 'a third of the file');
    await first.stop({ keepDir: true });
    srv = await start({ dir: first.dir });
    const done = await settle(srv, id);
    expect(done).toMatchObject({ status: 'completed', sha256: f.sha256 });
    expect(sha(await fs.readFile(path.join(srv.modelsDir, 'loras/again.bin')))).toBe(f.sha256);
    expect(tailOf(srv.log.lines)!).toBeLessThanOrEqual(8 * MiB);
    expect(fullPass(srv.log.lines)).toBe(false);
    await fs.rm(first.dir, { recursive: true, force: true });
  });

  test('kill -9 mid-download, start again: ends with the exact file, its sha256 computed while downloading', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const f = files.addFile('/killed.bin', { size: 24 * MiB, throttle: 2 * MiB });
      const env = { MODELS_DIR: path.join(dir, 'models'), STATUS_FILE: path.join(dir, 'status.json'), CATALOG_FILE: path.join(dir, 'catalog.json'), CONNECTIONS: '4' };
      const one = await spawnServer(env);
      children.push(one);
      await fetch(`${one.url}/api/downloads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: f.url, folder: 'checkpoints', sha256: f.sha256 }) });
      const metaFile = path.join(dir, 'models', 'checkpoints', 'killed.bin.part.json');
      await waitFor(async () => (JSON.parse(await fs.readFile(metaFile, 'utf8')) as PartMeta).segments!.reduce((n, s) => n + s.done, 0) > 6 * MiB, 'a quarter of the file on disk');
      await one.kill('SIGKILL');
      const two = await spawnServer(env);
      children.push(two);
      await waitFor(async () => {
        const s = (await (await fetch(`${two.url}/status`)).json()) as Record<string, Entry>;
        const e = s['checkpoints/killed.bin'];
        if (e?.status === 'error') throw new Error(e.error!.message);
        return e?.status === 'completed';
      }, 'completion after the restart', 30_000);
      expect(sha(await fs.readFile(path.join(dir, 'models', 'checkpoints', 'killed.bin')))).toBe(f.sha256);
      expect(tailOf(two.output().split('\n'))).toBeDefined();
      expect(fullPass(two.output().split('\n'))).toBe(false);
    } finally {
      await cleanup();
    }
  });

  test('on a slow link the segment map follows the download within a fraction of a second (saved after each sync, 4 a second)', async () => {
    srv = await start();
    const f = files.addFile('/slow.bin', { size: 12 * MiB, throttle: MiB }); // 4 MiB/s over 4 connections: 3 s
    const id = await add(srv, { url: f.url, folder: 'loras' });
    const metaFile = path.join(srv.modelsDir, 'loras/slow.bin.part.json');
    const seen = new Set<number>();
    await waitFor(async () => {
      const e = srv!.store.getById(id);
      if (e?.status !== 'downloading') return e?.status === 'completed' || e?.status === 'verifying';
      const m = JSON.parse(await fs.readFile(metaFile, 'utf8').catch(() => '{}')) as Partial<PartMeta>;
      if (m.segments) seen.add(m.segments.reduce((n, s) => n + s.done, 0));
      return false;
    }, 'the download to end', 30_000);
    // Saved once a second, three seconds give three or four maps; after every quarter-second sync, about twelve.
    expect(seen.size).toBeGreaterThanOrEqual(7);
  });
});
