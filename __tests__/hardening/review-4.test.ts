/**
 * Review of the day's changes (already have it, git blob ids, free space for groups, segments'
 * checkContentRange, the metadata APIs through a proxy, group commands): each test here failed
 * before the fix committed with it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';
import { findSameFile } from '../../server/downloader/known-files';
import { createEntry } from '../../server/store/entry';

let files: FileServer | undefined;
let srv: TestServer | undefined;
let hub: FakeHub | undefined;
afterEach(async () => {
  jest.restoreAllMocks();
  await srv?.stop();
  await files?.close();
  await hub?.close();
  hub = undefined;
  srv = undefined;
  files = undefined;
});

const KiB = 1024;

/** Every path under `dir` with its size (folders as -1). */
async function snapshot(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of await fs.readdir(dir, { recursive: true })) {
    const st = await fs.stat(path.join(dir, name));
    out[name] = st.isDirectory() ? -1 : st.size;
  }
  return out;
}

async function settle(s: TestServer, body: Record<string, unknown>): Promise<Entry> {
  const res = await s.api('POST', '/api/downloads', body);
  expect(res.status).toBe(202);
  const id = res.body.download.id as string;
  return waitFor(() => {
    const e = s.store.getById(id);
    return e?.status === 'completed' || e?.status === 'error' ? e : undefined;
  }, 'completed or error', 20_000);
}

test('segments: a chunked 206 whose body runs past its own Content-Range is written only up to that range, the rest asked again', async () => {
  files = await startFileServer();
  srv = await startTestServer({ CONNECTIONS: '2' }, { downloader: { minSegmentBytes: 256 * KiB } });
  const size = 1024 * KiB; // two ranges of 512 KiB
  const data = crypto.randomBytes(size);
  const asked: string[] = [];
  let twisted = false;
  files.route('/short.bin', (req, res) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (!m) {
      res.writeHead(200, { 'Content-Length': size, 'Accept-Ranges': 'bytes' });
      res.end(data);
      return;
    }
    asked.push(req.headers.range!);
    const from = Number(m[1]);
    const to = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    if (!twisted && from > 0) {
      // Says it sends 1000 bytes (a shorter range is allowed), then sends junk up to what was asked, chunked.
      twisted = true;
      res.writeHead(206, { 'Accept-Ranges': 'bytes', 'Content-Range': `bytes ${from}-${from + 999}/${size}` });
      res.write(data.subarray(from, from + 1000));
      res.end(Buffer.alloc(to + 1 - (from + 1000), 0x55));
      return;
    }
    res.writeHead(206, { 'Accept-Ranges': 'bytes', 'Content-Range': `bytes ${from}-${to}/${size}`, 'Content-Length': to - from + 1 });
    res.end(data.subarray(from, to + 1));
  });
  const e = await settle(srv, { url: `${files.url}/short.bin`, folder: 'loras' });
  expect(twisted).toBe(true);
  expect(e.status).toBe('completed');
  const got = await fs.readFile(path.join(srv.modelsDir, 'loras', 'short.bin'));
  expect(got.equals(data)).toBe(true);
});

test('one connection: a resume answered by a chunked 206 whose body runs past its own Content-Range keeps only that range', async () => {
  files = await startFileServer();
  srv = await startTestServer(); // one connection
  const size = 600 * KiB;
  const data = crypto.randomBytes(size);
  let twisted = false;
  let cut = false;
  files.route('/resume.bin', (req, res) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (!m) {
      res.writeHead(200, { 'Content-Length': size, 'Accept-Ranges': 'bytes' });
      // Half the file, then the connection breaks: the next attempt resumes with a Range.
      res.write(data.subarray(0, size / 2), () => setTimeout(() => res.destroy(), 50));
      cut = true;
      return;
    }
    const from = Number(m[1]);
    if (!twisted) {
      twisted = true;
      res.writeHead(206, { 'Accept-Ranges': 'bytes', 'Content-Range': `bytes ${from}-${from + 999}/${size}` });
      res.write(data.subarray(from, from + 1000));
      res.end(Buffer.alloc(size - (from + 1000), 0x55));
      return;
    }
    res.writeHead(206, { 'Accept-Ranges': 'bytes', 'Content-Range': `bytes ${from}-${size - 1}/${size}`, 'Content-Length': size - from });
    res.end(data.subarray(from));
  });
  const e = await settle(srv, { url: `${files.url}/resume.bin`, folder: 'loras' });
  expect(cut && twisted).toBe(true);
  expect(e.status).toBe('completed');
  const got = await fs.readFile(path.join(srv.modelsDir, 'loras', 'resume.bin'));
  expect(got.equals(data)).toBe(true);
});

test('a folder whose path runs through a file: a clear 409 that changes nothing, for one file (link or not) and for a group', async () => {
  files = await startFileServer();
  const a = files.addFile('/a.safetensors', { size: 20_000 });
  hub = await startFakeHub();
  hub.hf.repo('org/parts');
  hub.hf.commit('org/parts', { 'unet/model.safetensors': Buffer.alloc(30_000, 1), 'config.json': '{"a":1}' });
  srv = await startTestServer({ HF_ENDPOINT: hub.hf.url });
  const done = await settle(srv, { url: a.url, folder: 'checkpoints', sha256: a.sha256 });
  expect(done.status).toBe('completed');
  const before = await snapshot(srv.modelsDir);
  for (const body of [
    { url: a.url, folder: 'checkpoints/a.safetensors', filename: 'b.safetensors' },
    { url: a.url, folder: 'checkpoints/a.safetensors', filename: 'b.safetensors', sha256: a.sha256, link: true },
    { url: a.url, folder: 'checkpoints/a.safetensors/sub', filename: 'b.safetensors', sha256: a.sha256, link: true },
  ]) {
    const res = await srv.api('POST', '/api/downloads', body);
    expect({ status: res.status, code: res.body.error?.code }).toEqual({ status: 409, code: 'ENOTDIR' });
    expect(res.body.error.message).toMatch(/a file is where a folder/i);
    expect(srv.store.get(`${body.folder}/b.safetensors`)).toBeUndefined();
  }
  // A repository whose folder would run through that file: every file skipped with why, nothing started.
  await fs.writeFile(path.join(srv.modelsDir, 'checkpoints', 'parts'), 'a file');
  const group = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/parts`, folder: 'checkpoints' });
  expect(group.status).toBe(202);
  expect(group.body.downloads).toEqual([]);
  expect((group.body.skipped as Array<{ error: { code: string } }>).map((s) => s.error.code)).toEqual(['ENOTDIR', 'ENOTDIR']);
  await fs.rm(path.join(srv.modelsDir, 'checkpoints', 'parts'));
  expect(await snapshot(srv.modelsDir)).toEqual(before);
  expect(srv.store.all().map((e) => e.dest)).toEqual(['checkpoints/a.safetensors']);
});

test('already have it: a completed file replaced by another of the same size with an older mtime (mv, cp -p) is not offered; a file a later link vouched for still is', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const modelsDir = path.join(dir, 'models');
    for (const f of ['checkpoints', 'vae', 'loras']) await fs.mkdir(path.join(modelsDir, f), { recursive: true });
    const data = crypto.randomBytes(10_000);
    const sha256 = crypto.createHash('sha256').update(data).digest('hex');
    const at = (dest: string): string => path.join(modelsDir, dest);
    const now = Date.now() / 1000;
    const entry = (dest: string, completion_time: number): Entry => {
      const [folder, filename] = dest.split('/') as [string, string];
      return createEntry({ dest, folder, filename, url: 'https://example.com/a.safetensors', status: 'completed', sha256, file_size: data.length, downloaded: data.length, completion_time });
    };
    // checkpoints/a completed a minute ago; since then another model of the same size was moved
    // over it, keeping its own older mtime (its ctime is now).
    await fs.writeFile(at('checkpoints/a.safetensors'), crypto.randomBytes(data.length));
    await fs.utimes(at('checkpoints/a.safetensors'), now - 3600, now - 3600);
    const replaced = entry('checkpoints/a.safetensors', now - 60);
    expect(findSameFile([replaced], modelsDir, sha256, 'unet/x.safetensors')).toBeUndefined();

    // vae/a completed a minute ago too, and a hard link to it was made just now (loras/a): the link
    // moved the file's ctime, and its own entry vouches for the file from then on.
    await fs.writeFile(at('vae/a.safetensors'), data);
    await fs.utimes(at('vae/a.safetensors'), now - 120, now - 120);
    await fs.link(at('vae/a.safetensors'), at('loras/a.safetensors'));
    const original = entry('vae/a.safetensors', now - 60);
    const linked = entry('loras/a.safetensors', Date.now() / 1000);
    expect(findSameFile([replaced, original, linked], modelsDir, sha256, 'unet/x.safetensors')?.entry.dest).toBe('vae/a.safetensors');
    expect(findSameFile([replaced, original], modelsDir, sha256, 'unet/x.safetensors')).toBeUndefined();
  } finally {
    await cleanup();
  }
});

test('an overwrite cancelled mid-download and retried fetches the new file: the old one of the same size is not taken as finished', async () => {
  files = await startFileServer();
  const f = files.addFile('/same-size.safetensors', { size: 400 * KiB, throttle: 100 * KiB });
  srv = await startTestServer({ CONNECTIONS: '1' });
  const old = path.join(srv.modelsDir, 'loras', 'same-size.safetensors');
  await fs.mkdir(path.dirname(old), { recursive: true });
  await fs.writeFile(old, Buffer.alloc(400 * KiB, 1)); // the old version, as big as the new one
  const started = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras', overwrite: true });
  expect(started.status).toBe(202);
  const id = started.body.download.id as string;
  await waitFor(() => (srv!.store.get('loras/same-size.safetensors')!.downloaded > 0 ? true : undefined), 'the new version to arrive');
  expect((await srv.api('POST', `/api/downloads/${id}/cancel`)).status).toBe(200);
  files.setFileOptions('/same-size.safetensors', { throttle: 0 });
  expect((await srv.api('POST', `/api/downloads/${id}/retry`)).status).toBe(200);
  const end = await waitFor(() => {
    const e = srv!.store.get('loras/same-size.safetensors')!;
    return e.status === 'completed' || e.status === 'error' ? e : undefined;
  }, 'the retry to end');
  expect(end.status).toBe('completed');
  expect(crypto.createHash('sha256').update(await fs.readFile(old)).digest('hex')).toBe(f.sha256);
});
