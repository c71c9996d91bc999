/**
 * Groups of many files: the queue's budget of connections across files, the folder sync shared
 * by the files that finish together, and what a small file no longer pays for (a probe, a map).
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { FolderSync } from '../../server/disk/folder-sync';
import type { Entry } from '../../server/protocol/wire';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';

let files: FileServer;
let srv: TestServer;
afterEach(async () => {
  await srv?.stop();
  await files?.close();
});

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const KiB = 1024;

/**
 * Files served under `/g/` by a route that counts the responses open at once (connections at
 * work): Range, ETag, a rate per connection. Only what the downloader asks of a file server.
 */
function countingSource(server: FileServer, rate: number): { add(name: string, size: number): { url: string; data: Buffer }; peak: { connections: number; files: number }; requests: Map<string, number> } {
  const served = new Map<string, Buffer>();
  const requests = new Map<string, number>();
  /** Responses open, by file. */
  const open = new Map<string, number>();
  const peak = { connections: 0, files: 0 };
  const count = (name: string, by: number): void => {
    open.set(name, (open.get(name) ?? 0) + by);
    if (open.get(name) === 0) open.delete(name);
    peak.connections = Math.max(peak.connections, [...open.values()].reduce((a, b) => a + b, 0));
    peak.files = Math.max(peak.files, open.size);
  };
  server.route('/g/*', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const name = new URL(req.url ?? '/', 'http://x').pathname.slice('/g/'.length);
    const data = served.get(name);
    if (!data) {
      res.writeHead(404).end();
      return;
    }
    requests.set(name, (requests.get(name) ?? 0) + 1);
    count(name, 1);
    res.once('close', () => count(name, -1));
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m && m[2] ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
    const headers = { 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ETag: `"${sha(data).slice(0, 16)}"`, 'Content-Length': end - start + 1 };
    res.writeHead(m ? 206 : 200, m ? { ...headers, 'Content-Range': `bytes ${start}-${end}/${data.length}` } : headers);
    const step = Math.ceil(rate / 20); // 20 slices a second
    let at = start;
    const next = (): void => {
      if (res.destroyed) return;
      const to = Math.min(end + 1, at + step);
      res.write(data.subarray(at, to));
      at = to;
      if (at > end) res.end();
      else setTimeout(next, 50);
    };
    next();
  });
  return {
    add(name, size) {
      const data = crypto.randomBytes(size);
      served.set(name, data);
      return { url: `${server.url}/g/${name}`, data };
    },
    peak,
    requests,
  };
}

const completed = (s: TestServer, ids: string[]): Promise<Entry[]> =>
  waitFor(() => {
    const entries = ids.map((id) => s.store.getById(id)!);
    const failed = entries.find((e) => e.status === 'error');
    if (failed) throw new Error(`${failed.dest}: ${failed.error?.message}`);
    return entries.every((e) => e.status === 'completed') ? entries : undefined;
  }, 'every file to complete', 20_000);

test('small files of a group share the connection budget: more than MAX_CONCURRENT at once, never more than MAX_CONCURRENT × CONNECTIONS connections', async () => {
  files = await startFileServer();
  // Minimum segment 64 KiB: a file of 128 KiB or more is split, a smaller one takes one connection.
  srv = await startTestServer({ MAX_CONCURRENT: '3', CONNECTIONS: '4' }, { downloader: { minSegmentBytes: 64 * KiB } });
  const source = countingSource(files, 200 * KiB); // each file's transfer lasts a quarter of a second or more
  const big = [0, 1].map((i) => ({ name: `big${i}.bin`, ...source.add(`big${i}.bin`, 400 * KiB) }));
  const small = Array.from({ length: 20 }, (_, i) => ({ name: `s${i}.json`, ...source.add(`s${i}.json`, 50 * KiB + i) }));
  // As a listing starts them: the sizes known, in one go (a big file first, one in the middle).
  const all = [big[0]!, ...small.slice(0, 10), big[1]!, ...small.slice(10)];
  const group = { id: 'repo1', name: 'org/repo' };
  const ids = all.map((f) => srv.downloader.add({ url: f.url, folder: 'text_encoders/repo' }, { size: f.data.length, group }).download.id);
  const entries = await completed(srv, ids);

  expect(source.peak.files).toBeGreaterThan(3); // more files than MAX_CONCURRENT at once
  expect(source.peak.connections).toBeLessThanOrEqual(12); // the budget: 3 × 4 connections
  // A small file of known size is fetched in one request (no probe first); a big one in ranges.
  for (const f of small) expect(source.requests.get(f.name)).toBe(1);
  for (const f of big) expect(source.requests.get(f.name)).toBeGreaterThan(1);
  for (const [i, f] of all.entries()) {
    expect(entries[i]!.file_size).toBe(f.data.length);
    expect(sha(await fs.readFile(path.join(srv.modelsDir, 'text_encoders/repo', f.name)))).toBe(sha(f.data));
  }
  const left = await fs.readdir(path.join(srv.modelsDir, 'text_encoders/repo'));
  expect(left.filter((n) => n.endsWith('.part') || n.endsWith('.part.json'))).toEqual([]);
});

test('a download counts for no connection once its transfer is over: the next starts while it syncs', async () => {
  files = await startFileServer();
  srv = await startTestServer({ MAX_CONCURRENT: '1' });
  const a = files.addFile('/a.bin', { size: 100 * KiB });
  const b = files.addFile('/b.bin', { size: 100 * KiB });
  // The first file's folder sync is held until the second file's request has reached the source.
  const sync = srv.downloader.folders.sync.bind(srv.downloader.folders);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let first = true;
  srv.downloader.folders.sync = async (dir: string): Promise<void> => {
    if (first) {
      first = false;
      await held;
    }
    return sync(dir);
  };
  const ea = (await srv.api('POST', '/api/downloads', { url: a.url, folder: 'vae' })).body.download as Entry;
  const eb = (await srv.api('POST', '/api/downloads', { url: b.url, folder: 'vae' })).body.download as Entry;
  try {
    await files.waitForRequest((r) => r.path === '/b.bin');
    expect(['downloading', 'verifying']).toContain(srv.store.getById(ea.id)!.status); // its folder not yet synced: not completed
  } finally {
    release();
  }
  const [da, db] = await completed(srv, [ea.id, eb.id]);
  expect(da!.status).toBe('completed');
  expect(db!.status).toBe('completed');
});

test('a download counts for no connection once its last byte is in: the next starts while it fsyncs its file', async () => {
  files = await startFileServer();
  // Progress reported at most every 10 s, the stall watch (which reports too) every second: the
  // last report during a's transfer is its first, not its last byte (as for a fast small file).
  srv = await startTestServer({ MAX_CONCURRENT: '1' }, { downloader: { progressIntervalMs: 10_000, stallMs: 60_000 } });
  const a = files.addFile('/a.bin', { size: 100 * KiB });
  const b = files.addFile('/b.bin', { size: 100 * KiB });
  // Every fsync of a file handle (a's `.part` after its last byte) is held until b's request has
  // reached the source: before, a held its connection through that sync and its close.
  const probe = await fs.open(__filename, 'r');
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
  await probe.close();
  const sync = proto.sync;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let synced!: () => void;
  const syncing = new Promise<void>((r) => (synced = r));
  proto.sync = async function (this: unknown): Promise<void> {
    synced();
    await held;
    return sync.call(this);
  };
  try {
    const ea = (await srv.api('POST', '/api/downloads', { url: a.url, folder: 'vae' })).body.download as Entry;
    const eb = (await srv.api('POST', '/api/downloads', { url: b.url, folder: 'vae' })).body.download as Entry;
    await syncing;
    // Within 600 ms of a's sync, before the stall watch's next report could free a's connection.
    const asked = files.waitForRequest((r) => r.path === '/b.bin').then(() => 'b asked');
    const raced = await Promise.race([asked, new Promise((r) => setTimeout(r, 600, 'b waited'))]);
    const during = srv.store.getById(ea.id)!;
    release();
    expect(raced).toBe('b asked');
    expect(during.status).toBe('downloading'); // every byte in, not yet synced: not verifying, not completed
    const [da, db] = await completed(srv, [ea.id, eb.id]);
    expect(da!.status).toBe('completed');
    expect(db!.status).toBe('completed');
  } finally {
    release();
    proto.sync = sync;
  }
});

test('a file is said completed only after a folder sync that began with the file under its final name', async () => {
  files = await startFileServer();
  srv = await startTestServer({ MAX_CONCURRENT: '4', CONNECTIONS: '4' });
  const folder = path.join(srv.modelsDir, 'loras', 'set');
  // Each sync: which final names were in the folder when it began, and whether it has ended.
  const syncs: Array<{ names: Set<string>; ended: boolean }> = [];
  const sync = srv.downloader.folders.sync.bind(srv.downloader.folders);
  srv.downloader.folders.sync = async (dir: string): Promise<void> => {
    const record = { names: new Set(await fs.readdir(dir)), ended: false };
    syncs.push(record);
    await sync(dir);
    record.ended = true;
  };
  const seen: string[] = [];
  const early: string[] = [];
  srv.store.on('update', (e) => {
    if (e.status !== 'completed' || seen.includes(e.filename)) return;
    seen.push(e.filename);
    // The moment the entry says so, its rename is covered by a folder sync that has ended.
    if (!syncs.some((s) => s.ended && s.names.has(e.filename))) early.push(e.filename);
  });
  const list = Array.from({ length: 12 }, (_, i) => files.addFile(`/f${i}.safetensors`, { size: 20 * KiB + i }));
  const ids = [];
  for (const f of list) ids.push(((await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras/set' })).body.download as Entry).id);
  await completed(srv, ids);
  expect(seen).toHaveLength(12);
  expect(early).toEqual([]);
  for (const [i, f] of list.entries()) expect(sha(await fs.readFile(path.join(folder, `f${i}.safetensors`)))).toBe(f.sha256);
});

test('FolderSync: callers that ask while a sync runs share the next one, which begins after they asked', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const folders = new FolderSync();
    const order: string[] = [];
    const first = folders.sync(dir).then(() => order.push('first'));
    expect(folders.syncs).toBe(1); // begun at once
    const rest = Array.from({ length: 10 }, (_, i) => folders.sync(dir).then(() => order.push(`later${i}`)));
    expect(folders.syncs).toBe(1); // the ten wait: the sync under way may have begun before their renames
    await Promise.all([first, ...rest]);
    expect(folders.syncs).toBe(2); // one more for all ten
    expect(order[0]).toBe('first');
    await folders.sync(dir); // quiet again: a sync of its own, at once
    expect(folders.syncs).toBe(3);
  } finally {
    await cleanup();
  }
});

test('a small file done before its map is due leaves no map, and an old map beside it is removed first', async () => {
  files = await startFileServer();
  srv = await startTestServer();
  const f = files.addFile('/small.yaml', { size: 3000 });
  const dest = path.join(srv.modelsDir, 'configs', 'small.yaml');
  await fs.mkdir(path.dirname(dest), { recursive: true });
  // A map a kill left after an earlier rename: it must not survive beside the new bytes.
  await fs.writeFile(`${dest}.part.json`, JSON.stringify({ url: f.url, name: 'small.yaml', fileSize: 3000, segments: [{ start: 0, end: 3000, done: 3000 }] }));
  const e = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'configs' })).body.download as Entry;
  await completed(srv, [e.id]);
  expect(sha(await fs.readFile(dest))).toBe(f.sha256);
  expect(await fs.readdir(path.dirname(dest))).toEqual(['small.yaml']);
});

test('downloads outside a group: never more than MAX_CONCURRENT transferring at once, however small', async () => {
  files = await startFileServer();
  srv = await startTestServer({ MAX_CONCURRENT: '2', CONNECTIONS: '4' }, { downloader: { minSegmentBytes: 64 * KiB } });
  const source = countingSource(files, 200 * KiB);
  const small = Array.from({ length: 6 }, (_, i) => ({ name: `u${i}.bin`, ...source.add(`u${i}.bin`, 50 * KiB + i) }));
  const ids = small.map((f) => srv.downloader.add({ url: f.url, folder: 'loras' }, { size: f.data.length }).download.id);
  await completed(srv, ids);
  expect(source.peak.files).toBe(2); // the contract's MAX_CONCURRENT: the rest waited as queued
});
