import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import https from 'node:https';
import { createAgent, request, type Agent, type TlsOptions } from '../../server/net/raw-http';
import { tempDir } from '../helpers/harness';
import { rawServer as startRawServer, type RawServer } from '../helpers/raw-server';

// The HTTP/1.1 client that moves bodies to disk: framing, reuse, limits and failures, against
// raw TCP servers that answer exactly what each case needs.

let dir: string;
let cleanup: () => Promise<void>;
let agent: Agent;
const servers: Array<{ close(): void }> = [];

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('md-raw-'));
  agent = createAgent();
});
afterEach(async () => {
  await agent.close();
  for (const s of servers.splice(0)) s.close();
  await cleanup();
});

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

async function rawServer(answer: Parameters<typeof startRawServer>[0]): Promise<RawServer> {
  const srv = await startRawServer(answer);
  servers.push(srv);
  return srv;
}

async function pumpToFile(url: URL, options: { headers?: Record<string, string>; end?: number; file?: FileHandle } = {}) {
  const res = await request(url, options.headers ?? {}, new AbortController().signal, { agent });
  const target = path.join(dir, 'out.bin');
  const file = options.file ?? (await fs.open(target, 'w'));
  const hash = crypto.createHash('sha256');
  try {
    const pump = res.body.pump({ file, position: 0, hash, ...(options.end === undefined ? {} : { end: () => options.end! }) });
    const how = await pump.done;
    return { res, how, pump, digest: hash.digest('hex'), data: options.file ? Buffer.alloc(0) : await fs.readFile(target) };
  } finally {
    if (!options.file) await file.close();
  }
}

test('a chunked body split at every awkward place arrives whole, framing removed', async () => {
  const body = crypto.randomBytes(300_000);
  const srv = await rawServer((socket) => {
    let wire = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
    const parts: Buffer[] = [Buffer.from(wire, 'latin1')];
    for (let at = 0, size = 1; at < body.length; at += size, size = size * 3 + 7) {
      const chunk = body.subarray(at, at + size);
      parts.push(Buffer.from(`${chunk.length.toString(16)};ext=1\r\n`, 'latin1'), chunk, Buffer.from('\r\n'));
    }
    parts.push(Buffer.from('0\r\nX-Trailer: yes\r\n\r\n'));
    wire = '';
    const all = Buffer.concat(parts);
    // Dribble the framing out in odd pieces so sizes and CRLFs straddle reads.
    let at = 0;
    const next = (): void => {
      if (at >= all.length) return;
      const step = at < 5000 ? 3 : 65_537;
      socket.write(all.subarray(at, at + step), () => setImmediate(next));
      at += step;
    };
    next();
  });
  const out = await pumpToFile(srv.url);
  expect(out.how).toBe('end');
  expect(out.data.length).toBe(body.length);
  expect(sha(out.data)).toBe(sha(body));
  expect(out.digest).toBe(sha(body));
});

test('an interim 103 answer is skipped; a kept-alive connection serves the next request', async () => {
  const body = crypto.randomBytes(50_000);
  const srv = await rawServer((socket) => {
    socket.write('HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n');
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nETag: "abc"\r\n\r\n`);
    socket.write(body);
  });
  const first = await pumpToFile(srv.url);
  expect(first.res.status).toBe(200);
  expect(first.res.headers.etag).toBe('"abc"');
  expect(sha(first.data)).toBe(sha(body));
  const second = await pumpToFile(srv.url);
  expect(sha(second.data)).toBe(sha(body));
  expect(srv.connections()).toBe(1);
});

test('an idle connection the server closed is replaced without failing the request', async () => {
  const srv = await rawServer((socket, _head, n) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
    if (n === 0) setImmediate(() => socket.destroy()); // closes after answering, without saying so
  });
  expect((await pumpToFile(srv.url)).data.toString()).toBe('hello');
  expect((await pumpToFile(srv.url)).data.toString()).toBe('hello');
  expect(srv.connections()).toBe(2);
});

test('a body cut short is an error, and every byte that arrived is on disk', async () => {
  const body = crypto.randomBytes(2_500_000);
  const srv = await rawServer((socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length + 1000}\r\n\r\n`);
    socket.end(body);
  });
  const res = await request(srv.url, {}, new AbortController().signal, { agent });
  const file = await fs.open(path.join(dir, 'cut.bin'), 'w');
  const pump = res.body.pump({ file, position: 0 });
  await expect(pump.done).rejects.toMatchObject({ code: 'ECONNRESET' });
  await file.close();
  expect(pump.written).toBe(body.length);
  expect(sha(await fs.readFile(path.join(dir, 'cut.bin')))).toBe(sha(body));
});

test('a range that shrinks while it is read stops at its new end; the connection is not reused', async () => {
  const body = crypto.randomBytes(3_000_000);
  const srv = await rawServer((socket) => {
    socket.write(`HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length}\r\nContent-Range: bytes 0-${body.length - 1}/${body.length}\r\n\r\n`);
    socket.write(body);
  });
  const out = await pumpToFile(srv.url, { end: 1_234_567 });
  expect(out.how).toBe('limit');
  expect(out.data.length).toBe(1_234_567);
  expect(sha(out.data)).toBe(sha(body.subarray(0, 1_234_567)));
  await pumpToFile(srv.url);
  expect(srv.connections()).toBe(2);
});

test('a slow disk pauses the socket: bytes held in memory stay bounded', async () => {
  const size = 40 * 1024 * 1024;
  const block = crypto.randomBytes(1024 * 1024);
  const srv = await rawServer((socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`);
    let sent = 0;
    const more = (): void => {
      while (sent < size) {
        sent += block.length;
        if (!socket.write(block)) return void socket.once('drain', more);
      }
    };
    more();
  });
  let maxPending = 0;
  const digest = crypto.createHash('sha256');
  const slow = {
    async writev(buffers: Buffer[]) {
      await new Promise((r) => setTimeout(r, 5));
      let n = 0;
      for (const b of buffers) {
        digest.update(b);
        n += b.length;
      }
      return { bytesWritten: n, buffers };
    },
  } as unknown as FileHandle;
  const res = await request(srv.url, {}, new AbortController().signal, { agent });
  const pump = res.body.pump({ file: slow, position: 0, onData: () => (maxPending = Math.max(maxPending, pump.pending)) });
  await pump.done;
  expect(pump.written).toBe(size);
  const expected = crypto.createHash('sha256');
  for (let i = 0; i < size / block.length; i++) expected.update(block);
  expect(digest.digest('hex')).toBe(expected.digest('hex'));
  expect(maxPending).toBeLessThanOrEqual(6 * 1024 * 1024); // 4 blocks waiting + the one filling, and a read
});

test('at most 16 connections go to one host at a time; the rest wait their turn', async () => {
  const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok';
  const held: net.Socket[] = [];
  let openWhileHeld = -1;
  const srv = await rawServer((socket) => {
    if (openWhileHeld >= 0) return void socket.end(OK);
    held.push(socket);
    // 16 requests wait unanswered; a window for a 17th connection to show up, were there no cap.
    if (held.length === 16) {
      setTimeout(() => {
        openWhileHeld = srv.connections();
        for (const s of held.splice(0)) s.end(OK);
      }, 150);
    }
  });
  const results = await Promise.all(
    Array.from({ length: 20 }, async () => {
      const res = await request(srv.url, {}, new AbortController().signal, { agent });
      const chunks: Buffer[] = [];
      for await (const c of res.body) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString();
    }),
  );
  expect(results).toEqual(Array(20).fill('ok'));
  expect(openWhileHeld).toBe(16);
  expect(srv.connections()).toBe(20);
});

test('a header value with a line break is refused before anything is sent', async () => {
  const srv = await rawServer(() => undefined);
  await expect(request(srv.url, { 'X-Evil': 'a\r\nHost: other' }, new AbortController().signal, { agent })).rejects.toMatchObject({ code: 'BAD_HEADER' });
  expect(srv.connections()).toBe(0);
});

test('an answer that is not HTTP/1.x is a clear error', async () => {
  const srv = await rawServer((socket) => socket.end('SSH-2.0-OpenSSH_9.0\r\n\r\n'));
  await expect(request(srv.url, {}, new AbortController().signal, { agent })).rejects.toMatchObject({ code: 'BAD_RESPONSE' });
});

test('aborting while the body is read ends the pump with the reason and keeps what arrived', async () => {
  const srv = await rawServer((socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n');
    socket.write(Buffer.alloc(3 * 1024 * 1024, 1)); // then silence
  });
  const controller = new AbortController();
  const res = await request(srv.url, {}, controller.signal, { agent });
  const file = await fs.open(path.join(dir, 'abort.bin'), 'w');
  let got = 0;
  const pump = res.body.pump({ file, position: 0, onData: (n) => (got += n) >= 3 * 1024 * 1024 && controller.abort(new Error('paused by the user')) });
  await expect(pump.done).rejects.toThrow('paused by the user');
  await file.close();
  expect((await fs.stat(path.join(dir, 'abort.bin'))).size).toBe(3 * 1024 * 1024);
});

/** An https server on 127.0.0.1 with a self-signed certificate for localhost; `ca` trusts it. */
async function httpsServer(body: Buffer): Promise<{ url: URL; ca: Buffer }> {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
  const server = https.createServer({ key: await fs.readFile(key), cert: await fs.readFile(cert) }, (_req, res) => {
    res.writeHead(200, { 'Content-Length': body.length });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push({ close: () => server.close() });
  return { url: new URL(`https://localhost:${(server.address() as net.AddressInfo).port}/f`), ca: await fs.readFile(cert) };
}

test('https: the body comes through TLS into the same blocks', async () => {
  const body = crypto.randomBytes(5_000_000);
  const { url, ca } = await httpsServer(body);
  // An unknown certificate is refused...
  await expect(request(url, {}, new AbortController().signal, { agent })).rejects.toMatchObject({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
  // ...and trusted when its CA is given.
  const res = await request(url, {}, new AbortController().signal, { agent, tls: { ca } });
  const file = await fs.open(path.join(dir, 'tls.bin'), 'w');
  await res.body.pump({ file, position: 0 }).done;
  await file.close();
  expect(sha(await fs.readFile(path.join(dir, 'tls.bin')))).toBe(sha(body));
});

test('TLS options cannot send the socket elsewhere or around the address guard: ours are applied after them', async () => {
  const body = crypto.randomBytes(1000);
  const { url, ca } = await httpsServer(body);
  let theirLookup = 0;
  // What a JavaScript caller (or a cast) could pass: another host, port, Unix socket and DNS lookup.
  const hostile = {
    ca,
    host: '169.254.169.254',
    port: 1,
    path: path.join(dir, 'elsewhere.sock'),
    lookup: (_host: string, _o: unknown, cb: (err: null, address: string, family: number) => void) => {
      theirLookup++;
      cb(null, '169.254.169.254', 4);
    },
  } as unknown as TlsOptions;
  const res = await request(url, {}, new AbortController().signal, { agent, tls: hostile });
  const file = await fs.open(path.join(dir, 'guarded.bin'), 'w');
  await res.body.pump({ file, position: 0 }).done;
  await file.close();
  expect(sha(await fs.readFile(path.join(dir, 'guarded.bin')))).toBe(sha(body));
  expect(theirLookup).toBe(0);
});

test('each agent has its own connections: closing one leaves the idle connections of another open', async () => {
  const srv = await rawServer((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  const other = createAgent();
  const read = async (through: Agent): Promise<string> => {
    const res = await request(srv.url, {}, new AbortController().signal, { agent: through });
    const chunks: Buffer[] = [];
    for await (const c of res.body) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString();
  };
  try {
    expect(await read(agent)).toBe('ok');
    expect(await read(other)).toBe('ok');
    expect(srv.connections()).toBe(2); // no connection is shared between agents
    await agent.close();
    expect(await read(other)).toBe('ok');
    expect(srv.connections()).toBe(2); // the other agent's idle connection served it
    // A closed agent keeps nothing: a later request still works, on a connection closed after it.
    expect(await read(agent)).toBe('ok');
    expect(await read(agent)).toBe('ok');
    expect(srv.connections()).toBe(4);
  } finally {
    await other.close();
  }
});
