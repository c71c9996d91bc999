/**
 * Edits of the status file by another process are applied; a broken or empty one is ignored (never
 * taken for "no downloads"); an edit made while downloads write the file is not lost to our next
 * write; our own writes are never taken for edits.
 *
 * Checked to fail without the protection: before readFile returned "unusable" for them, a broken
 * or empty edit was logged as ignored and then applied as an empty set, wiping every entry; before
 * the store looked at the file before each write, an edit made during a download was overwritten by
 * the next progress write before the watcher (polling every 250 ms) saw it; before a write waited
 * for a file found empty or cut short to be finished, an edit written in place was renamed over
 * midway and lost: the in-place test failed in 2 of 9 runs (when the store, not the watcher, was
 * first to see the empty file), and the one before it in 5 of 8 runs beside two busy CPU loops
 * (0 of 8 with the wait).
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import type { Entry } from '../../server/protocol/wire';
import { createEditWatch } from '../../server/store/status-file-watch';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';

let files: FileServer | undefined;
const servers: TestServer[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  for (const c of cleanups.splice(0)) await c();
  await files?.close();
  files = undefined;
});

async function startWith(content: string): Promise<{ srv: TestServer; dir: string }> {
  const { dir, cleanup } = await tempDir('md-edits-');
  cleanups.push(cleanup);
  await fs.writeFile(path.join(dir, 'status.json'), content);
  const srv = await startTestServer({}, { dir });
  servers.push(srv);
  return { srv, dir };
}

const t = Date.now() / 1000;
const good = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'good1', url: 'http://127.0.0.1:9/a.bin', status: 'completed', progress: 100, downloaded: 5, file_size: 5, speed: 0, eta: null,
  start_time: t, timestamp: t, completion_time: t, attempts: 1, ...over,
});

test('a broken, empty or wrongly shaped edit is ignored, never taken for "no downloads"', async () => {
  const { srv } = await startWith(JSON.stringify({ 'loras/ok.bin': good(), 'vae/other.bin': good({ id: 'other' }) }));
  const ignored = (): number => srv.log.lines.filter((l) => l.includes('ignored an edit')).length;
  // What a non-atomic writer (`jq … > status.json`, Python's open('w')) leaves for a moment.
  const edits = ['{"loras/ok.bin": {"url": ', '', '[]', 'null'];
  for (const [i, text] of edits.entries()) {
    await fs.writeFile(srv.statusFile, text);
    await waitFor(() => ignored() === i + 1, `the edit ${JSON.stringify(text)} to be noticed`);
    expect(srv.store.all().map((e) => e.dest).sort()).toEqual(['loras/ok.bin', 'vae/other.bin']);
  }
  expect(srv.log.lines.filter((l) => l.includes('edited by another process'))).toEqual([]);
  // Then a good one is applied.
  await fs.writeFile(srv.statusFile, JSON.stringify({ 'loras/ok.bin': good() }));
  await waitFor(() => srv.store.all().length === 1, 'the good edit to be applied');
});

test('an edit saved with a byte-order mark (an editor on Windows) is applied like any other', async () => {
  const { srv } = await startWith(JSON.stringify({ 'loras/ok.bin': good() }));
  await fs.writeFile(srv.statusFile, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ 'loras/ok.bin': good(), 'vae/added.bin': good({ id: 'added' }) }))]));
  await waitFor(() => srv.store.getById('added'), 'the edit to be applied');
  expect(srv.log.lines.filter((l) => l.includes('ignored an edit'))).toEqual([]);
});

describe('edits by another process', () => {
  test('an edit written in place between our look and our rename is read from the file we looked at, and applied', async () => {
    const { dir, cleanup } = await tempDir('md-edits-');
    cleanups.push(cleanup);
    const file = path.join(dir, 'status.json');
    const ours = JSON.stringify({ 'loras/ok.bin': good() });
    await fs.writeFile(file, ours);
    const edits: Array<Map<string, Entry>> = [];
    const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
    const watch = createEditWatch({ file, log: quiet, isValidDest: () => true, enabled: true, onEdit: (e) => edits.push(e) });
    watch.remember(ours);
    // A write with nothing in between: no edit.
    expect(await watch.look()).toBe(false);
    const next = JSON.stringify({ 'loras/ok.bin': good({ progress: 100 }) });
    watch.remember(next);
    await writeFileAtomic(file, next);
    await watch.afterWrite();
    expect(edits).toEqual([]);
    // Looked at; then another process writes the file in place (the same file, truncated and
    // filled); then our write renames over that name, as every write does.
    expect(await watch.look()).toBe(false);
    await fs.writeFile(file, JSON.stringify({ 'loras/ok.bin': good(), 'vae/added.bin': good({ id: 'added' }) }));
    const third = JSON.stringify({ 'loras/ok.bin': good({ attempts: 2 }) });
    watch.remember(third);
    await writeFileAtomic(file, third);
    expect(await fs.readFile(file, 'utf8')).toBe(third); // the edit is no longer under the name
    await watch.afterWrite();
    expect(edits).toHaveLength(1);
    expect([...edits[0]!.keys()].sort()).toEqual(['loras/ok.bin', 'vae/added.bin']);
    await watch.close();
  });

  test('an edit made while a download writes the file is applied, not lost to our next write; the live download keeps its state', async () => {
    files = await startFileServer();
    const f = files.addFile('/live.bin', { size: 3_000_000, throttle: 1_500_000 });
    const { srv } = await startWith(JSON.stringify({ 'loras/ok.bin': good() }));
    const id = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras', sha256: f.sha256 })).body.download.id as string;
    await waitFor(() => (srv.store.getById(id)?.downloaded ?? 0) > 100_000, 'bytes to flow');

    // A good edit: one entry changed, one added, one that leaves MODELS_DIR, and the live
    // download claimed to be completed (the process that owns the transfer knows better).
    const edited = {
      'loras/ok.bin': good({ error: { code: 'NOTE', message: 'edited by hand' }, status: 'error' }),
      'vae/added.bin': good({ id: 'added' }),
      '../../escape.bin': good({ id: 'escape' }),
      'loras/live.bin': { ...srv.store.get('loras/live.bin'), status: 'completed', progress: 100 },
    };
    // Written at once, as another process writes it: an async write here would wait in our thread
    // pool behind the download's own disk work, its truncation and its bytes apart for as long.
    fsSync.writeFileSync(srv.statusFile, JSON.stringify(edited));
    await waitFor(() => srv.store.getById('added'), 'the edit to be applied', 3000);
    expect(srv.store.get('loras/ok.bin')!.error).toEqual({ code: 'NOTE', message: 'edited by hand' });
    expect(srv.store.all().map((e) => e.dest).sort()).toEqual(['loras/live.bin', 'loras/ok.bin', 'vae/added.bin']);
    const done = await waitFor(() => (srv.store.getById(id)?.status === 'completed' ? srv.store.getById(id) : undefined), 'the live download', 15_000);
    expect(done.downloaded).toBe(f.size);
    expect((await fs.readFile(path.join(srv.modelsDir, 'loras', 'live.bin'))).equals(f.data)).toBe(true);
  });

  test('an edit written in place (truncated first, then filled) while downloads rewrite the file is waited for, not lost', async () => {
    files = await startFileServer();
    const f = files.addFile('/inplace.bin', { size: 3_000_000, throttle: 1_500_000 });
    const { srv } = await startWith(JSON.stringify({ 'loras/ok.bin': good() }));
    const id = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download.id as string;
    await waitFor(() => (srv.store.getById(id)?.downloaded ?? 0) > 100_000, 'bytes to flow');
    // What `jq … > status.json` does: open with O_TRUNC, then write. Wait until the store has seen
    // the empty file, then finish: a rename over the file in between would send this write to the
    // old, unlinked file.
    const edited = { ...JSON.parse(await fs.readFile(srv.statusFile, 'utf8')), 'vae/inplace.bin': good({ id: 'inplace' }) };
    const handle = await fs.open(srv.statusFile, 'w');
    try {
      await waitFor(() => srv.log.lines.some((l) => l.includes('ignored an edit') && l.includes('it is empty')), 'the store to see the file empty');
      // At once, as another process would (see above): not queued in our thread pool for longer than the writer waits.
      fsSync.writeSync(handle.fd, JSON.stringify(edited));
    } finally {
      await handle.close();
    }
    await waitFor(() => srv.store.getById('inplace'), 'the edit to be applied', 3000);
    await waitFor(() => srv.store.getById(id)?.status === 'completed', 'the download', 15_000);
  });

  test('our own writes, many of them during three downloads, are never taken for edits', async () => {
    files = await startFileServer();
    const { srv } = await startWith('{}');
    const ids: string[] = [];
    for (const name of ['x', 'y', 'z']) {
      const f = files.addFile(`/${name}.bin`, { size: 2_000_000, throttle: 1_500_000 });
      ids.push((await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download.id as string);
    }
    let versions = 0;
    let last = '';
    await waitFor(async () => {
      const text = await fs.readFile(srv.statusFile, 'utf8').catch(() => last);
      if (text !== last) versions++;
      last = text;
      return ids.every((i) => srv.store.getById(i)?.status === 'completed');
    }, 'the downloads', 15_000);
    expect(versions).toBeGreaterThan(5);
    await srv.store.flush();
    // Then one real edit: it is seen (so the watcher was working all along), and it is the only one.
    const data = JSON.parse(await fs.readFile(srv.statusFile, 'utf8')) as Record<string, unknown>;
    data['vae/theirs.bin'] = good({ id: 'theirs' });
    fsSync.writeFileSync(srv.statusFile, JSON.stringify(data));
    await waitFor(() => srv.store.getById('theirs'), 'the edit to be applied');
    expect(srv.log.lines.filter((l) => l.includes('edited by another process'))).toHaveLength(1);
  });
});
