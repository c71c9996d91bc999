import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { spawnServer, type ChildServer } from '../helpers/child-server';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { tempDir, waitFor } from '../helpers/harness';

let files: FileServer;
let dir: string;
let cleanup: () => Promise<void>;
const children: ChildServer[] = [];

beforeEach(async () => {
  files = await startFileServer();
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill('SIGKILL');
  await files.close();
  await cleanup();
});

const env = (): Record<string, string> => ({ CONNECTIONS: '1', MODELS_DIR: path.join(dir, 'models'), STATUS_FILE: path.join(dir, 'status.json'), CATALOG_FILE: path.join(dir, 'catalog.json') });
async function start(): Promise<ChildServer> {
  const c = await spawnServer(env());
  children.push(c);
  return c;
}
const statusOf = async (url: string): Promise<Record<string, Entry>> => (await fetch(`${url}/status`)).json() as Promise<Record<string, Entry>>;
const partSize = (dest: string): Promise<number> => fs.stat(path.join(dir, 'models', `${dest}.part`)).then((s) => s.size, () => 0);

test('kill -9 mid-transfer, start again: resumes from the bytes on disk and verifies', async () => {
  const f = files.addFile('/big.safetensors', { size: 6_000_000, throttle: 2_000_000 });
  const first = await start();
  const res = await fetch(`${first.url}/api/downloads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: f.url, folder: 'checkpoints', sha256: f.sha256 }) });
  expect(res.status).toBe(202);
  await waitFor(async () => (await partSize('checkpoints/big.safetensors')) > 1_000_000, 'a megabyte on disk');
  await first.kill('SIGKILL');
  const kept = await partSize('checkpoints/big.safetensors');
  expect(kept).toBeGreaterThan(1_000_000);
  await expect(fs.access(path.join(dir, 'models', 'checkpoints', 'big.safetensors'))).rejects.toThrow();
  const afterKill = JSON.parse(await fs.readFile(path.join(dir, 'status.json'), 'utf8')) as Record<string, Entry>;
  expect(afterKill['checkpoints/big.safetensors']!.status).toMatch(/downloading|starting/);

  const second = await start();
  const done = await waitFor(async () => {
    const e = (await statusOf(second.url))['checkpoints/big.safetensors'];
    return e?.status === 'completed' ? e : undefined;
  }, 'the resumed download to complete', 20_000);
  expect(done.sha256).toBe(f.sha256);
  const resumed = files.requests.filter((r) => r.path === '/big.safetensors');
  expect(resumed).toHaveLength(2);
  const offset = Number(/^bytes=(\d+)-$/.exec(resumed[1]!.range ?? '')?.[1]);
  expect(offset).toBeGreaterThanOrEqual(kept);
  expect(resumed[1]!.status).toBe(206);
  const bytes = await fs.readFile(path.join(dir, 'models', 'checkpoints', 'big.safetensors'));
  expect(crypto.createHash('sha256').update(bytes).digest('hex')).toBe(f.sha256);
  expect(second.output()).toContain('resuming 1 unfinished download');
});

test('SIGTERM: exits 0 within 5 s, keeps the .part, and the status file says it will resume', async () => {
  const f = files.addFile('/term.bin', { size: 6_000_000, throttle: 1_000_000 });
  const srv = await start();
  await fetch(`${srv.url}/api/downloads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: f.url, folder: 'loras' }) });
  await waitFor(async () => (await partSize('loras/term.bin')) > 300_000, 'bytes on disk');
  const t0 = Date.now();
  expect(await srv.kill('SIGTERM')).toBe(0);
  expect(Date.now() - t0).toBeLessThan(5000);
  const saved = JSON.parse(await fs.readFile(path.join(dir, 'status.json'), 'utf8')) as Record<string, Entry>;
  const e = saved['loras/term.bin']!;
  expect(e).toMatchObject({ status: 'queued', speed: 0, eta: null });
  expect(e.downloaded).toBe(await partSize('loras/term.bin'));
  expect(e.downloaded).toBeGreaterThan(300_000);
  // The lock goes with the server: the next start needs no take-over.
  await expect(fs.access(path.join(dir, 'status.json.lock'))).rejects.toMatchObject({ code: 'ENOENT' });
});

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('a second server on the same status file exits 1 naming the first; the first keeps serving, its status file untouched', async () => {
  const f = files.addFile('/small.bin', { size: 100_000 });
  const first = await start();
  await fetch(`${first.url}/api/downloads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: f.url, folder: 'loras' }) });
  const statusFile = path.join(dir, 'status.json');
  await waitFor(async () => (JSON.parse(await fs.readFile(statusFile, 'utf8')) as Record<string, Entry>)['loras/small.bin']?.status === 'completed', 'the completed download in the status file');
  // A write of the first server in flight: the second's start-up would remove it as a leftover.
  const inFlight = path.join(dir, 'status.json.987654321');
  await fs.writeFile(inFlight, '{"loras/small.bin": {');
  const before = { text: await fs.readFile(statusFile, 'utf8'), mtimeMs: (await fs.stat(statusFile)).mtimeMs };

  await expect(spawnServer(env())).rejects.toThrow(
    new RegExp(`^server exited \\(1\\) before it started:\nmodel-downloader: another Model Downloader \\(pid ${first.proc.pid}, started \\S+\\) is using ${escape(statusFile)}; stop it or set STATUS_FILE to another file\n$`),
  );
  expect({ text: await fs.readFile(statusFile, 'utf8'), mtimeMs: (await fs.stat(statusFile)).mtimeMs }).toEqual(before);
  expect(await fs.readFile(inFlight, 'utf8')).toBe('{"loras/small.bin": {');
  expect(JSON.parse(await fs.readFile(`${statusFile}.lock`, 'utf8'))).toMatchObject({ pid: first.proc.pid });
  expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
  expect((await statusOf(first.url))['loras/small.bin']!.status).toBe('completed');
});

test('a kill -9 leaves the lock behind; the next start takes it over and says so', async () => {
  const first = await start();
  const pid = first.proc.pid!;
  await first.kill('SIGKILL');
  const lock = path.join(dir, 'status.json.lock');
  expect(JSON.parse(await fs.readFile(lock, 'utf8'))).toMatchObject({ pid });
  const second = await start();
  expect(second.output()).toMatch(new RegExp(`warning: took over the lock ${escape(lock)} left by a server that is gone \\(pid ${pid}, started \\S+: no longer running\\)`));
  expect(JSON.parse(await fs.readFile(lock, 'utf8'))).toMatchObject({ pid: second.proc.pid });
  expect((await fetch(`${second.url}/healthz`)).status).toBe(200);
});

test('a bad configuration exits 1 with a message naming the variable', async () => {
  await expect(spawnServer({ ...env(), PORT: 'abc' })).rejects.toThrow(/Expected PORT to be an integer 0–65535, got `abc`/);
});
