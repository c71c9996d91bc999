/**
 * A Civitai download is described by Civitai's API before it starts: its name, its size (checked
 * against the free space) and its SHA256, which the finished file must match. A model page without
 * a version gets the latest one, and the answer says so.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub';
import { settled, startTestServer, type TestServer } from '../helpers/harness';
import { smallDisk, type SmallDisk } from '../helpers/small-disk';

let hub: FakeHub;
let srv: TestServer;
let disk: SmallDisk | undefined;
afterEach(async () => {
  await disk?.release();
  disk = undefined;
  await srv?.stop();
  await hub?.close();
});

const data = (n: number, seed: string): Buffer => Buffer.concat(Array.from({ length: Math.ceil(n / 32) }, (_, i) => crypto.createHash('sha256').update(`${seed}${i}`).digest())).subarray(0, n);

test('verified by the SHA256 Civitai publishes: a match completes, a mismatch ends in error with no file', async () => {
  hub = await startFakeHub();
  const good = data(40_000, 'good');
  hub.civitai.model({ id: 7, name: 'Style', versions: [{ id: 70, name: 'v1', files: [{ name: 'style.safetensors', data: good, primary: true }] }] });
  hub.civitai.model({ id: 8, name: 'Liar', versions: [{ id: 80, name: 'v1', files: [{ name: 'liar.safetensors', data: data(40_000, 'x'), primary: true, sha256: 'c'.repeat(64) }] }] });
  srv = await startTestServer({ CIVITAI_ENDPOINT: hub.civitai.url });

  const ok = await srv.api('POST', '/api/downloads', { url: `${hub.civitai.url}/api/download/models/70`, folder: 'loras' });
  expect(ok.status).toBe(202);
  expect(ok.body.download).toMatchObject({ dest: 'loras/style.safetensors', sha256: crypto.createHash('sha256').update(good).digest('hex') });
  expect((await settled(srv, ok.body.download.id, 20_000)).status).toBe('completed');

  const bad = await srv.api('POST', '/api/downloads', { url: `${hub.civitai.url}/api/download/models/80`, folder: 'loras' });
  expect(bad.status).toBe(202);
  const e = await settled(srv, bad.body.download.id, 20_000);
  expect(e).toMatchObject({ status: 'error', error: { code: 'SHA256_MISMATCH' } });
  await expect(fs.stat(path.join(srv.modelsDir, 'loras', 'liar.safetensors'))).rejects.toMatchObject({ code: 'ENOENT' });
});

test('a model page without a version downloads the latest one and says so', async () => {
  hub = await startFakeHub();
  hub.civitai.model({
    id: 9,
    name: 'Checkpoint',
    versions: [
      { id: 92, name: 'v2', files: [{ name: 'ckpt-v2.safetensors', data: data(20_000, 'v2'), primary: true }] },
      { id: 91, name: 'v1', files: [{ name: 'ckpt-v1.safetensors', data: data(20_000, 'v1'), primary: true }] },
    ],
  });
  srv = await startTestServer({ CIVITAI_ENDPOINT: hub.civitai.url });
  const res = await srv.api('POST', '/api/downloads', { url: `${hub.civitai.url}/models/9/checkpoint`, folder: 'checkpoints' });
  expect(res.status).toBe(202);
  expect(res.body.download.dest).toBe('checkpoints/ckpt-v2.safetensors');
  expect(res.body.note).toMatch(/v2|92|latest/i);
  expect((await settled(srv, res.body.download.id, 20_000)).status).toBe('completed');
});

test('its size is checked against its own disk: bytes already in its .part count, and what the downloads under way will write', async () => {
  hub = await startFakeHub();
  const big = data(400_000, 'big');
  hub.civitai.model({ id: 5, name: 'Big', versions: [{ id: 50, name: 'v1', files: [{ name: 'big.safetensors', data: big, primary: true }] }] });
  srv = await startTestServer({ CIVITAI_ENDPOINT: hub.civitai.url });
  disk = await smallDisk(path.join(srv.modelsDir, 'loras'), 512 * 1024);
  const url = `${hub.civitai.url}/api/download/models/50`;

  // 400,000 bytes do not fit in loras' 512 KiB disk with a 200,000-byte file on it (the models
  // folder's own disk, which was checked before, has room).
  await fs.writeFile(path.join(disk.dir, 'other.bin'), Buffer.alloc(200_000));
  const refused = await srv.api('POST', '/api/downloads', { url, folder: 'loras' });
  expect(refused.status).toBe(507);
  expect(refused.body.error).toMatchObject({ code: 'INSUFFICIENT_SPACE', message: expect.stringMatching(/^big\.safetensors needs .*\(400,000 bytes\) more in loras, and that disk has .* free; free some space first/) });
  expect(srv.store.all()).toEqual([]);

  // The other file gone, 250,000 of its bytes already in its .part (a download resumed): the
  // 150,000 left fit in what is free (about 270,000), the whole file would not.
  await fs.rm(path.join(disk.dir, 'other.bin'));
  await fs.writeFile(path.join(disk.dir, 'big.safetensors.part'), big.subarray(0, 250_000));
  const resumed = await srv.api('POST', '/api/downloads', { url, folder: 'loras' });
  expect(resumed.status).toBe(202);
  expect((await settled(srv, resumed.body.download.id, 20_000)).status).toBe('completed');
  expect((await fs.readFile(path.join(disk.dir, 'big.safetensors'))).equals(big)).toBe(true);
});
