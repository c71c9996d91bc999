/**
 * Disk faults, with one connection and with four: a disk that fills up mid-download, a read-only
 * models folder, a folder that does not exist yet, a `dest` that is a folder. Each ends with a
 * clear error (or, for the missing folder, a finished file), the server still serving, the other
 * downloads unharmed and the status file valid. The full and read-only disks are real small
 * `tmpfs` mounts where the machine allows it (we run as root here), else the same errors are
 * injected for that folder only (see helpers/small-disk.ts).
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';
import { smallDisk, type SmallDisk } from '../helpers/small-disk';
import { snapshotTree, treeDiff } from './helpers';
import { isFinished } from '../../server/protocol/status';

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const exists = (p: string): Promise<boolean> => fs.stat(p).then(() => true, () => false);

describe.each([1, 4])('disk faults with CONNECTIONS=%i', (connections) => {
  let files: FileServer;
  let srv: TestServer;
  /** `checkpoints`: an 8 MiB disk. `vae`: a read-only one. Everything else: the ordinary disk. */
  let full: SmallDisk | undefined;
  let readOnly: SmallDisk | undefined;

  beforeAll(async () => {
    files = await startFileServer();
    srv = await startTestServer(
      { CONNECTIONS: String(connections) },
      { downloader: { minSegmentBytes: 1 * MiB, retry: { baseMs: 20, maxMs: 100 } } },
    );
    full = await smallDisk(path.join(srv.modelsDir, 'checkpoints'), 8 * MiB);
    readOnly = await smallDisk(path.join(srv.modelsDir, 'vae'), 16 * MiB);
    await readOnly.setReadOnly(true);
  });
  afterAll(async () => {
    // The server lets go of its files first; the disks are released whatever failed before.
    try {
      await srv?.stop({ keepDir: true });
    } finally {
      const released = await Promise.allSettled([full?.release(), readOnly?.release(), files?.close()]);
      if (srv) await fs.rm(srv.dir, { recursive: true, force: true });
      for (const r of released) if (r.status === 'rejected') throw r.reason;
    }
  });

  const entryOf = (id: string): Entry | undefined => srv.store.getById(id);
  /** Waits for `status`; fails at once when the download ends otherwise. */
  const until = async (id: string, status: Entry['status'], timeoutMs = 20_000): Promise<Entry> => {
    const e = await waitFor(() => {
      const now = entryOf(id);
      return now && (now.status === status || isFinished(now.status)) ? now : undefined;
    }, `download ${id} to be ${status} (now ${entryOf(id)?.status})`, timeoutMs);
    if (e.status !== status) throw new Error(`${e.dest} ended ${e.status} ${JSON.stringify(e.error)}, not ${status}`);
    return e;
  };
  const add = async (body: Record<string, unknown>): Promise<Entry> => {
    const res = await srv.api('POST', '/api/downloads', body);
    expect(res.status).toBe(202);
    return res.body.download as Entry;
  };
  /** The status file parses and says what the store says of these downloads. */
  const statusFileAgrees = (...ids: string[]): Promise<unknown> =>
    waitFor(async () => {
      const saved = JSON.parse(await fs.readFile(srv.statusFile, 'utf8')) as Record<string, Entry>;
      return ids.every((id) => {
        const e = entryOf(id)!;
        return saved[e.dest]?.status === e.status && saved[e.dest]!.id === id;
      });
    }, `the status file to agree on ${ids.join(', ')}`);
  const stillServing = async (): Promise<void> => {
    expect((await srv.api('GET', '/healthz')).body).toEqual({ ok: true });
    const probe = files.addFile(`/alive-${Date.now()}-${Math.random().toString(36).slice(2)}.bin`, { size: 64 * 1024 });
    const e = await add({ url: probe.url, folder: 'loras/alive' });
    await until(e.id, 'completed');
    expect(sha(await fs.readFile(path.join(srv.modelsDir, e.dest)))).toBe(probe.sha256);
  };

  test('the disk fills up: "disk full: N bytes free", .part kept, others unharmed; retry after enlarging completes', async () => {
    const big = files.addFile('/big.bin', { size: 12 * MiB });
    const other = files.addFile('/other.bin', { size: 3 * MiB, throttle: 2 * MiB });
    const eo = await add({ url: other.url, folder: 'loras', sha256: other.sha256 });
    await waitFor(() => (entryOf(eo.id)?.downloaded ?? 0) > 0, 'the other download to be under way');
    const eb = await add({ url: big.url, folder: 'checkpoints', sha256: big.sha256 });

    const failed = await until(eb.id, 'error');
    expect(failed.error!.message).toMatch(/disk full: \d+ bytes free/i);
    expect(failed.error!.code).toMatch(/^(ENOSPC|EDQUOT)$/);
    const abs = path.join(srv.modelsDir, eb.dest);
    expect(await exists(`${abs}.part`)).toBe(true); // kept for the resume
    expect(await exists(abs)).toBe(false);
    expect(entryOf(eo.id)!.status).not.toBe('error'); // the other disk's download goes on
    await statusFileAgrees(eb.id, eo.id);

    await until(eo.id, 'completed');
    expect(sha(await fs.readFile(path.join(srv.modelsDir, eo.dest)))).toBe(other.sha256);
    await statusFileAgrees(eb.id, eo.id);
    await stillServing();

    // Room again: retry resumes from the .part and finishes with the right bytes.
    await full!.resize(32 * MiB);
    const before = files.requests.length;
    const retried = await srv.api('POST', `/api/downloads/${eb.id}/retry`);
    expect(retried.status).toBe(200);
    const done = await until(eb.id, 'completed');
    expect(done).toMatchObject({ downloaded: big.size, file_size: big.size, sha256: big.sha256 });
    expect(sha(await fs.readFile(abs))).toBe(big.sha256);
    expect((await fs.readdir(path.dirname(abs))).sort()).toEqual(['big.bin']); // no .part, no .part.json, no temp file
    const after = files.requests.slice(before).filter((r) => r.path === '/big.bin');
    // About 8 of its 12 MiB fitted before the disk filled: they are not fetched again (with four
    // connections the map of what each range holds had to be saved on the full disk too).
    expect(after.reduce((n, r) => n + r.bytesSent, 0)).toBeLessThan(big.size - 4 * MiB);
    if (connections === 1) {
      // One stream: it continues after the bytes that fitted, never from zero.
      expect(after[0]!.range).toMatch(/^bytes=[1-9]\d*-$/);
      expect(after[0]!.status).toBe(206);
    }
    await statusFileAgrees(eb.id);
  });

  test('a read-only models folder: a clear error, nothing written; writable again, retry completes', async () => {
    const f = files.addFile('/ro.bin', { size: 3 * MiB });
    const g = files.addFile('/ro-sub.bin', { size: 3 * MiB });
    const before = await snapshotTree(path.join(srv.modelsDir, 'vae'));
    const inFolder = await add({ url: f.url, folder: 'vae', sha256: f.sha256 });
    const inSubfolder = await add({ url: g.url, folder: 'vae/new', sha256: g.sha256 });
    for (const e of [inFolder, inSubfolder]) {
      const failed = await until(e.id, 'error');
      expect(failed.error!.message).toMatch(/read-only/i);
      expect(failed.error!.message).not.toMatch(/disk full/i);
    }
    expect(treeDiff(before, await snapshotTree(path.join(srv.modelsDir, 'vae')))).toEqual([]);
    await statusFileAgrees(inFolder.id, inSubfolder.id);
    await stillServing();

    await readOnly!.setReadOnly(false);
    for (const [e, src] of [[inFolder, f], [inSubfolder, g]] as const) {
      expect((await srv.api('POST', `/api/downloads/${e.id}/retry`)).status).toBe(200);
      await until(e.id, 'completed');
      expect(sha(await fs.readFile(path.join(srv.modelsDir, e.dest)))).toBe(src.sha256);
    }
    await readOnly!.setReadOnly(true);
  });

  test('a folder that does not exist yet is created, several levels deep', async () => {
    const f = files.addFile('/deep.bin', { size: 3 * MiB });
    const folder = `loras/not/yet/there-${connections}`;
    expect(await exists(path.join(srv.modelsDir, 'loras/not'))).toBe(false);
    const e = await add({ url: f.url, folder, sha256: f.sha256 });
    await until(e.id, 'completed');
    expect(await fs.readdir(path.join(srv.modelsDir, folder))).toEqual(['deep.bin']);
    expect(sha(await fs.readFile(path.join(srv.modelsDir, e.dest)))).toBe(f.sha256);
  });

  test('a dest that is a folder: refused with a clear error, the folder untouched', async () => {
    const f = files.addFile('/taken.bin', { size: 3 * MiB });
    const taken = path.join(srv.modelsDir, 'loras', 'taken.bin');
    await fs.mkdir(taken, { recursive: true });
    await fs.writeFile(path.join(taken, 'keep.txt'), 'mine');
    const before = await snapshotTree(path.join(srv.modelsDir, 'loras'));
    for (const overwrite of [false, true]) {
      const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras', overwrite });
      expect(res.status).toBe(409);
      expect(res.body.error).toEqual({ code: 'DEST_IS_DIRECTORY', message: expect.stringMatching(/loras\/taken\.bin is a folder/) });
    }
    expect(treeDiff(before, await snapshotTree(path.join(srv.modelsDir, 'loras')))).toEqual([]);
    expect((await srv.api('GET', '/api/downloads')).body.downloads.some((e: Entry) => e.dest === 'loras/taken.bin')).toBe(false);
    await stillServing();
  });

  test('a folder that appears at dest while the file downloads: a clear error, the folder untouched', async () => {
    const f = files.addFile('/late.bin', { size: 3 * MiB, throttle: 4 * MiB });
    const e = await add({ url: f.url, folder: 'loras/late', sha256: f.sha256 });
    await waitFor(() => (entryOf(e.id)?.downloaded ?? 0) > 0, 'bytes to flow');
    const abs = path.join(srv.modelsDir, e.dest);
    await fs.mkdir(abs);
    await fs.writeFile(path.join(abs, 'keep.txt'), 'mine');
    const failed = await until(e.id, 'error');
    expect(failed.error).toEqual({ code: 'DEST_IS_DIRECTORY', message: expect.stringMatching(/^late\.bin is a folder now; .* press retry$/i) });
    expect(await fs.readdir(abs)).toEqual(['keep.txt']);
    expect(await fs.readFile(path.join(abs, 'keep.txt'), 'utf8')).toBe('mine');
    await statusFileAgrees(e.id);
    await stillServing();

    // The folder moved away, retry finishes the kept download without fetching it again.
    await fs.rename(abs, `${abs}.moved`);
    const before = files.requests.length;
    expect((await srv.api('POST', `/api/downloads/${e.id}/retry`)).status).toBe(200);
    await until(e.id, 'completed');
    expect(sha(await fs.readFile(abs))).toBe(f.sha256);
    expect(await fs.readFile(path.join(`${abs}.moved`, 'keep.txt'), 'utf8')).toBe('mine');
    const sent = files.requests.slice(before).filter((r) => r.path === '/late.bin').reduce((n, r) => n + r.bytesSent, 0);
    expect(sent).toBeLessThan(64 * 1024);
  });
});

test('a models folder that does not exist at all is created with the first download', async () => {
  const { dir, cleanup } = await tempDir();
  const files = await startFileServer();
  const modelsDir = path.join(dir, 'not', 'yet', 'models');
  const srv = await startTestServer({ MODELS_DIR: modelsDir }, { dir });
  try {
    const f = files.addFile('/first.bin', { size: 256 * 1024 });
    const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'checkpoints', sha256: f.sha256 });
    expect(res.status).toBe(202);
    const id = res.body.download.id as string;
    await waitFor(() => srv.store.getById(id)?.status === 'completed', 'completion');
    expect(sha(await fs.readFile(path.join(modelsDir, 'checkpoints', 'first.bin')))).toBe(f.sha256);
  } finally {
    await srv.stop();
    await files.close();
    await cleanup();
  }
});
