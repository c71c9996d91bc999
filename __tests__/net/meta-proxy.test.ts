import crypto from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import util from 'node:util';
import { loadConfig } from '../../server/config';
import { createSourceMetadata } from '../../server/sources';
import { createApiClient } from '../../server/sources/meta/api-client';
import { guardedLookup } from '../../server/net/url-policy';
import { failure, startFakeHub, type FakeHub } from '../helpers/fake-hub';
import { startTinyproxy, type Tinyproxy } from '../helpers/tinyproxy';
import { localhostCert } from '../helpers/tls-cert';

// The metadata APIs (Hugging Face's listings, Civitai's lookups) through a real proxy (tinyproxy),
// by the downloads' rules: CONNECT tunnels for https, absolute form for http, NO_PROXY, the
// address guard on every hop, each token to its own host, the proxy's credentials to the proxy only.

const HF_TOKEN = 'hf_TOKENforTheHubOnly000000001';
const CIVITAI_TOKEN = 'civitaiTOKENforCivitaiOnly00002';
const USER = 'bob';
const PASSWORD = 'Pr0xy-pa55word';
/** Every way a credential could show. */
const SECRETS = [HF_TOKEN, CIVITAI_TOKEN, PASSWORD, Buffer.from(`${USER}:${PASSWORD}`).toString('base64'), encodeURIComponent(PASSWORD)];
const CA = { ca: localhostCert().cert };

/** TLS in front of a plain HTTP host (the fake hub): `https://localhost:<port>` reaches it. */
interface Front {
  port: number;
  close(): Promise<void>;
}
async function tlsFront(target: string): Promise<Front> {
  const { key, cert } = localhostCert();
  const to = new URL(target);
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ key, cert }, (s) => {
    const up = net.connect(Number(to.port), to.hostname);
    sockets.add(s).add(up);
    s.on('error', () => up.destroy());
    up.on('error', () => s.destroy());
    s.pipe(up).pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

let hub: FakeHub;
let hfFront: Front;
let civitaiFront: Front;
let proxy: Tinyproxy;
/** A proxy that CONNECTs to no port of ours. */
let strict: Tinyproxy;

beforeAll(async () => {
  hub = await startFakeHub({ hfToken: HF_TOKEN, civitaiToken: CIVITAI_TOKEN, pageSize: 2 });
  hub.hf.repo('org/model');
  hub.hf.commit('org/model', { 'a.safetensors': crypto.randomBytes(100), 'b.safetensors': crypto.randomBytes(100), 'config.json': '{}' });
  hub.hf.repo('org/small');
  hub.hf.commit('org/small', { 'm.safetensors': crypto.randomBytes(100), 'config.json': '{}' });
  hub.civitai.model({ id: 1, name: 'M', versions: [{ id: 11, name: 'v1', files: [{ name: 'm.safetensors', data: crypto.randomBytes(100) }] }] });
  hfFront = await tlsFront(hub.hf.url);
  civitaiFront = await tlsFront(hub.civitai.url);
  const auth = { user: USER, password: PASSWORD };
  proxy = await startTinyproxy({ connectPorts: [hfFront.port, civitaiFront.port], auth });
  strict = await startTinyproxy({ connectPorts: [1], auth });
});
afterAll(async () => {
  await hfFront?.close();
  await civitaiFront?.close();
  await proxy?.stop();
  await strict?.stop();
  await hub?.close();
});

const hubRequests = (): ReturnType<FakeHub['allRequests']> => hub.allRequests();

function expectNoSecret(text: string): void {
  for (const s of SECRETS) expect(text).not.toContain(s);
}

/** The hub's requests since `from`: each token to its own API only, no proxy credentials. */
function expectTokensInPlace(from: number): void {
  const seen = hubRequests().slice(from);
  expect(seen.length).toBeGreaterThan(0);
  for (const r of seen) {
    const auth = r.headers.authorization;
    if (r.host === new URL(hub.hf.url).host) expect(auth).toBe(`Bearer ${HF_TOKEN}`);
    else if (r.host === new URL(hub.civitai.url).host) expect(auth).toBe(`Bearer ${CIVITAI_TOKEN}`);
    expect(r.headers['proxy-authorization']).toBeUndefined();
  }
}

test('https: a Hugging Face listing and a Civitai lookup go through CONNECT tunnels, tokens inside them', async () => {
  const hf = `https://localhost:${hfFront.port}`;
  const civitai = `https://localhost:${civitaiFront.port}`;
  const config = loadConfig({ HF_ENDPOINT: hf, HF_TOKEN, CIVITAI_ENDPOINT: civitai, CIVITAI_TOKEN, HTTPS_PROXY: proxy.url }, '/tmp');
  const meta = createSourceMetadata(config, { tls: CA });
  const logged = proxy.log().length;
  const from = hubRequests().length;

  const listing = await meta.hf.list(meta.hf.parse(new URL(`${hf}/org/small`))!, { folder: 'checkpoints' }); // one page: the hub's next links are its own http URLs
  expect(listing.files.map((f) => f.path).sort()).toEqual(['config.json', 'm.safetensors']);
  expect((await meta.civitai.resolve(meta.civitai.parse(new URL(`${civitai}/models/1`))!)).filename).toBe('m.safetensors');

  const log = proxy.log().slice(logged);
  expect(log).toContain(`CONNECT localhost:${hfFront.port} HTTP/1.1`);
  expect(log).toContain(`CONNECT localhost:${civitaiFront.port} HTTP/1.1`);
  expectTokensInPlace(from);
  expect(hubRequests().length - from).toBe(3); // revision + one tree page; the model
  expectNoSecret(log);
});

test('http: a Hugging Face listing of several pages in absolute form to the proxy, which alone gets its credentials', async () => {
  const config = loadConfig({ HF_ENDPOINT: hub.hf.url, HF_TOKEN, CIVITAI_ENDPOINT: hub.civitai.url, CIVITAI_TOKEN, HTTP_PROXY: proxy.url }, '/tmp');
  const meta = createSourceMetadata(config);
  const logged = proxy.log().length;
  const from = hubRequests().length;
  const listing = await meta.hf.list(meta.hf.parse(new URL(`${hub.hf.url}/org/model`))!, { folder: 'checkpoints' });
  expect(listing.files).toHaveLength(3);
  expect((await meta.civitai.resolve(meta.civitai.parse(new URL(`${hub.civitai.url}/models/1`))!)).filename).toBe('m.safetensors');
  const log = proxy.log().slice(logged);
  expect(log).toContain(`GET ${hub.hf.url}/api/models/org/model/revision/main`);
  expect(log.match(new RegExp(`GET ${hub.hf.url}/api/models/org/model/tree/`, 'g'))).toHaveLength(2); // both pages
  expect(log).toContain(`GET ${hub.civitai.url}/api/v1/models/1`);
  expectTokensInPlace(from);
  expect(hubRequests().length - from).toBe(4);
  expectNoSecret(log);
});

test('NO_PROXY: the hosts it names are asked directly', async () => {
  const config = loadConfig(
    { HF_ENDPOINT: hub.hf.url, CIVITAI_ENDPOINT: `https://localhost:${civitaiFront.port}`, HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, NO_PROXY: '127.0.0.1,localhost' },
    '/tmp',
  );
  const meta = createSourceMetadata(config, { tls: CA, agent: { https: new https.Agent({ ...CA, lookup: guardedLookup }) } });
  const logged = proxy.log().length;
  await meta.hf.list(meta.hf.parse(new URL(`${hub.hf.url}/org/small`))!, { folder: 'checkpoints' });
  await meta.civitai.resolve(meta.civitai.parse(new URL(`https://localhost:${civitaiFront.port}/models/1`))!);
  const log = proxy.log().slice(logged);
  expect(log).not.toContain(hub.hf.url);
  expect(log).not.toContain(`localhost:${civitaiFront.port}`);
});

test('a proxy that refuses the tunnel: an error that names the proxy and what it refused, without credentials', async () => {
  const config = loadConfig({ HF_ENDPOINT: `https://localhost:${hfFront.port}`, HF_TOKEN, HTTPS_PROXY: strict.url }, '/tmp');
  const meta = createSourceMetadata(config, { tls: CA });
  const err = await failure(meta.hf.list(meta.hf.parse(new URL(`https://localhost:${hfFront.port}/org/small`))!, { folder: 'checkpoints' }));
  expect(err).toMatchObject({ code: 'PROXY_REFUSED', status: 502 });
  expect(err.message).toBe(`Could not reach Hugging Face: the proxy at 127.0.0.1:${strict.port} refused to connect to localhost:${hfFront.port}: 403 Access violation`);
  expectNoSecret(`${err.message} ${util.inspect(err, { depth: 5 })} ${JSON.stringify(err)}`);
});

test('no proxy credentials for an http hop (407) and a proxy that is not there: the proxy named, no credential shown', async () => {
  const wrong = createApiClient({ label: 'Civitai', proxy: loadConfig({ HTTP_PROXY: `http://127.0.0.1:${proxy.port}` }, '/tmp').proxy });
  const refused = await failure(wrong.getJson(new URL(`${hub.civitai.url}/api/v1/models/1`)));
  expect(refused).toMatchObject({ code: 'PROXY_REFUSED', status: 502 });
  expect(refused.message).toMatch(/^Could not reach Civitai: the proxy at 127\.0\.0\.1:\d+ refused to fetch 127\.0\.0\.1:\d+: 407/);
  for (const url of [`${hub.civitai.url}/api/v1/models/1`, `https://localhost:${civitaiFront.port}/api/v1/models/1`]) {
    const gone = createApiClient({ label: 'Civitai', tls: CA, proxy: loadConfig({ HTTP_PROXY: `http://${USER}:${PASSWORD}@127.0.0.1:1`, HTTPS_PROXY: `http://${USER}:${PASSWORD}@127.0.0.1:1` }, '/tmp').proxy });
    const err = await failure(gone.getJson(new URL(url)));
    expect(err).toMatchObject({ code: 'PROXY_UNREACHABLE', status: 502, retryable: true, message: 'Could not reach Civitai: could not reach the proxy at 127.0.0.1:1 (ECONNREFUSED)' });
    expectNoSecret(`${err.message} ${util.inspect(err, { depth: 5 })}`);
  }
  expectNoSecret(`${refused.message} ${util.inspect(refused, { depth: 5 })}`);
});

test('the address guard holds through the proxy: a forbidden address is refused before the proxy is asked, also by redirect', async () => {
  const client = createApiClient({ label: 'Hugging Face', tls: CA, proxy: loadConfig({ HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url }, '/tmp').proxy });
  const logged = proxy.log().length;
  for (const url of ['http://169.254.169.254/latest/meta-data/', 'https://[fd00:ec2::254]/', 'http://100.100.100.200/']) {
    expect(await failure(client.getJson(new URL(url)))).toMatchObject({ code: 'FORBIDDEN_ADDRESS' });
  }
  hub.other.route('/to-metadata', (_req, res) => {
    res.writeHead(302, { Location: 'http://169.254.169.254/latest/meta-data/' }).end();
  });
  expect(await failure(client.getJson(new URL(`${hub.other.url}/to-metadata`)))).toMatchObject({ code: 'FORBIDDEN_ADDRESS' });
  const log = proxy.log().slice(logged);
  expect(log).toContain(`GET ${hub.other.url}/to-metadata`); // the first hop went through it
  expect(log).not.toContain('169.254');
  expect(log).not.toContain('100.100.100.200');
  expect(log).not.toContain('fd00:ec2');
});
