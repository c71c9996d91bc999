import fs from 'node:fs/promises';
import { once } from 'node:events';
import http from 'node:http';
import path from 'node:path';
import WebSocket from 'ws';
import type { Entry } from '../../server/protocol/wire';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, waitFor, type TestServer } from '../helpers/harness';

let files: FileServer;
let srv: TestServer;
beforeEach(async () => {
  files = await startFileServer();
});
afterEach(async () => {
  await srv?.stop();
  await files.close();
});

test('GET /status has the seed shape: entries keyed by dest with _mb and eta_minutes fields', async () => {
  srv = await startTestServer();
  const f = files.addFile('/flux1-dev.safetensors', { size: 3 * 1024 * 1024 });
  const e = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'diffusion_models' })).body.download as Entry;
  await waitFor(() => srv.store.getById(e.id)?.status === 'completed', 'completion');
  const { status, body } = await srv.api('GET', '/status');
  expect(status).toBe(200);
  expect(Object.keys(body)).toEqual(['diffusion_models/flux1-dev.safetensors']);
  const v = body['diffusion_models/flux1-dev.safetensors'];
  expect(v).toEqual({
    id: e.id, dest: 'diffusion_models/flux1-dev.safetensors', folder: 'diffusion_models', filename: 'flux1-dev.safetensors',
    url: f.url, status: 'completed', progress: 100, downloaded: f.size, file_size: f.size, speed: 0, eta: null,
    start_time: expect.any(Number), timestamp: expect.any(Number), completion_time: expect.any(Number), attempts: 1,
    file_size_mb: 3, downloaded_mb: 3, speed_mb: 0, eta_minutes: null,
  });
  expect(JSON.stringify(v)).not.toContain(srv.modelsDir); // never an absolute server path

  expect((await srv.api('GET', '/api/downloads')).body).toEqual({ downloads: [expect.objectContaining({ id: e.id })] });
  expect((await srv.api('GET', `/api/downloads/${e.id}`)).body.download.id).toBe(e.id);
  expect(await srv.api('GET', '/api/downloads/nope')).toEqual({ status: 404, body: { error: { code: 'NOT_FOUND', message: expect.any(String) } } });
  expect((await srv.api('POST', `/api/downloads/${e.id}/pause`)).status).toBe(409);
  expect(await srv.api('POST', '/clear_completed')).toEqual({ status: 200, body: { status: 'cleared', removed_count: 1 } });
  expect((await srv.api('GET', '/status')).body).toEqual({});
  // Clearing forgets the entry, never the finished file.
  expect((await fs.stat(path.join(srv.modelsDir, 'diffusion_models/flux1-dev.safetensors'))).size).toBe(f.size);
});

test('DELETE removes a finished entry and refuses an active one', async () => {
  srv = await startTestServer();
  const f = files.addFile('/slow.bin', { size: 2_000_000, throttle: 500_000 });
  const e = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download as Entry;
  const refused = await srv.api('DELETE', `/api/downloads/${e.id}`);
  expect(refused.status).toBe(409);
  expect(refused.body.error.code).toBe('ACTIVE');
  await srv.api('POST', `/api/downloads/${e.id}/cancel`);
  await waitFor(() => !srv.downloader.isLive(e.dest), 'the transfer to end');
  expect((await srv.api('DELETE', `/api/downloads/${e.id}`)).status).toBe(200);
  expect((await srv.api('GET', `/api/downloads/${e.id}`)).status).toBe(404);
});

test.each([
  ['a non-http URL', { url: 'ftp://example.com/a.bin', folder: 'loras' }, 400, 'UNSUPPORTED_URL'],
  ['a URL with credentials', { url: 'http://u:p@example.com/a.bin', folder: 'loras' }, 400, 'URL_CREDENTIALS'],
  ['a metadata address', { url: 'http://169.254.169.254/latest/meta-data', folder: 'loras', filename: 'x' }, 400, 'FORBIDDEN_ADDRESS'],
  ['.. in the folder', { url: 'http://example.com/a.bin', folder: 'loras/../../etc' }, 400, 'INVALID_PATH'],
  ['an absolute folder', { url: 'http://example.com/a.bin', folder: '/etc' }, 400, 'INVALID_PATH'],
  ['a separator in the filename', { url: 'http://example.com/a.bin', folder: 'loras', filename: 'a/b' }, 400, 'INVALID_PATH'],
  ['an unknown top folder', { url: 'http://example.com/a.bin', folder: 'etc' }, 400, 'UNKNOWN_FOLDER'],
  ['a bad sha256', { url: 'http://example.com/a.bin', folder: 'loras', sha256: 'abc' }, 400, 'INVALID_SHA256'],
  ['no filename to be had', { url: 'http://example.com/', folder: 'loras' }, 400, 'FILENAME_REQUIRED'],
  ['a missing url', { folder: 'loras' }, 400, 'INVALID_URL'],
])('POST /api/downloads refuses %s and changes nothing', async (_name, body, status, code) => {
  srv = await startTestServer();
  await srv.store.flush();
  const before = await fs.readFile(srv.statusFile, 'utf8').catch(() => '');
  const res = await srv.api('POST', '/api/downloads', body);
  expect(res).toEqual({ status, body: { error: { code, message: expect.any(String) } } });
  expect(srv.store.all()).toHaveLength(0);
  await srv.store.flush();
  expect(await fs.readFile(srv.statusFile, 'utf8').catch(() => '')).toBe(before);
  expect(await fs.readdir(srv.modelsDir).catch(() => [])).toEqual([]);
});

test('bodies over 64 KiB, non-JSON and unknown routes get clear errors', async () => {
  srv = await startTestServer();
  const huge = await srv.api('POST', '/api/downloads', JSON.stringify({ url: 'http://e.com/a', folder: 'loras', pad: 'x'.repeat(70_000) }));
  expect(huge).toEqual({ status: 413, body: { error: { code: 'BODY_TOO_LARGE', message: expect.any(String) } } });
  expect((await srv.api('POST', '/api/downloads', '{nope')).body.error.code).toBe('INVALID_JSON');
  expect((await srv.api('POST', '/api/downloads', '[1,2]')).body.error.code).toBe('INVALID_BODY');
  expect(await srv.api('GET', '/api/nothing')).toEqual({ status: 404, body: { error: { code: 'NOT_FOUND', message: expect.any(String) } } });
  expect((await srv.api('GET', '/healthz')).body).toEqual({ ok: true });
});

test('cross-site requests and foreign Host headers are refused', async () => {
  srv = await startTestServer();
  const body = { url: 'http://example.com/a.bin', folder: 'loras' };
  const foreign = await srv.api('POST', '/api/downloads', body, { Origin: 'https://evil.example' });
  expect(foreign).toEqual({ status: 403, body: { error: { code: 'FORBIDDEN_ORIGIN', message: expect.any(String) } } });
  const fetchSite = await srv.api('POST', '/clear_completed', undefined, { 'Sec-Fetch-Site': 'cross-site' });
  expect(fetchSite.status).toBe(403);
  const own = await srv.api('POST', '/clear_completed', undefined, { Origin: srv.url });
  expect(own.status).toBe(200);
  // DNS rebinding: the right address, a foreign name.
  const res = await new Promise<number>((resolve, reject) => {
    const req = http.request(srv.url + '/status', { headers: { Host: 'evil.example:8866' } }, (r) => {
      r.resume();
      resolve(r.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  expect(res).toBe(403);
  const ws = new WebSocket(srv.url.replace('http', 'ws') + '/ws', { headers: { Origin: 'https://evil.example' } });
  const [, response] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
  expect(response.statusCode).toBe(403);
  expect(srv.store.all()).toHaveLength(0);
});

test('with API_TOKEN every API call and the WebSocket need it; /healthz and the page do not', async () => {
  srv = await startTestServer({ API_TOKEN: 's3cret-token' });
  expect((await srv.api('GET', '/status')).status).toBe(401);
  expect((await srv.api('GET', '/api/downloads', undefined, { Authorization: 'Bearer wrong' })).status).toBe(401);
  expect((await srv.api('GET', '/api/downloads', undefined, { Authorization: 'Bearer s3cret-token' })).status).toBe(200);
  expect((await srv.api('GET', '/healthz')).status).toBe(200);
  expect((await srv.api('GET', '/')).status).toBe(200);
  const bare = new WebSocket(srv.url.replace('http', 'ws') + '/ws');
  const [, response] = (await once(bare, 'unexpected-response')) as [unknown, { statusCode: number }];
  expect(response.statusCode).toBe(401);
  const ok = new WebSocket(srv.url.replace('http', 'ws') + '/ws?token=s3cret-token');
  const [first] = (await once(ok, 'message')) as [Buffer];
  expect(JSON.parse(first.toString()).type).toBe('snapshot');
  ok.close();
  await srv.store.flush();
  expect(await fs.readFile(srv.statusFile, 'utf8').catch(() => '')).not.toContain('s3cret');
  expect(srv.log.lines.join('\n')).not.toContain('s3cret');
});
