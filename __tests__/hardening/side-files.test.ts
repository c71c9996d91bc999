/**
 * The service's own files beside a download (`<dest>.part`, `<dest>.part.json` and its temp names)
 * are never written through a symbolic link planted in their place: nothing outside MODELS_DIR
 * changes, and the download still ends with the right bytes.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { settled, startTestServer, tempDir, type TestServer } from '../helpers/harness';

let files: FileServer;
let srv: TestServer;
let outside: { dir: string; cleanup: () => Promise<void> };
afterEach(async () => {
  await srv?.stop();
  await files?.close();
  await outside?.cleanup();
});

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

test.each([['1'], ['4']])('a planted <dest>.part.json link is replaced, never written through (CONNECTIONS=%s)', async (connections) => {
  files = await startFileServer();
  srv = await startTestServer({ CONNECTIONS: connections });
  outside = await tempDir('md-outside-');
  const victim = path.join(outside.dir, 'victim.txt');
  await fs.writeFile(victim, 'not yours');
  const folder = path.join(srv.modelsDir, 'loras');
  await fs.mkdir(folder, { recursive: true });
  await fs.symlink(victim, path.join(folder, 'm.bin.part.json'));

  const f = files.addFile('/m.bin', { size: 12 * 1024 * 1024, throttle: 24 * 1024 * 1024 });
  const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  expect(res.status).toBe(202);
  expect((await settled(srv, res.body.download.id, 20_000)).status).toBe('completed');

  expect(await fs.readFile(victim, 'utf8')).toBe('not yours');
  expect(await fs.readdir(outside.dir)).toEqual(['victim.txt']);
  expect(sha(await fs.readFile(path.join(folder, 'm.bin')))).toBe(f.sha256);
});

test.each([['1'], ['4']])('a planted <dest>.part link is never written through (CONNECTIONS=%s)', async (connections) => {
  files = await startFileServer();
  srv = await startTestServer({ CONNECTIONS: connections });
  outside = await tempDir('md-outside-');
  const victim = path.join(outside.dir, 'victim.bin');
  await fs.writeFile(victim, Buffer.alloc(4096, 7));
  const folder = path.join(srv.modelsDir, 'loras');
  await fs.mkdir(folder, { recursive: true });
  await fs.symlink(victim, path.join(folder, 'p.bin.part'));

  const f = files.addFile('/p.bin', { size: 12 * 1024 * 1024, throttle: 24 * 1024 * 1024 });
  const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  expect((await settled(srv, res.body.download.id, 20_000)).status).toBe('completed');

  expect(sha(await fs.readFile(victim))).toBe(sha(Buffer.alloc(4096, 7)));
  expect(sha(await fs.readFile(path.join(folder, 'p.bin')))).toBe(f.sha256);
  expect((await fs.lstat(path.join(folder, 'p.bin'))).isSymbolicLink()).toBe(false);
});

test('only side files the service wrote are adopted: a map-shaped file without its name, or a link, is no phantom download', async () => {
  const { dir, cleanup } = await tempDir('md-phantom-');
  try {
    const loras = path.join(dir, 'models', 'loras');
    await fs.mkdir(loras, { recursive: true });
    // A file downloaded before side-file names were refused, shaped like a map; and one with its
    // .part a link to a file elsewhere.
    await fs.writeFile(path.join(loras, 'ghost.bin.part.json'), JSON.stringify({ url: 'http://127.0.0.1:9/ghost.bin', fileSize: 10 }));
    await fs.writeFile(path.join(loras, 'ghost.bin.part'), 'x');
    outside = await tempDir('md-outside-');
    await fs.writeFile(path.join(outside.dir, 'victim'), 'v');
    await fs.symlink(path.join(outside.dir, 'victim'), path.join(loras, 'linked.bin.part'));
    await fs.writeFile(path.join(loras, 'linked.bin.part.json'), JSON.stringify({ url: 'http://127.0.0.1:9/linked.bin', fileSize: 10, name: 'linked.bin' }));
    srv = await startTestServer({}, { dir });
    expect(srv.store.all()).toEqual([]);
    expect(await fs.readFile(path.join(outside.dir, 'victim'), 'utf8')).toBe('v');
  } finally {
    await srv?.stop({ keepDir: true });
    await cleanup();
  }
});

test('a kill between the rename of a finished download and the removal of its map: the next start finishes it from disk', async () => {
  const { dir, cleanup } = await tempDir('md-stale-map-');
  try {
    files = await startFileServer();
    const f = files.addFile('/whole.bin', { size: 9 * 1024 * 1024 });
    srv = await startTestServer({ CONNECTIONS: '4' }, { dir });
    const id = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras', sha256: f.sha256 })).body.download.id as string;
    expect((await settled(srv, id, 20_000)).status).toBe('completed');
    await srv.stop({ keepDir: true });
    // The state a kill right after the rename leaves: the file in place, its map still there, the
    // entry still downloading.
    const abs = path.join(dir, 'models', 'loras', 'whole.bin');
    await fs.writeFile(`${abs}.part.json`, JSON.stringify({ url: f.url, fileSize: f.size, name: 'whole.bin', segments: [{ start: 0, end: f.size, done: f.size }] }));
    const status = JSON.parse(await fs.readFile(path.join(dir, 'status.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    status['loras/whole.bin'] = { ...status['loras/whole.bin'], status: 'downloading', progress: 99 };
    await fs.writeFile(path.join(dir, 'status.json'), JSON.stringify(status));
    const requestsBefore = files.requests.length;

    srv = await startTestServer({ CONNECTIONS: '4' }, { dir });
    const e = await settled(srv, id, 20_000);
    expect(e.status).toBe('completed');
    expect(sha(await fs.readFile(abs))).toBe(f.sha256);
    expect(files.requests.length).toBe(requestsBefore); // nothing fetched again
  } finally {
    await srv?.stop({ keepDir: true });
    await cleanup();
  }
});
