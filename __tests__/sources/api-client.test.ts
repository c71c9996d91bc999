import http from 'node:http';
import { failure } from '../helpers/fake-hub';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { guardedLookup } from '../../server/net/url-policy';
import { createApiClient, guardedAgents, nextLink } from '../../server/sources/meta/api-client';
import { startFileServer, type FileServer } from '../helpers/file-server';

const TOKEN = 'secret-token-0123456789';

let api: FileServer;
let other: FileServer;
beforeEach(async () => {
  api = await startFileServer();
  other = await startFileServer();
});
afterEach(async () => {
  await api.close();
  await other.close();
});

const sendJson = (res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void => {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

/** A client that gives the token to `api`'s host only, as the sources do. */
const client = (extra: Partial<Parameters<typeof createApiClient>[0]> = {}) =>
  createApiClient({
    label: 'Test Hub',
    headersFor: (url): Record<string, string> => (url.host === new URL(api.url).host ? { Authorization: `Bearer ${TOKEN}` } : {}),
    ...extra,
  });


test('reads a JSON answer, with the token on its own host', async () => {
  api.route('/api/thing', (_req, res) => sendJson(res, 200, { ok: true, n: 3 }));
  const res = await client().getJson<{ ok: boolean }>(new URL(`${api.url}/api/thing`));
  expect(res.data).toEqual({ ok: true, n: 3 });
  expect(res.status).toBe(200);
  expect(res.url.toString()).toBe(`${api.url}/api/thing`);
  expect(api.requests[0]!.headers.authorization).toBe(`Bearer ${TOKEN}`);
  expect(api.requests[0]!.headers.accept).toBe('application/json');
});

test('a same-host redirect keeps the token; a redirect to another host drops it', async () => {
  api.route('/old', (_req, res) => {
    res.writeHead(307, { Location: '/new' });
    res.end();
  });
  api.route('/new', (_req, res) => {
    res.writeHead(302, { Location: `${other.url}/elsewhere` });
    res.end();
  });
  other.route('/elsewhere', (_req, res) => sendJson(res, 200, { where: 'other' }));
  const res = await client().getJson(new URL(`${api.url}/old`));
  expect(res.data).toEqual({ where: 'other' });
  expect(res.url.toString()).toBe(`${other.url}/elsewhere`);
  expect(api.requests.map((r) => [r.path, r.headers.authorization])).toEqual([
    ['/old', `Bearer ${TOKEN}`],
    ['/new', `Bearer ${TOKEN}`],
  ]);
  expect(other.requests).toHaveLength(1);
  expect(other.requests[0]!.headers.authorization).toBeUndefined();
  expect(other.requests[0]!.url).not.toContain(TOKEN);
});

test('a redirect back to the token host after another host gets the token again, and only there', async () => {
  api.route('/start', (_req, res) => {
    res.writeHead(302, { Location: `${other.url}/bounce` });
    res.end();
  });
  other.route('/bounce', (_req, res) => {
    res.writeHead(302, { Location: `${api.url}/end` });
    res.end();
  });
  api.route('/end', (_req, res) => sendJson(res, 200, [1]));
  await client().getJson(new URL(`${api.url}/start`));
  expect(other.requests[0]!.headers.authorization).toBeUndefined();
  expect(api.requests.every((r) => r.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);
});

test.each([
  ['http://169.254.169.254/latest/meta-data/', 'FORBIDDEN_ADDRESS'],
  ['http://[::ffff:169.254.169.254]/latest/meta-data/', 'FORBIDDEN_ADDRESS'],
  ['http://[fd00:ec2::254]/latest/', 'FORBIDDEN_ADDRESS'],
  ['file:///etc/passwd', 'BAD_REDIRECT'],
  ['ftp://example.com/x.json', 'BAD_REDIRECT'],
])('a redirect to %s is refused before any connection (%s)', async (location, code) => {
  api.route('/meta', (_req, res) => {
    res.writeHead(302, { Location: location });
    res.end();
  });
  const err = await failure(client().getJson(new URL(`${api.url}/meta`)));
  expect(err.code).toBe(code);
  expect(err.message).not.toContain(TOKEN);
});

test('a first URL at a forbidden address or with credentials is refused', async () => {
  expect((await failure(client().getJson(new URL('http://169.254.169.254/api')))).code).toBe('FORBIDDEN_ADDRESS');
  expect((await failure(client().getJson(new URL(`http://user:pw@${new URL(api.url).host}/api`)))).code).toBe('URL_CREDENTIALS');
  expect(api.requests).toHaveLength(0);
});

test('the default agents resolve names through the address guard; `agent` replaces them (the proxy hook)', async () => {
  expect((guardedAgents.http as unknown as { options: { lookup?: unknown } }).options.lookup).toBe(guardedLookup);
  expect((guardedAgents.https as unknown as { options: { lookup?: unknown } }).options.lookup).toBe(guardedLookup);

  api.route('/api/x', (_req, res) => sendJson(res, 200, {}));
  let connections = 0;
  class CountingAgent extends http.Agent {
    override createConnection(...args: Parameters<http.Agent['createConnection']>): ReturnType<http.Agent['createConnection']> {
      connections++;
      return super.createConnection(...args);
    }
  }
  const agent = new CountingAgent({ keepAlive: false });
  await client({ agent: { http: agent } }).getJson(new URL(`${api.url}/api/x`));
  expect(connections).toBe(1);
  agent.destroy();
});

test('HTTP_PROXY in the environment is not used: proxies come only through `agent`', async () => {
  const proxy = await startFileServer();
  const saved = { HTTP_PROXY: process.env.HTTP_PROXY, http_proxy: process.env.http_proxy, NO_PROXY: process.env.NO_PROXY };
  process.env.HTTP_PROXY = proxy.url;
  process.env.http_proxy = proxy.url;
  delete process.env.NO_PROXY;
  try {
    api.route('/api/x', (_req, res) => sendJson(res, 200, { direct: true }));
    expect((await client().getJson(new URL(`${api.url}/api/x`))).data).toEqual({ direct: true });
    expect(proxy.requests).toHaveLength(0);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await proxy.close();
  }
});

test('an HTTP error becomes an AppError with the source words, or "<label> answered <status>: <what it said>"', async () => {
  api.route('/missing', (_req, res) => sendJson(res, 404, { error: 'Repository not found' }));
  api.route('/busy', (_req, res) => sendJson(res, 503, { error: 'Service Unavailable' }, { 'Retry-After': '7' }));
  api.route('/odd', (_req, res) => {
    res.writeHead(418, { 'Content-Type': 'text/html' });
    res.end('<html><head><title>I am a teapot</title></head><body>\u001b[31m</body></html>');
  });
  const plain = await failure(client().getJson(new URL(`${api.url}/missing`)));
  expect(plain).toMatchObject({ code: 'HTTP_404', status: 400, retryable: false, message: 'Test Hub answered 404: Repository not found' });

  const busy = await failure(client().getJson(new URL(`${api.url}/busy`)));
  expect(busy).toMatchObject({ code: 'HTTP_503', status: 502, retryable: true, retryAfter: 7 });

  const odd = await failure(client().getJson(new URL(`${api.url}/odd`)));
  expect(odd.message).toBe('Test Hub answered 418: a web page: I am a teapot');

  const worded = await failure(
    client({ describeError: (i) => (i.status === 404 ? { code: 'NO_REPO', message: `no such repo (${i.said})` } : undefined) }).getJson(new URL(`${api.url}/missing`)),
  );
  expect(worded).toMatchObject({ code: 'NO_REPO', message: 'no such repo (Repository not found)' });
  // A request's own words come before the client's.
  const perRequest = await failure(client({ describeError: () => 'client words' }).getJson(new URL(`${api.url}/missing`), { describeError: () => 'request words' }));
  expect(perRequest.message).toBe('request words');
});

test('only JSON is read: a web page, or a body that does not parse, is refused with what it was', async () => {
  api.route('/page', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!DOCTYPE html><html><head><title>Sign in</title></head></html>');
  });
  api.route('/broken', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"files": [');
  });
  api.route('/untyped', (_req, res) => {
    res.writeHead(200);
    res.end('{"fine": 1}');
  });
  const page = await failure(client().getJson(new URL(`${api.url}/page`)));
  expect(page).toMatchObject({ code: 'NOT_JSON' });
  expect(page.message).toContain('a web page: Sign in');
  expect((await failure(client().getJson(new URL(`${api.url}/broken`)))).code).toBe('NOT_JSON');
  expect((await client().getJson(new URL(`${api.url}/untyped`))).data).toEqual({ fine: 1 });
});

test('an answer larger than the cap is not read: announced, chunked, or a small gzip that inflates past it', async () => {
  const big = JSON.stringify({ pad: 'x'.repeat(4096) });
  api.route('/announced', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(big) });
    res.end(big);
  });
  api.route('/chunked', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    for (let i = 0; i < 8; i++) res.write(big.slice(i * 600, (i + 1) * 600));
    res.end(big.slice(4800));
  });
  const bomb = zlib.gzipSync(Buffer.from(JSON.stringify({ pad: '0'.repeat(1 << 20) })));
  api.route('/bomb', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip', 'Content-Length': bomb.length });
    res.end(bomb);
  });
  const small = client({ maxBytes: 1024 });
  for (const p of ['/announced', '/chunked', '/bomb']) {
    const err = await failure(small.getJson(new URL(`${api.url}${p}`)));
    expect(err.code).toBe('RESPONSE_TOO_LARGE');
    expect(err.message).toContain('more than 1024 bytes');
  }
  expect(bomb.length).toBeLessThan(1024 * 4);
  // Under the cap, a gzip answer is read as JSON.
  const okBody = zlib.gzipSync(Buffer.from('{"a":1}'));
  api.route('/gz', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' });
    res.end(okBody);
  });
  expect((await small.getJson(new URL(`${api.url}/gz`))).data).toEqual({ a: 1 });
});

test('a host that does not answer fails after connectTimeoutMs; one that answers too slowly after timeoutMs', async () => {
  api.route('/silent', () => {
    // never answers; close() ends it
  });
  const silent = await failure(client({ connectTimeoutMs: 200, timeoutMs: 20_000 }).getJson(new URL(`${api.url}/silent`)));
  expect(silent).toMatchObject({ code: 'TIMEOUT', retryable: true });
  expect(silent.message).toBe(`Test Hub (${new URL(api.url).host}) did not answer within 0.2 s`);

  api.route('/drip', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('[');
    const timer = setInterval(() => res.write('0,'), 50);
    res.on('close', () => clearInterval(timer));
  });
  const slow = await failure(client({ connectTimeoutMs: 5_000, timeoutMs: 400 }).getJson(new URL(`${api.url}/drip`)));
  expect(slow).toMatchObject({ code: 'TIMEOUT', retryable: true });
  expect(slow.message).toBe(`Test Hub (${new URL(api.url).host}) did not finish answering within 0.4 s`);
});

test("the caller's signal aborts the request", async () => {
  api.route('/silent', () => {});
  const ac = new AbortController();
  const p = client().getJson(new URL(`${api.url}/silent`), { signal: ac.signal });
  await api.waitForRequest((r) => r.path === '/silent');
  ac.abort();
  expect((await failure(p)).code).toBe('ABORTED');
});

test('a closed port is ECONNREFUSED, said in words', async () => {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  const err = await failure(client().getJson(new URL(`http://127.0.0.1:${port}/api`)));
  expect(err).toMatchObject({ code: 'ECONNREFUSED', retryable: true, status: 502 });
  expect(err.message).toBe(`Could not reach Test Hub: 127.0.0.1:${port} refused the connection`);
});

test('redirect loops and chains longer than maxRedirects are refused', async () => {
  api.route('/a', (_req, res) => {
    res.writeHead(302, { Location: '/b' });
    res.end();
  });
  api.route('/b', (_req, res) => {
    res.writeHead(302, { Location: '/a' });
    res.end();
  });
  expect((await failure(client().getJson(new URL(`${api.url}/a`)))).code).toBe('REDIRECT_LOOP');
  for (let i = 0; i < 5; i++) {
    api.route(`/hop${i}`, (_req, res) => {
      res.writeHead(302, { Location: `/hop${i + 1}` });
      res.end();
    });
  }
  api.route('/hop5', (_req, res) => sendJson(res, 200, {}));
  expect((await failure(client({ maxRedirects: 3 }).getJson(new URL(`${api.url}/hop0`)))).code).toBe('TOO_MANY_REDIRECTS');
  expect((await client({ maxRedirects: 5 }).getJson(new URL(`${api.url}/hop0`))).data).toEqual({});
});

test('nextLink reads rel="next" from a Link header, relative or absolute', () => {
  const base = new URL('https://hub.example/api/models/a/b/tree/main?recursive=true');
  expect(nextLink('<https://hub.example/api/models/a/b/tree/main?cursor=xyz>; rel="next"', base)?.toString()).toBe('https://hub.example/api/models/a/b/tree/main?cursor=xyz');
  expect(nextLink('</p2?c=1>; rel=next', base)?.toString()).toBe('https://hub.example/p2?c=1');
  expect(nextLink('<https://x/prev>; rel="prev", <https://x/n>; title="n"; rel="last next"', base)?.toString()).toBe('https://x/n');
  expect(nextLink('<https://x/prev>; rel="prev"', base)).toBeUndefined();
  expect(nextLink(undefined, base)).toBeUndefined();
});

test('a kept-alive connection the host closed while idle is not an error: the GET is asked again on a new one', async () => {
  // The second request on a connection finds it closed without an answer, as when the host's
  // keep-alive timeout ends the moment the client reuses it.
  const served = new WeakMap<object, number>();
  api.route('/api/again', (req, res) => {
    const n = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, n);
    if (n > 1) return req.socket.destroy();
    sendJson(res, 200, { n });
  });
  const c = client();
  expect((await c.getJson<{ n: number }>(new URL(`${api.url}/api/again`))).data).toEqual({ n: 1 });
  expect((await c.getJson<{ n: number }>(new URL(`${api.url}/api/again`))).data).toEqual({ n: 1 });
});
