import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry, SnapshotMessage } from '../../server/protocol/wire';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { connectWs, startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';

let files: FileServer;
const servers: TestServer[] = [];
const cleanups: Array<() => Promise<void>> = [];

beforeEach(async () => {
  files = await startFileServer();
});
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  for (const c of cleanups.splice(0)) await c();
  await files.close();
});

async function start(env: Record<string, string> = {}, dir?: string): Promise<TestServer> {
  const s = await startTestServer(env, dir ? { dir } : {});
  servers.push(s);
  return s;
}

test('the status file is never unparseable while downloads write to it', async () => {
  const srv = await start({ MAX_CONCURRENT: '3' });
  const ids: string[] = [];
  for (const name of ['a', 'b', 'c']) {
    const f = files.addFile(`/${name}.bin`, { size: 3_000_000, throttle: 3_000_000 });
    ids.push((await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download.id);
  }
  let reads = 0;
  let sawProgress = false;
  for (;;) {
    const text = await fs.readFile(srv.statusFile, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      const data = JSON.parse(text) as Record<string, Entry>; // throws (fails the test) on a torn write
      reads++;
      const values = Object.values(data);
      if (values.some((e) => e.status === 'downloading' && e.downloaded > 0)) sawProgress = true;
      if (values.length === 3 && values.every((e) => e.status === 'completed')) break;
    }
  }
  expect(sawProgress).toBe(true);
  expect(reads).toBeGreaterThan(20);
});

test('progress writes are coalesced: a few per second, whatever the number of downloads', async () => {
  const srv = await start({ MAX_CONCURRENT: '4' });
  const stat = async (): Promise<number> => (await fs.stat(srv.statusFile)).mtimeMs;
  for (const name of ['w', 'x', 'y', 'z']) {
    const f = files.addFile(`/${name}.bin`, { size: 12_000_000, throttle: 2_000_000 });
    await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  }
  // State changes are written at once (not coalesced): open the window only once all four are
  // downloading, so that it sees progress writes alone (the files last 6 s, well past the window).
  await waitFor(async () => {
    const entries = Object.values((await srv.api('GET', '/status')).body as Record<string, Entry>);
    return entries.length === 4 && entries.every((e) => e.status === 'downloading' && e.downloaded > 0);
  }, 'all four downloading');
  // Count distinct versions of the file seen during one second of transfer (each rewrite changes
  // the byte counts; inode numbers are no use: the filesystem reuses them at once).
  await srv.store.flush();
  const versions = new Set<string>();
  const t0 = Date.now();
  while (Date.now() - t0 < 1000) {
    versions.add(await fs.readFile(srv.statusFile, 'utf8'));
    await new Promise((r) => setImmediate(r));
  }
  expect(await stat()).toBeGreaterThan(0);
  // writeIntervalMs is 100 ms in tests: ≤ ~10 writes a second, not one per progress event (4 downloads × 20/s).
  expect(versions.size).toBeGreaterThan(2);
  expect(versions.size).toBeLessThanOrEqual(12);
});

test('a corrupt status file at start-up is kept aside and the server starts', async () => {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  await fs.writeFile(path.join(dir, 'status.json'), '{"loras/a.bin": {"url": "http://x/a.bin", "status": "downl');
  const srv = await start({}, dir);
  expect((await srv.api('GET', '/status')).body).toEqual({});
  const aside = (await fs.readdir(dir)).filter((n) => n.startsWith('status.json.bad-'));
  expect(aside).toHaveLength(1);
  expect(await fs.readFile(path.join(dir, aside[0]!), 'utf8')).toContain('"downl');
  expect(srv.log.lines.some((l) => l.includes('kept it as') && l.includes('not valid JSON'))).toBe(true);
});

test('unusable entries are dropped (and logged), good ones kept; a dest outside MODELS_DIR is refused', async () => {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  const good = { id: 'good1', url: 'http://127.0.0.1:1/a.bin', status: 'completed', progress: 100, downloaded: 5, file_size: 5, speed: 0, eta: null, start_time: Date.now() / 1000, timestamp: Date.now() / 1000 };
  await fs.writeFile(
    path.join(dir, 'status.json'),
    JSON.stringify({ 'loras/a.bin': good, 'loras/b.bin': { status: 'weird' }, '../../etc/evil': { ...good, id: 'evil' }, 'noslash': good }),
  );
  const srv = await start({}, dir);
  const status = (await srv.api('GET', '/status')).body;
  expect(Object.keys(status)).toEqual(['loras/a.bin']);
  expect(status['loras/a.bin']).toMatchObject({ id: 'good1', status: 'completed', file_size_mb: 0 });
  expect(srv.log.lines.some((l) => l.includes('dropped 3 unusable entries'))).toBe(true);
});

test('an edit by another process is loaded and pushed to subscribers as a snapshot; our own writes are not', async () => {
  const srv = await start();
  const f = files.addFile('/e.bin', { size: 10_000 });
  const id = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download.id;
  await waitFor(() => srv.store.getById(id)?.status === 'completed', 'completion');
  await srv.store.flush();
  const sock = await connectWs(srv.url);
  try {
    const first = await sock.next((m) => m.type === 'snapshot');
    expect((first as SnapshotMessage).downloads.map((d) => d.id)).toEqual([id]);
    const data = JSON.parse(await fs.readFile(srv.statusFile, 'utf8')) as Record<string, Entry>;
    data['loras/e.bin']!.filename = 'e.bin';
    data['vae/other.bin'] = { ...data['loras/e.bin']!, id: 'ext1', dest: 'vae/other.bin', folder: 'vae', filename: 'other.bin', status: 'error', error: { code: 'X', message: 'from a bot' } };
    await fs.writeFile(srv.statusFile, JSON.stringify(data));
    const snap = (await sock.next((m) => m.type === 'snapshot' && m !== first)) as SnapshotMessage;
    expect(snap.downloads.map((d) => d.dest).sort()).toEqual(['loras/e.bin', 'vae/other.bin']);
    expect(srv.store.getById('ext1')?.error?.message).toBe('from a bot');
    expect(snap.seq).toBeGreaterThan(first.type === 'snapshot' ? first.seq : 0);
    expect(srv.log.lines.some((l) => l.includes('edited by another process'))).toBe(true);
    // Our own later writes do not come back as "external" edits.
    const before = srv.log.lines.filter((l) => l.includes('edited by another process')).length;
    await srv.api('POST', '/clear_completed');
    await srv.store.flush();
    const g = files.addFile('/g.bin', { size: 10_000 });
    const gid = (await srv.api('POST', '/api/downloads', { url: g.url, folder: 'loras' })).body.download.id;
    await waitFor(() => srv.store.getById(gid)?.status === 'completed', 'g');
    await srv.store.flush();
    await sock.next((m) => m.type === 'update' && m.download.id === gid && m.download.status === 'completed');
    expect(srv.log.lines.filter((l) => l.includes('edited by another process')).length).toBe(before);
    expect(sock.messages.filter((m) => m.type === 'snapshot')).toHaveLength(2);
  } finally {
    await sock.close();
  }
});

test('stale entries become errors periodically; retention drops old finished ones', async () => {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  const old = Date.now() / 1000 - 3 * 3600;
  const base = { url: 'http://127.0.0.1:1/x.bin', progress: 0, downloaded: 0, file_size: null, speed: 0, eta: null, start_time: old, timestamp: old };
  await fs.writeFile(path.join(dir, 'status.json'), JSON.stringify({
    'loras/old.bin': { ...base, id: 'old', status: 'completed', completion_time: old },
    'loras/recent.bin': { ...base, id: 'recent', status: 'completed', completion_time: Date.now() / 1000 },
  }));
  const srv = await startTestServer({ RETENTION_HOURS: '2', STALE_MINUTES: '1' }, { dir, downloader: { maintenanceIntervalMs: 50 } });
  servers.push(srv);
  await waitFor(() => srv.store.getById('old') === undefined, 'retention to drop the old entry');
  expect(srv.store.getById('recent')).toBeDefined();
  // An entry that says "downloading" with no transfer behind it (written by another process).
  await srv.store.flush();
  const data = JSON.parse(await fs.readFile(srv.statusFile, 'utf8')) as Record<string, Entry>;
  data['loras/ghost.bin'] = { ...(base as unknown as Entry), id: 'ghost', dest: 'loras/ghost.bin', folder: 'loras', filename: 'ghost.bin', status: 'downloading', attempts: 1 };
  await fs.writeFile(srv.statusFile, JSON.stringify(data));
  const ghost = await waitFor(() => (srv.store.getById('ghost')?.status === 'error' ? srv.store.getById('ghost') : undefined), 'the ghost to be marked stale');
  expect(ghost.error).toMatchObject({ code: 'STALE', message: expect.stringContaining('retry') });
});

test('a live transfer is never marked stale', async () => {
  const srv = await start({ STALE_MINUTES: '0.01' }); // 0.6 s
  await srv.stop();
  const f = files.addFile('/live.bin', { size: 3_000_000, throttle: 1_000_000 });
  const s2 = await startTestServer({ STALE_MINUTES: '0.01' }, { downloader: { maintenanceIntervalMs: 50, progressIntervalMs: 2000 } });
  servers.splice(0, 1, s2);
  const id = (await s2.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download.id;
  await waitFor(() => s2.store.getById(id)?.status === 'completed', 'completion', 15_000);
  expect(s2.store.getById(id)!.error).toBeUndefined();
});

test('a partial download whose entry was lost (status file gone) comes back as paused, and resumes', async () => {
  const f = files.addFile('/orphan.bin', { size: 2_000_000, throttle: 1_000_000 });
  const first = await start();
  const id = (await first.api('POST', '/api/downloads', { url: f.url, folder: 'loras', sha256: f.sha256 })).body.download.id as string;
  await waitFor(() => (first.store.getById(id)?.downloaded ?? 0) > 200_000, 'some bytes');
  await first.api('POST', `/api/downloads/${id}/pause`);
  await waitFor(() => !first.downloader.isLive('loras/orphan.bin'), 'the pause');
  const dir = first.dir;
  await first.stop({ keepDir: true });
  servers.splice(servers.indexOf(first), 1);
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  await fs.rm(path.join(dir, 'status.json'));

  const second = await start({}, dir);
  const adopted = second.store.get('loras/orphan.bin')!;
  expect(adopted).toMatchObject({ status: 'paused', url: f.url, file_size: f.size });
  expect(adopted.downloaded).toBeGreaterThan(200_000);
  expect(second.log.lines.some((l) => l.includes('found a partial download of loras/orphan.bin'))).toBe(true);
  await second.api('POST', `/api/downloads/${adopted.id}/resume`);
  await waitFor(() => second.store.get('loras/orphan.bin')?.status === 'completed', 'completion');
  const resumed = files.requests.filter((r) => r.path === '/orphan.bin')[1]!;
  expect(Number(/bytes=(\d+)-/.exec(resumed.range ?? '')?.[1])).toBe(adopted.downloaded);
});

test('at start-up the temp file of a map write a kill cut short is removed; one being written now and other files stay', async () => {
  const first = await start();
  const dir = first.dir;
  await first.stop({ keepDir: true });
  servers.splice(servers.indexOf(first), 1);
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  const loras = path.join(dir, 'models', 'loras');
  await fs.mkdir(loras, { recursive: true });
  const cut = path.join(loras, 'style.safetensors.part.json.0a1b2c3d4e5f');
  await fs.writeFile(cut, '{"url":"http://x/style.safetensors"');
  const past = new Date(Date.now() - 3_600_000); // left by a server that ran before this one
  await fs.utimes(cut, past, past);
  const current = path.join(loras, 'live.safetensors.part.json.ffeeddccbbaa'); // this process's own write under way
  await fs.writeFile(current, '{}');
  const theirs = path.join(loras, 'notes.part.json.backup');
  await fs.writeFile(theirs, 'a user file');
  await fs.utimes(theirs, past, past);

  const second = await start({}, dir);
  await expect(fs.access(cut)).rejects.toMatchObject({ code: 'ENOENT' });
  expect(await fs.readFile(current, 'utf8')).toBe('{}');
  expect(await fs.readFile(theirs, 'utf8')).toBe('a user file');
  expect(second.log.lines.some((l) => l.includes('removed loras/style.safetensors.part.json.0a1b2c3d4e5f, the temp file of a segment map write cut short'))).toBe(true);
  expect(second.store.all()).toEqual([]);
});

test('clearing a failed download removes its .part; clearing a completed one keeps the file', async () => {
  const srv = await start();
  const f = files.addFile('/fails.bin', { size: 1_000_000 });
  files.fault('/fails.bin', { resetAfter: 300_000 }, ...Array.from({ length: 8 }, () => ({ status: 500 })));
  const id = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download.id as string;
  await waitFor(() => srv.store.getById(id)?.status === 'error', 'the failure');
  const part = path.join(srv.modelsDir, 'loras', 'fails.bin.part');
  expect((await fs.stat(part)).size).toBe(300_000); // kept while the entry is there: retry resumes it
  const ok = files.addFile('/ok.bin', { size: 1000 });
  const okId = (await srv.api('POST', '/api/downloads', { url: ok.url, folder: 'loras' })).body.download.id as string;
  await waitFor(() => srv.store.getById(okId)?.status === 'completed', 'the other download');
  expect((await srv.api('POST', '/clear_completed')).body.removed_count).toBe(2);
  await waitFor(async () => !(await fs.access(part).then(() => true, () => false)), 'the .part to go');
  expect((await fs.stat(path.join(srv.modelsDir, 'loras', 'ok.bin'))).size).toBe(1000);
});
