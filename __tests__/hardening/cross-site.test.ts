/**
 * Who may drive the server: API_TOKEN on every API route and the WebSocket (never /healthz or the
 * page); no state change from another site's page (foreign Origin, Sec-Fetch-Site: cross-site), no
 * WebSocket from a foreign origin unless ALLOWED_ORIGINS lists it; when bound to loopback, no
 * request addressed to a name that is not loopback (DNS rebinding); a loud warning when bound
 * elsewhere without a token.
 *
 * How these were checked to fail without their protection: with `checkToken`, `checkOrigin` or
 * `checkHost` returning undefined (one at a time) the matching rows fail (200/101 instead of
 * 401/403, or a download created); without the warning in main.ts the child-process test fails.
 */
import WebSocket from 'ws';
import { spawnServer, type ChildServer } from '../helpers/child-server';
import { startTestServer, tempDir, type TestServer } from '../helpers/harness';
import { rawRequest } from './helpers';

const TOKEN = 'the-api-token-0123456789';

/** Opens a WebSocket with these headers: 'open' (after the snapshot arrived) or the refusal's status. */
async function upgrade(base: string, urlPath: string, headers: Record<string, string> = {}): Promise<number | 'open'> {
  const ws = new WebSocket(base.replace(/^http/, 'ws') + urlPath, { headers });
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('message', (data) => {
      const first = JSON.parse(data.toString()) as { type: string };
      ws.close();
      if (first.type === 'snapshot') resolve('open');
      else reject(new Error(`first message was ${first.type}`));
    });
    ws.on('error', (err) => {
      if (!/Unexpected server response/.test(err.message)) reject(err);
    });
  });
}

// Every route behind API_TOKEN: [method, path, body]. Bodies are refused once past the token
// check (an unknown folder, an unknown model), so that no row leaves a download running.
const PROTECTED: Array<[string, string, unknown?]> = [
  ['GET', '/status'],
  ['POST', '/clear_completed'],
  ['GET', '/api/downloads'],
  ['POST', '/api/downloads', { url: 'http://127.0.0.1:9/a.bin', folder: 'not-a-model-folder' }],
  ['GET', '/api/downloads/someid'],
  ['POST', '/api/downloads/someid/pause'],
  ['POST', '/api/downloads/someid/resume'],
  ['POST', '/api/downloads/someid/cancel'],
  ['POST', '/api/downloads/someid/retry'],
  ['DELETE', '/api/downloads/someid'],
  ['GET', '/api/folders'],
  ['GET', '/api/catalog'],
  ['GET', '/get_model_configs'],
  ['POST', '/download', { model_set: 'flux', model_id: 'x' }],
  ['POST', '/api/catalog/mine/models', { name: 'x', url: 'http://127.0.0.1:9/a.bin', path: 'loras/a.bin' }],
  ['PUT', '/api/catalog/mine/models/x', { name: 'x', url: 'http://127.0.0.1:9/a.bin', path: 'loras/a.bin' }],
  ['DELETE', '/api/catalog/mine/models/x'],
  ['POST', '/add_model', { model_set: 'mine', model_id: 'x', name: 'x', url: 'http://127.0.0.1:9/a.bin', path: 'loras/a.bin' }],
  ['POST', '/edit_model', { model_set: 'mine', model_id: 'x', name: 'x', url: 'http://127.0.0.1:9/a.bin', path: 'loras/a.bin' }],
  ['POST', '/delete_model', { model_set: 'mine', model_id: 'x' }],
  // The router matches these spellings too: they may not be a way around the token.
  ['GET', '/STATUS'],
  ['GET', '/status/'],
  ['GET', '/API/downloads'],
  ['GET', '/api/downloads/'],
  ['POST', '/Clear_Completed'],
];

describe('with API_TOKEN', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ API_TOKEN: TOKEN });
  });
  afterAll(() => srv.stop());

  const call = (method: string, urlPath: string, body: unknown, headers: Record<string, string>) =>
    rawRequest(srv.url, { method, path: urlPath, headers: { 'Content-Type': 'application/json', ...headers }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

  const refusals: Array<[string, Record<string, string>, string]> = [
    ['no token', {}, ''],
    ['a wrong token', { Authorization: 'Bearer not-the-token' }, ''],
    ['the token with a character more', { Authorization: `Bearer ${TOKEN}x` }, ''],
    ['a prefix of the token', { Authorization: `Bearer ${TOKEN.slice(0, -1)}` }, ''],
    ['the token as Basic credentials', { Authorization: `Basic ${Buffer.from(`user:${TOKEN}`).toString('base64')}` }, ''],
    ['the token in the query (WebSocket only)', {}, `?token=${TOKEN}`],
  ];

  // Rest parameters: a row without a body must not leave a third parameter jest would take for `done`.
  test.each(PROTECTED)('%s %s needs the token', async (...[method, urlPath, body]) => {
    const seq = srv.store.seq;
    for (const [, headers, query] of refusals) {
      const res = await call(method, urlPath + query, body, headers);
      expect({ refusal: headers, status: res.status, body: res.json }).toEqual({ refusal: headers, status: 401, body: { error: { code: 'UNAUTHORIZED', message: expect.stringContaining('Bearer') } } });
    }
    expect(srv.store.seq).toBe(seq);
    const allowed = await call(method, urlPath, body, { Authorization: `Bearer ${TOKEN}` });
    expect(allowed.status).not.toBe(401);
  });

  test('/healthz and the page are open', async () => {
    expect((await rawRequest(srv.url, { path: '/healthz' })).json).toEqual({ ok: true });
    expect((await rawRequest(srv.url, { path: '/' })).status).toBe(200);
  });

  test('the WebSocket needs the token, in the query or the header', async () => {
    expect(await upgrade(srv.url, '/ws')).toBe(401);
    expect(await upgrade(srv.url, '/ws?token=wrong')).toBe(401);
    expect(await upgrade(srv.url, `/ws?token=${TOKEN}x`)).toBe(401);
    expect(await upgrade(srv.url, `/ws?token=${TOKEN}`)).toBe('open');
    expect(await upgrade(srv.url, '/ws', { Authorization: `Bearer ${TOKEN}` })).toBe('open');
  });
});

describe('bound to loopback, no token', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer();
  });
  afterAll(() => srv.stop());
  const own = (): string => srv.url;

  const STATE_CHANGING: Array<[string, string, unknown?]> = [
    ['POST', '/api/downloads', { url: 'http://127.0.0.1:9/a.bin', folder: 'loras' }],
    ['POST', '/clear_completed'],
    ['POST', '/api/downloads/someid/cancel'],
    ['DELETE', '/api/downloads/someid'],
    ['POST', '/download', { model_set: 'flux', model_id: 'flux1-schnell-fp8' }],
    ['POST', '/api/catalog/mine/models', { name: 'x', url: 'http://127.0.0.1:9/a.bin', path: 'loras/a.bin' }],
    ['PUT', '/api/catalog/mine/models/x', { name: 'x', url: 'http://127.0.0.1:9/a.bin', path: 'loras/a.bin' }],
    ['DELETE', '/api/catalog/mine/models/x'],
  ];
  const crossSite: Array<[string, Record<string, string>]> = [
    ['a foreign Origin', { Origin: 'https://evil.example' }],
    ['the opaque origin null', { Origin: 'null' }],
    ['the same host on another port', { Origin: 'http://127.0.0.1:1' }],
    ['another scheme', { Origin: 'ftp://127.0.0.1' }],
    ['Sec-Fetch-Site: cross-site (no Origin)', { 'Sec-Fetch-Site': 'cross-site' }],
  ];

  test.each(STATE_CHANGING)('%s %s is refused from another site', async (...[method, urlPath, body]) => {
    const seq = srv.store.seq;
    for (const [, headers] of crossSite) {
      const res = await rawRequest(srv.url, { method, path: urlPath, headers: { 'Content-Type': 'application/json', ...headers }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      expect({ headers, status: res.status, body: res.json }).toEqual({ headers, status: 403, body: { error: { code: 'FORBIDDEN_ORIGIN', message: expect.any(String) } } });
    }
    expect(srv.store.seq).toBe(seq);
    expect(srv.store.all()).toEqual([]);
  });

  test('the page itself (same origin, or no Origin as from curl) may change things', async () => {
    const host = new URL(own()).host;
    expect((await rawRequest(own(), { method: 'POST', path: '/clear_completed', headers: { Origin: own() } })).status).toBe(200);
    expect((await rawRequest(own(), { method: 'POST', path: '/clear_completed', headers: { 'Sec-Fetch-Site': 'same-origin', Origin: `http://${host}` } })).status).toBe(200);
    expect((await rawRequest(own(), { method: 'POST', path: '/clear_completed' })).status).toBe(200);
  });

  test('a WebSocket from a foreign origin is refused; from the page, or without Origin, it opens', async () => {
    for (const origin of ['https://evil.example', 'null', 'http://127.0.0.1:1', `http://localhost:${srv.port}`]) {
      expect([origin, await upgrade(srv.url, '/ws', { Origin: origin })]).toEqual([origin, 403]);
    }
    expect(await upgrade(srv.url, '/ws', { Origin: own() })).toBe('open');
    expect(await upgrade(srv.url, '/ws')).toBe('open');
    expect(await upgrade(srv.url, '/nows')).toBe(404);
  });

  test.each([
    ['a foreign name', 'evil.example'],
    ['a foreign name with our port', 'evil.example:PORT'],
    ['a name ending in a loopback name', 'localhost.evil.example:PORT'],
    ['a name starting with a loopback address', '127.0.0.1.nip.io:PORT'],
    ['an empty Host', ''],
  ])('a request addressed to %s is refused (DNS rebinding), reads and WebSocket too', async (_name, host) => {
    const Host = host.replace('PORT', String(srv.port));
    for (const [method, urlPath] of [['GET', '/status'], ['GET', '/api/downloads'], ['POST', '/clear_completed'], ['GET', '/']]) {
      const res = await rawRequest(srv.url, { method: method!, path: urlPath!, headers: { Host } });
      expect({ urlPath, status: res.status, code: res.json?.error?.code }).toEqual({ urlPath, status: 403, code: 'FORBIDDEN_HOST' });
    }
    // ws would put its own Host on an empty one: a handshake by hand.
    const handshake = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    expect((await rawRequest(srv.url, { path: '/ws', headers: { ...handshake, Host } })).status).toBe(403);
    expect((await rawRequest(srv.url, { path: '/ws', headers: handshake })).status).toBe(101); // the control
  });

  test('loopback names are accepted as Host', async () => {
    for (const name of ['localhost', '127.0.0.1', '127.0.0.2', '[::1]', 'LOCALHOST', 'app.localhost']) {
      const res = await rawRequest(srv.url, { path: '/healthz', headers: { Host: `${name}:${srv.port}` } });
      expect([name, res.status]).toEqual([name, 200]);
    }
  });
});

test('ALLOWED_ORIGINS lets a listed origin in, and no other', async () => {
  const srv = await startTestServer({ ALLOWED_ORIGINS: 'https://ui.example, http://10.0.0.5:3000' });
  try {
    expect(await upgrade(srv.url, '/ws', { Origin: 'https://ui.example' })).toBe('open');
    expect(await upgrade(srv.url, '/ws', { Origin: 'http://10.0.0.5:3000' })).toBe('open');
    expect(await upgrade(srv.url, '/ws', { Origin: 'https://ui.example.evil' })).toBe(403);
    expect(await upgrade(srv.url, '/ws', { Origin: 'http://ui.example' })).toBe(403);
    const post = (origin: string) => rawRequest(srv.url, { method: 'POST', path: '/clear_completed', headers: { Origin: origin } });
    expect((await post('https://ui.example')).status).toBe(200);
    expect((await post('https://evil.example')).status).toBe(403);
  } finally {
    await srv.stop();
  }
});

describe('bound to every interface (the built server as a child process)', () => {
  const children: ChildServer[] = [];
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('md-host-'));
  });
  afterEach(async () => {
    for (const c of children.splice(0)) await c.kill('SIGTERM');
    await cleanup();
  });
  const spawn = async (env: Record<string, string>): Promise<ChildServer> => {
    const c = await spawnServer({ HOST: '0.0.0.0', MODELS_DIR: `${dir}/models`, STATUS_FILE: `${dir}/status.json`, CATALOG_FILE: `${dir}/catalog.json`, ...env });
    children.push(c);
    return c;
  };

  test('without API_TOKEN it warns loudly that anyone who can reach it can write files', async () => {
    const c = await spawn({});
    expect(c.output()).toMatch(/warning: listening on 0\.0\.0\.0 without API_TOKEN: anyone who can reach this port can make this server write files/);
    // No Host check off loopback (a pod is reached by many names); the warning is the protection.
    expect((await rawRequest(c.url, { path: '/api/downloads', headers: { Host: 'pod.example:8866' } })).status).toBe(200);
  });

  test('with API_TOKEN it does not warn, and every name needs the token', async () => {
    const c = await spawn({ API_TOKEN: TOKEN });
    expect(c.output()).not.toMatch(/without API_TOKEN/);
    expect((await rawRequest(c.url, { path: '/api/downloads', headers: { Host: 'pod.example:8866' } })).status).toBe(401);
    expect((await rawRequest(c.url, { path: '/api/downloads', headers: { Host: 'pod.example:8866', Authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });
});
