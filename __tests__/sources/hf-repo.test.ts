import crypto from 'node:crypto';
import { gitBlobSha1, hfMetadata, parseHfRepoUrl, type HfRepoRef } from '../../server/sources/hf-repo';
import { sha256Of, startFakeHub, type FakeHub, failure } from '../helpers/fake-hub';

const TOKEN = 'hf_SECRETtoken0123456789abc';

let hub: FakeHub;
afterEach(async () => {
  await hub?.close();
});


const ref = (url: string, endpoint: string): HfRepoRef => {
  const r = parseHfRepoUrl(new URL(url), endpoint);
  if (!r) throw new Error(`not a repository URL: ${url}`);
  return r;
};

/** A diffusers-like repository: LFS weights, small git files, nested folders. */
function flux(h: FakeHub, name = 'black-forest-labs/FLUX.1-schnell'): { sha: string; files: Record<string, Buffer> } {
  const files: Record<string, Buffer> = {
    '.gitattributes': Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n'),
    'README.md': Buffer.from('# FLUX\n'),
    'model_index.json': Buffer.from('{"_class_name": "FluxPipeline"}\n'),
    'flux1-schnell.safetensors': crypto.randomBytes(40_000),
    'ae.safetensors': crypto.randomBytes(9_000),
    'text_encoder/config.json': Buffer.from('{"architectures": ["CLIPTextModel"]}\n'),
    'text_encoder/model.safetensors': crypto.randomBytes(12_000),
    'transformer/diffusion_pytorch_model-00001-of-00002.safetensors': crypto.randomBytes(20_000),
    'transformer/diffusion_pytorch_model-00002-of-00002.safetensors': crypto.randomBytes(15_000),
    'transformer/diffusion_pytorch_model.safetensors.index.json': Buffer.from('{"weight_map": {}}\n'),
  };
  h.hf.repo(name);
  return { sha: h.hf.commit(name, files), files };
}

describe('parseHfRepoUrl', () => {
  const ep = 'https://huggingface.co';
  test('repository pages and tree URLs, with their revision and folder', () => {
    expect(parseHfRepoUrl(new URL('https://huggingface.co/black-forest-labs/FLUX.1-dev'), ep)).toEqual({
      repo: 'black-forest-labs/FLUX.1-dev',
      type: 'model',
      revision: 'main',
      path: '',
      page: 'https://huggingface.co/black-forest-labs/FLUX.1-dev',
    });
    expect(parseHfRepoUrl(new URL('https://huggingface.co/org/repo/?library=diffusers'), ep)).toMatchObject({ repo: 'org/repo', revision: 'main', path: '' });
    expect(parseHfRepoUrl(new URL('https://huggingface.co/org/repo/tree/main'), ep)).toMatchObject({ revision: 'main', path: '' });
    expect(parseHfRepoUrl(new URL('https://huggingface.co/org/repo/tree/v1.0/text_encoder/'), ep)).toMatchObject({ revision: 'v1.0', path: 'text_encoder' });
    expect(parseHfRepoUrl(new URL('https://huggingface.co/org/repo/tree/main/a/b%20c'), ep)).toMatchObject({ path: 'a/b c' });
    expect(parseHfRepoUrl(new URL('https://huggingface.co/org/repo/tree/refs%2Fpr%2F12/unet'), ep)).toMatchObject({ revision: 'refs/pr/12', path: 'unet' });
    expect(parseHfRepoUrl(new URL('https://huggingface.co/org/repo/tree/refs/pr/12/unet'), ep)).toMatchObject({ revision: 'refs/pr/12', path: 'unet' });
    const sha = 'a'.repeat(40);
    expect(parseHfRepoUrl(new URL(`https://huggingface.co/org/repo/tree/${sha}`), ep)).toMatchObject({ revision: sha });
    expect(parseHfRepoUrl(new URL('https://huggingface.co/datasets/org/data/tree/main/images'), ep)).toEqual({
      repo: 'org/data',
      type: 'dataset',
      revision: 'main',
      path: 'images',
      page: 'https://huggingface.co/datasets/org/data',
    });
  });

  test('single files, site pages, spaces and other hosts are not repositories', () => {
    for (const u of [
      'https://huggingface.co/org/repo/blob/main/model.safetensors',
      'https://huggingface.co/org/repo/resolve/main/model.safetensors',
      'https://huggingface.co/org/repo/discussions',
      'https://huggingface.co/models?search=flux',
      'https://huggingface.co/docs/hub',
      'https://huggingface.co/spaces/org/app',
      'https://huggingface.co/settings/tokens',
      'https://huggingface.co/org',
      'https://huggingface.co/org/repo/tree/main/../../etc',
      'https://huggingface.co/org/repo/tree/main/a%2F..%2F..%2Fb',
      'https://example.com/org/repo',
      'http://huggingface.co/org/repo',
    ]) {
      expect([u, parseHfRepoUrl(new URL(u), ep)]).toEqual([u, undefined]);
    }
  });

  test("a mirror's endpoint, path prefix included", () => {
    const mirror = 'https://mirror.example/hf';
    expect(parseHfRepoUrl(new URL('https://mirror.example/hf/org/repo/tree/main/vae'), mirror)).toMatchObject({
      repo: 'org/repo',
      path: 'vae',
      page: 'https://mirror.example/hf/org/repo',
    });
    expect(parseHfRepoUrl(new URL('https://mirror.example/org/repo'), mirror)).toBeUndefined();
    expect(parseHfRepoUrl(new URL('https://huggingface.co/org/repo'), mirror)).toBeUndefined();
  });
});

describe('listing a repository', () => {
  test('pins the revision, follows every page, and describes each file: LFS by sha256, git files by blob id', async () => {
    hub = await startFakeHub({ hfToken: TOKEN, pageSize: 3 });
    const { sha, files } = flux(hub);
    const hf = hfMetadata({ endpoint: hub.hf.url, token: TOKEN });
    const listing = await hf.list(ref(`${hub.hf.url}/black-forest-labs/FLUX.1-schnell`, hub.hf.url), { folder: 'diffusion_models' });

    expect(listing).toMatchObject({ repo: 'black-forest-labs/FLUX.1-schnell', type: 'model', requested: 'main', revision: sha, path: '', excluded: 0 });
    expect(listing.files.map((f) => f.path)).toEqual(Object.keys(files).sort());
    expect(listing.totalSize).toBe(Object.values(files).reduce((n, b) => n + b.length, 0));
    // 10 files and 2 folders, 3 entries a page: 4 pages, all asked at the pinned commit.
    const trees = hub.hf.api.requests.filter((r) => r.path.includes('/tree/'));
    expect(trees).toHaveLength(4);
    for (const r of trees) expect(r.url).toContain(`/tree/${sha}`);
    expect(hub.hf.api.requests[0]!.path).toBe('/api/models/black-forest-labs/FLUX.1-schnell/revision/main');

    const weights = listing.files.find((f) => f.path === 'transformer/diffusion_pytorch_model-00001-of-00002.safetensors')!;
    expect(weights).toEqual({
      path: 'transformer/diffusion_pytorch_model-00001-of-00002.safetensors',
      url: `${hub.hf.url}/black-forest-labs/FLUX.1-schnell/resolve/${sha}/transformer/diffusion_pytorch_model-00001-of-00002.safetensors`,
      size: 20_000,
      sha256: sha256Of(files['transformer/diffusion_pytorch_model-00001-of-00002.safetensors']!),
      dest: 'diffusion_models/FLUX.1-schnell/transformer/diffusion_pytorch_model-00001-of-00002.safetensors',
      folder: 'diffusion_models/FLUX.1-schnell/transformer',
      filename: 'diffusion_pytorch_model-00001-of-00002.safetensors',
    });
    const config = listing.files.find((f) => f.path === 'model_index.json')!;
    expect(config.sha256).toBeUndefined();
    expect(config.gitBlobId).toBe(gitBlobSha1(files['model_index.json']!));
    expect(config).toMatchObject({ folder: 'diffusion_models/FLUX.1-schnell', filename: 'model_index.json', dest: 'diffusion_models/FLUX.1-schnell/model_index.json' });
  });

  test('the URLs it gives serve the bytes their digests describe', async () => {
    hub = await startFakeHub({ pageSize: 50 });
    const { files } = flux(hub);
    const listing = await hfMetadata({ endpoint: hub.hf.url }).list(ref(`${hub.hf.url}/black-forest-labs/FLUX.1-schnell`, hub.hf.url), { folder: 'checkpoints' });
    for (const f of listing.files) {
      const res = await fetch(f.url); // follows the CDN redirect of LFS files
      const body = Buffer.from(await res.arrayBuffer());
      expect(body.length).toBe(f.size);
      expect(body.equals(files[f.path]!)).toBe(true);
      if (f.sha256) expect(sha256Of(body)).toBe(f.sha256);
      else expect(gitBlobSha1(body)).toBe(f.gitBlobId);
    }
    // The first answer of an LFS file announces what the listing said.
    const lfs = listing.files.find((f) => f.sha256)!;
    const first = await fetch(lfs.url, { redirect: 'manual' });
    expect(first.status).toBe(302);
    expect(first.headers.get('x-linked-etag')).toBe(`"${lfs.sha256}"`);
    expect(first.headers.get('x-linked-size')).toBe(String(lfs.size));
  });

  test('a branch that moves while the listing is paged: every page and file comes from the commit pinned at the start', async () => {
    hub = await startFakeHub({ pageSize: 2 });
    const name = 'org/moving';
    hub.hf.repo(name);
    const old = hub.hf.commit(name, {
      'a.safetensors': crypto.randomBytes(100),
      'b.safetensors': crypto.randomBytes(100),
      'c.safetensors': crypto.randomBytes(100),
      'd.safetensors': crypto.randomBytes(100),
    });
    // After the first page, main moves on: two files replaced, one removed, one added.
    let moved: string | undefined;
    hub.hf.onTreePage(({ index }) => {
      if (index === 0 && !moved) {
        moved = hub.hf.commit(name, { 'c.safetensors': crypto.randomBytes(200), 'd.safetensors': null, 'e.safetensors': crypto.randomBytes(50), 'a.safetensors': crypto.randomBytes(300) });
      }
    });
    const hf = hfMetadata({ endpoint: hub.hf.url });
    const listing = await hf.list(ref(`${hub.hf.url}/${name}/tree/main`, hub.hf.url), { folder: 'loras' });
    expect(moved).toBeDefined();
    expect(listing.revision).toBe(old);
    expect(listing.files.map((f) => [f.path, f.size])).toEqual([
      ['a.safetensors', 100],
      ['b.safetensors', 100],
      ['c.safetensors', 100],
      ['d.safetensors', 100],
    ]);
    for (const f of listing.files) expect(f.url).toContain(`/resolve/${old}/`);
    // Those URLs still serve the old bytes, though main has moved.
    const c = listing.files.find((f) => f.path === 'c.safetensors')!;
    expect(Buffer.from(await (await fetch(c.url)).arrayBuffer()).length).toBe(100);

    // Paged at "main" instead, the same kind of move loses files: a, b, c, e, f are there when
    // the first page is asked, e and f alone when the second is, so the second page is empty.
    hub.hf.commit(name, { 'f.safetensors': crypto.randomBytes(10) });
    let flipped = false;
    hub.hf.onTreePage(({ index }) => {
      if (index === 0 && !flipped) {
        flipped = true;
        hub.hf.commit(name, { 'a.safetensors': null, 'b.safetensors': null, 'c.safetensors': null });
      }
    });
    const unpinned: string[] = [];
    for (let u: string | undefined = `${hub.hf.url}/api/models/${name}/tree/main?recursive=true`; u; ) {
      const res: Response = await fetch(u);
      unpinned.push(...((await res.json()) as Array<{ path: string }>).map((e) => e.path));
      u = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
    }
    expect(unpinned).toEqual(['a.safetensors', 'b.safetensors']);

    // A new listing pins the new head.
    expect((await hf.list(ref(`${hub.hf.url}/${name}`, hub.hf.url), { folder: 'loras' })).revision).toBe(hub.hf.head(name));
  });

  test('include and exclude as hf download reads them; a folder URL lists only that folder', async () => {
    hub = await startFakeHub({ pageSize: 4 });
    const { sha } = flux(hub);
    const hf = hfMetadata({ endpoint: hub.hf.url });
    const repoRef = ref(`${hub.hf.url}/black-forest-labs/FLUX.1-schnell`, hub.hf.url);

    const weights = await hf.list(repoRef, { folder: 'diffusion_models', include: ['*.safetensors'], exclude: ['text_encoder/'] });
    expect(weights.files.map((f) => f.path)).toEqual([
      'ae.safetensors',
      'flux1-schnell.safetensors',
      'transformer/diffusion_pytorch_model-00001-of-00002.safetensors',
      'transformer/diffusion_pytorch_model-00002-of-00002.safetensors',
    ]);
    expect(weights.excluded).toBe(6);

    const folder = await hf.list(ref(`${hub.hf.url}/black-forest-labs/FLUX.1-schnell/tree/main/transformer`, hub.hf.url), { folder: 'diffusion_models', include: ['*.json', '*00001*'] });
    expect(folder.path).toBe('transformer');
    expect(folder.files.map((f) => f.dest)).toEqual([
      'diffusion_models/FLUX.1-schnell/transformer/diffusion_pytorch_model-00001-of-00002.safetensors',
      'diffusion_models/FLUX.1-schnell/transformer/diffusion_pytorch_model.safetensors.index.json',
    ]);
    expect(hub.hf.api.requests.filter((r) => r.path.includes('/tree/')).at(-1)!.path).toBe(`/api/models/black-forest-labs/FLUX.1-schnell/tree/${sha}/transformer`);

    const none = await failure(hf.list(repoRef, { folder: 'diffusion_models', include: ['*.gguf'] }));
    expect(none).toMatchObject({ code: 'HF_NO_FILES', status: 400 });
    expect(none.message).toBe('black-forest-labs/FLUX.1-schnell has no files at main (10 left out by include/exclude): nothing to download');

    const many = await failure(hf.list(repoRef, { folder: 'diffusion_models', maxFiles: 3 }));
    expect(many.code).toBe('HF_TOO_MANY_FILES');
  });

  test('a revision given as a tag, a pull request ref or a commit is pinned to its commit', async () => {
    hub = await startFakeHub();
    const name = 'org/refs';
    hub.hf.repo(name);
    const first = hub.hf.commit(name, { 'x.safetensors': crypto.randomBytes(10) });
    const pr = hub.hf.commit(name, { 'y.safetensors': crypto.randomBytes(10) }, { branch: 'refs/pr/3' });
    hub.hf.commit(name, { 'z.safetensors': crypto.randomBytes(10) });
    const hf = hfMetadata({ endpoint: hub.hf.url });
    expect((await hf.list(ref(`${hub.hf.url}/${name}/tree/${first}`, hub.hf.url), { folder: 'loras' })).files.map((f) => f.path)).toEqual(['x.safetensors']);
    const prListing = await hf.list(ref(`${hub.hf.url}/${name}/tree/refs%2Fpr%2F3`, hub.hf.url), { folder: 'loras' });
    expect(prListing).toMatchObject({ requested: 'refs/pr/3', revision: pr });
    expect(hub.hf.api.requests.some((r) => r.path === `/api/models/${name}/revision/refs%2Fpr%2F3`)).toBe(true);

    const missing = await failure(hf.list(ref(`${hub.hf.url}/${name}/tree/v9`, hub.hf.url), { folder: 'loras' }));
    expect(missing).toMatchObject({ code: 'HF_REVISION_NOT_FOUND', message: 'Hugging Face answered 404: org/refs has no branch, tag or commit "v9"' });
    const noFolder = await failure(hf.list(ref(`${hub.hf.url}/${name}/tree/main/vae`, hub.hf.url), { folder: 'loras' }));
    expect(noFolder).toMatchObject({ code: 'HF_PATH_NOT_FOUND', message: 'Hugging Face answered 404: org/refs has no folder "vae" at main' });
  });

  test('a mirror with a path prefix (HF_ENDPOINT=<host>/hf) and a dataset repository', async () => {
    hub = await startFakeHub({ hfPrefix: '/hf', hfToken: TOKEN });
    hub.hf.repo('org/data', { type: 'dataset' });
    const sha = hub.hf.commit('org/data', { 'images/a.png': crypto.randomBytes(64) });
    const hf = hfMetadata({ endpoint: hub.hf.url, token: TOKEN });
    const r = ref(`${hub.hf.url}/datasets/org/data`, hub.hf.url);
    const listing = await hf.list(r, { folder: 'custom' });
    expect(listing.files[0]!.url).toBe(`${hub.hf.url}/datasets/org/data/resolve/${sha}/images/a.png`);
    expect(hub.hf.api.requests.map((x) => x.path)).toEqual(['/hf/api/datasets/org/data/revision/main', `/hf/api/datasets/org/data/tree/${sha}`]);
    for (const x of hub.hf.api.requests) expect(x.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });
});

describe('access: gated and private repositories, tokens', () => {
  test('a gated repository without HF_TOKEN: 401, said with what to do and where', async () => {
    hub = await startFakeHub({ hfToken: TOKEN });
    hub.hf.repo('black-forest-labs/FLUX.1-dev', { gated: true });
    hub.hf.commit('black-forest-labs/FLUX.1-dev', { 'flux1-dev.safetensors': crypto.randomBytes(100) });
    const err = await failure(hfMetadata({ endpoint: hub.hf.url }).list(ref(`${hub.hf.url}/black-forest-labs/FLUX.1-dev`, hub.hf.url), { folder: 'diffusion_models' }));
    expect(err.toJSON()).toEqual({
      code: 'HF_GATED',
      message: `Hugging Face answered 401: this repository is gated — set HF_TOKEN and accept its licence at ${hub.hf.url}/black-forest-labs/FLUX.1-dev`,
    });
    expect(err.status).toBe(400);
    expect(err.retryable).toBe(false);
  });

  test('a gated repository whose licence the token account has not accepted: 403; accepted: listed', async () => {
    hub = await startFakeHub({ hfToken: TOKEN });
    hub.hf.repo('org/gated', { gated: true, licenceAccepted: false });
    hub.hf.commit('org/gated', { 'm.safetensors': crypto.randomBytes(100) });
    const hf = hfMetadata({ endpoint: hub.hf.url, token: TOKEN });
    const r = ref(`${hub.hf.url}/org/gated`, hub.hf.url);
    const err = await failure(hf.list(r, { folder: 'loras' }));
    expect(err.toJSON()).toEqual({
      code: 'HF_GATED',
      message: `Hugging Face answered 403: this repository is gated and the account of HF_TOKEN has no access yet — accept its licence at ${hub.hf.url}/org/gated`,
    });
    hub.hf.setRepo('org/gated', { licenceAccepted: true });
    expect((await hf.list(r, { folder: 'loras' })).files).toHaveLength(1);
  });

  test('a token the Hub refuses, a private repository, one that does not exist', async () => {
    hub = await startFakeHub({ hfToken: TOKEN });
    hub.hf.repo('org/private', { private: true });
    hub.hf.commit('org/private', { 'm.safetensors': crypto.randomBytes(10) });
    const bad = await failure(hfMetadata({ endpoint: hub.hf.url, token: 'hf_wrong' }).list(ref(`${hub.hf.url}/org/private`, hub.hf.url), { folder: 'loras' }));
    expect(bad.toJSON()).toEqual({ code: 'HF_TOKEN_REFUSED', message: 'Hugging Face answered 401: it did not accept HF_TOKEN (expired, revoked or mistyped?)' });

    const anonymous = await failure(hfMetadata({ endpoint: hub.hf.url }).list(ref(`${hub.hf.url}/org/private`, hub.hf.url), { folder: 'loras' }));
    expect(anonymous.toJSON()).toEqual({
      code: 'HF_REPO_NOT_FOUND',
      message: 'Hugging Face answered 401: there is no repository org/private, or it is private or gated — if you have access, set HF_TOKEN',
    });
    expect((await hfMetadata({ endpoint: hub.hf.url, token: TOKEN }).list(ref(`${hub.hf.url}/org/private`, hub.hf.url), { folder: 'loras' })).files).toHaveLength(1);

    const missing = await failure(hfMetadata({ endpoint: hub.hf.url, token: TOKEN }).list(ref(`${hub.hf.url}/org/nothing`, hub.hf.url), { folder: 'loras' }));
    expect(missing.toJSON()).toEqual({ code: 'HF_REPO_NOT_FOUND', message: 'Hugging Face answered 404: there is no repository org/nothing (check the URL)' });
  });

  test('a server error is retryable and says so; a rate limit mentions HF_TOKEN', async () => {
    hub = await startFakeHub();
    flux(hub, 'org/busy');
    const hf = hfMetadata({ endpoint: hub.hf.url });
    hub.hf.api.fault('/api/models/org/busy/revision/main', { status: 503, retryAfter: '30', body: '{"error":"Service Unavailable"}', headers: { 'Content-Type': 'application/json' } });
    const busy = await failure(hf.list(ref(`${hub.hf.url}/org/busy`, hub.hf.url), { folder: 'loras' }));
    expect(busy).toMatchObject({ code: 'HTTP_503', status: 502, retryable: true, retryAfter: 30, message: 'Hugging Face answered 503: a server error (Service Unavailable); try again later' });
    hub.hf.api.fault('/api/models/org/busy/revision/main', { status: 429 });
    const limited = await failure(hf.list(ref(`${hub.hf.url}/org/busy`, hub.hf.url), { folder: 'loras' }));
    expect(limited.message).toBe('Hugging Face answered 429: too many requests — try again in a while (requests with HF_TOKEN get a higher limit)');
  });

  test('HF_TOKEN goes to the Hub host only: not to another host a redirect or a page link names', async () => {
    hub = await startFakeHub({ hfToken: TOKEN, pageSize: 2 });
    flux(hub, 'org/a');
    flux(hub, 'org/b');
    flux(hub, 'org/c');
    const hf = hfMetadata({ endpoint: hub.hf.url, token: TOKEN });

    // A renamed repository: a same-host redirect, which keeps the token.
    hub.hf.rename('org/old-name', 'org/a');
    const renamed = await hf.list(ref(`${hub.hf.url}/org/old-name`, hub.hf.url), { folder: 'loras' });
    expect(renamed.files.length).toBeGreaterThan(0);
    expect(hub.hf.api.requests.filter((r) => r.path.startsWith('/api/models/org/old-name/'))).not.toHaveLength(0);

    // The revision lookup redirected to another host: followed without the token.
    hub.other.route('/api/models/org/b/revision/main', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ sha: hub.hf.head('org/b') }));
    });
    hub.hf.api.fault('/api/models/org/b/revision/main', { redirectTo: `${hub.other.url}/api/models/org/b/revision/main` });
    await hf.list(ref(`${hub.hf.url}/org/b`, hub.hf.url), { folder: 'loras' });
    expect(hub.other.requests).toHaveLength(1);

    // A tree page whose next link points to another host: refused, nothing sent there.
    const sha = hub.hf.head('org/c');
    hub.hf.api.fault(`/api/models/org/c/tree/${sha}`, {
      status: 200,
      body: '[]',
      headers: { 'Content-Type': 'application/json', Link: `<${hub.other.url}/api/models/org/c/tree/${sha}?cursor=2>; rel="next"` },
    });
    const off = await failure(hf.list(ref(`${hub.hf.url}/org/c`, hub.hf.url), { folder: 'loras' }));
    expect(off.code).toBe('HF_BAD_ANSWER');
    expect(off.message).toContain(`another host (${new URL(hub.other.url).host})`);
    expect(hub.other.requests).toHaveLength(1);

    for (const r of hub.hf.api.requests) expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
    const elsewhere = hub.allRequests().filter((r) => r.host !== new URL(hub.hf.url).host);
    expect(elsewhere).toHaveLength(1);
    for (const r of elsewhere) {
      expect(r.headers.authorization).toBeUndefined();
      expect(r.url).not.toContain(TOKEN);
    }
  });

  test('a redirect to the cloud metadata address is refused, and nothing goes there', async () => {
    hub = await startFakeHub({ hfToken: TOKEN });
    flux(hub, 'org/a');
    hub.hf.api.fault('/api/models/org/a/revision/main', { redirectTo: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/' });
    const err = await failure(hfMetadata({ endpoint: hub.hf.url, token: TOKEN }).list(ref(`${hub.hf.url}/org/a`, hub.hf.url), { folder: 'loras' }));
    expect(err.code).toBe('FORBIDDEN_ADDRESS');
    expect(err.message).toBe('169.254.169.254 is a link-local or cloud-metadata address; Model Downloader never fetches those');
  });

  test('a hostile listing: an unsafe path or a file outside the asked folder is refused, not written anywhere', async () => {
    hub = await startFakeHub();
    flux(hub, 'org/a');
    const sha = hub.hf.head('org/a');
    const hf = hfMetadata({ endpoint: hub.hf.url });
    for (const path of ['../../etc/cron.d/x', 'a//b', 'a/./b', 'a\\..\\b', 'x\u0000y']) {
      hub.hf.api.fault(`/api/models/org/a/tree/${sha}`, {
        status: 200,
        body: JSON.stringify([{ type: 'file', path, size: 1, oid: 'a'.repeat(40) }]),
        headers: { 'Content-Type': 'application/json' },
      });
      expect([path, (await failure(hf.list(ref(`${hub.hf.url}/org/a`, hub.hf.url), { folder: 'loras' }))).code]).toEqual([path, 'HF_BAD_ANSWER']);
    }
    hub.hf.api.fault(`/api/models/org/a/tree/${sha}/transformer`, {
      status: 200,
      body: JSON.stringify([{ type: 'file', path: 'elsewhere/x.bin', size: 1, oid: 'a'.repeat(40) }]),
      headers: { 'Content-Type': 'application/json' },
    });
    expect((await failure(hf.list(ref(`${hub.hf.url}/org/a/tree/main/transformer`, hub.hf.url), { folder: 'loras' }))).code).toBe('HF_BAD_ANSWER');
    hub.hf.api.fault(`/api/models/org/a/revision/main`, { status: 200, body: '{"sha":"main"}', headers: { 'Content-Type': 'application/json' } });
    expect((await failure(hf.list(ref(`${hub.hf.url}/org/a`, hub.hf.url), { folder: 'loras' }))).code).toBe('HF_BAD_ANSWER');
  });
});
