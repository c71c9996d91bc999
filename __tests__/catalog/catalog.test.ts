import fs from 'node:fs/promises';
import path from 'node:path';
import shipped from '../../server/catalog/default-catalog.json';
import { COMFY_FOLDERS } from '../../server/disk/paths';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, waitFor, type TestServer } from '../helpers/harness';

let srv: TestServer;
let files: FileServer | undefined;
afterEach(async () => {
  await srv?.stop();
  await files?.close();
  files = undefined;
});

type Catalog = Record<string, { name: string; models: Record<string, Record<string, unknown>> }>;
const readCatalogFile = async (s: TestServer): Promise<Catalog> => JSON.parse(await fs.readFile(s.config.catalogFile, 'utf8')) as Catalog;
const form = (fields: Record<string, string>) => ({ body: new URLSearchParams(fields).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } });

test('the shipped catalog lists real ComfyUI models with Hugging Face file URLs, valid paths and well-formed digests', () => {
  const sets = shipped as unknown as Catalog;
  const models = Object.values(sets).flatMap((s) => Object.values(s.models));
  expect(models.length).toBeGreaterThanOrEqual(15);
  const paths = new Set<string>();
  for (const m of models) {
    expect(m.url).toMatch(/^https:\/\/huggingface\.co\/[^/]+\/[^/]+\/resolve\/main\/.+\.(safetensors|pth)$/);
    expect(COMFY_FOLDERS).toContain((m.path as string).split('/')[0]);
    expect(m.path).toMatch(/^[a-z_]+\/[^/]+\.(safetensors|pth)$/);
    expect(typeof m.name === 'string' && typeof m.description === 'string').toBe(true);
    if (m.sha256 !== undefined) expect(m.sha256).toMatch(/^[0-9a-f]{64}$/);
    if (m.gated !== undefined) expect(m.gated).toBe(true);
    paths.add(m.path as string);
  }
  expect(paths.size).toBe(models.length); // no two models share a destination
  const all = JSON.stringify(sets);
  for (const file of ['flux1-schnell-fp8', 'flux1-dev-fp8', 'sd_xl_base_1.0', 'v1-5-pruned-emaonly', 't5xxl', 'clip_l', 'RealESRGAN_x4plus', 'controlnet']) expect(all).toContain(file);
  expect(sets.flux!.models['flux1-dev']).toMatchObject({ gated: true }); // black-forest-labs/FLUX.1-dev is gated
});

test('created from the default when missing; GET /api/catalog says which models are on disk', async () => {
  srv = await startTestServer();
  expect(await readCatalogFile(srv)).toEqual(shipped);
  const first = await srv.api('GET', '/api/catalog');
  expect(first.status).toBe(200);
  expect(first.body.flux.models['flux1-schnell-fp8']).toMatchObject({ path: 'checkpoints/flux1-schnell-fp8.safetensors', on_disk: false });
  expect(Object.keys(first.body)).toEqual(Object.keys(shipped));

  await fs.mkdir(path.join(srv.modelsDir, 'checkpoints'), { recursive: true });
  await fs.writeFile(path.join(srv.modelsDir, 'checkpoints/flux1-schnell-fp8.safetensors'), 'x');
  await fs.writeFile(path.join(srv.modelsDir, 'checkpoints/sd_xl_base_1.0.safetensors.part'), 'x'); // half a file is not on disk
  const after = (await srv.api('GET', '/api/catalog')).body;
  expect(after.flux.models['flux1-schnell-fp8'].on_disk).toBe(true);
  expect(after.sdxl.models['sdxl-base'].on_disk).toBe(false);
  expect((await srv.api('GET', '/get_model_configs')).body).toEqual(after);
  // on_disk is an answer, never written to the file
  expect(JSON.stringify(await readCatalogFile(srv))).not.toContain('on_disk');
});

test('models are added, edited and deleted; every change is in the file', async () => {
  srv = await startTestServer();
  const model = { name: 'Detail Tweaker', url: 'https://civitai.com/api/download/models/62833', path: 'loras/detail-tweaker.safetensors', description: 'more or less detail' };
  const added = await srv.api('POST', '/api/catalog/my-loras/models', model);
  expect(added).toEqual({ status: 201, body: { model_id: 'detail-tweaker', model } });
  const again = await srv.api('POST', '/api/catalog/my-loras/models', model);
  expect(again.body.model_id).toBe('detail-tweaker-2');
  expect((await srv.api('POST', '/api/catalog/my-loras/models', { ...model, id: 'detail-tweaker' })).status).toBe(409);
  let file = await readCatalogFile(srv);
  expect(file['my-loras']).toEqual({ name: 'my-loras', models: { 'detail-tweaker': model, 'detail-tweaker-2': model } });

  const edited = { ...model, name: 'Detail Tweaker XL', path: 'loras/xl/detail-tweaker-xl.safetensors', sha256: 'A'.repeat(64), gated: true };
  const put = await srv.api('PUT', '/api/catalog/my-loras/models/detail-tweaker', edited);
  expect(put).toEqual({ status: 200, body: { model_id: 'detail-tweaker', model: { ...edited, sha256: 'a'.repeat(64) } } });
  expect((await readCatalogFile(srv))['my-loras']!.models['detail-tweaker']!.name).toBe('Detail Tweaker XL');
  expect((await srv.api('PUT', '/api/catalog/my-loras/models/nope', edited)).status).toBe(404);

  expect(await srv.api('DELETE', '/api/catalog/my-loras/models/detail-tweaker')).toEqual({ status: 204, body: '' });
  expect(await srv.api('DELETE', '/api/catalog/my-loras/models/detail-tweaker-2')).toEqual({ status: 204, body: '' });
  file = await readCatalogFile(srv);
  expect(file['my-loras']).toBeUndefined(); // the empty set went with its last model
  expect((await srv.api('DELETE', '/api/catalog/my-loras/models/detail-tweaker')).status).toBe(404);
  expect(Object.keys(file)).toEqual(Object.keys(shipped));
});

test.each([
  ['a path leaving MODELS_DIR', { path: '../../etc/passwd' }, 'INVALID_PATH'],
  ['an absolute path', { path: '/etc/cron.d/x' }, 'INVALID_PATH'],
  ['a path without a folder', { path: 'model.safetensors' }, 'INVALID_PATH'],
  ['an unknown top folder', { path: 'etc/model.safetensors' }, 'UNKNOWN_FOLDER'],
  ['a non-http URL', { url: 'file:///etc/passwd' }, 'UNSUPPORTED_URL'],
  ['a URL with a token', { url: 'https://civitai.com/api/download/models/1?token=abc' }, 'URL_CREDENTIALS'],
  ['a bad sha256', { sha256: 'xyz' }, 'INVALID_SHA256'],
  ['no name', { name: '' }, 'INVALID_NAME'],
  ['a bad set id', { __set: '__proto__' }, 'INVALID_ID'],
])('a model with %s is refused and the file is unchanged', async (_name, patch, code) => {
  srv = await startTestServer();
  const before = await fs.readFile(srv.config.catalogFile, 'utf8');
  const { __set, ...fields } = patch as Record<string, string>;
  const body = { name: 'M', url: 'https://huggingface.co/o/r/resolve/main/m.safetensors', path: 'loras/m.safetensors', ...fields };
  const res = await srv.api('POST', `/api/catalog/${__set ?? 'mine'}/models`, body);
  expect(res).toEqual({ status: 400, body: { error: { code, message: expect.any(String) } } });
  expect(await fs.readFile(srv.config.catalogFile, 'utf8')).toBe(before);
});

test("the seed's routes: /add_model, /edit_model, /delete_model", async () => {
  srv = await startTestServer();
  const added = await srv.api('POST', '/add_model', { model_set: 'extra', model_id: 'ultra', name: 'Ultra', url: 'https://huggingface.co/o/r/resolve/main/u.pth', path: 'upscale_models/u.pth' });
  expect(added).toMatchObject({ status: 201, body: { model_id: 'ultra', model: { name: 'Ultra', path: 'upscale_models/u.pth' } } });
  const edited = await srv.api('POST', '/edit_model', { model_set: 'extra', model_id: 'ultra', name: 'Ultra 2', url: 'https://huggingface.co/o/r/resolve/main/u.pth', path: 'upscale_models/u2.pth' });
  expect(edited.body.model).toMatchObject({ name: 'Ultra 2', path: 'upscale_models/u2.pth' });
  expect((await readCatalogFile(srv)).extra!.models.ultra).toEqual({ name: 'Ultra 2', url: 'https://huggingface.co/o/r/resolve/main/u.pth', path: 'upscale_models/u2.pth', description: '' });
  expect(await srv.api('POST', '/delete_model', { model_set: 'extra', model_id: 'ultra' })).toEqual({ status: 200, body: { status: 'deleted', model_set: 'extra', model_id: 'ultra' } });
  expect((await readCatalogFile(srv)).extra).toBeUndefined();
});

test('POST /download starts a catalog model from JSON or a form, with the same answers as POST /api/downloads', async () => {
  files = await startFileServer();
  const f = files.addFile('/repo/resolve/main/tiny-vae.safetensors', { size: 200_000 });
  srv = await startTestServer();
  await srv.api('POST', '/api/catalog/test/models', { id: 'vae', name: 'Tiny VAE', url: f.url, path: 'vae/tiny.safetensors', sha256: f.sha256 });

  const started = await srv.api('POST', '/download', { model_set: 'test', model_id: 'vae' });
  expect(started.status).toBe(202);
  expect(started.body.download).toMatchObject({ dest: 'vae/tiny.safetensors', sha256: f.sha256 });
  const { body, headers } = form({ model_set: 'test', model_id: 'vae' });
  const busy = await srv.api('POST', '/download', body, headers);
  expect([409, 200]).toContain(busy.status); // active (409) or, on a fast disk, already there
  await waitFor(() => srv.store.getById(started.body.download.id)?.status === 'completed', 'the catalog download');
  expect(await srv.api('POST', '/download', body, headers)).toMatchObject({ status: 200, body: { status: 'already_exists' } });
  expect((await srv.api('GET', '/api/catalog')).body.test.models.vae.on_disk).toBe(true);

  expect((await srv.api('POST', '/download', { model_set: 'test', model_id: 'nope' })).status).toBe(404);
  expect((await srv.api('POST', '/download', { model_set: 'test' })).body.error.code).toBe('INVALID_ID');
});

test('a hand edit is picked up; a file that does not parse is reported and never overwritten', async () => {
  srv = await startTestServer();
  await fs.writeFile(srv.config.catalogFile, JSON.stringify({ mine: { name: 'Mine', models: { a: { name: 'A', url: 'https://x.example/a.bin', path: 'loras/a.bin', description: '' } } } }));
  expect(Object.keys((await srv.api('GET', '/api/catalog')).body)).toEqual(['mine']);
  await fs.writeFile(srv.config.catalogFile, '{"mine": ');
  const broken = await srv.api('GET', '/api/catalog');
  expect(broken).toEqual({ status: 500, body: { error: { code: 'CATALOG_INVALID', message: expect.stringContaining('not valid JSON') } } });
  expect((await srv.api('POST', '/api/catalog/mine/models', { name: 'B', url: 'https://x.example/b.bin', path: 'loras/b.bin' })).status).toBe(500);
  expect(await fs.readFile(srv.config.catalogFile, 'utf8')).toBe('{"mine": ');
});

test('with API_TOKEN the catalog and its seed aliases need the token, however the path is spelled', async () => {
  srv = await startTestServer({ API_TOKEN: 'let-me-in' });
  for (const [method, p] of [['GET', '/api/catalog'], ['GET', '/get_model_configs'], ['GET', '/GET_MODEL_CONFIGS/'], ['POST', '/add_model'], ['POST', '/edit_model'], ['POST', '/delete_model'], ['POST', '/download'], ['GET', '/Status/']] as const) {
    const res = await srv.api(method, p, method === 'POST' ? {} : undefined);
    expect([p, res.status]).toEqual([p, 401]);
  }
  const ok = await srv.api('GET', '/api/catalog', undefined, { Authorization: 'Bearer let-me-in' });
  expect(ok.status).toBe(200);
});
