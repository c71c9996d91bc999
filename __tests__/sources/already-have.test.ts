/**
 * "Already have it": a request whose sha256 a completed download elsewhere under MODELS_DIR has
 * is answered `already_exists` with where the file is (`same_as`), without a byte fetched; with
 * `link: true` the file is hard-linked into place and gets its own `completed` entry. A completed
 * entry whose file is gone, or changed since, is not trusted: the file is downloaded as usual.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { connectWs, settled, startTestServer, type TestServer } from '../helpers/harness';

let files: FileServer | undefined;
let hub: FakeHub | undefined;
let srv: TestServer | undefined;
afterEach(async () => {
  jest.restoreAllMocks();
  await srv?.stop();
  await files?.close();
  await hub?.close();
  srv = undefined;
  files = undefined;
  hub = undefined;
});

/** Downloads `url` to `folder` and waits for it to complete. */
async function complete(s: TestServer, body: Record<string, unknown>): Promise<Entry> {
  const res = await s.api('POST', '/api/downloads', body);
  expect(res.status).toBe(202);
  const e = await settled(s, res.body.download.id, 15_000);
  expect(e.status).toBe('completed');
  return e;
}

const exists = (p: string): boolean => fs.existsSync(p);

test('the same sha256 completed at another dest: already_exists with same_as, and no request reaches the source', async () => {
  files = await startFileServer();
  const a = files.addFile('/a.safetensors', { size: 100_000 });
  files.addFile('/mirror/copy.safetensors', { data: a.data });
  srv = await startTestServer();
  await complete(srv, { url: a.url, folder: 'checkpoints', sha256: a.sha256 });

  const before = files.requests.length;
  const res = await srv.api('POST', '/api/downloads', { url: `${files.url}/mirror/copy.safetensors`, folder: 'loras', sha256: a.sha256.toUpperCase() });
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ status: 'already_exists', same_as: 'checkpoints/a.safetensors', download: { dest: 'checkpoints/a.safetensors', status: 'completed', sha256: a.sha256 } });
  expect(res.body.linked).toBeUndefined();
  expect(files.requests.length).toBe(before);
  expect(srv.store.get('loras/copy.safetensors')).toBeUndefined();
  expect(exists(path.join(srv.modelsDir, 'loras', 'copy.safetensors'))).toBe(false);

  // The WebSocket's start says the same.
  const ws = await connectWs(srv.url);
  try {
    ws.ws.send(JSON.stringify({ type: 'start', request_id: 'r1', url: `${files.url}/mirror/copy.safetensors`, folder: 'vae', sha256: a.sha256 }));
    const ack = await ws.next((m) => m.type === 'ack' && m.request_id === 'r1');
    expect(ack).toMatchObject({ status: 'already_exists', same_as: 'checkpoints/a.safetensors' });
  } finally {
    await ws.close();
  }
  expect(files.requests.length).toBe(before);

  // overwrite: true fetches a second copy all the same.
  await complete(srv, { url: `${files.url}/mirror/copy.safetensors`, folder: 'loras', sha256: a.sha256, overwrite: true });
  expect(files.requests.length).toBeGreaterThan(before);
  expect((await fsp.readFile(path.join(srv.modelsDir, 'loras', 'copy.safetensors'))).equals(a.data)).toBe(true);
});

test('a Civitai file whose API gives the SHA256 of a file already here is not downloaded again', async () => {
  hub = await startFakeHub({ civitaiToken: 'civ_secret_token' });
  const data = crypto.randomBytes(60_000);
  hub.civitai.model({ id: 7, name: 'Style', versions: [{ id: 70, name: 'v1', files: [{ name: 'style.safetensors', data, primary: true }] }] });
  hub.civitai.model({ id: 8, name: 'Reupload', versions: [{ id: 80, name: 'v1', files: [{ name: 'reupload.safetensors', data, primary: true }] }] });
  srv = await startTestServer({ CIVITAI_ENDPOINT: hub.civitai.url, CIVITAI_TOKEN: 'civ_secret_token' });
  await complete(srv, { url: `${hub.civitai.url}/api/download/models/70`, folder: 'loras' });

  const res = await srv.api('POST', '/api/downloads', { url: `${hub.civitai.url}/api/download/models/80`, folder: 'loras' });
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ status: 'already_exists', same_as: 'loras/style.safetensors' });
  // Civitai's API was asked (that is how the SHA256 is known); its download URL and storage were not.
  const asked = hub.allRequests().map((r) => r.url);
  expect(asked.some((u) => u.startsWith('/api/v1/model-versions/80'))).toBe(true);
  expect(asked.some((u) => u.startsWith('/api/download/models/80'))).toBe(false);
  expect(asked.filter((u) => u.startsWith('/files/'))).toHaveLength(1); // the first download only
  expect(JSON.stringify(res.body)).not.toContain('civ_secret_token');
});

test('link: true makes a hard link (same inode) with its own completed entry and no transfer; a link across file systems is a clear 409', async () => {
  files = await startFileServer();
  const a = files.addFile('/a.safetensors', { size: 80_000 });
  srv = await startTestServer();
  await complete(srv, { url: a.url, folder: 'checkpoints', sha256: a.sha256 });
  const before = files.requests.length;

  const res = await srv.api('POST', '/api/downloads', { url: a.url, folder: 'loras/flux', filename: 'style.safetensors', sha256: a.sha256, link: true });
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({
    status: 'already_exists',
    linked: true,
    same_as: 'checkpoints/a.safetensors',
    download: { dest: 'loras/flux/style.safetensors', status: 'completed', sha256: a.sha256, file_size: 80_000, downloaded: 80_000, progress: 100 },
  });
  const original = await fsp.stat(path.join(srv.modelsDir, 'checkpoints', 'a.safetensors'));
  const linked = await fsp.stat(path.join(srv.modelsDir, 'loras', 'flux', 'style.safetensors'));
  expect(linked.ino).toBe(original.ino);
  expect(linked.nlink).toBe(2);
  expect(files.requests.length).toBe(before);
  await srv.store.flush();
  const stored = JSON.parse(await fsp.readFile(srv.statusFile, 'utf8')) as Record<string, Entry>;
  expect(stored['loras/flux/style.safetensors']).toMatchObject({ status: 'completed', sha256: a.sha256, completion_time: expect.any(Number) });
  // The linked file counts as a completed download in turn.
  const again = await srv.api('POST', '/api/downloads', { url: a.url, folder: 'vae', sha256: a.sha256 });
  expect(again.body.same_as).toMatch(/^(checkpoints\/a|loras\/flux\/style)\.safetensors$/);

  // Another file system: EXDEV, nothing made (not even the folder), nothing fetched.
  jest.spyOn(fs, 'linkSync').mockImplementation(() => {
    throw Object.assign(new Error('EXDEV: cross-device link not permitted, link'), { code: 'EXDEV', syscall: 'link' });
  });
  const cross = await srv.api('POST', '/api/downloads', { url: a.url, folder: 'loras/other', filename: 'x.safetensors', sha256: a.sha256, link: true });
  expect(cross.status).toBe(409);
  expect(cross.body.error.code).toBe('EXDEV');
  expect(cross.body.error.message).toMatch(/another file system.*overwrite/);
  expect(cross.body.error.message).not.toContain(srv.dir);
  expect(srv.store.get('loras/other/x.safetensors')).toBeUndefined();
  expect(exists(path.join(srv.modelsDir, 'loras', 'other'))).toBe(false);
  expect(files.requests.length).toBe(before);

  // The folders made for a refused link go again only while empty: a file another server (the
  // fleet shares the volume) began in one of them meanwhile stays, with its folders.
  const theirs = path.join(srv.modelsDir, 'loras', 'deep', 'theirs.safetensors.part');
  jest.spyOn(fs, 'linkSync').mockImplementation(() => {
    fs.writeFileSync(theirs, 'bytes of another download');
    throw Object.assign(new Error('EXDEV: cross-device link not permitted, link'), { code: 'EXDEV', syscall: 'link' });
  });
  const raced = await srv.api('POST', '/api/downloads', { url: a.url, folder: 'loras/deep/er', filename: 'x.safetensors', sha256: a.sha256, link: true });
  expect(raced.status).toBe(409);
  expect(fs.readFileSync(theirs, 'utf8')).toBe('bytes of another download');
  expect(exists(path.join(srv.modelsDir, 'loras', 'deep', 'er'))).toBe(false);

  const bad = await srv.api('POST', '/api/downloads', { url: a.url, folder: 'vae', sha256: a.sha256, link: 'yes' });
  expect(bad.status).toBe(400);
  expect(bad.body.error.code).toBe('INVALID_BODY');
});

test('a completed entry whose file is gone, changed size or was modified since is not trusted: the file is downloaded', async () => {
  files = await startFileServer();
  const gone = files.addFile('/gone.safetensors', { size: 30_000 });
  const grown = files.addFile('/grown.safetensors', { size: 30_000 });
  const touched = files.addFile('/touched.safetensors', { size: 30_000 });
  srv = await startTestServer();
  for (const f of [gone, grown, touched]) await complete(srv, { url: f.url, folder: 'checkpoints', sha256: f.sha256 });
  const at = (name: string): string => path.join(srv!.modelsDir, 'checkpoints', name);
  await fsp.rm(at('gone.safetensors'));
  await fsp.appendFile(at('grown.safetensors'), 'x');
  // Same size, other bytes, written after the download completed.
  const bytes = await fsp.readFile(at('touched.safetensors'));
  bytes[0] = bytes[0]! ^ 0xff;
  await fsp.writeFile(at('touched.safetensors'), bytes);
  const later = Date.now() / 1000 + 60;
  await fsp.utimes(at('touched.safetensors'), later, later);

  for (const f of [gone, grown, touched]) {
    const before = files.requests.filter((r) => r.path === new URL(f.url).pathname).length;
    const e = await complete(srv, { url: f.url, folder: 'loras', sha256: f.sha256, link: true });
    expect(e.dest).toBe(`loras${new URL(f.url).pathname}`);
    expect(files.requests.filter((r) => r.path === new URL(f.url).pathname).length).toBeGreaterThan(before);
    const name = path.basename(new URL(f.url).pathname);
    expect((await fsp.readFile(path.join(srv.modelsDir, 'loras', name))).equals(f.data)).toBe(true);
    expect((await fsp.stat(path.join(srv.modelsDir, 'loras', name))).nlink).toBe(1);
  }
});
