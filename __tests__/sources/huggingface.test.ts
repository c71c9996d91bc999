import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { huggingFace } from '../../server/sources/huggingface';
import { startFakeHf, type FakeHf } from '../helpers/fake-hosts';
import { connectWs, settled, startTestServer, type TestServer } from '../helpers/harness';

const TOKEN = 'hf_SECRETtoken0123456789';

let hf: FakeHf;
let srv: TestServer | undefined;
beforeEach(async () => {
  hf = await startFakeHf(TOKEN);
});
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
  await hf.close();
});

const exists = (p: string): Promise<boolean> => fs.access(p).then(() => true, () => false);

test('a blob page URL resolves to the file; the token goes to the HF host only; size and sha256 come from X-Linked-*', async () => {
  hf.repo('black-forest-labs/FLUX.1-dev', { gated: true });
  const f = hf.file('black-forest-labs/FLUX.1-dev', 'main', 'flux1-dev.safetensors', crypto.randomBytes(1_500_000));
  srv = await startTestServer({ HF_ENDPOINT: hf.url, HF_TOKEN: TOKEN });
  const sock = await connectWs(srv.url);

  const res = await srv.api('POST', '/api/downloads', { url: `${hf.url}/black-forest-labs/FLUX.1-dev/blob/main/flux1-dev.safetensors`, folder: 'diffusion_models' });
  expect(res.status).toBe(202);
  expect(res.body.download.dest).toBe('diffusion_models/flux1-dev.safetensors');
  const done = await settled(srv, res.body.download.id);
  expect(done).toMatchObject({ status: 'completed', sha256: f.sha256, file_size: f.data.length });
  expect((await fs.readFile(path.join(srv.modelsDir, done.dest))).equals(f.data)).toBe(true);

  // The API host was asked for the resolve URL, with the token; the CDN never saw it.
  const asked = hf.api.requests.filter((r) => r.path.includes('/resolve/main/flux1-dev.safetensors'));
  expect(asked.length).toBeGreaterThan(0);
  for (const r of asked) expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
  expect(hf.cdn.server.requests.length).toBeGreaterThan(0);
  expect(hf.cdn.server.requests.every((r) => r.headers.authorization === undefined && !r.url.includes(TOKEN))).toBe(true);
  expect(hf.cdn.server.requests.some((r) => r.status === 200 || r.status === 206)).toBe(true);

  // Nor did anything we keep or show.
  await srv.store.flush();
  await sock.next((m) => m.type === 'update' && m.download.status === 'completed');
  const shown = [
    await fs.readFile(srv.statusFile, 'utf8'),
    JSON.stringify((await srv.api('GET', '/status')).body),
    JSON.stringify((await srv.api('GET', '/api/downloads')).body),
    JSON.stringify(sock.messages),
    srv.log.lines.join('\n'),
  ];
  for (const text of shown) expect(text).not.toContain(TOKEN);
  // Signed CDN parameters are not kept either.
  for (const text of shown.slice(0, 4)) expect(text).not.toContain('X-Amz-Signature');
  await sock.close();
});

test('an announced sha256 that does not match ends in error, with no .part and no file left', async () => {
  hf.repo('org/model');
  hf.file('org/model', 'main', 'bad.safetensors', crypto.randomBytes(300_000), { linkedEtag: 'ab'.repeat(32) });
  srv = await startTestServer({ HF_ENDPOINT: hf.url });
  const res = await srv.api('POST', '/api/downloads', { url: `${hf.url}/org/model/resolve/main/bad.safetensors`, folder: 'loras' });
  const done = await settled(srv, res.body.download.id);
  expect(done.status).toBe('error');
  expect(done.error).toEqual({ code: 'SHA256_MISMATCH', message: expect.stringContaining('ab'.repeat(32)) });
  const abs = path.join(srv.modelsDir, 'loras', 'bad.safetensors');
  expect(await exists(abs)).toBe(false);
  expect(await exists(`${abs}.part`)).toBe(false);
});

test("a small git file's ETag (a sha1) is not taken for a sha256", async () => {
  hf.repo('org/model');
  const f = hf.file('org/model', 'main', 'config.json', Buffer.from('{"_class_name": "FluxTransformer2DModel"}\n'), { small: true });
  srv = await startTestServer({ HF_ENDPOINT: hf.url });
  const res = await srv.api('POST', '/api/downloads', { url: `${hf.url}/org/model/resolve/main/config.json`, folder: 'configs' });
  const done = await settled(srv, res.body.download.id);
  expect(done.status).toBe('completed');
  expect(done.sha256).toBeUndefined();
  expect(await fs.readFile(path.join(srv.modelsDir, 'configs/config.json'))).toEqual(f.data);
});

test.each([
  ['a gated repository without HF_TOKEN', {}, { gated: true }, 'HTTP_401', 'gated or private — set HF_TOKEN'],
  ['a licence not yet accepted', { HF_TOKEN: TOKEN }, { gated: true, licenceAccepted: false }, 'HTTP_403', "accept the model's licence on"],
  ['a file missing at this revision', {}, {}, 'HTTP_404', 'no such file at this revision'],
])('%s ends in a clear error', async (_name, env, repo, code, message) => {
  hf.repo('org/gated', repo);
  hf.file('org/gated', 'main', 'model.safetensors', crypto.randomBytes(1000));
  srv = await startTestServer({ HF_ENDPOINT: hf.url, ...env });
  const file = code === 'HTTP_404' ? 'missing.safetensors' : 'model.safetensors';
  const res = await srv.api('POST', '/api/downloads', { url: `${hf.url}/org/gated/resolve/main/${file}`, folder: 'checkpoints' });
  const done = await settled(srv, res.body.download.id);
  expect(done.error).toEqual({ code, message: expect.stringContaining(message) });
  expect(done.attempts).toBe(1); // a refusal is not retried
  if (code === 'HTTP_403') expect(done.error!.message).toContain(`${hf.url}/org/gated`);
});

describe('the resolver', () => {
  const hfAt = (endpoint: string, token?: string) => huggingFace({ endpoint, ...(token ? { token } : {}) });

  test.each([
    ['https://huggingface.co/org/repo/blob/main/a/b.safetensors', 'https://huggingface.co/org/repo/resolve/main/a/b.safetensors'],
    ['https://huggingface.co/org/repo/blob/main/b.safetensors?download=true', 'https://huggingface.co/org/repo/resolve/main/b.safetensors?download=true'],
    ['https://huggingface.co/org/repo/raw/main/b.safetensors', 'https://huggingface.co/org/repo/resolve/main/b.safetensors'],
    ['https://huggingface.co/org/repo/resolve/refs%2Fpr%2F1/b.safetensors', 'https://huggingface.co/org/repo/resolve/refs%2Fpr%2F1/b.safetensors'],
    ['https://huggingface.co/datasets/org/data/blob/main/x.bin', 'https://huggingface.co/datasets/org/data/resolve/main/x.bin'],
    ['https://huggingface.co/gpt2/blob/main/model.safetensors', 'https://huggingface.co/gpt2/resolve/main/model.safetensors'],
    ['https://huggingface.co/org/blob/blob/main/x.bin', 'https://huggingface.co/org/blob/resolve/main/x.bin'],
    ['https://huggingface.co/org/repo/tree/main', 'https://huggingface.co/org/repo/tree/main'],
  ])('%s → %s', (given, expected) => {
    expect(hfAt('https://huggingface.co').resolve(new URL(given)).url.toString()).toBe(expected);
  });

  test('an endpoint with a path (a mirror) keeps its prefix', () => {
    const mirror = hfAt('https://mirror.example/hf');
    expect(mirror.owns(new URL('https://mirror.example/other/org/repo/blob/main/x.bin'))).toBe(false);
    expect(mirror.resolve(new URL('https://mirror.example/hf/org/repo/blob/main/x.bin')).url.toString()).toBe('https://mirror.example/hf/org/repo/resolve/main/x.bin');
  });

  test('the token is offered to the HF host only, on every hop', () => {
    const s = hfAt('https://huggingface.co', 't0k').resolve(new URL('https://huggingface.co/o/r/resolve/main/x.bin'));
    expect(s.headersFor!(new URL('https://huggingface.co/o/r/resolve/main/x.bin'))).toEqual({ Authorization: 'Bearer t0k' });
    expect(s.headersFor!(new URL('https://cdn-lfs.huggingface.co/repos/x'))).toEqual({});
    expect(s.headersFor!(new URL('http://huggingface.co/o/r/resolve/main/x.bin'))).toEqual({}); // never over plain http
    expect(hfAt('https://huggingface.co').resolve(new URL('https://huggingface.co/o/r/resolve/main/x.bin')).headersFor!(new URL('https://huggingface.co/'))).toEqual({});
  });

  test('expectations come from X-Linked-* of the first answer only', () => {
    const s = hfAt('https://huggingface.co').resolve(new URL('https://huggingface.co/o/r/resolve/main/x.bin'));
    const sha = 'AB'.repeat(32);
    const info = (first: Record<string, string>, headers: Record<string, string> = {}) => s.inspect!({ status: 200, url: new URL('https://cdn.example/x'), headers, firstHeaders: first });
    expect(info({ 'x-linked-size': '123', 'x-linked-etag': `"${sha}"` })).toEqual({ size: 123, sha256: sha.toLowerCase() });
    expect(info({ etag: `"${'a'.repeat(40)}"` }, { etag: `"${'b'.repeat(64)}"` })).toEqual({});
    expect(info({ 'x-linked-etag': '"not-a-digest"', 'x-linked-size': '-1' })).toEqual({});
  });
});
