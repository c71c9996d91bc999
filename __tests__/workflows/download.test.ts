/**
 * `POST /api/workflows/download`: every missing model with a URL started as one group (the link's
 * sha256 verified), huggingface.co links fetched from HF_ENDPOINT (a mirror), the group kept in
 * the status file; killed mid-way, the restarted server resumes the group from its bytes.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { spawnServer, type ChildServer } from '../helpers/child-server';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { settled, startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';
import { node } from './fixtures';

let files: FileServer;
let srv: TestServer | undefined;
let child: ChildServer | undefined;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
  await child?.kill();
  child = undefined;
  await files?.close();
  for (const c of cleanups.splice(0)) await c();
});

const link = (name: string, url: string, directory: string, hash?: string) => ({
  properties: { models: [{ name, url, directory, ...(hash ? { hash, hash_type: 'sha256' } : {}) }] },
});

test('the missing models start as one group; a wrong hash fails alone; a second plan says installed', async () => {
  files = await startFileServer();
  const unet = files.addFile('/mirror/org/r/resolve/main/unet.safetensors', { size: 200_000 });
  const lora = files.addFile('/loras/style.safetensors', { size: 50_000 });
  const bad = files.addFile('/loras/bad.safetensors', { size: 10_000 });
  srv = await startTestServer({ HF_ENDPOINT: `${files.url}/mirror` });
  await fs.mkdir(path.join(srv.modelsDir, 'vae'), { recursive: true });
  await fs.writeFile(path.join(srv.modelsDir, 'vae', 'have.safetensors'), 'x');
  const workflow = {
    nodes: [
      node(1, 'UNETLoader', ['unet.safetensors', 'default'], link('unet.safetensors', 'https://huggingface.co/org/r/resolve/main/unet.safetensors', 'diffusion_models', unet.sha256)),
      node(2, 'LoraLoaderModelOnly', ['style.safetensors', 1], link('style.safetensors', lora.url, 'loras')),
      node(3, 'LoraLoaderModelOnly', ['bad.safetensors', 1], link('bad.safetensors', bad.url, 'loras', 'b'.repeat(64))),
      node(4, 'VAELoader', ['have.safetensors']),
      node(5, 'CheckpointLoaderSimple', ['nowhere.safetensors']),
    ],
    links: [],
  };
  const res = await srv.api('POST', '/api/workflows/download?name=my-flow.json', workflow);
  expect(res.status).toBe(202);
  expect(res.body.group).toEqual({ id: expect.any(String), name: 'my-flow' });
  const downloads = res.body.downloads as Entry[];
  expect(downloads.map((d) => d.dest).sort()).toEqual(['diffusion_models/unet.safetensors', 'loras/bad.safetensors', 'loras/style.safetensors']);
  const byName = Object.fromEntries((res.body.models as Array<{ name: string; state: string }>).map((m) => [m.name, m.state]));
  expect(byName).toEqual({ 'unet.safetensors': 'active', 'style.safetensors': 'active', 'bad.safetensors': 'active', 'have.safetensors': 'installed', 'nowhere.safetensors': 'no_source' });

  const ends = Object.fromEntries(await Promise.all(downloads.map(async (d) => [d.dest, (await settled(srv!, d.id, 20_000)).status])));
  expect(ends).toEqual({ 'diffusion_models/unet.safetensors': 'completed', 'loras/style.safetensors': 'completed', 'loras/bad.safetensors': 'error' });
  expect(srv.store.get('loras/bad.safetensors')!.error!.code).toBe('SHA256_MISMATCH');
  await expect(fs.stat(path.join(srv.modelsDir, 'loras', 'bad.safetensors'))).rejects.toMatchObject({ code: 'ENOENT' });
  // The huggingface.co link was fetched from the mirror.
  expect(files.requests.some((r) => r.url.startsWith('/mirror/org/r/resolve/main/unet.safetensors'))).toBe(true);

  const again = await srv.api('POST', '/api/workflows/plan', workflow);
  const states = Object.fromEntries((again.body.models as Array<{ name: string; state: string }>).map((m) => [m.name, m.state]));
  expect(states).toMatchObject({ 'unet.safetensors': 'installed', 'style.safetensors': 'installed', 'bad.safetensors': 'missing' });
});

test('a group killed mid-way resumes after a restart, its group kept, nothing fetched twice', async () => {
  files = await startFileServer();
  const a = files.addFile('/a.safetensors', { size: 3_000_000, throttle: 1_000_000 });
  const b = files.addFile('/b.safetensors', { size: 3_000_000, throttle: 1_000_000 });
  const { dir, cleanup } = await tempDir('md-wf-kill-');
  cleanups.push(cleanup);
  const env = { MODELS_DIR: path.join(dir, 'models'), STATUS_FILE: path.join(dir, 'status.json'), CATALOG_FILE: path.join(dir, 'catalog.json'), CONNECTIONS: '1' };
  child = await spawnServer(env);
  const workflow = { nodes: [node(1, 'LoraLoader', ['a.safetensors', 1, 1], link('a.safetensors', a.url, 'loras')), node(2, 'LoraLoader', ['b.safetensors', 1, 1], link('b.safetensors', b.url, 'loras'))], links: [] };
  const res = await fetch(`${child.url}/api/workflows/download`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(workflow) });
  expect(res.status).toBe(202);
  const { group } = (await res.json()) as { group: { id: string } };
  const status = async (url: string): Promise<Record<string, Entry>> => (await (await fetch(`${url}/status`)).json()) as Record<string, Entry>;
  await waitFor(async () => Object.values(await status(child!.url)).every((e) => e.downloaded > 500_000), 'both to be under way');
  await child.kill('SIGKILL');

  child = await spawnServer(env);
  const done = await waitFor(async () => {
    const s = await status(child!.url);
    return Object.values(s).length === 2 && Object.values(s).every((e) => e.status === 'completed') ? s : undefined;
  }, 'the group to finish after the restart', 20_000);
  for (const e of Object.values(done)) expect(e.group?.id).toBe(group.id);
  for (const [f, name] of [[a, 'a.safetensors'], [b, 'b.safetensors']] as const) {
    const data = await fs.readFile(path.join(dir, 'models', 'loras', name));
    expect(crypto.createHash('sha256').update(data).digest('hex')).toBe(f.sha256);
    // Resumed with Range, not fetched again from zero.
    const served = files.requests.filter((r) => r.url === `/${name}`).reduce((sum, r) => sum + (r.bytesSent ?? 0), 0);
    expect(served).toBeLessThan(f.size * 1.5);
  }
});
