/**
 * Fleet mode in one process: two or three servers (each its own status file) on one MODELS_DIR and
 * one FLEET_DIR, with short timings. What needs separate processes (kill -9, SIGSTOP, three
 * servers racing) is in fleet.soak.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry, Plan } from '../../server/protocol/wire';
import { node } from '../workflows/fixtures';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { connectWs, startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';
import { VolumeClock } from '../../server/fleet/clock';
import { destLockFile, fleetPaths } from '../../server/fleet/files';
import { LockSpace, lockTimings } from '../../server/fleet/locks';

const TUNING = { pollMs: 100, commandPollMs: 50, publishMs: 200, confirmMs: 50, holderWaitMs: 2000 };
/** For the tests of a lapsed lease and of silent servers: stale after 2 s (the lease lasts 1.5 s). */
const FAST = { FLEET_STALE_SECONDS: '2' };

let files: FileServer;
let dir: string;
let cleanup: () => Promise<void>;
const servers: TestServer[] = [];

beforeEach(async () => {
  files = await startFileServer();
  ({ dir, cleanup } = await tempDir('md-fleet-'));
});
afterEach(async () => {
  for (const s of servers.splice(0).reverse()) await s.stop({ keepDir: true }).catch(() => undefined);
  await files.close();
  await cleanup();
});

async function member(name: string, env: Record<string, string> = {}): Promise<TestServer> {
  const s = await startTestServer(
    {
      MODELS_DIR: path.join(dir, 'models'),
      FLEET_DIR: path.join(dir, 'fleet'),
      INSTANCE_NAME: name,
      // Long enough that a busy machine's pauses never cost a lease; the tests of stale servers set 2.
      FLEET_STALE_SECONDS: '10',
      STATUS_FILE: path.join(dir, `status-${name}.json`),
      CATALOG_FILE: path.join(dir, 'catalog.json'),
      ...env,
    },
    { dir, fleet: TUNING },
  );
  servers.push(s);
  return s;
}

const list = async (s: TestServer): Promise<Entry[]> => (await s.api('GET', '/api/downloads')).body.downloads as Entry[];
const byDest = async (s: TestServer, dest: string): Promise<Entry | undefined> => (await list(s)).find((e) => e.dest === dest);
const sha256 = async (file: string): Promise<string> => crypto.createHash('sha256').update(await fs.readFile(file)).digest('hex');
const exists = (p: string): Promise<boolean> => fs.access(p).then(() => true, () => false);

test('a download on one server is listed by the others with its instance, and the same dest is refused there', async () => {
  const f = files.addFile('/m.safetensors', { size: 3_000_000, throttle: 1_000_000 });
  const a = await member('pod-a');
  const b = await member('pod-b');
  const ws = await connectWs(b.url);
  const started = await a.api('POST', '/api/downloads', { url: f.url, folder: 'checkpoints', sha256: f.sha256 });
  expect(started.status).toBe(202);
  expect(started.body.download.instance).toBe('pod-a');
  const dest = 'checkpoints/m.safetensors';

  const seen = await waitFor(async () => {
    const e = await byDest(b, dest);
    return e && e.downloaded > 0 ? e : undefined;
  }, 'pod-b to list pod-a\'s download with progress', 2000, 50);
  expect(seen.instance).toBe('pod-a');
  expect(seen.instance_stale).toBeUndefined();
  await ws.next((m) => m.type === 'update' && m.download.dest === dest && m.download.instance === 'pod-a', 2000);
  expect((await byDest(a, dest))!.instance).toBe('pod-a');

  const refused = await b.api('POST', '/api/downloads', { url: f.url, folder: 'checkpoints' });
  expect(refused.status).toBe(409);
  expect(refused.body.error.code).toBe('ACTIVE_ELSEWHERE');
  expect(refused.body.error.message).toContain('pod-a');
  expect(refused.body.download.instance).toBe('pod-a');
  // A workflow planned on pod-b says the model is downloading (pod-a's download), not missing.
  const workflow = { nodes: [node(1, 'CheckpointLoaderSimple', ['m.safetensors'])], links: [] };
  const plan = (await b.api('POST', '/api/workflows/plan', workflow)).body as Plan;
  expect(plan.models.map((m) => [m.dest, m.state, m.download_id])).toEqual([[dest, 'active', started.body.download.id]]);

  await waitFor(async () => (await byDest(b, dest))?.status === 'completed', 'the download to complete, as pod-b sees it', 15_000);
  expect(await sha256(path.join(dir, 'models', dest))).toBe(f.sha256);
  // Each server wrote only its own status file.
  await a.store.flush();
  await b.store.flush();
  expect(Object.keys(JSON.parse(await fs.readFile(a.statusFile, 'utf8')))).toEqual([dest]);
  expect(JSON.parse((await fs.readFile(b.statusFile, 'utf8').catch(() => '{}')) || '{}')).toEqual({});
  expect(files.requests.filter((r) => r.path === '/m.safetensors' && r.range !== 'bytes=0-0')).toHaveLength(1);
  // The instances indicator.
  const fleet = (await b.api('GET', '/api/fleet')).body;
  expect(fleet.instance).toBe('pod-b');
  expect(fleet.instances.map((i: { name: string; live: boolean }) => [i.name, i.live])).toEqual([['pod-b', true], ['pod-a', true]]);
  await ws.close();
});

test('pause, resume and cancel of another server\'s download are handed to it', async () => {
  const f = files.addFile('/p.safetensors', { size: 8_000_000, throttle: 500_000 });
  const a = await member('pod-a');
  const b = await member('pod-b');
  const id = (await a.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download.id as string;
  const dest = 'loras/p.safetensors';
  await waitFor(async () => (await byDest(b, dest))?.status === 'downloading', 'pod-b to see it downloading', 3000, 50);

  const paused = await b.api('POST', `/api/downloads/${id}/pause`);
  expect(paused.status).toBe(202);
  expect(paused.body.forwarded_to).toBe('pod-a');
  await waitFor(() => a.store.getById(id)?.status === 'paused', 'pod-a to pause it', 2000, 20);
  await waitFor(async () => (await byDest(b, dest))?.status === 'paused', 'pod-b to see it paused', 2000, 50);

  const again = await b.api('POST', `/api/downloads/${id}/pause`);
  expect(again.status).toBe(409);
  expect(again.body.error.code).toBe('INVALID_STATE');

  expect((await b.api('POST', `/api/downloads/${id}/resume`)).status).toBe(202);
  await waitFor(() => a.store.getById(id)?.status === 'downloading', 'pod-a to resume it', 3000, 20);

  const ws = await connectWs(b.url);
  ws.ws.send(JSON.stringify({ type: 'cancel', id, request_id: 'c1' }));
  const ack = await ws.next((m) => m.type === 'ack' && m.request_id === 'c1');
  expect(ack).toMatchObject({ type: 'ack', forwarded_to: 'pod-a' });
  await waitFor(() => a.store.getById(id)?.status === 'cancelled', 'pod-a to cancel it', 2000, 20);
  await waitFor(async () => !(await exists(path.join(dir, 'models', `${dest}.part`))), 'the .part to go', 2000, 20);
  await waitFor(async () => (await byDest(b, dest))?.status === 'cancelled', 'pod-b to see it cancelled', 2000, 50);
  // clear_completed clears only one's own.
  expect((await b.api('POST', '/clear_completed')).body.removed_count).toBe(0);
  expect(await byDest(b, dest)).toBeDefined();
  expect((await a.api('POST', '/clear_completed')).body.removed_count).toBe(1);
  await waitFor(async () => (await byDest(b, dest)) === undefined, 'pod-b to see it cleared', 2000, 50);
  await ws.close();
});

test('a lone server (no FLEET_DIR) is as before: no instance in its entries, no /api/fleet', async () => {
  const f = files.addFile('/lone.bin', { size: 10_000 });
  const s = await startTestServer({}, {});
  servers.push(s);
  const started = await s.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  expect(started.status).toBe(202);
  expect(started.body.download.instance).toBeUndefined();
  expect((await s.api('GET', '/api/fleet')).status).toBe(404);
  expect(s.fleet).toBeUndefined();
});

test('a server stopped and continued past its lease stops writing, takes its lock again and finishes exact', async () => {
  const f = files.addFile('/lapse.safetensors', { size: 6_000_000, throttle: 1_500_000 });
  const a = await member('pod-a', FAST);
  const dest = 'checkpoints/lapse.safetensors';
  const id = (await a.api('POST', '/api/downloads', { url: f.url, folder: 'checkpoints', sha256: f.sha256 })).body.download.id as string;
  await waitFor(async () => ((await fs.stat(path.join(dir, 'models', `${dest}.part`)).catch(() => undefined))?.size ?? 0) > 500_000, 'bytes on disk', 5000, 20);
  // The whole process stands still (as under SIGSTOP) for longer than the lease: 2 s - 0.5 s.
  const until = Date.now() + 2200;
  while (Date.now() < until) {
    // busy
  }
  await waitFor(() => a.log.lines.some((l) => /lost its lock/.test(l)), 'pod-a to notice', 3000, 20);
  const done = await waitFor(() => (a.store.getById(id)?.status === 'completed' ? a.store.getById(id) : undefined), 'the download to complete', 15_000, 50);
  expect(done.error).toBeUndefined();
  expect(await sha256(path.join(dir, 'models', dest))).toBe(f.sha256);
  const later = files.requests.filter((r) => r.path === '/lapse.safetensors').slice(1);
  expect(later.length).toBeGreaterThan(0);
  expect(later.every((r) => /^bytes=[1-9]\d*-$/.test(r.range ?? ''))).toBe(true); // resumed, never from zero
});

test('at start-up a .part whose lock another live server holds is not adopted; one nobody holds is, as paused', async () => {
  const a = await member('pod-a');
  const models = path.join(dir, 'models');
  const orphan = async (dest: string): Promise<void> => {
    const abs = path.join(models, dest);
    await fs.mkdir(path.dirname(abs), { recursive: true });
    await fs.writeFile(`${abs}.part`, Buffer.alloc(1000, 1));
    await fs.writeFile(`${abs}.part.json`, JSON.stringify({ url: files.url + '/x', name: path.basename(abs), fileSize: 5000 }));
  };
  await orphan('loras/held.safetensors');
  await orphan('loras/free.safetensors');
  // Another live server holds the first's lock (kept fresh), without listing it yet.
  const other = new LockSpace(new VolumeClock(), lockTimings(2));
  const lock = await other.acquire(destLockFile(fleetPaths(path.join(dir, 'fleet')), 'loras/held.safetensors'));
  expect(lock).toBeDefined();
  try {
    const b = await member('pod-b');
    expect(b.store.get('loras/held.safetensors')).toBeUndefined();
    expect(b.store.get('loras/free.safetensors')).toMatchObject({ status: 'paused', downloaded: 1000 });
    expect((await byDest(b, 'loras/free.safetensors'))!.instance).toBe('pod-b');
    // And pod-b holds it now: pod-a cannot take it.
    expect(await a.fleet!.claims.take('loras/free.safetensors')).toBe(false);
  } finally {
    await other.releaseAll();
  }
});

test('a second server with the same INSTANCE_NAME is refused', async () => {
  await member('pod-a', FAST);
  await expect(member('pod-a', { ...FAST, STATUS_FILE: path.join(dir, 'other.json') })).rejects.toMatchObject({ code: 'LOCKED', message: expect.stringMatching(/the name pod-a in the fleet.*INSTANCE_NAME/) });
});

test('a second server on the same status file from another host (where the pid lock means nothing) is refused before it touches the file', async () => {
  const a = await member('pod-a', FAST);
  await fs.rm(`${a.statusFile}.lock`); // what a server on another host would not see anyway
  const temp = `${a.statusFile}.4242`; // as a write of pod-a's under way
  await fs.writeFile(temp, '{}');
  await expect(member('pod-b', { ...FAST, STATUS_FILE: a.statusFile })).rejects.toMatchObject({ code: 'LOCKED', message: expect.stringContaining('STATUS_FILE') });
  await fs.access(temp); // not removed as a leftover
});

test('a server stopped: its entries show stale at once, commands for them are refused, and after the stale time its unfinished ones are taken over', async () => {
  const f = files.addFile('/left.safetensors', { size: 3_000_000, throttle: 1_000_000 });
  const a = await member('pod-a', FAST);
  const b = await member('pod-b', FAST);
  const id = (await a.api('POST', '/api/downloads', { url: f.url, folder: 'vae', sha256: f.sha256 })).body.download.id as string;
  const dest = 'vae/left.safetensors';
  await waitFor(() => (a.store.getById(id)?.downloaded ?? 0) > 0, 'bytes', 5000, 20);
  expect((await a.api('POST', `/api/downloads/${id}/pause`)).status).toBe(200);
  await waitFor(async () => (await byDest(b, dest))?.status === 'paused', 'pod-b to see it paused', 2000, 50);
  await a.stop({ keepDir: true });
  servers.splice(servers.indexOf(a), 1);

  const stale = await waitFor(async () => {
    const e = await byDest(b, dest);
    return e?.instance_stale ? e : undefined;
  }, 'pod-b to show it stale', 2000, 50);
  expect(stale).toMatchObject({ instance: 'pod-a', status: 'paused', speed: 0 });
  const refused = await b.api('POST', `/api/downloads/${id}/resume`);
  expect(refused.status).toBe(409);
  expect(refused.body.error.code).toBe('INSTANCE_STALE');

  const taken = await waitFor(() => b.store.get(dest), 'pod-b to take it over', 5000, 50);
  expect(taken).toMatchObject({ id, status: 'paused' });
  expect(b.log.lines.some((l) => /taken over from instance pod-a \(stopped for \d+ s\); kept paused/.test(l))).toBe(true);
  expect((await b.api('POST', `/api/downloads/${id}/resume`)).status).toBe(200);
  await waitFor(() => b.store.getById(id)?.status === 'completed', 'pod-b to finish it', 15_000, 50);
  expect(await sha256(path.join(dir, 'models', dest))).toBe(f.sha256);
  expect(files.requests.filter((r) => r.path === '/left.safetensors').slice(1).every((r) => /^bytes=[1-9]/.test(r.range ?? ''))).toBe(true);
});
