import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import type { PartMeta } from '../../server/disk/part-file';
import { spawnServer, type ChildServer } from '../helpers/child-server';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';

let files: FileServer;
let srv: TestServer | undefined;
const children: ChildServer[] = [];
beforeEach(async () => {
  files = await startFileServer();
});
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill('SIGKILL');
  await srv?.stop();
  srv = undefined;
  await files.close();
});

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const KiB = 1024;
const start = (env: Record<string, string> = {}): Promise<TestServer> =>
  startTestServer({ CONNECTIONS: '4', ...env }, { downloader: { minSegmentBytes: 256 * KiB } });
async function download(s: TestServer, body: Record<string, unknown>): Promise<Entry> {
  const res = await s.api('POST', '/api/downloads', body);
  expect(res.status).toBe(202);
  const id = res.body.download.id as string;
  return waitFor(() => {
    const e = s.store.getById(id);
    if (e?.status === 'error') throw new Error(`failed: ${e.error?.message}`);
    return e?.status === 'completed' ? e : undefined;
  }, 'completion', 20_000);
}
const ranges = (p: string): string[] => files.requests.filter((r) => r.path === p && r.range).map((r) => r.range!);

test('a segmented download writes identical bytes, over several connections at once', async () => {
  srv = await start();
  const f = files.addFile('/seg.bin', { size: 3 * 1024 * KiB + 123, throttle: 2 * 1024 * KiB });
  const seen: number[] = [];
  const verifying: number[] = [];
  srv.store.on('update', (e) => {
    if (e.dest === 'loras/seg.bin' && e.status === 'downloading') seen.push(e.downloaded);
    if (e.dest === 'loras/seg.bin' && e.status === 'verifying') verifying.push(e.progress);
  });
  const done = await download(srv, { url: f.url, folder: 'loras', sha256: f.sha256 });
  expect(done).toMatchObject({ downloaded: f.size, file_size: f.size, sha256: f.sha256 });
  expect(sha(await fs.readFile(path.join(srv.modelsDir, 'loras/seg.bin')))).toBe(f.sha256);
  const asked = ranges('/seg.bin');
  expect(asked[0]).toBe('bytes=0-0'); // the probe
  expect(asked.filter((r) => /^bytes=\d+-\d+$/.test(r) && r !== 'bytes=0-0').length).toBeGreaterThanOrEqual(4);
  // Connections overlapped in time: the four segment requests were all open before the first ended.
  const segs = files.requests.filter((r) => r.path === '/seg.bin' && r.range !== 'bytes=0-0').slice(0, 4);
  expect(Math.max(...segs.map((r) => r.startedAt)) - Math.min(...segs.map((r) => r.startedAt))).toBeLessThan(500);
  // Progress is the sum over segments: never more than the file, never going back.
  expect(seen.length).toBeGreaterThan(3);
  for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!);
  expect(Math.max(...seen)).toBeLessThanOrEqual(f.size);
  await expect(fs.access(path.join(srv.modelsDir, 'loras/seg.bin.part.json'))).rejects.toThrow();
  // Bytes from several connections cannot stream through one hash: a worker hashed the written
  // prefix of the .part as it grew, so verifying never went back to 0 % for a pass of its own.
  expect(srv.log.lines.some((l) => l.includes('loras/seg.bin: sha256 computed while downloading'))).toBe(true);
  expect(srv.log.lines.some((l) => l.includes('whole file'))).toBe(false);
  expect(verifying.length).toBeGreaterThan(0);
  expect(verifying.every((p, i) => i === 0 || p >= verifying[i - 1]!)).toBe(true);
});

test('work stealing: an idle connection takes half of the biggest range left', async () => {
  srv = await start({ CONNECTIONS: '2' });
  const f = files.addFile('/steal.bin', { size: 2 * 1024 * KiB, throttle: 1024 * KiB });
  files.fault('/steal.bin', {}, { stallAfter: 64 * KiB }); // the probe, then one connection stalls
  const done = await download(srv, { url: f.url, folder: 'loras', sha256: f.sha256 });
  expect(done.sha256).toBe(f.sha256);
  expect(sha(await fs.readFile(path.join(srv.modelsDir, 'loras/steal.bin')))).toBe(f.sha256);
  expect(srv.log.lines.some((l) => l.includes('split range'))).toBe(true);
  expect(ranges('/steal.bin').length - 1).toBeGreaterThan(2); // more ranges than connections
  files.releaseStalls();
});

test('a server that refuses ranges falls back to one connection', async () => {
  srv = await start();
  const f = files.addFile('/plain.bin', { size: 2 * 1024 * KiB, acceptRanges: false });
  await download(srv, { url: f.url, folder: 'loras', sha256: f.sha256 });
  const reqs = files.requests.filter((r) => r.path === '/plain.bin');
  expect(reqs).toHaveLength(2); // the probe answered 200, then one plain transfer
  expect(reqs.every((r) => r.status === 200)).toBe(true);
  expect(sha(await fs.readFile(path.join(srv.modelsDir, 'loras/plain.bin')))).toBe(f.sha256);
});

test('kill -9 mid-segment: every segment resumes where it stopped', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const size = 24 * 1024 * KiB;
    const f = files.addFile('/big.bin', { size, throttle: 2 * 1024 * KiB });
    const env = { MODELS_DIR: path.join(dir, 'models'), STATUS_FILE: path.join(dir, 'status.json'), CATALOG_FILE: path.join(dir, 'catalog.json'), CONNECTIONS: '4' };
    const first = await spawnServer(env);
    children.push(first);
    await fetch(`${first.url}/api/downloads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: f.url, folder: 'checkpoints', sha256: f.sha256 }) });
    const metaFile = path.join(dir, 'models', 'checkpoints', 'big.bin.part.json');
    const readMap = async (): Promise<PartMeta> => JSON.parse(await fs.readFile(metaFile, 'utf8')) as PartMeta;
    const before = await waitFor(async () => {
      const m = await readMap();
      return m.segments!.every((s) => s.done > 1024 * KiB) ? m : undefined;
    }, 'every segment to have a megabyte on disk', 20_000);
    await first.kill('SIGKILL');
    const sentBefore = files.requests.filter((r) => r.path === '/big.bin').reduce((n, r) => n + r.bytesSent, 0);

    const second = await spawnServer(env);
    children.push(second);
    const afterKill = files.requests.length;
    await waitFor(async () => {
      const s = (await (await fetch(`${second.url}/status`)).json()) as Record<string, Entry>;
      return s['checkpoints/big.bin']?.status === 'completed';
    }, 'completion after restart', 30_000);
    const resumed = files.requests.slice(afterKill).filter((r) => r.path === '/big.bin').map((r) => Number(/^bytes=(\d+)-/.exec(r.range ?? '')?.[1]));
    for (const seg of before.segments!) {
      // Each segment's first request after the restart starts at or after what the map said was done.
      expect(resumed.some((from) => from >= seg.start + seg.done && from < seg.end)).toBe(true);
    }
    expect(resumed).not.toContain(0);
    const sentTotal = files.requests.filter((r) => r.path === '/big.bin').reduce((n, r) => n + r.bytesSent, 0);
    expect(sentTotal - sentBefore).toBeLessThan(size - 4 * 1024 * KiB); // not fetched again from zero
    expect(sha(await fs.readFile(path.join(dir, 'models', 'checkpoints', 'big.bin')))).toBe(f.sha256);
  } finally {
    await cleanup();
  }
});

test('a .part begun on one connection continues on several, keeping its bytes', async () => {
  const one = await startTestServer({ CONNECTIONS: '1' });
  const f = files.addFile('/grow.bin', { size: 3 * 1024 * KiB, throttle: 1024 * KiB });
  const id = (await one.api('POST', '/api/downloads', { url: f.url, folder: 'loras', sha256: f.sha256 })).body.download.id as string;
  await waitFor(() => (one.store.getById(id)?.downloaded ?? 0) > 512 * KiB, 'half a megabyte');
  await one.api('POST', `/api/downloads/${id}/pause`);
  await waitFor(() => !one.downloader.isLive('loras/grow.bin'), 'the pause');
  const kept = (await fs.stat(path.join(one.modelsDir, 'loras/grow.bin.part'))).size;
  await one.stop({ keepDir: true });
  const seen = files.requests.length;
  srv = await startTestServer({ CONNECTIONS: '4' }, { dir: one.dir, downloader: { minSegmentBytes: 256 * KiB } });
  await srv.api('POST', `/api/downloads/${id}/resume`);
  await waitFor(() => srv!.store.getById(id)?.status === 'completed', 'completion', 20_000);
  const after = files.requests.slice(seen).map((r) => Number(/^bytes=(\d+)-/.exec(r.range ?? '')?.[1]));
  expect(after[0]).toBe(kept); // the first range continues the bytes on disk
  expect(after.length).toBeGreaterThan(1); // and idle connections took parts of the rest
  expect(Math.min(...after)).toBe(kept);
  expect(sha(await fs.readFile(path.join(srv.modelsDir, 'loras/grow.bin')))).toBe(f.sha256);
  await fs.rm(one.dir, { recursive: true, force: true }).catch(() => undefined);
});

test('a range that fails for good stops the other connections and ends in a clear error', async () => {
  srv = await start();
  const f = files.addFile('/gone.bin', { size: 4 * 1024 * KiB, throttle: 512 * KiB });
  files.fault('/gone.bin', {}, {}, { status: 404 }); // the probe, one range, then a 404 for the next
  const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  const id = res.body.download.id as string;
  const failed = await waitFor(() => (srv!.store.getById(id)?.status === 'error' ? srv!.store.getById(id) : undefined), 'the error');
  expect(failed.error).toMatchObject({ code: 'HTTP_404' });
  await waitFor(() => !srv!.downloader.isLive('loras/gone.bin'), 'the job to end');
  // Every connection was stopped: nothing is still being sent.
  await waitFor(() => files.requests.filter((r) => r.path === '/gone.bin').every((r) => r.finished || r.status !== 206 || r.bytesSent < f.size), 'the ranges to stop');
  const sent = files.requests.filter((r) => r.path === '/gone.bin').reduce((n, r) => n + r.bytesSent, 0);
  expect(sent).toBeLessThan(f.size / 2); // without the stop, the other ranges would run to their end
});

test('a range waiting out a Retry-After longer than the stall timeout is not taken for a stall', async () => {
  srv = await start(); // stall timeout 2 s in tests
  const f = files.addFile('/patient.bin', { size: 2 * 1024 * KiB, throttle: 1024 * KiB });
  files.fault('/patient.bin', {}, { status: 503, retryAfter: '3' });
  const done = await download(srv, { url: f.url, folder: 'loras', sha256: f.sha256 });
  expect(done.attempts).toBe(1); // one attempt: the connection retried on its own, nothing aborted
  expect(srv.log.lines.some((l) => l.includes('retrying in 3.0 s'))).toBe(true);
  expect(sha(await fs.readFile(path.join(srv.modelsDir, 'loras/patient.bin')))).toBe(f.sha256);
});
