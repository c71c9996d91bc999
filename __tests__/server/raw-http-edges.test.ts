import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createAgent, request, type Agent } from '../../server/net/raw-http';
import { openStream } from '../../server/net/http-client';
import { attemptTransfer, type TransferState } from '../../server/downloader/transfer';
import { metaPath } from '../../server/disk/part-file';
import { tempDir } from '../helpers/harness';
import { rawServer as startRawServer, type RawServer } from '../helpers/raw-server';

// The edges of the HTTP client found in review: each of these failed before its fix (a leaked
// host slot, two crashes from callbacks, a lost abort, a connection not kept, a body read twice).
// Raw TCP servers, as in raw-http.test.ts.

let dir: string;
let cleanup: () => Promise<void>;
let agent: Agent;
const servers: Array<{ close(): void }> = [];

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('md-raw-review-'));
  agent = createAgent();
});
afterEach(async () => {
  await agent.close();
  for (const s of servers.splice(0)) s.close();
  await cleanup();
});

async function rawServer(answer: Parameters<typeof startRawServer>[0]): Promise<RawServer> {
  const srv = await startRawServer(answer);
  servers.push(srv);
  return srv;
}

/** Resolves with the request's outcome, or 'still waiting' after `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still waiting'>((r) => (timer = setTimeout(() => r('still waiting'), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- 1. transfer.ts leaks the response (and its per-host slot) when anything between the headers and pump() throws

test('transfer: a response left unread after a failure (writeMeta) gives its host slot back; 16 such attempts leave the host reachable', async () => {
  const srv = await rawServer((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'));
  const abs = path.join(dir, 'model.bin');
  // The metadata beside the .part cannot be written (here: a folder has its name; EROFS, ENOSPC and
  // EACCES take the same path), so attemptTransfer throws after openStream returned a body.
  await fs.mkdir(metaPath(abs), { recursive: true });
  for (let i = 0; i < 16; i++) {
    const state: TransferState = { hashedBytes: 0, received: 0, expected: {} };
    await expect(
      attemptTransfer({ source: { url: srv.url }, abs, signal: new AbortController().signal, agent, stallMs: 60_000, progressIntervalMs: 1000, wantHash: false, state, onStart: () => undefined, onProgress: () => undefined }),
    ).rejects.toMatchObject({ code: 'EISDIR' });
  }
  // A later request to that host (another download, the retry once the disk is fixed) gets a slot.
  const controller = new AbortController();
  const next = request(srv.url, {}, controller.signal, { agent }).then((res) => {
    res.body.destroy();
    return res.status;
  });
  const outcome = await within(next, 1500);
  controller.abort(new Error('gave up'));
  await next.catch(() => undefined);
  expect(outcome).toBe(200);
});

// ---- 2. exceptions from the pump's callbacks that escape to the process

/**
 * Runs `body` (JavaScript, with `request`, `agent`, `fs`, `net` and `dir` in scope) in a child process
 * against the built dist/ (jest's global setup builds it), so that an uncaught exception or an
 * unhandled rejection shows as what it is in production: the process dies.
 */
function inChild(body: string): Promise<{ code: number | null; out: string }> {
  const rawHttp = path.join(__dirname, '..', '..', 'dist', 'server', 'net', 'raw-http.js');
  const script = `
    const { createAgent, request } = require(${JSON.stringify(rawHttp)});
    const agent = createAgent();
    const fs = require('node:fs/promises');
    const net = require('node:net');
    const dir = ${JSON.stringify(dir)};
    (async () => { ${body} })().then(() => process.exit(0), (err) => { console.log('script failed', err); process.exit(3); });
  `;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out }));
  });
}

const serveOnce = `
  const server = net.createServer((s) => { s.on('error', () => {}); s.once('data', () => s.write(RESPONSE)); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = new URL('http://127.0.0.1:' + server.address().port + '/f');
`;

test('pump: an exception from onData on the bytes that came with the head fails the pump, not the process', async () => {
  const r = await inChild(`
    const RESPONSE = 'HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\nhello';
    ${serveOnce}
    const res = await request(url, {}, new AbortController().signal, { agent });
    const file = await fs.open(dir + '/a.bin', 'w');
    const pump = res.body.pump({ file, position: 0, onData: () => { throw new Error('boom from onData'); } });
    const how = await pump.done.then((v) => 'resolved ' + v, (e) => 'rejected ' + e.message);
    console.log('pump ' + how);
    await file.close();
    server.close();
  `);
  // Thrown later inside onRead, the same error fails the pump (socket.destroy(err)); here it kills the process.
  expect(r.out).toContain('pump rejected boom from onData');
  expect(r.code).toBe(0);
});

test('pump: an exception from onWritten fails the pump, never as an unhandled rejection', async () => {
  const r = await inChild(`
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\\r\\nContent-Length: ' + 4 * 1024 * 1024 + '\\r\\n\\r\\n');
        s.write(Buffer.alloc(2 * 1024 * 1024, 1));
        setTimeout(() => s.write(Buffer.alloc(2 * 1024 * 1024, 2)), 300); // a batch settles meanwhile, with nobody awaiting it
      });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const url = new URL('http://127.0.0.1:' + server.address().port + '/f');
    const res = await request(url, {}, new AbortController().signal, { agent });
    const file = await fs.open(dir + '/b.bin', 'w');
    const pump = res.body.pump({ file, position: 0, onWritten: () => { throw new Error('boom from onWritten'); } });
    const how = await pump.done.then((v) => 'resolved ' + v, (e) => 'rejected ' + e.message);
    console.log('pump ' + how);
    await file.close();
    server.close();
  `);
  expect(r.out).toMatch(/pump (resolved|rejected)/);
  expect(r.code).toBe(0);
});

// ---- 3. an abort that is never seen

test('an abort that lands while a host slot is handed over still ends the request', async () => {
  const srv = await rawServer((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n')); // then silence
  const held = await Promise.all(Array.from({ length: 16 }, () => request(srv.url, {}, new AbortController().signal, { agent })));
  const controller = new AbortController();
  const waiting = request(srv.url, {}, controller.signal, { agent });
  await new Promise((r) => setImmediate(r)); // the 17th waits for a slot
  held[0]!.body.destroy(); // passes its slot on (grant() removes the waiter's abort listener)...
  controller.abort(new Error('paused by the user')); // ...and the download is paused in the same tick
  const outcome = await within(
    waiting.then(
      (res) => {
        res.body.destroy();
        return 'resolved: the abort was lost';
      },
      (err: Error) => err.message,
    ),
    1000,
  );
  for (const res of held) res.body.destroy();
  expect(outcome).toBe('paused by the user');
});

// ---- 4. the short-body shortcut of RawBody._destroy never keeps the connection

test('destroying a short body that is all here (a redirect, the 1-byte probe) keeps the connection', async () => {
  const srv = await rawServer((socket, head) => {
    if (head.includes('/old')) socket.write('HTTP/1.1 302 Found\r\nLocation: /file.bin\r\nContent-Length: 5\r\n\r\nmoved');
    else socket.write('HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/10\r\nContent-Length: 1\r\n\r\nx');
  });
  const res = await openStream(new URL('/old', srv.url), { headers: {}, signal: new AbortController().signal, agent });
  expect(res.status).toBe(206);
  res.body.destroy(); // head and body came in one write
  const again = await request(srv.url, {}, new AbortController().signal, { agent });
  again.body.destroy();
  expect(srv.connections()).toBe(1);
});

// ---- 5. RawBody is a Readable: reading it while pump() runs hands the connection to the reader

test('reading a body that is being pumped is ignored; the pump still ends', async () => {
  const srv = await rawServer((socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n');
    setTimeout(() => socket.write(Buffer.alloc(3_000_000, 7)), 50);
  });
  const res = await request(srv.url, {}, new AbortController().signal, { agent });
  const file = await fs.open(path.join(dir, 'c.bin'), 'w');
  const pump = res.body.pump({ file, position: 0 });
  res.body.on('data', () => undefined); // pump() refuses a body being read; _read() does not refuse a body being pumped
  const outcome = await within(
    pump.done.then(
      (how) => how,
      (err: Error) => `rejected ${err.message}`,
    ),
    2000,
  );
  await file.close();
  expect(outcome).toBe('end');
  expect(pump.written).toBe(3_000_000);
});
