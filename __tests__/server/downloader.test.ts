import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, waitFor, type TestServer } from '../helpers/harness';

let files: FileServer;
let srv: TestServer;

beforeEach(async () => {
  files = await startFileServer();
  srv = await startTestServer();
});
afterEach(async () => {
  await srv.stop();
  await files.close();
});

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const entryOf = (id: string): Entry | undefined => srv.store.getById(id);
const until = (id: string, status: Entry['status'], timeoutMs = 15_000): Promise<Entry> =>
  waitFor(() => {
    const e = entryOf(id);
    return e?.status === status ? e : undefined;
  }, `download ${id} to be ${status} (now ${entryOf(id)?.status} ${JSON.stringify(entryOf(id)?.error)})`, timeoutMs);
const add = async (body: Record<string, unknown>): Promise<Entry> => {
  const res = await srv.api('POST', '/api/downloads', body);
  expect(res.status).toBe(202);
  return res.body.download as Entry;
};
const finalFile = (dest: string): Promise<Buffer> => fs.readFile(path.join(srv.modelsDir, dest));
const partExists = (dest: string): Promise<boolean> => fs.access(path.join(srv.modelsDir, `${dest}.part`)).then(() => true, () => false);

test('downloads a file with the right bytes and verifies its sha256', async () => {
  const f = files.addFile('/models/model.safetensors', { size: 3_000_000 });
  const e = await add({ url: f.url, folder: 'checkpoints', sha256: f.sha256 });
  expect(e).toMatchObject({ dest: 'checkpoints/model.safetensors', status: 'queued', folder: 'checkpoints', filename: 'model.safetensors' });
  const done = await until(e.id, 'completed');
  expect(done).toMatchObject({ progress: 100, downloaded: f.size, file_size: f.size, sha256: f.sha256, speed: 0, attempts: 1 });
  expect(done.completion_time).toBeGreaterThanOrEqual(done.start_time);
  expect(sha(await finalFile(e.dest))).toBe(f.sha256);
  expect(await partExists(e.dest)).toBe(false);
  await expect(fs.access(path.join(srv.modelsDir, `${e.dest}.part.json`))).rejects.toThrow();
});

test('a wrong sha256 ends in error, with no file at dest and no .part left', async () => {
  const f = files.addFile('/bad.bin', { size: 200_000 });
  const e = await add({ url: f.url, folder: 'loras', sha256: 'a'.repeat(64) });
  const failed = await until(e.id, 'error');
  expect(failed.error).toMatchObject({ code: 'SHA256_MISMATCH' });
  expect(failed.error!.message).toContain(f.sha256);
  await expect(finalFile(e.dest)).rejects.toThrow();
  expect(await partExists(e.dest)).toBe(false);
});

test('a server that ignores Range: the file is started over, never appended to', async () => {
  const f = files.addFile('/norange.bin', { size: 2_000_000, ignoreRange: true });
  files.fault('/norange.bin', { resetAfter: 700_000 });
  const e = await add({ url: f.url, folder: 'vae', sha256: f.sha256 });
  const done = await until(e.id, 'completed');
  expect(done.attempts).toBe(2);
  const ranged = files.requests.filter((r) => r.path === '/norange.bin' && r.range);
  expect(ranged.length).toBe(1); // it asked to resume…
  expect(ranged[0]!.status).toBe(200); // …was answered with the whole file…
  expect(sha(await finalFile(e.dest))).toBe(f.sha256); // …and did not splice it on
});

test('resumes after a reset mid-body with Range and If-Range', async () => {
  const f = files.addFile('/reset.bin', { size: 1_500_000 });
  files.fault('/reset.bin', { resetAfter: 600_000 });
  const e = await add({ url: f.url, folder: 'loras' });
  await until(e.id, 'completed');
  const second = files.requests.filter((r) => r.path === '/reset.bin')[1]!;
  const offset = Number(/bytes=(\d+)-/.exec(second.range ?? '')?.[1]);
  expect(offset).toBeGreaterThan(0);
  expect(second.headers['if-range']).toBeTruthy();
  expect(second.status).toBe(206);
  expect(second.bytesSent).toBe(f.size - offset);
  expect(sha(await finalFile(e.dest))).toBe(f.sha256);
});

test('retries 503 and 429 (honouring Retry-After), then succeeds', async () => {
  const f = files.addFile('/busy.bin', { size: 100_000 });
  files.fault('/busy.bin', { status: 503 }, { status: 429, retryAfter: '1' });
  const e = await add({ url: f.url, folder: 'loras' });
  await waitFor(() => entryOf(e.id)?.error?.code === 'HTTP_429' && entryOf(e.id)!.status === 'starting', 'the 429 to show as a retry');
  expect(entryOf(e.id)!.error!.message).toMatch(/429.*retrying in 1 s/);
  const done = await until(e.id, 'completed');
  expect(done.attempts).toBe(3);
  expect(done.error).toBeUndefined();
  const times = files.requests.filter((r) => r.path === '/busy.bin').map((r) => r.startedAt);
  expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(950); // waited as asked
});

test('a 404 is not retried and says what happened', async () => {
  const e = await add({ url: `${files.url}/missing.bin`, folder: 'loras' });
  const failed = await until(e.id, 'error');
  expect(failed.error).toEqual({ code: 'HTTP_404', message: expect.stringContaining('404') });
  expect(failed.attempts).toBe(1);
});

test('persistent 5xx gives up after the retry budget with a clear message', async () => {
  const f = files.addFile('/down.bin', { size: 1000 });
  files.fault('/down.bin', ...Array.from({ length: 10 }, () => ({ status: 502 })));
  const e = await add({ url: f.url, folder: 'loras' });
  const failed = await until(e.id, 'error');
  expect(failed.error!.code).toBe('HTTP_502');
  expect(failed.error!.message).toMatch(/gave up after 6 attempts/);
});

test('a stalled transfer is aborted and resumed', async () => {
  const f = files.addFile('/stall.bin', { size: 800_000 });
  files.fault('/stall.bin', { stallAfter: 300_000 });
  const e = await add({ url: f.url, folder: 'loras', sha256: f.sha256 });
  const done = await until(e.id, 'completed');
  expect(done.attempts).toBe(2);
  expect(files.requests.filter((r) => r.path === '/stall.bin')[1]!.range).toMatch(/^bytes=\d+-$/);
  expect(sha(await finalFile(e.dest))).toBe(f.sha256);
});

test('a file that changed upstream between attempts is fetched again whole', async () => {
  files.addFile('/changing.bin', { size: 1_000_000 });
  files.fault('/changing.bin', { resetAfter: 400_000 });
  const e = await add({ url: `${files.url}/changing.bin`, folder: 'loras' });
  await files.waitForRequest((r) => r.path === '/changing.bin' && r.fault !== undefined);
  const changed = files.setFileOptions('/changing.bin', { size: 1_000_000 });
  await until(e.id, 'completed');
  expect(sha(await finalFile(e.dest))).toBe(changed.sha256);
});

test('pause keeps the .part; resume continues from it; cancel removes it', async () => {
  const f = files.addFile('/slow.bin', { size: 2_000_000, throttle: 1_000_000 });
  const e = await add({ url: f.url, folder: 'loras', sha256: f.sha256 });
  await waitFor(() => (entryOf(e.id)?.downloaded ?? 0) > 200_000, 'some bytes');
  const paused = await srv.api('POST', `/api/downloads/${e.id}/pause`);
  expect(paused.status).toBe(200);
  expect(paused.body.download).toMatchObject({ status: 'paused', speed: 0 });
  await waitFor(() => srv.downloader.isLive(e.dest) === false, 'the transfer to stop');
  const kept = (await fs.stat(path.join(srv.modelsDir, `${e.dest}.part`))).size;
  expect(kept).toBeGreaterThan(0);
  expect((await srv.api('POST', `/api/downloads/${e.id}/pause`)).status).toBe(409);

  expect((await srv.api('POST', `/api/downloads/${e.id}/resume`)).body.download.status).toBe('queued');
  await until(e.id, 'completed');
  const resumed = files.requests.filter((r) => r.path === '/slow.bin')[1]!;
  expect(resumed.range).toBe(`bytes=${kept}-`);
  expect(sha(await finalFile(e.dest))).toBe(f.sha256);

  const g = files.addFile('/slow2.bin', { size: 2_000_000, throttle: 500_000 });
  const e2 = await add({ url: g.url, folder: 'loras' });
  await waitFor(() => (entryOf(e2.id)?.downloaded ?? 0) > 100_000, 'some bytes');
  expect((await srv.api('POST', `/api/downloads/${e2.id}/cancel`)).body.download.status).toBe('cancelled');
  await waitFor(async () => !srv.downloader.isLive(e2.dest) && !(await partExists(e2.dest)), 'the .part to be removed');
  await expect(finalFile(e2.dest)).rejects.toThrow();
  expect((await srv.api('POST', `/api/downloads/${e2.id}/retry`)).body.download.status).toBe('queued');
  await until(e2.id, 'completed');
});

test('two POSTs for the same dest in the same tick start one transfer', async () => {
  const f = files.addFile('/dup.bin', { size: 500_000, throttle: 2_000_000 });
  const [a, b] = await Promise.all([
    srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' }),
    srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' }),
  ]);
  expect([a.status, b.status].sort()).toEqual([202, 409]);
  const refused = a.status === 409 ? a : b;
  expect(refused.body.error.code).toBe('ALREADY_ACTIVE');
  expect(refused.body.download.dest).toBe('loras/dup.bin');
  const id = (a.status === 202 ? a : b).body.download.id as string;
  await until(id, 'completed');
  expect(files.requests.filter((r) => r.path === '/dup.bin')).toHaveLength(1);
  const again = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  expect(again).toMatchObject({ status: 200, body: { status: 'already_exists', download: { dest: 'loras/dup.bin', status: 'completed' } } });
});

test('MAX_CONCURRENT bounds transfers; the rest wait as queued', async () => {
  await srv.stop();
  srv = await startTestServer({ MAX_CONCURRENT: '1' });
  const a = files.addFile('/a.bin', { size: 400_000, throttle: 1_000_000 });
  const b = files.addFile('/b.bin', { size: 400_000, throttle: 1_000_000 });
  const ea = await add({ url: a.url, folder: 'loras' });
  const eb = await add({ url: b.url, folder: 'loras' });
  await waitFor(() => entryOf(ea.id)?.status === 'downloading', 'a to download');
  expect(entryOf(eb.id)!.status).toBe('queued');
  await until(eb.id, 'completed');
  const first = files.requests.find((r) => r.path === '/b.bin')!;
  expect(first.startedAt).toBeGreaterThanOrEqual(files.requests.find((r) => r.path === '/a.bin' && r.finished)!.startedAt);
});

test('no Content-Length: downloads to the end of the stream', async () => {
  const f = files.addFile('/chunked.bin', { size: 300_000, noContentLength: true });
  const e = await add({ url: f.url, folder: 'loras' });
  const done = await until(e.id, 'completed');
  expect(done.file_size).toBe(f.size);
  expect(sha(await finalFile(e.dest))).toBe(f.sha256);
});

test('a redirect loop ends in a clear error', async () => {
  files.fault('/loop1', ...Array.from({ length: 20 }, (_, i) => ({ redirectTo: `${files.url}/loop${i % 2 ? 1 : 2}` })));
  files.fault('/loop2', ...Array.from({ length: 20 }, () => ({ redirectTo: `${files.url}/loop1` })));
  const e = await add({ url: `${files.url}/loop1`, folder: 'loras', filename: 'x.bin' });
  const failed = await until(e.id, 'error');
  expect(failed.error!.code).toBe('REDIRECT_LOOP');
});

test('a .part that is already whole (416 on resume) is verified and finished without refetching', async () => {
  const f = files.addFile('/whole.bin', { size: 300_000 });
  const dir = srv.dir;
  await srv.stop({ keepDir: true });
  const abs = path.join(dir, 'models', 'loras', 'whole.bin');
  await fs.mkdir(path.dirname(abs), { recursive: true });
  await fs.writeFile(`${abs}.part`, f.data);
  await fs.writeFile(`${abs}.part.json`, JSON.stringify({ url: f.url, fileSize: f.size }));
  const t = Date.now() / 1000;
  await fs.writeFile(path.join(dir, 'status.json'), JSON.stringify({
    'loras/whole.bin': { id: 'w1', url: f.url, status: 'downloading', progress: 99, downloaded: f.size, file_size: f.size, speed: 5, eta: 1, start_time: t, timestamp: t, attempts: 1, sha256: f.sha256 },
  }));
  const restarted = await startTestServer({}, { dir });
  const stopRestarted = restarted.stop;
  srv = Object.assign(restarted, { stop: async () => { await stopRestarted(); await fs.rm(dir, { recursive: true, force: true }); } });
  const done = await until('w1', 'completed');
  expect(done).toMatchObject({ downloaded: f.size, sha256: f.sha256, attempts: 2 });
  const reqs = files.requests.filter((r) => r.path === '/whole.bin');
  expect(reqs).toHaveLength(1);
  expect(reqs[0]).toMatchObject({ range: `bytes=${f.size}-`, status: 416 });
  expect(sha(await fs.readFile(abs))).toBe(f.sha256);
});

test('overwrite replaces an existing file only once the new one is complete', async () => {
  const f = files.addFile('/over.bin', { size: 500_000, throttle: 1_000_000 });
  const abs = path.join(srv.modelsDir, 'loras', 'over.bin');
  await fs.mkdir(path.dirname(abs), { recursive: true });
  await fs.writeFile(abs, 'old content');
  const exists = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  expect(exists.body).toMatchObject({ status: 'already_exists', download: { status: 'completed', file_size: 11 } });
  const e = await add({ url: f.url, folder: 'loras', overwrite: true });
  await waitFor(() => (entryOf(e.id)?.downloaded ?? 0) > 100_000, 'some bytes');
  expect(await fs.readFile(abs, 'utf8')).toBe('old content'); // still the old file while the new one downloads
  await until(e.id, 'completed');
  expect(sha(await fs.readFile(abs))).toBe(f.sha256);
});

test('a web page or JSON error served instead of a model ends in a clear error, not a file', async () => {
  files.addFile('/login', { data: Buffer.from('<html><head><title>Sign in to continue</title></head><body>…</body></html>'), contentType: 'text/html; charset=utf-8' });
  files.addFile('/api.bin', { data: Buffer.from('{"error":"Unauthorized: token required"}'), contentType: 'application/json' });
  const page = await add({ url: `${files.url}/login`, folder: 'loras', filename: 'model.safetensors' });
  const json = await add({ url: `${files.url}/api.bin`, folder: 'loras' });
  const a = await until(page.id, 'error');
  const b = await until(json.id, 'error');
  expect(a.error).toEqual({ code: 'NOT_A_FILE', message: expect.stringContaining('a web page instead of the file (Sign in to continue)') });
  expect(b.error!.message).toContain('Unauthorized: token required');
  await expect(finalFile(page.dest)).rejects.toThrow();
  expect(await partExists(json.dest)).toBe(false);
});

test('bytes that arrive in a burst before a silence still show as progress', async () => {
  await srv.stop();
  srv = await startTestServer({}, { downloader: { stallMs: 10_000 } });
  const f = files.addFile('/burst.bin', { size: 1_000_000 });
  files.fault('/burst.bin', { stallAfter: 300_000 });
  const e = await add({ url: f.url, folder: 'loras' });
  await files.waitForBytes('/burst.bin', 300_000);
  const seen = await waitFor(() => {
    const now = entryOf(e.id);
    return now?.status === 'downloading' && now.downloaded === 300_000 ? now : undefined;
  }, 'the burst to show while the connection is silent');
  expect(seen.progress).toBe(30);
  files.releaseStalls();
});

test('a file renamed into place just before a kill is finished from disk, not fetched again', async () => {
  const f = files.addFile('/renamed.bin', { size: 400_000 });
  const dir = srv.dir;
  await srv.stop({ keepDir: true });
  const abs = path.join(dir, 'models', 'loras', 'renamed.bin');
  await fs.mkdir(path.dirname(abs), { recursive: true });
  await fs.writeFile(abs, f.data); // the rename happened; the status write that says so did not
  const t = Date.now() / 1000; // the download began a minute before its file was renamed into place
  await fs.writeFile(path.join(dir, 'status.json'), JSON.stringify({
    'loras/renamed.bin': { id: 'r1', url: f.url, status: 'verifying', progress: 100, downloaded: f.size, file_size: f.size, speed: 0, eta: null, start_time: t - 60, timestamp: t, attempts: 1, sha256: f.sha256 },
  }));
  const restarted = await startTestServer({}, { dir });
  const stopRestarted = restarted.stop;
  srv = Object.assign(restarted, { stop: async () => { await stopRestarted(); await fs.rm(dir, { recursive: true, force: true }); } });
  const done = await until('r1', 'completed');
  expect(done).toMatchObject({ downloaded: f.size, sha256: f.sha256 });
  expect(files.requests.filter((r) => r.path === '/renamed.bin')).toHaveLength(0);
  expect(sha(await fs.readFile(abs))).toBe(f.sha256);
});
