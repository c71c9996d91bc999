/**
 * A Hugging Face repository or folder URL given to `POST /api/downloads` starts one download per
 * file, as one group, pinned to the commit the revision named when it was listed; LFS files are
 * verified by their sha256; the group is kept in the status file; HF_TOKEN goes to the Hub only.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub';
import { settled, startTestServer, type TestServer } from '../helpers/harness';

let hub: FakeHub;
let srv: TestServer;
afterEach(async () => {
  await srv?.stop();
  await hub?.close();
});

const bytes = (n: number, seed: string): Buffer => {
  const out = Buffer.alloc(n);
  for (let i = 0, h = crypto.createHash('sha256').update(seed).digest(); i < n; i += 32, h = crypto.createHash('sha256').update(h).digest()) h.copy(out, i);
  return out;
};

test('a repository URL starts its files as one group, from the pinned commit, under <folder>/<repo>/<path>', async () => {
  hub = await startFakeHub({ hfToken: 'hf_secret_token' });
  hub.hf.repo('org/flux-parts');
  const v1 = { 'transformer/model.safetensors': bytes(300_000, 'a'), 'vae/vae.safetensors': bytes(120_000, 'b'), 'model_index.json': '{"v":1}', 'README.md': '# hi' };
  hub.hf.commit('org/flux-parts', v1);
  srv = await startTestServer({ HF_ENDPOINT: hub.hf.url, HF_TOKEN: 'hf_secret_token' });
  // The branch moves while its tree is being listed: the files still all come from one commit.
  const off = hub.hf.onTreePage(() => {
    off();
    hub.hf.commit('org/flux-parts', { 'vae/vae.safetensors': bytes(120_000, 'changed'), 'model_index.json': '{"v":2}' });
  });

  const res = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/flux-parts`, folder: 'diffusion_models', exclude: '*.md' });
  expect(res.status).toBe(202);
  expect(res.body.group).toEqual({ id: expect.stringMatching(/^[A-Za-z0-9_-]+$/), name: 'org/flux-parts' });
  const dests = (res.body.downloads as Entry[]).map((d) => d.dest).sort();
  expect(dests).toEqual(['diffusion_models/flux-parts/model_index.json', 'diffusion_models/flux-parts/transformer/model.safetensors', 'diffusion_models/flux-parts/vae/vae.safetensors']);
  for (const d of res.body.downloads as Entry[]) {
    expect(d.group).toEqual(res.body.group);
    expect((await settled(srv, d.id, 20_000)).status).toBe('completed');
  }
  const dir = path.join(srv.modelsDir, 'diffusion_models', 'flux-parts');
  expect((await fs.readFile(path.join(dir, 'vae', 'vae.safetensors'))).equals(v1['vae/vae.safetensors'])).toBe(true);
  expect(await fs.readFile(path.join(dir, 'model_index.json'), 'utf8')).toBe('{"v":1}');
  // LFS files carry the Hub's sha256; the group is in the status file.
  const model = srv.store.get('diffusion_models/flux-parts/transformer/model.safetensors')!;
  expect(model.sha256).toBe(crypto.createHash('sha256').update(v1['transformer/model.safetensors']).digest('hex'));
  await srv.store.flush();
  const stored = JSON.parse(await fs.readFile(srv.statusFile, 'utf8')) as Record<string, Entry>;
  expect(stored['diffusion_models/flux-parts/vae/vae.safetensors']!.group).toEqual(res.body.group);
  // The token went to the Hub's API host only, never to its CDN.
  const hubHost = new URL(hub.hf.url).host;
  const withToken = hub.allRequests().filter((r) => JSON.stringify(r.headers).includes('hf_secret_token'));
  expect(withToken.length).toBeGreaterThan(0);
  expect(withToken.every((r) => r.host === hubHost)).toBe(true);
  expect(JSON.stringify(stored)).not.toContain('hf_secret_token');
});

test('a folder of a repository, and include patterns; a gated repository is a clear 4xx that starts nothing', async () => {
  hub = await startFakeHub();
  hub.hf.repo('org/big');
  hub.hf.commit('org/big', { 'unet/a.safetensors': bytes(50_000, 'x'), 'unet/a.json': '{}', 'text/b.safetensors': bytes(10, 'y') });
  hub.hf.repo('org/gated', { gated: true });
  hub.hf.commit('org/gated', { 'w.safetensors': bytes(10, 'g') });
  srv = await startTestServer({ HF_ENDPOINT: hub.hf.url });

  const res = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/big/tree/main/unet`, folder: 'diffusion_models', include: ['*.safetensors'] });
  expect(res.status).toBe(202);
  expect(res.body.group.name).toBe('org/big/unet');
  expect((res.body.downloads as Entry[]).map((d) => d.dest)).toEqual(['diffusion_models/big/unet/a.safetensors']);

  const gated = await srv.api('POST', '/api/downloads', { url: `${hub.hf.url}/org/gated`, folder: 'diffusion_models' });
  expect(gated.status).toBeGreaterThanOrEqual(400);
  expect(gated.status).toBeLessThan(500);
  expect(gated.body.error.message).toMatch(/HF_TOKEN/);
  expect(srv.store.all().filter((e) => e.dest.includes('gated'))).toEqual([]);
});
