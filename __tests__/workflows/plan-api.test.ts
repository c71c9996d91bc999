import fs from 'node:fs/promises';
import path from 'node:path';
import { createEntry } from '../../server/store/entry';
import type { ProbeResult } from '../../server/workflows/plan';
import { tempDir } from '../helpers/harness';
import { node, png, SHA } from './fixtures';
import { startPlanServer, type PlanServer } from './plan-server';

let srv: PlanServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

const HF = 'https://huggingface.co';
const PLAN = '/api/workflows/plan';
const MIRROR = 'https://hf-mirror.example';

const put = async (abs: string, content: string | Buffer = 'x'): Promise<void> => {
  await fs.mkdir(path.dirname(abs), { recursive: true });
  await fs.writeFile(abs, content);
};

/** One loader per case the plan distinguishes. */
function workflow() {
  const link = (name: string, url: string, directory: string, extra = {}) => ({ properties: { models: [{ name, url, directory, ...extra }] } });
  return {
    nodes: [
      node(1, 'CheckpointLoaderSimple', ['installed.safetensors'], link('installed.safetensors', `${HF}/o/r/resolve/main/installed.safetensors`, 'checkpoints')),
      node(2, 'LoraLoader', ['SDXL\\from-link.safetensors', 1, 1], link('from-link.safetensors', `${HF}/o/r/resolve/main/from-link.safetensors`, 'loras', { hash: SHA, hash_type: 'sha256' })),
      node(3, 'VAELoader', ['catalog-vae.safetensors']),
      node(4, 'UpscaleModelLoader', ['Up_x4.pth']),
      node(5, 'CLIPLoader', ['t5-extra.safetensors', 'wan', 'default']),
      node(6, 'UNETLoader', ['active.safetensors', 'default']),
      node(7, 'ControlNetLoader', ['nowhere.safetensors']),
      node(8, 'LoraLoaderModelOnly', ['bad:name.safetensors', 1], link('bad:name.safetensors', 'https://example.com/bad.safetensors', 'loras')),
      node(9, 'LoraLoaderModelOnly', ['gated.safetensors', 1], link('gated.safetensors', 'https://example.com/gated.safetensors', 'loras')),
      node(10, 'LoraLoaderModelOnly', ['SDXL/from-link.safetensors', 0.5]),
    ],
    links: [],
    version: 0.4,
  };
}

async function scene(): Promise<{ probed: string[] }> {
  const probed: string[] = [];
  const sizes: Record<string, ProbeResult> = {
    [`${MIRROR}/o/r/resolve/main/from-link.safetensors`]: { size: 1000 },
    [`${MIRROR}/c/vae/resolve/main/catalog-vae.safetensors`]: { size: 300 },
    'https://example.com/gated.safetensors': { gated: 'Accept the licence on example.com' },
  };
  srv = await startPlanServer({
    env: { HF_ENDPOINT: MIRROR, MODEL_LIST_FILE: 'model-list.json' },
    probe: async (url) => {
      probed.push(url);
      return sizes[url] ?? {};
    },
  });
  const { dir, config } = srv;
  await put(path.join(config.modelsDir, 'checkpoints/installed.safetensors'), '0123456789');
  await put(path.join(dir, 'shared/text_encoders/t5-extra.safetensors'));
  await put(path.join(dir, 'ComfyUI/extra_model_paths.yaml'), `shared:\n  base_path: ${path.join(dir, 'shared')}\n  text_encoders: text_encoders\n`);
  await put(
    config.catalogFile,
    JSON.stringify({ test: { name: 'Test', models: { vae: { name: 'VAE', url: `${HF}/c/vae/resolve/main/catalog-vae.safetensors`, path: 'vae/catalog-vae.safetensors', description: '', gated: true } } } }),
  );
  await put(
    path.join(dir, 'model-list.json'),
    JSON.stringify({ models: [{ name: 'Up', type: 'upscale', base: 'upscale', save_path: 'default', filename: 'Up_x4.pth', url: 'https://example.com/Up_x4.pth', size: '67MB' }] }),
  );
  const active = createEntry({ dest: 'diffusion_models/active.safetensors', folder: 'diffusion_models', filename: 'active.safetensors', url: 'https://example.com/active.safetensors', status: 'paused', file_size: 5000 });
  srv.store.put(active);
  // A finished download does not make a destination active.
  srv.store.put(createEntry({ dest: 'controlnet/nowhere.safetensors', folder: 'controlnet', filename: 'nowhere.safetensors', url: 'https://example.com/n', status: 'error' }));
  return { probed };
}

test('every model with its state, source, size and nodes; missing_bytes sums the missing ones', async () => {
  const { probed } = await scene();
  const res = await srv!.post(`${PLAN}?name=my-flow.json`, workflow());
  expect(res.status).toBe(200);
  const active = srv!.store.get('diffusion_models/active.safetensors')!;
  expect(res.body).toEqual({
    name: 'my-flow',
    models: [
      { name: 'installed.safetensors', folder: 'checkpoints', dest: 'checkpoints/installed.safetensors', state: 'installed', url: `${MIRROR}/o/r/resolve/main/installed.safetensors`, source: 'workflow', size: 10, nodes: [{ id: 1, type: 'CheckpointLoaderSimple' }] },
      {
        name: 'SDXL/from-link.safetensors',
        folder: 'loras',
        dest: 'loras/SDXL/from-link.safetensors',
        state: 'missing',
        url: `${MIRROR}/o/r/resolve/main/from-link.safetensors`,
        source: 'workflow',
        sha256: SHA,
        size: 1000,
        nodes: [
          { id: 2, type: 'LoraLoader' },
          { id: 10, type: 'LoraLoaderModelOnly' },
        ],
      },
      {
        name: 'catalog-vae.safetensors',
        folder: 'vae',
        dest: 'vae/catalog-vae.safetensors',
        state: 'missing',
        url: `${MIRROR}/c/vae/resolve/main/catalog-vae.safetensors`,
        source: 'catalog',
        size: 300,
        gated: expect.stringContaining('HF_TOKEN'),
        nodes: [{ id: 3, type: 'VAELoader' }],
      },
      // The probe knows nothing: the model list's size stands in.
      { name: 'Up_x4.pth', folder: 'upscale_models', dest: 'upscale_models/Up_x4.pth', state: 'missing', url: 'https://example.com/Up_x4.pth', source: 'model_list', size: 67_000_000, nodes: [{ id: 4, type: 'UpscaleModelLoader' }] },
      { name: 't5-extra.safetensors', folder: 'text_encoders', dest: 'text_encoders/t5-extra.safetensors', state: 'installed', url: null, source: null, size: 1, found_at: 'shared:text_encoders/t5-extra.safetensors', nodes: [{ id: 5, type: 'CLIPLoader' }] },
      { name: 'active.safetensors', folder: 'diffusion_models', dest: 'diffusion_models/active.safetensors', state: 'active', url: null, source: null, size: 5000, download_id: active.id, nodes: [{ id: 6, type: 'UNETLoader' }] },
      { name: 'nowhere.safetensors', folder: 'controlnet', dest: 'controlnet/nowhere.safetensors', state: 'no_source', url: null, source: null, nodes: [{ id: 7, type: 'ControlNetLoader' }] },
      {
        name: 'bad:name.safetensors',
        folder: 'loras',
        dest: 'loras/bad:name.safetensors',
        state: 'missing',
        url: 'https://example.com/bad.safetensors',
        source: 'workflow',
        nodes: [{ id: 8, type: 'LoraLoaderModelOnly' }],
        error: { code: 'INVALID_PATH', message: expect.stringContaining(':') },
      },
      { name: 'gated.safetensors', folder: 'loras', dest: 'loras/gated.safetensors', state: 'missing', url: 'https://example.com/gated.safetensors', source: 'workflow', gated: 'Accept the licence on example.com', nodes: [{ id: 9, type: 'LoraLoaderModelOnly' }] },
    ],
    missing_bytes: 1000 + 300 + 67_000_000,
  });
  // Only missing models that can be downloaded are probed, each URL once, at its mirror.
  expect(probed.sort()).toEqual(
    [`${MIRROR}/o/r/resolve/main/from-link.safetensors`, `${MIRROR}/c/vae/resolve/main/catalog-vae.safetensors`, 'https://example.com/Up_x4.pth', 'https://example.com/gated.safetensors'].sort(),
  );
});

test('a PNG saved by ComfyUI plans like its JSON; a PNG without a workflow is a 400 that says why', async () => {
  await scene();
  const json = await srv!.post(PLAN, workflow());
  const image = await srv!.post(PLAN, png([{ type: 'tEXt', keyword: 'workflow', text: JSON.stringify(workflow()) }]), { 'content-type': 'image/png' });
  expect(image).toEqual(json);
  const bare = await srv!.post(PLAN, png([{ type: 'tEXt', keyword: 'Software', text: 'GIMP' }]), { 'content-type': 'image/png' });
  expect(bare).toEqual({ status: 400, body: { error: { code: 'NO_WORKFLOW_IN_PNG', message: expect.stringContaining('--disable-metadata') } } });
});

test('what is not a workflow: 400 or 415 with {error:{code,message}}', async () => {
  srv = await startPlanServer();
  expect(await srv.post(PLAN, { hello: 'world' })).toEqual({ status: 400, body: { error: { code: 'NOT_A_WORKFLOW', message: expect.stringContaining('not a ComfyUI workflow') } } });
  expect(await srv.post(PLAN, '')).toEqual({ status: 400, body: { error: { code: 'NOT_A_WORKFLOW', message: expect.stringContaining('empty') } } });
  expect((await srv.post(PLAN, '{"nodes": [')).body.error.code).toBe('INVALID_JSON');
  expect((await srv.post(PLAN, 'not a png', { 'content-type': 'image/png' })).body.error.code).toBe('NOT_A_PNG');
  expect(await srv.post(PLAN, '<html>', { 'content-type': 'text/html' })).toEqual({ status: 415, body: { error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: expect.stringContaining('image/png') } } });
});

test('body limits: 16 MiB of JSON and 64 MiB of PNG on this route; 64 KiB everywhere else', async () => {
  srv = await startPlanServer();
  const big = (bytes: number) => ({ nodes: [node(1, 'CheckpointLoaderSimple', ['big.safetensors']), node(2, 'Note', ['x'.repeat(bytes)])], links: [] });
  const mib = await srv.post(PLAN, big(1024 * 1024));
  expect(mib.status).toBe(200);
  expect(mib.body.models.map((m: { dest: string }) => m.dest)).toEqual(['checkpoints/big.safetensors']);
  expect(await srv.post(PLAN, big(20 * 1024 * 1024))).toEqual({ status: 413, body: { error: { code: 'BODY_TOO_LARGE', message: expect.stringContaining('16 MiB') } } });
  // A PNG over 16 MiB is fine: its limit is 64 MiB.
  const image = png([{ type: 'tEXt', keyword: 'workflow', text: JSON.stringify(big(17 * 1024 * 1024)) }]);
  expect((await srv.post(PLAN, image, { 'content-type': 'image/png' })).status).toBe(200);
  expect((await srv.post('/api/downloads', { url: 'https://example.com/a.bin', folder: 'loras', pad: 'x'.repeat(70_000) })).status).toBe(413);
});

test('a broken extra_model_paths.yaml or a missing MODEL_LIST_FILE is a 500 that names the file', async () => {
  const { dir, cleanup } = await tempDir('md-plan-');
  try {
    const wf = { nodes: [node(1, 'VAELoader', ['v.safetensors'])], links: [] };
    srv = await startPlanServer({ dir, env: { MODEL_LIST_FILE: 'nowhere.json' } });
    expect(await srv.post(PLAN, wf)).toEqual({ status: 500, body: { error: { code: 'MODEL_LIST_INVALID', message: expect.stringContaining('nowhere.json') } } });
    await srv.close();
    await put(path.join(dir, 'ComfyUI/extra_model_paths.yaml'), 'a: [\n');
    srv = await startPlanServer({ dir });
    expect(await srv.post(PLAN, wf)).toEqual({ status: 500, body: { error: { code: 'EXTRA_MODEL_PATHS_INVALID', message: expect.stringContaining('extra_model_paths.yaml') } } });
  } finally {
    await srv?.close();
    srv = undefined;
    await cleanup();
  }
});
