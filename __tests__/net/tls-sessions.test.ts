import https from 'node:https';
import type net from 'node:net';
import type tls from 'node:tls';
import { createAgent, request, type Agent } from '../../server/net/raw-http';
import { localhostCert } from '../helpers/tls-cert';

// TLS session resumption in the agent: the segments of one download and its retries each open a
// connection; after the first, they resume its session instead of a full handshake. Seen from the
// server's side: socket.isSessionReused() of each connection it accepts.

let server: https.Server;
let url: URL;
/** For each TLS connection the server accepted: whether it resumed a session. */
let resumed: boolean[];
const agents: Agent[] = [];

beforeEach(async () => {
  const { key, cert } = localhostCert();
  resumed = [];
  // Connection: close, so that every request needs a connection of its own.
  server = https.createServer({ key, cert }, (_req, res) => {
    res.writeHead(200, { 'Content-Length': 2, Connection: 'close' });
    res.end('ok');
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => resumed.push(socket.isSessionReused()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = new URL(`https://localhost:${(server.address() as net.AddressInfo).port}/f`);
});
afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function newAgent(): Agent {
  const a = createAgent();
  agents.push(a);
  return a;
}

async function get(agent: Agent, tlsOptions: { ca: Buffer }): Promise<string> {
  const res = await request(url, {}, new AbortController().signal, { agent, tls: tlsOptions });
  let text = '';
  for await (const c of res.body) text += String(c);
  return text;
}

test('the connections after the first resume its TLS session', async () => {
  const agent = newAgent();
  const tlsOptions = { ca: localhostCert().cert };
  for (let i = 0; i < 4; i++) expect(await get(agent, tlsOptions)).toBe('ok');
  expect(resumed).toEqual([false, true, true, true]);
});

test('connections at once (segments) after the first resume it too', async () => {
  const agent = newAgent();
  const tlsOptions = { ca: localhostCert().cert };
  await get(agent, tlsOptions);
  expect(await Promise.all([get(agent, tlsOptions), get(agent, tlsOptions), get(agent, tlsOptions)])).toEqual(['ok', 'ok', 'ok']);
  expect(resumed).toEqual([false, true, true, true]);
});

test('sessions are not shared between agents, nor across TLS options', async () => {
  const tlsOptions = { ca: localhostCert().cert };
  await get(newAgent(), tlsOptions);
  await get(newAgent(), tlsOptions);
  const agent = newAgent();
  await get(agent, tlsOptions);
  await get(agent, { ca: localhostCert().cert }); // other options (another object): another pool key
  expect(resumed).toEqual([false, false, false, false]);
});
