/**
 * A status file that is damaged, of the wrong shape or full of impossible values never stops the
 * server: it starts, keeps the bad file aside (`status.json.bad-*`), says so in the log and serves
 * what it could use. (Edits by another process: status-file-edits.test.ts.)
 *
 * How these were checked to fail without their protection: replacing `keepAside` with a no-op makes
 * the whole-file rows fail (no `.bad-*` copy); without the URL check in `parseEntry` the data: row
 * downloads its payload into models/ and the token row serves the token; without a fallback in
 * `keepAside` a rename that fails (EBUSY) stopped the server from starting; without new ids for
 * copies, only the last of two entries with one id could be reached; before the file was rewritten
 * at start-up, it kept the dropped entries, the copied ids and the stored token until the next
 * download happened to rewrite it; before the byte-order mark was stripped, a file saved by a
 * Windows editor was put aside as "not valid JSON" and every download in it forgotten.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
// The same module object status-file-read.ts uses: spied on to inject a failure of the disk.
import fsPromises from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';
import { snapshotTree, watchOutgoing } from './helpers';

let files: FileServer | undefined;
const servers: TestServer[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  for (const c of cleanups.splice(0)) await c();
  await files?.close();
  files = undefined;
});

/** A server started on a temp folder whose status file holds `content`. */
async function startWith(content: string | Buffer): Promise<{ srv: TestServer; dir: string }> {
  const { dir, cleanup } = await tempDir('md-status-');
  cleanups.push(cleanup);
  await fs.writeFile(path.join(dir, 'status.json'), content);
  const srv = await startTestServer({}, { dir });
  servers.push(srv);
  return { srv, dir };
}

/** The status file as it is on disk now (no flush: what another process would read). */
const onDisk = async (srv: TestServer): Promise<Record<string, Entry>> => JSON.parse(await fs.readFile(srv.statusFile, 'utf8')) as Record<string, Entry>;
const asideFiles = async (dir: string): Promise<string[]> => (await fs.readdir(dir)).filter((n) => n.startsWith('status.json.bad-'));
const t = Date.now() / 1000;
const good = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'good1', url: 'http://127.0.0.1:9/a.bin', status: 'completed', progress: 100, downloaded: 5, file_size: 5, speed: 0, eta: null,
  start_time: t, timestamp: t, completion_time: t, attempts: 1, ...over,
});

describe('a status file that cannot be used at all is kept aside, and the server starts empty', () => {
  test.each([
    ['truncated mid-write', '{"loras/a.bin": {"url": "http://127.0.0.1:9/a.bin", "status": "downl'],
    ['not JSON', 'this is not JSON\n'],
    ['binary garbage', crypto.randomBytes(4096)],
    ['an array', JSON.stringify([good()])],
    ['a number', '42'],
    ['a string', '"loras/a.bin"'],
    ['null', 'null'],
    ['true', 'true'],
  ])('%s', async (_name, content) => {
    const { srv, dir } = await startWith(content);
    expect(srv.store.all()).toEqual([]);
    expect((await srv.api('GET', '/status')).body).toEqual({});
    expect((await srv.api('GET', '/healthz')).body).toEqual({ ok: true });
    const aside = await asideFiles(dir);
    expect(aside).toHaveLength(1);
    expect((await fs.readFile(path.join(dir, aside[0]!))).equals(Buffer.from(content))).toBe(true);
    expect(srv.log.lines.filter((l) => l.startsWith('warn') && l.includes(`kept it as ${path.join(dir, aside[0]!)}`))).toHaveLength(1);
  });
});

test('after a bad file, downloads work and the status file is whole again', async () => {
  files = await startFileServer();
  const { srv } = await startWith('{"broken": ');
  const f = files.addFile('/after.bin', { size: 50_000 });
  const id = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'vae' })).body.download.id as string;
  await waitFor(() => srv.store.getById(id)?.status === 'completed', 'the download');
  await srv.store.flush();
  const saved = JSON.parse(await fs.readFile(srv.statusFile, 'utf8')) as Record<string, Entry>;
  expect(Object.keys(saved)).toEqual(['vae/after.bin']);
});

test('entries with impossible values: the usable ones are served with sane values, the rest dropped and logged', async () => {
  const content = {
    'loras/ok.bin': good(),
    'loras/negative.bin': good({ id: 'neg', status: 'paused', downloaded: -500, file_size: -1, progress: 900, attempts: -3, completion_time: undefined }),
    'loras/huge-progress.bin': good({ id: 'prog', status: 'paused', downloaded: 10, file_size: 100, progress: 900 }),
    'loras/lies.bin': good({ id: 'lies', dest: '../../../etc/passwd', folder: '..', filename: '../../x' }),
    'loras/weird-types.bin': good({ id: 'types', status: 'error', downloaded: '12', file_size: { n: 1 }, start_time: 'yesterday', error: 42 }),
    'loras/unknown-status.bin': good({ id: 'unk', status: 'exploded' }),
    'loras/no-url.bin': good({ id: 'nourl', url: undefined }),
    'loras/number-url.bin': good({ id: 'numurl', url: 12 }),
    'loras/array.bin': [good()],
    'loras/null.bin': null,
    '../../../escape.bin': good({ id: 'esc1' }),
    'loras/../../escape.bin': good({ id: 'esc2' }),
    '/etc/passwd': good({ id: 'esc3' }),
    'noslash': good({ id: 'noslash' }),
    'etc/unknown-folder.bin': good({ id: 'unkfolder' }),
    'loras/nul\u0000.bin': good({ id: 'nul' }),
    'loras/..': good({ id: 'dotdot' }),
  };
  const { srv, dir } = await startWith(JSON.stringify(content));
  const served = (await srv.api('GET', '/api/downloads')).body.downloads as Entry[];
  expect(served.map((e) => e.dest).sort()).toEqual(['loras/huge-progress.bin', 'loras/lies.bin', 'loras/negative.bin', 'loras/ok.bin', 'loras/weird-types.bin']);
  for (const e of served) {
    expect(Number.isInteger(e.downloaded) && e.downloaded >= 0).toBe(true);
    expect(e.file_size === null || (Number.isInteger(e.file_size) && e.file_size >= 0)).toBe(true);
    expect(Number.isInteger(e.progress) && e.progress >= 0 && e.progress <= 100).toBe(true);
    expect(Number.isInteger(e.attempts) && e.attempts >= 0).toBe(true);
    expect(typeof e.start_time).toBe('number');
    expect(e.error === undefined || (typeof e.error.code === 'string' && typeof e.error.message === 'string')).toBe(true);
    // Where it lives comes from its key, never from what the value claims.
    expect(`${e.folder}/${e.filename}`).toBe(e.dest);
  }
  const byDest = new Map(served.map((e) => [e.dest, e]));
  expect(byDest.get('loras/negative.bin')).toMatchObject({ downloaded: 0, file_size: null, progress: 0, attempts: 0 });
  expect(byDest.get('loras/huge-progress.bin')).toMatchObject({ downloaded: 10, file_size: 100, progress: 10 });
  expect(byDest.get('loras/lies.bin')).toMatchObject({ folder: 'loras', filename: 'lies.bin' });
  const dropped = srv.log.lines.find((l) => l.includes('dropped 12 unusable entries'));
  expect(dropped).toBeDefined();
  expect(dropped).toContain('loras/unknown-status.bin: unknown status "exploded"');
  expect(dropped).toContain('and 2 more');
  // The file on disk says what clients are shown, at once (no download has written it since).
  expect(await onDisk(srv)).toEqual(JSON.parse(JSON.stringify(Object.fromEntries(served.map((e) => [e.dest, e])))));
  expect(srv.log.lines).toContain(`info rewrote the status file ${srv.statusFile} to match the 5 entries served (12 unusable entries dropped)`);
  // The original is kept, whole, for a person to look at.
  const aside = await asideFiles(dir);
  expect(aside).toHaveLength(1);
  expect(JSON.parse(await fs.readFile(path.join(dir, aside[0]!), 'utf8'))).toEqual(JSON.parse(JSON.stringify(content)));
  expect(srv.log.lines.some((l) => l.includes(`kept a copy of the status file as ${path.join(dir, aside[0]!)}`))).toBe(true);
});

test('entries whose URL could not be given to the API are dropped, and a stored token is never served', async () => {
  const outgoing = watchOutgoing(() => true);
  try {
    const content = {
      'loras/data.bin': good({ id: 'data', status: 'downloading', url: 'data:application/octet-stream;base64,aGVsbG8gd29ybGQ=', file_size: null, downloaded: 0 }),
      'loras/file.bin': good({ id: 'file', status: 'downloading', url: 'file:///etc/passwd' }),
      'loras/creds.bin': good({ id: 'creds', status: 'error', url: 'http://user:pass@127.0.0.1:9/c.bin' }),
      'loras/meta.bin': good({ id: 'meta', status: 'queued', url: 'http://[::ffff:169.254.169.254]/m.bin' }),
      'loras/signed.bin': good({ id: 'signed', status: 'error', url: 'http://127.0.0.1:9/s.bin?X-Amz-Signature=SIGSECRET123&token=TOKSECRET456&v=2' }),
    };
    const { srv, dir } = await startWith(JSON.stringify(content));
    const before = await snapshotTree(path.join(dir, 'models'));
    expect(srv.store.all().map((e) => e.dest)).toEqual(['loras/signed.bin']);
    expect(srv.store.get('loras/signed.bin')!.url).toBe('http://127.0.0.1:9/s.bin?v=2');
    const shown = JSON.stringify((await srv.api('GET', '/status')).body);
    expect(shown).not.toMatch(/SIGSECRET123|TOKSECRET456/);
    expect(srv.log.lines.some((l) => l.includes('dropped 4 unusable entries'))).toBe(true);
    expect(srv.log.lines.join('\n')).not.toMatch(/SIGSECRET123|TOKSECRET456|user:pass/);
    // Nor is it left in the status file until some later write: it is rewritten at start-up.
    expect(Object.keys(await onDisk(srv))).toEqual(['loras/signed.bin']);
    expect(await fs.readFile(srv.statusFile, 'utf8')).not.toMatch(/SIGSECRET123|TOKSECRET456|user:pass|data:|file:/);
    // Nothing was fetched for them, and nothing was written.
    await srv.store.flush();
    expect(await snapshotTree(path.join(dir, 'models'))).toEqual(before);
    expect(outgoing.requests).toEqual([]);
  } finally {
    outgoing.stop();
  }
});

test('temp files left by a write that was killed are removed at start-up; other files beside it are not', async () => {
  const { dir, cleanup } = await tempDir('md-status-');
  cleanups.push(cleanup);
  await fs.writeFile(path.join(dir, 'status.json'), JSON.stringify({ 'loras/ok.bin': good() }));
  // What write-file-atomic leaves when the process dies between writing and renaming.
  for (const n of ['1923351345', '434680030']) await fs.writeFile(path.join(dir, `status.json.${n}`), '{"loras/ok.bin": {"url": "ht');
  for (const keep of ['status.json.bad-2025-01-01T00-00-00-000Z', 'status.json.backup', 'other.json.123']) await fs.writeFile(path.join(dir, keep), 'keep');
  const srv = await startTestServer({}, { dir });
  servers.push(srv);
  expect(srv.store.get('loras/ok.bin')).toBeDefined();
  expect((await fs.readdir(dir)).filter((n) => n !== 'models').sort()).toEqual(['catalog.json', 'other.json.123', 'status.json', 'status.json.backup', 'status.json.bad-2025-01-01T00-00-00-000Z', 'status.json.lock']);
  expect(srv.log.lines).toContain(`info removed 2 temporary file(s) left by an interrupted write of ${srv.statusFile}`);
});

test('two entries with the same id (a copied entry) both stay reachable, each by its own id', async () => {
  const copy = good({ id: 'same-id', status: 'paused', progress: 0, downloaded: 0, file_size: null, completion_time: undefined });
  const { srv } = await startWith(JSON.stringify({ 'loras/first.bin': copy, 'loras/second.bin': copy, 'vae/third.bin': copy }));
  const entries = srv.store.all();
  expect(entries.map((e) => e.dest)).toEqual(['loras/first.bin', 'loras/second.bin', 'vae/third.bin']);
  expect(new Set(entries.map((e) => e.id)).size).toBe(3);
  expect(entries[0]!.id).toBe('same-id'); // the first keeps its id
  // The file says so too, at once: another process reading it sees the ids the API answers to.
  expect(Object.values(await onDisk(srv)).map((e) => e.id)).toEqual(entries.map((e) => e.id));
  expect(srv.log.lines.some((l) => l.startsWith(`info rewrote the status file ${srv.statusFile}`) && l.includes('(2 new ids)'))).toBe(true);
  for (const e of entries) expect((await srv.api('GET', `/api/downloads/${e.id}`)).body.download.dest).toBe(e.dest);
  // Each can be driven on its own: cancelling one leaves the others paused.
  expect((await srv.api('POST', `/api/downloads/${entries[1]!.id}/cancel`)).body.download).toMatchObject({ dest: 'loras/second.bin', status: 'cancelled' });
  expect(srv.store.all().map((e) => e.status)).toEqual(['paused', 'cancelled', 'paused']);
  expect(srv.log.lines.some((l) => l.includes('gave 2 entries') && l.includes('a new id'))).toBe(true);
});

describe('when the bad file cannot be moved aside (locked on Windows, a bind-mounted file: EBUSY)', () => {
  afterEach(() => jest.restoreAllMocks());
  const busy = (): Error => Object.assign(new Error('EBUSY: resource busy or locked, rename'), { code: 'EBUSY' });

  test('it is copied aside instead, and the server starts', async () => {
    jest.spyOn(fsPromises, 'rename').mockRejectedValueOnce(busy());
    const { srv, dir } = await startWith('{"loras/a.bin": {"url": ');
    expect((await srv.api('GET', '/healthz')).body).toEqual({ ok: true });
    const aside = await asideFiles(dir);
    expect(aside).toHaveLength(1);
    expect(await fs.readFile(path.join(dir, aside[0]!), 'utf8')).toBe('{"loras/a.bin": {"url": ');
    expect(srv.log.lines.some((l) => l.includes('nor moved aside (EBUSY'))).toBe(true);
    // The copy kept, the bad file in place is replaced at once by what is served.
    expect(await onDisk(srv)).toEqual({});
  });

  test('nor copied: the server starts all the same, and says so', async () => {
    jest.spyOn(fsPromises, 'rename').mockRejectedValueOnce(busy());
    jest.spyOn(fsPromises, 'copyFile').mockRejectedValueOnce(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
    const { srv } = await startWith('not json');
    expect((await srv.api('GET', '/status')).body).toEqual({});
    expect(srv.log.lines.some((l) => l.startsWith('error could not keep a copy') && l.includes('ENOSPC'))).toBe(true);
    // With no copy anywhere, the bad file is not overwritten at start-up: it is the only one.
    expect(await fs.readFile(srv.statusFile, 'utf8')).toBe('not json');
  });
});

describe('a status file saved by an editor on Windows is read as it is meant', () => {
  const content = { 'loras/ok.bin': good(), 'vae/paused.bin': good({ id: 'paused1', status: 'paused', progress: 40, downloaded: 2, completion_time: undefined }) };
  test.each([
    ['UTF-8 with a byte-order mark (Notepad)', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(content, null, 2))])],
    ['UTF-16 with a byte-order mark (PowerShell 5 Out-File)', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(JSON.stringify(content, null, 2), 'utf16le')])],
  ])('%s: every entry served, nothing kept aside, no warning', async (_name, bytes) => {
    const { srv, dir } = await startWith(bytes);
    expect(srv.store.all().map((e) => [e.dest, e.id, e.status])).toEqual([
      ['loras/ok.bin', 'good1', 'completed'],
      ['vae/paused.bin', 'paused1', 'paused'],
    ]);
    expect(await asideFiles(dir)).toEqual([]);
    expect(srv.log.lines.filter((l) => !l.startsWith('info'))).toEqual([]);
  });
});
