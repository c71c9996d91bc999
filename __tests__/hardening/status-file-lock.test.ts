/**
 * One server per status file: a second server started on the same file is refused before it
 * touches anything, and the lock beside the file (`status.json.lock`) is released by stop() and
 * taken over when the process it names is gone — also when the pid now belongs to someone else.
 * (Between real processes, with exit codes and kill -9: server/restart.test.ts.)
 *
 * How these were checked to fail without their protection: without the lock, the second server
 * started, and its start-up removed the first's write in flight (`status.json.<n>`); with a lock
 * that trusted any live pid, the rows "our own pid" and "a later process" refused to start.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
// The same module object instance-lock.ts uses: spied on to make creating the lock fail.
import fsPromises from 'node:fs/promises';
import path from 'node:path';
import { startTestServer, tempDir, type TestServer } from '../helpers/harness';
import { snapshotTree } from './helpers';

const servers: TestServer[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  jest.restoreAllMocks();
  for (const s of servers.splice(0)) await s.stop();
  for (const c of cleanups.splice(0)) await c();
});

async function folder(): Promise<string> {
  const { dir, cleanup } = await tempDir('md-lock-');
  cleanups.push(cleanup);
  return dir;
}
async function start(dir: string, env: Record<string, string> = {}): Promise<TestServer> {
  const s = await startTestServer(env, { dir });
  servers.push(s);
  return s;
}
const lockOf = (dir: string): string => path.join(dir, 'status.json.lock');
const readLock = async (dir: string): Promise<{ pid: number; started: string; proc_start?: string; nonce: string }> => JSON.parse(await fs.readFile(lockOf(dir), 'utf8'));
const exists = (p: string): Promise<boolean> => fs.access(p).then(() => true, () => false);
/** Field 22 of /proc/<pid>/stat, as the lock records it. */
const procStart = (pid: number): string => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
};
const lockMessage = (pid: number, statusFile: string): RegExp =>
  new RegExp(`^another Model Downloader \\(pid ${pid}, started \\d{4}-\\d\\d-\\d\\dT[^)]*\\) is using ${statusFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; stop it or set STATUS_FILE to another file$`);
const t = Date.now() / 1000;
const entry = { id: 'kept1', url: 'http://127.0.0.1:9/a.bin', status: 'completed', progress: 100, downloaded: 5, file_size: 5, speed: 0, eta: null, start_time: t, timestamp: t, completion_time: t, attempts: 1 };

test('a second server on the same status file is refused and changes nothing; the first keeps serving', async () => {
  const dir = await folder();
  await fs.writeFile(path.join(dir, 'status.json'), JSON.stringify({ 'loras/a.bin': entry }));
  const first = await start(dir);
  await first.store.flush();
  expect(await readLock(dir)).toMatchObject({ pid: process.pid });
  // A write of the first server in flight (write-file-atomic's temp file): a second start-up that
  // went ahead would remove it as a leftover of a killed write.
  await fs.writeFile(path.join(dir, 'status.json.123456789'), '{"loras/a.bin": {');
  const before = await snapshotTree(dir);

  const second = startTestServer({}, { dir });
  await expect(second).rejects.toMatchObject({ code: 'LOCKED', message: expect.stringMatching(lockMessage(process.pid, first.statusFile)) });
  expect(await snapshotTree(dir)).toEqual(before);
  expect((await first.api('GET', '/healthz')).body).toEqual({ ok: true });
  expect(Object.keys((await first.api('GET', '/status')).body)).toEqual(['loras/a.bin']);
});

test('two servers starting at the same moment on one status file: exactly one starts', async () => {
  const dir = await folder();
  const results = await Promise.allSettled([startTestServer({}, { dir }), startTestServer({}, { dir })]);
  for (const r of results) if (r.status === 'fulfilled') servers.push(r.value);
  expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
  expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'LOCKED' } });
});

test('stop() releases the lock: the lock file goes, and a server starts again on the same folder without taking anything over', async () => {
  const dir = await folder();
  const first = await start(dir);
  expect(await exists(lockOf(dir))).toBe(true);
  await first.stop({ keepDir: true });
  servers.splice(servers.indexOf(first), 1);
  expect(await exists(lockOf(dir))).toBe(false);
  const second = await start(dir);
  expect((await second.api('GET', '/healthz')).body).toEqual({ ok: true });
  expect(second.log.lines.filter((l) => l.includes('took over the lock'))).toEqual([]);
});

test('a start that fails after taking the lock (its port is in use) releases it', async () => {
  const busy = await start(await folder());
  const dir = await folder();
  await expect(startTestServer({ PORT: String(busy.port) }, { dir })).rejects.toMatchObject({ code: 'EADDRINUSE' });
  expect(await exists(lockOf(dir))).toBe(false);
  expect((await (await start(dir)).api('GET', '/healthz')).body).toEqual({ ok: true });
});

describe('a lock whose process is gone is taken over, with a log line', () => {
  test('the pid has exited (a kill -9 left the lock behind)', async () => {
    const dir = await folder();
    const gone = spawn(process.execPath, ['-e', '']);
    const [code] = await once(gone, 'exit');
    expect(code).toBe(0);
    await fs.writeFile(lockOf(dir), JSON.stringify({ pid: gone.pid, started: '2026-01-01T00:00:00.000Z', host: 'h', nonce: 'old' }));
    const srv = await start(dir);
    expect(srv.log.lines).toContain(`warn took over the lock ${lockOf(dir)} left by a server that is gone (pid ${gone.pid} on h, started 2026-01-01T00:00:00.000Z: no longer running)`);
    expect(await readLock(dir)).toMatchObject({ pid: process.pid });
  });

  test('the pid is our own, but this process never took the lock (a restarted container gets the same pid)', async () => {
    const dir = await folder();
    await fs.writeFile(lockOf(dir), JSON.stringify({ pid: process.pid, started: '2026-01-01T00:00:00.000Z', proc_start: procStart(process.pid), nonce: 'earlier-life' }));
    const srv = await start(dir);
    expect(srv.log.lines.filter((l) => l.includes(`took over the lock ${lockOf(dir)}`) && l.includes('an earlier process with the same pid'))).toHaveLength(1);
    const now = await readLock(dir);
    expect(now.pid).toBe(process.pid);
    expect(now.nonce).not.toBe('earlier-life');
  });

  test('the pid is alive but belongs to a process started later (pid reuse)', async () => {
    const dir = await folder();
    const pid = process.ppid; // alive for the whole test: jest's parent
    await fs.writeFile(lockOf(dir), JSON.stringify({ pid, started: '2026-01-01T00:00:00.000Z', proc_start: String(Number(procStart(pid)) - 1), nonce: 'x' }));
    const srv = await start(dir);
    expect(srv.log.lines.some((l) => l.includes(`took over the lock ${lockOf(dir)}`) && l.includes(`pid ${pid} now belongs to a process started later`))).toBe(true);
  });

  test('it holds no pid and is older than a moment (a crash between creating and writing it)', async () => {
    const dir = await folder();
    await fs.writeFile(lockOf(dir), '');
    const past = new Date(Date.now() - 60_000);
    await fs.utimes(lockOf(dir), past, past);
    const srv = await start(dir);
    expect(srv.log.lines.some((l) => l.includes(`took over the lock ${lockOf(dir)}`) && l.includes('it holds no pid'))).toBe(true);
  });
});

test('the lock of a running process is respected, whoever it is', async () => {
  const dir = await folder();
  const pid = process.ppid;
  await fs.writeFile(lockOf(dir), JSON.stringify({ pid, started: '2026-01-01T00:00:00.000Z', proc_start: procStart(pid), nonce: 'x' }));
  await expect(startTestServer({}, { dir })).rejects.toMatchObject({ code: 'LOCKED', message: expect.stringMatching(lockMessage(pid, path.join(dir, 'status.json'))) });
  expect(await readLock(dir)).toMatchObject({ pid, nonce: 'x' });
});

test('a lock being written by a server starting at the same moment (still empty) is waited for, not taken over', async () => {
  const dir = await folder();
  await fs.writeFile(lockOf(dir), '');
  const second = startTestServer({}, { dir });
  // The other server finishes writing its lock.
  await fs.writeFile(lockOf(dir), JSON.stringify({ pid: process.ppid, started: '2026-01-01T00:00:00.000Z', proc_start: procStart(process.ppid), nonce: 'y' }));
  await expect(second).rejects.toMatchObject({ code: 'LOCKED' });
});

test('a lock that cannot be created (a read-only folder) is logged, and the server starts as before', async () => {
  const dir = await folder();
  const open = fsPromises.open;
  jest.spyOn(fsPromises, 'open').mockImplementation(((file: Parameters<typeof open>[0], ...rest: unknown[]) =>
    String(file).endsWith('.lock')
      ? Promise.reject(Object.assign(new Error(`EROFS: read-only file system, open '${String(file)}'`), { code: 'EROFS' }))
      : (open as (...a: unknown[]) => ReturnType<typeof open>)(file, ...rest)) as typeof open);
  const srv = await start(dir);
  expect((await srv.api('GET', '/healthz')).body).toEqual({ ok: true });
  expect(srv.log.lines.some((l) => l.startsWith(`warn could not create the lock file ${lockOf(dir)} (EROFS`))).toBe(true);
});
