import crypto from 'node:crypto';
import { civitaiMetadata, parseCivitaiUrl, type CivitaiRef } from '../../server/sources/civitai-meta';
import { sha256Of, startFakeHub, type CivitaiModelSpec, type FakeHub, failure } from '../helpers/fake-hub';

const TOKEN = 'civitai0123456789abcdefSECRET';

let hub: FakeHub;
afterEach(async () => {
  await hub?.close();
});


const parse = (url: string): CivitaiRef => {
  const r = parseCivitaiUrl(new URL(url), hub.civitai.url);
  if (!r) throw new Error(`not a Civitai URL: ${url}`);
  return r;
};

const bytes = {
  pruned: crypto.randomBytes(30_000),
  full: crypto.randomBytes(50_000),
  pickle: crypto.randomBytes(29_000),
  training: crypto.randomBytes(7_000),
  vae: crypto.randomBytes(3_000),
  old: crypto.randomBytes(20_000),
  lying: crypto.randomBytes(4_000),
};

/** A checkpoint with two versions; the newest has several files, its primary not listed first. */
const checkpoint = (): CivitaiModelSpec => ({
  id: 827184,
  name: 'WAI-illustrious-SDXL',
  versions: [
    {
      id: 2514310,
      name: 'v16.0',
      files: [
        { name: 'waiIllustriousSDXL_v160_full.safetensors', data: bytes.full, type: 'Model', format: 'SafeTensor', size: 'full', fp: 'fp32' },
        { name: 'waiIllustriousSDXL_v160.safetensors', data: bytes.pruned, type: 'Model', format: 'SafeTensor', size: 'pruned', fp: 'fp16', primary: true },
        { name: 'waiIllustriousSDXL_v160.ckpt', data: bytes.pickle, type: 'Model', format: 'PickleTensor', size: 'pruned', fp: 'fp16' },
        { name: 'wai_v160_trainingData.zip', data: bytes.training, type: 'Training Data', format: 'Other' },
        { name: 'sdxl_vae.safetensors', data: bytes.vae, type: 'VAE', format: 'SafeTensor' },
      ],
    },
    { id: 2400000, name: 'v15.0', files: [{ name: 'waiIllustriousSDXL_v150.safetensors', data: bytes.old, format: 'SafeTensor' }] },
  ],
});

describe('parseCivitaiUrl', () => {
  test('download URLs with their file selectors, model pages with and without a version', async () => {
    hub = await startFakeHub();
    const base = hub.civitai.url;
    expect(parse(`${base}/api/download/models/2514310`)).toEqual({ kind: 'version', versionId: 2514310, pick: {} });
    expect(parse(`${base}/api/download/models/2514310?type=Model&format=PickleTensor&size=pruned&fp=fp16`)).toEqual({
      kind: 'version',
      versionId: 2514310,
      pick: { type: 'Model', format: 'PickleTensor', size: 'pruned', fp: 'fp16' },
    });
    expect(parse(`${base}/api/download/models/2514310?type=Training%20Data&token=abc`)).toEqual({ kind: 'version', versionId: 2514310, pick: { type: 'Training Data' } });
    expect(parse(`${base}/api/download/models/2514310?fileId=77`)).toEqual({ kind: 'version', versionId: 2514310, pick: { fileId: 77 } });
    expect(parse(`${base}/models/827184/wai-illustrious-sdxl?modelVersionId=2514310`)).toEqual({ kind: 'version', versionId: 2514310, modelId: 827184, pick: {} });
    expect(parse(`${base}/models/827184`)).toEqual({ kind: 'model', modelId: 827184 });
    expect(parse(`${base}/models/827184/wai-illustrious-sdxl`)).toEqual({ kind: 'model', modelId: 827184 });
    for (const u of [`${base}/images/123`, `${base}/models`, `${base}/api/download/models/abc`, `${base}/user/someone/models`, 'https://example.com/models/1']) {
      expect([u, parseCivitaiUrl(new URL(u), base)]).toEqual([u, undefined]);
    }
  });
});

describe('resolving a Civitai URL to its file', () => {
  test('a version: the primary file, wherever it is in the list, with its name, size, SHA256 and download URL', async () => {
    hub = await startFakeHub();
    hub.civitai.model(checkpoint());
    const meta = await civitaiMetadata({ endpoint: hub.civitai.url }).resolve(parse(`${hub.civitai.url}/api/download/models/2514310`));
    expect(meta).toEqual({
      versionId: 2514310,
      modelId: 827184,
      modelName: 'WAI-illustrious-SDXL',
      versionName: 'v16.0',
      fileId: expect.any(Number),
      filename: 'waiIllustriousSDXL_v160.safetensors',
      size: bytes.pruned.length,
      sha256: sha256Of(bytes.pruned),
      type: 'Model',
      format: 'SafeTensor',
      downloadUrl: `${hub.civitai.url}/api/download/models/2514310`,
    });
    // What the download URL serves is that file.
    const served = Buffer.from(await (await fetch(meta.downloadUrl)).arrayBuffer());
    expect(sha256Of(served)).toBe(meta.sha256);
    expect(hub.civitai.api.requests[0]!.path).toBe('/api/v1/model-versions/2514310');
  });

  test('type/format/size/fp in the URL pick another file, as the download route does', async () => {
    hub = await startFakeHub();
    hub.civitai.model(checkpoint());
    const c = civitaiMetadata({ endpoint: hub.civitai.url });
    const at = (q: string) => c.resolve(parse(`${hub.civitai.url}/api/download/models/2514310${q}`));

    const pickle = await at('?type=Model&format=PickleTensor');
    expect(pickle).toMatchObject({ filename: 'waiIllustriousSDXL_v160.ckpt', sha256: sha256Of(bytes.pickle), format: 'PickleTensor' });
    expect(pickle.downloadUrl).toBe(`${hub.civitai.url}/api/download/models/2514310?type=Model&format=PickleTensor`);

    expect(await at('?type=Training%20Data')).toMatchObject({ filename: 'wai_v160_trainingData.zip', type: 'Training Data', size: bytes.training.length });
    expect(await at('?type=VAE')).toMatchObject({ filename: 'sdxl_vae.safetensors' });
    // Several match: the primary among them; then the first.
    expect(await at('?type=Model')).toMatchObject({ filename: 'waiIllustriousSDXL_v160.safetensors' });
    expect(await at('?type=model&size=full')).toMatchObject({ filename: 'waiIllustriousSDXL_v160_full.safetensors', size: bytes.full.length });
    expect(await at('?fp=fp32')).toMatchObject({ filename: 'waiIllustriousSDXL_v160_full.safetensors' });

    const none = await failure(at('?type=Model&format=GGUF'));
    expect(none.toJSON()).toEqual({
      code: 'CIVITAI_FILE_NOT_FOUND',
      message:
        "Civitai's model version 2514310 has no file with type=Model, format=GGUF; it has: Model (SafeTensor, full, fp32); Model (SafeTensor, pruned, fp16); Model (PickleTensor, pruned, fp16); Training Data (Other); VAE (SafeTensor)",
    });
    expect(none.status).toBe(400);

    // Each download URL it gives serves the file it describes.
    for (const q of ['?type=Model&format=PickleTensor', '?type=Training%20Data', '?type=VAE']) {
      const meta = await at(q);
      expect(sha256Of(Buffer.from(await (await fetch(meta.downloadUrl)).arrayBuffer()))).toBe(meta.sha256);
    }
  });

  test('a model page with a version resolves that version; without one, the latest, and says so', async () => {
    hub = await startFakeHub();
    hub.civitai.model(checkpoint());
    const c = civitaiMetadata({ endpoint: hub.civitai.url });
    const chosen = await c.resolve(parse(`${hub.civitai.url}/models/827184/wai?modelVersionId=2400000`));
    expect(chosen).toMatchObject({ versionId: 2400000, filename: 'waiIllustriousSDXL_v150.safetensors', sha256: sha256Of(bytes.old) });
    expect(chosen.note).toBeUndefined();

    const latest = await c.resolve(parse(`${hub.civitai.url}/models/827184/wai`));
    expect(latest).toMatchObject({
      versionId: 2514310,
      modelId: 827184,
      modelName: 'WAI-illustrious-SDXL',
      filename: 'waiIllustriousSDXL_v160.safetensors',
      sha256: sha256Of(bytes.pruned),
      downloadUrl: `${hub.civitai.url}/api/download/models/2514310`,
      note: 'The page names no version: took the latest, "v16.0" (version 2514310 of 2)',
    });
    expect(hub.civitai.api.requests.at(-1)!.path).toBe('/api/v1/models/827184');

    // A version that is not the page's model's: resolved, with a note.
    hub.civitai.model({ id: 5, name: 'Other', versions: [{ id: 55, name: 'v1', files: [{ name: 'o.safetensors', data: Buffer.from('o') }] }] });
    expect((await c.resolve(parse(`${hub.civitai.url}/models/827184?modelVersionId=55`))).note).toBe('Version 55 belongs to model 5, not to model 827184 of the page');
  });

  test('missing versions and models, and models with no version, are said plainly', async () => {
    hub = await startFakeHub();
    hub.civitai.model({ id: 9, name: 'Empty', versions: [] });
    const c = civitaiMetadata({ endpoint: hub.civitai.url });
    expect((await failure(c.resolve(parse(`${hub.civitai.url}/api/download/models/999`)))).toJSON()).toEqual({
      code: 'CIVITAI_NOT_FOUND',
      message: 'Civitai answered 404: there is no model version 999, or it is not published (check the id in the URL)',
    });
    expect((await failure(c.resolve(parse(`${hub.civitai.url}/models/12345`)))).toJSON()).toEqual({
      code: 'CIVITAI_NOT_FOUND',
      message: 'Civitai answered 404: there is no model 12345, or it is not published (check the id in the URL)',
    });
    expect((await failure(c.resolve(parse(`${hub.civitai.url}/models/9`)))).toJSON()).toEqual({
      code: 'CIVITAI_FILE_NOT_FOUND',
      message: "Civitai's model 9 has no published version to download",
    });
  });

  test('401 and 403 are said with what to do, with or without CIVITAI_TOKEN', async () => {
    hub = await startFakeHub({ civitaiToken: TOKEN });
    hub.civitai.model(checkpoint());
    const unauthorized = { status: 401, body: '{"error":"Unauthorized"}', headers: { 'Content-Type': 'application/json' } };
    hub.civitai.api.fault('/api/v1/model-versions/2514310', unauthorized, unauthorized, { status: 403, body: '{"error":"Early Access"}', headers: { 'Content-Type': 'application/json' } });
    const r = parse(`${hub.civitai.url}/api/download/models/2514310`);
    expect((await failure(civitaiMetadata({ endpoint: hub.civitai.url }).resolve(r))).toJSON()).toEqual({
      code: 'CIVITAI_UNAUTHORIZED',
      message: 'Civitai answered 401: model version 2514310 needs a Civitai account — set CIVITAI_TOKEN to an API key from civitai.com/user/account',
    });
    const withToken = civitaiMetadata({ endpoint: hub.civitai.url, token: TOKEN });
    expect((await failure(withToken.resolve(r))).message).toBe('Civitai answered 401: CIVITAI_TOKEN was not accepted (create a new one?) (Unauthorized)');
    expect((await failure(withToken.resolve(r))).toJSON()).toEqual({
      code: 'CIVITAI_FORBIDDEN',
      message: 'Civitai answered 403: model version 2514310 is not available to the account of CIVITAI_TOKEN — early access, or its creator restricted it (Early Access)',
    });
  });

  test('CIVITAI_TOKEN goes to the Civitai host only, in a header: never in a URL it returns, never after a redirect to another host', async () => {
    hub = await startFakeHub({ civitaiToken: TOKEN });
    hub.civitai.model(checkpoint());
    const c = civitaiMetadata({ endpoint: hub.civitai.url, token: TOKEN });
    const meta = await c.resolve(parse(`${hub.civitai.url}/models/827184?modelVersionId=2514310`));
    expect(meta.downloadUrl).not.toContain(TOKEN);
    expect(JSON.stringify(meta)).not.toContain(TOKEN);
    const given = await c.resolve(parse(`${hub.civitai.url}/api/download/models/2514310?type=VAE&token=${TOKEN}`));
    expect(given.downloadUrl).not.toContain('token');

    // The API moved to another host for one answer: followed without the token.
    hub.other.route('/api/v1/model-versions/2400000', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ id: 2400000, modelId: 827184, name: 'v15.0', files: [{ id: 1, name: 'x.safetensors', type: 'Model', primary: true, sizeKB: 1, hashes: {} }] }));
    });
    hub.civitai.api.fault('/api/v1/model-versions/2400000', { redirectTo: `${hub.other.url}/api/v1/model-versions/2400000` });
    const moved = await c.resolve(parse(`${hub.civitai.url}/api/download/models/2400000`));
    expect(moved).toMatchObject({ filename: 'x.safetensors', size: 1024 });
    expect(moved.sha256).toBeUndefined();
    // Its download URL is built on the Civitai endpoint, not taken from the other host.
    expect(moved.downloadUrl).toBe(`${hub.civitai.url}/api/download/models/2400000`);

    for (const r of hub.civitai.api.requests) {
      expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(r.url).not.toContain(TOKEN);
    }
    expect(hub.other.requests).toHaveLength(1);
    for (const r of hub.allRequests().filter((x) => x.host !== new URL(hub.civitai.url).host)) {
      expect(r.headers.authorization).toBeUndefined();
      expect(r.url).not.toContain(TOKEN);
    }
  });

  test('a download URL the API gives for another host is not used', async () => {
    hub = await startFakeHub();
    hub.other.route('/api/v1/model-versions/7', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 7,
          name: 'v1',
          files: [{ id: 70, name: 'evil.safetensors', type: 'Model', primary: true, sizeKB: 2, hashes: { SHA256: 'AB'.repeat(32) }, downloadUrl: 'http://169.254.169.254/api/download/models/7' }],
        }),
      );
    });
    hub.civitai.api.fault('/api/v1/model-versions/7', { redirectTo: `${hub.other.url}/api/v1/model-versions/7` });
    const meta = await civitaiMetadata({ endpoint: hub.civitai.url }).resolve(parse(`${hub.civitai.url}/api/download/models/7`));
    expect(meta).toMatchObject({ downloadUrl: `${hub.civitai.url}/api/download/models/7`, sha256: 'ab'.repeat(32), size: 2048 });
  });

  test('a redirect to the cloud metadata address is refused', async () => {
    hub = await startFakeHub({ civitaiToken: TOKEN });
    hub.civitai.model(checkpoint());
    hub.civitai.api.fault('/api/v1/model-versions/2514310', { redirectTo: 'http://169.254.169.254/latest/meta-data/' });
    const err = await failure(civitaiMetadata({ endpoint: hub.civitai.url, token: TOKEN }).resolve(parse(`${hub.civitai.url}/api/download/models/2514310`)));
    expect(err.code).toBe('FORBIDDEN_ADDRESS');
  });

  test('a file whose bytes do not match its announced SHA256: the metadata says what Civitai announced, for the transfer to check', async () => {
    hub = await startFakeHub();
    const announced = sha256Of(Buffer.from('something else'));
    hub.civitai.model({ id: 3, name: 'Liar', versions: [{ id: 33, name: 'v1', files: [{ name: 'liar.safetensors', data: bytes.lying, sha256: announced }] }] });
    const meta = await civitaiMetadata({ endpoint: hub.civitai.url }).resolve(parse(`${hub.civitai.url}/api/download/models/33`));
    expect(meta.sha256).toBe(announced);
    const served = Buffer.from(await (await fetch(meta.downloadUrl)).arrayBuffer());
    expect(served.length).toBe(meta.size);
    expect(sha256Of(served)).not.toBe(meta.sha256);
  });
});

describe('by hash', () => {
  test("finds the version and file of a SHA256 (either case); undefined when Civitai knows none", async () => {
    hub = await startFakeHub();
    hub.civitai.model(checkpoint());
    const c = civitaiMetadata({ endpoint: hub.civitai.url });
    const found = await c.byHash(sha256Of(bytes.pickle).toUpperCase());
    expect(found).toMatchObject({
      versionId: 2514310,
      modelId: 827184,
      filename: 'waiIllustriousSDXL_v160.ckpt',
      sha256: sha256Of(bytes.pickle),
      downloadUrl: `${hub.civitai.url}/api/download/models/2514310?type=Model&format=PickleTensor`,
    });
    expect(hub.civitai.api.requests.at(-1)!.path).toBe(`/api/v1/model-versions/by-hash/${sha256Of(bytes.pickle).toUpperCase()}`);
    expect(await c.byHash(sha256Of(Buffer.from('unknown')))).toBeUndefined();
    expect((await failure(c.byHash('abc'))).code).toBe('INVALID_HASH');
  });
});
