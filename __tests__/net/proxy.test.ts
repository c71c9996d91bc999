import crypto from 'node:crypto';
import https from 'node:https';
import type net from 'node:net';
import util from 'node:util';
import { ConfigError, loadConfig, loadProxyConfig } from '../../server/config';
import { openStream } from '../../server/net/http-client';
import { bypasses, proxyFor } from '../../server/net/proxy';
import { createAgent, request, type Agent } from '../../server/net/raw-http';
import { rawServer, type RawServer } from '../helpers/raw-server';
import { startTinyproxy, type Tinyproxy } from '../helpers/tinyproxy';
import { localhostCert } from '../helpers/tls-cert';

// Downloads through a real proxy (Debian's tinyproxy, started here): CONNECT tunnels for https,
// absolute-form requests for http, NO_PROXY, a proxy that refuses, and the proxy's credentials in
// no message and no printed object.

const USER = 'alice';
const PASSWORD = 's3cr3t-Pa55';
/** Every way the password could show. */
const SECRETS = [PASSWORD, Buffer.from(`${USER}:${PASSWORD}`).toString('base64'), encodeURIComponent(PASSWORD)];

const body = crypto.randomBytes(300_000);
let origin: RawServer;
let secure: https.Server;
let secureUrl: URL;
let proxy: Tinyproxy;
/** A proxy that CONNECTs to no port of ours. */
let strict: Tinyproxy;
const agents: Agent[] = [];

beforeAll(async () => {
  origin = await rawServer((socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body);
  });
  const { key, cert } = localhostCert();
  secure = https.createServer({ key, cert }, (_req, res) => {
    res.writeHead(200, { 'Content-Length': body.length });
    res.end(body);
  });
  await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
  secureUrl = new URL(`https://localhost:${(secure.address() as net.AddressInfo).port}/model.bin`);
  proxy = await startTinyproxy({ connectPorts: [Number(secureUrl.port)], auth: { user: USER, password: PASSWORD } });
  strict = await startTinyproxy({ connectPorts: [1], auth: { user: USER, password: PASSWORD } });
});
afterAll(async () => {
  origin?.close();
  secure?.closeAllConnections();
  await new Promise((r) => (secure ? secure.close(r) : r(undefined)));
  await proxy?.stop();
  await strict?.stop();
});
afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
});

function agentFor(env: Record<string, string>): Agent {
  const a = createAgent({ proxy: loadConfig(env, '/').proxy });
  agents.push(a);
  return a;
}

async function readAll(res: { body: AsyncIterable<unknown> }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function expectNoSecret(text: string): void {
  for (const s of SECRETS) expect(text).not.toContain(s);
}

test('https through the proxy: a CONNECT tunnel, TLS to the host inside it', async () => {
  const agent = agentFor({ HTTPS_PROXY: proxy.url });
  const res = await request(secureUrl, {}, new AbortController().signal, { agent, tls: { ca: localhostCert().cert } });
  expect(res.status).toBe(200);
  expect((await readAll(res)).equals(body)).toBe(true);
  expect(proxy.log()).toContain(`CONNECT localhost:${secureUrl.port} HTTP/1.1`);
  // pumped, the same
  const again = await request(secureUrl, {}, new AbortController().signal, { agent, tls: { ca: localhostCert().cert } });
  expect((await readAll(again)).equals(body)).toBe(true);
});

test('http through the proxy: the request in absolute form, the proxy credentials to the proxy only', async () => {
  const agent = agentFor({ http_proxy: proxy.url });
  const before = origin.requests.length;
  const res = await openStream(origin.url, { headers: {}, signal: new AbortController().signal, agent });
  expect(res.status).toBe(200);
  expect((await readAll(res)).equals(body)).toBe(true);
  expect(proxy.log()).toContain(`GET ${origin.url.href} HTTP/1.1`);
  const seen = origin.requests.slice(before).join('\n');
  expect(seen).toMatch(/^GET \/file\.bin HTTP\/1\.[01]/); // the proxy asked in origin form
  expectNoSecret(seen);
  expect(seen.toLowerCase()).not.toContain('proxy-authorization');
});

test('NO_PROXY: a host it names is reached directly', async () => {
  const agent = agentFor({ HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, NO_PROXY: 'example.com, 127.0.0.1' });
  const logged = proxy.log().length;
  const connections = origin.connections();
  const res = await openStream(origin.url, { headers: {}, signal: new AbortController().signal, agent });
  expect((await readAll(res)).equals(body)).toBe(true);
  expect(origin.connections()).toBe(connections + 1);
  expect(proxy.log().slice(logged)).not.toContain(origin.url.href);
});

test('a proxy that refuses CONNECT: PROXY_REFUSED, saying who refused what', async () => {
  const agent = agentFor({ HTTPS_PROXY: strict.url });
  const err = await request(secureUrl, {}, new AbortController().signal, { agent, tls: { ca: localhostCert().cert } }).then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  );
  expect(err).toMatchObject({ code: 'PROXY_REFUSED', retryable: false });
  expect(err!.message).toMatch(new RegExp(`^the proxy at 127\\.0\\.0\\.1:${strict.port} refused to connect to localhost:${secureUrl.port}: 403`));
  expectNoSecret(`${err!.message} ${util.inspect(err)}`);
});

test('proxy credentials refused: PROXY_REFUSED for https (CONNECT) and for http (407), with no credential in the message', async () => {
  // Wrong ones for the tunnel (tinyproxy answers that CONNECT 401), none for the request (it answers 407).
  const agent = agentFor({ HTTPS_PROXY: proxy.url.replace(encodeURIComponent(PASSWORD), 'nope'), HTTP_PROXY: `http://127.0.0.1:${proxy.port}` });
  const errs = await Promise.all([
    request(secureUrl, {}, new AbortController().signal, { agent, tls: { ca: localhostCert().cert } }).then(() => undefined, (e: Error) => e),
    openStream(origin.url, { headers: {}, signal: new AbortController().signal, agent }).then(() => undefined, (e: Error) => e),
  ]);
  expect(errs[0]?.message).toMatch(/refused to connect to localhost:\d+: 401/);
  expect(errs[1]?.message).toMatch(/refused to fetch 127\.0\.0\.1:\d+: 407/);
  for (const err of errs) {
    expect(err).toMatchObject({ code: 'PROXY_REFUSED', retryable: false });
    expectNoSecret(`${err!.message} ${util.inspect(err)}`);
  }
});

test('a proxy that is not there: PROXY_UNREACHABLE, naming the proxy without its credentials', async () => {
  const agent = agentFor({ HTTPS_PROXY: `http://${USER}:${PASSWORD}@127.0.0.1:1`, HTTP_PROXY: `http://${USER}:${PASSWORD}@127.0.0.1:1` });
  for (const url of [secureUrl, origin.url]) {
    const err = await openStream(url, { headers: {}, signal: new AbortController().signal, agent }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).toMatchObject({ code: 'PROXY_UNREACHABLE', retryable: true, message: 'could not reach the proxy at 127.0.0.1:1 (ECONNREFUSED)' });
    expectNoSecret(`${err!.message} ${util.inspect(err)}`);
  }
});

test('the proxy configuration: read as curl reads it (lower case wins), frozen, credentials never printed', () => {
  const config = loadConfig({ HTTPS_PROXY: 'http://upper:1', https_proxy: `${USER}:${PASSWORD}@proxy.local:3128`, HTTP_PROXY: 'proxy.local', no_proxy: '.internal, 10.0.0.0/8 ,localhost:8080' }, '/');
  expect(config.proxy.https).toMatchObject({ host: 'proxy.local', port: 3128, display: 'proxy.local:3128' });
  expect(config.proxy.https!.authorization).toBe(`Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`);
  expect(config.proxy.http).toMatchObject({ host: 'proxy.local', port: 1080 }); // curl's default proxy port
  expect(config.proxy.http!.authorization).toBeUndefined();
  expect(config.proxy.noProxy).toEqual(['.internal', '10.0.0.0/8', 'localhost:8080']);
  expect(Object.isFrozen(config.proxy) && Object.isFrozen(config.proxy.https) && Object.isFrozen(config.proxy.noProxy)).toBe(true);
  expectNoSecret(JSON.stringify(config));
  expectNoSecret(util.inspect(config, { depth: 10 }));
  expectNoSecret(util.inspect(config.proxy.https, { showHidden: false }));
  expectNoSecret(util.inspect(agentFor({ HTTPS_PROXY: `http://${USER}:${PASSWORD}@h:1` }), { depth: 10 }));
  expect(loadConfig({}, '/').proxy).toEqual({ noProxy: [] });
});

test('a proxy URL that is no http proxy is a ConfigError that does not show it', () => {
  for (const value of [`socks5://${USER}:${PASSWORD}@h:1080`, `https://${USER}:${PASSWORD}@h:443`, `http://${USER}:${PASSWORD}@[bad`]) {
    let err: unknown;
    try {
      loadProxyConfig({ HTTPS_PROXY: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expectNoSecret(String((err as Error).message));
  }
});

test.each([
  ['*', 'https://anything.example/x', true],
  ['example.com', 'https://example.com/x', true],
  ['example.com', 'https://www.example.com/x', true],
  ['example.com', 'https://notexample.com/x', false],
  ['.example.com', 'https://example.com/x', true],
  ['example.com.', 'https://a.example.com./x', true],
  ['EXAMPLE.com', 'https://Cdn.Example.COM/x', true],
  ['10.0.0.0/8', 'http://10.1.2.3/x', true],
  ['10.0.0.0/8', 'http://11.1.2.3/x', false],
  ['10.1.2.3', 'http://10.1.2.3:8080/x', true],
  ['10.0.0.0/8', 'http://ten.example/x', false], // names are not resolved for matching
  ['::1', 'http://[::1]:8080/x', true],
  ['[::1]:8080', 'http://[::1]:8080/x', true],
  ['fd00::/8', 'http://[fd12::1]/x', true],
  ['localhost:8080', 'http://localhost:8080/x', true],
  ['localhost:8080', 'http://localhost:9090/x', false],
  ['localhost:443', 'https://localhost/x', true],
  ['*.example.com', 'https://www.example.com/x', false], // curl has no wildcard but a lone *
])('NO_PROXY %j for %s: bypassed %s', (noProxy, url, expected) => {
  expect(bypasses(new URL(url), loadProxyConfig({ NO_PROXY: noProxy }).noProxy)).toBe(expected);
});

test('proxyFor: the https proxy for https URLs, the http one for http URLs', () => {
  const config = loadProxyConfig({ HTTPS_PROXY: 'http://s:1', HTTP_PROXY: 'http://p:2', NO_PROXY: 'direct.example' });
  expect(proxyFor(new URL('https://a.example/'), config)?.display).toBe('s:1');
  expect(proxyFor(new URL('http://a.example/'), config)?.display).toBe('p:2');
  expect(proxyFor(new URL('https://direct.example/'), config)).toBeUndefined();
  expect(proxyFor(new URL('https://a.example/'), loadProxyConfig({ HTTP_PROXY: 'http://p:2' }))).toBeUndefined();
});
