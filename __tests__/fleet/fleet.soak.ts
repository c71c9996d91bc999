/**
 * Three servers as separate processes (the built dist/server/main.js), each with its own
 * INSTANCE_NAME and STATUS_FILE, on one MODELS_DIR and one FLEET_DIR, FLEET_STALE_SECONDS=3, and a
 * throttled source that records every request (its Range and the bytes it sent):
 *
 * - the same dest asked of all three at the same moment: one transfer, two `ACTIVE_ELSEWHERE`,
 *   every server's list and WebSocket show the progress within 2 s;
 * - kill -9 of the owner mid-download: another server takes it over once the lock is stale and
 *   resumes it with Range from the bytes on disk; the file ends exact; the killed server,
 *   restarted, hands the download to it instead of fighting for it;
 * - an owner stopped (SIGSTOP) for longer than the stale time, then continued: it finds its lock
 *   lost and stops before writing another byte; the file ends exact;
 * - pause and cancel asked of a server that does not own the download;
 * - 3 servers × 10 downloads of distinct files at once: all exact, no byte fetched twice, each
 *   status file written by its own server only.
 *
 * No fixed sleeps: every wait is on a predicate with a deadline.
 *
 * How this was checked to fail without its protection: with the write guard disabled (Job.guard
 * a no-op in downloader/claims.ts), the SIGSTOP case failed at every run, the continued owner
 * writing megabytes of the old version into the new one (the file's sha256 was neither's).
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import WebSocket from 'ws';
import type { Entry, ServerMessage } from '../../server/protocol/wire';
import { spawnServer, type ChildServer } from '../helpers/child-server';
import { startFileServer, type FileServer, type RequestRecord } from '../helpers/file-server';
import { tempDir, waitFor } from '../helpers/harness';

const STALE_SECONDS = 3;

let files: FileServer;
let dir: string;
let cleanup: () => Promise<void>;
const children: ChildServer[] = [];
const sockets: WebSocket[] = [];

beforeEach(async () => {
  files = await startFileServer();
  ({ dir, cleanup } = await tempDir('md-fleet-soak-'));
});
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  for (const c of children.splice(0)) {
    if (c.proc.signalCode === null && c.proc.exitCode === null) c.proc.kill('SIGCONT');
    await c.kill('SIGKILL');
  }
  await files.close();
  await cleanup();
});

const models = (): string => path.join(dir, 'models');
const statusFile = (name: string): string => path.join(dir, `status-${name}.json`);

async function start(name: string, env: Record<string, string> = {}): Promise<ChildServer> {
  const c = await spawnServer(
    {
      MODELS_DIR: models(),
      FLEET_DIR: path.join(dir, 'fleet'),
      INSTANCE_NAME: name,
      FLEET_STALE_SECONDS: String(STALE_SECONDS),
      STATUS_FILE: statusFile(name),
      CATALOG_FILE: path.join(dir, `catalog-${name}.json`),
      ...env,
    },
    20_000,
  );
  children.push(c);
  return c;
}

async function api(url: string, method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url + urlPath, { method, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) });
  return { status: res.status, body: await res.json() };
}
const list = async (url: string): Promise<Entry[]> => (await api(url, 'GET', '/api/downloads')).body.downloads as Entry[];
const entryOf = async (url: string, dest: string): Promise<Entry | undefined> => (await list(url)).find((e) => e.dest === dest);
const sha256 = async (file: string): Promise<string> => crypto.createHash('sha256').update(await fs.readFile(file)).digest('hex');
const sizeOf = (p: string): Promise<number> => fs.stat(p).then((s) => s.size, () => 0);
const requestsFor = (p: string): RequestRecord[] => files.requests.filter((r) => r.path === p);
const rangeStart = (r: RequestRecord): number => Number(/^bytes=(\d+)-/.exec(r.range ?? '')?.[1] ?? 0);

/** A WebSocket client that keeps the latest entry of each download. */
async function watch(url: string): Promise<Map<string, Entry>> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws`);
  sockets.push(ws);
  const state = new Map<string, Entry>();
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as ServerMessage;
    if (m.type === 'snapshot') {
      state.clear();
      for (const e of m.downloads) state.set(e.dest, e);
    } else if (m.type === 'update') state.set(m.download.dest, m.download);
    else if (m.type === 'removed') state.delete(m.dest);
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return state;
}

/** The server (of `among`) whose list shows `dest` as its own, unfinished. */
async function ownerOf(among: ChildServer[], dest: string, timeoutMs: number, not?: string): Promise<{ server: ChildServer; name: string; entry: Entry }> {
  return waitFor(
    async () => {
      for (const s of among) {
        const e = await entryOf(s.url, dest).catch(() => undefined);
        if (e?.instance && e.instance !== not && !e.instance_stale && ['queued', 'starting', 'downloading'].includes(e.status)) {
          const owner = among.find((c) => c.output().includes(`this is instance ${e.instance} `));
          if (owner) return { server: owner, name: e.instance, entry: e };
        }
      }
      return undefined;
    },
    `an owner of ${dest}${not ? ` other than ${not}` : ''}`,
    timeoutMs,
    100,
  );
}

test('the same dest asked of three servers at once: one transfer, ACTIVE_ELSEWHERE elsewhere, progress shown everywhere within 2 s', async () => {
  const f = files.addFile('/same.safetensors', { size: 24_000_000, throttle: 1_500_000 });
  const servers = await Promise.all(['pod-a', 'pod-b', 'pod-c'].map((n) => start(n)));
  const views = await Promise.all(servers.map((s) => watch(s.url)));
  const dest = 'checkpoints/same.safetensors';

  const t0 = Date.now();
  const answers = await Promise.all(servers.map((s) => api(s.url, 'POST', '/api/downloads', { url: f.url, folder: 'checkpoints', sha256: f.sha256 })));
  const answered = Date.now() - t0;
  const accepted = answers.filter((a) => a.status === 202);
  expect(accepted).toHaveLength(1);
  const owner = accepted[0]!.body.download.instance as string;
  for (const refused of answers.filter((a) => a.status !== 202)) {
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('ACTIVE_ELSEWHERE');
    expect(refused.body.error.message).toContain(owner);
    expect(refused.body.download).toMatchObject({ dest, instance: owner });
  }

  await waitFor(
    async () => {
      const seen = await Promise.all(servers.map((s) => entryOf(s.url, dest)));
      return seen.every((e) => e && e.instance === owner && e.downloaded > 0) && views.every((v) => (v.get(dest)?.downloaded ?? 0) > 0 && v.get(dest)?.instance === owner);
    },
    'every server\'s list and WebSocket to show the progress',
    Math.max(0, 2000 - (Date.now() - t0)),
    50,
  );
  console.log(`same dest on three servers: answers after ${answered} ms, progress shown everywhere ${Date.now() - t0} ms after the requests`);

  await waitFor(async () => (await entryOf(servers[0]!.url, dest))?.status === 'completed', 'the download to complete', 60_000, 200);
  expect(await sha256(path.join(models(), dest))).toBe(f.sha256);
  // One set of requests: no byte of the file sent twice.
  const body = requestsFor('/same.safetensors').filter((r) => r.range !== 'bytes=0-0');
  expect(body.reduce((n, r) => n + r.bytesSent, 0)).toBe(f.size);
  expect(requestsFor('/same.safetensors').filter((r) => r.range === 'bytes=0-0').length).toBeLessThanOrEqual(1);
});

test('kill -9 of the owner: another server takes over after the stale time, resumes by Range, the file ends exact; restarted, the killed one does not fight', async () => {
  const f = files.addFile('/big.safetensors', { size: 30_000_000, throttle: 2_000_000 });
  const env = { CONNECTIONS: '1' };
  const servers = await Promise.all(['pod-a', 'pod-b', 'pod-c'].map((n) => start(n, env)));
  const dest = 'checkpoints/big.safetensors';
  const part = path.join(models(), `${dest}.part`);
  const a = servers[0]!;
  expect((await api(a.url, 'POST', '/api/downloads', { url: f.url, folder: 'checkpoints', sha256: f.sha256 })).status).toBe(202);
  await waitFor(async () => (await sizeOf(part)) > 3_000_000, '3 MB on disk', 10_000);
  const killedAt = Date.now();
  await a.kill('SIGKILL');
  const kept = await sizeOf(part);
  const before = requestsFor('/big.safetensors').length;

  const taker = await ownerOf(servers.slice(1), dest, 20_000, 'pod-a');
  const resumed = await files.waitForRequest((r) => r.path === '/big.safetensors' && files.requests.indexOf(r) >= before, 10_000);
  console.log(`kill -9: taken over by ${taker.name} ${Date.now() - killedAt} ms after the kill (stale after ${STALE_SECONDS} s)`);
  expect(Date.now() - killedAt).toBeGreaterThanOrEqual(STALE_SECONDS * 1000 - 1000);
  expect(resumed.range).toMatch(/^bytes=\d+-$/);
  expect(rangeStart(resumed)).toBeGreaterThanOrEqual(kept);
  expect(resumed.status).toBe(206);
  expect(taker.server.output()).toMatch(/taken over from instance pod-a/);

  // The killed server comes back: its status file still says it is downloading.
  const again = await start('pod-a', env);
  await waitFor(() => /continued by instance pod-[bc]/.test(again.output()), 'the restarted pod-a to hand it over', 15_000);
  expect((await entryOf(again.url, dest))?.instance).toBe(taker.name);

  await waitFor(async () => (await entryOf(taker.server.url, dest))?.status === 'completed', 'the download to complete', 60_000, 200);
  expect(await sha256(path.join(models(), dest))).toBe(f.sha256);
  // Only the taker fetched after the kill: every later request resumed where the disk was.
  const after = requestsFor('/big.safetensors').slice(before);
  expect(after.every((r) => rangeStart(r) >= kept)).toBe(true);
  const status = JSON.parse(await fs.readFile(statusFile('pod-a'), 'utf8')) as Record<string, Entry>;
  expect(status[dest]).toBeUndefined();
});

test('an owner stopped (SIGSTOP) past the stale time notices its lock is lost and stops before writing another byte', async () => {
  // The file changes upstream while the owner is stopped: the server that takes over finds its
  // If-Range refused and fetches the new version from byte 0. Any byte the old owner wrote after it
  // was continued (it has megabytes of the old version waiting in its socket) would then land in
  // the new version's bytes, and the file would not be the new version.
  const f = files.addFile('/stop.safetensors', { size: 30_000_000, throttle: 2_000_000 });
  const env = { CONNECTIONS: '1' };
  const servers = await Promise.all(['pod-a', 'pod-b', 'pod-c'].map((n) => start(n, env)));
  const dest = 'loras/stop.safetensors';
  const part = path.join(models(), `${dest}.part`);
  const a = servers[0]!;
  expect((await api(a.url, 'POST', '/api/downloads', { url: f.url, folder: 'loras' })).status).toBe(202);
  await waitFor(async () => (await sizeOf(part)) > 2_000_000, '2 MB on disk', 10_000);
  a.proc.kill('SIGSTOP');
  const kept = await sizeOf(part);
  const v2 = files.setFileOptions('/stop.safetensors', { size: f.size });
  expect(v2.sha256).not.toBe(f.sha256);
  const taker = await ownerOf(servers.slice(1), dest, 20_000, 'pod-a');
  // The taker has rewritten, with the new version, well past where the stopped owner was.
  await waitFor(async () => ((await entryOf(taker.server.url, dest))?.downloaded ?? 0) > kept + 10_000_000, 'the taker to pass the old owner', 20_000, 100);
  expect(taker.server.output()).toMatch(/starting over from 0/);
  a.proc.kill('SIGCONT');

  await waitFor(() => /lost its lock/.test(a.output()), 'pod-a to notice its lock is lost', 10_000);
  await waitFor(() => /continued by instance pod-[bc]/.test(a.output()), 'pod-a to hand the download over', 10_000);
  expect((await entryOf(a.url, dest))?.instance).toBe(taker.name);
  await waitFor(async () => (await entryOf(taker.server.url, dest))?.status === 'completed', 'the download to complete', 60_000, 200);
  expect(await sha256(path.join(models(), dest))).toBe(v2.sha256);
  expect(a.output()).not.toMatch(/unexpected failure/);
});

test('pause and cancel asked of a server that does not own the download', async () => {
  const f = files.addFile('/cmd.safetensors', { size: 30_000_000, throttle: 1_000_000 });
  const [a, b, c] = await Promise.all(['pod-a', 'pod-b', 'pod-c'].map((n) => start(n)));
  const dest = 'vae/cmd.safetensors';
  const id = (await api(a!.url, 'POST', '/api/downloads', { url: f.url, folder: 'vae' })).body.download.id as string;
  await waitFor(async () => (await entryOf(b!.url, dest))?.status === 'downloading', 'pod-b to see it downloading', 5000, 100);

  const paused = await api(b!.url, 'POST', `/api/downloads/${id}/pause`);
  expect(paused).toMatchObject({ status: 202, body: { forwarded_to: 'pod-a', download: { id, instance: 'pod-a' } } });
  await waitFor(async () => (await entryOf(c!.url, dest))?.status === 'paused', 'every server to see it paused', 3000, 100);
  expect((await entryOf(a!.url, dest))?.status).toBe('paused');

  const cancelled = await api(c!.url, 'POST', `/api/downloads/${id}/cancel`);
  expect(cancelled).toMatchObject({ status: 202, body: { forwarded_to: 'pod-a' } });
  await waitFor(async () => (await entryOf(b!.url, dest))?.status === 'cancelled', 'pod-b to see it cancelled', 3000, 100);
  await waitFor(async () => (await sizeOf(path.join(models(), `${dest}.part`))) === 0, 'the .part to be removed', 3000, 100);
  expect(a!.output()).toMatch(/pause from instance pod-b: done/);
  expect(a!.output()).toMatch(/cancel from instance pod-c: done/);
});

test('3 servers × 10 downloads of distinct files at once: all exact, nothing fetched twice, each status file its own server\'s', async () => {
  const names = ['pod-a', 'pod-b', 'pod-c'];
  const servers = await Promise.all(names.map((n) => start(n)));
  const plan = names.map((n, i) =>
    Array.from({ length: 10 }, (_, k) => {
      const name = `${n}-${k}.safetensors`;
      return { dest: `loras/${name}`, info: files.addFile(`/${name}`, { size: 1_000_000 + ((i * 10 + k) * 97_003) % 2_000_000, throttle: 2_000_000 }) };
    }),
  );
  const t0 = Date.now();
  const answers = await Promise.all(plan.flatMap((mine, i) => mine.map((p) => api(servers[i]!.url, 'POST', '/api/downloads', { url: p.info.url, folder: 'loras', sha256: p.info.sha256 }))));
  expect(answers.map((a) => a.status)).toEqual(Array(30).fill(202));
  await waitFor(
    async () => {
      const all = await list(servers[0]!.url);
      return all.length === 30 && all.every((e) => e.status === 'completed');
    },
    'all 30 downloads to complete, as pod-a sees them',
    120_000,
    250,
  );
  console.log(`3 × 10 downloads: all completed in ${Date.now() - t0} ms`);
  for (const [i, mine] of plan.entries()) {
    for (const p of mine) {
      expect(await sha256(path.join(models(), p.dest))).toBe(p.info.sha256);
      const body = requestsFor(new URL(p.info.url).pathname).filter((r) => r.range !== 'bytes=0-0');
      expect(body.reduce((n, r) => n + r.bytesSent, 0)).toBe(p.info.size);
    }
    // Each status file lists its own server's downloads, no other.
    const status = JSON.parse(await fs.readFile(statusFile(names[i]!), 'utf8')) as Record<string, Entry>;
    expect(Object.keys(status).sort()).toEqual(mine.map((p) => p.dest).sort());
  }
  const everywhere = await Promise.all(servers.map((s) => list(s.url)));
  for (const [i, seen] of everywhere.entries()) {
    expect(seen).toHaveLength(30);
    for (const e of seen) expect(e.instance).toBe(names[plan.findIndex((mine) => mine.some((p) => p.dest === e.dest))]);
    expect(seen.filter((e) => e.instance === names[i])).toHaveLength(10);
  }
});
