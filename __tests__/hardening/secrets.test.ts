/**
 * Secrets never leak: one run that uses every kind of secret (API_TOKEN, HF_TOKEN, CIVITAI_TOKEN,
 * a Civitai token pasted into a URL, signed-URL parameters of our own and of the fake CDNs), with
 * downloads that complete, fail by HTTP status, fail by network, loop in redirects, and go over
 * several connections (so a `.part.json` segment map exists for a while). Then every output is
 * searched for every secret: each version of the status file seen while it ran, each `.part.json`
 * seen, every API answer (401s included), every WebSocket message, the log, the page, every text
 * file left in the temp folder.
 *
 * How this was checked to fail without its protection: with `redactUrl` returning the URL as it
 * is, the status file, the API, the WebSocket and the `.part.json` all carried the signatures and
 * the pasted token, and this test failed on each of them.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { startFakeCivitai, startFakeHf, type FakeCivitai, type FakeHf } from '../helpers/fake-hosts';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { connectWs, settled, startTestServer, waitFor, type TestServer, type TestSocket } from '../helpers/harness';

const API_TOKEN = 'apitoken-SECRET-a1b2c3d4e5';
const HF_TOKEN = 'hf_SECRETtokenf6a7b8c9d0';
const CIVITAI_TOKEN = 'civitai-SECRET-1122334455';
const PASTED_TOKEN = 'pasted-SECRET-6677889900';
const SIGNATURE = 'amzsig-SECRET-abcdef012345';
const CREDENTIAL = 'AKIASECRETCRED/20250101/us-east-1/s3/aws4_request';
const QUERY_TOKEN = 'querytoken-SECRET-777';
const QUERY_SIG = 'querysig-SECRET-888';
const FAILING_TOKEN = 'failingtoken-SECRET-999';
const NETWORK_SIG = 'networksig-SECRET-000';
const LOOP_TOKEN = 'looptoken-SECRET-121';
const WS_SIG = 'wssig-SECRET-343';

let files: FileServer;
let hf: FakeHf;
let civ: FakeCivitai;
let srv: TestServer;
let sock: TestSocket;

beforeAll(async () => {
  files = await startFileServer();
  hf = await startFakeHf(HF_TOKEN);
  civ = await startFakeCivitai(CIVITAI_TOKEN);
  srv = await startTestServer(
    { API_TOKEN, HF_TOKEN, CIVITAI_TOKEN, HF_ENDPOINT: hf.url, CIVITAI_ENDPOINT: civ.url, CONNECTIONS: '4' },
    { downloader: { stallMs: 2000, retry: { baseMs: 20, maxMs: 50 }, progressIntervalMs: 50 } },
  );
});
afterAll(async () => {
  await sock?.close();
  await srv?.stop();
  await Promise.all([files?.close(), hf?.close(), civ?.close()]);
});

test('no secret appears in the status file, a .part.json, an API answer, a WebSocket message, the log or the page', async () => {
  const outputs: Array<{ where: string; text: string }> = [];
  const keep = (where: string, text: string): void => {
    outputs.push({ where, text });
  };
  const auth = { Authorization: `Bearer ${API_TOKEN}` };
  const api = async (method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await srv.api(method, urlPath, body, auth);
    keep(`${method} ${urlPath} → ${res.status}`, typeof res.body === 'string' ? res.body : JSON.stringify(res.body));
    return res;
  };

  // Sample the files on disk while everything runs: the status file and every .part.json.
  let running = true;
  const statusVersions = new Set<string>();
  const partJsons = new Set<string>();
  const sampler = (async () => {
    while (running) {
      const status = await fs.readFile(srv.statusFile, 'utf8').catch(() => undefined);
      if (status !== undefined) statusVersions.add(status);
      for (const name of await fs.readdir(srv.modelsDir, { recursive: true }).catch(() => [] as string[])) {
        if (!String(name).endsWith('.part.json')) continue;
        const text = await fs.readFile(path.join(srv.modelsDir, String(name)), 'utf8').catch(() => undefined);
        if (text !== undefined) partJsons.add(`${name}: ${text}`);
      }
      await new Promise((r) => setTimeout(r, 15));
    }
  })();

  sock = await connectWs(`${srv.url}/ws?token=${API_TOKEN}`);

  // Hugging Face, gated: HF_TOKEN to the API host, a signed redirect to the CDN.
  hf.repo('org/gated', { gated: true });
  const hfFile = hf.file('org/gated', 'main', 'hf-model.safetensors', crypto.randomBytes(1_500_000));
  // Civitai, login required: CIVITAI_TOKEN as ?token=, a signed redirect; and one with a token pasted in the URL.
  const civFile = civ.version(4242, 'civ-model.safetensors', crypto.randomBytes(1_000_000), { requiresLogin: true });
  civ.version(4243, 'pasted.safetensors', crypto.randomBytes(300_000));
  // Our own signed URL, big enough for two segments, slow enough to be seen mid-way.
  const signed = files.addFile('/signed.safetensors', { size: 12_000_000, throttle: 4_000_000 });
  const signedUrl = `${signed.url}?X-Amz-Signature=${SIGNATURE}&X-Amz-Credential=${encodeURIComponent(CREDENTIAL)}&token=${QUERY_TOKEN}&sig=${QUERY_SIG}&keep=1`;
  // Failures whose messages and log lines must not carry the URL's secrets either.
  files.route('/loop-a.safetensors', (_req, res) => {
    res.writeHead(302, { Location: `/loop-b.safetensors?token=${LOOP_TOKEN}` });
    res.end();
  });
  files.route('/loop-b.safetensors', (_req, res) => {
    res.writeHead(302, { Location: `/loop-a.safetensors?token=${LOOP_TOKEN}` });
    res.end();
  });
  const ws = files.addFile('/ws.safetensors', { size: 200_000 });

  const started = [
    await api('POST', '/api/downloads', { url: `${hf.url}/org/gated/resolve/main/hf-model.safetensors`, folder: 'checkpoints' }),
    await api('POST', '/api/downloads', { url: `${civ.url}/api/download/models/4242`, folder: 'loras' }),
    await api('POST', '/api/downloads', { url: `${civ.url}/api/download/models/4243?type=Model&token=${PASTED_TOKEN}`, folder: 'loras' }),
    await api('POST', '/api/downloads', { url: signedUrl, folder: 'diffusion_models', sha256: signed.sha256 }),
    await api('POST', '/api/downloads', { url: `${files.url}/missing.safetensors?token=${FAILING_TOKEN}`, folder: 'vae' }),
    await api('POST', '/api/downloads', { url: `http://127.0.0.1:9/refused.safetensors?X-Amz-Signature=${NETWORK_SIG}`, folder: 'vae' }),
    await api('POST', '/api/downloads', { url: `${files.url}/loop-a.safetensors?token=${LOOP_TOKEN}`, folder: 'vae' }),
  ];
  sock.ws.send(JSON.stringify({ type: 'start', request_id: 'ws1', url: `${ws.url}?sig=${WS_SIG}`, folder: 'embeddings' }));
  const ack = await sock.next((m) => m.type === 'ack' && m.request_id === 'ws1');
  const ids = [...started.map((r) => r.body.download?.id as string), (ack as { download: Entry }).download.id];
  expect(started.map((r) => r.status)).toEqual([202, 202, 202, 202, 202, 202, 202]);

  // Mid-way through the segmented download, its .part.json exists and has been read.
  await waitFor(() => [...partJsons].some((p) => p.includes('signed.safetensors.part.json') && p.includes('"segments"')), 'the segment map to be sampled');
  for (const id of ids) await api('GET', `/api/downloads/${id}`);
  await api('GET', '/status');

  const final = await Promise.all(ids.map((id) => settled(srv, id, 20_000)));
  const byName = new Map(final.map((e) => [e.filename, e]));
  expect(byName.get('hf-model.safetensors')).toMatchObject({ status: 'completed', sha256: hfFile.sha256 });
  expect(byName.get('civ-model.safetensors')).toMatchObject({ status: 'completed' });
  expect(byName.get('pasted.safetensors')).toMatchObject({ status: 'completed' });
  expect(byName.get('signed.safetensors')).toMatchObject({ status: 'completed', sha256: signed.sha256 });
  expect(byName.get('ws.safetensors')).toMatchObject({ status: 'completed' });
  expect(byName.get('missing.safetensors')).toMatchObject({ status: 'error', error: { code: 'HTTP_404' } });
  expect(byName.get('refused.safetensors')).toMatchObject({ status: 'error', error: { code: 'ECONNREFUSED' } });
  expect(byName.get('loop-a.safetensors')).toMatchObject({ status: 'error', error: { code: 'REDIRECT_LOOP' } });
  expect((await fs.readFile(path.join(srv.modelsDir, 'loras', 'civ-model.safetensors'))).equals(civFile.data)).toBe(true);

  // Every secret went where it belongs, so finding none below means something.
  expect(hf.api.requests.some((r) => r.headers.authorization === `Bearer ${HF_TOKEN}`)).toBe(true);
  expect(civ.api.requests.some((r) => r.url.includes(`token=${CIVITAI_TOKEN}`))).toBe(true);
  expect(civ.api.requests.some((r) => r.url.includes(`token=${PASTED_TOKEN}`))).toBe(true);
  const signedRequests = files.requests.filter((r) => r.path === '/signed.safetensors');
  expect(signedRequests.every((r) => r.url.includes(SIGNATURE) && r.url.includes(QUERY_TOKEN))).toBe(true);
  expect(signedRequests.filter((r) => r.status === 206).length).toBeGreaterThanOrEqual(2); // segmented
  const cdnSignatures = [...hf.cdn.server.requests, ...civ.cdn.server.requests]
    .map((r) => new URL(r.url, 'http://x').searchParams.get('X-Amz-Signature'))
    .filter((s): s is string => !!s);
  expect(cdnSignatures.length).toBeGreaterThan(0);

  // Answers a client without the right token gets.
  for (const headers of [{}, { Authorization: 'Bearer wrong' }] as Array<Record<string, string>>) {
    const res = await srv.api('GET', '/api/downloads', undefined, headers);
    expect(res.status).toBe(401);
    keep('401', JSON.stringify(res.body));
  }
  await api('GET', '/status');
  await api('GET', '/api/downloads');
  await api('GET', '/api/catalog');
  await api('GET', '/api/folders');
  await api('GET', '/');
  await api('POST', '/clear_completed');

  await srv.store.flush();
  running = false;
  await sampler;
  expect(statusVersions.size).toBeGreaterThan(5);
  expect(partJsons.size).toBeGreaterThan(0);
  for (const v of statusVersions) keep('status file', v);
  for (const p of partJsons) keep('.part.json', p);
  for (const m of sock.messages) keep(`WebSocket ${m.type}`, JSON.stringify(m));
  keep('log', srv.log.lines.join('\n'));
  // Every text file left in the temp folder (status file, catalog, any sidecar or aside copy).
  for (const name of await fs.readdir(srv.dir, { recursive: true })) {
    const p = path.join(srv.dir, String(name));
    if (!/\.(json|txt|log)$|status\.json/.test(String(name)) || !(await fs.stat(p)).isFile()) continue;
    keep(`file ${String(name)}`, await fs.readFile(p, 'utf8'));
  }

  const secrets = [API_TOKEN, HF_TOKEN, CIVITAI_TOKEN, PASTED_TOKEN, SIGNATURE, CREDENTIAL, encodeURIComponent(CREDENTIAL), QUERY_TOKEN, QUERY_SIG, FAILING_TOKEN, NETWORK_SIG, LOOP_TOKEN, WS_SIG, ...cdnSignatures];
  const leaks = outputs.flatMap(({ where, text }) => secrets.filter((s) => text.includes(s)).map((s) => `${where}: ${s}`));
  expect(leaks).toEqual([]);
  // The URL keeps what is not a secret.
  expect(byName.get('signed.safetensors')!.url).toBe(`${signed.url}?keep=1`);
});
