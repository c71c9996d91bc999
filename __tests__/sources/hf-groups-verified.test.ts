/**
 * Groups (a Hugging Face repository, a workflow's models) and what the service already knows:
 * a file completed elsewhere (same sha256) is reported, or linked with `link: true`; a small file
 * kept in git is checked by its git blob id; a group whose known sizes do not fit on its disk
 * answers 507 before anything starts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { gitBlobOf, sha256Of, startFakeHub, type FakeHub } from '../helpers/fake-hub';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { settled, startTestServer, waitFor, type TestServer } from '../helpers/harness';
import { smallDisk, type SmallDisk } from '../helpers/small-disk';
import { node } from '../workflows/fixtures';

let hub: FakeHub | undefined;
let files: FileServer | undefined;
let srv: TestServer | undefined;
let disk: SmallDisk | undefined;
afterEach(async () => {
  await srv?.stop({ keepDir: true });
  await disk?.release();
  if (srv) await fs.rm(srv.dir, { recursive: true, force: true });
  await hub?.close();
  await files?.close();
  srv = undefined;
  disk = undefined;
  hub = undefined;
  files = undefined;
});

const bytes = (n: number, seed: string): Buffer => {
  const out = Buffer.alloc(n);
  for (let i = 0, h = crypto.createHash('sha256').update(seed).digest(); i < n; i += 32, h = crypto.createHash('sha256').update(h).digest()) h.copy(out, i);
  return out;
};

const settleAll = (s: TestServer, downloads: Entry[]): Promise<Record<string, Entry>> =>
  Promise.all(downloads.map((d) => settled(s, d.id, 15_000))).then((es) => Object.fromEntries(es.map((e) => [e.dest, e])));

test('a repository with a file already completed elsewhere: reported in found_elsewhere, not fetched; with link: true every file known by its sha256 is linked', async () => {
  hub = await startFakeHub({ hfToken: 'hf_secret_token' });
  hub.hf.repo('org/parts');
  const shared = bytes(150_000, 'shared');
  hub.hf.commit('org/parts', { 'unet/model.safetensors': shared, 'vae/vae.safetensors': bytes(60_000, 'v'), 'config.json': '{"a":1}' });
  srv = await startTestServer({ HF_ENDPOINT: hub.hf.url, HF_TOKEN: 'hf_secret_token' });
  // The shared file, fetched earlier on its own: its sha256 is the Hub's X-Linked-Etag.
  const single = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/parts/resolve/main/unet/model.safetensors`, folder: 'checkpoints' });
  expect((await settled(srv, single.body.download.id, 15_000)).sha256).toBe(sha256Of(shared));

  const fetched = (): string[] => hub!.allRequests().map((r) => r.url).filter((u) => u.includes('/resolve/') && u.includes('model.safetensors'));
  const before = fetched().length;
  const res = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/parts`, folder: 'diffusion_models' });
  expect(res.status).toBe(202);
  expect(res.body.found_elsewhere).toEqual([{ folder: 'diffusion_models/parts/unet', filename: 'model.safetensors', same_as: 'checkpoints/model.safetensors', linked: false }]);
  const downloads = res.body.downloads as Entry[];
  expect(downloads.map((d) => d.dest).sort()).toEqual(['diffusion_models/parts/config.json', 'diffusion_models/parts/vae/vae.safetensors']);
  const ends = await settleAll(srv, downloads);
  expect(Object.values(ends).map((e) => e.status)).toEqual(['completed', 'completed']);
  expect(fetched().length).toBe(before);
  // The small git file's sha256 was computed while its blob id was checked: it is known now too.
  expect(ends['diffusion_models/parts/config.json']!.sha256).toBe(sha256Of(Buffer.from('{"a":1}')));

  const linked = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/parts`, folder: 'unet', link: true });
  expect(linked.status).toBe(202);
  const found = linked.body.found_elsewhere as Array<{ filename: string; linked: boolean; same_as: string }>;
  // Known by sha256: the LFS files. A small git file is listed by its blob id only: fetched again.
  expect(found.map((f) => [f.filename, f.linked]).sort()).toEqual([['model.safetensors', true], ['vae.safetensors', true]]);
  const again = linked.body.downloads as Entry[];
  expect(again.map((d) => [d.dest, d.status]).sort()).toEqual([
    ['unet/parts/config.json', 'queued'],
    ['unet/parts/unet/model.safetensors', 'completed'],
    ['unet/parts/vae/vae.safetensors', 'completed'],
  ]);
  for (const d of again.filter((x) => x.status === 'completed')) {
    expect(d.group).toEqual(linked.body.group);
    const f = found.find((x) => x.filename === d.filename)!;
    const [a, b] = await Promise.all([fs.stat(path.join(srv.modelsDir, d.dest)), fs.stat(path.join(srv.modelsDir, f.same_as))]);
    expect(a.ino).toBe(b.ino);
  }
  await settleAll(srv, again);
  expect(fetched().length).toBe(before);

  // The token stays where it belongs in answers and in the status file.
  await srv.store.flush();
  for (const text of [JSON.stringify(res.body), JSON.stringify(linked.body), await fs.readFile(srv.statusFile, 'utf8')]) expect(text).not.toContain('hf_secret_token');
  const withToken = hub.allRequests().filter((r) => JSON.stringify(r.headers).includes('hf_secret_token'));
  expect(withToken.every((r) => r.host === new URL(hub!.hf.url).host)).toBe(true);
});

test('a small git file is verified by its git blob id: a match completes (its git_oid kept across a restart), a mismatch ends in error with no file', async () => {
  hub = await startFakeHub();
  hub.hf.repo('org/cfg');
  const good = Buffer.from('{"ok":true}');
  // Same length as the listed bytes: only the blob id tells them apart.
  hub.hf.commit('org/cfg', { 'config.json': good, 'bad.json': { data: Buffer.from('{"x":1}'), lfs: false, served: Buffer.from('{"x":2}') } });
  srv = await startTestServer({ HF_ENDPOINT: hub.hf.url });
  const res = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/cfg`, folder: 'diffusion_models' });
  expect(res.status).toBe(202);
  expect((res.body.downloads as Entry[]).find((d) => d.filename === 'config.json')!.git_oid).toBe(gitBlobOf(good));
  const ends = await settleAll(srv, res.body.downloads);
  expect(ends['diffusion_models/cfg/config.json']).toMatchObject({ status: 'completed', git_oid: gitBlobOf(good), sha256: sha256Of(good) });
  expect(ends['diffusion_models/cfg/bad.json']).toMatchObject({ status: 'error', error: { code: 'GIT_OID_MISMATCH' } });
  expect(ends['diffusion_models/cfg/bad.json']!.error!.message).toMatch(/git blob id is [0-9a-f]{40}, but Hugging Face lists [0-9a-f]{40}; the file was discarded/);
  const dir = path.join(srv.modelsDir, 'diffusion_models', 'cfg');
  expect((await fs.readdir(dir)).sort()).toEqual(['config.json']);

  // The blob id is in the status file, so a restarted server still knows it.
  const { dir: root } = srv;
  await srv.stop({ keepDir: true });
  srv = await startTestServer({ HF_ENDPOINT: hub.hf.url }, { dir: root });
  expect(srv.store.get('diffusion_models/cfg/config.json')!.git_oid).toBe(gitBlobOf(good));
  expect(srv.store.get('diffusion_models/cfg/bad.json')!.git_oid).toBe(gitBlobOf(Buffer.from('{"x":1}')));
});

test('a repository too big for its disk answers 507 before anything starts; bytes already in a .part count', async () => {
  hub = await startFakeHub();
  hub.hf.repo('org/big');
  hub.hf.commit('org/big', { 'a.safetensors': bytes(400_000, 'a'), 'b.safetensors': bytes(200_000, 'b') });
  hub.hf.repo('org/fits');
  const c = bytes(300_000, 'c');
  hub.hf.commit('org/fits', { 'c.safetensors': c, 'd.safetensors': bytes(200_000, 'd') });
  srv = await startTestServer({ HF_ENDPOINT: hub.hf.url });
  disk = await smallDisk(path.join(srv.modelsDir, 'diffusion_models'), 512 * 1024);

  const res = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/big`, folder: 'diffusion_models' });
  expect(res.status).toBe(507);
  expect(res.body.error.code).toBe('INSUFFICIENT_SPACE');
  expect(res.body.error.message).toMatch(/org\/big needs .*\(600,000 bytes\) more for its 2 files in diffusion_models, and that disk has .*\([\d,]+ bytes\) free/);
  expect(srv.store.all()).toEqual([]);
  expect(hub.allRequests().filter((r) => r.url.includes('/resolve/'))).toEqual([]);
  expect(await fs.readdir(disk.dir)).toEqual([]);

  // 500,000 bytes on a 524,288-byte disk that already holds 200,000 of them in a .part: they fit.
  await fs.mkdir(path.join(disk.dir, 'fits'), { recursive: true });
  await fs.writeFile(path.join(disk.dir, 'fits', 'c.safetensors.part'), c.subarray(0, 200_000));
  const fits = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/fits`, folder: 'diffusion_models' });
  expect(fits.status).toBe(202);
  const ends = await settleAll(srv, fits.body.downloads);
  expect(Object.values(ends).map((e) => e.status)).toEqual(['completed', 'completed']);
});

test('a workflow whose missing models do not fit on their disk answers 507 and starts nothing', async () => {
  files = await startFileServer();
  const a = files.addFile('/a.safetensors', { size: 200_000 });
  const b = files.addFile('/b.safetensors', { size: 200_000 });
  srv = await startTestServer();
  disk = await smallDisk(path.join(srv.modelsDir, 'loras'), 256 * 1024);
  const link = (name: string, url: string) => ({ properties: { models: [{ name, url, directory: 'loras' }] } });
  const workflow = { nodes: [node(1, 'LoraLoader', ['a.safetensors', 1, 1], link('a.safetensors', a.url)), node(2, 'LoraLoader', ['b.safetensors', 1, 1], link('b.safetensors', b.url))], links: [] };
  const res = await srv.api('POST', '/api/workflows/download?name=flow.json', workflow);
  expect(res.status).toBe(507);
  expect(res.body.error).toMatchObject({ code: 'INSUFFICIENT_SPACE', message: expect.stringMatching(/^flow needs .*\(400,000 bytes\) more for its 2 files in loras/) });
  expect(srv.store.all()).toEqual([]);
  // The plan asked each source for one byte (its size); nothing more was fetched.
  expect(files.requests.every((r) => r.range === 'bytes=0-0')).toBe(true);
  expect(await fs.readdir(disk.dir)).toEqual([]);
});

test('what the downloads under way have still to write is not free: a workflow that fits only in that space answers 507', async () => {
  files = await startFileServer();
  const slow = files.addFile('/slow.safetensors', { size: 300_000, throttle: 30_000 });
  const a = files.addFile('/a.safetensors', { size: 200_000 });
  const b = files.addFile('/b.safetensors', { size: 200_000 });
  srv = await startTestServer();
  disk = await smallDisk(path.join(srv.modelsDir, 'loras'), 600 * 1024);
  const started = await srv.api('POST', '/api/downloads', { url: slow.url, folder: 'loras' });
  expect(started.status).toBe(202);
  const under = await waitFor(() => {
    const e = srv!.store.get('loras/slow.safetensors');
    return e?.status === 'downloading' && e.downloaded > 0 ? e : undefined;
  }, 'the slow download under way');
  expect(under.downloaded).toBeLessThan(150_000);
  // 400,000 bytes fit in what is free now (over 450,000), not once the slow file has its other ~270,000.
  const link = (name: string, url: string) => ({ properties: { models: [{ name, url, directory: 'loras' }] } });
  const workflow = { nodes: [node(1, 'LoraLoader', ['a.safetensors', 1, 1], link('a.safetensors', a.url)), node(2, 'LoraLoader', ['b.safetensors', 1, 1], link('b.safetensors', b.url))], links: [] };
  const res = await srv.api('POST', '/api/workflows/download?name=flow.json', workflow);
  expect(res.status).toBe(507);
  expect(res.body.error.message).toMatch(/^flow needs .*\(400,000 bytes\) more for its 2 files in loras, and that disk has .* free, .* of it still to be written by the downloads under way; free some space first/);
  expect(srv.store.get('loras/a.safetensors')).toBeUndefined();
  expect(srv.store.get('loras/slow.safetensors')!.status).toBe('downloading');
});
