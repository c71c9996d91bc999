import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { AckMessage } from '../../server/protocol/wire';
import { civitai } from '../../server/sources/civitai';
import { startFakeCivitai, type FakeCivitai } from '../helpers/fake-hosts';
import { connectWs, settled, startTestServer, type TestServer } from '../helpers/harness';

const TOKEN = 'civitaiSECRET0123456789abcdef';

let cv: FakeCivitai;
let srv: TestServer | undefined;
beforeEach(async () => {
  cv = await startFakeCivitai(TOKEN);
});
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
  await cv.close();
});

const exists = (p: string): Promise<boolean> => fs.access(p).then(() => true, () => false);

test('a download URL is named by Content-Disposition (UTF-8); the token goes in the query to Civitai only and is kept nowhere', async () => {
  const v = cv.version(128713, 'Détail – 細部 v2.safetensors', crypto.randomBytes(800_000), { requiresLogin: true });
  srv = await startTestServer({ CIVITAI_ENDPOINT: cv.url, CIVITAI_TOKEN: TOKEN });
  const sock = await connectWs(srv.url);

  const res = await srv.api('POST', '/api/downloads', { url: `${cv.url}/api/download/models/128713?type=Model&format=SafeTensor`, folder: 'loras' });
  expect(res.status).toBe(202);
  expect(res.body.download).toMatchObject({ filename: 'Détail – 細部 v2.safetensors', dest: 'loras/Détail – 細部 v2.safetensors' });
  expect(res.body.download.url).toBe(`${cv.url}/api/download/models/128713?type=Model&format=SafeTensor`);
  const done = await settled(srv, res.body.download.id);
  expect(done.status).toBe('completed');
  expect((await fs.readFile(path.join(srv.modelsDir, done.dest))).equals(v.data)).toBe(true);

  // Civitai got the token as ?token=, on the name probe and on the transfer; only its metadata API
  // (/api/v1/, asked first for the file's SHA256) got it as Authorization: Bearer, as Civitai documents.
  const asked = cv.api.requests.filter((r) => r.path === '/api/download/models/128713');
  expect(asked.length).toBeGreaterThanOrEqual(2);
  for (const r of asked) expect(new URL(r.url, cv.url).searchParams.get('token')).toBe(TOKEN);
  const all = [...cv.api.requests.filter((r) => !r.path.startsWith('/api/v1/')), ...cv.cdn.server.requests];
  expect(all.every((r) => r.headers.authorization === undefined)).toBe(true);
  expect(cv.api.requests.filter((r) => r.headers.authorization !== undefined).every((r) => r.headers.authorization === `Bearer ${TOKEN}` && r.path.startsWith('/api/v1/'))).toBe(true);
  expect(cv.cdn.server.requests.every((r) => !r.url.includes(TOKEN))).toBe(true);
  expect(cv.cdn.server.requests.some((r) => r.status === 200 || r.status === 206)).toBe(true);

  await srv.store.flush();
  await sock.next((m) => m.type === 'update' && m.download.status === 'completed');
  for (const text of [
    await fs.readFile(srv.statusFile, 'utf8'),
    JSON.stringify((await srv.api('GET', '/status')).body),
    JSON.stringify((await srv.api('GET', `/api/downloads/${done.id}`)).body),
    JSON.stringify(sock.messages),
    srv.log.lines.join('\n'),
  ]) {
    expect(text).not.toContain(TOKEN);
  }
  await sock.close();
});

test('a model page URL with ?modelVersionId= downloads that version; the WebSocket start command waits for the name', async () => {
  const v = cv.version(4242, 'realisticVision_v60.safetensors', crypto.randomBytes(200_000));
  srv = await startTestServer({ CIVITAI_ENDPOINT: cv.url });
  const sock = await connectWs(srv.url);
  sock.ws.send(JSON.stringify({ type: 'start', request_id: 'p1', url: `${cv.url}/models/4201/realistic-vision?modelVersionId=4242`, folder: 'checkpoints' }));
  const ack = (await sock.next((m) => m.type !== 'snapshot' && 'request_id' in m && m.request_id === 'p1')) as AckMessage;
  expect(ack).toMatchObject({ type: 'ack', status: 'started', download: { dest: 'checkpoints/realisticVision_v60.safetensors' } });
  const done = await settled(srv, ack.download!.id);
  expect(done.status).toBe('completed');
  expect((await fs.readFile(path.join(srv.modelsDir, done.dest))).equals(v.data)).toBe(true);
  expect(cv.api.requests.some((r) => r.path.startsWith('/models/'))).toBe(false); // rewritten, never fetched as a page
  await sock.close();
});

test('a hostile Content-Disposition name lands as a plain file inside the folder', async () => {
  cv.version(66, '../../evil.sh', Buffer.from('#!/bin/sh\necho pwned\n'));
  srv = await startTestServer({ CIVITAI_ENDPOINT: cv.url });
  const res = await srv.api('POST', '/api/downloads', { url: `${cv.url}/api/download/models/66`, folder: 'loras' });
  expect(res.status).toBe(202);
  expect(res.body.download).toMatchObject({ dest: 'loras/evil.sh', filename: 'evil.sh' });
  await settled(srv, res.body.download.id);
  expect(await fs.readdir(path.join(srv.modelsDir, 'loras'))).toEqual(['evil.sh']);
  expect(await exists(path.join(srv.dir, 'evil.sh'))).toBe(false);
  expect(await exists(path.join(path.dirname(srv.dir), 'evil.sh'))).toBe(false);
});

test('an explicit filename wins over Content-Disposition and needs no question to the server', async () => {
  cv.version(7, 'server-name.safetensors', crypto.randomBytes(1000));
  srv = await startTestServer({ CIVITAI_ENDPOINT: cv.url });
  const res = await srv.api('POST', '/api/downloads', { url: `${cv.url}/api/download/models/7`, folder: 'loras', filename: 'mine.safetensors' });
  expect(res.body.download.dest).toBe('loras/mine.safetensors');
  await settled(srv, res.body.download.id);
  // The transfer's, no probe (the metadata API is asked first, for the file's SHA256).
  expect(cv.api.requests.filter((r) => !r.path.startsWith('/api/v1/'))).toHaveLength(1);
});

test.each([
  ['a model that needs an account, without CIVITAI_TOKEN', {}, { requiresLogin: true }, 'HTTP_401', 'set CIVITAI_TOKEN'],
  ['a login page instead of the file', {}, { requiresLogin: true, loginPage: true }, 'NOT_A_FILE', 'login page'],
  ['a version that does not exist', {}, undefined, 'HTTP_404', 'no model version with this id'],
])('%s is refused at once with a clear message, and nothing is added', async (_name, env, options, code, message) => {
  if (options) cv.version(9, 'model.safetensors', crypto.randomBytes(1000), options);
  srv = await startTestServer({ CIVITAI_ENDPOINT: cv.url, ...env });
  const res = await srv.api('POST', '/api/downloads', { url: `${cv.url}/api/download/models/9`, folder: 'loras' });
  expect(res).toEqual({ status: 400, body: { error: { code, message: expect.stringContaining(message) } } });
  expect(srv.store.all()).toEqual([]);
  expect(await fs.readdir(srv.modelsDir).catch(() => [])).toEqual([]);
});

test('a login page met by the transfer (name given, no probe) ends in error with no file and no .part', async () => {
  cv.version(9, 'model.safetensors', crypto.randomBytes(1000), { requiresLogin: true, loginPage: true });
  srv = await startTestServer({ CIVITAI_ENDPOINT: cv.url });
  const res = await srv.api('POST', '/api/downloads', { url: `${cv.url}/api/download/models/9`, folder: 'loras', filename: 'model.safetensors' });
  const done = await settled(srv, res.body.download.id);
  expect(done.error).toEqual({ code: 'NOT_A_FILE', message: expect.stringContaining('(Sign in | Civitai)') });
  const abs = path.join(srv.modelsDir, 'loras/model.safetensors');
  expect(await exists(abs)).toBe(false);
  expect(await exists(`${abs}.part`)).toBe(false);
});

test('a model page without a version is refused with what to paste instead', async () => {
  srv = await startTestServer({ CIVITAI_ENDPOINT: cv.url });
  const res = await srv.api('POST', '/api/downloads', { url: `${cv.url}/models/4201/realistic-vision`, folder: 'checkpoints' });
  expect(res).toEqual({ status: 400, body: { error: { code: 'CIVITAI_VERSION_REQUIRED', message: expect.stringContaining('modelVersionId') } } });
  // Only Civitai's API was asked (for the model's latest version: this imitation knows none).
  expect(cv.api.requests.every((r) => r.path.startsWith('/api/v1/'))).toBe(true);
});

describe('the resolver', () => {
  const c = civitai({ endpoint: 'https://civitai.com', token: 'k' });
  test('adds the token to its own host only, keeps a token the user gave, and never sets an Authorization header', () => {
    const s = c.resolve(new URL('https://civitai.com/api/download/models/1?type=Model'));
    expect(s.url.toString()).toBe('https://civitai.com/api/download/models/1?type=Model&token=k');
    expect(s.headersFor).toBeUndefined();
    expect(c.resolve(new URL('https://civitai.com/api/download/models/1?token=mine')).url.searchParams.getAll('token')).toEqual(['mine']);
    expect(c.owns(new URL('https://example.com/api/download/models/1'))).toBe(false);
    expect(civitai({ endpoint: 'https://civitai.com' }).resolve(new URL('https://civitai.com/api/download/models/1')).url.search).toBe('');
  });
  test('rewrites a page URL with its version to the download URL', () => {
    expect(c.resolve(new URL('https://civitai.com/models/10/x?modelVersionId=20')).url.toString()).toBe('https://civitai.com/api/download/models/20?token=k');
  });
});
