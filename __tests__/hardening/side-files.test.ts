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
