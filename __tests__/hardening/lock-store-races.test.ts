/**
 * Races found in review of the instance lock, the status store's shutdown and the segment map on a
 * full disk: each test here failed before its fix.
 */
import fs from 'node:fs/promises';
// The same module object instance-lock.ts uses.
import fsPromises from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { acquireLock, type InstanceLock } from '../../server/store/instance-lock';
import { captureLogger, startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  jest.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function folder(): Promise<string> {
  const { dir, cleanup } = await tempDir('md-review-');
  cleanups.push(cleanup);
  return dir;
}

test('two servers taking over the same stale lock at once: only one may get it', async () => {
  const dir = await folder();
  const file = path.join(dir, 'status.json.lock');
  // A lock left by a process that is gone (kill -9).
  await fs.writeFile(file, JSON.stringify({ pid: 2 ** 22 + 12345, started: '2020-01-01T00:00:00.000Z', host: 'x', nonce: 'dead' }) + '\n');
  // The second server is a little slower (scheduling, a busy disk): it judged the same stale text
  // and moves or removes the file only once the first has finished taking the lock.
  const realRm = fsPromises.rm.bind(fsPromises);
  const realRename = fsPromises.rename.bind(fsPromises);
  let firstDone!: () => void;
  const gate = new Promise<void>((resolve) => (firstDone = resolve));
  let calls = 0;
  const slowSecond = async (p: unknown): Promise<void> => {
    if (String(p) === file && ++calls === 2) await gate;
  };
  jest.spyOn(fsPromises, 'rm').mockImplementation(async (p, o) => (await slowSecond(p), realRm(p, o)));
  jest.spyOn(fsPromises, 'rename').mockImplementation(async (a, b) => (await slowSecond(a), realRename(a, b)));
  const opts = { log: captureLogger(), what: 'status.json', hint: 'stop it' };
  const attempts = [acquireLock(file, opts), acquireLock(file, opts)];
  // The one not held back settles first; then the held one goes on.
  void Promise.race(attempts).then(firstDone, firstDone);
  const results = await Promise.allSettled(attempts);
  const held = results.filter((r): r is PromiseFulfilledResult<InstanceLock> => r.status === 'fulfilled').map((r) => r.value);
  for (const l of held) cleanups.push(() => l.release());
  expect(held).toHaveLength(1);
});

test('an edit of the status file made just before shutdown is not overwritten by the final write', async () => {
  // A source that sends its headers and a few bytes, then nothing: the download stays active
  // without progress writes (stall detection is 2 s).
  const source = http.createServer((req, res) => {
    res.writeHead(200, { 'content-length': String(100 * 1024 * 1024), 'content-type': 'application/octet-stream' });
    res.write(Buffer.alloc(1024));
  });
  await new Promise<void>((r) => source.listen(0, '127.0.0.1', () => r()));
  cleanups.push(async () => {
    source.closeAllConnections();
    await new Promise((r) => source.close(r));
  });
  const dir = await folder();
  const s: TestServer = await startTestServer({}, { dir });
  cleanups.push(() => s.stop({ keepDir: true }));
  const port = (source.address() as { port: number }).port;
  const added = await s.api('POST', '/api/downloads', { url: `http://127.0.0.1:${port}/big.bin`, folder: 'loras' });
  expect(added.status).toBe(202);
  await waitFor(() => s.store.get('loras/big.bin')?.status === 'downloading', 'downloading');
  await waitFor(async () => JSON.parse(await fs.readFile(s.statusFile, 'utf8'))['loras/big.bin']?.status === 'downloading', 'the download on disk');
  // Another process adds an entry (atomically), and the server is stopped right after.
  const onDisk = JSON.parse(await fs.readFile(s.statusFile, 'utf8'));
  const t = Date.now() / 1000;
  onDisk['checkpoints/other.bin'] = { id: 'otherid1', url: 'http://127.0.0.1:9/other.bin', status: 'completed', progress: 100, downloaded: 5, file_size: 5, speed: 0, eta: null, start_time: t, timestamp: t, completion_time: t, attempts: 1 };
  await fs.writeFile(`${s.statusFile}.edit`, JSON.stringify(onDisk, null, 2));
  await fs.rename(`${s.statusFile}.edit`, s.statusFile);
  await s.stop({ keepDir: true });
  const after = JSON.parse(await fs.readFile(s.statusFile, 'utf8'));
  expect(Object.keys(after).sort()).toEqual(['checkpoints/other.bin', 'loras/big.bin']);
}, 20_000);

test('a segment map rewritten in place on a full disk is never left unreadable (old or new map, not neither)', async () => {
  const { smallDisk } = await import('../helpers/small-disk');
  const { readMeta, writeMeta } = await import('../../server/disk/part-file');
  const dir = await folder();
  const disk = await smallDisk(path.join(dir, 'disk'), 64 * 1024);
  cleanups.push(() => disk.release());
  if (disk.kind !== 'tmpfs') return; // needs a real full disk (root): the injected one never writes short
  const abs = path.join(disk.dir, 'big.bin');
  const segs = (n: number, done: number) => Array.from({ length: n }, (_, i) => ({ start: i * 1000, end: (i + 1) * 1000, done }));
  // A map just under one page (work stealing makes many ranges): about 90 of them.
  let n = 1;
  // (writeMeta adds the file's name to the map.)
  while (JSON.stringify({ url: 'http://h/x', fileSize: (n + 1) * 1000, segments: segs(n + 1, 10), name: 'big.bin' }).length + 1 < 4090) n++;
  const old = { url: 'http://h/x', fileSize: n * 1000, segments: segs(n, 10) };
  await fs.writeFile(abs + '.part', ''); // a map describes its .part: without one it is not read
  await writeMeta(abs, old);
  // Fill the disk.
  const filler = await fs.open(path.join(disk.dir, 'filler'), 'w');
  try {
    const chunk = Buffer.alloc(4096, 1);
    for (;;) await filler.write(chunk);
  } catch {
    // ENOSPC: full
  } finally {
    await filler.close();
  }
  // Progress: every count grows by a digit, so the map crosses into a second page.
  const next = { ...old, segments: segs(n, 999) };
  await writeMeta(abs, next).catch(() => undefined);
  const raw = await fs.readFile(abs + '.part.json', 'utf8');
  const read = await readMeta(abs);
  if (!read) console.log('map now', raw.length, 'bytes, ends', JSON.stringify(raw.slice(-30)));
  expect(read).toBeDefined();
});
